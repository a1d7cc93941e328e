"""Flow matching beside DDPM (Lipman et al. 2023; Liu et al. 2023's rectified flow): the linear path between
data and noise, its velocity target, the loss, and Euler / Heun samplers for any velocity predictor.

Time convention. This package's time runs from data to noise, as DDPM's does (utils.py): on the path

    x_tau = (1 - tau) x_0 + tau eps,   eps ~ N(0, I),   tau in [0, 1]: tau = 0 data, tau = 1 noise,

the velocity is dx_tau / dtau = eps - x_0, and sampling integrates dx/dtau = v(x, tau) from tau = 1 down to
0. CS180's fall 2025 part B runs its time the other way (t = 0 noise, t = 1 data, x_t = (1 - t) x_noise +
t x_data, u = x_data - x_noise): its t is 1 - tau and its velocity is -v. A velocity predictor has the
network's signature v(x_tau, t, y) with t = tau T (the UNets divide t by T), so the same networks, the
same utils.fit, the same classifier-free guidance (utils.guided_eps: (1 + w) v(x, y) - w v(x, null)) and the
same utils.sample serve both objectives; the samplers here plug in as a utils.SamplerSettings.solver.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from utils import SamplerSettings, Schedule, Step, drop_labels, guided_eps, randn_like

METHODS = ("euler", "heun")


def path(x0: torch.Tensor, eps: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """x_tau = (1 - tau) x_0 + tau eps. x0, eps: (B, ...); tau: (B,) in [0, 1]."""
    tau = tau.reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    return (1 - tau) * x0 + tau * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """d x_tau / d tau = eps - x_0: what a velocity predictor learns to regress (at every tau alike)."""
    return eps - x0


def flow_losses(v_model, T: int, x0: torch.Tensor, y: Optional[torch.Tensor] = None, p_uncond: float = 0.1,
                generator=None) -> torch.Tensor:
    """The flow-matching loss per sample, ||v_theta(x_tau, tau T, y) - (eps - x_0)||^2 with tau ~ U(0, 1] and
    eps ~ N(0, I) drawn from `generator` (in that order; then the label dropout), the mean over pixels: (B,)."""
    B = x0.shape[0]
    gen_device = generator.device if generator is not None else x0.device
    tau = (1 - torch.rand(B, generator=generator, device=gen_device, dtype=torch.float64)).to(x0.device)  # (0, 1]
    eps = randn_like(x0, generator)
    if y is not None:
        y = drop_labels(y, v_model.num_classes, p_uncond, generator)
    v = v_model(path(x0, eps, tau), (tau * T).to(x0.dtype), y)  # the network sees t = tau T
    return F.mse_loss(v, velocity_target(x0, eps), reduction="none").reshape(B, -1).mean(1)


class FlowSolver:
    """Integrate dx/dtau = v(x, tau) from tau = 1 (x ~ N(0, I)) down to 0 in settings.steps equal steps, Euler
    (one evaluation a step) or Heun (two: Euler's step, then the average of the slopes at both ends; the last
    step is Euler's, since tau = 0 is where the data are). A utils.SamplerSettings.solver: called as
    utils.p_sample_loop is, it yields Steps whose t_prev is tau T (a float) and whose x0_hat is the straight
    path's clean estimate x - tau v."""

    def __init__(self, method: str = "euler"):
        if method not in METHODS:
            raise ValueError(f"unknown flow sampler {method!r}; choose one of {', '.join(METHODS)}")
        self.name, self.method = method, method

    def __repr__(self) -> str:
        return f"FlowSolver({self.method!r})"

    def taus(self, settings: SamplerSettings) -> list[float]:
        if settings.steps is None or settings.steps < 1:
            raise ValueError(f"a flow sampler needs steps >= 1, got {settings.steps}")
        return [1 - k / settings.steps for k in range(settings.steps + 1)]

    def timesteps(self, schedule: Schedule, settings: SamplerSettings) -> list[float]:
        """The network times t = tau T it visits, from T down to 0."""
        return [tau * schedule.T for tau in self.taus(settings)]

    def evaluations(self, settings: SamplerSettings) -> int:
        """Network evaluations per sample (under guidance the two passes run as one)."""
        return settings.steps * (2 if self.method == "heun" else 1) - (1 if self.method == "heun" else 0)

    def __call__(self, v_model, schedule: Schedule, x_T: torch.Tensor, y=None,
                 settings: SamplerSettings = SamplerSettings(), generator=None, project=None) -> Iterator[Step]:
        T, x = schedule.T, x_T
        taus = self.taus(settings)
        v_of = lambda x, tau: guided_eps(v_model, x, torch.tensor(tau * T, device=x.device), y, settings.w)
        for tau, tau_next in zip(taus[:-1], taus[1:]):
            h = tau_next - tau  # < 0: towards the data
            v = v_of(x, tau)
            x_next = x + h * v  # Euler
            if self.method == "heun" and tau_next > 0:
                x_next = x + h * (v + v_of(x_next, tau_next)) / 2
            x0_hat = x - tau * v  # where the straight line through x with slope v meets tau = 0
            x = x_next if project is None else project(x_next, tau_next * T)
            yield Step(tau_next * T, x, x0_hat)


def flow_settings(steps: int, method: str = "euler", w: float = 0.0) -> SamplerSettings:
    """The SamplerSettings that draw from a velocity predictor: `steps` steps of Euler or Heun."""
    return SamplerSettings(steps=steps, w=w, solver=FlowSolver(method))
