"""CS180 part A's denoising and sampling pages, A.1 - A.6, each measured, then typeset:

  A.1 forward process        cs180_forward         test digits noised to t = 0 .. T
  A.2-A.4 denoising          cs180_denoise         noisy / Gaussian blur / one-step / iterative, per t
  A.4 iterative denoising    cs180_progression     x_t every 5th strided step, then the three estimates
  A.5-A.6 sampling           cs180_sampling        per label, w = 0 and classifier-free guidance;
                             cs180_unconditional   and with the null label (the empty prompt);
                             cs180_sampling.gif    the guided chains of one sample per digit, x_t beside x0_hat

Every measure_* function takes the context (cs180.parta_context.PartA) and returns the images and numbers
its page shows; every *_page function draws the figure and writes the text from them.
"""
from __future__ import annotations

import itertools
import os
from typing import NamedTuple

import torch

from report.animation import image_frames, trajectory_steps, write_gif
from report.pages import Figure, Page
from utils import Trajectory, generators, randn

from . import techniques as ed
from .figures import image_grid
from .parta_context import PartA

PROGRESS_EVERY = 5  # A.4: show x_t every 5th strided step, as CS180
BLUR_SIGMAS = (0.5, 1.0, 1.5, 2.0)  # A.2's candidates: the best (by PSNR) per t is used
DENOISERS = dict(blur="Gaussian blur", one="one-step", it="iterative")


def _n(k: int, noun: str) -> str:
    """'1 different digit', '3 different digits'."""
    return f"{k} {noun}{'' if k == 1 else 's'}"


def _ranked(scores: dict) -> str:
    """'a scores highest and c lowest' (ties: 'a and b score highest'), from {name: score}, higher = better."""
    hi, lo = max(scores.values()), min(scores.values())
    if hi == lo:
        return "all score the same"
    top = [k for k, v in scores.items() if v == hi]
    bottom = [k for k, v in scores.items() if v == lo]
    verb = "scores" if len(top) == 1 else "score"
    return f"{' and '.join(top)} {verb} highest and {' and '.join(bottom)} lowest"


# ===================================================================== A.1
class Forward(NamedTuple):
    levels: list  # the noise levels t shown
    noised: dict  # t -> x_t (N, 1, 28, 28) of every test digit
    alpha_bar: dict  # t -> alpha_bar_t
    agree: dict  # t -> share of x_t the classifier reads as the true digit


def measure_forward(a: PartA) -> Forward:
    T = a.schedule.T
    levels = [0, T // 8, T // 4, T // 2, 3 * T // 4, T]
    noised = {t: ed.forward_noise(a.schedule, a.x0, t, generators(a.settings.seed, len(a.x0))).x_t for t in levels}
    return Forward(levels, noised, {t: a.schedule.alpha_bar[t].item() for t in levels},
                   {t: (a.read(noised[t]) == a.y).float().mean().item() for t in levels})


def forward_page(a: PartA, m: Forward) -> Page:
    levels, ab, agree, T, n = m.levels, m.alpha_bar, m.agree, a.schedule.T, len(a.x0)
    png = image_grid([[m.noised[t][i] for t in levels] for i in a.show], a.fig_dir, "cs180_forward",
                     [f"test digit {int(a.y[i])}" for i in a.show], [f"t = {t}" for t in levels])
    readable = list(itertools.takewhile(lambda t: agree[t] >= 0.5, levels))  # the levels up to the first below half
    fig = Figure(png, f"A grid of small grey images: rows {', '.join(str(int(a.y[i])) for i in a.show)} are test digits, "
                      f"columns the noise levels t = {', '.join(map(str, levels))}; the digit fades into noise "
                      "from left to right.", f"Figure. Test digits noised to t = {', '.join(map(str, levels))}.")
    return Page.of_text("CS180 A.1: the forward process", [fig],
                        "A.1 Forward process. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps with the model's "
                        f"cosine schedule (T={T}): sqrt(alpha_bar_t) = " +
                        ", ".join(f"{ab[t] ** 0.5:.3f} at t={t}" for t in levels) +
                        ". The metric classifier still reads the true digit in " +
                        ", ".join(f"{agree[t]:.0%} at t={t}" for t in levels) + f" of {n} test digits.",
                        answers=f"Forward process: test digits noised to t = {', '.join(map(str, levels))} (T = {T}) by "
                                f"x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps: the clean digit's weight "
                                f"sqrt(alpha_bar_t) goes from {ab[levels[0]] ** 0.5:.2f} at t = {levels[0]} to "
                                f"{ab[levels[-1]] ** 0.5:.2f} at t = {levels[-1]}, and the classifier reads the true "
                                f"digit in {agree[levels[0]]:.0%} and {agree[levels[-1]]:.0%} of {n} test digits there"
                                + (f"; it still reads at least half of them up to t = {readable[-1]}." if readable
                                   else "."))


# ================================================================= A.2-A.4
class Denoising(NamedTuple):
    stats: list  # per t: (t, the blur's sigma, {method: (mean PSNR dB, mean SSIM)}), methods as DENOISERS
    rows: list  # per t: clean, noisy x_t, blur, one-step, iterative of the digit shown


def measure_denoising(a: PartA) -> Denoising:
    """Noise every test digit to each t (no label), denoise it three ways, score each against the clean digit."""
    model, schedule, x0, s = a.model, a.schedule, a.x0, a.settings
    rows, stats = [], []
    for t in s.ts:
        nz = ed.forward_noise(schedule, x0, t, generators(s.seed, len(x0), 1))
        scale = schedule.alpha_bar[t].sqrt().item()
        sig = max(BLUR_SIGMAS, key=lambda v: ed.psnr(ed.gaussian_blur_denoise(nz.x_t / scale, v), x0).mean())
        outs = dict(blur=ed.gaussian_blur_denoise(nz.x_t / scale, sig),
                    one=ed.one_step_denoise(model, schedule, nz.x_t, t),
                    it=ed.iterative_denoise(model, schedule, nz.x_t, t, steps=s.steps))
        stats.append((t, sig, {k: (ed.psnr(v, x0).mean().item(), ed.ssim(v, x0).mean().item()) for k, v in outs.items()}))
        i = a.show[1]
        rows.append([x0[i], nz.x_t[i], outs["blur"][i], outs["one"][i], outs["it"][i]])
    return Denoising(stats, rows)


def denoising_page(a: PartA, m: Denoising) -> Page:
    stats, n = m.stats, len(a.x0)
    png = image_grid(m.rows, a.fig_dir, "cs180_denoise", [f"t = {t}" for t in a.settings.ts],
                     ["clean", "noisy x_t", "Gaussian blur", "one-step", "iterative"])
    lines, split = [], []
    for t, sig, s in stats:
        best_psnr, best_ssim = max(s, key=lambda k: s[k][0]), max(s, key=lambda k: s[k][1])
        lines.append(f"t={t}: best PSNR {DENOISERS[best_psnr]}, best SSIM {DENOISERS[best_ssim]}")
        if best_psnr == "one" and best_ssim == "it":
            split.append(f"t={t}")
    why = (f" At {', '.join(split)} one-step wins on PSNR but iterative on SSIM: one-step returns the network's "
           "estimate of the mean E[x_0 | x_t], a blurred average that squared error favours, while the iterative "
           "chain commits to one sharp digit." if split else "")
    per_t = lambda k: ", ".join(f"{s[k][0]:.1f} dB / SSIM {s[k][1]:.2f} at t={t}" for t, _, s in stats)
    beats = lambda k, o, j: sum(round(s[k][j], 1 + j) > round(s[o][j], 1 + j)  # as printed: k above o (0 PSNR, 1 SSIM)
                                for _, _, s in stats)
    of_ts = f"of {len(stats)} noise level{'s' if len(stats) > 1 else ''}"
    fig = Figure(png, "A grid of small grey images, one row per noise level t: the clean test digit, its noisy x_t, "
                      "and the Gaussian-blur, one-step and iterative estimates of the clean digit.",
                 "Figure. One test digit per noise level: clean, noisy, and denoised three ways.")
    return Page.of_text("CS180 A.2-A.4: denoising", [fig],
                        f"A.2-A.4 Denoising {n} test digits (no label, the empty prompt) at t = "
                        f"{', '.join(str(t) for t, _, _ in stats)}: one test digit shown per t; PSNR and SSIM (above) "
                        f"are means over all {n} against the clean digit. The blur filters x_t / sqrt(alpha_bar_t) with "
                        f"the sigma of {', '.join(f'{v:g}' for v in BLUR_SIGMAS)} that gives the highest PSNR at that "
                        "t. Best per noise level: " + "; ".join(lines) + "." + why,
                        answers=f"Gaussian blur (A.2): the best blur of x_t / sqrt(alpha_bar_t) (sigma "
                                f"{', '.join(f'{sig} at t={t}' for t, sig, _ in stats)}, picked for PSNR) gives "
                                f"{per_t('blur')} on {n} test digits.\n\n"
                                f"One-step (A.3): removing the network's noise estimate in one pass gives "
                                f"{per_t('one')}: above the blur in PSNR at {beats('one', 'blur', 0)} "
                                f"{of_ts}, in SSIM at {beats('one', 'blur', 1)}.\n\n"
                                f"Iterative (A.4): the strided chain from t down to 0 gives {per_t('it')}: above "
                                f"one-step in PSNR at {beats('it', 'one', 0)} {of_ts}, in SSIM at "
                                f"{beats('it', 'one', 1)}; above the blur in PSNR at {beats('it', 'blur', 0)}, in SSIM "
                                f"at {beats('it', 'blur', 1)}.")


# ===================================================================== A.4
class Progression(NamedTuple):
    i_start: int  # where the chain starts: i_start = steps // 4 (CS180: i_start = 10, every 5th loop)
    t: int  # its noise level
    trajectory: Trajectory  # every x_t the chain visits
    final: torch.Tensor  # the chain's x_0, (3, 1, 28, 28): the digits shown
    one: torch.Tensor  # the one-step estimate from x_t
    blur: torch.Tensor  # a Gaussian blur (sigma 1.5) of x_t / sqrt(alpha_bar_t)
    psnr: dict  # "iterative" / "one-step" / "blur" -> mean PSNR (dB) to the clean digits


def measure_progression(a: PartA) -> Progression:
    s, show = a.settings, a.show
    i_prog = max(1, s.steps // 4)
    t_prog = a.i_ts[i_prog]
    x_prog = ed.forward_noise(a.schedule, a.x0[show], t_prog,  # the A.2 noise of these digits
                              [generators(s.seed, 1, 1, start=i)[0] for i in show]).x_t
    final, traj = ed.iterative_denoise(a.model, a.schedule, x_prog, t_prog, steps=s.steps, trajectory=True)
    one = ed.one_step_denoise(a.model, a.schedule, x_prog, t_prog)
    blur = ed.gaussian_blur_denoise(x_prog / a.schedule.alpha_bar[t_prog].sqrt().item(), 1.5)
    psnr = {k: ed.psnr(v, a.x0[show]).mean().item() for k, v in (("iterative", final), ("one-step", one),
                                                                  ("blur", blur))}
    return Progression(i_prog, t_prog, traj, final, one, blur, psnr)


def progression_page(a: PartA, m: Progression) -> Page:
    traj, t_prog, i_prog, steps, i_ts = m.trajectory, m.t, m.i_start, a.settings.steps, a.i_ts
    shown_steps = list(range(0, len(traj.t) - 1, PROGRESS_EVERY))
    png = image_grid([[traj.x[k][r] for k in shown_steps] + [m.final[r], m.one[r], m.blur[r], a.x0[a.show][r]]
                      for r in range(len(a.show))], a.fig_dir, "cs180_progression",
                     [f"test digit {int(a.y[i])}" for i in a.show],
                     [f"t = {int(traj.t[k])}" for k in shown_steps] + ["iterative\nx_0", "one-step", "blur\nsigma 1.5",
                                                                         "clean"],
                     groups=[(0, len(shown_steps) - 1, f"x_t every {PROGRESS_EVERY}th step of the chain"),
                             (len(shown_steps), len(shown_steps) + 2, f"estimates of x_0 from t = {t_prog}")])
    p_it, p_one, p_blur = m.psnr["iterative"], m.psnr["one-step"], m.psnr["blur"]
    visited = ", ".join(str(int(traj.t[k])) for k in shown_steps)
    fig = Figure(png, f"Three rows, one per test digit: the noisy x_t every {PROGRESS_EVERY}th step of the chain "
                      f"(t = {visited}), getting cleaner from left to right, then the iterative x_0, the one-step "
                      "estimate, a Gaussian blur and the clean digit.",
                 f"Figure. Iterative denoising from t = {t_prog}, every {PROGRESS_EVERY}th step, and three "
                 "estimates of the clean digit.")
    return Page.of_text("CS180 A.4: iterative denoising, step by step", [fig],
                        f"A.4 Iterative denoising from t = {t_prog} (i_start = {i_prog} of {steps} strided steps, "
                        f"stride {i_ts[0] - i_ts[1]}; CS180 starts at i_start = 10, t = 690 of 1000), no label, DDIM "
                        f"(eta = 0). Left: the state x_t after every {PROGRESS_EVERY}th step (t = {visited}); right: "
                        f"the final iterative x_0, the one-step estimate x0_hat from x_{t_prog} and a Gaussian blur of "
                        f"x_{t_prog} / sqrt(alpha_bar) (sigma 1.5). PSNR to the clean digits (these {len(a.show)}): "
                        f"iterative {p_it:.1f} dB, one-step {p_one:.1f} dB, blur {p_blur:.1f} dB.",
                        answers=f"Iterative denoising: from x_{t_prog} (i_start = {i_prog}), the figure shows the "
                                f"noisy x_t every {PROGRESS_EVERY}th step of the chain, at t = {visited}, then the "
                                f"final clean estimate x_0.\n\n"
                                f"Compared with one step and blur: PSNR to the clean digits is {p_it:.1f} dB "
                                f"iterative, {p_one:.1f} dB one-step, {p_blur:.1f} dB blur (sigma 1.5), so "
                                + _ranked({k: round(v, 1) for k, v in m.psnr.items()})
                                + f" on these {len(a.show)} digits"
                                + (" (PSNR favours one-step's blurred average of the digits x_t could be; the chain "
                                   "commits to one sharp digit)." if round(p_one, 1) > round(p_it, 1) else "."))


# ================================================================= A.5-A.6
class Sampling(NamedTuple):
    labels: torch.Tensor  # (N,): each digit n // 10 times
    drawn: dict  # w (0 and the guidance) -> samples (N, 1, 28, 28) asking for `labels`, from the same noise
    guided: Trajectory  # the guided chain of the first sample of each digit (10 images): every x_t and x0_hat
    uncond: torch.Tensor  # (N, 1, 28, 28): the same noise with the null label
    agree: dict  # w -> share read as the label asked for
    u_read: torch.Tensor  # (N,) what the classifier reads in the unconditional samples
    conf: dict  # w -> the classifier's mean top probability; None -> of the unconditional samples


def measure_sampling(a: PartA) -> Sampling:
    """Sample from pure noise per label, without and with guidance, and with the null label."""
    s, T = a.settings, a.schedule.T
    labels = torch.arange(10).repeat_interleave(a.per)
    noise = randn((len(labels), 1, 28, 28), generators(s.seed, len(labels), 2))
    drawn = {0.0: ed.iterative_denoise(a.model, a.schedule, noise, T, labels, 0.0, s.steps)}
    drawn[s.w], chain = ed.iterative_denoise(a.model, a.schedule, noise, T, labels, s.w, s.steps, trajectory=True)
    first = torch.arange(10) * a.per  # the first sample of each digit
    guided = Trajectory(chain.t, chain.x[:, first], chain.x0_hat[:, first])
    uncond = ed.iterative_denoise(a.model, a.schedule, noise, T, torch.full_like(labels, a.model.num_classes), 0.0,
                                  s.steps)
    conf = lambda x: a.prob(x).max(1).values.mean().item()  # the classifier's mean top probability
    return Sampling(labels, drawn, guided, uncond,
                    {g: (a.read(x) == labels).float().mean().item() for g, x in drawn.items()},
                    a.read(uncond), {None: conf(uncond), **{g: conf(x) for g, x in drawn.items()}})


def sampling_animation(guided: Trajectory, path: str, w: float) -> str:
    """cs180_sampling.gif: the guided chains (one per digit), x_t beside x0_hat, at every strided step."""
    steps = trajectory_steps(guided.t, guided.x, guided.x0_hat, count=len(guided.t))
    return write_gif(path, image_frames(steps, columns=5, scale=2, title=f"asks for 0-9, gamma = {1 + w:g}"))


def sampling_page(a: PartA, m: Sampling) -> Page:
    labels, drawn, uncond, agree, conf = m.labels, m.drawn, m.uncond, m.agree, m.conf
    per, w, steps, null = a.per, a.settings.w, a.settings.steps, a.model.num_classes
    shown = range(min(per, 2))  # one or two samples per digit, each with and without guidance
    png = image_grid([[drawn[g][c * per + j] for c in range(10)] for j in shown for g in drawn], a.fig_dir,
                     "cs180_sampling", [f"label, w = {g:g}" + (" (CFG)" if g else "") for j in shown for g in drawn],
                     [f"label {c}" for c in range(10)], cell=0.62)
    counts = torch.bincount(m.u_read, minlength=10)
    k_un = min(10, len(uncond))
    png_u = image_grid([list(uncond[:k_un])], a.fig_dir, "cs180_unconditional", ["no label\n(null token)"],
                       captions=[[f"reads {int(r)}" for r in m.u_read[:k_un]]], cell=0.62)
    same_noise = (m.u_read == labels).float().mean().item()
    gif = sampling_animation(m.guided, os.path.join(a.fig_dir, "cs180_sampling.gif"), w)
    figures = [Figure(png, f"A grid of generated digits: columns ask for labels 0 to 9; rows alternate w = 0 and "
                           f"guidance w = {w:g} from the same noise. The guided digits are cleaner.",
                      f"Figure 1. Sampling per label from pure noise, without (w = 0) and with guidance (w = {w:g})."),
               Figure(png_u, f"One row of {k_un} digits sampled with no label, each captioned with what the "
                             "classifier reads in it; several are malformed.",
                      "Figure 2. Samples with the null label (the empty prompt)."),
               Figure(gif, f"Animation: ten digits 0 to 9 forming from noise over {steps} strided steps with "
                           "guidance; the noisy x_t on the left, the predicted clean x0_hat on the right.",
                      f"Animation. The guided chains of figure 1's first sample of each digit (CFG gamma = "
                      f"{1 + w:g}): x_t (left) and x0_hat (right); the last frame is figure 1's digits.")]
    return Page.of_text("CS180 A.5-A.6: sampling, with and without a label", figures,
                        f"A.5-A.6 Sampling from pure noise with {steps} strided steps. Top: asking for each digit "
                        f"{per} times, each from the same noise with and without guidance: the classifier reads the "
                        f"requested digit in {agree[0.0]:.0%} of the {len(labels)} samples without guidance (w = 0, the "
                        f"conditional model alone) and {agree[w]:.0%} with classifier-free guidance w = {w:g} (eps = "
                        f"eps_u + (1 + w)(eps_c - eps_u), CS180's gamma = 1 + w).\n\n"
                        f"Bottom: the same {len(uncond)} noises with no label at all (label {null}, the null token the "
                        f"model was trained on by label dropout: CS180's empty prompt, w = 0), {k_un} shown with what "
                        f"the classifier reads. Without a label the model picks the digit itself: read as " +
                        ", ".join(f"{c}: {int(counts[c])}" for c in range(10) if counts[c]) +
                        f" ({int((counts > 0).sum())} distinct digits in {len(uncond)} samples); from the same noise it "
                        f"lands on the digit the labelled rows asked for in {same_noise:.0%}. Many are malformed, as "
                        f"CS180's unguided samples are: the classifier's mean confidence in what it reads (its top "
                        f"softmax probability) is {conf[None]:.2f} without a label, {conf[0.0]:.2f} with a label and "
                        f"w = 0, {conf[w]:.2f} with guidance; guidance is what makes the samples clean.",
                        answers=f"Guidance: asking for each digit, {agree[w]:.0%} of {len(labels)} samples show it with "
                                f"CFG (gamma = {1 + w:g}), {agree[0.0]:.0%} without (gamma = 1).\n\n"
                                f"Without a label (the empty prompt): {_n(int((counts > 0).sum()), 'different digit')} "
                                f"appear in {len(uncond)} samples, and the classifier's mean confidence is "
                                f"{conf[None]:.2f}, against {conf[w]:.2f} with guidance.")
