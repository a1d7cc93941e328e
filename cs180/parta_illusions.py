"""CS180 part A's illusion pages, A.8 and A.9, measured, then typeset:

  A.8 / A.9 over all pairs   cs180_illusion_rates  success of all 90 anagram and hybrid label pairs (+ .csv, .npz)
  A.8 visual anagrams        cs180_anagram         the best non-trivial pairs, upright and rotated
  A.9 hybrids                cs180_hybrid          the best pairs, up close and from afar (a small image)

The rates and the examples come from the search stored in cs180/parta_picks.json (python -m cs180.parta_picks:
every ordered pair x several seeds) when it was made on the model the report reads; otherwise the report
searches itself with its own few seeds and says so. Every image shown is drawn again here from its seed and
read again by the same strict rule (cs180.parta_judges): a row is shown only if an image of it passes now.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from mnist.metrics import fisher_p, legible
from report.figures import save_numbers
from report.pages import Figure, Page
from utils import SamplerSettings, sample

from . import parta_judges as jd
from . import parta_picks as pk
from . import techniques as ed
from .figures import image_grid, rate_panels
from .parta_context import PartA

EXAMPLES = 5  # the most pairs shown per illusion
HANDOUT_EXAMPLES = 3  # the examples the handout shows per illusion
PER_ROW = 2  # at most 2 pairs with the same upright / low-pass label
BASELINE_SEEDS = 4  # plain samples per label for the illusions' baselines
TICK, CROSS = "\u2713", "\u2717"  # check and cross marks (DejaVu Sans has both)


def _frac(mask: torch.Tensor) -> str:
    return f"{int(mask.sum())}/{mask.numel()}"


# ============================================================ A.8 / A.9 sweep
class Kind(NamedTuple):
    """One illusion's search, read by its rule: the rows' table, which passed, the per-pair rate (10, 10)."""

    t: dict  # field -> (N,) tensor (parta_picks.table)
    first: torch.Tensor  # (N,) bool: the first view passes (anagram upright; hybrid up close)
    second: torch.Tensor  # (N,) bool: the second view passes (anagram rotated; hybrid from afar)
    ok: torch.Tensor  # (N,) bool: both
    score: torch.Tensor  # (N,) the weaker view's confidence
    rate: torch.Tensor  # (10, 10) share of a pair's seeds that pass, NaN diagonal


def read_kind(rows: list, anagram: bool, nearness_min: float = 0.0) -> Kind:
    """The rows read by their rule; a hybrid's far view by jd.far_ok with the search's nearness_min."""
    t = pk.table(rows, pk.ANAGRAM_FIELDS if anagram else pk.HYBRID_FIELDS)
    if anagram:
        first, second = jd.strict(t["p_up"], t["legible_up"]), jd.strict(t["p_rot"], t["legible_rot"])
        score = torch.minimum(t["p_up"], t["p_rot"])
    else:
        first, second = jd.strict(t["p_near"], t["legible_near"]), jd.far_ok(t["vote_far"], t["near_far"], nearness_min)
        score = torch.minimum(t["p_near"], t["vote_far"])
    ok = first & second
    return Kind(t, first, second, ok, score, ed.pair_matrix(ok.float(), t["a"], t["b"]))


class Sweeps(NamedTuple):
    """Both illusions over every ordered label pair a != b, against plain samples, and the readers' controls."""

    picks: dict  # the search: parta_picks.json, or one made now
    stored: bool  # True: read from parta_picks.json, made on this model file
    ana: Kind  # upright a, rotated b
    hyb: Kind  # low-pass a, high-pass b, at picks["hybrid"]["sigma"]
    pilot: dict  # sigma -> (successes, images, read from afar) of the hybrids' pilot
    base: ed.Baselines  # plain samples read the illusions' ways, per pair
    easy_a: list  # pairs (besides 6/9, 9/6) that plain digits pass as anagrams in NEAR_TRIVIAL or more
    easy_h: list  # pairs that plain digits pass as hybrids
    best_a: list  # the anagram pairs shown: (a, b, [seeds])
    best_h: list
    ctrl: jd.Controls  # the readers on real test digits


@torch.no_grad()
def plain_baselines(a: PartA, how: pk.SearchSettings) -> ed.Baselines:
    """Plain samples of each label (BASELINE_SEEDS each, seeded pair_seed(seed, c, c), drawn as the search draws)
    read the illusions' ways: anagram[c, b] = plain c read strictly as c upright and b rotated; hybrid[a, c] =
    plain c read strictly as c up close and as a from afar."""
    labels = torch.arange(10).repeat(BASELINE_SEEDS)
    gens = [torch.Generator().manual_seed(ed.pair_seed(s, c, c)) for s in range(BASELINE_SEEDS) for c in range(10)]
    x = sample(a.model, a.schedule, len(labels), labels, SamplerSettings(eta=how.eta, w=how.w, timesteps=tuple(
        ed.strided_timesteps(a.schedule.T, how.steps))), gens, shape=ed.IMAGE)
    up, rot = strict_all(a.judge, x), strict_all(a.judge, ed.flip(x))  # (N, 10)
    far = a.judge.far.reads(x)  # (N, 10)
    ana, hyb = torch.full((10, 10), float("nan")), torch.full((10, 10), float("nan"))
    for p in range(10):
        for q in range(10):
            if p != q:
                ana[p, q] = (up[:, p] & rot[:, q])[labels == p].float().mean()
                hyb[p, q] = (up[:, q] & far[:, p])[labels == q].float().mean()
    return ed.Baselines(ana, hyb)


def strict_all(judge: jd.Judge, x: torch.Tensor) -> torch.Tensor:
    """(N, 10) bool: x read strictly as each label (parta_judges.strict), the judges run once."""
    label, ok = legible(judge.legibility, judge.clf, x)
    is_c = torch.nn.functional.one_hot(label, 10).bool() & ok[:, None]
    return jd.strict(judge.prob(x), is_c)


def repeatable(k: Kind) -> int:
    """Passes a pair needs to be shown: at least half the seeds it was searched with (2 of 3, 6 of 12): the
    illusion works at least as often as not. One success in 3 is a lucky draw, not a pair the method handles
    (and by eye those rows were the illegible ones)."""
    return (_seed_count(k) + 1) // 2


def _seed_count(k: Kind) -> int:
    """How many seeds the search drew each pair with."""
    return len(set(k.t["seed"].tolist())) if len(k.ok) else 1


def pick_pairs(k: Kind, exclude, seeds_each: int, min_passes: int = 1) -> list[tuple[int, int, list]]:
    """The pairs to show: those with at least `min_passes` passing images, most passes first (then the best
    weaker-view confidence, then the smaller pair), leaving out `exclude`, at most PER_ROW per first label,
    EXAMPLES in all; each with its `seeds_each` best passing seeds."""
    by_pair: dict = {}
    for i in k.ok.nonzero().flatten().tolist():
        by_pair.setdefault((int(k.t["a"][i]), int(k.t["b"][i])), []).append(i)
    ranked = sorted((p for p in by_pair if p not in set(map(tuple, exclude)) and len(by_pair[p]) >= min_passes),
                    key=lambda p: (-len(by_pair[p]), -max(float(k.score[i]) for i in by_pair[p]), p))
    out, per = [], [0] * 10
    for p in ranked:
        if len(out) < EXAMPLES and per[p[0]] < PER_ROW:
            ids = sorted(by_pair[p], key=lambda i: -float(k.score[i]))[:seeds_each]
            out.append((p[0], p[1], [int(k.t["seed"][i]) for i in ids]))
            per[p[0]] += 1
    return out


def pick_examples(k: Kind, exclude, seeds_each: int) -> list[tuple[int, int, list]]:
    """The pairs that pass for at least half their seeds (repeatable), even if fewer than the handout shows: a
    pair that works less often than not gave rows nobody could read. Only where no pair is that repeatable are
    the pairs that pass most often shown (pick_pairs' order and caps), and the page says they are lucky draws."""
    return pick_pairs(k, exclude, seeds_each, repeatable(k)) or pick_pairs(k, exclude, seeds_each, 1)


def passes(k: Kind, p: int, q: int) -> int:
    """How many of its seeds pair (p, q) passes for."""
    return round(float(k.rate[p, q]) * _seed_count(k))


def split_picked(k: Kind, picked: list) -> tuple[list, list]:
    """(the picked pairs passing for at least half their seeds, the most frequent ones shown where none does)."""
    return ([c for c in picked if passes(k, *c[:2]) >= repeatable(k)],
            [c for c in picked if passes(k, *c[:2]) < repeatable(k)])


def easy_anagrams(baseline: torch.Tensor) -> list[tuple[int, int]]:
    """The anagram pairs plain digits pass (techniques.trivial_pairs, 6/9 aside) and their reverses: b/a is a/b
    turned over, so plain 7s read as 7 and, rotated, 6 make 6/7 no illusion either."""
    easy = [p for p in ed.trivial_pairs(baseline) if p not in ed.ROTATION_TRIVIAL]
    return sorted(set(easy) | {(q, p) for p, q in easy})


def search_settings(picks: dict) -> pk.SearchSettings:
    s = picks["settings"]
    return pk.SearchSettings(tuple(s["seeds"]), s["steps"], s["w"], s["eta"], tuple(s["sigmas"]),
                             tuple(s["pilot_seeds"]))


def measure_sweeps(a: PartA) -> Sweeps:
    """The stored search if it fits this model, else a small one now; read by the rules; the baselines and
    controls measured now."""
    s = a.settings
    picks = pk.stored_for(a.checkpoint)
    stored = picks is not None
    if not stored:
        how = pk.SearchSettings(seeds=tuple(s.illusion_seeds), steps=s.illusion_steps, w=s.w, eta=s.eta,
                                sigmas=(ed.HYBRID_SIGMA,), pilot_seeds=())
        picks = pk.search(a.model, a.schedule, a.judge, how, log=lambda *_: None)
    how = search_settings(picks)
    nmin = picks["settings"]["far_nearness_min"]
    ana, hyb = read_kind(picks["anagram"]["rows"], True), read_kind(picks["hybrid"]["rows"], False, nmin)
    pilot = {}
    for sigma, got in picks["hybrid"].get("pilot", {}).items():
        k = read_kind(got["rows"], False, nmin)
        pilot[float(sigma)] = (int(k.ok.sum()), len(k.ok), int(k.second.sum()))
    base = plain_baselines(a, how)
    easy_a = easy_anagrams(base.anagram)
    easy_h = ed.trivial_pairs(base.hybrid)
    best_a = pick_examples(ana, list(ed.ROTATION_TRIVIAL) + easy_a, s.example_seeds)
    best_h = pick_examples(hyb, easy_h, s.example_seeds)
    return Sweeps(picks, stored, ana, hyb, pilot, base, easy_a, easy_h, best_a, best_h, a.controls)


def _source(m: Sweeps) -> str:
    """Where the rates come from, in a sentence."""
    if m.stored:
        took = (f"{m.picks['cpu_seconds'] / 60:.0f} min of CPU on one thread" if "cpu_seconds" in m.picks else
                f"{m.picks['seconds'] / 60:.0f} min wall-clock on one thread of a shared machine")
        return (f"Searched once by {m.picks['command']} ({took}; stored "
                f"in cs180/parta_picks.json, made on this model file, sha256 {m.picks['model_sha256'][:12]})")
    return ("cs180/parta_picks.json was not made on this model file, so the report searched itself, with its own "
            "few seeds (python -m cs180.parta_picks searches more)")


def _never(k: Kind, skip=()) -> tuple[int, int]:
    """(pairs with no passing image, pairs searched), leaving out `skip`."""
    cells = [(p, q) for p in range(10) for q in range(10)
             if p != q and (p, q) not in skip and not torch.isnan(k.rate[p, q])]
    return sum(float(k.rate[c]) == 0 for c in cells), len(cells)


def _repeated(k: Kind, skip=()) -> int:
    """Pairs (leaving out `skip`) that pass for at least half their seeds (repeatable): the ones examples may come from."""
    passes = {}
    for i in k.ok.nonzero().flatten().tolist():
        p = (int(k.t["a"][i]), int(k.t["b"][i]))
        passes[p] = passes.get(p, 0) + 1
    return sum(n >= repeatable(k) for p, n in passes.items() if p not in set(map(tuple, skip)))


def _kept(a: torch.Tensor, b: torch.Tensor, skip) -> torch.Tensor:
    """(N,) bool: the images whose pair (a[i], b[i]) is not in `skip`."""
    skip = set(map(tuple, skip))
    return torch.tensor([(int(p), int(q)) not in skip for p, q in zip(a, b)], dtype=torch.bool)


def _view_rates(k: Kind, keep: torch.Tensor) -> tuple[str, str, str]:
    return _frac(k.ok[keep]), _frac(k.first[keep]), _frac(k.second[keep])


def trivial_passes(k: Kind) -> str:
    """'24/24': the anagrams of the rotation-trivial pairs (6/9, 9/6) that pass, and no other pair's."""
    return _frac(k.ok[~_kept(k.t["a"], k.t["b"], ed.ROTATION_TRIVIAL)])


def _anagram_text(m: Sweeps) -> str:
    k, rot, S = m.ana, ed.ROTATION_TRIVIAL, len(m.picks["settings"]["seeds"])
    skip = list(rot) + list(m.easy_a)  # neither trivial nor passed by plain digits: the pairs an illusion must make
    keep = _kept(k.t["a"], k.t["b"], skip)
    both, up, down = _view_rates(k, keep)
    never, cells = _never(k, skip)
    easy = ", ".join(f"{p}/{q} ({float(m.base.anagram[p, q]):.0%})" for p, q in m.easy_a
                     if float(m.base.anagram[p, q]) >= ed.NEAR_TRIVIAL)
    return (f"Anagram success = the upright image reads strictly as a AND its 180-degree rotation strictly as b. "
            f"A strict reading: mnist.metrics' legibility judge passes the view as that digit (read strongly, and as "
            f"near a real digit of that class as real held-out digits are) and the classifier gives it p >= "
            f"{jd.STRICT_P:g}, so the runner-up has at most {1 - jd.STRICT_P:.1f}. Real test digits pass it in "
            f"{m.ctrl.strict:.0%} of {m.ctrl.n}. Over the {cells} pairs neither trivial nor hatched x {S} seeds: {both} "
            f"images succeed (upright alone {up}, rotated alone {down}); {cells - never} pairs succeed at least once "
            f"({_repeated(k, skip)} of them for {repeatable(k)} or more of their {S} seeds) and {never} never do. Plain samples of a ({BASELINE_SEEDS} per label, no anagram) read the same way pass "
            f"in {_mean_off(m.base.anagram, skip):.0%} per pair on average over those pairs. 6/9 and 9/6 (red hatching) are trivial: "
            f"a 6 rotated is a 9 (plain 6s pass as 6/9 in {float(m.base.anagram[6, 9]):.0%}); as anagrams they pass "
            f"{trivial_passes(k)}. " + (f"Plain digits also pass as {easy}; those pairs and their reverses (b/a, "
                                         "the same figure turned over) are hatched orange and not shown as examples."
                                         if easy else
                                         f"No other pair passes with plain digits in {ed.NEAR_TRIVIAL:.0%} or more."))


def _pilot_text(m: Sweeps) -> str:
    if not m.pilot:
        return ""
    runs = next(iter(m.pilot.values()))[1]
    each = ", ".join(f"sigma {s:g}: {ok}/{n} succeed, {far}/{n} read from afar" for s, (ok, n, far) in m.pilot.items())
    return (f" The low-pass sigma was chosen by a pilot over all {runs} pairs with one seed each ({each}): the most "
            f"successes, a tie going to the most read from afar; CS180's sigma 2 at 64 px is sigma "
            f"{2 * 28 / 64:.2f} at 28 px.")


def _hybrid_text(m: Sweeps) -> str:
    k, S, c = m.hyb, len(m.picks["settings"]["seeds"]), m.ctrl
    both, near, far = _view_rates(k, _kept(k.t["a"], k.t["b"], m.easy_h))
    never, cells = _never(k, m.easy_h)
    sigma = m.picks["hybrid"]["sigma"]
    easy = ", ".join(f"{p}/{q} ({float(m.base.hybrid[p, q]):.0%})" for p, q in m.easy_h)
    return (f"Hybrid success = the image reads strictly as the high-pass label b up close AND, shrunk to "
            f"{jd.AFAR_PX}x{jd.AFAR_PX} px ('from afar'), at least {jd.KNN_VOTE:.0%} of its {jd.KNN_K} nearest real "
            f"training digits shrunk the same way are a's and they lie as near it as a typical real digit's own "
            f"neighbours do (mean centred cosine at least {m.picks['settings']['far_nearness_min']:.3f}, reached by "
            f"{1 - jd.FAR_TYPICAL:.0%} of the real held-out digits: a blob whose nearest digits are merely the least "
            f"unlike it is not a digit seen from afar). The classifier is not asked about the small view: it reads "
            f"{c.clf_small_one:.0%} of the real test digits that are not 1s as 1 once shrunk to {jd.AFAR_PX} px and "
            f"scaled back; the far reader reads {c.afar:.0%} of the {c.n} real test digits as their own digit at "
            f"{jd.AFAR_PX} px, and the neighbour vote {c.afar_one:.0%} of the non-1s as 1. Low-pass filter: Gaussian sigma {sigma:g} px, "
            f"kernel {ed.hybrid_kernel(sigma)}.{_pilot_text(m)} Over the {cells} pairs x {S} seeds: {both} images "
            f"succeed (up close alone {near}, from afar alone {far}); {cells - never} pairs succeed at least once "
            f"({_repeated(k, m.easy_h)} of them for {repeatable(k)} or more of their {S} seeds) and {never} never do. Plain samples of b read the same way pass in {_mean_off(m.base.hybrid, m.easy_h):.0%} per pair "
            f"on average. " + (f"Plain digits pass as {easy} (orange hatching); those pairs are not shown as examples."
                               if easy else f"No pair passes with plain digits in {ed.NEAR_TRIVIAL:.0%} or more."))


def _measured(mat: torch.Tensor, skip=()) -> torch.Tensor:
    """(10, 10) bool: the measured (non-NaN) cells of mat, leaving out the pairs in skip."""
    keep = ~torch.isnan(mat)
    for p, q in skip:
        keep[p, q] = False
    return keep


def _mean_off(mat: torch.Tensor, skip=()) -> float:
    """Mean of the measured cells of mat, leaving out the pairs in skip."""
    return float(mat[_measured(mat, skip)].mean())


def against_plain(ok: torch.Tensor, plain: torch.Tensor, skip=()) -> str:
    """The illusions that succeed (ok: (N,) bool) against plain samples read the same way (plain: the per-pair
    rates of BASELINE_SEEDS samples, leaving out `skip`), as counts and a verdict by Fisher's exact test (5 %)."""
    keep = _measured(plain, skip)
    k, n = int(ok.sum()), ok.numel()
    kb, nb = round(float(plain[keep].sum()) * BASELINE_SEEDS), int(keep.sum()) * BASELINE_SEEDS
    p = fisher_p(k, n, kb, nb)
    said = (f"{kb} of {nb} readings: {BASELINE_SEEDS} plain samples of each label, each read as every such pair it could "
            f"make, and a strict reading names one digit, so a sample passes one pair at most; Fisher p = {p:.2g}")
    if p >= 0.05:
        return f"they do not work on this model: {k} of {n} images succeed, not distinguishable from plain samples ({said})"
    return f"{k} of {n} images succeed ({k / n:.1%}), {'more' if k / n > kb / nb else 'less'} often than plain samples ({said})"


def rates_page(a: PartA, m: Sweeps) -> Page:
    """The success of every pair as two heat maps (and their .csv / .npz), and what they say."""
    S, how = len(m.picks["settings"]["seeds"]), search_settings(m.picks)
    png = rate_panels([m.ana.rate, m.hyb.rate], ["A.8 anagrams: upright a, rotated b",
                                                 "A.9 hybrids: low-pass a, high-pass b"],
                      ["upright label a", "low-pass label a (read from afar)"],
                      ["label b (read rotated 180\u00b0)", "high-pass label b (read up close)"], a.fig_dir,
                      "cs180_illusion_rates", [[(ed.ROTATION_TRIVIAL, 0), (m.easy_a, 1)], [(m.easy_h, 1)]],
                      ["6/9, 9/6: trivial (a rotated 6 is a 9)",
                       f"plain digits pass too (baseline \u2265 {ed.NEAR_TRIVIAL:.0%})"], S)
    save_numbers(a.fig_dir, "cs180_illusion_rates",
                 [dict(a=p, b=q, anagram=float(m.ana.rate[p, q]), hybrid=float(m.hyb.rate[p, q]))
                  for p, q in zip(*map(torch.Tensor.tolist, ed.label_pairs(10)))],
                 anagram=m.ana.rate.numpy(), hybrid=m.hyb.rate.numpy())
    skip_a = list(ed.ROTATION_TRIVIAL) + list(m.easy_a)
    keep, n_a, n_h = _kept(m.ana.t["a"], m.ana.t["b"], skip_a), _never(m.ana, skip_a)[1], _never(m.hyb, m.easy_h)[1]
    return Page.of_text("CS180 A.8-A.9: anagrams and hybrids over all label pairs", [Figure(
        png, "Two 10 by 10 heat maps of success rates over label pairs, anagrams left and hybrids right, each cell "
             "annotated; the diagonal is grey (not run); hatched cells mark the trivial 6/9 pairs and the pairs plain "
             "digits pass too.",
        "Figure. Success rate of every label pair: anagrams (left) and hybrids (right).")],
                        f"A.8-A.9 Every ordered label pair a != b (90 pairs) x {S} seed{'s' if S > 1 else ''}, "
                        f"{how.steps} strided steps with the handout's noise (eta = {how.eta:g}), w = {how.w:g}; each "
                        f"cell is the share of a pair's seeds that succeed. {_source(m)}.\n\n{_anagram_text(m)}\n\n"
                        f"{_hybrid_text(m)}",
                        answers=f"Visual anagrams: {against_plain(m.ana.ok[keep], m.base.anagram, skip_a)}. Counted: the "
                                f"images of the {n_a} label pairs that are neither trivial (6/9) nor passed by plain digits "
                                f"(hatched), {S} seed{'s' if S > 1 else ''} each; success is a strict reading as a upright "
                                f"and as b rotated.\n\n"
                                f"Hybrids: {against_plain(m.hyb.ok[_kept(m.hyb.t['a'], m.hyb.t['b'], m.easy_h)], m.base.hybrid, m.easy_h)}. "
                                f"Counted: the images of the {n_h} pairs not passed by plain digits; success is a strict "
                                f"reading as the high-pass label up close and as the low-pass label from afar ({jd.AFAR_PX} px).")


# ============================================================ A.8 / A.9 examples
class Examples(NamedTuple):
    """The picked images drawn again from their seeds and read again: per image its pair, seed, views, pass."""

    a: torch.Tensor  # (N,)
    b: torch.Tensor
    seed: torch.Tensor
    x: torch.Tensor  # (N, 1, 28, 28)
    views: tuple  # anagram: upright, rotated; hybrid: up close (N, 1, 28, 28), from afar (N, 1, px, px) twice (the
    #               second drawn enlarged)
    reads: tuple  # what each view reads as: the classifier's label; from afar, the neighbours' majority; None: no caption
    ok: torch.Tensor  # (N,) bool: passes the rule now


def _redraw(a: PartA, how: pk.SearchSettings, picked: list, anagram: bool, sigma: float):
    pa = torch.tensor([p for p, _, seeds in picked for _ in seeds], dtype=torch.long)
    pb = torch.tensor([q for _, q, seeds in picked for _ in seeds], dtype=torch.long)
    seeds = torch.tensor([s for _, _, ss in picked for s in ss], dtype=torch.long)
    gens = [torch.Generator().manual_seed(ed.pair_seed(int(s), int(p), int(q))) for s, p, q in zip(seeds, pa, pb)]
    if not len(pa):
        return pa, pb, seeds, torch.zeros(0, 1, 28, 28)
    if anagram:
        x = ed.visual_anagram(a.model, a.schedule, pa, pb, len(pa), how.w, how.steps, how.eta, gens).up
    else:
        x = ed.hybrid(a.model, a.schedule, pa, pb, ed.hybrid_kernel(sigma), sigma, len(pa), how.w, how.steps, how.eta, gens)
    return pa, pb, seeds, x


def measure_examples(a: PartA, m: Sweeps) -> tuple[Examples, Examples]:
    """(anagrams, hybrids): the picked images drawn again and read again; the anagrams end with the trivial 6/9."""
    how, sigma = search_settings(m.picks), float(m.picks["hybrid"]["sigma"])
    trivial = pick_pairs(m.ana._replace(ok=m.ana.ok & (m.ana.t["a"] == 6) & (m.ana.t["b"] == 9)), [], 1)
    out = []
    for picked, anagram in ((m.best_a + trivial, True), (m.best_h, False)):
        pa, pb, seeds, x = _redraw(a, how, picked, anagram, sigma)
        if not len(x):  # nothing passed in the search: nothing to draw
            none = torch.zeros(0, dtype=torch.long)
            out.append(Examples(pa, pb, seeds, x, (x, x), (none, none), torch.zeros(0, dtype=torch.bool)))
            continue
        if anagram:
            views = (x, ed.flip(x))
            (p1, l1), (p2, l2) = a.judge.near(x, pa), a.judge.near(views[1], pb)
            ok = jd.anagram_ok(p1, l1, p2, l2)
            reads = (a.read(x), a.read(views[1]))
        else:
            small = stretched(jd.small_view(x))
            views = (x, small, small)  # up close; from afar at its size; the same 8 px enlarged
            (p1, l1), (vote, near) = a.judge.near(x, pb), a.judge.afar(x, pa)
            ok = jd.hybrid_ok(p1, l1, vote, near, a.judge.far.nearness_min)
            reads = (a.read(x), a.judge.far.votes(x).argmax(1), None)
        out.append(Examples(pa, pb, seeds, x, views, reads, ok))
    return out[0], out[1]


def stretched(x: torch.Tensor) -> torch.Tensor:
    """Each image (N, 1, H, W) stretched to the full range [-1, 1] (a small view is dim: thin strokes average out;
    the eye adapts, and the neighbour reader's centred cosine does not see contrast)."""
    lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp(min=1e-6) * 2 - 1


def _rows(ex: Examples, want, row_label) -> tuple[list, list, list]:
    """(images, captions, row labels) of the images that pass now, two views each, one row per pair."""
    rows, caps, labels = [], [], []
    pairs = list(dict.fromkeys(zip(ex.a.tolist(), ex.b.tolist())))
    for p, q in pairs:
        ids = [i for i in range(len(ex.a)) if (int(ex.a[i]), int(ex.b[i])) == (p, q) and bool(ex.ok[i])]
        if ids:
            rows.append([v[i] for i in ids for v in ex.views])
            caps.append([None if r is None else f"reads {int(r[i])} {TICK if int(r[i]) == w else CROSS}" for i in ids
                         for r, w in zip(ex.reads, want(p, q))])
            labels.append(row_label(p, q))
    return rows, caps, labels


def _shown_words(ex: Examples, k: Kind, picked: list, kind: str) -> str:
    """How many picked images pass again now, and whether fewer pairs than the handout shows meet the rule."""
    n = len(split_picked(k, picked)[0])
    return (f"{_frac(ex.ok)} of the picked images pass again when drawn now from their seeds"
            + (f"; only {n} {kind} pair{'s meet' if n != 1 else ' meets'} the rule, fewer than the handout's "
               f"{HANDOUT_EXAMPLES}, and no pair that succeeds less often than not is shown" if 0 < n < HANDOUT_EXAMPLES
               else ""))


def _names(picked: list) -> str:
    return ", ".join(f"{p}/{q}" for p, q, _ in picked) or "none"


def _rule_words(k: Kind, S: int, picked: list) -> str:
    """Which pairs are shown: those passing for at least half their seeds, then (pick_examples) the fill."""
    robust, fill = split_picked(k, picked)
    words = (f"the pairs that succeed for {repeatable(k)} or more of their {S} seeds (a pair that works less often "
             f"than not is not one the method handles), most successes first")
    if not fill:
        return words
    return (f"{words}: none does, so the rows are {_most_often(k, fill, S)}, lucky draws that show the method's best "
            f"attempts, not pairs it handles")


def _most_often(k: Kind, fill: list, S: int) -> str:
    """'the 4 pairs that succeed most often (1/9, 9/8, 6/4, 9/4: 1 of 12 each)', or '... at best' when they differ."""
    n = sorted({passes(k, p, q) for p, q, _ in fill})
    return (f"the {len(fill)} pair{'s' if len(fill) != 1 else ''} that succeed most often ({_names(fill)}: "
            + (f"{n[0]} of {S} each)" if len(n) == 1 else f"{n[-1]} of {S} at best)"))


def _which(k: Kind, S: int, picked: list, pairs: str) -> str:
    """The answer's words for the pairs shown (as _rule_words)."""
    robust, fill = split_picked(k, picked)
    if not fill:
        return f"{pairs} that succeed for {repeatable(k)} or more of {S} seeds ({_names(robust)})"
    return f"none of {pairs} succeeds for {repeatable(k)} or more of {S} seeds; shown are {_most_often(k, fill, S)}, lucky draws"


def anagram_page(a: PartA, m: Sweeps, ex: Examples) -> Page:
    S = len(m.picks["settings"]["seeds"])
    triv = lambda p, q: "\ntrivial: 6 rotated = 9" if (p, q) in ed.ROTATION_TRIVIAL else ""
    rows, caps, labels = _rows(ex, lambda p, q: (p, q), lambda p, q: f"{p} upright,\n{q} rotated\n(search: "
                               f"{round(float(m.ana.rate[p, q]) * S)}/{S};\nplain {p}s: "
                               f"{round(float(m.base.anagram[p, q]) * BASELINE_SEEDS)}/{BASELINE_SEEDS})" + triv(p, q))
    cols = [c for _ in range(max((len(r) for r in rows), default=2) // 2) for c in ("upright", "rotated 180\u00b0")]
    png = image_grid(rows or [[None]], a.fig_dir, "cs180_anagram", labels or [""], cols, captions=caps or [[None]],
                     cell=0.8, label_w=1.55)
    nontriv = _kept(ex.a, ex.b, ed.ROTATION_TRIVIAL)
    return Page.of_text("CS180 A.8: visual anagrams", [Figure(
        png, "Rows of visual anagrams, each shown upright and rotated, captioned with what the classifier reads in "
             "each view.", "Figure. Visual anagrams: one digit upright, another upside down.")],
                        f"A.8 Visual anagrams, eps = (eps(x, a) + flip(eps(flip(x), b))) / 2 with flip = rotation by "
                        f"180 degrees (Geng et al. 2024). Rows: of the non-trivial pairs, {_rule_words(m.ana, S, m.best_a)} "
                        f"(never a label with itself, 6/9, 9/6 or a pair plain digits pass; at most {PER_ROW} per "
                        f"upright label), each with its best passing seeds, and last the trivial 6/9 for comparison. "
                        f"The images are the search's, chosen because they pass: they show the best it found, not a "
                        f"typical draw (the row label gives the pair's successes over its {S} seeds). They are drawn "
                        f"again here and read again: {_shown_words(ex, m.ana, m.best_a, 'anagram')}; only images that pass "
                        f"now are shown, with what the classifier reads ({TICK} = the label asked for in that view).",
                        answers=f"Visual anagram examples: {_which(m.ana, S, m.best_a, 'the non-trivial pairs')}"
                                f"; their picked images, drawn again, read strictly as a upright and as b "
                                f"rotated in {_frac(ex.ok[nontriv])}, and the trivial 6/9 in {_frac(ex.ok[~nontriv])}.")


def hybrid_page(a: PartA, m: Sweeps, ex: Examples) -> Page:
    S, sigma, px = len(m.picks["settings"]["seeds"]), m.picks["hybrid"]["sigma"], jd.AFAR_PX
    rows, caps, labels = _rows(ex, lambda p, q: (q, p, None), lambda p, q: f"low-pass {p},\nhigh-pass {q}\n(search: "
                               f"{round(float(m.hyb.rate[p, q]) * S)}/{S};\nplain {q}s: "
                               f"{round(float(m.base.hybrid[p, q]) * BASELINE_SEEDS)}/{BASELINE_SEEDS})")
    pairs = max((len(r) for r in rows), default=3) // 3
    cols = [c for _ in range(pairs) for c in ("up close", f"from afar\n({px}x{px} px)", f"the {px} px\nenlarged")]
    png = image_grid(rows or [[None]], a.fig_dir, "cs180_hybrid", labels or [""], cols, captions=caps or [[None]],
                     cell=0.8, label_w=1.3, scales=[1.0, px / 28, 1.0] * pairs)
    return Page.of_text("CS180 A.9: hybrid images", [Figure(
        png, f"Rows of hybrid images, each shown at full size, as a small {px} by {px} pixel image (as from afar) and "
             "that small image enlarged, captioned with what each view reads as.", "Figure. Hybrid images: one digit up close, another from afar.")],
                        f"A.9 Hybrids, eps = lowpass(eps(x, a)) + highpass(eps(x, b)) (Factorized Diffusion, Geng et "
                        f"al. 2024; Gaussian low-pass, sigma {sigma:g} px). Rows: {_rule_words(m.hyb, S, m.best_h)} (low-pass "
                        f"digit a, to be seen from afar; high-pass digit b, up close; never a pair "
                        f"plain digits pass; at most {PER_ROW} per low-pass label), each with its best passing seeds. "
                        f"'From afar' is the image shrunk to {px}x{px} px (area average), printed at that size (the same "
                        f"pixel size as the full image) with its contrast stretched to the full range (look at it from "
                        f"arm's length), and the same {px} px enlarged. Up close the caption is the classifier's "
                        f"reading; from afar, the majority of its {jd.KNN_K} nearest real digits at {px} px. The images "
                        f"are the search's best, chosen because they pass, not typical draws; drawn again here: "
                        f"{_shown_words(ex, m.hyb, m.best_h, 'hybrid')}, and only images that pass now are shown.",
                        answers=f"Hybrid image examples: {_which(m.hyb, S, m.best_h, 'the low-pass / high-pass pairs')}"
                                f"; their picked images, drawn again, read strictly as the high-pass "
                                f"label up close and as the low-pass label from afar ({px} px) in {_frac(ex.ok)}.")
