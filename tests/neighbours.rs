//! Neighbours through real FAISS: exact search against a brute-force reference, the IVF path
//! against its recall target, and the files a build publishes under api/.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;
use simsite::neighbours::{load_previous, recall_at_k, row_keys, save_previous, search, search_or_update, NeighbourSettings, Update, NONE};

/// Brute force in f64: each row's k best others as (index, score), (score desc, index asc).
fn brute(v: &[f32], d: usize, k: usize) -> Vec<Vec<(u32, f64)>> {
    let n = v.len() / d;
    (0..n)
        .map(|i| {
            let mut row: Vec<(u32, f64)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (j as u32, (0..d).map(|t| v[i * d + t] as f64 * v[j * d + t] as f64).sum()))
                .collect();
            row.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            row.truncate(k);
            row
        })
        .collect()
}

#[test]
fn exact_search_matches_brute_force() {
    let (n, d, k) = (400, 24, 10);
    let mut v = clustered(n, d, 8, 1);
    // Exact duplicates: a row's twin must come first with score 1 and the row itself never.
    let dup = v[5 * d..6 * d].to_vec();
    v[77 * d..78 * d].copy_from_slice(&dup);
    let nb = search(&v, d, &NeighbourSettings { k, ..Default::default() }).unwrap();
    assert_eq!(nb.info.method, "exact");
    assert_eq!(nb.info.recall, 1.0);
    assert_eq!((nb.k, nb.ids.len(), nb.scores.len()), (k, n * k, n * k));
    let truth = brute(&v, d, k);
    for i in 0..n {
        let got: Vec<(u32, f32)> = nb.row(i).collect();
        assert_eq!(got.len(), k);
        for (r, ((j, s), (tj, ts))) in got.iter().zip(&truth[i]).enumerate() {
            assert!((*s as f64 - ts).abs() < 1e-5, "item {i} rank {r}: score {s} vs {ts}");
            // Indices agree except between scores equal to float precision.
            if j != tj {
                assert!((*s as f64 - ts).abs() < 1e-6, "item {i} rank {r}: {j} vs {tj}");
            }
            assert_ne!(*j as usize, i, "item {i} is its own neighbour");
        }
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "item {i}: not best first");
    }
    assert_eq!(nb.row(5).next().unwrap().0, 77);
    assert_eq!(nb.row(77).next().unwrap().0, 5);
    assert!((nb.row(5).next().unwrap().1 - 1.0).abs() < 1e-6);
}

#[test]
fn small_archives_get_fewer_neighbours_and_one_item_none() {
    let v = clustered(4, 8, 2, 3);
    let nb = search(&v, 8, &NeighbourSettings::default()).unwrap();
    assert_eq!(nb.k, 3);
    assert!((0..4).all(|i| nb.row(i).count() == 3));
    let nb = search(&v[..8], 8, &NeighbourSettings::default()).unwrap();
    assert_eq!((nb.k, nb.ids.len()), (0, 0));
    assert!(search(&v[..7], 8, &NeighbourSettings::default()).is_err());
}

#[test]
fn the_ivf_path_reaches_its_recall_target_on_queries_it_did_not_tune_on() {
    let (n, d, k) = (20_000, 32, 10);
    let v = clustered(n, d, 200, 7);
    let s = NeighbourSettings { k, exact_max_flops: 1.0, recall_target: 0.95, ..Default::default() };
    let nb = search(&v, d, &s).unwrap();
    assert!(nb.info.method.starts_with("IVF"), "{}", nb.info.method);
    assert!(nb.info.recall >= 0.95, "{:?}", nb.info);
    assert_eq!(nb.info.recall_sample, 1000);
    // Independent check on rows the tuning sample did not use (it takes every 20th).
    let rows: Vec<usize> = (0..300).map(|i| i * 61 + 7).collect();
    let exact = search(&v, d, &NeighbourSettings { k, ..Default::default() }).unwrap();
    assert_eq!(exact.info.method, "exact");
    let pick = |ids: &[u32]| rows.iter().flat_map(|&i| ids[i * k..(i + 1) * k].to_vec()).collect::<Vec<u32>>();
    let recall = recall_at_k(&pick(&exact.ids), &pick(&nb.ids), k);
    assert!(recall >= 0.93, "recall on held-out rows {recall}");
    assert!(!nb.ids.contains(&NONE));
}

/// Rows `rows` of `v` (n × d) as their own set of embeddings, with ids `e<row>`.
fn subset(v: &[f32], d: usize, rows: &[usize]) -> (Vec<f32>, Vec<String>) {
    (rows.iter().flat_map(|&i| v[i * d..(i + 1) * d].iter().copied()).collect(), rows.iter().map(|i| format!("e{i:05}")).collect())
}

/// The same neighbours in the same order, with bit-identical scores: an update computes
/// scores in other BLAS blocks than a full search does, and both publish the canonical one.
fn assert_same_neighbours(a: &simsite::neighbours::Neighbours, b: &simsite::neighbours::Neighbours, n: usize) {
    assert_eq!(a.k, b.k);
    for i in 0..n {
        let r = i * a.k..(i + 1) * a.k;
        assert_eq!(a.ids[r.clone()], b.ids[r.clone()], "row {i}");
        let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.scores[r.clone()]), bits(&b.scores[r]), "row {i}");
    }
}

#[test]
fn adding_and_removing_a_few_items_updates_the_neighbours_as_a_full_search_would() {
    let (n, d) = (2000, 32);
    let s = NeighbourSettings { k: 20, ..Default::default() };
    let v = clustered(n, d, 10, 9);
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("neighbours.bin");

    // Last build: rows 0..1900 without 500..540.
    let before: Vec<usize> = (0..1900).filter(|i| !(500..540).contains(i)).collect();
    let (e0, ids0) = subset(&v, d, &before);
    let refs0: Vec<&str> = ids0.iter().map(|s| s.as_str()).collect();
    let (nb0, wide0, up) = search_or_update(&e0, d, &s, &row_keys(&refs0, &e0, d), None).unwrap();
    assert_eq!(up, None);
    assert_eq!((nb0.k, wide0.k), (20, 30));
    save_previous(&kept, &s, &row_keys(&refs0, &e0, d), &wide0).unwrap();

    // This build: 40 rows come back in the middle, 60 are new at the end, 30 went away.
    let after: Vec<usize> = (0..2000).filter(|i| !(100..130).contains(i)).collect();
    let (e1, ids1) = subset(&v, d, &after);
    let refs1: Vec<&str> = ids1.iter().map(|s| s.as_str()).collect();
    let keys1 = row_keys(&refs1, &e1, d);
    let (nb1, wide1, up) = search_or_update(&e1, d, &s, &keys1, load_previous(&kept)).unwrap();
    let up = up.expect("a 6% change is an update");
    assert_eq!((up.added, up.removed), (140, 30));
    // Rows that lost a neighbour or two keep their reserve: only the added ones and a few
    // that lost more than 10 are searched again.
    assert!(up.searched >= 140 && up.searched < 300, "{up:?}");
    assert_eq!(nb1.info.method, "exact");
    assert_same_neighbours(&nb1, &search(&e1, d, &s).unwrap(), after.len());

    // Nothing changed: the kept neighbours, as they were.
    save_previous(&kept, &s, &keys1, &wide1).unwrap();
    let (nb2, _, up) = search_or_update(&e1, d, &s, &keys1, load_previous(&kept)).unwrap();
    assert_eq!(up, Some(Update { added: 0, removed: 0, searched: 0 }));
    assert_eq!((nb2.ids, nb2.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>()), (nb1.ids.clone(), nb1.scores.iter().map(|s| s.to_bits()).collect()));

    // Another k, or more than 10% changed: a full search.
    let s30 = NeighbourSettings { k: 30, ..Default::default() };
    assert_eq!(search_or_update(&e1, d, &s30, &keys1, load_previous(&kept)).unwrap().2, None);
    let (e3, ids3) = subset(&v, d, &(0..1600).collect::<Vec<_>>());
    let refs3: Vec<&str> = ids3.iter().map(|s| s.as_str()).collect();
    assert_eq!(search_or_update(&e3, d, &s, &row_keys(&refs3, &e3, d), load_previous(&kept)).unwrap().2, None);

    // A changed embedding under the same id is a new row.
    let mut e4 = e1.clone();
    e4[..d].copy_from_slice(&v[1999 * d..2000 * d]);
    let (_, _, up) = search_or_update(&e4, d, &s, &row_keys(&refs1, &e4, d), load_previous(&kept)).unwrap();
    assert_eq!(up.map(|u| (u.added, u.removed)), Some((1, 1)));

    // A damaged file is no file.
    let bytes = std::fs::read(&kept).unwrap();
    std::fs::write(&kept, &bytes[..bytes.len() - 3]).unwrap();
    assert!(load_previous(&kept).is_none());
}

fn site(root: &Path, n: usize, extra: &str) {
    blob_archive(root, n, 0);
    std::fs::write(
        root.join("site-config.toml"),
        format!(
            "[archive]\nroot = \"archive\"\n[output]\ndir = \"out\"\ncache = \"cache\"\n[encoder]\nmodel = \"{}\"\n{extra}",
            fixture("tiny-meta.onnx").display()
        ),
    )
    .unwrap();
}

fn api_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = walk(&root.join("out/api"))
        .into_iter()
        .filter(|p| !p.ends_with("manifest.json"))
        .map(|p| (p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The item ids of the site whose `api/` folder is `api`.
fn read_ids(api: &Path) -> Vec<String> {
    serde_json::from_slice(&std::fs::read(api.join("ids.json")).unwrap()).unwrap()
}

#[test]
fn a_build_publishes_neighbours_items_and_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    site(root, 40, "[neighbours]\nk = 8\nshow = 5\n");
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let api = root.join("out/api");
    let ids = read_ids(&api);
    assert_eq!(ids.len(), 40);
    let bin = std::fs::read(api.join("neighbors.bin")).unwrap();
    assert_eq!(bin.len(), 40 * 8 * 8, "40 rows of 8 (u32, f32) pairs");
    let m: Value = serde_json::from_slice(&std::fs::read(api.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["items"], 40);
    assert_eq!(m["k"], 8);
    assert_eq!(m["show"], 5);
    assert_eq!(m["model"]["name"], "tiny-test");
    assert_eq!(m["neighbors"]["method"], "exact");
    assert!(m["built_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(m["layout"]["mode"], "fresh");
    let xy: Vec<f32> = std::fs::read(api.join("layout.f32")).unwrap().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(xy.len(), 80, "40 rows of (x, y)");
    for (row, id) in ids.iter().enumerate() {
        let item: Value = serde_json::from_slice(&std::fs::read(api.join(format!("items/{id}.json"))).unwrap()).unwrap();
        assert_eq!(item["id"], id.as_str());
        assert_eq!((item["x"].as_f64().unwrap() as f32, item["y"].as_f64().unwrap() as f32), (xy[2 * row], xy[2 * row + 1]));
        let rank = item["outlier_rank"].as_u64().unwrap();
        assert!((1..=40).contains(&rank));
        assert!(item["outlier_score"].as_f64().unwrap() >= 0.0);
        let nbs = item["neighbors"].as_array().unwrap();
        assert_eq!(nbs.len(), 8);
        // The JSON and the binary row say the same thing, best first, self excluded.
        let mut last = f32::INFINITY;
        for (t, nb) in nbs.iter().enumerate() {
            let at = (row * 8 + t) * 8;
            let j = u32::from_le_bytes(bin[at..at + 4].try_into().unwrap()) as usize;
            let s = f32::from_le_bytes(bin[at + 4..at + 8].try_into().unwrap());
            assert_eq!(nb["id"], ids[j].as_str());
            assert_eq!(nb["score"].as_f64().unwrap() as f32, s);
            assert_ne!(j, row);
            assert!(s <= last);
            last = s;
        }
    }

    let outl: Vec<Value> = serde_json::from_slice(&std::fs::read(api.join("outliers.json")).unwrap()).unwrap();
    assert_eq!(outl.len(), 40);
    assert_eq!(outl[0]["rank"], 1);
    let clusters: Vec<Value> = serde_json::from_slice(&std::fs::read(api.join("clusters.json")).unwrap()).unwrap();
    for c in &clusters {
        let body: Value = serde_json::from_slice(&std::fs::read(api.join(format!("clusters/{}.json", c["cluster"]))).unwrap()).unwrap();
        assert_eq!(body["size"], c["size"]);
        assert!(body["members"].as_array().unwrap().iter().any(|m| m == &c["representative"]));
    }
    assert!(serde_json::from_slice::<Value>(&std::fs::read(api.join("duplicates.json")).unwrap()).unwrap().is_array());

    // Same inputs: byte-identical api/ (the manifest's date aside), nothing rewritten.
    let before = api_files(root);
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(before, api_files(root));

    // An image removed: its item file goes, and nobody lists it as a neighbour.
    let gone = ids[3].clone();
    let rel = serde_json::from_slice::<Value>(&std::fs::read(api.join(format!("items/{gone}.json"))).unwrap()).unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(root.join("archive").join(rel)).unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(!api.join(format!("items/{gone}.json")).exists());
    let ids = read_ids(&api);
    assert_eq!(ids.len(), 39);
    assert!(!ids.contains(&gone));
}

#[test]
fn neighbour_settings_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    site(tmp.path(), 3, "[neighbours]\nk = 5\nshow = 9\n");
    let (code, _, err) = run(tmp.path(), &["build"]);
    assert_ne!(code, 0);
    assert!(err.contains("key `neighbours.show`: 9 must be between 1 and k = 5"), "{err}");
    assert!(err.contains("fix: edit `show` under [neighbours]"), "{err}");
}

#[test]
fn the_map_cannot_use_more_neighbours_than_are_stored() {
    let tmp = tempfile::tempdir().unwrap();
    site(tmp.path(), 3, "[neighbours]\nk = 5\nshow = 5\n[layout]\nn-neighbors = 10\n");
    let (code, _, err) = run(tmp.path(), &["build"]);
    assert_ne!(code, 0);
    assert!(err.contains("key `layout.n-neighbors`: 10 must be between 2 and [neighbours] k + 1 = 6"), "{err}");
}

/// A row that lost exactly its reserve of neighbours (10) keeps k, the fewest an update
/// keeps without searching again; copies of its last neighbour arrive, some named before
/// every other item, some after. The update must keep the copies a full build keeps: the
/// tie at the k-th place is broken by item order on the canonical score, not by the last
/// bit of another kernel's (a reviewer's case: 26 of 40 such nights differed before).
#[test]
fn a_tie_at_the_last_place_of_a_row_an_update_keeps_is_broken_as_a_full_build_breaks_it() {
    let (n, d, k) = (400usize, 128usize, 10usize);
    let s = NeighbourSettings { k, ..Default::default() };
    let v = clustered(n, d, 20, 17);
    let names: Vec<String> = (0..n).map(|i| format!("a{i:05}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let keys = row_keys(&refs, &v, d);
    let (_, wide, _) = search_or_update(&v, d, &s, &keys, None).unwrap();
    let w = wide.k;
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("neighbours.bin");
    save_previous(&kept, &s, &keys, &wide).unwrap();
    for x in (0..n).step_by(41) {
        let row = &wide.ids[x * w..(x + 1) * w];
        let gone: std::collections::HashSet<usize> = row[..10].iter().map(|&j| j as usize).collect();
        let last = row[w - 1] as usize;
        let copy = &v[last * d..(last + 1) * d];
        let (mut e, mut named) = (Vec::new(), Vec::new());
        for c in 0..3 {
            e.extend_from_slice(copy);
            named.push(format!("0copy{c}"));
        }
        for i in (0..n).filter(|i| !gone.contains(i)) {
            e.extend_from_slice(&v[i * d..(i + 1) * d]);
            named.push(names[i].clone());
        }
        for c in 3..6 {
            e.extend_from_slice(copy);
            named.push(format!("zcopy{c}"));
        }
        let refs: Vec<&str> = named.iter().map(String::as_str).collect();
        let keys = row_keys(&refs, &e, d);
        let (nightly, _, up) = search_or_update(&e, d, &s, &keys, load_previous(&kept)).unwrap();
        assert!(up.is_some(), "row {x}: an update");
        let (full, _, _) = search_or_update(&e, d, &s, &keys, None).unwrap();
        assert_same_neighbours(&nightly, &full, named.len());
    }
}

/// Byte-identical images, some added on a later night: the nightly update publishes the
/// neighbours a full build of the same archive does, byte for byte (an exact tie of scores,
/// once 1.0 against 0.9999999, is ordered by item order either way).
#[test]
fn identical_images_added_on_a_later_night_get_a_full_build_s_neighbours() {
    let (nightly, full) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The default encoder (128 numbers an image): with the test model's 8, FAISS and the
    // update's BLAS blocks happen to round alike.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/simsite-astro.onnx");
    for root in [nightly.path(), full.path()] {
        blob_archive(root, 60, 0);
        std::fs::write(
            root.join("site-config.toml"),
            format!("[archive]\nroot = \"archive\"\n[output]\ndir = \"out\"\ncache = \"cache\"\n[encoder]\nmodel = \"{}\"\n[neighbours]\nk = 10\nshow = 10\n", model.display()),
        )
        .unwrap();
        for c in 1..=6 {
            std::fs::copy(root.join("archive/img003.fits"), root.join(format!("archive/copy{c}.fits"))).unwrap();
        }
    }
    let (code, _, err) = run(nightly.path(), &["build"]);
    assert_eq!(code, 0, "{err}");
    for root in [nightly.path(), full.path()] {
        for c in [0, 9] {
            std::fs::copy(root.join("archive/img003.fits"), root.join(format!("archive/copy{c}.fits"))).unwrap();
        }
    }
    let (code, _, err) = run(nightly.path(), &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("updated from the last build's exact (2 added, 0 removed"), "the second night updates: {err}");
    let (code, _, err) = run(full.path(), &["build"]);
    assert_eq!(code, 0, "{err}");
    let read = |root: &Path, rel: &str| std::fs::read(root.join("out").join(rel)).unwrap();
    assert_eq!(read(nightly.path(), "api/ids.json"), read(full.path(), "api/ids.json"));
    assert!(read(nightly.path(), "api/neighbors.bin") == read(full.path(), "api/neighbors.bin"), "neighbors.bin differs");
    let neighbours = |root: &Path, id: &str| -> Value { serde_json::from_slice::<Value>(&read(root, &format!("api/items/{id}.json"))).unwrap()["neighbors"].clone() };
    let ids: Vec<String> = serde_json::from_slice(&read(full.path(), "api/ids.json")).unwrap();
    for id in &ids {
        assert_eq!(neighbours(nightly.path(), id), neighbours(full.path(), id), "{id}");
    }
    // Each copy's neighbours are the other copies, all at 1.0, in item order.
    let first = neighbours(full.path(), "copy1.fits");
    let listed: Vec<(&str, f64)> = first.as_array().unwrap().iter().map(|n| (n["id"].as_str().unwrap(), n["score"].as_f64().unwrap())).collect();
    assert_eq!(listed[..7], [("copy0.fits", 1.0), ("copy2.fits", 1.0), ("copy3.fits", 1.0), ("copy4.fits", 1.0), ("copy5.fits", 1.0), ("copy6.fits", 1.0), ("copy9.fits", 1.0)]);
}

#[test]
fn query_finds_an_image_in_a_built_site_and_reports_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    site(root, 20, "");
    let (code, _, err) = run(root, &["query", "archive/img007.fits"]);
    assert_eq!(code, 1);
    assert!(err.contains("no built site in") && err.contains("fix: run `simsite build` first"), "{err}");
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");

    // A copy outside the archive, under another name: its original comes first.
    std::fs::copy(root.join("archive/img007.fits"), root.join("new.fits")).unwrap();
    std::fs::write(root.join("notes.txt"), "not an image").unwrap();
    let (code, out, err) = run(root, &["query", "new.fits", "notes.txt", "-k", "4", "--json"]);
    assert_eq!(code, 2, "one file could not be read: {err}");
    let answers: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(answers.len(), 2);
    let list = answers[0]["neighbors"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["id"], "img007.fits");
    assert_eq!(list[0]["url"], "items/img007.fits/");
    assert!((list[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-5);
    assert!(list.windows(2).all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()));
    assert!(answers[1]["error"].as_str().unwrap().contains("notes.txt is not an image simsite reads"));

    // Another model than the site's: refused, with the fix.
    std::fs::write(
        root.join("other.toml"),
        format!("[output]\ndir = \"out\"\n[encoder]\nmodel = \"{}\"\n", fixture("tiny-nometa.onnx").display()),
    )
    .unwrap();
    let (code, _, err) = run(root, &["query", "new.fits", "--config", "other.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("was built with model tiny-test") && err.contains("fix: query with the config the site was built with"), "{err}");

    // The site's model with another stretch (tomorrow's build's, say): refused too, as
    // its images would be prepared otherwise than the site's were.
    let config = std::fs::read_to_string(root.join("site-config.toml")).unwrap();
    std::fs::write(root.join("linear.toml"), format!("{config}[preprocess]\nstretch = \"linear\"\n")).unwrap();
    let (code, _, err) = run(root, &["query", "new.fits", "--config", "linear.toml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("was built with other preprocessing settings ([preprocess], [fits])") && err.contains("fix: query with the config"), "{err}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(root.join("out/api/manifest.json")).unwrap()).unwrap();
    assert!(manifest["preprocess_digest"].as_str().unwrap().starts_with("blake3:"), "{manifest}");
}

#[test]
fn overlapping_cutouts_of_one_object_are_not_each_others_neighbours() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    site(root, 12, "");
    // img001 is a second cutout of img000's object: same pixels, 0.4" away on the sky.
    std::fs::copy(root.join("archive/img000.fits"), root.join("archive/img001.fits")).unwrap();
    let mut cat = String::from("path,ra,dec\n");
    for i in 0..12 {
        let (ra, dec) = match i {
            0 => (150.0, 2.0),
            1 => (150.0001, 2.0),
            _ => (10.0 * i as f64, -30.0),
        };
        cat += &format!("img{i:03}.fits,{ra},{dec}\n");
    }
    std::fs::write(root.join("cat.csv"), cat).unwrap();
    let config = std::fs::read_to_string(root.join("site-config.toml")).unwrap();
    let first = |root: &Path| -> (String, f64) {
        let item: Value = serde_json::from_slice(&std::fs::read(root.join("out/api/items/img000.fits.json")).unwrap()).unwrap();
        (item["neighbors"][0]["id"].as_str().unwrap().to_string(), item["neighbors"][0]["score"].as_f64().unwrap())
    };
    std::fs::write(root.join("site-config.toml"), format!("{config}[catalogue]\npath = \"cat.csv\"\n")).unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(first(root).0, "img001.fits", "without the filter the other cutout comes first");
    assert!((first(root).1 - 1.0).abs() < 1e-5);
    // The page says where it is, with links to the sky around it.
    let page = std::fs::read_to_string(root.join("out/items/img000.fits/index.html")).unwrap();
    assert!(page.contains("<dt>Sky</dt><dd class=sky>10:00:00.00 +02:00:00.0 (l 236.9546°, b +41.9051°) <a href=\"https://simbad.cds.unistra.fr/simbad/sim-coo?Coord=150.000000+2.000000&Radius=2&Radius.unit=arcmin\""), "{page}");
    assert!(page.contains("AladinLite/?target=150.000000+2.000000&fov=0.25"), "{page}");
    let south = std::fs::read_to_string(root.join("out/items/img005.fits/index.html")).unwrap();
    assert!(south.contains("03:20:00.00 -30:00:00.0") && south.contains("Coord=50.000000+-30.000000"), "{south}");

    std::fs::write(root.join("site-config.toml"), format!("{config}[catalogue]\npath = \"cat.csv\"\n[neighbours]\nmin-separation-arcsec = 5\n")).unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let item: Value = serde_json::from_slice(&std::fs::read(root.join("out/api/items/img000.fits.json")).unwrap()).unwrap();
    let ids: Vec<&str> = item["neighbors"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10, "the others still fill the list");
    assert!(!ids.contains(&"img001.fits"), "{ids:?}");
    // Still a near-duplicate: the same pixels at the same place are what that list is for.
    let dups: Value = serde_json::from_slice(&std::fs::read(root.join("out/api/duplicates.json")).unwrap()).unwrap();
    assert!(
        dups.as_array().unwrap().iter().any(|p| p["a"] == "img000.fits" && p["b"] == "img001.fits" && p["score"].as_f64().unwrap() <= 1.0),
        "{dups}"
    );
}

#[test]
fn sky_separation_is_right() {
    use simsite::neighbours::separation_arcsec;
    assert!((separation_arcsec((150.0, 2.0), (150.0001, 2.0)) - 0.35975).abs() < 1e-3);
    assert!((separation_arcsec((0.0, 89.0), (180.0, 89.0)) - 7200.0).abs() < 1e-6);
    assert!((separation_arcsec((10.0, -30.0), (10.0, -30.0))).abs() < 1e-9);
}

#[test]
fn a_cache_file_that_cannot_be_written_stops_the_build_before_it_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    site(root, 30, "");
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    // The kept neighbours (written beside the rest of the build) cannot be replaced: a
    // folder with a file in it stands where they go.
    let kept = root.join("cache/neighbours.bin");
    std::fs::remove_file(&kept).unwrap();
    std::fs::create_dir_all(kept.join("x")).unwrap();
    blob_archive(root, 2, 30);
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot keep the neighbours in the cache folder: {}", kept.display())), "{err}");
    // The site served is the last one, whole.
    let ids = read_ids(&root.join("out/api"));
    assert_eq!(ids.len(), 30);
    // Once it can be written again, the build publishes.
    std::fs::remove_dir_all(&kept).unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let ids = read_ids(&root.join("out/api"));
    assert_eq!(ids.len(), 32);
}
