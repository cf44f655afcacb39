//! The catalogue CSV: parsing, then joining to archive files, the ids and titles it gives.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use simsite::catalogue::{self, Catalogue};
use simsite::config::{self, Overrides};
use simsite::scan::{Format, ScanEntry};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, csv)) = data.split_first() else { return };
    let join = if selector & 1 == 0 { "path" } else { "id" };
    let text = format!(
        "[archive]\nroot = \"archive\"\n[catalogue]\npath = \"cat.csv\"\njoin-on = \"{join}\"\n\
         id-column = \"id\"\npath-column = \"path\"\ntitle-column = \"title\"\nra-column = \"ra\"\ndec-column = \"dec\"\n"
    );
    let path = Path::new("/fuzz/site-config.toml");
    let raw = config::parse_str(&text, path).expect("parses");
    let s = config::resolve(raw, Some(path.to_path_buf()), Path::new("/fuzz"), &Overrides::default()).expect("resolves");
    let Ok(cat) = Catalogue::from_reader(csv, s.catalogue.as_ref().expect("set")) else { return };
    let entry = |rel: &str| ScanEntry {
        rel: PathBuf::from(rel),
        rel_str: rel.to_string(),
        abs: Path::new("/fuzz/archive").join(rel),
        format: Format::Png,
        stem: rel.rsplit('/').next().unwrap_or(rel).trim_end_matches(".png").to_string(),
        size: 1,
    };
    let entries = vec![entry("a.png"), entry("b/c.png"), entry("x.png"), entry("d e.png")];
    let (items, _skipped, _warnings) = catalogue::assign(entries, &cat, &|_: &str| None);
    let mut seen = std::collections::HashSet::new();
    for it in &items {
        // Ids are safe as one path component and one URL segment, and unique.
        let id = it.id.as_str();
        assert!(!id.is_empty() && id != "." && id != ".." && id.len() <= simsite::ids::MAX_ID_LEN, "bad id {id:?}");
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)), "bad id {id:?}");
        assert!(seen.insert(id), "duplicate id {id:?}");
    }
});
