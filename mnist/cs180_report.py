"""CS180 project 5 part A on the shipped MNIST DDPM: figures and measured texts for the report.

`pages(fig_dir)` returns [(png paths, text), ...], one entry per part-A section:

  A.1 forward process      cs180_forward.png      test digits noised to t = 0 .. T
  A.2-A.4 denoising        cs180_denoise.png      noisy / Gaussian blur / one-step / iterative, per t
  A.5-A.6 sampling        cs180_sampling.png     from pure noise, w = 0 against classifier-free guidance
  A.7.1 SDEdit             cs180_sdedit.png       a test digit (no label) and a drawn "7" (label 7), i_start = 1..20
  A.7.2 inpainting         cs180_inpaint.png      original, masked, inpainted
  A.7.3 translation        cs180_translate.png    one digit edited towards each other label
  A.8 visual anagrams      cs180_anagram.png      upright and rotated views
  A.9 hybrids              cs180_hybrid.png       hybrid and its lowpass

The class label plays DeepFloyd's text prompt. Every sentence with a number is computed from the
images made here (seeded), scored by the metric classifier (mnist.metrics); nothing is canned.
Timestep convention as in utils.py (t = 0 clean, t = T noise); i_start indexes
editing.strided_timesteps(T, steps), larger = less noise.
"""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch

from report.pages import Page
from utils import randn

from . import editing as ed
from .checkpoint import load_model
from .data import load_mnist, to_unit_range
from .metrics import load_classifier, predict
from .sample import DEFAULT_W, REFERENCE

SDEDIT_I = (1, 3, 5, 7, 10, 20)  # CS180's i_start values
ANAGRAM_PAIRS = ((6, 9), (1, 1), (0, 0), (2, 5))
HYBRID_PAIRS = ((1, 7), (0, 6), (4, 9))


def image_table(rows: Sequence[Sequence[torch.Tensor]], path: str, row_labels=None, col_labels=None,
                dpi: int = 150) -> str:
    """rows[r][c]: one image (1, 28, 28) or (1, 1, 28, 28) in [-1, 1]; a titled grid PNG at path."""
    R, C = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(R, C, figsize=(0.9 * C + (0.8 if row_labels else 0.2), 0.95 * R + 0.3), dpi=dpi,
                             squeeze=False)
    for r in range(R):
        for c in range(C):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(rows[r]):
                ax.imshow(to_unit_range(rows[r][c].reshape(28, 28)).numpy(), cmap="gray", vmin=0, vmax=1)
            if r == 0 and col_labels:
                ax.set_title(col_labels[c], fontsize=7)
            if c == 0 and row_labels:
                ax.set_ylabel(row_labels[r], fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.3)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _gens(n: int, seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def _frac(mask: torch.Tensor) -> str:
    return f"{int(mask.sum())}/{mask.numel()}"


def pages(fig_dir: str, checkpoint: str = REFERENCE, seed: int = 0, n: int = 20, steps: int = ed.DEFAULT_STEPS,
          w: float = DEFAULT_W, ts: Sequence[int] = (50, 100, 150),
          i_starts: Sequence[int] = SDEDIT_I) -> list[tuple[list[str], str]]:
    """Make the part-A figures in fig_dir; return [(png paths, text)], one per section.
    n: test digits per measured number (10 per class is 100); ts: noise levels for the denoising
    comparison; i_starts: SDEdit / translation strengths (indices into strided_timesteps(T, steps))."""
    model, schedule, _ = load_model(checkpoint)
    model.to(memory_format=torch.channels_last)
    data = load_mnist(download=False, verbose=False)
    clf, _ = load_classifier(data=data, verbose=False)
    T = schedule.T
    per = max(1, n // 10)
    idx = torch.cat([(data.test_y == c).nonzero().flatten()[:per] for c in range(10)])
    x0, y = data.test_x[idx], data.test_y[idx]
    show = [0, 3 * per, 7 * per]  # a 0, a 3 and a 7
    out = []
    read = lambda x: predict(clf, x)[0]
    p = lambda name: os.path.join(fig_dir, name)

    # A.1 forward process
    levels = [0, T // 8, T // 4, T // 2, 3 * T // 4, T]
    noised = {t: ed.forward_noise(schedule, x0, t, _gens(len(x0), seed)).x_t for t in levels}
    png = image_table([[noised[t][i] for t in levels] for i in show], p("cs180_forward.png"),
                      [f"digit {int(y[i])}" for i in show], [f"t={t}" for t in levels])
    ab = {t: schedule.alpha_bar[t].item() for t in levels}
    agree = {t: (read(noised[t]) == y).float().mean().item() for t in levels}
    out.append(Page.of_text("CS180 A.1: the forward process", [png], "A.1 Forward process. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps with the model's "
                f"cosine schedule (T={T}): sqrt(alpha_bar_t) = " +
                ", ".join(f"{ab[t] ** 0.5:.3f} at t={t}" for t in levels) +
                ". The metric classifier still reads the true digit in " +
                ", ".join(f"{agree[t]:.0%} at t={t}" for t in levels) + f" of {len(x0)} test digits."))

    # A.2 - A.4 denoising
    rows, stats = [], []
    for t in ts:
        nz = ed.forward_noise(schedule, x0, t, _gens(len(x0), seed + 1000))
        scale = schedule.alpha_bar[t].sqrt().item()
        sig = max((0.5, 1.0, 1.5, 2.0), key=lambda s: ed.psnr(ed.gaussian_blur_denoise(nz.x_t / scale, s), x0).mean())
        outs = dict(blur=ed.gaussian_blur_denoise(nz.x_t / scale, sig),
                    one=ed.one_step_denoise(model, schedule, nz.x_t, t),
                    it=ed.iterative_denoise(model, schedule, nz.x_t, t, steps=steps))
        stats.append((t, sig, {k: (ed.psnr(v, x0).mean().item(), ed.ssim(v, x0).mean().item()) for k, v in outs.items()}))
        i = show[1]
        rows.append([x0[i], nz.x_t[i], outs["blur"][i], outs["one"][i], outs["it"][i]])
    png = image_table(rows, p("cs180_denoise.png"), [f"t={t}" for t in ts],
                      ["clean", "x_t", "blur", "one-step", "iterative"])
    names = dict(blur="Gaussian blur", one="one-step", it="iterative")
    lines, split = [], []
    for t, sig, m in stats:
        best_psnr, best_ssim = max(m, key=lambda k: m[k][0]), max(m, key=lambda k: m[k][1])
        lines.append(f"t={t}: blur (sigma={sig}, on x_t / sqrt(alpha_bar_t)) {m['blur'][0]:.1f} dB / SSIM "
                     f"{m['blur'][1]:.2f}, one-step {m['one'][0]:.1f} dB / {m['one'][1]:.2f}, iterative "
                     f"{m['it'][0]:.1f} dB / {m['it'][1]:.2f} (best PSNR: {names[best_psnr]}, best SSIM: {names[best_ssim]})")
        if best_psnr == "one" and best_ssim == "it":
            split.append(f"t={t}")
    why = (f" At {', '.join(split)} one-step wins on PSNR but iterative on SSIM: one-step returns the network's "
           "estimate of the mean E[x_0 | x_t], a blurred average that squared error favours, while the iterative "
           "chain commits to one sharp digit." if split else "")
    out.append(Page.of_text("CS180 A.2-A.4: denoising", [png], f"A.2-A.4 Denoising {len(x0)} test digits (no label, the empty prompt), PSNR and SSIM against "
                "the clean digit. " + "; ".join(lines) + "." + why))

    # A.5-A.6 sampling from pure noise, without and with classifier-free guidance
    labels = torch.arange(10).repeat_interleave(per)
    noise = randn((len(labels), 1, 28, 28), _gens(len(labels), seed + 2000))
    drawn = {g: ed.iterative_denoise(model, schedule, noise, T, labels, g, steps) for g in (0.0, w)}
    shown = range(min(per, 2))  # one or two samples per digit, each with and without guidance
    png = image_table([[drawn[g][c * per + j] for c in range(10)] for j in shown for g in drawn],
                      p("cs180_sampling.png"), [f"w={g:g}" for j in shown for g in drawn], [str(c) for c in range(10)])
    agree = {g: (read(x) == labels).float().mean().item() for g, x in drawn.items()}
    out.append(Page.of_text("CS180 A.5-A.6: sampling, with and without guidance", [png], f"A.5-A.6 Sampling from pure noise with {steps} strided steps, asking for each digit {per} "
                f"times, each from the same noise with and without guidance: the classifier reads the requested digit "
                f"in {agree[0.0]:.0%} of the {len(labels)} samples without guidance (w = 0, the conditional model alone) and {agree[w]:.0%} with "
                f"classifier-free guidance w = {w:g} (eps = eps_u + (1 + w)(eps_c - eps_u), CS180's gamma = 1 + w)."))

    # A.7.1 SDEdit: a test digit with no label, a drawn 7 with label 7
    stroke = ed.rough_stroke("7", seed=seed).expand(per * 10, -1, -1, -1)
    i_ts = ed.strided_timesteps(T, steps)
    ed_digit = {i: ed.sdedit(model, schedule, x0, i, None, 0.0, steps, generator=_gens(len(x0), seed)) for i in i_starts}
    ed_stroke = {i: ed.sdedit(model, schedule, stroke, i, 7, w, steps, generator=_gens(len(stroke), seed)) for i in i_starts}
    png = image_table([[ed_digit[i][show[1]] for i in i_starts] + [x0[show[1]]],
                       [ed_stroke[i][0] for i in i_starts] + [stroke[0]]], p("cs180_sdedit.png"),
                      ["test digit", "drawn 7"], [f"i={i} (t={i_ts[i]})" for i in i_starts] + ["input"])
    keep = {i: (read(ed_digit[i]) == y).float().mean().item() for i in i_starts}
    close = {i: ed.psnr(ed_digit[i], x0).mean().item() for i in i_starts}
    seven = {i: (read(ed_stroke[i]) == 7).float().mean().item() for i in i_starts}
    out.append(Page.of_text("CS180 A.7.1: SDEdit", [png], f"A.7.1 SDEdit at i_start = {', '.join(map(str, i_starts))} of {steps} strided steps "
                f"(t = {', '.join(str(i_ts[i]) for i in i_starts)}). Test digits, no label: the edit keeps the "
                "digit's class in " + ", ".join(f"{keep[i]:.0%}" for i in i_starts) +
                " and its PSNR to the input is " + ", ".join(f"{close[i]:.1f}" for i in i_starts) +
                f" dB. The drawn 7 (rough_stroke, label 7, w={w}) is read as a 7 in " +
                ", ".join(f"{seven[i]:.0%}" for i in i_starts) + f" of {len(stroke)} seeds "
                f"(the raw stroke: {'a 7' if int(read(stroke[:1])[0]) == 7 else 'a ' + str(int(read(stroke[:1])[0]))})."))

    # A.7.2 inpainting: regenerate the top half with the true label
    mask = torch.zeros(28, 28)
    mask[:14] = 1
    inp = ed.inpaint(model, schedule, x0, mask, y, w, steps, generator=_gens(len(x0), seed))
    other = ed.inpaint(model, schedule, x0, mask, (y + 1) % 10, w, steps, generator=_gens(len(x0), seed))
    png = image_table([[x0[i], torch.where(mask.bool(), torch.full_like(x0[i], -1.0), x0[i]), inp[i], other[i]]
                       for i in show], p("cs180_inpaint.png"), [f"digit {int(y[i])}" for i in show],
                      ["original", "kept (bottom)", "label y", "label y+1"])
    exact = bool(torch.equal(inp[:, :, 14:], x0[:, :, 14:]) and torch.equal(other[:, :, 14:], x0[:, :, 14:]))
    out.append(Page.of_text("CS180 A.7.2: inpainting", [png], f"A.7.2 Inpainting (RePaint-style, mask = 1 regenerates the top half, the bottom half is "
                f"overwritten with the noised original after every step): kept pixels equal the original exactly: "
                f"{exact}. Read as the true label with label y: {_frac(read(inp) == y)}; "
                f"read as y+1 when asked for y+1: {_frac(read(other) == (y + 1) % 10)}."))

    # A.7.3 translation of one digit towards every label
    src = x0[show[1]:show[1] + 1].expand(10, -1, -1, -1)
    trans = {i: ed.translate(model, schedule, src, torch.arange(10), i, w, steps, generator=_gens(10, seed))
             for i in i_starts}
    png = image_table([[trans[i][b] for i in i_starts] for b in range(10)], p("cs180_translate.png"),
                      [f"to {b}" for b in range(10)], [f"i={i}" for i in i_starts])
    hit = {i: (read(trans[i]) == torch.arange(10)).float().mean().item() for i in i_starts}
    out.append(Page.of_text("CS180 A.7.3: class-conditional translation", [png], f"A.7.3 Class-conditional translation of a {int(y[show[1]])} towards each label "
                f"(w={w}): read as the target in " + ", ".join(f"{hit[i]:.0%} at i_start={i}" for i in i_starts) +
                " of the 10 targets" + (": the less noise (larger i_start), the more of the source survives." if all(
                    hit[a] >= hit[b] for a, b in zip(i_starts[:-1], i_starts[1:])) else
                    " (not monotone in i_start at this sample size).")))

    # A.8 visual anagrams
    rows, lines = [], []
    k = max(2, n // 4)
    for a, b in ANAGRAM_PAIRS:
        x = ed.visual_anagram(model, schedule, a, b, k, w, steps, generator=_gens(k, seed))
        up, down = read(x.up), read(x.down)
        rows += [list(x.up[:6]), list(x.down[:6])]
        lines.append(f"{a}/{b}: upright read as {a} {_frac(up == a)}, rotated read as {b} {_frac(down == b)}, "
                     f"both {_frac((up == a) & (down == b))}")
    png = image_table(rows, p("cs180_anagram.png"),
                      [f"{v} {lab}" for a, b in ANAGRAM_PAIRS for v, lab in (("up", a), ("rot", b))])
    a, b = ANAGRAM_PAIRS[0]  # baseline: plain conditional samples of a, rotated
    plain = ed.iterative_denoise(model, schedule, randn((k, 1, 28, 28), _gens(k, seed + 500)), T, a, w, steps)
    base = read(ed.flip(plain)) == b
    out.append(Page.of_text("CS180 A.8: visual anagrams", [png], "A.8 Visual anagrams, eps = (eps(x, a) + flip(eps(flip(x), b))) / 2 with flip = rotation by "
                f"180 degrees, {k} seeds each: " + "; ".join(lines) + f". Baseline: plain samples of {a} (no anagram), "
                f"rotated, are read as {b} in {_frac(base)}."))

    # A.9 hybrids
    rows, lines, n_low, n_high, n_both = [], [], 0, 0, 0
    for lo, hi in HYBRID_PAIRS:
        x = ed.hybrid(model, schedule, lo, hi, n=k, w=w, steps=steps, generator=_gens(k, seed))
        blurred = ed.gaussian_blur_denoise(x, 2.0)
        full, low = read(x), read(blurred)
        n_low, n_high = n_low + int((low == lo).sum()), n_high + int((full == hi).sum())
        n_both += int(((full == hi) & (low == lo)).sum())
        rows += [list(x[:6]), list(blurred[:6])]
        lines.append(f"{lo}/{hi}: read as {hi} {_frac(full == hi)} (as {lo} {_frac(full == lo)}); blurred read as "
                     f"{lo} {_frac(low == lo)}; both {_frac((full == hi) & (low == lo))}")
    png = image_table(rows, p("cs180_hybrid.png"),
                      [f"{v} {lo}/{hi}" for lo, hi in HYBRID_PAIRS for v in ("hybrid", "blurred")])
    total = k * len(HYBRID_PAIRS)
    hi_share, lo_share = n_high / total, n_low / total
    verdict = ("the highpass label decides most of what is read up close, and blur does not bring the lowpass one back"
               if hi_share > 0.5 and lo_share < 0.5 else
               "the lowpass label decides most of what is read, even up close" if hi_share < 0.5 and lo_share > 0.5
               else "both halves of the illusion work about as often" if hi_share >= 0.5 and lo_share >= 0.5
               else "neither view is reliable")
    out.append(Page.of_text("CS180 A.9: hybrid images", [png], f"A.9 Hybrids, eps = lowpass(eps(x, low)) + highpass(eps(x, high)) (Gaussian kernel "
                f"{ed.HYBRID_KERNEL}, sigma {ed.HYBRID_SIGMA}), {k} seeds each; 'up close' is the classifier on the image, "
                "'from afar' on the image blurred with sigma 2: " + "; ".join(lines) +
                f". Over all pairs {hi_share:.0%} read as the highpass label up close, {lo_share:.0%} as the lowpass "
                f"label from afar, {n_both / total:.0%} both: at 28x28 {verdict}."))
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
