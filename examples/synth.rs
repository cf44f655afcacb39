//! Writes a synthetic labelled archive (see `simsite::synth`) for scale and quality tests.
//!
//! cargo run --release --example synth -- --n 100000 [--seed 1] [--size 64] [--twins 0.1]
//!     [--artefacts 0.02] [--formats fits,png,jpeg] [--labels FILE] DIR

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use simsite::synth::{generate, Format, SynthOptions};

#[derive(Parser)]
#[command(about = "Write a synthetic labelled archive of galaxy-like images")]
struct Args {
    /// Number of base images (twins come on top).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Image width and height in pixels.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Fraction of base images that also get a rotated/flipped/shifted twin.
    #[arg(long, default_value_t = 0.0)]
    twins: f64,
    /// Fraction of base images that are artefacts.
    #[arg(long, default_value_t = 0.02)]
    artefacts: f64,
    /// Comma-separated formats to draw from.
    #[arg(long, value_delimiter = ',', default_value = "fits,png,jpeg")]
    formats: Vec<Format>,
    /// Labels CSV; defaults to `<DIR>.labels.csv` beside DIR (never inside it).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Archive folder to create (must be missing or empty).
    dir: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let labels = args.labels.clone().unwrap_or_else(|| {
        let mut name = args
            .dir
            .file_name()
            .unwrap_or("archive".as_ref())
            .to_os_string();
        name.push(".labels.csv");
        args.dir.with_file_name(name)
    });
    let opts = SynthOptions {
        n: args.n,
        seed: args.seed,
        size: args.size,
        twins: args.twins,
        artefact_rate: args.artefacts,
        formats: args.formats,
    };
    let start = Instant::now();
    let summary = generate(&args.dir, &labels, &opts)?;
    let secs = start.elapsed().as_secs_f64();
    print!("{summary}");
    let files = summary.images + summary.twins;
    println!("archive: {}", args.dir.display());
    println!("labels:  {}", labels.display());
    println!(
        "elapsed: {secs:.2} s ({:.0} files/s on {} threads)",
        files as f64 / secs,
        rayon::current_num_threads()
    );
    Ok(())
}
