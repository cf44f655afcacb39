//! The archive's structure from its neighbours and map: clusters, outliers and
//! near-duplicates.

use rayon::prelude::*;
use serde::Serialize;

use crate::neighbours::Neighbours;

/// `[structure]` in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct StructureSettings {
    /// Neighbours whose mean cosine distance is an item's outlier score.
    pub outlier_k: usize,
    /// Pairs at or above this cosine similarity are near-duplicates.
    pub duplicate_threshold: f32,
    /// The smallest group of items that counts as a cluster; 0: automatic (0.5 % of the
    /// items, at least 10).
    pub min_cluster_size: usize,
}

impl StructureSettings {
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
        StructureSettings { outlier_k: 10, duplicate_threshold: 0.995, min_cluster_size: 0 }
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
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    let mut rank = vec![0u32; n];
    for (r, &i) in order.iter().enumerate() {
        rank[i as usize] = r as u32 + 1;
    }
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
        let mut votes: std::collections::BTreeMap<u32, usize> = Default::default();
        for (j, _) in nb.row(i).take(15) {
            if let Some(c) = core[j as usize] {
                *votes.entry(c).or_default() += 1;
            }
        }
        of[i] = votes.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(c, _)| *c);
    }
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); groups.len()];
    for (i, c) in of.iter().enumerate() {
        if let Some(c) = c {
            members[*c as usize].push(i as u32);
        }
    }
    let out = members
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
        .collect();
    (out, of)
}
