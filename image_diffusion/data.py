"""Training images as tensors in [-1, 1]: torchvision's CIFAR-10 and STL-10, or any folder of images.

`load_images(data, root, resolution, channels)`:

  * data = "cifar10" / "stl10": torchvision's copy under `root` (default data/, gitignored),
    downloaded there when missing and the network allows. STL-10 uses its 105,000 train+unlabeled
    images; CIFAR-10 its 50,000 training images with their 10 labels.
  * data = a folder: a flat folder of images (no classes), or, when it holds no image directly, one
    subfolder per class (searched to any depth; labels in sorted folder order, as torchvision's
    ImageFolder gives them, and the images in its order).

A folder is read as `scan_folder` finds it. Each real file counts once: links are followed, but a
link to a file or folder counted already, or to a folder that holds the link (a loop), adds nothing,
and the real place of a file wins over any link to it. Not read, and counted by reason in one line on
stderr ("folder D: skipped 3 files: 2 not images (.txt), 1 link loop (a/up)"): files that are not
images by their extension, folders inside a flat folder, class folders without images, broken links,
special files (a pipe named x.png would wait forever), and hidden files named like images (macOS's
._x.png). Other hidden files and folders (.DS_Store, .ipynb_checkpoints, a run's .lock file) are not
read either, and not worth a line. GIFs are read by their first frame.

Every image is read as it looks (`to_rgb`: 16-bit greyscale scaled to 8 bits, transparency over white),
resized (shorter side) and center-cropped to resolution x resolution, converted to RGB (channels=3)
or grayscale (1), and scaled from [0, 1] to [-1, 1]. The random horizontal flip of Ho et al. is not
done here but by the trainer (`hflip`), with each sample's own generator, so a run does not depend on
DataLoader workers or on how the batch is split across processes.

Failures are one-line `DataError`s: a dataset neither present nor downloadable (naming the folder
to put it in), an empty folder, a folder that cannot be listed, an image that cannot be read (naming
the file), which includes one over PIL's pixel limit (Image.MAX_IMAGE_PIXELS, a decompression bomb).
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import warnings
from collections import defaultdict, deque
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets, transforms
from torchvision.datasets.folder import IMG_EXTENSIONS

from runio.errors import DataError, first_line

NAMED = {"cifar10": "CIFAR-10", "stl10": "STL-10"}
IMAGE_EXTENSIONS = IMG_EXTENSIONS + (".gif",)  # torchvision's, and GIF (its first frame)
SKIPPED = {  # why a file is not read: (one, several), in the order of the summary line
    "not image": ("not an image", "not images"),
    "hidden": ("hidden", "hidden"),
    "nested": ("nested folder", "nested folders"),
    "empty": ("empty folder", "empty folders"),
    "duplicate": ("duplicate link", "duplicate links"),
    "loop": ("link loop", "link loops"),
    "broken": ("broken link", "broken links"),
    "special": ("not a regular file", "not regular files"),
}
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")  # PIL's modes with an alpha channel
WHITE = (255, 255, 255, 255)


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


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image -> 8-bit RGB, as it looks. Greyscale of 16 bits (modes I;16, I;16B, ...) or 32
    (mode I, as older PILs open a 16-bit PNG) is scaled from [0, 65535] to [0, 255]: PIL's convert
    clips it at 255, which made a mid-grey image white. 48-bit RGB PNGs PIL reads as 8-bit RGB already.
    Transparent pixels (RGBA, LA, PA, or a palette or colour marked transparent) are composited over
    white, as the image shows on a white page; where the alpha is dropped instead, transparent pixels
    take whatever colour they hide (often black)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        grey = np.asarray(img).astype(np.float64) * (255 / 65535)
        img = Image.fromarray(grey.round().clip(0, 255).astype(np.uint8))  # mode L
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        return Image.alpha_composite(Image.new("RGBA", img.size, WHITE), img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


class ImageFiles(Dataset):
    """Image files and their labels: item i is (8-bit RGB PIL image, label) of `samples[i]` = (path, label).
    An image over PIL's pixel limit raises (DecompressionBombError; its warning too) instead of decoding."""

    def __init__(self, samples: list):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, y = self.samples[i]
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over 1x the limit (2x is an error)
            with Image.open(path) as img:  # a GIF opens at its first frame
                return to_rgb(img), y


class Images(Dataset):
    """(x, y): x float32 (channels, R, R) in [-1, 1]; y int64 label (0 when there are no classes).
    num_classes: the dataset's number of classes (0: none); source: where the images came from;
    skipped: the line that counts what a folder held but was not read ("" when nothing)."""

    def __init__(self, base: Dataset, resolution: int, channels: int, num_classes: int, source: str,
                 skipped: str = ""):
        self.base, self.transform = base, image_transform(resolution, channels)
        self.num_classes, self.source, self.skipped = num_classes, source, skipped
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
        except Exception as e:  # what PIL raises for a file it cannot decode: OSError, ValueError, EOFError, ...
            bomb = isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning))
            raise DataError(f"cannot read {self.path(i)} ({type(e).__name__}: {first_line(e)}); "
                            f"{'shrink or delete' if bomb else 'delete or replace'} that file") from None
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


class FolderScan(NamedTuple):
    """What scan_folder found: samples [(path, label)], the class names ([] for a flat folder), and what it
    did not read, by reason (a key of SKIPPED) -> paths relative to the folder."""
    samples: list
    classes: list
    skipped: dict

    def summary(self) -> str:
        """What was not read, in one line: "skipped 3 files: 2 not images (.md, .txt), 1 link loop (a/up)"
        ("" when nothing)."""
        parts = []
        for reason, (one, several) in SKIPPED.items():
            paths = sorted(self.skipped.get(reason, []))
            if paths:
                shown = sorted({os.path.splitext(p)[1] or p for p in paths}) if reason == "not image" else paths
                names = ", ".join(shown[:4]) + (", ..." if len(shown) > 4 else "")
                parts.append(f"{len(paths)} {one if len(paths) == 1 else several} ({names})")
        n = sum(map(len, self.skipped.values()))
        return f"skipped {n} {'file' if n == 1 else 'files'}: {', '.join(parts)}" if n else ""


class _Walk:
    """One pass over a folder (see scan_folder): `seen` holds the real path of every folder and image
    counted; links met are queued and followed after every real file, so that a file's own place wins."""

    def __init__(self, root: str):
        self.root, self.real_root = root, os.path.realpath(root)
        self.seen = {self.real_root}
        self.links = deque()  # (path, label) to follow
        self.found = defaultdict(list)  # label -> image paths
        self.skipped = defaultdict(list)  # reason -> paths relative to root

    def skip(self, reason: str, path: str):
        self.skipped[reason].append(os.path.relpath(path, self.root))

    def claim(self, path: str, label, real: str, regular: bool):
        """Count the file at `path` (real path `real`; `regular`: not a folder, pipe, socket or device) as an
        image of class `label`, or say why not."""
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            self.skip("not image", path)
        elif not regular:  # opening a pipe named x.png would wait forever for a writer
            self.skip("special", path)
        elif real in self.seen:
            self.skip("duplicate", path)
        else:
            self.seen.add(real)
            self.found[label].append(path)

    def entry(self, e: os.DirEntry, label, real_folder: str) -> bool:
        """One entry of a folder (real path `real_folder`) being walked: a hidden file, a link (queued), a file
        of its own (claimed), or a real subfolder (True: walk into it). DirEntry's is_* need no system call."""
        if e.name.startswith("."):  # counted only when named like an image (macOS's ._x.png): not .DS_Store
            if e.name.lower().endswith(IMAGE_EXTENSIONS):
                self.skip("hidden", e.path)
        elif e.is_symlink():
            self.links.append((e.path, label))
        elif not e.is_dir():
            self.claim(e.path, label, os.path.join(real_folder, e.name), e.is_file())
        else:
            return True
        return False

    def folder(self, top: str, label):
        """Every file under the folder `top` (already in seen), through its real subfolders; links are queued."""
        stack = [top]
        while stack:
            path = stack.pop()
            real, inside = os.path.realpath(path), []
            for e in entries(path):
                if self.entry(e, label, real) and os.path.join(real, e.name) not in self.seen:
                    self.seen.add(os.path.join(real, e.name))  # (seen: a folder met before through a link)
                    inside.append(e.path)
            stack += reversed(inside)

    def follow(self):
        """Follow the queued links (and those met on the way), each real file and folder once."""
        while self.links:
            path, label = self.links.popleft()
            real = os.path.realpath(path)
            if not os.path.exists(path):
                self.skip("broken", path)
            elif not os.path.isdir(path):
                self.claim(path, label, real, os.path.isfile(path))
            elif os.path.commonpath([real, os.path.realpath(os.path.dirname(path))]) == real:
                self.skip("loop", path)  # a folder that holds the link itself (".", "..", "/")
            elif real in self.seen:
                self.skip("duplicate", path)
            else:
                self.seen.add(real)
                self.folder(path, label)


def entries(folder: str) -> list:
    """os.scandir's entries of `folder`, sorted by name; DataError if it cannot be listed."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"cannot read the folder {folder} ({e.strerror or e}); make it readable or remove it") from None


def scan_folder(root: str) -> FolderScan:
    """The images in `root`: flat (label 0, no classes) when it holds an image directly, else one class per
    subfolder (labels in sorted order, images in ImageFolder's order). See the module docstring for what
    is not read; each real image counts once however many links lead to it."""
    walk, top = _Walk(root), entries(root)
    flat = any(not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file() for e in top)
    classes = []  # class folders, in sorted order: label = index once the empty ones are gone
    for e in top:
        if flat and e.is_dir() and not e.name.startswith("."):
            walk.skip("nested", e.path)  # a flat folder has no classes
        elif flat or not e.is_dir() or e.name.startswith("."):
            walk.entry(e, 0, walk.real_root)  # beside class folders, no file is an image (else: flat)
        elif e.is_symlink():
            walk.links.append((e.path, e.name))  # a class folder elsewhere: followed before any link inside
            classes.append(e.name)
        else:
            walk.seen.add(os.path.realpath(e.path))  # before any link can claim it
            classes.append(e.name)
    for c in classes:
        if not os.path.islink(os.path.join(root, c)):
            walk.folder(os.path.join(root, c), c)
    walk.follow()
    if flat:
        return FolderScan([(p, 0) for p in sorted(walk.found[0])], [], walk.skipped)
    linked = {*walk.skipped["duplicate"], *walk.skipped["loop"]}  # class folders counted as such already
    walk.skipped["empty"] += [c for c in classes if not walk.found[c] and c not in linked]
    classes = [c for c in classes if walk.found[c]]
    in_order = lambda p: (os.path.dirname(p), os.path.basename(p))  # ImageFolder's order: sorted(os.walk(...))
    samples = [(p, label) for label, c in enumerate(classes) for p in sorted(walk.found[c], key=in_order)]
    return FolderScan(samples, classes, walk.skipped)


def load_images(data: str, root: str = "data", resolution: int = 32, channels: int = 3,
                download: bool = True, verbose: bool = True) -> Images:
    """The training images: `data` is "cifar10", "stl10" or a folder (see the module docstring). For a folder,
    what was not read is counted in one line (Images.skipped), printed on stderr when verbose (by process 0
    of torchrun's alone)."""
    if data in NAMED:
        base = _named(data, root, download)
        return Images(base, resolution, channels, len(getattr(base, "classes", [])), f"{NAMED[data]} in {root}")
    if not os.path.isdir(data):
        raise DataError(f"--data {data}: no such folder (and not one of {', '.join(NAMED)})")
    scan, source = scan_folder(data), f"folder {data}"
    skipped = scan.summary()
    if not scan.samples:
        raise DataError(f"{data} holds no images ({', '.join(IMAGE_EXTENSIONS)}), neither directly nor in class "
                        "subfolders" + (f" ({skipped})" if skipped else ""))
    skipped = f"{source}: {skipped}" if skipped else ""
    if skipped and verbose and (not dist.is_initialized() or dist.get_rank() == 0):
        print(skipped, file=sys.stderr, flush=True)
    return Images(ImageFiles(scan.samples), resolution, channels, len(scan.classes), source, skipped)


def worker_error(e: BaseException) -> Optional[DataError]:
    """A DataError raised in a DataLoader worker comes back wrapped, with the worker's traceback in its
    message; return it as the one-line DataError it was (None for any other error)."""
    if not isinstance(e, DataError):
        return None
    last = str(e).strip().splitlines()[-1]
    return DataError(last.split("DataError: ", 1)[-1])
