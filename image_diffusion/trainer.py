"""The image trainer (colour images and any image folder) and its checkpoints. Its steps run through
utils.fit, the one loop every trainer of the package uses; this module owns what is its own: the
seeded batch stream, the per-sample loss, DDP, and the run folder.

    result = train(cfg, load_images(...), out="runs/cifar10")

Each step draws a global batch of `cfg.batch_size` images and minimises the simplified loss of
Ho et al. (2020), Eq. 14, ||eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t, y)||
(L2, or L1 as in seed 004's tutorial), with t ~ U{1..T}. Adam with a linear warm-up, gradient-norm
clipping, an EMA of the weights (what is saved and sampled).

Reproducible whatever the split. The global batch of step s is positions s*B .. s*B + B - 1 of a
stream that walks through one seeded permutation of the dataset per epoch; every sample's flip,
timestep, label dropout and noise come from its own generator, seeded by (run seed, step, position).
Under torchrun each of the N processes takes B/N consecutive positions and DDP averages the
gradients, so one process and N processes train the same model up to float rounding. Dropout masks
too: every process seeds its torch RNG by (seed, step), draws each layer's mask for the whole global
batch and keeps its own rows (unet.global_batch_dropout), which is what one process draws.
Not torch's DistributedSampler: it pads or trims each epoch to a multiple of N, so the images seen
would depend on N; StepBatches gives each process its slice of the one global stream instead.
The same seeds make --resume continue bit-identically: nothing random is carried between steps.

Rank 0 alone writes: model.pt (EMA weights + full config), state.pt (everything --resume needs),
loss.csv and loss.png, as one set swapped into the run folder at every save (runio.runs.save_set): a
kill at any moment leaves the whole last save.
On CUDA: bf16 autocast, channels_last, pinned-memory DataLoader workers, optional torch.compile.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from report.figures import loss_files
from runio.checkpoints import Loaded, check_resumable, read_checkpoint, restore
from runio.cli import resolve_device
from runio.errors import CheckpointError, first_line
from runio.export import read_model
from runio.files import atomic_save, torch_save
from runio.memory import check_fits, measure
from runio.runs import save_set
from utils import EMA, FitHooks, Schedule, check_finite_weights, fit, make_schedule, mix, p_losses

from .data import Images, hflip, worker_error
from .presets import Config
from .unet import UNet, UNetConfig, from_mnist_config, global_batch_dropout

KIND = "image-diffusion"
MNIST_KIND = "ddpm-mnist"  # problem 5's checkpoints (mnist.checkpoint.KIND): this core's UNet in MNIST's configuration
RESUME_KIND = "image-diffusion-resume"
RUN_FILES = ("model.pt", "state.pt", "loss.csv", "loss.png", "samples.png", "trajectory.png")
# settings a resumed run may change: they do not change what is computed
RESUMABLE = ("steps", "device", "workers", "compile", "save_every", "sample_n", "sample_sampler", "sample_steps",
             "sample_eta", "download",
             "data_root")


# ======================================================= seeds and batches
def sample_generators(seed: int, step: int, positions) -> list:
    """One CPU generator per sample, seeded by (run seed, step, global position in the batch)."""
    return [torch.Generator().manual_seed(mix(seed, step, int(p))) for p in positions]


class Distributed(NamedTuple):
    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "Distributed":
        return cls(dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else cls()

    def positions(self, step: int, batch_size: int) -> range:
        """This process's positions of step `step`'s global batch: a contiguous batch_size / world slice."""
        b = batch_size // self.world
        return range(step * batch_size + self.rank * b, step * batch_size + (self.rank + 1) * b)


class StepBatches(Sampler):
    """Dataset indices of this process's share of each step's batch, steps start..end - 1.
    Position p of the stream is index perm_e[p mod N] of epoch e = p // N, perm_e seeded by (seed, e)."""

    def __init__(self, n: int, cfg: Config, part: Distributed, start: int, end: int):
        self.n, self.cfg, self.part, self.start, self.end = n, cfg, part, start, end

    def __len__(self):
        return self.end - self.start

    def __iter__(self):
        epoch, perm = None, None
        for step in range(self.start, self.end):
            batch = []
            for p in self.part.positions(step, self.cfg.batch_size):
                if p // self.n != epoch:
                    epoch = p // self.n
                    perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(mix(self.cfg.seed, epoch)))
                batch.append(int(perm[p % self.n]))
            yield batch


# ================================================================== the loss
def per_sample_losses(model, schedule: Schedule, x0: torch.Tensor, y: Optional[torch.Tensor], generators: list,
                      loss: str = "l2", p_uncond: float = 0.1, num_classes: int = 0) -> torch.Tensor:
    """utils.p_losses with every random draw from the sample's own generator, after a horizontal flip (p = 1/2)
    drawn first from the same generator: per sample, flip, t, label dropout (used only when num_classes > 0),
    eps. x0: (B, C, H, W) in [-1, 1]; y: (B,) labels or None. Returns (B,)."""
    flip = torch.stack([torch.rand((), generator=g) < 0.5 for g in generators]).to(x0.device)
    return p_losses(model, schedule, hflip(x0, flip), y if num_classes else None, loss, p_uncond, generators,
                    num_classes=num_classes)


def learning_rate(cfg: Config, step: int) -> float:
    """Linear warm-up over cfg.warmup steps, then constant (Ho et al. 2020, App. B)."""
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else cfg.lr


# ============================================================== checkpoints
def save_model(path, ema_model: UNet, cfg: Config, **info) -> None:
    """model.pt: the EMA weights with the full Config and the UNet and schedule it defines, atomically."""
    state = ema_model.state_dict()
    check_finite_weights(state, "the EMA model")
    atomic_save({"kind": KIND, "config": cfg.as_dict(), "unet": ema_model.config.as_dict(),
                 "schedule": cfg.noise_schedule().config(), "model": state, **info}, path)


def load_model(path, device="cpu") -> Loaded:
    """A model.pt from train(), or a problem 5 MNIST checkpoint (python -m mnist.train; the shipped
    mnist/reference/model.pt), whose network is this UNet too, or the export folder of either (runio.export);
    CheckpointError (one line) if it is missing, foreign or broken."""
    ckpt = read_model(path, (KIND, MNIST_KIND), train_hint="python -m image_diffusion.train --preset NAME --data DIR")
    mnist = ckpt["kind"] == MNIST_KIND
    try:
        cfg = None if mnist else Config.from_dict(ckpt["config"])
        model = from_mnist_config(ckpt["model_config"]) if mnist else UNet(UNetConfig.from_dict(ckpt["unet"]))
        model.load_state_dict(ckpt["model"])
        schedule = make_schedule(**ckpt["schedule"])
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: the weights do not match the model its config describes ({first_line(e)}); "
                              "retrain it") from None
    stored = ("kind", "config", "unet", "model_config", "schedule", "model")
    info = {k: v for k, v in ckpt.items() if k not in stored}
    return Loaded(model.to(device).eval(), schedule, cfg, info)


# ================================================================ training
class TrainResult(NamedTuple):
    model: UNet  # the EMA weights, eval mode
    schedule: Schedule
    losses: list  # mean loss per step, all sessions
    seconds: float  # training wall time, all sessions
    step: int  # steps done


def _check(cfg: Config, data: Images) -> Distributed:
    """Before training: the config is valid and fits the data and the torchrun processes (ValueError otherwise)."""
    cfg.validate()
    part = Distributed.current()
    if cfg.batch_size % part.world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {part.world} processes")
    if cfg.num_classes and data.num_classes < 2:
        raise ValueError(f"num_classes={cfg.num_classes} but {data.source} has no classes; use --num-classes 0")
    if cfg.num_classes and data.num_classes > cfg.num_classes:
        raise ValueError(f"{data.source} has {data.num_classes} classes but num_classes={cfg.num_classes}")
    return part


def _check_memory(cfg: Config, model: UNet, schedule: Schedule, device, part: Distributed) -> None:
    """Refuse, before the first step, a batch whose step would not fit in memory (runio.memory): the kernel's
    out-of-memory kill cannot be caught. Measured on this loss with blank images and seeds of its own."""
    shape = (cfg.channels, cfg.resolution, cfg.resolution)

    def loss_of_batch(b: int):
        x0 = torch.zeros(b, *shape, device=device)
        y = torch.zeros(b, dtype=torch.long, device=device) if cfg.num_classes else None
        gens = [torch.Generator().manual_seed(i) for i in range(b)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and cfg.amp):
            return per_sample_losses(model, schedule, x0, y, gens, cfg.loss, cfg.p_uncond, cfg.num_classes).mean()

    check_fits(measure(model, loss_of_batch), cfg.batch_size, device, processes=part.world)


def _device(cfg: Config, part: Distributed) -> torch.device:
    """--device, and under torchrun on CUDA this process's GPU (LOCAL_RANK)."""
    device = resolve_device(cfg.device)
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if device.type == "cuda" and part.world > 1 else device


def _loader(data: Images, cfg: Config, part: Distributed, start: int, end: int, cuda: bool) -> DataLoader:
    """This process's share of the batches of steps start..end - 1 (StepBatches), with workers on CUDA."""
    workers = cfg.workers if cfg.workers >= 0 else (4 if cuda else 0)
    return DataLoader(data, batch_sampler=StepBatches(len(data), cfg, part, start, end), num_workers=workers,
                      pin_memory=cuda, persistent_workers=False)


def train(cfg: Config, data: Images, out: Optional[str] = None, resume: bool = False, progress: bool = True,
          stop_at: Optional[int] = None, max_seconds: Optional[float] = None) -> TrainResult:
    """Train cfg's UNet on `data`; under torch.distributed (torchrun) on this process's share of each batch.

    out: run folder (rank 0 writes it; None writes nothing); resume: continue out/state.pt; stop_at:
    end this session after that step, saving as an interruption would; max_seconds: end when the
    session's training time reaches it (a wall-clock budget). NonFiniteError if the loss is nan or inf.
    """
    part = _check(cfg, data)
    device = _device(cfg, part)
    cuda = device.type == "cuda"
    schedule = cfg.noise_schedule()
    torch.manual_seed(cfg.seed)  # the initial weights, identical on every process
    model = UNet(cfg.unet()).to(device)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    _check_memory(cfg, model, schedule, device, part)
    start, losses, seconds_before = 0, [], 0.0
    if resume:
        start, losses, seconds_before = _restore(out, cfg, model, ema, opt)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    net = DistributedDataParallel(model, device_ids=[device.index] if cuda else None) if part.world > 1 else model
    net = torch.compile(net) if cfg.compile else net

    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    loader = _loader(data, cfg, part, start, end, cuda)
    writer = out is not None and part.rank == 0

    saved = [resume]  # whether `out` holds a save of this run (a resumed run's is its last one)

    def save(step: int, seconds: float):
        """model.pt, state.pt, loss.csv and loss.png of this step, as one set swapped into `out` (save_set): the
        grids of an earlier save, now stale, leave with the old set."""
        check_finite_weights(model.state_dict(), "the model being trained")
        state = {"kind": RESUME_KIND, "config": cfg.as_dict(), "step": step, "seconds": seconds,
                 "model": model.state_dict(), "ema": ema.model.state_dict(), "ema_num_updates": ema.num_updates,
                 "optimizer": opt.state_dict(), "losses": losses}
        save_set(out, {"model.pt": lambda p: save_model(p, ema.model, cfg, step=step, seconds=seconds,
                                                        data=data.source, world_size=part.world),
                       "state.pt": lambda p: torch_save(state, p), **loss_files(losses)})
        saved[0] = True

    def batches():
        try:
            yield from loader
        except Exception as e:  # a DataError in a worker comes back with the worker's traceback in its message
            raise (worker_error(e) or e) from None

    def loss_fn(batch, step):
        x0, y = batch
        torch.manual_seed(mix(cfg.seed, step, 0))  # dropout masks, the same on every process (the 0 keeps earlier runs)
        x0, y = x0.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if cuda:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        generators = sample_generators(cfg.seed, step, part.positions(step, cfg.batch_size))
        with (torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and cfg.amp),
              global_batch_dropout(cfg.batch_size, part.rank * (cfg.batch_size // part.world))):
            return per_sample_losses(net, schedule, x0, y, generators, cfg.loss, cfg.p_uncond, cfg.num_classes).mean()

    def after_step(step: int, seconds: float):
        if writer and step % cfg.save_every == 0 and step < end:
            save(step, seconds_before + seconds)

    hooks = FitHooks(lr_at=lambda step: learning_rate(cfg, step), after_step=after_step,
                     mean=lambda loss: _mean_over_processes(loss.detach(), part),
                     stop=None if max_seconds is None else lambda seconds: _any_process(seconds >= max_seconds, device),
                     stopped_note=lambda: (f"the last save is kept in {out}" if out is not None and saved[0] else
                                           "nothing was saved"))
    done = fit(model, opt, batches(), loss_fn, end, hooks=hooks, total=cfg.steps, start=start, losses=losses,
               grad_clip=cfg.grad_clip, ema=ema, progress=progress and part.rank == 0,
               desc=f"training {cfg.resolution}px T={cfg.T}")
    step = done.step
    seconds = seconds_before + done.seconds
    if writer and step > start:
        save(step, seconds)
    if part.world > 1:
        dist.barrier()  # the files are in place before any process returns
    return TrainResult(ema.model.eval(), schedule, losses, seconds, step)


def _mean_over_processes(loss: torch.Tensor, part: Distributed) -> float:
    """The global batch's mean loss (every process gets the same number)."""
    if part.world > 1:
        loss = loss.float().clone()
        dist.all_reduce(loss)
        loss /= part.world
    return loss.item()


def _any_process(flag: bool, device) -> bool:
    """True on every process when `flag` is True on any (so all stop at the same step)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _restore(out: str, cfg: Config, model: UNet, ema: EMA, opt) -> tuple:
    """Load out/state.pt into model, ema and opt; returns (step, losses, seconds). CheckpointError (one line)
    if it is foreign, broken, made with other settings, or already past cfg.steps."""
    path = os.path.join(out, "state.pt")
    state = read_checkpoint(path, RESUME_KIND)
    try:
        stored = Config.from_dict(state["config"]).as_dict()
        step, losses, seconds = int(state["step"]), list(state["losses"]), float(state["seconds"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} is broken ({first_line(e)}); start the run again with --overwrite") from None
    check_resumable({**state, "config": stored, "step": step}, cfg.as_dict(), out, may_change=RESUMABLE)
    restore(state, path, model=model, ema=ema.model, optimizer=opt)
    ema.num_updates = int(state["ema_num_updates"])
    return step, losses, seconds
