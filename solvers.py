"""diffusers' samplers driving the package's noise predictors: fast multistep solvers (DPM-Solver++, UniPC)
and Euler, with classifier-free guidance, as a `utils.SamplerSettings.solver`.

    from solvers import solver
    x = sample(model, schedule, n, y, SamplerSettings(steps=10, w=4.0, solver=solver("dpm++")), generators(0, n))

Time conventions, mapped exactly: diffusers numbers the training steps 0..T-1, and its timestep i is this
package's t = i + 1 (utils.py); the scheduler is built from the model's own betas (trained_betas), so it
is the schedule the model was trained with. One network evaluation per step: under guidance the
conditional and the unconditional pass run as one batch (utils.guided_eps). Where the settings clip
x0_hat (the package's default), every solver is handed the eps that agrees with the clipped x0_hat, as
utils.ddim_step does, which keeps a step that starts at t = T on the cosine schedule (sqrt(alpha_bar_T)
~ 0.001) from throwing x0 off the data.

diffusers is an optional extra here (`pip install diffusers`); without it, asking for one of its solvers is
a one-line error saying so. The homework's own DDPM and DDIM stay written out in utils.py.
"""
from __future__ import annotations

import importlib
from typing import Iterator

import torch

from utils import SPACINGS, SamplerSettings, Schedule, Step, guided_eps, predict_eps, predict_x0, randn_like

# name on the command line -> (diffusers class, its options)
SOLVERS = {
    "dpm++": ("DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++", solver_order=2)),
    "unipc": ("UniPCMultistepScheduler", dict(solver_order=2)),
    "euler": ("EulerDiscreteScheduler", {}),
    # diffusers' own DDIM, for the parity test with utils.ddim_step; its step goes from t to t - T / steps,
    # which is the schedule's next step only with "leading" spacing (the --sampler ddim is the package's own)
    "diffusers-ddim": ("DDIMScheduler", dict(set_alpha_to_one=True)),
}
DIFFUSERS_SPACINGS = ("linspace", "leading", "trailing")  # what diffusers' schedulers offer of utils.SPACINGS


def _diffusers(class_name: str):
    try:
        return getattr(importlib.import_module("diffusers"), class_name)
    except ImportError:
        raise ValueError("the fast samplers come from diffusers, which is not installed; run: pip install diffusers"
                         ) from None


class DiffusersSolver:
    """A diffusers scheduler as a utils.SamplerSettings.solver: called as p_sample_loop is, it yields the
    package's Steps (t_prev, x, x0_hat), one network evaluation each."""

    def __init__(self, name: str, spacing: str = "leading"):
        if name not in SOLVERS:
            raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SOLVERS)}")
        if spacing not in DIFFUSERS_SPACINGS:
            raise ValueError(f"diffusers' samplers space their steps as {', '.join(DIFFUSERS_SPACINGS)}, not {spacing!r}")
        if name == "diffusers-ddim" and spacing != "leading":
            raise ValueError("diffusers' DDIM steps by T / steps, which only 'leading' spacing visits")
        self.name, self.spacing = name, spacing

    def __repr__(self) -> str:
        return f"solver({self.name!r}, {self.spacing!r})"

    def scheduler(self, schedule: Schedule, settings: SamplerSettings):
        """The diffusers scheduler of `schedule` (its betas: the model's own), set to settings.steps."""
        class_name, options = SOLVERS[self.name]
        if settings.steps is None or not 1 <= settings.steps <= schedule.T:
            raise ValueError(f"the {self.name} sampler needs --steps in 1..T={schedule.T}, got {settings.steps}")
        if class_name == "DDIMScheduler":
            options = {**options, "clip_sample": False}  # the clip is the package's own (__call__)
        sched = _diffusers(class_name)(num_train_timesteps=schedule.T, trained_betas=schedule.beta[1:].float().numpy(),
                                       prediction_type="epsilon", timestep_spacing=self.spacing, **options)
        sched.set_timesteps(settings.steps)
        return sched

    def timesteps(self, schedule: Schedule, settings: SamplerSettings) -> list[int]:
        """The package's timesteps t this solver visits, from where it starts down to 0."""
        return [round(float(i)) + 1 for i in self.scheduler(schedule, settings).timesteps] + [0]

    def __call__(self, eps_model, schedule: Schedule, x_T: torch.Tensor, y=None,
                 settings: SamplerSettings = SamplerSettings(), generator=None, project=None) -> Iterator[Step]:
        sched, clip = self.scheduler(schedule, settings), settings.clip(schedule)
        x = x_T * sched.init_noise_sigma  # Euler works on x_t / sqrt(alpha_bar_t): its start is scaled up
        ts = [round(float(i)) for i in sched.timesteps]
        for k, (i, step_t) in enumerate(zip(ts, sched.timesteps)):
            t = i + 1  # diffusers' timestep i is our t = i + 1
            x_t = sched.scale_model_input(x, step_t)  # x_t itself (Euler's input divided by sqrt(sigma^2 + 1))
            eps = guided_eps(eps_model, x_t, t, y, settings.w)
            if clip is not None:  # the eps that agrees with x0_hat clipped to [-clip, clip]
                eps = predict_eps(schedule, x_t, t, predict_x0(schedule, x_t, t, eps).clamp(-clip, clip))
            out = sched.step(eps, step_t, x, **self._noise(x, generator, settings))
            x = out.prev_sample
            x0_hat = getattr(out, "pred_original_sample", None)
            t_prev = ts[k + 1] + 1 if k + 1 < len(ts) else 0
            if project is not None:
                x = project(x, t_prev)
            yield Step(t_prev, x, x0_hat if x0_hat is not None else x)

    def _noise(self, x: torch.Tensor, generator, settings: SamplerSettings) -> dict:
        """DDIM's noise (eta > 0), drawn from the package's generators (one per sample); the other samplers
        here are deterministic."""
        if self.name == "diffusers-ddim":
            noise = randn_like(x, generator) if settings.eta > 0 else None
            return {"eta": settings.eta, "variance_noise": noise}
        return {}


def solver(name: str, spacing: str = "leading") -> DiffusersSolver:
    """A diffusers sampler as a utils.SamplerSettings.solver ("dpm++", "unipc", "euler", "diffusers-ddim");
    "leading" spacing by default: it never starts at t = T, where the cosine schedule leaves ~0.1 % of the
    image and a multistep solver's first x0 estimate is worst."""
    return DiffusersSolver(name, spacing)


def settings_for(name: str, steps=None, eta: float = 0.0, w: float = 0.0, spacing=None) -> SamplerSettings:
    """The SamplerSettings of a --sampler name: "ddpm" (the package's full chain when steps is None), "ddim"
    (the package's DDIM), or one of diffusers' (dpm++, unipc, euler) through solver()."""
    if name == "ddpm" and steps is None:
        return SamplerSettings(w=w)
    if name in ("ddpm", "ddim"):
        if steps is None:
            raise ValueError("--sampler ddim needs --steps")
        return SamplerSettings(steps=steps, eta=eta if name == "ddim" else 1.0, w=w, spacing=spacing or "linspace")
    if steps is None:
        raise ValueError(f"--sampler {name} needs --steps (its network evaluations per image)")
    return SamplerSettings(steps=steps, w=w, solver=solver(name, spacing or "leading"))


SAMPLERS = ("ddpm", "ddim", "dpm++", "unipc", "euler")  # --sampler's choices
__all__ = ["SOLVERS", "SAMPLERS", "SPACINGS", "DiffusersSolver", "solver", "settings_for"]
