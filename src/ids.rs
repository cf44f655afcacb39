//! Stable, URL-safe, unique item ids.
//!
//! An id is derived from the catalogue id when the catalogue gives one, else from the path
//! relative to the archive root, so the same image keeps its URL across rebuilds. Ids are
//! used as folder and file names in the site, so they can never be empty, `.`/`..`, contain
//! a separator or NUL, or be longer than a file name may be.

/// Longest id kept verbatim; longer ones are cut and given a hash suffix (still stable).
pub const MAX_ID_LEN: usize = 120;

/// Maps text to `[A-Za-z0-9._~-]`: `/` becomes `~` (so folder structure stays readable),
/// any other byte outside the set becomes `-`, runs of `-` collapse.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        let mapped = match ch {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' => ch,
            '/' | '\\' => '~',
            _ => '-',
        };
        if mapped == '-' && out.ends_with('-') {
            continue;
        }
        out.push(mapped);
    }
    let trimmed = out.trim_matches(|c| c == '-' || c == '~' || c == '.');
    let mut id = trimmed.to_string();
    if id.is_empty() {
        // Nothing usable survives (e.g. a name made only of symbols): fall back to a hash.
        id = format!("item-{}", &blake3::hash(text.as_bytes()).to_hex()[..16]);
    }
    if id.len() > MAX_ID_LEN {
        id = distinct(&id, text);
    }
    id
}

/// The id for `text` when another name already makes the id `plain`: `plain` followed by
/// a hash of `text` (cut, like any id, to `MAX_ID_LEN`).
pub fn distinct(plain: &str, text: &str) -> String {
    let h = blake3::hash(text.as_bytes()).to_hex();
    let mut cut = plain.len().min(MAX_ID_LEN - 17);
    while !plain.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{}", &plain[..cut], &h[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_readable_url_safe_ids() {
        assert_eq!(slug("hst/m51 (r band).fits"), "hst~m51-r-band-.fits");
        assert_eq!(slug("a/b/c.png"), "a~b~c.png");
        assert_eq!(slug("uid://A001/X123"), "uid-~~A001~X123");
    }

    #[test]
    fn hostile_names_cannot_escape_or_vanish() {
        for bad in ["..", ".", "/", "../../etc/passwd", "\0", "<script>", "", "///"] {
            let id = slug(bad);
            assert!(!id.is_empty(), "{bad:?}");
            assert!(id != "." && id != "..", "{bad:?} -> {id}");
            assert!(!id.contains('/') && !id.contains('\0') && !id.contains('<'), "{bad:?} -> {id}");
            assert!(!id.starts_with('.'), "{bad:?} -> {id}");
        }
        assert_eq!(slug("../../etc/passwd"), "etc~passwd");
    }

    #[test]
    fn long_names_are_cut_with_a_stable_hash() {
        let long = "x".repeat(500);
        let a = slug(&long);
        assert_eq!(a.len(), MAX_ID_LEN);
        assert_eq!(a, slug(&long));
        assert_ne!(a, slug(&"x".repeat(501)));
    }
}
