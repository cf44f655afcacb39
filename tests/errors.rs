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
            format!("error: the model {rank3} does not fit: input `pixels` has rank 3 ([-1, 16, 16]); simsite feeds NCHW images (rank 4: batch, channels, height, width)"),
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
    ];
    config(root, "unknown-key.toml", "[archive]\nroot = \"archive\"\nbogus = 1\n");
    config(root, "bad-k.toml", "[archive]\nroot = \"archive\"\n[neighbours]\nk = 0\n");
    config(root, "no-model.toml", "[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"models/none.onnx\"\n");
    config(root, "rank3.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{rank3}\"\n"));
    config(root, "no-ort.toml", &format!("[archive]\nroot = \"archive\"\n[encoder]\nmodel = \"{tiny}\"\nonnxruntime = \"lib/libonnxruntime.so\"\n"));

    let mut wrong = Vec::new();
    for (what, args, want) in &cases {
        let got = error_of(root, args);
        if &got != want {
            wrong.push(format!("{what}:\n--- got\n{got}\n--- wanted\n{want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    // No mistake left an output behind.
    for out in ["out", "archive/site", "site"] {
        assert!(!root.join(out).exists(), "{out} was created");
    }
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
