"""The report's privacy search at scale: DCR and NNDR of 10,000 synthetic rows against a large training table.

    python -m bench.bench_privacy [CSV] [--copies 6]

The training table is CSV repeated ``--copies`` times with 1% noise on its
numeric columns (diamonds x 6: 323,640 rows); the synthetic rows are 10,000
of them with 5% noise, so none is an exact copy.  Times ``report.privacy``
as the fit job runs it, and prints its figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_privacy", description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=str(REPO.parent / "shared" / "datasets" / "diamonds.csv"))
    parser.add_argument("--copies", type=int, default=6)
    args = parser.parse_args()
    import numpy as np
    import pandas as pd

    from ctgan_server import report

    frame = pd.read_csv(args.csv)
    rng = np.random.default_rng(0)
    numeric = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c]) or pd.api.types.is_integer_dtype(frame[c])]
    train = pd.concat([frame] * args.copies, ignore_index=True)
    for column in numeric:
        train[column] = train[column] * (1 + rng.normal(0, 0.01, len(train)))
    synthetic = train.sample(10_000, random_state=1).reset_index(drop=True)
    for column in numeric:
        synthetic[column] = synthetic[column] * (1 + rng.normal(0, 0.05, len(synthetic)))
    started = time.perf_counter()
    result, notes = report.privacy(train, synthetic)
    seconds = time.perf_counter() - started
    shown = {k: round(v, 4) for k, v in result.items() if isinstance(v, float)}
    print(f"privacy of 10,000 synthetic rows against {len(train):,} training rows: {seconds:.1f} s; {shown}")


if __name__ == "__main__":
    main()
