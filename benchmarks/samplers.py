"""Sample quality against network evaluations for the package's DDIM and diffusers' solvers, each with the
same step spacings: the measurement that chooses the fast samplers' defaults.

    python benchmarks/samplers.py                    # both parts (two pixels: about 3 min; MNIST: about 3 min)
    python benchmarks/samplers.py --part two-pixel   # the exact predictor on the T = 1000 cosine schedule
    python benchmarks/samplers.py --part mnist --n 500

Two pixels: GMM's exact noise predictor (no network error: what is left is the sampler's), T = 1000 cosine
schedule, 5,000 samples per run, energy distance to 5,000 reference draws of the mixture (the same for every
run); mean and spread (min-max) over --seeds seeds, at 3, 5, 10, 20 and 50 evaluations.
MNIST: the shipped problem-5 model at guidance w = 4 (one evaluation = the conditional and unconditional
pass together), --n digits (labels 0..9 in turn), the same seeds for every sampler; the metric classifier's
agreement with the requested digit at --nfe evaluations.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gmm import GMM  # noqa: E402
from mnist.checkpoint import load_model  # noqa: E402
from mnist.metrics import load_classifier, predict  # noqa: E402
from mnist.sample import DEFAULT_W, REFERENCE  # noqa: E402
from runio.cli import Parser, command_error, positive_int, run_command  # noqa: E402
from solvers import solver  # noqa: E402
from two_pixel.steps import energy_by_nfe  # noqa: E402
from utils import SPACINGS, SamplerSettings, generators, make_schedule, sample  # noqa: E402

PROG = "benchmarks/samplers.py"
NFES = (3, 5, 10, 20, 50)
RUNS = [("ddim", sp) for sp in SPACINGS] + [(name, sp) for name in ("dpm++", "unipc", "euler")
                                            for sp in ("linspace", "leading", "trailing")]


def settings(name: str, spacing: str, nfe: int, w: float = 0.0) -> SamplerSettings:
    """nfe network evaluations of `name` ("ddim": the package's; else diffusers') with `spacing`."""
    if name == "ddim":
        return SamplerSettings(steps=nfe, w=w, spacing=spacing)
    return SamplerSettings(steps=nfe, w=w, solver=solver(name, spacing))


def two_pixel(seeds: int, nfes=NFES) -> dict:
    """{(name, spacing, nfe): [energy distance per seed]} (two_pixel.steps: the flow report's study too)."""
    gmm, schedule = GMM(), make_schedule(1000)
    pred = gmm.noise_predictor(schedule)
    out = {}
    for name, spacing in RUNS:
        curve = energy_by_nfe(pred, schedule, lambda k: settings(name, spacing, k), nfes, range(seeds))
        out.update({(name, spacing, k): list(e) for k, e in zip(curve.nfes, curve.energy)})
        row = "  ".join(f"{curve.mean(i):.4f} ({curve.spread(i)[0]:.4f}-{curve.spread(i)[1]:.4f})"
                        for i in range(len(nfes)))
        print(f"{name:6} {spacing:9}  {row}", flush=True)
    return out


def mnist(n: int, nfe: int, seed: int = 0) -> dict:
    """{(name, spacing): agreement} of the shipped problem-5 model at w = 4, nfe evaluations, on n digits."""
    loaded = load_model(REFERENCE)
    clf, _ = load_classifier(verbose=False)
    labels = torch.arange(n) % 10
    out = {}
    for name, spacing in RUNS:
        t0 = time.perf_counter()
        x = torch.cat([sample(loaded.model, loaded.schedule, len(idx), labels[idx],
                              settings(name, spacing, nfe, DEFAULT_W), generators(seed, len(idx), start=int(idx[0])),
                              shape=(1, 28, 28)) for idx in torch.arange(n).split(250)])
        out[name, spacing] = (predict(clf, x)[0] == labels).float().mean().item()
        print(f"{name:6} {spacing:9}  agreement {out[name, spacing]:.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def mean(v) -> float:
    return sum(v) / len(v)


def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("both", "two-pixel", "mnist"), default="both")
    p.add_argument("--seeds", type=positive_int, default=5, help="two pixels: seeds per run (default %(default)s)")
    p.add_argument("--n", type=positive_int, default=500, help="MNIST: digits per sampler (default %(default)s)")
    p.add_argument("--nfe", type=positive_int, default=5, help="MNIST: network evaluations (default %(default)s)")
    p.add_argument("--threads", type=positive_int, default=2, help="torch threads (default %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        if args.part in ("both", "two-pixel"):
            print(f"two pixels, exact predictor, T = 1000 cosine: energy distance, mean (min-max) over {args.seeds} "
                  f"seeds, at {', '.join(map(str, NFES))} evaluations", flush=True)
            two_pixel(args.seeds)
        if args.part in ("both", "mnist"):
            print(f"problem 5 (shipped), w = 4, {args.n} digits, {args.nfe} evaluations: agreement with the requested "
                  "digit", flush=True)
            mnist(args.n, args.nfe)
    except Exception as e:
        return command_error(PROG, e, lambda: f"--n {args.n}; lower it")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, PROG, "the benchmark stopped; it writes no file"))
