"""Fit time per epoch, and sampling speed and server memory as the row count grows.

    python -m bench.bench_sample ../shared/datasets/credit_data.csv [--epochs 10] [--rows 20000 200000]

Sampling streams chunks into gzip, so the server's peak memory should stay
flat while the row count grows tenfold.  Peak RSS is the server process's
(ru_maxrss of the waited-for child), measured in a fresh process per run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import PASSWORD, USER, local_config, make_server_dir


def measure_sample(config: Path, model: str, rows: int, out: Path) -> tuple[float, int]:
    probe = (
        "import os, time, resource\n"
        "from ctgan_host.cli import main\n"
        f"os.environ['CTGAN_PASSWORD'] = {PASSWORD!r}\n"
        "start = time.perf_counter()\n"
        f"rc = main(['--config', {str(config)!r}, '--user', {USER!r}, 'sample', {model!r}, "
        f"'--rows', '{rows}', '--out', {str(out)!r}])\n"
        "print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    seconds, rss_kb, rc = result.stdout.strip().splitlines()[-1].split()  # the CLI prints above it
    assert rc == "0"
    return float(seconds), int(rss_kb)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sample", description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    args = parser.parse_args()
    import os

    os.environ["CTGAN_PASSWORD"] = PASSWORD
    from ctgan_host import Client

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = local_config(root, make_server_dir(root))
        with Client.from_config(config) as client:
            client.login(USER, PASSWORD)
            epochs_at: list[float] = []
            start = time.perf_counter()
            model = client.fit(
                args.csv,
                epochs=args.epochs,
                on_event=lambda e: e.get("event") == "epoch" and epochs_at.append(time.perf_counter()),
            )
            total = time.perf_counter() - start
        per_epoch = (epochs_at[-1] - epochs_at[0]) / max(1, len(epochs_at) - 1)
        print(f"fit {args.csv.name}, {args.epochs} epochs: {total:.1f} s end to end, {per_epoch:.2f} s per epoch after the first")
        for rows in args.rows:
            seconds, rss_kb = measure_sample(config, model, rows, root / "out")
            print(
                f"sample {rows:>9,} rows: {seconds:6.1f} s, {rows / seconds:,.0f} rows/s, server peak RSS {rss_kb / 1024:,.0f} MB"
            )
        print(json.dumps({"model": model}))


if __name__ == "__main__":
    main()
