"""What the quality and privacy report costs.

    python -m bench.bench_report [--csv ../shared/datasets/credit_data.csv] [--epochs 300]
                                 [--evaluate ../shared/datasets/diamonds.csv]

1. The fit-time report's share of a fit: one fit through a throwaway local
   server, timed from the job's own event log (training is from the
   "training" stage to the "report" stage; the report from there to "saving").
   Goal: at most 10% of a 300-epoch fit on credit_data.
2. `evaluate` on a large file against a shuffled copy of itself, end to end
   as a user runs it.  Goal: under 30 s for diamonds (54k rows) on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import PASSWORD, REPO, USER, local_config, make_server_dir

DATASETS = REPO.parent / "shared" / "datasets"


def _stamp(event: dict) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


def fit_share(csv: Path, epochs: int) -> dict:
    from ctgan_host import Client

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = make_server_dir(root)
        with Client.from_config(local_config(root, server)) as client:
            client.login(USER, PASSWORD)
            job = client.start_fit(csv, epochs=epochs)
            client.follow(job)
        events = [json.loads(line) for line in (server / "jobs" / USER / f"{job}.jsonl").read_text().splitlines()]
    stages = {e["stage"]: _stamp(e) for e in events if e.get("event") == "stage"}
    training = stages["report"] - stages["training"]
    reporting = stages["saving"] - stages["report"]
    return {"training_s": training, "report_s": reporting, "share": reporting / (training + reporting)}


def evaluate_time(csv: Path) -> float:
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        shuffled = Path(tmp) / "shuffled.csv"
        pd.read_csv(csv).sample(frac=1, random_state=0).to_csv(shuffled, index=False)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ctgan_host", "evaluate", str(csv), str(shuffled), "--json"],
            check=True,
            capture_output=True,
            cwd=tmp,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_report", description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DATASETS / "credit_data.csv")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--evaluate", type=Path, default=DATASETS / "diamonds.csv")
    args = parser.parse_args()
    share = fit_share(args.csv.resolve(), args.epochs)
    print(
        f"fit {args.csv.name}, {args.epochs} epochs: training {share['training_s']:.1f} s, "
        f"report {share['report_s']:.1f} s ({share['share']:.1%} of the fit)"
    )
    print(f"evaluate {args.evaluate.name} against a shuffled copy: {evaluate_time(args.evaluate.resolve()):.1f} s end to end")


if __name__ == "__main__":
    main()
