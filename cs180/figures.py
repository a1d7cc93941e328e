"""The figure helpers of every CS180 page, part A and part B: image grids, success-rate heat maps and
loss curves, and the check that a figure prints legibly.

Every grid and heat map is made report.pages.FIG_W inches wide, the width the report prints it at, so
its fonts print at their own sizes; `save` refuses a figure with a font under MIN_PT printed points or
taller than a page.

    image_grid(rows, fig_dir, name, ...)   MNIST images (..., 28, 28) in [-1, 1], with labels and captions
    image_table(rows, path, ...)           image_grid written to a path (part B's pages)
    rate_panels(mats, ...)                 (10, 10) success rates side by side, cells hatched and explained
    loss_figure(losses, ...)               loss per step and its running mean, epochs marked
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Text

from mnist.data import to_unit_range
from report.pages import FIG_W
from runio.files import atomic_write, savefig

MIN_PT = 7.0  # smallest printed font size
FONT = 8.0  # font size in every figure; figures are FIG_W wide, so it prints at 8 pt
DPI = 200  # of the PNGs: 8 pt text stays crisp in print
PAGE_ROOM = 9.8  # inches: the tallest figure that prints unshrunk below a page's title


def printed_sizes(fig) -> list[tuple[str, float]]:
    """(text, printed points) of every visible, non-empty text in fig when the figure is printed
    FIG_W inches wide."""
    scale = FIG_W / fig.get_size_inches()[0]
    return [(t.get_text(), t.get_fontsize() * scale) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip()]


def save(fig, fig_dir: str, name: str) -> str:
    """Check that every text prints at MIN_PT or more and that the figure fits a page unshrunk, then
    write <name>.png at DPI (what the report embeds). Returns the PNG's path."""
    small = [(t, round(pt, 1)) for t, pt in printed_sizes(fig) if pt < MIN_PT - 1e-6]
    w, h = fig.get_size_inches()
    if small or h * FIG_W / w > PAGE_ROOM:
        plt.close(fig)
        raise ValueError(f"figure {name} would not print legibly: texts under {MIN_PT} pt {small[:5]}, "
                         f"printed height {h * FIG_W / w:.1f} in (at most {PAGE_ROOM})")
    os.makedirs(fig_dir, exist_ok=True)
    path = os.path.join(fig_dir, f"{name}.png")
    try:
        atomic_write(path, lambda tmp: savefig(fig, path, tmp, dpi=DPI))
    finally:
        plt.close(fig)
    return path


def _lines(text) -> int:
    return str(text).count("\n") + 1 if text else 0


def image_grid(rows: Sequence[Sequence[Optional[torch.Tensor]]], fig_dir: str, name: str, row_labels=None,
               col_labels=None, captions=None, groups=None, cell: float = 0.8, label_w: float = 1.1,
               scales: Optional[Sequence[float]] = None) -> str:
    """A grid of MNIST images, FIG_W wide with FONT-pt labels: rows[r][c] an image (..., H, W) in
    [-1, 1] (28x28, or smaller: a digit seen from afar) or None (left blank); row_labels[r] left of row r;
    col_labels[c] above column c; captions[r][c] below image (r, c); groups: [(first column, last column,
    text)] spanning columns above the column labels. Images are at most `cell` inches; scales[c] draws
    column c's images that much smaller, centred in their cell (an 8 px view at 8 / 28: the same pixel
    size as the 28 px images). Returns the PNG path.
    Everything is drawn in one axes whose data units are inches (one axes per image draws 2x slower)."""
    R, C = len(rows), max(len(r) for r in rows)
    L = label_w if row_labels else 0.05
    pitch = min(cell + 0.06, (FIG_W - L - 0.05) / C)
    size = pitch - 0.06
    line = FONT * 1.3 / 72
    cap_h = line + 0.02 if captions else 0.0
    head = (max(map(_lines, col_labels)) * line + 0.06 if col_labels else 0.04) + (line + 0.08 if groups else 0)
    row_h = size + cap_h + 0.06
    H = head + R * row_h + 0.04
    fig = plt.figure(figsize=(FIG_W, H), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, FIG_W)
    ax.set_ylim(0, H)
    ax.axis("off")
    x0 = L + (FIG_W - L - 0.05 - C * pitch) / 2
    X = lambda c: x0 + c * pitch + 0.03  # left edge of column c, inches
    for r in range(R):
        top = H - head - r * row_h
        for c in range(C):
            img = rows[r][c] if c < len(rows[r]) else None
            if img is None:
                continue
            k = scales[c] if scales else 1.0
            pad = size * (1 - k) / 2
            ax.imshow(to_unit_range(img.reshape(img.shape[-2:])).numpy(), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest", extent=(X(c) + pad, X(c) + size - pad, top - size + pad, top - pad))
            if captions and captions[r][c]:
                ax.text(X(c) + size / 2, top - size - 0.015, captions[r][c], fontsize=FONT, ha="center", va="top")
        if row_labels:
            ax.text(x0 - 0.05, top - size / 2, row_labels[r], fontsize=FONT, ha="right", va="center", linespacing=1.15)
    for c, text in enumerate(col_labels or []):
        ax.text(X(c) + size / 2, H - head + 0.03, text, fontsize=FONT, ha="center", va="bottom", linespacing=1.1)
    for first, last, text in groups or []:
        y = H - 0.03 - line
        ax.text((X(first) + X(last) + size) / 2, y + 0.02, text, fontsize=FONT, ha="center", va="bottom", weight="bold")
        ax.plot([X(first), X(last) + size], [y, y], color="black", lw=0.6)
    ax.set_aspect("auto")
    ax.set_xlim(0, FIG_W)
    ax.set_ylim(0, H)
    return save(fig, fig_dir, name)


def image_table(rows: Sequence[Sequence[torch.Tensor]], path: str, row_labels=None, col_labels=None) -> str:
    """image_grid written to `path` (a .png; part B's pages call it this way)."""
    folder, fname = os.path.split(path)
    return image_grid(rows, folder or ".", os.path.splitext(fname)[0], row_labels, col_labels)


MARK_STYLES = (dict(hatch="////", edgecolor="#d62728"), dict(hatch="\\\\\\\\", edgecolor="#ff7f0e"))  # red, orange


def rate_panels(mats: Sequence[torch.Tensor], titles: Sequence[str], row_names: Sequence[str],
                col_names: Sequence[str], fig_dir: str, name: str, marks: Sequence[Sequence[tuple]],
                mark_labels: Sequence[str], seeds: int) -> str:
    """Success-rate heat maps side by side, FIG_W wide: mats[i] (10, 10) with NaN on the untested
    diagonal (grey), each cell annotated; marks[i] = [(cells, style), ...] hatches cells of panel i in
    MARK_STYLES[style], explained by mark_labels[style] in the legend; one colour bar."""
    H, side, bottom, left, gap = 3.65, 2.5, 0.95, 0.55, 1.0  # inches
    fig = plt.figure(figsize=(FIG_W, H), dpi=100)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#c8c8c8")
    for i, (m, title) in enumerate(zip(mats, titles)):
        ax = fig.add_axes([(left + i * (side + gap)) / FIG_W, bottom / H, side / FIG_W, side / H])
        im = ax.imshow(m.numpy(), cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks(range(10), [str(k) for k in range(10)], fontsize=FONT)
        ax.set_yticks(range(10), [str(k) for k in range(10)], fontsize=FONT)
        ax.tick_params(length=2, pad=1.5)
        ax.set_title(title, fontsize=FONT + 1, pad=4)
        ax.set_ylabel(row_names[i], fontsize=FONT)
        ax.set_xlabel(col_names[i], fontsize=FONT)
        for a in range(10):
            for b in range(10):
                v = float(m[a, b])
                if not math.isnan(v):
                    ax.text(b, a, cell_label(v), ha="center", va="center", fontsize=MIN_PT,
                            color="white" if v < 0.55 else "black")
        for cells, style in marks[i]:
            for a, b in cells:
                ax.add_patch(Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, lw=1.2, **MARK_STYLES[style]))
    x_bar = left + len(mats) * (side + gap) - gap + 0.15
    cb = fig.colorbar(im, cax=fig.add_axes([x_bar / FIG_W, bottom / H, 0.12 / FIG_W, side / H]))
    cb.ax.tick_params(labelsize=FONT)
    cb.set_label(f"success rate over {seeds} seed{'s' if seeds != 1 else ''} per pair", fontsize=FONT)
    handles = [Patch(facecolor="#c8c8c8", label="a = b: trivial, not run")]
    handles += [Patch(facecolor="none", label=text, **MARK_STYLES[j]) for j, text in enumerate(mark_labels)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=FONT, frameon=False,
               bbox_to_anchor=(0.5, 0.0), handlelength=1.6, columnspacing=1.2)
    return save(fig, fig_dir, name)


def cell_label(v: float) -> str:
    """A rate as a short cell label: 1, 0, .5, .33."""
    return "1" if v == 1 else "0" if v == 0 else f"{v:.2f}".lstrip("0").rstrip("0")


def loss_figure(losses: Sequence[float], steps_per_epoch: int, path: str, title: str, ylabel: str,
                size: tuple = (5.2, 3.0)) -> str:
    """Loss per step (light) and its running mean over one epoch (dark), log scale, epochs marked;
    size in inches (the report prints it FIG_W wide)."""
    loss = torch.tensor(losses, dtype=torch.float64)
    k = max(1, min(20, steps_per_epoch, len(loss) // 5))
    smooth = loss.unfold(0, k, 1).mean(1) if len(loss) >= k else loss
    fig, ax = plt.subplots(figsize=size, dpi=150)
    ax.plot(range(1, len(loss) + 1), loss, color="#56B4E9", lw=0.7, alpha=0.8, label="per step")
    ax.plot(range(k, len(loss) + 1), smooth, color="#0072B2", lw=1.6, label=f"mean of the last {k} steps")
    for e in range(steps_per_epoch, len(loss), steps_per_epoch):
        ax.axvline(e + 0.5, color="0.85", lw=0.6, zorder=0)
    ax.set_yscale("log")
    ax.set_xlabel("training step (grey lines: epoch ends)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: savefig(fig, path, tmp))
    finally:
        plt.close(fig)
    return path
