"""CS180 project 5 part B on MNIST: figures and measured texts for the report.

  b1_pages(fig_dir)   part B.1, the single-step denoiser (mnist/denoiser.py):
      cs180b1_noising.png     test digits, z = x + sigma eps for sigma = 0 .. 1          (Fig. 3)
      cs180b1_loss.png        training loss per step, epochs marked                       (Fig. 4)
      cs180b1_epochs.png      clean / noisy (sigma = 0.5) / after epoch 1 / after epoch 5   (Fig. 5, 6)
      cs180b1_ood.png         noisy and denoised at every sigma (trained at 0.5 only)     (Fig. 7)
  b2_pages(fig_dir)   part B.2, the time-conditioned DDPM (mnist/timecond.py):
      cs180b2_loss.png        training loss per step
      cs180b2_epochs.png      samples from the same seeds after epochs 1, 5, 10, 15, 20

Both read shipped runs (mnist/reference/denoiser.pt, timecond.pt) unless given others; every
number in the texts is computed here from seeded draws and the metric classifier (mnist.metrics).
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch

from report.pages import Page
from utils import CheckpointError, Parser

from . import denoiser as dn
from . import timecond as tc
from .cs180_report import image_table
from .data import load_mnist
from .metrics import load_classifier, predict

CONFIDENT = 0.9  # a sample "reads as a digit" when the classifier gives one class at least this probability


def test_digits(data, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first per_class test digits of each class, in class order: x (N, 1, 28, 28) in [-1, 1], y (N,)."""
    idx = torch.cat([(data.test_y == c).nonzero().flatten()[:per_class] for c in range(10)])
    return data.test_x[idx], data.test_y[idx]


def loss_figure(losses: Sequence[float], steps_per_epoch: int, path: str, title: str, ylabel: str) -> str:
    """Loss per step (light) and its running mean over one epoch (dark), log scale, epochs marked."""
    loss = torch.tensor(losses, dtype=torch.float64)
    k = max(1, min(20, steps_per_epoch, len(loss) // 5))
    smooth = loss.unfold(0, k, 1).mean(1) if len(loss) >= k else loss
    fig, ax = plt.subplots(figsize=(5.2, 3.0), dpi=150)
    ax.plot(range(1, len(loss) + 1), loss, color="#56B4E9", lw=0.7, alpha=0.8, label="per step")
    ax.plot(range(k, len(loss) + 1), smooth, color="#0072B2", lw=1.6, label=f"mean of the last {k} steps")
    for e in range(steps_per_epoch, len(loss), steps_per_epoch):
        ax.axvline(e + 0.5, color="0.85", lw=0.6, zorder=0)
    ax.set_yscale("log")
    ax.set_xlabel("training step (grey lines: epoch ends)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _unit_to_model(x: torch.Tensor) -> torch.Tensor:
    return x * 2 - 1  # image_table draws [-1, 1]; part B.1 works in [0, 1]


def b1_pages(fig_dir: str, checkpoint: Optional[str] = None, seed: int = 0, per_class: int = 10,
             sigmas: Sequence[float] = dn.SIGMAS) -> list[tuple[list[str], str]]:
    """Part B.1 figures in fig_dir and their texts; PSNR over per_class x 10 test digits."""
    run = dn.load_run(checkpoint or dn.REFERENCE)
    cfg, first, last = run.config, min(run.models), max(run.models)
    data = load_mnist(download=False, verbose=False)
    x_m, y = test_digits(data, per_class)
    x = (x_m + 1) / 2  # [0, 1], the handout's range for part 1
    show = [c * per_class for c in (0, 2, 3, 5, 7, 9)]
    p = lambda name: os.path.join(fig_dir, name)
    g = lambda: torch.Generator().manual_seed(seed)
    out = []

    # 1.2 noising process
    noisy = {s: dn.add_noise(x, s, g()) for s in sigmas}
    png = image_table([[_unit_to_model(noisy[s][i].clamp(0, 1)) for s in sigmas] for i in show[:4]],
                      p("cs180b1_noising.png"), [f"digit {int(y[i])}" for i in show[:4]],
                      [f"sigma={s}" for s in sigmas])
    clf, _ = load_classifier(data=data, verbose=False)
    read = {s: (predict(clf, _unit_to_model(noisy[s].clamp(0, 1)))[0] == y).float().mean().item() for s in sigmas}
    out.append(Page.of_text("CS180 B.1.2: the noising process", [png], "B.1.2 Noising process z = x + sigma eps on test digits in [0, 1] (shown clipped to [0, 1]). "
                "The metric classifier still reads the true digit in " +
                ", ".join(f"{read[s]:.0%} at sigma={s}" for s in sigmas) + f" of {len(x)} test digits."))

    # 1.2.1 training: loss, epoch 1 against epoch 5
    n_train = round(len(run.losses) / cfg.epochs)
    steps_per_epoch = max(1, n_train)
    png_loss = loss_figure(run.losses, steps_per_epoch, p("cs180b1_loss.png"),
                           f"single-step denoiser, D={cfg.hidden}, sigma={cfg.sigma}, batch {cfg.batch_size}, "
                           f"lr {cfg.lr:g}", "L2 loss, D(z) vs x, per pixel")
    z = noisy[cfg.sigma] if cfg.sigma in noisy else dn.add_noise(x, cfg.sigma, g())
    with torch.no_grad():
        d1, dT = run.models[first](z).clamp(0, 1), run.models[last](z).clamp(0, 1)
    png_ep = image_table([[_unit_to_model(v[i]) for i in show] for v in (x, z.clamp(0, 1), d1, dT)],
                         p("cs180b1_epochs.png"),
                         ["clean", f"sigma={cfg.sigma}", f"epoch {first}", f"epoch {last}"])
    psnr = {e: dn.psnr_per_sigma(run.models[e], x, sigmas, seed) for e in (first, last)}
    at = cfg.sigma if cfg.sigma in psnr[last] else None
    l10 = lambda a: sum(a) / max(1, len(a))
    per_epoch = [l10(run.losses[i * steps_per_epoch:(i + 1) * steps_per_epoch]) for i in range(cfg.epochs)]
    out.append(Page.of_text("CS180 B.1.2.1: training the single-step denoiser", [png_loss, png_ep], f"B.1.2.1 Training: the handout's UNet with D={cfg.hidden} hidden channels "
                f"(handout: 128), Adam lr {cfg.lr:g}, batch {cfg.batch_size}, sigma = {cfg.sigma}, {cfg.epochs} epochs "
                f"of {steps_per_epoch} steps on the {run.info.get('data_source', '?')} digits "
                f"({run.info.get('seconds', float('nan')) / 60:.1f} min on {run.info.get('threads', 1)} CPU thread). "
                "Mean loss per epoch: " + ", ".join(f"{v:.4f}" for v in per_epoch) + "." +
                (f" On {len(x)} test digits at sigma = {at}: noisy input {psnr[last][at][1]:.1f} dB, after epoch "
                 f"{first} {psnr[first][at][0]:.1f} dB, after epoch {last} {psnr[last][at][0]:.1f} dB PSNR."
                 if at is not None else "")))

    # 1.2.2 out of distribution
    with torch.no_grad():
        den = {s: run.models[last](noisy[s]).clamp(0, 1) for s in sigmas}
    i, j = show[1], show[4]
    png = image_table([[_unit_to_model(noisy[s][i].clamp(0, 1)) for s in sigmas], [_unit_to_model(den[s][i]) for s in sigmas],
                       [_unit_to_model(noisy[s][j].clamp(0, 1)) for s in sigmas], [_unit_to_model(den[s][j]) for s in sigmas]],
                      p("cs180b1_ood.png"), ["noisy", "denoised", "noisy", "denoised"], [f"sigma={s}" for s in sigmas])
    gain = {s: psnr[last][s][0] - psnr[last][s][1] for s in sigmas}
    noisy_s = [s for s in sigmas if s > 0]
    worse = [s for s in noisy_s if gain[s] < 0]
    table = "; ".join(f"sigma={s}: {psnr[last][s][1]:.1f} -> {psnr[last][s][0]:.1f}" for s in noisy_s)
    clean = psnr[last][0.0][0] if 0.0 in psnr[last] else None
    peak = max(noisy_s, key=lambda s: gain[s]) if noisy_s else None
    read_den = {s: (predict(clf, _unit_to_model(den[s]))[0] == y).float().mean().item() for s in sigmas}
    out.append(Page.of_text("CS180 B.1.2.2: out-of-distribution noise levels", [png], f"B.1.2.2 Out-of-distribution test, trained at sigma = {cfg.sigma} only. PSNR (dB, noisy -> "
                f"denoised, {len(x)} test digits): {table}." +
                (f" On clean input (sigma = 0) it returns {clean:.1f} dB against the input: it still 'denoises', "
                 "blurring the strokes a little." if clean is not None else "") +
                (f" The gain is largest at sigma = {peak} ({gain[peak]:+.1f} dB)" if peak is not None else "") +
                (f"; at sigma = {', '.join(map(str, worse))} the output is worse than its input." if worse else
                 "; it never makes a noisy input worse.") +
                " The metric classifier reads the true digit in the denoised output in " +
                ", ".join(f"{read_den[s]:.0%} at sigma={s}" for s in sigmas) +
                f" (the noisy input: {', '.join(f'{read[s]:.0%}' for s in sigmas)})."))
    return out


@torch.no_grad()
def read_samples(clf, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (N,), top probability (N,)) of the metric classifier on x in [-1, 1]."""
    prob = torch.cat([clf(b).softmax(1) for b in x.split(500)])
    top, lab = prob.max(1)
    return lab, top


def b2_pages(fig_dir: str, checkpoint: Optional[str] = None, seed: int = 0, n: int = 20, w: float = 5.0,
             progress: bool = False) -> list[tuple[list[str], str]]:
    """Part B.2 figures in fig_dir and their text: n samples from the same seeds after each saved epoch."""
    run = tc.load_run(checkpoint or tc.REFERENCE)
    cfg = run.config
    data = load_mnist(download=False, verbose=False)
    clf, _ = load_classifier(data=data, verbose=False)
    p = lambda name: os.path.join(fig_dir, name)
    steps_per_epoch = math.ceil(len(run.losses) / cfg.epochs)
    png_loss = loss_figure(run.losses, steps_per_epoch, p("cs180b2_loss.png"),
                           f"time-conditioned DDPM, D={cfg.hidden}, T={cfg.T}, batch {cfg.batch_size}",
                           "L2 loss, eps_theta vs eps, per pixel")
    y = (torch.arange(n) % 10) if cfg.num_classes else None
    samples, lines = {}, []
    for epoch, model in run.models.items():
        samples[epoch] = tc.draw(model, run.schedule, n, seed, y=y, w=w if cfg.num_classes else 0.0, progress=progress)
        lab, top = read_samples(clf, samples[epoch])
        sure = top >= CONFIDENT
        classes = len(set(lab[sure].tolist()))
        hit = f", read as the requested label {int((lab == y).sum())}/{n}" if y is not None else ""
        lines.append(f"epoch {epoch}: {int(sure.sum())}/{n} read with confidence >= {CONFIDENT}{hit}, "
                     f"{classes} different digits among those")
    cols = min(n, 10)
    png = image_table([list(samples[e][:cols]) for e in samples], p("cs180b2_epochs.png"),
                      [f"epoch {e}" for e in samples])
    kind = (f"class-conditional (label dropout {cfg.p_uncond}, guidance w = {w}; columns ask for 0..9)"
            if cfg.num_classes else "unconditional")
    return [Page.of_text("CS180 B.2: the time-conditioned DDPM", [png_loss, png], f"B.2 Time-conditioned DDPM ({kind}): the part-1 UNet with FCBlock modulations of "
             f"the unflatten and up1 features by t / T, D={cfg.hidden} (handout: 64), T={cfg.T}, betas linear 1e-4 .. "
             f"0.02, Adam lr {cfg.lr:g} decayed by {cfg.lr_decay:g} over {cfg.epochs} epochs, batch {cfg.batch_size} "
             f"({len(run.losses)} steps, {run.info.get('seconds', float('nan')) / 60:.1f} min on "
             f"{run.info.get('threads', 1)} CPU thread, {run.info.get('data_source', '?')} digits). Rows: the same "
             f"{n} seeds through the full {cfg.T}-step ancestral chain after each epoch (first {cols} shown). "
             "Classifier reading of the samples: " + "; ".join(lines) + ".")]


def main(argv: Optional[list] = None) -> int:
    ap = Parser(prog="python -m mnist.cs180_partb", description="Make the CS180 part-B figures and texts from "
                "a denoiser run and a time-conditioned DDPM run (default: the shipped ones). The same pages come "
                "from python visualize.py --problem cs180-b1 / cs180-b2.")
    ap.add_argument("--denoiser", default=None, help="part B.1 run (python -m mnist.denoiser writes one)")
    ap.add_argument("--timecond", default=None, help="part B.2 run (python -m mnist.timecond writes one)")
    ap.add_argument("--parts", nargs="+", choices=("b1", "b2"), default=["b1", "b2"])
    ap.add_argument("--out", default="figures", help="folder for the PNGs (default figures)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        made = (b1_pages(args.out, args.denoiser, args.seed) if "b1" in args.parts else []) + \
               (b2_pages(args.out, args.timecond, args.seed, progress=True) if "b2" in args.parts else [])
    except CheckpointError as e:
        ap.error(str(e))
    for page in made:
        print(f"{page.title}: {', '.join(page.images)}")
        print(page.text, "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
