//! The order of a build, in one place:
//! load encoder (beside the scan) → scan → catalogue join → decode + preprocess (+ thumbnails,
//! FITS header values), streamed into embed (cached by content) → header values into each
//! item's metadata → neighbours (FAISS) → layout (UMAP, kept across builds) →
//! structure (clusters, outliers, duplicates) → api/ files and embeddings export → HTML
//! pages, map files, thumbnails → manifest → switch to the new release → report. Everything
//! published goes into one [`Release`], taken (locked) before anything else.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::api;
use crate::cache::{self, Digest, EmbeddingCache};
use crate::catalogue::{self, Catalogue, Item};
use crate::config::Settings;
use crate::encoder::Encoder;
use crate::fsutil;
use crate::headers::{self, HeaderCache};
use crate::ingest::{self, IngestSettings, Ingested};
use crate::layout;
use crate::neighbours;
use crate::publish::Release;
use crate::report::{BuildReport, Problem, StageTime};
use crate::scan;
use crate::site;
use crate::structure;
use crate::ui::Ui;

/// How a finished build went; `main` turns it into the exit code.
#[derive(Debug)]
pub struct BuildOutcome {
    pub report: BuildReport,
    pub report_path: std::path::PathBuf,
}

/// One shard of a scaled-out embed: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `i/N` (0 <= i < N).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let err = || format!("`{s}` is not a shard; expected i/N with 0 <= i < N, e.g. 0/4");
        let (a, b) = s.split_once('/').ok_or_else(err)?;
        let (index, count) = (a.trim().parse::<u32>().map_err(|_| err())?, b.trim().parse::<u32>().map_err(|_| err())?);
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard owns the file: a hash of its relative path, so the split is
    /// deterministic and a file keeps its shard when others are added.
    pub fn owns(&self, rel: &str) -> bool {
        let h = blake3::hash(rel.as_bytes());
        let v = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        v % self.count as u64 == self.index as u64
    }
}

/// Stops at once, before any decoding, when the cache folder cannot be written, and takes
/// the cache's lock: `Use::Alone` (a build, `eval`: they prune and rewrite the cache's
/// files) or `Use::Shared` (`embed --shard`: each writes segments of its own). Held until
/// the returned file is dropped.
pub(crate) fn cache_writable(settings: &Settings, with: CacheUse) -> Result<std::fs::File> {
    let dir = &settings.cache;
    claim_cache(dir)?;
    crate::fsutil::check_writable(dir).map_err(|e| cache_unwritable(dir, e))?;
    let path = dir.join(".lock");
    let lock = std::fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| cache_unwritable(dir, e))?;
    let taken = match with {
        CacheUse::Alone => lock.try_lock(),
        CacheUse::Shared => lock.try_lock_shared(),
    };
    let (holder, order) = match with {
        CacheUse::Alone => ("a build, an eval, or `embed --shard` processes still running", "the build after every shard has ended"),
        CacheUse::Shared => ("a build or an eval, which needs it alone", "the shards after the last build has ended"),
    };
    match taken {
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another simsite process is using the cache folder {} (it holds {}): {holder}\n  \
             fix: wait for it to finish and run this again; in a cluster, start {order}; \
             two sites must not share one cache folder ([output] cache or --cache)",
            dir.display(),
            path.display(),
        ),
        Ok(()) => Ok(lock),
        // A file system without locks (some network mounts) is used unlocked, as before,
        // and said so: nothing then keeps a build and the shards apart.
        Err(std::fs::TryLockError::Error(e)) => {
            eprintln!(
                "warning: cannot lock {} ({e}); going on without the lock: make sure no other simsite process uses this cache folder meanwhile (on Lustre, mount with -o flock)",
                path.display()
            );
            Ok(lock)
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum CacheUse {
    Alone,
    Shared,
}

fn cache_unwritable(dir: &std::path::Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot write into the cache folder {}: {e}\n  fix: {}, or point [output] cache / --cache elsewhere",
        dir.display(),
        crate::error::cache_fix(&e)
    )
}

/// The tag that marks a folder as simsite's cache (the Cache Directory Tagging
/// Specification's, which backup tools also honour).
const CACHE_TAG: &str = "CACHEDIR.TAG";
const CACHE_TAG_TEXT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by simsite: everything in this folder is\n\
# simsite's cache, which it prunes. For information about cache directory tags, see\n\
# https://bford.info/cachedir/\n";

/// Makes sure the cache folder is simsite's before anything in it is pruned or replaced:
/// a new or empty folder, one tagged by simsite (`CACHEDIR.TAG`), or one an earlier
/// version of simsite made (`last-build.json`, or a key folder under `embeddings/`), which
/// is tagged now. Any other folder with files in it is refused, naming a few of them.
fn claim_cache(dir: &std::path::Path) -> Result<()> {
    if dir.join(CACHE_TAG).is_file() {
        return Ok(());
    }
    check_cache(dir)?;
    let unwritable = |e| cache_unwritable(dir, e);
    std::fs::create_dir_all(dir).map_err(unwritable)?;
    // Two processes may tag a new folder at once: the second finds the tag there.
    match std::fs::OpenOptions::new().write(true).create_new(true).open(dir.join(CACHE_TAG)) {
        Ok(mut f) => std::io::Write::write_all(&mut f, CACHE_TAG_TEXT.as_bytes()).map_err(unwritable),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(unwritable(e)),
    }
}

/// Whether `dir` may be simsite's cache folder, changing nothing: missing, empty, tagged
/// by simsite, or made by an earlier version of it (see `claim_cache`).
pub(crate) fn check_cache(dir: &std::path::Path) -> Result<()> {
    let fix = "fix: point [output] cache / --cache at a new or empty folder (simsite deletes what it does not need in its cache folder)";
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Ok(m) if !m.is_dir() => anyhow::bail!("the cache folder {} exists and is not a folder\n  {fix}", dir.display()),
        _ => {}
    }
    if dir.join(CACHE_TAG).is_file() {
        return Ok(());
    }
    // A write probe of a process starting beside this one (`embed --shard` on many
    // machines) is not a file of someone else's.
    let mut others: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the cache folder {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".write-test-") && n != CACHE_TAG)
        .collect();
    let legacy = dir.join("last-build.json").is_file()
        || std::fs::read_dir(dir.join("embeddings")).is_ok_and(|d| d.flatten().any(|e| crate::cache::is_key(&e.file_name().to_string_lossy())));
    if !others.is_empty() && !legacy {
        others.sort();
        others.truncate(3);
        anyhow::bail!(
            "the cache folder {} holds files simsite did not make ({}) and no {CACHE_TAG}\n  {fix}",
            dir.display(),
            crate::error::backticked(&others)
        );
    }
    Ok(())
}

/// Results held in memory between decoding and the consumer.
const QUEUE: usize = 256;

pub(crate) struct Gathered {
    pub(crate) items: Vec<Item>,
    pub(crate) report: BuildReport,
    /// The catalogue's metadata columns the map may colour by unasked, in its order.
    pub(crate) columns: Vec<String>,
    /// The served site's ids (its `api/ids.json`; empty when there is none).
    pub(crate) served_ids: Vec<String>,
}

/// Scan and catalogue join: the part of a build that `check` and `embed` share.
pub(crate) fn gather(settings: &Settings, ui: &Ui) -> Result<Gathered> {
    // The catalogue first: a broken one stops the build before a long scan.
    let cat = match &settings.catalogue {
        Some(c) => Catalogue::load(c)?,
        None => Catalogue::default(),
    };
    if let Some(cols) = &settings.site.colour_by {
        if let Some(c) = cols.iter().find(|c| !cat.columns.contains(c) && !settings.fits_keywords.contains(c)) {
            // Header keywords are metadata too: named when there are any.
            let keywords = match settings.fits_keywords.is_empty() {
                true => String::new(),
                false => format!(" nor of the [fits] keywords ({})", crate::error::backticked(&settings.fits_keywords)),
            };
            let message = match &settings.catalogue {
                None if keywords.is_empty() => format!("`{c}` names a catalogue column, but no [catalogue] is configured"),
                None => format!("`{c}` is not one of the [fits] keywords ({}), and no [catalogue] is configured", crate::error::backticked(&settings.fits_keywords)),
                Some(_) => format!("`{c}` is not one of the catalogue's columns shown ({}){keywords}", crate::error::backticked(&cat.columns)),
            };
            return Err(crate::error::ConfigError::Invalid { file: crate::config::display_file(&settings.config_path), key: "site.colour-by".into(), message }.into());
        }
    }
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
    // A folder that cannot be read hides its images: each is reported like a file that
    // cannot be read (and counts as skipped), not only in the report's warnings.
    for p in &found.unreadable {
        ui.skipped(&p.path, &p.reason);
    }
    if !report.warnings.is_empty() {
        let n = report.warnings.len();
        let some: Vec<&str> = report.warnings.iter().take(3).map(|p| p.path.as_str()).collect();
        ui.warn(format!("scan: {n} symbolic link(s) not followed, or looping back (e.g. {}); see the warnings in the build report", crate::error::backticked(some)));
    }
    // Files an astronomer may expect read, named with the conversion.
    let note = |(n, examples): &(usize, Vec<String>), what: &str, fix: &str| {
        (*n > 0).then(|| format!("{n} {what} simsite does not read (e.g. {}); {fix}", crate::error::backticked(examples.iter().map(String::as_str))))
    };
    let notes: Vec<String> = [
        note(&found.unread_fits, "file(s) named like FITS in a compression", "decompress them (`gunzip` reads .Z too, `bunzip2` .bz2, `unxz` .xz) or gzip them as .fits.gz"),
        note(&found.iraf, "IRAF image(s) (.imh)", "convert them to FITS with IRAF (`wfits`, or `imcopy name.imh name.fits`)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let unread_note = (!notes.is_empty()).then(|| notes.join("; "));
    if found.entries.is_empty() && found.unreadable.is_empty() {
        anyhow::bail!(
            "the archive {} holds no image files (.fits/.fit/.fts[.gz|.fz], .png, .jpg/.jpeg, .tif/.tiff)\n  fix: {}",
            settings.archive.display(),
            unread_note.unwrap_or_else(|| "point [archive] root or --archive at the folder with the images".into())
        );
    }
    if let Some(note) = unread_note {
        ui.warn(format!("scan: {note}"));
    }
    // The served site's ids, read once (a file keeps the suffixed id it was published
    // under), and which file an id named in it (read only where names collide, or where a
    // file's own suffixed id is among them).
    let served_api = settings.out.join("api");
    let ids_path = served_api.join("ids.json");
    let served_ids: Vec<String> = match std::fs::read(&ids_path) {
        // No served site, or one built without a model (no api/).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !served_api.is_dir() => Ok(Vec::new()),
        read => read.map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())),
    }
    .unwrap_or_else(|why| {
        ui.warn(format!(
            "{}: cannot be read ({why}): a file published under an id with a hash suffix (its name collided with another's) may be given another id, and URL, tonight",
            ids_path.display()
        ));
        Vec::new()
    });
    let served_items = served_api.join("items");
    let held = |id: &str| -> Option<String> {
        let bytes = std::fs::read(served_items.join(format!("{id}.json"))).ok()?;
        serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get("path")?.as_str().map(String::from)
    };
    // The last build's count of items with a catalogue row (its report in the cache).
    let catalogued_before = std::fs::read(settings.cache.join("last-build.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|r| r["catalogued"].as_u64())
        .map(|n| n as usize);
    let served = catalogue::Served { ids: &served_ids, held: &held, catalogued_before, catalogued: Default::default() };
    let (items, skipped, warnings) = catalogue::assign_served(found.entries, &cat, &served);
    report.catalogued = settings.catalogue.is_some().then(|| served.catalogued.get());
    for p in &skipped {
        ui.skipped(&p.path, &p.reason);
    }
    for w in &warnings {
        ui.warn(format!("{}: {}", w.path, w.reason));
    }
    report.skipped_files.extend(skipped);
    report.skipped_files.extend(found.unreadable);
    report.warnings.extend(warnings);
    // The map's default colourings leave the position out: it is a place, not a property.
    let columns = cat.columns.into_iter().filter(|c| !cat.position.contains(c)).collect();
    Ok(Gathered { items, report, columns, served_ids })
}

/// Loads the configured encoder and makes the settings follow its input contract.
pub(crate) fn load_encoder(settings: &mut Settings, ui: &Ui) -> Result<Option<Encoder>> {
    let Some(es) = &settings.encoder else {
        return Ok(None);
    };
    let enc = Encoder::load(es)?;
    for w in &enc.warnings {
        ui.warn(w);
    }
    if let Some(note) = settings.adopt_encoder(&enc.spec).map_err(|m| anyhow::anyhow!("{m}"))? {
        ui.warn(note);
    }
    ui.info(format!(
        "encoder: {} ({}x{}x{} → {}), {} ({}), batch {}",
        enc.spec.name, enc.spec.channels, enc.spec.size, enc.spec.size, enc.spec.dim, enc.device, enc.device_note, enc.spec.batch
    ));
    Ok(Some(enc))
}

pub(crate) fn open_cache(settings: &Settings, enc: &Encoder, ui: &Ui) -> Result<EmbeddingCache> {
    let key = cache::cache_key(&enc.digest, &enc.spec.digest_text(), &settings.preprocess.digest());
    let c = EmbeddingCache::open(&settings.cache, &key, enc.spec.dim)
        .with_context(|| format!("cannot open the embedding cache in {}\n  fix: check --cache / [output] cache and its permissions", settings.cache.display()))?;
    for p in &c.problems {
        ui.warn(format!("{}: {}", p.path, p.reason));
    }
    // Shards run with another config, or a new model: say so, or a cluster's build embeds
    // the whole archive again on one node without a word.
    let others = c.other_keys();
    if !others.is_empty() {
        ui.warn(format!(
            "the cache holds embeddings made with another model, other preprocessing settings or an older simsite ({}); they are not used, and a build removes them. \
             If `embed --shard` jobs ran before this, they ran with another config than this one: run them with the same config",
            others.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(c)
}

/// Opens the cache of `[fits] keywords` values (None: no keywords are read).
pub(crate) fn open_headers(settings: &Settings, ui: &Ui) -> Result<Option<HeaderCache>> {
    if settings.header_fields.is_empty() {
        return Ok(None);
    }
    let key = headers::cache_key(&settings.header_fields, &settings.preprocess.fits.hdu);
    let c = HeaderCache::open(&settings.cache, &key)
        .with_context(|| format!("cannot open the FITS header cache in {}\n  fix: check --cache / [output] cache and its permissions", settings.cache.display()))?;
    for p in &c.problems {
        ui.warn(format!("{}: {}", p.path, p.reason));
    }
    Ok(Some(c))
}

/// A batch for an inference worker, and what comes back.
type Job = (Vec<f32>, Vec<Digest>);
type Done = Result<(Vec<Digest>, Vec<f32>, Duration), crate::error::EncoderError>;

/// The inference workers of an [`Embedder`].
enum Workers {
    /// Not started yet: they start with the first batch.
    Unstarted,
    /// None (CUDA, one thread, a large model), or ended: batches run on the encoder itself.
    Absent,
    Running { jobs: crossbeam_channel::Sender<Job>, done: crossbeam_channel::Receiver<Done>, count: u32 },
}

/// Embeds what arrives from decoding in full batches and stores it in the cache. On CPU,
/// full batches go to single-threaded copies of the encoder running side by side (see
/// [`Encoder::cpu_workers`]), started with the first batch.
struct Embedder<'a, 'scope, 'env> {
    encoder: &'a mut Encoder,
    cache: &'a mut EmbeddingCache,
    pixels: Vec<f32>,
    keys: Vec<Digest>,
    embedded: usize,
    /// Contents whose embedding came out NaN or infinite: not cached, their files skipped.
    unusable: HashSet<Digest>,
    busy: Duration,
    scope: &'scope std::thread::Scope<'scope, 'env>,
    workers: Workers,
}

impl<'scope, 'env> Embedder<'_, 'scope, 'env> {
    fn push(&mut self, digest: Digest, tensor: &[f32]) -> Result<()> {
        self.pixels.extend_from_slice(tensor);
        self.keys.push(digest);
        if self.keys.len() >= self.encoder.spec.batch {
            self.submit()?;
        }
        self.collect(false)
    }

    /// Hands the full batch to a worker, or runs it here when there are none.
    fn submit(&mut self) -> Result<()> {
        if let Workers::Unstarted = self.workers {
            self.workers = self.start_workers()?;
        }
        match &self.workers {
            Workers::Running { jobs, .. } => {
                let job = (std::mem::take(&mut self.pixels), std::mem::take(&mut self.keys));
                if jobs.send(job).is_err() {
                    // Every worker has ended, so one failed (to load its copy): its error.
                    self.collect(true)?;
                    anyhow::bail!("internal error: the inference workers stopped");
                }
                Ok(())
            }
            _ => self.run_here(),
        }
    }

    /// Starts the workers; each loads its own copy of the encoder in its own thread, so
    /// decoding goes on meanwhile.
    fn start_workers(&self) -> Result<Workers> {
        let Some(replicas) = self.encoder.cpu_workers() else { return Ok(Workers::Absent) };
        let n = replicas.len();
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(n);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
        for replica in replicas {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            let spawned = std::thread::Builder::new().name("simsite-infer".into()).spawn_scoped(self.scope, move || {
                let mut enc = match replica.load() {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = done_tx.send(Err(e));
                        return;
                    }
                };
                for (pixels, keys) in job_rx.iter() {
                    let t = Instant::now();
                    let out = enc.embed(&pixels, keys.len()).map(|e| (keys, e, t.elapsed()));
                    if done_tx.send(out).is_err() {
                        break;
                    }
                }
            });
            spawned.context("cannot start a thread for inference\n  fix: raise the process or thread limit (ulimit -u) or free memory")?;
        }
        Ok(Workers::Running { jobs: job_tx, done: done_rx, count: n as u32 })
    }

    /// Stores what the workers have finished; with `wait`, ends them and waits for all of it.
    fn collect(&mut self, wait: bool) -> Result<()> {
        let (results, n): (Vec<Done>, u32) = match std::mem::replace(&mut self.workers, Workers::Absent) {
            Workers::Running { jobs, done, count } if wait => {
                // Without their queue the workers end once it is empty.
                drop(jobs);
                (done.iter().collect(), count)
            }
            Workers::Running { jobs, done, count } => {
                let r = done.try_iter().collect();
                self.workers = Workers::Running { jobs, done, count };
                (r, count)
            }
            other => {
                self.workers = other;
                return Ok(());
            }
        };
        for r in results {
            let (keys, out, took) = r?;
            self.store(&keys, &out)?;
            self.busy += took / n;
        }
        Ok(())
    }

    fn run_here(&mut self) -> Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        let out = self.encoder.embed(&self.pixels, self.keys.len())?;
        self.busy += t.elapsed();
        let keys = std::mem::take(&mut self.keys);
        self.store(&keys, &out)?;
        self.pixels.clear();
        Ok(())
    }

    fn store(&mut self, keys: &[Digest], out: &[f32]) -> Result<()> {
        let dim = self.encoder.spec.dim;
        for (k, e) in keys.iter().zip(out.chunks_exact(dim)) {
            if e.iter().all(|v| v.is_finite()) {
                self.cache.insert(*k, e).context("cannot write to the embedding cache")?;
                self.embedded += 1;
            } else {
                self.unusable.insert(*k);
            }
        }
        Ok(())
    }

    /// Runs the last, partial batch (on a worker like the others, so every embedding of a
    /// build comes from the same kind of session) and stores everything.
    fn finish(&mut self) -> Result<()> {
        if !self.keys.is_empty() {
            self.submit()?;
        }
        self.collect(true)
    }
}

/// What the decode (+ embed) stage produced for the items given.
pub(crate) struct Ingest {
    pub(crate) done: Vec<Option<Ingested>>,
    pub(crate) skipped: Vec<Problem>,
    pub(crate) embedded: usize,
    pub(crate) infer_seconds: f64,
    pub(crate) seconds: f64,
    /// The thumbnail cache's files as listed before the stage (made by it are not in it).
    pub(crate) thumbs_listed: crate::thumbs::Listing,
}

/// Sees the encoder input of every decoded item: `(index into items, tensor)`.
pub(crate) type Tap<'a> = &'a mut dyn FnMut(usize, &[f32]);

/// Decodes `items` and embeds what the cache lacks; with `headers`, reads the `[fits]
/// keywords` of the FITS files it lacks into it. With a `tap`, every file is decoded
/// (cached embeddings or not) and its tensor shown to the tap, so `eval` gets embeddings
/// and raw pixels from one pass.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_ingest(
    settings: &Settings,
    items: &[Item],
    encoder: Option<&mut Encoder>,
    cache: Option<&mut EmbeddingCache>,
    mut headers: Option<&mut HeaderCache>,
    mut tap: Option<Tap<'_>>,
    check_thumbs: bool,
    ui: &Ui,
) -> Result<Ingest> {
    // A snapshot: the cache itself is written to by the consumer while workers ask.
    let cached: HashSet<Digest> = cache.as_ref().map(|c| c.keys().collect()).unwrap_or_default();
    let has_encoder = encoder.is_some();
    let needs_embedding = |d: &blake3::Hash| has_encoder && !cached.contains(d.as_bytes());
    let tapped = tap.is_some();
    let needs = |d: &blake3::Hash| tapped || needs_embedding(d);
    // The same snapshot for the header cache.
    let headers_known: Option<HashSet<Digest>> = headers.as_ref().map(|h| h.keys().collect());
    let needs_header = |d: &blake3::Hash| headers_known.as_ref().is_some_and(|k| !k.contains(d.as_bytes()));
    let memo = crate::digests::Memo::load(&settings.cache);
    let listed = crate::thumbs::Listing::of(&settings.cache, check_thumbs);
    let s = IngestSettings { memo: Some(&memo), listed: Some(&listed), needs_header: &needs_header, ..IngestSettings::new(settings, &needs, false) };
    let stage = ui.stage(if has_encoder { "embed" } else { "decode" }, items.len() as u64);
    let mut done: Vec<Option<Ingested>> = (0..items.len()).map(|_| None).collect();
    let mut skipped = Vec::new();
    // Inference workers, when there are any, live in this scope.
    let (embedded, infer, unusable) = std::thread::scope(|scope| -> Result<(usize, f64, HashSet<Digest>)> {
        let mut failure: Option<anyhow::Error> = None;
        let mut embedder = match (encoder, cache) {
            (Some(encoder), Some(cache)) => Some(Embedder {
                encoder,
                cache,
                pixels: Vec::new(),
                keys: Vec::new(),
                embedded: 0,
                unusable: HashSet::new(),
                busy: Duration::ZERO,
                scope,
                workers: Workers::Unstarted,
            }),
            _ => None,
        };
        ingest::run(items, &s, QUEUE, |i, result| {
            stage.inc(1);
            match result {
                Ok(mut r) => {
                    if let (Some(h), Some(cache)) = (r.header.take(), headers.as_mut()) {
                        if let Err(e) = cache.insert(*r.digest.as_bytes(), h) {
                            failure = Some(anyhow::Error::new(e).context("cannot write to the FITS header cache"));
                            return std::ops::ControlFlow::Break(());
                        }
                    }
                    if let Some(t) = r.tensor.take() {
                        if let Some(tap) = tap.as_mut() {
                            tap(i, &t);
                        }
                        if let Some(e) = embedder.as_mut().filter(|_| needs_embedding(&r.digest)) {
                            if let Err(err) = e.push(*r.digest.as_bytes(), &t) {
                                // The model failed: decoding the rest of the archive would be wasted.
                                failure = Some(err);
                                return std::ops::ControlFlow::Break(());
                            }
                        }
                    }
                    done[i] = Some(r);
                }
                Err(e @ crate::error::FileError::CacheWrite { .. }) => {
                    // A full disk, not a bad file: skipping every image from here on would
                    // publish a site missing them.
                    failure = Some(anyhow::Error::new(e));
                    return std::ops::ControlFlow::Break(());
                }
                Err(e) => {
                    let reason = e.to_string();
                    ui.skipped(&items[i].entry.rel_str, &reason);
                    skipped.push(Problem { path: items[i].entry.rel_str.clone(), reason });
                }
            }
            std::ops::ControlFlow::Continue(())
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(h) = headers.as_mut() {
            h.flush().context("cannot write to the FITS header cache")?;
        }
        Ok(match embedder.as_mut() {
            Some(e) => {
                e.finish()?;
                e.cache.flush().context("cannot write to the embedding cache")?;
                (e.embedded, e.busy.as_secs_f64(), std::mem::take(&mut e.unusable))
            }
            None => (0, 0.0, HashSet::new()),
        })
    })?;
    // A model can give NaN for an input it cannot take (a custom one, or one trained on
    // other data): the file is skipped, like one that cannot be decoded.
    for (i, d) in done.iter_mut().enumerate() {
        if d.as_ref().is_some_and(|r| unusable.contains(r.digest.as_bytes())) {
            let reason = format!("{}; check the model and its [encoder] mean and std", crate::encoder::NO_DIRECTION);
            ui.skipped(&items[i].entry.rel_str, &reason);
            skipped.push(Problem { path: items[i].entry.rel_str.clone(), reason });
            *d = None;
        }
    }
    let t = stage.finish();
    if has_encoder {
        // The stage counts every image it looked at; most nights most come from the cache.
        ui.info(format!("embed: {embedded} embedded now, {} from the cache", done.iter().flatten().count().saturating_sub(embedded)));
    }
    Ok(Ingest { done, skipped, embedded, infer_seconds: infer, seconds: t.as_secs_f64(), thumbs_listed: listed })
}

pub fn build(settings: &Settings, ui: &Ui) -> Result<BuildOutcome> {
    // First: a second build on the same output stops here, touching nothing.
    let release = Release::begin(&settings.out)?;
    // A mistake found before any image is decoded (the model, the catalogue, the archive)
    // leaves no cache folder behind that was not there.
    let new_cache = std::fs::symlink_metadata(&settings.cache).is_err();
    let start = || -> Result<_> {
        // A site's own template that cannot render stops the build before any image is
        // decoded, not at the render stage.
        for w in crate::site::check_templates(settings)? {
            ui.warn(format!("templates: {w}"));
        }
        crate::neighbours::check_device(settings.neighbours.device)?;
        let lock = cache_writable(settings, CacheUse::Alone)?;
        // The encoder's session is made, then the embedding cache read (its segments decoded),
        // while the archive is scanned: one side is mostly CPU, the other mostly system calls.
        // Scanning needs nothing the encoder changes in the settings. What the scan says comes
        // after what the encoder says (a model that cannot be used is the first thing said).
        let scanning = ui.hold();
        let (loaded, gathered) = std::thread::scope(|s| {
            let loading = s.spawn(|| -> Result<_> {
                let mut settings = settings.clone();
                let encoder = load_encoder(&mut settings, ui)?;
                let cache = encoder.as_ref().map(|e| open_cache(&settings, e, ui));
                Ok((settings, encoder, cache))
            });
            let gathered = gather(settings, &scanning);
            (loading.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), gathered)
        });
        let (settings, encoder, cache) = loaded?;
        scanning.say_to(ui);
        let gathered = gathered?;
        Ok((settings, encoder, cache.transpose()?, gathered, lock))
    };
    let (settings, mut encoder, mut cache, Gathered { mut items, mut report, columns, served_ids }, _cache_lock) = start().inspect_err(|_| {
        if new_cache {
            std::fs::remove_dir_all(&settings.cache).ok();
        }
    })?;
    // Cache files written beside the rest of the build.
    let mut background = Background::default();
    match &cache {
        Some(c) => report.warnings.extend(c.problems.iter().cloned()),
        None => {
            // A model line lost from the config (an edit, a bad merge) would take every
            // neighbour, the map and `api/` off a site built with one, as quietly as a
            // thumbnails-only site is built.
            if !settings.allow_removals {
                losing_the_model(release.previous("api/manifest.json"))?;
            }
            ui.info("no [encoder] model configured: thumbnails only, no embeddings");
        }
    }
    let mut headers = open_headers(&settings, ui)?;
    if let Some(h) = &headers {
        report.warnings.extend(h.problems.iter().cloned());
    }
    let unfinished = Unfinished::begin(&settings.cache);
    let ing = run_ingest(&settings, &items, encoder.as_mut(), cache.as_mut(), headers.as_mut(), None, unfinished.check(), ui)?;
    report.stages.push(StageTime {
        name: if encoder.is_some() { "decode+embed".into() } else { "decode".into() },
        seconds: ing.seconds,
        items: items.len() as u64,
    });
    if encoder.is_some() {
        report.stages.push(StageTime { name: "inference".into(), seconds: ing.infer_seconds, items: ing.embedded as u64 });
    }
    report.embedded = ing.embedded;
    report.skipped_files.extend(ing.skipped);
    // Header values join the catalogue's columns in each item's `meta`.
    if let Some(h) = &headers {
        for (item, r) in items.iter_mut().zip(&ing.done) {
            if let Some(values) = r.as_ref().and_then(|r| h.get(r.digest.as_bytes())) {
                headers::merge_item(item, values);
            }
        }
    }

    let published: Vec<(&Item, Ingested)> =
        items.iter().zip(ing.done).filter_map(|(it, r)| r.map(|r| (it, r))).collect();
    report.skipped_files.sort();
    report.skipped = report.skipped_files.len();
    report.items = published.len();
    if published.is_empty() {
        let report_path = write_report(&settings, &report)?;
        anyhow::bail!(
            "no image in {} could be read ({} skipped); nothing was published\n  see the reasons above or in {}",
            settings.archive.display(),
            report.skipped,
            report_path.display()
        );
    }

    if let Some(refusal) = too_many_removed(&served_ids, &published, settings.max_removed) {
        let report_path = write_report(&settings, &report)?;
        anyhow::bail!(
            "{refusal}: nothing was published, and the cache was left as it was\n  \
             fix: check that {} is mounted and readable (files skipped tonight are listed above and in {}); \
             if those images were really removed, run `simsite build --allow-removals` once, or raise [output] max-removed",
            settings.archive.display(),
            report_path.display()
        );
    }

    // Thumbnails and previews no item uses any more (files gone from the archive, an older
    // stretch or size): the cache would otherwise grow night after night until its disk
    // is full. The served release keeps its own links to those it shows. Not before the
    // refusals above: a night the archive is half unmounted must not cost its thumbnails.
    let used: std::collections::HashSet<[u8; 32]> = published
        .iter()
        .flat_map(|(_, r)| std::iter::once(r.thumb.as_path()).chain(r.preview.as_deref()))
        .filter_map(|p| p.file_name().and_then(crate::thumbs::key_of))
        .collect();
    report.thumbnails_pruned = ing.thumbs_listed.prune(&settings.cache, &used);
    // Header values likewise, and those read for another keyword list; a failure costs
    // only room in the cache.
    let pruned_headers = (|| -> std::io::Result<()> {
        let used: HashSet<Digest> = published.iter().map(|(_, r)| *r.digest.as_bytes()).collect();
        if let Some(h) = headers.as_mut() {
            h.prune(&used)?;
        }
        headers::remove_other_keys(&settings.cache, headers.as_ref().and_then(|h| h.key())).map(|_| ())
    })();
    if let Err(e) = pruned_headers {
        ui.warn(format!("cannot prune the FITS header cache in {}: {e}", settings.cache.display()));
    }

    // Remembered for the next build; a memo that cannot be written only costs reading.
    let remembered = published.iter().filter_map(|(it, r)| r.stamp.map(|st| (it.entry.rel_str.as_str(), st, r.digest)));
    let (memo, cache_dir) = (crate::digests::to_bytes(remembered), settings.cache.clone());
    background.write(
        format!("cannot remember file digests in {}", settings.cache.display()),
        Some("the next build reads every file"),
        move || crate::digests::write(&cache_dir, &memo),
    );
    report.files_read = published.iter().filter(|(_, r)| r.read).count() + report.skipped;
    for (_, done) in &published {
        if done.thumb_made {
            report.thumbnails_made += 1;
        } else {
            report.thumbnails_reused += 1;
        }
    }
    let items: Vec<&Item> = published.iter().map(|(i, _)| *i).collect();
    let thumbs: Vec<&std::path::Path> = published.iter().map(|(_, r)| r.thumb.as_path()).collect();
    let previews: Vec<Option<&std::path::Path>> = published.iter().map(|(_, r)| r.preview.as_deref()).collect();
    let known: Vec<_> = published.iter().map(|(_, r)| (r.thumb_meta, r.preview_meta)).collect();
    // `simsite eval`'s pages are kept while they describe tonight's model; after a new one
    // they would show the old model's figures as this site's.
    let eval = release.previous("eval/index.html").is_some() && {
        let digest = encoder.as_ref().map(|e| e.digest.to_hex().to_string());
        let made_with = release.previous("api/eval.json").and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).and_then(|v| v["model"]["digest"].as_str().map(String::from));
        let same = digest.is_some() && made_with == digest;
        if !same {
            ui.warn("the site's eval page was made with another model than tonight's; it is left out (run `simsite eval` again for this model's figures)");
        }
        same
    };
    if let (Some(enc), Some(c)) = (&encoder, &mut cache) {
        let dim = enc.spec.dim;
        let mut emb = Vec::with_capacity(published.len() * dim);
        for (item, r) in &published {
            let e = c.get(r.digest.as_bytes()).with_context(|| format!("no embedding for {}", item.entry.rel_str))?;
            emb.extend_from_slice(e);
        }
        let t_nb = Instant::now();
        let stage = ui.stage("neighbours", published.len() as u64);
        let sky: Vec<Option<(f64, f64)>> = published.iter().map(|(i, _)| i.ra.zip(i.dec)).collect();
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let ns = &settings.neighbours;
        let kept_nb = settings.cache.join("neighbours.bin");
        let keys = neighbours::row_keys(&ids, &emb, dim);
        if ns.min_separation_arcsec > 0.0 && sky.iter().all(Option::is_none) {
            ui.warn(format!(
                "[neighbours] min-separation-arcsec = {} does nothing: no item has a position on the sky \
                 (give the catalogue RA/Dec columns, or keep [fits] position on for FITS files with a celestial WCS; \
                 `simsite inspect FILE` says why a file has none)",
                ns.min_separation_arcsec
            ));
        }
        // The neighbours before the sky filter, when it is on: near-duplicates come from
        // these (the same pixels at the same place are what that list is for).
        let mut unfiltered = None;
        let (mut nb, update) = if ns.min_separation_arcsec > 0.0 && sky.iter().any(|p| p.is_some()) {
            // The sky filter depends on the positions too: always a full search.
            let _ = std::fs::remove_file(&kept_nb);
            let (nb, wide) = neighbours::search_on_sky(&emb, dim, ns, &sky)?;
            unfiltered = wide;
            (nb, None)
        } else {
            let (nb, wide, update) = neighbours::search_or_update(&emb, dim, ns, &keys, neighbours::load_previous(&kept_nb))?;
            if update.is_none_or(|u| u.added + u.removed > 0) {
                let (ns, keys) = (ns.clone(), keys.clone());
                background.write(format!("cannot keep the neighbours in the cache folder: {}", kept_nb.display()), None, move || {
                    neighbours::save_previous(&kept_nb, &ns, &keys, &wide)
                });
            }
            (nb, update)
        };
        nb.clamp_scores();
        let sky_duplicates = unfiltered.map(|mut wide| {
            wide.clamp_scores();
            structure::duplicates(&wide, published.len(), settings.structure.duplicate_threshold)
        });
        stage.finish();
        let how = match update {
            Some(u) => format!(
                "updated from the last build's {} ({} added, {} removed, {} rows searched)",
                nb.info.method, u.added, u.removed, u.searched
            ),
            None => format!("by {}", nb.info.method),
        };
        ui.info(format!(
            "neighbours: {} per item {how} (recall@k {:.3}) on {} ({}) in {:.1} s",
            nb.k, nb.info.recall, nb.info.device, nb.info.device_note, nb.info.seconds
        ));
        report.stages.push(StageTime { name: "neighbours".into(), seconds: t_nb.elapsed().as_secs_f64(), items: published.len() as u64 });

        let t_l = Instant::now();
        let stage = ui.stage("layout", published.len() as u64);
        let layout_dir = settings.cache.join("layout");
        let paths: Vec<&str> = published.iter().map(|(i, _)| i.entry.rel_str.as_str()).collect();
        // What needs neither the map nor the structure is done beside the layout, which
        // leaves a core idle for most of a night: the thumbnails linked into the release,
        // the embeddings' Parquet file and the embedding cache's pruning.
        let (laid, beside) = std::thread::scope(|s| {
            let beside = s.spawn(|| -> Result<(usize, f64, f64)> {
                release.wait_listing()?;
                let t = Instant::now();
                site::put_thumbnails(&release, &items, &thumbs, &previews, &known)?;
                let thumbs_seconds = t.elapsed().as_secs_f64();
                let t = Instant::now();
                release.put("api/embeddings.parquet", &cache::export_parquet(&ids, &paths, &emb, dim)?)?;
                let used: HashSet<Digest> = published.iter().map(|(_, r)| *r.digest.as_bytes()).collect();
                let pruned = c.prune(&used).context("cannot prune the embedding cache")?;
                c.remove_other_keys().context("cannot prune the embedding cache")?;
                Ok((pruned, thumbs_seconds, t.elapsed().as_secs_f64()))
            });
            let laid = layout::layout(&emb, dim, &ids, &keys, &nb, &settings.layout, layout::load_previous(&layout_dir));
            (laid, beside.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        });
        let (coords, linfo, lkey) = laid?;
        let (pruned, thumbs_seconds, parquet_seconds) = beside?;
        report.cache_pruned = pruned;
        stage.finish();
        ui.info(format!(
            "layout: {} map ({} epochs; {} kept, {} new) in {:.1} s",
            linfo.mode, linfo.epochs, linfo.kept, linfo.added, linfo.seconds
        ));
        // A reused map is already what the cache holds.
        if linfo.mode != "reused" {
            let (ids_json, xy, lsettings) = (serde_json::to_vec(&ids)?, layout::f32_bytes(&coords), layout::settings_text(&settings.layout));
            let what = format!("cannot keep the map in the cache folder {}", layout_dir.display());
            background.write(what, None, move || layout::save(&layout_dir, &lkey, &lsettings, &ids_json, &keys, &xy));
        }
        report.stages.push(StageTime { name: "layout".into(), seconds: t_l.elapsed().as_secs_f64(), items: published.len() as u64 });
        report.stages.push(StageTime { name: "thumbnails".into(), seconds: thumbs_seconds, items: published.len() as u64 });
        report.stages.push(StageTime { name: "parquet".into(), seconds: parquet_seconds, items: published.len() as u64 });

        let t_s = Instant::now();
        let n = items.len();
        let ss = &settings.structure;
        let kept_clusters = settings.cache.join("clusters.json");
        let min_size = ss.cluster_size(n);
        // A map whose items kept their places keeps its clusters too.
        let kept = matches!(linfo.mode.as_str(), "placed" | "reused")
            .then(|| std::fs::read(&kept_clusters).ok().and_then(|b| serde_json::from_slice::<structure::KeptClusters>(&b).ok()))
            .flatten()
            .and_then(|k| structure::clusters_kept(&k, &ids, &linfo.anew, &emb, dim, &nb, ss.min_cluster_size, min_size));
        let clusters_were_kept = kept.is_some();
        let (clusters, cluster_of) = kept.unwrap_or_else(|| structure::clusters(&coords, &emb, dim, &nb, min_size));
        let record = structure::KeptClusters { setting: ss.min_cluster_size, ids: ids.iter().map(|s| s.to_string()).collect(), cluster: cluster_of.clone() };
        fsutil::write_if_changed(&kept_clusters, &serde_json::to_vec(&record)?)
            .with_context(|| format!("cannot keep the clusters in the cache folder: {}", kept_clusters.display()))?;
        // The isolation forest is kept across nightly builds, so the items a build already
        // had keep their outlier scores (and their pages their strangeness band).
        let kept_forest = settings.cache.join("outlier-forest.bin");
        let space = cache::cache_key(&enc.digest, &enc.spec.digest_text(), &settings.preprocess.digest());
        let prev_forest = std::fs::read(&kept_forest).ok().and_then(|b| structure::KeptForest::from_bytes(&b));
        let (outlier_score, outlier_rank, forest) = ss.outliers_kept(&emb, dim, &nb, &ids, &space, prev_forest);
        let forest_note = match &forest {
            Some((_, structure::ForestUse::Kept)) => ", outliers scored by the isolation forest kept from an earlier build",
            Some((_, structure::ForestUse::Grown)) => ", outliers scored by a new isolation forest",
            None => "",
        };
        match forest {
            // Kept too when only its scores changed (new items scored).
            Some((f, _)) => {
                fsutil::write_if_changed(&kept_forest, &f.to_bytes())
                    .with_context(|| format!("cannot keep the outlier forest in the cache folder: {}", kept_forest.display()))?;
            }
            None => {
                let _ = std::fs::remove_file(&kept_forest);
            }
        }
        let duplicates = sky_duplicates.unwrap_or_else(|| structure::duplicates(&nb, n, ss.duplicate_threshold));
        ui.info(format!(
            "structure: {} clusters ({}), {} near-duplicate pairs (cosine >= {}){forest_note} in {:.1} s",
            clusters.len(),
            if clusters_were_kept { "kept from the last build, new items joined by their neighbours" } else { "HDBSCAN on the map" },
            duplicates.len(),
            ss.duplicate_threshold,
            t_s.elapsed().as_secs_f64()
        ));
        report.stages.push(StageTime { name: "structure".into(), seconds: t_s.elapsed().as_secs_f64(), items: n as u64 });

        let st = api::Structure {
            clusters: &clusters,
            cluster_of: &cluster_of,
            outlier_score: &outlier_score,
            outlier_rank: &outlier_rank,
            duplicates: &duplicates,
        };
        let places_kept = matches!(linfo.mode.as_str(), "placed" | "reused");
        let model = site::Model { nb: &nb, xy: &coords, st: &st, show: settings.neighbours.show, places_kept };
        let input = site::Input { items: &items, thumbs: &thumbs, previews: &previews, known: &known, model: Some(model), eval, columns: &columns, keywords: &settings.fits_keywords };
        // The api files and the site are independent, so they are made side by side: each
        // keeps the cores busy while the other is in a serial part (the Parquet export, the
        // structure files, the map, the galleries). Their stage times overlap.
        release.wait_listing()?;
        let (api_done, rendered) = rayon::join(
            || -> Result<f64> {
                let t = Instant::now();
                api::publish(&release, &items, &nb, &coords, &st)?;
                Ok(t.elapsed().as_secs_f64())
            },
            || -> Result<(site::Rendered, f64)> {
                let t = Instant::now();
                Ok((site::render(&release, &settings, &input, ui)?, t.elapsed().as_secs_f64()))
            },
        );
        let api_seconds = api_done?;
        report.stages.push(StageTime { name: "api".into(), seconds: api_seconds, items: n as u64 });
        let (rendered, render_seconds) = rendered?;
        rendered_into(&release, &mut report, rendered, render_seconds, n, eval);
        let mref = api::ModelRef { name: &enc.spec.name, digest: &enc.digest.to_hex(), dim };
        let facts = api::ManifestFacts {
            items: n,
            skipped: report.skipped,
            model: &mref,
            nb: &nb,
            xy: &coords,
            layout: &linfo,
            clusters: clusters.len(),
            duplicates: duplicates.len(),
        };
        api::put_manifest(&release, &settings, &facts)?;
    } else {
        let input = site::Input { items: &items, thumbs: &thumbs, previews: &previews, known: &known, model: None, eval, columns: &columns, keywords: &settings.fits_keywords };
        release.wait_listing()?;
        let t = Instant::now();
        site::put_thumbnails(&release, &items, &thumbs, &previews, &known)?;
        report.stages.push(StageTime { name: "thumbnails".into(), seconds: t.elapsed().as_secs_f64(), items: items.len() as u64 });
        render_site(&release, &settings, &input, &mut report, ui)?;
    }

    background.finish(ui)?;
    let t = Instant::now();
    let changes = release.commit(&settings.cache)?;
    report.release = changes.release.clone();
    report.files = changes.files;
    report.changed = changes.changed.len();
    report.removed = changes.removed.len();
    report.served_files_read = changes.served_read;
    report.pages_kept_unrendered = changes.kept_unrendered;
    report.pages_relinked_early = changes.relinked_early;
    report.stages.push(StageTime { name: "publish".into(), seconds: t.elapsed().as_secs_f64(), items: changes.files as u64 });
    if let Some(e) = &encoder {
        report.model = Some(crate::report::ModelInfo {
            name: e.spec.name.clone(),
            digest: e.digest.to_hex().to_string(),
            dim: e.spec.dim,
            device: e.device.to_string(),
        });
    }
    let report_path = write_report(&settings, &report)?;
    unfinished.finish(true);
    Ok(BuildOutcome { report, report_path })
}

/// Files for the cache, each written on a thread of its own while the build goes on (a
/// write waits on the disk more than it uses the CPU: a 115,000-item night spent ~0.5 s
/// writing its neighbours, map and file digests in line). All are written before the build
/// publishes; dropped, it waits for them.
#[derive(Default)]
struct Background(Vec<Written>);

/// A write on its way (or done, when no thread could be had for it): what to say if it
/// fails, and whether that is only a warning (what follows from it) or stops the build.
struct Written {
    what: String,
    warn_only: Option<&'static str>,
    done: Result<std::thread::JoinHandle<std::io::Result<()>>, std::io::Result<()>>,
}

impl Background {
    fn write(&mut self, what: String, warn_only: Option<&'static str>, job: impl FnOnce() -> std::io::Result<()> + Send + 'static) {
        // Kept where this side can take it back, should its thread not start.
        let job = std::sync::Arc::new(std::sync::Mutex::new(Some(job)));
        fn take<F: FnOnce() -> std::io::Result<()>>(job: &std::sync::Mutex<Option<F>>) -> std::io::Result<()> {
            job.lock().unwrap_or_else(|p| p.into_inner()).take().map_or(Ok(()), |j| j())
        }
        let theirs = job.clone();
        let done = std::thread::Builder::new().name("simsite-save".into()).spawn(move || take(&theirs)).map_err(|_| take(&job));
        self.0.push(Written { what, warn_only, done });
    }

    /// Waits for every write; the first that failed and is not only a warning is the error.
    fn finish(&mut self, ui: &Ui) -> Result<()> {
        let mut first = None;
        for w in self.0.drain(..) {
            let result = w.done.map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).unwrap_or_else(|r| r);
            match (result, w.warn_only) {
                (Ok(()), _) => {}
                (Err(e), Some(then)) => ui.warn(format!("{}: {e}; {then}", w.what)),
                (Err(e), None) => first = first.or(Some(anyhow::Error::new(e).context(w.what))),
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for w in self.0.drain(..) {
            if let Ok(t) = w.done {
                t.join().ok();
            }
        }
    }
}

/// Why tonight's items may not be published: more of the served site's items (`served`,
/// its `api/ids.json`) are missing from them than `max_removed` allows. An archive folder that
/// is not mounted or not readable tonight looks like removed images; publishing it would
/// take them off the site and their embeddings out of the cache.
fn too_many_removed(served: &[String], published: &[(&Item, Ingested)], max_removed: f64) -> Option<String> {
    let tonight: HashSet<&str> = published.iter().map(|(i, _)| i.id.as_str()).collect();
    let gone: Vec<&str> = served.iter().map(String::as_str).filter(|id| !tonight.contains(id)).collect();
    if served.is_empty() || gone.len() as f64 <= max_removed * served.len() as f64 {
        return None;
    }
    let examples: Vec<String> = gone.iter().take(3).map(|id| format!("`{id}`")).collect();
    // Rounded down to a tenth, so that 1,994 of 2,000 does not read as 100 %.
    let share = |x: f64| {
        let t = (x * 1000.0 + 1e-9).floor() / 10.0;
        if t.fract() == 0.0 { format!("{t:.0}") } else { format!("{t:.1}") }
    };
    Some(format!(
        "{} of the {} items on the served site are not among tonight's images ({} %, more than [output] max-removed = {} %), e.g. {}",
        gone.len(),
        served.len(),
        share(gone.len() as f64 / served.len() as f64),
        share(max_removed),
        examples.join(", ")
    ))
}

/// An error when the served site (its manifest's bytes) was built with a model: a build
/// from a config naming none would take its neighbours, map and `api/` off it.
fn losing_the_model(manifest: Option<Vec<u8>>) -> Result<()> {
    let name = manifest.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).and_then(|m| m["model"]["name"].as_str().map(String::from));
    if let Some(model) = name {
        anyhow::bail!(
            "the served site was built with the model {model}, but this config names none ([encoder] model): publishing would take its neighbours, map, clusters and api/ files off the site; nothing was published\n  \
             fix: put back [encoder] model in the config, or run `simsite build --allow-removals` once to publish a site of thumbnails only"
        );
    }
    Ok(())
}

/// Renders the HTML site into the release, keeps `simsite eval`'s pages, and times it.
fn render_site(release: &Release, settings: &Settings, input: &site::Input, report: &mut BuildReport, ui: &Ui) -> Result<()> {
    let t = Instant::now();
    let rendered = site::render(release, settings, input, ui)?;
    rendered_into(release, report, rendered, t.elapsed().as_secs_f64(), input.items.len(), input.eval);
    Ok(())
}

/// A marker (`unfinished-<host>-<pid>-<start>` in the cache folder, see
/// [`fsutil::process_tag`]) while a process writes cache files:
/// thumbnails and atlases are renamed into place without an fsync each (one per file would
/// cost a disk write each), so after a power cut a file named just before it may be empty.
/// A process that finds markers it did not leave (one that was killed, or the machine went
/// down) looks at the size of each cached thumbnail before trusting it (atlases are always
/// looked at). Best effort: a marker that cannot be written costs only that check.
struct Unfinished {
    cache: std::path::PathBuf,
    own: std::path::PathBuf,
    found: Vec<std::path::PathBuf>,
    /// Set by `finish`: whether this process looked at every file of the archive.
    covered: bool,
}

impl Unfinished {
    fn begin(cache: &std::path::Path) -> Unfinished {
        let found = std::fs::read_dir(cache)
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("unfinished-")).map(|e| e.path()).collect())
            .unwrap_or_default();
        let own = cache.join(format!("unfinished-{}", fsutil::process_tag()));
        std::fs::write(&own, b"").ok();
        Unfinished { cache: cache.to_path_buf(), own, found, covered: false }
    }

    /// Whether an earlier process left the cache unfinished.
    fn check(&self) -> bool {
        !self.found.is_empty()
    }

    /// Once the cache files are written: dropping it flushes their filesystem, then takes
    /// this process's marker away and, `covered` (it looked at every file of the archive),
    /// the ones it found. A flush that fails leaves them all for the next run.
    fn finish(mut self, covered: bool) {
        self.covered = covered;
    }
}

/// A process that stops with an error (not killed) flushes what it wrote too, and takes
/// its own marker away: an error must not cost the next build a look at every thumbnail.
impl Drop for Unfinished {
    fn drop(&mut self) {
        if fsutil::sync_filesystem(&self.cache).is_err() {
            return;
        }
        std::fs::remove_file(&self.own).ok();
        if self.covered {
            for m in &self.found {
                std::fs::remove_file(m).ok();
            }
        }
    }
}

/// Records a rendered site (`seconds` of rendering, `items` items) in the report.
fn rendered_into(release: &Release, report: &mut BuildReport, rendered: site::Rendered, seconds: f64, items: usize, keep_eval: bool) {
    report.pages = rendered.pages;
    report.page_threads = rendered.page_threads;
    report.render_parts = rendered.parts;
    report.stages.push(StageTime { name: "render".into(), seconds, items: items as u64 });
    if keep_eval {
        release.carry(is_eval_path);
    }
}

/// Files `simsite eval` publishes, which a build keeps as they are.
pub(crate) fn is_eval_path(rel: &str) -> bool {
    rel.starts_with("eval/") || rel == "api/eval.json"
}

fn write_report(settings: &Settings, report: &BuildReport) -> Result<std::path::PathBuf> {
    let path = settings.cache.join("last-build.json");
    let json = serde_json::to_vec_pretty(report)?;
    fsutil::atomic_write(&path, &json)
        .with_context(|| format!("cannot write the build report {}\n  fix: check --cache / [output] cache and its permissions", path.display()))?;
    Ok(path)
}

/// What `embed --shard` did.
#[derive(Debug)]
pub struct EmbedOutcome {
    pub items: usize,
    pub embedded: usize,
    pub skipped: Vec<Problem>,
    pub seconds: f64,
}

/// Embeds one shard of the archive into the cache (thumbnails too), for a following build.
pub fn embed_shard(settings: &Settings, shard: Shard, ui: &Ui) -> Result<EmbedOutcome> {
    let _lock = cache_writable(settings, CacheUse::Shared)?;
    let mut settings = settings.clone();
    let Some(mut encoder) = load_encoder(&mut settings, ui)? else {
        anyhow::bail!("`simsite embed` needs a model\n  fix: set `model` under [encoder]");
    };
    let Gathered { items, .. } = gather(&settings, ui)?;
    let mine: Vec<Item> = items.into_iter().filter(|i| shard.owns(&i.entry.rel_str)).collect();
    ui.info(format!("shard {}/{}: {} file(s)", shard.index, shard.count, mine.len()));
    let mut cache = open_cache(&settings, &encoder, ui)?;
    // Each shard writes the header values of its files too: parts of their own, which the
    // build reads with the others.
    let mut headers = open_headers(&settings, ui)?;
    let unfinished = Unfinished::begin(&settings.cache);
    let ing = run_ingest(&settings, &mine, Some(&mut encoder), Some(&mut cache), headers.as_mut(), None, unfinished.check(), ui)?;
    // A shard checked only its own files: the markers of others stay for the build.
    unfinished.finish(false);
    Ok(EmbedOutcome { items: mine.len(), embedded: ing.embedded, skipped: ing.skipped, seconds: ing.seconds })
}

/// What `check` found.
#[derive(Debug)]
pub struct CheckOutcome {
    pub items: usize,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Validates the output and cache folders, the templates, config, model, catalogue and every
/// archive file (fully decoded) without writing.
pub fn check(settings: &Settings, ui: &Ui) -> Result<CheckOutcome> {
    // What a build would stop at before decoding anything, first.
    crate::publish::check_out(&settings.out)?;
    check_cache(&settings.cache)?;
    for w in crate::site::check_templates(settings)? {
        ui.warn(format!("templates: {w}"));
    }
    crate::neighbours::check_device(settings.neighbours.device)?;
    if settings.encoder.is_none() {
        losing_the_model(std::fs::read(settings.out.join("api/manifest.json")).ok())?;
    }
    let mut settings = settings.clone();
    load_encoder(&mut settings, ui)?;
    let Gathered { items, report, .. } = gather(&settings, ui)?;
    let mut problems = report.skipped_files;
    let stage = ui.stage("check", items.len() as u64);
    let never = |_: &blake3::Hash| false;
    let s = IngestSettings::new(&settings, &never, true);
    let mut good = 0;
    ingest::run(&items, &s, QUEUE, |i, r| {
        stage.inc(1);
        match r {
            Ok(_) => good += 1,
            Err(e) => problems.push(Problem { path: items[i].entry.rel_str.clone(), reason: e.to_string() }),
        }
        std::ops::ControlFlow::Continue(())
    });
    stage.finish();
    problems.sort();
    Ok(CheckOutcome { items: good, problems, warnings: report.warnings })
}
