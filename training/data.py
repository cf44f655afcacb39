"""Training data: decode every training file once with the builder's own rules
(simsite_prep), keep the *linear* pixels at the encoder's size, and cache them in one .npz.
Augmentations (augment.py) then work on linear pixels and apply the stretch last, as the
builder does."""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np

import simsite_prep as prep

SIZE = 64
IMAGE_EXT = (".fits", ".fit", ".fts", ".gz", ".fz", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def list_files(roots: list[str], exclude: list[str]) -> list[str]:
    out = []
    for root in roots:
        for d, dirs, files in os.walk(root):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(d, f)
                if f.lower().endswith(IMAGE_EXT) and not any(e in p for e in exclude):
                    out.append(p)
    return out


def to_linear_grey(r: prep.Raster) -> np.ndarray:
    """One band: colour averaged (the builder averages after a linear 8-bit stretch, which
    commutes with the average)."""
    a = r.data.mean(axis=0) if r.channels == 3 else r.data[0]
    return a.astype(np.float32)


def fit_linear(a: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Resize linear pixels to fit `size` (aspect kept, NaN padding), masked pixels kept."""
    h, w = a.shape
    mask = ~np.isfinite(a)
    if mask.all():
        raise ValueError("blank")
    fill = np.float32(np.median(a[~mask]))
    filled = np.where(mask, fill, a).astype(np.float32)
    fw, fh = prep.fit_size(w, h, size)
    small = prep.resize_plane(filled, fw, fh)
    if mask.any():
        m = prep.resize_plane(mask.astype(np.float32), fw, fh) > 0.5
        small = np.where(m, np.nan, small)
    out = np.full((size, size), np.nan, np.float32)
    ox, oy = (size - fw) // 2, (size - fh) // 2
    out[oy:oy + fh, ox:ox + fw] = small
    return out


def random_crops(a: np.ndarray, n: int, rng: np.random.Generator, size: int = SIZE) -> list[np.ndarray]:
    h, w = a.shape
    out = []
    lo = min(48, h, w)
    hi = min(200, h, w)
    for _ in range(n):
        s = int(rng.integers(lo, hi + 1))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        c = a[y:y + s, x:x + s]
        if np.isfinite(c).mean() > 0.5:
            out.append(fit_linear(c, size))
    return out


def _decode(f: str):
    try:
        r = prep.decode(f)
        return to_linear_grey(r), r.display_ready, None
    except Exception as e:  # a bad file is skipped, as in the builder
        return None, False, str(e)


def partners(synth_root: str, files: list[str], kept: list[int]) -> np.ndarray:
    """For each row (kept[row]: its index in files, -1 for a crop), the row of the same
    scene's other observation, else -1: a synthetic twin and its original name each other,
    as synth's labels CSV beside the archive says."""
    import csv
    row = {files[k]: r for r, k in enumerate(kept) if k >= 0}  # crops (-1) have no partner
    out = np.full(len(kept), -1, np.int64)
    labels = synth_root.rstrip("/") + ".labels.csv"
    if not os.path.exists(labels):
        return out
    with open(labels, newline="") as f:
        for rec in csv.DictReader(f):
            if rec.get("twin_of"):
                a, b = row.get(os.path.join(synth_root, rec["path"])), row.get(os.path.join(synth_root, rec["twin_of"]))
                if a is not None and b is not None:
                    out[a], out[b] = b, a
    return out


def build(synth_root: str, real_roots: list[str], exclude: list[str], crops_per_frame: int, seed: int, workers: int = 1):
    """Returns (pixels (N, 64, 64) float32 linear with NaN, display_ready (N,) bool,
    source (N,) str, digest of the file list, the files, partner (N,): the row of the same
    scene's other observation or -1). Files are decoded by `workers` processes; the result
    does not depend on their number."""
    rng = np.random.default_rng(seed)
    files = list_files([synth_root], []) + list_files(real_roots, exclude)
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    if workers > 1:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            decoded = pool.map(_decode, files, chunksize=64)
    else:
        decoded = map(_decode, files)
    pix, ready, source, kept = [], [], [], []
    for i, (f, (a, display_ready, err)) in enumerate(zip(files, decoded)):
        if a is None:
            print(f"skip {f}: {err}", file=sys.stderr)
            continue
        real = not f.startswith(synth_root)
        kept.append(i)
        pix.append(fit_linear(a))
        ready.append(display_ready)
        source.append("real" if real else "synth")
        if real and min(a.shape) >= 96:
            for c in random_crops(a, crops_per_frame, rng):
                pix.append(c)
                ready.append(display_ready)
                source.append("real-crop")
                kept.append(-1)
        if i % 2000 == 0:
            print(f"data: {i}/{len(files)} files", flush=True)
    partner = partners(synth_root, files, kept)
    return np.stack(pix), np.array(ready), np.array(source), h.hexdigest(), files, partner
