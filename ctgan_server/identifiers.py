"""Identifier columns: learn the shape of record IDs, then make fresh ones.

IDs carry no statistical signal, and one-hot encoding tens of thousands of
unique values would swamp CTGAN, so identifier columns never reach the model.
Instead the plan keeps their shape: for text IDs, per position, the set of
characters that may appear there (so "PT-000123" gives a literal "P", "T",
"-" and six digit positions); for numeric IDs, the range.

A synthetic ID must never equal an original one.  The originals are kept only
as keyed 64-bit hashes (the key is random per model), stored inside the model
file beside the network, never in the JSON that listing reads.
"""

from __future__ import annotations

import hashlib
import os
import string
from collections import Counter
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .errors import BadDataError

# A text column is an identifier when at least this share of its values is
# distinct and most values hold a digit: record numbers, not names or prose.
NEARLY_UNIQUE = 0.95
MIN_VALUES = 20
MAX_ID_LENGTH = 64
MAX_SHAPES = 20  # the most common ID lengths kept; rarer lengths are left out
MAX_ATTEMPTS = 50

_CLASSES = (string.digits, string.ascii_lowercase, string.ascii_uppercase)
_HEX_LOWER = string.digits + "abcdef"
_HEX_UPPER = string.digits + "ABCDEF"


def looks_like_identifier(observed: pd.Series) -> bool:
    """Text that is (nearly) unique per row and made of short, digit-bearing tokens."""
    if len(observed) < MIN_VALUES or observed.nunique() < NEARLY_UNIQUE * len(observed):
        return False
    text = observed.astype(str)
    if (text.str.len() > MAX_ID_LENGTH).any() or text.str.contains(r"\s", regex=True).any():
        return False
    return float(text.str.contains(r"\d", regex=True).mean()) >= 0.9


def _allowed(chars: set[str]) -> str:
    """The characters one position may take, widened from those seen to their whole class."""
    if len(chars) == 1:
        return next(iter(chars))
    if chars <= set(_HEX_LOWER) and chars & set("abcdef") and chars & set(string.digits):
        return _HEX_LOWER
    if chars <= set(_HEX_UPPER) and chars & set("ABCDEF") and chars & set(string.digits):
        return _HEX_UPPER
    widened = "".join(cls for cls in _CLASSES if chars & set(cls))
    others = "".join(sorted(c for c in chars if not c.isascii() or not c.isalnum()))
    return widened + others


def learn_text_shapes(observed: pd.Series) -> list[dict[str, Any]]:
    """Per ID length, what each position may hold and how often that length occurs."""
    text = observed.astype(str)
    lengths = Counter(text.str.len())
    shapes = []
    for length, count in lengths.most_common(MAX_SHAPES):
        same = text[text.str.len() == length]
        positions = []
        for i in range(length):
            seen = set(same.str[i])
            # Digits always vary: a digit that happens to be constant in the
            # sample ("ID10".."ID19") would otherwise leave no room for new IDs.
            if seen <= set(string.digits):
                positions.append(string.digits)
            else:
                positions.append(_allowed(seen))
        shapes.append({"positions": positions, "weight": count})
    return shapes


def id_hashes(values: Iterable[str], key: bytes) -> np.ndarray:
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8, key=key).digest(), "little") for v in values),
        dtype=np.uint64,
    )


def original_id_record(observed: pd.Series, numeric: bool) -> dict[str, Any]:
    """What the model file keeps about the original IDs: a key and their keyed hashes."""
    key = os.urandom(16)
    return {"key": key, "hashes": np.unique(id_hashes(_as_text(observed, numeric), key))}


def _as_text(values: Iterable[Any], numeric: bool) -> list[str]:
    return [str(int(v)) for v in values] if numeric else [str(v) for v in values]


class IdentifierMaker:
    """Fresh IDs for one column, unique across every chunk of one sampling run."""

    def __init__(self, col: dict[str, Any], record: dict[str, Any], rng: np.random.Generator):
        self.col = col
        self.rng = rng
        self.key = record["key"]
        self.originals = set(record["hashes"].tolist())
        self.used: set[str] = set()

    def fresh(self, n: int) -> list[Any]:
        made: list[Any] = []
        for _ in range(MAX_ATTEMPTS):
            need = n - len(made)
            if need == 0:
                return made
            # Draw extra so that rejects rarely cost another round.
            candidates = self._draw(need * 2 + 8)
            hashes = id_hashes(_as_text(candidates, self.col["numeric"]), self.key).tolist()
            for value, digest in zip(candidates, hashes):
                if digest in self.originals or value in self.used:
                    continue
                self.used.add(value)
                made.append(value)
                if len(made) == n:
                    break
        if len(made) < n:
            made += self._reuse(n - len(made))
        return made

    def _draw(self, n: int) -> list[Any]:
        col = self.col
        if col["numeric"]:
            return self.rng.integers(int(col["min"]), int(col["max"]), size=n, endpoint=True).tolist()
        shapes = col["shapes"]
        weights = np.array([s["weight"] for s in shapes], dtype=float)
        picks = self.rng.choice(len(shapes), size=n, p=weights / weights.sum())
        out = []
        for index in picks:
            positions = shapes[index]["positions"]
            out.append("".join(p[self.rng.integers(len(p))] if len(p) > 1 else p for p in positions))
        return out

    def _reuse(self, n: int) -> list[Any]:
        """Numeric IDs in a range with no unused values left: stay unique and in range, as the plan warned."""
        col = self.col
        if not col["numeric"]:
            raise BadDataError(
                f"cannot make {n} more unique values for identifier column {col['name']!r}: its pattern has no "
                "unused values left; sample fewer rows, or fit with --discrete or --ignore for that column"
            )
        free = [v for v in range(int(col["min"]), int(col["max"]) + 1) if v not in self.used][: n]
        if len(free) < n:
            raise BadDataError(
                f"identifier column {col['name']!r} ranges over {col['min']:.0f}..{col['max']:.0f}, which holds "
                f"fewer unique values than the rows asked for; sample fewer rows"
            )
        self.rng.shuffle(free)
        self.used.update(free)
        return free


def unused_in_range(col: dict[str, Any], originals: int) -> int:
    return int(col["max"] - col["min"] + 1) - originals
