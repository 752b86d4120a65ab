"""Moving bulk bytes between client and server: gzip on the wire, sha256 checked, atomic on arrival.

Files travel as frames inside the session's own stream (see
``ctgan_server.wire``), the same way over SSH and over the local pipe.
"""

from __future__ import annotations

import os
import uuid
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

from ctgan_server.wire import TransferError, gzip_members

BLOCK = 4 << 20  # raw bytes per gzip member: large enough that members cost under 0.1% in size
Progress = Callable[[int], None]  # called with the bytes moved so far


def gzip_blocks(local: Path, progress: Progress | None = None) -> Iterator[bytes]:
    """``local`` gzipped, one member per BLOCK compressed in threads while earlier ones are sent.

    No copy of the file sits in memory; equal files give equal bytes (mtime 0).
    """

    def raw_blocks() -> Iterator[bytes]:
        done = 0
        with open(local, "rb") as src:
            for block in iter(lambda: src.read(BLOCK), b""):
                done += len(block)
                if progress:
                    progress(done)
                yield block

    return gzip_members(raw_blocks())


class Gunzipper:
    """Receives gzip frames and writes the decompressed bytes to an open file as they arrive.

    ``progress`` is told the gzip bytes received so far; ``lines`` the line
    breaks written so far (a CSV's rows, plus its header, when no value holds
    a line break), for a stream whose compressed size is not known ahead.
    """

    def __init__(self, out: Any, progress: Progress | None = None, lines: Progress | None = None):
        self.out, self.progress, self.lines, self.received, self.line_count = out, progress, lines, 0, 0
        self.inflater = zlib.decompressobj(31)
        self.complete = False  # the last gzip member has ended, with nothing after it

    def __call__(self, block: bytes) -> None:
        self.received += len(block)
        if self.progress:
            self.progress(self.received)
        try:
            while block:
                self.complete = False
                plain = self.inflater.decompress(block)
                self.out.write(plain)
                if self.lines and plain:
                    self.line_count += plain.count(b"\n")
                    self.lines(self.line_count)
                # A stream of several gzip members (parallel compression) goes on in a fresh inflater.
                block = self.inflater.unused_data
                if self.inflater.eof:
                    self.complete = True
                    self.inflater = zlib.decompressobj(31)
        except zlib.error as exc:
            raise TransferError(f"the download is not valid gzip ({exc})") from exc


class Transfer:
    def __init__(self, session: Any):
        self.session = session

    def upload(self, local: Path, filename: str, progress: Progress | None = None) -> dict[str, Any]:
        """Send ``local`` gzipped into the user's staging folder; returns the server's token and sha256."""
        staged = self.session.call(
            "upload", upload=gzip_blocks(local, progress), filename=filename, csv_bytes=local.stat().st_size
        )
        sent = self.session.transferred
        if sent is None or sent[0] != staged["sha256"]:
            raise TransferError(f"{local.name} arrived damaged on the server (sha256 mismatch); try again")
        return staged

    def download(
        self,
        method: str,
        folder: Path,
        name_of: Callable[[dict[str, Any]], str],
        progress: Progress | None = None,
        lines: Progress | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        **params: Any,
    ) -> tuple[Path, dict[str, Any]]:
        """Call ``method``, whose reply streams a gzipped file; write it decompressed into ``folder`` atomically.

        The file's name is ``name_of(reply)``: a streamed sample is named by
        the server only when it is complete.  Until the reply has come and the
        sha256 matches, the bytes sit in a hidden temporary file beside it.
        """
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{method}.{uuid.uuid4().hex[:8]}.part"
        try:
            with open(tmp, "wb") as out:
                sink = Gunzipper(out, progress, lines)
                result = self.session.call(method, on_event=on_event, download=sink, **params)
                dest = folder / name_of(result)
                if not sink.received or not sink.complete:
                    raise TransferError(f"{result.get('name', dest.name)} arrived cut short; nothing was written")
            received = self.session.transferred
            if received is None or received[0] != result["sha256"]:
                raise TransferError(f"{result.get('name', dest.name)} arrived damaged (sha256 mismatch); nothing was written")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest, result
