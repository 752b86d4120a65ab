"""The server's limits: what one user may upload, fit, sample and keep.

Every refusal is a ``LimitError`` (exit 13) whose one line names the limit and
the ``[service]`` key that sets it, so a user knows what to change or whom to
ask.  ``GzipGuard`` checks an upload while it is inflated, in bounded pieces,
so a gzip bomb is refused long before it could fill memory.
Stdlib only, and cheap to import: these checks run before pandas, numpy or
torch are imported, so that a refused upload never costs their memory.
"""

from __future__ import annotations

import zlib
from typing import Any

from .wire import BadDataError, LimitError

# The most decompressed bytes one inflate step may produce: what the guard
# holds at once when it keeps nothing, whatever the compressed input holds.
INFLATE_STEP = 256 * 1024

# The ratio check waits until this much has been decompressed.  Small files
# that are very regular (a column of zeros, one repeated category, a short
# file that is mostly header) legitimately compress several hundred-fold, and
# holding 16 MiB costs nothing; past it, real CSVs stay far below the ratio
# limit (diamonds and credit_data: under 5x at gzip level 6) while a
# bomb's 400-1000x shows at once.
RATIO_FLOOR = 16 * 1024 * 1024

# The streaming row check counts newlines, not rows: a quoted field may hold
# line breaks and blank lines are skipped by the parser.  It allows this share
# of max_rows on top; the exact row count is checked again on the parsed table.
LINE_ALLOWANCE = 0.1

_RAISE = "split the file or ask the server's admin to raise the limit"


def human_bytes(n: int | float) -> str:
    """A size for messages, in binary units: 8.0 GiB (the server must not import ctgan_host's ui)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def line_cap(settings: Any) -> int:
    """The most newlines an upload may hold: a header, max_rows rows, and the allowance."""
    return settings.max_rows + 1 + int(settings.max_rows * LINE_ALLOWANCE)


class GzipGuard:
    """Inflate an upload piece by piece and refuse it as soon as it breaks a limit.

    ``feed`` takes compressed bytes as they arrive (any split); ``finish``
    checks that the last gzip member ended cleanly and, with ``keep``, returns
    the decompressed bytes.  Without ``keep`` nothing decompressed is held
    longer than one INFLATE_STEP.  Multi-member gzip files (what ``cat a.gz
    b.gz`` makes) are read whole, as ``gzip.decompress`` does.
    """

    def __init__(self, settings: Any, filename: str, keep: bool = False):
        self.settings = settings
        self.filename = filename
        self.compressed_bytes = 0  # fed so far
        self.csv_bytes = 0  # decompressed so far
        self.lines = 0  # newlines seen so far
        self._consumed = 0  # compressed bytes the inflater has actually used: the ratio's denominator
        self._kept: list[bytes] | None = [] if keep else None
        self._inflater = self._new_inflater()
        self._started = False  # the current member has been given bytes
        self._members = 0  # members that ended cleanly
        # zlib may hold output back when a step's max_length is reached,
        # even with no input left: inflate again with no input to get it.
        self._more = False
        self._finished = False

    @staticmethod
    def _new_inflater() -> Any:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16+: a gzip header and trailer, CRC checked

    def feed(self, compressed: bytes | memoryview) -> None:
        if self._finished:
            raise ValueError("GzipGuard.feed after finish")
        self.compressed_bytes += len(compressed)
        check_upload_size(self.settings, self.filename, self.compressed_bytes)
        self._inflate(compressed)

    def _inflate(self, data: bytes | memoryview) -> None:
        while data or self._more:
            if data:
                self._started = True
            inflater = self._inflater
            try:
                out = inflater.decompress(data, INFLATE_STEP)
            except zlib.error as exc:
                raise BadDataError(f"{self.filename}: the upload is not valid gzip ({exc})") from exc
            if inflater.eof:
                rest = inflater.unused_data  # the next member's first bytes, if any
                self._consumed += len(data) - len(rest)
                self._members += 1
                self._inflater, self._started, self._more = self._new_inflater(), False, False
            else:
                rest = inflater.unconsumed_tail
                self._consumed += len(data) - len(rest)
                self._more = len(out) == INFLATE_STEP
            self._take(out)
            data = rest

    def _take(self, out: bytes) -> None:
        if not out:
            return
        s = self.settings
        self.csv_bytes += len(out)
        self.lines += out.count(b"\n")
        if self.csv_bytes > s.max_csv_bytes:
            raise csv_too_big(s, self.filename)
        if self.csv_bytes > RATIO_FLOOR and self.csv_bytes > s.max_ratio * max(self._consumed, 1):
            raise LimitError(
                f"{self.filename}: the upload decompresses more than {s.max_ratio}-fold ([service] max_ratio), "
                "as gzip bombs do; if the file is genuine, ask the server's admin to raise the limit"
            )
        if self.lines > line_cap(s):
            raise LimitError(
                f"{self.filename} has more than {line_cap(s):,} lines, more than [service] max_rows "
                f"({s.max_rows:,} rows) allows; {_RAISE}"
            )
        if self._kept is not None:
            self._kept.append(out)

    def finish(self) -> bytes | None:
        """Check that the stream ended at the end of a gzip member; the decompressed bytes if ``keep``."""
        if not self._finished:
            self._inflate(b"")  # whatever zlib still held back
            self._finished = True
        if self._started or (self.compressed_bytes and not self._members):
            raise BadDataError(f"{self.filename}: the upload is not valid gzip (it ends in the middle of the stream)")
        if self._kept is None:
            return None
        # Joined once: the pieces are freed right after, so the peak is twice
        # the CSV for a moment, never a copy per piece.
        data = b"".join(self._kept)
        self._kept = []
        return data


def inflate_upload(settings: Any, filename: str, gz_bytes: bytes) -> bytes:
    """The decompressed CSV of an upload held in memory, every limit checked on the way."""
    data = _feed_slices(GzipGuard(settings, filename, keep=True), gz_bytes)
    assert data is not None
    return data


def upload_too_big(settings: Any, filename: str) -> LimitError:
    """The refusal of an upload over [service] max_upload_bytes (compressed), for whoever counts the bytes."""
    return LimitError(
        f"{filename}: the upload is larger than {human_bytes(settings.max_upload_bytes)} compressed "
        f"([service] max_upload_bytes); {_RAISE}"
    )


def csv_too_big(settings: Any, filename: str) -> LimitError:
    """The refusal of a CSV over [service] max_csv_bytes (decompressed)."""
    return LimitError(
        f"{filename}: the upload decompresses to more than {human_bytes(settings.max_csv_bytes)} "
        f"([service] max_csv_bytes); {_RAISE}"
    )


def check_upload_size(settings: Any, filename: str, size: int) -> None:
    if size > settings.max_upload_bytes:
        raise upload_too_big(settings, filename)


def check_upload_stream(settings: Any, filename: str, gz_bytes: bytes) -> None:
    """Every streaming limit checked on an upload held in memory, keeping nothing decompressed."""
    _feed_slices(GzipGuard(settings, filename), gz_bytes)


def _feed_slices(guard: GzipGuard, gz_bytes: bytes) -> bytes | None:
    view = memoryview(gz_bytes)
    # In slices, as if the bytes were arriving: each zlib call's input stays small.
    for start in range(0, len(view), 1 << 20):
        guard.feed(view[start : start + (1 << 20)])
    return guard.finish()


def check_jobs(settings: Any, jobs: list[dict[str, Any]]) -> None:
    """Refuse a new fit when the user already has [service] max_jobs_per_user jobs queued or running."""
    from .wire import QUEUED, RUNNING

    active = sum(1 for job in jobs if job.get("state") in (QUEUED, RUNNING))
    if active >= settings.max_jobs_per_user:
        raise LimitError(
            f"you have {active} fit jobs queued or running, the most this server allows "
            f"([service] max_jobs_per_user); wait for one to finish or cancel one (`jobs cancel ID`)"
        )


def check_staged(settings: Any, waiting: int) -> None:
    """Refuse a new upload while max_jobs_per_user of the user's uploads already wait in staging.

    Each open session may hold one unclaimed upload of up to max_upload_bytes;
    without this, many sessions at once could fill the server's disk.
    """
    if waiting >= settings.max_jobs_per_user:
        raise LimitError(
            f"you have {waiting} uploads waiting on the server, the most this server allows "
            "([service] max_jobs_per_user); fit them or close the other sessions first"
        )


def check_epochs(settings: Any, epochs: int) -> None:
    if epochs > settings.max_epochs:
        raise LimitError(
            f"--epochs {epochs:,} is more than this server allows ({settings.max_epochs:,}, [service] max_epochs); "
            "ask for fewer, or ask the server's admin to raise the limit"
        )


def check_sample_rows(settings: Any, rows: int) -> None:
    if rows > settings.max_sample_rows:
        raise LimitError(
            f"--rows {rows:,} is more than this server allows ({settings.max_sample_rows:,}, [service] max_sample_rows); "
            "sample in several smaller files, or ask the server's admin to raise the limit"
        )


def check_quota(settings: Any, storage: Any) -> int:
    """Refuse when the user's stored files already exceed the quota; returns the bytes in use."""
    used = storage.usage_bytes()
    check_quota_total(settings, used, growing=False)
    return used


def check_quota_total(settings: Any, total: int, growing: bool = True) -> None:
    """Refuse when ``total`` bytes (stored files, plus a file being written when ``growing``) exceed the quota."""
    if total > settings.quota_bytes:
        raise LimitError(quota_message(settings, total, would=growing))


def quota_message(settings: Any, total: int, would: bool = True) -> str:
    what = "this would take your models and synthetic datasets to" if would else "your models and synthetic datasets take"
    return (
        f"{what} {human_bytes(total)}, over your quota of {human_bytes(settings.quota_bytes)} "
        "([service] quota_bytes); delete some with `models delete` or `datasets delete`, "
        "or ask the server's admin to raise the limit"
    )
