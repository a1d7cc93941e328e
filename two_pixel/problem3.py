"""Problem 3: the final samples of the T = 5, 10, 25, 50 models against the truth.

    page = two_pixel.problem3.page(cfg, models)   # needs models[T] for each T of cfg.ts; writes problem3.*

Each model's samples are set beside the exact noise predictor's (gmm.py) through the same sampler, from the
same x_T and step noise: what the exact predictor gets wrong at a small T is the sampler's error, the rest is
the network's. Everything is drawn in the ZOOM window around the two peaks.
"""
from __future__ import annotations

import math
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


# sigma: a sample within CORE sigma of a peak centre is in that peak's core; beyond it from both, in the bridge
CORE = 3.0
TRUE_BRIDGE = math.exp(-CORE ** 2 / 2)  # share of a 2-D Gaussian beyond CORE sigma of its centre (1.1 %)
# per-coordinate RMS distance to the centre of a 2-D Gaussian's draws within CORE sigma, in sigma (0.974):
# r^2 is exponential with mean 2, and E[r^2 | r < c] = 2 - c^2 exp(-c^2 / 2) / (1 - exp(-c^2 / 2))
TRUE_CORE_RMS = math.sqrt((2 - CORE ** 2 * TRUE_BRIDGE / (1 - TRUE_BRIDGE)) / 2)
TRUE_MAJORITY = float(GMM().weights.max())  # the heaviest peak's weight, 0.65
SIGNIFICANT = 3.0  # standard errors: a difference smaller than this is not called a bias, a bridge or a width change


def shape(x: torch.Tensor, gmm: GMM) -> dict:
    """How samples x (n, 2) sit on the peaks: the majority peak's share; the bridge (samples beyond CORE sigma
    of both centres; truth TRUE_BRIDGE) and the part of it between the peaks (its projection on the line
    joining the centres falls between them); and per peak the core width (RMS per pixel of the samples within
    CORE sigma of that centre, over the truth's TRUE_CORE_RMS). The standard error of a share is that of n
    draws from the truth (never 0, so a share can always be tested against the truth); of a core width, its
    delta-method estimate (nan with fewer than two samples in the core)."""
    x, mu, n = x.double(), gmm.means, len(x)
    dist = torch.cdist(x, mu) / gmm.std  # (n, K) in sigma
    near, k = dist.min(1)
    binomial = lambda p: math.sqrt(p * (1 - p) / n)  # the standard error of a share p of n samples
    far = near > CORE
    axis = mu[1] - mu[0]
    along = (x - mu[0]) @ axis / axis.dot(axis)  # 0 at centre 0, 1 at centre 1
    bridge = float(far.double().mean())
    out = dict(majority_se=binomial(TRUE_MAJORITY), bridge=bridge, bridge_se=binomial(TRUE_BRIDGE),
               bridge_between=float((far & (along > 0) & (along < 1)).double().sum() / max(1, int(far.sum()))))
    for j in range(gmm.num_classes):
        d2 = ((x[(k == j) & ~far] - mu[j]) ** 2).mean(1) / gmm.std ** 2  # per-pixel squared distance, sigma^2
        rms = float(d2.mean().sqrt())
        out[f"core_{j}"] = rms / TRUE_CORE_RMS
        spread = float(d2.std()) if len(d2) > 1 else 0.0
        # delta method: se(sqrt(mean d2)) = se(mean d2) / (2 rms)
        out[f"core_se_{j}"] = spread / (2 * rms * len(d2) ** 0.5) / TRUE_CORE_RMS if spread > 0 else math.nan
    return out


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> tuple:
    """(mean, standard error) of a - b over paired per-sample values a, b (n,): the same x_T and noise."""
    d = (a.double() - b.double())
    return float(d.mean()), float(d.std() / len(d) ** 0.5)


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
                 f"Figure. One row per T = {ts}, zoomed to the peaks. Left: the network's {cfg.n} samples (orange) over "
                 "the true q(x_0) (grey, with its 50 / 90 / 99 % regions) and their core width; middle: their estimated "
                 "density; right: each sample's distance to the nearest peak in sigma (grey: the truth; orange: the "
                 "network; black dashed: the exact noise predictor through the same sampler from the same x_T and "
                 f"noise) and the share in the bridge, beyond {CORE:g} sigma (dashed line; dotted: 5 sigma). Table: "
                 "width in 5 sigma is problem 1's std ratio (samples within 5 sigma of a peak); the standard error of "
                 f"a share is at most {math.sqrt(0.25 / cfg.n):.3f}.")
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
            rows.append(dict(T=T, predictor=name, **sample_quality(x, ref, gmm)._asdict(), **shape(x, gmm),
                             l1_in_window=l1_distance(est.density, q0, grid), outside_window=outside))
            if name == "network":
                dens.append(est.density)
        # the network's majority share less the exact predictor's, pair by pair (same x_T and noise)
        in_major = lambda x: torch.cdist(x.double(), gmm.means).argmin(1) == int(gmm.weights.argmax())
        rows[-2]["majority_vs_exact"], rows[-2]["majority_vs_exact_se"] = paired_difference(
            in_major(out["network"]), in_major(out["exact"]))
        rows[-1]["majority_vs_exact"], rows[-1]["majority_vs_exact_se"] = 0.0, 0.0
        samples.append(out["network"].numpy())
        exact_samples.append(out["exact"].numpy())
    truth = sample_quality(ref, gmm.sample(cfg.n, torch.Generator().manual_seed(cfg.seed + 30_000))[0], gmm)._asdict()
    return Samples(rows, np.stack(samples), np.stack(exact_samples), np.stack(dens), q0, truth)


ROW_H = 1.35  # inches per T: the figure, its caption and the page's numbers fit on one sheet


def figure(cfg: Settings, s: Samples, grid: Grid, arrays: dict) -> str:
    """One row per T: the samples over the truth, their estimated density, and their distance to a peak."""
    with plt.rc_context(STYLE):
        nT = len(cfg.ts)
        fig = plt.figure(figsize=(FIG_W, ROW_H * nT + 0.55))
        gs = fig.add_gridspec(nT, 5, width_ratios=[1, 1, 0.035, 0.45, 1.0], wspace=0.08, hspace=0.24, left=0.075,
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
            corner_text(ax, f"core width\n{net['core_0']:.2f} / {net['core_1']:.2f}", "lower left")
            style_axes(ax, left_label=True, bottom_label=last, lim=ZOOM)
            ax = fig.add_subplot(gs[i, 1])
            im = show_estimate(ax, s.estimate[i], s.q0, grid)
            ax.set_title(f"T = {T}: their estimated density", pad=3)
            style_axes(ax, left_label=False, bottom_label=last, lim=ZOOM)
            ax = fig.add_subplot(gs[i, 4])
            distance_panel(ax, T, s.network[i], s.exact[i], net, ex, last)
            if last:  # the largest T strays least: the legend fits right of its hump
                ax.legend(loc="center right", frameon=False, handlelength=1.6)
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
    ax.set(yscale="log", ylim=(1e-3, 30), xlim=(0, 10), ylabel="density")  # headroom for the corner text
    ax.axvline(CORE, color="#666666", lw=0.7, ls="--")
    ax.axvline(5, color="#666666", lw=0.6, ls=":")

    corner_text(ax, f"bridge {percent(net['bridge'])}\nexact eps {percent(ex['bridge'])}", "upper right")
    ax.set_title(f"T = {T}: distance to a peak", pad=3)
    ax.set_xlabel("distance to the nearest peak / sigma" if last else "")
    ax.tick_params(labelbottom=last)


def blocks(cfg: Settings, rows: list, truth: dict) -> list:
    """The answer (the weights, the cores and the bridge against T; the sampler's share of the error), then
    the per-T numbers as a table."""
    net = {r["T"]: r for r in rows if r["predictor"] == "network"}
    ex = {r["T"]: r for r in rows if r["predictor"] == "exact"}
    ts = list(cfg.ts)
    gaps = {T: net[T]["energy_distance"] - ex[T]["energy_distance"] for T in ts}
    worse = [T for T in ts if gaps[T] > beyond_floor(truth["energy_distance"])]
    answer = (
        f"What we observe in the final distribution: {error_trend(net, ts, truth['energy_distance'])} "
        f"{weights_text(net, ex, ts)} {shape_text(net, ex, ts)} "
        + "Whose is the bridge: the exact noise predictor with the same T and noise puts "
        + "; ".join(f"{percent(ex[T]['bridge'])} in it at T = {T} (the network {percent(net[T]['bridge'])}: "
                    + ("much of it the sampler's)" if ex[T]["bridge"] > net[T]["bridge"] / 2 else "mostly the network's)")
                    for T in ts[:2])
        + ", and by the energy distance " + (
              f"the network adds error of its own at T = {', '.join(map(str, worse))} (gaps over the exact predictor "
              f"of {', '.join(f'{gaps[T]:.4f}' for T in worse)}, each over 5 times the floor)." if worse else
              "the network adds no error beyond the sampler's at any T (no gap above 5 times the floor)."))
    two = lambda r, k: f"{r[k + '_0']:.2f}/{r[k + '_1']:.2f}"
    columns = lambda r: [f"{r['majority_weight']:.3f}", percent(r["bridge"]), two(r, "core"),
                         f"{r['std_ratio_0']:.2f}/{r['std_ratio_1']:.2f}", f"{r['energy_distance']:.4f}"]
    row = lambda first, cells: f"{first:<6}" + "".join(f"{c:>11}" for c in cells)
    table = [f"{'':6}" + "".join(f"{h:^22}" for h in ("majority peak", f"bridge > {CORE:g} sigma", "core width 0/1",
                                                      "width in 5 sigma", "energy distance")),
             row("T", ["network", "exact"] * 5)]
    table += [row(T, [c for pair in zip(columns(net[T]), columns(ex[T])) for c in pair]) for T in ts]
    table.append(row("truth", [c for c in (f"{TRUE_MAJORITY:.3f}", percent(TRUE_BRIDGE), "1/1", "1/1",
                                           f"{truth['energy_distance']:.4f}") for c in (c, "")]))
    return [("answer", answer), ("table", "\n".join(table)), ("text", (
        f"Numbers: problem3.csv; python visualize.py --problem 3 --n {cfg.n} --seed {cfg.seed}."))]


def beyond_floor(floor: float) -> float:
    """The smallest energy-distance difference the page calls real: 5 times the distance between two sets of true
    draws (and at least 2e-4)."""
    return max(5 * floor, 2e-4)


def error_trend(net: dict, ts: list, floor: float) -> str:
    """The plain answer first: how the samples' energy distance to the truth moves with T, a step counted only
    where it exceeds 5 times the distance between two sets of true draws (as the gaps below)."""
    e, tol = [net[T]["energy_distance"] for T in ts], beyond_floor(floor)
    if all(a - b > tol for a, b in zip(e, e[1:])):
        how = "falls at every step of T"
    elif e[0] - e[-1] > tol:
        how = f"falls from T = {ts[0]} to T = {ts[-1]}, though not by more than 5 times the floor at every step"
    else:
        how = "does not fall measurably with T"
    return (f"The error {how} (energy distance to the truth {', '.join(f'{v:.4f}' for v in e)} for T = "
            f"{', '.join(map(str, ts))}; floor {floor:.4f}, between two sets of true draws).")


def weights_text(net: dict, ex: dict, ts: list) -> str:
    """Both modes kept? The majority peak's share per T against the truth, called a bias where it is more
    than SIGNIFICANT standard errors off, with the exact predictor's share and the network's own part of it."""
    z = lambda r: (r["majority_weight"] - TRUE_MAJORITY) / r["majority_se"]
    lost = [T for T in ts if min(net[T]["majority_weight"], 1 - net[T]["majority_weight"]) < (1 - TRUE_MAJORITY) / 2]
    text = ("Every model keeps both modes" if not lost else
            f"The minority mode is mostly lost at T = {', '.join(map(str, lost))}") + (
        ": the majority peak holds " + ", ".join(f"{net[T]['majority_weight']:.3f}" for T in ts)
        + f" of the samples for T = {', '.join(map(str, ts))} (truth {TRUE_MAJORITY:.2f})")
    biased = [T for T in ts if abs(z(net[T])) > SIGNIFICANT]
    if not biased:
        return text + f", within {SIGNIFICANT:g} standard errors of the truth at every T."
    text += ": a bias of " + ", ".join(f"{net[T]['majority_weight'] - TRUE_MAJORITY:+.3f} ({z(net[T]):.1f} "
                                       f"{'standard errors, SE' if i == 0 else 'SE'}) at T = {T}"
                                       for i, T in enumerate(biased)) + "."
    shared = [T for T in biased if abs(z(ex[T])) > SIGNIFICANT and z(ex[T]) * z(net[T]) > 0]
    own = [T for T in biased if abs(net[T]["majority_vs_exact"]) > SIGNIFICANT * net[T]["majority_vs_exact_se"]]
    exact = "; ".join(f"{ex[T]['majority_weight']:.3f}, {z(ex[T]):.1f} SE, at T = {T}" for T in biased)
    adds = lambda Ts: ", ".join(f"{net[T]['majority_vs_exact']:+.3f} +- {net[T]['majority_vs_exact_se']:.3f} (T = {T})"
                                for T in Ts)
    rest = [T for T in biased if T not in own]
    if shared == biased:
        return text + (f" The exact predictor through the same sampler shares it ({exact}): "
                       + (f"the sampler's bias, to which the network adds, sample by sample, {adds(own)}"
                          + (f"; nothing beyond {SIGNIFICANT:g} SE at T = {', '.join(map(str, rest))}: {adds(rest)}"
                             if rest else "") if own else
                          f"the sampler's bias; sample by sample the network adds nothing beyond {SIGNIFICANT:g} SE: "
                          + adds(biased)) + ".")
    if shared:
        return text + f" The exact predictor shares it only at T = {', '.join(map(str, shared))} ({exact})."
    return text + f" The exact predictor does not share it ({exact}): the network's bias."


def shape_text(net: dict, ex: dict, ts: list) -> str:
    """What few steps do to the peaks, at the smallest T against the largest: a bridge of samples between the
    peaks (its share against the truth's) and the cores' width, each chosen by SIGNIFICANT standard errors."""
    lo, hi = ts[0], ts[-1]

    brief = lambda r: f"{r['core_0']:.2f} / {r['core_1']:.2f}"

    def core(r) -> str:
        z = [(r[f"core_{j}"] - 1) / r[f"core_se_{j}"] for j in (0, 1)]
        word = ("not measurable (too few samples in a core)" if any(math.isnan(v) for v in z) else
                "narrower than the truth" if all(v < -SIGNIFICANT for v in z) else
                "wider than the truth" if all(v > SIGNIFICANT for v in z) else
                "as wide as the truth" if all(abs(v) <= SIGNIFICANT for v in z) else "one narrower, one not")
        return f"{brief(r)} times the true width, {word}"

    bridged = lambda r: (r["bridge"] - TRUE_BRIDGE) / r["bridge_se"] > SIGNIFICANT
    where = lambda r: ("all of them between the peaks" if r["bridge_between"] == 1 else
                       f"{percent(r['bridge_between'])} of them between the peaks")
    widened = all(net[lo][f"core_{j}"] - 1 > SIGNIFICANT * net[lo][f"core_se_{j}"] for j in (0, 1))
    lead = ("Few steps leave a bridge of samples between the peaks" if bridged(net[lo]) and not widened else
            "Few steps widen the peaks" if widened else "Few steps change little")
    said = where(net[lo]) + "; " if net[lo]["bridge"] else ""
    return (f"{lead}: at T = {lo}, {percent(net[lo]['bridge'])} of the samples lie more than {CORE:g} sigma from both "
            f"centres ({said}truth {percent(TRUE_BRIDGE)}), while the cores (samples within {CORE:g} sigma of a centre) "
            f"come out {core(net[lo])}; the width within 5 sigma, {net[lo]['std_ratio_0']:.2f} / "
            f"{net[lo]['std_ratio_1']:.2f}, mixes the two. At T = {hi} the bridge holds {percent(net[hi]['bridge'])} "
            f"and the cores are {core(net[hi])} (exact predictor: {brief(ex[hi])}).")
