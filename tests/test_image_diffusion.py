"""image_diffusion: the UNet at every resolution, MNISTUNet as one of its configurations, the data
errors, the presets, and the trainer's promises (loss falls, --resume and DDP change nothing).
Everything runs on a few dozen tiny PNGs written into tmp_path."""
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from image_diffusion import sample as sample_cli
from image_diffusion import train as train_cli
from image_diffusion.data import DataError, load_images
from image_diffusion import fid
from image_diffusion.fid import get_metric
from image_diffusion.presets import PRESETS, get_preset
from image_diffusion.trainer import load_model, per_sample_losses, sample_generators, train
from image_diffusion.unet import BatchDropout, UNet, UNetConfig, from_mnist_config, global_batch_dropout
from mnist.checkpoint import load_model as load_mnist_model
from runio.files import ROOT
from utils import linear_beta_schedule

REFERENCE_DIR = os.path.join(ROOT, "mnist", "reference")

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a tiny cifar10-32: 3 levels of width 8, attention only in the 8x8 middle, T = 20, 8 images a step, a 2-step
# DDIM grid of 2 images (attention at 16x16 would make a CPU step 4x slower)
TINY = dict(base=8, mults=(1, 2, 2), attn_resolutions=(), T=20, batch_size=8, dropout=0.0, warmup=0, sample_n=2,
            sample_steps=2, save_every=3)
TINY_ARGS = ["--base", "8", "--mults", "1,2,2", "--attn-resolutions", "none", "--T", "20", "--batch-size", "8",
             "--dropout", "0", "--warmup", "0", "--sample-n", "2", "--sample-steps", "2", "--save-every", "3", "--quiet"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 random 36x40 RGB PNGs in two class folders (smooth blobs, so there is something to learn)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:36, :40]
    for c in ("a", "b"):
        os.makedirs(root / c)
        for i in range(12):
            cy, cx = rng.uniform(8, 28, 2)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40)[..., None] * rng.uniform(0, 255, 3)
            Image.fromarray(blob.astype(np.uint8)).save(root / c / f"{i}.png")
    return str(root)


def tiny(folder, **kw):
    return get_preset("cifar10-32", data=folder, **{**TINY, **kw})


# ---------------------------------------------------------------- the UNet
@pytest.mark.parametrize("resolution", [28, 32, 64, 96, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_unet_output_shape_at_every_resolution(resolution, channels):
    mults = (1, 2) if resolution == 28 else (1, 2, 2)  # 28 halves twice at most
    cfg = UNetConfig.from_mults(8, mults, (resolution // 4,), 1, resolution, in_channels=channels,
                                out_channels=channels, T=10, num_classes=3)
    x = torch.randn(2, channels, resolution, resolution)
    eps = UNet(cfg)(x, torch.tensor([1, 10]), torch.tensor([0, 3]))
    assert eps.shape == x.shape


def test_unet_refuses_a_resolution_it_cannot_halve():
    with pytest.raises(ValueError, match="not divisible by 8") as e:
        UNet(UNetConfig.from_mults(8, (1, 2, 2, 2), (), 1, resolution=28))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="resolution 30 is not supported"):
        get_preset("cifar10-32", resolution=30)


def test_linear_attention_is_the_efficient_attention_formula():
    """LinearAttention equals Shen et al.'s efficient attention written position by position: each output
    position n gets sum_d q_n[d] * sum_m k[d, m] v_m, with q softmaxed over features (scaled) and k over
    positions; so, like softmax attention, it commutes with a permutation of the pixels. Its cost is
    linear: the same layer runs at 28x28 for a 784-position image without a 784 x 784 map."""
    from image_diffusion.unet import LinearAttention
    torch.manual_seed(0)
    layer = LinearAttention(8, groups=2, heads=2)
    torch.nn.init.normal_(layer.proj.weight)  # zero-initialised, which would hide the attention
    x = torch.randn(2, 8, 4, 4)
    B, C, H, W = x.shape
    q, k, v = layer.qkv(layer.norm(x)).reshape(B, 3, 2, C // 2, H * W).unbind(1)
    q, k = q.softmax(-2) * (C // 2) ** -0.5, k.softmax(-1)
    out = torch.zeros(B, 2, C // 2, H * W)
    for n in range(H * W):
        for m in range(H * W):
            out[..., n] += (q[..., n] * k[..., m]).sum(-1, keepdim=True) * v[..., m]
    expected = x + layer.proj(out.reshape(B, C, H, W))
    with torch.no_grad():
        assert torch.allclose(layer(x), expected, atol=1e-5)
        perm = torch.randperm(H * W)
        permute = lambda t: t.flatten(2)[..., perm].reshape(t.shape)
        assert torch.allclose(layer(permute(x)), permute(layer(x)), atol=1e-5)
        assert layer(torch.randn(1, 8, 28, 28)).shape == (1, 8, 28, 28)


def test_attention_flags_build_the_named_layers_and_refuse_others():
    from image_diffusion.unet import LinearAttention, SelfAttention
    cfg = UNetConfig(in_channels=1, out_channels=1, resolution=28, channels=(16, 32, 64, 64),
                     attention=("linear", "linear", True, True), downsample=(True, True, False), T=10)
    net = UNet(cfg)
    kinds = [type(level.attn) for level in net.down]
    assert kinds == [LinearAttention, LinearAttention, SelfAttention, SelfAttention]
    assert UNetConfig.from_dict(cfg.as_dict()) == cfg  # the flags survive a checkpoint's config
    with pytest.raises(ValueError, match="attention flags") as e:
        UNet(UNetConfig(attention=("soft", False, True, True)))
    assert "\n" not in str(e.value)


def test_mnist_reference_model_is_one_configuration_of_the_unet():
    """mnist/reference/model.pt loads (strict) into the UNet built from its stored config, which gives
    bit-identical eps on random inputs, with and without labels; problem 5's MNISTUNet is that UNet.
    (Before mnist/model.py became a configuration of the core, the same check held against its own
    implementation, and problem 5's samples stayed bit-identical across the change.)"""
    mnist = load_mnist_model(os.path.join(REFERENCE_DIR, "model.pt")).model
    assert isinstance(mnist, UNet) and mnist.unet_config == from_mnist_config(mnist.config.as_dict()).config
    unet = from_mnist_config(mnist.config.as_dict()).eval()
    unet.load_state_dict(mnist.state_dict(), strict=True)  # a renamed or reshaped layer fails here
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 28, 28, generator=g)
    t = torch.randint(1, mnist.T + 1, (6,), generator=g)
    y = torch.tensor([0, 3, 9, 10, 5, 1])
    with torch.no_grad():
        assert torch.equal(unet(x, t, y), mnist(x, t, y))
        assert torch.equal(unet(x, t), mnist(x, t))
    assert (unet.T, unet.num_classes) == (mnist.T, mnist.num_classes)


# -------------------------------------------------------------------- data
def test_folder_is_center_cropped_and_scaled(folder, tmp_path):
    data = load_images(folder, resolution=32)
    x, y = data[13]
    assert (len(data), data.num_classes, y) == (24, 2, 1)
    assert x.shape == (3, 32, 32) and -1 <= x.min() < x.max() <= 1
    for i in range(3):  # a flat folder (no class subfolders) works too, without classes
        Image.open(os.path.join(folder, "a", f"{i}.png")).save(tmp_path / f"{i}.png")
    flat = load_images(str(tmp_path), resolution=28, channels=1)
    assert (len(flat), flat.num_classes, flat[0][0].shape) == (3, 0, (1, 28, 28))


def test_data_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match=f"not in {tmp_path}/cifar-10-batches-py") as e:
        load_images("cifar10", root=str(tmp_path), download=False)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="holds no images"):
        load_images(str(tmp_path))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read .*bad.png"):
        load_images(str(tmp_path))[0]


# ----------------------------------------------------------------- presets
def test_tutorial_preset_is_the_seed_tutorials_setup():
    cfg = get_preset("tutorial")
    s = cfg.noise_schedule()
    assert (cfg.T, cfg.resolution, cfg.channels, cfg.loss) == (300, 64, 3, "l1")
    assert torch.allclose(s.beta[1:], linear_beta_schedule(300)) and s.beta[1] == 1e-4 and abs(s.beta[-1] - 0.02) < 1e-12
    assert not any(cfg.unet().attention) and not cfg.unet().mid_attention
    # the loss is L1: for a network predicting eps_hat = 0 it is the mean |eps| of each sample's own noise
    zero = lambda x, t, y: torch.zeros_like(x)
    x0 = torch.zeros(3, 3, 8, 8)
    gens = sample_generators(0, 0, range(3))
    loss = per_sample_losses(zero, s, x0, None, gens, cfg.loss)
    again = sample_generators(0, 0, range(3))
    for g in again:  # the draws before eps: flip, t, label dropout
        torch.rand((), generator=g), torch.randint(1, 301, (), generator=g), torch.rand((), generator=g)
    eps = torch.stack([torch.randn(3, 8, 8, generator=g) for g in again])
    assert torch.allclose(loss, eps.abs().mean((1, 2, 3)))


def test_every_preset_builds_a_valid_unet():
    for name, preset in PRESETS.items():
        assert preset.source and get_preset(name).unet().validate()


# ----------------------------------------------------------------- trainer
def test_tiny_model_loss_falls(folder):
    result = train(tiny(folder, steps=50, lr=3e-3, T=50), load_images(folder), progress=False)
    first, last = np.mean(result.losses[:10]), np.mean(result.losses[-10:])
    assert last < 0.8 * first, (first, last)


def test_resume_equals_an_uninterrupted_run(folder, tmp_path):
    cfg, data = tiny(folder, steps=6, dropout=0.1), load_images(folder)
    train(cfg, data, str(tmp_path / "split"), stop_at=4, progress=False)  # saves at steps 3 and 4
    train(cfg, data, str(tmp_path / "split"), resume=True, progress=False)
    train(cfg, data, str(tmp_path / "whole"), progress=False)
    a, b = (torch.load(tmp_path / r / "state.pt", weights_only=True) for r in ("split", "whole"))
    assert a["step"] == b["step"] == 6 and a["losses"] == b["losses"]
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def test_dropout_masks_do_not_depend_on_the_split():
    """Inside global_batch_dropout, the two halves of a batch drop what the whole batch drops, and the whole
    batch drops bit for bit what nn.Dropout drops (so runs from before it reproduce)."""
    x = torch.randn(8, 4, 5, 5)
    layer = BatchDropout(0.3).train()

    def masked(rows, first, total=8):
        torch.manual_seed(7)
        with global_batch_dropout(total, first):
            return layer(x[rows])

    torch.manual_seed(7)
    plain = torch.nn.functional.dropout(x, 0.3, True)
    assert torch.equal(masked(slice(0, 8), 0), plain)
    assert torch.equal(torch.cat([masked(slice(0, 4), 0), masked(slice(4, 8), 4)]), plain)
    assert not torch.equal(masked(slice(4, 8), 0), plain[4:])  # each process must keep its own rows
    torch.manual_seed(7)
    assert torch.equal(layer(x), plain)  # outside the context: nn.Dropout
    assert torch.equal(layer.eval()(x), x)


def test_ddp_two_processes_equal_one(folder, tmp_path):
    """torchrun with 2 gloo processes (4 images each) trains the model that 1 process does with 8, with
    the preset's dropout on."""
    args = ["--preset", "cifar10-32", "--data", folder, "--steps", "4", *TINY_ARGS, "--dropout", "0.1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.Popen([*torchrun, "-m", "image_diffusion.train", *args, "--out", str(tmp_path / "ddp")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and the two workers it started
        raise
    assert proc.returncode == 0, err[-2000:]
    assert train_cli.main([*args, "--out", str(tmp_path / "one")]) == 0
    a, b = (torch.load(tmp_path / r / "state.pt", weights_only=True) for r in ("ddp", "one"))
    assert np.allclose(a["losses"], b["losses"], rtol=1e-6)  # steps 2-4 see the updated weights
    # Adam moves a weight by about lr whatever its gradient's size, so a near-zero gradient summed in another
    # order can move a bias differently by up to lr: compare the whole model (a wrong split differs by ~1e-2)
    flat = [torch.cat([v.flatten() for v in s["model"].values()]) for s in (a, b)]
    assert (flat[0] - flat[1]).norm() < 1e-4 * flat[1].norm()
    assert load_model(tmp_path / "ddp" / "model.pt").info["world_size"] == 2


def test_ddp_loads_a_named_dataset_on_rank_0_first(tmp_path):
    """Only rank 0 may download; when it cannot load the data, the other process stops too (no hang), and each
    says why in one line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args = ["--preset", "cifar10-32", "--data", "cifar10", "--data-root", str(tmp_path / "empty"), "--no-download",
            "--out", str(tmp_path / "run"), *TINY_ARGS]
    proc = subprocess.run([*torchrun, "-m", "image_diffusion.train", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240, start_new_session=True)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "image_diffusion.train: error:" in line]
    worker_frames = [line for line in proc.stderr.splitlines()  # torchrun's own report has a traceback; theirs not
                     if line.strip().startswith("File ") and "image_diffusion" in line]
    assert len(errors) == 2 and not worker_frames, proc.stderr[-2000:]
    assert any("rank 0 could not load the data" in line for line in errors)
    assert any("cifar-10-batches-py" in line and "rank 0" not in line for line in errors)


# --------------------------------------------------------------------- CLI
def test_cli_trains_resumes_and_samples(folder, tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["--preset", "cifar10-32", "--data", folder, "--out", out, *TINY_ARGS]
    assert train_cli.main([*args, "--steps", "2"]) == 0
    first = open(os.path.join(out, "loss.csv")).read().splitlines()
    assert train_cli.main([*args, "--steps", "4", "--resume"]) == 0
    assert sorted(os.listdir(out)) == ["loss.csv", "loss.png", "model.pt", "samples.png", "state.pt", "trajectory.png"]
    rows = open(os.path.join(out, "loss.csv")).read().splitlines()
    assert len(rows) == 5 and rows[:3] == first  # header + steps 1-2 kept + steps 3-4
    assert torch.load(os.path.join(out, "state.pt"), weights_only=True)["ema_num_updates"] == 4
    loaded = load_model(os.path.join(out, "model.pt"))
    assert loaded.info["step"] == 4 and loaded.config.base == 8 and loaded.schedule.T == 20
    assert train_cli.main([*args, "--steps", "4"]) == 2  # an existing run is not replaced silently
    assert "already holds a run" in capsys.readouterr().err
    assert sample_cli.main(["--checkpoint", os.path.join(out, "model.pt"), "--out", str(tmp_path / "s"), "--n", "3"]) == 0
    assert sorted(os.listdir(tmp_path / "s")) == ["samples.png", "trajectory.png"]


def test_grids_are_drawn_with_the_runs_ddim_eta(folder, tmp_path, monkeypatch):
    """cifar10-32 draws its grids with stochastic DDIM (sample_eta 1; after short runs the deterministic
    eta 0 leaves pixel noise): the final grid and its trajectory of a run, and image_diffusion.sample unless
    --eta says otherwise."""
    assert get_preset("cifar10-32").sample_eta == 1.0
    calls, real_sample, real_loop = [], sample_cli.sample, sample_cli.p_sample_loop
    monkeypatch.setattr(sample_cli, "sample", lambda *a, **k: calls.append(("grid", a[4].eta)) or real_sample(*a, **k))
    monkeypatch.setattr(sample_cli, "p_sample_loop",
                        lambda *a, **k: calls.append(("chain", a[4].eta)) or real_loop(*a, **k))
    out = str(tmp_path / "run")
    assert train_cli.main(["--preset", "cifar10-32", "--data", folder, "--out", out, "--steps", "2", *TINY_ARGS]) == 0
    ckpt = os.path.join(out, "model.pt")
    assert sample_cli.main(["--checkpoint", ckpt, "--out", str(tmp_path / "a"), "--n", "2"]) == 0
    assert sample_cli.main(["--checkpoint", ckpt, "--out", str(tmp_path / "b"), "--n", "2", "--eta", "0"]) == 0
    assert calls == [("grid", 1.0), ("chain", 1.0)] * 2 + [("grid", 0.0), ("chain", 0.0)]


def test_the_one_sampling_cli_takes_problem_5s_checkpoint(tmp_path, capsys, monkeypatch):
    """python -m image_diffusion.sample reads the shipped MNIST model as the core UNet (the same eps as
    mnist.checkpoint's loader), writes its grid and trajectory, and never writes into mnist/reference/
    (refused before any sampling)."""
    shipped = os.path.join(REFERENCE_DIR, "model.pt")
    core, mnist = load_model(shipped), load_mnist_model(shipped)
    assert core.config is None and core.schedule.config() == mnist.schedule.config()
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([1, 50, 200]), torch.tensor([2, 7, 10])
    with torch.no_grad():
        assert torch.equal(core.model(x, t, y), mnist.model(x, t, y))
    with monkeypatch.context() as m:
        m.setattr(sample_cli, "write_figures", lambda *a, **k: pytest.fail("sampled before refusing the output"))
        assert sample_cli.main(["--checkpoint", shipped, "--n", "2", "--steps", "2"]) == 2  # default out: the reference
    assert "mnist/reference/" in capsys.readouterr().err
    assert sample_cli.main(["--checkpoint", shipped, "--out", str(tmp_path), "--n", "2", "--steps", "2"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["samples.png", "trajectory.png"]


BAD_INPUT = {  # argv ({folder}: the good images, {tmp}: a scratch folder) and the message expected
    "unknown preset": (["--preset", "cifar-99"], "invalid choice.*tutorial.*cifar10-32.*stl10-96.*ffhq-128"),
    "resolution": (["--preset", "cifar10-32", "--data", "{folder}", "--resolution", "28"],
                   "resolution 28 is not divisible by 8"),
    "empty folder": (["--preset", "cifar10-32", "--data", "{tmp}", *TINY_ARGS], "holds no images"),
    "corrupt image": (["--preset", "cifar10-32", "--data", "{tmp}", *TINY_ARGS], r"cannot read .*x\.png"),
    "no data": (["--preset", "ffhq-128"], "preset ffhq-128 has no dataset of its own; pass --data"),
    "sample eta": (["--preset", "cifar10-32", "--data", "{folder}", "--sample-eta", "1.5"],
                   r"expected a number in \[0, 1\], got '1.5'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_cli_bad_input_is_one_line(case, folder, tmp_path, capsys):
    argv, expect = BAD_INPUT[case]
    scratch = tmp_path / "in"
    scratch.mkdir()
    if case == "corrupt image":
        (scratch / "x.png").write_bytes(b"\x89PNG truncated")
    argv = [a.format(folder=folder, tmp=scratch) for a in argv] + ["--out", str(tmp_path / "run")]
    try:
        code = train_cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(expect, err), err


def test_cli_error_from_a_subprocess_has_no_traceback(tmp_path):
    """The real command line: a corrupt image stops training with one line on stderr, exit status 2."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.png").write_bytes(b"\x89PNG truncated")
    proc = subprocess.run([sys.executable, "-m", "image_diffusion.train", "--preset", "cifar10-32", "--data",
                           str(tmp_path / "data"), "--out", str(tmp_path / "run"), *TINY_ARGS], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "x.png" in proc.stderr


# ---------------------------------------------------------------------- FID
def test_fid_falls_back_to_a_labelled_classifier_distance(folder, capsys, tmp_path, monkeypatch):
    """With no weights in the hub cache, get_metric tries the download; when it fails (here: a closed local
    port), one line says why and the stand-in is used, labelled as not comparable."""
    pytest.importorskip("pytorch_fid")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(fid, "FID_WEIGHTS_URL", "http://127.0.0.1:9/pt_inception-2015-12-05.pth")
    data = load_images(folder)
    metric = get_metric(data, classifier_steps=5)
    err = capsys.readouterr().err.strip().splitlines()
    assert not metric.comparable and "not comparable" in metric.name
    assert len(err) == 1 and "could not be downloaded from http://127.0.0.1:9/" in err[0] and "NOT comparable" in err[0]
    assert not os.listdir(tmp_path / "hub" / "checkpoints")  # a failed download leaves nothing behind
    real = torch.stack([data[i][0] for i in range(24)])
    ref = metric.fit(real)
    assert abs(metric.distance(ref, real)) < 1e-6 < metric.distance(ref, torch.rand_like(real) * 2 - 1)


def test_throughput_benchmark_measures_a_preset_through_the_trainer(capsys):
    """benchmarks/image_throughput.py (the GPU images/s and memory table of the README) runs the real trainer
    and prints one row per preset."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("image_throughput", os.path.join(ROOT, "benchmarks", "image_throughput.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--preset", "cifar10-32", "--steps", "1", "--warmup", "1", "--batch-size", "2",
                       "--device", "cpu"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[:5] == ["cifar10-32", "32", "1,198,947", "2", row[4]] and float(row[5]) > 0 and float(row[4]) > 0


def test_both_sampling_clis_give_the_same_images(tmp_path, monkeypatch):
    """One seeding rule: python -m image_diffusion.sample and python -m mnist.sample draw identical digits from
    the same checkpoint, labels, guidance and seed (both seed image i by utils.generators(seed, n)[i])."""
    from mnist import sample as mnist_sample
    from mnist.checkpoint import save_model
    from mnist.model import MNISTUNet
    from utils import make_schedule

    torch.manual_seed(0)
    ckpt = str(tmp_path / "model.pt")
    save_model(ckpt, MNISTUNet(T=8, channels=(8, 8, 16, 16)).eval(), make_schedule(8, clip_x0=1.0), {})
    grids = []
    real = sample_cli.grid_figure
    monkeypatch.setattr(sample_cli, "grid_figure", lambda x, *a, **k: grids.append(x.clone()) or real(x, *a, **k))
    assert sample_cli.main(["--checkpoint", ckpt, "--out", str(tmp_path / "core"), "--n", "10", "--w", "3",
                            "--seed", "7"]) == 0
    assert mnist_sample.main(["--checkpoint", ckpt, "--out", str(tmp_path / "p5.png"), "--digits", "0-9",
                              "--per-digit", "1", "--w", "3", "--seed", "7", "--quiet"]) == 0
    theirs = torch.load(tmp_path / "p5.pt", weights_only=True)
    assert theirs["y"].tolist() == list(range(10))  # image_diffusion.sample's labels: 0, 1, ..., 9
    assert torch.equal(grids[0], theirs["x"])
    assert not torch.equal(theirs["x"][0], theirs["x"][1])
