"""Training images per second and peak memory of every image_diffusion preset, on this machine.

    python benchmarks/image_throughput.py                          # every preset, its own batch, on the GPU if any
    python benchmarks/image_throughput.py --preset cifar10-32 --steps 20 --device cpu --batch-size 8

Each preset trains through image_diffusion.trainer.train itself (the DataLoader, bf16 autocast, channels_last
and pinned-memory workers on CUDA; --compile adds torch.compile) on random images held in memory, so
the numbers measure the model and the step, not the disk. The first --warmup steps (allocation,
cudnn autotuning, compilation) run as a separate short run first; the timed run starts afresh. Prints, per preset: parameters, global batch, seconds per
step, images per second, and peak memory: CUDA's max_memory_allocated on a GPU, the growth of the
process's peak resident memory on a CPU. Under torchrun each process prints its own share.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from image_diffusion.presets import PRESETS, get_preset  # noqa: E402
from image_diffusion.trainer import train  # noqa: E402
from image_diffusion.unet import UNet, count_parameters  # noqa: E402
from runio.cli import Parser, positive_int, resolve_device, run_command  # noqa: E402


class RandomImages(Dataset):
    """n fixed random images (channels, R, R) in [-1, 1] with labels, made once: what a dataset hands the trainer."""

    def __init__(self, n: int, channels: int, resolution: int, num_classes: int = 10):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, channels, resolution, resolution, generator=g) * 2 - 1
        self.y = torch.randint(0, num_classes, (n,), generator=g)
        self.num_classes, self.source = num_classes, "random images in memory"
        self.channels, self.resolution = channels, resolution

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def measure(name: str, args) -> dict:
    overrides = dict(data="random", device=args.device, steps=args.steps, save_every=10**9, compile=args.compile)
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    cfg = get_preset(name, **overrides)
    data = RandomImages(max(cfg.batch_size * 4, 64), cfg.channels, cfg.resolution)
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    train(replace(cfg, steps=args.warmup), data, progress=False)  # warm-up: allocation, autotuning, compilation
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = train(cfg, data, progress=False)  # a fresh run of --steps steps, timed in full
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    memory = (torch.cuda.max_memory_allocated() / 2**30 if cuda else
              (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 2**20)
    steps = result.step
    return {"preset": name, "params": count_parameters(UNet(cfg.unet())), "batch": cfg.batch_size,
            "s_per_step": seconds / steps, "images_per_s": cfg.batch_size * steps / seconds, "memory_gib": memory,
            "device": str(device), "resolution": cfg.resolution}


def main(argv=None) -> int:
    p = Parser(prog="python benchmarks/image_throughput.py", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", nargs="+", choices=list(PRESETS), default=list(PRESETS), help="default: all")
    p.add_argument("--steps", type=positive_int, default=50, help="timed steps per preset (default %(default)s)")
    p.add_argument("--warmup", type=positive_int, default=5, help="untimed steps first (default %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default: each preset's own")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu or cuda")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch (default %(default)s)")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        p.error(str(e))
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"{what}; {args.steps} timed steps after {args.warmup} untimed; bf16 autocast and channels_last on CUDA"
          f"{'; torch.compile' if args.compile else ''}", flush=True)
    memory = "peak GiB (CUDA)" if device.type == "cuda" else "peak RSS growth GiB"
    print(f"{'preset':<11} {'px':>4} {'params':>11} {'batch':>5} {'s/step':>8} {'images/s':>9} {memory:>20}")
    for name in args.preset:
        try:
            r = measure(name, args)
        except (RuntimeError, MemoryError) as e:  # out of memory at this preset's batch: say so, go on
            print(f"{name:<11} failed: {str(e).splitlines()[0][:100]}")
            continue
        print(f"{r['preset']:<11} {r['resolution']:>4} {r['params']:>11,} {r['batch']:>5} {r['s_per_step']:8.3f} "
              f"{r['images_per_s']:9.1f} {r['memory_gib']:20.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "benchmarks/image_throughput.py",
                         "the benchmark stopped; every file it wrote is whole; run it again"))
