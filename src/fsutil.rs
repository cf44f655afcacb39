//! Writes that never leave a half-written file: a temporary file in the target folder,
//! then a rename. Writes that would not change a file's bytes are skipped, so its mtime
//! stays and rsync/CDN sync move only what changed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file's identity, its device and inode: all that publishing needs to know that a
/// release's file is the very one it would link in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(m: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId { dev: m.dev(), ino: m.ino() }
    }
}

/// A name for this process that no other process writing to the same folder has: the
/// host, the process id and the start time in nanoseconds. The id alone is not enough
/// where many machines share a folder and each runs simsite in a container, as PID 1.
/// Made once (a system call per file adds up).
pub fn process_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        format!("{}-{}-{nanos:x}", if host.is_empty() { "host" } else { &host }, std::process::id())
    })
}

/// Flushes the filesystem that holds the open file or folder `f` (syncfs). The error is any
/// the kernel met writing that filesystem's files back to disk since `f` was opened,
/// whoever started the write-back (the kernel tells each open descriptor of an error once).
pub fn sync_through(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs takes an open descriptor, which `f` keeps open for the call.
    match unsafe { libc::syncfs(f.as_raw_fd()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// `sync_through` the filesystem holding `path`.
pub fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    sync_through(&std::fs::File::open(path)?)
}

/// Rewrites a cache made of part files (the embeddings' segments, the FITS header values'
/// parts) so that it holds only `keep`, `rows` a part: the kept entries are written as new
/// parts first (`write` makes one and returns its path), then the old files are removed, so
/// a kill in between leaves duplicates, never a loss. Returns the new parts.
pub fn rewrite_parts<K>(
    old: &[PathBuf],
    keep: &[K],
    rows: usize,
    mut write: impl FnMut(&[K]) -> std::io::Result<PathBuf>,
) -> std::io::Result<Vec<PathBuf>> {
    let parts = keep.chunks(rows.max(1)).map(&mut write).collect::<std::io::Result<Vec<_>>>()?;
    for p in old.iter().filter(|p| !parts.contains(p)) {
        std::fs::remove_file(p)?;
    }
    Ok(parts)
}

pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        process_tag(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        // The folder is made only when it is missing: a system call saved per file.
        let mut f = match std::fs::File::create(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                std::fs::File::create(&tmp)?
            }
            other => other?,
        };
        f.write_all(bytes)?;
        f.flush()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: the temp file is useless either way, and the original error matters.
        std::fs::remove_file(&tmp).ok();
    }
    result
}

/// Makes `dst` another name of the file `src` (a hard link), making `dst`'s folder when it
/// is missing. For content-addressed files: an existing `dst` already holds the same bytes,
/// unless it is empty (a file renamed into place just before a power cut can have lost
/// them), which is replaced. A link is whole or absent, so a killed build never leaves half
/// of one.
pub fn link_content(src: &Path, dst: &Path) -> std::io::Result<()> {
    let link = || match std::fs::hard_link(src, dst) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::metadata(dst).is_ok_and(|m| m.len() == 0) {
                std::fs::remove_file(dst)?;
                return std::fs::hard_link(src, dst);
            }
            Ok(())
        }
        other => other,
    };
    match link() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && src.exists() => {
            std::fs::create_dir_all(dst.parent().unwrap_or(Path::new(".")))?;
            link()
        }
        other => other,
    }
}

/// Makes `dir` if needed and proves a file can be written in it (and removed), so a build
/// learns of a read-only or foreign-owned folder before hours of work, not after.
pub fn check_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".write-test-{}", process_tag()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// Writes `bytes` unless the file already holds exactly them. Returns whether it wrote.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_file() && meta.len() == bytes.len() as u64 && std::fs::read(path)? == bytes {
            return Ok(false);
        }
    }
    atomic_write(path, bytes)?;
    Ok(true)
}

/// Threads for work that mostly waits on the disk, as a night's work does once the page
/// cache has dropped the last builds: more threads than cores keep the disk busy.
pub const IO_THREADS: usize = 16;

/// Drops `x` on a thread of its own: freeing a build's maps of hundreds of thousands of
/// paths takes a tenth of a second or more, which the build need not wait for. Dropped
/// here when no thread can start.
pub fn drop_beside<T: Send + 'static>(x: T) {
    // Should no thread start, the closure, and `x` in it, is dropped with the error.
    let _ = std::thread::Builder::new().name("simsite-free".into()).spawn(move || drop(x));
}

/// A pool of `IO_THREADS` threads named `simsite-<name>-<i>`, or `None` where none could
/// start (the work then runs on rayon's own threads).
pub fn io_pool(name: &'static str) -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new().num_threads(IO_THREADS).thread_name(move |i| format!("simsite-{name}-{i}")).build().ok()
}

/// `cachestat`'s number, the same on every architecture (libc does not name it yet).
const SYS_CACHESTAT: libc::c_long = 451;

/// Whether the kernel has `cachestat` (Linux 6.5 and later), asked once.
pub fn cachestat_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        // SAFETY: no descriptor and no buffers: the call fails at once, and how says whether
        // the kernel has it.
        let r = unsafe { libc::syscall(SYS_CACHESTAT, -1, 0usize, 0usize, 0u32) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
    })
}

/// Whether the page cache holds none of the bytes `off..off + len` of the open file `f`,
/// asked without reading them (Linux's `cachestat`, 6.5 and later); `false` where it
/// cannot tell.
pub fn uncached(f: &std::fs::File, off: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    if !cachestat_available() {
        return false;
    }
    let range: [u64; 2] = [off, len];
    // nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted.
    let mut stat = [0u64; 5];
    // SAFETY: both pointers are to live arrays of the sizes the call reads and writes.
    let r = unsafe { libc::syscall(SYS_CACHESTAT, f.as_raw_fd(), range.as_ptr(), stat.as_mut_ptr(), 0u32) };
    r == 0 && stat[0] == 0
}

/// Makes the bytes `off..off + len` (whole blocks) of the open file `f` read as zeros,
/// keeping its blocks and its size (`FALLOC_FL_ZERO_RANGE`): a write into part of such a
/// block then reads nothing from the disk. Best effort: where the file system cannot,
/// nothing changes.
pub fn zero_blocks(f: &std::fs::File, off: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on an open descriptor.
    unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE, off as libc::off_t, len as libc::off_t) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_bytes_are_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b.txt");
        assert!(write_if_changed(&p, b"one").unwrap());
        assert!(!write_if_changed(&p, b"one").unwrap());
        assert!(write_if_changed(&p, b"two").unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // No temp files left behind.
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn uncached_tells_a_file_evicted_from_the_page_cache() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(&[7u8; 10_000]).unwrap();
        assert!(!uncached(&f, 0, 4096), "just written, so cached");
        f.sync_all().unwrap();
        // SAFETY: a plain system call on an open descriptor.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let has_cachestat = cachestat_available();
        // Without `cachestat` (before Linux 6.5) it cannot tell, and says "cached".
        assert_eq!(uncached(&f, 4096, 4096), has_cachestat, "evicted");
    }
}

