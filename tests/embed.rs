//! The embed stage on real ONNX models (tests/fixtures, made by make_models.py) through the
//! real ONNX Runtime library that `scripts/setup.sh` installs: input contract from metadata
//! or config, start-up errors, the cache, kill safety and sharding.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use simsite::encoder::{Encoder, EncoderSettings};

fn settings(model: &str) -> EncoderSettings {
    EncoderSettings { model: fixture(model), ..Default::default() }
}

fn expected(case: &str) -> Vec<f32> {
    let v: Value = serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    let c = v["cases"].as_array().unwrap().iter().find(|c| c["name"] == case).unwrap();
    let e: Vec<f32> = c["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let n = e.iter().map(|x| x * x).sum::<f32>().sqrt();
    e.iter().map(|x| x / n).collect()
}

fn ramp() -> Vec<f32> {
    (0..256).map(|i| i as f32 / 255.0).collect()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

#[test]
fn metadata_gives_the_input_contract_and_results_match_onnxruntime_python() {
    let mut e = Encoder::load(&settings("tiny-meta.onnx")).unwrap();
    assert_eq!((e.spec.input.as_str(), e.spec.output.as_str()), ("pixels", "embedding"));
    assert_eq!((e.spec.channels, e.spec.size, e.spec.dim), (1, 16, 8));
    assert_eq!((e.spec.mean.clone(), e.spec.std.clone()), (vec![0.5], vec![0.25]));
    assert_eq!(e.spec.name, "tiny-test");
    assert!(!e.spec.fixed_batch);
    let mut two = vec![0.5f32; 256];
    two.extend(ramp());
    let out = e.embed(&two, 2).unwrap();
    assert!(close(&out[..8], &expected("uniform_0.5")), "{:?}", &out[..8]);
    assert!(close(&out[8..], &expected("ramp")), "{:?}", &out[8..]);
    // L2-normalised.
    assert!((out[8..].iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
}

#[test]
fn config_supplies_what_a_model_without_metadata_lacks() {
    let mut s = settings("tiny-nometa.onnx");
    s.input = Some("x".into());
    s.output = Some("y".into());
    s.mean = Some(vec![0.5]);
    s.std = Some(vec![0.25]);
    let mut e = Encoder::load(&s).unwrap();
    assert_eq!((e.spec.channels, e.spec.size), (1, 16), "taken from the graph");
    assert!(close(&e.embed(&ramp(), 1).unwrap(), &expected("ramp")));
    // Without mean/std the model sees raw [0, 1] pixels: a different embedding.
    let mut plain = Encoder::load(&settings("tiny-nometa.onnx")).unwrap();
    assert_eq!(plain.spec.input, "x", "the only input is found by itself");
    assert!(!close(&plain.embed(&ramp(), 1).unwrap(), &expected("ramp")));
}

#[test]
fn fixed_batch_models_run_in_their_own_batch_size() {
    let mut e = Encoder::load(&settings("tiny-fixed-batch.onnx")).unwrap();
    assert_eq!((e.spec.batch, e.spec.fixed_batch), (4, true));
    let mut seven = Vec::new();
    for _ in 0..7 {
        seven.extend(ramp());
    }
    let out = e.embed(&seven, 7).unwrap();
    for row in out.chunks(8) {
        assert!(close(row, &expected("ramp")));
    }
}

#[test]
fn the_output_is_chosen_by_name() {
    let mut e = Encoder::load(&settings("two-outputs.onnx")).unwrap();
    assert_eq!(e.spec.dim, 8);
    assert!(close(&e.embed(&ramp(), 1).unwrap(), &expected("ramp")));
}

#[test]
fn embeddings_do_not_depend_on_batch_neighbours() {
    let mut e = Encoder::load(&settings("bench-cnn.onnx")).unwrap();
    let img: Vec<f32> = (0..4096).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
    let alone = e.embed(&img, 1).unwrap();
    let mut many = Vec::new();
    for k in 0..40 {
        many.extend(img.iter().map(|v| (v + k as f32 * 0.01) % 1.0));
    }
    many.extend(&img);
    let out = e.embed(&many, 41).unwrap();
    assert_eq!(&out[40 * 128..], &alone[..], "bit-identical whatever the batch holds");
}

#[test]
fn mismatched_models_fail_at_start_up_with_the_reason() {
    let err = |s: EncoderSettings| Encoder::load(&s).err().expect("must fail").to_string();
    assert_eq!(
        err(settings("tiny-rank3.onnx")),
        format!(
            "the model {} does not fit: input `pixels` has rank 3 ([-1, 16, 16]); simsite feeds NCHW images (rank 4: batch, channels, height, width)\n  fix: export the model with a [batch, channels, height, width] input (an Unsqueeze at the input makes one of a [batch, height, width] input)",
            fixture("tiny-rank3.onnx").display()
        )
    );
    let mut s = settings("tiny-fixed-batch.onnx");
    s.batch = Some(8);
    assert!(err(s).ends_with("does not fit: its batch size is fixed to 4, but `batch = 8` is configured\n  fix: remove `batch` under [encoder] or set it to 4"));
    let mut s = settings("tiny-meta.onnx");
    s.channels = Some(3);
    assert!(err(s).ends_with("does not fit: input `pixels` takes 1 channel(s), but `channels` under [encoder] says 3\n  fix: remove `channels` under [encoder] or set it to 1"));
    let mut s = settings("tiny-meta.onnx");
    s.output = Some("features".into());
    assert!(err(s).ends_with("does not fit: it has no output `features` (named by `output` under [encoder]); its outputs are `embedding`\n  fix: set `output` under [encoder] to one of those"));
    let d = tempfile::tempdir().unwrap();
    let junk = write(&d.path().join("junk.onnx"), b"not a protobuf at all");
    let e = err(EncoderSettings { model: junk.clone(), ..Default::default() });
    assert!(e.starts_with(&format!("ONNX Runtime cannot load the model {}: ", junk.display())), "{e}");
    let e = err(EncoderSettings { model: d.path().join("missing.onnx"), ..Default::default() });
    assert!(e.starts_with(&format!("cannot read the model {}: ", d.path().join("missing.onnx").display())), "{e}");
}

struct Site {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Site {
    /// An archive of `n` 16x16 FITS images (all different) and a config using `model`.
    fn new(n: usize, model: &str) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for i in 0..n {
            add_image(&root, i);
        }
        let s = Site { _tmp: tmp, root };
        s.config(model, "");
        s
    }
    fn config(&self, model: &str, extra: &str) {
        std::fs::write(
            self.root.join("site-config.toml"),
            format!("[archive]\nroot = \"archive\"\n[output]\ndir = \"out\"\ncache = \"cache\"\n[encoder]\nmodel = \"{}\"\n{extra}", fixture(model).display()),
        )
        .unwrap();
    }
    fn build(&self) -> Value {
        let (code, _, err) = run(&self.root, &["build"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_slice(&std::fs::read(self.root.join("cache/last-build.json")).unwrap()).unwrap()
    }
    fn segments(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for d in std::fs::read_dir(self.root.join("cache/embeddings")).unwrap() {
            for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
                v.push(f.unwrap().path());
            }
        }
        v.sort();
        v
    }
}

/// An image in an extension, with header keywords in both HDUs (see `[fits] keywords`).
fn add_image(root: &Path, i: usize) {
    let v = blob(16, 16, (i % 13) as f32 + 1.5, (i / 13 % 13) as f32 + 1.5);
    let v: Vec<f32> = v.iter().enumerate().map(|(k, x)| x + ((k * (i + 3)) % 17) as f32).collect();
    let primary = Hdu::empty().with("OBJECT", V::S(["M51", "M82", "NGC 253"][i % 3])).with("TELESCOP", V::S("KPNO"));
    let image = Hdu::image(&[16, 16], Data::F32(v)).with("EXPTIME", V::I(30 * (i % 5) as i64));
    write(&root.join(format!("archive/{:02}/img{i:04}.fits", i % 7)), &fits_bytes(&[primary, image]));
}

/// Every item's `meta` in `api/items/`: id → meta.
fn metas(root: &Path) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(root.join("out/api/items")).unwrap() {
        let p = e.unwrap().path();
        let item: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        m.insert(item["id"].as_str().unwrap().to_string(), item["meta"].clone());
    }
    m
}

/// `api/embeddings.parquet` read back with the parquet crate: id → (path, embedding).
fn exported(root: &Path) -> BTreeMap<String, (String, Vec<f32>)> {
    use arrow_array::{Array, Float32Array, ListArray, StringArray};
    let f = std::fs::File::open(root.join("out/api/embeddings.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let mut out = BTreeMap::new();
    for b in reader {
        let b = b.unwrap();
        let names: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["id", "path", "embedding"]);
        let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let paths = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let emb = b.column(2).as_any().downcast_ref::<ListArray>().unwrap();
        for i in 0..b.num_rows() {
            let row = emb.value(i);
            let row = row.as_any().downcast_ref::<Float32Array>().unwrap().values().to_vec();
            out.insert(ids.value(i).to_string(), (paths.value(i).to_string(), row));
        }
    }
    out
}

#[test]
fn build_exports_embeddings_and_the_cache_embeds_only_what_changed() {
    let s = Site::new(30, "tiny-meta.onnx");
    let r = s.build();
    assert_eq!((r["items"].as_u64(), r["embedded"].as_u64()), (Some(30), Some(30)));
    assert_eq!(r["model"]["name"], "tiny-test");
    assert_eq!(r["model"]["dim"], 8);
    let e = exported(&s.root);
    assert_eq!(e.len(), 30);
    let (path, v) = &e["00~img0000.fits"];
    assert_eq!(path, "00/img0000.fits");
    assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);

    // Nothing changed: nothing embedded, nothing rewritten.
    let stamp = || std::fs::metadata(s.root.join("out/api/embeddings.parquet")).unwrap().modified().unwrap();
    let before = stamp();
    assert_eq!(s.build()["embedded"], 0);
    assert_eq!(stamp(), before);

    // One new file, one changed file: two embedded.
    add_image(&s.root, 1000);
    let changed = s.root.join("archive/01/img0001.fits");
    let mut bytes = std::fs::read(&changed).unwrap();
    let last = bytes.len() - 2880 + 10;
    bytes[last] ^= 0x40;
    std::fs::write(&changed, &bytes).unwrap();
    let r = s.build();
    assert_eq!((r["items"].as_u64(), r["embedded"].as_u64()), (Some(31), Some(2)));
    assert_eq!(r["cache_pruned"], 1, "the changed file's old content");

    // A removed file is pruned from the cache.
    std::fs::remove_file(s.root.join("archive/02/img0002.fits")).unwrap();
    let r = s.build();
    assert_eq!(r["embedded"], 0);
    assert_eq!(r["cache_pruned"], 1, "the removed file");
    assert_eq!(exported(&s.root).len(), 30);

    // A changed stretch or model invalidates everything, and the old entries go.
    s.config("tiny-meta.onnx", "");
    std::fs::write(
        s.root.join("site-config.toml"),
        std::fs::read_to_string(s.root.join("site-config.toml")).unwrap() + "[preprocess]\nstretch = \"sqrt\"\n",
    )
    .unwrap();
    assert_eq!(s.build()["embedded"], 30);
    s.config("two-outputs.onnx", "");
    assert_eq!(s.build()["embedded"], 30);
    let dirs = std::fs::read_dir(s.root.join("cache/embeddings")).unwrap().count();
    assert_eq!(dirs, 1, "only the current model's cache is kept");
}

/// A model with the same weights and another digest (its normalisation moved from the
/// config into its metadata) embeds everything again to the same vectors, so no other file
/// changes: the manifest must still name the new model, or `simsite query` refuses the site.
#[test]
fn the_manifest_names_the_model_even_when_no_other_file_changes() {
    let s = Site::new(6, "tiny-nometa.onnx");
    s.config("tiny-nometa.onnx", "input = \"x\"\noutput = \"y\"\nmean = [0.5]\nstd = [0.25]\n");
    s.build();
    s.config("tiny-meta.onnx", "");
    let r = s.build();
    assert_eq!(r["embedded"], 6);
    let manifest: Value = serde_json::from_slice(&std::fs::read(s.root.join("out/api/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["model"]["digest"], r["model"]["digest"], "{manifest}");
}

/// Shards run with another model than the build's: the build embeds everything again, and
/// says so (a warning naming the unused embeddings, and the count on its result line).
#[test]
fn a_build_after_shards_of_another_model_says_it_embeds_again() {
    let s = Site::new(5, "tiny-meta.onnx");
    let (code, _, err) = run(&s.root, &["embed", "--shard", "0/1"]);
    assert_eq!(code, 0, "{err}");
    s.config("two-outputs.onnx", "");
    let (code, _, err) = run(&s.root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the cache holds embeddings made with another model") && err.contains("run them with the same config"), "{err}");
    assert!(err.contains("(0 skipped, 5 embedded now;"), "{err}");
    // The next night has nothing to say.
    let (_, _, err) = run(&s.root, &["build"]);
    assert!(!err.contains("another model") && err.contains("(0 skipped, 0 embedded now;"), "{err}");
    assert!(err.contains("embed: 5 to look at") && err.contains("embed: 0 embedded now, 5 from the cache"), "{err}");
}

#[test]
fn a_damaged_or_half_written_segment_is_reported_and_recomputed() {
    let s = Site::new(12, "tiny-meta.onnx");
    s.build();
    let segs = s.segments();
    assert_eq!(segs.len(), 1);
    // A kill during a write leaves only a temporary file; a disk error, a torn segment.
    let dir = segs[0].parent().unwrap().to_path_buf();
    std::fs::write(dir.join(".seg-0123.parquet.tmp-99-0"), b"PAR1 half").unwrap();
    let bytes = std::fs::read(&segs[0]).unwrap();
    std::fs::write(&segs[0], &bytes[..bytes.len() / 2]).unwrap();
    let (code, _, err) = run(&s.root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("damaged cache segment removed"), "{err}");
    let r: Value = serde_json::from_slice(&std::fs::read(s.root.join("cache/last-build.json")).unwrap()).unwrap();
    assert_eq!(r["embedded"], 12);
    assert_eq!(exported(&s.root).len(), 12);
}

#[cfg(unix)]
#[test]
fn a_killed_build_leaves_a_usable_cache() {
    let s = Site::new(400, "bench-cnn.onnx");
    let reference = {
        let r = s.build();
        assert_eq!(r["embedded"], 400);
        (exported(&s.root), metas(&s.root))
    };
    for delay_ms in [50u64, 150, 400] {
        std::fs::remove_dir_all(s.root.join("cache")).unwrap();
        let mut child = std::process::Command::new(bin())
            .args(["build", "--quiet"])
            .current_dir(&s.root)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever the kill interrupted, the next build completes and agrees, header
        // values included.
        s.build();
        assert_eq!((exported(&s.root), metas(&s.root)), reference, "after a kill at {delay_ms} ms");
    }
}

#[test]
fn shards_then_a_build_equal_one_build_byte_for_byte() {
    let single = Site::new(60, "tiny-meta.onnx");
    single.build();
    // The comparison below covers header values: from the image's HDU and the primary.
    assert_eq!(metas(&single.root)["04~img0025.fits"], serde_json::json!({"OBJECT": "M82", "TELESCOP": "KPNO", "EXPTIME": "0"}));
    let sharded = Site::new(60, "tiny-meta.onnx");
    let mut total = 0;
    for i in 0..3 {
        let (code, _, err) = run(&sharded.root, &["embed", "--shard", &format!("{i}/3")]);
        assert_eq!(code, 0, "{err}");
        let n: usize = err.lines().last().unwrap().split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        total += n;
    }
    assert_eq!(total, 60, "the shards cover the archive exactly");
    let r = sharded.build();
    assert_eq!(r["embedded"], 0, "everything came from the shards' segments");
    let files = |root: &Path| -> BTreeMap<String, Vec<u8>> {
        let mut m = BTreeMap::new();
        for e in walkdir::WalkDir::new(root.join("out")) {
            let e = e.unwrap();
            if e.file_type().is_file() {
                m.insert(e.path().strip_prefix(root).unwrap().display().to_string(), std::fs::read(e.path()).unwrap());
            }
        }
        m
    };
    let (a, b) = (files(&single.root), files(&sharded.root));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        if k.ends_with("api/manifest.json") {
            // The same, but for its build and check times.
            let strip = |bytes: &[u8]| {
                let mut m: Value = serde_json::from_slice(bytes).unwrap();
                m.as_object_mut().unwrap().remove("built_at").expect("built_at");
                m.as_object_mut().unwrap().remove("checked_at").expect("checked_at");
                m
            };
            assert_eq!(strip(v), strip(&b[k]));
            continue;
        }
        assert!(v == &b[k], "{k} differs");
    }
    let (code, _, err) = run(&sharded.root, &["embed", "--shard", "3/3"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`3/3` is not a shard; expected i/N with 0 <= i < N, e.g. 0/4"), "{err}");
}

#[test]
fn rgb_models_and_grey_models_follow_the_channel_setting() {
    let s = Site::new(4, "tiny-rgb.onnx");
    assert_eq!(s.build()["model"]["name"], "tiny-rgb");
    s.config("tiny-meta.onnx", "");
    std::fs::write(
        s.root.join("site-config.toml"),
        std::fs::read_to_string(s.root.join("site-config.toml")).unwrap().replace("[encoder]", "[preprocess]\nchannels = \"rgb\"\n[encoder]"),
    )
    .unwrap();
    let (code, _, err) = run(&s.root, &["build"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: the model `tiny-test` takes 1 channel but [preprocess] channels = \"rgb\"; set channels = \"grey\" or use an RGB model\n"
    );
}

#[test]
fn no_onnx_runtime_says_where_it_looked_and_how_to_install_it() {
    let s = Site::new(1, "tiny-meta.onnx");
    let out = std::process::Command::new(bin())
        .arg("build")
        .current_dir(&s.root)
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("SIMSITE_ORT_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", s.root.join("nohome"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        format!(
            "error: ONNX Runtime 1.31.1 (libonnxruntime.so) could not be loaded: looked in: {}\n  fix: run `make setup` (or `bash scripts/setup.sh`), which unpacks it from the onnxruntime==1.31.1 wheel on PyPI; or set `onnxruntime` under [encoder] or ORT_DYLIB_PATH to the library\n",
            s.root.join("nohome/.cache/simsite/onnxruntime-1.31.1/libonnxruntime.so.1.31.1").display()
        )
    );
}

#[test]
fn cuda_asked_for_where_there_is_none_is_an_error() {
    let s = Site::new(1, "tiny-meta.onnx");
    s.config("tiny-meta.onnx", "device = \"cuda\"\n");
    let (code, _, err) = run(&s.root, &["build"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: device = \"cuda\" under [encoder], but the CUDA execution provider cannot be used: "), "{err}");
    s.config("tiny-meta.onnx", "device = \"auto\"\n");
    let (code, _, err) = run(&s.root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("auto: CPU, since"), "auto says why it chose the CPU: {err}");
}

/// `base` (a fixture without metadata) with `props` as its metadata: ModelProto's
/// `metadata_props` (field 14) appended to the file, which protobuf merges like any
/// repeated field written last.
fn with_metadata(dir: &Path, base: &str, props: &[(&str, &str)]) -> PathBuf {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut bytes = std::fs::read(fixture(base)).unwrap();
    for (k, v) in props {
        let mut entry = vec![0x0a];
        varint(k.len(), &mut entry);
        entry.extend(k.as_bytes());
        entry.push(0x12);
        varint(v.len(), &mut entry);
        entry.extend(v.as_bytes());
        bytes.push(14 << 3 | 2);
        varint(entry.len(), &mut bytes);
        bytes.extend(entry);
    }
    let n = std::fs::read_dir(dir).unwrap().count();
    write(&dir.join(format!("model{n}.onnx")), &bytes)
}

fn load_err(s: EncoderSettings) -> String {
    Encoder::load(&s).err().expect("must fail").to_string()
}

/// Regression: metadata values that did not parse were ignored, so the model got raw
/// [0, 1] pixels (mean 0, std 1) or the graph's size and channels, and the build went on.
#[test]
fn metadata_that_does_not_parse_is_an_error_naming_key_value_and_fix() {
    let d = tempfile::tempdir().unwrap();
    let mean = "finite numbers separated by commas, one for all channels or one per channel";
    let std = "numbers above 0 separated by commas, one for all channels or one per channel";
    let preset = "; named presets are not supported (ImageNet's mean is 0.485,0.456,0.406 and its std 0.229,0.224,0.225)";
    let cases = [
        ("mean", "half", mean.to_string()),
        ("mean", "nan", mean.to_string()),
        ("mean", "0.25;0.25", mean.to_string()),
        ("mean", "imagenet", format!("{mean}{preset}")),
        ("std", "half", std.to_string()),
        ("std", "0", std.to_string()),
        ("std", "inf", std.to_string()),
        ("size", "abc", "a whole number of pixels from 8 to 1024".to_string()),
        ("channels", "one", "1 or 3".to_string()),
        ("channels", "2", "1 or 3".to_string()),
    ];
    for (key, value, expected) in cases {
        let model = with_metadata(d.path(), "tiny-nometa.onnx", &[(&format!("simsite.{key}"), value)]);
        assert_eq!(
            load_err(EncoderSettings { model: model.clone(), ..Default::default() }),
            format!(
                "the model {} has `simsite.{key}` = {value:?} in its metadata; expected {expected}\n  fix: correct `simsite.{key}` in the model's metadata, or set `{key}` under [encoder], which wins over it",
                model.display()
            )
        );
    }
    // The key under [encoder] wins: the metadata's value is not even read.
    let model = with_metadata(d.path(), "tiny-nometa.onnx", &[("simsite.mean", "half"), ("simsite.std", "0"), ("simsite.size", "abc"), ("simsite.channels", "one")]);
    let s = EncoderSettings { model, mean: Some(vec![0.5]), std: Some(vec![0.25]), size: Some(16), channels: Some(1), ..Default::default() };
    let mut e = Encoder::load(&s).unwrap();
    assert!(close(&e.embed(&ramp(), 1).unwrap(), &expected("ramp")));
}

#[test]
fn unknown_metadata_keys_are_a_warning_naming_the_known_ones() {
    let d = tempfile::tempdir().unwrap();
    let model = with_metadata(d.path(), "tiny-nometa.onnx", &[("simsite.meen", "0.5"), ("simsite.std", "0.25"), ("other.key", "x")]);
    let e = Encoder::load(&EncoderSettings { model: model.clone(), ..Default::default() }).unwrap();
    assert_eq!(e.spec.mean, [0.0], "the misspelt key is not used");
    assert_eq!(
        e.warnings,
        [format!(
            "the model {} has metadata key `simsite.meen`, which simsite does not know and ignores; known keys: `simsite.input`, `simsite.output`, `simsite.channels`, `simsite.size`, `simsite.mean`, `simsite.std`, `simsite.name`, `simsite.dim`, `simsite.recipe`, `simsite.training_data_digest`, `simsite.license`",
            model.display()
        )]
    );
    assert!(Encoder::load(&settings("tiny-meta.onnx")).unwrap().warnings.is_empty());
}

/// Regression: `simsite.size = "2000"` on a model of any size had the probe batch
/// (64 × 2000²) kill the build for memory; 1 was taken, 0 gave ONNX Runtime's own error.
#[test]
fn sizes_from_metadata_or_the_graph_must_be_8_to_1024() {
    let d = tempfile::tempdir().unwrap();
    for size in ["0", "1", "7", "1025", "2000"] {
        let model = with_metadata(d.path(), "odd-dynamic.onnx", &[("simsite.size", size)]);
        assert_eq!(
            load_err(EncoderSettings { model: model.clone(), ..Default::default() }),
            format!(
                "the model {} has `simsite.size` = \"{size}\" in its metadata; expected a whole number of pixels from 8 to 1024\n  fix: correct `simsite.size` in the model's metadata, or set `size` under [encoder], which wins over it",
                model.display()
            )
        );
        let e = Encoder::load(&EncoderSettings { model, size: Some(24), ..Default::default() }).unwrap();
        assert_eq!((e.spec.size, e.spec.dim), (24, 8));
    }
    let model = with_metadata(d.path(), "odd-dynamic.onnx", &[("simsite.size", "8")]);
    assert_eq!(Encoder::load(&EncoderSettings { model, ..Default::default() }).unwrap().spec.size, 8);
    // A fixed size in the graph is held to the same limits.
    let e = load_err(EncoderSettings { model: fixture("odd-dynamic.onnx"), size: Some(2000), ..Default::default() });
    assert!(e.ends_with("does not fit: size 2000 (from `size` under [encoder]) is out of range; simsite feeds 8 to 1024 pixels\n  fix: set `size` under [encoder] to 8 to 1024"), "{e}");
}

/// Regression: a model whose output is all zeros (here: no bias, a black image) was
/// published with neighbours of score 0; only NaN rows were caught.
#[test]
fn a_zero_embedding_counts_as_not_a_number_and_its_file_is_skipped() {
    let mut e = Encoder::load(&settings("odd-linear.onnx")).unwrap();
    let mut two = vec![0.0f32; 256];
    two.extend(ramp());
    let out = e.embed(&two, 2).unwrap();
    assert!(out[..8].iter().all(|v| v.is_nan()), "{:?}", &out[..8]);
    assert!((out[8..].iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);

    let s = Site::new(5, "odd-linear.onnx");
    write(&s.root.join("archive/dark.fits"), &fits_bytes(&[Hdu::image(&[16, 16], Data::F32(vec![3.0; 256]))]));
    let r = s.build();
    assert_eq!((r["items"].as_u64(), r["skipped"].as_u64()), (Some(5), Some(1)), "{r}");
    assert_eq!(r["skipped_files"][0]["path"], "dark.fits");
    assert!(r["skipped_files"][0]["reason"].as_str().unwrap().contains("not a number"), "{r}");
}

/// Regression: channels-last models were called non-square, or failed in ONNX Runtime.
#[test]
fn channels_last_models_are_named_as_such() {
    for (model, shape) in [("odd-nhwc.onnx", "[-1, 16, 16, 3]"), ("odd-nhwc-dynamic.onnx", "[-1, -1, -1, 3]")] {
        assert_eq!(
            load_err(settings(model)),
            format!(
                "the model {} does not fit: input `pixels` is {shape}, which looks like channels-last (NHWC) [N,H,W,C]; simsite feeds NCHW\n  fix: export channels-first or add a Transpose at the input",
                fixture(model).display()
            )
        );
    }
}

/// Regression: both ran the probe batch and failed with ONNX Runtime's own words
/// ("Missing Input: scale", "Cannot extract Tensor<f32> from Tensor<f16>"), no path, no fix.
#[test]
fn unfed_inputs_and_float16_outputs_fail_at_load_with_the_fix() {
    assert_eq!(
        load_err(settings("odd-two-inputs.onnx")),
        format!(
            "the model {} does not fit: it has input(s) `scale` besides the image input `pixels`; simsite feeds only that one\n  fix: export the model with the image as its only input (make the others constants or initializers)",
            fixture("odd-two-inputs.onnx").display()
        )
    );
    assert_eq!(
        load_err(settings("odd-f16-output.onnx")),
        format!(
            "the model {} does not fit: output `embedding` is float16; simsite reads float32\n  fix: export the embedding as float32 (add a Cast to float at the output)",
            fixture("odd-f16-output.onnx").display()
        )
    );
}

/// Regression: a model that failed in its probe batch printed ONNX Runtime's own coloured
/// log line (ANSI escapes) before simsite's error, even with --quiet; the error had no path.
#[test]
fn a_model_failing_its_probe_batch_gives_one_error_with_the_path_and_no_runtime_log() {
    let s = Site::new(1, "odd-flat-dynamic.onnx");
    s.config("odd-flat-dynamic.onnx", "size = 32\n");
    let (code, _, err) = run(&s.root, &["build", "--quiet"]);
    assert_eq!(code, 1);
    let head = format!("error: the model {} failed on a blank test batch at start-up: ", fixture("odd-flat-dynamic.onnx").display());
    assert!(err.starts_with(&head), "{err:?}");
    assert!(err.contains("\n  fix: check that the model runs on a float32 [64, 1, 32, 32] input; `channels` and `size` under [encoder] or in its `simsite.*` metadata give that shape\n"), "{err:?}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert_eq!(err.matches("error").count(), 1, "{err:?}");
}

/// Regression: pooled outputs that were not flattened were refused.
#[test]
fn outputs_with_trailing_ones_are_squeezed_and_others_refused() {
    let mut four = Encoder::load(&settings("odd-pooled-rank4.onnx")).unwrap();
    let mut three = Encoder::load(&settings("odd-pooled-rank3.onnx")).unwrap();
    assert_eq!((four.spec.dim, three.spec.dim), (8, 8));
    let a = four.embed(&ramp(), 1).unwrap();
    assert_eq!(a, three.embed(&ramp(), 1).unwrap());
    assert!((a.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    assert_eq!(
        load_err(settings("odd-spatial-output.onnx")),
        format!(
            "the model {} does not fit: output `embedding` is [-1, 8, 16, 16]; simsite needs [batch, dimension] (any dimensions after those must be 1)\n  fix: flatten or squeeze the output to [batch, dimension] in the export (e.g. a Flatten after the pooling)",
            fixture("odd-spatial-output.onnx").display()
        )
    );
}

/// Regression: a 3-channel model was fed grey replicated to three channels unless the
/// config said `channels = "rgb"`; the cache key must follow what is used.
#[test]
fn a_three_channel_model_gets_rgb_unless_the_config_says_grey() {
    let s = Site::new(4, "tiny-rgb.onnx");
    assert_eq!(s.build()["embedded"], 4);
    let with = |pre: &str| {
        std::fs::write(
            s.root.join("site-config.toml"),
            std::fs::read_to_string(s.root.join("site-config.toml")).unwrap().replace("[encoder]", &format!("{pre}[encoder]")),
        )
        .unwrap();
    };
    with("[preprocess]\nchannels = \"rgb\"\n");
    assert_eq!(s.build()["embedded"], 0, "rgb was used already: same cache key");
    s.config("tiny-rgb.onnx", "");
    with("[preprocess]\nchannels = \"grey\"\n");
    assert_eq!(s.build()["embedded"], 4, "grey is another cache key");
}

/// Regression: mismatch errors had no `fix:` line and did not say whether a value came
/// from the config or the model's metadata.
#[test]
fn mismatch_errors_say_where_the_value_came_from_and_the_fix() {
    let d = tempfile::tempdir().unwrap();
    let mut s = settings("tiny-rgb.onnx");
    s.mean = Some(vec![0.1, 0.2]);
    assert_eq!(
        load_err(s),
        format!(
            "the model {} does not fit: mean (from `mean` under [encoder]) has 2 values but the input has 3 channel(s)\n  fix: give `mean` under [encoder] one value, or one per channel (3)",
            fixture("tiny-rgb.onnx").display()
        )
    );
    let model = with_metadata(d.path(), "tiny-nometa.onnx", &[("simsite.mean", "0.1,0.2")]);
    assert_eq!(
        load_err(EncoderSettings { model: model.clone(), ..Default::default() }),
        format!(
            "the model {} does not fit: mean (from the model's metadata `simsite.mean`) has 2 values but the input has 1 channel(s)\n  fix: give `simsite.mean` in the model's metadata one value, or one per channel (1), or set `mean` under [encoder], which wins over it",
            model.display()
        )
    );
    let model = with_metadata(d.path(), "tiny-nometa.onnx", &[("simsite.size", "32")]);
    assert_eq!(
        load_err(EncoderSettings { model: model.clone(), ..Default::default() }),
        format!(
            "the model {} does not fit: input `x` takes 16x16 images, but the model's metadata `simsite.size` says 32\n  fix: correct `simsite.size` in the model's metadata to 16, or set `size = 16` under [encoder], which wins over it",
            model.display()
        )
    );
    let mut s = settings("tiny-meta.onnx");
    s.size = Some(32);
    assert!(load_err(s).ends_with("does not fit: input `pixels` takes 16x16 images, but `size` under [encoder] says 32\n  fix: remove `size` under [encoder] or set it to 16"));
    let model = with_metadata(d.path(), "tiny-nometa.onnx", &[("simsite.output", "features")]);
    assert!(load_err(EncoderSettings { model, ..Default::default() }).ends_with(
        "does not fit: it has no output `features` (named by the model's metadata `simsite.output`); its outputs are `y`\n  fix: correct `simsite.output` in the model's metadata, or set `output` under [encoder], which wins over it"
    ));
}
