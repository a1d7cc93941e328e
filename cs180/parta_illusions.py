"""CS180 part A's illusion pages, A.8 and A.9, measured, then typeset:

  A.8 / A.9 over all pairs   cs180_illusion_rates  success of all 90 anagram and hybrid label pairs (+ .csv, .npz)
  A.8 visual anagrams        cs180_anagram         the best non-trivial pairs, upright and rotated
  A.9 hybrids                cs180_hybrid          the best pairs, up close and from afar

The sweep over every ordered label pair picks the examples; the examples are drawn again with fresh seeds
and more steps, so they are neither the seeds they were picked by nor the few-step sweep's rougher images.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from report.figures import save_numbers
from report.pages import Figure, Page

from . import techniques as ed
from .figures import image_grid, rate_panels
from .parta_context import PartA

EXAMPLES = 5  # best pairs shown per illusion
PER_ROW = 2  # examples: at most 2 pairs with the same upright / low-pass label
EXAMPLE_SEED = 100  # the examples' seeds start here: fresh, not the sweep's
BASELINE_SEEDS = 5  # plain samples per label for the illusions' baselines
TICK, CROSS = "\u2713", "\u2717"  # check and cross marks (DejaVu Sans has both)


def _frac(mask: torch.Tensor) -> str:
    return f"{int(mask.sum())}/{mask.numel()}"


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


def _mean_off(m: torch.Tensor, skip=()) -> float:
    """Mean of the measured (non-NaN) cells of m, leaving out the pairs in skip."""
    keep = ~torch.isnan(m)
    for a, b in skip:
        keep[a, b] = False
    return float(m[keep].mean())


def _wins(m: torch.Tensor, ok) -> int:
    """How many measured (non-NaN) cells of m pass ok."""
    return int((ok(m) & ~torch.isnan(m)).sum())


def _pairs(pairs) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([a for a, _ in pairs]), torch.tensor([b for _, b in pairs])


# ============================================================ A.8 / A.9 sweep
class Sweeps(NamedTuple):
    """Both illusions over every ordered label pair a != b, read by the classifier, against plain samples."""

    anagrams: ed.PairSweep  # upright a, rotated b
    hybrids: ed.PairSweep  # low-pass a, high-pass b
    reads: dict  # "upright" / "rotated" (anagrams), "near" / "far" (hybrids) -> (N,) labels read
    A: torch.Tensor  # (10, 10) anagram success per pair, NaN diagonal
    H: torch.Tensor  # (10, 10) hybrid success per pair
    base: ed.Baselines  # plain samples read the illusions' ways
    easy_a: list  # pairs (besides 6/9, 9/6) that plain digits pass as anagrams
    easy_h: list  # pairs that plain digits pass as hybrids
    best_a: list  # the best non-trivial anagram pairs (ties: the classifier's confidence)
    best_h: list  # the best hybrid pairs


def measure_sweeps(a: PartA) -> Sweeps:
    """A.8 / A.9 measured over every ordered label pair, each technique in one batch; the baselines are plain
    samples of each label (same steps and guidance) read the illusions' ways: a pair whose plain digits already
    pass is trivial for the classifier, like 6/9 is for the eye."""
    s, model, schedule = a.settings, a.model, a.schedule
    ana = ed.anagram_sweep(model, schedule, s.illusion_seeds, s.w, s.illusion_steps)
    hyb = ed.hybrid_sweep(model, schedule, s.illusion_seeds, s.w, s.illusion_steps)
    blurred = ed.gaussian_blur_denoise(hyb.x, ed.AFAR_SIGMA)
    reads = dict(upright=a.read(ana.x), rotated=a.read(ed.flip(ana.x)), near=a.read(hyb.x), far=a.read(blurred))
    A = ed.pair_matrix(((reads["upright"] == ana.a) & (reads["rotated"] == ana.b)).float(), ana.a, ana.b)
    H = ed.pair_matrix(((reads["near"] == hyb.b) & (reads["far"] == hyb.a)).float(), hyb.a, hyb.b)
    base = ed.plain_baselines(model, schedule, a.read, range(BASELINE_SEEDS), s.w, s.illusion_steps)
    easy_a = [p for p in ed.trivial_pairs(base.anagram) if p not in ed.ROTATION_TRIVIAL]
    easy_h = ed.trivial_pairs(base.hybrid)
    # ties in success go to the pair the classifier is surest of: the smaller of its two views' probabilities
    n = torch.arange(len(ana.a))
    sure_a = torch.minimum(a.prob(ana.x)[n, ana.a], a.prob(ed.flip(ana.x))[n, ana.b])
    sure_h = torch.minimum(a.prob(hyb.x)[n, hyb.b], a.prob(blurred)[n, hyb.a])
    best_a = ed.best_pairs(A, EXAMPLES, list(ed.ROTATION_TRIVIAL) + easy_a, ed.pair_matrix(sure_a, ana.a, ana.b),
                           PER_ROW)
    best_h = ed.best_pairs(H, EXAMPLES, easy_h, ed.pair_matrix(sure_h, hyb.a, hyb.b), PER_ROW)
    return Sweeps(ana, hyb, reads, A, H, base, easy_a, easy_h, best_a, best_h)


def _anagram_text(m: Sweeps, k: int) -> str:
    """The rates page's paragraph on anagrams."""
    ana, A, base, rot = m.anagrams, m.A, m.base, ed.ROTATION_TRIVIAL
    real = torch.tensor([(p, q) not in rot for p, q in zip(ana.a.tolist(), ana.b.tolist())])
    full_a = _wins(A, lambda v: v == 1) - sum(int(A[p] == 1) for p in rot)
    any_a = _wins(A, lambda v: v > 0) - sum(int(A[p] > 0) for p in rot)
    return (f"Anagram success = read as a upright AND as b rotated by 180 degrees. Over the 88 non-trivial pairs "
            f"{_mean_off(A, rot):.0%} (upright alone {(m.reads['upright'] == ana.a)[real].float().mean():.0%}, "
            f"rotated alone {(m.reads['rotated'] == ana.b)[real].float().mean():.0%}); "
            f"{_counts(any_a, full_a, 88, k)}. Baseline, plain samples of a ({BASELINE_SEEDS} per label, no anagram) "
            f"read the same way: {_mean_off(base.anagram, rot):.0%}. 6/9 and 9/6 (red hatching) are trivial: a 6 "
            f"rotated is a 9 (plain 6s pass as 6/9 in {float(base.anagram[6, 9]):.0%}, plain 9s as 9/6 in "
            f"{float(base.anagram[9, 6]):.0%}); as anagrams they score {float(A[6, 9]):.0%} and {float(A[9, 6]):.0%}. "
            f"{_easy_text(m.easy_a, base.anagram, 'rotated', True)} The pair 2/5: {float(A[2, 5]):.0%}. Best "
            f"non-trivial (ties broken by the classifier's confidence, trivial pairs left out, at most {PER_ROW} per "
            f"upright label): {_pairs_text(m.best_a, A, k=k)}.")


def _hybrid_text(m: Sweeps, k: int) -> str:
    """The rates page's paragraph on hybrids."""
    hyb, H = m.hybrids, m.H
    row_wins = [_wins(H[p], lambda v: v > 0) for p in range(10)]  # successful pairs per low-pass label
    top_low = max(range(10), key=lambda p: row_wins[p])
    any_h = _wins(H, lambda v: v > 0)
    return (f"Hybrid success = read as the high-pass label b up close (the image) AND as the low-pass label a from "
            f"afar (the image blurred with sigma {ed.AFAR_SIGMA:g} px); low-pass filter: Gaussian sigma "
            f"{ed.HYBRID_SIGMA:g}, kernel {ed.HYBRID_KERNEL}. Over all 90 pairs {_mean_off(H):.0%} (up close "
            f"alone {(m.reads['near'] == hyb.b).float().mean():.0%}, from afar alone "
            f"{(m.reads['far'] == hyb.a).float().mean():.0%}); {_counts(any_h, _wins(H, lambda v: v == 1), 90, k)}. "
            f"Baseline, plain samples of b read the same way: {_mean_off(m.base.hybrid):.0%}. "
            f"{_easy_text(m.easy_h, m.base.hybrid, 'blurred', False)} "
            f"Low-pass {top_low} gives {row_wins[top_low]} of the {any_h} successful pairs, the most of any "
            f"low-pass label. Best (low-pass / high-pass; at most {PER_ROW} per low-pass label): "
            f"{_pairs_text(m.best_h, H, k=k)}.")


def rates_page(a: PartA, m: Sweeps) -> Page:
    """The success of every pair as two heat maps (and their .csv / .npz), and what they say."""
    s, A, H, k = a.settings, m.A, m.H, len(a.settings.illusion_seeds)
    png = rate_panels([A, H], ["A.8 anagrams: upright a, rotated b", "A.9 hybrids: low-pass a, high-pass b"],
                      ["upright label a", "low-pass label a (read from afar)"],
                      ["label b (read rotated 180\u00b0)", "high-pass label b (read up close)"], a.fig_dir,
                      "cs180_illusion_rates", [[(ed.ROTATION_TRIVIAL, 0), (m.easy_a, 1)], [(m.easy_h, 1)]],
                      ["6/9, 9/6: trivial (a rotated 6 is a 9)",
                       f"plain digits pass too (baseline \u2265 {ed.NEAR_TRIVIAL:.0%})"], k)
    save_numbers(a.fig_dir, "cs180_illusion_rates",
                 [dict(a=p, b=q, anagram=float(A[p, q]), hybrid=float(H[p, q]))
                  for p, q in zip(*map(torch.Tensor.tolist, ed.label_pairs(10)))],
                 anagram=A.numpy(), hybrid=H.numpy())
    cmd = (f"python benchmarks/mnist_editing.py --only illusions --seeds {' '.join(map(str, s.illusion_seeds))} "
           f"--illusion-steps {s.illusion_steps}")
    return Page.of_text("CS180 A.8-A.9: anagrams and hybrids over all label pairs", [Figure(
        png, "Two 10 by 10 heat maps of success rates over label pairs, anagrams left and hybrids right, each cell "
             "annotated; the diagonal is grey (not run); hatched cells mark the trivial 6/9 pairs and the pairs plain "
             "digits pass too.",
        "Figure. Success rate of every label pair: anagrams (left) and hybrids (right).")],
                        f"A.8-A.9 Every ordered label pair a != b (90 pairs) x {k} seed{'s' if k > 1 else ''}, DDIM "
                        f"with {s.illusion_steps} steps, w = {s.w:g}, each technique in one batch of "
                        f"{len(m.anagrams.a)}; each cell is the success rate of one pair, by the metric classifier."
                        f"\n\n{_anagram_text(m, k)}\n\n{_hybrid_text(m, k)}"
                        f"\n\nThe same matrices are printed by: {cmd} (the same seeds, steps and batch); without "
                        f"--seeds it measures 5 seeds per pair.",
                        answers=f"Visual anagrams: {_mean_off(A, ed.ROTATION_TRIVIAL):.0%} of the 88 non-trivial "
                                f"label pairs read as a upright and b rotated, against "
                                f"{_mean_off(m.base.anagram, ed.ROTATION_TRIVIAL):.0%} for plain samples; 6/9 is "
                                f"trivial and left out.\n\n"
                                f"Hybrids: {_mean_off(H):.0%} of the 90 pairs read as the high-pass label up close and "
                                f"the low-pass label from afar, against {_mean_off(m.base.hybrid):.0%} for plain "
                                f"samples.")


# ============================================================ A.8 / A.9 examples
class Examples(NamedTuple):
    """The best pairs of the sweep drawn again with fresh seeds and more steps, and what the classifier reads
    in each view: (upright, rotated) for anagrams, (up close, from afar) for hybrids."""

    seeds: tuple
    pairs: list  # the pairs (a, b), in rows
    sweep: ed.PairSweep
    views: tuple  # the two views of sweep.x, each (N, 1, 28, 28)
    reads: tuple  # what the classifier reads in each view, each (N,)

    def ids(self, a: int, b: int) -> list[int]:
        """The images of pair (a, b), one per seed."""
        return [int(i) for i in ((self.sweep.a == a) & (self.sweep.b == b)).nonzero().flatten()]


def measure_examples(a: PartA, m: Sweeps) -> tuple[Examples, Examples]:
    """(anagrams, hybrids): the best anagram pairs and, last, the trivial 6/9 for comparison; the best hybrids."""
    s = a.settings
    seeds = tuple(EXAMPLE_SEED + j for j in range(s.example_seeds))
    show_a = m.best_a + [(6, 9)]
    ana = ed.anagram_sweep(a.model, a.schedule, seeds, s.w, a.example_steps, pairs=_pairs(show_a))
    hyb = ed.hybrid_sweep(a.model, a.schedule, seeds, s.w, a.example_steps, pairs=_pairs(m.best_h))
    views_a = (ana.x, ed.flip(ana.x))
    views_h = (hyb.x, ed.gaussian_blur_denoise(hyb.x, ed.AFAR_SIGMA))
    return (Examples(seeds, show_a, ana, views_a, tuple(a.read(v) for v in views_a)),
            Examples(seeds, m.best_h, hyb, views_h, tuple(a.read(v) for v in views_h)))


def _example_rows(ex: Examples, want, row_label) -> tuple[list, list, list]:
    """(images, captions, row labels) of an examples grid: per pair, both views of each seed's image, captioned
    with what the classifier reads and whether it is want(a, b)[view]."""
    rows, caps, labels = [], [], []
    for a, b in ex.pairs:
        ids = ex.ids(a, b)
        rows.append([v[i] for i in ids for v in ex.views])
        caps.append([f"reads {int(r[i])} {_mark(int(r[i]) == w)}" for i in ids for r, w in zip(ex.reads, want(a, b))])
        labels.append(row_label(a, b))
    return rows, caps, labels


def anagram_page(a: PartA, m: Sweeps, ex: Examples) -> Page:
    k, steps, seeds = len(a.settings.illusion_seeds), a.example_steps, ex.seeds
    trivial = lambda p, q: "\ntrivial: 6 rotated = 9" if (p, q) in ed.ROTATION_TRIVIAL else ""
    rows, caps, labels = _example_rows(ex, lambda p, q: (p, q), lambda p, q: f"{p} upright,\n{q} rotated\n(sweep: "
                                       f"{_sweep_frac(m.A, [(p, q)], k)})" + trivial(p, q))
    cols = [c for s in seeds for c in (f"upright\nseed {s}", f"rotated 180\u00b0\nseed {s}")]
    png = image_grid(rows, a.fig_dir, "cs180_anagram", labels, cols, captions=caps, cell=0.8, label_w=1.55)
    nontriv = torch.tensor([(int(p), int(q)) not in ed.ROTATION_TRIVIAL for p, q in zip(ex.sweep.a, ex.sweep.b)])
    ok = (ex.reads[0] == ex.sweep.a) & (ex.reads[1] == ex.sweep.b)
    best = m.best_a
    return Page.of_text("CS180 A.8: visual anagrams", [Figure(
        png, "Rows of visual anagrams, each shown upright and rotated, captioned with what the classifier reads in "
             "each view.", "Figure. Visual anagrams: one digit upright, another upside down.")],
                        f"A.8 Visual anagrams, eps = (eps(x, a) + flip(eps(flip(x), b))) / 2 with flip = rotation by "
                        f"180 degrees (Geng et al. 2024). Rows: the {len(best)} best non-trivial pairs of the sweep "
                        f"(ties in its rate broken by the classifier's confidence; never a label with itself, never "
                        f"6/9 or 9/6, never a pair plain digits pass), and last the trivial 6/9 for comparison, each "
                        f"drawn again with {len(seeds)} fresh seeds ({', '.join(map(str, seeds))}, not the sweep's) "
                        f"and {steps} steps. Each image is shown upright and rotated by 180 degrees, with what the "
                        f"classifier reads ({TICK} = the label asked for in that view, {CROSS} = another); the row "
                        f"label gives the pair's success in the sweep.\n\n"
                        f"At 28x28 an anagram has few pixels to serve two digits: many that the classifier accepts are "
                        f"blotchy, and the success rates here measure the classifier's reading, not how convincing the "
                        f"illusion is to a person.",
                        answers=f"Visual anagram examples: the {len(best)} best non-trivial label pairs of the sweep "
                                f"({', '.join(f'{p}/{q}' for p, q in best)}), drawn again with {len(seeds)} fresh "
                                f"seeds, read as a upright and as b rotated 180 degrees in {_frac(ok[nontriv])} "
                                f"images, against {_sweep_frac(m.A, best, k)} in the sweep that picked them; the "
                                f"trivial 6/9 in {_frac(ok[~nontriv])}.")


def hybrid_page(a: PartA, m: Sweeps, ex: Examples) -> Page:
    k, steps, seeds, best = len(a.settings.illusion_seeds), a.example_steps, ex.seeds, m.best_h
    rows, caps, labels = _example_rows(ex, lambda p, q: (q, p), lambda p, q: f"low-pass {p},\nhigh-pass {q}\n(sweep: "
                                       f"{_sweep_frac(m.H, [(p, q)], k)})")
    cols = [c for s in seeds for c in (f"up close\nseed {s}", f"from afar\n(blur {ed.AFAR_SIGMA:g} px)")]
    png = image_grid(rows, a.fig_dir, "cs180_hybrid", labels, cols, captions=caps, cell=0.8, label_w=1.3)
    ok = (ex.reads[0] == ex.sweep.b) & (ex.reads[1] == ex.sweep.a)
    return Page.of_text("CS180 A.9: hybrid images", [Figure(
        png, "Rows of hybrid images, each shown as made and blurred (as from afar), captioned with what the "
             "classifier reads.", "Figure. Hybrid images: one digit up close, another from afar.")],
                        f"A.9 Hybrids, eps = lowpass(eps(x, a)) + highpass(eps(x, b)) (Factorized Diffusion, Geng et "
                        f"al. 2024; Gaussian low-pass, sigma {ed.HYBRID_SIGMA:g}, kernel {ed.HYBRID_KERNEL}). Rows: "
                        f"the {len(best)} best pairs of the sweep, each labelled with its low-pass digit a (to be seen "
                        f"from afar) and its high-pass digit b (to be seen up close), drawn again with fresh seeds "
                        f"({', '.join(map(str, seeds))}) and {steps} steps; each image up close and blurred with sigma "
                        f"{ed.AFAR_SIGMA:g} px ('from afar'), with what the classifier reads ({TICK} = the high-pass "
                        f"label up close / the low-pass label from afar, {CROSS} = another).",
                        answers=f"Hybrid image examples: the {len(best)} best low-pass / high-pass label pairs of the "
                                f"sweep ({', '.join(f'{p}/{q}' for p, q in best)}), drawn again with {len(seeds)} "
                                f"fresh seeds, read as the high-pass label up close and as the low-pass label from "
                                f"afar in {_frac(ok)} images, against {_sweep_frac(m.H, best, k)} in the sweep that "
                                f"picked them.")
