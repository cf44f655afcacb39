//! Clusters, outliers and near-duplicates on embeddings with known structure.

mod common;

use common::*;
use simsite::layout::{layout, LayoutSettings};
use simsite::neighbours::{row_keys, search, NeighbourSettings};
use simsite::structure::{clusters, clusters_kept, duplicates, outliers, ForestUse, KeptClusters, KeptForest, OutlierMethod, StructureSettings};

const D: usize = 32;

#[test]
fn known_clusters_outliers_and_duplicates_are_found() {
    let (n_base, c) = (1800, 6);
    let mut emb = clustered(n_base, D, c, 21);
    // 12 strangers: random directions, far from every cluster.
    let mut r = rng(99);
    let mut odd: Vec<f32> = (0..12 * D).map(|_| r.normal()).collect();
    normalise(&mut odd, D);
    emb.extend_from_slice(&odd);
    // 3 exact copies of items 0, 1, 2 (a re-encoded file).
    let copies: Vec<f32> = emb[..3 * D].to_vec();
    emb.extend_from_slice(&copies);
    let n = emb.len() / D;

    let nb = search(&emb, D, &NeighbourSettings::default()).unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let (xy, _, _) = layout(&emb, D, &refs, &row_keys(&refs, &emb, D), &nb, &LayoutSettings::default(), None).unwrap();
    let s = StructureSettings::default();

    let (found, of) = clusters(&xy, &emb, D, &nb, s.cluster_size(n));
    assert_eq!(found.len(), c, "sizes {:?}", found.iter().map(|k| k.members.len()).collect::<Vec<_>>());
    // Each found cluster is one true cluster (the generator puts item i in cluster i % c).
    for k in &found {
        let truth = k.members[0] as usize % c;
        let pure = k.members.iter().filter(|&&i| (i as usize) < n_base && i as usize % c == truth).count();
        let base = k.members.iter().filter(|&&i| (i as usize) < n_base).count();
        assert!(pure as f64 / base as f64 > 0.99, "cluster of {} items is mixed", k.members.len());
        assert!(k.members.contains(&k.representative));
        assert!(k.members.windows(2).all(|w| w[0] < w[1]));
    }
    assert!(found.windows(2).all(|w| w[0].members.len() >= w[1].members.len()), "numbered by size");
    assert!(of[..n_base].iter().all(|c| c.is_some()), "every clustered-looking item has a cluster");

    let (score, rank) = outliers(&nb, n, s.outlier_k);
    let strangers: Vec<usize> = (n_base..n_base + 12).collect();
    assert!(strangers.iter().all(|&i| rank[i] <= 12), "ranks of the strangers: {:?}", strangers.iter().map(|&i| rank[i]).collect::<Vec<_>>());
    let mut ranks = rank.clone();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=n as u32).collect::<Vec<_>>(), "ranks are 1..=n");
    assert!(strangers.iter().all(|&i| score[i] > score[0]));

    // The isolation forest (the default) ranks them first too, and the same way every run.
    assert_eq!(s.outlier_method, OutlierMethod::IsolationForest);
    let (iso, iso_rank) = s.outliers(&emb, D, &nb);
    assert!(strangers.iter().all(|&i| iso_rank[i] <= 12), "forest ranks: {:?}", strangers.iter().map(|&i| iso_rank[i]).collect::<Vec<_>>());
    assert!(iso.iter().all(|v| *v > 0.0 && *v < 1.0));
    assert_eq!(s.outliers(&emb, D, &nb), (iso, iso_rank));

    let pairs = duplicates(&nb, n, s.duplicate_threshold);
    for (k, orig) in (n_base + 12..n).zip(0u32..) {
        assert!(pairs.iter().any(|p| p.a == orig && p.b == k as u32 && p.score > 0.9999), "copy {k} of {orig} missed");
    }
    assert!(pairs.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(pairs.iter().all(|p| p.a < p.b && p.score >= s.duplicate_threshold));
}

#[test]
fn a_placed_map_keeps_its_clusters_and_numbers_and_new_items_join_their_kind() {
    let (n, extra, c) = (1800, 18, 6);
    let all = clustered(n + extra, D, c, 33);
    let names: Vec<String> = (0..n + extra).map(|i| format!("i{i}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let min = StructureSettings::default().cluster_size(n);
    let nb = search(&all[..n * D], D, &NeighbourSettings::default()).unwrap();
    let (xy, _, _) = layout(&all[..n * D], D, &refs[..n], &row_keys(&refs[..n], &all[..n * D], D), &nb, &LayoutSettings::default(), None).unwrap();
    let (before, of_before) = clusters(&xy, &all[..n * D], D, &nb, min);
    let kept = KeptClusters { setting: 0, ids: names[..n].to_vec(), cluster: of_before.clone() };

    let nb = search(&all, D, &NeighbourSettings::default()).unwrap();
    // The automatic minimum size grows with the archive; that alone does not recluster.
    let (after, of) = clusters_kept(&kept, &refs, &vec![false; refs.len()], &all, D, &nb, 0, StructureSettings::default().cluster_size(n + extra)).expect("kept");
    assert_eq!(after.len(), before.len());
    assert_eq!(&of[..n], &of_before[..], "an existing item changed cluster");
    // Each new item joins the cluster holding most of its own kind (item i is of kind i % c).
    for i in n..n + extra {
        let k = of[i].expect("a cluster") as usize;
        let same_kind = after[k].members.iter().filter(|&&m| m as usize % c == i % c).count();
        assert!(same_kind * 2 > after[k].members.len(), "item {i} joined cluster {k} of another kind");
        assert!(after[k].members.contains(&(i as u32)));
    }
    // Another minimum size, or a cluster emptied by removals: cluster afresh.
    assert!(clusters_kept(&KeptClusters { setting: 25, ..kept.clone() }, &refs, &vec![false; refs.len()], &all, D, &nb, 0, min).is_none());
    let k0: Vec<usize> = (0..n).filter(|&i| of_before[i] == Some(0)).collect();
    let gone: std::collections::HashSet<usize> = k0.into_iter().collect();
    let rest: Vec<usize> = (0..n).filter(|i| !gone.contains(i)).collect();
    let emb: Vec<f32> = rest.iter().flat_map(|&i| all[i * D..(i + 1) * D].iter().copied()).collect();
    let rest_refs: Vec<&str> = rest.iter().map(|&i| refs[i]).collect();
    let nb = search(&emb, D, &NeighbourSettings::default()).unwrap();
    assert!(clusters_kept(&kept, &rest_refs, &vec![false; rest_refs.len()], &emb, D, &nb, 0, min).is_none());

    // An item whose file changed (the map placed it anew) joins the cluster of its new kind.
    let mut changed = all[..n * D].to_vec();
    changed.copy_within(D..2 * D, 0);
    let nb = search(&changed, D, &NeighbourSettings::default()).unwrap();
    let mut anew = vec![false; n];
    let (_, of) = clusters_kept(&kept, &refs[..n], &anew, &changed, D, &nb, 0, min).expect("kept");
    assert_eq!(of[0], of_before[0], "not said to have changed: keeps its cluster");
    anew[0] = true;
    let (_, of) = clusters_kept(&kept, &refs[..n], &anew, &changed, D, &nb, 0, min).expect("kept");
    assert_ne!(of_before[0], of_before[1]);
    assert_eq!(of[0], of_before[1], "item 0 now looks like item 1 and joins its cluster");
}

#[test]
fn a_kept_isolation_forest_scores_the_items_it_had_as_before_until_the_archive_changed_a_tenth() {
    let (n, c) = (2000, 5);
    let mut all = clustered(n + 400, D, c, 41);
    // 8 strangers among the later items.
    let mut r = rng(7);
    let mut odd: Vec<f32> = (0..8 * D).map(|_| r.normal()).collect();
    normalise(&mut odd, D);
    all[(n + 10) * D..(n + 18) * D].copy_from_slice(&odd);
    let names: Vec<String> = (0..n + 400).map(|i| format!("i{i}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let s = StructureSettings::default();
    let nb = |m: usize| search(&all[..m * D], D, &NeighbourSettings::default()).unwrap();

    // The first build grows a forest; it scores as the plain method does.
    let (score, rank, kept) = s.outliers_kept(&all[..n * D], D, &nb(n), &refs[..n], "space-a", None);
    let (kept, how) = kept.expect("the isolation forest is kept");
    assert_eq!(how, ForestUse::Grown);
    assert_eq!((score.clone(), rank), s.outliers(&all[..n * D], D, &nb(n)));
    let saved = kept.to_bytes();
    let back = KeptForest::from_bytes(&saved).expect("a whole forest reads back");
    assert_eq!(back, kept);

    // 1 % more items, read back from bytes: the forest is kept, the old items score exactly
    // as before, and the strangers among the new ones rank first.
    let m = n + 20;
    let (score2, rank2, kept2) = s.outliers_kept(&all[..m * D], D, &nb(m), &refs[..m], "space-a", Some(back.clone()));
    assert_eq!(kept2.as_ref().map(|k| k.1), Some(ForestUse::Kept));
    assert_eq!(&score2[..n], &score[..], "an old item's score moved");
    assert!((n + 10..n + 18).all(|i| rank2[i] <= 8), "strangers' ranks: {:?}", &rank2[n + 10..n + 18]);
    // The rows the last build scored are looked up, not scored again (the same either way);
    // the new ones are scored by the forest, and the kept scores are this build's rows.
    assert_eq!(score2, back.forest.scores(&all[..m * D], D));
    assert_eq!(kept2.as_ref().map(|k| k.0.scored.len()), Some(m));
    let mut marked = back.clone();
    marked.scored.iter_mut().for_each(|s| s.1 = 9.0);
    let (score_m, _, _) = s.outliers_kept(&all[..m * D], D, &nb(m), &refs[..m], "space-a", Some(marked));
    assert!(score_m[..n].iter().all(|&v| v == 9.0), "the kept scores were not used");
    assert_eq!(&score_m[n..], &score2[n..]);
    // Growing afresh on these items would have moved the old items' scores.
    let (fresh, _) = s.outliers(&all[..m * D], D, &nb(m));
    assert_ne!(&fresh[..n], &score[..]);

    // Items removed count as changes too: 150 added and 60 removed (10.5 %) grow it again.
    let later: Vec<usize> = (60..n + 150).collect();
    let emb: Vec<f32> = later.iter().flat_map(|&i| all[i * D..(i + 1) * D].iter().copied()).collect();
    let ids: Vec<&str> = later.iter().map(|&i| refs[i]).collect();
    let nb3 = search(&emb, D, &NeighbourSettings::default()).unwrap();
    let (_, _, k3) = s.outliers_kept(&emb, D, &nb3, &ids, "space-a", Some(back.clone()));
    assert_eq!(k3.map(|k| k.1), Some(ForestUse::Grown));
    // 150 added and 40 removed (9.5 %) keep it.
    let emb4: Vec<f32> = all[40 * D..(n + 150) * D].to_vec();
    let nb4 = search(&emb4, D, &NeighbourSettings::default()).unwrap();
    let (s4, _, k4) = s.outliers_kept(&emb4, D, &nb4, &refs[40..n + 150], "space-a", Some(back.clone()));
    assert_eq!(k4.map(|k| k.1), Some(ForestUse::Kept));
    assert_eq!(&s4[..n - 40], &score[40..]);

    // Another embedding space (model or preprocessing), or damaged bytes: grown afresh.
    let (_, _, k5) = s.outliers_kept(&all[..m * D], D, &nb(m), &refs[..m], "space-b", Some(back.clone()));
    assert_eq!(k5.map(|k| k.1), Some(ForestUse::Grown));
    for cut in [0, 10, saved.len() / 2, saved.len() - 1] {
        assert!(KeptForest::from_bytes(&saved[..cut]).is_none(), "cut at {cut}");
    }
    // The first tree's root (a split) with its left child pointing at itself.
    let root_left = b"simsite-forest-v2\n".len() + 4 + kept.key.len() + 16 + 8 * n + 4 + 8;
    let mut bad = saved.clone();
    assert_ne!(&bad[root_left..root_left + 4], &0u32.to_le_bytes());
    bad[root_left..root_left + 4].copy_from_slice(&0u32.to_le_bytes());
    assert!(KeptForest::from_bytes(&bad).is_none());

    // The neighbour method keeps no forest.
    let plain = StructureSettings { outlier_method: OutlierMethod::Neighbours, ..s };
    assert!(plain.outliers_kept(&all[..n * D], D, &nb(n), &refs[..n], "space-a", Some(back)).2.is_none());
}
