//! Decoding real files of every supported kind, FITS edge cases first.

mod common;

use std::path::Path;

use common::*;
use simsite::config::{self, CubeMode, HduChoice, Overrides, PreprocessSettings, RawConfig, Stretch};
use simsite::decode::{decode, Raster};
use simsite::error::FileError;
use simsite::scan::classify;

fn settings() -> PreprocessSettings {
    let o = Overrides { archive: Some("/tmp/archive".into()), out: Some("/tmp/o".into()), cache: Some("/tmp/c".into()), ..Default::default() };
    config::resolve(RawConfig::default(), None, Path::new("/tmp"), &o).unwrap().preprocess
}

fn dec(path: &Path, s: &PreprocessSettings) -> Result<Raster, FileError> {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy();
    let (format, _) = classify(&name).expect("an image name");
    decode(&bytes, format, s)
}

fn fits(dir: &Path, name: &str, hdus: &[Hdu]) -> std::path::PathBuf {
    write(&dir.join(name), &fits_bytes(hdus))
}

#[test]
fn fits_rows_are_flipped_so_the_origin_is_bottom_left() {
    let d = tempfile::tempdir().unwrap();
    // FITS stores the bottom row first: [0, 1, 2] is the bottom of the image.
    let p = fits(d.path(), "a.fits", &[Hdu::image(&[3, 2], Data::F32(vec![0., 1., 2., 3., 4., 5.]))]);
    let r = dec(&p, &settings()).unwrap();
    assert_eq!((r.width, r.height, r.channels), (3, 2, 1));
    assert_eq!(r.data, vec![3., 4., 5., 0., 1., 2.]);
    assert!(!r.display_ready);
}

#[test]
fn fits_every_bitpix_with_bscale_bzero_and_blank() {
    let d = tempfile::tempdir().unwrap();
    let s = settings();
    let cases: Vec<(&str, Data)> = vec![
        ("u8.fits", Data::U8(vec![0, 1, 2, 255])),
        ("i16.fits", Data::I16(vec![-5, 0, 7, 30000])),
        ("i32.fits", Data::I32(vec![-5, 0, 7, 3_000_000])),
        ("i64.fits", Data::I64(vec![-5, 0, 7, 3_000_000])),
        ("f64.fits", Data::F64(vec![-5.5, 0.0, 7.25, 1e6])),
    ];
    for (name, data) in cases {
        let p = fits(d.path(), name, &[Hdu::image(&[2, 2], data)]);
        let r = dec(&p, &s).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.data.len(), 4, "{name}");
        assert!(r.data.iter().all(|v| v.is_finite()), "{name}: {:?}", r.data);
    }
    // BSCALE/BZERO are applied and BLANK pixels become NaN (masked), as CFITSIO defines.
    let p = fits(
        d.path(),
        "scaled.fits",
        &[Hdu::image(&[2, 2], Data::I16(vec![-32768, 0, 100, 200]))
            .with("BSCALE", V::F(2.0))
            .with("BZERO", V::F(1000.0))
            .with("BLANK", V::I(-32768))],
    );
    let r = dec(&p, &s).unwrap();
    assert_eq!(&r.data[..2], &[1200.0, 1400.0]);
    assert!(r.data[2].is_nan(), "BLANK must be masked: {:?}", r.data);
    assert_eq!(r.data[3], 1000.0);
    // Unsigned 16-bit, as cameras write it: BZERO = 32768.
    let p = fits(d.path(), "u16.fits", &[Hdu::image(&[2, 2], Data::I16(vec![-32768, 32767, -32768, 32767])).with("BZERO", V::I(32768))]);
    assert_eq!(dec(&p, &s).unwrap().data, vec![0.0, 65535.0, 0.0, 65535.0]);
}

/// Double-precision pixels on a pedestal far above their spread (1e9 + a ramp of 0.0 to
/// 0.2) keep their detail; float32 alone rounds them all to one value. Values beyond
/// float32's range are shown too instead of the file being skipped. An ordinary BITPIX -64
/// image is what float32 makes of it, exactly.
#[test]
fn fits_double_precision_on_a_pedestal_or_beyond_float32_keeps_its_detail() {
    let d = tempfile::tempdir().unwrap();
    let s = settings();
    let (w, h) = (20usize, 10usize);
    let ramp: Vec<f64> = (0..w * h).map(|i| ((i * 37) % (w * h)) as f64 / 1000.0).collect();
    let cases: [(&str, f64, f64); 3] = [("pedestal.fits", 1e9, 1.0), ("negative-pedestal.fits", -3e12, 1.0), ("huge.fits", 0.0, 1e40)];
    for (name, pedestal, gain) in cases {
        let v: Vec<f64> = ramp.iter().map(|r| pedestal + r * gain).collect();
        let p = fits(d.path(), name, &[Hdu::image(&[w, h], Data::F64(v))]);
        let r = dec(&p, &s).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Row 0 of the raster is the file's last row: compare each pixel with its source.
        let at = |i: usize| r.data[(h - 1 - i / w) * w + i % w];
        for i in 0..w * h {
            for j in 0..w * h {
                if ramp[i] < ramp[j] {
                    assert!(at(i) < at(j), "{name}: pixels {i} and {j} lost their order: {} vs {}", at(i), at(j));
                }
            }
        }
        let prepared = simsite::preprocess::prepare(&r, &s, 32).unwrap();
        let (lo, hi) = prepared.tensor.iter().fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(hi - lo > 0.9, "{name}: the tensor spans only {lo}..{hi}");
    }
    let v: Vec<f64> = ramp.iter().map(|r| 1000.0 + r * 1e3 + 1e-9).collect();
    let p = fits(d.path(), "ordinary.fits", &[Hdu::image(&[w, h], Data::F64(v.clone()))]);
    let r = dec(&p, &s).unwrap();
    for i in 0..w * h {
        assert_eq!(r.data[(h - 1 - i / w) * w + i % w], v[i] as f32, "pixel {i}");
    }
}

#[test]
fn fits_nan_and_inf_are_masked_but_the_image_is_used() {
    let d = tempfile::tempdir().unwrap();
    let mut v = blob(16, 16, 8.0, 8.0);
    v[0] = f32::NAN;
    v[1] = f32::INFINITY;
    let p = fits(d.path(), "nan.fits", &[Hdu::image(&[16, 16], Data::F32(v))]);
    let s = settings();
    let r = dec(&p, &s).unwrap();
    let prepared = simsite::preprocess::prepare(&r, &s, 32).unwrap();
    assert!(prepared.tensor.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
}

#[test]
fn fits_all_nan_is_refused_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let p = fits(d.path(), "nan.fits", &[Hdu::image(&[4, 4], Data::F32(vec![f32::NAN; 16]))]);
    let s = settings();
    let r = dec(&p, &s).unwrap();
    let err = simsite::preprocess::prepare(&r, &s, 32).unwrap_err();
    assert!(matches!(err, FileError::AllBlank), "{err}");
}

#[test]
fn fits_cubes_collapse_by_peak_sum_or_plane() {
    let d = tempfile::tempdir().unwrap();
    // Planes of two identical rows, given as one row each.
    let rows = |v: &[f32]| -> Vec<f32> { v.chunks(2).flat_map(|r| [r[0], r[1], r[0], r[1]]).collect() };
    // Three 2x2 planes; plane 1 has NaNs that peak and sum skip.
    let data = rows(&[1., 5., f32::NAN, 2., 3., 4.]);
    let p = fits(d.path(), "cube.fits", &[Hdu::image(&[2, 2, 3], Data::F32(data))]);
    let mut s = settings();
    assert_eq!(dec(&p, &s).unwrap().data, rows(&[3., 5.]));
    s.fits.cube = CubeMode::Sum;
    assert_eq!(dec(&p, &s).unwrap().data, rows(&[4., 11.]));
    s.fits.cube = CubeMode::Plane(2);
    assert_eq!(dec(&p, &s).unwrap().data, rows(&[3., 4.]));
    s.fits.cube = CubeMode::Plane(3);
    let e = dec(&p, &s).unwrap_err().to_string();
    assert_eq!(e, "no image data: [fits] plane = 3, but the cube has 3 plane(s)");
    // A radio cube with a polarisation axis (CTYPE4 = STOKES: I, Q, U): only I is collapsed
    // over frequency; Q and U are signed polarisation, not more of the same light.
    let iqu = rows(&[1., 2., 3., 1., 9., -9., -9., 9., 8., 8., 8., 8.]);
    let mut radio = Hdu::image(&[2, 2, 2, 3], Data::F32(iqu.clone()));
    radio.extra = vec![("CTYPE3", V::S("FREQ")), ("CTYPE4", V::S("STOKES"))];
    let radio = fits(d.path(), "radio.fits", &[radio]);
    let mut s2 = settings();
    assert_eq!(dec(&radio, &s2).unwrap().data, rows(&[3., 2.]));
    s2.fits.cube = CubeMode::Sum;
    assert_eq!(dec(&radio, &s2).unwrap().data, rows(&[4., 3.]));
    // Without the axis type, every plane is collapsed, as before.
    let plain = fits(d.path(), "plain4d.fits", &[Hdu::image(&[2, 2, 2, 3], Data::F32(iqu))]);
    assert_eq!(dec(&plain, &settings()).unwrap().data, rows(&[9., 9.]));
    // A plane asked of a 2-D image (an archive of cubes and images): the image as it is.
    let flat = fits(d.path(), "flat.fits", &[Hdu::image(&[2, 2], Data::F32(rows(&[7., 8.])))]);
    assert_eq!(dec(&flat, &s).unwrap().data, rows(&[7., 8.]));
}

#[test]
fn fits_degenerate_axes_are_dropped() {
    let d = tempfile::tempdir().unwrap();
    // A radio image: RA, Dec, one frequency, one Stokes.
    let p = fits(d.path(), "4d.fits", &[Hdu::image(&[2, 2, 1, 1], Data::F32(vec![1., 2., 3., 4.]))]);
    let r = dec(&p, &settings()).unwrap();
    assert_eq!((r.width, r.height), (2, 2));
    assert_eq!(r.data, vec![3., 4., 1., 2.]);
    // A cube with a trailing Stokes axis of 1 collapses over its real planes.
    let p = fits(d.path(), "4d-cube.fits", &[Hdu::image(&[2, 2, 3, 1], Data::F32([1., 7., 2.].iter().flat_map(|&v| [v; 4]).collect()))]);
    assert_eq!(dec(&p, &settings()).unwrap().data, vec![7.; 4]);
    // An array with a unit first axis (NAXIS1 = 1, as numpy writes an H x W x 1 array): the
    // image is in NAXIS2 and NAXIS3.
    let p = fits(d.path(), "unit-first.fits", &[Hdu::image(&[1, 2, 2], Data::F32(vec![1., 2., 3., 4.]))]);
    let r = dec(&p, &settings()).unwrap();
    assert_eq!((r.width, r.height, r.data), (2, 2, vec![3., 4., 1., 2.]));
}

/// A spectrum stored as an image (NAXIS2 = 1, IRAF's onedspec), or a few orders of one
/// (3072 x 2, 2000 x 5) is not a picture: skipped with the reason.
#[test]
fn fits_spectra_stored_as_images_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let s = settings();
    let line = fits(d.path(), "onedspec.fits", &[Hdu::image(&[3072, 1], Data::F32(vec![1.; 3072]))]);
    assert_eq!(
        dec(&line, &s).unwrap_err().to_string(),
        "no image data: 1 HDU(s), none with a 2-D image: HDU 0 has axes [3072, 1]: one axis longer than 1, a line of values (a spectrum?)"
    );
    let mut chosen = settings();
    chosen.fits.hdu = HduChoice::Index(0);
    assert_eq!(
        dec(&line, &chosen).unwrap_err().to_string(),
        "no image data: HDU 0 has axes [3072, 1]: one axis longer than 1, a line of values (a spectrum?), not a 2-D image"
    );
    let orders = fits(d.path(), "orders.fits", &[Hdu::image(&[2000, 5], Data::F32(vec![1.; 10000]))]);
    assert_eq!(dec(&orders, &s).unwrap_err().to_string(), "no image data: HDU 0 is 2000 x 5 pixels: a strip (a spectrum, or orders of one), not a picture");
    // A small image is not a strip.
    let small = fits(d.path(), "small.fits", &[Hdu::image(&[6, 7], Data::F32((0..42).map(|i| i as f32).collect()))]);
    assert!(dec(&small, &s).is_ok());
    // In a file whose primary HDU holds a spectrum and an extension an image, the image.
    let both = fits(
        d.path(),
        "both.fits",
        &[Hdu::image(&[500, 1], Data::F32(vec![1.; 500])), Hdu::image(&[2, 2], Data::F32(vec![1., 2., 3., 4.])).with("EXTNAME", V::S("SCI"))],
    );
    assert_eq!(dec(&both, &s).unwrap().data, vec![3., 4., 1., 2.]);
}

#[test]
fn fits_image_in_an_extension_found_automatically_or_by_name() {
    let d = tempfile::tempdir().unwrap();
    let hdus = [
        Hdu::empty(),
        Hdu::table(3).with("EXTNAME", V::S("CAT")),
        Hdu::image(&[2, 2], Data::F32(vec![1., 2., 1., 2.])).with("EXTNAME", V::S("SCI")),
        Hdu::image(&[2, 2], Data::F32(vec![9.; 4])).with("EXTNAME", V::S("ERR")),
    ];
    let p = fits(d.path(), "ext.fits", &hdus);
    let mut s = settings();
    assert_eq!(dec(&p, &s).unwrap().data, vec![1., 2., 1., 2.]);
    s.fits.hdu = HduChoice::Name("ERR".into());
    assert_eq!(dec(&p, &s).unwrap().data, vec![9.; 4]);
    s.fits.hdu = HduChoice::Index(3);
    assert_eq!(dec(&p, &s).unwrap().data, vec![9.; 4]);
    s.fits.hdu = HduChoice::Index(1);
    assert_eq!(dec(&p, &s).unwrap_err().to_string(), "no image data: HDU 1 is a table, not an image");
    s.fits.hdu = HduChoice::Name("DQ".into());
    assert_eq!(
        dec(&p, &s).unwrap_err().to_string(),
        "no image data: no HDU named `DQ` (EXTNAME); set [fits] hdu to one that exists, or to \"auto\""
    );
}

#[test]
fn fits_table_only_and_text_and_truncated_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let s = settings();
    let p = fits(d.path(), "table.fits", &[Hdu::empty(), Hdu::table(10)]);
    assert_eq!(
        dec(&p, &s).unwrap_err().to_string(),
        "no image data: 2 HDU(s), only tables and empty images; nothing to show"
    );
    let p = write(&d.path().join("text.fits"), b"this is not FITS at all\n");
    assert_eq!(dec(&p, &s).unwrap_err().to_string(), "not a valid FITS file: does not start with a SIMPLE card");
    let full = fits_bytes(&[Hdu::image(&[100, 100], Data::F32(vec![1.0; 10000]))]);
    let p = write(&d.path().join("truncated.fits"), &full[..2880 + 5000]);
    assert_eq!(
        dec(&p, &s).unwrap_err().to_string(),
        "not a valid FITS file: truncated: its headers declare 42880 bytes up to the end of the image data, the file has 7880"
    );
    // Cut anywhere, a multi-HDU file fails cleanly (or decodes, when the image survived).
    let full = fits_bytes(&[
        Hdu::empty(),
        Hdu::table(100),
        Hdu::image(&[50, 50], Data::I16(vec![7; 2500])).with("EXTNAME", V::S("SCI")),
    ]);
    for cut in (0..full.len()).step_by(997) {
        let p = write(&d.path().join(format!("cut{cut}.fits")), &full[..cut]);
        match dec(&p, &s) {
            Ok(r) => assert!(r.data.iter().all(|v| *v == 7.0), "cut {cut}"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // Missing final padding is tolerated: the data itself is complete.
    let p = write(&d.path().join("unpadded.fits"), &full[..full.len() - (5760 - 5000)]);
    assert_eq!(dec(&p, &s).unwrap().data, vec![7.0; 2500]);
}

#[test]
fn fits_header_claiming_a_huge_image_is_refused_before_reading() {
    let d = tempfile::tempdir().unwrap();
    let mut h = Hdu::image(&[100_000, 100_000], Data::F32(vec![]));
    h.data = None;
    let p = fits(d.path(), "huge.fits", &[h]);
    let e = dec(&p, &settings()).unwrap_err().to_string();
    assert_eq!(
        e,
        "image is 100000x100000 = 10000000000 pixels, over the limit of 100000000 (raise [archive] max-pixels)"
    );
}

#[test]
fn fits_gzip_and_tile_compressed() {
    let d = tempfile::tempdir().unwrap();
    let s = settings();
    let v = blob(20, 10, 5.0, 5.0);
    let raw = fits_bytes(&[Hdu::image(&[20, 10], Data::F32(v.clone()))]);
    let plain = fits(d.path(), "p.fits", &[Hdu::image(&[20, 10], Data::F32(v.clone()))]);
    let gz = write(&d.path().join("p.fits.gz"), &gzip(&raw));
    assert_eq!(dec(&plain, &s).unwrap().data, dec(&gz, &s).unwrap().data);
    // Two members (`cat a.gz b.gz`), and zeros padding the end (a tape's block, a transfer's
    // record): read as gzip reads them.
    let (head, tail) = raw.split_at(2880);
    let mut two = gzip(head);
    two.extend(gzip(tail));
    two.extend([0u8; 512]);
    let padded = write(&d.path().join("padded.fits.gz"), &two);
    assert_eq!(dec(&plain, &s).unwrap().data, dec(&padded, &s).unwrap().data);
    // A damaged stream is still refused.
    let mut cut = gzip(&raw);
    cut.truncate(cut.len() - 12);
    let cut = write(&d.path().join("cut.fits.gz"), &cut);
    assert!(dec(&cut, &s).unwrap_err().to_string().starts_with("not a valid gzip-compressed FITS file"));

    // A Rice tile-compressed image written by CFITSIO itself.
    let fz = d.path().join("q.fits.fz");
    {
        let desc = fitsio::images::ImageDescription { data_type: fitsio::images::ImageType::Long, dimensions: &[10, 20] };
        let mut f = fitsio::FitsFile::create(format!("{}[compress R]", fz.display())).open().unwrap();
        let hdu = f.create_image("SCI", &desc).unwrap();
        let ints: Vec<i32> = v.iter().map(|x| *x as i32).collect();
        hdu.write_image(&mut f, &ints).unwrap();
    }
    let r = dec(&fz, &s).unwrap();
    let expect: Vec<f32> = dec(&plain, &s).unwrap().data.iter().map(|x| (*x as i32) as f32).collect();
    assert_eq!(r.data, expect);
}

#[test]
fn gzip_bomb_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let raw = fits_bytes(&[Hdu::image(&[1000, 1000], Data::F32(vec![0.0; 1_000_000]))]);
    let p = write(&d.path().join("bomb.fits.gz"), &gzip(&raw));
    let mut s = settings();
    s.max_file_bytes = 100_000;
    let e = dec(&p, &s).unwrap_err().to_string();
    assert_eq!(e, "gzip stream inflates to more than the 100000-byte limit (raise [archive] max-file-mb)");
}

#[test]
fn png_16_bit_keeps_its_dynamic_range() {
    let d = tempfile::tempdir().unwrap();
    let p = png_grey16(&d.path().join("a.png"), 4, 2, |x, y| (x * 15000 + y * 1000) as u16);
    let r = dec(&p, &settings()).unwrap();
    assert_eq!(r.channels, 1);
    assert!(!r.display_ready);
    assert_eq!(r.data.iter().cloned().fold(0.0, f32::max), 46000.0);
    assert_eq!(r.data[1], 15000.0);
}

#[test]
fn png_8_bit_grey_and_colour_and_jpeg() {
    let d = tempfile::tempdir().unwrap();
    let s = settings();
    let p = png_grey8(&d.path().join("g.png"), 3, 3, |x, _| (x * 100) as u8);
    let r = dec(&p, &s).unwrap();
    assert_eq!((r.channels, r.display_ready), (1, true));
    assert_eq!(&r.data[..3], &[0., 100., 200.]);
    let p = rgb8(&d.path().join("c.png"), 2, 1, |x, _| if x == 0 { [255, 0, 0] } else { [0, 0, 255] });
    let r = dec(&p, &s).unwrap();
    assert_eq!(r.channels, 3);
    assert_eq!(r.plane(0), &[255., 0.]);
    assert_eq!(r.plane(2), &[0., 255.]);
    let p = rgb8(&d.path().join("c.jpg"), 16, 16, |x, y| [(x * 16) as u8, (y * 16) as u8, 128]);
    let r = dec(&p, &s).unwrap();
    assert_eq!((r.width, r.height, r.channels), (16, 16, 3));
    assert!((r.plane(2)[0] - 128.0).abs() < 8.0);
}

#[test]
fn tiff_float_and_16_bit() {
    let d = tempfile::tempdir().unwrap();
    let s = settings();
    let v = vec![-1.5f32, 0.0, 2.25, 1e5];
    let p = tiff_f32(&d.path().join("f.tif"), 2, 2, &v);
    let r = dec(&p, &s).unwrap();
    assert_eq!((r.channels, r.display_ready), (1, false));
    assert_eq!(r.data, v);
    let p = tiff_u16(&d.path().join("u.TIFF"), 2, 1, &[0, 65535]);
    assert_eq!(dec(&p, &s).unwrap().data, vec![0.0, 65535.0]);
}

#[test]
fn broken_raster_files_are_refused_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let s = settings();
    let p = png_header_only(&d.path().join("huge.png"), 100_000, 100_000);
    assert_eq!(
        dec(&p, &s).unwrap_err().to_string(),
        "image is 100000x100000 = 10000000000 pixels, over the limit of 100000000 (raise [archive] max-pixels)"
    );
    let good = png_grey8(&d.path().join("ok.png"), 64, 64, |x, y| (x ^ y) as u8);
    let bytes = std::fs::read(&good).unwrap();
    let p = write(&d.path().join("cut.png"), &bytes[..bytes.len() / 2]);
    assert!(dec(&p, &s).unwrap_err().to_string().starts_with("not a valid PNG file"));
    let j = rgb8(&d.path().join("ok.jpg"), 64, 64, |x, y| [x as u8, y as u8, 0]);
    let bytes = std::fs::read(&j).unwrap();
    let p = write(&d.path().join("cut.jpg"), &bytes[..bytes.len() / 3]);
    assert!(dec(&p, &s).unwrap_err().to_string().starts_with("not a valid JPEG file"), "truncated JPEG must fail");
    // Cut inside the image data, where the decoder would fill the rest with grey.
    let j = rgb8(&d.path().join("big.jpg"), 256, 256, |x, y| [(x * y % 251) as u8, (x ^ y) as u8, (x + 3 * y) as u8]);
    let bytes = std::fs::read(&j).unwrap();
    for part in [0.5, 0.9, 0.99] {
        let p = write(&d.path().join("cut-late.jpg"), &bytes[..(bytes.len() as f64 * part) as usize]);
        assert_eq!(
            dec(&p, &s).unwrap_err().to_string(),
            "not a valid JPEG file: truncated: its image data has no end (no end-of-image marker)",
            "cut at {part}"
        );
    }
    // Bytes after the end (some cameras append data) are no reason to refuse a file.
    let mut padded = bytes.clone();
    padded.extend_from_slice(b"trailing data");
    let p = write(&d.path().join("padded.jpg"), &padded);
    assert!(dec(&p, &s).is_ok());
    let noise: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let p = write(&d.path().join("noise.jpg"), &noise);
    assert!(dec(&p, &s).unwrap_err().to_string().starts_with("not a valid JPEG file"));
    let p = write(&d.path().join("empty.png"), b"");
    assert_eq!(dec(&p, &s).unwrap_err().to_string(), "empty file");
}

/// Found by fuzzing (`fuzz/`, target `fits`): values near f32's limits made the clip range
/// overflow to infinity and the stretched pixels NaN, which the encoder would have turned
/// into a NaN embedding.
#[test]
fn values_near_the_float_limits_stretch_to_finite_pixels() {
    let d = tempfile::tempdir().unwrap();
    let data: Vec<f32> = (0..120).map(|i| if i % 2 == 0 { 2.6e38 } else { -2.6e38 } * (i as f32 / 120.0)).collect();
    let p = fits(d.path(), "extreme.fits", &[Hdu::image(&[10, 12], Data::F32(data))]);
    for stretch in [Stretch::Linear, Stretch::Asinh, Stretch::Log, Stretch::Sqrt, Stretch::Zscale] {
        let mut s = settings();
        s.stretch = stretch;
        let r = dec(&p, &s).unwrap();
        let prepared = simsite::preprocess::prepare(&r, &s, 64).unwrap();
        assert!(prepared.tensor.iter().all(|v| (0.0..=1.0).contains(v)), "{stretch:?}: a tensor value outside [0, 1]");
        assert!(prepared.tensor.iter().any(|&v| v > 0.0), "{stretch:?}: all black");
    }
}

#[test]
fn a_jpeg_turned_by_its_exif_orientation_is_shown_upright() {
    use image::ImageEncoder;
    let d = tempfile::tempdir().unwrap();
    // Stored 4 wide and 2 high, bright in its first stored column; orientation 6 ("turn 90°
    // clockwise to view") makes it 2 wide and 4 high, bright along the top row.
    let stored: Vec<u8> = (0..2).flat_map(|_| (0..4).map(|x| if x == 0 { 250u8 } else { 10 })).collect();
    let mut exif = b"II*\x00\x08\x00\x00\x00\x01\x00".to_vec();
    exif.extend([0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    let mut bytes = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 100);
    enc.set_exif_metadata(exif).unwrap();
    enc.write_image(&stored, 4, 2, image::ExtendedColorType::L8).unwrap();
    let p = write(&d.path().join("phone.jpg"), &bytes);
    let r = dec(&p, &settings()).unwrap();
    assert_eq!((r.width, r.height), (2, 4));
    assert!(r.data[0] > 200.0 && r.data[1] > 200.0, "{:?}", r.data);
    assert!(r.data[2..].iter().all(|&v| v < 60.0), "{:?}", r.data);
}

#[test]
fn a_tiff_is_shown_as_its_orientation_tag_says() {
    let d = tempfile::tempdir().unwrap();
    // Stored 3 wide and 2 high, bright at its first stored pixel; where that pixel is seen
    // (as an index into the upright view) for each orientation.
    let stored: Vec<u8> = vec![250, 10, 10, 10, 10, 10];
    for (o, (w, h), bright_at) in [(1u16, (3, 2), 0usize), (4, (3, 2), 3), (3, (3, 2), 5), (6, (2, 3), 1), (8, (2, 3), 4)] {
        let mut bytes = Vec::new();
        {
            let mut t = tiff::encoder::TiffEncoder::new(std::io::Cursor::new(&mut bytes)).unwrap();
            let mut img = t.new_image::<tiff::encoder::colortype::Gray8>(3, 2).unwrap();
            img.encoder().write_tag(tiff::tags::Tag::Orientation, o).unwrap();
            img.write_data(&stored).unwrap();
        }
        let p = write(&d.path().join(format!("o{o}.tif")), &bytes);
        let r = dec(&p, &settings()).unwrap();
        assert_eq!((r.width, r.height), (w, h), "orientation {o}");
        let at = r.data.iter().position(|&v| v > 200.0).unwrap();
        assert_eq!(at, bright_at, "orientation {o}: {:?}", r.data);
    }
}
