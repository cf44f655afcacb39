//! Celestial frames to ICRS, as astropy's coordinate transformations do them: FK5 at any
//! equinox (IAU 2006 precession to J2000, then the frame bias of USNO circular 179), FK4 at
//! any Besselian equinox (E-terms of aberration removed, Newcomb's precession to B1950, the
//! B1950 → J2000 matrix with its correction for FK4's rotation, observation time = equinox)
//! and galactic coordinates (through FK5 J2000). Old archives (photographic plates, radio
//! observations reduced with AIPS) give their positions in B1950; without this they would
//! have none.

type Mat = [[f64; 3]; 3];
type Vec3 = [f64; 3];

const ARCSEC: f64 = std::f64::consts::PI / (180.0 * 3600.0);

/// FK4 (E-terms removed) B1950 → FK5 J2000 for positions, without proper motion (Standish
/// 1982; the matrix astropy uses).
const B1950_TO_J2000: Mat = [
    [0.9999256794956877, -0.0111814832204662, -0.0048590038153592],
    [0.0111814832391717, 0.9999374848933135, -0.0000271625947142],
    [0.0048590037723143, -0.0000271702937440, 0.9999881946023742],
];

/// Its change per century of observation time after 1950, in units of 10⁻⁶: FK4 rotates
/// (Murray 1989, eq. 29).
const FK4_CORRECTION: Mat = [
    [-0.0026455262, -1.1539918689, 2.1111346190],
    [1.1540628161, -0.0129042997, 0.0236021478],
    [-2.1112979048, -0.0056024448, 0.0102587734],
];

/// Equatorial or galactic coordinates in one frame, and how to give them in ICRS.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Rotation from the frame (E-terms removed) to ICRS.
    to_icrs: Mat,
    /// FK4's E-terms of aberration at the equinox, removed before the rotation.
    eterms: Option<Vec3>,
}

impl Frame {
    pub fn icrs() -> Frame {
        Frame { to_icrs: identity(), eterms: None }
    }

    /// FK5 at the Julian epoch `equinox`.
    pub fn fk5(equinox: f64) -> Frame {
        Frame { to_icrs: mul(&transpose(&icrs_to_fk5()), &fk5_precession_to_j2000(equinox)), eterms: None }
    }

    /// FK4 at the Besselian epoch `equinox` (observed then), with or without the E-terms
    /// of aberration (`FK4`, `FK4-NO-E`).
    pub fn fk4(equinox: f64, eterms: bool) -> Frame {
        // FK4 (E-terms removed) at `equinox` → B1950 → FK5 J2000 → ICRS.
        let t = (julian_year(besselian_jd(equinox)) - 1950.0) / 100.0;
        let mut b = B1950_TO_J2000;
        for (row, corr) in b.iter_mut().zip(FK4_CORRECTION) {
            for (x, c) in row.iter_mut().zip(corr) {
                *x += c * 1e-6 * t;
            }
        }
        let to_j2000 = mul(&b, &newcomb(equinox, 1950.0));
        Frame { to_icrs: mul(&transpose(&icrs_to_fk5()), &to_j2000), eterms: eterms.then(|| fk4_eterms(equinox)) }
    }

    /// Galactic coordinates (IAU 1958, as astropy defines them through FK5 J2000).
    pub fn galactic() -> Frame {
        static GALACTIC: std::sync::LazyLock<Frame> = std::sync::LazyLock::new(|| {
            // FK5 J2000 → galactic, as `fk5_to_gal`: the north galactic pole and the
            // galactic longitude of the north celestial pole.
            let fk5_to_gal = mul(&mul(&rot(Axis::Z, 180.0 - 122.9319185680026), &rot(Axis::Y, 90.0 - 27.12825118085622)), &rot(Axis::Z, 192.8594812065348));
            Frame { to_icrs: mul(&transpose(&icrs_to_fk5()), &transpose(&fk5_to_gal)), eterms: None }
        });
        GALACTIC.clone()
    }

    /// (`lon`, `lat`) of this frame, degrees, in ICRS (RA, Dec), degrees.
    pub fn to_icrs(&self, lon: f64, lat: f64) -> (f64, f64) {
        let mut v = unit(lon, lat);
        if let Some(a) = self.eterms {
            // As astropy removes them from a direction: r − A + (A·r) r, made a unit
            // vector again.
            let dot = a[0] * v[0] + a[1] * v[1] + a[2] * v[2];
            v = [0, 1, 2].map(|i| v[i] - a[i] + dot * v[i]);
            let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            v = v.map(|x| x / n);
        }
        angles(apply(&self.to_icrs, v))
    }
}

/// Galactic longitude and latitude (degrees, l in [0, 360)) of ICRS (`ra`, `dec`), as
/// astropy's `SkyCoord(...).galactic` gives them.
pub fn galactic(ra: f64, dec: f64) -> (f64, f64) {
    // The transpose takes ICRS to galactic.
    angles(apply(&transpose(&Frame::galactic().to_icrs), unit(ra, dec)))
}

/// The unit vector towards longitude `lon` and latitude `lat`, degrees.
fn unit(lon: f64, lat: f64) -> Vec3 {
    let (sl, cl) = lon.to_radians().sin_cos();
    let (sb, cb) = lat.to_radians().sin_cos();
    [cb * cl, cb * sl, sb]
}

/// Longitude in [0, 360) and latitude, degrees, of the direction `w`. The latitude comes
/// from all three components: FK4's matrix is a rotation only to ~1e-12, which near a pole
/// an arcsine of the third alone would turn into up to 1".
fn angles(w: Vec3) -> (f64, f64) {
    (w[1].atan2(w[0]).to_degrees().rem_euclid(360.0), w[2].atan2(w[0].hypot(w[1])).to_degrees())
}

fn apply(m: &Mat, v: Vec3) -> Vec3 {
    [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
}

#[derive(Clone, Copy)]
enum Axis {
    X,
    Y,
    Z,
}

/// The rotation of the coordinate axes by `deg` about `axis` (astropy's `rotation_matrix`,
/// ERFA's `Rx`/`Ry`/`Rz`).
fn rot(axis: Axis, deg: f64) -> Mat {
    rot_rad(axis, deg.to_radians())
}

fn rot_rad(axis: Axis, a: f64) -> Mat {
    let (s, c) = a.sin_cos();
    match axis {
        Axis::X => [[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]],
        Axis::Y => [[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]],
        Axis::Z => [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]],
    }
}

fn identity() -> Mat {
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
}

fn mul(a: &Mat, b: &Mat) -> Mat {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn transpose(a: &Mat) -> Mat {
    [0, 1, 2].map(|i| [0, 1, 2].map(|j| a[j][i]))
}

/// ICRS → FK5 J2000: the frame bias (USNO circular 179).
fn icrs_to_fk5() -> Mat {
    let (eta0, xi0, da0) = (-19.9e-3, 9.1e-3, -22.9e-3);
    let deg = |arcsec: f64| arcsec / 3600.0;
    mul(&mul(&rot(Axis::X, -deg(eta0)), &rot(Axis::Y, deg(xi0))), &rot(Axis::Z, deg(da0)))
}

/// The IAU 2006 precession matrix (bias removed) from J2000 to the Julian epoch `epoch`,
/// ERFA's `bp06` `rp`, through the Fukushima-Williams angles; its transpose precesses to
/// J2000.
fn fk5_precession_to_j2000(epoch: f64) -> Mat {
    let bias_precession = |t: f64| -> Mat {
        let poly = |c: [f64; 6]| c.iter().rev().fold(0.0, |acc, c| acc * t + c) * ARCSEC;
        let gamb = poly([-0.052928, 10.556378, 0.4932044, -0.00031238, -0.000002788, 0.0000000260]);
        let phib = poly([84381.412819, -46.811016, 0.0511268, 0.00053289, -0.000000440, -0.0000000176]);
        let psib = poly([-0.041775, 5038.481484, 1.5584175, -0.00018522, -0.000026452, -0.0000000148]);
        let epsa = poly([84381.406, -46.836769, -0.0001831, 0.00200340, -0.000000576, -0.0000000434]);
        // R1(−ε_A) R3(−ψ̄) R1(φ̄) R3(γ̄)
        mul(&mul(&rot_rad(Axis::X, -epsa), &rot_rad(Axis::Z, -psib)), &mul(&rot_rad(Axis::X, phib), &rot_rad(Axis::Z, gamb)))
    };
    let to_date = mul(&bias_precession((epoch - 2000.0) / 100.0), &transpose(&bias_precession(0.0)));
    transpose(&to_date)
}

/// FK4 precession from Besselian epoch `from` to `to` (Newcomb, as astropy's FK4).
fn newcomb(from: f64, to: f64) -> Mat {
    let t1 = (from - 1850.0) / 1000.0;
    let dt = (to - 1850.0) / 1000.0 - t1;
    let z1 = (0.060 * t1 + 139.720) * t1 + 23035.545;
    let zeta = ((17.995 * dt + (-0.27 * t1 + 30.240)) * dt + z1) * dt / 3600.0;
    let z = ((18.325 * dt + (109.480 + 0.39 * t1)) * dt + z1) * dt / 3600.0;
    let theta1 = (-0.37 * t1 - 85.29) * t1 + 20051.12;
    let theta = ((-41.8 * dt + (-0.37 * t1 - 42.65)) * dt + theta1) * dt / 3600.0;
    mul(&mul(&rot(Axis::Z, -z), &rot(Axis::Y, theta)), &rot(Axis::Z, -zeta))
}

/// FK4's E-terms of aberration at the Besselian epoch `equinox` (a vector in the frame).
fn fk4_eterms(equinox: f64) -> Vec3 {
    let jd = besselian_jd(equinox);
    let t = (jd - besselian_jd(1950.0)) / 36525.0;
    let k = 0.0056932_f64.to_radians();
    let ek = k * ((-0.000000126 * t - 0.00004193) * t + 0.01673011);
    let g = ((((0.012 * t + 1.65) * t + 6190.67) * t + 1015489.951) / 3600.0).to_radians();
    // The mean obliquity of the ecliptic, IAU 1980 (ERFA's `obl80`).
    let t80 = (jd - 2451545.0) / 36525.0;
    let o = (84381.448 + (-46.8150 + (-0.00059 + 0.001813 * t80) * t80) * t80) * ARCSEC;
    let minus_ek_cos_g = -ek * g.cos();
    [ek * g.sin(), minus_ek_cos_g * o.cos(), minus_ek_cos_g * o.sin()]
}

/// The Julian date (TT) of Besselian epoch `b`.
fn besselian_jd(b: f64) -> f64 {
    2415020.31352 + (b - 1900.0) * 365.242198781
}

/// The Julian epoch of Julian date `jd`.
fn julian_year(jd: f64) -> f64 {
    2000.0 + (jd - 2451545.0) / 365.25
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Separation in arcseconds.
    fn off(a: (f64, f64), b: (f64, f64)) -> f64 {
        crate::wcs::separation(a, b) * 3600.0
    }

    /// Positions from astropy 8.0.2 (`SkyCoord(ra, dec, frame=...).icrs`).
    #[test]
    fn frames_agree_with_astropy() {
        // Within arcseconds of the poles, where FK4's matrix, a rotation only to ~1e-12,
        // had put a centre 1" from astropy's (a reviewer's cases).
        let near_the_poles = [
            ("FK4 B2200, 1\" from the north pole", Frame::fk4(2200.0, true), (181.28325254576797, 88.88727638268902), (359.9992203094, 89.9997220486)),
            ("FK4 B1900, 0.5\" from the north pole", Frame::fk4(1900.0, true), (359.3582581366845, 89.44310175362052), (0.0000336333, 89.9998611042)),
            ("FK4-NO-E B2100, south", Frame::fk4(2100.0, false), (12.0, -88.9), (21.9057495225, -89.4349667353)),
        ];
        let cases: [(&str, Frame, (f64, f64), (f64, f64)); 9] = [
            ("FK4 B1950", Frame::fk4(1950.0, true), (10.684708, 41.26875), (11.3723289335, 41.5419562453)),
            ("FK4 B1950 near the pole", Frame::fk4(1950.0, true), (123.0, 89.7), (150.8200376001, 89.4908913412)),
            ("FK4 B1975", Frame::fk4(1975.0, true), (201.365, -43.019), (201.7333564605, -43.1485271189)),
            ("FK4-NO-E B1950", Frame::fk4(1950.0, false), (10.684708, 41.26875), (11.3723280882, 41.5420128895)),
            ("FK5 J2000", Frame::fk5(2000.0), (10.684708, 41.26875), (10.6846964608, 41.2687485409)),
            ("FK5 J1975", Frame::fk5(1975.0), (299.868, 40.734), (300.0843012886, 40.8035389991)),
            ("FK5 J2010", Frame::fk5(2010.0), (83.633, 22.0145), (83.4825096837, 22.0082595647)),
            ("galactic centre", Frame::galactic(), (0.0, 0.0), (266.4049882865, -28.9361777618)),
            ("galactic, M31", Frame::galactic(), (121.1744, -21.5729), (10.6847762891, 41.2691609245)),
        ];
        for (name, frame, at, astropy) in cases.into_iter().chain(near_the_poles) {
            let got = frame.to_icrs(at.0, at.1);
            assert!(off(got, astropy) < 1e-4, "{name}: {got:?} is {}\" from astropy's {astropy:?}", off(got, astropy));
        }
        // And back to galactic (astropy's `.galactic`).
        for (icrs, lb) in [((202.470074, 47.194658), (104.850070, 68.561112)), ((10.684708, 41.26875), (121.174329, -21.573309)), ((0.0, 90.0), (122.931925, 27.128252))] {
            let got = galactic(icrs.0, icrs.1);
            assert!(off(got, lb) < 0.002, "{icrs:?}: {got:?} against {lb:?}");
        }
        let centre = galactic(266.4049882865, -28.9361777618);
        assert!(off(centre, (0.0, 0.0)) < 0.002 && (0.0..360.0).contains(&centre.0), "{centre:?}");
        // ICRS is left as it is; FK5 J2000 differs from it by the frame bias only (< 0.05").
        assert!(off(Frame::icrs().to_icrs(10.684708, 41.26875), (10.684708, 41.26875)) < 1e-9);
        let bias = off(Frame::fk5(2000.0).to_icrs(10.684708, 41.26875), (10.684708, 41.26875));
        assert!(bias > 0.005 && bias < 0.05, "{bias}");
    }
}
