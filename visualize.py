"""Figures and the PDF report for the two-pixel DDPM homework (handout section 4).

    python visualize.py --problem 2          # trajectory over p_theta(x_t | t), t = 50..10, T = 50
    python visualize.py --problem 3          # 4 x 2 figure: T = 5, 10, 25, 50 against the truth
    python visualize.py --problem 4          # y = 0 / y = 1 from one x_T, and a guidance sweep
    python visualize.py --problem 5          # MNIST samples and a trajectory, from the shipped model
    python visualize.py --problem all --report report.pdf    # every figure, then a page per problem
    python visualize.py --problem cs180 --report cs180.pdf   # CS180 project 5 on MNIST (cs180-a, -b1, -b2)

Models come from <runs>/T<T>/model.pt, trained with train.py's defaults when missing; problem 1 adds
three T = 50 variants, each undoing one departure from the handout (<runs>/T50-<variant>/). Each figure
is a PNG and a PDF under --out, beside <name>.csv (the numbers) and <name>.npz (the arrays drawn); the
same --seed gives the same numbers. Each page opens with the plain answers, then the figures, then the
evidence; figures are report.pages.FIG_W wide with fonts of 7 pt or more, so they print at their own
sizes. --density kde: an isotropic Gaussian kernel, cross-validated bandwidth (scipy's gaussian_kde
follows the whole cloud's covariance: a needle along the peaks' diagonal); hist: a 2-D histogram.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

import matplotlib

matplotlib.use("Agg")  # a script that writes files; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import patheffects
from tqdm.auto import tqdm

from gmm import (GMM, Grid, estimate_density, hdr_levels, l1_distance, make_grid, peak_stats, push_past_peak,
                 sample_q_t, sample_quality, true_density)
from mnist import cs180_partb, cs180_report, denoiser, timecond
from mnist import problem5 as mnist_problem5
from report.figures import save_figure, save_numbers
from report.pages import FIG_W, Page, write_report
from train import train_models
from runio.cli import Parser, positive_int, resolve_device
from runio.errors import CheckpointError
from two_pixel.trainer import TrainConfig, checkpoint_config, load_checkpoint, run_folder
from utils import SamplerSettings, sample

CS180_PARTS = ("cs180-a", "cs180-b1", "cs180-b2")
PROBLEMS = ("2", "3", "4", "5", "cs180", *CS180_PARTS, "all")
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

ORANGE, BLUE, VERMILLION = "#E69F00", "#0072B2", "#D55E00"  # Okabe & Ito (2008)
CLASS_COLOURS, CLASS_LINES, CLASS_MARKERS = (BLUE, VERMILLION), ("-", "--"), ("o", "s")  # y = 0, y = 1
UNCOND_COLOUR = ORANGE
STYLE = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5,
         "legend.fontsize": 7.5, "figure.titlesize": 9, "savefig.dpi": 200}  # >= 7 pt, printed at FIG_W
NOTE_PT = 7.5  # in-panel annotations


class UserError(Exception):
    """A problem the user can fix (bad checkpoint, unwritable folder): reported in one line, exit 2."""


# ================================================================ plotting
def style_axes(ax, left_label: bool = True, bottom_label: bool = True, lim=LIM):
    ax.set(xlim=lim, ylim=lim, aspect="equal", xlabel="left pixel" if bottom_label else "",
           ylabel="right pixel" if left_label else "")
    ax.tick_params(labelbottom=bottom_label, labelleft=left_label)
    for axis in (ax.xaxis, ax.yaxis):  # no tick label at the edges, where neighbouring panels' labels meet
        axis.set_major_locator(matplotlib.ticker.MaxNLocator(4, steps=[1, 2, 5, 10], prune="both"))


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
    norm = matplotlib.colors.PowerNorm(gamma=0.5, vmin=0, vmax=1)
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


# ================================================================ settings
@dataclass
class Settings:
    """What a run needs (mirrors the CLI)."""

    problems: tuple  # of "2", "3", "4", "5"
    every_page: bool = False  # --problem all: the report also gets the pages of problems 1 and 5
    n: int = 5000
    grid: int = 150
    density: str = "kde"
    seed: int = 0
    runs: str = "runs"
    out: str = "figures"
    report: Optional[str] = None
    train_steps: Optional[int] = None
    jobs: int = 0
    ts: tuple = PROBLEM3_TS
    ws: tuple = GUIDANCE_WS
    traj_w: float = 1.0
    device: str = "auto"
    threads: int = 1
    quiet: bool = False
    retrain: bool = False  # problem 5: train the MNIST model from scratch instead of using the shipped one

    def needed_runs(self) -> dict:
        """{key: (T, train.py settings)} of the models needed: the default model by T, problem 1's VARIANTS by name."""
        page1 = bool(self.report and self.every_page)
        ts = {PROBLEM2_T} if {"2", "4"} & set(self.problems) or page1 else set()
        ts |= set(self.ts) if "3" in self.problems else set()
        return {**{T: (T, {}) for T in sorted(ts)}, **({k: (PROBLEM2_T, f) for k, f in VARIANTS.items()} if page1 else {})}


def progress(iterable, cfg: Settings, **kw):
    return tqdm(iterable, disable=cfg.quiet, leave=False, dynamic_ncols=True, **kw)


def model_path(runs: str, key) -> str:
    """<runs>/T<T>/model.pt, or <runs>/T50-<variant>/model.pt for a problem 1 variant."""
    folder = run_folder(key, runs) if isinstance(key, int) else os.path.join(runs, f"T{PROBLEM2_T}-{key}")
    return os.path.join(folder, "model.pt")


def exact_predictor(schedule):
    return GMM().noise_predictor(schedule)


# ================================================================ problem 1
def problem1(cfg: Settings, models: dict) -> Page:
    """Each departure from the handout undone alone and measured; the obstacles; the README; loss curves."""
    gmm, device = GMM(), resolve_device(cfg.device)
    model, schedule, *_ = models[PROBLEM2_T]
    ref, _ = gmm.sample(cfg.n, torch.Generator().manual_seed(cfg.seed + 10_000))
    runs = [("default (this report)", PROBLEM2_T, None), ("handout UNet", "handout-unet", None),
            ("handout UNet, x0_hat not clipped", "handout-unet", "off"), ("label dropout 0.1", "p-uncond-0.1", None),
            ("no EMA (last weights)", "no-ema", None), ("x0_hat not clipped", PROBLEM2_T, "off"),
            ("exact noise predictor", None, None)]
    rows = []
    for name, key, clip in progress(runs, cfg, desc="problem 1: departures"):
        pred = exact_predictor(schedule) if key is None else models[key][0].to(device)
        # the same x_T and step noise for every model; no label (the null-label model)
        how = SamplerSettings(clip_x0=None if clip else "schedule")
        x = sample(pred, schedule, cfg.n, None, how, torch.Generator().manual_seed(cfg.seed), device=device).cpu()
        steps = checkpoint_config(model_path(cfg.runs, key)).steps if key is not None else 0
        rows.append(dict(model=name, train_steps=steps, **sample_quality(x, ref, gmm)._asdict()))
    for r in rows:
        r["energy_vs_exact"] = r["energy_distance"] / rows[-1]["energy_distance"]
    save_numbers(cfg.out, "problem1_departures", rows)
    c1 = model.tconv1.in_channels  # decoder 2's input: [decoder 1, encoder 1] features of length 1
    k1_out = torch.nn.ConvTranspose1d(c1, 1, kernel_size=1)(torch.zeros(1, c1, 1)).shape[-1]
    c = checkpoint_config(model_path(cfg.runs, PROBLEM2_T))
    return Page("Problem 1: implementation, changes, obstacles, README", [problem1_loss(cfg)],
                problem1_blocks(cfg, c, schedule, rows, k1_out))


def problem1_loss(cfg: Settings) -> str:
    """Training loss of the default T = 50 model and of the handout's UNet."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(FIG_W, 2.0))
        for key, colour, ls, label in ((PROBLEM2_T, BLUE, "-", "default (no GroupNorm)"),
                                       ("handout-unet", VERMILLION, "--", "the handout's UNet (GroupNorm)")):
            path = os.path.join(os.path.dirname(model_path(cfg.runs, key)), "loss.csv")
            if not os.path.exists(path):  # train.py writes it beside the model
                continue
            data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
            k = max(1, len(data) // 50)
            ax.plot(data[k - 1:, 0], np.convolve(data[:, 1], np.ones(k) / k, mode="valid"), ls, color=colour, lw=1.4,
                    label=f"{label}, mean of {k} steps")
        ax.set(xlabel="optimiser step", ylabel="L2 loss on eps", yscale="log", title=f"Training loss, T = {PROBLEM2_T}")
        ax.legend(frameon=False)
        fig.tight_layout(pad=0.4)
        return save_figure(fig, cfg.out, "problem1_loss")


def problem1_blocks(cfg: Settings, c: TrainConfig, schedule, rows: list, k1_out: int) -> list:
    d, h, hc, p, e, nc, _ = rows
    sq = float(schedule.alpha_bar[schedule.T].sqrt())
    vs = lambda a: f"{percent(a['within_5sigma'])}, {a['energy_vs_exact']:.2f}x"
    same = abs(nc["within_5sigma"] - d["within_5sigma"]) < 0.005 and abs(nc["energy_vs_exact"] - d["energy_vs_exact"]) < 0.25
    changes = (
        f"Changes from the handout: five, each undone alone in the table below (the default gives {vs(d)}: the "
        "share of samples within 5 sigma of a peak, and the energy distance as a multiple of the exact predictor's). "
        f"(1) No GroupNorm: the handout's UNet, one flag away (python train.py --arch handout), gives {vs(h)}. "
        f"(2) Decoder 2 has kernel size 2, not 1: on the length-1 features, kernel 1 outputs {k1_out} value, not "
        f"2 pixels. (3) Label dropout {c.p_uncond:g}, not 0.1 (unconditional samples come from the null label): "
        f"0.1 gives {vs(p)}. (4) x0_hat clipped to +-{c.clip_x0:g}: "
        + ("no measurable effect on the default network" if same else f"without it the default gives {vs(nc)}")
        + f", but without it the handout's UNet gives {vs(hc)}. (5) Sampling uses an EMA of the weights (decay "
          f"{c.ema_decay:g}); the last weights give {vs(e)}.")
    obstacles = (
        "Obstacles: (a) the handout's UNet missed the sample-quality targets: its GroupNorms act on one pixel's "
        "features, and GroupNorm(32) over 64 channels reduces pairs of numbers to about +-1; removed (1). (b) Far "
        f"strays from the first reverse step: sqrt(alpha_bar_T) = {sq:.2g}, so x0_hat multiplies an eps error by "
        f"{1 / sq:.0f}; clipped (4). (c) Weak unconditional samples: more label dropout (3). (d) Kernel 1 cannot "
        "output two pixels (2). (e) Two torch threads on two shared cores ran far slower than one (the threads spin "
        "waiting for a core): one thread per process, models trained in parallel processes, embeddings computed "
        "once per distinct (t, y). (f) scipy's gaussian_kde smeared each peak toward the other: an isotropic "
        "kernel with a cross-validated bandwidth, whose own error problem 2 measures.")
    readme = (
        "README: pip install -r requirements.txt, then python train.py --T 50 (also 5, 10, 25; --arch handout for "
        "the handout's UNet) trains runs/T50/; python visualize.py --problem all --report report.pdf makes every "
        "figure under figures/ and this PDF, training missing models first (--problem 2, 3, 4 or 5 for one). "
        "MNIST: python -m mnist.train trains runs/mnist/model.pt; python -m mnist.sample --digits 0-9 --per-digit "
        "10 draws a grid; python visualize.py --problem 5 builds page 5 from the shipped model. Tests: python -m "
        "pytest -q -m 'not slow'.")
    table = [f"{'model (one change from the default)':33} majority  within 5 sigma  std ratio 0/1  energy  x exact  steps"]
    table += [f"{a['model']:33} {a['majority_weight']:8.3f}  {a['within_5sigma']:14.4f}  {a['std_ratio_0']:6.2f} /"
              f"{a['std_ratio_1']:5.2f}  {a['energy_distance']:.4f}  {a['energy_vs_exact']:7.2f}  {a['train_steps'] or '-':>5}"
              for a in rows]
    unfair = len({a["train_steps"] for a in rows if a["train_steps"]}) > 1
    return [("answer", changes), ("answer", obstacles), ("answer", readme), ("text", (
        f"Measured in this run ({cfg.n} samples, no label, the same x_T and noise for every model; "
        "problem1_departures.csv). Truth: majority 0.65, within 5 sigma about 1, std ratio 1; 'energy' is the energy "
        "distance to fresh mixture draws, 'x exact' divides it by the exact noise predictor's under the same sampler "
        f"and T = {schedule.T}, which is what the steps alone cost."
        + (" NOTE: these models had different numbers of training steps." if unfair else ""))),
        ("table", "\n".join(table)), ("text", (
            f"Implementation (from the checkpoint): t = 0 (clean) .. T (noise); {c.schedule} betas, reverse variance "
            f"{'beta_tilde_t' if c.variance == 'posterior' else 'beta_t'}; the ancestral step in x0 form (eps -> "
            f"x0_hat -> clip -> posterior mean -> + sigma_t z, none at t = 1); {c.loss} loss on eps; {c.n_train} "
            f"training draws; Adam lr {c.lr:g}, cosine decay, batch {c.batch_size}, {c.steps} steps. The exact noise "
            "predictor of gmm.py is the oracle of problems 3-4 and the tests; the sampler is checked against "
            "diffusers' DDPMScheduler."))]


# ================================================================ problem 2
def problem2(cfg: Settings, models: dict) -> Page:
    """A trajectory over p_theta(x_t | t) at t = 50, 40, ..., 10, estimated from cfg.n chains."""
    model, schedule, *_ = models[PROBLEM2_T]
    gmm, grid = GMM(), make_grid(cfg.grid)
    device = resolve_device(cfg.device)
    _, traj = sample(model.to(device), schedule, cfg.n, generator=torch.Generator().manual_seed(cfg.seed),
                     trajectory=True, device=device, progress=not cfg.quiet)
    xs = traj.x.cpu()  # (T+1, n, 2), xs[i] at time traj.t[i] = T - i
    # the highlighted chain: the first whose start lies in the middle of the square
    inside = (xs[0].abs() < DEMO_START).all(1).nonzero()
    k = int(inside[0]) if len(inside) else 0
    path = xs[:, k].numpy()  # (T+1, 2) from x_T to x_0
    ab = schedule.alpha_bar.cpu()
    commit_t = committed_from(xs, traj.t, gmm.posterior(xs[-1], 1.0).argmax(1), ab, gmm)

    rows, est_all, q_all, xt_all = [], [], [], []
    ref_gen = torch.Generator().manual_seed(cfg.seed + 20_000)
    for t in progress(PROBLEM2_TIMES, cfg, desc="problem 2: densities"):
        a = float(ab[t])
        x_t = traj.at(t).cpu()
        q = true_density(grid, a, gmm)
        est = estimate_density(x_t.numpy(), grid, cfg.density)
        # the estimator's own error: the same estimator on cfg.n exact draws of q(x_t)
        x_ref = sample_q_t(gmm, cfg.n, a, ref_gen)
        floor = estimate_density(x_ref.numpy(), grid, cfg.density)
        peaks = math.sqrt(a) * gmm.means  # where the two lumps of q(x_t) sit
        major = int(gmm.weights.argmax())
        share = lambda x: float((torch.cdist(x.double(), peaks).argmin(1) == major).double().mean())
        rows.append(dict(t=t, alpha_bar=a, l1=l1_distance(est.density, q, grid),
                         l1_floor=l1_distance(floor.density, q, grid), bandwidth=est.bandwidth,
                         majority_share=share(x_t), majority_share_exact=share(x_ref),
                         std=float(x_t.std(0).mean()), std_exact=float(x_ref.std(0).mean()),
                         chains_committed=float((commit_t >= t).double().mean())))
        est_all.append(est.density)
        q_all.append(q)
        xt_all.append(x_t.numpy())
    end = sample_quality(xs[-1], gmm.sample(cfg.n, torch.Generator().manual_seed(cfg.seed + 10_000))[0], gmm)._asdict()

    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(FIG_W, 5.0))
        gs = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 0.05], wspace=0.1, hspace=0.22, left=0.075, right=0.9,
                              top=0.94, bottom=0.08)
        axes = [fig.add_subplot(gs[i // 3, i % 3]) for i in range(6)]
        for i, (t, row) in enumerate(zip(PROBLEM2_TIMES, rows)):
            im = show_estimate(axes[i], est_all[i], q_all[i], grid)
            draw_path(axes[i], path[: PROBLEM2_T - t + 1], UNCOND_COLOUR)
            axes[i].set_title(f"t = {t}: $p_\\theta(x_t)$ over $q(x_t)$")
            corner_text(axes[i], f"L1 {row['l1']:.2f}\nfloor {row['l1_floor']:.2f}")
            style_axes(axes[i], left_label=i % 3 == 0, bottom_label=i >= 3)
        show_truth(axes[5], true_density(grid, 1.0, gmm), grid)
        draw_path(axes[5], path, UNCOND_COLOUR)
        axes[5].set_title("t = 0: ground truth $q(x_0)$")
        style_axes(axes[5], left_label=False, bottom_label=True)
        fig.colorbar(im, cax=fig.add_subplot(gs[:, 3])).set_label("density / peak of true $q(x_t)$ (square-root scale)")
        png = save_figure(fig, cfg.out, "problem2")
    save_numbers(cfg.out, "problem2", rows, grid=grid.centers, t=np.array(PROBLEM2_TIMES),
                 estimate=np.stack(est_all), truth=np.stack(q_all), x_t=np.stack(xt_all),
                 trajectory=path, trajectory_t=traj.t.numpy(), trajectory_index=k, commit_t=commit_t.numpy(),
                 x0=xs[-1].numpy())
    first_jump = float((xs[1] - xs[0]).norm(dim=1).mean())  # mean |x_{T-1} - x_T| over the chains
    return Page("Problem 2: a denoising trajectory over the estimated p_theta(x_t | t), T = 50", [png],
                problem2_blocks(cfg, rows, path, int(commit_t[k]), commit_t, end, gmm, first_jump))


def problem2_blocks(cfg, rows, path, k_commit, commit_t, end, gmm, first_jump) -> list:
    r50, r10 = rows[0], rows[-1]
    off = [r for r in rows if r["l1"] - r["l1_floor"] > 0.05]  # beyond the estimator's own error
    end_peak = int(gmm.posterior(torch.as_tensor(path[-1:]), 1.0).argmax())
    half, most = (int(torch.quantile(commit_t.double(), q).round()) for q in (0.5, 0.1))
    answer = (
        f"What we observe: at t = {r50['t']} the estimated density is one round blob as wide as pure noise (std "
        f"{r50['std']:.2f} per pixel; exact q(x_t): {r50['std_exact']:.2f}). Going down to t = {r10['t']} it "
        f"contracts and splits into two lumps that move toward the two peaks, the larger holding "
        f"{r10['majority_share']:.2f} of the chains (exact {r10['majority_share_exact']:.2f}). The learned density "
        + ("matches the true q(x_t) to within the estimator's own error at every t shown" if not off else
           "is off by more than the estimator's own error at t = " + ", ".join(
               f"{r['t']} (L1 {r['l1']:.2f}, floor {r['l1_floor']:.2f})" for r in off))
        + f". The highlighted chain makes a large first step (x_T says little about where a chain ends: the first "
          f"step moves chains by {first_jump:.2f} on average), then drifts and commits to peak {end_peak} only at "
          f"t = {k_commit}; half of all {cfg.n} chains have committed to their final peak by t = {half}, 90 % by "
          f"t = {most}.")
    return [("answer", answer), ("text", (
        f"Figure: the density of x_t over all chains (viridis), the true q(x_t) of gmm.py (white: its 50 / 90 / 99 % "
        f"regions) and one chain's path up to t (star: x_T; the first chain with both pixels of x_T within "
        f"+-{DEMO_START:g}). L1 = integral of |p_theta - q|; floor = the same estimator's L1 on as many exact draws "
        f"of q(x_t). A chain commits at the last t from which q(its final peak | x_t) stays >= {COMMITTED:g}. At "
        f"t = 0: majority peak {end['majority_weight']:.3f} (truth {float(gmm.weights.max()):.3f}), "
        f"{percent(end['within_5sigma'])} within 5 sigma of a peak, peak widths {end['std_ratio_0']:.2f} / "
        f"{end['std_ratio_1']:.2f} of the truth, energy distance {end['energy_distance']:.4f}. Numbers: problem2.csv. "
        f"Reproduce: python visualize.py --problem 2 --n {cfg.n} --density {cfg.density} --seed {cfg.seed}."))]


# ================================================================ problem 3
def problem3(cfg: Settings, models: dict) -> Page:
    """Samples of the T = 5, 10, 25, 50 models against the truth and against the exact predictor."""
    gmm, grid = GMM(), make_grid(cfg.grid, ZOOM)  # the window where the samples' mass is
    device = resolve_device(cfg.device)
    ref, _ = gmm.sample(cfg.n, torch.Generator().manual_seed(cfg.seed + 10_000))
    q0 = true_density(grid, 1.0, gmm)
    rows, samples, exact_samples, dens = [], [], [], []
    for T in progress(cfg.ts, cfg, desc="problem 3: T"):
        model, schedule, *_ = models[T]
        out = {}
        for name, pred in (("network", model.to(device)), ("exact", exact_predictor(schedule))):
            # the same seed: both predictors start from the same x_T and see the same step noise
            x = sample(pred, schedule, cfg.n, generator=torch.Generator().manual_seed(cfg.seed), device=device).cpu()
            out[name] = x
            est = estimate_density(x.numpy(), grid, cfg.density)
            outside = float(((x < ZOOM[0]) | (x > ZOOM[1])).any(1).double().mean())
            rows.append(dict(T=T, predictor=name, **sample_quality(x, ref, gmm)._asdict(),
                             l1_in_window=l1_distance(est.density, q0, grid), outside_window=outside))
            if name == "network":
                dens.append(est.density)
        samples.append(out["network"].numpy())
        exact_samples.append(out["exact"].numpy())
    truth = sample_quality(ref, gmm.sample(cfg.n, torch.Generator().manual_seed(cfg.seed + 30_000))[0], gmm)._asdict()
    # distance of each sample to the nearest peak, in sigma: its width and its strays in one curve
    dist = lambda x: (torch.cdist(torch.as_tensor(x).double(), gmm.means).min(1).values / gmm.std).numpy()
    bins = np.linspace(0, 10, 41)

    with plt.rc_context(STYLE):
        nT = len(cfg.ts)
        fig = plt.figure(figsize=(FIG_W, 2.02 * nT + 0.55))
        gs = fig.add_gridspec(nT, 5, width_ratios=[1, 1, 0.035, 0.45, 1.0], wspace=0.08, hspace=0.16, left=0.075,
                              right=0.985, top=1 - 0.3 / fig.get_figheight(), bottom=0.42 / fig.get_figheight())
        for i, T in enumerate(cfg.ts):
            net, ex = rows[2 * i], rows[2 * i + 1]
            last = i == nT - 1
            ax = fig.add_subplot(gs[i, 0])
            show_truth(ax, q0, grid)
            ax.scatter(samples[i][:, 0], samples[i][:, 1], s=1.2, lw=0, color=UNCOND_COLOUR, alpha=0.4, rasterized=True)
            ax.set_title(f"T = {T}: samples over $q(x_0)$", pad=3)
            if net["outside_window"] > 0:
                corner_text(ax, f"{percent(net['outside_window'])} outside", "upper right")
            style_axes(ax, left_label=True, bottom_label=last, lim=ZOOM)
            ax = fig.add_subplot(gs[i, 1])
            im = show_estimate(ax, dens[i], q0, grid)
            ax.set_title(f"T = {T}: their estimated density", pad=3)
            style_axes(ax, left_label=False, bottom_label=last, lim=ZOOM)
            ax = fig.add_subplot(gs[i, 4])
            r = np.linspace(0, 10, 400)
            ax.fill_between(r, r * np.exp(-r ** 2 / 2), color="#bbbbbb", label="truth")
            for x, colour, ls, label in ((samples[i], UNCOND_COLOUR, "-", "network"), (exact_samples[i], "black", "--", "exact eps")):
                ax.hist(np.minimum(dist(x), 9.99), bins=bins, density=True, histtype="step", color=colour, ls=ls,
                        lw=1.3, label=label)
            ax.set(yscale="log", ylim=(1e-3, 1.5), xlim=(0, 10), ylabel="density")
            ax.axvline(5, color="#666666", lw=0.6, ls=":")
            corner_text(ax, f"within 5 sigma: {percent(net['within_5sigma'])}\nexact eps: {percent(ex['within_5sigma'])}",
                        "upper right")
            ax.set_title(f"T = {T}: distance to a peak", pad=3)
            ax.set_xlabel("distance to the nearest peak / sigma" if last else "")
            ax.tick_params(labelbottom=last)
            if i == 0:
                ax.legend(loc="lower left", frameon=False)
        fig.colorbar(im, cax=fig.add_subplot(gs[:, 2])).set_label("estimated density / true peak (square-root scale)")
        png = save_figure(fig, cfg.out, "problem3")
    save_numbers(cfg.out, "problem3", rows, T=np.array(cfg.ts), grid=grid.centers, samples=np.stack(samples),
                 exact_samples=np.stack(exact_samples), estimate=np.stack(dens), truth=q0)
    return Page(f"Problem 3: T = {', '.join(map(str, cfg.ts))}", [png], problem3_blocks(cfg, rows, truth))


def problem3_blocks(cfg: Settings, rows: list, truth: dict) -> list:
    net = {r["T"]: r for r in rows if r["predictor"] == "network"}
    ex = {r["T"]: r for r in rows if r["predictor"] == "exact"}
    ts = list(cfg.ts)
    lo, hi = ts[0], ts[-1]
    maj = [net[T]["majority_weight"] for T in ts]
    modes = ("Every model keeps both modes with close to the true weights" if all(abs(m - 0.65) <= 0.05 for m in maj)
             else "The mode weights are off by more than 0.05 at T = " + ", ".join(
                 str(T) for T, m in zip(ts, maj) if abs(m - 0.65) > 0.05))
    width = lambda a: f"{a['std_ratio_0']:.2f} / {a['std_ratio_1']:.2f}"
    gaps = {T: net[T]["energy_distance"] - ex[T]["energy_distance"] for T in ts}
    tol = max(5 * truth["energy_distance"], 2e-4)  # 5x the distance between two sets of true draws
    worse = [T for T in ts if gaps[T] > tol]
    tight = next((T for T in ts if net[T]["within_5sigma"] >= 0.99), None)
    answer = (
        f"What we observe in the final distribution: {modes} (majority peak " + ", ".join(f"{m:.2f}" for m in maj)
        + f" for T = {', '.join(map(str, ts))}; truth 0.65). Few steps blur it: at T = {lo}, "
        f"{percent(1 - net[lo]['within_5sigma'])} of the samples land more than 5 sigma from both peaks and the peaks "
        f"come out {width(net[lo])} times the true width; at T = {hi}, {percent(1 - net[hi]['within_5sigma'])} and "
        f"{width(net[hi])}" + (f"; from T = {tight} on, 99 % or more lie within 5 sigma. " if tight else ". ")
        + ("Much of the small-T error is the sampler's: " if ex[lo]["within_5sigma"] < 1 - (1 - net[lo]["within_5sigma"]) / 2
           else "The small-T error is mostly the network's: ")
        + f"the exact noise predictor with the same T and noise leaves {percent(1 - ex[lo]['within_5sigma'])} stray at "
          f"T = {lo}, and " + (f"the network adds clear error of its own at T = {', '.join(map(str, worse))}." if worse
                               else "the network adds no error beyond the sampler's at any T."))
    return [("answer", answer), ("text", (
        f"Figure: one row per model, zoomed to the peaks. Left, {cfg.n} samples of the ancestral sampler over the "
        "true density; middle, their estimated density; right, each sample's distance to the nearest peak in sigma "
        "(grey: the truth; black dashed: the exact noise predictor through the same sampler from the same x_T and "
        "noise): a peak of the wrong width moves the hump, strays make the tail beyond 5 sigma. Peak widths (sample "
        "std / true std, peak 0 / 1), exact predictor: " + ", ".join(f"{width(ex[T])} (T = {T})" for T in ts)
        + "; network: " + ", ".join(f"{width(net[T])}" for T in ts) + ". Energy distance to fresh mixture draws, "
        "network / exact: " + ", ".join(f"{net[T]['energy_distance']:.4f} / {ex[T]['energy_distance']:.4f}" for T in ts)
        + f" (two sets of true draws: {truth['energy_distance']:.4f}). Numbers: problem3.csv. Reproduce: python "
          f"visualize.py --problem 3 --n {cfg.n} --seed {cfg.seed}."))]


# ================================================================ problem 4
def problem4(cfg: Settings, models: dict) -> Page:
    """Same x_T with y = 0 and y = 1 (the required figure), then a sweep over the guidance scale w."""
    (model, schedule, *_), gmm, device = models[PROBLEM2_T], GMM(), resolve_device(cfg.device)
    model, T = model.to(device), schedule.T
    x_T = torch.randn(cfg.n, 2, generator=torch.Generator().manual_seed(cfg.seed))
    inside = (x_T.abs() < DEMO_START).all(1).nonzero()
    k = int(inside[0]) if len(inside) else 0
    trajs, ends, split, commit = {}, {}, {}, {}
    for name, pred in progress((("network", model), ("exact", exact_predictor(schedule))), cfg,
                               desc="problem 4: trajectories"):
        for y in (None, 0, 1):
            # the same x_T and the same per-step noise for every label: only y differs
            x0, tr = sample(pred, schedule, cfg.n, y, SamplerSettings(w=cfg.traj_w), torch.Generator().manual_seed(cfg.seed + 1),
                            x_T=x_T, trajectory=True, device=device)
            ends[name, y] = torch.cdist(x0.cpu().double(), gmm.means).argmin(1)
            if name == "network":
                trajs[y] = tr.x[:, k].cpu().numpy()
                if y is not None:  # when each chain commits to the requested peak
                    commit[y] = committed_from(tr.x.cpu(), tr.t, torch.full((cfg.n,), y), schedule.alpha_bar.cpu(), gmm)
        split[name] = float(((ends[name, 0] == 0) & (ends[name, 1] == 1)).double().mean())

    rows, sweep = [], {}
    m = max(2, cfg.n // 2)
    for w in progress(cfg.ws, cfg, desc="problem 4: guidance sweep"):
        for name, pred in (("network", model), ("exact", exact_predictor(schedule))):
            for y in (0, 1):
                x = sample(pred, schedule, m, y, SamplerSettings(w=w), torch.Generator().manual_seed(cfg.seed + 2),
                           device=device).cpu()
                s = peak_stats(x, gmm)
                rows.append(dict(w=w, y=y, predictor=name, in_requested_peak=s.counts[y] / m,
                                 within_5sigma=s.within_5sigma, push_sigma=push_past_peak(x, y, gmm),
                                 std_ratio=s.std_ratio[y]))
                if name == "network":
                    sweep[w, y] = x.numpy()
    demo_commit = {y: int(commit[y][k]) for y in (0, 1)}
    png = problem4_trajectories(cfg, trajs, demo_commit, T, gmm)
    png_sweep = problem4_sweep(cfg, rows, sweep, gmm)
    save_numbers(cfg.out, "problem4", rows, w=np.array(cfg.ws), x_T=x_T[k].numpy(), trajectory_index=k,
                 trajectory_uncond=trajs[None], trajectory_y0=trajs[0], trajectory_y1=trajs[1],
                 commit_t_y0=commit[0].numpy(), commit_t_y1=commit[1].numpy(),
                 samples_y0=np.stack([sweep[w, 0] for w in cfg.ws]), samples_y1=np.stack([sweep[w, 1] for w in cfg.ws]))
    ends_k = {y: int(ends["network", y][k]) for y in (None, 0, 1)}
    return Page("Problem 4: guided generation from the same x_T", [png, png_sweep],
                problem4_blocks(cfg, rows, trajs, ends_k, split, commit, demo_commit, m))


def problem4_trajectories(cfg, trajs, demo_commit, T, gmm) -> str:
    """The handout's figure: the y = 0 and y = 1 chains from one x_T over the true density, large, and
    each pixel against t, where the chains can be told apart even while they overlap."""
    pts = np.concatenate([trajs[0], trajs[1], gmm.means.numpy()])
    lim = (float(pts.min()) - 0.2, float(pts.max()) + 0.2)  # holds both chains
    grid = make_grid(cfg.grid, lim)
    ts = np.arange(T, -1, -1)
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(FIG_W, 3.9))
        gs = fig.add_gridspec(2, 2, width_ratios=[1, 1.05], wspace=0.22, hspace=0.12, left=0.075, right=0.985,
                              top=0.93, bottom=0.11)
        ax = fig.add_subplot(gs[:, 0])
        show_truth(ax, true_density(grid, 1.0, gmm), grid, lines="#222222")
        for y in (0, 1):  # the true class densities q(x_0 | y): where each label should end
            q_y = true_density(grid, 1.0, gmm, y=y)
            ax.contour(grid.centers, grid.centers, q_y, levels=hdr_levels(q_y, grid), colors=CLASS_COLOURS[y],
                       linewidths=0.9, zorder=3)
        for y in (0, 1):
            draw_path(ax, trajs[y], CLASS_COLOURS[y], ls=CLASS_LINES[y], marker=CLASS_MARKERS[y], ms=0,
                      label=f"y = {y}")
            ax.plot(*trajs[y][T - demo_commit[y]], "D", color=CLASS_COLOURS[y], ms=6, mec="white", mew=0.8, zorder=5)
        ax.set_title(f"one $x_T$ (star), guidance w = {cfg.traj_w:g}, over the true $q(x_0)$")
        style_axes(ax, lim=lim)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(matplotlib.ticker.MultipleLocator(1))
        ax.legend(loc="best", framealpha=0.9)
        for j, name in enumerate(("left pixel", "right pixel")):
            bx = fig.add_subplot(gs[j, 1])
            bx.plot(ts, trajs[None][:, j], ":", color="#555555", lw=1.0, label="no label")
            for y in (0, 1):
                bx.plot(ts, trajs[y][:, j], CLASS_LINES[y], color=CLASS_COLOURS[y], lw=1.5, label=f"y = {y}")
                bx.axhline(float(gmm.means[y, j]), color=CLASS_COLOURS[y], lw=0.7, ls=(0, (1, 2)))
                bx.axvline(demo_commit[y], color=CLASS_COLOURS[y], lw=0.8, ls=CLASS_LINES[y], alpha=0.7)
            bx.set(xlim=(T, 0), ylabel=name, xlabel="t (reverse chain runs left to right)" if j else "",
                   title="" if j else "each pixel vs t; dotted: peak centre; vertical: commits")
            bx.tick_params(labelbottom=bool(j))
        bx.legend(ncol=3, loc="lower left", framealpha=0.9)
        return save_figure(fig, cfg.out, "problem4")


def problem4_sweep(cfg, rows, sweep, gmm) -> str:
    """Guidance sweep, a second and smaller figure: samples per label for each w."""
    grid = make_grid(cfg.grid, ZOOM)
    q0 = true_density(grid, 1.0, gmm)
    get = {(r["w"], r["y"]): r for r in rows if r["predictor"] == "network"}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(cfg.ws), figsize=(FIG_W, 1.95), squeeze=False)
        for i, (ax, w) in enumerate(zip(axes[0], cfg.ws)):
            show_truth(ax, q0, grid)
            for y in (0, 1):
                ax.scatter(*sweep[w, y].T, s=1.0, lw=0, color=CLASS_COLOURS[y], alpha=0.5, rasterized=True)
            ax.set_title(f"w = {w:g}", pad=3)
            corner_text(ax, f"in peak {100 * get[w, 0]['in_requested_peak']:.0f} / "
                            f"{100 * get[w, 1]['in_requested_peak']:.0f} %")
            style_axes(ax, left_label=i == 0, bottom_label=True, lim=ZOOM)
        fig.subplots_adjust(left=0.075, right=0.99, top=0.88, bottom=0.22, wspace=0.08)
        return save_figure(fig, cfg.out, "problem4_sweep")


def problem4_blocks(cfg, rows, trajs, ends_k, split, commit, demo_commit, m) -> list:
    get = {(r["w"], r["y"], r["predictor"]): r for r in rows}
    w0, w1 = cfg.ws[0], cfg.ws[-1]
    x_T, med = trajs[0][0], {y: int(commit[y].double().median()) for y in (0, 1)}
    answer = (
        f"What we find: from the same x_T = ({x_T[0]:.2f}, {x_T[1]:.2f}) and the same step noise, "
        + ("the y = 0 chain ends in peak 0 (left pixel darker than the right) and the y = 1 chain in peak 1 (left "
           "pixel lighter), as in the handout's Fig. 4. " if ends_k[0] == 0 and ends_k[1] == 1 else
           f"the y = 0 chain ends in peak {ends_k[0]} and the y = 1 chain in peak {ends_k[1]}. ")
        + ("The label, not x_T, decides the mode" if split["network"] >= 0.95 else "The label often fails to decide")
        + f": over all {cfg.n} starts, {percent(split['network'])} end in their own, different peaks for y = 0 and "
          f"y = 1 at w = {cfg.traj_w:g} (exact predictor: {percent(split['exact'])}). The two chains run together "
          f"at first and part as the noise shrinks: this pair commits to its peaks at t = {demo_commit[0]} (y = 0) "
          f"and {demo_commit[1]} (y = 1); the median over all starts is t = {med[0]} / {med[1]}.")
    shares = {(w, y): percent(get[w, y, "network"]["in_requested_peak"]) for w in cfg.ws for y in (0, 1)}
    sweep = (f"{shares[w0, 0]} for every w and both labels" if len(set(shares.values())) == 1 else
             ", ".join(f"{shares[w, 0]} / {shares[w, 1]} (w = {w:g})" for w in cfg.ws))
    push = lambda w, p: " / ".join(f"{get[w, y, p]['push_sigma']:+.2f}" for y in (0, 1))
    return [("answer", answer), ("answer", (
        f"Guidance strength (figure 2, not asked for): samples in the requested peak, y = 0 / y = 1: {sweep}. "
        f"Stronger guidance pushes them past the peak centre, away from the other class: {push(w0, 'network')} sigma "
        f"at w = {w0:g}, {push(w1, 'network')} at w = {w1:g} (exact guidance: {push(w1, 'exact')})."
    )), ("text", (
        f"Figure 1: left, the y = 0 and y = 1 chains from one x_T (star: the first of the {cfg.n} starts with both "
        f"pixels within +-{DEMO_START:g}) over the true q(x_0) (grey, dark contours) and the true class densities "
        "q(x_0 | y) (coloured contours: 50 / 90 / 99 %); large marker: x_0; diamond: where the chain commits "
        f"(q(y | x_t) stays >= {COMMITTED:g} from there on). Right, the same chains and the unlabelled one, pixel by "
        f"pixel against t. Figure 2: {m} samples per label and w, eps = (1 + w) eps(x, t, y) - w eps(x, t, null). "
        "'Exact' uses GMM().noise_predictor with the same formula. Numbers per w, y and predictor: problem4.csv. "
        f"Reproduce: python visualize.py --problem 4 --n {cfg.n} --traj-w {cfg.traj_w:g} --seed {cfg.seed}."))]


# ============================================================ problem 5 and CS180
def cs180_pages(cfg: Settings, part: str) -> list:
    """CS180 project 5 on MNIST, one page per section: part A (mnist.cs180_report) on the shipped
    class-conditional model, part B.1 / B.2 (mnist.cs180_partb) on their shipped runs, or on runs
    trained here into --runs/cs180 with --retrain. In report mode, no progress bars: visualize prints
    one line per part."""
    if part == "cs180-a":
        return cs180_report.pages(cfg.out)
    if part == "cs180-b1":
        ckpt = {"checkpoint": retrain_cs180(cfg, "cs180", denoiser, [])} if cfg.retrain else {}
        return cs180_partb.b1_pages(cfg.out, seed=cfg.seed, **ckpt)
    ckpt = {"checkpoint": retrain_cs180(cfg, "cs180", timecond, []),
            "class_checkpoint": retrain_cs180(cfg, os.path.join("cs180", "class"), timecond, ["--classes"])
            } if cfg.retrain else {}
    return cs180_partb.b2_pages(cfg.out, seed=cfg.seed, progress=not (cfg.quiet or cfg.report), **ckpt)


def retrain_cs180(cfg: Settings, sub: str, module, flags: list) -> str:
    """Train a part-B run from scratch into --runs/<sub> with the module's defaults and `flags` (B.1: a few
    minutes; each B.2 run: about 20 min on one CPU thread on the 4,500 fallback digits, far longer on the
    full MNIST); returns the checkpoint path."""
    folder = os.path.join(cfg.runs, sub)
    check_writable_dir(folder, "models")
    argv = flags + ["--out", folder, "--overwrite"] + (["--quiet"] if cfg.quiet or cfg.report else [])
    print(f"{sub}: training from scratch (python -m {module.__name__} {' '.join(argv)})", flush=True)
    code = module.main(argv)
    if code:
        raise UserError(f"python -m {module.__name__} failed with exit code {code}")
    return os.path.join(folder, "denoiser.pt" if module is denoiser else "timecond.pt")


def problem5(cfg: Settings) -> Page:
    """The MNIST page (mnist/problem5.py), from the shipped model or, with --retrain, a fresh one; with
    --threads torch threads like the rest (on shared cores, two threads took 4x as long as one)."""
    try:
        return mnist_problem5.problem5_page(cfg.out, retrain=cfg.retrain)
    except Exception as e:  # a failure on the MNIST side must not lose the other four pages
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"visualize.py: warning: problem 5 page failed ({type(e).__name__}: {first})", file=sys.stderr)
        return Page("Problem 5: MNIST", [], [("text", f"Problem 5 could not be built: mnist.problem5.problem5_page raised "
                                                      f"{type(e).__name__}: {first}. Fix that, then rerun visualize.py.")])


# ============================================================ models and checks
def check_writable_dir(folder: str, what: str) -> None:
    """Create `folder` if needed and prove it is writable (os.access is not enough when run as root)."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise UserError(f"cannot write the {what} to {folder} ({e.strerror or e}); pass a writable folder "
                        f"with {'--out' if what == 'figures' else '--runs' if what == 'models' else '--report'}") from None


def check_checkpoints(cfg: Settings) -> tuple[dict, list]:
    """Load every existing checkpoint the run needs (before anything is written) and list the missing."""
    models, missing = {}, []
    for key, (T, flags) in cfg.needed_runs().items():
        path = model_path(cfg.runs, key)
        if not os.path.exists(path):
            missing.append(key)
            continue
        try:
            c = checkpoint_config(path)
            if c.T != T:
                raise UserError(f"{path} was trained with T={c.T} but this figure needs T={T}; move it away "
                                f"(visualize.py then retrains it) or retrain it: python train.py --T {T} "
                                f"--out {os.path.dirname(path)}")
            wrong = [f"{k}={getattr(c, k)}" for k, v in flags.items() if getattr(c, k) != v]
            if wrong:
                raise UserError(f"{path} was trained with {', '.join(wrong)}, not as the {key} variant; move it "
                                "away and visualize.py retrains it")
            models[key] = load_checkpoint(path)
        except CheckpointError as e:
            raise UserError(f"{e} (or delete it and visualize.py retrains it)") from None
    return models, missing


def train_missing(cfg: Settings, missing: list) -> dict:
    """Train the models the figures need and cannot find (train.py's defaults unless --train-steps):
    the default models by T and problem 1's variants, all through train.train_models."""
    steps = cfg.train_steps or TrainConfig().steps
    Ts = [k for k in missing if isinstance(k, int)]
    jobs = min(cfg.jobs or os.cpu_count() or 1, len(missing))
    print(f"visualize.py: no model for {', '.join(f'T = {k}' if k in Ts else f'T = {PROBLEM2_T} ({k})' for k in missing)} "
          f"under {cfg.runs}/; training {'it' if len(missing) == 1 else 'them'} now ({steps} steps each; same as: "
          f"python train.py --T <T> --steps {steps} --no-eval [--arch handout | --p-uncond 0.1 | --ema-decay 0])",
          flush=True)

    argvs = {}
    for key in missing:
        flags = [] if key in Ts else [a for k, val in VARIANTS[key].items() for a in (f"--{k.replace('_', '-')}", str(val))]
        argvs[key] = ["--T", str(key if key in Ts else PROBLEM2_T), "--out", os.path.dirname(model_path(cfg.runs, key)),
                      *flags]
    try:
        done = train_models(argvs, steps, jobs, progress=not cfg.quiet)
    except RuntimeError as e:
        raise UserError(str(e)) from None
    for line in done.values():
        print(f"  {line}", flush=True)
    return {key: load_checkpoint(model_path(cfg.runs, key)) for key in done}


# ================================================================ CLI


def _values(kind, what: str, ok, most: int = 99, distinct: bool = False):
    """An argparse type: 1 to `most` comma-separated values of `kind`, each ok(v), distinct if asked."""
    def parse(text: str):
        try:
            vals = tuple(kind(v) for v in text.split(","))
        except ValueError:
            vals = ()
        if not 0 < len(vals) <= most or not all(map(ok, vals)) or distinct and len(set(vals)) < len(vals):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return vals if most > 1 else vals[0]
    return parse


NON_NEGATIVE = lambda v: math.isfinite(v) and v >= 0  # noqa: E731


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="visualize.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--problem", required=True, choices=PROBLEMS, metavar="{2,3,4,5,cs180,cs180-a,cs180-b1,cs180-b2,all}",
        help="2 (trajectory over p_theta(x_t | t)), 3 (T = 5..50 samples), 4 (guidance), 5 (MNIST, from the shipped "
             "model), all (problems 2-5, and 1 in the report); CS180 project 5 on MNIST: cs180-a (part A), cs180-b1 "
             "(single-step denoiser), cs180-b2 (time-conditioned DDPM), cs180 (all three)")
    add("--report", metavar="PDF", help="also write a PDF report, a page per problem (--problem all: problems 1-5)")
    add("--out", default="figures", metavar="DIR", help="folder for figures and their numbers (default %(default)s)")
    add("--runs", default="runs", metavar="DIR", help="checkpoints, DIR/T<T>/model.pt; missing ones are trained there "
                                                       "(default %(default)s)")
    add("--n", type=positive_int, default=5000, help="chains / samples per density or model (default %(default)s)")
    add("--density", choices=("kde", "hist"), default="kde", help="density estimate: kde (Gaussian kernel, "
        "cross-validated bandwidth) or hist (2-D histogram) (default %(default)s)")
    add("--grid", type=positive_int, default=150, help="grid cells per axis for densities (default %(default)s)")
    add("--seed", type=int, default=0, help="seeds every sample; same seed, same numbers (default %(default)s)")
    add("--Ts", type=_values(int, "distinct positive integers, comma-separated", lambda v: v >= 1, distinct=True),
        default=PROBLEM3_TS, metavar="LIST", help="problem 3's T values, comma-separated (default 5,10,25,50)")
    add("--ws", type=_values(float, "1 to 5 non-negative numbers, comma-separated", NON_NEGATIVE, most=5),
        default=GUIDANCE_WS, metavar="LIST", help="problem 4's guidance scales, up to 5 (default 0,0.5,1,2,4)")
    add("--traj-w", type=_values(float, "a non-negative number", NON_NEGATIVE, most=1), default=1.0,
        help="guidance scale of problem 4's y = 0 / y = 1 trajectories (default %(default)s)")
    add("--train-steps", type=positive_int, help="optimiser steps for models that must be trained (default: train.py's)")
    add("--jobs", type=positive_int, help="models trained at once, one process and thread each (default: one per core)")
    add("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps (default %(default)s)")
    add("--threads", type=positive_int, default=1, help="torch CPU threads (default %(default)s: on shared cores more "
        "threads spin, up to 10x slower)")
    add("--quiet", action="store_true", help="no progress bars")
    add("--retrain", action="store_true", help="train problem 5's MNIST model (15-30 min on CPU), cs180-b1's denoiser "
        "or cs180-b2's two DDPMs (about 20 min each on the 4,500 fallback digits, hours on the full MNIST) from "
        "scratch with the modules' defaults instead of using the shipped checkpoints in mnist/reference")
    return p


def parse_settings(argv=None) -> Settings:
    a = build_parser().parse_args(argv)
    problems = {"all": ("2", "3", "4", "5"), "cs180": CS180_PARTS}.get(a.problem, (a.problem,))
    return Settings(problems=problems, every_page=a.problem == "all", n=a.n, grid=a.grid, density=a.density,
                    seed=a.seed, runs=a.runs, out=a.out, report=a.report, train_steps=a.train_steps, jobs=a.jobs or 0,
                    ts=a.Ts, ws=a.ws, traj_w=a.traj_w, device=a.device, threads=a.threads, quiet=a.quiet,
                    retrain=a.retrain)


PROBLEM_PAGES = {"2": problem2, "3": problem3, "4": problem4}


def main(argv=None) -> int:
    try:
        cfg = parse_settings(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2, message already printed)
        return int(e.code or 0)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        if cfg.n < 10:
            raise UserError(f"--n {cfg.n} is too few samples for a density estimate; use at least 10")
        resolve_device(cfg.device)
        models, missing = check_checkpoints(cfg)  # reads only: a bad checkpoint stops us before any write
        check_writable_dir(cfg.out, "figures")
        if cfg.report:
            if os.path.isdir(cfg.report):
                raise UserError(f"--report {cfg.report} is a folder; give a file name such as report.pdf")
            check_writable_dir(os.path.dirname(os.path.abspath(cfg.report)), "report")
        if missing:
            check_writable_dir(cfg.runs, "models")
            models.update(train_missing(cfg, missing))
        tasks = [("problem 1", lambda: [problem1(cfg, models)])] if cfg.every_page and cfg.report else []
        tasks += [(f"problem {p}", lambda p=p: [PROBLEM_PAGES[p](cfg, models)]) for p in "234" if p in cfg.problems]
        tasks += [("problem 5", lambda: [problem5(cfg)])] if "5" in cfg.problems else []
        if cfg.report and set(CS180_PARTS) <= set(cfg.problems):
            tasks += [("cs180 opening", lambda: [cs180_report.opening_page()])]
        tasks += [(part, lambda part=part: cs180_pages(cfg, part)) for part in CS180_PARTS if part in cfg.problems]
        pages = []
        for name, make in tasks:
            t0 = time.perf_counter()
            made = make()
            pages += made
            figures = ", ".join(i for p in made for i in p.images) or "no figure (see the report page)"
            print(f"{name}: {len(made)} section{'s' if len(made) != 1 else ''} in {time.perf_counter() - t0:.1f} s; figures {figures}", flush=True)
        if cfg.report:
            sheets = write_report(pages, cfg.report, flow=set(cfg.problems) <= set(CS180_PARTS))  # CS180: sections share sheets
            print(f"report: {cfg.report} ({len(pages)} sections on {sheets} pages)")
    except (UserError, ValueError) as e:
        print(f"visualize.py: error: {e}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
