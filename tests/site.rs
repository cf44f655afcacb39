//! The HTML site and its publishing guarantees: pages for every item, the map's files,
//! galleries; atomic switch between releases (a killed build leaves the old site whole),
//! unchanged files kept (mtime and inode), the changed-path list, the build lock, escaping
//! of hostile names and catalogue fields, `simsite serve`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn config(root: &Path, extra: &str) {
    std::fs::write(
        root.join("site-config.toml"),
        format!(
            "[site]\ntitle = \"Test archive\"\nbase-url = \"https://archive.example.org/sim/\"\n[archive]\nroot = \"archive\"\n[output]\ndir = \"out\"\ncache = \"cache\"\n[encoder]\nmodel = \"{}\"\n[neighbours]\nk = 8\nshow = 5\n{extra}",
            fixture("tiny-meta.onnx").display()
        ),
    )
    .unwrap();
}

/// A temporary folder with `n` blob images in `archive/`, the test config, and a site built
/// from them.
fn built(n: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    blob_archive(tmp.path(), n, 0);
    config(tmp.path(), "");
    let (code, _, err) = run(tmp.path(), &["build"]);
    assert_eq!(code, 0, "{err}");
    tmp
}

/// Every `.jpg` file under `dir`.
fn jpgs(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir).into_iter().map(|e| e.unwrap().into_path()).filter(|p| p.extension().is_some_and(|x| x == "jpg")).collect()
}

/// Every file of the served site: relative path → (bytes, inode, mtime).
fn snapshot(out: &Path) -> BTreeMap<String, (Vec<u8>, u64, i64)> {
    let root = out.canonicalize().unwrap();
    walkdir::WalkDir::new(&root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let m = e.metadata().unwrap();
            let rel = e.path().strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            (rel, (std::fs::read(e.path()).unwrap(), m.ino(), m.mtime_nsec() + m.mtime() * 1_000_000_000))
        })
        .collect()
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn a_build_makes_pages_for_every_item_the_map_files_and_galleries() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 30, 0);
    config(root, "");
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let out = root.join("out");
    assert!(std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink(), "the output is a link to a release");
    let ids: Vec<String> = serde_json::from_slice(&std::fs::read(out.join("api/ids.json")).unwrap()).unwrap();
    for id in &ids {
        let page = read(&out.join(format!("items/{id}/index.html")));
        assert!(page.len() < 10_000, "{id}: {} bytes", page.len());
        assert!(out.join(format!("thumbs/{id}.jpg")).is_file());
        assert!(page.contains(&format!("previews/{id}.jpg")) && out.join(format!("previews/{id}.jpg")).is_file());
        // Its five neighbours are listed, each linking to another item's page.
        let list = page.split("id=neighbours").nth(1).expect("a neighbours list").split("</ol>").next().unwrap();
        assert_eq!(list.matches("<li>").count(), 5, "{id}");
        let item: Value = serde_json::from_slice(&std::fs::read(out.join(format!("api/items/{id}.json"))).unwrap()).unwrap();
        for nb in item["neighbors"].as_array().unwrap().iter().take(5) {
            let href = format!("../{}/", nb["id"].as_str().unwrap());
            assert!(tags(list).iter().any(|(t, a)| t == "a" && a.iter().any(|(k, v)| k == "href" && *v == href)), "{id}: {list}");
        }
    }
    for page in ["index.html", "404.html", "clusters/index.html", "outliers/index.html", "duplicates/index.html", "static/map.js", "static/site.css"] {
        assert!(out.join(page).is_file(), "{page}");
    }
    let map: Value = serde_json::from_slice(&std::fs::read(out.join("map/map.json")).unwrap()).unwrap();
    assert_eq!(map["items"], 30);
    assert_eq!(std::fs::metadata(out.join("map/points.u16")).unwrap().len(), 30 * 4);
    let mut covered = 0;
    for (t, tile) in map["tiles"].as_array().unwrap().iter().enumerate() {
        covered += tile[5].as_u64().unwrap();
        let names: Value = serde_json::from_slice(&std::fs::read(out.join(format!("map/tiles/{t}.json"))).unwrap()).unwrap();
        assert_eq!(names["ids"].as_array().unwrap().len() as u64, tile[5].as_u64().unwrap());
        assert!(image::open(out.join(format!("map/tiles/{t}.jpg"))).is_ok());
    }
    assert_eq!(covered, 30, "every item in one tile");
    let sitemap = read(&out.join("sitemap.xml"));
    assert!(sitemap.contains(&format!("<loc>https://archive.example.org/sim/items/{}/</loc>", ids[0])));
    let clusters: Vec<Value> = serde_json::from_slice(&std::fs::read(out.join("api/clusters.json")).unwrap()).unwrap();
    for c in &clusters {
        let page = read(&out.join(format!("clusters/{}/index.html", c["cluster"])));
        assert!(page.contains(&format!("items/{}/", c["representative"].as_str().unwrap())));
        assert!(sitemap.contains(&format!("<loc>https://archive.example.org/sim/clusters/{}/</loc>", c["cluster"])), "cluster {} is not in the sitemap", c["cluster"]);
    }
    // Every page of the site is in it: the map, the three galleries, each cluster's
    // gallery (one page each here) and each item.
    assert_eq!(sitemap.matches("<loc>").count(), 4 + clusters.len() + 30);
}

/// The sitemap lists every page a visitor can reach: each cluster's gallery too.
#[test]
fn the_sitemap_lists_each_clusters_gallery() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 60, 0);
    config(root, "[structure]\nmin-cluster-size = 3\n");
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let out = root.join("out");
    let clusters: Vec<Value> = serde_json::from_slice(&std::fs::read(out.join("api/clusters.json")).unwrap()).unwrap();
    assert!(!clusters.is_empty(), "the archive must give clusters for this test");
    let sitemap = read(&out.join("sitemap.xml"));
    for c in &clusters {
        assert!(out.join(format!("clusters/{}/index.html", c["cluster"])).is_file());
        assert!(sitemap.contains(&format!("<loc>https://archive.example.org/sim/clusters/{}/</loc>", c["cluster"])), "cluster {} is not in the sitemap", c["cluster"]);
    }
    assert_eq!(sitemap.matches("<loc>").count(), 4 + clusters.len() + 60);
}

#[test]
fn rebuilds_keep_unchanged_files_and_list_what_changed() {
    let tmp = built(30);
    let root = tmp.path();
    let out = root.join("out");
    let first = snapshot(&out);
    let m1: Value = serde_json::from_slice(&first["api/manifest.json"].0).unwrap();

    // A no-op rebuild: every file the same inode and mtime, but the manifest, whose only
    // change is the check time.
    std::thread::sleep(Duration::from_millis(1100));
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let second = snapshot(&out);
    assert_eq!(first.keys().collect::<Vec<_>>(), second.keys().collect::<Vec<_>>());
    for (path, (bytes, ino, mtime)) in &first {
        if path == "api/manifest.json" {
            continue;
        }
        assert_eq!((&second[path].0, second[path].1, second[path].2), (bytes, *ino, *mtime), "{path} was rewritten");
    }
    let m2: Value = serde_json::from_slice(&second["api/manifest.json"].0).unwrap();
    assert_ne!(m1["checked_at"], m2["checked_at"]);
    let (mut a, mut b) = (m1.clone(), m2.clone());
    a["checked_at"] = Value::Null;
    b["checked_at"] = Value::Null;
    assert_eq!(a, b, "a no-op rebuild changes only the manifest's check time");
    // ... and only its text: the keys keep their order and layout.
    let without_time = |bytes: &[u8], t: &Value| String::from_utf8(bytes.to_vec()).unwrap().replace(&format!("\"checked_at\": {t}"), "T");
    assert_eq!(without_time(&first["api/manifest.json"].0, &m1["checked_at"]), without_time(&second["api/manifest.json"].0, &m2["checked_at"]));
    assert_eq!(lines(&root.join("cache/changed-paths.txt")), ["api/manifest.json"]);
    assert!(lines(&root.join("cache/removed-paths.txt")).is_empty());

    // One image added, one removed: the lists name exactly the files that differ.
    blob_archive(root, 1, 30);
    let ids: Vec<String> = serde_json::from_slice(&second["api/ids.json"].0).unwrap();
    let gone = ids.iter().find(|i| i.contains("img004")).unwrap().clone();
    std::fs::remove_file(root.join("archive/img004.fits")).unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let third = snapshot(&out);
    let changed = lines(&root.join("cache/changed-paths.txt"));
    let removed = lines(&root.join("cache/removed-paths.txt"));
    let expect_changed: Vec<String> =
        third.iter().filter(|(p, (bytes, _, _))| second.get(*p).is_none_or(|s| &s.0 != bytes)).map(|(p, _)| p.clone()).collect();
    let expect_removed: Vec<String> = second.keys().filter(|p| !third.contains_key(*p)).cloned().collect();
    assert_eq!(changed, expect_changed);
    assert_eq!(removed, expect_removed);
    assert!(removed.contains(&format!("items/{gone}/index.html")) && removed.contains(&format!("thumbs/{gone}.jpg")));
    let added = third.keys().find(|p| p.starts_with("items/") && p.contains("img030")).expect("the new item's page");
    assert!(changed.contains(added));
    // Files that did not change are still the same inodes.
    for p in third.keys().filter(|p| !changed.contains(p)) {
        assert_eq!(third[p].1, second[p].1, "{p}");
    }
    // Two releases are kept: the served one and the one before; only the served one has
    // an index.
    assert_releases(root);

    // One more image, as a nightly build would find: the item pages it does not reach were
    // kept without rendering them. The archive's growth moves every item's outlier rank
    // and the item count, but those are not in a page's bytes (item.js shows them).
    blob_archive(root, 1, 31);
    assert_eq!(run(root, &["build"]).0, 0);
    let fourth = snapshot(&out);
    let unchanged_pages =
        fourth.iter().filter(|(p, f)| p.starts_with("items/") && p.ends_with("/index.html") && third.get(*p).is_some_and(|t| t.0 == f.0)).count();
    assert!(unchanged_pages >= 10, "only {unchanged_pages} of 31 item pages unchanged");
    assert_eq!(report(root)["pages_kept_unrendered"], unchanged_pages);
    // The isolation forest was kept: the items it scored before keep their outlier scores.
    let score = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap()["outlier_score"].as_f64().unwrap();
    let old_items: Vec<&String> = fourth.keys().filter(|p| p.starts_with("api/items/") && third.contains_key(*p)).collect();
    assert_eq!(old_items.len(), 30);
    for p in old_items {
        assert_eq!(score(&fourth[p].0), score(&third[p].0), "{p}");
    }

    // The rebuilds compared their bytes with the served files through the served release's
    // index, reading none back... even when the releases have left the page cache, so that
    // the pages the last build changed are relinked while this one embeds.
    std::thread::sleep(Duration::from_millis(1100));
    evict(&root.join(".out.releases"));
    assert_eq!(run(root, &["build"]).0, 0);
    if simsite::fsutil::cachestat_available() {
        assert!(report(root)["pages_relinked_early"].as_u64().unwrap() > 0);
    }
    assert_eq!(report(root)["served_files_read"], 0, "a no-op rebuild reads no served file back");
    // ... and kept every item page without rendering it: nothing it is made of changed.
    assert_eq!(report(root)["pages_kept_unrendered"], 31);
    // ... but a served file edited by hand, to the same length, is read, found different,
    // and published again as the build makes it.
    let id = ids.iter().find(|i| !i.contains("img004")).unwrap();
    let json = format!("api/items/{id}.json");
    let served = out.join(&json).canonicalize().unwrap();
    let good = std::fs::read(&served).unwrap();
    let mut bad = good.clone();
    let at = bad.iter().position(|&b| b == b'{').unwrap();
    bad[at] = b'[';
    std::fs::write(&served, &bad).unwrap();
    assert_eq!(run(root, &["build"]).0, 0);
    assert_eq!(report(root)["served_files_read"], 1);
    assert_eq!(std::fs::read(out.join(&json)).unwrap(), good);
    assert!(lines(&root.join("cache/changed-paths.txt")).contains(&json));
    assert_releases(root);

    // A page edited by hand is rendered again, as are all pages once the site's own template
    // changes what they are made of.
    let page = format!("items/{id}/index.html");
    let served = out.join(&page).canonicalize().unwrap();
    let good = std::fs::read(&served).unwrap();
    std::fs::write(&served, b"defaced").unwrap();
    assert_eq!(run(root, &["build"]).0, 0);
    assert_eq!(report(root)["pages_kept_unrendered"], 30);
    assert!(std::fs::read(out.join(&page)).unwrap() == good, "{page} was not rendered again");
    std::fs::create_dir_all(root.join("templates")).unwrap();
    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/item.html")).unwrap();
    let restyled = template.replace("{% block content %}", "{% block content %}<p id=restyled>restyled</p>");
    assert_ne!(restyled, template);
    std::fs::write(root.join("templates/item.html"), restyled).unwrap();
    assert_eq!(run(root, &["build"]).0, 0);
    assert_eq!(report(root)["pages_kept_unrendered"], 0);
    for id in ids.iter().filter(|i| !i.contains("img004")) {
        assert!(read(&out.join(format!("items/{id}/index.html"))).contains("restyled"), "{id}");
    }
}

fn report(root: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(root.join("cache/last-build.json")).unwrap()).unwrap()
}

/// Two release folders (the served one and the one before), and beside them only their
/// indexes and manifests, the served one's among them.
#[test]
fn a_night_with_nothing_new_keeps_each_releases_own_files_for_the_next_night() {
    let tmp = built(30);
    let root = tmp.path();
    let out = root.join("out");
    let cold = snapshot(&out);
    // A night with one new image: many item JSONs change (outlier ranks, neighbours).
    blob_archive(root, 1, 30);
    assert_eq!(run(root, &["build"]).0, 0);
    let busy = snapshot(&out);
    let changed: Vec<&String> = busy.keys().filter(|p| p.starts_with("api/items/") && cold.get(*p).is_some_and(|c| c.0 != busy[*p].0)).collect();
    assert!(changed.len() >= 10, "only {} item JSONs changed", changed.len());
    // One copy in the release before has the served file's size and modification time but
    // other bytes (as two writes within one second leave a file system that keeps whole
    // seconds): only what that release's index vouches for is kept as it is.
    let served = std::fs::read_link(&out).unwrap();
    let other = std::fs::read_dir(root.join(".out.releases")).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir() && p.file_name() != served.file_name()).unwrap();
    let forged = other.join(changed[0]);
    let mut bytes = busy[changed[0]].0.clone();
    let at = bytes.iter().rposition(|b| b.is_ascii_digit()).unwrap();
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&forged, &bytes).unwrap();
    std::fs::File::options().write(true).open(&forged).unwrap().set_modified(std::fs::metadata(out.join(changed[0])).unwrap().modified().unwrap()).unwrap();
    // A night with nothing new: the release before is brought up to date. Every file has
    // the served bytes and modification time (rsync moves nothing), but the item JSONs the
    // last night changed stay that release's own files, not links to the served ones.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(run(root, &["build"]).0, 0);
    let idle = snapshot(&out);
    assert_eq!(lines(&root.join("cache/changed-paths.txt")), ["api/manifest.json"]);
    assert_eq!(busy.keys().collect::<Vec<_>>(), idle.keys().collect::<Vec<_>>());
    for (p, (bytes, _, mtime)) in &idle {
        if p != "api/manifest.json" {
            assert_eq!((bytes, mtime), (&busy[p].0, &busy[p].2), "{p}");
        }
    }
    for p in &changed {
        assert_ne!(idle[*p].1, busy[*p].1, "{p} is a link to the other release's file");
    }
    // ... so the next night, which changes them again, writes each where it was in the
    // release it recycles (the one served before the idle night).
    blob_archive(root, 1, 31);
    assert_eq!(run(root, &["build"]).0, 0);
    let next = snapshot(&out);
    let again: Vec<&&String> = changed.iter().filter(|p| next[**p].0 != busy[**p].0).collect();
    assert!(again.len() >= 5, "only {} changed again", again.len());
    for p in again {
        assert_eq!(next[*p].1, busy[*p].1, "{p} was made anew instead of written where it was");
    }
    assert_releases(root);
}

fn assert_releases(root: &Path) {
    let names: Vec<(String, bool)> = std::fs::read_dir(root.join(".out.releases"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().unwrap().is_dir()))
        .collect();
    let served = std::fs::read_link(root.join("out")).unwrap().file_name().unwrap().to_string_lossy().into_owned();
    let dirs: Vec<&String> = names.iter().filter(|(_, d)| *d).map(|(n, _)| n).collect();
    assert_eq!(dirs.len(), 2, "{names:?}");
    for (n, _) in names.iter().filter(|(_, d)| !*d) {
        let release = n.strip_suffix(".index").or_else(|| n.strip_suffix(".files"));
        assert!(release.is_some_and(|r| dirs.iter().any(|d| *d == r)), "{n} in {names:?}");
    }
    assert!(names.contains(&(format!("{served}.index"), false)), "{names:?}");
    assert!(names.contains(&(format!("{served}.files"), false)), "{names:?}");
}

/// The served site's files and bytes, the manifest's times aside.
fn contents(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut c: BTreeMap<String, Vec<u8>> = snapshot(out).into_iter().map(|(p, (b, _, _))| (p, b)).collect();
    let mut m: Value = serde_json::from_slice(&c["api/manifest.json"]).unwrap();
    m["built_at"] = Value::Null;
    m["checked_at"] = Value::Null;
    c.insert("api/manifest.json".into(), serde_json::to_vec(&m).unwrap());
    c
}

/// Asserts that the site `root` built is, byte for byte, the one `plain` built (a copy of
/// it whose build started afresh); returns its contents.
fn same_site(root: &Path, plain: &Path) -> BTreeMap<String, Vec<u8>> {
    let (got, want) = (contents(&root.join("out")), contents(&plain.join("out")));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (p, bytes) in &want {
        assert!(&got[p] == bytes, "{p} differs from a build that started afresh");
    }
    got
}

#[test]
fn a_recycled_release_however_damaged_becomes_exactly_the_new_site() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a");
    blob_archive(&root, 40, 0);
    config(&root, "");
    assert_eq!(run(&root, &["build"]).0, 0);
    let first_release = std::fs::read_link(root.join("out")).unwrap();
    blob_archive(&root, 10, 40);
    assert_eq!(run(&root, &["build"]).0, 0);
    // The third build recycles the first release. Change the archive, then copy the whole
    // folder: one copy keeps the old release (damaged), the other loses it.
    for i in [3, 17, 28] {
        std::fs::remove_file(root.join(format!("archive/img{i:03}.fits"))).unwrap();
    }
    blob_archive(&root, 3, 50);
    let plain = tmp.path().join("b");
    assert!(std::process::Command::new("cp").arg("-a").arg(&root).arg(&plain).status().unwrap().success());
    std::fs::remove_dir_all(plain.join(&first_release)).unwrap();

    // Damage the old release as a killed build or a careless hand might (never in place: its
    // unchanged files are the served release's inodes).
    let old = root.join(&first_release);
    let ids: Vec<String> = serde_json::from_slice(&std::fs::read(old.join("api/ids.json")).unwrap()).unwrap();
    let page = old.join(format!("items/{}/index.html", ids[5]));
    std::fs::remove_file(&page).unwrap();
    std::fs::write(&page, "garbage").unwrap();
    std::fs::write(old.join("stray.html"), "left over").unwrap();
    // A folder of its own, and an empty one where a page's folder was.
    std::fs::create_dir_all(old.join("extra/deeper")).unwrap();
    std::fs::write(old.join("extra/deeper/x.html"), "stray").unwrap();
    std::fs::remove_file(old.join(format!("items/{}/index.html", ids[13]))).unwrap();
    std::fs::create_dir_all(old.join("items/no-such-item/empty")).unwrap();
    std::fs::write(old.join("items/.simsite-tmp-7"), "half written").unwrap();
    std::fs::remove_file(old.join("api/ids.json")).unwrap();
    std::fs::create_dir_all(old.join("api/ids.json/in-the-way")).unwrap();
    std::fs::write(old.join("api/ids.json/in-the-way/inner.json"), "a file in a folder where a file belongs").unwrap();
    std::fs::remove_dir_all(old.join(format!("items/{}", ids[9]))).unwrap();
    std::fs::write(old.join(format!("items/{}", ids[9])), "a file where a folder belongs").unwrap();
    // Folders replaced by links to the outside (as an old site might have `thumbs ->
    // /big/disk`): nothing may be written through them.
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("items")).unwrap();
    std::fs::remove_dir_all(old.join("thumbs")).unwrap();
    std::os::unix::fs::symlink(&outside, old.join("thumbs")).unwrap();
    std::fs::remove_dir_all(old.join(format!("items/{}", ids[11]))).unwrap();
    std::os::unix::fs::symlink(outside.join("items"), old.join(format!("items/{}", ids[11]))).unwrap();
    let served_before = snapshot(&root.join("out"));
    let served_link = std::fs::read_link(root.join("out")).unwrap();

    let (code, _, err) = run(&root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&plain, &["build"]);
    assert_eq!(code, 0, "{err}");
    same_site(&root, &plain);
    let escaped: Vec<_> = walkdir::WalkDir::new(&outside).min_depth(1).into_iter().map(|e| e.unwrap().path().to_path_buf()).collect();
    assert_eq!(escaped, [outside.join("items")], "written through a link out of the site");
    // No folder is left that the new site does not use.
    for e in walkdir::WalkDir::new(root.join("out/")).min_depth(1) {
        let e = e.unwrap();
        if e.file_type().is_dir() {
            assert!(std::fs::read_dir(e.path()).unwrap().next().is_some(), "{} is empty", e.path().display());
        }
    }
    // The release that was served stayed whole, and the same inodes, while the other was
    // recycled.
    assert_eq!(snapshot(&root.join(&served_link)), served_before);
    assert_releases(&root);
}

/// Drops every file under `dir` from the page cache (flushed first).
fn evict(dir: &Path) {
    use std::os::fd::AsRawFd;
    // SAFETY: `sync` takes no arguments.
    unsafe { libc::sync() };
    for e in walkdir::WalkDir::new(dir).into_iter().filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()) {
        if let Ok(f) = std::fs::File::open(e.path()) {
            // SAFETY: a plain system call on an open descriptor.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

#[test]
fn nightly_builds_through_the_manifests_make_the_site_a_fresh_build_makes() {
    // Five nights. From the third on, each recycles a release whose manifest vouches for
    // its files' inodes, so thumbnails and pages are kept without looking at them (the
    // fifth lists a manifest that a recycling build made). Each night adds images and
    // replaces one image's bytes under the same name: its thumbnail must follow.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a");
    blob_archive(&root, 30, 0);
    config(&root, "");
    let plain = tmp.path().join("b");
    for night in 0..5 {
        blob_archive(&root, 2, 30 + 2 * night);
        if night > 0 {
            std::fs::copy(root.join(format!("archive/img{:03}.fits", 20 + night)), root.join(format!("archive/img{night:03}.fits"))).unwrap();
        }
        if night == 4 {
            // The same site and cache, but only the served release: its build starts afresh.
            assert!(std::process::Command::new("cp").arg("-a").arg(&root).arg(&plain).status().unwrap().success());
            let served = std::fs::read_link(plain.join("out")).unwrap();
            for e in std::fs::read_dir(plain.join(served.parent().unwrap())).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() && e.file_name() != served.file_name().unwrap() {
                    std::fs::remove_dir_all(e.path()).unwrap();
                }
            }
        }
        if night == 2 || night == 3 {
            // As a nightly job finds it: the releases dropped from the page cache, so the
            // pages that changed the night before are relinked while the build embeds.
            evict(&root.join(".out.releases"));
        }
        let (code, _, err) = run(&root, &["build"]);
        assert_eq!(code, 0, "{err}");
        // Where the kernel can tell what is cached (`cachestat`, Linux 6.5+), the pages
        // that changed the night before were relinked early (and most are then rendered
        // again: this small archive's pages all change each night).
        if night == 3 && simsite::fsutil::cachestat_available() {
            assert!(report(&root)["pages_relinked_early"].as_u64().unwrap() > 0);
        }
        // ...and their item pages were put by 16 threads, more than cores (only the evicted
        // nights: a release written moments before is still cached).
        if simsite::fsutil::cachestat_available() && std::env::var_os("RAYON_NUM_THREADS").is_none() {
            let cores = std::thread::available_parallelism().unwrap().get() as u64;
            let want = if night == 2 || night == 3 { 16 } else { cores };
            assert_eq!(report(&root)["page_threads"], want, "night {night}");
        }
    }
    let (code, _, err) = run(&plain, &["build"]);
    assert_eq!(code, 0, "{err}");
    let got = same_site(&root, &plain);
    // The replaced images show their new bytes.
    let thumb = |n: usize| got.iter().find(|(p, _)| p.starts_with("thumbs/") && p.contains(&format!("img{n:03}"))).map(|(_, b)| b.clone()).unwrap();
    for night in 1..5 {
        assert_eq!(thumb(night), thumb(20 + night));
        assert_ne!(thumb(night), thumb(10 + night));
    }
    assert_releases(&root);
}

#[test]
fn a_killed_rebuild_leaves_the_old_site_whole_and_the_next_run_completes() {
    let tmp = built(120);
    let root = tmp.path();
    let out = root.join("out");
    let before = snapshot(&out);
    // Changes that touch every stage: new images, and a changed layout seed.
    blob_archive(root, 40, 120);
    config(root, "[layout]\nseed = 7\n");
    // Kill it at several points: the served site is always one whole release, the old one
    // (or, had the build got as far as switching, the new one, complete).
    let mut killed_mid_build = 0;
    for delay in [20u64, 60, 120, 200, 300, 450] {
        let mut child = std::process::Command::new(bin()).arg("build").current_dir(root).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().ok();
        let status = child.wait().unwrap();
        let now = snapshot(&out);
        if now.keys().eq(before.keys()) && now.iter().all(|(p, v)| before[p].0 == v.0) {
            killed_mid_build += (!status.success()) as usize;
            continue;
        }
        // Not the old site: it must be the new one, whole.
        let ids: Vec<String> = serde_json::from_slice(&now["api/ids.json"].0).unwrap();
        assert_eq!(ids.len(), 160, "killed after {delay} ms: a site that is neither the old nor the new one");
        for id in &ids {
            for p in [format!("items/{id}/index.html"), format!("thumbs/{id}.jpg"), format!("api/items/{id}.json")] {
                assert!(now.contains_key(&p), "killed after {delay} ms: {p} missing");
            }
        }
        break;
    }
    assert!(killed_mid_build >= 2, "only {killed_mid_build} kills landed mid-build");
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let ids: Vec<String> = serde_json::from_slice(&std::fs::read(out.join("api/ids.json")).unwrap()).unwrap();
    assert_eq!(ids.len(), 160);
    // It reused the cache: the 120 old images were neither embedded nor thumbnailed again
    // (and whatever the killed runs finished of the 40 new ones was kept too).
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("cache/last-build.json")).unwrap()).unwrap();
    assert!(report["embedded"].as_u64().unwrap() <= 40, "{report}");
    assert!(report["thumbnails_reused"].as_u64().unwrap() >= 120, "{report}");
    // No staging folder of a killed build is left behind.
    let leftovers: Vec<PathBuf> =
        std::fs::read_dir(root.join(".out.releases")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().contains("staging")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_build_killed_after_its_switch_hands_its_path_lists_to_the_next_one() {
    let tmp = built(30);
    let root = tmp.path();
    let out = root.join("out");
    let cache = root.join("cache");
    // Night 2 adds an image and removes one, and is killed just after its switch: its lists
    // are left under their pending names (what `commit` writes before the switch).
    blob_archive(root, 1, 30);
    std::fs::remove_file(root.join("archive/img004.fits")).unwrap();
    assert_eq!(run(root, &["build", "--allow-removals"]).0, 0);
    let served = std::fs::read_link(&out).unwrap();
    let release = served.file_name().unwrap().to_str().unwrap().to_string();
    let (night2_changed, night2_removed) = (lines(&cache.join("changed-paths.txt")), lines(&cache.join("removed-paths.txt")));
    assert!(night2_removed.iter().any(|p| p.contains("img004")));
    for f in ["changed-paths.txt", "removed-paths.txt"] {
        std::fs::rename(cache.join(f), cache.join(format!("{f}.next-{release}"))).unwrap();
        std::fs::write(cache.join(f), "night-1 list\n").unwrap();
    }
    // A killed build that never switched left lists of a release never served.
    std::fs::write(cache.join("changed-paths.txt.next-r20000101T000000.000Z-1"), "never/served.html\n").unwrap();

    // Night 3 adds another image: its lists carry night 2's paths too, so a sync that
    // follows them misses nothing that was published.
    blob_archive(root, 1, 31);
    assert_eq!(run(root, &["build"]).0, 0);
    let changed = lines(&cache.join("changed-paths.txt"));
    let removed = lines(&cache.join("removed-paths.txt"));
    let site = snapshot(&out);
    for p in &night2_changed {
        assert!(changed.contains(p) || !site.contains_key(p), "{p} of night 2 is not listed");
    }
    for p in &night2_removed {
        assert!(removed.contains(p), "{p} removed in night 2 is not listed");
    }
    assert!(changed.iter().any(|p| p.contains("img031")));
    assert!(changed.iter().all(|p| site.contains_key(p)), "a changed path the site lacks");
    assert!(removed.iter().all(|p| !site.contains_key(p)), "a removed path the site has");
    assert!(!changed.contains(&"never/served.html".to_string()));
    let pending: Vec<String> =
        std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".next")).collect();
    assert!(pending.is_empty(), "{pending:?}");
}

#[test]
fn the_map_offers_catalogue_columns_in_their_order_and_numbers_with_gaps_as_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 20, 0);
    let mut csv = String::from("path,type,mag,note\n");
    for i in 0..20 {
        let mag = match i {
            3 => "NaN".to_string(),
            4 => String::new(),
            5 => "inf".to_string(),
            _ => format!("{}", 10.0 + i as f64 / 2.0),
        };
        let note = if i == 19 { "last" } else { "" };
        csv += &format!("img{i:03}.fits,{},{mag},{note}\n", ["spiral", "elliptical"][i % 2]);
    }
    std::fs::write(root.join("cat.csv"), csv).unwrap();
    config(root, "[catalogue]\npath = \"cat.csv\"\n");
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let map: Value = serde_json::from_slice(&std::fs::read(root.join("out/map/map.json")).unwrap()).unwrap();
    let colourings = map["colour_by"].as_array().unwrap();
    let named = |n: &str| colourings.iter().find(|c| c["name"] == n).unwrap_or_else(|| panic!("no colouring {n}: {map}"));
    let names: Vec<&str> = colourings.iter().filter_map(|c| c["file"].as_str().filter(|f| f.strip_prefix("map/colour-c").is_some_and(|r| r.starts_with(|d: char| d.is_ascii_digit()))).and(c["name"].as_str())).collect();
    // The catalogue's order; a column with one value among 20 rows is still offered.
    assert_eq!(names, ["type", "mag", "note"]);
    assert_eq!(named("type")["kind"], "category");
    // NaN and inf are missing values, not a reason to treat the magnitudes as words.
    let mag = named("mag");
    assert_eq!((mag["kind"].as_str(), mag["min"].as_f64(), mag["max"].as_f64()), (Some("number"), Some(10.0), Some(19.5)), "{mag}");
    let values = std::fs::read(root.join("out").join(mag["file"].as_str().unwrap())).unwrap();
    let missing = values.chunks_exact(2).filter(|b| u16::from_le_bytes([b[0], b[1]]) == u16::MAX).count();
    assert_eq!(missing, 3, "NaN, empty and inf are shown as missing");
}

#[test]
fn a_second_build_on_the_same_output_stops_with_a_clear_message() {
    let tmp = built(12);
    let root = tmp.path();
    let before = snapshot(&root.join("out"));
    // Hold the lock as a running build would.
    let lock = std::fs::File::options().write(true).open(root.join(".out.lock")).unwrap();
    lock.lock().unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_ne!(code, 0);
    assert!(err.contains("another simsite build is publishing to") && err.contains("run it again once the other one has finished"), "{err}");
    assert_eq!(snapshot(&root.join("out")), before);
    drop(lock);
    assert_eq!(run(root, &["build"]).0, 0);
}

/// The tags of an HTML page with their attributes (a small tokenizer: text, comments, quoted
/// or unquoted attribute values and the content of title/script/style are skipped as a
/// browser's parser would).
fn tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    let b = html.as_bytes();
    let (mut i, mut out) = (0, Vec::new());
    let name_end = |i: usize| (i..b.len()).find(|&j| b[j].is_ascii_whitespace() || b"/>=".contains(&b[j])).unwrap_or(b.len());
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        if html[i..].starts_with("<!--") {
            i = html[i..].find("-->").map(|k| i + k + 3).unwrap_or(b.len());
            continue;
        }
        i += 1;
        if i >= b.len() || !(b[i].is_ascii_alphabetic() || b[i] == b'/' || b[i] == b'!') {
            continue;
        }
        let e = name_end(i);
        let tag = html[i..e].trim_start_matches('/').to_ascii_lowercase();
        i = e;
        let mut attrs = Vec::new();
        while i < b.len() && b[i] != b'>' {
            if b[i].is_ascii_whitespace() || b[i] == b'/' {
                i += 1;
                continue;
            }
            let e = name_end(i).max(i + 1);
            let key = html[i..e].to_ascii_lowercase();
            i = e;
            let mut value = String::new();
            if i < b.len() && b[i] == b'=' {
                i += 1;
                if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                    let q = b[i];
                    let end = (i + 1..b.len()).find(|&j| b[j] == q).unwrap_or(b.len());
                    value = html[i + 1..end].to_string();
                    i = end + 1;
                } else {
                    let end = (i..b.len()).find(|&j| b[j].is_ascii_whitespace() || b[j] == b'>').unwrap_or(b.len());
                    value = html[i..end].to_string();
                    i = end;
                }
            }
            attrs.push((key, value));
        }
        // Text-only elements: their content is never markup, up to the closing tag.
        if ["title", "textarea", "script", "style"].contains(&tag.as_str()) {
            let close = format!("</{tag}");
            i = html[i..].to_ascii_lowercase().find(&close).map(|k| i + k).unwrap_or(b.len());
        }
        out.push((tag, attrs));
    }
    out
}

#[test]
fn hostile_catalogue_ids_cannot_leave_the_output_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    blob_archive(&root, 6, 0);
    let long = "x".repeat(400);
    std::fs::write(
        root.join("cat.csv"),
        format!("path,id\nimg000.fits,../../escaped\nimg001.fits,/tmp/absolute\nimg002.fits,\"a\0b\"\nimg003.fits,{long}\nimg004.fits,..\nimg005.fits,\"../../\"\n"),
    )
    .unwrap();
    config(&root, "[catalogue]\npath = \"cat.csv\"\nid-column = \"id\"\n");
    let (code, _, err) = run(&root, &["build"]);
    assert_eq!(code, 0, "{err}");
    // Nothing but the output, the cache and what the test made is beside the archive, and
    // nothing at all outside the test's folder.
    let mut beside: Vec<String> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    beside.sort();
    assert_eq!(beside, [".out.lock", ".out.releases", "archive", "cache", "cat.csv", "out", "site-config.toml"]);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    assert!(!Path::new("/tmp/absolute").exists());
    let out = root.join("out");
    let ids: Vec<String> = serde_json::from_slice(&std::fs::read(out.join("api/ids.json")).unwrap()).unwrap();
    assert_eq!(ids.len(), 6, "{ids:?}");
    // The catalogue's ids were used, made safe.
    assert!(ids.contains(&"escaped".to_string()) && ids.contains(&"tmp~absolute".to_string()), "{ids:?}");
    for id in &ids {
        assert!(!id.is_empty() && id != "." && id != ".." && !id.starts_with('.') && id.len() <= 120, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c)), "{id}");
        assert!(out.join(format!("items/{id}/index.html")).is_file(), "{id}");
        assert!(out.join(format!("api/items/{id}.json")).is_file(), "{id}");
    }
}

#[test]
fn hostile_names_and_catalogue_fields_cannot_inject_markup() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 6, 0);
    let evil = "<img src=x onerror=alert(1)>.fits";
    std::fs::copy(root.join("archive/img000.fits"), root.join("archive").join(evil)).unwrap();
    std::fs::write(
        root.join("cat.csv"),
        "path,title,url,note\n\
         img001.fits,\"</title><script>alert('t')</script>\",javascript:alert(1),\"\"\"><svg onload=alert(2)>\"\n\
         img002.fits,Fine & dandy,https://archive.example.org/obs?id=2&x=<y>,ok\n",
    )
    .unwrap();
    config(root, "[catalogue]\npath = \"cat.csv\"\nurl-column = \"url\"\n");
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let out = root.join("out");
    let ids: Vec<String> = serde_json::from_slice(&std::fs::read(out.join("api/ids.json")).unwrap()).unwrap();
    assert_eq!(ids.len(), 7);
    for id in &ids {
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c)), "{id}");
    }
    let mut html = String::new();
    for e in walkdir::WalkDir::new(out.canonicalize().unwrap()).into_iter().map(|e| e.unwrap()) {
        if e.path().extension().is_some_and(|x| x == "html") {
            let page = read(e.path());
            for (tag, attrs) in tags(&page) {
                let at = e.path().display();
                assert!(!["svg", "y"].contains(&tag.as_str()), "<{tag}> in {at}");
                assert!(tag != "img" || attrs.iter().any(|(k, v)| k == "src" && !v.contains(' ')), "an image not ours in {at}: {attrs:?}");
                if tag == "script" {
                    assert!(attrs.iter().any(|(k, v)| k == "src" && v.contains("static/")), "a script not ours in {at}: {attrs:?}");
                }
                for (k, v) in &attrs {
                    assert!(!k.starts_with("on"), "an event handler {k}={v} in {at}");
                    assert!(!v.trim_start().to_ascii_lowercase().starts_with("javascript:"), "{k}={v} in {at}");
                }
            }
            html.push_str(&page);
        }
    }
    assert!(["&lt;script>", "&LT;script>", "&lt;script&gt;"].iter().any(|e| html.contains(e)), "the title is shown, escaped");
    // The JSON stays valid JSON that says the same thing.
    let evil_id = ids.iter().find(|i| i.contains("onerror")).unwrap();
    let item: Value = serde_json::from_slice(&std::fs::read(out.join(format!("api/items/{evil_id}.json"))).unwrap()).unwrap();
    assert_eq!(item["path"], evil);
    let tile: Value = serde_json::from_slice(&std::fs::read(out.join("map/tiles/0.json")).unwrap()).unwrap();
    assert!(tile["titles"].as_array().unwrap().iter().any(|t| t == "</title><script>alert('t')</script>"));
    // The `javascript:` link is left out of the api/ file too (a tool could make it a link),
    // and the build says so; the web link is kept.
    let item = |id: &str| -> Value { serde_json::from_slice(&std::fs::read(out.join(format!("api/items/{id}.json"))).unwrap()).unwrap() };
    assert_eq!(item("img001.fits")["url"], Value::Null);
    assert_eq!(item("img002.fits")["url"], "https://archive.example.org/obs?id=2&x=<y>");
    assert!(err.contains("link `javascript:alert(1)` is not an http(s) URL; left out"), "{err}");
}

#[test]
fn serve_shows_the_site_on_loopback_with_ranges_and_a_404() {
    let tmp = built(10);
    let root = tmp.path();
    let mut child = std::process::Command::new(bin())
        .args(["serve", "--port", "0"])
        .current_dir(root)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stderr.take().unwrap()), &mut line).unwrap();
    let addr = line.split("http://").nth(1).unwrap().split('/').next().unwrap().to_string();
    let get = |path: &str, range: Option<&str>| -> (u16, Vec<u8>) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let extra = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status: u16 = std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap();
        (status, buf[split + 4..].to_vec())
    };
    let (status, body) = get("/", None);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("id=map"));
    let bin = std::fs::read(root.join("out/api/neighbors.bin")).unwrap();
    // Row 3 of neighbors.bin (8 pairs of 8 bytes) by a Range request, as an archive page would.
    let (status, row) = get("/api/neighbors.bin", Some("bytes=192-255"));
    assert_eq!(status, 206);
    assert_eq!(row, &bin[192..256]);
    assert_eq!(get("/no/such/page", None).0, 404);
    assert_eq!(get("/../../etc/passwd", None).0, 404);
    child.kill().ok();
    child.wait().ok();
}

/// The mean of each colour over a cell of an RGB image, or `None` when the cell is blank.
fn cell_mean(img: &image::RgbImage, col: u32, row: u32, cell: u32) -> Option<[f32; 3]> {
    let mut sum = [0f32; 3];
    for y in row * cell..(row + 1) * cell {
        for x in col * cell..(col + 1) * cell {
            let p = img.get_pixel(x, y);
            for c in 0..3 {
                sum[c] += p[c] as f32;
            }
        }
    }
    let mean = sum.map(|v| v / (cell * cell) as f32);
    (mean.iter().sum::<f32>() > 6.0).then_some(mean)
}

#[test]
fn a_nightly_build_keeps_the_map_tiles_and_adds_an_atlas_of_the_new_items() {
    let tmp = built(700);
    let root = tmp.path();
    let out = root.join("out");
    let first: Value = serde_json::from_slice(&std::fs::read(out.join("map/map.json")).unwrap()).unwrap();
    let tiles = first["tiles"].as_array().unwrap().len();
    assert!(tiles >= 3, "{tiles} tiles");
    let before = snapshot(&out);

    // Seven new images (1 %): the map places them, and the tiles stay.
    blob_archive(root, 7, 700);
    assert_eq!(run(root, &["build"]).0, 0);
    let map: Value = serde_json::from_slice(&std::fs::read(out.join("map/map.json")).unwrap()).unwrap();
    let (cols, cell) = (map["atlas_cols"].as_u64().unwrap() as u32, map["thumb"].as_u64().unwrap() as u32);
    let now = map["tiles"].as_array().unwrap();
    assert_eq!(now.len(), tiles);
    let changed = lines(&root.join("cache/changed-paths.txt"));
    let mut added = 0;
    for (t, tile) in now.iter().enumerate() {
        let (count, base) = (tile[5].as_u64().unwrap() as u32, tile[6].as_u64().unwrap() as u32);
        let (old_count, old_base) = (first["tiles"][t][5].as_u64().unwrap() as u32, first["tiles"][t][6].as_u64().unwrap() as u32);
        assert_eq!((base, old_base), (old_count, old_count), "tile {t}: its main atlas holds what it held");
        let main = format!("map/tiles/{t}.jpg");
        assert!(!changed.contains(&main), "{main} was rewritten");
        let names: Value = serde_json::from_slice(&std::fs::read(out.join(format!("map/tiles/{t}.json"))).unwrap()).unwrap();
        assert_eq!(names["ids"].as_array().unwrap().len() as u32, count);
        let new = out.join(format!("map/tiles/{t}-new.jpg"));
        if base == count {
            assert!(!new.exists());
            continue;
        }
        added += count - base;
        for id in &names["ids"].as_array().unwrap()[base as usize..] {
            assert!(id.as_str().unwrap().starts_with("img70"), "tile {t} added {id}");
        }
        // The atlas of additions starts at the row of the main atlas where the first new item
        // goes: its cells before that one are the main atlas's, its cells from there on the
        // new items' thumbnails, and nothing after the last.
        let main = image::open(out.join(&main)).unwrap().to_rgb8();
        let new = image::open(&new).unwrap().to_rgb8();
        let row = base / cols;
        assert_eq!(new.height(), (count.div_ceil(cols) - row) * cell);
        for k in row * cols..(row * cols + new.height() / cell * cols) {
            let (c, r) = (k % cols, k / cols - row);
            let got = cell_mean(&new, c, r, cell);
            if k < base {
                let want = cell_mean(&main, c, row, cell).expect("a main cell");
                let got = got.expect("the main atlas's cell, repeated");
                assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 4.0), "tile {t} cell {k}: {got:?} vs {want:?}");
            } else if k < count {
                assert!(got.is_some(), "tile {t} cell {k}: a new item's thumbnail is blank");
            } else {
                assert!(got.is_none(), "tile {t} cell {k}: past the last item");
            }
        }
    }
    assert_eq!(added, 7, "every new item in a tile's additions");
    // Main atlases are the very files they were.
    let after = snapshot(&out);
    for t in 0..tiles {
        let p = format!("map/tiles/{t}.jpg");
        assert_eq!((after[&p].1, after[&p].2), (before[&p].1, before[&p].2), "{p}");
    }
}

#[test]
fn an_atlas_of_additions_made_from_its_kept_cells_is_the_one_made_afresh() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (out, atlases) = (root.join("out"), root.join("cache/atlases"));
    let map = || -> Value { serde_json::from_slice(&std::fs::read(out.join("map/map.json")).unwrap()).unwrap() };
    let tiles = |m: &Value| -> Vec<(u64, u64)> { m["tiles"].as_array().unwrap().iter().map(|t| (t[5].as_u64().unwrap(), t[6].as_u64().unwrap())).collect() };
    let kept_cells = || std::fs::read_dir(&atlases).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".cells")).count();
    blob_archive(root, 700, 0);
    config(root, "");
    assert_eq!(run(root, &["build"]).0, 0);
    assert_eq!(kept_cells(), 0, "a map without additions keeps no cells");
    // Two nights of seven new images each.
    blob_archive(root, 7, 700);
    assert_eq!(run(root, &["build"]).0, 0);
    let second = tiles(&map());
    assert!(kept_cells() > 0, "the atlases of additions' cells are kept");
    blob_archive(root, 7, 707);
    let (code, stdout, stderr) = run(root, &["build"]);
    assert_eq!(code, 0, "{stderr}");
    let third = tiles(&map());
    assert_eq!(second.len(), third.len(), "the tiles stay");
    // A tile's atlas of additions that had cells kept decodes only its new items'
    // thumbnails; one made for the first time decodes all of its cells (from the start of the
    // row where its first new item goes).
    let cols = map()["atlas_cols"].as_u64().unwrap();
    let want: u64 = second
        .iter()
        .zip(&third)
        .filter(|((c2, _), (c3, _))| c3 > c2)
        .map(|(&(c2, b2), &(c3, b3))| {
            assert_eq!(b2, b3, "no main atlas is made again");
            if c2 > b2 { c3 - c2 } else { c3 - (b3 - b3 % cols) }
        })
        .sum();
    let decoded_in = |log: String| -> u64 {
        log.split(" thumbnails decoded")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count of decoded thumbnails in the log: {log}"))
    };
    let decoded = decoded_in(format!("{stdout}{stderr}"));
    assert!(second.iter().zip(&third).any(|((c2, b2), (c3, _))| c2 > b2 && c3 > c2), "no tile gained items on both nights");
    assert_eq!(decoded, want, "{stdout}{stderr}");
    // Byte for byte the atlases a build makes with nothing kept.
    let additions = |m: &Value| -> BTreeMap<String, Vec<u8>> {
        (0..tiles(m).len()).map(|t| format!("map/tiles/{t}-new.jpg")).filter_map(|p| Some((p.clone(), std::fs::read(out.join(&p)).ok()?))).collect()
    };
    let made = additions(&map());
    assert!(!made.is_empty());
    std::fs::remove_dir_all(&atlases).unwrap();
    let (code, stdout, stderr) = run(root, &["build"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(decoded_in(format!("{stdout}{stderr}")) > want, "every atlas made afresh");
    assert_eq!(additions(&map()), made);
}

#[test]
fn a_night_missing_most_of_the_archive_publishes_nothing_unless_told() {
    // An archive folder that is not mounted or not readable tonight looks like removed images.
    let tmp = built(10);
    let root = tmp.path();
    let out = root.join("out");
    let served = snapshot(&out);
    let away = root.join("away");
    std::fs::create_dir(&away).unwrap();
    let (archive, away_) = (root.join("archive"), away.clone());
    let take = move |n: usize, back: bool| {
        for i in 0..n {
            let name = format!("img{i:03}.fits");
            let (from, to) = if back { (away_.join(&name), archive.join(&name)) } else { (archive.join(&name), away_.join(&name)) };
            std::fs::rename(from, to).unwrap();
        }
    };
    let ids = || serde_json::from_slice::<Vec<String>>(&std::fs::read(out.join("api/ids.json")).unwrap()).unwrap().len();

    // Six of ten gone (60 %, over the default 50 %): refused, the site as it was.
    take(6, false);
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("6 of the 10 items on the served site are not among tonight's images (60 %, more than [output] max-removed = 50 %), e.g. `img000.fits`"),
        "{err}"
    );
    assert!(err.contains("nothing was published") && err.contains("simsite build --allow-removals"), "{err}");
    assert_eq!(snapshot(&out), served);
    // Back the next night: the cache kept every embedding and thumbnail, so nothing is
    // embedded or drawn again.
    take(6, true);
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_slice(&std::fs::read(root.join("cache/last-build.json")).unwrap()).unwrap();
    assert_eq!(report["embedded"], 0, "{report}");
    assert_eq!(report["thumbnails_made"], 0, "{report}");

    // Really removed: --allow-removals publishes what is left, for that run only.
    take(6, false);
    let (code, _, err) = run(root, &["build", "--allow-removals"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(), 4);
    // The share is the config's: with max-removed = 0.7, six of ten may go; with 0, none.
    take(6, true);
    assert_eq!(run(root, &["build"]).0, 0);
    assert_eq!(ids(), 10);
    let max_removed = |share: &str| {
        config(root, "");
        let path = root.join("site-config.toml");
        let text = read(&path).replace("cache = \"cache\"\n", &format!("cache = \"cache\"\nmax-removed = {share}\n"));
        std::fs::write(path, text).unwrap();
    };
    max_removed("0.7");
    take(6, false);
    assert_eq!(run(root, &["build"]).0, 0);
    assert_eq!(ids(), 4);
    take(6, true);
    max_removed("0");
    assert_eq!(run(root, &["build"]).0, 0);
    take(1, false);
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("1 of the 10 items"), "{err}");
    assert_eq!(ids(), 10);
}

#[test]
fn a_new_broken_file_alone_still_updates_the_manifest() {
    // Nothing but the manifest tells how many files were skipped: a rebuild that changes no
    // other file must not keep the served manifest as it was.
    let tmp = built(6);
    let root = tmp.path();
    let manifest = || serde_json::from_slice::<Value>(&std::fs::read(root.join("out/api/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest()["skipped"], 0);
    write(&root.join("archive/broken.fits"), b"SIMPLE  = this is not a FITS file");
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("skipped broken.fits"), "{err}");
    assert_eq!(manifest()["skipped"], 1);
    assert_eq!(lines(&root.join("cache/changed-paths.txt")), ["api/manifest.json"]);
}

#[test]
fn empty_cache_files_left_by_a_crash_are_made_again() {
    // Cache files are renamed into place without an fsync each: after a power cut, one may
    // be there with no bytes. A marker left by the build that did not finish says so.
    let tmp = built(12);
    let root = tmp.path();
    let out = root.join("out");
    let under = |dir: &str| jpgs(&root.join(dir));
    let markers = || std::fs::read_dir(root.join("cache")).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("unfinished-")).count();
    assert_eq!(markers(), 0, "a finished build leaves no marker");
    let (thumbs, atlases) = (under("cache/thumbs"), under("cache/atlases"));
    assert!(!thumbs.is_empty() && !atlases.is_empty());
    // The crash: every cached thumbnail and atlas lost its bytes (the served site shares
    // their inodes, so it did too), and the build's marker stayed.
    for f in thumbs.iter().chain(&atlases) {
        std::fs::File::create(f).unwrap();
    }
    std::fs::write(root.join("cache/unfinished-4000000"), b"").unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_slice(&std::fs::read(root.join("cache/last-build.json")).unwrap()).unwrap();
    assert_eq!(report["thumbnails_made"], 12, "{report}");
    let served = under("out");
    assert!(served.len() >= 12 + 1, "{served:?}");
    for f in served {
        assert!(std::fs::metadata(&f).unwrap().len() > 0, "{} is empty", f.display());
    }
    assert!(out.join("api/manifest.json").is_file());
    assert_eq!(markers(), 0, "the marker found was taken away");
}

#[test]
fn an_atlas_with_a_thumbnail_that_cannot_be_read_is_not_cached() {
    let tmp = built(12);
    let root = tmp.path();
    let under = |dir: &str| jpgs(&root.join(dir));
    for a in under("cache/atlases") {
        std::fs::remove_file(a).unwrap();
    }
    // One cached thumbnail that no longer decodes (its bytes, not its size, went wrong).
    let thumb = under("cache/thumbs").into_iter().next().unwrap();
    let good = std::fs::read(&thumb).unwrap();
    std::fs::write(&thumb, b"not a JPEG any more").unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(!under("out/map").is_empty(), "the map's atlas is served");
    assert!(under("cache/atlases").is_empty(), "but not cached with a blank cell");
    std::fs::write(&thumb, &good).unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(!under("cache/atlases").is_empty(), "drawn whole, it is cached");
}

#[test]
fn free_text_columns_are_left_out_of_the_default_colourings_and_fold_into_other_when_named() {
    // Regression: a `description` of 5 KB a row and a `note` of 300 different values became
    // default colourings: map.json carried 256 long labels, loaded before the first draw,
    // and the items past the 256th note were drawn as missing.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    blob_archive(root, 300, 0);
    let mut csv = String::from("path,description,note,type\n");
    for i in 0..300 {
        csv += &format!("img{i:03}.fits,{}{},note {i},{}\n", "a long description. ".repeat(250), i % 10, ["spiral", "elliptical"][i % 2]);
    }
    std::fs::write(root.join("cat.csv"), csv).unwrap();
    config(root, "[catalogue]\npath = \"cat.csv\"\n");
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    let map = |root: &Path| -> Value { serde_json::from_slice(&std::fs::read(root.join("out/map/map.json")).unwrap()).unwrap() };
    let names = |map: &Value| -> Vec<String> { map["colour_by"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect() };
    assert_eq!(names(&map(root)), ["cluster", "strangeness (rank, 1 = strangest)", "type"]);
    assert!(err.contains("warning: the map is not coloured by the catalogue column `description` (values of up to 5001 characters, over 64); to colour by it anyway, name it in [site] colour-by (its 255 most frequent values get a colour each, the others share one)"), "{err}");
    assert!(err.contains("warning: the map is not coloured by the catalogue column `note` (300 different values, more than the 256 a colouring labels); to colour by it anyway"), "{err}");
    assert!(std::fs::metadata(root.join("out/map/map.json")).unwrap().len() < 20_000);

    // Named, they are coloured: the 255 most frequent values (ties by value), the rest as
    // one "other", none as missing; long labels cut.
    let toml = std::fs::read_to_string(root.join("site-config.toml")).unwrap();
    std::fs::write(root.join("site-config.toml"), toml.replace("[site]\n", "[site]\ncolour-by = [\"note\", \"description\"]\n")).unwrap();
    let (code, _, err) = run(root, &["build"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: the map's colouring by `note` gives its 255 most frequent values a colour each; the other 45 share one, labelled `other (45 values)`"), "{err}");
    let map = map(root);
    assert_eq!(names(&map)[2..], ["note", "description"]);
    let note = &map["colour_by"][2];
    let labels = note["labels"].as_array().unwrap();
    assert_eq!((labels.len(), &labels[0], &labels[255]), (256, &Value::from("note 0"), &Value::from("other (45 values)")));
    let values = std::fs::read(root.join("out").join(note["file"].as_str().unwrap())).unwrap();
    let values: Vec<u16> = values.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    assert_eq!(values.iter().filter(|&&v| v == 255).count(), 45);
    assert!(!values.contains(&u16::MAX), "no note is missing");
    let description = map["colour_by"][3]["labels"].as_array().unwrap();
    assert!(description.iter().all(|l| l.as_str().unwrap().chars().count() == 65), "{description:?}");
    assert!(std::fs::metadata(root.join("out/map/map.json")).unwrap().len() < 60_000);
}
