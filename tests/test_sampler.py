"""The samplers, run with the exact noise predictor, whose answer is known."""
import pytest
import torch

from gmm import GMM, peak_stats
from utils import ddim_timesteps, guided_eps, make_schedule, sample


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


def test_same_seed_same_samples(exact50):
    pred, s = exact50
    a = sample(pred, s, 300, y=1, w=1.0, generator=gen(3))
    b = sample(pred, s, 300, y=1, w=1.0, generator=gen(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(pred, s, 300, y=1, w=1.0, generator=gen(4)))


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
    plain = sample(pred, s, 2000, y=1, w=0.0, generator=gen())
    pushed = sample(pred, s, 2000, y=1, w=4.0, generator=gen())
    other = torch.tensor([-0.35, 0.65])
    assert (pushed - other).norm(dim=1).mean() > (plain - other).norm(dim=1).mean() + 0.005


def test_ddim_full_eta1_equals_ancestral(exact50):
    pred, s = exact50
    a = sample(pred, s, 200, generator=gen(), steps=None)
    b = sample(pred, s, 200, generator=gen(), steps=50, eta=1.0)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_ddim_few_steps_lands_on_the_peaks(exact50):
    pred, s = exact50
    st = peak_stats(sample(pred, s, 3000, generator=gen(), steps=10))
    assert st.within_5sigma > 0.98 and st.majority_weight == pytest.approx(0.65, abs=0.03)
    assert ddim_timesteps(50, 10)[0] == 50 and ddim_timesteps(50, 10)[-1] == 1


def test_sample_rejects_bad_input(exact50):
    pred, s = exact50
    with pytest.raises(ValueError, match="labels"):
        sample(pred, s, 4, y=5)
    with pytest.raises(ValueError, match="labels must be integers"):
        sample(pred, s, 4, y=0.5)
    with pytest.raises(ValueError, match="steps"):
        sample(pred, s, 4, steps=0)

    class Net(torch.nn.Module):
        T, num_classes = 25, 2

    with pytest.raises(ValueError, match="trained with T=25"):
        sample(Net(), s, 4)
