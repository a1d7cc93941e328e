"""Every GPU check in one command of at most about 5 minutes, for a GPU machine that holds only the checkout and
no network. Each result is added to one JSON file as soon as it exists, so a run that is cut off still
reports what it measured.

    python benchmarks/gpu_check.py --data gpu_data/cifar10 --out gpu_out        # on the GPU machine
    python benchmarks/gpu_check.py --smoke --data DIR --out /tmp/gpu_smoke       # here: tiny sizes, CPU (CI)

What it runs, in this order (each part's seconds in the JSON):
  1. tests: `pytest -m "not slow" -k "cuda or device or amp or ddp"` (the CUDA-relevant ones), pass / fail counts;
  2. throughput: images/s and peak memory of every preset through the real trainer (bf16 autocast and
     channels_last on CUDA), and of cifar10-32 once more with torch.compile (benchmarks/image_throughput.py);
  3. a cifar10-32 run from --data for --minutes of wall time (a CIFAR-10 subset carried with the checkout:
     prepare it with --prepare-data from the full JPEG folder), its checkpoint and sample grid in --out;
  4. the FID command on that run (python -m image_diffusion.fid; with no network there are no Inception
     weights, so the distance is the labelled stand-in).
Everything is in OUT/gpu_check.json; OUT/cifar10-32/ holds the run (model.pt, samples.png), small enough to
ship as the package's first colour reference checkpoint with a model card once a GPU has made it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from runio.cli import Parser, command_error, positive_float, positive_int, run_command  # noqa: E402
from runio.files import check_writable, replacing  # noqa: E402

PROG = "benchmarks/gpu_check.py"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Report:
    """The one JSON file, rewritten (atomically) after every result."""

    def __init__(self, path: str):
        self.path, self.data = path, {"device": device_name(), "torch": torch.__version__, "parts": {}}
        self.write()

    def add(self, part: str, value) -> None:
        self.data["parts"][part] = value
        self.write()
        print(f"{part}: {json.dumps(value)[:300]}", flush=True)

    def write(self) -> None:
        with replacing(self.path) as tmp, open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"


def run(cmd: list, timeout: float) -> tuple[int, str, float]:
    """A command of this checkout (python -m ... or a script) with a time limit: (exit code, output tail, seconds)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout)
        code, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        code, out = 124, f"timed out after {timeout:.0f} s: {(e.stdout or b'')[-500:]!r}"
    return code, out[-3000:], time.perf_counter() - t0


def tests(report: Report, smoke: bool) -> None:
    selection = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-k",
                 "cuda or device or amp or ddp"] + (["tests/test_structure.py"] if smoke else [])
    code, out, seconds = run(selection, 120)
    last = [line for line in out.splitlines() if " passed" in line or " failed" in line or "no tests ran" in line]
    report.add("tests", {"exit": code, "summary": last[-1] if last else out[-300:], "seconds": round(seconds, 1)})


def throughput(report: Report, smoke: bool) -> None:
    base = ["benchmarks/image_throughput.py"] + (["--preset", "cifar10-32", "--steps", "2", "--warmup", "1",
                                                   "--batch-size", "4", "--device", "cpu"] if smoke else
                                                  ["--steps", "20", "--warmup", "5"])
    for name, extra in (("throughput", []), ("throughput_compiled_cifar10", ["--compile", "--preset", "cifar10-32"])):
        if smoke and extra:
            continue
        code, out, seconds = run(base + extra, 150)
        report.add(name, {"exit": code, "table": out.strip().splitlines()[-6:], "seconds": round(seconds, 1)})


def train_and_score(report: Report, args) -> None:
    run_dir = os.path.join(args.out, "cifar10-32")
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = ["-m", "image_diffusion.train", "--preset", "cifar10-32", "--data", args.data, "--out", run_dir, "--quiet",
           "--steps", "1000000", "--sample-n", "64"]
    cmd += (["--base", "8", "--mults", "1,2", "--attn-resolutions", "none", "--batch-size", "4", "--T", "20",
             "--sample-steps", "2", "--sample-n", "4", "--device", "cpu"] if args.smoke else [])
    code, out, seconds = run(cmd + ["--max-minutes", str(args.minutes)], args.minutes * 60 + 120)
    report.add("train_cifar10_32", {"exit": code, "tail": out.strip().splitlines()[-3:], "seconds": round(seconds, 1),
                                    "files": sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []})
    if code == 0:
        n = 16 if args.smoke else args.fid_n
        smoke = ["--classifier-steps", "20", "--sampler", "dpm++", "--steps", "2", "--device", "cpu"] if args.smoke else []
        code, out, seconds = run(["-m", "image_diffusion.fid", "--checkpoint", os.path.join(run_dir, "model.pt"), "--n",
                                  str(n), "--data", args.data, "--out", os.path.join(args.out, "fid"), "--quiet",
                                  *smoke], 240)
        report.add("fid", {"exit": code, "tail": out.strip().splitlines()[-3:], "seconds": round(seconds, 1), "n": n})


def prepare_data(src: str, dst: str, n: int) -> None:
    """A CIFAR-10 subset to carry with the checkout: the first n JPEGs of each class folder of `src`."""
    classes = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    for c in classes:
        os.makedirs(os.path.join(dst, c), exist_ok=True)
        for f in sorted(os.listdir(os.path.join(src, c)))[:n]:
            shutil.copy2(os.path.join(src, c, f), os.path.join(dst, c, f))
    print(f"copied {n} images of each of {len(classes)} classes from {src} to {dst}")


def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a folder of CIFAR-10 images (class subfolders)")
    p.add_argument("--out", default="gpu_out", help="folder for gpu_check.json and the run (default %(default)s)")
    p.add_argument("--minutes", type=positive_float, default=3.0, help="the cifar10-32 run's wall time (default 3)")
    p.add_argument("--fid-n", type=positive_int, default=2000, help="images the FID command samples (default 2000)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks that every part runs")
    p.add_argument("--prepare-data", metavar="SRC", help="first copy a subset of SRC (CIFAR-10 JPEGs in class "
                   "folders) into --data, --per-class images each, and stop")
    p.add_argument("--per-class", type=positive_int, default=500, help="with --prepare-data (default %(default)s)")
    args = p.parse_args(argv)
    try:
        if args.prepare_data:
            prepare_data(args.prepare_data, args.data, args.per_class)
            return 0
        check_writable(args.out)
        os.makedirs(args.out, exist_ok=True)
        report = Report(os.path.join(args.out, "gpu_check.json"))
        tests(report, args.smoke)
        throughput(report, args.smoke)
        train_and_score(report, args)
    except Exception as e:
        return command_error(PROG, e, lambda: "the presets' batches; lower them")
    print(f"wrote {os.path.join(args.out, 'gpu_check.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, PROG, "every result so far is in OUT/gpu_check.json"))
