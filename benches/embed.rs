//! Embed-stage throughput against raw ONNX Runtime, same model, same library, same machine,
//! one run (the machines are shared and noisy, so only the ratio means much).
//!
//! raw ORT:     images decoded and preprocessed beforehand (not timed), then only
//!              `Encoder::embed` over them, in the build's batch size.
//! embed stage: a cold `simsite build` (empty cache): read, hash, decode, stretch, resize,
//!              thumbnail, and embed, decoding concurrently with inference.
//!
//! cargo bench --bench embed -- [--n 5000] [--model tests/fixtures/bench-cnn.onnx] [--archive DIR] [--rounds 2] [--device auto|cpu|cuda]

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use simsite::encoder::{Encoder, EncoderSettings};

#[path = "common/mod.rs"]
mod common;

#[derive(Parser)]
struct Args {
    /// Synthetic images to generate when no --archive is given.
    #[arg(long, default_value_t = 5000)]
    n: usize,
    #[arg(long)]
    archive: Option<PathBuf>,
    #[arg(long, default_value = "tests/fixtures/bench-cnn.onnx")]
    model: PathBuf,
    /// Alternating rounds of both measurements.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    #[arg(long)]
    batch: Option<usize>,
    /// auto, cpu or cuda (as `device` under [encoder]).
    #[arg(long, default_value = "auto")]
    device: String,
    /// cargo bench passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let work = tempfile::tempdir()?;
    let archive = match &args.archive {
        Some(a) => a.clone(),
        None => {
            let dir = work.path().join("archive");
            let opts = simsite::synth::SynthOptions { n: args.n, ..Default::default() };
            simsite::synth::generate(&dir, &work.path().join("labels.csv"), &opts)?;
            dir
        }
    };
    let model = std::fs::canonicalize(&args.model).with_context(|| format!("model {}", args.model.display()))?;
    use simsite::encoder::Device;
    let device = match args.device.as_str() {
        "auto" => Device::Auto,
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda,
        other => anyhow::bail!("--device {other}: expected auto, cpu or cuda"),
    };
    let es = EncoderSettings { model: model.clone(), batch: args.batch, device: Some(device), ..Default::default() };
    let mut enc = Encoder::load(&es)?;
    let settings = common::settings(&archive, work.path(), &es, &enc)?;

    // Pre-decode for the raw measurement.
    let (tensors, n) = common::decode_tensors(&archive, &settings, &enc, usize::MAX)?;
    println!(
        "model {} ({}), {} images {}x{}, batch {}, {} threads, device {}",
        enc.spec.name,
        model.display(),
        n,
        enc.spec.size,
        enc.spec.size,
        enc.spec.batch,
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1),
        enc.device
    );
    let ui = simsite::ui::Ui::new(true);
    let (mut raw_best, mut stage_best) = (0f64, 0f64);
    for round in 1..=args.rounds {
        let raw_both = common::raw_rate(&mut enc, &tensors, n)?;
        let raw = raw_both.best();

        // Each round builds into folders of its own, all removed at the end: this VM's ext4
        // has no journal, and there a file made just after many were deleted costs a scan
        // past every recently freed inode, which would be timed here as embedding.
        let round_dir = work.path().join(format!("round-{round}"));
        let mut settings = settings.clone();
        settings.cache = round_dir.join("cache");
        settings.out = round_dir.join("out");
        let o = simsite::pipeline::build(&settings, &ui)?;
        let stage = o.report.stages.iter().find(|s| s.name == "decode+embed").context("no embed stage")?;
        let staged = o.report.embedded as f64 / stage.seconds;
        println!(
            "round {round}: raw ORT {raw_both} | embed stage {staged:.0} img/s ({} images in {:.2} s, inference {:.2} s) | stage/raw {:.2}",
            o.report.embedded,
            stage.seconds,
            o.report.stages.iter().find(|s| s.name == "inference").map(|s| s.seconds).unwrap_or(0.0),
            staged / raw
        );
        raw_best = raw_best.max(raw);
        stage_best = stage_best.max(staged);
    }
    println!("best: raw ORT {raw_best:.0} img/s, embed stage {stage_best:.0} img/s, ratio {:.2}", stage_best / raw_best);
    Ok(())
}

