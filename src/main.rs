use std::process::ExitCode;

use clap::Parser;
use simsite::cli::{Cli, Command};
use simsite::{config, pipeline, ui::Ui};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ui = Ui::new(cli.quiet);
    match run(cli.command, &ui) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, ui: &Ui) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(args) => {
            let settings = config::load(args.config.as_deref(), &args.overrides())?;
            let outcome = pipeline::build(&settings, ui)?;
            let r = &outcome.report;
            eprintln!(
                "published {} item(s) to {} ({} skipped); report: {}",
                r.items,
                settings.out.display(),
                r.skipped,
                outcome.report_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let settings = config::load(args.config.as_deref(), &args.overrides())?;
            let outcome = pipeline::check(&settings, ui)?;
            for p in &outcome.problems {
                println!("{}: {}", p.path, p.reason);
            }
            eprintln!("{} file(s) ok, {} would be skipped", outcome.items, outcome.problems.len());
            Ok(if outcome.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Embed { site, shard } => {
            let settings = config::load(site.config.as_deref(), &site.overrides())?;
            let shard = shard.unwrap_or(pipeline::Shard { index: 0, count: 1 });
            let o = pipeline::embed_shard(&settings, shard, ui)?;
            eprintln!(
                "shard {}/{}: {} file(s), {} embedded now, {} skipped, {:.1} s",
                shard.index,
                shard.count,
                o.items,
                o.embedded,
                o.skipped.len(),
                o.seconds
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { path, force } => {
            simsite::init::write_config(&path, force)?;
            eprintln!("wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
