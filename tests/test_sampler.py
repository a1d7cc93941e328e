"""The samplers, run with the exact noise predictor, whose answer is known."""
import pytest
import torch

from gmm import GMM, peak_stats
from utils import SamplerSettings, ddim_step, ddim_timesteps, guided_eps, make_schedule, p_sample, sample

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def exact50():
    s = make_schedule(50)
    return GMM().noise_predictor(s), s


def test_exact_predictor_reproduces_the_mixture(exact50):
    pred, s = exact50
    st = peak_stats(sample(pred, s, 5000, generator=gen()))
    assert st.majority_weight == pytest.approx(0.65, abs=0.02)
    assert st.within_5sigma > 0.995


@pytest.mark.parametrize("y", [0, 1])
def test_conditional_samples_land_in_their_peak(exact50, y):
    pred, s = exact50
    st = peak_stats(sample(pred, s, 2000, y=y, generator=gen()))
    assert st.counts[y] == 2000 and st.within_5sigma == 1.0


def test_sampler_converges_to_the_data_as_T_grows():
    """With the exact eps, the only error left is discretisation: the peak width must approach
    the truth (std ratio 1) as T grows. A sampler bug (off-by-one t, noise on the last step)
    breaks this."""
    ratios = []
    for T in (10, 50, 200):
        s = make_schedule(T)
        ratios.append(min(peak_stats(sample(GMM().noise_predictor(s), s, 2000, generator=gen())).std_ratio))
    assert ratios[0] < ratios[1] < ratios[2]
    assert ratios[2] > 0.9


def test_trajectory_is_indexed_by_t(exact50):
    pred, s = exact50
    x0, traj = sample(pred, s, 100, generator=gen(), trajectory=True)
    assert traj.t.tolist() == list(range(50, -1, -1))
    assert traj.x.shape == (51, 100, 2) and traj.x0_hat.shape == (51, 100, 2)
    assert torch.equal(traj.at(0), x0) and torch.equal(traj.at(50), traj.x[0])
    # x_T is the starting noise: same generator, same first draw
    torch.testing.assert_close(traj.at(50), torch.randn(100, 2, generator=gen()))
    with pytest.raises(ValueError, match="not visited"):
        traj.at(51)


@pytest.mark.parametrize("steps,eta", [(None, 0.0), (10, 1.0)])
def test_same_seed_same_samples(exact50, steps, eta):
    """The generator alone fixes the samples: the global RNG's state does not matter, and it is
    left untouched; another seed gives other samples."""
    pred, s = exact50
    kw = dict(y=1, settings=SamplerSettings(w=1.0, steps=steps, eta=eta))
    torch.manual_seed(123)
    a = sample(pred, s, 300, generator=gen(3), **kw)
    after = torch.randn(3)
    torch.manual_seed(456)
    b = sample(pred, s, 300, generator=gen(3), **kw)
    assert torch.equal(a, b)
    torch.manual_seed(123)
    assert torch.equal(torch.randn(3), after)  # sampling did not draw from the global RNG
    c = sample(pred, s, 300, generator=gen(4), **kw)
    assert not torch.equal(a, c) and (a - c).abs().mean() > 0.01


def test_one_generator_per_sample_is_batch_independent(exact50):
    pred, s = exact50
    big = sample(pred, s, 6, generator=[gen(i) for i in range(6)])
    small = sample(pred, s, 2, generator=[gen(i) for i in (4, 5)])
    torch.testing.assert_close(big[4:], small)


def test_guidance_formula():
    class Toy(torch.nn.Module):
        num_classes = 2

        def forward(self, x, t, y=None):
            y = torch.full((len(x),), 2) if y is None else y
            return x * 0 + y[:, None].float()  # eps = the label (2 for null)

    x = torch.zeros(4, 2)
    y = torch.tensor([0, 1, 0, 1])
    out = guided_eps(Toy(), x, 5, y, w=3.0)
    torch.testing.assert_close(out, ((1 + 3) * y[:, None] - 3 * 2).float().expand(4, 2))
    torch.testing.assert_close(guided_eps(Toy(), x, 5, None, w=3.0), torch.full((4, 2), 2.0))


def test_guidance_pushes_past_the_peak(exact50):
    """w > 0 sharpens p(y | x)^w: samples move away from the other peak."""
    pred, s = exact50
    plain = sample(pred, s, 2000, settings=SamplerSettings(w=0.0), y=1, generator=gen())
    pushed = sample(pred, s, 2000, settings=SamplerSettings(w=4.0), y=1, generator=gen())
    other = torch.tensor([-0.35, 0.65])
    assert (pushed - other).norm(dim=1).mean() > (plain - other).norm(dim=1).mean() + 0.005


def test_ddim_few_steps_lands_on_the_peaks(exact50):
    pred, s = exact50
    st = peak_stats(sample(pred, s, 3000, settings=SamplerSettings(steps=10), generator=gen()))
    assert st.within_5sigma > 0.98 and st.majority_weight == pytest.approx(0.65, abs=0.03)
    assert ddim_timesteps(50, 10)[0] == 50 and ddim_timesteps(50, 10)[-1] == 1


def test_sample_rejects_bad_input(exact50):
    pred, s = exact50
    with pytest.raises(ValueError, match="labels"):
        sample(pred, s, 4, y=5)
    with pytest.raises(ValueError, match="labels must be integers"):
        sample(pred, s, 4, y=0.5)
    with pytest.raises(ValueError, match="steps"):
        sample(pred, s, 4, settings=SamplerSettings(steps=0))

    class Net(torch.nn.Module):
        T, num_classes = 25, 2

    with pytest.raises(ValueError, match="trained with T=25"):
        sample(Net(), s, 4)


# ------------------------------------------------- stochastic DDIM (eta > 0)
@pytest.mark.parametrize("clip", [None, 1.5])
def test_ddim_eta1_single_step_is_the_ancestral_step(exact50, clip):
    """Song et al.: DDIM with eta = 1 and t_prev = t - 1 is the DDPM step with sigma^2 = beta_tilde.
    Called directly (p_sample_loop would route steps=T, eta=1 to p_sample itself)."""
    pred, s = exact50
    x_t = torch.randn(500, 2, generator=gen(1), dtype=torch.float64) * 1.2
    for t in range(1, s.T + 1):
        a = p_sample(pred, s, x_t, t, generator=gen(t), clip_x0=clip)
        b = ddim_step(pred, s, x_t, t, t - 1, eta=1.0, generator=gen(t), clip_x0=clip)
        assert a.t_prev == b.t_prev == t - 1
        torch.testing.assert_close(b.x, a.x, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(b.x0_hat, a.x0_hat, atol=1e-9, rtol=1e-9)


def test_ddim_eta1_chain_by_hand_equals_the_ancestral_chain(exact50):
    pred, s = exact50
    x_T = torch.randn(300, 2, generator=gen(2))
    g = gen(3)
    x = x_T
    for t in range(s.T, 0, -1):
        x = ddim_step(pred, s, x, t, t - 1, eta=1.0, generator=g).x
    torch.testing.assert_close(x, sample(pred, s, 300, x_T=x_T, generator=gen(3)), atol=1e-5, rtol=1e-5)


def test_stochastic_ddim_over_strided_steps_lands_on_the_mixture(exact50):
    """eta = 1 over 25 of the 50 steps. Measured (3000 samples, seed 0): majority 0.663, all within
    5 sd, std ratio 0.71/0.72 against 0.87/0.85 for eta = 0: the added noise is real, and a
    stochastic sampler with few steps under-disperses more than the deterministic one."""
    pred, s = exact50
    stoch = sample(pred, s, 3000, settings=SamplerSettings(steps=25, eta=1.0), generator=gen())
    det = sample(pred, s, 3000, settings=SamplerSettings(steps=25, eta=0.0), generator=gen())
    st, sd = peak_stats(stoch), peak_stats(det)
    assert st.within_5sigma > 0.995 and st.majority_weight == pytest.approx(0.65, abs=0.03)
    assert min(st.std_ratio) > 0.6
    assert max(st.std_ratio) < min(sd.std_ratio) - 0.05
    # same x_T (the first draw of the generator), different endpoints
    assert (stoch - det).norm(dim=1).mean() > 0.05


def ddim_peer(s, k, clip):
    from diffusers import DDIMScheduler
    peer = DDIMScheduler(num_train_timesteps=s.T, trained_betas=s.beta[1:].numpy(), clip_sample=clip is not None,
                         clip_sample_range=clip or 1.0, set_alpha_to_one=True, prediction_type="epsilon")
    peer.set_timesteps(s.T // k)  # its prev_timestep is timestep - T // num_inference_steps = timestep - k
    return peer


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [None, 1.5])
def test_ddim_step_matches_diffusers(eta, clip):
    """ddim_step against DDIMScheduler.step with the same betas, the same eps and the same noise.
    diffusers' timestep i is our t = i + 1, and its alphas_cumprod[i - k] is our alpha_bar[t - k];
    its 'final' alpha_cumprod (set_alpha_to_one) is our alpha_bar[0] = 1. Our clipping re-derives
    eps from the clipped x0_hat, i.e. diffusers' use_clipped_model_output=True."""
    s, k = make_schedule(50), 5
    peer = ddim_peer(s, k, clip)
    pred = GMM().noise_predictor(s)
    x_t = torch.randn(256, 2, generator=gen(0)) * 1.5
    for t in (50, 46, 26, 11, 6, 5):  # t = 5 steps to t_prev = 0 (diffusers: 4 -> -1, the final alpha)
        eps = pred(x_t, torch.full((256,), t), None)
        ours = ddim_step(pred, s, x_t, t, t - k, eta=eta, generator=gen(t), clip_x0=clip)
        z = torch.randn(x_t.shape, generator=gen(t))  # ddim_step's one draw, via utils.randn_like
        ref = peer.step(eps, t - 1, x_t, eta=eta, use_clipped_model_output=True,
                        variance_noise=z if eta > 0 else None)
        torch.testing.assert_close(ours.x0_hat, ref.pred_original_sample, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(ours.x, ref.prev_sample, atol=2e-5, rtol=1e-4)
        if eta > 0 and t > k:  # the noise matters: a different draw moves x_prev
            other = ddim_step(pred, s, x_t, t, t - k, eta=eta, generator=gen(t + 100), clip_x0=clip)
            assert (other.x - ours.x).abs().max() > 1e-3


# ------------------------------------------------------- guidance, exactly
def tilted_log_density(gmm, x, alpha_bar, y, w):
    """log q_t(x | y)^(1 + w) q_t(x)^(-w), unnormalised."""
    return (1 + w) * gmm.log_prob(x, alpha_bar, y=y) - w * gmm.log_prob(x, alpha_bar)


@pytest.mark.parametrize("w", [0.0, 1.0, 4.0])
def test_guided_exact_eps_is_the_score_of_the_tilted_density(w):
    """With the exact predictor, guided eps at every t is -sqrt(1 - alpha_bar_t) grad log of
    q_t(x|y)^(1+w) q_t(x)^(-w), the tilted density at that noise level (autograd, float64)."""
    gmm, s = GMM(), make_schedule(50)
    pred = gmm.noise_predictor(s)
    x = torch.randn(200, 2, generator=gen(0), dtype=torch.float64) * 0.8
    y = torch.randint(0, 2, (200,), generator=gen(1))
    for t in (1, 10, 25, 40, 50):
        ab = float(s.alpha_bar[t])
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(tilted_log_density(gmm, xg, ab, y, w).sum(), xg)
        torch.testing.assert_close(guided_eps(pred, x, t, y, w), -(1 - ab) ** 0.5 * grad, atol=1e-9, rtol=1e-7)


def tilted_mean(gmm, y, w, lim=2.5, m=601):
    """Mean of the normalised p(x|y)^(1+w) p(x)^(-w) at t = 0, on an m x m grid."""
    g = torch.linspace(-lim, lim, m, dtype=torch.float64)
    pts = torch.cartesian_prod(g, g)
    p = torch.softmax(tilted_log_density(gmm, pts, 1.0, y, w), 0)
    return (p[:, None] * pts).sum(0)


def test_guided_samples_follow_the_tilted_density():
    """Guided samples against the tilt p(x|y)^(1+w) p(x)^(-w) of the clean mixture.

    The handout's peaks are 16 sd apart, so there p(y|x) = 1 on a peak and the tilt at t = 0 is
    p(x|y) itself: a statistic at t = 0 could not see w. Here the peaks overlap (0.4 apart, sd
    0.15), so the tilt moves the y = 0 peak's mean away from the other peak by 0.040, 0.057
    and 0.076 for w = 1, 2, 4. Guidance is not sampling from that tilt: it tilts q_t at every
    noise level, where the peaks overlap more, and overshoots. Measured with the exact predictor
    (T = 100, 4000 samples, seed 0, no clipping): shifts 0.086, 0.125, 0.166, i.e. 2.18-2.19x the
    tilt's, in the same direction, with one factor for every w (2.1-2.3x at T = 50 and 200 too);
    w = 0 lands on p(x|y) (shift 0.001). Dropping the (1 + w) factor, flipping the sign of w or
    ignoring w breaks these bounds."""
    gmm = GMM(means=((-0.2, 0.0), (0.2, 0.0)), std=0.15)
    s = make_schedule(100, clip_x0=None)
    pred = gmm.noise_predictor(s)
    mu0 = gmm.means[0]
    plain = sample(pred, s, 4000, settings=SamplerSettings(w=0.0), y=0, generator=gen()).double()
    assert (plain.mean(0) - mu0).norm() < 0.01
    ratios = []
    for w in (1.0, 2.0, 4.0):
        want = tilted_mean(gmm, 0, w) - mu0
        assert want[0] < -0.03 and abs(float(want[1])) < 1e-6  # away from the other peak, along the axis
        got = sample(pred, s, 4000, settings=SamplerSettings(w=w), y=0, generator=gen()).double().mean(0) - mu0
        assert abs(float(got[1])) < 0.01
        ratios.append(float(got[0] / want[0]))
    assert all(1.8 < r < 2.6 for r in ratios), ratios
    assert max(ratios) - min(ratios) < 0.15, ratios  # one overshoot factor for every w


# ------------------------------------------------- one reverse step, exactly
@pytest.mark.parametrize("t", [1, 2, 10, 25, 40, 49, 50])
def test_one_step_mean_is_the_exact_posterior_mean(exact50, t):
    """E[x_{t-1} | x_t] under the mixture is (x_t + beta_t grad log q_t(x_t)) / sqrt(alpha_t)
    (Tweedie on x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z), with the score
    -eps*(x_t) / sqrt(1 - alpha_bar_t). With the exact eps and no clipping, the mean of p_sample's
    draws from a fixed x_t must be that, and their variance beta_tilde_t."""
    pred, s = exact50
    n = 40_000
    for point in ((0.2, 0.1), (-0.5, 0.9), (1.0, -0.8)):
        x_t = torch.tensor(point, dtype=torch.float64).expand(n, 2)
        draws = p_sample(pred, s, x_t, t, generator=gen(t), clip_x0=None).x
        eps = pred(x_t[:1], torch.tensor([t]))
        score = -eps / (1 - s.alpha_bar[t]).sqrt()
        want = ((x_t[:1] + s.beta[t] * score) / s.alpha[t].sqrt())[0]
        var = float(s.beta_tilde[t])
        se = (var / n) ** 0.5
        assert (draws.mean(0) - want).abs().max() < 5 * se + 1e-9, (point, draws.mean(0), want)
        if t == 1:
            assert torch.equal(draws, draws[:1].expand(n, 2))  # no noise on the last step
        else:
            torch.testing.assert_close(draws.var(0), torch.full((2,), var, dtype=torch.float64), rtol=0.05, atol=0)


# ------------------------------------------------- the README's "exact" columns
# benchmarks/two_pixel.py: 5000 samples, seed 0, the full ancestral chain with the exact predictor
REPORT_EXACT = {  # T: (majority weight, within 5 sd, std ratio peak 0, peak 1)
    5: (0.685, 0.9476, 0.99, 0.75),
    10: (0.677, 0.9960, 0.62, 0.56),
    25: (0.659, 1.0000, 0.71, 0.72),
    50: (0.663, 1.0000, 0.81, 0.81),
}


def test_exact_predictor_rows_of_the_report():
    """Same seed, same numbers (to the report's rounding), with tolerances of about 2 binomial sd
    for the shares, so an RNG reordering still passes and a sampler bug does not. Width grows with
    T from T = 10 on; T = 5 is the exception the report shows (its five steps leave peak 0 wide and
    5 % of samples off the peaks)."""
    ratios = {}
    for T, (major, within, r0, r1) in REPORT_EXACT.items():
        s = make_schedule(T)
        st = peak_stats(sample(GMM().noise_predictor(s), s, 5000, generator=gen(0)))
        assert st.majority_weight == pytest.approx(major, abs=0.015), T
        assert st.within_5sigma == pytest.approx(within, abs=0.006 if within < 1 else 0.0005), T
        assert st.std_ratio == pytest.approx((r0, r1), abs=0.03), T
        ratios[T] = min(st.std_ratio)
    assert ratios[10] < ratios[25] < ratios[50] < 0.9


def test_matched_prior_has_q_x_T_moments_and_beats_pure_noise_when_alpha_bar_T_is_large():
    """With T = 20 linear betas (1e-4 .. 0.02), alpha_bar_T = 0.82: q(x_T) is far from N(0, I), so the exact
    predictor's chain started from pure noise misses the mixture, and started from utils.matched_prior it
    lands on it. The oracle is gmm.py: the exact eps, and fresh draws from the mixture."""
    from gmm import energy_distance
    from utils import matched_prior, q_sample

    s = make_schedule(20, "linear", "posterior")
    assert float(s.alpha_bar[20]) > 0.8
    gmm = GMM()
    x0, _ = gmm.sample(20_000, generator=gen(1))
    mean, var = x0.mean(0), x0.var(0)
    z = torch.randn(20_000, 2, generator=gen(2))
    assert torch.allclose(matched_prior(s, z, torch.zeros(2), torch.ones(2)), z, atol=1e-6)  # N(0, I) data: z
    x_T = matched_prior(s, z, mean, var)
    q_T = q_sample(s, x0, torch.full((20_000,), 20), torch.randn(20_000, 2, generator=gen(3)))
    assert torch.allclose(x_T.mean(0), q_T.mean(0), atol=0.03) and torch.allclose(x_T.var(0), q_T.var(0), rtol=0.05)

    pred = gmm.noise_predictor(s)
    ref, _ = gmm.sample(2000, generator=gen(4))
    noise = torch.randn(2000, 2, generator=gen(5))
    plain = sample(pred, s, 2000, generator=gen(6), x_T=noise)
    matched = sample(pred, s, 2000, generator=gen(6), x_T=matched_prior(s, noise, mean, var))
    d_plain, d_matched = energy_distance(plain, ref), energy_distance(matched, ref)
    assert d_matched < 0.2 * d_plain, (d_matched, d_plain)
