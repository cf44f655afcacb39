//! The FITS path (CFITSIO from memory, `.gz` inflated first), through preprocessing.
//! As in the `simsite` binary, tile-compressed images are decoded by a child process: set
//! SIMSITE_BIN to a built `simsite` (fuzz/run.sh does), else such inputs are skipped here.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    static ISOLATED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let isolated = *ISOLATED.get_or_init(|| match std::env::var_os("SIMSITE_BIN") {
        Some(bin) => {
            simsite::decode::isolate_compressed_with(bin.into());
            true
        }
        None => false,
    });
    let Some((&selector, file)) = data.split_first() else { return };
    if !isolated && simsite::decode::is_tile_compressed(file) {
        return;
    }
    let s = common::settings(selector, true);
    common::ingest(file, simsite::scan::Format::Fits, &s);
});
