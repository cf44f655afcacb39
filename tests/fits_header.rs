//! FITS header keywords as item metadata (`[fits] keywords`), through the real binary: where
//! the values come from (the image's HDU, else the primary), the catalogue's precedence,
//! hostile values, turning it off, and the cache that keeps a nightly rebuild from reading
//! any unchanged file for them.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{json, Value};

struct Site {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::create_dir_all(root.join("archive")).unwrap();
        let s = Site { _tmp: tmp, root };
        s.config("");
        s
    }
    /// A config with the test model, `extra` appended.
    fn config(&self, extra: &str) {
        let text = format!(
            "[archive]\nroot = \"archive\"\n[output]\ndir = \"out\"\ncache = \"cache\"\n[encoder]\nmodel = \"{}\"\n{extra}",
            fixture("tiny-meta.onnx").display()
        );
        std::fs::write(self.root.join("site-config.toml"), text).unwrap();
    }
    fn fits(&self, rel: &str, hdus: &[Hdu]) {
        write(&self.root.join("archive").join(rel), &fits_bytes(hdus));
    }
    fn build(&self) -> Value {
        let (code, _, err) = run(&self.root, &["build"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_slice(&std::fs::read(self.root.join("cache/last-build.json")).unwrap()).unwrap()
    }
    fn meta(&self, id: &str) -> Value {
        let item: Value = serde_json::from_slice(&std::fs::read(self.root.join(format!("out/api/items/{id}.json"))).unwrap()).unwrap();
        item["meta"].clone()
    }
    fn page(&self, id: &str) -> String {
        read(&self.root.join(format!("out/items/{id}/index.html")))
    }
    /// The header cache's part files, under every key.
    fn parts(&self) -> Vec<PathBuf> {
        let dir = self.root.join("cache/fits-headers");
        let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir).into_iter().flatten().filter(|e| e.file_type().is_file()).map(|e| e.into_path()).collect();
        v.sort();
        v
    }
}

/// A 16×16 image unlike the others (`n` moves its blob).
fn image(n: usize) -> Hdu {
    Hdu::image(&[16, 16], Data::F32(blob(16, 16, 3.0 + n as f32, 12.0 - n as f32 / 2.0)))
}

/// Files younger than the settling time are read again by the next build (see `digests`).
fn settle() {
    std::thread::sleep(simsite::digests::SETTLE + std::time::Duration::from_millis(200));
}

#[test]
fn keywords_come_from_the_images_hdu_else_the_primary_and_absent_ones_are_left_out() {
    let s = Site::new();
    // The image in an extension, OBJECT and DATE-OBS only in the primary header (as HST's
    // and many archives' files are), TELESCOP in both: the image's own header wins.
    s.fits(
        "hst/ext.fits",
        &[
            // ACS and WFPC2 name their two filter wheels' filters FILTER1 and FILTER2.
            Hdu::empty().with("OBJECT", V::S("NGC 104")).with("DATE-OBS", V::S("2002-07-13")).with("TELESCOP", V::S("primary")).with("FILTER1", V::S("F606W")).with("FILTER2", V::S("CLEAR2S")),
            image(1).with("EXTNAME", V::S("SCI")).with("TELESCOP", V::S("HST")).with("EXPTIME", V::Raw(format!("{:>20}", "600."))),
        ],
    );
    // The image in the primary HDU; no INSTRUME anywhere; a number as written, not
    // re-formatted; an empty string is no value.
    s.fits(
        "m51.fits",
        &[image(2)
            .with("OBJECT", V::S("M51"))
            .with("EXPTIME", V::Raw(format!("{:>20}", "1.5E+02")))
            .with("FILTER", V::S(""))
            .with("TELESCOP", V::S("KPNO 0.9m"))],
    );
    png_grey8(&s.root.join("archive/photo.png"), 16, 16, |x, y| (x * y) as u8);
    // A tile-compressed image, decoded in a child process: its values come back from it.
    let fz = s.root.join("archive/rice.fits.fz");
    {
        let desc = fitsio::images::ImageDescription { data_type: fitsio::images::ImageType::Long, dimensions: &[16, 16] };
        let mut f = fitsio::FitsFile::create(format!("{}[compress R]", fz.display())).open().unwrap();
        let primary = f.primary_hdu().unwrap();
        primary.write_key(&mut f, "DATE-OBS", "2020-01-02").unwrap();
        let hdu = f.create_image("SCI", &desc).unwrap();
        hdu.write_key(&mut f, "OBJECT", "M82").unwrap();
        hdu.write_key(&mut f, "INSTRUME", "WFC3").unwrap();
        let ints: Vec<i32> = blob(16, 16, 7.0, 7.0).iter().map(|v| *v as i32).collect();
        hdu.write_image(&mut f, &ints).unwrap();
    }
    let r = s.build();
    assert_eq!(r["items"], 4, "{r}");
    assert_eq!(
        s.meta("hst~ext.fits"),
        json!({"OBJECT": "NGC 104", "DATE-OBS": "2002-07-13", "TELESCOP": "HST", "FILTER1": "F606W", "FILTER2": "CLEAR2S", "EXPTIME": "600."})
    );
    assert_eq!(s.meta("m51.fits"), json!({"OBJECT": "M51", "TELESCOP": "KPNO 0.9m", "EXPTIME": "1.5E+02"}));
    assert_eq!(s.meta("rice.fits.fz"), json!({"OBJECT": "M82", "DATE-OBS": "2020-01-02", "INSTRUME": "WFC3"}));
    assert_eq!(s.meta("photo.png"), json!({}));
    // The page lists them in the order of [fits] keywords.
    let page = s.page("hst~ext.fits");
    assert!(
        page.contains("<dt>OBJECT</dt><dd>NGC 104</dd><dt>DATE-OBS</dt><dd>2002-07-13</dd><dt>TELESCOP</dt><dd>HST</dd><dt>FILTER1</dt><dd>F606W</dd><dt>FILTER2</dt><dd>CLEAR2S</dd><dt>EXPTIME</dt><dd>600.</dd>"),
        "{page}"
    );
    // The map may colour by them: TELESCOP holds two values, a colouring of two labels.
    let map: Value = serde_json::from_slice(&std::fs::read(s.root.join("out/map/map.json")).unwrap()).unwrap();
    let names: Vec<&str> = map["colour_by"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"TELESCOP") && names.contains(&"EXPTIME"), "{names:?}");

    // `inspect` says which HDU it read and what it found there.
    let (code, out, err) = run(&s.root, &["inspect", "archive/hst/ext.fits"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("image: HDU 1, axes [16, 16] (NAXIS1 first)\nheader keywords (from that HDU, else the primary HDU):\n  OBJECT = NGC 104\n  DATE-OBS = 2002-07-13\n  TELESCOP = HST\n  FILTER1 = F606W\n  FILTER2 = CLEAR2S\n  EXPTIME = 600.\n"),
        "{out}"
    );
}

#[test]
fn a_catalogue_column_of_the_same_name_wins_over_the_header() {
    let s = Site::new();
    s.fits("a.fits", &[image(1).with("OBJECT", V::S("M51")).with("FILTER", V::S("B"))]);
    s.fits("b.fits", &[image(2).with("OBJECT", V::S("M82"))]);
    // b's OBJECT cell is empty: the catalogue says nothing, so the header does.
    std::fs::write(s.root.join("cat.csv"), "path,OBJECT,survey\na.fits,NGC 5194,KPNO\nb.fits,,KPNO\n").unwrap();
    s.config("[catalogue]\npath = \"cat.csv\"\n");
    s.build();
    assert_eq!(s.meta("a.fits"), json!({"OBJECT": "NGC 5194", "survey": "KPNO", "FILTER": "B"}));
    assert_eq!(s.meta("b.fits"), json!({"OBJECT": "M82", "survey": "KPNO"}));
    // The catalogue's columns first, in its order, then the header's.
    assert!(s.page("a.fits").contains("<dt>OBJECT</dt><dd>NGC 5194</dd><dt>survey</dt><dd>KPNO</dd><dt>FILTER</dt><dd>B</dd>"), "{}", s.page("a.fits"));
}

#[test]
fn hostile_header_values_lose_control_characters_and_are_cut() {
    let s = Site::new();
    let long: String = (0..40).map(|i| format!("segment{i:02} ")).collect();
    s.fits(
        "evil.fits",
        &[image(1)
            .with("OBJECT", V::L("M51\u{1b}[2J\u{7} <script>alert(1)</script>\tx".into()))
            .with("FILTER", V::L(long.clone()))
            .with("TELESCOP", V::S("it''s"))],
    );
    s.build();
    let meta = s.meta("evil.fits");
    assert_eq!(meta["OBJECT"], "M51[2J <script>alert(1)</script>x", "{meta}");
    assert_eq!(meta["TELESCOP"], "it's", "quotes are undoubled");
    let filter = meta["FILTER"].as_str().unwrap();
    assert_eq!(filter.chars().count(), simsite::decode::MAX_VALUE_CHARS, "a value continued over CONTINUE cards is cut");
    assert!(long.starts_with(filter.trim_end_matches('…')) && filter.ends_with('…'), "{filter}");
    let page = s.page("evil.fits");
    assert!(!page.contains("<script>") && !page.contains('\u{1b}'), "{page}");
}

#[test]
fn keywords_off_reads_none_and_a_new_list_reads_headers_again_without_embedding() {
    let s = Site::new();
    s.fits("a.fits", &[image(1).with("OBJECT", V::S("M51")).with("AIRMASS", V::F(1.25))]);
    settle();
    s.build();
    assert_eq!(s.meta("a.fits"), json!({"OBJECT": "M51"}));
    assert_eq!(s.parts().len(), 1);

    // Without keywords the header is still read once, for the image's place on the sky
    // (this one has no WCS); with neither, nothing is.
    s.config("[fits]\nkeywords = []\n");
    let r = s.build();
    assert_eq!((r["embedded"].as_u64(), r["files_read"].as_u64()), (Some(0), Some(1)), "{r}");
    assert_eq!(s.meta("a.fits"), json!({}));
    s.config("[fits]\nkeywords = []\nposition = false\n");
    let r = s.build();
    assert_eq!((r["embedded"].as_u64(), r["files_read"].as_u64()), (Some(0), Some(0)), "{r}");
    assert_eq!(s.meta("a.fits"), json!({}));
    assert!(s.parts().is_empty(), "the values of the old lists are pruned: {:?}", s.parts());

    // Another list: the headers are read again (the file, no pixel), nothing is embedded.
    s.config("[fits]\nkeywords = [\"AIRMASS\", \"OBJECT\"]\n");
    let r = s.build();
    assert_eq!((r["embedded"].as_u64(), r["files_read"].as_u64(), r["thumbnails_made"].as_u64()), (Some(0), Some(1), Some(0)), "{r}");
    assert_eq!(s.meta("a.fits"), json!({"AIRMASS": "1.25E0", "OBJECT": "M51"}));
    assert!(s.page("a.fits").contains("<dt>AIRMASS</dt><dd>1.25E0</dd><dt>OBJECT</dt><dd>M51</dd>"));
}

/// The nightly case: an unchanged archive is not read again, and its items keep their
/// header values, byte for byte.
#[test]
fn a_rebuild_of_unchanged_files_reads_none_and_keeps_their_values() {
    let s = Site::new();
    for i in 0..5 {
        s.fits(&format!("f{i}.fits"), &[Hdu::empty().with("OBJECT", V::S("M51")), image(i).with("EXPTIME", V::I(30 * i as i64))]);
    }
    settle();
    let r = s.build();
    assert_eq!(r["files_read"], 5);
    let item = |i: usize| std::fs::read(s.root.join(format!("out/api/items/f{i}.fits.json"))).unwrap();
    let before: Vec<Vec<u8>> = (0..5).map(item).collect();
    let parts = s.parts();
    let r = s.build();
    assert_eq!((r["files_read"].as_u64(), r["embedded"].as_u64()), (Some(0), Some(0)), "{r}");
    assert_eq!((0..5).map(item).collect::<Vec<_>>(), before);
    assert_eq!(s.meta("f3.fits"), json!({"OBJECT": "M51", "EXPTIME": "90"}));
    assert_eq!(s.parts(), parts, "nothing new for the header cache");

    // A changed file (new content, so embedded again too) is read again, and its new
    // values shown.
    s.fits("f3.fits", &[Hdu::empty().with("OBJECT", V::S("M82")), image(3)]);
    let r = s.build();
    assert_eq!((r["files_read"].as_u64(), r["embedded"].as_u64()), (Some(1), Some(1)), "{r}");
    assert_eq!(s.meta("f3.fits"), json!({"OBJECT": "M82"}));
}

/// A cache from before header values were kept has embeddings, thumbnails and remembered
/// digests but no `fits-headers/`: the next build reads each FITS file's header (no pixel,
/// nothing embedded or drawn again) and the one after reads nothing.
#[test]
fn a_cache_from_before_gets_its_header_values_without_embedding_again() {
    let s = Site::new();
    for i in 0..4 {
        s.fits(&format!("f{i}.fits"), &[image(i).with("OBJECT", V::S("M51"))]);
    }
    png_grey8(&s.root.join("archive/photo.png"), 16, 16, |x, y| (x + y) as u8);
    settle();
    s.build();
    std::fs::remove_dir_all(s.root.join("cache/fits-headers")).unwrap();
    let r = s.build();
    assert_eq!((r["embedded"].as_u64(), r["thumbnails_made"].as_u64()), (Some(0), Some(0)), "{r}");
    assert_eq!(r["files_read"], 4, "the FITS files' headers, not the PNG: {r}");
    assert_eq!(s.meta("f2.fits"), json!({"OBJECT": "M51"}));
    assert_eq!(s.build()["files_read"], 0);
}

/// `embed --shard` writes the header values of its files; the build that follows uses them
/// (reading no header again) and publishes what one build publishes.
#[test]
fn shards_write_header_values_a_following_build_uses() {
    let s = Site::new();
    for i in 0..12 {
        s.fits(&format!("f{i:02}.fits"), &[Hdu::empty().with("OBJECT", V::S(["M51", "M82", "M31"][i % 3])), image(i)]);
    }
    for i in 0..3 {
        let (code, _, err) = run(&s.root, &["embed", "--shard", &format!("{i}/3")]);
        assert_eq!(code, 0, "{err}");
    }
    let parts = s.parts();
    assert!(!parts.is_empty() && parts.len() <= 3, "a part a shard: {parts:?}");
    let r = s.build();
    assert_eq!(r["embedded"], 0);
    assert_eq!(s.parts(), parts, "the build read no header the shards had read");
    assert_eq!(s.meta("f04.fits"), json!({"OBJECT": "M82"}));
}

#[test]
fn colour_by_may_name_a_keyword_and_a_wrong_name_lists_them() {
    let s = Site::new();
    for i in 0..3 {
        s.fits(&format!("f{i}.fits"), &[image(i).with("OBJECT", V::S(["M51", "M82", "M31"][i]))]);
    }
    s.config("[site]\ncolour-by = [\"OBJECT\"]\n");
    s.build();
    let map: Value = serde_json::from_slice(&std::fs::read(s.root.join("out/map/map.json")).unwrap()).unwrap();
    let named = map["colour_by"].as_array().unwrap().iter().find(|c| c["name"] == "OBJECT").unwrap_or_else(|| panic!("{map}"));
    assert_eq!(named["labels"], json!(["M31", "M51", "M82"]));
    s.config("[site]\ncolour-by = [\"OBJ\"]\n");
    let (code, _, err) = run(&s.root, &["build"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("key `site.colour-by`: `OBJ` is not one of the [fits] keywords (`OBJECT`, `DATE-OBS`, `TELESCOP`, `INSTRUME`, `FILTER`, `FILTER1`, `FILTER2`, `EXPTIME`), and no [catalogue] is configured"),
        "{err}"
    );
}

/// A 16×16 image whose WCS puts its centre (pixel 8.5, 8.5) at (`ra`, `dec`), 0.1" pixels,
/// in ICRS.
fn placed(n: usize, ra: f64, dec: f64) -> Hdu {
    unframed(n, ra, dec).with("RADESYS", V::S("ICRS"))
}

/// The same without a frame (RADESYS, EQUINOX).
fn unframed(n: usize, ra: f64, dec: f64) -> Hdu {
    image(n)
        .with("CTYPE1", V::S("RA---TAN"))
        .with("CTYPE2", V::S("DEC--TAN"))
        .with("CRPIX1", V::F(8.5))
        .with("CRPIX2", V::F(8.5))
        .with("CRVAL1", V::F(ra))
        .with("CRVAL2", V::F(dec))
        .with("CD1_1", V::F(-0.1 / 3600.0))
        .with("CD2_2", V::F(0.1 / 3600.0))
}

fn degrees(meta: &Value, key: &str) -> f64 {
    meta[key].as_str().unwrap_or_else(|| panic!("no `{key}` in {meta}")).parse().unwrap()
}

#[test]
fn real_fits_files_are_placed_on_the_sky_by_their_wcs() {
    let s = Site::new();
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample-archive");
    // Where astropy 8.0.2 puts each image's centre (`WCS.all_pix2world` at ((n+1)/2, (n+1)/2),
    // then `SkyCoord(..., frame=wcs_to_celestial_frame(w)).icrs`; m51 and the DSS plate are
    // FK5 J2000).
    let placed = [
        ("m51/m51-iraf-devpix.fits", 202.47007436, 47.19465806),
        ("hst-drizzle/acs-hrc-47tuc-field-01.fits", 6.03330735, -72.08678046),
        // The image in extension 1 of a gzipped file; it inherits (INHERIT = T) the primary
        // header's EQUINOX = 2000, so FK5 J2000 (astropy given the extension's header with
        // that card).
        ("hst-drizzle/acs-hrc-47tuc-flt-bin8.fits.gz", 6.02715083, -72.08350829),
        // EPOCH (the plate's date, 1951.9) beside EQUINOX 2000.
        ("eso-midas/dss-poss-wcstest.fits", 40.74984574, 18.34993428),
    ];
    // Linear axes ('x-unit'), and RA---TAN axes with no CRVAL (a TIMMI2 cube).
    let unplaced = ["eso-midas/ccd-galaxy-north.fits", "eso-midas/timmi2-hd61421-cube.fits"];
    for rel in placed.iter().map(|p| p.0).chain(unplaced) {
        let to = s.root.join("archive").join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(sample.join(rel), to).unwrap();
    }
    s.build();
    let id = |rel: &str| rel.replace('/', "~");
    for (rel, ra, dec) in placed {
        let meta = s.meta(&id(rel));
        let (got_ra, got_dec) = (degrees(&meta, "ra"), degrees(&meta, "dec"));
        // Six decimals are written: 0.0036" in Dec.
        assert!((got_ra - ra).abs() < 2e-6 && (got_dec - dec).abs() < 2e-6, "{rel}: ({got_ra}, {got_dec}) against astropy's ({ra}, {dec})");
        assert!(s.page(&id(rel)).contains("<dt>Sky</dt>"), "{rel}");
    }
    let m51 = s.page(&id("m51/m51-iraf-devpix.fits"));
    // With its galactic coordinates (astropy: l 104.8501°, b +68.5611°).
    assert!(m51.contains("13:29:52.82 +47:11:40.8 (l 104.8501°, b +68.5611°)") && m51.contains("Coord=202.470074+47.194658"), "{m51}");
    // The links are sized to the image: 0.109° across (astropy), so SIMBAD within its
    // half-diagonal (4.62′, from the 0.109° kept) and Aladin over 1.5 times its width.
    assert_eq!(s.meta(&id("m51/m51-iraf-devpix.fits"))["fov"], "0.109");
    assert!(m51.contains("&Radius=4.62&Radius.unit=arcmin\" title=\"Objects within 4.62 arcmin in SIMBAD\"") && m51.contains("&fov=0.164\""), "{m51}");
    for rel in unplaced {
        let meta = s.meta(&id(rel));
        assert!(meta.get("ra").is_none() && meta.get("dec").is_none(), "{rel}: {meta}");
        assert!(!s.page(&id(rel)).contains("<dt>Sky</dt>"), "{rel}");
    }
    // `inspect` says where, or why not.
    let (code, out, err) = run(&s.root, &["inspect", "archive/m51/m51-iraf-devpix.fits"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sky: 13:29:52.82 +47:11:40.8 (RA 202.470074, Dec 47.194658, degrees, ICRS): the centre, from that HDU's WCS; 0.109° across"), "{out}");
    let (_, out, _) = run(&s.root, &["inspect", "archive/eso-midas/ccd-galaxy-north.fits"]);
    assert!(out.contains("sky: none (that HDU has no celestial WCS)"), "{out}");
}

#[test]
fn survey_distortions_and_projections_are_placed_as_astropy_places_them() {
    let s = Site::new();
    // DECam's community pipeline (TPV), the same cards under SCAMP's TAN, and VISTA's ZPN;
    // reference pixels far off, so the distortion moves the centre (TPV against plain TAN:
    // 0.17").
    let decam = |ctype1: &'static str, ctype2: &'static str| {
        let mut h = image(0)
            .with("CTYPE1", V::S(ctype1))
            .with("CTYPE2", V::S(ctype2))
            .with("CRPIX1", V::F(-400.0))
            .with("CRPIX2", V::F(900.0))
            .with("CRVAL1", V::F(53.1))
            .with("CRVAL2", V::F(-27.8))
            .with("CD1_1", V::F(-7.3e-5))
            .with("CD2_2", V::F(7.3e-5));
        for (k, v) in [("PV1_1", 1.0), ("PV1_4", 2.1e-3), ("PV1_5", -1.2e-3), ("PV1_6", 4e-4), ("PV1_7", -0.3)] {
            h = h.with(k, V::F(v));
        }
        for (k, v) in [("PV2_1", 1.0), ("PV2_4", 1.5e-3), ("PV2_5", 8e-4), ("PV2_6", -1.1e-3), ("PV2_7", 0.2)] {
            h = h.with(k, V::F(v));
        }
        h
    };
    s.fits("decam-tpv.fits", &[decam("RA---TPV", "DEC--TPV")]);
    s.fits("scamp-tan.fits", &[decam("RA---TAN", "DEC--TAN")]);
    let vista = image(1)
        .with("CTYPE1", V::S("RA---ZPN"))
        .with("CTYPE2", V::S("DEC--ZPN"))
        .with("CRPIX1", V::F(-3000.0))
        .with("CRPIX2", V::F(2000.0))
        .with("CRVAL1", V::F(53.1))
        .with("CRVAL2", V::F(-27.8))
        .with("CD1_1", V::F(-9.5e-5))
        .with("CD2_2", V::F(9.5e-5))
        .with("PV2_1", V::F(1.0))
        .with("PV2_3", V::F(44.0))
        .with("PV2_5", V::F(-10300.0));
    s.fits("vista-zpn.fits", &[vista]);
    s.build();
    // astropy 8.0.2: `WCS(header).all_pix2world(8.5, 8.5, 1)`.
    for (id, ra, dec) in [("decam-tpv.fits", 53.06627874, -27.86512357), ("scamp-tan.fits", 53.06627874, -27.86512357), ("vista-zpn.fits", 52.77684069, -27.98852235)] {
        let meta = s.meta(id);
        let (got_ra, got_dec) = (degrees(&meta, "ra"), degrees(&meta, "dec"));
        assert!((got_ra - ra).abs() < 2e-6 && (got_dec - dec).abs() < 2e-6, "{id}: ({got_ra}, {got_dec}) against astropy's ({ra}, {dec})");
        assert!(s.page(id).contains("<dt>Sky</dt>"), "{id}");
    }
}

#[test]
fn positions_from_headers_keep_other_exposures_of_a_field_out_of_the_neighbours() {
    let s = Site::new();
    // b.fits is a second exposure of a.fits's field: the same pixels, 0.4" away.
    for (name, n, ra, dec) in [("a.fits", 0, 150.0, 2.0), ("b.fits", 0, 150.0001, 2.0)] {
        s.fits(name, &[placed(n, ra, dec)]);
    }
    for n in 1..10 {
        s.fits(&format!("o{n}.fits"), &[placed(n, 10.0 * n as f64, -30.0)]);
    }
    // FK4 (B1950) coordinates are given in ICRS; apparent places are not converted: that
    // file has no position.
    s.fits("old.fits", &[unframed(11, 20.0, 5.0).with("RADESYS", V::S("FK4")).with("EQUINOX", V::F(1950.0))]);
    s.fits("apparent.fits", &[unframed(12, 40.0, 5.0).with("RADESYS", V::S("GAPPT")).with("EQUINOX", V::F(2000.0))]);
    s.build();
    let first = |id: &str| {
        let item: Value = serde_json::from_slice(&std::fs::read(s.root.join(format!("out/api/items/{id}.json"))).unwrap()).unwrap();
        item["neighbors"][0]["id"].as_str().unwrap().to_string()
    };
    assert_eq!(first("a.fits"), "b.fits", "without the sky filter the other exposure comes first");
    assert!((degrees(&s.meta("b.fits"), "ra") - 150.0001).abs() < 2e-6);
    // astropy 8.0.2: `SkyCoord(20, 5, frame=FK4(equinox='B1950')).icrs`.
    let old = s.meta("old.fits");
    assert!((degrees(&old, "ra") - 20.64932963).abs() < 2e-6 && (degrees(&old, "dec") - 5.26107147).abs() < 2e-6, "{old}");
    assert!(s.meta("apparent.fits").get("ra").is_none(), "{}", s.meta("apparent.fits"));
    let (_, out, _) = run(&s.root, &["inspect", "archive/apparent.fits"]);
    assert!(out.contains("sky: none: its coordinate frame RADESYS = 'GAPPT' is not converted to ICRS"), "{out}");

    s.config("[neighbours]\nmin-separation-arcsec = 5\n");
    s.build();
    assert_ne!(first("a.fits"), "b.fits", "the filter knows both positions from the headers");

    // A catalogue's position wins, and the item shows no second one.
    std::fs::write(s.root.join("cat.csv"), "path,ra,dec\na.fits,150.5,2.5\n").unwrap();
    s.config("[catalogue]\npath = \"cat.csv\"\n");
    s.build();
    let a = s.meta("a.fits");
    assert_eq!((a["ra"].as_str(), a["dec"].as_str()), (Some("150.5"), Some("2.5")), "{a}");
    assert!(s.page("a.fits").contains("Coord=150.500000+2.500000"));
    assert!((degrees(&s.meta("b.fits"), "ra") - 150.0001).abs() < 2e-6, "the catalogue has no row for b");

    // Turned off, no position is read or shown.
    s.config("[fits]\nposition = false\n");
    s.build();
    assert!(s.meta("a.fits").get("ra").is_none() && !s.page("a.fits").contains("<dt>Sky</dt>"));
}

#[test]
fn one_source_for_a_position_and_frames_an_extension_inherits() {
    let s = Site::new();
    s.fits("a.fits", &[placed(0, 186.6134, 31.2234)]);
    s.fits("b.fits", &[placed(1, 150.0, 2.0)]);
    // The frame is in the primary header, which the image's extension inherits: FK4
    // (B1950), which puts M51 at (201.9, 47.45).
    s.fits(
        "inherit.fits",
        &[Hdu::empty().with("RADESYS", V::S("FK4")).with("EQUINOX", V::F(1950.0)), unframed(2, 201.9, 47.45).with("INHERIT", V::B(true))],
    );
    s.fits("inherit-epoch.fits", &[Hdu::empty().with("EQUINOX", V::F(2000.0)), unframed(4, 201.9, 47.45).with("INHERIT", V::B(true)).with("EPOCH", V::F(1950.0))]);
    // Each card it lacks: its own EQUINOX, the primary's RADESYS: FK4 at B1990 (its
    // EQUINOX alone would be FK5 at J1990, 0.8" away).
    s.fits(
        "inherit-one.fits",
        &[Hdu::empty().with("RADESYS", V::S("FK4")).with("EQUINOX", V::F(1950.0)), unframed(3, 201.9, 47.45).with("INHERIT", V::B(true)).with("EQUINOX", V::F(1990.0))],
    );
    // The catalogue says a's RA but not its Dec: its position is the catalogue's (half of
    // one), never RA from there and Dec from the header.
    std::fs::write(s.root.join("cat.csv"), "path,ra,dec\na.fits,186.6,\n").unwrap();
    s.config("[catalogue]\npath = \"cat.csv\"\n[neighbours]\nmin-separation-arcsec = 5\n");
    s.build();
    let a = s.meta("a.fits");
    assert_eq!((a["ra"].as_str(), a.get("dec")), (Some("186.6"), None), "{a}");
    assert!(!s.page("a.fits").contains("<dt>Sky</dt>"), "no half position on the page");
    assert!((degrees(&s.meta("b.fits"), "ra") - 150.0).abs() < 2e-6);
    // astropy 8.0.2: `SkyCoord(201.9, 47.45, frame=FK4(equinox='B1950')).icrs`; read as
    // ICRS (the frame not inherited) it would be 0.6° away.
    let inherit = s.meta("inherit.fits");
    assert!((degrees(&inherit, "ra") - 202.42679234).abs() < 2e-6 && (degrees(&inherit, "dec") - 47.19223924).abs() < 2e-6, "{inherit}");
    // An extension's own EPOCH is its equinox: the primary's EQUINOX does not override it.
    let epoch = s.meta("inherit-epoch.fits");
    assert!((degrees(&epoch, "ra") - 202.42679234).abs() < 2e-6 && (degrees(&epoch, "dec") - 47.19223924).abs() < 2e-6, "{epoch}");
    // astropy 8.0.2: `SkyCoord(201.9, 47.45, frame=FK4(equinox='B1990')).icrs`.
    let one = s.meta("inherit-one.fits");
    assert!((degrees(&one, "ra") - 202.00578711).abs() < 2e-6 && (degrees(&one, "dec") - 47.39843011).abs() < 2e-6, "{one}");
    let (_, out, _) = run(&s.root, &["inspect", "archive/inherit.fits"]);
    assert!(out.contains("sky: 13:29:42.43 +47:11:32.1 (RA 202.426792, Dec 47.192239, degrees, ICRS)"), "{out}");

    // A filter with no position to work on says so.
    s.config("[fits]\nposition = false\n[neighbours]\nmin-separation-arcsec = 5\n");
    let (code, _, err) = run(&s.root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("min-separation-arcsec = 5 does nothing: no item has a position on the sky"), "{err}");
}

#[test]
fn a_numeric_keyword_is_coloured_by_value_not_by_how_it_is_written() {
    let s = Site::new();
    for (n, t) in ["60", "60.0", "600.", "600", "1.5E2", "6.0D+02"].iter().enumerate() {
        s.fits(&format!("e{n}.fits"), &[image(n).with("EXPTIME", V::Raw(format!("{t:>20}")))]);
    }
    s.build();
    let map: Value = serde_json::from_slice(&std::fs::read(s.root.join("out/map/map.json")).unwrap()).unwrap();
    let exptime = map["colour_by"].as_array().unwrap().iter().find(|c| c["name"] == "EXPTIME").unwrap_or_else(|| panic!("{map}"));
    assert_eq!(exptime["kind"], "category");
    assert_eq!(exptime["labels"], json!(["60", "150", "600"]), "{exptime}");
    let file = std::fs::read(s.root.join("out").join(exptime["file"].as_str().unwrap())).unwrap();
    let mut got: Vec<u16> = file.chunks(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    got.sort();
    assert_eq!(got, [0, 0, 1, 2, 2, 2], "each file's value, by value");
}

#[test]
fn eso_hierarch_keywords_are_read_from_real_files_and_from_the_decoding_child() {
    let s = Site::new();
    // ESO's ISAAC frame of the sample archive: its filters are only in HIERARCH cards.
    let isaac = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample-archive/eso-midas/isaac-psr-j1740-3052-cutout.fits");
    std::fs::copy(isaac, s.root.join("archive/isaac.fits")).unwrap();
    // A tile-compressed one, decoded in a child process, whose values come back from it.
    let fz = s.root.join("archive/rice.fits.fz");
    {
        let desc = fitsio::images::ImageDescription { data_type: fitsio::images::ImageType::Long, dimensions: &[16, 16] };
        let mut f = fitsio::FitsFile::create(format!("{}[compress R]", fz.display())).open().unwrap();
        let hdu = f.create_image("SCI", &desc).unwrap();
        hdu.write_key(&mut f, "HIERARCH ESO INS FILT1 NAME", "Ks").unwrap();
        let ints: Vec<i32> = blob(16, 16, 7.0, 7.0).iter().map(|v| *v as i32).collect();
        hdu.write_image(&mut f, &ints).unwrap();
    }
    s.config("[fits]\nkeywords = [\"OBJECT\", \"HIERARCH ESO INS FILT1 NAME\", \"HIERARCH ESO INS FILT2 NAME\"]\n");
    s.build();
    let isaac = s.meta("isaac.fits");
    assert_eq!(isaac["HIERARCH ESO INS FILT1 NAME"], "open", "{isaac}");
    assert_eq!(isaac["HIERARCH ESO INS FILT2 NAME"], "NB_2.25", "{isaac}");
    assert_eq!(isaac["OBJECT"], "PSR-J1740-3052");
    assert_eq!(s.meta("rice.fits.fz")["HIERARCH ESO INS FILT1 NAME"], "Ks");
    assert!(s.page("isaac.fits").contains("<dt>HIERARCH ESO INS FILT2 NAME</dt><dd>NB_2.25</dd>"));

    s.config("[fits]\nkeywords = [\"HIERARCH eso INS\"]\n");
    let (code, _, err) = run(&s.root, &["build"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a HIERARCH keyword; write its words in upper case"), "{err}");
}

#[test]
fn date_obs_is_shown_as_iso_8601() {
    let s = Site::new();
    // The old form (DSS plates), a date with its time apart (HST), and ISO already.
    s.fits("dss.fits", &[image(0).with("DATE-OBS", V::S("11/03/76"))]);
    s.fits("hst.fits", &[image(1).with("DATE-OBS", V::S("1998-04-20")).with("TIME-OBS", V::S("18:38:15"))]);
    s.fits("iso.fits", &[image(2).with("DATE-OBS", V::S("2020-01-02T03:04:05.5")).with("TIME-OBS", V::S("09:00:00"))]);
    s.fits("odd.fits", &[image(3).with("DATE-OBS", V::S("sometime"))]);
    s.build();
    assert_eq!(s.meta("dss.fits")["DATE-OBS"], "1976-03-11");
    assert_eq!(s.meta("hst.fits")["DATE-OBS"], "1998-04-20T18:38:15");
    assert_eq!(s.meta("iso.fits")["DATE-OBS"], "2020-01-02T03:04:05.5");
    assert_eq!(s.meta("odd.fits")["DATE-OBS"], "sometime", "anything else as written");
}
