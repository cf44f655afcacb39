//! The HTML site: item pages, the map's data, galleries, `404.html` and `sitemap.xml`.
//!
//! Pages are tera templates compiled into the binary (`templates/`), each replaceable by a
//! file of the same name in the site's own `templates/` folder; assets likewise (`static/`).
//! Tera escapes every value in `.html` templates, so file names and catalogue fields cannot
//! inject markup; archive links are kept only when they are http(s). HTML is minified.
//!
//! The map (`index.html`, `static/map.js`) reads compact binary files, never per-item JSON:
//! `map/points.u16` (x, y quantised over the map's bounds) in *map order*, the leaves of a
//! k-d tree over the layout of at most `TILE` items each. Each leaf is a tile with a
//! thumbnail atlas (`map/tiles/<t>.jpg`) and its ids and titles (`map/tiles/<t>.json`),
//! loaded by viewport as the user zooms in. The README's "The map's files" documents them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use crate::api::Structure;
use crate::catalogue::Item;
use crate::config::Settings;
use crate::neighbours::{Neighbours, NONE};
use crate::publish::Release;

mod item_html;
mod tiles;

/// Items per map tile (one thumbnail atlas each).
pub const TILE: usize = 256;
/// Atlas cell, in pixels, and cells per atlas row.
const CELL: u32 = 32;
const ATLAS_COLS: u32 = 16;
/// Items per search chunk (`map/names/<c>.json`).
const NAMES_CHUNK: usize = 65_536;
/// Catalogue columns offered as map colourings when the config names none.
const COLOUR_COLUMNS: usize = 8;
/// Category labels kept per colouring: past it, the rarer values share one label, "other".
const MAX_LABELS: usize = 256;
/// A text value longer than this (in characters) is free text rather than a category: its
/// column is left out of the default colourings, and its label is cut to this length.
const LONG_LABEL: usize = 64;
/// Items per gallery page.
const PAGE: usize = 500;
/// URLs per sitemap file (the protocol's limit is 50,000).
const SITEMAP_URLS: usize = 50_000;
/// Cards beside an item's neighbours: most similar inside and outside its cluster.
const SIDE_CARDS: usize = 6;

const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("index.html", include_str!("../templates/index.html")),
    ("item.html", include_str!("../templates/item.html")),
    ("gallery.html", include_str!("../templates/gallery.html")),
    ("404.html", include_str!("../templates/404.html")),
];

const BUILTIN_STATIC: &[(&str, &[u8])] = &[
    ("map.js", include_bytes!("../static/map.js")),
    ("map-budget.js", include_bytes!("../static/map-budget.js")),
    ("map-colour.js", include_bytes!("../static/map-colour.js")),
    ("map-fetch.js", include_bytes!("../static/map-fetch.js")),
    ("map-gl.js", include_bytes!("../static/map-gl.js")),
    ("map-index.js", include_bytes!("../static/map-index.js")),
    ("map-search.js", include_bytes!("../static/map-search.js")),
    ("map-tiles.js", include_bytes!("../static/map-tiles.js")),
    ("item.js", include_bytes!("../static/item.js")),
    ("site.css", include_bytes!("../static/site.css")),
];

/// What the site is made of.
pub struct Input<'a> {
    pub items: &'a [&'a Item],
    /// Each item's cached thumbnail, and preview if previews are made.
    pub thumbs: &'a [&'a Path],
    pub previews: &'a [Option<&'a Path>],
    /// The identity of each thumbnail and preview, where the ingest stage has it (spares
    /// a `stat` of each when they are linked into the release); empty: not known.
    pub known: &'a [Known],
    /// Neighbours, map and structure: absent when no model is configured.
    pub model: Option<Model<'a>>,
    /// Whether `eval/` exists (a link in the navigation).
    pub eval: bool,
    /// The catalogue's metadata columns, in its order (empty without a catalogue).
    pub columns: &'a [String],
    /// `[fits] keywords`, whose values follow the catalogue's columns in items' `meta`.
    pub keywords: &'a [String],
}

/// The identity of an item's cached thumbnail and preview, where known.
pub type Known = (Option<crate::fsutil::FileId>, Option<crate::fsutil::FileId>);

pub struct Model<'a> {
    pub nb: &'a Neighbours,
    pub xy: &'a [f32],
    pub st: &'a Structure<'a>,
    /// Neighbours shown on an item's page.
    pub show: usize,
    /// Whether the items of the last build kept their places on the map (so its tiles can
    /// be kept and grown: see `tiles`).
    pub places_kept: bool,
}

/// What rendering did, for the report.
#[derive(Debug, Default)]
pub struct Rendered {
    pub pages: usize,
    pub tiles: usize,
    pub atlases_made: usize,
    /// Thumbnails decoded into atlases (an atlas of additions starts from its last version's
    /// kept cells, so a night decodes only the new items' thumbnails).
    pub thumbnails_decoded: usize,
    /// Seconds spent on each part: the map, the item pages, the galleries and the rest
    /// (the item pages beside the others, so their times overlap).
    pub parts: Vec<(String, f64)>,
    /// Threads that put the item pages: `fsutil::IO_THREADS` when the recycled release had
    /// left the page cache, else rayon's (one a core).
    pub page_threads: usize,
}

#[derive(Serialize, Clone, Copy)]
struct SiteCtx<'a> {
    title: &'a str,
    /// The number of items: absent on item pages, whose bytes must not change when the
    /// archive grows (item.js shows the count from `api/manifest.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<usize>,
    eval: bool,
}

/// The outlier band an item page shows without script: the smallest of these shares of
/// the archive, strangest first, that holds its rank. Unlike the rank itself (which
/// shifts whenever a stranger image arrives, and which item.js shows from the item's
/// JSON), the band of an item stays put as the archive grows alike, so the page's bytes do.
const OUTLIER_BANDS: [(u64, &str); 6] = [(1, "0.1 %"), (10, "1 %"), (50, "5 %"), (100, "10 %"), (250, "25 %"), (500, "50 %")];

/// "the strangest 5 %", or `None` past the strangest half.
fn outlier_band(rank: u32, n: usize) -> Option<&'static str> {
    // rank / n ≤ per_mille / 1000, in integers.
    OUTLIER_BANDS.iter().find(|(per_mille, _)| rank as u64 * 1000 <= per_mille * n as u64).map(|(_, band)| *band)
}

/// The templates, parsed; the start of every page's input digest: the templates'
/// text, this program (a new binary may render the same data differently) and the format;
/// and whether the item page is the built-in one (neither `base.html` nor `item.html`
/// is the site's own), which `item_html` can write without tera.
fn load_templates(own: Option<&Path>) -> Result<(tera::Tera, blake3::Hasher, bool)> {
    let mut tera = tera::Tera::default();
    let mut all: Vec<(String, String)> = BUILTIN_TEMPLATES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    let mut builtin_item = true;
    if let Some(dir) = own {
        for (name, text) in all.iter_mut() {
            let p = dir.join(&*name);
            if p.is_file() {
                *text = std::fs::read_to_string(&p).with_context(|| format!("cannot read the template {}", p.display()))?;
                builtin_item &= name != "base.html" && name != "item.html";
            }
        }
    }
    // Minified once here, not per page: minify-html keeps tera's {{ }} and {% %} intact, and
    // the values tera inserts are escaped text, so every page comes out minified.
    let mut cfg = minify_html::Cfg::new();
    cfg.minify_css = true;
    cfg.preserve_brace_template_syntax = true;
    cfg.keep_closing_tags = true;
    cfg.keep_html_and_head_opening_tags = true;
    let all: Vec<(String, String)> =
        all.into_iter().map(|(n, t)| (n, String::from_utf8_lossy(&minify_html::minify(t.as_bytes(), &cfg)).into_owned())).collect();
    let mut salt = blake3::Hasher::new();
    salt.update(b"simsite-page-input-v1\0");
    salt.update(&program_stamp());
    for (name, text) in &all {
        for part in [name.as_bytes(), text.as_bytes()] {
            salt.update(&(part.len() as u64).to_le_bytes());
            salt.update(part);
        }
    }
    tera.add_raw_templates(all).map_err(|e| {
        let msg = chain(&e);
        anyhow::anyhow!("a page template does not parse: {msg}\n  fix: correct the file of that name in {}", own.map(|d| d.display().to_string()).unwrap_or("templates/".into()))
    })?;
    Ok((tera, salt, builtin_item))
}

/// Renders each page template on example pages, once with every optional part present
/// and once with none, so that `simsite check` finds a site's own template that does not
/// parse, or that names a value pages do not have, before a build decodes any image (a
/// build would stop at it only when it renders). A template that cannot render the first
/// is an error; one that renders it but not the second (`{{ item.sky.text }}` unguarded,
/// fine while every item has a position) is returned as a warning: a page without that
/// part would stop the build. Without a site's own templates there is nothing to check:
/// the built-in ones are rendered by every test build, and `item_html`'s tests render
/// every shape of an item page.
pub fn check_templates(settings: &Settings) -> Result<Vec<String>> {
    let Some(own) = settings.site.templates.as_deref() else {
        return Ok(Vec::new());
    };
    let mut warnings = Vec::new();
    let (tera, _, _) = load_templates(Some(own))?;
    let meta = vec![("band".to_string(), "r".to_string())];
    for full in [true, false] {
        let site = SiteCtx { title: &settings.title, items: Some(2), eval: full };
        let item_site = SiteCtx { items: None, ..site };
        let cards = || if full { vec![NeighbourCard { item: 1, id: "b", title: "b.fits", score: 0.9 }] } else { Vec::new() };
        let item = ItemPage {
            site: &item_site,
            root: "../../",
            body_id: "a",
            item: ItemCtx {
                id: "a",
                title: "a.fits",
                path: "a.fits",
                url: full.then_some("https://archive.example/a"),
                meta: if full { &meta } else { &[] },
                picture: if full { "previews" } else { "thumbs" },
                outliers: full,
                outlier_band: full.then_some("5 %"),
                cluster_id: full.then_some(0),
                map: full.then(|| ("50".to_string(), "50".to_string())),
                sky: Sky::of(full.then_some(10.0), Some(-5.0), None),
            },
            neighbours: cards(),
            inside: cards(),
            outside: cards(),
        };
        let card = || Card { id: "b", title: "b.fits", note: full.then(|| "note".to_string()) };
        let gallery = GalleryPage {
            intro: if full { "Intro.".into() } else { String::new() },
            groups: if full { vec![Group { title: "Cluster 0".into(), href: "0/".into(), cards: vec![card()] }] } else { Vec::new() },
            cards: if full { vec![card()] } else { Vec::new() },
            pages: if full { vec![PageLink { n: 1, href: "./".into(), current: true }] } else { Vec::new() },
            empty: if full { String::new() } else { "Nothing here.".into() },
            ..GalleryPage::new(&site, "../", "Clusters")
        };
        let plain = PlainPage { site: &site, root: "" };
        let rendered = [
            render_page(&tera, "item.html", &item),
            render_page(&tera, "gallery.html", &gallery),
            render_page(&tera, "index.html", &plain),
            render_page(&tera, "404.html", &plain),
        ];
        for r in rendered {
            match (r, full) {
                (Ok(_), _) => {}
                (Err(e), true) => anyhow::bail!("{e}\n  fix: correct the template of that name in {}", own.display()),
                (Err(e), false) => warnings.push(format!(
                    "a page without some optional part (a sky position, an archive link, a cluster, neighbours) {e:#}; a build stops there if an item lacks it (guard it with {{% if %}} in {})",
                    own.display()
                )),
            }
        }
    }
    Ok(warnings)
}

/// Which program this is: its file's identity and times. Unknown, it is this run alone,
/// so no page is taken as already rendered.
fn program_stamp() -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    match std::env::current_exe().and_then(std::fs::metadata) {
        Ok(m) => [m.dev(), m.ino(), m.size(), m.mtime() as u64, m.mtime_nsec() as u64].iter().flat_map(|v| v.to_le_bytes()).collect(),
        Err(_) => format!("{:?} {}", std::time::SystemTime::now(), std::process::id()).into_bytes(),
    }
}

/// Each item's card key: the digest of what a card showing it is made of besides its score
/// (id and title). An item page's input names its cards by these keys rather than
/// serialising the same ids and titles again on every page that shows them.
fn card_keys(items: &[&crate::catalogue::Item]) -> Vec<[u8; 16]> {
    use rayon::prelude::*;
    items
        .par_iter()
        .map(|it| {
            let mut h = blake3::Hasher::new();
            for part in [it.id.as_bytes(), it.title.as_bytes()] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part);
            }
            h.finalize().as_bytes()[..16].try_into().unwrap()
        })
        .collect()
}

/// The digest of everything a page's bytes are made from: `salt` (templates, program)
/// and its context. Tera without its `builtins` feature has no clock or randomness, so
/// the same digest renders the same bytes.
/// Cards are named by their keys (see `card_keys`).
fn item_page_input(salt: &blake3::Hasher, page: &ItemPage, keys: &[[u8; 16]]) -> Result<crate::publish::index::Digest> {
    let mut h = salt.clone();
    h.update(b"item page\0");
    h.update(&serde_json::to_vec(&(page.site, page.root, page.body_id, &page.item))?);
    for list in [&page.neighbours, &page.inside, &page.outside] {
        h.update(&(list.len() as u64).to_le_bytes());
        for c in list {
            h.update(&keys[c.item as usize]);
            h.update(&shown_key(c.score));
        }
    }
    Ok(h.finalize().as_bytes()[..16].try_into().unwrap())
}

/// A tera error with its causes (the line and the reason are in the causes).
fn chain(e: &tera::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn render_page(tera: &tera::Tera, name: &str, ctx: &impl Serialize) -> Result<Vec<u8>> {
    let ctx = tera::Context::from_serialize(ctx)?;
    let html = tera.render(name, &ctx).map_err(|e| anyhow::anyhow!("cannot render {name}: {}", chain(&e)))?;
    Ok(html.into_bytes())
}

/// An http(s) archive link, or nothing (a `javascript:` or other scheme from a catalogue
/// must not become a link).
fn safe_url(url: Option<&str>) -> Option<&str> {
    url.filter(|u| crate::catalogue::is_web_link(u))
}

#[derive(Serialize)]
struct Card<'a> {
    id: &'a str,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize)]
struct NeighbourCard<'a> {
    /// The item shown. A card's bytes are its item's id and title (its card key) and its
    /// score: a field added here must be added to `item_page_input` too.
    #[serde(skip)]
    item: u32,
    id: &'a str,
    title: &'a str,
    /// Shown with three decimals, formatted only when the page is rendered (most pages of a
    /// nightly build are kept unrendered, and formatting ~24 scores a page was ~0.6 s of CPU
    /// a night at 140,000 items).
    #[serde(serialize_with = "three_decimals")]
    score: f32,
}

fn three_decimals<S: serde::Serializer>(v: &f32, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:.3}"))
}

/// A key of how `three_decimals` shows a score, without formatting it: two scores with one
/// key show the same text. (Not the score's bits: the scores of a kept neighbour list move
/// in their last bits from one build to the next, and every page would be made again.) The
/// text is the score times 1,000 (exact in f64) rounded to an integer, so it is fixed by
/// which half-unit that value lies in, whether it lies on a half exactly (a tie, however the
/// formatting breaks it), and its sign (`-0.000`).
fn shown_key(score: f32) -> [u8; 10] {
    let twice = score as f64 * 2000.0;
    let mut key = [0u8; 10];
    key[..8].copy_from_slice(&(twice.floor() as i64).to_le_bytes());
    key[8] = (twice.fract() == 0.0) as u8;
    key[9] = score.is_sign_negative() as u8;
    key
}

#[derive(Serialize)]
struct ItemCtx<'a> {
    id: &'a str,
    title: &'a str,
    path: &'a str,
    url: Option<&'a str>,
    meta: &'a [(String, String)],
    /// `previews` when the item has a preview, else `thumbs`.
    picture: &'static str,
    /// Whether there is an outlier rank (item.js shows it from `api/items/<id>.json`).
    outliers: bool,
    /// The strangest share of the archive it is in (`OUTLIER_BANDS`), if in the first half.
    outlier_band: Option<&'static str>,
    cluster_id: Option<u32>,
    /// Where it sits on the overview, in percent from the left and the top.
    map: Option<(String, String)>,
    /// Where it is on the sky, when the catalogue or the FITS header says.
    sky: Option<Sky>,
}

/// An item's place on the sky for its page: sexagesimal text, and decimal degrees for the
/// links to SIMBAD and Aladin around it (digits, a point and a minus: nothing to escape in
/// HTML or in a URL), sized to the image where its WCS says how far it reaches.
#[derive(Serialize)]
struct Sky {
    text: String,
    ra: String,
    dec: String,
    /// SIMBAD's search radius, arcminutes: the image's half-diagonal (2′ when not known).
    radius: String,
    /// Aladin Lite's field of view, degrees: the image and some sky around it (0.25°).
    fov: String,
}

impl Sky {
    /// `fov`: how far the image reaches across (`meta.fov`), degrees.
    fn of(ra: Option<f64>, dec: Option<f64>, fov: Option<f64>) -> Option<Sky> {
        let (ra, dec) = ra.zip(dec).filter(|(r, d)| r.is_finite() && d.is_finite() && d.abs() <= 90.0)?;
        let fov = fov.filter(|f| f.is_finite() && *f > 0.0);
        let radius = fov.map_or(2.0, |f| (f / 2.0 * std::f64::consts::SQRT_2 * 60.0).clamp(0.1, 60.0));
        let view = fov.map_or(0.25, |f| (f * 1.5).clamp(1.0 / 60.0, 180.0));
        let (ra_text, dec_text) = crate::wcs::decimal(ra, dec);
        let (l, b) = crate::wcs::galactic(ra, dec);
        Some(Sky {
            // Galactic coordinates beside: where it is in or out of the Milky Way's plane.
            text: format!("{} (l {:.4}°, b {:+.4}°)", crate::wcs::sexagesimal(ra, dec), l, b),
            ra: ra_text,
            dec: dec_text,
            radius: crate::wcs::significant(radius, 3),
            fov: crate::wcs::significant(view, 3),
        })
    }
}

/// What an item page is rendered from. `item_page_input` digests every field (the cards
/// by their keys): a field added here must be added there.
#[derive(Serialize)]
struct ItemPage<'a> {
    site: &'a SiteCtx<'a>,
    root: &'static str,
    /// `data-id` of the page's body, for item.js.
    body_id: &'a str,
    item: ItemCtx<'a>,
    neighbours: Vec<NeighbourCard<'a>>,
    inside: Vec<NeighbourCard<'a>>,
    outside: Vec<NeighbourCard<'a>>,
}

#[derive(Serialize)]
struct Group<'a> {
    title: String,
    href: String,
    cards: Vec<Card<'a>>,
}

#[derive(Serialize)]
struct PageLink {
    n: usize,
    href: String,
    current: bool,
}

#[derive(Serialize)]
struct GalleryPage<'a> {
    site: &'a SiteCtx<'a>,
    root: &'a str,
    heading: String,
    intro: String,
    groups: Vec<Group<'a>>,
    cards: Vec<Card<'a>>,
    pages: Vec<PageLink>,
    empty: String,
}

impl<'a> GalleryPage<'a> {
    /// A page with a heading and nothing in it yet.
    fn new(site: &'a SiteCtx<'a>, root: &'a str, heading: impl Into<String>) -> Self {
        GalleryPage {
            site,
            root,
            heading: heading.into(),
            intro: String::new(),
            groups: Vec::new(),
            cards: Vec::new(),
            pages: Vec::new(),
            empty: String::new(),
        }
    }
}

#[derive(Serialize)]
struct PlainPage<'a> {
    site: &'a SiteCtx<'a>,
    root: &'a str,
}

/// Links every item's cached thumbnail and preview into the release (`thumbs/`,
/// `previews/`). Needs neither the map nor the structure, so a build does it while the
/// layout runs.
pub fn put_thumbnails(release: &Release, items: &[&Item], thumbs: &[&Path], previews: &[Option<&Path>], known: &[Known]) -> Result<()> {
    (0..items.len()).into_par_iter().try_for_each(|i| -> Result<()> {
        let id = &items[i].id;
        let (tm, pm) = known.get(i).copied().unwrap_or((None, None));
        release.put_file_known(&format!("thumbs/{id}.jpg"), thumbs[i], tm)?;
        match previews[i] {
            Some(p) => release.put_file_known(&format!("previews/{id}.jpg"), p, pm),
            None => Ok(()),
        }
    })
}

/// Renders everything but `api/`, `thumbs/` and `previews/` into the release.
pub fn render(release: &Release, settings: &Settings, input: &Input, ui: &crate::ui::Ui) -> Result<Rendered> {
    let (tera, salt, builtin_item) = load_templates(settings.site.templates.as_deref())?;
    let site = SiteCtx { title: &settings.title, items: Some(input.items.len()), eval: input.eval };
    let item_site = SiteCtx { items: None, ..site };

    put_static(release, settings.site.statics.as_deref())?;

    // The map, the galleries and the other pages are made beside the item pages (none needs
    // another): the item pages keep both cores busy while the others are in their serial
    // parts. Each part's time is its own, so they overlap.
    let overview = input.model.as_ref().map(|m| Overview { b: crate::api::bounds(m.xy) });
    let others = || -> Result<Rendered> {
        let mut out = Rendered::default();
        let t = std::time::Instant::now();
        if let Some(m) = &input.model {
            map_files(release, settings, input, m, ui, &mut out)?;
            ui.info(format!("map: {} tiles ({} atlases made, {} thumbnails decoded)", out.tiles, out.atlases_made, out.thumbnails_decoded));
        }
        out.parts.push(("map".into(), t.elapsed().as_secs_f64()));
        let t = std::time::Instant::now();
        let plain = PlainPage { site: &site, root: "" };
        if input.model.is_some() {
            release.put("index.html", &render_page(&tera, "index.html", &plain)?)?;
        } else {
            let cards = input.items.iter().take(PAGE).map(|it| Card { id: &it.id, title: &it.title, note: None }).collect();
            let page = GalleryPage {
                intro: "No model is configured, so there is no map, no neighbours and no clusters: only the images.".into(),
                cards,
                ..GalleryPage::new(&site, "", &settings.title)
            };
            release.put("index.html", &render_page(&tera, "gallery.html", &page)?)?;
        }
        galleries(release, &tera, &site, input, settings.structure.duplicate_threshold)?;
        out.parts.push(("galleries".into(), t.elapsed().as_secs_f64()));
        let t = std::time::Instant::now();
        let root404 = settings.site.base_url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string())).unwrap_or("/".into());
        release.put("404.html", &render_page(&tera, "404.html", &PlainPage { site: &site, root: &root404 })?)?;
        if !settings.site.base_url.is_empty() {
            sitemap(release, &settings.site.base_url, input)?;
        }
        out.parts.push(("rest".into(), t.elapsed().as_secs_f64()));
        Ok(out)
    };
    let item_pages = || -> Result<(usize, f64)> {
        let t = std::time::Instant::now();
        let stage = ui.stage("pages", input.items.len() as u64);
        let keys = card_keys(input.items);
        let n = input.items.len();
        let direct = builtin_item && item_html::agrees_with_tera(&tera, n, |i| item_page(&item_site, input, i, overview.as_ref()));
        // Where the recycled release has left the page cache, each page waits on reading its
        // folder and inode from the disk; more threads than cores keep the disk busy then.
        let spread: Vec<String> = match n >= 32 {
            true => (0..32).map(|k| format!("items/{}/index.html", input.items[k * n / 32].id)).collect(),
            false => Vec::new(),
        };
        let pool = release.mostly_uncached(spread.iter().map(|s| s.as_str())).then(|| crate::fsutil::io_pool("pages")).flatten();
        let pages = || (0..n).into_par_iter().try_for_each(|i| -> Result<()> {
            let page = item_page(&item_site, input, i, overview.as_ref());
            // A page whose inputs are those of the served one is kept without rendering it.
            let rel = format!("items/{}/index.html", input.items[i].id);
            release.put_rendered(&rel, item_page_input(&salt, &page, &keys)?, || match direct {
                true => Ok(item_html::write(&page)),
                false => render_page(&tera, "item.html", &page),
            })?;
            stage.inc(1);
            Ok(())
        });
        let threads = pool.as_ref().map_or(rayon::current_num_threads(), |p| p.current_num_threads());
        match pool {
            Some(p) => p.install(pages)?,
            None => pages()?,
        }
        stage.finish();
        Ok((threads, t.elapsed().as_secs_f64()))
    };
    // The item pages on this thread at once; the rest goes to the first thread free.
    let (pages, others) = rayon::join(item_pages, others);
    let mut out = others?;
    let (page_threads, pages_seconds) = pages?;
    out.page_threads = page_threads;
    out.pages = input.items.len();
    out.parts.insert(1, ("pages".into(), pages_seconds));
    Ok(out)
}

fn put_static(release: &Release, own: Option<&Path>) -> Result<()> {
    let mut names = Vec::new();
    for (name, bytes) in BUILTIN_STATIC {
        let own_file = own.map(|d| d.join(name)).filter(|p| p.is_file());
        // The site's own files are copied, never linked: an editor may change them in place.
        match own_file {
            Some(p) => release.put(&format!("static/{name}"), &read_own(&p)?)?,
            None => release.put(&format!("static/{name}"), bytes)?,
        }
        names.push(name.to_string());
    }
    // The site's own extra assets (images, fonts, more scripts), kept as they are.
    if let Some(dir) = own {
        for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false) {
            let entry = entry?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(dir).unwrap();
            let rel = rel.to_str().filter(|r| r.split('/').all(|c| !c.is_empty() && !c.starts_with('.')));
            if let Some(rel) = rel.filter(|r| !names.iter().any(|n| n == r)) {
                release.put(&format!("static/{rel}"), &read_own(entry.path())?)?;
            }
        }
    }
    Ok(())
}

fn read_own(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read the site's own asset {}", p.display()))
}

/// An item's page context.
fn item_page<'a>(site: &'a SiteCtx<'a>, input: &'a Input<'a>, i: usize, overview: Option<&Overview>) -> ItemPage<'a> {
    let it = input.items[i];
    let card = |j: u32, s: f32| NeighbourCard { item: j, id: &input.items[j as usize].id, title: &input.items[j as usize].title, score: s };
    let (mut neighbours, mut inside, mut outside) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cluster_id, mut outlier_band, mut map) = (None, None, None);
    if let Some(m) = &input.model {
        let mine = m.st.cluster_of[i];
        cluster_id = mine;
        outlier_band = self::outlier_band(m.st.outlier_rank[i], input.items.len());
        let show = m.nb.k.min(m.show);
        for (j, s) in m.nb.row(i).filter(|(j, _)| *j != NONE) {
            if neighbours.len() < show {
                neighbours.push(card(j, s));
            }
            let side = if mine.is_some() && m.st.cluster_of[j as usize] == mine { &mut inside } else { &mut outside };
            if side.len() < SIDE_CARDS {
                side.push(card(j, s));
            }
        }
        if mine.is_none() {
            outside.clear();
        }
        map = overview.map(|o| o.percent(m.xy[2 * i], m.xy[2 * i + 1]));
    }
    ItemPage {
        site,
        root: "../../",
        body_id: &it.id,
        item: ItemCtx {
            id: &it.id,
            title: &it.title,
            path: &it.entry.rel_str,
            url: safe_url(it.url.as_deref()),
            meta: &it.meta,
            picture: if input.previews[i].is_some() { "previews" } else { "thumbs" },
            outliers: input.model.is_some(),
            outlier_band,
            cluster_id,
            map,
            sky: Sky::of(it.ra, it.dec, it.meta.iter().find(|(k, _)| k == crate::wcs::FOV).and_then(|(_, v)| v.parse().ok())),
        },
        neighbours,
        inside,
        outside,
    }
}

fn galleries(release: &Release, tera: &tera::Tera, site: &SiteCtx, input: &Input, duplicate_threshold: f32) -> Result<()> {
    let items = input.items;
    let card = |i: usize, note: Option<String>| Card { id: &items[i].id, title: &items[i].title, note };
    let Some(m) = &input.model else {
        for (dir, heading) in [("clusters", "Clusters"), ("outliers", "The strangest objects"), ("duplicates", "Near-duplicates")] {
            let page = GalleryPage {
                empty: "This site was built without a model, so there is nothing here.".into(),
                ..GalleryPage::new(site, "../", heading)
            };
            release.put(&format!("{dir}/index.html"), &render_page(tera, "gallery.html", &page)?)?;
        }
        return Ok(());
    };
    // Clusters: one group per cluster (its representative first), then a page per cluster.
    let groups = m
        .st
        .clusters
        .iter()
        .enumerate()
        .map(|(c, k)| {
            let rep = k.representative as usize;
            let mut cards = vec![card(rep, Some("representative".into()))];
            cards.extend(k.members.iter().map(|&j| j as usize).filter(|&j| j != rep).take(7).map(|j| card(j, None)));
            Group { title: format!("Cluster {c} · {} images", k.members.len()), href: format!("{c}/"), cards }
        })
        .collect();
    let page = GalleryPage {
        intro: "Groups of similar images found on the map (HDBSCAN), largest first.".into(),
        groups,
        empty: if m.st.clusters.is_empty() { "No clusters were found.".into() } else { String::new() },
        ..GalleryPage::new(site, "../", "Clusters")
    };
    release.put("clusters/index.html", &render_page(tera, "gallery.html", &page)?)?;
    for (c, k) in m.st.clusters.iter().enumerate() {
        let mut members: Vec<usize> = k.members.iter().map(|&j| j as usize).collect();
        // The representative first, then the rest as listed.
        members.sort_by_key(|&j| (j != k.representative as usize, j));
        let pages = cluster_pages(c, members.len());
        for (p, dir) in pages.iter().enumerate() {
            let (rel, root) = (format!("{dir}index.html"), if p == 0 { "../../" } else { "../../../" });
            let page = GalleryPage {
                intro: format!("{} images; the first is the one nearest the cluster's mean.", members.len()),
                cards: members[p * PAGE..((p + 1) * PAGE).min(members.len())].iter().map(|&j| card(j, None)).collect(),
                pages: page_links(pages.len(), p, &format!("{root}clusters/{c}/")),
                ..GalleryPage::new(site, root, format!("Cluster {c}"))
            };
            release.put(&rel, &render_page(tera, "gallery.html", &page)?)?;
        }
    }
    // Outliers: the strangest first.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| m.st.outlier_rank[i]);
    let page = GalleryPage {
        intro: format!("The {} images least like the rest of the archive (Isolation Forest on the embeddings, or the mean distance to their neighbours), strangest first.", order.len().min(PAGE)),
        cards: order.iter().take(PAGE).map(|&i| card(i, Some(format!("#{}", m.st.outlier_rank[i])))).collect(),
        ..GalleryPage::new(site, "../", "The strangest objects")
    };
    release.put("outliers/index.html", &render_page(tera, "gallery.html", &page)?)?;
    // Near-duplicates: pairs, most similar first.
    let groups = m
        .st
        .duplicates
        .iter()
        .take(PAGE)
        .map(|p| Group {
            title: format!("cosine {:.4}", p.score),
            href: format!("../items/{}/", items[p.a as usize].id),
            cards: vec![card(p.a as usize, None), card(p.b as usize, None)],
        })
        .collect();
    let page = GalleryPage {
        intro: match m.st.duplicates.len() {
            0 => String::new(),
            n => format!("{n} pairs of images with a cosine similarity of at least {duplicate_threshold}; the {} most similar are shown.", n.min(PAGE)),
        },
        groups,
        empty: if m.st.duplicates.is_empty() {
            format!("No pair of images has a cosine similarity of at least {duplicate_threshold}.")
        } else {
            String::new()
        },
        ..GalleryPage::new(site, "../", "Near-duplicates")
    };
    release.put("duplicates/index.html", &render_page(tera, "gallery.html", &page)?)?;
    Ok(())
}

fn page_links(pages: usize, current: usize, base: &str) -> Vec<PageLink> {
    if pages < 2 {
        return Vec::new();
    }
    (0..pages)
        .map(|p| PageLink { n: p + 1, href: if p == 0 { base.to_string() } else { format!("{base}{}/", p + 1) }, current: p == current })
        .collect()
}

/// The folders of cluster `c`'s gallery of `members` images, [`PAGE`] a page:
/// `clusters/<c>/`, then `clusters/<c>/2/`, `clusters/<c>/3/`…
fn cluster_pages(c: usize, members: usize) -> Vec<String> {
    (1..=members.div_ceil(PAGE).max(1)).map(|p| if p == 1 { format!("clusters/{c}/") } else { format!("clusters/{c}/{p}/") }).collect()
}

fn sitemap(release: &Release, base: &str, input: &Input) -> Result<()> {
    let mut urls: Vec<String> = ["", "clusters/", "outliers/", "duplicates/"].iter().map(|p| format!("{base}{p}")).collect();
    // Each cluster's gallery, page by page (as `galleries` writes them), and the evaluation.
    if let Some(m) = &input.model {
        for (c, k) in m.st.clusters.iter().enumerate() {
            urls.extend(cluster_pages(c, k.members.len()).iter().map(|dir| format!("{base}{dir}")));
        }
    }
    if input.eval {
        urls.push(format!("{base}eval/"));
    }
    urls.extend(input.items.iter().map(|it| format!("{base}items/{}/", it.id)));
    // base-url comes percent-encoded from the config; ids are URL-safe. The five characters
    // the sitemap protocol wants as entities:
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;").replace('"', "&quot;");
    let file = |urls: &[String]| {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
        for u in urls {
            x.push_str(&format!("<url><loc>{}</loc></url>\n", esc(u)));
        }
        x.push_str("</urlset>\n");
        x
    };
    if urls.len() <= SITEMAP_URLS {
        return release.put("sitemap.xml", file(&urls).as_bytes());
    }
    let mut index = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
    for (n, chunk) in urls.chunks(SITEMAP_URLS).enumerate() {
        release.put(&format!("sitemaps/{n}.xml"), file(chunk).as_bytes())?;
        index.push_str(&format!("<sitemap><loc>{}sitemaps/{n}.xml</loc></sitemap>\n", esc(base)));
    }
    index.push_str("</sitemapindex>\n");
    release.put("sitemap.xml", index.as_bytes())
}

// ---------------------------------------------------------------------------------------
// The map's files.

/// The map's bounds, for placing an item on `map/overview.png`.
struct Overview {
    b: [f32; 4],
}

impl Overview {
    fn percent(&self, x: f32, y: f32) -> (String, String) {
        let w = (self.b[2] - self.b[0]).max(f32::MIN_POSITIVE);
        let h = (self.b[3] - self.b[1]).max(f32::MIN_POSITIVE);
        (format!("{:.1}", (x - self.b[0]) / w * 100.0), format!("{:.1}", (self.b[3] - y) / h * 100.0))
    }
}

/// Leaves of a k-d tree over the points `idx` (split at the median of the longer side),
/// each at most `TILE` items: returns (bbox, start, count) per leaf; `idx` ends in map order.
pub fn kd_tiles(xy: &[f32], idx: &mut [u32]) -> Vec<([f32; 4], usize, usize)> {
    fn rec(xy: &[f32], idx: &mut [u32], start: usize, out: &mut Vec<([f32; 4], usize, usize)>) {
        let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        for &i in idx.iter() {
            let (x, y) = (xy[2 * i as usize], xy[2 * i as usize + 1]);
            b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
        }
        if idx.len() <= TILE {
            out.push((b, start, idx.len()));
            return;
        }
        let axis = if b[2] - b[0] >= b[3] - b[1] { 0 } else { 1 };
        let mid = idx.len() / 2;
        // Ties broken by index, so the order is the same on every run.
        idx.select_nth_unstable_by(mid, |&a, &c| xy[2 * a as usize + axis].total_cmp(&xy[2 * c as usize + axis]).then(a.cmp(&c)));
        let (l, r) = idx.split_at_mut(mid);
        rec(xy, l, start, out);
        rec(xy, r, start + mid, out);
    }
    let mut out = Vec::new();
    if !idx.is_empty() {
        rec(xy, idx, 0, &mut out);
    }
    out
}

#[derive(Serialize)]
struct ColourJson {
    name: String,
    kind: &'static str,
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
}

#[derive(Serialize)]
struct MapJson {
    version: u32,
    items: usize,
    bounds: [f32; 4],
    thumb: u32,
    atlas_cols: u32,
    /// [x0, y0, x1, y1, start, count, base] per tile: its items are map indices start..start
    /// + count; the first `base` have their thumbnails in `map/tiles/<t>.jpg`, the others in
    /// `map/tiles/<t>-new.jpg`, whose first row is the main atlas's row base / atlas_cols.
    tiles: Vec<(f32, f32, f32, f32, usize, usize, usize)>,
    colour_by: Vec<ColourJson>,
    names_chunk: usize,
    names: Vec<String>,
}

#[derive(Serialize)]
struct NamesJson<'a> {
    ids: Vec<&'a str>,
    titles: Vec<&'a str>,
    /// What else each item is called (`object_name`; "" for none), searched too; left out
    /// when no item of the chunk has one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    also: Vec<String>,
}

impl<'a> NamesJson<'a> {
    /// The names of `items[i]` for each `i` of `members`, in that order.
    fn of(items: &[&'a Item], members: &[u32]) -> NamesJson<'a> {
        let also: Vec<String> = members.iter().map(|&i| object_name(items[i as usize])).collect();
        NamesJson {
            ids: members.iter().map(|&i| items[i as usize].id.as_str()).collect(),
            titles: members.iter().map(|&i| items[i as usize].title.as_str()).collect(),
            also: if also.iter().any(|a| !a.is_empty()) { also } else { Vec::new() },
        }
    }
}

/// The metadata keys that name what an image shows: the FITS header's OBJECT (see `[fits]
/// keywords`) and catalogue columns so named.
const OBJECT_NAMES: &[&str] = &["OBJECT", "object", "name", "target"];

/// The names of what an item shows, for the map's search: "M51" for a file whose title is
/// its path, when its metadata says so (every one of `OBJECT_NAMES` it has, different ones
/// joined by " / ").
fn object_name(item: &Item) -> String {
    let mut names: Vec<&str> = Vec::new();
    for name in OBJECT_NAMES.iter().filter_map(|k| meta_value(item, k)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(" / ")
}

fn u16s(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn map_files(release: &Release, settings: &Settings, input: &Input, m: &Model, ui: &crate::ui::Ui, out: &mut Rendered) -> Result<()> {
    let n = input.items.len();
    let xy = m.xy;
    let b = crate::api::bounds(xy);
    let ids: Vec<&str> = input.items.iter().map(|it| it.id.as_str()).collect();
    let kept_tiles = settings.cache.join("map-tiles.bin");
    let plan = tiles::plan(xy, &ids, if m.places_kept { tiles::load(&kept_tiles) } else { None });
    crate::fsutil::atomic_write(&kept_tiles, &tiles::to_bytes(&plan, &ids)).with_context(|| format!("cannot write {}", kept_tiles.display()))?;
    let mut order: Vec<u32> = Vec::with_capacity(n);
    let mut tiles = Vec::with_capacity(plan.len());
    for t in &plan {
        tiles.push((t.bbox, order.len(), t.members.len(), t.base));
        order.extend(&t.members);
    }
    out.tiles = tiles.len();

    let q = |v: f32, lo: f32, hi: f32| -> u16 {
        if hi > lo {
            (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 65535.0).round() as u16
        } else {
            0
        }
    };
    let points: Vec<u16> = order.iter().flat_map(|&i| [q(xy[2 * i as usize], b[0], b[2]), q(xy[2 * i as usize + 1], b[1], b[3])]).collect();
    release.put("map/points.u16", &u16s(&points))?;

    let mut colour_by = Vec::new();
    let clusters: Vec<u16> = order.iter().map(|&i| m.st.cluster_of[i as usize].map(|c| c.min(65534) as u16).unwrap_or(u16::MAX)).collect();
    release.put("map/colour-cluster.u16", &u16s(&clusters))?;
    colour_by.push(ColourJson {
        name: "cluster".into(),
        kind: "category",
        file: "map/colour-cluster.u16".into(),
        labels: Some((0..m.st.clusters.len()).map(|c| c.to_string()).collect()),
        min: None,
        max: None,
    });
    let outliers: Vec<u16> = order.iter().map(|&i| q(-(m.st.outlier_rank[i as usize] as f32), -(n as f32), -1.0).min(65534)).collect();
    release.put("map/colour-strangeness.u16", &u16s(&outliers))?;
    colour_by.push(ColourJson { name: "strangeness (rank, 1 = strangest)".into(), kind: "number", file: "map/colour-strangeness.u16".into(), labels: None, min: Some(n as f64), max: Some(1.0) });
    for (c, column) in catalogue_columns(settings, input, ui).into_iter().enumerate() {
        let values: Vec<Option<&str>> = order.iter().map(|&i| meta_value(input.items[i as usize], &column)).collect();
        let file = format!("map/colour-c{c}.u16");
        // Numbers are told apart by value, not by how they are written: `600`, `600.` and
        // `6.0E2` are one exposure time.
        let nums = numbers(&values);
        let mut distinct: Vec<f64> = nums.iter().flatten().flatten().copied().collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        match nums {
            Some(nums) if distinct.len() <= 12 => {
                // A few values: a colour each, labelled in ascending order.
                let v: Vec<u16> = nums.iter().map(|x| x.map_or(u16::MAX, |x| distinct.partition_point(|d| *d < x) as u16)).collect();
                release.put(&file, &u16s(&v))?;
                let labels = distinct.iter().map(|d| d.to_string()).collect();
                colour_by.push(ColourJson { name: column, kind: "category", file, labels: Some(labels), min: None, max: None });
            }
            Some(nums) => {
                let lo = nums.iter().flatten().copied().fold(f64::MAX, f64::min);
                let hi = nums.iter().flatten().copied().fold(f64::MIN, f64::max);
                let v: Vec<u16> = nums.iter().map(|x| x.map(|x| if hi > lo { ((x - lo) / (hi - lo) * 65534.0).round() as u16 } else { 0 }).unwrap_or(u16::MAX)).collect();
                release.put(&file, &u16s(&v))?;
                colour_by.push(ColourJson { name: column, kind: "number", file, labels: None, min: Some(lo), max: Some(hi) });
            }
            _ => {
                let (v, labels, others) = categories(&values);
                if others > 0 {
                    ui.warn(format!(
                        "the map's colouring by `{column}` gives its {} most frequent values a colour each; the other {others} share one, labelled `{}`",
                        MAX_LABELS - 1,
                        labels[MAX_LABELS - 1]
                    ));
                }
                release.put(&file, &u16s(&v))?;
                colour_by.push(ColourJson { name: column, kind: "category", file, labels: Some(labels), min: None, max: None });
            }
        }
    }

    // Tiles: ids and titles, and the thumbnail atlas (cached by its members' thumbnails).
    let atlas_dir = settings.cache.join("atlases");
    std::fs::create_dir_all(&atlas_dir).with_context(|| format!("cannot create {}", atlas_dir.display()))?;
    // What the cache holds, listed once rather than asked of each tile's files. An empty
    // file (one renamed into place just before a power cut can have lost its bytes) is made
    // again: a `stat` per atlas, a few thousand at 1M items.
    let present: std::collections::HashSet<String> = std::fs::read_dir(&atlas_dir)?
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let (made, decoded) = (std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicUsize::new(0));
    let atlas_name = |key: &blake3::Hash| format!("{}.jpg", key.to_hex());
    // The pixels of an atlas of additions, kept so that the next night's one (the same cells
    // and a few more) decodes only the thumbnails it adds: a tile's additions are made again
    // every night it gains an item, from up to MAX_ADDED + ATLAS_COLS thumbnails.
    let cells_name = |key: &blake3::Hash| format!("{}.cells", key.to_hex());
    let keys: Vec<Vec<String>> = tiles
        .par_iter()
        .enumerate()
        .map(|(t, &(_, start, count, base))| -> Result<Vec<String>> {
            let members = &order[start..start + count];
            let names = NamesJson::of(input.items, members);
            release.put(&format!("map/tiles/{t}.json"), &serde_json::to_vec(&names)?)?;
            // The main atlas: the first `base` members. The atlas of additions: the rest, from
            // the start of the row the first of them is on (so that it lies over the main one
            // at that row and the cells keep one numbering).
            let first_added_row = base - base % ATLAS_COLS as usize;
            let mut parts = vec![(format!("map/tiles/{t}.jpg"), &members[..base], false)];
            if base < count {
                parts.push((format!("map/tiles/{t}-new.jpg"), &members[first_added_row..], true));
            }
            let mut used = Vec::new();
            for (rel, cells, added) in parts {
                let kind: &[u8] = if added { b"simsite-atlas-added-v1" } else { b"simsite-atlas-v1" };
                let mut h = blake3::Hasher::new();
                h.update(kind);
                h.update(&CELL.to_le_bytes());
                // For an atlas of additions, the key of each of its beginnings (its cells up to
                // the first, the second, ...): one of them named the last build's version.
                let mut prefix = Vec::new();
                for &i in cells {
                    h.update(input.thumbs[i as usize].as_os_str().as_encoded_bytes());
                    h.update(b"\0");
                    if added {
                        prefix.push(h.finalize());
                    }
                }
                let key = h.finalize();
                let name = atlas_name(&key);
                let cached = atlas_dir.join(&name);
                if !present.contains(&name) {
                    let (w, ht) = atlas_size(cells.len());
                    let mut px = vec![0u8; (w * ht * 3) as usize];
                    // The longest beginning kept: its cells are these cells' first ones.
                    let kept = (1..prefix.len()).rev().filter(|&l| present.contains(&cells_name(&prefix[l - 1]))).find_map(|l| {
                        let b = std::fs::read(atlas_dir.join(cells_name(&prefix[l - 1]))).ok()?;
                        (b.len() as u32 == w * atlas_size(l).1 * 3).then_some((l, b))
                    });
                    let from = kept.map_or(0, |(l, b)| {
                        px[..b.len()].copy_from_slice(&b);
                        l
                    });
                    let whole = draw_cells(&mut px, cells.iter().map(|&i| input.thumbs[i as usize]).enumerate().skip(from));
                    decoded.fetch_add(cells.len() - from, std::sync::atomic::Ordering::Relaxed);
                    let jpeg = encode_atlas(&px, w, ht)?;
                    made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if !whole {
                        // A thumbnail that could not be read tonight leaves its cell blank:
                        // served so, but not cached, so that the next build draws it again.
                        release.put(&rel, &jpeg)?;
                        continue;
                    }
                    if added {
                        // Only saves work next time: a build goes on without it.
                        crate::fsutil::atomic_write(&atlas_dir.join(cells_name(&key)), &px).ok();
                    }
                    crate::fsutil::atomic_write(&cached, &jpeg).with_context(|| format!("cannot write {}", cached.display()))?;
                }
                release.put_file(&rel, &cached)?;
                used.push(name);
                if added {
                    used.push(cells_name(&key));
                }
            }
            Ok(used)
        })
        .collect::<Result<_>>()?;
    out.atlases_made = made.into_inner();
    out.thumbnails_decoded = decoded.into_inner();
    // Atlases (and kept cells) no tile uses any more; made this build are all used.
    let used: std::collections::HashSet<String> = keys.into_iter().flatten().collect();
    for name in present.iter().filter(|n| !used.contains(*n)) {
        std::fs::remove_file(atlas_dir.join(name)).ok();
    }

    let mut names = Vec::new();
    for (c, chunk) in order.chunks(NAMES_CHUNK).enumerate() {
        let body = NamesJson::of(input.items, chunk);
        let file = format!("map/names/{c}.json");
        release.put(&file, &serde_json::to_vec(&body)?)?;
        names.push(file);
    }
    release.put("map/overview.png", &overview_png(xy, b)?)?;
    let map = MapJson {
        version: 2,
        items: n,
        bounds: b,
        thumb: CELL,
        atlas_cols: ATLAS_COLS,
        tiles: tiles.iter().map(|(bb, s, c, base)| (bb[0], bb[1], bb[2], bb[3], *s, *c, *base)).collect(),
        colour_by,
        names_chunk: NAMES_CHUNK,
        names,
    };
    release.put("map/map.json", &serde_json::to_vec(&map)?)?;
    Ok(())
}

/// The catalogue columns the map offers as colourings: those configured, else the first
/// `COLOUR_COLUMNS` in the catalogue's order that hold a value for some item.
/// An item's value in a catalogue column, or None when the cell is empty.
fn meta_value<'a>(item: &'a Item, column: &str) -> Option<&'a str> {
    item.meta.iter().find(|(k, _)| k == column).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
}

/// The values as numbers when every value present parses as one.
fn numbers(values: &[Option<&str>]) -> Option<Vec<Option<f64>>> {
    // A FITS header may write the exponent with a D (`6.0D+02`).
    values
        .iter()
        .map(|v| match v.map(crate::decode::fits_number) {
            None => Some(None),
            Some(Some(x)) if x.is_finite() => Some(Some(x)),
            // `NaN`, `inf`: a number not known, shown as missing.
            Some(Some(_)) => Some(None),
            Some(None) => None,
        })
        .collect()
}

/// Text values as categories: per value its label's index (65535 when empty), and the
/// labels, most frequent first. Past `MAX_LABELS` values, the rarest share the last label,
/// "other (n values)" (the third result is that n, else 0); labels are cut to `LONG_LABEL`
/// characters, so that free text cannot swell map.json, which the map loads before it draws.
fn categories(values: &[Option<&str>]) -> (Vec<u16>, Vec<String>, usize) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for v in values.iter().flatten() {
        *count.entry(v).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = count.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let others = if ranked.len() > MAX_LABELS { ranked.len() - (MAX_LABELS - 1) } else { 0 };
    let kept = ranked.len() - others;
    let at: HashMap<&str, u16> = ranked.iter().enumerate().map(|(k, (l, _))| (*l, k.min(kept) as u16)).collect();
    let v = values.iter().map(|x| x.map_or(u16::MAX, |x| at[x])).collect();
    let mut labels: Vec<String> = ranked[..kept]
        .iter()
        .map(|(l, _)| match l.char_indices().nth(LONG_LABEL) {
            Some((cut, _)) => format!("{}…", &l[..cut]),
            None => l.to_string(),
        })
        .collect();
    if others > 0 {
        labels.push(format!("other ({others} values)"));
    }
    (v, labels, others)
}

/// Why a column makes a poor colouring (free text: more values than a colouring labels, or
/// long ones), or None. Numbers, drawn on a ramp, never are.
fn free_text(values: &[Option<&str>]) -> Option<String> {
    if numbers(values).is_some() {
        return None;
    }
    let distinct: std::collections::BTreeSet<&str> = values.iter().flatten().copied().collect();
    if distinct.len() > MAX_LABELS {
        return Some(format!("{} different values, more than the {MAX_LABELS} a colouring labels", distinct.len()));
    }
    let longest = distinct.iter().map(|v| v.chars().count()).max().unwrap_or(0);
    (longest > LONG_LABEL).then(|| format!("values of up to {longest} characters, over {LONG_LABEL}"))
}

/// The metadata columns the map is coloured by: those the config names, else the first
/// `COLOUR_COLUMNS` of the catalogue's columns, then the header keywords, that hold a value
/// and are not free text (each free-text catalogue column is named in a warning, with how
/// to colour by it anyway).
fn catalogue_columns(settings: &Settings, input: &Input, ui: &crate::ui::Ui) -> Vec<String> {
    if let Some(cols) = &settings.site.colour_by {
        return cols.clone();
    }
    let mut shown = Vec::new();
    // Header keywords after the catalogue's columns. One that is free text is left out
    // without a word: OBJECT and DATE-OBS, read by default, nearly always are, and a warning
    // every night about what the user never asked for would only be noise.
    let keywords = input.keywords.iter().filter(|k| !input.columns.contains(k)).map(|k| (k, true));
    for (column, from_header) in input.columns.iter().map(|c| (c, false)).chain(keywords) {
        if shown.len() == COLOUR_COLUMNS {
            break;
        }
        let values: Vec<Option<&str>> = input.items.iter().map(|it| meta_value(it, column)).collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        match free_text(&values) {
            Some(_) if from_header => {}
            Some(why) => ui.warn(format!(
                "the map is not coloured by the catalogue column `{column}` ({why}); to colour by it anyway, name it in [site] colour-by (its {} most frequent values get a colour each, the others share one)",
                MAX_LABELS - 1
            )),
            None => shown.push(column.clone()),
        }
    }
    shown
}

/// The width and height in pixels of an atlas of `n` cells.
fn atlas_size(n: usize) -> (u32, u32) {
    (ATLAS_COLS * CELL, (n as u32).div_ceil(ATLAS_COLS).max(1) * CELL)
}

/// Draws thumbnails into an atlas's RGB pixels `px` (`ATLAS_COLS` cells a row), each given
/// with its cell's number: scaled into the `CELL`-pixel square, letterboxed on black. JPEG's
/// DCT scaling decodes a 128-pixel thumbnail straight at a quarter size, so this costs
/// little per item. A thumbnail that cannot be read leaves its cell black; returns whether
/// every one was drawn.
fn draw_cells<'a>(px: &mut [u8], thumbs: impl Iterator<Item = (usize, &'a Path)>) -> bool {
    let w = ATLAS_COLS * CELL;
    let mut whole = true;
    for (j, p) in thumbs {
        let (cx, cy) = ((j as u32 % ATLAS_COLS) * CELL, (j as u32 / ATLAS_COLS) * CELL);
        let Ok((tw, th, rgb)) = small_rgb(p) else {
            whole = false;
            continue;
        };
        let scale = (CELL as f32 / tw.max(th) as f32).min(1.0);
        let (sw, sh) = (((tw as f32 * scale).round() as u32).max(1), ((th as f32 * scale).round() as u32).max(1));
        let (ox, oy) = (cx + (CELL - sw) / 2, cy + (CELL - sh) / 2);
        // Box filter from (tw, th) to (sw, sh).
        for y in 0..sh {
            let (y0, y1) = (y * th / sh, ((y + 1) * th / sh).max(y * th / sh + 1));
            for x in 0..sw {
                let (x0, x1) = (x * tw / sw, ((x + 1) * tw / sw).max(x * tw / sw + 1));
                let mut acc = [0u32; 3];
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        let s = ((yy * tw + xx) * 3) as usize;
                        for c in 0..3 {
                            acc[c] += rgb[s + c] as u32;
                        }
                    }
                }
                let cnt = (y1 - y0) * (x1 - x0);
                let d = (((oy + y) * w + ox + x) * 3) as usize;
                for c in 0..3 {
                    px[d + c] = (acc[c] / cnt) as u8;
                }
            }
        }
    }
    whole
}

/// An atlas's pixels (`w` by `h`, RGB) as a JPEG.
fn encode_atlas(px: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 80).encode(px, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)?;
    Ok(out)
}

/// A JPEG decoded at the smallest DCT scale that still covers `CELL` pixels, as RGB.
fn small_rgb(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut d = jpeg_decoder::Decoder::new(f);
    d.read_info()?;
    d.scale(CELL as u16, CELL as u16)?;
    let pixels = d.decode()?;
    let info = d.info().context("no JPEG header")?;
    let (w, h) = (info.width as u32, info.height as u32);
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        other => anyhow::bail!("unexpected JPEG pixel format {other:?}"),
    };
    Ok((w, h, rgb))
}

/// A 256×256 density picture of the whole map (log-scaled), for the item pages' "where it
/// sits on the map"; north (larger y) up, as on the map.
fn overview_png(xy: &[f32], b: [f32; 4]) -> Result<Vec<u8>> {
    const S: usize = 256;
    let mut bins = vec![0u32; S * S];
    let (w, h) = ((b[2] - b[0]).max(f32::MIN_POSITIVE), (b[3] - b[1]).max(f32::MIN_POSITIVE));
    for p in xy.chunks_exact(2) {
        let x = (((p[0] - b[0]) / w) * (S - 1) as f32) as usize;
        let y = (((b[3] - p[1]) / h) * (S - 1) as f32) as usize;
        bins[y.min(S - 1) * S + x.min(S - 1)] += 1;
    }
    let top = (*bins.iter().max().unwrap_or(&1)).max(1) as f32;
    let grey: Vec<u8> = bins.iter().map(|&c| if c == 0 { 16 } else { (60.0 + 195.0 * (1.0 + c as f32).ln() / (1.0 + top).ln()) as u8 }).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_raw(S as u32, S as u32, grey)
        .context("overview size")?
        .write_to(&mut out, image::ImageFormat::Png)
        .context("cannot encode the map overview")?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::{categories, free_text, outlier_band, shown_key, LONG_LABEL, MAX_LABELS};

    #[test]
    fn a_colouring_by_free_text_labels_the_frequent_values_and_folds_the_rest_into_other() {
        // 660 different notes, note k on 660 - k items (so the order by frequency is k's).
        let notes: Vec<String> = (0..660).map(|k| format!("note {k:03}")).collect();
        let mut values: Vec<Option<&str>> = Vec::new();
        for (k, n) in notes.iter().enumerate() {
            values.extend(std::iter::repeat_n(Some(n.as_str()), 660 - k));
        }
        values.push(None);
        let (v, labels, others) = categories(&values);
        assert_eq!((labels.len(), others), (MAX_LABELS, 660 - (MAX_LABELS - 1)));
        assert_eq!(labels[0], "note 000");
        assert_eq!(labels[MAX_LABELS - 2], format!("note {:03}", MAX_LABELS - 2));
        assert_eq!(labels[MAX_LABELS - 1], "other (405 values)");
        // Regression: values past the 256th were drawn as missing (65535); now as "other".
        assert_eq!(v[v.len() - 2], (MAX_LABELS - 1) as u16, "the rarest note");
        assert_eq!(*v.last().unwrap(), u16::MAX, "an empty cell is still missing");
        assert_eq!(v.iter().filter(|&&x| x == u16::MAX).count(), 1);
        // A long label is cut, so free text cannot swell map.json.
        let long = "é".repeat(5000);
        let (_, labels, others) = categories(&[Some(long.as_str()), Some("short")]);
        assert_eq!((labels[0].as_str(), labels[1].chars().count(), others), ("short", LONG_LABEL + 1, 0));
        assert_eq!(labels[1], format!("{}…", "é".repeat(LONG_LABEL)));
    }

    #[test]
    fn free_text_is_many_different_or_long_values_never_numbers() {
        let notes: Vec<String> = (0..=MAX_LABELS).map(|k| format!("n{k}")).collect();
        let many: Vec<Option<&str>> = notes.iter().map(|n| Some(n.as_str())).collect();
        assert!(free_text(&many).unwrap().contains("257 different values"));
        assert_eq!(free_text(&many[..MAX_LABELS]), None);
        let long = "x".repeat(LONG_LABEL + 1);
        assert!(free_text(&[Some("spiral"), Some(long.as_str())]).unwrap().contains("up to 65 characters"));
        assert_eq!(free_text(&[Some("spiral"), Some(&long[1..])]), None);
        let mags: Vec<String> = (0..1000).map(|k| format!("{}", k as f64 / 7.0)).collect();
        assert_eq!(free_text(&mags.iter().map(|m| Some(m.as_str())).collect::<Vec<_>>()), None);
    }

    #[test]
    fn scores_with_one_shown_key_show_one_text() {
        // Scores near every thousandth (ties, the f32s either side of them), spread over
        // [-1, 1], and -0.0: within a key the text never differs, and it does differ
        // across most keys (the key is not the score's bits).
        let mut scores = vec![0.0f32, -0.0, 0.0625, 0.0005, -0.0005, 0.9995, 1.0, -1.0];
        let mut r = crate::rng::SplitMix::new(7, 0, 0);
        for k in -2000..=2000 {
            let v = k as f32 / 2000.0;
            scores.extend([v, f32::from_bits(v.to_bits() + 1), f32::from_bits(v.to_bits().saturating_sub(1))]);
            scores.push(r.unit() * 2.0 - 1.0);
        }
        let mut text_of = std::collections::HashMap::new();
        for s in &scores {
            let text = format!("{s:.3}");
            let seen = text_of.entry(shown_key(*s)).or_insert_with(|| text.clone());
            assert_eq!(*seen, text, "score {s} ({:#x}) shares its key with one shown as {seen}", s.to_bits());
        }
        let texts: std::collections::HashSet<&String> = text_of.values().collect();
        assert!(texts.len() > 1900 && text_of.len() < 3 * texts.len(), "{} keys for {} texts", text_of.len(), texts.len());
    }

    #[test]
    fn outlier_bands_hold_their_ranks() {
        assert_eq!(outlier_band(1, 1000), Some("0.1 %"));
        assert_eq!(outlier_band(2, 1000), Some("1 %"));
        assert_eq!(outlier_band(10, 1000), Some("1 %"));
        assert_eq!(outlier_band(11, 1000), Some("5 %"));
        assert_eq!(outlier_band(500, 1000), Some("50 %"));
        assert_eq!(outlier_band(501, 1000), None);
        // Rank 1 of a small archive is in its strangest half, not its strangest 0.1 %.
        assert_eq!(outlier_band(1, 30), Some("5 %"));
        // Growing alike (rank and count by 1 %) keeps the band.
        assert_eq!(outlier_band(1111, 111_100), outlier_band(1122, 112_211));
    }
}
