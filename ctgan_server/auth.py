"""App-level users: salted scrypt hashes kept in ``<data_dir>/credentials.json`` (0600).

Users once lived in the tracked ``credentials.py``; a server that still finds
some there moves them into the JSON once (``adopt_legacy``) and leaves the
file as the empty template that git ships, so a `git pull` never touches users.
The legacy file is parsed with ``ast.literal_eval``, never imported.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import sys
from pathlib import Path
from typing import Iterator

from .storage import make_private_dir
from .wire import (
    AuthError,
    BadDataError,
    ConfigError,
    InvalidNameError,
    NotFoundError,
    atomic_write_text,
)

# n=2**14 costs about 0.07 s per check on a 2-core machine: well under the
# 0.1 s login budget while still ~16k times dearer than a plain SHA-256.
SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_LEN = 2**14, 8, 1, 32
USERNAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MIN_PASSWORD_LEN = 8

LEGACY_TEMPLATE = '''"""Users no longer live here.

ctgan-server-cli keeps its app users in <data_dir>/credentials.json (0600,
not tracked by git), managed with `ctgan-server users ...`.  A server
that finds users below moves them there once and empties this file again.
"""

USERS = {
}
'''


def check_username(name: str) -> str:
    if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid username {name!r}: use 1-32 lowercase letters, digits, '_' or '-', starting with a letter"
        )
    return name


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LEN:
        raise BadDataError(f"password too short: use at least {MIN_PASSWORD_LEN} characters")
    return password


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_LEN, maxmem=2**26)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


# Checked against when the user does not exist, so that an unknown name costs
# the same scrypt time as a wrong password and cannot be told apart by timing.
# Precomputed: hashing at import would add a scrypt run to every server start.
_DUMMY_HASH = "scrypt$16384$8$1$wREMm4GNNNkSoyjHnxcbqQ==$v/2g7RbLFRi+GlMDe/MSBiH2vRlIxy6rYoXLC5Mko8c="


class CredentialStore:
    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            users = json.loads(self.path.read_text(encoding="utf-8")).get("users", {})
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"{self.path} is damaged ({exc}); restore it from a backup") from exc
        if not isinstance(users, dict):
            raise ConfigError(f"{self.path}: users must be an object")
        return {str(k): str(v) for k, v in users.items()}

    def save(self, users: dict[str, str]) -> None:
        make_private_dir(self.path.parent)
        atomic_write_text(self.path, json.dumps({"users": dict(sorted(users.items()))}, indent=1) + "\n")

    def adopt_legacy(self, legacy: Path) -> list[str]:
        """Move users found in the old tracked credentials.py here, once; returns their names."""
        if not legacy.is_file():
            return []
        found = read_legacy_users(legacy)
        if not found:
            return []
        with self.locked():
            users = self.load()
            moved = [name for name in sorted(found) if name not in users]
            users.update({name: found[name] for name in moved})
            self.save(users)
            atomic_write_text(legacy, LEGACY_TEMPLATE)
        print(
            f"ctgan_server: moved {len(moved)} user(s) from {legacy} to {self.path}; {legacy.name} is now the empty template",
            file=sys.stderr,
        )
        return moved

    def names(self) -> list[str]:
        return sorted(self.load())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise read-modify-write: two users changing passwords at once must not undo each other."""
        make_private_dir(self.path.parent)
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def add(self, name: str, password: str) -> None:
        with self.locked():
            self.add_unlocked(name, password)

    def add_unlocked(self, name: str, password: str) -> None:
        users = self.load()
        if check_username(name) in users:
            raise BadDataError(f"user {name!r} already exists; use `users passwd {name}` to change the password")
        users[name] = hash_password(check_new_password(password))
        self.save(users)

    def set_password(self, name: str, password: str) -> None:
        with self.locked():
            self._set_password(name, password)

    def change_password(self, name: str, old: str, new: str) -> None:
        """A user's own change: the old password first, as at login."""
        check_new_password(new)
        with self.locked():
            self.authenticate(name, old)
            self._set_password(name, new)

    def _set_password(self, name: str, password: str) -> None:
        users = self.load()
        if check_username(name) not in users:
            raise NotFoundError(f"no user {name!r}")
        users[name] = hash_password(check_new_password(password))
        self.save(users)

    def remove(self, name: str) -> None:
        with self.locked():
            self.remove_unlocked(name)

    def remove_unlocked(self, name: str) -> None:
        users = self.load()
        if check_username(name) not in users:
            raise NotFoundError(f"no user {name!r}")
        del users[name]
        self.save(users)

    def authenticate(self, name: str, password: str, only: str | None = None) -> str:
        """Return the user's name if the password is right; the same error for every failure.

        ``only`` is the one name this session may log in as (the SSH key's);
        any other is refused like an unknown user, after the same scrypt work.
        """
        known = isinstance(name, str) and USERNAME_RE.fullmatch(name) and (only is None or name == only)
        users = self.load() if known else {}
        stored = users.get(name)
        ok = verify_password(str(password), stored or _DUMMY_HASH)
        if not (ok and stored):
            raise AuthError("wrong username or password")
        return name


def read_legacy_users(path: Path) -> dict[str, str]:
    """The USERS dict of an old credentials.py, read as data (never imported)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        users: object = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "USERS" for t in node.targets):
                users = ast.literal_eval(node.value)
    except (SyntaxError, ValueError) as exc:
        raise ConfigError(f"{path} is damaged ({exc}); restore it from a backup") from exc
    if not isinstance(users, dict):
        raise ConfigError(f"{path}: USERS must be a dict")
    return {str(k): str(v) for k, v in users.items()}
