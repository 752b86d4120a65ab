"""A real Slurm for the tests that need one: is it there, and what it says about a job.

CI starts a one-node cluster with .ci/slurm-up and sets CTGAN_REQUIRE_SLURM=1,
which turns a missing or broken Slurm into a failure instead of a skip (as
CTGAN_REQUIRE_SSHD=1 does for sshd). A test module that needs Slurm says so
once::

    @pytest.fixture(scope="module", autouse=True)
    def _slurm() -> None:
        require_slurm()

Everything here asks the real commands (sinfo, sbatch, scontrol, scancel);
nothing is faked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Iterable

import pytest

from ctgan_server.slurm import parse_scontrol

REQUIRE_ENV = "CTGAN_REQUIRE_SLURM"
# Node states (sinfo %T) in which the node takes jobs. "completing" is a node
# that is cleaning up after a job that just ended: it is busy for a moment, not broken.
USABLE_STATES = {"idle", "mixed", "allocated", "completing"}
# Job states (scontrol JobState) after which a job never runs again.
FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}
COMMAND_TIMEOUT = 15.0


class SlurmUnavailable(RuntimeError):
    pass


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def slurm_problem() -> str | None:
    """Why no usable Slurm answers here (one line), or None when a node takes jobs."""
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return "Slurm is not installed (no sinfo/sbatch on PATH); CI installs slurm-wlm and runs .ci/slurm-up"
    try:
        result = _run("sinfo", "-h", "-o", "%T")
    except subprocess.TimeoutExpired:
        return f"sinfo did not answer within {COMMAND_TIMEOUT:.0f} s"
    if result.returncode != 0:
        return f"sinfo failed ({result.stderr.strip() or result.returncode}); is slurmctld running? (.ci/slurm-up as root)"
    states = result.stdout.split()
    # A trailing "-" marks a node planned for a backfill job; "*" (not responding) and the rest stay unusable.
    if not any(state.rstrip("-") in USABLE_STATES for state in states):
        return f"no Slurm node takes jobs: sinfo says {', '.join(states) or 'nothing'}; .ci/slurm-up resumes the node"
    return None


def slurm_available() -> bool:
    return slurm_problem() is None


def require_slurm() -> None:
    """Skip the calling test when Slurm is absent; fail it instead when CTGAN_REQUIRE_SLURM=1 (CI)."""
    problem = slurm_problem()
    if problem is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {problem}")
    pytest.skip(problem)


def scontrol_job(slurm_id: str | int) -> dict[str, str]:
    """What slurmctld knows of a job (`scontrol show job -o ID`); LookupError when it knows no such job.

    Finished jobs stay listed for MinJobAge (a day in .ci/slurm-up's config).
    An array or heterogeneous job prints one line per part: this is the first.
    """
    result = _run("scontrol", "show", "job", "-o", str(slurm_id))
    line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
    if result.returncode != 0 or not line.startswith("JobId="):
        raise LookupError(f"scontrol show job {slurm_id}: {result.stderr.strip() or result.stdout.strip() or result.returncode}")
    return parse_scontrol(line)


def job_state(record: dict[str, str]) -> str:
    """JobState's word: `CANCELLED`, also when scontrol adds who cancelled it."""
    return record.get("JobState", "").split()[0] if record.get("JobState") else ""


def wait_slurm_state(slurm_id: str | int, states: str | Iterable[str], timeout: float = 60.0) -> dict[str, str]:
    """Poll scontrol until the job's state is one of ``states``; its record then, TimeoutError after ``timeout`` s.

    A job that reaches another final state first fails at once, with its state
    and reason, instead of waiting out the timeout.
    """
    wanted = {states} if isinstance(states, str) else set(states)
    deadline = time.monotonic() + timeout
    while True:
        record = scontrol_job(slurm_id)
        state = job_state(record)
        if state in wanted:
            return record
        if state in FINAL_STATES:
            raise AssertionError(f"job {slurm_id} ended {state} (Reason={record.get('Reason')}), expected {sorted(wanted)}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"job {slurm_id} is {state} (Reason={record.get('Reason')}) after {timeout} s, expected {sorted(wanted)}"
            )
        time.sleep(0.2)


def sbatch(*options: str, wrap: str) -> str:
    """Submit ``wrap`` as a batch job with sbatch ``options``; its Slurm job id."""
    result = _run("sbatch", "--parsable", *options, "--wrap", wrap)
    if result.returncode != 0:
        raise RuntimeError(f"sbatch failed: {result.stderr.strip()}")
    return result.stdout.strip().split(";")[0]


def scancel(*slurm_ids: str | int) -> None:
    """Cancel jobs, ignoring those that already ended: for a test's cleanup."""
    if slurm_ids:
        _run("scancel", *map(str, slurm_ids))


def queue() -> list[str]:
    """squeue's jobs that are not finished (id, state, reason), one line each: empty when the cluster is free."""
    result = _run("squeue", "-h", "-o", "%i %T %r")
    if result.returncode != 0:
        raise RuntimeError(f"squeue failed: {result.stderr.strip()}")
    return result.stdout.strip().splitlines()


def scontrol_node(name: str | None = None) -> dict[str, str]:
    """`scontrol show node -o` for one node (the first, when ``name`` is None)."""
    result = _run("scontrol", "show", "node", "-o", *([name] if name else []))
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise LookupError(f"scontrol show node {name or ''}: {result.stderr.strip() or result.returncode}")
    return parse_scontrol(lines[0])


def node_cpus(name: str | None = None) -> int:
    """CPUs Slurm hands out on the node (CPUTot): on the CI cluster, one node with this machine's nproc."""
    return int(scontrol_node(name)["CPUTot"])
