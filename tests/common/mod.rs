//! Fixture writers for integration tests: real files in every format, written byte by byte
//! where the edge case needs control (FITS headers), through the real encoders elsewhere.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A FITS header value.
pub enum V {
    I(i64),
    F(f64),
    S(&'static str),
    B(bool),
    /// A string of any length and content, quotes doubled as FITS writes them, going on in
    /// CONTINUE cards (the long-string convention) past 60 characters.
    L(String),
    /// The value field exactly as given (a number written some way, a hostile byte).
    Raw(String),
}

/// One header card, 80 characters (several for a [`V::L`] past one card).
fn card(key: &str, v: &V) -> String {
    let value = match v {
        V::I(i) => format!("{i:>20}"),
        V::F(f) => format!("{:>20}", format!("{f:E}")),
        V::S(s) => format!("'{s:<8}'"),
        V::B(b) => format!("{:>20}", if *b { "T" } else { "F" }),
        V::Raw(r) => r.clone(),
        V::L(s) => {
            let chars: Vec<char> = s.replace('\'', "''").chars().collect();
            let chunks: Vec<String> = chars.chunks(60).map(|c| c.iter().collect()).collect();
            let last = chunks.len().saturating_sub(1);
            let mut cards = String::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let more = if i < last { "&" } else { "" };
                let c = if i == 0 { format!("{key:<8}= '{chunk}{more}'") } else { format!("CONTINUE  '{chunk}{more}'") };
                cards.push_str(&format!("{c:<80}"));
            }
            return cards;
        }
    };
    let c = format!("{key:<8}= {value}");
    format!("{c:<80}")
}

/// FITS pixel data, big-endian as the standard requires.
pub enum Data {
    U8(Vec<u8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Raw bytes (tables).
    Raw(Vec<u8>),
}

impl Data {
    fn bitpix(&self) -> i64 {
        match self {
            Data::U8(_) | Data::Raw(_) => 8,
            Data::I16(_) => 16,
            Data::I32(_) => 32,
            Data::I64(_) => 64,
            Data::F32(_) => -32,
            Data::F64(_) => -64,
        }
    }
    fn bytes(&self) -> Vec<u8> {
        match self {
            Data::U8(v) | Data::Raw(v) => v.clone(),
            Data::I16(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
            Data::F32(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
        }
    }
}

pub struct Hdu {
    /// NAXIS1 (width) first.
    pub axes: Vec<usize>,
    pub data: Option<Data>,
    pub extra: Vec<(&'static str, V)>,
    /// None for an image HDU; Some("BINTABLE") for a table.
    pub xtension: Option<&'static str>,
}

impl Hdu {
    pub fn image(axes: &[usize], data: Data) -> Hdu {
        Hdu { axes: axes.to_vec(), data: Some(data), extra: vec![], xtension: None }
    }
    pub fn empty() -> Hdu {
        Hdu { axes: vec![], data: None, extra: vec![], xtension: None }
    }
    pub fn with(mut self, key: &'static str, v: V) -> Hdu {
        self.extra.push((key, v));
        self
    }
    /// A one-column BINTABLE of `rows` floats.
    pub fn table(rows: usize) -> Hdu {
        let data: Vec<u8> = (0..rows).flat_map(|i| (i as f32).to_be_bytes()).collect();
        Hdu {
            axes: vec![4, rows],
            data: Some(Data::Raw(data)),
            extra: vec![("TFIELDS", V::I(1)), ("TTYPE1", V::S("FLUX")), ("TFORM1", V::S("1E"))],
            xtension: Some("BINTABLE"),
        }
    }
}

fn pad(buf: &mut Vec<u8>, with: u8) {
    while !buf.len().is_multiple_of(2880) {
        buf.push(with);
    }
}

/// A complete FITS file: the first HDU is primary, the others are extensions.
pub fn fits_bytes(hdus: &[Hdu]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, h) in hdus.iter().enumerate() {
        let bitpix = h.data.as_ref().map(|d| d.bitpix()).unwrap_or(8);
        let mut cards = Vec::new();
        if i == 0 {
            cards.push(card("SIMPLE", &V::B(true)));
        } else {
            let kind = h.xtension.unwrap_or("IMAGE");
            cards.push(card("XTENSION", &V::S(if kind == "IMAGE" { "IMAGE" } else { "BINTABLE" })));
        }
        cards.push(card("BITPIX", &V::I(bitpix)));
        cards.push(card("NAXIS", &V::I(h.axes.len() as i64)));
        for (k, a) in h.axes.iter().enumerate() {
            cards.push(card(&format!("NAXIS{}", k + 1), &V::I(*a as i64)));
        }
        if i == 0 {
            cards.push(card("EXTEND", &V::B(true)));
        } else {
            cards.push(card("PCOUNT", &V::I(0)));
            cards.push(card("GCOUNT", &V::I(1)));
        }
        for (k, v) in &h.extra {
            cards.push(card(k, v));
        }
        cards.push(format!("{:<80}", "END"));
        let mut header: Vec<u8> = cards.concat().into_bytes();
        pad(&mut header, b' ');
        out.extend(header);
        if let Some(d) = &h.data {
            let mut bytes = d.bytes();
            pad(&mut bytes, 0);
            out.extend(bytes);
        }
    }
    out
}

pub fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A smooth test pattern with a bright blob, so stretches have something to work on.
pub fn blob(w: usize, h: usize, cx: f32, cy: f32) -> Vec<f32> {
    let mut v = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let r2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
            v.push(10.0 + 1000.0 * (-r2 / 20.0).exp() + ((x * 7 + y * 13) % 5) as f32);
        }
    }
    v
}

pub fn png_grey16(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u16) -> PathBuf {
    let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(w, h, |x, y| image::Luma([f(x, y)]));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
    path.to_path_buf()
}

pub fn png_grey8(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> PathBuf {
    let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
    path.to_path_buf()
}

pub fn rgb8(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> PathBuf {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
    path.to_path_buf()
}

/// A minimal valid grey float32 TIFF written through the `tiff` crate.
pub fn tiff_f32(path: &Path, w: u32, h: u32, data: &[f32]) -> PathBuf {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut enc = tiff::encoder::TiffEncoder::new(&mut buf).unwrap();
        enc.write_image::<tiff::encoder::colortype::Gray32Float>(w, h, data).unwrap();
    }
    write(path, &buf.into_inner())
}

pub fn tiff_u16(path: &Path, w: u32, h: u32, data: &[u16]) -> PathBuf {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut enc = tiff::encoder::TiffEncoder::new(&mut buf).unwrap();
        enc.write_image::<tiff::encoder::colortype::Gray16>(w, h, data).unwrap();
    }
    write(path, &buf.into_inner())
}

/// A PNG whose IHDR claims `w × h` but that carries no pixel data worth the name.
pub fn png_header_only(path: &Path, w: u32, h: u32) -> PathBuf {
    let chunk = png_chunk;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // A little real pixel data, as an attacker's file would carry.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &[0u8; 4096]).unwrap();
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    write(path, &out)
}

/// Appends a PNG chunk (length, kind, data, CRC) to `out`.
pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    out.extend(kind);
    out.extend(data);
    let crc = crc32_update(crc32(kind), data);
    out.extend((!crc).to_be_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    crc32_update(0xffff_ffff, data)
}

fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    crc
}

/// Path to the built `simsite` binary.
/// A file under `tests/fixtures` (the ONNX models made by `make_models.py`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_simsite"))
}

/// Runs `simsite ARGS` in `dir`; returns (exit code, stdout, stderr).
pub fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin()).args(args).current_dir(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Reproducible test vectors: simsite's own splitmix64 stream for `seed`.
pub fn rng(seed: u64) -> simsite::rng::SplitMix {
    simsite::rng::SplitMix::new(seed, 0, 0)
}

pub fn normalise(v: &mut [f32], d: usize) {
    for row in v.chunks_mut(d) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= n);
    }
}

/// n unit vectors around `centres` clusters (item i in cluster i % centres).
pub fn clustered(n: usize, d: usize, centres: usize, seed: u64) -> Vec<f32> {
    simsite::synth::clustered_embeddings(n, d, centres, seed)
}

/// Images `from..from + n` of a small archive of 16×16 FITS blobs at distinct places, each
/// with its own noise pattern, as `root/archive/imgNNN.fits`.
pub fn blob_archive(root: &Path, n: usize, from: usize) {
    for i in from..from + n {
        let v = blob(16, 16, (i % 11) as f32 + 2.5, (i / 11 % 11) as f32 + 2.5);
        let v: Vec<f32> = v.iter().enumerate().map(|(t, x)| x + ((t * (i + 5)) % 13) as f32).collect();
        write(&root.join(format!("archive/img{i:03}.fits")), &fits_bytes(&[Hdu::image(&[16, 16], Data::F32(v))]));
    }
}

/// A text file's contents, or a panic naming it.
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
