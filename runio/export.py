"""Exports: a trained model in the ecosystem's format, a folder of safetensors weights and a JSON config.

    python -m runio.export --checkpoint mnist/reference/model.pt --out exports/mnist
    loaded = mnist.checkpoint.load_model("exports/mnist")    # the same weights, schedule, config and info
    python -m runio.export --checkpoint mnist/reference/timecond.pt --out exports/timecond
    run = cs180.timecond.load_run("exports/timecond")       # every epoch's weights, the losses, the samples

An export folder holds two files, written and replaced as one set (runio.runs.staged_run):

    model.safetensors  every tensor of the checkpoint, bit for bit, in the dtype it stores (fp16 stays fp16,
                       uint8 stays uint8): the "model" state dict (the EMA weights) under its own names, and any
                       other tensor under its key path joined by dots (a CS180 run's "snapshots.20.first.0.0.weight",
                       "raw.20.<param>", "samples.sampled.5", "pixel_stats.mean"); metadata {"format": "pt",
                       "kind": KIND}, nothing more
    config.json        {"format": "ddpm-reference-export", "format_version": 1, "kind": KIND,
                        "exported_from": {"file": ..., "sha256": ...}, then every other field of the
                        checkpoint as it stores it, then "tensors": {name: key path} for the tensors outside
                        "model" (absent when there are none)}: what rebuilds the network and its schedule (a
                        two-pixel run's "config"; problem 5's "model_config", "schedule"; an image run's "config",
                        "unet", "schedule"; a CS180 run's "config") and the run's own record (steps, seconds, data
                        source; a CS180 run's losses per step and what its stored samples were drawn with)

A key path is the list of keys from the checkpoint down to a tensor, as JSON writes them: ["snapshots", 20,
"first.0.0.weight"] (an epoch is a number, a parameter's name a string), so a dict keyed by epochs comes back
keyed by the same ints. A dict whose every value is a tensor lives in model.safetensors alone; the other
values of a dict that also holds tensors (a run's "samples": n, seed, w, steps) stay in config.json.

Each family's loader (two_pixel.trainer.load_checkpoint, mnist.checkpoint.load_model,
image_diffusion.trainer.load_model, and mnist.checkpoint.load_epoch_run for CS180's cs180.denoiser.load_run and
cs180.timecond.load_run) reads through `read_model`, which turns a checkpoint file and an export folder into the
same dict, so a folder loads as its checkpoint does: same models, same schedule, same config and info, same
samples from the same seed.

An export re-encodes a checkpoint; it does not save a model again, so writing one needs no family's code,
and the command lives here, below every family. What the two files hold is the checkpoint's, field for
field (tuples come back as lists, which the loaders read as they read a checkpoint's); what neither can
carry exactly (nan, a tensor in a list, a number-keyed dict of other things than tensors, two key paths
joined to one name) is refused, never approximated.
"""
from __future__ import annotations

import json
import math
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoints import check_kind, file_sha256, read_checkpoint
from .cli import Parser, command_error, run_command
from .errors import CheckpointError, OutputError, first_line
from .files import file_mode, refuse_reference
from .runs import staged_run

FORMAT = "ddpm-reference-export"
FORMAT_VERSION = 1  # raise it when a reader of version 1 would misread the folder
CONFIG, WEIGHTS = "config.json", "model.safetensors"
FILES = (WEIGHTS, CONFIG)  # one export: written, and replaced, as a set
TENSORS = "tensors"  # config.json's {safetensors name: key path} of the tensors outside "model"
# config.json's own fields; the rest is the checkpoint's
HEADER = ("format", "format_version", "kind", "exported_from", TENSORS)
# the kinds that hold one model under "model" and a config that rebuilds it and its schedule, and CS180's runs:
# the weights after chosen epochs ({epoch: state_dict} under "snapshots" or "epochs", "raw"), losses and samples
EXPORTABLE = ("ddpm-two-pixel", "ddpm-mnist", "image-diffusion", "ddpm-mnist-timecond", "mnist-denoiser")
TRAIN_HINT = ("python train.py --T 50, python -m mnist.train, python -m image_diffusion.train, "
              "python -m cs180.timecond or python -m cs180.denoiser")


# ================================================================ reading
def read_model(path, kind, train_hint: str = "python train.py --T 50") -> dict:
    """What every family's loader reads: a checkpoint file (runio.checkpoints.read_checkpoint) or an export
    folder (read_export), as the same dict {"kind", "model": state_dict, ...the checkpoint's other fields} (a
    CS180 run has no "model": {epoch: state_dict} under "snapshots" or "epochs", and "raw"). kind: a str, or a
    tuple of the kinds accepted. CheckpointError (one line) for anything wrong."""
    if os.path.isdir(os.fspath(path)):
        return read_export(path, kind)
    return read_checkpoint(path, kind, train_hint)


def read_export(folder, kind) -> dict:
    """An export folder as the checkpoint dict it was written from: {"kind", ...the fields of config.json but its
    HEADER, each tensor of model.safetensors put back at its key path, "model": the other tensors (a state dict,
    in the dtype exported; absent for a run without one)}. CheckpointError (one line) for a folder without
    config.json, JSON that cannot be read, another format or an unknown format_version, a kind other than
    `kind`, or a model.safetensors that is missing, unreadable or from another export."""
    folder = os.fspath(folder)
    config = _read_config(folder)
    check_kind(folder, config["kind"], kind)
    paths = _tensor_paths(config, os.path.join(folder, CONFIG))
    path = os.path.join(folder, WEIGHTS)
    if not os.path.isfile(path):
        raise CheckpointError(f"{folder} has a {CONFIG} but no {WEIGHTS}; export the checkpoint again")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            state = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:  # SafetensorError: truncated, corrupt or not safetensors at all; OSError
        raise CheckpointError(f"{path} is not a readable safetensors file ({first_line(e)}); it may be truncated: "
                              "export the checkpoint again") from None
    again = "the two files come from different exports; export the checkpoint again"
    if meta.get("kind", config["kind"]) != config["kind"]:
        raise CheckpointError(f"{path} holds a {meta['kind']!r} model but its {CONFIG} a {config['kind']!r} one: "
                              + again)
    missing = [name for name in paths if name not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {missing[0]!r}, which its {CONFIG} names: {again}")
    fields = {k: v for k, v in config.items() if k not in HEADER}
    for name, keys in paths.items():
        _put(fields, keys, state.pop(name), f"{path} and its {CONFIG} disagree about {name!r}: {again}")
    return {"kind": config["kind"], **fields, **({"model": state} if state or not paths else {})}


def _tensor_paths(config: dict, path: str) -> dict:
    """config.json's TENSORS: {safetensors name: key path}, each path a non-empty list of str and int keys
    starting at a field of the checkpoint; {} where there is none. CheckpointError (one line) otherwise."""
    paths = config.get(TENSORS, {})
    key = lambda k: type(k) is str or type(k) is int  # type: a bool is an int in Python, not in the format
    if not (isinstance(paths, dict) and all(
            isinstance(keys, list) and keys and all(map(key, keys)) and isinstance(keys[0], str)
            and keys[0] not in ("kind", "model", *HEADER) for keys in paths.values())):
        raise CheckpointError(f"{path}: its {TENSORS!r} is not a map of tensor names to key paths; export the "
                              "checkpoint again")
    return paths


def _put(fields: dict, keys: list, tensor, error: str) -> None:
    """fields[keys[0]][keys[1]]...[keys[-1]] = tensor, making the dicts on the way; CheckpointError(error) where
    the way holds something else than a dict, or the place a value already."""
    node = fields
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise CheckpointError(error)
    if keys[-1] in node:
        raise CheckpointError(error)
    node[keys[-1]] = tensor


def _read_config(folder: str) -> dict:
    """folder/config.json, checked to be an export of this package in a format_version it reads."""
    path = os.path.join(folder, CONFIG)
    if not os.path.isfile(path):
        hint = (f"it holds a checkpoint: give {os.path.join(folder, 'model.pt')}"
                if os.path.isfile(os.path.join(folder, "model.pt")) else
                f"write one with python -m runio.export --checkpoint FILE --out {folder}")
        raise CheckpointError(f"{folder} is a folder without {CONFIG}, so not an export of this package; {hint}")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{path} is not readable JSON ({first_line(e)}); export the checkpoint again") from None
    found = config.get("format") if isinstance(config, dict) else None
    if found != FORMAT:
        raise CheckpointError(f"{path} is not the config of an export of this package (format {found!r}, not "
                              f"{FORMAT!r}); it cannot be loaded here")
    version = config.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:  # type: True == 1 in Python, not in the format
        raise CheckpointError(f"{path} has format_version {version!r}, which this package does not know (it reads "
                              f"version {FORMAT_VERSION}); export the checkpoint again with this package, or update it")
    if not isinstance(config.get("kind"), str):
        raise CheckpointError(f"{path} names no kind of model; export the checkpoint again")
    return config


# ================================================================ writing
def write_export(out, ckpt: dict, overwrite: bool = False, exported_from: dict | None = None) -> dict:
    """Write checkpoint dict `ckpt` (as read_model returns it) as the export folder `out`: its tensors to
    model.safetensors (as stored: fp16 stays fp16; split_tensors names them), every other field to config.json
    after the HEADER, both as one set (runio.runs.staged_run: on any error `out` is as it was). Returns the config
    written. CheckpointError for no tensors, a "model" that is not a state dict, or a field that cannot be carried
    exactly; OutputError, before anything is written, for an `out` that may not take an export (check_out)."""
    state = ckpt.get("model")
    if "model" in ckpt and not (isinstance(state, dict) and state and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise CheckpointError(f"the {ckpt.get('kind')!r} checkpoint holds no state dict under 'model', so it has no "
                              "weights to export")
    tensors, paths, fields = split_tensors(ckpt)
    if not tensors:
        raise CheckpointError(f"the {ckpt.get('kind')!r} checkpoint holds no tensors, so it has no weights to export")
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": ckpt["kind"],
              **({"exported_from": exported_from} if exported_from else {}), **fields,
              **({TENSORS: paths} if paths else {})}
    check_out(out, overwrite)
    with staged_run(out, FILES, overwrite) as stage:
        save_weights(os.path.join(stage, WEIGHTS), tensors, ckpt["kind"])
        save_config(os.path.join(stage, CONFIG), config)
    return config


class _Refused(Exception):
    """Why a value cannot be carried exactly (split_tensors names its field)."""


_GONE = object()  # what config.json keeps of a tensor, or of a dict holding only tensors: nothing


def split_tensors(ckpt: dict) -> tuple[dict, dict, dict]:
    """A checkpoint dict as (tensors {safetensors name: tensor}, paths {name: key path} of the tensors outside
    "model", fields: the rest, for config.json). "model"'s tensors keep their names; any other tensor is named
    by its key path joined by dots ("snapshots.20.first.0.0.weight"). CheckpointError (one line) for a field
    named as the HEADER, a value neither can carry exactly (_take_tensors), or two tensors of one name."""
    tensors, paths, fields = {}, {}, {}
    for field, value in ckpt.items():
        if field == "kind":
            continue
        try:
            if field in HEADER:
                raise _Refused("a name of the export's header")
            found = []
            if field == "model":
                found = [((name,), v) for name, v in value.items()]
            else:
                left = _take_tensors(value, (field,), found)
                if left is not _GONE:
                    fields[field] = left
            for keys, tensor in found:
                name = ".".join(map(str, keys))
                if name in tensors:
                    raise _Refused(f"two of its tensors would be named {name!r} in {WEIGHTS}")
                tensors[name] = tensor
                if field != "model":
                    paths[name] = list(keys)
        except _Refused as e:
            raise CheckpointError(f"the checkpoint's field {field!r} cannot be exported ({e})") from None
    return tensors, paths, fields


def _take_tensors(value, keys: tuple, found: list):
    """value without its tensors, which are appended to `found` as (key path, tensor): a tensor gives _GONE; a
    non-empty dict keeps its other entries, or gives _GONE when it held only tensors; a value JSON carries exactly
    (_plain) is kept. _Refused for anything else: a key neither str nor int, a number-keyed dict of other things
    than tensors (JSON keys are strings), a tensor in a list, nan, an object."""
    where = ".".join(map(str, keys))
    if isinstance(value, torch.Tensor):
        found.append((keys, value))
        return _GONE
    if isinstance(value, dict) and value:
        left = {}
        for k, v in value.items():
            if not (type(k) is str or type(k) is int):
                raise _Refused(f"{where} has the key {k!r}, neither a str nor an int")
            rest = _take_tensors(v, keys + (k,), found)
            if rest is not _GONE and type(k) is int:
                raise _Refused(f"{where} is keyed by numbers and holds a {type(v).__name__}, not only tensors")
            if rest is not _GONE:
                left[k] = rest
        return left or _GONE
    if _plain(value):
        return value
    raise _Refused(f"{where} is a {type(value).__name__} holding what JSON cannot carry exactly")


def save_weights(path: str, tensors: dict, kind: str) -> None:
    """tensors (name -> tensor) as safetensors, each tensor its own contiguous copy (safetensors refuses shared
    storage), dtypes as given; metadata small and textual. The umask's mode, as every file of the package
    (safetensors makes it 0o600)."""
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, path,
              metadata={"format": "pt", "kind": kind})
    os.chmod(path, file_mode())


def save_config(path: str, config: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, allow_nan=False)
        f.write("\n")


def _plain(v) -> bool:
    """Whether v comes back from JSON equal (tuples as lists): None, bools, ints, finite floats, strings, and
    lists and str-keyed dicts of them."""
    if v is None or isinstance(v, (bool, int, str)):
        return True
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def check_out(out, overwrite: bool = False) -> None:
    """The output guard of an export: `out` may be a new or empty folder or, with overwrite, an export this
    package wrote; OutputError (one line) for a shipped reference, a file, a folder holding other files, or
    files of the same names that are not an export of this package (another tool's model is never replaced)."""
    shown = os.fspath(out)
    refuse_reference(shown)
    if os.path.exists(shown) and not os.path.isdir(shown):
        raise OutputError(f"--out {shown} is a file, not a folder (an export is a folder); choose another --out")
    present = sorted(os.listdir(shown)) if os.path.isdir(shown) else []
    foreign = [f for f in present if f not in FILES]
    if foreign:
        raise OutputError(f"--out {shown} holds files that are not part of an export ({', '.join(foreign[:3])}); "
                          "choose a new or empty folder")
    if present and not _is_export(shown):
        raise OutputError(f"--out {shown} holds {' and '.join(present)} but not an export of this package, which "
                          "is never replaced; choose another --out")
    if present and not overwrite:
        raise OutputError(f"--out {shown} already holds an export; pass --overwrite to replace it, or choose "
                          "another --out")


def _is_export(folder: str) -> bool:
    try:
        with open(os.path.join(folder, CONFIG), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT


def export_checkpoint(checkpoint, out, overwrite: bool = False) -> dict:
    """Export the checkpoint `checkpoint` (a file of an EXPORTABLE kind, or an export folder) into folder `out`;
    returns the config written. exported_from names the file read and its sha256 (a folder's: its weights)."""
    ckpt = read_model(checkpoint, EXPORTABLE, TRAIN_HINT)
    source = os.path.join(checkpoint, WEIGHTS) if os.path.isdir(checkpoint) else os.fspath(checkpoint)
    return write_export(out, ckpt, overwrite, {"file": os.path.basename(os.path.abspath(checkpoint)),
                                               "sha256": file_sha256(source)})


# ================================================================ the command
def build_parser() -> Parser:
    p = Parser(prog="python -m runio.export", description=__doc__)
    p.add_argument("--checkpoint", required=True,
                   help=f"a checkpoint ({', '.join(EXPORTABLE)}), e.g. mnist/reference/model.pt")
    p.add_argument("--out", required=True, help=f"the export folder: {WEIGHTS} and {CONFIG}")
    p.add_argument("--overwrite", action="store_true", help="replace an export already in --out (never other files)")
    return p


def main(argv=None) -> int:
    """No --threads: the command computes nothing, it copies tensors."""
    args = build_parser().parse_args(argv)
    prog = "runio.export"
    try:
        check_out(args.out, args.overwrite)  # before reading anything
        config = export_checkpoint(args.checkpoint, args.out, args.overwrite)
    except Exception as e:  # one line for what a user can fix (runio.cli.command_error); a traceback for a bug
        return command_error(prog, e, lambda: "a model this large; export it on a machine with more memory")
    print(f"exported the {config['kind']} checkpoint {args.checkpoint} to {args.out} ({WEIGHTS}, {CONFIG})")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "runio.export", "nothing was written: --out is as it was; run it again"))
