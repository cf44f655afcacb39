//! Top-k neighbours of every item by cosine similarity, through FAISS.
//!
//! Embeddings are L2-normalised, so inner product is cosine. Exact search
//! (`IndexFlatIP`, BLAS) costs N²·d; above `exact_max_flops` an IVF index is used instead,
//! with the smallest `nprobe` whose recall@k against exact search, measured on a fixed
//! sample of queries, reaches the target. That figure goes into the manifest.
//!
//! Built with the `gpu` feature, the same indexes run on a CUDA device through FAISS's GPU
//! implementation when one is there (`[neighbours] device`); exact search then goes much
//! further (`gpu-exact-max-items`).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use faiss::index::{IndexImpl, SearchWithParamsMut};
use faiss::search_params::SearchParametersIVF;
use faiss::{index_factory, Index, MetricType};
use serde::Serialize;

/// Where FAISS searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// A CUDA device when this binary was built with the `gpu` feature and one is visible,
    /// else the CPU (the log says which and why).
    Auto,
    Cpu,
    Cuda,
}

/// `[neighbours]` in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourSettings {
    /// Neighbours stored per item (in `api/neighbors.bin` and the item JSON).
    pub k: usize,
    /// Neighbours shown on an item's page.
    pub show: usize,
    /// Exact search while N²·d stays at or below this; approximate above.
    pub exact_max_flops: f64,
    /// The same bound when searching on a GPU.
    pub gpu_exact_max_flops: f64,
    pub device: Device,
    /// Recall@k (against exact search) the approximate index must reach.
    pub recall_target: f64,
    /// Neighbours closer on the sky than this (arcseconds; both items need RA/Dec) are
    /// dropped as the same object; 0 turns the filter off.
    pub min_separation_arcsec: f64,
}

/// N²·d of 50,000 items of dimension 128: about 20 s of exact search on 2 cores.
pub const DEFAULT_EXACT_MAX_FLOPS: f64 = 50_000.0 * 50_000.0 * 128.0;
/// N²·d of 1,000,000 items of dimension 128 on a GPU.
pub const DEFAULT_GPU_EXACT_MAX_FLOPS: f64 = 1_000_000.0 * 1_000_000.0 * 128.0;

impl Default for NeighbourSettings {
    fn default() -> Self {
        NeighbourSettings {
            k: 50,
            show: 12,
            exact_max_flops: DEFAULT_EXACT_MAX_FLOPS,
            gpu_exact_max_flops: DEFAULT_GPU_EXACT_MAX_FLOPS,
            device: Device::Auto,
            recall_target: 0.95,
            min_separation_arcsec: 0.0,
        }
    }
}

/// How the neighbours were found, for the manifest.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SearchInfo {
    /// "exact" or the FAISS index description with its search parameter, e.g. "IVF4000,Flat nprobe=16".
    pub method: String,
    /// Neighbours per item (fewer when the archive has fewer than k+1 items).
    pub k: usize,
    /// Recall@k against exact search on `recall_sample` queries (1.0 for exact search).
    pub recall: f64,
    pub recall_sample: usize,
    /// "cpu" or "cuda:0".
    pub device: String,
    /// Why that device (for the log, not the manifest).
    #[serde(skip)]
    pub device_note: String,
    /// Not in the manifest (which must not change between identical builds but for its date).
    #[serde(skip)]
    pub seconds: f64,
}

/// Item `i`'s neighbours are `ids[i*k..(i+1)*k]`, best first, with cosine `scores`; a row
/// with fewer than k neighbours is padded with `NONE` and NaN.
#[derive(Debug, Clone)]
pub struct Neighbours {
    pub k: usize,
    pub ids: Vec<u32>,
    pub scores: Vec<f32>,
    pub info: SearchInfo,
}

pub const NONE: u32 = u32::MAX;

impl Neighbours {
    /// Cosines of unit vectors are at most 1 and at least -1, but float32 sums of products
    /// can overshoot by an ulp (two copies of one image scored 1.0000001): published
    /// scores are held to [-1, 1].
    pub fn clamp_scores(&mut self) {
        for s in &mut self.scores {
            *s = s.clamp(-1.0, 1.0);
        }
    }

    pub fn row(&self, i: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let r = i * self.k..(i + 1) * self.k;
        self.ids[r.clone()].iter().copied().zip(self.scores[r].iter().copied()).filter(|(j, _)| *j != NONE)
    }

    /// `api/neighbors.bin`: per item, k little-endian (u32 index into `api/ids.json`, f32
    /// cosine) pairs, best first; padding is index 0xFFFFFFFF with a NaN score.
    pub fn to_bin(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ids.len() * 8);
        for (j, s) in self.ids.iter().zip(&self.scores) {
            out.extend_from_slice(&j.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }
}

/// Angular separation in arcseconds of two (RA, Dec) positions in degrees (haversine).
pub fn separation_arcsec(a: (f64, f64), b: (f64, f64)) -> f64 {
    crate::wcs::separation(a, b) * 3600.0
}

/// Neighbours of every row of `emb` among the others, leaving out those closer on the sky
/// than `s.min_separation_arcsec` (`sky[i]`: item i's RA/Dec in degrees, if known). To
/// still fill k places, the search asks for up to 2k and keeps the first k that remain.
/// Also returns those 2k unfiltered when the filter is on: the same pixels at the same
/// place are what the near-duplicates list is for.
pub fn search_on_sky(emb: &[f32], d: usize, s: &NeighbourSettings, sky: &[Option<(f64, f64)>]) -> Result<(Neighbours, Option<Neighbours>)> {
    if s.min_separation_arcsec <= 0.0 || sky.iter().all(|p| p.is_none()) {
        return Ok((search(emb, d, s)?, None));
    }
    let wide = search(emb, d, &NeighbourSettings { k: s.k * 2, ..s.clone() })?;
    let n = sky.len();
    let k = s.k.min(n.saturating_sub(1));
    let mut ids = Vec::with_capacity(n * k);
    let mut scores = Vec::with_capacity(n * k);
    for i in 0..n {
        let mut row: Vec<(u32, f32)> = wide
            .row(i)
            .filter(|&(j, _)| match (sky[i], sky[j as usize]) {
                (Some(a), Some(b)) => separation_arcsec(a, b) >= s.min_separation_arcsec,
                _ => true,
            })
            .take(k)
            .collect();
        row.resize(k, (NONE, f32::NAN));
        for (j, sc) in row {
            ids.push(j);
            scores.push(sc);
        }
    }
    let info = SearchInfo { k, ..wide.info.clone() };
    Ok((Neighbours { k, ids, scores, info }, Some(wide)))
}

/// Neighbours of every row of `emb` (n × d, L2-normalised) among the others.
pub fn search(emb: &[f32], d: usize, s: &NeighbourSettings) -> Result<Neighbours> {
    let t = Instant::now();
    if d == 0 || emb.len() % d != 0 {
        bail!("embeddings of {} floats are not rows of dimension {d}", emb.len());
    }
    let n = emb.len() / d;
    if n > NONE as usize {
        bail!("{n} items is more than neighbors.bin's 32-bit indices can address");
    }
    let k = s.k.min(n.saturating_sub(1));
    if k == 0 {
        return Ok(Neighbours {
            k: 0,
            ids: Vec::new(),
            scores: Vec::new(),
            info: SearchInfo { method: "exact".into(), k: 0, recall: 1.0, recall_sample: 0, device: "cpu".into(), device_note: String::new(), seconds: 0.0 },
        });
    }
    let flops = (n as f64) * (n as f64) * d as f64;
    let (chosen, device_note) = gpu::choose(s.device)?;
    let (mut ids, mut scores, method, recall, sample, device) = match chosen {
        None => {
            let exact = flops <= s.exact_max_flops;
            let (ids, scores, method, recall, sample) = find(&OnCpu, emb, n, d, k, exact, s.recall_target)?;
            (ids, scores, method, recall, sample, "cpu".to_string())
        }
        #[allow(unused_variables)]
        Some(dev) => {
            #[cfg(feature = "gpu")]
            {
                let res = faiss::StandardGpuResources::new().context("FAISS: cannot set up the GPU")?;
                let place = gpu::OnGpu { res, device: dev };
                let exact = flops <= s.gpu_exact_max_flops;
                let (ids, scores, method, recall, sample) = find(&place, emb, n, d, k, exact, s.recall_target)?;
                (ids, scores, method, recall, sample, format!("cuda:{dev}"))
            }
            #[cfg(not(feature = "gpu"))]
            unreachable!("gpu::choose never picks a GPU without the gpu feature")
        }
    };
    canonicalise(emb, d, k, &mut ids, &mut scores, &|_, _| true);
    Ok(Neighbours {
        k,
        ids,
        scores,
        info: SearchInfo { method, k, recall, recall_sample: sample, device, device_note, seconds: t.elapsed().as_secs_f64() },
    })
}

/// The cosine of two rows as every build publishes it, whichever kernel found the pair:
/// products in f64, summed in eight lanes combined in a fixed order, rounded once to f32.
/// FAISS's and BLAS's blocks round otherwise, and differently for a nightly update than for
/// a full search (the last bit, which ordered two identical images apart).
pub fn canonical_score(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f64; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            lanes[l] += x[l] as f64 * y[l] as f64;
        }
    }
    let mut sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        sum += *x as f64 * *y as f64;
    }
    sum as f32
}

/// `canonical_score` of rows `i` and `j` of `emb` (rows of `d`).
fn pair_score(emb: &[f32], d: usize, i: usize, j: usize) -> f32 {
    canonical_score(&emb[i * d..(i + 1) * d], &emb[j * d..(j + 1) * d])
}

/// Gives the entries of `w`-wide rows that `fresh(row, item)` selects their
/// `canonical_score`, and puts each row so rescored back in search order (higher score
/// first, then lower index). A row's padding (`NONE`) stays at its end.
fn canonicalise(emb: &[f32], d: usize, w: usize, ids: &mut [u32], scores: &mut [f32], fresh: &(dyn Fn(usize, u32) -> bool + Sync)) {
    use rayon::prelude::*;
    if w == 0 {
        return;
    }
    ids.par_chunks_mut(w).zip(scores.par_chunks_mut(w)).enumerate().for_each(|(i, (row, sc))| {
        let m = row.iter().take_while(|&&j| j != NONE).count();
        let mut touched = false;
        for (&j, s) in row[..m].iter().zip(&mut sc[..m]) {
            if fresh(i, j) {
                *s = pair_score(emb, d, i, j as usize);
                touched = true;
            }
        }
        if touched {
            let mut pairs: Vec<(f32, u32)> = sc[..m].iter().copied().zip(row[..m].iter().copied()).collect();
            pairs.sort_by(row_order);
            for (t, (s, j)) in pairs.into_iter().enumerate() {
                sc[t] = s;
                row[t] = j;
            }
        }
    });
}

/// A row's identity across builds: its id and the bytes of its embedding (so a changed
/// file, model or preprocessing makes it a new row).
pub type RowKey = [u8; 32];

pub fn row_keys(ids: &[&str], emb: &[f32], d: usize) -> Vec<RowKey> {
    use rayon::prelude::*;
    ids.par_iter()
        .zip(emb.par_chunks_exact(d.max(1)))
        .map(|(id, e)| {
            let mut h = blake3::Hasher::new();
            h.update(id.as_bytes());
            h.update(&[0]);
            // The floats' little-endian bytes, in one call (one per float cost 0.27 s of CPU in a
            // 115,000-item night).
            if cfg!(target_endian = "little") {
                h.update(bytemuck::cast_slice(e));
            } else {
                for v in e {
                    h.update(&v.to_le_bytes());
                }
            }
            *h.finalize().as_bytes()
        })
        .collect()
}

/// The last build's neighbours (kept in the cache by `save_previous`), the start of an
/// incremental update.
pub struct Previous {
    pub settings: String,
    pub keys: Vec<RowKey>,
    pub nb: Neighbours,
}

/// What an incremental update did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    pub added: usize,
    pub removed: usize,
    /// Rows searched afresh: the added ones and those that had lost a neighbour.
    pub searched: usize,
}

/// An update is tried while at most this share of the items were added or removed.
pub const INCREMENTAL_MAX_CHANGE: f64 = 0.1;

/// What the neighbours depend on besides the embeddings (the device aside: it changes speed,
/// not the result's quality).
fn settings_key(s: &NeighbourSettings) -> String {
    format!(
        "v2 k={} exact<={} gpu-exact<={} recall>={} sep={}",
        s.k, s.exact_max_flops, s.gpu_exact_max_flops, s.recall_target, s.min_separation_arcsec
    )
}

/// Neighbours kept per row beyond k (in the cache only), so that a row that loses up to this
/// many neighbours to removed items still has its k best without a new search.
pub const RESERVE: usize = 10;

/// Neighbours of every row, updated from `prev` when only a few rows were added or removed
/// since (see `update`), else searched afresh. `keys` are `row_keys` of the rows. Returns
/// the k neighbours to publish and the wider rows (k + `RESERVE`) to keep for the next build.
pub fn search_or_update(emb: &[f32], d: usize, s: &NeighbourSettings, keys: &[RowKey], prev: Option<Previous>) -> Result<(Neighbours, Neighbours, Option<Update>)> {
    let t = Instant::now();
    let n = keys.len();
    let k = s.k.min(n.saturating_sub(1));
    if let Some(p) = prev.filter(|p| p.settings == settings_key(s) && p.nb.k >= k && k > 0) {
        let (chosen, note) = gpu::choose(s.device)?;
        let done = match chosen {
            None => update(&OnCpu, emb, d, keys, &p, k, s.exact_max_flops)?.map(|r| (r, "cpu".to_string())),
            #[allow(unused_variables)]
            Some(dev) => {
                #[cfg(feature = "gpu")]
                {
                    let res = faiss::StandardGpuResources::new().context("FAISS: cannot set up the GPU")?;
                    let place = gpu::OnGpu { res, device: dev };
                    update(&place, emb, d, keys, &p, k, s.gpu_exact_max_flops)?.map(|r| (r, format!("cuda:{dev}")))
                }
                #[cfg(not(feature = "gpu"))]
                unreachable!("gpu::choose never picks a GPU without the gpu feature")
            }
        };
        if let Some(((ids, scores, up), device)) = done {
            let info = SearchInfo { device, device_note: note, seconds: t.elapsed().as_secs_f64(), ..p.nb.info };
            let wide = Neighbours { k: p.nb.k, ids, scores, info };
            return Ok((wide.first(k), wide, Some(up)));
        }
    }
    let wide = search(emb, d, &NeighbourSettings { k: s.k + RESERVE, ..s.clone() })?;
    Ok((wide.first(k), wide, None))
}

impl Neighbours {
    /// The first `k` neighbours of each row (k at most the rows' width).
    pub fn first(&self, k: usize) -> Neighbours {
        let k = k.min(self.k);
        let n = if self.k == 0 { 0 } else { self.ids.len() / self.k };
        let mut ids = Vec::with_capacity(n * k);
        let mut scores = Vec::with_capacity(n * k);
        for i in 0..n {
            ids.extend_from_slice(&self.ids[i * self.k..i * self.k + k]);
            scores.extend_from_slice(&self.scores[i * self.k..i * self.k + k]);
        }
        Neighbours { k, ids, scores, info: SearchInfo { k, ..self.info.clone() } }
    }
}

/// The previous rows (of width w ≥ k), renumbered, without removed items, with the rows of
/// added items searched among all items and the added items merged into every other row.
/// A row left with fewer than k neighbours is searched afresh. A kept row holds the true
/// best m of the items that remain (m: what it had left), so after merging, its first m are
/// the true best among all: m never grows between searches, and searches are exact, so
/// exact rows stay exact and approximate (IVF) rows keep their quality. `None` (search
/// afresh) when too much changed: more than `INCREMENTAL_MAX_CHANGE`, or more exact work
/// than `max_flops` allows.
fn update<P: Place>(p: &P, emb: &[f32], d: usize, keys: &[RowKey], prev: &Previous, k: usize, max_flops: f64) -> Result<Option<(Vec<u32>, Vec<f32>, Update)>> {
    let n = keys.len();
    let w = prev.nb.k;
    let index_of: std::collections::HashMap<&RowKey, u32> = keys.iter().zip(0..).collect();
    let new_of_old: Vec<u32> = prev.keys.iter().map(|key| index_of.get(key).copied().unwrap_or(NONE)).collect();
    let mut old_of_new = vec![NONE; n];
    for (o, &i) in new_of_old.iter().enumerate() {
        if i != NONE {
            old_of_new[i as usize] = o as u32;
        }
    }
    let removed = new_of_old.iter().filter(|&&i| i == NONE).count();
    let added: Vec<usize> = (0..n).filter(|&i| old_of_new[i] == NONE).collect();
    if (added.len() + removed) as f64 > INCREMENTAL_MAX_CHANGE * n as f64 {
        return Ok(None);
    }
    // Kept rows, renumbered, without the removed; `len[i]`: how many are left.
    let mut ids = vec![NONE; n * w];
    let mut scores = vec![f32::NAN; n * w];
    let mut len = vec![0usize; n];
    let mut search_again: Vec<usize> = added.clone();
    for i in 0..n {
        let o = old_of_new[i];
        if o == NONE {
            continue;
        }
        let r = o as usize * w..(o as usize + 1) * w;
        let mut m = 0;
        for (&j, &sc) in prev.nb.ids[r.clone()].iter().zip(&prev.nb.scores[r]) {
            if j != NONE && new_of_old[j as usize] != NONE {
                ids[i * w + m] = new_of_old[j as usize];
                scores[i * w + m] = sc;
                m += 1;
            }
        }
        len[i] = m;
        if m < k {
            search_again.push(i);
        }
    }
    search_again.sort_unstable();
    let flops = (n * added.len().max(1) + search_again.len() * n) as f64 * d as f64;
    if flops > max_flops {
        return Ok(None);
    }
    let again: std::collections::HashSet<usize> = search_again.iter().copied().collect();
    if p.on_cpu() && !added.is_empty() {
        // One pass over every row's scores against the added items gives both the added
        // rows and what the kept rows gain (see `merge_added`); FAISS then searches only
        // the rows that lost neighbours.
        let lost: Vec<usize> = search_again.iter().copied().filter(|&i| old_of_new[i] != NONE).collect();
        search_full(p, emb, d, &lost, w, &mut ids, &mut scores)?;
        merge_added(emb, d, &added, &again, w, &len, &mut ids, &mut scores);
        canonical_after_update(emb, d, w, &search_again, &mut ids, &mut scores);
        return Ok(Some((ids, scores, Update { added: added.len(), removed, searched: search_again.len() })));
    }
    search_full(p, emb, d, &search_again, w, &mut ids, &mut scores)?;
    // The added items merged into the other rows: each kept row's best among the added,
    // then the best of both lists, ordered as a search orders them, as many as it had.
    if !added.is_empty() {
        let kept: Vec<usize> = (0..n).filter(|i| !again.contains(i)).collect();
        let ka = w.min(added.len());
        let mut index = flat(p, &rows_of(emb, d, &added), d)?;
        let (got, _) = search_rows(&mut index, &rows_of(emb, d, &kept), &|_| u64::MAX, ka, None)?;
        for (q, &i) in kept.iter().enumerate() {
            let m = len[i];
            // Scored canonically before they are compared with the row's (as `merge_added`).
            let gained = got[q * ka..(q + 1) * ka].iter().filter(|&&j| j != NONE).map(|&j| added[j as usize]).map(|j| (pair_score(emb, d, i, j), j as u32));
            merge_into_row(&mut ids[i * w..(i + 1) * w], &mut scores[i * w..(i + 1) * w], m, gained.collect());
        }
    }
    canonical_after_update(emb, d, w, &search_again, &mut ids, &mut scores);
    Ok(Some((ids, scores, Update { added: added.len(), removed, searched: search_again.len() })))
}

/// After an update, the rows it searched again (the added items' and those that lost too
/// many) made canonical. The kept entries already are, and so are the added items a kept
/// row gained: both merges score them canonically before comparing.
fn canonical_after_update(emb: &[f32], d: usize, w: usize, searched: &[usize], ids: &mut [u32], scores: &mut [f32]) {
    let mut again = vec![false; emb.len() / d];
    searched.iter().for_each(|&i| again[i] = true);
    canonicalise(emb, d, w, ids, scores, &|i, _| again[i]);
}

/// Searches `rows` afresh among all items (`w` wide rows of `ids`/`scores`).
fn search_full<P: Place>(p: &P, emb: &[f32], d: usize, rows: &[usize], w: usize, ids: &mut [u32], scores: &mut [f32]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = emb.len() / d;
    let wa = w.min(n - 1);
    let (got, got_scores) = search_rows(&mut flat(p, emb, d)?, &rows_of(emb, d, rows), &|q| rows[q] as u64, wa, None)?;
    for (q, &i) in rows.iter().enumerate() {
        ids[i * w..i * w + wa].copy_from_slice(&got[q * wa..(q + 1) * wa]);
        scores[i * w..i * w + wa].copy_from_slice(&got_scores[q * wa..(q + 1) * wa]);
    }
    Ok(())
}

#[link(name = "blas")]
extern "C" {
    /// CBLAS single-precision matrix product, from the BLAS FAISS is linked with (OpenBLAS).
    fn cblas_sgemm(
        order: i32,
        trans_a: i32,
        trans_b: i32,
        m: i32,
        n: i32,
        k: i32,
        alpha: f32,
        a: *const f32,
        lda: i32,
        b: *const f32,
        ldb: i32,
        beta: f32,
        c: *mut f32,
        ldc: i32,
    );
}

/// OpenBLAS's own threads, where the BLAS is OpenBLAS: its functions are looked up when the
/// program runs, so another BLAS only means there is nothing to set.
mod blas {
    use std::ffi::{c_int, c_void, CStr};

    fn symbol(name: &CStr) -> *mut c_void {
        // SAFETY: dlsym with RTLD_DEFAULT only looks a name up among the loaded libraries.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
    }

    /// While it lives, OpenBLAS runs each call on the calling thread alone, so that several
    /// threads can each make their own call; the count it had comes back when it is dropped.
    pub struct OneThread(Option<(unsafe extern "C" fn(c_int), c_int)>);

    impl OneThread {
        pub fn new() -> OneThread {
            let (set, get) = (symbol(c"openblas_set_num_threads"), symbol(c"openblas_get_num_threads"));
            if set.is_null() || get.is_null() {
                return OneThread(None);
            }
            // SAFETY: these are OpenBLAS's `void openblas_set_num_threads(int)` and
            // `int openblas_get_num_threads(void)`.
            unsafe {
                let set: unsafe extern "C" fn(c_int) = std::mem::transmute(set);
                let get: unsafe extern "C" fn() -> c_int = std::mem::transmute(get);
                let was = get();
                set(1);
                OneThread(Some((set, was)))
            }
        }
    }

    impl Drop for OneThread {
        fn drop(&mut self) {
            if let Some((set, was)) = self.0 {
                // SAFETY: as in `new`.
                unsafe { set(was) }
            }
        }
    }
}

/// `out` (rows × a, row-major) = `x` (rows × d) · `y`ᵀ (`y`: a × d).
fn scores_against(x: &[f32], y: &[f32], d: usize, out: &mut [f32]) {
    let (rows, a) = (x.len() / d, y.len() / d);
    assert!(out.len() == rows * a && rows <= i32::MAX as usize && a <= i32::MAX as usize && d <= i32::MAX as usize);
    const ROW_MAJOR: i32 = 101;
    const NO_TRANS: i32 = 111;
    const TRANS: i32 = 112;
    // SAFETY: x is rows × d, y is a × d and out rows × a, all row-major with the leading
    // dimensions given (checked above); sgemm only reads x and y and writes out.
    unsafe {
        cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, rows as i32, a as i32, d as i32, 1.0, x.as_ptr(), d as i32, y.as_ptr(), d as i32, 0.0, out.as_mut_ptr(), a as i32);
    }
}

/// The best `w` (score, index) pairs offered: higher score first, then lower index, as a
/// search orders a row.
struct Best {
    w: usize,
    items: Vec<(f32, u32)>,
    /// Where the worst kept pair is, once `w` are kept.
    worst: usize,
}

/// A search's order of (score, index) pairs: higher score first, then lower index.
fn row_order(x: &(f32, u32), y: &(f32, u32)) -> std::cmp::Ordering {
    y.0.total_cmp(&x.0).then(x.1.cmp(&y.1))
}

/// Merges `gained` (score, index) pairs into a row that holds `m` neighbours; it keeps its
/// best `m`, in search order.
fn merge_into_row(row_ids: &mut [u32], row_scores: &mut [f32], m: usize, mut gained: Vec<(f32, u32)>) {
    gained.extend(row_scores[..m].iter().copied().zip(row_ids[..m].iter().copied()));
    gained.sort_by(row_order);
    for (c, (sc, j)) in gained.into_iter().take(m).enumerate() {
        row_ids[c] = j;
        row_scores[c] = sc;
    }
}

fn better(a: (f32, u32), b: (f32, u32)) -> bool {
    row_order(&a, &b).is_lt()
}

impl Best {
    fn new(w: usize) -> Best {
        Best { w, items: Vec::with_capacity(w), worst: 0 }
    }

    fn offer(&mut self, s: f32, j: u32) {
        if self.items.len() < self.w {
            self.items.push((s, j));
            if self.items.len() == self.w {
                self.find_worst();
            }
        } else if self.w > 0 && better((s, j), self.items[self.worst]) {
            self.items[self.worst] = (s, j);
            self.find_worst();
        }
    }

    /// The lowest score worth offering (ties are decided by `offer`).
    fn floor(&self) -> f32 {
        if self.items.len() < self.w {
            f32::NEG_INFINITY
        } else if self.w == 0 {
            f32::INFINITY
        } else {
            self.items[self.worst].0
        }
    }

    fn find_worst(&mut self) {
        let mut k = 0;
        for (c, &p) in self.items.iter().enumerate() {
            if better(self.items[k], p) {
                k = c;
            }
        }
        self.worst = k;
    }
}

/// Merges the `added` items into every row on the CPU, from one pass over the scores of all
/// rows against them (BLAS, a block of rows at a time):
/// - each added item's row: its best `w` (at most n - 1) among all items, itself excluded;
/// - each kept row (not in `again`) holding `len[i]` neighbours: the added items scoring
///   at least its last one join it, and it keeps its best `len[i]`.
///
/// Rows come out ordered as a search orders them. The scores are those of FAISS's exact
/// search up to float rounding, with half the arithmetic of searching both ways and no
/// per-row heap over the added items.
///
/// Blocks go to the threads whole: each thread multiplies its own block with a
/// single-threaded BLAS, then merges it. A multi-threaded BLAS called block after block
/// left its threads spinning (`sched_yield`) while the merging ran: half a core of a
/// 115,000-item night.
#[allow(clippy::too_many_arguments)]
fn merge_added(emb: &[f32], d: usize, added: &[usize], again: &std::collections::HashSet<usize>, w: usize, len: &[usize], ids: &mut [u32], scores: &mut [f32]) {
    // About 16 MB of scores per block.
    let block = ((4 << 20) / added.len().max(1)).clamp(64, 16_384);
    merge_added_by(emb, d, added, again, w, len, ids, scores, block)
}

/// Columns compared at once before looking at each: most blocks of scores hold none
/// worth taking, and a comparison of the whole chunk runs in vector registers.
const LANES: usize = 32;

/// How far below a row's last (canonical) score a BLAS score may be and still be scored
/// canonically against it: far above the rounding of a 128- or 1,280-number dot product.
const NEAR: f32 = 1e-4;

#[allow(clippy::too_many_arguments)]
fn merge_added_by(emb: &[f32], d: usize, added: &[usize], again: &std::collections::HashSet<usize>, w: usize, len: &[usize], ids: &mut [u32], scores: &mut [f32], block: usize) {
    use rayon::prelude::*;
    let n = emb.len() / d;
    let a = added.len();
    let y = rows_of(emb, d, added);
    let wa = w.min(n - 1);
    let skip: Vec<bool> = (0..n).map(|i| len[i] == 0 || again.contains(&i)).collect();
    let _one = blas::OneThread::new();
    // Each share of the rows (a few per thread, whole blocks) keeps its own best for the
    // added rows, each one's floor beside it; the shares' are merged at the end.
    let shares = rayon::current_num_threads().max(1) * 2;
    let per = n.div_ceil(block).div_ceil(shares).max(1) * block;
    let best = ids
        .par_chunks_mut(per * w)
        .zip(scores.par_chunks_mut(per * w))
        .enumerate()
        .map(|(g, (ids, scores))| {
            let mut buf = vec![0f32; block.min(n) * a];
            let mut best: Vec<Best> = (0..a).map(|_| Best::new(wa)).collect();
            let mut floors = vec![f32::NEG_INFINITY; a];
            for (b, (ids, scores)) in ids.chunks_mut(block * w).zip(scores.chunks_mut(block * w)).enumerate() {
                let r0 = g * per + b * block;
                let r1 = (r0 + block).min(n);
                let s = &mut buf[..(r1 - r0) * a];
                scores_against(&emb[r0 * d..r1 * d], &y, d, s);
                for (q, (row_ids, row_scores)) in ids.chunks_mut(w).zip(scores.chunks_mut(w)).enumerate() {
                    let (i, row) = (r0 + q, &s[q * a..(q + 1) * a]);
                    // The added rows: the best so far of each.
                    for (c, x) in row.chunks(LANES).enumerate() {
                        if x.iter().zip(&floors[c * LANES..]).fold(false, |hit, (x, f)| hit | (x >= f)) {
                            for (j, &sc) in (c * LANES..).zip(x) {
                                if sc >= floors[j] && added[j] != i {
                                    best[j].offer(sc, i as u32);
                                    floors[j] = best[j].floor();
                                }
                            }
                        }
                    }
                    // A kept row: the added items at or above its last score join it.
                    if skip[i] {
                        continue;
                    }
                    // The row's scores are canonical (`canonical_score`), BLAS's are not: an
                    // added item within `NEAR` of the last one is scored canonically before it
                    // is compared, so which items a row keeps does not hang on the last bit.
                    let (m, floor) = (len[i], row_scores[len[i] - 1]);
                    let near = floor - NEAR;
                    let mut gained: Vec<(f32, u32)> = Vec::new();
                    for (c, x) in row.chunks(LANES).enumerate() {
                        if x.iter().fold(false, |hit, &x| hit | (x >= near)) {
                            gained.extend(x.iter().enumerate().filter(|(_, &x)| x >= near).map(|(t, &x)| (x, added[c * LANES + t] as u32)));
                        }
                    }
                    for (sc, j) in &mut gained {
                        *sc = pair_score(emb, d, i, *j as usize);
                    }
                    gained.retain(|&(sc, _)| sc >= floor);
                    if !gained.is_empty() {
                        merge_into_row(row_ids, row_scores, m, gained);
                    }
                }
            }
            best
        })
        .reduce_with(|mut x, y| {
            for (bx, by) in x.iter_mut().zip(y) {
                by.items.into_iter().for_each(|(sc, j)| bx.offer(sc, j));
            }
            x
        })
        .unwrap_or_default();
    for (&i, b) in added.iter().zip(best) {
        let mut row = b.items;
        row.sort_by(row_order);
        for c in 0..w {
            let (sc, j) = row.get(c).copied().unwrap_or((f32::NAN, NONE));
            ids[i * w + c] = j;
            scores[i * w + c] = sc;
        }
    }
}

const PREVIOUS_MAGIC: &[u8] = b"simsite-neighbours-v1\n";

/// Keeps this build's neighbours for the next build's update: a header line, then the row
/// keys, the ids and the scores (little-endian), written to a temporary name and renamed.
pub fn save_previous(path: &std::path::Path, s: &NeighbourSettings, keys: &[RowKey], nb: &Neighbours) -> std::io::Result<()> {
    let header = serde_json::json!({
        "settings": settings_key(s), "n": keys.len(), "k": nb.k,
        "method": nb.info.method, "recall": nb.info.recall, "recall_sample": nb.info.recall_sample,
    });
    let mut out = Vec::with_capacity(PREVIOUS_MAGIC.len() + 256 + keys.len() * (32 + nb.k * 8));
    out.extend_from_slice(PREVIOUS_MAGIC);
    out.extend_from_slice(header.to_string().as_bytes());
    out.push(b'\n');
    keys.iter().for_each(|key| out.extend_from_slice(key));
    nb.ids.iter().for_each(|j| out.extend_from_slice(&j.to_le_bytes()));
    nb.scores.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    crate::fsutil::atomic_write(path, &out)
}

/// The neighbours `save_previous` kept; `None` when there are none or the file is damaged
/// (the build then searches afresh, losing nothing).
pub fn load_previous(path: &std::path::Path) -> Option<Previous> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(PREVIOUS_MAGIC)?;
    let line_end = rest.iter().position(|&b| b == b'\n')?;
    let h: serde_json::Value = serde_json::from_slice(&rest[..line_end]).ok()?;
    let (n, k) = (h["n"].as_u64()? as usize, h["k"].as_u64()? as usize);
    let body = &rest[line_end + 1..];
    if body.len() != n * 32 + n * k * 8 {
        return None;
    }
    let (key_bytes, rows) = body.split_at(n * 32);
    let keys = key_bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
    let (id_bytes, score_bytes) = rows.split_at(n * k * 4);
    let ids = id_bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect::<Vec<_>>();
    if ids.iter().any(|&j| j != NONE && j as usize >= n) {
        return None;
    }
    let scores = score_bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    let info = SearchInfo {
        method: h["method"].as_str()?.to_string(),
        k,
        recall: h["recall"].as_f64()?,
        recall_sample: h["recall_sample"].as_u64()? as usize,
        device: String::new(),
        device_note: String::new(),
        seconds: 0.0,
    };
    Some(Previous { settings: h["settings"].as_str()?.to_string(), keys, nb: Neighbours { k, ids, scores, info } })
}

/// Puts a CPU-built FAISS index where it will be trained and searched.
trait Place {
    type Ix<'a>: Index + SearchWithParamsMut<f32, f32>
    where
        Self: 'a;
    fn place(&self, index: IndexImpl) -> Result<Self::Ix<'_>>;
    /// Whether indexes stay on the CPU (where `update` merges added items itself).
    fn on_cpu(&self) -> bool {
        false
    }
}

struct OnCpu;

impl Place for OnCpu {
    type Ix<'a> = IndexImpl;
    fn place(&self, index: IndexImpl) -> Result<IndexImpl> {
        Ok(index)
    }
    fn on_cpu(&self) -> bool {
        true
    }
}

/// Exact or approximate (IVF) neighbours of every row, on the device `p` places indexes on.
fn find<P: Place>(p: &P, emb: &[f32], n: usize, d: usize, k: usize, exact: bool, target: f64) -> Result<Found> {
    if exact {
        let (ids, scores) = search_rows(&mut flat(p, emb, d)?, emb, &|q| q as u64, k, None)?;
        Ok((ids, scores, "exact".to_string(), 1.0, 0))
    } else {
        approximate(p, emb, n, d, k, target)
    }
}

fn flat<'p, P: Place>(p: &'p P, emb: &[f32], d: usize) -> Result<P::Ix<'p>> {
    let index = index_factory(d as u32, "Flat", MetricType::InnerProduct).context("FAISS: cannot create a flat index")?;
    let mut index = p.place(index)?;
    index.add(emb).context("FAISS: cannot add the embeddings")?;
    Ok(index)
}

/// k neighbours for each row of `queries`, whose own index in the indexed set is `own(q)`
/// (dropped from its row). Rows are ordered by (score desc, index asc), so ties come out the
/// same on every run, and padded with `NONE`/NaN.
fn search_rows<I: Index + SearchWithParamsMut<f32, f32>>(
    index: &mut I,
    queries: &[f32],
    own: &dyn Fn(usize) -> u64,
    k: usize,
    nprobe: Option<usize>,
) -> Result<(Vec<u32>, Vec<f32>)> {
    let d = index.d() as usize;
    let nq = queries.len() / d;
    let mut ids = Vec::with_capacity(nq * k);
    let mut scores = Vec::with_capacity(nq * k);
    // Blocks bound the result buffers' memory at any N.
    const BLOCK: usize = 16_384;
    let params = match nprobe {
        None => None,
        Some(p) => {
            let mut params = SearchParametersIVF::new().context("FAISS: cannot make search parameters")?;
            params.set_nprobe(p);
            Some(params.upcast())
        }
    };
    for b in (0..nq).step_by(BLOCK) {
        let m = BLOCK.min(nq - b);
        let block = &queries[b * d..(b + m) * d];
        let res = match &params {
            None => index.search(block, k + 1),
            Some(params) => index.search_with_params(block, k + 1, params),
        }
        .context("FAISS search failed")?;
        for q in 0..m {
            let me = own(b + q);
            let r = q * (k + 1)..(q + 1) * (k + 1);
            let mut row: Vec<(f32, u32)> = res.labels[r.clone()]
                .iter()
                .zip(&res.distances[r])
                .filter_map(|(l, &s)| l.get().filter(|&j| j != me).map(|j| (s, j as u32)))
                .collect();
            row.sort_by(row_order);
            row.truncate(k);
            row.resize(k, (f32::NAN, NONE));
            for (s, j) in row {
                ids.push(j);
                scores.push(s);
            }
        }
    }
    Ok((ids, scores))
}

/// Queries used to measure recall: up to 1,000 rows spread evenly over the archive.
fn sample_rows(n: usize) -> Vec<usize> {
    let m = n.min(1000);
    (0..m).map(|i| i * n / m).collect()
}

fn rows_of(emb: &[f32], d: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter().flat_map(|&i| emb[i * d..(i + 1) * d].iter().copied()).collect()
}

type Found = (Vec<u32>, Vec<f32>, String, f64, usize);

/// IVF with about 4·√N lists trained on an even sample; nprobe is the smallest (found by
/// doubling, then bisecting) whose recall@k on the sample queries reaches the target (or
/// every list is probed).
fn approximate<P: Place>(p: &P, emb: &[f32], n: usize, d: usize, k: usize, target: f64) -> Result<Found> {
    let sample = sample_rows(n);
    let queries = rows_of(emb, d, &sample);
    let own = |q: usize| sample[q] as u64;
    let (truth, _) = search_rows(&mut flat(p, emb, d)?, &queries, &own, k, None)?;

    let nlist = ((4.0 * (n as f64).sqrt()) as usize).min(n / 39).clamp(1, 65_536);
    let desc = format!("IVF{nlist},Flat");
    let index = index_factory(d as u32, &desc, MetricType::InnerProduct).context("FAISS: cannot create an IVF index")?;
    let mut index = p.place(index)?;
    // FAISS wants 39+ training points per list; 64 per list, evenly spaced, is plenty.
    let train_n = (nlist * 64).min(n);
    let train = rows_of(emb, d, &(0..train_n).map(|i| i * n / train_n).collect::<Vec<_>>());
    index.train(&train).context("FAISS: cannot train the IVF index")?;
    index.add(emb).context("FAISS: cannot add the embeddings")?;

    let mut measure = |nprobe: usize| -> Result<f64> {
        let (got, _) = search_rows(&mut index, &queries, &own, k, Some(nprobe))?;
        Ok(recall_at_k(&truth, &got, k))
    };
    // Double nprobe until the target is met, then bisect between the last two values for
    // the smallest that meets it: the search over all N costs in proportion to nprobe.
    let (mut lo, mut hi) = (0usize, 1usize);
    let mut recall = measure(hi)?;
    while recall < target && hi < nlist {
        lo = hi;
        hi = (hi * 2).min(nlist);
        recall = measure(hi)?;
    }
    while recall >= target && hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let r = measure(mid)?;
        if r >= target {
            (hi, recall) = (mid, r);
        } else {
            lo = mid;
        }
    }
    let nprobe = hi;
    let (ids, scores) = search_rows(&mut index, emb, &|q| q as u64, k, Some(nprobe))?;
    Ok((ids, scores, format!("{desc} nprobe={nprobe}"), recall, sample.len()))
}

/// Stops at once when the configured device cannot be used (`cuda` without FAISS's GPU
/// support or without a GPU), before a build decodes and embeds the archive.
pub fn check_device(device: Device) -> Result<()> {
    gpu::choose(device).map(|_| ())
}

/// The GPU side: which device to use, and placing indexes on it.
mod gpu {
    use super::Device;
    use anyhow::{bail, Result};

    /// The CUDA device to search on (None: the CPU), and why.
    pub fn choose(device: Device) -> Result<(Option<i32>, String)> {
        #[cfg(not(feature = "gpu"))]
        {
            match device {
                Device::Cuda => bail!(
                    "[neighbours] device = \"cuda\", but this simsite was built without FAISS's GPU support\n  \
                     rebuild it with `cargo build --release --features gpu` on a machine with the CUDA toolkit (see the README), or set device = \"auto\""
                ),
                Device::Auto => Ok((None, "built without the gpu feature".into())),
                Device::Cpu => Ok((None, "device = cpu".into())),
            }
        }
        #[cfg(feature = "gpu")]
        {
            if device == Device::Cpu {
                return Ok((None, "device = cpu".into()));
            }
            let mut count: std::os::raw::c_int = 0;
            // SAFETY: faiss_get_num_gpus writes one int (cudaGetDeviceCount; 0 when CUDA finds no device).
            let rc = unsafe { faiss_get_num_gpus(&mut count) };
            if rc == 0 && count > 0 {
                return Ok((Some(0), format!("{count} CUDA device(s) visible")));
            }
            match device {
                Device::Cuda => bail!(
                    "[neighbours] device = \"cuda\", but CUDA sees no GPU (FAISS code {rc}, {count} devices)\n  \
                     check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or set device = \"auto\" to search on the CPU"
                ),
                _ => Ok((None, "no CUDA device visible".into())),
            }
        }
    }

    #[cfg(feature = "gpu")]
    extern "C" {
        fn faiss_get_num_gpus(p_output: *mut std::os::raw::c_int) -> std::os::raw::c_int;
    }

    #[cfg(feature = "gpu")]
    pub struct OnGpu {
        pub res: faiss::StandardGpuResources,
        pub device: i32,
    }

    #[cfg(feature = "gpu")]
    impl super::Place for OnGpu {
        type Ix<'a> = faiss::GpuIndexImpl<'a, faiss::index::IndexImpl>;
        fn place(&self, index: faiss::index::IndexImpl) -> Result<Self::Ix<'_>> {
            use anyhow::Context;
            index.into_gpu(&self.res, self.device).context("FAISS: cannot move the index to the GPU")
        }
    }
}

/// Share of the true neighbours (rows of k, `NONE` padding ignored) that `got` also has.
pub fn recall_at_k(truth: &[u32], got: &[u32], k: usize) -> f64 {
    let (mut hit, mut total) = (0usize, 0usize);
    for (t, g) in truth.chunks(k).zip(got.chunks(k)) {
        for j in t.iter().filter(|&&j| j != NONE) {
            total += 1;
            hit += g.contains(j) as usize;
        }
    }
    if total == 0 {
        1.0
    } else {
        hit as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two copies of one image: their unit vectors' float32 dot product can come out at
    /// 1.0000001; what is published is at most 1.
    #[test]
    fn published_scores_are_cosines_held_to_plus_minus_one() {
        let mut nb = Neighbours {
            k: 1,
            ids: vec![1, 0, 0],
            scores: vec![1.0000001, -1.0000001, 0.25],
            info: SearchInfo { method: "exact".into(), k: 1, recall: 1.0, recall_sample: 0, device: "cpu".into(), device_note: String::new(), seconds: 0.0 },
        };
        nb.clamp_scores();
        assert_eq!(nb.scores, vec![1.0, -1.0, 0.25]);
    }

    fn dot(emb: &[f32], d: usize, i: usize, j: usize) -> f32 {
        emb[i * d..(i + 1) * d].iter().zip(&emb[j * d..(j + 1) * d]).map(|(x, y)| x * y).sum()
    }

    /// The best `m` of row `i` among the other rows that `among` takes, as a search orders them.
    fn truth(emb: &[f32], d: usize, i: usize, m: usize, among: impl Fn(usize) -> bool) -> Vec<u32> {
        let n = emb.len() / d;
        let mut row: Vec<(f32, u32)> = (0..n).filter(|&j| j != i && among(j)).map(|j| (dot(emb, d, i, j), j as u32)).collect();
        row.sort_by(row_order);
        row.into_iter().take(m).map(|(_, j)| j).collect()
    }

    #[test]
    fn merging_added_items_block_by_block_gives_every_row_its_true_best() {
        let (n, d, w) = (300, 16, 10);
        let mut rng = crate::rng::SplitMix::new(5, 0, 0);
        let mut emb: Vec<f32> = (0..n * d).map(|_| rng.normal()).collect();
        for r in emb.chunks_mut(d) {
            let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter_mut().for_each(|x| *x /= norm);
        }
        let added: Vec<usize> = (0..n).filter(|i| i % 5 == 3).collect(); // 60: two chunks of columns
        // Rows searched again elsewhere are left alone; some kept rows lost neighbours.
        let again: std::collections::HashSet<usize> = added.iter().copied().chain([0, 150]).collect();
        let len: Vec<usize> = (0..n).map(|i| if added.contains(&i) { 0 } else if i % 7 == 0 { 6 } else { w }).collect();
        // Each kept row: its true best among the items that are not added.
        let (mut ids0, mut scores0) = (vec![NONE; n * w], vec![f32::NAN; n * w]);
        for i in (0..n).filter(|i| !added.contains(i)) {
            for (c, j) in truth(&emb, d, i, len[i], |j| !added.contains(&j)).into_iter().enumerate() {
                ids0[i * w + c] = j;
                scores0[i * w + c] = dot(&emb, d, i, j as usize);
            }
        }
        for block in [1, 7, 64, 300, 1000] {
            let (mut ids, mut scores) = (ids0.clone(), scores0.clone());
            merge_added_by(&emb, d, &added, &again, w, &len, &mut ids, &mut scores, block);
            for i in 0..n {
                let row = &ids[i * w..(i + 1) * w];
                if again.contains(&i) && !added.contains(&i) {
                    assert_eq!(row, &ids0[i * w..(i + 1) * w], "row {i} (block {block}) was left alone");
                    continue;
                }
                let m = if added.contains(&i) { w } else { len[i] };
                assert_eq!(&row[..m], &truth(&emb, d, i, m, |_| true)[..], "row {i}, block {block}");
                assert!(row[m..].iter().all(|&j| j == NONE || m == w), "row {i}, block {block}");
                for (c, &j) in row[..m].iter().enumerate() {
                    assert!((scores[i * w + c] - dot(&emb, d, i, j as usize)).abs() < 1e-5, "row {i}, block {block}");
                }
            }
        }
    }
}
