"""The `serve` loop: requests in, replies, progress events and data frames out.

Only the methods in ``Server.METHODS`` can be called.  A session must say
`hello` first and `login` before touching any files; from then on every call
works inside that one user's folders.  A session started by an SSH key's
forced command (`serve --as NAME`) accepts a login for that name only.
Input that is not the protocol ends the session with one error line.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import select
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, BinaryIO, Callable

from . import __version__
from .auth import CredentialStore
from .runtime import ctgan_available, require_ctgan
from .settings import Settings
from .storage import UserStorage
from .wire import (
    DONE,
    MAX_EPOCHS,
    MAX_LINE,
    MAX_ROWS,
    MAX_SEED,
    PROTOCOL_MAX,
    PROTOCOL_MIN,
    AuthError,
    CtganError,
    FrameWriter,
    InternalError,
    NotFoundError,
    ProtocolError,
    UsageError,
    check_holdout,
    check_protect,
    check_rules,
    decode,
    encode,
    error_reply,
    job_error,
    negotiate,
    read_frames,
    reply,
    whole_number,
    write_frames,
)

log = logging.getLogger("ctgan_server")
MAX_FAILED_LOGINS = 5  # per session; then the session is closed
READ_BLOCK = 1 << 20


class CloseSession(Exception):
    """The stream is out of step or the client is not to be trusted further: reply, then end the session."""


class Inbox:
    """The client's byte stream: bounded lines, exact reads for frames, and a check for a vanished client."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()
        self.eof = False

    def _fill(self) -> None:
        data = os.read(self.fd, READ_BLOCK)
        if data:
            self.buffer += data
        else:
            self.eof = True

    def first_byte(self) -> int | None:
        """The first byte that is not white space, without consuming it (None at EOF)."""
        while True:
            stripped = self.buffer.lstrip()
            if stripped:
                return stripped[0]
            self.buffer.clear()
            if self.eof:
                return None
            self._fill()

    def readline(self) -> bytes | None:
        searched = 0
        while True:
            end = self.buffer.find(b"\n", searched)
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > MAX_LINE:
                self.buffer.clear()
                raise CloseSession(f"a request line longer than {MAX_LINE:,} bytes")
            if self.eof:
                line, self.buffer = bytes(self.buffer), bytearray()
                return line or None
            searched = len(self.buffer)
            self._fill()

    def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n and not self.eof:
            self._fill()
        if len(self.buffer) < n:
            raise CloseSession("the client went away in the middle of a transfer")
        with memoryview(self.buffer) as view:
            data = bytes(view[:n])  # one copy, not a slice and then a copy
        del self.buffer[:n]
        return data

    def client_gone(self) -> bool:
        """True once the client has closed its side; any bytes that arrive meanwhile are kept."""
        if self.eof:
            return True
        readable, _, _ = select.select([self.fd], [], [], 0)
        if readable:
            self._fill()
            if len(self.buffer) > MAX_LINE:
                # Nothing is read while a call runs: a client that keeps sending is not our client.
                raise CloseSession(f"more than {MAX_LINE:,} bytes sent while a call was running")
        return self.eof


class Server:
    METHODS = (
        "hello",
        "login",
        "models",
        "datasets",
        "upload",
        "fit",
        "sample",
        "download",
        "jobs",
        "follow",
        "cancel",
        "job_logs",
        "delete_job",
        "delete_model",
        "delete_dataset",
        "passwd",
        "report",
        "doctor",
    )

    def __init__(self, settings: Settings, out: BinaryIO, inbox: Inbox | None = None, pinned: str | None = None):
        self.settings = settings
        self.out = out
        self.inbox = inbox
        self.pinned = pinned  # the user an SSH key's forced command names; None for an admin's key or locally
        self.greeted = False
        self.failed_logins = 0
        self.storage: UserStorage | None = None
        # Uploads this session received and no fit has claimed yet, with their keys (``sealed_upload``).
        self.unclaimed_uploads: dict[Path, bytes] = {}
        from .audit import client_address

        self.address = client_address()

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(encode(message))
        self.out.flush()

    def handle(self, line: bytes) -> bool:
        """Answer one request line; False when the session must end."""
        msg_id = None
        try:
            try:
                message = decode(line)
            except ProtocolError as exc:
                raise CloseSession(exc.message) from None
            msg_id = message.get("id")
            method, params = message.get("method"), message.get("params") or {}
            if method not in self.METHODS or not isinstance(params, dict):
                raise UsageError(f"unknown method {method!r}")
            if method != "hello" and not self.greeted:
                raise UsageError("say hello first")
            if method not in ("hello", "login") and self.storage is None:
                raise AuthError("log in first")
            handler = getattr(self, f"do_{method}")
            try:
                inspect.signature(handler).bind(**params)
            except TypeError as exc:
                raise UsageError(f"bad parameters for {method}: {exc}") from None
            result = handler(**params)
        except CloseSession as exc:
            error = (
                exc.args[0]
                if isinstance(exc.args[0], CtganError)
                else ProtocolError(f"not the ctgan-server-cli protocol ({exc.args[0]}); this session is closed")
            )
            self.send(error_reply(msg_id, error))
            return False
        except CtganError as exc:
            self.send(error_reply(msg_id, exc))
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self.send(error_reply(msg_id, InternalError(f"unexpected {type(exc).__name__}: {exc}")))
        else:
            self.send(reply(msg_id, result))
        return True

    # -- methods -----------------------------------------------------------
    def do_hello(
        self, version: str, protocol: int | None = None, protocols: list[int] | None = None, **_later: Any
    ) -> dict[str, Any]:
        """Agree on a protocol version: the highest that the client's range and ours share.

        ``protocols`` is the client's [lowest, highest]; a client of 0.1.0 sent
        only ``protocol``, its one version.  The release versions may differ.
        Parameters a later client adds are ignored (``_later``): refusing them
        would hide the version answer behind a "bad parameters" error, as a
        0.1.0 server does.
        """
        if protocols is None:
            protocols = [protocol, protocol]
        if not isinstance(protocols, list) or len(protocols) != 2:
            raise ProtocolError(f"hello's protocols must be [lowest, highest], not {protocols!r}")
        low, high = protocols
        whole_number(low, "the client's lowest protocol", 1 << 16)
        whole_number(high, "the client's highest protocol", 1 << 16, low)
        self.protocol = negotiate(low, high)
        self.greeted = True
        return {
            "protocol": self.protocol,
            "protocols": [PROTOCOL_MIN, PROTOCOL_MAX],
            "version": __version__,
            "python": sys.version.split()[0],
            "ctgan": ctgan_available(),
            "user": self.pinned,  # the client need not ask for a name its key already fixes
        }

    def do_login(self, user: str, password: str) -> dict[str, Any]:
        if self.storage is not None:
            raise UsageError("already logged in")
        name = self._authenticate(user, password)
        self.storage = UserStorage(self.settings.data_dir, name)
        from .job_store import JobStore

        self.jobs = JobStore(self.settings.data_dir, name)
        self.jobs.sweep(self.settings.job_retention_days)
        # A job waiting its turn (hours, PENDING under Slurm) keeps its staged upload; whatever else is old goes.
        self.storage.sweep_leftovers(keep=self.jobs.waiting_uploads())
        return {"user": name}

    def _authenticate(self, user: Any, password: Any) -> str:
        """Check a login, slowed down per name after failures, and closed after too many in one session.

        A session pinned to another name gets the same answer as a wrong
        password, after the same scrypt work, and never counts against ``user``.
        """
        from .audit import AuditLog

        counted = isinstance(user, str) and (self.pinned is None or user == self.pinned)
        if counted:
            time.sleep(self._failures().delay(user))
        try:
            name = CredentialStore(self.settings.credentials_file).authenticate(user, password, only=self.pinned)
        except AuthError:
            if not counted and self.pinned is not None:
                # Not alice's failure, but her key's holder tried another name: the admin should see it.
                AuditLog(self.settings.data_dir, self.pinned).record("login-failed", self.address, tried=user)
            self._count_failure(user if counted else None)
            raise
        self._failures().succeeded(name)
        AuditLog(self.settings.data_dir, name).record("login", self.address)
        return name

    def _failures(self) -> Any:
        from .audit import LoginFailures

        return LoginFailures(self.settings.data_dir, self.settings.max_login_delay)

    def _count_failure(self, name: str | None) -> None:
        """One more failed login: on disk and in the audit log for ``name`` (if given), and the session ends at the fifth."""
        from .audit import AuditLog

        self.failed_logins += 1
        if name is not None:
            self._failures().failed(name)
            if name in CredentialStore(self.settings.credentials_file).names():
                AuditLog(self.settings.data_dir, name).record("login-failed", self.address)
        if self.failed_logins >= MAX_FAILED_LOGINS:
            raise CloseSession(AuthError(f"wrong username or password; {MAX_FAILED_LOGINS} failed logins close the session"))

    def audit(self, event: str, **fields: Any) -> None:
        from .audit import AuditLog

        AuditLog(self.settings.data_dir, self.storage.user).record(event, self.address, **fields)

    def do_passwd(self, old: str, new: str) -> dict[str, Any]:
        # A wrong current password is a failed login, slowed down the same way:
        # passwd must not be a free password oracle.
        time.sleep(self._failures().delay(self.storage.user))
        try:
            CredentialStore(self.settings.credentials_file).change_password(self.storage.user, old, new)
        except AuthError:
            self._count_failure(self.storage.user)
            raise
        self._failures().succeeded(self.storage.user)
        return {"user": self.storage.user}

    def do_delete_model(self, name: str) -> dict[str, Any]:
        self.storage.delete_model(name)
        self.jobs.delete_for_model(name)  # its job's log described the data it was fitted on
        self.audit("delete", model=name)
        return {"deleted": name}

    def do_delete_dataset(self, name: str) -> dict[str, Any]:
        self.storage.delete_dataset(name)
        self.audit("delete", dataset=name)
        return {"deleted": name}

    def do_delete_job(self, job: str) -> dict[str, Any]:
        self.jobs.delete(self.jobs.check_id(job))
        self.audit("delete", job=job)
        return {"deleted": job}

    def do_report(self, model: str) -> dict[str, Any]:
        """The report the fit job stored in the model's JSON, with the loss curve."""
        self.storage.model_path(model)
        meta = self.storage.read_model_meta(model)
        if not meta.get("report"):
            raise NotFoundError(f"model {model} has no report (it was made before reports existed); refit it")
        fit = meta.get("fit", {})
        # Where it trained, beside how: the model JSON's device facts (None for models made before it kept them).
        facts = {"losses": fit.get("losses", []), "device": fit.get("device"), "device_name": fit.get("device_name")}
        from .protection import summary

        # What value protection merged and bounded, as counts and quantiles (None for models made before it).
        facts["protection"] = summary(meta.get("columns") or [])
        return {"model": model, **meta["report"], **facts}

    def do_doctor(self) -> list[dict[str, Any]]:
        """The server's health as any user may see it (doctor.USER_CHECKS): none of another user's file names or keys."""
        from .doctor import USER_CHECKS, run_checks

        return [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in run_checks(self.settings, USER_CHECKS)]

    def do_models(self) -> list[dict[str, Any]]:
        return self.storage.list_models()

    def do_datasets(self) -> list[dict[str, Any]]:
        return self.storage.list_datasets()

    def do_upload(self, filename: str = "upload.csv", csv_bytes: int | None = None) -> dict[str, Any]:
        """Receive a gzipped CSV as frames into the user's staging folder.

        Only the compressed size is checked here, frame by frame, so the
        upload runs at the channel's speed; the job inflates it under every
        other limit (max_csv_bytes, max_ratio, max_rows) before it queues.
        """
        from .limits import check_quota, check_staged, csv_too_big, upload_too_big

        require_ctgan()  # refuse before the confidential file travels anywhere
        check_quota(self.settings, self.storage)
        check_staged(self.settings, self.storage.staged_count())
        filename = _base(filename)
        if csv_bytes is not None and whole_number(csv_bytes, "csv_bytes", 2**62, minimum=0) > self.settings.max_csv_bytes:
            # The client says how big the CSV is: refuse a hopeless upload before a byte is sent.
            raise csv_too_big(self.settings, filename)
        from .sealed_upload import SealedWriter

        path = self.storage.new_staging_path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                sealed = SealedWriter(fh)  # the original never touches the disk in the clear
                self.unclaimed_uploads[path] = sealed.key
                self.send({"event": "send"})
                try:
                    sha256, size = read_frames(
                        self.inbox.read_exactly,
                        sealed.write,
                        self.settings.max_upload_bytes,
                        upload_too_big(self.settings, filename).message,
                    )
                except CtganError as exc:
                    # The client is still sending frames: the stream cannot be resynchronised.
                    raise CloseSession(exc) from None
                sealed.close()
        except BaseException:
            path.unlink(missing_ok=True)
            self.unclaimed_uploads.pop(path, None)
            raise
        return {"token": path.name.split(".")[0], "sha256": sha256, "size": size}

    def discard_unclaimed_uploads(self) -> None:
        """An upload this session never fitted on must not outlive the session."""
        for path in self.unclaimed_uploads:
            path.unlink(missing_ok=True)
        self.unclaimed_uploads.clear()  # and with them the only copies of their keys

    def do_fit(
        self,
        token: str,
        filename: str,
        sha256: str,
        epochs: int,
        overrides: dict[str, list[str]] | None = None,
        text_columns: list[str] | None = None,
        seed: int | None = None,
        holdout: float = 0.0,
        protect: str = "rare",
        constraints: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Start the fit as a detached job; the job loads and deletes the upload itself."""
        from .fit_request import FitRequest
        from .job_runner import start
        from .limits import check_epochs, check_jobs, check_quota

        require_ctgan()
        staged = self.storage.staged_path(token)
        try:
            check_epochs(self.settings, whole_number(epochs, "epochs", MAX_EPOCHS))
            if seed is not None:
                whole_number(seed, "seed", MAX_SEED, minimum=0)
            holdout = check_holdout(holdout)
            protect = check_protect(protect)
            rules = check_rules(constraints or [])  # their columns and the data are checked by the job
            check_quota(self.settings, self.storage)
            check_jobs(self.settings, self.jobs.list())
        except CtganError:
            staged.unlink(missing_ok=True)  # a refused fit leaves no original behind
            self.unclaimed_uploads.pop(staged, None)
            raise
        key = self.unclaimed_uploads.get(staged)
        if key is None or not staged.exists():
            # A token from another session, or one already fitted: its key is gone with that session.
            raise NotFoundError("the uploaded file is gone from the staging folder; upload again")
        request = FitRequest(
            token=token,
            filename=_base(filename),
            sha256=str(sha256),
            epochs=epochs,
            overrides=_overrides(overrides),
            text_columns=tuple(str(c) for c in text_columns or ()),
            seed=seed,
            holdout=holdout,
            protect=protect,
            constraints=tuple(rules),
        )
        job_id = start(self.settings, self.jobs, request, upload_key=key)
        del self.unclaimed_uploads[staged]  # the job owns it now, and deletes it on loading
        self.audit("fit", job=job_id)
        return {"job": job_id}

    def do_jobs(self) -> list[dict[str, Any]]:
        return self.jobs.list()

    def do_follow(self, job: str) -> dict[str, Any]:
        from .job_runner import follow

        try:
            return follow(
                self.jobs, self.jobs.check_id(job), self.send, client_gone=self.inbox.client_gone if self.inbox else None
            )
        except ConnectionAbortedError:
            raise SystemExit(0) from None  # nobody is listening: stop following, the job runs on

    def do_cancel(self, job: str) -> dict[str, Any]:
        from .job_runner import cancel

        return cancel(self.jobs, self.jobs.check_id(job))

    def do_job_logs(self, job: str) -> list[str]:
        from .job_runner import iter_logs

        return list(iter_logs(self.jobs, self.jobs.check_id(job)))

    def do_sample(
        self, model: str, rows: int, conditions: dict[str, Any] | None = None, seed: int | None = None, stream: bool = False
    ) -> dict[str, Any]:
        """Sample into a stored dataset.

        With ``stream``, its gzip members also go to the client as frames while sampling goes on.
        """
        from .sampling import run_sample

        if not isinstance(stream, bool):
            raise UsageError(f"stream must be true or false, not {stream!r}")
        if self.protocol >= 4 and whole_number(rows, "rows", MAX_ROWS) > self.settings.sample_job_rows:
            return self._sample_as_job(model, rows, conditions, seed, stream)
        frames: FrameWriter | None = None

        def emit(event: dict[str, Any]) -> None:
            if frames is None:  # once frames flow, nothing else may come between them
                self.send(event)

        def send_member(member: bytes) -> None:
            nonlocal frames
            if frames is None:
                self.send({"event": "frames", "rows": rows})
                frames = FrameWriter(self.out.write)
            frames.send(member)

        try:
            result = run_sample(self.storage, self.settings, model, rows, emit, conditions, seed, send_member if stream else None)
        finally:
            if frames is not None:
                # The end frame goes out whatever happened, so the reply
                # (or the error) that follows is read as a line again.
                with contextlib.suppress(OSError):
                    frames.close()
                    self.out.flush()
        self.audit("sample", model=model, dataset=result["name"])
        return result

    def _sample_as_job(
        self, model: str, rows: int, conditions: dict[str, Any] | None, seed: int | None, stream: bool
    ) -> dict[str, Any]:
        """A large sample: run it as a job, follow it, then send the stored dataset as a streamed sample's reply.

        The job survives a dropped connection (`jobs follow`, then
        `download`), can be cancelled, and waits its turn like a fit.  What
        can be refused is refused here first, so a typo does not queue.
        """
        from .fit_request import SampleRequest
        from .job_runner import follow, start
        from .limits import check_jobs, check_sample_rows
        from .transform import parse_conditions

        check_sample_rows(self.settings, rows)
        if seed is not None:
            whole_number(seed, "seed", MAX_SEED, minimum=0)
        if conditions is not None and not isinstance(conditions, dict):
            raise UsageError("conditions must map column names to values")
        meta = self.storage.read_model_meta(model)
        parse_conditions(conditions, meta)
        check_jobs(self.settings, self.jobs.list())
        job_id = start(self.settings, self.jobs, SampleRequest(model, rows, conditions, seed))
        self.audit("sample", model=model, job=job_id)
        self.send({"event": "job", "job": job_id})
        try:
            final = follow(self.jobs, job_id, self.send, client_gone=self.inbox.client_gone if self.inbox else None)
        except ConnectionAbortedError:
            raise SystemExit(0) from None  # nobody is listening: the job runs on
        if final["state"] != DONE:
            raise job_error(final)
        path = self.storage.dataset_path(final["output"])
        result = {"name": path.name, "rows": rows, "dtypes": {c["name"]: c["dtype"] for c in meta["columns"]}, "job": job_id}
        if stream:
            return {**result, **self._send_file(path)}
        return {**result, "path": str(path), "size_bytes": path.stat().st_size}

    def do_download(self, name: str) -> dict[str, Any]:
        """Send a stored dataset as frames; the reply carries the sha256 the client checks."""
        path = self.storage.dataset_path(name)
        self.audit("download", dataset=path.name)
        return {"name": path.name, **self._send_file(path)}

    def _send_file(self, path: Path) -> dict[str, Any]:
        with open(path, "rb") as fh:
            self.send({"event": "frames", "name": path.name, "size": os.fstat(fh.fileno()).st_size})
            sha256, size = write_frames(self.out.write, iter(lambda: fh.read(READ_BLOCK), b""))
        self.out.flush()
        return {"size_bytes": size, "sha256": sha256}


def _overrides(given: Any) -> dict[str, list[str]]:
    from .schema import OVERRIDES

    if given is None:
        return {}
    if not isinstance(given, dict) or set(given) - set(OVERRIDES):
        raise UsageError(f"overrides must map some of {', '.join(OVERRIDES)} to column names")
    return {option: [str(c) for c in names] for option, names in given.items()}


def _base(filename: Any) -> str:
    # The client sends the original's file name only to name the model; any
    # directory part is the client's business, never a path on the server.
    return str(filename).replace("\\", "/").rsplit("/", 1)[-1]


def serve(settings_loader: Callable[[], Settings], out: BinaryIO, inp_fd: int, pinned: str | None = None) -> int:
    # Our own log at INFO; libraries (rdt prints "Guidance" notes) only from WARNING.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="ctgan_server: %(message)s")
    log.setLevel(logging.INFO)
    # A dropped SSH connection or a kill ends the loop through SystemExit, so
    # the clean-up below still runs.
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _exit_on_signal)
    inbox = Inbox(inp_fd)
    server = None
    try:
        refusal = _not_the_protocol(inbox, pinned)
        if refusal:
            print(f"ctgan_server: {refusal}", file=sys.stderr)
            out.write(encode(error_reply(None, ProtocolError(refusal))))
            return ProtocolError.exit_code
        while True:
            try:
                line = inbox.readline()
            except CloseSession as exc:
                out.write(encode(error_reply(None, ProtocolError(f"{exc.args[0]}; this session is closed"))))
                return ProtocolError.exit_code
            if line is None:
                break
            if not line.strip():
                continue
            if server is None:
                try:
                    settings = settings_loader()
                    CredentialStore(settings.credentials_file).adopt_legacy(settings.legacy_credentials_file)
                    server = Server(settings, out, inbox, pinned)
                except CtganError as exc:
                    out.write(encode(error_reply(_id_of(line), exc)))
                    return exc.exit_code
            if not server.handle(line):
                return ProtocolError.exit_code
    except BrokenPipeError:
        return 1  # the client went away mid-reply
    finally:
        if server is not None:
            server.discard_unclaimed_uploads()
    return 0


def _id_of(line: bytes) -> Any:
    try:
        return decode(line).get("id")
    except ProtocolError:
        return None


def _not_the_protocol(inbox: Inbox, pinned: str | None) -> str | None:
    """Why this session is not our client speaking, if it is not: a shell command, sftp, a typed line."""
    asked = os.environ.get("SSH_ORIGINAL_COMMAND")
    # Our client asks for `cd DIR && exec PYTHON -m ctgan_server serve`.
    if pinned is not None and asked is not None and not asked.rstrip().endswith("ctgan_server serve"):
        # A forced command runs us whatever the client asked for; say no plainly.
        shown = asked if len(asked) < 60 else asked[:57] + "..."
        return f"this SSH key only runs the ctgan-server-cli protocol (the ctgan-host client), not {shown!r}"
    first = inbox.first_byte()
    if first is not None and first != ord("{"):
        return "this SSH key only runs the ctgan-server-cli protocol (the ctgan-host client); no shell, no sftp"
    return None


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)
