"""A user's fit jobs as files: the event log that is each job's whole record, and their clean-up.

Everything about a job is in ``jobs/<user>/<id>.jsonl``: one JSON event per
line, appended by the job (``job_runner``) and by whoever finds it dead or
cancels it.  Its state is the last ``state`` event (``fold``).  Beside the
log lie the job's request (``<id>.request.json``, see ``fit_request``) until
the job has loaded it, and its process's own output (``<id>.stderr``).

A local job is alive while a process with its PID and the same start time
exists; comparing start times guards against the PID having been reused.  A
job submitted to Slurm is alive while Slurm says so (``slurm``), however
long it waits PENDING.  A QUEUED or RUNNING job that is no longer alive is
given its end by whoever looks: FAILED with the reason, or CANCELED.

A job leaves nothing behind it does not need: its output file holds no value
of the data (``job_output``), and its files go when the job is deleted, when
its model is deleted, or when they are older than ``job_retention_days``
(swept at login).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from .fit_request import request_token
from .storage import UserStorage, iso_utc, make_private_dir, timestamp
from .wire import (
    CANCELED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    CanceledError,
    CtganError,
    InternalError,
    InvalidNameError,
    LimitError,
    NotFoundError,
    UsageError,
    event,
)

STARTUP_GRACE_SECONDS = 30  # a job whose process is not recorded yet is young, not dead
POLL_SECONDS = 0.2  # how often a waiting side (a follower, a canceller, a queued job) looks again
_JOB_ID = re.compile(r"\d{8}t\d{6}-[0-9a-f]{6}")
# The files of one job, by suffix; the log (.jsonl) is the job's existence.
_JOB_FILE = re.compile(r"^(\d{8}t\d{6}-[0-9a-f]{6})(\.jsonl|\.stderr|\.request\.json)$")
DAY_SECONDS = 86_400


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished; its parent just has not reaped it
        return None
    return fields[19]


def alive(pid: int | None, start: str | None) -> bool:
    return pid is not None and start is not None and process_start(pid) == start


class JobStore:
    """One user's job files."""

    def __init__(self, data_root: Path, user: str):
        self.root = data_root / "jobs"
        self.dir = data_root / "jobs" / user
        self.user = user

    def ensure(self) -> None:
        make_private_dir(self.root)
        make_private_dir(self.dir)

    def new_id(self) -> str:
        return f"{timestamp(time.time())}-{secrets.token_hex(3)}"

    def check_id(self, job_id: Any) -> str:
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise InvalidNameError(f"invalid job id {job_id!r}")
        if not self.log_path(job_id).exists():
            raise NotFoundError(f"no job {job_id}; `jobs` lists yours")
        return job_id

    def log_path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.jsonl"

    def request_path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.request.json"

    def output_path(self, job_id: str) -> Path:
        """The job process's own stderr: library warnings and tracebacks."""
        return self.dir / f"{job_id}.stderr"

    def append(self, job_id: str, event: dict[str, Any]) -> None:
        line = json.dumps({"time": iso_utc(time.time()), **event}, allow_nan=False) + "\n"
        # One write on an O_APPEND descriptor: lines from the job and from a
        # canceller never interleave.
        fd = os.open(self.log_path(job_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def read(self, job_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Complete lines from ``offset`` on, and the offset after them."""
        with open(self.log_path(job_id), "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        events = []
        for line in data[:end].splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a full disk must not block every later read
        return events, offset + end

    def status(self, job_id: str) -> dict[str, Any]:
        """The job as `jobs` shows it; a job that ended without saying so is given its end here."""
        job = fold(job_id, self.read(job_id)[0])
        if job["state"] in (QUEUED, RUNNING):
            end = self._silent_end(job)
            if end is not None:
                # Read again now that the job is known to be over: it may have
                # written its last state and exited between the first read and the check.
                job = fold(job_id, self.read(job_id)[0])
                if job["state"] in (QUEUED, RUNNING):
                    self.finish_dead(job_id, job, end)
                    job = fold(job_id, self.read(job_id)[0])
        return job

    def _silent_end(self, job: dict[str, Any]) -> CtganError | None:
        """None while the job may still run; otherwise why it ended, as the error its end records."""
        if job.get("slurm_id") is not None:
            from . import slurm

            found = slurm.job(job["slurm_id"])
            # Slurm unreachable, or the job still PENDING, RUNNING or completing: the log is all there is.
            return None if found is None or found.active else slurm_end(found)
        if job.get("pid") is None:
            young = time.time() - job.get("created_at", 0) < STARTUP_GRACE_SECONDS
            return None if young else InternalError("the job's process never started")
        if alive(job["pid"], job.get("pid_start")):
            return None
        return InternalError("the job's process is gone (killed, or the server restarted)")

    def finish_dead(self, job_id: str, job: dict[str, Any], end: CtganError) -> None:
        """Record the end of a job that can no longer do it itself, and remove what it left half-written.

        The end is CANCELED when a cancel was asked for (here or, under
        Slurm, with scancel: ``end`` is then a CanceledError), FAILED with
        ``end`` otherwise.
        """
        model = job.get("saving")
        if model:
            models = UserStorage(self.root.parent, self.user).models_dir
            (models / f".{model}.tmp").unlink(missing_ok=True)
            if not (models / model).exists():
                (models / model.replace(".gz", ".json")).unlink(missing_ok=True)
        self.discard_request(job_id)  # the job died before loading its upload: the staged original goes too
        if isinstance(end, CanceledError):
            self.append(job_id, event("state", state=CANCELED, error=error_fields(end)))
        elif job.get("cancel_requested"):
            self.append(job_id, event("state", state=CANCELED))
        else:
            self.append(job_id, failed_event(end))

    def discard_request(self, job_id: str) -> None:
        """Remove the job's request and the staged upload it names, as far as they are still there."""
        request = self.request_path(job_id)
        try:
            token = request_token(request.read_text())
        except OSError:
            token = None
        if token is not None:
            UserStorage(self.root.parent, self.user).staged_path(token).unlink(missing_ok=True)
        request.unlink(missing_ok=True)

    def waiting_uploads(self) -> list[Path]:
        """The staged uploads of jobs that have not loaded them yet and are still alive.

        Each job with a request is looked at first (``status``), so that one
        that died waiting has its request and upload removed, not kept.
        """
        if not self.dir.is_dir():
            return []
        storage = UserStorage(self.root.parent, self.user)
        uploads = []
        for request in sorted(self.dir.glob("*.request.json")):
            job_id = request.name[: -len(".request.json")]
            if not _JOB_ID.fullmatch(job_id) or not self.log_path(job_id).exists():
                continue  # an orphan: ``sweep`` takes it when it is old
            self.status(job_id)
            try:
                token = request_token(request.read_text())
            except FileNotFoundError:
                continue  # loaded or discarded meanwhile
            if token is not None:
                uploads.append(storage.staged_path(token))
        return uploads

    def list(self) -> list[dict[str, Any]]:
        if not self.dir.is_dir():
            return []
        jobs = [self.status(path.name[: -len(".jsonl")]) for path in sorted(self.dir.glob("*.jsonl"))]
        return [public(job) for job in jobs]

    # -- removing jobs --------------------------------------------------------

    def delete(self, job_id: str) -> dict[str, Any]:
        """Remove a finished job's files; a QUEUED or RUNNING job is refused. Returns the job as it was."""
        job = self.status(self.check_id(job_id))  # status: a dead job counts as finished (FAILED)
        if job["state"] in (QUEUED, RUNNING):
            raise UsageError(f"job {job_id} is {job['state']}: cancel it first (`jobs cancel {job_id}`)")
        self._remove_files(job_id)
        return public(job)

    def _remove_files(self, job_id: str) -> None:
        # The log goes last: until then the job is still listed, so an
        # interrupted delete can simply be repeated (and sweep takes orphans).
        self.output_path(job_id).unlink(missing_ok=True)
        self.request_path(job_id).unlink(missing_ok=True)
        self.log_path(job_id).unlink(missing_ok=True)

    def delete_for_model(self, model_name: str) -> list[str]:
        """Remove the log of the job that made ``model_name`` (when the model is deleted); returns the job ids removed.

        The log holds the model's losses and its plan, so it must not outlive
        the model.  Only DONE jobs name a model as their result; the name is
        only compared, never used as a path.
        """
        if not self.dir.is_dir():
            return []
        needle = json.dumps(model_name).encode()  # as it appears inside the log: skip logs that cannot match
        removed = []
        for path in sorted(self.dir.glob("*.jsonl")):
            job_id = path.name[: -len(".jsonl")]
            if not _JOB_ID.fullmatch(job_id):
                continue
            try:
                if needle not in path.read_bytes():
                    continue
                events, _ = self.read(job_id)
            except FileNotFoundError:
                continue  # deleted meanwhile by another session
            if any(e.get("event") == "state" and e.get("state") == DONE and e.get("model") == model_name for e in events):
                self._remove_files(job_id)
                removed.append(job_id)
        return removed

    def sweep(self, retention_days: float, now: float | None = None) -> int:
        """At login: remove finished jobs untouched for ``retention_days``, and old orphan files; returns how many jobs.

        Age is the log's modification time, i.e. the job's last event, so a
        job is kept for the retention period after it ended, not after it
        started.  A QUEUED or RUNNING job is kept however old (a long queue);
        an old one whose process is gone is marked FAILED by ``status`` and
        goes too.  An orphan is a ``.stderr`` or ``.request.json`` without a
        log (an interrupted delete, a start that failed half-way).
        """
        if not self.dir.is_dir():
            return 0
        now = time.time() if now is None else now
        cutoff = now - retention_days * DAY_SECONDS
        removed: set[str] = set()
        for path in sorted(self.dir.iterdir()):
            match = _JOB_FILE.fullmatch(path.name)
            if not match:
                continue  # never remove a file this module did not name
            job_id, suffix = match.groups()
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                continue
            if suffix == ".jsonl":
                try:
                    # a log with no state at all is not a job anyone can follow: it goes too
                    if self.status(job_id)["state"] in (QUEUED, RUNNING):
                        continue
                except FileNotFoundError:
                    continue
                self._remove_files(job_id)
                removed.add(job_id)
            elif not self.log_path(job_id).exists():
                path.unlink(missing_ok=True)
                removed.add(job_id)
        return len(removed)


def error_fields(error: CtganError) -> dict[str, str]:
    """An error as a job's state event keeps it: its type and message, as an error reply carries them."""
    return {"type": type(error).__name__, "message": error.message}


def failed_event(error: CtganError) -> dict[str, Any]:
    """The state event of a job that failed."""
    return event("state", state=FAILED, error=error_fields(error))


def slurm_end(found: Any) -> CtganError:
    """Slurm's verdict on a job that ended without its log saying so (``slurm.SlurmJob``), as the error recorded."""
    reason = found.verdict()
    if found.state == "CANCELLED":
        return CanceledError(reason)
    if found.state in ("TIMEOUT", "OUT_OF_MEMORY", "DEADLINE"):
        return LimitError(reason)  # a limit of the cluster's, as max_rows is one of ours
    return InternalError(reason)


# What a state event may carry: QUEUED the job's description, DONE its result, FAILED or CANCELED the error.
_STATE_KEYS = ("kind", "dataset", "epochs", "rows", "created", "created_at", "model", "output", "error", "pid", "pid_start")


def fold(job_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A job's current picture from its events."""
    job: dict[str, Any] = {"id": job_id, "kind": "fit", "state": None, "epoch": 0, "model": None, "error": None}
    for record in events:
        kind = record.get("event")
        if kind == "state":
            job["state"] = record["state"]
            for key in _STATE_KEYS:
                if key in record:
                    job[key] = record[key]
        elif kind == "process":
            job["pid"], job["pid_start"] = record["pid"], record["pid_start"]
        elif kind == "slurm":
            job["slurm_id"] = record["slurm_id"]
        elif kind == "epoch":
            job["epoch"] = record["epoch"]
        elif kind == "sample":
            job["sampled"] = record["rows"]
        elif kind == "stage" and record.get("stage") == "saving":
            job["saving"] = record["model"]
        elif kind == "cancel":
            job["cancel_requested"] = True
    return job


# A fit's: dataset, epochs, epoch, model (its result); a sample's: model (its
# source), rows, sampled, output (the stored dataset).  slurm_id is None for a local job.
PUBLIC_KEYS = (
    "id",
    "kind",
    "state",
    "dataset",
    "epochs",
    "epoch",
    "created",
    "model",
    "rows",
    "sampled",
    "output",
    "error",
    "slurm_id",
)


def public(job: dict[str, Any]) -> dict[str, Any]:
    return {key: job.get(key) for key in PUBLIC_KEYS}
