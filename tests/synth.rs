//! Behaviour of the synthetic archive generator: determinism, the labels file, readable
//! formats, FITS row order, artefact share and shard layout.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use simsite::synth::{generate, render, Encoding, Format, Label, Summary, SynthOptions};

/// CFITSIO keeps global state; tests run in parallel threads, so FITS reads take turns.
static FITS_LOCK: Mutex<()> = Mutex::new(());

struct Archive {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    labels: PathBuf,
    summary: Summary,
}

fn make(opts: &SynthOptions) -> Archive {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let labels = tmp.path().join("archive.labels.csv");
    let summary = generate(&dir, &labels, opts).unwrap();
    Archive {
        _tmp: tmp,
        dir,
        labels,
        summary,
    }
}

fn opts(n: usize, seed: u64) -> SynthOptions {
    SynthOptions {
        n,
        seed,
        ..Default::default()
    }
}

/// Every file under `dir`, keyed by its `/`-separated relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                let rel: Vec<_> = rel
                    .components()
                    .map(|c| c.as_os_str().to_str().unwrap().to_string())
                    .collect();
                out.insert(rel.join("/"), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    path: String,
    label: String,
    twin_of: String,
}

fn read_labels(path: &Path) -> (Vec<String>, Vec<Row>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            Row {
                path: r[0].to_string(),
                label: r[1].to_string(),
                twin_of: r[2].to_string(),
            }
        })
        .collect();
    (header, rows)
}

/// FITS pixels as stored (row 0 = first row in the file) and the BSCALE in force.
fn read_fits(path: &Path) -> (usize, usize, Vec<f32>, f64) {
    let _guard = FITS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = fitsio::FitsFile::open(path).unwrap();
    let hdu = f.primary_hdu().unwrap();
    let shape = match &hdu.info {
        fitsio::hdu::HduInfo::ImageInfo { shape, .. } => shape.clone(),
        other => panic!("{}: not an image HDU: {other:?}", path.display()),
    };
    assert_eq!(shape.len(), 2, "{}", path.display());
    let data: Vec<f32> = hdu.read_image(&mut f).unwrap();
    let bscale: f64 = hdu.read_key(&mut f, "BSCALE").unwrap_or(0.0);
    (shape[0], shape[1], data, bscale)
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().map(|&x| x as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&x| x as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt().max(1e-30)
}

/// Spearman's rank correlation: PNGs are a monotone (asinh or linear, clipped) stretch of
/// the data, which rank correlation ignores.
fn rank_correlation(a: &[f32], b: &[f32]) -> f64 {
    fn ranks(v: &[f32]) -> Vec<f32> {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            while end + 1 < order.len() && v[order[end + 1]] == v[order[start]] {
                end += 1;
            }
            for &k in &order[start..=end] {
                r[k] = (start + end) as f32 / 2.0;
            }
            start = end + 1;
        }
        r
    }
    correlation(&ranks(a), &ranks(b))
}

fn flip_rows(data: &[f32], size: usize) -> Vec<f32> {
    data.chunks_exact(size).rev().flatten().copied().collect()
}

#[test]
fn same_seed_gives_identical_bytes_on_any_thread_count_and_new_seed_differs() {
    let o = SynthOptions {
        twins: 0.25,
        artefact_rate: 0.1,
        ..opts(80, 7)
    };
    let on = |threads: usize, o: &SynthOptions| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let a = pool.install(|| make(o));
        let labels = std::fs::read(&a.labels).unwrap();
        (files(&a.dir), labels, a.summary)
    };
    let (files1, labels1, summary1) = on(1, &o);
    let (files3, labels3, summary3) = on(3, &o);
    assert_eq!(files1.len(), 80 + 20);
    assert_eq!(
        files1.keys().collect::<Vec<_>>(),
        files3.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &files1 {
        assert!(
            files3[path] == *bytes,
            "{path} differs between 1 and 3 threads"
        );
    }
    assert_eq!(labels1, labels3);
    assert_eq!(summary1, summary3);

    let (other, other_labels, _) = on(
        2,
        &SynthOptions {
            seed: 8,
            ..o.clone()
        },
    );
    assert_ne!(labels1, other_labels);
    let same_bytes = files1
        .iter()
        .filter(|(p, b)| other.get(*p) == Some(*b))
        .count();
    assert_eq!(same_bytes, 0, "a different seed must give different images");
}

#[test]
fn labels_file_sits_beside_the_archive_and_lists_every_file() {
    let o = SynthOptions {
        twins: 0.2,
        artefact_rate: 0.1,
        ..opts(120, 3)
    };
    let a = make(&o);
    assert_eq!(
        a.labels.parent(),
        a.dir.parent(),
        "labels go beside the archive"
    );
    let (header, rows) = read_labels(&a.labels);
    assert_eq!(header, ["path", "label", "twin_of"]);

    let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(paths, sorted, "rows sorted by path, no repeats");

    let on_disk = files(&a.dir);
    assert_eq!(
        on_disk.keys().map(String::as_str).collect::<Vec<_>>(),
        paths,
        "exactly the files on disk"
    );

    let by_path: BTreeMap<&str, &Row> = rows.iter().map(|r| (r.path.as_str(), r)).collect();
    let mut twins = 0;
    for row in &rows {
        let label: Label = row.label.parse().unwrap();
        assert!(!row.path.contains('\\') && !row.path.starts_with('/'));
        if row.twin_of.is_empty() {
            let (shard, name) = row.path.split_once('/').unwrap();
            assert_eq!(shard.len(), 3);
            assert!(name.starts_with("img-"), "{}", row.path);
        } else {
            twins += 1;
            assert!(row.path.starts_with("twins/"), "{}", row.path);
            let original = by_path
                .get(row.twin_of.as_str())
                .unwrap_or_else(|| panic!("{} missing", row.twin_of));
            assert!(
                original.twin_of.is_empty(),
                "twins are made of originals only"
            );
            assert_eq!(
                original.label, row.label,
                "a twin keeps its original's label"
            );
            assert!(!label.is_artefact(), "artefacts get no twins");
            // Same index in both names, so the pairing is easy to see by eye too.
            let number = |p: &str| {
                let name = p.rsplit('/').next().unwrap();
                name.split('.')
                    .next()
                    .unwrap()
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .to_string()
            };
            assert_eq!(number(&row.path), number(&row.twin_of));
        }
    }
    assert_eq!(twins, 24);
    assert_eq!(a.summary.images, 120);
    assert_eq!(a.summary.twins, 24);
    assert_eq!(a.summary.by_label.values().sum::<usize>(), 120);
    assert_eq!(a.summary.by_format.values().sum::<usize>(), 144);
    assert_eq!(a.summary.by_encoding.values().sum::<usize>(), 144);
    for (label, &count) in &a.summary.by_label {
        let listed = rows
            .iter()
            .filter(|r| r.twin_of.is_empty() && r.label == label.as_str())
            .count();
        assert_eq!(listed, count, "{label}");
    }
}

#[test]
fn every_format_and_encoding_reads_back() {
    let o = SynthOptions {
        twins: 0.1,
        ..opts(160, 11)
    };
    let a = make(&o);
    let encodings: BTreeSet<Encoding> = a.summary.by_encoding.keys().copied().collect();
    assert_eq!(
        encodings.len(),
        7,
        "all seven encodings appear: {encodings:?}"
    );

    let mut colour_types = BTreeSet::new();
    let mut fits_i16 = 0;
    for (path, _) in files(&a.dir) {
        let full = a.dir.join(&path);
        if path.ends_with(".fits") {
            let (rows, cols, data, bscale) = read_fits(&full);
            assert_eq!((rows, cols), (64, 64), "{path}");
            assert_eq!(data.len(), 64 * 64);
            assert!(data.iter().all(|v| v.is_finite()), "{path}");
            if bscale != 0.0 {
                fits_i16 += 1;
            }
        } else {
            let img = image::open(&full).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!((img.width(), img.height()), (64, 64), "{path}");
            let ext = if path.ends_with(".png") { "png" } else { "jpg" };
            colour_types.insert(format!("{ext} {:?}", img.color()));
        }
    }
    assert_eq!(fits_i16, a.summary.by_encoding[&Encoding::FitsI16]);
    let want: BTreeSet<String> = ["png L8", "png L16", "png Rgb8", "jpg L8", "jpg Rgb8"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(colour_types, want);
}

#[test]
fn fits_stores_the_bottom_row_first() {
    let fits_only = SynthOptions {
        formats: vec![Format::Fits],
        ..opts(30, 5)
    };
    let png_only = SynthOptions {
        formats: vec![Format::Png],
        ..fits_only.clone()
    };
    let fits = make(&fits_only);
    let png = make(&png_only);
    let size = 64;

    for i in 0..30 {
        // 1. The FITS file holds the rendered image (row 0 = top) with its rows reversed.
        let rendered = render(&fits_only, i).unwrap();
        let seen = &rendered.planes[0];
        let (_, _, stored, bscale) = read_fits(&fits.dir.join(&rendered.path));
        let tolerance = if bscale == 0.0 {
            0.0
        } else {
            bscale as f32 * 0.51
        };
        let as_seen = flip_rows(&stored, size);
        for (k, (&a, &b)) in as_seen.iter().zip(seen).enumerate() {
            let allowed = tolerance + 1e-6 * b.abs();
            assert!(
                (a - b).abs() <= allowed,
                "{}: pixel {k}: stored {a}, rendered {b}",
                rendered.path
            );
        }

        // 2. Independently of `render`: the PNG of the same scene and noise (PNG rows are top
        // first) matches the FITS only once the FITS rows are reversed. The noise alone makes
        // every image asymmetric, so the wrong orientation correlates far worse (measured:
        // right >= 0.99, upside down <= 0.67).
        let png_path = rendered.path.replace(".fits", ".png");
        // Channel 0 of an RGB PNG shares the grey image's noise draws; the others do not.
        let img = image::open(png.dir.join(&png_path)).unwrap().to_rgb32f();
        let pixels: Vec<f32> = img.pixels().map(|p| p[0]).collect();
        let right = rank_correlation(&pixels, &as_seen);
        let wrong = rank_correlation(&pixels, &stored);
        assert!(
            right > 0.95,
            "{png_path}: only {right:.3} rank-correlated with its FITS twin"
        );
        assert!(
            right > wrong + 0.2,
            "{png_path}: right orientation {right:.3}, upside down {wrong:.3}"
        );
    }
}

#[test]
fn artefact_share_follows_the_rate() {
    let o = SynthOptions {
        artefact_rate: 0.05,
        size: 32,
        ..opts(400, 21)
    };
    let a = make(&o);
    let (_, rows) = read_labels(&a.labels);
    let labels: Vec<Label> = rows.iter().map(|r| r.label.parse().unwrap()).collect();
    let artefacts = labels.iter().filter(|l| l.is_artefact()).count();
    assert!(
        (19..=21).contains(&artefacts),
        "{artefacts} artefacts for 400 x 0.05"
    );
    for kind in Label::ARTEFACTS {
        let k = labels.iter().filter(|&&l| l == kind).count();
        assert!((5..=8).contains(&k), "{kind}: {k}");
    }
    for kind in Label::MORPHOLOGIES {
        let k = labels.iter().filter(|&&l| l == kind).count();
        assert!(
            (74..=78).contains(&k),
            "{kind}: {k} (morphologies are equally common)"
        );
    }

    let none = make(&SynthOptions {
        artefact_rate: 0.0,
        size: 32,
        ..opts(60, 21)
    });
    assert!(none.summary.by_label.keys().all(|l| !l.is_artefact()));
}

#[test]
fn shards_hold_at_most_a_thousand_files() {
    let a = make(&SynthOptions {
        size: 16,
        ..opts(2100, 2)
    });
    let mut per_shard: BTreeMap<String, usize> = BTreeMap::new();
    for path in files(&a.dir).keys() {
        let (shard, name) = path.split_once('/').unwrap();
        assert!(!name.contains('/'));
        *per_shard.entry(shard.to_string()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = [("000", 1000), ("001", 1000), ("002", 100)]
        .iter()
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    assert_eq!(per_shard, expected);
    assert!(a.dir.join("001").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_str()
        .unwrap()
        .starts_with("img-001000.")));
}

#[test]
fn refuses_unsafe_destinations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let err = generate(&dir, &dir.join("labels.csv"), &opts(5, 1)).unwrap_err();
    assert!(err.to_string().contains("inside the archive"), "{err}");

    let busy = tmp.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("old.fits"), b"x").unwrap();
    let err = generate(&busy, &tmp.path().join("busy.labels.csv"), &opts(5, 1)).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");

    let err = generate(
        &tmp.path().join("x"),
        &tmp.path().join("x.csv"),
        &SynthOptions {
            twins: 1.5,
            ..opts(5, 1)
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("twins"), "{err}");
}
