"""Value protection (`fit --protect none|rare|strict`): what each level does, and what the report says of it.

A category seen three times, or the largest salary in a column, may belong
to one person, and CTGAN can hand either back verbatim.  So by default:

- **rare** (the default): a category seen fewer than ``[service]
  rare_category_count`` times (5) never comes back.  Text merges it into
  ``(other)``; numbers and booleans map it to the nearest kept value, so the
  column keeps its dtype and gains no new value.  Continuous, date and
  numeric-ID ranges end at the 0.1% and 99.9% quantiles instead of the exact
  minimum and maximum, and never fewer than that many rows in from either
  end, which is what protects a small table, where the 0.1% quantile is
  the minimum itself.
- **strict**: twice the count (10) and the 1% and 99% quantiles.
- **none**: categories and ranges exactly as in the data, as before 0.3.0
  (free text still groups its values seen fewer than 5 times: one-hot
  encoding thousands of them would swamp CTGAN).

``schema.build_plan`` decides per column and records it in the plan (which
categories are kept, the bounds, and a ``protection`` mark saying how many
categories were merged or which quantiles bound the range); ``training_frame``
applies it to the rows CTGAN learns from; the Restorer keeps samples within
the recorded bounds as it always did, so a model stored before protection
existed samples exactly as before.  Stdlib only: `serve` summarises the
marks for `report` without importing pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .settings import Settings
from .wire import check_protect

# The quantiles each level cuts continuous, date and numeric-ID ranges at.
QUANTILES = {"rare": (0.001, 0.999), "strict": (0.01, 0.99)}
STRICT_FACTOR = 2  # strict merges categories seen fewer than twice rare_category_count times


@dataclass(frozen=True)
class Protection:
    """One fit's level with its numbers; ``none`` merges nothing and keeps the exact ranges."""

    level: str = "none"
    rare_below: int = 0  # a category seen fewer times than this is merged
    low: float = 0.0  # the quantiles ranges are cut at
    high: float = 1.0

    @property
    def on(self) -> bool:
        return self.level != "none"

    def mark(self, **facts: Any) -> dict[str, Any]:
        """What a column's plan records of its protection: counts and quantiles, never a value."""
        return {"level": self.level, "rare_below": self.rare_below, **facts}


def protection_for(level: str, settings: Settings | None = None) -> Protection:
    """The level's numbers; ``settings`` gives rare_category_count (its default without them)."""
    check_protect(level)
    if level == "none":
        return Protection()
    count = settings.rare_category_count if settings is not None else Settings.rare_category_count
    low, high = QUANTILES[level]
    return Protection(level, count * (STRICT_FACTOR if level == "strict" else 1), low, high)


def percent(share: float) -> str:
    """A quantile as the plan and the report write it: 0.001 as 0.1%, 0.99 as 99%."""
    return f"{share * 100:g}%"


def summary(columns: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the report says was protected, from the plan's per-column marks; None for a model made before them."""
    marks = [c["protection"] for c in columns if isinstance(c.get("protection"), dict)]
    if not marks:
        return None
    merged = [int(m.get("merged") or 0) for m in marks]
    bounded = [m["quantiles"] for m in marks if m.get("quantiles")]
    return {
        "level": marks[0].get("level"),
        "rare_below": marks[0].get("rare_below"),
        "categories_merged": sum(merged),
        "columns_merged": sum(1 for n in merged if n),
        "quantiles": bounded[0] if bounded else None,
        "columns_bounded": len(bounded),
    }
