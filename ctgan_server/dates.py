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


def _split_z(text: pd.Series) -> tuple[pd.Series, str]:
    if text.str.endswith("Z").all():
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


def detect(observed: pd.Series, forced: bool = False) -> dict[str, Any] | None:
    """The format every value fits, with what is needed to write values back; None if there is none.

    Without ``forced``, only text holding a full date (not a bare year or
    number) qualifies, so that codes and counts are not mistaken for dates.
    """
    text = observed.astype(str).str.strip()
    if not forced and (text.str.fullmatch(r"[-+]?\d+(\.\d*)?").all() or (text.str.len() > 40).any()):
        return None
    text, suffix = _split_z(text)
    samples = list(dict.fromkeys(text.head(200)))[:5]
    for fmt in _candidates(samples):
        if not forced and sum(part in fmt for part in _DATE_PARTS) < 2:
            continue
        seconds = parse(text, fmt)
        if seconds.notna().all():
            spec: dict[str, Any] = {"format": fmt, "suffix": suffix, "min": float(seconds.min()), "max": float(seconds.max())}
            spec["resolution"] = next((r for code, r in _RESOLUTION if code in fmt), DAY)
            if "%z" in fmt:
                first = pd.to_datetime(text.iloc[0], format=fmt)
                spec["utc_offset_minutes"] = int(first.utcoffset().total_seconds() // 60)
                spec["colon_offset"] = bool(_COLON_OFFSET.search(text.iloc[0]))
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
