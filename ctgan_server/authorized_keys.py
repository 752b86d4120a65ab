"""App users' SSH keys: forced-command lines in the service account's authorized_keys.

Each line this module writes reads
``command="<python> -m ctgan_server --dir <server_dir> serve --as alice",restrict <key>``:
sshd then runs `serve` pinned to alice whatever the client asks for (a shell,
`cat`, the sftp subsystem), and ``restrict`` turns off forwarding and the pty.
That is the gitolite / `borg serve --restrict-to-path` pattern: sshd proves
who holds the key, so the server never trusts a name the client claims.
Every other line of the file (the admin's own keys) is kept as it is.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import struct
import sys
from dataclasses import dataclass

from .settings import Settings
from .storage import make_private_dir
from .wire import BadDataError, NotFoundError

# The key types OpenSSH 9 accepts in authorized_keys.
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_OURS = re.compile(r'command="[^"]* -m ctgan_server --dir [^"]* serve --as ([a-z][a-z0-9_-]{0,31})"')


@dataclass(frozen=True)
class PublicKey:
    kind: str
    blob: str  # base64, as in the file
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """OpenSSH's form: SHA256 of the key blob, unpadded base64 (what `ssh-keygen -lf` prints)."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def line(self) -> str:
        return f"{self.kind} {self.blob}" + (f" {self.comment}" if self.comment else "")


def parse_public_key(text: str) -> PublicKey:
    """One plain public key (type, base64, optional comment), as in a `.pub` file; anything else is refused."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) != 1:
        raise BadDataError(f"expected one public key, found {len(lines)} lines; give a single .pub file")
    fields = lines[0].split(None, 2)
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise BadDataError(
            "not a plain public key: expected '<type> <base64> [comment]' with a type such as ssh-ed25519 "
            "(options such as command= are written by this tool, not taken from you)"
        )
    kind, blob = fields[0], fields[1]
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        embedded = raw[4 : 4 + length].decode("ascii")
    except (ValueError, struct.error, UnicodeDecodeError):
        raise BadDataError("the public key's base64 part is damaged") from None
    if embedded != kind:
        raise BadDataError(f"the key says it is {kind} but holds a {embedded} key")
    comment = fields[2] if len(fields) > 2 else ""
    # A comment is free text to sshd, but a newline or quote in it must never reach the file.
    comment = re.sub(r"[^\w@.:+=/-]", "_", comment)[:100]
    return PublicKey(kind, blob, comment)


def forced_command(settings: Settings, user: str) -> str:
    # sys.executable as given, not resolved: a venv's python is a symlink, and
    # resolving it would bypass the venv's site-packages.
    parts = [sys.executable, "-m", "ctgan_server", "--dir", str(settings.server_dir), "serve", "--as", user]
    return " ".join(shlex.quote(part) for part in parts)


def key_line(settings: Settings, user: str, key: PublicKey) -> str:
    command = forced_command(settings, user).replace("\\", "\\\\").replace('"', '\\"')
    return f'command="{command}",restrict {key.line()}'


class AuthorizedKeys:
    """The service account's authorized_keys; callers hold the credentials lock while changing it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path = settings.authorized_keys

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def _save(self, lines: list[str]) -> None:
        make_private_dir(self.path.parent)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in lines))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def owner(line: str) -> str | None:
        """The app user a line is pinned to, or None for a line this tool did not write."""
        found = _OURS.match(line.strip())
        return found.group(1) if found else None

    @staticmethod
    def key_text(line: str) -> str | None:
        """The "<type> <base64>" of a line's key, after its options; None when the line names no known key type."""
        fields = line.split()
        for i, field in enumerate(fields[:-1]):
            if field in KEY_TYPES:
                return f"{field} {fields[i + 1]}"
        return None

    @classmethod
    def _blob(cls, line: str) -> str | None:
        text = cls.key_text(line)
        return text.split()[1] if text else None

    def keys(self, user: str) -> list[PublicKey]:
        found = []
        for line in self._lines():
            if self.owner(line) == user:
                rest = line.split(",restrict ", 1)[-1]
                kind, blob, *comment = rest.split(None, 2)
                found.append(PublicKey(kind, blob, comment[0] if comment else ""))
        return found

    def add(self, user: str, key: PublicKey) -> None:
        lines = self._lines()
        for line in lines:
            if self._blob(line) == key.blob:
                holder = self.owner(line)
                where = f"for user {holder!r}" if holder else "as an unrestricted key (an admin's)"
                raise BadDataError(
                    f"that key ({key.fingerprint}) is already in {self.path} {where}; each person needs their own key"
                )
        self._save(lines + [key_line(self.settings, user, key)])

    def remove(self, user: str, fingerprint: str) -> None:
        lines = self._lines()
        kept = [
            line
            for line in lines
            if not (self.owner(line) == user and PublicKey("", self._blob(line) or "").fingerprint == fingerprint)
        ]
        if len(kept) == len(lines):
            raise NotFoundError(f"user {user!r} has no key {fingerprint}; `users keys {user}` lists them")
        self._save(kept)

    def remove_all(self, user: str) -> int:
        lines = self._lines()
        kept = [line for line in lines if self.owner(line) != user]
        if len(kept) != len(lines):
            self._save(kept)
        return len(lines) - len(kept)
