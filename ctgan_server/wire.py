"""What client and server share, and all the client takes from the server package.

Stdlib only and cheap to import: ``ctgan_host`` imports nothing else from
``ctgan_server`` (``evaluate`` and the demo excepted, see the README), so a
laptop that only runs the client needs neither torch nor ``fcntl``
(tests/test_imports.py enforces both).  It holds:

- the error hierarchy: the server sends an error's class name and the
  client raises that same class again (``from_wire``), so a wrong password
  is an ``AuthError`` on both ends.  Each class's docstring is its default
  message and ``exit_code`` the CLI's exit status (the README lists them);
- the protocol: versions, message shapes, transfer frames and their gzip
  members, the checks both sides make on parameters;
- job states, and the error a failed job ends with;
- how `doctor` prints a health check, on either side;
- file names and hashing;
- the environment a server process started by either side inherits.

Message shapes: one JSON object per line.  Requests: ``{"id", "method",
"params"}``.  Replies: ``{"id", "result"}`` or ``{"id", "error": {"type",
"message"}}``.  Progress: ``{"event": KIND, ...}``, sent before the reply of
the request it belongs to.  A line is at most MAX_LINE bytes.

Bulk bytes travel in the same stream, because an app user's SSH key runs
only `serve` (no SFTP): a run of frames, each a 4-byte big-endian length
and that many bytes, ended by a zero-length frame.  An upload's frames follow
the server's ``{"event": "send"}``; a download's follow ``{"event": "frames"}``,
and so do a ``sample`` call's when it asks for ``stream``: the file then
arrives while it is being made, and no progress event comes between its
frames.  The sha256 of the bytes is in the reply, and both sides check it.

Versions: the protocol is negotiated, the release versions need not match.
Each side speaks every protocol version from PROTOCOL_MIN to PROTOCOL_MAX;
``hello`` carries the client's range and the server answers with the highest
version both speak.  Raise PROTOCOL_MAX whenever a method, a field or the
frame format changes meaning (tests/test_wire.py pins the format), and raise
PROTOCOL_MIN when the server drops support for an older one.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import struct
import uuid
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

# -- errors ---------------------------------------------------------------------


class CtganError(Exception):
    """Something went wrong."""

    exit_code = 1

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(CtganError):
    """The command was used wrongly."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration is invalid."""


class InvalidNameError(UsageError):
    """That name is not allowed."""


class AuthError(CtganError):
    """Wrong username or password."""

    exit_code = 3


class NotFoundError(CtganError):
    """No such file."""

    exit_code = 4


class BadDataError(CtganError):
    """The data cannot be used."""

    exit_code = 5


class ConnectError(CtganError):
    """Cannot reach the server."""

    exit_code = 6


class HostKeyError(ConnectError):
    """The server's host key is not trusted."""


class VersionMismatchError(CtganError):
    """Client and server versions differ."""

    exit_code = 7


class ModelVersionError(VersionMismatchError):
    """The model was made with other library versions."""


class ServerEnvironmentError(CtganError):
    """The server is missing something it needs."""

    exit_code = 8


class TransferError(CtganError):
    """A file transfer failed its integrity check."""

    exit_code = 9


class ProtocolError(CtganError):
    """The server sent something the client does not understand."""

    exit_code = 10


class InternalError(CtganError):
    """The server hit an unexpected error; its log has the details."""

    exit_code = 11


class CanceledError(CtganError):
    """The job was canceled."""

    exit_code = 12


class LimitError(CtganError):
    """A server limit was exceeded."""

    exit_code = 13


def _all_classes(base: type[CtganError]) -> dict[str, type[CtganError]]:
    found = {base.__name__: base}
    for sub in base.__subclasses__():
        found.update(_all_classes(sub))
    return found


def from_wire(type_name: str, message: str) -> CtganError:
    """Rebuild the typed error the server sent; unknown names degrade to the base class."""
    cls = _all_classes(CtganError).get(type_name, CtganError)
    return cls(message)


# -- protocol -------------------------------------------------------------------

# Protocol versions this release speaks.  3: transfers as in-session frames,
# `fit` answers with a job, `sample` may stream.  4 (0.3.0): `doctor`; a
# `sample` over [service] sample_job_rows runs as a job whose events come
# first; `fit` takes ``protect`` and ``constraints``.  Releases up to 0.1.0
# spoke exactly one version and sent it as ``protocol``.
PROTOCOL_MIN = 3
PROTOCOL_MAX = 4
MAX_LINE = 1 << 20  # a request line; more is refused before it is parsed
MAX_FRAME = 1 << 20  # payload bytes per frame
_FRAME_HEADER = struct.Struct(">I")
MAX_EPOCHS = 100_000
MAX_ROWS = 100_000_000
MAX_SEED = 2**32 - 1  # numpy's legacy seeding takes 32 bits


def negotiate(client_min: int, client_max: int) -> int:
    """The highest protocol version both sides speak, or a VersionMismatchError saying which side to upgrade."""
    if client_max < PROTOCOL_MIN:
        raise VersionMismatchError(
            f"the client speaks protocol {client_min}-{client_max}, the server {PROTOCOL_MIN}-{PROTOCOL_MAX}: "
            "upgrade ctgan-server-cli on the client (pip install -U ctgan-server-cli)"
        )
    if client_min > PROTOCOL_MAX:
        raise VersionMismatchError(
            f"the client speaks protocol {client_min}-{client_max}, the server {PROTOCOL_MIN}-{PROTOCOL_MAX}: "
            "upgrade ctgan-server-cli on the server (git pull, then pip install -e .[server])"
        )
    return min(client_max, PROTOCOL_MAX)


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not a protocol message: {line[:80]!r}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"not a protocol message: {line[:80]!r}")
    return message


def request(msg_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"id": msg_id, "method": method, "params": params}


def reply(msg_id: Any, result: Any) -> dict[str, Any]:
    return {"id": msg_id, "result": result}


def error_reply(msg_id: Any, exc: CtganError) -> dict[str, Any]:
    return {"id": msg_id, "error": {"type": type(exc).__name__, "message": exc.message}}


def event(kind: str, /, **fields: Any) -> dict[str, Any]:
    return {"event": kind, **fields}


def whole_number(value: Any, what: str, maximum: int, minimum: int = 1) -> int:
    """Check a count parameter; the client checks before connecting, the server again on arrival."""
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise UsageError(f"{what} must be a whole number from {minimum} to {maximum:,}, not {value!r}")
    return value


MAX_HOLDOUT = 0.5  # more than half held out leaves too little to train on


def check_holdout(value: Any) -> float:
    """The share of rows `fit --holdout` keeps out of training: 0 (none) up to MAX_HOLDOUT."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_HOLDOUT:
        raise UsageError(f"holdout must be a fraction from 0 to {MAX_HOLDOUT}, not {value!r}")
    return float(value)


# -- fit options: value protection and rules ----------------------------------------

PROTECT_LEVELS = ("none", "rare", "strict")  # `fit --protect`; "rare" is the default


def check_protect(value: Any) -> str:
    if value not in PROTECT_LEVELS:
        raise UsageError(f"protect must be one of {', '.join(PROTECT_LEVELS)}, not {value!r}")
    return value


# Each rule type of a constraints file (`fit --constraints rules.toml`, one
# [[rule]] table per rule): its keys naming one column, its keys naming a
# list of columns (with the fewest it needs), and its other keys.
RULE_TYPES: dict[str, tuple[tuple[str, ...], tuple[tuple[str, int], ...], tuple[str, ...]]] = {
    "proportion": (("reference",), (("parts", 1),), ("sum_to_one",)),
    "sum": (("total",), (("parts", 2),), ()),
    "inequality": (("low", "high"), (), ()),
    "range": (("column",), (), ("low", "high")),
    "positive": (("column",), (), ()),
    "fixed_combinations": ((), (("columns", 2),), ()),
    "one_hot": ((), (("columns", 2),), ()),
}
MAX_RULES = 200


def check_rules(rules: Any) -> list[dict[str, Any]]:
    """A constraints list as both sides accept it: known types, the keys each needs, no column twice in a rule.

    Whether the columns exist, and whether the data keeps the rules, is
    checked later, against the CSV (client) and the parsed table (server).
    """
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise UsageError(f"constraints must be a list of at most {MAX_RULES} rules")
    return [_check_rule(n, rule) for n, rule in enumerate(rules, 1)]


def _check_rule(n: int, rule: Any) -> dict[str, Any]:
    if not isinstance(rule, dict) or rule.get("type") not in RULE_TYPES:
        known = ", ".join(RULE_TYPES)
        raise UsageError(f"rule {n}: type must be one of {known}, not {rule.get('type') if isinstance(rule, dict) else rule!r}")
    kind = rule["type"]
    singles, lists, others = RULE_TYPES[kind]
    where = f"rule {n} ({kind})"
    unknown = sorted(set(rule) - {"type", *singles, *(key for key, _ in lists), *others})
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}")
    for key in singles:
        if not isinstance(rule.get(key), str) or not rule[key]:
            raise UsageError(f"{where}: {key} must name a column")
    for key, fewest in lists:
        names = rule.get(key)
        if not isinstance(names, list) or len(names) < fewest or not all(isinstance(c, str) and c for c in names):
            raise UsageError(f"{where}: {key} must be a list of at least {fewest} column names")
    columns = rule_columns(rule)
    if len(set(columns)) != len(columns):
        raise UsageError(f"{where}: a column appears twice")
    _check_rule_values(where, rule)
    return dict(rule)


def _check_rule_values(where: str, rule: dict[str, Any]) -> None:
    if "sum_to_one" in rule and not isinstance(rule["sum_to_one"], bool):
        raise UsageError(f"{where}: sum_to_one must be true or false")
    if rule["type"] != "range":
        return
    bounds = [rule.get("low"), rule.get("high")]
    if all(b is None for b in bounds):
        raise UsageError(f"{where}: give low, high or both")
    if any(b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))) for b in bounds):
        raise UsageError(f"{where}: low and high must be numbers")
    if None not in bounds and bounds[0] > bounds[1]:
        raise UsageError(f"{where}: low is above high")


def rule_columns(rule: dict[str, Any]) -> list[str]:
    """Every column a (checked) rule names, in the order the rule names them."""
    singles, lists, _ = RULE_TYPES[rule["type"]]
    return [rule[key] for key in singles] + [c for key, _ in lists for c in rule[key]]


def describe_rule(rule: dict[str, Any]) -> str:
    """A rule in one short line, for the plan table and error messages."""
    kind = rule["type"]
    if kind == "inequality":
        return f"{rule['low']} <= {rule['high']}"
    if kind == "sum":
        return f"{rule['total']} = {' + '.join(rule['parts'])}"
    if kind == "proportion":
        whole = " (sum to it)" if rule.get("sum_to_one") else ""
        return f"{', '.join(rule['parts'])} as shares of {rule['reference']}{whole}"
    if kind == "range":
        low = "" if rule.get("low") is None else f"{rule['low']} <= "
        high = "" if rule.get("high") is None else f" <= {rule['high']}"
        return f"{low}{rule['column']}{high}"
    if kind == "positive":
        return f"{rule['column']} > 0"
    if kind == "fixed_combinations":
        return f"only seen combinations of {', '.join(rule['columns'])}"
    return f"exactly one of {', '.join(rule['columns'])} is 1"


class FrameWriter:
    """A run of frames written block by block, for a stream whose blocks are made while it is being sent."""

    def __init__(self, write: Callable[[bytes], Any]):
        self.write, self.digest, self.size = write, hashlib.sha256(), 0

    def send(self, block: bytes) -> None:
        view = memoryview(block)
        for start in range(0, len(view), MAX_FRAME):
            piece = view[start : start + MAX_FRAME]
            self.write(_FRAME_HEADER.pack(len(piece)))
            self.write(piece)
            self.digest.update(piece)
            self.size += len(piece)

    def close(self) -> tuple[str, int]:
        """Write the end frame; returns the sha256 and size of what was sent."""
        self.write(_FRAME_HEADER.pack(0))
        return self.digest.hexdigest(), self.size


def write_frames(write: Callable[[bytes], Any], blocks: Iterable[bytes]) -> tuple[str, int]:
    """Send ``blocks`` as frames and the end frame; returns the sha256 and size of what was sent."""
    frames = FrameWriter(write)
    for block in blocks:
        frames.send(block)
    return frames.close()


def read_frames(
    read_exactly: Callable[[int], bytes], on_block: Callable[[bytes], Any], limit: int | None = None, limit_message: str = ""
) -> tuple[str, int]:
    """Receive frames up to the end frame, passing each payload on; returns their sha256 and total size.

    ``limit`` is checked against each frame's announced length before its bytes are read.
    """
    digest, size = hashlib.sha256(), 0
    while True:
        (length,) = _FRAME_HEADER.unpack(read_exactly(_FRAME_HEADER.size))
        if length == 0:
            return digest.hexdigest(), size
        if length > MAX_FRAME:
            raise ProtocolError(f"a data frame of {length:,} bytes; at most {MAX_FRAME:,} are allowed")
        if limit is not None and size + length > limit:
            raise LimitError(limit_message or f"more than {limit:,} bytes sent")
        block = read_exactly(length)
        digest.update(block)
        size += length
        on_block(block)


# -- jobs -----------------------------------------------------------------------

# A job's state is the last "state" event of its log; the finished ones never change.
QUEUED, RUNNING, DONE, FAILED, CANCELED = "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELED"
FINISHED = (DONE, FAILED, CANCELED)


def job_error(job: dict[str, Any]) -> CtganError:
    """The error a failed or canceled job ends a `follow` with, of the job's own type."""
    if job["state"] == CANCELED:
        return CanceledError(f"job {job['id']} was canceled")
    error = job.get("error") or {}
    return from_wire(error.get("type", "CtganError"), error.get("message", f"job {job['id']} failed"))


# -- doctor ---------------------------------------------------------------------


def check_line(name: str, ok: bool, detail: str) -> str:
    """One health check as `doctor` prints it, the same from `ctgan-server doctor` and `ctgan-host doctor`."""
    return f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}"


# -- files ----------------------------------------------------------------------

SYNTHETIC_SUFFIX = "_synthetic.csv.gz"
_FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_STEM_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_-]+")


def check_file_name(name: Any, suffix: str = "") -> str:
    """Refuse anything but a plain file name: no separators, no '..', nothing absolute."""
    if not isinstance(name, str) or not _FILE_NAME_RE.fullmatch(name) or ".." in name or (suffix and not name.endswith(suffix)):
        wanted = f" ending in {suffix}" if suffix else ""
        raise InvalidNameError(f"invalid name {name!r}: expected a plain file name{wanted}")
    return name


def dataset_stem(filename: str) -> str:
    """The <name> part of stored files: the original CSV's stem, made filename-safe."""
    stem = os.path.basename(str(filename))
    for ext in (".gz", ".csv", ".tsv", ".txt"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    stem = _STEM_UNSAFE_RE.sub("_", stem).strip("_-")[:100]
    return stem or "data"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Stored datasets are gzip level 3: on diamonds and credit_data (one thread)
# level 6 made 0.20-0.23 of the CSV's size at 18-25 MB/s, level 3 0.24-0.27
# at 55-75 MB/s, level 1 0.29-0.31 at 130-140 MB/s.  Level 3 keeps a download
# under 0.3 of the CSV and no longer holds up sampling.
GZIP_LEVEL = 3


def gzip_member(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """``data`` as one complete gzip member; zlib writes mtime 0, so equal input gives equal bytes."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


def gzip_members(blocks: Iterable[bytes], threads: int = 2, ahead: int = 4, level: int = GZIP_LEVEL) -> Iterator[bytes]:
    """Each block as its own gzip member, compressed in worker threads, yielded in order.

    A gzip file may hold several members back to back (RFC 1952, 2.2); `gzip -d`,
    Python's gzip module, the server's upload check and the client read them
    as one stream.  zlib releases the GIL, so the threads compress while the
    caller makes the next block or sends the last one.  At most ``ahead``
    blocks wait, which bounds the memory.
    """
    from concurrent.futures import ThreadPoolExecutor

    pending: collections.deque = collections.deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="gzip") as pool:
        try:
            for block in blocks:
                pending.append(pool.submit(gzip_member, block, level))
                while len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # abandoned: do not finish members nobody will read
                future.cancel()


# -- processes ------------------------------------------------------------------

# What a job (or a local server) inherits from the environment of the process
# that starts it; everything else is dropped.  An allowlist, not a denylist:
# the variables a session may carry are open-ended (CTGAN_PASSWORD from a
# client's shell, SSH_AUTH_SOCK, a cloud token in a .bashrc) and any of them
# would be readable in /proc/<pid>/environ by whoever can read the process,
# for as long as a fit runs.
ENV_ALLOWLIST = (
    # finding programs and libraries, and the account's own folders
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    # CUDA and MKL installed outside the system paths (conda, HPC modules)
    # are found only through it; without it a GPU server silently fits on CPU
    "LD_LIBRARY_PATH",
    # text encoding and time zone of what the libraries read and print
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    # which GPUs and how many threads an admin granted this account
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)
# Left out on purpose: SSH_AUTH_SOCK (it would let a job use the user's SSH
# agent), the other SSH_* (the audit log records the address at login),
# PYTHONSTARTUP/PYTHONHOME/PYTHONINSPECT (change what the interpreter runs),
# and every CTGAN_* but the CTGAN_SERVER_DIR the caller passes in ``extra``.


def minimal_env(extra: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowlisted part of ``environ`` (default: this process's), plus ``extra``.

    Used for job processes here, and by the client's local transport for the
    `serve` process, so neither inherits a password from the caller's shell.
    """
    source = os.environ if environ is None else environ
    env = {key: source[key] for key in ENV_ALLOWLIST if key in source}
    env.update(extra or {})
    return env
