"""Fast tests of CS180 part A on MNIST (cs180.techniques, cs180.inputs, the part-A pages and their figures):
each checks a defining property on a tiny random UNet with T = 10, or on a fake noise predictor whose answer
is known exactly."""
import os
import re

import matplotlib.pyplot as plt
import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from cs180 import figures, inputs
from cs180 import techniques as ed
from cs180.parta_context import PartASettings
from cs180.parta_pages import pages
from mnist.checkpoint import save_model
from mnist.model import build_model
from report.pages import FIG_W
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
    (lambda m, s: inputs.uci_digit(1797), "index must be an integer in 0..1796"),
    (lambda m, s: ed.inpaint(m, s, digits(2), torch.zeros(28, 28), resample=0), "resample must be an integer >= 1"),
    (lambda m, s: ed.renoise(s, digits(), 5, 5), "0 <= s < t <= T=10"),
    (lambda m, s: inputs.font_letter("ab"), "one visible character"),
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


def test_part_a_pages_from_a_tiny_checkpoint(tmp_path, model, schedule):
    """Every section makes its PNG and a text with its measured numbers (a tiny T=10 model, 4 steps,
    the pair sweeps with one seed and 2 steps)."""
    ckpt = tmp_path / "tiny.pt"
    save_model(ckpt, model, schedule, {})
    out = pages(str(tmp_path / "figs"), checkpoint=str(ckpt),
                settings=PartASettings(n=10, steps=4, ts=(5,), i_starts=(1, 3), illusion_seeds=(0,), illusion_steps=2,
                                       resample=2, inpaint_steps=3))
    body = [next(t for k, t in page.blocks if k == "text") for page in out]  # after the answers, if any
    assert [t[:5] for t in body] == ["A.1 F", "A.2-A", "A.4 I", "A.5-A", "A.7.1", "A.7.1", "A.7.2",
                                     "A.7.3", "A.8-A", "A.8 V", "A.9 H"]
    assert out[3].answers[0].startswith("Guidance: asking for each digit, ") and "empty prompt" in out[3].answers[1]
    assert out[8].answers[0].startswith("Visual anagrams: ") and out[8].answers[1].startswith("Hybrids: ")
    # every page answers its section's question first: the answers' labels, per section (the title's), in order
    labels = [("A.1", ["Forward process"]),
              ("A.2-A.4", ["Gaussian blur (A.2)", "One-step (A.3)", "Iterative (A.4)"]),
              ("A.4", ["Iterative denoising", "Compared with one step and blur"]),
              ("A.5-A.6", ["Guidance", "Without a label (the empty prompt)"]),
              ("A.7.1", ["SDEdit"]),
              ("A.7.1", ["Hand-drawn digits", "Web image and font letter"]),
              ("A.7.2", ["Inpainting", "Inpainting another digit"]),
              ("A.7.3", ["Text-conditional translation"]),
              ("A.8-A.9", ["Visual anagrams", "Hybrids"]),
              ("A.8", ["Visual anagram examples"]),
              ("A.9", ["Hybrid image examples"])]
    assert len(out) == len(labels)
    for page, (section, want) in zip(out, labels):
        assert page.title.startswith(f"CS180 {section}: ") and page.answers, page.title
        assert [a.split(": ", 1)[0] for a in page.answers] == want, page.title
        assert all(re.search(r"\d", a) for a in page.answers), page.title  # each answer states a measured number
        assert page.blocks[:len(want)] == [("answer", a) for a in page.answers]  # the answers come first
    assert all(page.title.startswith("CS180 A.") for page in out)
    for page in out:
        assert page.images and all(os.path.getsize(p) > 1000 for p in page.images)
    assert "The kept pixels equal the original exactly" in out[6].text
    # A.7 reads its inputs and edits with the legibility judge: a face is no digit, whatever the classifier's top class
    assert "the photo: no digit before editing" in out[5].text
    assert "i_start = 1, 3 of 4 strided steps" in out[4].text
    assert "without guidance (w = 0" in out[3].text and "no label at all (label 10" in out[3].text
    assert "U = 2" in out[6].text
    assert "python -m cs180.parta_picks searches more" in out[8].text  # no stored search for this model: it searched
    assert "Figure 2" in out[7].text and len(out[7].images) == 2  # A.7.3: own images translated too
    assert os.path.exists(tmp_path / "figs" / "cs180_illusion_rates.csv")  # the matrices behind the heat maps


# ------------------------------------------------------------- A.8 / A.9 over all label pairs
def test_label_pairs_are_the_90_ordered_pairs_without_the_diagonal():
    a, b = ed.label_pairs(10)
    pairs = set(zip(a.tolist(), b.tolist()))
    assert len(a) == len(pairs) == 90 and all(x != y for x, y in pairs)
    assert {(6, 9), (9, 6), (2, 5), (5, 2)} <= pairs


def test_pair_matrix_means_per_pair_with_nan_where_untested():
    a, b = torch.tensor([2, 2, 2, 5]), torch.tensor([5, 5, 5, 2])
    m = ed.pair_matrix(torch.tensor([1.0, 0.0, 1.0, 1.0]), a, b)
    assert m[2, 5] == pytest.approx(2 / 3) and m[5, 2] == 1
    assert torch.isnan(m[0, 0]) and torch.isnan(m[2, 2]) and torch.isnan(m[3, 4])


@pytest.mark.parametrize("kind", ["anagram", "hybrid"])
def test_a_pair_sweep_is_the_single_calls_batched(model, schedule, kind):
    """Image (a, b, seed) of the one-batch sweep is what visual_anagram / hybrid make for that pair alone
    with generator pair_seed(seed, a, b): labels, views and seeds stay aligned in the batch."""
    pairs = (torch.tensor([2, 5, 6]), torch.tensor([5, 2, 9]))
    sweep = (ed.anagram_sweep if kind == "anagram" else ed.hybrid_sweep)(model, schedule, (0, 3), 1.0, 2, pairs=pairs)
    assert sweep.a.tolist() == [2, 5, 6] * 2 and sweep.b.tolist() == [5, 2, 9] * 2 and sweep.seed.tolist() == [0] * 3 + [3] * 3
    for i in (1, 5):
        a, b, s = int(sweep.a[i]), int(sweep.b[i]), int(sweep.seed[i])
        g = [torch.Generator().manual_seed(ed.pair_seed(s, a, b))]
        alone = (ed.visual_anagram(model, schedule, a, b, 1, 1.0, 2, generator=g).up if kind == "anagram" else
                 ed.hybrid(model, schedule, a, b, n=1, w=1.0, steps=2, generator=g))
        assert torch.allclose(sweep.x[i:i + 1], alone, atol=1e-4)


# ------------------------------------------------------------------- RePaint resampling
class Counting(torch.nn.Module):
    """eps(x, t, y) = 0.1 x + 0.05, recording every call's (t, x)."""

    num_classes = 10

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    @property
    def calls(self):
        return len(self.seen)

    def forward(self, x, t, y=None):
        self.seen.append((int(t[0]), x.clone()))
        return 0.1 * x + 0.05


@pytest.mark.parametrize("U", [1, 3])
def test_inpaint_resampling_redoes_every_step_U_times_and_keeps_the_known_pixels(schedule, U):
    m, x0 = Counting(), digits(2)
    mask = torch.zeros(28, 28)
    mask[:14] = 1
    out = ed.inpaint(m, schedule, x0, mask, y=3, steps=5, generator=torch.Generator().manual_seed(0), resample=U)
    assert m.calls == 5 * U  # w = 0: one network pass a step
    assert torch.equal(out[:, :, 14:], x0[:, :, 14:])


def test_inpaint_resampling_renoises_before_it_redoes_a_step(schedule):
    """U = 2: every step is run twice at the same t, the second time from x_t' re-noised back to t: an input that
    differs from the first in the regenerated pixels, with the spread of q(x_t | x_t') around the first pass."""
    m, x0 = Counting(), digits(1)
    mask = torch.zeros(28, 28)
    mask[:14] = 1
    ed.inpaint(m, schedule, x0, mask, steps=5, generator=torch.Generator().manual_seed(0), resample=2)
    ts = [t for t, _ in m.seen]
    assert ts == [t for t in ed.strided_timesteps(T, 5)[:-1] for _ in range(2)]
    for (t, first), (_, second) in zip(m.seen[0::2], m.seen[1::2]):
        assert not torch.allclose(first[:, :, :14], second[:, :, :14], atol=1e-3), f"step at t={t} not re-noised"


def test_inpaint_resample_changes_the_result_and_is_seeded(model, schedule):
    x0, mask = digits(2), torch.zeros(28, 28)
    mask[:, :14] = 1
    run = lambda U: ed.inpaint(model, schedule, x0, mask, y=[1, 2], w=1.0, steps=4,
                               generator=[torch.Generator().manual_seed(i) for i in range(2)], resample=U)
    assert torch.equal(run(2), run(2)) and not torch.allclose(run(2), run(1), atol=1e-3)


def test_renoise_is_the_forward_process_from_s_to_t(schedule):
    """x_s ~ q(x_s | x_0), then renoise to t: x_t ~ q(x_t | x_0), mean sqrt(ab_t) x_0 and variance 1 - ab_t."""
    x0 = torch.full((400, 1, 28, 28), 0.6)
    g = torch.Generator().manual_seed(0)
    x_s = q_sample(schedule, x0, torch.full((400,), 3), torch.randn(x0.shape, generator=g))
    x_t = ed.renoise(schedule, x_s, 3, 7, g)
    ab = schedule.alpha_bar[7].item()
    assert x_t.mean().item() == pytest.approx(ab ** 0.5 * 0.6, abs=0.01)
    assert x_t.var().item() == pytest.approx(1 - ab, rel=0.02)


# ----------------------------------------------------------- A.4 progression, inputs from outside
def test_iterative_denoise_trajectory_visits_the_strided_steps(model, schedule):
    x = digits(2)
    out, traj = ed.iterative_denoise(model, schedule, x, 8, steps=5, trajectory=True)
    assert traj.t.tolist() == [8, 6, 4, 2, 0] and torch.equal(traj.x[0], x) and torch.equal(traj.x[-1], out)
    assert torch.equal(out, ed.iterative_denoise(model, schedule, x, 8, steps=5))


def _mnist_like(x):
    """x is normalised as MNIST was made: its ink fits a 20 px box and its centre of mass is the centre."""
    ink = (x + 1) / 2
    rows, cols = (ink > 0.1).any(-1).nonzero()[:, -1], (ink > 0.1).any(-2).nonzero()[:, -1]
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    return (max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (20, 21)
            and abs((ink[0, 0] * yy).sum() / ink.sum() - 13.5) < 1 and abs((ink[0, 0] * xx).sum() / ink.sum() - 13.5) < 1)


def test_uci_digits_are_real_handwriting_made_mnist_like():
    """sklearn's UCI digits (8x8, not MNIST) come out 28x28 in [-1, 1], boxed and centred as MNIST, with their label;
    first_uci finds the first digit of a label."""
    from sklearn.datasets import load_digits

    target = load_digits().target
    for c in (2, 7):
        i = inputs.first_uci(c)
        assert target[i] == c and (target[:i] != c).all()
        x, label = inputs.uci_digit(i)
        assert label == c and x.shape == (1, 1, 28, 28) and x.min() == -1 and x.max() == 1 and _mnist_like(x)
        assert 0.05 < ((x + 1) / 2).mean() < 0.4  # strokes, mostly background
    assert not torch.equal(inputs.uci_digit(inputs.first_uci(2))[0], inputs.uci_digit(inputs.first_uci(7))[0])


def test_outside_images_are_normalised_like_mnist():
    assert _mnist_like(inputs.font_letter("S"))
    photo = inputs.sample_photo()
    assert photo.shape == (1, 1, 28, 28) and photo.min() == -1 and photo.max() == 1 and photo.std() > 0.2


# --------------------------------------------------------------------- printed font sizes
def test_report_figures_refuse_text_under_7_printed_points_or_taller_than_a_page(tmp_path):
    def fig(w, h, pt):
        f = plt.figure(figsize=(w, h))
        f.text(0.5, 0.5, "label", fontsize=pt)
        return f

    assert os.path.exists(figures.save(fig(FIG_W, 2, 7.0), str(tmp_path), "ok"))
    assert os.path.exists(figures.save(fig(FIG_W / 2, 1, 3.5), str(tmp_path), "scaled_up"))  # prints at 7 pt
    for name, f in (("small", fig(FIG_W, 2, 6.5)), ("shrunk", fig(2 * FIG_W, 2, 8)), ("tall", fig(FIG_W, 11, 8))):
        with pytest.raises(ValueError, match="would not print legibly"):
            figures.save(f, str(tmp_path), name)


def test_image_grid_prints_every_label_at_7_points(tmp_path, monkeypatch):
    """The grid used for every part-A image figure: many columns and multi-line labels still print >= 7 pt."""
    seen = []
    monkeypatch.setattr(figures, "save", lambda f, d, n: seen.append(figures.printed_sizes(f)) or plt.close(f))
    figures.image_grid([[digits(1)] * 12] * 2, str(tmp_path), "g", ["row\none", "row two"], [f"c{i}\nt" for i in range(12)],
                       captions=[["reads 3"] * 12] * 2, groups=[(0, 5, "group")])
    assert seen and min(pt for _, pt in seen[0]) >= 7.0 and len(seen[0]) == 2 + 12 + 24 + 1


# ------------------------------------------------------- part B.1: the single-step denoiser
def test_denoiser_unet_shapes_and_training_lowers_the_loss():
    from cs180.denoiser import DenoiserConfig, UnconditionalUNet, train_denoiser

    assert UnconditionalUNet(8)(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    x = (digits(32) > 0.5).float()  # binary images: learnable, unlike pure noise
    x[:, :, :, :14] = 0  # structure the net can exploit: the left half is always blank
    res = train_denoiser(x, DenoiserConfig(hidden=8, epochs=4, batch_size=8, lr=3e-3))
    assert len(res.losses) == 16 and len(res.epoch_models) == 4
    assert sum(res.losses[-4:]) < 0.7 * sum(res.losses[:4])
    with pytest.raises(ValueError, match="28, 28"):
        train_denoiser(torch.rand(4, 28, 28))


def test_psnr_per_sigma_of_the_identity():
    from cs180.denoiser import psnr_per_sigma

    x = torch.rand(4, 1, 28, 28)
    p = psnr_per_sigma(torch.nn.Identity(), x, sigmas=(0.0, 0.5))
    assert p[0.0][0] == p[0.0][1] == pytest.approx(100.0)  # no noise: capped at MSE 1e-10
    assert p[0.5][0] == pytest.approx(p[0.5][1]) and p[0.5][1] < 15
