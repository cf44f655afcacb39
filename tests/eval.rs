//! `simsite eval` end to end: a tiny labelled archive (two clearly different classes of
//! FITS images, PNGs whose label is hostile markup, exact rotated/flipped copies listed as
//! twins, a missing and a broken file), a real fixture model through ONNX Runtime, and the
//! JSON, the page and the messages it produces.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const SCRIPT: &str = "<script>alert(1)</script>";
const N: usize = 16;

/// A point-symmetric 16x16 image: a Gaussian of widths `sx`, `sy` centred between the
/// middle pixels, so rotating it by 180° or flipping it gives exactly the same pixels.
fn gaussian(sx: f32, sy: f32) -> Vec<f32> {
    let mut v = Vec::with_capacity(N * N);
    for y in 0..N {
        for x in 0..N {
            let (dx, dy) = (x as f32 - 7.5, y as f32 - 7.5);
            v.push(10.0 + 1000.0 * (-(dx * dx) / (2.0 * sx * sx) - (dy * dy) / (2.0 * sy * sy)).exp());
        }
    }
    v
}

fn rot180(v: &[f32]) -> Vec<f32> {
    (0..N * N).map(|i| v[(N - 1 - i / N) * N + (N - 1 - i % N)]).collect()
}

fn flip_x(v: &[f32]) -> Vec<f32> {
    (0..N * N).map(|i| v[(i / N) * N + (N - 1 - i % N)]).collect()
}

fn fits(root: &Path, rel: &str, v: Vec<f32>, extra: Option<&'static str>) {
    let mut hdu = Hdu::image(&[N, N], Data::F32(v));
    if let Some(key) = extra {
        hdu = hdu.with(key, V::B(true));
    }
    write(&root.join("archive").join(rel), &fits_bytes(&[hdu]));
}

struct Site {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

/// 6 round blobs, 6 horizontal bars, 2 PNGs labelled with markup, a rotated copy of a
/// blob and a flipped copy of a bar (both twins), a broken file and a missing one listed
/// in the labels, and one unlabelled image.
fn site(model: Option<&str>) -> Site {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let mut labels = String::from("path,label,twin_of\n");
    for i in 0..6 {
        let s = 1.5 + 0.5 * i as f32;
        fits(&root, &format!("round/r{i}.fits"), gaussian(s, s), None);
        labels += &format!("round/r{i}.fits,round,\n");
        fits(&root, &format!("bar/b{i}.fits"), gaussian(12.0, 0.8 + 0.3 * i as f32), None);
        labels += &format!("bar/b{i}.fits,bar,\n");
    }
    for i in 0..2u32 {
        png_grey8(&root.join(format!("archive/odd/p{i}.png")), 16, 16, |x, y| ((x * (3 + i) + y * 7) % 256 * 15 % 256) as u8);
        labels += &format!("odd/p{i}.png,{SCRIPT},\n");
    }
    let r0 = gaussian(1.5, 1.5);
    assert_eq!(rot180(&r0), r0, "the blob is point-symmetric: its rotated copy has identical pixels");
    fits(&root, "twins/r0-rot180.fits", rot180(&r0), Some("ROTATED"));
    labels += "twins/r0-rot180.fits,round,round/r0.fits\n";
    let b2 = gaussian(12.0, 1.4);
    assert_eq!(flip_x(&b2), b2);
    fits(&root, "twins/b2-flip.fits", flip_x(&b2), Some("FLIPPED"));
    labels += "twins/b2-flip.fits,bar,bar/b2.fits\n";
    write(&root.join("archive/bad/broken.fits"), b"SIMPLE  = this is not a FITS file");
    labels += "bad/broken.fits,bar,\ngone/missing.fits,round,\n";
    fits(&root, "unlabelled/u0.fits", gaussian(2.0, 5.0), None);
    std::fs::write(root.join("labels.csv"), labels).unwrap();
    let mut config = String::from("[archive]\nroot = \"archive\"\n[output]\ndir = \"out\"\ncache = \"cache\"\n");
    if let Some(m) = model {
        config += &format!("[encoder]\nmodel = \"{}\"\n", fixture(m).display());
    }
    std::fs::write(root.join("site-config.toml"), config).unwrap();
    Site { _tmp: tmp, root }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn in_unit_range(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x))
}

#[test]
fn eval_reports_both_methods_and_writes_json_and_an_escaped_page() {
    let s = site(Some("tiny-meta.onnx"));
    // A build first: eval then takes every embedding from the cache.
    let (code, _, err) = run(&s.root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&s.root, &["eval", "--labels", "labels.csv", "--json", "report/eval.json"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("evaluated 16 of 18 labelled image(s) (1 not in the archive, 1 skipped), 3 label(s), 2 twin pair(s); 0 embedded now"),
        "{err}"
    );
    assert!(err.contains("not in the archive: `gone/missing.fits`"), "{err}");
    assert!(err.contains("skipped bad/broken.fits: "), "{err}");
    assert!(err.contains("twin recall@1"), "{err}");
    assert!(err.contains("twin recall@10 by label:"), "{err}");

    let j = read_json(&s.root.join("report/eval.json"));
    assert_eq!(
        j["counts"],
        serde_json::json!({"labelled": 18, "evaluated": 16, "missing": 1, "skipped": 1, "labels": 3, "twins": 2, "twins_evaluated": 2})
    );
    assert_eq!(j["labels_file"], "labels.csv");
    assert_eq!((j["k"].as_u64(), j["knn_k"].as_u64()), (Some(10), Some(15)), "kNN's 20 is capped at 16 - 1");
    assert_eq!(j["model"]["name"], "tiny-test");
    assert_eq!(j["model"]["dim"], 8);
    let digest = blake3::hash(&std::fs::read(fixture("tiny-meta.onnx")).unwrap()).to_hex().to_string();
    assert_eq!(j["model"]["digest"], digest.as_str());
    assert_eq!(j["missing_examples"], serde_json::json!(["gone/missing.fits"]));
    assert_eq!(j["skipped_examples"][0]["path"], "bad/broken.fits");
    for method in ["encoder", "pca_baseline"] {
        let m = &j[method];
        // Identical pixels give identical embeddings: the original is the copy's top-1.
        assert_eq!(m["twin_recall_at_1"], 1.0, "{method}: {m}");
        assert_eq!(m["twin_recall_at_k"], 1.0, "{method}");
        assert!(in_unit_range(&m["precision_at_k"]) && in_unit_range(&m["knn_accuracy"]), "{method}: {m}");
        let per: Vec<(&str, u64)> = m["per_label"].as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v["items"].as_u64().unwrap())).collect();
        assert_eq!(per, [(SCRIPT, 2), ("bar", 7), ("round", 7)], "{method}");
        assert!(m["per_label"].as_object().unwrap().values().all(|v| in_unit_range(&v["precision_at_k"])));
        // Twins by the copy's label: one round, one bar, none with the hostile label.
        let twins = |l: &str| (m["per_label"][l]["twins"].as_u64(), m["per_label"][l]["twin_recall_at_k"].clone());
        assert_eq!(twins("round"), (Some(1), Value::from(1.0)), "{method}");
        assert_eq!(twins("bar"), (Some(1), Value::from(1.0)), "{method}");
        assert_eq!(twins(SCRIPT), (Some(0), Value::Null), "{method}");
    }
    assert_eq!(j["encoder"]["dim"], 8);
    let pca_dim = j["pca_baseline"]["dim"].as_u64().unwrap();
    assert!((1..=16).contains(&pca_dim), "at most one component per item: {pca_dim}");

    // The site copy is the same report; the page escapes the hostile label.
    let api = s.root.join("out/api/eval.json");
    assert_eq!(std::fs::read(&api).unwrap(), std::fs::read(s.root.join("report/eval.json")).unwrap());
    let page = std::fs::read_to_string(s.root.join("out/eval/index.html")).unwrap();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains("tiny-test") && page.contains("labels.csv") && page.contains("twin recall@1"));
    assert!(page.contains("<th>twin recall@10, encoder</th>"), "{page}");

    // Same inputs, same bytes: the second run rewrites nothing.
    let stamp = || std::fs::metadata(&api).unwrap().modified().unwrap();
    let before = stamp();
    let (code, _, err) = run(&s.root, &["eval", "--labels", "labels.csv", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stamp(), before);

    // --no-page leaves the site alone.
    let (code, _, err) = run(&s.root, &["eval", "--labels", "labels.csv", "--no-page", "--out", "other"]);
    assert_eq!(code, 0, "{err}");
    assert!(!s.root.join("other").exists());

    // The evaluation's release kept the built site, and a rebuild keeps the evaluation.
    assert!(s.root.join("out/index.html").is_file() && s.root.join("out/api/manifest.json").is_file());
    let (code, _, err) = run(&s.root, &["build", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&api).unwrap(), std::fs::read(s.root.join("report/eval.json")).unwrap());
    assert!(s.root.join("out/eval/index.html").is_file() && s.root.join("out/index.html").is_file());
    // A build with another model leaves the old model's evaluation out, and says so.
    let config = std::fs::read_to_string(s.root.join("site-config.toml")).unwrap().replace("tiny-meta.onnx", "two-outputs.onnx");
    std::fs::write(s.root.join("site-config.toml"), config).unwrap();
    let (code, _, err) = run(&s.root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the site's eval page was made with another model"), "{err}");
    assert!(!s.root.join("out/eval").exists() && !api.exists(), "the old model's evaluation is still served");
}

#[test]
fn eval_without_a_build_embeds_what_it_needs() {
    let s = site(Some("tiny-meta.onnx"));
    let (code, _, err) = run(&s.root, &["eval", "--labels", "labels.csv", "--k", "3", "--no-page", "--json", "e.json"]);
    assert_eq!(code, 0, "{err}");
    // 16 labelled images decode (the unlabelled one is not even read).
    assert!(err.contains("; 16 embedded now"), "{err}");
    let j = read_json(&s.root.join("e.json"));
    assert_eq!(j["k"], 3);
    assert_eq!(j["encoder"]["twin_recall_at_1"], 1.0);
}

#[test]
fn bad_labels_files_and_a_missing_model_are_errors_with_the_fix() {
    let s = site(Some("tiny-meta.onnx"));
    let eval = |labels: &str| {
        std::fs::write(s.root.join("bad.csv"), labels).unwrap();
        let (code, _, err) = run(&s.root, &["eval", "--labels", "bad.csv"]);
        assert_eq!(code, 1, "{err}");
        err
    };
    assert_eq!(
        eval("path,class\nround/r0.fits,round\n"),
        "error: labels file bad.csv, line 1: the header has no column `label` (its columns are `path`, `class`)\n  fix: the first line must name the columns: path,label[,twin_of]\n"
    );
    assert_eq!(
        eval("path,label\nround/r0.fits,round\nbar/b0.fits,bar\n./round/r0.fits,bar\n"),
        "error: labels file bad.csv, line 4, column 1 (`path`): `round/r0.fits` is already listed on line 2\n  fix: list every image once\n"
    );
    assert_eq!(
        eval("path,label,twin_of\nround/r0.fits,round,\ntwins/r0-rot180.fits,round,round/r9.fits\n"),
        "error: labels file bad.csv, line 3, column 3 (`twin_of`): `round/r9.fits` is not a path listed in this file\n  fix: twin_of must be empty or name the `path` of another line (relative to the archive root)\n"
    );
    let err = eval("path,label\n/abs/round/r0.fits,round\n");
    assert!(err.contains("\nerror: none of the 1 path(s) in bad.csv is an image file in the archive "), "{err}");
    assert!(err.contains("fix: paths in the labels file must be relative to the archive root"), "{err}");
    let (code, _, err) = run(&s.root, &["eval", "--labels", "nothere.csv"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: cannot read the labels file nothere.csv: "), "{err}");

    let s = site(None);
    let (code, _, err) = run(&s.root, &["eval", "--labels", "labels.csv"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: `simsite eval` needs a model: it measures the encoder's neighbours\n  fix: set `model` under [encoder] in the config (or pass a --config that does)\n"
    );
}
