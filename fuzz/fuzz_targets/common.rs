//! Settings shared by the decoder targets: resolved through the real config code from a small
//! TOML text, so the fuzzed path is the one a build takes.

use std::path::Path;

use simsite::config::{self, Overrides, Settings};

/// The first input byte picks one of several settings; the rest is the file.
pub fn settings(selector: u8, fits: bool) -> Settings {
    let stretch = ["asinh", "linear", "log", "sqrt", "zscale"][selector as usize % 5];
    let channels = if selector & 0x08 == 0 { "grey" } else { "rgb" };
    let fits_part = if fits {
        let cube = ["peak", "sum", "plane"][(selector as usize >> 4) % 3];
        let hdu = if selector & 0x80 == 0 { "\"auto\"" } else { "1" };
        format!("[fits]\nhdu = {hdu}\ncube = \"{cube}\"\nplane = {}\n", selector % 3)
    } else {
        String::new()
    };
    // A small pixel limit keeps each run inside libFuzzer's memory limit; the decoders must
    // refuse bigger images from the header, before allocating.
    let text = format!(
        "[archive]\nroot = \"archive\"\nmax-pixels = 4000000\nmax-file-mb = 16\n\
         [preprocess]\nstretch = \"{stretch}\"\nstretch-8bit = \"{stretch}\"\nchannels = \"{channels}\"\n\
         [thumbnails]\nsize = 64\npreview-size = 160\n{fits_part}"
    );
    let path = Path::new("/fuzz/site-config.toml");
    let raw = config::parse_str(&text, path).expect("the fuzz settings parse");
    config::resolve(raw, Some(path.to_path_buf()), Path::new("/fuzz"), &Overrides::default())
        .expect("the fuzz settings resolve")
}

/// What a build does with a file's bytes: decode (reading the default `[fits] keywords`, and
/// for FITS the header alone as a rebuild does), stretch, make the encoder tensor, the
/// thumbnail and the preview, and encode both as JPEG.
pub fn ingest(bytes: &[u8], format: simsite::scan::Format, s: &Settings) {
    let clean = |h: &simsite::decode::Header| {
        h.iter().all(|(_, v)| !v.is_empty() && v.chars().count() <= simsite::decode::MAX_VALUE_CHARS && !v.chars().any(char::is_control))
    };
    if format == simsite::scan::Format::Fits {
        if let Ok(h) = simsite::decode::fits_header(bytes, &s.preprocess, &s.fits_keywords) {
            assert!(clean(&h.values), "header values not cleaned: {:?}", h.values);
        }
    }
    let Ok((raster, header)) = simsite::decode::decode_with_header(bytes, format, &s.preprocess, &s.fits_keywords) else { return };
    assert!(clean(&header), "header values not cleaned: {header:?}");
    assert!(raster.width > 0 && raster.height > 0);
    assert_eq!(raster.data.len(), raster.width * raster.height * raster.channels);
    let Ok(prepared) = simsite::preprocess::prepare(&raster, &s.preprocess, s.thumbs.size) else { return };
    let side = s.preprocess.size as usize;
    assert_eq!(prepared.tensor.len(), s.preprocess.model_channels as usize * side * side);
    assert!(prepared.tensor.iter().all(|v| (0.0..=1.0).contains(v)), "tensor values outside [0, 1]");
    simsite::thumbs::encode_jpeg(&prepared.thumb, s.thumbs.quality).expect("thumbnail encodes");
    let preview = simsite::preprocess::picture(&prepared.bands, &raster, s.thumbs.preview);
    simsite::thumbs::encode_jpeg(&preview, s.thumbs.quality).expect("preview encodes");
}
