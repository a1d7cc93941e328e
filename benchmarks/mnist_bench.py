"""Benchmark the shipped MNIST model: agreement (full chain and DDIM), FLD with its bounds, spread, time.

    python benchmarks/mnist_bench.py                        # 100 per digit, full DDPM chain and DDIM-50
    python benchmarks/mnist_bench.py --per-digit 20 --samplers ddim50 --w 0 1 2 4    # a quick guidance sweep

The full chain costs T = 200 guided network passes per image (about 10-20 min for 1000 digits on
2 CPU cores); DDIM-50 a quarter of that. Results also go to --json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from mnist.checkpoint import load_model  # noqa: E402
from mnist.data import load_mnist  # noqa: E402
from mnist.metrics import load_classifier, score  # noqa: E402
from mnist.sample import DEFAULT_W, REFERENCE, generate  # noqa: E402
from runio.cli import Parser, command_error, int_range, nonneg_float, run_command, seed_int  # noqa: E402
from runio.errors import OutputError  # noqa: E402
from runio.files import atomic_save, check_output, replacing  # noqa: E402

PROG = "benchmarks/mnist_bench.py"


def sampler_steps(name: str):
    """'ddpm' -> None (the full chain), 'ddim50' -> 50; ValueError otherwise."""
    if name == "ddpm":
        return None
    steps = name.removeprefix("ddim")
    if not (name.startswith("ddim") and steps.isdigit() and int(steps) >= 1):
        raise ValueError(f"unknown sampler {name!r}; use ddpm or ddim<steps>, e.g. ddim50")
    return int(steps)


def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=REFERENCE)
    p.add_argument("--per-digit", type=int_range(1, 10_000), default=100)
    p.add_argument("--w", type=nonneg_float, nargs="+", default=[DEFAULT_W])
    p.add_argument("--samplers", nargs="+", default=["ddpm", "ddim50"], help="ddpm and/or ddim<steps>")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--threads", type=int_range(0, 1024), default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--save-samples", default=None, help="folder for the generated digits (.pt per run)")
    p.add_argument("--overwrite", action="store_true", help="replace existing --json / --save-samples files")
    args = p.parse_args(argv)
    try:
        return run(args)
    except Exception as e:  # one line for what a user can fix (runio.cli.command_error); a traceback for a bug
        return command_error(PROG, e, lambda: "these settings; lower --threads or the sample counts")


def run(args) -> int:
    steps_of = {name: sampler_steps(name) for name in args.samplers}
    outputs = [args.json] if args.json else []
    if args.save_samples:
        if os.path.exists(args.save_samples) and not os.path.isdir(args.save_samples):
            raise OutputError(f"--save-samples {args.save_samples} is a file, not a folder")
        outputs += [os.path.join(args.save_samples, f"{name}_w{w}.pt") for w in args.w for name in args.samplers]
    for path in outputs:  # before the minutes of sampling, not after
        check_output(path, args.overwrite, rerun=False)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, schedule, _, info = load_model(args.checkpoint)
    too_many = [name for name, steps in steps_of.items() if steps is not None and steps > schedule.T]
    if too_many:
        raise ValueError(f"{', '.join(too_many)}: a DDIM sampler takes at most T={schedule.T} steps")
    data = load_mnist(verbose=False)
    clf, clf_info = load_classifier(data=data)
    print(f"model {args.checkpoint}: T={schedule.T} {schedule.kind}, trained {info.get('step')} steps on "
          f"{info.get('data_source')} in {info.get('train_seconds', 0) / 60:.1f} min; classifier test accuracy "
          f"{clf_info['test_accuracy']:.4f} ({clf_info['n_test']} test digits); {torch.get_num_threads()} threads")
    # 0..9, 0..9, ...: image i has label i % 10 and generator utils.generators(seed, n)[i], so the first k*10
    # images of a longer run are exactly a shorter run's (paired comparisons)
    labels = torch.arange(10).repeat(args.per_digit)
    results = []
    for w in args.w:
        for name in args.samplers:
            steps = steps_of[name]
            start = time.perf_counter()
            x = generate(model, schedule, labels, w, args.seed, steps)
            seconds = time.perf_counter() - start
            s = score(x, labels, clf, data, seed=args.seed)
            row = dict(sampler=name, w=w, seconds=seconds, ms_per_image=1000 * seconds / len(x), **s._asdict())
            results.append(row)
            print(f"{name:>7} w={w:<4} {seconds:7.1f} s ({row['ms_per_image']:.0f} ms/digit)  {s.summary()}", flush=True)
            print("        agreement per digit: " + " ".join(f"{a:.2f}" for a in s.agreement_per_class), flush=True)
            if args.save_samples:
                os.makedirs(args.save_samples, exist_ok=True)
                atomic_save({"x": x, "y": labels, "w": w, "sampler": name},
                            os.path.join(args.save_samples, f"{name}_w{w}.pt"))
            if args.json:
                with replacing(args.json) as tmp, open(tmp, "w") as f:
                    json.dump(dict(checkpoint=args.checkpoint, classifier=clf_info, results=results), f, indent=2)
    by = {(r["sampler"], r["w"]): r for r in results}
    for w in args.w:
        if ("ddpm", w) in by:
            for r in results:
                if r["w"] == w and r["sampler"] != "ddpm":
                    print(f"w={w}: {r['sampler']} agreement {100 * (r['agreement'] - by['ddpm', w]['agreement']):+.1f} "
                          f"points vs the full chain, {by['ddpm', w]['seconds'] / r['seconds']:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "benchmarks/mnist_bench.py",
                         "the benchmark stopped; every file it wrote is whole; run it again"))
