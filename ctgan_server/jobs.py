"""Fits as jobs: detached processes with an event log, a FIFO queue and cancellation.

A job is one process, started by `serve` in a new session with its stdio on
files, so neither a closed SSH channel nor a Ctrl-C reaches it.  Everything
about it is in ``jobs/<user>/<id>.jsonl``: one JSON event per line, appended
by the job (and by whoever finds it dead or cancels it).  Its state is the
last ``state`` event.  No daemon exists: the queue is a folder of tickets and
the running slots are ``flock``-ed files, which the kernel frees when a job
dies however it dies.

A job is alive while a process with its PID and the same start time exists;
comparing start times guards against the PID having been reused.

A job leaves nothing behind it does not need: it starts with an allowlisted
environment (no password or other secret of the session that started it),
its own output file holds no value of the data, and its files go when the
job is deleted, when its model is deleted, or when they are older than
``job_retention_days`` (swept at login).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .settings import Settings
from .storage import iso_utc, make_private_dir, timestamp
from .wire import (
    CANCELED,
    DONE,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    CtganError,
    InternalError,
    InvalidNameError,
    NotFoundError,
    UsageError,
    atomic_write_text,
    minimal_env,
)

CANCEL_GRACE_SECONDS = 8  # then SIGKILL: the issue allows 10 s in all
STARTUP_GRACE_SECONDS = 30  # a job whose process is not recorded yet is young, not dead
POLL_SECONDS = 0.2
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
        """The job as `jobs` shows it; a job whose process is gone is marked FAILED here."""
        job = fold(job_id, self.read(job_id)[0])
        if job["state"] in (QUEUED, RUNNING) and not self._running(job):
            # Read again now that the process is known to be gone: it may have
            # written its last state and exited between the first read and the check.
            job = fold(job_id, self.read(job_id)[0])
            if job["state"] in (QUEUED, RUNNING):
                self.finish_dead(job_id, job, "the job's process is gone (killed, or the server restarted)")
                job = fold(job_id, self.read(job_id)[0])
        return job

    def _running(self, job: dict[str, Any]) -> bool:
        if job.get("pid") is None:
            return time.time() - job.get("created_at", 0) < STARTUP_GRACE_SECONDS
        return alive(job["pid"], job.get("pid_start"))

    def finish_dead(self, job_id: str, job: dict[str, Any], reason: str) -> None:
        """Record the end of a job that can no longer do it itself, and remove what it left half-written."""
        from .storage import UserStorage

        storage = UserStorage(self.root.parent, self.user)
        model = job.get("saving")
        if model:
            models = storage.models_dir
            (models / f".{model}.tmp").unlink(missing_ok=True)
            if not (models / model).exists():
                (models / model.replace(".gz", ".json")).unlink(missing_ok=True)
        request = self.request_path(job_id)
        try:  # the job died before loading its upload: the staged original goes too
            token = json.loads(request.read_text())["token"]
            if re.fullmatch(r"[0-9a-f]{32}", str(token)):
                for staged in storage.staging_dir.glob(f"{token}*"):
                    staged.unlink(missing_ok=True)
        except (OSError, ValueError, KeyError):
            pass
        request.unlink(missing_ok=True)
        if job.get("cancel_requested"):
            self.append(job_id, {"event": "state", "state": CANCELED})
        else:
            self.append(job_id, {"event": "state", "state": FAILED, "error": {"type": "InternalError", "message": reason}})

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


def fold(job_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A job's current picture from its events."""
    job: dict[str, Any] = {"id": job_id, "state": None, "epoch": 0, "model": None, "error": None}
    for event in events:
        kind = event.get("event")
        if kind == "state":
            job["state"] = event["state"]
            for key in ("dataset", "epochs", "created", "created_at", "model", "error", "pid", "pid_start"):
                if key in event:
                    job[key] = event[key]
        elif kind == "process":
            job["pid"], job["pid_start"] = event["pid"], event["pid_start"]
        elif kind == "epoch":
            job["epoch"] = event["epoch"]
        elif kind == "stage" and event.get("stage") == "saving":
            job["saving"] = event["model"]
        elif kind == "cancel":
            job["cancel_requested"] = True
    return job


PUBLIC_KEYS = ("id", "state", "dataset", "epochs", "epoch", "created", "model", "error")


def public(job: dict[str, Any]) -> dict[str, Any]:
    return {key: job.get(key) for key in PUBLIC_KEYS}


# -- starting a job (in `serve`) --------------------------------------------------

def start(settings: Settings, store: JobStore, request: dict[str, Any], dataset: str) -> str:
    """Write the request, record the job as QUEUED and start its process; returns the job id."""
    store.ensure()
    job_id = store.new_id()
    now = time.time()
    fd = os.open(store.request_path(job_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(request, fh)
    store.append(
        job_id,
        {"event": "state", "state": QUEUED, "dataset": dataset, "epochs": request["epochs"], "created": iso_utc(now), "created_at": now},
    )
    # Only the allowlist: this `serve` may hold CTGAN_PASSWORD (a local
    # transport started from the user's shell) or an SSH agent socket.
    env = minimal_env({"CTGAN_SERVER_DIR": str(settings.server_dir)})
    output_fd = os.open(store.output_path(job_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(output_fd, "ab") as output:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ctgan_server", "job", store.user, job_id],
                cwd=settings.server_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,  # its own session and process group: no SIGHUP or SIGINT from ours
                close_fds=True,
            )
        except OSError as exc:
            store.request_path(job_id).unlink(missing_ok=True)
            store.append(job_id, {"event": "state", "state": FAILED, "error": {"type": "InternalError", "message": f"could not start the job: {exc}"}})
            raise InternalError(f"could not start the job process: {exc}") from exc
    start_time = process_start(proc.pid)
    if start_time is not None:
        store.append(job_id, {"event": "process", "pid": proc.pid, "pid_start": start_time})
    return job_id


def follow(store: JobStore, job_id: str, emit: Any, client_gone: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Pass on the job's events as they are written, until it finishes; returns its final picture.

    ``client_gone`` is asked at every poll (every POLL_SECONDS): when it says
    the client has hung up, this raises ConnectionAbortedError instead of
    waiting on.  Without it a `serve` whose client died while following a
    QUEUED job (no events, so no failed write to notice) would linger until
    the job ended, perhaps days later.  The job itself is not touched.
    """
    offset = 0
    last_check = 0.0
    state = None
    seen: list[dict[str, Any]] = []
    while True:
        events, offset = store.read(job_id, offset)
        seen += events
        for event in events:
            if event.get("event") == "state":
                state = event["state"]
            if event.get("event") not in ("process", "cancel"):
                emit({k: v for k, v in event.items() if k not in ("pid", "pid_start", "created_at")})
        if state in FINISHED:
            return public(fold(job_id, seen))
        if time.monotonic() - last_check > 2:
            last_check = time.monotonic()
            if store.status(job_id)["state"] in FINISHED:
                continue  # the status check just recorded its end: pass that event on
        if client_gone is not None and client_gone():
            raise ConnectionAbortedError(f"the client stopped following job {job_id}")
        time.sleep(POLL_SECONDS)


def cancel(store: JobStore, job_id: str) -> dict[str, Any]:
    """Stop a QUEUED or RUNNING job and its workers; waits until it is recorded as CANCELED."""
    job = store.status(job_id)
    if job["state"] in FINISHED:
        raise UsageError(f"job {job_id} is already {job['state']}")
    store.append(job_id, {"event": "cancel"})
    full = fold(job_id, store.read(job_id)[0])
    pid, start_time = full.get("pid"), full.get("pid_start")
    if alive(pid, start_time):
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        while time.monotonic() < deadline and alive(pid, start_time):
            time.sleep(POLL_SECONDS)
        if alive(pid, start_time):
            _signal_group(pid, signal.SIGKILL)
            time.sleep(POLL_SECONDS)
    full = fold(job_id, store.read(job_id)[0])
    if full["state"] not in FINISHED:
        store.finish_dead(job_id, full, "canceled")
    return public(fold(job_id, store.read(job_id)[0]))


def _signal_group(pid: int, signum: int) -> None:
    # The job leads its own process group, so joblib's worker processes get it too.
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


# -- the queue ----------------------------------------------------------------------

class Queue:
    """First in, first out, across all users, with at most ``slots`` jobs running."""

    def __init__(self, data_root: Path, slots: int):
        self.tickets = data_root / "jobs" / ".queue"
        self.slot_dir = data_root / "jobs" / ".slots"
        self.slots = slots
        self.held: int | None = None
        self._slot: Any = None  # the open, locked slot file
        for folder in (data_root / "jobs", self.tickets, self.slot_dir):
            make_private_dir(folder)

    def take_ticket(self, created_at: float, user: str, job_id: str) -> Path:
        ticket = self.tickets / f"{int(created_at * 1e6):020d}-{user}-{job_id}"
        atomic_write_text(ticket, json.dumps({"pid": os.getpid(), "pid_start": process_start(os.getpid())}))
        return ticket

    def wait(self, ticket: Path) -> None:
        """Block until this ticket is first in line and a slot is free; the slot is held until exit."""
        while True:
            if self._first_in_line(ticket):
                for n in range(self.slots):
                    fh = open(self.slot_dir / f"{n}.lock", "a")
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        fh.close()
                        continue
                    self._slot = fh  # kept open: the lock lasts as long as this process
                    self.held = n
                    ticket.unlink(missing_ok=True)
                    return
            time.sleep(POLL_SECONDS)

    def _first_in_line(self, ticket: Path) -> bool:
        for other in sorted(self.tickets.iterdir()):
            if other.name.startswith("."):
                continue  # a ticket still being written
            if other.name >= ticket.name:
                return True
            try:
                owner = json.loads(other.read_text())
            except (OSError, ValueError):
                continue  # gone since the listing
            if alive(owner.get("pid"), owner.get("pid_start")):
                return False
            other.unlink(missing_ok=True)  # a dead job's ticket
        return True


# -- the job process ----------------------------------------------------------------

class _Canceled(BaseException):
    """Raised by SIGTERM inside the job; a BaseException so no `except Exception` swallows it."""


def _raise_canceled(signum: int, _frame: Any) -> None:
    # Once is enough: a second cancel must not interrupt the clean-up of the first.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Canceled()


def run_job(settings: Settings, user: str, job_id: str) -> int:
    """The body of `python -m ctgan_server job USER ID`."""
    from .job_output import keep_output_data_free, say

    sink = keep_output_data_free()
    say(f"job {job_id} of {user}: pid {os.getpid()}, python {sys.version.split()[0]}")
    try:
        code = _run_job(settings, user, job_id)
    finally:
        if sink.writes:
            say(f"{sink.writes} writes of library output withheld (they may quote data)")
    import resource

    # The job's own peak memory, for an admin sizing [service] limits.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    say(f"job {job_id}: exit {code}, peak RSS {peak_mb:.0f} MB")
    return code


def _run_job(settings: Settings, user: str, job_id: str) -> int:
    from .fitting import run_fit
    from .storage import UserStorage

    store = JobStore(settings.data_dir, user)
    signal.signal(signal.SIGTERM, _raise_canceled)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def emit(event: dict[str, Any]) -> None:
        if event.get("stage") == "saving":
            # From here the model is being published: a cancel now would leave
            # it half-kept, so SIGTERM waits until DONE is recorded (the
            # canceller's SIGKILL still ends a save that hangs).
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        store.append(job_id, event)

    request: dict[str, Any] = {}
    ticket: Path | None = None
    storage = UserStorage(settings.data_dir, user)
    try:
        request = json.loads(store.request_path(job_id).read_text())
        if fold(job_id, store.read(job_id)[0]).get("pid") is None:
            emit({"event": "process", "pid": os.getpid(), "pid_start": process_start(os.getpid())})
        queue = Queue(settings.data_dir, settings.max_running_jobs)
        created_at = fold(job_id, store.read(job_id)[0]).get("created_at", time.time())
        ticket = queue.take_ticket(created_at, user, job_id)

        def wait_turn() -> None:
            try:
                queue.wait(ticket)
            finally:
                ticket.unlink(missing_ok=True)
            emit({"event": "state", "state": RUNNING})

        result = run_fit(
            storage,
            settings,
            storage.staged_path(request["token"]),
            request["sha256"],
            request["filename"],
            request["epochs"],
            request["overrides"],
            emit,
            request["text_columns"],
            request["seed"],
            wait_turn=wait_turn,
            holdout=request.get("holdout", 0.0),
        )
    except _Canceled:
        emit({"event": "state", "state": CANCELED})
        return 1
    except CtganError as exc:
        emit({"event": "state", "state": FAILED, "error": {"type": type(exc).__name__, "message": exc.message}})
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001  recorded for `jobs`, traceback in the job's stderr file
        # Neither place gets str(exc): an unexpected error comes from a
        # library (pandas, torch, rdt) and its message may quote a value.
        # The admin finds where it was raised in the job's output file.
        from .job_output import data_free_traceback, say

        say("the fit failed:\n" + "\n".join(data_free_traceback(exc)))
        emit(
            {
                "event": "state",
                "state": FAILED,
                "error": {
                    "type": "InternalError",
                    "message": f"unexpected {type(exc).__name__} in the fit; `jobs logs {job_id}` shows where"
                    " (its message is withheld: it may quote data)",
                },
            }
        )
        return 11
    finally:
        # Whatever happened, neither the confidential upload nor a queue ticket outlives the job.
        if "token" in request:
            storage.staged_path(request["token"]).unlink(missing_ok=True)
        store.request_path(job_id).unlink(missing_ok=True)
        if ticket is not None:
            ticket.unlink(missing_ok=True)
    emit({"event": "state", "state": DONE, "model": result["model"]})
    return 0


def iter_logs(store: JobStore, job_id: str) -> Iterator[str]:
    """The job's log as lines of text: its events, then its process's own output."""
    events, _ = store.read(job_id)
    for event in events:
        yield json.dumps(event)
    output = store.output_path(job_id)
    if output.exists():
        text = output.read_text(errors="replace")
        if text.strip():
            yield "--- job process output ---"
            yield from text.rstrip("\n").splitlines()
