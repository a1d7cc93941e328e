"""The ground truth: densities, the exact noise predictor, and the sample-quality numbers."""
import math

import pytest
import torch

from gmm import GMM, energy_distance, peak_stats
from utils import make_schedule, q_sample


def grid(lim=4.0, n=401):
    u = torch.linspace(-lim, lim, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="xy")
    return torch.stack([xx.ravel(), yy.ravel()], 1), (u[1] - u[0]) ** 2


@pytest.mark.parametrize("alpha_bar", [1.0, 0.5, 0.01])
def test_density_integrates_to_one(alpha_bar):
    pts, cell = grid()
    g = GMM()
    assert float(g.prob(pts, alpha_bar).sum() * cell) == pytest.approx(1.0, abs=1e-3)
    for y in (0, 1):
        assert float(g.prob(pts, alpha_bar, y=y).sum() * cell) == pytest.approx(1.0, abs=1e-3)


def test_noised_marginal_matches_forward_samples():
    """q(x_t) in closed form equals the histogram of q_sample applied to mixture samples."""
    g, s = GMM(), make_schedule(50)
    x0, _ = g.sample(200_000, torch.Generator().manual_seed(0))
    t = 10
    xt = q_sample(s, x0, torch.full((len(x0),), t), torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)))
    ab = float(s.alpha_bar[t])
    # mass in a box around the majority peak, closed form vs empirical
    box = (xt[:, 0] > 0.3) & (xt[:, 0] < 1.1) & (xt[:, 1] < 0) & (xt[:, 1] > -0.8)
    pts, cell = grid(2.0, 801)
    inbox = (pts[:, 0] > 0.3) & (pts[:, 0] < 1.1) & (pts[:, 1] < 0) & (pts[:, 1] > -0.8)
    assert float(box.double().mean()) == pytest.approx(float(g.prob(pts[inbox], ab).sum() * cell), abs=5e-3)


def test_sample_shapes_and_weights():
    x, y = GMM().sample(20_000, torch.Generator().manual_seed(0))
    assert x.shape == (20_000, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(y.double().mean()) == pytest.approx(0.65, abs=0.01)
    torch.testing.assert_close(x[y == 1].mean(0), torch.tensor([0.75, -0.45]), atol=5e-3, rtol=0)
    assert float(x[y == 0].std(0).mean()) == pytest.approx(0.1, abs=3e-3)


@pytest.mark.parametrize("alpha_bar", [0.999, 0.7, 0.1, 0.002])
def test_optimal_eps_is_scaled_score(alpha_bar):
    """eps*(x_t) = -sqrt(1 - alpha_bar) grad log q(x_t) (Tweedie), checked with autograd."""
    g = GMM()
    x = (torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.2).requires_grad_()
    for y in (None, 0, 1):
        (score,) = torch.autograd.grad(g.log_prob(x, alpha_bar, y=y).sum(), x)
        expected = -math.sqrt(1 - alpha_bar) * score
        torch.testing.assert_close(g.optimal_eps(x.detach(), alpha_bar, y=y), expected, atol=1e-8, rtol=1e-6)


def test_optimal_eps_is_the_conditional_mean():
    """Monte Carlo: regress eps on x_t near one point; the average eps there is eps*(x_t)."""
    g, ab = GMM(), 0.3
    x0, _ = g.sample(400_000, torch.Generator().manual_seed(0))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    xt = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps
    point = torch.tensor([0.2, 0.0])
    near = (xt - point).norm(dim=1) < 0.1
    assert near.sum() > 2000
    torch.testing.assert_close(eps[near].mean(0), g.optimal_eps(point[None], ab)[0], atol=0.05, rtol=0)


def test_null_label_means_unconditional():
    g = GMM()
    x = torch.randn(10, 2)
    torch.testing.assert_close(g.optimal_eps(x, 0.5, y=torch.full((10,), 2)), g.optimal_eps(x, 0.5))


def test_noise_predictor_signature():
    s = make_schedule(50)
    pred = GMM().noise_predictor(s)
    x, t = torch.randn(7, 2), torch.randint(1, 51, (7,))
    assert pred(x, t).shape == (7, 2) and pred(x, t, torch.zeros(7, dtype=torch.long)).dtype == torch.float32
    torch.testing.assert_close(pred(x, t), GMM().optimal_eps(x, s.alpha_bar[t]))


def test_dataset_is_fixed_and_labelled():
    a, b = GMM().dataset(100, seed=3), GMM().dataset(100, seed=3)
    assert len(a) == 100 and torch.equal(a.x, b.x)
    x, y = a[5]
    assert x.shape == (2,) and y.dtype == torch.int64


def test_peak_stats_on_true_samples():
    x, _ = GMM().sample(20_000, torch.Generator().manual_seed(0))
    s = peak_stats(x)
    assert s.majority_weight == pytest.approx(0.65, abs=0.01)
    assert s.within_5sigma > 0.999
    assert s.std_ratio == pytest.approx((1.0, 1.0), abs=0.03)
    # a blurred cloud fails all three
    blurred = peak_stats(x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)))
    assert blurred.within_5sigma < 0.9 and min(blurred.std_ratio) > 1.5


def test_energy_distance():
    g = GMM()
    a, _ = g.sample(3000, torch.Generator().manual_seed(0))
    b, _ = g.sample(3000, torch.Generator().manual_seed(1))
    same = energy_distance(a, b)
    assert 0 <= same < 1e-3
    assert energy_distance(a, b + 0.1) > 10 * same
    assert energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)


def test_bad_mixture_is_rejected():
    with pytest.raises(ValueError):
        GMM(weights=(0.5, 0.6))
    with pytest.raises(ValueError):
        GMM(std=0)
