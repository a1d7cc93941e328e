"""A small class-conditional UNet that predicts the noise eps in MNIST images.

Timestep convention: as in utils.py, t runs 1..T (t = 0 is the clean image); the network is only
ever called with t in 1..T.

Layout with the defaults (channels=(32, 64, 64, 64), attention at the two 7x7 levels):

    x (B, 1, 28, 28) -> conv 3x3 -> (B, 32, 28, 28)
    enc 1: ResBlock(32 -> 32)            28x28 -> skip 1, then down (stride-2 conv) to 14x14
    enc 2: ResBlock(32 -> 64)            14x14 -> skip 2, then down to 7x7
    enc 3: ResBlock(64 -> 64) + attn      7x7  -> skip 3
    enc 4: ResBlock(64 -> 64) + attn      7x7  -> skip 4
    middle: ResBlock + attn + ResBlock    7x7
    dec 4: ResBlock([h, skip 4] -> 64) + attn   7x7
    dec 3: ResBlock([h, skip 3] -> 64) + attn   7x7, then up (nearest x2 + conv) to 14x14
    dec 2: ResBlock([h, skip 2] -> 64)   14x14, then up to 28x28
    dec 1: ResBlock([h, skip 1] -> 32)   28x28
    out: GroupNorm, SiLU, conv 3x3 -> (B, 1, 28, 28) = eps_hat

Conditioning: a sinusoidal embedding of t plus a learned embedding of the label y, where label
`num_classes` (10) is the "no label" token that classifier-free guidance (Ho & Salimans 2022)
needs; each ResBlock adds a projection of it to its feature maps (scale and shift after the
first GroupNorm, as in improved-diffusion's `use_scale_shift_norm`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ModelConfig:
    """The architecture (stored in checkpoints, so `MNISTUNet(**cfg)` rebuilds it)."""

    T: int = 200
    num_classes: int = 10
    channels: tuple = (32, 64, 64, 64)  # one per resolution block; 28 -> 14 -> 7 -> 7
    attention: tuple = (False, False, True, True)  # self-attention at the 7x7 levels only
    downsample: tuple = (True, True, False)  # between block i and i+1 (7x7 is too small to halve)
    embed_dim: int = 128
    groups: int = 8  # GroupNorm groups
    dropout: float = 0.0

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer sinusoids of the integer timestep (Ho et al. 2020, App. B): t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """h + F(h, emb): GroupNorm, SiLU, conv 3x3, scale-shift by emb, GroupNorm... -> (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(embed_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(c_out, c_out, 3, padding=1))  # the block starts as the identity
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):  # x (B, c_in, H, W), emb (B, E)
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # (B, c_out, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual: (B, C, H, W) -> same."""

    def __init__(self, channels: int, groups: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))  # (B, nh, HW, hs)
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class Level(nn.Module):
    """One resolution block: a ResBlock, then self-attention if asked."""

    def __init__(self, c_in, c_out, embed_dim, groups, dropout, attention: bool):
        super().__init__()
        self.res = ResBlock(c_in, c_out, embed_dim, groups, dropout)
        self.attn = SelfAttention(c_out, groups) if attention else nn.Identity()

    def forward(self, x, emb):
        return self.attn(self.res(x, emb))


class MNISTUNet(nn.Module):
    """eps_theta(x_t, t, y) for MNIST.

    forward(x, t, y=None): x (B, 1, 28, 28) noisy images (data scaled to [-1, 1]); t int64 (B,) in
    1..T (a scalar is broadcast); y int64 (B,) labels in 0..9, or 10 / None for "no label".
    Returns eps_hat (B, 1, 28, 28).
    """

    def __init__(self, T: int = 200, num_classes: int = 10, channels: Sequence[int] = (32, 64, 64, 64),
                 attention: Sequence[bool] = (False, False, True, True), downsample: Sequence[bool] = (True, True, False),
                 embed_dim: int = 128, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        channels, attention, downsample = tuple(channels), tuple(attention), tuple(downsample)
        if not (len(channels) == len(attention) == len(downsample) + 1):
            raise ValueError("need one channel count and one attention flag per level, and one downsample flag "
                             f"between levels; got {channels}, {attention}, {downsample}")
        if any(c % groups for c in channels):
            raise ValueError(f"every channel count must be divisible by groups={groups}, got {channels}")
        self.config = ModelConfig(int(T), num_classes, channels, attention, downsample, embed_dim, groups, dropout)
        self.T = int(T)
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.time_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.class_embed = nn.Embedding(num_classes + 1, embed_dim)  # row num_classes = "no label"
        self.conv_in = nn.Conv2d(1, channels[0], 3, padding=1)

        self.down, self.down_sample = nn.ModuleList(), nn.ModuleList()
        c = channels[0]
        for i, (c_out, attn) in enumerate(zip(channels, attention)):
            self.down.append(Level(c, c_out, embed_dim, groups, dropout, attn))
            c = c_out
            if i < len(downsample):
                self.down_sample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if downsample[i] else nn.Identity())
        self.mid1 = ResBlock(c, c, embed_dim, groups, dropout)
        self.mid_attn = SelfAttention(c, groups)
        self.mid2 = ResBlock(c, c, embed_dim, groups, dropout)

        self.up, self.up_sample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(channels))):
            self.up.append(Level(c + channels[i], channels[i], embed_dim, groups, dropout, attention[i]))
            c = channels[i]
            if i > 0:
                self.up_sample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1))
                                      if downsample[i - 1] else nn.Identity())
        self.norm_out = nn.GroupNorm(groups, c)
        self.conv_out = zero_init(nn.Conv2d(c, 1, 3, padding=1))

    def embed(self, t, y):
        """Conditioning vector (B, E) from timesteps t (B,) and labels y (B,) or None."""
        if y is None:
            y = torch.full_like(t, self.num_classes)
        return self.time_mlp(timestep_embedding(t, self.embed_dim)) + self.class_embed(y.long())

    def forward(self, x, t, y=None):
        t = torch.as_tensor(t, device=x.device).long().expand(x.shape[0])
        emb = self.embed(t, y)  # (B, E)
        h = self.conv_in(x)  # (B, c0, 28, 28)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, emb)
            skips.append(h)
            if i < len(self.down_sample):
                h = self.down_sample[i](h)  # 28 -> 14 -> 7 -> 7
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for j, level in enumerate(self.up):
            h = level(torch.cat([h, skips.pop()], dim=1), emb)
            if j < len(self.up_sample):
                h = self.up_sample[j](h)  # 7 -> 7 -> 14 -> 28
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 1, 28, 28)


def build_model(config: Optional[dict] = None) -> MNISTUNet:
    """MNISTUNet from a ModelConfig dict (as stored in checkpoints); defaults when None."""
    return MNISTUNet(**(config or {}))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
