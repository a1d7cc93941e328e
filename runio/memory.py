"""Whether a training step fits in memory, asked before the first step.

The kernel's out-of-memory killer cannot be caught: a batch that does not fit ends the process with no
word (exit 137), sometimes after taking the machine down. So before training, the trainers measure what
one step needs for a batch of 1 and of 2 images (the tensors autograd saves for the backward pass,
counted by torch.autograd.graph.saved_tensors_hooks), extrapolate to their batch, and compare with what
this process may use: the GPU's free memory, or the cgroup's memory.max (v2) / memory.limit_in_bytes (v1)
where one is set, else the machine's available memory.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch


# The peak of a step is the saved activations plus their gradients in the backward pass (at most about as
# much again) and the allocator's slack: twice the saved tensors, measured to hold on CPU and CUDA.
PEAK_FACTOR = 2.0
STATE_COPIES = 5  # the weights, their EMA, their gradients and Adam's two moments


class Need(NamedTuple):
    per_image: int  # bytes of saved activations per image
    fixed: int  # bytes that do not grow with the batch: weights and what training keeps of them

    def step(self, batch: int) -> int:
        """Bytes a training step with `batch` images needs."""
        return int(self.fixed + PEAK_FACTOR * self.per_image * batch)

    def largest(self, available: int) -> int:
        """The largest batch whose step fits in `available` bytes (0 if none does)."""
        return max(0, int((available - self.fixed) / (PEAK_FACTOR * self.per_image))) if self.per_image else 0


def saved_bytes(forward: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of forward() (each storage counted once)."""
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        try:
            key = (t.untyped_storage().data_ptr(), t.device)
            size = t.untyped_storage().nbytes()
        except RuntimeError:  # a tensor without storage (a view of a sparse or meta tensor)
            key, size = id(t), t.numel() * t.element_size()
        if key not in seen:
            seen.add(key)
            total += size
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()  # the graph, and what it saved, is freed as the loss goes
    return total


def measure(model: torch.nn.Module, loss_of_batch: Callable[[int], torch.Tensor]) -> Need:
    """What a training step of `model` needs: loss_of_batch(b) computes the loss of a batch of b images (the
    trainer's own loss, autocast included, drawing from a generator of its own), run here in training mode
    for b = 1 and 2 without a backward pass. Nothing of the run changes: the global random numbers and the
    model's buffers (BatchNorm's running statistics) are put back, so a run retrains bit for bit."""
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    was_training = model.training
    with torch.random.fork_rng(devices=[]):
        model.train()
        try:
            one, two = saved_bytes(lambda: loss_of_batch(1)), saved_bytes(lambda: loss_of_batch(2))
        finally:
            model.train(was_training)
            with torch.no_grad():
                for k, v in model.named_buffers():
                    v.copy_(buffers[k])
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    per = max(0, two - one)
    return Need(per, STATE_COPIES * params + max(0, one - per))


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available(device) -> tuple[int, str]:
    """(bytes this process may still use, where that limit comes from)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free memory of {torch.cuda.get_device_name(device)}"
    for limit_path, usage_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_path), _read_int(usage_path)
        if limit is not None and usage is not None and limit < 1 << 60:  # "max" or a huge number: no limit
            return max(0, limit - usage), "the memory limit of this container (cgroup)"
    meminfo = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, value = line.split(":", 1)
                meminfo[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    if "MemAvailable" in meminfo:
        return meminfo["MemAvailable"], "the memory this machine has available"
    return 1 << 62, "no known limit"


def check_fits(need: Need, batch: int, device, processes: int = 1, flag: str = "--batch-size") -> None:
    """ValueError (one line) before the first step when a step with `batch` images (split over `processes`
    torchrun processes, each on its own device) would not fit: what it needs, what may be used and where
    that comes from, and the largest batch that fits."""
    free, source = available(device)
    share = -(-batch // processes)
    if need.step(share) <= free:
        return
    gib = lambda b: f"{b / 2**30:.1f} GiB"
    fits = need.largest(free) * processes
    raise MemoryTooSmall(f"{flag} {batch} needs about {gib(need.step(share))} for one training step"
                         f"{' per process' if processes > 1 else ''} (measured: {need.per_image / 2**20:.1f} MiB per "
                         f"image), more than the {gib(free)} left in {source}; "
                         + (f"the largest batch that fits is about {fits}" if fits else "not even one image fits"))


class MemoryTooSmall(ValueError):
    """A batch that would not fit in memory, refused before the first step."""
