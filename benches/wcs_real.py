#!/usr/bin/env python3
"""simsite's sky positions beside astropy's on real FITS files: for each file, the `sky:`
line of `simsite inspect` and astropy's place for the centre of the HDU simsite picks
(WCS(header).celestial.all_pix2world at ((NAXIS1 + 1) / 2, (NAXIS2 + 1) / 2), origin 1,
then SkyCoord(..., frame=wcs_to_celestial_frame(w)).icrs). Prints one line per file and a
count per outcome. Files are copied under a `.fits` name first (MIDAS writes `.mt`).

    ~/.cache/simsite/py-venv/bin/python benches/wcs_real.py [--simsite PATH] FILE_OR_FOLDER...

Session 30 ran it on the FITS files of three Debian packages:
    benches/wcs_real.py $(dpkg -L eso-midas-testdata python-drizzle-testdata iraf-noao \\
        | grep -i -E '\\.(fits|fit|fts|mt)$')
"""
import argparse, collections, os, re, shutil, subprocess, tempfile, warnings

from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import wcs_to_celestial_frame
from astropy.coordinates import SkyCoord
import astropy.units as u

from wcs_astropy import SKY, separation

warnings.simplefilter("ignore")
IMAGE = re.compile(r"image: HDU (\d+), axes \[([0-9, ]+)\]")
EXTENSIONS = (".fits", ".fit", ".fts", ".mt")


def astropy_place(path, hdu, axes):
    try:
        w = WCS(fits.open(path)[hdu].header).celestial
        if not w.has_celestial or w.naxis != 2:
            return None, "no celestial WCS"
        (ra, dec), = w.all_pix2world([[(axes[0] + 1) / 2, (axes[1] + 1) / 2]], 1)
        c = SkyCoord(ra * u.deg, dec * u.deg, frame=wcs_to_celestial_frame(w)).icrs
        return (c.ra.deg, c.dec.deg), " ".join(w.wcs.ctype)
    except Exception as e:  # astropy refusing the header is an outcome, not a failure
        return None, "astropy: " + " ".join(str(e).split())[:80]


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(here, "..", "target"))
    ap.add_argument("--simsite", default=os.path.join(target, "release", "simsite"))
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    files = []
    for p in a.paths:
        if os.path.isdir(p):
            files += [os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs if f.lower().endswith(EXTENSIONS)]
        else:
            files.append(p)
    tmp = tempfile.mkdtemp(prefix="simsite-wcs-real-")
    cfg = os.path.join(tmp, "cfg.toml")
    open(cfg, "w").write('[archive]\nroot = "."\n')
    counts = collections.Counter()
    for i, f in enumerate(sorted(files)):
        copy = os.path.join(tmp, f"{i}.fits")
        shutil.copyfile(f, copy)
        out = subprocess.run([a.simsite, "inspect", "--config", cfg, copy], capture_output=True, text=True)
        text = out.stdout + out.stderr
        line = next((l for l in text.splitlines() if l.startswith("sky:")), "sky: (none printed)")
        m = SKY.search(line)
        got = (float(m[1]), float(m[2])) if m else None
        image = IMAGE.search(text)
        ref, what = (None, "simsite read no image") if not image else astropy_place(copy, int(image[1]), [int(x) for x in image[2].split(",")])
        if got and ref:
            d = separation(got, ref)
            outcome = "both, within 0.0025\"" if d < 0.0025 else "both, further apart"
            detail = f'{d:.4f}"'
        else:
            outcome = {(False, False): "neither", (True, False): "only simsite", (False, True): "only astropy"}[(bool(got), bool(ref))]
            detail = ""
        counts[outcome] += 1
        print(f"{f} | {outcome} {detail} | {what} | {line[:120]}")
    print()
    for k, n in sorted(counts.items()):
        print(f"{n:5d}  {k}")


if __name__ == "__main__":
    main()
