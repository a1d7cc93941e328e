"""Problem 4: guided generation, y = 0 and y = 1 from the same x_T, and a sweep over the guidance scale w.

    page = two_pixel.problem4.page(cfg, models)   # needs models[50]; writes problem4.* and problem4_sweep.*

Classifier-free guidance, eps = (1 + w) eps(x_t, t, y) - w eps(x_t, t, null) (Ho & Salimans 2022, Eq. 6),
through the same ancestral sampler; the exact noise predictor of gmm.py under the same formula is the
reference. Figure 1 is the handout's (one x_T, both labels, guidance cfg.traj_w); figure 2 the sweep over cfg.ws;
problem4.gif draws figure 1's two chains step by step (its frames: chain_frames of the same paths).
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import ticker
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.figure import Figure as MplFigure

from gmm import GMM, hdr_levels, make_grid, peak_stats, push_past_peak, true_density
from report.animation import render_frames, write_gif
from report.figures import save_figure
from report.pages import FIG_W, Figure, Page
from runio.checkpoints import Loaded
from runio.cli import resolve_device
from utils import SamplerSettings, sample

from .figures import (CLASS_COLOURS, CLASS_LINES, CLASS_MARKERS, COMMITTED, DEMO_START, PROBLEM2_T, STYLE, ZOOM,
                      Settings, committed_from, corner_text, draw_path, exact_predictor, percent, progress, show_truth,
                      style_axes)


class Chains(NamedTuple):
    """The unlabelled, y = 0 and y = 1 chains from the same cfg.n starts x_T and the same step noise."""

    x_T: torch.Tensor  # (n, 2) the starts
    k: int  # the highlighted start: the first with both pixels within +-DEMO_START
    paths: dict  # {None, 0, 1: (T+1, 2)} the network's chain from x_T[k] per label, from x_T to x_0
    ends: dict  # {(predictor, y): (n,) long} the peak each chain ends nearest
    split: dict  # {predictor: share of starts whose y = 0 chain ends in peak 0 and y = 1 chain in peak 1}
    commit: dict  # {0, 1: (n,) long} the network's: the last t from which q(y | x_t) stays >= COMMITTED

    @property
    def demo_commit(self) -> dict:
        """{0, 1: t} where the highlighted chain commits to the requested peak."""
        return {y: int(self.commit[y][self.k]) for y in (0, 1)}

    @property
    def ends_k(self) -> dict:
        """{None, 0, 1: the peak} where the network's highlighted chain ends."""
        return {y: int(self.ends["network", y][self.k]) for y in (None, 0, 1)}


class Sweep(NamedTuple):
    """m samples per guidance scale w of cfg.ws, label y and predictor."""

    rows: list  # per w, predictor, y: share in the requested peak, within 5 sigma, push past the peak, std ratio
    samples: dict  # {(w, y): (m, 2)} the network's samples
    m: int


def page(cfg: Settings, models: dict) -> Page:
    """Same x_T with y = 0 and y = 1 (the required figure), then a sweep over the guidance scale w."""
    run, gmm = models[PROBLEM2_T], GMM()
    chains = measure_chains(cfg, run)
    sw = measure_sweep(cfg, run)
    trajs, commit, k = chains.paths, chains.commit, chains.k
    arrays = dict(w=np.array(cfg.ws), x_T=chains.x_T[k].numpy(), trajectory_index=k, trajectory_uncond=trajs[None],
                  trajectory_y0=trajs[0], trajectory_y1=trajs[1], commit_t_y0=commit[0].numpy(),
                  commit_t_y1=commit[1].numpy(), samples_y0=np.stack([sw.samples[w, 0] for w in cfg.ws]),
                  samples_y1=np.stack([sw.samples[w, 1] for w in cfg.ws]))
    png = chains_figure(cfg, chains.paths, chains.demo_commit, run.schedule.T, gmm, (sw.rows, arrays))
    png_sweep = sweep_figure(cfg, sw.rows, sw.samples, gmm)
    gif = animation(cfg, chain_frames(trajs), gmm)
    figures = [
        Figure(png, "Left: the two-pixel plane with the true density in grey and the two class regions as blue and "
                    "vermillion contours; from one white star, x_T, a blue solid chain (y = 0) and a vermillion dashed "
                    "chain (y = 1) run together, then part towards their own peaks. Right: each pixel of both chains "
                    "and of the unlabelled chain against t.",
               f"Figure 1. The y = 0 and y = 1 chains from one x_T at guidance w = {cfg.traj_w:g}. Left, in the plane "
               f"(star: x_T, the first of the {cfg.n} starts with both pixels within +-{DEMO_START:g}) over the true "
               "q(x_0) (grey, dark contours) and the true class densities q(x_0 | y) (coloured contours: 50 / 90 / "
               "99 %); large marker: x_0; diamond: where the chain commits (q(y | x_t) stays >= "
               f"{COMMITTED:g} from there on). Right, the same chains and the unlabelled one, pixel by pixel against "
               "t."),
        Figure(png_sweep, f"{len(cfg.ws)} small panels, one per guidance scale w = "
                          f"{', '.join(f'{w:g}' for w in cfg.ws)}: blue and vermillion samples of y = 0 and y = 1 "
                          "over the true density, with the share in the requested peak in a corner.",
               f"Figure 2. {sw.m} samples per label for each guidance scale w (y = 0 in blue, y = 1 in vermillion), "
               "eps = (1 + w) eps(x, t, y) - w eps(x, t, null); 'exact' in the text uses GMM().noise_predictor with "
               "the same formula."),
        Figure(gif, "Animation of the two-pixel plane: from one white star the y = 0 chain (blue) and the y = 1 chain "
                    "(vermillion) move one step per frame from t = T to 0 and end in different peaks.",
               "Animation. The y = 0 and y = 1 chains from one x_T, frame by frame (figure 1, left).")]
    return Page("Problem 4: guided generation from the same x_T", figures, blocks(cfg, chains, sw))


def measure_chains(cfg: Settings, run: Loaded) -> Chains:
    """cfg.n starts x_T (seed cfg.seed), each run with no label, y = 0 and y = 1 at guidance cfg.traj_w and the
    same step noise (seed cfg.seed + 1), by the network and by the exact predictor."""
    (model, schedule, *_), gmm, device = run, GMM(), resolve_device(cfg.device)
    model = model.to(device)
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
    return Chains(x_T, k, trajs, ends, split, commit)


def measure_sweep(cfg: Settings, run: Loaded) -> Sweep:
    """m = max(2, cfg.n // 2) samples per w, y and predictor, all from the same noise (seed cfg.seed + 2)."""
    (model, schedule, *_), gmm, device = run, GMM(), resolve_device(cfg.device)
    model = model.to(device)
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
                                 push_se=push_standard_error(x, y, gmm), std_ratio=s.std_ratio[y]))
                if name == "network":
                    sweep[w, y] = x.numpy()
    return Sweep(rows, sweep, m)


def push_standard_error(x: torch.Tensor, y: int, gmm: GMM) -> float:
    """The standard error of gmm.push_past_peak(x, y): the spread of the same offsets (samples (m, 2) assigned
    to peak y, along the axis pointing away from the other peak, in sigma) over the square root of their count."""
    mu = gmm.means
    u = (mu[y] - mu[1 - y]) / (mu[y] - mu[1 - y]).norm()
    x = x.double()
    offsets = (x[torch.cdist(x, mu).argmin(1) == y] - mu[y]) @ u / gmm.std
    return float(offsets.std() / len(offsets) ** 0.5) if len(offsets) > 1 else float("nan")


def chains_figure(cfg: Settings, trajs: dict, demo_commit: dict, T: int, gmm: GMM, numbers: tuple) -> str:
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
            axis.set_major_locator(ticker.MultipleLocator(1))
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
        rows, arrays = numbers  # the page's numbers (rows, arrays), written with this figure as one set
        return save_figure(fig, cfg.out, "problem4", rows, **arrays)


def sweep_figure(cfg: Settings, rows: list, sweep: dict, gmm: GMM) -> str:
    """Guidance sweep, a second and smaller figure: samples per label for each w."""
    grid = make_grid(cfg.grid, ZOOM)
    q0 = true_density(grid, 1.0, gmm)
    get = {(r["w"], r["y"]): r for r in rows if r["predictor"] == "network"}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(cfg.ws), figsize=(FIG_W, 2.2), squeeze=False)
        for i, (ax, w) in enumerate(zip(axes[0], cfg.ws)):
            show_truth(ax, q0, grid)
            for y in (0, 1):
                ax.scatter(*sweep[w, y].T, s=1.0, lw=0, color=CLASS_COLOURS[y], alpha=0.5, rasterized=True)
            ax.set_title(f"w = {w:g}", pad=3)
            corner_text(ax, f"in peak {100 * get[w, 0]['in_requested_peak']:.0f} / "
                            f"{100 * get[w, 1]['in_requested_peak']:.0f} %")
            style_axes(ax, left_label=i == 0, bottom_label=True, lim=ZOOM)
        handles = [Line2D([], [], ls="", marker="o", ms=5, color=CLASS_COLOURS[y], label=f"samples with y = {y}")
                   for y in (0, 1)]
        handles.append(Patch(facecolor="#999999", edgecolor="#333333", lw=0.6, label="true $q(x_0)$"))
        fig.legend(handles=handles, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.0),
                   title="corner: % of y = 0 / y = 1 samples in the requested peak", title_fontsize=7.5)
        fig.subplots_adjust(left=0.075, right=0.99, top=0.72, bottom=0.2, wspace=0.08)
        return save_figure(fig, cfg.out, "problem4_sweep")


class ChainFrame(NamedTuple):
    """One frame of problem4.gif: both labels' chains from x_T down to t."""

    t: int
    y0: np.ndarray  # (T - t + 1, 2) the y = 0 chain, x_T .. x_t
    y1: np.ndarray  # (T - t + 1, 2) the y = 1 chain


def chain_frames(trajs: dict) -> list:
    """A ChainFrame per t = T .. 0 of the network's chains trajs[0], trajs[1] ((T+1, 2), x_T to x_0)."""
    T = len(trajs[0]) - 1
    return [ChainFrame(t, trajs[0][: T - t + 1], trajs[1][: T - t + 1]) for t in range(T, -1, -1)]


def animation(cfg: Settings, frames: list, gmm: GMM) -> str:
    """problem4.gif: the two chains of figure 1 (left) growing one step per frame over the true q(x_0) and
    the class densities; the background is drawn once, the chains per frame."""
    pts = np.concatenate([frames[-1].y0, frames[-1].y1, gmm.means.numpy()])
    lim = (float(pts.min()) - 0.2, float(pts.max()) + 0.2)
    grid = make_grid(cfg.grid, lim)
    with plt.rc_context(STYLE):
        fig = MplFigure(figsize=(3.6, 3.5), dpi=100)
        ax = fig.subplots()
        fig.subplots_adjust(left=0.16, right=0.97, top=0.9, bottom=0.13)
        show_truth(ax, true_density(grid, 1.0, gmm), grid, lines="#222222")
        for y in (0, 1):
            q_y = true_density(grid, 1.0, gmm, y=y)
            ax.contour(grid.centers, grid.centers, q_y, levels=hdr_levels(q_y, grid), colors=CLASS_COLOURS[y],
                       linewidths=0.9, zorder=3)
        ax.plot(*frames[0].y0[0], "*", color="white", ms=12, mec="black", mew=0.9, zorder=6)
        lines = [ax.plot([], [], CLASS_LINES[y], color=CLASS_COLOURS[y], lw=1.4, zorder=4, label=f"y = {y}")[0]
                 for y in (0, 1)]
        heads = [ax.plot([], [], CLASS_MARKERS[y], color=CLASS_COLOURS[y], ms=7, mec="black", mew=0.9, zorder=5)[0]
                 for y in (0, 1)]
        style_axes(ax, lim=lim)
        ax.legend(loc="best", framealpha=0.9)

        def draw(frame: ChainFrame):
            for y, path in enumerate((frame.y0, frame.y1)):
                lines[y].set_data(path[:, 0], path[:, 1])
                heads[y].set_data(path[-1:, 0], path[-1:, 1])
            ax.set_title(f"t = {frame.t}, guidance w = {cfg.traj_w:g}")

        rgb = render_frames(fig, draw, frames)
    return write_gif(os.path.join(cfg.out, "problem4.gif"), rgb)


SIGNIFICANT = 3.0  # standard errors: a difference smaller than this is not called a trend or a gap


def far_text(get: dict, ws) -> str:
    """Where the network's samples stray beyond 5 sigma of every peak (the spray the figure shows), or that none do."""
    far = [(w, y, 1 - get[w, y, "network"]["within_5sigma"]) for w in ws for y in (0, 1)]
    far = [(w, y, f) for w, y, f in far if f > 0]
    if not far:
        return ", all of them within 5 sigma of it"
    return "; beyond 5 sigma of every peak: " + ", ".join(f"{f:.1%} of the y = {y} samples at w = {w:g}" for w, y, f in far)


def push_text(rows: list, ws: tuple) -> str:
    """Per label, what the push past the peak centre (gmm.push_past_peak, in sigma) does as w grows, and
    whether the network's push at the largest w falls short of the exact predictor's: each verdict chosen
    by the difference against SIGNIFICANT standard errors. rows: measure_sweep's."""
    get = {(r["w"], r["y"], r["predictor"]): r for r in rows}
    w0, w1 = ws[0], ws[-1]
    se = lambda *r: sum(a["push_se"] ** 2 for a in r) ** 0.5
    parts = []
    for y in (0, 1):
        net = [get[w, y, "network"] for w in ws]
        a, b, ex = net[0], net[-1], get[w1, y, "exact"]
        rise = b["push_sigma"] - a["push_sigma"]
        pushes = [r["push_sigma"] for r in net]
        if abs(rise) > SIGNIFICANT * se(a, b):
            trend = (f"{'grows' if rise > 0 else 'shrinks'} with w, from {a['push_sigma']:+.2f} at w = {w0:g} to "
                     f"{b['push_sigma']:+.2f} at w = {w1:g}")
        else:
            trend = f"stays between {min(pushes):+.2f} and {max(pushes):+.2f} at every w from {w0:g} to {w1:g}"
        gap = ex["push_sigma"] - b["push_sigma"]
        if se(b, ex) > 0 and abs(gap) > SIGNIFICANT * se(b, ex):
            verdict = (f"the exact predictor's is {ex['push_sigma']:+.2f} at w = {w1:g}, so the network "
                       + (f"falls short by {gap:.2f} sigma" if gap > 0 else f"pushes {-gap:.2f} sigma farther")
                       + f" ({abs(gap) / se(b, ex):.1f} standard errors) at the same w")
        else:
            verdict = f"as the exact predictor's ({ex['push_sigma']:+.2f} at w = {w1:g})"
        parts.append(f"for y = {y} it {trend}; {verdict}")
    typical = max(r["push_se"] for r in rows if r["predictor"] == "network")
    return (f"The push past the peak centre, away from the other class (the mean offset of a label's samples in "
            f"sigma; standard error at most {typical:.2f}): " + "; ".join(parts) + ".")


def spread_text(rows: list, ws: tuple, m: int) -> str:
    """Per label, whether the network's samples at the largest w spread wider or narrower than the exact
    predictor's (std_ratio: std over the true peak's), against SIGNIFICANT standard errors (a std ratio r from
    m samples has SE about r / sqrt(2 m)); empty where neither label differs."""
    get = {(r["w"], r["y"], r["predictor"]): r for r in rows}
    w1, said = ws[-1], []
    for y in (0, 1):
        net, ex = get[w1, y, "network"]["std_ratio"], get[w1, y, "exact"]["std_ratio"]
        if abs(net - ex) > SIGNIFICANT * math.hypot(net, ex) / math.sqrt(2 * m):
            lower = [get[w, y, "network"]["std_ratio"] for w in ws[:-1]]
            said.append(f"the y = {y} samples spread {'wider' if net > ex else 'narrower'} than the exact "
                        f"predictor's (std {net:.2f} of the true peak's against {ex:.2f}; {min(lower):.2f}-"
                        f"{max(lower):.2f} at w = {ws[0]:g} to {ws[-2]:g}), visible in figure 2's w = {w1:g} panel")
    return f" At w = {w1:g} " + " and ".join(said) + "." if said else ""


def blocks(cfg: Settings, chains: Chains, sw: Sweep) -> list:
    """The answers (the label decides the mode; what guidance strength does), then how to read the figures."""
    rows, trajs, split, commit = sw.rows, chains.paths, chains.split, chains.commit
    ends_k, demo_commit = chains.ends_k, chains.demo_commit
    get = {(r["w"], r["y"], r["predictor"]): r for r in rows}
    w0 = cfg.ws[0]
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
    return [("answer", answer), ("answer", (
        f"Guidance strength (figure 2, not asked for): samples in the requested peak, y = 0 / y = 1: {sweep}"
        f"{far_text(get, cfg.ws)}. "
        + push_text(rows, cfg.ws) + spread_text(rows, cfg.ws, sw.m))), ("text", (
        "Numbers per w, y and predictor: problem4.csv. "
        f"Reproduce: python visualize.py --problem 4 --n {cfg.n} --traj-w {cfg.traj_w:g} --seed {cfg.seed}."))]
