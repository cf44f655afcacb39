"""The encoder: a small residual CNN for 64x64 single-band images, and the SimCLR projection
head used only in training."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Block(nn.Module):
    """Basic residual block (two 3x3 convolutions)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)), inplace=True)
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)), inplace=True)


class Encoder(nn.Module):
    """(N, C, 64, 64) normalised pixels -> (N, dim) features (not normalised)."""

    def __init__(self, channels=1, stem=(16, 32), widths=(32, 64, 128), dim=128):
        super().__init__()
        layers, cin = [], channels
        for w in stem:  # strided convolutions: 64 -> 32 -> 16 pixels
            layers.append(conv_bn(cin, w, stride=2))
            cin = w
        for i, w in enumerate(widths):  # residual stages at 16, 8, 4 pixels
            layers.append(Block(cin, w, 1 if i == 0 and w == cin else 2))
            cin = w
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, dim)
        self.dim = dim

    def features(self, x):
        x = self.body(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x):
        return self.fc(self.features(x))


class Projector(nn.Module):
    """SimCLR's projection head g(h): the loss is computed on g(h), the embedding is h."""

    def __init__(self, dim=128, hidden=256, out=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, h):
        return self.net(h)


class Dihedral(nn.Module):
    """Averages the encoder's output over the 8 rotations by multiples of 90 degrees and
    flips of the input (the dihedral group D4), so the embedding is exactly invariant to
    them; arbitrary angles are learned from the training augmentations."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        n = x.shape[0]
        xt = x.transpose(2, 3)
        views = torch.cat([x, x.flip(3), x.flip(2), x.flip(2).flip(3), xt, xt.flip(3), xt.flip(2), xt.flip(2).flip(3)], 0)
        y = self.encoder(views)
        return y.reshape(8, n, -1).mean(0)
