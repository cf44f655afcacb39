//! The built-in item page, written straight from its context: the bytes tera makes of the
//! built-in `base.html` and `item.html` (as minified), without tera's per-value lookups and
//! without turning the context into a `serde_json` value first. A build at 110,000 items spent
//! ~11 s of CPU in tera and that conversion (`perf`, session 17); this writes a page in a
//! few microseconds.
//!
//! It is used only when the site overrides neither template, and only after it wrote a
//! sample of the build's own pages exactly as tera does (`agrees_with_tera`); otherwise tera
//! renders every page. A change to either template must be made here too: the unit tests
//! compare the two on pages with every branch taken, and fail until it is.

use std::fmt::Write;

use super::{ItemPage, NeighbourCard};

/// Pages of the build written both ways before this writer is trusted with the rest.
const SAMPLE: usize = 64;

/// Appends `s` escaped as tera escapes HTML (`tera::escape_html`: & < > " ' /).
fn esc(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'', '/']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            _ => "&#x2F;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

fn cards(out: &mut String, root: &str, list: &[NeighbourCard]) {
    for n in list {
        out.push_str("<li><a href=\"../");
        esc(out, n.id);
        out.push_str("/\"><img src=\"");
        out.push_str(root);
        out.push_str("thumbs/");
        esc(out, n.id);
        out.push_str(".jpg\" alt loading=lazy><span>");
        esc(out, n.title);
        out.push_str("</span><b>");
        // The score's text is digits, a point and perhaps a minus: nothing to escape.
        let _ = write!(out, "{:.3}", n.score);
        out.push_str("</b></a></li>");
    }
}

/// The cards of `list` between `open` and `close`, or nothing when it is empty.
fn section(o: &mut String, root: &str, list: &[NeighbourCard], open: &str, close: &str) {
    if !list.is_empty() {
        o.push_str(open);
        cards(o, root, list);
        o.push_str(close);
    }
}

/// The page's bytes.
pub(super) fn write(page: &ItemPage) -> Vec<u8> {
    let (root, it, site) = (page.root, &page.item, page.site);
    let mut out = String::with_capacity(8192);
    let o = &mut out;
    o.push_str("<!doctype html><html lang=en><head><meta charset=utf-8><meta content=\"width=device-width,initial-scale=1\" name=viewport><title>");
    esc(o, it.title);
    o.push_str(" · ");
    esc(o, site.title);
    o.push_str("</title><link href=data:, rel=icon><link href=\"");
    o.push_str(root);
    o.push_str("static/site.css\" rel=stylesheet><script src=\"");
    o.push_str(root);
    o.push_str("static/item.js\" type=module></script></head><body class=\"item\" data-id=\"");
    esc(o, page.body_id);
    o.push_str("\"><header class=top><a href=\"");
    o.push_str(root);
    o.push_str("index.html\" class=brand>");
    esc(o, site.title);
    o.push_str("</a><nav>");
    for (href, name) in [("index.html", "Map"), ("clusters/", "Clusters"), ("outliers/", "Outliers"), ("duplicates/", "Duplicates")]
        .into_iter()
        .chain(site.eval.then_some(("eval/", "Evaluation")))
    {
        o.push_str("<a href=\"");
        o.push_str(root);
        o.push_str(href);
        o.push_str("\">");
        o.push_str(name);
        o.push_str("</a>");
    }
    o.push_str("</nav></header><main> <article class=item-head><a href=\"");
    for alt in [false, true] {
        if alt {
            o.push_str("\" class=media><img alt=\"");
            esc(o, it.title);
            o.push_str("\" src=\"");
        }
        o.push_str(root);
        esc(o, it.picture);
        o.push('/');
        esc(o, it.id);
        o.push_str(".jpg");
    }
    o.push_str("\"></a><div class=about><h1>");
    esc(o, it.title);
    o.push_str("</h1><dl class=meta><dt>Id</dt><dd>");
    esc(o, it.id);
    o.push_str("</dd><dt>File</dt><dd>");
    esc(o, it.path);
    o.push_str("</dd>");
    for (k, v) in it.meta {
        o.push_str("<dt>");
        esc(o, k);
        o.push_str("</dt><dd>");
        esc(o, v);
        o.push_str("</dd>");
    }
    if let Some(sky) = &it.sky {
        o.push_str("<dt>Sky</dt><dd class=sky>");
        esc(o, &sky.text);
        let at = |o: &mut String| {
            esc(o, &sky.ra);
            o.push('+');
            esc(o, &sky.dec);
        };
        o.push_str(" <a href=\"https://simbad.cds.unistra.fr/simbad/sim-coo?Coord=");
        at(o);
        o.push_str("&Radius=");
        esc(o, &sky.radius);
        o.push_str("&Radius.unit=arcmin\" title=\"Objects within ");
        esc(o, &sky.radius);
        o.push_str(" arcmin in SIMBAD\" rel=external>SIMBAD</a> <a href=\"https://aladin.cds.unistra.fr/AladinLite/?target=");
        at(o);
        o.push_str("&fov=");
        esc(o, &sky.fov);
        o.push_str("\" title=\"This part of the sky in Aladin Lite\" rel=external>Aladin</a>");
        o.push_str("</dd>");
    }
    if it.outliers {
        o.push_str("<dt>Strangeness</dt><dd id=strangeness><span class=rank></span>");
        match it.outlier_band.filter(|b| !b.is_empty()) {
            Some(b) => {
                o.push_str("among the strangest ");
                esc(o, b);
            }
            None => o.push_str("in the more typical half"),
        }
        o.push_str(" (<a href=\"");
        o.push_str(root);
        o.push_str("outliers/\">outliers</a>)</dd>");
    }
    if let Some(c) = it.cluster_id {
        let _ = write!(o, "<dt>Cluster</dt><dd data-cluster=\"{c}\" id=cluster><a href=\"{root}clusters/{c}/\">{c}</a><span class=size></span></dd>");
    }
    o.push_str("</dl>");
    if let Some(u) = it.url.filter(|u| !u.is_empty()) {
        o.push_str("<p><a href=\"");
        esc(o, u);
        o.push_str("\" class=archive rel=external>Open in the archive</a></p>");
    }
    o.push(' ');
    if let Some((x, y)) = &it.map {
        o.push_str("<a href=\"");
        o.push_str(root);
        o.push_str("index.html#id=");
        esc(o, it.id);
        o.push_str("\" title=\"Show on the map\" class=minimap><img alt=\"Where it sits on the map\" src=\"");
        o.push_str(root);
        o.push_str("map/overview.png\"><i style=\"left:");
        esc(o, x);
        o.push_str("%;top:");
        esc(o, y);
        o.push_str("%\"></i></a>");
    }
    o.push_str("</div></article>");
    section(o, root, &page.neighbours, " <section><h2>You might also like</h2><ol class=grid id=neighbours>", "</ol><p class=nav-keys>Keys: j / k or → / ← move through these, Enter opens, m shows this image on the map.</p></section>");
    o.push(' ');
    let cluster = it.cluster_id.map(|c| c.to_string()).unwrap_or_default();
    section(o, root, &page.inside, &format!("<section><h2>Most similar in cluster {cluster}</h2><ul class=\"grid small\">"), "</ul></section>");
    o.push(' ');
    section(o, root, &page.outside, "<section><h2>Most similar in other clusters</h2><ul class=\"grid small\">", "</ul></section>");
    o.push_str(" </main></body></html>");
    out.into_bytes()
}

/// Whether `write` gives tera's bytes for up to `SAMPLE` of the build's pages, spread over
/// the archive (`page(i)` makes item i's page context).
pub(super) fn agrees_with_tera<'a>(tera: &tera::Tera, n: usize, page: impl Fn(usize) -> ItemPage<'a>) -> bool {
    (0..n.min(SAMPLE)).map(|k| k * n / n.min(SAMPLE)).all(|i| {
        let p = page(i);
        super::render_page(tera, "item.html", &p).is_ok_and(|t| t == write(&p))
    })
}

#[cfg(test)]
mod tests {
    use super::super::{load_templates, render_page, ItemCtx, ItemPage, NeighbourCard, SiteCtx, BUILTIN_TEMPLATES};

    const HOSTILE: &str = "a&b<c>d\"e'f/g · é ✓ {{ x }} {% raw %}";

    fn card<'a>(id: &'a str, title: &'a str, score: f32) -> NeighbourCard<'a> {
        NeighbourCard { item: 0, id, title, score }
    }

    /// Every page shape tera's templates branch on: with and without an evaluation link,
    /// catalogue columns, an outlier band, a cluster, an archive link, a place on the map
    /// and each of the three card lists; names full of characters HTML escapes.
    #[test]
    fn the_built_in_item_page_is_written_as_tera_renders_it() {
        let (tera, _, builtin) = load_templates(None).unwrap();
        assert!(builtin);
        let meta = vec![("band".to_string(), "r<i>".to_string()), (HOSTILE.to_string(), HOSTILE.to_string())];
        let list = || vec![card("x~1.fits", HOSTILE, 0.99951), card("y&2", "plain", -0.0004), card(HOSTILE, "", 1.0)];
        let mut pages = 0;
        for shape in 0u32..512 {
            let on = |bit: u32| shape & (1 << bit) != 0;
            let site = SiteCtx { title: if on(0) { HOSTILE } else { "Archive" }, items: None, eval: on(1) };
            let page = ItemPage {
                site: &site,
                root: "../../",
                body_id: if on(2) { HOSTILE } else { "id~a.png" },
                item: ItemCtx {
                    id: if on(2) { HOSTILE } else { "id~a.png" },
                    title: if on(0) { HOSTILE } else { "a.png" },
                    path: "dir/a b.png",
                    url: on(3).then_some("https://archive.example/q?a=1&b='2'"),
                    meta: if on(4) { &meta } else { &[] },
                    picture: if on(5) { "previews" } else { "thumbs" },
                    outliers: on(6),
                    outlier_band: on(6).then_some("0.1 %").filter(|_| on(7)),
                    cluster_id: on(8).then_some(17),
                    map: on(7).then(|| ("12.5".to_string(), "99.0".to_string())),
                    sky: super::super::Sky::of(on(2).then_some(202.470074), Some(-47.194658), on(3).then_some(0.1422)),
                },
                neighbours: if on(1) { list() } else { Vec::new() },
                inside: if on(8) && on(3) { list() } else { Vec::new() },
                outside: if on(5) { list() } else { Vec::new() },
            };
            let by_tera = String::from_utf8(render_page(&tera, "item.html", &page).unwrap()).unwrap();
            let direct = String::from_utf8(super::write(&page)).unwrap();
            assert_eq!(direct, by_tera, "page shape {shape:#011b}");
            pages += 1;
        }
        assert_eq!(pages, 512);
    }

    #[test]
    fn a_site_s_own_item_or_base_template_is_rendered_by_tera() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, builtin) = load_templates(Some(dir.path())).unwrap();
        assert!(builtin, "a templates folder without base.html or item.html");
        std::fs::write(dir.path().join("gallery.html"), "{% extends \"base.html\" %}").unwrap();
        assert!(load_templates(Some(dir.path())).unwrap().2);
        for own in ["item.html", "base.html"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(own), "{% block content %}{% endblock content %}<p>mine</p>").unwrap();
            assert!(!load_templates(Some(dir.path())).unwrap().2, "the site's own {own}");
        }
    }

    /// A tera whose item page differs from the built-in one by a byte fails the check, so
    /// such a build renders its pages with tera.
    #[test]
    fn a_page_tera_renders_otherwise_fails_the_check() {
        let site = SiteCtx { title: "A", items: None, eval: false };
        let page = |_| ItemPage {
            site: &site,
            root: "../../",
            body_id: "a",
            item: ItemCtx { id: "a", title: "a", path: "a", url: None, meta: &[], picture: "thumbs", outliers: true, outlier_band: None, cluster_id: None, map: None, sky: None },
            neighbours: Vec::new(),
            inside: Vec::new(),
            outside: Vec::new(),
        };
        let (tera, _, _) = load_templates(None).unwrap();
        assert!(super::agrees_with_tera(&tera, 3, page));
        let own = tempfile::tempdir().unwrap();
        let builtin = BUILTIN_TEMPLATES.iter().find(|(n, _)| *n == "item.html").unwrap().1;
        std::fs::write(own.path().join("item.html"), builtin.replace("Strangeness", "Oddness")).unwrap();
        let (tera, _, _) = load_templates(Some(own.path())).unwrap();
        assert!(!super::agrees_with_tera(&tera, 3, page));
    }
}
