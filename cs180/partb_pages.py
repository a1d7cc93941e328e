"""CS180 project 5 part B on MNIST: figures and measured texts for the report.

  b1_pages(fig_dir)   part B.1, the single-step denoiser (cs180/denoiser.py):
      cs180b1_noising.png     test digits, z = x + sigma eps for sigma = 0 .. 1          (Fig. 3)
      cs180b1_loss.png        training loss per step, epochs marked                       (Fig. 4)
      cs180b1_epochs.png      clean / noisy (sigma = 0.5) / after epoch 1 / after epoch 5   (Fig. 5, 6)
      cs180b1_ood.png         noisy and denoised at every sigma (trained at 0.5 only)     (Fig. 7)
  b2_pages(fig_dir)   part B.2, the time-conditioned DDPMs (cs180/timecond.py):
      cs180b2_loss.png, cs180b2_epochs.png               B.2.1-2.3 unconditional: loss per step; samples
                                                         after epochs 1, 5, 10, 15, 20 (and without the EMA)
      cs180b2_class_loss.png, cs180b2_class_epochs.png   B.2.4-2.5 class-conditioned: the same, 4 per digit

They read the shipped runs (mnist/reference/denoiser.pt, timecond.pt, timecond_class.pt) unless given
others. Each part is three steps: load (a small context: the run, the test digits, the classifier),
measure (every number the pages print), typeset (one function per page: its figures and its text).
B.2's samples are the ones each run stored after training (python -m cs180.timecond draws them;
--add-samples adds them to a run); every number in the texts is computed here from those samples,
seeded draws and the metric classifier (mnist.metrics).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import NamedTuple, Optional, Sequence

import torch

from image_diffusion.fid import fit_gaussian, frechet_distance
from mnist.checkpoint import EpochRun
from mnist.data import MNISTData, load_mnist
from mnist.metrics import load_classifier, predict
from report.pages import FIG_W, Figure, Page
from runio.cli import Parser, run_command
from runio.errors import CheckpointError

from . import denoiser as dn
from . import timecond as tc
from .figures import image_grid, image_table, loss_figure

CONFIDENT = 0.9  # a sample "reads as a digit" when the classifier gives one class at least this probability
HANDOUT_EPOCHS = tc.TimeCondConfig.handout().epochs


def test_digits(data, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first per_class test digits of each class, in class order: x (N, 1, 28, 28) in [-1, 1], y (N,)."""
    idx = torch.cat([(data.test_y == c).nonzero().flatten()[:per_class] for c in range(10)])
    return data.test_x[idx], data.test_y[idx]


def _unit_to_model(x: torch.Tensor) -> torch.Tensor:
    return x * 2 - 1  # image_table draws [-1, 1]; part B.1 works in [0, 1]


# ======================================================================= B.1
@dataclasses.dataclass(frozen=True)
class B1:
    """What every B.1 page reads: the run, per_class test digits of each class in [0, 1] (the handout's range
    for part 1), their noisy copies and the metric classifier."""

    run: EpochRun
    x: torch.Tensor  # (N, 1, 28, 28) in [0, 1]
    y: torch.Tensor  # (N,) labels
    noisy: dict  # sigma -> x + sigma eps (N, 1, 28, 28), the same seeded eps at every sigma
    clf: torch.nn.Module
    fig_dir: str
    seed: int
    sigmas: tuple
    show: list  # the digits shown: a 0, 2, 3, 5, 7 and 9

    @property
    def first(self) -> int:
        return min(self.run.models)

    @property
    def last(self) -> int:
        return max(self.run.models)

    def path(self, name: str) -> str:
        return os.path.join(self.fig_dir, name)

    def noise(self, sigma: float) -> torch.Tensor:
        """x + sigma eps with the seeded eps of every B.1 figure."""
        return dn.add_noise(self.x, sigma, torch.Generator().manual_seed(self.seed))

    def reads(self, x_unit: torch.Tensor) -> float:
        """Share of x_unit (N, 1, 28, 28) in [0, 1] that the classifier reads as the true digit."""
        return (predict(self.clf, _unit_to_model(x_unit))[0] == self.y).float().mean().item()


def load_b1(fig_dir: str, checkpoint: Optional[str] = None, seed: int = 0, per_class: int = 10,
            sigmas: Sequence[float] = dn.SIGMAS) -> B1:
    run = dn.load_run(checkpoint or dn.REFERENCE)
    data = load_mnist(download=False, verbose=False)
    x_m, y = test_digits(data, per_class)
    x = (x_m + 1) / 2
    clf, _ = load_classifier(data=data, verbose=False)
    noisy = {s: dn.add_noise(x, s, torch.Generator().manual_seed(seed)) for s in sigmas}
    return B1(run, x, y, noisy, clf, fig_dir, seed, tuple(sigmas), [c * per_class for c in (0, 2, 3, 5, 7, 9)])


class B1Numbers(NamedTuple):
    """What the B.1 pages print, measured on the test digits."""

    read_noisy: dict  # sigma -> share of noisy digits (clipped to [0, 1]) read as the true digit
    psnr: dict  # epoch (first, last) -> {sigma: (denoised dB, noisy dB)} (dn.psnr_per_sigma)
    denoised: dict  # sigma -> the last epoch's D(z) clamped to [0, 1], (N, 1, 28, 28)
    read_denoised: dict  # sigma -> share of denoised digits read as the true digit
    per_epoch: list  # mean loss per epoch
    steps_per_epoch: int


@torch.no_grad()
def measure_b1(b: B1) -> B1Numbers:
    run, cfg = b.run, b.run.config
    steps_per_epoch = max(1, round(len(run.losses) / cfg.epochs))
    mean = lambda a: sum(a) / max(1, len(a))
    den = {s: run.models[b.last](b.noisy[s]).clamp(0, 1) for s in b.sigmas}
    return B1Numbers({s: b.reads(b.noisy[s].clamp(0, 1)) for s in b.sigmas},
                     {e: dn.psnr_per_sigma(run.models[e], b.x, b.sigmas, b.seed) for e in (b.first, b.last)},
                     den, {s: b.reads(den[s]) for s in b.sigmas},
                     [mean(run.losses[i * steps_per_epoch:(i + 1) * steps_per_epoch]) for i in range(cfg.epochs)],
                     steps_per_epoch)


def noising_page(b: B1, m: B1Numbers) -> Page:
    """B.1.2: the noising process z = x + sigma eps."""
    png = image_table([[_unit_to_model(b.noisy[s][i].clamp(0, 1)) for s in b.sigmas] for i in b.show[:4]],
                      b.path("cs180b1_noising.png"), [f"digit {int(b.y[i])}" for i in b.show[:4]],
                      [f"sigma={s}" for s in b.sigmas])
    fig = Figure(png, f"A grid of four test digits (rows) at noise levels sigma = {', '.join(map(str, b.sigmas))} "
                      "(columns): the digit sinks into grey noise from left to right.",
                 "Figure. The noising process z = x + sigma eps on test digits.")
    return Page.of_text("CS180 B.1.2: the noising process", [fig],
                        "B.1.2 Noising process z = x + sigma eps on test digits in [0, 1] (shown clipped to [0, 1]). "
                        "The metric classifier still reads the true digit in " +
                        ", ".join(f"{m.read_noisy[s]:.0%} at sigma={s}" for s in b.sigmas) +
                        f" of {len(b.x)} test digits.")


@torch.no_grad()
def training_page(b: B1, m: B1Numbers) -> Page:
    """B.1.2.1: the loss curve, and the denoiser after its first and last epoch."""
    run, cfg, first, last = b.run, b.run.config, b.first, b.last
    png_loss = loss_figure(run.losses, m.steps_per_epoch, b.path("cs180b1_loss.png"),
                           f"single-step denoiser, D={cfg.hidden}, sigma={cfg.sigma}, batch {cfg.batch_size}, "
                           f"lr {cfg.lr:g}", "L2 loss, D(z) vs x, per pixel")
    z = b.noisy[cfg.sigma] if cfg.sigma in b.noisy else b.noise(cfg.sigma)
    d1, dT = run.models[first](z).clamp(0, 1), run.models[last](z).clamp(0, 1)
    png_ep = image_table([[_unit_to_model(v[i]) for i in b.show] for v in (b.x, z.clamp(0, 1), d1, dT)],
                         b.path("cs180b1_epochs.png"),
                         ["clean", f"sigma={cfg.sigma}", f"epoch {first}", f"epoch {last}"])
    at = cfg.sigma if cfg.sigma in m.psnr[last] else None
    figs = [Figure(png_loss, "A falling training-loss curve on a log scale against the training step, per step and "
                             "its running mean, with grey lines at the epoch ends.",
                   "Figure 1. Training loss of the single-step denoiser."),
            Figure(png_ep, f"Four rows of six test digits: clean, noised at sigma = {cfg.sigma}, and denoised after "
                           f"epoch {first} and after epoch {last}.",
                   f"Figure 2. The denoiser after epoch {first} and epoch {last} (sigma = {cfg.sigma}).")]
    return Page.of_text("CS180 B.1.2.1: training the single-step denoiser", figs,
                        f"B.1.2.1 Training: the handout's UNet with D={cfg.hidden} hidden channels "
                        f"(handout: 128), Adam lr {cfg.lr:g}, batch {cfg.batch_size}, sigma = {cfg.sigma}, "
                        f"{cfg.epochs} epochs of {m.steps_per_epoch} steps on the {run.info.get('data_source', '?')} "
                        f"digits ({run.info.get('seconds', float('nan')) / 60:.1f} min on "
                        f"{run.info.get('threads', 1)} CPU thread). "
                        "Mean loss per epoch: " + ", ".join(f"{v:.4f}" for v in m.per_epoch) + "." +
                        (f" On {len(b.x)} test digits at sigma = {at}: noisy input {m.psnr[last][at][1]:.1f} dB, "
                         f"after epoch {first} {m.psnr[first][at][0]:.1f} dB, after epoch {last} "
                         f"{m.psnr[last][at][0]:.1f} dB PSNR." if at is not None else ""))


def ood_page(b: B1, m: B1Numbers) -> Page:
    """B.1.2.2: the denoiser at noise levels it was not trained on."""
    cfg, psnr = b.run.config, m.psnr[b.last]
    i, j = b.show[1], b.show[4]
    noisy_row = lambda r: [_unit_to_model(b.noisy[s][r].clamp(0, 1)) for s in b.sigmas]
    denoised_row = lambda r: [_unit_to_model(m.denoised[s][r]) for s in b.sigmas]
    png = image_table([noisy_row(i), denoised_row(i), noisy_row(j), denoised_row(j)], b.path("cs180b1_ood.png"),
                      ["noisy", "denoised", "noisy", "denoised"], [f"sigma={s}" for s in b.sigmas])
    gain = {s: psnr[s][0] - psnr[s][1] for s in b.sigmas}
    noisy_s = [s for s in b.sigmas if s > 0]
    worse = [s for s in noisy_s if gain[s] < 0]
    table = "; ".join(f"sigma={s}: {psnr[s][1]:.1f} -> {psnr[s][0]:.1f}" for s in noisy_s)
    clean = psnr[0.0][0] if 0.0 in psnr else None
    peak = max(noisy_s, key=lambda s: gain[s]) if noisy_s else None
    fig = Figure(png, f"Four rows: two test digits, each noisy and then denoised, at sigma = "
                      f"{', '.join(map(str, b.sigmas))} (columns).",
                 f"Figure. The denoiser, trained at sigma = {cfg.sigma}, at every noise level.")
    return Page.of_text("CS180 B.1.2.2: out-of-distribution noise levels", [fig],
                        f"B.1.2.2 Out-of-distribution test, trained at sigma = {cfg.sigma} only. PSNR (dB, noisy -> "
                        f"denoised, {len(b.x)} test digits): {table}." +
                        (f" On clean input (sigma = 0) it returns {clean:.1f} dB against the input: it still "
                         "'denoises', blurring the strokes a little." if clean is not None else "") +
                        (f" The gain is largest at sigma = {peak} ({gain[peak]:+.1f} dB)" if peak is not None else "") +
                        (f"; at sigma = {', '.join(map(str, worse))} the output is worse than its input." if worse else
                         "; it never makes a noisy input worse.") +
                        " The metric classifier reads the true digit in the denoised output in " +
                        ", ".join(f"{m.read_denoised[s]:.0%} at sigma={s}" for s in b.sigmas) +
                        f" (the noisy input: {', '.join(f'{m.read_noisy[s]:.0%}' for s in b.sigmas)}).")


def b1_pages(fig_dir: str, checkpoint: Optional[str] = None, seed: int = 0, per_class: int = 10,
             sigmas: Sequence[float] = dn.SIGMAS) -> list[Page]:
    """Part B.1's three pages, figures in fig_dir; PSNR over per_class x 10 test digits."""
    b = load_b1(fig_dir, checkpoint, seed, per_class, sigmas)
    m = measure_b1(b)
    return [noising_page(b, m), training_page(b, m), ood_page(b, m)]


# ======================================================================= B.2
@torch.no_grad()
def read_samples(clf, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (N,), top probability (N,)) of the metric classifier on x in [-1, 1]."""
    prob = torch.cat([clf(b).softmax(1) for b in x.split(500)])
    top, lab = prob.max(1)
    return lab, top


class B2Numbers(NamedTuple):
    """What the metric classifier makes of one set of samples (or of real test digits)."""
    n: int
    confident: float  # share read as one digit with probability >= CONFIDENT
    agreement: Optional[float]  # share read as the requested digit (class runs), else None
    fld: float  # Frechet distance to the test digits in the classifier's features
    digits: int  # different digits among the confident readings


def stored_samples(run: tc.Snapshots, n: int = 20, seed: int = 0, progress: bool = False) -> dict:
    """The samples the run stored (tc.add_samples: drawn after training, as the handout does), or, for a
    run without them, n drawn now from each snapshot in memory (slow: the full chain). Images in [-1, 1]."""
    got = run.samples
    if got is None:
        y = torch.arange(n) % 10 if run.config.num_classes else None
        w = tc.GUIDANCE if run.config.num_classes else 0.0
        sampled = {e: tc.draw(m, run.schedule, n, seed, y=y, w=w, progress=progress) for e, m in run.models.items()}
        return {"n": n, "seed": seed, "w": w, "labels": y, "sampled": sampled, "raw": {}, "matched": {}}
    to_model = lambda u8: (u8.float() / 127.5 - 1)[:, None]
    return {**got, **{group: {e: to_model(v) for e, v in got.get(group, {}).items()}
                      for group in ("sampled", "raw", "matched")}}


def b2_numbers(clf, x: torch.Tensor, reference: torch.Tensor, labels=None) -> B2Numbers:
    """Classifier readings of x (N, 1, 28, 28) in [-1, 1] against the test digits `reference`."""
    lab, top = read_samples(clf, x)
    sure = top >= CONFIDENT
    agree = float((lab == labels).float().mean()) if labels is not None else None
    fld = frechet_distance(fit_gaussian(predict(clf, x)[1]), fit_gaussian(predict(clf, reference)[1]))
    return B2Numbers(len(x), float(sure.float().mean()), agree, fld, len(set(lab[sure].tolist())))


def epochs_figure(samples: dict, rows_per_epoch: int, path: str, numbers: dict, class_run: bool,
                  raw: Optional[tuple] = None, matched: Optional[tuple] = None) -> str:
    """Samples after each epoch: rows_per_epoch rows of 10 per epoch (a class run: columns ask for 0..9),
    labelled with the epoch and its measured reading; raw = (epoch, samples, numbers[, note]) adds the final
    weights without their EMA, matched = (epoch, samples, numbers) the final weights' chain started from
    the matched prior."""
    blocks = [(f"epoch {e}", samples[e], numbers[e]) for e in samples]
    if raw is not None:
        blocks.append((f"epoch {raw[0]}, no EMA" + (f"\n({raw[3]})" if len(raw) > 3 else ""), raw[1], raw[2]))
    if matched is not None:
        blocks.append((f"epoch {matched[0]}, x_T\nmatched to q", matched[1], matched[2]))
    rows, labels = [], []
    for name, x, num in blocks:
        what = f"{num.agreement:.0%} match" if class_run else f"{num.confident:.0%} sure"
        for r in range(rows_per_epoch):
            rows.append(list(x[r * 10:(r + 1) * 10]))
            labels.append(f"{name}\n{what}" if r == 0 else "")
    cols = [f"asks {d}" for d in range(10)] if class_run else None
    folder, name = os.path.split(path)
    return image_grid(rows, folder or ".", os.path.splitext(name)[0], labels, cols,
                      cell=0.33 if rows_per_epoch > 1 else 0.56, label_w=1.25)


def handout_recipe(cfg: tc.TimeCondConfig) -> Optional[str]:
    """How a run's raw weights (no EMA) stand to the handout's recipe: "the handout's recipe", "the handout's
    recipe, trained 30 epochs instead of 20" when only the length differs, or None. The EMA and bf16 leave
    the raw weights the handout's (bf16 changes the arithmetic, not the recipe)."""
    handout = tc.TimeCondConfig.handout(num_classes=cfg.num_classes, p_uncond=cfg.p_uncond, seed=cfg.seed)
    if dataclasses.replace(cfg, ema=0.0, bf16=False, epochs=handout.epochs) != handout:
        return None
    longer = "" if cfg.epochs == handout.epochs else f", trained {cfg.epochs} epochs instead of {handout.epochs}"
    return f"the handout's recipe{longer}"


@dataclasses.dataclass(frozen=True)
class B2:
    """What both B.2 pages read: the test digits, the metric classifier and what it makes of real digits."""

    data: MNISTData
    clf: torch.nn.Module
    clf_info: dict
    real: B2Numbers  # the classifier on the real test digits
    fig_dir: str
    seed: int
    progress: bool


def load_b2(fig_dir: str, seed: int = 0, progress: bool = False) -> B2:
    data = load_mnist(download=False, verbose=False)
    clf, clf_info = load_classifier(data=data, verbose=False)
    return B2(data, clf, clf_info, b2_numbers(clf, data.test_x, data.test_x, data.test_y), fig_dir, seed, progress)


class B2Measured(NamedTuple):
    """One B.2 run's samples and what the classifier makes of them."""

    samples: dict  # stored_samples(run)
    num: dict  # epoch -> B2Numbers of its samples
    raw: Optional[tuple]  # (epoch, samples, B2Numbers) of the last weights without their EMA, or None
    matched: Optional[tuple]  # (epoch, samples, B2Numbers) of the last weights from the matched prior, or None

    @property
    def last(self) -> int:
        return max(self.num)


def measure_b2(ctx: B2, run: tc.Snapshots) -> B2Measured:
    got = stored_samples(run, seed=ctx.seed, progress=ctx.progress)
    measure = lambda x: b2_numbers(ctx.clf, x, ctx.data.test_x, got["labels"])
    latest = lambda group: (max(got[group]), got[group][max(got[group])]) if got[group] else None
    raw, matched = latest("raw"), latest("matched")
    return B2Measured(got, {e: measure(x) for e, x in got["sampled"].items()},
                      (*raw, measure(raw[1])) if raw else None, (*matched, measure(matched[1])) if matched else None)


def b2_recipe(run: tc.Snapshots) -> str:
    """The run's recipe, against the handout's, in one sentence."""
    cfg, threads = run.config, run.info.get("threads", 1)
    return (f"D = {cfg.hidden} (handout 64), batch {cfg.batch_size} (handout 128), Adam lr {cfg.lr:g} decayed by "
            f"{cfg.lr_decay:g} over {cfg.epochs} epochs (the handout's"
            + (f" schedule, stretched from its {HANDOUT_EPOCHS} epochs" if cfg.epochs != HANDOUT_EPOCHS else "")
            + "), "
            + (f"EMA of the weights (decay {cfg.ema:g}) for sampling (handout: none)" if cfg.ema else "no EMA")
            + (f", {cfg.epochs} epochs of a class-stratified subset of about {cfg.train_size:,} of the "
               f"{run.info.get('data_source', '?')} training digits" if cfg.train_size else
               f", {cfg.epochs} epochs of the {run.info.get('data_source', '?')} training digits")
            + (", bf16 autocast in training (fp32 weights)" if cfg.bf16 else "")
            + f": {len(run.losses):,} steps in {run.info.get('seconds', float('nan')) / 60:.0f} min on "
            f"{threads} CPU thread{'s' if threads != 1 else ''}")


class B2Lines(NamedTuple):
    """The measured sentences of a B.2 page's body."""

    per_epoch: str  # each saved epoch's readings
    ema: str  # the raw weights, without their EMA ("" for a run without one)
    matched: str  # the row started from the matched prior ("" without one)
    common: str  # what the classifier makes of real digits, and what FLD is


def b2_measured_lines(ctx: B2, run: tc.Snapshots, m: B2Measured, class_run: bool) -> B2Lines:
    cfg, handout_raw, raw = run.config, handout_recipe(run.config), m.raw
    per_epoch = "; ".join(
        f"epoch {e}: " + (f"{v.agreement:.0%} match, " if class_run else "") + f"{v.confident:.0%} read with p >= "
        f"{CONFIDENT}, FLD {v.fld:.0f}" for e, v in m.num.items())
    ema_line = (f" Without the EMA (the raw weights after epoch {raw[0]}, same seeds"
                + (f"; these are {handout_raw}" + (" (trained in bf16)" if cfg.bf16 else "") if handout_raw else "")
                + "): "
                + (f"{raw[2].agreement:.0%} match, " if class_run else "")
                + f"{raw[2].confident:.0%} read with confidence, FLD {raw[2].fld:.0f}." if raw else "")
    ab_T = float(run.schedule.alpha_bar[cfg.T])
    matched_line = (f" Last row, a departure: this schedule keeps sqrt(alpha_bar_T) = {ab_T ** 0.5:.2f} of the image in "
                    f"x_T, so q(x_T) is not N(0, I); that row starts the same seeds from N(sqrt(alpha_bar_T) m, "
                    f"alpha_bar_T v + 1 - alpha_bar_T), m and v the training pixels' means and variances "
                    f"(utils.matched_prior)." if m.matched else "")
    source = f"{ctx.data.source} test digits" if ctx.data.source else "test digits"
    common = (f"The metric classifier (trained on {ctx.clf_info.get('source', '?')} digits) reads real {source} with "
              f"p >= {CONFIDENT} in {ctx.real.confident:.0%} of {ctx.real.n:,}; FLD is the Frechet distance to those "
              f"digits in its 64 features (real vs real is 0; n = {m.samples['n']} samples per epoch, so small-sample "
              "bias adds to it).")
    return B2Lines(per_epoch, ema_line, matched_line, common)


def class_texts(run: tc.Snapshots, m: B2Measured, lines: B2Lines) -> tuple[str, str, str]:
    """(title, body, answers) of the class-conditioned run's page (B.2.4-2.5)."""
    cfg, n, f, gamma = run.config, m.samples["n"], m.num[m.last], m.samples["w"] + 1
    answers = (f"Guided samples that show the requested digit: {f.agreement:.0%} of {n} after epoch {m.last} "
               f"(label i % 10 for seed i, guidance gamma = {gamma:g}); {f.confident:.0%} are read with "
               f"confidence p >= {CONFIDENT}.\n\n"
               "Over training: " + ", ".join(f"epoch {e} {v.agreement:.0%}" for e, v in m.num.items()) + " match.")
    body = (f"B.2.4 The handout's class-conditioned UNet: a one-hot label through two FCBlocks scales the unflatten "
            f"and up1 features (c1 * h + t1), with the label dropped (all zeros) for {cfg.p_uncond:.0%} of the "
            f"training images. Recipe: {b2_recipe(run)}. B.2.5 Sampling: the full {cfg.T}-step ancestral chain with "
            f"classifier-free guidance, eps = eps_u + gamma (eps_c - eps_u), gamma = {gamma:g}. Rows: 4 "
            f"samples of each digit (columns) after each epoch, the same seeds every time; measured on all {n} "
            f"samples (10 per digit): {lines.per_epoch}.{lines.ema} {lines.common}")
    return "CS180 B.2.4-2.5: the class-conditioned UNet, guided", body, answers


def time_texts(ctx: B2, run: tc.Snapshots, m: B2Measured, lines: B2Lines) -> tuple[str, str, str]:
    """(title, body, answers) of the unconditional, time-conditioned run's page (B.2.1-2.3)."""
    cfg, n, f, matched = run.config, m.samples["n"], m.num[m.last], m.matched
    answers = (f"Samples that read as digits: {f.confident:.0%} of {n} after epoch {m.last} are read as one digit "
               f"with confidence p >= {CONFIDENT}, against {ctx.real.confident:.0%} of real test digits; {f.digits} "
               f"different digit{'s appear' if f.digits != 1 else ' appears'} among them.\n\n"
               "Over training: " + ", ".join(f"epoch {e} {v.confident:.0%}" for e, v in m.num.items()) +
               " read with confidence."
               + (f"\n\nStarted from the matched prior instead of N(0, I) (epoch {matched[0]}, the same seeds): "
                  f"{matched[2].confident:.0%} read with confidence, FLD {matched[2].fld:.0f} against "
                  f"{m.num[matched[0]].fld:.0f}." if matched else ""))
    body = (f"B.2.1 The handout's UNet conditioned on t / T by two FCBlocks added to the unflatten and up1 "
            f"features. B.2.2 Training: the simplified loss |eps - eps_theta(x_t, t)|^2 with t uniform in 1..{cfg.T} "
            f"and the handout's linear betas 1e-4 .. 0.02. Recipe: {b2_recipe(run)}. B.2.3 Sampling: the full "
            f"{cfg.T}-step ancestral chain from pure noise. Rows: the first 10 of {n} samples after each "
            f"epoch, the same seeds every time; measured on all {n}: {lines.per_epoch}.{lines.ema}{lines.matched} "
            f"{lines.common}")
    return "CS180 B.2.1-2.3: the time-conditioned UNet", body, answers


def b2_page(ctx: B2, run: tc.Snapshots, m: B2Measured) -> Page:
    """One B.2 run's page: its loss curve, its samples after each saved epoch, and what they measure."""
    cfg, class_run = run.config, bool(run.config.num_classes)
    raw = m.raw
    if raw is not None and handout_recipe(cfg):  # the row label: short, at 7 pt beside 10 digits
        raw = (*raw, "the handout's recipe" + (f",\n{cfg.epochs} epochs" if cfg.epochs != HANDOUT_EPOCHS else ""))
    name = "cs180b2_class" if class_run else "cs180b2"
    desc = (f"{'class-conditioned' if class_run else 'time-conditioned'} UNet, D={cfg.hidden}, T={cfg.T}, "
            f"batch {cfg.batch_size}, {len(run.losses):,} steps")
    png_loss = loss_figure(run.losses, math.ceil(len(run.losses) / cfg.epochs),
                           os.path.join(ctx.fig_dir, f"{name}_loss.png"), desc, "L2 loss per pixel", size=(FIG_W, 2.5))
    png = epochs_figure(m.samples["sampled"], 4 if class_run else 1, os.path.join(ctx.fig_dir, f"{name}_epochs.png"),
                        m.num, class_run, raw, m.matched)
    lines = b2_measured_lines(ctx, run, m, class_run)
    title, body, answers = class_texts(run, m, lines) if class_run else time_texts(ctx, run, m, lines)
    kind = "class-conditioned" if class_run else "time-conditioned"
    return Page.of_text(title, epoch_figures(png_loss, png, kind, m.samples["sampled"], class_run), body,
                        answers=answers)


def epoch_figures(png_loss: str, png: str, kind: str, epochs, class_run: bool) -> list:
    """A B.2 page's two figures, with their alt text and captions: the loss curve and the samples per epoch."""
    return [Figure(png_loss, f"Training-loss curve of the {kind} UNet on a log scale against the training step.",
                   f"Figure 1. Training loss of the {kind} UNet."),
            Figure(png, f"Rows of generated digits after each saved epoch ({', '.join(map(str, epochs))})"
                        + (", four per requested digit 0 to 9 in columns" if class_run else ", ten per row")
                        + ", each row labelled with the share the classifier reads; they sharpen with training.",
                   "Figure 2. Samples after each saved epoch, the same seeds every time.")]


def b2_pages(fig_dir: str, checkpoint: Optional[str] = None, class_checkpoint: Optional[str] = None, seed: int = 0,
             progress: bool = False) -> list[Page]:
    """Part B.2 in fig_dir: the time-conditioned (unconditional) run, B.2.1-2.3, and the class-conditioned
    run, B.2.4-2.5, each with its loss curve and its samples after each saved epoch, read by the metric
    classifier. Default runs: the shipped ones."""
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
