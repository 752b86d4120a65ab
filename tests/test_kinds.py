"""Unit: date formats, identifier shapes, high-cardinality text and conditions, on small frames."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ctgan_server import dates
from ctgan_server.identifiers import (
    IdentifierMaker,
    learn_text_shapes,
    original_id_record,
)
from ctgan_server.schema import build_plan, identifier_records
from ctgan_server.transform import (
    Restorer,
    matching_rows,
    parse_conditions,
    training_frame,
)
from ctgan_server.wire import BadDataError, UsageError


@pytest.mark.parametrize(
    "values, fmt, suffix",
    [
        (["2021-03-04T10:20:30Z", "2022-11-30T23:59:01Z"], "%Y-%m-%dT%H:%M:%S", "Z"),
        (["04/03/2021", "13/03/2021"], "%d/%m/%Y", ""),  # 13 can only be a day
        (["03/04/2021", "03/13/2021"], "%m/%d/%Y", ""),
        (["Mar-2018", "Nov-2019"], "%b-%Y", ""),
        (["2021-03-04 10:20", "2021-05-06 11:00"], "%Y-%m-%d %H:%M", ""),
    ],
)
def test_date_formats_are_found_and_written_back_the_same_way(values, fmt, suffix):
    spec = dates.detect(pd.Series(values * 10))
    assert (spec["format"], spec["suffix"]) == (fmt, suffix)
    seconds = dates.to_seconds(pd.Series(values), spec)
    assert dates.format_seconds(seconds, spec).tolist() == values


def test_zoned_dates_keep_their_offset_style():
    values = ["2021-03-04T10:20:30+01:00", "2021-06-01T00:00:00+01:00"]
    spec = dates.detect(pd.Series(values))
    back = dates.format_seconds(dates.to_seconds(pd.Series(values), spec), spec)
    assert back.tolist() == values


@pytest.mark.parametrize("values", [["1", "2", "3"], ["2021", "2022"], ["a1", "b2"], ["1.5", "2.5"], ["2021-03-04", "soon"]])
def test_numbers_codes_and_mixed_text_are_not_dates(values):
    assert dates.detect(pd.Series(values * 10)) is None


def test_forced_dates_read_numbers_and_refuse_nonsense():
    frame = pd.DataFrame({"lab": [20210304, 20211231, 20200101] * 10, "x": np.arange(30.0)})
    plan = build_plan(frame, {"datetime": ["lab"]})
    assert plan["columns"][0]["kind"] == "datetime" and plan["columns"][0]["datetime"]["format"] == "%Y%m%d"
    with pytest.raises(BadDataError, match="--datetime x"):
        build_plan(pd.DataFrame({"x": ["soon", "later"] * 10, "y": np.arange(20.0)}), {"datetime": ["x"]})


def test_text_id_shapes_keep_literals_and_widen_digits():
    shapes = learn_text_shapes(pd.Series(["ID10", "ID11", "ID12", "AB-9f3e"]))
    four = next(s for s in shapes if len(s["positions"]) == 4)
    assert four["positions"] == ["I", "D", "0123456789", "0123456789"]  # a constant digit still varies
    assert four["weight"] == 3


def _maker(values, rows_seed=0, numeric=False, **extra):
    observed = pd.Series(values)
    col = {"name": "id", "numeric": numeric, **extra}
    if not numeric:
        col["shapes"] = learn_text_shapes(observed)
    return IdentifierMaker(col, original_id_record(observed, numeric), np.random.default_rng(rows_seed))


def test_fresh_ids_are_unique_across_calls_and_never_original():
    originals = [f"PT-{i:03d}" for i in range(0, 1000, 2)]  # half of the 1,000 possible values
    maker = _maker(originals)
    made = maker.fresh(300) + maker.fresh(200)  # two chunks of one run
    assert len(set(made)) == 500
    assert all(re.fullmatch(r"PT-\d{3}", v) for v in made)
    assert not set(made) & set(originals)


def test_numeric_ids_stay_in_range_and_say_when_the_range_is_used_up():
    maker = _maker([1, 2, 3, 10], numeric=True, min=1.0, max=10.0)
    made = maker.fresh(6)
    assert sorted(made) == [4, 5, 6, 7, 8, 9]  # the only unused values
    assert maker.fresh(4) and len(set(maker.used)) == 10  # then originals are reused, still unique
    with pytest.raises(BadDataError, match="fewer unique values than the rows"):
        maker.fresh(1)


def test_text_ids_with_no_room_left_are_an_error():
    maker = _maker([f"A{i}" for i in range(10)] * 1)
    with pytest.raises(BadDataError, match="no unused values left"):
        maker.fresh(1)


def test_rare_free_text_is_grouped_and_common_values_kept():
    common = [f"title {i}" for i in range(10)] * 30
    rare = [f"one-off {i}" for i in range(120)]
    frame = pd.DataFrame({"job": common + rare, "pay": np.arange(len(common) + len(rare), dtype=float)})
    plan = build_plan(frame)
    job = plan["columns"][0]
    assert job["kind"] == "high-cardinality text" and sorted(job["categories"]) == sorted(set(common))
    train, discrete = training_frame(frame, plan)
    assert set(train["job"]) == set(common) | {"(other)"} and "job" in discrete


def test_conditions_are_checked_and_enforced():
    frame = pd.DataFrame({"a": ["x", "y"] * 20, "b": [1, 2, 3, 4] * 10, "v": np.arange(40.0)})
    plan = build_plan(frame)
    assert parse_conditions({"b": "3.0", "a": "y"}, plan) == {"b": "3", "a": "y"}
    for bad, message in (({"nope": "1"}, "no such column"), ({"a": "z"}, "no such value"), ({"v": "1"}, "only discrete")):
        with pytest.raises(UsageError, match=message):
            parse_conditions(bad, plan)
    raw = pd.DataFrame({"a": ["x", "y", "y"], "b": ["3", "3", "1"], "v": [1.0, 2.0, 3.0]})
    assert matching_rows(raw, {"a": "y", "b": "3"})["v"].tolist() == [2.0]


def test_identifier_columns_come_back_fresh_through_the_restorer():
    frame = pd.DataFrame({"pid": [f"P{i:05d}" for i in range(40)], "v": np.arange(40.0)})
    plan = build_plan(frame)
    assert plan["columns"][0]["kind"] == "identifier"
    restore = Restorer(plan, identifier_records(frame, plan), np.random.default_rng(0))
    out = restore(pd.DataFrame({"v": np.arange(40.0)}))
    assert out["pid"].is_unique and not set(out["pid"]) & set(frame["pid"])
    assert out["pid"].str.fullmatch(r"P\d{5}").all()


def test_many_examples_keep_fixed_characters_but_leave_room_for_new_ids():
    rng = np.random.default_rng(2)
    uuids = pd.Series(
        [
            f"{rng.bytes(4).hex()}-{rng.bytes(2).hex()}-4{rng.bytes(2).hex()[:3]}-{'89ab'[i % 4]}{rng.bytes(8).hex()[:15]}"
            for i in range(400)
        ]
    )
    positions = learn_text_shapes(uuids)[0]["positions"]
    assert positions[14] == "4" and positions[19] == "89ab"  # version and variant survive
    padded = learn_text_shapes(pd.Series([f"PT-{i:06d}" for i in range(1, 401)]))[0]["positions"]
    assert padded[:5] == ["P", "T", "-", "0", "0"]  # two of the three constant zeros kept
    assert all(p == "0123456789" for p in padded[5:])  # room for ten times the 400 originals


def test_large_numeric_ids_stay_exact():
    big = 10**17
    frame = pd.DataFrame({"acct": [big + 7 * i for i in range(40)], "v": np.arange(40.0)})
    plan = build_plan(frame, {"id": ["acct"]})
    assert plan["columns"][0]["min"] == big  # an int, not a rounded float
    out = Restorer(plan, identifier_records(frame, plan), np.random.default_rng(0))(pd.DataFrame({"v": np.arange(200.0)}))
    assert out["acct"].dtype == "int64" and out["acct"].is_unique
    assert out["acct"].between(big, big + 7 * 39).all() and not set(out["acct"]) & set(frame["acct"])


def test_whole_numbers_with_gaps_are_written_without_point_zero_but_read_back_as_float():
    import io

    frame = pd.DataFrame({"kids": [1.0, np.nan, 3.0] * 20, "v": np.arange(60.0)})
    restore = Restorer(build_plan(frame), {}, np.random.default_rng(0))
    with_gap = restore.for_csv(pd.DataFrame({"kids": [1.0, np.nan], "v": [0.5, 1.5]})).to_csv(index=False)
    assert with_gap.splitlines()[1:] == ["1,0.5", ",1.5"]
    without_gap = restore.for_csv(pd.DataFrame({"kids": [1.0, 3.0], "v": [0.5, 1.5]})).to_csv(index=False)
    assert pd.read_csv(io.StringIO(without_gap))["kids"].dtype == "float64"
