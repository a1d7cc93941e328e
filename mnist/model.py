"""Problem 5's class-conditional UNet: one configuration of the image-diffusion core's UNet
(image_diffusion/unet.py), 1 channel at 28x28, one block per resolution. Its checkpoints store the
ModelConfig below, and mnist/reference/model.pt loads into it unchanged.

Timestep convention: as in utils.py, t runs 1..T (t = 0 is the clean image); the network is only
ever called with t in 1..T.

Layout with the defaults (channels=(16, 32, 64, 64), attention in every block: linear attention at
28x28 and 14x14, softmax self-attention at 7x7 and in the middle; the shipped model):

    x (B, 1, 28, 28) -> conv 3x3 -> (B, 16, 28, 28)
    enc 1: ResBlock(16 -> 16) + linear attn    28x28 -> skip 1, then down (stride-2 conv) to 14x14
    enc 2: ResBlock(16 -> 32) + linear attn    14x14 -> skip 2, then down to 7x7
    enc 3: ResBlock(32 -> 64) + attn            7x7  -> skip 3
    enc 4: ResBlock(64 -> 64) + attn            7x7  -> skip 4
    middle: ResBlock + attn + ResBlock          7x7
    dec 4: ResBlock([h, skip 4] -> 64) + attn   7x7
    dec 3: ResBlock([h, skip 3] -> 64) + attn   7x7, then up (nearest x2 + conv) to 14x14
    dec 2: ResBlock([h, skip 2] -> 32) + linear attn   14x14, then up to 28x28
    dec 1: ResBlock([h, skip 1] -> 16) + linear attn   28x28
    out: GroupNorm, SiLU, conv 3x3 -> (B, 1, 28, 28) = eps_hat

Linear attention (image_diffusion.unet.LinearAttention) sums keys times values over the positions
first, so its cost grows with the 784 positions of a 28x28 map instead of with 784^2; the model
shipped before attended at 7x7 only (`python -m mnist.train --attention 7x7`).

Conditioning: a sinusoidal embedding of t plus a learned embedding of the label y, where label
`num_classes` (10) is the "no label" token that classifier-free guidance (Ho & Salimans 2022)
needs; each ResBlock adds a projection of it to its feature maps (scale and shift after the
first GroupNorm, as in improved-diffusion's `use_scale_shift_norm`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

from image_diffusion.unet import UNet, UNetConfig, count_parameters, mnist_unet_config

__all__ = ["ModelConfig", "MNISTUNet", "build_model", "count_parameters"]


@dataclass(frozen=True)
class ModelConfig:
    """The architecture (stored in checkpoints, so `MNISTUNet(**cfg)` rebuilds it)."""

    T: int = 200
    num_classes: int = 10
    channels: tuple = (16, 32, 64, 64)  # one per resolution block; 28 -> 14 -> 7 -> 7
    attention: tuple = ("linear", "linear", True, True)  # False / True (softmax) / "linear", per block
    downsample: tuple = (True, True, False)  # between block i and i+1 (7x7 is too small to halve)
    embed_dim: int = 128
    groups: int = 8  # GroupNorm groups
    dropout: float = 0.0

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def unet_config(self) -> UNetConfig:
        """The same network as the core UNet's config."""
        return mnist_unet_config(self.as_dict())


class MNISTUNet(UNet):
    """eps_theta(x_t, t, y) for MNIST: the core UNet with problem 5's configuration.

    forward(x, t, y=None): x (B, 1, 28, 28) noisy images (data scaled to [-1, 1]); t int64 (B,) in
    1..T (a scalar is broadcast); y int64 (B,) labels in 0..9, or 10 / None for "no label".
    Returns eps_hat (B, 1, 28, 28). `config` is the ModelConfig its checkpoints store.
    """

    def __init__(self, T: int = 200, num_classes: int = 10, channels: Sequence[int] = (16, 32, 64, 64),
                 attention: Sequence = ("linear", "linear", True, True), downsample: Sequence[bool] = (True, True, False),
                 embed_dim: int = 128, groups: int = 8, dropout: float = 0.0):
        mc = ModelConfig(int(T), num_classes, tuple(channels), tuple(attention), tuple(downsample), embed_dim, groups,
                         dropout)
        super().__init__(mc.unet_config())
        self.unet_config, self.config = self.config, mc


def build_model(config: Optional[dict] = None) -> MNISTUNet:
    """MNISTUNet from a ModelConfig dict (as stored in checkpoints); defaults when None."""
    return MNISTUNet(**(config or {}))

