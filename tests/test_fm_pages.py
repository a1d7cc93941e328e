"""CS180 part B, fall 2025 edition (flow matching) on MNIST: the time-conditioned UNet trained on the
velocity, the pure-noise denoiser of 1.2.3, the stored study, and the pages' sentences against their numbers."""
import os

import pytest
import torch

import flow
from cs180 import denoiser as dn
from cs180 import fm_pages
from cs180 import timecond as tc
from utils import generators, sample

from test_partb import images

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_flow_objective_trains_on_the_velocity_of_the_straight_path():
    """The run's loss is flow.flow_losses with the run's generator, and its model samples only with a flow solver."""
    x, y = images(16), torch.arange(16) % 10
    cfg = tc.TimeCondConfig(hidden=4, T=10, num_classes=10, epochs=1, batch_size=16, lr=5e-3, ema=0.0,
                            objective="flow")
    run = tc.train_timecond(x, y, cfg, snapshot_epochs=(1,))
    torch.manual_seed(cfg.seed)  # the same initial weights, batch order and draws as the run's first step
    model = tc.TimeConditionalUNet(4, 10, 10, "flow")
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(16, generator=g)
    want = flow.flow_losses(model, cfg.T, x[idx], y[idx], cfg.p_uncond, generator=g).mean()
    assert run.losses[0] == pytest.approx(want.item(), rel=1e-6)
    assert run.model.objective == "flow"
    with pytest.raises(ValueError, match="velocity"):
        sample(run.model, tc.schedule_for(cfg), 2, None, shape=(1, 28, 28))
    got = tc.draw(run.model, tc.schedule_for(cfg), 2, y=torch.tensor([3, 4]), w=4.0, steps=3)
    want = sample(run.model, tc.schedule_for(cfg), 2, torch.tensor([3, 4]), flow.flow_settings(3, w=4.0),
                  generators(0, 2), shape=(1, 28, 28))
    assert torch.equal(got, want)


def test_the_flow_handout_recipe_is_one_flag_away(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(tc, "train_timecond", lambda x, y, cfg, *a, **k: seen.append(cfg) or (_ for _ in ()).throw(
        ValueError("recorded")))
    data = type("Data", (), {"train_x": images(10), "train_y": torch.arange(10), "source": "test"})()
    monkeypatch.setattr(tc, "load_mnist", lambda **kw: data)
    assert tc.main(["--handout", "--objective", "flow", "--quiet", "--out", str(tmp_path)]) == 2
    (cfg,) = seen
    assert (cfg.objective, cfg.hidden, cfg.batch_size, cfg.lr, cfg.epochs, cfg.ema, cfg.lr_decay) == (
        "flow", 64, 64, 1e-2, 10, 0.0, 0.1)


def test_pure_noise_denoiser_sees_noise_that_does_not_depend_on_the_digit():
    """With pure_noise the input is eps alone: two training sets differing only in their digits give the
    network the same inputs, so with the same seed the first-step losses differ only through the targets."""
    cfg = dn.DenoiserConfig(hidden=4, epochs=1, batch_size=8, pure_noise=True)
    zeros, ones = torch.zeros(8, 1, 28, 28), torch.ones(8, 1, 28, 28)
    a, b = dn.train_denoiser(zeros, cfg), dn.train_denoiser(ones, cfg)
    # same network and inputs: the first loss is mean(D(eps)^2) against mean((D(eps) - 1)^2); their difference
    # is 1 - 2 mean(D(eps)), which needs the inputs to be the same (x + sigma eps would differ by x)
    torch.manual_seed(cfg.seed)
    model = dn.UnconditionalUNet(4)
    g = torch.Generator().manual_seed(cfg.seed)
    torch.randperm(8, generator=g)
    with torch.no_grad():
        out = model(dn.add_noise(zeros, 1.0, g))
    assert a.losses[0] == pytest.approx(float((out ** 2).mean()), rel=1e-5)
    assert b.losses[0] == pytest.approx(float(((out - 1) ** 2).mean()), rel=1e-5)


def pure(to_mean, among, digits=0.3):
    return fm_pages.PureNumbers({}, {5: to_mean}, {5: among}, digits)


def test_pure_noise_answer_follows_its_numbers():
    assert "100 different noises give nearly the same image" in fm_pages.pure_answer(pure(0.01, 0.001))
    assert "the mean of the training digits" in fm_pages.pure_answer(pure(0.01, 0.001))
    assert "still differ" in fm_pages.pure_answer(pure(0.2, 0.2))
    assert "not yet the mean" in fm_pages.pure_answer(pure(0.2, 0.001))


def study(flow_agree, ddpm_agree, flow_sure=0.6, ddpm_sure=0.6, steps=(1, 2, 5, 10, 20, 50), key="legible"):
    sure = lambda top: [top * k / 50 for k in steps]
    run = lambda **series: {"steps": list(steps), "optimiser_steps": 2000, **series}
    return {"n": 300, "runs": {"flow": run(**{key: sure(flow_sure)}), "ddpm": run(**{key: sure(ddpm_sure)}),
                               "flow-class": run(agreement=list(flow_agree), **{key: list(flow_agree)}),
                               "ddpm-class": run(agreement=list(ddpm_agree), **{key: list(ddpm_agree)})}}


def test_comparison_follows_its_numbers():
    fast, slow = [0.1, 0.5, 0.95, 0.98, 0.99, 0.99], [0.1, 0.1, 0.3, 0.6, 0.9, 0.99]
    text = fm_pages.compare_answer(study(fast, slow))
    assert "agreement with the asked digit not distinguishable (297/300 flow matching, 297/300 DDPM" in text
    assert "from 5 steps for flow matching (Euler) and 20 steps for DDPM (DDIM): flow matching in fewer" in text
    assert "DDPM in fewer" in fm_pages.compare_answer(study(slow, fast))
    higher = fm_pages.compare_answer(study(fast, [v * 0.8 for v in fast], flow_sure=0.5, ddpm_sure=0.8))
    assert "agreement with the asked digit higher for flow matching" in higher
    assert "unconditional, share judged legible higher for DDPM" in higher


def test_a_study_stored_before_the_judge_says_which_measure_it_holds():
    """A stored study of the classifier's p >= 0.9 share (before the legibility judge) is named as such, never
    called legible."""
    old = fm_pages.compare_answer(study([0.9] * 6, [0.9] * 6, key="confident"))
    assert "share read with p >= 0.9 (a study stored before the legibility judge; rerun it)" in old
    assert "legible" not in old.replace("legibility", "")
    assert "legible" in fm_pages.compare_answer(study([0.9] * 6, [0.9] * 6))


def test_the_class_runs_step_counts_use_the_judge_not_the_classifier_alone():
    """One Euler step gives a class's blurred mean digit: the classifier reads it as asked, the judge rejects it."""
    s = study([0.99] * 6, [0.95] * 6)
    s["runs"]["flow-class"]["legible"] = [0.0, 0.3, 0.96, 0.96, 0.97, 0.97]
    text = fm_pages.compare_answer(s)
    assert "class-conditioned, the share judged legible stays at or above 90 % of DDPM's 50-step value (86%) from " \
           "5 steps for flow matching" in text


def test_a_dip_below_the_bar_is_named():
    dipping = [0.99, 0.85, 0.99, 0.99, 0.99, 0.99]
    text = fm_pages.compare_answer(study(dipping, [0.95] * 6))
    assert "from 5 steps for flow matching" in text and "falls below it again at 2" in text
    assert "falls below" not in fm_pages.compare_answer(study([0.99] * 6, [0.95] * 6))


def test_the_fall_2025_pages_build_from_the_shipped_runs(tmp_path):
    """python visualize.py --problem cs180-fm's pages: each opens with its answers and shows its figures."""
    pages = fm_pages.pages(str(tmp_path))
    assert [p.title.split(":")[0] for p in pages] == [
        "CS180 (fall 2025) B 1.2.3", "CS180 (fall 2025) B 2.2-2.3", "CS180 (fall 2025) B 2.5-2.6", "CS180 (fall 2025)"]
    for page in pages:
        assert page.answers and page.images
        for fig in page.images:
            assert os.path.getsize(os.fspath(fig)) > 1000 and fig.alt and fig.caption
