"""Checkpoints: read safely, loaded into one type, and resumed one way.

A checkpoint is a dict written by torch.save (through files.atomic_save) with a "kind" field naming
what it holds ("ddpm-two-pixel", "ddpm-mnist", "image-diffusion", ...). `read_checkpoint` loads it
with weights_only=True, so a file holding code is refused, never run, and checks its kind, so a
checkpoint handed to the wrong tool fails with one clear line.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import re
from typing import Any, NamedTuple, Optional, Sequence

import torch

from .errors import CheckpointError, first_line


class Loaded(NamedTuple):
    """A trained model as every loader returns it."""

    model: Any  # the (EMA) network, eval mode, on the requested device
    schedule: Any  # the utils.Schedule it was trained with: same T, kind, variance and clip range
    config: Any  # the run's config object (None where the checkpoint keeps only a dict, in info)
    info: dict  # everything else stored: step, seconds, data source, ...


# Which command reads each kind of file the package writes: named when a file is handed to the wrong one.
READERS = {
    "ddpm-two-pixel": "a two-pixel model (problems 1-4): python visualize.py --problem 2 reads it from --runs",
    "ddpm-mnist": "problem 5's MNIST model: python -m mnist.sample or python -m image_diffusion.sample draw from it",
    "image-diffusion": "an image model: python -m image_diffusion.sample draws from it",
    "ddpm-mnist-timecond": "a CS180 part B.2 run: python visualize.py --problem cs180-b2 reads it",
    "mnist-denoiser": "a CS180 part B.1 denoiser: python visualize.py --problem cs180-b1 reads it",
    "mnist-classifier": "the metric classifier that scores MNIST digits, not a generative model",
    "ddpm-mnist-resume": "a run's state.pt, which only --resume reads: give the model.pt beside it",
    "image-diffusion-resume": "a run's state.pt, which only --resume reads: give the model.pt beside it",
    "mnist-samples": "the tensors of python -m mnist.sample's digits, not a model",
    "fid-standin-classifier": "the stand-in classifier of python -m image_diffusion.fid, not a generative model",
}


def read_checkpoint(path, kind, train_hint: str = "python train.py --T 50") -> dict:
    """Load a checkpoint dict and check it is of `kind` (a str, or a tuple of the kinds accepted); one-line
    CheckpointErrors otherwise. weights_only: a file holding code or arbitrary Python objects is refused,
    never run. train_hint: the command that makes one, named when the file is missing."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}; train one first ({train_hint})")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path} is empty (an interrupted copy?); retrain it or copy it again")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:
            raise CheckpointError(f"{path} is not a checkpoint of this package: it holds code or Python objects "
                                  f"({found.group(1)}), which were not loaded; do not load it another way") from None
        raise CheckpointError(f"{path} is not a readable checkpoint (not a file written by torch.save); "
                              "retrain it") from None
    except Exception as e:  # truncated, corrupt or not a torch file at all
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}); "
                              "it may be truncated: retrain it") from None
    if not isinstance(ckpt, dict) or "kind" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this package (no 'kind' field)")
    check_kind(path, ckpt["kind"], kind)
    return ckpt


def check_kind(path, found, kind) -> None:
    """CheckpointError (one line) unless `found`, the kind stored at `path`, is `kind` (a str, or a tuple of the
    kinds accepted); the message names what the file is and which command reads it (READERS)."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if found not in kinds:
        what = READERS.get(found, f"a {found!r} file") if isinstance(found, str) else f"a {found!r} file"
        raise CheckpointError(f"{path} is {what} (kind {found!r}); this command needs a "
                              f"{' or '.join(map(repr, kinds))} file")


def config_to_dict(cfg) -> dict:
    """A config dataclass as a checkpoint stores it: tuples become lists (torch.load(weights_only=True) reads
    plain lists, dicts, numbers and strings)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def config_from_dict(cls, d: dict):
    """The inverse of config_to_dict: a cls from a stored dict, lists back to tuples; fields the class no
    longer has are dropped, fields added since take their defaults."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


def file_sha256(path) -> str:
    """The hex sha256 of a file's bytes (of an export folder: of its files' names and bytes, in name order):
    which run another run was continued from."""
    h = hashlib.sha256()
    names = sorted(os.listdir(path)) if os.path.isdir(path) else [None]
    for name in names:
        if name is not None:
            h.update(name.encode() + b"\0")
        with open(path if name is None else os.path.join(path, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# ================================================================ resuming a run
def check_resumable(state: dict, config: dict, where, may_change: Sequence[str] = (),
                    defaults: Optional[dict] = None) -> None:
    """The one check before any trainer resumes (--resume): the stored run `state` (its "config" dict, and its
    "step" where it counts steps) was made with the settings `config` asks for, apart from `may_change`
    (settings that do not change what is computed, such as the device or a longer --steps), and is not
    already past config["steps"]. defaults: values of settings added since the run was started.
    CheckpointError (one line) otherwise."""
    stored = state.get("config")
    if not isinstance(stored, dict):
        raise CheckpointError(f"--resume: the run in {where} has no config; start it again with --overwrite")
    defaults = defaults or {}
    changed = sorted(k for k, v in config.items()
                     if k not in may_change and stored.get(k, defaults.get(k)) != v)
    if changed:
        raise CheckpointError(f"--resume: the run in {where} was made with different settings ({', '.join(changed)}); "
                              "give the flags it was started with")
    step, steps = state.get("step"), config.get("steps")
    if isinstance(step, int) and isinstance(steps, int) and step > steps:  # its weights would be relabelled
        raise CheckpointError(f"--resume: the run in {where} is already at step {step}, past --steps {steps}; give "
                              f"--steps {step} or more")


def restore(state: dict, path, **targets) -> None:
    """targets[name].load_state_dict(state[name]) for every named target (a model, an optimizer, a scaler, a
    learning-rate schedule, ...); CheckpointError (one line) when a state is missing or does not fit."""
    try:
        for name, target in targets.items():
            target.load_state_dict(state[name])
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"--resume: {path} does not fit this model ({first_line(e)}); start the run again "
                              "with --overwrite") from None
