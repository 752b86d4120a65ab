"""Generation: ctgan's own `sample` against the toolkit's `generation.generate`, for quality and speed.

    python -m bench.bench_generation [CSV ...] [--epochs 30] [--seeds 2] [--rows 50000]

ctgan 0.12.1 samples in train mode, 500 rows per generator call, so
batch-norm normalises every batch by its own statistics.  The toolkit draws
larger batches in eval mode (batch-norm on the statistics learned in
training), with no autograd and a Gumbel-max draw in place of the
Gumbel-softmax.  The issue asks that the quality figure decide between eval
mode and ctgan's way, so both are scored here on the SAME fitted model:

- upstream: `model.sample(rows)`;
- toolkit: `generation.generate(model, rows)`.

Each model is fitted the way the toolkit fits (object columns discrete, the
fast preprocessing), once per seed; both sides then sample `--rows` rows from
it and are scored with sdmetrics' QualityReport against the original
(bench_fidelity's scoring).  Also printed: rows/s of each side's generation
alone (restore and CSV writing are the same for both and left out).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

from bench.bench_fidelity import DEFAULT_CSVS, metadata_for, quiet, score, seed_everything


def fitted(frame, epochs: int, seed: int):
    from ctgan import CTGAN

    from ctgan_server.conditioning import repair
    from ctgan_server.preprocessing import fast_preprocessing

    seed_everything(seed)
    model = CTGAN(epochs=epochs, verbose=False)
    with fast_preprocessing():
        model.fit(frame, [str(c) for c in frame.columns if frame[c].dtype == object])
    repair(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_generation", description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="*", type=Path, default=DEFAULT_CSVS)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--score-rows", type=int, default=60_000)
    args = parser.parse_args()
    quiet()
    import pandas as pd

    from ctgan_server import generation

    print(f"| dataset | side | quality (mean of {args.seeds}) | min..max | rows/s |")
    print("|---|---|---|---|---|")
    for path in args.csv:
        # NaN rows dropped: the bare model cannot take them; the toolkit's plan
        # would, but both sides here share one model.
        original = pd.read_csv(path).dropna().reset_index(drop=True)
        metadata = metadata_for(original)
        results: dict[str, list[tuple[float, float]]] = {"upstream sample": [], "toolkit generate": []}
        for seed in range(args.seeds):
            model = fitted(original, args.epochs, seed)
            for side, draw in (
                ("upstream sample", model.sample),
                ("toolkit generate", functools.partial(generation.generate, model)),
            ):
                seed_everything(seed + 100)
                start = time.perf_counter()
                synthetic = draw(args.rows)
                rate = args.rows / (time.perf_counter() - start)
                quality = score(original, synthetic, metadata, args.score_rows)["overall"]
                print(f"  {path.name} seed {seed} {side}: quality {quality:.4f}, {rate:,.0f} rows/s", file=sys.stderr, flush=True)
                results[side].append((quality, rate))
        for side, runs in results.items():
            qualities = [q for q, _ in runs]
            print(
                f"| {path.name} | {side} | {statistics.fmean(qualities):.4f} | {min(qualities):.4f}..{max(qualities):.4f} "
                f"| {statistics.fmean(r for _, r in runs):,.0f} |"
            )
        gap = statistics.fmean(q for q, _ in results["toolkit generate"]) - statistics.fmean(
            q for q, _ in results["upstream sample"]
        )
        print(f"| {path.name} | toolkit - upstream | {gap:+.4f} | | |")


if __name__ == "__main__":
    main()
