"""Inputs from outside MNIST for CS180 part A's SDEdit (A.7.1: "hand-drawn and web images"): digits drawn
in code the way a person draws them, a letter rendered from a font, and a photograph, each made into a
28x28 MNIST-like image (B = 1, 1, 28, 28) in [-1, 1], background -1 and ink +1.

    rough_stroke(shape, seed)   a crude digit: straight, jittered polylines
    hand_drawn(shape, seed)     smooth pen strokes with a per-seed slant, size, shift and pen width
    font_letter(char)           a TrueType glyph (matplotlib's DejaVu Sans), MNIST-normalised (mnist_box)
    sample_photo(name)          one of matplotlib's bundled photographs, grey, centre-cropped, 28x28
"""
from __future__ import annotations

import math
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.cbook import get_sample_data
from matplotlib.font_manager import FontProperties, findfont
from matplotlib.ft2font import FT2Font

ROUGH_STROKES = {
    "7": [[(6.0, 7.0), (21.0, 6.5), (12.0, 23.0)]],
    "1": [[(10.0, 9.0), (14.0, 5.0), (14.5, 23.0)]],
    "0": [[(14 + 5.5 * math.sin(a), 14 - 8.5 * math.cos(a)) for a in torch.linspace(0, 2 * math.pi, 25).tolist()]],
    "4": [[(16.0, 5.0), (7.0, 17.0), (21.0, 17.0)], [(17.0, 10.0), (17.5, 24.0)]],
}


def _ink(segments: list, width: float) -> torch.Tensor:
    """Polylines (each a (K, 2) tensor of (x, y) pixel coordinates) drawn with an anti-aliased pen of
    half-width `width` (a 1 px soft edge): (1, 1, 28, 28) in [-1, 1], background -1, ink +1."""
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    pix = torch.stack([xx, yy], -1).reshape(-1, 2)  # (784, 2) as (x, y)
    dist = torch.full((784,), float("inf"))
    for pts in segments:
        for p, q in zip(pts[:-1], pts[1:]):  # distance to each segment
            d = q - p
            s = ((pix - p) @ d / d.dot(d).clamp(min=1e-9)).clamp(0, 1)
            dist = torch.minimum(dist, (pix - (p + s[:, None] * d)).norm(dim=1))
    ink = (width + 0.5 - dist).clamp(0, 1)
    return (ink * 2 - 1).reshape(1, 1, 28, 28)


def rough_stroke(shape: str = "7", seed: int = 0, width: float = 1.3, wobble: float = 0.8) -> torch.Tensor:
    """A crude digit made in code: straight polylines in (x, y) pixel coordinates, each vertex jittered by
    `wobble` px (seeded), drawn with an anti-aliased pen of half-width `width`. Returns (1, 1, 28, 28) in
    [-1, 1] (background -1, ink +1). `hand_drawn` draws the way a person does."""
    if shape not in ROUGH_STROKES:
        raise ValueError(f"unknown stroke {shape!r}; choose one of {', '.join(ROUGH_STROKES)}")
    g = torch.Generator().manual_seed(seed)
    return _ink([torch.tensor(line) + wobble * torch.randn(len(line), 2, generator=g) for line in ROUGH_STROKES[shape]],
                width)


# Pen strokes through control points, (x, y) in pixels of a 28x28 canvas (y down), in the order a person
# draws them; each stroke is one pen-down, a smooth curve through its points (sharp corners = a new stroke).
HAND_DRAWN = {
    "2": [[(8.5, 9.5), (10.5, 6.5), (14.5, 5.5), (18.5, 7.5), (18.5, 11.5), (15.0, 15.5), (11.0, 19.0), (7.5, 22.0)],
          [(7.5, 22.0), (13.0, 21.5), (20.5, 22.0)]],
    "3": [[(8.5, 7.5), (13.0, 5.0), (18.0, 6.5), (18.0, 10.5), (13.0, 13.0)],
          [(13.0, 13.0), (18.5, 15.0), (19.0, 20.0), (14.0, 23.0), (8.0, 21.0)]],
    "4": [[(15.0, 5.0), (11.5, 11.0), (7.5, 16.5)], [(7.5, 16.5), (14.0, 16.0), (20.5, 15.5)],
          [(17.0, 9.0), (16.5, 16.0), (16.0, 23.5)]],
    "5": [[(19.0, 5.0), (14.5, 5.2), (10.0, 5.5)], [(10.0, 5.5), (9.5, 9.5), (9.0, 13.0)],
          [(9.0, 13.0), (14.0, 11.5), (18.5, 14.0), (19.0, 19.0), (14.5, 22.5), (8.0, 21.0)]],
    "8": [[(17.5, 7.5), (14.0, 5.0), (10.0, 6.5), (10.5, 10.5), (14.0, 13.5), (18.0, 17.0), (17.5, 21.5),
           (13.5, 23.0), (9.5, 21.0), (10.0, 17.0), (14.0, 13.5), (17.5, 10.5), (17.5, 7.5)]],
    "9": [[(18.0, 8.5), (14.5, 5.0), (10.0, 7.0), (9.5, 11.0), (13.0, 13.5), (17.0, 11.5), (18.0, 8.5)],
          [(18.0, 8.5), (17.5, 16.0), (16.5, 23.5)]],
}


def _spline(points: torch.Tensor, per_segment: int = 12) -> torch.Tensor:
    """Catmull-Rom curve through points (K, 2): (per_segment (K - 1) + 1, 2); a straight line for K = 2."""
    if len(points) < 3:
        return torch.stack([points[0] + (points[1] - points[0]) * s for s in torch.linspace(0, 1, per_segment + 1)])
    p = torch.cat([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])  # mirrored ends
    s = torch.linspace(0, 1, per_segment + 1)[:-1, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2
                          + (3 * p1 - p0 - 3 * p2 + p3) * s**3))
    return torch.cat(out + [points[-1:]])


def hand_drawn(shape: str = "2", seed: int = 0, jitter: float = 0.6) -> torch.Tensor:
    """A digit drawn the way a person draws it, for CS180's "hand-drawn image" SDEdit: smooth pen strokes
    (Catmull-Rom curves through HAND_DRAWN's control points), and, drawn per seed, a slant (shear of
    -0.1..0.3, forward like most handwriting), a size of 0.85..1.1, a shift of up to 1.5 px, a pen
    half-width of 1.0..1.7 px, and each control point moved by `jitter` px. Returns (1, 1, 28, 28) in
    [-1, 1] (background -1, ink +1)."""
    if shape not in HAND_DRAWN:
        raise ValueError(f"unknown hand-drawn shape {shape!r}; choose one of {', '.join(HAND_DRAWN)}")
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand((), generator=g).item()
    slant, size, width = u(-0.1, 0.3), u(0.85, 1.1), u(1.0, 1.7)
    shift = torch.tensor([u(-1.5, 1.5), u(-1.5, 1.5)])
    strokes = []
    for line in HAND_DRAWN[shape]:
        pts = torch.tensor(line) + jitter * torch.randn(len(line), 2, generator=g)
        pts = (pts - 14) * size
        pts = torch.stack([pts[:, 0] - slant * pts[:, 1], pts[:, 1]], 1) + 14 + shift  # lean the top forward
        strokes.append(_spline(pts))
    return _ink(strokes, width)


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
