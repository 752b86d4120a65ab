"""Who did what, from where: a per-user audit trail, and the growing delay after failed logins.

``audit/<user>.log`` under the data folder gets one line per login, failed
login, fit, sample, download and delete::

    2024-05-01T12:00:00Z fit 203.0.113.7 job=20240501t120000-a1b2c3
    2024-05-01T12:09:14Z delete 203.0.113.7 model=patients_20240501t120000_model.gz

It names files, jobs and addresses, never data or passwords, so it can be
kept longer than the data and shown to an auditor.  Every value is reduced to
plain file-name characters before it is written: a hostile file or model
name cannot start a line of its own or pass for another field.

``.login_failures.json`` counts consecutive failed logins per username across
all sessions and servers sharing the data folder; `serve` waits ``delay(name)``
before checking a password for that name, so guessing online gets slow while
one mistyped password costs nothing noticeable.

This module is imported by every `serve` and must stay stdlib-only and light.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

from .auth import USERNAME_RE
from .storage import iso_utc, make_private_dir
from .wire import atomic_write_text

EVENTS = ("login", "login-failed", "fit", "sample", "download", "delete")
_FIELD_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_UNSAFE_VALUE = re.compile(r"[^A-Za-z0-9._-]")
_UNSAFE_ADDRESS = re.compile(r"[^A-Za-z0-9.:%_-]")  # IPv4, IPv6 and a zone like fe80::1%eth0
MAX_VALUE_CHARS = 200  # a model name is well under this; a longer value is cut, not refused


def _clean(value: Any, unsafe: re.Pattern[str] = _UNSAFE_VALUE) -> str:
    """One token of an audit line: no space, newline, '=' or anything else that could forge a field or a line."""
    if value is None:
        return "-"
    text = unsafe.sub("_", str(value))[:MAX_VALUE_CHARS]
    return text or "-"


def client_address() -> str:
    """The client's IP address as sshd tells it to `serve`, or "local" for the local transport."""
    for variable in ("SSH_CONNECTION", "SSH_CLIENT"):  # "client_ip client_port ..." in both
        fields = os.environ.get(variable, "").split()
        if fields:
            return _clean(fields[0], _UNSAFE_ADDRESS)
    return "local"


class AuditLog:
    """One user's audit trail: ``<data_dir>/audit/<user>.log``, folder 0700, file 0600."""

    def __init__(self, data_dir: Path, user: str):
        if not isinstance(user, str) or not USERNAME_RE.fullmatch(user):
            # The caller passes an authenticated name; anything else is a bug, and must not become a path.
            raise ValueError(f"not a username: {user!r}")
        self.folder = Path(data_dir) / "audit"
        self.user = user

    @property
    def path(self) -> Path:
        """The log file: what `users remove` archives."""
        return self.folder / f"{self.user}.log"

    def record(self, event: str, address: str, **fields: Any) -> None:
        """Append one line: UTC time, event, address, then ``key=value`` fields in the order given."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}; known: {', '.join(EVENTS)}")
        parts = [iso_utc(time.time()), event, _clean(address, _UNSAFE_ADDRESS)]
        for key, value in fields.items():
            if not _FIELD_KEY.fullmatch(key):
                raise ValueError(f"bad audit field name {key!r}")
            parts.append(f"{key}={_clean(value)}")
        line = (" ".join(parts) + "\n").encode("ascii")  # _clean leaves ASCII only
        make_private_dir(self.folder)
        # One write on an O_APPEND descriptor: lines of concurrent sessions
        # never interleave.  O_NOFOLLOW: a symlink planted in place of the log
        # must not redirect it.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="ascii", errors="replace").splitlines()
        except FileNotFoundError:
            return []


class LoginFailures:
    """Consecutive failed logins per username, shared by every session through one small JSON file.

    The file maps a name to ``{"count": n, "last": unix time of the last
    failure}``.  Only names that could be real users are kept, so a client
    sending junk names cannot grow it, and it never holds more than
    MAX_NAMES names: beyond that the names whose last failure is oldest go.
    """

    # A JSON file of this many names is about half a megabyte: rewritten per
    # failure, that is still cheap next to the scrypt check of the password.
    MAX_NAMES = 10_000

    def __init__(self, data_dir: Path, max_delay: float):
        self.file = Path(data_dir) / ".login_failures.json"
        self.lock_file = Path(data_dir) / ".login_failures.lock"
        self.max_delay = max_delay

    @staticmethod
    def _kept(name: Any) -> bool:
        # A name that cannot be a user can never log in: delaying it protects
        # nobody, and storing it would let a client fill the file.
        return isinstance(name, str) and USERNAME_RE.fullmatch(name) is not None

    def _load(self) -> dict[str, dict[str, float]]:
        # No lock needed to read: the file is only ever replaced whole.
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return {}  # missing or damaged: start again rather than lock everyone out
        if not isinstance(data, dict):
            return {}
        entries = {}
        for name, entry in data.items():
            if (
                self._kept(name)
                and isinstance(entry, dict)
                and isinstance(entry.get("count"), int)
                and entry["count"] > 0
                and isinstance(entry.get("last"), (int, float))
            ):
                entries[name] = {"count": entry["count"], "last": entry["last"]}
        return entries

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, float]]]:
        """The entries, for a read-modify-write that no other session can interleave with."""
        if not self.file.parent.is_dir():
            make_private_dir(self.file.parent)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._load()
        finally:
            os.close(fd)  # closing releases the lock

    def _save(self, entries: dict[str, dict[str, float]]) -> None:
        if len(entries) > self.MAX_NAMES:
            newest = sorted(entries.items(), key=lambda item: item[1]["last"], reverse=True)[: self.MAX_NAMES]
            entries = dict(newest)
        atomic_write_text(self.file, json.dumps(entries, sort_keys=True))  # created 0600

    def count(self, name: Any) -> int:
        if not self._kept(name):
            return 0
        return int(self._load().get(name, {}).get("count", 0))

    def delay(self, name: Any) -> float:
        """Seconds to wait before checking a password for ``name``: 0, then 2 ** (n - 5) after n failures, capped.

        Four mistypes cost under a second in all; from the 5th failure on
        every guess waits 1, 2, 4 ... s, up to ``max_delay``.
        """
        n = self.count(name)
        if n == 0:
            return 0.0
        return float(min(2.0 ** (n - 5), self.max_delay))

    def failed(self, name: Any, now: float | None = None) -> None:
        if not self._kept(name):
            return
        with self._locked() as entries:
            entry = entries.get(name, {"count": 0, "last": 0})
            entries[name] = {"count": int(entry["count"]) + 1, "last": time.time() if now is None else now}
            self._save(entries)

    def succeeded(self, name: Any) -> None:
        """A correct password: the name starts again from no delay."""
        if not self._kept(name) or name not in self._load():
            return  # the usual case: no lock, no write
        with self._locked() as entries:
            if entries.pop(name, None) is not None:
                self._save(entries)
