"""Business rules the synthetic rows keep (`fit --constraints`): checked on the original, kept by every sample.

CTGAN learns a table's rules only approximately: a total a little off the
sum of its parts, a last payment a few rows before the first, a city in the
wrong state.  A rules file names them (``wire.check_rules`` holds its
format).  The job checks them against the parsed original first: a rule
the original itself breaks is refused with the count of rows that break it
(BadDataError, exit 5), since no model could keep it.

CTGAN trains on what an inequality or a proportion leaves free: the gap
between the low and the high column (never below 0 once sampled) and each
part's share of its reference, rather than the raw columns, so most drawn
rows keep those rules by construction (``encode``, ``decode``).  Every
sample then keeps every rule, in the restored table, in two ways:

- **rebuilt**: a ``sum`` total is recomputed from its restored parts, and
  ``proportion`` parts are rescaled so that they add up to their reference
  (with the rounding remainder put on the largest parts, so integer columns
  add up exactly);
- **redrawn**: rows that still break a rule (an inequality, a range, a
  combination never seen, not exactly one of a one-hot group) are dropped
  and more rows are drawn (``sampling``).

The model's JSON keeps the rules (and, for ``fixed_combinations``, the
combinations seen, as category text like the plan's categories).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .schema import Kind, category_text
from .wire import BadDataError, describe_rule, rule_columns

NUMERIC_KINDS = (Kind.CONTINUOUS, Kind.DISCRETE, Kind.CONSTANT)


class Rules:
    """The rules of one model, as its JSON keeps them, with what checking them needs from its plan."""

    def __init__(self, specs: list[dict[str, Any]], plan: dict[str, Any]):
        self.specs = specs
        self.columns = {c["name"]: c for c in plan["columns"]}
        self._seen = {
            n: pd.MultiIndex.from_tuples([tuple(c) for c in spec["combinations"]])
            for n, spec in enumerate(specs)
            if spec["type"] == "fixed_combinations"
        }

    # -- at fit time ---------------------------------------------------------------
    @classmethod
    def learn(cls, rules: list[dict[str, Any]] | tuple, frame: pd.DataFrame, plan: dict[str, Any]) -> Rules | None:
        """The rules checked against the plan and the original rows; None without rules.

        Raises BadDataError naming each rule the original breaks, with the number of rows.
        """
        if not rules:
            return None
        specs = [dict(rule) for rule in rules]
        columns = {c["name"]: c for c in plan["columns"]}
        problems = [p for n, rule in enumerate(specs, 1) if (p := _unusable(n, rule, columns))]
        if problems:
            raise BadDataError("; ".join(problems))
        for spec in specs:
            if spec["type"] == "fixed_combinations":
                spec["combinations"] = _texts(frame, spec["columns"]).drop_duplicates().to_numpy().tolist()
        learned = cls(specs, plan)
        broken = [
            f"rule {n} ({spec['type']}: {describe_rule(spec)}) is broken by {count:,} of the original's {len(frame):,} rows"
            for n, (spec, count) in enumerate(zip(specs, learned.breaking_counts(frame)), 1)
            if count
        ]
        if broken:
            raise BadDataError("; ".join(broken) + ": fix the data or the rules file")
        for spec in specs:
            if spec["type"] == "fixed_combinations":
                spec["combinations"] = _kept_combinations(spec, columns)
        learned = cls(specs, plan)
        learned.plan_encoding()
        return learned

    # -- training on what the rules leave free -----------------------------------------------
    def plan_encoding(self) -> None:
        """Choose the rules CTGAN trains through: an inequality as the gap, proportion parts as shares.

        Only between columns the training frame holds as numbers (continuous
        and dates) and each column at most once; the choice is kept in the
        rule (``encoded``), so a model made without it decodes nothing.
        """
        used: set[str] = set()
        numeric = {name for name, col in self.columns.items() if col["kind"] in (Kind.CONTINUOUS, Kind.DATETIME)}
        for spec in self.specs:
            if spec["type"] == "inequality":
                needed = [spec["low"], spec["high"]]
            elif spec["type"] == "proportion":
                needed = [spec["reference"], *spec["parts"]]
            else:
                continue
            if set(needed) <= numeric and not set(needed) & used:
                spec["encoded"] = True
                used.update(needed)

    def encode(self, train: pd.DataFrame) -> pd.DataFrame:
        """The training frame with each encoded rule's columns as CTGAN learns them (see ``plan_encoding``)."""
        train = train.copy()
        for spec in self.specs:
            if not spec.get("encoded"):
                continue
            if spec["type"] == "inequality":
                train[spec["high"]] = train[spec["high"]] - train[spec["low"]]
            else:
                reference = train[spec["reference"]].to_numpy(dtype=float)
                safe = np.where(reference != 0, reference, 1.0)
                for name in spec["parts"]:
                    train[name] = np.where(reference != 0, train[name].to_numpy(dtype=float) / safe, 0.0)
        return train

    def decode(self, raw: pd.DataFrame) -> pd.DataFrame:
        """CTGAN's rows back in the training frame's terms: a gap never below 0, shares times their reference."""
        raw = raw.copy()
        for spec in self.specs:
            if not spec.get("encoded"):
                continue
            if spec["type"] == "inequality":
                gap = pd.to_numeric(raw[spec["high"]], errors="coerce").clip(lower=0)
                raw[spec["high"]] = pd.to_numeric(raw[spec["low"]], errors="coerce") + gap
            else:
                reference = pd.to_numeric(raw[spec["reference"]], errors="coerce")
                for name in spec["parts"]:
                    raw[name] = pd.to_numeric(raw[name], errors="coerce").clip(lower=0) * reference
        return raw

    # -- on every sample ---------------------------------------------------------------
    def breaking_counts(self, frame: pd.DataFrame) -> list[int]:
        return [int(self._breaks(n, spec, frame).sum()) for n, spec in enumerate(self.specs)]

    def kept(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows keep every rule."""
        keep = np.ones(len(frame), dtype=bool)
        for n, spec in enumerate(self.specs):
            keep &= ~self._breaks(n, spec, frame)
        return keep

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A restored chunk with its sums and proportions rebuilt, less the rows that still break a rule."""
        frame = frame.copy()
        for spec in self.specs:
            if spec["type"] == "proportion":
                self._rebuild_proportion(frame, spec)
            elif spec["type"] == "sum":
                self._rebuild_sum(frame, spec)
        return frame[self.kept(frame)].reset_index(drop=True)

    def descriptions(self) -> list[str]:
        return [f"{spec['type']}: {describe_rule(spec)}" for spec in self.specs]

    # -- the checks ------------------------------------------------------------------
    def _numbers(self, frame: pd.DataFrame, name: str) -> np.ndarray:
        col = self.columns[name]
        if col["kind"] == Kind.DATETIME:
            from .dates import to_seconds

            return to_seconds(frame[name], col["datetime"]).to_numpy(dtype=float)
        return pd.to_numeric(frame[name].astype(object).where(frame[name].notna()), errors="coerce").to_numpy(dtype=float)

    def _tolerance(self, names: list[str]) -> float:
        """What rounding alone can move a comparison of these columns by: nothing for whole numbers.

        Each column written with d decimals may be off by half a unit in
        its last place, so a sum of n of them by n halves.
        """
        decimals = [_decimals_of(self.columns[name]) for name in names]
        if max(decimals) == 0:
            return 1e-9
        return len(names) * 0.5 * 10.0 ** -max(decimals) + 1e-9

    def _breaks(self, n: int, spec: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
        """Rows that break the rule; a row with a gap in the rule's columns keeps it (there is nothing to compare)."""
        kind = spec["type"]
        if kind == "fixed_combinations":
            return ~pd.MultiIndex.from_frame(_texts(frame, spec["columns"])).isin(self._seen[n])
        if kind == "one_hot":
            ones = sum((self._numbers(frame, c) == 1).astype(int) for c in spec["columns"])
            return ones != 1
        values = {name: self._numbers(frame, name) for name in rule_columns(spec)}
        known = np.logical_and.reduce([~np.isnan(v) for v in values.values()])
        with np.errstate(invalid="ignore"):
            return known & _broken(spec, values, self._tolerance(list(values)))

    # -- the rebuilds ------------------------------------------------------------------
    def _rebuild_sum(self, frame: pd.DataFrame, spec: dict[str, Any]) -> None:
        parts = np.column_stack([self._numbers(frame, c) for c in spec["parts"]])
        frame[spec["total"]] = _written_as(parts.sum(axis=1), self.columns[spec["total"]], frame[spec["total"]])

    def _rebuild_proportion(self, frame: pd.DataFrame, spec: dict[str, Any]) -> None:
        reference = self._numbers(frame, spec["reference"])
        parts = np.column_stack([self._numbers(frame, c) for c in spec["parts"]])
        if spec.get("sum_to_one"):
            parts = _shares_of(parts, reference, _decimals_of(self.columns[spec["parts"][0]]))
        else:
            parts = np.clip(parts, 0, np.where(reference >= 0, reference, np.inf))
        for i, name in enumerate(spec["parts"]):
            frame[name] = _written_as(parts[:, i], self.columns[name], frame[name])


def _broken(spec: dict[str, Any], values: dict[str, np.ndarray], tolerance: float) -> np.ndarray:
    kind = spec["type"]
    if kind == "inequality":
        return values[spec["low"]] > values[spec["high"]]
    if kind == "sum":
        parts = np.column_stack([values[c] for c in spec["parts"]]).sum(axis=1)
        return np.abs(values[spec["total"]] - parts) > tolerance
    if kind == "proportion":
        reference = values[spec["reference"]]
        parts = np.column_stack([values[c] for c in spec["parts"]])
        outside = ((parts < -tolerance) | (parts > reference[:, None] + tolerance)).any(axis=1)
        if spec.get("sum_to_one"):
            outside |= np.abs(parts.sum(axis=1) - reference) > tolerance
        return outside
    if kind == "positive":
        return values[spec["column"]] <= 0
    value = values[spec["column"]]  # range: inclusive bounds
    low, high = spec.get("low"), spec.get("high")
    return ((value < low) if low is not None else False) | ((value > high) if high is not None else False)


def _unusable(n: int, rule: dict[str, Any], columns: dict[str, Any]) -> str | None:
    """Why a rule cannot apply to these columns (missing, or of a kind it cannot compare), or None."""
    where = f"rule {n} ({rule['type']})"
    for name in rule_columns(rule):
        col = columns.get(name)
        if col is None:
            return f"{where} names {name!r}, which is not a column of the data"
        kind, numeric = col["kind"], not col["dtype"] == "object"
        if rule["type"] == "fixed_combinations":
            ok = kind in (Kind.DISCRETE, Kind.HIGH_CARDINALITY_TEXT, Kind.CONSTANT)
        elif rule["type"] == "inequality":
            ok = kind == Kind.DATETIME or (kind in NUMERIC_KINDS and numeric)
        else:
            ok = kind in NUMERIC_KINDS and numeric
        if not ok:
            return f"{where} cannot apply to {name!r}, planned as {kind} ({col['dtype']})"
    return None


def _texts(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The columns as the category text the plan keeps, gaps as an empty string, for comparing combinations."""
    return pd.DataFrame({name: category_text(frame[name]).fillna("").astype(str) for name in names})


def _kept_combinations(spec: dict[str, Any], columns: dict[str, Any]) -> list[list[str]]:
    """The original's combinations (checked against it already), less those with a value value protection merged away.

    A merged value never comes back, so no sample needs its combinations,
    and the model's JSON must not keep the rare value either; rows holding
    its stand-in (``(other)``, a nearest kept number) are drawn again.
    """
    # Per column, the categories that come back; None where nothing was merged (every value comes back).
    allowed = [
        set(map(str, columns[name]["categories"])) if (columns[name].get("protection") or {}).get("merged") else None
        for name in spec["columns"]
    ]
    return [
        combination
        for combination in spec["combinations"]
        if all(ok is None or not value or value in ok for ok, value in zip(allowed, combination))
    ]


def _decimals_of(col: dict[str, Any]) -> int:
    if col["dtype"].startswith(("int", "uint", "bool")):
        return 0
    return min(int(col.get("decimals", 6)), 6)


def _shares_of(parts: np.ndarray, reference: np.ndarray, decimals: int) -> np.ndarray:
    """Parts rescaled to add up to the reference, rounded so that the rounded parts still add up to it.

    CTGAN's parts are taken as relative weights (negative ones as 0; all
    zero as equal shares).  After rounding to ``decimals``, the remainder is
    given one unit at a time to the parts that lost most to rounding.
    """
    weights = np.clip(np.nan_to_num(parts, nan=0.0), 0, None)
    totals = weights.sum(axis=1, keepdims=True)
    even = np.full_like(weights, 1.0 / weights.shape[1])
    shares = np.where(totals > 0, weights / np.where(totals > 0, totals, 1), even)
    scale = 10.0**decimals
    exact = shares * reference[:, None] * scale
    rounded = np.floor(exact)
    short = np.rint(reference * scale - rounded.sum(axis=1))
    order = np.argsort(-(exact - rounded), axis=1)
    ranks = np.argsort(order, axis=1)
    rounded += ranks < np.nan_to_num(short, nan=0.0)[:, None]
    result = rounded / scale
    return np.where(np.isnan(reference)[:, None], parts, result)


def _written_as(values: np.ndarray, col: dict[str, Any], current: pd.Series) -> pd.Series:
    """Rebuilt numbers in the column's own dtype and rounding, gaps kept as gaps."""
    series = pd.Series(values, index=current.index).round(_decimals_of(col))
    if col["dtype"].startswith(("int", "uint")) and not series.isna().any():
        return series.astype(col["dtype"])
    if col["dtype"].startswith(("int", "uint")):
        return series.astype("Int64") if current.dtype == "Int64" else series
    return series
