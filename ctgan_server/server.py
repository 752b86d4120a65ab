"""The `serve` loop: JSON-lines requests in, replies and progress events out.

Only the methods in ``Server.METHODS`` can be called.  A session must say
`hello` first and `login` before touching any files; from then on every call
works inside that one user's folders.
"""

from __future__ import annotations

import inspect
import logging
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO, Callable

from . import __version__
from .auth import CredentialStore
from .errors import AuthError, CtganError, InternalError, NotFoundError, UsageError, VersionMismatchError
from .protocol import MAX_EPOCHS, MAX_SEED, PROTOCOL_VERSION, check_holdout, decode, encode, error_reply, reply, whole_number
from .runtime import ctgan_available, require_ctgan
from .settings import Settings
from .storage import UserStorage, dataset_stem, sha256_file

log = logging.getLogger("ctgan_server")


class Server:
    METHODS = (
        "hello", "login", "models", "datasets", "upload", "fit", "sample", "download",
        "jobs", "follow", "cancel", "job_logs", "delete_model", "delete_dataset", "passwd", "report",
    )

    def __init__(self, settings: Settings, out: BinaryIO):
        self.settings = settings
        self.out = out
        self.greeted = False
        self.storage: UserStorage | None = None
        self.unclaimed_uploads: set[Path] = set()

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(encode(message))
        self.out.flush()

    def handle(self, line: bytes) -> None:
        msg_id = None
        try:
            message = decode(line)
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
        except CtganError as exc:
            self.send(error_reply(msg_id, exc))
        except Exception as exc:  # noqa: BLE001  the client must get a reply, the log gets the traceback
            traceback.print_exc(file=sys.stderr)
            self.send(error_reply(msg_id, InternalError(f"unexpected {type(exc).__name__}: {exc}")))
        else:
            self.send(reply(msg_id, result))

    # -- methods -----------------------------------------------------------
    def do_hello(self, protocol: int, version: str) -> dict[str, Any]:
        if protocol != PROTOCOL_VERSION or version != __version__:
            raise VersionMismatchError(
                f"client is ctgan-server-cli {version} (protocol {protocol}), server is {__version__} "
                f"(protocol {PROTOCOL_VERSION}); install the same release on both sides "
                "(git pull, then pip install -r requirements.txt)"
            )
        self.greeted = True
        return {
            "protocol": PROTOCOL_VERSION,
            "version": __version__,
            "python": sys.version.split()[0],
            "ctgan": ctgan_available(),
        }

    def do_login(self, user: str, password: str) -> dict[str, Any]:
        name = CredentialStore(self.settings.credentials_file).authenticate(user, password)
        self.storage = UserStorage(self.settings.data_dir, name)
        self.storage.sweep_leftovers()
        from .jobs import JobStore

        self.jobs = JobStore(self.settings.data_dir, name)
        return {"user": name}

    def do_passwd(self, old: str, new: str) -> dict[str, Any]:
        CredentialStore(self.settings.credentials_file).change_password(self.storage.user, old, new)
        return {"user": self.storage.user}

    def do_delete_model(self, name: str) -> dict[str, Any]:
        self.storage.delete_model(name)
        return {"deleted": name}

    def do_delete_dataset(self, name: str) -> dict[str, Any]:
        self.storage.delete_dataset(name)
        return {"deleted": name}

    def do_report(self, model: str) -> dict[str, Any]:
        """The report the fit job stored in the model's JSON, with the loss curve."""
        self.storage.model_path(model)
        meta = self.storage.read_model_meta(model)
        if not meta.get("report"):
            raise NotFoundError(f"model {model} has no report (it was made before reports existed); refit it")
        return {"model": model, **meta["report"], "losses": meta.get("fit", {}).get("losses", [])}

    def do_models(self) -> list[dict[str, Any]]:
        return self.storage.list_models()

    def do_datasets(self) -> list[dict[str, Any]]:
        return self.storage.list_datasets()

    def do_upload(self) -> dict[str, Any]:
        require_ctgan()  # refuse before the confidential file travels anywhere
        path = self.storage.new_staging_path()
        self.unclaimed_uploads.add(path)
        return {"token": path.name.split(".")[0], "path": str(path)}

    def discard_unclaimed_uploads(self) -> None:
        """An upload this session never fitted on must not outlive the session."""
        for path in self.unclaimed_uploads:
            path.unlink(missing_ok=True)
        self.unclaimed_uploads.clear()

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
    ) -> dict[str, Any]:
        """Start the fit as a detached job; the job loads and deletes the upload itself."""
        from .jobs import start

        require_ctgan()
        whole_number(epochs, "epochs", MAX_EPOCHS)
        if seed is not None:
            whole_number(seed, "seed", MAX_SEED, minimum=0)
        holdout = check_holdout(holdout)
        staged = self.storage.staged_path(token)
        if not staged.exists():
            raise NotFoundError("the uploaded file is gone from the staging folder; upload again")
        filename = _base(filename)
        request = {
            "token": token,
            "filename": filename,
            "sha256": str(sha256),
            "epochs": epochs,
            "overrides": _overrides(overrides),
            "text_columns": [str(c) for c in text_columns or []],
            "seed": seed,
            "holdout": holdout,
        }
        job_id = start(self.settings, self.jobs, request, dataset_stem(filename))
        self.unclaimed_uploads.discard(staged)  # the job owns it now, and deletes it on loading
        return {"job": job_id}

    def do_jobs(self) -> list[dict[str, Any]]:
        return self.jobs.list()

    def do_follow(self, job: str) -> dict[str, Any]:
        from .jobs import follow

        return follow(self.jobs, self.jobs.check_id(job), self.send)

    def do_cancel(self, job: str) -> dict[str, Any]:
        from .jobs import cancel

        return cancel(self.jobs, self.jobs.check_id(job))

    def do_job_logs(self, job: str) -> list[str]:
        from .jobs import iter_logs

        return list(iter_logs(self.jobs, self.jobs.check_id(job)))

    def do_sample(self, model: str, rows: int, conditions: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
        from .sampling import run_sample

        return run_sample(self.storage, self.settings, model, rows, self.send, conditions, seed)

    def do_download(self, name: str) -> dict[str, Any]:
        path = self.storage.dataset_path(name)
        return {"name": path.name, "path": str(path), "size_bytes": path.stat().st_size, "sha256": sha256_file(path)}


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


def serve(settings_loader: Callable[[], Settings], out: BinaryIO, inp: BinaryIO) -> int:
    # Our own log at INFO; libraries (rdt prints "Guidance" notes) only from WARNING.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="ctgan_server: %(message)s")
    log.setLevel(logging.INFO)
    # A dropped SSH connection or a kill ends the loop through SystemExit, so
    # the clean-up below still runs.
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _exit_on_signal)
    server = None
    try:
        for line in inp:
            if not line.strip():
                continue
            if server is None:
                try:
                    server = Server(settings_loader(), out)
                except CtganError as exc:
                    out.write(encode(error_reply(decode(line).get("id"), exc)))
                    out.flush()
                    return exc.exit_code
            server.handle(line)
    except BrokenPipeError:
        return 1  # the client went away mid-reply
    finally:
        if server is not None:
            server.discard_unclaimed_uploads()
    return 0


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)
