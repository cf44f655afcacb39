//! Shared by the benchmarks: raw ONNX Runtime throughput of the build's own encoder on
//! pre-decoded tensors (decoding is not timed), the yardstick for the embed stage.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;
use simsite::config::{self, Overrides, RawConfig, Settings};
use simsite::encoder::{Encoder, EncoderSettings};

/// Build settings for `archive` with the encoder `es` adopted (scratch folders under `work`).
pub fn settings(archive: &Path, work: &Path, es: &EncoderSettings, enc: &Encoder) -> Result<Settings> {
    let overrides =
        Overrides { archive: Some(archive.to_path_buf()), out: Some(work.join("out")), cache: Some(work.join("cache")) };
    let mut settings = config::resolve(RawConfig::default(), None, work, &overrides)?;
    settings.encoder = Some(es.clone());
    settings.adopt_encoder(&enc.spec).map_err(anyhow::Error::msg)?;
    Ok(settings)
}

/// The encoder inputs of up to `limit` images of `archive`, decoded and preprocessed as
/// the build does, in parallel. Returns the tensors and how many images they hold.
pub fn decode_tensors(archive: &Path, settings: &Settings, enc: &Encoder, limit: usize) -> Result<(Vec<f32>, usize)> {
    let scan = simsite::scan::scan(archive, false)?;
    let tensors: Vec<f32> = scan.entries[..scan.entries.len().min(limit)]
        .par_iter()
        .filter_map(|e| {
            let bytes = std::fs::read(&e.abs).ok()?;
            let r = simsite::decode::decode(&bytes, e.format, &settings.preprocess).ok()?;
            simsite::preprocess::prepare(&r, &settings.preprocess, 128).ok().map(|p| p.tensor)
        })
        .flatten()
        .collect();
    let n = tensors.len() / enc.image_len();
    Ok((tensors, n))
}

/// Images per second of `Encoder::embed` alone over `n` pre-decoded images.
pub fn raw_rate(enc: &mut Encoder, tensors: &[f32], n: usize) -> Result<f64> {
    let t = Instant::now();
    let out = enc.embed(tensors, n)?;
    assert_eq!(out.len(), n * enc.spec.dim);
    Ok(n as f64 / t.elapsed().as_secs_f64())
}
