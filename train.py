"""Train the conditional two-pixel DDPM and save a checkpoint.

    python train.py --T 50            # -> runs/T50/model.pt, loss.png, loss.csv, metrics.json

The checkpoint holds the EMA weights and the full TrainConfig (T, schedule, variance, clip range,
architecture, seed, ...), so `utils.load_checkpoint` always rebuilds the schedule the model was
trained with. After training, the script samples 5000 images and prints how they compare with the
ground-truth mixture and with the exact noise predictor under the same sampler.

The four files are written as one set into a fresh folder beside --out, which then takes the place of
--out in one step: a crash, a kill or an error (a loss that became nan) leaves the previous run as it
was. An existing run is kept unless --overwrite; a second run into a folder in use is refused.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, fields

import matplotlib
import torch
from tqdm.auto import tqdm

from gmm import GMM, energy_distance, peak_stats
from utils import (MAX_BATCH, MAX_N_TRAIN, MAX_T, NonFiniteError, Parser, TrainConfig, int_range, positive_float,
                   positive_int, probability, resolve_device, sample, save_checkpoint, seed_int, staged_run, train)

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

# One torch thread by default: this model is tiny, and on 2 cores two OpenMP threads spin while they wait
# for a core that another process holds (measured: 10 s idle, 103-150 s with one core busy; one thread
# stays at ~10 s). benchmarks/threads.py measures it.
DEFAULT_THREADS = 1


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = Parser(prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int_range(1, MAX_T), default=d.T, help="number of diffusion steps (default %(default)s)")
    p.add_argument("--steps", type=positive_int, default=d.steps, help="optimiser steps (default %(default)s)")
    p.add_argument("--batch-size", type=int_range(1, MAX_BATCH), default=d.batch_size, help="default %(default)s")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="Adam learning rate, cosine-decayed (default %(default)s)")
    p.add_argument("--loss", choices=("l2", "l1", "huber"), default=d.loss, help="default %(default)s")
    p.add_argument("--p-uncond", type=probability, default=d.p_uncond,
                   help="probability of dropping the label to 'null', for classifier-free guidance (default %(default)s)")
    p.add_argument("--schedule", choices=("cosine", "linear"), default=d.schedule, help="beta schedule (default %(default)s)")
    p.add_argument("--variance", choices=("posterior", "beta"), default=d.variance,
                   help="reverse-step variance: posterior beta_tilde (handout) or beta (default %(default)s)")
    p.add_argument("--arch", choices=("handout", "nonorm"), default=d.arch,
                   help="handout: the handout's UNet, whose GroupNorm(32) in encoder 2 keeps little more than "
                        "signs; nonorm: the same UNet without GroupNorm (default %(default)s)")
    p.add_argument("--ema-decay", type=probability, default=d.ema_decay, help="default %(default)s")
    p.add_argument("--n-train", type=int_range(1, MAX_N_TRAIN), default=d.n_train,
                   help="training-set size (default %(default)s)")
    p.add_argument("--seed", type=seed_int, default=d.seed, help="seeds data, init and training (default %(default)s)")
    p.add_argument("--device", default=d.device, help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--out", default=None, help="output folder (default runs/T<T>); an existing run there is kept "
                                               "unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--no-eval", action="store_true", help="skip the sample-quality check after training")
    p.add_argument("--threads", type=int_range(1, 1024), default=DEFAULT_THREADS,
                   help="torch CPU threads (default %(default)s: the model is tiny, and more threads are up to 10x "
                        "slower when another process shares the cores; see benchmarks/threads.py)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


RUN_FILES = ("model.pt", "loss.csv", "loss.png", "metrics.json")  # one run: written, and replaced, as a set


def write_loss_curve(losses, folder: str) -> None:
    with open(os.path.join(folder, "loss.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss"])
        w.writerows(enumerate(losses, 1))
    x = torch.tensor(losses)
    k = max(1, len(losses) // 50)
    smooth = x.unfold(0, k, 1).mean(1) if len(losses) >= k else x
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=150)
    ax.plot(range(1, len(losses) + 1), losses, color="#bbbbbb", lw=0.6, label="per step")
    ax.plot(range(k, len(losses) + 1), smooth, color="#0072B2", lw=1.5, label=f"mean of {k}")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "loss.png"))
    plt.close(fig)


def evaluate(model, schedule, n: int = 5000, seed: int = 0) -> dict:
    """Sample quality of `model` next to the exact predictor's with the same sampler and T."""
    gmm = GMM()
    ref, _ = gmm.sample(n, generator=torch.Generator().manual_seed(10_000 + seed))
    out = {}
    for name, pred in (("model", model.cpu()), ("exact", gmm.noise_predictor(schedule))):
        x = sample(pred, schedule, n, generator=torch.Generator().manual_seed(seed))
        s = peak_stats(x, gmm)
        out[name] = dict(majority_weight=s.majority_weight, within_5sigma=s.within_5sigma,
                         std_ratio=list(s.std_ratio), energy_distance=energy_distance(x, ref))
    for y in (0, 1):
        x = sample(model, schedule, n, y=y, w=1.0, generator=torch.Generator().manual_seed(seed))
        out["model"][f"in_peak_{y}_w1"] = peak_stats(x, gmm).counts[y] / n
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(before)  # main() is also called in-process (visualize.py, tests)


def run(args) -> int:
    """Train and write the run's four files into a fresh folder beside --out, which then replaces --out in
    one step (utils.staged_run): a crash, a kill or an error leaves the previous run as it was."""
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)})
    out = args.out or run_folder(cfg.T)
    try:
        cfg.validate()
        resolve_device(cfg.device)
        with staged_run(out, RUN_FILES, overwrite=args.overwrite) as folder:  # checks --out and locks it first
            write_run(cfg, folder, evaluate_quality=not args.no_eval, progress=not args.quiet)
    except (ValueError, OSError) as e:  # bad settings, --out in use or not writable, a loss that became nan
        kept = f"; nothing was saved ({out} is as it was)" if isinstance(e, NonFiniteError) else ""
        print(f"train.py: error: {e}{kept}", file=sys.stderr)
        return 2
    print(f"saved {os.path.join(out, 'model.pt')} (+ loss.png, loss.csv, metrics.json). "
          "Next: python visualize.py --problem all")
    return 0


def write_run(cfg: TrainConfig, folder: str, evaluate_quality: bool = True, progress: bool = True) -> None:
    """Train, then write model.pt, loss.csv, loss.png and metrics.json into `folder`."""
    result = train(cfg, progress=progress)
    save_checkpoint(os.path.join(folder, "model.pt"), result.model, cfg, extra={"train_seconds": result.seconds})
    write_loss_curve(result.losses, folder)
    print(f"trained T={cfg.T} ({cfg.arch} UNet, {cfg.steps} steps) in {result.seconds:.1f} s; "
          f"final loss {sum(result.losses[-100:]) / len(result.losses[-100:]):.4f}")
    summary = {"config": asdict(cfg), "train_seconds": result.seconds}
    if evaluate_quality:
        q = evaluate(result.model, result.schedule, seed=cfg.seed)
        summary["quality"] = q
        m, e = q["model"], q["exact"]
        print(f"5000 samples   model | exact predictor (same sampler, T={cfg.T})")
        print(f"  majority peak   {m['majority_weight']:.3f} | {e['majority_weight']:.3f}   (truth 0.650)")
        print(f"  within 5 sigma  {m['within_5sigma']:.4f} | {e['within_5sigma']:.4f}")
        print(f"  energy dist.    {m['energy_distance']:.5f} | {e['energy_distance']:.5f}")
        print(f"  with y=0 / y=1 and w=1: {m['in_peak_0_w1']:.4f} / {m['in_peak_1_w1']:.4f} land in the requested peak")
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2, allow_nan=False)  # ValueError, not a file with NaN or Infinity


# ============================================================ several models at once
def run_folder(T: int, runs: str = "runs") -> str:
    """Where `python train.py --T <T>` saves by default: <runs>/T<T>/."""
    return os.path.join(runs, f"T{T}")


def _train_one(argv: list) -> tuple[int, str]:
    """main(argv) in this process with its output captured; returns (exit code, output). stderr too: a
    refusal (an existing run, a folder in use) is a one-line error there, and the caller reports the last line."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = main(argv)
    return rc, buf.getvalue()


def train_models(runs: dict, steps: int | None = None, jobs: int = 0, progress: bool = True) -> dict:
    """Run this script once per entry of `runs`, {key: its arguments} (at least --T and --out, e.g.
    {5: ["--T", "5", "--out", "runs/T5"], "handout": [..., "--arch", "handout"]}), each with --steps,
    --no-eval, --quiet and one torch thread, in parallel spawned processes when there are several
    and more than one core.

    Returns {key: the summary line it printed}; raises RuntimeError naming the first key that failed.
    visualize.py calls this for the models its figures need and cannot find.
    """
    Ts = list(runs)
    steps = steps or TrainConfig().steps
    # --no-eval: the quality check would sample 20,000 images per model; the figures measure quality themselves
    argvs = {key: [*runs[key], "--steps", str(steps), "--no-eval", "--quiet", "--threads", "1"] for key in Ts}
    jobs = min(jobs or os.cpu_count() or 1, len(Ts))
    bar = tqdm(total=len(Ts), desc="training models", disable=not progress, leave=False, dynamic_ncols=True)
    results = {}
    if jobs <= 1:
        for T in Ts:
            results[T] = _train_one(argvs[T])
            bar.update(1)
    else:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_train_one, argvs[T]): T for T in Ts}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update(1)
    bar.close()
    done = {}
    for T in Ts:
        rc, text = results[T]
        if rc != 0:
            last = text.strip().splitlines()[-1] if text.strip() else ""
            raise RuntimeError(f"training {T} failed (exit {rc}): {last} (python train.py {' '.join(argvs[T])})")
        summary = [ln for ln in text.splitlines() if ln.startswith("trained")]
        done[T] = summary[0] if summary else f"trained {T}"
    return done


if __name__ == "__main__":
    sys.exit(main())
