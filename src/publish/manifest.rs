//! A release's manifest: each of its folders, with the folder's inode and modification
//! time when the release was committed, and the names of the files and folders in it.
//!
//! Builds list two releases (the served one, for what the new one removes; the recycled
//! one, for what it must delete), and walking 600,000 files in 150,000 folders cost ~3.3 s
//! of CPU each (BENCHMARKS.md). A folder's modification time moves whenever an entry in it
//! is made, removed or renamed, so a folder whose inode and time still match the manifest
//! holds what the manifest says, with no need to read it: listing a release costs one
//! `lstat` per folder. A folder that changed (a hand, a killed build, this build writing
//! into the recycled release) is read again, and a folder the manifest does not know is
//! walked whole. A folder is trusted only below folders that are folders still: a folder
//! replaced by a symbolic link has its parent changed, and nothing below it is listed.
//!
//! Each file is written down with its inode as the build left it. In a folder that has not
//! changed since, a name still leads to that inode (making, removing or renaming an entry
//! moves the folder's time), so the next build knows which files of the release are the
//! very inodes it would link in, without an `lstat` of each (see `Release::put_file_known`).
//!
//! Kept beside the release folder as `<release>.files`; a missing or damaged manifest
//! means a walk, as before.

use rustc_hash::FxHashMap as HashMap;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;

const MAGIC: &str = "simsite-files-v2\n";
/// The last line: a manifest without it was cut short.
const END: &str = "end\n";

/// The manifest file of the release folder `release`.
pub fn path_of(release: &Path) -> PathBuf {
    super::beside(release, ".files")
}

/// One folder (relative path, `""` for the release's own) as committed.
struct Folder {
    rel: String,
    ino: u64,
    mtime: (i64, i64),
    /// Each file's inode (0: not known) and name.
    files: Vec<(u64, String)>,
}

pub struct Manifest {
    /// Parents before their children.
    folders: Vec<Folder>,
}

/// What a listing found: files (and other non-folders) and folders, relative paths. Each
/// file comes with the inode the manifest vouches for (its folder is unchanged since), or 0.
#[derive(Default)]
pub struct Listed {
    pub files: HashMap<String, u64>,
    /// Each folder (real folders, not links, when listed) with its inode and time as
    /// listed, before it was read, if the manifest knows it.
    pub folders: HashMap<String, Option<Stamp>>,
}

/// A folder's inode and modification time (seconds, nanoseconds).
pub type Stamp = (u64, i64, i64);

/// A folder's inode and modification time, if it is a folder (not a link to one).
fn folder_stamp(path: &Path) -> Option<Stamp> {
    std::fs::symlink_metadata(path).ok().filter(|m| m.is_dir()).map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

fn parent(rel: &str) -> &str {
    rel.rfind('/').map(|i| &rel[..i]).unwrap_or("")
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        return name.to_string();
    }
    // Not `format!`: this makes a string for each of a release's hundreds of thousands of files.
    let mut path = String::with_capacity(dir.len() + 1 + name.len());
    path.push_str(dir);
    path.push('/');
    path.push_str(name);
    path
}

/// The manifest of the release at `root`, whose files are `files` (relative paths, each
/// with its inode or 0) and whose folders are exactly their parents: reads each folder's
/// inode and time, so it is written once nothing more changes in the release. A folder
/// `known` has a stamp for is not read: the caller knows nothing in it changed since.
/// `None` when a path cannot be written down (a line break in it) or a folder cannot be read.
pub fn make<'a>(root: &Path, files: impl Iterator<Item = (&'a str, u64)>, known: &HashMap<String, Stamp>) -> Option<Vec<u8>> {
    Folders::of(files)?.write(root, known)
}

/// A release's files grouped by folder, every folder above them included, in the
/// manifest's order: the part of `make` that does not look at the disk, so that a build
/// can do it while its release's folders are still changing.
pub struct Folders<'a>(Vec<(&'a str, Vec<(&'a str, u64)>)>);

impl<'a> Folders<'a> {
    /// `None` when a path cannot be written down (a line break in it).
    pub fn of(files: impl Iterator<Item = (&'a str, u64)>) -> Option<Folders<'a>> {
        let mut by_folder: HashMap<&str, Vec<(&str, u64)>> = HashMap::default();
        by_folder.insert("", Vec::new());
        for (f, ino) in files {
            if f.contains(['\n', '\r']) {
                return None;
            }
            let dir = parent(f);
            let name = &f[if dir.is_empty() { 0 } else { dir.len() + 1 }..];
            if let Some(names) = by_folder.get_mut(dir) {
                names.push((name, ino));
                continue;
            }
            by_folder.insert(dir, vec![(name, ino)]);
            // Every folder above a folder new here, so that each is in the manifest with its
            // parent (those above a folder met before are there already).
            let mut up = dir;
            while !up.is_empty() {
                up = parent(up);
                if by_folder.contains_key(up) {
                    break;
                }
                by_folder.insert(up, Vec::new());
            }
        }
        let mut folders: Vec<(&str, Vec<(&str, u64)>)> = by_folder.into_iter().collect();
        folders.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
        Some(Folders(folders))
    }

    /// The manifest, reading the stamps of the folders under `root` that `known` has none of.
    pub fn write(self, root: &Path, known: &HashMap<String, Stamp>) -> Option<Vec<u8>> {
        // Each folder's lines on its own (it is the commit's longest serial step otherwise).
        let parts: Vec<String> = self
            .0
            .into_par_iter()
            .map(|(rel, mut names)| {
                let (ino, s, ns) = known.get(rel).copied().or_else(|| folder_stamp(&root.join(rel)))?;
                names.sort_unstable();
                let mut out = String::with_capacity(48 + rel.len() + names.iter().map(|(n, _)| n.len() + 24).sum::<usize>());
                let mut num = itoa::Buffer::new();
                out.push_str("D\t");
                out.push_str(num.format(ino));
                out.push('\t');
                out.push_str(num.format(s));
                out.push('\t');
                out.push_str(num.format(ns));
                out.push('\t');
                out.push_str(rel);
                out.push('\n');
                for (n, ino) in names {
                    out.push('\t');
                    out.push_str(num.format(ino));
                    out.push('\t');
                    out.push_str(n);
                    out.push('\n');
                }
                Some(out)
            })
            .collect::<Option<_>>()?;
        let mut out = String::with_capacity(MAGIC.len() + END.len() + parts.iter().map(|p| p.len()).sum::<usize>());
        out.push_str(MAGIC);
        parts.iter().for_each(|p| out.push_str(p));
        out.push_str(END);
        Some(out.into_bytes())
    }
}

impl Manifest {
    /// Reads `path`; `None` when it is missing or does not read back whole.
    pub fn load(path: &Path) -> Option<Manifest> {
        let text = String::from_utf8(std::fs::read(path).ok()?).ok()?;
        let body = text.strip_prefix(MAGIC)?.strip_suffix(END)?;
        let mut folders: Vec<Folder> = Vec::new();
        for line in body.lines() {
            if let Some(file) = line.strip_prefix('\t') {
                let (ino, name) = file.split_once('\t')?;
                folders.last_mut()?.files.push((ino.parse().ok()?, name.to_string()));
                continue;
            }
            let mut f = line.strip_prefix("D\t")?.splitn(4, '\t');
            let (ino, s, ns, rel) = (f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?);
            if folders.last().is_some_and(|p| p.rel.as_str() >= rel) || (folders.is_empty() != rel.is_empty()) {
                return None;
            }
            folders.push(Folder { rel: rel.to_string(), ino, mtime: (s, ns), files: Vec::new() });
        }
        Some(Manifest { folders })
    }

    /// The release at `root` listed through the manifest: `only_files` leaves out what is
    /// neither a file nor a folder (links). What is listed is what a walk would list, as
    /// long as nobody put a folder's modification time back by hand.
    pub fn list(&self, root: &Path, only_files: bool) -> Result<Listed> {
        let known: HashMap<&str, usize> = self.folders.iter().enumerate().map(|(i, f)| (f.rel.as_str(), i)).collect();
        // Whether each folder is a folder still, as are all above it (so that a path through
        // it stays in the release).
        let stamps: Vec<Option<Stamp>> = self.folders.par_iter().map(|f| folder_stamp(&root.join(&f.rel))).collect();
        let mut sound = vec![false; self.folders.len()];
        let mut out = Listed::default();
        // Sized once for what the manifest lists, rather than grown (and rehashed) as it fills.
        out.files.reserve(self.folders.iter().map(|f| f.files.len()).sum());
        out.folders.reserve(self.folders.len());
        for (i, f) in self.folders.iter().enumerate() {
            let above = f.rel.is_empty() || known.get(parent(&f.rel)).is_some_and(|&p| sound[p]);
            let Some((ino, s, ns)) = stamps[i].filter(|_| above) else { continue };
            sound[i] = true;
            if !f.rel.is_empty() {
                out.folders.insert(f.rel.clone(), Some((ino, s, ns)));
            }
            // The release's own folder is always read: renaming it into place moved its times.
            if !f.rel.is_empty() && (ino, (s, ns)) == (f.ino, f.mtime) {
                out.files.extend(f.files.iter().map(|(ino, n)| (join(&f.rel, n), *ino)));
                continue;
            }
            let dir = root.join(&f.rel);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
            };
            for e in entries {
                let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
                let t = e.file_type().with_context(|| format!("cannot list {}", dir.display()))?;
                let rel = join(&f.rel, &e.file_name().to_string_lossy());
                if !t.is_dir() {
                    if super::listed(t, only_files) {
                        out.files.insert(rel, 0);
                    }
                } else if !known.contains_key(rel.as_str()) {
                    out.folders.insert(rel.clone(), None);
                    let walked = super::walk(&root.join(&rel), only_files)?;
                    out.files.extend(walked.files.into_iter().map(|(p, ino)| (join(&rel, &p), ino)));
                    out.folders.extend(walked.folders.into_iter().map(|(p, st)| (join(&rel, &p), st)));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(v: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut v: Vec<String> = v.into_iter().collect();
        v.sort();
        v
    }

    fn ino(p: &Path) -> u64 {
        std::fs::symlink_metadata(p).unwrap().ino()
    }

    #[test]
    fn files_are_grouped_by_folder_with_every_folder_above_them() {
        // Deep first, then a sibling below a folder already met, then a file in a folder
        // first met as another's parent, and one at the top.
        let files = ["a/b/c/x", "a/b/d/y", "a/z", "e/f/g/w", "top"];
        let Folders(folders) = Folders::of(files.iter().enumerate().map(|(i, f)| (*f, i as u64))).unwrap();
        let got: Vec<(&str, Vec<(&str, u64)>)> = folders;
        let want: Vec<(&str, Vec<(&str, u64)>)> = vec![
            ("", vec![("top", 4)]),
            ("a", vec![("z", 2)]),
            ("a/b", vec![]),
            ("a/b/c", vec![("x", 0)]),
            ("a/b/d", vec![("y", 1)]),
            ("e", vec![]),
            ("e/f", vec![]),
            ("e/f/g", vec![("w", 3)]),
        ];
        assert_eq!(got, want);
        assert!(Folders::of([("a\rb", 1)].into_iter()).is_none());
    }

    #[test]
    fn a_listing_through_the_manifest_is_a_walk_whatever_changed_since() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("r");
        let files = ["index.html", "items/a/index.html", "items/b/index.html", "thumbs/a.jpg", "thumbs/b.jpg", "api/items/a.json", "items/d/index.html"];
        for f in files {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), f).unwrap();
        }
        // One file's inode is not known to the build that made the release.
        let bytes = make(&root, files.iter().map(|f| (*f, if *f == "index.html" { 0 } else { ino(&root.join(f)) })), &HashMap::default()).unwrap();
        let m_path = tmp.path().join("r.files");
        std::fs::write(&m_path, &bytes).unwrap();
        let m = Manifest::load(&m_path).unwrap();
        let same = |only_files: bool| {
            let (by_m, walked) = (m.list(&root, only_files).unwrap(), crate::publish::walk(&root, only_files).unwrap());
            // Whatever inode the listing vouches for is the file's.
            for (f, &i) in &by_m.files {
                assert!(i == 0 || i == ino(&root.join(f)), "{f}");
            }
            assert_eq!(sorted(by_m.files.into_keys()), sorted(walked.files.into_keys()));
            assert_eq!(sorted(by_m.folders.into_keys()), sorted(walked.folders.into_keys()));
        };
        same(true);
        same(false);
        let vouched = |only_files: bool| sorted(m.list(&root, only_files).unwrap().files.into_iter().filter(|(_, i)| *i != 0).map(|(f, _)| f));
        // The release's own folder is read (its time moves when it is renamed into place).
        assert_eq!(vouched(true), sorted(files.iter().filter(|f| f.contains('/')).map(|f| f.to_string())));
        // Changed by hand: a stray file, a file gone, a new folder with files deep in it, a
        // folder replaced by a link to the outside (nothing below it is listed), a file
        // where a folder was.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(root.join("items/a/stray.html"), "x").unwrap();
        std::fs::remove_file(root.join("thumbs/b.jpg")).unwrap();
        std::fs::create_dir_all(root.join("items/c/deeper")).unwrap();
        std::fs::write(root.join("items/c/deeper/x.html"), "x").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("a.json"), "x").unwrap();
        std::fs::remove_dir_all(root.join("api/items")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("api/items")).unwrap();
        std::fs::remove_dir_all(root.join("items/b")).unwrap();
        std::fs::write(root.join("items/b"), "a file").unwrap();
        same(true);
        same(false);
        assert!(!m.list(&root, true).unwrap().files.keys().any(|f| f.starts_with("api/items/")));
        // Only files of folders unchanged since keep their inodes: a file replaced in a
        // folder that changed is not vouched for.
        assert_eq!(vouched(true), ["items/d/index.html"].map(String::from));
        // A damaged manifest reads as none.
        let text = String::from_utf8(bytes).unwrap();
        for bad in [text.replace("D\t", "X\t"), text.replacen("\t", "", 1), text[..text.len() / 2].to_string(), text.replace("simsite-files-v2", "simsite-files-v1")] {
            std::fs::write(&m_path, bad).unwrap();
            assert!(Manifest::load(&m_path).is_none());
        }
        assert!(make(&root, [("a\nb", 1)].into_iter(), &HashMap::default()).is_none());
    }
}
