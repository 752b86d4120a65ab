"""Fit overhead: what a job imports before it has parsed the data, what the fit-time report and the stored model keep.

The import checks run the real job entry point (`python -m ctgan_server job USER ID`'s
``main``) in a fresh interpreter, so an import added at the top of any module
the job loads before parsing (``__main__``, ``jobs``, ``job_output``,
``fitting``, ``schema``, ``limits``, ...) shows up.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctgan_server import report
from ctgan_server.job_store import JobStore
from ctgan_server.sealed_upload import KEY_ENV
from ctgan_server.settings import load_settings
from ctgan_server.storage import UserStorage, iso_utc
from ctgan_server.wire import PROTOCOL_MAX, QUEUED
from tests.helpers import REPO, as_user, run_cli, seal_upload

# Needed only to train, sample and score: none may be loaded before the CSV is parsed.
HEAVY = ("torch", "ctgan", "rdt", "sdmetrics", "sklearn", "scipy")


def _queue_job(server: Path, user: str, csv: bytes, filename: str = "data.csv") -> tuple[str, bytes]:
    """What `fit` leaves for a job process: the staged upload, the request and a QUEUED log; returns the job and its key."""
    settings = load_settings(server)
    storage = UserStorage(settings.data_dir, user)
    token = uuid.uuid4().hex
    gz = gzip.compress(csv)
    key = seal_upload(storage.staged_path(token), gz)
    store = JobStore(settings.data_dir, user)
    store.ensure()
    job_id = store.new_id()
    request = {
        "token": token,
        "filename": filename,
        "sha256": hashlib.sha256(gz).hexdigest(),
        "epochs": 1,
        "overrides": {},
        "text_columns": [],
        "seed": 0,
        "holdout": 0.0,
    }
    store.request_path(job_id).write_text(json.dumps(request))
    now = time.time()
    store.append(
        job_id, {"event": "state", "state": QUEUED, "dataset": "data", "epochs": 1, "created": iso_utc(now), "created_at": now}
    )
    return job_id, key


# Runs the job's own entry point.  parse_csv is wrapped to note the heavy
# modules loaded when it starts and when it returns, then to stop the job
# there: what comes after parsing may import anything.
_PROBE = """
import json, os, sys
HEAVY = {heavy!r}
notes = os.fdopen(os.dup(1), "w")  # the job points fds 1 and 2 at /dev/null
loaded = lambda: sorted(m for m in HEAVY if m in sys.modules)
import ctgan_server.schema as schema
real_parse = schema.parse_csv

class Parsed(Exception):
    pass

def parse_csv(*args, **kwargs):
    before = loaded()
    frame = real_parse(*args, **kwargs)
    notes.write(json.dumps({{"before": before, "after": loaded(), "rows": len(frame)}}) + "\\n")
    notes.flush()
    raise Parsed()

schema.parse_csv = parse_csv
from ctgan_server.__main__ import main
code = main(["job", sys.argv[1], sys.argv[2]])
notes.write(json.dumps({{"exit": code}}) + "\\n")
"""


def test_a_job_imports_no_ml_library_before_its_csv_is_parsed(server_dir: Path):
    csv = b"age,city,income\n" + b"".join(f"{20 + i % 50},{'xyz'[i % 3]},{1000 + 7 * i}\n".encode() for i in range(200))
    job_id, key = _queue_job(server_dir, "alice", csv)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), "alice", job_id],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=server_dir,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "CTGAN_SERVER_DIR": str(server_dir), KEY_ENV: key.hex()},
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    parsed = next((line for line in lines if "rows" in line), None)
    assert parsed is not None, f"the job never parsed its CSV: {done.stdout} {done.stderr}"
    assert parsed["rows"] == 200
    assert parsed["before"] == [] and parsed["after"] == [], parsed
    # The stop after parsing is the probe's doing: the job records it as a failure and nothing else.
    assert lines[-1] == {"exit": 11}
    events = [json.loads(line) for line in (server_dir / "jobs" / "alice" / f"{job_id}.jsonl").read_text().splitlines()]
    assert [e.get("stage") for e in events if e["event"] == "stage"] == ["reading"]


def test_listing_in_serve_imports_no_ml_library(local_config: Path, server_dir: Path):
    """`hello`, `login`, `models`, `datasets` and `jobs` in a `serve` process: no pandas, numpy, torch, ctgan, sdmetrics."""
    probe = (
        "import io, sys, json\n"
        "from ctgan_server.server import Server\n"
        "from ctgan_server.settings import load_settings\n"
        "out = io.BytesIO()\n"
        "s = Server(load_settings(), out)\n"
        "for line in sys.stdin.buffer: s.handle(line)\n"
        "replies = [json.loads(l) for l in out.getvalue().splitlines()]\n"
        "print(json.dumps([[r.get('id') for r in replies if 'result' in r]]"
        f" + sorted(m for m in {HEAVY + ('pandas', 'numpy')!r} if m in sys.modules)))\n"
    )
    requests = [
        {"id": 1, "method": "hello", "params": {"protocol": PROTOCOL_MAX, "version": __import__("ctgan_server").__version__}},
        {"id": 2, "method": "login", "params": {"user": "alice", "password": "alice-secret-pw"}},
        {"id": 3, "method": "models", "params": {}},
        {"id": 4, "method": "datasets", "params": {}},
        {"id": 5, "method": "jobs", "params": {}},
    ]
    done = subprocess.run(
        [sys.executable, "-c", probe],
        input="\n".join(map(json.dumps, requests)),
        capture_output=True,
        text=True,
        cwd=server_dir,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[1, 2, 3, 4, 5]], done.stderr


def test_a_fit_reports_its_progress_and_stores_no_training_row_numbers(local_config: Path, server_dir: Path, tiny_csv: Path):
    opts, stdin = as_user("alice")
    fitted = run_cli(local_config, *opts, "fit", str(tiny_csv), "--epochs", "1", "--json", input=stdin)
    assert fitted.code == 0, fitted.err
    model_name = json.loads(fitted.out)["model"]
    log = next((server_dir / "jobs" / "alice").glob("*.jsonl"))
    events = [json.loads(line) for line in log.read_text().splitlines()]
    order = [
        e["event"] if e["event"] != "stage" else e["stage"] for e in events if e["event"] in ("stage", "plan", "plan_column")
    ]
    columns = len(pd.read_csv(tiny_csv).columns)
    assert order == ["reading", "planning"] + ["plan_column"] * columns + ["plan", "training", "report", "saving"], order
    parts = [e["part"] for e in events if e["event"] == "report_part"]
    assert parts == ["sampling", "quality", "exact matches", "distances", "baseline", "plots"], parts
    assert next(e for e in events if e.get("stage") == "planning")["rows"] == 60

    from ctgan_server.sampling import load_model

    settings = load_settings(server_dir)
    storage = UserStorage(settings.data_dir, "alice")
    model, _ = load_model(storage, model_name, storage.read_model_meta(model_name), settings)
    # The training rows' numbers per category would spell out the discrete columns row by row.
    assert model._data_sampler._rid_by_cat_cols == []
    assert len(model.sample(50)) == 50


# -- the report's work at scale --------------------------------------------------


def _mixed(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n).round(1)),
            "k": rng.integers(0, 4, n),
            "word": pd.Series(rng.choice([f"w{i}" for i in range(150)], n)).mask(rng.random(n) < 0.05),
            "flag": rng.random(n) < 0.5,
        }
    )


def test_exact_match_rate_is_whole_rows_compared_as_text():
    train = _mixed(3000, 0)
    synthetic = pd.concat([train.sample(40, random_state=1), _mixed(160, 2)], ignore_index=True)
    k = synthetic["k"].to_numpy().astype(object)
    k[10:] = k[10:].astype(float)  # 1.0 is not "1": written as text, dtypes count, as before
    synthetic["k"] = k
    whole = set(map(tuple, train.astype(str).to_numpy()))
    expected = float(np.mean([tuple(row) in whole for row in synthetic[train.columns].astype(str).to_numpy()]))
    assert expected > 0
    assert report._exact_match_rate(train, synthetic) == expected


def test_encoded_distances_are_one_per_category_mismatch():
    real = _mixed(400, 0)
    encode = report._Encoder(real)
    rows = encode(real)
    assert rows.shape[1] == encode.width < 3 * 1 + 3 * 1 + (151 + 1) + (2 + 1) + 2  # fewer coordinates than one-hot
    unseen = real.iloc[:5].copy()
    unseen["word"] = "never seen"
    d = np.abs(encode(unseen) - encode(real.iloc[:5])).sum(axis=1)
    np.testing.assert_allclose(d, np.where(real["word"].iloc[:5].isna(), 1.0, 1.0))
    words = real["word"].dropna().unique()[:20]
    a, b = real.iloc[:20].copy(), real.iloc[:20].copy()
    a["word"], b["word"] = words, np.roll(words, 1)
    np.testing.assert_allclose(np.abs(encode(a) - encode(b)).sum(axis=1), 1.0)


def test_search_sizes_are_exact_until_the_work_bound_then_shrink_queries_first():
    assert report.search_sizes(300_000, 10_000, 40) == (10_000, 300_000)  # k-d tree: every row
    assert report.search_sizes(2_000_000, 10_000, 40) == (10_000, report.KD_TREE_MAX_CANDIDATES)
    assert report.search_sizes(4_454, 4_454, 120) == (4_454, 4_454)  # credit_data-sized: exact
    queries, candidates = report.search_sizes(1_000_000, 10_000, 179)
    assert queries == report.MIN_QUERIES and candidates < 1_000_000
    assert queries * candidates * 179 <= report.BRUTE_FORCE_WORK


def test_a_bounded_search_says_so_and_still_finds_copies(monkeypatch):
    train = _mixed(4000, 0)
    fresh = _mixed(400, 3)
    fresh["x"] = fresh["x"].fillna(0) + 1000  # no fresh row equals a training row
    synthetic = pd.concat([train.iloc[:100], fresh], ignore_index=True)
    exact, exact_notes = report.privacy(train, synthetic)
    assert not any("searched among" in n for n in exact_notes)
    monkeypatch.setattr(report, "KD_TREE_MAX_DIMENSIONS", 0)
    monkeypatch.setattr(report, "MIN_QUERIES", 200)
    monkeypatch.setattr(report, "BRUTE_FORCE_WORK", 200 * 1000 * report._Encoder(train).width)
    bounded, notes = report.privacy(train, synthetic)
    assert bounded["rows_compared"] == 200
    assert any("searched among 1,000 of the 4,000" in n for n in notes), notes
    assert bounded["exact_match_rate"] == exact["exact_match_rate"] == pytest.approx(100 / 500)
    assert bounded["dcr_median"] >= exact["dcr_median"] - 0.02  # fewer candidates: never much closer


def test_the_report_view_from_the_training_frame_is_the_one_from_the_original():
    from ctgan_server.fitting import report_view
    from ctgan_server.schema import build_plan
    from ctgan_server.transform import training_frame

    rng = np.random.default_rng(1)
    n = 600
    frame = pd.DataFrame(
        {
            "when": pd.Series(
                (pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 9e6, n), unit="s")).strftime("%Y-%m-%d %H:%M")
            ).mask(rng.random(n) < 0.1),
            "note": pd.Series([f"note {i}" for i in rng.integers(0, 300, n)]).mask(rng.random(n) < 0.2),
            "v": rng.normal(size=n),
        }
    )
    plan = build_plan(frame)
    assert [c["kind"] for c in plan["columns"]] == ["datetime", "high-cardinality text", "continuous"]
    train, _ = training_frame(frame, plan, 0)
    view = report_view(plan)
    pd.testing.assert_frame_equal(view(frame, encoded=train), view(frame))


def test_long_epochs_report_their_steps_and_the_model_keeps_no_counter(monkeypatch):
    import pickle

    import torch
    from ctgan import CTGAN

    from ctgan_server import fitting

    monkeypatch.setattr(fitting, "STEP_EVENT_SECONDS", 0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the test server's config: two threads crawl on a busy 2-core machine
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"v": rng.normal(size=400), "c": rng.choice(["a", "b"], 400)})
    model = CTGAN(epochs=2, batch_size=50, verbose=False)
    events: list[dict] = []
    try:
        with fitting.epoch_events(model, 2, events.append):
            model.fit(frame, ["c"])
    finally:
        torch.set_num_threads(threads)
    steps = [e for e in events if e["event"] == "step"]
    assert {e["steps"] for e in steps} == {8} and {e["epoch"] for e in steps} == {1, 2}
    assert max(e["step"] for e in steps if e["epoch"] == 1) == 8
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    assert "sample_condvec" not in vars(model._data_sampler) and "sample_data" not in vars(model._data_sampler)
    pickle.dumps(model)  # a stored model carries no wrapper of ours


def test_training_rows_are_drawn_uniformly_within_the_conditioned_category():
    from ctgan.data_sampler import DataSampler
    from ctgan.data_transformer import SpanInfo

    from ctgan_server.fitting import _RowDraw

    # Column 0: 3 categories; column 1: 2 categories.  Row i's categories are
    # i % 3 and (i // 3) % 2, and its data row is just [i] so draws name their rows.
    n = 600
    onehot = np.zeros((n, 5), dtype="float32")
    onehot[np.arange(n), np.arange(n) % 3] = 1
    onehot[np.arange(n), 3 + (np.arange(n) // 3) % 2] = 1
    sampler = DataSampler(onehot, [[SpanInfo(3, "softmax")], [SpanInfo(2, "softmax")]], log_frequency=True)
    data = np.arange(n).reshape(-1, 1)
    draw = _RowDraw(sampler)
    assert sampler.sample_data == draw.draw  # installed on this one sampler
    np.random.seed(3)
    col = np.array([0] * 6000 + [1] * 6000)
    opt = np.array([2] * 6000 + [1] * 6000)
    rows = sampler.sample_data(data, len(col), col, opt)[:, 0]
    assert np.all(rows[:6000] % 3 == 2) and np.all((rows[6000:] // 3) % 2 == 1)
    # Uniform within the category: all 200 / 300 candidate rows come up, none far from its share.
    for picked, candidates in ((rows[:6000], 200), (rows[6000:], 300)):
        counts = np.bincount(picked, minlength=n)[np.unique(picked)]
        assert len(counts) == candidates and counts.min() > 0 and counts.max() < 4 * 6000 / candidates
    np.random.seed(3)
    assert np.array_equal(sampler.sample_data(data, len(col), col, opt)[:, 0], rows)  # numpy's seed governs it
    np.random.seed(3)
    upstream = DataSampler.sample_data(sampler, data, len(col), col, opt)[:, 0]
    assert np.array_equal(upstream, rows)  # the very rows upstream's per-row loop draws: a seeded fit is unchanged
    draw.remove()
    assert "sample_data" not in vars(sampler)
