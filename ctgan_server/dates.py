"""Datetime columns: find the text format, train on seconds, write back in that format.

pandas' ``guess_datetime_format`` reads a trailing ``Z`` as ``%z``, which then
writes ``+0000``; so a ``Z`` is stripped before guessing and put back as a
literal suffix.  It also returns None for forms like ``Mar-2018``, hence the
short list of fallbacks.
"""

from __future__ import annotations

import re
import warnings
from datetime import timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

FALLBACK_FORMATS = ("%b-%Y", "%b %Y", "%B %Y", "%m/%Y", "%Y-%m", "%d.%m.%Y", "%d.%m.%Y %H:%M")
_DATE_PARTS = ("%Y", "%y", "%m", "%b", "%B", "%d", "%j")
_COLON_OFFSET = re.compile(r"[+-]\d\d:\d\d$")
_EPOCH = pd.Timestamp("1970-01-01")

# The finest unit a format writes; generated times are rounded to it.
_RESOLUTION = (("%f", 1e-6), ("%S", 1.0), ("%M", 60.0), ("%H", 3600.0), ("%I", 3600.0))
DAY = 86400.0


def _candidates(samples: list[str]) -> list[str]:
    from pandas.tseries.api import guess_datetime_format

    found: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for value in samples:
            for dayfirst in (False, True):
                fmt = guess_datetime_format(value, dayfirst=dayfirst)
                if fmt and fmt not in found:
                    found.append(fmt)
    return found + [f for f in FALLBACK_FORMATS if f not in found]


def _all(text: pd.Series, test: Any) -> bool:
    """``test(text).all()``, asked first of the leading values: one of them failing settles it."""
    head = text.iloc[:PROBE_VALUES]
    return bool(test(head).all()) and (len(text) == len(head) or bool(test(text).all()))


def _split_z(text: pd.Series) -> tuple[pd.Series, str]:
    if _all(text, lambda t: t.str.endswith("Z")):
        return text.str[:-1], "Z"
    return text, ""


def parse(text: pd.Series, fmt: str, suffix: str = "") -> pd.Series:
    """Seconds since 1970 (UTC for zoned formats); NaN where a value does not fit the format."""
    core = text.str[: -len(suffix)] if suffix else text
    zoned = "%z" in fmt
    stamps = pd.to_datetime(core, format=fmt, errors="coerce", utc=zoned)
    if zoned:
        stamps = stamps.dt.tz_localize(None)
    return (stamps - _EPOCH).dt.total_seconds()


# A format must read this many of a column's distinct values before the whole
# column is tried: most text columns are not dates, and a failure on a few
# values spares parsing a million.  Exact either way: every value must fit.
PROBE_VALUES = 1000


def distinct_text(observed: pd.Series) -> pd.Series:
    """The column's distinct values as stripped text, in order of first appearance.

    What ``detect`` checks (every value fits a format, none is too long, the
    smallest and largest date) holds for the column exactly when it holds for
    its distinct values, so each is parsed once: a date column of 3,650 days
    in a million rows costs 3,650 parses.
    """
    text = pd.Series(pd.unique(observed.astype(str).to_numpy(dtype=object)), dtype=object).str.strip()
    return pd.Series(pd.unique(text.to_numpy(dtype=object)), dtype=object)


def detect(observed: pd.Series, forced: bool = False) -> dict[str, Any] | None:
    """The format every value fits, with what is needed to write values back; None if there is none.

    Without ``forced``, only text holding a full date (not a bare year or
    number) qualifies, so that codes and counts are not mistaken for dates.
    """
    text = distinct_text(observed)
    if not forced and ((text.str.len() > 40).any() or _all(text, lambda t: t.str.fullmatch(r"[-+]?\d+(\.\d*)?"))):
        return None
    text, suffix = _split_z(text)
    # The candidates come from the column's first rows, in row order.
    head = observed.head(200).astype(str).str.strip()
    if suffix:
        head = head.str[: -len(suffix)]
    samples = list(dict.fromkeys(head))[:5]
    probe = text.iloc[:PROBE_VALUES]
    for fmt in _candidates(samples):
        if not forced and sum(part in fmt for part in _DATE_PARTS) < 2:
            continue
        if len(text) > len(probe) and parse(probe, fmt).isna().any():
            continue
        seconds = parse(text, fmt)
        if seconds.notna().all():
            spec: dict[str, Any] = {"format": fmt, "suffix": suffix, "min": float(seconds.min()), "max": float(seconds.max())}
            spec["resolution"] = next((r for code, r in _RESOLUTION if code in fmt), DAY)
            if "%z" in fmt:
                first = pd.to_datetime(head.iloc[0], format=fmt)
                spec["utc_offset_minutes"] = int(first.utcoffset().total_seconds() // 60)
                spec["colon_offset"] = bool(_COLON_OFFSET.search(head.iloc[0]))
            return spec
    return None


def to_seconds(series: pd.Series, spec: dict[str, Any]) -> pd.Series:
    present = series.notna()
    out = pd.Series(np.nan, index=series.index)
    if present.any():
        text = series[present].astype(str).str.strip()
        if series.dtype.kind in "if":
            text = series[present].astype("int64").astype(str)
        out[present] = parse(text, spec["format"], spec["suffix"]).to_numpy()
    return out


def round_to_unit(seconds: pd.Series, spec: dict[str, Any]) -> pd.Series:
    step = spec["resolution"]
    return (seconds / step).round() * step


def format_seconds(values: pd.Series, spec: dict[str, Any]) -> pd.Series:
    """Seconds since 1970 written in the original form."""
    present = values.notna()
    out = pd.Series(np.nan, index=values.index, dtype=object)
    if not present.any():
        return out
    stamps = _EPOCH + pd.to_timedelta(values[present], unit="s")
    if "utc_offset_minutes" in spec:
        zone = timezone(timedelta(minutes=spec["utc_offset_minutes"]))
        stamps = stamps.dt.tz_localize("UTC").dt.tz_convert(zone)
    text = stamps.dt.strftime(spec["format"])
    if spec.get("colon_offset"):
        text = text.str.replace(r"([+-]\d\d)(\d\d)$", r"\1:\2", regex=True)
    out[present] = (text + spec["suffix"]).to_numpy()
    return out
