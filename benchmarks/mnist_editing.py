"""Benchmark CS180 part A on the shipped MNIST DDPM (mnist/reference/model.pt), single thread:

  1. denoising: Gaussian blur vs one-step vs iterative (DDIM over the strided schedule), PSNR and
     SSIM against the clean digit, on the same test digits (10 per class) at several noise levels t;
  2. translation (SDEdit with the label of another class): how often the metric classifier reads
     the target class, and the source class, per i_start;
  3. inpainting (top half regenerated): with the true label, and towards another label (y + 1) with
     RePaint's resampling U = 1 (none), 2, 4: how often the classifier reads the asked-for label;
  4. visual anagrams over all 90 ordered label pairs (upright a, rotated b) and
  5. hybrids over all 90 pairs (low-pass a, high-pass b): the 10 x 10 success matrices, the rate of
     each view alone, the baseline of plain samples read the same way (techniques.plain_baselines) per
     pair, the 'easy' pairs that plain digits pass half the time or more, and the best other pairs.

Success of an anagram: the classifier reads a upright AND b rotated by 180 degrees. Success of a
hybrid: it reads the high-pass label b in the image ('up close') AND the low-pass label a in the
image blurred with sigma 2 px ('from afar'). a == b is not run; 6/9 and 9/6 are marked trivial
(a rotated 6 is a 9).

    python benchmarks/mnist_editing.py                          # sections 1-5 (about 7 min on one thread)
    python benchmarks/mnist_editing.py --only illusions         # 4-5: 5 seeds per pair, 10 DDIM steps
    python benchmarks/mnist_editing.py --only illusions --seeds 0 --illusion-steps 10
                                                                # exactly the report's matrices
    python benchmarks/mnist_editing.py --only hybrid-sigmas --hybrid-sigmas 1 1.5 2 2.5
                                                                # hybrid success over all pairs per low-pass sigma
    python benchmarks/mnist_editing.py --quick                  # fewer images, a smoke run
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from cs180 import techniques as ed  # noqa: E402
from mnist.checkpoint import load_model  # noqa: E402
from mnist.data import load_mnist  # noqa: E402
from mnist.metrics import load_classifier, predict  # noqa: E402
from mnist.sample import DEFAULT_W, REFERENCE  # noqa: E402
from runio.cli import (Parser, command_error, int_range, nonneg_float, positive_float, run_command,  # noqa: E402
                       seed_int)
from runio.files import check_output, replacing  # noqa: E402
from utils import generators  # noqa: E402

PROG = "benchmarks/mnist_editing.py"

BLUR_SIGMAS = (0.5, 1.0, 1.5, 2.0)
SECTIONS = ("denoising", "translation", "inpainting", "illusions", "hybrid-sigmas")


def per_class(y: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the first k examples of each class 0..9."""
    return torch.cat([(y == c).nonzero().flatten()[:k] for c in range(10)])


def mean(v: torch.Tensor) -> float:
    return v.float().mean().item()


def read(x: torch.Tensor) -> torch.Tensor:
    return predict(CLF, x)[0]


@torch.no_grad()
def prob(x: torch.Tensor) -> torch.Tensor:
    """(N, 10) class probabilities of the metric classifier."""
    return CLF.head(predict(CLF, x)[1]).softmax(1)


def denoising(model, schedule, x0, y, ts, steps, gen):
    """Rows (t, method, PSNR, SSIM, classifier agreement); all methods see the same x_t."""
    rows = []
    for t in ts:
        n = ed.forward_noise(schedule, x0, t, gen)
        scale = schedule.alpha_bar[t].sqrt().item()
        # the blur sees x_t / sqrt(alpha_bar_t): x_t itself is shrunk towards 0, which no blur undoes
        blurs = {s: ed.gaussian_blur_denoise(n.x_t / scale, s) for s in BLUR_SIGMAS}
        best = max(blurs, key=lambda s: mean(ed.psnr(blurs[s], x0)))
        out = {"noisy x_t / sqrt(ab_t)": n.x_t / scale,
               f"gaussian blur (best sigma={best})": blurs[best],
               "one-step, no label": ed.one_step_denoise(model, schedule, n.x_t, t),
               "one-step, true label": ed.one_step_denoise(model, schedule, n.x_t, t, y),
               f"iterative DDIM-{steps} grid, no label": ed.iterative_denoise(model, schedule, n.x_t, t, steps=steps),
               f"iterative DDIM-{steps} grid, true label": ed.iterative_denoise(model, schedule, n.x_t, t, y,
                                                                                steps=steps)}
        for name, x in out.items():
            rows.append(dict(t=t, method=name, psnr=mean(ed.psnr(x, x0)), ssim=mean(ed.ssim(x, x0)),
                             agree=mean(read(x) == y)))
    return rows


def translation(model, schedule, x0, y, i_starts, steps, w, gen):
    target = (y + 1) % 10
    rows = []
    ts = ed.strided_timesteps(schedule.T, steps)
    for i in i_starts:
        out = ed.translate(model, schedule, x0, target, i, w, steps, generator=gen)
        pred = read(out)
        rows.append(dict(i_start=i, t=ts[i], target=mean(pred == target), source=mean(pred == y)))
    return rows


def inpainting(model, schedule, x0, y, steps, w, seed, resamples):
    """Top half regenerated; rows (label, U, read as the asked label, read as the source label, seconds).
    Every run starts from the same per-digit seeds."""
    mask = torch.zeros(28, 28)
    mask[:14] = 1
    rows = []
    for name, lab, us in (("true label y", y, (1,)), ("other label y+1", (y + 1) % 10, resamples)):
        for u in us:
            start = time.perf_counter()
            out = ed.inpaint(model, schedule, x0, mask, lab, w, steps, generator=generators(seed, len(x0)), resample=u)
            pred = read(out)
            rows.append(dict(label=name, U=u, asked=mean(pred == lab), source=mean(pred == y),
                             kept_exact=bool(torch.equal(out[:, :, 14:], x0[:, :, 14:])),
                             seconds=time.perf_counter() - start))
    return rows


def illusion_sweeps(model, schedule, seeds, steps, w, sigma=ed.HYBRID_SIGMA, kinds=("anagram", "hybrid"),
                    baseline_seeds=5):
    """The report's sweeps (techniques.anagram_sweep / hybrid_sweep, all pairs x seeds in one batch), scored, beside
    techniques.plain_baselines (baseline_seeds plain samples per label). Returns {kind: dict(matrix (10, 10),
    baseline_matrix, first / second: each view's rate alone, success, baseline, easy: pairs plain digits pass,
    best: the best pairs that are neither trivial nor easy, ...)}."""
    out = {}
    base = ed.plain_baselines(model, schedule, read, range(baseline_seeds), w, steps)
    for kind in kinds:
        start = time.perf_counter()
        if kind == "anagram":
            sw = ed.anagram_sweep(model, schedule, seeds, w, steps)
            view1, view2 = sw.x, ed.flip(sw.x)  # upright: label a; rotated: label b
            want1, want2, skip, bm = sw.a, sw.b, ed.ROTATION_TRIVIAL, base.anagram
        else:
            kernel = ed.HYBRID_KERNEL if sigma == ed.HYBRID_SIGMA else 2 * math.ceil(3 * sigma) + 1
            sw = ed.hybrid_sweep(model, schedule, seeds, w, steps, sigma=sigma, kernel=kernel)
            view1, view2 = sw.x, ed.gaussian_blur_denoise(sw.x, ed.AFAR_SIGMA)  # up close: b; from afar: a
            want1, want2, skip, bm = sw.b, sw.a, (), base.hybrid
        first, second = read(view1) == want1, read(view2) == want2
        n = torch.arange(len(sw.a))  # ties in success: the pair the classifier is surest of, as in the report
        sure = torch.minimum(prob(view1)[n, want1], prob(view2)[n, want2])
        ok = first & second
        m = ed.pair_matrix(ok.float(), sw.a, sw.b)
        keep = torch.tensor([(int(a), int(b)) not in skip for a, b in zip(sw.a, sw.b)])
        cells = [(a, b) for a in range(10) for b in range(10) if a != b and (a, b) not in skip]
        easy = [p for p in ed.trivial_pairs(bm) if p not in skip]
        out[kind] = dict(matrix=m, baseline_matrix=bm, success=mean(ok[keep]), first=mean(first[keep]),
                         second=mean(second[keep]), baseline=sum(float(bm[p]) for p in cells) / len(cells),
                         easy=easy, best=ed.best_pairs(m, 8, list(skip) + easy, ed.pair_matrix(sure, sw.a, sw.b)),
                         pairs_any=sum(float(m[p]) > 0 for p in cells), pairs_all=sum(float(m[p]) == 1 for p in cells),
                         cells=len(cells), trivial={f"{a}/{b}": float(m[a, b]) for a, b in skip},
                         trivial_baseline={f"{a}/{b}": float(bm[a, b]) for a, b in skip},
                         seconds=time.perf_counter() - start, images=len(sw.a), sigma=sigma)
    return out


def print_matrix(m: torch.Tensor, rows: str, cols: str, marked=()):
    """A 10 x 10 rate matrix as text: '--' on the untested diagonal, '*' after a trivial pair."""
    print(f"rows: {rows}; columns: {cols}")
    print("      " + "".join(f"{b:>6}" for b in range(10)))
    for a in range(10):
        cells = []
        for b in range(10):
            v = float(m[a, b])
            cells.append("    --" if math.isnan(v) else f"{v:5.2f}" + ("*" if (a, b) in marked else " "))
        print(f"{a:>5} " + "".join(cells))
    print()


def best_text(r) -> str:
    m = r["matrix"]
    return ", ".join(f"{a}/{b} {float(m[a, b]):.2f}" for a, b in r["best"])


def pairs_values(d: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in d.items())


def easy_text(r) -> str:
    b = r["baseline_matrix"]
    return ", ".join(f"{x}/{y} {float(b[x, y]):.2f}" for x, y in r["easy"]) or "none"


def print_illusions(res, seeds, steps, w):
    n = len(seeds)
    if "anagram" in res:
        r = res["anagram"]
        print(f"4. visual anagrams, all 90 ordered pairs x {n} seeds ({', '.join(map(str, seeds))}), DDIM-{steps}, "
              f"w={w}, one batch of {r['images']} ({r['seconds']:.0f} s). Success = read as a upright AND b rotated.")
        print_matrix(r["matrix"], "upright label a", "rotated label b", ed.ROTATION_TRIVIAL)
        print(f"   88 non-trivial pairs: success {r['success']:.3f} (upright alone {r['first']:.3f}, rotated alone "
              f"{r['second']:.3f}); baseline, plain samples of a read the same way: {r['baseline']:.3f}")
        print(f"   pairs succeeding at least once: {r['pairs_any']}/88, with every seed: {r['pairs_all']}/88")
        print(f"   * trivial by rotation: {pairs_values(r['trivial'])}; plain digits pass as "
              f"{pairs_values(r['trivial_baseline'])}")
        print(f"   easy (plain digits pass in >= {ed.NEAR_TRIVIAL:.0%}): {easy_text(r)}")
        print(f"   best, neither trivial nor easy: {best_text(r)}")
        print("   baseline per pair: plain samples of a, read as a upright and b rotated")
        print_matrix(r["baseline_matrix"], "label a", "label b", ed.ROTATION_TRIVIAL)
    if "hybrid" in res:
        r = res["hybrid"]
        print(f"5. hybrids, all 90 ordered pairs x {n} seeds, DDIM-{steps}, w={w}, low-pass Gaussian sigma "
              f"{r['sigma']}, one batch of {r['images']} ({r['seconds']:.0f} s). Success = read as the high-pass "
              f"label b up close AND the low-pass label a after a sigma-{ed.AFAR_SIGMA:g} blur.")
        print_matrix(r["matrix"], "low-pass label a", "high-pass label b")
        print(f"   90 pairs: success {r['success']:.3f} (high-pass up close alone {r['first']:.3f}, low-pass from afar "
              f"alone {r['second']:.3f}); baseline, plain samples of b read the same way: {r['baseline']:.3f}")
        print(f"   pairs succeeding at least once: {r['pairs_any']}/90, with every seed: {r['pairs_all']}/90")
        print(f"   easy (plain digits pass in >= {ed.NEAR_TRIVIAL:.0%}): {easy_text(r)}")
        print(f"   best (low/high): {best_text(r)}")
        print("   baseline per pair: plain samples of b, read as b up close and a from afar")
        print_matrix(r["baseline_matrix"], "low-pass label a", "high-pass label b")


def table(rows, cols, fmt):
    widths = [max(len(c), *(len(fmt(r, c)) for r in rows)) for c in cols]
    print("  ".join(c.ljust(wd) for c, wd in zip(cols, widths)))
    for r in rows:
        print("  ".join(fmt(r, c).ljust(wd) for c, wd in zip(cols, widths)))
    print()


def cell(r, c):
    v = r[c]
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def jsonable(v):
    if torch.is_tensor(v):
        return [[None if math.isnan(x) else x for x in row] for row in v.tolist()] if v.ndim == 2 else v.tolist()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


CLF = None


def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=REFERENCE)
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=None,
                   help="run these sections only (default: all but hybrid-sigmas)")
    p.add_argument("--per-class", type=int_range(1, 1000), default=10, help="test digits per class for denoising / inpainting (10: 100)")
    p.add_argument("--t", type=int_range(1, 10_000), nargs="+", default=[50, 100, 150], help="noise levels (T=200)")
    p.add_argument("--steps", type=int_range(1, 10_000), default=ed.DEFAULT_STEPS, help="strided steps over T (denoising, translation)")
    p.add_argument("--inpaint-steps", type=int_range(1, 10_000), default=20, help="strided steps for inpainting (the report's)")
    p.add_argument("--resample", type=int_range(1, 100), nargs="+", default=[1, 2, 4], help="RePaint U values towards another label")
    p.add_argument("--w", type=nonneg_float, default=DEFAULT_W)
    p.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds per label pair (illusions)")
    p.add_argument("--baseline-seeds", type=int_range(1, 1000), default=5,
                   help="plain samples per label for the illusions' baselines (the report's 5)")
    p.add_argument("--illusion-steps", type=int_range(1, 10_000), default=10, help="DDIM steps of the illusion sweeps (the report's 10)")
    p.add_argument("--i-start", type=int_range(0, 10_000), nargs="+", default=[5, 10, 15, 20])
    p.add_argument("--hybrid-sigmas", type=positive_float, nargs="+", default=[1.0, 1.5, 2.0, 2.5],
                   help="low-pass sigmas for the hybrid-sigmas section (all pairs x --seeds each)")
    p.add_argument("--only-hybrids", action="store_true", help="the same as --only hybrid-sigmas (kept for old commands)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--quick", action="store_true", help="2 per class, 1 seed per pair: a smoke run")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    args = p.parse_args(argv)
    try:
        return run(args)
    except Exception as e:  # one line for what a user can fix (runio.cli.command_error); a traceback for a bug
        return command_error(PROG, e, lambda: "these settings; lower --threads or the sample counts")


def run(args) -> int:
    global CLF
    torch.set_num_threads(1)
    if args.json:
        check_output(args.json, args.overwrite, rerun=False)  # before the minutes of work, not after
    only = set(args.only or (["hybrid-sigmas"] if args.only_hybrids else SECTIONS[:-1]))
    if args.quick:
        args.per_class, args.seeds = 2, args.seeds[:1]
    model, schedule, _, _ = load_model(args.checkpoint)
    steps = (args.steps, args.inpaint_steps, args.illusion_steps)
    if max(args.t) > schedule.T or max(steps) > schedule.T or max(args.i_start) > args.steps:
        raise ValueError(f"need --t and every --*steps in 1..T={schedule.T}, and --i-start in 0..--steps "
                         f"(got --t {args.t}, steps {list(steps)}, --i-start {args.i_start})")
    model.to(memory_format=torch.channels_last)  # same weights, faster CPU convolutions
    data = load_mnist(download=False, verbose=False)
    CLF, info = load_classifier(data=data, verbose=False)
    idx = per_class(data.test_y, args.per_class)
    x0, y = data.test_x[idx], data.test_y[idx]
    print(f"model {args.checkpoint} (T={schedule.T}, {schedule.kind}); {len(x0)} {data.source} test digits; "
          f"classifier test accuracy {info['test_accuracy']:.3f}; w={args.w}\n")
    results, start = {}, time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)

    if "denoising" in only:
        results["denoising"] = denoising(model, schedule, x0, y, args.t, args.steps, gen)
        print(f"1. denoising, DDIM-{args.steps} grid (PSNR dB / SSIM vs the clean digit, classifier agreement with "
              "the true label)")
        table(results["denoising"], ["t", "method", "psnr", "ssim", "agree"], cell)

    if "translation" in only:
        half = per_class(data.test_y, max(1, args.per_class // 2))
        results["translation"] = translation(model, schedule, data.test_x[half], data.test_y[half], args.i_start,
                                             args.steps, args.w, gen)
        print(f"2. translation to label (y + 1) % 10, {len(half)} digits: fraction read as target / as source")
        table(results["translation"], ["i_start", "t", "target", "source"], cell)

    if "inpainting" in only:
        results["inpainting"] = inpainting(model, schedule, x0, y, args.inpaint_steps, args.w, args.seed, args.resample)
        print(f"3. inpainting, top half regenerated, {len(x0)} digits, {args.inpaint_steps} strided steps, w={args.w}; "
              "RePaint resampling U (1 = none): fraction read as the asked label / as the source label y")
        table(results["inpainting"], ["label", "U", "asked", "source", "kept_exact", "seconds"], cell)

    if "illusions" in only:
        results["illusions"] = illusion_sweeps(model, schedule, args.seeds, args.illusion_steps, args.w,
                                               baseline_seeds=args.baseline_seeds)
        print_illusions(results["illusions"], args.seeds, args.illusion_steps, args.w)

    if "hybrid-sigmas" in only:
        rows = []
        for sigma in args.hybrid_sigmas:
            r = illusion_sweeps(model, schedule, args.seeds, args.illusion_steps, args.w, sigma, ("hybrid",),
                                args.baseline_seeds)["hybrid"]
            rows.append(dict(sigma=sigma, success=r["success"], high_up_close=r["first"], low_from_afar=r["second"],
                             baseline=r["baseline"], pairs_any=r["pairs_any"], seconds=r["seconds"]))
        results["hybrid_sigmas"] = rows
        print(f"hybrid low-pass sigma over all 90 pairs x {len(args.seeds)} seeds, DDIM-{args.illusion_steps}: "
              "success (high up close AND low from afar), each view alone, baseline")
        table(rows, ["sigma", "success", "high_up_close", "low_from_afar", "baseline", "pairs_any", "seconds"], cell)

    results["seconds"] = time.perf_counter() - start
    print(f"total {results['seconds']:.0f} s on {torch.get_num_threads()} thread")
    if args.json:
        with replacing(args.json) as tmp, open(tmp, "w") as f:
            json.dump(jsonable(results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "benchmarks/mnist_editing.py",
                         "the benchmark stopped; every file it wrote is whole; run it again"))
