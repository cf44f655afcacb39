//! The native UMAP: deterministic for a seed whatever the thread count, clusters kept apart,
//! and a map that stays put when 1 % new items arrive.

mod common;

use common::*;
use simsite::layout::{layout, settings_text, LayoutSettings, Previous};
use simsite::neighbours::{row_keys, search, NeighbourSettings};

const D: usize = 32;

fn labels(n: usize, centres: usize) -> Vec<usize> {
    (0..n).map(|i| i % centres).collect()
}

/// Share of items whose 10 nearest on the map mostly share their cluster.
fn map_knn_accuracy(xy: &[f32], lab: &[usize], rows: impl Iterator<Item = usize>) -> f64 {
    let n = lab.len();
    let (mut ok, mut total) = (0, 0);
    for i in rows {
        let mut d: Vec<(f32, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| ((xy[2 * i] - xy[2 * j]).powi(2) + (xy[2 * i + 1] - xy[2 * j + 1]).powi(2), j))
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        let same = d[..10].iter().filter(|(_, j)| lab[*j] == lab[i]).count();
        ok += (same > 5) as usize;
        total += 1;
    }
    ok as f64 / total as f64
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item-{i:05}")).collect()
}

#[test]
fn a_fresh_map_separates_clusters_and_depends_on_the_seed_only() {
    let (n, c) = (3000, 12);
    let emb = clustered(n, D, c, 11);
    let nb = search(&emb, D, &NeighbourSettings::default()).unwrap();
    let names = ids(n);
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let s = LayoutSettings { n_epochs: Some(200), ..Default::default() };
    let rows = row_keys(&refs, &emb, D);
    let (xy, info, key) = layout(&emb, D, &refs, &rows, &nb, &s, None).unwrap();
    assert_eq!(info.mode, "fresh");
    assert_eq!(xy.len(), 2 * n);
    assert!(xy.iter().all(|v| v.is_finite()));
    let acc = map_knn_accuracy(&xy, &labels(n, c), (0..n).step_by(7));
    assert!(acc > 0.95, "2-D kNN accuracy {acc}");

    // Same seed on one thread: the same bytes.
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let (xy1, _, key1) = one.install(|| layout(&emb, D, &refs, &rows, &nb, &s, None).unwrap());
    assert_eq!(xy, xy1);
    assert_eq!(key, key1);
    // Another seed: another map.
    let (xy2, _, _) = layout(&emb, D, &refs, &rows, &nb, &LayoutSettings { seed: 7, ..s.clone() }, None).unwrap();
    assert_ne!(xy, xy2);

    // Nothing changed since the last build: its map comes back untouched.
    let prev = Previous { key: key.clone(), settings: Some(settings_text(&s)), ids: names.clone(), rows: Some(rows.clone()), coords: xy.clone() };
    let (again, info, _) = layout(&emb, D, &refs, &rows, &nb, &s, Some(prev)).unwrap();
    assert_eq!(info.mode, "reused");
    assert_eq!(again, xy);
}

/// A map of `n` items, then the map after `extra` more are added: (before, after, info).
fn before_and_after(n: usize, c: usize, extra: usize) -> (Vec<f32>, Vec<f32>, simsite::layout::LayoutInfo, Vec<usize>) {
    let all = clustered(n + extra, D, c, 5);
    let s = LayoutSettings::default();
    let names = ids(n + extra);
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let nb = search(&all[..n * D], D, &NeighbourSettings::default()).unwrap();
    let rows = row_keys(&refs, &all, D);
    let (before, _, key) = layout(&all[..n * D], D, &refs[..n], &rows[..n], &nb, &s, None).unwrap();
    let nb = search(&all, D, &NeighbourSettings::default()).unwrap();
    let prev = Previous { key, settings: Some(settings_text(&s)), ids: names[..n].to_vec(), rows: Some(rows[..n].to_vec()), coords: before.clone() };
    let (after, info, _) = layout(&all, D, &refs, &rows, &nb, &s, Some(prev)).unwrap();
    (before, after, info, labels(n + extra, c))
}

#[test]
fn adding_one_percent_keeps_every_existing_item_in_place() {
    let (n, extra) = (3000, 30);
    let (before, after, info, lab) = before_and_after(n, 12, extra);
    assert_eq!((info.mode.as_str(), info.kept, info.added), ("placed", n, extra));
    assert_eq!(&after[..2 * n], &before[..], "an existing item moved");
    // The new items land among their own kind.
    let acc = map_knn_accuracy(&after, &lab, n..n + extra);
    assert!(acc > 0.9, "new items' 2-D kNN accuracy {acc}");
}

#[test]
fn adding_ten_percent_moves_existing_items_by_under_two_percent_of_the_map() {
    let (n, extra) = (3000, 300);
    let (before, after, info, lab) = before_and_after(n, 12, extra);
    assert_eq!((info.mode.as_str(), info.kept, info.added), ("refined", n, extra));
    let extent = (0..2)
        .map(|a| {
            let v = before.iter().skip(a).step_by(2);
            v.clone().fold(f32::MIN, |m, &x| m.max(x)) - v.fold(f32::MAX, |m, &x| m.min(x))
        })
        .fold(0f32, f32::max);
    let mean_move: f32 = (0..n)
        .map(|i| ((before[2 * i] - after[2 * i]).powi(2) + (before[2 * i + 1] - after[2 * i + 1]).powi(2)).sqrt())
        .sum::<f32>()
        / n as f32;
    assert!(mean_move / extent < 0.02, "existing items moved {:.2}% of the map on average", 100.0 * mean_move / extent);
    let acc = map_knn_accuracy(&after, &lab, n..n + extra);
    assert!(acc > 0.9, "new items' 2-D kNN accuracy {acc}");
}

#[test]
fn one_or_two_items_still_get_a_map() {
    for n in [1usize, 2] {
        let emb = clustered(n, D, 1, 3);
        let nb = search(&emb, D, &NeighbourSettings::default()).unwrap();
        let names = ids(n);
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let (xy, _, _) = layout(&emb, D, &refs, &row_keys(&refs, &emb, D), &nb, &LayoutSettings::default(), None).unwrap();
        assert_eq!(xy.len(), 2 * n);
        assert!(xy.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn a_new_model_new_settings_or_a_changed_file_are_not_kept_from_the_last_map() {
    let (n, c) = (1500, 6);
    let emb = clustered(n, D, c, 21);
    let names = ids(n);
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let s = LayoutSettings { n_epochs: Some(100), ..Default::default() };
    let nb = search(&emb, D, &NeighbourSettings::default()).unwrap();
    let rows = row_keys(&refs, &emb, D);
    let (xy, _, key) = layout(&emb, D, &refs, &rows, &nb, &s, None).unwrap();
    let prev = || Previous { key: key.clone(), settings: Some(settings_text(&s)), ids: names.clone(), rows: Some(rows.clone()), coords: xy.clone() };

    // Other layout settings: a fresh map, as a cold build with them makes.
    let other = LayoutSettings { min_dist: 0.5, ..s.clone() };
    let (moved, info, _) = layout(&emb, D, &refs, &rows, &nb, &other, Some(prev())).unwrap();
    assert_eq!(info.mode, "fresh");
    assert_eq!(moved, layout(&emb, D, &refs, &rows, &nb, &other, None).unwrap().0);

    // Another model (every embedding changed, the ids the same): a fresh map too.
    let emb2 = clustered(n, D, c, 22);
    let nb2 = search(&emb2, D, &NeighbourSettings::default()).unwrap();
    let rows2 = row_keys(&refs, &emb2, D);
    let (_, info, _) = layout(&emb2, D, &refs, &rows2, &nb2, &s, Some(prev())).unwrap();
    assert_eq!((info.mode.as_str(), info.kept), ("fresh", 0));

    // One file changed to look like another kind: it alone is placed anew, among its new kind.
    let mut emb3 = emb.clone();
    emb3.copy_within(D..2 * D, 0);
    let nb3 = search(&emb3, D, &NeighbourSettings::default()).unwrap();
    let rows3 = row_keys(&refs, &emb3, D);
    let (after, info, _) = layout(&emb3, D, &refs, &rows3, &nb3, &s, Some(prev())).unwrap();
    assert_eq!((info.mode.as_str(), info.kept, info.added), ("placed", n - 1, 1));
    assert_eq!(info.anew.iter().filter(|&&a| a).count(), 1);
    assert!(info.anew[0]);
    assert_eq!(&after[2..], &xy[2..], "an unchanged item moved");
    let d = |a: &[f32], i: usize, b: &[f32], j: usize| ((a[2 * i] - b[2 * j]).powi(2) + (a[2 * i + 1] - b[2 * j + 1]).powi(2)).sqrt();
    assert!(d(&after, 0, &xy, 1) < d(&after, 0, &xy, 0), "item 0 stayed with its old kind");

    // A cache from before settings and row keys were kept: items are matched by id.
    let old = Previous { settings: None, rows: None, ..prev() };
    let (after, info, _) = layout(&emb3, D, &refs, &rows3, &nb3, &s, Some(old)).unwrap();
    assert_eq!((info.mode.as_str(), info.kept, info.added), ("placed", n, 0));
    assert_eq!(after, xy);
}
