"""Writes the starting corpora of the fuzz targets (fuzz/corpus/<target>/).

Small valid files of every kind the decoders take, plus a few broken ones; each decoder
input starts with one selector byte (which settings and, for `raster`, which format).
Run with the benchmark venv (numpy, Pillow, astropy):
    ~/.cache/simsite/bench-venv/bin/python fuzz/make_seeds.py
"""
import gzip
import io
import pathlib

import numpy as np
from astropy.io import fits
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"
rng = np.random.default_rng(7)


def put(target, name, data, selector=None):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    body = data if selector is None else bytes([selector]) + data
    (d / name).write_bytes(body)


def fits_bytes(hdus):
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def blob(h, w):
    y, x = np.mgrid[0:h, 0:w]
    return np.exp(-((x - w / 2) ** 2 + (y - h / 3) ** 2) / 20.0) * 1000 + rng.normal(0, 3, (h, w))


# FITS: every BITPIX, scaling and BLANK, NaNs, cubes, extensions, tables, gzip.
img = blob(24, 20)
put("fits", "f32", fits_bytes([fits.PrimaryHDU(img.astype(np.float32))]), 0)
put("fits", "f64-log", fits_bytes([fits.PrimaryHDU(img.astype(np.float64))]), 2)
put("fits", "u8", fits_bytes([fits.PrimaryHDU((img / 5).clip(0, 255).astype(np.uint8))]), 1)
i16 = fits.PrimaryHDU(img.astype(np.int16))
i16.header["BSCALE"] = 2.5
i16.header["BZERO"] = 100.0
i16.header["BLANK"] = -32768
put("fits", "i16-bscale-blank", fits_bytes([i16]), 3)
put("fits", "i32", fits_bytes([fits.PrimaryHDU(img.astype(np.int32))]), 4)
put("fits", "i64", fits_bytes([fits.PrimaryHDU(img.astype(np.int64))]), 0x10)
nan = img.astype(np.float32)
nan[3:9, 2:7] = np.nan
nan[0, 0] = np.inf
put("fits", "nan-inf", fits_bytes([fits.PrimaryHDU(nan)]), 0x20)
cube = np.stack([blob(12, 10) * k for k in range(1, 4)]).astype(np.float32)
put("fits", "cube-peak", fits_bytes([fits.PrimaryHDU(cube)]), 0x00)
put("fits", "cube-sum", fits_bytes([fits.PrimaryHDU(cube)]), 0x10)
put("fits", "cube-plane", fits_bytes([fits.PrimaryHDU(cube)]), 0x21)
put("fits", "4d-degenerate", fits_bytes([fits.PrimaryHDU(cube[None, :, :, :1].astype(np.float32))]), 0x20)
ext = fits_bytes([fits.PrimaryHDU(), fits.ImageHDU(img.astype(np.float32), name="SCI")])
put("fits", "extension-auto", ext, 0x00)
put("fits", "extension-1", ext, 0x80)
table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.arange(5, dtype=np.float32))])
put("fits", "table-only", fits_bytes([fits.PrimaryHDU(), table]), 0)
put("fits", "gzip", gzip.compress(fits_bytes([fits.PrimaryHDU(img.astype(np.float32))]), mtime=0), 0)
put("fits", "one-pixel", fits_bytes([fits.PrimaryHDU(np.ones((1, 1), np.float32))]), 0)
put("fits", "truncated", fits_bytes([fits.PrimaryHDU(img.astype(np.float32))])[:3000], 0)
comp = io.BytesIO()
fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(img.astype(np.float32))]).writeto(comp)
put("fits", "tile-compressed", comp.getvalue(), 0)


# PNG, JPEG, TIFF: the selector's top bits pick the format (0x00 PNG, 0x20 JPEG, 0x40 TIFF).
def pil_bytes(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


g8 = Image.fromarray((img / 5).clip(0, 255).astype(np.uint8))
rgb = Image.fromarray(np.stack([(img / k).clip(0, 255).astype(np.uint8) for k in (3, 5, 8)], -1))
put("raster", "png-grey8", pil_bytes(g8, "PNG"), 0x00)
put("raster", "png-grey16", pil_bytes(Image.fromarray(img.clip(0, 65535).astype(np.uint16)), "PNG"), 0x01)
put("raster", "png-rgb", pil_bytes(rgb, "PNG"), 0x08)
put("raster", "png-rgba", pil_bytes(rgb.convert("RGBA"), "PNG"), 0x09)
put("raster", "png-palette", pil_bytes(rgb.convert("P"), "PNG"), 0x0A)
put("raster", "png-1x1", pil_bytes(Image.new("L", (1, 1), 9), "PNG"), 0x02)
put("raster", "jpeg-grey", pil_bytes(g8, "JPEG", quality=80), 0x20)
put("raster", "jpeg-rgb", pil_bytes(rgb, "JPEG", quality=80), 0x28)
put("raster", "jpeg-progressive", pil_bytes(rgb, "JPEG", quality=70, progressive=True), 0x2B)
put("raster", "tiff-float", pil_bytes(Image.fromarray(img.astype(np.float32)), "TIFF"), 0x40)
put("raster", "tiff-16", pil_bytes(Image.fromarray(img.clip(0, 65535).astype(np.uint16)), "TIFF"), 0x41)
put("raster", "tiff-rgb", pil_bytes(rgb, "TIFF"), 0x48)
put("raster", "png-truncated", pil_bytes(rgb, "PNG")[:200], 0x00)

# Config files.
put("config", "full", b"""title = "Deep fields"
[archive]
root = "archive"
follow-symlinks = false
max-pixels = 1000000
[output]
dir = "site"
cache = "cache"
[preprocess]
stretch = "zscale"
clip-low = 1.0
clip-high = 99.5
channels = "rgb"
[fits]
hdu = "SCI"
cube = "plane"
plane = 2
[thumbnails]
size = 96
quality = 80
preview-size = 0
[catalogue]
path = "cat.csv"
join-on = "id"
id-column = "obs_id"
columns = ["band", "exposure"]
""")
put("config", "minimal", b'[archive]\nroot = "a"\n')
put("config", "bad-range", b'[archive]\nroot = "a"\n[preprocess]\nclip-low = 50\nclip-high = 10\n')

# Catalogue CSVs (selector bit 0: join on path, 1: on id).
put("catalogue", "by-path", b"path,title,ra,dec,band\na.png,First,10.5,-20.25,r\nb/c.png,\"Second, with comma\",12:30:00,+12:00:00,g\n", 0)
put("catalogue", "by-id", b"id,title,url,ra,dec\na,<b>bold</b>,https://example.org/a,1,2\nx,X,javascript:alert(1),400,95\n", 1)
put("catalogue", "quotes", b"id,title\n\"d e\",\"He said \"\"hi\"\"\"\n../../etc,escape\n", 1)
