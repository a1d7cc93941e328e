"""Figures and the PDF report for the two-pixel DDPM homework (handout section 4).

    python visualize.py --problem 2          # trajectory over p_theta(x_t | t), t = 50..10, T = 50
    python visualize.py --problem 3          # 4 x 2 figure: T = 5, 10, 25, 50 against the truth
    python visualize.py --problem 4          # y = 0 / y = 1 from one x_T, and a guidance sweep
    python visualize.py --problem 5          # MNIST samples and a trajectory, from the shipped model
    python visualize.py --problem all --report report.pdf    # every figure, then a page per problem
    python visualize.py --problem cs180 --report cs180.pdf   # CS180 project 5 on MNIST (cs180-a, -b1, -b2)
    python visualize.py --problem cs180 --site cs180_site    # the same pages as a website: index.html, figures/
    python visualize.py --problem flow --report flow.pdf     # flow matching beside DDPM on two pixels, 5 seeds each
    python visualize.py --problem cs180-fm --report cs180fm.pdf   # CS180 part B, fall 2025: flow matching on MNIST

Models come from <runs>/T<T>/model.pt, trained with train.py's defaults when missing; problem 1 adds
three T = 50 variants, each undoing one departure from the handout (<runs>/T50-<variant>/). Each figure
is a PNG and a PDF under --out, beside <name>.csv (the numbers) and <name>.npz (the arrays drawn); the
same --seed gives the same numbers. Each page opens with the plain answers, then the figures, then the
evidence; figures are report.pages.FIG_W wide with fonts of 7 pt or more, so they print at their own
sizes. --density kde: an isotropic Gaussian kernel, cross-validated bandwidth (scipy's gaussian_kde
follows the whole cloud's covariance: a needle along the peaks' diagonal); hist: a 2-D histogram.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")  # a script that writes files; never needs a display
import torch
from tqdm.auto import tqdm

from cs180 import denoiser, fm_pages, parta_pages, partb_pages, timecond
from mnist import problem5 as mnist_problem5
from report.pages import Page, write_report
from report.site import write_site
from train import train_models
from runio.cli import (Option, Parser, add_config_arguments, config_from_args, error_line, positive_int, resolve_device,
                       run_command)
from runio.errors import CheckpointError, first_line
from runio.files import check_output, check_writable
from two_pixel import flow_report, problem1, problem2, problem3, problem4
from two_pixel.figures import PROBLEM2_T, Settings, model_path
from two_pixel.trainer import TrainConfig, checkpoint_config, load_checkpoint

CS180_PARTS = ("cs180-a", "cs180-b1", "cs180-b2")
PROBLEMS = ("2", "3", "4", "5", "flow", "cs180", *CS180_PARTS, "cs180-fm", "all")
SHEET_SHARING = (*CS180_PARTS, "cs180-fm")  # sections that share sheets in a report
PROBLEM_PAGES = {"2": problem2.page, "3": problem3.page, "4": problem4.page}  # each (cfg, models) -> Page
TWO_PIXEL_SECTIONS = ("problem 1", "problem 2", "problem 3", "problem 4", "flow matching")  # need the models of --runs


class UserError(Exception):
    """A problem the user can fix (bad checkpoint, unwritable folder): reported in one line, exit 2."""


# ============================================================ problem 5 and CS180
def cs180_pages(cfg: Settings, part: str) -> list:
    """CS180 project 5 on MNIST, one page per section: part A (cs180.parta_pages) on the shipped
    class-conditional model, part B.1 / B.2 (cs180.partb_pages) on their shipped runs, or on runs
    trained here into --runs/cs180 with --retrain. In report mode, no progress bars: visualize prints
    one line per part."""
    if part == "cs180-a":
        return parta_pages.pages(cfg.out)
    if part == "cs180-b1":
        ckpt = {"checkpoint": retrain_cs180(cfg, "cs180", denoiser, [])} if cfg.retrain else {}
        return partb_pages.b1_pages(cfg.out, seed=cfg.seed, **ckpt)
    ckpt = {"checkpoint": retrain_cs180(cfg, "cs180", timecond, []),
            "class_checkpoint": retrain_cs180(cfg, os.path.join("cs180", "class"), timecond, ["--classes"])
            } if cfg.retrain else {}
    return partb_pages.b2_pages(cfg.out, seed=cfg.seed, progress=not (cfg.quiet or cfg.report), **ckpt)


def retrain_cs180(cfg: Settings, sub: str, module, flags: list) -> str:
    """Train a part-B run from scratch into --runs/<sub> with the module's defaults and `flags` (B.1: a few
    minutes; each B.2 run: about 20 min on one CPU thread on the 4,500 fallback digits, far longer on the
    full MNIST); returns the checkpoint path."""
    folder = os.path.join(cfg.runs, sub)
    check_writable(folder, "--runs")
    argv = flags + ["--out", folder, "--overwrite"] + (["--quiet"] if cfg.quiet or cfg.report else [])
    print(f"{sub}: training from scratch (python -m {module.__name__} {' '.join(argv)})", flush=True)
    code = module.main(argv)
    if code:
        raise UserError(f"python -m {module.__name__} failed with exit code {code}")
    return os.path.join(folder, "denoiser.pt" if module is denoiser else "timecond.pt")


def problem5(cfg: Settings) -> Page:
    """The MNIST page (mnist/problem5.py), from the shipped model or, with --retrain, a fresh one; with
    --threads torch threads like the rest (on shared cores, two threads took 4x as long as one)."""
    try:
        return mnist_problem5.problem5_page(cfg.out, retrain=cfg.retrain)
    except Exception as e:  # a failure on the MNIST side must not lose the other four pages
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"visualize.py: warning: problem 5 page failed ({type(e).__name__}: {first})", file=sys.stderr)
        return Page("Problem 5: MNIST", [], [("text", f"Problem 5 could not be built: mnist.problem5.problem5_page raised "
                                                      f"{type(e).__name__}: {first}. Fix that, then rerun visualize.py.")])


# ============================================================ models and checks
def check_checkpoints(cfg: Settings) -> tuple[dict, list]:
    """Load every existing checkpoint the run needs (before anything is written) and list the missing."""
    models, missing = {}, []
    for key, (T, flags) in cfg.needed_runs().items():
        path = model_path(cfg.runs, key)
        if not os.path.exists(path):
            missing.append(key)
            continue
        try:
            c = checkpoint_config(path)
            if c.T != T:
                raise UserError(f"{path} was trained with T={c.T} but this figure needs T={T}; move it away "
                                f"(visualize.py then retrains it) or retrain it: python train.py --T {T} "
                                f"--out {os.path.dirname(path)}")
            wrong = [f"{k}={getattr(c, k)}" for k, v in flags.items() if getattr(c, k) != v]
            if wrong:
                raise UserError(f"{path} was trained with {', '.join(wrong)}, not as the {key} variant; move it "
                                "away and visualize.py retrains it")
            models[key] = load_checkpoint(path)
        except CheckpointError as e:
            raise UserError(f"{e} (or delete it and visualize.py retrains it)") from None
    return models, missing


def train_missing(cfg: Settings, missing: list, pool: ProcessPoolExecutor | None = None) -> dict:
    """Train the models the figures need and cannot find (train.py's defaults unless --train-steps):
    the default models by T and problem 1's variants, all through train.train_models."""
    steps = cfg.train_steps or TrainConfig().steps
    Ts = [k for k in missing if isinstance(k, int)]
    jobs = min(cfg.jobs or os.cpu_count() or 1, len(missing))
    print(f"visualize.py: no model for {', '.join(f'T = {k}' if k in Ts else f'T = {PROBLEM2_T} ({k})' for k in missing)} "
          f"under {cfg.runs}/; training {'it' if len(missing) == 1 else 'them'} now ({steps} steps each; same as: "
          f"python train.py --T <T> --steps {steps} --no-eval [a variant's flags, e.g. --objective flow --seed 1])",
          flush=True)

    argvs, needed = {}, cfg.needed_runs()
    for key in missing:
        flags = [a for k, val in needed[key][1].items() for a in (f"--{k.replace('_', '-')}", str(val))]
        argvs[key] = ["--T", str(key if key in Ts else PROBLEM2_T), "--out", os.path.dirname(model_path(cfg.runs, key)),
                      *flags]
    try:
        done = train_models(argvs, steps, jobs, progress=not cfg.quiet, pool=pool)
    except RuntimeError as e:
        raise UserError(str(e)) from None
    for line in done.values():
        print(f"  {line}", flush=True)
    return {key: load_checkpoint(model_path(cfg.runs, key)) for key in done}


# ============================================================ sections, several at once
def section_names(cfg: Settings) -> list:
    """The sections this command makes, in the order of the report: problems 1-5, flow matching, CS180."""
    names = ["problem 1"] if cfg.every_page and (cfg.report or cfg.site) else []
    names += [f"problem {p}" for p in "2345" if p in cfg.problems]
    names += ["flow matching"] if "flow" in cfg.problems else []
    names += ["cs180 opening"] if (cfg.report or cfg.site) and set(CS180_PARTS) <= set(cfg.problems) else []
    return names + [part for part in (*CS180_PARTS, "cs180-fm") if part in cfg.problems]


def make_section(cfg: Settings, name: str, models: dict | None = None) -> tuple:
    """(the pages of section `name`, the seconds they took). At module level, so that a spawned worker can
    run it: there it loads the two-pixel models itself (a section that needs them is queued once they exist)."""
    torch.set_num_threads(cfg.threads)
    if models is None and name in TWO_PIXEL_SECTIONS:
        models = check_checkpoints(cfg)[0]
    t0 = time.perf_counter()
    try:
        if name == "problem 1":
            made = [problem1.page(cfg, models)]
        elif name == "problem 5":
            made = [problem5(cfg)]
        elif name.startswith("problem "):
            made = [PROBLEM_PAGES[name[-1]](cfg, models)]
        elif name == "flow matching":
            made = flow_report.pages(cfg, models)
        elif name == "cs180 opening":
            made = [parta_pages.opening_page()]
        else:
            made = fm_pages.pages(cfg.out) if name == "cs180-fm" else cs180_pages(cfg, name)
    except UserError as e:  # a plain ValueError crosses back from a worker process whichever module raised it
        raise ValueError(str(e)) from None
    return made, time.perf_counter() - t0


def make_sections(cfg: Settings, names: list, models: dict, missing: list) -> list:
    """Train the `missing` two-pixel models and make the sections `names`; returns their pages in order.

    With more than one core (or --jobs), everything runs in one pool of spawned processes, one torch thread
    each: first the sections that need no two-pixel model (problem 5, CS180), then the trainings, then the
    two-pixel sections, so that problem 5 (about a minute) overlaps the trainings. Every section seeds its
    own generators, so the pages are the same as in one process (tests/test_visualize.py checks it)."""
    jobs = min(cfg.jobs or os.cpu_count() or 1, len(names) + len(missing))
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) \
        if jobs > 1 and len(names) > 1 else None
    try:
        quiet = replace(cfg, quiet=True)  # one bar for all sections below, not one per process on a shared line
        futures = {n: pool.submit(make_section, quiet, n) for n in names if n not in TWO_PIXEL_SECTIONS} if pool else {}
        if missing:
            check_writable(cfg.runs, "--runs")
            models.update(train_missing(cfg, missing, pool))
        futures.update({n: pool.submit(make_section, quiet, n) for n in names if n not in futures} if pool else {})
        bar = tqdm(total=len(names), desc=f"sections ({jobs} processes)", disable=cfg.quiet or not pool, leave=False,
                   dynamic_ncols=True)
        for fut in futures.values():
            fut.add_done_callback(lambda _: bar.update(1))
        pages = []
        for name in names:
            made, seconds = futures[name].result() if pool else make_section(cfg, name, models)
            pages += made
            figures = ", ".join(i for p in made for i in p.paths) or "no figure (see the report page)"
            bar.write(f"{name}: {len(made)} section{'s' if len(made) != 1 else ''} in {seconds:.1f} s; figures {figures}",
                      file=sys.stdout)
        bar.close()
        return pages
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


# ================================================================ CLI
def _values(kind, what: str, ok, most: int = 99, distinct: bool = False):
    """An argparse type: 1 to `most` comma-separated values of `kind`, each ok(v), distinct if asked."""
    def parse(text: str):
        try:
            vals = tuple(kind(v) for v in text.split(","))
        except ValueError:
            vals = ()
        if not 0 < len(vals) <= most or not all(map(ok, vals)) or distinct and len(set(vals)) < len(vals):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return vals if most > 1 else vals[0]
    return parse


NON_NEGATIVE = lambda v: math.isfinite(v) and v >= 0  # noqa: E731
_D = Settings()  # the defaults, named in the help texts
# How each Settings field appears on the command line (--problem sets `problems` and `every_page`).
OPTIONS = {
    "report": Option(str, "also write a PDF report, a page per problem (--problem all: problems 1-5)", metavar="PDF"),
    "site": Option(str, "also write the same pages as a static website, DIR/index.html and its figures and "
                   "animations in DIR/figures/ (with or without --report)", metavar="DIR"),
    "out": Option(str, f"folder for figures and their numbers (default {_D.out})", metavar="DIR"),
    "runs": Option(str, f"checkpoints, DIR/T<T>/model.pt; missing ones are trained there (default {_D.runs})",
                   metavar="DIR"),
    "n": Option(positive_int, f"chains / samples per density or model (default {_D.n})"),
    "density": Option(("kde", "hist"), "density estimate: kde (Gaussian kernel, cross-validated bandwidth) or hist "
                      f"(2-D histogram) (default {_D.density})"),
    "grid": Option(positive_int, f"grid cells per axis for densities (default {_D.grid})"),
    "seed": Option(int, f"seeds every sample; same seed, same numbers (default {_D.seed})"),
    "ts": Option(_values(int, "distinct positive integers, comma-separated", lambda v: v >= 1, distinct=True),
                 f"problem 3's T values, comma-separated (default {','.join(map(str, _D.ts))})", "--Ts", "LIST"),
    "ws": Option(_values(float, "1 to 5 non-negative numbers, comma-separated", NON_NEGATIVE, most=5),
                 f"problem 4's guidance scales, up to 5 (default {','.join(f'{w:g}' for w in _D.ws)})",
                 metavar="LIST"),
    "traj_w": Option(_values(float, "a non-negative number", NON_NEGATIVE, most=1),
                     f"guidance scale of problem 4's y = 0 / y = 1 trajectories (default {_D.traj_w})"),
    "train_steps": Option(positive_int, "optimiser steps for models that must be trained (default: train.py's)"),
    "jobs": Option(positive_int, "processes at once, one torch thread each, for the models to train and the sections "
                   "of the figures and report (default: one per core; 1: all in this process)"),
    "device": Option(str, f"auto (cuda, then mps, then cpu), cpu, cuda or mps (default {_D.device})"),
    "threads": Option(positive_int, f"torch CPU threads (default {_D.threads}: on shared cores more threads spin, "
                      "up to 10x slower)"),
    "quiet": Option(bool, "no progress bars"),
    "retrain": Option(bool, "train problem 5's MNIST model (15-30 min on CPU), cs180-b1's denoiser or cs180-b2's two "
                      "DDPMs (about 20 min each on the 4,500 fallback digits, hours on the full MNIST) from scratch "
                      "with the modules' defaults instead of using the shipped checkpoints in mnist/reference"),
}


def build_parser() -> argparse.ArgumentParser:
    """--problem, then one flag per Settings field in OPTIONS; a flag not given keeps the Settings default."""
    p = Parser(prog="visualize.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problem", required=True, choices=PROBLEMS, metavar="{" + ",".join(PROBLEMS) + "}",
                   help="2 (trajectory over p_theta(x_t | t)), 3 (T = 5..50 samples), 4 (guidance), 5 (MNIST, from "
                        "the shipped model), all (problems 2-5, and 1 in the report), flow (flow matching beside DDPM on two "
                        "pixels: its own report, --report flow.pdf; trains 9 more T = 50 models); CS180 project 5 on MNIST: "
                        "cs180-a (part A), cs180-b1 (single-step denoiser), cs180-b2 (time-conditioned DDPM), cs180 "
                        "(all three); cs180-fm (part B's fall 2025 edition: flow matching, from its shipped runs)")
    add_config_arguments(p, Settings, OPTIONS)  # no defaults: config_from_args keeps Settings' own
    return p


def parse_settings(argv=None) -> Settings:
    """The Settings of a command line: --problem all and cs180 stand for the problems they run."""
    a = build_parser().parse_args(argv)
    problems = {"all": ("2", "3", "4", "5"), "cs180": CS180_PARTS}.get(a.problem, (a.problem,))
    return config_from_args(Settings, a, Settings(problems=problems, every_page=a.problem == "all"))


def main(argv=None) -> int:
    try:
        cfg = parse_settings(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2, message already printed)
        return int(e.code or 0)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        if cfg.n < 10:
            raise UserError(f"--n {cfg.n} is too few samples for a density estimate; use at least 10")
        resolve_device(cfg.device)
        models, missing = check_checkpoints(cfg)  # reads only: a bad checkpoint stops us before any write
        check_writable(cfg.out, "--out")  # never the shipped references
        os.makedirs(cfg.out, exist_ok=True)  # the page builders write their figures there
        if cfg.report:  # a new file, or a report this package wrote: never README.md or a model card
            check_output(cfg.report, rerun=True, flag="--report")
        if cfg.site:  # likewise its index.html
            check_output(os.path.join(cfg.site, "index.html"), rerun=True, flag="--site")
        pages = make_sections(cfg, section_names(cfg), models, missing)
        if cfg.report:
            sheets = write_report(pages, cfg.report, flow=set(cfg.problems) <= set(SHEET_SHARING))  # CS180: sections share sheets
            print(f"report: {cfg.report} ({len(pages)} sections on {sheets} pages)")
        if cfg.site:
            t0, title = time.perf_counter(), "CS180 project 5 on MNIST" if set(cfg.problems) <= set(SHEET_SHARING) else \
                "Denoising diffusion on two-pixel images" + (": problems 1-5" if cfg.every_page else "")
            site = write_site(pages, cfg.site, title, "The report's pages, as in its PDF. Made by: python "
                              + " ".join(["visualize.py", *(argv or sys.argv[1:])]))
            print(f"site: {site.index} ({len(pages)} sections, {len(site.files) - 1} figures and animations, "
                  f"{site.bytes / 1e6:.1f} MB, in {time.perf_counter() - t0:.1f} s)")
    except (UserError, ValueError, OSError) as e:  # a bad value, a place that cannot be used, a full disk
        error_line("visualize.py", first_line(e))
        return 2
    finally:
        torch.set_num_threads(threads)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "visualize.py",
                         "every figure and report already written is whole, nothing is half-written; run it again to finish"))
