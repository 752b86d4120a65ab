"""The Slurm executor's side of a job: `sbatch` to start it, `scontrol` to ask after it, `scancel` to stop it.

A job under Slurm runs the very entry point a local job runs
(``python -m ctgan_server job USER ID``) and writes the same event log, on
whichever node Slurm picks; ``data_dir`` is on a filesystem every node sees.
What the log cannot say, Slurm can: that the job is still PENDING, that it
hit its time limit, that its node failed, that it was killed for memory or
cancelled by an administrator.  ``job_store`` asks here when the log is
silent, and records Slurm's verdict as the job's end.

Accounting (``sacct``) is optional on a cluster; ``scontrol show job`` is
always there and knows a finished job for ``MinJobAge`` seconds, so it is
asked first and ``sacct`` only after the controller has forgotten the job.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .settings import Settings
from .wire import InternalError, ServerEnvironmentError, minimal_env

COMMAND_TIMEOUT = 30  # seconds for any Slurm command: a hung controller must not hang `jobs`

# Slurm job states (squeue(1), "JOB STATE CODES") in which the job may still
# run or is still being torn down: the log is not final yet.
ACTIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "RESV_DEL_HOLD",
}
WAITING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"}


@dataclass(frozen=True)
class SlurmJob:
    """What Slurm says of one job; ``state`` is None when no Slurm command knows it any more."""

    slurm_id: str
    state: str | None
    reason: str = ""
    time_limit: str = ""
    exit_code: str = ""  # "status:signal", as scontrol prints it

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def verdict(self) -> str:
        """Why the job ended, in Slurm's words, for a job whose own log did not say."""
        if self.state is None:
            return f"Slurm no longer knows job {self.slurm_id} and its log has no end"
        if self.state == "TIMEOUT":
            return f"TIMEOUT after {self.time_limit}" if self.time_limit else "TIMEOUT"
        status, _, signal = self.exit_code.partition(":")
        if self.state == "FAILED" and signal not in ("", "0"):
            hint = " (out of memory?)" if signal == "9" else ""
            return f"FAILED: killed by signal {signal}{hint}"
        if self.state == "FAILED" and status not in ("", "0"):
            return f"FAILED with exit code {status}"
        if self.state == "CANCELLED":
            return "CANCELLED outside the tool (scancel)"
        detail = f" ({self.reason})" if self.reason and self.reason != "None" else ""
        return f"{self.state}{detail}"


def _run(args: list[str], env: dict[str, str] | None = None, input_text: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=env, input=input_text, check=False
        )
    except FileNotFoundError:
        raise ServerEnvironmentError(f"{args[0]} is not installed here, and [service] executor is slurm") from None
    except subprocess.TimeoutExpired:
        raise ServerEnvironmentError(f"{args[0]} did not answer within {COMMAND_TIMEOUT} s: is slurmctld up?") from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def submit(settings: Settings, user: str, job_id: str, output: Path, secret_env: dict[str, str]) -> str:
    """Submit the job with sbatch; returns Slurm's job id.

    The job's environment is exactly sbatch's own (``--export=ALL``), and
    sbatch's own is the allowlist plus ``secret_env``: so the upload's key
    reaches the job without ever appearing on a command line, where any
    account on the host could read it in /proc.
    """
    command = [sys.executable, "-m", "ctgan_server", "job", user, job_id]
    extra = {"CTGAN_SERVER_DIR": str(settings.server_dir), **secret_env}
    if "SLURM_CONF" in os.environ:  # a cluster whose slurm.conf is not in the default place
        extra["SLURM_CONF"] = os.environ["SLURM_CONF"]
    args = [
        "sbatch",
        "--parsable",
        f"--job-name=ctgan-{user}-{job_id}",
        f"--chdir={settings.server_dir}",
        f"--output={output}",
        "--open-mode=append",  # the file `serve` made 0600 beforehand
        "--export=ALL",
        *settings.slurm.sbatch_args(),
        f"--wrap=exec {shlex.join(command)}",
    ]
    env = minimal_env(extra)
    # Slurm sets the GPUs it grants (gres) in the job's own environment; this
    # host's CUDA_VISIBLE_DEVICES means nothing on another node.
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = _run(args, env=env)
    if done.returncode != 0:
        raise ServerEnvironmentError(f"sbatch refused the job: {_first_line(done.stderr or done.stdout)}")
    slurm_id = done.stdout.strip().split(";")[0]  # --parsable: "ID" or "ID;cluster"
    if not slurm_id.isdigit():
        raise InternalError(f"sbatch answered {_first_line(done.stdout)!r} instead of a job id")
    return slurm_id


def cancel(slurm_id: str) -> None:
    done = _run(["scancel", slurm_id])
    if done.returncode != 0 and "already completing or completed" not in done.stderr:
        raise ServerEnvironmentError(f"scancel {slurm_id} failed: {_first_line(done.stderr)}")


def job(slurm_id: str) -> SlurmJob | None:
    """Slurm's picture of the job; None when Slurm cannot be asked now (the log stays as it is)."""
    try:
        shown = _run(["scontrol", "show", "job", "-o", slurm_id])
    except ServerEnvironmentError:
        return None
    if shown.returncode == 0 and shown.stdout.strip():
        fields = parse_scontrol(shown.stdout.splitlines()[0])
        return SlurmJob(
            slurm_id,
            (fields.get("JobState") or "UNKNOWN").split()[0],
            fields.get("Reason", ""),
            fields.get("TimeLimit", ""),
            fields.get("ExitCode", ""),
        )
    if "Invalid job id" not in shown.stderr:
        return None  # the controller is down or busy: say nothing rather than something wrong
    return _from_accounting(slurm_id)


def _from_accounting(slurm_id: str) -> SlurmJob:
    """After MinJobAge the controller forgets a job; accounting, where the cluster keeps it, still knows."""
    try:
        done = _run(["sacct", "-n", "-P", "-X", "-j", slurm_id, "-o", "State,Reason,Timelimit,ExitCode"])
    except ServerEnvironmentError:
        return SlurmJob(slurm_id, None)
    rows = [line.split("|") for line in done.stdout.splitlines() if line.count("|") == 3]
    if done.returncode != 0 or not rows:
        return SlurmJob(slurm_id, None)
    state, reason, limit, exit_code = rows[0]
    return SlurmJob(slurm_id, state.split()[0], reason, limit, exit_code)  # "CANCELLED by 0" -> CANCELLED


# Where a field starts in `scontrol show job -o`: keys such as `CPUs/Task` and
# `AllocNode:Sid` hold / and :, and values (paths, reasons) may hold spaces.
_FIELD = re.compile(r"(?:^|\s)([A-Za-z][\w:/]*)=")


def parse_scontrol(line: str) -> dict[str, str]:
    """One line of `scontrol show job -o` as {key: value}; a value runs up to the next ` Key=`."""
    starts = list(_FIELD.finditer(line))
    ends = [match.start() for match in starts[1:]] + [len(line)]
    return {match.group(1): line[match.end() : end].strip() for match, end in zip(starts, ends)}
