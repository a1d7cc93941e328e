"""Benchmark the shipped MNIST model: agreement (full chain and DDIM), FLD with its bounds, spread, time.

    python benchmarks/mnist_bench.py                        # 100 per digit, full DDPM chain and DDIM-50
    python benchmarks/mnist_bench.py --per-digit 20 --samplers ddim50 --w 0 1 2 4    # a quick guidance sweep
    python benchmarks/mnist_bench.py --stats fld.json --data DIR    # the statistics problem 5's page reads

--stats writes the numbers problem 5's page quotes (mnist/problem5.py reads mnist/reference/fld.json
when its weights fingerprint matches the model's): FLD on --fld-n digits per seed at w = 1 and 4 for
each of --fld-seeds seeds, with the floor (the same number of real training digits) per seed, against
the full MNIST test set (10,000 digits, which neither the model nor the classifier saw), with a sampler
cheap enough for thousands of digits (--fld-sampler, default dpm++10); and the full chain against the
page's DDIM grid sampler and the FLD sampler on the same --equiv-n seeds, with the standard errors of
the paired differences. It needs torchvision's MNIST files under --data DIR (DIR/MNIST/raw; offline:
mkdir DIR && tar -xzf ../shared/data/mnist-raw.tar.gz -C DIR, outside the checkout, whose data/ would
change the reports' data) and diffusers for dpm++. About 15 min of one free CPU thread. Copy the file
to mnist/reference/fld.json.

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
from mnist.metrics import load_classifier, predict, score  # noqa: E402
from mnist.problem5 import LOW_W, corrected_spread, paired_se, spread_stats, weights_fingerprint  # noqa: E402
from mnist.sample import DEFAULT_W, REFERENCE, generate  # noqa: E402
from image_diffusion.fid import fit_gaussian, frechet_distance  # noqa: E402
from solvers import settings_for  # noqa: E402
from runio.cli import Parser, command_error, int_range, nonneg_float, run_command, seed_int  # noqa: E402
from runio.errors import OutputError  # noqa: E402
from runio.files import atomic_save, check_output, replacing  # noqa: E402

PROG = "benchmarks/mnist_bench.py"


def sampler_settings(name: str, w: float):
    """'ddpm', 'ddim50', 'dpm++10', 'unipc10', 'euler10' -> (SamplerSettings with guidance w, text)."""
    for kind in ("dpm++", "unipc", "euler"):
        steps = name.removeprefix(kind)
        if name.startswith(kind) and steps.isdigit() and int(steps) >= 1:
            return settings_for(kind, int(steps), w=w), f"{kind} {steps} steps"
    steps = sampler_steps(name)
    if steps is None:
        return settings_for("ddpm", None, w=w), "full chain"
    return settings_for("ddim", steps, w=w), f"DDIM {steps} steps"


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
    p.add_argument("--stats", default=None, help="write problem 5's statistics here instead (see above)")
    p.add_argument("--data", default="data",
                   help="--stats: the folder holding torchvision's MNIST/ (default %(default)s)")
    p.add_argument("--fld-n", type=int_range(1000, 100_000), default=1000,
                   help="--stats: digits per seed, at least 1,000 (default %(default)s)")
    p.add_argument("--fld-seeds", type=int_range(2, 100), default=3, help="--stats: seeds (default %(default)s)")
    p.add_argument("--fld-sampler", default="dpm++10", help="--stats: sampler for FLD (default %(default)s)")
    p.add_argument("--equiv-n", type=int_range(10, 100_000), default=200,
                   help="--stats: seeds on which the full chain meets --equiv-samplers (default %(default)s)")
    p.add_argument("--equiv-samplers", nargs="+", default=["ddim25", "dpm++10"],
                   help="--stats: the samplers compared with the full chain: the page's grid sampler (problem5's "
                        "GRID_STEPS) and the FLD sampler (default %(default)s)")
    args = p.parse_args(argv)
    try:
        if args.stats:
            return run_stats(args, argv)
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


def run_stats(args, argv) -> int:
    """Problem 5's statistics (see the module docstring) -> args.stats, with the command that wrote them."""
    for name in [args.fld_sampler, *args.equiv_samplers]:
        sampler_settings(name, 0.0)  # a bad name is a one-line error now, not after an hour of sampling
    check_output(args.stats, args.overwrite, rerun=False)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, schedule, _, info = load_model(args.checkpoint)
    real = load_mnist(args.data, source="torchvision", download=False, verbose=False)
    clf, clf_info = load_classifier(verbose=False)  # the shipped one, whatever the data: the page's classifier
    _, test_feats = predict(clf, real.test_x)
    test, real_spread = fit_gaussian(test_feats), corrected_spread(test_feats, real.test_y)
    out = dict(command="python benchmarks/mnist_bench.py " + " ".join(argv or sys.argv[1:]),
               checkpoint=args.checkpoint, weights_fingerprint=weights_fingerprint(model), step=info.get("step"),
               classifier=clf_info, torch_threads=torch.get_num_threads())
    labels = torch.arange(args.fld_n) % 10
    ws, seeds = [LOW_W, DEFAULT_W], list(range(args.fld_seeds))
    fld = dict(n=args.fld_n, seeds=seeds, sampler=sampler_settings(args.fld_sampler, 0.0)[1],
               reference=f"the {len(real.test_x):,} MNIST test digits", real=[], generated={f"{w:g}": [] for w in ws},
               agreement={f"{w:g}": [] for w in ws}, spread_ratio_mean={f"{w:g}": [] for w in ws})
    for seed in seeds:
        idx = torch.randperm(len(real.train_x), generator=torch.Generator().manual_seed(seed))[:args.fld_n]
        fld["real"].append(frechet_distance(fit_gaussian(predict(clf, real.train_x[idx])[1]), test))
        for w in ws:
            x = generate(model, schedule, labels, seed=seed, settings=sampler_settings(args.fld_sampler, w)[0])
            pred, feats = predict(clf, x)
            fld["generated"][f"{w:g}"].append(frechet_distance(fit_gaussian(feats), test))
            fld["agreement"][f"{w:g}"].append((pred == labels).double().mean().item())
            fld["spread_ratio_mean"][f"{w:g}"].append(float((corrected_spread(feats, labels) / real_spread).mean()))
            print(f"seed {seed} w={w:g}: FLD {fld['generated'][f'{w:g}'][-1]:.2f} (real {fld['real'][-1]:.2f}), agreement "
                  f"{fld['agreement'][f'{w:g}'][-1]:.3f}", flush=True)
    out["fld"] = fld
    out["samplers"] = sampler_rows(model, schedule, clf, real, test_feats, args)
    out["seconds"] = time.perf_counter() - start
    with replacing(args.stats) as tmp, open(tmp, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.stats} in {out['seconds'] / 60:.1f} min")
    return 0


def sampler_rows(model, schedule, clf, real, test_feats, args) -> dict:
    """The full chain and args.equiv_samplers on the same args.equiv_n seeds at w = DEFAULT_W: agreement and
    within-class spread, each with the standard error of its paired difference from the full chain."""
    labels = torch.arange(args.equiv_n) % 10
    names = ["ddpm", *[name for name in args.equiv_samplers if name != "ddpm"]]
    hits, feats, seconds = {}, {}, {}
    for name in names:
        t0 = time.perf_counter()
        x = generate(model, schedule, labels, seed=0, settings=sampler_settings(name, DEFAULT_W)[0])
        seconds[name] = time.perf_counter() - t0
        pred, feats[name] = predict(clf, x)
        hits[name] = pred == labels
        print(f"{name}: agreement {hits[name].double().mean():.3f} on {len(labels)} digits in {seconds[name]:.0f} s",
              flush=True)
    rows = {}
    for name in names:
        sp = spread_stats([feats["ddpm"], feats[name]], labels, test_feats, real.test_y)
        rows[name] = dict(agreement=hits[name].double().mean().item(), spread_ratio_mean=float(sp.mean[-1]),
                          agreement_diff=(hits[name].double().mean() - hits["ddpm"].double().mean()).item(),
                          agreement_diff_se=paired_se(hits["ddpm"], hits[name]),
                          spread_diff=float(sp.mean[-1] - sp.mean[0]), spread_diff_se=sp.diff_se,
                          seconds=seconds[name], sampler=sampler_settings(name, DEFAULT_W)[1])
    return dict(n=len(labels), w=DEFAULT_W, rows=rows)


if __name__ == "__main__":
    sys.exit(run_command(main, "benchmarks/mnist_bench.py",
                         "the benchmark stopped; every file it wrote is whole; run it again"))
