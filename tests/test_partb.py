"""Fast tests of CS180 part B on MNIST: the B.1 denoiser's run files, the B.2 time-conditioned UNet
(FCBlocks, optional class conditioning) and its DDPM, and the report pages, on tiny models."""
import os

import pytest
import torch

from mnist import denoiser as dn
from mnist import timecond as tc
from utils import CheckpointError, make_schedule, sample


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny convolutions run best on one thread


def images(n=16, seed=0):
    """Learnable [-1, 1] images: blank left half, random binary right half."""
    x = (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) > 0.5).float() * 2 - 1
    x[..., :14] = -1
    return x


def test_timecond_unet_depends_on_t_and_label_and_null_is_no_label():
    torch.manual_seed(0)
    m = tc.TimeConditionalUNet(hidden=4, T=10, num_classes=10).eval()
    x = torch.randn(3, 1, 28, 28)
    t = torch.tensor([1, 5, 10])
    out = m(x, t, torch.tensor([0, 1, 2]))
    assert out.shape == (3, 1, 28, 28)
    assert not torch.allclose(out, m(x, t, torch.tensor([3, 3, 3])))  # the label changes eps
    assert not torch.allclose(out, m(x, torch.tensor([2, 6, 9]), torch.tensor([0, 1, 2])))  # so does t
    assert torch.equal(m(x, t, None), m(x, t, torch.full((3,), 10)))  # y=None is the null label
    u = tc.TimeConditionalUNet(hidden=4, T=10).eval()
    assert not hasattr(u, "fc1_c") and u.num_classes == 0 and u(x, t).shape == (3, 1, 28, 28)
    assert u.config == {"hidden": 4, "T": 10, "num_classes": 0}


def test_unconditional_model_ignores_nothing_but_labels_in_the_sampler():
    m = tc.TimeConditionalUNet(hidden=4, T=6).eval()
    s = make_schedule(6, "linear", clip_x0=1.0)
    a = sample(m, s, 2, generator=[torch.Generator().manual_seed(i) for i in (0, 1)], shape=(1, 28, 28))
    b = sample(m, s, 2, generator=[torch.Generator().manual_seed(i) for i in (0, 1)], shape=(1, 28, 28))
    assert a.shape == (2, 1, 28, 28) and torch.equal(a, b) and a.abs().max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="T=6"):
        sample(m, make_schedule(7, "linear"), 1, shape=(1, 28, 28))


@pytest.mark.parametrize("num_classes", [0, 10])
def test_timecond_training_lowers_the_loss_and_keeps_snapshots(num_classes):
    x, y = images(32), torch.arange(32) % 10
    cfg = tc.TimeCondConfig(hidden=4, T=10, num_classes=num_classes, epochs=6, batch_size=8, lr=5e-3)
    run = tc.train_timecond(x, y, cfg, snapshot_epochs=(1, 6))
    assert len(run.losses) == 24 and sorted(run.snapshots) == [1, 6]
    assert sum(run.losses[-8:]) < 0.9 * sum(run.losses[:8])  # untrained: eps-MSE stays about 1
    assert not torch.equal(run.snapshots[1]["last.1.weight"], run.snapshots[6]["last.1.weight"])
    # the final snapshot is the returned model
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in run.snapshots[6].items())


def test_timecond_config_and_input_checks():
    with pytest.raises(ValueError, match="epochs >= 1"):
        tc.TimeCondConfig(epochs=0).validate()
    with pytest.raises(ValueError, match="28, 28"):
        tc.train_timecond(torch.zeros(4, 28, 28), None, tc.TimeCondConfig(hidden=2, T=4, epochs=1))
    with pytest.raises(ValueError, match="one label per image"):
        tc.train_timecond(images(4), None, tc.TimeCondConfig(hidden=2, T=4, epochs=1, num_classes=10))


def test_timecond_run_round_trip_and_bad_files(tmp_path):
    cfg = tc.TimeCondConfig(hidden=4, T=8, epochs=2, batch_size=8)
    run = tc.train_timecond(images(16), None, cfg, snapshot_epochs=(1, 2))
    path = tmp_path / "tc.pt"
    tc.save_run(path, run, cfg, data_source="test", threads=1)
    back = tc.load_run(path)
    assert back.config == cfg and sorted(back.models) == [1, 2] and back.losses == run.losses
    assert back.schedule.T == 8 and back.schedule.kind == "linear" and back.info["data_source"] == "test"
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 8])
    with torch.no_grad():  # fp16 storage: the same function up to half-precision weights
        assert torch.allclose(back.models[2](x, t), run.model(x, t), atol=0.05)
    with pytest.raises(CheckpointError, match="no part-B.2 checkpoint"):
        tc.load_run(tmp_path / "missing.pt")
    dn_run = dn.train_denoiser(images(8), dn.DenoiserConfig(hidden=2, epochs=1, batch_size=8))
    dn.save_run(tmp_path / "den.pt", dn_run, dn.DenoiserConfig(hidden=2, epochs=1, batch_size=8))
    with pytest.raises(CheckpointError):  # a denoiser run is not a B.2 run, and vice versa
        tc.load_run(tmp_path / "den.pt")
    with pytest.raises(CheckpointError):
        dn.load_run(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        tc.load_run(tmp_path / "junk.pt")


def test_denoiser_run_round_trip(tmp_path):
    cfg = dn.DenoiserConfig(hidden=4, epochs=3, batch_size=8)
    run = dn.train_denoiser((images(16) + 1) / 2, cfg)
    dn.save_run(tmp_path / "d.pt", run, cfg, seconds_note="x")
    back = dn.load_run(tmp_path / "d.pt")
    assert sorted(back.models) == [1, 3] and back.config == cfg and len(back.losses) == 6
    z = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(back.models[3](z), run.model(z), atol=0.05)
        assert not torch.allclose(back.models[1](z), back.models[3](z), atol=1e-3)


def test_part_b_pages_from_tiny_runs(tmp_path):
    """Each page makes its PNGs and a text whose numbers come from the run it was given."""
    from mnist.cs180_partb import b1_pages, b2_pages

    dcfg = dn.DenoiserConfig(hidden=4, epochs=2, batch_size=16)
    dn.save_run(tmp_path / "d.pt", dn.train_denoiser((images(32) + 1) / 2, dcfg), dcfg, data_source="test")
    out = b1_pages(str(tmp_path / "figs"), checkpoint=str(tmp_path / "d.pt"), per_class=2)
    assert [page.text[:8] for page in out] == ["B.1.2 No", "B.1.2.1 ", "B.1.2.2 "]
    assert sum(len(page.images) for page in out) == 4
    for page in out:
        assert all(os.path.getsize(p) > 1000 for p in page.images)
    assert "D=4 hidden channels" in out[1].text and "2 epochs of 2 steps" in out[1].text
    assert "sigma=1.0:" in out[2].text and "20 test digits" in out[2].text

    for classes in (0, 10):
        cfg = tc.TimeCondConfig(hidden=4, T=5, epochs=2, batch_size=16, num_classes=classes)
        tc.save_run(tmp_path / "t.pt", tc.train_timecond(images(32), torch.arange(32) % 10, cfg, (1, 2)), cfg)
        page, = b2_pages(str(tmp_path / "figs"), checkpoint=str(tmp_path / "t.pt"), n=4)
        pngs, text = page.images, page.text
        assert len(pngs) == 2 and all(os.path.getsize(p) > 1000 for p in pngs)
        assert "epoch 1: " in text and "epoch 2: " in text and "T=5" in text
        assert ("requested label" in text) == bool(classes)
