"""Slurm, real: the one-node cluster `.ci/slurm-up` starts, then fits under `executor = "slurm"` through the CLI.

One file, so that nothing else submits to the cluster while these run: the
tests that need the whole node (and the jobs here that take part of it)
would otherwise wait on, or race, each other when the suite runs in parallel.

The cluster's own tests come first: it runs batch jobs, reports how they
ended, and queues a job asking for every CPU behind one that holds them.

Then the executor.  One job runs over a 1-minute time limit for most of
that part: it holds one of the node's CPUs, so the fit asking for all of
them waits PENDING behind it, and the other tests run beside it while its
minute passes (slurmctld looks at time limits only every 30 s or so; the
last test waits for its TIMEOUT).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctgan_server.storage import UserStorage
from tests import slurm
from tests.helpers import Cli, make_local_setup

LONG = "10000"  # epochs: a fit that runs until it is stopped


@pytest.fixture(scope="module", autouse=True)
def _slurm_here() -> None:
    slurm.require_slurm()


# -- the cluster itself ------------------------------------------------------------


def test_batch_jobs_end_and_scontrol_still_reports_how(tmp_path: Path):
    good = slurm.sbatch("--output", str(tmp_path / "good.out"), "--time=1", wrap="echo ran on $SLURM_JOB_NODELIST")
    bad = slurm.sbatch("--output", str(tmp_path / "bad.out"), "--time=1", wrap="echo failing >&2; exit 3")
    try:
        done = slurm.wait_slurm_state(good, "COMPLETED", timeout=60)
        failed = slurm.wait_slurm_state(bad, "FAILED", timeout=60)
    finally:
        slurm.scancel(good, bad)
    assert done["ExitCode"] == "0:0"
    assert (tmp_path / "good.out").read_text().strip() == f"ran on {done['NodeList']}"
    assert failed["ExitCode"] == "3:0"
    assert (tmp_path / "bad.out").read_text().strip() == "failing"
    # No --mem: the job gets DefMemPerCPU, not the whole node's memory (which would block every other job).
    assert _megabytes(done["MinMemoryCPU"]) * int(done["NumCPUs"]) < int(slurm.scontrol_node(done["NodeList"])["RealMemory"])


def _megabytes(size: str) -> int:
    """scontrol's `2G`, `1500M` as MB."""
    return int(float(size[:-1]) * {"M": 1, "G": 1024, "T": 1024 * 1024}[size[-1]])


def test_node_has_this_machines_cpus_and_a_full_node_job_queues_the_next():
    cpus = slurm.node_cpus()
    assert cpus == len(os.sched_getaffinity(0))
    assert not slurm.queue(), "another job holds the node; this test needs all of it"
    first = slurm.sbatch(f"--cpus-per-task={cpus}", "--output=/dev/null", "--time=5", wrap="sleep 300")
    second = slurm.sbatch(f"--cpus-per-task={cpus}", "--output=/dev/null", "--time=5", wrap="sleep 300")
    try:
        assert slurm.wait_slurm_state(first, "RUNNING", timeout=60)["NumCPUs"] == str(cpus)
        # The scheduler gives a waiting job its reason on its next pass.
        deadline = time.monotonic() + 30
        while (waiting := slurm.scontrol_job(second))["Reason"] != "Resources" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (waiting["JobState"], waiting["Reason"]) == ("PENDING", "Resources")
        slurm.scancel(first)
        slurm.wait_slurm_state(second, "RUNNING", timeout=60)
    finally:
        slurm.scancel(first, second)
    assert slurm.wait_slurm_state(first, "CANCELLED", timeout=30)["JobState"] == "CANCELLED"
    assert slurm.wait_slurm_state(second, "CANCELLED", timeout=30)["JobState"] == "CANCELLED"


# -- fits under executor = "slurm" -------------------------------------------------


class SlurmServer:
    """One server checkout with executor = "slurm"; ``options`` rewrites [service.slurm] for the next submission."""

    def __init__(self, root: Path):
        self.dir, config = make_local_setup(root)
        self.base = (self.dir / "config.toml").read_text() + 'executor = "slurm"\n'
        self.cli = Cli(config)
        self.csv = root / "loans.csv"
        rng = np.random.default_rng(5)
        n = 300
        frame = pd.DataFrame({"amount": rng.normal(9000, 2500, n).round(2), "grade": rng.choice(list("ABCD"), n)})
        frame.to_csv(self.csv, index=False)
        self.options()

    def options(self, **slurm_options: object) -> None:
        lines = [f"{key} = {json.dumps(value)}" for key, value in slurm_options.items()]
        (self.dir / "config.toml").write_text(self.base + "\n[service.slurm]\n" + "\n".join(lines) + "\n")

    def detach(self, epochs: str = LONG) -> dict:
        result = self.cli.fit(self.csv, "--detach", "--json", epochs=int(epochs))
        assert result.code == 0, result.err
        return self.job(json.loads(result.out)["job"])

    def jobs(self) -> dict[str, dict]:
        result = self.cli("jobs", "--json")
        assert result.code == 0, result.err
        return {job["id"]: job for job in json.loads(result.out)}

    def job(self, job_id: str) -> dict:
        return self.jobs()[job_id]

    def wait(self, job_id: str, states: set[str], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in states or time.monotonic() > deadline:
                return job
            time.sleep(0.5)

    def staged(self) -> list[Path]:
        return sorted(UserStorage(self.dir, "alice").staging_dir.iterdir())

    def models(self) -> list[str]:
        return sorted(p.name for p in UserStorage(self.dir, "alice").models_dir.iterdir())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> SlurmServer:
    return SlurmServer(tmp_path_factory.mktemp("slurm"))


@pytest.fixture(scope="module")
def timing_out(server: SlurmServer) -> dict:
    """A long fit on one CPU with a 1-minute time limit, RUNNING when a test gets it."""
    assert not slurm.queue(), f"the test cluster is busy: {slurm.queue()}"
    server.options(cpus_per_task=1, time_limit="00:01:00")
    job = server.detach()
    assert job["slurm_id"], job
    slurm.wait_slurm_state(job["slurm_id"], "RUNNING", timeout=60)
    return job


def test_a_fit_asking_for_every_cpu_waits_queued_with_its_upload_encrypted_and_cancel_leaves_nothing(
    server: SlurmServer, timing_out: dict
):
    server.options(cpus_per_task=slurm.node_cpus())
    waiting = server.detach()
    record = slurm.wait_slurm_state(waiting["slurm_id"], "PENDING", timeout=10)
    time.sleep(1)  # a scheduling pass: still PENDING, behind the job that holds a CPU
    assert slurm.job_state(slurm.scontrol_job(waiting["slurm_id"])) == "PENDING", record
    assert server.job(waiting["id"])["state"] == "QUEUED"
    # The upload waits on disk, but never readable: not a gzip, not the CSV.
    [staged] = server.staged()
    held = staged.read_bytes()
    assert held[:2] != b"\x1f\x8b" and b"amount,grade" not in held
    result = server.cli("jobs", "cancel", waiting["id"])
    assert result.code == 0, result.err
    job = server.job(waiting["id"])
    assert job["state"] == "CANCELED" and job["error"] is None, job
    assert slurm.job_state(slurm.scontrol_job(waiting["slurm_id"])) == "CANCELLED"
    assert server.staged() == [] and server.models() == []
    assert server.job(timing_out["id"])["state"] == "RUNNING"


def test_cancel_of_a_running_fit_goes_through_scancel(server: SlurmServer, timing_out: dict):
    server.options(cpus_per_task=1)
    job = server.detach()
    slurm.wait_slurm_state(job["slurm_id"], "RUNNING", timeout=60)
    assert server.wait(job["id"], {"RUNNING"}, timeout=60)["state"] == "RUNNING"
    result = server.cli("jobs", "cancel", job["id"])
    assert result.code == 0, result.err
    assert server.job(job["id"])["state"] == "CANCELED"
    assert slurm.job_state(slurm.wait_slurm_state(job["slurm_id"], "CANCELLED", timeout=30)) == "CANCELLED"
    assert server.staged() == [] and server.models() == []


def test_an_administrators_scancel_is_reported_with_slurms_reason(server: SlurmServer, timing_out: dict):
    server.options(cpus_per_task=1)
    job = server.detach()
    slurm.wait_slurm_state(job["slurm_id"], "RUNNING", timeout=60)
    assert server.wait(job["id"], {"RUNNING"}, timeout=60)["state"] == "RUNNING"
    slurm.scancel(job["slurm_id"])  # not through the tool: the job's log never hears of it
    ended = server.wait(job["id"], {"CANCELED", "FAILED"}, timeout=60)
    assert ended["state"] == "CANCELED", ended
    assert "CANCELLED" in ended["error"]["message"] and "scancel" in ended["error"]["message"], ended
    assert server.models() == []


def test_a_fit_runs_to_done_and_slurm_records_it_completed(server: SlurmServer, timing_out: dict):
    server.options(cpus_per_task=1)
    result = server.cli.fit(server.csv, "--json", epochs=1)
    assert result.code == 0, result.err
    model = json.loads(result.out)["model"]
    done = [job for job in server.jobs().values() if job["model"] == model and job["kind"] == "fit"]
    assert len(done) == 1 and done[0]["state"] == "DONE" and done[0]["slurm_id"], done
    assert slurm.job_state(slurm.wait_slurm_state(done[0]["slurm_id"], "COMPLETED", timeout=30)) == "COMPLETED"
    assert model in server.models() and server.staged() == []
    # A sample over sample_job_rows is a Slurm job too, and its rows still come down as a CSV.
    server.base += "sample_job_rows = 100\n"  # [service], before the [service.slurm] table
    server.options(cpus_per_task=1)
    sampled = server.cli("sample", model, "--rows", "500")
    assert sampled.code == 0, sampled.err
    [job] = [job for job in server.jobs().values() if job["kind"] == "sample"]
    assert job["state"] == "DONE" and job["slurm_id"] and job["sampled"] == 500, job
    written = server.cli.config.parent / "synthetic" / job["output"].removesuffix(".gz")
    assert len(written.read_text().splitlines()) == 501


def test_a_fit_sbatch_refuses_ends_in_one_line_and_leaves_no_upload(server: SlurmServer):
    server.options(partition="no_such_partition")
    before = set(server.jobs())
    result = server.cli.fit(server.csv, "--detach", "--json")
    assert result.code == 8, result.err  # ServerEnvironmentError: the server's set-up, not the user's input
    [line] = result.err.strip().splitlines()
    assert line.startswith("Error: sbatch refused the job:") and "partition" in line, line
    [job] = [job for job in server.jobs().values() if job["id"] not in before]
    assert job["state"] == "FAILED" and job["slurm_id"] is None
    assert server.staged() == []


def test_a_fit_over_its_time_limit_fails_with_timeout(server: SlurmServer, timing_out: dict):
    ended = server.wait(timing_out["id"], {"DONE", "FAILED", "CANCELED"}, timeout=150)
    assert ended["state"] == "FAILED", ended
    assert ended["error"]["message"] == "TIMEOUT after 00:01:00", ended
    assert ended["error"]["type"] == "LimitError"
    assert slurm.job_state(slurm.scontrol_job(timing_out["slurm_id"])) == "TIMEOUT"
    result = server.cli("jobs", "follow", timing_out["id"])
    assert result.code == 13 and "TIMEOUT after 00:01:00" in result.err, result.err
