"""CS180 project 5 part A on the shipped MNIST DDPM: figures and measured texts for the report.

`pages(fig_dir)` returns report.pages.Page objects, one per part-A section:

  A.1 forward process        cs180_forward         test digits noised to t = 0 .. T
  A.2-A.4 denoising          cs180_denoise         noisy / Gaussian blur / one-step / iterative, per t
  A.4 iterative denoising    cs180_progression     x_t every 5th strided step, then the three estimates
  A.5-A.6 sampling           cs180_sampling        per label, w = 0 and classifier-free guidance;
                             cs180_unconditional   and with the null label (the empty prompt)
  A.7.1 SDEdit               cs180_sdedit          three test digits, no label, i_start = 1..20
  A.7.1 SDEdit, own inputs   cs180_sdedit_drawn    hand-drawn digits, a font letter and a photo, no label / label
  A.7.2 inpainting           cs180_inpaint         true label, another label, another label with resampling
  A.7.3 translation          cs180_translate       one digit edited towards each other label
  A.8 / A.9 over all pairs   cs180_illusion_rates  success of all 90 anagram and hybrid label pairs (+ .csv, .npz)
  A.8 visual anagrams        cs180_anagram         the best non-trivial pairs, upright and rotated
  A.9 hybrids                cs180_hybrid          the best pairs, up close and from afar

The class label plays DeepFloyd's text prompt. Every sentence with a number is computed from the
images made here (seeded), scored by the metric classifier (mnist.metrics); nothing is canned.
Timestep convention as in utils.py (t = 0 clean, t = T noise); i_start indexes
editing.strided_timesteps(T, steps), larger = less noise.

Every figure is made report.pages.FIG_W inches wide, the width the report prints it at, so its
fonts print at their own sizes; `save` refuses a figure with a font under MIN_PT printed points or
taller than a page.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Text

from report.figures import save_numbers
from report.pages import FIG_W, Page
from runio.files import atomic_write
from utils import generators, randn

from . import denoiser as dn
from . import editing as ed
from . import timecond as tc
from .checkpoint import load_model
from .data import load_mnist, to_unit_range
from .metrics import load_classifier, predict
from .sample import DEFAULT_W, REFERENCE

SDEDIT_I = (1, 3, 5, 7, 10, 20)  # CS180's i_start values
DRAWN_I = (3, 5, 10, 20)  # SDEdit strengths for the hand-drawn and outside images (those <= steps)
HAND_SHAPES = ("2", "3", "4", "5", "8", "9")  # editing.hand_drawn digits
LETTER, LETTER_LABEL = "S", 5  # the font letter, and the label it is edited with
PHOTO_LABEL = 0  # the label the photo is edited with ("a face is round")
ILLUSION_SEEDS = (0,)  # per label pair, in the report (benchmarks/mnist_editing.py uses 5)
ILLUSION_STEPS = 10  # DDIM steps of the report's pair sweeps: all 90 pairs x seeds in one batch
EXAMPLES = 5  # best pairs shown per illusion
PER_ROW = 2  # examples: at most 2 pairs with the same upright / low-pass label
EXAMPLE_SEED = 100  # the examples' seeds start here: fresh, not the sweep's
RESAMPLE = 4  # RePaint's U for inpainting towards another label
BASELINE_SEEDS = 5  # plain samples per label for the illusions' baselines
INPAINT_STEPS = 20  # strided steps of the inpainting runs, with and without resampling alike
PROGRESS_EVERY = 5  # A.4: show x_t every 5th strided step, as CS180

MIN_PT = 7.0  # smallest printed font size
FONT = 8.0  # font size in every figure; figures are FIG_W wide, so it prints at 8 pt
DPI = 200  # of the PNGs: 8 pt text stays crisp in print
PAGE_ROOM = 9.8  # inches: the tallest figure that prints unshrunk below a page's title
TICK, CROSS = "\u2713", "\u2717"  # check and cross marks (DejaVu Sans has both)


# ================================================================ figures
def printed_sizes(fig) -> list[tuple[str, float]]:
    """(text, printed points) of every visible, non-empty text in fig when the figure is printed
    FIG_W inches wide."""
    scale = FIG_W / fig.get_size_inches()[0]
    return [(t.get_text(), t.get_fontsize() * scale) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip()]


def save(fig, fig_dir: str, name: str) -> str:
    """Check that every text prints at MIN_PT or more and that the figure fits a page unshrunk, then
    write <name>.png at DPI (what the report embeds). Returns the PNG's path."""
    small = [(t, round(pt, 1)) for t, pt in printed_sizes(fig) if pt < MIN_PT - 1e-6]
    w, h = fig.get_size_inches()
    if small or h * FIG_W / w > PAGE_ROOM:
        plt.close(fig)
        raise ValueError(f"figure {name} would not print legibly: texts under {MIN_PT} pt {small[:5]}, "
                         f"printed height {h * FIG_W / w:.1f} in (at most {PAGE_ROOM})")
    os.makedirs(fig_dir, exist_ok=True)
    path = os.path.join(fig_dir, f"{name}.png")
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        plt.close(fig)
    return path


def _lines(text) -> int:
    return str(text).count("\n") + 1 if text else 0


def image_grid(rows: Sequence[Sequence[Optional[torch.Tensor]]], fig_dir: str, name: str, row_labels=None,
               col_labels=None, captions=None, groups=None, cell: float = 0.8, label_w: float = 1.1) -> str:
    """A grid of MNIST images, FIG_W wide with FONT-pt labels: rows[r][c] an image (..., 28, 28) in
    [-1, 1] or None (left blank); row_labels[r] left of row r; col_labels[c] above column c;
    captions[r][c] below image (r, c); groups: [(first column, last column, text)] spanning columns
    above the column labels. Images are at most `cell` inches. Returns the PNG path.
    Everything is drawn in one axes whose data units are inches (one axes per image draws 2x slower)."""
    R, C = len(rows), max(len(r) for r in rows)
    L = label_w if row_labels else 0.05
    pitch = min(cell + 0.06, (FIG_W - L - 0.05) / C)
    size = pitch - 0.06
    line = FONT * 1.3 / 72
    cap_h = line + 0.02 if captions else 0.0
    head = (max(map(_lines, col_labels)) * line + 0.06 if col_labels else 0.04) + (line + 0.08 if groups else 0)
    row_h = size + cap_h + 0.06
    H = head + R * row_h + 0.04
    fig = plt.figure(figsize=(FIG_W, H), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, FIG_W)
    ax.set_ylim(0, H)
    ax.axis("off")
    x0 = L + (FIG_W - L - 0.05 - C * pitch) / 2
    X = lambda c: x0 + c * pitch + 0.03  # left edge of column c, inches
    for r in range(R):
        top = H - head - r * row_h
        for c in range(C):
            img = rows[r][c] if c < len(rows[r]) else None
            if img is None:
                continue
            ax.imshow(to_unit_range(img.reshape(28, 28)).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                      extent=(X(c), X(c) + size, top - size, top))
            if captions and captions[r][c]:
                ax.text(X(c) + size / 2, top - size - 0.015, captions[r][c], fontsize=FONT, ha="center", va="top")
        if row_labels:
            ax.text(x0 - 0.05, top - size / 2, row_labels[r], fontsize=FONT, ha="right", va="center", linespacing=1.15)
    for c, text in enumerate(col_labels or []):
        ax.text(X(c) + size / 2, H - head + 0.03, text, fontsize=FONT, ha="center", va="bottom", linespacing=1.1)
    for first, last, text in groups or []:
        y = H - 0.03 - line
        ax.text((X(first) + X(last) + size) / 2, y + 0.02, text, fontsize=FONT, ha="center", va="bottom", weight="bold")
        ax.plot([X(first), X(last) + size], [y, y], color="black", lw=0.6)
    ax.set_aspect("auto")
    ax.set_xlim(0, FIG_W)
    ax.set_ylim(0, H)
    return save(fig, fig_dir, name)


def image_table(rows: Sequence[Sequence[torch.Tensor]], path: str, row_labels=None, col_labels=None,
                dpi: int = DPI) -> str:
    """image_grid written to `path` (a .png; part B's pages call it this way); dpi is kept for callers
    and ignored: every figure is written at DPI."""
    folder, fname = os.path.split(path)
    return image_grid(rows, folder or ".", os.path.splitext(fname)[0], row_labels, col_labels)


MARK_STYLES = (dict(hatch="////", edgecolor="#d62728"), dict(hatch="\\\\\\\\", edgecolor="#ff7f0e"))  # red, orange


def rate_panels(mats: Sequence[torch.Tensor], titles: Sequence[str], row_names: Sequence[str],
                col_names: Sequence[str], fig_dir: str, name: str, marks: Sequence[Sequence[tuple]],
                mark_labels: Sequence[str], seeds: int) -> str:
    """Success-rate heat maps side by side, FIG_W wide: mats[i] (10, 10) with NaN on the untested
    diagonal (grey), each cell annotated; marks[i] = [(cells, style), ...] hatches cells of panel i in
    MARK_STYLES[style], explained by mark_labels[style] in the legend; one colour bar."""
    H, side, bottom, left, gap = 3.65, 2.5, 0.95, 0.55, 1.0  # inches
    fig = plt.figure(figsize=(FIG_W, H), dpi=100)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#c8c8c8")
    for i, (m, title) in enumerate(zip(mats, titles)):
        ax = fig.add_axes([(left + i * (side + gap)) / FIG_W, bottom / H, side / FIG_W, side / H])
        im = ax.imshow(m.numpy(), cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks(range(10), [str(k) for k in range(10)], fontsize=FONT)
        ax.set_yticks(range(10), [str(k) for k in range(10)], fontsize=FONT)
        ax.tick_params(length=2, pad=1.5)
        ax.set_title(title, fontsize=FONT + 1, pad=4)
        ax.set_ylabel(row_names[i], fontsize=FONT)
        ax.set_xlabel(col_names[i], fontsize=FONT)
        for a in range(10):
            for b in range(10):
                v = float(m[a, b])
                if not math.isnan(v):
                    ax.text(b, a, _cell(v), ha="center", va="center", fontsize=MIN_PT,
                            color="white" if v < 0.55 else "black")
        for cells, style in marks[i]:
            for a, b in cells:
                ax.add_patch(Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, lw=1.2, **MARK_STYLES[style]))
    x_bar = left + len(mats) * (side + gap) - gap + 0.15
    cb = fig.colorbar(im, cax=fig.add_axes([x_bar / FIG_W, bottom / H, 0.12 / FIG_W, side / H]))
    cb.ax.tick_params(labelsize=FONT)
    cb.set_label(f"success rate over {seeds} seed{'s' if seeds != 1 else ''} per pair", fontsize=FONT)
    handles = [Patch(facecolor="#c8c8c8", label="a = b: trivial, not run")]
    handles += [Patch(facecolor="none", label=text, **MARK_STYLES[j]) for j, text in enumerate(mark_labels)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=FONT, frameon=False,
               bbox_to_anchor=(0.5, 0.0), handlelength=1.6, columnspacing=1.2)
    return save(fig, fig_dir, name)


# ================================================================= helpers
def _cell(v: float) -> str:
    """A rate as a short cell label: 1, 0, .5, .33."""
    return "1" if v == 1 else "0" if v == 0 else f"{v:.2f}".lstrip("0").rstrip("0")


def _frac(mask: torch.Tensor) -> str:
    return f"{int(mask.sum())}/{mask.numel()}"


def _n(k: int, noun: str) -> str:
    """'1 different digit', '3 different digits'."""
    return f"{k} {noun}{'' if k == 1 else 's'}"


def _pct(v: float) -> str:
    return f"{v:.0%}"


def _mark(ok: bool) -> str:
    return TICK if ok else CROSS


def _pairs_text(pairs, m: torch.Tensor, k: int) -> str:
    """'a/b (rate)' per pair; the rate only where there is more than one seed to make it."""
    return ", ".join(f"{a}/{b}" + (f" ({float(m[a, b]):.0%})" if k > 1 else "") for a, b in pairs)


def _easy_text(pairs, baseline: torch.Tensor, how: str, other: bool) -> str:
    """The sentence naming the pairs that plain digits already pass (orange hatching)."""
    if not pairs:
        return f"No {'other ' if other else ''}pair passes with plain digits in {ed.NEAR_TRIVIAL:.0%} or more."
    return ("Plain digits already pass as " + ", ".join(f"{a}/{b} ({float(baseline[a, b]):.0%})" for a, b in pairs) +
            f" (orange hatching): the classifier reads a plain digit, {how}, as the other label, so these pairs say "
            "little about the illusion and are not shown as examples.")


def _counts(n_any: int, n_all: int, total: int, k: int) -> str:
    return (f"{n_any} of {total} pairs succeed" if k == 1 else
            f"{n_any} of {total} pairs succeed at least once, {n_all} with every seed")


def _sweep_frac(m: torch.Tensor, pairs, seeds: int) -> str:
    """Successes / runs of `pairs` in a sweep with `seeds` seeds per pair, from its rate matrix m."""
    return f"{round(sum(float(m[p]) for p in pairs) * seeds)}/{len(pairs) * seeds}"


def _more(n: int, m: int) -> str:
    """'more' / 'fewer' / 'as many': n against m."""
    return "more" if n > m else "fewer" if n < m else "as many"


def _ranked(scores: dict) -> str:
    """'a scores highest and c lowest' (ties: 'a and b score highest'), from {name: score}, higher = better."""
    hi, lo = max(scores.values()), min(scores.values())
    if hi == lo:
        return "all score the same"
    top = [k for k, v in scores.items() if v == hi]
    bottom = [k for k, v in scores.items() if v == lo]
    verb = "scores" if len(top) == 1 else "score"
    return f"{' and '.join(top)} {verb} highest and {' and '.join(bottom)} lowest"


def _mean_off(m: torch.Tensor, skip=()) -> float:
    """Mean of the measured (non-NaN) cells of m, leaving out the pairs in skip."""
    keep = ~torch.isnan(m)
    for a, b in skip:
        keep[a, b] = False
    return float(m[keep].mean())


# =================================================================== pages
def opening_page(model_path: str = REFERENCE, denoiser_path: Optional[str] = None,
                 timecond_path: Optional[str] = None, class_path: Optional[str] = None) -> Page:
    """The report's first page: what stands in for DeepFloyd IF and the prompt, which model each part uses
    (read from the files themselves) and how to reproduce everything."""
    model, schedule, _, info = load_model(model_path)
    b1 = dn.load_run(denoiser_path or dn.REFERENCE)
    b2 = (("B.2.1-2.3", timecond_path or tc.REFERENCE), ("B.2.4-2.5", class_path or tc.REFERENCE_CLASS))
    params = lambda m: f"{sum(p.numel() for p in m.parameters()):,}"
    rel = lambda path: os.path.relpath(path, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rows = [f"A.1-A.9    {rel(model_path)}: problem 5's UNet, {params(model)} parameters, T={schedule.T} "
            f"{schedule.kind}, {info.get('data_source', '?')} digits",
            f"B.1        {rel(denoiser_path or dn.REFERENCE)}: the handout's UNet, D={b1.config.hidden}, "
            f"sigma={b1.config.sigma}, {b1.config.epochs} epochs"]
    for part, path in b2:
        run = tc.load_run(path)
        c = run.config
        rows.append(f"{part:<10} {rel(path)}: {'class' if c.num_classes else 'time'}-conditioned, D={c.hidden}, "
                    f"T={c.T}, {len(run.losses):,} steps" + (f", EMA {c.ema:g}" if c.ema else "")
                    + f", {run.info.get('data_source', '?')} digits")
    answers = [
        ("What stands in for what: CS180 part A edits images with DeepFloyd IF, a text-to-image diffusion model. "
         f"Here the class-conditional MNIST DDPM of problem 5 plays that role: the digit label 0-9 is the text "
         f"prompt, the null label {model.num_classes} (dropped for 10 % of training images) is the empty prompt "
         f"\"\", and CFG scale gamma = 5 is w = 4 in (1 + w) eps(x, y) - w eps(x, null). Images are 28x28 grey "
         "digits, not 64x64 photos; 'a rocket' becomes 'a 7'."),
        ("Part B: as the handout, on MNIST itself, with its UNets (B.1 the single-step denoiser, B.2 the time- "
         "and class-conditioned DDPMs); the departures from its recipe are on each page and measured there."),
        ("How it is measured: a small CNN trained on MNIST (the metric classifier, mnist/reference/"
         "classifier.pt) reads every generated or edited digit; FLD is the Frechet distance in its features, "
         "FID's analogue for MNIST. Every number is computed from the images when this report is made."),
    ]
    reproduce = ("How to reproduce: python visualize.py --problem cs180 --report cs180.pdf makes this report from the "
                 "shipped files (under 5 minutes on 2 CPU cores); each part alone: --problem cs180-a, cs180-b1 or "
                 "cs180-b2. The commands that trained each file, their times and the measured numbers are in "
                 "mnist/reference/MODEL_CARD.md; python benchmarks/mnist_partb.py and python "
                 "benchmarks/mnist_editing.py measure them on more samples.")
    return Page("CS180 project 5 on MNIST: what this report shows", [],
                [("answer", a) for a in answers] + [("text", "Which model each part uses:"),
                                                    ("table", "\n".join(rows)), ("text", reproduce)])


def pages(fig_dir: str, checkpoint: str = REFERENCE, seed: int = 0, n: int = 20, steps: int = ed.DEFAULT_STEPS,
          w: float = DEFAULT_W, ts: Sequence[int] = (50, 100, 150), i_starts: Sequence[int] = SDEDIT_I,
          illusion_seeds: Sequence[int] = ILLUSION_SEEDS, illusion_steps: int = ILLUSION_STEPS,
          resample: int = RESAMPLE, inpaint_steps: Optional[int] = None, drawn_seeds: int = 1,
          example_seeds: int = 2, example_steps: Optional[int] = None) -> list[Page]:
    """Make the part-A figures in fig_dir; return one Page per section.
    n: test digits per measured number (10 per class is 100); ts: noise levels for the denoising
    comparison; i_starts: SDEdit / translation strengths (indices into strided_timesteps(T, steps));
    illusion_seeds / illusion_steps: the anagram and hybrid sweeps over all 90 label pairs;
    resample / inpaint_steps: RePaint's U for inpainting towards another label, and the strided steps of
    every inpainting run (default min(INPAINT_STEPS, steps): resampling costs U network passes a step); drawn_seeds:
    seeds per hand-drawn or outside input; example_seeds / example_steps: fresh seeds per illusion pair
    shown, and their DDIM steps (default steps // 2)."""
    model, schedule, _, _ = load_model(checkpoint)
    model.to(memory_format=torch.channels_last)
    data = load_mnist(download=False, verbose=False)
    clf, _ = load_classifier(data=data, verbose=False)
    T, null = schedule.T, model.num_classes
    inpaint_steps = inpaint_steps or min(INPAINT_STEPS, steps)
    example_steps = example_steps or max(1, steps // 2)
    per = max(1, n // 10)
    idx = torch.cat([(data.test_y == c).nonzero().flatten()[:per] for c in range(10)])
    x0, y = data.test_x[idx], data.test_y[idx]
    show = [0, 3 * per, 7 * per]  # a 0, a 3 and a 7
    i_ts = ed.strided_timesteps(T, steps)
    out = []
    read = lambda x: predict(clf, x)[0]
    prob = torch.no_grad()(lambda x: clf.head(predict(clf, x)[1]).softmax(1))  # (N, 10) class probabilities

    # A.1 forward process
    levels = [0, T // 8, T // 4, T // 2, 3 * T // 4, T]
    noised = {t: ed.forward_noise(schedule, x0, t, generators(seed, len(x0))).x_t for t in levels}
    png = image_grid([[noised[t][i] for t in levels] for i in show], fig_dir, "cs180_forward",
                     [f"test digit {int(y[i])}" for i in show], [f"t = {t}" for t in levels])
    ab = {t: schedule.alpha_bar[t].item() for t in levels}
    agree = {t: (read(noised[t]) == y).float().mean().item() for t in levels}
    readable = list(itertools.takewhile(lambda t: agree[t] >= 0.5, levels))  # the levels up to the first below half
    out.append(Page.of_text("CS180 A.1: the forward process", [png],
                "A.1 Forward process. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps with the model's "
                f"cosine schedule (T={T}): sqrt(alpha_bar_t) = " +
                ", ".join(f"{ab[t] ** 0.5:.3f} at t={t}" for t in levels) +
                ". The metric classifier still reads the true digit in " +
                ", ".join(f"{agree[t]:.0%} at t={t}" for t in levels) + f" of {len(x0)} test digits.",
                answers=f"Forward process: test digits noised to t = {', '.join(map(str, levels))} (T = {T}) by "
                        f"x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps: the clean digit's weight "
                        f"sqrt(alpha_bar_t) goes from {ab[levels[0]] ** 0.5:.2f} at t = {levels[0]} to "
                        f"{ab[levels[-1]] ** 0.5:.2f} at t = {levels[-1]}, and the classifier reads the true digit "
                        f"in {agree[levels[0]]:.0%} and {agree[levels[-1]]:.0%} of {len(x0)} test digits there"
                        + (f"; it still reads at least half of them up to t = {readable[-1]}." if readable else ".")))

    # A.2 - A.4 denoising
    rows, stats = [], []
    sigmas = (0.5, 1.0, 1.5, 2.0)  # the blur's candidates: the best (by PSNR) per t is used
    for t in ts:
        nz = ed.forward_noise(schedule, x0, t, generators(seed, len(x0), 1))
        scale = schedule.alpha_bar[t].sqrt().item()
        sig = max(sigmas, key=lambda s: ed.psnr(ed.gaussian_blur_denoise(nz.x_t / scale, s), x0).mean())
        outs = dict(blur=ed.gaussian_blur_denoise(nz.x_t / scale, sig),
                    one=ed.one_step_denoise(model, schedule, nz.x_t, t),
                    it=ed.iterative_denoise(model, schedule, nz.x_t, t, steps=steps))
        stats.append((t, sig, {k: (ed.psnr(v, x0).mean().item(), ed.ssim(v, x0).mean().item()) for k, v in outs.items()}))
        i = show[1]
        rows.append([x0[i], nz.x_t[i], outs["blur"][i], outs["one"][i], outs["it"][i]])
    png = image_grid(rows, fig_dir, "cs180_denoise", [f"t = {t}" for t in ts],
                     ["clean", "noisy x_t", "Gaussian blur", "one-step", "iterative"])
    names = dict(blur="Gaussian blur", one="one-step", it="iterative")
    lines, split = [], []
    for t, sig, m in stats:
        best_psnr, best_ssim = max(m, key=lambda k: m[k][0]), max(m, key=lambda k: m[k][1])
        lines.append(f"t={t}: best PSNR {names[best_psnr]}, best SSIM {names[best_ssim]}")
        if best_psnr == "one" and best_ssim == "it":
            split.append(f"t={t}")
    why = (f" At {', '.join(split)} one-step wins on PSNR but iterative on SSIM: one-step returns the network's "
           "estimate of the mean E[x_0 | x_t], a blurred average that squared error favours, while the iterative "
           "chain commits to one sharp digit." if split else "")
    per_t = lambda k: ", ".join(f"{m[k][0]:.1f} dB / SSIM {m[k][1]:.2f} at t={t}" for t, _, m in stats)
    beats = lambda k, o, j: sum(round(m[k][j], 1 + j) > round(m[o][j], 1 + j)  # as printed: k above o (0 PSNR, 1 SSIM)
                                for _, _, m in stats)
    of_ts = f"of {len(stats)} noise level{'s' if len(stats) > 1 else ''}"
    out.append(Page.of_text("CS180 A.2-A.4: denoising", [png],
                f"A.2-A.4 Denoising {len(x0)} test digits (no label, the empty prompt) at t = "
                f"{', '.join(str(t) for t, _, _ in stats)}: one test digit shown per t; PSNR and SSIM (above) are "
                f"means over all {len(x0)} against the clean digit. The blur filters x_t / sqrt(alpha_bar_t) with the "
                f"sigma of {', '.join(f'{v:g}' for v in sigmas)} that gives the highest PSNR at that t. Best per "
                "noise level: " + "; ".join(lines) + "." + why,
                answers=f"Gaussian blur (A.2): the best blur of x_t / sqrt(alpha_bar_t) (sigma "
                        f"{', '.join(f'{sig} at t={t}' for t, sig, _ in stats)}, picked for PSNR) gives "
                        f"{per_t('blur')} on {len(x0)} test digits.\n\n"
                        f"One-step (A.3): removing the network's noise estimate in one pass gives {per_t('one')}: "
                        f"above the blur in PSNR at {beats('one', 'blur', 0)} "
                        f"{of_ts}, in SSIM at {beats('one', 'blur', 1)}.\n\n"
                        f"Iterative (A.4): the strided chain from t down to 0 gives {per_t('it')}: above one-step "
                        f"in PSNR at {beats('it', 'one', 0)} {of_ts}, in SSIM at {beats('it', 'one', 1)}; above the "
                        f"blur in PSNR at {beats('it', 'blur', 0)}, in SSIM at {beats('it', 'blur', 1)}."))

    # A.4 the iterative chain itself, every PROGRESS_EVERY-th strided step (CS180: i_start = 10, every 5th loop)
    i_prog = max(1, steps // 4)
    t_prog = i_ts[i_prog]
    x_prog = ed.forward_noise(schedule, x0[show], t_prog,  # the A.2 noise of these digits
                              [generators(seed, 1, 1, start=i)[0] for i in show]).x_t
    final, traj = ed.iterative_denoise(model, schedule, x_prog, t_prog, steps=steps, trajectory=True)
    shown_steps = list(range(0, len(traj.t) - 1, PROGRESS_EVERY))
    one = ed.one_step_denoise(model, schedule, x_prog, t_prog)
    scale = schedule.alpha_bar[t_prog].sqrt().item()
    blur = ed.gaussian_blur_denoise(x_prog / scale, 1.5)
    png = image_grid([[traj.x[k][r] for k in shown_steps] + [final[r], one[r], blur[r], x0[show][r]]
                      for r in range(len(show))], fig_dir, "cs180_progression",
                     [f"test digit {int(y[i])}" for i in show],
                     [f"t = {int(traj.t[k])}" for k in shown_steps] + ["iterative\nx_0", "one-step", "blur\nsigma 1.5",
                                                                         "clean"],
                     groups=[(0, len(shown_steps) - 1, f"x_t every {PROGRESS_EVERY}th step of the chain"),
                             (len(shown_steps), len(shown_steps) + 2, f"estimates of x_0 from t = {t_prog}")])
    p_it, p_one, p_blur = (ed.psnr(v, x0[show]).mean().item() for v in (final, one, blur))
    out.append(Page.of_text("CS180 A.4: iterative denoising, step by step", [png],
                f"A.4 Iterative denoising from t = {t_prog} (i_start = {i_prog} of {steps} strided steps, stride "
                f"{i_ts[0] - i_ts[1]}; CS180 starts at i_start = 10, t = 690 of 1000), no label, DDIM (eta = 0). Left: "
                f"the state x_t after every {PROGRESS_EVERY}th step (t = "
                f"{', '.join(str(int(traj.t[k])) for k in shown_steps)}); right: the "
                f"final iterative x_0, the one-step estimate x0_hat from x_{t_prog} and a Gaussian blur of "
                f"x_{t_prog} / sqrt(alpha_bar) (sigma 1.5). PSNR to the clean digits (these {len(show)}): iterative "
                f"{p_it:.1f} dB, one-step {p_one:.1f} dB, blur {p_blur:.1f} dB.",
                answers=f"Iterative denoising: from x_{t_prog} (i_start = {i_prog}), the figure shows the noisy x_t "
                        f"every {PROGRESS_EVERY}th step of the chain, at t = "
                        f"{', '.join(str(int(traj.t[k])) for k in shown_steps)}, then the final clean estimate x_0.\n\n"
                        f"Compared with one step and blur: PSNR to the clean digits is {p_it:.1f} dB iterative, "
                        f"{p_one:.1f} dB one-step, {p_blur:.1f} dB blur (sigma 1.5), so "
                        + _ranked({"iterative": round(p_it, 1), "one-step": round(p_one, 1), "blur": round(p_blur, 1)})
                        + f" on these {len(show)} digits" + (" (PSNR favours one-step's blurred average of the digits "
                                                               "x_t could be; the chain commits to one sharp digit)."
                                                               if round(p_one, 1) > round(p_it, 1) else ".")))

    # A.5-A.6 sampling from pure noise: per label without and with guidance, and with the null label
    labels = torch.arange(10).repeat_interleave(per)
    noise = randn((len(labels), 1, 28, 28), generators(seed, len(labels), 2))
    drawn = {g: ed.iterative_denoise(model, schedule, noise, T, labels, g, steps) for g in (0.0, w)}
    uncond = ed.iterative_denoise(model, schedule, noise, T, torch.full_like(labels, null), 0.0, steps)
    shown = range(min(per, 2))  # one or two samples per digit, each with and without guidance
    png = image_grid([[drawn[g][c * per + j] for c in range(10)] for j in shown for g in drawn], fig_dir,
                     "cs180_sampling", [f"label, w = {g:g}" + (" (CFG)" if g else "") for j in shown for g in drawn],
                     [f"label {c}" for c in range(10)], cell=0.62)
    agree = {g: (read(x) == labels).float().mean().item() for g, x in drawn.items()}
    u_read = read(uncond)
    counts = torch.bincount(u_read, minlength=10)
    k_un = min(10, len(uncond))
    png_u = image_grid([list(uncond[:k_un])], fig_dir, "cs180_unconditional", ["no label\n(null token)"],
                       captions=[[f"reads {int(r)}" for r in u_read[:k_un]]], cell=0.62)
    same_noise = (u_read == labels).float().mean().item()
    conf = lambda x: prob(x).max(1).values.mean().item()  # the classifier's mean top probability
    out.append(Page.of_text("CS180 A.5-A.6: sampling, with and without a label", [png, png_u],
                f"A.5-A.6 Sampling from pure noise with {steps} strided steps. Top: asking for each digit {per} "
                f"times, each from the same noise with and without guidance: the classifier reads the requested digit "
                f"in {agree[0.0]:.0%} of the {len(labels)} samples without guidance (w = 0, the conditional model "
                f"alone) and {agree[w]:.0%} with classifier-free guidance w = {w:g} (eps = eps_u + (1 + w)(eps_c - "
                f"eps_u), CS180's gamma = 1 + w).\n\n"
                f"Bottom: the same {len(uncond)} noises with no label at all (label {null}, the null token the model "
                f"was trained on by label dropout: CS180's empty prompt, w = 0), {k_un} shown with what the classifier "
                f"reads. Without a label the model picks the digit itself: read as " +
                ", ".join(f"{c}: {int(counts[c])}" for c in range(10) if counts[c]) +
                f" ({int((counts > 0).sum())} distinct digits in {len(uncond)} samples); from the same noise it "
                f"lands on the digit the labelled rows asked for in {same_noise:.0%}. Many are malformed, as CS180's "
                f"unguided samples are: the classifier's mean confidence in what it reads (its top softmax "
                f"probability) is {conf(uncond):.2f} without a label, {conf(drawn[0.0]):.2f} with a label and w = 0, "
                f"{conf(drawn[w]):.2f} with guidance; guidance is what makes the samples clean.",
                answers=f"Guidance: asking for each digit, {agree[w]:.0%} of {len(labels)} samples show it with CFG "
                        f"(gamma = {1 + w:g}), {agree[0.0]:.0%} without (gamma = 1).\n\n"
                        f"Without a label (the empty prompt): {_n(int((counts > 0).sum()), 'different digit')} appear in "
                        f"{len(uncond)} samples, and the classifier's mean confidence is {conf(uncond):.2f}, against "
                        f"{conf(drawn[w]):.2f} with guidance."))

    # A.7.1 SDEdit of a test digit, no label
    ed_digit = {i: ed.sdedit(model, schedule, x0, i, None, 0.0, steps, generator=generators(seed, len(x0))) for i in i_starts}
    png = image_grid([[ed_digit[i][j] for i in i_starts] + [x0[j]] for j in show], fig_dir, "cs180_sdedit",
                     [f"test digit {int(y[j])}\nno label" for j in show],
                     [f"i_start = {i}\nt = {i_ts[i]}" for i in i_starts] + ["input"])
    keep = {i: (read(ed_digit[i]) == y).float().mean().item() for i in i_starts}
    close = {i: ed.psnr(ed_digit[i], x0).mean().item() for i in i_starts}
    lo, hi = min(i_starts), max(i_starts)  # most and least noise
    closer = all(round(close[a], 1) < round(close[b], 1) for a, b in zip(sorted(i_starts), sorted(i_starts)[1:]))
    out.append(Page.of_text("CS180 A.7.1: SDEdit", [png],
                f"A.7.1 SDEdit at i_start = {', '.join(map(str, i_starts))} of {steps} strided steps "
                f"(t = {', '.join(str(i_ts[i]) for i in i_starts)}): noise the input to t, then run the iterative "
                f"denoiser from there. {len(x0)} test digits, no label: the edit keeps the digit's class in " +
                ", ".join(f"{keep[i]:.0%}" for i in i_starts) + " and its PSNR to the input is " +
                ", ".join(f"{close[i]:.1f}" for i in i_starts) + " dB" + (": the less noise, the closer to the input."
                                                                           if closer else "."),
                answers=f"SDEdit: {len(x0)} test digits noised to i_start = {', '.join(map(str, i_starts))} (t = "
                        f"{i_ts[lo]} down to {i_ts[hi]}) and denoised with no label (the empty prompt) keep their "
                        f"class in {keep[lo]:.0%} at i_start = {lo} and {keep[hi]:.0%} at i_start = {hi}; their PSNR "
                        f"to the input goes from {close[lo]:.1f} to {close[hi]:.1f} dB, "
                        + ("so the less noise, the closer the edit stays to the input." if closer else
                           "not rising steadily as the noise falls.")))

    # A.7.1 SDEdit on inputs from outside the test set: hand-drawn digits, a font letter, a photo
    drawn_i = tuple(i for i in DRAWN_I if i <= steps - 1) or tuple(i_starts)
    inputs = [(f"hand-drawn {s}", ed.hand_drawn(s, seed), int(s)) for s in HAND_SHAPES]
    inputs += [(f"letter {LETTER}\n(font)", ed.font_letter(LETTER), LETTER_LABEL),
               ("photo (Grace\nHopper)", ed.sample_photo(), PHOTO_LABEL)]
    hand = len(HAND_SHAPES)
    src = torch.cat([x for _, x, _ in inputs]).repeat(drawn_seeds, 1, 1, 1)
    lab = torch.tensor([c for _, _, c in inputs]).repeat(drawn_seeds)
    g = lambda: generators(seed, len(src), 3)
    res = {(cond, i): ed.sdedit(model, schedule, src, i, lab if cond else None, w if cond else 0.0, steps,
                                generator=g()) for cond in (False, True) for i in drawn_i}
    reads = {k: read(v) for k, v in res.items()}
    raw = read(src)
    K = len(inputs)
    rows_img = [[src[r]] + [res[(cond, i)][r] for cond in (False, True) for i in drawn_i] for r in range(K)]
    caps = [[f"reads {int(raw[r])}"] + [f"reads {int(reads[(cond, i)][r])}" for cond in (False, True) for i in drawn_i]
            for r in range(K)]
    nd = len(drawn_i)
    png = image_grid(rows_img, fig_dir, "cs180_sdedit_drawn",
                     [f"{name}\nright: label {c}" for name, _, c in inputs], ["input"] + [f"i = {i}\nt = {i_ts[i]}" for i in drawn_i] * 2,
                     captions=caps, groups=[(1, nd, "no label (null, w = 0)"), (nd + 1, 2 * nd, f"with the row's label, w = {w:g}")],
                     cell=0.66)
    is_hand = torch.arange(len(src)) % K < hand
    hit = lambda r: (r[is_hand] == lab[is_hand]).float().mean().item()
    per_i = lambda cond: ", ".join(f"{hit(reads[(cond, i)]):.0%} at i={i}" for i in drawn_i)
    outside = lambda r_: ", ".join(str(int(v)) for v in r_)
    letter_at = lambda cond: outside(reads[(cond, i)][hand] for i in drawn_i)
    photo_at = lambda cond: outside(reads[(cond, i)][hand + 1] for i in drawn_i)
    out.append(Page.of_text("CS180 A.7.1: SDEdit on hand-drawn and outside images", [png],
                f"A.7.1 SDEdit on images that are not MNIST digits: {hand} digits drawn the way a person draws "
                f"(editing.hand_drawn: smooth pen strokes, a forward slant, a random size, position and pen width), "
                f"the letter {LETTER} rendered from matplotlib's DejaVu Sans font, and matplotlib's bundled photo of "
                f"Grace Hopper (grey, centre square, 28x28), each run without a label (the null token, w = 0) and with "
                f"one (w = {w:g}: the drawn digit; {LETTER_LABEL} for the letter, {PHOTO_LABEL} for the photo), "
                f"i_start = {', '.join(map(str, drawn_i))}, {drawn_seeds} seed{'s' if drawn_seeds > 1 else ''} each; "
                f"under each image what the classifier reads.\n\n"
                f"Hand-drawn digits: the raw drawings are read as the drawn digit in {hit(raw):.0%}; after SDEdit without "
                f"a label in {per_i(False)}; with the label in {per_i(True)}. Without a label nothing but the drawing "
                f"tells the model which digit to make, so what survives the noise is the drawing's own shape; at "
                f"small i_start (much noise) the drawing is mostly replaced.\n\n"
                f"The letter {LETTER} is read as {int(raw[hand])} raw, then as {letter_at(False)} (no label) and "
                f"{letter_at(True)} (label {LETTER_LABEL}) at i = {', '.join(map(str, drawn_i))}. The photo is read "
                f"as {int(raw[hand + 1])} raw, then {photo_at(False)} (no label) and {photo_at(True)} (label "
                f"{PHOTO_LABEL}): the model can only make digits, so it turns the outside image into the digit nearest "
                f"to it, or into the label it is given.",
                answers=f"Hand-drawn digits: {hand} drawings, read as the drawn digit in {hit(raw):.0%} before "
                        f"editing, are read so after SDEdit in {per_i(False)} with no label, and in {per_i(True)} "
                        f"with the drawn digit as the label (w = {w:g}).\n\n"
                        f"Web image and font letter: at i = {', '.join(map(str, drawn_i))} the photo (Grace Hopper) is "
                        f"read as {photo_at(False)} with no label and {photo_at(True)} with label {PHOTO_LABEL}; the "
                        f"letter {LETTER} as {letter_at(False)} with no label and {letter_at(True)} with label "
                        f"{LETTER_LABEL}."))

    # A.7.2 inpainting: regenerate the top half, with the true label, another label, and another label with RePaint
    mask = torch.zeros(28, 28)
    mask[:14] = 1
    target = (y + 1) % 10
    inp = ed.inpaint(model, schedule, x0, mask, y, w, inpaint_steps, generator=generators(seed, len(x0)))
    other = ed.inpaint(model, schedule, x0, mask, target, w, inpaint_steps, generator=generators(seed, len(x0)))
    other_u = ed.inpaint(model, schedule, x0, mask, target, w, inpaint_steps, generator=generators(seed, len(x0)),
                         resample=resample)
    r_inp, r_other, r_u = read(inp), read(other), read(other_u)
    png = image_grid([[x0[i], torch.where(mask.bool(), torch.full_like(x0[i], -1.0), x0[i]), inp[i], other[i], other_u[i]]
                      for i in show], fig_dir, "cs180_inpaint", [f"test digit {int(y[i])}" for i in show],
                     ["original", "kept\n(bottom half)", "label y", "label y+1", f"label y+1\nresample U={resample}"],
                     captions=[[None, None, f"reads {int(r_inp[i])}", f"reads {int(r_other[i])}", f"reads {int(r_u[i])}"]
                               for i in show])
    exact = all(torch.equal(v[:, :, 14:], x0[:, :, 14:]) for v in (inp, other, other_u))
    out.append(Page.of_text("CS180 A.7.2: inpainting", [png],
                f"A.7.2 Inpainting (RePaint, {inpaint_steps} strided steps, w = {w:g}): mask = 1 regenerates the top "
                f"half; after every step the bottom half is "
                f"overwritten with the original noised to the new t. Kept pixels equal the original exactly: {exact}. "
                f"On {len(x0)} test digits, the classifier reads the true label y, asked for y, in {_frac(r_inp == y)}; "
                f"asked for another label, y+1, it reads y+1 in {_frac(r_other == target)} (and still y in "
                f"{_frac(r_other == y)}).\n\n"
                f"With RePaint's resampling (U = {resample}: each step t -> t' is done, re-noised back with q(x_t | x_t') and "
                f"redone, {resample} times; {resample}x the network passes) it reads y+1 in {_frac(r_u == target)} and "
                f"y in {_frac(r_u == y)}. Resampling lets the regenerated half agree with the kept half; when the kept "
                f"half belongs to another digit, agreeing with it can pull the result towards the source instead of the "
                f"target. python benchmarks/mnist_editing.py --only inpainting measures this on 100 digits for U = 1, 2, 4.",
                answers=f"Inpainting: the top half of {len(x0)} test digits is regenerated and the bottom half kept "
                        f"({'pixel for pixel' if exact else 'but not exactly'}); asked for the digit's own label y, "
                        f"the classifier reads y in {_frac(r_inp == y)}.\n\n"
                        f"Inpainting another digit: asked for y+1 it reads y+1 in {_frac(r_other == target)}, and with "
                        f"RePaint resampling (U = {resample}) in {_frac(r_u == target)}: "
                        + _more(int((r_u == target).sum()), int((r_other == target).sum())) + " with resampling."))

    # A.7.3 translation of one digit towards every label
    src1 = x0[show[1]:show[1] + 1].expand(10, -1, -1, -1)
    trans = {i: ed.translate(model, schedule, src1, torch.arange(10), i, w, steps, generator=generators(seed, 10))
             for i in i_starts}
    hits = {i: read(trans[i]) for i in i_starts}
    png = image_grid([[trans[i][b] for i in i_starts] + [x0[show[1]]] for b in range(10)], fig_dir, "cs180_translate",
                     [f"to label {b}" for b in range(10)], [f"i_start = {i}\nt = {i_ts[i]}" for i in i_starts] + ["input"],
                     captions=[[f"reads {int(hits[i][b])}" for i in i_starts] + [None] for b in range(10)], cell=0.62)
    hit = {i: (hits[i] == torch.arange(10)).float().mean().item() for i in i_starts}
    asc = sorted(i_starts)
    fewer = hit[asc[0]] > hit[asc[-1]] and all(hit[a] >= hit[b] for a, b in zip(asc, asc[1:]))
    out.append(Page.of_text("CS180 A.7.3: class-conditional translation", [png],
                f"A.7.3 Class-conditional translation of a {int(y[show[1]])} towards each label (SDEdit with the "
                f"target label, w={w:g}): read as the target in " +
                ", ".join(f"{hit[i]:.0%} at i_start={i}" for i in i_starts) + " of the 10 targets" +
                (": the less noise (larger i_start), the more of the source survives." if fewer else
                 " (not falling steadily with i_start at this sample size)."),
                answers=f"Text-conditional translation: a test {int(y[show[1]])} edited with each of the 10 labels as "
                        f"the prompt (w = {w:g}) is read as the target label in {hit[asc[0]]:.0%} at i_start = "
                        f"{asc[0]} (most noise) and {hit[asc[-1]]:.0%} at i_start = {asc[-1]} (least noise)"
                        + (": the less noise, the fewer edits reach the target." if fewer else ".")))

    # A.8 / A.9 measured over every ordered label pair, all in one batch each
    k = len(illusion_seeds)
    ana = ed.anagram_sweep(model, schedule, illusion_seeds, w, illusion_steps)
    hyb = ed.hybrid_sweep(model, schedule, illusion_seeds, w, illusion_steps)
    a_up, a_rot = read(ana.x), read(ed.flip(ana.x))
    h_near, h_far = read(hyb.x), read(ed.gaussian_blur_denoise(hyb.x, ed.AFAR_SIGMA))
    a_ok = (a_up == ana.a) & (a_rot == ana.b)
    real = torch.tensor([(a, b) not in ed.ROTATION_TRIVIAL for a, b in zip(ana.a.tolist(), ana.b.tolist())])
    h_ok = (h_near == hyb.b) & (h_far == hyb.a)
    A, H = ed.pair_matrix(a_ok.float(), ana.a, ana.b), ed.pair_matrix(h_ok.float(), hyb.a, hyb.b)
    # baselines: plain samples of each label (same steps and guidance), read the illusions' ways; a pair whose
    # plain digits already pass is trivial for the classifier, like 6/9 is for the eye
    base = ed.plain_baselines(model, schedule, read, range(BASELINE_SEEDS), w, illusion_steps)
    base_a, base_h = _mean_off(base.anagram, ed.ROTATION_TRIVIAL), _mean_off(base.hybrid)
    easy_a = [p for p in ed.trivial_pairs(base.anagram) if p not in ed.ROTATION_TRIVIAL]
    easy_h = ed.trivial_pairs(base.hybrid)
    png = rate_panels([A, H], ["A.8 anagrams: upright a, rotated b", "A.9 hybrids: low-pass a, high-pass b"],
                      ["upright label a", "low-pass label a (read from afar)"],
                      ["label b (read rotated 180\u00b0)", "high-pass label b (read up close)"], fig_dir,
                      "cs180_illusion_rates", [[(ed.ROTATION_TRIVIAL, 0), (easy_a, 1)], [(easy_h, 1)]],
                      ["6/9, 9/6: trivial (a rotated 6 is a 9)",
                       f"plain digits pass too (baseline \u2265 {ed.NEAR_TRIVIAL:.0%})"], k)
    # ties in success go to the pair the classifier is surest of: the smaller of its two views' probabilities
    n_a = torch.arange(len(ana.a))
    sure_a = torch.minimum(prob(ana.x)[n_a, ana.a], prob(ed.flip(ana.x))[n_a, ana.b])
    sure_h = torch.minimum(prob(hyb.x)[n_a, hyb.b], prob(ed.gaussian_blur_denoise(hyb.x, ed.AFAR_SIGMA))[n_a, hyb.a])
    save_numbers(fig_dir, "cs180_illusion_rates",
                 [dict(a=a, b=b, anagram=float(A[a, b]), hybrid=float(H[a, b])) for a, b in zip(*map(torch.Tensor.tolist,
                                                                                                  ed.label_pairs(10)))],
                 anagram=A.numpy(), hybrid=H.numpy())
    best_a = ed.best_pairs(A, EXAMPLES, list(ed.ROTATION_TRIVIAL) + easy_a, ed.pair_matrix(sure_a, ana.a, ana.b),
                           PER_ROW)
    best_h = ed.best_pairs(H, EXAMPLES, easy_h, ed.pair_matrix(sure_h, hyb.a, hyb.b), PER_ROW)
    row_wins = [int(((H[a] > 0) & ~torch.isnan(H[a])).sum()) for a in range(10)]  # successful pairs per low-pass label
    top_low = max(range(10), key=lambda a: row_wins[a])
    full_a = int(((A == 1) & ~torch.isnan(A)).sum()) - sum(int(A[p] == 1) for p in ed.ROTATION_TRIVIAL)
    full_h = int(((H == 1) & ~torch.isnan(H)).sum())
    any_a = int(((A > 0) & ~torch.isnan(A)).sum()) - sum(int(A[p] > 0) for p in ed.ROTATION_TRIVIAL)
    any_h = int(((H > 0) & ~torch.isnan(H)).sum())
    cmd = (f"python benchmarks/mnist_editing.py --only illusions --seeds {' '.join(map(str, illusion_seeds))} "
           f"--illusion-steps {illusion_steps}")
    out.append(Page.of_text("CS180 A.8-A.9: anagrams and hybrids over all label pairs", [png],
                f"A.8-A.9 Every ordered label pair a != b (90 pairs) x {k} seed{'s' if k > 1 else ''}, DDIM with "
                f"{illusion_steps} steps, w = {w:g}, each technique in one batch of {len(ana.a)}; each cell is the "
                f"success rate of one pair, by the metric classifier.\n\n"
                f"Anagram success = read as a upright AND as b rotated by 180 degrees. Over the 88 non-trivial pairs "
                f"{_mean_off(A, ed.ROTATION_TRIVIAL):.0%} (upright alone {(a_up == ana.a)[real].float().mean():.0%}, "
                f"rotated alone {(a_rot == ana.b)[real].float().mean():.0%}); {_counts(any_a, full_a, 88, k)}. "
                f"Baseline, plain samples of a ({BASELINE_SEEDS} per label, no anagram) read the same way: "
                f"{base_a:.0%}. 6/9 and 9/6 (red hatching) are trivial: a 6 rotated is a 9 (plain 6s pass as 6/9 in "
                f"{float(base.anagram[6, 9]):.0%}, plain 9s as 9/6 in {float(base.anagram[9, 6]):.0%}); as anagrams "
                f"they score {float(A[6, 9]):.0%} and {float(A[9, 6]):.0%}. "
                f"{_easy_text(easy_a, base.anagram, 'rotated', True)} The pair 2/5: {float(A[2, 5]):.0%}. Best non-trivial "
                f"(ties broken by the classifier's confidence, trivial pairs left out, at most {PER_ROW} per upright "
                f"label): {_pairs_text(best_a, A, k=k)}."
                f"\n\n"
                f"Hybrid success = read as the high-pass label b up close (the image) AND as the low-pass label a from "
                f"afar (the image blurred with sigma {ed.AFAR_SIGMA:g} px); low-pass filter: Gaussian sigma "
                f"{ed.HYBRID_SIGMA:g}, kernel {ed.HYBRID_KERNEL}. Over all 90 pairs {_mean_off(H):.0%} (up close "
                f"alone {(h_near == hyb.b).float().mean():.0%}, from afar alone {(h_far == hyb.a).float().mean():.0%}); "
                f"{_counts(any_h, full_h, 90, k)}. Baseline, plain samples of b read the same way: {base_h:.0%}. "
                f"{_easy_text(easy_h, base.hybrid, 'blurred', False)} "
                f"Low-pass {top_low} gives {row_wins[top_low]} of the {any_h} successful pairs, the most of any "
                f"low-pass label. Best (low-pass / high-pass; at most {PER_ROW} per low-pass label): "
                f"{_pairs_text(best_h, H, k=k)}."
                f"\n\nThe same matrices are printed by: {cmd} (the same seeds, steps and batch); without --seeds it "
                f"measures 5 seeds per pair.",
                answers=f"Visual anagrams: {_mean_off(A, ed.ROTATION_TRIVIAL):.0%} of the 88 non-trivial label pairs "
                        f"read as a upright and b rotated, against {base_a:.0%} for plain samples; 6/9 is trivial and "
                        f"left out.\n\n"
                        f"Hybrids: {_mean_off(H):.0%} of the 90 pairs read as the high-pass label up close and the "
                        f"low-pass label from afar, against {base_h:.0%} for plain samples."))

    # A.8 / A.9 examples: the best pairs of the sweep, drawn again with fresh seeds and more steps, so the
    # examples are neither the seeds they were picked by nor the few-step sweep's rougher images
    ex_seeds = tuple(EXAMPLE_SEED + j for j in range(example_seeds))
    show_a = best_a + [(6, 9)]
    ex_a = ed.anagram_sweep(model, schedule, ex_seeds, w, example_steps, pairs=(torch.tensor([a for a, _ in show_a]),
                                                                        torch.tensor([b for _, b in show_a])))
    ex_h = ed.hybrid_sweep(model, schedule, ex_seeds, w, example_steps, pairs=(torch.tensor([a for a, _ in best_h]),
                                                                       torch.tensor([b for _, b in best_h])))
    e_up, e_rot = read(ex_a.x), read(ed.flip(ex_a.x))
    far = ed.gaussian_blur_denoise(ex_h.x, ed.AFAR_SIGMA)
    e_near, e_far = read(ex_h.x), read(far)

    def pick(sweep, a, b):
        return [int(i) for i in ((sweep.a == a) & (sweep.b == b)).nonzero().flatten()]

    rows_img, caps, row_lab = [], [], []
    for a, b in show_a:
        ids = pick(ex_a, a, b)
        rows_img.append([v for i in ids for v in (ex_a.x[i], ed.flip(ex_a.x[i]))])
        caps.append([c for i in ids for c in (f"reads {int(e_up[i])} {_mark(int(e_up[i]) == a)}",
                                              f"reads {int(e_rot[i])} {_mark(int(e_rot[i]) == b)}")])
        row_lab.append(f"{a} upright,\n{b} rotated\n(sweep: {_sweep_frac(A, [(a, b)], k)})" +
                       ("\ntrivial: 6 rotated = 9" if (a, b) in ed.ROTATION_TRIVIAL else ""))
    cols = [c for s in ex_seeds for c in (f"upright\nseed {s}", f"rotated 180\u00b0\nseed {s}")]
    png = image_grid(rows_img, fig_dir, "cs180_anagram", row_lab, cols, captions=caps, cell=0.8, label_w=1.55)
    nontriv = torch.tensor([(int(a), int(b)) not in ed.ROTATION_TRIVIAL for a, b in zip(ex_a.a, ex_a.b)])
    ok_a = (e_up == ex_a.a) & (e_rot == ex_a.b)
    out.append(Page.of_text("CS180 A.8: visual anagrams", [png],
                f"A.8 Visual anagrams, eps = (eps(x, a) + flip(eps(flip(x), b))) / 2 with flip = rotation by 180 "
                f"degrees (Geng et al. 2024). Rows: the {len(best_a)} best non-trivial pairs of the sweep (ties in its "
                f"rate broken by the classifier's confidence; never a label with itself, never 6/9 or 9/6, never a "
                f"pair plain digits pass), and last the trivial 6/9 for "
                f"comparison, each drawn again "
                f"with {len(ex_seeds)} fresh seeds ({', '.join(map(str, ex_seeds))}, not the sweep's) and {example_steps} "
                f"steps. Each image is shown upright and rotated by 180 degrees, with what the classifier reads "
                f"({TICK} = the label asked for in that view, {CROSS} = another); the row label gives the pair's "
                f"success in the sweep.\n\n"
                f"At 28x28 an anagram has few pixels to serve two digits: many that the classifier accepts are "
                f"blotchy, and the success rates here measure the classifier's reading, not how convincing the "
                f"illusion is to a person.",
                answers=f"Visual anagram examples: the {len(best_a)} best non-trivial label pairs of the sweep "
                        f"({', '.join(f'{a}/{b}' for a, b in best_a)}), drawn again with {len(ex_seeds)} fresh seeds, "
                        f"read as a upright and as b rotated 180 degrees in {_frac(ok_a[nontriv])} images, against "
                        f"{_sweep_frac(A, best_a, k)} in the sweep that picked them; the trivial 6/9 in "
                        f"{_frac(ok_a[~nontriv])}."))

    rows_img, caps, row_lab = [], [], []
    for a, b in best_h:
        ids = pick(ex_h, a, b)
        rows_img.append([v for i in ids for v in (ex_h.x[i], far[i])])
        caps.append([c for i in ids for c in (f"reads {int(e_near[i])} {_mark(int(e_near[i]) == b)}",
                                              f"reads {int(e_far[i])} {_mark(int(e_far[i]) == a)}")])
        row_lab.append(f"low-pass {a},\nhigh-pass {b}\n(sweep: {_sweep_frac(H, [(a, b)], k)})")
    cols = [c for s in ex_seeds for c in (f"up close\nseed {s}", f"from afar\n(blur {ed.AFAR_SIGMA:g} px)")]
    png = image_grid(rows_img, fig_dir, "cs180_hybrid", row_lab, cols, captions=caps, cell=0.8, label_w=1.3)
    ok_h = (e_near == ex_h.b) & (e_far == ex_h.a)
    out.append(Page.of_text("CS180 A.9: hybrid images", [png],
                f"A.9 Hybrids, eps = lowpass(eps(x, a)) + highpass(eps(x, b)) (Factorized Diffusion, Geng et al. 2024; "
                f"Gaussian low-pass, sigma {ed.HYBRID_SIGMA:g}, kernel {ed.HYBRID_KERNEL}). Rows: the {len(best_h)} "
                f"best pairs of the sweep, each labelled with its low-pass digit a (to be seen from afar) and its "
                f"high-pass digit b (to be seen up close), drawn again with fresh seeds ({', '.join(map(str, ex_seeds))}) "
                f"and {example_steps} steps; each image up close and blurred with sigma {ed.AFAR_SIGMA:g} px ('from afar'), "
                f"with what the classifier reads ({TICK} = the high-pass label up close / the low-pass label from "
                f"afar, {CROSS} = another).",
                answers=f"Hybrid image examples: the {len(best_h)} best low-pass / high-pass label pairs of the sweep "
                        f"({', '.join(f'{a}/{b}' for a, b in best_h)}), drawn again with {len(ex_seeds)} fresh seeds, "
                        f"read as the high-pass label up close and as the low-pass label from afar in {_frac(ok_h)} "
                        f"images, against {_sweep_frac(H, best_h, k)} in the sweep that picked them."))
    return out


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description="Make the CS180 part-A figures and texts from the shipped MNIST model.")
    ap.add_argument("--out", default="figures", help="folder for the PNGs")
    ap.add_argument("--n", type=int, default=20, help="images per measured number")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # small convolutions: one thread is as fast and leaves the other core free
    for page in pages(args.out, n=args.n):
        print(f"{page.title}: {', '.join(page.images)}")
        print(page.text, "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
