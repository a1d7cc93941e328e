"""Problem 5 figures and the measured answers to its questions.

`problem5_page(fig_dir)` samples from the shipped checkpoint (or, with retrain=True, from a model
trained from scratch) and returns its report page (`report.pages.Page`) with these figures:

  * mnist_grid.png        10 x 10 grid, one row per digit (the handout's Fig. 7)
  * mnist_trajectory.png  one reverse chain at t = 200, 175, ..., 0: the state x_t (top) and the
                          clean image x0_hat the network predicts from it (bottom)
  * mnist_formation.png   how the digit forms: per-patch error of x0_hat against the final digit vs t,
                          and the successive change of x0_hat
plus mnist_numbers.json and mnist_samples.npz with every number and image behind them.

Timestep convention as in utils.py: t = T is noise, t = 0 the generated digit.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import torch

from report.pages import Page
from utils import sample

from .checkpoint import load_model
from .data import load_mnist, to_unit_range
from .train import main as train_main
from .metrics import class_spread, load_classifier, nearest_distance, predict
from .sample import DEFAULT_W, REFERENCE, generate, generators, save_grid

PATCH = 7  # the 28x28 image as a 4x4 grid of 7x7 patches, for "part by part or all at once"
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


def plot_trajectory(traj_x, traj_x0, ts, shown, path, dpi=150):
    fig, axes = plt.subplots(2, len(shown), figsize=(1.1 * len(shown), 2.6), dpi=dpi)
    for j, t in enumerate(shown):
        i = int((ts == t).nonzero()[0])
        for row, (img, name) in enumerate(((traj_x[i], "$x_t$"), (traj_x0[i], r"$\hat{x}_0$"))):
            ax = axes[row, j]
            ax.imshow(to_unit_range(img)[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t={t}", fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_formation(ts, patch_err, change, times_all, path, dpi=150):
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(11, 3.1), dpi=dpi)
    for e in patch_err.T:
        a.plot(ts, e, lw=0.8, alpha=0.8)
    a.axhline(FORMED, color="k", ls=":", lw=0.8)
    a.set(xlabel="t", ylabel="patch error of $\\hat{x}_0$ vs final", title="shown digit: one line per inked patch",
          xlim=(ts.max(), 0), ylim=(0, 1.6))
    b.plot(ts[1:], change, color="#0072B2")
    b.set(xlabel="t", ylabel="RMS change of $\\hat{x}_0$ per step", title="successive change (median over digits)",
          xlim=(ts.max(), 0), yscale="log")
    c.hist(times_all, bins=np.arange(0, ts.max() + 10, 10), color="#999999")
    c.set(xlabel="t at which a patch is formed", ylabel="patches", title="all digits", xlim=(ts.max(), 0))
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def problem5_page(fig_dir: str, checkpoint: str = REFERENCE, retrain: bool = False, w: float = DEFAULT_W,
                  grid_steps: Optional[int] = 50, n_trajectories: int = 10, seed: int = 0,
                  device: str = "cpu", progress: bool = False) -> Page:
    """Make the Problem 5 figures in fig_dir; return the report page (figures and the text answering the
    handout's questions).

    grid_steps: DDIM steps for the grid (default 50: about a minute in all on 2 CPU cores; the
    benchmark shows DDIM-50's agreement is within a point of the full chain's); None samples the grid
    with the full ancestral chain (4x slower). The trajectories always use the full chain. retrain=True first trains a model with the default `python -m mnist.train`
    settings into fig_dir/mnist_run (about 15-30 min on 2 CPU cores) and uses it.
    """
    start = time.perf_counter()
    os.makedirs(fig_dir, exist_ok=True)
    if retrain:
        run = os.path.join(fig_dir, "mnist_run")
        if train_main(["--out", run, "--quiet"]) != 0:
            raise RuntimeError("training failed")
        checkpoint = os.path.join(run, "model.pt")
    model, schedule, info = load_model(checkpoint, device)
    T = schedule.T
    data = load_mnist(verbose=False)
    clf, clf_info = load_classifier(data=data, verbose=False)

    # 1. the 10 x 10 grid: ten of each digit, image i seeded with seed + i
    labels = torch.arange(10).repeat_interleave(10)
    grid = generate(model, schedule, labels, w, seed, steps=grid_steps, device=device)
    grid_png = os.path.join(fig_dir, "mnist_grid.png")
    save_grid(grid, grid_png, nrow=10, row_labels=[str(d) for d in range(10)])
    pred, feats = predict(clf, grid)
    agreement = (pred == labels).double().mean().item()
    _, test_feats = predict(clf, data.test_x)
    spread = (class_spread(feats, labels) / class_spread(test_feats, data.test_y)).tolist()
    nn_gen = nearest_distance(grid, data.train_x).median().item()
    nn_test = nearest_distance(data.test_x, data.train_x).median().item()

    # 2. trajectories: n of them (digits 0..9 in turn), full ancestral chain; the first one is drawn
    traj_labels = torch.arange(n_trajectories) % 10
    x0, traj = sample(model, schedule, n_trajectories, y=traj_labels, w=w, trajectory=True, shape=(1, 28, 28),
                      generator=generators(n_trajectories, seed + 1000), device=device)
    ts, xs, x0s = traj.t, traj.x.cpu(), traj.x0_hat.cpu()  # (T+1,), (T+1, N, 1, 28, 28) x2
    shown = list(range(T, -1, -max(1, T // 8)))  # t = 200, 175, ..., 0 for T = 200
    if shown[-1] != 0:
        shown.append(0)
    traj_png = os.path.join(fig_dir, "mnist_trajectory.png")
    plot_trajectory(xs[:, 0], x0s[:, 0], ts, shown, traj_png)
    times = formation_times(x0s, ts)
    # spread of formation times within a digit: interquartile range (max - min would follow the one
    # noisiest patch whose error hovers at the threshold), and the full range beside it
    iqrs = torch.tensor([float(t.quantile(0.75) - t.quantile(0.25)) if len(t) else 0.0 for t in times])
    ranges = torch.tensor([float(t.max() - t.min()) if len(t) else 0.0 for t in times])
    all_times = torch.cat(times)
    # successive change of x0_hat: RMS over pixels of x0_hat(t-1) - x0_hat(t), median over digits
    change = (x0s[1:] - x0s[:-1]).pow(2).mean(dim=(2, 3, 4)).sqrt().median(dim=1).values  # (T,)
    cum = change.cumsum(0) / change.sum()
    t_half_change = int(ts[1:][(cum >= 0.5).nonzero()[0]])
    t_90_change = int(ts[1:][(cum >= 0.9).nonzero()[0]])
    # when does the classifier first read the final label from x0_hat, and keep reading it?
    final_pred, _ = predict(clf, x0s[-1])
    t_read = read_from(clf, x0s, ts, final_pred)
    t_read_xt = read_from(clf, xs, ts, final_pred)
    fp = x0s[:, 0]
    final_patches = fp[-1].unfold(-2, PATCH, PATCH).unfold(-2, PATCH, PATCH).reshape(16, -1)
    patch_err = ((fp.unfold(-2, PATCH, PATCH).unfold(-2, PATCH, PATCH).reshape(len(ts), 16, -1) - final_patches).norm(dim=-1)
                 / (final_patches + 1).norm(dim=-1).clamp(min=1e-6))
    inked0 = (final_patches + 1).norm(dim=-1) > 0.25 * (final_patches + 1).norm(dim=-1).max()
    form_png = os.path.join(fig_dir, "mnist_formation.png")
    plot_formation(ts.numpy(), patch_err[:, inked0].numpy(), change.numpy(), all_times.numpy(), form_png)

    q = lambda v, p: float(torch.quantile(torch.as_tensor(v, dtype=torch.float64), p))
    numbers = dict(
        checkpoint=os.path.relpath(checkpoint), data_source=info.get("data_source"), T=T, w=w,
        grid_sampler=f"DDIM {grid_steps}" if grid_steps else f"DDPM {T}", seed=seed,
        classifier_test_accuracy=clf_info["test_accuracy"], grid_agreement=agreement,
        grid_agreement_per_class=[(pred[labels == c] == c).double().mean().item() for c in range(10)],
        spread_ratio_per_class=spread, spread_ratio_mean=float(np.nanmean(spread)),
        spread_ratio_min=float(np.nanmin(spread)), spread_ratio_max=float(np.nanmax(spread)),
        nearest_train_median_generated=nn_gen, nearest_train_median_test=nn_test,
        n_trajectories=n_trajectories, patch_formation_threshold=FORMED,
        patch_formed_t_median=q(all_times, 0.5), patch_formed_t_q10=q(all_times, 0.1), patch_formed_t_q90=q(all_times, 0.9),
        patch_formed_iqr_within_digit_median=q(iqrs, 0.5),
        patch_formed_range_within_digit_median=q(ranges, 0.5),
        patch_formed_t_per_digit=[t.tolist() for t in times],
        x0_hat_change_half_by_t=t_half_change, x0_hat_change_90pct_by_t=t_90_change,
        classifier_reads_final_label_from_t_median=q(t_read, 0.5),
        classifier_reads_final_label_from_t=t_read,
        classifier_reads_final_label_from_x_t_median=q(t_read_xt, 0.5), shown_trajectory_label=int(traj_labels[0]),
        seconds=None)
    numbers["seconds"] = time.perf_counter() - start
    with open(os.path.join(fig_dir, "mnist_numbers.json"), "w") as f:
        json.dump(numbers, f, indent=2)
    np.savez_compressed(os.path.join(fig_dir, "mnist_samples.npz"), grid=grid.numpy(), grid_labels=labels.numpy(),
                        trajectory_t=ts.numpy(), trajectory_x=xs[:, 0].numpy(), trajectory_x0_hat=x0s[:, 0].numpy(),
                        final=x0.cpu().numpy(), final_labels=traj_labels.numpy())
    return Page.of_text("Problem 5: MNIST", [grid_png, traj_png, form_png], page_text(numbers))


def page_text(n: dict) -> str:
    """The report's prose, built from the measured numbers in `n` (no fixed claims)."""
    s = n["spread_ratio_mean"]
    if s >= 0.85:
        diversity = "about as varied as real digits of the same class"
    elif s >= 0.6:
        diversity = "somewhat less varied than real digits of the same class"
    else:
        diversity = "much less varied than real digits: guidance has narrowed each class"
    copying = ("no closer to the training images than unseen real test digits are"
               if n["nearest_train_median_generated"] >= 0.9 * n["nearest_train_median_test"]
               else "closer to training images than unseen test digits are, so some may be near-copies")
    T = n["T"]
    iqr, full = n["patch_formed_iqr_within_digit_median"], n["patch_formed_range_within_digit_median"]
    spans = (f"the middle half of a digit's inked 7x7 patches are formed within a median of {iqr:.0f} steps of "
             f"each other (all of them within {full:.0f}), out of T = {T}")
    if iqr <= 0.15 * T:
        formation = (f"all at once: {spans}, so the whole outline appears together and then sharpens, rather than "
                     "stroke after stroke")
    elif iqr <= 0.35 * T:
        formation = f"mostly all at once, with some parts later: {spans}"
    else:
        formation = f"part by part: {spans}"
    return (
        f"Problem 5 - class-conditional DDPM on MNIST (T = {T}, guidance w = {n['w']}, grid sampled with "
        f"{n['grid_sampler']} from {n['checkpoint']}, data: {n['data_source']}).\n\n"
        f"Grid: a classifier trained on the training split (test accuracy {n['classifier_test_accuracy']:.1%}) reads "
        f"{n['grid_agreement']:.0%} of the 100 digits as the requested label.\n\n"
        f"Diversity within a class: in the classifier's feature space the RMS distance of a class's samples to their "
        f"centroid is {s:.2f} times that of real test digits on average (per class {n['spread_ratio_min']:.2f} to "
        f"{n['spread_ratio_max']:.2f}), i.e. {diversity}. The generated digits are {copying} (median pixel distance to the nearest training image "
        f"{n['nearest_train_median_generated']:.2f} vs {n['nearest_train_median_test']:.2f} for test digits).\n\n"
        f"Part by part or all at once? Measured on {n['n_trajectories']} full-chain trajectories, the digit forms "
        f"{formation}. Half of all change in the predicted clean image x0_hat has happened by t = "
        f"{n['x0_hat_change_half_by_t']}, 90% by t = {n['x0_hat_change_90pct_by_t']}; the classifier already reads "
        f"the final label from x0_hat from a median t = {n['classifier_reads_final_label_from_t_median']:.0f} on. "
        f"A patch counts as formed once the error of x0_hat against the final digit stays below "
        f"{n['patch_formation_threshold']:.0%} of an empty patch's; patches form between t = "
        f"{n['patch_formed_t_q90']:.0f} and {n['patch_formed_t_q10']:.0f} (10th-90th percentile). In the noisy state "
        f"x_t itself the classifier reads the final label only from a median t = "
        f"{n['classifier_reads_final_label_from_x_t_median']:.0f}: the noise hides the digit long after x0_hat "
        f"has fixed it."
    )


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
    print("\n".join(page.images))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
