"""Moving bulk bytes between client and server: gzip on the wire, sha256 checked, atomic on arrival.

Files travel as frames inside the session's own stream (see
``ctgan_server.protocol``), the same way over SSH and over the local pipe.
"""

from __future__ import annotations

import os
import uuid
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

from ctgan_server.errors import TransferError
from ctgan_server.storage import gzip_members

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
    """Receives gzip frames and writes the decompressed bytes to an open file as they arrive."""

    def __init__(self, out: Any, progress: Progress | None = None):
        self.out, self.progress, self.received = out, progress, 0
        self.inflater = zlib.decompressobj(31)
        self.complete = False  # the last gzip member has ended, with nothing after it

    def __call__(self, block: bytes) -> None:
        self.received += len(block)
        if self.progress:
            self.progress(self.received)
        try:
            while block:
                self.complete = False
                self.out.write(self.inflater.decompress(block))
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

    def download(self, method: str, dest: Path, progress: Progress | None = None, **params: Any) -> tuple[Path, dict[str, Any]]:
        """Call ``method``, whose reply streams a gzipped file; write it decompressed to ``dest`` atomically."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with open(tmp, "wb") as out:
                sink = Gunzipper(out, progress)
                result = self.session.call(method, download=sink, **params)
                if sink.received and not sink.complete:
                    raise TransferError(f"{result.get('name', dest.name)} arrived cut short; nothing was written")
            received = self.session.transferred
            if received is None or received[0] != result["sha256"]:
                raise TransferError(f"{result.get('name', dest.name)} arrived damaged (sha256 mismatch); nothing was written")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest, result
