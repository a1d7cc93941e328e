"""What every CS180 part-A page reads: the settings of the measurements, and the context loaded once for
all pages (the shipped class-conditional MNIST DDPM, the test digits, the metric classifier).

Each part-A page is then two steps over this context: measure (a NamedTuple of images and numbers, in
cs180.parta_denoising and cs180.parta_editing) and typeset (its figure and its text).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from mnist.checkpoint import load_model
from mnist.data import load_mnist
from mnist.metrics import load_classifier, predict
from mnist.sample import DEFAULT_W, REFERENCE
from utils import Schedule

from .techniques import DEFAULT_STEPS, strided_timesteps

SDEDIT_I = (1, 3, 5, 7, 10, 20)  # CS180's i_start values
ILLUSION_SEEDS = (0,)  # per label pair, in the report (benchmarks/mnist_editing.py uses 5)
ILLUSION_STEPS = 10  # DDIM steps of the report's pair sweeps: all 90 pairs x seeds in one batch
RESAMPLE = 4  # RePaint's U for inpainting towards another label
INPAINT_STEPS = 20  # strided steps of the inpainting runs, with and without resampling alike


@dataclasses.dataclass(frozen=True)
class PartASettings:
    """How much the part-A pages measure, and how they sample."""

    seed: int = 0
    n: int = 20  # test digits per measured number (10 per class is 100)
    steps: int = DEFAULT_STEPS  # strided steps of every chain
    w: float = DEFAULT_W  # guidance wherever a label is asked for
    ts: tuple = (50, 100, 150)  # noise levels of the denoising comparison
    i_starts: tuple = SDEDIT_I  # SDEdit / translation strengths (indices into strided_timesteps(T, steps))
    illusion_seeds: tuple = ILLUSION_SEEDS  # the anagram and hybrid sweeps over all 90 label pairs
    illusion_steps: int = ILLUSION_STEPS
    resample: int = RESAMPLE  # RePaint's U for inpainting towards another label
    inpaint_steps: Optional[int] = None  # strided steps of every inpainting run; None: min(INPAINT_STEPS, steps),
    #                                      since resampling costs U network passes a step
    drawn_seeds: int = 1  # seeds per hand-drawn or outside input
    example_seeds: int = 2  # fresh seeds per illusion pair shown
    example_steps: Optional[int] = None  # their DDIM steps; None: steps // 2


@dataclasses.dataclass(frozen=True)
class PartA:
    """The context of every part-A page: the model and its schedule, n test digits (n // 10 per class, in
    class order) x0 (N, 1, 28, 28) in [-1, 1] with labels y (N,), the metric classifier, the folder the
    figures go to, and the settings."""

    model: torch.nn.Module
    schedule: Schedule
    x0: torch.Tensor
    y: torch.Tensor
    clf: torch.nn.Module
    fig_dir: str
    settings: PartASettings

    @property
    def per(self) -> int:
        """Test digits per class."""
        return max(1, self.settings.n // 10)

    @property
    def show(self) -> list[int]:
        """The digits shown in the figures: a 0, a 3 and a 7."""
        return [0, 3 * self.per, 7 * self.per]

    @property
    def i_ts(self) -> list[int]:
        """strided_timesteps(T, steps): the noise level t of each i_start."""
        return strided_timesteps(self.schedule.T, self.settings.steps)

    @property
    def inpaint_steps(self) -> int:
        return self.settings.inpaint_steps or min(INPAINT_STEPS, self.settings.steps)

    @property
    def example_steps(self) -> int:
        return self.settings.example_steps or max(1, self.settings.steps // 2)

    def read(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's labels (N,) of images x (N, 1, 28, 28) in [-1, 1]."""
        return predict(self.clf, x)[0]

    @torch.no_grad()
    def prob(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's class probabilities (N, 10) of images x."""
        return self.clf.head(predict(self.clf, x)[1]).softmax(1)


def load_part_a(fig_dir: str, checkpoint: str = REFERENCE, settings: PartASettings = PartASettings()) -> PartA:
    """Load the model at `checkpoint`, the test digits and the metric classifier once, for every page."""
    model, schedule, _, _ = load_model(checkpoint)
    model.to(memory_format=torch.channels_last)
    data = load_mnist(download=False, verbose=False)
    clf, _ = load_classifier(data=data, verbose=False)
    per = max(1, settings.n // 10)
    idx = torch.cat([(data.test_y == c).nonzero().flatten()[:per] for c in range(10)])
    return PartA(model, schedule, data.test_x[idx], data.test_y[idx], clf, fig_dir, settings)
