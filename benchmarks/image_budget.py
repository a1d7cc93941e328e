"""cifar10-32 on a CPU thread for fixed wall-clock budgets, beside lucidrains' denoising-diffusion-pytorch.

    python benchmarks/image_budget.py --data data/cifar10-jpg/train --minutes 10 20 40

Both models train from scratch on the same images, batch size, learning rate, warm-up, gradient clip,
EMA decay and budget, one torch thread each. By default the two run at the same time in two processes
(--jobs 2), so both see the same load on the machine; --jobs 1 runs them one after the other.

The budgets are cumulative: each model trains once, up to the largest budget, and is sampled and
scored when its training time reaches each budget. The learning rate is a warm-up and then constant,
and nothing random is carried between our steps, so the 20-minute point is what a 20-minute run gives
(ours continues bit-identically through image_diffusion.trainer's --resume). Sampling time is not
counted in the budget.

After each budget both sample --n-eval images with the preset's sampler, DDIM with 100 steps and eta 1
(stochastic: the ancestral step on the strided schedule; --eta 0 gives the deterministic DDIM of the earlier
runs), and are scored with the same metric, fitted once on --n-eval real training images: Inception FID when
its weights are here, otherwise the classifier stand-in of image_diffusion/fid.py (labelled as not comparable
with papers). Prints, per budget and model, the distance, the sample grid, the steps done and seconds per
step, and the ratio ours / theirs (below 1: ours is better). lucidrains' Unet is sized to about our
parameter count (dim 24, mults 1,2,2,2) and set to Ho et al.'s linear schedule and noise prediction, as ours.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TQDM_DISABLE", "1")  # denoising-diffusion-pytorch draws a bar per sampling call

import torch  # noqa: E402

try:
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet
except ImportError:  # the peer is a benchmark-only dependency
    sys.exit("benchmarks/image_budget.py: error: the peer is not installed; run: pip install -r benchmarks/requirements.txt")
from torch.utils.data import DataLoader  # noqa: E402

from image_diffusion.data import DataError, hflip, load_images  # noqa: E402
from image_diffusion.fid import get_metric  # noqa: E402
from image_diffusion.presets import get_preset  # noqa: E402
from image_diffusion.sample import save_grid  # noqa: E402
from image_diffusion.trainer import train  # noqa: E402
from image_diffusion.unet import count_parameters  # noqa: E402
from runio.cli import Parser, positive_float, positive_int, run_command, unit_float  # noqa: E402
from solvers import settings_for  # noqa: E402
from utils import EMA, generators, sample  # noqa: E402

MODELS = {"ours": "image_diffusion cifar10-32", "lucidrains": "denoising-diffusion-pytorch"}


def run_ours(cfg, data, budgets: list, n_eval: int) -> list:
    """Train ours for each cumulative budget in turn (resuming its own run folder) and sample after each.
    Returns [(params, steps, seconds, samples)] per budget."""
    rows, done = [], 0.0
    shape = (cfg.channels, cfg.resolution, cfg.resolution)
    with tempfile.TemporaryDirectory() as out:
        for i, seconds in enumerate(budgets):
            result = train(cfg, data, out=out, resume=i > 0, progress=False, max_seconds=seconds - done)
            done = result.seconds
            how = settings_for(cfg.sample_sampler, cfg.sample_steps or None, cfg.sample_eta)
            x = torch.cat([sample(result.model, result.schedule, len(gs), None, how, gs, shape=shape)
                           for gs in _chunks(generators(0, n_eval), 250)])
            rows.append((count_parameters(result.model), result.step, result.seconds, x))
            _progress("ours", seconds, result.step, result.seconds)
    return rows


def run_lucidrains(cfg, data, budgets: list, n_eval: int, dim: int = 24) -> list:
    """GaussianDiffusion(Unet) with cfg's batch, lr, warm-up, clip and EMA, trained for each cumulative budget
    in turn and sampled (its EMA) after each. Returns [(params, steps, seconds, samples)] per budget."""
    torch.manual_seed(cfg.seed)
    unet = Unet(dim=dim, dim_mults=cfg.mults, dropout=cfg.dropout)
    diffusion = GaussianDiffusion(unet, image_size=cfg.resolution, timesteps=cfg.T, sampling_timesteps=cfg.sample_steps,
                                  objective="pred_noise", beta_schedule="linear",
                                  ddim_sampling_eta=cfg.sample_eta)
    ema = EMA(diffusion, cfg.ema_decay)
    opt = torch.optim.Adam(diffusion.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=g, drop_last=True)
    batches = _forever(loader)
    rows, step, trained = [], 0, 0.0
    for seconds in budgets:
        t0 = time.perf_counter()
        while trained + time.perf_counter() - t0 < seconds:
            x, _ = next(batches)
            diffusion.train()
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
        trained += time.perf_counter() - t0
        model = ema.model.eval()
        torch.manual_seed(0)
        with torch.no_grad():
            x = torch.cat([model.sample(batch_size=min(250, n_eval - i)) * 2 - 1 for i in range(0, n_eval, 250)])
        rows.append((count_parameters(model.model), step, trained, x))
        _progress("lucidrains", seconds, step, trained)
    return rows


def _progress(name: str, budget: float, steps: int, seconds: float) -> None:
    """One line as each budget is trained and sampled (the table waits for both models)."""
    print(f"  {MODELS[name]}: {budget / 60:g} min trained and sampled ({steps} steps, {seconds / max(steps, 1):.2f} "
          "s/step)", flush=True)


def _forever(loader):
    while True:
        yield from loader


def _worker(name: str, args, budgets: list) -> list:
    torch.set_num_threads(1)
    cfg, data = _setup(args)
    return (run_ours if name == "ours" else run_lucidrains)(cfg, data, budgets, args.n_eval)


def _setup(args):
    eta = {} if getattr(args, "eta", None) is None else {"sample_eta": args.eta}
    cfg = get_preset("cifar10-32", data=args.data, data_root=args.data_root, device="cpu", steps=10**9,
                     save_every=10**9, **eta)  # the budget stops it; the run folder is written at each budget
    return cfg, load_images(cfg.data, cfg.data_root, cfg.resolution, cfg.channels, cfg.download)


def main(argv=None) -> int:
    p = Parser(prog="python benchmarks/image_budget.py", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cifar10", help='"cifar10" (torchvision, in --data-root) or a folder of images')
    p.add_argument("--data-root", default="data")
    p.add_argument("--minutes", type=positive_float, nargs="+", default=[10, 20, 40],
                   help="training budgets, cumulative (default 10 20 40)")
    p.add_argument("--eta", type=unit_float, default=None,
                   help="DDIM's eta for both models (default: the preset's, 1; 0: deterministic DDIM)")
    p.add_argument("--n-eval", type=positive_int, default=200, help="generated and real images per distance")
    p.add_argument("--classifier-steps", type=positive_int, default=300, help="steps of the stand-in classifier")
    p.add_argument("--jobs", type=int, choices=(1, 2), default=2 if (os.cpu_count() or 1) >= 2 else 1,
                   help="2: both models at once, one thread each (default with 2 or more cores); 1: one after the other")
    p.add_argument("--out", default=os.path.join("runs", "image_budget"), help="where the sample grids go")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        cfg, data = _setup(args)
    except (ValueError, DataError) as e:
        p.error(str(e))
    budgets = sorted(m * 60 for m in args.minutes)
    os.makedirs(args.out, exist_ok=True)
    metric = get_metric(data, classifier_steps=args.classifier_steps, progress=True)
    real = torch.stack([data[int(i)][0] for i in torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
                        [:args.n_eval]])
    ref = metric.fit(real)
    print(f"data {data.describe()}; metric: {metric.name}; {args.n_eval} images per distance; "
          f"sampler DDIM-{cfg.sample_steps}, eta {cfg.sample_eta:g}; 1 CPU thread per model, {args.jobs} model(s) at a "
          "time", flush=True)
    t0 = time.perf_counter()
    if args.jobs == 2:
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            jobs = {name: pool.apply_async(_worker, (name, args, budgets)) for name in MODELS}
            rows = {name: job.get() for name, job in jobs.items()}
    else:
        rows = {name: _worker(name, args, budgets) for name in MODELS}
    print(f"trained and sampled in {(time.perf_counter() - t0) / 60:.1f} min")
    print(f"{'minutes':>7}  {'model':<28} {'params':>9} {'steps':>6} {'s/step':>7} {'distance':>9}  grid")
    for i, seconds in enumerate(budgets):
        dist = {}
        for name, label in MODELS.items():
            params, steps, trained, x = rows[name][i]
            dist[name] = metric.distance(ref, x)
            grid = os.path.join(args.out, f"{name}_{seconds / 60:g}min.png")
            save_grid(x[:64], grid)
            print(f"{seconds / 60:7g}  {label:<28} {params:9,} {steps:6d} {trained / max(steps, 1):7.3f} "
                  f"{dist[name]:9.2f}  {grid}")
        print(f"{seconds / 60:7g}  ratio ours / lucidrains: {dist['ours'] / dist['lucidrains']:.3f}", flush=True)
    return 0


def _chunks(items: list, size: int):
    return [items[i:i + size] for i in range(0, len(items), size)]


if __name__ == "__main__":
    sys.exit(run_command(main, "benchmarks/image_budget.py",
                         "the benchmark stopped; every file it wrote is whole; run it again"))
