"""Benchmark CS180 part A on the shipped MNIST DDPM (mnist/reference/model.pt), single thread:

  1. denoising: Gaussian blur vs one-step vs iterative (DDIM over the strided schedule), PSNR and
     SSIM against the clean digit, on the same test digits (10 per class) at several noise levels t;
  2. translation (SDEdit with the label of another class): how often the metric classifier reads
     the target class, and the source class, per i_start;
  3. inpainting (top half regenerated with the true label): classifier agreement;
  4. visual anagrams: agreement of each view (upright, rotated 180 deg) with its label, beside a
     baseline of plain conditional samples of the upright label, rotated;
  5. hybrids: what the classifier reads in the image and in its lowpass.

    python benchmarks/mnist_editing.py                 # 430 s measured on one (shared) CPU thread
    python benchmarks/mnist_editing.py --quick         # fewer images, a smoke run
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

from mnist import editing as ed  # noqa: E402
from mnist.checkpoint import load_model  # noqa: E402
from mnist.data import load_mnist  # noqa: E402
from mnist.metrics import load_classifier, predict  # noqa: E402
from mnist.sample import DEFAULT_W, REFERENCE  # noqa: E402

ANAGRAM_PAIRS = ((6, 9), (9, 6), (1, 1), (0, 0), (8, 8), (2, 5), (7, 4))
HYBRID_PAIRS = ((1, 7), (0, 6), (4, 9), (7, 1), (3, 8))
BLUR_SIGMAS = (0.5, 1.0, 1.5, 2.0)


def per_class(y: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the first k examples of each class 0..9."""
    return torch.cat([(y == c).nonzero().flatten()[:k] for c in range(10)])


def mean(v: torch.Tensor) -> float:
    return v.float().mean().item()


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
                             agree=mean(predict(CLF, x)[0] == y)))
    return rows


def translation(model, schedule, x0, y, i_starts, steps, w, gen):
    target = (y + 1) % 10
    rows = []
    ts = ed.strided_timesteps(schedule.T, steps)
    for i in i_starts:
        out = ed.translate(model, schedule, x0, target, i, w, steps, generator=gen)
        pred = predict(CLF, out)[0]
        rows.append(dict(i_start=i, t=ts[i], target=mean(pred == target), source=mean(pred == y)))
    return rows


def anagrams(model, schedule, n, steps, w, seed):
    rows = []
    for a, b in ANAGRAM_PAIRS:
        g = ed_generators(n, seed)
        x = ed.visual_anagram(model, schedule, a, b, n, w, steps, generator=g)
        up, down = predict(CLF, x.up)[0], predict(CLF, x.down)[0]
        base = ed.iterative_denoise(model, schedule, torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)),
                                    schedule.T, a, w, steps)
        rows.append(dict(pair=f"{a}/{b}", up=mean(up == a), down=mean(down == b), both=mean((up == a) & (down == b)),
                         baseline_up=mean(predict(CLF, base)[0] == a),
                         baseline_down=mean(predict(CLF, ed.flip(base))[0] == b)))
    return rows


def hybrids(model, schedule, n, steps, w, seed, sigmas=(ed.HYBRID_SIGMA,)):
    """Per lowpass sigma (kernel reaching 3 sigma) and pair: read as each label in the image ('up close')
    and after a sigma=2 blur ('from afar'); 'both' = high up close and low from afar."""
    rows = []
    for sigma in sigmas:
        kernel = ed.HYBRID_KERNEL if sigma == ed.HYBRID_SIGMA else 2 * math.ceil(3 * sigma) + 1
        for lo, hi in HYBRID_PAIRS + (("all", "pairs"),):
            if lo == "all":
                group = [r for r in rows if r["sigma"] == sigma]
                rows.append({k: (sum(r[k] for r in group) / len(group) if k not in ("sigma", "kernel", "pair") else
                                 group[0][k]) for k in group[0]} | dict(pair="mean"))
                continue
            x = ed.hybrid(model, schedule, lo, hi, kernel=kernel, sigma=sigma, n=n, w=w, steps=steps,
                          generator=ed_generators(n, seed))
            full = predict(CLF, x)[0]
            low = predict(CLF, ed.gaussian_blur_denoise(x, 2.0))[0]
            rows.append(dict(sigma=sigma, kernel=kernel, pair=f"{lo}/{hi}", full_low=mean(full == lo),
                             full_high=mean(full == hi), blurred_low=mean(low == lo), blurred_high=mean(low == hi),
                             both=mean((full == hi) & (low == lo))))
    return rows


def ed_generators(n, seed):
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def table(rows, cols, fmt):
    widths = [max(len(c), *(len(fmt(r, c)) for r in rows)) for c in cols]
    print("  ".join(c.ljust(wd) for c, wd in zip(cols, widths)))
    for r in rows:
        print("  ".join(fmt(r, c).ljust(wd) for c, wd in zip(cols, widths)))
    print()


def cell(r, c):
    v = r[c]
    return f"{v:.3f}" if isinstance(v, float) else str(v)


CLF = None


def main(argv=None) -> int:
    global CLF
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=REFERENCE)
    p.add_argument("--per-class", type=int, default=10, help="test digits per class for denoising (default 10: 100)")
    p.add_argument("--t", type=int, nargs="+", default=[50, 100, 150], help="noise levels (T=200)")
    p.add_argument("--steps", type=int, default=ed.DEFAULT_STEPS, help="strided steps over T")
    p.add_argument("--w", type=float, default=DEFAULT_W)
    p.add_argument("--n", type=int, default=20, help="images per anagram / hybrid pair")
    p.add_argument("--i-start", type=int, nargs="+", default=[5, 10, 15, 20])
    p.add_argument("--hybrid-sigmas", type=float, nargs="+", default=[ed.HYBRID_SIGMA],
                   help="lowpass sigmas to compare for hybrids (the tuning run: 0.75 1 1.5 2 3 with --n 10)")
    p.add_argument("--only-hybrids", action="store_true", help="skip sections 1-4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 per class, n=4: a smoke run")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.per_class, args.n = 2, 4
    model, schedule, _ = load_model(args.checkpoint)
    model.to(memory_format=torch.channels_last)  # same weights, faster CPU convolutions
    data = load_mnist(download=False, verbose=False)
    CLF, info = load_classifier(data=data, verbose=False)
    idx = per_class(data.test_y, args.per_class)
    x0, y = data.test_x[idx], data.test_y[idx]
    print(f"model {args.checkpoint} (T={schedule.T}, {schedule.kind}); {len(x0)} {data.source} test digits; "
          f"classifier test accuracy {info['test_accuracy']:.3f}; steps={args.steps}, w={args.w}\n")
    results, start = {}, time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)

    if args.only_hybrids:
        return report_hybrids(results, model, schedule, args, start)
    results["denoising"] = denoising(model, schedule, x0, y, args.t, args.steps, gen)
    print("1. denoising (PSNR dB / SSIM vs the clean digit, classifier agreement with the true label)")
    table(results["denoising"], ["t", "method", "psnr", "ssim", "agree"], cell)

    half = per_class(data.test_y, max(1, args.per_class // 2))
    results["translation"] = translation(model, schedule, data.test_x[half], data.test_y[half], args.i_start,
                                         args.steps, args.w, gen)
    print(f"2. translation to label (y + 1) % 10, {len(half)} digits: fraction read as target / as source")
    table(results["translation"], ["i_start", "t", "target", "source"], cell)

    mask = torch.zeros(28, 28)
    mask[:14] = 1
    inp = ed.inpaint(model, schedule, x0, mask, y, args.w, args.steps, generator=gen)
    results["inpainting"] = dict(agree=mean(predict(CLF, inp)[0] == y),
                                 kept_exact=bool(torch.equal(inp[:, :, 14:], x0[:, :, 14:])),
                                 psnr_regenerated=mean(ed.psnr(inp, x0)))
    print(f"3. inpainting, top half regenerated with the true label: agreement {results['inpainting']['agree']:.3f}, "
          f"bottom half kept exactly: {results['inpainting']['kept_exact']}\n")

    results["anagrams"] = anagrams(model, schedule, args.n, args.steps, args.w, args.seed)
    print(f"4. visual anagrams a/b, {args.n} each: upright read as a, rotated read as b, both; "
          "baseline = plain samples of a (rotated for b)")
    table(results["anagrams"], ["pair", "up", "down", "both", "baseline_up", "baseline_down"], cell)

    return report_hybrids(results, model, schedule, args, start)


def report_hybrids(results, model, schedule, args, start) -> int:
    results["hybrids"] = hybrids(model, schedule, args.n, args.steps, args.w, args.seed, args.hybrid_sigmas)
    print(f"5. hybrids low/high (lowpass sigma {', '.join(map(str, args.hybrid_sigmas))}), {args.n} each: "
          "fraction read as each label, in the image and after a sigma=2 blur; both = high in the image, low blurred")
    table(results["hybrids"], ["sigma", "kernel", "pair", "full_low", "full_high", "blurred_low", "blurred_high",
                               "both"], cell)

    results["seconds"] = time.perf_counter() - start
    print(f"total {results['seconds']:.0f} s on {torch.get_num_threads()} thread")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
