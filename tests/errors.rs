//! Every user mistake we could think of gets a message that names the problem and the fix,
//! checked here by its exact text (the temporary folder shown as ROOT), with exit code 1
//! and nothing written to the output.

mod common;

use std::path::Path;

use common::*;

/// Runs `simsite build` in `root` with `args`; returns its stderr from the `error:` line on,
/// with `root` written as ROOT.
fn error_of(root: &Path, args: &[&str]) -> String {
    let mut all = vec!["--quiet", "build"];
    all.extend_from_slice(args);
    let (code, _, err) = run(root, &all);
    assert_eq!(code, 1, "{args:?}: {err}");
    let at = err.find("error: ").unwrap_or_else(|| panic!("{args:?}: no error line in {err}"));
    err[at..].replace(&root.display().to_string(), "ROOT").trim_end().to_string()
}

fn config(root: &Path, name: &str, text: &str) {
    std::fs::write(root.join(name), text).unwrap();
}

#[test]
fn each_mistake_names_the_problem_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 3, 0);
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::write(root.join("empty/notes.txt"), "no images yet").unwrap();
    let tiny = fixture("tiny-meta.onnx").display().to_string();
    let rank3 = fixture("tiny-rank3.onnx").display().to_string();

    let cases: Vec<(&str, Vec<&str>, String)> = vec![
        (
            "missing archive",
            vec!["--archive", "nope", "--out", "out"],
            "error: archive folder ROOT/nope does not exist\n  fix: check [archive] root in the config or the --archive path".into(),
        ),
        (
            "empty archive",
            vec!["--archive", "empty", "--out", "out"],
            "error: the archive ROOT/empty holds no image files (.fits/.fit/.fts[.gz|.fz], .png, .jpg/.jpeg, .tif/.tiff)\n  fix: point [archive] root or --archive at the folder with the images".into(),
        ),
        (
            "output inside the archive",
            vec!["--archive", "archive", "--out", "archive/site"],
            "error: the output folder ROOT/archive/site is inside the archive ROOT/archive\n  fix: choose an output folder outside the archive (--out DIR or [output] dir)".into(),
        ),
        (
            "unknown config key",
            vec!["--config", "unknown-key.toml"],
            "error: invalid config ROOT/unknown-key.toml:\nTOML parse error at line 3, column 1\n  |\n3 | bogus = 1\n  | ^^^^^\nunknown field `bogus`, expected one of `root`, `follow-symlinks`, `max-pixels`, `max-file-mb`, `decode-memory-mb`\n  fix: correct or remove that key (`simsite init` writes a config listing every key)".into(),
        ),
        (
            "a value out of range",
            vec!["--config", "bad-k.toml"],
            "error: invalid config ROOT/bad-k.toml: key `neighbours.k`: must be at least 1 (neighbours stored per item; 50 by default)\n  fix: edit `k` under [neighbours]".into(),
        ),
        (
            "missing model",
            vec!["--config", "no-model.toml"],
            "error: cannot read the model ROOT/models/none.onnx: No such file or directory (os error 2)\n  fix: check `model` under [encoder]".into(),
        ),
        (
            "a model of the wrong shape",
            vec!["--config", "rank3.toml"],
            format!("error: the model {rank3} does not fit: input `pixels` has rank 3 ([-1, 16, 16]); simsite feeds NCHW images (rank 4: batch, channels, height, width)\n  fix: export the model with a [batch, channels, height, width] input (an Unsqueeze at the input makes one of a [batch, height, width] input)"),
        ),
        (
            "no ONNX Runtime library where the config says",
            vec!["--config", "no-ort.toml"],
            "error: ONNX Runtime 1.31.1 (libonnxruntime.so) could not be loaded: `onnxruntime` under [encoder] names ROOT/lib/libonnxruntime.so, which is not a file\n  fix: run `make setup` (or `bash scripts/setup.sh`), which unpacks it from the onnxruntime==1.31.1 wheel on PyPI; or set `onnxruntime` under [encoder] or ORT_DYLIB_PATH to the library".into(),
        ),
        (
            "a config file that is not there",
            vec!["--config", "absent.toml"],
            "error: config file ROOT/absent.toml does not exist\n  fix: pass the right --config path, or run `simsite init` to write a documented site-config.toml".into(),
        ),
        (
            "the archive inside the cache folder, which a build prunes",
            vec!["--archive", "work/cache/embeddings/archive", "--cache", "work/cache", "--out", "out"],
            "error: the archive ROOT/work/cache/embeddings/archive is inside the cache folder ROOT/work/cache, which simsite prunes\n  fix: choose a cache folder that does not contain the archive (--cache DIR or [output] cache)".into(),
        ),
        (
            "the cache folder is the output folder",
            vec!["--archive", "archive", "--cache", "out", "--out", "out"],
            "error: the cache folder ROOT/out is the output folder ROOT/out or inside it, which each build replaces\n  fix: choose a cache folder beside the output folder, not in it (--cache DIR or [output] cache)".into(),
        ),
        (
            "the output inside the archive through a symbolic link",
            vec!["--archive", "archive", "--out", "linked/site"],
            "error: the output folder ROOT/linked/site is inside the archive ROOT/archive\n  fix: choose an output folder outside the archive (--out DIR or [output] dir)".into(),
        ),
        (
            "a cache folder holding someone else's files",
            vec!["--archive", "archive", "--cache", "data", "--out", "out"],
            "error: the cache folder ROOT/data holds files simsite did not make (`embeddings`, `neighbours.bin`) and no CACHEDIR.TAG\n  fix: point [output] cache / --cache at a new or empty folder (simsite deletes what it does not need in its cache folder)".into(),
        ),
        (
            "an output folder simsite did not build",
            vec!["--archive", "archive", "--out", "photos"],
            "error: ROOT/photos is a folder simsite did not build (no index.html with api/manifest.json or thumbs/); simsite will not replace it\n  fix: choose another --out, or move the folder away".into(),
        ),
        (
            "a normalisation that is not a number",
            vec!["--config", "nan-mean.toml"],
            "error: invalid config ROOT/nan-mean.toml: key `encoder.mean`: NaN is not a finite number; give finite values, one per channel or one for all\n  fix: edit `mean` under [encoder]".into(),
        ),
        (
            "markup in the site's base URL",
            vec!["--config", "base-url.toml"],
            "error: invalid config ROOT/base-url.toml: key `site.base-url`: `https://example.org/\"><script>` holds '\"', which a URL cannot hold; percent-encode it (e.g. %20 for a space)\n  fix: edit `base-url` under [site]".into(),
        ),
        (
            "a colouring by a column there is not",
            vec!["--config", "colour-by.toml"],
            "error: invalid config ROOT/colour-by.toml: key `site.colour-by`: `magnitude` is not one of the catalogue's columns shown (`type`) nor of the [fits] keywords (`OBJECT`, `DATE-OBS`, `TELESCOP`, `INSTRUME`, `FILTER`, `FILTER1`, `FILTER2`, `EXPTIME`)\n  fix: edit `colour-by` under [site]".into(),
        ),
        (
            "a FITS keyword in lower case",
            vec!["--config", "keywords.toml"],
            "error: invalid config ROOT/keywords.toml: key `fits.keywords`: `date-obs` is in lower case; FITS headers write keywords in upper case: write `DATE-OBS`\n  fix: edit `keywords` under [fits]".into(),
        ),
        (
            "a percentile over 100",
            vec!["--config", "clip-high.toml"],
            "error: invalid config ROOT/clip-high.toml: key `preprocess.clip-high`: percentiles must satisfy 0 <= clip-low < clip-high <= 100 (got clip-high = 101)\n  fix: edit `clip-high` under [preprocess]".into(),
        ),
        (
            "more neighbours than a number holds",
            vec!["--config", "huge-k.toml"],
            "error: invalid config ROOT/huge-k.toml: key `neighbours.k`: 18446744073709551615 is over the most simsite stores, 1000 per item (50 by default)\n  fix: edit `k` under [neighbours]".into(),
        ),
        (
            "a catalogue saved with CR LF line ends that names a file twice",
            vec!["--config", "crlf.toml"],
            "error: catalogue ROOT/crlf.csv: line 4 repeats the key `img000.fits` of line 2\n  fix: every row must name a different file".into(),
        ),
    ];
    write(&root.join("crlf.csv"), b"path,title\r\nimg000.fits,a\r\nimg001.fits,b\r\nimg000.fits,c\r\n");
    config(root, "crlf.toml", "[archive]\nroot = \"archive\"\n[catalogue]\npath = \"crlf.csv\"\n");
    config(root, "base-url.toml", "[archive]\nroot = \"archive\"\n[site]\nbase-url = \"https://example.org/\\\"><script>\"\n");
    write(&root.join("cat.csv"), b"path,type\nimg000.fits,spiral\n");
    config(root, "colour-by.toml", "[archive]\nroot = \"archive\"\n[catalogue]\npath = \"cat.csv\"\n[site]\ncolour-by = [\"magnitude\"]\n");
    config(root, "keywords.toml", "[archive]\nroot = \"archive\"\n[fits]\nkeywords = [\"OBJECT\", \"date-obs\"]\n");
    config(root, "clip-high.toml", "[archive]\nroot = \"archive\"\n[preprocess]\nclip-high = 101\n");
    config(root, "huge-k.toml", "[archive]\nroot = \"archive\"\n[neighbours]\nk = 18446744073709551615\n");
    std::os::unix::fs::symlink("archive", root.join("linked")).unwrap();
    write(&root.join("work/cache/embeddings/archive/img000.fits"), &std::fs::read(root.join("archive/img000.fits")).unwrap());
    write(&root.join("data/embeddings/project/results.npy"), b"someone's results");
    write(&root.join("data/neighbours.bin"), b"someone's neighbours");
    write(&root.join("photos/thesis.txt"), b"a thesis");
    std::fs::create_dir(root.join("photos/thumbs")).unwrap();
    config(root, "nan-mean.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{tiny}\"\nmean = [nan]\n"));
    config(root, "unknown-key.toml", "[archive]\nroot = \"archive\"\nbogus = 1\n");
    config(root, "bad-k.toml", "[archive]\nroot = \"archive\"\n[neighbours]\nk = 0\n");
    config(root, "no-model.toml", "[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"models/none.onnx\"\n");
    config(root, "rank3.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{rank3}\"\n"));
    config(root, "no-ort.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{tiny}\"\nonnxruntime = \"lib/libonnxruntime.so\"\n"));

    let before = listing(root);
    let mut wrong = Vec::new();
    for (what, args, want) in &cases {
        let got = error_of(root, args);
        if &got != want {
            wrong.push(format!("{what}:\n--- got\n{got}\n--- wanted\n{want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    // No mistake left anything behind (no output, lock, staging or cache folder), and
    // nobody's files were touched.
    assert_eq!(listing(root), before);
}

/// Every path under `root` with its size (folders: 0), sorted.
fn listing(root: &Path) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| (e.path().strip_prefix(root).unwrap().display().to_string(), if e.file_type().is_file() { e.metadata().unwrap().len() } else { 0 }))
        .collect();
    all.sort();
    all
}

#[test]
fn an_unwritable_output_or_cache_stops_before_any_work_naming_the_folder_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 3, 0);
    std::fs::create_dir(root.join("ro")).unwrap();
    // A read-only file system, mounted in a user and mount namespace of the test's own (as
    // root, permission bits would not stop a write; a read-only mount stops everyone).
    let script = format!(
        r#"mount -t tmpfs -o size=4m tmpfs ro && mkdir ro/site && mount -o remount,ro ro || exit 90
{bin} --quiet build --archive archive --out ro/site --cache cache 2> out-in-ro.txt; echo $? >> codes
{bin} --quiet build --archive archive --out ro/new/site --cache cache 2> out-under-ro.txt; echo $? >> codes
{bin} --quiet build --archive archive --out site --cache ro/cache 2> cache-in-ro.txt; echo $? >> codes
"#,
        bin = bin().display()
    );
    std::fs::write(root.join("run.sh"), script).unwrap();
    let status = std::process::Command::new("unshare").args(["-rm", "bash", "run.sh"]).current_dir(root).status().expect("unshare (util-linux)");
    assert_ne!(status.code(), Some(90), "the test could not mount a read-only tmpfs: it needs `unshare -rm` (user namespaces)");
    assert_eq!(read(&root.join("codes")), "1\n1\n1\n");
    let got = |name: &str| read(&root.join(name)).replace(&root.display().to_string(), "ROOT").trim_end().to_string();
    assert_eq!(
        got("out-in-ro.txt"),
        "error: cannot open the lock file ROOT/ro/.site.lock: Read-only file system (os error 30)\n  fix: check that ROOT/ro is writable"
    );
    assert_eq!(
        got("out-under-ro.txt"),
        "error: cannot create ROOT/ro/new: Read-only file system (os error 30)\n  fix: check --out / [output] dir and its permissions"
    );
    assert_eq!(
        got("cache-in-ro.txt"),
        "error: cannot write into the cache folder ROOT/ro/cache: Read-only file system (os error 30)\n  fix: make the cache folder writable (owner, permissions, a read-only mount), or point [output] cache / --cache elsewhere"
    );
    // Nothing was decoded into a cache, and no site appeared anywhere.
    assert!(!root.join("cache").exists() && !root.join("site").exists());
}

#[test]
fn a_folder_or_link_that_cannot_be_read_is_reported_and_counted_as_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 3, 0);
    // A link to nothing, followed: what an unmounted or unreadable folder looks like to the
    // scan (as root, permission bits would not stop it).
    std::os::unix::fs::symlink("/nonexistent/folder", root.join("archive/night-2")).unwrap();
    let tiny = fixture("tiny-meta.onnx").display().to_string();
    config(root, "follow.toml", &format!("[archive]\nroot = \"archive\"\nfollow-symlinks = true\n[encoder]\nmodel = \"{tiny}\"\n"));
    let (code, _, err) = run(root, &["--quiet", "check", "--config", "follow.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("skipped night-2: cannot read: No such file or directory"), "{err}");
    let (code, _, err) = run(root, &["--quiet", "build", "--config", "follow.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("skipped night-2: cannot read: No such file or directory"), "{err}");
    assert!(err.contains("published 3 item(s)") && err.contains("(1 skipped, 3 embedded now;"), "{err}");
    let manifest: serde_json::Value = serde_json::from_str(&read(&root.join("site/api/manifest.json"))).unwrap();
    assert_eq!(manifest["skipped"], 1);
}

#[test]
fn images_the_model_gives_no_number_for_are_skipped_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 3, 0);
    // A std this small overflows every input to infinity: the model's outputs are NaN.
    let tiny = fixture("tiny-meta.onnx").display().to_string();
    config(root, "overflow.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{tiny}\"\nstd = [1e-45]\n"));
    let (code, _, err) = run(root, &["--quiet", "build", "--config", "overflow.toml"]);
    assert_eq!(code, 1, "{err}");
    for i in 0..3 {
        assert!(
            err.contains(&format!("skipped img00{i}.fits: the model's embedding of this image is zero or not a number (NaN or infinite)")),
            "{err}"
        );
    }
    assert!(err.contains("no image in") && err.contains("(3 skipped); nothing was published"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Nothing unusable was cached: a sane normalisation embeds all three.
    config(root, "sane.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{tiny}\"\n"));
    let (code, _, err) = run(root, &["--quiet", "build", "--config", "sane.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("published 3 item(s)"), "{err}");
}

#[test]
fn exit_codes_a_script_can_trust() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("broken/a.fits"), b"not FITS at all");
    write(&root.join("broken/b.png"), b"not a PNG either");
    let tiny = fixture("tiny-meta.onnx").display().to_string();
    config(root, "broken.toml", &format!("[archive]\nroot = \"broken\"\n[encoder]\nmodel = \"{tiny}\"\n"));
    // A typo is an error (1), never "some files were skipped" (2).
    let (code, _, err) = run(root, &["check", "--archiv", "broken"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unexpected argument '--archiv'"), "{err}");
    // Nothing readable: `check` says what `build` would stop at, and `embed` fails too.
    let (code, _, err) = run(root, &["--quiet", "check", "--config", "broken.toml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error: no image in ") && err.contains("could be read; a build would publish nothing"), "{err}");
    let (code, _, err) = run(root, &["--quiet", "embed", "--config", "broken.toml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error: no image of shard 0/1 could be read"), "{err}");
    let (code, _, err) = run(root, &["--quiet", "build", "--config", "broken.toml"]);
    assert_eq!(code, 1, "{err}");
    // `--help` is not an error.
    assert_eq!(run(root, &["--help"]).0, 0);
    // `inspect` prints a name's control characters escaped, like the other commands.
    write(&root.join("forged\npublished 1 item(s).png"), b"not a PNG");
    let (code, _, err) = run(root, &["inspect", "forged\npublished 1 item(s).png"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("forged\\npublished"), "{err}");
}

#[test]
fn two_sites_on_one_cache_folder_take_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 4, 0);
    let tiny = fixture("tiny-meta.onnx").display().to_string();
    config(root, "a.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{tiny}\"\n[output]\ndir = \"site-a\"\ncache = \"cache\"\n"));
    let (code, _, err) = run(root, &["--quiet", "build", "--config", "a.toml"]);
    assert_eq!(code, 0, "{err}");
    // Another process holds the cache (as a build of another site would).
    let held = std::fs::File::options().write(true).open(root.join("cache/.lock")).unwrap();
    held.try_lock().unwrap();
    config(root, "b.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{tiny}\"\n[output]\ndir = \"site-b\"\ncache = \"cache\"\n"));
    let before = listing(root);
    let got = error_of(root, &["--config", "b.toml"]);
    assert_eq!(
        got,
        "error: another simsite process is using the cache folder ROOT/cache (it holds ROOT/cache/.lock): a build, an eval, or `embed --shard` processes still running\n  fix: wait for it to finish and run this again; in a cluster, start the build after every shard has ended; two sites must not share one cache folder ([output] cache or --cache)"
    );
    assert_eq!(listing(root), before, "the refused build left something behind");
    // Shards share the cache with each other, not with a build.
    let (code, _, err) = run(root, &["--quiet", "embed", "--config", "b.toml", "--shard", "0/2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a build or an eval, which needs it alone") && err.contains("start the shards after the last build has ended"), "{err}");
    held.unlock().unwrap();
    held.try_lock_shared().unwrap();
    let (code, _, err) = run(root, &["--quiet", "embed", "--config", "b.toml", "--shard", "0/2"]);
    assert_eq!(code, 0, "{err}");
    drop(held);
    let (code, _, err) = run(root, &["--quiet", "build", "--config", "b.toml"]);
    assert_eq!(code, 0, "{err}");
}

/// Without FAISS's GPU support (the default build), `device = "cuda"` stops the build
/// before the archive is decoded, and `check` says so too.
#[cfg(not(feature = "gpu"))]
#[test]
fn neighbours_on_a_gpu_this_build_cannot_use_stop_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 3, 0);
    config(root, "cuda.toml", "[archive]\nroot = \"archive\"\n[neighbours]\ndevice = \"cuda\"\n");
    let before = listing(root);
    let want = "error: [neighbours] device = \"cuda\", but this simsite was built without FAISS's GPU support\n  rebuild it with `cargo build --release --features gpu` on a machine with the CUDA toolkit (see the README), or set device = \"auto\"";
    assert_eq!(error_of(root, &["--config", "cuda.toml"]), want);
    let (code, _, err) = run(root, &["--quiet", "check", "--config", "cuda.toml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(want), "{err}");
    assert_eq!(listing(root), before);
}

/// `simsite check`, the pre-flight step of a nightly job, stops with the message `build`
/// gives for what a build would stop at before decoding anything: a site's own template
/// that does not parse or names a value pages do not have, an output folder simsite did not
/// build or inside a site's releases, a cache "folder" that is a file. Neither leaves
/// anything behind.
#[test]
fn check_stops_where_a_build_would() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 3, 0);
    let tiny = fixture("tiny-meta.onnx").display().to_string();
    let site = |dir: &str| config(root, &format!("{dir}/site-config.toml"), &format!("[archive]\nroot = \"../archive\"\n[encoder]\nmodel = \"{tiny}\"\n"));
    write(&root.join("typo/templates/item.html"), b"{% extends \"base.html\" %}{% block content %}{{ item.titel }}{% endblock content %}");
    site("typo");
    write(&root.join("unclosed/templates/gallery.html"), b"{% extends \"base.html\" %}{% block content %}{% endblock");
    site("unclosed");
    write(&root.join("notes/thesis.txt"), b"a thesis");
    write(&root.join("a-file"), b"x");
    // A site's releases folder and lock, as a build leaves them.
    std::fs::create_dir_all(root.join(".old.releases/r20261125T000000.000Z-1")).unwrap();
    write(&root.join(".old.lock"), b"");
    config(root, "plain.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{tiny}\"\n"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--config", "typo/site-config.toml"], "error: cannot render item.html: Failed to render 'item.html': Variable `item.titel` not found in context while rendering 'item.html'\n  fix: correct the template of that name in ROOT/typo/templates"),
        (vec!["--config", "unclosed/site-config.toml"], "error: a page template does not parse: Failed to parse 'gallery.html'"),
        (vec!["--config", "plain.toml", "--out", "notes"], "error: ROOT/notes is a folder simsite did not build (no index.html with api/manifest.json or thumbs/); simsite will not replace it\n  fix: choose another --out, or move the folder away"),
        (vec!["--config", "plain.toml", "--out", ".old.releases/r20261125T000000.000Z-1"], "error: ROOT/.old.releases/r20261125T000000.000Z-1 is inside ROOT/.old.releases, the folder where simsite keeps the releases of the site ROOT/old\n  fix: use --out ROOT/old (the link that serves the newest release)"),
        (vec!["--config", "plain.toml", "--cache", "a-file"], "error: the cache folder ROOT/a-file exists and is not a folder\n  fix: point [output] cache / --cache at a new or empty folder (simsite deletes what it does not need in its cache folder)"),
    ];
    // The same releases folder reached through a link.
    std::os::unix::fs::symlink(".old.releases", root.join("live")).unwrap();
    let before = listing(root);
    for command in ["check", "build"] {
        let (code, _, err) = run(root, &["--quiet", command, "--config", "plain.toml", "--out", "live/r20261125T000000.000Z-1"]);
        assert_eq!(code, 1, "{command}: {err}");
        assert!(err.contains(".old.releases, the folder where simsite keeps the releases of the site") && err.contains("fix: use --out"), "{command}: {err}");
        assert_eq!(listing(root), before, "{command}");
    }
    // A template that needs an optional part every page of this archive happens to have
    // (no item here has a sky position, so it would stop the build; another archive's
    // might all have one): a warning, not an error.
    write(&root.join("sky/templates/item.html"), b"{% extends \"base.html\" %}{% block content %}{{ item.sky.text }}{% endblock content %}");
    site("sky");
    let (code, _, err) = run(root, &["check", "--config", "sky/site-config.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: templates: a page without some optional part") && err.contains("item.sky"), "{err}");
    let before = listing(root);
    for (args, want) in &cases {
        for command in ["check", "build"] {
            let mut all = vec!["--quiet", command];
            all.extend_from_slice(args);
            let (code, _, err) = run(root, &all);
            assert_eq!(code, 1, "{command} {args:?}: {err}");
            let err = err.replace(&root.display().to_string(), "ROOT");
            assert!(err.starts_with(want), "{command} {args:?}:\n--- got\n{err}\n--- wanted\n{want}");
        }
        assert_eq!(listing(root), before, "{args:?}");
    }
}

/// A model line lost from the config would take the neighbours, the map and `api/` off a
/// site built with one: the build refuses, publishing nothing, until `--allow-removals`.
#[test]
fn a_config_that_lost_its_model_does_not_strip_the_site() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 6, 0);
    let tiny = fixture("tiny-meta.onnx").display().to_string();
    config(root, "site-config.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{tiny}\"\n"));
    let (code, _, err) = run(root, &["--quiet", "build"]);
    assert_eq!(code, 0, "{err}");
    let served = std::fs::read_link(root.join("site")).unwrap();
    config(root, "site-config.toml", "[archive]\nroot = \"archive\"\n");
    let (code, _, err) = run(root, &["--quiet", "build"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: the served site was built with the model tiny-test, but this config names none ([encoder] model)")
            && err.contains("fix: put back [encoder] model in the config, or run `simsite build --allow-removals` once"),
        "{err}"
    );
    assert_eq!(std::fs::read_link(root.join("site")).unwrap(), served);
    assert!(root.join("site/api/manifest.json").is_file());
    // `check`, the nightly pre-flight, says so too; a config's max-removed does not lift it.
    let (code, _, err) = run(root, &["--quiet", "check"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error: the served site was built with the model tiny-test"), "{err}");
    config(root, "site-config.toml", "[archive]\nroot = \"archive\"\n[output]\nmax-removed = 1.0\n");
    let (code, _, err) = run(root, &["--quiet", "build"]);
    assert_eq!(code, 1, "{err}");
    // Asked for: a site of thumbnails only.
    let (code, _, err) = run(root, &["--quiet", "build", "--allow-removals"]);
    assert_eq!(code, 0, "{err}");
    assert!(!root.join("site/api").exists() && root.join("site/thumbs/img000.fits.jpg").is_file());
}
