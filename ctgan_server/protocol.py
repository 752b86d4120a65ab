"""Message shapes of the protocol spoken over the SSH channel (or the local pipe).

One JSON object per line.  Requests: ``{"id", "method", "params"}``.  Replies:
``{"id", "result"}`` or ``{"id", "error": {"type", "message"}}``.  Progress:
``{"event": KIND, ...}``, sent before the reply of the request it belongs to.
A line is at most MAX_LINE bytes.

Bulk bytes travel in the same stream, because an app user's SSH key runs
only `serve` (no SFTP): a run of frames, each a 4-byte big-endian length
and that many bytes, ended by a zero-length frame.  An upload's frames follow
the server's ``{"event": "send"}``; a download's follow ``{"event": "frames"}``,
and so do a ``sample`` call's when it asks for ``stream``: the file then
arrives while it is being made, and no progress event comes between its
frames.
The sha256 of the bytes is in the reply, and both sides check it.
Bump PROTOCOL_VERSION whenever a method or field changes meaning.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any, Callable, Iterable

from .errors import CtganError, LimitError, ProtocolError, UsageError

PROTOCOL_VERSION = 3
MAX_LINE = 1 << 20  # a request line; more is refused before it is parsed
MAX_FRAME = 1 << 20  # payload bytes per frame
_FRAME_HEADER = struct.Struct(">I")
MAX_EPOCHS = 100_000
MAX_ROWS = 100_000_000
MAX_SEED = 2**32 - 1  # numpy's legacy seeding takes 32 bits


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


def event(kind: str, **fields: Any) -> dict[str, Any]:
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
