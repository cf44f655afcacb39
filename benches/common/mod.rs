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
        Overrides { archive: Some(archive.to_path_buf()), out: Some(work.join("out")), cache: Some(work.join("cache")), ..Default::default() };
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

/// Raw throughput of one configuration, in images per second.
pub struct Raw {
    /// One session using all its threads on each batch.
    pub one_session: f64,
    /// One single-threaded session per thread, batches side by side (what the build runs
    /// on CPU: `Encoder::cpu_workers`); `None` on CUDA or with one thread.
    pub side_by_side: Option<f64>,
}

impl Raw {
    /// The better of the two: the yardstick for the embed stage.
    pub fn best(&self) -> f64 {
        self.one_session.max(self.side_by_side.unwrap_or(0.0))
    }
}

impl std::fmt::Display for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} img/s (one session {:.0}", self.best(), self.one_session)?;
        if let Some(s) = self.side_by_side {
            write!(f, ", single-threaded sessions side by side {s:.0}")?;
        }
        write!(f, ")")
    }
}

/// Images per second of `Encoder::embed` alone over `n` pre-decoded images (in the
/// build's batch size), both ways ONNX Runtime can use the threads.
pub fn raw_rate(enc: &mut Encoder, tensors: &[f32], n: usize) -> Result<Raw> {
    let t = Instant::now();
    let out = enc.embed(tensors, n)?;
    assert_eq!(out.len(), n * enc.spec.dim);
    let one_session = n as f64 / t.elapsed().as_secs_f64();
    let side_by_side = match enc.cpu_workers() {
        Some(replicas) => {
            let mut workers = replicas.iter().map(|r| r.load()).collect::<Result<Vec<_>, _>>()?;
            let (per, batch, k) = (enc.image_len(), enc.spec.batch, workers.len());
            let batches: Vec<&[f32]> = tensors[..n * per].chunks(batch * per).collect();
            let t = Instant::now();
            std::thread::scope(|s| -> Result<()> {
                let handles: Vec<_> = workers
                    .iter_mut()
                    .enumerate()
                    .map(|(w, e)| {
                        let mine: Vec<&[f32]> = batches.iter().skip(w).step_by(k).copied().collect();
                        s.spawn(move || -> Result<()> {
                            for b in mine {
                                e.embed(b, b.len() / per)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().expect("an inference thread panicked")?;
                }
                Ok(())
            })?;
            Some(n as f64 / t.elapsed().as_secs_f64())
        }
        None => None,
    };
    Ok(Raw { one_session, side_by_side })
}
