"""Who reads CS180 part A's images, and the words a comparison of their numbers may use.

Each question gets a judge that fits it:

  * a clean 28x28 image (an edit, a sample): the metric classifier (mnist/reference/classifier.pt), trained on
    clean digits;
  * "legible as c" (the illusions' views): mnist.metrics' legibility judge passes it (the classifier reads it
    strongly, and it lies as near a real digit of that class, in features and in pixels, as real held-out
    digits do) AND the classifier gives c p >= STRICT_P, so the runner-up has at most 1 - STRICT_P;
  * a digit seen from afar (a hybrid shrunk to AFAR_PX x AFAR_PX): its KNN_K nearest real training digits
    shrunk to the same size (NeighbourReader) must mostly carry the label (KNN_VOTE) AND lie as near it as a
    typical real digit's own neighbours do (FAR_TYPICAL; a blob whose nearest digits are merely the least unlike
    it is not a digit seen from afar). The classifier reads small or blurred digits as 1s (most real test digits
    that are not 1s, shrunk to 8 px and scaled back up), so it is never asked about them; `controls` measures
    both readers on real test digits, the calibration printed beside every rate;
  * a noisy image: PSNR to its clean digit (techniques.psnr); no classifier.

A comparison of two methods on the same digits is `compare`: a tie when the two print the same or their
paired difference is within two standard errors (or under a floor); `order` and `best_words` rank with it.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from mnist.metrics import Legibility, legible, predict


STRICT_P = 0.9  # the classifier's probability of the label, in a strict reading
KNN_K = 10  # neighbours in the nearest-neighbour reader
KNN_VOTE = 0.8  # share of them that must carry the label (8 of 10)
AFAR_PX = 8  # "from afar": a 28 px digit shrunk to 8 x 8 (area average), as seen 3.5x farther away
# From afar, the neighbours carrying the label must be as near (mean centred cosine) as they are for three in
# four real held-out digits of their own label. The legibility judge's 1.5 % quantile let through 8 px views
# nobody reads as the digit (a hybrid "8" whose 8 px view lay nearer its 8s than only 8 % of real digits do).
FAR_TYPICAL = 0.25
TIE_SE = 2.0  # a paired difference within this many standard errors is a tie


def small_view(x: torch.Tensor, px: int = AFAR_PX) -> torch.Tensor:
    """x (N, 1, 28, 28) in [-1, 1] shrunk to (N, 1, px, px) by averaging areas (what a small print shows)."""
    return x if px == x.shape[-1] else F.interpolate(x, size=(px, px), mode="area")


class NeighbourReader:
    """Reads a digit by its KNN_K nearest real digits at px x px: centred cosine similarity of the pixels
    (brightness and contrast do not matter), each neighbour one vote for its label. `fit_typical` sets how near
    the neighbours must be (from real digits of known label) before `reads` accepts a view."""

    def __init__(self, bank_x: torch.Tensor, bank_y: torch.Tensor, px: int = 28, k: int = KNN_K):
        if len(bank_x) < k:
            raise ValueError(f"a nearest-neighbour reader needs at least k={k} digits, got {len(bank_x)}")
        self.px, self.k, self.labels = px, k, bank_y.long()
        self.bank = self.embed(bank_x)  # (M, px * px)
        self.nearness_min = None  # set by fit_typical

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        z = small_view(x.float(), self.px).flatten(1)
        return F.normalize(z - z.mean(1, keepdim=True), dim=1)

    def _neighbours(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(similarities (N, k), one-hot labels (N, k, 10)) of the k nearest bank digits of x (N, 1, 28, 28)."""
        top = (self.embed(x) @ self.bank.T).topk(self.k, dim=1)
        return top.values, F.one_hot(self.labels[top.indices], 10).float()

    def votes(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 10): the share of the k nearest digits of x (N, 1, 28, 28) with each label."""
        return self._neighbours(x)[1].mean(1)

    def nearness(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 10): the mean similarity of x's nearest digits that carry each label (0 where none does)."""
        sim, hot = self._neighbours(x)
        return (sim[..., None] * hot).sum(1) / hot.sum(1).clamp(min=1)

    def fit_typical(self, x: torch.Tensor, y: torch.Tensor, quantile: float = FAR_TYPICAL) -> "NeighbourReader":
        """How near a view's neighbours must be: the `quantile` of real digits x, y's nearness to their own label."""
        self.nearness_min = float(self.nearness(x)[torch.arange(len(x)), y.long()].quantile(quantile))
        return self

    def reads(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 10) bool: x read as each label (far_ok on its votes and nearness)."""
        if self.nearness_min is None:
            raise RuntimeError("NeighbourReader.reads needs fit_typical first")
        return far_ok(self.votes(x), self.nearness(x), self.nearness_min)


class Judge(NamedTuple):
    """The readers of part A: the metric classifier, mnist.metrics' legibility judge, and the AFAR_PX reader."""

    clf: torch.nn.Module
    legibility: Legibility
    far: NeighbourReader

    @torch.no_grad()
    def prob(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's class probabilities (N, 10) of clean images x (N, 1, 28, 28)."""
        return self.clf.head(predict(self.clf, x)[1]).softmax(1)

    def near(self, x: torch.Tensor, want: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(p(want) (N,), legible as want (N,) bool: the legibility judge passes x and reads want) at full size."""
        label, ok = legible(self.legibility, self.clf, x)
        return self.prob(x)[torch.arange(len(x)), want], ok & (label == want)

    def afar(self, x: torch.Tensor, want: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the share of x's AFAR_PX neighbours that carry `want` (N,), their mean similarity (N,))."""
        i = torch.arange(len(x))
        return self.far.votes(x)[i, want], self.far.nearness(x)[i, want]


def make_judge(clf: torch.nn.Module, legibility: Legibility, train_x: torch.Tensor, train_y: torch.Tensor,
               real_x: torch.Tensor, real_y: torch.Tensor) -> Judge:
    """The judges: the far reader's bank is train_x, train_y; its nearness bar is set on real digits real_x, real_y
    (held out from the bank)."""
    return Judge(clf, legibility, NeighbourReader(train_x, train_y, AFAR_PX).fit_typical(real_x, real_y))


# The success rules, on the numbers a search stores (parta_picks): every argument (N,) per image.
def strict(p: torch.Tensor, legible_: torch.Tensor) -> torch.Tensor:
    """A strict reading of a full-size view: legible as the label, and p(label) >= STRICT_P."""
    return legible_.bool() & (p >= STRICT_P)


def anagram_ok(p_up, legible_up, p_rot, legible_rot) -> torch.Tensor:
    """An anagram succeeds when its upright view reads strictly as a and its rotated view as b."""
    return strict(p_up, legible_up) & strict(p_rot, legible_rot)


def far_ok(vote: torch.Tensor, nearness: torch.Tensor, nearness_min: float) -> torch.Tensor:
    """A small view reads as a label when at least KNN_VOTE of its neighbours carry it and they lie at least
    nearness_min near (NeighbourReader.fit_typical)."""
    return (vote >= KNN_VOTE) & (nearness >= nearness_min)


def hybrid_ok(p_near, legible_near, vote_far, near_far, nearness_min: float) -> torch.Tensor:
    """A hybrid succeeds when it reads strictly as the high-pass label up close and its AFAR_PX view reads as the
    low-pass label (far_ok)."""
    return strict(p_near, legible_near) & far_ok(vote_far, near_far, nearness_min)


class Controls(NamedTuple):
    """The readers on n real test digits: how often each reads them right, and how often small views become 1s."""

    n: int
    strict: float  # read strictly as their own label at full size
    afar: float  # their AFAR_PX view reads as their label (NeighbourReader.reads)
    afar_one: float  # of those that are not 1s: the AFAR_PX view's neighbour vote is mostly 1
    clf_small_one: float  # ... and the classifier reads the view scaled back up to 28 px as 1 (why it is not asked)


def controls(judge: Judge, x: torch.Tensor, y: torch.Tensor) -> Controls:
    votes = judge.far.votes(x)
    up = F.interpolate(small_view(x), size=(28, 28), mode="bilinear", align_corners=False)
    not1 = y != 1
    return Controls(len(x), strict(*judge.near(x, y)).float().mean().item(),
                    judge.far.reads(x)[torch.arange(len(x)), y].float().mean().item(),
                    (votes.argmax(1)[not1] == 1).float().mean().item(),
                    (judge.prob(up).argmax(1)[not1] == 1).float().mean().item())


# ================================================================ words
def listed(items) -> str:
    """Items in an English list: 'a', 'a and b', 'a, b and c' ('' for none)."""
    xs = [str(x) for x in items]
    return "" if not xs else xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def compare(x: torch.Tensor, y: torch.Tensor, decimals: int, floor: float = 0.0) -> int:
    """+1 if x is higher than y, -1 if lower, 0 for a tie: per-item scores x, y (N,) of the same items.
    A tie when the means print the same at `decimals`, or the mean paired difference is within TIE_SE
    standard errors of it, or under `floor`."""
    d = (x.double() - y.double())
    mean = d.mean().item()
    se = d.std().item() / math.sqrt(len(d)) if len(d) > 1 else math.inf
    if round(x.double().mean().item(), decimals) == round(y.double().mean().item(), decimals):
        return 0
    if abs(mean) <= max(floor, TIE_SE * se):
        return 0
    return 1 if mean > 0 else -1


def order(scores: dict, decimals: int, floor: float = 0.0) -> list[list[str]]:
    """Names grouped best first, higher = better: each group holds the names that tie (compare) with its
    first, highest-scoring name. scores: {name: (N,) per-item scores on the same items}."""
    names = sorted(scores, key=lambda k: -scores[k].double().mean().item())
    groups: list[list[str]] = []
    for k in names:
        if groups and compare(scores[groups[-1][0]], scores[k], decimals, floor) == 0:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def best_words(groups: Sequence[Sequence[str]]) -> str:
    """'one-step', 'one-step and iterative tie', 'all tie' from order()'s groups."""
    if len(groups) == 1 and len(groups[0]) > 1:
        return "all tie"
    top = list(groups[0])
    return top[0] if len(top) == 1 else f"{' and '.join(top)} tie"


def versus_words(signs: Sequence[int], noun: str) -> str:
    """'higher at all 3 noise levels', or 'higher at 2 and tied at 1 of the 3 noise levels', from compare()'s
    signs over several settings."""
    n, nouns = len(signs), f"{noun}{'s' if len(signs) != 1 else ''}"
    counts = [(sum(s > 0 for s in signs), "higher"), (sum(s == 0 for s in signs), "tied"), (sum(s < 0 for s in signs), "lower")]
    for k, word in counts:
        if k == n:
            return f"{word} at {'all ' if n > 1 else 'the '}{n if n > 1 else ''}{' ' if n > 1 else ''}{nouns}"
    parts = [f"{word} at {k}" for k, word in counts if k]
    return f"{', '.join(parts[:-1])} and {parts[-1]} of the {n} {nouns}"
