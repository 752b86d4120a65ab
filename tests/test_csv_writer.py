"""Unit: the fast CSV writer keeps the dtype contract: `read_csv` gets back the values and dtypes it was given."""

from __future__ import annotations

import io
import sys

import numpy as np
import pandas as pd
import pytest

from ctgan_server.csv_writer import CsvWriter


def _table() -> pd.DataFrame:
    n = 12
    return pd.DataFrame(
        {
            "whole_floats": np.arange(n, dtype=float) + 50.0,  # pyarrow alone writes 50, which reads back int64
            "floats": np.linspace(0.25, 3.5, n),
            "ints": np.arange(n, dtype="int64") * 7,
            "ints_with_gaps": pd.array([1, None, 3] * (n // 3), dtype="Int64"),
            "flags": np.array([True, False] * (n // 2)),
            "words": ["plain", "two words", None, "x"] * (n // 4),
            "stamps": ["2021-03-04 10:00:00"] * n,
        }
    )


def _written(frame: pd.DataFrame, blocks: int, delimiter: str = ",") -> bytes:
    write = CsvWriter(delimiter)
    edges = np.linspace(0, len(frame), blocks + 1).astype(int)
    return b"".join(write(frame.iloc[a:b]) for a, b in zip(edges[:-1], edges[1:]))


def _expected(frame: pd.DataFrame) -> pd.DataFrame:
    """What the same table reads back as when pandas writes it."""
    return pd.read_csv(io.BytesIO(frame.to_csv(index=False).encode()))


@pytest.mark.parametrize("blocks", [1, 3])
def test_read_csv_gets_back_what_pandas_writing_would_give(blocks):
    frame = _table()
    got = pd.read_csv(io.BytesIO(_written(frame, blocks)))
    pd.testing.assert_frame_equal(got, _expected(frame))
    assert got["whole_floats"].dtype == np.float64 and got["flags"].dtype == bool


def test_booleans_are_spelled_as_pandas_spells_them():
    text = _written(_table(), 2).decode()
    assert "True" in text and "true" not in text


def test_values_that_need_quotes_are_quoted_and_a_delimiter_is_honoured():
    frame = _table()
    frame["words"] = ['he said "no"', "a;b", "line\nbreak", "fine"] * 3
    got = pd.read_csv(io.BytesIO(_written(frame, 3, ";")), sep=";")
    pd.testing.assert_frame_equal(got, pd.read_csv(io.BytesIO(frame.to_csv(index=False, sep=";").encode()), sep=";"))
    assert got["words"].tolist() == frame["words"].tolist()


def test_without_pyarrow_the_same_table_comes_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    frame = _table()
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(_written(frame, 3))), _expected(frame))


def test_a_single_row_and_an_empty_block():
    frame = _table().iloc[:1]
    write = CsvWriter()
    data = write(frame) + write(frame.iloc[:0])
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(data)), _expected(frame))
