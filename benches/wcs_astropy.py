#!/usr/bin/env python3
"""simsite's sky positions beside astropy's, on random FITS headers of every frame and
projection simsite reads. Prints, per family, how many headers agree within 0.005" (the
output's six decimals round to ~0.0025"), the largest separation, and each disagreement.

    ~/.cache/simsite/py-venv/bin/python benches/wcs_astropy.py [--n 40] [--simsite PATH]

astropy: WCS(header).all_pix2world at the centre pixel ((NAXIS1 + 1) / 2, (NAXIS2 + 1) / 2,
origin 1), then SkyCoord(..., frame=wcs_to_celestial_frame(w)).icrs. simsite: the `sky:`
line of `simsite inspect`. A header both give no position for counts as agreeing.
"""
import argparse, math, os, re, subprocess, sys, tempfile, warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import wcs_to_celestial_frame
from astropy.coordinates import SkyCoord
import astropy.units as u

warnings.simplefilter("ignore")
ZENITHAL = ["TAN", "SIN", "ARC", "STG", "ZEA", "AZP", "SZP", "ZPN", "AIR", "NCP"]
CYLINDRICAL = ["CAR", "MER", "CEA", "CYP", "SFL", "PAR", "MOL", "AIT", "HPX"]
CONIC = ["COP", "COE", "COD", "COO"]
# Bonne's and the polyconic, the three quad-cubes and HEALPix's butterfly (session 30).
OTHER = ["BON", "PCO", "TSC", "CSC", "QSC", "XPH"]
# AIPS's GLS, which astropy (wcslib's celfix) reads as SFL about CRVAL2, and axes with no
# projection at all ('RA', 'DEC': linear, here "LIN"; session 30).
OLD = ["GLS", "LIN"]
W, H = 100, 80
# The place in the `sky:` line `simsite inspect` prints.
SKY = re.compile(r"\(RA ([-0-9.]+), Dec ([-0-9.]+)")


def separation(a, b):
    r1, d1, r2, d2 = map(math.radians, (*a, *b))
    s = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(s)))) * 3600


def header(rng, proj, frame):
    axes = ("GLON", "GLAT") if frame == "galactic" else ("RA--", "DEC-")
    scale = 10 ** rng.uniform(-4, -1.5) if proj in ZENITHAL else 10 ** rng.uniform(-2, 0)
    turn = math.radians(rng.uniform(0, 360))
    c = {"CTYPE1": f"{axes[0]}-{proj}", "CTYPE2": f"{axes[1]}-{proj}",
         "CRVAL1": rng.uniform(0, 360), "CRVAL2": rng.uniform(-89, 89),
         "CRPIX1": rng.uniform(-100, 200), "CRPIX2": rng.uniform(-100, 200),
         "CD1_1": -scale * math.cos(turn), "CD1_2": scale * math.sin(turn),
         "CD2_1": scale * math.sin(turn), "CD2_2": scale * math.cos(turn)}
    if proj == "NCP":
        c["CRVAL2"] = rng.uniform(10, 89)
    if proj == "LIN":
        c["CTYPE1"], c["CTYPE2"] = axes[0].rstrip("-"), axes[1].rstrip("-")
    if proj in CYLINDRICAL and rng.uniform() < 0.3:
        c["CRVAL2"] = 0.0
    pv = {"AZP": {"PV2_1": rng.uniform(0, 3), "PV2_2": rng.uniform(-30, 30)},
          "SZP": {"PV2_1": rng.choice([0.0, 0.5, 2.0]), "PV2_2": rng.uniform(0, 360), "PV2_3": rng.uniform(20, 90)},
          "ZPN": {"PV2_1": 1.0, "PV2_3": rng.uniform(-50, 50)},
          "AIR": {"PV2_1": rng.choice([90.0, 45.0, 0.0])},
          "CEA": {"PV2_1": rng.choice([1.0, 0.7])},
          "CYP": {"PV2_1": rng.choice([1.0, 0.0]), "PV2_2": rng.choice([1.0, 0.7])},
          "HPX": {"PV2_1": rng.choice([4.0, 6.0]), "PV2_2": rng.choice([3.0, 5.0])}}.get(proj, {})
    if proj in CONIC:
        pv = {"PV2_1": rng.choice([-1, 1]) * rng.uniform(5, 85), "PV2_2": rng.choice([0.0, rng.uniform(0, 20)])}
    if proj == "BON":
        pv = {"PV2_1": rng.choice([-1, 1]) * rng.uniform(5, 85)}
    c.update(pv)
    if proj not in ZENITHAL and rng.uniform() < 0.2:
        c["LONPOLE"] = rng.choice([0.0, 180.0, rng.uniform(-180, 180)])
    if frame in ("FK4", "FK4-NO-E", "FK5"):
        c["RADESYS"] = frame
        c["EQUINOX"] = rng.choice([1950.0, 1975.0, 2000.0, rng.uniform(1850, 2150)])
    elif frame == "ICRS":
        c["RADESYS"] = "ICRS"
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in c.items()}


def astropy_place(h):
    try:
        w = WCS(h)
        lon, lat = w.all_pix2world([[(W + 1) / 2, (H + 1) / 2]], 1)[0]
        if not (np.isfinite(lon) and np.isfinite(lat)):
            return None
        c = SkyCoord(lon * u.deg, lat * u.deg, frame=wcs_to_celestial_frame(w)).icrs
        return c.ra.deg, c.dec.deg
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40, help="headers per family")
    ap.add_argument("--seed", type=int, default=29)
    ap.add_argument("--only", nargs="*", help="only these projections (e.g. GLS BON)")
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(here, "..", "target"))
    ap.add_argument("--simsite", default=os.path.join(target, "release", "simsite"))
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    families = [(p, "ICRS") for p in ZENITHAL + CYLINDRICAL + CONIC + OTHER]
    families += [(p, "ICRS") for p in OLD] + [("GLS", "galactic"), ("LIN", "galactic")]
    families += [("TAN", f) for f in ("FK4", "FK4-NO-E", "FK5", "galactic")] + [("CAR", "galactic"), ("AIT", "galactic")]
    if a.only:
        families = [f for f in families if f[0] in a.only]
    tmp = tempfile.mkdtemp(prefix="simsite-wcs-")
    cfg = os.path.join(tmp, "cfg.toml")
    open(cfg, "w").write('[archive]\nroot = "."\n')
    path = os.path.join(tmp, "t.fits")
    bad_total = 0
    print(f"{'family':18} {'headers':>7} {'agree':>6} {'both none':>9} {'max sep (arcsec)':>17}")
    for proj, frame in families:
        agree = none = 0
        worst = 0.0
        bad = []
        for _ in range(a.n):
            cards = header(rng, proj, frame)
            h = fits.Header()
            h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, W, H
            for k, v in cards.items():
                h[k] = v
            fits.PrimaryHDU(np.zeros((H, W), np.float32), header=h).writeto(path, overwrite=True)
            ref = astropy_place(h)
            out = subprocess.run([a.simsite, "inspect", "--config", cfg, path], capture_output=True, text=True)
            if out.returncode != 0 or "panic" in (out.stdout + out.stderr).lower():
                bad.append(("crash", cards, out.stderr[-300:]))
                continue
            m = SKY.search(out.stdout)
            got = (float(m.group(1)), float(m.group(2))) if m else None
            if got is None and ref is None:
                agree += 1
                none += 1
            elif got is not None and ref is not None:
                d = separation(got, ref)
                worst = max(worst, d)
                if d < 0.005:
                    agree += 1
                else:
                    bad.append((f'{d:.4f}"', cards, got, ref))
            else:
                line = next((l for l in out.stdout.splitlines() if l.startswith("sky:")), "")
                bad.append(("only " + ("simsite" if got else "astropy"), cards, line, ref))
        print(f"{proj + ' ' + frame:18} {a.n:7d} {agree:6d} {none:9d} {worst:17.4f}")
        for b in bad:
            print("   ", *b)
        bad_total += len(bad)
    print(f"{bad_total} header(s) disagree")
    sys.exit(1 if bad_total else 0)


if __name__ == "__main__":
    main()
