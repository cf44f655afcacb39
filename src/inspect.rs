//! `simsite inspect FILE`: how one file decodes and what the encoder would see, for a user
//! wondering why an image looks black, and for the Python/Rust preprocessing parity test
//! (`--tensor` writes the encoder input as a NumPy `.npy` file).

use std::path::Path;

use anyhow::{Context, Result};

use crate::config::{PreprocessSettings, Settings};
use crate::decode;
use crate::preprocess::{self, Clip, Prepared};
use crate::scan;
use crate::ui::Ui;

/// What `inspect` found.
#[derive(Debug)]
pub struct Inspection {
    pub format: &'static str,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub display_ready: bool,
    pub clip: Clip,
    pub prepared: Prepared,
    pub size: u32,
    pub model_channels: u32,
    /// For a FITS file: the HDU read, its axes and the `[fits] keywords` found.
    pub header: Option<decode::FitsHeader>,
}

/// Inspects one file with a site's settings, following its encoder's input contract when
/// one is configured (so the tensor is what that model gets).
pub fn inspect_with(path: &Path, settings: &Settings, ui: &Ui) -> Result<Inspection> {
    let mut settings = settings.clone();
    crate::pipeline::load_encoder(&mut settings, ui)?;
    inspect(path, &settings.preprocess, settings.thumbs.size, &settings.header_fields)
}

/// Inspects one file; for a FITS file, also reads the header `keywords` a build would show.
pub fn inspect(path: &Path, s: &PreprocessSettings, thumb_size: u32, keywords: &[String]) -> Result<Inspection> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A name's control characters are printed escaped, as by the other commands.
    let shown = crate::ui::printable(&path.to_string_lossy()).into_owned();
    let (format, _) = scan::classify(&name)
        .with_context(|| format!("{shown} is not an image simsite reads (.fits/.fit/.fts[.gz|.fz], .png, .jpg/.jpeg, .tif/.tiff)"))?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {shown}"))?;
    let fail = |e: crate::error::FileError| anyhow::anyhow!("{shown}: {e}");
    let raster = decode::decode(&bytes, format, s).map_err(fail)?;
    let clip = preprocess::clip_limits(&raster, s).map_err(fail)?;
    let prepared = preprocess::prepare(&raster, s, thumb_size).map_err(fail)?;
    // The header is read again on its own (from memory, no pixel): a build reads it while
    // decoding, but only its values, and here the HDU and axes are worth showing too.
    let header = match format {
        scan::Format::Fits => Some(decode::fits_header(&bytes, s, keywords).map_err(fail)?),
        _ => None,
    };
    Ok(Inspection {
        format: format.name(),
        width: raster.width,
        height: raster.height,
        channels: raster.channels,
        display_ready: raster.display_ready,
        clip,
        prepared,
        size: s.size,
        model_channels: s.model_channels,
        header,
    })
}

impl Inspection {
    /// A few lines for a person.
    pub fn describe(&self) -> String {
        let c = &self.clip;
        let total = self.width * self.height * self.channels;
        // Values were cleaned of control characters when read: safe on a terminal.
        let fits = match &self.header {
            None => String::new(),
            Some(h) => {
                let values: Vec<String> = h.values.iter().filter(|(k, _)| !crate::wcs::is_sky(k)).map(|(k, v)| format!("\n  {k} = {v}")).collect();
                let keywords = match values.is_empty() {
                    true => "header keywords: none of [fits] keywords found".to_string(),
                    false => format!("header keywords (from that HDU, else the primary HDU):{}", values.concat()),
                };
                // What a build does with the position is `[fits] position`'s to say; the
                // header says it either way.
                let position = match &h.position {
                    Ok(Some(p)) => {
                        let (ra, dec) = crate::wcs::decimal(p.ra, p.dec);
                        format!(
                            "{} (RA {ra}, Dec {dec}, degrees, ICRS): the centre, from that HDU's WCS{}",
                            crate::wcs::sexagesimal(p.ra, p.dec),
                            p.fov.map(|f| format!("; {}° across", crate::wcs::fov_text(f))).unwrap_or_default()
                        )
                    }
                    Ok(None) => "none (that HDU has no celestial WCS)".to_string(),
                    Err(why) => format!("none: {why}"),
                };
                format!("\nimage: {}, axes {:?} (NAXIS1 first)\n{keywords}\nsky: {position}", h.hdu, h.axes)
            }
        };
        format!(
            "format: {}{fits}\nsize: {} x {} pixels, {} band(s){}\nfinite pixels: {} of {} ({:.1} %)\nstretch: {} between {} and {} (masked pixels filled with {})\nencoder input: {} x {} x {}, mean {:.4}",
            self.format,
            self.width,
            self.height,
            self.channels,
            if self.display_ready { ", 8-bit (already display-stretched)" } else { "" },
            c.finite,
            total,
            100.0 * c.finite as f64 / total.max(1) as f64,
            c.stretch.name(),
            c.lo,
            c.hi,
            c.fill,
            self.model_channels,
            self.size,
            self.size,
            self.prepared.tensor.iter().map(|&v| v as f64).sum::<f64>() / self.prepared.tensor.len().max(1) as f64,
        )
    }

    /// The encoder input as a NumPy `.npy` (little-endian float32, shape `(C, S, S)`).
    pub fn tensor_npy(&self) -> Vec<u8> {
        npy_f32(&self.prepared.tensor, &[self.model_channels as usize, self.size as usize, self.size as usize])
    }
}

/// NumPy's `.npy` format, version 1.0, C order.
pub fn npy_f32(data: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_describes_the_array() {
        let b = npy_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 2, 3]);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (1, 2, 3)"), "{header}");
        assert_eq!(b.len(), 10 + hlen + 24);
        assert_eq!(f32::from_le_bytes(b[10 + hlen + 20..].try_into().unwrap()), 6.0);
    }
}
