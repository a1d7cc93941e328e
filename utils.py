"""DDPM, the worked answer: noise schedules, the forward process, the loss, the classifier-free-guidance
sampler, EMA and the one training loop. It imports nothing else of the package.

Timestep convention (the only one in this package)
--------------------------------------------------
Time runs t = 0, 1, ..., T as in Ho et al. (2020): x_0 is a clean image, x_T is (almost) pure noise,
and the network is trained and evaluated on t in 1..T. Every per-step array of a `Schedule` has
length T + 1 and is indexed by t itself, so `schedule.beta[t]` is beta_t; entry 0 is the clean-data
end (beta_0 = 0, alpha_bar_0 = 1), which makes alpha_bar_{t-1} simply `alpha_bar[t - 1]`. A trajectory
likewise holds x_t at index t. diffusers numbers the same steps 0..T-1: its timestep i is our t = i + 1.

From q(x_t | x_{t-1}) to the loss (Ho et al. 2020, Sec. 2-3)
-------------------------------------------------------------
The forward process adds a little Gaussian noise at each step,

    q(x_t | x_{t-1}) = N(x_t; sqrt(alpha_t) x_{t-1}, beta_t I),          alpha_t = 1 - beta_t     (Eq. 2)

A sum of Gaussians is Gaussian, so t steps at once are one draw (alpha_bar_t = prod_{s<=t} alpha_s):

    q(x_t | x_0) = N(x_t; sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                             (Eq. 4)
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,  eps ~ N(0, I)

Given x_0, Bayes' rule makes the step back Gaussian too, with

    q(x_{t-1} | x_t, x_0) = N(mu_tilde_t(x_t, x_0), beta_tilde_t I)                                (Eq. 6-7)
    mu_tilde_t  = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
    beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t

The model p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) is trained by the variational bound,
whose step-t term is KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) = ||mu_tilde_t - mu_theta||^2 /
(2 sigma_t^2) + const. Writing x_0 through Eq. 4 as x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
turns mu_tilde_t into 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps), so the model predicts
the noise: mu_theta = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)), and
the term becomes a weighted ||eps - eps_theta(x_t, t)||^2. Dropping the weights gives

    L_simple = E_{t ~ U{1..T}, x_0, eps} || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2   (Eq. 14)

which is `p_losses`. Sampling runs the chain back from x_T ~ N(0, I) (Alg. 2): `p_sample`.

The pieces are kept apart (k-diffusion style): a `Schedule` is precomputed arrays; a noise predictor is
any callable eps_model(x_t, t, y) -> eps with attributes T and num_classes (the UNet, the exact
predictor of gmm.py, or a `WrappedPredictor`); the samplers are free functions taking any of them, and
their settings come as one `SamplerSettings`.
"""
from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass, fields
from typing import Iterator, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

SCHEDULES = ("cosine", "linear")
SPACINGS = ("linspace", "leading", "trailing", "quadratic")  # how a few sampling steps are spread over 1..T
VARIANCES = ("posterior", "beta")
LOSSES = ("l2", "l1", "huber")


# ============================================================== schedules
def cosine_beta_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021) Eq. 17: alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2),
    beta_t = 1 - alpha_bar(t) / alpha_bar(t-1), clipped at max_beta. Returns float64 (T,) = beta_1..beta_T."""
    T = check_T(T)
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2
    return torch.tensor([min(1 - f(t) / f(t - 1), max_beta) for t in range(1, T + 1)], dtype=torch.float64)


def linear_beta_schedule(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """Ho et al. (2020), Sec. 4: betas linear from 1e-4 to 0.02. Returns float64 (T,)."""
    T = check_T(T)
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


def check_T(T) -> int:
    """T must be a positive integer (a float like 50.0 is accepted; 2.5, 0 or -3 are not)."""
    if isinstance(T, bool) or not isinstance(T, (int, float)) or not math.isfinite(T) or T != int(T) or T < 1:
        raise ValueError(f"T must be a positive integer number of diffusion steps, got {T!r}")
    return int(T)


@dataclass(frozen=True)
class Schedule:
    """Precomputed DDPM coefficients, named after the paper's symbols. Every tensor is float64 of length
    T + 1, indexed by t (entry 0 is the clean-data end). `kind` and `variance` say how it was made;
    `clip_x0` is the range the samplers clip the predicted clean image x0_hat to (None: no clipping)."""

    T: int
    kind: str
    variance: str
    clip_x0: Optional[float]
    beta: torch.Tensor  # beta_t
    alpha: torch.Tensor  # alpha_t = 1 - beta_t
    alpha_bar: torch.Tensor  # alpha_bar_t = prod_{s<=t} alpha_s
    alpha_bar_prev: torch.Tensor  # alpha_bar_{t-1} (entry 0 repeats 1)
    beta_tilde: torch.Tensor  # the variance of q(x_{t-1} | x_t, x_0), Eq. 7
    mu_coef_x0: torch.Tensor  # mu_tilde_t = mu_coef_x0 x_0 + mu_coef_xt x_t, Eq. 7
    mu_coef_xt: torch.Tensor
    sigma2: torch.Tensor  # sigma_t^2 of the reverse step: beta_tilde ("posterior") or beta ("beta")

    def config(self) -> dict:
        """What rebuilds this schedule: make_schedule(**schedule.config())."""
        return dict(T=self.T, kind=self.kind, variance=self.variance, clip_x0=self.clip_x0)

    def to(self, device) -> "Schedule":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Schedule(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in moved.items()})


def make_schedule(T: int = 50, kind: str = "cosine", variance: str = "posterior",
                  clip_x0: Optional[float] = 1.5) -> Schedule:
    """Build a Schedule. kind: 'cosine' (default, Nichol & Dhariwal) or 'linear' (Ho et al.);
    variance: 'posterior' (sigma_t^2 = beta_tilde_t, the handout's) or 'beta' (sigma_t^2 = beta_t);
    clip_x0: the two-pixel mixture reaches about +-1.5, hence the default (use 1.0 for images in
    [-1, 1], None to switch clipping off)."""
    T = check_T(T)
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")
    if clip_x0 is not None and not clip_x0 > 0:
        raise ValueError(f"clip_x0 must be positive or None, got {clip_x0!r}")
    betas = cosine_beta_schedule(T) if kind == "cosine" else linear_beta_schedule(T)
    beta = torch.cat([torch.zeros(1, dtype=torch.float64), betas])  # (T+1,), beta_0 = 0
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, 0)  # alpha_bar_0 = 1
    alpha_bar_prev = torch.cat([alpha_bar[:1], alpha_bar[:-1]])
    one_minus = (1 - alpha_bar).clamp(min=1e-20)  # entry 0 is 0: 0/0 -> 0 there
    beta_tilde = beta * (1 - alpha_bar_prev) / one_minus  # Eq. 7; beta_tilde_1 = 0 since alpha_bar_0 = 1
    mu_coef_x0 = beta * alpha_bar_prev.sqrt() / one_minus  # Eq. 7
    mu_coef_xt = (1 - alpha_bar_prev) * alpha.sqrt() / one_minus
    mu_coef_x0[0], mu_coef_xt[0] = 1.0, 0.0  # "stepping" from t = 0 keeps x0
    sigma2 = beta_tilde if variance == "posterior" else beta
    return Schedule(T, kind, variance, None if clip_x0 is None else float(clip_x0), beta, alpha, alpha_bar,
                    alpha_bar_prev, beta_tilde, mu_coef_x0, mu_coef_xt, sigma2)


def extract(coef: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """coef[t] shaped to broadcast against x: coef (T+1,), t int64 (B,), x (B, ...) -> (B, 1, ...),
    in x's dtype and device. The one place where per-sample coefficients get reshaped."""
    if coef.ndim != 1:
        raise ValueError(f"coef must be 1-D, got shape {tuple(coef.shape)}")
    t = torch.as_tensor(t, device=x.device).long()
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or ({x.shape[0]},), got shape {tuple(t.shape)}")
    out = coef.to(x.device)[t].to(x.dtype)
    return out.reshape(-1, *([1] * (x.ndim - 1)))


# ============================================================== random numbers
def mix(*ints: int) -> int:
    """A 63-bit seed from a tuple of integers (blake2b), so nearby tuples give unrelated streams."""
    digest = hashlib.blake2b(",".join(map(str, ints)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generators(seed: int, n: int, *stream: int, start: int = 0) -> list[torch.Generator]:
    """One CPU generator per image, image i seeded by mix(seed, *stream, i), for i = start .. start + n - 1:
    the one rule of every sampling command. An image depends only on its own seed and index (not on the
    batch it is drawn in), and no two (seed, image) pairs share a stream; `stream` keeps apart the draws of
    different purposes under one seed."""
    return [torch.Generator().manual_seed(mix(seed, *stream, i)) for i in range(start, start + n)]


def randn(shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Noise of `shape`, drawn on the generator's device and moved to `device`.

    generator: None (global RNG), one torch.Generator, or a list of shape[0] generators (one per sample)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"need one generator per sample: {len(generator)} for {shape[0]}")
        return torch.stack([torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype)
                            for g in generator]).to(device)
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def randn_like(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Standard normal noise shaped like x (generator as in `randn`)."""
    return randn(x.shape, generator, x.device, x.dtype)


# ============================================================== forward process
def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t ~ q(x_t | x_0): x0, eps (B, ...); t int64 (B,) in 0..T. Returns x_t (B, ...)."""
    # x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps                               (Eq. 4)
    return extract(schedule.alpha_bar.sqrt(), t, x0) * x0 + extract((1 - schedule.alpha_bar).sqrt(), t, x0) * eps


def predict_x0(schedule: Schedule, x_t, t, eps):
    """The clean image that x_t and eps imply (Eq. 4 solved for x_0)."""
    # x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)                       (Eq. 15)
    return (x_t - extract((1 - schedule.alpha_bar).sqrt(), t, x_t) * eps) / extract(schedule.alpha_bar.sqrt(), t, x_t)


def predict_eps(schedule: Schedule, x_t, t, x0):
    """The noise that x_t and x0 imply (Eq. 4 solved for eps)."""
    # eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t)
    return (x_t - extract(schedule.alpha_bar.sqrt(), t, x_t) * x0) / extract((1 - schedule.alpha_bar).sqrt(), t, x_t)


# ================================================================== the loss
def drop_labels(y: torch.Tensor, num_classes: int, p_uncond: float, generator=None) -> torch.Tensor:
    """Replace each label by the null token num_classes with probability p_uncond (classifier-free guidance
    training). One generator: one draw for the batch."""
    if p_uncond <= 0:
        return y
    drop = torch.rand(y.shape, generator=generator, device=y.device if generator is None else generator.device)
    return torch.where(drop.to(y.device) < p_uncond, torch.full_like(y, num_classes), y)


class TrainingDraws(NamedTuple):
    t: torch.Tensor  # int64 (B,) in 1..T
    eps: torch.Tensor  # (B, ...) like x0
    y: Optional[torch.Tensor]  # (B,) labels with the dropped ones set to null, or None


def training_draws(schedule: Schedule, x0: torch.Tensor, y, num_classes: int, p_uncond: float,
                   generator=None) -> TrainingDraws:
    """The random numbers of one training step, in one of two orders (both kept, so that runs made with
    either retrain bit for bit):
    - one generator (or None) for the batch: t (B,), then eps, then the label dropout (only when there are
      labels and p_uncond > 0): the two-pixel, MNIST and CS180 trainers;
    - a list of B generators, one per sample: each draws t, then its dropout, then its eps, so that a sample's
      numbers do not depend on the batch it is in (the image trainer, torchrun-safe)."""
    B = x0.shape[0]
    if isinstance(generator, (list, tuple)):
        t = torch.stack([torch.randint(1, schedule.T + 1, (), generator=g) for g in generator]).to(x0.device)
        drop = torch.stack([torch.rand((), generator=g) < p_uncond for g in generator]).to(x0.device)
        eps = randn(x0.shape, generator, x0.device, x0.dtype)
        if y is not None and num_classes:
            y = torch.where(drop, torch.full_like(y, num_classes), y)
        return TrainingDraws(t, eps, y)
    gen_device = generator.device if generator is not None else x0.device
    t = torch.randint(1, schedule.T + 1, (B,), generator=generator, device=gen_device).to(x0.device)
    eps = randn_like(x0, generator)
    if y is not None:
        y = drop_labels(y, num_classes, p_uncond, generator)
    return TrainingDraws(t, eps, y)


def p_losses(eps_model, schedule: Schedule, x0: torch.Tensor, y: Optional[torch.Tensor] = None,
             loss: str = "l2", p_uncond: float = 0.1, generator=None, num_classes: Optional[int] = None) -> torch.Tensor:
    """The simplified DDPM loss per sample. x0: (B, ...) clean images; y: (B,) labels or None;
    generator: one, or one per sample (see training_draws); num_classes: the null label (default
    eps_model.num_classes; give it where eps_model is a DDP wrapper). Returns (B,): the mean over pixels,
    for the caller to reduce."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if y is not None and num_classes is None:
        num_classes = eps_model.num_classes
    t, eps, y = training_draws(schedule, x0, y, num_classes, p_uncond, generator)  # t ~ U{1..T}, eps ~ N(0, I)
    x_t = q_sample(schedule, x0, t, eps)  # x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps  (Eq. 4)
    eps_hat = eps_model(x_t, t, y)  # eps_theta(x_t, t, y), y dropped to null with probability p_uncond
    error = {"l2": F.mse_loss, "l1": F.l1_loss, "huber": F.smooth_l1_loss}[loss]
    return error(eps_hat, eps, reduction="none").reshape(x0.shape[0], -1).mean(1)  # ||eps - eps_theta||^2 (Eq. 14)


# ================================================================== sampling
class WrappedPredictor(torch.nn.Module):
    """Base of a noise predictor built on another one (the illusions of CS180 part A, guidance tricks):
    it answers for the T and the labels of the predictor it wraps, so the sampler checks its schedule
    and guides it as that one. Subclasses define forward(x_t, t, y)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    @property
    def T(self) -> Optional[int]:
        return getattr(self.model, "T", None)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes


@dataclass(frozen=True)
class SamplerSettings:
    """How to run the reverse chain; every sampler takes one of these, so any sampler plugs in without new
    parameters. solver: None for this module's DDPM / DDIM, or another sampler called as p_sample_loop is that
    says which timesteps it visits (solver.timesteps(schedule, settings)): diffusers' solvers, solvers.py."""

    steps: Optional[int] = None  # None: the full ancestral chain t = T..1 (Ho et al. Alg. 2); S: DDIM over S steps
    eta: float = 0.0  # DDIM's noise (Song et al. 2021): 0 deterministic, 1 the ancestral variance
    w: float = 0.0  # classifier-free guidance scale (ignored without labels)
    timesteps: Optional[tuple] = None  # instead of steps: DDIM over this descending tuple ending at 0 (SDEdit)
    clip_x0: Union[str, float, None] = "schedule"  # clip x0_hat to the schedule's range, to this, or None: not
    spacing: str = "linspace"  # how S steps are spread over 1..T (SPACINGS, diffusers' names; ddim_timesteps)
    solver: Optional[object] = None

    def clip(self, schedule: Schedule) -> Optional[float]:
        return schedule.clip_x0 if self.clip_x0 == "schedule" else self.clip_x0


def guided_eps(eps_model, x_t, t, y=None, w: float = 0.0):
    """Classifier-free guidance (Ho & Salimans 2022). y: None (unconditional: w is ignored) or int64 (B,).
    The conditional and unconditional passes run as one batch."""
    B = x_t.shape[0]
    t = torch.as_tensor(t, device=x_t.device)
    t = (t if t.is_floating_point() else t.long()).expand(B)  # a float t: flow.py's tau T
    if y is None:
        return eps_model(x_t, t, None)
    if w == 0:
        return eps_model(x_t, t, y)
    null = torch.full_like(y, eps_model.num_classes)  # the 'no label' token
    eps_c, eps_u = eps_model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
    return (1 + w) * eps_c - w * eps_u  # eps = (1 + w) eps(x_t, t, y) - w eps(x_t, t, null)


class Step(NamedTuple):
    """One reverse step: the new state x_{t_prev}, and the clean image predicted on the way."""

    t_prev: int
    x: torch.Tensor
    x0_hat: torch.Tensor


def p_sample(eps_model, schedule: Schedule, x_t, t: int, y=None, w: float = 0.0, generator=None,
             clip_x0="schedule") -> Step:
    """One ancestral step x_t -> x_{t-1} (Ho et al. Alg. 2), in the x0 form of diffusers' DDPMScheduler.step.
    x_t (B, ...); t an int in 1..T. Without clipping this is Eq. 11 exactly; with it, a small eps error at
    t = T (where sqrt(alpha_bar_T) is tiny under the cosine schedule) cannot throw a sample off the data."""
    clip = schedule.clip_x0 if clip_x0 == "schedule" else clip_x0
    # 1. eps = (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, null)
    eps = guided_eps(eps_model, x_t, t, y, w)
    # 2. x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)                      (Eq. 15)
    x0_hat = predict_x0(schedule, x_t, t, eps)
    # 3. x0_hat clipped to [-clip, clip]
    if clip is not None:
        x0_hat = x0_hat.clamp(-clip, clip)
    # 4. mu = mu_tilde_t(x_t, x0_hat) = mu_coef_x0_t x0_hat + mu_coef_xt_t x_t                  (Eq. 7)
    mu = extract(schedule.mu_coef_x0, t, x_t) * x0_hat + extract(schedule.mu_coef_xt, t, x_t) * x_t
    # 5. x_{t-1} = mu + sigma_t z, z ~ N(0, I); no noise on the last step (t = 1)              (Alg. 2)
    x_prev = mu + extract(schedule.sigma2.sqrt(), t, x_t) * randn_like(x_t, generator) if t > 1 else mu
    return Step(t - 1, x_prev, x0_hat)


def ddim_step(eps_model, schedule: Schedule, x_t, t: int, t_prev: int, y=None, w: float = 0.0,
              eta: float = 0.0, generator=None, clip_x0="schedule") -> Step:
    """One DDIM step x_t -> x_{t_prev}, t_prev < t (Song et al. 2021, Eq. 12). eta = 0 is deterministic;
    eta = 1 with t_prev = t - 1 is the ancestral step with sigma^2 = beta_tilde."""
    clip = schedule.clip_x0 if clip_x0 == "schedule" else clip_x0
    eps = guided_eps(eps_model, x_t, t, y, w)  # guided eps_theta(x_t, t, y)
    x0_hat = predict_x0(schedule, x_t, t, eps)  # (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
    if clip is not None:
        x0_hat = x0_hat.clamp(-clip, clip)
        eps = predict_eps(schedule, x_t, t, x0_hat)  # the eps that agrees with the clipped x0_hat
    ab_t = extract(schedule.alpha_bar, t, x_t)
    ab_prev = extract(schedule.alpha_bar, t_prev, x_t)
    # sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)   (Eq. 16)
    sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).sqrt()
    # x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z             (Eq. 12)
    x_prev = ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0 and t_prev > 0:
        x_prev = x_prev + sigma * randn_like(x_t, generator)
    return Step(t_prev, x_prev, x0_hat)


def ddim_timesteps(T: int, steps: int, spacing: str = "linspace") -> list[int]:
    """`steps` distinct timesteps from at most T down to at least 1, descending, spread by `spacing` (diffusers'
    names; its timestep i is our t = i + 1):
      linspace   evenly from T to 1, both ends included;
      leading    1 + k T // steps for k = steps - 1 .. 0: starts below T (never at the noisiest step);
      trailing   T - k T / steps, rounded, for k = 0 .. steps - 1: starts at T, ends at T / steps;
      quadratic  1 + (T - 1) (k / (steps - 1))^2: dense near the data (Song et al. 2021's CIFAR-10 choice)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in 1..T={T}, got {steps}")
    if spacing == "linspace":
        ts = torch.linspace(T, 1, steps, dtype=torch.float64).round()
    elif spacing == "leading":
        ts = torch.arange(steps - 1, -1, -1, dtype=torch.float64) * (T // steps) + 1
    elif spacing == "trailing":
        ts = torch.arange(T, 0, -T / steps, dtype=torch.float64).round()
    elif spacing == "quadratic":
        ts = (torch.linspace(1, 0, steps, dtype=torch.float64) ** 2 * (T - 1) + 1).round()
    else:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return sorted(set(ts.long().tolist()), reverse=True)


def check_timesteps(schedule: Schedule, timesteps: Sequence[int]) -> list[int]:
    """A sampler's timestep list: strictly descending integers in T..0 that end at 0."""
    ts = [int(t) for t in timesteps]
    if len(ts) < 2 or ts[-1] != 0 or ts[0] > schedule.T or any(a <= b for a, b in zip(ts[:-1], ts[1:])):
        raise ValueError(f"timesteps must descend strictly from at most T={schedule.T} to 0, got {ts}")
    return ts


def visited(schedule: Schedule, settings: SamplerSettings) -> list[int]:
    """The timesteps a sampler with these settings visits, from where it starts down to 0."""
    if settings.solver is not None:
        return settings.solver.timesteps(schedule, settings)
    if settings.timesteps is not None:
        return check_timesteps(schedule, settings.timesteps)
    if settings.steps is None:
        return list(range(schedule.T, -1, -1))
    return ddim_timesteps(schedule.T, settings.steps, settings.spacing) + [0]


def p_sample_loop(eps_model, schedule: Schedule, x_T: torch.Tensor, y=None,
                  settings: SamplerSettings = SamplerSettings(), generator=None, project=None) -> Iterator[Step]:
    """Run the reverse chain from x_T, yielding every step (improved-diffusion's progressive loop).

    settings.steps None: the full ancestral DDPM chain; else DDIM (see SamplerSettings). x_T is the state
    at the first visited timestep. project(x, t_prev) -> x, if given, is applied after every step (RePaint's
    overwrite of the known pixels). The last Step yielded has t_prev = 0 and x = x_0."""
    s, x = settings, x_T
    if s.solver is not None:  # another sampler (a diffusers solver): the same arguments, the same Steps
        yield from s.solver(eps_model, schedule, x_T, y, s, generator, project)
        return
    # DDIM with eta = 1 over all T steps is the ancestral step exactly when sigma^2 = beta_tilde
    ancestral = s.timesteps is None and (s.steps is None or s.steps == schedule.T and s.eta == 1.0
                                         and schedule.variance == "posterior")
    ts = list(range(schedule.T, -1, -1)) if ancestral else visited(schedule, s)
    for t, t_prev in zip(ts[:-1], ts[1:]):
        if ancestral:
            step = p_sample(eps_model, schedule, x, t, y, s.w, generator, s.clip_x0)
        else:
            step = ddim_step(eps_model, schedule, x, t, t_prev, y, s.w, s.eta, generator, s.clip_x0)
        x = step.x if project is None else project(step.x, step.t_prev)
        yield step._replace(x=x)


class Trajectory(NamedTuple):
    """The states a sampler visited: t (S+1,) descending from T to 0; x (S+1, N, ...) with x[i]
    the state at time t[i]; x0_hat (S+1, N, ...) the clean image predicted at t[i] (at t = 0, x_0)."""

    t: torch.Tensor
    x: torch.Tensor
    x0_hat: torch.Tensor

    def at(self, t: int) -> torch.Tensor:
        """x_t (N, ...) for a visited timestep t."""
        hits = (self.t == t).nonzero()
        if len(hits) == 0:
            raise ValueError(f"t={t} was not visited; visited: {self.t.tolist()}")
        return self.x[int(hits[0])]


def matched_prior(schedule: Schedule, z: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """x_T from the Gaussian with q(x_T)'s per-coordinate mean and variance, instead of N(0, I).

    x_T = sqrt(alpha_bar_T) x_0 + sqrt(1 - alpha_bar_T) eps has mean sqrt(alpha_bar_T) E[x_0] and variance
    alpha_bar_T Var[x_0] + 1 - alpha_bar_T, so this returns sqrt(alpha_bar_T) mean + sqrt(alpha_bar_T var +
    1 - alpha_bar_T) z for standard normal z (N, ...) and the data's mean and var (broadcast to one sample).
    It matters when alpha_bar_T is not near 0: CS180's T = 300 linear schedule keeps sqrt(alpha_bar_T) = 0.22
    of the image in x_T (Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed", 2024)."""
    ab = schedule.alpha_bar[schedule.T].to(z.device, z.dtype)
    mean, var = mean.to(z.device, z.dtype), var.to(z.device, z.dtype)
    return ab.sqrt() * mean + (ab * var + 1 - ab).sqrt() * z


def as_labels(y, n: int, num_classes: int, device) -> Optional[torch.Tensor]:
    """None, an int, or a sequence/tensor of n labels -> int64 (n,) or None; rejects bad labels."""
    if y is None:
        return None
    y = torch.as_tensor(y, device=device)
    if y.is_floating_point() or y.is_complex():
        raise ValueError(f"class labels must be integers, got {y.dtype}")
    y = y.long().expand(n) if y.ndim == 0 else y.long()
    if y.shape != (n,):
        raise ValueError(f"need one label per sample: got shape {tuple(y.shape)} for n={n}")
    if ((y < 0) | (y > num_classes)).any():
        raise ValueError(f"class labels must be in 0..{num_classes - 1} (or {num_classes} for 'no label')")
    return y


@torch.no_grad()
def sample(eps_model, schedule: Schedule, n: int, y=None, settings: SamplerSettings = SamplerSettings(),
           generator=None, *, x_T: Optional[torch.Tensor] = None, shape: Sequence[int] = (2,), device=None,
           trajectory: bool = False, progress: bool = False, project=None):
    """Draw n samples with any noise predictor (a network or `GMM().noise_predictor(schedule)`).

    y: None (unconditional), an int label for all, or (n,) labels; settings: steps, eta, guidance w,
    timesteps, clipping (SamplerSettings); generator: one torch.Generator, or a list of n (one seed per
    sample: `generators(seed, n)`); x_T: start here instead of drawing noise; shape: one sample's shape
    ((2,) for two-pixel images, (1, 28, 28) for MNIST); project: see p_sample_loop.
    Returns x_0 (n, *shape); with trajectory=True, (x_0, Trajectory)."""
    if getattr(eps_model, "objective", "eps") != "eps" and settings.solver is None:
        raise ValueError("this model predicts a velocity (flow matching), not the noise: sample it with "
                         "flow.flow_settings(steps)")
    T = getattr(eps_model, "T", None)
    if T is not None and T != schedule.T:
        raise ValueError(f"the model was trained with T={T} but the schedule has T={schedule.T}; "
                         "use the schedule its checkpoint was trained with")
    if device is None:
        device = next(iter(eps_model.parameters()), torch.empty(0)).device if hasattr(eps_model, "parameters") else "cpu"
    x_T = (randn((n, *shape), generator, device) if x_T is None else x_T).to(device)
    y = as_labels(y, x_T.shape[0], eps_model.num_classes, device)
    ts = visited(schedule, settings)
    was_training = getattr(eps_model, "training", False)
    if hasattr(eps_model, "eval"):
        eps_model.eval()
    ts_seen, xs, x0s, x = [ts[0]], [x_T], [], x_T
    try:
        loop = p_sample_loop(eps_model, schedule, x_T, y, settings, generator, project)
        for step in tqdm(loop, total=len(ts) - 1, desc="sampling", leave=False, disable=not progress):
            if trajectory:
                ts_seen.append(step.t_prev)
                xs.append(step.x)
                x0s.append(step.x0_hat)
            x = step.x
    finally:
        if was_training:
            eps_model.train()
    if not trajectory:
        return x
    x0s.append(x)
    return x, Trajectory(torch.tensor(ts_seen), torch.stack(xs), torch.stack(x0s))


# ================================================================== training
class NonFiniteError(ValueError):
    """A loss, weights or images that became nan or inf: stop rather than save or show them."""


def check_finite_weights(state: dict, what: str = "the model") -> None:
    """NonFiniteError if any floating-point tensor of a state_dict (nested dicts too) holds nan or inf."""
    for name, v in state.items():
        if isinstance(v, dict):
            check_finite_weights(v, what)
        elif torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all():
            raise NonFiniteError(f"{what} has non-finite weights ({name}), which are not saved (try a lower --lr)")


class EMA:
    """Exponential moving average of a model's weights, with the usual warm-up
    decay_n = min(decay, (1 + n) / (10 + n)) so early averages are not dominated by the init."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        # theta_ema <- d theta_ema + (1 - d) theta, one kernel for all tensors
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, device=None) -> Iterator[torch.Tensor]:
    """Index batches of a dataset of n items, epoch after epoch: each epoch draws one permutation from
    `generator` (when its first batch is asked for) and cuts it into batches of batch_size, the last one
    smaller when batch_size does not divide n. Endless: fit's step count ends it."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            yield perm[i:i + batch_size].to(device)


class Fitted(NamedTuple):
    losses: list  # the loss of every step, earlier sessions' included
    step: int  # steps done, earlier sessions' included
    seconds: float  # this session's training wall time


@dataclass
class FitHooks:
    """What a trainer adds around fit's steps (every field optional).

    lr_at(step) -> the learning rate of that step; mean(loss) -> the float to log (default loss.item(); under
    DDP the mean over the processes); after_step(step, seconds) -> what happens between steps (saves, the end
    of an epoch); stop(seconds) -> True ends the session early (a wall-clock budget); stopped_note() -> what
    was kept, ending the message of a loss that became nan or inf."""

    lr_at: Optional[object] = None
    mean: Optional[object] = None
    after_step: Optional[object] = None
    stop: Optional[object] = None
    stopped_note: Optional[object] = None


def fit(model: torch.nn.Module, opt: torch.optim.Optimizer, batches: Iterator, loss_fn, steps: int, *,
        hooks: FitHooks = FitHooks(), total: Optional[int] = None, start: int = 0, losses: Optional[list] = None,
        grad_clip: Optional[float] = None, ema: Optional[EMA] = None, scaler=None, progress: bool = False,
        desc: str = "training") -> Fitted:
    """The training loop: every trainer of the package (two-pixel, MNIST, CS180 B.1 and B.2, colour images,
    the metric classifiers) runs its steps through this function and keeps only what is its own (data
    order, loss, checkpoints) in loss_fn and `hooks`.

    For step = start, ..., steps - 1 (0-based; `total`, default steps, is the whole run's length when this
    session stops short of it, for the progress bar and messages):
      1. batch = next(batches); the learning rate <- hooks.lr_at(step) when given;
      2. loss = loss_fn(batch, step), a scalar tensor; value = hooks.mean(loss) or loss.item();
      3. a nan or inf value raises NonFiniteError naming the step, before the update, so the weights stay
         those of the last finite loss;
      4. backward, gradient-norm clip to grad_clip, opt.step(), ema.update(model);
      5. losses.append(value); hooks.after_step(step + 1, seconds); stop early when hooks.stop(seconds).
    `losses` (the earlier sessions' losses on --resume) is appended to in place. Nothing random is drawn
    here: batches and loss_fn own the random numbers, so each trainer keeps its own seeding."""
    losses = [] if losses is None else losses
    total = steps if total is None else total
    h = hooks
    bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True, disable=not progress)
    model.train()
    t0 = time.perf_counter()
    step = start
    try:
        while step < steps:
            batch = next(batches)
            if h.lr_at is not None:
                for group in opt.param_groups:
                    group["lr"] = h.lr_at(step)
            loss = loss_fn(batch, step)
            value = loss.item() if h.mean is None else h.mean(loss)
            if not math.isfinite(value):
                note = f"; {h.stopped_note()}" if h.stopped_note is not None else ""
                raise NonFiniteError(f"the training loss became {value} at step {step + 1} of {total}; training "
                                     f"stopped (try a lower --lr){note}")
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if grad_clip is not None:
                    scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
            else:
                loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            if ema is not None:
                ema.update(model)
            losses.append(value)
            step += 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}", refresh=False)
            seconds = time.perf_counter() - t0
            if h.after_step is not None:
                h.after_step(step, seconds)
            if h.stop is not None and h.stop(seconds):
                break
    finally:
        bar.close()
    return Fitted(losses, step, time.perf_counter() - t0)
