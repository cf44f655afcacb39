//! The config parser and resolver: any text gives settings or an error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use simsite::config::{self, Overrides};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/fuzz/site-config.toml");
    let Ok(raw) = config::parse_str(text, path) else { return };
    if let Ok(s) = config::resolve(raw, Some(path.to_path_buf()), Path::new("/fuzz"), &Overrides::default()) {
        // Resolved settings are usable: their digests (cache keys) can be taken.
        let _ = s.preprocess.digest();
    }
});
