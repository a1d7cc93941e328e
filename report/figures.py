"""The files behind the report's pages, each written through runio's one atomic writer: a figure as
PNG + PDF, the numbers it was drawn from as CSV + NPZ, and a trainer's loss curve as CSV + PNG."""
from __future__ import annotations

import csv
import os
from typing import Optional

import numpy as np
import torch
from matplotlib.figure import Figure  # the object API: no pyplot, no global backend, renders with Agg

from runio.files import MARK, replacing_all, savefig, write_all

from .pages import plt


def save_figure(fig, out_dir: str, name: str, rows: Optional[list] = None, **arrays) -> str:
    """A figure and the numbers behind it, written as one set: <name>.png (200 dpi) and <name>.pdf (vector),
    and, when given, <name>.csv (rows of dicts, one measurement each) and <name>.npz (the arrays it was drawn
    from). Every file is signed as this package's, and none replaces a file of the user's. Returns the PNG's
    path."""
    names = [f"{name}.png", f"{name}.pdf"] + ([f"{name}.csv", f"{name}.npz"] if rows is not None else [])
    try:
        with replacing_all([os.path.join(out_dir, n) for n in names], ours_only=True) as tmps:
            savefig(fig, names[0], tmps[0], dpi=200)
            savefig(fig, names[1], tmps[1])
            if rows is not None:
                _write_numbers(tmps[2], tmps[3], rows, arrays)
    finally:
        plt.close(fig)
    return os.path.join(out_dir, names[0])


def save_numbers(out_dir: str, name: str, rows: list, **arrays) -> None:
    """Numbers without a figure: <name>.csv and <name>.npz, as one set (see save_figure)."""
    paths = [os.path.join(out_dir, f"{name}.csv"), os.path.join(out_dir, f"{name}.npz")]
    with replacing_all(paths, ours_only=True) as (csv_tmp, npz_tmp):
        _write_numbers(csv_tmp, npz_tmp, rows, arrays)


def _write_numbers(csv_path: str, npz_path: str, rows: list, arrays: dict) -> None:
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(npz_path, "wb") as f:  # "written_by": the package's signature (runio.files.ours)
        np.savez_compressed(f, written_by=np.array(MARK), **{k: np.asarray(v) for k, v in arrays.items()})


def loss_files(losses: list, stem: str = "loss") -> dict:
    """A trainer's loss curve as {file name: write(path)}: <stem>.csv (step, loss) and <stem>.png, for a set of
    files written together (write_losses, runio.runs.save_set)."""
    def write_csv(path):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss"])
            w.writerows(enumerate(losses, 1))

    def write_png(path):
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
        savefig(fig, path, dpi=120)

    return {f"{stem}.csv": write_csv, f"{stem}.png": write_png}


def write_losses(losses: list, folder: str, stem: str = "loss") -> None:
    """A trainer's loss curve in `folder`, as one set: <stem>.csv and <stem>.png (loss_files)."""
    write_all({os.path.join(folder, f): write for f, write in loss_files(losses, stem).items()})
