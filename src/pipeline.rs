//! The order of a build, in one place:
//! scan → catalogue join → decode + preprocess (+ thumbnails) → publish → report.
//! Later stages (embed, neighbours, layout, structure, render) slot in after decoding.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::catalogue::{self, Catalogue, Item};
use crate::config::Settings;
use crate::fsutil;
use crate::ingest::{self, IngestSettings};
use crate::report::{BuildReport, Problem, StageTime};
use crate::scan;
use crate::ui::Ui;

/// How a finished build went; `main` turns it into the exit code.
#[derive(Debug)]
pub struct BuildOutcome {
    pub report: BuildReport,
    pub report_path: std::path::PathBuf,
}

/// Results held in memory between decoding and the consumer.
const QUEUE: usize = 64;

struct Prepared {
    items: Vec<Item>,
    report: BuildReport,
}

/// Scan and catalogue join: the part of a build that `check` shares.
fn gather(settings: &Settings, ui: &Ui) -> Result<Prepared> {
    // The catalogue first: a broken one stops the build before a long scan.
    let cat = match &settings.catalogue {
        Some(c) => Catalogue::load(c)?,
        None => Catalogue::default(),
    };
    let t = Instant::now();
    let found = scan::scan(&settings.archive, settings.follow_symlinks)?;
    let mut report = BuildReport {
        simsite_version: env!("CARGO_PKG_VERSION").to_string(),
        archive: settings.archive.display().to_string(),
        out: settings.out.display().to_string(),
        scanned: found.entries.len(),
        ignored_non_images: found.ignored,
        warnings: found.problems,
        ..Default::default()
    };
    ui.info(format!(
        "scan: {} image files in {} ({} other files ignored) in {:.2} s",
        found.entries.len(),
        settings.archive.display(),
        found.ignored,
        t.elapsed().as_secs_f64()
    ));
    report.stages.push(StageTime { name: "scan".into(), seconds: t.elapsed().as_secs_f64(), items: found.entries.len() as u64 });
    if found.entries.is_empty() {
        anyhow::bail!(
            "the archive {} holds no image files (.fits/.fit/.fts[.gz|.fz], .png, .jpg/.jpeg, .tif/.tiff)\n  fix: point [archive] root or --archive at the folder with the images",
            settings.archive.display()
        );
    }
    let (items, skipped, warnings) = catalogue::assign(found.entries, &cat);
    for p in &skipped {
        ui.skipped(&p.path, &p.reason);
    }
    for w in &warnings {
        ui.warn(format!("{}: {}", w.path, w.reason));
    }
    report.skipped_files.extend(skipped);
    report.warnings.extend(warnings);
    Ok(Prepared { items, report })
}

pub fn build(settings: &Settings, ui: &Ui) -> Result<BuildOutcome> {
    let Prepared { items, mut report } = gather(settings, ui)?;

    let stage = ui.stage("decode", items.len() as u64);
    let mut ok: Vec<Option<ingest::Ingested>> = (0..items.len()).map(|_| None).collect();
    let ingest_settings = IngestSettings {
        preprocess: &settings.preprocess,
        thumbs: &settings.thumbs,
        cache: &settings.cache,
        max_file_bytes: settings.max_file_bytes,
        validate_only: false,
    };
    ingest::run(&items, &ingest_settings, QUEUE, |i, result| {
        stage.inc(1);
        match result {
            Ok(mut done) => {
                // Nothing consumes the encoder input yet; drop it here to bound memory.
                done.tensor = None;
                ok[i] = Some(done);
            }
            Err(e) => {
                let reason = e.to_string();
                ui.skipped(&items[i].entry.rel_str, &reason);
                report.skipped_files.push(Problem { path: items[i].entry.rel_str.clone(), reason });
            }
        }
    });
    let t = stage.finish();
    report.stages.push(StageTime { name: "decode".into(), seconds: t.as_secs_f64(), items: items.len() as u64 });

    let published: Vec<(&Item, ingest::Ingested)> =
        items.iter().zip(ok).filter_map(|(it, r)| r.map(|r| (it, r))).collect();
    report.skipped_files.sort();
    report.skipped = report.skipped_files.len();
    report.items = published.len();
    if published.is_empty() {
        let report_path = write_report(settings, &report)?;
        anyhow::bail!(
            "no image in {} could be read ({} skipped); nothing was published\n  see the reasons above or in {}",
            settings.archive.display(),
            report.skipped,
            report_path.display()
        );
    }

    let t = Instant::now();
    let thumbs_dir = settings.out.join("thumbs");
    std::fs::create_dir_all(&thumbs_dir)
        .with_context(|| format!("cannot create the output folder {}\n  fix: check --out / [output] dir and its permissions", thumbs_dir.display()))?;
    let mut keep = HashSet::with_capacity(published.len());
    for (item, done) in &published {
        if done.thumb_made {
            report.thumbnails_made += 1;
        } else {
            report.thumbnails_reused += 1;
        }
        let name = format!("{}.jpg", item.id);
        let bytes = std::fs::read(&done.thumb).with_context(|| format!("cannot read cached thumbnail {}", done.thumb.display()))?;
        fsutil::write_if_changed(&thumbs_dir.join(&name), &bytes)
            .with_context(|| format!("cannot write into the output folder {}", thumbs_dir.display()))?;
        keep.insert(name);
    }
    // Thumbnails of items that are gone would otherwise accumulate forever.
    for entry in std::fs::read_dir(&thumbs_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".jpg") && !keep.contains(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    report.stages.push(StageTime { name: "publish".into(), seconds: t.elapsed().as_secs_f64(), items: published.len() as u64 });

    let report_path = write_report(settings, &report)?;
    Ok(BuildOutcome { report, report_path })
}

fn write_report(settings: &Settings, report: &BuildReport) -> Result<std::path::PathBuf> {
    let path = settings.cache.join("last-build.json");
    let json = serde_json::to_vec_pretty(report)?;
    fsutil::atomic_write(&path, &json)
        .with_context(|| format!("cannot write the build report {}\n  fix: check --cache / [output] cache and its permissions", path.display()))?;
    Ok(path)
}

/// What `check` found.
#[derive(Debug)]
pub struct CheckOutcome {
    pub items: usize,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Validates config, catalogue and every archive file (fully decoded) without writing.
pub fn check(settings: &Settings, ui: &Ui) -> Result<CheckOutcome> {
    let Prepared { items, report } = gather(settings, ui)?;
    let mut problems = report.skipped_files;
    let stage = ui.stage("check", items.len() as u64);
    let s = IngestSettings {
        preprocess: &settings.preprocess,
        thumbs: &settings.thumbs,
        cache: &settings.cache,
        max_file_bytes: settings.max_file_bytes,
        validate_only: true,
    };
    let mut good = 0;
    ingest::run(&items, &s, QUEUE, |i, r| {
        stage.inc(1);
        match r {
            Ok(_) => good += 1,
            Err(e) => problems.push(Problem { path: items[i].entry.rel_str.clone(), reason: e.to_string() }),
        }
    });
    stage.finish();
    problems.sort();
    Ok(CheckOutcome { items: good, problems, warnings: report.warnings })
}
