//! The site's machine-readable contract under `api/` (see the README's "Output" section):
//! `ids.json`, `neighbors.bin`, `items/<id>.json` and `manifest.json`. Every file but the
//! manifest (which carries the build time) is byte-identical between identical builds, and
//! unchanged files are not rewritten.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::catalogue::Item;
use crate::config::Settings;
use crate::fsutil;
use crate::layout::LayoutInfo;
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
    built_at: String,
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
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        s.title, s.preprocess, s.thumbs, s.neighbours, s.catalogue.as_ref().map(|c| (&c.join_on, &c.columns))
    );
    format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex())
}

fn write(path: &Path, bytes: &[u8]) -> Result<bool> {
    fsutil::write_if_changed(path, bytes).with_context(|| format!("cannot write {}\n  fix: check --out / [output] dir and its permissions", path.display()))
}

/// One item's JSON, keys in the README's order (`cluster` null for an item in no cluster).
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
    neighbors: Vec<NeighbourJson<'a>>,
}

#[derive(Serialize)]
struct NeighbourJson<'a> {
    id: &'a str,
    score: f32,
}

fn item_json<'a>(item: &'a Item, nb: &Neighbours, xy: &[f32], st: &Structure, i: usize, items: &[&'a Item]) -> ItemJson<'a> {
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
        neighbors: nb.row(i).map(|(j, score)| NeighbourJson { id: &items[j as usize].id, score }).collect(),
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
fn publish_structure<'a>(api: &Path, items: &[&'a Item], st: &Structure) -> Result<usize> {
    let id = |i: u32| -> &'a str { items[i as usize].id.as_str() };
    let mut changed = 0;
    let cluster = |c: usize, k: &Cluster, members: Option<Vec<&'a str>>| ClusterJson {
        cluster: c,
        size: k.members.len(),
        representative: id(k.representative),
        members,
    };
    let summary: Vec<ClusterJson> = st.clusters.iter().enumerate().map(|(c, k)| cluster(c, k, None)).collect();
    changed += write(&api.join("clusters.json"), &serde_json::to_vec(&summary)?)? as usize;
    let dir = api.join("clusters");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    let mut keep = HashSet::new();
    for (c, k) in st.clusters.iter().enumerate() {
        let body = cluster(c, k, Some(k.members.iter().map(|&i| id(i)).collect()));
        let name = format!("{c}.json");
        changed += write(&dir.join(&name), &serde_json::to_vec(&body)?)? as usize;
        keep.insert(name);
    }
    changed += remove_others(&dir, &keep)?;
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| st.outlier_rank[i]);
    let outliers: Vec<OutlierJson> = order
        .iter()
        .take(OUTLIERS_LISTED)
        .map(|&i| OutlierJson { id: &items[i].id, score: st.outlier_score[i], rank: st.outlier_rank[i] })
        .collect();
    changed += write(&api.join("outliers.json"), &serde_json::to_vec(&outliers)?)? as usize;
    let dups: Vec<PairJson> = st.duplicates.iter().map(|p| PairJson { a: id(p.a), b: id(p.b), score: p.score }).collect();
    changed += write(&api.join("duplicates.json"), &serde_json::to_vec(&dups)?)? as usize;
    Ok(changed)
}

/// Removes the `.json` files in `dir` not named in `keep`; returns how many.
fn remove_others(dir: &Path, keep: &HashSet<String>) -> Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !keep.contains(&name) {
            std::fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}

fn bounds(xy: &[f32]) -> [f32; 4] {
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

/// Writes `api/ids.json`, `api/neighbors.bin`, `api/layout.f32`, `api/items/<id>.json` (removing those of
/// items that are gone) and `api/manifest.json`. Returns how many files were (re)written.
pub fn publish(
    settings: &Settings,
    items: &[&Item],
    nb: &Neighbours,
    xy: &[f32],
    layout: &LayoutInfo,
    st: &Structure,
    skipped: usize,
    model: &ModelRef,
) -> Result<usize> {
    let api = settings.out.join("api");
    let dir = api.join("items");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    let mut changed = 0;
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    changed += write(&api.join("ids.json"), &serde_json::to_vec(&ids)?)? as usize;
    changed += write(&api.join("neighbors.bin"), &nb.to_bin())? as usize;
    changed += write(&api.join("layout.f32"), &crate::layout::f32_bytes(xy))? as usize;

    let mut keep = HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = format!("{}.json", item.id);
        let bytes = serde_json::to_vec(&item_json(item, nb, xy, st, i, items))?;
        changed += write(&dir.join(&name), &bytes)? as usize;
        keep.insert(name);
    }
    changed += remove_others(&dir, &keep)?;

    changed += publish_structure(&api, items, st)?;

    let manifest = Manifest {
        version: API_VERSION,
        simsite_version: env!("CARGO_PKG_VERSION"),
        items: items.len(),
        skipped,
        model: json!({"name": model.name, "digest": model.digest, "dim": model.dim}),
        config_digest: config_digest(settings),
        built_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        k: nb.k,
        show: settings.neighbours.show.min(nb.k),
        neighbors: &nb.info,
        layout: LayoutJson { mode: &layout.mode, epochs: layout.epochs, bounds: bounds(xy) },
        clusters: st.clusters.len(),
        duplicates: st.duplicates.len(),
    };
    changed += write(&api.join("manifest.json"), &serde_json::to_vec_pretty(&manifest)?)? as usize;
    Ok(changed)
}
