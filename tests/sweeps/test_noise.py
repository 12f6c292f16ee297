"""The confirm stage's statistics on constructed cases: intervals, "beats" and "within noise", the Pareto set on
means. Expected values are worked out by hand here (Student's t quantiles from a table), not with the module."""
from __future__ import annotations

import math

import pytest

from sweeps.noise import Estimate, beats, leader, pareto_on_means, statements, verdict

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}  # t(0.975, df), printed tables


def test_interval_is_students_t_of_the_mean():
    e = Estimate((1.0, 2.0, 3.0))
    assert e.mean == 2.0 and e.std == pytest.approx(1.0)
    assert e.half_width == pytest.approx(T975[2] * 1.0 / math.sqrt(3), rel=1e-3)
    five = Estimate((0.1, 0.2, 0.3, 0.4, 0.5))
    assert five.half_width == pytest.approx(T975[4] * five.std / math.sqrt(5), rel=1e-3)
    one = Estimate((4.2,))  # one seed: no spread, an interval over everything
    assert one.mean == 4.2 and math.isnan(one.std) and one.low == -math.inf and one.high == math.inf


@pytest.mark.parametrize("maximize", [False, True])
def test_beats_only_when_the_intervals_separate_in_the_objectives_direction(maximize):
    low = Estimate((1.00, 1.01, 0.99))  # mean 1.00, half width 4.303 * 0.01 / sqrt 3 = 0.0248
    high = Estimate((1.10, 1.11, 1.09))  # 1.10 +- 0.0248: separate from `low`
    near = Estimate((1.03, 1.04, 1.02))  # 1.03 +- 0.0248: [1.005, 1.055] overlaps [0.975, 1.025]
    better, worse = (high, low) if maximize else (low, high)
    assert beats(better, worse, maximize) and not beats(worse, better, maximize)
    assert not beats(low, near, maximize) and not beats(near, low, maximize)
    assert "beats" in verdict("A", better, "B", worse, "m", maximize)
    assert verdict("A", better, "B", worse, "m", maximize).startswith("A beats B")
    assert verdict("A", worse, "B", better, "m", maximize).startswith("B beats A")  # whichever order it is asked
    assert "within noise" in verdict("A", low, "B", near, "m", maximize)


def test_a_big_difference_of_single_runs_is_never_beyond_noise():
    assert not beats(Estimate((0.0,)), Estimate((100.0,)), maximize=True)
    assert not beats(Estimate((100.0,)), Estimate((0.0,)), maximize=True)


def test_the_issues_three_seed_mqar_example_is_within_noise():
    """The three seeds of issue 21's table: seed 0 ranked DeltaNet first, seed 2 Titans. Neither lead is real."""
    deltanet, gated, titans = Estimate((0.140, 0.076, 0.096)), Estimate((0.084, 0.072, 0.085)), \
        Estimate((0.051, 0.072, 0.099))
    found = {"deltanet": [deltanet], "gated_deltanet": [gated], "titans": [titans]}
    said = statements(found, ["recall/mqar"], [True])
    assert len(said) == 3 and all("within noise" in s for s in said)
    top, ties = leader(found, 0, True)
    assert top == "deltanet" and set(ties) == {"gated_deltanet", "titans"}


def test_pareto_set_on_means_and_statements_per_objective():
    # (bpb minimised, recall maximised): a dominates c; a and b trade off
    found = {
        "a": [Estimate((3.0, 3.1, 2.9)), Estimate((0.50, 0.52, 0.48))],
        "b": [Estimate((3.5, 3.6, 3.4)), Estimate((0.90, 0.91, 0.89))],
        "c": [Estimate((3.2, 3.3, 3.1)), Estimate((0.40, 0.41, 0.39))],
        "lost": [Estimate(()), Estimate(())],  # no completed seed: not ranked
    }
    assert pareto_on_means(found, [False, True]) == {"a", "b"}
    said = statements(found, ["val/bpb", "recall/mqar"], [False, True])
    assert len(said) == 6  # three pairs per objective, the architecture without seeds left out
    assert "b beats a on recall/mqar" in " ".join(said)
    assert any(s.startswith("a beats b on val/bpb") for s in said)
    assert pareto_on_means(found, [True, True]) == {"b"}  # directions matter: b has the higher of both
    assert pareto_on_means({"x": [Estimate((1.0,))], "y": [Estimate((1.0,))]}, [False]) == {"x", "y"}  # ties
