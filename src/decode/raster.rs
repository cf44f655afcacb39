//! PNG and JPEG through the `image` crate, TIFF through the `tiff` crate (which, unlike
//! `image`, reads single-band float and 32-bit integer TIFF as scientific cameras write it).

use std::io::Cursor;

use super::{admit, Raster};
use crate::error::FileError;
use crate::scan::Format;

fn planar_from_interleaved<T: Copy>(src: &[T], samples: usize, keep: usize, to_f32: impl Fn(T) -> f32) -> Vec<f32> {
    let n = src.len() / samples;
    let mut out = vec![0f32; n * keep];
    for c in 0..keep {
        let plane = &mut out[c * n..(c + 1) * n];
        for (i, px) in plane.iter_mut().enumerate() {
            *px = to_f32(src[i * samples + c]);
        }
    }
    out
}

/// What a PNG's or JPEG's metadata (colour profile, text) may inflate to; a profile over
/// it is ignored, the image decoded without it.
const HEADER_BYTES: u64 = 16 << 20;

pub(super) fn decode_image(bytes: &[u8], format: Format, max_pixels: u64) -> Result<Raster, FileError> {
    let (fmt, name) = match format {
        Format::Png => (image::ImageFormat::Png, "PNG"),
        _ => (image::ImageFormat::Jpeg, "JPEG"),
    };
    let err = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => FileError::Decode { format: name, message: format!("over the decoder's memory limit ({l})") },
        other => FileError::Decode { format: name, message: other.to_string() },
    };
    // The header's chunks are read to find the size: a colour profile or text chunk is
    // inflated then, up to this bound (the `image` crate's default is 512 MB), and a 200 KB
    // PNG could make a decoding thread take that much memory outside the decoding budget.
    let mut header = image::ImageReader::with_format(Cursor::new(bytes), fmt);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(HEADER_BYTES);
    header.limits(limits);
    let (w, h) = header.into_dimensions().map_err(err)?;
    if format != Format::Png && !jpeg_ends(bytes) {
        // The decoder would fill the missing part with grey and call the image good.
        return Err(FileError::Decode { format: name, message: "truncated: its image data has no end (no end-of-image marker)".into() });
    }
    let reservation = admit(w as u64, h as u64, max_pixels, bytes.len())?;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), fmt);
    let mut limits = image::Limits::default();
    // The largest buffer the decoder may need: 4 channels of 32-bit samples, plus slack.
    limits.max_alloc = Some((w as u64 * h as u64).saturating_mul(16).saturating_add(HEADER_BYTES));
    reader.limits(limits);
    // Cameras (and phones) store a turned picture with an EXIF orientation: shown upright.
    let mut decoder = reader.into_decoder().map_err(err)?;
    let orientation = image::ImageDecoder::orientation(&mut decoder).unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(err)?;
    img.apply_orientation(orientation);
    use image::DynamicImage as D;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (channels, data, display_ready) = match img {
        D::ImageLuma8(b) => (1, b.into_raw().into_iter().map(f32::from).collect(), true),
        D::ImageLumaA8(b) => (1, planar_from_interleaved(b.as_raw(), 2, 1, f32::from), true),
        D::ImageLuma16(b) => (1, b.into_raw().into_iter().map(f32::from).collect(), false),
        D::ImageLumaA16(b) => (1, planar_from_interleaved(b.as_raw(), 2, 1, f32::from), false),
        D::ImageRgb8(b) => (3, planar_from_interleaved(b.as_raw(), 3, 3, f32::from), true),
        D::ImageRgba8(b) => (3, planar_from_interleaved(b.as_raw(), 4, 3, f32::from), true),
        D::ImageRgb16(b) => (3, planar_from_interleaved(b.as_raw(), 3, 3, f32::from), false),
        D::ImageRgba16(b) => (3, planar_from_interleaved(b.as_raw(), 4, 3, f32::from), false),
        D::ImageRgb32F(b) => (3, planar_from_interleaved(b.as_raw(), 3, 3, |v| v), false),
        D::ImageRgba32F(b) => (3, planar_from_interleaved(b.as_raw(), 4, 3, |v| v), false),
        other => {
            let b = other.to_rgb32f();
            (3, planar_from_interleaved(b.as_raw(), 3, 3, |v| v), false)
        }
    };
    Ok(Raster { width: w, height: h, channels, data, display_ready, reservation })
}

/// Whether a JPEG's image data runs to its end-of-image marker. The header segments are
/// walked to the first scan (an embedded thumbnail's own marker lies before it); inside the
/// entropy-coded data a 0xFF byte is always stuffed or starts a marker, so the pair FF D9
/// after it is the end of the image. Files that are not laid out like a JPEG are left to
/// the decoder to refuse.
fn jpeg_ends(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return true;
    }
    let mut i = 2;
    loop {
        if bytes.get(i) != Some(&0xFF) {
            return true;
        }
        while bytes.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else { return false };
        i += 1;
        match marker {
            0x01 | 0xD0..=0xD8 => {}
            0xD9 => return true,
            0xDA => return bytes[i..].windows(2).rev().any(|w| w == [0xFF, 0xD9]),
            _ => match bytes.get(i..i + 2) {
                Some(l) => i += u16::from_be_bytes([l[0], l[1]]) as usize,
                None => return false,
            },
        }
    }
}

pub(super) fn decode_tiff(bytes: &[u8], max_pixels: u64) -> Result<Raster, FileError> {
    use tiff::decoder::{Decoder, DecodingResult as R, Limits};
    use tiff::ColorType as C;
    let err = |e: tiff::TiffError| FileError::Decode { format: "TIFF", message: e.to_string() };
    let mut dec = Decoder::new(Cursor::new(bytes)).map_err(err)?;
    let (w, h) = dec.dimensions().map_err(err)?;
    let reservation = admit(w as u64, h as u64, max_pixels, bytes.len())?;
    let color = dec.colortype().map_err(err)?;
    let (samples, keep) = match color {
        C::Gray(_) => (1, 1),
        C::GrayA(_) => (2, 1),
        C::RGB(_) => (3, 3),
        C::RGBA(_) => (4, 3),
        C::Multiband { num_samples, .. } => (num_samples as usize, 1),
        other => return Err(FileError::Unsupported(format!("TIFF colour type {other:?}"))),
    };
    let mut limits = Limits::default();
    limits.decoding_buffer_size = ((w as usize).saturating_mul(h as usize)).saturating_mul(samples * 8).max(1 << 20);
    let mut dec = dec.with_limits(limits);
    // How the stored rows are to be viewed (TIFF's Orientation, EXIF's numbering); absent: 1.
    let orientation = dec.get_tag_u32(tiff::tags::Tag::Orientation).unwrap_or(1);
    let result = dec.read_image().map_err(err)?;
    let expected = w as usize * h as usize * samples;
    let (data, display_ready) = match &result {
        R::U8(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, f32::from), true),
        R::U16(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, f32::from), false),
        R::U32(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, |x| x as f32), false),
        R::U64(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, |x| x as f32), false),
        R::I8(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, f32::from), false),
        R::I16(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, f32::from), false),
        R::I32(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, |x| x as f32), false),
        R::I64(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, |x| x as f32), false),
        R::F16(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, |x| x.to_f32()), false),
        R::F32(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, |x| x), false),
        R::F64(v) if v.len() >= expected => (planar_from_interleaved(&v[..expected], samples, keep, |x| x as f32), false),
        _ => return Err(FileError::Decode { format: "TIFF", message: "fewer samples than the header declares".into() }),
    };
    let (data, width, height) = orient(data, w as usize, h as usize, keep, orientation);
    Ok(Raster { width, height, channels: keep, data, display_ready, reservation })
}

/// Planar bands of `w` × `h` stored with the TIFF/EXIF orientation `o`, turned to be viewed
/// upright: (bands, width, height). 1 (or an unknown value) leaves them as they are.
fn orient(data: Vec<f32>, w: usize, h: usize, channels: usize, o: u32) -> (Vec<f32>, usize, usize) {
    if !(2..=8).contains(&o) {
        return (data, w, h);
    }
    let (ow, oh) = if o >= 5 { (h, w) } else { (w, h) };
    // For each pixel of the upright view, the stored pixel it shows.
    let from = |ox: usize, oy: usize| -> (usize, usize) {
        match o {
            2 => (w - 1 - ox, oy),
            3 => (w - 1 - ox, h - 1 - oy),
            4 => (ox, h - 1 - oy),
            5 => (oy, ox),
            6 => (oy, h - 1 - ox),
            7 => (w - 1 - oy, h - 1 - ox),
            _ => (w - 1 - oy, ox),
        }
    };
    let mut out = Vec::with_capacity(data.len());
    for c in 0..channels {
        let band = &data[c * w * h..(c + 1) * w * h];
        for oy in 0..oh {
            for ox in 0..ow {
                let (ix, iy) = from(ox, oy);
                out.push(band[iy * w + ix]);
            }
        }
    }
    (out, ow, oh)
}
