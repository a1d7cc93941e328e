"""flow.py and gmm.py's exact velocity field: the linear path, its target, the samplers, guidance on
velocities, each checked against an independent answer (autograd of the path's log density)."""
import math

import pytest
import torch

from flow import FlowSolver, flow_losses, flow_settings, path, velocity_target
from gmm import GMM, energy_distance
from utils import make_schedule, sample

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def score(log_density, x):
    """grad_x log p(x) by autograd: (N, 2)."""
    x = x.detach().double().requires_grad_(True)
    (g,) = torch.autograd.grad(log_density(x).sum(), x)
    return g


def velocity_from_score(x, tau, s):
    """v = E[eps - x_0 | x] from the score on x = (1 - tau) x_0 + tau eps: Tweedie gives
    E[(1 - tau) x_0 | x] = x + tau^2 s and E[eps | x] = -tau s."""
    return -tau * s - (x.double() + tau**2 * s) / (1 - tau)


@pytest.mark.parametrize("tau", [0.05, 0.3, 0.5, 0.8, 0.97])
def test_exact_velocity_is_the_score_formula(tau):
    gmm = GMM()
    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.8
    want = velocity_from_score(x, tau, score(lambda z: gmm.log_prob_path(z, tau), x))
    torch.testing.assert_close(gmm.optimal_velocity(x, tau), want, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("tau", [0.2, 0.6])
@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guided_velocity_is_the_tilted_densitys(tau, w):
    """(1 + w) v(x, y) - w v(x, null) is the velocity of the tilted density p(x | y)^(1 + w) p(x)^(-w)."""
    gmm = GMM()
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.zeros(300, dtype=torch.long)
    a, var = 1 - tau, (1 - tau) ** 2 * gmm.std**2 + tau**2

    def log_component(z):
        return -((z - a * gmm.means[0]) ** 2).sum(1) / (2 * var)

    tilted = lambda z: (1 + w) * log_component(z) - w * gmm.log_prob_path(z, tau)
    want = velocity_from_score(x, tau, score(tilted, x))
    got = (1 + w) * gmm.optimal_velocity(x, tau, y) - w * gmm.optimal_velocity(x, tau, torch.full_like(y, 2))
    torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


def test_the_target_is_the_paths_derivative():
    g = torch.Generator().manual_seed(2)
    x0, eps, tau = torch.randn(50, 2, generator=g, dtype=torch.float64), torch.randn(50, 2, generator=g,
                                                                                     dtype=torch.float64), torch.rand(50, generator=g, dtype=torch.float64)
    h = 1e-6
    numeric = (path(x0, eps, tau + h) - path(x0, eps, tau - h)) / (2 * h)
    torch.testing.assert_close(numeric, velocity_target(x0, eps), atol=1e-8, rtol=0)
    assert torch.equal(path(x0, eps, torch.zeros(50, dtype=torch.float64)), x0)
    assert torch.equal(path(x0, eps, torch.ones(50, dtype=torch.float64)), eps)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_euler_on_the_exact_field_lands_on_the_mixture(method):
    """50 steps on the exact field: the energy distance to the mixture is within 2x of 5,000 fresh draws'."""
    gmm, T = GMM(), 1000
    ref = gmm.sample(5000, torch.Generator().manual_seed(10_000))[0]
    fresh = energy_distance(gmm.sample(5000, torch.Generator().manual_seed(3))[0], ref)
    x = sample(gmm.velocity_predictor(T), make_schedule(T), 5000, None, flow_settings(50, method),
               torch.Generator().manual_seed(0))
    assert energy_distance(x, ref) < 2 * fresh


def test_flow_loss_targets_the_velocity():
    """A stub that returns the true target makes the loss zero; t reaches the network as tau T in (0, T]."""
    seen = {}

    class Oracle(torch.nn.Module):
        num_classes = 2

        def forward(self, x, t, y=None):
            seen["t"] = t
            return torch.zeros_like(x)

    x0 = torch.randn(64, 2)
    loss = flow_losses(Oracle(), 50, x0, None, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    tau = 1 - torch.rand(64, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 2, generator=g)
    torch.testing.assert_close(loss, ((eps - x0) ** 2).mean(1))
    torch.testing.assert_close(seen["t"], (tau * 50).float())
    assert seen["t"].min() > 0 and seen["t"].max() <= 50


def test_heun_counts_two_evaluations_a_step_but_the_last():
    from utils import SamplerSettings

    assert FlowSolver("euler").evaluations(SamplerSettings(steps=10)) == 10
    assert FlowSolver("heun").evaluations(SamplerSettings(steps=10)) == 19
    with pytest.raises(ValueError, match="unknown flow sampler"):
        FlowSolver("rk4")
    assert math.isclose(FlowSolver().timesteps(make_schedule(50), SamplerSettings(steps=5))[1], 40.0)


def test_train_py_trains_a_flow_model_that_loads_and_samples(tmp_path, capsys):
    """python train.py --objective flow: the handout's UNet on the velocity target; load_checkpoint and sample
    draw from it as from any checkpoint (with a flow sampler; DDPM's is refused in one line)."""
    import train as train_cli
    from two_pixel.trainer import load_checkpoint

    out = tmp_path / "flow"
    assert train_cli.main(["--T", "10", "--steps", "30", "--batch-size", "64", "--n-train", "200", "--objective",
                           "flow", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    model, schedule, cfg, _ = load_checkpoint(out / "model.pt")
    assert cfg.objective == "flow" and model.objective == "flow"
    x = sample(model, schedule, 100, 1, flow_settings(10, "heun", w=1.0), torch.Generator().manual_seed(0))
    assert x.shape == (100, 2) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="predicts a velocity"):
        sample(model, schedule, 10)
