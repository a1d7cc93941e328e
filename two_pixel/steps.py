"""Sample quality against network evaluations on two pixels: the one study behind benchmarks/samplers.py's
two-pixel table and the flow-matching report's energy-against-evaluations figure.

A curve is one predictor (a network or gmm.py's exact one) through one family of samplers, `settings_of(nfe)`
giving the SamplerSettings that spend `nfe` network evaluations per sample. Each point is the energy distance
of n samples to n fresh draws of the mixture (the same reference draws for every curve and seed), per seed.

    curve = energy_by_nfe(pred, schedule, lambda k: SamplerSettings(steps=k), (5, 10, 20), seeds=range(5))
"""
from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, Sequence

import torch

from gmm import GMM, energy_distance
from utils import SamplerSettings, Schedule, sample

REFERENCE_SEED = 10_000  # the mixture draws every curve is scored against
FRESH_SEED = 20_000  # fresh draws scored against the same reference: the floor of every distance


class Curve(NamedTuple):
    """Energy distance per evaluation count and seed."""

    nfes: tuple  # network evaluations per sample, increasing
    energy: tuple  # per nfe, a tuple with one energy distance per seed

    def mean(self, i: int) -> float:
        return sum(self.energy[i]) / len(self.energy[i])

    def spread(self, i: int) -> tuple:
        return min(self.energy[i]), max(self.energy[i])


def reference(n: int = 5000) -> torch.Tensor:
    """The n mixture draws every curve is scored against."""
    return GMM().sample(n, torch.Generator().manual_seed(REFERENCE_SEED))[0]


def floor(n: int = 5000, seeds: Iterable[int] = range(5)) -> list:
    """Energy distance of n fresh draws of the mixture to the reference, per seed: what no sampler can beat."""
    ref = reference(n)
    return [energy_distance(GMM().sample(n, torch.Generator().manual_seed(FRESH_SEED + s))[0], ref) for s in seeds]


def energy_by_nfe(pred, schedule: Schedule, settings_of: Callable[[int], SamplerSettings], nfes: Sequence[int],
                  seeds: Iterable[int] = range(5), n: int = 5000, device="cpu") -> Curve:
    """The energy distance of n unconditional samples of `pred` at each evaluation count, per seed (sample seed s
    from torch.Generator().manual_seed(s)). `pred` may be a list, one predictor per seed (models trained with
    those seeds)."""
    ref, seeds = reference(n), list(seeds)
    preds = pred if isinstance(pred, (list, tuple)) else [pred] * len(seeds)
    energy = []
    for k in nfes:
        energy.append(tuple(energy_distance(sample(p, schedule, n, None, settings_of(k), torch.Generator().manual_seed(s),
                                                   device=device).cpu(), ref) for p, s in zip(preds, seeds)))
    return Curve(tuple(nfes), tuple(energy))
