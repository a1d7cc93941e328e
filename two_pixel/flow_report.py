"""Flow matching beside DDPM on two pixels: `python visualize.py --problem flow --report flow.pdf`.

    pages = two_pixel.flow_report.pages(cfg, models)   # needs models[key] for 50 and each key of figures.FLOW_RUNS; writes flow_*.*

Five seeds of each objective, trained by train.py with its defaults (the same UNet, steps, batch and learning
rate; `--objective flow` and `--seed s` are the only differences): the T = 50 model of problem 2 is seed 0 of
DDPM, figures.FLOW_RUNS names the rest. Three measurements, each beside the exact predictor of its objective (gmm.py), so
that what the exact predictor gets wrong is the sampler's error and the rest is the network's:

- the velocity fields (exact and learned) at three tau, as streamlines over the density of x_tau;
- sample paths of both objectives from the same x_T, and how straight they are (endpoint distance / length);
- energy distance to the mixture against network evaluations (two_pixel.steps): DDIM (eta 0) and flow Euler
  with evenly spaced steps, and Heun (2 evaluations a step, the last step Euler's), mean and range over 5 seeds.

Time runs from data (tau = 0) to noise (tau = 1) here, as everywhere in the package (flow.py states the map to
CS180's fall 2025 convention).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import stats

from flow import flow_settings, path
from gmm import GMM, make_grid
from report.figures import save_figure
from report.pages import FIG_W, Figure, Page, text_blocks
from utils import SamplerSettings, sample

from .figures import FLOW_SEEDS, LIM, ORANGE, STYLE, Settings, corner_text, progress, style_axes
from .steps import Curve, energy_by_nfe, floor

SEEDS = FLOW_SEEDS
NFES = (1, 2, 3, 5, 10, 20, 50)  # DDIM and Euler: one evaluation a step
HEUN_STEPS = (2, 3, 6, 11, 26)  # 2 k - 1 evaluations: 3, 5, 11, 21, 51
TAUS = (0.8, 0.5, 0.2)  # the velocity fields drawn
PATH_STEPS = 50
LIM_PATHS = (-2.5, 2.5)  # the paths' window: holds the starts of all but a few of the drawn paths
DDIM_COLOUR, FLOW_COLOUR = "#1f77b4", ORANGE
ONE_PEAK = GMM(means=((0.75, -0.45),), weights=(1.0,))  # the majority peak alone: one data point's paths


def model_keys(objective: str) -> list:
    """The models keys of one objective, seed 0 first (problem 2's T = 50 model is DDPM's seed 0)."""
    if objective == "eps":
        return [50] + [f"seed{s}" for s in SEEDS if s]
    return ["flow"] + [f"flow-seed{s}" for s in SEEDS if s]


class Measured(NamedTuple):
    curves: dict  # name -> Curve: {eps, flow, heun} x {network, exact}
    floor: list  # fresh mixture draws against the reference, per seed
    field_error: dict  # tau -> RMS(v_net - v*) / RMS(v*) over x_tau ~ q(x_tau), seed-0 flow model
    straightness: dict  # eps, flow (networks), eps-exact, flow-exact, eps-one, flow-one (one peak) -> mean
    # endpoint distance / path length
    paths: dict  # same keys -> (steps + 1, n_paths, 2) the drawn paths
    inward: dict  # same keys -> share of paths whose first step brings them nearer the data's mean


def pages(cfg: Settings, models: dict) -> list:
    m = measure(cfg, models)
    T = models[50].schedule.T
    nfe = Figure(nfe_figure(cfg, m), "Energy distance to the mixture against network evaluations per sample, both "
                 "axes logarithmic: DDIM, Euler and Heun curves for the networks (solid, with their range over 5 seeds) "
                 "and the exact predictors (dashed), above a grey band of fresh mixture draws.",
                 "Figure. Quality against sampling cost for both objectives, 5 trained seeds each.")
    field = Figure(field_figure(cfg, models, m, T), "Six panels of streamlines over a grey density: the exact velocity "
                   "field (top) and the learned one (bottom) at tau = " + ", ".join(map(str, TAUS)) + ".",
                   "Figure. The exact and the learned velocity fields.")
    paths = Figure(paths_figure(cfg, m), "Two panels of 40 sample paths from the same starting points: DDIM with the "
                   "DDPM (left, blue) and Euler with the flow-matching network (right, orange), exact paths in grey.",
                   "Figure. Sample paths of both objectives from the same noise.")
    return [Page("Flow matching on two pixels: steps against quality", [nfe], blocks(cfg, m, models)),
            Page("Flow matching: the velocity field", [field], field_blocks(m)),
            Page("Flow matching: sample paths from the same noise", [paths], path_blocks(m))]


# ================================================================ measuring
def ddim(k: int) -> SamplerSettings:
    """DDIM (eta 0) over k steps on Euler's grid: evaluations at t = T, T (k - 1) / k, ..., T / k ("trailing"),
    as a flow sampler evaluates at tau = 1, (k - 1) / k, ..., 1 / k."""
    return SamplerSettings(steps=k, spacing="trailing")


def measure(cfg: Settings, models: dict) -> Measured:
    gmm = GMM()
    eps_models = [models[k].model for k in model_keys("eps")]
    flow_models = [models[k].model for k in model_keys("flow")]
    schedule = models[50].schedule
    T = schedule.T
    runs = {("eps", "network"): (eps_models, ddim, NFES),
            ("eps", "exact"): (gmm.noise_predictor(schedule), ddim, NFES),
            ("flow", "network"): (flow_models, lambda k: flow_settings(k), NFES),
            ("flow", "exact"): (gmm.velocity_predictor(T), lambda k: flow_settings(k), NFES),
            ("heun", "network"): (flow_models, lambda k: flow_settings(k, "heun"), HEUN_STEPS),
            ("heun", "exact"): (gmm.velocity_predictor(T), lambda k: flow_settings(k, "heun"), HEUN_STEPS)}
    curves = {}
    for key, (pred, settings_of, steps) in progress(runs.items(), cfg, desc="flow: evaluations"):
        curve = energy_by_nfe(pred, schedule, settings_of, steps, SEEDS, cfg.n)
        nfe = [settings_of(k).solver.evaluations(settings_of(k)) if settings_of(k).solver else k for k in steps]
        curves[key] = Curve(tuple(nfe), curve.energy)
    field_error = {tau: field_rms_error(flow_models[0], gmm, tau, T, cfg.n, cfg.seed) for tau in TAUS}
    straight, paths, inward = {}, {}, {}
    x_T = torch.randn((1000, 2), generator=torch.Generator().manual_seed(cfg.seed))
    for obj, pred, how in (("eps", eps_models[0], SamplerSettings(steps=PATH_STEPS)),
                           ("eps-exact", gmm.noise_predictor(schedule), SamplerSettings(steps=PATH_STEPS)),
                           ("flow", flow_models[0], flow_settings(PATH_STEPS)),
                           ("flow-exact", gmm.velocity_predictor(T), flow_settings(PATH_STEPS)),
                           ("eps-one", ONE_PEAK.noise_predictor(schedule), SamplerSettings(steps=PATH_STEPS)),
                           ("flow-one", ONE_PEAK.velocity_predictor(T), flow_settings(PATH_STEPS))):
        _, traj = sample(pred, schedule, len(x_T), None, how, x_T=x_T, trajectory=True)
        straight[obj], paths[obj] = straightness(traj.x), traj.x[:, :40].numpy()
        inward[obj] = heads_inward(traj.x, data_mean(ONE_PEAK if obj.endswith("one") else gmm))
    return Measured(curves, floor(cfg.n, SEEDS), field_error, straight, paths, inward)


@torch.no_grad()
def field_rms_error(model, gmm: GMM, tau: float, T: int, n: int, seed: int) -> float:
    """RMS(v_net - v*) / RMS(v*) over n points x_tau of the path (mixture draws and noise), unconditional."""
    g = torch.Generator().manual_seed(seed + 40_000)
    x0, _ = gmm.sample(n, g)
    x = path(x0, torch.randn(x0.shape, generator=g), torch.full((n,), tau))
    exact = gmm.optimal_velocity(x, tau)
    net = model(x, torch.full((n,), tau * T), None)
    return float(((net - exact) ** 2).sum(1).mean().sqrt() / (exact ** 2).sum(1).mean().sqrt())


def data_mean(gmm: GMM) -> torch.Tensor:
    return (gmm.weights[:, None] * gmm.means).sum(0)


def heads_inward(xs: torch.Tensor, mean: torch.Tensor) -> float:
    """Share of paths whose first step brings them nearer the data's mean. xs: (steps + 1, n, 2)."""
    mean = mean.to(xs.dtype)
    return float(((xs[1] - mean).norm(dim=-1) < (xs[0] - mean).norm(dim=-1)).double().mean())


def straightness(xs: torch.Tensor) -> float:
    """Mean over paths of |x_end - x_start| / path length (1: a straight line). xs: (steps + 1, n, 2)."""
    length = (xs[1:] - xs[:-1]).norm(dim=-1).sum(0)
    return float(((xs[-1] - xs[0]).norm(dim=-1) / length.clamp(min=1e-12)).mean())


# ================================================================ the answers
BUDGETS = (2, 3, 5, 10, 20, 50)  # the evaluation counts compared (at 1 both give about the mixture's mean)


def at(curve: Curve, nfe: int) -> float:
    return curve.mean(curve.nfes.index(nfe))


def equivalent_nfe(curve: Curve, level: float):
    """The evaluations at which `curve`'s mean energy distance first falls to `level`, interpolated linearly in
    log(evaluations) and log(energy) between the measured points; None if it never does."""
    means = [curve.mean(i) for i in range(len(curve.nfes))]
    if means[0] <= level:
        return float(curve.nfes[0])
    for (k0, e0), (k1, e1) in zip(zip(curve.nfes, means), zip(curve.nfes[1:], means[1:])):
        if e1 <= level < e0:
            f = (np.log(e0) - np.log(level)) / (np.log(e0) - np.log(e1))
            return float(np.exp(np.log(k0) + f * (np.log(k1) - np.log(k0))))
    return None


def t95(n: int) -> float:
    """The two-sided 95 % quantile of Student's t with n - 1 degrees of freedom (1.96 for large n)."""
    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else float("inf")


def lower(a: Curve, b: Curve, nfe: int, nfe_b=None) -> int:
    """1 if a's mean energy at nfe is below b's (at nfe_b, default nfe) by more than the 95 % t-interval of the
    difference of the two means over seeds (standard errors combined, the smaller seed count's degrees of
    freedom), -1 if above by as much, 0 if the seeds cannot tell them apart."""
    i, j = a.nfes.index(nfe), b.nfes.index(nfe if nfe_b is None else nfe_b)
    se2 = lambda v: float(np.var(v, ddof=1)) / len(v) if len(v) > 1 else 0.0
    d, se = b.mean(j) - a.mean(i), math.sqrt(se2(a.energy[i]) + se2(b.energy[j]))
    return 0 if abs(d) <= t95(min(len(a.energy[i]), len(b.energy[j]))) * se else (1 if d > 0 else -1)


def verdict(a: Curve, b: Curve, a_name: str, b_name: str) -> str:
    """Which of two curves is lower at each of BUDGETS, as one phrase."""
    sides = {k: lower(a, b, k) for k in BUDGETS}
    if all(v == 1 for v in sides.values()):
        return f"{a_name}, at every budget from {BUDGETS[0]} to {BUDGETS[-1]} evaluations"
    if all(v == -1 for v in sides.values()):
        return f"{b_name}, at every budget from {BUDGETS[0]} to {BUDGETS[-1]} evaluations"
    name = lambda v: ", ".join(str(k) for k, s in sides.items() if s == v)
    parts = [f"{a_name} at {name(1)}" if name(1) else "", f"{b_name} at {name(-1)}" if name(-1) else "",
             f"the seeds cannot tell them apart at {name(0)}" if name(0) else ""]
    return "; ".join(p for p in parts if p) + " evaluations"


def by_how_much(a: Curve, b: Curve, a_name: str, b_name: str) -> str:
    """The energies and their ratio at each budget where the seeds decide."""
    decided = [k for k in BUDGETS if lower(a, b, k)]
    if not decided:
        return f"At no budget from {BUDGETS[0]} to {BUDGETS[-1]} evaluations do the seeds separate them."
    return "By how much: " + "; ".join(
        f"at {k} evaluations {at(a, k):.4f} {a_name} against {at(b, k):.4f} {b_name} "
        f"({max(at(a, k), at(b, k)) / min(at(a, k), at(b, k)):.1f}x)" for k in decided) + "."


def answers(m: Measured) -> str:
    """Which objective needs fewer steps and by how much, and why the paths look as they do: every comparison
    chosen by the numbers (tests/test_flow_report.py flips them)."""
    ddim, flow = m.curves["eps", "network"], m.curves["flow", "network"]
    which = verdict(flow, ddim, "flow matching (Euler) is lower", "DDPM's DDIM is lower")
    alone = verdict(m.curves["flow", "exact"], m.curves["eps", "exact"], "Euler on the exact velocity is lower",
                    "DDIM on the exact noise predictor is lower")
    heun, euler = m.curves["heun", "network"], m.curves["flow", "network"]
    heun_vs = {k: lower(heun, euler, k) for k in (3, 5) if k in heun.nfes}
    heun_text = "; ".join(f"at {k}, {at(heun, k):.4f} against {at(euler, k):.4f} "
                          f"({'lower' if v == 1 else 'higher' if v == -1 else 'not separated by the seeds'})"
                          for k, v in heun_vs.items())
    s, inward = m.straightness, m.inward
    straighter = "flow matching's" if s["flow-exact"] > s["eps-exact"] else "DDIM's"
    return (f"Which objective needs fewer sampling steps on two pixels? Energy distance to the mixture at equal "
            f"network evaluations, mean of 5 trained seeds each: {which}. "
            + (f"{by_how_much(flow, ddim, 'flow matching', 'DDIM')} " if any(lower(flow, ddim, k) for k in BUDGETS)
               else "")
            + f"With the exact predictors, where only the sampler errs: {alone}. "
            f"{by_how_much(m.curves['flow', 'exact'], m.curves['eps', 'exact'], 'Euler', 'DDIM')} Heun (2 evaluations a step) against Euler: {heun_text}.\n\n"
            f"Why the paths look the way they do: on the straight path x_tau = (1 - tau) x_0 + tau eps each noise "
            f"moves along a line to its data point, so on one narrow peak alone (the majority peak) a flow path is "
            f"{'nearly straight' if s['flow-one'] > 0.95 else 'curved'} (endpoint distance / length "
            f"{s['flow-one']:.3f}; 1 is straight), while a DDIM path follows x_t = sqrt(alpha_bar) x_0 + "
            f"sqrt(1 - alpha_bar) eps, whose two coefficients trace a quarter circle, and comes out at "
            f"{s['eps-one']:.3f}. On the mixture, with the exact predictors, {straighter} paths are the straighter "
            f"({s['flow-exact']:.3f} flow matching, {s['eps-exact']:.3f} DDIM; the networks {s['flow']:.3f} and "
            f"{s['eps']:.3f}): paths bend where they choose a peak. The first step brings a path nearer the "
            f"mixture's mean in {inward['flow-exact']:.0%} of the flow paths (at tau = 1 the exact velocity is x - "
            f"E[x_0]) and {inward['eps-exact']:.0%} of the DDIM paths"
            + (": the others first move away from the data and are bent back by the arc (page 3)."
               if inward["eps-exact"] < inward["flow-exact"] else "."))


def budget(models: dict) -> str:
    """The training budget both objectives share, read from the models' configs."""
    cfgs = [models[k].config for k in model_keys("eps") + model_keys("flow")]
    same = {(c.steps, c.batch_size, c.lr, c.schedule, c.T) for c in cfgs}
    if len(same) != 1:
        return "Warning: the ten models were not trained alike (" + "; ".join(map(str, sorted(same))) + ")."
    steps, batch, lr, schedule, T = same.pop()
    return (f"Every model: the same UNet, {steps:,} Adam steps at batch {batch:,}, lr {lr:g} cosine-decayed, "
            f"T = {T} ({schedule} schedule for DDPM; the flow networks see t = tau T); only --objective and --seed "
            "differ (python train.py --T 50 [--objective flow] --seed s).")


def network_below_exact(m: Measured) -> list:
    """(curve, evaluations) where the network's mean energy is below its exact predictor's: errors that cancel."""
    return [(name, k) for name in ("eps", "flow", "heun") for i, k in enumerate(m.curves[name, "network"].nfes)
            if m.curves[name, "network"].mean(i) < m.curves[name, "exact"].mean(i)]


def blocks(cfg: Settings, m: Measured, models: dict) -> list:
    rows = "; ".join(f"{LABEL[name]} ({obj}): " + ", ".join(f"{c.mean(i):.4f}@{k}" for i, k in enumerate(c.nfes))
                     for (name, obj), c in m.curves.items())
    below = network_below_exact(m)
    cancel = (" Errors need not add: the network's mean is below its exact predictor's for "
              + ", ".join(f"{LABEL[n]} at {k}" for n, k in below) + "." if below else "")
    return text_blocks(answers(m), "answer") + [("text", (
        "Time: the package's tau runs from data (tau = 0) to noise (tau = 1), x_tau = (1 - tau) x_0 + tau eps; CS180's "
        "fall 2025 handout writes t = 1 - tau. DDPM's t runs the same way, from 0 (data) to T = 50 (noise). "
        + budget(models) + " Figure: energy distance of 5,000 samples to 5,000 fresh draws of the mixture against "
        "network evaluations per sample (line: mean of 5 seeds; band: their range). Solid: the networks, each seed "
        "its own model; dashed: the exact predictor of the same objective through the same sampler (the sampler's "
        "error alone)." + cancel + " DDIM (eta 0) and Euler take k evenly spaced steps starting at the noise end "
        "(DDIM at t = T, T(k-1)/k, ..., T/k; Euler at tau = 1, (k-1)/k, ..., 1/k), one evaluation each; DDIM clips "
        "x0_hat to +-1.5 (the package's default), Euler has nothing to clip. Heun takes two a step (the last step "
        "one), so k steps cost 2k - 1. Grey band: fresh mixture draws against the same reference (mean "
        f"{np.mean(m.floor):.5f}, range {min(m.floor):.5f}-{max(m.floor):.5f}): the estimator's own noise, so "
        "curves inside it cannot be told from the mixture. Seeds decide a comparison when the difference of two "
        "means exceeds its 95 % t-interval (standard errors in flow_nfe.csv). Mean energy per curve: "
        f"{rows}. Reproduce: python visualize.py --problem flow --n {cfg.n}."))]


LABEL = {"eps": "DDIM", "flow": "Euler", "heun": "Heun"}


def field_blocks(m: Measured) -> list:
    err = ", ".join(f"{e:.2f} at tau = {tau}" for tau, e in m.field_error.items())
    worst = max(m.field_error, key=m.field_error.get)
    g = GMM()
    return [("answer", f"How close is the learned velocity field to the exact one? Its RMS error relative to the "
                       f"exact field's size, over points of the path, is {err} (seed-0 network); the largest is at "
                       f"tau = {worst}."),
            ("text", "Figure: top, the exact velocity field of the mixture (gmm.GMM.optimal_velocity); bottom, the "
                     "seed-0 network's, unconditional, at tau = " + ", ".join(map(str, TAUS)) + " (tau = 0 is the "
                     "data, 1 the noise). Streamlines show -v, the way samples move as tau falls towards the data; "
                     "the grey shading, the same in both rows, is the density of x_tau, a mixture of N((1 - tau) "
                     "mu_k, ((1 - tau)^2 sigma^2 + tau^2) I) with means mu_k = " + ", ".join(
                         f"({a:g}, {b:g})" for a, b in g.means.tolist()) + ", weights " + ", ".join(
                         f"{w:g}" for w in g.weights.tolist()) + f" and sigma = {g.std:g}. Numbers: flow_field.csv.")]


def path_blocks(m: Measured) -> list:
    s = m.straightness
    return [("answer", f"How straight are the paths? Mean endpoint distance / length over 1,000 paths from the same "
                       f"x_T, {PATH_STEPS} steps: flow matching {s['flow']:.3f} (exact field {s['flow-exact']:.3f}), "
                       f"DDIM {s['eps']:.3f} (exact {s['eps-exact']:.3f}); 1 is a straight line."),
            ("text", "Figure: 40 of those paths, left DDIM (eta 0) with the seed-0 DDPM, right Euler with the seed-0 "
                     "flow-matching network, from the same starting noise (dots); thin grey: the exact predictor's "
                     "paths from the same points. Each path is the polyline through its sampler's 50 states, on its "
                     "own clock (DDPM's t, flow's tau). Numbers: flow_paths.csv.")]


# ================================================================ figures
def nfe_figure(cfg: Settings, m: Measured) -> str:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(FIG_W, 4.3), layout="constrained")
        style = {"eps": (DDIM_COLOUR, "DDPM, DDIM"), "flow": (FLOW_COLOUR, "flow matching, Euler"),
                 "heun": ("#2ca02c", "flow matching, Heun")}
        ax.axhspan(min(m.floor), max(m.floor), color="#bbbbbb", alpha=0.5, lw=0,
                   label="fresh mixture draws: the estimator's noise (range of 5 seeds)")
        for (name, obj), c in m.curves.items():
            colour, label = style[name]
            mean = [c.mean(i) for i in range(len(c.nfes))]
            lo, hi = zip(*(c.spread(i) for i in range(len(c.nfes))))
            ax.plot(c.nfes, mean, color=colour, ls="-" if obj == "network" else "--", marker="o", ms=3,
                    label=f"{label} ({'network' if obj == 'network' else 'exact predictor'})")
            ax.fill_between(c.nfes, lo, hi, color=colour, alpha=0.16 if obj == "network" else 0.08, lw=0)
        ax.set(xscale="log", yscale="log", xlabel="network evaluations per sample",
               ylabel="energy distance to the mixture")
        ticks = sorted({k for c in m.curves.values() for k in c.nfes} - {11, 21, 51})
        ax.set_xticks(ticks, [str(k) for k in ticks])
        ax.minorticks_off()
        ax.legend(ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v)))
        rows = [dict(curve=n, predictor=o, nfe=k, mean=c.mean(i), se=se(c.energy[i]), min=c.spread(i)[0],
                     max=c.spread(i)[1]) for (n, o), c in m.curves.items() for i, k in enumerate(c.nfes)]
        per_seed = {f"{n}_{o}": np.array(c.energy) for (n, o), c in m.curves.items()}
        return save_figure(fig, cfg.out, "flow_nfe", rows, floor=np.array(m.floor), **per_seed)


def field_figure(cfg: Settings, models: dict, m: Measured, T: int) -> str:
    gmm, grid = GMM(), make_grid(40, LIM)
    xy = torch.as_tensor(np.stack(np.meshgrid(grid.centers, grid.centers), -1).reshape(-1, 2), dtype=torch.float32)
    fine = make_grid(150, LIM)
    fxy = torch.as_tensor(np.stack(np.meshgrid(fine.centers, fine.centers), -1).reshape(-1, 2))
    net = models["flow"].model
    arrays = {}
    with plt.rc_context(STYLE), torch.no_grad():
        fig, axes = plt.subplots(2, len(TAUS), figsize=(FIG_W, 5.2), layout="constrained")
        for j, tau in enumerate(TAUS):
            dens = gmm.log_prob_path(fxy, tau).exp().reshape(150, 150).numpy()
            for i, (name, v) in enumerate((("exact", gmm.optimal_velocity(xy, tau)),
                                           ("network", net(xy, torch.full((len(xy),), tau * T), None)))):
                ax = axes[i, j]
                ax.imshow(dens, origin="lower", extent=(*LIM, *LIM), cmap="Greys", alpha=0.6)
                u = -v.reshape(40, 40, 2).numpy()
                ax.streamplot(grid.centers, grid.centers, u[..., 0], u[..., 1], density=0.9, linewidth=0.6,
                              arrowsize=0.6, color=FLOW_COLOUR if name == "network" else "black")
                ax.set_title(f"{name}, tau = {tau}" + (f" (error {m.field_error[tau]:.2f})" if i else ""), pad=3)
                style_axes(ax, left_label=j == 0, bottom_label=i == 1)
                arrays[f"{name}_tau{tau}"] = v.numpy()
        rows = [dict(tau=tau, relative_rms_error=e) for tau, e in m.field_error.items()]
        return save_figure(fig, cfg.out, "flow_field", rows, grid=grid.centers, **arrays)


def paths_figure(cfg: Settings, m: Measured) -> str:
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(FIG_W, 4.0), layout="constrained")
        for ax, obj, colour, title in ((axes[0], "eps", DDIM_COLOUR, "DDPM, DDIM (eta 0)"),
                                       (axes[1], "flow", FLOW_COLOUR, "flow matching, Euler")):
            exact, net = m.paths[f"{obj}-exact"], m.paths[obj]
            for k in range(net.shape[1]):
                ax.plot(exact[:, k, 0], exact[:, k, 1], color="#999999", lw=0.5)
                ax.plot(net[:, k, 0], net[:, k, 1], color=colour, lw=0.8)
            ax.scatter(net[0, :, 0], net[0, :, 1], s=6, color="black", zorder=3)
            ax.set_title(f"{title}: {PATH_STEPS} steps", pad=3)
            corner_text(ax, f"straightness {m.straightness[obj]:.3f}\n(exact {m.straightness[obj + '-exact']:.3f})")
            style_axes(ax, left_label=obj == "eps", lim=LIM_PATHS)
        rows = [dict(path=k, straightness=v, first_step_inward=m.inward[k]) for k, v in m.straightness.items()]
        return save_figure(fig, cfg.out, "flow_paths", rows, **{k: v for k, v in m.paths.items()})
