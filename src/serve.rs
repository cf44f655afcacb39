//! `simsite serve`: the built site over HTTP on loopback, to look at before publishing.
//! Static files only, as a CDN would serve them: `index.html` for folders (301 to the slashed
//! URL when the slash is missing), `404.html` with status 404, single byte ranges
//! (`Range: bytes=a-b`) for the API's binary files.

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
    /// instead (`/items/m51/`, the query kept), as CDNs and web servers do, so the page's
    /// relative links resolve from the folder.
    Folder(String),
}

/// What a URL path names inside `root` (for a folder, its `index.html`), or None (outside
/// the site, or missing).
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
    if folder && !path.ends_with('/') {
        let query = query.split('#').next().unwrap_or("");
        return Some(Target::Folder(format!("{path}/{query}")));
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

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes: (start, end inclusive).
fn byte_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len - 1)),
    };
    (start <= end && start < len).then_some((start, end))
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
            let response = respond(&root, &request);
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
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let ctype = header("Content-Type", content_type(&path));
    let range = request.headers().iter().find(|h| h.field.equiv("Range")).map(|h| h.value.as_str().to_string());
    if let Some(r) = range {
        let Some((start, end)) = byte_range(&r, len) else {
            return tiny_http::Response::from_string("").with_status_code(416).with_header(header("Content-Range", &format!("bytes */{len}"))).boxed();
        };
        let mut buf = vec![0u8; (end - start + 1) as usize];
        if file.seek(SeekFrom::Start(start)).and_then(|_| file.read_exact(&mut buf)).is_err() {
            return tiny_http::Response::from_string("cannot read").with_status_code(500).boxed();
        }
        return tiny_http::Response::from_data(buf)
            .with_status_code(206)
            .with_header(ctype)
            .with_header(header("Content-Range", &format!("bytes {start}-{end}/{len}")))
            .boxed();
    }
    tiny_http::Response::new(200.into(), vec![ctype, header("Accept-Ranges", "bytes")], file, Some(len as usize), None).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=0-1,4-5", 100), None);
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
        // A folder named without its final slash: sent to the slashed URL, query kept.
        assert_eq!(target(root, "/items/a"), Some(Target::Folder("/items/a/".into())));
        assert_eq!(target(root, "/items/%61?q=1#x"), Some(Target::Folder("/items/%61/?q=1".into())));
        assert_eq!(target(root, "/items"), None, "a folder without index.html is not found");
    }
}
