"""Small, deterministic, messy CSVs for the end-to-end tests in test_messy_csv.py.

Each generator writes one file into ``folder`` and returns its path.  Every
generator uses its own fixed seed, so the same call always writes the same
bytes.  Sizes stay between 60 and 400 rows so fits of 1-2 epochs stay fast.

The module also holds what the tests need to know about the files: the
regular expression and strptime format of each date column, the regular
expressions of the identifier columns, and which columns are which kind.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

# -- the wide "patients" file: one column of every kind ----------------------------

DATE_COLUMNS = {
    # column: (strptime format, regex every written value must match)
    "admitted": ("%Y-%m-%d", r"^\d{4}-\d{2}-\d{2}$"),
    "seen_at": ("%Y-%m-%dT%H:%M:%SZ", r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"),
    "birth_date": ("%d/%m/%Y", r"^\d{2}/\d{2}/\d{4}$"),
    "follow_up": ("%m/%d/%Y", r"^\d{2}/\d{2}/\d{4}$"),  # US order: month first
    "discharged": ("%Y-%m-%d %H:%M", r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"),
}
# An integer column of yyyymmdd dates: numeric, so a datetime only with --datetime.
FORCED_DATE_COLUMN = ("lab_date", "%Y%m%d", r"^\d{8}$")

ID_PATTERNS = {
    "patient_id": r"^PT-\d{6}$",
    "visit_uuid": r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
}
# Every original visit_uuid is a version-4 UUID: a "4" and a variant digit at fixed places.
UUID4_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
NUMERIC_ID = "record_no"  # unique integers: an identifier only with --id
IGNORED = "comment"  # free text, fitted with --ignore
FORCED_DISCRETE = "rating"  # integers with 15 distinct values: continuous unless --discrete
FORCED_CONTINUOUS = "floor"  # integers with 6 distinct values: discrete unless --continuous

PATIENT_KINDS = {
    "patient_id": "identifier",
    "visit_uuid": "identifier",
    "record_no": "identifier",
    "row_number": "continuous",
    "sex": "discrete",
    "age": "continuous",
    "weight_kg": "continuous",
    "visits": "continuous",
    "children": ("discrete", "continuous"),  # whole numbers 0-4 with gaps (float64): either reading is fine
    "smoker": "discrete",
    "ward": "discrete",
    "stage": "discrete",
    "rating": "discrete",
    "floor": "continuous",
    "grade": "discrete",
    "pain": "continuous",
    "dose": "discrete",
    "surname": "high-cardinality text",
    "admitted": "datetime",
    "seen_at": "datetime",
    "birth_date": "datetime",
    "follow_up": "datetime",
    "discharged": "datetime",
    "lab_date": "datetime",
    "site": "constant",
    "empty_notes": "empty",
    "comment": "ignored",
}
PATIENT_OVERRIDES = (
    "--id",
    NUMERIC_ID,
    "--ignore",
    IGNORED,
    "--discrete",
    FORCED_DISCRETE,
    "--continuous",
    FORCED_CONTINUOUS,
    "--datetime",
    FORCED_DATE_COLUMN[0],
)
INTEGER_COLUMNS = (
    "record_no",
    "row_number",
    "age",
    "visits",
    "children",
    "stage",
    "rating",
    "floor",
    "grade",
    "pain",
    "lab_date",
)
NUMERIC_RANGE_COLUMNS = ("row_number", "age", "weight_kg", "visits", "children", "floor", "pain")
DISCRETE_COLUMNS = ("sex", "smoker", "ward", "stage", "rating", "grade", "dose")
HIGH_CARD_TEXT = "surname"
OTHER_TOKEN = "(other)"

COMMON_SURNAMES = [
    "Berg",
    "Hansen",
    "Novak",
    "Silva",
    "Kowalski",
    "Okafor",
    "Tanaka",
    "Moreau",
    "Rossi",
    "Jensen",
    "Schmidt",
    "Lindqvist",
    "Murphy",
    "Nakamura",
    "Haddad",
    "Petrov",
    "Costa",
    "Fischer",
    "Olsen",
    "Garcia",
    "Dubois",
    "Ivanova",
    "Kim",
    "Nguyen",
    "Brennan",
]
_SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "tor", "sel", "bri", "dun", "fa", "gor", "hil", "zan", "pe", "qui"]


def _with_gaps(rng: np.random.Generator, values: np.ndarray | list, rate: float) -> np.ndarray:
    values = np.asarray(values, dtype=object)
    return np.where(rng.random(len(values)) < rate, None, values)


def _random_times(rng: np.random.Generator, start: datetime, end: datetime, n: int, step_seconds: int) -> list[datetime]:
    span = int((end - start).total_seconds() // step_seconds)
    return [start + timedelta(seconds=int(k) * step_seconds) for k in rng.integers(0, span, n)]


def _rare_surnames(rng: np.random.Generator, n: int) -> list[str]:
    found: list[str] = []
    while len(found) < n:
        name = "".join(rng.choice(_SYLLABLES, 3)).capitalize()
        if name not in found and name not in COMMON_SURNAMES:
            found.append(name)
    return found


def patients(folder: Path, n: int = 400) -> Path:
    """One column of every kind, with gaps: IDs, dates in four formats, rare text, a constant, an empty column."""
    assert n == 400, "the surname mix below is laid out for 400 rows"
    rng = np.random.default_rng(20240601)
    surnames = [name for name in COMMON_SURNAMES for _ in range(10)] + _rare_surnames(rng, 130) + [None] * 20
    surnames = list(rng.permutation(np.array(surnames, dtype=object)))
    # nearly unique: a few patients were seen twice
    patient_ids = [f"PT-{k:06d}" for k in rng.choice(np.arange(1, 1_000_000), n - 8, replace=False)]
    patient_ids = list(rng.permutation(patient_ids + patient_ids[:8]))
    birth = _random_times(rng, datetime(1940, 1, 1), datetime(2005, 12, 31), n, 86400)
    lab = _random_times(rng, datetime(2020, 1, 1), datetime(2022, 12, 31), n, 86400)
    comments = ["felt fine", "dizzy after lunch", "asked about diet", "no complaints", "follow-up booked"]
    frame = pd.DataFrame(
        {
            "patient_id": patient_ids,
            "visit_uuid": [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)],
            "record_no": rng.choice(np.arange(100_000, 1_000_000), n, replace=False),
            "row_number": np.arange(1, n + 1),
            "sex": _with_gaps(rng, rng.choice(["F", "M"], n), 0.10),
            "age": rng.integers(18, 91, n),
            "weight_kg": np.where(rng.random(n) < 0.15, np.nan, rng.normal(74, 11, n).round(2)),
            "visits": np.where(rng.random(n) < 0.12, np.nan, rng.integers(0, 41, n)).astype(float),
            "children": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 5, n)).astype(float),
            "smoker": rng.random(n) < 0.3,
            "ward": _with_gaps(rng, rng.choice(["A", "B", "C wing", "D, annex"], n, p=[0.3, 0.3, 0.25, 0.15]), 0.05),
            "stage": rng.choice([1, 2, 3, 4], n, p=[0.3, 0.3, 0.25, 0.15]),
            "rating": rng.integers(1, 16, n),
            "floor": rng.integers(0, 6, n),
            # the discrete/continuous boundary for integers: 10 distinct values vs 11
            "grade": rng.permutation(np.arange(n) % 10 + 1),
            "pain": rng.permutation(np.arange(n) % 11),
            "dose": rng.choice(["10", "20", "40", "high", "low"], n),
            "surname": surnames,
            "admitted": _with_gaps(
                rng,
                [t.strftime("%Y-%m-%d") for t in _random_times(rng, datetime(2019, 1, 1), datetime(2023, 12, 31), n, 86400)],
                0.08,
            ),
            "seen_at": [
                t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in _random_times(rng, datetime(2021, 1, 1), datetime(2021, 12, 31), n, 1)
            ],
            "birth_date": [t.strftime("%d/%m/%Y") for t in birth],
            "follow_up": [
                t.strftime("%m/%d/%Y") for t in _random_times(rng, datetime(2022, 1, 1), datetime(2024, 6, 30), n, 86400)
            ],
            "discharged": [
                t.strftime("%Y-%m-%d %H:%M") for t in _random_times(rng, datetime(2022, 3, 1), datetime(2022, 9, 30), n, 60)
            ],
            "lab_date": [int(t.strftime("%Y%m%d")) for t in lab],
            "site": "north",
            "empty_notes": [None] * n,
            "comment": [f"{rng.choice(comments)} (visit {k})" for k in range(n)],
        }
    )
    path = folder / "patients.csv"
    frame.to_csv(path, index=False)
    return path


# -- small files ---------------------------------------------------------------------


def small_seeded(folder: Path, n: int = 80) -> Path:
    """Three plain columns, for the reproducibility tests."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "group": rng.choice(["a", "b", "c"], n),
            "score": rng.normal(10, 2, n).round(3),
            "count": rng.integers(0, 50, n),
        }
    )
    path = folder / "seeded.csv"
    frame.to_csv(path, index=False)
    return path


def ward_visits(folder: Path, n: int = 150) -> Path:
    """IDs, second-resolution UTC timestamps, a category and a gappy number: the SSH round trip."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "patient_id": [f"PT-{k:06d}" for k in rng.choice(np.arange(1, 1_000_000), n, replace=False)],
            "seen_at": [
                t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in _random_times(rng, datetime(2021, 1, 1), datetime(2021, 12, 31), n, 1)
            ],
            "ward": rng.choice(["A", "B", "C"], n),
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.normal(5, 1, n).round(1)),
        }
    )
    path = folder / "ward visits.csv"
    frame.to_csv(path, index=False)
    return path


def utf8_bom(folder: Path, n: int = 60) -> Path:
    """As Excel saves "CSV UTF-8": a byte-order mark, CRLF line ends, and non-ASCII text."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "city": rng.choice(["Zürich", "Kraków", "São Paulo", "Malmö"], n),
            "temp": rng.normal(12, 6, n).round(1),
        }
    )
    path = folder / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False, lineterminator="\r\n").encode("utf-8"))
    return path


def one_column(folder: Path, n: int = 60) -> Path:
    """A single column: often a file whose separator was not recognised."""
    rng = np.random.default_rng(4)
    path = folder / "one column.csv"
    pd.DataFrame({"reading": rng.normal(100, 15, n).round(2)}).to_csv(path, index=False)
    return path


def separated(folder: Path, sep: str, n: int = 80) -> Path:
    """A ;- or tab-separated file with a category, an integer and a decimal column."""
    rng = np.random.default_rng(6)
    frame = pd.DataFrame(
        {
            "kind": rng.choice(["north", "south", "east"], n),
            "count": rng.integers(0, 30, n),
            "value": rng.normal(3, 1, n).round(2),
        }
    )
    name = {";": "semicolon.csv", "\t": "tabbed.tsv"}[sep]
    path = folder / name
    frame.to_csv(path, index=False, sep=sep)
    return path


# -- files that must be refused ------------------------------------------------------


def duplicate_columns(folder: Path, n: int = 60) -> Path:
    rng = np.random.default_rng(8)
    lines = ["id,amount,amount,city"] + [
        f"{k},{rng.integers(1, 100)},{rng.integers(1, 100)},{rng.choice(['Oslo', 'Lima'])}" for k in range(n)
    ]
    path = folder / "duplicate columns.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def latin1(folder: Path, n: int = 60) -> Path:
    """Mostly ASCII, but a few rows further down were saved as Latin-1."""
    rows = [f"Anna,Oslo,{k}".encode() for k in range(n)]
    rows[40] = "José,Köln,40".encode("latin-1")
    rows[41] = "Zoë,Malmö,41".encode("latin-1")
    path = folder / "latin1.csv"
    path.write_bytes(b"name,city,n\n" + b"\n".join(rows) + b"\n")
    return path


def numeric_header(folder: Path, n: int = 60) -> Path:
    """No header row: the first row is data."""
    rng = np.random.default_rng(9)
    path = folder / "no header.csv"
    pd.DataFrame(rng.integers(0, 100, (n, 4))).to_csv(path, index=False, header=False)
    return path


def too_many_columns(folder: Path, n: int = 60, columns: int = 2001) -> Path:
    rng = np.random.default_rng(10)
    path = folder / "wide.csv"
    pd.DataFrame(rng.integers(0, 10, (n, columns)), columns=[f"c{k}" for k in range(columns)]).to_csv(path, index=False)
    return path


def uneven_semicolon(folder: Path, n: int = 60) -> Path:
    """;-separated, but some lines have an extra field."""
    lines = ["a;b;c"] + [f"{k};{k % 7};x{k}" + (";extra" if k % 13 == 5 else "") for k in range(n)]
    path = folder / "uneven.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


BAD_FILES = {
    # name: (generator, words of which the one-line error should contain at least one)
    "duplicate_columns": (duplicate_columns, ("duplicate",)),
    "latin1": (latin1, ("UTF-8", "utf-8")),
    "numeric_header": (numeric_header, ("number",)),
    "too_many_columns": (too_many_columns, ("2,000", "2000", "2,001", "2001")),
    "uneven_semicolon": (uneven_semicolon, ("fields", "uneven")),
}
