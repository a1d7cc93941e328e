"""Exports: a trained model in the ecosystem's format, a folder of safetensors weights and a JSON config.

    python -m runio.export --checkpoint mnist/reference/model.pt --out exports/mnist
    loaded = mnist.checkpoint.load_model("exports/mnist")    # the same weights, schedule, config and info

An export folder holds two files, written and replaced as one set (runio.runs.staged_run):

    model.safetensors  the checkpoint's "model" state dict (the EMA weights), bit for bit, in the dtype the
                       checkpoint stores; metadata {"format": "pt", "kind": KIND}, nothing more
    config.json        {"format": "ddpm-reference-export", "format_version": 1, "kind": KIND,
                        "exported_from": {"file": ..., "sha256": ...}, then every other field of the
                        checkpoint as it stores it}: what rebuilds the network and its schedule (a two-pixel
                        run's "config"; problem 5's "model_config", "schedule"; an image run's "config",
                        "unet", "schedule") and the run's own record (steps, seconds, data source)

Each family's loader (two_pixel.trainer.load_checkpoint, mnist.checkpoint.load_model,
image_diffusion.trainer.load_model) reads through `read_model`, which turns a checkpoint file and an
export folder into the same dict, so a folder loads as its checkpoint does: same model, same schedule,
same config and info, same samples from the same seed.

An export re-encodes a checkpoint; it does not save a model again, so writing one needs no family's code,
and the command lives here, below every family. What the two files hold is the checkpoint's, field for
field (tuples come back as lists, which the loaders read as they read a checkpoint's); a field JSON cannot
carry exactly (a tensor outside "model", nan, a dict keyed by numbers) is refused, never approximated.
CS180's runs (several epochs per file, with their losses and sample grids) are not exported.
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
HEADER = ("format", "format_version", "kind", "exported_from")  # config.json's own fields; the rest is the checkpoint's
# the kinds that hold one model under "model" and a config that rebuilds it and its schedule
EXPORTABLE = ("ddpm-two-pixel", "ddpm-mnist", "image-diffusion")
TRAIN_HINT = "python train.py --T 50, python -m mnist.train or python -m image_diffusion.train"


# ================================================================ reading
def read_model(path, kind, train_hint: str = "python train.py --T 50") -> dict:
    """What every family's loader reads: a checkpoint file (runio.checkpoints.read_checkpoint) or an export
    folder (read_export), as the same dict {"kind", "model": state_dict, ...the checkpoint's other fields}.
    kind: a str, or a tuple of the kinds accepted. CheckpointError (one line) for anything wrong."""
    if os.path.isdir(os.fspath(path)):
        return read_export(path, kind)
    return read_checkpoint(path, kind, train_hint)


def read_export(folder, kind) -> dict:
    """An export folder as the checkpoint dict it was written from: {"kind", "model": state_dict (tensors in
    the dtype exported), ...the other fields of config.json but its HEADER}. CheckpointError (one line) for
    a folder without config.json, JSON that cannot be read, another format or an unknown format_version, a
    kind other than `kind`, or a model.safetensors that is missing, unreadable or from another export."""
    folder = os.fspath(folder)
    config = _read_config(folder)
    check_kind(folder, config["kind"], kind)
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
    if meta.get("kind", config["kind"]) != config["kind"]:
        raise CheckpointError(f"{path} holds a {meta['kind']!r} model but its {CONFIG} a {config['kind']!r} one: the "
                              "two files come from different exports; export the checkpoint again")
    fields = {k: v for k, v in config.items() if k not in HEADER}
    return {"kind": config["kind"], **fields, "model": state}


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
    """Write checkpoint dict `ckpt` (as read_model returns it) as the export folder `out`: its "model" state
    dict to model.safetensors (tensors as stored: fp16 stays fp16), every other field to config.json after
    the HEADER, both as one set (runio.runs.staged_run: on any error `out` is as it was). Returns the config
    written. CheckpointError for no state dict or a field JSON cannot carry exactly; OutputError, before
    anything is written, for an `out` that may not take an export (check_out)."""
    state = ckpt.get("model")
    if not (isinstance(state, dict) and state and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                      for k, v in state.items())):
        raise CheckpointError(f"the {ckpt.get('kind')!r} checkpoint holds no state dict under 'model', so it has no "
                              "weights to export")
    fields = {k: v for k, v in ckpt.items() if k not in ("kind", "model")}
    for name, value in fields.items():
        if name in HEADER or not _plain(value):
            why = ("a name of the export's header" if name in HEADER else
                   f"a {type(value).__name__} holding what JSON cannot carry exactly")
            raise CheckpointError(f"the checkpoint's field {name!r} cannot be exported ({why})")
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": ckpt["kind"],
              **({"exported_from": exported_from} if exported_from else {}), **fields}
    check_out(out, overwrite)
    with staged_run(out, FILES, overwrite) as stage:
        save_weights(os.path.join(stage, WEIGHTS), state, ckpt["kind"])
        save_config(os.path.join(stage, CONFIG), config)
    return config


def save_weights(path: str, state: dict, kind: str) -> None:
    """state (name -> tensor) as safetensors, each tensor its own contiguous copy (safetensors refuses shared
    storage), dtypes as given; metadata small and textual. The umask's mode, as every file of the package
    (safetensors makes it 0o600)."""
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, path,
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
    """Export the model in `checkpoint` (a file of an EXPORTABLE kind, or an export folder) into folder `out`;
    returns the config written. exported_from names the file read and its sha256 (a folder's: its weights)."""
    ckpt = read_model(checkpoint, EXPORTABLE, TRAIN_HINT)
    source = os.path.join(checkpoint, WEIGHTS) if os.path.isdir(checkpoint) else os.fspath(checkpoint)
    return write_export(out, ckpt, overwrite, {"file": os.path.basename(os.path.abspath(checkpoint)),
                                               "sha256": file_sha256(source)})


# ================================================================ the command
def build_parser() -> Parser:
    p = Parser(prog="python -m runio.export", description=__doc__)
    p.add_argument("--checkpoint", required=True,
                   help=f"a model checkpoint ({', '.join(EXPORTABLE)}), e.g. mnist/reference/model.pt")
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
    print(f"exported the {config['kind']} model in {args.checkpoint} to {args.out} ({WEIGHTS}, {CONFIG})")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "runio.export", "nothing was written: --out is as it was; run it again"))
