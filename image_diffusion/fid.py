"""Sample quality as a Frechet distance between Gaussians fitted to features of real and generated images.

FID proper (Heusel et al. 2017) takes the features of pytorch-fid's Inception network, whose weights
(pt_inception-2015-12-05) `get_metric` downloads into torch's hub cache on first use. Where they are
not there and the download fails, it says so in one line (with the reason) and falls back to the features of a
small classifier that it trains on the dataset's training split (on its labels, or, for a folder
without classes, on which of four rotations an image shows). That number ranks models trained on
the same data; it is NOT comparable with FIDs in papers, and is labelled so everywhere it is printed.

    metric = get_metric(data)                       # Inception if possible, else the stand-in
    ref = metric.fit(real_images)                   # Gaussian of real features
    d = metric.distance(ref, generated_images)      # images (N, C, H, W) in [-1, 1]
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from runio.errors import first_line
from utils import fit

from .data import Images

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


class Metric(NamedTuple):
    """name: how to label the number; features: images (N, C, H, W) in [-1, 1] -> (N, D)."""

    name: str
    features: Callable
    comparable: bool  # True only for Inception FID

    @torch.no_grad()
    def fit(self, x: torch.Tensor, batch_size: int = 250) -> Gaussian:
        return fit_gaussian(torch.cat([self.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]))

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

    return Metric("FID (pytorch-fid Inception)", features, True)


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


def classifier_metric(data: Images, steps: int = 1500, batch_size: int = 64, seed: int = 0,
                      progress: bool = False) -> Metric:
    """Train SmallClassifier on `data` (its classes, or 4 rotations if it has none); its features."""
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

    fit(clf, opt, iter(loader), loss_fn, steps, progress=progress, desc="metric classifier")
    clf.eval()
    task = "classes" if by_label else "rotations"
    return Metric(f"FD in a small classifier's features (trained on {task}; not comparable with papers)",
                  lambda x: clf.features(x.cpu()), False)


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


def get_metric(data: Images, device="cpu", classifier_steps: int = 1500, progress: bool = False,
               download: bool = True) -> Metric:
    """Inception FID when pytorch-fid and its weights are here (downloaded first when `download` and they are
    not); otherwise one line on stderr saying why, and the classifier stand-in."""
    if InceptionV3 is None:
        why = "pytorch-fid is not installed (pip install pytorch-fid)"
    elif download:
        why = fetch_inception_weights()
    else:
        why = "" if os.path.exists(inception_weights()) else f"its Inception weights are not in {inception_weights()}"
    if not why:
        return inception_metric(device)
    print(f"FID: {why}; using the Frechet distance in a small classifier's features instead, which is NOT "
          "comparable with published FIDs", file=sys.stderr)
    return classifier_metric(data, classifier_steps, progress=progress)
