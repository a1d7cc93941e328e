"""Inputs from outside MNIST for CS180 part A's own images (A.7: "hand-drawn and web images"): real
handwriting from another data set, a letter rendered from a font, and a photograph, each made into a 28x28
MNIST-like image (1, 1, 28, 28) in [-1, 1], background -1 and ink +1.

    uci_digit(index)            a UCI handwritten digit (scikit-learn's load_digits, 8x8) upscaled to MNIST's look
    first_uci(label)            the index of the first UCI digit of a label
    font_letter(char)           a TrueType glyph (matplotlib's DejaVu Sans), MNIST-normalised (mnist_box)
    sample_photo(name)          one of matplotlib's bundled photographs, grey, centre-cropped, 28x28
"""
from __future__ import annotations

import functools
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.cbook import get_sample_data
from matplotlib.font_manager import FontProperties, findfont
from matplotlib.ft2font import FT2Font
from sklearn.datasets import load_digits


@functools.lru_cache(maxsize=1)
def _uci():
    """scikit-learn's bundled UCI digits (it ships the data: no download), loaded once."""
    return load_digits()


UCI_UPSCALE = 32  # the 8x8 counts are 4x4 blocks of a 32x32 bitmap: upscale back to that size first
UCI_INK = (0.2, 0.7)  # then stretch: below 0.2 is background, above 0.7 full ink (MNIST's strokes saturate)


def uci_digit(index: int) -> tuple[torch.Tensor, int]:
    """Real handwriting that is not MNIST, for CS180's "hand-drawn image" SDEdit: digit `index` of scikit-learn's
    bundled copy of the UCI handwritten digits (`sklearn.datasets.load_digits`: 1,797 digits, the UCI test set,
    written by 13 of the set's 43 writers; 8x8 counts 0..16 of ink in 4x4 blocks of a 32x32 bitmap).

    MNIST's look: the counts / 16, bicubic to 32x32 (the bitmap's own size), ink stretched from UCI_INK to
    [0, 1], then mnist_box (bounding box scaled to fit 20x20, aspect kept, centre of mass at the centre of
    28x28). Returns (image (1, 1, 28, 28) in [-1, 1], its label)."""
    digits = _uci()
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(digits.images):
        raise ValueError(f"index must be an integer in 0..{len(digits.images) - 1}, got {index!r}")
    counts = torch.tensor(digits.images[index], dtype=torch.float32)[None, None] / 16  # (1, 1, 8, 8) in [0, 1]
    big = torch.nn.functional.interpolate(counts, size=(UCI_UPSCALE, UCI_UPSCALE), mode="bicubic",
                                          align_corners=False)[0, 0]
    lo, hi = UCI_INK
    return mnist_box(((big - lo) / (hi - lo)).clamp(0, 1)), int(digits.target[index])


def first_uci(label: int) -> int:
    """The index of the first digit `label` in load_digits' order."""
    return int(np.flatnonzero(_uci().target == label)[0])


def mnist_box(ink: torch.Tensor, box: int = 20, threshold: float = 0.1) -> torch.Tensor:
    """MNIST's normalisation of a drawing: ink (H, W) in [0, 1] (1 = ink) -> its bounding box of pixels
    above `threshold`, scaled (antialiased, aspect kept) to fit box x box, pasted into 28x28 with its
    centre of mass at the centre. Returns (1, 1, 28, 28) in [-1, 1]."""
    if ink.ndim != 2 or not (ink > threshold).any():
        raise ValueError(f"need a 2-D image in [0, 1] with some ink above {threshold}, got shape {tuple(ink.shape)}")
    rows, cols = (ink > threshold).any(1).nonzero().flatten(), (ink > threshold).any(0).nonzero().flatten()
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].float()
    scale = box / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = torch.nn.functional.interpolate(crop[None, None], size=(h, w), mode="bilinear", antialias=True,
                                            align_corners=False)[0, 0].clamp(0, 1)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cy, cx = (small * yy).sum() / small.sum(), (small * xx).sum() / small.sum()
    top, left = min(max(round(13.5 - cy.item()), 0), 28 - h), min(max(round(13.5 - cx.item()), 0), 28 - w)
    out = torch.zeros(28, 28)
    out[top:top + h, left:left + w] = small
    return (out * 2 - 1).reshape(1, 1, 28, 28)


def font_letter(char: str = "S", font_path: Optional[str] = None) -> torch.Tensor:
    """An image from outside MNIST: `char` rendered from a TrueType font (default: matplotlib's DejaVu
    Sans, which matplotlib ships), white on black, MNIST-normalised (mnist_box). Returns (1, 1, 28, 28)."""
    if not isinstance(char, str) or len(char) != 1 or char.isspace():
        raise ValueError(f"char must be one visible character, got {char!r}")
    font = FT2Font(font_path or findfont(FontProperties(family="DejaVu Sans")))
    font.set_size(64, 72)
    font.set_text(char)
    font.draw_glyphs_to_bitmap()
    return mnist_box(torch.from_numpy(np.asarray(font.get_image(), dtype=np.float32) / 255))


def sample_photo(name: str = "grace_hopper.jpg") -> torch.Tensor:
    """A photograph from outside MNIST: one of matplotlib's bundled sample images (default: Grace
    Hopper's portrait), to grey, centre-cropped to a square, resized (antialiased) to 28x28 and
    stretched to [-1, 1] (darkest pixel -1, brightest +1). Returns (1, 1, 28, 28)."""
    rgb = torch.from_numpy(np.asarray(plt.imread(get_sample_data(name, asfileobj=False)), dtype=np.float32))
    grey = rgb[..., :3].mean(-1) if rgb.ndim == 3 else rgb
    h, w = grey.shape
    side = min(h, w)
    sq = grey[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    small = torch.nn.functional.interpolate(sq[None, None], size=(28, 28), mode="bilinear", antialias=True,
                                            align_corners=False)
    return ((small - small.min()) / (small.max() - small.min()).clamp(min=1e-8) * 2 - 1).reshape(1, 1, 28, 28)
