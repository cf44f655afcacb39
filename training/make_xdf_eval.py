"""Write the real-image rotation test: the Hubble XDF cutouts of the sample archive (never
used in training) each with one transformed copy, and a labels CSV whose `twin_of` names
the original, for `simsite eval` (twin recall@1 = "the copy's top-1 neighbour is the
original").

    python training/make_xdf_eval.py --mode d4 OUT        # 90/180/270 degree turns and flips
    python training/make_xdf_eval.py --mode angle OUT     # arbitrary angles (15..345 degrees)

d4: the original is written unchanged (as PNG, lossless) beside its copy. angle: both the
original and its rotated copy are the central square of side s/sqrt(2), so neither has
empty corners. Needs numpy and Pillow."""

from __future__ import annotations

import argparse
import csv
import math
import os

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "sample-archive", "hst-deep-field")
D4 = {
    "rot90": lambda a: np.rot90(a, 1),
    "rot180": lambda a: np.rot90(a, 2),
    "rot270": lambda a: np.rot90(a, 3),
    "flipx": lambda a: a[:, ::-1],
    "flipy": lambda a: a[::-1],
    "transpose": lambda a: np.swapaxes(a, 0, 1),
}


def save(a: np.ndarray, path: str):
    a = np.ascontiguousarray(a)
    if a.dtype == np.uint16:
        Image.fromarray(a).save(path)  # 16-bit grey stays 16-bit
    else:
        Image.fromarray(a).save(path)


def central(a: np.ndarray, side: int) -> np.ndarray:
    h, w = a.shape[:2]
    y, x = (h - side) // 2, (w - side) // 2
    return a[y:y + side, x:x + side]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["d4", "angle"], default="d4")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("out")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(os.path.join(a.out, "orig"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "copy"), exist_ok=True)
    rows = []
    names = sorted(f for f in os.listdir(SRC) if f.lower().endswith((".jpg", ".png")))
    ops = list(D4)
    for i, name in enumerate(names):
        im = Image.open(os.path.join(SRC, name))
        arr = np.asarray(im)
        stem = os.path.splitext(name)[0]
        orig = f"orig/{stem}.png"
        if a.mode == "d4":
            op = ops[i % len(ops)]
            save(arr, os.path.join(a.out, orig))
            copy = f"copy/{stem}-{op}.png"
            save(D4[op](arr), os.path.join(a.out, copy))
        else:
            side = int(min(arr.shape[:2]) / math.sqrt(2))
            angle = float(rng.uniform(15, 345))
            save(central(arr, side), os.path.join(a.out, orig))
            if arr.dtype == np.uint16:
                rot = np.asarray(Image.fromarray(arr.astype(np.float32)).rotate(angle, Image.BICUBIC))
                rot = np.clip(rot, 0, 65535).astype(np.uint16)
            else:
                rot = np.asarray(im.convert("RGB" if arr.ndim == 3 else "L").rotate(angle, Image.BICUBIC))
            copy = f"copy/{stem}-rot{angle:.0f}.png"
            save(central(rot, side), os.path.join(a.out, copy))
        rows.append((orig, "galaxy", ""))
        rows.append((copy, "galaxy", orig))
    labels = a.out.rstrip("/") + ".labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "twin_of"])
        w.writerows(rows)
    print(f"wrote {len(rows)} images to {a.out}, labels {labels}")


if __name__ == "__main__":
    main()
