"""From an uploaded CSV to a training frame, and from CTGAN output back to the original shape.

``build_plan`` decides one kind per column and records what is needed to undo
every change made for training: dtypes, ranges, decimals and missing values.
The plan is stored in the model's JSON, so ``restore`` needs nothing else.
Imports pandas: only fit and sample reach this module.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from typing import Any

import numpy as np
import pandas as pd

from .errors import BadDataError

# Integer columns with at most this many distinct values are categories
# (a year, a rating), not measurements: CTGAN models them better one-hot.
DISCRETE_INT_MAX_DISTINCT = 10
MAX_COLUMNS = 2000
OTHER_DELIMITERS = (";", "\t", "|")
_NUMBER_RE = re.compile(r"^\s*[-+]?\d+(\.\d+)?\s*$")
MISSING_FLAG_SUFFIX = "__missing"
MAX_DECIMALS = 6


def read_uploaded_csv(gz_bytes: bytes, filename: str, text_columns: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Parse an uploaded, gzipped CSV held in memory; every failure is a one-line BadDataError.

    ``text_columns`` are read as text whatever they look like, so that a
    DataFrame's string codes such as "0042" come back as they were.
    """
    try:
        raw = gzip.decompress(gz_bytes)
    except (OSError, EOFError, zlib.error) as exc:
        raise BadDataError(f"{filename}: the upload is not valid gzip ({exc})") from exc
    if not raw.strip():
        raise BadDataError(f"{filename} is empty")
    if b"\x00" in raw[:65536]:
        raise BadDataError(f"{filename} does not look like a CSV: it holds binary data")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadDataError(
            f"{filename} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); re-save it as UTF-8"
        ) from exc
    delimiter = detect_delimiter(text, filename)
    header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    dupes = sorted({name for name in header if header.count(name) > 1})
    if dupes:
        raise BadDataError(f"{filename} has duplicate column names: {', '.join(dupes)}")
    if header and all(_NUMBER_RE.match(name) for name in header):
        shown = ", ".join(header[:3]) + (", ..." if len(header) > 3 else "")
        raise BadDataError(f"{filename}: the first row holds numbers ({shown}), not column names; add a header row")
    if len(header) > MAX_COLUMNS:
        raise BadDataError(f"{filename} has {len(header):,} columns; at most {MAX_COLUMNS:,} are supported")
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=delimiter, dtype={c: object for c in text_columns if c in header} or None
        )
    except pd.errors.EmptyDataError as exc:
        raise BadDataError(f"{filename} is empty") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise BadDataError(f"{filename} is not a valid CSV: {detail}") from exc
    if frame.empty:
        raise BadDataError(f"{filename} has a header but no data rows")
    frame.attrs["delimiter"] = delimiter
    return frame


def detect_delimiter(text: str, filename: str) -> str:
    """Comma, unless the header has no comma and another separator splits every line evenly."""
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    if "," in lines[0]:
        return ","
    for candidate in OTHER_DELIMITERS:
        counts = {line.count(candidate) for line in lines}
        if counts and min(counts) > 0:
            if len(counts) == 1:
                return candidate
            shown = "tab" if candidate == "\t" else repr(candidate)
            raise BadDataError(
                f"{filename} looks {shown}-separated, but its lines have different numbers of fields; check the file"
            )
    return ","


def _json_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _decimals(values: pd.Series) -> int:
    for places in range(MAX_DECIMALS + 1):
        if np.allclose(values, values.round(places), rtol=0, atol=1e-9):
            return places
    return MAX_DECIMALS + 1  # keep full precision


def _unused_name(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name += "_"
    return name


def build_plan(frame: pd.DataFrame, discrete: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    unknown = [c for c in discrete if c not in frame.columns]
    if unknown:
        raise BadDataError(f"--discrete names no such column: {', '.join(unknown)}")
    taken = set(map(str, frame.columns))
    warnings = []
    delimiter = frame.attrs.get("delimiter", ",")
    if delimiter != ",":
        warnings.append(f"read as {'tab' if delimiter == chr(9) else repr(delimiter)}-separated; synthetic files use the same separator")
    if frame.shape[1] == 1:
        warnings.append("only one column: check the separator if you expected more")
    columns = []
    for name in frame.columns:
        series = frame[name]
        observed = series.dropna()
        col: dict[str, Any] = {
            "name": name,
            "dtype": str(series.dtype),
            "nulls": int(series.isna().sum()),
            "distinct": int(observed.nunique()),
        }
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        if observed.empty:
            col.update(kind="empty", reason="no values at all", warning="entirely empty: it comes back empty")
        elif col["distinct"] == 1 and col["nulls"] == 0:
            col.update(kind="constant", value=_json_scalar(observed.iloc[0]), reason="a single value")
        elif name in discrete:
            col.update(kind="discrete", reason="--discrete")
        elif not numeric:
            col.update(kind="discrete", reason=f"{col['dtype']} values")
            share = float(pd.to_numeric(observed.astype(str), errors="coerce").notna().mean())
            if 0 < share < 1 and series.dtype == object:
                col["warning"] = f"mixed types: {share:.0%} numbers, {1 - share:.0%} text; kept as text categories"
        elif pd.api.types.is_integer_dtype(series) and col["distinct"] <= DISCRETE_INT_MAX_DISTINCT:
            col.update(kind="discrete", reason=f"integers with {col['distinct']} distinct values")
        else:
            values = observed.astype(float)
            if not np.isfinite(values).all():
                raise BadDataError(f"column {name!r} holds infinite values; replace them or leave those cells empty")
            col.update(
                kind="continuous",
                reason="numbers",
                min=float(values.min()),
                max=float(values.max()),
                decimals=_decimals(values),
            )
        if col["kind"] == "discrete":
            # CTGAN's one-hot encoder sees strings; missing values get a
            # sentinel category that cannot collide with a real value.
            col["missing_token"] = _unused_name("<missing>", set(observed.astype(str)))
        if col["kind"] == "continuous" and col["nulls"]:
            col["missing_flag"] = _unused_name(f"{name}{MISSING_FLAG_SUFFIX}", taken)
            taken.add(col["missing_flag"])
        columns.append(col)
    if not any(c["kind"] in ("discrete", "continuous") for c in columns):
        raise BadDataError("no column has varying values, so there is nothing to learn")
    warnings += [f"{c['name']}: {c['warning']}" for c in columns if "warning" in c]
    return {
        "columns": columns,
        "discrete_columns": [c["name"] for c in columns if c["kind"] == "discrete"],
        "delimiter": delimiter,
        "warnings": warnings,
    }


def training_frame(frame: pd.DataFrame, plan: dict[str, Any], seed: int | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The frame CTGAN trains on, and the names of its discrete columns."""
    rng = np.random.default_rng(seed)
    out: dict[str, pd.Series] = {}
    discrete: list[str] = []
    for col in plan["columns"]:
        name, series = col["name"], frame[col["name"]]
        if col["kind"] == "discrete":
            out[name] = series.astype(object).where(series.notna(), None).map(
                lambda v, token=col["missing_token"]: token if v is None else str(v)
            )
            discrete.append(name)
        elif col["kind"] == "continuous":
            values = series.astype(float)
            missing = values.isna()
            if missing.any():
                # Fill gaps with draws from the observed values rather than one
                # constant, so the column's shape is not distorted; the flag
                # column lets CTGAN learn where the gaps go.
                values = values.copy()
                values[missing] = rng.choice(values[~missing].to_numpy(), size=int(missing.sum()))
                flag = col["missing_flag"]
                out[flag] = missing.map({True: "yes", False: "no"})
                discrete.append(flag)
            out[name] = values
    return pd.DataFrame(out), discrete


def _restore_discrete(values: pd.Series, col: dict[str, Any]) -> pd.Series:
    values = values.astype(object)
    values = values.where(values != col["missing_token"], None)
    dtype = col["dtype"]
    if dtype == "bool":
        return values.map({"True": True, "False": False}).astype(bool)
    if dtype.startswith(("int", "uint")):
        if values.isna().any():  # cannot happen for a column pandas read as int
            return pd.to_numeric(values).astype(float)
        return pd.to_numeric(values).astype(dtype)
    if dtype.startswith("float"):
        return pd.to_numeric(values).astype(dtype)
    return values.where(values.notna(), np.nan)


def _restore_continuous(values: pd.Series, col: dict[str, Any], missing: pd.Series | None) -> pd.Series:
    values = pd.to_numeric(values, errors="coerce").astype(float)
    # Round before casting: astype(int) truncates, and CTGAN happily produces
    # values outside the training range, so clip to it as well.
    if col["decimals"] <= MAX_DECIMALS:
        values = values.round(col["decimals"])
    values = values.clip(col["min"], col["max"])
    if missing is not None:
        values[missing.astype(str).to_numpy() == "yes"] = np.nan
    if col["dtype"].startswith(("int", "uint")):
        return values.astype(col["dtype"])
    return values


def restore(synthetic: pd.DataFrame, plan: dict[str, Any]) -> pd.DataFrame:
    """CTGAN output back to the original columns, order, dtypes and ranges."""
    n = len(synthetic)
    out: dict[str, pd.Series] = {}
    index = synthetic.index
    for col in plan["columns"]:
        name, kind = col["name"], col["kind"]
        if kind == "empty":
            out[name] = pd.Series([np.nan] * n, index=index, dtype=col["dtype"] if col["dtype"] != "object" else object)
        elif kind == "constant":
            out[name] = pd.Series([col["value"]] * n, index=index).astype(col["dtype"])
        elif kind == "discrete":
            out[name] = _restore_discrete(synthetic[name], col)
        else:
            flag = col.get("missing_flag")
            out[name] = _restore_continuous(synthetic[name], col, synthetic[flag] if flag else None)
    return pd.DataFrame(out, index=index)[[c["name"] for c in plan["columns"]]]
