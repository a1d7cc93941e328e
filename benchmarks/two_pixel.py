"""Benchmark the two-pixel DDPM: train time, sampling time and sample quality per T, beside the
exact noise predictor under the same sampler (the floor set by discretisation alone).

    python benchmarks/two_pixel.py                  # T = 5, 10, 25, 50, default (train.py) settings
    python benchmarks/two_pixel.py --arch handout nonorm --T 50

Quality numbers (5000 samples, seed 0): majority-peak weight (truth 0.65), share within 5 sigma
of a peak, per-peak std ratio (truth 1), energy distance to 5000 fresh mixture draws, and with
y = 0 / 1 at w = 1 the share landing in the requested peak. eps-MSE is the mean squared distance
of the network's eps to the exact eps* on 20,000 (x_t, t) pairs from the forward process.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gmm import GMM  # noqa: E402
from runio.cli import MAX_T, Parser, error_line, int_range, positive_int, run_command  # noqa: E402
from two_pixel.trainer import TrainConfig, evaluate, train  # noqa: E402
from utils import q_sample, sample  # noqa: E402

PROG = "benchmarks/two_pixel.py"


@torch.no_grad()
def eps_mse(model, schedule, n: int = 20_000) -> float:
    gmm = GMM()
    x0, _ = gmm.sample(n, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(6)
    t = torch.randint(1, schedule.T + 1, (n,), generator=g)
    x_t = q_sample(schedule, x0, t, torch.randn(n, 2, generator=g))
    return float(((model(x_t, t) - gmm.noise_predictor(schedule)(x_t, t)) ** 2).sum(1).mean())


def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int_range(1, MAX_T), nargs="+", default=[5, 10, 25, 50])
    p.add_argument("--arch", nargs="+", default=[TrainConfig.arch], choices=["handout", "nonorm"])
    p.add_argument("--steps", type=positive_int, default=TrainConfig.steps)
    p.add_argument("--threads", type=int_range(1, 1024), default=2,
                   help="torch threads (default 2, the target machine)")
    args = p.parse_args(argv)
    try:
        return measure(args)
    except ValueError as e:  # a loss that became nan, ...
        error_line(PROG, str(e))
        return 2


def measure(args) -> int:
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps")
    head = (f"{'arch':8} {'T':>3} {'train s':>8} {'sample s':>8} {'eps-MSE':>8} | {'major':>6} {'in 5sd':>7} "
            f"{'std ratio':>11} {'energy':>8} | {'y=0,w=1':>7} {'y=1,w=1':>7} || exact: {'major':>6} {'in 5sd':>7} "
            f"{'std ratio':>11} {'energy':>8}  model/exact energy")
    print(head)
    for arch in args.arch:
        for T in args.T:
            cfg = TrainConfig(T=T, arch=arch, steps=args.steps, device="cpu")
            r = train(cfg, progress=False)
            t0 = time.perf_counter()
            sample(r.model, r.schedule, 5000, generator=torch.Generator().manual_seed(0))
            t_sample = time.perf_counter() - t0
            q = evaluate(r.model, r.schedule)
            m, e = q["model"], q["exact"]
            sr = lambda d: f"{d['std_ratio'][0]:.2f}/{d['std_ratio'][1]:.2f}"
            print(f"{arch:8} {T:>3} {r.seconds:>8.1f} {t_sample:>8.2f} {eps_mse(r.model, r.schedule):>8.4f} | "
                  f"{m['majority_weight']:>6.3f} {m['within_5sigma']:>7.4f} {sr(m):>11} {m['energy_distance']:>8.5f} | "
                  f"{m['in_peak_0_w1']:>7.4f} {m['in_peak_1_w1']:>7.4f} || exact: {e['majority_weight']:>6.3f} "
                  f"{e['within_5sigma']:>7.4f} {sr(e):>11} {e['energy_distance']:>8.5f}  "
                  f"{m['energy_distance'] / e['energy_distance']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "benchmarks/two_pixel.py",
                         "the benchmark stopped; every file it wrote is whole; run it again"))
