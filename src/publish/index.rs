//! A release's index: for each file a build wrote from bytes, a digest of those bytes and a
//! stamp of the file that holds them (inode, size, modification and change times). The next
//! build compares its new bytes with the served release's through the index: one `lstat`
//! of the served file instead of reading it, as long as the stamp still matches. A file
//! touched since (even rewritten with the same size) has another change time, and is read
//! and compared as before; a missing or damaged index only costs those reads.
//!
//! Kept beside the release folder as `<release>.index`: it lives and goes with it.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"simsite-index-v2";
/// key, stamp, digest, input.
const ENTRY: usize = 8 + 8 + 16 + 16;

pub type Digest = [u8; 16];

/// What the index holds for one path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Entry {
    pub stamp: u64,
    pub digest: Digest,
    /// For a rendered page, a digest of everything its bytes were made from (see
    /// `Release::put_rendered`); `NO_INPUT` otherwise.
    pub input: Digest,
}

pub const NO_INPUT: Digest = [0; 16];

/// The digest of a file's bytes.
pub fn digest(bytes: &[u8]) -> Digest {
    let mut d = [0u8; 16];
    d.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
    d
}

/// Where a path is filed: its first 8 bytes of blake3. Two paths that collide only cost a
/// read: their files are different inodes, so the stamp cannot match.
pub fn key(rel: &str) -> u64 {
    u64::from_le_bytes(blake3::hash(rel.as_bytes()).as_bytes()[..8].try_into().unwrap())
}

/// The file's identity and times, hashed. Writing a file moves its change time, which no
/// user call can set back.
pub fn stamp(m: &Metadata) -> u64 {
    let mut b = [0u8; 56];
    for (i, v) in [m.dev(), m.ino(), m.size(), m.mtime() as u64, m.mtime_nsec() as u64, m.ctime() as u64, m.ctime_nsec() as u64]
        .into_iter()
        .enumerate()
    {
        b[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
    }
    u64::from_le_bytes(blake3::hash(&b).as_bytes()[..8].try_into().unwrap())
}

/// The index file of the release folder `release`.
pub fn path_of(release: &Path) -> PathBuf {
    super::beside(release, ".index")
}

/// An index read back: keys sorted, their entries beside them, and where each bucket of
/// keys (by their top bits) starts. A build looks a path up once or twice for each of the
/// hundreds of thousands of files it puts; keys are uniform (blake3), so a bucket holds a
/// few keys and a lookup touches three cache lines, where a binary search over the whole
/// index missed the cache at most of its ~19 steps (0.36 s of a 114,000-item night).
#[derive(Default)]
pub struct Index {
    keys: Vec<u64>,
    entries: Vec<Entry>,
    /// `starts[b]..starts[b + 1]`: the keys whose top `bits` bits are `b`.
    starts: Vec<u32>,
    bits: u32,
}

impl Index {
    /// Reads `path`; anything missing or malformed gives an empty index.
    pub fn load(path: &Path) -> Index {
        let Ok(bytes) = std::fs::read(path) else { return Index::default() };
        let Some(body) = bytes.strip_prefix(MAGIC.as_slice()).filter(|b| b.len() % ENTRY == 0) else { return Index::default() };
        let entries: Vec<(u64, Entry)> = body
            .chunks_exact(ENTRY)
            .map(|c| {
                let key = u64::from_le_bytes(c[..8].try_into().unwrap());
                let stamp = u64::from_le_bytes(c[8..16].try_into().unwrap());
                (key, Entry { stamp, digest: c[16..32].try_into().unwrap(), input: c[32..].try_into().unwrap() })
            })
            .collect();
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) || entries.len() >= u32::MAX as usize {
            return Index::default();
        }
        Index::of_sorted(entries)
    }

    /// The index of `entries`, sorted by key with no key twice.
    fn of_sorted(entries: Vec<(u64, Entry)>) -> Index {
        // About four keys a bucket; at least one bucket bit, so the shift below stays in range.
        let bits = (entries.len() / 4).max(2).next_power_of_two().trailing_zeros().min(30);
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        for (i, (k, _)) in entries.iter().enumerate() {
            let b = (k >> (64 - bits)) as usize;
            starts.resize(starts.len().max(b + 1), i as u32);
        }
        starts.resize((1 << bits) + 1, entries.len() as u32);
        let (keys, entries) = entries.into_iter().unzip();
        Index { keys, entries, starts, bits }
    }

    pub fn get(&self, rel: &str) -> Option<Entry> {
        if self.keys.is_empty() {
            return None;
        }
        let k = key(rel);
        let b = (k >> (64 - self.bits)) as usize;
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        self.keys[lo..hi].iter().position(|&x| x == k).map(|i| self.entries[lo + i])
    }

    /// How many entries the index holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The bytes of an index of `entries` (key → entry); a key given twice keeps neither, as
/// the files behind it cannot both be described.
pub fn encode(mut entries: Vec<(u64, Entry)>) -> Vec<u8> {
    entries.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(MAGIC.len() + entries.len() * ENTRY);
    out.extend_from_slice(MAGIC);
    let mut i = 0;
    while i < entries.len() {
        let mut j = i + 1;
        while j < entries.len() && entries[j].0 == entries[i].0 {
            j += 1;
        }
        if j == i + 1 {
            let (k, e) = entries[i];
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&e.stamp.to_le_bytes());
            out.extend_from_slice(&e.digest);
            out.extend_from_slice(&e.input);
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_reads_back_what_was_written_and_nonsense_reads_as_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let e = |s: u64, b: &[u8]| Entry { stamp: s, digest: digest(b), input: digest(&[b, b"-in"].concat()) };
        let entries = vec![(key("b.html"), e(2, b"two")), (key("a.json"), e(1, b"one")), (7, e(3, b"x")), (7, e(4, b"y"))];
        let p = tmp.path().join("r1.index");
        std::fs::write(&p, encode(entries)).unwrap();
        let ix = Index::load(&p);
        assert_eq!(ix.get("a.json"), Some(e(1, b"one")));
        assert_eq!(ix.get("b.html"), Some(e(2, b"two")));
        assert_eq!(ix.get("c.html"), None);
        assert_eq!(ix.len(), 2, "a key given twice is dropped");
        for bad in [&b"simsite-index-v2 short"[..], b"not an index at all, but long enough to look like one", b""] {
            std::fs::write(&p, bad).unwrap();
            assert!(Index::load(&p).is_empty());
            assert_eq!(Index::load(&p).get("a.json"), None);
        }
        assert!(Index::load(&tmp.path().join("missing.index")).is_empty());
        assert_eq!(path_of(Path::new("/x/.site.releases/r1")), Path::new("/x/.site.releases/r1.index"));
    }

    #[test]
    fn every_path_of_a_large_index_is_found_and_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let e = |i: u64| Entry { stamp: i, digest: digest(&i.to_le_bytes()), input: NO_INPUT };
        for n in [1u64, 3, 5, 17, 10_000] {
            let p = tmp.path().join(format!("r{n}.index"));
            std::fs::write(&p, encode((0..n).map(|i| (key(&format!("items/{i}.json")), e(i))).collect())).unwrap();
            let ix = Index::load(&p);
            assert_eq!(ix.len(), n as usize);
            for i in 0..n {
                assert_eq!(ix.get(&format!("items/{i}.json")), Some(e(i)), "{i} of {n}");
                assert_eq!(ix.get(&format!("items/{i}.html")), None);
            }
        }
    }
}
