"""Moving bulk bytes between client and server: gzip on the wire, sha256 checked, atomic on arrival.

The protocol stream carries only small JSON; files go through the
connection's ``open_remote`` (SFTP over SSH, plain files locally).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

from ctgan_server.errors import TransferError
from ctgan_server.storage import HashingWriter

BLOCK = 1 << 20
Progress = Callable[[int], None]  # called with the bytes moved so far


class _CountingReader:
    def __init__(self, raw: Any, progress: Progress | None):
        self.raw, self.progress, self.done = raw, progress, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.done += len(data)
        if self.progress:
            self.progress(self.done)
        return data


class Transfer:
    def __init__(self, connection: Any):
        self.connection = connection

    def put_gzipped(self, local: Path, remote: str, progress: Progress | None = None) -> str:
        """Compress ``local`` on the fly into ``remote``; return the sha256 of the bytes sent."""
        try:
            with open(local, "rb") as src, self.connection.open_remote(remote, "wb") as dst:
                hashing = HashingWriter(dst)
                with gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0, compresslevel=6) as gz:
                    shutil.copyfileobj(_CountingReader(src, progress), gz, BLOCK)
        except BaseException:
            # A half-sent original must not linger on the server.
            self.connection.remove_remote(remote)
            raise
        return hashing.sha256.hexdigest()

    def get_gunzipped(self, remote: str, sha256: str, dest: Path, progress: Progress | None = None) -> Path:
        """Fetch a gzipped server file, check its hash, and write it decompressed to ``dest`` atomically."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        gz_tmp = dest.with_name(f".{dest.name}.{tag}.gz.part")
        csv_tmp = dest.with_name(f".{dest.name}.{tag}.part")
        try:
            digest = hashlib.sha256()
            with self.connection.open_remote(remote, "rb") as src, open(gz_tmp, "wb") as out:
                reader = _CountingReader(src, progress)
                for block in iter(lambda: reader.read(BLOCK), b""):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != sha256:
                raise TransferError(f"{Path(remote).name} arrived damaged (sha256 mismatch); nothing was written")
            with gzip.open(gz_tmp, "rb") as src, open(csv_tmp, "wb") as out:
                shutil.copyfileobj(src, out, BLOCK)
            os.replace(csv_tmp, dest)
        finally:
            gz_tmp.unlink(missing_ok=True)
            csv_tmp.unlink(missing_ok=True)
        return dest
