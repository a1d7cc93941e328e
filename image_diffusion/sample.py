"""Sample a trained image model: a grid of images and a trajectory figure. The package's one sampling
CLI: it takes the colour runs of image_diffusion.train and problem 5's MNIST checkpoints alike (the same
UNet). mnist.sample is problem 5's digit-by-digit front end on the same sampler.

    python -m image_diffusion.sample --checkpoint runs/cifar10/model.pt            # writes beside it
    python -m image_diffusion.sample --checkpoint RUN/model.pt --steps 50 --w 2    # DDIM-50, guided
    python -m image_diffusion.sample --checkpoint mnist/reference/model.pt --out runs/p5 --w 4
    python -m image_diffusion.sample --checkpoint RUN/model.pt --gif                 # + reverse.gif of the grid

The sampler is utils.py's: the full ancestral chain of Ho et al. (2020), Alg. 2 (--steps 0), or
DDIM with --steps S (Song et al. 2021). A class-conditional model draws the classes in turn with
classifier-free guidance of scale --w (Ho & Salimans 2022). Every image has its own generator,
seeded by (--seed, image index), so an image does not depend on --n or the device batch. --gif also
writes reverse.gif: the grid's own chain (its last frame is samples.png's grid), x_t at GIF_FRAMES of the
visited timesteps from T to 0, looping.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Optional

import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm
from torchvision.utils import make_grid

from runio.cli import (Parser, command_error, int_range, nonneg_float, nonneg_int, positive_int, resolve_device,
                       run_command, seed_int, unit_float)
from report.animation import gif_writer, image_frames, trajectory_steps
from runio.files import atomic_write, check_output, replacing_all, savefig
from solvers import SAMPLERS, settings_for
from utils import (SPACINGS, SamplerSettings, Schedule, Trajectory, as_labels, generators, p_sample_loop, randn, sample,
                   visited)

from .trainer import load_model

DEFAULT_W = 2.0  # guidance scale for class-conditional models
GIF_FRAMES = 30  # reverse.gif: x_t at this many visited timesteps (a 64-image grid stays under about 2 MB)


def labels_for(model, n: int) -> Optional[torch.Tensor]:
    """Classes 0, 1, ..., num_classes - 1, 0, ... for a class-conditional model; None otherwise."""
    return torch.arange(n) % model.num_classes if model.num_classes else None


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped."""
    return ((x + 1) / 2).clamp(0, 1)


def grid_figure(x: torch.Tensor, nrow: int = 8) -> Figure:
    """x (N, C, H, W) in [-1, 1] as one image grid, nrow images per row."""
    grid = make_grid(to_unit(x.float().cpu()), nrow=nrow, padding=2, pad_value=1.0)  # (3, H', W')
    return _image_figure(grid, dpi=max(100, grid.shape[-1] // 6))


def save_grid(x: torch.Tensor, path: str, nrow: int = 8) -> None:
    """grid_figure as a PNG at `path`, written atomically."""
    fig = grid_figure(x, nrow)
    atomic_write(path, lambda tmp: savefig(fig, path, tmp))


def _image_figure(grid: torch.Tensor, dpi: int, title: str = "", xticks=None) -> Figure:
    h, w = grid.shape[-2:]
    fig = Figure(figsize=(w / dpi * 1.5 + 0.2, h / dpi * 1.5 + (0.5 if title or xticks else 0.1)), dpi=dpi)
    ax = fig.subplots()
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_yticks([])
    ax.set_xticks([] if xticks is None else xticks[0], [] if xticks is None else xticks[1])
    ax.tick_params(length=0, labelsize=7)
    if title:
        ax.set_title(title, fontsize=8)
    for s in ax.spines.values():
        s.set_visible(False)
    fig.tight_layout(pad=0.2)
    return fig


@torch.no_grad()
def trajectory(model, schedule: Schedule, n: int = 8, columns: int = 8, y=None,
               settings: SamplerSettings = SamplerSettings(), seed: int = 0, progress: bool = False) -> tuple:
    """The reverse chain of n images, kept at `columns` of the timesteps the sampler visits, from T down to 0
    (only those are stored, so the full 1000-step chain fits in memory). Returns (x (columns, n, C, H, W),
    timesteps list)."""
    cfg = model.config
    device = next(model.parameters()).device
    ts = visited(schedule, settings)
    keep = sorted({ts[round(i * (len(ts) - 1) / (columns - 1))] for i in range(columns)}, reverse=True)
    x = randn((n, cfg.in_channels, cfg.resolution, cfg.resolution), generators(seed, n), device)
    frames = [x.cpu()] if ts[0] in keep else []
    model.eval()
    loop = p_sample_loop(model, schedule, x, y, settings, generators(seed, n))
    for step in tqdm(loop, total=len(ts) - 1, desc="trajectory", leave=False, disable=not progress):
        if step.t_prev in keep:
            frames.append(step.x.cpu())
    return torch.stack(frames), keep


@torch.no_grad()
def reverse_process(model, schedule: Schedule, n: int, y=None, settings: SamplerSettings = SamplerSettings(),
                    seed: int = 0, frames: int = GIF_FRAMES, progress: bool = False) -> tuple:
    """The grid's own chain: the same noise and generators as `sample` draws the grid with (so its last state
    is that grid, bit for bit), keeping x_t and x0_hat at `frames` of the visited timesteps, first and last
    included (only those are stored). Returns (x_0 (n, C, H, W), utils.Trajectory of the kept steps)."""
    cfg = model.config
    device = next(model.parameters()).device
    gens = generators(seed, n)
    x = randn((n, cfg.in_channels, cfg.resolution, cfg.resolution), gens, device)
    y = as_labels(y, n, model.num_classes, device)
    ts = visited(schedule, settings)
    k = min(frames, len(ts))
    keep = {ts[round(i * (len(ts) - 1) / max(1, k - 1))] for i in range(k)}
    kept_t, xs, x0s, t = [], [], [], ts[0]
    model.eval()
    for step in tqdm(p_sample_loop(model, schedule, x, y, settings, gens), total=len(ts) - 1, desc="sampling",
                     leave=False, disable=not progress):
        if t in keep:  # x_t, and the clean image predicted from it
            kept_t, xs, x0s = kept_t + [t], xs + [x.cpu()], x0s + [step.x0_hat.cpu()]
        x, t = step.x, step.t_prev
    traj = Trajectory(torch.tensor(kept_t + [0]), torch.stack(xs + [x.cpu()]), torch.stack(x0s + [x.cpu()]))
    return x, traj


def describe(settings: SamplerSettings) -> str:
    """The sampler in a few words, for a figure's title."""
    if settings.solver is not None:
        return f"{settings.solver.name} ({settings.solver.spacing} spacing), {settings.steps} steps"
    if settings.steps is None:
        return "ancestral, all steps"
    return f"DDIM, {settings.steps} steps, eta {settings.eta:g}"


def write_figures(model, schedule: Schedule, folder: str, n: int = 64,
                  settings: SamplerSettings = SamplerSettings(w=DEFAULT_W), seed: int = 0,
                  progress: bool = False, gif: bool = False) -> tuple:
    """folder/samples.png and folder/trajectory.png (figure_files), and with gif=True folder/reverse.gif, written
    as one set. Returns their paths."""
    files = figure_files(model, schedule, n, settings, seed, progress, gif)
    paths = [os.path.join(folder, f) for f in files]
    with replacing_all(paths) as tmps:  # one set: both, or neither
        for write, tmp in zip(files.values(), tmps):
            write(tmp)
    return tuple(paths)


def figure_files(model, schedule: Schedule, n: int = 64, settings: SamplerSettings = SamplerSettings(w=DEFAULT_W),
                 seed: int = 0, progress: bool = False, gif: bool = False) -> dict:
    """Sample and draw {file name: write(path)}: samples.png (n images) and trajectory.png (the first 8
    images' chains, whose last column is the grid's first 8 images), with any sampler (settings; its w is
    used for class-conditional models only); gif=True adds reverse.gif, the grid's chain from x_T to the grid
    (reverse_process). progress: bars with time estimates for both."""
    device = next(model.parameters()).device
    cfg = model.config
    y = labels_for(model, n)
    settings = settings if y is not None else replace(settings, w=0.0)
    nrow = max(1, round(n ** 0.5))
    if gif:
        x, chain = reverse_process(model, schedule, n, y, settings, seed, progress=progress)
    else:
        x = sample(model, schedule, n, y, settings, generators(seed, n),
                   shape=(cfg.in_channels, cfg.resolution, cfg.resolution), device=device, progress=progress)
    samples_fig = grid_figure(x, nrow=nrow)
    k = min(8, n)
    frames, ts = trajectory(model, schedule, k, 8, None if y is None else y[:k], settings, seed, progress)
    cols, rows = frames.shape[0], frames.shape[1]
    grid = make_grid(to_unit(frames.transpose(0, 1).reshape(-1, *frames.shape[2:])), nrow=cols, padding=2,
                     pad_value=1.0)
    cell = grid.shape[-1] / cols
    traj_fig = _image_figure(grid, dpi=max(100, grid.shape[-1] // 6), title=f"x_t from t = T to 0 "
                             f"({describe(settings)}); {rows} images",
                             xticks=([cell * (i + 0.5) for i in range(cols)], [f"t={t}" for t in ts]))
    files = {"samples.png": lambda path: savefig(samples_fig, path), "trajectory.png": lambda path: savefig(traj_fig, path)}
    if gif:
        frames = image_frames(trajectory_steps(chain.t, chain.x, None, count=len(chain.t)), columns=nrow, scale=1,
                              title=f"{describe(settings)}")
        files["reverse.gif"] = gif_writer(frames)
    return files


# ======================================================================= CLI
def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m image_diffusion.sample", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="a model.pt of python -m image_diffusion.train, or of python -m mnist.train (problem 5; "
                        "the shipped one is mnist/reference/model.pt)")
    p.add_argument("--out", default=None, help="folder for samples.png and trajectory.png (default: the checkpoint's)")
    p.add_argument("--n", type=int_range(1, 1024), default=64, help="images in the grid (default %(default)s)")
    p.add_argument("--steps", type=nonneg_int, default=None,
                   help="network evaluations: 0 for the full ancestral chain, else S steps of --sampler (default: the "
                        "run's sample_steps)")
    p.add_argument("--sampler", choices=SAMPLERS, default=None,
                   help="ddpm, ddim, or diffusers' dpm++, unipc, euler (default: the run's sample_sampler; DDPM's full "
                        "chain for problem 5's checkpoints)")
    p.add_argument("--spacing", choices=SPACINGS, default=None,
                   help="how --steps are spread over 1..T (default: the sampler's; see utils.ddim_timesteps)")
    p.add_argument("--eta", type=unit_float, default=None,
                   help="DDIM's eta: 0 deterministic, 1 stochastic (ancestral on the DDIM steps); default: the run's "
                        "sample_eta")
    p.add_argument("--w", type=nonneg_float, default=DEFAULT_W,
                   help="classifier-free guidance scale, class-conditional models only (default %(default)s)")
    p.add_argument("--seed", type=seed_int, default=0, help="default %(default)s")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch (default %(default)s)")
    p.add_argument("--gif", action="store_true",
                   help=f"also write reverse.gif: the grid forming from noise, x_t at {GIF_FRAMES} of the visited "
                        "timesteps from T to 0, looping")
    p.add_argument("--overwrite", action="store_true",
                   help="replace samples.png / trajectory.png (and reverse.gif) if present")
    return p


def cli_settings(args, config, schedule: Schedule) -> SamplerSettings:
    """The sampler of the command line, each setting defaulting to the run's (config; None for problem 5's
    checkpoints: the full chain)."""
    run = (config.sample_sampler, config.sample_steps, config.sample_eta) if config is not None else ("ddpm", 0, 0.0)
    name = args.sampler or run[0]
    steps = run[1] if args.steps is None else args.steps
    if steps > schedule.T:
        raise ValueError(f"--steps {steps} is more than the model's T={schedule.T}")
    return settings_for(name, steps or None, run[2] if args.eta is None else args.eta, args.w, args.spacing)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prog = "image_diffusion.sample"
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        loaded = load_model(args.checkpoint, resolve_device(args.device))
        if os.path.isdir(args.checkpoint) and not args.out:
            raise ValueError(f"--checkpoint {args.checkpoint} is an export folder; give --out for the figures")
        out = args.out or os.path.dirname(os.path.abspath(args.checkpoint))
        settings = cli_settings(args, loaded.config, loaded.schedule)
        for name in ("samples.png", "trajectory.png") + (("reverse.gif",) if args.gif else ()):
            check_output(os.path.join(out, name), args.overwrite, rerun=False)
        paths = write_figures(loaded.model, loaded.schedule, out, args.n, settings, args.seed, progress=True,
                              gif=args.gif)
    except Exception as e:  # one line for what a user can fix (runio.cli.command_error); a traceback for a bug
        return command_error(prog, e, lambda: f"--n {args.n}; lower it")
    finally:
        torch.set_num_threads(threads)
    print(f"wrote {', '.join(paths[:-1])} and {paths[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "image_diffusion.sample", "nothing was written; run it again"))
