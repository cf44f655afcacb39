//! Stable, URL-safe, unique item ids.
//!
//! An id is derived from the catalogue id when the catalogue gives one, else from the path
//! relative to the archive root, so the same image keeps its URL across rebuilds. Ids are
//! used as folder and file names in the site, so they can never be empty, `.`/`..`, contain
//! a separator or NUL, or be longer than a file name may be.

/// Longest id kept verbatim; longer ones are cut and given a hash suffix (still stable).
pub const MAX_ID_LEN: usize = 120;

/// Maps text to `[A-Za-z0-9._~-]`: `/` and `\` become `~` (so folder structure stays readable),
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

/// Length of the suffix `distinct` adds: `-` and 16 hex digits.
const SUFFIX_LEN: usize = 17;

/// The id for `text` when another name already makes the id `plain`: `plain` followed by
/// a hash of `text` (cut, like any id, to `MAX_ID_LEN`).
pub fn distinct(plain: &str, text: &str) -> String {
    let h = blake3::hash(text.as_bytes()).to_hex();
    format!("{}-{}", distinct_stem(plain), &h[..16])
}

/// The part of `plain` that `distinct(plain, _)` keeps before its hash suffix.
pub fn distinct_stem(plain: &str) -> &str {
    let mut cut = plain.len().min(MAX_ID_LEN - SUFFIX_LEN);
    while !plain.is_char_boundary(cut) {
        cut -= 1;
    }
    &plain[..cut]
}

/// The stem of an id shaped like one `distinct` makes (`stem-` and 16 lower-case hex
/// digits), else None. A cheap filter: the shape alone does not say `distinct` made it.
pub fn suffixed_stem(id: &str) -> Option<&str> {
    let cut = id.len().checked_sub(SUFFIX_LEN)?;
    let (stem, suffix) = (id.get(..cut)?, &id.as_bytes()[cut..]);
    let hex = suffix[1..].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    (suffix[0] == b'-' && hex && !stem.is_empty()).then_some(stem)
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
    fn a_suffixed_id_gives_back_its_stem() {
        for (plain, text) in [("coll~a-b.png", "coll/a-b.png"), ("m51.png", "m51.png"), (&*"y".repeat(300), "long")] {
            let d = distinct(plain, text);
            assert_eq!(suffixed_stem(&d), Some(distinct_stem(plain)), "{d}");
        }
        assert_eq!(distinct_stem(&"y".repeat(300)).len(), MAX_ID_LEN - 17);
        for plain in ["coll~a-b.png", "a-b.png-E411AAE00E9B412F", "a-b.png-e411aae00e9b412", "-e411aae00e9b412f", "e411aae00e9b412f", ""] {
            assert_eq!(suffixed_stem(plain), None, "{plain}");
        }
    }

    #[test]
    fn backslashes_are_separators_like_slashes() {
        // Documented in the README; ids already published depend on it.
        assert_eq!(slug("hst\\m51.fits"), "hst~m51.fits");
        assert_eq!(slug("a\\b/c.png"), "a~b~c.png");
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
