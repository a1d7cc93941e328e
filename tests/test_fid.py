"""python -m image_diffusion.fid: a tiny UNet checkpoint (random weights, T = 20, DDIM-2) scored end to end
through main() against a few PNGs, and problem 5's path against a tiny MNIST in torchvision's layout. The
cache is pytorch-fid's .npz and is reused; the PNG folder is what pytorch-fid would read; without the
Inception weights the number is labelled as the stand-in; bad input is one line. No network: the hub cache
is a temporary folder and the weights' address a closed local port."""
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from image_diffusion import fid
from image_diffusion.presets import get_preset
from image_diffusion.trainer import save_model
from image_diffusion.unet import UNet
from helpers import good_mnist, md5s

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(base=8, mults=(1, 2, 2), attn_resolutions=(), T=20, dropout=0.0, sample_steps=2, sample_eta=1.0)
FAST = ["--features", "standin", "--classifier-steps", "3", "--quiet"]


@pytest.fixture(autouse=True)
def no_network(tmp_path, monkeypatch):
    """No Inception weights in the hub cache, and a download that fails at once (a closed local port)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(fid, "FID_WEIGHTS_URL", "http://127.0.0.1:9/pt_inception-2015-12-05.pth")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 random 36x40 RGB PNGs in two class folders."""
    root = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        os.makedirs(root / c)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return str(root)


@pytest.fixture(scope="module")
def checkpoint(folder, tmp_path_factory):
    """run/model.pt: an untrained tiny cifar10-32 UNet whose config names `folder` as its data."""
    cfg = get_preset("cifar10-32", data=folder, **TINY)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("run") / "model.pt"
    save_model(path, UNet(cfg.unet()).eval(), cfg)
    return str(path)


def run(argv, capsys):
    """main(argv) in this process: (exit code, stdout lines, stderr lines)."""
    capsys.readouterr()
    try:
        code = fid.main(argv)
    except SystemExit as e:  # argparse's errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err.strip().splitlines()


def stats_file(out) -> str:
    (name,) = [f for f in os.listdir(out) if f.startswith("stats-")]
    return os.path.join(out, name)


def test_tiny_checkpoint_end_to_end_writes_n_pngs_of_the_models_size(checkpoint, tmp_path, capsys):
    """N PNGs named 000000.png.. of the model's 3x32x32, signed as the package's; the result lines say the
    number, the counts, the seconds and where things are; a second run needs --overwrite and then leaves
    exactly the new N files."""
    out = tmp_path / "fid"
    code, lines, err = run(["--checkpoint", checkpoint, "--n", "5", "--batch-size", "2", "--out", str(out), *FAST],
                           capsys)
    assert code == 0, err
    files = sorted(os.listdir(out / "samples"))
    assert files == [f"{i:06d}.png" for i in range(5)]
    for f in files:
        with Image.open(out / "samples" / f) as im:
            assert im.size == (32, 32) and im.mode == "RGB" and im.text.get("Source") == fid.MARK
    assert re.fullmatch(r"stand-in distance \d+\.\d+ \(not comparable with published FIDs\)", lines[0])
    assert re.match(r"images: 5 generated \(.*2 steps.*, seed 0\) vs 5 real \(folder ", lines[1])  # the run's sampler
    assert re.match(r"time: \d+\.\d s", lines[3]) and str(out / "samples") in lines[4] and stats_file(out) in lines[5]

    before = md5s(out / "samples")
    code, _, err = run(["--checkpoint", checkpoint, "--n", "3", "--out", str(out), *FAST], capsys)
    assert code == 2 and len(err) == 1 and "already holds 5 sampled images" in err[0] and "--overwrite" in err[0]
    assert md5s(out / "samples") == before
    assert run(["--checkpoint", checkpoint, "--n", "3", "--out", str(out), "--overwrite", *FAST], capsys)[0] == 0
    assert sorted(os.listdir(out / "samples")) == [f"{i:06d}.png" for i in range(3)]
    after = md5s(out / "samples")  # image i depends on (seed, i) alone, not on the batch (2 then 250)
    assert all(after[f] == before[f] for f in after) and before["000000.png"] != before["000002.png"]


def test_cache_is_pytorch_fids_npz_and_is_reused(checkpoint, folder, tmp_path, capsys, monkeypatch):
    """The real statistics are an .npz with pytorch-fid's keys mu (D,) and sigma (D, D), named by the feature
    extractor, the dataset, the size and the count; the second run reads them (and the stand-in classifier)
    from the cache instead of reading and featurising real images again, and gives the same number."""
    calls = {"real": 0, "train": 0}

    def counted(name, f):
        def call(*a, **k):
            calls[name] += 1
            return f(*a, **k)
        return call

    monkeypatch.setattr(fid, "real_batches", counted("real", fid.real_batches))
    monkeypatch.setattr(fid, "train_classifier", counted("train", fid.train_classifier))
    out = tmp_path / "fid"
    argv = ["--checkpoint", checkpoint, "--n", "4", "--n-real", "6", "--out", str(out), "--overwrite", *FAST]
    code, first, err = run(argv, capsys)
    assert code == 0, err
    path = stats_file(out)
    assert re.fullmatch(r"stats-standin-[0-9a-f]{8}-real\d*-[0-9a-f]{8}-3x32x32-6\.npz", os.path.basename(path))
    with np.load(path) as z:
        assert {"mu", "sigma"} <= set(z.files)
        assert z["mu"].shape == (128,) and z["sigma"].shape == (128, 128) and z["mu"].dtype == np.float64
    assert calls == {"real": 1, "train": 1} and first[5].endswith("(computed and cached)")
    stamp = os.stat(path).st_mtime_ns
    code, second, err = run(argv, capsys)
    assert code == 0, err
    assert calls == {"real": 1, "train": 1} and second[5].endswith("(read from the cache)")
    assert os.stat(path).st_mtime_ns == stamp and second[0] == first[0]


def test_the_number_is_pytorch_fids_on_the_png_folder(checkpoint, folder, tmp_path, capsys, monkeypatch):
    """What was scored is the PNG folder as pytorch-fid reads it, against the cached .npz as pytorch-fid loads it,
    and pytorch-fid's calculate_frechet_distance on those statistics equals the package's frechet_distance: a
    machine with the Inception weights gets the FID of the same images from python -m pytorch_fid directly."""
    pytest.importorskip("pytorch_fid")
    from pytorch_fid.fid_score import ImagePathDataset, calculate_frechet_distance, compute_statistics_of_path
    from torchvision.transforms import ToTensor

    scored = []
    frechet_distance = fid.frechet_distance
    monkeypatch.setattr(fid, "frechet_distance", lambda p, q: scored.append(frechet_distance(p, q)) or scored[-1])
    out = tmp_path / "fid"
    code, lines, err = run(["--checkpoint", checkpoint, "--n", "6", "--out", str(out), *FAST], capsys)
    assert code == 0, err
    mu, sigma = compute_statistics_of_path(stats_file(out), None, 50, 2048, "cpu")  # an .npz needs no model
    files = sorted(str(p) for p in (out / "samples").glob("*.png"))
    x = torch.stack([ImagePathDataset(files, ToTensor())[i] for i in range(len(files))]) * 2 - 1  # [0, 1] -> [-1, 1]
    real = fid.real_images(folder, "data", 32, 3)
    metric, _ = fid.standin(real, str(out), 3)
    gen = metric.fit(x)
    theirs = calculate_frechet_distance(mu, sigma, gen.mu, gen.sigma)
    assert scored == [pytest.approx(theirs, rel=1e-6)] and float(lines[0].split()[2]) == round(scored[0], 3)


def test_pngs_hold_the_images_rounded_to_8_bits():
    """[-1, 1] -> 0..255 by rounding (clipped outside), the levels the PNGs hold and the features see."""
    x = torch.tensor([-1.0, -0.999, 0.0, 0.999, 1.0, 1.5]).view(1, 1, 2, 3)
    assert fid.to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255, 255]


def test_without_inception_weights_the_number_is_labelled_as_the_stand_in(checkpoint, tmp_path, capsys):
    """--features auto tries the one download; when it fails, one line on stderr says why, the result says
    "stand-in distance ... not comparable with published FIDs" (never "FID"), and its cache is named standin-;
    --features inception refuses in one line instead."""
    out = tmp_path / "fid"
    code, lines, err = run(["--checkpoint", checkpoint, "--n", "3", "--out", str(out), "--classifier-steps", "3",
                            "--quiet"], capsys)
    assert code == 0, err
    assert lines[0].startswith("stand-in distance ") and "not comparable with published FIDs" in lines[0]
    assert not any(line.startswith("FID") for line in lines) and "not comparable with papers" in lines[2]
    assert len(err) == 1 and "could not be downloaded from http://127.0.0.1:9/" in err[0] and "NOT comparable" in err[0]
    assert os.path.basename(stats_file(out)).startswith("stats-standin-")
    code, _, err = run(["--checkpoint", checkpoint, "--n", "3", "--out", str(tmp_path / "b"), "--features",
                        "inception", "--quiet"], capsys)
    assert code == 2 and len(err) == 1 and "--features inception: its Inception weights are not in" in err[0]


def test_problem_5_checkpoint_is_scored_against_mnists_test_split(tmp_path, capsys):
    """A problem 5 checkpoint (mnist.checkpoint) defaults to MNIST's test split, read from --data-root in
    torchvision's layout; its PNGs are 28x28 greyscale."""
    from mnist.checkpoint import save_model as save_mnist
    from mnist.model import MNISTUNet
    from utils import make_schedule

    good_mnist(tmp_path / "data")  # 20 training and 10 test digits
    torch.manual_seed(0)
    ckpt = tmp_path / "p5" / "model.pt"
    os.makedirs(ckpt.parent)
    save_mnist(ckpt, MNISTUNet(T=8, channels=(8, 8, 16, 16)).eval(), make_schedule(8, clip_x0=1.0), {})
    code, lines, err = run(["--checkpoint", str(ckpt), "--n", "4", "--steps", "2", "--data-root",
                            str(tmp_path / "data"), *FAST], capsys)
    assert code == 0, err
    out = tmp_path / "p5-fid"  # the default: beside the run folder, not in it
    assert "2 steps" in lines[1] and ", w 2, seed 0) vs 4 real (MNIST test split in " in lines[1]
    assert re.fullmatch(r"stats-standin-[0-9a-f]{8}-mnist-test-1x28x28-4\.npz", os.path.basename(stats_file(out)))
    with Image.open(out / "samples" / "000003.png") as im:
        assert im.size == (28, 28) and im.mode == "L"


@pytest.mark.parametrize("argv,expect", [
    (["--checkpoint", "{tmp}/nothing.pt"], "no checkpoint at"),
    (["--n", "0"], "argument --n: expected a whole number from 2 to"),
    (["--n", "1"], "argument --n: expected a whole number from 2 to"),
    (["--out", "{tmp}/a_file", "--cache", "{tmp}/cache"], "--out {tmp}/a_file is a file, not a folder"),
    (["--cache", "{tmp}/a_file"], "--cache {tmp}/a_file is a file, not a folder"),
    (["--data", "{tmp}/no_such_folder"], "no_such_folder: no such folder"),
    (["--data", "mnist", "--data-root", "{tmp}"], "MNIST's test split is not in {tmp}/MNIST/raw"),
    (["--n-real", "13"], "--n-real 13 but folder "),
    (["--steps", "21"], "--steps 21 is more than the model's T=20"),
    (["--features", "fast"], "argument --features: invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(checkpoint, tmp_path, capsys, argv, expect):
    (tmp_path / "a_file").write_text("x")
    given = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--checkpoint" not in given:
        given = ["--checkpoint", checkpoint, *given]
    if "--out" not in given:
        given += ["--out", str(tmp_path / "fid")]
    code, lines, err = run([*given, *FAST], capsys)
    assert code == 2 and len(err) == 1 and expect.replace("{tmp}", str(tmp_path)) in err[0], err
    assert not lines and not (tmp_path / "fid").exists()
