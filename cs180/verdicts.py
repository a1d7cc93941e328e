"""The words of a comparison, chosen by its test: a count with its error, a legible count against real digits
(Fisher's exact test), a count over training and two readings of the same seeds (McNemar's exact test). Every
comparison the CS180 pages print comes from here, so that a sentence never says more than its numbers."""
from __future__ import annotations

import math

import torch

from mnist.metrics import Legibility, fisher_p, paired_p


def count_text(k: int, n: int) -> str:
    """ "71 of 100 (71% +- 5% s.e.)": a count with its share's standard error; at 0 or n (s.e. 0) the exact 95% interval."""
    edge = 100 * 0.025 ** (1 / n)  # Clopper-Pearson: the bound where k = n (or 0) has probability 2.5%
    return (f"{k} of {n} ({k / n:.0%} +- {math.sqrt(k / n * (1 - k / n) / n):.0%} s.e.)" if 0 < k < n else
            f"{k} of {n} (95% interval {edge:.1f}-100%)" if k == n else f"{k} of {n} (95% interval 0-{100 - edge:.1f}%)")


def against_real(k: int, n: int, judge: Legibility) -> str:
    """A legible count of n samples against the real held-out digits' share (Fisher's exact test, 5 %)."""
    k_real = round(judge.real_pass * judge.n_real)
    p = fisher_p(k, n, k_real, judge.n_real)
    if p >= 0.05:
        return f"not distinguishable from the real digits' {judge.real_pass:.0%} (Fisher p = {p:.2g})"
    if k / n < judge.real_pass:
        return (f"below the real digits' {judge.real_pass:.0%} (Fisher p = {p:.2g}): {n - k} of {n} samples fail the "
                f"judge, where {1 - judge.real_pass:.0%} of real digits do")
    return f"above the real digits' {judge.real_pass:.0%} (Fisher p = {p:.2g})"


def trend(per_epoch: dict, what: str) -> str:
    """How a pass count (per_epoch: epoch -> bool (n,), the same seeds) moves from the first saved epoch to the
    last, by McNemar's exact test (5 %)."""
    first, last = min(per_epoch), max(per_epoch)
    a, b, n = int(per_epoch[first].sum()), int(per_epoch[last].sum()), len(per_epoch[last])
    p = paired_p(per_epoch[last], per_epoch[first])
    if p >= 0.05:
        return (f"{what} after epoch {last} ({b} of {n}) is not distinguishable from after epoch {first} ({a} of {n}; "
                f"McNemar p = {p:.2g})")
    return (f"{what} {'rises' if b > a else 'falls'} from {a} of {n} after epoch {first} to {b} of {n} after epoch "
            f"{last} (McNemar p = {p:.2g})")


def compared(pass_a: torch.Tensor, pass_b: torch.Tensor, a: str, b: str) -> str:
    """Two pass/fail readings of the same seeds, with a against with b, by McNemar's exact test (5 %)."""
    k_a, k_b, p = int(pass_a.sum()), int(pass_b.sum()), paired_p(pass_a, pass_b)
    verdict = "not distinguishable" if p >= 0.05 else f"{'more' if k_a > k_b else 'fewer'} with {a}"
    return f"{k_a} of {len(pass_a)} with {a} against {k_b} with {b}: {verdict} (McNemar p = {p:.2g})"
