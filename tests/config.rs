//! Config and catalogue mistakes, pinned by their exact messages (users and cron mail see
//! them verbatim), and the catalogue join.

mod common;

use std::path::Path;

use common::*;

fn setup(config: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    png_grey8(&d.path().join("a/x.png"), 8, 8, |x, _| x as u8);
    std::fs::write(d.path().join("site-config.toml"), config).unwrap();
    d
}

fn build_err(d: &Path) -> String {
    let (code, _, err) = run(d, &["build"]);
    assert_eq!(code, 1, "{err}");
    err
}

#[test]
fn unknown_key_names_the_file_line_key_valid_keys_and_fix() {
    let d = setup("[archive]\nroot = \"a\"\nfollow-links = true\n");
    let cfg = d.path().join("site-config.toml");
    assert_eq!(
        build_err(d.path()),
        format!(
            "error: invalid config {}:\nTOML parse error at line 3, column 1\n  |\n3 | follow-links = true\n  | ^^^^^^^^^^^^\nunknown field `follow-links`, expected one of `root`, `follow-symlinks`, `max-pixels`, `max-file-mb`, `decode-memory-mb`\n  fix: correct or remove that key (`simsite init` writes a config listing every key)\n",
            cfg.display()
        )
    );
}

#[test]
fn unknown_table_is_rejected() {
    let d = setup("[archive]\nroot = \"a\"\n[outptu]\ndir = \"x\"\n");
    let err = build_err(d.path());
    assert!(err.contains("unknown field `outptu`, expected one of `site`, `archive`, `catalogue`, `output`, `fits`, `preprocess`, `encoder`, `thumbnails`"), "{err}");
}

#[test]
fn wrong_values_name_the_key_the_choices_and_the_fix() {
    let d = setup("[archive]\nroot = \"a\"\n[preprocess]\nstretch = \"cubic\"\n");
    let cfg = d.path().join("site-config.toml");
    assert_eq!(
        build_err(d.path()),
        format!(
            "error: invalid config {}: key `preprocess.stretch`: `cubic` is not allowed; expected one of `linear`, `log`, `asinh`, `sqrt`, `zscale`\n  fix: edit `stretch` under [preprocess]\n",
            cfg.display()
        )
    );
    let d = setup("[archive]\nroot = \"a\"\n[preprocess]\nclip-low = 99.9\nclip-high = 50\n");
    assert_eq!(
        build_err(d.path()),
        format!(
            "error: invalid config {}: key `preprocess.clip-low`: percentiles must satisfy 0 <= clip-low < clip-high <= 100 (got clip-low = 99.9, clip-high = 50)\n  fix: edit `clip-low` under [preprocess]\n",
            d.path().join("site-config.toml").display()
        )
    );
    let d = setup("[archive]\nroot = \"a\"\n[fits]\ncube = \"mean\"\n");
    assert!(build_err(d.path()).contains("key `fits.cube`: `mean` is not allowed; expected one of `peak`, `sum`, `plane`"));
    let d = setup("[archive]\nroot = \"a\"\n[thumbnails]\nsize = 4\n");
    assert!(build_err(d.path()).contains("key `thumbnails.size`: 4 is out of range; expected 16 to 1024 pixels"));
    let d = setup("[archive]\nroot = \"a\"\n[encoder]\nmodel = \"m.onnx\"\nsize = \"big\"\n");
    assert!(build_err(d.path()).contains("invalid type: string \"big\", expected u32"));
}

#[test]
fn missing_config_and_missing_archive_setting() {
    let d = setup("");
    assert_eq!(
        run(d.path(), &["build", "--config", "nope.toml"]).2,
        format!(
            "error: config file {} does not exist\n  fix: pass the right --config path, or run `simsite init` to write a documented site-config.toml\n",
            d.path().join("nope.toml").display()
        )
    );
    assert_eq!(
        build_err(d.path()),
        "error: no archive folder given\n  fix: set `root` under [archive] in site-config.toml, or pass --archive DIR\n"
    );
}

#[test]
fn output_or_cache_inside_the_archive_is_refused() {
    let d = setup("[archive]\nroot = \"a\"\n");
    let (code, _, err) = run(d.path(), &["build", "--out", "a/site"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "error: the output folder {} is inside the archive {}\n  fix: choose an output folder outside the archive (--out DIR or [output] dir)\n",
            d.path().join("a/site").display(),
            d.path().join("a").display()
        )
    );
    let (_, _, err) = run(d.path(), &["build", "--cache", "a/.cache"]);
    assert!(err.starts_with("error: the cache folder"), "{err}");
    let (_, _, err) = run(d.path(), &["build", "--out", "."]);
    assert!(err.starts_with("error: the archive"), "{err}");
}

#[test]
fn init_writes_a_config_that_parses_and_lists_every_table() {
    let d = tempfile::tempdir().unwrap();
    let (code, _, err) = run(d.path(), &["init"]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(d.path().join("site-config.toml")).unwrap();
    // The template parses, also with its catalogue example switched on.
    simsite::config::parse_str(&text, Path::new("t.toml")).unwrap();
    let uncommented = text.replace("# [catalogue]", "[catalogue]").replace("# path = ", "path = ").replace("# join-on", "join-on");
    simsite::config::parse_str(&uncommented, Path::new("t.toml")).unwrap();
    for table in ["[site]", "[archive]", "[catalogue]", "[output]", "[fits]", "[preprocess]", "[thumbnails]"] {
        assert!(text.contains(table), "{table}");
    }
    let (code, _, err) = run(d.path(), &["init"]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists\n  fix: pass --force to replace it"), "{err}");
}

fn catalogue_site(csv: &str, table: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    png_grey8(&d.path().join("a/m51.png"), 8, 8, |x, _| x as u8);
    png_grey8(&d.path().join("a/sub/ngc1300.png"), 8, 8, |_, y| y as u8);
    std::fs::write(d.path().join("cat.csv"), csv).unwrap();
    std::fs::write(d.path().join("site-config.toml"), format!("[archive]\nroot = \"a\"\n[catalogue]\npath = \"cat.csv\"\n{table}")).unwrap();
    d
}

fn items(d: &Path) -> Vec<simsite::catalogue::Item> {
    let settings = simsite::config::load(Some(&d.join("site-config.toml")), &Default::default()).unwrap();
    let scan = simsite::scan::scan(&settings.archive, false).unwrap();
    let cat = simsite::catalogue::Catalogue::load(settings.catalogue.as_ref().unwrap()).unwrap();
    let (items, skipped, _) = simsite::catalogue::assign(scan.entries, &cat, &|_| None);
    assert!(skipped.is_empty());
    items
}

#[test]
fn catalogue_joins_by_path_with_title_link_position_and_columns() {
    let d = catalogue_site(
        "path,title,url,ra,dec,band,notes\n./m51.png,Whirlpool <M51>,https://archive.example/m51,13:29:52.7,+47:11:43,r,\nsub/ngc1300.png,NGC 1300,,49.92,-19.41,g,barred\n",
        "",
    );
    let items = items(d.path());
    assert_eq!(items.len(), 2);
    let m51 = &items[0];
    assert_eq!(m51.id, "m51.png");
    assert_eq!(m51.title, "Whirlpool <M51>");
    assert_eq!(m51.url.as_deref(), Some("https://archive.example/m51"));
    assert!((m51.ra.unwrap() - 202.4696).abs() < 1e-3);
    assert!((m51.dec.unwrap() - 47.1953).abs() < 1e-3);
    // The position stays in the metadata as the catalogue wrote it (page and JSON show it).
    let m = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    assert_eq!(m51.meta, m(&[("ra", "13:29:52.7"), ("dec", "+47:11:43"), ("band", "r")]));
    assert_eq!(items[1].id, "sub~ngc1300.png");
    assert_eq!(items[1].meta, m(&[("ra", "49.92"), ("dec", "-19.41"), ("band", "g"), ("notes", "barred")]));
}

#[test]
fn catalogue_joins_by_id_and_the_id_becomes_the_url() {
    let d = catalogue_site("id,title\nm51,M51\nngc1300,NGC 1300\nngc0001,nothing\n", "join-on = \"id\"\n");
    let items = items(d.path());
    assert_eq!(items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), vec!["m51", "ngc1300"]);
    assert_eq!(items[1].title, "NGC 1300");
}

#[test]
fn catalogue_mistakes_stop_the_build_with_the_line_and_fix() {
    let d = catalogue_site("path,title\nm51.png,a\nm51.png,b\n", "");
    let cat = d.path().join("cat.csv");
    assert_eq!(
        build_err(d.path()),
        format!("error: catalogue {}: line 3 repeats the key `m51.png` of line 2\n  fix: every row must name a different file\n", cat.display())
    );
    let d = catalogue_site("path,title\nm51.png,a,extra\n", "");
    let err = build_err(d.path());
    assert_eq!(
        err,
        format!(
            "error: catalogue {}: line 2 has 3 fields, the header has 2\n  fix: every row needs as many fields as the header; quote fields that contain commas\n",
            d.path().join("cat.csv").display()
        )
    );
    let d = catalogue_site("file,title\nm51.png,a\n", "");
    assert_eq!(
        build_err(d.path()),
        format!(
            "error: catalogue {}: no column `path` (needed by `path-column`); columns are: `file`, `title`\n  fix: set `path-column` under [catalogue] to one of those\n",
            d.path().join("cat.csv").display()
        )
    );
    let d = catalogue_site("path,name\nm51.png,a\n", "title-column = \"Title\"\n");
    assert!(build_err(d.path()).contains("no column `Title` (needed by `title-column`)"));
    let d = catalogue_site("path,title,band, title\nm51.png,a,r,b\n", "");
    assert_eq!(
        build_err(d.path()),
        format!(
            "error: catalogue {}: the header names column `title` twice (columns 2 and 4)\n  fix: give every column a different name in the first line\n",
            d.path().join("cat.csv").display()
        )
    );
}

#[test]
fn catalogue_columns_without_a_name_are_left_out_with_a_warning() {
    // What pandas' `to_csv` writes by default: the row numbers under an empty name.
    let d = catalogue_site("\u{feff},path,band\n0,m51.png,r\n1,sub/ngc1300.png,g\n", "");
    let items = items(d.path());
    assert_eq!(items[0].meta, vec![("band".to_string(), "r".to_string())]);
    let settings = simsite::config::load(Some(&d.path().join("site-config.toml")), &Default::default()).unwrap();
    let cat = simsite::catalogue::Catalogue::load(settings.catalogue.as_ref().unwrap()).unwrap();
    assert_eq!(cat.columns, vec!["band"]);
    assert_eq!(cat.warnings.len(), 1);
    assert!(cat.warnings[0].path.ends_with("cat.csv:1"), "{}", cat.warnings[0].path);
    assert_eq!(cat.warnings[0].reason, "column 1 has no name in the header; left out");
}

#[test]
fn catalogue_bad_coordinates_and_unmatched_rows_are_warnings() {
    let d = catalogue_site("path,ra,dec\nm51.png,400,north\nmissing.png,1,1\n", "");
    let (code, _, err) = run(d.path(), &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("RA `400` is not an angle in range; shown as written, not used as a position"), "{err}");
    assert!(err.contains("Dec `north` is not an angle in range; shown as written, not used as a position"), "{err}");
    assert!(err.contains("1 catalogue row(s) match no archive file (e.g. `missing.png`)"), "{err}");
}
