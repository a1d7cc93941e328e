"""MNIST checkpoints: the EMA weights, the architecture, the training config and the data source.

A checkpoint is a dict with kind 'ddpm-mnist'; `runio.checkpoints.read_checkpoint` checks the kind, so a
two-pixel checkpoint handed to the MNIST tools (or this one to the two-pixel tools) fails with one
clear line. The optimiser state for --resume lives in a separate file (state.pt) so the shipped
model stays small. `load_model` also reads the checkpoint's export folder (model.safetensors + config.json,
written by python -m runio.export) to the same model.
"""
from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional, Sequence

from runio.checkpoints import Loaded, read_checkpoint
from runio.errors import CheckpointError, first_line
from runio.export import read_model
from runio.files import atomic_save
from utils import Schedule, check_finite_weights, make_schedule

from .model import MNISTUNet, build_model

KIND = "ddpm-mnist"
RESUME_KIND = "ddpm-mnist-resume"


def save_model(path, model: MNISTUNet, schedule: Schedule, train_config: dict, **info) -> None:
    """Write `model` (the EMA copy) with what rebuilds it, atomically; never non-finite weights."""
    state = model.state_dict()
    check_finite_weights(state)
    atomic_save({"kind": KIND, "model_config": model.config.as_dict(), "schedule": schedule.config(),
                 "train_config": train_config, "model": state, **info}, path)


def load_model(path, device="cpu") -> Loaded:
    """Load an MNIST checkpoint, or its export folder (runio.export): Loaded(model, schedule, its training config
    (a dict), the rest it stores); CheckpointError (one line) if it is missing, foreign or broken."""
    ckpt = read_model(path, KIND, train_hint="python -m mnist.train")
    try:
        model = build_model(ckpt["model_config"])
        model.load_state_dict(ckpt["model"])
        schedule = make_schedule(**ckpt["schedule"])
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: the weights do not match the model its config describes ({first_line(e)}); "
                              "retrain it") from None
    if schedule.T != model.T:
        raise CheckpointError(f"{path}: model T={model.T} but schedule T={schedule.T}")
    info = {k: v for k, v in ckpt.items() if k not in ("kind", "model", "model_config", "schedule")}
    return Loaded(model.to(device).eval(), schedule, ckpt.get("train_config"), info)


def resume_path(folder) -> str:
    return os.path.join(os.fspath(folder), "state.pt")


RESUME_FIELDS = ("config", "step", "seconds", "model", "ema", "ema_num_updates", "optimizer", "scaler", "generator",
                 "torch_rng", "losses")


def read_resume_state(folder) -> Optional[dict]:
    """folder/state.pt (None if absent); CheckpointError if it is foreign or lacks a field --resume needs."""
    path = resume_path(folder)
    if not os.path.exists(path):
        return None
    state = read_checkpoint(path, RESUME_KIND)
    missing = [k for k in RESUME_FIELDS if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}, so the run cannot be resumed; start it again "
                              "with --overwrite")
    if not (isinstance(state["config"], dict) and isinstance(state["step"], int) and isinstance(state["losses"], list)):
        raise CheckpointError(f"{path} is broken (config, step or losses of the wrong type), so the run cannot be "
                              "resumed; start it again with --overwrite")
    return state


# ------------------------------------------- CS180 part-B runs: weights after chosen epochs
def save_epoch_run(path, kind: str, config: dict, losses: list, seconds: float, states: dict,
                   key: str = "epochs", more_states: Optional[dict] = None, **info) -> None:
    """Write {epoch: state_dict} in fp16 (the files are shipped; loading upcasts) under `key`, the config,
    the loss per step and anything else given, atomically. more_states: {other key: {epoch: state_dict}},
    stored the same way."""
    half = lambda sd: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    stored = {}
    for name, group in {key: states, **(more_states or {})}.items():
        stored[name] = {int(e): half(sd) for e, sd in group.items()}
        for sd in stored[name].values():
            check_finite_weights(sd)  # also catches weights beyond fp16's range (65504), which would load as inf
    atomic_save({"kind": kind, "config": config, "losses": losses, "seconds": seconds, **stored, **info}, path)


class EpochRun(NamedTuple):
    """A run kept as its weights after chosen epochs (CS180 part B)."""

    config: Any  # the run's config object
    models: dict  # epoch -> model in eval mode, float32
    losses: list  # per step
    info: dict  # everything else stored


def load_epoch_run(path, kind: str, what: str, command: str, build, key: str = "epochs",
                   more_keys: Sequence[str] = ()) -> EpochRun:
    """Read a file from save_epoch_run, or its export folder (runio.export; read_model reads both as the same dict):
    EpochRun(config, {epoch: model in eval mode, float32}, losses, info). build(config dict) -> (config object, a
    function making an empty model). more_keys: other {epoch: state_dict} groups (save_epoch_run's more_states)
    to load the same way; each one the run holds is put in info as {epoch: model}. CheckpointError with one line,
    naming `command` to retrain, if the file is missing, foreign or broken."""
    if not os.path.exists(os.fspath(path)):
        raise CheckpointError(f"no {what} checkpoint at {path}; train one ({command} --out DIR)")
    ckpt = read_model(path, kind, train_hint=f"{command} --out DIR")
    try:
        cfg, make = build(ckpt["config"])
        models = _epoch_models(ckpt[key], make)
        more = {k: _epoch_models(ckpt[k], make) for k in more_keys if k in ckpt}
        losses = ckpt["losses"]
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a valid {what} run ({first_line(e)}); retrain it ({command})") from None
    info = {k: v for k, v in ckpt.items() if k not in ("kind", "config", key, "losses")}
    return EpochRun(cfg, models, losses, {**info, **more})


def _epoch_models(states: dict, make) -> dict:
    """{epoch: state_dict (fp16 as stored)} as {epoch: make() loaded with it in float32, eval mode}, epochs in order."""
    models = {}
    for epoch, sd in sorted(states.items()):
        m = make()
        m.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        models[int(epoch)] = m.eval()
    return models
