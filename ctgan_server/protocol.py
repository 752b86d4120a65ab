"""Message shapes of the JSON-lines protocol spoken over the SSH channel.

One JSON object per line.  Requests: ``{"id", "method", "params"}``.  Replies:
``{"id", "result"}`` or ``{"id", "error": {"type", "message"}}``.  Progress:
``{"event": KIND, ...}``, sent before the reply of the request it belongs to.
Bump PROTOCOL_VERSION whenever a method or field changes meaning.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import CtganError, ProtocolError, UsageError

PROTOCOL_VERSION = 1
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
