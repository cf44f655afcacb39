use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use simsite::cli::{Cli, Command};
use simsite::ui::printable;
use simsite::{config, pipeline, ui::Ui};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // This binary is also the child process that decodes tile-compressed FITS, so a crash in
    // CFITSIO's decompressors costs one file, never the build (see decode/fits.rs).
    if std::env::args_os().nth(1).is_some_and(|a| a == simsite::decode::FITS_CHILD_ARG) {
        return ExitCode::from(simsite::decode::fits_child_main() as u8);
    }
    if let Ok(exe) = std::env::current_exe() {
        simsite::decode::isolate_compressed_with(exe);
    }
    // A mistyped command line exits 1, like any other error: 2 means "some files were
    // skipped" for `check` and `query`, which a script must not read a typo as.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            e.print().ok();
            return if e.use_stderr() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
    };
    let ui = Ui::new(cli.quiet);
    match run(cli.command, &ui) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause once: many messages already quote their cause
/// (`cannot read the model …: No such file or directory`), which `{:#}` would repeat.
fn message(e: &anyhow::Error) -> String {
    // Causes go after the problem and before its `fix:` line.
    let top = e.to_string();
    let (mut msg, fix) = match top.find("\n  fix:") {
        Some(at) => (top[..at].to_string(), top[at..].to_string()),
        None => (top.clone(), String::new()),
    };
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !top.contains(&c) && !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    if fix.is_empty() && !msg.contains("\n  fix:") {
        return msg + io_fix(e);
    }
    msg + &fix
}

/// The fix for a write that failed for want of space or permission, for the messages that
/// name their path but not what to do.
fn io_fix(e: &anyhow::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()).map(|io| io.kind()) {
        Some(K::StorageFull | K::QuotaExceeded) => "\n  fix: free space on the disk of the path named above, then run it again",
        Some(K::PermissionDenied | K::ReadOnlyFilesystem) => "\n  fix: make the path named above writable (owner, permissions, a read-only mount), then run it again",
        _ => "",
    }
}

/// The settings of a built site, for commands that read the site and not the archive
/// (`serve`, `query`): a folder that cannot overlap the site stands in for the archive.
fn site_settings(config: Option<&std::path::Path>, out: Option<std::path::PathBuf>) -> anyhow::Result<config::Settings> {
    let none = std::env::temp_dir().join("simsite-reads-no-archive");
    let overrides = config::Overrides { archive: Some(none), out, no_archive: true, ..Default::default() };
    Ok(config::load(config, &overrides)?)
}

fn run(command: Command, ui: &Ui) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(args) => {
            let overrides = config::Overrides { allow_removals: args.allow_removals, ..args.site.overrides() };
            let settings = config::load(args.site.config.as_deref(), &overrides)?;
            let outcome = pipeline::build(&settings, ui)?;
            let r = &outcome.report;
            eprintln!(
                "published {} item(s) to {} ({} skipped, {} embedded now; {} of {} files new or changed, {} removed); report: {}",
                r.items,
                settings.out.display(),
                r.skipped,
                r.embedded,
                r.changed,
                r.files,
                r.removed,
                outcome.report_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let settings = config::load(args.config.as_deref(), &args.overrides())?;
            let outcome = pipeline::check(&settings, ui)?;
            for p in &outcome.problems {
                println!("{}: {}", printable(&p.path), printable(&p.reason));
            }
            eprintln!("{} file(s) ok, {} would be skipped", outcome.items, outcome.problems.len());
            if outcome.items == 0 {
                // What `build` would stop at: nothing to publish.
                anyhow::bail!("no image in {} could be read; a build would publish nothing", settings.archive.display());
            }
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
            if o.items > 0 && o.skipped.len() == o.items {
                anyhow::bail!("no image of shard {}/{} could be read; see the reasons above", shard.index, shard.count);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => {
            let settings = config::load(args.site.config.as_deref(), &args.site.overrides())?;
            let outcome = simsite::eval::run(&settings, &args.options(), ui)?;
            eprint!("{outcome}");
            for p in &outcome.outputs {
                eprintln!("wrote {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config, out, port, bind } => {
            let settings = site_settings(config.as_deref(), out)?;
            simsite::serve::serve(&settings.out, std::net::SocketAddr::new(bind, port), |a| {
                eprintln!("serving {} at http://{a}/ (Ctrl-C stops)", settings.out.display());
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Query { files, config, out, k, json } => {
            let settings = site_settings(config.as_deref(), out)?;
            let answers = simsite::query::query(&settings, &files, k as usize, ui)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answers)?);
            } else {
                for a in &answers {
                    match (&a.neighbors, &a.error) {
                        (Some(list), _) => {
                            println!("{}", a.file);
                            for (r, m) in list.iter().enumerate() {
                                println!("  {:>3}  {:.4}  {}  {}", r + 1, m.score, m.id, m.url);
                            }
                        }
                        (None, e) => eprintln!("skipped {}: {}", printable(&a.file), printable(e.as_deref().unwrap_or("unreadable"))),
                    }
                }
            }
            let failed = answers.iter().filter(|a| a.error.is_some()).count();
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Inspect { file, config, tensor } => {
            // One file needs no archive: its folder stands in for one.
            let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let overrides = config::Overrides { archive: Some(folder.to_path_buf()), no_archive: true, ..Default::default() };
            let settings = config::load(config.as_deref(), &overrides)?;
            let i = simsite::inspect::inspect_with(&file, &settings, ui)?;
            println!("{}", i.describe());
            if let Some(t) = tensor {
                simsite::fsutil::atomic_write(&t, &i.tensor_npy()).with_context(|| format!("cannot write {}", t.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { path, force } => {
            simsite::init::write_config(&path, force)?;
            eprintln!("wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_or_a_read_only_folder_gets_a_fix_line() {
        let full = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull)).context("cannot keep the outlier forest in the cache folder: c/f.bin");
        assert_eq!(
            message(&full),
            "cannot keep the outlier forest in the cache folder: c/f.bin: no storage space\n  fix: free space on the disk of the path named above, then run it again"
        );
        let ro = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)).context("cannot write c/atlases/x.jpg");
        assert!(message(&ro).ends_with("\n  fix: make the path named above writable (owner, permissions, a read-only mount), then run it again"));
        // A message with its own fix keeps it; other errors get none.
        let own = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull)).context("cannot write x\n  fix: do y");
        assert_eq!(message(&own), "cannot write x: no storage space\n  fix: do y");
        assert_eq!(message(&anyhow::anyhow!("bad")), "bad");
    }
}
