"""CS180 part A's claims are chosen by their numbers: each chooser is fed numbers on both sides of its line and
its wording must flip (cs180.parta_judges, the part-A pages' choosers, the illusion search's rules), and the
shipped illusion search must belong to the shipped model."""
import os
import types

import pytest
import torch

from cs180 import parta_denoising as den
from cs180 import parta_editing as edit
from cs180 import parta_illusions as ill
from cs180 import parta_judges as jd
from cs180 import parta_picks as pk
from cs180 import techniques as ed
from cs180.parta_context import PartASettings
from mnist.sample import REFERENCE
from runio.checkpoints import file_sha256
from utils import Trajectory, make_schedule

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ ties and rankings
def test_compare_calls_a_tie_what_prints_the_same_or_lies_within_two_standard_errors():
    g = torch.Generator().manual_seed(0)
    base = 0.9 + 0.02 * torch.rand(20, generator=g, dtype=torch.float64)
    assert jd.compare(base + 0.002, base, decimals=3) == 1  # constant gap: no spread, prints apart -> higher
    assert jd.compare(base + 0.002, base, decimals=3, floor=0.005) == 0  # under the floor -> tie
    noisy = base + 0.01 + 0.2 * torch.randn(20, generator=g, dtype=torch.float64)  # gap far inside 2 SE
    assert jd.compare(noisy, base, decimals=3) == 0
    assert jd.compare(base - 0.05, base, decimals=2) == -1
    same_print = base + 0.001  # no spread, but prints the same at 2 decimals (0.91 and 0.91)
    assert round(same_print.mean().item(), 2) == round(base.mean().item(), 2)
    assert jd.compare(same_print, base, decimals=2) == 0 and jd.compare(same_print, base, decimals=4) == 1


def test_order_and_best_words_name_a_tie_as_a_tie():
    x = torch.linspace(0.90, 0.96, 20, dtype=torch.float64)
    tied = {"one-step": x, "iterative": x + 0.0001, "blur": x - 0.3}
    assert jd.best_words(jd.order(tied, 2, 0.005)) == "iterative and one-step tie"
    apart = {"one-step": x, "iterative": x + 0.03, "blur": x - 0.3}
    assert jd.best_words(jd.order(apart, 2, 0.005)) == "iterative"
    assert jd.best_words(jd.order({"a": x, "b": x}, 2)) == "all tie"
    assert jd.versus_words([1, 0, -1], "noise level") == "higher at 1, tied at 1 and lower at 1 of the 3 noise levels"
    assert jd.versus_words([1], "noise level") == "higher at the noise level"
    assert jd.versus_words([-1, -1, -1], "noise level") == "lower at all 3 noise levels"
    assert jd.versus_words([0, -1, 0], "noise level") == "tied at 2 and lower at 1 of the 3 noise levels"


# ------------------------------------------------------------------ A.1 - A.4 pages
def _context(tmp_path, ts=(50, 100, 150)):
    sched = make_schedule(T=200)
    x0 = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def no_noisy_reads(x):
        raise AssertionError("the classifier was asked to read an image")

    return types.SimpleNamespace(fig_dir=str(tmp_path), show=[0, 1, 2], x0=x0, y=torch.tensor([0, 3, 7]),
                                 settings=PartASettings(ts=ts), schedule=sched, i_ts=list(range(200, -1, -5)),
                                 read=no_noisy_reads, per=1)


def _denoising(a, ssim_it_gap: float, read=(0, 3, 9)):
    ts, n = sorted(a.settings.ts), len(a.x0)
    base = torch.linspace(0.90, 0.96, n, dtype=torch.float64)
    psnr = {t: dict(blur=base * 10, one=base * 20 + 1, it=base * 20) for t in ts}
    ssim = {t: dict(blur=base - 0.3, one=base, it=base + ssim_it_gap) for t in ts}
    out = {t: dict(blur=a.x0, one=a.x0, it=a.x0) for t in ts}
    steps = torch.tensor([150, 100, 50, 0])
    traj = Trajectory(steps, a.x0.expand(4, -1, -1, -1, -1), a.x0.expand(4, -1, -1, -1, -1))
    return den.Denoising(ts, {t: 1.5 if t < ts[-1] else 2.0 for t in ts}, {t: a.x0 for t in ts}, out, psnr, ssim,
                         traj, torch.tensor(read))


def test_a2_a4_best_ssim_is_a_tie_when_both_print_the_same_and_the_answer_agrees(tmp_path):
    a = _context(tmp_path)
    tie = den.denoising_page(a, _denoising(a, 0.0001))
    assert "SSIM, iterative and one-step tie best" in tie.text and "best SSIM iterative" not in tie.text
    assert "SSIM tied at all 3 noise levels" in tie.answers[2]  # the answer box says the same
    apart = den.denoising_page(a, _denoising(a, 0.03))
    assert "SSIM, iterative best" in apart.text and "SSIM higher at all 3 noise levels" in apart.answers[2]


def test_a4_uses_a2s_blur_sigma_and_says_what_the_chain_drew(tmp_path):
    a = _context(tmp_path)
    wrong = den.progression_page(a, _denoising(a, 0.0, read=(0, 3, 9)))
    assert "blur (sigma 2)" in wrong.answers[1] and "A.2's sigma at this t (2)" in wrong.text  # sigma at t=150
    assert "the 7 reads as a 9, the others as their own digit" in wrong.answers[0]
    assert "not always the one it came from" in wrong.text
    right = den.progression_page(a, _denoising(a, 0.0, read=(0, 3, 7)))
    assert "each reads as its own digit" in right.answers[0] and "not always" not in right.text


def test_a1_never_asks_the_classifier_about_noisy_images(tmp_path):
    a = _context(tmp_path)
    a.x0 = a.x0.repeat(4, 1, 1, 1)
    page = den.forward_page(a, den.measure_forward(a))  # a.read raises if called
    assert "PSNR of x_t" in page.text and "reads the true digit" not in page.text


def test_falls_and_reads_words_flip():
    assert den.falls_words([20.0, 15.0, 9.0]) == ": it falls at every step"
    assert den.falls_words([20.04, 20.0, 9.0]) == ""  # falls, but prints 20.0 twice: not a fall on the page
    assert den.reads_words([0, 3, 7], [0, 3, 7]) == "each reads as its own digit"
    assert den.reads_words([1, 3, 9], [0, 3, 7]) == "the 0 reads as a 1, the 7 reads as a 9, the others as their own digit"


def test_translation_says_steadily_only_when_the_share_never_rises():
    assert edit._steadily({1: 1.0, 10: 0.9, 20: 0.1}, [1, 10, 20])
    assert not edit._steadily({1: 1.0, 10: 0.5, 20: 0.6}, [1, 10, 20])
    assert not edit._steadily({1: 0.5, 10: 0.5, 20: 0.5}, [1, 10, 20])


# ------------------------------------------------------------------ the illusions' rules
def test_strict_reading_needs_legibility_and_the_probability():
    p, leg = torch.tensor([0.95, 0.95, 0.85]), torch.tensor([1.0, 0.0, 1.0])
    assert jd.strict(p, leg).tolist() == [True, False, False]
    assert jd.anagram_ok(p, leg, torch.tensor([0.99] * 3), torch.ones(3)).tolist() == [True, False, False]
    near = torch.full((3,), 0.9)
    assert jd.hybrid_ok(p, leg, torch.tensor([0.8, 0.8, 0.8]), near, 0.85).tolist() == [True, False, False]
    assert jd.hybrid_ok(p, leg, torch.tensor([0.7, 1.0, 1.0]), near, 0.85).tolist() == [False] * 3  # 7 of 10: not afar
    assert jd.hybrid_ok(p, leg, torch.ones(3), near, 0.95).tolist() == [False] * 3  # all vote, but none lies near


def test_from_afar_the_neighbours_must_lie_as_near_as_for_typical_real_digits():
    """The TA could not see the 8 in a hybrid whose 8 px neighbours voted 8: a blob whose nearest digits are merely
    the least unlike it. Its neighbours must lie as near as they do for FAR_TYPICAL's share of real digits."""
    g = torch.Generator().manual_seed(0)
    bank = torch.rand(40, 1, 28, 28, generator=g) * 2 - 1
    labels = torch.arange(40) % 2
    reader = jd.NeighbourReader(bank, labels, px=8, k=3)
    with pytest.raises(RuntimeError, match="fit_typical"):
        reader.reads(bank)
    reader.fit_typical(bank, labels, quantile=0.25)
    near = reader.nearness(bank)[torch.arange(40), labels]
    assert reader.nearness_min == pytest.approx(float(near.quantile(0.25)))
    blob = bank[:1] * 0.1 + torch.rand(1, 1, 28, 28, generator=g) * 2 - 1  # unlike every bank digit
    votes, near_blob = reader.votes(blob), reader.nearness(blob)
    c = int(votes.argmax())
    assert near_blob[0, c] < reader.nearness_min and not reader.reads(blob)[0, c]
    assert not jd.far_ok(votes[:, c], near_blob[:, c], reader.nearness_min)[0]
    assert jd.far_ok(torch.tensor([1.0]), near_blob[:, c], -1.0)[0]  # the vote alone would read it


def test_the_neighbour_reader_reads_its_own_digits_and_small_views_are_small():
    g = torch.Generator().manual_seed(0)
    bank = torch.rand(30, 1, 28, 28, generator=g) * 2 - 1
    labels = torch.arange(30) % 10
    reader = jd.NeighbourReader(bank, labels, px=8, k=1)
    assert (reader.votes(bank).argmax(1) == labels).all()
    assert jd.small_view(bank).shape == (30, 1, 8, 8)
    with pytest.raises(ValueError, match="at least k=10"):
        jd.NeighbourReader(bank[:5], labels[:5])


def _hyb_rows(passes: dict) -> list:
    """Rows of HYBRID_FIELDS: for pair (a, b) -> list of (p_near, legible, vote_far) per seed (near_far 0.9)."""
    return [[a, b, s, p, l, v, 0.9, 0.0] for (a, b), got in passes.items() for s, (p, l, v) in enumerate(got)]


def test_the_pilot_chooses_the_sigma_with_the_most_successes_then_the_most_seen_from_afar():
    ok, far_only, fail = (0.99, 1, 0.9), (0.5, 0, 0.9), (0.5, 0, 0.0)
    pilot = {"1": _hyb_rows({(0, 1): [ok, far_only], (1, 2): [fail]}),
             "2": _hyb_rows({(0, 1): [ok, ok], (1, 2): [fail]})}
    assert pk.choose_sigma(pilot, 0.5) == 2.0
    pilot["1"] = _hyb_rows({(0, 1): [ok, fail], (1, 2): [fail]})  # one success each: the most read from afar wins
    pilot["2"] = _hyb_rows({(0, 1): [ok, far_only], (1, 2): [fail]})
    assert pk.choose_sigma(pilot, 0.5) == 2.0
    pilot["2"] = _hyb_rows({(0, 1): [ok, fail], (1, 2): [fail]})  # a full tie: the smaller sigma
    assert pk.choose_sigma(pilot, 0.5) == 1.0


def test_examples_are_only_pairs_that_passed_best_first_and_never_excluded():
    ok, fail = (0.99, 1, 0.9), (0.5, 0, 0.0)
    rows = _hyb_rows({(0, 1): [ok, fail, fail], (2, 3): [ok, ok, fail], (4, 5): [fail] * 3, (6, 7): [ok] * 3})
    k = ill.read_kind(rows, anagram=False, nearness_min=0.5)
    picked = ill.pick_pairs(k, exclude=[(6, 7)], seeds_each=2)
    assert [(a, b) for a, b, _ in picked] == [(2, 3), (0, 1)]  # (4, 5) never passed; (6, 7) excluded
    assert picked[0][2] == [0, 1] and picked[1][2] == [0]  # only passing seeds
    assert ill._never(k) == (1, 4) and ill._never(k, skip=[(4, 5)]) == (0, 3)  # of the pairs searched
    # shown only where a pair passes for at least half of its 3 seeds (2): (0, 1)'s single success is a lucky draw
    assert ill.repeatable(k) == 2
    six = ill.read_kind(_hyb_rows({(0, 1): [ok, ok, ok, fail, fail, fail], (2, 3): [ok, ok, fail, fail, fail, fail]}), False, 0.5)
    assert ill.repeatable(six) == 3 and [p[:2] for p in ill.pick_pairs(six, [], 1, 3)] == [(0, 1)]  # half of 6, not 2
    assert [(a, b) for a, b, _ in ill.pick_pairs(k, [(6, 7)], 2, ill.repeatable(k))] == [(2, 3)]
    assert ill._repeated(k) == 2 and ill._repeated(k, skip=[(6, 7)]) == 1
    one_row = _hyb_rows({(0, b): [ok] for b in range(1, 6)})
    assert [p[:2] for p in ill.pick_pairs(ill.read_kind(one_row, False, 0.5), [], 1)] == [(0, 1), (0, 2)]  # PER_ROW


def test_an_anagram_pair_is_easy_when_plain_digits_pass_it_either_way_round():
    """The TA: 6/7 was shown while plain 7s pass 7/6 in 50 %: the same figure turned over."""
    base = torch.zeros(10, 10)
    base[7, 6], base[6, 9], base[9, 6], base[2, 5] = 0.5, 0.75, 0.8, 0.2
    assert ill.easy_anagrams(base) == [(6, 7), (7, 6)]  # 6/9 is trivial, not easy; 2/5 below the bar


def test_the_stored_search_is_used_only_for_the_model_it_was_made_on(tmp_path):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"weights")
    picks = tmp_path / "p.json"
    picks.write_text('{"model_sha256": "%s"}' % file_sha256(ckpt))
    assert pk.stored_for(str(ckpt), str(picks)) is not None
    ckpt.write_bytes(b"other weights")
    assert pk.stored_for(str(ckpt), str(picks)) is None
    assert pk.stored_for(str(ckpt), str(tmp_path / "none.json")) is None


def test_the_shipped_search_belongs_to_the_shipped_model_and_chose_its_sigma_by_the_rule():
    """Guards a swap of mnist/reference/model.pt without python -m cs180.parta_picks run again."""
    picks = pk.load_picks()
    assert picks is not None, "cs180/parta_picks.json is missing: run python -m cs180.parta_picks"
    assert picks["model_sha256"] == file_sha256(REFERENCE), "parta_picks.json was made on another model.pt"
    pilot = {k: v["rows"] for k, v in picks["hybrid"]["pilot"].items()}
    nmin = picks["settings"]["far_nearness_min"]
    assert pk.choose_sigma(pilot, nmin) == picks["hybrid"]["sigma"] == ed.HYBRID_SIGMA  # one value
    assert picks["hybrid"]["fields"] == list(pk.HYBRID_FIELDS)
    assert picks["settings"]["far_typical"] == jd.FAR_TYPICAL
    assert os.path.getsize(pk.PICKS) < 200_000  # small, beside the code


def test_examples_come_only_from_repeatable_pairs_and_the_most_frequent_only_where_none_is():
    """The TA: rows filled up to the handout's 3 from pairs that work less often than not were illegible to the eye."""
    ok, fail = (0.99, 1, 0.9), (0.5, 0, 0.0)
    k = ill.read_kind(_hyb_rows({(0, 1): [ok, ok, fail], (2, 3): [fail] * 3, (4, 5): [ok, fail, fail],
                                 (6, 7): [ok, fail, fail], (8, 9): [ok, fail, fail]}), False, 0.5)
    picked = ill.pick_examples(k, [], 1)
    assert [p[:2] for p in picked] == [(0, 1)]  # one repeatable pair: no lucky pair fills up to 3
    assert ill._which(k, 3, picked, "the pairs") == "the pairs that succeed for 2 or more of 3 seeds (0/1)"
    lucky = ill.read_kind(_hyb_rows({(0, 1): [ok, fail, fail], (2, 3): [fail] * 3, (4, 5): [ok, fail, fail],
                                     (6, 7): [ok, fail, fail], (8, 9): [ok, fail, fail]}), False, 0.5)
    shown = ill.pick_examples(lucky, [], 1)
    assert len(shown) == 4 and ill.split_picked(lucky, shown)[0] == []  # every pair tied at the top, none left out
    assert ("none does, so the rows are the 4 pairs that succeed most often (0/1, 4/5, 6/7, 8/9: 1 of 3 each), "
            "lucky draws") in ill._rule_words(lucky, 3, shown)
    assert ill._which(lucky, 3, shown, "the pairs").startswith("none of the pairs succeeds for 2 or more of 3 seeds")


def test_an_extended_search_equals_one_made_from_scratch(monkeypatch):
    """--extend keeps the stored seeds' rows and draws only the new seeds: the file must be what one search over all
    the seeds writes (each seed's images do not depend on the others), and its pilot and sigma are kept."""
    def rows(kind):
        return lambda model, schedule, judge, how, seeds, *rest, **kw: [[0, 1, s, 0.95, 1.0, 0.9, 0.9, 0.0][:7 if kind == "a" else 8]
                                                                        for s in seeds]
    monkeypatch.setattr(pk, "anagram_rows", rows("a"))
    monkeypatch.setattr(pk, "hybrid_rows", rows("h"))
    judge = types.SimpleNamespace(far=types.SimpleNamespace(nearness_min=0.88))
    quiet = lambda *_: None
    full = pk.search(None, None, judge, pk.SearchSettings(seeds=(0, 1, 2, 3)), quiet)
    part = pk.search(None, None, judge, pk.SearchSettings(seeds=(0, 1)), quiet)
    grown = pk.search(None, None, judge, pk.SearchSettings(seeds=(0, 1, 2, 3)), quiet, done=part)
    for key in ("settings", "anagram", "hybrid"):
        assert grown[key] == full[key], key
    judge.far.nearness_min = 0.5
    with pytest.raises(ValueError, match="other digits"):
        pk.search(None, None, judge, pk.SearchSettings(seeds=(0, 1, 2, 3)), quiet, done=part)


def test_a_tally_per_i_start_says_a_run_of_equal_counts_once():
    """The TA: '0/4, 0/4, 0/4, 0/4, 0/4, 3/4' read as generated; a run of one count is said once."""
    assert edit._per_i(["0/4"] * 5 + ["3/4"], [1, 3, 5, 7, 10, 20]) == "0/4 at i_start = 1 to 10 and 3/4 at i_start = 20"
    assert edit._per_i(["6/6", "5/6", "6/6"], [1, 3, 5]) == "6/6 at i_start = 1, 5/6 at i_start = 3 and 6/6 at i_start = 5"


def test_the_unlabelled_samples_digits_are_counted_in_words():
    """The TA: '1: 1, 2: 1, 3: 1, 4: 1, 6: 2, ...' read as generated."""
    counts = torch.tensor([0, 1, 1, 1, 1, 0, 2, 2, 2, 1])
    assert den.digit_counts_words(counts) == "6, 7 and 8 twice each and 1, 2, 3, 4 and 9 once each"
    assert den.digit_counts_words(torch.tensor([0, 3] + [0] * 8)) == "1 three times"


def test_the_trivial_anagrams_count_only_6_9_and_9_6():
    """The TA: 'as anagrams they pass 38/48' counted the easy 6/7 and 7/6 with the trivial pairs (24/24)."""
    rows = [[a, b, s, 0.99, 1.0, 0.99, 1.0] for a, b in ((6, 9), (9, 6), (6, 7), (7, 6)) for s in range(2)]
    k = ill.read_kind(rows, anagram=True)
    assert ill.trivial_passes(k) == "4/4"


def test_the_illusions_verdict_against_plain_samples_is_chosen_by_its_test():
    """The TA: '4/1080 ... against 0% for plain samples' read like a result; the box now says whether the illusions
    beat plain samples read the same way (Fisher's exact test) and, where they do not, that they do not work."""
    plain = torch.zeros(10, 10).fill_diagonal_(float("nan"))  # 90 pairs x 4 plain samples: 0 of 360 readings pass
    hits = lambda k, n: torch.arange(n) < k  # noqa: E731
    assert ill.against_plain(hits(4, 1080), plain).startswith(
        "they do not work on this model: 4 of 1080 images succeed, not distinguishable from plain samples (0 of 360")
    assert ill.against_plain(hits(59, 1032), plain).startswith(
        "59 of 1032 images succeed (5.7%), more often than plain samples (0 of 360")
    assert "(0 of 352 readings" in ill.against_plain(hits(59, 1032), plain, skip=[(6, 9), (9, 6)])  # skipped pairs out
    busy = torch.full((10, 10), 0.5).fill_diagonal_(float("nan"))  # plain samples pass half their readings
    assert "less often than plain samples (180 of 360" in ill.against_plain(hits(59, 1032), busy)
