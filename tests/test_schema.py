"""Unit: reading uploads, the column plan, and restoring CTGAN output to the original shape."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pandas as pd
import pytest

from ctgan_server.schema import build_plan, read_uploaded_csv
from ctgan_server.transform import Restorer, training_frame, within_range
from ctgan_server.wire import BadDataError, LimitError, UsageError


def _read(text: bytes, **kw):
    return read_uploaded_csv(gzip.compress(text), "x.csv", **kw)


def test_bom_is_fine_and_text_columns_keep_zeros():
    frame = _read(b"\xef\xbb\xbfid,v\n007,1.5\n010,2.5\n", text_columns=["id"])
    assert list(frame.columns) == ["id", "v"] and list(frame["id"]) == ["007", "010"]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"a,b\n", "no data rows"),
        (b"a\x00b", "binary"),
        (b"a,b\n\xff,1\n", "not UTF-8"),
        (b"x,x\n1,2\n", "duplicate"),
    ],
)
def test_unusable_uploads(raw, message):
    with pytest.raises(BadDataError, match=message):
        _read(raw)


def test_not_gzip_is_reported():
    with pytest.raises(BadDataError, match="gzip"):
        read_uploaded_csv(b"plain text", "x.csv")


def _messy() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(20, 60, 80),
            "weight": np.where(rng.random(80) < 0.2, np.nan, rng.normal(70, 5, 80).round(1)),
            "kids": np.where(rng.random(80) < 0.2, np.nan, rng.integers(0, 30, 80)).astype(float),
            "smoker": rng.random(80) < 0.3,
            "city": np.where(rng.random(80) < 0.2, None, rng.choice(["a", "b"], 80)),
            "year": rng.choice([2019, 2020], 80),
            "empty": np.nan,
            "const": "same",
        }
    )


def test_plan_kinds():
    kinds = {c["name"]: c["kind"] for c in build_plan(_messy())["columns"]}
    assert kinds == {
        "age": "continuous",
        "weight": "continuous",
        "kids": "continuous",
        "smoker": "discrete",
        "city": "discrete",
        "year": "discrete",
        "empty": "empty",
        "const": "constant",
    }
    assert {c["name"]: c["kind"] for c in build_plan(_messy(), {"discrete": ["age"]})["columns"]}["age"] == "discrete"
    with pytest.raises(UsageError, match="--discrete names no such column: nope"):
        build_plan(_messy(), {"discrete": ["nope"]})
    with pytest.raises(UsageError, match="both --discrete and --id"):
        build_plan(_messy(), {"discrete": ["age"], "id": ["age"]})


def test_training_frame_has_no_nan_in_continuous_columns():
    frame = _messy()
    train, discrete = training_frame(frame, build_plan(frame))
    assert not train[["age", "weight", "kids"]].isna().any().any()
    assert set(discrete) == {"smoker", "city", "year", "weight__missing", "kids__missing"}
    assert (train["weight__missing"] == "yes").sum() == frame["weight"].isna().sum()
    assert "empty" not in train and "const" not in train


def _restore(fake: pd.DataFrame, plan: dict, seed: int = 0) -> pd.DataFrame:
    return Restorer(plan, {}, np.random.default_rng(seed))(fake)


def test_restore_rounds_keeps_ranges_and_brings_back_dtypes():
    frame = _messy()
    plan = build_plan(frame)
    fake = pd.DataFrame(
        {
            "age": [2.6, 19.4, 200.0, 30.6],  # rounded, not truncated; out-of-range values redrawn
            "weight": [70.04, 10.0, 71.26, 72.0],
            "weight__missing": ["no", "no", "yes", "no"],
            "kids": [1.6, 2.2, 3.0, 40.0],
            "kids__missing": ["no", "yes", "no", "no"],
            "smoker": ["True", "False", "True", "False"],
            "city": ["a", "<missing>", "b", "a"],
            "year": ["2019", "2020", "2020", "2019"],
        }
    )
    out = _restore(fake, plan)
    assert list(out.columns) == list(frame.columns)
    assert (frame["age"].min(), frame["age"].max()) == (20, 59)
    assert out["age"].dtype == "int64" and out["age"].iloc[3] == 31
    assert out["age"].between(20, 59).all()
    assert out["weight"].dropna().between(frame["weight"].min(), frame["weight"].max()).all()
    assert out["weight"].iloc[0] == 70.0
    assert out["kids"].iloc[0] == 2.0 and out["kids"].iloc[2] == 3.0
    assert out["smoker"].tolist() == [True, False, True, False]
    assert out["empty"].isna().all() and (out["const"] == "same").all()
    # and the dtypes survive a trip through CSV, as a user reads the file
    buffer = io.StringIO()
    out.to_csv(buffer, index=False)
    frame_csv = io.StringIO()
    frame.to_csv(frame_csv, index=False)
    assert list(pd.read_csv(io.StringIO(buffer.getvalue())).dtypes) == list(pd.read_csv(io.StringIO(frame_csv.getvalue())).dtypes)


def test_missing_values_come_back_at_the_original_rate():
    """CTGAN over-generates the rare "missing" category; the restorer brings each rate back."""
    frame = _messy()
    plan = build_plan(frame)
    rates = {c["name"]: c["null_rate"] for c in plan["columns"]}
    n = 2000
    rng = np.random.default_rng(1)
    fake = pd.DataFrame(
        {
            "age": rng.integers(20, 60, n).astype(float),
            "weight": rng.normal(70, 5, n),
            "weight__missing": np.where(rng.random(n) < 0.6, "yes", "no"),  # far too many gaps
            "kids": rng.integers(0, 30, n).astype(float),
            "kids__missing": "no",  # far too few
            "smoker": "True",
            "city": np.where(rng.random(n) < 0.7, "<missing>", "a"),
            "year": "2019",
        }
    )
    out = _restore(fake, plan)
    for name in ("weight", "kids", "city"):
        assert rates[name] > 0.05
        assert abs(out[name].isna().mean() - rates[name]) < 0.01, name
    # cleared gaps in a text column are filled with real categories, never the token
    assert set(out["city"].dropna()) <= {"a", "b"}


def test_nothing_to_learn_is_refused():
    with pytest.raises(BadDataError, match="nothing to fit"):
        build_plan(pd.DataFrame({"a": [1, 1, 1], "b": [np.nan] * 3}))


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_other_separators_are_detected_and_kept(sep):
    frame = _read(f"a{sep}b{sep}c\n1{sep}x{sep}2.5\n3{sep}y{sep}4.5\n".encode())
    assert list(frame.columns) == ["a", "b", "c"]
    plan = build_plan(frame)
    assert plan["delimiter"] == sep and "separated" in plan["warnings"][0]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"a;b;c\n1;2\n3;4;5;6\n", "different numbers of fields"),
        (b"1,2,3\n4,5,6\n", "first row holds numbers"),
    ],
)
def test_more_bad_files(raw, message):
    with pytest.raises(BadDataError, match=message):
        _read(raw)


def test_too_many_columns_is_a_limit():
    # A server limit now ([service] max_columns), so exit 13 rather than 5; tests/test_limits.py has the rest.
    raw = (",".join(f"c{i}" for i in range(2001)) + "\n" + ",".join("1" * 2001) + "\n").encode()
    with pytest.raises(LimitError, match=r"2,001 columns.*\[service\] max_columns"):
        _read(raw)


def test_plan_warnings_for_one_column_empty_and_mixed_columns():
    one = build_plan(_read(b"a\n1\n2\n3\n"))
    assert any("only one column" in w for w in one["warnings"])
    frame = _read(b"n,m,e\n1,10,\n2,unknown,\n3,12,\n4,x,\n")
    warnings = build_plan(frame)["warnings"]
    assert any(w.startswith("m: mixed types: 50% numbers") for w in warnings)
    assert any(w.startswith("e: entirely empty") for w in warnings)


def test_out_of_range_values_are_redrawn_unless_the_bound_is_a_spike():
    values = pd.Series([-5.0, 3.0, 4.0, 50.0])
    redrawn = within_range(values, 0.0, 10.0, np.random.default_rng(0))
    assert set(redrawn) <= {3.0, 4.0}  # drawn from the in-range values, never the bounds
    spiked = within_range(values, 0.0, 10.0, np.random.default_rng(0), spikes=(True, False))
    assert spiked.iloc[0] == 0.0 and spiked.iloc[3] in (3.0, 4.0)
    debts = pd.DataFrame({"debt": [0.0] * 80 + list(np.arange(1.0, 21.0)), "x": np.arange(100.0)})
    plan = build_plan(debts)
    assert plan["columns"][0]["at_min"] == 0.8
    out = Restorer(plan, {}, np.random.default_rng(0))(pd.DataFrame({"debt": [-3.0, -1.0, 5.0], "x": [1.0, 2.0, 3.0]}))
    assert out["debt"].tolist() == [0.0, 0.0, 5.0]


def test_a_file_holding_only_a_bom_is_empty():
    with pytest.raises(BadDataError, match="is empty"):
        _read(b"\xef\xbb\xbf\r\n")
