"""PyTorch inference throughput of a trained checkpoint, the reference for the builder's
raw ONNX Runtime figure on the same machine (CPU or CUDA).

    python training/bench_torch.py --ckpt WORK/checkpoint.pt [--device cuda] [--n 20000] [--batch 512]

Pre-made random tensors (decode is not timed), float32, eval mode, no autograd; prints
images/s for the best of --rounds passes."""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Dihedral, Encoder  # noqa: E402
from train import arch  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--d4", action="store_true")
    a = ap.parse_args()
    st = torch.load(a.ckpt, weights_only=False, map_location="cpu")
    model = Encoder(**arch(st["args"]))
    model.load_state_dict(st["model"])
    if a.d4:
        model = Dihedral(model)
    dev = torch.device(a.device)
    model = model.to(dev).eval()
    x = torch.randn(a.n, 1, 64, 64)
    best = 0.0
    with torch.inference_mode():
        for _ in range(a.rounds):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for i in range(0, a.n, a.batch):
                model(x[i:i + a.batch].to(dev, non_blocking=True)).cpu()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = max(best, a.n / (time.perf_counter() - t))
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "CPU"
    print(f"pytorch {torch.__version__} {name}: {os.path.basename(os.path.dirname(a.ckpt))}{' d4' if a.d4 else ''} "
          f"batch {a.batch}: {best:.0f} img/s (best of {a.rounds}, {a.n} images, host tensors copied in)")


if __name__ == "__main__":
    main()
