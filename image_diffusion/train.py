"""Train an image DDPM from a named preset.

    python -m image_diffusion.train --preset cifar10-32 --data data/cifar/train --steps 200
    python -m image_diffusion.train --preset cifar10-32 --data data/cifar/train --steps 400 --resume
    torchrun --nproc_per_node=2 -m image_diffusion.train --preset cifar10-32 --steps 200   # DDP (gloo/nccl)

--preset NAME picks every setting; any option below overrides one (--T 500, --mults 1,2,2,
--attn-resolutions none, --num-classes 10). --data is "cifar10" or "stl10" (torchvision's copy in
--data-root, downloaded if missing and possible) or a folder of images (class subfolders or flat).
Writes OUT/model.pt (EMA weights + the full config), OUT/state.pt (for --resume), loss.csv,
loss.png, and at the end samples.png and trajectory.png. The global --batch-size is split over the
torchrun processes, and the result does not depend on how many there are.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

import torch
import torch.distributed as dist

from runio.cli import (MAX_BATCH, MAX_T, Option, Parser, add_config_arguments, command_error, config_from_args,
                       error_line, int_range, nonneg_int, positive_float, positive_int, probability, run_command,
                       seed_int, unit_float)
from runio.errors import OutputError, first_line
from runio.locks import folder_lock
from runio.runs import check_run_folder, save_set
from solvers import SAMPLERS, settings_for
from utils import SCHEDULES

from .data import DataError, load_images
from .presets import PRESETS, Config, describe_presets, get_preset
from .sample import DEFAULT_W, figure_files
from .trainer import RUN_FILES, Distributed, train
from .unet import count_parameters, UNet


def int_list(text: str) -> tuple:
    """argparse type: comma-separated whole numbers ('1,2,2,2'); 'none' or '' for an empty list."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 1,2,2,2, got {text!r}") from None


# How each Config field appears on the command line; the default always comes from the preset
OPTIONS = {
    "data": Option(str, '"cifar10", "stl10" or a folder of images'),
    "data_root": Option(str, "where torchvision's datasets are (or are downloaded to)"),
    "download": Option(bool, "download a missing torchvision dataset"),
    "resolution": Option(positive_int, "image size in pixels: 28, 32, 64, 96 or 128"),
    "channels": Option(int_range(1, 3), "image channels: 3 (RGB) or 1 (grayscale)"),
    "base": Option(positive_int, "UNet width of the first level"),
    "mults": Option(int_list, "width multiplier per level, e.g. 1,2,2,2 (a 2x downsampling between levels)"),
    "attn_resolutions": Option(int_list, "resolutions with self-attention, e.g. 16 or 16,8 (none: no attention)"),
    "num_res_blocks": Option(positive_int, "ResBlocks per level"),
    "embed_dim": Option(nonneg_int, "time/class embedding size (0: 4 x base)"),
    "dropout": Option(probability, "dropout in the ResBlocks"),
    "num_classes": Option(nonneg_int, "0: unconditional; else the number of classes (labels from the dataset)"),
    "mid_attention": Option(bool, "self-attention in the middle block"),
    "T": Option(int_range(1, MAX_T), "diffusion steps"),
    "schedule": Option(SCHEDULES, "beta schedule: linear 1e-4..0.02 (Ho et al.) or cosine (Nichol & Dhariwal)"),
    "loss": Option(("l2", "l1"), "noise-prediction loss"),
    "p_uncond": Option(probability, "label dropout for classifier-free guidance"),
    "steps": Option(positive_int, "optimiser steps in total"),
    "batch_size": Option(int_range(1, MAX_BATCH), "global batch size (split over torchrun processes)"),
    "lr": Option(positive_float, "Adam learning rate"),
    "warmup": Option(nonneg_int, "linear learning-rate warm-up steps"),
    "grad_clip": Option(positive_float, "gradient-norm clip"),
    "ema_decay": Option(probability, "EMA decay of the saved weights"),
    "seed": Option(seed_int, "seeds the weights, the data order and every sample's noise"),
    "device": Option(str, "auto (cuda, then mps, then cpu), cpu, cuda or mps"),
    "amp": Option(bool, "bf16 autocast on CUDA"),
    "compile": Option(bool, "torch.compile the UNet"),
    "workers": Option(int_range(-1, 64), "DataLoader workers (-1: 4 on CUDA, 0 on CPU)"),
    "save_every": Option(positive_int, "checkpoint interval in steps"),
    "sample_n": Option(int_range(0, 1024), "images in the closing samples.png (0: no closing grid)"),
    "sample_sampler": Option(SAMPLERS, "the closing grid's sampler: ddpm, ddim, or diffusers' dpm++, unipc, euler"),
    "sample_steps": Option(nonneg_int, "the closing grid's network evaluations (0 with ddpm: the full chain)"),
    "sample_eta": Option(unit_float, "DDIM's eta for the final grid: 0 deterministic, 1 stochastic (ancestral)"),
}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m image_diffusion.train", description=__doc__,
               epilog="presets (--preset NAME):\n" + describe_presets(),
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(PRESETS), required=True, metavar="NAME",
                   help=f"one of {', '.join(PRESETS)} (listed below)")
    p.add_argument("--out", default=None, help="run folder (default runs/PRESET)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (--steps may be raised)")
    p.add_argument("--overwrite", action="store_true", help="start afresh over the run in --out")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="CPU threads for torch per process (default %(default)s: fastest on shared cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--max-minutes", type=positive_float, default=None,
                   help="end the session after this much training time (a wall-clock budget), saving as at the end")
    add_config_arguments(p.add_argument_group("overrides of the preset"), Config, OPTIONS)  # defaults: the preset's
    return p


def init_distributed() -> Distributed:
    """Join the torchrun process group (gloo on CPU, nccl on CUDA) when WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed.current()


def rank0_first(part: Distributed, load, download: bool):
    """load(download) on rank 0 first, so that only it downloads a dataset; then the other processes read what it
    left, without downloading. Rank 0's error is every process's (no process waits for one that failed); the
    error raised on every rank carries every_rank = True, so that main lets each print its line before any exits."""
    if part.world == 1:
        return load(download)
    data, failed = None, [None]
    if part.rank == 0:
        try:
            data = load(download)
        except Exception as e:
            failed = [f"{type(e).__name__}: {first_line(e)}"]
            e.every_rank = True  # main: every process fails here together, so each waits for the others' one line
            raise
        finally:
            dist.broadcast_object_list(failed, src=0)
        return data
    dist.broadcast_object_list(failed, src=0)
    if failed[0] is not None:
        e = DataError(f"rank 0 could not load the data ({failed[0]})")
        e.every_rank = True
        raise e
    return load(False)


def check_places(cfg, preset: str, out: str) -> None:
    """Before anything is read: the preset has data, and --out is not inside --data (a run's files there would
    be read as training images the next time)."""
    if cfg.data is None:
        raise DataError(f"preset {preset} has no dataset of its own; pass --data FOLDER")
    if os.path.isdir(cfg.data):
        data, where = os.path.realpath(cfg.data), os.path.realpath(out)
        if where == data or where.startswith(data + os.sep):
            raise OutputError(f"--out {out} is inside --data {cfg.data}: the run's files would be read as training "
                              "images; choose an --out outside it")


def peer_lost(e: BaseException) -> bool:
    """Whether a collective failed because another process of the job is gone (gloo or NCCL lost it)."""
    backend_error = getattr(dist, "DistBackendError", ())
    text = str(e)
    return isinstance(e, backend_error) or (isinstance(e, RuntimeError) and any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL error")))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prog = "image_diffusion.train"
    out = args.out or os.path.join("runs", args.preset)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    part = Distributed()
    try:
        cfg = config_from_args(Config, args, base=get_preset(args.preset)).validate()
        check_places(cfg, args.preset, out)
        part = init_distributed()
        lock = folder_lock(out) if part.rank == 0 else contextlib.nullcontext()
        with lock:  # a second run into the same folder is refused while this one runs
            check_run_folder(out, RUN_FILES, args.resume, args.overwrite, writer=part.rank == 0)
            data = rank0_first(part, lambda download: load_images(cfg.data, cfg.data_root, cfg.resolution,
                                                                  cfg.channels, download, verbose=part.rank == 0),
                               cfg.download)
            if part.rank == 0:
                print(f"data {data.describe()}; UNet {count_parameters(UNet(cfg.unet())):,} parameters; "
                      f"{part.world} process(es); {torch.get_num_threads()} CPU thread(s) each", flush=True)
            result = train(cfg, data, out, args.resume, progress=not args.quiet,
                           max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)
            if part.rank == 0 and result.losses and cfg.sample_n:
                how = settings_for(cfg.sample_sampler, cfg.sample_steps or None, cfg.sample_eta, DEFAULT_W)
                files = figure_files(result.model, result.schedule, cfg.sample_n, how, cfg.seed, progress=not args.quiet)
                save_set(out, files, keep=RUN_FILES)  # the last save and its grids: one set
    except Exception as e:
        if part.world > 1 and peer_lost(e):  # a killed rank: one line from each survivor, not gloo's traceback
            who = f"rank {1 - part.rank}" if part.world == 2 else "another rank"
            kept = (f"the run in {out} is its last whole save; continue it with the same torchrun command and "
                    "--resume") if os.path.exists(os.path.join(out, "state.pt")) else "nothing was saved yet"
            error_line(prog, f"{who} of this torchrun job stopped (its connection closed: {type(e).__name__}); {kept}")
            return 2
        code = command_error(prog, e, lambda: f"--batch-size {cfg.batch_size}; lower --batch-size or --base")
        if getattr(e, "every_rank", False) and dist.is_initialized():
            dist.barrier()  # all failed alike: torchrun stops the others when one exits, before they could say why
        return code
    finally:
        torch.set_num_threads(threads)
        if dist.is_initialized():
            dist.destroy_process_group()
    if part.rank == 0:
        tail = result.losses[-100:] or [float("nan")]
        print(f"trained to step {result.step} in {result.seconds / 60:.1f} min; final loss {sum(tail) / len(tail):.4f}; "
              f"wrote {os.path.join(out, 'model.pt')}" + (f" and {', '.join(files)}" if result.losses and cfg.sample_n
                                                          else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "image_diffusion.train",
                         "the run in --out is its last whole save; continue it with --resume"))
