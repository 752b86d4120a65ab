"""Samples over [service] sample_job_rows run as jobs: followed, cancelled, and outliving their client.

A real server checkout with the local executor, through the CLI; the
threshold is lowered so that small samples of a tiny model take the job path.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ctgan_server.storage import UserStorage
from tests.helpers import REPO, Cli, as_user, make_local_setup, wait_until


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One server checkout for the module (each test's jobs are told apart by id), and its client config."""
    server, config = make_local_setup(tmp_path_factory.mktemp("sample_jobs"))
    with open(server / "config.toml", "a") as fh:
        fh.write("sample_job_rows = 100\n")
    return server, config


@pytest.fixture(scope="module")
def model(setup: tuple[Path, Path]) -> str:
    csv = setup[1].parent / "grades.csv"
    csv.write_text("age,grade\n" + "".join(f"{20 + i % 40},{'ABC'[i % 3]}\n" for i in range(60)))
    result = Cli(setup[1]).fit(csv, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)["model"]


@pytest.fixture
def cli(setup: tuple[Path, Path]) -> Cli:
    return Cli(setup[1])


def _sample_jobs(cli: Cli, since: set[str] = frozenset()) -> list[dict]:
    """The sample jobs, less those in ``since`` (ids an earlier test left)."""
    result = cli("jobs", "--json")
    assert result.code == 0, result.err
    return [job for job in json.loads(result.out) if job["kind"] == "sample" and job["id"] not in since]


def _ids(cli: Cli) -> set[str]:
    return {job["id"] for job in _sample_jobs(cli)}


def _background_sample(local_config: Path, model: str, rows: int) -> subprocess.Popen:
    opts, password = as_user("alice")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctgan_host", "--config", str(local_config), *opts, "sample", model, "--rows", str(rows)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=local_config.parent,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(local_config.parent / "home")},
    )
    proc.stdin.write(password)
    proc.stdin.close()
    return proc


def test_a_sample_over_the_threshold_runs_as_a_job_and_writes_the_csv(cli: Cli, model: str, setup: tuple[Path, Path]):
    before = _ids(cli)
    result = cli("sample", model, "--rows", "400")
    assert result.code == 0, result.err
    [job] = _sample_jobs(cli, before)
    assert job["state"] == "DONE" and job["model"] == model and job["rows"] == 400 and job["sampled"] == 400, job
    assert f"Sampling as job {job['id']}" in result.err
    written = setup[1].parent / "synthetic" / job["output"].removesuffix(".gz")
    assert len(written.read_text().splitlines()) == 401
    small = cli("sample", model, "--rows", "100")  # at the threshold: inline, no job
    assert small.code == 0, small.err
    assert len(_sample_jobs(cli, before)) == 1


def test_a_sample_job_outlives_its_client_and_its_dataset_can_be_downloaded(cli: Cli, model: str, setup: tuple[Path, Path]):
    before = _ids(cli)
    proc = _background_sample(setup[1], model, 300_000)
    wait_until(lambda: _sample_jobs(cli, before))
    proc.send_signal(signal.SIGKILL)  # the connection drops mid-job
    proc.wait(timeout=10)
    job = wait_until(lambda: [j for j in _sample_jobs(cli, before) if j["state"] in ("DONE", "FAILED", "CANCELED")])[0]
    assert job["state"] == "DONE", job
    result = cli("download", job["output"])
    assert result.code == 0, result.err
    with open(setup[1].parent / "synthetic" / job["output"].removesuffix(".gz")) as fh:
        assert sum(1 for _ in fh) == 300_001


def test_cancel_stops_a_sample_job_and_keeps_no_partial_dataset(cli: Cli, model: str, setup: tuple[Path, Path]):
    before, stored = _ids(cli), sorted(UserStorage(setup[0], "alice").synthetic_dir.iterdir())
    proc = _background_sample(setup[1], model, 20_000_000)
    job = wait_until(lambda: [j for j in _sample_jobs(cli, before) if (j.get("sampled") or 0) > 0])[0]
    result = cli("jobs", "cancel", job["id"])
    assert result.code == 0, result.err
    proc.wait(timeout=30)
    err = proc.stderr.read()
    assert proc.returncode == 12, err  # the sample command ends as its job did: canceled
    assert err.strip().splitlines()[-1].startswith("Error:"), err
    assert _sample_jobs(cli, before)[0]["state"] == "CANCELED"
    assert sorted(UserStorage(setup[0], "alice").synthetic_dir.iterdir()) == stored  # no partial file, hidden or not
