"""Named training configurations: `--preset NAME` plus overrides is the whole interface.

A `Config` holds everything that defines a run (data, UNet, schedule, optimiser, seed); it is stored
in every checkpoint, so a run is rebuilt from its file alone. Schedules come from
`utils.make_schedule` (t = 1..T, images clipped to [-1, 1] when x0_hat is predicted).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple, Optional

from runio.checkpoints import config_from_dict, config_to_dict
from runio.cli import MAX_BATCH, MAX_SEED, MAX_T, check_training_settings
from solvers import SAMPLERS
from utils import SCHEDULES, check_T, make_schedule

from .unet import UNetConfig

RESOLUTIONS = (28, 32, 64, 96, 128)


@dataclass(frozen=True)
class Config:
    """One training run. Tuples are comma-separated on the command line (--mults 1,2,2,2)."""

    # data
    data: Optional[str] = None  # "cifar10", "stl10" or a folder of images; None: --data must say
    data_root: str = "data"  # where torchvision's datasets live (and are downloaded to)
    download: bool = True
    resolution: int = 32
    channels: int = 3  # image channels: 3 (RGB) or 1 (grayscale)
    # UNet (UNetConfig.from_mults)
    base: int = 32  # channels of the first level
    mults: tuple = (1, 2, 2, 2)  # level l has base * mults[l] channels at resolution / 2^l
    attn_resolutions: tuple = (16,)
    num_res_blocks: int = 1
    embed_dim: int = 0  # 0: 4 * base, as Ho et al.
    dropout: float = 0.0
    num_classes: int = 0  # 0: unconditional; else class-conditional with label dropout p_uncond
    mid_attention: bool = True
    # diffusion
    T: int = 1000
    schedule: str = "linear"
    loss: str = "l2"
    p_uncond: float = 0.1  # classifier-free guidance: label dropped to "null" with this probability
    # optimisation
    steps: int = 5000
    batch_size: int = 64  # the global batch, split over the processes under torchrun
    lr: float = 2e-4
    warmup: int = 100  # linear learning-rate warm-up (Ho et al.: 5000), then constant
    grad_clip: float = 1.0  # Ho et al.'s gradient-norm clip
    ema_decay: float = 0.999
    seed: int = 0
    # machine
    device: str = "auto"
    amp: bool = True  # bf16 autocast, CUDA only
    compile: bool = False  # torch.compile the UNet (CUDA; slow to start)
    workers: int = -1  # DataLoader workers; -1: 4 on CUDA, 0 on CPU
    # outputs
    save_every: int = 1000
    sample_n: int = 64  # images in the closing grid; 0: no grid
    # the closing grid's sampler (solvers.SAMPLERS): a fast solver, 20 network evaluations per image, where the
    # full chain took 300-1000 (benchmarks/samplers.py); "ddpm" with sample_steps 0 for the full ancestral chain
    sample_sampler: str = "dpm++"
    sample_steps: int = 20
    sample_eta: float = 0.0  # DDIM's eta: 0 deterministic, 1 ancestral on the strided steps

    def unet(self) -> UNetConfig:
        return UNetConfig.from_mults(self.base, self.mults, self.attn_resolutions, self.num_res_blocks,
                                     self.resolution, in_channels=self.channels, out_channels=self.channels,
                                     T=self.T, num_classes=self.num_classes, dropout=self.dropout,
                                     mid_attention=self.mid_attention, embed_dim=self.embed_dim or 4 * self.base)

    def noise_schedule(self):
        return make_schedule(self.T, self.schedule, "posterior", clip_x0=1.0)

    def validate(self) -> "Config":
        """ValueError (one line) for any setting the run cannot use."""
        check_T(self.T)
        if self.T > MAX_T:
            raise ValueError(f"T must be at most {MAX_T}, got {self.T}")
        for name, value, choices in (("schedule", self.schedule, SCHEDULES), ("loss", self.loss, ("l1", "l2"))):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution {self.resolution} is not supported; choose one of "
                             f"{', '.join(map(str, RESOLUTIONS))}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be in 1..{MAX_BATCH}, got {self.batch_size}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED}, got {self.seed}")
        if not (self.grad_clip > 0 and math.isfinite(self.grad_clip)):
            raise ValueError(f"grad_clip must be a positive number, got {self.grad_clip}")
        if self.sample_steps > self.T:
            raise ValueError(f"sample_steps must be at most T={self.T}, got {self.sample_steps}")
        if self.sample_sampler not in SAMPLERS:
            raise ValueError(f"unknown sample_sampler {self.sample_sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.sample_sampler not in ("ddpm",) and self.sample_steps == 0:
            raise ValueError(f"sample_sampler {self.sample_sampler} needs sample_steps >= 1 (0 is DDPM's full chain)")
        if not 0 <= self.sample_eta <= 1:
            raise ValueError(f"sample_eta must be in [0, 1], got {self.sample_eta}")
        check_training_settings(self.p_uncond, self.lr, self.ema_decay)
        self.unet().validate()
        return self

    def as_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        if "sample_sampler" not in d:  # a run made before the fast samplers: DDIM, or the full chain for 0 steps
            d = {**d, "sample_sampler": "ddim" if d.get("sample_steps") else "ddpm"}
        return config_from_dict(cls, d)


class Preset(NamedTuple):
    config: Config
    source: str  # where it comes from, printed by --help


PRESETS = {
    # Seed 004 (a DDPM-from-scratch tutorial): 64x64 RGB (Stanford Cars, a folder: torchvision can no longer
    # download it), linear betas 1e-4..0.02 over T=300, L1 loss, Adam 1e-3, batch 128, and its SimpleUnet's
    # widths 64..1024 with a sinusoidal time embedding of 32 dims and no attention. The blocks are this
    # package's ResBlocks (GroupNorm, scale-shift), not the tutorial's BatchNorm blocks.
    "tutorial": Preset(Config(
        resolution=64, base=64, mults=(1, 2, 4, 8, 16), attn_resolutions=(), num_res_blocks=1, embed_dim=32,
        mid_attention=False, T=300, schedule="linear", loss="l1", batch_size=128, lr=1e-3, warmup=0, steps=10_000),
        "seed 004's tutorial: 64x64 RGB, linear 1e-4..0.02, T=300, L1, widths 64..1024, no attention; needs --data"),
    # Ho et al. (2020), App. B, CIFAR-10: ch 128, mults (1,2,2,2), 2 ResBlocks per level, attention at 16x16,
    # dropout 0.1, T=1000 linear, L2, Adam 2e-4, batch 128, EMA 0.9999 (35.7M parameters, 800k steps on a TPU).
    # Scaled to a CPU or small GPU: width 32, one ResBlock per level (1.2M parameters), batch 64, a faster
    # learning rate and EMA for runs of thousands rather than hundreds of thousands of steps, and a DDIM-100 grid
    # with eta 1 (stochastic; benchmarks/image_budget.py: after 10 CPU minutes the deterministic eta 0 leaves
    # coloured pixel noise, FD 39.9 against 5.1 on the same weights).
    "cifar10-32": Preset(Config(
        data="cifar10", resolution=32, base=32, mults=(1, 2, 2, 2), attn_resolutions=(16,), num_res_blocks=1,
        dropout=0.1, T=1000, schedule="linear", loss="l2", batch_size=64, lr=5e-4, warmup=100, steps=5000,
        ema_decay=0.999, sample_sampler="ddim", sample_steps=100, sample_eta=1.0),
        "Ho et al.'s CIFAR-10 model scaled to a CPU: 32x32, width 32 x (1,2,2,2), attention at 16, T=1000 linear"),
    # Seed 001 (a DDPM report): STL-10 at 96x96 with a linear schedule and attention blocks. The UNet is Ho et
    # al.'s (2 ResBlocks per level, dropout 0.1, L2, T=1000) with levels 96, 48, 24, 12 and attention at 12.
    "stl10-96": Preset(Config(
        data="stl10", resolution=96, base=64, mults=(1, 2, 2, 4), attn_resolutions=(12,), num_res_blocks=2,
        dropout=0.1, T=1000, schedule="linear", loss="l2", batch_size=64, lr=2e-4, warmup=1000, steps=200_000,
        ema_decay=0.9999),
        "seed 001's STL-10 run: 96x96, Ho et al.'s UNet with levels 96..12, attention at 12, T=1000 linear"),
    # Seed 001: FFHQ at 128x128 (a folder of images: torchvision has no FFHQ). Ho et al.'s 256x256 layout
    # (mults 1,1,2,2,4,4, attention at 16, lr 2e-5) less one level.
    "ffhq-128": Preset(Config(
        resolution=128, base=64, mults=(1, 1, 2, 2, 4), attn_resolutions=(16,), num_res_blocks=2, dropout=0.0,
        T=1000, schedule="linear", loss="l2", batch_size=32, lr=2e-5, warmup=1000, steps=300_000, ema_decay=0.9999),
        "seed 001's FFHQ run: 128x128, Ho et al.'s 256x256 UNet less one level, attention at 16; needs --data"),
}


def get_preset(name: str, **overrides) -> Config:
    """The preset's Config with `overrides` (field=value) applied and validated; ValueError listing the
    presets for an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name].config, **overrides).validate()


def describe_presets() -> str:
    """One line per preset, for --help."""
    return "\n".join(f"  {name:<11} {p.source}" for name, p in PRESETS.items())
