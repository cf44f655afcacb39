//! Thumbnails: JPEG, cached in the cache folder under a key made of the file's content
//! digest and every setting that changes the thumbnail, so each is made once per content
//! and a changed stretch can never serve a stale one.

use std::path::{Path, PathBuf};

use crate::config::{PreprocessSettings, ThumbSettings};
use crate::preprocess::Thumb;

pub fn cache_key(content: &blake3::Hash, pp: &PreprocessSettings, ts: &ThumbSettings) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"simsite-thumb-v1");
    h.update(content.as_bytes());
    h.update(pp.display_digest().as_bytes());
    h.update(&ts.size.to_le_bytes());
    h.update(&[ts.quality]);
    h.finalize()
}

pub fn cache_path(cache_dir: &Path, key: &blake3::Hash) -> PathBuf {
    let hex = key.to_hex();
    cache_dir.join("thumbs").join(&hex[..2]).join(format!("{hex}.jpg"))
}

/// JPEG through `jpeg-encoder`, whose SIMD DCT lifted the embed stage from 0.72 to 0.80 of
/// raw ORT throughput (BENCHMARKS.md) over `image`'s encoder.
pub fn encode_jpeg(t: &Thumb, quality: u8) -> Result<Vec<u8>, jpeg_encoder::EncodingError> {
    let mut out = Vec::new();
    let color = if t.channels == 3 { jpeg_encoder::ColorType::Rgb } else { jpeg_encoder::ColorType::Luma };
    let (w, h) = (t.width as u16, t.height as u16);
    jpeg_encoder::Encoder::new(&mut out, quality).encode(&t.pixels, w, h, color)?;
    Ok(out)
}
