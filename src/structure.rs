//! The archive's structure from its neighbours and map: clusters, outliers and
//! near-duplicates.

use rayon::prelude::*;
use serde::Serialize;

use crate::neighbours::Neighbours;

/// How outliers are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutlierMethod {
    /// Isolation Forest on the embeddings (200 trees of 256 items).
    IsolationForest,
    /// Mean cosine distance to the first `outlier_k` neighbours.
    Neighbours,
}

/// `[structure]` in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct StructureSettings {
    pub outlier_method: OutlierMethod,
    /// Neighbours whose mean cosine distance is an item's outlier score.
    pub outlier_k: usize,
    /// Pairs at or above this cosine similarity are near-duplicates.
    pub duplicate_threshold: f32,
    /// The smallest group of items that counts as a cluster; 0: automatic (0.5 % of the
    /// items, at least 10).
    pub min_cluster_size: usize,
}

impl StructureSettings {
    /// Outlier scores (higher is stranger) and ranks (1 = strangest) of the n items.
    pub fn outliers(&self, emb: &[f32], d: usize, nb: &Neighbours) -> (Vec<f32>, Vec<u32>) {
        let n = emb.len() / d.max(1);
        match self.outlier_method {
            OutlierMethod::Neighbours => outliers(nb, n, self.outlier_k),
            OutlierMethod::IsolationForest => {
                let s = isolation_scores(emb, d, FOREST_TREES, FOREST_SAMPLE, FOREST_SEED);
                let r = ranks(&s);
                (s, r)
            }
        }
    }

    pub fn cluster_size(&self, n: usize) -> usize {
        if self.min_cluster_size > 0 {
            self.min_cluster_size
        } else {
            (n / 200).max(10)
        }
    }
}

impl Default for StructureSettings {
    fn default() -> Self {
        StructureSettings { outlier_method: OutlierMethod::IsolationForest, outlier_k: 10, duplicate_threshold: 0.997, min_cluster_size: 0 }
    }
}

/// Outlier scores (mean cosine distance to the first `k` neighbours; higher is stranger)
/// and ranks (1 = strangest; ties by item order).
pub fn outliers(nb: &Neighbours, n: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
    let scores: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| {
            if nb.k == 0 {
                return 0.0;
            }
            let (sum, cnt) = nb.row(i).take(k.max(1)).fold((0f32, 0usize), |(s, c), (_, sim)| (s + (1.0 - sim), c + 1));
            if cnt == 0 {
                0.0
            } else {
                sum / cnt as f32
            }
        })
        .collect();
    let rank = ranks(&scores);
    (scores, rank)
}

/// A near-duplicate pair (item indices, `a < b`) and its cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pair {
    pub a: u32,
    pub b: u32,
    pub score: f32,
}

/// Pairs among the stored neighbours at or above `threshold`, each once, most similar
/// first (ties by indices).
pub fn duplicates(nb: &Neighbours, n: usize, threshold: f32) -> Vec<Pair> {
    if nb.k == 0 {
        return Vec::new();
    }
    let mut pairs: Vec<Pair> = (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            nb.row(i)
                .take_while(move |&(_, s)| s >= threshold)
                .filter(move |&(j, _)| (j as usize) != i)
                .map(move |(j, s)| Pair { a: (i as u32).min(j), b: (i as u32).max(j), score: s })
        })
        .collect();
    // Both directions of a pair are listed when each is in the other's top k; keep one
    // (the higher score, should the two products differ in the last bit).
    pairs.sort_by(|x, y| (x.a, x.b).cmp(&(y.a, y.b)).then(y.score.total_cmp(&x.score)));
    pairs.dedup_by(|x, y| x.a == y.a && x.b == y.b);
    pairs.sort_by(|x, y| y.score.total_cmp(&x.score).then((x.a, x.b).cmp(&(y.a, y.b))));
    pairs
}

/// One cluster: its members (item indices, ascending) and its representative, the member
/// closest (cosine) to the cluster's mean embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub members: Vec<u32>,
    pub representative: u32,
}

/// Clusters found by HDBSCAN (petal-clustering) on the 2-D map. HDBSCAN leaves some items
/// as noise; each of those joins the cluster most common among its first neighbours, so
/// every item has a cluster unless none of its neighbours does. Then they are numbered by
/// size (largest first; ties by smallest member). Returns the clusters and each item's cluster.
pub fn clusters(xy: &[f32], emb: &[f32], d: usize, nb: &Neighbours, min_size: usize) -> (Vec<Cluster>, Vec<Option<u32>>) {
    use ndarray17::Array2;
    use petal_clustering::{Fit, HDbscan};
    let n = xy.len() / 2;
    let mut of: Vec<Option<u32>> = vec![None; n];
    if n < min_size.max(2) {
        return (Vec::new(), of);
    }
    let points = Array2::from_shape_vec((n, 2), xy.iter().map(|&v| v as f64).collect()).expect("n x 2");
    let mut h = HDbscan { min_samples: 10.min(n - 1), min_cluster_size: min_size, ..Default::default() };
    let (found, _noise, _) = h.fit(&points, None);
    let mut groups: Vec<Vec<u32>> = found.into_values().map(|mut v| {
        v.sort_unstable();
        v.into_iter().map(|i| i as u32).collect()
    }).collect();
    groups.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    for (c, g) in groups.iter().enumerate() {
        for &i in g {
            of[i as usize] = Some(c as u32);
        }
    }
    // Noise joins its neighbours' most common cluster (ties: the lower number).
    let core = of.clone();
    for i in 0..n {
        if core[i].is_some() || nb.k == 0 {
            continue;
        }
        of[i] = neighbours_cluster(nb, i, |j| core[j]);
    }
    // Numbered by size once noise has joined (what the pages show), largest first; ties:
    // the smallest member.
    let count = groups.len();
    let mut size_first: Vec<(usize, u32, u32)> = (0..count as u32).map(|c| (0, u32::MAX, c)).collect();
    for (i, c) in of.iter().enumerate() {
        if let Some(c) = c {
            let e = &mut size_first[*c as usize];
            e.0 += 1;
            e.1 = e.1.min(i as u32);
        }
    }
    size_first.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut number = vec![0u32; count];
    for (new, &(_, _, old)) in size_first.iter().enumerate() {
        number[old as usize] = new as u32;
    }
    for c in of.iter_mut().flatten() {
        *c = number[*c as usize];
    }
    (with_representatives(&of, count, emb, d), of)
}

/// The clusters of a map whose items mostly kept their places (`layout`'s "placed" mode):
/// every item the last build clustered keeps its cluster and number (so cluster pages keep
/// their addresses from night to night), and a new item joins the cluster most common
/// among its first neighbours, as noise does; so does an item the map placed anew (`anew`:
/// its file changed). `None` (cluster afresh) when the last
/// clustering was made with another `min-cluster-size` setting (`setting`; 0 is automatic),
/// or a cluster would be left with under half of `min_size`, the size now required.
#[allow(clippy::too_many_arguments)]
pub fn clusters_kept(
    prev: &KeptClusters,
    ids: &[&str],
    anew: &[bool],
    emb: &[f32],
    d: usize,
    nb: &Neighbours,
    setting: usize,
    min_size: usize,
) -> Option<(Vec<Cluster>, Vec<Option<u32>>)> {
    if prev.setting != setting || prev.ids.len() != prev.cluster.len() || anew.len() != ids.len() {
        return None;
    }
    let count = prev.cluster.iter().flatten().map(|&c| c as usize + 1).max().unwrap_or(0);
    let old: std::collections::HashMap<&str, Option<u32>> = prev.ids.iter().map(|s| s.as_str()).zip(prev.cluster.iter().copied()).collect();
    let known: Vec<Option<Option<u32>>> = ids.iter().zip(anew).map(|(id, &a)| if a { None } else { old.get(id).copied() }).collect();
    let mut of: Vec<Option<u32>> = known.iter().map(|k| k.flatten()).collect();
    for i in 0..ids.len() {
        if known[i].is_some() || nb.k == 0 {
            continue;
        }
        of[i] = neighbours_cluster(nb, i, |j| known[j].flatten());
    }
    let mut sizes = vec![0usize; count];
    for c in of.iter().flatten() {
        sizes[*c as usize] += 1;
    }
    if sizes.iter().any(|&s| s * 2 < min_size) {
        return None;
    }
    Some((with_representatives(&of, count, emb, d), of))
}

/// The cluster most common among item `i`'s first 15 neighbours (`cluster_of(j)`; ties:
/// the lower number), if any of them has one.
fn neighbours_cluster(nb: &Neighbours, i: usize, cluster_of: impl Fn(usize) -> Option<u32>) -> Option<u32> {
    let mut votes: std::collections::BTreeMap<u32, usize> = Default::default();
    for (j, _) in nb.row(i).take(15) {
        if let Some(c) = cluster_of(j as usize) {
            *votes.entry(c).or_default() += 1;
        }
    }
    votes.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(c, _)| *c)
}

/// A clustering kept in the cache for the next build: each id's cluster.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct KeptClusters {
    /// `[structure] min-cluster-size` as configured (0: automatic).
    pub setting: usize,
    pub ids: Vec<String>,
    pub cluster: Vec<Option<u32>>,
}

/// Each cluster's members and representative (the member closest to their mean embedding).
fn with_representatives(of: &[Option<u32>], count: usize, emb: &[f32], d: usize) -> Vec<Cluster> {
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); count];
    for (i, c) in of.iter().enumerate() {
        if let Some(c) = c {
            members[*c as usize].push(i as u32);
        }
    }
    members
        .into_par_iter()
        .map(|m| {
            let mut mean = vec![0f64; d];
            for &i in &m {
                for (t, v) in mean.iter_mut().enumerate() {
                    *v += emb[i as usize * d + t] as f64;
                }
            }
            let best = m
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    let dot = |i: u32| (0..d).map(|t| mean[t] * emb[i as usize * d + t] as f64).sum::<f64>();
                    dot(a).total_cmp(&dot(b)).then(b.cmp(&a))
                })
                .unwrap_or(0);
            Cluster { members: m, representative: best }
        })
        .collect()
}

/// Isolation Forest (Liu, Ting & Zhou 2008) on the embeddings: `trees` trees, each grown on
/// `sample` items drawn without replacement, split on a random coordinate at a random
/// value; an item's score is 2^(-E[h]/c(sample)), h its path length (higher is stranger).
/// Rare kinds of image that are similar to each other (a few hundred satellite trails in a
/// large archive) are isolated quickly in the small subsamples, where a neighbour distance
/// sees only their similarity to each other. Seeded: the same inputs give the same scores.
pub fn isolation_scores(emb: &[f32], d: usize, trees: usize, sample: usize, seed: u64) -> Vec<f32> {
    Forest::grow(emb, d, trees, sample, seed).scores(emb, d)
}

/// A node of an isolation tree: a split (`dim` < [`LEAF`]) sends `x[dim] < at` left, or a
/// leaf (`dim` = [`LEAF`]) of `left` items.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    dim: u32,
    at: f32,
    left: u32,
    right: u32,
}

const LEAF: u32 = u32::MAX;

/// A grown isolation forest: it scores any embedding of the same space, so a nightly build
/// can score its new items with the forest of an earlier build (see [`KeptForest`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    psi: usize,
    dim: usize,
    trees: Vec<Vec<Node>>,
}

/// Average path length of an unsuccessful search in a binary search tree of `m` items.
fn avg_path(m: usize) -> f64 {
    match m {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => 2.0 * ((m as f64 - 1.0).ln() + 0.577_215_664_9) - 2.0 * (m as f64 - 1.0) / m as f64,
    }
}

impl Forest {
    /// Grows `trees` trees on samples of `sample` rows of `emb` (`d` columns).
    pub fn grow(emb: &[f32], d: usize, trees: usize, sample: usize, seed: u64) -> Forest {
        let n = emb.len() / d.max(1);
        let psi = sample.min(n);
        if n < 2 {
            return Forest { psi, dim: d, trees: Vec::new() };
        }
        let depth_limit = (psi as f64).log2().ceil() as usize;
        let grow = |t: usize| -> Vec<Node> {
            let mut rng = crate::rng::SplitMix::new(seed, t as u64, 0);
            // Partial Fisher-Yates: a sample of psi distinct rows.
            let mut pool: Vec<u32> = (0..n as u32).collect();
            for i in 0..psi {
                let j = i + rng.below(n - i);
                pool.swap(i, j);
            }
            let mut nodes: Vec<Node> = Vec::new();
            let mut stack = vec![(pool[..psi].to_vec(), 0usize, usize::MAX, false)];
            while let Some((rows, level, parent, is_right)) = stack.pop() {
                let me = nodes.len() as u32;
                if let Some(p) = nodes.get_mut(parent) {
                    if is_right {
                        p.right = me;
                    } else {
                        p.left = me;
                    }
                }
                let dim = rng.below(d);
                let (lo, hi) = rows.iter().fold((f32::MAX, f32::MIN), |(l, h), &r| {
                    let v = emb[r as usize * d + dim];
                    (l.min(v), h.max(v))
                });
                if level >= depth_limit || rows.len() <= 1 || hi <= lo {
                    nodes.push(Node { dim: LEAF, at: 0.0, left: rows.len() as u32, right: 0 });
                    continue;
                }
                let at = lo + (hi - lo) * rng.unit();
                let (l, r): (Vec<u32>, Vec<u32>) = rows.iter().partition(|&&x| emb[x as usize * d + dim] < at);
                nodes.push(Node { dim: dim as u32, at, left: 0, right: 0 });
                stack.push((r, level + 1, me as usize, true));
                stack.push((l, level + 1, me as usize, false));
            }
            nodes
        };
        Forest { psi, dim: d, trees: (0..trees).into_par_iter().map(grow).collect() }
    }

    /// The score of every row of `emb` (higher is stranger; 0 for a forest of fewer than 2
    /// items).
    pub fn scores(&self, emb: &[f32], d: usize) -> Vec<f32> {
        let n = emb.len() / d.max(1);
        if self.trees.is_empty() || d != self.dim {
            return vec![0.0; n];
        }
        let norm = avg_path(self.psi);
        (0..n)
            .into_par_iter()
            .map(|i| {
                let x = &emb[i * d..(i + 1) * d];
                let total: f64 = self
                    .trees
                    .iter()
                    .map(|tree| {
                        let (mut at, mut h) = (0usize, 0f64);
                        loop {
                            let node = tree[at];
                            if node.dim == LEAF {
                                break h + avg_path(node.left as usize);
                            }
                            at = if x[node.dim as usize] < node.at { node.left } else { node.right } as usize;
                            h += 1.0;
                        }
                    })
                    .sum();
                2f64.powf(-(total / self.trees.len() as f64) / norm) as f32
            })
            .collect()
    }
}

/// Up to this share of the items a kept forest was grown on may have been added or removed
/// since; past it, the forest is grown again on the archive as it is.
pub const FOREST_REGROW_CHANGE: f64 = 0.10;

/// An isolation forest kept in the cache, so that a nightly build scores the items it
/// already had exactly as before (their outlier scores, and so the outlier band on their
/// pages, stay put; only ranks move as new items slot in).
#[derive(Debug, Clone, PartialEq)]
pub struct KeptForest {
    /// What the forest is valid for: the embedding space and the forest's settings.
    pub key: String,
    /// A 64-bit hash of each id it was grown among, sorted.
    pub grown_on: Vec<u64>,
    pub forest: Forest,
    /// The scores the forest gave, by a digest of the embedding it scored, sorted: a nightly
    /// build scores only what it has not scored before (at 170,000 items, scoring them all
    /// took ~2 s of CPU a night). Those of the last build.
    pub scored: Vec<(u128, f32)>,
}

const FOREST_MAGIC: &[u8] = b"simsite-forest-v2\n";
/// Without `scored` (read, never written).
const FOREST_MAGIC_V1: &[u8] = b"simsite-forest-v1\n";

/// A digest of one embedding row's bytes.
fn row_key(buf: &mut Vec<u8>, row: &[f32]) -> u128 {
    buf.clear();
    buf.extend(row.iter().flat_map(|x| x.to_le_bytes()));
    u128::from_le_bytes(blake3::hash(buf).as_bytes()[..16].try_into().expect("16 bytes"))
}

fn id_hash(id: &str) -> u64 {
    u64::from_le_bytes(blake3::hash(id.as_bytes()).as_bytes()[..8].try_into().expect("8 bytes"))
}

impl KeptForest {
    /// The forest's score of every row of `emb`, as `Forest::scores`: rows it scored for
    /// the last build are looked up, the rest scored. `scored` then holds this build's.
    pub fn score(&mut self, emb: &[f32], d: usize) -> Vec<f32> {
        let n = emb.len() / d.max(1);
        if d == 0 || d != self.forest.dim {
            return self.forest.scores(emb, d);
        }
        let keys: Vec<u128> = (0..n).into_par_iter().map_init(Vec::new, |buf, i| row_key(buf, &emb[i * d..(i + 1) * d])).collect();
        let known = |k: &u128| self.scored.binary_search_by(|(x, _)| x.cmp(k)).ok().map(|at| self.scored[at].1);
        let mut out: Vec<Option<f32>> = keys.par_iter().map(known).collect();
        let missing: Vec<usize> = (0..n).filter(|&i| out[i].is_none()).collect();
        let rows: Vec<f32> = missing.iter().flat_map(|&i| emb[i * d..(i + 1) * d].iter().copied()).collect();
        for (&i, v) in missing.iter().zip(self.forest.scores(&rows, d)) {
            out[i] = Some(v);
        }
        let out: Vec<f32> = out.into_iter().map(|v| v.expect("every row scored")).collect();
        let mut scored: Vec<(u128, f32)> = keys.into_iter().zip(out.iter().copied()).collect();
        scored.sort_unstable_by_key(|(k, _)| *k);
        scored.dedup_by_key(|(k, _)| *k);
        self.scored = scored;
        out
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let f = &self.forest;
        let nodes: usize = f.trees.iter().map(|t| t.len()).sum();
        let mut out = Vec::with_capacity(64 + self.key.len() + 8 * self.grown_on.len() + 16 * nodes + 4 * f.trees.len() + 20 * self.scored.len());
        out.extend_from_slice(FOREST_MAGIC);
        let u32s = |out: &mut Vec<u8>, v: &[u32]| v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        u32s(&mut out, &[self.key.len() as u32]);
        out.extend_from_slice(self.key.as_bytes());
        u32s(&mut out, &[f.psi as u32, f.dim as u32, self.grown_on.len() as u32, f.trees.len() as u32]);
        for h in &self.grown_on {
            out.extend_from_slice(&h.to_le_bytes());
        }
        for t in &f.trees {
            u32s(&mut out, &[t.len() as u32]);
            for n in t {
                u32s(&mut out, &[n.dim, n.at.to_bits(), n.left, n.right]);
            }
        }
        u32s(&mut out, &[self.scored.len() as u32]);
        for (k, v) in &self.scored {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        out
    }

    /// `None` for bytes that are not a whole, consistent forest.
    pub fn from_bytes(b: &[u8]) -> Option<KeptForest> {
        struct Reader<'a>(&'a [u8]);
        impl<'a> Reader<'a> {
            fn take(&mut self, n: usize) -> Option<&'a [u8]> {
                let (head, rest) = self.0.split_at_checked(n)?;
                self.0 = rest;
                Some(head)
            }
            fn u32(&mut self) -> Option<u32> {
                Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
            }
        }
        let (mut r, v2) = match b.strip_prefix(FOREST_MAGIC) {
            Some(rest) => (Reader(rest), true),
            None => (Reader(b.strip_prefix(FOREST_MAGIC_V1)?), false),
        };
        let key_len = r.u32()? as usize;
        let key = std::str::from_utf8(r.take(key_len)?).ok()?.to_string();
        let (psi, dim, ids, count) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        let grown_on: Vec<u64> = r.take(ids.checked_mul(8)?)?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        let mut trees = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let len = r.u32()? as usize;
            let tree: Vec<Node> = r
                .take(len.checked_mul(16)?)?
                .chunks_exact(16)
                .map(|c| {
                    let w = |k: usize| u32::from_le_bytes(c[4 * k..4 * k + 4].try_into().expect("4 bytes"));
                    Node { dim: w(0), at: f32::from_bits(w(1)), left: w(2), right: w(3) }
                })
                .collect();
            // Every split names a coordinate and two later nodes of its own tree.
            let later = |k: usize, c: u32| (c as usize) > k && (c as usize) < len;
            let sound = tree.iter().enumerate().all(|(k, n)| n.dim == LEAF || ((n.dim as usize) < dim && later(k, n.left) && later(k, n.right)));
            if len == 0 || !sound {
                return None;
            }
            trees.push(tree);
        }
        let mut scored = Vec::new();
        if v2 {
            let len = r.u32()? as usize;
            scored = r
                .take(len.checked_mul(20)?)?
                .chunks_exact(20)
                .map(|c| (u128::from_le_bytes(c[..16].try_into().expect("16 bytes")), f32::from_bits(u32::from_le_bytes(c[16..].try_into().expect("4 bytes")))))
                .collect();
        }
        if !r.0.is_empty() || !grown_on.windows(2).all(|w| w[0] <= w[1]) || !scored.windows(2).all(|w| w[0].0 < w[1].0) {
            return None;
        }
        Some(KeptForest { key, grown_on, forest: Forest { psi, dim, trees }, scored })
    }
}

/// How the outlier scores of a build were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForestUse {
    /// The kept forest scored every item.
    Kept,
    /// A forest was grown on this build's items.
    Grown,
}

impl StructureSettings {
    /// Outlier scores and ranks as [`StructureSettings::outliers`], keeping the isolation
    /// forest of an earlier build (`prev`, for the embedding space `space`) while at most
    /// [`FOREST_REGROW_CHANGE`] of the items it was grown among were added or removed since.
    /// Returns the forest to keep for the next build (`None` for the neighbour method).
    pub fn outliers_kept(&self, emb: &[f32], d: usize, nb: &Neighbours, ids: &[&str], space: &str, prev: Option<KeptForest>) -> (Vec<f32>, Vec<u32>, Option<(KeptForest, ForestUse)>) {
        if self.outlier_method != OutlierMethod::IsolationForest {
            let (s, r) = self.outliers(emb, d, nb);
            return (s, r, None);
        }
        let key = format!("{space}|trees {FOREST_TREES}|sample {FOREST_SAMPLE}|seed {FOREST_SEED:x}");
        let hashes: Vec<u64> = ids.iter().map(|id| id_hash(id)).collect();
        let usable = prev.filter(|p| {
            if p.key != key || p.forest.dim != d || p.forest.trees.is_empty() {
                return false;
            }
            let present = hashes.iter().filter(|h| p.grown_on.binary_search(h).is_ok()).count();
            let changed = (ids.len() - present) + p.grown_on.len().saturating_sub(present);
            changed as f64 <= FOREST_REGROW_CHANGE * p.grown_on.len() as f64
        });
        let (mut kept, how) = match usable {
            Some(p) => (p, ForestUse::Kept),
            None => {
                let mut grown_on = hashes;
                grown_on.sort_unstable();
                (KeptForest { key, grown_on, forest: Forest::grow(emb, d, FOREST_TREES, FOREST_SAMPLE, FOREST_SEED), scored: Vec::new() }, ForestUse::Grown)
            }
        };
        let s = kept.score(emb, d);
        let r = ranks(&s);
        (s, r, Some((kept, how)))
    }
}

const FOREST_TREES: usize = 200;
const FOREST_SAMPLE: usize = 256;
const FOREST_SEED: u64 = 0x0517_517E;

/// Ranks (1 = strangest; ties by item order) of scores where higher is stranger.
pub fn ranks(scores: &[f32]) -> Vec<u32> {
    let n = scores.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    let mut rank = vec![0u32; n];
    for (r, &i) in order.iter().enumerate() {
        rank[i as usize] = r as u32 + 1;
    }
    rank
}
