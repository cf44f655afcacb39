//! The optional catalogue (CSV) and its join onto the scanned files, giving each item its
//! id, title, link back to the archive, sky position and free metadata columns.
//!
//! A structurally broken catalogue stops the build (it is configuration the archive
//! maintains); a bad value in one row (say an unparsable RA) is a warning, and the row's
//! other fields are still used.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{CatalogueSettings, Column, JoinOn};
use crate::error::CatalogueError;
use crate::ids::slug;
use crate::report::Problem;
use crate::scan::ScanEntry;

#[derive(Debug, Clone, Default)]
pub struct Row {
    pub line: u64,
    pub id: Option<String>,
    pub title: Option<String>,
    pub url: Option<String>,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    /// Extra columns in catalogue order; empty cells are left out.
    pub meta: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct Catalogue {
    rows: HashMap<String, Row>,
    join_on: Option<JoinOn>,
    pub warnings: Vec<Problem>,
    /// The names of the extra (metadata) columns, in catalogue order.
    pub columns: Vec<String>,
    /// The names of the RA and Dec columns found (in `columns` too, unless `columns` was
    /// configured without them).
    pub position: Vec<String>,
}

/// The byte offsets where the lines of a text start (after LF, CR LF or a lone CR), as
/// far as it has been read.
#[derive(Default)]
pub(crate) struct LineStarts {
    starts: Vec<u64>,
    read: u64,
    /// The last byte read was a CR (a LF right after it ends the same line).
    after_cr: bool,
}

impl LineStarts {
    fn saw(&mut self, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            let at = self.read + i as u64;
            match b {
                // The csv crate places a record after CR LF at the LF.
                b'\n' if self.after_cr => *self.starts.last_mut().expect("a CR was counted") = at,
                b'\n' | b'\r' => self.starts.push(at + 1),
                _ => {}
            }
            self.after_cr = b == b'\r';
        }
        self.read += bytes.len() as u64;
    }

    /// The 1-based line of the byte at `offset`.
    pub(crate) fn line_of(&self, offset: u64) -> u64 {
        self.starts.partition_point(|&s| s <= offset) as u64 + 1
    }
}

/// A reader that notes where lines start in what passes through it.
pub(crate) struct Counted<R> {
    pub(crate) inner: R,
    pub(crate) lines: std::sync::Arc<std::sync::Mutex<LineStarts>>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).saw(&buf[..n]);
        Ok(n)
    }
}

/// Whether `url` is an http(s) link (any other scheme, `javascript:` among them, is not
/// made a link).
pub(crate) fn is_web_link(url: &str) -> bool {
    let l = url.trim_start().to_ascii_lowercase();
    l.starts_with("https://") || l.starts_with("http://")
}

/// One archive file with everything the site shows about it.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub entry: ScanEntry,
    pub title: String,
    pub url: Option<String>,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub meta: Vec<(String, String)>,
}

pub(crate) fn normalise_path(p: &str) -> String {
    let p = p.trim().replace('\\', "/");
    p.trim_start_matches("./").to_string()
}

fn find(headers: &csv::StringRecord, col: &Column, path: &Path, required: bool) -> Result<Option<usize>, CatalogueError> {
    match headers.iter().position(|h| h.trim() == col.name) {
        Some(i) => Ok(Some(i)),
        None if required || col.explicit => Err(CatalogueError::MissingColumn {
            path: path.to_path_buf(),
            column: col.name.clone(),
            key: col.key.replace("catalogue.", ""),
            available: crate::error::backticked(headers.iter().map(str::trim)),
        }),
        None => Ok(None),
    }
}

/// Parses decimal degrees, or sexagesimal `hh:mm:ss.s` / `hh mm ss` (hours for RA when
/// `hours` is true, degrees otherwise).
pub fn parse_angle(text: &str, hours: bool) -> Option<f64> {
    let t = text.trim();
    if let Ok(v) = t.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    let parts: Vec<&str> = t.split([':', ' ']).filter(|s| !s.is_empty()).collect();
    if parts.len() != 3 {
        return None;
    }
    let neg = parts[0].starts_with('-');
    let a: f64 = parts[0].trim_start_matches(['-', '+']).parse().ok()?;
    let m: f64 = parts[1].parse().ok()?;
    let s: f64 = parts[2].parse().ok()?;
    if !(0.0..60.0).contains(&m) || !(0.0..60.0).contains(&s) {
        return None;
    }
    let v = (a + m / 60.0 + s / 3600.0) * if hours { 15.0 } else { 1.0 };
    Some(if neg { -v } else { v })
}

impl Catalogue {
    pub fn load(cfg: &CatalogueSettings) -> Result<Catalogue, CatalogueError> {
        let path = cfg.path.as_path();
        let file = std::fs::File::open(path).map_err(|e| CatalogueError::Io { path: path.to_path_buf(), source: e })?;
        Self::from_reader(std::io::BufReader::new(file), cfg)
    }

    /// Parses a catalogue from any reader; `cfg.path` only names it in messages.
    pub fn from_reader(input: impl std::io::Read, cfg: &CatalogueSettings) -> Result<Catalogue, CatalogueError> {
        let path = cfg.path.as_path();
        // The csv crate counts lines wrongly in files with CR LF or CR line ends (what Excel
        // writes): lines are counted here from the byte offsets it gets right.
        let lines = std::sync::Arc::new(std::sync::Mutex::new(LineStarts::default()));
        let counted = Counted { inner: input, lines: lines.clone() };
        let line_of = |pos: Option<&csv::Position>| pos.map(|p| lines.lock().unwrap_or_else(|e| e.into_inner()).line_of(p.byte())).unwrap_or(0);
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(counted);
        let csv_err = |e: csv::Error| CatalogueError::Csv {
            path: path.to_path_buf(),
            message: match e.kind() {
                csv::ErrorKind::UnequalLengths { pos, expected_len, len } => format!(
                    "line {} has {len} fields, the header has {expected_len}\n  fix: every row needs as many fields as the header; quote fields that contain commas",
                    line_of(pos.as_ref())
                ),
                csv::ErrorKind::Utf8 { pos, .. } => format!(
                    "line {} is not valid UTF-8\n  fix: save the catalogue as UTF-8",
                    line_of(pos.as_ref())
                ),
                _ => e.to_string(),
            },
        };
        let mut cat_warnings = Vec::new();
        let headers = reader.headers().map_err(csv_err)?.clone();
        // A column named twice would be read from its first place by one key and shown
        // under one name twice in `meta`: which is meant is for the catalogue's owner to say.
        let mut named: HashMap<&str, usize> = HashMap::default();
        for (i, h) in headers.iter().enumerate().map(|(i, h)| (i + 1, h.trim())).filter(|(_, h)| !h.is_empty()) {
            if let Some(first) = named.insert(h, i) {
                return Err(CatalogueError::DuplicateColumn { path: path.to_path_buf(), column: h.to_string(), first, second: i });
            }
        }
        // A column without a name (a spreadsheet's or pandas' row numbers) has no key to go
        // under in `meta`: it is left out, said once.
        let unnamed: Vec<usize> = (0..headers.len()).filter(|&i| headers.get(i).is_some_and(|h| h.trim().is_empty())).collect();
        if !unnamed.is_empty() {
            let list = unnamed.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(", ");
            cat_warnings.push(Problem { path: format!("{}:1", path.display()), reason: format!("column {list} has no name in the header; left out") });
        }
        let key_col = match cfg.join_on {
            JoinOn::Path => find(&headers, &cfg.path_column, path, true)?,
            JoinOn::Id => find(&headers, &cfg.id, path, true)?,
        }
        .unwrap_or(0);
        let id_col = find(&headers, &cfg.id, path, false)?;
        let title_col = find(&headers, &cfg.title, path, false)?;
        let url_col = find(&headers, &cfg.url, path, false)?;
        let ra_col = find(&headers, &cfg.ra, path, false)?;
        let dec_col = find(&headers, &cfg.dec, path, false)?;
        let path_col = if cfg.join_on == JoinOn::Path { Some(key_col) } else { None };
        // RA and Dec stay in `meta` as written: the position is what an astronomer looks
        // for on the page and in the item's JSON (the parsed degrees serve the sky filter).
        let mapped: Vec<usize> = [Some(key_col), id_col, title_col, url_col, path_col].into_iter().flatten().collect();
        let meta_cols: Vec<usize> = match &cfg.columns {
            Some(names) => {
                let mut v = Vec::new();
                for n in names {
                    let col = Column { key: "catalogue.columns", name: n.clone(), explicit: true };
                    v.push(find(&headers, &col, path, true)?.unwrap_or(0));
                }
                v
            }
            None => (0..headers.len()).filter(|i| !mapped.contains(i) && !unnamed.contains(i)).collect(),
        };

        let columns = meta_cols.iter().filter_map(|&i| headers.get(i)).map(|h| h.trim().to_string()).collect();
        let position = [ra_col, dec_col].into_iter().flatten().filter_map(|i| headers.get(i)).map(|h| h.trim().to_string()).collect();
        let mut cat = Catalogue { join_on: Some(cfg.join_on), columns, position, warnings: cat_warnings, ..Default::default() };
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(csv_err(e)),
            }
            let line = line_of(record.position());
            let get = |c: Option<usize>| c.and_then(|i| record.get(i)).map(str::trim).filter(|s| !s.is_empty()).map(String::from);
            let raw_key = get(Some(key_col)).unwrap_or_default();
            if raw_key.is_empty() {
                cat.warnings.push(Problem { path: format!("{}:{line}", path.display()), reason: "catalogue row has an empty key; ignored".into() });
                continue;
            }
            let key = match cfg.join_on {
                JoinOn::Path => normalise_path(&raw_key),
                JoinOn::Id => raw_key,
            };
            let mut angle = |c: Option<usize>, hours: bool, range: std::ops::RangeInclusive<f64>, what: &str| {
                let text = get(c)?;
                match parse_angle(&text, hours).filter(|v| range.contains(v)) {
                    Some(v) => Some(v),
                    None => {
                        cat.warnings.push(Problem {
                            path: format!("{}:{line}", path.display()),
                            reason: format!("{what} `{text}` is not an angle in range; shown as written, not used as a position"),
                        });
                        None
                    }
                }
            };
            let ra = angle(ra_col, true, 0.0..=360.0, "RA");
            let dec = angle(dec_col, false, -90.0..=90.0, "Dec");
            // Pages and api/ files alike carry only web links: a `javascript:` or `data:`
            // URL must not become a link in any page or tool that shows it.
            let url = get(url_col).filter(|u| {
                let web = is_web_link(u);
                if !web {
                    cat.warnings.push(Problem {
                        path: format!("{}:{line}", path.display()),
                        reason: format!("link `{u}` is not an http(s) URL; left out"),
                    });
                }
                web
            });
            let row = Row {
                line,
                id: get(id_col),
                title: get(title_col),
                url,
                ra,
                dec,
                meta: meta_cols
                    .iter()
                    .filter_map(|&i| get(Some(i)).map(|v| (headers.get(i).unwrap_or("").trim().to_string(), v)))
                    .collect(),
            };
            if let Some(first) = cat.rows.get(&key) {
                return Err(CatalogueError::DuplicateKey { path: path.to_path_buf(), key, line, first: first.line });
            }
            cat.rows.insert(key, row);
        }
        Ok(cat)
    }

    fn lookup(&self, e: &ScanEntry) -> Option<(&str, &Row)> {
        let key = match self.join_on? {
            JoinOn::Path => &e.rel_str,
            JoinOn::Id => &e.stem,
        };
        self.rows.get_key_value(key.as_str()).map(|(k, r)| (k.as_str(), r))
    }
}

/// Gives every scanned file its item record.
///
/// Two files whose names make the same id (`a b.png` and `a-b.png`; `星.png` and `月.png`),
/// or ids that differ only in case (`M51.png`, `m51.png`), are both published. The file that
/// held the id in the last published site (`held`: the archive path the site's item of
/// that id came from) keeps it, so a file added later never takes the URL of a file
/// already there; failing that, the one whose name is its id as written (only `/` turned
/// into `~`), then the first in path order. The other gets the id followed by a hash of
/// its name. Two files given the very same id by the catalogue: the second is skipped and
/// reported naming both.
pub fn assign(entries: Vec<ScanEntry>, cat: &Catalogue, held: &dyn Fn(&str) -> Option<String>) -> (Vec<Item>, Vec<Problem>, Vec<Problem>) {
    let mut items = Vec::with_capacity(entries.len());
    let mut skipped = Vec::new();
    let mut used_rows: std::collections::HashSet<&str> = Default::default();
    // Each file's catalogue row, the name its id comes from, and the id that name makes.
    let named: Vec<(Option<(&str, &Row)>, String, String)> = entries
        .iter()
        .map(|entry| {
            let row = cat.lookup(entry);
            let name = match row.and_then(|(_, r)| r.id.as_deref()) {
                Some(cid) => cid.to_string(),
                None => entry.rel_str.clone(),
            };
            let id = slug(&name);
            (row, name, id)
        })
        .collect();
    // Per id, the name that keeps it plain, and whether the id is that name as written. Ids
    // that differ only in case collide too: a site copied to a disk or served by a host
    // that ignores case (macOS, Windows, some object stores) would have one folder for both.
    let keys: Vec<String> = named.iter().map(|(_, _, id)| id.to_ascii_lowercase()).collect();
    let mut owner: HashMap<&str, (&str, bool)> = HashMap::with_capacity(named.len());
    let mut claims: HashMap<&str, usize> = HashMap::with_capacity(named.len());
    for ((_, name, id), key) in named.iter().zip(&keys) {
        let as_written = *id == name.replace('/', "~");
        *claims.entry(key).or_default() += 1;
        let keeps = owner.entry(key).or_insert((name, as_written));
        if as_written && !keeps.1 {
            *keeps = (name, true);
        }
    }
    // Where names collide (rare), the file the last site published under its id keeps it.
    // The claimants of each colliding key, gathered in one pass.
    let mut colliding: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, key) in keys.iter().enumerate().filter(|(_, k)| claims[k.as_str()] > 1) {
        colliding.entry(key).or_default().push(i);
    }
    for (key, who) in colliding {
        if let Some(&i) = who.iter().find(|&&i| held(&named[i].2).is_some_and(|p| p == entries[i].rel_str)) {
            owner.insert(key, (&named[i].1, true));
        }
    }
    let mut seen: HashMap<String, String> = HashMap::with_capacity(entries.len());
    for ((entry, (row, name, plain)), key) in entries.into_iter().zip(&named).zip(&keys) {
        if let Some((k, _)) = *row {
            used_rows.insert(k);
        }
        let row = row.map(|(_, r)| r);
        let id = if owner.get(key.as_str()).is_some_and(|o| o.0 == name) { plain.clone() } else { crate::ids::distinct(plain, name) };
        if let Some(other) = seen.get(&id) {
            skipped.push(Problem {
                path: entry.rel_str.clone(),
                reason: format!(
                    "its item id `{id}` is already taken by `{other}`; rename one of the two files or give them distinct ids in the catalogue"
                ),
            });
            continue;
        }
        seen.insert(id.clone(), entry.rel_str.clone());
        let title = row.and_then(|r| r.title.clone()).unwrap_or_else(|| entry.rel_str.clone());
        items.push(Item {
            id,
            title,
            url: row.and_then(|r| r.url.clone()),
            ra: row.and_then(|r| r.ra),
            dec: row.and_then(|r| r.dec),
            meta: row.map(|r| r.meta.clone()).unwrap_or_default(),
            entry,
        });
    }
    let mut warnings = cat.warnings.clone();
    let mut unmatched: Vec<&String> = cat.rows.keys().filter(|k| !used_rows.contains(k.as_str())).collect();
    if !unmatched.is_empty() {
        unmatched.sort();
        let shown: Vec<String> = unmatched.iter().take(5).map(|k| format!("`{k}`")).collect();
        warnings.push(Problem {
            path: "catalogue".into(),
            reason: format!(
                "{} catalogue row(s) match no archive file (e.g. {}); check `join-on` and the path/id column",
                unmatched.len(),
                shown.join(", ")
            ),
        });
    }
    (items, skipped, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_with_any_line_end() {
        for (text, end) in [("a\nb\nc\n", 1), ("a\r\nb\r\nc\r\n", 2), ("a\rb\rc\r", 1)] {
            let mut l = LineStarts::default();
            // In two pieces, cut inside a CR LF.
            let cut = 1 + end;
            l.saw(&text.as_bytes()[..cut]);
            l.saw(&text.as_bytes()[cut..]);
            let at = |c: char| text.find(c).unwrap() as u64;
            assert_eq!((l.line_of(at('a')), l.line_of(at('b')), l.line_of(at('c'))), (1, 2, 3), "{text:?}");
        }
    }

    #[test]
    fn angles_in_degrees_and_sexagesimal() {
        assert_eq!(parse_angle("202.47", true), Some(202.47));
        let ra = parse_angle("13:29:52.7", true).unwrap();
        assert!((ra - 202.4696).abs() < 1e-3, "{ra}");
        let dec = parse_angle("-47 11 43", false).unwrap();
        assert!((dec + 47.1953).abs() < 1e-3, "{dec}");
        assert_eq!(parse_angle("north", false), None);
        assert_eq!(parse_angle("nan", false), None);
    }
}
