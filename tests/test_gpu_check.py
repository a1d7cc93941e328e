"""benchmarks/gpu_check.py, the one command of every GPU check, as a smoke test on the CPU: every part runs and
its result is in the JSON, written as it goes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_runs_every_part_on_the_cpu(tmp_path):
    data = tmp_path / "cifar"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        os.makedirs(data / c)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / c / f"{i}.png")
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--smoke", "--data", str(data), "--out", str(out),
                        "--minutes", "0.05"], cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    parts = report["parts"]
    assert set(parts) == {"tests", "throughput", "train_cifar10_32", "fid"}, parts
    assert all(part["exit"] == 0 for part in parts.values()), parts
    assert "model.pt" in parts["train_cifar10_32"]["files"] and "samples.png" in parts["train_cifar10_32"]["files"]
    assert report["device"] == "CPU" and any("stand-in" in line or "distance" in line for line in parts["fid"]["tail"])
