"""The schedule, the forward process and one reverse step, pinned to diffusers' DDPMScheduler."""
import pytest
import torch
from diffusers import DDPMScheduler

from utils import check_T, cosine_beta_schedule, extract, make_schedule, p_sample, predict_x0, q_sample

TS = (5, 10, 25, 50, 200)


def peer(T, kind="cosine", variance="posterior", clip=None):
    return DDPMScheduler(
        num_train_timesteps=T,
        beta_schedule={"cosine": "squaredcos_cap_v2", "linear": "linear"}[kind],
        variance_type={"posterior": "fixed_small", "beta": "fixed_large"}[variance],
        prediction_type="epsilon", clip_sample=clip is not None, clip_sample_range=clip or 1.0)


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_arrays_match_diffusers(T, kind):
    ours, theirs = make_schedule(T, kind), peer(T, kind)
    # diffusers' timestep i is our t = i + 1 (our entry 0 is the clean-data end)
    torch.testing.assert_close(ours.beta[1:], theirs.betas.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.alpha_bar[1:], theirs.alphas_cumprod.double(), atol=1e-6, rtol=0)
    their_var = torch.stack([theirs._get_variance(i) for i in range(T)]).double()
    torch.testing.assert_close(ours.beta_tilde[1:], their_var, atol=1e-6, rtol=0)


class FixedEps(torch.nn.Module):
    """A 'noise predictor' that returns a given eps: isolates the step arithmetic."""

    num_classes = 2

    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def forward(self, x, t, y=None):
        return self.eps


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("variance,clip", [("posterior", None), ("posterior", 1.5), ("beta", None)])
def test_step_matches_diffusers(T, variance, clip):
    ours, theirs = make_schedule(T, variance=variance, clip_x0=clip), peer(T, variance=variance, clip=clip)
    g = torch.Generator().manual_seed(T)
    x_t, eps = torch.randn(64, 2, generator=g) * 2, torch.randn(64, 2, generator=g)
    for t in sorted({1, 2, T // 2 + 1, T}):
        mine = p_sample(FixedEps(eps), ours, x_t, t, generator=torch.Generator().manual_seed(7))
        ref = theirs.step(eps, t - 1, x_t, generator=torch.Generator().manual_seed(7))
        torch.testing.assert_close(mine.x, ref.prev_sample, atol=1e-5, rtol=1e-4)  # float32 in diffusers: x0_hat at t=T is ~1e3
        torch.testing.assert_close(mine.x0_hat, ref.pred_original_sample, atol=1e-5, rtol=1e-4)  # float32 in diffusers: x0_hat at t=T is ~1e3


def test_last_step_adds_no_noise_and_others_do():
    s = make_schedule(10)
    x, eps = torch.randn(8, 2), torch.zeros(8, 2)
    a = p_sample(FixedEps(eps), s, x, 1, generator=torch.Generator().manual_seed(0)).x
    b = p_sample(FixedEps(eps), s, x, 1, generator=torch.Generator().manual_seed(1)).x
    assert torch.equal(a, b)  # t = 1 -> x_0 is the posterior mean, no noise
    a = p_sample(FixedEps(eps), s, x, 2, generator=torch.Generator().manual_seed(0)).x
    b = p_sample(FixedEps(eps), s, x, 2, generator=torch.Generator().manual_seed(1)).x
    assert not torch.equal(a, b)  # t = 2 still draws noise


def test_schedule_invariants():
    for T in TS:
        s = make_schedule(T)
        assert s.beta.shape == (T + 1,) and s.beta[0] == 0 and s.alpha_bar[0] == 1
        assert (s.beta[1:] > 0).all() and (s.beta <= 0.999).all()
        assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all()
        torch.testing.assert_close(s.alpha_bar_prev[1:], s.alpha_bar[:-1])
        torch.testing.assert_close(s.alpha_bar, torch.cumprod(1 - s.beta, 0))
        assert s.beta_tilde[1] == 0
        assert (s.beta_tilde[1:] <= s.beta[1:] + 1e-12).all()
    assert cosine_beta_schedule(50)[-1] == pytest.approx(0.999)
    assert make_schedule(50).alpha_bar[-1] < 1e-5


def test_q_sample_moments():
    s = make_schedule(50)
    x0 = torch.tensor([[0.75, -0.45]]).expand(200_000, 2)
    for t in (1, 10, 25, 50):
        xt = q_sample(s, x0, torch.full((len(x0),), t), torch.randn(x0.shape, generator=torch.Generator().manual_seed(t)))
        ab = float(s.alpha_bar[t])
        torch.testing.assert_close(xt.mean(0), ab**0.5 * x0[0], atol=1e-2, rtol=0)
        torch.testing.assert_close(xt.var(0), torch.full((2,), 1 - ab), atol=5e-3, rtol=0.02)


def test_predict_x0_inverts_q_sample():
    s = make_schedule(25)
    x0, eps = torch.randn(16, 2), torch.randn(16, 2)
    t = torch.randint(1, 26, (16,))
    torch.testing.assert_close(predict_x0(s, q_sample(s, x0, t, eps), t, eps).float(), x0, atol=1e-3, rtol=1e-3)


def test_extract_checks_shapes():
    s = make_schedule(10)
    x = torch.zeros(4, 1, 28, 28)
    assert extract(s.beta, torch.tensor([1, 2, 3, 4]), x).shape == (4, 1, 1, 1)
    assert extract(s.beta, 3, x).shape == (4, 1, 1, 1)
    with pytest.raises(ValueError):
        extract(s.beta, torch.tensor([1, 2]), x)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "50", None, True, float("inf")])
def test_bad_T_is_rejected(bad):
    with pytest.raises(ValueError, match="positive integer"):
        check_T(bad)


def test_unknown_schedule_and_variance_are_rejected():
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule(10, kind="sigmoid")
    with pytest.raises(ValueError, match="unknown variance"):
        make_schedule(10, variance="learned")
