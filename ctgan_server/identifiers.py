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
import math
import os
import string
from collections import Counter
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from .wire import BadDataError

# A text column is an identifier when at least this share of its values is
# distinct and most values hold a digit: record numbers, not names or prose.
NEARLY_UNIQUE = 0.95
MIN_VALUES = 20
MAX_ID_LENGTH = 64
MAX_SHAPES = 20  # the most common ID lengths kept; rarer lengths are left out
MAX_ATTEMPTS = 50
NARROW_MIN_VALUES = 50  # examples needed before a position keeps only the characters seen there
ROOM_FACTOR = 10  # a pattern should allow at least ten times as many IDs as it was learned from
ENUMERATE_LIMIT = 2_000_000  # patterns this small are listed in full once random draws stall

_CLASSES = (string.digits, string.ascii_lowercase, string.ascii_uppercase)
_HEX_LOWER = string.digits + "abcdef"
_HEX_UPPER = string.digits + "ABCDEF"


def looks_like_identifier(observed: pd.Series, distinct: int | None = None) -> bool:
    """Text that is (nearly) unique per row and made of short, digit-bearing tokens.

    ``distinct`` is ``observed.nunique()`` when the caller has counted it already.
    """
    if len(observed) < MIN_VALUES:
        return False
    if (observed.nunique() if distinct is None else distinct) < NEARLY_UNIQUE * len(observed):
        return False
    text = observed.astype(str)
    if (text.str.len() > MAX_ID_LENGTH).any() or text.str.contains(r"\s", regex=True).any():
        return False
    return float(text.str.contains(r"\d", regex=True).mean()) >= 0.9


def _widened(chars: set[str]) -> str:
    """The whole character class(es) that the seen characters belong to."""
    if chars <= set(_HEX_LOWER) and chars & set("abcdef") and chars & set(string.digits):
        return _HEX_LOWER
    if chars <= set(_HEX_UPPER) and chars & set("ABCDEF") and chars & set(string.digits):
        return _HEX_UPPER
    widened = "".join(cls for cls in _CLASSES if chars & set(cls))
    others = "".join(sorted(c for c in chars if not c.isascii() or not c.isalnum()))
    return widened + others


def _shape(same: pd.Series, length: int) -> list[str]:
    """What each position of IDs of one length may hold.

    With enough examples, a position that only ever shows a few characters
    keeps exactly those (a UUID's version "4", its variant "89ab"); with few
    examples it is widened to the whole class.  Then, while the pattern leaves
    too little room for new IDs ("PT-000001".."PT-000400" with three constant
    zeros), narrowed digit positions are widened from the right.
    """
    seen = _characters_by_position(same, length)
    positions = []
    narrowed = []
    for i, chars in enumerate(seen):
        wide = _widened(chars)
        if len(chars) == 1 and not chars <= set(string.digits):
            positions.append(next(iter(chars)))  # a literal: "PT-", separators
        elif len(same) >= NARROW_MIN_VALUES and len(chars) <= len(wide) // 2:
            positions.append("".join(sorted(chars)))
            narrowed.append(i)
        else:
            positions.append(wide)
    room = ROOM_FACTOR * len(same)
    for i in reversed(narrowed):
        if math.prod(len(p) for p in positions) >= room:
            break
        positions[i] = _widened(seen[i])
    return positions


def _characters_by_position(same: pd.Series, length: int) -> list[set[str]]:
    """The set of characters seen at each position of strings that all have ``length`` characters.

    Read as one block of code points (numpy's fixed-width text holds one per
    character, as Python's indexing counts them), one column per position:
    a million IDs take a fraction of a second instead of a Python loop per
    position.
    """
    if length == 0 or same.empty:
        return [set() for _ in range(length)]
    grid = np.array(same.tolist(), dtype=f"<U{length}").view(np.uint32).reshape(len(same), length)
    return [set(map(chr, np.unique(grid[:, i]).tolist())) for i in range(length)]


def learn_text_shapes(observed: pd.Series) -> list[dict[str, Any]]:
    """Per ID length, what each position may hold and how often that length occurs."""
    text = observed.astype(str)
    sizes = text.str.len()
    lengths = Counter(sizes)
    return [
        {"positions": _shape(text[sizes == length], length), "weight": count} for length, count in lengths.most_common(MAX_SHAPES)
    ]


def _hash_one(value: Any, numeric: bool, key: bytes) -> int:
    text = str(int(value)) if numeric else str(value)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8, key=key).digest(), "little")


def original_id_record(observed: pd.Series, numeric: bool) -> dict[str, Any]:
    """What the model file keeps about the original IDs: a key and their keyed hashes."""
    key = os.urandom(16)
    hashes = np.fromiter((_hash_one(v, numeric, key) for v in observed), dtype=np.uint64)
    return {"key": key, "hashes": np.unique(hashes)}


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
            got = self._keep_new(self._draw(need * 2 + 8), need)
            made += got
            if len(got) < need / 100:
                break  # the pattern is nearly used up: random draws find little
        if len(made) < n:
            made += self._keep_new(self._enumerate(), n - len(made))
        if len(made) < n:
            made += self._reuse(n - len(made))
        return made

    def _keep_new(self, candidates: Iterable[Any], limit: int) -> list[Any]:
        """Up to ``limit`` candidates that are neither original nor already made, marked as used."""
        kept: list[Any] = []
        numeric = self.col["numeric"]
        for value in candidates:
            if len(kept) == limit:
                break
            if value in self.used or _hash_one(value, numeric, self.key) in self.originals:
                continue
            self.used.add(value)
            kept.append(value)
        return kept

    def _enumerate(self) -> Iterator[Any]:
        """Every value of a small pattern, in random order: random draws miss the last few free ones."""
        col = self.col
        if col["numeric"]:
            low, high = int(col["min"]), int(col["max"])
            if high - low < ENUMERATE_LIMIT:
                yield from (low + int(i) for i in self.rng.permutation(high - low + 1))
            return
        for shape in col["shapes"]:
            positions = shape["positions"]
            sizes = [len(p) for p in positions]
            capacity = math.prod(sizes)
            if capacity > ENUMERATE_LIMIT:
                continue
            for index in self.rng.permutation(capacity):
                chars, rest = [], int(index)
                for options, size in zip(reversed(positions), reversed(sizes)):
                    rest, digit = divmod(rest, size)
                    chars.append(options[digit])
                yield "".join(reversed(chars))

    def _draw(self, n: int) -> list[Any]:
        col = self.col
        if col["numeric"]:
            return self.rng.integers(int(col["min"]), int(col["max"]), size=n, endpoint=True).tolist()
        shapes = col["shapes"]
        weights = np.array([s["weight"] for s in shapes], dtype=float)
        counts = self.rng.multinomial(n, weights / weights.sum())
        out: list[str] = []
        for shape, m in zip(shapes, counts):
            positions = shape["positions"]
            if m == 0 or not positions:
                continue
            # One column of characters per position, then each row read as one string.
            grid = np.stack([np.array(list(p))[self.rng.integers(len(p), size=m)] for p in positions], axis=1)
            out += np.ascontiguousarray(grid).view(f"<U{len(positions)}").ravel().tolist()
        self.rng.shuffle(out)  # rows must not come grouped by ID length
        return out

    def _reuse(self, n: int) -> list[Any]:
        """Numeric IDs in a range with no unused values left: stay unique and in range, as the plan warned."""
        col = self.col
        if not col["numeric"] or col["max"] - col["min"] >= ENUMERATE_LIMIT:
            raise BadDataError(
                f"cannot make {n} more unique values for identifier column {col['name']!r}: its pattern has no "
                "unused values left; sample fewer rows, or fit with --discrete or --ignore for that column"
            )
        free = [v for v in range(int(col["min"]), int(col["max"]) + 1) if v not in self.used][:n]
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
