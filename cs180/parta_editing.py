"""CS180 part A's editing pages, A.7, each measured, then typeset:

  A.7.1 SDEdit               cs180_sdedit          three test digits, no label, i_start = 1..20
  A.7.1 SDEdit, own images   cs180_sdedit_drawn    real handwriting (UCI digits), a font letter and a photo, no label
  A.7.2 inpainting           cs180_inpaint         true label, another label, another label with resampling;
                                                   test digits and two own images
  A.7.3 translation          cs180_translate       one test digit edited towards each other label;
                             cs180_translate_own   every own image edited towards another label

The own images (own_images) are digits written by people outside MNIST (scikit-learn's UCI digits), the
letter S from a font and a photograph. i_start indexes techniques.strided_timesteps(T, steps): larger = less noise.
Every chain is the handout's update with its noise v_sigma (settings.eta), seeded per image.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from mnist.metrics import fisher_p, legible
from report.pages import Figure, Page
from mnist.problem5_text import share_words
from utils import generators

from . import inputs
from . import techniques as ed
from .figures import image_grid
from .parta_context import PartA
from .parta_judges import listed

UCI_LABELS = (2, 4, 7, 9)  # the own handwritten digits: the first UCI digit of each of these labels
LETTER = "S"  # the font letter
TRANSLATE_OFFSET = 1  # an own image is translated to (its label + 1) % 10 (the letter and photo: their reading's)
INPAINT_OWN = (0, -1)  # the own images inpainted too: the first handwritten digit and the photo


class OwnImage(NamedTuple):
    """An image from outside MNIST: its row name (two lines), its name in a sentence, the image (1, 1, 28, 28) in
    [-1, 1], its digit (None: not one)."""

    name: str
    short: str
    x: torch.Tensor
    label: Optional[int]


def own_images() -> list[OwnImage]:
    """The own images of A.7: the first UCI handwritten digit of each of UCI_LABELS, the letter, the photo."""
    out = []
    for c in UCI_LABELS:
        i = inputs.first_uci(c)
        out.append(OwnImage(f"handwritten {c}\n(UCI #{i})", f"handwritten {c}", inputs.uci_digit(i)[0], c))
    return out + [OwnImage(f"letter {LETTER}\n(font)", f"letter {LETTER}", inputs.font_letter(LETTER), None),
                  OwnImage("photo (Grace\nHopper)", "photo", inputs.sample_photo(), None)]


def own_labels(a: PartA, own: list) -> torch.Tensor:
    """(K,): each own image's digit; for the letter and the photo, what the classifier reads in them."""
    read = a.read(torch.cat([o.x for o in own]))
    return torch.tensor([o.label if o.label is not None else int(r) for o, r in zip(own, read)])


def _per_i(words: list, i_starts) -> str:
    """One tally per i_start as a reader takes it in, runs of the same tally said once:
    '0/4 at i_start = 1 to 10 and 3/4 at i_start = 20'."""
    runs: list = []  # [word, first i_start, last i_start]
    for w, i in zip(words, i_starts):
        if runs and runs[-1][0] == w:
            runs[-1][2] = i
        else:
            runs.append([w, i, i])
    return listed(f"{w} at i_start = {a}" + (f" to {b}" if b != a else "") for w, a, b in runs)


def _frac(mask: torch.Tensor) -> str:
    return f"{int(mask.sum())}/{mask.numel()}"


# ================================================================== A.7.1
class SDEdit(NamedTuple):
    edited: dict  # i_start -> the test digits edited with no label, (N, 1, 28, 28)
    keep: dict  # i_start -> share still read as their own digit
    close: dict  # i_start -> mean PSNR (dB) to the input


def measure_sdedit(a: PartA) -> SDEdit:
    s = a.settings
    edited = {i: ed.sdedit(a.model, a.schedule, a.x0, i, None, 0.0, s.steps, s.eta, generators(s.seed, len(a.x0)))
              for i in s.i_starts}
    return SDEdit(edited, {i: (judged(a, x) == a.y).float().mean().item() for i, x in edited.items()},
                  {i: ed.psnr(x, a.x0).mean().item() for i, x in edited.items()})


def sdedit_page(a: PartA, m: SDEdit) -> Page:
    i_starts, i_ts, steps, n = a.settings.i_starts, a.i_ts, a.settings.steps, len(a.x0)
    keep, close = m.keep, m.close
    png = image_grid([[m.edited[i][j] for i in i_starts] + [a.x0[j]] for j in a.show], a.fig_dir, "cs180_sdedit",
                     [f"test digit {int(a.y[j])}\nno label" for j in a.show],
                     [f"i_start = {i}\nt = {i_ts[i]}" for i in i_starts] + ["input"])
    lo, hi = min(i_starts), max(i_starts)  # most and least noise
    closer = all(round(close[p], 1) < round(close[q], 1) for p, q in zip(sorted(i_starts), sorted(i_starts)[1:]))
    return Page.of_text("CS180 A.7.1: SDEdit", [Figure(
        png, "Rows of test digits edited by SDEdit at growing i_start (columns, less noise to the right), the original "
             "digit last: the edit moves from a new digit to a copy of the original.",
        "Figure. SDEdit of test digits at each i_start; the original on the right.")],
                        f"A.7.1 SDEdit at i_start = {', '.join(map(str, i_starts))} of {steps} strided steps "
                        f"(t = {', '.join(str(i_ts[i]) for i in i_starts)}): noise the input to t, then run the "
                        f"iterative denoiser from there. {n} test digits, no label: the edit keeps the digit's class (the "
                        "classifier's reading, where the legibility judge of A.5-A.6 finds a digit) in " + ", ".join(f"{keep[i]:.0%}" for i in i_starts) + " and its PSNR to the input is " +
                        ", ".join(f"{close[i]:.1f}" for i in i_starts) + " dB (in the order of i_start)" +
                        (": the less noise, the closer to the input." if closer else "."),
                        answers=f"SDEdit: {n} test digits noised to i_start = {', '.join(map(str, i_starts))} (t = "
                                f"{i_ts[lo]} down to {i_ts[hi]}) and denoised with no label (the empty prompt) keep "
                                f"their class in {keep[lo]:.0%} at i_start = {lo} and {keep[hi]:.0%} at i_start = "
                                f"{hi}; their PSNR to the input goes from {close[lo]:.1f} to {close[hi]:.1f} dB, "
                                + ("so the less noise, the closer the edit stays to the input." if closer else
                                   "not rising steadily as the noise falls."))


class DrawnEdits(NamedTuple):
    own: list  # the OwnImages, in rows
    labels: torch.Tensor  # (K,) own_labels: each image's digit, or what the classifier reads in it
    edited: dict  # i_start -> (K, 1, 28, 28): SDEdit with no label (the empty prompt)
    reads: dict  # i_start -> (K,) what the classifier reads in the edits; -1 where the legibility judge fails them
    raw: torch.Tensor  # (K,) what it reads in the inputs, -1 where the judge fails them


def measure_drawn(a: PartA, own: list) -> DrawnEdits:
    """SDEdit of the own images at every i_start of the test digits' SDEdit, with no label."""
    s = a.settings
    src = torch.cat([o.x for o in own])
    edited = {i: ed.sdedit(a.model, a.schedule, src, i, None, 0.0, s.steps, s.eta, generators(s.seed, len(src), 3))
              for i in s.i_starts}
    return DrawnEdits(own, own_labels(a, own), edited, {i: judged(a, v) for i, v in edited.items()}, judged(a, src))


def judged(a: PartA, x: torch.Tensor) -> torch.Tensor:
    """(N,): the classifier's reading of each image, or -1 where mnist.metrics' legibility judge fails it (a
    scribble is no digit, whatever the classifier's largest class)."""
    label, ok = legible(a.judge.legibility, a.clf, x)
    return torch.where(ok, label, torch.full_like(label, -1))


def _said(r: int, digit: bool = False) -> str:
    """A judged reading in words: 'reads 5' / 'fails' (captions), '5' / 'no digit' (digit=True, in a list)."""
    return (str(r) if digit else f"reads {r}") if r >= 0 else ("no digit" if digit else "fails")


def drawn_page(a: PartA, m: DrawnEdits) -> Page:
    i_starts, reads, raw, i_ts = a.settings.i_starts, m.reads, m.raw, a.i_ts
    hand = [k for k, o in enumerate(m.own) if o.label is not None]
    others = [k for k, o in enumerate(m.own) if o.label is None]
    png = image_grid([[o.x[0]] + [m.edited[i][k] for i in i_starts] for k, o in enumerate(m.own)], a.fig_dir,
                     "cs180_sdedit_drawn", [o.name for o in m.own],
                     ["input"] + [f"i_start = {i}\nt = {i_ts[i]}" for i in i_starts],
                     captions=[[_said(int(raw[k]))] + [_said(int(reads[i][k])) for i in i_starts]
                               for k in range(len(m.own))], cell=0.72)
    lab = m.labels
    hit = lambda r: f"{int((r[hand] == lab[hand]).sum())}/{len(hand)}"
    per_i = _per_i([hit(reads[i]) for i in i_starts], i_starts)
    seq = lambda k: ", ".join(_said(int(reads[i][k]), digit=True) for i in i_starts)
    outside = "; ".join(f"the {m.own[k].short}: {_said(int(raw[k]), digit=True)} before editing, then {seq(k)}"
                        for k in others)
    at = ", ".join(map(str, i_starts))
    lo, hi = min(i_starts), max(i_starts)
    k_hi, k_lo = int((reads[hi][hand] == lab[hand]).sum()), int((reads[lo][hand] == lab[hand]).sum())
    p_kept = fisher_p(k_hi, len(hand), k_lo, len(hand))
    return Page.of_text("CS180 A.7.1: SDEdit on hand-drawn (UCI handwriting) and outside images", [Figure(
        png, "Rows of images from outside MNIST (digits handwritten by people, a font letter, a photo): the input "
             "first, then SDEdit with no label at growing i_start, each captioned with what the classifier reads.",
        "Figure. SDEdit of handwritten digits from another data set, a font letter and a photo, with no label.")],
                        f"A.7.1 SDEdit on images that are not MNIST digits, at the test digits' i_start = {at}, with "
                        f"no label (the empty prompt, w = 0). Hand-drawn: {len(hand)} digits written by people, from "
                        "scikit-learn's bundled UCI handwritten digits (load_digits: 1,797 digits written by 13 of "
                        "the UCI set's 43 writers, 8x8 counts of ink in 4x4 blocks), the first of each of "
                        f"{', '.join(map(str, UCI_LABELS))}, made MNIST-like: bicubic back to the 32x32 bitmap, ink "
                        f"stretched from {inputs.UCI_INK[0]:g}-{inputs.UCI_INK[1]:g} to 0-1, scaled to fit a 20 px box "
                        "and centred by centre of mass in 28x28, as MNIST was made. Outside images: the letter "
                        f"{LETTER} from matplotlib's DejaVu Sans font (normalised the same way) and matplotlib's bundled "
                        "photo of Grace Hopper (grey, centre square, 28x28). Under each image, input or edit, the digit "
                        "the classifier reads (these are clean images), or 'fails' where the legibility judge of "
                        "A.5-A.6 finds no digit in it (the classifier's largest class is not a reading of a scribble "
                        f"or a face); A.7's counts take a digit only where the judge finds one. The judge is strict: it "
                        f"passes {a.judge.legibility.real_pass:.0%} of real held-out digits, so it can fail a digit a person "
                        "reads, and A.7's counts are the judge's.\n\n"
                        f"Handwritten digits: read as the written digit in {hit(raw)} before editing, and after SDEdit "
                        f"{per_i}." + (" Without a label only the image tells the model which digit to make: more of the "
                                         "written digits survive at the largest i_start (least noise) than at the "
                                         f"smallest (Fisher p = {p_kept:.2g})." if k_hi > k_lo and p_kept < 0.05 else
                                         f" {k_hi}/{len(hand)} at the largest i_start against {k_lo}/{len(hand)} at the "
                                         f"smallest: too few digits to tell apart (Fisher p = {p_kept:.2g})."
                                         if k_hi != k_lo else "") +
                        f" Outside images: {outside}. Each own image is also translated to another digit (A.7.3) "
                        "and two are inpainted (A.7.2).",
                        answers=f"Hand-drawn digits: {len(hand)} digits written by people outside MNIST (UCI), read as "
                                f"the written digit in {hit(raw)} before editing, are read so after SDEdit with no label "
                                f"{per_i}.\n\n"
                                f"Web image and font letter: at i_start = {at}, {outside}.")


# ================================================================== A.7.2
class Inpainting(NamedTuple):
    mask: torch.Tensor  # (28, 28): 1 = regenerate (the top half)
    x: torch.Tensor  # (N + K, 1, 28, 28): the test digits, then the own images inpainted (INPAINT_OWN)
    names: list  # (row name, name in a sentence, whether its y is the classifier's guess) of each own image
    y: torch.Tensor  # (N + K,): the test digits' labels, the own images' own_labels
    target: torch.Tensor  # (N + K,): y + 1, the other label asked for
    edited: dict  # "y" / "y+1" / "y+1, U" -> (N + K, 1, 28, 28): own label, another, another with resampling
    reads: dict  # the same keys -> what the classifier reads, -1 where the judge fails it (judged)
    exact: bool  # every kept pixel equals the original


def measure_inpainting(a: PartA, own: list) -> Inpainting:
    """Regenerate the top half of every test digit and of the own images INPAINT_OWN, with their label, another
    label, and another label with RePaint's resampling."""
    s = a.settings
    picked = [own[k] for k in INPAINT_OWN]
    x = torch.cat([a.x0] + [o.x for o in picked])
    y = torch.cat([a.y, own_labels(a, picked)])
    mask = torch.zeros(28, 28)
    mask[:14] = 1
    target = (y + 1) % 10
    run = lambda lab, u: ed.inpaint(a.model, a.schedule, x, mask, lab, s.w, a.inpaint_steps, s.eta,
                                    generators(s.seed, len(x)), resample=u)
    edited = {"y": run(y, 1), "y+1": run(target, 1), "y+1, U": run(target, s.resample)}
    exact = all(torch.equal(v[:, :, 14:], x[:, :, 14:]) for v in edited.values())
    return Inpainting(mask, x, [(o.name, o.short, o.label is None) for o in picked], y, target, edited,
                      {k: judged(a, v) for k, v in edited.items()}, exact)


def inpainting_page(a: PartA, m: Inpainting) -> Page:
    n, U, w = len(a.x0), a.settings.resample, a.settings.w
    x0, y, target = m.x[:n], m.y[:n], m.target[:n]
    r_inp, r_other, r_u = (m.reads[k][:n] for k in ("y", "y+1", "y+1, U"))
    kept = lambda x: torch.where(m.mask.bool(), torch.full_like(x, -1.0), x)
    rows = list(a.show) + list(range(n, len(m.x)))
    png = image_grid([[m.x[i], kept(m.x[i])] + [m.edited[k][i] for k in ("y", "y+1", "y+1, U")] for i in rows],
                     a.fig_dir, "cs180_inpaint", [f"test digit {int(m.y[i])}" for i in a.show] +
                     [f"{name}\ny = {int(m.y[n + k])}" for k, (name, _, _) in enumerate(m.names)],
                     ["original", "kept\n(bottom half)", "label y", "label y+1", f"label y+1\nresample U={U}"],
                     captions=[[None, None] + [_said(int(m.reads[k][i])) for k in ("y", "y+1", "y+1, U")]
                               for i in rows], cell=0.7)
    own_words = "; ".join(f"the {short} (y = {int(m.y[n + k])}" + (", the classifier's largest class on it: it has no "
                                                                    "digit of its own" if guessed else "") + "): "
                          f"{', '.join(_said(int(m.reads[key][n + k]), digit=True) for key in ('y', 'y+1', 'y+1, U'))}"
                          for k, (_, short, guessed) in enumerate(m.names))
    return Page.of_text("CS180 A.7.2: inpainting", [Figure(
        png, "Rows of test digits and, last, two own images: the original, the pixels kept outside the mask, and the "
             "inpainted results with the image's own label, the next label, and the next label with resampling.",
        "Figure. Inpainting test digits and own images: the kept pixels, and the masked part filled in three ways.")],
                        f"A.7.2 Inpainting (RePaint, {a.inpaint_steps} strided steps, w = {w:g}): mask = 1 regenerates "
                        f"the top half; after every step the bottom half is overwritten with the original noised to the "
                        f"new t. The kept pixels {'equal the original exactly' if m.exact else 'differ from the original'}. "
                        "Readings as in A.7.1: a digit counts only where the legibility judge finds one ('fails' "
                        "under an image where it does not). "
                        f"On {len(x0)} test digits, the "
                        f"classifier reads the true label y, asked for y, in {_frac(r_inp == y)}; asked for another "
                        f"label, y+1, it reads y+1 in {_frac(r_other == target)} (and still y in "
                        f"{_frac(r_other == y)}).\n\n"
                        f"With RePaint's resampling (U = {U}: each step t -> t' is done, re-noised back with "
                        f"q(x_t | x_t') and redone, {U} times; {U}x the network passes) it reads y+1 in "
                        f"{_frac(r_u == target)} and y in {_frac(r_u == y)}. The own images of the last rows, asked "
                        f"for y, y+1 and y+1 with resampling: {own_words}. Resampling lets the regenerated half agree "
                        f"with the kept half, which belongs to the source digit, so it could pull the result towards "
                        f"the source: here it reads the source y {share_words(int((r_u == y).sum()), n, int((r_other == y).sum()), n)} "
                        f"without resampling ({_frac(r_u == y)} vs {_frac(r_other == y)}). python "
                        f"benchmarks/mnist_editing.py --only inpainting measures this on 100 digits for U = 1, 2, 4.",
                        answers=f"Inpainting: the top half of {len(x0)} test digits is regenerated and the bottom half "
                                f"kept ({'pixel for pixel' if m.exact else 'but not exactly'}); asked for the digit's "
                                f"own label y, the classifier reads y in {_frac(r_inp == y)}.\n\n"
                                f"Inpainting another digit: asked for y+1 it reads y+1 in {_frac(r_other == target)}, "
                                f"and with RePaint resampling (U = {U}) in {_frac(r_u == target)}: with resampling "
                                f"it reaches the target {share_words(int((r_u == target).sum()), n, int((r_other == target).sum()), n)} "
                                "without (a difference counts beyond two standard errors).")


# ================================================================== A.7.3
class Translation(NamedTuple):
    source: int  # index of the test digit translated (the 3)
    edited: dict  # i_start -> (10, 1, 28, 28): the digit edited towards label 0 .. 9
    reads: dict  # i_start -> (10,) what the classifier reads, -1 where the judge fails it (judged)
    hit: dict  # i_start -> share read as the label asked for
    own: list  # the OwnImages
    own_from: torch.Tensor  # (K,) own_labels: what each own image is
    own_to: torch.Tensor  # (K,) the label each is translated to: (own_from + TRANSLATE_OFFSET) % 10
    own_edited: dict  # i_start -> (K, 1, 28, 28)
    own_reads: dict  # i_start -> (K,), judged


def measure_translation(a: PartA, own: list) -> Translation:
    """Translate one test digit towards every label, and every own image towards another label (SDEdit with
    the target label, guidance w)."""
    s, j = a.settings, a.show[1]
    src = a.x0[j:j + 1].expand(10, -1, -1, -1)
    edited = {i: ed.translate(a.model, a.schedule, src, torch.arange(10), i, s.w, s.steps, s.eta,
                              generators(s.seed, 10)) for i in s.i_starts}
    reads = {i: judged(a, x) for i, x in edited.items()}
    x_own, y_own = torch.cat([o.x for o in own]), own_labels(a, own)
    to = (y_own + TRANSLATE_OFFSET) % 10
    own_edited = {i: ed.translate(a.model, a.schedule, x_own, to, i, s.w, s.steps, s.eta,
                                  generators(s.seed, len(own), 6)) for i in s.i_starts}
    other = torch.arange(10) != a.y[j]  # the 9 targets that are not the source's own label
    return Translation(j, edited, reads, {i: (r == torch.arange(10))[other].float().mean().item() for i, r in reads.items()},
                       own, y_own, to, own_edited, {i: judged(a, x) for i, x in own_edited.items()})


def _steadily(hit: dict, asc: list) -> bool:
    """Whether the share reaching the target falls as i_start grows: lower at the largest i_start than at the
    smallest, and never rising between neighbours."""
    return hit[asc[0]] > hit[asc[-1]] and all(hit[p] >= hit[q] for p, q in zip(asc, asc[1:]))


def translation_page(a: PartA, m: Translation) -> Page:
    i_starts, i_ts, w, hit, digit = a.settings.i_starts, a.i_ts, a.settings.w, m.hit, int(a.y[m.source])
    cols = [f"i_start = {i}\nt = {i_ts[i]}" for i in i_starts]
    png = image_grid([[m.edited[i][b] for i in i_starts] + [a.x0[m.source]] for b in range(10)], a.fig_dir,
                     "cs180_translate", [f"to label {b}" for b in range(10)], cols + ["input"],
                     captions=[[_said(int(m.reads[i][b])) for i in i_starts] + [None] for b in range(10)], cell=0.62)
    K = len(m.own)
    png_own = image_grid([[o.x[0]] + [m.own_edited[i][k] for i in i_starts] for k, o in enumerate(m.own)], a.fig_dir,
                         "cs180_translate_own", [f"{o.name}\nto label {int(m.own_to[k])}" for k, o in enumerate(m.own)],
                         ["input"] + cols, captions=[[None] + [_said(int(m.own_reads[i][k])) for i in i_starts]
                                                     for k in range(K)], cell=0.62)
    asc = sorted(i_starts)
    fewer = _steadily(hit, asc)
    own_hit = {i: (m.own_reads[i] == m.own_to).float().mean().item() for i in i_starts}
    own_count = lambda i: f"{int((m.own_reads[i] == m.own_to).sum())}/{K}"
    return Page.of_text("CS180 A.7.3: class-conditional translation", [Figure(
        png, "Ten rows, one per target digit 0 to 9, translating one source test digit at growing i_start (columns), "
             "the source last.", "Figure 1. One test digit translated towards each label."), Figure(
        png_own, "One row per own image (handwritten digits from outside MNIST, a font letter, a photo): the input, then "
                 "the image translated towards another label at growing i_start.",
        "Figure 2. Every own image translated towards another label.")],
                        f"A.7.3 Class-conditional translation (SDEdit with the target label as the prompt, w={w:g}); "
                        "an edit reaches its target only where the legibility judge finds a digit and it is the target "
                        "('fails' under the others, as in A.7.1). "
                        f"Figure 1: a test {digit} towards each label, read as the target " +
                        _per_i([f"{hit[i]:.0%}" for i in i_starts], i_starts) + f" (of the 9 targets other than {digit})" +
                        (": the less noise (larger i_start), the more of the source survives." if fewer else
                         " (not falling steadily with i_start at this sample size).") +
                        f"\n\nFigure 2: each own image (A.7.1's) towards another label, (its digit + "
                        f"{TRANSLATE_OFFSET}) mod 10 (the letter and the photo, which have no digit of their own: the "
                        f"classifier's largest class on them, + {TRANSLATE_OFFSET}): read as the target " +
                        _per_i([own_count(i) for i in i_starts], i_starts) +
                        (": the less noise, the fewer reach it." if _steadily(own_hit, asc) else "."),
                        answers=f"Text-conditional translation: a test {digit} edited with each of the 10 labels as "
                                f"the prompt (w = {w:g}) is read as the target label, over the 9 labels other than its "
                                f"own, in {hit[asc[0]]:.0%} at i_start = "
                                f"{asc[0]} (most noise) and {hit[asc[-1]]:.0%} at i_start = {asc[-1]} (least noise)"
                                + (": the less noise, the fewer edits reach the target." if fewer else ".")
                                + f" The {K} own images, each translated to another label, reach it in "
                                f"{own_count(asc[0])} at i_start = {asc[0]} and {own_count(asc[-1])} at i_start = "
                                f"{asc[-1]}.")
