//! The 2-D map: UMAP (McInnes, Healy & Melville 2018) on the neighbour graph FAISS already
//! found, written here rather than taken from a crate (see issue 5 for why `umap-rs` did
//! not do).
//!
//! Steps, as umap-learn does them: per item, ρ (distance to the nearest neighbour) and σ
//! (binary search so that Σ exp(-(d - ρ)/σ) = log2(n_neighbors)); memberships
//! exp(-(d - ρ)/σ); the fuzzy union A + Aᵀ - A∘Aᵀ; edges weaker than max/n_epochs dropped;
//! each edge sampled every max_w/w epochs; attraction -2ab·d^(2(b-1))/(1 + a·d^(2b)) and, for
//! `negative_sample_rate` random items per sample, repulsion 2γb/((0.001 + d²)(1 + a·d^(2b))),
//! every gradient component clipped to ±4, learning rate falling linearly to 0.
//!
//! Differences, on purpose: the start is PCA of the embeddings (linfa-reduction; umap-learn
//! defaults to a spectral start) or a previous map; and each epoch moves every item from its
//! own row of the (symmetric) graph, against the positions the others had at the start of
//! the epoch, with randomness drawn from (seed, epoch, item). So the result depends on the
//! seed alone — not on the thread count or scheduling — and rows run in parallel without
//! locks. umap-learn moves both ends of an edge per sample; here an edge's two directions
//! are two rows, each moving its own item, which gives each end the same two pulls.

use anyhow::{bail, Result};
use rayon::prelude::*;

use std::collections::HashMap;

use crate::neighbours::{Neighbours, RowKey, NONE};
use crate::rng::SplitMix;

/// `[layout]` in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutSettings {
    /// UMAP's n_neighbors (the item itself counted, as in umap-learn).
    pub n_neighbors: usize,
    pub min_dist: f32,
    pub spread: f32,
    /// `None`: `default_epochs(n)`.
    pub n_epochs: Option<usize>,
    pub negative_sample_rate: usize,
    pub seed: u64,
}

impl Default for LayoutSettings {
    fn default() -> Self {
        LayoutSettings { n_neighbors: 15, min_dist: 0.1, spread: 1.0, n_epochs: None, negative_sample_rate: 5, seed: 42 }
    }
}

/// The symmetric fuzzy graph in CSR form.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub row_ptr: Vec<usize>,
    pub cols: Vec<u32>,
    pub weights: Vec<f32>,
}

impl Graph {
    pub fn n(&self) -> usize {
        self.row_ptr.len() - 1
    }
}

const SMOOTH_K_TOLERANCE: f32 = 1e-5;
const MIN_K_DIST_SCALE: f32 = 1e-3;

/// ρ and σ of one item from its distances to its neighbours (ascending, self excluded), as
/// umap-learn's smooth_knn_dist with local_connectivity = 1 and bandwidth = 1.
fn smooth_knn(dists: &[f32], n_neighbors: usize, mean_all: f32) -> (f32, f32) {
    let target = (n_neighbors as f32).log2();
    let rho = dists.iter().copied().find(|&d| d > 0.0).unwrap_or(0.0);
    let (mut lo, mut hi, mut mid) = (0.0f32, f32::INFINITY, 1.0f32);
    for _ in 0..64 {
        let psum: f32 = dists.iter().map(|&d| if d - rho > 0.0 { (-(d - rho) / mid).exp() } else { 1.0 }).sum();
        if (psum - target).abs() < SMOOTH_K_TOLERANCE {
            break;
        }
        if psum > target {
            hi = mid;
            mid = (lo + hi) / 2.0;
        } else {
            lo = mid;
            mid = if hi.is_infinite() { mid * 2.0 } else { (lo + hi) / 2.0 };
        }
    }
    let floor = if rho > 0.0 {
        MIN_K_DIST_SCALE * dists.iter().sum::<f32>() / dists.len().max(1) as f32
    } else {
        MIN_K_DIST_SCALE * mean_all
    };
    (rho, mid.max(floor))
}

/// The fuzzy simplicial set of the neighbour graph: cosine distance 1 - score to each item's
/// first `n_neighbors - 1` neighbours, memberships, then the fuzzy union.
pub fn fuzzy_graph(nb: &Neighbours, n: usize, n_neighbors: usize) -> Graph {
    let m = (n_neighbors.saturating_sub(1)).min(nb.k).max(1);
    let row = |i: usize| -> Vec<(u32, f32)> {
        if nb.k == 0 {
            return Vec::new();
        }
        nb.row(i).take(m).map(|(j, s)| (j, (1.0 - s).max(0.0))).collect()
    };
    let mean_all = {
        let (sum, cnt) = (0..n).fold((0f64, 0usize), |(s, c), i| {
            let r = row(i);
            (s + r.iter().map(|x| x.1 as f64).sum::<f64>(), c + r.len())
        });
        (sum / cnt.max(1) as f64) as f32
    };
    // A: memberships, rows sorted by column.
    let a: Vec<Vec<(u32, f32)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let r = row(i);
            let d: Vec<f32> = r.iter().map(|x| x.1).collect();
            let (rho, sigma) = smooth_knn(&d, n_neighbors, mean_all);
            let mut out: Vec<(u32, f32)> = r
                .iter()
                .filter(|(j, _)| *j as usize != i && *j != NONE)
                .map(|&(j, d)| (j, if d - rho <= 0.0 || sigma == 0.0 { 1.0 } else { (-(d - rho) / sigma).exp() }))
                .collect();
            out.sort_by_key(|x| x.0);
            out.dedup_by_key(|x| x.0);
            out
        })
        .collect();
    // Aᵀ by counting (rows come out sorted by column since i ascends).
    let mut count = vec![0usize; n + 1];
    for r in &a {
        for &(j, _) in r {
            count[j as usize + 1] += 1;
        }
    }
    for i in 0..n {
        count[i + 1] += count[i];
    }
    let mut at_cols = vec![0u32; count[n]];
    let mut at_w = vec![0f32; count[n]];
    let mut fill = count.clone();
    for (i, r) in a.iter().enumerate() {
        for &(j, w) in r {
            let p = fill[j as usize];
            at_cols[p] = i as u32;
            at_w[p] = w;
            fill[j as usize] += 1;
        }
    }
    // Union row by row: w = a + b - ab.
    let rows: Vec<Vec<(u32, f32)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (x, y) = (&a[i], count[i]..count[i + 1]);
            let (yc, yw) = (&at_cols[y.clone()], &at_w[y]);
            let mut out = Vec::with_capacity(x.len() + yc.len());
            let (mut p, mut q) = (0, 0);
            while p < x.len() || q < yc.len() {
                let take_x = q >= yc.len() || (p < x.len() && x[p].0 < yc[q]);
                let take_y = p >= x.len() || (q < yc.len() && yc[q] < x[p].0);
                if take_x {
                    out.push(x[p]);
                    p += 1;
                } else if take_y {
                    out.push((yc[q], yw[q]));
                    q += 1;
                } else {
                    let (u, v) = (x[p].1, yw[q]);
                    out.push((x[p].0, u + v - u * v));
                    p += 1;
                    q += 1;
                }
            }
            out
        })
        .collect();
    let mut g = Graph { row_ptr: Vec::with_capacity(n + 1), cols: Vec::new(), weights: Vec::new() };
    g.row_ptr.push(0);
    for r in rows {
        for (j, w) in r {
            g.cols.push(j);
            g.weights.push(w);
        }
        g.row_ptr.push(g.cols.len());
    }
    g
}

/// UMAP's curve 1/(1 + a·x^(2b)) fitted to the target membership (1 below `min_dist`, then
/// exp(-(x - min_dist)/spread)) on 300 points of [0, 3·spread], by Levenberg-Marquardt from
/// a = b = 1 (what umap-learn's find_ab_params does with scipy's curve_fit).
pub fn find_ab(spread: f32, min_dist: f32) -> (f32, f32) {
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread as f64 * i as f64 / 299.0).collect();
    let ys: Vec<f64> =
        xs.iter().map(|&x| if x < min_dist as f64 { 1.0 } else { (-(x - min_dist as f64) / spread as f64).exp() }).collect();
    let sse = |a: f64, b: f64| -> f64 { xs.iter().zip(&ys).map(|(&x, &y)| (1.0 / (1.0 + a * x.powf(2.0 * b)) - y).powi(2)).sum() };
    let (mut a, mut b, mut lambda) = (1.0f64, 1.0f64, 1e-3f64);
    let mut cur = sse(a, b);
    for _ in 0..500 {
        // Jacobian of the residuals r = f - y.
        let (mut jtj, mut jtr) = ([[0f64; 2]; 2], [0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x == 0.0 {
                continue;
            }
            let p = x.powf(2.0 * b);
            let den = 1.0 + a * p;
            let f = 1.0 / den;
            let da = -p / (den * den);
            let db = -a * p * 2.0 * x.ln() / (den * den);
            let r = f - y;
            let g = [da, db];
            for u in 0..2 {
                jtr[u] += g[u] * r;
                for v in 0..2 {
                    jtj[u][v] += g[u] * g[v];
                }
            }
        }
        let m = [[jtj[0][0] * (1.0 + lambda), jtj[0][1]], [jtj[1][0], jtj[1][1] * (1.0 + lambda)]];
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        if det.abs() < 1e-300 {
            break;
        }
        let da = -(m[1][1] * jtr[0] - m[0][1] * jtr[1]) / det;
        let db = -(-m[1][0] * jtr[0] + m[0][0] * jtr[1]) / det;
        let next = sse(a + da, b + db);
        if next < cur {
            let done = (cur - next) < 1e-15 * cur.max(1e-300);
            a += da;
            b += db;
            cur = next;
            lambda = (lambda / 10.0).max(1e-12);
            if done {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e12 {
                break;
            }
        }
    }
    (a as f32, b as f32)
}

fn clip(v: f32) -> f32 {
    v.clamp(-4.0, 4.0)
}

/// Where the optimisation starts and how long it runs.
pub enum Start {
    /// Fresh: these coordinates (e.g. PCA), rescaled to [0, 10] per axis as umap-learn does.
    Fresh(Vec<f32>),
    /// A previous map (already in layout units): `epochs` epochs starting at
    /// `learning_rate` refine it without redrawing it. With `movable`, only the items it
    /// marks move; the others stay exactly where they are.
    Previous { coords: Vec<f32>, epochs: usize, learning_rate: f32, movable: Option<Vec<bool>> },
}

/// Epochs of a fresh map: umap-learn's 500 up to 10,000 items; above, 100 where umap-learn
/// runs 200 (on 100,000 synthetic images: trustworthiness@10 0.967 against 0.971 with 200
/// epochs and umap-learn's 0.975; 2-D kNN accuracy 0.991–0.992 for all three), half the
/// time. BENCHMARKS.md has the runs.
pub fn default_epochs(n: usize) -> usize {
    if n <= 10_000 {
        500
    } else {
        100
    }
}

/// Runs the SGD on graph `g` from `start`; returns N×2 coordinates.
pub fn optimise(g: &Graph, start: Start, s: &LayoutSettings) -> Result<Vec<f32>> {
    let n = g.n();
    let (mut y, n_epochs, alpha0, movable) = match start {
        Start::Fresh(mut c) => {
            rescale(&mut c);
            (c, s.n_epochs.unwrap_or(default_epochs(n)), 1.0f32, None)
        }
        Start::Previous { coords, epochs, learning_rate, movable } => (coords, epochs, learning_rate, movable),
    };
    if movable.as_ref().is_some_and(|m| m.len() != n) {
        bail!("movable marks {} items of {n}", movable.map_or(0, |m| m.len()));
    }
    if y.len() != n * 2 {
        bail!("the start has {} coordinates for {n} items", y.len() / 2);
    }
    if n < 2 || n_epochs == 0 {
        return Ok(y);
    }
    let (a, b) = find_ab(s.spread, s.min_dist);
    let gamma = 1.0f32;
    // Edges weaker than max/n_epochs are never sampled; the others every max/w epochs.
    let w_max = g.weights.iter().copied().fold(0f32, f32::max);
    let eps: Vec<f32> = g
        .weights
        .iter()
        .map(|&w| if w < w_max / n_epochs as f32 || w <= 0.0 { -1.0 } else { w_max / w })
        .collect();
    let nsr = s.negative_sample_rate as f32;
    let mut next_sample = eps.clone();
    let mut next_neg: Vec<f32> = eps.iter().map(|&e| e / nsr).collect();

    // Rows are processed in blocks (one rayon task each); each block owns its rows'
    // positions and edge clocks, and reads everyone else's position from `old`.
    const BLOCK: usize = 1024;
    let blocks: Vec<(usize, usize)> = (0..n).step_by(BLOCK).map(|r| (r, (r + BLOCK).min(n))).collect();
    let mut old = y.clone();
    for epoch in 0..n_epochs {
        let alpha = alpha0 * (1.0 - epoch as f32 / n_epochs as f32);
        old.copy_from_slice(&y);
        let e = epoch as f32;
        let mut parts = Vec::with_capacity(blocks.len());
        {
            let (mut ry, mut rs, mut rn) = (&mut y[..], &mut next_sample[..], &mut next_neg[..]);
            for &(lo, hi) in &blocks {
                let edges = g.row_ptr[hi] - g.row_ptr[lo];
                let (hy, ty) = std::mem::take(&mut ry).split_at_mut(2 * (hi - lo));
                let (hs, ts) = std::mem::take(&mut rs).split_at_mut(edges);
                let (hn, tn) = std::mem::take(&mut rn).split_at_mut(edges);
                parts.push((lo, hi, hy, hs, hn));
                (ry, rs, rn) = (ty, ts, tn);
            }
        }
        parts.into_par_iter().for_each(|(lo, hi, ys, next_s, next_n)| {
            let base = g.row_ptr[lo];
            for i in lo..hi {
                if movable.as_ref().is_some_and(|m| !m[i]) {
                    continue;
                }
                let (r0, r1) = (g.row_ptr[i], g.row_ptr[i + 1]);
                let mut rng = SplitMix::new(s.seed, epoch as u64, i as u64);
                let (mut cx, mut cy) = (ys[2 * (i - lo)], ys[2 * (i - lo) + 1]);
                for t in r0..r1 {
                    let (ep, ts) = (eps[t], t - base);
                    if ep <= 0.0 || next_s[ts] > e {
                        continue;
                    }
                    let k = g.cols[t] as usize;
                    let (dx, dy) = (cx - old[2 * k], cy - old[2 * k + 1]);
                    let d2 = dx * dx + dy * dy;
                    if d2 > 0.0 {
                        let pw = d2.powf(b);
                        let gc = -2.0 * a * b * (pw / d2) / (a * pw + 1.0);
                        // Two pulls: this direction's, and the mirror edge's move of its
                        // other end (umap-learn moves both ends per sample).
                        cx += 2.0 * clip(gc * dx) * alpha;
                        cy += 2.0 * clip(gc * dy) * alpha;
                    }
                    next_s[ts] += ep;
                    let en = ep / nsr;
                    let n_neg = ((e - next_n[ts]) / en).max(0.0) as usize;
                    for _ in 0..n_neg {
                        let k = rng.below(n);
                        if k == i {
                            continue;
                        }
                        let (dx, dy) = (cx - old[2 * k], cy - old[2 * k + 1]);
                        let d2 = dx * dx + dy * dy;
                        if d2 > 0.0 {
                            let gc = 2.0 * gamma * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0));
                            cx += clip(gc * dx) * alpha;
                            cy += clip(gc * dy) * alpha;
                        }
                    }
                    next_n[ts] += n_neg as f32 * en;
                }
                ys[2 * (i - lo)] = cx;
                ys[2 * (i - lo) + 1] = cy;
            }
        });
    }
    Ok(y)
}

/// Each axis to [0, 10], as umap-learn does with its start.
fn rescale(c: &mut [f32]) {
    for axis in 0..2 {
        let (lo, hi) = c.iter().skip(axis).step_by(2).fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        c.iter_mut().skip(axis).step_by(2).for_each(|v| *v = 10.0 * (*v - lo) / span);
    }
}

/// The start of a fresh map: the embeddings' first two principal components (computed on at
/// most 20,000 evenly spread rows, linfa-reduction), with umap-learn's tiny noise
/// (σ = 1e-4 of the ±10 scale) so no two items coincide.
pub fn pca_start(emb: &[f32], d: usize, seed: u64) -> Result<Vec<f32>> {
    use linfa::traits::Fit;
    use ndarray::Array2;
    let n = emb.len() / d;
    if n < 3 {
        return Ok((0..n * 2).map(|i| i as f32).collect());
    }
    let m = n.min(20_000);
    let mut x = Array2::<f64>::zeros((m, d));
    for r in 0..m {
        let src = r * n / m;
        for c in 0..d {
            x[[r, c]] = emb[src * d + c] as f64;
        }
    }
    let data = linfa::DatasetBase::from(x);
    let pca = linfa_reduction::Pca::params(2.min(d)).fit(&data).map_err(|e| anyhow::anyhow!("PCA start of the layout: {e}"))?;
    let (mean, comps) = (pca.mean().to_owned(), pca.components().to_owned());
    let mut out = vec![0f32; n * 2];
    out.par_chunks_mut(2).enumerate().for_each(|(i, o)| {
        for (c, o) in o.iter_mut().enumerate().take(comps.nrows()) {
            *o = (0..d).map(|t| (emb[i * d + t] as f64 - mean[t]) * comps[[c, t]]).sum::<f64>() as f32;
        }
    });
    let scale = 10.0 / out.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let mut rng = SplitMix::new(seed, u64::MAX, 0);
    for v in out.iter_mut() {
        *v = *v * scale + 1e-4 * rng.normal();
    }
    Ok(out)
}

/// How a build's map was made, for the report and the manifest.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct LayoutInfo {
    /// "fresh" (PCA start, full run), "reused" (same items, graph and settings as the last
    /// build: its map, unchanged), "placed" (a few items added or removed: the others stay
    /// exactly where they were, new items are placed among their neighbours) or "refined"
    /// (the last map, new items at their neighbours' mean, then a short run of all).
    pub mode: String,
    pub epochs: usize,
    /// Items placed from the previous map ("refined"), and new ones.
    pub kept: usize,
    pub added: usize,
    #[serde(skip)]
    pub seconds: f64,
    /// Per item: placed anew (not on the previous map, or its embedding changed), else
    /// where the previous map had it. All true for a fresh map.
    #[serde(skip)]
    pub anew: Vec<bool>,
}

/// The previous build's map, read from the cache.
pub struct Previous {
    pub key: String,
    /// The layout settings it was made with (`settings_text`); `None` from a cache written
    /// before they were kept (taken as unchanged).
    pub settings: Option<String>,
    pub ids: Vec<String>,
    /// Each item's row key (its id and embedding, `neighbours::row_keys`), in `ids`' order;
    /// `None` from a cache written before they were kept (items are then matched by id).
    pub rows: Option<Vec<RowKey>>,
    pub coords: Vec<f32>,
}

/// The settings a map was made with, as kept beside it: a map made with others is not
/// refined or added to, but made afresh.
pub fn settings_text(s: &LayoutSettings) -> String {
    format!("layout-v2|{s:?}")
}

/// Epochs and starting learning rate of a refinement of the previous map.
pub const REFINE_EPOCHS: usize = 30;
pub const REFINE_LEARNING_RATE: f32 = 0.1;
/// Up to this share of items added or removed, the map keeps every other item in place
/// (a nightly rebuild does not shift what people bookmarked or saw); above it, the whole
/// map is refined.
pub const PLACE_MAX_CHANGE: f64 = 0.05;
/// Epochs and starting learning rate of placing new items on a kept map (only they move,
/// so this costs in proportion to them).
pub const PLACE_EPOCHS: usize = 100;
pub const PLACE_LEARNING_RATE: f32 = 0.5;

/// What the map depends on: the settings, the item ids in order and the neighbour graph.
pub fn key(s: &LayoutSettings, ids: &[&str], nb: &Neighbours) -> String {
    let mut h = blake3::Hasher::new();
    // The version names the algorithm; epochs as run (the default depends on N).
    let epochs = s.n_epochs.unwrap_or(default_epochs(ids.len()));
    h.update(format!("layout-v2|{s:?}|{epochs}|{}|", nb.k).as_bytes());
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    for (j, w) in nb.ids.iter().zip(&nb.scores) {
        h.update(&j.to_le_bytes());
        h.update(&w.to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// The map of `ids` (rows of `emb` with row keys `rows`, neighbours `nb`): the previous
/// one unchanged when nothing it depends on changed, refined from it when items were added
/// or removed, else a fresh UMAP run. An item whose embedding changed (its file, the model
/// or the preprocessing) is placed anew like an added one, so a new model or new layout
/// settings make a fresh map.
pub fn layout(emb: &[f32], d: usize, ids: &[&str], rows: &[RowKey], nb: &Neighbours, s: &LayoutSettings, prev: Option<Previous>) -> Result<(Vec<f32>, LayoutInfo, String)> {
    let t = std::time::Instant::now();
    let n = ids.len();
    let key = key(s, ids, nb);
    let info = |mode: &str, epochs, kept, added, anew| LayoutInfo { mode: mode.into(), epochs, kept, added, seconds: t.elapsed().as_secs_f64(), anew };
    let settings = settings_text(s);
    let usable = |p: &Previous| {
        p.coords.len() == p.ids.len() * 2
            && p.rows.as_ref().is_none_or(|r| r.len() == p.ids.len())
            && p.settings.as_ref().is_none_or(|t| *t == settings)
    };
    if let Some(p) = prev.filter(usable) {
        if p.key == key {
            return Ok((p.coords, info("reused", 0, n, 0, vec![false; n]), key));
        }
        let known: Vec<Option<usize>> = match &p.rows {
            Some(old_rows) => {
                let old: HashMap<&RowKey, usize> = old_rows.iter().enumerate().map(|(i, r)| (r, i)).collect();
                rows.iter().map(|r| old.get(r).copied()).collect()
            }
            None => {
                let old: HashMap<&str, usize> = p.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
                ids.iter().map(|id| old.get(id).copied()).collect()
            }
        };
        let kept = known.iter().filter(|k| k.is_some()).count();
        // Refine only while at least half the items were on the old map; else start afresh.
        if kept * 2 >= n && kept > 0 {
            let mut c = vec![0f32; n * 2];
            let (mut mx, mut my) = (0f64, 0f64);
            for (i, k) in known.iter().enumerate() {
                if let Some(k) = k {
                    c[2 * i] = p.coords[2 * k];
                    c[2 * i + 1] = p.coords[2 * k + 1];
                    mx += c[2 * i] as f64;
                    my += c[2 * i + 1] as f64;
                }
            }
            let centre = ((mx / kept as f64) as f32, (my / kept as f64) as f32);
            let mut rng = SplitMix::new(s.seed, u64::MAX - 1, 0);
            for i in 0..n {
                if known[i].is_some() {
                    continue;
                }
                let placed: Vec<usize> = nb.row(i).map(|(j, _)| j as usize).filter(|&j| known[j].is_some()).take(s.n_neighbors.saturating_sub(1).max(1)).collect();
                let (x, y) = if placed.is_empty() {
                    centre
                } else {
                    let k = placed.len() as f32;
                    (placed.iter().map(|&j| c[2 * j]).sum::<f32>() / k, placed.iter().map(|&j| c[2 * j + 1]).sum::<f32>() / k)
                };
                // A hair of jitter so that new items sharing neighbours do not coincide.
                let (jx, jy) = (rng.unit() - 0.5, rng.unit() - 0.5);
                c[2 * i] = x + 0.01 * jx;
                c[2 * i + 1] = y + 0.01 * jy;
            }
            let removed = p.ids.len() - kept;
            let (mode, epochs, learning_rate, movable) = if ((n - kept) + removed) as f64 <= PLACE_MAX_CHANGE * n as f64 {
                ("placed", PLACE_EPOCHS, PLACE_LEARNING_RATE, Some(known.iter().map(|k| k.is_none()).collect()))
            } else {
                ("refined", REFINE_EPOCHS, REFINE_LEARNING_RATE, None)
            };
            let start = Start::Previous { coords: c, epochs, learning_rate, movable };
            let y = optimise(&fuzzy_graph(nb, n, s.n_neighbors), start, s)?;
            let anew = known.iter().map(|k| k.is_none()).collect();
            return Ok((y, info(mode, epochs, kept, n - kept, anew), key));
        }
    }
    let y = optimise(&fuzzy_graph(nb, n, s.n_neighbors), Start::Fresh(pca_start(emb, d, s.seed)?), s)?;
    let epochs = s.n_epochs.unwrap_or(default_epochs(n));
    Ok((y, info("fresh", epochs, 0, n, vec![true; n]), key))
}

/// Reads the last build's map from `dir` (the cache's `layout/`); `None` when there is none
/// or it is unreadable (a fresh map is then made, nothing is lost).
pub fn load_previous(dir: &std::path::Path) -> Option<Previous> {
    let key = std::fs::read_to_string(dir.join("key")).ok()?;
    let ids: Vec<String> = serde_json::from_slice(&std::fs::read(dir.join("ids.json")).ok()?).ok()?;
    let bytes = std::fs::read(dir.join("coords.f32")).ok()?;
    if bytes.len() != ids.len() * 8 {
        return None;
    }
    let coords = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    let settings = std::fs::read_to_string(dir.join("settings")).ok();
    // Absent: a cache from before row keys were kept. Of another length than the ids (a
    // file of another build, a cut one): no previous map, rather than rows matched wrongly.
    let rows = match std::fs::read(dir.join("rows.bin")) {
        Ok(b) if b.len() == ids.len() * 32 => Some(b.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect()),
        Ok(_) => return None,
        Err(_) => None,
    };
    Some(Previous { key: key.trim().to_string(), settings, ids, rows, coords })
}

/// Keeps this build's map for the next one: its settings, ids (JSON), row keys and
/// coordinates (`f32_bytes`), and the key last, so a half-written set never matches.
pub fn save(dir: &std::path::Path, key: &str, settings: &str, ids_json: &[u8], rows: &[RowKey], coords: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_file(dir.join("key"));
    crate::fsutil::atomic_write(&dir.join("settings"), settings.as_bytes())?;
    crate::fsutil::atomic_write(&dir.join("ids.json"), ids_json)?;
    crate::fsutil::atomic_write(&dir.join("rows.bin"), rows.as_flattened())?;
    crate::fsutil::atomic_write(&dir.join("coords.f32"), coords)?;
    crate::fsutil::atomic_write(&dir.join("key"), key.as_bytes())
}

/// Little-endian bytes of an f32 array (api/layout.f32 and the cached map).
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ab_matches_umap_learn_for_its_defaults() {
        // umap-learn 0.5: find_ab_params(1.0, 0.1) = (1.5769434603113077, 0.8950608781227859)
        let (a, b) = find_ab(1.0, 0.1);
        assert!((a - 1.5769).abs() < 2e-3 && (b - 0.8951).abs() < 2e-3, "{a} {b}");
        let (a, b) = find_ab(1.0, 0.5);
        assert!((a - 0.5830).abs() < 5e-3 && (b - 1.3343).abs() < 5e-3, "{a} {b}");
    }

    #[test]
    fn sigma_solves_the_membership_sum() {
        let d = [0.1f32, 0.2, 0.25, 0.4, 0.5, 0.7, 0.9];
        let (rho, sigma) = smooth_knn(&d, 8, 0.4);
        assert_eq!(rho, 0.1);
        let psum: f32 = d.iter().map(|&x| if x - rho > 0.0 { (-(x - rho) / sigma).exp() } else { 1.0 }).sum();
        assert!((psum - 3.0).abs() < 1e-3, "{psum}");
    }
}
