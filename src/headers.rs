//! FITS header keywords as item metadata (`[fits] keywords`): the values read, kept by the
//! content digest of their file so that a nightly rebuild reads no unchanged file for them,
//! and merged into each item's `meta` after the catalogue's columns.
//!
//! Kept as the embedding cache keeps embeddings: one folder per key
//! (`CACHE/fits-headers/<key>/`), the key hashing what decides the values (the keywords and
//! `[fits] hdu`, which picks the header read), so a changed list reads headers again, and
//! only headers: the embeddings' key does not hold it. Parts are JSON files written to a
//! temporary name and renamed, named by a hash of their content, so a killed build never
//! leaves half a part and shards writing into one folder never collide; a build reads every
//! part and prunes. A file the cache has no values for (one new tonight, or a cache from
//! before the keywords were read) has its header read: while it is decoded anyway, else on
//! its own, no pixel read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::cache::Digest;
use crate::config::HduChoice;
use crate::decode::Header;
use crate::report::Problem;

/// The cache's folder under the cache root.
const FOLDER: &str = "fits-headers";
/// Values gathered before a part is written: what a killed build can lose at most (and
/// read again next time).
const PART_ROWS: usize = 10_000;
/// More parts than this are merged at the next prune.
const MAX_PARTS: usize = 16;

/// The cache key of a keyword list read from the HDU `hdu` picks, spelt like an embedding
/// key ([`crate::cache::is_key`]).
pub fn cache_key(keywords: &[String], hdu: &HduChoice) -> String {
    let hdu = match hdu {
        HduChoice::Auto => "auto".to_string(),
        HduChoice::Index(i) => format!("#{i}"),
        HduChoice::Name(n) => format!("name:{n}"),
    };
    // Positions are keyed by how they are worked out too: a reading that places more
    // headers (or places them otherwise) reads the headers again, once, and embeds nothing.
    let position = match keywords.iter().any(|k| crate::wcs::is_sky(k)) {
        true => format!("|position=v{}", crate::wcs::VERSION),
        false => String::new(),
    };
    let text = format!("simsite-fits-headers-v2|hdu={hdu}|keywords={}{position}", keywords.join(","));
    blake3::hash(text.as_bytes()).to_hex()[..32].to_string()
}

/// One part on disk: per file digest (hex), its values in the order of the keywords.
#[derive(serde::Serialize, serde::Deserialize)]
struct Part {
    values: BTreeMap<String, Header>,
}

pub struct HeaderCache {
    /// `FOLDER/<key>` under the cache root.
    dir: PathBuf,
    values: HashMap<Digest, Header>,
    parts: Vec<PathBuf>,
    pending: Vec<Digest>,
    /// Damaged parts found (and removed) while opening.
    pub problems: Vec<Problem>,
}

fn read_part(path: &Path) -> Result<Vec<(Digest, Header)>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let part: Part = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    part.values
        .into_iter()
        .map(|(hex, h)| blake3::Hash::from_hex(&hex).map(|d| (*d.as_bytes(), h)).map_err(|_| format!("`{hex}` is not a digest")))
        .collect()
}

impl HeaderCache {
    /// Opens the folder `root/fits-headers/<key>` and loads every part (the folder is made
    /// when the first part is written: an archive without FITS files never has one).
    pub fn open(root: &Path, key: &str) -> std::io::Result<HeaderCache> {
        let dir = root.join(FOLDER).join(key);
        let mut c = HeaderCache { dir, values: HashMap::new(), parts: Vec::new(), pending: Vec::new(), problems: Vec::new() };
        let listed = match std::fs::read_dir(&c.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(c),
            Err(e) => return Err(e),
        };
        let mut names: Vec<PathBuf> = listed
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json") && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        names.sort();
        for path in names {
            match read_part(&path) {
                Ok(rows) => {
                    for (d, h) in rows {
                        c.values.entry(d).or_insert(h);
                    }
                    c.parts.push(path);
                }
                Err(reason) => {
                    // Its files' headers are simply read again.
                    std::fs::remove_file(&path)?;
                    c.problems.push(Problem {
                        path: path.display().to_string(),
                        reason: format!("damaged cache part removed ({reason}); its FITS header values will be read again"),
                    });
                }
            }
        }
        Ok(c)
    }

    /// The key it was opened with (its folder's name).
    pub fn key(&self) -> Option<&str> {
        self.dir.file_name().and_then(|n| n.to_str())
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.values.contains_key(d)
    }

    pub fn get(&self, d: &Digest) -> Option<&Header> {
        self.values.get(d)
    }

    /// The digests held, for the workers' snapshot.
    pub fn keys(&self) -> impl Iterator<Item = Digest> + '_ {
        self.values.keys().copied()
    }

    /// Adds the values read from a file (none found is an entry too: that file is not read
    /// again); every [`PART_ROWS`] new entries are written out as a part.
    pub fn insert(&mut self, d: Digest, values: Header) -> std::io::Result<()> {
        if self.values.contains_key(&d) {
            return Ok(());
        }
        self.values.insert(d, values);
        self.pending.push(d);
        if self.pending.len() >= PART_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the entries not yet on disk as one part (temporary name, then rename).
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let keys = std::mem::take(&mut self.pending);
        let path = self.write_part(&keys)?;
        self.parts.push(path);
        Ok(())
    }

    fn write_part(&self, keys: &[Digest]) -> std::io::Result<PathBuf> {
        let values = keys.iter().map(|k| (blake3::Hash::from_bytes(*k).to_hex().to_string(), self.values[k].clone())).collect();
        let bytes = serde_json::to_vec(&Part { values }).map_err(std::io::Error::other)?;
        let path = self.dir.join(format!("part-{}.json", &blake3::hash(&bytes).to_hex()[..24]));
        crate::fsutil::atomic_write(&path, &bytes)?;
        Ok(path)
    }

    /// Drops the entries of files no longer in the archive (and merges many small parts;
    /// see `fsutil::rewrite_parts`). Returns the entries dropped.
    pub fn prune(&mut self, used: &HashSet<Digest>) -> std::io::Result<usize> {
        self.flush()?;
        let unused = self.values.keys().filter(|k| !used.contains(*k)).count();
        if unused == 0 && self.parts.len() <= MAX_PARTS {
            return Ok(0);
        }
        let mut keep: Vec<Digest> = self.values.keys().filter(|k| used.contains(*k)).copied().collect();
        keep.sort_unstable();
        self.parts = crate::fsutil::rewrite_parts(&self.parts, &keep, PART_ROWS * 4, |chunk| self.write_part(chunk))?;
        self.values.retain(|k, _| used.contains(k));
        Ok(unused)
    }
}

/// Removes the folders of every other key (another keyword list or `[fits] hdu`), or of
/// every key when `keep` is None (`keywords = []`). Only folders named like a key are
/// simsite's.
pub fn remove_other_keys(root: &Path, keep: Option<&str>) -> std::io::Result<usize> {
    let listed = match std::fs::read_dir(root.join(FOLDER)) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for e in listed {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if p.is_dir() && crate::cache::is_key(name) && Some(name) != keep {
            std::fs::remove_dir_all(&p)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Merges `values` into `item`: its `meta` as `merge` does, and its position. The
/// position's fields (`wcs::RA`, `wcs::DEC`) place an item the catalogue left without one
/// (for the item page and `[neighbours] min-separation-arcsec`); an item whose catalogue
/// row says anything of its RA or Dec keeps that and shows no second position.
pub fn merge_item(item: &mut crate::catalogue::Item, values: &Header) {
    let field = |k: &str| values.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.parse::<f64>().ok());
    // One source for both coordinates and every view of them: a catalogue row that says
    // anything of RA or Dec (even a value it could not read, or one of the two) is the
    // item's position, and the header's is not mixed in.
    let placed = item.ra.is_some() || item.dec.is_some() || item.meta.iter().any(|(k, _)| crate::wcs::is_position(k));
    if !placed {
        if let (Some(ra), Some(dec)) = (field(crate::wcs::RA), field(crate::wcs::DEC)) {
            (item.ra, item.dec) = (Some(ra), Some(dec));
        }
    }
    let shown: Header = values.iter().filter(|(k, _)| !(placed && crate::wcs::is_position(k))).cloned().collect();
    merge(&mut item.meta, &shown);
}

/// Adds a file's header values to an item's `meta`, after the catalogue's columns: a column
/// of the same name that holds a value for the item wins (an empty cell is not in `meta`,
/// so the header's value fills it).
pub fn merge(meta: &mut Vec<(String, String)>, values: &Header) {
    for (k, v) in values {
        if !meta.iter().any(|(m, _)| m == k) {
            meta.push((k.clone(), v.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pairs: &[(&str, &str)]) -> Header {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parts_read_back_prune_and_a_damaged_one_is_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let key = cache_key(&["OBJECT".into()], &HduChoice::Auto);
        let mut c = HeaderCache::open(tmp.path(), &key).unwrap();
        assert!(c.is_empty() && !tmp.path().join(FOLDER).exists(), "nothing is made before a part is written");
        let (a, b) = ([1u8; 32], [2u8; 32]);
        c.insert(a, header(&[("OBJECT", "M51")])).unwrap();
        c.insert(b, Header::new()).unwrap();
        c.flush().unwrap();
        let c2 = HeaderCache::open(tmp.path(), &key).unwrap();
        assert_eq!(c2.get(&a), Some(&header(&[("OBJECT", "M51")])));
        assert_eq!(c2.get(&b), Some(&Header::new()), "a file without the keywords is known too");
        // Another process's part in the same folder (a shard) is read as well.
        let mut shard = HeaderCache::open(tmp.path(), &key).unwrap();
        shard.insert([3u8; 32], header(&[("OBJECT", "M82")])).unwrap();
        shard.flush().unwrap();
        let mut c = HeaderCache::open(tmp.path(), &key).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.prune(&[a, [3u8; 32]].into_iter().collect()).unwrap(), 1);
        let c = HeaderCache::open(tmp.path(), &key).unwrap();
        assert_eq!((c.len(), c.parts.len()), (2, 1));
        // A part cut short (a power cut) is removed and said; its files are read again.
        let part = c.parts[0].clone();
        let bytes = std::fs::read(&part).unwrap();
        std::fs::write(&part, &bytes[..bytes.len() / 2]).unwrap();
        let c = HeaderCache::open(tmp.path(), &key).unwrap();
        assert!(c.is_empty() && !part.exists());
        assert!(c.problems[0].reason.starts_with("damaged cache part removed"), "{}", c.problems[0].reason);
    }

    #[test]
    fn keys_follow_the_keywords_and_the_hdu_and_others_are_removed() {
        let k = |w: &[&str], h: HduChoice| cache_key(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &h);
        let base = k(&["OBJECT", "EXPTIME"], HduChoice::Auto);
        assert!(crate::cache::is_key(&base));
        assert_ne!(base, k(&["EXPTIME", "OBJECT"], HduChoice::Auto));
        assert_ne!(base, k(&["OBJECT", "EXPTIME"], HduChoice::Index(1)));
        let tmp = tempfile::tempdir().unwrap();
        let other = k(&["OBJECT"], HduChoice::Auto);
        for name in [&base, &other, &"notes".to_string()] {
            std::fs::create_dir_all(tmp.path().join(FOLDER).join(name)).unwrap();
        }
        assert_eq!(remove_other_keys(tmp.path(), Some(&base)).unwrap(), 1);
        assert!(tmp.path().join(FOLDER).join(&base).is_dir() && tmp.path().join(FOLDER).join("notes").is_dir());
        assert_eq!(remove_other_keys(tmp.path(), None).unwrap(), 1);
    }

    #[test]
    fn a_catalogue_value_wins_and_header_values_follow_in_their_order() {
        let mut meta = vec![("OBJECT".to_string(), "NGC 5194".to_string()), ("band".to_string(), "B".to_string())];
        merge(&mut meta, &header(&[("OBJECT", "M51"), ("EXPTIME", "600.")]));
        assert_eq!(meta, header(&[("OBJECT", "NGC 5194"), ("band", "B"), ("EXPTIME", "600.")]));
    }
}
