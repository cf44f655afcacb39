//! From a decoded [`Raster`] to what the encoder and the pages see: channel handling,
//! percentile clipping, a stretch to [0, 1], and resizing to the encoder's input and to a
//! thumbnail.
//!
//! This is the one definition of the preprocessing; `training/` mirrors it in Python and a
//! test checks that both give the same tensor. Its exact rules:
//! - clip limits are percentiles (numpy's linear interpolation) of the finite pixels of all
//!   bands together; above [`SAMPLE_CAP`] finite pixels, of every `ceil(n / SAMPLE_CAP)`-th
//!   one in band, row, column order; `zscale` uses IRAF's algorithm (as astropy has it);
//! - masked (NaN/inf) pixels are filled with the median of that sample;
//! - when the limits meet (`hi <= lo`: a sparse image, mostly one value, as X-ray counts),
//!   they are the minimum and maximum of every finite pixel instead (a sample can miss a
//!   source of a pixel or two);
//! - `x = clamp((v - lo) / (hi - lo), 0, 1)` (0 when still `hi <= lo`: a constant image),
//!   then the stretch;
//! - grey mode then averages the stretched R, G, B (thumbnails keep colour);
//! - resizing is a bilinear convolution (Pillow's `BILINEAR`, antialiased when shrinking)
//!   that keeps the aspect ratio; the encoder input is centred on a zero (black) square.

use fast_image_resize as fr;

use crate::config::{Channels, PreprocessSettings, Stretch};
use crate::decode::Raster;
use crate::error::FileError;

/// Most finite pixels looked at for clip limits; larger images are sampled with a stride.
pub const SAMPLE_CAP: usize = 1 << 18;
/// `log` stretch: `ln(a x + 1) / ln(a + 1)`, as astropy's `LogStretch` default.
pub const LOG_A: f32 = 1000.0;
/// `asinh` stretch: `asinh(x / b) / asinh(1 / b)`, as astropy's `AsinhStretch` default.
pub const ASINH_B: f32 = 0.1;

/// An 8-bit image, interleaved, 1 (grey) or 3 (RGB) channels.
#[derive(Debug, Clone)]
pub struct Thumb {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub pixels: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Prepared {
    /// `model_channels × size × size`, planar, values in [0, 1].
    pub tensor: Vec<f32>,
    pub thumb: Thumb,
    /// The stretched bands at full size, for a larger picture ([`picture`]).
    pub bands: Vec<Vec<f32>>,
}

/// Entries of the stretch lookup table.
const LUT_SIZE: usize = 8192;

/// The stretch as a table: `asinh`/`log` per pixel cost more than all the rest of the
/// preprocessing together. The table is indexed by `u = sqrt(t)`, where the curves are
/// smooth even near 0 (`sqrt` becomes exactly linear, `log`'s steep start flattens), so
/// linear interpolation stays within 1e-6 of the exact stretch.
struct Lut(Vec<f32>);

impl Lut {
    /// The table for a stretch, built once per process (it is a pure function of the stretch).
    fn of(s: Stretch) -> &'static Lut {
        static TABLES: [std::sync::OnceLock<Lut>; 5] = [const { std::sync::OnceLock::new() }; 5];
        let i = Stretch::NAMES.iter().position(|n| *n == s.name()).expect("every stretch is named");
        TABLES[i].get_or_init(|| Lut::new(s))
    }

    fn new(s: Stretch) -> Lut {
        let f = stretch_fn(s);
        Lut((0..=LUT_SIZE).map(|i| (i as f32 / LUT_SIZE as f32).powi(2)).map(f).collect())
    }

    #[inline]
    fn get(&self, t: f32) -> f32 {
        let x = t.sqrt() * LUT_SIZE as f32;
        let i = (x as usize).min(LUT_SIZE - 1);
        let frac = x - i as f32;
        self.0[i] + (self.0[i + 1] - self.0[i]) * frac
    }
}

fn stretch_fn(s: Stretch) -> fn(f32) -> f32 {
    match s {
        Stretch::Linear | Stretch::Zscale => |x| x,
        Stretch::Sqrt => |x| x.sqrt(),
        Stretch::Log => |x| (LOG_A * x).ln_1p() / LOG_A.ln_1p(),
        Stretch::Asinh => |x| (x / ASINH_B).asinh() / (1.0 / ASINH_B).asinh(),
    }
}

/// Finite pixels of all bands in band, row, column order, subsampled to at most `cap`, and
/// how many finite pixels there are.
fn finite_sample(bands: &[&[f32]], cap: usize) -> (Vec<f32>, usize) {
    let n: usize = bands.iter().map(|b| b.iter().filter(|v| v.is_finite()).count()).sum();
    let stride = n.div_ceil(cap).max(1);
    let mut out = Vec::with_capacity(n.min(cap));
    let mut i = 0usize;
    for b in bands {
        for &v in b.iter() {
            if v.is_finite() {
                if i.is_multiple_of(stride) {
                    out.push(v);
                }
                i += 1;
            }
        }
    }
    (out, n)
}

/// The smallest and largest finite pixel of all bands (at least one is finite).
fn min_max(bands: &[&[f32]]) -> (f32, f32) {
    bands.iter().flat_map(|b| b.iter()).filter(|v| v.is_finite()).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)))
}

/// numpy's default (linear) percentile of sorted data.
pub fn percentile(sorted: &[f32], p: f64) -> f32 {
    let pos = p / 100.0 * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let frac = (pos - i as f64) as f32;
    match sorted.get(i + 1) {
        Some(&next) => sorted[i] + (next - sorted[i]) * frac,
        None => sorted[i],
    }
}

/// The same value as [`percentile`] of the sorted data, found by selection (O(n)) in an
/// unsorted sample, which it reorders.
pub fn select_percentile(data: &mut [f32], p: f64) -> f32 {
    select_percentiles(data, [p])[0]
}

/// Several percentiles of one unsorted sample at once (it is reordered), each equal to
/// [`percentile`] of the sorted data. The ranks they need are found by selections over
/// ever narrower parts, since a selected rank splits the sample into smaller and larger
/// values, instead of a pass over the whole sample for each.
pub fn select_percentiles<const K: usize>(data: &mut [f32], ps: [f64; K]) -> [f32; K] {
    let n = data.len();
    let mut ranks = Vec::with_capacity(2 * K);
    for &p in &ps {
        let (i, _) = rank_of(p, n);
        ranks.push(i);
        ranks.push((i + 1).min(n - 1));
    }
    ranks.sort_unstable();
    ranks.dedup();
    let mut values = vec![0f32; ranks.len()];
    select_ranks(data, 0, &ranks, &mut values);
    interpolate(ps, n, |r| values[ranks.binary_search(&r).expect("every rank needed was selected")])
}

/// The position of percentile `p` among `n` sorted values: its rank and the fraction of
/// the way to the next (numpy's linear rule).
fn rank_of(p: f64, n: usize) -> (usize, f32) {
    let pos = p / 100.0 * (n - 1) as f64;
    let i = pos.floor() as usize;
    (i, (pos - i as f64) as f32)
}

fn interpolate<const K: usize>(ps: [f64; K], n: usize, value_at: impl Fn(usize) -> f32) -> [f32; K] {
    ps.map(|p| {
        let (i, frac) = rank_of(p, n);
        let lo = value_at(i);
        if frac > 0.0 && i + 1 < n {
            lo + (value_at(i + 1) - lo) * frac
        } else {
            lo
        }
    })
}

fn select_ranks(data: &mut [f32], offset: usize, ranks: &[usize], out: &mut [f32]) {
    if ranks.is_empty() {
        return;
    }
    let m = ranks.len() / 2;
    let r = ranks[m] - offset;
    let (left, v, right) = data.select_nth_unstable_by(r, f32::total_cmp);
    out[m] = *v;
    select_ranks(left, offset, &ranks[..m], &mut out[..m]);
    select_ranks(right, offset + r + 1, &ranks[m + 1..], &mut out[m + 1..]);
}

/// For an 8-bit source (every value an integer in 0..=255): the counts of each value in
/// the same sample [`finite_sample`] takes, and its size; `None` if a value is not such an
/// integer. Percentiles then come from the counts, exactly, without sorting.
fn byte_histogram(bands: &[&[f32]], cap: usize) -> Option<([u32; 256], usize)> {
    let n: usize = bands.iter().map(|b| b.len()).sum();
    let stride = n.div_ceil(cap).max(1);
    let mut counts = [0u32; 256];
    let mut taken = 0usize;
    let mut i = 0usize;
    for b in bands {
        for &v in b.iter() {
            let k = v as u8;
            if k as f32 != v {
                return None;
            }
            if stride == 1 || i.is_multiple_of(stride) {
                counts[k as usize] += 1;
                taken += 1;
            }
            i += 1;
        }
    }
    Some((counts, taken))
}

/// The value of rank `r` (0-based) in the sorted sample that `counts` describes.
fn rank_in_histogram(counts: &[u32; 256], r: usize) -> f32 {
    let mut seen = 0usize;
    for (k, &c) in counts.iter().enumerate() {
        seen += c as usize;
        if seen > r {
            return k as f32;
        }
    }
    255.0
}

/// IRAF zscale limits, following astropy's `ZScaleInterval` with its defaults.
pub fn zscale(values: &[f32]) -> (f32, f32) {
    const N_SAMPLES: usize = 1000;
    const CONTRAST: f64 = 0.25;
    const MAX_REJECT: f64 = 0.5;
    const MIN_NPIXELS: usize = 5;
    const KREJ: f64 = 2.5;
    const MAX_ITERATIONS: usize = 5;
    let stride = ((values.len() as f64 / N_SAMPLES as f64).max(1.0)) as usize;
    let mut s: Vec<f64> = values.iter().step_by(stride).take(N_SAMPLES).map(|&v| v as f64).collect();
    s.sort_by(f64::total_cmp);
    let npix = s.len();
    let (mut vmin, mut vmax) = (s[0], s[npix - 1]);
    let minpix = MIN_NPIXELS.max((npix as f64 * MAX_REJECT) as usize);
    let ngrow = 1.max((npix as f64 * 0.01) as usize);
    let mut bad = vec![false; npix];
    let (mut ngood, mut last_ngood) = (npix, npix + 1);
    let mut fit = (0.0f64, 0.0f64);
    let mut fitted_once = false;
    for _ in 0..MAX_ITERATIONS {
        if ngood >= last_ngood || ngood < minpix {
            break;
        }
        // Least squares line through the good samples (x = index).
        let (mut sw, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, &y) in s.iter().enumerate() {
            if !bad[i] {
                let x = i as f64;
                sw += 1.0;
                sx += x;
                sy += y;
                sxx += x * x;
                sxy += x * y;
            }
        }
        let denom = sw * sxx - sx * sx;
        let slope = if denom != 0.0 { (sw * sxy - sx * sy) / denom } else { 0.0 };
        fit = (slope, (sy - slope * sx) / sw);
        fitted_once = true;
        let flat: Vec<f64> = s.iter().enumerate().map(|(i, &y)| y - (fit.0 * i as f64 + fit.1)).collect();
        let good: Vec<f64> = flat.iter().zip(&bad).filter(|(_, &b)| !b).map(|(&f, _)| f).collect();
        let mean = good.iter().sum::<f64>() / good.len() as f64;
        let std = (good.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / good.len() as f64).sqrt();
        let threshold = KREJ * std;
        for (b, f) in bad.iter_mut().zip(&flat) {
            if *f < -threshold || *f > threshold {
                *b = true;
            }
        }
        // Grow the rejected set like numpy's convolve(bad, ones(ngrow), mode="same").
        let before = ngrow - 1 - (ngrow - 1) / 2;
        let after = (ngrow - 1) / 2;
        let grown: Vec<bool> = (0..npix)
            .map(|i| {
                let lo = i.saturating_sub(before);
                let hi = (i + after).min(npix - 1);
                bad[lo..=hi].iter().any(|&b| b)
            })
            .collect();
        bad = grown;
        last_ngood = ngood;
        ngood = bad.iter().filter(|&&b| !b).count();
    }
    if fitted_once && ngood >= minpix {
        let slope = fit.0 / CONTRAST;
        let center = (npix - 1) / 2;
        let median = if npix % 2 == 1 { s[npix / 2] } else { (s[npix / 2 - 1] + s[npix / 2]) / 2.0 };
        vmin = vmin.max(median - (center as f64 - 1.0) * slope);
        vmax = vmax.min(median + (npix - center) as f64 * slope);
    }
    (vmin as f32, vmax as f32)
}

/// Resizes one band to `w × h` with Pillow-compatible bilinear convolution.
fn resize_plane(src: &[f32], sw: usize, sh: usize, w: u32, h: u32) -> std::borrow::Cow<'_, [f32]> {
    if sw as u32 == w && sh as u32 == h {
        return std::borrow::Cow::Borrowed(src);
    }
    let bytes: Vec<u8> = src.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let src_img = fr::images::Image::from_vec_u8(sw as u32, sh as u32, bytes, fr::PixelType::F32)
        .expect("buffer size matches the raster");
    let mut dst = fr::images::Image::new(w, h, fr::PixelType::F32);
    let opts = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    fr::Resizer::new().resize(&src_img, &mut dst, &opts).expect("same pixel type, non-zero sizes");
    std::borrow::Cow::Owned(dst.buffer().chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Output size that fits `w × h` inside `box_size` keeping the aspect ratio.
pub fn fit_size(w: usize, h: usize, box_size: u32) -> (u32, u32) {
    let scale = box_size as f64 / w.max(h) as f64;
    let fw = ((w as f64 * scale).round() as u32).clamp(1, box_size);
    let fh = ((h as f64 * scale).round() as u32).clamp(1, box_size);
    (fw, fh)
}

/// How an image is mapped to [0, 1]: the stretch used (8-bit sources have their own) and
/// the clip limits and fill value for masked pixels, all from the finite pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    pub stretch: Stretch,
    pub lo: f32,
    pub hi: f32,
    pub fill: f32,
    /// Finite pixels over all bands.
    pub finite: usize,
}

pub fn clip_limits(r: &Raster, s: &PreprocessSettings) -> Result<Clip, FileError> {
    let stretch = if r.display_ready { s.stretch_8bit } else { s.stretch };
    let bands: Vec<&[f32]> = (0..r.channels).map(|c| r.plane(c)).collect();
    // 8-bit sources: the same order statistics from a histogram (zscale needs the sample).
    if r.display_ready && stretch != Stretch::Zscale {
        if let Some((counts, n)) = byte_histogram(&bands, SAMPLE_CAP).filter(|(_, n)| *n > 0) {
            let [mut lo, mut hi, fill] = interpolate([s.clip_low, s.clip_high, 50.0], n, |k| rank_in_histogram(&counts, k));
            if hi <= lo {
                (lo, hi) = min_max(&bands);
            }
            return Ok(Clip { stretch, lo, hi, fill, finite: r.data.len() });
        }
    }
    let (mut sample, finite) = finite_sample(&bands, SAMPLE_CAP);
    if sample.is_empty() {
        return Err(FileError::AllBlank);
    }
    let (mut lo, mut hi, fill) = if stretch == Stretch::Zscale {
        let (lo, hi) = zscale(&sample);
        (lo, hi, select_percentile(&mut sample, 50.0))
    } else {
        let [lo, hi, fill] = select_percentiles(&mut sample, [s.clip_low, s.clip_high, 50.0]);
        (lo, hi, fill)
    };
    // Limits that meet would show a sparse image (a few counts on zeros) all black. The
    // extremes are those of every pixel: a sample would miss a source of a pixel or two.
    if hi <= lo {
        (lo, hi) = min_max(&bands);
    }
    Ok(Clip { stretch, lo, hi, fill, finite })
}

/// Clip limits, fill value and stretched bands (values in [0, 1], no NaN). Colour stays
/// colour here (thumbnails show it); grey mode averages the stretched bands afterwards.
pub fn stretch_bands(r: &Raster, s: &PreprocessSettings) -> Result<Vec<Vec<f32>>, FileError> {
    let Clip { stretch, lo, hi, fill, .. } = clip_limits(r, s)?;
    let lut = Lut::of(stretch);
    // In f64: near f32's limits `hi - lo` overflows to infinity, and then `(x - lo) / range`
    // would be inf / inf = NaN (found by fuzzing: a cube summed to ±2.6e38).
    let (lo, range) = (lo as f64, hi as f64 - lo as f64);
    let scale = if range > 0.0 { 1.0 / range } else { 0.0 };
    let stretch_one = |v: f32| {
        let x = if v.is_finite() { v } else { fill };
        lut.get((((x as f64 - lo) * scale) as f32).clamp(0.0, 1.0))
    };
    // An 8-bit source has at most 256 values: each is stretched once, by the same rule.
    let table: Option<Vec<f32>> = (r.display_ready && r.data.len() > 256).then(|| (0..256).map(|k| stretch_one(k as f32)).collect());
    Ok((0..r.channels)
        .map(|c| match &table {
            Some(t) => r.plane(c).iter().map(|&v| if v as u8 as f32 == v { t[v as u8 as usize] } else { stretch_one(v) }).collect(),
            None => r.plane(c).iter().map(|&v| stretch_one(v)).collect(),
        })
        .collect())
}

/// The bands the encoder sees: colour averaged to one band in grey mode.
fn encoder_bands(bands: &[Vec<f32>], channels: Channels) -> Vec<std::borrow::Cow<'_, [f32]>> {
    if bands.len() == 3 && channels == Channels::Grey {
        let n = bands[0].len();
        vec![std::borrow::Cow::Owned((0..n).map(|i| (bands[0][i] + bands[1][i] + bands[2][i]) / 3.0).collect())]
    } else {
        bands.iter().map(|b| std::borrow::Cow::Borrowed(b.as_slice())).collect()
    }
}

pub fn prepare(r: &Raster, s: &PreprocessSettings, thumb_size: u32) -> Result<Prepared, FileError> {
    let bands = stretch_bands(r, s)?;
    let size = s.size as usize;
    let (fw, fh) = fit_size(r.width, r.height, s.size);
    let (ox, oy) = ((size - fw as usize) / 2, (size - fh as usize) / 2);
    let mut tensor = vec![0f32; s.model_channels as usize * size * size];
    let grey = encoder_bands(&bands, s.channels);
    let resized: Vec<std::borrow::Cow<'_, [f32]>> = grey.iter().map(|b| resize_plane(b, r.width, r.height, fw, fh)).collect();
    for c in 0..s.model_channels as usize {
        let src = &resized[c.min(resized.len() - 1)];
        let dst = &mut tensor[c * size * size..(c + 1) * size * size];
        for y in 0..fh as usize {
            let row = &src[y * fw as usize..(y + 1) * fw as usize];
            dst[(y + oy) * size + ox..(y + oy) * size + ox + fw as usize].copy_from_slice(row);
        }
    }
    // Resizing can overshoot slightly; keep the documented [0, 1] range.
    tensor.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));

    let thumb = picture(&bands, r, thumb_size);
    Ok(Prepared { tensor, thumb, bands })
}

/// The display picture of the stretched `bands` at `size` pixels on its longer side, never
/// larger than the image itself (browsers upscale for free, JPEG encoding does not).
pub fn picture(bands: &[Vec<f32>], r: &Raster, size: u32) -> Thumb {
    let (tw, th) = fit_size(r.width, r.height, size.min(r.width.max(r.height) as u32).max(1));
    let tb: Vec<std::borrow::Cow<'_, [f32]>> = bands.iter().map(|b| resize_plane(b, r.width, r.height, tw, th)).collect();
    let ch = tb.len();
    let mut pixels = vec![0u8; tw as usize * th as usize * ch];
    for (c, band) in tb.iter().enumerate() {
        for (i, v) in band.iter().enumerate() {
            // v >= 0 after the clamp, so adding 0.5 and truncating rounds to nearest.
            pixels[i * ch + c] = (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
        }
    }
    Thumb { width: tw, height: th, channels: ch as u8, pixels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert_eq!(percentile(&s, 100.0), 4.0);
        assert!((percentile(&s, 50.0) - 2.5).abs() < 1e-6);
        // np.percentile([1,2,3,4], 99.7) == 3.991
        assert!((percentile(&s, 99.7) - 3.991).abs() < 1e-5);
    }

    #[test]
    fn selection_percentile_equals_the_sorted_one() {
        let data: Vec<f32> = (0..1001).map(|i| ((i * 7919) % 1009) as f32 * 0.37).collect();
        let mut sorted = data.clone();
        sorted.sort_by(f32::total_cmp);
        for p in [0.0, 1.0, 12.5, 50.0, 99.7, 100.0] {
            let mut d = data.clone();
            assert_eq!(select_percentile(&mut d, p), percentile(&sorted, p), "p = {p}");
        }
    }

    #[test]
    fn percentiles_at_once_equal_the_sorted_ones() {
        for n in [1usize, 2, 3, 10, 1001, 4096] {
            // Many repeated values, as in real images.
            let data: Vec<f32> = (0..n).map(|i| ((i * 7919) % 211) as f32 * 0.5 - 20.0).collect();
            let mut sorted = data.clone();
            sorted.sort_by(f32::total_cmp);
            for ps in [[1.0, 99.7, 50.0], [0.0, 100.0, 50.0], [50.0, 50.0, 12.5], [99.9, 0.1, 33.3]] {
                let mut d = data.clone();
                let want = ps.map(|p| percentile(&sorted, p));
                assert_eq!(select_percentiles(&mut d, ps), want, "n = {n}, ps = {ps:?}");
            }
        }
    }

    /// The preprocessing settings a config with no [preprocess] table gives.
    fn defaults() -> PreprocessSettings {
        let o = crate::config::Overrides { archive: Some("/tmp/a".into()), out: Some("/tmp/o".into()), cache: Some("/tmp/c".into()), ..Default::default() };
        crate::config::resolve(crate::config::RawConfig::default(), None, std::path::Path::new("/tmp"), &o).unwrap().preprocess
    }

    fn raster(width: usize, height: usize, channels: usize, data: Vec<f32>, display_ready: bool) -> Raster {
        Raster { width, height, channels, data, display_ready, reservation: Default::default() }
    }

    /// 8-bit images take their percentiles from a histogram and their stretch from a
    /// 256-entry table: the result must be the general path's, bit for bit.
    #[test]
    fn eight_bit_shortcuts_give_the_general_result() {
        let mut s = defaults();
        for (w, h, ch) in [(64, 64, 1), (37, 21, 3), (700, 400, 1)] {
            let data: Vec<f32> = (0..w * h * ch).map(|i| ((i * 31 + i / 7) % 256) as f32).collect();
            for stretch in [Stretch::Asinh, Stretch::Linear, Stretch::Log] {
                s.stretch = stretch;
                s.stretch_8bit = stretch;
                let (fast, general) = (raster(w, h, ch, data.clone(), true), raster(w, h, ch, data.clone(), false));
                assert_eq!(clip_limits(&fast, &s).unwrap(), clip_limits(&general, &s).unwrap(), "{w}x{h}x{ch} {stretch:?}");
                assert_eq!(stretch_bands(&fast, &s).unwrap(), stretch_bands(&general, &s).unwrap(), "{w}x{h}x{ch} {stretch:?}");
            }
        }
        // A value that is not a byte (never made by a decoder, but possible) falls back.
        let mut odd: Vec<f32> = (0..4096).map(|i| (i % 256) as f32).collect();
        odd[5] = 3.5;
        let (fast, general) = (raster(64, 64, 1, odd.clone(), true), raster(64, 64, 1, odd, false));
        assert_eq!(clip_limits(&fast, &s).unwrap(), clip_limits(&general, &s).unwrap());
        assert_eq!(stretch_bands(&fast, &s).unwrap(), stretch_bands(&general, &s).unwrap());
    }

    /// An X-ray counts image: zeros but for 0.2 % of pixels. The 99.7th percentile is 0, so
    /// the limits fall back to the minimum and maximum, and the sources show.
    #[test]
    fn a_sparse_image_keeps_its_sources() {
        let s = defaults();
        for display_ready in [false, true] {
            let mut data = vec![0f32; 120 * 100];
            for (i, v) in [(0, 50.0), (1, 40.0), (121, 45.0), (5000, 20.0), (7000, 1.0), (9000, 1.0)] {
                data[i] = v;
            }
            let r = raster(120, 100, 1, data, display_ready);
            let c = clip_limits(&r, &s).unwrap();
            assert_eq!((c.lo, c.hi), (0.0, 50.0), "display_ready {display_ready}");
            let b = stretch_bands(&r, &s).unwrap();
            assert_eq!(b[0][0], 1.0);
            assert!(b[0][5000] > 0.3 && b[0][7000] > 0.0 && b[0][2] == 0.0);
        }
        // Above the sample cap, a source of one pixel in a column the sample skips (the
        // stride divides the width) still sets the maximum.
        let mut data = vec![0f32; 1024 * 1024];
        data[300 * 1024 + 601] = 50.0;
        assert_ne!((300 * 1024 + 601) % (1024 * 1024usize).div_ceil(SAMPLE_CAP), 0, "the source must lie outside the sample");
        let c = clip_limits(&raster(1024, 1024, 1, data, false), &s).unwrap();
        assert_eq!((c.lo, c.hi), (0.0, 50.0));
        // A constant image has nothing to show: black, as before.
        let flat = raster(8, 8, 1, vec![7.0; 64], false);
        assert!(stretch_bands(&flat, &s).unwrap()[0].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn the_lookup_table_follows_the_exact_stretch() {
        for s in [Stretch::Log, Stretch::Asinh, Stretch::Sqrt] {
            let (lut, f) = (Lut::new(s), stretch_fn(s));
            let worst = (0..=100_000).map(|i| i as f32 / 100_000.0).map(|t| (lut.get(t) - f(t)).abs()).fold(0.0, f32::max);
            assert!(worst < 2e-6, "{s:?}: {worst}");
        }
    }

    #[test]
    fn stretches_map_unit_interval_onto_itself() {
        for s in [Stretch::Linear, Stretch::Log, Stretch::Asinh, Stretch::Sqrt, Stretch::Zscale] {
            let f = stretch_fn(s);
            assert!(f(0.0).abs() < 1e-6, "{s:?}");
            assert!((f(1.0) - 1.0).abs() < 1e-6, "{s:?}");
            assert!(f(0.25) >= 0.25 - 1e-6, "{s:?} should not darken");
        }
    }

    #[test]
    fn zscale_ignores_a_few_bright_outliers() {
        // A ramp of sky values plus a handful of very bright stars.
        let mut v: Vec<f32> = (0..2000).map(|i| 100.0 + (i % 50) as f32 * 0.1).collect();
        for i in 0..10 {
            v[i * 200] = 1e5;
        }
        let (lo, hi) = zscale(&v);
        assert!(lo >= 100.0 && hi < 1000.0, "{lo} {hi}");
    }

    #[test]
    fn fit_size_keeps_aspect() {
        assert_eq!(fit_size(200, 100, 64), (64, 32));
        assert_eq!(fit_size(1, 1, 64), (64, 64));
        assert_eq!(fit_size(5000, 10, 64), (64, 1));
    }
}
