"""Preprocessing: the project's FastDataTransformer against ctgan's DataTransformer, fit + transform.

    python -m bench.bench_preprocess [CSV] [--sample 10000]

Times both on the same data in one run (default: all of diamonds, object
columns discrete), and for each continuous column compares the modes the
GMM keeps: their count, and each subsample mode's mean against the nearest
full-data mode, in units of that mode's standard deviation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def modes(info) -> list[tuple[float, float]]:
    import numpy as np

    gm = info.transform
    valid = gm.valid_component_indicator
    means = gm._bgm_transformer.means_.reshape(-1)[valid]
    stds = np.sqrt(gm._bgm_transformer.covariances_).reshape(-1)[valid]
    return sorted(zip(means.tolist(), stds.tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_preprocess", description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=str(REPO.parent / "shared" / "datasets" / "diamonds.csv"))
    parser.add_argument("--sample", type=int, default=None, help="GMM rows (default: preprocessing.GMM_SAMPLE)")
    args = parser.parse_args()
    import numpy as np
    import pandas as pd
    from ctgan.data_transformer import DataTransformer

    from ctgan_server import preprocessing

    if args.sample:
        preprocessing.GMM_SAMPLE = args.sample
    frame = pd.read_csv(args.csv).dropna()
    discrete = [c for c in frame.columns if frame[c].dtype == object]
    timings = {}
    fitted = {}
    for name, cls in (("upstream", DataTransformer), ("fast", preprocessing.FastDataTransformer)):
        np.random.seed(0)
        transformer = cls()
        start = time.perf_counter()
        transformer.fit(frame, discrete)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        matrix = transformer.transform(frame)
        timings[name] = (fit_s, time.perf_counter() - start, matrix.shape)
        fitted[name] = transformer
    (uf, ut, ushape), (ff, ft, fshape) = timings["upstream"], timings["fast"]
    print(f"{Path(args.csv).name}: {len(frame):,} rows, GMM sample {preprocessing.GMM_SAMPLE:,}")
    print(f"upstream: fit {uf:.1f} s + transform {ut:.1f} s = {uf + ut:.1f} s, matrix {ushape}")
    print(
        f"fast:     fit {ff:.1f} s + transform {ft:.1f} s = {ff + ft:.1f} s, matrix {fshape}  (ratio {(ff + ft) / (uf + ut):.2f})"
    )
    for full, fast in zip(fitted["upstream"]._column_transform_info_list, fitted["fast"]._column_transform_info_list):
        if full.column_type != "continuous":
            continue
        full_modes, fast_modes = modes(full), modes(fast)
        shifts = [min(abs(m - fm) / fs for fm, fs in full_modes) for m, _ in fast_modes]
        print(
            f"  {full.column_name}: modes full {len(full_modes)}, subsample {len(fast_modes)}; "
            f"largest mean shift {max(shifts):.2f} sd"
        )


if __name__ == "__main__":
    main()
