//! Publishing for cron: each build prepares a complete new release beside the served one and
//! switches to it with one atomic rename, so a killed, failed or disk-full build leaves the
//! old site served, whole.
//!
//! `OUT` (say `site`) is a symbolic link to `.site.releases/<release>/` in the same folder.
//! A release is prepared in `.site.releases/.staging-<pid>/`: the release before the served
//! one (or a killed build's staging folder) is renamed there and brought up to date in
//! place, so a rebuild touches only what differs from it instead of re-creating (and
//! deleting) hundreds of thousands of files. A file that changed is written over its
//! recycled copy when that copy is nobody else's (one link), else the copy is unlinked and
//! the file made anew: never written into an inode the served release shares. A file
//! whose bytes equal the served release's is that very inode (a hard link), or its own
//! recycled copy given those bytes and the served file's modification time (see
//! `keep_own`), so rsync/CDN sync (`rsync -a site/ dest/`) moves only what changed; files the new
//! release does not have are deleted from it before the switch. On success a new link
//! `site.new-<pid>` is renamed over `site` (atomic) and the list of changed paths is written
//! to the cache. Beside each release, `<release>.index` (see `index`) lets the next build
//! compare with its files without reading them, and keep pages made from the same inputs
//! without rendering them. Two releases remain: the served one and the one before (a web
//! server may still be serving a request from it); any others are deleted in the background
//! while the build works. `.site.lock` keeps a second build on the same output out.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::BTreeSet;
use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use anyhow::{bail, Context, Result};

use crate::fsutil::FileId;

pub mod index;
pub mod manifest;

pub struct Release {
    out: PathBuf,
    releases: PathBuf,
    staging: PathBuf,
    /// The served release, if any.
    prev: Option<PathBuf>,
    /// What the served release's index says of its files (empty without one).
    prev_index: std::sync::Arc<index::Index>,
    state: Mutex<State>,
    /// The staging folder's folders known to be there (made, or checked, by this build).
    /// Apart from `state`: every file put looks here first, and a lock shared with the
    /// bookkeeping of every put made the build's threads queue for it.
    dirs: std::sync::RwLock<HashSet<PathBuf>>,
    /// Served files read to compare them (those the index could not vouch for).
    served_read: AtomicUsize,
    /// Files `put_rendered` kept from the served release without rendering them.
    kept_unrendered: AtomicUsize,
    /// Deleting releases neither served nor recycled, alongside the build.
    pruning: Option<std::thread::JoinHandle<()>>,
    /// Listing the files of the served and the recycled release, alongside the build until
    /// its first file (see `listing`).
    listing: Mutex<Option<std::thread::JoinHandle<Result<Listing>>>>,
    /// What the listing found (or why it failed), once the build needed it.
    listed: std::sync::OnceLock<std::result::Result<Listing, String>>,
    /// The device of the releases: an inode number names a file only on its own device.
    dev: u64,
    /// Flushing the release's files to disk while the build is still writing them, started
    /// by the first file put.
    flusher: std::sync::OnceLock<Flusher>,
    /// Freeing, on a thread of its own, the files the build takes out of the recycled
    /// release; started by the first one.
    reaper: std::sync::OnceLock<Reaper>,
    /// The staging folder is an older release being brought up to date (else it started
    /// empty, and a path in it is known to be free).
    recycled: bool,
    /// The staging folder is a release that was published whole (it came with its
    /// manifest), not a killed build's: its index (`recycled_index`) says what its files
    /// held then (see `keep_own`).
    recycled_whole: bool,
    /// Where that release's index was moved (beside the staging folder), and the index,
    /// read the first time `keep_own` asks it.
    recycled_index_path: Option<PathBuf>,
    recycled_index: std::sync::OnceLock<index::Index>,
    /// The staging folder, open from the start: syncing through it before the switch
    /// reports any write-back error of the build (see `sync_through`).
    watch: File,
    lock_path: PathBuf,
    _lock: File,
}

impl Drop for Release {
    /// A build that fails before anything was ever published to its output leaves nothing
    /// beside it: the empty staging folder, the releases folder and the lock file go. (With
    /// a site served, they stay: the next build reuses them.)
    fn drop(&mut self) {
        if self.prev.is_some() || self.recycled || std::fs::symlink_metadata(&self.out).is_ok() {
            return;
        }
        if std::fs::remove_dir(&self.staging).is_ok() {
            remove_unpublished(&self.releases, &self.lock_path);
        }
    }
}

/// The changed- and removed-path lists a build leaves in the cache folder (see `commit`).
const PATH_LISTS: [&str; 2] = ["changed-paths.txt", "removed-paths.txt"];

/// Removes the releases folder and then the lock file of an output never published, if
/// the releases folder is empty (anything in it is kept, and so is the lock).
fn remove_unpublished(releases: &Path, lock_path: &Path) {
    if std::fs::remove_dir(releases).is_ok() {
        std::fs::remove_file(lock_path).ok();
    }
}

#[derive(Default)]
struct State {
    /// Every path put into this release, with its file's inode (0: not known).
    put: HashMap<String, u64>,
    /// Paths new or different from the served release.
    changed: BTreeSet<String>,
    /// This release's index, for the files put from bytes.
    index: Vec<(u64, index::Entry)>,
    /// Which of the served release's files the new one keeps when it does not make them.
    carry: Option<fn(&str) -> bool>,
    /// Folders of the staging folder this build made or removed an entry in (their times
    /// moved since the listing).
    touched: HashSet<PathBuf>,
}

/// The files (relative paths, each with the inode its release's manifest vouches for, or
/// 0) the served release and the recycled staging folder held when the build began, and
/// the staging folder's folders. Listed by a thread while the build embeds and lays out,
/// and waited for (`wait_listing`) before the build puts its files: a build then knows,
/// without an `lstat`, which folders of the staging folder are there and which of its
/// files are already the inodes it would link in. A file put before the listing is done
/// is put the slower way, looking at what is there.
#[derive(Default)]
struct Listing {
    prev: HashMap<String, u64>,
    staging: manifest::Listed,
    /// Folders of the staging folder whose entries the listing thread changed (see
    /// `relink_changed_pages`).
    touched: Vec<PathBuf>,
    /// The served files it linked in, each with its stamp afterwards (a new link moves a
    /// file's change time): a file with that stamp is as its index entry says.
    restamped: HashMap<String, u64>,
}

/// Whether `rel` is an item's page.
fn is_item_page(rel: &str) -> bool {
    rel.strip_prefix("items/").and_then(|r| r.strip_suffix("/index.html")).is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// A page that changed in the last build is one inode in the served release and another,
/// older one in the recycled release, and nine in ten such pages are kept as they are
/// tonight: keeping one unlinks the recycled file and links the served one in its place.
/// That is done here, on the listing's thread while the build embeds and lays out, and
/// not while it renders, where each one waited on reading the page's folder from the disk
/// (a release's folders are rarely still cached a night after it was written: 2.3 s of a
/// 112,000-item night's threads waited so) and on freeing the old file. `IO_THREADS` do
/// it, as they wait on the disk more than they use the CPU (with 8, a night that relinked
/// 56,000 pages waited 8 s for them after its layout). `listing` learns the inodes now
/// there (0 where a link failed: that page is looked at, as any unknown file is), the
/// folders changed and the served files' stamps afterwards. Only a served file its index
/// vouches for (unchanged since it was published) is linked in.
fn relink_changed_pages(listing: &mut Listing, prev: &Path, staging: &Path, prev_index: &index::Index) {
    let todo: Vec<(&String, u64)> = listing
        .staging
        .files
        .iter()
        .filter(|(rel, ino)| **ino != 0 && is_item_page(rel))
        .filter_map(|(rel, &ino)| listing.prev.get(rel).copied().filter(|&p| p != 0 && p != ino).map(|p| (rel, p)))
        .collect();
    if todo.is_empty() {
        return;
    }
    // Done whether or not the recycled release is still cached (a build run again within
    // minutes): freeing the old files waits on the disk's discards either way, which these
    // threads overlap. Nights with it still cached, alternating with a build that skipped
    // this then: 12.2-13.9 s against 12.9-14.2 s, each night faster than its neighbours
    // (BENCHMARKS.md, session 19).
    // Each page: its inode now, and the served file's stamp once linked (None: not linked).
    let done: Vec<(String, u64, Option<u64>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = todo
            .chunks(todo.len().div_ceil(crate::fsutil::IO_THREADS))
            .map(|part| {
                let relink = move || {
                    part.iter()
                        .filter_map(|(rel, ino)| {
                            let (path, served) = (staging.join(rel), prev.join(rel));
                            let vouched = |m: &Metadata| m.is_file() && m.ino() == *ino && prev_index.get(rel).is_some_and(|e| e.stamp == index::stamp(m));
                            std::fs::symlink_metadata(&served).ok().filter(vouched)?;
                            let linked = std::fs::remove_file(&path).is_ok() && std::fs::hard_link(&served, &path).is_ok();
                            let after = std::fs::symlink_metadata(&served).ok().filter(|m| m.ino() == *ino).map(|m| index::stamp(&m));
                            Some((rel.to_string(), if linked { *ino } else { 0 }, after.filter(|_| linked)))
                        })
                        .collect::<Vec<_>>()
                };
                std::thread::Builder::new().name("simsite-relink".into()).spawn_scoped(scope, relink)
            })
            .collect();
        // A thread that could not start leaves its pages as they were (looked at later).
        workers.into_iter().flatten().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    for (rel, ino, stamp) in done {
        listing.touched.push(staging.join(&rel).parent().unwrap().to_path_buf());
        if let Some(stamp) = stamp {
            listing.restamped.insert(rel.clone(), stamp);
        }
        listing.staging.files.insert(rel, ino);
    }
}

/// Whether most of the files at `rels` under `dir` (a sample of 32 at most) have left the
/// page cache, as a release has a night after it was written: work on them then waits on
/// the disk more than it uses the CPU. False for an empty sample.
fn mostly_uncached<'r>(dir: &Path, rels: impl Iterator<Item = &'r str>) -> bool {
    let sample: Vec<bool> = rels.take(32).map(|rel| File::open(dir.join(rel)).is_ok_and(|f| crate::fsutil::uncached(&f, 0, 4096))).collect();
    !sample.is_empty() && 2 * sample.iter().filter(|u| **u).count() >= sample.len()
}

/// The file beside the release folder `release` named after it with `suffix` (its index,
/// its manifest).
pub(crate) fn beside(release: &Path, suffix: &str) -> PathBuf {
    let mut name = release.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    release.with_file_name(name)
}

/// Whether a listing keeps an entry that is not a folder: with `only_files`, files alone,
/// else links and the rest too.
pub(crate) fn listed(t: std::fs::FileType, only_files: bool) -> bool {
    !only_files || t.is_file()
}

/// Walks the folder `dir`: its files (with `only_files`, else everything but folders) and
/// its folders, as paths relative to it.
pub(crate) fn walk(dir: &Path, only_files: bool) -> Result<manifest::Listed> {
    let mut out = manifest::Listed::default();
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = match entry {
            Ok(e) => e,
            // A folder of the staging folder the build removed or replaced meanwhile.
            Err(e) if e.io_error().is_some_and(|io| matches!(io.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        let t = entry.file_type();
        let rel = || entry.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        if t.is_dir() {
            out.folders.insert(rel(), None);
        } else if listed(t, only_files) {
            out.files.insert(rel(), 0);
        }
    }
    Ok(out)
}

/// The release at `dir` listed through its manifest when it has one, else walked.
fn list_release(dir: &Path, manifest: Option<&Path>, only_files: bool) -> Result<manifest::Listed> {
    match manifest.and_then(manifest::Manifest::load) {
        Some(m) => m.list(dir, only_files),
        None => walk(dir, only_files),
    }
}

/// What a publish changed, relative to the previously served release.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Changes {
    pub files: usize,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub release: String,
    /// Files of the served release read back to compare them with the new bytes.
    pub served_read: usize,
    /// Pages kept from the served release without rendering them (same inputs).
    pub kept_unrendered: usize,
    /// Pages linked in while the build embedded (see `relink_changed_pages`).
    pub relinked_early: usize,
}

fn names(out: &Path) -> Result<(PathBuf, String)> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .with_context(|| format!("the output folder {} has no usable name\n  fix: name a folder, e.g. --out site", out.display()))?
        .to_string();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // A served release's own folder (`site -> .site.releases/r…`, the link's target spelt
    // out, or reached through another link) would be taken for an old site and moved into a
    // nested release folder.
    let resolved = parent.canonicalize().ok().map(|p| p.join(&name));
    for folder in out.ancestors().skip(1).chain(resolved.iter().flat_map(|r| r.ancestors().skip(1))) {
        let Some(site) = folder.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix('.')?.strip_suffix(".releases")) else {
            continue;
        };
        let beside = folder.parent().unwrap_or(Path::new(""));
        if beside.join(format!(".{site}.lock")).exists() || beside.join(site).is_symlink() {
            let served = beside.join(site);
            bail!(
                "{} is inside {}, the folder where simsite keeps the releases of the site {}\n  fix: use --out {} (the link that serves the newest release)",
                out.display(),
                folder.display(),
                served.display(),
                served.display()
            );
        }
    }
    Ok((parent, name))
}

/// Whether a site can be published at `out`, changing nothing: what `Release::begin` would
/// refuse before any work (a name that is no folder's, a folder inside a site's releases, a
/// file, a link to something other than a release, a folder simsite did not build) is an
/// error here too. `simsite check` asks.
pub fn check_out(out: &Path) -> Result<()> {
    let (parent, name) = names(out)?;
    Release::found(out, &parent.join(format!(".{name}.releases"))).map(|_| ())
}

/// What is at the output's name.
enum Found {
    Nothing,
    /// A link to a release (the folder it names, which may be gone).
    Release(PathBuf),
    /// A folder an earlier simsite wrote in place, or an empty one.
    OldSite,
}

impl Release {
    /// Takes the output's lock and opens a staging release. Fails at once, touching nothing,
    /// when another build holds the lock.
    pub fn begin(out: &Path) -> Result<Release> {
        let (parent, name) = names(out)?;
        std::fs::create_dir_all(&parent).with_context(|| {
            format!("cannot create {}\n  fix: check --out / [output] dir and its permissions", parent.display())
        })?;
        let lock_path = parent.join(format!(".{name}.lock"));
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).with_context(|| {
            format!("cannot open the lock file {}\n  fix: check that {} is writable", lock_path.display(), parent.display())
        })?;
        // The lock file of a site never published is removed when its build fails (see
        // `Drop`): a lock taken on a file no longer at that name guards nothing.
        let at_name = |lock: &File| {
            let (a, b) = (std::fs::metadata(&lock_path), lock.metadata());
            a.is_ok_and(|a| b.is_ok_and(|b| (a.dev(), a.ino()) == (b.dev(), b.ino())))
        };
        match lock.try_lock() {
            Ok(()) if at_name(&lock) => {}
            Ok(()) => bail!(
                "another simsite build is publishing to {} (it replaced {} as this one started)\n  \
                 this build stopped without touching the site or the cache; run it again once the other one has finished",
                out.display(),
                lock_path.display()
            ),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another simsite build is publishing to {} (it holds {})\n  \
                 this build stopped without touching the site or the cache; run it again once the other one has finished",
                out.display(),
                lock_path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        // The switch makes a link beside the output at the very end: a folder where no name
        // can be made (read-only, immutable) stops the build now, not after all its work.
        crate::fsutil::check_writable(&parent).with_context(|| {
            format!("cannot create files in {}, where the output {} is switched\n  fix: make {} writable, or choose another --out", parent.display(), out.display(), parent.display())
        })?;
        let releases = parent.join(format!(".{name}.releases"));
        std::fs::create_dir_all(&releases).with_context(|| format!("cannot create {}", releases.display()))?;
        // Nothing here was published: leave nothing (see `Drop`).
        let prev = Self::served(out, &releases).inspect_err(|_| remove_unpublished(&releases, &lock_path))?;
        for entry in std::fs::read_dir(&parent)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&format!("{name}.new-")) {
                std::fs::remove_file(entry.path()).ok();
            }
        }
        // Everything in the releases folder but the served release is ours now (the lock is
        // held): a killed build's staging folder, older releases. The most recent of them is
        // recycled as this build's staging folder; the rest go in the background.
        // Compared by name: `prev` may be spelt `./.site.releases/…` or `.site.releases/…`.
        let served = prev.as_ref().and_then(|p| p.file_name()).map(|n| n.to_os_string());
        let mut spare: Vec<(bool, String, PathBuf)> = std::fs::read_dir(&releases)?
            .filter_map(|e| e.ok())
            .filter(|e| Some(e.file_name()) != served && e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                (n.starts_with(".staging-"), n, e.path())
            })
            .filter(|(staging, n, _)| *staging || n.starts_with('r'))
            .collect();
        // A killed build's staging folder first (it is the most up to date), then the newest
        // release (names start with the UTC time).
        spare.sort();
        let staging = releases.join(format!(".staging-{}", std::process::id()));
        let picked = spare.pop();
        let picked_dir = picked.as_ref().map(|(_, _, dir)| dir.clone());
        let recycled = picked.as_ref().is_some_and(|(_, _, dir)| std::fs::rename(dir, &staging).is_ok());
        // A release's manifest goes with it (a killed build's staging folder has none).
        let staging_manifest = manifest::path_of(&staging);
        let staging_manifest = picked
            .filter(|(killed, _, _)| recycled && !killed)
            .and_then(|(_, _, dir)| std::fs::rename(manifest::path_of(&dir), &staging_manifest).ok())
            .map(|()| staging_manifest);
        let recycled_whole = staging_manifest.is_some();
        // Its index too: what each of its files held when it was published.
        let recycled_index_path = picked_dir
            .filter(|_| recycled_whole)
            .and_then(|dir| std::fs::rename(index::path_of(&dir), index::path_of(&staging)).ok())
            .map(|()| index::path_of(&staging));
        if !recycled {
            std::fs::create_dir_all(&staging).with_context(|| {
                format!("cannot create {}\n  fix: check free space and permissions in {}", staging.display(), parent.display())
            })?;
        }
        let watch = File::open(&staging).with_context(|| format!("cannot open {}", staging.display()))?;
        // Indexes and manifests of releases other than the served one describe folders that
        // are going or being rewritten (the staging folder's manifest is read first).
        let name_of = |p: PathBuf| p.file_name().map(|n| n.to_os_string());
        let keep = [
            prev.as_deref().map(index::path_of).and_then(name_of),
            prev.as_deref().map(manifest::path_of).and_then(name_of),
            staging_manifest.clone().and_then(name_of),
            recycled_index_path.clone().and_then(name_of),
        ];
        for entry in std::fs::read_dir(&releases)?.flatten() {
            let n = entry.file_name();
            let s = n.to_string_lossy();
            if (s.ends_with(".index") || s.ends_with(".files")) && !keep.contains(&Some(n.clone())) {
                std::fs::remove_file(entry.path()).ok();
            }
        }
        let prev_index = std::sync::Arc::new(prev.as_deref().map(|p| index::Index::load(&index::path_of(p))).unwrap_or_default());
        let old: Vec<PathBuf> = spare.into_iter().map(|(_, _, dir)| dir).collect();
        // Without a thread (the process's thread limit reached) the old releases stay until
        // a later build prunes them.
        let pruning = (!old.is_empty())
            .then(|| {
                std::thread::Builder::new().name("simsite-prune".into()).spawn(move || {
                    for dir in old {
                        std::fs::remove_dir_all(dir).ok();
                    }
                })
            })
            .and_then(|spawned| spawned.ok());
        let listing = {
            let (prev, staging, prev_index) = (prev.clone(), recycled.then(|| staging.clone()), prev_index.clone());
            let spawned = std::thread::Builder::new().name("simsite-list".into()).spawn(move || -> Result<Listing> {
                let mut listing = Listing {
                    prev: prev.as_ref().map(|p| list_release(p, Some(&manifest::path_of(p)), true)).transpose()?.map(|l| l.files).unwrap_or_default(),
                    staging: staging.as_ref().map(|s| list_release(s, staging_manifest.as_deref(), false)).transpose()?.unwrap_or_default(),
                    touched: Vec::new(),
                    restamped: HashMap::default(),
                };
                if let (Some(p), Some(s)) = (&prev, &staging) {
                    relink_changed_pages(&mut listing, p, s, &prev_index);
                }
                if let Some(m) = staging_manifest {
                    std::fs::remove_file(m).ok();
                }
                Ok(listing)
            });
            Some(spawned.context("cannot start a thread to list the releases\n  fix: raise the process or thread limit (ulimit -u) or free memory")?)
        };
        let dev = watch.metadata().with_context(|| format!("cannot read {}", staging.display()))?.dev();
        Ok(Release {
            out: out.to_path_buf(),
            listing: Mutex::new(listing),
            listed: std::sync::OnceLock::new(),
            dev,
            releases,
            staging,
            prev,
            prev_index,
            state: Mutex::new(State::default()),
            dirs: Default::default(),
            served_read: AtomicUsize::new(0),
            kept_unrendered: AtomicUsize::new(0),
            pruning,
            flusher: std::sync::OnceLock::new(),
            reaper: std::sync::OnceLock::new(),
            recycled,
            recycled_whole,
            recycled_index_path,
            recycled_index: std::sync::OnceLock::new(),
            watch,
            lock_path,
            _lock: lock,
        })
    }

    /// The release `out` serves now. A plain folder from an earlier simsite becomes the first
    /// release (moved, once); anything else in the way is an error.
    fn served(out: &Path, releases: &Path) -> Result<Option<PathBuf>> {
        match Self::found(out, releases)? {
            Found::Nothing => return Ok(None),
            Found::Release(target) => return Ok(target.is_dir().then_some(target)),
            Found::OldSite => {}
        }
        let first = releases.join(format!("r-migrated-{}", std::process::id()));
        std::fs::rename(out, &first).with_context(|| format!("cannot move {} into {}", out.display(), releases.display()))?;
        let rel = Path::new(releases.file_name().unwrap()).join(first.file_name().unwrap());
        std::os::unix::fs::symlink(&rel, out).with_context(|| format!("cannot link {} to {}", out.display(), rel.display()))?;
        Ok(Some(first))
    }

    /// What is at `out`; an error when it is in the way (not a release, nor a site
    /// simsite wrote, nor empty).
    fn found(out: &Path, releases: &Path) -> Result<Found> {
        let meta = match std::fs::symlink_metadata(out) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Found::Nothing),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", out.display())),
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(out)?;
            let target = if target.is_absolute() { target } else { out.parent().unwrap_or(Path::new(".")).join(target) };
            if target.parent().and_then(|p| p.canonicalize().ok()) != releases.canonicalize().ok() {
                bail!(
                    "{} is a symbolic link to {}, not to a release simsite made\n  fix: remove the link or choose another --out",
                    out.display(),
                    target.display()
                );
            }
            return Ok(Found::Release(target));
        }
        if !meta.is_dir() {
            bail!("{} exists and is not a folder\n  fix: remove it or choose another --out", out.display());
        }
        // A site an earlier simsite wrote in place: its map page and its api/ files, or its
        // thumbnails (a site built without a model has no api/).
        let empty = std::fs::read_dir(out)?.next().is_none();
        let built = out.join("index.html").is_file() && (out.join("api/manifest.json").is_file() || out.join("thumbs").is_dir());
        if !empty && !built {
            bail!(
                "{} is a folder simsite did not build (no index.html with api/manifest.json or thumbs/); simsite will not replace it\n  \
                 fix: choose another --out, or move the folder away",
                out.display()
            );
        }
        Ok(Found::OldSite)
    }

    /// The served release's copy of `rel`, if any.
    pub fn previous(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.prev.as_ref()?.join(rel)).ok()
    }

    /// Waits for the listing of the releases, so that the files put from now on use what
    /// it found. Not on one of rayon's threads: the listing uses them, and waiting there
    /// could leave it none (the files are then put the slower way).
    pub fn wait_listing(&self) -> Result<()> {
        if rayon::current_thread_index().is_none() {
            self.listing()?;
        }
        Ok(())
    }

    /// Whether most of these files of the recycled release have left the page cache
    /// (`mostly_uncached`). False in a new release.
    pub fn mostly_uncached<'r>(&self, rels: impl Iterator<Item = &'r str>) -> bool {
        self.recycled && mostly_uncached(&self.staging, rels)
    }

    /// The listing, if it is done (never waits: see `wait_listing`).
    fn listing_now(&self) -> Option<&Listing> {
        if self.listed.get().is_none() && self.listing.lock().unwrap().as_ref().is_some_and(|h| !h.is_finished()) {
            return None;
        }
        self.listing().ok()
    }

    /// What the listing thread found, waiting for it the first time.
    fn listing(&self) -> Result<&Listing> {
        let listed = self.listed.get_or_init(|| {
            let listed = match self.listing.lock().unwrap().take() {
                Some(h) => match h.join() {
                    Ok(r) => r.map_err(|e| format!("{e:#}")),
                    Err(_) => Err("listing the releases' files failed".into()),
                },
                None => Ok(Listing::default()),
            };
            // A rebuild puts about as many files as the served release has: the maps of what
            // is put are sized once, not grown (and copied) a dozen times while the build puts.
            if let Ok(l) = &listed {
                let mut st = self.state.lock().unwrap();
                st.put.reserve(l.prev.len());
                st.index.reserve(self.prev_index.len());
            }
            listed
        });
        listed.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The inode a release's file at `rel` is known to be (the served one's with `served`,
    /// else the staging folder's) without an `lstat`, if its manifest vouches for it.
    fn known_inode(&self, rel: &str, served: bool) -> Option<u64> {
        let l = self.listing_now()?;
        let files = if served { &l.prev } else { &l.staging.files };
        files.get(rel).copied().filter(|&i| i != 0)
    }

    fn target(&self, rel: &str) -> Result<PathBuf> {
        debug_assert!(!rel.starts_with('/') && !rel.split('/').any(|c| c == ".." || c.is_empty()), "{rel}");
        self.flusher.get_or_init(|| Flusher::start(self.staging.clone()));
        let listed_dirs = self.listing_now().map(|l| &l.staging.folders);
        let path = self.staging.join(rel);
        let dir = path.parent().unwrap().to_path_buf();
        if self.dirs.read().unwrap().contains(&dir) {
            return Ok(path);
        }
        let mut at = self.staging.clone();
        let mut made = Vec::new();
        // Whether every folder on the way is already there (in a recycled release), so that
        // nothing needs making: an item's own folder, one per page, usually is.
        let mut all_there = self.recycled;
        for c in Path::new(rel).parent().into_iter().flat_map(|p| p.components()) {
            at.push(c);
            made.push(at.clone());
            // A folder the listing found (a real folder then) is one still: the build removes
            // nothing on a path to a file of its own before the commit.
            let listed = || at.strip_prefix(&self.staging).ok().and_then(|r| r.to_str()).is_some_and(|r| listed_dirs.is_some_and(|d| d.contains_key(r)));
            if !self.recycled || listed() || self.dirs.read().unwrap().contains(&at) {
                continue;
            }
            // A recycled release is not trusted to hold a folder where this one has one: a
            // symbolic link there (an old site's `thumbs -> /elsewhere`) would lead writes
            // out of the site, and a file would stop them. Either goes.
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    std::fs::remove_file(&at).ok();
                    all_there = false;
                }
                Err(_) => all_there = false,
            }
        }
        if !all_there {
            made.iter().for_each(|d| self.touch(d));
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        self.dirs.write().unwrap().extend(made);
        Ok(path)
    }

    /// Puts a file at `path` in a recycled staging folder: whatever is there goes first
    /// (unlinked, so an inode the served release shares is never written into), then `make`
    /// makes the file. Not a rename over the old file: ext4 (auto_da_alloc) flushes a file
    /// that replaces another at once, a disk write per file. The staging folder is not
    /// served, so nobody sees the moment between.
    fn install(&self, path: &Path, make: impl Fn(&Path) -> std::io::Result<()>) -> Result<()> {
        self.install_over(path, std::fs::symlink_metadata(path).ok().map(|m| m.is_dir()), make)
    }

    /// `install` where what is at `path` is known already (`now`: `Some(true)` a folder,
    /// `Some(false)` anything else, `None` nothing).
    fn install_over(&self, path: &Path, now: Option<bool>, make: impl Fn(&Path) -> std::io::Result<()>) -> Result<()> {
        self.touch(path);
        let cleared = match now {
            Some(true) => std::fs::remove_dir_all(path),
            Some(false) => self.unlink(path),
            None => Ok(()),
        };
        // What could not be removed must not be written through: it may be a file the
        // served release shares.
        if let Err(e) = cleared.or_else(|e| if e.kind() == ErrorKind::NotFound { Ok(()) } else { Err(e) }) {
            return Err(e).with_context(|| {
                format!("cannot replace {}\n  fix: check the permissions of {}", path.display(), self.releases.display())
            });
        }
        make(path).with_context(|| self.cannot_write(path))
    }

    /// Removes the file (not a folder) at `path` from the staging folder; its inode, if
    /// this was its last link, is freed by the reaper's thread.
    fn unlink(&self, path: &Path) -> std::io::Result<()> {
        self.reaper.get_or_init(Reaper::start).unlink(path)
    }

    /// Notes that the folder holding `path` gets an entry made or removed.
    fn touch(&self, path: &Path) {
        if self.recycled {
            self.state.lock().unwrap().touched.insert(path.parent().unwrap().to_path_buf());
        }
    }

    /// The error of a write into the staging folder that failed.
    fn cannot_write(&self, path: &Path) -> String {
        format!("cannot write {}\n  fix: check free space in {}", path.display(), self.releases.display())
    }

    /// Puts a file at `path` with `make` (writing or linking): directly into an empty
    /// staging folder, through `install` into a recycled one. System calls are what a
    /// rebuild costs, so each one saved counts.
    fn place(&self, path: &Path, make: impl Fn(&Path) -> std::io::Result<()>) -> Result<()> {
        if self.recycled {
            return self.install(path, make);
        }
        make(path).with_context(|| self.cannot_write(path))
    }

    /// Makes `path` (the staging folder's `rel`) the inode of `from` (a served release's
    /// file or a cache file, `fm` its metadata), unless it already is. Returns whether it
    /// made a new link (which moves the inode's change time).
    /// With `copy`, a file that cannot be linked (another device) is copied; the inode then
    /// at `path` is returned too (0 for a copy).
    fn link_in(&self, rel: &str, path: &Path, from: &Path, fm: FileId, copy: bool) -> Result<(bool, u64)> {
        let copied = std::cell::Cell::new(false);
        let make = |p: &Path| {
            // Copied where it cannot be linked (another device, no hard links), never over
            // a file already there, which could be one the served release shares.
            std::fs::hard_link(from, p).or_else(|e| match copy && e.kind() != ErrorKind::AlreadyExists {
                true => std::fs::copy(from, p).map(|_| copied.set(true)),
                false => Err(e),
            })
        };
        match self.recycled.then(|| self.known_inode(rel, false)) {
            // The staging folder's manifest vouches for its file: no need to look.
            Some(Some(ino)) if fm.dev == self.dev && ino == fm.ino => return Ok((false, ino)),
            Some(Some(_)) => self.install_over(path, Some(false), make)?,
            Some(None) if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && FileId::of(&m) == fm) => return Ok((false, fm.ino)),
            _ => self.place(path, make)?,
        }
        Ok((true, if copied.get() { 0 } else { fm.ino }))
    }

    /// Notes that `rel` is in the release: `changed` from the served one, its index entry
    /// (if its bytes are known), its inode (0 if not known).
    fn record(&self, rel: &str, changed: bool, entry: Option<index::Entry>, ino: u64) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        if st.put.insert(rel.to_string(), ino).is_some() {
            bail!("internal error: {rel} published twice");
        }
        if changed {
            st.changed.insert(rel.to_string());
        }
        if let Some(e) = entry {
            st.index.push((index::key(rel), e));
        }
        Ok(())
    }

    /// Whether the served file `prev` (metadata `pm`) holds `bytes` (digest `digest`): by
    /// the served release's index when its stamp still matches, else by reading it.
    fn served_holds(&self, rel: &str, prev: &Path, pm: &Metadata, bytes: &[u8], digest: &index::Digest) -> bool {
        if !pm.is_file() || pm.len() != bytes.len() as u64 {
            return false;
        }
        if let Some(e) = self.prev_index.get(rel).filter(|e| self.vouched(rel, e, pm)) {
            return e.digest == *digest;
        }
        self.served_read.fetch_add(1, Ordering::Relaxed);
        std::fs::read(prev).is_ok_and(|b| b == bytes)
    }

    /// Whether the served file at `rel` (metadata `pm`) is as its index entry `e` says:
    /// untouched since it was published, or since this build linked it in.
    fn vouched(&self, rel: &str, e: &index::Entry, pm: &Metadata) -> bool {
        let stamp = index::stamp(pm);
        e.stamp == stamp || self.listing_now().is_some_and(|l| l.restamped.get(rel) == Some(&stamp))
    }

    /// Puts `bytes` at `rel` (a relative path with `/`). Thread-safe.
    pub fn put(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        self.put_made_from(rel, bytes, index::NO_INPUT)
    }

    /// Puts at `rel` the bytes that `render` makes from inputs whose digest is `input`
    /// (everything the bytes depend on: the data, the templates, the program). When the
    /// served release's file was made from the same inputs and is untouched since (its
    /// index says so), it is kept without rendering at all.
    pub fn put_rendered(&self, rel: &str, input: index::Digest, render: impl FnOnce() -> Result<Vec<u8>>) -> Result<()> {
        let known = self.prev_index.get(rel).filter(|e| input != index::NO_INPUT && e.input == input);
        if let (Some(e), Some(prev)) = (known, self.prev.as_ref().map(|p| p.join(rel))) {
            if let Ok(pm) = std::fs::symlink_metadata(&prev) {
                if pm.is_file() && self.vouched(rel, &e, &pm) {
                    let path = self.target(rel)?;
                    let stamp = self.keep_prev(rel, &path, &prev, &pm)?;
                    self.kept_unrendered.fetch_add(1, Ordering::Relaxed);
                    return self.record(rel, false, stamp.map(|stamp| index::Entry { stamp, ..e }), pm.ino());
                }
            }
        }
        self.put_made_from(rel, &render()?, input)
    }

    /// Links the served file `prev` (metadata `pm`) in at `path` (the staging folder's
    /// `rel`); returns the stamp the file has afterwards (a new link moves its change time).
    fn keep_prev(&self, rel: &str, path: &Path, prev: &Path, pm: &Metadata) -> Result<Option<u64>> {
        Ok(if self.link_in(rel, path, prev, FileId::of(pm), false)?.0 {
            std::fs::symlink_metadata(path).map(|m| index::stamp(&m)).ok()
        } else {
            Some(index::stamp(pm))
        })
    }

    /// Keeps a file whose bytes equal the served file's (metadata `pm`; `bytes`, digest
    /// `digest`) in the recycled copy at `path`, when that copy is its own file (one link, the
    /// served file's owner and mode, this user's) in a release published whole: left alone
    /// when that release's index says it holds these bytes and it is untouched since,
    /// else rewritten with them and the served file's modification time. `None`: it is
    /// linked to the served file instead (`keep_prev`), as it is whenever that fails. Either
    /// way rsync and CDN sync see the same size and time, and move nothing. Linking would
    /// leave the two releases sharing the inode, and the next build that changes the file
    /// (the next night's item JSONs, after a night with nothing new) would have to unlink it
    /// and make a new one, which ext4 makes slow after many unlinks (see `put_made_from`);
    /// its own copy is written where it is.
    fn keep_own(&self, rel: &str, path: &Path, pm: &Metadata, bytes: &[u8], digest: &index::Digest) -> Option<Metadata> {
        // Not when the copy is the served file already (the manifest says so without a look).
        if !self.recycled_whole || self.known_inode(rel, false) == Some(pm.ino()) {
            return None;
        }
        let m = std::fs::symlink_metadata(path).ok()?;
        // Another user's copy (a site a group shares) could not be given the served time,
        // and one of another owner or mode would show rsync a change.
        // SAFETY: `geteuid` takes no arguments and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !m.is_file() || m.nlink() != 1 || m.ino() == pm.ino() || m.uid() != me || (m.uid(), m.gid(), m.mode()) != (pm.uid(), pm.gid(), pm.mode()) {
            return None;
        }
        // Its stamp (inode, size, times) as the index took it when the release was
        // published: not written since. Sizes and times alone could not say so where the
        // file system keeps whole seconds.
        let index = self.recycled_index.get_or_init(|| self.recycled_index_path.as_deref().map(index::Index::load).unwrap_or_default());
        if index.get(rel).is_some_and(|e| e.stamp == index::stamp(&m) && e.digest == *digest) {
            return Some(m);
        }
        overwrite_own(path, bytes, Some(pm.modified().ok()?)).ok()?.ok()
    }

    /// Puts `bytes`, made from `input`, at `rel`.
    fn put_made_from(&self, rel: &str, bytes: &[u8], input: index::Digest) -> Result<()> {
        let path = self.target(rel)?;
        let digest = index::digest(bytes);
        // When the served release's index says its file holds other bytes, the file is not
        // looked at: these bytes are new either way (were it edited by hand since, it would
        // not be kept as it is).
        let other = self.prev_index.get(rel).is_some_and(|e| e.digest != digest);
        if let Some(prev) = self.prev.as_ref().map(|p| p.join(rel)).filter(|_| !other) {
            if let Ok(pm) = std::fs::symlink_metadata(&prev) {
                if self.served_holds(rel, &prev, &pm, bytes, &digest) {
                    if let Some(m) = self.keep_own(rel, &path, &pm, bytes, &digest) {
                        return self.record(rel, false, Some(index::Entry { stamp: index::stamp(&m), digest, input }), m.ino());
                    }
                    let stamp = self.keep_prev(rel, &path, &prev, &pm)?;
                    return self.record(rel, false, stamp.map(|stamp| index::Entry { stamp, digest, input }), pm.ino());
                }
            }
        }
        // Changed since the served release: written whatever the recycled file holds. A
        // recycled file that is nobody else's (one link: not the served release's, not the
        // cache's) is overwritten where it is. Replacing it instead would free an inode and
        // take another for every changed file of every build, and ext4 avoids reusing
        // recently freed inodes by scanning past them: after a few builds that made creating
        // files ten times slower (62 s instead of 4 s for 100,000 item JSONs).
        let written = std::cell::Cell::new(None);
        let write = |p: &Path| write_new(p, bytes).map(|m| written.set(Some(m)));
        if self.recycled {
            match overwrite_own(&path, bytes, None).with_context(|| self.cannot_write(&path))? {
                Ok(w) => written.set(Some(w)),
                Err(now) => self.install_over(&path, now, write)?,
            }
        } else {
            write(&path).with_context(|| self.cannot_write(&path))?;
        }
        let written = written.into_inner();
        let entry = written.as_ref().map(|m| index::Entry { stamp: index::stamp(m), digest, input });
        self.record(rel, true, entry, written.map_or(0, |m| m.ino()))
    }

    /// Puts a copy of the file `src` at `rel` (hard-linked where it can be: `src` must never
    /// be modified in place, as the cache's content-addressed files are not).
    pub fn put_file(&self, rel: &str, src: &Path) -> Result<()> {
        self.put_file_known(rel, src, None)
    }

    /// `put_file` where `src`'s identity may be known already (`known`: a listing of the
    /// cache found it), which saves a `stat` of it.
    pub fn put_file_known(&self, rel: &str, src: &Path, known: Option<FileId>) -> Result<()> {
        let path = self.target(rel)?;
        let sid = match known {
            Some(id) => id,
            None => FileId::of(&std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?),
        };
        // The served release's file is `src` itself when its manifest says so: unchanged,
        // with no need to look at it.
        if sid.dev == self.dev && self.known_inode(rel, true) == Some(sid.ino) {
            let (_, ino) = self.link_in(rel, &path, src, sid, false)?;
            return self.record(rel, false, None, ino);
        }
        if let Some(prev) = self.prev.as_ref().map(|p| p.join(rel)) {
            if let Ok(pm) = std::fs::symlink_metadata(&prev) {
                if pm.is_file() && same_file(&prev, &pm, src, sid) {
                    let (_, ino) = self.link_in(rel, &path, &prev, FileId::of(&pm), false)?;
                    return self.record(rel, false, None, ino);
                }
            }
        }
        let (_, ino) = self.link_in(rel, &path, src, sid, true)?;
        self.record(rel, true, None, ino)
    }

    /// Keeps, unchanged, the served release's files that this build does not make and
    /// `keep` selects (another command's pages, such as `eval/`). They are carried over when
    /// the release is committed, in the same pass over the served release that lists what
    /// the new one no longer has.
    pub fn carry(&self, keep: fn(&str) -> bool) {
        self.state.lock().unwrap().carry = Some(keep);
    }

    /// Whether anything put so far differs from the served release.
    pub fn changed_so_far(&self) -> bool {
        !self.state.lock().unwrap().changed.is_empty()
    }

    /// Deletes what the recycled release had and this one does not (`listed`: its files
    /// and folders when the build began, a killed build's temporary files among them), and
    /// the folders that leaves empty.
    fn remove_stale(&self, listed: &manifest::Listed, put: &HashMap<String, u64>, dirs: &HashSet<PathBuf>) -> Result<()> {
        let mut emptied = BTreeSet::new();
        // Hundreds of thousands of lookups, most of them finding the file put.
        let stale: Vec<&String> = listed.files.par_iter().map(|(r, _)| r).filter(|r| !put.contains_key(*r)).collect();
        for rel in stale {
            let path = self.staging.join(rel);
            self.touch(&path);
            match self.unlink(&path) {
                Ok(()) => {}
                // Gone since (with its folder, now a file: `ENOTDIR`), or now a folder the build
                // made where the file (or a link) was.
                Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {}
                Err(_) if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {}
                Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
            }
            emptied.insert(path.parent().unwrap().to_path_buf());
        }
        // Folders the release does not use go too, even empty ones: the release's manifest
        // names only the folders of its files.
        let unused: Vec<PathBuf> = listed.folders.par_iter().map(|(r, _)| self.staging.join(r)).filter(|p| !dirs.contains(p)).collect();
        emptied.extend(unused);
        // Deepest first; a folder that still has something in it stays.
        for dir in emptied.iter().rev() {
            let mut d = dir.as_path();
            while d != self.staging && std::fs::remove_dir(d).is_ok() {
                self.touch(d);
                d = d.parent().unwrap();
            }
        }
        Ok(())
    }

    /// The served release's files (`listed`) that the new one keeps (`carry`) are linked in,
    /// and the rest it does not have are returned, sorted (removed by this release).
    fn carry_and_list_removed(&self, listed: &HashMap<String, u64>) -> Result<Vec<String>> {
        let Some(prev) = self.prev.clone() else { return Ok(Vec::new()) };
        let keep = self.state.lock().unwrap().carry;
        let mut removed = Vec::new();
        // The served files the build did not put (most files, it puts).
        let missing: Vec<String> = {
            let st = self.state.lock().unwrap();
            listed.par_iter().map(|(rel, _)| rel).filter(|rel| !st.put.contains_key(*rel)).cloned().collect()
        };
        for rel in missing {
            if keep.is_some_and(|k| k(&rel)) {
                let path = self.target(&rel)?;
                let from = prev.join(&rel);
                let pm = std::fs::symlink_metadata(&from).with_context(|| format!("cannot read {}", from.display()))?;
                let (_, ino) = self.link_in(&rel, &path, &from, FileId::of(&pm), false)?;
                self.record(&rel, false, None, ino)?;
            } else {
                removed.push(rel);
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// Switches `out` to the new release (one rename), writes the changed-path lists into
    /// `report_dir`, and prunes old releases.
    pub fn commit(mut self, report_dir: &Path) -> Result<Changes> {
        self.listing()?;
        let listing = self.listed.take().and_then(|l| l.ok()).unwrap_or_default();
        let removed = self.carry_and_list_removed(&listing.prev)?;
        let State { put, changed, index: entries, touched, .. } = std::mem::take(&mut *self.state.lock().unwrap());
        let (parent, name) = names(&self.out)?;
        let id = format!("r{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"), std::process::id());
        let release = self.releases.join(&id);
        let Listing { prev: listed_prev, staging: listed, touched: relinked_in, restamped } = listing;
        let listing_relinked = restamped.len();
        crate::fsutil::drop_beside((listed_prev, restamped));
        // The index, and the manifest's files grouped by folder, beside the removals: none
        // of them needs another.
        let (grouped, made) = rayon::join(
            || {
                // Only saves reads next time: a build goes on without it.
                crate::fsutil::atomic_write(&index::path_of(&release), &index::encode(entries)).ok();
                manifest::Folders::of(put.iter().map(|(s, &ino)| (s.as_str(), ino)))
            },
            || -> Result<_> {
                let dirs = std::mem::take(&mut *self.dirs.write().unwrap());
                if self.recycled {
                    self.remove_stale(&listed, &put, &dirs)?;
                }
                // The manifest is made once nothing more changes in the release's folders.
                // Folders nothing was made or removed in since the listing keep the stamps it
                // read. `remove_stale` noted its folders in the state taken after the one above.
                let mut touched = touched;
                touched.extend(std::mem::take(&mut self.state.lock().unwrap().touched));
                touched.extend(relinked_in);
                let untouched: HashMap<String, manifest::Stamp> = listed
                    .folders
                    .par_iter()
                    .filter_map(|(rel, st)| Some((rel, (*st)?)))
                    .filter(|(rel, _)| !touched.contains(&self.staging.join(rel)))
                    .map(|(rel, st)| (rel.clone(), st))
                    .collect();
                crate::fsutil::drop_beside((dirs, listed, touched));
                Ok(untouched)
            },
        );
        let untouched = made?;
        if let Some(m) = grouped.and_then(|g| g.write(&self.staging, &untouched)) {
            crate::fsutil::atomic_write(&manifest::path_of(&release), &m).ok();
        }
        let files = put.len();
        // A build killed between its switch and the naming of its lists left them under
        // their pending names (`.next-<its release>`). That release is the one served now:
        // its paths join tonight's lists, or a sync that follows the lists would never see
        // them. (Those still in this release stay changed, the others removed.)
        let pending = |file: &str, of: &str| report_dir.join(format!("{file}.next-{of}"));
        let lists = {
            let mut changed_list: BTreeSet<&str> = changed.iter().map(String::as_str).collect();
            let mut removed_list: BTreeSet<&str> = removed.iter().map(String::as_str).collect();
            let served_id = self.prev.as_ref().and_then(|p| p.file_name()).and_then(|n| n.to_str());
            let left: Vec<String> = served_id
                .map(|sid| PATH_LISTS.map(|f| std::fs::read_to_string(pending(f, sid)).unwrap_or_default()).concat())
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect();
            for p in left.iter().filter(|p| !p.is_empty()) {
                if put.contains_key(p.as_str()) {
                    changed_list.insert(p);
                    removed_list.remove(p.as_str());
                } else {
                    removed_list.insert(p);
                    changed_list.remove(p.as_str());
                }
            }
            let list = |v: &BTreeSet<&str>| v.iter().map(|p| format!("{p}\n")).collect::<String>();
            [(PATH_LISTS[0], list(&changed_list), "changed"), (PATH_LISTS[1], list(&removed_list), "removed")]
        };
        crate::fsutil::drop_beside((put, untouched));
        if let Some(f) = self.flusher.take() {
            f.stop();
        }
        // The changed- and removed-path lists are written before the switch (a list that
        // cannot be written stops the build with the old site served) and take their names
        // after it, so a sync that follows them never misses a night that was published.
        let changed: Vec<String> = changed.into_iter().collect();
        for (file, text, what) in &lists {
            crate::fsutil::atomic_write(&pending(file, &id), text.as_bytes())
                .with_context(|| format!("cannot write the {what}-path list into {}", report_dir.display()))?;
        }
        // The new release is served only once its files are on disk: a write the kernel
        // could not finish (a failing disk, a full or lost network filesystem) stops here.
        crate::fsutil::sync_through(&self.watch).with_context(|| {
            format!(
                "cannot write the new release {} to disk\n  the site was left as it was; \
                 fix: check the disk and the kernel log (dmesg) for {}, then build again",
                self.staging.display(),
                parent.display()
            )
        })?;
        if let Some(p) = &self.recycled_index_path {
            std::fs::remove_file(p).ok();
        }
        std::fs::rename(&self.staging, &release).with_context(|| format!("cannot rename {} to {}", self.staging.display(), release.display()))?;
        let link = parent.join(format!("{name}.new-{}", std::process::id()));
        std::fs::remove_file(&link).ok();
        let rel_target = Path::new(self.releases.file_name().unwrap()).join(&id);
        std::os::unix::fs::symlink(&rel_target, &link).with_context(|| format!("cannot create the link {}", link.display()))?;
        std::fs::rename(&link, &self.out).with_context(|| format!("cannot switch {} to the new release", self.out.display()))?;
        crate::fsutil::sync_filesystem(&parent).ok();
        for (file, _, what) in &lists {
            std::fs::rename(pending(file, &id), report_dir.join(file))
                .with_context(|| format!("cannot name the {what}-path list {} (the new site is served)", report_dir.join(file).display()))?;
        }
        // Now that tonight's lists carry them, pending lists of earlier builds go (those of
        // a release never served too).
        for e in std::fs::read_dir(report_dir).into_iter().flatten().flatten() {
            if e.file_name().to_str().is_some_and(|n| PATH_LISTS.iter().any(|f| n.starts_with(&format!("{f}.next")))) {
                std::fs::remove_file(e.path()).ok();
            }
        }
        let changes = Changes {
            files,
            changed,
            removed,
            release: id.clone(),
            served_read: self.served_read.load(Ordering::Relaxed),
            kept_unrendered: self.kept_unrendered.load(Ordering::Relaxed),
            relinked_early: listing_relinked,
        };
        if let Some(r) = self.reaper.take() {
            r.stop();
        }
        if let Some(p) = self.pruning.take() {
            p.join().ok();
        }
        Ok(changes)
    }
}

/// Writes `bytes` over the recycled release's file at `path` from its start, then cuts it
/// to their length, if that file is nobody else's (a file with one link): never truncating
/// it to zero first, which ext4 (auto_da_alloc) answers by flushing the file at close, a
/// disk write per file. The file is opened without an `lstat` first (one walk of the path,
/// not two), never through a symbolic link. Returns its metadata once written; or, when it
/// is not such a file, what is at `path` (`Some(true)` a folder, `Some(false)` anything
/// else, `None` nothing).
/// With `time`, the file is given that modification time.
fn overwrite_own(path: &Path, bytes: &[u8], time: Option<std::time::SystemTime>) -> std::io::Result<std::result::Result<Metadata, Option<bool>>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Not blocking either, should a named pipe be there.
    let mut f = match File::options().write(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Err(None)),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => return Ok(Err(Some(true))),
        // A symbolic link (`ELOOP`), a pipe or socket, a file it may not write: replaced.
        Err(_) => return Ok(Err(Some(false))),
    };
    let m = f.metadata()?;
    if !m.is_file() || m.nlink() != 1 {
        return Ok(Err(Some(m.is_dir())));
    }
    // Writing part of a block reads the rest of it first: from the disk when it is no
    // longer cached, as a recycled release's files rarely are a night after they were
    // written (a read waited for per file: 1.7 s of a 112,000-item night's threads). The
    // block the bytes end in, when the file had it, is made to read as zeros instead (it
    // stays allocated: nothing is freed, so nothing is discarded).
    let (bs, end) = (m.blksize().max(512), bytes.len() as u64);
    let last = end / bs * bs;
    if end % bs != 0 && last < m.len() && crate::fsutil::uncached(&f, last, bs) {
        crate::fsutil::zero_blocks(&f, last, bs);
    }
    f.write_all(bytes)?;
    // A file the bytes cover is not cut (a truncate is one of the dearer calls on ext4,
    // and half of the files do not shrink).
    if m.len() > bytes.len() as u64 {
        f.set_len(bytes.len() as u64)?;
    }
    if let Some(t) = time {
        f.set_modified(t)?;
    }
    Ok(Ok(f.metadata()?))
}

/// Makes a new file at `path` holding `bytes`; returns its metadata once written.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<Metadata> {
    use std::io::Write;
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.metadata()
}

/// Whether the served file `prev` (metadata `pm`) and `src` (identity `sid`) hold the same bytes.
fn same_file(prev: &Path, pm: &Metadata, src: &Path, sid: FileId) -> bool {
    FileId::of(pm) == sid
        || (std::fs::metadata(src).is_ok_and(|sm| sm.is_file() && pm.len() == sm.len())
            && std::fs::read(prev).ok().zip(std::fs::read(src).ok()).is_some_and(|(x, y)| x == y))
}

/// Frees the files a build unlinks from its recycled release (old versions of pages,
/// thumbnails and the like that no release keeps any more), on a thread of its own.
/// Freeing a file can wait on the disk: on a filesystem mounted with `discard` (as on this
/// project's VM) ext4 discards the freed blocks before the call that drops the inode
/// returns, ~0.25 ms a file, and a +1 % rebuild of 111,000 items frees ~11,000 files.
/// The build's thread opens the file (`O_PATH`: no access to its bytes) and unlinks it;
/// the inode lives until the reaper closes that descriptor, so the wait falls there.
struct Reaper {
    /// None when no thread could be started: files are then freed where they are unlinked.
    reaper: Option<(std::sync::mpsc::SyncSender<File>, std::thread::JoinHandle<()>)>,
}

impl Reaper {
    fn start() -> Reaper {
        // Bounded, so that descriptors cannot pile up: a build puts files slower than the
        // reaper frees them, so it hardly ever waits here.
        let (send, taken) = std::sync::mpsc::sync_channel::<File>(256);
        let thread = std::thread::Builder::new().name("simsite-reaper".into()).spawn(move || taken.into_iter().for_each(drop));
        Reaper { reaper: thread.ok().map(|thread| (send, thread)) }
    }

    /// Unlinks the file at `path`, leaving the freeing of its inode to the reaper's thread
    /// (done here if the file cannot be opened first).
    fn unlink(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let Some((send, _)) = &self.reaper else {
            return std::fs::remove_file(path);
        };
        let held = File::options().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(path).ok();
        std::fs::remove_file(path)?;
        if let Some(f) = held {
            send.send(f).ok();
        }
        Ok(())
    }

    /// Waits until everything unlinked is freed.
    fn stop(self) {
        if let Some((send, thread)) = self.reaper {
            drop(send);
            thread.join().ok();
        }
    }
}

/// Calls `syncfs` once a second while a build writes its release. The files are on disk
/// before the switch either way (`commit` flushes them all); this spreads the writing over
/// the build instead of leaving all of it to the end: a +1 % rebuild of 111,000 items
/// rewrites ~1 GB of pages and JSON, and its publish stage took 3.8-4.2 s instead of
/// 6.8-8.5 s (BENCHMARKS.md).
struct Flusher {
    /// None when no thread could be started: `commit` then flushes everything at its end.
    flusher: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Flusher {
    fn start(dir: PathBuf) -> Flusher {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("simsite-flush".into()).spawn(move || {
            // Ends when `stop` is sent or dropped (a build that fails drops its Release).
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(std::time::Duration::from_secs(1)) {
                crate::fsutil::sync_filesystem(&dir).ok();
            }
        });
        Flusher { flusher: thread.ok().map(|thread| (stop, thread)) }
    }

    fn stop(self) {
        if let Some((stop, thread)) = self.flusher {
            drop(stop);
            thread.join().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bytes` to a new file at `p`, flushed and dropped from the page cache (as a
    /// recycled release's files are a night later).
    fn evicted(p: &Path, bytes: &[u8]) {
        use std::os::fd::AsRawFd;
        std::fs::write(p, bytes).unwrap();
        let f = File::open(p).unwrap();
        f.sync_all().unwrap();
        // SAFETY: a plain system call on an open descriptor.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }

    #[test]
    fn a_recycled_file_is_overwritten_exactly_cached_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let bytes = |n: usize, seed: u8| (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect::<Vec<u8>>();
        // Old and new lengths: within one block, across blocks, shrinking and growing, and
        // ending on a block's end.
        for (old, new) in [(3000, 1000), (1000, 3000), (3000, 5000), (9000, 5000), (9000, 8192), (5000, 4096), (100, 100), (12_000, 1)] {
            for cached in [false, true] {
                if cached {
                    std::fs::write(&p, bytes(old, 1)).unwrap();
                } else {
                    evicted(&p, &bytes(old, 1));
                }
                let want = bytes(new, 2);
                let ino = std::fs::metadata(&p).unwrap().ino();
                let meta = overwrite_own(&p, &want, None).unwrap().unwrap();
                assert_eq!(std::fs::read(&p).unwrap(), want, "{old} → {new} bytes, cached: {cached}");
                assert_eq!((meta.ino(), meta.len()), (ino, new as u64), "written where it was");
            }
        }
        // Not written: a file another release shares, a symbolic link (nor what it leads
        // to), a folder, nothing.
        let other = dir.path().join("other");
        std::fs::hard_link(&p, &other).unwrap();
        assert_eq!(overwrite_own(&p, b"x", None).unwrap().unwrap_err(), Some(false));
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&other, &p).unwrap();
        let before = std::fs::read(&other).unwrap();
        assert_eq!(overwrite_own(&p, b"x", None).unwrap().unwrap_err(), Some(false));
        assert_eq!(std::fs::read(&other).unwrap(), before);
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        assert_eq!(overwrite_own(&p, b"x", None).unwrap().unwrap_err(), Some(true));
        assert_eq!(overwrite_own(&dir.path().join("none"), b"x", None).unwrap().unwrap_err(), None);
    }
}
