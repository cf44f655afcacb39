//! The site's machine-readable contract under `api/` (see the README's "Output" section):
//! `ids.json`, `neighbors.bin`, `items/<id>.json` and `manifest.json`. Every file but the
//! manifest (which carries the build and check times) is byte-identical between identical
//! builds; files go into a [`Release`], which keeps unchanged ones as they were.

use anyhow::Result;
use serde::Serialize;
use serde_json::{json, Value};

use crate::catalogue::Item;
use crate::config::Settings;
use crate::layout::LayoutInfo;
use crate::publish::Release;
use crate::neighbours::{Neighbours, SearchInfo};
use crate::structure::{Cluster, Pair};

/// What the structure stage found, for the api files.
pub struct Structure<'a> {
    pub clusters: &'a [Cluster],
    pub cluster_of: &'a [Option<u32>],
    pub outlier_score: &'a [f32],
    pub outlier_rank: &'a [u32],
    pub duplicates: &'a [Pair],
}

/// Outliers listed in api/outliers.json (every item's rank is in its own JSON).
pub const OUTLIERS_LISTED: usize = 1000;

/// Format of the files under `api/`; bumped when a reader would need to change.
pub const API_VERSION: u32 = 1;

#[derive(Serialize)]
struct Manifest<'a> {
    version: u32,
    simsite_version: &'a str,
    items: usize,
    skipped: usize,
    model: Value,
    config_digest: String,
    /// The preprocessing settings' digest (`[preprocess]`, `[fits]`, the model's input
    /// size and channels): `simsite query` must prepare images as the build did.
    preprocess_digest: String,
    /// When the site's content last changed.
    built_at: String,
    /// When a build last ran (a rebuild that changes nothing changes only this).
    checked_at: String,
    k: usize,
    show: usize,
    neighbors: &'a SearchInfo,
    layout: LayoutJson<'a>,
    clusters: usize,
    duplicates: usize,
}

#[derive(Serialize)]
struct LayoutJson<'a> {
    mode: &'a str,
    epochs: usize,
    /// [min x, min y, max x, max y] of the map.
    bounds: [f32; 4],
}

pub struct ModelRef<'a> {
    pub name: &'a str,
    pub digest: &'a str,
    pub dim: usize,
}

/// Everything in the settings that changes the published output, as one digest.
pub fn config_digest(s: &Settings) -> String {
    // Not the folders' paths (the same site built elsewhere has the same digest), nor the
    // catalogue file's: its columns and how they are read are in.
    let catalogue = s.catalogue.as_ref().map(|c| (&c.join_on, &c.id, &c.path_column, &c.title, &c.url, &c.ra, &c.dec, &c.columns));
    let site = (&s.site.base_url, &s.site.colour_by, s.site.templates.is_some(), s.site.statics.is_some());
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{site:?}|{:?}|{:?}|{:?}",
        s.title, s.preprocess, s.thumbs, s.neighbours, catalogue, s.layout, s.structure, s.header_fields
    );
    format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex())
}

/// The manifest's `preprocess_digest` for these settings.
pub fn preprocess_digest(p: &crate::config::PreprocessSettings) -> String {
    format!("blake3:{}", p.digest().to_hex())
}

/// One item's JSON but its neighbours, keys in the README's order (`cluster` null for an
/// item in no cluster); `neighbors` follows, last (see `write_item_json`).
#[derive(Serialize)]
struct ItemJson<'a> {
    id: &'a str,
    path: &'a str,
    title: &'a str,
    url: Option<&'a str>,
    meta: serde_json::Map<String, Value>,
    x: f32,
    y: f32,
    cluster: Option<u32>,
    outlier_score: f32,
    outlier_rank: u32,
}

/// Every item's id as a JSON string, escaped once per build rather than in each of the ~50
/// neighbour rows naming it, and held in one block: the rows name ids in no order, and
/// reading them from a box each (scattered over the heap) made copying them wait on memory
/// for most of the time an item's JSON took (perf: ~1 s of CPU a night at 115,000 items).
struct JsonIds {
    text: Vec<u8>,
    /// Item `i`'s id is `text[at[i]..at[i + 1]]`.
    at: Vec<usize>,
}

impl JsonIds {
    fn new(items: &[&Item]) -> Result<JsonIds> {
        let mut ids = JsonIds { text: Vec::new(), at: vec![0] };
        for it in items {
            serde_json::to_writer(&mut ids.text, &it.id)?;
            ids.at.push(ids.text.len());
        }
        Ok(ids)
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.text[self.at[i]..self.at[i + 1]]
    }
}

/// Writes item `i`'s JSON into `buf`: `head`, then its neighbours as
/// `"neighbors":[{"id":…,"score":…},…]` (scores formatted by serde_json, as the rest).
fn write_item_json(buf: &mut Vec<u8>, head: &ItemJson, nb: &Neighbours, i: usize, ids: &JsonIds) -> Result<()> {
    serde_json::to_writer(&mut *buf, head)?;
    debug_assert_eq!(buf.last(), Some(&b'}'));
    buf.pop();
    buf.extend_from_slice(b",\"neighbors\":[");
    // Every neighbour's id is read once before any is copied: these reads do not wait for
    // each other, so the processor waits for their cache misses side by side, not one by one.
    std::hint::black_box(nb.row(i).fold(0u8, |acc, (j, _)| acc ^ ids.get(j as usize)[0]));
    for (n, (j, score)) in nb.row(i).enumerate() {
        if n > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"id\":");
        buf.extend_from_slice(ids.get(j as usize));
        buf.extend_from_slice(b",\"score\":");
        serde_json::to_writer(&mut *buf, &score)?;
        buf.push(b'}');
    }
    buf.extend_from_slice(b"]}");
    Ok(())
}

fn item_json<'a>(item: &'a Item, xy: &[f32], st: &Structure, i: usize) -> ItemJson<'a> {
    ItemJson {
        id: &item.id,
        path: &item.entry.rel_str,
        title: &item.title,
        url: item.url.as_deref(),
        meta: item.meta.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect(),
        x: xy[2 * i],
        y: xy[2 * i + 1],
        cluster: st.cluster_of[i],
        outlier_score: st.outlier_score[i],
        outlier_rank: st.outlier_rank[i],
    }
}

#[derive(Serialize)]
struct ClusterJson<'a> {
    cluster: usize,
    size: usize,
    representative: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<&'a str>>,
}

#[derive(Serialize)]
struct OutlierJson<'a> {
    id: &'a str,
    score: f32,
    rank: u32,
}

#[derive(Serialize)]
struct PairJson<'a> {
    a: &'a str,
    b: &'a str,
    score: f32,
}

/// `api/clusters.json` (summary), `api/clusters/<n>.json` (members), `api/outliers.json`
/// (the strangest first) and `api/duplicates.json`. Structs rather than `json!`, so keys
/// keep the README's order and scores print as f32.
fn publish_structure<'a>(release: &Release, items: &[&'a Item], st: &Structure) -> Result<()> {
    let id = |i: u32| -> &'a str { items[i as usize].id.as_str() };
    let cluster = |c: usize, k: &Cluster, members: Option<Vec<&'a str>>| ClusterJson {
        cluster: c,
        size: k.members.len(),
        representative: id(k.representative),
        members,
    };
    let summary: Vec<ClusterJson> = st.clusters.iter().enumerate().map(|(c, k)| cluster(c, k, None)).collect();
    release.put("api/clusters.json", &serde_json::to_vec(&summary)?)?;
    for (c, k) in st.clusters.iter().enumerate() {
        let body = cluster(c, k, Some(k.members.iter().map(|&i| id(i)).collect()));
        release.put(&format!("api/clusters/{c}.json"), &serde_json::to_vec(&body)?)?;
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| st.outlier_rank[i]);
    let outliers: Vec<OutlierJson> = order
        .iter()
        .take(OUTLIERS_LISTED)
        .map(|&i| OutlierJson { id: &items[i].id, score: st.outlier_score[i], rank: st.outlier_rank[i] })
        .collect();
    release.put("api/outliers.json", &serde_json::to_vec(&outliers)?)?;
    let dups: Vec<PairJson> = st.duplicates.iter().map(|p| PairJson { a: id(p.a), b: id(p.b), score: p.score }).collect();
    release.put("api/duplicates.json", &serde_json::to_vec(&dups)?)?;
    Ok(())
}

pub fn bounds(xy: &[f32]) -> [f32; 4] {
    let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    for p in xy.chunks_exact(2) {
        b = [b[0].min(p[0]), b[1].min(p[1]), b[2].max(p[0]), b[3].max(p[1])];
    }
    if xy.is_empty() {
        [0.0; 4]
    } else {
        b
    }
}

/// Puts `api/ids.json`, `api/neighbors.bin`, `api/layout.f32`, `api/items/<id>.json` and the
/// structure files into the release.
pub fn publish(release: &Release, items: &[&Item], nb: &Neighbours, xy: &[f32], st: &Structure) -> Result<()> {
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    release.put("api/ids.json", &serde_json::to_vec(&ids)?)?;
    release.put("api/neighbors.bin", &nb.to_bin())?;
    release.put("api/layout.f32", &crate::layout::f32_bytes(xy))?;
    use rayon::prelude::*;
    let json_ids = JsonIds::new(items)?;
    // One buffer per worker, grown once: serialising into a fresh `Vec` reallocated and
    // copied each item's bytes five times over.
    (0..items.len()).into_par_iter().try_for_each_init(Vec::new, |buf, i| -> Result<()> {
        buf.clear();
        write_item_json(buf, &item_json(items[i], xy, st, i), nb, i, &json_ids)?;
        release.put(&format!("api/items/{}.json", items[i].id), buf)
    })?;
    publish_structure(release, items, st)
}

/// What the manifest says besides the times.
pub struct ManifestFacts<'a> {
    pub items: usize,
    pub skipped: usize,
    pub model: &'a ModelRef<'a>,
    pub nb: &'a Neighbours,
    pub xy: &'a [f32],
    pub layout: &'a LayoutInfo,
    pub clusters: usize,
    pub duplicates: usize,
}

/// Puts `api/manifest.json`, last. When nothing else in the release changed, it is the
/// served manifest with only `checked_at` moved on (a no-op rebuild changes nothing else),
/// as long as what only the manifest tells is the same: the files skipped (a new broken
/// file changes no other file), the model (new metadata in the same weights changes no
/// embedding), the config's and the preprocessing's digests and simsite's version.
pub fn put_manifest(release: &Release, settings: &Settings, f: &ManifestFacts) -> Result<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    const PATH: &str = "api/manifest.json";
    let manifest = Manifest {
        version: API_VERSION,
        simsite_version: env!("CARGO_PKG_VERSION"),
        items: f.items,
        skipped: f.skipped,
        model: json!({"name": f.model.name, "digest": f.model.digest, "dim": f.model.dim}),
        config_digest: config_digest(settings),
        preprocess_digest: preprocess_digest(&settings.preprocess),
        built_at: now.clone(),
        checked_at: now.clone(),
        k: f.nb.k,
        show: settings.neighbours.show.min(f.nb.k),
        neighbors: &f.nb.info,
        layout: LayoutJson { mode: &f.layout.mode, epochs: f.layout.epochs, bounds: bounds(f.xy) },
        clusters: f.clusters,
        duplicates: f.duplicates,
    };
    if !release.changed_so_far() {
        let served = release.previous(PATH);
        if let Some((bytes, prev)) = served.as_ref().and_then(|b| Some((b, serde_json::from_slice::<Value>(b).ok()?))) {
            // Not the layout's mode and epochs: they say how this build made the same map.
            let fresh = serde_json::to_value(&manifest)?;
            let same = ["skipped", "model", "config_digest", "preprocess_digest", "simsite_version"].iter().all(|k| prev.get(k) == fresh.get(k));
            // Only the time's text changes, in place: the keys keep their order and layout.
            let stamp = |t: &Value| format!("\"checked_at\": {t}");
            let text = std::str::from_utf8(bytes).ok();
            if let (true, Some(old), Some(text)) = (same, prev.get("checked_at"), text) {
                if text.matches(&stamp(old)).count() == 1 {
                    return release.put(PATH, text.replace(&stamp(old), &stamp(&json!(now))).as_bytes());
                }
            }
        }
    }
    release.put(PATH, &serde_json::to_vec_pretty(&manifest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_digest_follows_what_changes_the_site_and_not_where_it_is() {
        let settings = |archive: &str, out: &str| {
            let o = crate::config::Overrides { archive: Some(archive.into()), out: Some(out.into()), cache: Some("/tmp/c".into()), ..Default::default() };
            crate::config::resolve(crate::config::RawConfig::default(), None, std::path::Path::new("/tmp"), &o).unwrap()
        };
        let base = config_digest(&settings("/tmp/a", "/tmp/o"));
        assert_eq!(config_digest(&settings("/srv/a", "/srv/o")), base);
        let mut s = settings("/tmp/a", "/tmp/o");
        s.layout.min_dist = 0.5;
        assert_ne!(config_digest(&s), base);
        let mut s = settings("/tmp/a", "/tmp/o");
        s.structure.min_cluster_size = 25;
        assert_ne!(config_digest(&s), base);
        let mut s = settings("/tmp/a", "/tmp/o");
        s.site.base_url = "https://archive.example/".into();
        assert_ne!(config_digest(&s), base);
    }

    /// The item JSON with its neighbours as serde would write them, to compare with.
    #[derive(Serialize)]
    struct Whole<'a> {
        #[serde(flatten)]
        head: ItemJson<'a>,
        neighbors: Vec<Row<'a>>,
    }

    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        score: f32,
    }

    fn item(id: &str, meta: &[(&str, &str)]) -> Item {
        let rel = format!("{id}.png");
        Item {
            id: id.into(),
            entry: crate::scan::ScanEntry {
                rel: rel.clone().into(),
                rel_str: rel.clone(),
                abs: format!("/archive/{rel}").into(),
                format: crate::scan::Format::Png,
                stem: id.into(),
                size: 1,
                meta: None,
            },
            title: format!("Title of \"{id}\"\n"),
            url: (id.len() % 2 == 0).then(|| format!("https://archive.example/{id}")),
            ra: None,
            dec: None,
            meta: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn item_json_written_by_hand_is_what_serde_writes() {
        let owned = [item("a", &[("band", "r")]), item("b~ünïcode", &[]), item("c\\\"q", &[("z", "1"), ("a", "é")]), item("dd", &[])];
        let items: Vec<&Item> = owned.iter().collect();
        let k = 3;
        // Rows best first, with padding (NONE) where an item has fewer than k neighbours;
        // scores that serde writes in different shapes (exponents, integers).
        let ids = vec![1, 2, 3, NONE_ID, NONE_ID, NONE_ID, 3, 0, 1, 2, 1, NONE_ID];
        let scores = vec![0.999_999_9, 0.5, 1e-8, f32::NAN, f32::NAN, f32::NAN, -0.25, 0.333_333_34, 7.0e-5, 0.1, 0.0, f32::NAN];
        let info = crate::neighbours::SearchInfo { method: "exact".into(), k, recall: 1.0, recall_sample: 0, device: "cpu".into(), device_note: String::new(), seconds: 0.0 };
        let nb = Neighbours { k, ids, scores, info };
        let xy = [0.5, -1.25, 3.0, 1e-3, 0.0, 0.0, 2.5, 2.5];
        let st = Structure {
            clusters: &[],
            cluster_of: &[Some(0), None, Some(2), None],
            outlier_score: &[0.1, 0.7, 0.45, 0.05],
            outlier_rank: &[3, 1, 2, 4],
            duplicates: &[],
        };
        let json_ids = JsonIds::new(&items).unwrap();
        let mut buf = Vec::new();
        for i in 0..items.len() {
            buf.clear();
            write_item_json(&mut buf, &item_json(items[i], &xy, &st, i), &nb, i, &json_ids).unwrap();
            let neighbors = nb.row(i).map(|(j, score)| Row { id: &items[j as usize].id, score }).collect();
            let whole = serde_json::to_vec(&Whole { head: item_json(items[i], &xy, &st, i), neighbors }).unwrap();
            assert_eq!(String::from_utf8_lossy(&buf), String::from_utf8_lossy(&whole), "item {i}");
            if i == 1 {
                // An item with no neighbours still has the key, with an empty list.
                assert!(buf.ends_with(b",\"neighbors\":[]}"), "{}", String::from_utf8_lossy(&buf));
            }
        }
    }

    const NONE_ID: u32 = crate::neighbours::NONE;
}
