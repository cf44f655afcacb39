//! `simsite build` and `simsite check` on fixture archives, through the real binary: every
//! bad file is named in the report and the rest is still published.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Good files (relative path) and bad files (relative path, expected start of the reason).
fn mixed_archive(root: &Path) -> (Vec<&'static str>, Vec<(&'static str, &'static str)>) {
    let w = |rel: &str, bytes: &[u8]| write(&root.join(rel), bytes);
    w("fits/float.fits", &fits_bytes(&[Hdu::image(&[24, 16], Data::F32(blob(24, 16, 10.0, 8.0)))]));
    let ints: Vec<i16> = blob(16, 16, 8.0, 8.0).iter().map(|v| *v as i16).collect();
    let mut blanked = ints.clone();
    blanked[3] = -32768;
    w(
        "fits/scaled-int16.fits",
        &fits_bytes(&[Hdu::image(&[16, 16], Data::I16(blanked))
            .with("BSCALE", V::F(0.5))
            .with("BZERO", V::F(100.0))
            .with("BLANK", V::I(-32768))]),
    );
    let mut cube = blob(16, 16, 4.0, 4.0);
    cube.extend(blob(16, 16, 12.0, 12.0));
    w("fits/cube.fits", &fits_bytes(&[Hdu::image(&[16, 16, 2], Data::F32(cube))]));
    w("fits/radio-4d.fits", &fits_bytes(&[Hdu::image(&[16, 16, 1, 1], Data::F32(blob(16, 16, 8.0, 3.0)))]));
    w("fits/compressed.fits.gz", &gzip(&fits_bytes(&[Hdu::image(&[16, 16], Data::F32(blob(16, 16, 3.0, 3.0)))])));
    w("fits/UPPER.FITS", &fits_bytes(&[Hdu::image(&[16, 16], Data::I32(ints.iter().map(|&v| v as i32).collect()))]));
    w(
        "fits/in-extension.fits",
        &fits_bytes(&[Hdu::empty(), Hdu::image(&[16, 16], Data::F32(blob(16, 16, 5.0, 9.0))).with("EXTNAME", V::S("SCI"))]),
    );
    png_grey16(&root.join("png/grey16.png"), 20, 20, |x, y| (x * 2000 + y * 100) as u16);
    png_grey8(&root.join("png/grey8.png"), 20, 20, |x, y| ((x * y) % 256) as u8);
    rgb8(&root.join("png/colour.png"), 20, 10, |x, y| [(x * 10) as u8, (y * 20) as u8, 90]);
    png_grey8(&root.join("png/one-pixel.png"), 1, 1, |_, _| 77);
    rgb8(&root.join("jpeg/galaxy.jpg"), 32, 32, |x, y| [(x * 8) as u8, (y * 8) as u8, 40]);
    let tv: Vec<f32> = blob(12, 12, 6.0, 6.0).iter().map(|v| v - 500.0).collect();
    tiff_f32(&root.join("tiff/float.tif"), 12, 12, &tv);
    png_grey8(&root.join("names/with space & <b>\"quote\"'.png"), 8, 8, |x, _| (x * 30) as u8);
    png_grey8(&root.join("folder.fits/inside.png"), 8, 8, |x, y| (x + y) as u8);

    // Bad files.
    let good_png = std::fs::read(root.join("png/grey8.png")).unwrap();
    w("bad/truncated.png", &good_png[..good_png.len() / 2]);
    let good_jpg = std::fs::read(root.join("jpeg/galaxy.jpg")).unwrap();
    w("bad/truncated.jpg", &good_jpg[..good_jpg.len() / 3]);
    w("bad/empty.fits", b"");
    w("bad/text.fits", b"SIMPLE? no, just a text file\n");
    w("bad/all-nan.fits", &fits_bytes(&[Hdu::image(&[8, 8], Data::F32(vec![f32::NAN; 64]))]));
    w("bad/table-only.fits", &fits_bytes(&[Hdu::empty(), Hdu::table(5)]));
    let noise: Vec<u8> = (0..3000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    w("bad/noise.jpg", &noise);
    png_header_only(&root.join("bad/huge-header.png"), 100_000, 100_000);

    // Not images, or hidden: never reported, never published.
    w("notes.txt", b"observing log");
    png_grey8(&root.join(".hidden/secret.png"), 4, 4, |_, _| 1);
    png_grey8(&root.join(".dotfile.png"), 4, 4, |_, _| 1);

    let good = vec![
        "fits/UPPER.FITS",
        "fits/compressed.fits.gz",
        "fits/cube.fits",
        "fits/float.fits",
        "fits/in-extension.fits",
        "fits/radio-4d.fits",
        "fits/scaled-int16.fits",
        "folder.fits/inside.png",
        "jpeg/galaxy.jpg",
        "names/with space & <b>\"quote\"'.png",
        "png/colour.png",
        "png/grey16.png",
        "png/grey8.png",
        "png/one-pixel.png",
        "tiff/float.tif",
    ];
    let bad = vec![
        ("bad/all-nan.fits", "no finite pixels"),
        ("bad/empty.fits", "empty file"),
        ("bad/huge-header.png", "image is 100000x100000"),
        ("bad/noise.jpg", "not a valid JPEG file"),
        ("bad/table-only.fits", "no image data"),
        ("bad/text.fits", "not a valid FITS file"),
        ("bad/truncated.jpg", "not a valid JPEG file"),
        ("bad/truncated.png", "not a valid PNG file"),
    ];
    (good, bad)
}

struct Site {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    archive: PathBuf,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let archive = root.join("archive");
        std::fs::create_dir_all(&archive).unwrap();
        Site { _tmp: tmp, root, archive }
    }
    fn build(&self, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec!["build", "--archive", "archive", "--out", "out", "--cache", "cache"];
        args.extend_from_slice(extra);
        run(&self.root, &args)
    }
    fn report(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.root.join("cache/last-build.json")).unwrap()).unwrap()
    }
    fn thumbs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join("out/thumbs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

#[test]
fn bad_files_are_reported_by_name_and_the_rest_is_published() {
    let s = Site::new();
    let (good, bad) = mixed_archive(&s.archive);
    let (code, _out, err) = s.build(&[]);
    assert_eq!(code, 0, "{err}");
    let r = s.report();
    assert_eq!(r["items"], good.len());
    assert_eq!(r["skipped"], bad.len());
    assert_eq!(r["scanned"], good.len() + bad.len());
    assert_eq!(r["ignored_non_images"], 1, "notes.txt");
    let skipped = r["skipped_files"].as_array().unwrap();
    for (path, reason) in &bad {
        let entry = skipped.iter().find(|e| e["path"] == *path).unwrap_or_else(|| panic!("{path} not in the report"));
        assert!(entry["reason"].as_str().unwrap().starts_with(reason), "{path}: {}", entry["reason"]);
        assert!(err.contains(&format!("skipped {path}: {reason}")), "{path} not named on stderr:\n{err}");
    }
    let thumbs = s.thumbs();
    assert_eq!(thumbs.len(), good.len(), "{thumbs:?}");
    for g in &good {
        let id = simsite::ids::slug(g);
        assert!(thumbs.contains(&format!("{id}.jpg")), "{g} -> {id} missing in {thumbs:?}");
        let t = image::open(s.root.join("out/thumbs").join(format!("{id}.jpg"))).unwrap();
        assert!(t.width().max(t.height()) <= 128, "{g}");
        // Never upscaled, aspect kept.
        if *g == "png/colour.png" {
            assert_eq!((t.width(), t.height()), (20, 10));
        }
    }
    assert!(!thumbs.iter().any(|t| t.contains("secret") || t.contains("dotfile")));
    assert!(err.contains(&format!("published {} item(s)", good.len())), "{err}");
}

#[test]
fn rebuild_reuses_cached_thumbnails_and_rewrites_nothing() {
    let s = Site::new();
    mixed_archive(&s.archive);
    assert_eq!(s.build(&[]).0, 0);
    let made = s.report()["thumbnails_made"].as_u64().unwrap();
    assert_eq!(made, 15);
    let stamp = |p: &str| std::fs::metadata(s.root.join("out/thumbs").join(p)).unwrap().modified().unwrap();
    let before = stamp("fits~float.fits.jpg");
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(s.build(&[]).0, 0);
    let r = s.report();
    assert_eq!(r["thumbnails_made"], 0);
    assert_eq!(r["thumbnails_reused"], 15);
    assert_eq!(stamp("fits~float.fits.jpg"), before, "an unchanged thumbnail was rewritten");

    // A removed image loses its thumbnail; a changed stretch remakes every thumbnail.
    std::fs::remove_file(s.archive.join("fits/float.fits")).unwrap();
    std::fs::write(s.root.join("site-config.toml"), "[preprocess]\nstretch = \"log\"\n").unwrap();
    assert_eq!(s.build(&[]).0, 0);
    assert_eq!(s.report()["thumbnails_made"], 14);
    assert!(!s.thumbs().contains(&"fits~float.fits.jpg".to_string()));
    // The cache keeps only what the site shows: the removed image's thumbnail and every
    // one made with the old stretch are gone from it (else it grows every night).
    let contents = |dir: &Path| -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> =
            walkdir::WalkDir::new(dir).into_iter().map(|e| e.unwrap()).filter(|e| e.file_type().is_file()).map(|e| std::fs::read(e.path()).unwrap()).collect();
        v.sort();
        v
    };
    let mut shown = contents(&s.root.join("out/thumbs"));
    shown.extend(contents(&s.root.join("out/previews")));
    shown.sort();
    assert_eq!(contents(&s.root.join("cache/thumbs")), shown);
    assert!(s.report()["thumbnails_pruned"].as_u64().unwrap() >= 15);
}

#[test]
fn unchanged_files_are_not_read_again_and_any_change_is_seen() {
    let s = Site::new();
    for i in 0..6u32 {
        png_grey8(&s.archive.join(format!("f{i}.png")), 16, 16, move |x, y| (x * (i + 1) + y) as u8);
    }
    // Files younger than the settling time are read again by the next build (see
    // `digests`); let these settle first.
    std::thread::sleep(simsite::digests::SETTLE + std::time::Duration::from_millis(200));
    assert_eq!(s.build(&[]).0, 0);
    assert_eq!(s.report()["files_read"], 6);
    assert_eq!(s.build(&[]).0, 0);
    let r = s.report();
    assert_eq!((r["files_read"].as_u64(), r["thumbnails_reused"].as_u64()), (Some(0), Some(6)), "{r}");

    // New content with the modification time put back, as a careless copy tool might:
    // the status-change time still tells, and the file is read and its thumbnail remade.
    let thumb = s.root.join("out/thumbs/f2.png.jpg");
    let before = std::fs::read(&thumb).unwrap();
    let path = s.archive.join("f2.png");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    png_grey8(&path, 16, 16, |x, y| (x * y) as u8);
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    assert_eq!(s.build(&[]).0, 0);
    let r = s.report();
    assert_eq!((r["files_read"].as_u64(), r["thumbnails_made"].as_u64()), (Some(1), Some(1)), "{r}");
    assert_ne!(std::fs::read(&thumb).unwrap(), before, "the changed image kept its old thumbnail");

    // A damaged memo is ignored: every file is read, nothing else changes.
    std::fs::write(s.root.join("cache/file-digests.bin"), b"garbage").unwrap();
    assert_eq!(s.build(&[]).0, 0);
    assert_eq!(s.report()["files_read"], 6);
}

#[test]
fn a_preview_no_larger_than_the_thumbnail_is_the_thumbnail_stored_once() {
    use std::os::unix::fs::MetadataExt;
    let s = Site::new();
    png_grey8(&s.archive.join("small.png"), 40, 30, |x, y| (x * 5 + y) as u8);
    png_grey8(&s.archive.join("large.png"), 300, 200, |x, y| ((x * y) % 251) as u8);
    // Let the files settle, so the second build may trust their remembered digests.
    std::thread::sleep(simsite::digests::SETTLE + std::time::Duration::from_millis(200));
    assert_eq!(s.build(&[]).0, 0);
    let out = s.root.join("out");
    let pictures = |id: &str| (out.join(format!("thumbs/{id}.jpg")), out.join(format!("previews/{id}.jpg")));
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let (t, p) = pictures("small.png");
    assert_eq!(std::fs::read(&t).unwrap(), std::fs::read(&p).unwrap());
    assert_eq!(ino(&t), ino(&p), "the small image's preview is a second copy of its thumbnail");
    let (t, p) = pictures("large.png");
    assert_ne!(std::fs::read(&t).unwrap(), std::fs::read(&p).unwrap());
    let size = |p: &Path| image::image_dimensions(p).unwrap();
    assert_eq!((size(&t), size(&p)), ((128, 85), (300, 200)));

    // Both are found in the cache next time: nothing is decoded again.
    assert_eq!(s.build(&[]).0, 0);
    let r = s.report();
    assert_eq!((r["thumbnails_made"].as_u64(), r["files_read"].as_u64()), (Some(0), Some(0)), "{r}");
}

#[test]
fn identical_inputs_give_identical_thumbnails() {
    let a = Site::new();
    mixed_archive(&a.archive);
    assert_eq!(a.build(&[]).0, 0);
    let b = Site::new();
    mixed_archive(&b.archive);
    assert_eq!(b.build(&[]).0, 0);
    for t in a.thumbs() {
        let x = std::fs::read(a.root.join("out/thumbs").join(&t)).unwrap();
        let y = std::fs::read(b.root.join("out/thumbs").join(&t)).unwrap();
        assert_eq!(x, y, "{t} differs between two identical builds");
    }
}

#[test]
fn nothing_readable_means_nothing_published_and_a_failure() {
    let s = Site::new();
    write(&s.archive.join("a.fits"), b"garbage");
    write(&s.archive.join("b.png"), b"");
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 1);
    let archive = s.root.join("archive");
    assert!(
        err.contains(&format!("error: no image in {} could be read (2 skipped); nothing was published", archive.display())),
        "{err}"
    );
    assert!(!s.root.join("out/thumbs").exists());
}

#[test]
fn empty_or_missing_archive_is_a_clear_error() {
    let s = Site::new();
    write(&s.archive.join("readme.txt"), b"no images yet");
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end().lines().last().unwrap(),
        "  fix: point [archive] root or --archive at the folder with the images"
    );
    assert!(err.contains(&format!("error: the archive {} holds no image files", s.archive.display())), "{err}");
    // FITS files in a compression simsite does not read (ESO serves .fits.Z): named, with
    // the fix, instead of "point it at the folder with the images".
    write(&s.archive.join("eso/m51.fits.Z"), b"\x1f\x9d compressed");
    write(&s.archive.join("eso/m51.FITS.bz2"), b"BZh9");
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("  fix: 2 file(s) named like FITS in a compression simsite does not read (e.g. `eso/m51.FITS.bz2`, `eso/m51.fits.Z`); decompress them"),
        "{err}"
    );
    // Beside images, a warning.
    png_grey8(&s.archive.join("one.png"), 8, 8, |x, y| (x * 9 + y) as u8);
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: scan: 2 file(s) named like FITS in a compression simsite does not read"), "{err}");
    // IRAF's own format (M51 as `dev$pix` ships): said, with the conversion.
    write(&s.archive.join("iraf/pix.imh"), b"imhdr");
    write(&s.archive.join("iraf/pix.pix"), b"impix");
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("; 1 IRAF image(s) (.imh) simsite does not read (e.g. `iraf/pix.imh`); convert them to FITS with IRAF (`wfits`"), "{err}");
    let (code, _, err) = run(&s.root, &["build", "--archive", "nowhere"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "error: archive folder {} does not exist\n  fix: check [archive] root in the config or the --archive path\n",
            s.root.join("nowhere").display()
        )
    );
}

#[test]
fn names_that_make_the_same_id_are_all_published_and_a_name_as_written_keeps_its_url() {
    let s = Site::new();
    png_grey8(&s.archive.join("a-b.png"), 8, 8, |_, y| y as u8);
    png_grey8(&s.archive.join("星.png"), 8, 8, |x, y| (x + y) as u8);
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 0, "{err}");
    // Added later, and first in path order: neither takes the URL of a file already there.
    png_grey8(&s.archive.join("a b.png"), 8, 8, |x, _| x as u8);
    png_grey8(&s.archive.join("月.png"), 8, 8, |x, y| (x * y) as u8);
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 0, "{err}");
    let r = s.report();
    assert_eq!((r["items"].as_u64(), r["skipped"].as_u64()), (Some(4), Some(0)), "{r}");
    let page = |id: &str| read(&s.root.join("out/items").join(id).join("index.html"));
    assert!(!page("a-b.png").contains("a b.png"), "a-b.png kept its id");
    assert!(page(&simsite::ids::distinct("a-b.png", "a b.png")).contains("a b.png"));
    // Neither non-ASCII name is its id as written: the first in path order keeps it.
    assert!(page("png").contains("星.png"));
    assert!(page(&simsite::ids::distinct("png", "月.png")).contains("月.png"));
    // Ids that differ only in case would share a folder on a disk or host that ignores
    // case: the later one gets a hash too.
    png_grey8(&s.archive.join("M51.png"), 8, 8, |x, _| (x * 3) as u8);
    png_grey8(&s.archive.join("m51.png"), 8, 8, |_, y| (y * 3) as u8);
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(page("M51.png").contains("M51.png"));
    assert!(page(&simsite::ids::distinct("m51.png", "m51.png")).contains("m51.png"));
    assert!(!s.root.join("out/items/m51.png").exists());
}

#[cfg(unix)]
#[test]
fn symlinks_loops_and_non_utf8_names() {
    use std::os::unix::ffi::OsStrExt;
    let s = Site::new();
    png_grey8(&s.archive.join("sub/real.png"), 8, 8, |x, _| x as u8);
    std::os::unix::fs::symlink("..", s.archive.join("sub/loop")).unwrap();
    let outside = s.root.join("outside.png");
    png_grey8(&outside, 8, 8, |_, y| y as u8);
    std::os::unix::fs::symlink(&outside, s.archive.join("link-out.png")).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
    png_grey8(&s.archive.join(name), 8, 8, |x, y| (x * y) as u8);

    // Default: links are not followed, and say so.
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 0, "{err}");
    let r = s.report();
    assert_eq!(r["items"], 2, "{r}");
    let warnings = r["warnings"].as_array().unwrap();
    for p in ["link-out.png", "sub/loop"] {
        assert!(
            warnings.iter().any(|w| w["path"] == p && w["reason"].as_str().unwrap().starts_with("symlink not followed")),
            "{p}: {warnings:?}"
        );
    }
    assert!(s.thumbs().contains(&"caf-.png.jpg".to_string()), "{:?}", s.thumbs());

    // Following links: the loop is detected and reported, the build finishes.
    std::fs::write(s.root.join("site-config.toml"), "[archive]\nfollow-symlinks = true\n").unwrap();
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 0, "{err}");
    let r = s.report();
    assert_eq!(r["items"], 3, "{r}");
    assert!(r["warnings"].as_array().unwrap().iter().any(|w| w["reason"] == "symlink loop, not followed again"), "{r}");
}

#[test]
fn check_reports_bad_files_without_writing() {
    let s = Site::new();
    let (good, bad) = mixed_archive(&s.archive);
    let (code, out, err) = run(&s.root, &["check", "--archive", "archive", "--out", "out", "--cache", "cache"]);
    assert_eq!(code, 2, "{err}");
    for (path, reason) in &bad {
        assert!(out.contains(&format!("{path}: {reason}")), "{path} missing from:\n{out}");
    }
    assert!(err.contains(&format!("{} file(s) ok, {} would be skipped", good.len(), bad.len())), "{err}");
    assert!(!s.root.join("out").exists() && !s.root.join("cache").exists(), "check must not write");
    for (path, _) in &bad {
        std::fs::remove_file(s.archive.join(path)).unwrap();
    }
    let (code, _, err) = run(&s.root, &["check", "--archive", "archive"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn quiet_build_prints_only_the_summary() {
    let s = Site::new();
    png_grey8(&s.archive.join("a.png"), 8, 8, |x, _| x as u8);
    let (code, _, err) = s.build(&["--quiet"]);
    assert_eq!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("published 1 item(s)"), "{err}");
}

#[test]
fn the_bundled_sample_archive_builds_completely() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let s = Site::new();
    let (code, _, err) = run(
        &s.root,
        &[
            "build",
            "--config",
            repo.join("site-config.toml").to_str().unwrap(),
            "--out",
            "out",
            "--cache",
            "cache",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let r = s.report();
    assert_eq!(r["skipped"], 0, "{r}");
    assert_eq!(r["items"], r["scanned"]);
    assert!(r["items"].as_u64().unwrap() >= 200);
}

#[test]
fn tile_compressed_fits_are_decoded_in_a_child_process_so_a_crash_costs_one_file() {
    let s = Site::new();
    std::fs::copy(fixture("rice-valid.fits.fz"), s.archive.join("valid.fits.fz")).unwrap();
    std::fs::copy(fixture("rice-crashes-cfitsio-4.2.fits.fz"), s.archive.join("fuzzed.fits.fz")).unwrap();
    write(&s.archive.join("plain.fits"), &fits_bytes(&[Hdu::image(&[16, 16], Data::F32(blob(16, 16, 8.0, 8.0)))]));
    let (code, _, err) = s.build(&[]);
    assert_eq!(code, 0, "{err}");
    let r = s.report();
    assert_eq!(r["items"], 2, "{r}");
    let skipped = r["skipped_files"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{r}");
    assert_eq!(skipped[0]["path"], "fuzzed.fits.fz");
    assert!(s.thumbs().contains(&"valid.fits.fz.jpg".to_string()), "{:?}", s.thumbs());

    // A child that crashes (forced here: whether CFITSIO's stray read faults depends on the
    // memory around its buffer) costs its file only, with the reason.
    std::fs::remove_dir_all(s.root.join("cache")).unwrap();
    let out = std::process::Command::new(bin())
        .args(["build", "--archive", "archive", "--out", "out", "--cache", "cache"])
        .current_dir(&s.root)
        .env("SIMSITE_TEST_FITS_CHILD_CRASH", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r = s.report();
    assert_eq!(r["items"], 1, "{r}");
    let reasons: Vec<&str> = r["skipped_files"].as_array().unwrap().iter().map(|p| p["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        vec![
            "not a valid tile-compressed FITS file: CFITSIO crashed on this file (signal 6); it was decoded in a separate process, so only this file is skipped";
            2
        ]
    );
}

#[test]
fn an_item_keeps_its_url_when_a_file_added_later_makes_the_same_id() {
    // The last site's api/items/<id>.json says which file an id named: a site with a model.
    let s = Site::new();
    std::fs::write(s.root.join("c.toml"), format!("[encoder]\nmodel = \"{}\"\n", fixture("tiny-meta.onnx").display())).unwrap();
    let build = |extra: &[&str]| s.build(&[&["--config", "c.toml"], extra].concat());
    png_grey8(&s.archive.join("a b.png"), 8, 8, |x, _| x as u8);
    png_grey8(&s.archive.join("月.png"), 8, 8, |x, y| (x * y) as u8);
    let (code, _, err) = build(&[]);
    assert_eq!(code, 0, "{err}");
    let page = |id: &str| read(&s.root.join("out/items").join(id).join("index.html"));
    assert!(page("a-b.png").contains("a b.png"));
    assert!(page("png").contains("月.png"));
    // Added later: one is its id as written, the other first in path order. Neither takes
    // the URL the last site gave a file still there.
    png_grey8(&s.archive.join("a-b.png"), 8, 8, |_, y| y as u8);
    png_grey8(&s.archive.join("星.png"), 8, 8, |x, y| (x + y) as u8);
    let (code, _, err) = build(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(page("a-b.png").contains("a b.png"), "a b.png lost its URL");
    assert!(page(&simsite::ids::distinct("a-b.png", "a-b.png")).contains(">a-b.png<"));
    assert!(page("png").contains("月.png"), "月.png lost its URL");
    assert!(page(&simsite::ids::distinct("png", "星.png")).contains("星.png"));
    // Once the holder is gone, the file published under a suffixed id keeps it (its URL
    // never changes while it is in the archive): the plain id is left free.
    std::fs::remove_file(s.archive.join("a b.png")).unwrap();
    let (code, _, err) = build(&["--allow-removals"]);
    assert_eq!(code, 0, "{err}");
    assert!(page(&simsite::ids::distinct("a-b.png", "a-b.png")).contains(">a-b.png<"));
    assert!(!s.root.join("out/items/a-b.png").exists());
}

#[test]
fn a_file_published_under_a_suffixed_id_keeps_it_when_the_other_file_goes() {
    // A QA run's steps, on a site with a model (its api/ says which file had which id).
    let s = Site::new();
    std::fs::write(s.root.join("c.toml"), format!("[encoder]\nmodel = \"{}\"\n", fixture("tiny-meta.onnx").display())).unwrap();
    let build = || {
        let (code, _, err) = s.build(&["--config", "c.toml", "--allow-removals"]);
        assert_eq!(code, 0, "{err}");
        let mut ids: Vec<String> = serde_json::from_slice(&std::fs::read(s.root.join("out/api/ids.json")).unwrap()).unwrap();
        ids.sort();
        ids
    };
    let item = |id: &str| -> Value { serde_json::from_slice(&std::fs::read(s.root.join("out/api/items").join(format!("{id}.json"))).unwrap()).unwrap() };
    let png = |rel: &str, n: u32| png_grey8(&s.archive.join(rel), 8, 8, move |x, y| ((x * n + y * 7 + n) % 256) as u8);
    png("coll/a b.png", 3);
    png("coll/M51.png", 4);
    assert_eq!(build(), ["coll~M51.png", "coll~a-b.png"]);
    // Added: one name makes the same id, the other an id that differs only in case.
    png("coll/a-b.png", 5);
    png("coll/m51.png", 6);
    let ab = simsite::ids::distinct("coll~a-b.png", "coll/a-b.png");
    let m51 = simsite::ids::distinct("coll~m51.png", "coll/m51.png");
    assert_eq!(build(), ["coll~M51.png", "coll~a-b.png", ab.as_str(), m51.as_str()]);
    assert_eq!(item(&ab)["path"], "coll/a-b.png");
    assert_eq!(item(&m51)["path"], "coll/m51.png");
    // The same inputs again: the same ids.
    assert_eq!(build(), ["coll~M51.png", "coll~a-b.png", ab.as_str(), m51.as_str()]);
    // The file that made `a-b.png` collide goes: its id and URL stay.
    std::fs::remove_file(s.archive.join("coll/a b.png")).unwrap();
    assert_eq!(build(), ["coll~M51.png", ab.as_str(), m51.as_str()]);
    assert_eq!(item(&ab)["path"], "coll/a-b.png");
    assert!(read(&s.root.join("out/items").join(&ab).join("index.html")).contains("<h1>coll&#x2F;a-b.png</h1>"));
    assert!(!s.root.join("out/items/coll~a-b.png").exists() && !s.root.join("out/api/items/coll~a-b.png.json").exists());
    // The case-only collision: `M51.png` goes, `m51.png` keeps its id.
    std::fs::remove_file(s.archive.join("coll/M51.png")).unwrap();
    assert_eq!(build(), [ab.as_str(), m51.as_str()]);
    assert_eq!(item(&m51)["path"], "coll/m51.png");
    // The plain ids are free for the files that claim them later.
    png("coll/a b.png", 3);
    png("coll/M51.png", 4);
    assert_eq!(build(), ["coll~M51.png", "coll~a-b.png", ab.as_str(), m51.as_str()]);
    assert_eq!((item("coll~a-b.png")["path"].as_str(), item("coll~M51.png")["path"].as_str()), (Some("coll/a b.png"), Some("coll/M51.png")));
    assert_eq!(item(&ab)["path"], "coll/a-b.png");
}

#[test]
fn a_catalogue_export_with_no_rows_stops_the_build_and_one_cut_short_is_a_warning() {
    let s = Site::new();
    let mut rows = String::from("path,title\n");
    for i in 0..8 {
        png_grey8(&s.archive.join(format!("img{i}.png")), 8, 8, move |x, y| (x * (i + 1) + y) as u8);
        rows += &format!("img{i}.png,Galaxy {i}\n");
    }
    std::fs::write(s.root.join("cat.csv"), &rows).unwrap();
    std::fs::write(s.root.join("c.toml"), "[catalogue]\npath = \"cat.csv\"\n").unwrap();
    let (code, _, err) = s.build(&["--config", "c.toml", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("no row in the catalogue"), "{err}");
    let page = || read(&s.root.join("out/items/img0.png/index.html"));
    let served = page();
    assert!(served.contains("Galaxy 0"));
    // The nightly export failed: its header alone, or nothing. Nothing is published.
    for (text, what) in [("path,title\n", "it has a header but no rows"), ("", "the file is empty (no header, no rows)")] {
        std::fs::write(s.root.join("cat.csv"), text).unwrap();
        let (code, _, err) = s.build(&["--config", "c.toml", "--quiet"]);
        assert_ne!(code, 0, "{err}");
        let cat = s.root.join("cat.csv");
        assert!(
            err.contains(&format!("catalogue {}: {what}\n  fix: complete the catalogue export (the site keeps being served as it is until then), or remove [catalogue] from the config to build without one", cat.display())),
            "{err}"
        );
        assert_eq!(page(), served, "the served site stays");
    }
    // Cut short: 2 rows of 8 images. Published, with a warning even with --quiet.
    std::fs::write(s.root.join("cat.csv"), rows.lines().take(3).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let (code, _, err) = s.build(&["--config", "c.toml", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let said = "6 of the 8 items have no row in the catalogue (e.g. `img2.png`, `img3.png`, `img4.png`): their pages and api/items/<id>.json lose the catalogue's title, link and columns";
    assert!(err.contains(said), "{err}");
    let r = s.report();
    assert!(r["warnings"].as_array().unwrap().iter().any(|w| w["reason"].as_str().unwrap().starts_with(said) && w["path"].as_str().unwrap().ends_with("cat.csv")), "{r}");
    assert!(page().contains("Galaxy 0") && !read(&s.root.join("out/items/img5.png/index.html")).contains("Galaxy 5"));
}

#[test]
fn two_files_the_catalogue_gives_one_id_skip_the_later_naming_both() {
    let s = Site::new();
    png_grey8(&s.archive.join("a.png"), 8, 8, |_, y| y as u8);
    png_grey8(&s.archive.join("b.png"), 8, 8, |x, _| x as u8);
    std::fs::write(s.root.join("cat.csv"), "path,id\na.png,M31\nb.png,M31\n").unwrap();
    std::fs::write(s.root.join("c.toml"), "[catalogue]\npath = \"cat.csv\"\nid-column = \"id\"\n").unwrap();
    let (code, _, err) = s.build(&["--config", "c.toml"]);
    assert_eq!(code, 0, "{err}");
    let r = s.report();
    assert_eq!(r["items"], 1);
    assert_eq!(r["skipped_files"][0]["path"], "b.png");
    assert_eq!(
        r["skipped_files"][0]["reason"],
        "its item id `M31` is already taken by `a.png`; rename one of the two files or give them distinct ids in the catalogue"
    );
}
