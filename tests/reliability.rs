//! Reliability: a disk that fills up during a rebuild leaves the served site whole, stops
//! with a clear error (not with images skipped as if they were broken), and the next run,
//! with space again, completes.

mod common;

use std::path::Path;

use common::*;

fn config(root: &Path) {
    std::fs::write(
        root.join("site-config.toml"),
        format!(
            "[archive]\nroot = \"archive\"\n[output]\ndir = \"fs/out\"\ncache = \"fs/cache\"\n[encoder]\nmodel = \"{}\"\n[neighbours]\nk = 8\nshow = 5\n",
            fixture("tiny-meta.onnx").display()
        ),
    )
    .unwrap();
}

#[test]
fn a_full_disk_leaves_the_old_site_whole_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 20, 0);
    blob_archive(&root.join("more"), 150, 20);
    config(root);
    std::fs::create_dir(root.join("fs")).unwrap();
    // The site and the cache live on a small tmpfs, mounted in a user and mount namespace
    // of their own (no root needed, nothing mounted outside): the first build fits, the
    // rebuild with 150 more images does not; then the disk grows and a build completes.
    let script = format!(
        r#"set -u
mount -t tmpfs -o size=64m tmpfs fs || exit 90
hashes() {{ (cd fs/out/ && find . -type f -print0 | sort -z | xargs -0 sha256sum); }}
{bin} build > log1 2>&1; echo $? > code1
hashes > before.txt
used=$(du -sk fs | cut -f1)
mount -o remount,size=$((used + 200))k fs || exit 91
cp -r more/archive/. archive/
{bin} build > log2 2>&1; echo $? > code2
hashes > after.txt
mount -o remount,size=64m fs || exit 92
{bin} build > log3 2>&1; echo $? > code3
cp fs/out/api/ids.json ids3.json
exit 0
"#,
        bin = bin().display()
    );
    std::fs::write(root.join("run.sh"), script).unwrap();
    let status = std::process::Command::new("unshare").args(["-rm", "bash", "run.sh"]).current_dir(root).status().expect("unshare (util-linux)");
    assert!(
        !matches!(status.code(), Some(90..=92)),
        "the test could not mount or resize a small tmpfs: it needs `unshare -rm` (user namespaces) and tmpfs"
    );
    assert_eq!(status.code(), Some(0));
    assert_eq!(read(&root.join("code1")).trim(), "0", "{}", read(&root.join("log1")));

    // The rebuild failed, saying why and what to do, and skipped no image for it.
    let log2 = read(&root.join("log2"));
    assert_ne!(read(&root.join("code2")).trim(), "0", "{log2}");
    assert!(log2.contains("No space left on device") && log2.contains("fix: "), "{log2}");
    assert!(!log2.contains("skipped"), "a full disk made images look broken:\n{log2}");
    // The served site is the old one, every byte.
    let before = read(&root.join("before.txt"));
    assert!(before.lines().count() > 80, "{before}");
    assert_eq!(read(&root.join("after.txt")), before, "the served site changed during a failed build");

    // With space again, the next build completes with every image.
    assert_eq!(read(&root.join("code3")).trim(), "0", "{}", read(&root.join("log3")));
    let ids: Vec<String> = serde_json::from_str(&read(&root.join("ids3.json"))).unwrap();
    assert_eq!(ids.len(), 170);
}

/// Runs a build and returns its exit code and peak resident memory (bytes), from `wait4`.
fn build_peak_rss(root: &Path, threads: usize) -> (i32, u64) {
    let child = std::process::Command::new(bin())
        .args(["build", "--quiet"])
        .current_dir(root)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child once; std's Child is not waited on afterwards.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t);
    (libc::WEXITSTATUS(status), usage.ru_maxrss as u64 * 1024)
}

#[test]
fn huge_valid_images_are_decoded_within_the_memory_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Six valid 4000 × 4000 images (16 MP each, about 0.7 GB of decoding budget each), and
    // six decoding threads: unbounded, they would all be decoded at once.
    for i in 0..6u32 {
        png_grey8(&root.join(format!("archive/huge-{i}.png")), 4000, 4000, move |x, y| ((x / (7 + i) + y / 5) % 251) as u8);
    }
    blob_archive(root, 10, 0);
    let write_config = |mb: u64| {
        std::fs::write(
            root.join("site-config.toml"),
            format!(
                "[archive]\nroot = \"archive\"\ndecode-memory-mb = {mb}\n[output]\ndir = \"out\"\ncache = \"cache-{mb}\"\n[encoder]\nmodel = \"{}\"\n[neighbours]\nk = 5\nshow = 5\n",
                fixture("tiny-meta.onnx").display()
            ),
        )
        .unwrap()
    };
    write_config(800);
    let (code, bounded) = build_peak_rss(root, 6);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&read(&root.join("cache-800/last-build.json"))).unwrap();
    assert_eq!((report["items"].as_u64(), report["skipped"].as_u64()), (Some(16), Some(0)), "{report}");
    write_config(100_000);
    let (code, unbounded) = build_peak_rss(root, 6);
    assert_eq!(code, 0);
    let mb = |b: u64| b >> 20;
    eprintln!("peak RSS: {} MB within an 800 MB budget, {} MB without one", mb(bounded), mb(unbounded));
    // One image at a time: its buffers (about 0.25 GB) plus the process's own (well under
    // 0.3 GB); without the budget, six at once.
    assert!(bounded < 800 << 20, "{} MB with an 800 MB budget", mb(bounded));
    assert!(unbounded > bounded * 2, "without a budget {} MB, with one {} MB: the budget bounds nothing", mb(unbounded), mb(bounded));
}
