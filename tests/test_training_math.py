"""The training maths, checked against what it must compute rather than against itself: the EMA
recurrence and what it buys, the loss target and its t range, and label dropout inside p_losses
and inside train()."""
import pytest
import torch

import two_pixel.trainer
import utils
from ddpm import UNet
from gmm import GMM
from two_pixel.trainer import TrainConfig, build_model, train
from utils import EMA, FitHooks, NonFiniteError, fit, make_schedule, p_losses, q_sample

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------ EMA
def test_ema_update_follows_the_warmup_recurrence():
    """ema <- d_n ema + (1 - d_n) theta with d_n = min(decay, (1 + n) / (10 + n)); buffers are copied."""
    net = torch.nn.BatchNorm1d(3)  # weights and buffers
    ema = EMA(net, decay=0.5)
    expected = torch.ones(3)  # BatchNorm's weight starts at 1
    for n, value in enumerate((3.0, -1.0, 2.0, 5.0), start=1):
        with torch.no_grad():
            net.weight.fill_(value)
            net.running_mean.fill_(10 * value)
        ema.update(net)
        d = min(0.5, (1 + n) / (10 + n))  # 2/11, 3/12, 4/13 (warm-up), then 0.5
        expected = d * expected + (1 - d) * value
        torch.testing.assert_close(ema.model.weight, expected)
        torch.testing.assert_close(ema.model.running_mean, torch.full((3,), 10 * value))
    assert ema.num_updates == 4
    assert not ema.model.weight.requires_grad


def eps_error(model, schedule, n=4000, seed=1, conditional=False) -> float:
    """Mean squared distance to the exact eps*(x_t, t, y) on x_t = q_sample(x_0 ~ mixture, t ~ U{1..T})."""
    g = torch.Generator().manual_seed(seed)
    x0, y = GMM().sample(n, g)
    t = torch.randint(1, schedule.T + 1, (n,), generator=g)
    x_t = q_sample(schedule, x0, t, torch.randn(n, 2, generator=g))
    y = y if conditional else None
    with torch.no_grad():
        return float((model(x_t, t, y) - GMM().noise_predictor(schedule)(x_t, t, y)).pow(2).mean())


@pytest.fixture(scope="module")
def ema_run():
    """A 300-step run (about 1.5 s) whose EMA sees every raw model it is updated with: beside the
    library's EMA this keeps its own float64 copy of the documented recurrence."""
    runs = []

    class Recording(utils.EMA):
        def __init__(self, model, decay=0.999):
            super().__init__(model, decay)
            self.raw = model
            self.init = [p.detach().clone() for p in model.parameters()]
            self.shadow = [p.detach().double().clone() for p in model.parameters()]
            self.count = 0
            runs.append(self)

        def update(self, model):
            super().update(model)
            self.count += 1
            d = min(self.decay, (1 + self.count) / (10 + self.count))
            for s, p in zip(self.shadow, model.parameters()):
                s.mul_(d).add_(p.detach().double(), alpha=1 - d)

    cfg = TrainConfig(T=10, steps=300, batch_size=128, n_train=2000, device="cpu")
    mp = pytest.MonkeyPatch()
    mp.setattr(two_pixel.trainer, "EMA", Recording)
    try:
        result = train(cfg, progress=False)
    finally:
        mp.undo()
    assert len(runs) == 1 and runs[0].count == cfg.steps
    return cfg, result, runs[0]


def test_trained_ema_model_is_close_to_the_exact_eps(ema_run):
    """Measured (T=10, 300 steps): EMA model 0.073 (null label) / 0.006 (with labels) against
    0.64 / 0.70 for the untrained network. A no-op EMA.update returns the untrained network."""
    cfg, result, _ = ema_run
    torch.manual_seed(cfg.seed)
    untrained = build_model(cfg).eval()  # the init that train() builds (same seed), i.e. EMA at step 0
    for conditional, limit in ((False, 0.15), (True, 0.03)):
        trained = eps_error(result.model, result.schedule, conditional=conditional)
        before = eps_error(untrained, result.schedule, conditional=conditional)
        assert before > 0.4
        assert trained < limit and trained < 0.25 * before, (conditional, trained, before)


def test_returned_weights_are_the_ema_of_the_raw_weights(ema_run):
    cfg, result, rec = ema_run
    ema = [p.detach() for p in result.model.parameters()]
    raw = [p.detach() for p in rec.raw.parameters()]
    # the documented recurrence over the 300 raw models the run went through
    for e, s in zip(ema, rec.shadow):
        torch.testing.assert_close(e.double(), s, atol=1e-5, rtol=1e-4)

    def dist(a, b):
        return sum(float((x.double() - y.double()).pow(2).sum()) for x, y in zip(a, b)) ** 0.5

    # an average over the last few hundred steps: not the final raw weights, but much nearer
    # to them than the init is (a no-op update leaves EMA == init; decay 0 makes EMA == raw)
    assert dist(ema, raw) > 1e-3 * dist(rec.init, raw)  # measured: 0.076 vs 5.16
    assert dist(ema, raw) < 0.1 * dist(rec.init, raw)  # measured: 0.015
    assert dist(ema, rec.init) > 0.5 * dist(rec.init, raw)


# --------------------------------------------------------------------- p_losses
class Recorder(torch.nn.Module):
    """A stub eps-model: records what p_losses feeds it and returns a fixed, known tensor."""

    num_classes = 2

    def __init__(self, out=None):
        super().__init__()
        self.out = out
        self.calls = []

    def forward(self, x_t, t, y=None):
        self.calls.append((x_t.detach().clone(), t.clone(), None if y is None else y.clone()))
        return torch.zeros_like(x_t) + 0.3 if self.out is None else self.out


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_p_losses_targets_the_noise(loss):
    """The loss is the distance of eps_theta's output to the noise that made x_t, not to x_0.
    The noise is recovered exactly from what the model saw (x_t, t) and x_0, in float64."""
    T, B = 20, 4096
    s = make_schedule(T)
    x0, y = GMM().sample(B, torch.Generator().manual_seed(0))
    x0 = x0.double()
    out = torch.full((B, 2), 0.3, dtype=torch.float64)
    model = Recorder(out)
    got = p_losses(model, s, x0, y, loss=loss, generator=torch.Generator().manual_seed(5))
    (x_t, t, _), = model.calls
    ab = s.alpha_bar[t][:, None]
    noise = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
    # the noise is standard normal and independent of x_0
    assert abs(float(noise.mean())) < 0.05 and float(noise.std()) == pytest.approx(1.0, abs=0.04)
    assert abs(float(torch.corrcoef(torch.stack([noise[:, 0], x0[:, 0]]))[0, 1])) < 0.06
    ref = {"l2": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss,
           "huber": torch.nn.functional.smooth_l1_loss}[loss]
    torch.testing.assert_close(got, ref(out, noise, reduction="none").mean(1), atol=1e-10, rtol=1e-10)
    # the same generator seed reproduces the same loss
    again = p_losses(Recorder(out), s, x0, y, loss=loss, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, again, atol=0, rtol=0)
    # and the x_0 target would have given a clearly different number
    assert abs(float(got.mean()) - float(ref(out, x0))) > 0.1


def test_p_losses_draws_t_uniformly_from_1_to_T():
    T = 10
    s = make_schedule(T)
    model = Recorder()
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(2000, 2)
    for _ in range(5):
        p_losses(model, s, x0, None, generator=g)
    t = torch.cat([c[1] for c in model.calls])
    assert t.dtype == torch.int64
    assert int(t.min()) == 1 and int(t.max()) == T  # never 0 (clean) nor T + 1 (off the schedule)
    counts = torch.bincount(t, minlength=T + 2)
    assert counts[0] == 0 and counts[T + 1] == 0
    expected = len(t) / T
    assert ((counts[1:T + 1] - expected).abs() < 5 * expected ** 0.5).all(), counts.tolist()  # uniform


def test_p_losses_drops_labels_at_rate_p_uncond():
    B = 20_000
    y = torch.randint(0, 2, (B,), generator=torch.Generator().manual_seed(0))
    x0 = torch.zeros(B, 2)
    s = make_schedule(10)
    for p in (0.1, 0.3):
        model = Recorder()
        p_losses(model, s, x0, y, p_uncond=p, generator=torch.Generator().manual_seed(1))
        seen = model.calls[0][2]
        null = seen == model.num_classes
        assert float(null.double().mean()) == pytest.approx(p, abs=0.015)
        assert torch.equal(seen[~null], y[~null])  # the others are untouched
        # dropping is independent of the label
        for label in (0, 1):
            assert float(null[y == label].double().mean()) == pytest.approx(p, abs=0.025)
    model = Recorder()
    p_losses(model, s, x0, y, p_uncond=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(model.calls[0][2], y)
    model = Recorder()
    p_losses(model, s, x0, None, p_uncond=0.3, generator=torch.Generator().manual_seed(1))
    assert model.calls[0][2] is None


@pytest.mark.parametrize("p_uncond", [0.0, 0.3])
def test_train_shows_the_model_dropped_labels(monkeypatch, p_uncond):
    """Every label the UNet sees during train() is recorded (by wrapping UNet.forward)."""
    seen = []
    forward = UNet.forward

    def recording_forward(self, x, t, y=None):
        if self.training:
            seen.append(None if y is None else y.detach().clone())
        return forward(self, x, t, y)

    monkeypatch.setattr(UNet, "forward", recording_forward)
    cfg = TrainConfig(T=5, steps=20, batch_size=512, n_train=1000, p_uncond=p_uncond, device="cpu")
    train(cfg, progress=False)
    assert len(seen) == cfg.steps and all(y is not None for y in seen)
    labels = torch.cat(seen)
    null_rate = float((labels == 2).double().mean())
    if p_uncond == 0:
        assert null_rate == 0
    else:
        assert null_rate == pytest.approx(p_uncond, abs=0.02)  # 10,240 labels: 5 sd is 0.023
    real = labels[labels != 2]
    assert float((real == 1).double().mean()) == pytest.approx(0.65, abs=0.05)  # the data's labels


# ------------------------------------------------------------------ the loop
def quadratic(start: float = 0.0):
    """A one-weight model whose loss (w - 3)^2 has a known gradient, and a plain SGD on it."""
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(start)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_fit_steps_in_order_and_calls_back_between_steps():
    model, opt = quadratic()
    seen, rates = [], []
    loss_fn = lambda batch, step: ((model.weight - 3) ** 2).sum() * batch
    ema = EMA(model, decay=0.5)
    done = fit(model, opt, iter([1.0, 1.0, 1.0, 1.0]), loss_fn, 4, start=1, losses=[9.0],
               ema=ema, hooks=FitHooks(lr_at=lambda step: rates.append(step) or 0.1,
                                       after_step=lambda step, seconds: seen.append((step, model.weight.item()))))
    w = 0.0
    expected = []
    for step in (2, 3, 4):  # w <- w - 0.1 * 2 (w - 3)
        w = w - 0.2 * (w - 3)
        expected.append((step, w))
    assert [s for s, _ in seen] == [2, 3, 4] and rates == [1, 2, 3]
    assert all(abs(a - b) < 1e-6 for (_, a), (_, b) in zip(seen, expected))
    assert done.step == 4 and len(done.losses) == 4 and done.losses[0] == 9.0
    assert abs(done.losses[1] - 9.0) < 1e-6  # the loss before the first update of this session
    assert ema.num_updates == 3


def test_fit_stops_on_a_budget_and_clips_gradients():
    model, opt = quadratic()
    loss_fn = lambda batch, step: 1000 * ((model.weight - 3) ** 2).sum()
    done = fit(model, opt, iter(range(100)), loss_fn, 100, grad_clip=1.0, hooks=FitHooks(stop=lambda seconds: True))
    assert done.step == 1
    assert abs(model.weight.item() - 0.1) < 1e-6  # the gradient -6000 clipped to norm 1, times lr 0.1


def test_fit_refuses_a_nan_loss_before_it_updates_the_weights():
    model, opt = quadratic(start=1.0)
    losses = iter([1.0, float("nan")])
    loss_fn = lambda batch, step: ((model.weight - 3) ** 2).sum() * next(losses)
    with pytest.raises(NonFiniteError, match=r"became nan at step 2 of 5; .*lower --lr\); kept here"):
        fit(model, opt, iter(range(5)), loss_fn, 5, hooks=FitHooks(stopped_note=lambda: "kept here"))
    assert abs(model.weight.item() - 1.4) < 1e-6  # one update (w - 0.2 (w - 3)), not two
