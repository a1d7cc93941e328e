"""Nothing lost under faults (issue 24): a careless --report, a kill -9 in the middle of a save, Ctrl-C and
SIGTERM, a full disk, and messages that say what happened. Each case: one line, its exit code, and the md5s
of every file before and after.

Kills and interrupts hit real child processes at named points of runio's writers (RUNIO_PAUSE_AT makes the
child stop there: runio.files.pause_point), never at random times. A full disk is simulated inside the
package's writer (torch writes from C++, where Python cannot inject), and on a real tmpfs where this machine
lets a test mount one."""
import errno
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

import mnist.sample as msample
import mnist.train as mtrain
import runio.files
import train as train_cli
import visualize
from image_diffusion import train as image_train
from mnist.checkpoint import load_model as load_mnist_model
from report.pages import Page, write_report
from runio.files import MARK, check_output, ours

from helpers import REPO, assert_refused, child, cli, good_mnist, md5s, wait_paused

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

TWO_PIXEL = ["--T", "5", "--steps", "20", "--batch-size", "32", "--n-train", "200", "--quiet", "--device", "cpu"]
SLOW = pytest.mark.slow


def mnist_argv(data_root, out, *extra):
    """mnist.train on a 20-digit MNIST in torchvision's layout: saves at steps 2 and 4."""
    return ["--T", "10", "--steps", "4", "--save-every", "2", "--batch-size", "4", "--base-channels", "8",
            "--warmup", "1", "--data-source", "torchvision", "--data", str(data_root), "--device", "cpu", "--quiet",
            "--threads", "1", "--out", str(out), *extra]


def image_argv(data, out, *extra):
    """image_diffusion.train on 12 small images: saves at steps 2 and 4, then its grids."""
    return ["--preset", "cifar10-32", "--data", str(data), "--steps", "4", "--save-every", "2", "--batch-size", "4",
            "--base", "8", "--mults", "1,2", "--attn-resolutions", "none", "--T", "20", "--dropout", "0",
            "--warmup", "0", "--sample-n", "2", "--sample-steps", "2", "--quiet", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    good_mnist(root)
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        os.makedirs(root / c)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


# ============================================================== 1. the output guard
def test_report_never_replaces_a_file_the_package_did_not_write(tmp_path, capsys):
    """visualize.py --report README.md made README.md a PDF; now it is refused before any work, and a report
    the package wrote is rewritten without a flag."""
    readme = tmp_path / "README.md"
    readme.write_text("# my notes\n")
    assert_refused(visualize.main, ["--problem", "2", "--n", "500", "--report", str(readme), "--runs",
                                    str(tmp_path / "runs"), "--out", str(tmp_path / "figures")],
                   capsys, tmp_path, "--report", "was not written by this package")
    report = tmp_path / "report.pdf"
    write_report([Page("a page", [], [("text", "x")])], str(report))
    assert ours(report) and not ours(readme)
    check_output(report, rerun=True, flag="--report")  # the package's own report: rerun without a flag
    with pytest.raises(runio.files.OutputError, match="is a checkpoint"):
        torch.save({"kind": "ddpm-two-pixel"}, tmp_path / "model.pt")
        check_output(tmp_path / "model.pt", overwrite=True)


@pytest.mark.parametrize("flag,target", [("--report", "mnist/reference/MODEL_CARD.md"), ("--out", "mnist/reference")])
def test_visualize_never_writes_into_the_shipped_references(tmp_path, capsys, flag, target):
    argv = ["--problem", "2", "--n", "500", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "figures")]
    argv += [flag, os.path.join(REPO, target)]
    assert_refused(visualize.main, argv, capsys, os.path.join(REPO, "mnist", "reference"), "mnist/reference/")


def test_a_figure_set_never_replaces_a_file_of_the_users(tmp_path):
    """A figure and its numbers are one set, signed as the package's: a user's problem2.png in --out stops the
    writer before anything is written; a set of the package's own is replaced as a whole."""
    from report.figures import save_figure
    import matplotlib.pyplot as plt

    (tmp_path / "problem2.png").write_bytes(b"my own picture")
    before = md5s(tmp_path)
    with pytest.raises(runio.files.OutputError, match="problem2.png exists and was not written by this package"):
        save_figure(plt.figure(), str(tmp_path), "problem2", [{"a": 1}], x=np.arange(2))
    assert md5s(tmp_path) == before
    save_figure(plt.figure(), str(tmp_path), "problem3", [{"a": 1}], x=np.arange(2))
    assert all(ours(tmp_path / f"problem3.{e}") for e in ("png", "pdf", "csv", "npz"))
    save_figure(plt.figure(), str(tmp_path), "problem3", [{"a": 2}], x=np.arange(3))  # rerun: replaced
    assert sorted(os.listdir(tmp_path)) == ["problem2.png"] + [f"problem3.{e}" for e in ("csv", "npz", "pdf", "png")]


# ============================================================== 2. a run is one set: kill -9 anywhere
MNIST_POINTS = [pytest.param(p, marks=() if p in ("during:model.pt", "after:state.pt", "swapped") else SLOW)
                for p in ("before:model.pt", "during:model.pt", "after:model.pt", "before:state.pt",
                          "during:state.pt", "after:state.pt", "before:loss.csv", "after:loss.png", "swap", "swapped")]


def whole_new_mnist_run(out) -> bool:
    files = sorted(os.listdir(out))
    if files != sorted(mtrain.RUN_FILES):
        return False
    step = load_mnist_model(out / "model.pt").info["step"]
    state = torch.load(out / "state.pt", weights_only=True)
    lines = (out / "loss.csv").read_text().splitlines()
    return step == state["step"] == len(lines) - 1 == len(state["losses"])


@pytest.mark.parametrize("point", MNIST_POINTS)
def test_a_killed_mnist_overwrite_leaves_the_whole_old_run_or_the_whole_new_one(tmp_path, mnist_root, capsys, point):
    """mnist.train --overwrite replaced a run one file at a time (model.pt before state.pt): a kill between left
    the new model.pt beside the old state.pt. Now every save is a set swapped in at once."""
    out = tmp_path / "m"
    assert cli(mtrain.main, mnist_argv(mnist_root, out, "--steps", "2"), capsys)[0] == 0
    old = md5s(out)
    p = child(["-m", "mnist.train", *mnist_argv(mnist_root, out, "--seed", "1", "--overwrite")], pause_at=point)
    try:
        wait_paused(p, point)
    finally:
        p.kill()
        p.wait()
    if point == "swapped":
        assert md5s(out) != old and whole_new_mnist_run(out)
    else:
        assert md5s(out) == old
    # the next run clears what the killed one left beside the folder, and resumes or replaces cleanly
    assert cli(mtrain.main, mnist_argv(mnist_root, out, "--overwrite"), capsys)[0] == 0
    assert whole_new_mnist_run(out) and sorted(os.listdir(tmp_path)) == ["m"]


IMAGE_POINTS = [pytest.param(p, marks=() if p in ("before:state.pt", "swap", "after:samples.png") else SLOW)
                for p in ("before:model.pt", "during:model.pt", "after:model.pt", "before:state.pt",
                          "during:state.pt", "after:loss.png", "swap", "before:samples.png", "after:samples.png")]


@pytest.mark.parametrize("point", IMAGE_POINTS)
def test_a_killed_image_overwrite_leaves_the_whole_old_run_or_a_whole_save(tmp_path, image_folder, capsys, point):
    """image_diffusion.train --overwrite: model.pt went before state.pt, and the old grids stayed beside a new
    model. Now the first save of the new run swaps in a whole set (the old grids leave with the old set), and
    the final grids join the last save as one set."""
    out = tmp_path / "run"
    assert cli(image_train.main, image_argv(image_folder, out, "--steps", "2"), capsys)[0] == 0
    old = md5s(out)
    assert sorted(old) == sorted(image_train.RUN_FILES)
    p = child(["-m", "image_diffusion.train", *image_argv(image_folder, out, "--seed", "1", "--overwrite")],
              pause_at=point)
    try:
        wait_paused(p, point)
    finally:
        p.kill()
        p.wait()
    files = sorted(os.listdir(out))
    if point.endswith("samples.png"):  # the last save is in place; its grids come as one set, or not yet
        assert files == sorted(["model.pt", "state.pt", "loss.csv", "loss.png"]) and md5s(out) != old
        assert torch.load(out / "state.pt", weights_only=True)["step"] == 4
    else:  # the first save (step 2) of the new run had not been swapped in
        assert md5s(out) == old


# ============================================================== 3. Ctrl-C and SIGTERM
def leftovers(folder) -> list:
    """Lock files and temporary files or folders under `folder` (what an interrupted command must not leave)."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [n for n in dirs + files if n.endswith(".lock") or ".tmp-" in n]
    return found


INTERRUPTS = {  # command, argv (after the prepared outputs exist), pause point
    "train.py": (["train.py", *TWO_PIXEL, "--overwrite", "--seed", "1"], "swap"),
    "mnist.train": (["-m", "mnist.train"], "during:model.pt"),
    "mnist.sample": (["-m", "mnist.sample", "--digits", "1", "--per-digit", "1", "--steps", "2", "--quiet",
                      "--overwrite"], "replace:grid.pt"),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", list(INTERRUPTS))
def test_an_interrupt_is_one_line_and_leaves_nothing_behind(tmp_path, mnist_root, capsys, command, sig):
    """Ctrl-C printed 23-108 lines of KeyboardInterrupt; SIGTERM ended with no word and left lock and temporary
    files. Now: one line (what was interrupted, what was kept, how to go on), exit 130 / 143, no lock or
    temporary file, and the outputs as they were."""
    two, run, grid = tmp_path / "two", tmp_path / "m", tmp_path / "grid.png"
    if command == "train.py":
        assert cli(train_cli.main, TWO_PIXEL + ["--out", str(two), "--no-eval"], capsys)[0] == 0
    else:
        assert cli(mtrain.main, mnist_argv(mnist_root, run, "--steps", "2"), capsys)[0] == 0
    if command == "mnist.sample":
        assert msample.main(["--checkpoint", str(run / "model.pt"), "--digits", "0", "--per-digit", "1", "--steps",
                             "2", "--quiet", "--out", str(grid)]) == 0
    argv, point = INTERRUPTS[command]
    argv = argv + {"train.py": ["--out", str(two)], "mnist.train": mnist_argv(mnist_root, run, "--overwrite"),
                   "mnist.sample": ["--checkpoint", str(run / "model.pt"), "--out", str(grid)]}[command]
    before = md5s(tmp_path)
    p = child(argv, pause_at=point)
    wait_paused(p, point)
    p.send_signal(sig)
    err = p.stderr.read().strip().splitlines()
    assert p.wait(timeout=60) == (130 if sig == signal.SIGINT else 143)
    assert len(err) == 1 and "interrupted" in err[0] and ("SIGTERM" if sig == signal.SIGTERM else "Ctrl-C") in err[0]
    assert md5s(tmp_path) == before and leftovers(tmp_path) == []


# ============================================================== 4. a full disk
def fill_the_disk_after(monkeypatch, nbytes: int):
    """Inside the package's writer: torch's writes fail with ENOSPC after `nbytes` (what a full disk raises)."""
    real = runio.files._Recorder.write
    state = {"written": 0}

    def write(self, b):
        state["written"] += len(b)
        if state["written"] > nbytes:
            self.error = OSError(errno.ENOSPC, "No space left on device")
            raise self.error
        return real(self, b)

    monkeypatch.setattr(runio.files._Recorder, "write", write)


@pytest.mark.parametrize("command", ["train.py", "mnist.train", "image_diffusion.train"])
def test_a_full_disk_is_one_line_and_replaces_nothing(tmp_path, mnist_root, image_folder, capsys, monkeypatch,
                                                      command):
    """A full disk during a save: every trainer printed 30-40 lines of torch's "unexpected pos". Now one line
    naming the folder and what was kept; the old run is whole, nothing temporary is left."""
    out = tmp_path / "run"
    main, argv = {"train.py": (train_cli.main, TWO_PIXEL + ["--no-eval", "--out", str(out)]),
                  "mnist.train": (mtrain.main, mnist_argv(mnist_root, out)),
                  "image_diffusion.train": (image_train.main, image_argv(image_folder, out))}[command]
    assert cli(main, argv, capsys)[0] == 0
    fill_the_disk_after(monkeypatch, 5000)
    line = assert_refused(main, argv + ["--overwrite", "--seed", "1"], capsys, tmp_path, "no space left on the disk of",
                          str(tmp_path))
    assert "as it was" in line or "last whole save" in line
    assert leftovers(tmp_path) == []


def test_a_full_disk_while_writing_the_report_keeps_the_old_one(tmp_path, monkeypatch):
    report = tmp_path / "report.pdf"
    write_report([Page("old", [], [("text", "old")])], str(report))
    before = md5s(tmp_path)

    class FullDisk:
        def __init__(self, *a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("report.pages.PdfPages", FullDisk)
    with pytest.raises(runio.files.DiskFull, match=f"no space left on the disk of {tmp_path}; report.pdf is as before"):
        write_report([Page("new", [], [("text", "new")])], str(report))
    assert md5s(tmp_path) == before


@pytest.fixture
def tmpfs(tmp_path):
    """A 1.5 MB tmpfs, where this machine lets a test mount one (root on Linux); skipped elsewhere."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root on Linux)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_real_full_disk(tmpfs, capsys):
    """On a real full disk (tmpfs): train.py --overwrite needs room for the whole new run beside the old one;
    without it, one line, and the old run is as it was."""
    out = tmpfs / "run"
    assert cli(train_cli.main, TWO_PIXEL + ["--no-eval", "--out", str(out)], capsys)[0] == 0
    free = shutil.disk_usage(tmpfs).free
    filler = tmpfs / "filler"
    filler.write_bytes(b"\0" * max(0, free - 200_000))  # room for less than a second run
    code, err = cli(train_cli.main, TWO_PIXEL + ["--no-eval", "--out", str(out), "--overwrite", "--seed", "1"], capsys)
    assert code == 2 and len(err) == 1 and f"no space left on the disk of {tmpfs}" in err[0], err
    assert sorted(os.listdir(tmpfs)) == ["filler", "run"] and leftovers(tmpfs) == []
    assert torch.load(out / "model.pt", weights_only=True)["config"]["seed"] == 0  # the old run


# ============================================================== 5. messages that say what happened
def test_a_run_that_never_saved_says_so(tmp_path, image_folder, capsys):
    """--lr 1e30 on a new --out said "the last save is kept" when nothing was ever saved."""
    line = assert_refused(image_train.main, image_argv(image_folder, tmp_path / "new", "--lr", "1e30"), capsys,
                          tmp_path, "training loss became")
    assert "nothing was saved" in line and "last save" not in line
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name,needle", [("timecond.pt", "CS180 part B.2 run"), ("denoiser.pt", "part B.1 denoiser"),
                                         ("classifier.pt", "metric classifier")])
def test_a_checkpoint_handed_to_the_wrong_command_names_the_right_one(tmp_path, capsys, name, needle):
    """mnist.sample --checkpoint timecond.pt said "(an MNIST model: use python -m mnist.sample)"."""
    line = assert_refused(msample.main, ["--checkpoint", os.path.join(REPO, "mnist", "reference", name), "--out",
                                         str(tmp_path / "g.png")], capsys, tmp_path, needle)
    assert "use python -m mnist.sample" not in line


def test_a_backwards_digit_range_says_so(tmp_path, capsys):
    assert_refused(msample.main, ["--digits", "3-1", "--out", str(tmp_path / "g.png")], capsys, tmp_path,
                   "the range 3-1 holds no digit", "1-3")


def test_the_package_signs_its_figures_and_reports(tmp_path):
    """What `ours` recognises: the mark in a PDF and a PNG (matplotlib metadata); a file made elsewhere is not."""
    import matplotlib.pyplot as plt

    write_report([Page("p", [], [("text", "x")])], str(tmp_path / "r.pdf"))
    assert f"/Creator ({MARK})".encode() in (tmp_path / "r.pdf").read_bytes()
    fig = plt.figure()
    runio.files.savefig(fig, tmp_path / "f.png")
    plt.close(fig)
    with Image.open(tmp_path / "f.png") as im:
        assert im.text["Source"] == MARK
    (tmp_path / "other.pdf").write_bytes(b"%PDF-1.4 made elsewhere")
    Image.new("RGB", (2, 2)).save(tmp_path / "other.png")
    assert ours(tmp_path / "r.pdf") and ours(tmp_path / "f.png")
    assert not ours(tmp_path / "other.pdf") and not ours(tmp_path / "other.png")


def test_a_killed_torchrun_rank_is_one_line_from_the_survivor(tmp_path, image_folder):
    """kill -9 of one torchrun process: the survivor printed gloo's RuntimeError (about 25 lines) beside
    torchrun's own report. Now it prints one line: which rank stopped, where the last whole save is, and how
    to continue (or, when torchrun stops it first, the one line of an interrupted run)."""
    out = tmp_path / "ddp"
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    p = child(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "image_diffusion.train",
               *image_argv(image_folder, out, "--steps", "6")], pause_at="before:state.pt", **env)
    try:
        os.kill(wait_paused(p, "before:state.pt"), signal.SIGKILL)  # rank 0, in the middle of its first save
        err = p.stderr.read()
        assert p.wait(timeout=120) != 0
    finally:
        if p.poll() is None:
            p.kill()
    ours_ = [line for line in err.splitlines() if line.startswith("image_diffusion.train:")]
    frames = [line for line in err.splitlines() if line.strip().startswith("File ") and "image_diffusion" in line]
    assert len(ours_) == 1 and not frames, err[-3000:]
    assert ("rank 0 of this torchrun job stopped" in ours_[0] and "nothing was saved yet" in ours_[0]
            or "interrupted" in ours_[0]), ours_
    assert not out.exists() or os.listdir(out) == []  # the first save never came in


def test_a_batch_that_cannot_fit_is_refused_before_the_first_step(tmp_path, image_folder, mnist_root, capsys,
                                                                   monkeypatch):
    """image_diffusion.train --batch-size 65536 grew to about 20 GiB until the kernel's out-of-memory killer
    ended it (rc 137, no word). Now a step is measured first and a batch that cannot fit is one line naming
    the largest that fits; that batch trains."""
    import runio.memory

    argv = ["--preset", "cifar10-32", "--data", str(image_folder), "--steps", "1", "--sample-n", "1",
            "--sample-steps", "1", "--quiet", "--out", str(tmp_path / "run")]
    assert_refused(image_train.main, argv + ["--batch-size", "65536"], capsys, tmp_path, "--batch-size 65536 needs about",
                   "the largest batch that fits is about")
    assert_refused(mtrain.main, mnist_argv(mnist_root, tmp_path / "m", "--batch-size", "65536"), capsys, tmp_path,
                   "the largest batch that fits is about")
    monkeypatch.setattr(runio.memory, "available", lambda device: (1 << 30, "a test's 1 GiB"))
    line = assert_refused(image_train.main, argv + ["--batch-size", "1000"], capsys, tmp_path, "a test's 1 GiB")
    fits = int(line.rsplit("about ", 1)[1])
    assert 8 <= fits < 1000
    assert cli(image_train.main, argv + ["--batch-size", str(fits)], capsys)[0] == 0


def test_out_inside_the_image_folder_is_refused(tmp_path, image_folder, capsys):
    """A run inside --data would be read as training images the next time (its grids, a class of its own)."""
    assert_refused(image_train.main, image_argv(image_folder, image_folder / "run"), capsys, image_folder,
                   "is inside --data")


def test_visualize_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    """visualize.py exited 1 with 30-40 lines on a full disk; now one line naming the folder, the old report kept."""
    report = tmp_path / "cs180.pdf"
    write_report([Page("old", [], [("text", "old")])], str(report))
    old = report.read_bytes()

    class FullDisk:
        def __init__(self, *a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("report.pages.PdfPages", FullDisk)
    code, err = cli(visualize.main, ["--problem", "cs180-b1", "--quiet", "--out", str(tmp_path / "figures"),
                                     "--report", str(report)], capsys)
    assert code == 2 and err[-1] == f"visualize.py: error: no space left on the disk of {tmp_path}; cs180.pdf is as " \
                                    "before; free some space and run it again", err
    assert [line for line in err if "error" in line] == [err[-1]] and report.read_bytes() == old
