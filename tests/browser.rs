//! The site in a real browser: headless Chromium (Debian's chromium and chromium-driver,
//! driven by tests/browser/site_test.py through Selenium) opens the map of a fixture site
//! served by `simsite serve` on loopback, sees every point drawn and no console error,
//! clicks a point, lands on its item page and finds its neighbours listed; its search finds
//! an item by the object name in its FITS header.

mod common;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;

fn python() -> PathBuf {
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let venv = std::env::var("SIMSITE_PY_VENV").map(PathBuf::from).unwrap_or(home.join(".cache/simsite/py-venv"));
    venv.join("bin/python")
}

/// Kills the server when the test ends, pass or fail.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn the_map_draws_every_point_and_a_click_opens_an_item_page_with_its_neighbours() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 60, 0);
    // One named by its header: the map's search finds it by that name.
    let named = Hdu::image(&[16, 16], Data::F32(blob(16, 16, 8.0, 8.0))).with("OBJECT", V::S("NGC 4414"));
    write(&root.join("archive/named.fits"), &fits_bytes(&[named]));
    std::fs::write(
        root.join("site-config.toml"),
        format!("[archive]\nroot = \"archive\"\n[output]\ndir = \"out\"\ncache = \"cache\"\n[encoder]\nmodel = \"{}\"\n", fixture("tiny-meta.onnx").display()),
    )
    .unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    // Two more images, as a nightly build finds them: the map's tile keeps its atlas and
    // gets one of the additions, which the browser draws over it.
    blob_archive(root, 2, 60);
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let map: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("out/map/map.json")).unwrap()).unwrap();
    assert!(map["tiles"].as_array().unwrap().iter().any(|t| t[6].as_u64() < t[5].as_u64()), "no tile has an atlas of additions: {map}");

    let mut child = Command::new(bin()).args(["serve", "--port", "0"]).current_dir(root).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let _server = Server(child);
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();

    let shots = std::env::var("SIMSITE_SCREENSHOTS").unwrap_or_else(|_| root.join("shots").display().to_string());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/site_test.py");
    let out = Command::new(python()).arg(&script).arg(&url).env("SCREENSHOT_DIR", &shots).output().unwrap_or_else(|e| {
        panic!("cannot run {}: {e}\n  fix: run scripts/setup.sh (it installs chromium, chromium-driver and selenium)", python().display())
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test failed:\n{text}\n  (chromium, chromium-driver and selenium come from scripts/setup.sh)");
    assert!(text.contains("0 failed"), "{text}");
    assert!(PathBuf::from(&shots).join("map.png").is_file() && PathBuf::from(&shots).join("item.png").is_file());
}
