"""From an uploaded CSV to a column plan: one kind per column, and why.

``build_plan`` decides each column's kind and records what is needed to undo
every change made for training: dtypes, ranges, decimals, formats, categories
and missing-value rates.  The plan is stored in the model's JSON; the
``transform`` module turns it into a training frame and back.
Imports pandas: only fit and sample reach this module.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .limits import inflate_upload
from .protection import Protection, percent, protection_for
from .settings import Settings
from .wire import BadDataError, LimitError, UsageError


class Kind(StrEnum):
    """What the plan makes of a column; ``transform`` encodes and restores each kind its own way.

    A StrEnum: the model's JSON holds the plain strings, so model files
    written before this class existed load as they are, and a kind compares
    equal to its string either way.
    """

    CONTINUOUS = "continuous"
    DISCRETE = "discrete"
    DATETIME = "datetime"
    IDENTIFIER = "identifier"
    HIGH_CARDINALITY_TEXT = "high-cardinality text"  # free text: the rare values grouped
    CONSTANT = "constant"
    EMPTY = "empty"
    IGNORED = "ignored"


# Integer columns with at most this many distinct values are categories
# (a year, a rating), not measurements: CTGAN models them better one-hot.
DISCRETE_INT_MAX_DISTINCT = 10
OTHER_DELIMITERS = (";", "\t", "|")
_NUMBER_RE = re.compile(r"^\s*[-+]?\d+(\.\d+)?\s*$")
MISSING_FLAG_SUFFIX = "__missing"
MAX_DECIMALS = 6


# Delimiter detection looks at the first lines only, and never at more than
# this much of the file (the header line itself may be longer than HEAD_BYTES).
HEAD_BYTES = 64 * 1024
HEAD_LINES = 50
HEADER_MAX_BYTES = 16 * 1024 * 1024


def read_uploaded_csv(
    gz_bytes: bytes, filename: str, text_columns: list[str] | tuple[str, ...] = (), *, settings: Settings | None = None
) -> pd.DataFrame:
    """Parse an uploaded, gzipped CSV held in memory; every failure is a one-line BadDataError or LimitError.

    ``settings`` gives the limits; without it the defaults apply.  The fit job
    calls ``inflate_upload`` and ``parse_csv`` itself, so that the limits pass
    before this module (and pandas) is even imported.
    """
    settings = settings or default_settings()
    return parse_csv(inflate_upload(settings, filename, gz_bytes), filename, text_columns, settings=settings)


def default_settings() -> Settings:
    return Settings(server_dir=Path("."), data_dir=Path("."))


def parse_csv(raw: bytes, filename: str, text_columns: list[str] | tuple[str, ...] = (), *, settings: Settings) -> pd.DataFrame:
    """Parse a decompressed upload that has passed ``GzipGuard``.

    ``text_columns`` are read as text whatever they look like, so that a
    DataFrame's string codes such as "0042" come back as they were.  Only
    ``raw`` is held whole: the text is checked without keeping a decoded
    copy, and pandas reads the bytes.
    """
    # isspace() stops at the first other byte and copies nothing (strip() would copy it all).
    if not raw or raw.isspace():
        raise BadDataError(f"{filename} is empty")
    if raw.find(b"\x00", 0, 65536) >= 0:
        raise BadDataError(f"{filename} does not look like a CSV: it holds binary data")
    check_utf8(raw, filename)
    head = _head(raw)
    delimiter = detect_delimiter(head, filename)
    header = next(csv.reader(io.StringIO(head), delimiter=delimiter), [])
    # Before the duplicate check, whose cost grows with the square of the width.
    if len(header) > settings.max_columns:
        raise _too_many_columns(filename, len(header), settings)
    dupes = sorted({name for name, n in Counter(header).items() if n > 1})
    if dupes:
        raise BadDataError(f"{filename} has duplicate column names: {', '.join(dupes)}")
    if header and all(_NUMBER_RE.match(name) for name in header):
        # No values in the message: a failed job's error is kept in its log.
        raise BadDataError(f"{filename}: the first row holds numbers, not column names; add a header row")
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            sep=delimiter,
            encoding="utf-8-sig",
            dtype={c: object for c in text_columns if c in header} or None,
        )
    except pd.errors.EmptyDataError as exc:
        raise BadDataError(f"{filename} is empty") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise BadDataError(f"{filename} is not a valid CSV: {detail}") from exc
    if frame.shape[1] > settings.max_columns:  # the parser may see more fields than the header line showed
        raise _too_many_columns(filename, frame.shape[1], settings)
    if len(frame) > settings.max_rows:
        raise LimitError(
            f"{filename} has {len(frame):,} rows; at most {settings.max_rows:,} are allowed ([service] max_rows); "
            "split the file or ask the server's admin to raise the limit"
        )
    if frame.empty:
        raise BadDataError(f"{filename} has a header but no data rows")
    frame.attrs["delimiter"] = delimiter
    return frame


def _too_many_columns(filename: str, count: int, settings: Settings) -> LimitError:
    return LimitError(
        f"{filename} has {count:,} columns; at most {settings.max_columns:,} are allowed ([service] max_columns); "
        "drop some or ask the server's admin to raise the limit"
    )


def check_utf8(raw: bytes, filename: str) -> None:
    """Refuse bytes that are not UTF-8, naming the first bad byte; no decoded copy of the file is kept."""
    if raw.isascii():  # the common case, checked in C without decoding
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    step = 1 << 20
    for start in range(0, len(raw), step):
        pending = len(decoder.getstate()[0])  # bytes of a character cut at the previous slice's end
        try:
            decoder.decode(view[start : start + step], final=start + step >= len(raw))
        except UnicodeDecodeError as exc:
            offset = start - pending + exc.start
            raise BadDataError(
                f"{filename} is not UTF-8 text (byte 0x{raw[offset]:02x} at offset {offset}); re-save it as UTF-8"
            ) from exc


def _head(raw: bytes) -> str:
    """The first lines of the file as text: at least its whole first line, else about HEAD_BYTES.

    A line cut off at the end of the sample is dropped, so that it cannot
    look like a line with fewer fields.
    """
    end = min(len(raw), HEAD_BYTES)
    first_eol = raw.find(b"\n", 0, HEADER_MAX_BYTES)
    end = max(end, first_eol + 1) if first_eol >= 0 else min(len(raw), HEADER_MAX_BYTES)
    if end < len(raw):
        cut = raw.rfind(b"\n", 0, end)
        if cut >= 0:
            end = cut + 1
    # The bytes are valid UTF-8 already; "ignore" only drops a character
    # split by a HEADER_MAX_BYTES cut.
    return raw[:end].decode("utf-8-sig", errors="ignore")


def detect_delimiter(text: str, filename: str) -> str:
    """Comma, unless the header has no comma and another separator splits every line evenly.

    ``text`` is the head of the file (see ``_head``): only its first lines are looked at.
    """
    lines = [line for line in text.splitlines()[:HEAD_LINES] if line.strip()]
    if not lines:
        raise BadDataError(f"{filename} is empty")
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


OVERRIDES = ("discrete", "continuous", "datetime", "id", "ignore")
# Text with more distinct values than this is free text: its rare values are
# grouped.  Up to this many, a discrete column keeps exactly its categories.
HIGH_CARDINALITY = 100
# A free-text value seen fewer times than this is grouped, so that one
# person's rare job title cannot come back in the synthetic data.
RARE_BELOW = 5
MAX_KEPT_TEXT = 200
OTHER_TOKEN = "(other)"


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


def _check_overrides(frame: pd.DataFrame, overrides: dict[str, Any]) -> dict[str, str]:
    """Column name -> the override that names it; a column may be named once."""
    chosen: dict[str, str] = {}
    for option in OVERRIDES:
        for name in overrides.get(option) or ():
            if name not in frame.columns:
                raise UsageError(f"--{option} names no such column: {name} (columns: {_shown(frame.columns)})")
            if chosen.get(name, option) != option:
                raise UsageError(f"column {name} is named by both --{chosen[name]} and --{option}; pick one")
            chosen[name] = option
    return chosen


def _shown(names: Any, limit: int = 8) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _whole_numbers(observed: pd.Series) -> bool:
    return bool(np.all(np.mod(observed.astype(float), 1) == 0))


def _continuous(col: dict[str, Any], observed: pd.Series) -> None:
    values = pd.to_numeric(observed, errors="coerce")
    if values.isna().any():
        # The row, not the value: a failed job's error is kept in its log.
        row = observed.index[values.isna()][0]
        raise BadDataError(f"--continuous {col['name']}: data row {row + 1} is not a number")
    values = values.astype(float)
    if not np.isfinite(values).all():
        raise BadDataError(f"column {col['name']!r} holds infinite values; replace them or leave those cells empty")
    low, high = float(values.min()), float(values.max())
    col.update(
        kind=Kind.CONTINUOUS,
        min=low,
        max=high,
        decimals=_decimals(values),
        # Shares of values sitting exactly on a bound: a zero-heavy column
        # (debts, assets) has a spike there that generation must keep.
        at_min=round(float((values == low).mean()), 6),
        at_max=round(float((values == high).mean()), 6),
    )


def category_text(values: pd.Series) -> pd.Series:
    """Values as the category strings CTGAN sees; whole numbers lose the ".0" pandas adds to them."""
    if values.dtype.kind in "iub" or (values.dtype.kind == "f" and _whole_numbers(values.dropna())):
        # Each distinct value written once (a million-row column holds a few).
        codes, distinct = pd.factorize(values)
        text = _category_text(pd.Series(distinct, dtype=values.dtype)).to_numpy(dtype=object)
        out = text.take(codes) if len(text) else np.full(len(values), np.nan, dtype=object)
        out[codes < 0] = np.nan
        return pd.Series(out, index=values.index, name=values.name, dtype=object)
    return _category_text(values)


def _category_text(values: pd.Series) -> pd.Series:
    if _is_number(values) and _whole_numbers(values.dropna()):
        return values.astype("Int64").astype(str).where(values.notna())
    return values.astype(str).where(values.notna())


def _discrete(col: dict[str, Any], observed: pd.Series, reason: str, protection: Protection) -> None:
    """The categories, most common first; those seen fewer than ``protection.rare_below`` times are merged.

    Text merges them into an ``(other)`` category.  Numbers and booleans
    cannot hold one without changing dtype, so ``training_frame`` maps each
    to the nearest kept value (``nearest_kept``).
    """
    counts = category_text(observed).value_counts()
    kept = counts[counts >= protection.rare_below].index.tolist()
    col.update(kind=Kind.DISCRETE, reason=reason, categories=kept)
    merged = len(counts) - len(kept)
    if merged and _numeric_categories(observed):
        if not kept:
            # Every value is rare, and a number column has no (other): the most
            # common value, held by several rows at least, stands in for all.
            col["categories"] = kept = counts.index[:1].tolist()
            merged -= 1
        col["reason"] += f"; {_rare_values(merged)} mapped to the nearest kept one"
    elif merged:
        col["other_token"] = _unused_name(OTHER_TOKEN, set(kept))
        col["reason"] += f"; {_rare_values(merged)} merged as {col['other_token']}"
    col["protection"] = protection.mark(merged=merged)


def _rare_values(count: int) -> str:
    return f"{count} rare value" + ("" if count == 1 else "s")


def _numeric_categories(observed: pd.Series) -> bool:
    """Numbers or booleans (booleans with gaps read as object): rare ones go to the nearest kept value, not (other)."""
    if _is_number(observed) or pd.api.types.is_bool_dtype(observed):
        return True
    return observed.dtype == object and all(isinstance(v, (bool, np.bool_)) for v in pd.unique(observed))


def _free_text(col: dict[str, Any], observed: pd.Series, protection: Protection) -> None:
    counts = observed.astype(str).value_counts()
    # RARE_BELOW even without protection: thousands of one-off values would swamp CTGAN's one-hot encoding.
    kept = counts[counts >= max(RARE_BELOW, protection.rare_below)].index[:MAX_KEPT_TEXT].tolist()
    grouped = int(len(counts) - len(kept))
    col.update(
        kind=Kind.HIGH_CARDINALITY_TEXT,
        reason=f"text with {len(counts)} distinct values; {grouped} rare ones grouped as {OTHER_TOKEN}",
        categories=kept,
        other_token=_unused_name(OTHER_TOKEN, set(kept)),
        protection=protection.mark(merged=grouped),
    )


def _identifier(col: dict[str, Any], observed: pd.Series, numeric: bool, reason: str) -> None:
    from .identifiers import learn_text_shapes

    col.update(kind=Kind.IDENTIFIER, reason=reason, numeric=numeric)
    if numeric:
        if not _whole_numbers(observed):
            raise BadDataError(f"--id {col['name']}: numeric identifiers must be whole numbers")
        # Whole Python ints: an 18-digit ID must not be rounded through a float.
        col.update(min=int(observed.min()), max=int(observed.max()))
        _id_room_warning(col, observed)
    else:
        col["shapes"] = learn_text_shapes(observed)


def _id_room_warning(col: dict[str, Any], observed: pd.Series) -> None:
    """Warn when the numeric IDs' range leaves fewer unused numbers than the table has rows."""
    from .identifiers import unused_in_range

    col.pop("warning", None)
    inside = observed[(observed >= col["min"]) & (observed <= col["max"])]
    free = unused_in_range(col, int(inside.nunique()))
    if free < col["rows"]:
        col["warning"] = (
            # No min or max here: warnings go to the job log, which must hold no value from the data.
            f"only {free} whole numbers in the original IDs' range are unused; "
            "past that, synthetic IDs reuse original values (still unique per file)"
        )


def _datetime(col: dict[str, Any], observed: pd.Series, forced: bool) -> bool:
    from .dates import detect

    if observed.dtype.kind in "if" and forced:
        if not _whole_numbers(observed):
            raise BadDataError(f"--datetime {col['name']}: numbers with decimals are not dates")
        observed = observed.astype("int64")
    spec = detect(observed, forced=forced)
    if spec is None:
        if forced:
            raise BadDataError(
                f"--datetime {col['name']}: could not read data row {observed.index[0] + 1} as a date in any known format"
            )
        return False
    col.update(kind=Kind.DATETIME, reason=f"dates written as {spec['format']}{spec['suffix']}", datetime=spec)
    return True


def protected_bounds(values: np.ndarray, weights: np.ndarray | None, protection: Protection) -> tuple[Any, Any]:
    """The low and high quantiles of ``values`` (each counted ``weights`` times, once without), as values held in the data.

    Inverted-CDF quantiles, taken no fewer than ``protection.rare_below``
    rows in from either end: on 60 rows the 0.1% quantile is the minimum
    itself.  So a minimum or maximum can come back only when at least that
    many rows hold it (a spike, such as the many zero debts), not when it
    is one person's.  Never past the middle, so that low <= high.
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    held = np.cumsum(weights[order]) if weights is not None else np.arange(1, len(values) + 1)
    rows = int(held[-1])

    def rank(share: float) -> int:
        # The small epsilon: 1 - 0.999 is a hair above 0.001, and must give the same rank on both ends.
        return min(max(protection.rare_below, math.ceil(share * rows - 1e-9), 1), (rows + 1) // 2)

    low = ordered[np.searchsorted(held, rank(protection.low))]
    high = ordered[np.searchsorted(held, rows + 1 - rank(1 - protection.high))]
    return low, high


def _bound_range(col: dict[str, Any], observed: pd.Series, protection: Protection) -> None:
    """Continuous, date and numeric-ID ranges cut at the protection's quantiles (``protected_bounds``).

    The plan's min and max become those bounds, and the Restorer keeps
    sampled values within min..max, as it always has.  The training rows
    keep their extremes (see ``training_frame``).
    """
    kind = col["kind"]
    if not (kind in (Kind.CONTINUOUS, Kind.DATETIME) or (kind == Kind.IDENTIFIER and col["numeric"])):
        return
    col["protection"] = protection.mark()
    if not protection.on:
        return
    if kind == Kind.DATETIME:
        from .dates import to_seconds

        counts = observed.value_counts(sort=False)
        seconds = to_seconds(pd.Series(counts.index, dtype=observed.dtype), col["datetime"]).to_numpy()
        low, high = protected_bounds(seconds, counts.to_numpy(), protection)
        col["datetime"].update(min=float(low), max=float(high))
    elif kind == Kind.CONTINUOUS:
        values = pd.to_numeric(observed).astype(float).to_numpy()
        low, high = protected_bounds(values, None, protection)
        # A spike is a share of rows holding the bound itself (the many zero debts), as without protection.
        col.update(min=float(low), max=float(high), at_min=_share(values, low), at_max=_share(values, high))
    elif not _bound_ids(col, observed, protection):
        col["reason"] += "; range kept whole: the IDs fill it"
        return
    col["protection"]["quantiles"] = [protection.low, protection.high]
    col["reason"] += f"; bounded at the {percent(protection.low)} and {percent(protection.high)} quantiles"


def _bound_ids(col: dict[str, Any], observed: pd.Series, protection: Protection) -> bool:
    """Numeric IDs drawn within the quantile bounds, if those leave room for a sample the table's size.

    Fresh IDs never equal an original anyway (``identifiers``); the bounds
    keep the synthetic IDs' spread from hinting at the original extremes.
    Row numbers fill their range, so bounds would leave too few unused
    values for as many rows as the original: such IDs keep the whole range
    (and reuse values, as the plan warns), as without protection.
    """
    from .identifiers import unused_in_range

    low, high = (int(v) for v in protected_bounds(observed.to_numpy(), None, protection))  # int64: exact
    inside = int(observed[(observed >= low) & (observed <= high)].nunique())
    if unused_in_range({"min": low, "max": high}, inside) < col["rows"]:
        return False
    col.update(min=low, max=high)
    _id_room_warning(col, observed)
    return True


def _share(values: np.ndarray, value: float) -> float:
    return round(float((values == value).mean()), 6)


def _number_share(observed: pd.Series) -> float:
    """The share of values that read as numbers; each distinct value is tried once."""
    counts = observed.astype(str).value_counts(sort=False)
    numbers = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce").notna().to_numpy()
    return float(counts.to_numpy()[numbers].sum() / len(observed))


def _plan_column(name: Any, series: pd.Series, override: str | None, rows: int, protection: Protection) -> dict[str, Any]:
    from .identifiers import looks_like_identifier

    observed = series.dropna()
    col: dict[str, Any] = {
        "name": name,
        "dtype": str(series.dtype),
        "nulls": int(series.isna().sum()),
        "distinct": int(observed.nunique()),
        "rows": rows,
    }
    col["null_rate"] = col["nulls"] / rows
    text = series.dtype == object
    if override == "ignore":
        col.update(kind=Kind.IGNORED, reason="--ignore", warning="ignored: it comes back empty")
    elif observed.empty:
        col.update(kind=Kind.EMPTY, reason="no values at all", warning="entirely empty: it comes back empty")
    elif override == "discrete":
        _discrete(col, observed, "--discrete", protection)
    elif override == "continuous":
        _continuous(col, observed)
        col["reason"] = "--continuous"
    elif override == "datetime":
        _datetime(col, observed, forced=True)
    elif override == "id":
        numeric = _is_number(series)
        if not numeric and not text:
            raise BadDataError(f"--id {name}: {col['dtype']} values cannot be identifiers")
        _identifier(col, observed, numeric, "--id")
    elif col["distinct"] == 1 and col["nulls"] == 0:
        col.update(kind=Kind.CONSTANT, value=_json_scalar(observed.iloc[0]), reason="a single value")
    elif text and _datetime(col, observed, forced=False):
        pass
    elif text and looks_like_identifier(observed, col["distinct"]):
        _identifier(col, observed, False, f"{col['distinct']} distinct values in {len(observed)}: record IDs")
    elif text and col["distinct"] > HIGH_CARDINALITY:
        _free_text(col, observed, protection)
    elif not _is_number(series):
        _discrete(col, observed, f"{col['dtype']} values", protection)
        share = _number_share(observed) if text else 0.0
        if 0 < share < 1:
            col["warning"] = f"mixed types: {share:.0%} numbers, {1 - share:.0%} text; kept as text categories"
    elif col["distinct"] <= DISCRETE_INT_MAX_DISTINCT and _whole_numbers(observed):
        _discrete(col, observed, f"whole numbers with {col['distinct']} distinct values", protection)
    else:
        _continuous(col, observed)
        col["reason"] = "numbers"
    _bound_range(col, observed, protection)
    return col


def build_plan(
    frame: pd.DataFrame,
    overrides: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    protect: str = "none",
    settings: Settings | None = None,
) -> dict[str, Any]:
    """One kind per column, with the reason; ``overrides`` maps an option (discrete, id, ...) to column names.

    ``progress`` is told (columns planned, columns) after each column: on a
    million rows a column takes a second or more.  ``protect`` is the value
    protection level (see ``protection``), with ``settings``' numbers; the
    fit job passes its request's, whose default is rare.
    """
    protection = protection_for(protect, settings)
    chosen = _check_overrides(frame, overrides or {})
    taken = set(map(str, frame.columns))
    warnings = []
    delimiter = frame.attrs.get("delimiter", ",")
    if delimiter != ",":
        warnings.append(
            f"read as {'tab' if delimiter == chr(9) else repr(delimiter)}-separated; synthetic files use the same separator"
        )
    if frame.shape[1] == 1:
        warnings.append("only one column: check the separator if you expected more")
    columns = []
    for name in frame.columns:
        col = _plan_column(name, frame[name], chosen.get(name), len(frame), protection)
        if col["kind"] in (Kind.DISCRETE, Kind.HIGH_CARDINALITY_TEXT):
            # CTGAN's one-hot encoder sees strings; missing values get a
            # sentinel category that cannot collide with a real value.
            col["missing_token"] = _unused_name("<missing>", set(col["categories"]))
        if col["kind"] in (Kind.CONTINUOUS, Kind.DATETIME) and col["nulls"]:
            col["missing_flag"] = _unused_name(f"{name}{MISSING_FLAG_SUFFIX}", taken)
            taken.add(col["missing_flag"])
        columns.append(col)
        if progress is not None:
            progress(len(columns), frame.shape[1])
    if not any(c["kind"] in TRAINED_KINDS for c in columns):
        raise BadDataError("no column has varying values CTGAN can learn from, so there is nothing to fit")
    warnings += [f"{c['name']}: {c['warning']}" for c in columns if "warning" in c]
    return {
        "columns": columns,
        "discrete_columns": [c["name"] for c in columns if c["kind"] == Kind.DISCRETE],
        "delimiter": delimiter,
        "warnings": warnings,
    }


TRAINED_KINDS = (Kind.DISCRETE, Kind.HIGH_CARDINALITY_TEXT, Kind.CONTINUOUS, Kind.DATETIME)


def identifier_records(frame: pd.DataFrame, plan: dict[str, Any]) -> dict[str, Any]:
    """Keyed hashes of each identifier column's original values, for the model file only."""
    from .identifiers import original_id_record

    return {
        c["name"]: original_id_record(frame[c["name"]].dropna(), c["numeric"])
        for c in plan["columns"]
        if c["kind"] == Kind.IDENTIFIER
    }
