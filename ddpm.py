"""The handout's conditional UNet for two-pixel images (section 2.2).

A two-pixel image is a 1-channel signal of length 2, so the "UNet" is built from Conv1d layers:

    x (B, 2) -> (B, 1, 2)
    enc 1: Conv1d(1 -> 32, k=2)            -> (B, 32, 1)  + Dense(emb), GroupNorm(4),  SiLU
    enc 2: Conv1d(32 -> 64, k=1)           -> (B, 64, 1)  + Dense(emb), GroupNorm(32), SiLU
    dec 1: ConvTranspose1d(64 -> 32, k=1)  -> (B, 32, 1)  + Dense(emb), GroupNorm(4),  SiLU
    dec 2: ConvTranspose1d(32+32 -> 1, k=2) over [dec 1, enc 1] (the skip)  -> (B, 1, 2)

(The handout writes kernel size 1 for dec 2; from length 1 that returns one pixel, so k = 2 here.)

The conditioning embedding is the sum of the time embedding (fixed random Gaussian Fourier
features of t / T, then a linear layer) and the class embedding (linear layers over a one-hot label
with one extra "null" token for "no label", which classifier-free guidance needs).

A known weakness of the handout's design, measured in README.md: GroupNorm(32) on 64 channels of
length 1 normalises groups of two numbers, which come out as about +-1, so encoder 2 passes on
little more than signs. Every GroupNorm here normalises a single pixel's features (length 1), so
each one also throws away the overall scale of its input; `ARCHS["nonorm"]` (`--arch nonorm` in
train.py, `groups=(0, 0, 0)`) is the same UNet without them. Measured against the exact noise
predictor its eps is 7-20x closer (squared error) for the same training budget (benchmarks/two_pixel.py).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

ARCHS = {
    "handout": dict(channels=(32, 64), embed_dim=256, groups=(4, 32, 4)),
    "nonorm": dict(channels=(32, 64), embed_dim=256, groups=(0, 0, 0)),
}


class GaussianFourierProjection(nn.Module):
    """Fixed random Fourier features of a scalar time s in [0, 1]: [sin(2 pi W s), cos(2 pi W s)].

    W ~ N(0, scale^2) is drawn once and stored as a buffer: saved in checkpoints, never trained.
    """

    def __init__(self, embed_dim: int, scale: float = 30.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("W", torch.randn(embed_dim // 2, generator=g) * scale)

    def forward(self, s):  # s: (B,) -> (B, embed_dim)
        proj = s[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class Dense(nn.Module):
    """A linear layer whose output is shaped as a feature map: (B, in) -> (B, out, 1)."""

    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.dense = nn.Linear(input_dim, output_dim)

    def forward(self, x):
        return self.dense(x)[..., None]


def norm(groups: int, channels: int) -> nn.Module:
    """GroupNorm(groups, channels), or no normalisation for groups = 0."""
    return nn.GroupNorm(groups, channels) if groups else nn.Identity()


class UNet(nn.Module):
    """Conditional eps-predictor for two-pixel images.

    forward(x, t, y=None): x (B, 2) noised images; t int64 (B,) timesteps in 1..T (a scalar is
    broadcast); y int64 (B,) class labels in 0..num_classes-1, where y = None or y == num_classes
    (the null token) means unconditional. Returns eps_hat (B, 2).

    UNet(channels=[32, 64], embed_dim=256) is the scaffold's call; T (the number of diffusion
    steps, which scales t into (0, 1] for the Fourier features) defaults to 50, and `sample`
    refuses a schedule with another T. groups=(4, 32, 4) are the handout's GroupNorms (0 = none).
    """

    def __init__(self, channels=(32, 64), embed_dim: int = 256, T: int = 50, groups=(4, 32, 4),
                 num_classes: int = 2, fourier_scale: float = 30.0):
        super().__init__()
        c1, c2 = channels
        g1, g2, g3 = groups
        for c, g in ((c1, g1), (c2, g2), (c1, g3)):
            if g and c % g:
                raise ValueError(f"GroupNorm needs channels divisible by groups, got {c} and {g}")
        self.T = int(T)
        self.num_classes = num_classes
        self.time_embed = nn.Sequential(GaussianFourierProjection(embed_dim, fourier_scale), nn.Linear(embed_dim, embed_dim))
        # one-hot over num_classes + 1 tokens; the last token is "no label"
        self.class_embed = nn.Sequential(
            nn.Linear(num_classes + 1, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

        self.conv1 = nn.Conv1d(1, c1, kernel_size=2, bias=False)
        self.dense1 = Dense(embed_dim, c1)
        self.gnorm1 = norm(g1, c1)
        self.conv2 = nn.Conv1d(c1, c2, kernel_size=1, bias=False)
        self.dense2 = Dense(embed_dim, c2)
        self.gnorm2 = norm(g2, c2)
        self.tconv2 = nn.ConvTranspose1d(c2, c1, kernel_size=1, bias=False)
        self.dense3 = Dense(embed_dim, c1)
        self.tgnorm2 = norm(g3, c1)
        self.tconv1 = nn.ConvTranspose1d(c1 + c1, 1, kernel_size=2)
        self.act = nn.SiLU()

    def embed(self, t, y):
        """Conditioning vector (B, embed_dim) for timesteps t (B,) and labels y (B,) or None."""
        if y is None:
            y = torch.full_like(t, self.num_classes)
        onehot = F.one_hot(y.long(), self.num_classes + 1).to(self.tconv1.weight.dtype)
        s = t.to(self.tconv1.weight.dtype) / self.T  # time as a fraction of the chain, in (0, 1]
        return self.act(self.time_embed(s)) + self.class_embed(onehot)

    def conditioning(self, t, y):
        """The Dense outputs of the three blocks, each (B, c, 1).

        They depend only on (t, y), which take at most T * (num_classes + 1) values, so they are
        computed once per distinct pair in the batch and gathered: the same function, but 5-10x
        faster to train on a CPU, where the 256-wide embedding layers dominate the cost.
        """
        K1 = self.num_classes + 1
        if y is None:
            y = torch.full_like(t, self.num_classes)
        pairs, inverse = torch.unique(t.long() * K1 + y.long(), return_inverse=True)
        emb = self.embed(pairs // K1, pairs % K1)  # (P, E)
        return self.dense1(emb)[inverse], self.dense2(emb)[inverse], self.dense3(emb)[inverse]

    def forward(self, x, t, y=None):
        """eps_hat (B, 2). Computes exactly `forward_conv`, the handout's layers written as
        nn.Conv1d calls, but as matrix products: on a signal of length 1 (or 2 for the k=2
        layers) each Conv1d / ConvTranspose1d is one, and F.linear on the same weights halves
        the CPU cost of a training step. tests/test_train.py pins the two against each other."""
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        d1, d2, d3 = (d[..., 0] for d in self.conditioning(t, y))  # (B, c)
        h1 = self.act(self.gnorm1(F.linear(x, self.conv1.weight.flatten(1)) + d1))  # (B, c1)
        h2 = self.act(self.gnorm2(F.linear(h1, self.conv2.weight.flatten(1)) + d2))  # (B, c2)
        h = self.act(self.tgnorm2(F.linear(h2, self.tconv2.weight.flatten(1).t()) + d3))  # (B, c1)
        w = self.tconv1.weight.flatten(1).t()  # (2, 2 c1): out[j] = sum_c in[c] W[c, 0, j]
        return F.linear(torch.cat([h, h1], dim=1), w, self.tconv1.bias.expand(2))  # (B, 2)

    def forward_conv(self, x, t, y=None):
        """The same network written with the handout's layers; (B, 2) -> (B, 2)."""
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        d1, d2, d3 = self.conditioning(t, y)
        h = x[:, None, :]  # (B, 1, 2)
        h1 = self.act(self.gnorm1(self.conv1(h) + d1))  # (B, c1, 1)
        h2 = self.act(self.gnorm2(self.conv2(h1) + d2))  # (B, c2, 1)
        h = self.act(self.tgnorm2(self.tconv2(h2) + d3))  # (B, c1, 1)
        h = self.tconv1(torch.cat([h, h1], dim=1))  # (B, 1, 2)
        return h[:, 0, :]
