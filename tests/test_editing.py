"""Fast tests of mnist.editing (CS180 part A on MNIST): each checks a defining property on a tiny
random UNet with T = 10, or on a fake noise predictor whose answer is known exactly."""
import os

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from mnist import editing as ed
from mnist.model import build_model
from utils import guided_eps, make_schedule, q_sample

T = 10


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny convolutions run best on one thread


@pytest.fixture(scope="module")
def schedule():
    return make_schedule(T=T, clip_x0=1.0)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(dict(T=T, channels=(8, 8, 16, 16), embed_dim=16))
    for p in m.parameters():  # zero-initialised output layers would make eps == 0 and the tests trivial
        torch.nn.init.normal_(p, std=0.05)
    return m.eval()


def digits(n=3, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class TrueNoise(torch.nn.Module):
    """A fake eps_theta that returns the noise that was actually added (for any t and y)."""

    num_classes = 10

    def __init__(self, eps):
        super().__init__()
        self.eps = eps
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t, y=None):
        return self.eps.repeat(x.shape[0] // self.eps.shape[0], 1, 1, 1)


class Linear(torch.nn.Module):
    """eps(x, t, y) = a_y * x + b_y * ramp: depends on the label and is not flip-symmetric."""

    num_classes = 10

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.linspace(0.1, 0.5, 11))
        self.b = torch.nn.Parameter(torch.linspace(-1, 1, 11))
        self.register_buffer("ramp", torch.linspace(0, 1, 28 * 28).reshape(1, 1, 28, 28))

    def forward(self, x, t, y=None):
        y = torch.full((x.shape[0],), 10) if y is None else y
        return self.a[y].view(-1, 1, 1, 1) * x + self.b[y].view(-1, 1, 1, 1) * self.ramp


# ------------------------------------------------------------------ denoising
def test_forward_noise_is_q_sample_and_t0_is_clean(schedule):
    x0 = digits()
    n = ed.forward_noise(schedule, x0, 7, torch.Generator().manual_seed(1))
    assert torch.allclose(n.x_t, q_sample(schedule, x0, torch.tensor(7), n.eps))
    assert torch.equal(ed.forward_noise(schedule, x0, 0).x_t, x0)


@pytest.mark.parametrize("t", [1, 5, T])
def test_one_step_with_true_noise_recovers_x0(schedule, t):
    x0 = digits()
    n = ed.forward_noise(schedule, x0, t, torch.Generator().manual_seed(t))
    x0_hat = ed.one_step_denoise(TrueNoise(n.eps), schedule, n.x_t, t, clip=False)
    assert torch.allclose(x0_hat, x0, atol=1e-4 if t < T else 2e-3)


def test_iterative_denoise_with_true_noise_recovers_x0(schedule):
    """DDIM (eta = 0) with the exact eps of a single x0 lands on x0 from any t_start."""
    x0 = digits(2).clamp(-0.99, 0.99)
    n = ed.forward_noise(schedule, x0, 6, torch.Generator().manual_seed(0))
    out = ed.iterative_denoise(TrueNoise(n.eps), schedule, n.x_t, 6, steps=5)
    assert torch.allclose(out, x0, atol=1e-4)


def test_gaussian_blur_keeps_constants_and_smooths_noise():
    flat = torch.full((1, 1, 28, 28), 0.3)
    assert torch.allclose(ed.gaussian_blur_denoise(flat, 1.0), flat)
    noise = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert ed.gaussian_blur_denoise(noise, 2.0).std() < 0.5 * noise.std()


# -------------------------------------------------------------------- editing
def test_strided_timesteps_index_semantics():
    ts = ed.strided_timesteps(200, 40)
    assert ts[0] == 200 and ts[-1] == 0 and ts[20] == 100 and len(ts) == 41
    assert all(a > b for a, b in zip(ts[:-1], ts[1:]))  # larger index = less noise


def test_sdedit_zero_strength_returns_input(model, schedule):
    x0 = digits()
    out = ed.sdedit(model, schedule, x0, i_start=5, y=3, steps=5)
    assert torch.equal(out, x0) and out is not x0


def test_sdedit_changes_the_image_and_is_seeded(model, schedule):
    x0 = digits()
    a = ed.sdedit(model, schedule, x0, 2, 3, 1.0, steps=5, generator=torch.Generator().manual_seed(0))
    b = ed.sdedit(model, schedule, x0, 2, 3, 1.0, steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.allclose(a, x0, atol=1e-2)


def test_inpaint_keeps_known_pixels_exactly(model, schedule):
    x0 = digits(2)
    mask = torch.zeros(28, 28)
    mask[5:15, 8:20] = 1  # 1 = regenerate
    out = ed.inpaint(model, schedule, x0, mask, y=[1, 2], w=2.0, steps=5, eta=1.0,
                     generator=torch.Generator().manual_seed(0))
    keep = mask == 0
    assert torch.equal(out[:, :, keep], x0[:, :, keep])
    assert not torch.allclose(out[:, :, ~keep], x0[:, :, ~keep], atol=1e-2)


def test_translate_forgets_the_source_from_pure_noise_and_keeps_it_at_the_end(model, schedule):
    """i_start = 0 starts at t = T, where sqrt(alpha_bar_T) ~ 0: two different sources give the same digit
    of the target label; i_start = steps is t = 0: no edit. In between the target label matters."""
    a, b = digits(2, seed=1), digits(2, seed=2)
    g = lambda: torch.Generator().manual_seed(3)
    from_a = ed.translate(model, schedule, a, 4, 0, 1.0, steps=5, generator=g())
    from_b = ed.translate(model, schedule, b, 4, 0, 1.0, steps=5, generator=g())
    assert (from_a - from_b).abs().mean() < 0.05 * (a - b).abs().mean()  # the sources differ by ~0.67 per pixel
    assert torch.equal(ed.translate(model, schedule, a, 4, 5, 1.0, steps=5, generator=g()), a)
    mid = lambda label: ed.translate(Linear(), schedule, a, label, 2, 1.0, steps=5, generator=g())
    assert (mid(4) - mid(7)).abs().mean() > 0.01  # a predictor that reads its label


# ------------------------------------------------------------------ illusions
def test_flip_twice_is_identity_and_rotates():
    x = digits(2)
    assert torch.equal(ed.flip(ed.flip(x)), x)
    assert ed.flip(x)[0, 0, 0, 0] == x[0, 0, 27, 27]


def test_anagram_predictor_same_label_is_flip_symmetric(model):
    """With the same label both ways, eps(flip(x)) = flip(eps(x)): the combination is flip-equivariant."""
    x = digits(2)
    y = torch.tensor([6, 6])
    pred = ed.AnagramPredictor(model, y)
    e = guided_eps(pred, x, 4, y, 2.0)
    assert torch.allclose(guided_eps(pred, ed.flip(x), 4, y, 2.0), ed.flip(e), atol=1e-5)


def test_anagram_predictor_is_the_mean_of_the_two_guided_views():
    """Guiding the anagram predictor = averaging the two guided views, as Geng et al. combine them."""
    m, x = Linear(), digits(1)
    a, b = torch.tensor([6]), torch.tensor([9])
    pred = ed.AnagramPredictor(m, b)
    assert torch.allclose(pred(x, torch.tensor([3]), a), (m(x, 3, a) + ed.flip(m(ed.flip(x), 3, b))) / 2)
    want = (guided_eps(m, x, 3, a, 2.0) + ed.flip(guided_eps(m, ed.flip(x), 3, b, 2.0))) / 2
    assert torch.allclose(guided_eps(pred, x, 3, a, 2.0), want, atol=1e-6)


def test_visual_anagram_with_same_label_and_symmetric_noise_is_symmetric(model, schedule):
    x_T = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    x_T = (x_T + ed.flip(x_T)) / 2
    out = ed.visual_anagram(model, schedule, 8, 8, w=1.0, steps=5, x_T=x_T)
    assert torch.allclose(out.up, out.down, atol=1e-5)


def test_visual_anagram_swapping_the_labels_and_flipping_the_noise_flips_the_image(model, schedule):
    """E_ba(flip x) = flip E_ab(x), so the deterministic chain for (b, a) from flip(x_T) is the
    rotated chain for (a, b) from x_T: the upright 2 of one is the rotated 2 of the other."""
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    ab = ed.visual_anagram(model, schedule, 2, 5, w=1.0, steps=5, x_T=x_T)
    ba = ed.visual_anagram(model, schedule, 5, 2, w=1.0, steps=5, x_T=ed.flip(x_T))
    assert torch.allclose(ba.up, ab.down, atol=1e-4) and torch.allclose(ba.down, ab.up, atol=1e-4)
    assert not torch.allclose(ab.up, ab.down, atol=1e-2)


def test_hybrid_eps_same_label_is_plain_eps_and_splits_bands(model):
    x, y = digits(2), torch.tensor([2, 2])
    t = torch.tensor([5, 5])
    assert torch.allclose(ed.HybridPredictor(model, y)(x, t, y), model(x, t, y), atol=1e-5)
    m = Linear()
    a, b = torch.tensor([1]), torch.tensor([7])
    pred = ed.HybridPredictor(m, b, kernel=7, sigma=1.0)
    low = lambda z: gaussian_blur(z, [7, 7], [1.0, 1.0])
    for w in (0.0, 2.0):  # guiding the hybrid = combining the two guided bands
        ea, eb = guided_eps(m, x[:1], 3, a, w), guided_eps(m, x[:1], 3, b, w)
        assert torch.allclose(guided_eps(pred, x[:1], 3, a, w), low(ea) + eb - low(eb), atol=1e-5)


def test_rough_stroke_is_a_digit_sized_image():
    x = ed.rough_stroke("7")
    assert x.shape == (1, 1, 28, 28) and x.min() == -1 and x.max() == 1
    assert 0.05 < (x > 0).float().mean() < 0.3  # some ink, mostly background
    assert not torch.equal(x, ed.rough_stroke("7", seed=1))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, words", [
    (lambda m, s: ed.inpaint(m, s, digits(2), torch.zeros(27, 28)), "mask must be shaped"),
    (lambda m, s: ed.inpaint(m, s, digits(2), torch.full((28, 28), 0.5)), "only 0 (keep) and 1"),
    (lambda m, s: ed.forward_noise(s, digits(), T + 1), "timestep in 0..T=10"),
    (lambda m, s: ed.one_step_denoise(m, s, digits(), 0), "timestep in 1..T=10"),
    (lambda m, s: ed.iterative_denoise(m, s, digits(), 11), "t_start must be"),
    (lambda m, s: ed.sdedit(m, s, torch.zeros(2, 1, 32, 32), 1, steps=5), "resize it to 28x28"),
    (lambda m, s: ed.sdedit(m, s, torch.zeros(2, 3, 28, 28), 1, steps=5), "28x28 images"),
    (lambda m, s: ed.sdedit(m, s, digits(), 6, steps=5), "i_start must be an integer in 0..steps=5"),
    (lambda m, s: ed.sdedit(m, s, digits(), 1, steps=11), "steps must be an integer in 1..T=10"),
    (lambda m, s: ed.sdedit(m, s, digits(), 1, y=12, steps=5), "class labels"),
    (lambda m, s: ed.sdedit(m, s, digits(), 1, w=-1.0, steps=5), "guidance w"),
    (lambda m, s: ed.hybrid(m, s, 1, 7, kernel=4), "odd"),
    (lambda m, s: ed.gaussian_blur_denoise(digits(), 0.0), "sigma must be a positive"),
    (lambda m, s: ed.rough_stroke("x"), "unknown stroke"),
])
def test_bad_input_raises_one_line_value_error(model, schedule, call, words):
    with pytest.raises(ValueError) as err:
        call(model, schedule)
    msg = str(err.value)
    assert words in msg and "\n" not in msg


def test_single_images_are_promoted_to_a_batch(model, schedule):
    x = digits(1)
    assert ed.as_images(x[0, 0]).shape == (1, 1, 28, 28)
    assert torch.equal(ed.gaussian_blur_denoise(x[0], 1.0), ed.gaussian_blur_denoise(x, 1.0))


def test_psnr_and_ssim_known_values():
    x = digits(2)
    assert torch.isinf(ed.psnr(x, x)).all() and torch.allclose(ed.ssim(x, x), torch.ones(2))
    # a uniform offset of 0.1 in [0, 1] (0.2 in [-1, 1]) is MSE 0.01: 20 dB
    flat = torch.full((1, 1, 28, 28), -0.5)
    assert torch.allclose(ed.psnr(flat + 0.2, flat), torch.tensor([20.0]), atol=1e-4)
    noisy = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert (ed.ssim(noisy, x) < 0.9).all() and (ed.ssim(ed.flip(x), x) < ed.ssim(x, x)).all()


def test_cs180_report_pages_from_a_tiny_checkpoint(tmp_path, model, schedule):
    """Every section makes its PNG and a text with its measured numbers (a tiny T=10 model, 2 steps)."""
    from mnist.checkpoint import save_model
    from mnist.cs180_report import pages

    ckpt = tmp_path / "tiny.pt"
    save_model(ckpt, model, schedule, {})
    out = pages(str(tmp_path / "figs"), checkpoint=str(ckpt), n=10, steps=4, ts=(5,), i_starts=(1, 3))
    assert [page.text[:4] for page in out] == ["A.1 ", "A.2-", "A.5-", "A.7.", "A.7.", "A.7.", "A.8 ", "A.9 "]
    assert all(page.title.startswith("CS180 A.") for page in out)
    for page in out:
        assert page.images and all(os.path.getsize(p) > 1000 for p in page.images)
    assert "kept pixels equal the original exactly: True" in out[4].text
    assert "i_start = 1, 3 of 4 strided steps" in out[3].text
    assert "without guidance (w = 0" in out[2].text


# ------------------------------------------------------- part B.1: the single-step denoiser
def test_denoiser_unet_shapes_and_training_lowers_the_loss():
    from mnist.denoiser import DenoiserConfig, UnconditionalUNet, train_denoiser

    assert UnconditionalUNet(8)(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    x = (digits(32) > 0.5).float()  # binary images: learnable, unlike pure noise
    x[:, :, :, :14] = 0  # structure the net can exploit: the left half is always blank
    res = train_denoiser(x, DenoiserConfig(hidden=8, epochs=4, batch_size=8, lr=3e-3))
    assert len(res.losses) == 16 and len(res.epoch_models) == 4
    assert sum(res.losses[-4:]) < 0.7 * sum(res.losses[:4])
    with pytest.raises(ValueError, match="28, 28"):
        train_denoiser(torch.rand(4, 28, 28))


def test_psnr_per_sigma_of_the_identity():
    from mnist.denoiser import psnr_per_sigma

    x = torch.rand(4, 1, 28, 28)
    p = psnr_per_sigma(torch.nn.Identity(), x, sigmas=(0.0, 0.5))
    assert p[0.0][0] == p[0.0][1] == pytest.approx(100.0)  # no noise: capped at MSE 1e-10
    assert p[0.5][0] == pytest.approx(p[0.5][1]) and p[0.5][1] < 15
