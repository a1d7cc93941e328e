"""What the pages of problems 1-4 share: their settings, the models they need, the style and the drawing helpers.

    cfg = Settings(problems=("2",), n=5000)          # visualize.py's command line, one field per flag
    cfg.needed_runs()                                # {5: (5, {}), ..., "no-ema": (50, {"ema_decay": 0.0})}
    page = two_pixel.problem2.page(cfg, models)      # models: {key: runio Loaded} as visualize.py loads them

Time runs t = 0 (clean) .. T (pure noise) as in utils.py; a trajectory is (S, 2), from x_T to x_0. The
pixels of a sample are (left, right), about in [-1.5, 1.5]. Figures are report.pages.FIG_W wide with fonts
of 7 pt or more (STYLE), in Okabe & Ito's colours, which stay apart for colour-blind readers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from matplotlib import colors, patheffects, ticker
from tqdm.auto import tqdm

from gmm import GMM, Grid, hdr_levels

from .trainer import run_folder

LIM = (-2.0, 2.0)  # problem 2: holds the data and ~91 % of the pure-noise x_T
_G = GMM()
ZOOM = (float(_G.means.min() - 6.5 * _G.std), float(_G.means.max() + 6.5 * _G.std))  # both peaks +-6.5 sigma
PROBLEM2_T = 50
PROBLEM2_TIMES = (50, 40, 30, 20, 10)  # shown in the order the reverse chain visits them
PROBLEM3_TS = (5, 10, 25, 50)
GUIDANCE_WS = (0.0, 0.5, 1.0, 2.0, 4.0)
DEMO_START = 1.0  # the highlighted chain is the first whose x_T has both pixels within +-DEMO_START
COMMITTED = 0.9  # a chain has committed to its peak from the last t on which q(peak | x_t) stays >= this
# problem 1: each variant undoes one departure from the handout (train.py flags), at T = 50
VARIANTS = {"handout-unet": {"arch": "handout"}, "p-uncond-0.1": {"p_uncond": 0.1}, "no-ema": {"ema_decay": 0.0}}
# the flow report's models beside problem 2's T = 50 DDPM (DDPM's seed 0): flow matching and 4 more seeds of each
FLOW_SEEDS = range(5)
FLOW_RUNS = {"flow": {"objective": "flow"}, **{f"seed{s}": {"seed": s} for s in FLOW_SEEDS if s},
             **{f"flow-seed{s}": {"objective": "flow", "seed": s} for s in FLOW_SEEDS if s}}

ORANGE, BLUE, VERMILLION = "#E69F00", "#0072B2", "#D55E00"  # Okabe & Ito (2008)
CLASS_COLOURS, CLASS_LINES, CLASS_MARKERS = (BLUE, VERMILLION), ("-", "--"), ("o", "s")  # y = 0, y = 1
UNCOND_COLOUR = ORANGE
STYLE = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5,
         "legend.fontsize": 7.5, "figure.titlesize": 9, "savefig.dpi": 200}  # >= 7 pt, printed at FIG_W
NOTE_PT = 7.5  # in-panel annotations


# ================================================================ settings
@dataclass
class Settings:
    """What a run of visualize.py needs: its command line is built from these fields (in this order), and
    every page builder reads them. `problems` and `every_page` follow from --problem."""

    problems: tuple = ()  # of "2", "3", "4", "5", "flow", "cs180-a", "cs180-b1", "cs180-b2"
    every_page: bool = False  # --problem all: the report also gets the pages of problems 1 and 5
    report: Optional[str] = None
    site: Optional[str] = None  # a folder: the same pages as a website (report.site)
    out: str = "figures"
    runs: str = "runs"
    n: int = 5000
    density: str = "kde"
    grid: int = 150
    seed: int = 0
    ts: tuple = PROBLEM3_TS
    ws: tuple = GUIDANCE_WS
    traj_w: float = 1.0
    train_steps: Optional[int] = None
    jobs: int = 0
    device: str = "auto"
    threads: int = 1
    quiet: bool = False
    retrain: bool = False  # problem 5: train the MNIST model from scratch instead of using the shipped one

    def needed_runs(self) -> dict:
        """{key: (T, train.py settings)} of the models needed: the default model by T, problem 1's VARIANTS by name."""
        page1, flow = bool((self.report or self.site) and self.every_page), "flow" in self.problems
        ts = {PROBLEM2_T} if {"2", "4"} & set(self.problems) or page1 or flow else set()
        ts |= set(self.ts) if "3" in self.problems else set()
        return {**{T: (T, {}) for T in sorted(ts)}, **({k: (PROBLEM2_T, f) for k, f in VARIANTS.items()} if page1 else {}),
                **({k: (PROBLEM2_T, f) for k, f in FLOW_RUNS.items()} if flow else {})}


def progress(iterable, cfg: Settings, **kw):
    return tqdm(iterable, disable=cfg.quiet, leave=False, dynamic_ncols=True, **kw)


def model_path(runs: str, key) -> str:
    """<runs>/T<T>/model.pt, or <runs>/T50-<variant>/model.pt for a problem 1 variant."""
    folder = run_folder(key, runs) if isinstance(key, int) else os.path.join(runs, f"T{PROBLEM2_T}-{key}")
    return os.path.join(folder, "model.pt")


def exact_predictor(schedule):
    return GMM().noise_predictor(schedule)


# ================================================================ plotting
def style_axes(ax, left_label: bool = True, bottom_label: bool = True, lim=LIM):
    ax.set(xlim=lim, ylim=lim, aspect="equal", xlabel="left pixel" if bottom_label else "",
           ylabel="right pixel" if left_label else "")
    ax.tick_params(labelbottom=bottom_label, labelleft=left_label)
    for axis in (ax.xaxis, ax.yaxis):  # no tick label at the edges, where neighbouring panels' labels meet
        axis.set_major_locator(ticker.MaxNLocator(4, steps=[1, 2, 5, 10], prune="both"))


def window(path: np.ndarray, lim=LIM, pad: float = 0.25) -> tuple:
    """A square plotting window (lo, hi): lim, widened to hold every point of `path` (S, 2) with `pad` to spare."""
    return (min(lim[0], float(path.min()) - pad), max(lim[1], float(path.max()) + pad))


def grid_lim(grid: Grid) -> tuple:
    """The window a grid covers, (lo, hi) on both axes."""
    return (float(grid.edges[0]), float(grid.edges[-1]))


def extent(grid: Grid) -> tuple:
    return (grid.edges[0], grid.edges[-1]) * 2


def show_truth(ax, q: np.ndarray, grid: Grid, lines: str = "#333333"):
    """Ground-truth density as a grey fill (its peak at ~65 % grey, so points still show on it), with
    the regions holding 50 / 90 / 99 % of its mass as thin lines drawn over the points."""
    ax.imshow(q, origin="lower", extent=extent(grid), cmap="Greys", vmin=0, vmax=1.5 * q.max(), interpolation="bilinear")
    ax.contour(grid.centers, grid.centers, q, levels=hdr_levels(q, grid), colors=lines, linewidths=0.6, zorder=3)


def show_estimate(ax, est: np.ndarray, q: np.ndarray, grid: Grid):
    """Estimated density (viridis, relative to the true peak, square-root scale so that thin spread-out
    mass still shows) with the truth's HDR contours in white."""
    norm = colors.PowerNorm(gamma=0.5, vmin=0, vmax=1)
    im = ax.imshow(est / q.max(), origin="lower", extent=extent(grid), cmap="viridis", norm=norm,
                   interpolation="bilinear")
    ax.contour(grid.centers, grid.centers, q, levels=hdr_levels(q, grid), colors="white", linewidths=0.7)
    return im


def corner_text(ax, text: str, loc: str = "lower left"):
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.03, "bottom") if "lower" in loc else (0.97, "top")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=NOTE_PT,
            bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="none", alpha=0.85), zorder=6)


def draw_path(ax, path: np.ndarray, colour: str, label: Optional[str] = None, ls: str = "-", marker: str = "o",
              ms: float = 2.2):
    """A trajectory (S, 2) from x_T (star) to its last state (large marker), outlined for contrast."""
    outline = [patheffects.withStroke(linewidth=3, foreground="white")]
    ax.plot(path[:, 0], path[:, 1], ls=ls, color=colour, lw=1.4, marker=marker, ms=ms, label=label,
            path_effects=outline, zorder=4)
    ax.plot(*path[0], "*", color="white", ms=12, mec="black", mew=0.9, zorder=6)
    ax.plot(*path[-1], marker, color=colour, ms=7.5, mec="black", mew=0.9, zorder=5)


def committed_from(xs: torch.Tensor, ts: torch.Tensor, peak: torch.Tensor, alpha_bar: torch.Tensor, gmm: GMM):
    """Per chain, the largest t from which on q(peak | x_t) stays >= COMMITTED (0 if it never does).
    xs (S+1, n, 2) states at times ts (descending); peak (n,) the peak each chain is scored against."""
    n = xs.shape[1]
    resp = torch.stack([gmm.posterior(xs[i], alpha_bar[int(t)])[torch.arange(n), peak] for i, t in enumerate(ts)])
    settled = torch.flip(torch.cummin(torch.flip(resp, [0]), 0).values, [0]) >= COMMITTED  # from step i onwards
    return torch.where(settled.any(0), ts[settled.int().argmax(0)], torch.zeros(n, dtype=torch.long))


def percent(v: float) -> str:
    return f"{100 * v:.1f} %"
