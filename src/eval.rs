//! `simsite eval`: how well the encoder's neighbours agree with labels someone trusts (a
//! labelled part of the archive, or a synthetic archive), beside a raw-pixel PCA baseline,
//! so "is this model any use on this archive?" and "did the new model help?" get numbers.
//!
//! The metric functions take plain embedding matrices whose rows are L2-normalised (inner
//! product = cosine similarity) and know nothing of the pipeline. [`run`] is the command: it
//! decodes the labelled files once, takes their embeddings through the embedding cache (so an
//! eval after a build embeds nothing) and their encoder inputs for the baseline from the same
//! pass. Neighbour search is exact and brute force (a matrix product per block of queries);
//! ties in similarity go to the item that comes first, so the figures are reproducible.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ndarray::{s, Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::Serialize;
use thiserror::Error;

use crate::catalogue::normalise_path;
use crate::config::Settings;
use crate::fsutil;
use crate::pipeline::{self, Gathered};
use crate::report::Problem;
use crate::ui::Ui;

/// Neighbours voting in the kNN accuracy, as the Radio Galaxy Zoo paper reports it.
pub const KNN_K: usize = 20;
/// Principal components kept by the pixel baseline (fewer when there are fewer items or pixels).
pub const PCA_COMPONENTS: usize = 64;
/// The baseline's images are block-averaged down to at most this many pixels a side.
pub const PCA_SIDE: usize = 32;
/// Paths named in the JSON report for "not in the archive" and "skipped".
const JSON_EXAMPLES: usize = 10;
/// Paths named on the terminal for the same.
const TERMINAL_EXAMPLES: usize = 5;
/// Similarities held per block of queries (32 MB of f32), whatever the archive's size.
const BLOCK_FLOATS: usize = 1 << 23;

// ---------------------------------------------------------------------------------------
// The labels file
// ---------------------------------------------------------------------------------------

/// A labels CSV that cannot be used; names the file, line, column and the fix.
#[derive(Debug, Error)]
pub enum LabelsError {
    #[error("cannot read the labels file {}: {source}\n  fix: check the --labels path", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("labels file {}, line 1: the header has no column `{column}` (its columns are {found})\n  fix: the first line must name the columns: path,label[,twin_of]", path.display())]
    MissingColumn { path: PathBuf, column: &'static str, found: String },
    #[error("labels file {}, line {line}: {message}\n  fix: {fix}", path.display())]
    Csv { path: PathBuf, line: u64, message: String, fix: &'static str },
    #[error("labels file {}, line {line}, column {column} (`{name}`): {message}\n  fix: {fix}", path.display())]
    Field { path: PathBuf, line: u64, column: usize, name: &'static str, message: String, fix: &'static str },
    #[error("labels file {} lists no image\n  fix: add one line `path,label` per labelled image below the header", path.display())]
    Empty { path: PathBuf },
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRow {
    /// Relative to the archive root, `/`-separated.
    pub path: String,
    pub label: String,
    /// The row (index into [`Labels::rows`]) this image is a transformed copy of.
    pub twin_of: Option<usize>,
    pub line: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub rows: Vec<LabelRow>,
}

impl Labels {
    pub fn load(path: &Path) -> Result<Labels, LabelsError> {
        let file = std::fs::File::open(path).map_err(|e| LabelsError::Io { path: path.to_path_buf(), source: e })?;
        Labels::parse(std::io::BufReader::new(file), path)
    }

    /// Parses `path,label[,twin_of]` (any column order, other columns ignored); `path` is
    /// only used in messages.
    pub fn parse(input: impl std::io::Read, path: &Path) -> Result<Labels, LabelsError> {
        // Lines counted from byte offsets, as for the catalogue: the csv crate miscounts
        // files with CR LF or CR line ends.
        let lines = std::sync::Arc::new(std::sync::Mutex::new(crate::catalogue::LineStarts::default()));
        let line_of = |pos: Option<&csv::Position>, default: u64| pos.map(|p| lines.lock().unwrap_or_else(|e| e.into_inner()).line_of(p.byte())).unwrap_or(default);
        let counted = crate::catalogue::Counted { inner: input, lines: lines.clone() };
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(counted);
        let csv_err = |e: csv::Error| {
            let line = line_of(e.position(), 1);
            let (message, fix) = match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => (
                    format!("{len} field(s) where the header has {expected_len}"),
                    "every line needs as many fields as the header; quote fields that contain commas",
                ),
                csv::ErrorKind::Utf8 { .. } => ("not valid UTF-8".to_string(), "save the labels file as UTF-8"),
                csv::ErrorKind::Io(err) => (err.to_string(), "check that the file can be read"),
                _ => (e.to_string(), "check the CSV syntax of that line"),
            };
            LabelsError::Csv { path: path.to_path_buf(), line, message, fix }
        };
        let headers = reader.headers().map_err(csv_err)?.clone();
        let names: Vec<&str> = headers.iter().map(|h| h.trim().trim_start_matches('\u{feff}')).collect();
        let column = |name: &'static str| names.iter().position(|h| *h == name);
        let missing = |name: &'static str| LabelsError::MissingColumn {
            path: path.to_path_buf(),
            column: name,
            found: crate::error::backticked(&names),
        };
        let path_col = column("path").ok_or_else(|| missing("path"))?;
        let label_col = column("label").ok_or_else(|| missing("label"))?;
        let twin_col = column("twin_of");
        let field = |line: u64, col: usize, name: &'static str, message: String, fix: &'static str| LabelsError::Field {
            path: path.to_path_buf(),
            line,
            column: col + 1,
            name,
            message,
            fix,
        };

        let mut rows: Vec<LabelRow> = Vec::new();
        let mut twins: Vec<(usize, String)> = Vec::new();
        let mut row_of: HashMap<String, usize> = HashMap::new();
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record).map_err(csv_err)? {
            let line = line_of(record.position(), 0);
            let get = |c: usize| record.get(c).unwrap_or("");
            let p = normalise_path(get(path_col));
            if p.is_empty() {
                return Err(field(line, path_col, "path", "is empty".into(), "give the image's path relative to the archive root, or delete the line"));
            }
            let label = get(label_col).trim().to_string();
            if label.is_empty() {
                return Err(field(line, label_col, "label", format!("`{p}` has no label"), "give every listed image a label, or delete its line"));
            }
            if let Some(&first) = row_of.get(&p) {
                return Err(field(
                    line,
                    path_col,
                    "path",
                    format!("`{p}` is already listed on line {}", rows[first].line),
                    "list every image once",
                ));
            }
            if let Some(t) = twin_col.map(|c| normalise_path(get(c))).filter(|t| !t.is_empty()) {
                twins.push((rows.len(), t));
            }
            row_of.insert(p.clone(), rows.len());
            rows.push(LabelRow { path: p, label, twin_of: None, line });
        }
        // Second pass: a twin may name a row further down.
        for (r, t) in twins {
            let col = twin_col.unwrap_or(0);
            match row_of.get(&t) {
                Some(&o) if o == r => {
                    return Err(field(rows[r].line, col, "twin_of", format!("`{t}` names the line's own path"), "twin_of must name the original image's path, or be empty"));
                }
                Some(&o) => rows[r].twin_of = Some(o),
                None => {
                    return Err(field(
                        rows[r].line,
                        col,
                        "twin_of",
                        format!("`{t}` is not a path listed in this file"),
                        "twin_of must be empty or name the `path` of another line (relative to the archive root)",
                    ));
                }
            }
        }
        if rows.is_empty() {
            return Err(LabelsError::Empty { path: path.to_path_buf() });
        }
        Ok(Labels { rows })
    }
}

// ---------------------------------------------------------------------------------------
// Metrics on embedding matrices
// ---------------------------------------------------------------------------------------

/// The `k` nearest neighbours of every row, best first, self excluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    k: usize,
    index: Vec<u32>,
    score: Vec<f32>,
}

impl Neighbours {
    pub fn k(&self) -> usize {
        self.k
    }

    /// Row `i`'s neighbours (item numbers) and their cosine similarities.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = i * self.k..(i + 1) * self.k;
        (&self.index[r.clone()], &self.score[r])
    }
}

/// Higher similarity first; equal similarities in item order. A total order (`total_cmp`),
/// so partial selection and sorting give the same neighbours on every run.
fn better(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Exact cosine k nearest neighbours of every row of `emb` (rows L2-normalised), self
/// excluded; `k` is capped at rows − 1. Blocks of queries are one matrix product each
/// (matrixmultiply), then one pass per row keeping the best `k`; blocks run in parallel.
pub fn neighbours(emb: ArrayView2<'_, f32>, k: usize) -> Neighbours {
    let rows = (BLOCK_FLOATS / emb.nrows().max(1)).clamp(1, 256);
    neighbours_in_blocks(emb, k, rows)
}

fn neighbours_in_blocks(emb: ArrayView2<'_, f32>, k: usize, block: usize) -> Neighbours {
    let n = emb.nrows();
    let k = k.min(n.saturating_sub(1));
    let mut index = vec![0u32; n * k];
    let mut score = vec![0f32; n * k];
    if k == 0 {
        return Neighbours { k, index, score };
    }
    index.par_chunks_mut(block * k).zip(score.par_chunks_mut(block * k)).enumerate().for_each(|(b, (idx, sc))| {
        let start = b * block;
        let end = (start + block).min(n);
        let sims = emb.slice(s![start..end, ..]).dot(&emb.t());
        let mut top: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
        for (r, row) in sims.outer_iter().enumerate() {
            let q = start + r;
            top.clear();
            for (j, &s) in row.iter().enumerate() {
                // Most candidates lose to the k-th best so far: one comparison each. Items
                // come in order, so a candidate equal to the k-th best never displaces it.
                if j == q || (top.len() == k && s.total_cmp(&top[k - 1].0) != Ordering::Greater) {
                    continue;
                }
                let c = (s, j as u32);
                let at = top.partition_point(|t| better(t, &c) == Ordering::Less);
                top.insert(at, c);
                top.truncate(k);
            }
            for (t, &(s, j)) in top.iter().enumerate() {
                idx[r * k + t] = j;
                sc[r * k + t] = s;
            }
        }
    });
    Neighbours { k, index, score }
}

/// Per item, the fraction of its first `k` neighbours (at most those found) that share its
/// label.
pub fn precision_at_k(nb: &Neighbours, labels: &[u32], k: usize) -> Vec<f64> {
    let k = k.min(nb.k());
    (0..labels.len())
        .map(|i| {
            if k == 0 {
                return 0.0;
            }
            let same = nb.row(i).0[..k].iter().filter(|&&j| labels[j as usize] == labels[i]).count();
            same as f64 / k as f64
        })
        .collect()
}

/// Leave-one-out kNN classification: each item's predicted label is the most frequent among
/// its first `k` neighbours; a tie goes to the larger summed similarity, then to the smaller
/// label number (callers number labels in name order, so: the name that sorts first).
pub fn knn_predict(nb: &Neighbours, labels: &[u32], k: usize) -> Vec<u32> {
    let k = k.min(nb.k());
    let mut votes: BTreeMap<u32, (usize, f64)> = BTreeMap::new();
    (0..labels.len())
        .map(|i| {
            votes.clear();
            let (idx, score) = nb.row(i);
            for (&j, &s) in idx[..k].iter().zip(&score[..k]) {
                let v = votes.entry(labels[j as usize]).or_default();
                v.0 += 1;
                v.1 += s as f64;
            }
            // Iterating in label order and keeping only strictly better votes leaves the
            // smallest label among equals.
            let mut best: Option<(u32, usize, f64)> = None;
            for (&label, &(count, sum)) in &votes {
                let wins = match best {
                    None => true,
                    Some((_, c, s)) => count > c || (count == c && sum > s),
                };
                if wins {
                    best = Some((label, count, sum));
                }
            }
            best.map_or(u32::MAX, |b| b.0)
        })
        .collect()
}

/// The fraction of items whose kNN prediction is their own label.
pub fn knn_accuracy(nb: &Neighbours, labels: &[u32], k: usize) -> f64 {
    let predicted = knn_predict(nb, labels, k);
    let right = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    right as f64 / labels.len().max(1) as f64
}

/// For each `(item, original)` pair: whether the original is the item's first neighbour,
/// and whether it is among the first `k`.
pub fn twin_hits(nb: &Neighbours, pairs: &[(usize, usize)], k: usize) -> Vec<(bool, bool)> {
    let k = k.min(nb.k());
    pairs
        .iter()
        .map(|&(item, original)| {
            let pos = nb.row(item).0[..k].iter().position(|&j| j as usize == original);
            (pos == Some(0), pos.is_some())
        })
        .collect()
}

/// The fractions of `hits` that are true at 1 and at k (twin recall@1 and @k). `None`
/// without any.
fn recall(hits: &[(bool, bool)]) -> Option<(f64, f64)> {
    if hits.is_empty() {
        return None;
    }
    let n = hits.len() as f64;
    let count = |f: fn(&(bool, bool)) -> bool| hits.iter().filter(|h| f(h)).count() as f64 / n;
    Some((count(|h| h.0), count(|h| h.1)))
}

/// Scales every row to unit length (all-zero rows stay zero), so inner product is cosine.
pub fn normalise_rows(x: &mut Array2<f32>) {
    for mut row in x.axis_iter_mut(Axis(0)) {
        let norm = row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt() as f32;
        if norm > 0.0 && norm.is_finite() {
            row.mapv_inplace(|v| v / norm);
        }
    }
}

/// The baseline's view of one encoder input (`channels × size × size`, planar, [0, 1]):
/// channels averaged to one band, then block-averaged so neither side exceeds
/// [`PCA_SIDE`] (blocks of `ceil(size / 32)` pixels; the last may be partial).
pub fn pixel_features(tensor: &[f32], channels: usize, size: usize) -> Vec<f32> {
    let plane = size * size;
    let f = size.div_ceil(PCA_SIDE).max(1);
    let side = feature_side(size);
    let mut out = vec![0f32; side * side];
    for (o, v) in out.iter_mut().enumerate() {
        let (oy, ox) = (o / side, o % side);
        let (y0, y1) = (oy * f, ((oy + 1) * f).min(size));
        let (x0, x1) = (ox * f, ((ox + 1) * f).min(size));
        let mut sum = 0f64;
        for c in 0..channels {
            for y in y0..y1 {
                sum += tensor[c * plane + y * size + x0..c * plane + y * size + x1].iter().map(|&p| p as f64).sum::<f64>();
            }
        }
        *v = (sum / ((y1 - y0) * (x1 - x0) * channels) as f64) as f32;
    }
    out
}

/// The side of [`pixel_features`]' square for `size × size` inputs.
pub fn feature_side(size: usize) -> usize {
    size.div_ceil(size.div_ceil(PCA_SIDE).max(1))
}

/// Centres the rows of `x` and projects them on its top principal components (at most
/// `max_components`, and at most the number of rows or columns; those past the data's rank
/// have no variance and score 0).
///
/// The components are the leading eigenvectors of the pixels' scatter matrix (at most
/// 1,024 × 1,024: [`PCA_SIDE`]² averaged pixels), from LAPACK's `dsyevr` (the LAPACK FAISS
/// is linked with): exact, and the same data give the same components on every run.
/// linfa-reduction's PCA was used before: its truncated SVD (LOBPCG) iterates up to twice
/// the number of rows when it does not converge, and on the block averages of 224-pixel
/// inputs (an ImageNet-style encoder) it took 282 s for 6,000 images, against 2 s for the
/// same images through 64-pixel inputs (BENCHMARKS.md).
pub fn pca_scores(x: Array2<f64>, max_components: usize) -> Result<Array2<f64>> {
    let (n, d) = x.dim();
    let c = max_components.min(n).min(d);
    if c == 0 {
        return Ok(Array2::zeros((n, 0)));
    }
    let mean = x.mean_axis(ndarray::Axis(0)).context("the pixel baseline has no rows")?;
    let centred = x - &mean;
    let scatter = centred.t().dot(&centred);
    let top = top_eigenvectors(scatter, c)?;
    Ok(centred.dot(&top))
}

#[link(name = "lapack")]
extern "C" {
    /// LAPACK's eigenvalues and eigenvectors of a real symmetric matrix (MRRR), some of them.
    fn dsyevr_(
        jobz: *const std::ffi::c_char,
        range: *const std::ffi::c_char,
        uplo: *const std::ffi::c_char,
        n: *const i32,
        a: *mut f64,
        lda: *const i32,
        vl: *const f64,
        vu: *const f64,
        il: *const i32,
        iu: *const i32,
        abstol: *const f64,
        m: *mut i32,
        w: *mut f64,
        z: *mut f64,
        ldz: *const i32,
        isuppz: *mut i32,
        work: *mut f64,
        lwork: *const i32,
        iwork: *mut i32,
        liwork: *const i32,
        info: *mut i32,
    );
}

/// The eigenvectors of the `c` largest eigenvalues of the symmetric matrix `a`, as the
/// columns of a `d × c` matrix, largest first.
fn top_eigenvectors(a: Array2<f64>, c: usize) -> Result<Array2<f64>> {
    let d = a.nrows();
    anyhow::ensure!(a.ncols() == d && (1..=d).contains(&c) && d <= i32::MAX as usize, "internal error: eigenvectors of a {d} x {} matrix", a.ncols());
    // Symmetric: its elements in row-major order are the column-major matrix LAPACK expects.
    let mut a: Vec<f64> = a.iter().copied().collect();
    let (n, il, iu) = (d as i32, (d - c + 1) as i32, d as i32);
    let mut w = vec![0f64; d];
    let mut z = vec![0f64; d * c];
    let mut isuppz = vec![0i32; 2 * c];
    // Returns (eigenvectors found, info).
    let mut call = |work: &mut [f64], iwork: &mut [i32], lwork: i32, liwork: i32| -> (i32, i32) {
        let (mut m, mut info) = (0i32, 0i32);
        // SAFETY: every pointer is to a live buffer of the size dsyevr documents for these
        // arguments (a: n × n, w: n, z: n × (iu - il + 1), isuppz: 2 × that, work: lwork,
        // iwork: liwork; lwork = liwork = -1 asks only for their sizes, in work[0], iwork[0]).
        unsafe {
            dsyevr_(
                c"V".as_ptr(), c"I".as_ptr(), c"U".as_ptr(), &n, a.as_mut_ptr(), &n, &0.0, &0.0, &il, &iu, &0.0, &mut m,
                w.as_mut_ptr(), z.as_mut_ptr(), &n, isuppz.as_mut_ptr(), work.as_mut_ptr(), &lwork, iwork.as_mut_ptr(), &liwork, &mut info,
            )
        };
        (m, info)
    };
    let (mut work, mut iwork) = (vec![0f64; 1], vec![0i32; 1]);
    let (_, info) = call(&mut work, &mut iwork, -1, -1);
    anyhow::ensure!(info == 0, "the PCA of the pixel baseline failed: LAPACK dsyevr's workspace query returned {info}");
    let (lwork, liwork) = (work[0] as i32, iwork[0]);
    let (mut work, mut iwork) = (vec![0f64; lwork.max(1) as usize], vec![0i32; liwork.max(1) as usize]);
    let (m, info) = call(&mut work, &mut iwork, lwork, liwork);
    anyhow::ensure!(info == 0 && m as usize == c, "the PCA of the pixel baseline failed: LAPACK dsyevr returned {info} with {m} of {c} eigenvectors");
    // Column j of `z` (ascending eigenvalues) becomes column c - 1 - j (largest first).
    Ok(Array2::from_shape_fn((d, c), |(i, j)| z[(c - 1 - j) * d + i]))
}

/// The raw-pixel baseline's embeddings: PCA scores of the pixel features, L2-normalised.
pub fn pca_embeddings(features: &Array2<f32>, max_components: usize) -> Result<Array2<f32>> {
    let scores = pca_scores(features.mapv(f64::from), max_components)?;
    let mut e = scores.mapv(|v| v as f32);
    normalise_rows(&mut e);
    Ok(e)
}

/// One method's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodScores {
    /// Embedding dimension (for the baseline, the principal components kept).
    pub dim: usize,
    pub precision_at_k: f64,
    pub knn_accuracy: f64,
    /// `None` (JSON null) when no twin pair was evaluated.
    pub twin_recall_at_1: Option<f64>,
    pub twin_recall_at_k: Option<f64>,
    pub per_label: BTreeMap<String, LabelScores>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScores {
    pub items: usize,
    pub precision_at_k: f64,
    /// Twin pairs whose copy has this label, and the fraction of them whose original is
    /// among the copy's first k neighbours (`None`, JSON null, without any).
    pub twins: usize,
    pub twin_recall_at_k: Option<f64>,
}

/// What the metrics are computed on: label numbers follow the sorted label names.
pub struct Truth<'a> {
    pub names: &'a [String],
    pub labels: &'a [u32],
    /// `(item, original)` pairs, both evaluated.
    pub twins: &'a [(usize, usize)],
}

/// Every figure for one embedding matrix (rows L2-normalised).
pub fn score(emb: ArrayView2<'_, f32>, truth: &Truth<'_>, k: usize, knn_k: usize) -> MethodScores {
    let nb = neighbours(emb, k.max(knn_k));
    let per_item = precision_at_k(&nb, truth.labels, k);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let hits = twin_hits(&nb, truth.twins, k);
    let mut per_label = BTreeMap::new();
    for (l, name) in truth.names.iter().enumerate() {
        let mine: Vec<f64> = per_item.iter().zip(truth.labels).filter(|(_, &x)| x as usize == l).map(|(p, _)| *p).collect();
        if !mine.is_empty() {
            let twins: Vec<(bool, bool)> = truth.twins.iter().zip(&hits).filter(|((item, _), _)| truth.labels[*item] as usize == l).map(|(_, h)| *h).collect();
            let twin_recall_at_k = recall(&twins).map(|t| t.1);
            per_label.insert(name.clone(), LabelScores { items: mine.len(), precision_at_k: mean(&mine), twins: twins.len(), twin_recall_at_k });
        }
    }
    let twins = recall(&hits);
    MethodScores {
        dim: emb.ncols(),
        precision_at_k: mean(&per_item),
        knn_accuracy: knn_accuracy(&nb, truth.labels, knn_k),
        twin_recall_at_1: twins.map(|t| t.0),
        twin_recall_at_k: twins.map(|t| t.1),
        per_label,
    }
}

// ---------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------

/// What `simsite eval` was asked to do (resolved from its flags).
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub labels: PathBuf,
    pub k: usize,
    /// Also write the JSON report here.
    pub json: Option<PathBuf>,
    /// Write `api/eval.json` and `eval/index.html` into the site.
    pub page: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelRef {
    pub name: String,
    pub digest: String,
    pub dim: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Lines in the labels file.
    pub labelled: usize,
    /// Labelled images decoded and embedded: what the figures are about.
    pub evaluated: usize,
    /// Labelled paths that are not image files of the archive.
    pub missing: usize,
    /// Labelled images that could not be used (bad file, clashing id).
    pub skipped: usize,
    /// Distinct labels among the evaluated images.
    pub labels: usize,
    /// Lines with a `twin_of`.
    pub twins: usize,
    /// Twin pairs with both images evaluated: what twin recall is about.
    pub twins_evaluated: usize,
}

/// The JSON report (`--json`, `api/eval.json`): nothing in it depends on the time or the
/// machine, so the same archive, labels and model give the same bytes.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The labels file's name (not its path).
    pub labels_file: String,
    pub model: ModelRef,
    /// Neighbours used by precision@k and twin recall@k (the requested k, capped at
    /// evaluated − 1).
    pub k: usize,
    /// Neighbours voting in the kNN accuracy (20, capped at evaluated − 1).
    pub knn_k: usize,
    pub counts: Counts,
    pub missing_examples: Vec<String>,
    pub skipped_examples: Vec<Problem>,
    pub encoder: MethodScores,
    pub pca_baseline: MethodScores,
}

/// What `simsite eval` did, for the terminal.
#[derive(Debug)]
pub struct EvalOutcome {
    pub report: EvalReport,
    /// Images embedded now (the rest came from the cache).
    pub embedded: usize,
    /// Files written or confirmed unchanged.
    pub outputs: Vec<PathBuf>,
    /// The first few missing paths and skipped images, for the terminal.
    missing_shown: Vec<String>,
    skipped_shown: Vec<Problem>,
}

pub fn run(settings: &Settings, opts: &EvalOptions, ui: &Ui) -> Result<EvalOutcome> {
    // The page goes into a new release of the site: lock the output before the long work.
    let release = if opts.page { Some(crate::publish::Release::begin(&settings.out)?) } else { None };
    if settings.encoder.is_none() {
        bail!("`simsite eval` needs a model: it measures the encoder's neighbours\n  fix: set `model` under [encoder] in the config (or pass a --config that does)");
    }
    if opts.k == 0 {
        bail!("--k must be at least 1");
    }
    // The labels before the model and the scan: a broken file stops eval at once.
    let labels = Labels::load(&opts.labels)?;
    let mut settings = settings.clone();
    let mut encoder = pipeline::load_encoder(&mut settings, ui)?.context("no encoder was loaded")?;
    let Gathered { items, report, .. } = pipeline::gather(&settings, ui)?;

    // Labelled items in archive order (the order that breaks ties), and what is not there.
    let row_of: HashMap<&str, usize> = labels.rows.iter().enumerate().map(|(r, row)| (row.path.as_str(), r)).collect();
    let mut found = vec![false; labels.rows.len()];
    let mut rows = Vec::new();
    let chosen: Vec<_> = items
        .into_iter()
        .filter(|it| match row_of.get(it.entry.rel_str.as_str()) {
            Some(&r) => {
                found[r] = true;
                rows.push(r);
                true
            }
            None => false,
        })
        .collect();
    let mut skipped: Vec<Problem> = Vec::new();
    for p in report.skipped_files {
        if let Some(&r) = row_of.get(p.path.as_str()) {
            found[r] = true;
            skipped.push(p);
        }
    }
    let missing: Vec<String> = labels.rows.iter().zip(&found).filter(|(_, f)| !**f).map(|(r, _)| r.path.clone()).collect();
    if chosen.is_empty() {
        bail!(
            "none of the {} path(s) in {} is an image file in the archive {} (e.g. `{}`)\n  fix: paths in the labels file must be relative to the archive root, like `sub/image.fits`",
            labels.rows.len(),
            opts.labels.display(),
            settings.archive.display(),
            labels.rows[0].path
        );
    }
    if !missing.is_empty() {
        ui.warn(format!("{} labelled path(s) are not image files in the archive: {}", missing.len(), examples(&missing, TERMINAL_EXAMPLES)));
    }

    let _lock = pipeline::cache_writable(&settings, pipeline::CacheUse::Alone)?;
    let mut cache = pipeline::open_cache(&settings, &encoder, ui)?;
    let (channels, size) = (encoder.spec.channels as usize, encoder.spec.size as usize);
    let mut pixels: Vec<Option<Vec<f32>>> = vec![None; chosen.len()];
    let ing = {
        let mut tap = |i: usize, t: &[f32]| pixels[i] = Some(pixel_features(t, channels, size));
        pipeline::run_ingest(&settings, &chosen, Some(&mut encoder), Some(&mut cache), None, Some(&mut tap), false, ui)?
    };
    skipped.extend(ing.skipped);
    skipped.sort();

    // The evaluated items: decoded, with an embedding and the baseline's pixels.
    let evaluated: Vec<usize> = (0..chosen.len()).filter(|&j| ing.done[j].is_some()).collect();
    let m = evaluated.len();
    if m < 2 {
        bail!(
            "only {m} labelled image(s) could be evaluated ({} not in the archive, {} skipped); neighbours need at least 2",
            missing.len(),
            skipped.len()
        );
    }
    let dim = encoder.spec.dim;
    let feat_len = feature_side(size).pow(2);
    let mut emb = Array2::<f32>::zeros((m, dim));
    let mut feats = Array2::<f32>::zeros((m, feat_len));
    for (e, &j) in evaluated.iter().enumerate() {
        let done = ing.done[j].as_ref().context("an evaluated item has no result")?;
        let v = cache.get(done.digest.as_bytes()).with_context(|| format!("no embedding for {}", chosen[j].entry.rel_str))?;
        emb.row_mut(e).assign(&ndarray::ArrayView1::from(v));
        let p = pixels[j].as_deref().with_context(|| format!("no pixels for {}", chosen[j].entry.rel_str))?;
        feats.row_mut(e).assign(&ndarray::ArrayView1::from(p));
    }
    // No normalising here: the cache holds the encoder's output, L2-normalised already.

    let names: Vec<String> = {
        let mut v: Vec<String> = evaluated.iter().map(|&j| labels.rows[rows[j]].label.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let number: HashMap<&str, u32> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
    let label_of: Vec<u32> = evaluated.iter().map(|&j| number[labels.rows[rows[j]].label.as_str()]).collect();
    let position: HashMap<usize, usize> = evaluated.iter().enumerate().map(|(e, &j)| (rows[j], e)).collect();
    let twins: Vec<(usize, usize)> = evaluated
        .iter()
        .enumerate()
        .filter_map(|(e, &j)| labels.rows[rows[j]].twin_of.and_then(|o| position.get(&o)).map(|&o| (e, o)))
        .collect();
    let truth = Truth { names: &names, labels: &label_of, twins: &twins };
    let k = opts.k.min(m - 1);
    let knn_k = KNN_K.min(m - 1);
    if k < opts.k {
        ui.warn(format!("only {m} images were evaluated, so precision@k uses k = {k} instead of {}", opts.k));
    }

    let t = Instant::now();
    let encoder_scores = score(emb.view(), &truth, k, knn_k);
    ui.info(format!("eval: encoder neighbours of {m} image(s) in {:.2} s", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let pca = pca_embeddings(&feats, PCA_COMPONENTS)?;
    let pca_seconds = t.elapsed().as_secs_f64();
    let baseline_scores = score(pca.view(), &truth, k, knn_k);
    ui.info(format!(
        "eval: pixel PCA baseline ({feat_len} pixels → {} components) in {pca_seconds:.2} s, its neighbours in {:.2} s",
        pca.ncols(),
        t.elapsed().as_secs_f64() - pca_seconds
    ));

    let report = EvalReport {
        labels_file: opts.labels.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        model: ModelRef { name: encoder.spec.name.clone(), digest: encoder.digest.to_hex().to_string(), dim },
        k,
        knn_k,
        counts: Counts {
            labelled: labels.rows.len(),
            evaluated: m,
            missing: missing.len(),
            skipped: skipped.len(),
            labels: names.len(),
            twins: labels.rows.iter().filter(|r| r.twin_of.is_some()).count(),
            twins_evaluated: twins.len(),
        },
        missing_examples: missing.iter().take(JSON_EXAMPLES).cloned().collect(),
        skipped_examples: skipped.iter().take(JSON_EXAMPLES).cloned().collect(),
        encoder: encoder_scores,
        pca_baseline: baseline_scores,
    };

    let mut json = serde_json::to_vec_pretty(&report)?;
    json.push(b'\n');
    let mut outputs = Vec::new();
    if let Some(p) = &opts.json {
        fsutil::write_if_changed(p, &json).with_context(|| format!("cannot write the JSON report {}", p.display()))?;
        outputs.push(p.clone());
    }
    if let Some(release) = release {
        release.put("api/eval.json", &json)?;
        release.put("eval/index.html", Page(&report).to_string().as_bytes())?;
        // Everything else stays as the last build left it.
        release.carry(|p| !crate::pipeline::is_eval_path(p));
        release.commit(&settings.cache).context("cannot publish the evaluation page\n  fix: check --out / [output] dir and its permissions, or pass --no-page")?;
        outputs.extend([settings.out.join("api/eval.json"), settings.out.join("eval/index.html")]);
    }
    Ok(EvalOutcome {
        missing_shown: missing.into_iter().take(TERMINAL_EXAMPLES).collect(),
        skipped_shown: skipped.into_iter().take(TERMINAL_EXAMPLES).collect(),
        report,
        embedded: ing.embedded,
        outputs,
    })
}

/// "`a`, `b`, `c` and 7 more".
fn examples(paths: &[String], n: usize) -> String {
    let shown = crate::error::backticked(paths.iter().take(n));
    match paths.len().saturating_sub(n) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

fn fmt_score(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

/// The terminal summary (`{}`): counts, then encoder and baseline side by side.
impl fmt::Display for EvalOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        let c = &r.counts;
        writeln!(
            f,
            "evaluated {} of {} labelled image(s) ({} not in the archive, {} skipped), {} label(s), {} twin pair(s); {} embedded now",
            c.evaluated, c.labelled, c.missing, c.skipped, c.labels, c.twins_evaluated, self.embedded
        )?;
        if !self.missing_shown.is_empty() {
            writeln!(f, "  not in the archive: {}", examples(&self.missing_shown, TERMINAL_EXAMPLES))?;
        }
        for p in &self.skipped_shown {
            writeln!(f, "  skipped {}: {}", p.path, p.reason)?;
        }
        let (e, p) = (&r.encoder, &r.pca_baseline);
        let head = format!("{} ({}-d)", r.model.name, e.dim);
        let w = head.len().max(8);
        let row = |f: &mut fmt::Formatter<'_>, name: &str, a: Option<f64>, b: Option<f64>| {
            writeln!(f, "{name:<24} {:>w$}  {:>20}", fmt_score(a), fmt_score(b))
        };
        writeln!(f, "{:<24} {head:>w$}  {:>20}", "", format!("PCA baseline ({}-d)", p.dim))?;
        row(f, &format!("precision@{}", r.k), Some(e.precision_at_k), Some(p.precision_at_k))?;
        row(f, &format!("kNN accuracy (k={})", r.knn_k), Some(e.knn_accuracy), Some(p.knn_accuracy))?;
        row(f, "twin recall@1", e.twin_recall_at_1, p.twin_recall_at_1)?;
        row(f, &format!("twin recall@{}", r.k), e.twin_recall_at_k, p.twin_recall_at_k)?;
        if e.per_label.len() > 1 {
            writeln!(f, "precision@{} by label:", r.k)?;
            for (name, l) in &e.per_label {
                let b = p.per_label.get(name).map(|x| x.precision_at_k);
                row(f, &format!("  {name} ({})", l.items), Some(l.precision_at_k), b)?;
            }
            if c.twins_evaluated > 0 {
                writeln!(f, "twin recall@{} by label:", r.k)?;
                for (name, l) in e.per_label.iter().filter(|(_, l)| l.twins > 0) {
                    let b = p.per_label.get(name).and_then(|x| x.twin_recall_at_k);
                    row(f, &format!("  {name} ({})", l.twins), l.twin_recall_at_k, b)?;
                }
            }
        }
        Ok(())
    }
}

/// Text made safe for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `eval/index.html`: one self-contained page (no scripts, no external files); every text
/// that comes from the labels file or the model is escaped.
struct Page<'a>(&'a EvalReport);

impl fmt::Display for Page<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let (e, p) = (&r.encoder, &r.pca_baseline);
        let c = &r.counts;
        writeln!(
            f,
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Evaluation: {}</title>\n<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.4}}table{{border-collapse:collapse;margin:1rem 0}}th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}code{{font-size:.9em}}</style>\n</head>\n<body>",
            esc(&r.model.name)
        )?;
        writeln!(f, "<h1>How well the encoder finds similar images</h1>")?;
        writeln!(
            f,
            "<p>Model <strong>{}</strong> ({}-dimensional embeddings, <code>{}</code>), checked against the labels in <code>{}</code>.</p>",
            esc(&r.model.name),
            r.model.dim,
            esc(&r.model.digest),
            esc(&r.labels_file)
        )?;
        writeln!(
            f,
            "<p>{} of {} labelled images evaluated ({} not in the archive, {} skipped as unusable), {} labels, {} twin pairs.</p>",
            c.evaluated, c.labelled, c.missing, c.skipped, c.labels, c.twins_evaluated
        )?;
        writeln!(f, "<table>\n<tr><th>measure</th><th>encoder</th><th>raw-pixel PCA baseline</th><th>what it means</th></tr>")?;
        let rows = [
            (
                format!("precision@{}", r.k),
                Some(e.precision_at_k),
                Some(p.precision_at_k),
                format!("of each image's {} most similar images, the fraction that share its label (mean over images)", r.k),
            ),
            (
                format!("kNN accuracy (k = {})", r.knn_k),
                Some(e.knn_accuracy),
                Some(p.knn_accuracy),
                format!("the fraction of images whose label is the majority label of their {} most similar images", r.knn_k),
            ),
            (
                "twin recall@1".to_string(),
                e.twin_recall_at_1,
                p.twin_recall_at_1,
                "the fraction of transformed copies (rotated, flipped, shifted) whose most similar image is their original".to_string(),
            ),
            (
                format!("twin recall@{}", r.k),
                e.twin_recall_at_k,
                p.twin_recall_at_k,
                format!("the fraction of transformed copies whose original is among their {} most similar images", r.k),
            ),
        ];
        for (name, a, b, meaning) in rows {
            writeln!(
                f,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&name),
                fmt_score(a),
                fmt_score(b),
                esc(&meaning)
            )?;
        }
        writeln!(f, "</table>")?;
        writeln!(
            f,
            "<h2>By label</h2>\n<table>\n<tr><th>label</th><th>images</th><th>precision@{k}, encoder</th><th>precision@{k}, baseline</th><th>twin pairs</th><th>twin recall@{k}, encoder</th><th>twin recall@{k}, baseline</th></tr>",
            k = r.k
        )?;
        for (name, l) in &e.per_label {
            let b = p.per_label.get(name);
            writeln!(
                f,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(name),
                l.items,
                fmt_score(Some(l.precision_at_k)),
                fmt_score(b.map(|x| x.precision_at_k)),
                l.twins,
                fmt_score(l.twin_recall_at_k),
                fmt_score(b.and_then(|x| x.twin_recall_at_k))
            )?;
        }
        writeln!(f, "</table>")?;
        writeln!(
            f,
            "<p>Similarity is the cosine of the embeddings; neighbours are exact, the image itself excluded, ties going to the image first in archive order. The baseline uses the same preprocessed pixels the encoder sees, averaged to one band, block-averaged to at most {PCA_SIDE}&times;{PCA_SIDE}, centred and projected on their top {} principal components. The figures are also in <a href=\"../api/eval.json\">api/eval.json</a>.</p>\n</body>\n</html>",
            p.dim
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn unit(x: Array2<f32>) -> Array2<f32> {
        let mut x = x;
        normalise_rows(&mut x);
        x
    }

    /// Four points on the unit circle at 0°, 36.87°, 90°, 126.87°: cosines a·b = 0.8,
    /// a·c = 0, a·d = -0.6, b·c = 0.6, b·d = 0, c·d = 0.8.
    fn circle() -> Array2<f32> {
        array![[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]]
    }

    #[test]
    fn neighbours_are_best_first_without_self() {
        let nb = neighbours(circle().view(), 3);
        assert_eq!(nb.row(0).0, [1, 2, 3]);
        assert_eq!(nb.row(1).0, [0, 2, 3]);
        assert_eq!(nb.row(2).0, [3, 1, 0]);
        assert_eq!(nb.row(3).0, [2, 1, 0]);
        let (_, s) = nb.row(3);
        assert!((s[0] - 0.8).abs() < 1e-6 && s[1].abs() < 1e-6 && (s[2] + 0.6).abs() < 1e-6, "{s:?}");
        // k is capped at n - 1.
        assert_eq!(neighbours(circle().view(), 10).k(), 3);
    }

    #[test]
    fn equal_similarities_go_to_the_earlier_item() {
        // Items 1, 2 and 3 are the same vector: for item 0 all three tie.
        let x = array![[1.0f32, 0.0], [0.6, 0.8], [0.6, 0.8], [0.6, 0.8]];
        let nb = neighbours(x.view(), 3);
        assert_eq!(nb.row(0).0, [1, 2, 3]);
        assert_eq!(nb.row(3).0, [1, 2, 0]);
        assert_eq!(nb.row(1).0, [2, 3, 0]);
    }

    #[test]
    fn blocks_give_the_same_neighbours_as_one_block() {
        // A deterministic cloud of 97 points in 5-D, with duplicates for ties.
        let mut x = Array2::<f32>::zeros((97, 5));
        for i in 0..97 {
            for d in 0..5 {
                x[[i, d]] = (((i % 31) * 7 + d * 13) % 11) as f32 - 5.0;
            }
        }
        let x = unit(x);
        let one = neighbours_in_blocks(x.view(), 9, 97);
        for block in [1, 7, 32, 200] {
            assert_eq!(neighbours_in_blocks(x.view(), 9, block), one, "block of {block}");
        }
        // Against a plain sort of every row.
        for i in 0..97 {
            let mut all: Vec<(f32, u32)> =
                (0..97).filter(|&j| j != i).map(|j| (x.row(i).dot(&x.row(j)), j as u32)).collect();
            all.sort_by(better);
            let want: Vec<u32> = all[..9].iter().map(|p| p.1).collect();
            assert_eq!(one.row(i).0, &want[..], "row {i}");
        }
    }

    #[test]
    fn precision_at_k_by_hand() {
        // Labels A A B B on the circle. k = 1: every first neighbour shares the label.
        // k = 2: a → b(A), c(B) = 1/2; b → a(A), c(B) = 1/2; c → d(B), b(A) = 1/2;
        // d → c(B), b(A) = 1/2.
        let nb = neighbours(circle().view(), 3);
        let labels = [0, 0, 1, 1];
        assert_eq!(precision_at_k(&nb, &labels, 1), [1.0, 1.0, 1.0, 1.0]);
        assert_eq!(precision_at_k(&nb, &labels, 2), [0.5, 0.5, 0.5, 0.5]);
        // Labels A B A B, k = 3: each has one of three neighbours with its label.
        let p = precision_at_k(&nb, &[0, 1, 0, 1], 3);
        assert!(p.iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-12), "{p:?}");
    }

    #[test]
    fn knn_votes_break_ties_by_summed_similarity_then_label() {
        let nb = neighbours(circle().view(), 3);
        // k = 2 and labels A B B A: a's neighbours b(B, 0.8), c(B, 0) → B (wrong);
        // b's a(A, 0.8), c(B, 0.6): one vote each, A has the larger sum → A (wrong);
        // c's d(A, 0.8), b(B, 0.6): tie, A wins on similarity → A (wrong);
        // d's c(B, 0.8), b(B, 0) → B (wrong).
        let labels = [0, 1, 1, 0];
        assert_eq!(knn_predict(&nb, &labels, 2), [1, 0, 0, 1]);
        assert_eq!(knn_accuracy(&nb, &labels, 2), 0.0);
        // k = 2 with labels A A B B: a → b(A), c(B) tie, sum 0.8 vs 0 → A (right);
        // b → a(A) .8, c(B) .6 → A (right); c → d(B) .8, b(A) .6 → B (right);
        // d → c(B) .8, b(A) 0 → B (right).
        assert_eq!(knn_accuracy(&nb, &[0, 0, 1, 1], 2), 1.0);
        // Equal counts and equal sums: the smaller label number (first name) wins.
        let x = array![[1.0f32, 0.0], [0.6, 0.8], [0.6, -0.8]];
        let nb = neighbours(x.view(), 2);
        assert_eq!(knn_predict(&nb, &[2, 1, 0], 2)[0], 0);
        assert_eq!(knn_predict(&nb, &[2, 0, 1], 2)[0], 0);
    }

    #[test]
    fn twin_recall_at_1_and_at_k() {
        let nb = neighbours(circle().view(), 3);
        // (item, original): d's first neighbour is c (hit@1); a's order is b, c, d: c is
        // second (hit@2 only); c's order is d, b, a: a is third (neither at k = 2).
        let (at1, atk) = recall(&twin_hits(&nb, &[(3, 2), (0, 2), (2, 0)], 2)).unwrap();
        assert!((at1 - 1.0 / 3.0).abs() < 1e-12 && (atk - 2.0 / 3.0).abs() < 1e-12, "{at1} {atk}");
        assert_eq!(recall(&twin_hits(&nb, &[], 2)), None);

        // By label (the copy's): with labels A B B A, the pairs above are d's (A, hit),
        // a's (A, hit at 2) and c's (B, miss). Label C has no image and no entry.
        let names = ["A".to_string(), "B".to_string(), "C".to_string()];
        let truth = Truth { names: &names, labels: &[0, 1, 1, 0], twins: &[(3, 2), (0, 2), (2, 0)] };
        let s = score(unit(circle()).view(), &truth, 2, 2);
        assert_eq!((s.twin_recall_at_1, s.twin_recall_at_k), (Some(1.0 / 3.0), Some(2.0 / 3.0)));
        let (a, b) = (&s.per_label["A"], &s.per_label["B"]);
        assert_eq!((a.items, a.twins, a.twin_recall_at_k), (2, 2, Some(1.0)));
        assert_eq!((b.items, b.twins, b.twin_recall_at_k), (2, 1, Some(0.0)));
        assert!(!s.per_label.contains_key("C"));
        let none = score(unit(circle()).view(), &Truth { twins: &[], ..truth }, 2, 2);
        assert_eq!((none.per_label["A"].twins, none.per_label["A"].twin_recall_at_k), (0, None));
    }

    #[test]
    fn the_largest_eigenvalues_come_first_with_their_own_vectors() {
        // A = Q diag(l) Q^T with Q a rotation in the (0, 2) plane and the (1, 3) plane; the
        // 3 largest of l are at positions 3, 0, 2 (in that order).
        let l = [5.0f64, -1.0, 2.0, 9.0, 0.5];
        let (c, s) = (0.6f64, 0.8f64);
        let mut q = Array2::<f64>::eye(5);
        q[[0, 0]] = c;
        q[[2, 0]] = s;
        q[[0, 2]] = -s;
        q[[2, 2]] = c;
        q[[1, 1]] = s;
        q[[3, 1]] = c;
        q[[1, 3]] = -c;
        q[[3, 3]] = s;
        let a = q.dot(&Array2::from_diag(&ndarray::arr1(&l))).dot(&q.t());
        let top = top_eigenvectors(a.clone(), 3).unwrap();
        assert_eq!(top.dim(), (5, 3));
        for (j, &k) in [3usize, 0, 2].iter().enumerate() {
            // The same vector as Q's column k, up to its sign, and A v = l v.
            let dot: f64 = top.column(j).iter().zip(q.column(k)).map(|(x, y)| x * y).sum();
            assert!((dot.abs() - 1.0).abs() < 1e-9, "column {j}: {dot}");
            let av = a.dot(&top.column(j));
            assert!(av.iter().zip(top.column(j)).all(|(x, y)| (x - l[k] * y).abs() < 1e-9), "column {j}");
        }
    }

    #[test]
    fn pca_recovers_a_rank_two_data_set() {
        // 12 points a·u + b·v + m in 6-D, u and v orthonormal: the scores must keep every
        // pairwise distance, and all variance must sit in two components.
        let u = [0.5f64, 0.5, 0.5, 0.5, 0.0, 0.0];
        let v = [0.0f64, 0.0, 0.6, -0.6, 0.0, 0.8];
        let v_norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let m = [3.0, -1.0, 2.0, 0.5, 7.0, 1.0];
        let mut x = Array2::<f64>::zeros((12, 6));
        for i in 0..12 {
            let (a, b) = ((i as f64 - 5.5) * 1.7, ((i * 5 % 12) as f64 - 5.5) * 0.9);
            for d in 0..6 {
                x[[i, d]] = a * u[d] + b * v[d] / v_norm + m[d];
            }
        }
        let scores = pca_scores(x.clone(), 64).unwrap();
        assert_eq!(scores.nrows(), 12);
        assert!(scores.ncols() >= 2);
        for c in 2..scores.ncols() {
            assert!(scores.column(c).iter().all(|s| s.abs() < 1e-6), "component {c} should be empty");
        }
        for i in 0..12 {
            for j in 0..12 {
                let d_in = (&x.row(i) - &x.row(j)).mapv(|t| t * t).sum().sqrt();
                let d_out = (&scores.row(i) - &scores.row(j)).mapv(|t| t * t).sum().sqrt();
                assert!((d_in - d_out).abs() < 1e-6, "{i},{j}: {d_in} vs {d_out}");
            }
        }
        // Centred: the scores have mean zero.
        assert!(scores.mean_axis(Axis(0)).unwrap().iter().all(|s| s.abs() < 1e-9));
        // Never more components than asked for, items or dimensions.
        assert_eq!(pca_scores(x.clone(), 1).unwrap().ncols(), 1);
    }

    #[test]
    fn pixel_features_average_channels_and_blocks() {
        // 3 channels of 64x64: channel c holds c everywhere, plus x in channel 0.
        let size = 64;
        let mut t = vec![0f32; 3 * size * size];
        for c in 0..3 {
            for y in 0..size {
                for x in 0..size {
                    t[c * size * size + y * size + x] = c as f32 + if c == 0 { x as f32 } else { 0.0 };
                }
            }
        }
        let f = pixel_features(&t, 3, size);
        assert_eq!(f.len(), 32 * 32);
        // Block (0, ox) covers x = 2ox, 2ox + 1: channel mean (2ox + 0.5 + 1 + 2) / 3.
        for (ox, got) in f[..32].iter().enumerate() {
            let want = (2.0 * ox as f32 + 0.5 + 3.0) / 3.0;
            assert!((got - want).abs() < 1e-5, "{ox}: {got} vs {want}");
        }
        // 16x16 stays as it is; 33 gives 17 blocks a side, the last one partial.
        let small: Vec<f32> = (0..256).map(|i| i as f32).collect();
        assert_eq!(pixel_features(&small, 1, 16), small);
        let odd: Vec<f32> = (0..33 * 33).map(|i| (i % 33) as f32).collect();
        let f = pixel_features(&odd, 1, 33);
        assert_eq!(f.len(), 17 * 17);
        assert_eq!((f[0], f[16]), (0.5, 32.0));
    }

    fn parse(text: &str) -> Result<Labels, String> {
        Labels::parse(text.as_bytes(), Path::new("l.csv")).map_err(|e| e.to_string())
    }

    #[test]
    fn labels_parse_with_twins_in_any_order() {
        let l = parse("label,path,twin_of\nspiral,./a/1.fits,\nspiral,a\\2.png,a/1.fits\nbar, b.fits ,\n").unwrap();
        assert_eq!(l.rows.len(), 3);
        assert_eq!(l.rows[1], LabelRow { path: "a/2.png".into(), label: "spiral".into(), twin_of: Some(0), line: 3 });
        assert_eq!(l.rows[2].path, "b.fits");
        // twin_of may name a later line; the column is optional.
        assert_eq!(parse("path,label,twin_of\nx.png,a,y.png\ny.png,a,\n").unwrap().rows[0].twin_of, Some(1));
        assert_eq!(parse("path,label\nx.png,a\n").unwrap().rows[0].twin_of, None);
    }

    #[test]
    fn bad_labels_name_the_line_the_column_and_the_fix() {
        assert_eq!(
            parse("file,label\nx.png,a\n").unwrap_err(),
            "labels file l.csv, line 1: the header has no column `path` (its columns are `file`, `label`)\n  fix: the first line must name the columns: path,label[,twin_of]"
        );
        assert_eq!(
            parse("path,label\nx.png,a\ny.png,b\nx.png,c\n").unwrap_err(),
            "labels file l.csv, line 4, column 1 (`path`): `x.png` is already listed on line 2\n  fix: list every image once"
        );
        assert_eq!(
            parse("path,label,twin_of\nx.png,a,\ny.png,a,z.png\n").unwrap_err(),
            "labels file l.csv, line 3, column 3 (`twin_of`): `z.png` is not a path listed in this file\n  fix: twin_of must be empty or name the `path` of another line (relative to the archive root)"
        );
        assert!(parse("path,label\nx.png,\n").unwrap_err().starts_with("labels file l.csv, line 2, column 2 (`label`): `x.png` has no label"));
        assert!(parse("path,label\nx.png,a,extra\n").unwrap_err().starts_with("labels file l.csv, line 2: 3 field(s) where the header has 2"));
        assert!(parse("path,label,twin_of\nx.png,a,x.png\n").unwrap_err().contains("names the line's own path"));
        assert!(parse("path,label\n").unwrap_err().starts_with("labels file l.csv lists no image"));
        // Lines ended by CR LF (what Excel writes) or a lone CR are counted as lines too.
        for end in ["\r\n", "\r"] {
            let text = ["path,label", "x.png,a", "y.png,b", "x.png,c", ""].join(end);
            assert_eq!(
                parse(&text).unwrap_err(),
                "labels file l.csv, line 4, column 1 (`path`): `x.png` is already listed on line 2\n  fix: list every image once",
                "line end {end:?}"
            );
            let text = ["path,label", "x.png,a", "y.png,", ""].join(end);
            assert!(parse(&text).unwrap_err().starts_with("labels file l.csv, line 3, column 2"), "line end {end:?}");
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<script>\"a\" & 'b'</script>"), "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;");
    }
}
