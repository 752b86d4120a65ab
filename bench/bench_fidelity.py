"""Synthetic-data fidelity: the toolkit against plain CTGAN fitted the way the original tool did.

    python -m bench.bench_fidelity [CSV ...] [--epochs 40] [--seeds 2] [--rows N] [--score-rows 60000] [--json OUT]
                                   [--protect none|rare|strict ...]

The toolkit adds a column plan around CTGAN (small-integer columns discrete,
missing values learned instead of dropped, values rounded and kept inside
the original's range).  That plan is only worth having if it does not cost
fidelity, so the promise is: at the same epochs, the toolkit's synthetic data
scores at least as well as plain ``ctgan.CTGAN`` fitted the way the original
tool did (object columns discrete, rows with any NaN dropped).

Both sides are scored against the ORIGINAL data, NaN rows included, with
sdmetrics' single-table QualityReport; metadata comes from the original's
dtypes (numbers numerical, everything else categorical).  Note that
sdmetrics 0.32's Column Pair Trends averages only the pairs that are strongly
related in the real data (|correlation| > 0.5, Cramér's V > 0.3); the output
says how many pairs that is.  Scoring all 54k diamonds rows takes under a
second, so tables are subsampled only beyond --score-rows.  The toolkit side
goes through the real Client and a throwaway local server, exactly as a user
would.  One GAN run is noisy, so each side is repeated --seeds times with
seeds 0..K-1: the baseline through torch/numpy/random, the toolkit through the
fit and sample ``seed`` of the Client.  The seeds make each side repeatable,
not the two sides comparable run by run; compare the means and ranges.

``--protect`` picks the toolkit's value protection (default: rare, the
fit's own default); given more than once, the toolkit side runs once per
level against the one baseline, and each level is also compared with
``none``, when that is one of them: what protection costs in quality.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from bench.common import PASSWORD, REPO, USER, local_config, make_server_dir
from ctgan_server.wire import PROTECT_LEVELS

DATASETS = REPO.parent / "shared" / "datasets"
DEFAULT_CSVS = [DATASETS / "credit_data.csv", DATASETS / "diamonds.csv"]
# 40 epochs x 2 repeats x 2 sides keeps the default run near 12 minutes on two
# CPU cores: diamonds (54k rows) costs about 3 s per epoch plus ~20 s of
# transformer fitting per fit, credit_data about 0.2 s per epoch.
DEFAULT_EPOCHS = 40
DEFAULT_SEEDS = 2
PROPERTIES = ("Column Shapes", "Column Pair Trends")
SCORE_SEED = 0  # the same original subsample for every scored table
# Scoring is cheap (0.3 s for 54k x 10) and subsampling costs accuracy: two
# 5,000-row draws of the very same table score only 0.95, so by default the
# two default datasets are scored whole.
DEFAULT_SCORE_ROWS = 60_000


def quiet() -> None:
    # rdt, sdmetrics and sklearn warn once per column and per fit; none of it
    # changes a number here and it would bury the table.
    warnings.filterwarnings("ignore")
    for name in ("rdt", "sdmetrics", "ctgan", "sklearn"):
        logging.getLogger(name).setLevel(logging.ERROR)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def metadata_for(original: Any) -> dict[str, Any]:
    """sdmetrics' single-table metadata from the original's pandas dtypes."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    def sdtype(column: Any) -> str:
        numeric = is_numeric_dtype(column) and not is_bool_dtype(column)
        return "numerical" if numeric else "categorical"

    return {"columns": {str(name): {"sdtype": sdtype(original[name])} for name in original.columns}}


def subsample(frame: Any, rows: int) -> Any:
    # Only for tables beyond --score-rows; a fixed random_state keeps the real
    # side identical across runs and sides.
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=rows, random_state=SCORE_SEED).reset_index(drop=True)


def score(original: Any, synthetic: Any, metadata: dict[str, Any], score_rows: int) -> dict[str, Any]:
    """Overall and property scores, plus per-column figures for finding the cause of a gap."""
    import numpy as np
    from sdmetrics.reports.single_table import QualityReport

    report = QualityReport()
    report.generate(
        subsample(original, score_rows), subsample(synthetic[list(original.columns)], score_rows), metadata, verbose=False
    )
    properties = report.get_properties().set_index("Property")["Score"]
    shapes = report.get_details("Column Shapes").set_index("Column")["Score"]
    pairs = report.get_details("Column Pair Trends")
    # A column's pair score: the mean over the scored pairs it is part of
    # (pairs too weakly related in the real data have no score, see above).
    pair_means = {}
    for column in original.columns:
        involved = pairs.loc[(pairs["Column 1"] == column) | (pairs["Column 2"] == column), "Score"]
        pair_means[str(column)] = float(np.nanmean(involved)) if involved.notna().any() else None
    return {
        "overall": float(report.get_score()),
        "properties": {name: float(properties[name]) for name in PROPERTIES},
        "column_shapes": {str(col): float(value) for col, value in shapes.items()},
        "column_pair_means": pair_means,
        "pairs_scored": int(pairs["Score"].notna().sum()),
        "pairs_total": len(pairs),
    }


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def baseline_sample(path: Path, epochs: int, rows: int, seed: int) -> Any:
    """The original tool's recipe: drop NaN rows, object columns discrete, CTGAN defaults."""
    import pandas as pd
    from ctgan import CTGAN

    seed_everything(seed)
    frame = pd.read_csv(path).dropna()
    discrete = [str(c) for c in frame.columns if frame[c].dtype == object]
    model = CTGAN(epochs=epochs, verbose=False)
    model.fit(frame, discrete)
    return model.sample(rows)


def toolkit_sample(client: Any, path: Path, epochs: int, rows: int, seed: int, protect: str = "rare") -> Any:
    """The same CSV file through the real upload, fit and sample calls, with the default column plan."""
    model = client.fit(path, epochs=epochs, seed=seed, protect=protect)
    return client.sample(model, rows, seed=seed)


def timed(make: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = make()
    return result, time.perf_counter() - start


def run_side(
    label: str, make: Callable[[int], Any], seeds: int, original: Any, metadata: dict[str, Any], score_rows: int
) -> list[dict[str, Any]]:
    runs = []
    for seed in range(seeds):
        synthetic, seconds = timed(lambda seed=seed: make(seed))
        scores = score(original, synthetic, metadata, score_rows)
        progress(f"  {label} run {seed + 1}/{seeds}: fit+sample {seconds:.1f} s, score {scores['overall']:.4f}")
        runs.append({"seed": seed, "seconds": round(seconds, 1), **scores})
    return runs


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    summary = {"Overall": spread([run["overall"] for run in runs])}
    for name in PROPERTIES:
        summary[name] = spread([run["properties"][name] for run in runs])
    return summary


def column_means(runs: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    """Average one per-column figure over the repeats (None where sdmetrics gave none)."""
    columns = runs[0][key].keys()
    means = {}
    for column in columns:
        values = [run[key].get(column) for run in runs]
        values = [v for v in values if v is not None and v == v]  # v == v drops NaN
        means[column] = statistics.fmean(values) if values else None
    return means


def measure(path: Path, client: Any, args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    original = pd.read_csv(path)
    rows = args.rows or len(original)
    metadata = metadata_for(original)
    progress(
        f"{path.name}: {len(original):,} rows ({len(original.dropna()):,} without NaN), "
        f"{args.epochs} epochs, {args.seeds} run(s) per side"
    )
    makers: dict[str, Callable[[int], Any]] = {"baseline": lambda seed: baseline_sample(path, args.epochs, rows, seed)}
    for level in args.protect:
        makers[side_name(level, args.protect)] = lambda seed, level=level: toolkit_sample(
            client, path, args.epochs, rows, seed, level
        )
    sides = {}
    for name, make in makers.items():
        runs = run_side(name, make, args.seeds, original, metadata, args.score_rows)
        sides[name] = {"runs": runs, "summary": summarise(runs)}
    return {
        "dataset": path.name,
        "rows": rows,
        "original_rows": len(original),
        "epochs": args.epochs,
        "sdtypes": {col: spec["sdtype"] for col, spec in metadata["columns"].items()},
        "sides": sides,
    }


def side_name(level: str, levels: list[str]) -> str:
    """ "toolkit" with one protection level, as the table has always said; "toolkit rare" etc. with several."""
    return "toolkit" if len(levels) == 1 else f"toolkit {level}"


def comparisons(sides: list[str]) -> list[tuple[str, str]]:
    """(side, reference) pairs the tables show a difference for: each toolkit side against the baseline,
    and each protected level against "toolkit none" when both ran."""
    pairs = [(side, "baseline") for side in sides if side != "baseline"]
    if "toolkit none" in sides:
        pairs += [(side, "toolkit none") for side in sides if side.startswith("toolkit ") and side != "toolkit none"]
    return pairs


def cell(stats: dict[str, float], seeds: int) -> str:
    if seeds == 1:
        return f"{stats['mean']:.4f}"
    return f"{stats['mean']:.4f} ({stats['min']:.4f}–{stats['max']:.4f})"


def score_table(results: list[dict[str, Any]], seeds: int) -> str:
    sides = list(results[0]["sides"])
    pairs = comparisons(sides)
    lines = [
        "| dataset | rows | epochs | score | " + " | ".join(sides) + " | " + " | ".join(f"{a} - {b}" for a, b in pairs) + " |",
        "| --- | ---: | ---: | --- |" + " --- |" * len(sides) + " ---: |" * len(pairs),
    ]
    for result in results:
        for name in ("Overall", *PROPERTIES):
            stats = {side: result["sides"][side]["summary"][name] for side in sides}
            cells = [cell(stats[side], seeds) for side in sides]
            diffs = [f"{stats[a]['mean'] - stats[b]['mean']:+.4f}" for a, b in pairs]
            head = [result["dataset"], f"{result['rows']:,}", str(result["epochs"]), name]
            lines.append("| " + " | ".join(head + cells + diffs) + " |")
    return "\n".join(lines)


def column_table(result: dict[str, Any]) -> str:
    """Per-column means, so a gap in a property score can be traced to the columns behind it."""

    def fmt(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    def diff(tool: float | None, base: float | None) -> str:
        return "–" if tool is None or base is None else f"{tool - base:+.3f}"

    sides = list(result["sides"])
    pairs = comparisons(sides)
    shapes = {side: column_means(result["sides"][side]["runs"], "column_shapes") for side in sides}
    trends = {side: column_means(result["sides"][side]["runs"], "column_pair_means") for side in sides}
    headers = [f"shape {side}" for side in sides] + [f"shape {a} - {b}" for a, b in pairs]
    headers += [f"pair trend {side}" for side in sides] + [f"pair trend {a} - {b}" for a, b in pairs]
    lines = [
        f"{result['dataset']}, per column (mean over runs; "
        "pair trend = mean over the scored pairs the column is in, – where none):",
        "",
        "| column | sdtype | " + " | ".join(headers) + " |",
        "| --- | --- |" + " ---: |" * len(headers),
    ]
    for column, sdtype in result["sdtypes"].items():
        cells = []
        for means in (shapes, trends):
            cells += [fmt(means[side].get(column)) for side in sides]
            cells += [diff(means[a].get(column), means[b].get(column)) for a, b in pairs]
        lines.append(f"| {column} | {sdtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scoring_note(results: list[dict[str, Any]], score_rows: int) -> str:
    sampled = [r["dataset"] for r in results if max(r["original_rows"], r["rows"]) > score_rows]
    rows = (
        f"{score_rows:,}-row subsamples (random_state={SCORE_SEED}) for {', '.join(sampled)}, all rows otherwise"
        if sampled
        else "all rows"
    )
    pairs = ", ".join(
        f"{r['dataset']} {r['sides']['baseline']['runs'][0]['pairs_scored']} of "
        f"{r['sides']['baseline']['runs'][0]['pairs_total']}"
        for r in results
    )
    return (
        "sdmetrics QualityReport (single_table) of each synthetic table against the original "
        f"(NaN rows included), scored on {rows}. Column Pair Trends counts only pairs strongly related "
        f"in the real data (sdmetrics defaults |r| > 0.5, Cramér's V > 0.3): {pairs} pairs."
    )


def timing_note(results: list[dict[str, Any]]) -> str:
    def mean_seconds(side: dict[str, Any]) -> float:
        return statistics.fmean(run["seconds"] for run in side["runs"])

    return "fit + sample, mean seconds per run: " + "; ".join(
        f"{r['dataset']} " + ", ".join(f"{name} {mean_seconds(side):.0f} s" for name, side in r["sides"].items()) for r in results
    )


def report(results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    seeds_note = (
        f"{args.seeds} runs per side, cells are mean (min–max) over seeds 0..{args.seeds - 1}"
        if args.seeds > 1
        else "1 run per side (one GAN run is noisy: use --seeds 2 or more before drawing conclusions)"
    )
    parts = [
        f"`{command}`",
        "",
        scoring_note(results, args.score_rows),
        f"Differences are of the means; {seeds_note}; toolkit value protection: {', '.join(args.protect)}.",
        "",
        score_table(results, args.seeds),
        "",
        timing_note(results),
    ]
    for result in results:
        parts += ["", column_table(result)]
    return "\n".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fidelity", description=__doc__.splitlines()[0])
    parser.add_argument(
        "csv", type=Path, nargs="*", default=DEFAULT_CSVS, help="CSV files (default: credit_data.csv and diamonds.csv)"
    )
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs for both sides")
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows per run (default: the original's row count)")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="runs per side")
    parser.add_argument(
        "--score-rows", type=int, default=DEFAULT_SCORE_ROWS, help="subsample real and synthetic to this many rows for scoring"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the full results here")
    parser.add_argument(
        "--protect",
        action="append",
        choices=PROTECT_LEVELS,
        help="the toolkit's value protection (default: rare); repeat to compare levels, e.g. --protect none --protect rare",
    )
    args = parser.parse_args(argv)
    args.protect = list(dict.fromkeys(args.protect or ["rare"]))
    if min(args.epochs, args.seeds, args.score_rows, args.rows or 1) < 1:
        parser.error("--epochs, --seeds, --rows and --score-rows must be at least 1")
    missing = [str(path) for path in args.csv if not path.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    command = shlex.join(["python", "-m", "bench.bench_fidelity", *(sys.argv[1:] if argv is None else argv)])
    from ctgan_host import Client

    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = local_config(root, make_server_dir(root))
        # One server session for every toolkit fit: its start-up is not what is measured.
        with Client.from_config(config) as client:
            client.login(USER, PASSWORD)
            for path in args.csv:
                results.append(measure(path.resolve(), client, args))
    total = time.perf_counter() - started
    progress(f"done in {total / 60:.1f} min")
    print(report(results, args, command))
    print(f"\nwall time {total / 60:.1f} min")
    if args.json:
        payload = {
            "command": command,
            "epochs": args.epochs,
            "seeds": args.seeds,
            "score_rows": args.score_rows,
            "seconds": round(total, 1),
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
