//! The decode + preprocess stage: read each file once (hashing it on the way), decode,
//! stretch and resize it, make its thumbnail, read its FITS header keywords (while it is
//! open for its pixels, or alone when nothing else is needed), and stream the encoder input to the next
//! stage through a bounded channel, so memory stays bounded whatever the archive's size.
//!
//! Work runs on rayon's pool; the consumer runs on the calling thread (not a pool thread,
//! so it never takes a worker away from decoding). A file that fails is handed to the
//! consumer as an error with its reason; it never stops the stage.

use std::path::PathBuf;

use rayon::prelude::*;

use crate::catalogue::Item;
use crate::config::{PreprocessSettings, ThumbSettings};
use crate::decode;
use crate::digests::{Memo, Stamp};
use crate::error::FileError;
use crate::fsutil::{self, FileId};
use crate::preprocess;
use crate::thumbs;

/// What the stage produced for one item.
#[derive(Debug)]
pub struct Ingested {
    /// blake3 of the file's bytes.
    pub digest: blake3::Hash,
    /// The cached thumbnail.
    pub thumb: PathBuf,
    /// The cached preview (`[thumbnails] preview-size`), if previews are made.
    pub preview: Option<PathBuf>,
    /// Whether the thumbnail was made now (false: found in the cache).
    pub thumb_made: bool,
    /// The identity of the cached thumbnail and preview, when they were found in the cache
    /// (publishing links them without asking again).
    pub thumb_meta: Option<FileId>,
    pub preview_meta: Option<FileId>,
    /// The encoder input, when the file had to be decoded.
    pub tensor: Option<Vec<f32>>,
    /// Whether the file was read (false: its digest was remembered and nothing else was
    /// needed from it).
    pub read: bool,
    /// The values of `[fits] keywords`, when they were read now (a FITS file the header
    /// cache has no values for).
    pub header: Option<decode::Header>,
    /// The file's stamp, when its digest may be remembered for the next build.
    pub stamp: Option<Stamp>,
}

pub struct IngestSettings<'a> {
    pub preprocess: &'a PreprocessSettings,
    pub thumbs: &'a ThumbSettings,
    pub cache: &'a std::path::Path,
    /// Decode even when the cache holds everything (used by `check`, which writes nothing).
    pub validate_only: bool,
    /// Whether the encoder input is needed for a file with this content digest (false
    /// when its embedding is cached, or there is no encoder).
    pub needs_tensor: &'a (dyn Fn(&blake3::Hash) -> bool + Sync),
    /// Whether `[fits] keywords` must be read from a FITS file with this content digest
    /// (false when the header cache has its values, or there are no keywords).
    pub needs_header: &'a (dyn Fn(&blake3::Hash) -> bool + Sync),
    /// `[fits] keywords`.
    pub keywords: &'a [String],
    /// Digests remembered from the previous build (see `digests`).
    pub memo: Option<&'a Memo>,
    /// The thumbnail cache's files, listed before the stage (see `thumbs::Listing`).
    pub listed: Option<&'a thumbs::Listing>,
    /// `preprocess.display_digest()`, worked out once.
    pub display: blake3::Hash,
}

impl<'a> IngestSettings<'a> {
    pub fn new(
        settings: &'a crate::config::Settings,
        needs_tensor: &'a (dyn Fn(&blake3::Hash) -> bool + Sync),
        validate_only: bool,
    ) -> IngestSettings<'a> {
        crate::decode::budget::set_limit(settings.decode_memory_bytes);
        IngestSettings {
            preprocess: &settings.preprocess,
            thumbs: &settings.thumbs,
            cache: &settings.cache,
            validate_only,
            needs_tensor,
            needs_header: &no_header,
            keywords: &settings.header_fields,
            memo: None,
            listed: None,
            display: settings.preprocess.display_digest(),
        }
    }
}

/// No header is read unless the caller asks for it (a build or `embed`, with a header cache).
fn no_header(_: &blake3::Hash) -> bool {
    false
}

fn ingest_one(item: &Item, s: &IngestSettings) -> Result<Ingested, FileError> {
    let meta = match &item.entry.meta {
        Some(m) => m.clone(),
        None => std::fs::metadata(&item.entry.abs)?,
    };
    let size = meta.len();
    let limit = s.preprocess.max_file_bytes;
    if size > limit {
        return Err(FileError::FileTooLarge { size, limit });
    }
    let stamp = Stamp::of(&meta);
    let keep = s.memo.filter(|m| m.settled(&stamp)).map(|_| stamp);
    let cached = |digest: &blake3::Hash| {
        let thumb_key = thumbs::cache_key(digest, &s.display, s.thumbs);
        // The preview is cached like the thumbnail, under the key of its own size.
        let preview_key = (s.thumbs.preview > 0).then(|| {
            let ps = crate::config::ThumbSettings { size: s.thumbs.preview, ..*s.thumbs };
            thumbs::cache_key(digest, &s.display, &ps)
        });
        let (thumb, preview) = (thumbs::cache_path(s.cache, &thumb_key), preview_key.map(|k| thumbs::cache_path(s.cache, &k)));
        let file = |p: &PathBuf, key: &blake3::Hash| {
            // An empty file is not a thumbnail (see `thumbs::Listing::of`).
            s.listed.and_then(|l| l.get(key)).or_else(|| std::fs::metadata(p).ok().filter(|m| m.is_file() && m.len() > 0).map(|m| FileId::of(&m)))
        };
        let thumb_meta = file(&thumb, &thumb_key);
        let preview_meta = preview.as_ref().zip(preview_key.as_ref()).and_then(|(p, k)| file(p, k));
        let preview_cached = preview.is_none() || preview_meta.is_some();
        (thumb, preview, thumb_meta, preview_meta, preview_cached)
    };
    // Whether the file's content is needed beyond the outputs the cache may hold.
    let decode_anyway = |digest: &blake3::Hash| s.validate_only || (s.needs_tensor)(digest);
    let needs_header = |digest: &blake3::Hash| item.entry.format == crate::scan::Format::Fits && (s.needs_header)(digest);
    // An unchanged file whose outputs are all cached is not even read.
    if let Some(digest) = s.memo.and_then(|m| m.get(&item.entry.rel_str, &stamp)).filter(|d| !decode_anyway(d) && !needs_header(d)) {
        if let (thumb, preview, thumb_meta @ Some(_), preview_meta, true) = cached(&digest) {
            return Ok(Ingested { digest, thumb, preview, thumb_made: false, thumb_meta, preview_meta, tensor: None, read: false, header: None, stamp: keep });
        }
    }
    let bytes = std::fs::read(&item.entry.abs)?;
    let digest = blake3::hash(&bytes);
    let (thumb, preview, thumb_meta, preview_meta, preview_cached) = cached(&digest);
    let thumb_cached = thumb_meta.is_some();
    let keywords = if needs_header(&digest) { s.keywords } else { &[] };
    if !decode_anyway(&digest) && thumb_cached && preview_cached {
        // Only the header is missing (a cache from before the keywords were read, or with
        // another list): it is read without a pixel.
        let header = match keywords.is_empty() {
            true => None,
            false => Some(decode::fits_header(&bytes, s.preprocess, keywords)?.values),
        };
        return Ok(Ingested { digest, thumb, preview, thumb_made: false, thumb_meta, preview_meta, tensor: None, read: true, header, stamp: keep });
    }
    let (raster, header) = decode::decode_with_header(&bytes, item.entry.format, s.preprocess, keywords)?;
    let header = (!keywords.is_empty()).then_some(header);
    drop(bytes);
    let prepared = preprocess::prepare(&raster, s.preprocess, s.thumbs.size)?;
    let thumb_made = !s.validate_only && !thumb_cached;
    let jpeg = |t: &preprocess::Thumb| {
        thumbs::encode_jpeg(t, s.thumbs.quality).map_err(|e| FileError::Decode { format: "thumbnail", message: e.to_string() })
    };
    if thumb_made {
        fsutil::atomic_write(&thumb, &jpeg(&prepared.thumb)?).map_err(|e| FileError::CacheWrite { path: thumb.clone(), source: e })?;
    }
    if let Some(p) = preview.as_ref().filter(|_| !s.validate_only && !preview_cached) {
        let write = |bytes: &[u8]| fsutil::atomic_write(p, bytes).map_err(|e| FileError::CacheWrite { path: p.clone(), source: e });
        // An image no larger than the thumbnail has a preview equal to it, byte for byte:
        // the cache then holds it once, under both names (no second encoding or file),
        // or, where the file system has no hard links, as a copy.
        let longer = raster.width.max(raster.height) as u32;
        if longer <= s.thumbs.size.min(s.thumbs.preview) || s.thumbs.size == s.thumbs.preview {
            if fsutil::link_content(&thumb, p).is_err() {
                write(&jpeg(&prepared.thumb)?)?;
            }
        } else {
            write(&jpeg(&preprocess::picture(&prepared.bands, &raster, s.thumbs.preview))?)?;
        }
    }
    drop(raster);
    let tensor = (s.needs_tensor)(&digest).then_some(prepared.tensor);
    Ok(Ingested { digest, thumb, preview, thumb_made, thumb_meta, preview_meta, tensor, read: true, header, stamp: keep })
}

/// Runs `read`, with a panic (a decoder's bug set off by one file's bytes) made that file's
/// error: a nightly build skips the file and goes on, as for any other bad file. Unwinding
/// is safe here: the decode memory budget is given back on drop and its lock is poison-proof.
fn guarded<T>(read: impl FnOnce() -> Result<T, FileError>) -> Result<T, FileError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|m| m.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Err(FileError::Crashed(message))
    })
}

/// Runs the stage over `items`, calling `consume(index, result)` on the calling thread as
/// results arrive (in no particular order). At most `queue` results wait in memory.
/// `consume` returns `Break` to stop the stage early (the workers stop at their next file).
pub fn run<F>(items: &[Item], s: &IngestSettings, queue: usize, mut consume: F)
where
    F: FnMut(usize, Result<Ingested, FileError>) -> std::ops::ControlFlow<()>,
{
    let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
    std::thread::scope(|scope| {
        scope.spawn(move || {
            items.par_iter().enumerate().try_for_each_with(tx, |tx, (i, item)| {
                // A send fails only when the consumer has gone; then stop early.
                tx.send((i, guarded(|| ingest_one(item, s)))).map_err(|_| ())
            })
        });
        for (i, result) in rx.iter() {
            if consume(i, result).is_break() {
                // Dropping the receiver makes every worker's next send fail, which ends them.
                break;
            }
        }
        drop(rx);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_reading_is_that_files_error() {
        // Both kinds of payload panic! makes: a formatted String and a literal &str.
        let n = 3;
        match guarded(|| -> Result<(), FileError> { panic!("index {n} out of range") }) {
            Err(FileError::Crashed(m)) => assert_eq!(m, "index 3 out of range"),
            other => panic!("{other:?}"),
        }
        let e = guarded(|| -> Result<(), FileError> { panic!("bad huffman table") }).unwrap_err();
        assert!(e.to_string().starts_with("reading it crashed (bad huffman table); only this file was skipped"), "{e}");
        assert!(matches!(guarded(|| Ok::<u8, FileError>(7)), Ok(7)));
        assert!(matches!(guarded(|| Err::<u8, _>(FileError::Empty)), Err(FileError::Empty)));
    }
}
