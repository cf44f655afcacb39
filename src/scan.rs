//! Walks the archive folder into a sorted list of image files.
//!
//! The order is the byte order of the relative paths, so the same archive gives the same
//! item order on every machine. Hidden entries are never entered; symlinks are followed only
//! when configured (walkdir then detects loops); what cannot be read is reported, never fatal.

use std::path::{Path, PathBuf};
use walkdir::WalkDir;

use crate::error::ArchiveError;
use crate::report::Problem;

/// The decoder an archive file goes to, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Fits,
    Png,
    Jpeg,
    Tiff,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Fits => "FITS",
            Format::Png => "PNG",
            Format::Jpeg => "JPEG",
            Format::Tiff => "TIFF",
        }
    }
}

/// Recognises image files by (case-insensitive) extension, including compressed FITS.
/// Returns the format and the file name with its image extension(s) removed.
pub fn classify(name: &str) -> Option<(Format, &str)> {
    let lower = name.to_ascii_lowercase();
    const SUFFIXES: &[(&str, Format)] = &[
        (".fits.gz", Format::Fits),
        (".fit.gz", Format::Fits),
        (".fts.gz", Format::Fits),
        (".fits.fz", Format::Fits),
        (".fits", Format::Fits),
        (".fit", Format::Fits),
        (".fts", Format::Fits),
        (".fz", Format::Fits),
        (".png", Format::Png),
        (".jpg", Format::Jpeg),
        (".jpeg", Format::Jpeg),
        (".tif", Format::Tiff),
        (".tiff", Format::Tiff),
    ];
    SUFFIXES.iter().find(|(s, _)| lower.ends_with(s) && lower.len() > s.len()).map(|(s, f)| (*f, &name[..name.len() - s.len()]))
}

#[derive(Debug, Clone)]
pub struct ScanEntry {
    /// Path relative to the archive root, as on disk (may not be UTF-8).
    pub rel: PathBuf,
    /// `rel` with `/` separators, lossily made UTF-8: what reports and pages show.
    pub rel_str: String,
    pub abs: PathBuf,
    pub format: Format,
    /// File name without directory and image extension(s), for catalogue joins by id.
    pub stem: String,
    pub size: u64,
    /// The file's metadata as the scan found it, so ingesting it needs no second `stat`
    /// (`None`: not known; the ingest stage asks).
    pub meta: Option<std::fs::Metadata>,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub entries: Vec<ScanEntry>,
    /// Folders and files that could not be read: their images are skipped.
    pub unreadable: Vec<Problem>,
    /// Things found but not taken on purpose: symlinks not followed, loops.
    pub problems: Vec<Problem>,
    /// Regular files that are not images (ignored silently, counted).
    pub ignored: usize,
    /// Of those, the ones named like FITS in a compression simsite does not read
    /// (`.fits.Z`, `.fits.bz2`, `.fits.xz`, `.fits.zip`…): how many, and the first few.
    pub unread_fits: (usize, Vec<String>),
    /// Of those, IRAF images (`.imh`, whose pixels are in a `.pix` file beside or
    /// elsewhere): how many, and the first few.
    pub iraf: (usize, Vec<String>),
}

/// Whether `name` looks like a FITS file compressed in a way simsite does not read.
fn unread_fits(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    [".fits.", ".fit.", ".fts."].iter().any(|f| l.contains(f))
}

fn rel_string(rel: &Path) -> String {
    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

pub fn scan(root: &Path, follow_symlinks: bool) -> Result<Scan, ArchiveError> {
    match std::fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ArchiveError::Missing { path: root.to_path_buf() })
        }
        Err(e) => return Err(ArchiveError::Unreadable { path: root.to_path_buf(), source: e }),
        Ok(m) if !m.is_dir() => return Err(ArchiveError::NotAFolder { path: root.to_path_buf() }),
        Ok(_) => {}
    }
    if let Err(e) = std::fs::read_dir(root) {
        return Err(ArchiveError::Unreadable { path: root.to_path_buf(), source: e });
    }
    let mut out = Scan::default();
    let walker = WalkDir::new(root)
        .follow_links(follow_symlinks)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                let path = err.path().map(|p| p.strip_prefix(root).unwrap_or(p).to_path_buf()).unwrap_or_default();
                if err.loop_ancestor().is_some() {
                    out.problems.push(Problem { path: rel_string(&path), reason: "symlink loop, not followed again".into() });
                } else {
                    let reason = format!("cannot read: {}", err.io_error().map(|e| e.to_string()).unwrap_or_else(|| err.to_string()));
                    out.unreadable.push(Problem { path: rel_string(&path), reason });
                }
                continue;
            }
        };
        let ft = entry.file_type();
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path()).to_path_buf();
        // The root itself may be a link (`/data/archive -> /mnt/vol1/archive`, common):
        // walkdir follows it, and it is not a link found in the archive.
        if ft.is_symlink() && entry.depth() > 0 {
            // Only reached when not following links.
            let name = entry.file_name().to_string_lossy();
            if classify(&name).is_some() || entry.path().is_dir() {
                out.problems.push(Problem {
                    path: rel_string(&rel),
                    reason: "symlink not followed (set [archive] follow-symlinks = true to follow links)".into(),
                });
            }
            continue;
        }
        if !ft.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((format, stem)) = classify(&name) else {
            out.ignored += 1;
            let unread = if unread_fits(&name) {
                Some(&mut out.unread_fits)
            } else if name.to_ascii_lowercase().ends_with(".imh") {
                Some(&mut out.iraf)
            } else {
                None
            };
            if let Some((n, examples)) = unread {
                *n += 1;
                if examples.len() < 3 {
                    examples.push(rel_string(&rel));
                }
            }
            continue;
        };
        let meta = entry.metadata().ok();
        out.entries.push(ScanEntry {
            rel_str: rel_string(&rel),
            stem: stem.to_string(),
            rel,
            abs: entry.path().to_path_buf(),
            format,
            size: meta.as_ref().map_or(0, |m| m.len()),
            meta,
        });
    }
    // walkdir's per-folder sort is by OsStr; a final sort on the joined bytes makes the
    // order independent of how names split into folders.
    out.entries.sort_by(|a, b| a.rel.as_os_str().as_encoded_bytes().cmp(b.rel.as_os_str().as_encoded_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_extensions_case_insensitively() {
        assert_eq!(classify("M51.FITS"), Some((Format::Fits, "M51")));
        assert_eq!(classify("a.fits.gz"), Some((Format::Fits, "a")));
        assert_eq!(classify("a.fits.fz"), Some((Format::Fits, "a")));
        assert_eq!(classify("b.JPEG"), Some((Format::Jpeg, "b")));
        assert_eq!(classify("c.tif"), Some((Format::Tiff, "c")));
        assert_eq!(classify("notes.txt"), None);
        assert_eq!(classify(".png"), None);
        assert_eq!(classify("x.gz"), None);
    }

    /// An archive root that is a symbolic link is scanned through it, with no warning; a
    /// link inside it is still reported.
    #[test]
    fn a_linked_root_is_not_a_link_in_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("vol1");
        std::fs::create_dir_all(real.join("sub")).unwrap();
        std::fs::write(real.join("sub/a.png"), b"x").unwrap();
        std::os::unix::fs::symlink("sub/a.png", real.join("b.png")).unwrap();
        let root = dir.path().join("archive");
        std::os::unix::fs::symlink(&real, &root).unwrap();
        for follow in [false, true] {
            let s = scan(&root, follow).unwrap();
            let found: Vec<&str> = s.entries.iter().map(|e| e.rel_str.as_str()).collect();
            let warned: Vec<&str> = s.problems.iter().map(|p| p.path.as_str()).collect();
            if follow {
                assert_eq!((found, warned), (vec!["b.png", "sub/a.png"], vec![]));
            } else {
                assert_eq!((found, warned), (vec!["sub/a.png"], vec!["b.png"]));
            }
        }
    }
}
