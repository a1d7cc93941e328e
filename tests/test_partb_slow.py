"""Slow: the shipped part-B runs are what their commands produce. Each retrains the first epoch (one to
six minutes on one CPU thread) and compares it with the shipped epoch-1 weights, stored in fp16.
The learning rate is constant during epoch 1 (B.2 decays it only at epoch ends), so one epoch of a
run's command is exactly the shipped run's first epoch."""
import pytest
import torch

from cs180 import denoiser as dn
from cs180 import timecond as tc
from mnist.data import DataError, load_mnist, to_unit_range

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # the shipped runs used one thread


def same_fp16(sd_new, model_shipped):
    shipped = model_shipped.state_dict()
    for k, v in sd_new.items():
        ref = shipped[k]
        got = v.half().float() if v.is_floating_point() else v
        assert torch.equal(got, ref), k


def full_mnist():
    try:
        return load_mnist(source="torchvision", download=False, verbose=False)
    except DataError as e:
        pytest.skip(f"the shipped part-B runs were trained on the full MNIST ({e})")


def test_shipped_denoiser_epoch1_is_its_command():
    """Epoch 1 (235 steps, about 10 min on one thread) of `python -m cs180.denoiser --handout --hidden 32`."""
    shipped = dn.load_run()
    assert shipped.config == dn.DenoiserConfig.handout(hidden=32)
    data = full_mnist()
    assert shipped.info["data_source"] == data.source
    cfg = dn.DenoiserConfig(**{**shipped.config.__dict__, "epochs": 1})
    run = dn.train_denoiser(to_unit_range(data.train_x), cfg)
    same_fp16(run.epoch_models[0], shipped.models[1])


SHIPPED_B2 = {  # the commands that made the shipped B.2 runs (mnist/reference/MODEL_CARD.md)
    tc.REFERENCE: tc.TimeCondConfig.handout(ema=0.999, bf16=True),  # ... --handout --ema 0.999 --bf16 --threads 2
    tc.REFERENCE_CLASS: tc.TimeCondConfig.handout(num_classes=10),  # ... --handout --classes --stop-after 5 --threads 2
}


@pytest.mark.parametrize("path", list(SHIPPED_B2), ids=["timecond", "timecond_class"])
def test_shipped_timecond_epoch1_is_its_command(path):
    """Epoch 1 of each shipped B.2 run (469 steps on the full MNIST) retrained with the run's thread
    count: the same EMA (and, where the file keeps them, raw) weights, bit for bit after the fp16 cast. Needs
    the full MNIST in data/MNIST/raw (the runs' data), and for the bf16 run a CPU like the one that made it
    (bf16 kernels differ between CPUs)."""
    shipped = tc.load_run(path)
    assert shipped.config == SHIPPED_B2[path]
    data = full_mnist()
    assert shipped.info["data_source"] == data.source
    cfg = tc.TimeCondConfig(**{**shipped.config.__dict__, "epochs": 1})
    torch.set_num_threads(shipped.info["threads"])  # the one_thread fixture restores the count afterwards
    run = tc.train_timecond(data.train_x, data.train_y, cfg, snapshot_epochs=(1,))
    same_fp16(run.snapshots[1], shipped.models[1])
    if 1 in shipped.raw:
        same_fp16(run.raw[1], shipped.raw[1])
