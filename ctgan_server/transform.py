"""Between the user's columns and CTGAN's: the training frame, and the way back.

``training_frame`` encodes each column the way the plan says.  ``Restorer``
undoes it for sampled rows: categories, dtypes, rounding, ranges, date formats,
fresh identifiers, and missing values at the original rate.  One Restorer
serves one sampling run, so identifiers stay unique across its chunks.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from .schema import MAX_DECIMALS, Kind, category_text
from .wire import UsageError

YES, NO = "yes", "no"
# A bound holding at least this share of a column's values is a spike worth keeping.
SPIKE_SHARE = 0.05


def training_frame(frame: pd.DataFrame, plan: dict[str, Any], seed: int | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The frame CTGAN trains on, and the names of its discrete columns."""
    from .dates import to_seconds

    rng = np.random.default_rng(seed)
    out: dict[str, pd.Series] = {}
    discrete: list[str] = []
    for col in plan["columns"]:
        name, kind, series = col["name"], col["kind"], frame[col["name"]]
        if kind in (Kind.DISCRETE, Kind.HIGH_CARDINALITY_TEXT):
            values = merged_rare(category_text(series), col)
            out[name] = values.fillna(col["missing_token"]).astype(object)
            discrete.append(name)
        elif kind in (Kind.CONTINUOUS, Kind.DATETIME):
            values = to_seconds(series, col["datetime"]) if kind == Kind.DATETIME else series.astype(float)
            missing = values.isna()
            if missing.any():
                # Fill gaps with draws from the observed values rather than one
                # constant, so the column's shape is not distorted; the flag
                # column lets CTGAN learn where the gaps go.
                values = values.copy()
                values[missing] = rng.choice(values[~missing].to_numpy(), size=int(missing.sum()))
                flag = col["missing_flag"]
                out[flag] = missing.map({True: YES, False: NO})
                discrete.append(flag)
            # Under value protection the rows keep their extremes: the Restorer keeps
            # sampled values within the plan's bounds.  Clipping (or redrawing) the
            # few rows past them changed how CTGAN learned the column: credit_data's
            # Income shape score fell from 0.93 to 0.77 on average over 8 seeded fits.
            out[name] = values
    return pd.DataFrame(out), discrete


def merged_rare(values: pd.Series, col: dict[str, Any]) -> pd.Series:
    """Category text with the values the plan did not keep merged, as the plan says.

    Into its ``other_token`` where it has one (text); otherwise (numbers and
    booleans, see ``schema._discrete``) onto the nearest kept value.
    """
    outside = values.notna() & ~values.isin(col["categories"])
    if not outside.any():
        return values
    if "other_token" in col:
        return values.where(~outside, col["other_token"])
    nearest = nearest_kept(pd.unique(values[outside]), col["categories"])
    return values.where(~outside, values[outside].map(nearest))


def _category_number(text: str) -> float:
    return {"True": 1.0, "False": 0.0}[text] if text in ("True", "False") else float(text)


def nearest_kept(rare: Iterable[str], kept: list[str]) -> dict[str, str]:
    """Each rare number or boolean category -> the kept one nearest to it.

    ``kept`` comes most common first, and a tie goes to the earlier, so an
    even split between two neighbours leans to the more common value.
    """
    points = np.array([_category_number(k) for k in kept])
    return {r: kept[int(np.argmin(np.abs(points - _category_number(r))))] for r in rare}


def parse_conditions(conditions: dict[str, Any] | None, plan: dict[str, Any]) -> dict[str, str]:
    """Check COL=VALUE conditions against the plan; returns column -> category as CTGAN writes it."""
    columns = {c["name"]: c for c in plan["columns"]}
    checked: dict[str, str] = {}
    for name, value in (conditions or {}).items():
        col = columns.get(name)
        if col is None:
            raise UsageError(f"--condition names no such column: {name}")
        if col["kind"] not in (Kind.DISCRETE, Kind.HIGH_CARDINALITY_TEXT):
            raise UsageError(f"--condition {name}: only discrete columns can be conditioned on; {name} is {col['kind']}")
        checked[name] = _match_category(str(value), col)
    return checked


def _match_category(value: str, col: dict[str, Any]) -> str:
    categories = col.get("categories", [])
    if value in categories:
        return value
    folded = [c for c in categories if c.casefold() == value.casefold()]
    if len(folded) == 1:  # "true" for a bool column's "True"
        return folded[0]
    number = _as_float(value)
    if number is not None:  # "3.0" asks for the same category as "3"
        for category in categories:
            if _as_float(category) == number:
                return category
    shown = ", ".join(categories[:10]) + (", ..." if len(categories) > 10 else "")
    raise UsageError(f"--condition {col['name']}={value}: no such value in the training data (values: {shown})")


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def matching_rows(raw: pd.DataFrame, conditions: dict[str, str]) -> pd.DataFrame:
    """CTGAN's own conditional sampling is wrong for all but the first discrete column
    (upstream issue #273), so conditions are enforced here by keeping matching rows."""
    keep = np.ones(len(raw), dtype=bool)
    for name, category in conditions.items():
        keep &= raw[name].astype(str).to_numpy() == category
    return raw[keep]


def _target_count(n: int, rate: float, rng: np.random.Generator) -> int:
    """n * rate rounded up or down at random, so the expected count is exact."""
    exact = n * rate
    return int(np.floor(exact + rng.random()))


def calibrated_missing(missing: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A missing-value mask with the original rate.

    CTGAN over-generates rare categories, and "missing" is usually rare: a
    column with 0.6% gaps came back with 4-10% after 300 epochs.  Rows CTGAN
    marked missing are kept missing first, so the link between gaps and the
    other columns survives; only the surplus is cleared, or the shortfall added
    at random rows.
    """
    missing = missing.copy()
    target = _target_count(len(missing), rate, rng)
    marked = np.flatnonzero(missing)
    if len(marked) > target:
        missing[rng.choice(marked, size=len(marked) - target, replace=False)] = False
    elif len(marked) < target:
        free = np.flatnonzero(~missing)
        missing[rng.choice(free, size=target - len(marked), replace=False)] = True
    return missing


class Restorer:
    """CTGAN output back to the original columns, order, dtypes and ranges."""

    def __init__(
        self, plan: dict[str, Any], id_records: dict[str, Any], rng: np.random.Generator, conditioned: Iterable[str] = ()
    ):
        from .identifiers import IdentifierMaker

        self.plan = plan
        self.rng = rng
        # With conditions, the rows are a subgroup whose gaps may differ from
        # the whole table's (income missing for most of the unemployed), so
        # the overall rates are not imposed on them.
        self.conditioned = bool(set(conditioned))
        self.ids = {
            c["name"]: IdentifierMaker(c, id_records[c["name"]], rng) for c in plan["columns"] if c["kind"] == Kind.IDENTIFIER
        }

    def __call__(self, synthetic: pd.DataFrame) -> pd.DataFrame:
        synthetic = synthetic.reset_index(drop=True)
        out = {col["name"]: self._column(synthetic, col) for col in self.plan["columns"]}
        return pd.DataFrame(out, index=synthetic.index)

    def for_csv(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Whole numbers in float columns (integers with gaps) written as 34, not 34.0.

        Only where the chunk has a gap: a blank keeps pandas reading the column
        as float64, as it read the original.  Without one, "34" everywhere
        would read back as int64, so such chunks keep "34.0".
        """
        frame = frame.copy()
        for col in self.plan["columns"]:
            name = col["name"]
            values = frame[name]
            if col["dtype"].startswith("float") and values.isna().any() and values.notna().any():
                if (
                    pd.api.types.is_numeric_dtype(values)
                    and bool((values.dropna() % 1 == 0).all())
                    and values.abs().max() < 2**53
                ):
                    frame[name] = values.astype("Int64")
        return frame

    def _missing(self, flagged: np.ndarray, col: dict[str, Any]) -> np.ndarray:
        if (
            "null_rate" not in col or self.conditioned
        ):  # plans written before missing rates were calibrated (early in 0.1.0) have none
            return flagged
        return calibrated_missing(flagged, col["null_rate"], self.rng)

    def _column(self, synthetic: pd.DataFrame, col: dict[str, Any]) -> pd.Series:
        n, kind, dtype = len(synthetic), col["kind"], col["dtype"]
        index = synthetic.index
        if kind in (Kind.EMPTY, Kind.IGNORED):
            return pd.Series(np.nan, index=index, dtype=float if dtype != "object" else object)
        if kind == Kind.CONSTANT:
            return pd.Series([col["value"]] * n, index=index).astype(dtype)
        if kind == Kind.IDENTIFIER:
            return self._identifier(n, col, index)
        if kind in (Kind.DISCRETE, Kind.HIGH_CARDINALITY_TEXT):
            return self._discrete(synthetic[col["name"]], col)
        flag = col.get("missing_flag")
        flagged = synthetic[flag].astype(str).to_numpy() == YES if flag else np.zeros(n, dtype=bool)
        missing = self._missing(flagged, col) if flag else flagged
        if kind == Kind.DATETIME:
            return _restore_datetime(synthetic[col["name"]], col, missing, self.rng)
        return _restore_continuous(synthetic[col["name"]], col, missing, self.rng)

    def _discrete(self, values: pd.Series, col: dict[str, Any]) -> pd.Series:
        values = values.astype(str).to_numpy(dtype=object)
        flagged = values == col["missing_token"]
        missing = self._missing(flagged, col)
        surplus = flagged & ~missing
        if surplus.any():
            # Rows whose gap was cleared take a value drawn from the rows CTGAN filled.
            pool = values[~flagged]
            if len(pool) == 0:  # a text column whose every value was rare has only its other token
                pool = np.array(col["categories"] or [col["other_token"]], dtype=object)
            values[surplus] = self.rng.choice(pool, size=int(surplus.sum()))
        values = pd.Series(values).where(~missing, None)
        dtype = col["dtype"]
        if dtype == "bool":
            return values.map({"True": True, "False": False}).astype(bool)
        if dtype.startswith(("int", "uint")):
            return pd.to_numeric(values).astype(dtype)
        if dtype.startswith("float"):
            return pd.to_numeric(values).astype(dtype)
        return values.where(values.notna(), np.nan)

    def _identifier(self, n: int, col: dict[str, Any], index: pd.Index) -> pd.Series:
        missing = self._missing(np.zeros(n, dtype=bool), col)
        values = pd.Series(np.nan, index=index, dtype=object)
        values[~missing] = self.ids[col["name"]].fresh(int((~missing).sum()))
        if col["numeric"]:
            # Int64 keeps large IDs exact; with gaps the CSV still reads back as float64, as the original did.
            ints = values.astype("Int64")
            return ints.astype(col["dtype"]) if col["dtype"].startswith("int") else ints
        return values


def within_range(
    values: pd.Series, low: float, high: float, rng: np.random.Generator, spikes: tuple[bool, bool] = (False, False)
) -> pd.Series:
    """Bring values outside low..high back inside.

    CTGAN often generates past the training range.  Clipping piles those rows
    onto the exact minimum and maximum (a third of a date column after 30
    epochs), copying two original values many times over, so by default they
    are replaced by draws from the values inside the range.  But where the
    original itself has a spike on a bound (82% of credit_data's Debt is 0),
    CTGAN's overshoot is its attempt at that spike, and clipping restores it.
    """
    below, above = (values < low).to_numpy(), (values > high).to_numpy()
    if spikes[0]:
        values = values.where(~below, low)
        below = np.zeros_like(below)
    if spikes[1]:
        values = values.where(~above, high)
        above = np.zeros_like(above)
    outside = below | above
    if not outside.any():
        return values
    inside = values.to_numpy()[~outside & values.notna().to_numpy()]
    values = values.copy()
    if len(inside):
        values[outside] = rng.choice(inside, size=int(outside.sum()))
    else:
        values = values.clip(low, high)
    return values


def _restore_continuous(values: pd.Series, col: dict[str, Any], missing: np.ndarray, rng: np.random.Generator) -> pd.Series:
    values = pd.to_numeric(values, errors="coerce").astype(float)
    # Round before casting, since astype(int) truncates; then keep to the range.
    if col["decimals"] <= MAX_DECIMALS:
        values = values.round(col["decimals"])
    spikes = (col.get("at_min", 0) >= SPIKE_SHARE, col.get("at_max", 0) >= SPIKE_SHARE)
    values = within_range(values, col["min"], col["max"], rng, spikes)
    values[missing] = np.nan
    if col["dtype"].startswith(("int", "uint")) and not missing.any():
        return values.astype(col["dtype"])
    return values


def _restore_datetime(values: pd.Series, col: dict[str, Any], missing: np.ndarray, rng: np.random.Generator) -> pd.Series:
    from .dates import format_seconds, round_to_unit

    spec = col["datetime"]
    seconds = round_to_unit(pd.to_numeric(values, errors="coerce").astype(float), spec)
    seconds = within_range(seconds, spec["min"], spec["max"], rng)
    seconds[missing] = np.nan
    text = format_seconds(seconds, col["datetime"])
    if col["dtype"].startswith(("int", "float")):  # --datetime on numbers such as 20210304
        numbers = pd.to_numeric(text)
        return numbers.astype(col["dtype"]) if col["dtype"].startswith("int") and not missing.any() else numbers
    return text
