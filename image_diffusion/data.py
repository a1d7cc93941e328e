"""Training images as tensors in [-1, 1]: torchvision's CIFAR-10 and STL-10, or any folder of images.

`load_images(data, root, resolution, channels)`:

  * data = "cifar10" / "stl10": torchvision's copy under `root` (default data/, gitignored),
    downloaded there when missing and the network allows. STL-10 uses its 105,000 train+unlabeled
    images; CIFAR-10 its 50,000 training images with their 10 labels.
  * data = a folder: torchvision's ImageFolder (one subfolder per class, labels in sorted folder
    order), or a flat folder of images (no classes).

Every image is resized (shorter side) and center-cropped to resolution x resolution, converted to
RGB (channels=3) or grayscale (1), and scaled from [0, 1] to [-1, 1]. The random horizontal flip
of Ho et al. is not done here but by the trainer (`hflip`), with each sample's own generator, so a
run does not depend on DataLoader workers or on how the batch is split across processes.

Failures are one-line `DataError`s: a dataset neither present nor downloadable (naming the folder
to put it in), an empty folder, an image that cannot be read (naming the file).
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
from typing import Optional

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets, transforms
from torchvision.datasets.folder import IMG_EXTENSIONS

from runio.errors import DataError

NAMED = {"cifar10": "CIFAR-10", "stl10": "STL-10"}


def image_transform(resolution: int, channels: int):
    """PIL image -> float32 (channels, resolution, resolution) in [-1, 1]: resize the shorter side,
    center-crop, then ToTensor's [0, 1] -> [-1, 1]."""
    return transforms.Compose([
        transforms.Lambda(functools.partial(Image.Image.convert, mode="RGB" if channels == 3 else "L")),
        transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
        transforms.CenterCrop(resolution),
        transforms.ToTensor(),
        transforms.Normalize([0.5] * channels, [0.5] * channels),  # [0, 1] -> [-1, 1]
    ])


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images whose flag is set: x (B, C, H, W), flip bool (B,) -> (B, C, H, W)."""
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class FlatFolder(Dataset):
    """The images directly in `folder` (sorted by name) without classes: item i is (PIL image, 0).
    `samples` lists (path, 0) as ImageFolder's does."""

    def __init__(self, folder: str, files: list):
        self.samples = [(os.path.join(folder, f), 0) for f in files]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        with open(self.samples[i][0], "rb") as f:
            return Image.open(f).convert("RGB"), 0


class Images(Dataset):
    """(x, y): x float32 (channels, R, R) in [-1, 1]; y int64 label (0 when there are no classes).
    num_classes: the dataset's number of classes (0: none); source: where the images came from."""

    def __init__(self, base: Dataset, resolution: int, channels: int, num_classes: int, source: str):
        self.base, self.transform = base, image_transform(resolution, channels)
        self.num_classes, self.source = num_classes, source
        self.resolution, self.channels = resolution, channels

    def __len__(self):
        return len(self.base)

    def path(self, i: int) -> str:
        """The file of image i (for error messages)."""
        return self.base.samples[i][0] if hasattr(self.base, "samples") else f"image {i} of {self.source}"

    def __getitem__(self, i):
        try:
            img, y = self.base[i]
            x = self.transform(img)
        except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for truncated or non-image files
            raise DataError(f"cannot read {self.path(i)} ({type(e).__name__}); "
                            "delete or replace that file") from None
        return x, max(int(y), 0)  # STL-10's unlabeled images have label -1

    def describe(self) -> str:
        classes = f"{self.num_classes} classes" if self.num_classes else "no classes"
        return f"{self.source}: {len(self)} images, {classes}, {self.channels}x{self.resolution}x{self.resolution}"


def _named(name: str, root: str, download: bool) -> Dataset:
    """torchvision's CIFAR-10 / STL-10 under root; DataError if absent and not downloadable."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints its download progress
            if name == "cifar10":
                return datasets.CIFAR10(root, train=True, download=download)
            return datasets.STL10(root, split="train+unlabeled", download=download)
    except (OSError, RuntimeError) as e:
        folder = os.path.join(root, "cifar-10-batches-py" if name == "cifar10" else "stl10_binary")
        why = "could not be downloaded" if download else "downloading is off"
        raise DataError(f"{NAMED[name]} is not in {folder} and {why} ({type(e).__name__}); put torchvision's copy "
                        "there, or pass --data FOLDER with images") from None


def load_images(data: str, root: str = "data", resolution: int = 32, channels: int = 3,
                download: bool = True) -> Images:
    """The training images: `data` is "cifar10", "stl10" or a folder (see the module docstring)."""
    if data in NAMED:
        base = _named(data, root, download)
        return Images(base, resolution, channels, len(getattr(base, "classes", [])), f"{NAMED[data]} in {root}")
    if not os.path.isdir(data):
        raise DataError(f"--data {data}: no such folder (and not one of {', '.join(NAMED)})")
    files = sorted(f for f in os.listdir(data) if f.lower().endswith(IMG_EXTENSIONS)
                   and os.path.isfile(os.path.join(data, f)))
    if files:
        return Images(FlatFolder(data, files), resolution, channels, 0, f"folder {data}")
    try:
        base = datasets.ImageFolder(data)
    except (FileNotFoundError, OSError):  # no class folders, or class folders without images
        raise DataError(f"{data} holds no images ({', '.join(IMG_EXTENSIONS)}), neither directly nor in class "
                        "subfolders") from None
    return Images(base, resolution, channels, len(base.classes), f"folder {data}")


def worker_error(e: BaseException) -> Optional[DataError]:
    """A DataError raised in a DataLoader worker comes back wrapped, with the worker's traceback in its
    message; return it as the one-line DataError it was (None for any other error)."""
    if not isinstance(e, DataError):
        return None
    last = str(e).strip().splitlines()[-1]
    return DataError(last.split("DataError: ", 1)[-1])
