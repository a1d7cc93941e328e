"""CS180 project 5 part B, fall 2025 edition (flow matching), on MNIST: `python visualize.py --problem cs180-fm`.

  pages(fig_dir)
      cs180fm_pure_loss.png, cs180fm_pure.png       1.2.3: the one-step denoiser of pure noise, after epochs 1, 5
      cs180fm_loss.png, cs180fm_epochs.png          2.2-2.3: the time-conditioned UNet trained by flow matching
      cs180fm_class_loss.png, cs180fm_class_epochs.png   2.5-2.6: class-conditioned, guidance gamma = 5
      cs180fm_steps.png                             flow matching against DDPM at the same budget, by steps

They read the shipped runs in mnist/reference/ (pure_noise.pt, flow_timecond.pt, flow_timecond_class.pt) and the
stored study flow_study.json (python -m cs180.flow_study), unless given others. The same UNets, loop, checkpoints
and page helpers as the DDPM edition (cs180/partb_pages.py), which stays as it is. The package's time runs from
data to noise; the handout's from noise to data (flow.py states the map).
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple, Optional

import matplotlib.pyplot as plt
import torch

from mnist.metrics import fisher_p
from report.pages import FIG_W, Figure, Page

from . import denoiser as dn
from . import flow_study
from . import timecond as tc
from .figures import image_grid, loss_figure, save
from .partb_pages import B2, b2_numbers, epoch_figures, epochs_figure, load_b2, readings_shown, stored_samples
from .verdicts import against_real, count_text, trend

PURE = os.path.join(dn.SHIPPED, "pure_noise.pt")
FLOW = os.path.join(dn.SHIPPED, "flow_timecond.pt")
FLOW_CLASS = os.path.join(dn.SHIPPED, "flow_timecond_class.pt")


def minutes(run) -> str:
    return f"{run.info.get('seconds', float('nan')) / 60:.0f} min on {run.info.get('threads', 1)} CPU thread"


def recipe(run: tc.Snapshots) -> str:
    cfg = run.config
    return (f"images in [-1, 1], D = {cfg.hidden} (handout 64), batch {cfg.batch_size} (handout 64), Adam lr {cfg.lr:g} decayed "
            f"exponentially by {cfg.lr_decay:g} over {cfg.epochs} epochs (the handout's), "
            + ("no EMA" if not cfg.ema else f"EMA {cfg.ema:g}")
            + (f", a class-stratified {cfg.train_size:,} of the {run.info.get('data_source', '?')} training digits "
               "(the handout: all 60,000)" if cfg.train_size else f", the {run.info.get('data_source', '?')} digits")
            + f": {len(run.losses):,} steps in {minutes(run)}")


# ======================================================================= 1.2.3
class PureNumbers(NamedTuple):
    outputs: dict  # epoch -> (10, 1, 28, 28) in [0, 1], the outputs for 10 fresh noises
    to_mean: dict  # epoch -> RMS per pixel of the outputs from the mean training digit
    among: dict  # epoch -> RMS per pixel of the outputs from their own mean (how much they differ)
    digits_to_mean: float  # RMS per pixel of training digits from their mean: the scale


@torch.no_grad()
def measure_pure(run, n: int = 100, seed: int = 0) -> PureNumbers:
    mean = run.info["mean_digit"].float()
    z = torch.randn((n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))
    rms = lambda a, b: float(((a - b) ** 2).flatten(1).mean(1).sqrt().mean())
    outs = {e: m(z).clamp(0, 1) for e, m in run.models.items()}
    return PureNumbers({e: o[:10] for e, o in outs.items()}, {e: rms(o, mean) for e, o in outs.items()},
                       {e: rms(o, o.mean(0, keepdim=True)) for e, o in outs.items()},
                       float(run.info.get("digits_to_mean", float("nan"))))


def pure_answer(m: PureNumbers) -> str:
    """1.2.3's plain answer, chosen by the numbers (tests/test_fm_pages.py flips them)."""
    last = max(m.to_mean)
    same = m.among[last] < 0.25 * m.to_mean[last] or m.among[last] < 0.02
    near = m.to_mean[last] < 0.05
    pattern = ("100 different noises give nearly the same image" if same else
               "the outputs still differ from noise to noise")
    what = ("the mean of the training digits" if near else "an image that is not yet the mean training digit")
    return (f"What patterns do the outputs show? After epoch {last} {pattern} (RMS distance of the outputs "
            f"from their own mean {m.among[last]:.3f} per pixel): {what} (RMS distance to it {m.to_mean[last]:.3f}; the training digits "
            f"themselves lie {m.digits_to_mean:.3f} from it).\n\n"
            "Why: the input is noise drawn independently of the digit, so it says nothing about which digit to "
            "produce; the output that minimises the expected L2 loss E|D(z) - x|^2 is then the same for every z, "
            "E[x], the centroid of the training digits, and the network learns that.")


def pure_page(fig_dir: str, path: str = PURE) -> Page:
    run = dn.load_run(path)
    if not run.config.pure_noise:
        raise ValueError(f"{path} is a B.1 denoiser of x + sigma eps; 1.2.3 needs python -m cs180.denoiser --pure-noise")
    m = measure_pure(run)
    cfg, first, last = run.config, min(run.models), max(run.models)
    steps = max(1, round(len(run.losses) / cfg.epochs))
    png_loss = loss_figure(run.losses, steps, os.path.join(fig_dir, "cs180fm_pure_loss.png"),
                           f"denoising pure noise, D={cfg.hidden}, batch {cfg.batch_size}, lr {cfg.lr:g}",
                           "L2 loss, D(eps) vs x, per pixel", size=(FIG_W, 2.4))
    to_model = lambda v: v * 2 - 1
    rows = [[to_model(run.info["mean_digit"].float())] + [None] * 9] + [list(to_model(m.outputs[e])) for e in (first, last)]
    png = image_grid(rows, fig_dir, "cs180fm_pure", ["mean training\ndigit", f"epoch {first}", f"epoch {last}"],
                     cell=0.6, label_w=1.2)
    figs = [Figure(png_loss, "Training loss of the pure-noise denoiser on a log scale: it drops within the first "
                             "epoch and then stays flat.", "Figure 1. Training loss, denoising pure noise."),
            Figure(png, f"Top: the mean training digit. Below: the outputs for ten fresh noises after epoch {first} "
                        f"and after epoch {last}.", "Figure 2. Outputs for pure noise, and the mean training digit.")]
    body = (f"1.2.3 The handout's UNet (D = {cfg.hidden}; handout 128) trained with z = eps, pure noise, as input: "
            f"Adam lr {cfg.lr:g} (handout 1e-4), batch {cfg.batch_size} (handout 256), {cfg.epochs} epochs of "
            + (f"a class-stratified {cfg.train_size:,} of the " if cfg.train_size else "the ")
            + f"{run.info.get('data_source', '?')} training digits ({len(run.losses):,} steps in {minutes(run)}). "
            "RMS distance per pixel of the outputs for 100 noises to the mean training digit: "
            + ", ".join(f"epoch {e} {v:.3f}" for e, v in m.to_mean.items())
            + "; between the outputs themselves: " + ", ".join(f"epoch {e} {v:.3f}" for e, v in m.among.items())
            + ". Images in [0, 1], as in the handout's part 1. Parts 1.2-1.2.2 (noising, the sigma = 0.5 denoiser "
            "and its out-of-distribution test) are the same in both editions of the handout: they are in the DDPM "
            "edition's report (python visualize.py --problem cs180-b1). The runs are smaller than the handout's "
            "because this CPU has no GPU beside it: its D = 64 on 60,000 digits would take about 4 h a run here "
            "(model card).")
    return Page.of_text("CS180 (fall 2025) B 1.2.3: denoising pure noise", figs, body, answers=pure_answer(m))


# ======================================================================= 2.2-2.6
def flow_page(ctx: B2, path: str, class_run: bool) -> Page:
    run = tc.load_run(path)
    if run.config.objective != "flow" or bool(run.config.num_classes) != class_run:
        raise ValueError(f"{path} is not a {'class-conditioned' if class_run else 'time-conditioned'} flow-matching "
                         "run (python -m cs180.timecond --handout --objective flow" + (" --classes)" if class_run else ")"))
    got = stored_samples(run, seed=ctx.seed)
    num = {e: b2_numbers(ctx.clf, ctx.judge, x, got["labels"]) for e, x in got["sampled"].items()}
    cfg, last, n = run.config, max(num), got["n"]
    name = "cs180fm_class" if class_run else "cs180fm"
    png_loss = loss_figure(run.losses, math.ceil(len(run.losses) / cfg.epochs), os.path.join(ctx.fig_dir, f"{name}_loss.png"),
                           f"flow matching, {'class-conditioned' if class_run else 'time-conditioned'} UNet, "
                           f"D={cfg.hidden}, batch {cfg.batch_size}", "velocity L2 loss",
                           size=(FIG_W, 2.4))
    png = epochs_figure(got["sampled"], 4 if class_run else 1, os.path.join(ctx.fig_dir, f"{name}_epochs.png"), num,
                        class_run)
    moves = trend({e: v.passed for e, v in num.items()}, "the legible count")
    steps = got.get("steps", tc.FLOW_STEPS)
    if class_run:
        title = "CS180 (fall 2025) B 2.5-2.6: class-conditioned flow matching"
        answers = (f"Guided samples after epoch {last} (gamma = {got['w'] + 1:g}): read as the requested digit "
                   f"{count_text(num[last].agreement, n)}; legible {count_text(num[last].legible, n)}, "
                   f"{against_real(num[last].legible, n, ctx.judge)}. Over training: "
                   f"{trend({e: v.hit for e, v in num.items()}, 'agreement with the requested digit')}; {moves}.")
        body = (f"2.4-2.5 The class-conditioned UNet (one-hot label through two FCBlocks, c1 * h + t1; label dropped "
                f"for {cfg.p_uncond:.0%} of the images), trained on the velocity of the straight path: {recipe(run)}. "
                f"2.6 Sampling: {steps} Euler steps of the guided velocity u_u + gamma (u_c - u_u), gamma = "
                f"{got['w'] + 1:g}, 4 samples of each digit (columns) after each epoch, the same seeds every time; "
                f"measured on all {n}. Legible: the legibility judge of the DDPM edition's B.2 page (mnist.metrics), "
                f"which passes {ctx.judge.real_pass:.0%} of {ctx.judge.n_real} real held-out test digits.")
    else:
        title = "CS180 (fall 2025) B 2.2-2.3: time-conditioned flow matching"
        answers = (f"Samples that read as digits: {count_text(num[last].legible, n)} after epoch {last} pass the "
                   f"legibility judge, {against_real(num[last].legible, n, ctx.judge)}. Over training: {moves}.")
        body = (f"2.1-2.2 The handout's UNet conditioned on t by two FCBlocks, trained to predict the flow x_1 - x_0 "
                f"of the straight path from noise to data (handout Eq. B.5; in the package's time tau = 1 - t it "
                f"predicts eps - x_0, flow.py): {recipe(run)}. 2.3 Sampling: {steps} Euler steps from pure noise "
                f"(Algorithm B.2); rows: the first 10 of {n} samples after each epoch, the same seeds every time, "
                f"each captioned with the digit the legibility judge reads or 'fails'; measured on all {n}. The "
                f"judge (mnist.metrics, as on the DDPM edition's B.2 page) passes {ctx.judge.real_pass:.0%} of "
                f"{ctx.judge.n_real} real held-out test digits.")
    kind = f"{'class-conditioned' if class_run else 'time-conditioned'} flow-matching"
    readings = readings_shown(len(got["sampled"]), 4 if class_run else 1)
    return Page.of_text(title, epoch_figures(png_loss, png, kind, got["sampled"], class_run, moves, readings), body,
                        answers=answers)


# ======================================================================= against DDPM
def share(study: dict, name: str, key: str, k: int) -> float:
    run = study["runs"][name]
    return run[key][run["steps"].index(k)]


def stays_from(study: dict, name: str, key: str, level: float):
    """The fewest steps from which the run's share stays at or above level at every larger step count measured
    (None: not even at the largest)."""
    run = study["runs"][name]
    k_ok = None
    for k, v in zip(reversed(run["steps"]), reversed(run[key])):
        if v < level:
            break
        k_ok = k
    return k_ok


def dips(study: dict, name: str, key: str, level: float) -> list:
    """Step counts where the share falls below level after having reached it at fewer steps."""
    run, seen, out = study["runs"][name], False, []
    for k, v in zip(run["steps"], run[key]):
        seen = seen or v >= level
        if seen and v < level:
            out.append(k)
    return out


def sure_key(study: dict) -> tuple[str, str]:
    """The unconditional runs' measure in a stored study and its name: the share the legibility judge passes
    (flow_study.readings), or, in a study stored before the judge, the share read with p >= 0.9."""
    if all("legible" in r for r in study["runs"].values()):
        return "legible", "share judged legible"
    return "confident", "share read with p >= 0.9 (a study stored before the legibility judge; rerun it)"


def versus(a: float, b: float, n: int, what: str) -> str:
    """Two shares of n samples each compared by Fisher's exact test (two-sided, 5 %)."""
    ca, cb = round(a * n), round(b * n)
    p = fisher_p(ca, n, cb, n)
    counts = f"{ca}/{n} flow matching, {cb}/{n} DDPM, Fisher p = {p:.2g}"
    if p >= 0.05:
        return f"{what} not distinguishable ({counts})"
    return f"{what} higher for {'flow matching' if a > b else 'DDPM'} ({counts})"


def compare_answer(study: dict) -> str:
    """Flow matching against DDPM at the same budget, every comparison chosen by the numbers."""
    top, n = max(study["runs"]["flow"]["steps"]), study["n"]
    at_top = lambda name, key: share(study, name, key, top)
    agree = versus(at_top("flow-class", "agreement"), at_top("ddpm-class", "agreement"), n,
                   "agreement with the asked digit")
    key, what = sure_key(study)
    sure_class = versus(at_top("flow-class", key), at_top("ddpm-class", key), n, what)
    sure = versus(at_top("flow", key), at_top("ddpm", key), n, what)
    steps = lambda k: f"{k} step{'s' if k != 1 else ''}" if k is not None else f"more than {top} steps"

    def reach(cls: str, key: str, what: str) -> str:
        level = 0.9 * at_top(f"ddpm{cls}", key)
        k_f, k_d = stays_from(study, f"flow{cls}", key, level), stays_from(study, f"ddpm{cls}", key, level)
        dip = {o: dips(study, f"{o}{cls}", key, level) for o in ("flow", "ddpm")}
        dip_text = "".join(f" ({'flow matching' if o == 'flow' else 'DDPM'} reaches it at fewer steps but falls "
                           f"below it again at {', '.join(map(str, ks))})" for o, ks in dip.items() if ks)
        who = ("flow matching in fewer" if (k_f or 10**6) < (k_d or 10**6) else
               "DDPM in fewer" if (k_d or 10**6) < (k_f or 10**6) else "both from the same count")
        return (f"{what} stays at or above 90 % of DDPM's {top}-step value ({level:.0%}) from {steps(k_f)} for flow "
                f"matching (Euler) and {steps(k_d)} for DDPM (DDIM): {who}{dip_text}")

    class_key, class_what = (key, "the " + what) if key == "legible" else ("agreement", "agreement")
    return (f"Flow matching against DDPM, each with its handout's recipe (flow: lr 1e-2, no EMA, Euler; DDPM: lr "
            f"1e-3, an EMA of the weights, DDIM; the class DDPM after epoch 10 of a 20-epoch decay) on the same UNet "
            f"(D = 32), batch 64, 12,800 digits and {study['runs']['flow']['optimiser_steps']:,} optimiser steps, "
            f"at {top} sampling steps: class-conditioned, {agree}, {sure_class}; unconditional, {sure}.\n\n"
            f"Against the number of steps: class-conditioned, {reach('-class', class_key, class_what)}; "
            f"unconditional, {reach('', key, 'the ' + what)}.")


def steps_figure(study: dict, fig_dir: str) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(FIG_W, 3.1), layout="constrained")
    style = {"flow": ("#E69F00", "flow matching, Euler"), "ddpm": ("#0072B2", "DDPM, DDIM (eta 0)")}
    sure, what = sure_key(study)
    for ax, key, runs, title in ((axes[0], sure, ("flow-class", "ddpm-class"), "class-conditioned, gamma = 5"),
                                 (axes[1], sure, ("flow", "ddpm"), "unconditional")):
        for name in runs:
            run = study["runs"][name]
            colour, label = style[name.split("-")[0]]
            half = [1.96 * math.sqrt(v * (1 - v) / study["n"]) for v in run[key]]  # 95 % interval of a share
            ax.errorbar(run["steps"], run[key], yerr=half, marker="o", ms=3, capsize=2, color=colour, label=label)
            if "agreement" in run:  # dashed: the classifier's reading alone, which passes blurred mean digits
                ax.plot(run["steps"], run["agreement"], ls="--", lw=0.9, color=colour, label=f"{label}: asked digit")
            if "full_chain" in run:
                ax.scatter([run["full_chain"]["steps"]], [run["full_chain"][key]], marker="s", color=colour,
                           label=f"DDPM, full chain ({run['full_chain']['steps']} steps)")
        ax.set(xscale="log", ylim=(0, 1.02), xlabel="sampling steps", title=title,
               ylabel=what.split(" (")[0])
        ax.set_xticks(run["steps"], [str(k) for k in run["steps"]])
        ax.minorticks_off()
        ax.legend(frameon=False, loc="lower right")
    return save(fig, fig_dir, "cs180fm_steps")


@torch.no_grad()
def rows_figure(fig_dir: str, steps=(1, 2, 5, 50), seed: int = 0) -> str:
    """One sample of each digit (columns) from each class-conditioned run at a few step counts (rows)."""
    rows, labels, y = [], [], torch.arange(10)
    for name, path in (("flow", FLOW_CLASS), ("DDPM", os.path.join(dn.SHIPPED, "timecond_class_budget.pt"))):
        run = tc.load_run(path)
        model = run.models[flow_study.EPOCH]
        for k in steps:
            rows.append(list(tc.draw(model, run.schedule, 10, seed, y=y, w=tc.GUIDANCE, steps=k)))
            labels.append(f"{name}, {k} step{'s' if k != 1 else ''}")
    return image_grid(rows, fig_dir, "cs180fm_steps_samples", labels, [f"asks {d}" for d in range(10)], cell=0.5,
                      label_w=1.3)


def compare_page(fig_dir: str, study: Optional[dict]) -> Page:
    if study is None:
        return Page("CS180 (fall 2025): flow matching against DDPM", [], [("text", (
            f"No stored study in {flow_study.STUDY}: python -m cs180.flow_study writes one "
            "(runs/flow_study.json; copy it there).")) ])
    png, png_rows = steps_figure(study, fig_dir), rows_figure(fig_dir)
    figs = [Figure(png, f"Two panels of shares against sampling steps on a log axis: the {sure_key(study)[1]} of the "
                        "class-conditioned runs (left, with their agreement with the asked digit dashed) and of the "
                        "unconditional runs (right); orange flow matching, blue DDPM.",
                   "Figure 1. Flow matching against DDPM at the same training budget, by sampling steps (with "
                   "guidance each step costs two network evaluations)."),
            Figure(png_rows, "Eight rows of ten digits, one per asked digit: flow matching after 1, 2, 5 and 50 Euler "
                             "steps, then DDPM after 1, 2, 5 and 50 DDIM steps.",
                   "Figure 2. The class-conditioned runs' samples at 1, 2, 5 and 50 steps (seeds 0-9, epoch 10).")]
    key, what = sure_key(study)
    rows = "; ".join(f"{name}, {label}: " + ", ".join(f"{v:.1%}@{k}" for k, v in zip(r["steps"], r[field]))
                     for name, r in study["runs"].items()
                     for field, label in ((key, what.split(" (")[0]), ("agreement", "asked digit")) if field in r)
    body = (f"{study['n']} samples per point, the same seeds for every run and step count, read by the metric "
            f"classifier (trained on clean digits) and its legibility judge. Every run: {what}; class runs also the "
            f"agreement with the asked digit, which one Euler step of flow matching meets with the blurred mean image "
            f"of the class (figure 2), so the counts of steps use the judge. The four runs share the UNet (D = 32), batch 64, the same 12,800 training "
            "digits and 2,000 optimiser steps; flow matching trains with the fall 2025 handout's lr 1e-2 and no EMA, "
            "DDPM with lr 1e-3 and an EMA (the class DDPM is the DDPM edition's class-conditioned run after its epoch "
            "10 of 20). Flow matching samples with k Euler steps, DDPM with DDIM over k steps (eta 0). These are "
            "300 new samples per point; the epoch pages read the 100 each run stored, so the same model can print a "
            "few points apart (a share near 50 % of 100 samples has a 95 % interval of about +-10 points). Not attempted: the handout's 'remove the learning-rate "
            "scheduler' item. "
            f"Measured: {rows}. Reproduce: python -m cs180.flow_study --n {study['n']}.")
    return Page.of_text("CS180 (fall 2025): flow matching against DDPM", figs, body,
                        answers=compare_answer(study))


def pages(fig_dir: str, pure: str = PURE, flow: str = FLOW, flow_class: str = FLOW_CLASS, seed: int = 0,
          study_path: str = flow_study.STUDY) -> list[Page]:
    ctx = load_b2(fig_dir, seed)
    return [pure_page(fig_dir, pure), flow_page(ctx, flow, False), flow_page(ctx, flow_class, True),
            compare_page(fig_dir, flow_study.load_study(study_path))]
