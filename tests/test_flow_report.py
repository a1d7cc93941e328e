"""The flow report's sentences follow its numbers: flip a deciding number and the sentence changes
(two_pixel/flow_report.py), and the measures behind them (straightness, equivalent evaluations)."""
import math

import pytest
import torch

from two_pixel.flow_report import BUDGETS, Measured, answers, equivalent_nfe, straightness
from two_pixel.steps import Curve

NFES = (1, 2, 3, 5, 10, 20, 50)


def curve(energies, nfes=NFES, spread=0.0):
    """A curve whose three seeds lie at e - spread, e, e + spread."""
    return Curve(tuple(nfes), tuple((e - spread * e, e, e + spread * e) for e in energies))


DDIM = [1.0, 0.8, 0.1, 0.05, 0.02, 0.009, 0.002]
HEUN, HEUN_NFES = [0.2, 0.01, 0.005, 0.002, 0.001], (3, 5, 11, 21, 51)
STRAIGHT = {"eps": 0.79, "flow": 0.81, "eps-exact": 0.86, "flow-exact": 0.82, "eps-one": 0.95, "flow-one": 1.0}


def measured(flow, ddim=DDIM, flow_exact=None, ddim_exact=None, straight=STRAIGHT):
    curves = {("eps", "network"): curve(ddim), ("eps", "exact"): curve(ddim_exact or [e / 2 for e in ddim]),
              ("flow", "network"): curve(flow), ("flow", "exact"): curve(flow_exact or [e / 2 for e in flow]),
              ("heun", "network"): curve(HEUN, HEUN_NFES), ("heun", "exact"): curve(HEUN, HEUN_NFES)}
    inward = {"eps-exact": 0.65, "flow-exact": 1.0}
    return Measured(curves, [5e-4] * 5, {0.5: 0.1}, dict(straight), {}, inward)


def test_flow_lower_everywhere_is_called_lower_at_every_budget():
    text = answers(measured([e * 0.5 for e in DDIM]))
    assert "flow matching (Euler) is lower, at every budget" in text


def test_flow_higher_everywhere_is_called_ddims():
    text = answers(measured([e * 2 for e in DDIM]))
    assert "DDPM's DDIM is lower, at every budget" in text and "flow matching (Euler) is lower" not in text


def test_mixed_curves_name_each_budget():
    flow = [e * (0.5 if k < 10 else 2) for e, k in zip(DDIM, NFES)]
    text = answers(measured(flow))
    assert "flow matching (Euler) is lower at 2, 3, 5; DDPM's DDIM is lower at 10, 20, 50 evaluations" in text
    assert "at 2 evaluations 0.4000 flow matching against 0.8000 DDIM (2.0x)" in text


def test_differences_inside_the_seeds_spread_are_called_neither():
    m = measured([e * 0.9 for e in DDIM])
    wide = m._replace(curves={**m.curves, ("eps", "network"): curve(DDIM, spread=0.5),
                              ("flow", "network"): curve([e * 0.9 for e in DDIM], spread=0.5)})
    assert "the seeds cannot tell them apart at 2, 3, 5, 10, 20, 50" in answers(wide)
    assert "flow matching against" not in answers(wide)  # no "by how much" for the networks
    assert "flow matching against" in answers(m)
    assert "flow matching (Euler) is lower, at every budget" in answers(m)  # no spread: 10 % lower is lower


def test_the_samplers_alone_follow_the_exact_curves():
    low = answers(measured(DDIM, flow_exact=[e / 4 for e in DDIM], ddim_exact=[e / 2 for e in DDIM]))
    high = answers(measured(DDIM, flow_exact=[e for e in DDIM], ddim_exact=[e / 2 for e in DDIM]))
    assert "Euler on the exact velocity is lower, at every budget" in low
    assert "DDIM on the exact noise predictor is lower, at every budget" in high


def test_the_straighter_paths_follow_the_numbers():
    assert "DDIM's paths are the straighter" in answers(measured(DDIM))
    flipped = {**STRAIGHT, "flow-exact": 0.9}
    assert "flow matching's paths are the straighter" in answers(measured(DDIM, straight=flipped))


def test_heun_against_euler_follows_the_numbers():
    assert "at 5, 0.0100 against 0.0500 (lower)" in answers(measured(DDIM))  # Euler is DDIM's curve here
    assert "at 3, 0.2000 against 0.1000 (higher)" in answers(measured(DDIM))


def test_the_first_steps_follow_the_numbers():
    m = measured(DDIM)
    assert "in 100% of the flow paths" in answers(m) and "the others first move away" in answers(m)
    same = m._replace(inward={"eps-exact": 1.0, "flow-exact": 1.0})
    assert "the others first move away" not in answers(same)


def test_equivalent_evaluations_interpolate_in_log_log():
    c = curve([1.0, 0.5, 0.25], nfes=(1, 2, 4))  # energy = 1 / nfe
    assert equivalent_nfe(c, 1 / math.sqrt(8)) == pytest.approx(math.sqrt(8))
    assert equivalent_nfe(c, 0.1) is None and equivalent_nfe(c, 2.0) == 1.0


def test_straightness_is_one_for_a_line_and_less_for_a_corner():
    line = torch.stack([torch.tensor([[k, 2.0 * k]]) for k in range(5)]).double()  # (steps + 1, 1, 2)
    corner = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])
    assert straightness(line) == pytest.approx(1.0)
    assert straightness(corner) == pytest.approx(1 / math.sqrt(2))


def test_budgets_are_measured_points():
    assert set(BUDGETS) <= set(NFES)
