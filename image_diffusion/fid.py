"""Sample quality as a Frechet distance between Gaussians fitted to features of real and generated images.

FID proper (Heusel et al. 2017) takes the features of pytorch-fid's Inception network, whose weights
(pt_inception-2015-12-05) are downloaded into torch's hub cache on first use. Where they are not there
and the download fails, it says so in one line (with the reason) and falls back to the features of a
small classifier that it trains on the real images (on their labels, or, for a folder without classes,
on which of four rotations an image shows). That number ranks models scored against the same data with
the same classifier; it is NOT comparable with FIDs in papers, and is labelled so everywhere it is printed.

    metric = get_metric(data)                       # Inception if possible, else the stand-in
    ref = metric.fit(real_images)                   # Gaussian of real features
    d = metric.distance(ref, generated_images)      # images (N, C, H, W) in [-1, 1]

The command scores a checkpoint (a run of image_diffusion.train, or problem 5's MNIST model):

    python -m image_diffusion.fid --checkpoint runs/cifar10-32/model.pt --n 10000   # into runs/cifar10-32-fid/
    python -m image_diffusion.fid --checkpoint mnist/reference/model.pt --n 1000 --steps 50 --data-root data
    python -m pytorch_fid runs/cifar10-32-fid/samples runs/cifar10-32-fid/stats-inception-cifar10-3x32x32-10000.npz

It samples --n images in batches with the sampling command's sampler (the run's by default; one generator
per image, utils.generators(--seed, n)), writes them as 8-bit PNGs into OUT/samples/ (000000.png, ...:
any FID tool reads the folder; OUT defaults to RUN-fid beside the run folder RUN, which a trainer
replaces whole at each save), and scores those 8-bit
images against --n-real real ones: the run's own data (its config's --data), MNIST's test split for
problem 5 (torchvision's files in --data-root), or --data FOLDER. The real images' mean and covariance
are cached in pytorch-fid's .npz format (keys mu and sigma) under a name that says the feature extractor,
the dataset, the image size and the count, stats-<features>-<dataset>-<C>x<R>x<R>-<count>.npz, where
<features> is "inception" or "standin-<first 8 hex digits of the classifier file's sha256>", so the two
never mix. A trained stand-in is kept beside it (standin-<dataset>-<C>x<R>x<R>-<steps>steps.pt) and
used for the real and the generated images alike. Nothing is downloaded but the Inception weights.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import socket
import sys
import time
from dataclasses import replace
from typing import Callable, Iterable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from torchvision import datasets
from tqdm.auto import tqdm

from runio.checkpoints import file_sha256, read_checkpoint
from runio.cli import (Parser, command_error, int_range, nonneg_float, nonneg_int, positive_int, resolve_device,
                       run_command, seed_int, unit_float)
from runio.errors import CheckpointError, DataError, OutputError, first_line
from runio.files import MARK, atomic_save, atomic_write, check_writable, is_reference
from runio.runs import staged_run
from solvers import SAMPLERS
from utils import SPACINGS, NonFiniteError, SamplerSettings, fit, generators, sample

from .data import NAMED, Images, load_images
from .sample import DEFAULT_W, cli_settings, describe, labels_for, to_unit
from .trainer import load_model

try:  # pytorch-fid's Inception network (requirements.txt installs it; the stand-in works without it)
    from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3
except ImportError:
    FID_WEIGHTS_URL = InceptionV3 = None


class Gaussian(NamedTuple):
    """Feature statistics, named as pytorch-fid's .npz files name them."""

    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64, the unbiased covariance


def fit_gaussian(feats) -> Gaussian:
    """Mean and unbiased covariance of features (N, D), N >= 2 (a tensor or an array), in float64."""
    f = feats.double().cpu().numpy() if torch.is_tensor(feats) else np.asarray(feats, dtype=np.float64)
    return Gaussian(f.mean(0), np.atleast_2d(np.cov(f, rowvar=False)))


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues set to 0)."""
    evals, evecs = np.linalg.eigh(a)
    return (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T


def frechet_distance(p: Gaussian, q: Gaussian) -> float:
    """The one Frechet distance of the package (FID, and FLD in classifier features):

        d^2 = ||mu_p - mu_q||^2 + Tr(S_p + S_q - 2 (S_p^1/2 S_q S_p^1/2)^1/2)      (Dowson & Landau 1982)

    Tr((S_p S_q)^1/2), which pytorch-fid takes with scipy's sqrtm (Heusel et al. 2017, Eq. 6), is written
    in the symmetric form, whose eigenvalues are real and >= 0: no complex round-off to discard."""
    root_p = sqrtm_psd(p.sigma)
    m = root_p @ q.sigma @ root_p
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    d2 = ((p.mu - q.mu) ** 2).sum() + np.trace(p.sigma) + np.trace(q.sigma) - 2 * cross
    return max(float(d2), 0.0)


# ============================================================ feature extractors
class Metric(NamedTuple):
    """name: how to label the number; features: images (N, C, H, W) in [-1, 1] -> (N, D)."""

    name: str
    features: Callable
    comparable: bool  # True only for Inception FID
    dim: int = 0  # D, the number of features (0: not stated)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, batch_size: int = 250) -> Gaussian:
        return self.fit_batches(x[i:i + batch_size] for i in range(0, len(x), batch_size))

    @torch.no_grad()
    def fit_batches(self, batches: Iterable[torch.Tensor]) -> Gaussian:
        """The Gaussian of the features of every image in `batches` (each (B, C, H, W) in [-1, 1])."""
        return fit_gaussian(torch.cat([self.features(x) for x in batches]))

    def distance(self, ref: Gaussian, x: torch.Tensor) -> float:
        return frechet_distance(ref, self.fit(x))


def inception_weights() -> str:
    """Where pytorch-fid looks for its Inception weights (torch's hub cache)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(FID_WEIGHTS_URL or "pt_inception.pth"))


def inception_metric(device="cpu") -> Metric:
    net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()

    def features(x):
        x = ((x.to(device) + 1) / 2).clamp(0, 1)  # pytorch-fid takes [0, 1] and resizes to 299 itself
        return net(x.expand(-1, 3, -1, -1))[0].flatten(1).cpu()

    return Metric("FID (pytorch-fid Inception)", features, True, 2048)


class SmallClassifier(nn.Module):
    """Three conv blocks and a global average: x (B, C, R, R) in [-1, 1] -> features (B, 128); head -> logits."""

    def __init__(self, channels: int, num_outputs: int, width: int = 32):
        super().__init__()
        c = [channels, width, 2 * width, 4 * width]
        self.body = nn.Sequential(*[m for i in range(3) for m in (
            nn.Conv2d(c[i], c[i + 1], 3, padding=1), nn.GroupNorm(8, c[i + 1]), nn.SiLU(), nn.MaxPool2d(2))])
        self.head = nn.Linear(c[-1], num_outputs)

    def features(self, x):
        return self.body(x).mean((2, 3))

    def forward(self, x):
        return self.head(self.features(x))


def rotations(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate image i by k[i] quarter turns: x (B, C, R, R), k int64 (B,) in 0..3."""
    return torch.stack([torch.rot90(xi, int(ki), (1, 2)) for xi, ki in zip(x, k)])


def train_classifier(data: Images, steps: int = 1500, batch_size: int = 64, seed: int = 0,
                     progress: bool = False) -> tuple[SmallClassifier, str]:
    """Train SmallClassifier on `data` (its classes, or 4 rotations if it has none), seeded, on the CPU.
    Returns (the classifier in eval mode, what it learned: "classes" or "rotations")."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    by_label = data.num_classes >= 2
    clf = SmallClassifier(data.channels, data.num_classes if by_label else 4)
    opt = torch.optim.Adam(clf.parameters(), lr=2e-3)
    loader = DataLoader(data, batch_size=batch_size, sampler=RandomSampler(data, True, steps * batch_size, generator=g))

    def loss_fn(batch, step):
        x, y = batch
        if not by_label:
            y = torch.randint(0, 4, (len(x),), generator=g)
            x = rotations(x, y)
        return F.cross_entropy(clf(x), y)

    fit(clf, opt, iter(loader), loss_fn, steps, progress=progress, desc="stand-in classifier")
    return clf.eval(), "classes" if by_label else "rotations"


def classifier_features(clf: SmallClassifier, task: str) -> Metric:
    """The stand-in metric: the Frechet distance in clf's features (on the CPU)."""
    return Metric(f"FD in a small classifier's features (trained on {task}; not comparable with papers)",
                  lambda x: clf.features(x.cpu()), False, clf.head.in_features)


def classifier_metric(data: Images, steps: int = 1500, batch_size: int = 64, seed: int = 0,
                      progress: bool = False) -> Metric:
    """Train SmallClassifier on `data` (its classes, or 4 rotations if it has none); its features."""
    return classifier_features(*train_classifier(data, steps, batch_size, seed, progress))


def fetch_inception_weights(timeout: float = 30.0) -> str:
    """Download pytorch-fid's Inception weights into torch's hub cache if they are not there. Returns "" when
    they are there, else why they are not (one line)."""
    path = inception_weights()
    if os.path.exists(path):
        return ""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:  # written to a temporary file and moved into place: an interrupted download leaves nothing
        torch.hub.download_url_to_file(FID_WEIGHTS_URL, path, progress=False)
        return ""
    except Exception as e:  # no network, a proxy, a timeout: all mean the same here
        return f"its Inception weights are not in {path} and could not be downloaded from {FID_WEIGHTS_URL} " \
               f"({first_line(e)})"
    finally:
        socket.setdefaulttimeout(before)


def inception_missing(download: bool = True) -> str:
    """"" when pytorch-fid and its weights are here (downloaded first when `download` and they are not), else
    why not, in one line."""
    if InceptionV3 is None:
        return "pytorch-fid is not installed (pip install pytorch-fid)"
    if download:
        return fetch_inception_weights()
    return "" if os.path.exists(inception_weights()) else f"its Inception weights are not in {inception_weights()}"


def fallback_notice(why: str) -> None:
    """The one line on stderr that says why the stand-in is used."""
    print(f"FID: {why}; using the Frechet distance in a small classifier's features instead, which is NOT "
          "comparable with published FIDs", file=sys.stderr)


def get_metric(data: Images, device="cpu", classifier_steps: int = 1500, progress: bool = False,
               download: bool = True) -> Metric:
    """Inception FID when pytorch-fid and its weights are here (downloaded first when `download` and they are
    not); otherwise one line on stderr saying why, and the classifier stand-in."""
    why = inception_missing(download)
    if not why:
        return inception_metric(device)
    fallback_notice(why)
    return classifier_metric(data, classifier_steps, progress=progress)


# ============================================================ the real images and their cached statistics
REAL_SEED = 0  # which real images: the first --n-real of one permutation seeded by this, whatever --seed
STANDIN_KIND = "fid-standin-classifier"
MAX_IMAGES = 1_000_000
NUMBERED = re.compile(r"\d{6,}\.png")  # the names of the PNGs this command writes: 000000.png, ...


class RealImages(NamedTuple):
    """The real side of the distance: `images` give the statistics, `train` teaches the stand-in classifier (the
    same images, but for MNIST its training split), `key` names the dataset in the cache files."""

    images: Images  # items (x (C, R, R) in [-1, 1], label)
    train: Images
    key: str


def mnist_split(root: str, train: bool, resolution: int, channels: int) -> Images:
    """MNIST's training or test split, read by torchvision from root/MNIST/raw (never downloaded here)."""
    raw = os.path.join(root, "MNIST", "raw")
    try:
        base = datasets.MNIST(root, train=train, download=False)
    except Exception as e:  # absent (RuntimeError "Dataset not found"), or a broken file
        why = "is not in" if isinstance(e, RuntimeError) and "not found" in str(e) else f"({first_line(e)}) in"
        raise DataError(f"MNIST's {'training' if train else 'test'} split {why} {raw}; put torchvision's raw files "
                        "there and pass --data-root, or pass --data FOLDER of real digits") from None
    return Images(base, resolution, channels, 10, f"MNIST {'training' if train else 'test'} split in {root}")


def real_images(data: str, root: str, resolution: int, channels: int) -> RealImages:
    """The real images of --data at the model's size: "mnist" (the test split), "cifar10" or "stl10" (torchvision's
    copy in `root`) or a folder, keyed by its name, a hash of its real path and its number of images."""
    if data == "mnist":
        return RealImages(mnist_split(root, False, resolution, channels), mnist_split(root, True, resolution, channels),
                          "mnist-test")
    images = load_images(data, root, resolution, channels, download=False)
    if data in NAMED:
        return RealImages(images, images, data)
    path = os.path.realpath(data)
    digest = hashlib.sha256(f"{path}\n{len(images)}".encode()).hexdigest()[:8]
    return RealImages(images, images, f"{re.sub(r'[^A-Za-z0-9_.]+', '_', os.path.basename(path))}-{digest}")


def size_key(images: Images) -> str:
    return f"{images.channels}x{images.resolution}x{images.resolution}"


def real_batches(images: Images, count: int, batch_size: int) -> Iterable[torch.Tensor]:
    """The first `count` images of one permutation seeded by REAL_SEED, in batches (B, C, R, R) in [-1, 1]."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(REAL_SEED))[:count].tolist()
    for i in range(0, count, batch_size):
        yield torch.stack([images[j][0] for j in order[i:i + batch_size]])


def read_statistics(path: str, dim: int) -> Gaussian:
    """A cached .npz (pytorch-fid's keys mu, sigma); DataError (one line) if it is broken or of another size."""
    try:
        with np.load(path) as z:
            g = Gaussian(z["mu"].astype(np.float64), z["sigma"].astype(np.float64))
    except Exception as e:  # not a zip, truncated, keys missing
        raise DataError(f"the cached statistics {path} are not readable ({first_line(e)}); delete the file") from None
    d = len(g.mu) if g.mu.ndim == 1 else -1
    if d < 1 or g.sigma.shape != (d, d) or (dim and d != dim) or not np.isfinite(g.sigma).all():
        raise DataError(f"the cached statistics {path} do not hold {dim or 'D'} features (mu {g.mu.shape}, sigma "
                        f"{g.sigma.shape}); delete the file")
    return g


def real_statistics(metric: Metric, real: RealImages, count: int, path: str, batch_size: int) -> tuple[Gaussian, bool]:
    """(the Gaussian of `count` real images' features, whether it was read from the cache at `path`); computed and
    written there (pytorch-fid's .npz keys, signed as the package's) when it is not."""
    if os.path.exists(path):
        return read_statistics(path, metric.dim), True
    g = metric.fit_batches(real_batches(real.images, count, batch_size))
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, mu=g.mu, sigma=g.sigma, written_by=np.array(MARK),
                                                       features=np.array(metric.name), count=np.array(count),
                                                       source=np.array(real.images.describe())))
    return g, False


def standin(real: RealImages, cache: str, steps: int, progress: bool = False) -> tuple[Metric, str]:
    """The stand-in classifier of `real`, trained once (seeded, on the CPU) on real.train and kept in `cache`, so
    that real and generated images, and every later run, see the same one. Returns (its metric, the tag of its
    statistics: standin-<first 8 hex digits of its file's sha256>)."""
    path = os.path.join(cache, f"standin-{real.key}-{size_key(real.train)}-{steps}steps.pt")
    if not os.path.exists(path):
        clf, task = train_classifier(real.train, steps, progress=progress)
        atomic_save({"kind": STANDIN_KIND, "channels": real.train.channels, "outputs": clf.head.out_features,
                     "task": task, "steps": steps, "data": real.train.describe(), "model": clf.state_dict()}, path)
    ckpt = read_checkpoint(path, STANDIN_KIND)
    try:
        clf = SmallClassifier(int(ckpt["channels"]), int(ckpt["outputs"]))
        clf.load_state_dict(ckpt["model"])
        task = str(ckpt["task"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a usable stand-in classifier ({first_line(e)}); delete it") from None
    return classifier_features(clf.eval(), task), f"standin-{file_sha256(path)[:8]}"


def choose_metric(features: str, real: RealImages, cache: str, classifier_steps: int, device,
                  progress: bool) -> tuple[Metric, str]:
    """--features: "inception" (an error if it cannot be had), "standin", or "auto" (Inception if its weights are
    here or can be downloaded, else one line on stderr and the stand-in). Returns (metric, tag for cache names)."""
    if features != "standin":
        why = inception_missing(download=True)
        if not why:
            return inception_metric(device), "inception"
        if features == "inception":
            raise ValueError(f"--features inception: {why}")
        fallback_notice(why)
    return standin(real, cache, classifier_steps, progress)


# ============================================================ the generated images
def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] -> uint8 0..255, as an 8-bit PNG holds them."""
    return (to_unit(x.float()) * 255).round().to(torch.uint8)


def write_png(u: torch.Tensor, path: str) -> None:
    """One image (C, H, W) uint8 as a PNG (greyscale for C = 1), signed as the package's (runio.files.ours)."""
    a = u.permute(1, 2, 0).numpy()
    info = PngInfo()
    info.add_text("Source", MARK)
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(path, pnginfo=info)


def check_samples_folder(folder: str, overwrite: bool) -> list:
    """Before any work: `folder` may take the PNGs (it holds none, or only this command's and `overwrite`).
    Returns the names of the PNGs it holds; OutputError (one line) otherwise."""
    present = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    foreign = [f for f in present if not NUMBERED.fullmatch(f)]
    if foreign:
        raise OutputError(f"{folder} holds files that this command did not write ({', '.join(foreign[:3])}); it is "
                          "replaced as a whole, so choose another --out")
    if present and not overwrite:
        raise OutputError(f"{folder} already holds {len(present)} sampled images; pass --overwrite to replace them, "
                          "or choose another --out")
    return present


@torch.no_grad()
def sample_pngs(model, schedule, folder: str, n: int, settings: SamplerSettings, seed: int, batch_size: int,
                metric: Metric, overwrite: bool = False, progress: bool = False) -> Gaussian:
    """Sample n images in batches, image i with generators(seed, n)[i] (and label i % num_classes for a
    class-conditional model), into folder/000000.png ... as one set (runio.runs.staged_run: the folder is
    replaced whole, or stays as it was). Returns the Gaussian of the features of the 8-bit images written."""
    present = check_samples_folder(folder, overwrite)
    names = [f"{i:06d}.png" for i in range(n)]
    cfg, device = model.config, next(model.parameters()).device
    y_all = labels_for(model, n)
    feats = []
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
    with staged_run(folder, names + present, overwrite) as stage, \
            tqdm(total=n, desc="images", unit="img", disable=not progress) as bar:
        for i in range(0, n, batch_size):
            b = min(batch_size, n - i)
            x = sample(model, schedule, b, None if y_all is None else y_all[i:i + b], settings,
                       generators(seed, b, start=i), shape=(cfg.in_channels, cfg.resolution, cfg.resolution),
                       device=device, progress=progress)
            if not torch.isfinite(x).all():
                raise NonFiniteError(f"images {i}..{i + b - 1} came out nan or inf; nothing was written")
            u = to_uint8(x.cpu())
            for j in range(b):
                write_png(u[j], os.path.join(stage, names[i + j]))
            feats.append(metric.features(u.float() / 255 * 2 - 1))  # what the PNG holds, back in [-1, 1]
            bar.update(b)
    return fit_gaussian(torch.cat(feats))


# ======================================================================= CLI
class FIDResult(NamedTuple):
    distance: float
    metric: Metric
    n: int  # generated images
    n_real: int
    real: str  # the real images, described
    sampler: str
    samples: str  # the PNG folder
    stats: str  # the real statistics (.npz)
    reused: bool  # whether they were read from the cache
    seconds: float  # the whole command
    sampling_seconds: float

    def lines(self) -> list:
        what = (f"FID {self.distance:.2f} (pytorch-fid Inception)" if self.metric.comparable else
                f"stand-in distance {self.distance:.3f} (not comparable with published FIDs)")
        again = (f"python -m pytorch_fid {self.samples} {self.stats}" if self.metric.comparable else
                 f"with the Inception weights, python -m pytorch_fid {self.samples} <real images or their .npz>")
        return [what,
                f"images: {self.n} generated ({self.sampler}) vs {self.n_real} real ({self.real})",
                f"features: {self.metric.name}",
                f"time: {self.seconds:.1f} s (sampling {self.sampling_seconds:.1f} s)",
                f"PNGs: {self.samples} ({self.n} files; {again} scores them)",
                f"real statistics: {self.stats} ({'read from the cache' if self.reused else 'computed and cached'})"]


def default_out(checkpoint: str) -> str:
    """RUN-fid beside the run folder RUN that holds the checkpoint (not inside it: a run folder is replaced whole
    at every save); runs/mnist-reference-fid for the shipped model."""
    folder = os.path.dirname(os.path.abspath(checkpoint))
    return os.path.join("runs", "mnist-reference-fid") if is_reference(folder) else folder + "-fid"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m image_diffusion.fid", description=__doc__)
    p.add_argument("--checkpoint", required=True,
                   help="a model.pt of python -m image_diffusion.train, or of python -m mnist.train (problem 5; "
                        "the shipped one is mnist/reference/model.pt)")
    p.add_argument("--n", type=int_range(2, MAX_IMAGES), default=1000,
                   help="images to generate (default %(default)s; published FIDs use 50000)")
    p.add_argument("--n-real", type=int_range(2, MAX_IMAGES), default=None,
                   help="real images for the statistics (default: --n, at most all of --data)")
    p.add_argument("--data", default=None,
                   help='the real images: "cifar10" or "stl10" (torchvision\'s copy in --data-root), "mnist" (its test '
                        'split in --data-root/MNIST/raw) or a folder; default: the run\'s own data, "mnist" for '
                        "problem 5's checkpoints. Nothing is downloaded")
    p.add_argument("--data-root", default=None, help="where torchvision's datasets are (default: the run's, else data)")
    p.add_argument("--out", default=None,
                   help="folder for samples/ (the PNGs) and the caches (default: RUN-fid beside the run folder RUN; "
                        "runs/mnist-reference-fid for the shipped model)")
    p.add_argument("--cache", default=None,
                   help="folder for the real statistics and the stand-in classifier (default: --out); runs scored "
                        "against the same data can share one")
    p.add_argument("--features", choices=("auto", "inception", "standin"), default="auto",
                   help="auto: pytorch-fid's Inception if its weights are here or can be downloaded, else the stand-in "
                        "(default); inception: an error without them; standin: the classifier, no download")
    p.add_argument("--classifier-steps", type=positive_int, default=1500, help="training steps of the stand-in")
    p.add_argument("--batch-size", type=int_range(1, 65_536), default=250, help="images per sampling batch")
    p.add_argument("--sampler", choices=SAMPLERS, default=None,
                   help="as python -m image_diffusion.sample's (default: the run's sample_sampler; DDPM's full chain "
                        "for problem 5's checkpoints)")
    p.add_argument("--steps", type=nonneg_int, default=None,
                   help="network evaluations: 0 for the full ancestral chain, else S steps of --sampler (default: the "
                        "run's sample_steps)")
    p.add_argument("--spacing", choices=SPACINGS, default=None, help="how --steps are spread over 1..T")
    p.add_argument("--eta", type=unit_float, default=None, help="DDIM's eta (default: the run's sample_eta)")
    p.add_argument("--w", type=nonneg_float, default=DEFAULT_W,
                   help="classifier-free guidance scale, class-conditional models only (default %(default)s)")
    p.add_argument("--seed", type=seed_int, default=0, help="image i is drawn with generators(seed, n)[i] (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace the PNGs of an earlier run of this command")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def score(args) -> FIDResult:
    """The command, step by step: the model and its sampler, the places, the real images, the metric and the real
    statistics (cached), then the generated PNGs and the distance."""
    start = time.perf_counter()
    loaded = load_model(args.checkpoint, resolve_device(args.device))
    model, cfg = loaded.model, loaded.config
    settings = cli_settings(args, cfg, loaded.schedule)  # the sampling command's sampler, the run's by default
    settings = settings if model.num_classes else replace(settings, w=0.0)
    sampler = describe(settings) + (f", w {settings.w:g}" if settings.w else "") + f", seed {args.seed}"

    out = args.out or default_out(args.checkpoint)
    cache = args.cache or out
    samples = os.path.join(out, "samples")
    check_writable(out)
    check_writable(cache, "--cache")
    check_samples_folder(samples, args.overwrite)

    data = args.data or (cfg.data if cfg is not None else "mnist")
    root = args.data_root or (cfg.data_root if cfg is not None else "data")
    try:
        real = real_images(data, root, model.config.resolution, model.config.in_channels)
    except DataError as e:
        if args.data or cfg is None:
            raise
        raise DataError(f"{first_line(e)} (the run's own data, from its config; pass --data to use another copy)") \
            from None
    n_real = min(args.n, len(real.images)) if args.n_real is None else args.n_real
    if n_real > len(real.images) or n_real < 2:
        raise DataError(f"--n-real {n_real} but {real.images.source} holds {len(real.images)} images; FID needs 2 "
                        "or more")

    device = next(model.parameters()).device
    metric, tag = choose_metric(args.features, real, cache, args.classifier_steps, device, not args.quiet)
    stats = os.path.join(cache, f"stats-{tag}-{real.key}-{size_key(real.images)}-{n_real}.npz")
    ref, reused = real_statistics(metric, real, n_real, stats, args.batch_size)
    t0 = time.perf_counter()
    gen = sample_pngs(model, loaded.schedule, samples, args.n, settings, args.seed, args.batch_size, metric,
                      args.overwrite, not args.quiet)
    return FIDResult(frechet_distance(ref, gen), metric, args.n, n_real, real.images.describe(), sampler, samples,
                     stats, reused, time.perf_counter() - start, time.perf_counter() - t0)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        result = score(args)
    except Exception as e:  # one line for what a user can fix (runio.cli.command_error); a traceback for a bug
        return command_error("image_diffusion.fid", e, lambda: f"--batch-size {args.batch_size}; lower it")
    finally:
        torch.set_num_threads(threads)
    print("\n".join(result.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "image_diffusion.fid", "the PNG folder is as it was (caches already written are whole); "
                                                      "run it again"))
