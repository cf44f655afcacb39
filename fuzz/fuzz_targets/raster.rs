//! The PNG, JPEG and TIFF paths, through preprocessing. The first byte picks the format the
//! file is handed to (as its extension would) and the settings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use simsite::scan::Format;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else { return };
    let format = [Format::Png, Format::Jpeg, Format::Tiff][(selector as usize >> 5) % 3];
    let s = common::settings(selector, false);
    common::ingest(file, format, &s);
});
