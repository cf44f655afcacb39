//! The build report: what was built, what was skipped and why, and how long each stage took.
//! It is written to the cache folder (not the published site, which must stay byte-identical
//! between identical builds) and summarised on the terminal.

use serde::Serialize;

/// A file (or catalogue line) and why it was skipped or warned about.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub name: String,
    pub seconds: f64,
    pub items: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct BuildReport {
    pub simsite_version: String,
    pub archive: String,
    pub out: String,
    /// Image files found by the scan.
    pub scanned: usize,
    /// Regular files that are not images (not an error).
    pub ignored_non_images: usize,
    /// Items published.
    pub items: usize,
    /// Image files that could not be used.
    pub skipped: usize,
    pub skipped_files: Vec<Problem>,
    /// Items with a catalogue row (none when no catalogue is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalogued: Option<usize>,
    pub warnings: Vec<Problem>,
    /// Images embedded by this build (the rest came from the cache).
    pub embedded: usize,
    /// Cache entries dropped because their image left the archive.
    pub cache_pruned: usize,
    pub model: Option<ModelInfo>,
    pub thumbnails_made: usize,
    pub thumbnails_reused: usize,
    /// Cached thumbnails and previews removed because no item uses them any more.
    pub thumbnails_pruned: usize,
    /// Archive files this build read or tried to (every skipped file counts); the others
    /// were unchanged since the last build (same inode, size and times) and nothing else
    /// was needed from them.
    pub files_read: usize,
    /// The release now served, and how many of its files are new or changed, and removed
    /// (the paths are in the cache's changed-paths.txt and removed-paths.txt).
    pub release: String,
    pub files: usize,
    pub changed: usize,
    pub removed: usize,
    /// Files of the previously served release read back to compare them with the new
    /// bytes: those its index could not vouch for (edited since, or no index).
    pub served_files_read: usize,
    pub pages: usize,
    /// Item pages kept from the previously served release without rendering them: made
    /// from the same data, templates and program.
    pub pages_kept_unrendered: usize,
    /// Item pages changed in the build before that were linked in while this one embedded
    /// (the recycled release was no longer cached; see `publish::relink_changed_pages`).
    pub pages_relinked_early: usize,
    /// Threads that put the item pages: more than the cores when the recycled release had
    /// left the page cache (each page then waits on the disk more than it uses the CPU).
    pub page_threads: usize,
    pub stages: Vec<StageTime>,
    /// Where the render stage's time went: the map's files,
    /// item pages, galleries and the rest (seconds).
    pub render_parts: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub digest: String,
    pub dim: usize,
    pub device: String,
}
