"""What a job whose log fell silent is recorded as, from what Slurm says of it (unit level: Slurm's answers are given)."""

from __future__ import annotations

import pytest

from ctgan_server.job_store import slurm_end
from ctgan_server.slurm import SlurmJob, parse_scontrol
from ctgan_server.wire import CanceledError, InternalError, LimitError


@pytest.mark.parametrize(
    ("found", "error", "message"),
    [
        (SlurmJob("7", "TIMEOUT", "TimeLimit", "01:00:00", "0:15"), LimitError, "TIMEOUT after 01:00:00"),
        (SlurmJob("7", "OUT_OF_MEMORY", "OutOfMemory", "UNLIMITED", "0:125"), LimitError, "OUT_OF_MEMORY (OutOfMemory)"),
        (SlurmJob("7", "NODE_FAIL", "NodeDown", "01:00:00", "0:0"), InternalError, "NODE_FAIL (NodeDown)"),
        # task/none: the kernel's OOM killer shows only as signal 9
        (SlurmJob("7", "FAILED", "NonZeroExitCode", "", "0:9"), InternalError, "FAILED: killed by signal 9 (out of memory?)"),
        (SlurmJob("7", "FAILED", "NonZeroExitCode", "", "3:0"), InternalError, "FAILED with exit code 3"),
        (SlurmJob("7", "CANCELLED", "None", "", "0:15"), CanceledError, "CANCELLED outside the tool (scancel)"),
        (SlurmJob("7", None), InternalError, "Slurm no longer knows job 7 and its log has no end"),
    ],
)
def test_slurms_verdict_becomes_the_jobs_error(found: SlurmJob, error: type, message: str):
    end = slurm_end(found)
    assert type(end) is error and end.message == message


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "CONFIGURING"])
def test_a_job_slurm_still_holds_is_left_to_its_log(state: str):
    assert SlurmJob("7", state).active


@pytest.mark.parametrize("state", ["COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"])
def test_a_job_slurm_has_ended_is_not_active(state: str):
    assert not SlurmJob("7", state).active


def test_scontrol_lines_keep_values_with_spaces_and_keys_with_slashes():
    fields = parse_scontrol(
        "JobId=12 JobName=ctgan-alice-x JobState=TIMEOUT Reason=TimeLimit Dependency=(null) TimeLimit=00:01:00 "
        "CPUs/Task=1 AllocNode:Sid=vm:42 WorkDir=/srv/ctgan server StdOut=/srv/a b/x.stderr ExitCode=0:15"
    )
    assert fields["JobState"] == "TIMEOUT" and fields["TimeLimit"] == "00:01:00" and fields["ExitCode"] == "0:15"
    assert fields["CPUs/Task"] == "1" and fields["AllocNode:Sid"] == "vm:42"
    assert fields["WorkDir"] == "/srv/ctgan server" and fields["StdOut"] == "/srv/a b/x.stderr"
