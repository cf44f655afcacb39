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

/// What to do about a catalogue with no rows.
const NO_ROWS_FIX: &str = "complete the catalogue export (the site keeps being served as it is until then), or remove [catalogue] from the config to build without one";

/// Above this share of the items without a catalogue row, the build warns: a catalogue cut
/// short (an export stopped halfway) is otherwise silent. Archives that catalogue only some
/// of their images stay under it and get no nightly warning.
pub const UNCATALOGUED_WARN_SHARE: f64 = 0.5;

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
    /// The catalogue file, for messages (empty when no catalogue is configured).
    path: std::path::PathBuf,
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
        // An export that failed at cron time leaves an empty file, or its header alone:
        // taken as it is, every item would lose its title, link and columns without a word.
        if headers.iter().all(|h| h.trim().is_empty()) {
            return Err(CatalogueError::Csv { path: path.to_path_buf(), message: format!("the file is empty (no header, no rows)\n  fix: {NO_ROWS_FIX}") });
        }
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
        let mut cat = Catalogue { join_on: Some(cfg.join_on), path: path.to_path_buf(), columns, position, warnings: cat_warnings, ..Default::default() };
        let mut record = csv::StringRecord::new();
        let mut records = 0usize;
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => records += 1,
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
        if records == 0 {
            return Err(CatalogueError::Csv { path: path.to_path_buf(), message: format!("it has a header but no rows\n  fix: {NO_ROWS_FIX}") });
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

/// What the served site (the last one published) says about its ids, for `assign_served`.
pub struct Served<'a> {
    /// Its ids (its `api/ids.json`), in any order; empty when there is no served site or it
    /// has no `api/` (a site built without a model).
    pub ids: &'a [String],
    /// The archive path the served item of an id came from (its `api/items/<id>.json`).
    /// Costs a file read: asked only about ids that collide or that a file may keep.
    pub held: &'a dyn Fn(&str) -> Option<String>,
    /// How many items had a catalogue row in the last build (its report), if it said: the
    /// warning about items without one is given again only when fewer have one now.
    pub catalogued_before: Option<usize>,
    /// Set to how many items have a catalogue row now.
    pub catalogued: std::cell::Cell<usize>,
}

/// Gives every scanned file its item record, as `assign_served` does for a build with no
/// served ids (`held` is still asked where names collide).
pub fn assign(entries: Vec<ScanEntry>, cat: &Catalogue, held: &dyn Fn(&str) -> Option<String>) -> (Vec<Item>, Vec<Problem>, Vec<Problem>) {
    assign_served(entries, cat, &Served { ids: &[], held, catalogued_before: None, catalogued: Default::default() })
}

/// Gives every scanned file its item record.
///
/// Two files whose names make the same id (`a b.png` and `a-b.png`; `星.png` and `月.png`),
/// or ids that differ only in case (`M51.png`, `m51.png`), are both published. A file the
/// served site published under its id followed by a hash (see below) keeps that id while
/// it stays in the archive, even once the file that made it collide is gone: its URL
/// never changes, and the plain id is free for a file that claims it later. Among the
/// others, the file that held the id in the served site (`served.held`: the archive path
/// the site's item of that id came from) keeps it, so a file added later never takes the
/// URL of a file already there; failing that, the one whose name is its id as written
/// (only `/` turned into `~`), then the first in path order. The other gets the id
/// followed by a hash of its name. Two files given the very same id by the catalogue: the
/// second is skipped and reported naming both.
///
/// The served ids are looked through once; `held` (a file read) is asked only about a
/// file whose own suffixed id the served site lists, and about the claimants of colliding
/// ids, so a nightly build of a large archive reads next to none. Same entries, catalogue
/// and served site: same ids.
pub fn assign_served(entries: Vec<ScanEntry>, cat: &Catalogue, served: &Served) -> (Vec<Item>, Vec<Problem>, Vec<Problem>) {
    let held = served.held;
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
    // The files that keep the suffixed id the served site gave them. Only the served ids
    // shaped like one are gathered (few), by their stem; a file whose plain id has that
    // stem is checked against them, and its path confirmed by `held`.
    let mut suffixed: HashMap<&str, std::collections::HashSet<&str>> = HashMap::new();
    for id in served.ids {
        if let Some(stem) = crate::ids::suffixed_stem(id) {
            suffixed.entry(stem).or_default().insert(id);
        }
    }
    let kept: Vec<Option<String>> = named
        .iter()
        .zip(&entries)
        .map(|((_, name, plain), entry)| {
            let listed = suffixed.get(crate::ids::distinct_stem(plain))?;
            let id = crate::ids::distinct(plain, name);
            // A long name's plain id is already cut and suffixed (`slug`): it is its own
            // id, with nothing to keep and no file to read.
            (id != *plain && listed.contains(id.as_str()) && held(&id).is_some_and(|p| p == entry.rel_str)).then_some(id)
        })
        .collect();
    // Per id, the name that keeps it plain, and whether the id is that name as written. Ids
    // that differ only in case collide too: a site copied to a disk or served by a host
    // that ignores case (macOS, Windows, some object stores) would have one folder for both.
    // A file keeping its suffixed id claims no plain one.
    let keys: Vec<String> = named.iter().map(|(_, _, id)| id.to_ascii_lowercase()).collect();
    let claimants = || named.iter().zip(&keys).enumerate().filter(|(i, _)| kept[*i].is_none());
    let mut owner: HashMap<&str, (&str, bool)> = HashMap::with_capacity(named.len());
    let mut claims: HashMap<&str, usize> = HashMap::with_capacity(named.len());
    for (_, ((_, name, id), key)) in claimants() {
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
    for (i, (_, key)) in claimants().filter(|(_, (_, k))| claims[k.as_str()] > 1) {
        colliding.entry(key).or_default().push(i);
    }
    for (key, who) in colliding {
        if let Some(&i) = who.iter().find(|&&i| held(&named[i].2).is_some_and(|p| p == entries[i].rel_str)) {
            owner.insert(key, (&named[i].1, true));
        }
    }
    let mut seen: HashMap<String, String> = HashMap::with_capacity(entries.len());
    // Items with no catalogue row: how many, and the first few.
    let (mut uncatalogued, mut examples) = (0usize, Vec::new());
    for (((entry, (row, name, plain)), key), kept) in entries.into_iter().zip(&named).zip(&keys).zip(kept) {
        if let Some((k, _)) = *row {
            used_rows.insert(k);
        }
        let row = row.map(|(_, r)| r);
        let id = match kept {
            Some(id) => id,
            None if owner.get(key.as_str()).is_some_and(|o| o.0 == name) => plain.clone(),
            None => crate::ids::distinct(plain, name),
        };
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
        if row.is_none() {
            uncatalogued += 1;
            if examples.len() < 3 {
                examples.push(entry.rel_str.clone());
            }
        }
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
    // A catalogue cut short (an export that stopped halfway) leaves most items without
    // their fields: said, as a catalogue of only some of the images is not.
    let catalogued = items.len() - uncatalogued;
    served.catalogued.set(catalogued);
    // Said once, not every night: again only when fewer items have a row than last time.
    let fewer = served.catalogued_before.is_none_or(|before| catalogued < before);
    if cat.join_on.is_some() && fewer && uncatalogued as f64 > UNCATALOGUED_WARN_SHARE * items.len() as f64 {
        warnings.push(Problem {
            path: cat.path.display().to_string(),
            reason: format!(
                "{uncatalogued} of the {} items have no row in the catalogue (e.g. {}): their pages and api/items/<id>.json lose the catalogue's title, link and columns; \
                 if the catalogue export was cut short, complete it, else check `join-on` and the path/id column",
                items.len(),
                crate::error::backticked(&examples)
            ),
        });
    }
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

    fn settings() -> CatalogueSettings {
        let col = |key, name: &str| Column { key, name: name.into(), explicit: false };
        CatalogueSettings {
            path: "exports/cat.csv".into(),
            join_on: JoinOn::Path,
            id: col("catalogue.id-column", "id"),
            path_column: col("catalogue.path-column", "path"),
            title: col("catalogue.title-column", "title"),
            url: col("catalogue.url-column", "url"),
            ra: col("catalogue.ra-column", "ra"),
            dec: col("catalogue.dec-column", "dec"),
            columns: None,
        }
    }

    fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        Catalogue::from_reader(text.as_bytes(), &settings())
    }

    fn entries(paths: &[&str]) -> Vec<ScanEntry> {
        paths
            .iter()
            .map(|p| ScanEntry {
                rel: p.into(),
                rel_str: p.to_string(),
                abs: Path::new("/archive").join(p),
                format: crate::scan::Format::Png,
                stem: Path::new(p).file_stem().unwrap().to_string_lossy().into_owned(),
                size: 1,
                meta: None,
            })
            .collect()
    }

    #[test]
    fn a_catalogue_with_no_rows_stops_the_build_naming_the_file_and_the_fix() {
        for (text, what) in [
            ("", "the file is empty (no header, no rows)"),
            ("\n", "the file is empty (no header, no rows)"),
            ("path,title\n", "it has a header but no rows"),
            ("path,title", "it has a header but no rows"),
            ("\u{feff}path,title\r\n", "it has a header but no rows"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "catalogue exports/cat.csv: {what}\n  fix: complete the catalogue export (the site keeps being served as it is until then), or remove [catalogue] from the config to build without one"
                ),
                "{text:?}"
            );
        }
        // One row is a catalogue.
        assert_eq!(parse("path,title\na.png,A\n").unwrap().rows.len(), 1);
    }

    fn uncatalogued_warning(cat: &Catalogue, paths: &[&str]) -> Option<Problem> {
        let (items, _, warnings) = assign(entries(paths), cat, &|_| None);
        assert_eq!(items.len(), paths.len());
        warnings.into_iter().find(|w| w.reason.contains("have no row in the catalogue"))
    }

    #[test]
    fn a_catalogue_cut_short_is_a_warning_and_a_partial_one_is_not() {
        let paths: Vec<String> = (0..223).map(|i| format!("img{i:03}.png")).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let rows = |n: usize| (0..n).fold(String::from("path,title\n"), |t, i| t + &format!("img{i:03}.png,Image {i}\n"));
        // An export cut after 5 rows of 223.
        let w = uncatalogued_warning(&parse(&rows(5)).unwrap(), &paths).expect("a warning");
        assert_eq!(w.path, "exports/cat.csv");
        assert_eq!(
            w.reason,
            "218 of the 223 items have no row in the catalogue (e.g. `img005.png`, `img006.png`, `img007.png`): their pages and api/items/<id>.json lose the catalogue's title, link and columns; \
             if the catalogue export was cut short, complete it, else check `join-on` and the path/id column"
        );
        // At the threshold and under it: an archive that catalogues some of its images.
        let half = (UNCATALOGUED_WARN_SHARE * 222.0) as usize;
        assert!(uncatalogued_warning(&parse(&rows(half)).unwrap(), &paths[..222]).is_none(), "exactly half is not more than half");
        assert!(uncatalogued_warning(&parse(&rows(200)).unwrap(), &paths).is_none());
        assert!(uncatalogued_warning(&parse(&rows(half - 1)).unwrap(), &paths[..222]).is_some());
        // A catalogue that covered as few items last time: said once, not every night.
        let cat = parse(&rows(5)).unwrap();
        let again = |before| {
            let served = Served { ids: &[], held: &|_| None, catalogued_before: Some(before), catalogued: Default::default() };
            let (_, _, warnings) = assign_served(entries(&paths), &cat, &served);
            assert_eq!(served.catalogued.get(), 5);
            warnings.iter().any(|w| w.reason.contains("have no row in the catalogue"))
        };
        assert!(!again(5) && again(6));
        // No catalogue configured: nothing to say.
        assert!(uncatalogued_warning(&Catalogue::default(), &paths).is_none());
    }

    /// The ids `assign_served` gives `paths` against a served site of `served` (id → path).
    fn ids_against(paths: &[&str], served: &[(String, &str)], asked: &std::cell::RefCell<Vec<String>>) -> Vec<String> {
        let ids: Vec<String> = served.iter().map(|(id, _)| id.clone()).collect();
        let held = |id: &str| {
            asked.borrow_mut().push(id.to_string());
            served.iter().find(|(i, _)| i == id).map(|(_, p)| p.to_string())
        };
        let (items, skipped, _) = assign_served(entries(paths), &Catalogue::default(), &Served { ids: &ids, held: &held, catalogued_before: None, catalogued: Default::default() });
        assert!(skipped.is_empty(), "{skipped:?}");
        items.into_iter().map(|i| i.id).collect()
    }

    #[test]
    fn a_file_keeps_the_suffixed_id_it_was_published_under() {
        use crate::ids::distinct;
        let asked = std::cell::RefCell::new(Vec::new());
        let ab = distinct("coll~a-b.png", "coll/a-b.png");
        let m51 = distinct("coll~m51.png", "coll/m51.png");
        // The first build with all four: the usual rules.
        let all = ["coll/M51.png", "coll/a b.png", "coll/a-b.png", "coll/m51.png"];
        let first = ids_against(&all, &[], &asked);
        assert_eq!(first, ["coll~M51.png", &distinct("coll~a-b.png", "coll/a b.png"), "coll~a-b.png", &m51]);
        // The served site as a QA run had it: `a b.png` first, `a-b.png` added later.
        let served =
            vec![("coll~M51.png".to_string(), "coll/M51.png"), ("coll~a-b.png".into(), "coll/a b.png"), (ab.clone(), "coll/a-b.png"), (m51.clone(), "coll/m51.png")];
        assert_eq!(ids_against(&all, &served, &asked), ["coll~M51.png", "coll~a-b.png", ab.as_str(), m51.as_str()], "a rebuild changes nothing");
        // The file that made them collide goes: the others keep their URLs.
        asked.borrow_mut().clear();
        assert_eq!(ids_against(&["coll/M51.png", "coll/a-b.png", "coll/m51.png"], &served, &asked), ["coll~M51.png", ab.as_str(), m51.as_str()]);
        assert_eq!(ids_against(&["coll/a-b.png", "coll/m51.png"], &served, &asked), [ab.as_str(), m51.as_str()]);
        // Only the files whose own suffixed id is served were looked up.
        assert!(asked.borrow().iter().all(|id| *id == ab || *id == m51), "{:?}", asked.borrow());
        // The plain id is free for a file that claims it later.
        let later = vec![(ab.clone(), "coll/a-b.png"), (m51.clone(), "coll/m51.png")];
        assert_eq!(ids_against(&["coll/M51.png", "coll/a b.png", "coll/a-b.png", "coll/m51.png"], &later, &asked), ["coll~M51.png", "coll~a-b.png", ab.as_str(), m51.as_str()]);
        // A suffixed id the served site gave another file is not taken: the path must match.
        let other = vec![(ab.clone(), "elsewhere/a-b.png")];
        assert_eq!(ids_against(&["coll/a-b.png"], &other, &asked), ["coll~a-b.png"]);
        // Without a served site, the same names always make the same ids.
        assert_eq!(ids_against(&all, &[], &asked), first);
        // Long names (ids cut and suffixed by `slug` itself) are looked up in nothing.
        let long: Vec<String> = (0..3).map(|i| format!("{}/img{i}.png", "deep-folder".repeat(12))).collect();
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        let ids = ids_against(&long, &[], &asked);
        let served: Vec<(String, &str)> = ids.iter().cloned().zip(long.iter().copied()).collect();
        asked.borrow_mut().clear();
        assert_eq!(ids_against(&long, &served, &asked), ids);
        assert!(asked.borrow().is_empty(), "{:?}", asked.borrow());
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
