//! Command-line arguments (clap), turned into resolved settings before any stage runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

#[derive(Debug, Parser)]
#[command(name = "simsite", version, about = "Turn an archive of astronomical images into a static website of similar images and a map of the whole collection.")]
pub struct Cli {
    /// No progress or stage lines, e.g. from cron: only warnings, errors and the result (the
    /// line saying what was published or written).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build (or rebuild) the site. Exit 0 when the site was published, even if some input
    /// files were skipped (they are listed in the build report); 1 when nothing was published.
    Build(BuildArgs),
    /// Validate the config, the catalogue and every archive file without writing anything.
    /// Exit 0 when all is well, 2 when some files would be skipped, 1 on a fatal error.
    Check(SiteArgs),
    /// Embed the archive (or one shard of it) into the cache without publishing, so many
    /// machines can share the work (Slurm array jobs, Kubernetes Indexed Jobs): run
    /// `embed --shard i/N` for i = 0..N-1 on a shared cache folder, then one `build`.
    Embed {
        #[command(flatten)]
        site: SiteArgs,
        /// This process's part of the archive, i/N (0 <= i < N); default: all of it.
        #[arg(long, value_name = "i/N", value_parser = parse_shard)]
        shard: Option<crate::pipeline::Shard>,
    },
    /// Measure the encoder against labels: precision@k, kNN accuracy (k=20) and twin
    /// recall, beside a raw-pixel PCA baseline. Prints a table, writes JSON (--json) and,
    /// unless --no-page, api/eval.json and eval/index.html into the site.
    Eval(EvalArgs),
    /// Serve the built site on loopback to look at it before publishing (Ctrl-C stops).
    Serve {
        /// The config the site was built with [default: ./site-config.toml if it exists].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The built site (overrides [output] dir).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Port (0: any free one).
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Address to listen on; other than loopback exposes the site to the network.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
    },
    /// Find the items of a built site most similar to images that are not in it: each is
    /// embedded with the site's model and compared with every item. Exit 0 when every
    /// image was answered, 2 when some could not be read, 1 on a fatal error.
    Query {
        /// The image files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The config the site was built with [default: ./site-config.toml if it exists].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The built site (overrides [output] dir).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// How many items to list per image.
        #[arg(short, long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
        k: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show how one file decodes (size, bands, finite pixels, stretch and clip limits) and
    /// what the encoder gets; --tensor writes that input as a NumPy .npy file.
    Inspect {
        /// The image file.
        file: PathBuf,
        /// The config file [default: ./site-config.toml if it exists, else built-in defaults].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Write the encoder input (float32, channels x size x size) here as .npy.
        #[arg(long, value_name = "FILE")]
        tensor: Option<PathBuf>,
    },
    /// Write a documented site-config.toml listing every key with its default.
    Init {
        /// Where to write it.
        #[arg(default_value = "site-config.toml")]
        path: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct SiteArgs {
    /// The config file [default: ./site-config.toml if it exists, else built-in defaults].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The archive folder (overrides [archive] root).
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
    /// The output folder (overrides [output] dir).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The cache folder (overrides [output] cache).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

impl SiteArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides { archive: self.archive.clone(), out: self.out.clone(), cache: self.cache.clone(), allow_removals: false, no_archive: false }
    }
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub site: SiteArgs,
    /// Publish even when more of the served site's items are missing from the archive than
    /// [output] max-removed allows (for a night when many images were really removed).
    #[arg(long)]
    pub allow_removals: bool,
}

fn parse_shard(s: &str) -> Result<crate::pipeline::Shard, String> {
    crate::pipeline::Shard::parse(s)
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub site: SiteArgs,
    /// CSV with the columns path,label[,twin_of]; paths relative to the archive root,
    /// twin_of naming the original of a transformed copy.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Neighbours counted by precision@k and twin recall@k.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Do not write api/eval.json and eval/index.html into the site's output folder.
    #[arg(long)]
    pub no_page: bool,
}

impl EvalArgs {
    pub fn options(&self) -> crate::eval::EvalOptions {
        crate::eval::EvalOptions { labels: self.labels.clone(), k: self.k as usize, json: self.json.clone(), page: !self.no_page }
    }
}
