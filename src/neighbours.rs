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
    let (ra1, de1, ra2, de2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((de2 - de1) / 2.0).sin().powi(2) + de1.cos() * de2.cos() * ((ra2 - ra1) / 2.0).sin().powi(2);
    (2.0 * h.sqrt().min(1.0).asin()).to_degrees() * 3600.0
}

/// Neighbours of every row of `emb` among the others, leaving out those closer on the sky
/// than `s.min_separation_arcsec` (`sky[i]`: item i's RA/Dec in degrees, if known). To
/// still fill k places, the search asks for up to 2k and keeps the first k that remain.
pub fn search_on_sky(emb: &[f32], d: usize, s: &NeighbourSettings, sky: &[Option<(f64, f64)>]) -> Result<Neighbours> {
    if s.min_separation_arcsec <= 0.0 || sky.iter().all(|p| p.is_none()) {
        return search(emb, d, s);
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
    let info = SearchInfo { k, ..wide.info };
    Ok(Neighbours { k, ids, scores, info })
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
    let (ids, scores, method, recall, sample, device) = match chosen {
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
    Ok(Neighbours {
        k,
        ids,
        scores,
        info: SearchInfo { method, k, recall, recall_sample: sample, device, device_note, seconds: t.elapsed().as_secs_f64() },
    })
}

/// Puts a CPU-built FAISS index where it will be trained and searched.
trait Place {
    type Ix<'a>: Index + SearchWithParamsMut<f32, f32>
    where
        Self: 'a;
    fn place(&self, index: IndexImpl) -> Result<Self::Ix<'_>>;
}

struct OnCpu;

impl Place for OnCpu {
    type Ix<'a> = IndexImpl;
    fn place(&self, index: IndexImpl) -> Result<IndexImpl> {
        Ok(index)
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
            let mut row: Vec<(u32, f32)> = res.labels[r.clone()]
                .iter()
                .zip(&res.distances[r])
                .filter_map(|(l, &s)| l.get().filter(|&j| j != me).map(|j| (j as u32, s)))
                .collect();
            row.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            row.truncate(k);
            row.resize(k, (NONE, f32::NAN));
            for (j, s) in row {
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
