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

import os
from typing import NamedTuple

import torch

from report.animation import image_frames, trajectory_steps, write_gif
from report.pages import Figure, Page
from mnist.metrics import legible
from mnist.problem5_text import share_words
from utils import Trajectory, generators, randn

from . import techniques as ed
from .figures import image_grid
from .parta_context import PartA
from .parta_judges import TIE_SE, best_words, compare, listed, order, versus_words
from .verdicts import compared

PROGRESS_EVERY = 5  # A.4: show x_t every 5th strided step, as CS180
BLUR_SIGMAS = (0.5, 1.0, 1.5, 2.0)  # A.2's candidates: the one with the best PSNR at each t is used, in A.4 too
DENOISERS = dict(blur="Gaussian blur", one="one-step", it="iterative")
SSIM_FLOOR = 0.005  # an SSIM difference under this is a tie, whatever its standard error
PSNR_FLOOR = 0.05  # dB, the same for PSNR


def digit_counts_words(counts) -> str:
    """How often each digit appears, in words, most frequent first: '6, 7 and 8 twice each and 1 and 9 once each'
    (counts: (10,) per digit)."""
    names = "once twice three four five six seven eight nine ten".split()
    times = lambda n: names[n - 1] + ("" if n <= 2 else " times") if n <= 10 else f"{n} times"
    by = sorted({int(n) for n in counts if n}, reverse=True)
    groups = [[c for c in range(10) if int(counts[c]) == n] for n in by]
    return listed([f"{listed(g)} {times(n)}" + (" each" if len(g) > 1 else "") for g, n in zip(groups, by)]) or "nothing"


def _n(k: int, noun: str) -> str:
    """'1 different digit', '3 different digits'."""
    return f"{k} {noun}{'' if k == 1 else 's'}"


def _list(values) -> str:
    return ", ".join(str(v) for v in values)


def falls_words(values: list, decimals: int = 1) -> str:
    """': it falls at every step' when the printed values fall strictly, else ''."""
    shown = [round(v, decimals) for v in values]
    return ": it falls at every step" if all(p > q for p, q in zip(shown, shown[1:])) else ""


def reads_words(read: list, true: list) -> str:
    """What denoised digits read as, against what they were: 'each reads as its own digit' or 'the 7 reads
    as a 9, the others as their own digit'."""
    wrong = [(t, r) for r, t in zip(read, true) if r != t]
    if not wrong:
        return "each reads as its own digit"
    said = ", ".join(f"the {t} reads as {'an' if r == 8 else 'a'} {r}" for t, r in wrong)
    return said + ("" if len(wrong) == len(read) else ", the others as their own digit")


# ===================================================================== A.1
class Forward(NamedTuple):
    levels: list  # the noise levels t shown
    noised: dict  # t -> x_t (N, 1, 28, 28) of every test digit
    alpha_bar: dict  # t -> alpha_bar_t
    psnr: dict  # t > 0 -> mean PSNR (dB) of x_t to its clean digit (the classifier is not asked about noise)


def measure_forward(a: PartA) -> Forward:
    T = a.schedule.T
    levels = [0, T // 8, T // 4, T // 2, 3 * T // 4, T]
    noised = {t: ed.forward_noise(a.schedule, a.x0, t, generators(a.settings.seed, len(a.x0))).x_t for t in levels}
    return Forward(levels, noised, {t: a.schedule.alpha_bar[t].item() for t in levels},
                   {t: ed.psnr(noised[t], a.x0).mean().item() for t in levels if t > 0})


def forward_page(a: PartA, m: Forward) -> Page:
    levels, ab, T, n = m.levels, m.alpha_bar, a.schedule.T, len(a.x0)
    png = image_grid([[m.noised[t][i] for t in levels] for i in a.show], a.fig_dir, "cs180_forward",
                     [f"test digit {int(a.y[i])}" for i in a.show], [f"t = {t}" for t in levels])
    noisy = [t for t in levels if t > 0]
    fig = Figure(png, f"A grid of small grey images: rows {', '.join(str(int(a.y[i])) for i in a.show)} are test digits, "
                      f"columns the noise levels t = {_list(levels)}; the digit fades into noise "
                      "from left to right.", f"Figure. Test digits noised to t = {_list(levels)}.")
    return Page.of_text("CS180 A.1: the forward process", [fig],
                        "A.1 Forward process. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps with the model's "
                        f"cosine schedule (T={T}): sqrt(alpha_bar_t) = " +
                        ", ".join(f"{ab[t] ** 0.5:.3f} at t={t}" for t in levels) +
                        f". PSNR of x_t to its clean digit (mean of {n} test digits; both clipped to the pixel range): " +
                        ", ".join(f"{m.psnr[t]:.1f} dB at t={t}" for t in noisy) +
                        f"{falls_words([m.psnr[t] for t in noisy])}. The metric classifier, trained on clean digits, "
                        "is not asked to read noisy images.",
                        answers=f"Forward process: test digits noised to t = {_list(levels)} (T = {T}) by "
                                f"x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps: the clean digit's weight "
                                f"sqrt(alpha_bar_t) goes from {ab[levels[0]] ** 0.5:.2f} at t = {levels[0]} to "
                                f"{ab[levels[-1]] ** 0.5:.2f} at t = {levels[-1]}, and the PSNR of x_t to the clean "
                                f"digit from {m.psnr[noisy[0]]:.1f} dB at t = {noisy[0]} to {m.psnr[noisy[-1]]:.1f} dB "
                                f"at t = {noisy[-1]} ({n} test digits).")


# ================================================================= A.2-A.4
def blur_sigma(x_t: torch.Tensor, scale: float, x0: torch.Tensor) -> float:
    """A.2's blur: the sigma of BLUR_SIGMAS whose blur of x_t / scale has the highest mean PSNR to x0."""
    return max(BLUR_SIGMAS, key=lambda v: ed.psnr(ed.gaussian_blur_denoise(x_t / scale, v), x0).mean().item())


class Denoising(NamedTuple):
    ts: list  # the noise levels, ascending; the last is A.4's start
    sigma: dict  # t -> the blur's sigma (blur_sigma), the one value A.2 and A.4 use at t
    noisy: dict  # t -> x_t (N, 1, 28, 28)
    out: dict  # t -> {method: estimate (N, 1, 28, 28)}, methods as DENOISERS
    psnr: dict  # t -> {method: (N,) PSNR dB per digit}
    ssim: dict  # t -> {method: (N,) SSIM per digit}
    trajectory: Trajectory  # A.4: every x_t of the iterative chain from the last t, all N digits
    read: torch.Tensor  # (N,) what the classifier reads in that chain's clean x_0


def measure_denoising(a: PartA) -> Denoising:
    """Noise every test digit to each t (no label), denoise it three ways, score each against the clean digit.
    The iterative chain is CS180's update with its noise v_sigma (eta = settings.eta), seeded per digit."""
    model, schedule, x0, s = a.model, a.schedule, a.x0, a.settings
    ts = sorted(s.ts)
    sigma, noisy, out, psnr, ssim = {}, {}, {}, {}, {}
    for t in ts:
        x_t = ed.forward_noise(schedule, x0, t, generators(s.seed, len(x0), 1)).x_t
        scale = schedule.alpha_bar[t].sqrt().item()
        sigma[t], noisy[t] = blur_sigma(x_t, scale, x0), x_t
        it, traj = ed.iterative_denoise(model, schedule, x_t, t, steps=s.steps, eta=s.eta,
                                        generator=generators(s.seed, len(x0), 4, t), trajectory=True)
        out[t] = dict(blur=ed.gaussian_blur_denoise(x_t / scale, sigma[t]), one=ed.one_step_denoise(model, schedule, x_t, t),
                      it=it)
        psnr[t] = {k: ed.psnr(v, x0) for k, v in out[t].items()}
        ssim[t] = {k: ed.ssim(v, x0) for k, v in out[t].items()}
    return Denoising(ts, sigma, noisy, out, psnr, ssim, traj, a.read(out[ts[-1]]["it"]))


def _best(scores: dict, decimals: int, floor: float) -> str:
    return best_words([[DENOISERS[k] for k in g] for g in order(scores, decimals, floor)])


def denoising_page(a: PartA, m: Denoising) -> Page:
    n, ts = len(a.x0), m.ts
    i = a.show[1]
    png = image_grid([[a.x0[i], m.noisy[t][i], m.out[t]["blur"][i], m.out[t]["one"][i], m.out[t]["it"][i]] for t in ts],
                     a.fig_dir, "cs180_denoise", [f"t = {t}" for t in ts],
                     ["clean", "noisy x_t", "Gaussian blur", "one-step", "iterative"])
    mean = lambda d: d.mean().item()
    lines = [f"t={t}: PSNR, {_best(m.psnr[t], 1, PSNR_FLOOR)} best; SSIM, {_best(m.ssim[t], 2, SSIM_FLOOR)} best"
             for t in ts]
    per_t = lambda k: ", ".join(f"{mean(m.psnr[t][k]):.1f} dB / SSIM {mean(m.ssim[t][k]):.2f} at t={t}" for t in ts)
    vs = lambda k, o, q, dec, fl: versus_words([compare(q[t][k], q[t][o], dec, fl) for t in ts], "noise level")
    p_vs = lambda k, o: vs(k, o, m.psnr, 1, PSNR_FLOOR)
    s_vs = lambda k, o: vs(k, o, m.ssim, 2, SSIM_FLOOR)
    fig = Figure(png, "A grid of small grey images, one row per noise level t: the clean test digit, its noisy x_t, "
                      "and the Gaussian-blur, one-step and iterative estimates of the clean digit.",
                 "Figure. One test digit per noise level: clean, noisy, and denoised three ways.")
    return Page.of_text("CS180 A.2-A.4: denoising", [fig],
                        f"A.2-A.4 Denoising {n} test digits (no label, the empty prompt) at t = {_list(ts)}: one test "
                        f"digit shown per t; PSNR and SSIM are means over all {n} against the clean digit. The blur "
                        f"filters x_t / sqrt(alpha_bar_t) with the sigma of {_list(f'{v:g}' for v in BLUR_SIGMAS)} that "
                        "gives the highest PSNR at that t (A.4 uses the same). The iterative chain is the handout's "
                        f"update, x_t' from x0_hat and x_t plus its noise v_sigma (eta = {a.settings.eta:g}). Best per "
                        "noise level, where two methods tie when their means print the same or their paired difference "
                        f"over the {n} digits is within {TIE_SE:g} standard errors (or under {PSNR_FLOOR:g} dB, "
                        f"{SSIM_FLOOR:g} SSIM): " + "; ".join(lines) + ".",
                        answers=f"Gaussian blur (A.2): the best blur of x_t / sqrt(alpha_bar_t) (sigma "
                                f"{', '.join(f'{m.sigma[t]:g} at t={t}' for t in ts)}, picked for PSNR) gives "
                                f"{per_t('blur')} on {n} test digits.\n\n"
                                f"One-step (A.3): removing the network's noise estimate in one pass gives "
                                f"{per_t('one')}: against the blur, PSNR {p_vs('one', 'blur')}; SSIM "
                                f"{s_vs('one', 'blur')}.\n\n"
                                f"Iterative (A.4): the strided chain from t down to 0 gives {per_t('it')}: against "
                                f"one-step, PSNR {p_vs('it', 'one')}; SSIM {s_vs('it', 'one')}. Against the blur, "
                                f"PSNR {p_vs('it', 'blur')}; SSIM {s_vs('it', 'blur')}.")


def progression_page(a: PartA, m: Denoising) -> Page:
    """A.4 step by step: the iterative chain of the last noise level of A.2-A.4, for the digits shown."""
    traj, t_prog, steps, i_ts, show = m.trajectory, m.ts[-1], a.settings.steps, a.i_ts, a.show
    i_prog = i_ts.index(t_prog) if t_prog in i_ts else None
    sig, out = m.sigma[t_prog], m.out[t_prog]
    shown_steps = list(range(0, len(traj.t) - 1, PROGRESS_EVERY))
    png = image_grid([[traj.x[k][r] for k in shown_steps] + [out["it"][r], out["one"][r], out["blur"][r], a.x0[r]]
                      for r in show], a.fig_dir, "cs180_progression", [f"test digit {int(a.y[r])}" for r in show],
                     [f"t = {int(traj.t[k])}" for k in shown_steps] + ["iterative\nx_0", "one-step", f"blur\nsigma {sig:g}",
                                                                         "clean"],
                     groups=[(0, len(shown_steps) - 1, f"x_t every {PROGRESS_EVERY}th step of the chain"),
                             (len(shown_steps), len(shown_steps) + 2, f"estimates of x_0 from t = {t_prog}")])
    n, mean = len(a.x0), lambda k: m.psnr[t_prog][k].mean().item()
    visited = _list(int(traj.t[k]) for k in shown_steps)
    start = f"i_start = {i_prog} of {steps} strided steps, stride {i_ts[0] - i_ts[1]}" if i_prog is not None else \
        f"{steps} strided steps below it"
    reads = reads_words([int(m.read[r]) for r in show], [int(a.y[r]) for r in show])
    fig = Figure(png, f"Three rows, one per test digit: the noisy x_t every {PROGRESS_EVERY}th step of the chain "
                      f"(t = {visited}), getting cleaner from left to right, then the iterative x_0, the one-step "
                      "estimate, a Gaussian blur and the clean digit.",
                 f"Figure. Iterative denoising from t = {t_prog}, every {PROGRESS_EVERY}th step, and three "
                 "estimates of the clean digit.")
    ranking = _best(m.psnr[t_prog], 1, PSNR_FLOOR)
    return Page.of_text("CS180 A.4: iterative denoising, step by step", [fig],
                        f"A.4 Iterative denoising from t = {t_prog} ({start}; CS180 starts at i_start = 10, t = 690 of "
                        f"1000), no label, with the handout's update and its noise term v_sigma (eta = "
                        f"{a.settings.eta:g}): the same chains, noise and images as A.2-A.4's t = {t_prog} row. Left: the state x_t after every {PROGRESS_EVERY}th step (t = {visited}); "
                        f"right: the final iterative x_0, the one-step estimate x0_hat from x_{t_prog} and the Gaussian "
                        f"blur of x_{t_prog} / sqrt(alpha_bar) with A.2's sigma at this t ({sig:g}). The classifier reads "
                        f"the chain's clean x_0 of the digits shown: {reads}. At t = {t_prog} sqrt(alpha_bar_t) = "
                        f"{a.schedule.alpha_bar[t_prog].sqrt().item():.2f}; over all {n} test digits the chain's x_0 reads "
                        f"as the true digit in {int((m.read == a.y).sum())}/{n}"
                        + ("." if bool((m.read == a.y).all()) else ": from this much noise the chain draws a digit "
                           "that fits x_t, not always the one it came from."),
                        answers=f"Iterative denoising: from x_{t_prog}, the figure shows the noisy x_t every "
                                f"{PROGRESS_EVERY}th step of the chain, at t = {visited}, then the final clean estimate "
                                f"x_0; {reads}.\n\n"
                                f"Compared with one step and blur: PSNR to the clean digits ({n} test digits, as A.2-A.4 "
                                f"at t = {t_prog}) is {mean('it'):.1f} dB iterative, {mean('one'):.1f} dB one-step, "
                                f"{mean('blur'):.1f} dB blur (sigma {sig:g}): {ranking} best"
                                + (" (PSNR favours one-step's blurred average of the digits x_t could be; the chain "
                                   "commits to one sharp digit)." if ranking == "one-step" else "."))


# ================================================================= A.5-A.6
class Sampling(NamedTuple):
    labels: torch.Tensor  # (N,): each digit n // 10 times
    drawn: dict  # w (0 and the guidance) -> samples (N, 1, 28, 28) asking for `labels`, from the same noise
    guided: Trajectory  # the guided chain of the first sample of each digit (10 images): every x_t and x0_hat
    uncond: torch.Tensor  # (N, 1, 28, 28): the same noise with the null label
    agree: dict  # w -> (N,) bool: legible and read as the label asked for
    u_read: torch.Tensor  # (N,) what the classifier reads in the unconditional samples
    legible: dict  # w -> (N,) bool: passes mnist.metrics' legibility judge; None -> the unconditional samples


def measure_sampling(a: PartA) -> Sampling:
    """Sample from pure noise per label, without and with guidance, and with the null label."""
    s, T = a.settings, a.schedule.T
    labels = torch.arange(10).repeat_interleave(a.per)
    noise = randn((len(labels), 1, 28, 28), generators(s.seed, len(labels), 2))
    run = lambda y, w, **kw: ed.iterative_denoise(a.model, a.schedule, noise, T, y, w, s.steps, s.eta,
                                                  generators(s.seed, len(labels), 5), **kw)
    drawn = {0.0: run(labels, 0.0)}
    drawn[s.w], chain = run(labels, s.w, trajectory=True)
    first = torch.arange(10) * a.per  # the first sample of each digit
    guided = Trajectory(chain.t, chain.x[:, first], chain.x0_hat[:, first])
    uncond = run(torch.full_like(labels, a.model.num_classes), 0.0)
    ok = lambda x: legible(a.judge.legibility, a.clf, x)[1]
    passed = {None: ok(uncond), **{g: ok(x) for g, x in drawn.items()}}
    return Sampling(labels, drawn, guided, uncond, {g: (a.read(x) == labels) & passed[g] for g, x in drawn.items()},
                    a.read(uncond), passed)


def sampling_animation(guided: Trajectory, path: str, w: float) -> str:
    """cs180_sampling.gif: the guided chains (one per digit), x_t beside x0_hat, at every strided step."""
    steps = trajectory_steps(guided.t, guided.x, guided.x0_hat, count=len(guided.t))
    return write_gif(path, image_frames(steps, columns=5, scale=2, title=f"asks for 0-9, gamma = {1 + w:g}"))


def sampling_page(a: PartA, m: Sampling) -> Page:
    labels, drawn, uncond, hit = m.labels, m.drawn, m.uncond, m.agree
    agree = {g: v.float().mean().item() for g, v in hit.items()}
    n_leg = {g: int(v.sum()) for g, v in m.legible.items()}
    N = len(labels)
    per, w, steps, null = a.per, a.settings.w, a.settings.steps, a.model.num_classes
    shown = range(min(per, 2))  # one or two samples per digit, each with and without guidance
    png = image_grid([[drawn[g][c * per + j] for c in range(10)] for j in shown for g in drawn], a.fig_dir,
                     "cs180_sampling", [f"label, w = {g:g}" + (" (CFG)" if g else "") for j in shown for g in drawn],
                     [f"label {c}" for c in range(10)], cell=0.62)
    legible_counts = torch.bincount(m.u_read[m.legible[None]], minlength=10)  # what the legible samples show
    kinds = int((legible_counts > 0).sum())
    k_un = min(10, len(uncond))
    png_u = image_grid([list(uncond[:k_un])], a.fig_dir, "cs180_unconditional", ["no label\n(null token)"],
                       captions=[[f"reads {int(r)}" if ok else "fails" for r, ok in zip(m.u_read[:k_un], m.legible[None])]],
                       cell=0.62)
    same_noise = (m.u_read == labels).float().mean().item()
    gif = sampling_animation(m.guided, os.path.join(a.fig_dir, "cs180_sampling.gif"), w)
    figures = [Figure(png, f"A grid of generated digits: columns ask for labels 0 to 9; rows alternate w = 0 and "
                           f"guidance w = {w:g} from the same noise; {n_leg[w]} of the {N} guided and {n_leg[0.0]} of the {N} unguided "
                           "samples are legible.",
                      f"Figure 1. Sampling per label from pure noise, without (w = 0) and with guidance (w = {w:g})."),
               Figure(png_u, f"One row of {k_un} digits sampled with no label, each captioned with what the "
                             f"classifier reads in it, or 'fails' where it fails the legibility judge "
                             f"({int((~m.legible[None][:k_un]).sum())} of them).",
                      "Figure 2. Samples with the null label (the empty prompt)."),
               Figure(gif, f"Animation: ten digits 0 to 9 forming from noise over {steps} strided steps with "
                           "guidance; the noisy x_t on the left, the predicted clean x0_hat on the right.",
                      f"Animation. The guided chains of figure 1's first sample of each digit (CFG gamma = "
                      f"{1 + w:g}): x_t (left) and x0_hat (right); the last frame is figure 1's digits.")]
    return Page.of_text("CS180 A.5-A.6: sampling, with and without a label", figures,
                        f"A.5-A.6 Sampling from pure noise with {steps} strided steps. Top: asking for each digit "
                        f"{per} times, each from the same noise with and without guidance: the classifier reads the "
                        f"requested digit (where the legibility judge finds one) in {agree[0.0]:.0%} of the {len(labels)} samples without guidance (w = 0, the "
                        f"conditional model alone) and {agree[w]:.0%} with classifier-free guidance w = {w:g} (eps = "
                        f"eps_u + (1 + w)(eps_c - eps_u), CS180's gamma = 1 + w).\n\n"
                        f"Bottom: the same {len(uncond)} noises with no label at all (label {null}, the null token the "
                        f"model was trained on by label dropout: CS180's empty prompt, w = 0), {k_un} shown with what "
                        f"the classifier reads. Without a label the model picks the digit itself: its legible samples "
                        f"read as {digit_counts_words(legible_counts)}" +
                        f" ({kinds} distinct digits in {int(m.legible[None].sum())} legible samples of {len(uncond)}); "
                        f"from the same noise it "
                        f"lands on the digit the labelled rows asked for in {same_noise:.0%}. Legible (mnist.metrics' judge: "
                        f"the classifier reads it strongly, and it lies as near a real digit of that class as real "
                        f"held-out digits do): {n_leg[None]}/{N} without a label, {n_leg[0.0]}/{N} with a label at "
                        f"w = 0, {n_leg[w]}/{N} with guidance, so guided samples are legible "
                        f"{share_words(n_leg[w], N, n_leg[None], N)} unlabelled ones (a difference counts beyond two "
                        "standard errors).",
                        answers=f"Guidance: asking for each digit, the classifier reads the asked digit in {agree[w]:.0%} "
                                f"of {len(labels)} samples with CFG (w = {w:g}, CS180's gamma = {1 + w:g}) and "
                                f"{agree[0.0]:.0%} without (w = 0, gamma = 1), a reading counted only where the legibility "
                                f"judge finds a digit: {compared(hit[w], hit[0.0], 'CFG', 'w = 0')} at this n.\n\n"
                                f"Without a label (the empty prompt): {n_leg[None]}/{N} samples are legible, against "
                                f"{n_leg[w]}/{N} with guidance; the legible ones show {_n(kinds, 'different digit')}.")
