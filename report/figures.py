"""The files behind the report's pages, each written through runio's one atomic writer: a figure as
PNG + PDF, the numbers it was drawn from as CSV + NPZ, and a trainer's loss curve as CSV + PNG."""
from __future__ import annotations

import csv
import os

import numpy as np
import torch
from matplotlib.figure import Figure  # the object API: no pyplot, no global backend, renders with Agg

from runio.files import atomic_write, replacing

from .pages import PDF_METADATA, plt


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


def write_losses(losses: list, folder: str, stem: str = "loss") -> None:
    """A trainer's loss curve: folder/<stem>.csv (step, loss) and folder/<stem>.png, each atomically."""
    with replacing(os.path.join(folder, f"{stem}.csv")) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss"])
        w.writerows(enumerate(losses, 1))
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(range(1, len(losses) + 1), losses, lw=0.5, alpha=0.4, label="per step")
    k = max(1, len(losses) // 50)
    if k > 1:
        smooth = torch.tensor(losses).unfold(0, k, 1).mean(1)
        ax.plot(range(k, len(losses) + 1), smooth, label=f"mean of {k}")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax.legend()
    fig.tight_layout()
    with replacing(os.path.join(folder, f"{stem}.png")) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
