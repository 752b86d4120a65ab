"""Conditional sampling speed: rows/s of matching rows, steered generation against rejection alone.

    python -m bench.bench_conditions [CSV] [--epochs 10] [--rows 20000]

Fits plain CTGAN on CSV (default: diamonds, discrete columns cut, color and
clarity) and samples ``--rows`` rows that meet each condition, through the
server's own draw loop (``sampling._chunks``), twice on the same model:

- rejection: what release 0.1 did, draws without a condition, matches kept;
- steered: the condition vector repaired (upstream #273) and set on the
  generator, with batch-norm on running statistics (``conditioning``), and
  every row still checked.

Prints the training share of each condition, the share of draws that
matched, and rows/s; the goal is 10x for a condition held by about 1% of rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CONDITIONS = {"diamonds.csv": [("clarity", "I1"), ("color", "J"), ("cut", "Fair"), ("cut", "Ideal")]}


def timed(model, rows: int, condition: tuple[str, str], steered: bool) -> tuple[float, float]:
    """Rows/s of ``rows`` matching rows through the server's draw loop, and the share of draws that match."""
    from unittest import mock

    from ctgan_server import generation, sampling

    real_draw = generation.generate
    steer = condition if steered else None

    def draw(model, n, _steer=None):
        return real_draw(model, n, steer)

    start = time.perf_counter()
    with mock.patch.object(generation, "generate", draw):
        got = sum(len(chunk) for chunk in sampling._chunks(model, rows, {condition[0]: condition[1]}))
    seconds = time.perf_counter() - start
    probe = real_draw(model, 20_000, steer)
    return got / seconds, float((probe[condition[0]] == condition[1]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_conditions", description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=str(REPO.parent / "shared" / "datasets" / "diamonds.csv"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    import pandas as pd
    from ctgan import CTGAN

    from ctgan_server import conditioning

    frame = pd.read_csv(args.csv)
    discrete = [c for c in frame.columns if frame[c].dtype == object]
    started = time.perf_counter()
    model = CTGAN(epochs=args.epochs, verbose=False)
    model.fit(frame, discrete)
    print(
        f"{Path(args.csv).name}: {len(frame):,} rows, {args.epochs} epochs, fit {time.perf_counter() - started:.0f} s; "
        f"{args.rows:,} matching rows per run"
    )
    conditioning.repair(model)
    print("| condition | share in training | rejection: matched, rows/s | steered: matched, rows/s | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for column, value in CONDITIONS.get(Path(args.csv).name, []):
        share = (frame[column] == value).mean()
        plain_speed, plain_rate = timed(model, args.rows, (column, value), steered=False)
        steer_speed, steer_rate = timed(model, args.rows, (column, value), steered=True)
        print(
            f"| {column}={value} | {share:.1%} | {plain_rate:.1%}, {plain_speed:,.0f} | {steer_rate:.1%}, {steer_speed:,.0f} "
            f"| {steer_speed / plain_speed:.1f}x |"
        )


if __name__ == "__main__":
    main()
