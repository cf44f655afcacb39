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
                let s = isolation_scores(emb, d, 200, 256, 0x51_75_17E);
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

/// Clusters found by HDBSCAN (petal-clustering) on the 2-D map, numbered by size (largest
/// first; ties by smallest member). HDBSCAN leaves some items as noise; each of those joins
/// the cluster most common among its first neighbours, so every item has a cluster unless
/// none of its neighbours does. Returns the clusters and each item's cluster.
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
    (with_representatives(&of, groups.len(), emb, d), of)
}

/// The clusters of a map whose items mostly kept their places (`layout`'s "placed" mode):
/// every item the last build clustered keeps its cluster and number (so cluster pages keep
/// their addresses from night to night), and a new item joins the cluster most common
/// among its first neighbours, as noise does. `None` (cluster afresh) when the last
/// clustering was made with another `min-cluster-size` setting (`setting`; 0 is automatic),
/// or a cluster would be left with under half of `min_size`, the size now required.
pub fn clusters_kept(prev: &KeptClusters, ids: &[&str], emb: &[f32], d: usize, nb: &Neighbours, setting: usize, min_size: usize) -> Option<(Vec<Cluster>, Vec<Option<u32>>)> {
    if prev.setting != setting || prev.ids.len() != prev.cluster.len() {
        return None;
    }
    let count = prev.cluster.iter().flatten().map(|&c| c as usize + 1).max().unwrap_or(0);
    let old: std::collections::HashMap<&str, Option<u32>> = prev.ids.iter().map(|s| s.as_str()).zip(prev.cluster.iter().copied()).collect();
    let known: Vec<Option<Option<u32>>> = ids.iter().map(|id| old.get(id).copied()).collect();
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
    let n = emb.len() / d.max(1);
    if n < 2 {
        return vec![0.0; n];
    }
    let psi = sample.min(n);
    let depth_limit = (psi as f64).log2().ceil() as usize;
    let c = |m: usize| -> f64 {
        match m {
            0 | 1 => 0.0,
            2 => 1.0,
            _ => 2.0 * ((m as f64 - 1.0).ln() + 0.577_215_664_9) - 2.0 * (m as f64 - 1.0) / m as f64,
        }
    };
    // A tree: nodes (coordinate, threshold, left, right) or leaves (size).
    enum Node {
        Split { dim: usize, at: f32, left: usize, right: usize },
        Leaf { size: usize },
    }
    let grow = |t: usize| -> Vec<Node> {
        let mut rng = crate::rng::SplitMix::new(seed, t as u64, 0);
        // Partial Fisher-Yates: a sample of psi distinct rows.
        let mut pool: Vec<u32> = (0..n as u32).collect();
        for i in 0..psi {
            let j = i + rng.below(n - i);
            pool.swap(i, j);
        }
        let mut nodes = Vec::new();
        let mut stack = vec![(pool[..psi].to_vec(), 0usize, usize::MAX, false)];
        while let Some((rows, level, parent, is_right)) = stack.pop() {
            let me = nodes.len();
            if let Some(Node::Split { left, right, .. }) = nodes.get_mut(parent) {
                if is_right {
                    *right = me;
                } else {
                    *left = me;
                }
            }
            let dim = rng.below(d);
            let (lo, hi) = rows.iter().fold((f32::MAX, f32::MIN), |(l, h), &r| {
                let v = emb[r as usize * d + dim];
                (l.min(v), h.max(v))
            });
            if level >= depth_limit || rows.len() <= 1 || hi <= lo {
                nodes.push(Node::Leaf { size: rows.len() });
                continue;
            }
            let at = lo + (hi - lo) * rng.unit();
            let (l, r): (Vec<u32>, Vec<u32>) = rows.iter().partition(|&&x| emb[x as usize * d + dim] < at);
            nodes.push(Node::Split { dim, at, left: 0, right: 0 });
            stack.push((r, level + 1, me, true));
            stack.push((l, level + 1, me, false));
        }
        nodes
    };
    let forest: Vec<Vec<Node>> = (0..trees).into_par_iter().map(grow).collect();
    let norm = c(psi);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let x = &emb[i * d..(i + 1) * d];
            let total: f64 = forest
                .iter()
                .map(|tree| {
                    let (mut at, mut h) = (0usize, 0f64);
                    loop {
                        match tree[at] {
                            Node::Split { dim, at: t, left, right } => {
                                at = if x[dim] < t { left } else { right };
                                h += 1.0;
                            }
                            Node::Leaf { size } => break h + c(size),
                        }
                    }
                })
                .sum();
            2f64.powf(-(total / trees as f64) / norm) as f32
        })
        .collect()
}

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
