"""report/animation.py and the animations beside the stills: each GIF loops, is signed as the package's and
stays small, and its frames come from the same arrays as the still figure at the same t (compared as
arrays, not GIF pixels): problem 2's densities and chain, problem 4's two chains, problem 5's and CS180's
digits forming from noise, and python -m image_diffusion.sample --gif, whose last frame is its grid."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from cs180 import parta_denoising as den
from cs180.parta_context import PartASettings, load_part_a
from gmm import GMM
from image_diffusion import sample as sample_cli
from image_diffusion.trainer import load_model
from mnist import problem5
from mnist.checkpoint import save_model
from mnist.metrics import load_classifier
from mnist.model import build_model
from mnist.sample import REFERENCE
from report.animation import MAX_BYTES, write_gif
from runio.checkpoints import Loaded
from runio.errors import OutputError
from runio.files import ours
from two_pixel import problem2, problem4
from two_pixel.figures import PROBLEM2_T, PROBLEM2_TIMES, Settings
from utils import SamplerSettings, generators, make_schedule, sample

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny convolutions run best on one thread


def spy(monkeypatch, module, name):
    """Record every call's arguments of module.name, and still make the call."""
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: (calls.append((a, k)), real(*a, **k))[1])
    return calls


def gif_facts(path):
    with Image.open(path) as im:
        return im.n_frames, im.info.get("loop"), os.path.getsize(path)


def test_a_gif_loops_holds_its_result_and_never_replaces_a_file_of_the_users(tmp_path):
    frames = [np.full((8, 12, 3), v, np.uint8) for v in (0, 100, 200)]
    path = write_gif(str(tmp_path / "a.gif"), frames, ms=50, hold_ms=900)
    with Image.open(path) as im:
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
            assert np.asarray(im.convert("RGB"))[0, 0, 0] == frames[i][0, 0, 0]  # no colour lost to the palette
        assert im.info["loop"] == 0 and durations == [50, 50, 900]
    assert ours(path)
    write_gif(path, frames[:2])  # its own file: replaced
    assert gif_facts(path)[0] == 2
    Image.fromarray(frames[0]).save(tmp_path / "theirs.gif")
    with pytest.raises(OutputError, match="not written by this package"):
        write_gif(str(tmp_path / "theirs.gif"), frames)
    assert gif_facts(tmp_path / "theirs.gif")[0] == 1


@pytest.fixture(scope="module")
def exact_run():
    """Problems 2 and 4 on the exact noise predictor of the mixture (no training)."""
    schedule = make_schedule(T=PROBLEM2_T)
    return {PROBLEM2_T: Loaded(GMM().noise_predictor(schedule), schedule, None, {})}


def test_problem2_frames_are_the_stills_densities_and_path(tmp_path, monkeypatch, exact_run):
    calls = spy(monkeypatch, problem2, "animation")
    page = problem2.page(Settings(problems=("2",), n=300, grid=40, out=str(tmp_path), quiet=True), exact_run)
    assert page.paths == [str(tmp_path / "problem2.png"), str(tmp_path / "problem2.gif")]
    chains = calls[0][0][1]
    still = np.load(tmp_path / "problem2.npz")  # the arrays the still was drawn from
    for i, t in enumerate(PROBLEM2_TIMES):
        frame = chains.at(t)
        np.testing.assert_array_equal(frame.estimate, still["estimate"][i])
        np.testing.assert_array_equal(frame.truth, still["truth"][i])
        np.testing.assert_array_equal(frame.path, still["trajectory"][: PROBLEM2_T - t + 1])
    assert [f.t for f in chains.frames] == list(problem2.ANIMATION_TIMES)
    n, loop, size = gif_facts(tmp_path / "problem2.gif")
    assert n == len(problem2.ANIMATION_TIMES) and loop == 0 and size < MAX_BYTES


def test_problem4_frames_are_the_stills_chains(tmp_path, monkeypatch, exact_run):
    calls = spy(monkeypatch, problem4, "animation")
    page = problem4.page(Settings(problems=("4",), n=20, ws=(0.0, 1.0), out=str(tmp_path), quiet=True), exact_run)
    assert page.paths[-1] == str(tmp_path / "problem4.gif") and all(f.alt for f in page.figures)
    frames = calls[0][0][1]
    still = np.load(tmp_path / "problem4.npz")
    assert [f.t for f in frames] == list(range(PROBLEM2_T, -1, -1))
    for frame in (frames[0], frames[25], frames[-1]):
        np.testing.assert_array_equal(frame.y0, still["trajectory_y0"][: PROBLEM2_T - frame.t + 1])
        np.testing.assert_array_equal(frame.y1, still["trajectory_y1"][: PROBLEM2_T - frame.t + 1])
    n, loop, size = gif_facts(tmp_path / "problem4.gif")
    assert n == PROBLEM2_T + 1 and loop == 0 and size < MAX_BYTES


T = 12  # a tiny MNIST UNet with random weights: only the bookkeeping is tested


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    m = build_model(dict(T=T, channels=(8, 8, 16, 16), embed_dim=16))
    for p in m.parameters():  # zero-initialised output layers would make every frame the same
        torch.nn.init.normal_(p, std=0.05)
    return m.eval(), make_schedule(T=T, clip_x0=1.0)


def test_problem5_frames_are_the_trajectory_figures_arrays(tmp_path, monkeypatch, tiny):
    stills, steps = spy(monkeypatch, problem5, "plot_trajectory"), spy(monkeypatch, problem5, "image_frames")
    clf, _ = load_classifier(verbose=False)
    gif = str(tmp_path / "mnist_reverse.gif")
    *_, numbers = problem5.measure_trajectories(*tiny, clf, 1.0, 0, 10, "cpu", str(tmp_path / "t.png"),
                                                str(tmp_path / "f.png"), gif)
    k = numbers["shown_trajectory_index"]  # the chain the still shows (problem5.shown_trajectory's rule)
    (traj_x, traj_x0, ts, shown, _), _ = stills[0]
    by_t = {s.t: s for s in steps[0][0][0]}
    assert set(shown) <= set(by_t) and shown == problem5.shown_times(T)
    for t in shown:  # the still's column at t is digit k of the frame at t
        i = int((ts == t).nonzero()[0])
        np.testing.assert_array_equal(by_t[t].x[k], traj_x[i].numpy())
        np.testing.assert_array_equal(by_t[t].x0_hat[k], traj_x0[i].numpy())
    n, loop, size = gif_facts(gif)
    assert n == len(by_t) == T + 1 and loop == 0 and size < MAX_BYTES


def test_cs180_sampling_animation_ends_on_the_stills_digits(tmp_path, monkeypatch, tiny):
    grids, steps = spy(monkeypatch, den, "image_grid"), spy(monkeypatch, den, "image_frames")
    ckpt = tmp_path / "tiny.pt"
    save_model(ckpt, *tiny, {})
    a = load_part_a(str(tmp_path / "figs"), str(ckpt), PartASettings(n=20, steps=4))
    page = den.sampling_page(a, den.measure_sampling(a))
    assert page.paths[-1] == str(tmp_path / "figs" / "cs180_sampling.gif")
    rows = next(args[0] for args, _ in grids if args[2] == "cs180_sampling")
    guided_row = rows[1]  # rows: (j = 0, w = 0), (j = 0, w = guided), ...: the first guided sample of each digit
    frames = steps[0][0][0]
    assert [s.t for s in frames] == a.i_ts  # every strided step, from T to 0
    np.testing.assert_array_equal(frames[-1].x, torch.stack(guided_row).numpy())
    np.testing.assert_array_equal(frames[-1].x0_hat, frames[-1].x)
    assert gif_facts(page.paths[-1])[:2] == (len(a.i_ts), 0)


def test_sample_cli_gif_is_the_grids_own_chain(tmp_path):
    """--gif writes reverse.gif beside the stills, and its chain ends on the grid bit for bit."""
    out = tmp_path / "s"
    assert sample_cli.main(["--checkpoint", REFERENCE, "--out", str(out), "--n", "4", "--steps", "3", "--gif"]) == 0
    assert sorted(os.listdir(out)) == ["reverse.gif", "samples.png", "trajectory.png"]
    n, loop, size = gif_facts(out / "reverse.gif")
    assert n == 4 and loop == 0 and size < MAX_BYTES  # x_T and the 3 DDIM steps' states
    model, schedule, *_ = load_model(REFERENCE)
    settings, y = SamplerSettings(steps=3, w=2.0, eta=1.0), torch.arange(4) % 10  # eta 1: step noise too
    x, chain = sample_cli.reverse_process(model, schedule, 4, y, settings, seed=0)
    grid = sample(model, schedule, 4, y, settings, generators(0, 4), shape=(1, 28, 28))
    assert torch.equal(x, grid) and torch.equal(chain.x[-1], grid)
    assert chain.t.tolist()[0] == schedule.T and chain.t.tolist()[-1] == 0
