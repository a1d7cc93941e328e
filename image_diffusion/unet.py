"""The UNet noise predictor eps_theta(x_t, t, y) for 1- or 3-channel images of 28 to 128 pixels.

Timestep convention: as in utils.py, t runs 1..T (t = 0 is the clean image).

The network is a list of blocks, each a ResBlock (+ self-attention where asked), with an optional
2x downsampling between consecutive blocks; the decoder mirrors it with one skip connection per
block. Listing blocks rather than resolution levels lets one class hold both Ho et al.'s layout
(`UNetConfig.from_mults`: two blocks per level, downsampling between levels) and the problem-5
MNIST model (`from_mnist_config`: one block per level, 28 -> 14 -> 7 -> 7), whose checkpoint
`mnist/reference/model.pt` loads into this class unchanged (strict) and gives bit-identical outputs.

    x (B, C, R, R) -> conv 3x3 -> blocks (skip after each, down where asked) -> middle: Res, attn, Res
      -> blocks reversed ([h, skip] in, up = nearest x2 + conv 3x3 where the encoder went down)
      -> GroupNorm, SiLU, conv 3x3 -> eps_hat (B, C_out, R, R)

Conditioning: a sinusoidal embedding of t (Ho et al. 2020, App. B) through an MLP, plus a learned
embedding of the label y; label `num_classes` is the "no label" token of classifier-free guidance
(Ho & Salimans 2022), so num_classes = 0 is an unconditional model. Each ResBlock scales and shifts
its features by a projection of it (improved-diffusion's `use_scale_shift_norm`).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from runio.checkpoints import config_from_dict, config_to_dict


@dataclass(frozen=True)
class UNetConfig:
    """The architecture, stored in checkpoints: UNet(UNetConfig(**d)) rebuilds it.

    channels[i], attention[i]: width and attention of block i (False: none; True: softmax
    self-attention over the H*W positions, cost (HW)^2; "linear": linear attention, cost HW, for the
    large early blocks); downsample[i]: halve the resolution between block i and i + 1 (so
    len(downsample) = len(channels) - 1)."""

    in_channels: int = 3
    out_channels: int = 3
    resolution: int = 32
    T: int = 1000
    num_classes: int = 0  # 0: unconditional (only the null label exists)
    channels: tuple = (64, 64, 128, 128)
    attention: tuple = (False, False, True, True)
    downsample: tuple = (False, True, False)
    embed_dim: int = 256
    groups: int = 8  # GroupNorm groups
    heads: int = 4
    dropout: float = 0.0
    mid_attention: bool = True

    @classmethod
    def from_mults(cls, base: int, mults: Sequence[int], attn_resolutions: Sequence[int] = (16,),
                   num_res_blocks: int = 2, resolution: int = 32, **kw) -> "UNetConfig":
        """Ho et al.'s description: level l has base * mults[l] channels at resolution / 2^l pixels,
        num_res_blocks blocks per level, attention at the listed resolutions, 2x down between levels."""
        channels, attention, down = [], [], []
        for level, m in enumerate(mults):
            for b in range(num_res_blocks):
                channels.append(base * m)
                attention.append(resolution // 2**level in attn_resolutions)
                down.append(b == num_res_blocks - 1)
        return cls(resolution=resolution, channels=tuple(channels), attention=tuple(attention),
                   downsample=tuple(down[:-1]), embed_dim=kw.pop("embed_dim", 4 * base), **kw)

    @property
    def factor(self) -> int:
        """How much the encoder shrinks the image: 2 ** (number of downsamplings)."""
        return 2 ** sum(self.downsample)

    def validate(self) -> "UNetConfig":
        """ValueError (one line) for a configuration the UNet cannot build or an image it cannot take."""
        if not (len(self.channels) == len(self.attention) == len(self.downsample) + 1):
            raise ValueError("need one channel count and one attention flag per block, and one downsample flag "
                             f"between blocks; got {self.channels}, {self.attention}, {self.downsample}")
        if any(a not in ATTENTION_KINDS for a in self.attention):
            raise ValueError(f"attention flags must be False, True or 'linear', got {self.attention}")
        if any(c % self.groups for c in self.channels) or any(c % self.heads for c in self.channels):
            raise ValueError(f"every channel count must be divisible by groups={self.groups} and heads={self.heads}, "
                             f"got {self.channels}")
        if self.in_channels < 1 or self.out_channels < 1 or self.num_classes < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"bad UNet config: in/out channels {self.in_channels}/{self.out_channels}, "
                             f"num_classes {self.num_classes}, dropout {self.dropout}")
        if self.resolution < 1 or self.resolution % self.factor:
            raise ValueError(f"resolution {self.resolution} is not divisible by {self.factor}, the UNet's downsampling "
                             f"factor ({sum(self.downsample)} halvings); choose another resolution or fewer levels")
        return self

    def as_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        return config_from_dict(cls, d)


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


_GLOBAL_BATCH = None  # (global batch size, this process's first row) inside global_batch_dropout, else None


@contextlib.contextmanager
def global_batch_dropout(batch_size: int, first_row: int):
    """Inside, each dropout layer draws its mask for the whole global batch of `batch_size` samples from the
    torch RNG and keeps this process's rows first_row .. first_row + B - 1. With the RNG seeded alike on every
    process, N torchrun processes then drop exactly what one process with the whole batch drops, and one
    process draws bit for bit what nn.Dropout draws (the mask of a larger tensor starts with the same values)."""
    global _GLOBAL_BATCH
    before, _GLOBAL_BATCH = _GLOBAL_BATCH, (batch_size, first_row)
    try:
        yield
    finally:
        _GLOBAL_BATCH = before


class BatchDropout(nn.Dropout):
    """nn.Dropout, except inside global_batch_dropout (see there)."""

    def forward(self, x):
        if _GLOBAL_BATCH is None or not self.training or self.p == 0:
            return super().forward(x)
        total, first = _GLOBAL_BATCH
        keep = x.new_empty((total, *x.shape[1:])).bernoulli_(1 - self.p)  # what F.dropout draws, for every row
        keep.div_(1 - self.p)
        return x * keep[first:first + x.shape[0]]


class ResBlock(nn.Module):
    """x + F(x, emb): GroupNorm, SiLU, conv 3x3, scale-shift by emb, SiLU, dropout, conv 3x3.
    x (B, c_in, H, W), emb (B, E) -> (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(embed_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = BatchDropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(c_out, c_out, 3, padding=1))  # the block starts as the identity
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
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


class LinearAttention(SelfAttention):
    """Linear attention (Shen et al. 2021, "Efficient attention"; as in denoising-diffusion-pytorch),
    residual: (B, C, H, W) -> same. Softmax over each query's features and over the keys' positions
    lets the keys and values be summed first, into a (C/heads x C/heads) context per head, so the
    cost grows with H*W instead of (H*W)^2: affordable at 28x28, where a 784 x 784 map is not. The
    layers (norm, qkv, zero-initialised proj) are SelfAttention's; only the mixing differs."""

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)  # (B, nh, d, HW)
        q = q.softmax(dim=-2) * (C // self.heads) ** -0.5  # over a query's features
        k = k.softmax(dim=-1)  # over positions
        context = k @ v.transpose(-1, -2)  # (B, nh, d, d): sum over positions of k v^T
        h = context.transpose(-1, -2) @ q  # (B, nh, d, HW)
        return x + self.proj(h.reshape(B, C, H, W))


ATTENTION_KINDS = (False, True, "linear")


def attention_layer(kind, channels: int, groups: int, heads: int) -> nn.Module:
    """The attention a block's flag asks for: none (False), softmax (True) or linear ("linear")."""
    if kind == "linear":
        return LinearAttention(channels, groups, heads)
    return SelfAttention(channels, groups, heads) if kind else nn.Identity()


class Level(nn.Module):
    """One block: a ResBlock, then attention if asked (False, True or "linear")."""

    def __init__(self, c_in, c_out, embed_dim, groups, dropout, attention=False, heads: int = 4):
        super().__init__()
        self.res = ResBlock(c_in, c_out, embed_dim, groups, dropout)
        self.attn = attention_layer(attention, c_out, groups, heads)

    def forward(self, x, emb):
        return self.attn(self.res(x, emb))


class UNet(nn.Module):
    """eps_theta(x_t, t, y).

    forward(x, t, y=None): x (B, in_channels, H, W) noisy images (data in [-1, 1]), H and W divisible
    by config.factor; t int64 (B,) in 1..T (a scalar is broadcast); y int64 (B,) labels in
    0..num_classes - 1, or num_classes / None for "no label". Returns eps_hat (B, out_channels, H, W).
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        cfg = self.config = config.validate()
        self.factor = cfg.factor  # subclasses may store another config type under `config`
        self.T = int(cfg.T)
        self.num_classes = cfg.num_classes
        self.embed_dim = E = cfg.embed_dim
        channels, attention, downsample, groups, dropout = cfg.channels, cfg.attention, cfg.downsample, cfg.groups, cfg.dropout
        self.time_mlp = nn.Sequential(nn.Linear(E, E), nn.SiLU(), nn.Linear(E, E))
        self.class_embed = nn.Embedding(cfg.num_classes + 1, E)  # row num_classes = "no label"
        self.conv_in = nn.Conv2d(cfg.in_channels, channels[0], 3, padding=1)

        self.down, self.down_sample = nn.ModuleList(), nn.ModuleList()
        c = channels[0]
        for i, (c_out, attn) in enumerate(zip(channels, attention)):
            self.down.append(Level(c, c_out, E, groups, dropout, attn, cfg.heads))
            c = c_out
            if i < len(downsample):
                self.down_sample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if downsample[i] else nn.Identity())
        self.mid1 = ResBlock(c, c, E, groups, dropout)
        self.mid_attn = SelfAttention(c, groups, cfg.heads) if cfg.mid_attention else nn.Identity()
        self.mid2 = ResBlock(c, c, E, groups, dropout)

        self.up, self.up_sample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(channels))):
            self.up.append(Level(c + channels[i], channels[i], E, groups, dropout, attention[i], cfg.heads))
            c = channels[i]
            if i > 0:
                self.up_sample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1))
                                      if downsample[i - 1] else nn.Identity())
        self.norm_out = nn.GroupNorm(groups, c)
        self.conv_out = zero_init(nn.Conv2d(c, cfg.out_channels, 3, padding=1))

    def embed(self, t, y):
        """Conditioning vector (B, E) from timesteps t (B,) and labels y (B,) or None."""
        if y is None:
            y = torch.full_like(t, self.num_classes)
        return self.time_mlp(timestep_embedding(t, self.embed_dim)) + self.class_embed(y.long())

    def forward(self, x, t, y=None):
        H, W = x.shape[-2:]
        if H % self.factor or W % self.factor:
            raise ValueError(f"image size {H}x{W} is not divisible by {self.factor}, the UNet's downsampling factor")
        t = torch.as_tensor(t, device=x.device).long().expand(x.shape[0])
        emb = self.embed(t, y)  # (B, E)
        h = self.conv_in(x)  # (B, c0, H, W)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, emb)
            skips.append(h)
            if i < len(self.down_sample):
                h = self.down_sample[i](h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for j, level in enumerate(self.up):
            h = level(torch.cat([h, skips.pop()], dim=1), emb)
            if j < len(self.up_sample):
                h = self.up_sample[j](h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, out_channels, H, W)


def mnist_unet_config(model_config: dict) -> UNetConfig:
    """The UNetConfig of problem 5's MNISTUNet: `model_config` is the dict an MNIST checkpoint stores
    (`mnist.model.ModelConfig.as_dict()`)."""
    mc = model_config
    return UNetConfig(in_channels=1, out_channels=1, resolution=28, T=int(mc["T"]), num_classes=mc["num_classes"],
                      channels=tuple(mc["channels"]), attention=tuple(mc["attention"]),
                      downsample=tuple(mc["downsample"]), embed_dim=mc["embed_dim"], groups=mc["groups"],
                      heads=4, dropout=mc["dropout"], mid_attention=True)


def from_mnist_config(model_config: dict) -> UNet:
    """The UNet that is problem 5's MNISTUNet; an MNIST checkpoint's state_dict loads into it unchanged."""
    return UNet(mnist_unet_config(model_config))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
