"""CS180 part A's editing pages, A.7, each measured, then typeset:

  A.7.1 SDEdit               cs180_sdedit          three test digits, no label, i_start = 1..20
  A.7.1 SDEdit, own inputs   cs180_sdedit_drawn    hand-drawn digits, a font letter and a photo, no label / label
  A.7.2 inpainting           cs180_inpaint         true label, another label, another label with resampling
  A.7.3 translation          cs180_translate       one digit edited towards each other label

i_start indexes techniques.strided_timesteps(T, steps): larger = less noise.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from report.pages import Figure, Page
from utils import generators

from . import inputs
from . import techniques as ed
from .figures import image_grid
from .parta_context import PartA

DRAWN_I = (3, 5, 10, 20)  # SDEdit strengths for the hand-drawn and outside images (those <= steps)
HAND_SHAPES = ("2", "3", "4", "5", "8", "9")  # inputs.hand_drawn digits
LETTER, LETTER_LABEL = "S", 5  # the font letter, and the label it is edited with
PHOTO_LABEL = 0  # the label the photo is edited with ("a face is round")


def _frac(mask: torch.Tensor) -> str:
    return f"{int(mask.sum())}/{mask.numel()}"


def _more(n: int, m: int) -> str:
    """'more' / 'fewer' / 'as many': n against m."""
    return "more" if n > m else "fewer" if n < m else "as many"


# ================================================================== A.7.1
class SDEdit(NamedTuple):
    edited: dict  # i_start -> the test digits edited with no label, (N, 1, 28, 28)
    keep: dict  # i_start -> share still read as their own digit
    close: dict  # i_start -> mean PSNR (dB) to the input


def measure_sdedit(a: PartA) -> SDEdit:
    s = a.settings
    edited = {i: ed.sdedit(a.model, a.schedule, a.x0, i, None, 0.0, s.steps, generator=generators(s.seed, len(a.x0)))
              for i in s.i_starts}
    return SDEdit(edited, {i: (a.read(x) == a.y).float().mean().item() for i, x in edited.items()},
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
                        f"iterative denoiser from there. {n} test digits, no label: the edit keeps the digit's class "
                        "in " + ", ".join(f"{keep[i]:.0%}" for i in i_starts) + " and its PSNR to the input is " +
                        ", ".join(f"{close[i]:.1f}" for i in i_starts) + " dB" +
                        (": the less noise, the closer to the input." if closer else "."),
                        answers=f"SDEdit: {n} test digits noised to i_start = {', '.join(map(str, i_starts))} (t = "
                                f"{i_ts[lo]} down to {i_ts[hi]}) and denoised with no label (the empty prompt) keep "
                                f"their class in {keep[lo]:.0%} at i_start = {lo} and {keep[hi]:.0%} at i_start = "
                                f"{hi}; their PSNR to the input goes from {close[lo]:.1f} to {close[hi]:.1f} dB, "
                                + ("so the less noise, the closer the edit stays to the input." if closer else
                                   "not rising steadily as the noise falls."))


class DrawnEdits(NamedTuple):
    names: list  # the row label of each input
    src: torch.Tensor  # the inputs, drawn_seeds times: (K * drawn_seeds, 1, 28, 28)
    labels: torch.Tensor  # the label each is edited with (the drawn digit; LETTER_LABEL; PHOTO_LABEL)
    i_starts: tuple  # DRAWN_I below steps
    edited: dict  # (with a label?, i_start) -> (K * drawn_seeds, 1, 28, 28)
    reads: dict  # (with a label?, i_start) -> what the classifier reads in the edits
    raw: torch.Tensor  # what it reads in the inputs


def measure_drawn(a: PartA) -> DrawnEdits:
    """SDEdit of the hand-drawn digits, the font letter and the photo, with no label and with one."""
    s = a.settings
    drawn_i = tuple(i for i in DRAWN_I if i <= s.steps - 1) or tuple(s.i_starts)
    made = [(f"hand-drawn {h}", inputs.hand_drawn(h, s.seed), int(h)) for h in HAND_SHAPES]
    made += [(f"letter {LETTER}\n(font)", inputs.font_letter(LETTER), LETTER_LABEL),
             ("photo (Grace\nHopper)", inputs.sample_photo(), PHOTO_LABEL)]
    src = torch.cat([x for _, x, _ in made]).repeat(s.drawn_seeds, 1, 1, 1)
    lab = torch.tensor([c for _, _, c in made]).repeat(s.drawn_seeds)
    edited = {(cond, i): ed.sdedit(a.model, a.schedule, src, i, lab if cond else None, s.w if cond else 0.0, s.steps,
                                   generator=generators(s.seed, len(src), 3)) for cond in (False, True) for i in drawn_i}
    return DrawnEdits([f"{name}\nright: label {c}" for name, _, c in made], src, lab, drawn_i, edited,
                      {k: a.read(v) for k, v in edited.items()}, a.read(src))


def drawn_page(a: PartA, m: DrawnEdits) -> Page:
    drawn_i, reads, raw, lab, i_ts, w = m.i_starts, m.reads, m.raw, m.labels, a.i_ts, a.settings.w
    K, hand, nd = len(m.names), len(HAND_SHAPES), len(drawn_i)
    rows_img = [[m.src[r]] + [m.edited[(cond, i)][r] for cond in (False, True) for i in drawn_i] for r in range(K)]
    caps = [[f"reads {int(raw[r])}"] + [f"reads {int(reads[(cond, i)][r])}" for cond in (False, True) for i in drawn_i]
            for r in range(K)]
    png = image_grid(rows_img, a.fig_dir, "cs180_sdedit_drawn", m.names,
                     ["input"] + [f"i = {i}\nt = {i_ts[i]}" for i in drawn_i] * 2, captions=caps,
                     groups=[(1, nd, "no label (null, w = 0)"), (nd + 1, 2 * nd, f"with the row's label, w = {w:g}")],
                     cell=0.66)
    is_hand = torch.arange(len(m.src)) % K < hand
    hit = lambda r: (r[is_hand] == lab[is_hand]).float().mean().item()
    per_i = lambda cond: ", ".join(f"{hit(reads[(cond, i)]):.0%} at i={i}" for i in drawn_i)
    outside = lambda r_: ", ".join(str(int(v)) for v in r_)
    letter_at = lambda cond: outside(reads[(cond, i)][hand] for i in drawn_i)
    photo_at = lambda cond: outside(reads[(cond, i)][hand + 1] for i in drawn_i)
    seeds, at = a.settings.drawn_seeds, ", ".join(map(str, drawn_i))
    return Page.of_text("CS180 A.7.1: SDEdit on hand-drawn and outside images", [Figure(
        png, "Rows of hand-drawn strokes and outside images: the input first, then SDEdit at growing i_start without "
             "a label and with the row's label, each captioned with what the classifier reads.",
        "Figure. SDEdit of hand-drawn digits, a web image and a font letter.")],
                        f"A.7.1 SDEdit on images that are not MNIST digits: {hand} digits drawn the way a person "
                        f"draws (inputs.hand_drawn: smooth pen strokes, a forward slant, a random size, position and "
                        f"pen width), the letter {LETTER} rendered from matplotlib's DejaVu Sans font, and "
                        f"matplotlib's bundled photo of Grace Hopper (grey, centre square, 28x28), each run without a "
                        f"label (the null token, w = 0) and with one (w = {w:g}: the drawn digit; {LETTER_LABEL} for "
                        f"the letter, {PHOTO_LABEL} for the photo), i_start = {at}, {seeds} "
                        f"seed{'s' if seeds > 1 else ''} each; under each image what the classifier reads.\n\n"
                        f"Hand-drawn digits: the raw drawings are read as the drawn digit in {hit(raw):.0%}; after "
                        f"SDEdit without a label in {per_i(False)}; with the label in {per_i(True)}. Without a label "
                        f"nothing but the drawing tells the model which digit to make, so what survives the noise is "
                        f"the drawing's own shape; at small i_start (much noise) the drawing is mostly replaced.\n\n"
                        f"The letter {LETTER} is read as {int(raw[hand])} raw, then as {letter_at(False)} (no label) "
                        f"and {letter_at(True)} (label {LETTER_LABEL}) at i = {at}. The photo is read as "
                        f"{int(raw[hand + 1])} raw, then {photo_at(False)} (no label) and {photo_at(True)} (label "
                        f"{PHOTO_LABEL}): the model can only make digits, so it turns the outside image into the digit "
                        f"nearest to it, or into the label it is given.",
                        answers=f"Hand-drawn digits: {hand} drawings, read as the drawn digit in {hit(raw):.0%} before "
                                f"editing, are read so after SDEdit in {per_i(False)} with no label, and in "
                                f"{per_i(True)} with the drawn digit as the label (w = {w:g}).\n\n"
                                f"Web image and font letter: at i = {at} the photo (Grace Hopper) is read as "
                                f"{photo_at(False)} with no label and {photo_at(True)} with label {PHOTO_LABEL}; the "
                                f"letter {LETTER} as {letter_at(False)} with no label and {letter_at(True)} with label "
                                f"{LETTER_LABEL}.")


# ================================================================== A.7.2
class Inpainting(NamedTuple):
    mask: torch.Tensor  # (28, 28): 1 = regenerate (the top half)
    target: torch.Tensor  # (N,): y + 1, the other label asked for
    edited: dict  # "y" / "y+1" / "y+1, U" -> (N, 1, 28, 28): own label, another, another with resampling
    reads: dict  # the same keys -> what the classifier reads
    exact: bool  # every kept pixel equals the original


def measure_inpainting(a: PartA) -> Inpainting:
    """Regenerate the top half of every test digit, with the true label, another label, and another label
    with RePaint's resampling."""
    s, n = a.settings, len(a.x0)
    mask = torch.zeros(28, 28)
    mask[:14] = 1
    target = (a.y + 1) % 10
    run = lambda y, u: ed.inpaint(a.model, a.schedule, a.x0, mask, y, s.w, a.inpaint_steps,
                                  generator=generators(s.seed, n), resample=u)
    edited = {"y": run(a.y, 1), "y+1": run(target, 1), "y+1, U": run(target, s.resample)}
    exact = all(torch.equal(v[:, :, 14:], a.x0[:, :, 14:]) for v in edited.values())
    return Inpainting(mask, target, edited, {k: a.read(v) for k, v in edited.items()}, exact)


def inpainting_page(a: PartA, m: Inpainting) -> Page:
    x0, y, target, U, w = a.x0, a.y, m.target, a.settings.resample, a.settings.w
    r_inp, r_other, r_u = m.reads["y"], m.reads["y+1"], m.reads["y+1, U"]
    kept = lambda x: torch.where(m.mask.bool(), torch.full_like(x, -1.0), x)
    png = image_grid([[x0[i], kept(x0[i]), m.edited["y"][i], m.edited["y+1"][i], m.edited["y+1, U"][i]]
                      for i in a.show], a.fig_dir, "cs180_inpaint", [f"test digit {int(y[i])}" for i in a.show],
                     ["original", "kept\n(bottom half)", "label y", "label y+1", f"label y+1\nresample U={U}"],
                     captions=[[None, None, f"reads {int(r_inp[i])}", f"reads {int(r_other[i])}", f"reads {int(r_u[i])}"]
                               for i in a.show])
    return Page.of_text("CS180 A.7.2: inpainting", [Figure(
        png, "Rows of test digits: the original, the pixels kept outside the mask, and the inpainted results with the "
             "digit's own label, the next label, and the next label with resampling.",
        "Figure. Inpainting: the kept pixels, and the masked part filled in three ways.")],
                        f"A.7.2 Inpainting (RePaint, {a.inpaint_steps} strided steps, w = {w:g}): mask = 1 regenerates "
                        f"the top half; after every step the bottom half is overwritten with the original noised to the "
                        f"new t. Kept pixels equal the original exactly: {m.exact}. On {len(x0)} test digits, the "
                        f"classifier reads the true label y, asked for y, in {_frac(r_inp == y)}; asked for another "
                        f"label, y+1, it reads y+1 in {_frac(r_other == target)} (and still y in "
                        f"{_frac(r_other == y)}).\n\n"
                        f"With RePaint's resampling (U = {U}: each step t -> t' is done, re-noised back with "
                        f"q(x_t | x_t') and redone, {U} times; {U}x the network passes) it reads y+1 in "
                        f"{_frac(r_u == target)} and y in {_frac(r_u == y)}. Resampling lets the regenerated half agree "
                        f"with the kept half; when the kept half belongs to another digit, agreeing with it can pull the "
                        f"result towards the source instead of the target. python benchmarks/mnist_editing.py --only "
                        f"inpainting measures this on 100 digits for U = 1, 2, 4.",
                        answers=f"Inpainting: the top half of {len(x0)} test digits is regenerated and the bottom half "
                                f"kept ({'pixel for pixel' if m.exact else 'but not exactly'}); asked for the digit's "
                                f"own label y, the classifier reads y in {_frac(r_inp == y)}.\n\n"
                                f"Inpainting another digit: asked for y+1 it reads y+1 in {_frac(r_other == target)}, "
                                f"and with RePaint resampling (U = {U}) in {_frac(r_u == target)}: "
                                + _more(int((r_u == target).sum()), int((r_other == target).sum()))
                                + " with resampling.")


# ================================================================== A.7.3
class Translation(NamedTuple):
    source: int  # index of the test digit translated (the 3)
    edited: dict  # i_start -> (10, 1, 28, 28): the digit edited towards label 0 .. 9
    reads: dict  # i_start -> (10,) what the classifier reads
    hit: dict  # i_start -> share read as the label asked for


def measure_translation(a: PartA) -> Translation:
    """Translate one test digit towards every label (SDEdit with the target label)."""
    s, j = a.settings, a.show[1]
    src = a.x0[j:j + 1].expand(10, -1, -1, -1)
    edited = {i: ed.translate(a.model, a.schedule, src, torch.arange(10), i, s.w, s.steps,
                              generator=generators(s.seed, 10)) for i in s.i_starts}
    reads = {i: a.read(x) for i, x in edited.items()}
    return Translation(j, edited, reads, {i: (r == torch.arange(10)).float().mean().item() for i, r in reads.items()})


def translation_page(a: PartA, m: Translation) -> Page:
    i_starts, i_ts, w, hit, digit = a.settings.i_starts, a.i_ts, a.settings.w, m.hit, int(a.y[m.source])
    png = image_grid([[m.edited[i][b] for i in i_starts] + [a.x0[m.source]] for b in range(10)], a.fig_dir,
                     "cs180_translate", [f"to label {b}" for b in range(10)],
                     [f"i_start = {i}\nt = {i_ts[i]}" for i in i_starts] + ["input"],
                     captions=[[f"reads {int(m.reads[i][b])}" for i in i_starts] + [None] for b in range(10)], cell=0.62)
    asc = sorted(i_starts)
    fewer = hit[asc[0]] > hit[asc[-1]] and all(hit[p] >= hit[q] for p, q in zip(asc, asc[1:]))
    return Page.of_text("CS180 A.7.3: class-conditional translation", [Figure(
        png, "Ten rows, one per target digit 0 to 9, translating one source test digit at growing i_start (columns), "
             "the source last.", "Figure. One test digit translated towards each label.")],
                        f"A.7.3 Class-conditional translation of a {digit} towards each label (SDEdit with the "
                        f"target label, w={w:g}): read as the target in " +
                        ", ".join(f"{hit[i]:.0%} at i_start={i}" for i in i_starts) + " of the 10 targets" +
                        (": the less noise (larger i_start), the more of the source survives." if fewer else
                         " (not falling steadily with i_start at this sample size)."),
                        answers=f"Text-conditional translation: a test {digit} edited with each of the 10 labels as "
                                f"the prompt (w = {w:g}) is read as the target label in {hit[asc[0]]:.0%} at i_start = "
                                f"{asc[0]} (most noise) and {hit[asc[-1]]:.0%} at i_start = {asc[-1]} (least noise)"
                                + (": the less noise, the fewer edits reach the target." if fewer else "."))
