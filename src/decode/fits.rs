//! FITS through CFITSIO (the `fitsio-sys` bindings), read from memory.
//!
//! Opening from memory (`ffomem`) instead of by name means CFITSIO never parses a file name
//! (its extended syntax gives meaning to `[`, `+`, `-`…), never re-reads the file we already
//! hashed, and never sees a gzip stream: `.gz` is inflated here under a size limit, so a
//! decompression bomb is refused instead of filling memory. Tile-compressed `.fz` images are
//! handled by CFITSIO transparently. Pixels are read as float with NaN as the null value, so
//! BSCALE/BZERO are applied and BLANK integer pixels become NaN.

use std::ffi::{c_char, c_int, c_void, CString};
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout};

use fitsio_sys as sys;

use super::{admit, Header, Raster};
use crate::config::{CubeMode, FitsSettings, HduChoice};
use crate::error::FileError;

const IMAGE_HDU: c_int = sys::IMAGE_HDU as c_int;
const READONLY: c_int = sys::READONLY as c_int;
const TFLOAT: c_int = sys::TFLOAT as c_int;
const TDOUBLE: c_int = sys::TDOUBLE as c_int;
const MAX_AXES: usize = 9;

fn status_text(status: c_int) -> String {
    let mut buf = [0 as c_char; 32];
    // SAFETY: ffgerr writes at most 30 characters plus NUL into the buffer.
    unsafe { sys::ffgerr(status, buf.as_mut_ptr()) };
    let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
    format!("{text} (CFITSIO status {status})")
}

/// An open in-memory FITS file. CFITSIO keeps the *addresses* of the buffer pointer and size
/// it was given, so they live in this (boxed, never moved) struct until close.
struct MemFits<'a> {
    fptr: *mut sys::fitsfile,
    buf: *mut c_void,
    len: usize,
    _data: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> MemFits<'a> {
    fn open(data: &'a [u8]) -> Result<Box<MemFits<'a>>, FileError> {
        let mut f = Box::new(MemFits {
            fptr: std::ptr::null_mut(),
            buf: data.as_ptr() as *mut c_void,
            len: data.len(),
            _data: std::marker::PhantomData,
        });
        let name = CString::new("mem.fits").expect("static name");
        let mut status = 0;
        // SAFETY: READONLY with no realloc function: CFITSIO only reads `data`, which outlives
        // the returned box through the lifetime 'a; buf/len live in the box and are not moved.
        unsafe {
            sys::ffomem(&mut f.fptr, name.as_ptr(), READONLY, &mut f.buf, &mut f.len, 0, None, &mut status);
        }
        if status != 0 || f.fptr.is_null() {
            f.fptr = std::ptr::null_mut();
            return Err(FileError::Fits(format!("cannot open: {}", status_text(status))));
        }
        Ok(f)
    }

    fn check(&self, status: c_int, what: &str) -> Result<(), FileError> {
        if status == 0 {
            Ok(())
        } else {
            Err(FileError::Fits(format!("{what}: {}", status_text(status))))
        }
    }

    fn num_hdus(&self) -> Result<usize, FileError> {
        let (mut n, mut status) = (0, 0);
        unsafe { sys::ffthdu(self.fptr, &mut n, &mut status) };
        self.check(status, "counting HDUs")?;
        Ok(n.max(0) as usize)
    }

    /// Moves to HDU `i` (0-based) and returns its type.
    fn goto(&self, i: usize) -> Result<c_int, FileError> {
        let (mut t, mut status) = (0, 0);
        unsafe { sys::ffmahd(self.fptr, i as c_int + 1, &mut t, &mut status) };
        self.check(status, &format!("moving to HDU {i}"))?;
        Ok(t)
    }

    fn goto_name(&self, name: &str) -> Result<(), FileError> {
        let c = CString::new(name).map_err(|_| FileError::Fits("HDU name contains NUL".into()))?;
        let mut status = 0;
        unsafe { sys::ffmnhd(self.fptr, sys::ANY_HDU, c.as_ptr() as *mut c_char, 0, &mut status) };
        if status != 0 {
            return Err(FileError::NoImage(format!("no HDU named `{name}` (EXTNAME); set [fits] hdu to one that exists, or to \"auto\"")));
        }
        Ok(())
    }

    /// The current HDU's image axes (NAXIS1 first), empty for NAXIS = 0.
    fn axes(&self) -> Result<Vec<i64>, FileError> {
        let (mut naxis, mut status) = (0, 0);
        unsafe { sys::ffgidm(self.fptr, &mut naxis, &mut status) };
        self.check(status, "reading NAXIS")?;
        let naxis = naxis.max(0) as usize;
        if naxis > MAX_AXES {
            return Err(FileError::Unsupported(format!("image with NAXIS = {naxis}")));
        }
        let mut axes = vec![0i64; naxis];
        if naxis > 0 {
            unsafe { sys::ffgiszll(self.fptr, naxis as c_int, axes.as_mut_ptr(), &mut status) };
            self.check(status, "reading NAXISn")?;
        }
        Ok(axes)
    }

    /// An integer keyword of the current HDU as written in its header (for a tile-compressed
    /// image, the keywords of the table that holds it), or `default` when absent.
    fn raw_key(&self, name: &str, default: i64) -> Result<i64, FileError> {
        let key = CString::new(name).map_err(|_| FileError::Fits("bad keyword".into()))?;
        let (mut v, mut status) = (0i64, 0);
        unsafe { sys::ffgkyjj(self.fptr, key.as_ptr(), &mut v, std::ptr::null_mut(), &mut status) };
        match status {
            0 => Ok(v),
            s if s == sys::KEY_NO_EXIST as c_int => Ok(default),
            s => Err(FileError::Fits(format!("reading {name}: {}", status_text(s)))),
        }
    }

    /// A real keyword of the current HDU, or `default` when absent or unreadable.
    fn real_key(&self, name: &str, default: f64) -> f64 {
        let Ok(key) = CString::new(name) else { return default };
        let (mut v, mut status) = (0f64, 0);
        unsafe { sys::ffgkyd(self.fptr, key.as_ptr(), &mut v, std::ptr::null_mut(), &mut status) };
        if status == 0 { v } else { default }
    }

    /// Whether float32 may lose some of this image's values: pixels stored in double
    /// precision or 32/64-bit integers (BITPIX, for a tile-compressed image ZBITPIX), or
    /// scaled by BSCALE/BZERO other than the unsigned-integer conventions. Bytes, 16-bit
    /// integers and float32 pixels are float32 exactly.
    fn wider_than_float32(&self) -> Result<bool, FileError> {
        let (mut bitpix, mut status) = (0, 0);
        unsafe { sys::ffgidt(self.fptr, &mut bitpix, &mut status) };
        self.check(status, "reading BITPIX")?;
        let (bscale, bzero) = (self.real_key("BSCALE", 1.0), self.real_key("BZERO", 0.0));
        let unsigned = (bitpix == 16 && bzero == 32768.0) || (bitpix == 8 && bzero == -128.0);
        Ok(matches!(bitpix, -64 | 32 | 64) || bscale != 1.0 || (bzero != 0.0 && !unsigned))
    }

    /// A string keyword of the current HDU, trimmed, or None when absent or unreadable.
    fn str_key(&self, name: &str) -> Option<String> {
        let key = CString::new(name).ok()?;
        let mut value = [0 as c_char; 72];
        let mut status = 0;
        unsafe { sys::ffgkys(self.fptr, key.as_ptr(), value.as_mut_ptr(), std::ptr::null_mut(), &mut status) };
        (status == 0).then(|| unsafe { std::ffi::CStr::from_ptr(value.as_ptr()) }.to_string_lossy().trim().to_string())
    }

    /// The current HDU's number (0 is the primary HDU).
    fn hdu_index(&self) -> usize {
        let mut n = 0;
        unsafe { sys::ffghdn(self.fptr, &mut n) };
        (n - 1).max(0) as usize
    }

    /// A keyword of the current HDU as the header writes it: a string without its quotes
    /// and padding (continued over CONTINUE cards, up to [`MAX_VALUE_BYTES`]), a number or
    /// logical as written, made safe by [`clean_value`]. None when the HDU has no such
    /// keyword, or it has no value.
    fn value_of(&self, name: &str) -> Option<String> {
        let key = CString::new(name).ok()?;
        // FLEN_VALUE (71) with room to spare.
        let mut raw = [0 as c_char; 72];
        let mut status = 0;
        unsafe { sys::ffgkey(self.fptr, key.as_ptr(), raw.as_mut_ptr(), std::ptr::null_mut(), &mut status) };
        if status != 0 {
            return None;
        }
        let raw = unsafe { std::ffi::CStr::from_ptr(raw.as_ptr()) }.to_bytes();
        if !raw.starts_with(b"'") {
            return clean_value(&String::from_utf8_lossy(raw));
        }
        // A string: ffgsky takes the quotes off, undoubles the quotes inside and follows
        // CONTINUE cards, writing at most MAX_VALUE_BYTES and a NUL.
        let mut value = vec![0 as c_char; MAX_VALUE_BYTES + 1];
        let (mut len, mut status) = (0, 0);
        unsafe {
            sys::ffgsky(self.fptr, key.as_ptr(), 1, MAX_VALUE_BYTES as c_int, value.as_mut_ptr(), &mut len, std::ptr::null_mut(), &mut status)
        };
        if status != 0 {
            return None;
        }
        clean_value(&String::from_utf8_lossy(unsafe { std::ffi::CStr::from_ptr(value.as_ptr()) }.to_bytes()))
    }

    /// The values of `keywords` for the image in the current HDU: its own header's, else the
    /// primary HDU's (OBJECT and DATE-OBS often sit only there, with the image in an
    /// extension). In the order asked for; keywords in neither are left out. Moves to the
    /// primary HDU when it looks there.
    /// The fields `wcs::RA`, `wcs::DEC` and `wcs::FOV` are the image's place (see
    /// `position`), from its own HDU only: a WCS describes the pixels of the HDU it is in.
    fn keywords(&self, keywords: &[String]) -> Result<Header, FileError> {
        let at = keywords.iter().any(|k| crate::wcs::is_sky(k)).then(|| self.position().ok().flatten()).flatten();
        self.keywords_at(keywords, at)
    }

    /// `keywords`, with the image's place already worked out (`at`).
    fn keywords_at(&self, keywords: &[String], at: Option<crate::wcs::Place>) -> Result<Header, FileError> {
        let sky = crate::wcs::is_sky;
        let degrees = at.map(|p| crate::wcs::decimal(p.ra, p.dec));
        let own = |k: &String| match k.as_str() {
            crate::wcs::RA => degrees.as_ref().map(|d| d.0.clone()),
            crate::wcs::DEC => degrees.as_ref().map(|d| d.1.clone()),
            crate::wcs::FOV => at.and_then(|p| p.fov).map(crate::wcs::fov_text),
            _ => self.shown_value(k),
        };
        let mut found: Vec<Option<String>> = keywords.iter().map(own).collect();
        if self.hdu_index() > 0 && keywords.iter().zip(&found).any(|(k, v)| v.is_none() && !sky(k)) {
            self.goto(0)?;
            for (k, v) in keywords.iter().zip(found.iter_mut()).filter(|(k, v)| v.is_none() && !sky(k)) {
                *v = self.shown_value(k);
            }
        }
        Ok(keywords.iter().zip(found).filter_map(|(k, v)| Some((k.clone(), v?))).collect())
    }

    /// `value_of`, but DATE-OBS as ISO 8601: the old `DD/MM/YY` form (which the standard
    /// dates in 1900–1999) turned round, and a date alone joined by the HDU's TIME-OBS
    /// (HST writes them apart), so that no reader takes 11/03/76 for November.
    fn shown_value(&self, name: &str) -> Option<String> {
        let v = self.value_of(name)?;
        if name != "DATE-OBS" {
            return Some(v);
        }
        let b = v.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if b.len() == 8 && b[2] == b'/' && b[5] == b'/' && digits(0..2) && digits(3..5) && digits(6..8) {
            return Some(format!("19{}-{}-{}", &v[6..8], &v[3..5], &v[0..2]));
        }
        if b.len() == 10 && b[4] == b'-' && b[7] == b'-' && digits(0..4) && digits(5..7) && digits(8..10) {
            if let Some(t) = self.value_of("TIME-OBS").filter(|t| t.len() >= 5 && t.as_bytes()[2] == b':' && t.is_ascii()) {
                return Some(format!("{v}T{t}"));
            }
        }
        Some(v)
    }

    /// The current HDU's cards as `wcs::card_value` reads them (`Null` where it cannot), the
    /// last of a keyword written twice, as wcslib takes it (what its WCS is read from).
    fn cards(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut cards = serde_json::Map::new();
        let (mut n, mut more, mut status) = (0, 0, 0);
        unsafe { sys::ffghsp(self.fptr, &mut n, &mut more, &mut status) };
        if status != 0 {
            return cards;
        }
        // FLEN_KEYWORD (75), FLEN_VALUE (71) and FLEN_COMMENT (73), with room to spare.
        let (mut name, mut value, mut comment) = ([0 as c_char; 81], [0 as c_char; 81], [0 as c_char; 81]);
        for i in 1..=n {
            let mut status = 0;
            unsafe { sys::ffgkyn(self.fptr, i, name.as_mut_ptr(), value.as_mut_ptr(), comment.as_mut_ptr(), &mut status) };
            if status != 0 {
                continue;
            }
            let text = |b: &[c_char]| String::from_utf8_lossy(unsafe { std::ffi::CStr::from_ptr(b.as_ptr()) }.to_bytes()).into_owned();
            let key = text(&name);
            if key.is_empty() {
                continue;
            }
            // A value it cannot read is there all the same (`Null`): the WCS then says why.
            cards.insert(key, crate::wcs::card_value(&text(&value)).unwrap_or(serde_json::Value::Null));
        }
        cards
    }

    /// Where the image in the current HDU is on the sky, from the HDU's celestial WCS
    /// (`wcs::place`; `Err`: why a WCS there gives none).
    /// An extension with `INHERIT = T` takes each frame card it lacks from the primary
    /// header (where a pipeline may have written RADESYS = 'FK4'), as the convention
    /// inherits keywords one by one (RADESYS or RADECSYS, EQUINOX or EPOCH).
    fn position(&self) -> Result<Option<crate::wcs::Place>, String> {
        let axes = self.axes().map_err(|e| e.to_string())?;
        let [w, h, ..] = axes[..] else { return Ok(None) };
        if w <= 0 || h <= 0 {
            return Ok(None);
        }
        let mut cards = self.cards();
        let here = self.hdu_index();
        if here > 0 && self.value_of("INHERIT").as_deref() == Some("T") {
            self.goto(0).map_err(|e| e.to_string())?;
            let primary = self.cards();
            self.goto(here).map_err(|e| e.to_string())?;
            // Each pair spells one card: an extension's own EPOCH is its equinox, and the
            // primary's EQUINOX must not override it.
            for pair in [["RADESYS", "RADECSYS"], ["EQUINOX", "EPOCH"]] {
                if !pair.iter().any(|k| cards.contains_key(*k)) {
                    for k in pair {
                        if let Some(v) = primary.get(k) {
                            cards.insert(k.into(), v.clone());
                        }
                    }
                }
            }
        }
        crate::wcs::place(&cards, w as usize, h as usize)
    }

    /// Byte offset where the current HDU's data ends, unpadded, from the FITS standard's
    /// size formula `|BITPIX|/8 × GCOUNT × (PCOUNT + NAXIS1 × … × NAXISn)`.
    fn data_end(&self) -> Result<u64, FileError> {
        let (mut head, mut start, mut end, mut status) = (0i64, 0i64, 0i64, 0);
        unsafe { sys::ffghadll(self.fptr, &mut head, &mut start, &mut end, &mut status) };
        self.check(status, "locating the data")?;
        let bitpix = self.raw_key("BITPIX", 8)?.unsigned_abs() / 8;
        let naxis = self.raw_key("NAXIS", 0)?;
        let mut n: u64 = if naxis > 0 { 1 } else { 0 };
        for k in 1..=naxis.clamp(0, 999) {
            n = n.saturating_mul(self.raw_key(&format!("NAXIS{k}"), 0)?.max(0) as u64);
        }
        let pcount = self.raw_key("PCOUNT", 0)?.max(0) as u64;
        let gcount = self.raw_key("GCOUNT", 1)?.max(1) as u64;
        let size = bitpix.saturating_mul(gcount).saturating_mul(pcount.saturating_add(n));
        Ok((start.max(0) as u64).saturating_add(size))
    }

    /// Reads `out.len()` pixels of CFITSIO type `datatype` (`T` must be it) starting at
    /// 0-based element `first` of the current HDU, `null` where null (BLANK, NaN, inf), and
    /// returns CFITSIO's status.
    fn pixels<T: Copy>(&self, datatype: c_int, first: u64, out: &mut [T], mut null: T) -> c_int {
        let (mut anynul, mut status) = (0, 0);
        unsafe {
            sys::ffgpv(
                self.fptr,
                datatype,
                first as i64 + 1,
                out.len() as i64,
                &mut null as *mut T as *mut c_void,
                out.as_mut_ptr() as *mut c_void,
                &mut anynul,
                &mut status,
            )
        };
        status
    }

    /// Reads pixels as float32, NaN where null. `Ok(false)`: a value lies beyond float32's
    /// range (the rest were read, that one clamped).
    fn read_narrow(&self, first: u64, out: &mut [f32]) -> Result<bool, FileError> {
        let status = self.pixels(TFLOAT, first, out, f32::NAN);
        if status == sys::NUM_OVERFLOW as c_int || status == sys::OVERFLOW_ERR {
            return Ok(false);
        }
        self.check(status, "reading pixels").map(|()| true)
    }

    /// As [`Self::read_narrow`], in double precision.
    fn read_f64(&self, first: u64, out: &mut [f64]) -> Result<(), FileError> {
        self.check(self.pixels(TDOUBLE, first, out, f64::NAN), "reading pixels")
    }

    /// Reads pixels as float32, through `wide` where it is given (see [`Wide`]).
    fn read(&self, first: u64, out: &mut [f32], wide: Option<Wide>) -> Result<(), FileError> {
        let Some(w) = wide else {
            return match self.read_narrow(first, out)? {
                true => Ok(()),
                false => Err(FileError::Fits("reading pixels: a value beyond float32's range in a later plane".into())),
            };
        };
        self.each_f64_chunk(first, out.len(), |start, b| {
            for (o, &x) in out[start..start + b.len()].iter_mut().zip(b) {
                *o = ((x - w.offset) * w.scale) as f32;
            }
        })
    }

    /// Reads `n` pixels from element `first` in double precision, [`WIDE_CHUNK`] at a time,
    /// handing each chunk to `f` with its offset from `first`.
    fn each_f64_chunk(&self, first: u64, n: usize, mut f: impl FnMut(usize, &[f64])) -> Result<(), FileError> {
        let mut buf = vec![0f64; WIDE_CHUNK.min(n)];
        for start in (0..n).step_by(WIDE_CHUNK) {
            let b = &mut buf[..WIDE_CHUNK.min(n - start)];
            self.read_f64(first + start as u64, b)?;
            f(start, b);
        }
        Ok(())
    }

    /// The [`Wide`] mapping for the plane of `npix` pixels at element `first`, read in double
    /// precision, or `None` when float32 keeps its detail after all (`overflow`: float32
    /// made some of it infinite). Its offset is the median of [`sample_stride`]'s pixels;
    /// its scale a power of two that brings the largest distance from it between 2^-100
    /// and 2^100, or 1 when it is there already.
    fn wide_of(&self, first: u64, npix: usize, overflow: bool) -> Result<Option<Wide>, FileError> {
        let stride = sample_stride(npix);
        let (mut picked, mut lo, mut hi) = (Vec::new(), f64::INFINITY, f64::NEG_INFINITY);
        self.each_f64_chunk(first, npix, |start, b| {
            for (i, &x) in b.iter().enumerate().filter(|(_, x)| x.is_finite()) {
                if (start + i).is_multiple_of(stride) {
                    picked.push(x);
                }
                (lo, hi) = (lo.min(x), hi.max(x));
            }
        })?;
        let Some((low, offset, high)) = spread(&mut picked) else {
            return Ok(None);
        };
        if !overflow && !(high > low && step_above(offset) > (high - low) * 1e-3) {
            return Ok(None);
        }
        let reach = (hi - offset).max(offset - lo);
        // The binary exponent of a normal double, exactly (Python: math.frexp(m)[1] - 1).
        let exponent = ((reach.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        let scale = if reach > 0.0 && reach.is_finite() && !(-100..=100).contains(&exponent) { 2f64.powi(-exponent) } else { 1.0 };
        Ok(Some(Wide { offset, scale }))
    }
}

/// Pixels become float32, which keeps every BITPIX's detail as long as the values do not
/// sit on a pedestal far larger than their spread (a BITPIX -64 or 32-bit image at 1e9 ± 1)
/// or beyond float32's range (±3.4e38). Such an image is read again in double precision and
/// mapped to `(x - offset) × scale` before becoming float32: a shift and a positive scale
/// change no stretch, since every stretch works between percentiles of the pixels.
/// `training/simsite_prep.py` mirrors this (`_float32`).
#[derive(Clone, Copy, Debug)]
struct Wide {
    offset: f64,
    scale: f64,
}

/// Pixels read at once in double precision.
const WIDE_CHUNK: usize = 1 << 16;

/// Every `sample_stride`-th pixel of a plane (in file order, from the first) forms the sample
/// that decides whether float32 loses its detail, about 4,096 pixels.
fn sample_stride(npix: usize) -> usize {
    (npix / 4096).max(1)
}

/// The 1st percentile, the median and the 99th percentile of a sample (reordered here), as
/// the elements at those ranks; `None` for an empty one.
fn spread<T: Copy + Into<f64>>(s: &mut [T]) -> Option<(f64, f64, f64)> {
    let n = s.len().checked_sub(1)?;
    let mut at = |r: usize| -> f64 { (*s.select_nth_unstable_by(r, |a, b| (*a).into().total_cmp(&(*b).into())).1).into() };
    Some((at(n / 100), at(n / 2), at(n - n / 100)))
}

/// The distance from float32's value nearest `x` to the next float32 away from zero.
fn step_above(x: f64) -> f64 {
    let a = (x as f32).abs();
    (f32::from_bits(a.to_bits() + 1) - a) as f64
}

/// Whether the plane, as float32 gives it, may have lost its detail: it holds a value that
/// overflowed (CFITSIO makes the file's own infinities NaN), or float32 has fewer than
/// 1,000 steps between its sample's 1st and 99th percentile (none at all, for a plane
/// rounded to one value). [`MemFits::wide_of`] decides from the double-precision values.
fn may_lose_detail(plane: &[f32]) -> (bool, bool) {
    let overflow = plane.iter().any(|x| x.is_infinite());
    let mut s: Vec<f32> = plane.iter().step_by(sample_stride(plane.len())).copied().filter(|x| x.is_finite()).collect();
    let rounded = spread(&mut s).is_some_and(|(lo, median, hi)| step_above(median) > (hi - lo) * 1e-3);
    (overflow || rounded, overflow)
}

/// The longest header value kept, in characters: a string continued over CONTINUE cards
/// can be as long as its header, and a value is shown on every item page and map tooltip.
pub const MAX_VALUE_CHARS: usize = 200;
/// What is read of a string value before it is cut (UTF-8 from a hostile file may take up
/// to 4 bytes a character).
const MAX_VALUE_BYTES: usize = 4 * MAX_VALUE_CHARS;

/// A header value made safe to show: control characters (a hostile archive's escape
/// sequences, NULs, line breaks) dropped, spaces at both ends trimmed, cut to
/// [`MAX_VALUE_CHARS`] (ending in `…` when cut). None when nothing is left: an empty value
/// is left out, as an empty catalogue cell is.
pub fn clean_value(raw: &str) -> Option<String> {
    let kept: String = raw.chars().filter(|c| !c.is_control()).collect();
    let kept = kept.trim();
    if kept.is_empty() {
        return None;
    }
    Some(match kept.char_indices().nth(MAX_VALUE_CHARS) {
        Some(_) => {
            let cut = kept.char_indices().nth(MAX_VALUE_CHARS - 1).map_or(kept.len(), |(i, _)| i);
            format!("{}…", kept[..cut].trim_end())
        }
        None => kept.to_string(),
    })
}

impl Drop for MemFits<'_> {
    fn drop(&mut self) {
        if !self.fptr.is_null() {
            let mut status = 0;
            unsafe { sys::ffclos(self.fptr, &mut status) };
        }
    }
}

/// An image has two axes longer than 1 once the degenerate ones (length 1: a Stokes or
/// frequency axis of one plane, or a NAXIS1 of 1 from an array with a trailing unit
/// dimension) are dropped, and none of length 0.
fn is_image(axes: &[i64]) -> bool {
    axes.iter().all(|&a| a > 0) && real_axes(axes).len() >= 2
}

/// The axes longer than 1, each with its 0-based FITS axis number (CTYPE{n + 1}).
fn real_axes(axes: &[i64]) -> Vec<(usize, u64)> {
    axes.iter().enumerate().filter(|(_, &a)| a > 1).map(|(n, &a)| (n, a as u64)).collect()
}

/// Under this many pixels across and this many times longer than that, an "image" is a
/// strip: an echelle or long-slit spectrum, or orders of one, not a picture.
const STRIP_ACROSS: u64 = 8;
const STRIP_RATIO: u64 = 16;
/// What an HDU with one axis longer than 1 holds.
const LINE: &str = ": one axis longer than 1, a line of values (a spectrum?)";

/// Inflates a gzip stream, refusing to produce more than `limit` bytes. Member after member,
/// as gzip does; what follows the last member and is not one (zeros a tape or a transfer
/// padded the file with) is ignored, as gzip ignores it.
fn gunzip(bytes: &[u8], limit: u64) -> Result<Vec<u8>, FileError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.starts_with(&[0x1f, 0x8b]) {
        let mut member = flate2::bufread::GzDecoder::new(rest);
        let room = limit + 1 - out.len() as u64;
        (&mut member)
            .take(room)
            .read_to_end(&mut out)
            .map_err(|e| FileError::Decode { format: "gzip-compressed FITS", message: e.to_string() })?;
        if out.len() as u64 > limit {
            return Err(FileError::InflatesTooLarge { limit });
        }
        rest = member.into_inner();
    }
    Ok(out)
}

/// The FITS stream of a file as read: `.gz` inflated (under `max_bytes`), and refused
/// unless it starts with a SIMPLE card and holds a whole 2880-byte block, before CFITSIO
/// parses anything.
fn fits_stream(bytes: &[u8], max_bytes: u64) -> Result<std::borrow::Cow<'_, [u8]>, FileError> {
    let data = if bytes.starts_with(&[0x1f, 0x8b]) { std::borrow::Cow::Owned(gunzip(bytes, max_bytes)?) } else { std::borrow::Cow::Borrowed(bytes) };
    if !data.starts_with(b"SIMPLE  =") {
        return Err(FileError::Decode { format: "FITS", message: "does not start with a SIMPLE card".into() });
    }
    if data.len() < 2880 {
        return Err(FileError::Decode { format: "FITS", message: format!("truncated: {} bytes, shorter than one 2880-byte FITS block", data.len()) });
    }
    Ok(data)
}

/// CFITSIO reads whole 2880-byte blocks; some writers omit the final padding, so a copy is
/// padded rather than let it read past the end of the buffer.
fn whole_blocks(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if data.len().is_multiple_of(2880) {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut v = Vec::with_capacity(data.len().next_multiple_of(2880));
    v.extend_from_slice(data);
    v.resize(data.len().next_multiple_of(2880), 0);
    std::borrow::Cow::Owned(v)
}

/// Decodes a FITS file, and reads the header `keywords` of its image (see
/// [`MemFits::keywords`]) while it is open.
pub(super) fn decode(
    bytes: &[u8],
    settings: &FitsSettings,
    keywords: &[String],
    max_pixels: u64,
    max_bytes: u64,
) -> Result<(Raster, Header), FileError> {
    let data = fits_stream(bytes, max_bytes)?;
    if is_tile_compressed(&data) {
        if let Some(exe) = ISOLATE_WITH.get() {
            return isolated(exe, &data, settings, keywords, max_pixels, bytes.len());
        }
    }
    read_with_cfitsio(bytes, &data, settings, keywords, max_pixels)
}

/// What a FITS file's header says about its image, read without a pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderRead {
    /// The HDU the image is read from (`HDU 1`, or `HDU `SCI`` when chosen by EXTNAME).
    pub hdu: String,
    /// Its axes, NAXIS1 first.
    pub axes: Vec<i64>,
    /// The keywords asked for (see [`MemFits::keywords`]).
    pub values: Header,
    /// The image's place on the sky from its HDU's WCS, or why there is none.
    pub position: Result<Option<crate::wcs::Place>, String>,
}

/// Reads the header of the HDU a decode would read the image from, and the `keywords`,
/// but no pixel: for a file whose pixels the caches already hold, and for `inspect`. A
/// tile-compressed file is read here too, not in a child process: its tiles, whose
/// decompressors are what can crash, are not touched.
pub(super) fn header(bytes: &[u8], settings: &FitsSettings, keywords: &[String], max_bytes: u64) -> Result<HeaderRead, FileError> {
    let data = fits_stream(bytes, max_bytes)?;
    let data = whole_blocks(&data);
    let f = MemFits::open(&data)?;
    let (hdu, axes) = choose_hdu(&f, settings)?;
    let position = f.position();
    let values = f.keywords_at(keywords, position.clone().ok().flatten())?;
    Ok(HeaderRead { hdu, axes, values, position })
}

/// Finds the HDU the image is read from (`[fits] hdu`) and moves there: its label for
/// messages and its axes. Refuses one without a 2-D image.
fn choose_hdu(f: &MemFits, settings: &FitsSettings) -> Result<(String, Vec<i64>), FileError> {
    let n = f.num_hdus()?;
    let (hdu_label, axes) = match &settings.hdu {
        HduChoice::Auto => {
            let mut found = None;
            let mut tables = 0;
            // The first HDU holding a line of values (a spectrum), named if nothing better is found.
            let mut line = None;
            for i in 0..n {
                if f.goto(i)? != IMAGE_HDU {
                    tables += 1;
                    continue;
                }
                let axes = f.axes()?;
                if is_image(&axes) {
                    found = Some((format!("HDU {i}"), axes));
                    break;
                }
                if line.is_none() && real_axes(&axes).len() == 1 {
                    line = Some(format!("HDU {i} has axes {axes:?}"));
                }
            }
            match (found, line) {
                (Some(x), _) => x,
                (None, Some(line)) => return Err(FileError::NoImage(format!("{n} HDU(s), none with a 2-D image: {line}{LINE}"))),
                (None, None) if tables > 0 => {
                    return Err(FileError::NoImage(format!("{n} HDU(s), only tables and empty images; nothing to show")))
                }
                (None, None) => return Err(FileError::NoImage(format!("{n} HDU(s), none with a 2-D image"))),
            }
        }
        HduChoice::Index(i) => {
            let i = *i as usize;
            if i >= n {
                return Err(FileError::NoImage(format!("[fits] hdu = {i}, but the file has {n} HDU(s)")));
            }
            if f.goto(i)? != IMAGE_HDU {
                return Err(FileError::NoImage(format!("HDU {i} is a table, not an image")));
            }
            (format!("HDU {i}"), f.axes()?)
        }
        HduChoice::Name(name) => {
            f.goto_name(name)?;
            (format!("HDU `{name}`"), f.axes()?)
        }
    };
    if !is_image(&axes) {
        let what = match real_axes(&axes).len() {
            1 if axes.iter().all(|&a| a > 0) => LINE,
            _ => "",
        };
        return Err(FileError::NoImage(format!("{hdu_label} has axes {axes:?}{what}, not a 2-D image")));
    }
    Ok((hdu_label, axes))
}

/// CFITSIO's own part: open from memory, find the HDU, read and collapse the pixels, then
/// read the header `keywords`. `bytes` is the file as read (for the memory reservation),
/// `data` the FITS stream.
fn read_with_cfitsio(bytes: &[u8], data: &[u8], settings: &FitsSettings, keywords: &[String], max_pixels: u64) -> Result<(Raster, Header), FileError> {
    let file_len = data.len() as u64;
    let data = whole_blocks(data);
    let data: &[u8] = &data;
    let f = MemFits::open(data)?;
    let (hdu_label, axes) = choose_hdu(&f, settings)?;
    let real = real_axes(&axes);
    let (w, h) = (real[0].1, real[1].1);
    if w.min(h) < STRIP_ACROSS && w.max(h) >= STRIP_RATIO * w.min(h) {
        return Err(FileError::NoImage(format!(
            "{hdu_label} is {w} x {h} pixels: a strip (a spectrum, or orders of one), not a picture"
        )));
    }
    // The inflated or padded copy counts too; the caller's bytes are held meanwhile.
    let reservation = admit(w, h, max_pixels, bytes.len() + if std::ptr::eq(data.as_ptr(), bytes.as_ptr()) { 0 } else { data.len() })?;
    // CFITSIO's memory driver does not bounds-check reads past the buffer's end: a file
    // shorter than its header says would be read into foreign memory. Check it here.
    let end = f.data_end()?;
    if end > file_len {
        return Err(FileError::Decode {
            format: "FITS",
            message: format!("truncated: its headers declare {end} bytes up to the end of the image data, the file has {file_len}"),
        });
    }
    // Degenerate axes are dropped: they do not change where a pixel lies in the data.
    let planes: u64 = real[2..].iter().map(|&(_, a)| a).product();
    // A polarisation axis (CTYPEn = STOKES, as radio cubes have) is not collapsed: peak or
    // sum of I, Q, U and V would mix intensity with signed polarisation. Its first plane
    // (I, as radio archives store them) is the one used: `stride` is how many planes apart
    // its steps are, so plane k lies on it at (k / stride) % length.
    let stokes: Option<(u64, u64)> = (2..real.len()).find_map(|j| {
        let ctype = f.str_key(&format!("CTYPE{}", real[j].0 + 1))?;
        ctype.eq_ignore_ascii_case("STOKES").then(|| (real[2..j].iter().map(|&(_, a)| a).product::<u64>(), real[j].1))
    });
    let first_stokes = |k: u64| stokes.is_none_or(|(stride, len)| (k / stride) % len == 0);
    let npix = (w * h) as usize;
    // The plane shown (`plane`) or the first of those collapsed decides whether float32
    // keeps the image's detail (see `Wide`).
    let shown = match settings.cube {
        CubeMode::Plane(p) => {
            let p = if planes == 1 { 0 } else { p };
            if p >= planes {
                return Err(FileError::NoImage(format!("[fits] plane = {p}, but the cube has {planes} plane(s)")));
            }
            p
        }
        CubeMode::Peak | CubeMode::Sum => 0,
    };
    let mut plane = vec![0f32; npix];
    let in_range = f.read_narrow(shown * npix as u64, &mut plane)?;
    let (suspect, overflow) = if f.wider_than_float32()? { may_lose_detail(&plane) } else { (false, false) };
    let wide = if !in_range || suspect { f.wide_of(shown * npix as u64, npix, overflow || !in_range)? } else { None };
    if wide.is_some() {
        f.read(shown * npix as u64, &mut plane, wide)?;
    }
    let mut acc = plane;
    if matches!(settings.cube, CubeMode::Peak | CubeMode::Sum) {
        let mut plane = vec![0f32; npix];
        for k in (1..planes).filter(|&k| first_stokes(k)) {
            f.read(k * npix as u64, &mut plane, wide)?;
            for (a, &v) in acc.iter_mut().zip(&plane) {
                if v.is_nan() {
                    continue;
                }
                *a = if a.is_nan() {
                    v
                } else if settings.cube == CubeMode::Peak {
                    a.max(v)
                } else {
                    *a + v
                };
            }
        }
    }
    // The file is open already: its header costs no second open or read.
    let header = f.keywords(keywords)?;
    drop(f);
    // FITS stores the bottom row first; flip so row 0 is the top of the image.
    let (w, h) = (w as usize, h as usize);
    for y in 0..h / 2 {
        let (top, bottom) = acc.split_at_mut((h - 1 - y) * w);
        top[y * w..(y + 1) * w].swap_with_slice(&mut bottom[..w]);
    }
    Ok((Raster { width: w, height: h, channels: 1, data: acc, display_ready: false, reservation }, header))
}

// Tile-compressed images run CFITSIO's decompressors (Rice, HCOMPRESS, PLIO, gzip), whose
// C code reads past its buffers on crafted tiles (the `fits` fuzz target found a Rice tile
// that crashes CFITSIO 4.2). No check before CFITSIO can vouch for a decompressor, so the
// `simsite` binary decodes these files in child processes of its own, kept running and
// reused (one per decoding thread at most): a crash, a hang or an allocation gone wild in
// one skips that one file with its reason, the child is replaced, and the build goes on.

static ISOLATE_WITH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
/// Children waiting for their next file.
static IDLE: std::sync::Mutex<Vec<Worker>> = std::sync::Mutex::new(Vec::new());

/// The first argument that makes the `simsite` binary a FITS decoding child.
pub const CHILD_ARG: &str = "__decode-tile-compressed-fits";

/// A child that has not answered in this long is killed and its file skipped.
const CHILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Decode tile-compressed FITS in child processes running `exe` (the `simsite` binary,
/// which must call [`child_main`] when started with [`CHILD_ARG`]). Without this call (a
/// library user, the tests of the decoder itself) they are decoded in this process.
pub fn isolate_compressed_with(exe: std::path::PathBuf) {
    ISOLATE_WITH.set(exe).ok();
}

/// Whether any header card says `ZIMAGE = T` (cards are 80-byte aligned; the data of other
/// HDUs is scanned too, and a chance match only means a file is decoded in a child).
pub fn is_tile_compressed(data: &[u8]) -> bool {
    data.chunks_exact(80).any(|card| card.starts_with(b"ZIMAGE  =") && card[10..].trim_ascii_start().starts_with(b"T"))
}

/// A request is the settings as one line (`hdu cube max-pixels keywords`, the keywords
/// joined by commas), the data's length (u64 LE) and the data; the answer `OK` + width and
/// height (u64 LE) + the pixels (f32 LE) + the number of header values found (u32 LE) and
/// each as its keyword's index in the request (u32 LE), its length (u32 LE) and its UTF-8
/// bytes, or `ER` + the reason's length (u32 LE) + the reason.
fn encode_settings(s: &FitsSettings, keywords: &[String], max_pixels: u64) -> String {
    let hdu = match &s.hdu {
        HduChoice::Auto => "auto".to_string(),
        HduChoice::Index(i) => format!("index:{i}"),
        // EXTNAMEs are FITS strings: printable ASCII, but they may hold spaces.
        HduChoice::Name(n) => format!("name:{}", n.replace(' ', "\u{1}")),
    };
    let cube = match s.cube {
        CubeMode::Peak => "peak".to_string(),
        CubeMode::Sum => "sum".to_string(),
        CubeMode::Plane(p) => format!("plane:{p}"),
    };
    // Keywords are checked by the config: A-Z, 0-9, `-` and `_`, never a comma; a HIERARCH
    // one has spaces, sent as \u{1} as an EXTNAME's are.
    format!("{hdu} {cube} {max_pixels} {}\n", keywords.join(",").replace(' ', "\u{1}"))
}

fn decode_settings(line: &str) -> Option<(FitsSettings, Vec<String>, u64)> {
    let mut parts = line.trim_end_matches('\n').split(' ');
    let (hdu, cube, max_pixels, keywords) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let keywords = keywords.split(',').filter(|k| !k.is_empty()).map(|k| k.replace('\u{1}', " ")).collect();
    let hdu = match hdu.split_once(':') {
        None if hdu == "auto" => HduChoice::Auto,
        Some(("index", i)) => HduChoice::Index(i.parse().ok()?),
        Some(("name", n)) => HduChoice::Name(n.replace('\u{1}', " ")),
        _ => return None,
    };
    let cube = match cube.split_once(':') {
        None if cube == "peak" => CubeMode::Peak,
        None if cube == "sum" => CubeMode::Sum,
        Some(("plane", p)) => CubeMode::Plane(p.parse().ok()?),
        _ => return None,
    };
    Some((FitsSettings { hdu, cube }, keywords, max_pixels.parse().ok()?))
}

/// The child's side: answers requests on stdin until it closes. Returns the exit code.
pub fn child_main() -> i32 {
    use std::io::BufRead;
    let mut input = std::io::BufReader::with_capacity(1 << 20, std::io::stdin().lock());
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    loop {
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) => return 0,
            Ok(_) => {}
            Err(_) => return 3,
        }
        let Some((settings, keywords, max_pixels)) = decode_settings(&line) else { return 2 };
        let mut len = [0u8; 8];
        if input.read_exact(&mut len).is_err() {
            return 3;
        }
        let len = u64::from_le_bytes(len);
        let mut data = Vec::new();
        if !matches!((&mut input).take(len).read_to_end(&mut data), Ok(n) if n as u64 == len) {
            return 3;
        }
        // Fault injection for the test of the isolation itself: a crash on demand, since the
        // inputs that crash CFITSIO depend on the memory layout around its buffers.
        if std::env::var_os("SIMSITE_TEST_FITS_CHILD_CRASH").is_some() {
            std::process::abort();
        }
        let written = match read_with_cfitsio(&data, &data, &settings, &keywords, max_pixels) {
            Ok((r, header)) => (|| {
                out.write_all(b"OK")?;
                out.write_all(&(r.width as u64).to_le_bytes())?;
                out.write_all(&(r.height as u64).to_le_bytes())?;
                for chunk in r.data.chunks(1 << 16) {
                    let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
                    out.write_all(&bytes)?;
                }
                out.write_all(&(header.len() as u32).to_le_bytes())?;
                for (k, v) in &header {
                    let at = keywords.iter().position(|w| w == k).unwrap_or(usize::MAX) as u32;
                    out.write_all(&at.to_le_bytes())?;
                    out.write_all(&(v.len() as u32).to_le_bytes())?;
                    out.write_all(v.as_bytes())?;
                }
                out.flush()
            })(),
            Err(e) => {
                let msg = e.to_string();
                out.write_all(b"ER")
                    .and_then(|_| out.write_all(&(msg.len() as u32).to_le_bytes()))
                    .and_then(|_| out.write_all(msg.as_bytes()))
                    .and_then(|_| out.flush())
            }
        };
        if written.is_err() {
            return 4;
        }
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl Worker {
    fn start(exe: &std::path::Path) -> std::io::Result<Worker> {
        use std::process::Stdio;
        let mut child = std::process::Command::new(exe)
            .arg(CHILD_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let (stdin, stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
        Ok(Worker { child, stdin, stdout })
    }

    /// One file. `Err(None)`: the child is gone or wedged (the caller ends it).
    fn decode(&mut self, data: &[u8], settings: &FitsSettings, keywords: &[String], max_pixels: u64, file_bytes: usize) -> Result<(Raster, Header), Option<FileError>> {
        // The child reads a whole request before it answers, so writing first cannot deadlock.
        let sent = self.stdin.write_all(encode_settings(settings, keywords, max_pixels).as_bytes())
            .and_then(|_| self.stdin.write_all(&(data.len() as u64).to_le_bytes()))
            .and_then(|_| self.stdin.write_all(data))
            .and_then(|_| self.stdin.flush());
        sent.map_err(|_| None)?;
        let mut tag = [0u8; 2];
        self.stdout.read_exact(&mut tag).map_err(|_| None)?;
        if &tag == b"ER" {
            let mut len = [0u8; 4];
            self.stdout.read_exact(&mut len).map_err(|_| None)?;
            let mut msg = vec![0u8; u32::from_le_bytes(len) as usize];
            self.stdout.read_exact(&mut msg).map_err(|_| None)?;
            let msg = String::from_utf8_lossy(&msg);
            return Err(Some(FileError::Fits(msg.trim_start_matches("FITS: ").to_string())));
        }
        let mut dims = [0u8; 16];
        self.stdout.read_exact(&mut dims).map_err(|_| None)?;
        let w = u64::from_le_bytes(dims[..8].try_into().expect("8"));
        let h = u64::from_le_bytes(dims[8..].try_into().expect("8"));
        // The child checked the size against the same limit; a child that says otherwise is
        // not to be believed (`admit` checks again).
        let reservation = admit(w, h, max_pixels, file_bytes).map_err(|_| None)?;
        let mut raw = vec![0u8; (w * h * 4) as usize];
        self.stdout.read_exact(&mut raw).map_err(|_| None)?;
        let data = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let header = self.read_header(keywords)?;
        Ok((Raster { width: w as usize, height: h as usize, channels: 1, data, display_ready: false, reservation }, header))
    }

    /// The header values that follow the pixels of an answer. A child that CFITSIO may have
    /// let a crafted file take over is believed no more than the file: at most one value a
    /// keyword asked for, in the order asked, none longer than a clean value can be, and
    /// each cleaned again.
    fn read_header(&mut self, keywords: &[String]) -> Result<Header, Option<FileError>> {
        let mut word = [0u8; 4];
        let mut next = |stdout: &mut ChildStdout| -> Result<u32, Option<FileError>> {
            stdout.read_exact(&mut word).map_err(|_| None)?;
            Ok(u32::from_le_bytes(word))
        };
        let count = next(&mut self.stdout)? as usize;
        if count > keywords.len() {
            return Err(None);
        }
        let mut header = Header::with_capacity(count);
        let mut after = 0;
        for _ in 0..count {
            let at = next(&mut self.stdout)? as usize;
            let len = next(&mut self.stdout)? as usize;
            if at < after || at >= keywords.len() || len > MAX_VALUE_CHARS * 4 + 3 {
                return Err(None);
            }
            after = at + 1;
            let mut value = vec![0u8; len];
            self.stdout.read_exact(&mut value).map_err(|_| None)?;
            if let Some(v) = clean_value(&String::from_utf8_lossy(&value)) {
                header.push((keywords[at].clone(), v));
            }
        }
        Ok(header)
    }
}

fn isolated(exe: &std::path::Path, data: &[u8], settings: &FitsSettings, keywords: &[String], max_pixels: u64, file_bytes: usize) -> Result<(Raster, Header), FileError> {
    let failed = |what: String| FileError::Decode {
        format: "tile-compressed FITS",
        message: format!("{what}; it was decoded in a separate process, so only this file is skipped"),
    };
    let idle = IDLE.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut worker = match idle {
        Some(w) => w,
        None => Worker::start(exe).map_err(|e| failed(format!("cannot start the decoding process {}: {e}", exe.display())))?,
    };
    let pid = worker.child.id() as libc::pid_t;
    // The watchdog kills a child that hangs; it is told when the child has answered.
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::Builder::new().name("simsite-fits-watchdog".into()).spawn(move || {
        let timed_out = wait_done.recv_timeout(CHILD_TIMEOUT) == Err(std::sync::mpsc::RecvTimeoutError::Timeout);
        if timed_out {
            // SAFETY: signals our own child, which is not reaped before this thread is joined.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        timed_out
    });
    let watchdog = match watchdog {
        Ok(w) => w,
        Err(e) => {
            // The child is idle and well: kept for the next file.
            IDLE.lock().unwrap_or_else(|e| e.into_inner()).push(worker);
            return Err(failed(format!("cannot start a thread to watch the decoding process: {e} (the process's thread limit, ulimit -u?)")));
        }
    };
    let answer = worker.decode(data, settings, keywords, max_pixels, file_bytes);
    done.send(()).ok();
    let timed_out = watchdog.join().unwrap_or(false);
    match answer {
        Ok(r) if !timed_out => {
            IDLE.lock().unwrap_or_else(|e| e.into_inner()).push(worker);
            Ok(r)
        }
        Err(Some(e)) if !timed_out => {
            IDLE.lock().unwrap_or_else(|e| e.into_inner()).push(worker);
            Err(e)
        }
        _ => {
            // Gone, timed out (the watchdog killed it) or answering nonsense: closing both
            // pipes ends a live child (EOF on its input, EPIPE on its output), so the wait
            // is short and the status says what happened to it, not what we did.
            let Worker { mut child, stdin, stdout } = worker;
            drop((stdin, stdout));
            let status = child.wait();
            use std::os::unix::process::ExitStatusExt;
            Err(failed(match (timed_out, status) {
                (true, _) => format!("CFITSIO did not finish within {} s", CHILD_TIMEOUT.as_secs()),
                (false, Ok(s)) => match s.signal() {
                    Some(libc::SIGKILL) => "the decoding process was killed (signal 9; out of memory?)".to_string(),
                    Some(sig) => format!("CFITSIO crashed on this file (signal {sig})"),
                    None => format!("the decoding process gave no usable answer ({s})"),
                },
                (false, Err(e)) => format!("lost the decoding process: {e}"),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_lose_control_characters_and_are_cut() {
        assert_eq!(clean_value("  M51 \u{1b}[31mred\u{7}\n"), Some("M51 [31mred".to_string()));
        assert_eq!(clean_value(" \t\r\n"), None, "nothing left is no value");
        let long = "x".repeat(5000);
        let cut = clean_value(&long).unwrap();
        assert_eq!(cut.chars().count(), MAX_VALUE_CHARS);
        assert!(cut.ends_with('…'));
        let exact = "é".repeat(MAX_VALUE_CHARS);
        assert_eq!(clean_value(&exact).as_deref(), Some(exact.as_str()), "a value of the limit exactly is whole");
    }

    #[test]
    fn the_childs_settings_line_carries_the_keywords() {
        let s = FitsSettings { hdu: HduChoice::Name("SCI A".into()), cube: CubeMode::Plane(2) };
        let kw: Vec<String> = ["OBJECT", "DATE-OBS", "HIERARCH ESO INS FILT1 NAME"].map(String::from).to_vec();
        assert_eq!(decode_settings(&encode_settings(&s, &kw, 99)), Some((s.clone(), kw, 99)));
        assert_eq!(decode_settings(&encode_settings(&s, &[], 99)), Some((s, vec![], 99)));
    }
}
