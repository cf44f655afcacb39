//! `wcs::place` on random and hostile headers: every projection code, frame and parameter
//! card, with ordinary, extreme and wrongly typed values. Whatever a header holds, it gives
//! a position on the sphere or a reason, never a panic, a NaN or a place off the sky, and
//! the same answer every time.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{Map, Value};
use simsite::rng::SplitMix;
use simsite::wcs;

/// Every code of the FITS standard and wcslib, and AIPS's GLS (all worked out by simsite
/// since session 30), and one that is no projection.
const CODES: &[&str] = &[
    "TAN", "TPV", "SIN", "NCP", "AZP", "SZP", "ARC", "STG", "ZEA", "ZPN", "AIR", "CAR", "MER", "CEA", "CYP", "SFL", "PAR", "MOL", "AIT", "HPX",
    "XPH", "COP", "COE", "COD", "COO", "BON", "PCO", "TSC", "CSC", "QSC", "GLS", "XYZ",
];

/// Values a number card may hold in a hostile header: the edges of the sphere and of f64,
/// and other types.
fn odd(r: &mut SplitMix) -> Value {
    let numbers = [0.0, -0.0, 1.0, -1.0, 90.0, -90.0, 180.0, -180.0, 360.0, 720.0, 1e-300, 5e-324, 1e300, -1e300, 1e-12, 89.999_999_9, 90.000_000_1, 1e9];
    match r.below(numbers.len() + 3) {
        i if i < numbers.len() => Value::from(numbers[i]),
        i if i == numbers.len() => Value::from("abc"),
        i if i == numbers.len() + 1 => Value::Bool(true),
        _ => Value::Null,
    }
}

/// Mostly a number in [lo, hi), one time in `1 / odds` a hostile value.
fn number(r: &mut SplitMix, lo: f64, hi: f64, odds: usize) -> Value {
    match r.below(odds) {
        0 => odd(r),
        _ => Value::from(lo + (hi - lo) * r.unit() as f64),
    }
}

fn pick<'a>(r: &mut SplitMix, from: &[&'a str]) -> &'a str {
    from[r.below(from.len())]
}

fn header(r: &mut SplitMix) -> (Map<String, Value>, usize, usize) {
    let mut c = Map::new();
    let axes = match r.below(40) {
        0 => ("DEC-", "RA--"),
        1 => ("ELON", "ELAT"),
        2..=10 => ("GLON", "GLAT"),
        _ => ("RA--", "DEC-"),
    };
    let code = pick(r, CODES);
    let other = if r.below(60) == 0 { pick(r, CODES) } else { code };
    let sip = if code == "TAN" && r.below(4) == 0 { "-SIP" } else { "" };
    c.insert("CTYPE1".into(), format!("{}-{code}{sip}", axes.0).into());
    c.insert("CTYPE2".into(), format!("{}-{other}{sip}", axes.1).into());
    // Now and then the axes alone, with no projection (linear, as wcslib reads them).
    if r.below(30) == 0 {
        c.insert("CTYPE1".into(), axes.0.trim_end_matches('-').into());
        c.insert("CTYPE2".into(), axes.1.trim_end_matches('-').into());
    }
    if r.below(30) > 0 {
        c.insert("CRVAL1".into(), number(r, -360.0, 720.0, 8));
    }
    if r.below(30) > 0 {
        c.insert("CRVAL2".into(), number(r, -90.0, 90.0, 15));
    }
    for k in ["CRPIX1", "CRPIX2"] {
        c.insert(k.into(), number(r, -5000.0, 5000.0, 12));
    }
    // The pixel scale, from a milli-arcsecond to a degree and beyond, in one of the three
    // ways a header gives it.
    let scale = 10f64.powf(-6.5 + 7.0 * r.unit() as f64);
    let turn = (360.0 * r.unit() as f64).to_radians();
    match r.below(3) {
        0 => {
            let cd = [-scale * turn.cos(), scale * turn.sin(), scale * turn.sin(), scale * turn.cos()];
            for (k, v) in ["CD1_1", "CD1_2", "CD2_1", "CD2_2"].into_iter().zip(cd) {
                c.insert(k.into(), if r.below(15) == 0 { odd(r) } else { v.into() });
            }
        }
        1 => {
            c.insert("CDELT1".into(), (-scale).into());
            c.insert("CDELT2".into(), if r.below(15) == 0 { odd(r) } else { scale.into() });
            for (k, v) in ["PC1_1", "PC1_2", "PC2_1", "PC2_2"].into_iter().zip([turn.cos(), -turn.sin(), turn.sin(), turn.cos()]) {
                c.insert(k.into(), v.into());
            }
        }
        _ => {
            c.insert("CDELT1".into(), (-scale).into());
            c.insert("CDELT2".into(), scale.into());
            c.insert("CROTA2".into(), number(r, -180.0, 360.0, 10));
        }
    }
    // Projection parameters: SCAMP's many beside TAN (its linear terms near 1), else the
    // few a projection reads, and rarely the fiducial point's, which none may move.
    if code == "TAN" && sip.is_empty() && r.below(4) == 0 {
        for i in 1..=2 {
            c.insert(format!("PV{i}_1"), number(r, 0.99, 1.01, 40));
            for m in (0..40).filter(|m| *m != 1) {
                if r.below(3) == 0 {
                    c.insert(format!("PV{i}_{m}"), number(r, -0.01, 0.01, 20));
                }
            }
        }
    } else {
        // PV2_0 only ZPN reads; a conic projection must have its θa (PV2_1).
        for m in 0..4 {
            let conic = m == 1 && code.starts_with("CO");
            if r.below(if m == 0 { 20 } else { 3 }) == 0 || (conic && r.below(8) > 0) {
                let v = match code {
                    "HPX" | "XPH" => Value::from(r.below(8) as f64),
                    _ if conic => number(r, -89.0, 89.0, 20),
                    _ => number(r, -100.0, 100.0, 6),
                };
                c.insert(format!("PV2_{m}"), v);
            }
        }
        for m in 0..5 {
            if r.below(if m < 3 { 40 } else { 10 }) == 0 {
                c.insert(format!("PV1_{m}"), number(r, -180.0, 180.0, 3));
            }
        }
    }
    if r.below(4) == 0 {
        c.insert("LONPOLE".into(), number(r, -370.0, 370.0, 8));
    }
    if r.below(4) == 0 {
        c.insert("LATPOLE".into(), number(r, -92.0, 92.0, 8));
    }
    if !sip.is_empty() {
        let order = r.below(5);
        c.insert("A_ORDER".into(), (order as f64).into());
        c.insert("B_ORDER".into(), (order as f64).into());
        for p in 0..=order {
            for q in 0..=order - p {
                for ab in ["A", "B"] {
                    c.insert(format!("{ab}_{p}_{q}"), number(r, -1e-4, 1e-4, 20));
                }
            }
        }
    }
    match r.below(8) {
        0 => (),
        1 => {
            c.insert("RADECSYS".into(), pick(r, &["FK4", "FK5", "ICRS"]).into());
        }
        2 => {
            c.insert("RADESYS".into(), pick(r, &["GAPPT", "", "XYZ", "FK4-NO-E"]).into());
        }
        _ => {
            c.insert("RADESYS".into(), pick(r, &["ICRS", "FK5", "FK4"]).into());
        }
    }
    match r.below(6) {
        0 => {
            c.insert("EQUINOX".into(), pick(r, &["J2000", "B1950.0", "2000", "J2000", "B1950", "", "J", "B-99999"]).into());
        }
        1 | 2 => {
            c.insert("EQUINOX".into(), number(r, 1800.0, 2200.0, 10));
        }
        3 => {
            c.insert("EPOCH".into(), number(r, 1900.0, 2100.0, 4));
        }
        _ => (),
    }
    if r.below(10) == 0 {
        c.insert(pick(r, &["CUNIT1", "CUNIT2"]).into(), pick(r, &["deg", "DEG", "arcsec", "rad", ""]).into());
    }
    let side = |r: &mut SplitMix| if r.below(10) == 0 { 1 } else { 1 + r.below(8000) };
    let (w, h) = (side(r), side(r));
    (c, w, h)
}

#[test]
fn random_and_hostile_headers_give_a_place_on_the_sky_or_a_reason() {
    let mut r = SplitMix::new(30, 1, 0);
    let (mut placed, mut refused) = (0, 0);
    let mut wrong = Vec::new();
    for n in 0..60_000 {
        let (cards, w, h) = header(&mut r);
        let got = match catch_unwind(AssertUnwindSafe(|| wcs::place(&cards, w, h))) {
            Ok(got) => got,
            Err(_) => {
                wrong.push(format!("#{n}: panicked on {w}×{h} {}", Value::Object(cards)));
                continue;
            }
        };
        match &got {
            Ok(Some(p)) => {
                placed += 1;
                let fine = p.ra.is_finite()
                    && (0.0..360.0).contains(&p.ra)
                    && (-90.0..=90.0).contains(&p.dec)
                    && p.fov.is_none_or(|f| f.is_finite() && f > 0.0 && f <= 180.0 + 1e-9);
                if !fine {
                    wrong.push(format!("#{n}: {p:?} from {w}×{h} {}", Value::Object(cards.clone())));
                }
            }
            Ok(None) => wrong.push(format!("#{n}: no celestial WCS seen in {}", Value::Object(cards.clone()))),
            Err(why) => {
                refused += 1;
                if why.trim().is_empty() {
                    wrong.push(format!("#{n}: refused with no reason: {}", Value::Object(cards.clone())));
                }
            }
        }
        // The same header, the same answer (nothing depends on state or order).
        if format!("{:?}", wcs::place(&cards, w, h)) != format!("{got:?}") {
            wrong.push(format!("#{n}: a second reading differs: {}", Value::Object(cards)));
        }
    }
    assert!(wrong.is_empty(), "{} of 60,000 headers went wrong, e.g.:\n{}", wrong.len(), wrong.iter().take(5).cloned().collect::<Vec<_>>().join("\n"));
    // Both ways out are exercised: the generator is not all refusals, nor all ordinary.
    assert!(placed > 10_000 && refused > 10_000, "placed {placed}, refused {refused}");
}
