"""The report's pages: one `Page` type, the typesetter that lays pages out on A4 and writes the PDF,
and the atomic writers for the figures and numbers behind them.

Every page builder in the package returns `Page`s: problems 1-4 (visualize.py), problem 5
(mnist/problem5.py) and CS180 project 5 (mnist/cs180_report.py, mnist/cs180_partb.py).
visualize.py collects them and calls `write_report`.

A page is a title, a list of PNG paths drawn top to bottom at the page's width, and text blocks:
('text', paragraph), wrapped to the page, or ('table', preformatted lines) in monospace. Text
that does not fit below the images continues on a "(continued)" page.
"""
from __future__ import annotations

import csv
import os
import tempfile
import textwrap
from typing import NamedTuple

import matplotlib
import numpy as np

matplotlib.use("Agg")  # writes files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

PDF_METADATA = {"CreationDate": None, "Creator": "visualize.py"}  # no timestamp: same input, same file


# ============================================================== pages
class Page(NamedTuple):
    """One page of the report: a title, images to show (PNG paths, drawn top to bottom at the page's
    width) and text blocks, each ('text', paragraph) wrapped to the page, or ('table', preformatted
    lines) in monospace."""

    title: str
    images: list
    blocks: list

    @classmethod
    def of_text(cls, title: str, images: list, text: str) -> "Page":
        """A page whose text is paragraphs separated by blank lines."""
        return cls(title, list(images), text_blocks(text))

    @property
    def text(self) -> str:
        """All text blocks, paragraphs separated by blank lines (what a CLI prints)."""
        return "\n\n".join(t for _, t in self.blocks)


def text_blocks(text: str) -> list:
    """Paragraphs separated by blank lines -> [('text', paragraph), ...]."""
    return [("text", p.strip()) for p in str(text).split("\n\n") if p.strip()]


PAGE_W, PAGE_H, MARGIN = 8.27, 11.69, 0.45  # A4, inches
TEXT_PT, TABLE_PT = 8.5, 6.8


def layout_blocks(blocks: list) -> list:
    """Blocks -> [(kind, line)] with paragraphs wrapped to the page width; ('gap', '') between blocks."""
    lines = []
    for kind, text in blocks:
        if kind == "table":
            lines += [("table", line) for line in text.splitlines()]
        else:
            lines += [("text", line) for line in textwrap.wrap(text, 118)]
        lines.append(("gap", ""))
    return lines


def line_height(kind: str) -> float:
    return {"text": TEXT_PT * 1.32, "table": TABLE_PT * 1.3, "gap": 4.0}[kind] / 72


def render_page(page: Page) -> list:
    """A page (or more, if the text does not fit below the images) as matplotlib figures."""
    lines = layout_blocks(page.blocks)
    text_h = sum(line_height(k) for k, _ in lines)
    top = PAGE_H - MARGIN - 0.45  # below the title
    min_img = 4.0 if page.images else 0.0
    room = top - MARGIN - min_img
    first, rest = lines, []
    if text_h > room:  # split the text; the remainder goes on a continuation page
        h, cut = 0.0, 0
        for cut, (k, _) in enumerate(lines):
            h += line_height(k)
            if h > room:
                break
        first, rest = lines[:cut], lines[cut:]
    figs = []
    fig = plt.figure(figsize=(PAGE_W, PAGE_H))
    fig.text(MARGIN / PAGE_W, 1 - MARGIN / PAGE_H, page.title, fontsize=13, weight="bold", va="top")
    used = sum(line_height(k) for k, _ in first)
    if page.images:
        img_top, img_bottom = top, MARGIN + used + 0.15
        imgs = [plt.imread(p) for p in page.images]
        width = PAGE_W - 2 * MARGIN
        heights = [width * im.shape[0] / im.shape[1] for im in imgs]
        scale = min(1.0, (img_top - img_bottom - 0.1 * (len(imgs) - 1)) / sum(heights))
        y = img_top
        for im, h in zip(imgs, heights):
            h *= scale
            ax = fig.add_axes([MARGIN / PAGE_W, (y - h) / PAGE_H, width / PAGE_W, h / PAGE_H])
            ax.imshow(im, interpolation="antialiased")
            ax.axis("off")
            y -= h + 0.1
        text_top = y
    else:
        text_top = top
    draw_lines(fig, first, text_top)
    figs.append(fig)
    if rest:
        figs += render_page(Page(page.title + " (continued)", [], [(k, t) for k, t in rest if k != "gap"]))
    return figs


def draw_lines(fig, lines: list, y_top: float):
    y = y_top
    for kind, line in lines:
        h = line_height(kind)
        if kind == "text":
            fig.text(MARGIN / PAGE_W, y / PAGE_H, line, fontsize=TEXT_PT, va="top")
        elif kind == "table":
            fig.text(MARGIN / PAGE_W, y / PAGE_H, line, fontsize=TABLE_PT, va="top", family="monospace")
        y -= h


def write_report(pages: list, path: str) -> None:
    def write(tmp):
        with PdfPages(tmp, metadata=PDF_METADATA) as pdf:
            for page in pages:
                for fig in render_page(page):
                    pdf.savefig(fig)
                    plt.close(fig)

    atomic_write(path, write)


# ======================================================= atomic outputs
def atomic_write(path: str, write) -> None:
    """Call write(tmp_path) for a temporary file beside `path`, then rename it over `path`:
    a crash never leaves a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    stem, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}-", suffix=ext)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_figure(fig, out_dir: str, name: str) -> str:
    """<name>.png (200 dpi) and <name>.pdf (vector), atomically. Returns the PNG's path."""
    png = os.path.join(out_dir, f"{name}.png")
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=200))
    atomic_write(os.path.join(out_dir, f"{name}.pdf"), lambda tmp: fig.savefig(tmp, format="pdf", metadata=PDF_METADATA))
    plt.close(fig)
    return png


def save_numbers(out_dir: str, name: str, rows: list, **arrays) -> None:
    """The numbers behind a figure: <name>.csv (rows of dicts, one measurement each) and
    <name>.npz (the arrays it was drawn from)."""
    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    def write_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})

    atomic_write(os.path.join(out_dir, f"{name}.csv"), write_csv)
    atomic_write(os.path.join(out_dir, f"{name}.npz"), write_npz)
