"""Problem 2: a denoising trajectory over the estimated p_theta(x_t | t) of the T = 50 model.

    page = two_pixel.problem2.page(cfg, models)   # needs models[50]; writes problem2.png/.pdf/.csv/.npz/.gif

cfg.n chains run from pure noise; at each t of PROBLEM2_TIMES their states x_t give a density estimate,
compared with the true q(x_t) of gmm.py and with the same estimator on as many exact draws of q(x_t)
(its own error, the "floor"). One chain's path is drawn over the densities. problem2.gif animates the same
densities at every other t from T to 0 (ANIMATION_TIMES, which holds PROBLEM2_TIMES: at those t its frames
are the still's arrays), beside the true q(x_t).
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch

from gmm import GMM, Grid, estimate_density, l1_distance, make_grid, sample_q_t, sample_quality, true_density
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D

from report.animation import render_frames, write_gif
from report.figures import save_figure
from report.pages import FIG_W, Figure, Page
from runio.checkpoints import Loaded
from runio.cli import resolve_device
from utils import sample

from .figures import (COMMITTED, DEMO_START, PROBLEM2_T, PROBLEM2_TIMES, STYLE, UNCOND_COLOUR, Settings,
                      committed_from, corner_text, draw_path, grid_lim, percent, progress, show_estimate, show_truth,
                      style_axes, window)

ANIMATION_TIMES = tuple(range(PROBLEM2_T, -1, -2))  # every other t from T to 0: holds PROBLEM2_TIMES
FLOOR_DRAWS = 4  # sets of exact draws per t for the estimator's floor: its mean and its spread (one set was noisy)


class Chains(NamedTuple):
    """What problem 2 measures on cfg.n chains of one model; the densities are per t of PROBLEM2_TIMES."""

    xs: torch.Tensor  # (T+1, n, 2) the chains, xs[i] at time t[i] = T - i, from x_T to x_0
    t: torch.Tensor  # (T+1,) long: T, T-1, ..., 0
    k: int  # the highlighted chain: the first whose x_T has both pixels within +-DEMO_START
    commit_t: torch.Tensor  # (n,) long: the last t from which q(final peak | x_t) stays >= COMMITTED
    rows: list  # per t: L1 to q(x_t) and its floor, bandwidth, majority share, std, chains committed
    frames: list  # the animation's arrays: a Frame per t of ANIMATION_TIMES
    x_t: np.ndarray  # (len(PROBLEM2_TIMES), n, 2)
    end: dict  # gmm.sample_quality of x_0 against fresh mixture draws
    grid: Grid  # where the densities are estimated and drawn: LIM widened to hold the highlighted path

    @property
    def path(self) -> np.ndarray:
        """(T+1, 2) the highlighted chain, from x_T to x_0."""
        return self.xs[:, self.k].numpy()

    def at(self, t: int) -> "Frame":
        return next(f for f in self.frames if f.t == t)

    @property
    def estimate(self) -> np.ndarray:
        """(len(PROBLEM2_TIMES), G, G) the density of x_t over the chains, at the still's times."""
        return np.stack([self.at(t).estimate for t in PROBLEM2_TIMES])

    @property
    def truth(self) -> np.ndarray:
        """(len(PROBLEM2_TIMES), G, G) the true q(x_t), at the still's times."""
        return np.stack([self.at(t).truth for t in PROBLEM2_TIMES])


class Frame(NamedTuple):
    """What one frame of problem2.gif shows, and the still's panel at the same t."""

    t: int
    estimate: np.ndarray  # (G, G) the density of x_t over the chains (cfg.density)
    truth: np.ndarray  # (G, G) the true q(x_t)
    path: np.ndarray  # (T - t + 1, 2) the highlighted chain from x_T to x_t


def page(cfg: Settings, models: dict) -> Page:
    """A trajectory over p_theta(x_t | t) at t = 50, 40, ..., 10, estimated from cfg.n chains."""
    chains = measure(cfg, models[PROBLEM2_T])
    grid = chains.grid
    arrays = dict(grid=grid.centers, t=np.array(PROBLEM2_TIMES), estimate=chains.estimate, truth=chains.truth,
                  x_t=chains.x_t, trajectory=chains.path, trajectory_t=chains.t.numpy(), trajectory_index=chains.k,
                  commit_t=chains.commit_t.numpy(), x0=chains.xs[-1].numpy())
    png = figure(cfg, chains, grid, arrays)
    gif = animation(cfg, chains, grid)
    return Page("Problem 2: a denoising trajectory over the estimated p_theta(x_t | t), T = 50", [
        Figure(png, f"Six square panels of the two-pixel plane. At t = {', '.join(map(str, PROBLEM2_TIMES))} the "
                    "density of x_t over all chains in viridis, with white contours of the true q(x_t), starts as one "
                    "round blob and splits into two lumps over the two peaks; an orange chain path grows from a star "
                    "at x_T and ends in an orange disc where the chain is at that t. The last panel: the true q(x_0) in "
                    "grey with the whole path. The window is wide enough to hold the whole path.",
               "Figure 1. The density of x_t over all chains (viridis) and the true q(x_t) of gmm.py (white: its 50 / "
               f"90 / 99 % regions), with one chain's path up to t (star: x_T, the first chain with both pixels of x_T "
               f"within +-{DEMO_START:g}; orange disc: its x_t at the panel's t, under the star at t = {PROBLEM2_T}; the "
               "window holds its whole path). "
               f"L1 = integral of |p_theta - q|; floor = the same estimator's L1 on as many exact draws of q(x_t) (mean +- sd "
               f"of {FLOOR_DRAWS} draws)."),
        Figure(gif, "Animation, two panels: the density of x_t over all chains with one chain moving over it (left), "
                    "and the true q(x_t) in grey (right), from t = 50 down to 0.",
               "Animation. The density of x_t from t = T to 0 with the highlighted chain moving over it (left), "
               "beside the true q(x_t) (right).")], blocks(cfg, chains))


def measure(cfg: Settings, run: Loaded) -> Chains:
    """cfg.n chains of the ancestral sampler (seed cfg.seed), and their density at each t of PROBLEM2_TIMES against
    the truth and against the estimator's floor (exact draws, seed cfg.seed + 20,000), on a cfg.grid-square grid
    over LIM widened to hold the highlighted chain's whole path (figures.window)."""
    model, schedule, *_ = run
    gmm, device = GMM(), resolve_device(cfg.device)
    _, traj = sample(model.to(device), schedule, cfg.n, generator=torch.Generator().manual_seed(cfg.seed),
                     trajectory=True, device=device, progress=not cfg.quiet)
    xs = traj.x.cpu()  # (T+1, n, 2), xs[i] at time traj.t[i] = T - i
    # the highlighted chain: the first whose start lies in the middle of the square
    inside = (xs[0].abs() < DEMO_START).all(1).nonzero()
    k = int(inside[0]) if len(inside) else 0
    grid = make_grid(cfg.grid, window(xs[:, k].numpy()))
    ab = schedule.alpha_bar.cpu()
    commit_t = committed_from(xs, traj.t, gmm.posterior(xs[-1], 1.0).argmax(1), ab, gmm)

    rows, frames, xt_all = [], [], []
    ref_gen = torch.Generator().manual_seed(cfg.seed + 20_000)
    for t in progress(ANIMATION_TIMES, cfg, desc="problem 2: densities"):
        a = float(ab[t])
        x_t = traj.at(t).cpu()
        q = true_density(grid, a, gmm)
        est = estimate_density(x_t.numpy(), grid, cfg.density)
        frames.append(Frame(t, est.density, q, xs[: schedule.T - t + 1, k].numpy()))
        if t not in PROBLEM2_TIMES:
            continue
        # the estimator's own error: the same estimator on cfg.n exact draws of q(x_t), FLOOR_DRAWS times
        refs = [sample_q_t(gmm, cfg.n, a, ref_gen) for _ in range(FLOOR_DRAWS)]
        floors = np.array([l1_distance(estimate_density(r.numpy(), grid, cfg.density).density, q, grid) for r in refs])
        x_ref = refs[0]
        peaks = math.sqrt(a) * gmm.means  # where the two lumps of q(x_t) sit
        major = int(gmm.weights.argmax())
        share = lambda x: float((torch.cdist(x.double(), peaks).argmin(1) == major).double().mean())
        rows.append(dict(t=t, alpha_bar=a, l1=l1_distance(est.density, q, grid),
                         l1_floor=float(floors.mean()), l1_floor_sd=float(floors.std(ddof=1)), bandwidth=est.bandwidth,
                         majority_share=share(x_t), majority_share_exact=share(x_ref),
                         std=float(x_t.std(0).mean()), std_exact=float(x_ref.std(0).mean()),
                         chains_committed=float((commit_t >= t).double().mean())))
        xt_all.append(x_t.numpy())
    end = sample_quality(xs[-1], gmm.sample(cfg.n, torch.Generator().manual_seed(cfg.seed + 10_000))[0], gmm)._asdict()
    return Chains(xs, traj.t, k, commit_t, rows, frames, np.stack(xt_all), end, grid)


def figure(cfg: Settings, chains: Chains, grid: Grid, arrays: dict) -> str:
    """Five panels, t = 50..10: the estimated density over the truth's contours, with the highlighted path up
    to t; a sixth, t = 0: the true q(x_0) and the whole path. All over the grid's window, which holds the whole
    path. Written with its numbers (rows, arrays) as one set."""
    path, lim = chains.path, grid_lim(grid)
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(FIG_W, 5.5))
        gs = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 0.05], wspace=0.1, hspace=0.22, left=0.075, right=0.9,
                              top=0.89, bottom=0.075)
        axes = [fig.add_subplot(gs[i // 3, i % 3]) for i in range(6)]
        for i, (t, row) in enumerate(zip(PROBLEM2_TIMES, chains.rows)):
            im = show_estimate(axes[i], chains.estimate[i], chains.truth[i], grid)
            draw_path(axes[i], path[: PROBLEM2_T - t + 1], UNCOND_COLOUR)
            axes[i].set_title(f"t = {t}: $p_\\theta(x_t)$ over $q(x_t)$")
            corner_text(axes[i], f"L1 {row['l1']:.3f}\nfloor {row['l1_floor']:.3f} +- {row['l1_floor_sd']:.3f}")
            style_axes(axes[i], left_label=i % 3 == 0, bottom_label=i >= 3, lim=lim)
        show_truth(axes[5], true_density(grid, 1.0, GMM()), grid)
        draw_path(axes[5], path, UNCOND_COLOUR)
        axes[5].set_title("t = 0: ground truth $q(x_0)$")
        style_axes(axes[5], left_label=False, bottom_label=True, lim=lim)
        fig.colorbar(im, cax=fig.add_subplot(gs[:, 3])).set_label("density / peak of true $q(x_t)$ (square-root scale)")
        fig.legend(handles=path_legend(), loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.49, 1.0))
        return save_figure(fig, cfg.out, "problem2", chains.rows, **arrays)


def path_legend() -> list:
    """Legend handles for draw_path's marks: the start x_T, the path, and the disc at the chain's state x_t."""
    return [Line2D([], [], ls="", marker="*", ms=11, color="white", mec="black", mew=0.9,
                   label="$x_T$: the chain's start"),
            Line2D([], [], color=UNCOND_COLOUR, lw=1.4, marker="o", ms=2.2, label="its path, a dot per step"),
            Line2D([], [], ls="", marker="o", ms=7.5, color=UNCOND_COLOUR, mec="black", mew=0.9,
                   label="orange disc: the chain's $x_t$ at the panel's t")]


def animation(cfg: Settings, chains: Chains, grid: Grid) -> str:
    """problem2.gif: a frame per Frame of chains.frames, the density of x_t with the chain up to t over it
    (left, as the still's panels) beside the true q(x_t) (right); it loops, the last frame held."""
    with plt.rc_context(STYLE):
        fig = MplFigure(figsize=(5.6, 3.0), dpi=100)
        left, right = fig.subplots(1, 2)
        fig.subplots_adjust(left=0.1, right=0.98, top=0.88, bottom=0.15, wspace=0.12)

        def draw(frame: Frame):
            for ax in (left, right):
                ax.clear()
            show_estimate(left, frame.estimate, frame.truth, grid)
            draw_path(left, frame.path, UNCOND_COLOUR)
            left.set_title(f"t = {frame.t}: $p_\\theta(x_t)$, one chain")
            show_truth(right, frame.truth, grid)
            right.plot(*frame.path[-1], "o", color=UNCOND_COLOUR, ms=6, mec="black", mew=0.8, zorder=5)
            right.set_title(f"t = {frame.t}: true $q(x_t)$")
            style_axes(left, lim=grid_lim(grid))
            style_axes(right, left_label=False, lim=grid_lim(grid))

        frames = render_frames(fig, draw, chains.frames)
    return write_gif(os.path.join(cfg.out, "problem2.gif"), frames)


def match_text(rows: list) -> str:
    """How the learned density compares with the true q(x_t), t by t: its L1 distance against the floor (the
    same estimator's L1 on as many exact draws, FLOOR_DRAWS times: mean and sd), naming each t where it is above
    the floor by more than 2 sd of the floor's own draws, and by how much."""
    above = [r for r in rows if r["l1"] > r["l1_floor"] + 2 * r["l1_floor_sd"]]
    within = [r["t"] for r in rows if r not in above]
    floor = (f"the floor, the same estimator's L1 distance on as many exact draws, mean of {FLOOR_DRAWS} draws; within "
             "2 sd of it counts as at the floor")
    if not above:
        return f"matches the true q(x_t) to within the estimator's own error at every t shown ({floor})"
    excess = ", ".join(f"{r['l1'] - r['l1_floor']:.3f}" for r in above)
    l1s = ", ".join(f"{r['l1']:.3f}" for r in above)
    floors = ", ".join(f"{r['l1_floor']:.3f} +- {r['l1_floor_sd']:.3f}" for r in above)
    by = f"by {excess} (L1 {l1s} against floors {floors} sd; L1 runs from 0 to 2)"
    ts = ", ".join(str(r["t"]) for r in above)
    if not within:
        return f"is further from the true q(x_t) than the estimator's own error at every t shown ({floor}): {by}"
    return (f"is within the estimator's own error of the true q(x_t) at t = {', '.join(map(str, within))} ({floor}) "
            f"and above it at t = {ts}, {by}")


def blocks(cfg: Settings, chains: Chains) -> list:
    """The answer (what the densities and the chain do), then how to read the figure."""
    rows, path, commit_t, end, gmm = chains.rows, chains.path, chains.commit_t, chains.end, GMM()
    k_commit = int(commit_t[chains.k])
    first_jump = float((chains.xs[1] - chains.xs[0]).norm(dim=1).mean())  # mean |x_{T-1} - x_T| over the chains
    r50, r10 = rows[0], rows[-1]
    end_peak = int(gmm.posterior(torch.as_tensor(path[-1:]), 1.0).argmax())
    half, most = (int(torch.quantile(commit_t.double(), q).round()) for q in (0.5, 0.1))
    answer = (
        f"What we observe: at t = {r50['t']} the estimated density is one round blob as wide as pure noise (std "
        f"{r50['std']:.2f} per pixel; exact q(x_t): {r50['std_exact']:.2f}). Going down to t = {r10['t']} it "
        f"contracts and splits into two lumps that move toward the two peaks, the larger holding "
        f"{r10['majority_share']:.3f} of the chains at t = {r10['t']} (exact {r10['majority_share_exact']:.3f}). The learned density "
        + match_text(rows) + ". The highlighted chain makes a large first step (x_T says little about where a chain "
          f"ends: the first step moves chains by {first_jump:.2f} on average), then drifts and commits to peak "
          f"{end_peak} only at t = {k_commit} (the last t from which q(its final peak | x_t) stays >= "
          f"{COMMITTED:g}); half of all {cfg.n} chains have committed to their final peak by t = {half}, 90 % by "
          f"t = {most}.")
    return [("answer", answer), ("text", (
        f"At t = 0: majority peak {end['majority_weight']:.3f} (truth "
        f"{float(gmm.weights.max()):.3f}), {percent(end['within_5sigma'])} within 5 sigma of a peak, peak widths "
        f"{end['std_ratio_0']:.2f} / {end['std_ratio_1']:.2f} of the truth, energy distance "
        f"{end['energy_distance']:.4f}. Numbers: problem2.csv. Reproduce: python visualize.py --problem 2 --n {cfg.n} "
        f"--density {cfg.density} --seed {cfg.seed}."))]
