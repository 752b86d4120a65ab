"""The one-node Slurm cluster .ci/slurm-up starts: it runs batch jobs and queues them the way the slurm executor relies on."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests import slurm


@pytest.fixture(scope="module", autouse=True)
def _slurm() -> None:
    slurm.require_slurm()


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


def test_scontrol_records_keep_paths_with_spaces_and_odd_keys():
    record = slurm.parse_scontrol(
        "JobId=7 JobName=wrap JobState=PENDING Reason=Resources CPUs/Task=2 AllocNode:Sid=vm:12 "
        "TRES=cpu=2,mem=4G,node=1 StdOut=/tmp/tiny patients/slurm-7.out Power="
    )
    assert record["CPUs/Task"] == "2"
    assert record["AllocNode:Sid"] == "vm:12"
    assert record["TRES"] == "cpu=2,mem=4G,node=1"
    assert record["StdOut"] == "/tmp/tiny patients/slurm-7.out"
    assert record["Power"] == ""
