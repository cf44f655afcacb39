//! Decoding archive files into floating-point rasters.
//!
//! Every format ends as the same [`Raster`]: planar `f32`, row 0 at the top of the image as
//! an astronomer views it (FITS rows are flipped, since FITS puts its origin bottom-left),
//! masked pixels as NaN, and the original dynamic range kept (16-bit and float data are not
//! squeezed to 8 bits). Image sizes are checked against the pixel limit from the header,
//! before any pixel buffer is allocated.

pub mod budget;
mod fits;
pub use fits::{child_main as fits_child_main, clean_value, is_tile_compressed, isolate_compressed_with, HeaderRead as FitsHeader, CHILD_ARG as FITS_CHILD_ARG, MAX_VALUE_CHARS};
mod raster;

use crate::config::PreprocessSettings;
use crate::error::FileError;
use crate::scan::Format;

/// Values of FITS header keywords (`[fits] keywords`), as (keyword, value) in the order the
/// keywords were asked for; those the header lacks are left out.
pub type Header = Vec<(String, String)>;

/// A number as a FITS header may write it: Rust's float syntax, or a Fortran `D` exponent
/// (`6.0D+02`). Not finite (`NaN`, `inf`) is left to the caller.
pub fn fits_number(text: &str) -> Option<f64> {
    text.parse().ok().or_else(|| text.contains(['D', 'd']).then(|| text.replace(['D', 'd'], "E").parse().ok()).flatten())
}

#[derive(Debug, Clone)]
pub struct Raster {
    pub width: usize,
    pub height: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// `channels` planes of `width * height`, row-major, top row first.
    pub data: Vec<f32>,
    /// True for 8-bit sources, which are already display-stretched (JPEG, 8-bit PNG/TIFF).
    pub display_ready: bool,
    /// This image's share of the decode memory budget, held until the raster is dropped.
    pub reservation: budget::Reservation,
}

impl Raster {
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.width * self.height;
        &self.data[c * n..(c + 1) * n]
    }
}

/// Refuses an image whose header claims more pixels than allowed, before allocating; else
/// reserves its decoding memory (see [`budget`]), waiting while other decodes hold it.
pub(crate) fn admit(width: u64, height: u64, limit: u64, file_bytes: usize) -> Result<budget::Reservation, FileError> {
    check_pixels(width, height, limit)?;
    let peak = (width * height).saturating_mul(budget::PEAK_BYTES_PER_PIXEL).saturating_add(file_bytes as u64);
    Ok(budget::reserve(peak))
}

fn check_pixels(width: u64, height: u64, limit: u64) -> Result<(), FileError> {
    let pixels = width.saturating_mul(height);
    if width == 0 || height == 0 {
        return Err(FileError::NoImage(format!("image is {width}x{height}")));
    }
    if pixels > limit {
        return Err(FileError::TooManyPixels { width, height, pixels, limit });
    }
    Ok(())
}

/// Decodes one file from its content (already read once, for its digest).
pub fn decode(bytes: &[u8], format: Format, settings: &PreprocessSettings) -> Result<Raster, FileError> {
    decode_with_header(bytes, format, settings, &[]).map(|(r, _)| r)
}

/// [`decode`], and for a FITS file the values of the header `keywords` of its image (its
/// HDU's, else the primary HDU's), read while the file is open for its pixels. Other
/// formats have no header: theirs is empty.
pub fn decode_with_header(bytes: &[u8], format: Format, settings: &PreprocessSettings, keywords: &[String]) -> Result<(Raster, Header), FileError> {
    if bytes.is_empty() {
        return Err(FileError::Empty);
    }
    let picture = |r: Raster| (r, Header::new());
    match format {
        Format::Fits => fits::decode(bytes, &settings.fits, keywords, settings.max_pixels, settings.max_file_bytes),
        Format::Png | Format::Jpeg => raster::decode_image(bytes, format, settings.max_pixels).map(picture),
        Format::Tiff => raster::decode_tiff(bytes, settings.max_pixels).map(picture),
    }
}

/// A FITS file's header alone, no pixel read: the HDU the image is read from, its axes and
/// the values of `keywords` (see [`decode_with_header`]).
pub fn fits_header(bytes: &[u8], settings: &PreprocessSettings, keywords: &[String]) -> Result<FitsHeader, FileError> {
    if bytes.is_empty() {
        return Err(FileError::Empty);
    }
    fits::header(bytes, &settings.fits, keywords, settings.max_file_bytes)
}
