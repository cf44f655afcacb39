"""SimCLR views for astronomical images, on batches of *linear* pixels (torch, CPU or CUDA).

Each view: arbitrary-angle rotation, flip, shear, scale and a few-pixel/sub-pixel offset
(one affine resampling), PSF-like Gaussian blur, extra noise scaled to the image's own
background noise, masked (NaN) regions, and finally a randomly chosen stretch with random
percentile clipping, implemented with the builder's rules (masked pixels filled with the
median, x = clip((v - lo) / (hi - lo), 0, 1), then linear/log/asinh/sqrt)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from simsite_prep import ASINH_B, LOG_A

MEAN, STD = 0.5, 0.25
STRETCH_NAMES = ("linear", "log", "asinh", "sqrt")
# Probabilities of each stretch for linear (FITS, 16-bit) and 8-bit (display-ready) sources.
P_LINEAR_SOURCE = torch.tensor([0.25, 0.2, 0.35, 0.2])
P_8BIT_SOURCE = torch.tensor([0.6, 0.1, 0.15, 0.15])


@dataclass(frozen=True)
class Strength:
    """How hard each view is pushed. `FULL` is the recipe of v1/v2; `GENTLE` keeps every kind
    of change but draws it less often or less far, so that what tells one object from
    another of its class (its size, its PSF, its signal-to-noise) survives in both views."""
    scale: tuple = (0.8, 1.25)
    shear: float = 0.15
    blur_p: float = 0.4
    blur_sigma: tuple = (0.4, 1.5)
    noise_p: float = 0.6
    noise_max: float = 1.5
    mask_p: float = 0.15


FULL = Strength()
GENTLE = Strength(scale=(0.9, 1.11), shear=0.07, blur_p=0.2, blur_sigma=(0.3, 1.0), noise_p=0.3, noise_max=1.0, mask_p=0.1)
STRENGTHS = {"full": FULL, "gentle": GENTLE}


def _u(g, n, lo, hi, device=None):
    """n uniform draws from the CPU generator g (on `device`): the per-view parameters come
    from one seeded stream wherever the pixels are."""
    return (lo + (hi - lo) * torch.rand(n, generator=g)).to(device)


def sorted_percentile(sorted_rows: torch.Tensor, counts: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """numpy-style linear percentile q (0..100, per row) of rows sorted with NaN last."""
    pos = q / 100.0 * (counts - 1).clamp(min=0)
    i = pos.floor().long()
    j = (i + 1).clamp(max=(counts - 1).clamp(min=0))
    frac = pos - i
    a = sorted_rows.gather(1, i[:, None])[:, 0]
    b = sorted_rows.gather(1, j[:, None])[:, 0]
    return a + (b - a) * frac


def stretch_unit(x: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """x in [0, 1], kind (B,) index into STRETCH_NAMES."""
    k = kind[:, None, None]
    log = torch.log1p(LOG_A * x) / math.log1p(LOG_A)
    asinh = torch.asinh(x / ASINH_B) / math.asinh(1.0 / ASINH_B)
    sqrt = torch.sqrt(x)
    return torch.where(k == 0, x, torch.where(k == 1, log, torch.where(k == 2, asinh, sqrt)))


def apply_stretch(v: torch.Tensor, mask: torch.Tensor, kind: torch.Tensor, clip_lo: torch.Tensor, clip_hi: torch.Tensor) -> torch.Tensor:
    b, h, w = v.shape
    rows = torch.where(mask, torch.full_like(v, float("nan")), v).reshape(b, -1)
    srt, _ = torch.sort(rows, dim=1)  # NaN sorts last
    counts = (~mask).reshape(b, -1).sum(1)
    counts = counts.clamp(min=1)
    lo = sorted_percentile(srt, counts, clip_lo)
    hi = sorted_percentile(srt, counts, clip_hi)
    med = sorted_percentile(srt, counts, torch.full_like(clip_lo, 50.0))
    v = torch.where(mask, med[:, None, None], v)
    rng = hi - lo
    scale = torch.where(rng > 0, 1.0 / rng.clamp(min=1e-30), torch.zeros_like(rng))
    x = ((v - lo[:, None, None]) * scale[:, None, None]).clamp(0.0, 1.0)
    return stretch_unit(x, kind)


def gaussian_kernels(sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, dtype=torch.float32, device=sigma.device)
    k1 = torch.exp(-0.5 * (r[None, :] / sigma[:, None]) ** 2)
    k1 = k1 / k1.sum(1, keepdim=True)
    return (k1[:, :, None] * k1[:, None, :])[:, None]  # (B, 1, K, K)


def views(x: torch.Tensor, ready: torch.Tensor, g: torch.Generator, strength: float = 1.0,
          noise_gen: torch.Generator | None = None, aug: Strength = FULL) -> torch.Tensor:
    """x: (B, H, W) linear pixels with NaN where masked; ready: (B,) bool (8-bit source).
    g is a CPU generator for the per-view parameters; the per-pixel noise comes from
    noise_gen, a generator on x's device (g itself when x is on the CPU).
    Returns (B, 1, H, W) normalised encoder input."""
    b, h, w = x.shape
    dev = x.device
    noise_gen = g if noise_gen is None else noise_gen
    mask = torch.isnan(x)
    rows = torch.where(mask, torch.full_like(x, float("nan")), x).reshape(b, -1)
    med = torch.nanmedian(rows, dim=1).values
    med = torch.nan_to_num(med, 0.0)
    xf = torch.where(mask, med[:, None, None], x)
    # Background noise from the median absolute deviation.
    mad = torch.nanmedian((rows - med[:, None]).abs(), dim=1).values
    sigma_bg = torch.nan_to_num(1.4826 * mad, 0.0)

    # One affine resampling: rotation (any angle), flip, shear, scale, offset.
    theta = _u(g, b, 0, 2 * math.pi, dev)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0).to(dev)
    scale = torch.exp(_u(g, b, math.log(aug.scale[0]), math.log(aug.scale[1]), dev) * strength)
    shear = _u(g, b, -aug.shear, aug.shear, dev) * strength
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1)
    sh = torch.zeros(b, 2, 2, device=dev)
    sh[:, 0, 0], sh[:, 0, 1], sh[:, 1, 1] = 1.0, shear, 1.0
    fl = torch.zeros(b, 2, 2, device=dev)
    fl[:, 0, 0], fl[:, 1, 1] = flip, 1.0
    a = rot @ sh @ fl / scale[:, None, None]
    shift = torch.stack([_u(g, b, -4, 4, dev), _u(g, b, -4, 4, dev)], 1) * (2.0 / w) * strength
    grid = F.affine_grid(torch.cat([a, shift[:, :, None]], 2), (b, 2, h, w), align_corners=False)
    both = F.grid_sample(torch.stack([xf, mask.float()], 1), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    v, mask = both[:, 0], both[:, 1] > 0.5

    # PSF-like blur on 40% of the views (FULL).
    sigma = torch.where(torch.rand(b, generator=g) < aug.blur_p, _u(g, b, *aug.blur_sigma), torch.full((b,), 0.05)).to(dev)
    k = gaussian_kernels(sigma)
    v = F.conv2d(F.pad(v[None], (3, 3, 3, 3), mode="reflect"), k, groups=b)[0]

    # Extra noise on 60% of the views, up to 1.5x the image's own background noise (FULL).
    amp = torch.where(torch.rand(b, generator=g) < aug.noise_p, _u(g, b, 0.0, aug.noise_max), torch.zeros(b)).to(dev) * sigma_bg
    v = v + torch.randn(b, h, w, generator=noise_gen, device=dev) * amp[:, None, None]

    # Masked regions on 15% of the views (FULL): a rectangle or a few rows/columns.
    for i in torch.nonzero(torch.rand(b, generator=g) < aug.mask_p)[:, 0].tolist():
        if torch.rand(1, generator=g).item() < 0.5:
            rh, rw = (int(t) for t in torch.randint(4, 24, (2,), generator=g))
            y0, x0 = int(torch.randint(0, h - rh, (1,), generator=g)), int(torch.randint(0, w - rw, (1,), generator=g))
            mask[i, y0:y0 + rh, x0:x0 + rw] = True
        else:
            t = int(torch.randint(1, 4, (1,), generator=g))
            p = int(torch.randint(0, w - t, (1,), generator=g))
            if torch.rand(1, generator=g).item() < 0.5:
                mask[i, :, p:p + t] = True
            else:
                mask[i, p:p + t, :] = True
    mask &= ~mask.all(dim=2, keepdim=True).all(dim=1, keepdim=True)  # never mask everything

    # Stretch jitter: which stretch, and where the percentile clips sit.
    ready_cpu = ready.cpu()
    p = torch.where(ready_cpu[:, None], P_8BIT_SOURCE[None], P_LINEAR_SOURCE[None])
    kind = torch.multinomial(p, 1, generator=g)[:, 0].to(dev)
    clip_lo = _u(g, b, 0.0, 2.0, dev)
    clip_hi = torch.where(ready_cpu, _u(g, b, 99.5, 100.0), _u(g, b, 99.0, 100.0)).to(dev)
    out = apply_stretch(v, mask, kind, clip_lo, clip_hi)
    return ((out - MEAN) / STD)[:, None]
