"""cifar10-32 on a CPU thread for fixed wall-clock budgets, beside lucidrains' denoising-diffusion-pytorch.

    python benchmarks/image_budget.py --data data/cifar10-jpg/train --minutes 10 20 40

For each budget both models train from scratch on the same images, batch size, learning rate, EMA
decay and budget (one torch thread each, one after the other), then sample --n-eval images with DDIM
(100 steps, eta 0) and are scored with the same metric, fitted once on --n-eval real training images:
Inception FID when its weights are here, otherwise the classifier stand-in of image_diffusion/fid.py
(labelled as not comparable with papers). Prints, per budget and model, the distance, the sample grid,
the steps done and seconds per step, and the ratio ours / theirs (below 1: ours is better).
lucidrains' Unet is sized to about our parameter count (dim 24, mults 1,2,2,2) and set to Ho et al.'s
linear schedule and noise prediction, as ours. Sampling time is not counted in the budget.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TQDM_DISABLE", "1")  # denoising-diffusion-pytorch draws a bar per sampling call

import torch  # noqa: E402

try:
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet
except ImportError:  # the peer is a benchmark-only dependency
    sys.exit("benchmarks/image_budget.py: error: the peer is not installed; run: pip install -r benchmarks/requirements.txt")
from torch.utils.data import DataLoader  # noqa: E402

from image_diffusion.data import hflip, load_images  # noqa: E402
from image_diffusion.fid import get_metric  # noqa: E402
from image_diffusion.presets import get_preset  # noqa: E402
from image_diffusion.sample import generators, save_grid  # noqa: E402
from image_diffusion.trainer import train  # noqa: E402
from image_diffusion.unet import count_parameters  # noqa: E402
from utils import EMA, Parser, positive_float, positive_int, sample  # noqa: E402


def train_lucidrains(cfg, data, seconds: float, dim: int = 24):
    """GaussianDiffusion(Unet) trained for `seconds` with cfg's batch, lr, warm-up, clip and EMA.
    Returns (EMA diffusion model, steps, seconds)."""
    torch.manual_seed(cfg.seed)
    unet = Unet(dim=dim, dim_mults=cfg.mults, dropout=cfg.dropout)
    diffusion = GaussianDiffusion(unet, image_size=cfg.resolution, timesteps=cfg.T, sampling_timesteps=cfg.sample_steps,
                                  objective="pred_noise", beta_schedule="linear")
    ema = EMA(diffusion, cfg.ema_decay)
    opt = torch.optim.Adam(diffusion.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=g, drop_last=True)
    step, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for x, _ in loader:
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
            x = hflip(x, torch.rand(len(x), generator=g) < 0.5)
            loss = diffusion((x + 1) / 2)  # it takes [0, 1] and normalises itself
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(diffusion.parameters(), cfg.grad_clip)
            opt.step()
            ema.update(diffusion)
            step += 1
            if time.perf_counter() - t0 >= seconds:
                break
    return ema.model.eval(), step, time.perf_counter() - t0


def main(argv=None) -> int:
    p = Parser(prog="python benchmarks/image_budget.py", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cifar10", help='"cifar10" (torchvision, in --data-root) or a folder of images')
    p.add_argument("--data-root", default="data")
    p.add_argument("--minutes", type=positive_float, nargs="+", default=[10, 20, 40], help="training budgets")
    p.add_argument("--n-eval", type=positive_int, default=1000, help="generated and real images per distance")
    p.add_argument("--classifier-steps", type=positive_int, default=1500, help="steps of the stand-in classifier")
    p.add_argument("--out", default=os.path.join("runs", "image_budget"), help="where the sample grids go")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = get_preset("cifar10-32", data=args.data, data_root=args.data_root, device="cpu", steps=10**9)  # the budget stops it
    data = load_images(cfg.data, cfg.data_root, cfg.resolution, cfg.channels, cfg.download)
    os.makedirs(args.out, exist_ok=True)
    metric = get_metric(data, classifier_steps=args.classifier_steps, progress=True)
    real = torch.stack([data[int(i)][0] for i in torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
                        [:args.n_eval]])
    ref = metric.fit(real)
    print(f"data {data.describe()}; metric: {metric.name}; {args.n_eval} images per distance; "
          f"sampler DDIM-{cfg.sample_steps}; 1 CPU thread", flush=True)
    print(f"{'minutes':>7}  {'model':<28} {'params':>9} {'steps':>6} {'s/step':>7} {'distance':>9}  grid")
    for minutes in args.minutes:
        row = {}
        result = train(cfg, data, progress=False, max_seconds=minutes * 60)
        shape = (cfg.channels, cfg.resolution, cfg.resolution)
        x = torch.cat([sample(result.model, result.schedule, len(gs), generator=gs, steps=cfg.sample_steps, shape=shape)
                       for gs in _chunks(generators(args.n_eval, 0), 250)])
        row["ours"] = (count_parameters(result.model), result.step, result.seconds, metric.distance(ref, x), x)
        model, steps, seconds = train_lucidrains(cfg, data, minutes * 60)
        torch.manual_seed(0)
        with torch.no_grad():
            x = torch.cat([model.sample(batch_size=min(250, args.n_eval - i)) * 2 - 1 for i in range(0, args.n_eval, 250)])
        row["lucidrains"] = (count_parameters(model.model), steps, seconds, metric.distance(ref, x), x)
        for name, (params, steps, seconds, dist, x) in row.items():
            grid = os.path.join(args.out, f"{name}_{minutes:g}min.png")
            save_grid(x[:64], grid)
            label = "image_diffusion cifar10-32" if name == "ours" else "denoising-diffusion-pytorch"
            print(f"{minutes:7g}  {label:<28} {params:9,} {steps:6d} {seconds / max(steps, 1):7.3f} {dist:9.2f}  {grid}")
        print(f"{minutes:7g}  ratio ours / lucidrains: {row['ours'][3] / row['lucidrains'][3]:.3f}", flush=True)
    return 0


def _chunks(items: list, size: int):
    return [items[i:i + size] for i in range(0, len(items), size)]


if __name__ == "__main__":
    sys.exit(main())
