//! The embedding cache: append-only Parquet segments, one folder per cache key.
//!
//! The key hashes everything that changes an embedding — the model's bytes, its input
//! contract, the preprocessing settings and [`crate::FORMAT_VERSION`] — and each row is keyed
//! by the content digest of the image file. So a rebuild embeds only new or changed files,
//! and a changed model or stretch can never be served yesterday's vectors: it simply looks
//! in another folder. Segments are written to a temporary name and renamed, and named by a
//! hash of their content, so a killed build never leaves a half segment, shards on shared
//! storage never collide, and the same rows always give the same file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, FixedSizeBinaryArray, FixedSizeListArray, Float32Array, ListArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::fsutil;
use crate::report::Problem;

/// Rows buffered before a segment is written: what a killed build can lose at most.
pub const SEGMENT_ROWS: usize = 10_000;
/// More segments than this are merged at the next prune.
pub const MAX_SEGMENTS: usize = 16;

pub type Digest = [u8; 32];

/// The cache key of an embedding run: model bytes, input contract, preprocessing.
pub fn cache_key(model: &blake3::Hash, spec_text: &str, preprocess: &blake3::Hash) -> String {
    let mut h = blake3::Hasher::new();
    h.update(format!("simsite-embeddings-v{}", crate::FORMAT_VERSION).as_bytes());
    h.update(model.as_bytes());
    h.update(spec_text.as_bytes());
    h.update(preprocess.as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

/// Whether `name` is spelt like a [`cache_key`].
pub fn is_key(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub struct EmbeddingCache {
    dir: PathBuf,
    dim: usize,
    index: HashMap<Digest, usize>,
    data: Vec<f32>,
    segments: Vec<PathBuf>,
    pending: Vec<Digest>,
    /// Damaged segments found (and removed) while opening.
    pub problems: Vec<Problem>,
}

/// A Parquet file of `batches` (each made only when the writer asks for it, so that one at a
/// time is held beside the file's bytes), `capacity` bytes reserved for it.
fn parquet_bytes(
    schema: arrow_schema::SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>,
    capacity: usize,
) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let mut out = Vec::with_capacity(capacity);
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(writer_properties()))?;
    for batch in batches {
        w.write(&batch?)?;
    }
    w.close()?;
    Ok(out)
}

/// Rows in one row group of the Parquet files simsite writes (`api/embeddings.parquet`, the
/// cache's segments): a few MB each, so the export never holds a second copy of every
/// embedding, and readers (DuckDB, pyarrow) can read the row groups in parallel.
const EXPORT_ROWS: usize = 16_384;

/// Plain encoding: digests, ids and embeddings hardly ever repeat, so a dictionary is work
/// thrown away (the writer builds one, then falls back when it outgrows its page).
fn writer_properties() -> parquet::file::properties::WriterProperties {
    parquet::file::properties::WriterProperties::builder()
        .set_created_by("simsite".into())
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(EXPORT_ROWS))
        .build()
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn segment_batch(keys: &[Digest], values: Vec<f32>, dim: usize) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let digests = FixedSizeBinaryArray::try_from_iter(keys.iter())?;
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let emb = FixedSizeListArray::try_new(item, dim as i32, Arc::new(Float32Array::from(values)), None)?;
    let schema = Schema::new(vec![
        Field::new("digest", DataType::FixedSizeBinary(32), false),
        Field::new("embedding", emb.data_type().clone(), false),
    ]);
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(digests), Arc::new(emb)])
}

/// Reads one segment, handing each row to `row`, or says why it is unusable.
fn read_segment(path: &Path, dim: usize, mut row: impl FnMut(Digest, &[f32])) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let digests = batch
            .column(0)
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .filter(|a| a.value_length() == 32)
            .ok_or("column 0 is not 32-byte digests")?;
        let emb = batch.column(1).as_any().downcast_ref::<FixedSizeListArray>().ok_or("column 1 is not a fixed-size list")?;
        if emb.value_length() as usize != dim {
            return Err(format!("embeddings have {} dimensions, expected {dim}", emb.value_length()));
        }
        let values = emb.values().as_any().downcast_ref::<Float32Array>().ok_or("embeddings are not float32")?;
        for i in 0..batch.num_rows() {
            let mut d = [0u8; 32];
            d.copy_from_slice(digests.value(i));
            row(d, &values.values()[i * dim..(i + 1) * dim]);
        }
    }
    Ok(())
}

impl EmbeddingCache {
    /// Opens (creating) the cache folder `root/embeddings/<key>` and loads every segment.
    pub fn open(root: &Path, key: &str, dim: usize) -> std::io::Result<EmbeddingCache> {
        let dir = root.join("embeddings").join(key);
        std::fs::create_dir_all(&dir)?;
        let mut c = EmbeddingCache {
            dir,
            dim,
            index: HashMap::new(),
            data: Vec::new(),
            segments: Vec::new(),
            pending: Vec::new(),
            problems: Vec::new(),
        };
        let mut names: Vec<PathBuf> = std::fs::read_dir(&c.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet") && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        names.sort();
        for path in names {
            // Rows go straight into the index; a segment that fails halfway is rolled back.
            let (len_before, mut added) = (c.data.len(), Vec::new());
            let result = read_segment(&path, dim, |d, v| {
                if let std::collections::hash_map::Entry::Vacant(e) = c.index.entry(d) {
                    e.insert(c.data.len() / dim);
                    c.data.extend_from_slice(v);
                    added.push(d);
                }
            });
            match result {
                Ok(()) => c.segments.push(path),
                Err(reason) => {
                    for d in &added {
                        c.index.remove(d);
                    }
                    c.data.truncate(len_before);
                    // Its rows are simply missing from the index: they get recomputed.
                    std::fs::remove_file(&path)?;
                    c.problems.push(Problem {
                        path: path.display().to_string(),
                        reason: format!("damaged cache segment removed ({reason}); its embeddings will be recomputed"),
                    });
                }
            }
        }
        Ok(c)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    pub fn get(&self, d: &Digest) -> Option<&[f32]> {
        self.index.get(d).map(|&i| &self.data[i * self.dim..(i + 1) * self.dim])
    }

    pub fn keys(&self) -> impl Iterator<Item = Digest> + '_ {
        self.index.keys().copied()
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.index.contains_key(d)
    }

    /// Adds an embedding; every [`SEGMENT_ROWS`] new rows are written out as a segment.
    pub fn insert(&mut self, d: Digest, emb: &[f32]) -> std::io::Result<()> {
        debug_assert_eq!(emb.len(), self.dim);
        if self.index.contains_key(&d) {
            return Ok(());
        }
        self.index.insert(d, self.data.len() / self.dim);
        self.data.extend_from_slice(emb);
        self.pending.push(d);
        if self.pending.len() >= SEGMENT_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the rows not yet on disk as one segment (temporary name, then rename).
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let keys = std::mem::take(&mut self.pending);
        let path = self.write_segment(&keys)?;
        self.segments.push(path);
        Ok(())
    }

    fn write_segment(&self, keys: &[Digest]) -> std::io::Result<PathBuf> {
        let mut values = Vec::with_capacity(keys.len() * self.dim);
        for k in keys {
            values.extend_from_slice(self.get(k).expect("pending rows are indexed"));
        }
        let batch = segment_batch(keys, values, self.dim).map_err(io_err)?;
        let bytes = parquet_bytes(batch.schema(), [Ok(batch)], 0).map_err(io_err)?;
        let name = format!("seg-{}.parquet", &blake3::hash(&bytes).to_hex()[..24]);
        let path = self.dir.join(name);
        fsutil::atomic_write(&path, &bytes)?;
        Ok(path)
    }

    /// Drops entries for images no longer in the archive (and merges many small segments;
    /// see `fsutil::rewrite_parts`). Returns entries dropped.
    pub fn prune(&mut self, used: &HashSet<Digest>) -> std::io::Result<usize> {
        self.flush()?;
        let unused = self.index.keys().filter(|k| !used.contains(*k)).count();
        if unused == 0 && self.segments.len() <= MAX_SEGMENTS {
            return Ok(0);
        }
        let mut keep: Vec<Digest> = self.index.keys().filter(|k| used.contains(*k)).copied().collect();
        keep.sort_unstable();
        let new_segments = fsutil::rewrite_parts(&self.segments, &keep, SEGMENT_ROWS * 4, |chunk| self.write_segment(chunk))?;
        let mut data = Vec::with_capacity(keep.len() * self.dim);
        let mut index = HashMap::with_capacity(keep.len());
        for k in &keep {
            index.insert(*k, data.len() / self.dim);
            data.extend_from_slice(self.get(k).expect("kept rows are indexed"));
        }
        self.index = index;
        self.data = data;
        self.segments = new_segments;
        Ok(unused)
    }

    /// Removes the folders of other cache keys (older models or settings).
    /// Folders of other keys beside this one: embeddings of another model, other
    /// preprocessing settings or an older simsite, which this cache does not use. Only
    /// folders named like a key are simsite's.
    fn siblings(&self) -> std::io::Result<Vec<PathBuf>> {
        let Some(parent) = self.dir.parent() else { return Ok(Vec::new()) };
        let mut v = Vec::new();
        for e in std::fs::read_dir(parent)? {
            let p = e?.path();
            if p.is_dir() && p != self.dir && p.file_name().and_then(|n| n.to_str()).is_some_and(is_key) {
                v.push(p);
            }
        }
        v.sort();
        Ok(v)
    }

    /// [`Self::siblings`], for a warning (none when they cannot be listed).
    pub fn other_keys(&self) -> Vec<PathBuf> {
        self.siblings().unwrap_or_default()
    }

    pub fn remove_other_keys(&self) -> std::io::Result<usize> {
        let others = self.siblings()?;
        for p in &others {
            std::fs::remove_dir_all(p)?;
        }
        Ok(others.len())
    }
}

/// `api/embeddings.parquet`: `id`, `path`, `embedding` (list of float32), in item order.
pub fn export_parquet(ids: &[&str], paths: &[&str], embeddings: &[f32], dim: usize) -> std::io::Result<Vec<u8>> {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("embedding", DataType::List(item.clone()), false),
    ]));
    // Written a row group at a time: the arrays of one group are all that is held beside
    // the file's bytes.
    let groups = (0..ids.len()).step_by(EXPORT_ROWS).map(|start| {
        let end = (start + EXPORT_ROWS).min(ids.len());
        let offs: Vec<i32> = (0..=end - start).map(|i| (i * dim) as i32).collect();
        let list = ListArray::try_new(
            item.clone(),
            arrow_buffer::OffsetBuffer::new(arrow_buffer::ScalarBuffer::from(offs)),
            Arc::new(Float32Array::from(embeddings[start * dim..end * dim].to_vec())),
            None,
        )?;
        RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(ids[start..end].to_vec())), Arc::new(StringArray::from(paths[start..end].to_vec())), Arc::new(list)],
        )
    });
    parquet_bytes(schema.clone(), groups, embeddings.len() * 4 + ids.len() * 64).map_err(io_err)
}

/// What `api/embeddings.parquet` holds: ids, paths and the n × dim embeddings, in item order.
pub struct Exported {
    pub ids: Vec<String>,
    pub paths: Vec<String>,
    pub embeddings: Vec<f32>,
    pub dim: usize,
}

/// Reads a site's `api/embeddings.parquet` back (for `query` and the benchmarks).
pub fn read_exported(path: &Path) -> Result<Exported, String> {
    use arrow_array::Array;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("{} is not a simsite embeddings file: {e}", path.display()))?;
    let mut out = Exported { ids: Vec::new(), paths: Vec::new(), embeddings: Vec::new(), dim: 0 };
    for batch in reader {
        let b = batch.map_err(|e| format!("{}: {e}", path.display()))?;
        let col = |name: &str| b.column_by_name(name).ok_or_else(|| format!("{} has no column `{name}`", path.display()));
        let ids = col("id")?.as_any().downcast_ref::<StringArray>().ok_or("`id` is not text")?.clone();
        let paths = col("path")?.as_any().downcast_ref::<StringArray>().ok_or("`path` is not text")?.clone();
        let emb = col("embedding")?.as_any().downcast_ref::<ListArray>().ok_or("`embedding` is not a list")?.clone();
        for i in 0..b.num_rows() {
            let row = emb.value(i);
            let v = row.as_any().downcast_ref::<Float32Array>().ok_or("`embedding` is not float32")?;
            if out.dim == 0 {
                out.dim = v.len();
            } else if v.len() != out.dim {
                return Err(format!("{}: row {i} has {} values, not {}", path.display(), v.len(), out.dim));
            }
            out.embeddings.extend_from_slice(v.values());
            out.ids.push(ids.value(i).to_string());
            out.paths.push(paths.value(i).to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_removes_other_keys_folders_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let key = "0123456789abcdef0123456789abcdef";
        let c = EmbeddingCache::open(tmp.path(), key, 4).unwrap();
        let other = tmp.path().join("embeddings/fedcba9876543210fedcba9876543210");
        let foreign = tmp.path().join("embeddings/my-project");
        for d in [&other, &foreign] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("results.npy"), b"x").unwrap();
        }
        assert_eq!(c.remove_other_keys().unwrap(), 1);
        assert!(!other.exists(), "another key's folder is the cache's to remove");
        assert!(foreign.join("results.npy").is_file(), "a folder not named like a key is not");
        assert!(tmp.path().join("embeddings").join(key).is_dir());
        assert!(is_key(key) && !is_key("my-project") && !is_key("0123456789ABCDEF0123456789ABCDEF"));
    }
}
