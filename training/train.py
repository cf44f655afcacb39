"""Train simsite's default encoder: SimCLR (NT-Xent) with astronomy augmentations.

    python training/train.py --work ~/.cache/simsite/train --steps 3000

Seeded and resumable: the state (model, optimiser, step, random generators) is saved to
WORK/checkpoint.pt every --save-every steps and picked up again on restart; the loss goes to
WORK/log.jsonl. See training/README.md for the whole recipe."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import augment  # noqa: E402
import data  # noqa: E402
import simsite_prep as prep  # noqa: E402
from model import Encoder, Projector  # noqa: E402

RECIPE = "simclr-astro-2"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def arch(args: dict) -> dict:
    """Encoder(...) keyword arguments from the training arguments (older checkpoints: defaults)."""
    parse = lambda v: tuple(int(x) for x in v.split(","))  # noqa: E731
    return {"stem": parse(args.get("stem", "16,32")), "widths": parse(args.get("widths", "32,64,128"))}


def nt_xent(z1, z2, tau):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.t() / tau
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def synth(args, out, n, seed, twins):
    if os.path.isdir(out) and os.listdir(out):
        return
    # --synth-bin: a built `synth` example (for machines without a Rust toolchain).
    prog = [args.synth_bin] if args.synth_bin else ["cargo", "run", "--release", "--example", "synth", "--"]
    cmd = prog + ["--n", str(n), "--seed", str(seed), "--size", "64", "--twins", str(twins),
                  "--labels", out + ".labels.csv", out]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def load_train(args):
    """Pixels, display-ready flags, partner rows (-1: none) and the digest of the file list."""
    cache = os.path.join(args.work, "train-data.npz")
    if os.path.exists(cache):
        z = np.load(cache)
        partner = z["partner"] if "partner" in z else np.full(len(z["pixels"]), -1)
        return z["pixels"], z["ready"], partner, str(z["digest"])
    synth_dir = os.path.join(args.work, "synth-train")
    synth(args, synth_dir, args.synth, args.seed, args.reobserved)
    real = [os.path.join(ROOT, "sample-archive")]
    px, ready, source, digest, files, partner = data.build(synth_dir, real, ["hst-deep-field"], args.crops, args.seed, args.workers)
    with open(os.path.join(args.work, "train-files.txt"), "w") as f:
        f.write("\n".join(os.path.relpath(p, args.work) if p.startswith(args.work) else os.path.relpath(p, ROOT) for p in files) + "\n")
    np.savez(cache, pixels=px, ready=ready, source=source, digest=digest, partner=partner)
    print(f"data: {len(px)} training images ({(source == 'synth').sum()} synthetic, {(source != 'synth').sum()} real, "
          f"{(partner >= 0).sum() // 2} scenes observed twice), digest {digest[:16]}", flush=True)
    return px, ready, partner, digest


def load_monitor(args):
    """A held-out synthetic set with twins, and the XDF cutouts (never trained on)."""
    cache = os.path.join(args.work, "monitor.npz")
    if os.path.exists(cache):
        z = np.load(cache)
        return z["x"], z["labels"], z["twin"], z["xdf"]
    d = os.path.join(args.work, "synth-monitor")
    synth(args, d, 2000, args.seed + 1000, 0.2)
    import csv
    rows = list(csv.DictReader(open(d + ".labels.csv")))
    index = {r["path"]: i for i, r in enumerate(rows)}
    x = np.stack([prep.prepare(prep.decode(os.path.join(d, r["path"])))[0] for r in rows])
    labels = np.array([r["label"] for r in rows])
    twin = np.array([index[r["twin_of"]] if r["twin_of"] else -1 for r in rows])
    xdir = os.path.join(ROOT, "sample-archive", "hst-deep-field")
    xdf = np.stack([prep.prepare(prep.decode(os.path.join(xdir, f)))[0] for f in sorted(os.listdir(xdir))])
    np.savez(cache, x=x, labels=labels, twin=twin, xdf=xdf)
    return x, labels, twin, xdf


@torch.no_grad()
def embed(model, x, head=None):
    """Normalised embeddings of x: the encoder's output, or head(encoder output) if given."""
    model.eval()
    if head is not None:
        head.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(x), 512):
        t = (torch.from_numpy(x[i:i + 512]).to(dev) - augment.MEAN) / augment.STD
        h = model(t[:, None])
        out.append(F.normalize(h if head is None else head(h), dim=1).cpu())
    model.train()
    if head is not None:
        head.train()
    return torch.cat(out)


def synth_figures(e, labels, twin, k=10):
    sim = e @ e.t()
    sim.fill_diagonal_(-2)
    nn = sim.topk(k, dim=1).indices.numpy()
    prec = float((labels[nn] == labels[:, None]).mean())
    has = twin >= 0
    rec = float(np.mean([twin[i] in nn[i] for i in np.nonzero(has)[0]]))
    return round(prec, 4), round(rec, 4)


@torch.no_grad()
def monitor(model, mon, k=10, head=None):
    """Held-out figures of the encoder's embedding, and (with head) of the projection's."""
    x, labels, twin, xdf = mon
    prec, rec = synth_figures(embed(model, x), labels, twin, k)
    # XDF: each cutout against all cutouts plus one copy turned by 90 degrees or flipped.
    ops = [lambda a: np.rot90(a, 1), lambda a: np.rot90(a, 2), lambda a: np.rot90(a, 3), lambda a: a[:, ::-1], lambda a: a[::-1]]
    copies = np.stack([ops[i % 5](a).copy() for i, a in enumerate(xdf)])
    ex = embed(model, np.concatenate([xdf, copies]))
    n = len(xdf)
    s = ex[n:] @ ex.t()
    s[torch.arange(n), torch.arange(n, 2 * n)] = -2  # a copy is not its own neighbour
    top1 = float((s.argmax(1) == torch.arange(n)).float().mean())
    out = {"precision_at_10": prec, "twin_recall_at_10": rec, "xdf_top1_d4": round(top1, 4)}
    if head is not None:
        out["proj_precision_at_10"], out["proj_twin_recall_at_10"] = synth_figures(embed(model, x, head), labels, twin, k)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/simsite/train"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--synth", type=int, default=12000, help="synthetic training images")
    ap.add_argument("--crops", type=int, default=40, help="random crops per real frame of 96 px or more")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--monitor-every", type=int, default=250)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--minutes", type=float, default=0,
                    help="train for about this long instead: after 50 steps --steps is set from the measured speed")
    ap.add_argument("--stem", default="16,32", help="encoder stem widths")
    ap.add_argument("--widths", default="32,64,128", help="encoder residual stage widths")
    ap.add_argument("--workers", type=int, default=1, help="processes decoding the training files")
    ap.add_argument("--synth-bin", default=None, help="a built synth example instead of cargo run")
    ap.add_argument("--reobserved", type=float, default=0.0,
                    help="fraction of synthetic training scenes observed a second time (synth's twins: turned, "
                         "fresh noise, often another format); only when the training data is first made")
    ap.add_argument("--reobserved-positive", type=float, default=0.0,
                    help="probability that a pair's second view starts from the scene's other observation")
    ap.add_argument("--prepare-only", action="store_true", help="make the training and monitor data in WORK, then stop")
    ap.add_argument("--aug", default="full", choices=sorted(augment.STRENGTHS), help="how hard the views are pushed")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    px, ready, partner, digest = load_train(args)
    mon = load_monitor(args)
    if args.prepare_only:
        return
    dev = torch.device(args.device)
    torch.backends.cudnn.benchmark = dev.type == "cuda"
    model, proj = Encoder(**arch(vars(args))).to(dev), Projector().to(dev)
    params = list(model.parameters()) + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(args.seed)
    gd = torch.Generator(device=dev).manual_seed(args.seed + 1) if dev.type != "cpu" else None
    step = 0
    ckpt = os.path.join(args.work, "checkpoint.pt")
    if os.path.exists(ckpt):
        st = torch.load(ckpt, weights_only=False, map_location="cpu")
        model.load_state_dict(st["model"])
        proj.load_state_dict(st["proj"])
        opt.load_state_dict(st["opt"])
        g.set_state(st["gen"])
        if gd is not None and "gen_device" in st:
            gd.set_state(st["gen_device"])
        step = st["step"]
        print(f"resumed at step {step}", flush=True)
    log = open(os.path.join(args.work, "log.jsonl"), "a")
    warmup = min(200, args.steps // 10)
    xs, rs = torch.from_numpy(px).to(dev), torch.from_numpy(ready).to(dev)
    # A scene observed twice is drawn once (through its first row), so that its two
    # observations never meet in one batch as each other's negatives.
    partner_t = torch.from_numpy(partner).long()
    scenes = torch.nonzero((partner_t < 0) | (partner_t > torch.arange(len(partner_t))))[:, 0]
    aug = augment.STRENGTHS[args.aug]
    started = step
    t0, seen = time.time(), 0
    model.train()
    proj.train()
    while step < args.steps:
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        # Without twins in the data, scenes is every row and this is v1/v2's draw.
        idx = scenes[torch.randint(0, len(scenes), (args.batch,), generator=g)]
        idx2 = idx
        if args.reobserved_positive > 0:
            other = partner_t[idx]
            use = (other >= 0) & (torch.rand(args.batch, generator=g) < args.reobserved_positive)
            idx2 = torch.where(use, other, idx)
            # Either observation may be the first view.
            swap = use & (torch.rand(args.batch, generator=g) < 0.5)
            idx, idx2 = torch.where(swap, idx2, idx), torch.where(swap, idx, idx2)
        idx, idx2 = idx.to(dev), idx2.to(dev)
        v1 = augment.views(xs[idx], rs[idx], g, noise_gen=gd, aug=aug)
        v2 = augment.views(xs[idx2], rs[idx2], g, noise_gen=gd, aug=aug)
        loss = nt_xent(proj(model(v1)), proj(model(v2)), args.tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += args.batch
        if args.minutes and step == started + 50:
            t50 = time.time()  # the first steps include cuDNN's autotuning: time the next 50
        if args.minutes and step == started + 100:
            rate = 50 / (time.time() - t50)
            args.steps = step + int(0.93 * rate * (args.minutes * 60 - (time.time() - t0)))
            print(f"--minutes {args.minutes}: {rate:.1f} steps/s, training to step {args.steps}", flush=True)
        rec = {"step": step, "loss": round(loss.item(), 4), "lr": round(lr, 6), "images_per_s": round(seen / (time.time() - t0), 1)}
        if step % args.monitor_every == 0 or step == args.steps:
            rec.update(monitor(model, mon, head=proj))
        if step % 10 == 0 or "precision_at_10" in rec:
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % args.save_every == 0 or step == args.steps:
            tmp = ckpt + ".tmp"
            torch.save({"model": model.state_dict(), "proj": proj.state_dict(), "opt": opt.state_dict(),
                        "gen": g.get_state(), "gen_device": None if gd is None else gd.get_state(), "step": step, "digest": digest, "recipe": RECIPE, "args": vars(args)}, tmp)
            os.replace(tmp, ckpt)


if __name__ == "__main__":
    main()
