"""Train the conditional two-pixel DDPM and save a checkpoint.

    python train.py --T 50            # -> runs/T50/model.pt, loss.png, loss.csv, metrics.json

The command line of two_pixel/trainer.py, one flag per field of its TrainConfig. The checkpoint holds
the EMA weights and the full TrainConfig (T, schedule, variance, clip range, architecture, seed, ...),
so `two_pixel.trainer.load_checkpoint` always rebuilds the schedule the model was trained with. After
training, the script samples 5000 images and prints how they compare with the ground-truth mixture
and with the exact noise predictor under the same sampler.

The four files are written as one set into a fresh folder beside --out, which then takes the place of
--out in one step: a crash, a kill or an error (a loss that became nan) leaves the previous run as it
was. An existing run is kept unless --overwrite; a second run into a folder in use is refused.
"""
from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch
from tqdm.auto import tqdm

from runio.cli import Parser, add_config_arguments, config_from_args, error_line, int_range, resolve_device, run_command
from runio.runs import staged_run
from two_pixel.trainer import OPTIONS, RUN_FILES, TrainConfig, run_folder, write_run
from utils import NonFiniteError

# One torch thread by default: this model is tiny, and on 2 cores two OpenMP threads spin while they wait
# for a core that another process holds (measured: 10 s idle, 103-150 s with one core busy; one thread
# stays at ~10 s). benchmarks/threads.py measures it.
DEFAULT_THREADS = 1


def build_parser() -> Parser:
    p = Parser(prog="train.py", description=__doc__)
    add_config_arguments(p, TrainConfig, OPTIONS, TrainConfig())
    p.add_argument("--out", default=None, help="output folder (default runs/T<T>); an existing run there is kept "
                                               "unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--no-eval", action="store_true", help="skip the sample-quality check after training")
    p.add_argument("--threads", type=int_range(1, 1024), default=DEFAULT_THREADS,
                   help="torch CPU threads (default %(default)s: the model is tiny, and more threads are up to 10x "
                        "slower when another process shares the cores; see benchmarks/threads.py)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


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
    one step (runio.runs.staged_run): a crash, a kill or an error leaves the previous run as it was."""
    cfg = config_from_args(TrainConfig, args)
    out = args.out or run_folder(cfg.T)
    try:
        cfg.validate()
        resolve_device(cfg.device)
        with staged_run(out, RUN_FILES, overwrite=args.overwrite) as folder:  # checks --out and locks it first
            write_run(cfg, folder, evaluate_quality=not args.no_eval, progress=not args.quiet)
    except (ValueError, OSError) as e:  # bad settings, --out in use or not writable, a loss that became nan
        kept = f"; nothing was saved ({out} is as it was)" if isinstance(e, NonFiniteError) else ""
        error_line("train.py", f"{e}{kept}")
        return 2
    print(f"saved {os.path.join(out, 'model.pt')} (+ loss.png, loss.csv, metrics.json). "
          "Next: python visualize.py --problem all")
    return 0


# ============================================================ several models at once
def _train_one(argv: list) -> tuple[int, str]:
    """main(argv) in this process with its output captured; returns (exit code, output). stderr too: a
    refusal (an existing run, a folder in use) is a one-line error there, and the caller reports the last line."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = main(argv)
    return rc, buf.getvalue()


def train_models(runs: dict, steps: int | None = None, jobs: int = 0, progress: bool = True,
                 pool: ProcessPoolExecutor | None = None) -> dict:
    """Run this script once per entry of `runs`, {key: its arguments} (at least --T and --out, e.g.
    {5: ["--T", "5", "--out", "runs/T5"], "handout": [..., "--arch", "handout"]}), each with --steps,
    --no-eval, --quiet and one torch thread, in parallel spawned processes when there are several
    and more than one core; in `pool` when given (a spawn-context pool that has other work queued too).

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
    if jobs <= 1 and pool is None:
        for T in Ts:
            results[T] = _train_one(argvs[T])
            bar.update(1)
    else:
        with contextlib.ExitStack() as stack:
            if pool is None:
                pool = stack.enter_context(ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")))
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
    sys.exit(run_command(main, "train.py",
                         "the run in --out is as it was (a run is put in place only when it is whole); run it again"))
