"""The UNet, the loss, the trainer, checkpoints and the train.py command line."""
import json
import os

import pytest
import torch

import train as train_cli
from ddpm import ARCHS, UNet
from gmm import GMM
from runio.errors import CheckpointError
from two_pixel.trainer import TrainConfig, load_checkpoint, save_checkpoint, train
from utils import drop_labels, make_schedule, p_losses, sample

TINY = dict(steps=60, batch_size=64, n_train=500)


def test_unet_shapes_and_null_label():
    m = UNet(T=50)
    x, t = torch.randn(5, 2), torch.randint(1, 51, (5,))
    assert m(x, t).shape == (5, 2)
    assert m(x, t, torch.tensor([0, 1, 0, 1, 1])).shape == (5, 2)
    torch.testing.assert_close(m(x, t, None), m(x, t, torch.full((5,), 2)))
    # a scalar t broadcasts
    torch.testing.assert_close(m(x, torch.tensor(7)), m(x, torch.full((5,), 7)))
    # the label changes the output
    assert not torch.allclose(m(x, t, torch.zeros(5, dtype=torch.long)), m(x, t, torch.ones(5, dtype=torch.long)))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_matmul_forward_equals_the_conv_layers(arch):
    m = UNet(T=30, **ARCHS[arch]).double()
    for p in m.parameters():  # non-trivial biases and weights everywhere
        torch.nn.init.normal_(p, std=0.3)
    x, t, y = torch.randn(64, 2, dtype=torch.float64), torch.randint(1, 31, (64,)), torch.randint(0, 3, (64,))
    torch.testing.assert_close(m(x, t, y), m.forward_conv(x, t, y), atol=1e-10, rtol=1e-10)


def test_conditioning_cache_is_exact():
    """Computing the embedding once per distinct (t, y) gives what a per-sample loop gives."""
    m = UNet(T=20).double()  # float64: GroupNorm over pairs amplifies float32 rounding
    x, t, y = torch.randn(40, 2, dtype=torch.float64), torch.randint(1, 21, (40,)), torch.randint(0, 3, (40,))
    batched = m(x, t, y)
    single = torch.cat([m(x[i:i + 1], t[i:i + 1], y[i:i + 1]) for i in range(40)])
    torch.testing.assert_close(batched, single, atol=1e-9, rtol=1e-9)


def test_handout_bottleneck_keeps_only_signs():
    """The documented weakness: GroupNorm(32) over 64 channels of length 1 normalises pairs,
    so every normalised value is about +-1."""
    seen = {}
    for name, arch in ARCHS.items():
        m = UNet(T=50, **arch)
        m.gnorm2.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, out.detach()))
        m(torch.randn(512, 2), torch.randint(1, 51, (512,)))
    assert seen["handout"].abs().median() == pytest.approx(1.0, abs=1e-3)
    assert abs(seen["nonorm"].abs().median() - 1.0) > 0.1


def test_p_losses_is_per_sample_and_selectable():
    m, s = UNet(T=10), make_schedule(10)
    x0, y = GMM().sample(32, torch.Generator().manual_seed(0))
    for loss in ("l2", "l1", "huber"):
        out = p_losses(m, s, x0, y, loss=loss, generator=torch.Generator().manual_seed(1))
        assert out.shape == (32,) and (out >= 0).all()
    with pytest.raises(ValueError, match="unknown loss"):
        p_losses(m, s, x0, y, loss="l3")


def test_label_dropout_rate():
    y = torch.zeros(20_000, dtype=torch.long)
    dropped = drop_labels(y, 2, 0.1, torch.Generator().manual_seed(0))
    assert float((dropped == 2).double().mean()) == pytest.approx(0.1, abs=0.01)
    assert ((dropped == 0) | (dropped == 2)).all()
    assert torch.equal(drop_labels(y, 2, 0.0), y)


def test_training_reduces_the_loss():
    r = train(TrainConfig(T=10, steps=300, batch_size=128, n_train=2000, device="cpu"), progress=False)
    first, last = sum(r.losses[:30]) / 30, sum(r.losses[-30:]) / 30
    assert last < 0.8 * first
    assert not r.model.training


def test_same_seed_same_checkpoint_and_samples(tmp_path):
    paths = []
    for i in range(2):
        cfg = TrainConfig(T=10, seed=3, device="cpu", **TINY)
        r = train(cfg, progress=False)
        paths.append(tmp_path / f"m{i}.pt")
        save_checkpoint(paths[-1], r.model, cfg)
    (m1, s1, *_), (m2, s2, *_) = load_checkpoint(paths[0]), load_checkpoint(paths[1])
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.equal(sample(m1, s1, 100, generator=g()), sample(m2, s2, 100, generator=g()))


def test_checkpoint_round_trip_carries_the_schedule(tmp_path):
    cfg = TrainConfig(T=7, schedule="linear", variance="beta", clip_x0=2.0, arch="nonorm", device="cpu", **TINY)
    r = train(cfg, progress=False)
    save_checkpoint(tmp_path / "m.pt", r.model, cfg)
    model, schedule, *_ = load_checkpoint(tmp_path / "m.pt")
    assert (schedule.T, schedule.kind, schedule.variance, schedule.clip_x0) == (7, "linear", "beta", 2.0)
    x, t = torch.randn(9, 2), torch.randint(1, 8, (9,))
    torch.testing.assert_close(model(x, t), r.model(x, t))
    assert isinstance(model.gnorm2, torch.nn.Identity)


def test_bad_checkpoints_are_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    cfg = TrainConfig(T=5, device="cpu", **TINY)
    r = train(cfg, progress=False)
    good = tmp_path / "good.pt"
    save_checkpoint(good, r.model, cfg)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a checkpoint of this package"):
        load_checkpoint(foreign)
    mnist = tmp_path / "mnist.pt"
    torch.save({"kind": "ddpm-mnist", "config": {}}, mnist)
    with pytest.raises(CheckpointError, match="MNIST"):
        load_checkpoint(mnist)
    mismatched = tmp_path / "mismatched.pt"
    ckpt = torch.load(good, weights_only=True)
    ckpt["config"]["arch"] = "nonorm"
    ckpt["model"]["conv2.weight"] = torch.zeros(3, 3, 3)
    torch.save(ckpt, mismatched)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(mismatched)


def test_cli_trains_and_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main(["--T", "5", "--steps", "40", "--batch-size", "64", "--n-train", "300",
                           "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert {"model.pt", "loss.png", "loss.csv", "metrics.json"} <= set(os.listdir(out))
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["T"] == 5 and "exact" in metrics["quality"]
    assert len((out / "loss.csv").read_text().splitlines()) == 41
    model, schedule, *_ = load_checkpoint(out / "model.pt")
    assert schedule.T == 5 and model.T == 5
    assert "python visualize.py" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--T", "0"], "positive integer"),
    (["--T", "-3"], "positive integer"),
    (["--T", "2.5"], "positive integer"),
    (["--T", "fifty"], "positive integer"),
    (["--schedule", "sigmoid"], "invalid choice"),
    (["--loss", "l3"], "invalid choice"),
    (["--p-uncond", "1.5"], "[0, 1)"),
    (["--lr", "-1"], "positive number"),
])
def test_cli_rejects_bad_input_in_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        train_cli.main(argv + ["--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_rejects_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert train_cli.main(["--T", "5", "--steps", "5", "--out", str(blocker / "sub"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and len(err.strip().splitlines()) == 1
