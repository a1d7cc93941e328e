"""Problem 1: the implementation, its changes from the handout, the obstacles met, and the README.

    page = two_pixel.problem1.page(cfg, models)   # needs the T = 50 run and the three runs of VARIANTS

Each change from the handout that can be undone is undone alone (a model trained per variant, or a sampler
setting) and the samples are measured against the mixture: the table of problem1_departures.csv; the page
says why the others have no row. The README paragraph names each problem's page through report.pages.page_ref,
which the typesetter fills in after layout. The page also draws the training loss of the default model and
of the handout's UNet (problem1_loss.png, from their loss.csv).
"""
from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from gmm import GMM, sample_quality
from report.figures import save_figure, save_numbers
from report.pages import FIG_W, Figure, Page, page_ref
from runio.cli import resolve_device
from utils import SamplerSettings, sample

from .figures import BLUE, PROBLEM2_T, STYLE, VERMILLION, Settings, exact_predictor, model_path, percent, progress
from .trainer import TrainConfig, checkpoint_config


def page(cfg: Settings, models: dict) -> Page:
    """Each departure from the handout undone alone and measured; the obstacles; the README; loss curves.
    models: {PROBLEM2_T: the default run, and each of VARIANTS by name: its run}."""
    model, schedule, *_ = models[PROBLEM2_T]
    rows = departures(cfg, models)
    save_numbers(cfg.out, "problem1_departures", rows)
    c1 = model.tconv1.in_channels  # decoder 2's input: [decoder 1, encoder 1] features of length 1
    k1_out = torch.nn.ConvTranspose1d(c1, 1, kernel_size=1)(torch.zeros(1, c1, 1)).shape[-1]
    c = checkpoint_config(model_path(cfg.runs, PROBLEM2_T))
    loss = Figure(loss_figure(cfg), "Two falling training-loss curves on a log scale against the optimiser step: "
                                    "the default UNet without GroupNorm (blue) and the handout's UNet (vermillion, "
                                    "dashed).", f"Figure. Training loss of the T = {PROBLEM2_T} models.")
    return Page("Problem 1: implementation, changes, obstacles, README", [loss],
                blocks(cfg, c, schedule, rows, k1_out, conv_gap(model)))


def departures(cfg: Settings, models: dict) -> list:
    """One row of sample quality per model (the default, each variant, x0_hat unclipped, the exact noise
    predictor last), all from cfg.n chains with the same x_T and step noise; energy_vs_exact divides each
    energy distance by the exact predictor's."""
    gmm, device = GMM(), resolve_device(cfg.device)
    schedule = models[PROBLEM2_T].schedule
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
    return rows


def loss_figure(cfg: Settings) -> str:
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


def obstacles_text(rows: list, sq: float) -> str:
    """The obstacles met, (a) chosen by the handout UNet's row of the table against the default's; sq is
    sqrt(alpha_bar_T)."""
    by = {r["model"]: r for r in rows}
    d, h = by["default (this report)"], by.get("handout UNet")
    worse = (f" (its row: {h['energy_vs_exact']:.2f}x the exact predictor's energy distance against the default's "
             f"{d['energy_vs_exact']:.2f}x, {percent(h['within_5sigma'])} within 5 sigma against "
             f"{percent(d['within_5sigma'])})" if h else "")
    verdict = ("gave worse samples" if h is None or (h["energy_vs_exact"] > d["energy_vs_exact"] and
                                                     h["within_5sigma"] < d["within_5sigma"]) else
               "gave samples no worse on both measures" if (h["energy_vs_exact"] <= d["energy_vs_exact"] and
                                                             h["within_5sigma"] >= d["within_5sigma"]) else
               "gave worse samples on one measure")
    return (
        f"Obstacles: (a) the handout's UNet {verdict}{worse}: its GroupNorms act on one pixel's "
        "features, and GroupNorm(32) over 64 channels reduces pairs of numbers to about +-1; removed (1). (b) Far "
        f"strays from the first reverse step: sqrt(alpha_bar_T) = {sq:.2g}, so x0_hat multiplies an eps error by "
        f"{1 / sq:.0f}; clipped (4). (c) Weak unconditional samples: more label dropout (3). (d) Kernel 1 cannot "
        "output two pixels (2). (e) Two torch threads ran slower than one when the other core was busy (the threads "
        "spin waiting for a core; python benchmarks/threads.py measures it, benchmarks/README.md has its run): one thread per process, models trained in parallel processes, embeddings computed "
        "once per distinct (t, y), layers as matrix products (6). (f) scipy's gaussian_kde smeared each peak toward "
        "the other: an isotropic kernel with a cross-validated bandwidth, whose own error problem 2 measures.")


def blocks(cfg: Settings, c: TrainConfig, schedule, rows: list, k1_out: int, conv_gap: float) -> list:
    """The answers (changes, obstacles, README), then the table of `departures` and the implementation."""
    obstacles = obstacles_text(rows, float(schedule.alpha_bar[schedule.T].sqrt()))
    table = [f"{'model (change from the default)':33} majority  within 5 sigma  std ratio 0/1  energy  x exact  steps"]
    table += [f"{a['model']:33} {a['majority_weight']:8.3f}  {a['within_5sigma']:14.4f}  {a['std_ratio_0']:6.2f} /"
              f"{a['std_ratio_1']:5.2f}  {a['energy_distance']:.4f}  {a['energy_vs_exact']:7.2f}  {a['train_steps'] or '-':>5}"
              for a in rows]
    unfair = len({a["train_steps"] for a in rows if a["train_steps"]}) > 1
    return [("answer", changes_text(c, rows, k1_out, conv_gap)), ("answer", obstacles), ("answer", readme_text()),
            ("text", (
                f"Measured in this run ({cfg.n} samples, no label, the same x_T and noise for every model; "
                "problem1_departures.csv). Truth: majority 0.65, within 5 sigma about 1, std ratio 1; 'energy' is the "
                "energy distance to fresh mixture draws, 'x exact' divides it by the exact noise predictor's under the "
                f"same sampler and T = {schedule.T}, which is what the steps alone cost."
                + (" NOTE: these models had different numbers of training steps." if unfair else ""))),
            ("table", "\n".join(table)), ("text", (
                f"Implementation (from the checkpoint): t = 0 (clean) .. T (noise); {c.schedule} betas, reverse "
                f"variance {'beta_tilde_t' if c.variance == 'posterior' else 'beta_t'}; the ancestral step in x0 form "
                f"(eps -> x0_hat -> clip -> posterior mean -> + sigma_t z, none at t = 1); {c.loss} loss on eps; "
                f"{c.n_train} training draws; Adam lr {c.lr:g}, cosine decay, batch {c.batch_size}, {c.steps} steps. "
                "The exact noise predictor of gmm.py is the oracle of problems 3-4 and the tests; the sampler is "
                "checked against diffusers' DDPMScheduler."))]


SAME_FUNCTION = 1e-5  # float32 rounding of a sum over 128 products: |forward - forward_conv| below this is the same function


def conv_gap(model, n: int = 512, seed: int = 0) -> float:
    """max |UNet.forward - UNet.forward_conv| over n random inputs, times and labels (null label included)."""
    g, device = torch.Generator().manual_seed(seed), next(model.parameters()).device
    x = torch.randn(n, 2, generator=g).to(device)
    t = torch.randint(1, model.T + 1, (n,), generator=g).to(device)
    y = torch.randint(0, model.num_classes + 1, (n,), generator=g).to(device)
    with torch.no_grad():
        return float((model(x, t, y) - model.forward_conv(x, t, y)).abs().max())


def changes_text(c: TrainConfig, rows: list, k1_out: int, gap: float) -> str:
    """The changes from the handout, each with what undoing it alone gives (a row of `rows`, the table of
    `departures`) or why it has no row; the opening sentence names the changes the table undoes."""
    by = {r["model"]: r for r in rows}
    d, nc = by["default (this report)"], by.get("x0_hat not clipped")
    vs = lambda a: f"{percent(a['within_5sigma'])}, {a['energy_vs_exact']:.2f}x"
    row = lambda name, said, verb="gives": f"{said} {verb} {vs(by[name])}" if name in by else \
        f"{said}: not measured in this run"
    same = nc is not None and abs(nc["within_5sigma"] - d["within_5sigma"]) < 0.005 and \
        abs(nc["energy_vs_exact"] - d["energy_vs_exact"]) < 0.25
    changes = [  # (number, the table's row that undoes it alone or None, what the page says)
        (1, "handout UNet", "No GroupNorm: " + row("handout UNet", "the handout's UNet, one flag away (python train.py "
                                                   "--arch handout),") + "."),
        (2, None, f"Decoder 2 has kernel size 2, not 1: on the length-1 features, kernel 1 outputs {k1_out} value, not "
                  "2 pixels, so the handout's layer cannot be run as written and has no row."),
        (3, "label dropout 0.1", f"Label dropout {c.p_uncond:g}, not 0.1 (unconditional samples come from the null "
                                 "label): " + row("label dropout 0.1", "0.1") + "."),
        (4, "x0_hat not clipped", f"x0_hat clipped to +-{c.clip_x0:g}: "
            + ("no measurable effect on the default network" if same else
               row("x0_hat not clipped", "without it the default"))
            + ", but " + row("handout UNet, x0_hat not clipped", "without it the handout's UNet") + "."),
        (5, "no EMA (last weights)", f"Sampling uses an EMA of the weights (decay {c.ema_decay:g}); "
            + row("no EMA (last weights)", "the last weights", "give") + "."),
        (6, None, "UNet.forward (ddpm.py) computes the handout's Conv1d / ConvTranspose1d layers as F.linear products on "
                  "the same weights (on signals of length 1 or 2 each layer is one matrix product), for speed on a CPU; "
                  "UNet.forward_conv keeps the layer form, and on this model the two "
                  + (f"agree to {gap:.0e}: the same function, so it has no row." if gap <= SAME_FUNCTION else
                     f"differ by up to {gap:.1e}, more than float32 rounding: a defect, see tests/test_train.py.")),
    ]
    undone = [n for n, name, _ in changes if name in by]
    listed = lambda ns: ", ".join(f"({n})" for n in ns[:-1]) + (" and " if len(ns) > 1 else "") + f"({ns[-1]})"
    opening = (f"Changes from the handout: {len(changes)}, of which {listed(undone)} "
               + ("is" if len(undone) == 1 else "are each") + " undone alone in the table below (the default gives "
               f"{vs(d)}: the share of samples within 5 sigma of a peak, and the energy distance as a multiple of the "
               f"exact predictor's); {listed([n for n, name, _ in changes if name not in by])} ha"
               + ("s" if len(changes) - len(undone) == 1 else "ve") + " no row.")
    return " ".join([opening] + [f"({n}) {text}" for n, _, text in changes])


HOMEWORK_PROBLEMS = range(1, 6)  # the sections of the homework report, titled "Problem <n>: ..."


def readme_text() -> str:
    """The README's commands, with the page each problem is printed on filled in by the typesetter."""
    where = ", ".join(f"problem {n} on {page_ref(f'Problem {n}')}" for n in HOMEWORK_PROBLEMS)
    return (
        "README: pip install -r requirements.txt, then python train.py --T 50 (also 5, 10, 25; --arch handout for "
        "the handout's UNet) trains runs/T50/; python visualize.py --problem all --report report.pdf makes every "
        "figure under figures/ and this PDF, training missing models first (--problem 2, 3, 4 or 5 for one "
        f"problem's figures). In this PDF: {where}. MNIST: python visualize.py --problem 5 draws problem 5's figures "
        "from the shipped model (mnist/reference/model.pt); python -m mnist.sample --digits 0-9 --per-digit 10 draws "
        "a grid from it; the command that trained it is in mnist/reference/MODEL_CARD.md. Tests: pip install -q -r "
        "requirements-test.txt && python -m pytest -q -m \"not slow\".")
