"""The builder's preprocessing, in Python: decode an archive file and turn it into the
encoder's input tensor exactly as `simsite` does (src/decode/, src/preprocess.rs).

There is one definition of each rule here, mirrored from src/preprocess.rs, and a test
(tests/parity.rs, which runs `python3 training/simsite_prep.py --npy`) checks that both give
the same tensor for the same file. The rules:
- clip limits are percentiles (numpy's linear interpolation) of the finite pixels of all
  bands together; above SAMPLE_CAP finite pixels, of every ceil(n / SAMPLE_CAP)-th one in
  band, row, column order; `zscale` uses IRAF's algorithm (as astropy has it);
- masked (NaN/inf) pixels are filled with the median of that sample;
- when the limits meet (hi <= lo: a sparse image), the minimum and maximum of every finite
  pixel instead;
- x = clip((v - lo) / (hi - lo), 0, 1) (0 when still hi <= lo), then the stretch;
- grey mode averages the stretched R, G, B;
- resizing is Pillow's BILINEAR (antialiased when shrinking), keeping the aspect ratio;
  the encoder input is centred on a zero (black) square.

Needs numpy, Pillow and astropy (FITS); no torch.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

SAMPLE_CAP = 1 << 18
LOG_A = 1000.0
ASINH_B = 0.1
STRETCHES = ("linear", "log", "asinh", "sqrt", "zscale")


@dataclass
class Raster:
    """Planar float32 bands (C, H, W), row 0 at the top, NaN where masked."""

    data: np.ndarray
    display_ready: bool  # 8-bit sources (JPEG, 8-bit PNG/TIFF) are already display-stretched

    @property
    def channels(self) -> int:
        return self.data.shape[0]


# ----------------------------------------------------------------------------- decoding

def _fits_hdu(hdul, hdu):
    from astropy.io import fits

    def is_image(h):
        # Two axes longer than 1 once the degenerate ones are dropped, none of length 0.
        if not isinstance(h, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            return False
        axes = [int(h.header.get(f"NAXIS{n}", 0)) for n in range(1, int(h.header.get("NAXIS", 0)) + 1)]
        return all(a > 0 for a in axes) and sum(a > 1 for a in axes) >= 2

    if hdu == "auto":
        for h in hdul:
            if is_image(h):
                return h
        raise ValueError("no HDU with a 2-D image")
    if isinstance(hdu, int):
        return hdul[hdu]
    return hdul[hdu]


def _sample_stride(npix):
    return max(npix // 4096, 1)


def _spread(s):
    """1st percentile, median and 99th percentile of a sorted sample, as elements at ranks."""
    n = s.size - 1
    return float(s[n // 100]), float(s[n // 2]), float(s[n - n // 100])


def _step_above(x):
    with np.errstate(over="ignore"):
        return float(np.spacing(abs(np.float32(x))))


def _wider_than_float32(bitpix, bscale, bzero):
    """Whether float32 may lose some values (mirrors `MemFits::wider_than_float32`)."""
    unsigned = (bitpix == 16 and bzero == 32768.0) or (bitpix == 8 and bzero == -128.0)
    return bitpix in (-64, 32, 64) or bscale != 1.0 or (bzero != 0.0 and not unsigned)


def _float32(wide, shown, check=True):
    """float32 pixels, as simsite's decoder makes them (src/decode/fits.rs, `Wide`): as they
    are, unless the plane shown overflows float32 or float32 rounds its detail away (a
    pedestal far above the spread); then (x - offset) * scale, with the offset the median
    of a sample and the scale a power of two."""
    finite = np.isfinite(shown)
    stride = _sample_stride(shown.size)
    with np.errstate(over="ignore"):
        narrow = shown.astype(np.float32)
    overflow = bool(np.any(np.isinf(narrow) & finite))
    s = narrow[::stride]
    s = np.sort(s[np.isfinite(s)])
    suspect = overflow
    if not check:
        suspect = False
    elif s.size:
        lo, median, hi = _spread(s)
        suspect = suspect or _step_above(median) > (hi - lo) * 1e-3
    go_wide = False
    if suspect:
        picked = np.sort(shown[finite & (np.arange(shown.size) % stride == 0)])
        if picked.size:
            low, offset, high = _spread(picked)
            go_wide = overflow or (high > low and _step_above(offset) > (high - low) * 1e-3)
    if not go_wide:
        with np.errstate(over="ignore"):
            out = wide.astype(np.float32)
        out[~np.isfinite(wide)] = np.nan
        return out
    reach = max(float(shown[finite].max()) - offset, offset - float(shown[finite].min()))
    exponent = math.frexp(reach)[1] - 1 if reach > 0 and math.isfinite(reach) else 0
    scale = 2.0 ** -exponent if reach > 0 and math.isfinite(reach) and not -100 <= exponent <= 100 else 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        out = ((wide - offset) * scale).astype(np.float32)
    out[~np.isfinite(wide)] = np.nan
    return out


def decode_fits(path, hdu="auto", cube="peak") -> Raster:
    from astropy.io import fits

    with fits.open(path, memmap=False, do_not_scale_image_data=True) as hdul:
        h = _fits_hdu(hdul, hdu)
        raw = np.asarray(h.data)
        hdr = h.header
        bscale, bzero = float(hdr.get("BSCALE", 1.0)), float(hdr.get("BZERO", 0.0))
        bitpix = int(hdr.get("BITPIX", -32))
        blank = hdr.get("BLANK") if raw.dtype.kind in "iu" else None
        # CFITSIO scales in double precision, then rounds to float.
        wide = raw.astype(np.float64) * bscale + bzero
        if blank is not None:
            wide[raw == blank] = np.nan
    # Degenerate axes (length 1) are dropped; `real` keeps the 0-based FITS axis numbers.
    fits_axes = list(reversed(wide.shape))
    real = [n for n, a in enumerate(fits_axes) if a > 1]
    if len(real) < 2:
        raise ValueError(f"axes {fits_axes}: not a 2-D image")
    lengths = [fits_axes[n] for n in real]
    w, h_ = lengths[0], lengths[1]
    if min(w, h_) < 8 and max(w, h_) >= 16 * min(w, h_):
        raise ValueError(f"{w} x {h_} pixels: a strip (a spectrum, or orders of one), not a picture")
    wide = wide.reshape(list(reversed(lengths)))
    first = wide.reshape(-1, h_ * w)[cube if isinstance(cube, int) and wide.size > h_ * w else 0]
    data = _float32(wide, first, _wider_than_float32(bitpix, bscale, bzero))
    planes = data.reshape(-1, h_, w)
    # Peak and sum do not collapse a polarisation axis (CTYPEn = STOKES): only its first
    # plane (I) is. (numpy's axes run backwards: FITS axis j, 0-based, is numpy axis
    # ndim - 1 - j.)
    if not isinstance(cube, int):
        for j in range(2, len(real)):
            if str(hdr.get(f"CTYPE{real[j] + 1}", "")).strip().upper() == "STOKES":
                planes = np.take(data, [0], axis=data.ndim - 1 - j).reshape(-1, h_, w)
                break
    if isinstance(cube, int):
        img = planes[cube if planes.shape[0] > 1 else 0]
    elif cube == "peak":
        img = np.fmax.reduce(planes, axis=0)
    else:
        all_nan = np.all(np.isnan(planes), axis=0)
        img = np.nansum(planes, axis=0, dtype=np.float32)
        img[all_nan] = np.nan
    # FITS stores the bottom row first; row 0 is the top of the image.
    return Raster(np.ascontiguousarray(img[::-1])[None].astype(np.float32), False)


def decode_raster(path) -> Raster:
    # A camera's EXIF orientation (or a TIFF's Orientation tag) is applied: shown upright.
    im = ImageOps.exif_transpose(Image.open(path))
    im.load()
    mode = im.mode
    if mode in ("L", "LA", "1"):
        return Raster(np.asarray(im.convert("L"), dtype=np.float32)[None], True)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return Raster(np.asarray(im, dtype=np.float32)[None], False)
    if mode == "F":
        return Raster(np.asarray(im, dtype=np.float32)[None], False)
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    return Raster(np.ascontiguousarray(rgb.transpose(2, 0, 1)), True)


def decode(path, hdu="auto", cube="peak") -> Raster:
    p = str(path).lower()
    if p.endswith((".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz", ".fz")):
        return decode_fits(path, hdu, cube)
    return decode_raster(path)


# ----------------------------------------------------------------------------- stretches

def stretch(name: str, x: np.ndarray) -> np.ndarray:
    """The stretch of x in [0, 1] onto [0, 1]."""
    if name in ("linear", "zscale"):
        return x
    if name == "sqrt":
        return np.sqrt(x)
    if name == "log":
        return (np.log1p(LOG_A * x) / math.log1p(LOG_A)).astype(np.float32)
    if name == "asinh":
        return (np.arcsinh(x / ASINH_B) / math.asinh(1.0 / ASINH_B)).astype(np.float32)
    raise ValueError(f"unknown stretch {name!r}; expected one of {', '.join(STRETCHES)}")


def finite_sample(bands: np.ndarray, cap: int = SAMPLE_CAP) -> np.ndarray:
    flat = bands.reshape(-1)
    finite = flat[np.isfinite(flat)]
    stride = max(1, -(-finite.size // cap))
    return finite[::stride]


def zscale(values: np.ndarray) -> tuple[float, float]:
    """IRAF zscale limits with astropy's ZScaleInterval defaults (mirrors preprocess.rs)."""
    n_samples, contrast, max_reject, min_npixels, krej, max_iterations = 1000, 0.25, 0.5, 5, 2.5, 5
    stride = max(1, int(values.size / n_samples))
    s = np.sort(values[::stride][:n_samples].astype(np.float64))
    npix = s.size
    vmin, vmax = s[0], s[-1]
    minpix = max(min_npixels, int(npix * max_reject))
    ngrow = max(1, int(npix * 0.01))
    bad = np.zeros(npix, bool)
    ngood, last_ngood = npix, npix + 1
    x = np.arange(npix, dtype=np.float64)
    fit = None
    for _ in range(max_iterations):
        if ngood >= last_ngood or ngood < minpix:
            break
        g = ~bad
        sw, sx, sy = g.sum(), x[g].sum(), s[g].sum()
        sxx, sxy = (x[g] ** 2).sum(), (x[g] * s[g]).sum()
        denom = sw * sxx - sx * sx
        slope = (sw * sxy - sx * sy) / denom if denom != 0 else 0.0
        fit = (slope, (sy - slope * sx) / sw)
        flat = s - (fit[0] * x + fit[1])
        good = flat[~bad]
        threshold = krej * good.std()
        bad |= (flat < -threshold) | (flat > threshold)
        bad = np.convolve(bad, np.ones(ngrow), mode="same") > 0
        last_ngood = ngood
        ngood = int((~bad).sum())
    if fit is not None and ngood >= minpix:
        slope = fit[0] / contrast
        center = (npix - 1) // 2
        median = np.median(s)
        vmin = max(vmin, median - (center - 1.0) * slope)
        vmax = min(vmax, median + (npix - center) * slope)
    return float(np.float32(vmin)), float(np.float32(vmax))


def stretch_bands(r: Raster, stretch_name="asinh", stretch_8bit="linear", clip_low=1.0, clip_high=99.7):
    """Bands in [0, 1], no NaN (colour stays colour)."""
    name = stretch_8bit if r.display_ready else stretch_name
    sample = finite_sample(r.data)
    if sample.size == 0:
        raise ValueError("every pixel is blank (NaN/inf or BLANK)")
    if name == "zscale":
        lo, hi = zscale(sample)
    else:
        lo, hi = (np.float32(np.percentile(sample, p)) for p in (clip_low, clip_high))
    if hi <= lo:  # a sparse image (a few counts on zeros): the minimum and maximum of
        # every finite pixel (a sample could miss a source of one or two pixels)
        finite = r.data[np.isfinite(r.data)]
        lo, hi = np.float32(finite.min()), np.float32(finite.max())
    fill = np.float32(np.percentile(sample, 50.0))
    bands = np.where(np.isfinite(r.data), r.data, fill).astype(np.float32)
    rng = np.float32(hi) - np.float32(lo)
    scale = np.float32(1.0) / rng if rng > 0 else np.float32(0.0)
    x = np.clip((bands - np.float32(lo)) * scale, 0.0, 1.0).astype(np.float32)
    return stretch(name, x)


# ----------------------------------------------------------------------------- geometry

def fit_size(w: int, h: int, box: int) -> tuple[int, int]:
    scale = box / max(w, h)
    # Rust's f64::round rounds halves away from zero; Python's round() would round to even.
    rnd = lambda v: int(math.floor(v + 0.5))
    return min(max(rnd(w * scale), 1), box), min(max(rnd(h * scale), 1), box)


def resize_plane(plane: np.ndarray, w: int, h: int) -> np.ndarray:
    if plane.shape == (h, w):
        return plane.astype(np.float32)
    im = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(im.resize((w, h), Image.BILINEAR), dtype=np.float32)


def encoder_bands(bands: np.ndarray, channels: str) -> np.ndarray:
    if bands.shape[0] == 3 and channels == "grey":
        return ((bands[0] + bands[1] + bands[2]) / np.float32(3.0))[None].astype(np.float32)
    return bands


def place(bands: np.ndarray, size: int, model_channels: int) -> np.ndarray:
    """Resize (C, H, W) bands in [0, 1] to fit `size` and centre them on a black square."""
    _, h, w = bands.shape
    fw, fh = fit_size(w, h, size)
    ox, oy = (size - fw) // 2, (size - fh) // 2
    resized = [resize_plane(b, fw, fh) for b in bands]
    out = np.zeros((model_channels, size, size), np.float32)
    for c in range(model_channels):
        out[c, oy:oy + fh, ox:ox + fw] = resized[min(c, len(resized) - 1)]
    return np.clip(out, 0.0, 1.0)


def prepare(r: Raster, size=64, model_channels=1, channels="grey", stretch_name="asinh",
            stretch_8bit="linear", clip_low=1.0, clip_high=99.7) -> np.ndarray:
    """The encoder's input tensor (model_channels, size, size), values in [0, 1]."""
    bands = stretch_bands(r, stretch_name, stretch_8bit, clip_low, clip_high)
    return place(encoder_bands(bands, channels), size, model_channels)


def write_npy(path, a: np.ndarray):
    np.save(path, a.astype("<f4"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--npy", required=True, help="where to write the tensor (.npy, float32)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--model-channels", type=int, default=1)
    ap.add_argument("--channels", default="grey", choices=["grey", "rgb"])
    ap.add_argument("--stretch", default="asinh", choices=STRETCHES)
    ap.add_argument("--stretch-8bit", default="linear", choices=STRETCHES)
    ap.add_argument("--clip-low", type=float, default=1.0)
    ap.add_argument("--clip-high", type=float, default=99.7)
    a = ap.parse_args(argv)
    t = prepare(decode(a.file), a.size, a.model_channels, a.channels, a.stretch, a.stretch_8bit,
                a.clip_low, a.clip_high)
    write_npy(a.npy, t)


if __name__ == "__main__":
    sys.exit(main())
