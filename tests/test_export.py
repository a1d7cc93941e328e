"""Exports (runio.export): a checkpoint as a folder of model.safetensors + config.json.

Every shipped generative checkpoint (problem 5's model and CS180's denoiser and time-conditioned runs), a two-pixel
run and an image run go through a folder and come back with bit-identical tensors (in the dtype stored: every
epoch's weights, the raw ones beside an EMA, the stored samples), the same schedule, config, losses and info, and
the same samples from the same seeds; what cannot be carried exactly, bad folders and bad places to write are one
line and exit 2; the two files are written as one set."""
import errno
import functools
import json
import os
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import runio.export
from cs180 import denoiser as dn
from cs180 import timecond as tc
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
NOT_EXPORTED = {"mnist-classifier": "the metric classifier, not a generative model"}
LOADERS = {"ddpm-mnist": (load_mnist_model, load_image_model), "image-diffusion": (load_image_model,),
           "ddpm-two-pixel": (load_two_pixel,)}
RUNS = {"denoiser.pt": dn.load_run, "timecond.pt": tc.load_run, "timecond_class.pt": tc.load_run,  # CS180's
        "pure_noise.pt": dn.load_run, "flow_timecond.pt": tc.load_run, "flow_timecond_class.pt": tc.load_run,
        "timecond_budget.pt": tc.load_run, "timecond_class_budget.pt": tc.load_run}  # and its fall 2025 (flow-matching) edition


@functools.lru_cache(maxsize=None)
def shipped_kinds() -> dict:
    """{file name: kind} of every checkpoint in mnist/reference/."""
    return {f: torch.load(os.path.join(REFERENCE, f), map_location="cpu", weights_only=True)["kind"]
            for f in sorted(os.listdir(REFERENCE)) if f.endswith(".pt")}


SHIPPED = sorted(f for f, kind in shipped_kinds().items() if kind in EXPORTABLE)
MODELS = sorted(f for f in SHIPPED if shipped_kinds()[f] in LOADERS)  # one model under "model"


def test_every_shipped_generative_model_is_exported():
    """What is not exported is known and says why: a new shipped model kind must be exported or listed here."""
    assert SHIPPED == ["denoiser.pt", "flow_timecond.pt", "flow_timecond_class.pt", "model.pt", "pure_noise.pt",
                       "timecond.pt", "timecond_budget.pt", "timecond_class.pt", "timecond_class_budget.pt"]
    assert sorted(MODELS + list(RUNS)) == SHIPPED
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


@pytest.mark.parametrize("name", MODELS)
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


# ---------------------------------------------------------------- CS180's runs: several epochs per file
@pytest.fixture(scope="module")
def run_exports(tmp_path_factory) -> dict:
    """Each shipped CS180 run exported once for the module, by the command (timecond.pt is 25 MB): {file: folder}."""
    root, before = tmp_path_factory.mktemp("runs"), md5s(REFERENCE)
    folders = {name: str(root / name[:-len(".pt")]) for name in RUNS}
    for name, folder in folders.items():
        assert main(["--checkpoint", os.path.join(REFERENCE, name), "--out", folder]) == 0
        assert sorted(os.listdir(folder)) == sorted([CONFIG, WEIGHTS])
    assert md5s(REFERENCE) == before
    return folders


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().flatten().view(torch.uint8)


def assert_same_tree(a, b, where="checkpoint"):
    """a and b hold the same: tensors of one dtype, shape and bytes; dicts with the same keys (an epoch stays an int);
    every other value equal and of the same type (a tuple may come back as a list)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and (a.dtype, a.shape) == (b.dtype, b.shape), where
        assert torch.equal(bits(a), bits(b)), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and {(type(k), k) for k in a} == {(type(k), k) for k in b}, where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def assert_same_models(a: dict, b: dict):
    """{epoch: model} twice: the same epochs in order, the same weights bit for bit."""
    assert list(a) == list(b)
    for epoch in a:
        assert_same_tree(a[epoch].state_dict(), b[epoch].state_dict(), f"epoch {epoch}")


@pytest.mark.parametrize("name", list(RUNS))
def test_a_shipped_run_comes_back_bit_for_bit(name, run_exports):
    """read_export gives the checkpoint dict torch.load gives: every epoch's fp16 weights, the raw ones, the uint8
    samples, the pixel statistics, the losses, config and info, with the epochs still ints."""
    stored = read_checkpoint(os.path.join(REFERENCE, name), EXPORTABLE)
    assert_same_tree(stored, read_export(run_exports[name], stored["kind"]))


def test_a_run_export_is_what_the_ecosystem_reads(run_exports):
    """model.safetensors, read by safetensors alone, holds every tensor under its key path in the dtype stored;
    config.json the losses and config, where each tensor was and nothing but plain JSON; a network built from
    config.json's "config" takes the last snapshot strictly."""
    stored = read_checkpoint(os.path.join(REFERENCE, "timecond.pt"), "ddpm-mnist-timecond")
    tensors = load_file(os.path.join(run_exports["timecond.pt"], WEIGHTS))
    with open(os.path.join(run_exports["timecond.pt"], CONFIG)) as f:
        config = json.load(f)
    epochs = lambda group: {f"{group}.{e}.{k}" for e, sd in stored[group].items() for k in sd}
    samples = {f"samples.{g}.{e}" for g in ("sampled", "raw", "matched") for e in stored["samples"][g]}
    assert set(tensors) == epochs("snapshots") | epochs("raw") | samples | {"pixel_stats.mean", "pixel_stats.var"}
    assert set(config["tensors"]) == set(tensors)
    assert config["tensors"]["raw.20.last.1.bias"] == ["raw", 20, "last.1.bias"]  # the epoch an int
    weights = [v for k, v in tensors.items() if k.startswith(("snapshots.", "raw."))]
    assert {v.dtype for v in weights} == {torch.float16, torch.int64}  # int64: BatchNorm's num_batches_tracked
    assert tensors["samples.sampled.20"].dtype == torch.uint8 and tensors["samples.sampled.20"].shape == (100, 28, 28)
    assert config["losses"] == stored["losses"] and len(config["losses"]) == 9380
    assert config["config"] == stored["config"]
    assert config["samples"] == {"n": 100, "seed": 0, "w": 0.0, "labels": None, "steps": 300,
                                 "seconds": stored["samples"]["seconds"]}
    cfg = config["config"]
    fresh = tc.TimeConditionalUNet(cfg["hidden"], cfg["T"], cfg["num_classes"])
    fresh.load_state_dict({k[len("snapshots.20."):]: v for k, v in tensors.items() if k.startswith("snapshots.20.")})


@pytest.mark.parametrize("name", ["timecond.pt", "timecond_class.pt"])
def test_a_timecond_run_loads_the_same(name, run_exports):
    """cs180.timecond.load_run reads the folder as it reads the file: the same config, schedule, losses, info and
    stored samples, the same models after every epoch (and raw), the same digits from the same seeds (the class run:
    the labels and guidance its samples were drawn with)."""
    a, b = tc.load_run(os.path.join(REFERENCE, name)), tc.load_run(run_exports[name])
    assert a.config == b.config and a.schedule.config() == b.schedule.config() and a.losses == b.losses
    assert_same_tree(a.info, b.info, "info")
    assert b.samples is not None and sorted(b.samples["sampled"]) == sorted(a.models) == sorted(b.models)
    assert_same_tree(a.samples, b.samples, "samples")
    assert_same_models(a.models, b.models)
    assert list(a.raw) in ([], [max(a.models)], sorted(a.models))  # no EMA: none; else the last or every snapshot
    assert_same_models(a.raw, b.raw)
    n, last = 4, max(a.models)
    y = a.samples["labels"][:n] if a.config.num_classes else None
    settings = SamplerSettings(steps=5, w=a.samples["w"])
    xa = sample(a.models[last], a.schedule, n, y, settings, generators(0, n), shape=(1, 28, 28))
    xb = sample(b.models[last], b.schedule, n, y, settings, generators(0, n), shape=(1, 28, 28))
    assert torch.isfinite(xa).all() and torch.equal(xa, xb)


@torch.no_grad()
def test_the_denoiser_run_loads_the_same(run_exports):
    """cs180.denoiser.load_run reads the folder as it reads the file, and both last models denoise the same noisy
    digits (noise from one seed) to the same images."""
    a, b = dn.load_run(os.path.join(REFERENCE, "denoiser.pt")), dn.load_run(run_exports["denoiser.pt"])
    steps_per_epoch = -(-60_000 // a.config.batch_size)  # the shipped run: all 60,000 training digits
    assert a.config == b.config and a.losses == b.losses and len(b.losses) == a.config.epochs * steps_per_epoch
    assert_same_tree(a.info, b.info, "info")
    assert_same_models(a.models, b.models)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    z = dn.add_noise(x, a.config.sigma, torch.Generator().manual_seed(1))
    last = max(a.models)
    assert torch.equal(a.models[last](z), b.models[last](z))


def test_every_shape_of_a_run_comes_back(tmp_path):
    """An empty dict, a None, a 0-dim bf16 tensor, a dict keyed by epochs in any order, tensors beside numbers in
    one dict: all come back as stored, and an export exported again is the same export."""
    ckpt = read_checkpoint(os.path.join(REFERENCE, "denoiser.pt"), "mnist-denoiser")
    ckpt["epochs"] = {5: ckpt["epochs"][5], 1: ckpt["epochs"][1]}
    ckpt["samples"] = {"n": 2, "labels": None, "matched": {}, "sampled": {7: torch.arange(8, dtype=torch.uint8)},
                       "scale": torch.tensor(0.5, dtype=torch.bfloat16), "steps": [3, 5]}
    torch.save(ckpt, tmp_path / "run.pt")
    export_checkpoint(tmp_path / "run.pt", tmp_path / "once")
    export_checkpoint(tmp_path / "once", tmp_path / "twice")
    for folder in ("once", "twice"):
        assert_same_tree(ckpt, read_export(tmp_path / folder, "mnist-denoiser"))
    assert list(read_export(tmp_path / "twice", "mnist-denoiser")["epochs"]) == [5, 1]


NOT_CARRIED = {  # how a run is changed: what its one line says
    "nan_loss": (lambda c: c["losses"].__setitem__(3, float("nan")), "field 'losses' cannot be exported (losses is a"),
    "numbers_keyed_to_numbers": (lambda c: c.update(psnr={1: 20.5}), "psnr is keyed by numbers and holds a float"),
    "a_float_key": (lambda c: c.update(psnr={0.5: torch.zeros(1)}), "psnr has the key 0.5, neither a str nor an int"),
    "a_bool_key": (lambda c: c.update(psnr={True: torch.zeros(1)}), "psnr has the key True"),
    "tensors_in_a_list": (lambda c: c.update(grid=[torch.zeros(1)]), "grid is a list holding what JSON cannot carry"),
    "one_name_twice": (lambda c: c.update({"epochs.1": {"first.0.0.weight": torch.zeros(1)}}),
                       "would be named 'epochs.1.first.0.0.weight'"),
    "a_header_name": (lambda c: c.update(tensors={}), "field 'tensors' cannot be exported (a name of the export's"),
}


@pytest.mark.parametrize("change", list(NOT_CARRIED))
def test_what_cannot_be_carried_exactly_is_refused(change, tmp_path, capsys):
    ckpt = read_checkpoint(os.path.join(REFERENCE, "denoiser.pt"), "mnist-denoiser")
    edit, needle = NOT_CARRIED[change]
    edit(ckpt)
    torch.save(ckpt, tmp_path / "run.pt")
    assert_refused(main, ["--checkpoint", str(tmp_path / "run.pt"), "--out", str(tmp_path / "x")], capsys, tmp_path,
                   "cannot be exported", needle)


def tensor_missing(folder):
    state = load_file(os.path.join(folder, WEIGHTS))
    del state["epochs.5.last.1.bias"]
    save_file(state, os.path.join(folder, WEIGHTS), metadata={"format": "pt", "kind": "mnist-denoiser"})


def paths_not_a_map(folder):
    edit_config(folder, tensors=["epochs.1.last.1.bias"])


def path_onto_a_value(folder):
    with open(os.path.join(folder, CONFIG)) as f:
        paths = json.load(f)["tensors"]
    edit_config(folder, tensors={**paths, "epochs.5.last.1.bias": ["config", "hidden"]})


BROKEN_RUN = {tensor_missing: "lacks 'epochs.5.last.1.bias', which its config.json names",
              paths_not_a_map: "is not a map of tensor names to key paths",
              path_onto_a_value: "disagree about 'epochs.5.last.1.bias'"}


@pytest.mark.parametrize("break_it", list(BROKEN_RUN), ids=lambda f: f.__name__)
def test_a_broken_run_folder_is_one_line(break_it, run_exports, tmp_path):
    folder = shutil.copytree(run_exports["denoiser.pt"], tmp_path / "run")
    break_it(folder)
    with pytest.raises(CheckpointError) as e:
        dn.load_run(folder)
    assert BROKEN_RUN[break_it] in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_run_folder_of_another_kind_is_refused(run_exports):
    for load, folder in ((tc.load_run, run_exports["denoiser.pt"]), (dn.load_run, run_exports["timecond.pt"]),
                         (load_mnist_model, run_exports["timecond_class.pt"])):
        with pytest.raises(CheckpointError, match="this command needs a") as e:
            load(folder)
        assert "\n" not in str(e.value)


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


def test_a_foreign_kind_is_refused(tmp_path, capsys):
    assert_refused(main, ["--checkpoint", os.path.join(REFERENCE, "classifier.pt"), "--out", str(tmp_path / "x")],
                   capsys, tmp_path, "the metric classifier", "this command needs a 'ddpm-two-pixel' or 'ddpm-mnist' "
                   "or 'image-diffusion' or 'ddpm-mnist-timecond' or 'mnist-denoiser' file")


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
