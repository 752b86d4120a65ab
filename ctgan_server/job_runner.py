"""Fits as jobs: detached processes that `serve` starts, follows and cancels.

A job is one process, started by `serve` in a new session with its stdio on
files, so neither a closed SSH channel nor a Ctrl-C reaches it.  It records
everything it does in its log (``job_store``), waits for its turn in the
queue (``job_queue``) and ends with a DONE, FAILED or CANCELED state event,
or, when it cannot, whoever finds it dead or cancels it records the end.
Cancelling is SIGTERM to the job's process group, then SIGKILL.

A job leaves nothing behind it does not need: it starts with an allowlisted
environment (no password or other secret of the session that started it),
its own output file holds no value of the data (``job_output``), and the
confidential upload and its request go as soon as the job ends, however it
ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .fit_request import FitRequest, SampleRequest, read_request
from .job_queue import Queue
from .job_store import POLL_SECONDS, JobStore, alive, failed_event, fold, process_start, public
from .sealed_upload import KEY_ENV
from .settings import Settings
from .storage import UserStorage, iso_utc
from .wire import (
    CANCELED,
    DONE,
    FINISHED,
    QUEUED,
    RUNNING,
    CtganError,
    InternalError,
    UsageError,
    event,
    minimal_env,
)

CANCEL_GRACE_SECONDS = 8  # then SIGKILL: the issue allows 10 s in all
# How long a Slurm cancel waits beyond that for slurmd's own SIGKILL (KillWait, 30 s by default).
SLURM_KILL_WAIT_SECONDS = 30

Emit = Callable[[dict[str, Any]], None]

# -- starting a job (in `serve`) --------------------------------------------------


def start(settings: Settings, store: JobStore, request: FitRequest | SampleRequest, upload_key: bytes = b"") -> str:
    """Write the request, record the job as QUEUED and start it with the configured executor; returns the job id.

    ``upload_key`` decrypts a fit's staged upload (``sealed_upload``); it
    goes to the job in its environment only, never into a file.
    """
    store.ensure()
    job_id = store.new_id()
    now = time.time()
    fd = os.open(store.request_path(job_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(request.to_json())
    if isinstance(request, SampleRequest):
        what = {"kind": "sample", "model": request.model, "rows": request.rows}
    else:
        what = {"kind": "fit", "dataset": request.dataset, "epochs": request.epochs}
    store.append(job_id, event("state", state=QUEUED, **what, created=iso_utc(now), created_at=now))
    # The job's own output file, made here so that it is 0600 whoever writes it (this process or slurmd).
    os.close(os.open(store.output_path(job_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
    try:
        if settings.executor == "slurm":
            from . import slurm

            # A job that waits hours after its client has gone can only get the key from its environment.
            secret = {KEY_ENV: upload_key.hex()}
            slurm_id = slurm.submit(settings, store.user, job_id, store.output_path(job_id), secret)
            store.append(job_id, event("slurm", slurm_id=slurm_id))
        else:
            _start_process(settings, store, job_id, upload_key)
    except CtganError as exc:
        store.discard_request(job_id)  # the staged upload goes with it: nobody can load it now
        store.append(job_id, failed_event(exc))
        raise
    return job_id


def _start_process(settings: Settings, store: JobStore, job_id: str, upload_key: bytes) -> None:
    """The local executor: the job as a detached process on this machine; the key goes down its stdin.

    Not in its environment: /proc/<pid>/environ keeps a process's first
    environment for as long as it runs, whatever the process removes.
    """
    # Only the allowlist: this `serve` may hold CTGAN_PASSWORD (a local
    # transport started from the user's shell) or an SSH agent socket.
    env = minimal_env({"CTGAN_SERVER_DIR": str(settings.server_dir)})
    output_fd = os.open(store.output_path(job_id), os.O_WRONLY | os.O_APPEND, 0o600)
    with os.fdopen(output_fd, "ab") as output:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ctgan_server", "job", store.user, job_id],
                cwd=settings.server_dir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=output,
                start_new_session=True,  # its own session and process group: no SIGHUP or SIGINT from ours
                close_fds=True,
            )
        except OSError as exc:
            raise InternalError(f"could not start the job process: {exc}") from exc
    with proc.stdin:
        proc.stdin.write(upload_key.hex().encode() + b"\n")
    start_time = process_start(proc.pid)
    if start_time is not None:
        store.append(job_id, event("process", pid=proc.pid, pid_start=start_time))


def follow(store: JobStore, job_id: str, emit: Emit, client_gone: Callable[[], bool] | None = None) -> dict[str, Any]:
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
        for record in events:
            if record.get("event") == "state":
                state = record["state"]
            if record.get("event") not in ("process", "cancel"):
                emit({k: v for k, v in record.items() if k not in ("pid", "pid_start", "created_at")})
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
    store.append(job_id, event("cancel"))  # first, so that the job knows the SIGTERM that follows is a cancel
    full = fold(job_id, store.read(job_id)[0])
    if full.get("slurm_id") is not None:
        _cancel_slurm(store, job_id, full["slurm_id"])
    else:
        _stop_process(full.get("pid"), full.get("pid_start"))
    full = fold(job_id, store.read(job_id)[0])
    if full["state"] not in FINISHED:
        store.finish_dead(job_id, full, InternalError("canceled"))  # cancel_requested: recorded as CANCELED
    return public(fold(job_id, store.read(job_id)[0]))


def _stop_process(pid: int | None, start_time: str | None) -> None:
    if alive(pid, start_time):
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        while time.monotonic() < deadline and alive(pid, start_time):
            time.sleep(POLL_SECONDS)
        if alive(pid, start_time):
            _signal_group(pid, signal.SIGKILL)
            time.sleep(POLL_SECONDS)


def _cancel_slurm(store: JobStore, job_id: str, slurm_id: str) -> None:
    """scancel, then wait until the job has recorded its end or Slurm has let it go.

    A PENDING job is simply removed by Slurm; a running one gets SIGTERM and,
    after the cluster's KillWait, SIGKILL.
    """
    from . import slurm

    slurm.cancel(slurm_id)
    deadline = time.monotonic() + CANCEL_GRACE_SECONDS + SLURM_KILL_WAIT_SECONDS
    while time.monotonic() < deadline:
        if fold(job_id, store.read(job_id)[0])["state"] in FINISHED:
            return
        found = slurm.job(slurm_id)
        if found is not None and not found.active:
            return
        time.sleep(POLL_SECONDS)


def _signal_group(pid: int, signum: int) -> None:
    # The job leads its own process group, so joblib's worker processes get it too.
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def iter_logs(store: JobStore, job_id: str) -> Iterator[str]:
    """The job's log as lines of text: its events, then its process's own output."""
    events, _ = store.read(job_id)
    for record in events:
        yield json.dumps(record)
    output = store.output_path(job_id)
    if output.exists():
        text = output.read_text(errors="replace")
        if text.strip():
            yield "--- job process output ---"
            yield from text.rstrip("\n").splitlines()


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
    from .job_output import say

    store = JobStore(settings.data_dir, user)
    upload_key = _take_upload_key()
    under_slurm = "SLURM_JOB_ID" in os.environ
    signal.signal(signal.SIGTERM, _raise_canceled)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    emit = _recorder(store, job_id)
    ticket: Path | None = None
    try:
        request = read_request(store.request_path(job_id).read_text())
        if fold(job_id, store.read(job_id)[0]).get("pid") is None:
            emit(event("process", pid=os.getpid(), pid_start=process_start(os.getpid()), host=socket.gethostname()))
        if under_slurm:
            wait_turn = _running_now(emit)  # Slurm gave this job its turn: no queue of ours
        else:
            ticket, wait_turn = _queue_up(settings, store, job_id, emit)
        done = _run_request(settings, UserStorage(settings.data_dir, user), request, emit, upload_key, wait_turn)
    except _Canceled:
        if under_slurm and not fold(job_id, store.read(job_id)[0]).get("cancel_requested"):
            # Not our cancel: a time limit, an administrator's scancel, a
            # node going down.  Slurm knows which; `jobs` records its verdict.
            say(f"job {job_id}: SIGTERM from Slurm without a cancel from the tool; Slurm's job state tells why")
            return 128 + signal.SIGTERM
        emit(event("state", state=CANCELED))
        return 1
    except CtganError as exc:
        emit(failed_event(exc))
        return exc.exit_code
    except Exception as exc:  # recorded for `jobs`, traceback in the job's stderr file
        emit(failed_event(_unexpected(exc, job_id)))
        return InternalError.exit_code
    finally:
        # Whatever happened, neither the confidential upload nor a queue ticket outlives the job.
        store.discard_request(job_id)
        if ticket is not None:
            ticket.unlink(missing_ok=True)
    emit(event("state", state=DONE, **done))
    return 0


def _take_upload_key() -> bytes:
    """The staged upload's key: from the environment under Slurm, else the first line on stdin (``start``)."""
    if KEY_ENV in os.environ:
        # Out of the environment at once: nothing this process starts (joblib's workers) inherits it.
        text = os.environ.pop(KEY_ENV)
    elif os.isatty(0):
        text = ""  # started by hand: a fit's upload cannot be read, a sample needs no key
    else:
        text = sys.stdin.readline().strip()
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""  # the fit then fails to decrypt its upload, with a clear error


def _run_request(
    settings: Settings,
    storage: UserStorage,
    request: FitRequest | SampleRequest,
    emit: Emit,
    upload_key: bytes,
    wait_turn: Callable[[], None],
) -> dict[str, Any]:
    """Run the fit or the sample; returns what its DONE event records."""
    if isinstance(request, SampleRequest):
        from .sampling import run_sample

        wait_turn()
        result = run_sample(storage, settings, request.model, request.rows, emit, request.conditions, request.seed)
        return {"output": result["name"]}
    from .fitting import run_fit

    return {"model": run_fit(storage, settings, request, emit, upload_key, wait_turn=wait_turn)["model"]}


def _running_now(emit: Emit) -> Callable[[], None]:
    def wait_turn() -> None:
        emit(event("state", state=RUNNING))

    return wait_turn


def _recorder(store: JobStore, job_id: str) -> Emit:
    """The job's ``emit``: each event appended to its log."""

    def emit(record: dict[str, Any]) -> None:
        if record.get("stage") == "saving":
            # From here the model is being published: a cancel now would leave
            # it half-kept, so SIGTERM waits until DONE is recorded (the
            # canceller's SIGKILL still ends a save that hangs).
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        store.append(job_id, record)

    return emit


def _queue_up(settings: Settings, store: JobStore, job_id: str, emit: Emit) -> tuple[Path, Callable[[], None]]:
    """Take the job's place in the queue now; the ``wait_turn`` returned blocks until it may run.

    The place is taken before the upload is loaded, in the order the jobs
    were created; the slot taken at the turn is held until the process exits.
    """
    queue = Queue(settings.data_dir, settings.max_running_jobs)
    created_at = fold(job_id, store.read(job_id)[0]).get("created_at", time.time())
    ticket = queue.take_ticket(created_at, store.user, job_id)

    def wait_turn() -> None:
        try:
            queue.wait(ticket)
        finally:
            ticket.unlink(missing_ok=True)
        emit(event("state", state=RUNNING))

    return ticket, wait_turn


def _unexpected(exc: Exception, job_id: str) -> InternalError:
    """An error no check of ours raised, as the job records it; its traceback goes to the job's output file."""
    from .job_output import data_free_traceback, say

    # Neither place gets str(exc): an unexpected error comes from a
    # library (pandas, torch, rdt) and its message may quote a value.
    # The admin finds where it was raised in the job's output file.
    say("the fit failed:\n" + "\n".join(data_free_traceback(exc)))
    return InternalError(
        f"unexpected {type(exc).__name__} in the fit; `jobs logs {job_id}` shows where"
        " (its message is withheld: it may quote data)"
    )
