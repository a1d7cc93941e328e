"""Problem 3: the final samples of the T = 5, 10, 25, 50 models against the truth.

    page = two_pixel.problem3.page(cfg, models)   # needs models[T] for each T of cfg.ts; writes problem3.*

Each model's samples are set beside the exact noise predictor's (gmm.py) through the same sampler, from the
same x_T and step noise: what the exact predictor gets wrong at a small T is the sampler's error, the rest is
the network's. Everything is drawn in the ZOOM window around the two peaks.
"""
from __future__ import annotations

from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch

from gmm import GMM, Grid, estimate_density, l1_distance, make_grid, sample_quality, true_density
from report.figures import save_figure
from report.pages import FIG_W, Figure, Page
from runio.cli import resolve_device
from utils import sample

from .figures import (STYLE, UNCOND_COLOUR, ZOOM, Settings, corner_text, exact_predictor, percent, progress,
                      show_estimate, show_truth, style_axes)


class Samples(NamedTuple):
    """Problem 3's measurements: per T of cfg.ts, cfg.n samples of the network and of the exact predictor."""

    rows: list  # per T, network then exact: sample_quality, L1 to q(x_0) in the window, the share outside it
    network: np.ndarray  # (len(ts), n, 2) the network's samples
    exact: np.ndarray  # (len(ts), n, 2) the exact predictor's, from the same x_T and noise
    estimate: np.ndarray  # (len(ts), G, G) the density of the network's samples in the window
    q0: np.ndarray  # (G, G) the true q(x_0) in the window
    truth: dict  # sample_quality of one set of true draws against another: the floor of every distance


def page(cfg: Settings, models: dict) -> Page:
    """Samples of the T = 5, 10, 25, 50 models against the truth and against the exact predictor."""
    grid = make_grid(cfg.grid, ZOOM)  # the window where the samples' mass is
    s = measure(cfg, models, grid)
    png = figure(cfg, s, grid, dict(T=np.array(cfg.ts), grid=grid.centers, samples=s.network, exact_samples=s.exact,
                                    estimate=s.estimate, truth=s.q0))
    ts = ", ".join(map(str, cfg.ts))
    fig = Figure(png, f"One row per T = {ts}: the network's samples over the true q(x_0) in grey, their estimated "
                      "density in viridis over the truth's contours, and a histogram of each sample's distance to the "
                      "nearest peak against the truth's.",
                 f"Figure. Samples of the models trained with T = {ts}, their density, and their distance to a peak.")
    return Page(f"Problem 3: T = {ts}", [fig], blocks(cfg, s.rows, s.truth))


def measure(cfg: Settings, models: dict, grid: Grid) -> Samples:
    """cfg.n samples per T and predictor (seed cfg.seed for all), scored against fresh mixture draws
    (seed cfg.seed + 10,000); `truth` scores those draws against another set (seed cfg.seed + 30,000)."""
    gmm, device = GMM(), resolve_device(cfg.device)
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
    return Samples(rows, np.stack(samples), np.stack(exact_samples), np.stack(dens), q0, truth)


def figure(cfg: Settings, s: Samples, grid: Grid, arrays: dict) -> str:
    """One row per T: the samples over the truth, their estimated density, and their distance to a peak."""
    with plt.rc_context(STYLE):
        nT = len(cfg.ts)
        fig = plt.figure(figsize=(FIG_W, 2.02 * nT + 0.55))
        gs = fig.add_gridspec(nT, 5, width_ratios=[1, 1, 0.035, 0.45, 1.0], wspace=0.08, hspace=0.16, left=0.075,
                              right=0.985, top=1 - 0.3 / fig.get_figheight(), bottom=0.42 / fig.get_figheight())
        for i, T in enumerate(cfg.ts):
            net, ex = s.rows[2 * i], s.rows[2 * i + 1]
            last = i == nT - 1
            ax = fig.add_subplot(gs[i, 0])
            show_truth(ax, s.q0, grid)
            ax.scatter(s.network[i][:, 0], s.network[i][:, 1], s=1.2, lw=0, color=UNCOND_COLOUR, alpha=0.4,
                       rasterized=True)
            ax.set_title(f"T = {T}: samples over $q(x_0)$", pad=3)
            if net["outside_window"] > 0:
                corner_text(ax, f"{percent(net['outside_window'])} outside", "upper right")
            style_axes(ax, left_label=True, bottom_label=last, lim=ZOOM)
            ax = fig.add_subplot(gs[i, 1])
            im = show_estimate(ax, s.estimate[i], s.q0, grid)
            ax.set_title(f"T = {T}: their estimated density", pad=3)
            style_axes(ax, left_label=False, bottom_label=last, lim=ZOOM)
            ax = fig.add_subplot(gs[i, 4])
            distance_panel(ax, T, s.network[i], s.exact[i], net, ex, last)
            if i == 0:
                ax.legend(loc="lower left", frameon=False)
        fig.colorbar(im, cax=fig.add_subplot(gs[:, 2])).set_label("estimated density / true peak (square-root scale)")
        return save_figure(fig, cfg.out, "problem3", s.rows, **arrays)  # the figure and its numbers: one set


def distance_panel(ax, T: int, network: np.ndarray, exact: np.ndarray, net: dict, ex: dict, last: bool) -> None:
    """Each sample's distance to the nearest peak in sigma, (n, 2) samples of the network and of the exact
    predictor over the truth's r exp(-r^2 / 2): a peak of the wrong width moves the hump, strays make the tail."""
    gmm = GMM()
    # distance of each sample to the nearest peak, in sigma: its width and its strays in one curve
    dist = lambda x: (torch.cdist(torch.as_tensor(x).double(), gmm.means).min(1).values / gmm.std).numpy()
    bins = np.linspace(0, 10, 41)
    r = np.linspace(0, 10, 400)
    ax.fill_between(r, r * np.exp(-r ** 2 / 2), color="#bbbbbb", label="truth")
    for x, colour, ls, label in ((network, UNCOND_COLOUR, "-", "network"), (exact, "black", "--", "exact eps")):
        ax.hist(np.minimum(dist(x), 9.99), bins=bins, density=True, histtype="step", color=colour, ls=ls,
                lw=1.3, label=label)
    ax.set(yscale="log", ylim=(1e-3, 1.5), xlim=(0, 10), ylabel="density")
    ax.axvline(5, color="#666666", lw=0.6, ls=":")
    corner_text(ax, f"within 5 sigma: {percent(net['within_5sigma'])}\nexact eps: {percent(ex['within_5sigma'])}",
                "upper right")
    ax.set_title(f"T = {T}: distance to a peak", pad=3)
    ax.set_xlabel("distance to the nearest peak / sigma" if last else "")
    ax.tick_params(labelbottom=last)


def blocks(cfg: Settings, rows: list, truth: dict) -> list:
    """The answer (modes, width and strays against T; the sampler's share of the error), then the evidence."""
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
