"""Does train.py's thread default hold up when another process keeps a core busy?

    python benchmarks/threads.py                 # the default command (one thread) and --threads 2
    python benchmarks/threads.py --threads 1     # the default alone (about a minute)

Runs `python train.py --T 50 --no-eval` (train.py's own defaults otherwise) in a fresh folder, once
on an idle machine and once while a busy process spins on one core, and prints the training time
that train.py reports for each and their ratio, busy / idle. Measure with nothing else running:
the "idle" run must really be idle.

On a 2-core machine OpenMP threads that wait for a core held by another process spin instead of
sleeping, so two torch threads can be many times slower than one; that is why train.py (and every
other entry point) defaults to one thread.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from runio.cli import Parser, nonneg_int, positive_int, run_command  # noqa: E402

BUSY_LOOP = "while True: pass"  # one core, fully busy, no threads of its own


def train_seconds(threads: int | None, steps: int, busy: bool) -> tuple[float, float]:
    """(training seconds that train.py reports, wall seconds of the whole command)."""
    spinner = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--T", "50", "--steps", str(steps), "--no-eval",
                   "--quiet", "--out", os.path.join(tmp, "run")] + (["--threads", str(threads)] if threads else [])
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # train.py chooses
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            wall = time.perf_counter() - start
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if out.returncode != 0:
        raise SystemExit(f"threads.py: error: {' '.join(cmd)} failed: {out.stderr.strip().splitlines()[-1:]}")
    m = re.search(r"in ([0-9.]+) s", out.stdout)
    return (float(m.group(1)) if m else float("nan")), wall


def main(argv=None) -> int:
    p = Parser(prog="benchmarks/threads.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=nonneg_int, nargs="+", default=[0, 2], metavar="N",
                   help="thread counts to time; 0 means train.py's default (default: 0 2)")
    p.add_argument("--steps", type=positive_int, default=2000, help="training steps (default %(default)s, train.py's)")
    args = p.parse_args(argv)
    print(f"python train.py --T 50 --steps {args.steps} --no-eval, on {os.cpu_count()} cores; "
          "training seconds as train.py reports them (wall seconds of the whole command in brackets)")
    print(f"{'threads':<22} {'idle':>14} {'one core busy':>16} {'busy / idle':>12}")
    for threads in args.threads:
        idle, idle_wall = train_seconds(threads or None, args.steps, busy=False)
        busy, busy_wall = train_seconds(threads or None, args.steps, busy=True)
        name = "train.py default" if not threads else f"--threads {threads}"
        print(f"{name:<22} {idle:>6.1f} s ({idle_wall:>4.0f}) {busy:>7.1f} s ({busy_wall:>4.0f}) {busy / idle:>11.2f}x",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "benchmarks/threads.py",
                         "the benchmark stopped; every file it wrote is whole; run it again"))
