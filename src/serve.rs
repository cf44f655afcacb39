//! `simsite serve`: the built site over HTTP on loopback, to look at before publishing.
//! Static files only, as a CDN would serve them: `index.html` for folders (301 to the slashed
//! URL when the slash is missing), `404.html` with status 404, single byte ranges
//! (`Range: bytes=a-b`) for the API's binary files, always with a `Content-Length` (remote
//! range readers cannot seek a chunked reply).

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// What a URL path names inside `root`.
#[derive(Debug, PartialEq)]
pub enum Target {
    /// A file of the site.
    File(PathBuf),
    /// A folder named without its final `/` (`/items/m51`): where to send the client
    /// instead, relative to the URL asked (`m51/`, the query kept), as CDNs and web servers
    /// do, so the page's relative links resolve from the folder. Relative, so that it still
    /// holds behind a reverse proxy that serves the site under a path.
    Folder(String),
}

/// What a URL path names inside `root` (for a folder, its `index.html`), or None (outside
/// the site, missing, or a file named with a final `/`, as a CDN answers: its relative links
/// would resolve from a folder that is not there).
pub fn target(root: &Path, url: &str) -> Option<Target> {
    let (path, query) = match url.find(['?', '#']) {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let decoded = percent_decode(path)?;
    let mut p = root.to_path_buf();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(n) => p.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    let folder = p.is_dir();
    if folder {
        p.push("index.html");
    }
    // Symbolic links inside the release could point anywhere: serve only what stays inside.
    let real = p.canonicalize().ok()?;
    let real = real.starts_with(root.canonicalize().ok()?).then_some(real).filter(|r| r.is_file())?;
    if !folder && path.ends_with('/') {
        return None;
    }
    if folder && !path.ends_with('/') {
        let query = query.split('#').next().unwrap_or("");
        // The last segment (never empty here); `./` before it when it holds a `:`, which
        // would otherwise read as a URL scheme.
        let last = path.rsplit('/').next().unwrap_or("");
        let dot = if last.contains(':') { "./" } else { "" };
        return Some(Target::Folder(format!("{dot}{last}/{query}")));
    }
    Some(Target::File(real))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (!s.contains('\0')).then_some(s)
}

/// What a `Range` header asks of a file (RFC 9110 §14.2).
#[derive(Debug, PartialEq)]
enum Ranged {
    /// The whole file, with 200: a header the server ignores (another unit, a malformed
    /// range, several ranges, which this server does not serve).
    Whole,
    /// Bytes `start..=end`, with 206.
    Part(u64, u64),
    /// A valid single range that lies past the end of the file: 416.
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes. A last byte past the
/// end, however large, means the end.
fn byte_range(header: &str, len: u64) -> Ranged {
    // Digits only (`parse` would take `+5`); too many for a u64 saturate.
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().unwrap_or(u64::MAX))
    };
    let Some((unit, spec)) = header.split_once('=') else { return Ranged::Whole };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else { return Ranged::Whole };
    match (a.trim(), b.trim()) {
        ("", n) => match number(n) {
            None => Ranged::Whole,
            Some(0) => Ranged::Unsatisfiable,
            // A file of no bytes has no range to send: all of it (nothing) with 200.
            Some(_) if len == 0 => Ranged::Whole,
            Some(n) => Ranged::Part(len.saturating_sub(n), len - 1),
        },
        (a, b) => {
            let Some(start) = number(a) else { return Ranged::Whole };
            let end = if b.is_empty() { Some(u64::MAX) } else { number(b) };
            match end {
                Some(end) if end < start => Ranged::Whole,
                None => Ranged::Whole,
                Some(_) if start >= len => Ranged::Unsatisfiable,
                Some(end) => Ranged::Part(start, end.min(len - 1)),
            }
        }
    }
}

/// A file's modification time as an HTTP-date (`Last-Modified`).
fn http_date(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Serves `root` on `addr` until killed.
pub fn serve(root: &Path, addr: SocketAddr, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    if !root.join("index.html").is_file() {
        bail!("{} holds no built site (no index.html)\n  fix: run `simsite build` first, or pass --out", root.display());
    }
    let server = tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}\n  fix: choose another --port"))?;
    let local = server.server_addr().to_ip().context("not an IP address")?;
    on_ready(local);
    for request in server.incoming_requests() {
        // One thread per request, so a client that stops reading cannot stall the others. The
        // output folder is a link switched atomically by each build: resolved per request.
        let root = root.to_path_buf();
        let spawned = std::thread::Builder::new().spawn(move || {
            // Always a Content-Length, never chunked (tiny_http chunks from 32 KiB by default):
            // remote range readers (fsspec, pyarrow over HTTP) need the length to seek.
            let response = respond(&root, &request).with_chunked_threshold(usize::MAX);
            request.respond(response).ok();
        });
        // Out of threads: this request is dropped (its connection closed), the server goes on.
        if let Err(e) = spawned {
            eprintln!("warning: cannot start a thread for a request ({e}); it was dropped");
        }
    }
    Ok(())
}

fn respond(root: &Path, request: &tiny_http::Request) -> tiny_http::ResponseBox {
    let header = |name: &str, value: &str| tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header");
    if !matches!(request.method(), tiny_http::Method::Get | tiny_http::Method::Head) {
        return tiny_http::Response::from_string("method not allowed").with_status_code(405).boxed();
    }
    let path = match target(root, request.url()) {
        Some(Target::File(path)) => path,
        Some(Target::Folder(to)) => {
            return tiny_http::Response::from_string("").with_status_code(301).with_header(header("Location", &to)).boxed();
        }
        None => {
            let body = std::fs::read(root.join("404.html")).unwrap_or_else(|_| b"not found".to_vec());
            return tiny_http::Response::from_data(body).with_status_code(404).with_header(header("Content-Type", "text/html; charset=utf-8")).boxed();
        }
    };
    let Ok(mut file) = std::fs::File::open(&path) else {
        return tiny_http::Response::from_string("cannot read").with_status_code(500).boxed();
    };
    let Ok(meta) = file.metadata() else {
        return tiny_http::Response::from_string("cannot read").with_status_code(500).boxed();
    };
    let len = meta.len();
    let mut headers = vec![header("Content-Type", content_type(&path)), header("Accept-Ranges", "bytes")];
    // The modification time is the only validator: a release switched in between two
    // requests of a resumed download has other times for the files it changed.
    let modified = meta.modified().ok();
    let last_modified = modified.map(http_date);
    if let Some(date) = &last_modified {
        headers.push(header("Last-Modified", date));
    }
    let request_header = |name: &'static str| request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string());
    // `If-Range` with another validator, or with a date that is not strong (the file changed
    // within the last second, so another change could share the date), asks for the whole
    // file (RFC 9110 §13.1.5).
    let strong = modified.and_then(|m| m.elapsed().ok()).is_some_and(|age| age.as_secs() >= 1);
    let if_range_holds = request_header("If-Range").is_none_or(|v| strong && Some(v.trim()) == last_modified.as_deref());
    let ranged = match request_header("Range") {
        Some(r) if if_range_holds => byte_range(&r, len),
        _ => Ranged::Whole,
    };
    match ranged {
        Ranged::Whole => tiny_http::Response::new(200.into(), headers, file, Some(len as usize), None).boxed(),
        Ranged::Unsatisfiable => tiny_http::Response::from_string("").with_status_code(416).with_header(header("Content-Range", &format!("bytes */{len}"))).boxed(),
        Ranged::Part(start, end) => {
            if file.seek(SeekFrom::Start(start)).is_err() {
                return tiny_http::Response::from_string("cannot read").with_status_code(500).boxed();
            }
            let n = end - start + 1;
            headers.push(header("Content-Range", &format!("bytes {start}-{end}/{len}")));
            tiny_http::Response::new(206.into(), headers, file.take(n), Some(n as usize), None).boxed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use Ranged::*;
        assert_eq!(byte_range("bytes=0-9", 100), Part(0, 9));
        assert_eq!(byte_range("bytes=90-", 100), Part(90, 99));
        assert_eq!(byte_range("bytes=-10", 100), Part(90, 99));
        assert_eq!(byte_range("bytes=-1000", 100), Part(0, 99));
        assert_eq!(byte_range("bytes=95-200", 100), Part(95, 99));
        assert_eq!(byte_range("Bytes=1-2", 100), Part(1, 2), "the unit is case-insensitive");
        // Regression: a last byte past the end, even one no u64 holds, is the end (was 416).
        assert_eq!(byte_range("bytes=0-18446744073709551616", 100), Part(0, 99));
        // Only a valid single range past the end is unsatisfiable.
        assert_eq!(byte_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(byte_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(byte_range("bytes=18446744073709551616-", 100), Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 100), Unsatisfiable);
        // Regression: what the server ignores gives the whole file (was 416): several
        // ranges, malformed ones, another unit.
        for ignored in ["bytes=0-0,8-15", "bytes=0-1,4-5", "bytes=10-5", "bytes=abc", "bytes=-", "bytes=+1-2", "bytes=1-+2", "bytes 0-5", "items=0-5", ""] {
            assert_eq!(byte_range(ignored, 100), Whole, "{ignored}");
        }
        assert_eq!(byte_range("bytes=-5", 0), Whole);
        assert_eq!(byte_range("bytes=0-5", 0), Unsatisfiable);
    }

    fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
        match target(root, url)? {
            Target::File(p) => Some(p),
            Target::Folder(_) => None,
        }
    }

    #[test]
    fn paths_stay_inside_the_site() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("items/a")).unwrap();
        std::fs::write(dir.path().join("items/a/index.html"), "a").unwrap();
        std::fs::write(dir.path().join("index.html"), "i").unwrap();
        let root = dir.path();
        assert!(resolve(root, "/items/a/").unwrap().ends_with("items/a/index.html"));
        assert!(resolve(root, "/").unwrap().ends_with("index.html"));
        assert!(resolve(root, "/items/%61/?x=1").unwrap().ends_with("items/a/index.html"));
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/items/%2e%2e/%2e%2e/x"), None);
        assert_eq!(resolve(root, "/missing.html"), None);
        assert_eq!(resolve(root, "/a%00b"), None);
        // A folder named without its final slash: sent to the slashed URL, query kept, by a
        // relative Location (regression: it was root-absolute, `/items/a/`, which leaves a
        // site served under a path by a reverse proxy).
        assert_eq!(target(root, "/items/a"), Some(Target::Folder("a/".into())));
        assert_eq!(target(root, "/items/%61?q=1#x"), Some(Target::Folder("%61/?q=1".into())));
        assert_eq!(target(root, "/items"), None, "a folder without index.html is not found");
        std::fs::create_dir_all(dir.path().join("x:y")).unwrap();
        std::fs::write(dir.path().join("x:y/index.html"), "c").unwrap();
        assert_eq!(target(root, "/x:y"), Some(Target::Folder("./x:y/".into())), "not read as a scheme");
        // Regression: a file named with a final slash is not found, as on a CDN (it was
        // served, and its relative links then resolved from a folder that is not there).
        assert_eq!(target(root, "/items/a/index.html/"), None);
        assert_eq!(target(root, "/index.html/?x=1"), None);
        assert!(resolve(root, "/items/a/index.html").is_some());
    }

    /// A reply: status, headers (names lower-cased), body.
    type Reply = (u16, Vec<(String, String)>, Vec<u8>);

    /// `simsite serve` on `root`, on a free loopback port, in a thread left running.
    fn started(root: &Path) -> SocketAddr {
        let (tx, rx) = std::sync::mpsc::channel();
        let root = root.to_path_buf();
        std::thread::spawn(move || serve(&root, "127.0.0.1:0".parse().unwrap(), |a| tx.send(a).unwrap()));
        rx.recv().unwrap()
    }

    fn ask(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(buf[..split].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())).collect();
        (status, headers, buf[split + 4..].to_vec())
    }

    fn field<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply.1.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A site with `index.html` and a 100 KB binary file, its mtime two seconds back (a
    /// strong validator).
    fn site() -> (tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "i").unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("big.bin"), &big).unwrap();
        let f = std::fs::File::options().write(true).open(dir.path().join("big.bin")).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(2)).unwrap();
        (dir, big)
    }

    #[test]
    fn large_files_and_ranges_have_a_content_length_never_chunks() {
        // Regression: from 32 KiB tiny_http chunked the reply and sent no Content-Length,
        // and remote range readers (fsspec, pyarrow) could not seek the file.
        let (dir, big) = site();
        let addr = started(dir.path());
        for method in ["GET", "HEAD"] {
            let whole = ask(addr, method, "/big.bin", &[]);
            assert_eq!(whole.0, 200);
            assert_eq!(field(&whole, "content-length"), Some("100000"), "{method}: {:?}", whole.1);
            assert_eq!(field(&whole, "transfer-encoding"), None, "{method}");
            assert_eq!(field(&whole, "accept-ranges"), Some("bytes"));
            assert_eq!(whole.2, if method == "GET" { big.clone() } else { vec![] });
            let part = ask(addr, method, "/big.bin", &[("Range", "bytes=1000-80999")]);
            assert_eq!(part.0, 206);
            assert_eq!(field(&part, "content-length"), Some("80000"), "{method}: {:?}", part.1);
            assert_eq!(field(&part, "content-range"), Some("bytes 1000-80999/100000"));
            assert_eq!(field(&part, "transfer-encoding"), None, "{method}");
            assert_eq!(part.2, if method == "GET" { big[1000..81000].to_vec() } else { vec![] });
        }
    }

    #[test]
    fn ranges_the_server_ignores_give_the_whole_file() {
        let (dir, big) = site();
        let addr = started(dir.path());
        // Regression: each of these was answered 416.
        for ignored in ["bytes=0-0,8-15", "bytes=10-5", "bytes=abc", "items=0-5"] {
            let r = ask(addr, "GET", "/big.bin", &[("Range", ignored)]);
            assert_eq!((r.0, r.2.len()), (200, big.len()), "{ignored}");
        }
        let r = ask(addr, "GET", "/big.bin", &[("Range", "bytes=0-18446744073709551616")]);
        assert_eq!(r.0, 206);
        assert_eq!(field(&r, "content-range"), Some("bytes 0-99999/100000"));
        assert_eq!(r.2, big);
        let r = ask(addr, "GET", "/big.bin", &[("Range", "bytes=100000-")]);
        assert_eq!(r.0, 416);
        assert_eq!(field(&r, "content-range"), Some("bytes */100000"));
    }

    #[test]
    fn if_range_is_honoured_only_with_the_files_own_date() {
        // Regression: If-Range was ignored, so a download resumed across a release switch
        // could splice the two releases' bytes.
        let (dir, big) = site();
        let addr = started(dir.path());
        let date = field(&ask(addr, "HEAD", "/big.bin", &[]), "last-modified").unwrap().to_string();
        let same = ask(addr, "GET", "/big.bin", &[("Range", "bytes=10-19"), ("If-Range", &date)]);
        assert_eq!((same.0, same.2.as_slice()), (206, &big[10..20]));
        for other in ["Mon, 01 Jan 2001 00:00:00 GMT", "\"an-etag\"", "W/\"x\""] {
            let r = ask(addr, "GET", "/big.bin", &[("Range", "bytes=10-19"), ("If-Range", other)]);
            assert_eq!((r.0, r.2.len()), (200, big.len()), "{other}");
        }
        // A file changed within the last second has no strong date: the whole file.
        std::fs::write(dir.path().join("new.bin"), &big).unwrap();
        let date = field(&ask(addr, "HEAD", "/new.bin", &[]), "last-modified").unwrap().to_string();
        let r = ask(addr, "GET", "/new.bin", &[("Range", "bytes=10-19"), ("If-Range", &date)]);
        assert_eq!(r.0, 200);
    }

    #[test]
    fn a_folder_without_its_slash_is_redirected_relatively() {
        let (dir, _) = site();
        std::fs::create_dir_all(dir.path().join("items/m51")).unwrap();
        std::fs::write(dir.path().join("items/m51/index.html"), "m").unwrap();
        let addr = started(dir.path());
        let r = ask(addr, "GET", "/items/m51?q=1", &[]);
        assert_eq!((r.0, field(&r, "location")), (301, Some("m51/?q=1")));
        assert_eq!(ask(addr, "GET", "/items/m51/index.html/", &[]).0, 404);
        assert_eq!(ask(addr, "GET", "/big.bin/", &[]).0, 404);
    }
}
