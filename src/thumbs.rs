//! Thumbnails: JPEG, cached in the cache folder under a key made of the file's content
//! digest and every setting that changes the thumbnail, so each is made once per content
//! and a changed stretch can never serve a stale one.

use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::config::ThumbSettings;
use crate::fsutil::FileId;
use crate::preprocess::Thumb;

/// The cache key of a thumbnail of the content `content`, made with the preprocessing
/// settings whose `display_digest` is `display` and the thumbnail settings `ts`.
pub fn cache_key(content: &blake3::Hash, display: &blake3::Hash, ts: &ThumbSettings) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"simsite-thumb-v1");
    h.update(content.as_bytes());
    h.update(display.as_bytes());
    h.update(&ts.size.to_le_bytes());
    h.update(&[ts.quality]);
    h.finalize()
}

/// The key a cached file's name (`cache_path`'s last part) stands for, if it is one.
pub fn key_of(name: &std::ffi::OsStr) -> Option<[u8; 32]> {
    let hex = name.to_str()?.strip_suffix(".jpg")?;
    blake3::Hash::from_hex(hex).ok().map(|h| *h.as_bytes())
}

pub fn cache_path(cache_dir: &Path, key: &blake3::Hash) -> PathBuf {
    let hex = key.to_hex();
    cache_dir.join("thumbs").join(&hex[..2]).join(format!("{hex}.jpg"))
}

/// The files of the thumbnail cache (thumbnails and previews alike), each key with the
/// identity of its file, read from the cache's folders once per build: a folder's entries
/// name each file's inode, so an unchanged item's cached thumbnail and preview are known
/// without a `stat` of each (two an item: 0.9 s of CPU a night at 155,000 items). A key
/// it does not hold (a folder that could not be read, a thumbnail made since) is asked
/// of the file system as before.
#[derive(Default)]
pub struct Listing {
    files: FxHashMap<[u8; 32], FileId>,
}

impl Listing {
    /// Lists `cache_dir`'s thumbnails; folders that cannot be read are left out. With
    /// `non_empty`, each file is looked at (a `stat`) and an empty one left out, as if it
    /// were not there: after a build that did not finish (see `pipeline::Unfinished`), a
    /// file renamed into place just before a power cut may have lost its bytes.
    pub fn of(cache_dir: &Path, non_empty: bool) -> Listing {
        use rayon::prelude::*;
        use std::os::unix::fs::{DirEntryExt, MetadataExt};
        let Ok(folders) = std::fs::read_dir(cache_dir.join("thumbs")) else { return Listing::default() };
        let folders: Vec<PathBuf> = folders.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        let list = || {
            folders
                .par_iter()
                .map(|dir| {
                    let mut found = Vec::new();
                    // The folder's own device is its files'; a link in the cache is not listed.
                    let Some(dev) = std::fs::symlink_metadata(dir).ok().filter(|m| m.is_dir()).map(|m| m.dev()) else { return found };
                    let Ok(entries) = std::fs::read_dir(dir) else { return found };
                    for e in entries.filter_map(|e| e.ok()) {
                        let key = key_of(&e.file_name());
                        let kept = e.file_type().is_ok_and(|t| t.is_file()) && (!non_empty || e.metadata().is_ok_and(|m| m.len() > 0));
                        if let Some(key) = key.filter(|_| kept) {
                            found.push((key, FileId { dev, ino: e.ino() }));
                        }
                    }
                    found
                })
                .flatten_iter()
                .collect()
        };
        // Threads that mostly wait: a night after the last build, the folders are read from
        // the disk (Python, 280,000 entries: 1.8 s on 2 threads, 0.6 s on 16).
        let files = match crate::fsutil::io_pool("list") {
            Some(p) => p.install(list),
            None => list(),
        };
        Listing { files }
    }

    /// The cached file of `key`, if the listing found it.
    pub fn get(&self, key: &blake3::Hash) -> Option<FileId> {
        self.files.get(key.as_bytes()).copied()
    }

    /// Removes from `cache_dir` the listed files whose key is not in `used`; the number
    /// removed. (A file made since the listing is not in it, so never removed.)
    pub fn prune(&self, cache_dir: &Path, used: &std::collections::HashSet<[u8; 32]>) -> usize {
        self.files
            .keys()
            .filter(|key| !used.contains(*key))
            .filter(|key| std::fs::remove_file(cache_path(cache_dir, &blake3::Hash::from_bytes(**key))).is_ok())
            .count()
    }

}

/// JPEG through `jpeg-encoder`, whose SIMD DCT lifted the embed stage from 0.72 to 0.80 of
/// raw ORT throughput (BENCHMARKS.md) over `image`'s encoder.
pub fn encode_jpeg(t: &Thumb, quality: u8) -> Result<Vec<u8>, jpeg_encoder::EncodingError> {
    let mut out = Vec::new();
    let color = if t.channels == 3 { jpeg_encoder::ColorType::Rgb } else { jpeg_encoder::ColorType::Luma };
    let (w, h) = (t.width as u16, t.height as u16);
    jpeg_encoder::Encoder::new(&mut out, quality).encode(&t.pixels, w, h, color)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_cache_listing_names_each_cached_file_by_its_inode() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        assert!(Listing::of(cache, false).files.is_empty(), "no cache yet");
        let keys: Vec<blake3::Hash> = (0..40u8).map(|i| blake3::hash(&[i])).collect();
        for k in &keys[..30] {
            let p = cache_path(cache, k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, k.as_bytes()).unwrap();
        }
        // Not thumbnails: a link named like one, a temporary file, a stray name.
        let link = cache_path(cache, &keys[30]);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(cache_path(cache, &keys[0]), &link).unwrap();
        std::fs::write(link.with_file_name(format!(".{}.jpg.tmp-1-2", keys[31].to_hex())), b"x").unwrap();
        std::fs::write(link.with_file_name("notes.txt"), b"x").unwrap();
        let listed = Listing::of(cache, false);
        for (i, k) in keys.iter().enumerate() {
            let want = (i < 30).then(|| FileId::of(&std::fs::metadata(cache_path(cache, k)).unwrap()));
            assert_eq!(listed.get(k), want, "key {i}");
        }
        assert_eq!(listed.files.len(), 30);
        assert!(listed.files.values().all(|id| id.dev == std::fs::metadata(cache).unwrap().dev()));
        // An empty file is listed unless asked not to be.
        std::fs::write(cache_path(cache, &keys[5]), b"").unwrap();
        assert!(Listing::of(cache, false).get(&keys[5]).is_some());
        let checked = Listing::of(cache, true);
        assert_eq!((checked.get(&keys[5]), checked.files.len()), (None, 29));
    }
}
