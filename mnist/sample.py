"""Draw MNIST digits from a trained checkpoint.

    python -m mnist.sample                                  # 10 of each digit, full DDPM chain -> samples.png
    python -m mnist.sample --digits 3,7 --per-digit 16 --steps 50    # DDIM with 50 steps
    python -m mnist.sample --w 0 --out plain.png            # no guidance

Each image i gets its own torch.Generator, utils.generators(seed, n)[i] (the rule of every sampling
command, python -m image_diffusion.sample's too), so an image does not change with --batch-size. The grid and its tensors (<out>.pt) never replace an existing file unless --overwrite, and
never a checkpoint or a shipped reference file; images that came out nan or inf are not written. Guidance is classifier-free (Ho & Salimans 2022): eps = (1 + w) eps(x, t, y) - w eps(x, t, null);
CS180's scale gamma corresponds to w = gamma - 1.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from runio.cli import MAX_BATCH, Parser, error_line, int_range, positive_int, resolve_device, run_command, seed_int
from runio.errors import CheckpointError, OutputError
from runio.files import atomic_write, check_writable, clean_orphans, refuse_reference, replacing_all, savefig, torch_save
from solvers import SAMPLERS, settings_for
from utils import SPACINGS, NonFiniteError, SamplerSettings, Schedule, generators, sample

from .checkpoint import load_model
from .data import to_unit_range

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "model.pt")
SAMPLES_KIND = "mnist-samples"  # the tensors file written beside the grid
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
DEFAULT_W = 4.0  # = CS180's guidance scale 5; trades some within-class spread for agreement (MODEL_CARD.md)


def parse_digits(text: str) -> list[int]:
    """'0-9', '3,5,7' or '4' -> list of digits in 0..9; ValueError naming the bad item otherwise."""
    digits = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            items = range(int(lo), int(hi) + 1) if sep else [int(part)]
        except ValueError:
            raise ValueError(f"unknown digit label {part!r}; use digits 0..9 like 0-9 or 3,5,7") from None
        if not items:
            raise ValueError(f"the range {part} holds no digit; write it low to high, like {hi.strip()}-{lo.strip()}")
        for d in items:
            if not 0 <= d <= 9:
                raise ValueError(f"unknown digit label {d}; MNIST labels are 0..9")
            digits.append(d)
    if not digits:
        raise ValueError("no digits given")
    return digits


@torch.no_grad()
def generate(model, schedule: Schedule, labels: Sequence[int], w: float = DEFAULT_W, seed: int = 0,
             steps: Optional[int] = None, eta: float = 0.0, batch_size: int = 250, progress: bool = False,
             device=None, settings: Optional[SamplerSettings] = None) -> torch.Tensor:
    """Digits for `labels` (N,) -> (N, 1, 28, 28) in [-1, 1]. steps None: full ancestral chain; else DDIM;
    settings: any sampler instead (solvers.settings_for: --sampler), which then also carries w."""
    labels = torch.as_tensor(list(labels), dtype=torch.long)
    gens = generators(seed, len(labels))
    device = device or next(model.parameters()).device
    if torch.device(device).type == "cpu":
        model.to(memory_format=torch.channels_last)  # same weights, ~2x faster convolutions on CPU
    out = []
    chunks = range(0, len(labels), batch_size)
    if progress:
        chunks = tqdm(chunks, desc="sampling", unit="batch")
    for i in chunks:
        y = labels[i:i + batch_size]
        how = settings if settings is not None else SamplerSettings(steps=steps, eta=eta, w=w)
        out.append(sample(model, schedule, len(y), y, how, gens[i:i + batch_size], shape=(1, 28, 28),
                          device=device).cpu())
    return torch.cat(out)


def save_grid(x: torch.Tensor, path: str, nrow: int, dpi: int = 150, row_labels=None, tmp=None) -> None:
    """x (N, 1, 28, 28) in [-1, 1] as a grid image at `path` (its format from the extension), nrow images per
    row, written atomically; or into `tmp`, the temporary name of a set being written."""
    grid = make_grid(to_unit_range(x), nrow=nrow, padding=2, pad_value=1.0)[0]  # (H, W)
    rows = (len(x) + nrow - 1) // nrow
    fig, ax = plt.subplots(figsize=(0.45 * nrow + 0.4, 0.45 * rows), dpi=dpi)
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([30 * r + 15 for r in range(rows)] if row_labels else [])
    if row_labels:
        ax.set_yticklabels(row_labels)
        ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    fig.tight_layout(pad=0.2)
    try:
        if tmp is not None:
            savefig(fig, path, tmp, dpi=dpi)
        else:
            atomic_write(path, lambda t: savefig(fig, path, t, dpi=dpi))  # never half an image under `path`
    finally:
        plt.close(fig)


def output_paths(out: str, checkpoint: str, overwrite: bool) -> tuple[str, str]:
    """(grid image, tensors file) for --out: 'samples' becomes samples.png, the tensors go to samples.pt.
    OutputError if either would replace a file without --overwrite, or (whatever the flags) a checkpoint,
    the --checkpoint being read or a shipped reference file."""
    if os.path.isdir(out):
        raise OutputError(f"--out {out} is a folder; give a file name such as {os.path.join(out, 'samples.png')}")
    stem, ext = os.path.splitext(out)
    if not ext:
        out, ext = out + ".png", ".png"  # what matplotlib would write; say so in every message
    if os.path.isdir(out):
        raise OutputError(f"--out {out} is a folder; give a file name such as {os.path.join(out, 'samples.png')}")
    if ext.lower() not in IMAGE_TYPES:
        raise OutputError(f"--out {out} is not an image file name; end it with one of {', '.join(IMAGE_TYPES)}")
    tensors = stem + ".pt"
    for path in (out, tensors):
        refuse_reference(path)
        if os.path.exists(checkpoint) and os.path.exists(path) and os.path.samefile(path, checkpoint):
            raise OutputError(f"--out {out} would write {path}, the checkpoint being read; choose another --out")
    if os.path.exists(tensors) and not is_samples_file(tensors):
        raise OutputError(f"--out {out} would replace {tensors}, which is not a samples file of mnist.sample (a "
                          "checkpoint?); choose another --out")
    existing = [p for p in (out, tensors) if os.path.exists(p)]
    if existing and not overwrite:
        raise OutputError(f"{' and '.join(existing)} already exist; pass --overwrite to replace them, or choose "
                          "another --out")
    return out, tensors


def is_samples_file(path: str) -> bool:
    """True if `path` is a tensors file that mnist.sample wrote (so --overwrite may replace it)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(obj, dict) and (obj.get("kind") == SAMPLES_KIND or
                                      ("kind" not in obj and {"x", "y", "w", "steps", "seed"} <= set(obj)))


def finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m mnist.sample", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=REFERENCE, help="an MNIST checkpoint (default: the shipped reference)")
    p.add_argument("--digits", default="0-9", help="labels to draw, e.g. 0-9 or 3,5,7 (default %(default)s)")
    p.add_argument("--per-digit", type=int_range(1, 10_000), default=10,
                   help="images per digit, one row each (default %(default)s)")
    p.add_argument("--w", type=finite_float, default=DEFAULT_W,
                   help="guidance scale w >= 0 ((1+w) eps_cond - w eps_null; 0 = plain conditional) (default %(default)s)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="network evaluations: DDIM (or --sampler) with this many steps (default: the full ancestral "
                        "DDPM chain, T steps)")
    p.add_argument("--sampler", choices=SAMPLERS, default=None,
                   help="ddpm (the full chain, or ancestral on --steps strided steps), ddim (default with --steps), or "
                        "diffusers' dpm++, unipc, euler (pip install diffusers); benchmarks/samplers.py measures them")
    p.add_argument("--spacing", choices=SPACINGS, default=None,
                   help="how --steps are spread over 1..T (default: linspace for ddim, the solvers' measured default "
                        "for the others)")
    p.add_argument("--eta", type=finite_float, default=0.0, help="DDIM noise, 0 = deterministic (default %(default)s)")
    p.add_argument("--seed", type=seed_int, default=0, help="image i uses utils.generators(seed, n)[i] (default %(default)s)")
    p.add_argument("--batch-size", type=int_range(1, MAX_BATCH), default=250,
                   help="images per forward pass (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--out", default="samples.png", help="grid PNG; the images also go to <out>.pt (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out and its .pt (never a checkpoint)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prog = "mnist.sample"
    try:
        digits = parse_digits(args.digits)
        if args.w < 0:
            raise ValueError(f"--w must be >= 0, got {args.w}")
        if not 0 <= args.eta <= 1:
            raise ValueError(f"--eta must be in [0, 1], got {args.eta}")
        device = resolve_device(args.device)
        out, tensors = output_paths(args.out, args.checkpoint, args.overwrite)
        check_writable(os.path.dirname(os.path.abspath(out)))  # before sampling, not after
        clean_orphans(os.path.dirname(os.path.abspath(out)))  # temporary files of a killed run
        loaded = load_model(args.checkpoint, device)
        if args.steps is not None and args.steps > loaded.schedule.T:
            raise ValueError(f"--steps must be at most T={loaded.schedule.T}, got {args.steps}")
        labels = [d for d in digits for _ in range(args.per_digit)]
        name = args.sampler or ("ddim" if args.steps else "ddpm")
        settings = settings_for(name, args.steps, args.eta, args.w, args.spacing)
        x = generate(loaded.model, loaded.schedule, labels, seed=args.seed, batch_size=args.batch_size,
                     progress=not args.quiet, device=device, settings=settings)
        bad = (~torch.isfinite(x)).flatten(1).any(1)
        if bad.any():
            raise NonFiniteError(f"{int(bad.sum())} of {len(x)} images came out nan or inf with --w {args.w}; nothing "
                                 "was written (try a smaller --w; if that does not help, the checkpoint is broken)")
        with replacing_all([tensors, out]) as (tensors_tmp, out_tmp):  # one set: both, or neither
            torch_save({"kind": SAMPLES_KIND, "x": x, "y": torch.tensor(labels), "w": args.w, "steps": args.steps,
                        "sampler": name, "seed": args.seed}, tensors_tmp)
            save_grid(x, out, nrow=args.per_digit, row_labels=[str(d) for d in digits], tmp=out_tmp)
    except (ValueError, OSError, CheckpointError) as e:
        error_line(prog, str(e))
        return 2
    sampler = f"{name} {args.steps} steps" + (f" (eta={args.eta})" if name == "ddim" else "") if args.steps else \
        f"DDPM {loaded.schedule.T} steps"
    print(f"{len(labels)} digits ({sampler}, w={args.w}) -> {out} (tensors: {tensors})")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "mnist.sample", "nothing was written; run it again"))
