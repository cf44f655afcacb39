//! Remembered content digests, so a nightly rebuild does not read the whole archive again.
//!
//! Every cache key starts from the blake3 digest of a file's bytes. Reading and hashing a
//! large archive each night costs more than everything else a small change needs, so each
//! build keeps, per file, the digest with the file's identity and change stamps (inode,
//! size, modification and status-change times in nanoseconds). Not the device number: an
//! NFS or Lustre archive has another on every client node (and after a remount), and a
//! cluster's build job lands on any node, which then read the whole archive again. The next build
//! trusts the digest only when all of those are unchanged; any write, `touch`, rename over
//! it or `chmod` changes the status-change time, so an edit is never missed.
//!
//! A file changed within the same clock tick as it was read could keep equal stamps (ext4's
//! timestamps advance by the kernel tick), as git's "racily clean" entries can. A digest is
//! therefore only remembered for files whose stamps are older than the build's start by
//! [`SETTLE`]; newer files are read again next time.
//!
//! Format (`CACHE/file-digests.bin`, written whole by atomic rename): a magic line, the
//! entry count (u64 LE), then per entry the path length (u32 LE) and UTF-8 relative path,
//! dev (written as 0, the field kept so older files still parse), ino, size (u64 LE), mtime
//! and ctime (i64 LE nanoseconds), and the 32-byte digest.

use rustc_hash::FxHashMap as HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8] = b"simsite-file-digests-v1\n";
const FILE: &str = "file-digests.bin";
/// Stamps newer than the build's start minus this are not trusted next time.
pub const SETTLE: Duration = Duration::from_secs(2);

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stamp {
    pub fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: 0,
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec()),
            ctime_ns: m.ctime().saturating_mul(1_000_000_000).saturating_add(m.ctime_nsec()),
        }
    }
}

/// The digests a build may reuse, and the cut-off for remembering new ones.
#[derive(Debug, Default)]
pub struct Memo {
    known: HashMap<String, (Stamp, [u8; 32])>,
    /// Files whose stamps are at or after this (ns since the epoch) are not remembered.
    settled_before_ns: i64,
}

impl Memo {
    /// Loads the memo of the previous build (empty when there is none or it is damaged:
    /// then every file is simply read again).
    pub fn load(cache: &Path) -> Memo {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let settled_before_ns = now.saturating_sub(SETTLE).as_nanos() as i64;
        let known = std::fs::read(cache.join(FILE)).ok().and_then(|b| parse(&b)).unwrap_or_default();
        Memo { known, settled_before_ns }
    }

    /// The remembered digest of `rel`, if the file on disk is the one it was taken from.
    pub fn get(&self, rel: &str, stamp: &Stamp) -> Option<blake3::Hash> {
        self.known.get(rel).filter(|(s, _)| s == stamp).map(|(_, d)| blake3::Hash::from_bytes(*d))
    }

    /// Whether a digest taken now of a file with this stamp may be trusted next time.
    pub fn settled(&self, stamp: &Stamp) -> bool {
        stamp.mtime_ns < self.settled_before_ns && stamp.ctime_ns < self.settled_before_ns
    }
}

fn parse(b: &[u8]) -> Option<HashMap<String, (Stamp, [u8; 32])>> {
    let mut r = b.strip_prefix(MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = r.split_at_checked(n)?;
        r = tail;
        Some(head)
    };
    let u64_at = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
    let count = u64_at(take(8)?);
    let mut known = HashMap::with_capacity_and_hasher(count.min(1 << 24) as usize, Default::default());
    for _ in 0..count {
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let rel = std::str::from_utf8(take(len)?).ok()?.to_string();
        let f = take(40)?;
        let stamp = Stamp {
            dev: u64_at(&f[0..8]),
            ino: u64_at(&f[8..16]),
            size: u64_at(&f[16..24]),
            mtime_ns: u64_at(&f[24..32]) as i64,
            ctime_ns: u64_at(&f[32..40]) as i64,
        };
        let digest: [u8; 32] = take(32)?.try_into().ok()?;
        known.insert(rel, (stamp, digest));
    }
    r.is_empty().then_some(known)
}

/// The memo of this build's files (only these: files gone from the archive are forgotten),
/// as `write` keeps it. `entries` are (relative path, stamp, digest) of settled files.
pub fn to_bytes<'a>(entries: impl Iterator<Item = (&'a str, Stamp, blake3::Hash)>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&0u64.to_le_bytes()); // the count, filled in below
    let mut count = 0u64;
    for (rel, s, d) in entries {
        out.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        out.extend_from_slice(rel.as_bytes());
        for v in [s.dev, s.ino, s.size, s.mtime_ns as u64, s.ctime_ns as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(d.as_bytes());
        count += 1;
    }
    out[MAGIC.len()..MAGIC.len() + 8].copy_from_slice(&count.to_le_bytes());
    out
}

/// Writes what `to_bytes` made into the cache folder `cache` (unless it holds that already).
pub fn write(cache: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::fsutil::write_if_changed(&cache.join(FILE), bytes).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_memo_reads_back_and_damage_means_empty() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.fits");
        std::fs::write(&f, b"x").unwrap();
        let stamp = Stamp::of(&std::fs::metadata(&f).unwrap());
        let digest = blake3::hash(b"x");
        write(d.path(), &to_bytes([("a.fits", stamp, digest), ("b/ü.png", stamp, digest)].into_iter())).unwrap();
        let m = Memo::load(d.path());
        assert_eq!(m.get("a.fits", &stamp), Some(digest));
        assert_eq!(m.get("b/ü.png", &stamp), Some(digest));
        let other = Stamp { ctime_ns: stamp.ctime_ns + 1, ..stamp };
        assert_eq!(m.get("a.fits", &other), None, "a changed status time is a changed file");
        // Just written: not settled.
        assert!(!m.settled(&stamp));
        // Truncated or foreign bytes: nothing is trusted.
        let bytes = std::fs::read(d.path().join(FILE)).unwrap();
        std::fs::write(d.path().join(FILE), &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(Memo::load(d.path()).get("a.fits", &stamp), None);
    }
}
