//! Typed errors. Fatal ones (config, catalogue, output folder) stop a build with a message
//! that names the file or key and the fix; per-file ones ([`FileError`]) are reported and
//! the build goes on.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {} does not exist\n  fix: pass the right --config path, or run `simsite init` to write a documented site-config.toml", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid config {}:\n{message}\n  fix: correct or remove that key (`simsite init` writes a config listing every key)", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {file}: key `{key}`: {message}\n  fix: {}", fix_for(key))]
    Invalid { file: String, key: String, message: String },
    #[error("no archive folder given\n  fix: set `root` under [archive] in site-config.toml, or pass --archive DIR")]
    NoArchive,
    #[error("the output folder {} is inside the archive {}\n  fix: choose an output folder outside the archive (--out DIR or [output] dir)", out.display(), archive.display())]
    OutputInsideArchive { out: PathBuf, archive: PathBuf },
    #[error("the archive {} is inside the output folder {}\n  fix: choose an output folder that does not contain the archive (--out DIR or [output] dir)", archive.display(), out.display())]
    ArchiveInsideOutput { out: PathBuf, archive: PathBuf },
    #[error("the cache folder {} is inside the archive {}\n  fix: choose a cache folder outside the archive (--cache DIR or [output] cache)", cache.display(), archive.display())]
    CacheInsideArchive { cache: PathBuf, archive: PathBuf },
    #[error("the archive {} is inside the cache folder {}, which simsite prunes\n  fix: choose a cache folder that does not contain the archive (--cache DIR or [output] cache)", archive.display(), cache.display())]
    ArchiveInsideCache { archive: PathBuf, cache: PathBuf },
    #[error("the cache folder {} is the output folder {} or inside it, which each build replaces\n  fix: choose a cache folder beside the output folder, not in it (--cache DIR or [output] cache)", cache.display(), out.display())]
    CacheInsideOutput { cache: PathBuf, out: PathBuf },
    #[error("the output folder {} is inside the cache folder {}, which simsite prunes\n  fix: choose an output folder beside the cache folder, not in it (--out DIR or [output] dir)", out.display(), cache.display())]
    OutputInsideCache { out: PathBuf, cache: PathBuf },
}

/// Names as they appear in messages: "`a`, `b`, `c`".
pub(crate) fn backticked<T: std::fmt::Display>(names: impl IntoIterator<Item = T>) -> String {
    names.into_iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// `preprocess.clip-low` → "edit `clip-low` under [preprocess]".
fn fix_for(key: &str) -> String {
    match key.split_once('.') {
        Some((table, leaf)) => format!("edit `{leaf}` under [{table}]"),
        None => format!("edit `{key}`"),
    }
}

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("archive folder {} does not exist\n  fix: check [archive] root in the config or the --archive path", path.display())]
    Missing { path: PathBuf },
    #[error("archive path {} is not a folder\n  fix: point [archive] root or --archive at the folder that holds the images", path.display())]
    NotAFolder { path: PathBuf },
    #[error("cannot read the archive folder {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Error)]
pub enum CatalogueError {
    #[error("cannot read catalogue {}: {source}\n  fix: check `path` under [catalogue]", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("catalogue {}: {message}", path.display())]
    Csv { path: PathBuf, message: String },
    #[error("catalogue {}: no column `{column}` (needed by `{key}`); columns are: {available}\n  fix: set `{key}` under [catalogue] to one of those", path.display())]
    MissingColumn { path: PathBuf, column: String, key: String, available: String },
    #[error("catalogue {}: line {line} repeats the key `{key}` of line {first}\n  fix: every row must name a different file", path.display())]
    DuplicateKey { path: PathBuf, key: String, line: u64, first: u64 },
    #[error("catalogue {}: the header names column `{column}` twice (columns {first} and {second})\n  fix: give every column a different name in the first line", path.display())]
    DuplicateColumn { path: PathBuf, column: String, first: usize, second: usize },
}

/// Why one input file was skipped. The build goes on without it, except after a
/// `CacheWrite`, which is the machine's problem, not the file's (`run_ingest` stops on it).
#[derive(Debug, Error)]
pub enum FileError {
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write {} into the cache: {source}\n  fix: {}, or point [output] cache / --cache elsewhere; the site was left as it was", path.display(), cache_fix(source))]
    CacheWrite { path: PathBuf, source: std::io::Error },
    #[error("empty file")]
    Empty,
    #[error("file is {size} bytes, over the {limit}-byte limit (raise [archive] max-file-mb)")]
    FileTooLarge { size: u64, limit: u64 },
    #[error("gzip stream inflates to more than the {limit}-byte limit (raise [archive] max-file-mb)")]
    InflatesTooLarge { limit: u64 },
    #[error("image is {width}x{height} = {pixels} pixels, over the limit of {limit} (raise [archive] max-pixels)")]
    TooManyPixels { width: u64, height: u64, pixels: u64, limit: u64 },
    #[error("not a valid {format} file: {message}")]
    Decode { format: &'static str, message: String },
    #[error("FITS: {0}")]
    Fits(String),
    #[error("no image data: {0}")]
    NoImage(String),
    #[error("no finite pixels (all NaN, infinite, blank, or beyond the float32 range of ±3.4e38)")]
    AllBlank,
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A decoder panicked on this file (a bug in it, which the file's bytes set off).
    #[error("reading it crashed ({0}); only this file was skipped. Please report it with the file")]
    Crashed(String),
}

/// What to do about a failed write: free space when the disk is full, else permissions.
pub fn cache_fix(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => "free space in the cache folder",
        _ => "make the cache folder writable (owner, permissions, a read-only mount)",
    }
}

#[derive(Debug, Error)]
pub enum EncoderError {
    #[error("ONNX Runtime {} (libonnxruntime.so) could not be loaded: {detail}\n  fix: run `make setup` (or `bash scripts/setup.sh`), which unpacks it from the onnxruntime=={} wheel on PyPI; or set `onnxruntime` under [encoder] or ORT_DYLIB_PATH to the library", crate::encoder::ORT_VERSION, crate::encoder::ORT_VERSION)]
    NoRuntime { detail: String },
    #[error("cannot read the model {}: {source}\n  fix: check `model` under [encoder]", model.display())]
    ModelIo { model: PathBuf, source: std::io::Error },
    #[error("ONNX Runtime cannot load the model {}: {message}\n  fix: check that `model` under [encoder] is an ONNX file", model.display())]
    Model { model: PathBuf, message: String },
    #[error("the model {} does not fit: {message}\n  fix: {fix}", model.display())]
    Mismatch { model: PathBuf, message: String, fix: String },
    /// A `simsite.*` metadata value that does not parse (or is out of range): ignoring it
    /// would feed the model input it was not trained on.
    #[error("the model {} has `{key}` = {value:?} in its metadata; expected {expected}\n  fix: correct `{key}` in the model's metadata, or set `{}` under [encoder], which wins over it", model.display(), key.trim_start_matches("simsite."))]
    Metadata { model: PathBuf, key: String, value: String, expected: String },
    #[error("the model {} failed on a blank test batch at start-up: {message}\n  fix: check that the model runs on a float32 {shape} input; `channels` and `size` under [encoder] or in its `simsite.*` metadata give that shape", model.display())]
    Probe { model: PathBuf, message: String, shape: String },
    #[error("device = \"cuda\" under [encoder], but the CUDA execution provider cannot be used: {message}\n  fix: install onnxruntime-gpu's libraries beside libonnxruntime.so on a machine with a GPU, or set device = \"auto\" or \"cpu\"")]
    Cuda { message: String },
    #[error("the model {model} failed on a batch: {message}")]
    Run { model: String, message: String },
}
