"""CS180 project 5 part A on the shipped MNIST DDPM: the report's opening page and part A's pages.

`pages(fig_dir)` returns report.pages.Page objects, one per part-A section, in the report's order:

  A.1 - A.6     cs180.parta_denoising   forward process, denoising, iterative denoising, sampling
  A.7           cs180.parta_editing     SDEdit (test digits; hand-drawn and outside images), inpainting,
                                        translation
  A.8 - A.9     cs180.parta_illusions   anagrams and hybrids over all label pairs, and the best pairs

It loads the model, the test digits and the classifier once (cs180.parta_context.load_part_a), then
each page is measured, then typeset. The class label plays DeepFloyd's text prompt. Every sentence with
a number is computed from the images made here (seeded), scored by the metric classifier
(mnist.metrics); nothing is canned. Timestep convention as in utils.py (t = 0 clean, t = T noise);
i_start indexes techniques.strided_timesteps(T, steps), larger = less noise.

    python -m cs180.parta_pages --out figures    # the part-A figures, and the pages' texts printed
"""
from __future__ import annotations

import os
import sys
from typing import Optional

import torch

from mnist.checkpoint import load_model
from mnist.sample import REFERENCE
from report.pages import Page
from runio.cli import Parser, positive_int, run_command

from . import denoiser as dn
from . import parta_denoising as den
from . import parta_editing as edit
from . import parta_illusions as ill
from . import timecond as tc
from .parta_context import PartASettings, load_part_a


def opening_page(model_path: str = REFERENCE, denoiser_path: Optional[str] = None,
                 timecond_path: Optional[str] = None, class_path: Optional[str] = None) -> Page:
    """The report's first page: what stands in for DeepFloyd IF and the prompt, which model each part uses
    (read from the files themselves) and how to reproduce everything."""
    model, schedule, _, info = load_model(model_path)
    b1 = dn.load_run(denoiser_path or dn.REFERENCE)
    b2 = (("B.2.1-2.3", timecond_path or tc.REFERENCE), ("B.2.4-2.5", class_path or tc.REFERENCE_CLASS))
    params = lambda m: f"{sum(p.numel() for p in m.parameters()):,}"
    rel = lambda path: os.path.relpath(path, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rows = [f"A.1-A.9    {rel(model_path)}: problem 5's UNet, {params(model)} parameters, T={schedule.T} "
            f"{schedule.kind}, {info.get('data_source', '?')} digits",
            f"B.1        {rel(denoiser_path or dn.REFERENCE)}: the handout's UNet, D={b1.config.hidden}, "
            f"sigma={b1.config.sigma}, {b1.config.epochs} epochs"]
    h = tc.TimeCondConfig.handout()
    for part, path in b2:
        run = tc.load_run(path)
        c = run.config
        rows.append(f"{part:<10} {rel(path)}: {'class' if c.num_classes else 'time'}-conditioned, D={c.hidden}, "
                    f"T={c.T}, {len(run.losses):,} steps" + (f" ({run.epochs}/{h.epochs} epochs)"
                                                             if run.epochs < h.epochs else "")
                    + (f", EMA {c.ema:g}" if c.ema else "")
                    + f", {run.info.get('data_source', '?')} digits")
    answers = [
        ("What stands in for what: CS180 part A edits images with DeepFloyd IF, a text-to-image diffusion model. "
         f"Here the class-conditional MNIST DDPM of problem 5 plays that role: the digit label 0-9 is the text "
         f"prompt, the null label {model.num_classes} (dropped for 10 % of training images) is the empty prompt "
         f"\"\", and CFG scale gamma = 5 is w = 4 in (1 + w) eps(x, y) - w eps(x, null). Images are 28x28 grey "
         "digits, not 64x64 photos; 'a rocket' becomes 'a 7'."),
        ("Part B: as the handout, on MNIST itself, with its UNets (B.1 the single-step denoiser, B.2 the time- "
         "and class-conditioned DDPMs); the departures from its recipe are on each page and measured there."),
        ("How it is measured: a small CNN trained on clean MNIST digits (the metric classifier, mnist/reference/"
         "classifier.pt) reads clean generated or edited digits, never noisy ones (those are judged by PSNR to the "
         "clean digit); a digit seen from afar is read by its nearest real digits at the same small size. The test "
         "digits are MNIST's own (mnist/reference/mnist_test_digits.npz), which no model here trained on. FLD, "
         "FID's analogue for MNIST, is left out: on 100 samples it moves more between seeds than between the runs "
         "compared (problem 5 reports it on 3 x 1,000). Every number is computed from the "
         "images when this report is made, except part A's illusion search over every label pair and several seeds, "
         "stored in cs180/parta_picks.json (python -m cs180.parta_picks); the images it picked are drawn and read "
         "again here."),
    ]
    reproduce = ("How to reproduce: python visualize.py --problem cs180 --report cs180.pdf makes this report from the "
                 "shipped files (under 5 minutes on 2 CPU cores); each part alone: --problem cs180-a, cs180-b1 or "
                 "cs180-b2. The commands that trained each file, their times and the measured numbers are in "
                 "mnist/reference/MODEL_CARD.md; python benchmarks/mnist_partb.py and python "
                 "benchmarks/mnist_editing.py measure them on more samples.")
    return Page("CS180 project 5 on MNIST: what this report shows", [],
                [("answer", a) for a in answers] + [("text", "Which model each part uses:"),
                                                    ("table", "\n".join(rows)), ("text", reproduce)])


def pages(fig_dir: str, checkpoint: str = REFERENCE, settings: PartASettings = PartASettings()) -> list[Page]:
    """Make the part-A figures in fig_dir from the model at `checkpoint`; return one Page per section."""
    a = load_part_a(fig_dir, checkpoint, settings)
    denoising, own = den.measure_denoising(a), edit.own_images()
    out = [den.forward_page(a, den.measure_forward(a)),
           den.denoising_page(a, denoising),
           den.progression_page(a, denoising),
           den.sampling_page(a, den.measure_sampling(a)),
           edit.sdedit_page(a, edit.measure_sdedit(a)),
           edit.drawn_page(a, edit.measure_drawn(a, own)),
           edit.inpainting_page(a, edit.measure_inpainting(a, own)),
           edit.translation_page(a, edit.measure_translation(a, own))]
    sweeps = ill.measure_sweeps(a)
    anagrams, hybrids = ill.measure_examples(a, sweeps)
    return out + [ill.rates_page(a, sweeps), ill.anagram_page(a, sweeps, anagrams), ill.hybrid_page(a, sweeps, hybrids)]


def main(argv: Optional[list] = None) -> int:
    ap = Parser(prog="python -m cs180.parta_pages",
                description="Make the CS180 part-A figures and texts from the shipped MNIST model.")
    ap.add_argument("--out", default="figures", help="folder for the PNGs")
    ap.add_argument("--n", type=positive_int, default=20, help="images per measured number")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # small convolutions: one thread is as fast and leaves the other core free
    for page in pages(args.out, settings=PartASettings(n=args.n)):
        print(f"{page.title}: {', '.join(page.paths)}")
        print(page.text, "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "cs180.parta_pages", "the figures already written are whole; run it again"))
