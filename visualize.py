"""Figures and the PDF report for the two-pixel DDPM homework (handout section 4).

    python visualize.py --problem 2          # trajectory over p_theta(x_t | t), t = 50..10, T = 50
    python visualize.py --problem 3          # 4 x 2 figure: T = 5, 10, 25, 50 against the truth
    python visualize.py --problem 4          # y = 0 / y = 1 from one x_T, and a guidance sweep
    python visualize.py --problem 5          # MNIST samples and a trajectory, from the shipped model
    python visualize.py --problem all --report report.pdf    # every figure, then a page per problem
    python visualize.py --problem cs180 --report cs180.pdf   # CS180 project 5 on MNIST (about 4 min):
        cs180-a   part A on the problem 5 model: noise, denoising, guidance, SDEdit, inpainting,
                  translation, visual anagrams, hybrids
        cs180-b1  part B.1, the single-step denoiser: noising, loss, epoch 1 vs 5, out-of-distribution
        cs180-b2  part B.2, the time-conditioned DDPM: loss and samples after epochs 1, 5, 10, 15, 20

Models are read from <runs>/T<T>/model.pt and trained (train.py, its defaults) when missing.
Every figure is written as PNG (200 dpi) and PDF under --out, with the numbers behind it beside it
(<name>.npz holds the arrays, <name>.csv the measured numbers). The same --seed gives the same numbers.

Conventions kept in every figure: x axis = left pixel, y axis = right pixel, both over [-2, 2];
grey fill = a ground-truth density q; viridis fill = a density estimated from samples (shown relative
to the peak of the matching true density, so equal colours mean equal densities); white contours =
the true q(x_t) regions that hold 50 / 90 / 99 % of its mass; orange = unconditional samples and
trajectories; blue / vermillion = class y = 0 / y = 1 (Okabe-Ito colours, colour-blind safe).

Density estimates (--density): 'kde' is an isotropic Gaussian kernel whose bandwidth is chosen by
leave-one-out likelihood cross-validation. scipy.stats.gaussian_kde is not used because its kernel
has the covariance of the whole cloud, which for two peaks on a diagonal is a needle along the line
joining them and smears each peak toward the other. 'hist' is a 2-D histogram on the plotting grid.
Timesteps follow utils.py: t = 0 (clean) .. T (noise), arrays indexed by t.
"""
from __future__ import annotations

import argparse
import json
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

from ddpm import ARCHS
from gmm import (GMM, Grid, estimate_density, hdr_levels, l1_distance, make_grid, peak_stats, push_past_peak,
                 sample_q_t, sample_quality, true_density)
from mnist import cs180_partb, cs180_report, denoiser, timecond
from mnist import problem5 as mnist_problem5
from report.pages import Page, save_figure, save_numbers, write_report
from train import run_folder, train_models
from utils import (CheckpointError, Parser, TrainConfig, checkpoint_config, load_checkpoint, positive_int,
                   resolve_device, sample)

CS180_PARTS = ("cs180-a", "cs180-b1", "cs180-b2")
PROBLEMS = ("2", "3", "4", "5", "cs180", *CS180_PARTS, "all")
LIM = (-2.0, 2.0)  # both axes, every figure: holds the data and ~91 % of the pure-noise x_T
PROBLEM2_T = 50
PROBLEM2_TIMES = (50, 40, 30, 20, 10)  # shown in the order the reverse chain visits them
PROBLEM3_TS = (5, 10, 25, 50)
GUIDANCE_WS = (0.0, 0.5, 1.0, 2.0, 4.0)
DEMO_START = 1.0  # the highlighted chain is the first whose x_T has both pixels within +-DEMO_START

# Okabe & Ito (2008) palette
ORANGE, SKY, GREEN, BLUE, VERMILLION, PURPLE = "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7"
CLASS_COLOURS = (BLUE, VERMILLION)  # y = 0, y = 1
UNCOND_COLOUR = ORANGE
ESTIMATE_CMAP = "viridis"
TRUTH_CMAP = "Greys"
TRUTH_LINE = "white"
STYLE = {"font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
         "legend.fontsize": 8, "figure.titlesize": 11, "savefig.dpi": 200}


class UserError(Exception):
    """A problem the user can fix (bad checkpoint, unwritable folder): reported in one line, exit 2."""


# =========================================================== densities on a grid
# ================================================================ plotting
def style_axes(ax, left_label: bool = True, bottom_label: bool = True):
    ax.set_xlim(*LIM)
    ax.set_ylim(*LIM)
    ax.set_aspect("equal")
    ax.set_xticks([-2, -1, 0, 1, 2])
    ax.set_yticks([-2, -1, 0, 1, 2])
    if bottom_label:
        ax.set_xlabel("left pixel")
    else:
        ax.tick_params(labelbottom=False)
    if left_label:
        ax.set_ylabel("right pixel")
    else:
        ax.tick_params(labelleft=False)


def show_truth(ax, q: np.ndarray, grid: Grid):
    """Ground-truth density as a grey fill (its peak at ~65 % grey, so points still show on it), with
    the regions holding 50 / 90 / 99 % of its mass as thin dark lines drawn over the points."""
    ax.imshow(q, origin="lower", extent=(*LIM, *LIM), cmap=TRUTH_CMAP, vmin=0, vmax=1.5 * q.max(),
              interpolation="bilinear")
    ax.contour(grid.centers, grid.centers, q, levels=hdr_levels(q, grid), colors="#333333", linewidths=0.5,
               zorder=3)


def show_estimate(ax, est: np.ndarray, q: np.ndarray, grid: Grid):
    """Estimated density (viridis, relative to the true peak, square-root scale so that thin spread-out
    mass still shows) with the truth's HDR contours in white."""
    norm = matplotlib.colors.PowerNorm(gamma=0.5, vmin=0, vmax=1)
    im = ax.imshow(est / q.max(), origin="lower", extent=(*LIM, *LIM), cmap=ESTIMATE_CMAP, norm=norm,
                   interpolation="bilinear")
    ax.contour(grid.centers, grid.centers, q, levels=hdr_levels(q, grid), colors=TRUTH_LINE, linewidths=0.7)
    return im


def corner_text(ax, text: str, loc: str = "lower left", size: float = 7):
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.03, "bottom") if "lower" in loc else (0.97, "top")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=size, family="monospace",
            bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="none", alpha=0.85))


def draw_path(ax, path: np.ndarray, colour: str, label: Optional[str] = None, ls: str = "-"):
    """A trajectory (S, 2) from x_T (square) to its last state (circle), outlined for contrast."""
    outline = [patheffects.withStroke(linewidth=2.6, foreground="black")]
    ax.plot(path[:, 0], path[:, 1], ls, color=colour, lw=1.2, marker="o", ms=1.4, label=label,
            path_effects=outline, zorder=4)
    ax.plot(*path[0], "s", color=colour, ms=5, mec="black", mew=0.8, zorder=5)
    ax.plot(*path[-1], "o", color=colour, ms=6.5, mec="black", mew=0.9, zorder=5)


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
    caller_threads: int = 0  # torch threads before main() changed them (problem 5 runs with these)

    def needed_ts(self) -> list:
        ts = set()
        if {"2", "4"} & set(self.problems) or self.report and self.every_page:
            ts.add(PROBLEM2_T)
        if "3" in self.problems:
            ts.update(self.ts)
        return sorted(ts)


def progress(iterable, cfg: Settings, **kw):
    return tqdm(iterable, disable=cfg.quiet, leave=False, dynamic_ncols=True, **kw)


def model_path(runs: str, T: int) -> str:
    return os.path.join(run_folder(T, runs), "model.pt")


def exact_predictor(schedule):
    return GMM().noise_predictor(schedule)


# ================================================================ problem 2
def problem2(cfg: Settings, models: dict) -> Page:
    """A trajectory over p_theta(x_t | t) at t = 50, 40, ..., 10, estimated from cfg.n chains."""
    model, schedule = models[PROBLEM2_T]
    gmm, grid = GMM(), make_grid(cfg.grid)
    device = resolve_device(cfg.device)
    _, traj = sample(model.to(device), schedule, cfg.n, generator=torch.Generator().manual_seed(cfg.seed),
                     trajectory=True, device=device, progress=not cfg.quiet)
    xs = traj.x.cpu()  # (T+1, n, 2), xs[i] at time traj.t[i] = T - i
    # the highlighted chain: the first whose start lies in the middle of the square
    inside = (xs[0].abs() < DEMO_START).all(1).nonzero()
    k = int(inside[0]) if len(inside) else 0
    path = xs[:, k].numpy()  # (T+1, 2) from x_T to x_0

    # when each chain commits to the peak it ends in: the last t from which on q(y_end | x_t) >= 0.9
    ab = schedule.alpha_bar.cpu()
    final = gmm.posterior(xs[-1], 1.0).argmax(1)  # (n,)
    resp = torch.stack([gmm.posterior(xs[i], ab[int(traj.t[i])])[torch.arange(cfg.n), final]
                        for i in range(len(traj.t))])  # (T+1, n)
    settled = torch.flip(torch.cummin(torch.flip(resp, [0]), 0).values, [0]) >= 0.9  # from step i onwards
    commit_t = torch.where(settled.any(0), traj.t[settled.int().argmax(0)], torch.zeros(cfg.n, dtype=torch.long))

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
    q0 = true_density(grid, 1.0, gmm)
    end = sample_quality(xs[-1], gmm.sample(cfg.n, torch.Generator().manual_seed(cfg.seed + 10_000))[0], gmm)._asdict()

    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(7.6, 5.4))
        gs = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 0.05], wspace=0.12, hspace=0.28)
        axes = [fig.add_subplot(gs[i // 3, i % 3]) for i in range(6)]
        for i, (t, row) in enumerate(zip(PROBLEM2_TIMES, rows)):
            ax = axes[i]
            im = show_estimate(ax, est_all[i], q_all[i], grid)
            draw_path(ax, path[: PROBLEM2_T - t + 1], UNCOND_COLOUR)
            ax.set_title(f"t = {t}: $p_\\theta(x_t)$ vs $q(x_t)$")
            corner_text(ax, f"L1 {row['l1']:.2f}\nfloor {row['l1_floor']:.2f}")
            style_axes(ax, left_label=i % 3 == 0, bottom_label=i >= 3)
        ax = axes[5]
        show_truth(ax, q0, grid)
        draw_path(ax, path, UNCOND_COLOUR)
        ax.set_title("t = 0: ground truth $q(x_0)$")
        style_axes(ax, left_label=False, bottom_label=True)
        cb = fig.colorbar(im, cax=fig.add_subplot(gs[:, 3]))
        cb.set_label("estimated density / peak of true $q(x_t)$ (square-root scale)")
        fig.suptitle(f"Problem 2: one reverse trajectory (orange; square = $x_T$) over $p_\\theta(x_t)$ estimated "
                     f"from {cfg.n} chains ({cfg.density}, viridis);\nwhite: the true $q(x_t)$ regions holding "
                     "50 / 90 / 99 % of its mass; L1 = $\\int |p_\\theta - q|$, floor = the estimator's own L1",
                     fontsize=9)
        png = save_figure(fig, cfg.out, "problem2")
    save_numbers(cfg.out, "problem2", rows, grid=grid.centers, t=np.array(PROBLEM2_TIMES),
                 estimate=np.stack(est_all), truth=np.stack(q_all), x_t=np.stack(xt_all),
                 trajectory=path, trajectory_t=traj.t.numpy(), trajectory_index=k, commit_t=commit_t.numpy(),
                 x0=xs[-1].numpy())
    first_jump = float((xs[1] - xs[0]).norm(dim=1).mean())  # mean |x_{T-1} - x_T| over the chains
    sigma_T = float(schedule.sigma2[schedule.T].sqrt())
    return Page("Problem 2: a denoising trajectory over the estimated p_theta(x_t | t), T = 50", [png],
                problem2_text(cfg, rows, path, int(commit_t[k]), commit_t, end, gmm, first_jump, sigma_T))


def problem2_text(cfg, rows, path, k_commit, commit_t, end, gmm, first_jump, sigma_T) -> list:
    by_t = {r["t"]: r for r in rows}
    r50, r10 = by_t[PROBLEM2_TIMES[0]], by_t[PROBLEM2_TIMES[-1]]
    agree = [r["t"] for r in rows if r["l1"] - r["l1_floor"] <= 0.05]
    worst = max(rows, key=lambda r: r["l1"] - r["l1_floor"])
    end_peak = int(gmm.posterior(torch.as_tensor(path[-1:]), 1.0).argmax())
    dist = float(np.linalg.norm(path[-1] - gmm.means[end_peak].numpy())) / gmm.std
    half = int(torch.quantile(commit_t.double(), 0.5).round())
    most = int(torch.quantile(commit_t.double(), 0.1).round())
    table = ["   t  alpha_bar   L1   L1 floor  majority share (exact q)  std/pixel (exact q)  chains committed"]
    for r in rows:
        table.append(f"{r['t']:4d}  {r['alpha_bar']:8.4f}  {r['l1']:5.3f}  {r['l1_floor']:6.3f}"
                     f"       {r['majority_share']:.3f}  ({r['majority_share_exact']:.3f})"
                     f"           {r['std']:.3f}  ({r['std_exact']:.3f})      {r['chains_committed']:.3f}")
    obs = [
        f"At t = {r50['t']} the chains are close to pure noise: {r50['std']:.2f} std per pixel "
        f"(exact q(x_t): {r50['std_exact']:.2f}). Going down to t = {r10['t']} the cloud contracts "
        f"(std {r10['std']:.2f}, exact {r10['std_exact']:.2f}) and splits into two lumps around "
        f"sqrt(alpha_bar_t) times the two peaks; the share of chains nearest the majority lump goes from "
        f"{r50['majority_share']:.2f} to {r10['majority_share']:.2f} (exact q: {r50['majority_share_exact']:.2f} "
        f"to {r10['majority_share_exact']:.2f}).",
        (f"The learned marginals match q(x_t) to within the estimator's own error (L1 no more than 0.05 above "
         f"the floor of the same estimator on {cfg.n} exact draws) at t = {', '.join(map(str, agree))}"
         if agree else "The learned marginals differ from q(x_t) by more than the estimator's own error "
                       "(L1 more than 0.05 above its floor) at every t shown")
        + f"; the largest excess is at t = {worst['t']} (L1 {worst['l1']:.3f} against a floor of "
          f"{worst['l1_floor']:.3f}).",
        f"The first reverse step is a jump: on average |x_{{T-1}} - x_T| = {first_jump:.2f}, because the step noise at "
        f"t = T has std sigma_T = {sigma_T:.2f} under this schedule, so x_T itself carries "
        + ("almost no information about where a chain ends." if sigma_T > 0.9 else "only part of the information "
           "about where a chain ends.") + " "
        f"Each chain commits late: counting the last time from which q(y | x_t) for the peak it ends in stays "
        f"at or above 0.9, half of the {cfg.n} chains have committed by t = {half} and 90 % by t = {most}. "
        f"The highlighted chain starts at ({path[0, 0]:.2f}, {path[0, 1]:.2f}), commits at t = {k_commit} and "
        f"ends at ({path[-1, 0]:.2f}, {path[-1, 1]:.2f}) in peak {end_peak}, {dist:.1f} sigma from its centre.",
        f"At t = 0 the majority peak holds {end['majority_weight']:.3f} of the chains (truth "
        f"{float(gmm.weights.max()):.3f}), {end['within_5sigma']:.3f} lie within 5 sigma of a peak, the per-peak "
        f"std ratios are {end['std_ratio_0']:.2f} / {end['std_ratio_1']:.2f} (truth 1) and the energy distance "
        f"to {cfg.n} true draws is {end['energy_distance']:.4f}.",
    ]
    how = (f"Reproduce: python visualize.py --problem 2 --n {cfg.n} --density {cfg.density} --seed {cfg.seed} "
           f"(model: {model_path(cfg.runs, PROBLEM2_T)}). Numbers: problem2.csv / problem2.npz beside the figure.")
    return ([("text", "Figure: each panel is the density of x_t over all chains (viridis), the exact forward "
                      "marginal q(x_t) from gmm.py (white contours) and one chain's path up to that t (orange; the first "
                      f"chain whose x_T has both pixels within +-{DEMO_START:g}). "
                      "L1 = integral |p_theta - q| over the square; floor = the L1 of the same estimator on as many "
                      "exact draws of q(x_t), i.e. what the estimate alone costs."),
             ("table", "\n".join(table))]
            + [("text", "Observations. " + " ".join(obs[:2]))] + [("text", o) for o in obs[2:]] + [("text", how)])


# ================================================================ problem 3
def problem3(cfg: Settings, models: dict) -> Page:
    """Samples of the T = 5, 10, 25, 50 models against the truth and against the exact predictor."""
    gmm, grid = GMM(), make_grid(cfg.grid)
    device = resolve_device(cfg.device)
    ref, _ = gmm.sample(cfg.n, torch.Generator().manual_seed(cfg.seed + 10_000))
    q0 = true_density(grid, 1.0, gmm)
    rows, samples, exact_samples, dens = [], [], [], []
    for T in progress(cfg.ts, cfg, desc="problem 3: T"):
        model, schedule = models[T]
        out = {}
        for name, pred in (("network", model.to(device)), ("exact", exact_predictor(schedule))):
            # the same seed: both predictors start from the same x_T and see the same step noise
            x = sample(pred, schedule, cfg.n, generator=torch.Generator().manual_seed(cfg.seed), device=device).cpu()
            out[name] = x
            est = estimate_density(x.numpy(), grid, cfg.density)
            rows.append(dict(T=T, predictor=name, **sample_quality(x, ref, gmm)._asdict(), l1=l1_distance(est.density, q0, grid)))
            if name == "network":
                dens.append(est.density)
        samples.append(out["network"].numpy())
        exact_samples.append(out["exact"].numpy())
    truth = sample_quality(ref, gmm.sample(cfg.n, torch.Generator().manual_seed(cfg.seed + 30_000))[0], gmm)._asdict()

    with plt.rc_context(STYLE):
        nT = len(cfg.ts)
        fig = plt.figure(figsize=(7.4, 2.2 * nT + 0.75))
        gs = fig.add_gridspec(nT, 3, width_ratios=[1, 1, 1.15], wspace=0.06, hspace=0.28)
        for i, T in enumerate(cfg.ts):
            net, ex = rows[2 * i], rows[2 * i + 1]
            ax = fig.add_subplot(gs[i, 0])
            show_truth(ax, q0, grid)
            ax.scatter(samples[i][:, 0], samples[i][:, 1], s=1.2, lw=0, color=UNCOND_COLOUR, alpha=0.6,
                       rasterized=True)
            ax.set_title(f"T = {T}: samples over $q(x_0)$")
            style_axes(ax, left_label=True, bottom_label=i == nT - 1)
            ax = fig.add_subplot(gs[i, 1])
            show_estimate(ax, dens[i], q0, grid)
            ax.set_title(f"T = {T}: their density")
            style_axes(ax, left_label=False, bottom_label=i == nT - 1)
            ax = fig.add_subplot(gs[i, 2])
            ax.axis("off")
            ax.text(0.06, 0.5, f"T = {T}     network exact truth\n" + problem3_table(net, ex, truth),
                    transform=ax.transAxes, va="center", ha="left", family="monospace", fontsize=8)
        fig.suptitle(f"Problem 3: {cfg.n} samples of each model (left) and their estimated density (right; white: "
                     "true 50/90/99 % regions);\nnumbers: the network, the exact noise predictor with the same T and "
                     "sampler, and fresh draws of the truth", fontsize=9)
        fig.subplots_adjust(top=1 - 0.75 / fig.get_figheight(), bottom=0.45 / fig.get_figheight(), left=0.08, right=0.995)
        png = save_figure(fig, cfg.out, "problem3")
    save_numbers(cfg.out, "problem3", rows, T=np.array(cfg.ts), grid=grid.centers, samples=np.stack(samples),
                 exact_samples=np.stack(exact_samples), estimate=np.stack(dens), truth=q0)
    return Page(f"Problem 3: T = {', '.join(map(str, cfg.ts))}", [png], problem3_text(cfg, rows, truth))


def problem3_table(net: dict, ex: dict, truth: dict) -> str:
    f = lambda key, fmt: f"{net[key]:{fmt}} {ex[key]:{fmt}} {truth[key]:{fmt}}"
    return "\n".join([
        f"majority   {f('majority_weight', '6.3f')}",
        f"in 5 sigma {f('within_5sigma', '6.3f')}",
        f"std ratio0 {f('std_ratio_0', '6.2f')}",
        f"std ratio1 {f('std_ratio_1', '6.2f')}",
        f"energy d.  {f('energy_distance', '6.4f')}",
    ])


def problem3_text(cfg: Settings, rows: list, truth: dict) -> list:
    net = {r["T"]: r for r in rows if r["predictor"] == "network"}
    ex = {r["T"]: r for r in rows if r["predictor"] == "exact"}
    ts = list(cfg.ts)
    lo, hi = ts[0], ts[-1]
    obs = []
    # what few steps cost: the exact predictor has no network error, only the sampler's
    e_lo, e_hi = ex[lo]["energy_distance"], ex[hi]["energy_distance"]
    if e_lo > 2 * e_hi:
        obs.append(f"Few steps cost quality by themselves: with the exact noise predictor the energy distance "
                   f"is {e_lo:.4f} at T = {lo} against {e_hi:.4f} at T = {hi}, and the per-peak std ratios at "
                   f"T = {lo} are {ex[lo]['std_ratio_0']:.2f} / {ex[lo]['std_ratio_1']:.2f} "
                   f"(T = {hi}: {ex[hi]['std_ratio_0']:.2f} / {ex[hi]['std_ratio_1']:.2f}).")
    else:
        obs.append(f"Few steps cost the exact predictor little: its energy distance is {e_lo:.4f} at T = {lo} and "
                   f"{e_hi:.4f} at T = {hi}.")
    ratios = [ex[T][f"std_ratio_{j}"] for T in ts for j in (0, 1)]
    obs.append("Peak widths with the exact predictor, which has no network error, so this is the sampler's own bias: "
               "std ratios " + ", ".join(f"{ex[T]['std_ratio_0']:.2f} / {ex[T]['std_ratio_1']:.2f} (T = {T})" for T in ts)
               + "; " + ("every peak is within 10 % of the true width." if all(abs(r - 1) <= 0.1 for r in ratios) else
                         "the peaks come out narrower than the truth wherever they are off by more than 10 %."
                         if all(r <= 1.1 for r in ratios) else
                         "the peaks come out wider than the truth wherever they are off by more than 10 %."
                         if all(r >= 0.9 for r in ratios) else
                         "some peaks come out narrower and some wider than the truth.")
               + " The network's own ratios are " + ", ".join(f"{net[T]['std_ratio_0']:.2f} / "
                                                               f"{net[T]['std_ratio_1']:.2f}" for T in ts) + ".")
    # network minus exact; differences below `tol` (5x the distance between two sets of true draws) are noise
    gaps = {T: net[T]["energy_distance"] - ex[T]["energy_distance"] for T in ts}
    tol = max(5 * truth["energy_distance"], 2e-4)
    worse = [T for T in ts if gaps[T] > tol]
    level = [T for T in ts if abs(gaps[T]) <= tol]
    better = [T for T in ts if gaps[T] < -tol]
    parts = []
    if worse:
        parts.append("the network adds its own error at T = " + ", ".join(map(str, worse)) + " (energy distance above "
                     "the exact predictor's by " + ", ".join(f"{gaps[T]:.4f}" for T in worse) + ")")
    if level:
        parts.append("it matches the exact predictor at T = " + ", ".join(map(str, level)) + f" (within {tol:.4f}, "
                     "five times the distance between two sets of true draws)")
    if better:
        parts.append("it comes out closer to the truth than the exact predictor at T = " + ", ".join(map(str, better))
                     + ", i.e. its errors partly offset the sampler's")
    best = min(ts, key=lambda T: net[T]["energy_distance"])
    obs.append("Network against exact predictor: " + "; ".join(parts) + f". The network's best distribution is at "
               f"T = {best} (energy distance {net[best]['energy_distance']:.4f}).")
    stray_net = {T: 1 - net[T]["within_5sigma"] for T in ts}
    stray_ex = {T: 1 - ex[T]["within_5sigma"] for T in ts}
    excess = {T: stray_net[T] - stray_ex[T] for T in ts}
    sentence = ("Share of samples more than 5 sigma from both peaks: network " + ", ".join(f"{stray_net[T]:.3f}" for T in ts)
                + ", exact predictor " + ", ".join(f"{stray_ex[T]:.3f}" for T in ts) + f" (T = {', '.join(map(str, ts))}). ")
    few = [T for T in ts if stray_ex[T] > 0.01]
    if few:
        sentence += ("With the exact predictor too, T = " + ", ".join(map(str, few)) + " leaves strays between the "
                     "peaks, so there they are partly what few steps cost. ")
    added = [T for T in ts if excess[T] > 0.01]
    sentence += (("The network adds " + ", ".join(f"{excess[T]:.3f} at T = {T}" for T in added) + " on top: strays "
                  "it alone puts between and around the peaks.") if added else
                 f"The network adds at most {max(excess.values()):.3f} to them.")
    obs.append(sentence)
    maj = [net[T]["majority_weight"] for T in ts]
    w_true = truth["majority_weight"]
    obs.append("Mode weights: the majority peak holds " + ", ".join(f"{m:.3f}" for m in maj)
               + f" of the samples (truth 0.650; fresh draws {w_true:.3f}); "
               + ("every model keeps both modes with close to the right weights (within 0.05)."
                  if all(abs(m - 0.65) <= 0.05 for m in maj) else
                  "the weight is off by more than 0.05 at T = "
                  + ", ".join(str(T) for T, m in zip(ts, maj) if abs(m - 0.65) > 0.05)
                  + ("; " + ("the majority peak is over-filled." if np.mean(maj) > 0.65 else "the minority peak is over-filled."))))
    how = (f"Reproduce: python visualize.py --problem 3 --n {cfg.n} --seed {cfg.seed} (models: "
           f"{cfg.runs}/T<T>/model.pt, trained by train.py when missing). Numbers: problem3.csv / problem3.npz.")
    return ([("text", f"Figure: each row is one model; left, {cfg.n} samples (orange) drawn with the full ancestral "
                      "sampler over the true density (grey); right, their estimated density (viridis) with the true "
                      "50/90/99 % regions (white). 'exact' is GMM().noise_predictor(schedule) run through the same "
                      "sampler from the same x_T and noise, so network minus exact is what the network got wrong, "
                      "and exact minus truth is what the T steps cost. Numbers (right column): share of samples "
                      "nearest the majority peak (truth 0.65), share within 5 sigma of a peak, std of each peak's "
                      "samples / true std, energy distance to fresh mixture draws ('truth': two sets of fresh draws). "
                      "problem3.csv also holds the L1 distance of each density estimate to q(x_0)."),
             ("text", "Observations. " + obs[0])]
            + [("text", o) for o in obs[1:]] + [("text", how)])


# ================================================================ problem 4
def problem4(cfg: Settings, models: dict) -> Page:
    """Same x_T with y = 0 and y = 1, and a sweep over the guidance scale w."""
    model, schedule = models[PROBLEM2_T]
    gmm, grid = GMM(), make_grid(cfg.grid)
    device = resolve_device(cfg.device)
    model = model.to(device)
    T = schedule.T
    x_T = torch.randn(cfg.n, 2, generator=torch.Generator().manual_seed(cfg.seed))
    inside = (x_T.abs() < DEMO_START).all(1).nonzero()
    k = int(inside[0]) if len(inside) else 0
    trajs, ends, split = {}, {}, {}
    for name, pred in progress((("network", model), ("exact", exact_predictor(schedule))), cfg,
                               desc="problem 4: trajectories"):
        for y in (None, 0, 1):
            # the same x_T and the same per-step noise for every label: only y differs
            x0, tr = sample(pred, schedule, cfg.n, y=y, w=cfg.traj_w, x_T=x_T,
                            generator=torch.Generator().manual_seed(cfg.seed + 1), trajectory=True, device=device)
            ends[name, y] = torch.cdist(x0.cpu().double(), gmm.means).argmin(1)
            if name == "network":
                trajs[y] = tr.x[:, k].cpu().numpy()
        split[name] = float(((ends[name, 0] == 0) & (ends[name, 1] == 1)).double().mean())

    rows, sweep = [], {}
    m = max(2, cfg.n // 2)
    for w in progress(cfg.ws, cfg, desc="problem 4: guidance sweep"):
        for name, pred in (("network", model), ("exact", exact_predictor(schedule))):
            for y in (0, 1):
                x = sample(pred, schedule, m, y=y, w=w, device=device,
                           generator=torch.Generator().manual_seed(cfg.seed + 2)).cpu()
                s = peak_stats(x, gmm)
                rows.append(dict(w=w, y=y, predictor=name, in_requested_peak=s.counts[y] / m,
                                 within_5sigma=s.within_5sigma, push_sigma=push_past_peak(x, y, gmm),
                                 std_ratio=s.std_ratio[y]))
                if name == "network":
                    sweep[w, y] = x.numpy()
    q0 = true_density(grid, 1.0, gmm)

    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(7.6, 5.8))
        gs = fig.add_gridspec(2, 3, wspace=0.12, hspace=0.3, top=0.84)
        ax = fig.add_subplot(gs[0, 0])
        show_truth(ax, q0, grid)
        draw_path(ax, trajs[None], UNCOND_COLOUR, ls="--")  # colours are named in the title, no legend to hide paths
        for y in (0, 1):
            draw_path(ax, trajs[y], CLASS_COLOURS[y])
        ax.set_title(f"one $x_T$, guidance w = {cfg.traj_w:g}")
        style_axes(ax, left_label=True, bottom_label=False)
        for i, w in enumerate(cfg.ws[:5]):
            ax = fig.add_subplot(gs[(i + 1) // 3, (i + 1) % 3])
            show_truth(ax, q0, grid)
            for y in (0, 1):
                pts = sweep[w, y]
                ax.scatter(pts[:, 0], pts[:, 1], s=1.0, lw=0, color=CLASS_COLOURS[y], alpha=0.5, rasterized=True)
            r = {(r_["y"]): r_ for r_ in rows if r_["w"] == w and r_["predictor"] == "network"}
            ax.set_title(f"guidance w = {w:g}")
            corner_text(ax, "        y=0   y=1\n"
                            f"in peak {r[0]['in_requested_peak']:.3f} {r[1]['in_requested_peak']:.3f}\n"
                            f"push/s  {r[0]['push_sigma']:+.2f}  {r[1]['push_sigma']:+.2f}\n"
                            f"std/s   {r[0]['std_ratio']:.2f}  {r[1]['std_ratio']:.2f}", size=6.5)
            style_axes(ax, left_label=(i + 1) % 3 == 0, bottom_label=(i + 1) >= 3)
        fig.suptitle("Problem 4: classifier-free guidance. Blue: y = 0, vermillion: y = 1, orange dashed: no label; "
                     f"grey: true $q(x_0)$.\n{m} samples per label and w. push/s: mean offset past the peak centre, "
                     "away from the other peak,\nin units of sigma; std/s: spread of the samples / true sigma", fontsize=8.5)
        png = save_figure(fig, cfg.out, "problem4")
    save_numbers(cfg.out, "problem4", rows, w=np.array(cfg.ws), x_T=x_T[k].numpy(), trajectory_index=k,
                 trajectory_uncond=trajs[None], trajectory_y0=trajs[0], trajectory_y1=trajs[1],
                 samples_y0=np.stack([sweep[w, 0] for w in cfg.ws]), samples_y1=np.stack([sweep[w, 1] for w in cfg.ws]),
                 grid=grid.centers, truth=q0)
    ends_k = {y: int(ends["network", y][k]) for y in (None, 0, 1)}
    return Page("Problem 4: guided generation from the same x_T", [png],
                problem4_text(cfg, rows, trajs, ends_k, split, T, m))


def problem4_text(cfg, rows, trajs, ends_k, split, T, m) -> list:
    get = {(r["w"], r["y"], r["predictor"]): r for r in rows}
    w0, w1 = cfg.ws[0], cfg.ws[-1]
    start = trajs[0][0]
    demo = []
    for y in (0, 1):
        e = trajs[y][-1]
        demo.append(f"with y = {y} it ends at ({e[0]:.2f}, {e[1]:.2f}), "
                    + ("in the requested peak" if ends_k[y] == y else f"in peak {ends_k[y]}, not the requested one"))
    obs = [f"From x_T = ({start[0]:.2f}, {start[1]:.2f}) and the same step noise, the unconditional chain ends in "
           f"peak {ends_k[None]}; " + "; ".join(demo) + ". "
           f"Over all {cfg.n} starting points (same noise per start), the y = 0 and y = 1 chains end in their "
           f"own, different peaks for {split['network']:.3f} of the starts with the network and "
           f"{split['exact']:.3f} with the exact predictor (w = {cfg.traj_w:g})."]
    table = ["    w  y  predictor  in requested peak  within 5 sigma  push (sigma)  std ratio"]
    for r in rows:
        table.append(f"{r['w']:5g}  {r['y']}  {r['predictor']:9s}  {r['in_requested_peak']:17.3f}  {r['within_5sigma']:14.3f}"
                     f"  {r['push_sigma']:+12.2f}  {r['std_ratio']:9.2f}")
    for y in (0, 1):
        a, b = get[w0, y, "network"], get[w1, y, "network"]
        ea, eb = get[w0, y, "exact"], get[w1, y, "exact"]
        trend = ("pushed further past the peak, away from the other class" if b["push_sigma"] > a["push_sigma"] + 0.1
                 else "not pushed further out" if abs(b["push_sigma"] - a["push_sigma"]) <= 0.1
                 else "pulled back toward the other class")
        spread = ("narrower" if b["std_ratio"] < a["std_ratio"] - 0.05 else
                  "wider" if b["std_ratio"] > a["std_ratio"] + 0.05 else "about as wide")
        extra = b["push_sigma"] - eb["push_sigma"]  # network minus exact guidance at the largest w
        obs.append(f"y = {y}: from w = {w0:g} to w = {w1:g} the share landing in the requested peak goes from "
                   f"{a['in_requested_peak']:.3f} to {b['in_requested_peak']:.3f} (exact: {ea['in_requested_peak']:.3f} "
                   f"to {eb['in_requested_peak']:.3f}); samples are {trend} ({a['push_sigma']:+.2f} to "
                   f"{b['push_sigma']:+.2f} sigma; exact {ea['push_sigma']:+.2f} to {eb['push_sigma']:+.2f}) and the "
                   f"peak gets {spread} (std ratio {a['std_ratio']:.2f} to {b['std_ratio']:.2f}; exact "
                   f"{ea['std_ratio']:.2f} to {eb['std_ratio']:.2f}); at w = {w1:g}, {1 - b['within_5sigma']:.3f} of "
                   f"the samples end more than 5 sigma from both peaks (exact: {1 - eb['within_5sigma']:.3f}). "
                   + (f"At w = {w1:g} the network's push is within 0.2 sigma of the exact predictor's, so it is what "
                      "guidance does, not a network error." if abs(extra) <= 0.2 else
                      f"At w = {w1:g} the network pushes {extra:.2f} sigma further than exact guidance does: network "
                      "error that strong guidance amplifies." if extra > 0 else
                      f"At w = {w1:g} the network pushes {-extra:.2f} sigma less than exact guidance does."))
    how = (f"Reproduce: python visualize.py --problem 4 --n {cfg.n} --traj-w {cfg.traj_w:g} --seed {cfg.seed} "
           f"(model: {model_path(cfg.runs, T)}). Numbers: problem4.csv / problem4.npz.")
    return [("text", f"Figure: top left, three reverse chains from one x_T (square; the first of the {cfg.n} starts with both "
                     f"pixels within +-{DEMO_START:g}) with the same step noise: no "
                     f"label (orange, dashed), y = 0 (blue), y = 1 (vermillion). The other panels: {m} samples per label "
                     f"for each guidance scale w, eps = (1 + w) eps(x, t, y) - w eps(x, t, null). 'exact' rows use "
                     f"GMM().noise_predictor with the same guidance formula."),
            ("text", "Observations. " + obs[0])] + [("text", o) for o in obs[1:]] + [("table", "\n".join(table)),
                                                                                      ("text", how)]


# ============================================================ problems 1 and 5
def problem1(cfg: Settings) -> Page:
    """Implementation choices (read from the T = 50 checkpoint's config) and its loss curve."""
    path = model_path(cfg.runs, PROBLEM2_T)
    c = checkpoint_config(path)
    loss_csv = os.path.join(cfg.runs, f"T{PROBLEM2_T}", "loss.csv")
    images = []
    loss_note = f"No loss curve: {loss_csv} is missing (train.py writes it)."
    if os.path.exists(loss_csv):
        data = np.loadtxt(loss_csv, delimiter=",", skiprows=1, ndmin=2)
        steps, losses = data[:, 0], data[:, 1]
        kk = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(kk) / kk, mode="valid")
        with plt.rc_context(STYLE):
            fig, ax = plt.subplots(figsize=(7.0, 2.6))
            ax.plot(steps, losses, color="#bbbbbb", lw=0.6, label="per step")
            ax.plot(steps[kk - 1:], smooth, color=BLUE, lw=1.5, label=f"mean of {kk} steps")
            ax.set(xlabel="optimiser step", ylabel="L2 loss on eps" if c.loss == "l2" else f"{c.loss} loss",
                   yscale="log", title=f"Problem 1: training loss of the T = {c.T} model ({path})")
            ax.legend(frameon=False)
            fig.tight_layout()
            images.append(save_figure(fig, cfg.out, "problem1_loss"))
        save_numbers(cfg.out, "problem1_loss", [dict(step=int(s), loss=float(v)) for s, v in zip(steps, losses)],
                     step=steps, loss=losses)
        win = max(1, len(losses) // 10)
        first, last = losses[:win].mean(), losses[-win:].mean()
        loss_note = (f"Loss of the T = {c.T} model: {first:.4f} over the first {win} steps, {last:.4f} over the last "
                     f"{win} (it cannot reach 0: eps is not a function of x_t alone).")
    trained = []
    for T in sorted(set(cfg.ts) | {PROBLEM2_T}):
        mpath = os.path.join(cfg.runs, f"T{T}", "metrics.json")
        if os.path.exists(mpath):
            with open(mpath) as f:
                secs = json.load(f).get("train_seconds")
            if secs is not None:
                trained.append(f"T = {T}: {secs:.0f} s")

    groups = tuple(ARCHS[c.arch]["groups"]) if c.arch in ARCHS else None
    norms = ("GroupNorm(%d); " % groups[0] if groups and groups[0] else "no norm; ",
             "GroupNorm(%d); " % groups[1] if groups and groups[1] else "no norm; ",
             "GroupNorm(%d); " % groups[2] if groups and groups[2] else "no norm; ")
    arch = (f"arch = '{c.arch}': the handout's UNet layout (Conv1d k=2 + {norms[0]}Conv1d k=1 + {norms[1]}"
            f"ConvTranspose1d k=1 + {norms[2]}ConvTranspose1d k=2 over the skip), SiLU, Gaussian Fourier time "
            "embedding of t/T, class embedding by linear layers on a one-hot label with an extra null token")
    blocks = [
        ("text", "Code: gmm.py (the mixture, its exact noised densities and the exact noise predictor eps*), "
                 "ddpm.py (the UNet), utils.py (schedules, forward process, loss, samplers, trainer, checkpoints), "
                 "train.py (training CLI), visualize.py (figures and this report). Choices below are read from "
                 f"the T = {c.T} checkpoint's stored config."),
        ("text", "Timesteps: t = 0 (clean) .. T (noise) as in Ho et al. (2020); every schedule array has length T + 1 "
                 "and is indexed by t itself (entry 0: beta_0 = 0, alpha_bar_0 = 1), and the network sees t in 1..T."),
        ("text", f"Schedule: {c.schedule} betas"
                 + (" (Nichol & Dhariwal 2021, Eq. 17, s = 0.008, beta clipped at 0.999)" if c.schedule == "cosine" else "")
                 + "; reverse-step variance sigma_t^2 = "
                 + ("beta_tilde_t (the posterior variance, as the handout asks)." if c.variance == "posterior" else "beta_t.")),
        ("text", "Sampler: the ancestral DDPM step written in x0 form (as diffusers' DDPMScheduler.step): eps -> "
                 "x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (Eq. 15)"
                 + (f", clipped to +-{c.clip_x0:g}" if c.clip_x0 is not None else ", not clipped")
                 + ", then the posterior mean (Eq. 7) plus sigma_t z, with no noise at t = 1. Without clipping this is "
                   "exactly Eq. 11; with it, a small eps error at t = T (where sqrt(alpha_bar_T) is tiny under the "
                   "cosine schedule) cannot throw a sample far off the data."),
        ("text", f"Network: {arch}. A known weakness of the handout's design: its GroupNorm(32) over 64 channels of length 1 "
                 "normalises groups of two numbers, which come out as about +-1, so encoder 2 passes on little more "
                 "than signs, and every GroupNorm here normalises one pixel's features and so discards their scale; "
                 "train.py --arch handout is that network, --arch nonorm the same UNet without the norms (ddpm.py's "
                 "docstring and benchmarks/two_pixel.py measure the difference)."
                 + (" The figures in this report use the handout's network." if c.arch == "handout" else
                    f" The figures in this report use arch = '{c.arch}'.")),
        ("text", f"Training: {c.loss} loss between eps and eps_theta(x_t, t, y) with t ~ U{{1..T}} (Ho et al. Eq. 14); "
                 f"{c.n_train} training draws of the mixture (seed {c.seed}); Adam, lr {c.lr:g} with cosine decay, batch "
                 f"{c.batch_size}, {c.steps} steps; an EMA of the weights (decay {c.ema_decay:g}, with warm-up) is what "
                 f"is saved and sampled; labels are dropped to the null token with probability {c.p_uncond:g} so one "
                 "network is both conditional and unconditional (classifier-free guidance: (1 + w) eps(x, t, y) - "
                 "w eps(x, t, null))."
                 + (f" Training time on this machine: {'; '.join(trained)}." if trained else "")),
        ("text", "Checks: the exact noise predictor from gmm.py plugs into the same samplers and serves as the "
                 "oracle in the tests and in problems 3 and 4; the schedule and sampler are compared with diffusers' "
                 "DDPMScheduler in tests/."),
        ("text", loss_note),
        ("text", "README: pip install -r requirements.txt; python train.py --T 50 (and 5, 10, 25) writes runs/T<T>/; "
                 "python visualize.py --problem all --report report.pdf makes every figure under figures/ and this "
                 "PDF, training missing models first; python -m pytest -q runs the tests."),
    ]
    return Page("Problem 1: implementation", images, blocks)


def cs180_pages(cfg: Settings, part: str) -> list:
    """CS180 project 5 on MNIST, one page per section: part A (mnist.cs180_report) on the shipped
    class-conditional model, part B.1 / B.2 (mnist.cs180_partb) on their shipped runs, or on runs
    trained here into --runs/cs180 with --retrain."""
    if part == "cs180-a":
        return cs180_report.pages(cfg.out)
    ckpt = {"checkpoint": retrain_cs180(cfg, part)} if cfg.retrain else {}
    if part == "cs180-b1":
        return cs180_partb.b1_pages(cfg.out, seed=cfg.seed, **ckpt)
    return cs180_partb.b2_pages(cfg.out, seed=cfg.seed, progress=not cfg.quiet, **ckpt)


def retrain_cs180(cfg: Settings, part: str) -> str:
    """Train part B.1 (a few minutes) or B.2 (about 15 min on one CPU thread) from scratch into
    --runs/cs180 with the modules' defaults; returns the checkpoint path."""
    folder = os.path.join(cfg.runs, "cs180")
    check_writable_dir(folder, "models")
    module, name = (denoiser, "denoiser.pt") if part == "cs180-b1" else (timecond, "timecond.pt")
    argv = ["--out", folder] + (["--quiet"] if cfg.quiet and part == "cs180-b2" else [])
    print(f"{part}: training from scratch (python -m {module.__name__} {' '.join(argv)})", flush=True)
    code = module.main(argv)
    if code:
        raise UserError(f"python -m {module.__name__} failed with exit code {code}")
    return os.path.join(folder, name)


def problem5(cfg: Settings) -> Page:
    """The MNIST page (mnist/problem5.py), from the shipped model or, with --retrain, a fresh one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.caller_threads or threads)  # MNIST convolutions do gain from more threads
    try:
        return mnist_problem5.problem5_page(cfg.out, retrain=cfg.retrain)
    except Exception as e:  # a failure on the MNIST side must not lose the other four pages
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"visualize.py: warning: problem 5 page failed ({type(e).__name__}: {first})", file=sys.stderr)
        return Page("Problem 5: MNIST", [], [("text", f"Problem 5 could not be built: mnist.problem5.problem5_page "
                                                      f"raised {type(e).__name__}: {first}"),
                                             ("text", "Fix that, then rerun python visualize.py --problem all --report "
                                                      "report.pdf.")])
    finally:
        torch.set_num_threads(threads)


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
    for T in cfg.needed_ts():
        path = model_path(cfg.runs, T)
        if not os.path.exists(path):
            missing.append(T)
            continue
        try:
            trained_T = checkpoint_config(path).T
            if trained_T != T:
                raise UserError(f"{path} was trained with T={trained_T} but this figure needs T={T}; move it away "
                                f"(visualize.py then retrains it) or retrain it: python train.py --T {T} "
                                f"--out {os.path.dirname(path)}")
            models[T] = load_checkpoint(path)
        except CheckpointError as e:
            raise UserError(f"{e} (or delete it and visualize.py retrains it)") from None
    return models, missing


def train_missing(cfg: Settings, missing: list) -> dict:
    """Train the models the figures need and cannot find (train.py's defaults unless --train-steps)."""
    steps = cfg.train_steps or TrainConfig().steps
    jobs = min(cfg.jobs or os.cpu_count() or 1, len(missing))
    print(f"visualize.py: no model for T = {', '.join(map(str, missing))} under {cfg.runs}/; training "
          f"{'it' if len(missing) == 1 else 'them'} now ({steps} steps each, {jobs} at a time; "
          f"same as: python train.py --T <T> --steps {steps} --no-eval)", flush=True)
    try:
        done = train_models(missing, cfg.runs, steps, jobs, progress=not cfg.quiet)
    except RuntimeError as e:
        raise UserError(str(e)) from None
    for line in done.values():
        print(f"  {line}", flush=True)
    return {T: load_checkpoint(model_path(cfg.runs, T)) for T in done}


# ================================================================ CLI


def _int_list(text: str) -> tuple:
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not vals or min(vals) < 1 or len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(f"expected distinct positive integers, got {text!r}")
    return vals


def _float_list(text: str) -> tuple:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals or len(vals) > 5 or any(not math.isfinite(v) or v < 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected 1 to 5 non-negative numbers, got {text!r}")
    return vals


def _guidance(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="visualize.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problem", required=True, choices=PROBLEMS, metavar="{2,3,4,5,cs180,cs180-a,cs180-b1,cs180-b2,all}",
                   help="which figure to make: 2 (trajectory over p_theta(x_t | t)), 3 (T = 5..50 samples), "
                        "4 (guidance), 5 (MNIST grid and trajectory, from the shipped model), all (problems 2-5); "
                        "CS180 project 5 on MNIST, not part of 'all': cs180-a (part A on the MNIST model: noise, "
                        "denoising, sampling with and without guidance, SDEdit, inpainting, translation, anagrams, "
                        "hybrids), cs180-b1 (the single-step denoiser), cs180-b2 (the time-conditioned DDPM over "
                        "epochs), cs180 (all three)")
    p.add_argument("--report", default=None, metavar="PDF",
                   help="also write a PDF report with one page per problem (with --problem all: problems 1-5)")
    p.add_argument("--out", default="figures", metavar="DIR", help="folder for figures and their numbers (default %(default)s)")
    p.add_argument("--runs", default="runs", metavar="DIR",
                   help="where checkpoints live, as DIR/T<T>/model.pt; missing ones are trained there (default %(default)s)")
    p.add_argument("--n", type=positive_int, default=5000,
                   help="chains / samples per density or per model (default %(default)s; the handout asks for 5000)")
    p.add_argument("--density", choices=("kde", "hist"), default="kde",
                   help="density estimate: kde (Gaussian kernel, cross-validated bandwidth) or hist (2-D histogram) "
                        "(default %(default)s)")
    p.add_argument("--grid", type=positive_int, default=150, help="grid cells per axis for densities (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seeds every sample drawn here; same seed, same numbers (default %(default)s)")
    p.add_argument("--Ts", type=_int_list, default=PROBLEM3_TS, metavar="LIST",
                   help="problem 3's T values, comma-separated (default 5,10,25,50)")
    p.add_argument("--ws", type=_float_list, default=GUIDANCE_WS, metavar="LIST",
                   help="problem 4's guidance scales, up to 5, comma-separated (default 0,0.5,1,2,4)")
    p.add_argument("--traj-w", type=_guidance, default=1.0,
                   help="guidance scale of problem 4's y = 0 / y = 1 trajectories (default %(default)s)")
    p.add_argument("--train-steps", type=positive_int, default=None,
                   help="optimiser steps for models that must be trained (default: train.py's default)")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="models trained at once, one process and one thread each (default: one per core)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps (default %(default)s)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads for sampling (default %(default)s: batches of a few thousand two-pixel "
                        "images gain nothing from more, and lose up to 10x when other work shares the cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--retrain", action="store_true",
                   help="train from scratch instead of using the shipped checkpoints in mnist/reference: problem 5's "
                        "MNIST model (python -m mnist.train defaults, 15-30 min on CPU), cs180-b1's denoiser (a few "
                        "minutes), cs180-b2's DDPM (about 15 min); part A always uses problem 5's shipped model")
    return p


def parse_settings(argv=None) -> Settings:
    a = build_parser().parse_args(argv)
    problems = {"all": ("2", "3", "4", "5"), "cs180": CS180_PARTS}.get(a.problem, (a.problem,))
    return Settings(problems=problems, every_page=a.problem == "all",
                    n=a.n, grid=a.grid, density=a.density, seed=a.seed, runs=a.runs, out=a.out, report=a.report,
                    train_steps=a.train_steps, jobs=a.jobs or 0, ts=a.Ts, ws=a.ws, traj_w=a.traj_w, device=a.device,
                    threads=a.threads, quiet=a.quiet, retrain=a.retrain)


def main(argv=None) -> int:
    try:
        cfg = parse_settings(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2, message already printed)
        return int(e.code or 0)
    start = time.perf_counter()
    threads = cfg.caller_threads = torch.get_num_threads()
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
        pages = []
        if cfg.every_page and cfg.report:
            pages.append(problem1(cfg))
        for name, make in (("2", problem2), ("3", problem3), ("4", problem4)):
            if name in cfg.problems:
                t0 = time.perf_counter()
                pages.append(make(cfg, models))
                print(f"problem {name}: {os.path.join(cfg.out, f'problem{name}.png')} (+ .pdf, .csv, .npz) "
                      f"in {time.perf_counter() - t0:.1f} s", flush=True)
        if "5" in cfg.problems:
            t0 = time.perf_counter()
            pages.append(problem5(cfg))
            print(f"problem 5: {', '.join(pages[-1].images) or 'not built (see the report page)'} "
                  f"in {time.perf_counter() - t0:.1f} s", flush=True)
        for part in CS180_PARTS:
            if part in cfg.problems:
                t0 = time.perf_counter()
                made = cs180_pages(cfg, part)
                pages.extend(made)
                print(f"{part}: {len(made)} pages, {sum(len(p.images) for p in made)} figures in {cfg.out} "
                      f"in {time.perf_counter() - t0:.1f} s", flush=True)
        if cfg.report:
            write_report(pages, cfg.report)
            print(f"report: {cfg.report} ({len(pages)} pages)")
    except (UserError, ValueError) as e:
        print(f"visualize.py: error: {e}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
