"""rules.Rules on small frames: what breaks a rule, what a rebuild makes of CTGAN's rows, what cannot be a rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctgan_server.rules import Rules, _shares_of
from ctgan_server.schema import build_plan
from ctgan_server.wire import BadDataError, UsageError, check_rules


def _rules(frame: pd.DataFrame, *rules: dict) -> Rules:
    plan = build_plan(frame)
    learned = Rules.learn(check_rules(list(rules)), frame, plan)
    assert learned is not None
    return learned


def test_range_bounds_are_inclusive_and_positive_is_strict():
    frame = pd.DataFrame({"pct": [0.0, 12.5, 100.0, 55.5] * 10, "amount": [1.0, 2.5, 3.0, 9.75] * 10})
    rules = _rules(frame, {"type": "range", "column": "pct", "low": 0, "high": 100}, {"type": "positive", "column": "amount"})
    rows = pd.DataFrame({"pct": [0.0, 100.0, 100.5, -0.1, 50.0], "amount": [1.0, 2.0, 3.0, 4.0, 0.0]})
    assert rules.kept(rows).tolist() == [True, True, False, False, False]


def test_one_hot_needs_exactly_one_and_a_gap_in_an_inequality_keeps_it():
    frame = pd.DataFrame({"a": [1, 0, 0] * 10, "b": [0, 1, 0] * 10, "c": [0, 0, 1] * 10, "lo": [1.5, 2.5, 3.5] * 10})
    frame["hi"] = frame["lo"] + 1
    rules = _rules(frame, {"type": "one_hot", "columns": ["a", "b", "c"]}, {"type": "inequality", "low": "lo", "high": "hi"})
    rows = pd.DataFrame({"a": [1, 1, 0, 0], "b": [0, 1, 0, 1], "c": [0, 0, 0, 0], "lo": [1.5, 1.5, 1.5, np.nan], "hi": [2.0] * 4})
    assert rules.kept(rows).tolist() == [True, False, False, True]


def test_sum_to_one_shares_of_whole_numbers_add_up_exactly():
    parts = np.array([[1.0, 1.0, 1.0], [0.2, -3.0, 0.7], [0.0, 0.0, 0.0], [5.0, 2.0, 9.0]])
    reference = np.array([100.0, 7.0, 10.0, np.nan])
    rebuilt = _shares_of(parts, reference, 0)
    assert rebuilt[:3].sum(axis=1).tolist() == [100.0, 7.0, 10.0]
    assert (rebuilt[:3] >= 0).all() and (rebuilt[:3] == rebuilt[:3].round()).all()
    assert rebuilt[0].tolist() in ([34.0, 33.0, 33.0], [33.0, 34.0, 33.0], [33.0, 33.0, 34.0])
    assert rebuilt[3].tolist() == [5.0, 2.0, 9.0]  # no reference: left as CTGAN made it


def test_a_float_sum_is_kept_within_its_rounding_and_rebuilt_exactly():
    rng = np.random.default_rng(0)
    parts = rng.uniform(1, 100, (50, 2)).round(2)
    frame = pd.DataFrame({"a": parts[:, 0], "b": parts[:, 1], "total": (parts[:, 0] + parts[:, 1]).round(2)})
    rules = _rules(frame, {"type": "sum", "total": "total", "parts": ["a", "b"]})
    drawn = pd.DataFrame({"a": [1.25, 2.5], "b": [3.5, 4.75], "total": [99.0, 0.0]})
    rebuilt = rules.apply(drawn)
    assert rebuilt["total"].tolist() == [4.75, 7.25]


def test_rules_that_cannot_apply_are_refused_by_name():
    frame = pd.DataFrame({"city": ["Lyon", "Lille"] * 20, "n": list(range(40))})
    with pytest.raises(BadDataError, match=r"rule 1 \(positive\) cannot apply to 'city'"):
        _rules(frame, {"type": "positive", "column": "city"})
    with pytest.raises(BadDataError, match="rule 1 \\(sum\\) names 'm', which is not a column of the data"):
        _rules(frame, {"type": "sum", "total": "n", "parts": ["m", "n2"]})


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"type": "between", "column": "a"}], "rule 1: type must be one of"),
        ([{"type": "sum", "total": "t", "parts": ["a"]}], "rule 1 (sum): parts must be a list of at least 2"),
        ([{"type": "range", "column": "a"}], "rule 1 (range): give low, high or both"),
        ([{"type": "range", "column": "a", "low": 5, "high": 1}], "rule 1 (range): low is above high"),
        ([{"type": "inequality", "low": "a", "high": "a"}], "rule 1 (inequality): a column appears twice"),
        ([{"type": "positive", "column": "a", "strict": True}], "rule 1 (positive): unknown key 'strict'"),
    ],
)
def test_badly_formed_rules_are_refused_in_one_line(rules: list, message: str):
    with pytest.raises(UsageError) as caught:
        check_rules(rules)
    assert caught.value.message.startswith(message)


def test_ctgan_trains_on_the_gap_and_the_shares_and_they_decode_back():
    from ctgan_server.transform import training_frame

    rng = np.random.default_rng(1)
    low = rng.uniform(0, 50, 60).round(2)
    frame = pd.DataFrame({"low": low, "high": (low + rng.uniform(0, 9, 60)).round(2), "whole": rng.uniform(10, 90, 60).round(2)})
    frame["part"] = (frame["whole"] * rng.uniform(0, 1, 60)).round(2)
    rules = _rules(
        frame,
        {"type": "inequality", "low": "low", "high": "high"},
        {"type": "proportion", "reference": "whole", "parts": ["part"]},
    )
    assert [spec.get("encoded") for spec in rules.specs] == [True, True]
    train, _ = training_frame(frame, build_plan(frame))
    encoded = rules.encode(train)
    assert (encoded["high"] >= 0).all() and (encoded["part"].between(0, 1)).all()
    assert np.allclose(rules.decode(encoded)[["high", "part"]], train[["high", "part"]])
    drawn = encoded.assign(high=-1.0)  # a gap below 0 from CTGAN: the high column meets the low one
    assert (rules.decode(drawn)["high"] == encoded["low"]).all()


def test_combinations_holding_a_value_protection_merged_are_not_kept():
    frame = pd.DataFrame({"city": ["Lyon"] * 20 + ["Nice"] * 20 + ["Tulle"] * 3, "region": ["ARA"] * 20 + ["PACA"] * 23})
    plan = build_plan(frame, protect="rare")
    rules = Rules.learn(check_rules([{"type": "fixed_combinations", "columns": ["city", "region"]}]), frame, plan)
    assert sorted(map(tuple, rules.specs[0]["combinations"])) == [("Lyon", "ARA"), ("Nice", "PACA")]
    drawn = pd.DataFrame({"city": ["Lyon", "(other)", "Nice"], "region": ["ARA", "PACA", "ARA"]})
    assert rules.kept(drawn).tolist() == [True, False, False]
