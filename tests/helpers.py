"""Helpers of the fault tests (test_nothing_lost.py, test_faults.py): before/after md5s, running a command in
this process or as a real child, and a tiny MNIST in torchvision's layout."""
import hashlib
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def md5s(folder) -> dict:
    """{relative path: md5} of every file under `folder` (hidden ones too): the before/after comparison."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.md5(f.read()).hexdigest()
    return out


def cli(main, argv, capsys):
    """Run a command's main(argv) in this process: (exit code, stderr lines)."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def assert_refused(main, argv, capsys, folder, *needles):
    """The command exits 2 with one line of error containing every needle, and no file under `folder` changed."""
    before = md5s(folder)
    code, err = cli(main, argv, capsys)
    assert code == 2, (argv, err)
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and errors[0] == err[-1], err
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert md5s(folder) == before
    return errors[0]


def write_idx(folder, prefix, imgs, labels):
    """torchvision's raw MNIST layout: big-endian idx files (magic 2051 images, 2049 labels)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), "wb") as f:
        f.write(np.array([2051, len(imgs), 28, 28], dtype=">i4").tobytes() + imgs.astype(np.uint8).tobytes())
    with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
        f.write(np.array([2049, len(labels)], dtype=">i4").tobytes() + labels.astype(np.uint8).tobytes())


def good_mnist(root):
    rng = np.random.default_rng(0)
    raw = os.path.join(root, "MNIST", "raw")
    write_idx(raw, "train", rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10)
    write_idx(raw, "t10k", rng.integers(0, 256, (10, 28, 28)), np.arange(10) % 10)
    return raw




def child(argv, pause_at=None, cwd=REPO, **env):
    """A real child process `python ARGV...` (stderr piped), optionally told to stop at a named pause point
    of runio's writers (runio.files.pause_point). Returns the Popen; wait_paused(p) waits for the pause."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    if pause_at:
        e["RUNIO_PAUSE_AT"] = pause_at
    return subprocess.Popen([sys.executable, *argv], cwd=cwd, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_paused(p, point: str) -> int:
    """Read the child's stderr until it says it paused at `point` (fails if it ends first); returns the pid of
    the process that paused (the child itself, or one it started)."""
    seen = []
    for line in p.stderr:
        seen.append(line)
        if line.startswith(f"paused at {point} (pid "):
            return int(line.rsplit("pid ", 1)[1].rstrip(")\n"))
    p.wait()
    raise AssertionError(f"the child ended (exit {p.returncode}) without pausing at {point}: {''.join(seen)[-2000:]}")
