//! The training recipe's Python preprocessing (training/simsite_prep.py) and the builder's
//! give the same encoder input for the same file: `simsite inspect --tensor` against
//! `python3 training/simsite_prep.py --npy`, on real files of every kind in the sample
//! archive and with every stretch. Also the training data's pairing of each synthetic twin
//! with its original (training/data.py), which v3's re-observed positives rely on.
//!
//! Python with numpy, Pillow and astropy comes from `scripts/setup.sh` (a venv under
//! ~/.cache/simsite); `SIMSITE_PYTHON` overrides it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SIMSITE_PYTHON") {
        return p.into();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let venv = home.join(".cache/simsite/py-venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Reads a little-endian float32 `.npy` (version 1 or 2 header), returning shape and data.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY", "{}", path.display());
    let (hlen, start) = if b[6] == 1 { (u16::from_le_bytes([b[8], b[9]]) as usize, 10) } else { (u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize, 12) };
    let header = std::str::from_utf8(&b[start..start + hlen]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_text.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let data: Vec<f32> = b[start + hlen..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

struct Diff {
    max: f32,
    mean: f32,
}

/// The builder's default encoder input size (no model configured).
const SIZE: u32 = 64;

fn compare(file: &str, stretch: &str) -> Diff {
    let size = SIZE;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("site-config.toml");
    std::fs::write(&cfg, format!("[preprocess]\nstretch = \"{stretch}\"\nstretch-8bit = \"{stretch}\"\n")).unwrap();
    let input = root.join(file);
    let rust_npy = dir.path().join("rust.npy");
    let (code, _, err) = common::run(dir.path(), &["inspect", input.to_str().unwrap(), "--config", cfg.to_str().unwrap(), "--tensor", rust_npy.to_str().unwrap()]);
    assert_eq!(code, 0, "simsite inspect {file}: {err}");
    let py_npy = dir.path().join("python.npy");
    let py = Command::new(python())
        .arg(root.join("training/simsite_prep.py"))
        .arg(&input)
        .args(["--npy", py_npy.to_str().unwrap(), "--stretch", stretch, "--stretch-8bit", stretch, "--size", &size.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}\n  fix: run scripts/setup.sh (it installs numpy, Pillow and astropy in ~/.cache/simsite/py-venv)", python().display()));
    assert!(
        py.status.success(),
        "training/simsite_prep.py {file}: {}\n  fix: run scripts/setup.sh (it installs numpy, Pillow and astropy in ~/.cache/simsite/py-venv)",
        String::from_utf8_lossy(&py.stderr)
    );
    let (rs, r) = read_npy(&rust_npy);
    let (ps, p) = read_npy(&py_npy);
    assert_eq!(rs, ps, "{file} ({stretch}): shapes differ");
    assert_eq!(rs, vec![1, size as usize, size as usize]);
    let d: Vec<f32> = r.iter().zip(&p).map(|(a, b)| (a - b).abs()).collect();
    let max = d.iter().copied().fold(0.0, f32::max);
    let mean = d.iter().sum::<f32>() / d.len() as f32;
    // A blank tensor on both sides would prove nothing.
    assert!(r.iter().any(|&v| v > 0.05), "{file}: the Rust tensor is blank");
    Diff { max, mean }
}

/// Lossless formats: the same pixels in, so the same tensor out (float rounding aside).
#[test]
fn fits_and_png_give_the_same_tensor_in_python_and_rust() {
    let files = [
        "sample-archive/m51/m51-iraf-devpix.fits",
        "sample-archive/hst-drizzle/acs-hrc-47tuc-flt-cutout.fits",
        "sample-archive/hst-drizzle/acs-hrc-47tuc-drizzled-corner-nan.fits",
        "sample-archive/hst-drizzle/acs-hrc-47tuc-int16-bscale-blank.fits",
        "sample-archive/hst-drizzle/acs-hrc-47tuc-flt-bin8.fits.gz",
        "sample-archive/eso-midas/timmi2-hd61421-cube.fits",
        "sample-archive/eso-midas/dss-ukst-field-1.fits",
        "sample-archive/hst-deep-field/xdf-cutout-025-grey16.png",
        "sample-archive/hst-deep-field/xdf-cutout-010.png",
    ];
    let mut worst = Vec::new();
    for f in files {
        for stretch in ["asinh", "log", "sqrt", "linear", "zscale"] {
            let d = compare(f, stretch);
            worst.push(format!("{f} {stretch}: max {:.2e}, mean {:.2e}", d.max, d.mean));
            assert!(d.max < 1e-6 && d.mean < 1e-7, "{}", worst.last().unwrap());
        }
    }
    eprintln!("{}", worst.join("\n"));
}

/// A sparse counts image (zeros but a few sources): both fall back to the minimum and
/// maximum when the percentile limits meet (`compare` checks the tensor is not blank).
#[test]
fn a_sparse_image_gives_the_same_tensor_in_python_and_rust() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = vec![0f32; 120 * 100];
    for (i, x) in [(0, 50.0), (1, 40.0), (121, 45.0), (5000, 20.0), (7000, 1.0), (9000, 1.0)] {
        v[i] = x;
    }
    let path = dir.path().join("sparse.fits");
    common::write(&path, &common::fits_bytes(&[common::Hdu::image(&[120, 100], common::Data::F32(v))]));
    for stretch in ["asinh", "linear", "zscale"] {
        let d = compare(path.to_str().unwrap(), stretch);
        assert!(d.max < 1e-6 && d.mean < 1e-7, "sparse {stretch}: max {:.2e}, mean {:.2e}", d.max, d.mean);
    }
    // Above the sample cap (every 4th pixel of 1024 x 1024, so columns 0, 4, 8…), with its
    // sources in the columns between: both take the extremes of every pixel.
    let mut v = vec![0f32; 1024 * 1024];
    for (r, c) in [(100, 100), (300, 600), (512, 512), (800, 248), (900, 900)] {
        for (dr, dc) in (0..12).flat_map(|dr| (1..4).map(move |dc| (dr, dc))) {
            v[(r + dr) * 1024 + c + dc] = if dr % 2 == 0 { 50.0 } else { 30.0 };
        }
    }
    let path = dir.path().join("sparse-large.fits");
    common::write(&path, &common::fits_bytes(&[common::Hdu::image(&[1024, 1024], common::Data::F32(v))]));
    let d = compare(path.to_str().unwrap(), "asinh");
    assert!(d.max < 1e-6 && d.mean < 1e-7, "large sparse: max {:.2e}, mean {:.2e}", d.max, d.mean);
}

/// Double precision on a pedestal far above its spread, and beyond float32's range: both
/// sides shift and scale it the same way before it becomes float32 (`Wide`, `_float32`).
#[test]
fn double_precision_beyond_float32_gives_the_same_tensor_in_python_and_rust() {
    let dir = tempfile::tempdir().unwrap();
    for (name, pedestal, gain) in [("pedestal.fits", 1e9, 1e-3), ("huge.fits", -2e39, 1e37)] {
        let v: Vec<f64> = (0..120 * 100).map(|i| pedestal + gain * (((i * 7919) % 1000) as f64 + if i % 120 > 60 { 3000.0 } else { 0.0 })).collect();
        let path = dir.path().join(name);
        common::write(&path, &common::fits_bytes(&[common::Hdu::image(&[120, 100], common::Data::F64(v))]));
        for stretch in ["asinh", "linear", "zscale"] {
            let d = compare(path.to_str().unwrap(), stretch);
            assert!(d.max < 1e-5 && d.mean < 1e-6, "{name} {stretch}: max {:.2e}, mean {:.2e}", d.max, d.mean);
        }
    }
}

/// JPEG: Pillow (libjpeg-turbo) and the `image` crate may round the inverse DCT and the
/// chroma upsampling differently by a grey level; everything after decoding is the same.
#[test]
fn jpeg_gives_the_same_tensor_up_to_decoder_rounding() {
    for f in ["sample-archive/hst-deep-field/xdf-cutout-001.jpg", "sample-archive/galaxy-zoo/gz-decals-j004544_11-005037_5.jpg"] {
        for stretch in ["linear", "asinh"] {
            let d = compare(f, stretch);
            eprintln!("{f} {stretch}: max {:.2e}, mean {:.2e}", d.max, d.mean);
            assert!(d.mean < 2e-3, "{f} {stretch}: mean difference {}", d.mean);
            assert!(d.max < 0.05, "{f} {stretch}: max difference {}", d.max);
        }
    }
}

/// The training recipe's re-observed positives (training/data.py): every synthetic twin and
/// its original name each other as partners, nothing else has one (artefacts, real frames
/// and their crops), and a file's partner is read from synth's own labels CSV.
#[test]
fn training_data_pairs_each_twin_with_its_original_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("synth");
    let labels = tmp.path().join("synth.labels.csv");
    let opts = simsite::synth::SynthOptions { n: 40, seed: 5, twins: 1.0, ..Default::default() };
    let summary = simsite::synth::generate(&dir, &labels, &opts).unwrap();
    assert!(summary.twins >= 30, "{summary:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let real = root.join("sample-archive/eso-midas");
    let script = r#"
import sys, os, json
sys.path.insert(0, "training")
import data
synth, real = sys.argv[1], sys.argv[2]
px, ready, source, digest, files, partner = data.build(synth, [real], [], 2, 7, 1)
rows = [os.path.relpath(f, synth) for f in files]  # synthetic files are the first rows, none skipped
print(json.dumps({"rows": len(px), "synthetic": int((source == "synth").sum()),
                  "pairs": [[rows[i], rows[int(p)]] for i, p in enumerate(partner) if p >= 0],
                  "real_with_partner": int(((source != "synth") & (partner >= 0)).sum())}))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&dir)
        .arg(&real)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}\n  fix: run scripts/setup.sh", python().display()));
    assert!(out.status.success(), "training/data.py: {}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(out.stdout.rsplit(|&b| b == b'\n').find(|l| !l.is_empty()).unwrap()).unwrap();
    assert_eq!(j["synthetic"], summary.images + summary.twins, "{j}");
    assert!(j["rows"].as_u64().unwrap() > j["synthetic"].as_u64().unwrap(), "real frames and crops are in too: {j}");
    assert_eq!(j["real_with_partner"], 0, "{j}");

    let mut want = std::collections::BTreeSet::new();
    for line in std::fs::read_to_string(&labels).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if !f[2].is_empty() {
            want.insert((f[0].to_string(), f[2].to_string()));
            want.insert((f[2].to_string(), f[0].to_string()));
        }
    }
    let got: std::collections::BTreeSet<(String, String)> = j["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(got.len(), 2 * summary.twins, "{j}");
    assert_eq!(got, want);
}
