"""CS180 project 5 part B.2: the part-1 UNet made time-conditioned (FCBlocks), trained as a DDPM.

The network is `denoiser.UnconditionalUNet` with the handout's two modulations (Part B 2.1):

    t1, t2 = fc1_t(t / T), fc2_t(t / T)               FCBlock = Linear, GELU, Linear
    c1, c2 = fc1_c(c), fc2_c(c)                       c: one-hot label, zeros when dropped (class model only)
    unflatten = c1 * unflatten + t1                   (B, 2D, 7, 7)
    up1       = c2 * up1 + t2                         (B, D, 14, 14)

and predicts the noise eps. With num_classes = 0 (the default: an unconditional, time-conditioned
DDPM) there is no c: unflatten + t1, up1 + t2. With num_classes = 10 it is the
handout's class-conditional model, and label num_classes is the dropped ("null") label, so
utils.sample's classifier-free guidance works on it unchanged.

Everything else is the package's DDPM (utils.py): timesteps t = 1..T, the handout's schedule
(betas linear 1e-4 .. 0.02, T = 300), the simplified loss, and the x0-form ancestral sampler with
x0_hat clipped to the image range [-1, 1] (images are in [-1, 1] here, not part 1's [0, 1]).

    python -m cs180.timecond --handout --ema 0.999 --bf16 --threads 2   # the shipped B.2.1-2.3 run (67 min)
    python -m cs180.timecond --handout --classes --stop-after 5 --threads 2  # the shipped B.2.4-2.5 run: the
                                                           # handout's 20-epoch run to epoch 5 (gamma = 5)
    python -m cs180.timecond --handout                     # the handout's recipe: D = 64, batch 128, all digits, no EMA
    python -m cs180.timecond --add-samples RUN             # store 100 samples per snapshot in an existing run
    python -m cs180.timecond --handout --resume            # continue a stopped run from its last finished epoch
    python -m cs180.timecond --handout --init-from RUN --lr 1e-4 --epochs 4  # train a finished run 4 epochs more

The defaults are a smaller run than the handout's, each a flag away: D = 32 (--hidden 64: 4x the
compute), batch 64 (--batch-size 128), an EMA of the weights for sampling (--ema 0: none); --handout
sets the handout's D, batch, data and no EMA. --bf16 trains with bf16 autocast (fp32 weights): on a
CPU with AMX a batch-128 step at D = 64 takes 0.72 s against 1.8 s in fp32 on one thread (AMD Zen 4:
0.78 s against 1.6 s on two), with the same loss curve (measured; see the model card). The learning rate follows the handout: Adam 1e-3,
decayed by 0.1 over the run per epoch. Every run keeps
its weights after epochs 1, 5, 10, 15 and 20 (EMA and raw), the loss per step and, after training, 100
samples per snapshot drawn with the full chain (sample i from seed i; class runs ask for label
i % 10), which `python visualize.py --problem cs180-b2` and benchmarks/mnist_partb.py read.
mnist/reference/MODEL_CARD.md has the shipped runs' numbers and times.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from runio.checkpoints import check_resumable, file_sha256, read_checkpoint
from runio.cli import (MAX_BATCH, MAX_T, Option, Parser, add_config_arguments, command_error, config_from_args,
                       error_line, int_range, nonneg_int, positive_float, positive_int, probability, resolve_device,
                       run_command, seed_int)
from runio.errors import CheckpointError, OutputError
from runio.files import atomic_save, check_output, write_all
from runio.memory import check_fits, measure
from flow import flow_losses, flow_settings
from utils import EMA, FitHooks, SamplerSettings, Schedule, epoch_batches, fit, generators, make_schedule, matched_prior, p_losses, randn, sample

from report.figures import loss_files

from mnist.checkpoint import load_epoch_run, save_epoch_run
from mnist.data import load_mnist

from .denoiser import SHIPPED, UnconditionalUNet, subset

KIND = "ddpm-mnist-timecond"
PROG = "python -m cs180.timecond"
REFERENCE = os.path.join(SHIPPED, "timecond.pt")  # B.2.1-2.3
REFERENCE_CLASS = os.path.join(SHIPPED, "timecond_class.pt")  # B.2.4-2.5
SNAPSHOT_EPOCHS = (1, 5, 10, 15, 20)  # the handout's figure (flow matching's: 1, 5, 10)
OBJECTIVES = ("eps", "flow")
FLOW_STEPS = 50  # Euler steps of a flow run's stored samples (the handout's Algorithm B.2 leaves num_ts to the notebook)


class FCBlock(nn.Sequential):
    """The handout's FCBlock: Linear(in, out), GELU, Linear(out, out)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Linear(c_in, c_out), nn.GELU(), nn.Linear(c_out, c_out))


class TimeConditionalUNet(UnconditionalUNet):
    """eps_theta(x_t, t[, y]): x_t (B, 1, 28, 28), t int64 (B,) in 1..T, y int64 (B,) in 0..num_classes
    (num_classes = dropped) or None. Matches the interface utils.sample expects (T, num_classes)."""

    def __init__(self, hidden: int = 32, T: int = 300, num_classes: int = 0, objective: str = "eps"):
        super().__init__(hidden)
        D = hidden
        self.T, self.num_classes = T, num_classes
        self.objective = objective  # what it predicts (eps or a flow velocity); utils.sample checks it
        self.fc1_t, self.fc2_t = FCBlock(1, 2 * D), FCBlock(1, D)
        if num_classes:
            self.fc1_c, self.fc2_c = FCBlock(num_classes, 2 * D), FCBlock(num_classes, D)

    @property
    def config(self) -> dict:
        return {"hidden": self.fc2_t[0].out_features, "T": self.T, "num_classes": self.num_classes}

    def forward(self, x, t, y=None):
        B = x.shape[0]
        t = torch.as_tensor(t, device=x.device).expand(B).float().view(B, 1) / self.T
        t1, t2 = self.fc1_t(t)[..., None, None], self.fc2_t(t)[..., None, None]
        a = self.first(x)
        b = self.down1(a)
        c = self.down2(b)
        h = self.unflatten(self.flatten(c))
        if self.num_classes:
            if y is None:  # no label given: the dropped-label model
                y = torch.full((B,), self.num_classes, dtype=torch.long, device=x.device)
            onehot = torch.nn.functional.one_hot(y, self.num_classes + 1)[:, :-1].to(x.dtype)  # null -> zeros
            c1, c2 = self.fc1_c(onehot)[..., None, None], self.fc2_c(onehot)[..., None, None]
            h = c1 * h + t1
            h = self.up1(torch.cat([h, c], 1))
            h = c2 * h + t2
        else:
            h = self.up1(torch.cat([h + t1, c], 1)) + t2
        h = self.up2(torch.cat([h, b], 1))
        return self.last(torch.cat([h, a], 1))


@dataclass
class TimeCondConfig:
    """One part-B.2 run; stored in its checkpoint."""

    hidden: int = 32  # the handout's 64 costs 4x; see the model card for the measured trade-off
    T: int = 300  # the handout's schedule: betas linear 1e-4 .. 0.02
    num_classes: int = 0  # 0: unconditional (the issue); 10: the handout's class-conditional model
    p_uncond: float = 0.1  # label dropout, class model only
    epochs: int = 20
    batch_size: int = 64  # the handout: 128 on 60,000 digits; on 4,500, 64 gives twice the updates (measured better)
    lr: float = 1e-3
    lr_decay: float = 0.1  # the handout: ExponentialLR with gamma = lr_decay ** (1 / epochs), per epoch
    seed: int = 0
    ema: float = 0.999  # sample from an EMA of the weights (decay warmed up as (1 + n) / (10 + n)); 0: the handout's raw weights
    train_size: int = 0  # train on a class-stratified subset of this many digits (chosen by seed); 0: all of them
    bf16: bool = False  # bf16 autocast in the training forward pass (fp32 weights and Adam): 2-2.5x faster with AMX or avx512_bf16
    init_from: str = ""  # "": random weights; else the finished run this one continues (--init-from; info["init_from"] has its sha256)
    objective: str = "eps"  # eps: DDPM (the fall 2024 handout); flow: flow matching's velocity (fall 2025, flow.py)

    @classmethod
    def handout(cls, **overrides) -> "TimeCondConfig":
        """The handout's recipe: D = 64, every training digit, no EMA; for DDPM (fall 2024) batch 128 and 20
        epochs at lr 1e-3, for flow matching (fall 2025) batch 64 and 10 epochs at lr 1e-2."""
        flow = overrides.get("objective") == "flow"
        recipe = {"batch_size": 64, "epochs": 10, "lr": 1e-2} if flow else {"batch_size": 128}
        return cls(**{"hidden": 64, "ema": 0.0, "train_size": 0, **recipe, **overrides})

    def validate(self) -> "TimeCondConfig":
        """ValueError unless every field has a usable type and value (also for a config read from a file)."""
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)
        ok = (all(whole(getattr(self, k))
                  for k in ("hidden", "T", "num_classes", "epochs", "batch_size", "seed", "train_size"))
              and all(number(getattr(self, k)) for k in ("p_uncond", "lr", "lr_decay", "ema")))
        ok = ok and self.objective in OBJECTIVES and isinstance(self.bf16, bool) and isinstance(self.init_from, str) and (self.hidden >= 1 and 2 <= self.T <= MAX_T and self.num_classes >= 0 and 0 <= self.p_uncond < 1
                     and self.epochs >= 1 and self.batch_size >= 1 and self.lr > 0 and 0 < self.lr_decay <= 1
                     and 0 <= self.ema < 1 and self.train_size >= 0)
        if not ok:
            raise ValueError(f"bad config {self}: need hidden >= 1, T >= 2, num_classes >= 0, p_uncond in [0, 1), "
                             "epochs >= 1, batch_size >= 1, lr > 0, lr_decay in (0, 1], ema in [0, 1), train_size >= 0, "
                             "bf16 True or False, init_from a path or \"\", objective eps or flow")
        return self


def schedule_for(cfg: TimeCondConfig) -> Schedule:
    return make_schedule(cfg.T, "linear", "posterior", clip_x0=1.0)


class TrainedDDPM(NamedTuple):
    model: TimeConditionalUNet  # the final sampling weights (the EMA when cfg.ema), eval mode
    schedule: Schedule
    losses: list  # per step
    snapshots: dict  # epoch -> state_dict of the sampling weights (the EMA when cfg.ema), for the epochs asked for
    seconds: float
    raw: dict  # epoch -> state_dict of the trained (not averaged) weights when cfg.ema, else {}


def pixel_stats(x: torch.Tensor) -> dict:
    """The per-pixel mean and variance (1, 28, 28) of training images x (N, 1, 28, 28), which a run keeps so that
    its samples can start from utils.matched_prior."""
    x = x.double()
    return {"mean": x.mean(0).float(), "var": x.var(0, unbiased=False).float()}


def training_pixel_stats(run: "Snapshots") -> Optional[dict]:
    """The pixel_stats of the digits `run` was trained on: stored in the run or, for a run made before runs
    kept them, computed from the same subset of the same data when that data is here; else None."""
    if "pixel_stats" in run.info:
        return run.info["pixel_stats"]
    data = load_mnist(download=False, verbose=False)
    if data.source != run.info.get("data_source"):
        return None
    return pixel_stats(subset(data.train_x, data.train_y, run.config.train_size, run.config.seed)[0])


def init_state(src: "Snapshots", cfg: TimeCondConfig) -> dict:
    """What starts a run that continues the finished run `src` (--init-from): its last trained weights and,
    when both runs keep an EMA, its last EMA weights and update count, so that the average goes on where it
    stopped. The optimizer, the learning-rate schedule and the random numbers start afresh from cfg.
    CheckpointError (one line) if src's network is not cfg's."""
    mine = (cfg.hidden, cfg.T, cfg.num_classes)
    theirs = (src.config.hidden, src.config.T, src.config.num_classes)
    if mine != theirs:
        raise CheckpointError(f"--init-from: that run's network (hidden, T, num_classes) = {theirs} is not this "
                              f"one's {mine}; give the same --hidden (and --classes)")
    last = max(src.models)
    model = (src.raw[last] if last in src.raw else src.models[last]).state_dict()
    ema = src.models[last].state_dict() if src.config.ema and cfg.ema else model
    return {"model": model, "ema": ema, "ema_num_updates": len(src.losses) if src.config.ema and cfg.ema else 0}


def start_weights(state: dict, model: TimeConditionalUNet, ema: Optional[EMA]) -> None:
    """Load the weights of `state` (init_state, or a resume state) into model, and its EMA weights and update
    count into ema when the run keeps one."""
    model.load_state_dict(state["model"])
    if ema is not None:
        ema.model.load_state_dict(state["ema"])
        ema.num_updates = int(state["ema_num_updates"])


def _blank_loss(model, schedule: Schedule, cfg: TimeCondConfig, b: int, device):
    """The training loss on b blank digits with a generator of its own: what runio.memory measures before
    the first step (the kernel's out-of-memory kill cannot be caught)."""
    x0 = torch.zeros(b, 1, 28, 28, device=device)
    y = torch.zeros(b, dtype=torch.long, device=device) if cfg.num_classes else None
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=cfg.bf16):
        return losses_for(cfg)(model, schedule, x0, y, p_uncond=cfg.p_uncond, generator=torch.Generator().manual_seed(0)).mean()


def losses_for(cfg: TimeCondConfig):
    """The per-sample loss of cfg's objective, called as utils.p_losses is: DDPM's simplified loss on eps, or
    flow matching's on the velocity of the linear path (flow.flow_losses, tau ~ U(0, 1], the network sees tau T)."""
    if cfg.objective == "flow":
        return lambda model, schedule, x0, y, p_uncond, generator: flow_losses(model, schedule.T, x0, y, p_uncond,
                                                                                 generator)
    return p_losses


def train_timecond(x: torch.Tensor, y: Optional[torch.Tensor], cfg: TimeCondConfig = TimeCondConfig(),
                   snapshot_epochs: Sequence[int] = SNAPSHOT_EPOCHS, progress: bool = False,
                   device="cpu", on_epoch=None, resume: Optional[dict] = None,
                   init: Optional[dict] = None, stop_after: Optional[int] = None) -> TrainedDDPM:
    """Train on x (N, 1, 28, 28) in [-1, 1] (labels y (N,) for the class model) with Adam and the
    handout's per-epoch exponential LR decay; keep the weights after each epoch in snapshot_epochs
    (on the CPU). The random numbers come from a CPU generator on every device, so a GPU run draws
    the same batches, timesteps and noise as a CPU run. x and y are the whole training set: with
    cfg.train_size the run takes its stratified subset.

    on_epoch(partial TrainedDDPM, state), if given, is called after every epoch (after its snapshot) with
    the run so far and the `state` that continues it: train_timecond(..., resume=state) carries on from
    that epoch and ends with the same weights, losses and snapshots as a run that was never stopped
    (the batches, timesteps and noise all come from one generator, whose state is part of `state`).
    init (init_state of a finished run) starts from its weights instead of random ones; resume wins over it.
    stop_after: end after this epoch, the learning rate decayed on cfg.epochs' schedule all the same: the first
    epochs of the full run, exactly (a run too long for the machine, kept as far as it fits)."""
    cfg.validate()
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"x must be (N, 1, 28, 28) images in [-1, 1], got {tuple(x.shape)}")
    if cfg.num_classes and (y is None or len(y) != len(x)):
        raise ValueError("the class-conditional model needs one label per image")
    if cfg.train_size:
        if y is None:
            raise ValueError("train_size needs the labels, to keep the classes balanced")
        x, y = subset(x, y, cfg.train_size, cfg.seed)
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    model = TimeConditionalUNet(cfg.hidden, cfg.T, cfg.num_classes, cfg.objective).to(device)
    ema = EMA(model, cfg.ema) if cfg.ema else None
    schedule = schedule_for(cfg).to(device)
    check_fits(measure(model, lambda b: _blank_loss(model, schedule, cfg, b, device)), cfg.batch_size, device)
    x, y = x.to(device), (y.to(device) if y is not None else None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay ** (1 / cfg.epochs))
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    cpu = lambda m: {k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()}
    snapshots, raw, losses, start, before = {}, {}, [], time.perf_counter(), 0.0
    if resume is not None or init is not None:
        start_weights(resume if resume is not None else init, model, ema)
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        decay.load_state_dict(resume["decay"])
        g.set_state(resume["generator"])
        losses += resume["losses"]
        snapshots.update(resume["snapshots"])
        raw.update(resume["raw"])
        before = float(resume["seconds"])
    elapsed = lambda: before + time.perf_counter() - start  # all sessions
    loss = losses_for(cfg)

    def loss_fn(idx, step):
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=cfg.bf16):
            return loss(model, schedule, x[idx], y[idx] if cfg.num_classes else None, p_uncond=cfg.p_uncond,
                        generator=g).mean()

    def after_step(step: int, seconds: float):
        if step % steps_per_epoch:
            return
        decay.step()  # the handout's per-epoch decay
        epoch = step // steps_per_epoch
        if epoch in snapshot_epochs:
            snapshots[epoch] = cpu(ema.model if ema is not None else model)
            if ema is not None:
                raw[epoch] = cpu(model)
        if on_epoch is not None:
            state = {"epoch": epoch, "model": cpu(model), "ema": cpu(ema.model) if ema is not None else None,
                     "ema_num_updates": ema.num_updates if ema is not None else 0,
                     "optimizer": copy.deepcopy(opt.state_dict()),
                     "decay": decay.state_dict(), "generator": g.get_state(), "losses": list(losses),
                     "snapshots": dict(snapshots), "raw": dict(raw), "seconds": elapsed()}
            on_epoch(TrainedDDPM(None, None, losses, snapshots, elapsed(), raw), state)

    epochs = min(cfg.epochs, stop_after or cfg.epochs)
    fit(model, opt, epoch_batches(len(x), cfg.batch_size, g, device), loss_fn, epochs * steps_per_epoch,
        start=len(losses), losses=losses, ema=ema, hooks=FitHooks(after_step=after_step), progress=progress,
        desc=f"part B.2 {'flow matching' if cfg.objective == 'flow' else 'DDPM'} D={cfg.hidden}")
    final = ema.model if ema is not None else model
    return TrainedDDPM(final.cpu().eval(), schedule_for(cfg), losses, snapshots, elapsed(), raw)


def save_run(path, run: TrainedDDPM, cfg: TimeCondConfig, **info) -> None:
    """Write the snapshots (fp16: the file is shipped; loading upcasts), the raw weights beside an EMA, and the
    loss per step, atomically."""
    save_epoch_run(path, KIND, asdict(cfg), run.losses, run.seconds, run.snapshots, key="snapshots",
                   more_states={"raw": run.raw} if run.raw else None, **info)


class Snapshots(NamedTuple):
    config: TimeCondConfig
    schedule: Schedule
    models: dict  # epoch -> TimeConditionalUNet (eval, float32): the sampling weights (the EMA when config.ema)
    losses: list
    info: dict
    raw: dict  # epoch -> the trained weights without averaging, when the run kept an EMA; else {}

    @property
    def samples(self) -> Optional[dict]:
        """What add_samples stored: {"n", "seed", "w", "labels", "steps", "seconds", "sampled": {epoch: uint8
        (n, 28, 28)}, "raw": {epoch: ...}}, or None."""
        return self.info.get("samples")

    @property
    def epochs(self) -> int:
        """The epochs it trained: its config's, or fewer where it was stopped on that schedule (--stop-after)."""
        return int(self.info.get("stopped_after") or self.config.epochs)


def load_run(path=REFERENCE) -> Snapshots:
    """Load a run saved by save_run, or its export folder (python -m runio.export); CheckpointError (one line) if
    missing, foreign or broken."""
    def build(config: dict):
        cfg = TimeCondConfig(**config).validate()
        return cfg, lambda: TimeConditionalUNet(cfg.hidden, cfg.T, cfg.num_classes, cfg.objective)

    cfg, models, losses, info = load_epoch_run(path, KIND, "part-B.2", PROG, build, key="snapshots",
                                               more_keys=("raw",))
    raw = info.pop("raw", {})
    return Snapshots(cfg, schedule_for(cfg), models, losses, info, raw)


def read_resume(partial_path: str, cfg: TimeCondConfig) -> dict:
    """The state that continues the stopped run in partial_path (see train_timecond); CheckpointError (one
    line) if there is none, or if it was made with other settings."""
    if not os.path.exists(partial_path):
        raise CheckpointError(f"--resume: no {partial_path} to resume from (a run that was stopped leaves one)")
    ckpt = read_checkpoint(partial_path, KIND)
    if not isinstance(ckpt.get("resume"), dict):
        raise CheckpointError(f"--resume: {partial_path} holds no state to resume from; start again with --overwrite")
    # a field added since the run was started has its default there
    check_resumable(ckpt, asdict(cfg), partial_path, defaults=asdict(TimeCondConfig()))
    return ckpt["resume"]


GUIDANCE = 4.0  # w in (1 + w) eps(x, y) - w eps(x, null): the handout's gamma = 5


def add_samples(path, n: int = 100, seed: int = 0, progress: bool = False) -> dict:
    """Draw n samples with the full ancestral chain from every snapshot of the run at `path` (and from its
    final raw weights beside an EMA), and store them in the file as uint8 images, as the handout samples after
    epochs 1, 5, 10, 15 and 20. Sample i uses utils.generators(seed, n)[i] (runs made before that rule kept
    seed + i); a class run asks for label i % 10 with guidance
    GUIDANCE (gamma = 5). An unconditional run also stores its last epoch's samples from the same seeds started
    from utils.matched_prior ("matched"; the handout starts from N(0, I)). The report and the benchmark read
    these instead of sampling again."""
    run = load_run(path)
    steps = FLOW_STEPS if run.config.objective == "flow" else None  # Euler steps, or the full ancestral chain
    y = torch.arange(n) % 10 if run.config.num_classes else None
    w = GUIDANCE if run.config.num_classes else 0.0
    to_uint8 = lambda x: ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]
    start, drawn = time.perf_counter(), {"sampled": {}, "raw": {}, "matched": {}}
    last = max(run.models)
    # a class run's q(x_T) depends on y; a flow run's x at tau = 1 is exactly N(0, I)
    stats = None if run.config.num_classes or run.config.objective == "flow" else training_pixel_stats(run)
    if stats is None and not run.config.num_classes and progress:
        print(f"{path}: no pixel statistics of its training digits here, so no samples from the matched prior",
              file=sys.stderr)
    jobs = ([("sampled", e, m) for e, m in run.models.items()]
            + ([("raw", last, run.raw[last])] if last in run.raw else [])  # the EMA's measured effect
            + ([("matched", last, run.models[last])] if stats is not None else []))  # the prior's measured effect
    for group, epoch, model in tqdm(jobs, desc=f"sampling {os.path.basename(str(path))}", disable=not progress):
        drawn[group][epoch] = to_uint8(draw(model, run.schedule, n, seed, y=y, w=w,
                                            prior=stats if group == "matched" else None, steps=steps))
    ckpt = read_checkpoint(path, KIND)
    if stats is not None:
        ckpt["pixel_stats"] = stats
    ckpt["samples"] = {"n": n, "seed": seed, "w": w, "labels": y, "steps": steps or run.config.T,
                       "seconds": time.perf_counter() - start, **drawn}
    atomic_save(ckpt, path)
    return ckpt["samples"]


@torch.no_grad()
def draw(model: TimeConditionalUNet, schedule: Schedule, n: int, seed: int = 0, y=None, w: float = 0.0,
         progress: bool = False, prior: Optional[dict] = None, steps: Optional[int] = None) -> torch.Tensor:
    """n samples (n, 1, 28, 28) in [-1, 1]; sample i from utils.generators(seed, n)[i]. A DDPM draws with the full
    ancestral chain (or DDIM with `steps`), a flow model with `steps` Euler steps (default FLOW_STEPS).
    prior: None to start from N(0, I) (the handout), or pixel_stats {"mean", "var"} to start from
    utils.matched_prior (the same noise z, rescaled)."""
    gens = generators(seed, n)
    x_T = None
    if prior is not None:
        x_T = matched_prior(schedule, randn((n, 1, 28, 28), gens), prior["mean"], prior["var"])
    if getattr(model, "objective", "eps") == "flow":
        settings = flow_settings(steps or FLOW_STEPS, w=w)
    else:
        settings = SamplerSettings(w=w, steps=steps)
    return sample(model, schedule, n, y, settings, gens, shape=(1, 28, 28), progress=progress, x_T=x_T)


# how each TimeCondConfig field appears on the command line; a field not given keeps what the preset says
# (TimeCondConfig(), or TimeCondConfig.handout() with --handout), so the defaults are written into the help
OPTIONS = {
    "hidden": Option(int_range(1, 1024), f"D, channels (default {TimeCondConfig.hidden}; handout 64)"),
    "epochs": Option(positive_int, f"default {TimeCondConfig.epochs}"),
    "batch_size": Option(int_range(1, MAX_BATCH), f"default {TimeCondConfig.batch_size} (handout 128)"),
    "lr": Option(positive_float, f"default {TimeCondConfig.lr}"),
    "seed": Option(seed_int, f"default {TimeCondConfig.seed}"),
    "ema": Option(probability, f"EMA decay of the sampled weights (default {TimeCondConfig.ema}; 0 = none, as the "
                  "handout)"),
    "train_size": Option(nonneg_int, "train on a class-stratified subset of this many digits, so that 20 epochs fit a "
                         "budget (default 0 = all)"),
    "bf16": Option(bool, "bf16 autocast in training (fp32 weights): faster on a CPU with bf16 instructions (measured at "
                   "D = 64, batch 128: Intel AMX 0.72 against 1.8 s per step on one thread; AMD Zen 4 (avx512_bf16) "
                   "0.78 against 1.6 s on two), slower on one without; the weights differ from an fp32 run's"),
    "objective": Option(OBJECTIVES, "eps: DDPM, predicting the noise (the fall 2024 handout, default); flow: flow "
                        "matching, predicting the velocity of the straight path (the fall 2025 handout; with --handout "
                        "its recipe: batch 64, 10 epochs, lr 1e-2); sampled with 50 Euler steps"),
    "init_from": Option(str, "start from the last weights of the finished run RUN (its trained weights, and its EMA "
                        "beside an EMA) instead of random ones, with a fresh Adam at --lr decayed over --epochs: a run "
                        "trained longer in a second stage. Epochs count from 1 again; the new file records RUN's "
                        "sha256 and config", metavar="RUN"),
}


def build_parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, TimeCondConfig, OPTIONS)
    p.add_argument("--classes", action="store_true", help="the handout's class-conditional model (10 labels, "
                   "label dropout 0.1) instead of the unconditional one")
    p.add_argument("--handout", action="store_true", help="the handout's recipe: D = 64, every digit, no EMA, and "
                   "batch 128 for 20 epochs (DDPM) or batch 64 for 10 epochs at lr 1e-2 (--objective flow); other "
                   "flags given still override it")
    p.add_argument("--samples", type=nonneg_int, default=100, help="samples drawn after training from each "
                   "snapshot and kept in the run for the report (default 100; 0: none)")
    p.add_argument("--add-samples", metavar="RUN", default=None, help="only draw and store --samples samples in an "
                   "existing run file (what training does at its end)")
    p.add_argument("--threads", type=int_range(1, 1024), default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (default, how the shipped run was made), cuda, mps or auto")
    p.add_argument("--out", default="runs/timecond", help="folder for timecond.pt and its loss curve "
                   "timecond_loss.csv / .png (default runs/timecond); while "
                   "training, the run so far is kept in OUT/timecond.partial.pt after every epoch (for --resume)")
    p.add_argument("--stop-after", type=positive_int, default=None, metavar="EPOCH", help="end after this epoch, "
                   "with the learning rate on the full --epochs schedule: the first EPOCH epochs of that run, "
                   "exactly, saved as a finished file (a run too long for the machine, kept as far as it fits; the "
                   "report says so)")
    p.add_argument("--resume", action="store_true", help="continue the stopped run in OUT/timecond.partial.pt "
                   "from its last finished epoch (give the flags it was started with); the result is the run that "
                   "was never stopped")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT/timecond.pt (and a stopped "
                   "run's OUT/timecond.partial.pt)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from(args) -> TimeCondConfig:
    """The run's config: the preset (the handout's recipe with --handout, else the defaults) with --classes'
    labels, and every config flag given replacing the preset's value."""
    preset = TimeCondConfig.handout if args.handout else TimeCondConfig
    objective = {"objective": args.objective} if getattr(args, "objective", None) else {}
    return config_from_args(TimeCondConfig, args, preset(num_classes=10 if args.classes else 0, **objective))


def add_samples_command(args) -> int:
    """--add-samples RUN: draw --samples samples from every snapshot of RUN and store them in it."""
    try:
        got = add_samples(args.add_samples, args.samples or 100, progress=not args.quiet)
    except (OSError, CheckpointError) as e:
        error_line(PROG, str(e))
        return 2
    print(f"{args.add_samples}: stored {got['n']} samples from each of {len(got['sampled']) + len(got['raw'])} "
          f"snapshots in {got['seconds']:.0f} s")
    return 0


def continued_run(cfg: TimeCondConfig) -> tuple[Optional[dict], dict]:
    """--init-from: (init_state of the finished run cfg.init_from, what the new file records of that run);
    (None, {}) for a run from random weights. CheckpointError (one line) for a missing, foreign or stopped run."""
    if not cfg.init_from:
        return None, {}
    src = load_run(cfg.init_from)
    if not src.info.get("finished"):
        raise CheckpointError(f"--init-from: {cfg.init_from} is a stopped run; finish it with --resume first")
    return init_state(src, cfg), {"init_from": {"sha256": file_sha256(cfg.init_from), "config": asdict(src.config),
                                                "steps": len(src.losses)}}


def train_command(args, cfg: TimeCondConfig) -> int:
    """Train cfg into OUT/timecond.pt, keeping the run so far in OUT/timecond.partial.pt after every epoch, then
    draw --samples samples from each snapshot; every place and file is checked before the data is loaded."""
    path = os.path.join(args.out, "timecond.pt")
    partial_path = os.path.join(args.out, "timecond.partial.pt")  # beside the run: an old run stays whole
    try:
        device = resolve_device(args.device)
        check_output(path, args.overwrite, rerun=False, checkpoint=True)  # before training: a bad --out fails now, not after 19 minutes
        resume = read_resume(partial_path, cfg) if args.resume else None
        init, source = continued_run(cfg)  # before the data: a bad RUN fails now
        if resume is None and os.path.exists(partial_path) and not args.overwrite:
            raise OutputError(f"{partial_path} holds a stopped run; continue it with --resume (and the flags it was "
                              "started with), or replace it with --overwrite")
        data = load_mnist(download=True, verbose=not args.quiet)  # full MNIST when present or downloadable
        last = min(cfg.epochs, args.stop_after or cfg.epochs)
        epochs = sorted({e for e in SNAPSHOT_EPOCHS if e <= last} | {last})
        stopped = {"stopped_after": last} if last < cfg.epochs else {}  # not in the config: a stopped run resumes
        info = dict(data_source=data.source, threads=args.threads, device=str(device), **stopped,
                    pixel_stats=pixel_stats(subset(data.train_x, data.train_y, cfg.train_size, cfg.seed)[0]), **source)

        def with_losses(file, run, **more):  # the run file and its loss curve beside it: one set
            write_all({file: lambda tmp: save_run(tmp, run, cfg, **more, **info),
                       **{os.path.join(args.out, f): w for f, w in loss_files(run.losses, "timecond_loss").items()}})

        run = train_timecond(data.train_x, data.train_y, cfg, epochs, progress=not args.quiet, device=device,
                             on_epoch=lambda run, state: with_losses(partial_path, run, finished=False, resume=state),
                             resume=resume, init=init, stop_after=last)
        with_losses(path, run, finished=True)
        if os.path.exists(partial_path):
            os.remove(partial_path)
        if args.samples:
            add_samples(path, args.samples, progress=not args.quiet)
    except Exception as e:
        return command_error(PROG, e, lambda: f"--batch-size {cfg.batch_size}; lower it (or --hidden)")
    n = min(20, len(run.losses))  # the mean over the steps there were, not a nominal 20
    print(f"{data.describe()}; {len(run.losses)} steps in {run.seconds:.0f} s; loss {run.losses[0]:.3f} -> "
          f"{sum(run.losses[-n:]) / n:.4f} (mean of the last {n}); snapshots at epochs {epochs} in {path}")
    if cfg.objective == "flow":  # the fall 2025 pages read the shipped runs
        print(f"next: cp {path} mnist/reference/flow_timecond{'_class' if cfg.num_classes else ''}.pt, then python "
              "visualize.py --problem cs180-fm (figures and measured text)")
    else:
        print(f"next: python -m cs180.partb_pages --parts b2 --timecond {path}   (figures and measured text)")
    return 0


def main(argv: Optional[list] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    cfg = config_from(args)
    try:
        cfg.validate()
    except ValueError as e:
        p.error(str(e))
    if args.resume and args.overwrite:
        p.error("--resume continues the stopped run in --out and --overwrite replaces it; give one of them")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return add_samples_command(args) if args.add_samples else train_command(args, cfg)
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process (visualize.py --retrain)


if __name__ == "__main__":
    sys.exit(run_command(main, "cs180.timecond",
                         "the run so far is kept in OUT/timecond.partial.pt at every finished epoch; continue it with --resume"))
