//! `site-config.toml`: the strict raw form (what the user writes) and its one-time
//! resolution into typed [`Settings`] that the stages consume.
//!
//! Stages never see raw strings or relative paths: every enum is parsed, every range is
//! checked and every path is made absolute here, so a mistake is reported once, before any
//! work starts, with the file, the key, what is allowed and how to fix it.

use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;

/// The file name looked for in the current folder when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "site-config.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawConfig {
    pub site: RawSite,
    pub archive: RawArchive,
    pub catalogue: Option<RawCatalogue>,
    pub output: RawOutput,
    pub fits: RawFits,
    pub preprocess: RawPreprocess,
    pub encoder: RawEncoder,
    pub thumbnails: RawThumbnails,
    pub neighbours: RawNeighbours,
    pub layout: RawLayout,
    pub structure: RawStructure,
}

/// `[structure]`.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawStructure {
    pub outlier_method: String,
    pub min_cluster_size: usize,
    pub outlier_k: Option<usize>,
    pub duplicate_threshold: f32,
}

impl Default for RawStructure {
    fn default() -> Self {
        let d = crate::structure::StructureSettings::default();
        RawStructure {
            outlier_method: "isolation-forest".into(),
            min_cluster_size: d.min_cluster_size,
            outlier_k: None,
            duplicate_threshold: d.duplicate_threshold,
        }
    }
}

/// `[layout]`.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawLayout {
    pub n_neighbors: Option<usize>,
    pub min_dist: f32,
    pub spread: f32,
    pub epochs: Option<usize>,
    pub seed: u64,
}

impl Default for RawLayout {
    fn default() -> Self {
        let d = crate::layout::LayoutSettings::default();
        RawLayout { n_neighbors: None, min_dist: d.min_dist, spread: d.spread, epochs: None, seed: d.seed }
    }
}

/// `[neighbours]`.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawNeighbours {
    pub k: usize,
    pub show: usize,
    pub exact_max_items: u64,
    pub gpu_exact_max_items: u64,
    pub recall_target: f64,
    pub min_separation_arcsec: f64,
    pub device: String,
}

impl Default for RawNeighbours {
    fn default() -> Self {
        RawNeighbours {
            k: 50,
            show: 12,
            exact_max_items: 50_000,
            gpu_exact_max_items: 1_000_000,
            recall_target: 0.95,
            min_separation_arcsec: 0.0,
            device: "auto".into(),
        }
    }
}

/// `[encoder]`: every key but `model` may be left to the model's metadata or graph.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawEncoder {
    pub model: Option<PathBuf>,
    pub device: Option<String>,
    pub batch: Option<usize>,
    pub threads: Option<usize>,
    pub onnxruntime: Option<PathBuf>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub channels: Option<u32>,
    pub size: Option<u32>,
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawSite {
    pub title: String,
    pub base_url: String,
    pub colour_by: Option<Vec<String>>,
}

impl Default for RawSite {
    fn default() -> Self {
        RawSite { title: "Image archive".into(), base_url: String::new(), colour_by: None }
    }
}

/// `[site]` beyond the title: what the HTML pages need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteSettings {
    /// The public address the site is served at, ending in `/` (for `sitemap.xml`); empty: unknown.
    pub base_url: String,
    /// Catalogue columns the map offers as colourings; `None`: the first 8.
    pub colour_by: Option<Vec<String>>,
    /// The site's own `templates/` and `static/` folders (beside the config), which override
    /// the built-in ones file by file.
    pub templates: Option<PathBuf>,
    pub statics: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawArchive {
    pub root: Option<PathBuf>,
    pub follow_symlinks: bool,
    pub max_pixels: u64,
    pub max_file_mb: u64,
    pub decode_memory_mb: u64,
}

impl Default for RawArchive {
    fn default() -> Self {
        RawArchive {
            root: None,
            follow_symlinks: false,
            max_pixels: 100_000_000,
            max_file_mb: 2048,
            decode_memory_mb: crate::decode::budget::DEFAULT_BYTES >> 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawCatalogue {
    pub path: Option<PathBuf>,
    pub join_on: String,
    pub id_column: Option<String>,
    pub path_column: Option<String>,
    pub title_column: Option<String>,
    pub url_column: Option<String>,
    pub ra_column: Option<String>,
    pub dec_column: Option<String>,
    pub columns: Option<Vec<String>>,
}

impl Default for RawCatalogue {
    fn default() -> Self {
        RawCatalogue {
            path: None,
            join_on: "path".into(),
            id_column: None,
            path_column: None,
            title_column: None,
            url_column: None,
            ra_column: None,
            dec_column: None,
            columns: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawOutput {
    pub dir: PathBuf,
    pub cache: PathBuf,
    pub max_removed: f64,
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput { dir: "site".into(), cache: ".simsite-cache".into(), max_removed: DEFAULT_MAX_REMOVED }
    }
}

/// The share of the served site's items that may be missing from one night's archive
/// before a build refuses to publish (an unmounted or unreadable archive folder looks like
/// removed images).
pub const DEFAULT_MAX_REMOVED: f64 = 0.5;

/// `hdu` may be written as a number or a name, so it is read as a TOML value and
/// resolved by hand (serde's untagged errors would not name the choices).
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawFits {
    pub hdu: toml::Value,
    pub cube: String,
    pub plane: u64,
    pub keywords: Vec<String>,
    pub position: bool,
}

impl Default for RawFits {
    fn default() -> Self {
        RawFits {
            hdu: toml::Value::String("auto".into()),
            cube: "peak".into(),
            plane: 0,
            keywords: DEFAULT_KEYWORDS.iter().map(|k| k.to_string()).collect(),
            position: true,
        }
    }
}

/// The FITS header keywords shown as item metadata unless `[fits] keywords` says otherwise:
/// what the object is, when, and with what it was observed (HST's cameras with two filter
/// wheels write FILTER1 and FILTER2, not FILTER).
pub const DEFAULT_KEYWORDS: &[&str] = &["OBJECT", "DATE-OBS", "TELESCOP", "INSTRUME", "FILTER", "FILTER1", "FILTER2", "EXPTIME"];

/// `[fits] keywords`, checked: each a FITS keyword as headers write it (1 to 8 of `A-Z`,
/// `0-9`, `-`, `_`), none twice. Lower case is refused rather than turned into upper case:
/// the name written is the key the item's `meta` and `[site] colour-by` use, so it must be
/// the one shown.
fn fits_keywords(file: &Option<PathBuf>, raw: &[String]) -> Result<Vec<String>, ConfigError> {
    const KEY: &str = "fits.keywords";
    let fits = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_';
    for (i, k) in raw.iter().enumerate() {
        // ESO's long keywords: `HIERARCH ESO INS FILT1 NAME`, words of the same characters
        // one space apart, the card's name at most 67 characters (room for `= ` and a value).
        let wrong = match k.strip_prefix("HIERARCH ") {
            Some(words) => (k.len() > 67 || !words.split(' ').all(|w| !w.is_empty() && w.chars().all(fits))).then(|| {
                format!("`{k}` is not a HIERARCH keyword; write its words in upper case, one space apart, as the card does (such as `HIERARCH ESO INS FILT1 NAME`)")
            }),
            None if !k.is_empty() && k.chars().count() <= 8 && k.chars().all(|c| fits(c.to_ascii_uppercase())) && k.chars().any(|c| c.is_ascii_lowercase()) => {
                Some(format!("`{k}` is in lower case; FITS headers write keywords in upper case: write `{}`", k.to_ascii_uppercase()))
            }
            None => (k.is_empty() || k.len() > 8 || !k.chars().all(fits)).then(|| {
                format!("`{k}` is not a FITS keyword; a keyword is 1 to 8 of the characters A-Z, 0-9, `-` and `_` (such as `DATE-OBS`), or `HIERARCH` and its words (such as `HIERARCH ESO INS FILT1 NAME`)")
            }),
        };
        if let Some(message) = wrong {
            return Err(invalid(file, KEY, message));
        }
        if raw[..i].contains(k) {
            return Err(invalid(file, KEY, format!("`{k}` is listed twice; list each keyword once")));
        }
    }
    Ok(raw.to_vec())
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawPreprocess {
    pub stretch: String,
    pub stretch_8bit: String,
    pub clip_low: f64,
    pub clip_high: f64,
    /// `None`: not written, so it follows the model (rgb for a 3-channel one, else grey).
    pub channels: Option<String>,
}

impl Default for RawPreprocess {
    fn default() -> Self {
        RawPreprocess {
            stretch: "asinh".into(),
            stretch_8bit: "linear".into(),
            clip_low: 1.0,
            clip_high: 99.7,
            channels: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawThumbnails {
    pub size: u32,
    pub quality: u8,
    pub preview_size: u32,
}

impl Default for RawThumbnails {
    fn default() -> Self {
        RawThumbnails { size: 128, quality: 85, preview_size: 512 }
    }
}

/// How pixel values are mapped to [0, 1] after percentile clipping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stretch {
    Linear,
    Log,
    Asinh,
    Sqrt,
    /// IRAF's zscale limits with a linear ramp between them.
    Zscale,
}

impl Stretch {
    pub const NAMES: &'static [&'static str] = &["linear", "log", "asinh", "sqrt", "zscale"];
    pub fn name(self) -> &'static str {
        match self {
            Stretch::Linear => "linear",
            Stretch::Log => "log",
            Stretch::Asinh => "asinh",
            Stretch::Sqrt => "sqrt",
            Stretch::Zscale => "zscale",
        }
    }
}

/// How a 3-D (or higher) FITS cube becomes one 2-D map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CubeMode {
    /// Per-pixel maximum over planes (a peak-flux map, as radio archives show cubes).
    Peak,
    /// Per-pixel sum over planes (a moment-0-like map).
    Sum,
    /// One plane, counted from 0 over all non-image axes.
    Plane(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HduChoice {
    /// The first HDU that holds a 2-D (or higher) image.
    Auto,
    /// 0-based HDU number (0 is the primary HDU).
    Index(u32),
    /// The HDU whose EXTNAME is this.
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channels {
    /// Colour images are averaged to one band; the band is repeated for multi-channel models.
    Grey,
    /// Colour images keep R, G, B; single-band images are repeated into three.
    Rgb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinOn {
    /// The catalogue's path column holds the file's path relative to the archive root.
    Path,
    /// The catalogue's id column equals the file name without its image extension(s).
    Id,
}

/// A catalogue column: the name to look for, and whether the user named it (then it must
/// exist) or it is the default (then a catalogue without it is fine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub key: &'static str,
    pub name: String,
    pub explicit: bool,
}

impl Column {
    fn new(key: &'static str, set: Option<String>, default: &str) -> Column {
        Column { key, explicit: set.is_some(), name: set.unwrap_or_else(|| default.to_string()) }
    }
}

#[derive(Debug, Clone)]
pub struct CatalogueSettings {
    pub path: PathBuf,
    pub join_on: JoinOn,
    pub id: Column,
    pub path_column: Column,
    pub title: Column,
    pub url: Column,
    pub ra: Column,
    pub dec: Column,
    /// Extra columns to carry into `meta`; `None` means every column not mapped above.
    pub columns: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Hash)]
pub struct FitsSettings {
    pub hdu: HduChoice,
    pub cube: CubeMode,
}

/// Everything that changes the pixels handed to the encoder and to thumbnails; hashed into
/// cache keys, so it must hold nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessSettings {
    pub fits: FitsSettings,
    pub stretch: Stretch,
    pub stretch_8bit: Stretch,
    pub clip_low: f64,
    pub clip_high: f64,
    pub channels: Channels,
    pub size: u32,
    /// Channels the encoder wants (1 or 3).
    pub model_channels: u32,
    pub max_pixels: u64,
    /// Largest file read, and what a `.gz` file may inflate to.
    pub max_file_bytes: u64,
}

impl PreprocessSettings {
    /// Digest of what changes thumbnails (not the encoder's size or channels).
    pub fn display_digest(&self) -> blake3::Hash {
        let mut s = self.clone();
        s.size = 0;
        s.model_channels = 0;
        s.channels = Channels::Grey;
        s.digest()
    }

    /// A stable digest of these settings, for cache keys.
    pub fn digest(&self) -> blake3::Hash {
        let hdu = match &self.fits.hdu {
            HduChoice::Auto => "auto".to_string(),
            HduChoice::Index(i) => format!("#{i}"),
            HduChoice::Name(n) => format!("name:{n}"),
        };
        let cube = match self.fits.cube {
            CubeMode::Peak => "peak".to_string(),
            CubeMode::Sum => "sum".to_string(),
            CubeMode::Plane(p) => format!("plane:{p}"),
        };
        let text = format!(
            "preprocess-v{}|hdu={hdu}|cube={cube}|stretch={}|stretch8={}|clip={:?},{:?}|channels={:?}|size={}|mc={}",
            crate::FORMAT_VERSION,
            self.stretch.name(),
            self.stretch_8bit.name(),
            self.clip_low,
            self.clip_high,
            self.channels,
            self.size,
            self.model_channels,
        );
        blake3::hash(text.as_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbSettings {
    pub size: u32,
    pub quality: u8,
    /// The larger picture on an item's page (longer side, pixels); 0: none.
    pub preview: u32,
}

/// Resolved settings: absolute paths, parsed enums, checked ranges.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: Option<PathBuf>,
    pub title: String,
    pub site: SiteSettings,
    pub archive: PathBuf,
    pub follow_symlinks: bool,
    /// All images being decoded at once stay within this (see `decode::budget`).
    pub decode_memory_bytes: u64,
    pub catalogue: Option<CatalogueSettings>,
    pub out: PathBuf,
    pub cache: PathBuf,
    /// A build publishes only while at most this share of the served site's items is
    /// missing tonight (1: any; `--allow-removals` sets it for one run).
    pub max_removed: f64,
    /// `build --allow-removals` given: also lets a build without a model replace a site
    /// built with one.
    pub allow_removals: bool,
    pub preprocess: PreprocessSettings,
    /// `[fits] keywords`: header keywords whose values become item metadata (empty: none).
    /// Not in `preprocess`, whose digest keys the embeddings: they change no pixel.
    pub fits_keywords: Vec<String>,
    /// `[fits] position`: each FITS image's place on the sky from its WCS (see `wcs`).
    pub fits_position: bool,
    /// What a FITS file's header is read for: `[fits] keywords`, then the position's two
    /// fields and the image's size (`wcs::RA`, `wcs::DEC`, `wcs::FOV`) with `[fits] position`.
    /// Empty: headers are not read.
    pub header_fields: Vec<String>,
    /// `[preprocess] channels` is in the config; else a 3-channel model gets "rgb".
    pub channels_set: bool,
    /// `None`: no model configured; the site has thumbnails and item pages only.
    pub encoder: Option<crate::encoder::EncoderSettings>,
    pub thumbs: ThumbSettings,
    pub neighbours: crate::neighbours::NeighbourSettings,
    pub layout: crate::layout::LayoutSettings,
    pub structure: crate::structure::StructureSettings,
}

impl Settings {
    /// Adopts the loaded model's input contract (size and channels come from the model):
    /// a 3-channel model gets colour unless the config says `channels = "grey"`, which is
    /// kept and said (the returned line, for the log). The preprocessing digest, and so
    /// every cache key, is made after this, from what is used.
    pub fn adopt_encoder(&mut self, spec: &crate::encoder::InputSpec) -> Result<Option<String>, String> {
        if spec.channels == 1 && self.preprocess.channels == Channels::Rgb {
            return Err(format!(
                "the model `{}` takes 1 channel but [preprocess] channels = \"rgb\"; set channels = \"grey\" or use an RGB model",
                spec.name
            ));
        }
        let mut note = None;
        if spec.channels == 3 {
            match (self.channels_set, self.preprocess.channels) {
                (false, _) => self.preprocess.channels = Channels::Rgb,
                (true, Channels::Grey) => {
                    note = Some(format!(
                        "the model `{}` takes 3 channels; [preprocess] channels = \"grey\" feeds it colour averaged to grey in all three (remove that line to feed it colour)",
                        spec.name
                    ))
                }
                (true, Channels::Rgb) => {}
            }
        }
        self.preprocess.size = spec.size;
        self.preprocess.model_channels = spec.channels;
        Ok(note)
    }
}

/// Command-line values that override the config file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub archive: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub cache: Option<PathBuf>,
    /// `build --allow-removals`: publish however many of the served items are missing.
    pub allow_removals: bool,
    /// The command reads a built site and no archive (`serve`, `query`, `inspect`): the
    /// archive stands in and is not checked against the output and cache folders.
    pub no_archive: bool,
}

/// Reads the config (the given file, else `./site-config.toml` if present, else defaults)
/// and resolves it with the command-line overrides.
pub fn load(config: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let cwd = std::env::current_dir().map_err(|e| ConfigError::Io { path: ".".into(), source: e })?;
    let (path, raw) = match config {
        Some(p) => {
            let p = absolute(&cwd, p);
            if !p.is_file() {
                return Err(ConfigError::Missing { path: p });
            }
            let raw = parse_file(&p)?;
            (Some(p), raw)
        }
        None => {
            let p = cwd.join(DEFAULT_CONFIG);
            if p.is_file() {
                let raw = parse_file(&p)?;
                (Some(p), raw)
            } else {
                (None, RawConfig::default())
            }
        }
    };
    resolve(raw, path, &cwd, overrides)
}

pub fn parse_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Io { path: path.to_path_buf(), source: e })?;
    parse_str(&text, path)
}

pub fn parse_str(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
    normalize(&joined)
}

/// The archive, the output and the cache must not overlap: a build replaces its output
/// folder, prunes its cache folder and scans its archive. Compared as written and with
/// symbolic links resolved (`inarch -> archive` makes `inarch/site` a folder inside it).
fn check_folders(archive: &Path, out: &Path, cache: &Path) -> Result<(), ConfigError> {
    // Named as written, whichever way the overlap was found.
    let (a, o, c) = (archive.to_path_buf(), out.to_path_buf(), cache.to_path_buf());
    for (archive, out, cache) in [(a.clone(), o.clone(), c.clone()), (resolved(archive), resolved(out), resolved(cache))] {
        if out.starts_with(&archive) {
            return Err(ConfigError::OutputInsideArchive { out: o, archive: a });
        }
        if archive.starts_with(&out) {
            return Err(ConfigError::ArchiveInsideOutput { out: o, archive: a });
        }
        if cache.starts_with(&archive) {
            return Err(ConfigError::CacheInsideArchive { cache: c, archive: a });
        }
        if archive.starts_with(&cache) {
            return Err(ConfigError::ArchiveInsideCache { archive: a, cache: c });
        }
        if cache.starts_with(&out) {
            return Err(ConfigError::CacheInsideOutput { cache: c, out: o });
        }
        if out.starts_with(&cache) {
            return Err(ConfigError::OutputInsideCache { out: o, cache: c });
        }
    }
    Ok(())
}

/// `p` with its longest existing ancestor's symbolic links resolved (the rest, not made
/// yet, appended as written).
fn resolved(p: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = p;
    loop {
        if let Ok(real) = at.canonicalize() {
            return rest.iter().rev().fold(real, |acc: PathBuf, c| acc.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// Lexical clean-up (`a/./b/../c` → `a/c`) so that "is the output inside the archive"
/// can be answered without touching the disk.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn parse_enum<T: Copy>(
    file: &Option<PathBuf>,
    key: &str,
    value: &str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    choices.iter().find(|(n, _)| *n == value).map(|(_, v)| *v).ok_or_else(|| ConfigError::Invalid {
        file: display_file(file),
        key: key.to_string(),
        message: format!(
            "`{value}` is not allowed; expected one of {}",
            crate::error::backticked(choices.iter().map(|(n, _)| n))
        ),
    })
}

/// The most neighbours stored per item: `api/neighbors.bin` holds 8·k bytes an item.
pub const MAX_K: usize = 1000;

pub(crate) fn display_file(file: &Option<PathBuf>) -> String {
    match file {
        Some(p) => p.display().to_string(),
        None => "(built-in defaults)".to_string(),
    }
}

fn invalid(file: &Option<PathBuf>, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { file: display_file(file), key: key.to_string(), message: message.into() }
}

pub fn resolve(
    raw: RawConfig,
    path: Option<PathBuf>,
    cwd: &Path,
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    // Paths written in the config are relative to the config file; flags to the cwd.
    let base = path.as_ref().and_then(|p| p.parent()).map(Path::to_path_buf).unwrap_or_else(|| cwd.to_path_buf());
    let archive = match (&overrides.archive, &raw.archive.root) {
        (Some(a), _) => absolute(cwd, a),
        (None, Some(r)) => absolute(&base, r),
        (None, None) => return Err(ConfigError::NoArchive),
    };
    let out = match &overrides.out {
        Some(o) => absolute(cwd, o),
        None => absolute(&base, &raw.output.dir),
    };
    let cache = match &overrides.cache {
        Some(c) => absolute(cwd, c),
        None => absolute(&base, &raw.output.cache),
    };
    let max_removed = raw.output.max_removed;
    if !(0.0..=1.0).contains(&max_removed) {
        return Err(invalid(
            &path,
            "output.max-removed",
            format!("{max_removed} is out of range; expected a share from 0 (no item may go) to 1 (any may)"),
        ));
    }
    let max_removed = if overrides.allow_removals { 1.0 } else { max_removed };

    let stretches = [
        ("linear", Stretch::Linear),
        ("log", Stretch::Log),
        ("asinh", Stretch::Asinh),
        ("sqrt", Stretch::Sqrt),
        ("zscale", Stretch::Zscale),
    ];
    let pp = &raw.preprocess;
    let stretch = parse_enum(&path, "preprocess.stretch", &pp.stretch, &stretches)?;
    let stretch_8bit = parse_enum(&path, "preprocess.stretch-8bit", &pp.stretch_8bit, &stretches)?;
    let channels =
        parse_enum(&path, "preprocess.channels", pp.channels.as_deref().unwrap_or("grey"), &[("grey", Channels::Grey), ("rgb", Channels::Rgb)])?;
    let order = "percentiles must satisfy 0 <= clip-low < clip-high <= 100";
    if !(0.0..=100.0).contains(&pp.clip_high) {
        return Err(invalid(&path, "preprocess.clip-high", format!("{order} (got clip-high = {})", pp.clip_high)));
    }
    if !(0.0..100.0).contains(&pp.clip_low) || pp.clip_low >= pp.clip_high {
        return Err(invalid(
            &path,
            "preprocess.clip-low",
            format!(
                "percentiles must satisfy 0 <= clip-low < clip-high <= 100 (got clip-low = {}, clip-high = {})",
                pp.clip_low, pp.clip_high
            ),
        ));
    }
    let enc = &raw.encoder;
    if let Some(size) = enc.size {
        if !(8..=1024).contains(&size) {
            return Err(invalid(&path, "encoder.size", format!("{size} is out of range; expected 8 to 1024 pixels")));
        }
    }
    if let Some(c) = enc.channels {
        if c != 1 && c != 3 {
            return Err(invalid(&path, "encoder.channels", format!("{c} is not allowed; expected 1 or 3")));
        }
    }
    if enc.batch == Some(0) || enc.batch.is_some_and(|b| b > 65536) {
        return Err(invalid(&path, "encoder.batch", "expected 1 to 65536"));
    }
    if enc.threads == Some(0) {
        return Err(invalid(&path, "encoder.threads", "expected at least 1"));
    }
    let device = match enc.device.as_deref() {
        None => None,
        Some(d) => Some(parse_enum(
            &path,
            "encoder.device",
            d,
            &[("auto", crate::encoder::Device::Auto), ("cpu", crate::encoder::Device::Cpu), ("cuda", crate::encoder::Device::Cuda)],
        )?),
    };
    if let Some(v) = enc.mean.iter().flatten().find(|v| !v.is_finite()) {
        return Err(invalid(&path, "encoder.mean", format!("{v} is not a finite number; give finite values, one per channel or one for all")));
    }
    if let Some(v) = enc.std.iter().flatten().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(invalid(&path, "encoder.std", format!("{v} must be a finite number above 0, one per channel or one for all")));
    }
    let encoder = match &enc.model {
        None => {
            if enc.device.is_some() || enc.input.is_some() || enc.output.is_some() || enc.mean.is_some() || enc.std.is_some() {
                return Err(invalid(&path, "encoder.model", "is required when other [encoder] keys are set"));
            }
            None
        }
        Some(m) => Some(crate::encoder::EncoderSettings {
            model: absolute(&base, m),
            device,
            batch: enc.batch,
            threads: enc.threads,
            library: enc.onnxruntime.as_ref().map(|p| absolute(&base, p)),
            input: enc.input.clone(),
            output: enc.output.clone(),
            channels: enc.channels,
            size: enc.size,
            mean: enc.mean.clone(),
            std: enc.std.clone(),
        }),
    };
    let cube = match raw.fits.cube.as_str() {
        "peak" => CubeMode::Peak,
        "sum" => CubeMode::Sum,
        "plane" => CubeMode::Plane(raw.fits.plane),
        other => {
            return Err(invalid(
                &path,
                "fits.cube",
                format!("`{other}` is not allowed; expected one of `peak`, `sum`, `plane`"),
            ))
        }
    };
    let hdu = match &raw.fits.hdu {
        toml::Value::String(s) if s == "auto" => HduChoice::Auto,
        toml::Value::String(s) if !s.trim().is_empty() => HduChoice::Name(s.clone()),
        toml::Value::Integer(i) if (0..=9999).contains(i) => HduChoice::Index(*i as u32),
        other => {
            return Err(invalid(
                &path,
                "fits.hdu",
                format!("`{other}` is not allowed; expected `auto`, an HDU number from 0 (primary), or an EXTNAME such as `SCI`"),
            ))
        }
    };
    let fits_keywords = fits_keywords(&path, &raw.fits.keywords)?;
    if raw.archive.max_pixels == 0 {
        return Err(invalid(&path, "archive.max-pixels", "must be at least 1"));
    }
    if raw.archive.max_file_mb == 0 {
        return Err(invalid(&path, "archive.max-file-mb", "must be at least 1"));
    }
    if raw.archive.decode_memory_mb == 0 {
        return Err(invalid(&path, "archive.decode-memory-mb", "must be at least 1"));
    }
    if !(16..=1024).contains(&raw.thumbnails.size) {
        return Err(invalid(
            &path,
            "thumbnails.size",
            format!("{} is out of range; expected 16 to 1024 pixels", raw.thumbnails.size),
        ));
    }
    if !(1..=100).contains(&raw.thumbnails.quality) {
        return Err(invalid(
            &path,
            "thumbnails.quality",
            format!("{} is out of range; expected 1 to 100", raw.thumbnails.quality),
        ));
    }
    let preview = raw.thumbnails.preview_size;
    if preview != 0 && !(raw.thumbnails.size..=4096).contains(&preview) {
        return Err(invalid(
            &path,
            "thumbnails.preview-size",
            format!("{preview} is out of range; expected 0 (no preview) or {} (the thumbnail size) to 4096 pixels", raw.thumbnails.size),
        ));
    }
    let catalogue = match raw.catalogue {
        None => None,
        Some(c) => {
            let Some(cpath) = &c.path else {
                return Err(invalid(&path, "catalogue.path", "is required when a [catalogue] table is present"));
            };
            let join_on =
                parse_enum(&path, "catalogue.join-on", &c.join_on, &[("path", JoinOn::Path), ("id", JoinOn::Id)])?;
            Some(CatalogueSettings {
                path: absolute(&base, cpath),
                join_on,
                id: Column::new("catalogue.id-column", c.id_column, "id"),
                path_column: Column::new("catalogue.path-column", c.path_column, "path"),
                title: Column::new("catalogue.title-column", c.title_column, "title"),
                url: Column::new("catalogue.url-column", c.url_column, "url"),
                ra: Column::new("catalogue.ra-column", c.ra_column, "ra"),
                dec: Column::new("catalogue.dec-column", c.dec_column, "dec"),
                columns: c.columns,
            })
        }
    };

    let nb = &raw.neighbours;
    if nb.k == 0 {
        return Err(invalid(&path, "neighbours.k", "must be at least 1 (neighbours stored per item; 50 by default)"));
    }
    if nb.k > MAX_K {
        return Err(invalid(&path, "neighbours.k", format!("{} is over the most simsite stores, {MAX_K} per item (50 by default)", nb.k)));
    }
    if nb.show == 0 || nb.show > nb.k {
        return Err(invalid(
            &path,
            "neighbours.show",
            format!("{} must be between 1 and k = {} (the neighbours stored)", nb.show, nb.k),
        ));
    }
    if !(nb.recall_target > 0.0 && nb.recall_target <= 1.0) {
        return Err(invalid(&path, "neighbours.recall-target", format!("{} must be in (0, 1]", nb.recall_target)));
    }
    if !(nb.min_separation_arcsec >= 0.0 && nb.min_separation_arcsec.is_finite()) {
        return Err(invalid(&path, "neighbours.min-separation-arcsec", format!("{} must be 0 (off) or a positive number of arcseconds", nb.min_separation_arcsec)));
    }
    let neighbours = crate::neighbours::NeighbourSettings {
        k: nb.k,
        show: nb.show,
        exact_max_flops: (nb.exact_max_items as f64).powi(2) * 128.0,
        gpu_exact_max_flops: (nb.gpu_exact_max_items as f64).powi(2) * 128.0,
        device: parse_enum(
            &path,
            "neighbours.device",
            &nb.device,
            &[("auto", crate::neighbours::Device::Auto), ("cpu", crate::neighbours::Device::Cpu), ("cuda", crate::neighbours::Device::Cuda)],
        )?,
        recall_target: nb.recall_target,
        min_separation_arcsec: nb.min_separation_arcsec,
    };

    let lay = &raw.layout;
    // Unset: umap-learn's 15, or fewer when fewer neighbours are stored.
    let n_neighbors = lay.n_neighbors.unwrap_or_else(|| crate::layout::LayoutSettings::default().n_neighbors.min(nb.k + 1));
    if n_neighbors < 2 || n_neighbors > nb.k + 1 {
        return Err(invalid(
            &path,
            "layout.n-neighbors",
            format!("{n_neighbors} must be between 2 and [neighbours] k + 1 = {} (the map reuses the stored neighbours)", nb.k + 1),
        ));
    }
    if !(lay.spread > 0.0 && lay.spread.is_finite()) || !(lay.min_dist >= 0.0 && lay.min_dist <= lay.spread) {
        return Err(invalid(
            &path,
            "layout.min-dist",
            format!("min-dist {} and spread {} need 0 <= min-dist <= spread, spread > 0", lay.min_dist, lay.spread),
        ));
    }
    let layout = crate::layout::LayoutSettings {
        n_neighbors,
        min_dist: lay.min_dist,
        spread: lay.spread,
        n_epochs: lay.epochs,
        seed: lay.seed,
        ..Default::default()
    };

    let st = &raw.structure;
    // Unset: 10, or k when fewer neighbours are stored.
    let outlier_k = st.outlier_k.unwrap_or_else(|| crate::structure::StructureSettings::default().outlier_k.min(nb.k));
    if outlier_k == 0 || outlier_k > nb.k {
        return Err(invalid(&path, "structure.outlier-k", format!("{outlier_k} must be between 1 and [neighbours] k = {}", nb.k)));
    }
    if !(st.duplicate_threshold > 0.0 && st.duplicate_threshold <= 1.0) {
        return Err(invalid(&path, "structure.duplicate-threshold", format!("{} must be a cosine similarity in (0, 1]", st.duplicate_threshold)));
    }
    if st.min_cluster_size == 1 {
        return Err(invalid(&path, "structure.min-cluster-size", "1 would make every item a cluster; use 2 or more, or 0 for automatic"));
    }
    let outlier_method = parse_enum(
        &path,
        "structure.outlier-method",
        &st.outlier_method,
        &[
            ("isolation-forest", crate::structure::OutlierMethod::IsolationForest),
            ("neighbours", crate::structure::OutlierMethod::Neighbours),
        ],
    )?;
    let structure = crate::structure::StructureSettings {
        outlier_method,
        outlier_k,
        duplicate_threshold: st.duplicate_threshold,
        min_cluster_size: st.min_cluster_size,
    };

    if !overrides.no_archive {
        check_folders(&archive, &out, &cache)?;
    }

    let mut base_url = raw.site.base_url.trim().to_string();
    if !base_url.is_empty() {
        let host = base_url.strip_prefix("https://").or_else(|| base_url.strip_prefix("http://"));
        if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
            return Err(invalid(&path, "site.base-url", format!("`{base_url}` must start with https:// or http:// and name a host (or be left empty)")));
        }
        // It is written into every page's links: nothing that could end an attribute.
        if let Some(c) = base_url.chars().find(|c| c.is_whitespace() || c.is_control() || "\"'<>`\\{}|^".contains(*c)) {
            return Err(invalid(&path, "site.base-url", format!("`{base_url}` holds {c:?}, which a URL cannot hold; percent-encode it (e.g. %20 for a space)")));
        }
        // Pages' links are the path followed by the site's own paths: a query or fragment
        // would come before them (`/a/?x=1/static/site.css`).
        if let Some(i) = base_url.find(['?', '#']) {
            let what = if base_url[i..].starts_with('?') { "a query" } else { "a fragment" };
            return Err(invalid(&path, "site.base-url", format!("`{base_url}` holds {what} (`{}`), which the site's links would follow; give the folder the site is served from, without it: `{}`", &base_url[i..], &base_url[..i])));
        }
        let (scheme, rest) = base_url.split_once("://").unwrap_or_default();
        let (host, folder) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !host.is_ascii() {
            return Err(invalid(&path, "site.base-url", format!("`{base_url}` names the host `{host}`, which is not ASCII; write it as its IDNA (punycode) form, `xn--…`")));
        }
        // sitemap.xml wants URLs as RFC 3986 writes them: the path's other characters as
        // their UTF-8 bytes, percent-encoded.
        let folder: String = folder.bytes().map(|b| if b.is_ascii() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        base_url = format!("{scheme}://{host}{folder}");
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
    }
    let folder = |name: &str| path.as_ref().map(|_| base.join(name)).filter(|p| p.is_dir());
    let site = SiteSettings { base_url, colour_by: raw.site.colour_by.clone(), templates: folder("templates"), statics: folder("static") };
    Ok(Settings {
        config_path: path,
        title: raw.site.title,
        site,
        archive,
        follow_symlinks: raw.archive.follow_symlinks,
        decode_memory_bytes: raw.archive.decode_memory_mb.saturating_mul(1 << 20),
        catalogue,
        out,
        cache,
        max_removed,
        allow_removals: overrides.allow_removals,
        encoder,
        header_fields: fits_keywords.iter().cloned().chain(raw.fits.position.then_some([crate::wcs::RA, crate::wcs::DEC, crate::wcs::FOV]).into_iter().flatten().map(String::from)).collect(),
        fits_keywords,
        fits_position: raw.fits.position,
        channels_set: pp.channels.is_some(),
        preprocess: PreprocessSettings {
            fits: FitsSettings { hdu, cube },
            stretch,
            stretch_8bit,
            clip_low: pp.clip_low,
            clip_high: pp.clip_high,
            channels,
            size: enc.size.unwrap_or(64),
            model_channels: match channels {
                Channels::Grey => 1,
                Channels::Rgb => 3,
            },
            max_pixels: raw.archive.max_pixels,
            max_file_bytes: raw.archive.max_file_mb.saturating_mul(1024 * 1024),
        },
        thumbs: ThumbSettings { size: raw.thumbnails.size, quality: raw.thumbnails.quality, preview: raw.thumbnails.preview_size },
        neighbours,
        layout,
        structure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_text(text: &str) -> Result<Settings, ConfigError> {
        let p = PathBuf::from("/srv/site/site-config.toml");
        let raw = parse_str(text, &p)?;
        resolve(raw, Some(p), Path::new("/home/u"), &Overrides::default())
    }

    #[test]
    fn paths_are_relative_to_the_config_file_and_flags_to_the_cwd() {
        let s = resolve_text("[archive]\nroot = \"../data/img\"\n").unwrap();
        assert_eq!(s.archive, PathBuf::from("/srv/data/img"));
        assert_eq!(s.out, PathBuf::from("/srv/site/site"));
        let raw = parse_str("[archive]\nroot = \"x\"\n", Path::new("/srv/c.toml")).unwrap();
        let o = Overrides { out: Some("public".into()), ..Default::default() };
        let s = resolve(raw, Some("/srv/c.toml".into()), Path::new("/home/u"), &o).unwrap();
        assert_eq!(s.out, PathBuf::from("/home/u/public"));
    }

    #[test]
    fn defaults_are_sane() {
        let s = resolve_text("[archive]\nroot = \"a\"\n").unwrap();
        assert_eq!(s.preprocess.stretch, Stretch::Asinh);
        assert_eq!(s.preprocess.fits.hdu, HduChoice::Auto);
        assert_eq!(s.preprocess.fits.cube, CubeMode::Peak);
        assert_eq!(s.thumbs.size, 128);
    }

    #[test]
    fn fits_keywords_are_checked_and_default_to_what_an_astronomer_looks_for() {
        let s = resolve_text("[archive]\nroot = \"a\"\n").unwrap();
        assert_eq!(s.fits_keywords, ["OBJECT", "DATE-OBS", "TELESCOP", "INSTRUME", "FILTER", "FILTER1", "FILTER2", "EXPTIME"]);
        let s = resolve_text("[archive]\nroot = \"a\"\n[fits]\nkeywords = []\n").unwrap();
        assert!(s.fits_keywords.is_empty());
        let s = resolve_text("[archive]\nroot = \"a\"\n[fits]\nkeywords = [\"AIRMASS\", \"HIERARCH\", \"CD1_1\"]\n").unwrap();
        assert_eq!(s.fits_keywords, ["AIRMASS", "HIERARCH", "CD1_1"]);
        let err = |list: &str| resolve_text(&format!("[archive]\nroot = \"a\"\n[fits]\nkeywords = {list}\n")).unwrap_err().to_string();
        assert!(err("[\"object\"]").contains("key `fits.keywords`: `object` is in lower case; FITS headers write keywords in upper case: write `OBJECT`"), "{}", err("[\"object\"]"));
        for bad in ["\"\"", "\"EXPOSURE_TIME\"", "\"DATE OBS\"", "\"ÖBJECT\"", "\"A.B\""] {
            let e = err(&format!("[{bad}]"));
            assert!(e.contains("is not a FITS keyword; a keyword is 1 to 8 of the characters A-Z, 0-9, `-` and `_`"), "{bad}: {e}");
        }
        assert!(err("[\"OBJECT\", \"OBJECT\"]").contains("`OBJECT` is listed twice; list each keyword once"));
    }

    #[test]
    fn hdu_accepts_number_name_or_auto() {
        let s = resolve_text("[archive]\nroot = \"a\"\n[fits]\nhdu = 1\n").unwrap();
        assert_eq!(s.preprocess.fits.hdu, HduChoice::Index(1));
        let s = resolve_text("[archive]\nroot = \"a\"\n[fits]\nhdu = \"SCI\"\n").unwrap();
        assert_eq!(s.preprocess.fits.hdu, HduChoice::Name("SCI".into()));
        assert!(resolve_text("[archive]\nroot = \"a\"\n[fits]\nhdu = -1\n").is_err());
    }

    fn spec(channels: u32) -> crate::encoder::InputSpec {
        crate::encoder::InputSpec {
            input: "pixels".into(),
            output: "embedding".into(),
            channels,
            size: 32,
            mean: vec![0.5; channels as usize],
            std: vec![0.25; channels as usize],
            dim: 8,
            batch: 64,
            fixed_batch: false,
            name: "m".into(),
        }
    }

    /// Regression: a 3-channel model was fed grey in three channels unless the config said
    /// "rgb", and nothing said so.
    #[test]
    fn a_three_channel_model_gets_rgb_unless_the_config_says_grey() {
        let mut s = resolve_text("[archive]\nroot = \"a\"\n").unwrap();
        let grey = s.preprocess.digest();
        assert_eq!(s.adopt_encoder(&spec(3)), Ok(None));
        assert_eq!((s.preprocess.channels, s.preprocess.model_channels), (Channels::Rgb, 3));
        assert_ne!(s.preprocess.digest(), grey);
        let mut s = resolve_text("[archive]\nroot = \"a\"\n[preprocess]\nchannels = \"grey\"\n").unwrap();
        let note = s.adopt_encoder(&spec(3)).unwrap().expect("said");
        assert!(note.starts_with("the model `m` takes 3 channels; [preprocess] channels = \"grey\" feeds it colour averaged to grey"), "{note}");
        assert_eq!(s.preprocess.channels, Channels::Grey);
        let mut s = resolve_text("[archive]\nroot = \"a\"\n").unwrap();
        assert_eq!(s.adopt_encoder(&spec(1)), Ok(None));
        assert_eq!((s.preprocess.channels, s.preprocess.model_channels), (Channels::Grey, 1));
    }

    #[test]
    fn digest_changes_with_every_setting_that_changes_pixels() {
        let a = resolve_text("[archive]\nroot = \"a\"\n").unwrap().preprocess;
        let mut b = a.clone();
        b.stretch = Stretch::Log;
        assert_ne!(a.digest(), b.digest());
        let mut c = a.clone();
        c.fits.cube = CubeMode::Plane(2);
        assert_ne!(a.digest(), c.digest());
        assert_eq!(a.digest(), a.clone().digest());
    }

    #[test]
    fn base_url_is_a_folder_with_its_path_percent_encoded() {
        let base = |url: &str| resolve_text(&format!("[archive]\nroot = \"a\"\n[site]\nbase-url = \"{url}\"\n")).map(|s| s.site.base_url);
        assert_eq!(base("https://archive.example.org/sim").unwrap(), "https://archive.example.org/sim/");
        assert_eq!(base("https://archive.example.org").unwrap(), "https://archive.example.org/");
        // Regression: non-ASCII went into sitemap.xml's <loc> as it was written.
        assert_eq!(base("https://archive.example.org/ünï/").unwrap(), "https://archive.example.org/%C3%BCn%C3%AF/");
        assert_eq!(base("http://h:8080/a%20b/").unwrap(), "http://h:8080/a%20b/", "what is encoded stays");
        // Regression: a query or fragment was accepted, and pages linked to `/x/?q=1/static/…`.
        let e = base("https://archive.example.org/surveys/simsite/?x=1").unwrap_err().to_string();
        assert!(e.contains("key `site.base-url`: `https://archive.example.org/surveys/simsite/?x=1` holds a query (`?x=1`), which the site's links would follow; give the folder the site is served from, without it: `https://archive.example.org/surveys/simsite/`"), "{e}");
        let e = base("https://archive.example.org/s/#top").unwrap_err().to_string();
        assert!(e.contains("holds a fragment (`#top`)"), "{e}");
        let e = base("https://bücher.example/").unwrap_err().to_string();
        assert!(e.contains("names the host `bücher.example`, which is not ASCII; write it as its IDNA (punycode) form"), "{e}");
    }
}
