"""Benchmark CS180 part B on MNIST from the shipped runs (or given ones), one CPU thread:

  1. B.1 single-step denoiser: PSNR per sigma on the same test digits (50 per class) for the noisy
     input, the epoch-1 weights and the final weights;
  2. B.2 time-conditioned DDPM: for each saved epoch, n samples through the full ancestral chain,
     read by the metric classifier: fraction read with confidence >= 0.9, how many different digits
     and how evenly (largest class share), and the Frechet distance of classifier features (FLD)
     against the test digits beside its floor (real train digits, same n) and its ceiling (noise).

    python benchmarks/mnist_partb.py                      # about 10 min on one CPU thread
    python benchmarks/mnist_partb.py --n 50 --epochs 20   # quicker: the last epoch only
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from mnist import denoiser as dn  # noqa: E402
from mnist import timecond as tc  # noqa: E402
from mnist.cs180_partb import CONFIDENT, read_samples, test_digits  # noqa: E402
from mnist.data import DataError, load_mnist  # noqa: E402
from mnist.metrics import fit_gaussian, frechet_distance, load_classifier, predict  # noqa: E402
from utils import CheckpointError, Parser, check_new_file, int_range, nonneg_float, seed_int  # noqa: E402

PROG = "benchmarks/mnist_partb.py"


def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--denoiser", default=dn.REFERENCE, help="part B.1 run (default: the shipped one)")
    p.add_argument("--timecond", default=tc.REFERENCE, help="part B.2 run (default: the shipped one)")
    p.add_argument("--per-class", type=int_range(1, 1000), default=50,
                   help="test digits per class for B.1 (default 50)")
    p.add_argument("--n", type=int_range(2, 100_000), default=200, help="B.2 samples per epoch (default 200)")
    p.add_argument("--epochs", type=int_range(1, 100_000), nargs="*", default=None,
                   help="B.2 epochs to score (default: all saved)")
    p.add_argument("--w", type=nonneg_float, default=5.0, help="guidance for a class-conditional B.2 run (default 5)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    args = p.parse_args(argv)
    try:
        return measure(args)
    except (ValueError, OSError, CheckpointError, DataError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


def measure(args) -> int:
    torch.set_num_threads(1)
    if args.json:
        check_new_file(args.json, args.overwrite)  # before the minutes of sampling, not after
    run = dn.load_run(args.denoiser)  # both runs first: a bad file or --epochs fails before any work
    snap = tc.load_run(args.timecond)
    unsaved = sorted(set(args.epochs or []) - set(snap.models))
    if unsaved:
        raise ValueError(f"{args.timecond} holds no weights for epoch {', '.join(map(str, unsaved))}; it has epochs "
                         f"{', '.join(map(str, sorted(snap.models)))}")
    data = load_mnist(download=False, verbose=False)
    clf, _ = load_classifier(data=data, verbose=False)
    result = {"data": data.describe()}

    x, _ = test_digits(data, args.per_class)
    x = (x + 1) / 2
    first, last = min(run.models), max(run.models)
    t0 = time.perf_counter()
    ps = {e: dn.psnr_per_sigma(run.models[e], x, seed=args.seed) for e in (first, last)}
    print(f"B.1 denoiser D={run.config.hidden}, trained at sigma={run.config.sigma} "
          f"({run.info.get('seconds', float('nan')):.0f} s training); PSNR dB on {len(x)} test digits "
          f"({time.perf_counter() - t0:.1f} s)")
    print(f"{'sigma':>6} {'noisy':>7} {'epoch ' + str(first):>8} {'epoch ' + str(last):>8}")
    for s in dn.SIGMAS:
        print(f"{s:>6} {ps[last][s][1]:7.2f} {ps[first][s][0]:8.2f} {ps[last][s][0]:8.2f}")
    result["b1"] = {"hidden": run.config.hidden, "train_seconds": run.info.get("seconds"), "n": len(x),
                    "psnr": {str(s): {"noisy": ps[last][s][1], f"epoch{first}": ps[first][s][0],
                                      f"epoch{last}": ps[last][s][0]} for s in dn.SIGMAS}}

    cfg = snap.config
    _, test_feats = predict(clf, data.test_x)
    test = fit_gaussian(test_feats)
    g = torch.Generator().manual_seed(args.seed)
    _, train_feats = predict(clf, data.train_x[torch.randperm(len(data.train_x), generator=g)[:args.n]])
    _, noise_feats = predict(clf, torch.randn(args.n, 1, 28, 28, generator=g).clamp(-1, 1))
    floor, ceiling = frechet_distance(fit_gaussian(train_feats), test), frechet_distance(fit_gaussian(noise_feats), test)
    y = (torch.arange(args.n) % 10) if cfg.num_classes else None
    print(f"\nB.2 DDPM D={cfg.hidden}, T={cfg.T}, {'class-conditional w=%g' % args.w if y is not None else 'unconditional'}"
          f" ({snap.info.get('seconds', float('nan')) / 60:.1f} min training); {args.n} samples per epoch, full chain; "
          f"FLD floor (train vs test) {floor:.2f}, noise {ceiling:.1f}")
    print(f"{'epoch':>5} {'confident':>9} {'digits':>6} {'top share':>9} {'agree':>6} {'FLD':>7} {'sec':>6}")
    result["b2"] = {"hidden": cfg.hidden, "T": cfg.T, "num_classes": cfg.num_classes, "n": args.n,
                    "train_seconds": snap.info.get("seconds"), "fld_floor": floor, "fld_noise": ceiling, "epochs": {}}
    for epoch, model in snap.models.items():
        if args.epochs and epoch not in args.epochs:
            continue
        t0 = time.perf_counter()
        xs = tc.draw(model, snap.schedule, args.n, args.seed, y=y, w=args.w if y is not None else 0.0)
        sec = time.perf_counter() - t0
        lab, top = read_samples(clf, xs)
        sure = top >= CONFIDENT
        counts = torch.bincount(lab, minlength=10)
        _, feats = predict(clf, xs)
        fld = frechet_distance(fit_gaussian(feats), test)
        agree = (lab == y).float().mean().item() if y is not None else float("nan")
        print(f"{epoch:>5} {sure.float().mean().item():9.3f} {int((counts > 0).sum()):>6} "
              f"{counts.max().item() / args.n:9.3f} {agree:6.3f} {fld:7.2f} {sec:6.1f}")
        result["b2"]["epochs"][epoch] = {"confident": sure.float().mean().item(), "classes": int((counts > 0).sum()),
                                         "class_counts": counts.tolist(), "agreement": agree, "fld": fld,
                                         "sample_seconds": sec}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
