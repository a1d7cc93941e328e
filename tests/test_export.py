"""Exports (runio.export): a model checkpoint as a folder of model.safetensors + config.json.

Every shipped model, a two-pixel run and an image run go through a folder and come back with bit-identical
weights (in the dtype stored), the same schedule, config and info, and the same samples from the same seeds;
bad folders and bad places to write are one line and exit 2; the two files are written as one set."""
import errno
import functools
import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import runio.export
from helpers import REPO, assert_refused, cli, md5s
from image_diffusion.presets import Config
from image_diffusion.trainer import load_model as load_image_model, save_model as save_image_model
from image_diffusion.unet import UNet, from_mnist_config
from mnist import sample as mnist_sample
from mnist.checkpoint import load_model as load_mnist_model
from runio.checkpoints import file_sha256, read_checkpoint
from runio.errors import CheckpointError
from runio.export import CONFIG, EXPORTABLE, FORMAT, FORMAT_VERSION, WEIGHTS, export_checkpoint, main, read_export
from runio.files import file_mode
from two_pixel.trainer import TrainConfig, load_checkpoint as load_two_pixel, save_checkpoint, train
from utils import SamplerSettings, generators, make_schedule, sample

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE = os.path.join(REPO, "mnist", "reference")
NOT_EXPORTED = {"ddpm-mnist-timecond": "CS180 B.2: several epochs per file", "mnist-denoiser": "CS180 B.1: several "
                "epochs per file", "mnist-classifier": "the metric classifier, not a generative model"}
LOADERS = {"ddpm-mnist": (load_mnist_model, load_image_model), "image-diffusion": (load_image_model,),
           "ddpm-two-pixel": (load_two_pixel,)}


@functools.lru_cache(maxsize=None)
def shipped_kinds() -> dict:
    """{file name: kind} of every checkpoint in mnist/reference/."""
    return {f: torch.load(os.path.join(REFERENCE, f), map_location="cpu", weights_only=True)["kind"]
            for f in sorted(os.listdir(REFERENCE)) if f.endswith(".pt")}


SHIPPED = sorted(f for f, kind in shipped_kinds().items() if kind in EXPORTABLE)


def test_every_shipped_generative_model_is_exported():
    """What is not exported is known and says why: a new shipped model kind must be exported or listed here."""
    assert SHIPPED == ["model.pt"]
    assert {kind for f, kind in shipped_kinds().items() if f not in SHIPPED} <= set(NOT_EXPORTED)


# ---------------------------------------------------------------- round trips
def assert_same(a, b, n: int, shape, y=None, w: float = 0.0, steps: int = 3):
    """Two Loaded models are the same: weights bit for bit (and dtype), schedule, config, info, and samples drawn
    with the same per-image seeds."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    assert a.schedule.config() == b.schedule.config()
    assert a.config == b.config and a.info == b.info
    settings = SamplerSettings(steps=steps, w=w)
    xa = sample(a.model, a.schedule, n, y, settings, generators(0, n), shape=shape)
    xb = sample(b.model, b.schedule, n, y, settings, generators(0, n), shape=shape)
    assert torch.isfinite(xa).all() and torch.equal(xa, xb)


def assert_stored_bit_for_bit(checkpoint, folder):
    """model.safetensors, read by safetensors alone, holds the checkpoint's tensors: same names, dtypes, bytes."""
    stored, exported = read_checkpoint(checkpoint, EXPORTABLE)["model"], load_file(os.path.join(folder, WEIGHTS))
    assert stored.keys() == exported.keys()
    for k, v in stored.items():
        assert exported[k].dtype == v.dtype and torch.equal(exported[k], v), k


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_round_trips(name, tmp_path, capsys):
    path, out = os.path.join(REFERENCE, name), str(tmp_path / "export")
    before = md5s(REFERENCE)
    code, err = cli(main, ["--checkpoint", path, "--out", out], capsys)
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted([CONFIG, WEIGHTS]) and md5s(REFERENCE) == before
    assert_stored_bit_for_bit(path, out)
    kind = read_checkpoint(path, EXPORTABLE)["kind"]
    for load in LOADERS[kind]:  # problem 5's loader and the image core's both read it
        assert_same(load(path), load(out), 4, (1, 28, 28), y=torch.tensor([0, 3, 7, 10]), w=2.0)


def test_the_export_is_what_the_ecosystem_reads(tmp_path):
    """config.json: the header, then the checkpoint's fields; model.safetensors: small textual metadata, the umask's
    mode. The two files alone, read with json and safetensors, rebuild the network and its schedule."""
    path, out = os.path.join(REFERENCE, "model.pt"), str(tmp_path / "export")
    export_checkpoint(path, out)
    with open(os.path.join(out, CONFIG)) as f:
        config = json.load(f)
    ckpt = read_checkpoint(path, "ddpm-mnist")
    assert list(config)[:4] == ["format", "format_version", "kind", "exported_from"]
    assert (config["format"], config["format_version"], config["kind"]) == (FORMAT, FORMAT_VERSION, "ddpm-mnist")
    assert config["exported_from"] == {"file": "model.pt", "sha256": file_sha256(path)}
    assert {k: v for k, v in config.items() if k not in runio.export.HEADER} == \
        {k: v for k, v in ckpt.items() if k not in ("kind", "model")}
    with safe_open(os.path.join(out, WEIGHTS), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "kind": "ddpm-mnist"}
    for f in (CONFIG, WEIGHTS):
        assert os.stat(os.path.join(out, f)).st_mode & 0o777 == file_mode()
    fresh = from_mnist_config(config["model_config"])  # config.json alone rebuilds the network and its schedule
    fresh.load_state_dict(load_file(os.path.join(out, WEIGHTS)))  # strict: every name and shape fits
    assert make_schedule(**config["schedule"]).config() == load_mnist_model(path).schedule.config()


def test_half_precision_stays_half(tmp_path):
    """Weights a checkpoint stores in fp16 are exported in fp16 and read back bit for bit."""
    ckpt = read_checkpoint(os.path.join(REFERENCE, "model.pt"), "ddpm-mnist")
    ckpt["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    half = tmp_path / "half.pt"
    torch.save(ckpt, half)
    export_checkpoint(half, tmp_path / "export")
    assert_stored_bit_for_bit(half, tmp_path / "export")
    assert {v.dtype for v in read_export(tmp_path / "export", "ddpm-mnist")["model"].values()} == {torch.float16}
    assert_same(load_mnist_model(half), load_mnist_model(tmp_path / "export"), 2, (1, 28, 28), y=torch.tensor([1, 2]))


@pytest.fixture(scope="module")
def two_pixel_checkpoint(tmp_path_factory):
    cfg = TrainConfig(T=5, steps=5, batch_size=16, n_train=50, device="cpu")
    path = tmp_path_factory.mktemp("two_pixel") / "model.pt"
    save_checkpoint(path, train(cfg, progress=False).model, cfg, extra={"train_seconds": 0.5})
    return str(path)


def test_two_pixel_model_round_trips(two_pixel_checkpoint, tmp_path):
    export_checkpoint(two_pixel_checkpoint, tmp_path / "export")
    assert_stored_bit_for_bit(two_pixel_checkpoint, tmp_path / "export")
    a, b = load_two_pixel(two_pixel_checkpoint), load_two_pixel(tmp_path / "export")
    assert isinstance(b.config, TrainConfig)
    assert_same(a, b, 64, (2,), y=torch.arange(64) % 2, w=1.0)  # guided, DDIM
    assert_same(a, b, 64, (2,), steps=None)  # unconditional, the full chain


def test_image_model_round_trips(tmp_path):
    """An image run's model.pt (kind image-diffusion): its Config comes back as a Config."""
    cfg = Config(data="cifar10", resolution=8, base=8, mults=(1, 2), attn_resolutions=(4,), num_classes=2, T=20)
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_image_model(path, UNet(cfg.unet()).eval(), cfg, step=3, seconds=1.5, data="cifar10", world_size=1)
    export_checkpoint(path, tmp_path / "export")
    assert_stored_bit_for_bit(path, tmp_path / "export")
    a, b = load_image_model(path), load_image_model(tmp_path / "export")
    assert isinstance(b.config, Config)
    assert_same(a, b, 2, (3, 8, 8), y=torch.tensor([0, 1]), w=1.0)


def test_a_sampling_command_reads_the_folder(tmp_path, capsys):
    """python -m mnist.sample --checkpoint FOLDER draws the digits it draws from the checkpoint."""
    export_checkpoint(os.path.join(REFERENCE, "model.pt"), tmp_path / "export")
    drawn = {}
    for name, ckpt in (("pt", os.path.join(REFERENCE, "model.pt")), ("folder", str(tmp_path / "export"))):
        out = str(tmp_path / f"{name}.png")
        code, err = cli(mnist_sample.main, ["--checkpoint", ckpt, "--digits", "3,8", "--per-digit", "1", "--steps",
                                            "3", "--quiet", "--device", "cpu", "--out", out], capsys)
        assert code == 0, err
        drawn[name] = torch.load(str(tmp_path / f"{name}.pt"), weights_only=True)["x"]
    assert torch.equal(drawn["pt"], drawn["folder"])


# ---------------------------------------------------------------- bad input: one line, exit 2
def an_export(tmp_path, name="good") -> str:
    out = str(tmp_path / name)
    export_checkpoint(os.path.join(REFERENCE, "model.pt"), out)
    return out


def edit_config(folder, **changes):
    path = os.path.join(folder, CONFIG)
    with open(path) as f:
        config = json.load(f)
    config.update(changes)
    with open(path, "w") as f:
        json.dump(config, f)


def no_config(folder):
    os.remove(os.path.join(folder, CONFIG))


def unknown_version(folder):
    edit_config(folder, format_version=2)


def another_format(folder):
    with open(os.path.join(folder, CONFIG), "w") as f:
        json.dump({"_class_name": "UNet2DModel", "sample_size": 28}, f)  # a diffusers model's config


def not_json(folder):
    with open(os.path.join(folder, CONFIG), "w") as f:
        f.write('{"format": "ddpm-reference-export",')


def no_weights(folder):
    os.remove(os.path.join(folder, WEIGHTS))


def truncated_weights(folder):
    path = os.path.join(folder, WEIGHTS)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def weights_of_another_export(folder):
    save_file({"w": torch.zeros(2)}, os.path.join(folder, WEIGHTS), metadata={"format": "pt", "kind": "ddpm-two-pixel"})


def weights_that_do_not_fit(folder):
    state = load_file(os.path.join(folder, WEIGHTS))
    state.pop(sorted(state)[0])
    save_file(state, os.path.join(folder, WEIGHTS), metadata={"format": "pt", "kind": "ddpm-mnist"})


BROKEN = {  # how a folder is broken: what its one line says
    no_config: "folder without config.json", unknown_version: "format_version 2, which this package does not know",
    another_format: "not the config of an export", not_json: "not readable JSON", no_weights: "no model.safetensors",
    truncated_weights: "not a readable safetensors file", weights_of_another_export: "come from different exports",
    weights_that_do_not_fit: "the weights do not match the model",
}


@pytest.mark.parametrize("load", [load_mnist_model, load_image_model], ids=["mnist", "image_diffusion"])
@pytest.mark.parametrize("break_it", list(BROKEN), ids=[f.__name__ for f in BROKEN])
def test_a_broken_folder_is_one_line(break_it, load, tmp_path):
    folder = an_export(tmp_path)
    break_it(folder)
    with pytest.raises(CheckpointError) as e:
        load(folder)
    assert BROKEN[break_it] in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("break_it", [no_config, unknown_version, another_format], ids=lambda f: f.__name__)
def test_the_command_refuses_a_broken_folder(break_it, tmp_path, capsys):
    folder = an_export(tmp_path)
    break_it(folder)
    assert_refused(main, ["--checkpoint", folder, "--out", str(tmp_path / "again")], capsys, tmp_path,
                   BROKEN[break_it])


def test_a_folder_of_a_run_points_to_its_checkpoint(two_pixel_checkpoint, capsys, tmp_path):
    folder = os.path.dirname(two_pixel_checkpoint)
    assert_refused(main, ["--checkpoint", folder, "--out", str(tmp_path / "x")], capsys, tmp_path,
                   "without config.json", f"give {two_pixel_checkpoint}")


@pytest.mark.parametrize("name", ["classifier.pt", "timecond.pt", "denoiser.pt"])
def test_a_foreign_kind_is_refused(name, tmp_path, capsys):
    assert_refused(main, ["--checkpoint", os.path.join(REFERENCE, name), "--out", str(tmp_path / "x")], capsys,
                   tmp_path, "this command needs a 'ddpm-two-pixel' or 'ddpm-mnist' or 'image-diffusion' file")


def test_a_loader_refuses_an_export_of_another_kind(two_pixel_checkpoint, tmp_path):
    export_checkpoint(two_pixel_checkpoint, tmp_path / "two_pixel")
    mnist = an_export(tmp_path)
    for load, folder in ((load_mnist_model, tmp_path / "two_pixel"), (load_two_pixel, mnist)):
        with pytest.raises(CheckpointError, match="this command needs a") as e:
            load(folder)
        assert "\n" not in str(e.value)


def foreign_model(folder):
    """A folder with the export's file names that another tool wrote."""
    os.makedirs(folder)
    with open(os.path.join(folder, CONFIG), "w") as f:
        json.dump({"_class_name": "UNet2DModel"}, f)
    save_file({"w": torch.zeros(2)}, os.path.join(folder, WEIGHTS))


@pytest.mark.parametrize("place,flags,needle", [
    ("a_file", [], "is a file, not a folder"),
    ("a_file", ["--overwrite"], "is a file, not a folder"),
    ("an_export", [], "already holds an export; pass --overwrite"),
    ("a_run", ["--overwrite"], "holds files that are not part of an export (model.pt)"),
    ("a_foreign_model", ["--overwrite"], "not an export of this package, which is never replaced"),
])
def test_out_is_refused(place, flags, needle, tmp_path, capsys):
    out = str(tmp_path / "out")
    if place == "a_file":
        with open(out, "w") as f:
            f.write("notes\n")
    elif place == "an_export":
        an_export(tmp_path, "out")
    elif place == "a_run":
        os.makedirs(out)
        torch.save({"kind": "ddpm-mnist"}, os.path.join(out, "model.pt"))
    else:
        foreign_model(out)
    assert_refused(main, ["--checkpoint", os.path.join(REFERENCE, "model.pt"), "--out", out, *flags], capsys,
                   tmp_path, needle)


def test_the_shipped_folder_is_never_written(tmp_path, capsys):
    assert_refused(main, ["--checkpoint", os.path.join(REFERENCE, "model.pt"), "--out", REFERENCE, "--overwrite"],
                   capsys, REFERENCE, "shipped reference files")


def test_overwrite_replaces_an_export(two_pixel_checkpoint, tmp_path, capsys):
    out = an_export(tmp_path, "out")
    code, err = cli(main, ["--checkpoint", two_pixel_checkpoint, "--out", out, "--overwrite"], capsys)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no lock, stage or old copy left beside it
    assert load_two_pixel(out).config == load_two_pixel(two_pixel_checkpoint).config


# ---------------------------------------------------------------- one set
def fail_second_file(monkeypatch):
    """config.json, written after model.safetensors, stops half-way on a full disk."""
    def full(path, config):
        with open(path, "w") as f:
            f.write("{")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    monkeypatch.setattr(runio.export, "save_config", full)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "over an export"])
def test_the_two_files_are_one_set(existing, monkeypatch, tmp_path, capsys):
    """A write that fails at the second file leaves no half export: a new --out is not made, an old export stays
    whole (and loads), nothing is left beside it."""
    out = an_export(tmp_path, "out") if existing else str(tmp_path / "out")
    fail_second_file(monkeypatch)
    assert_refused(main, ["--checkpoint", os.path.join(REFERENCE, "model.pt"), "--out", out, "--overwrite"], capsys,
                   tmp_path, "no space left", "as it was")
    assert sorted(os.listdir(tmp_path)) == (["out"] if existing else [])
    if existing:
        load_mnist_model(out)
