"""All file storage on the server: per-user folders, names and atomic writes.

Everything the server reads or writes for a user goes through ``UserStorage``,
so that confinement (a user only ever touches their own folders) and a later
codec such as encryption at rest live in one place.  Stdlib only: listing must
stay cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

from .wire import (
    SYNTHETIC_SUFFIX,
    InvalidNameError,
    NotFoundError,
    atomic_write_text,
    check_file_name,
)

MODEL_DIR = "model_database"
SYNTHETIC_DIR = "synthetic_csv_database"
STAGING_DIR = "original_data"
MODEL_SUFFIX = "_model.gz"
STAGED_SUFFIX = ".csv.gz"
STALE_SECONDS = 3600


def timestamp(when: float) -> str:
    """UTC time as the original tool wrote it: yyyymmddthhmmss with a lowercase t."""
    return time.strftime("%Y%m%dt%H%M%S", time.gmtime(when))


def iso_utc(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_private_dir(path: Path) -> Path:
    # mkdir(parents=True) gives parents the umask's mode; make each level 0700.
    if not path.is_dir():
        make_private_dir(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
    return path


class HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


@dataclass
class Reservation:
    """A final name claimed for a new file, and the temporary file that will become it."""

    final: Path
    tmp: Path
    fd: int
    committed: bool = False

    @property
    def name(self) -> str:
        return self.final.name

    def open(self) -> BinaryIO:
        """The temporary file, for writing; closing it does not publish it."""
        fh, self.fd = os.fdopen(self.fd, "wb"), -1
        return fh

    def commit(self) -> None:
        # Durable before visible: a power cut must not leave a short file under the final name.
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.tmp, self.final)
        self.committed = True

    def abandon(self) -> None:
        """Drop the temporary file unless committed; safe to call more than once."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.committed:
            self.tmp.unlink(missing_ok=True)


class UserStorage:
    """One user's corner of the data root."""

    def __init__(self, data_root: Path, user: str):
        self.data_root = data_root
        self.user = user

    @property
    def models_dir(self) -> Path:
        return make_private_dir(self.data_root / MODEL_DIR / self.user)

    @property
    def synthetic_dir(self) -> Path:
        return make_private_dir(self.data_root / SYNTHETIC_DIR / self.user)

    @property
    def staging_dir(self) -> Path:
        return make_private_dir(self.data_root / STAGING_DIR / self.user)

    # -- listing ---------------------------------------------------------
    def _entries(self, folder: Path, suffix: str) -> list[dict[str, Any]]:
        entries = []
        for path in sorted(folder.glob(f"*{suffix}")):
            if path.name.startswith("."):
                continue
            st = path.stat()
            entries.append({"name": path.name, "size_bytes": st.st_size, "created": iso_utc(st.st_mtime)})
        return entries

    def list_models(self) -> list[dict[str, Any]]:
        entries = self._entries(self.models_dir, MODEL_SUFFIX)
        for entry in entries:
            meta = self.read_model_meta(entry["name"], missing_ok=True) or {}
            fit = meta.get("fit", {})
            entry.update(
                {
                    "dataset": meta.get("dataset"),
                    "rows": fit.get("rows"),
                    "epochs": fit.get("epochs"),
                    "seconds": fit.get("seconds"),
                }
            )
        return entries

    def list_datasets(self) -> list[dict[str, Any]]:
        return self._entries(self.synthetic_dir, SYNTHETIC_SUFFIX)

    def usage_bytes(self) -> int:
        """Bytes of every file in the user's model and synthetic folders, for [service] quota_bytes.

        Temporary files count too: a write in progress takes disk as surely as a finished one.
        """
        total = 0
        for folder in (self.models_dir, self.synthetic_dir):
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:  # removed by a concurrent session meanwhile
                        pass
        return total

    # -- lookups ----------------------------------------------------------
    def model_path(self, name: str) -> Path:
        path = self.models_dir / check_file_name(name, MODEL_SUFFIX)
        if not path.is_file():
            raise NotFoundError(f"no model named {name!r}; `models` lists yours")
        return path

    def meta_path(self, model_name: str) -> Path:
        return self.models_dir / (check_file_name(model_name, MODEL_SUFFIX)[: -len(".gz")] + ".json")

    def read_model_meta(self, model_name: str, missing_ok: bool = False) -> dict[str, Any] | None:
        path = self.meta_path(model_name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if missing_ok:
                return None
            raise NotFoundError(f"model {model_name!r} has no metadata file; refit it") from None
        except ValueError:
            if missing_ok:
                return None
            raise

    def dataset_path(self, name: str) -> Path:
        path = self.synthetic_dir / check_file_name(name, SYNTHETIC_SUFFIX)
        if not path.is_file():
            raise NotFoundError(f"no synthetic dataset named {name!r}; `datasets` lists yours")
        return path

    def delete_model(self, name: str) -> None:
        """The model first, then its JSON: a model file never exists without its metadata."""
        self.model_path(name).unlink()
        self.meta_path(name).unlink(missing_ok=True)

    def delete_dataset(self, name: str) -> None:
        self.dataset_path(name).unlink()

    # -- staging ----------------------------------------------------------
    def new_staging_path(self) -> Path:
        return self.staging_dir / f"{uuid.uuid4().hex}{STAGED_SUFFIX}"

    def staged_count(self) -> int:
        """Uploads waiting in staging (being received, or not yet loaded by their job)."""
        return sum(1 for path in self.staging_dir.glob(f"*{STAGED_SUFFIX}") if not path.name.startswith("."))

    def staged_path(self, token: str) -> Path:
        if not isinstance(token, str) or not re.fullmatch(r"[0-9a-f]{32}", token):
            raise InvalidNameError(f"invalid upload token {token!r}")
        return self.staging_dir / f"{token}{STAGED_SUFFIX}"

    def sweep_leftovers(self, now: float | None = None, keep: Iterable[Path] = ()) -> int:
        """Remove what a killed server left: unclaimed uploads and unfinished temporary files.

        Only files older than STALE_SECONDS go, so a concurrent session of the
        same user that is mid-upload or mid-write is not disturbed; the
        uploads in ``keep`` (of jobs still waiting to load them) stay however old.
        """
        now = time.time() if now is None else now
        kept = set(keep)
        candidates = [path for path in self.staging_dir.iterdir() if path not in kept]
        for folder in (self.models_dir, self.synthetic_dir):
            candidates += folder.glob(".*.tmp")
        removed = 0
        for path in candidates:
            try:
                if now - path.stat().st_mtime > STALE_SECONDS:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    # -- new files ----------------------------------------------------------
    def reserve(self, folder: Path, make_name: Callable[[str], str], when: float | None = None) -> Reservation:
        """Claim a fresh name built from a UTC timestamp.

        Two writers in the same second must both succeed, so a taken name moves
        the timestamp on by a second.  The claim is the exclusive creation of
        the temporary file; the final name is checked after it, so whoever
        holds the temporary file owns the name.
        """
        second = int(time.time() if when is None else when)
        for _ in range(3600):
            final = folder / check_file_name(make_name(timestamp(second)))
            tmp = folder / f".{final.name}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                second += 1
                continue
            if final.exists():
                os.close(fd)
                tmp.unlink(missing_ok=True)
                second += 1
                continue
            return Reservation(final=final, tmp=tmp, fd=fd)
        raise InvalidNameError(f"no free name in {folder.name} for {make_name('...')}")

    def reserve_model(self, stem: str, when: float | None = None) -> Reservation:
        return self.reserve(self.models_dir, lambda ts: f"{stem}_{ts}{MODEL_SUFFIX}", when)

    def reserve_dataset(self, stem: str, rows: int, when: float | None = None) -> Reservation:
        return self.reserve(self.synthetic_dir, lambda ts: f"{stem}_{ts}_{rows}{SYNTHETIC_SUFFIX}", when)

    def write_model_meta(self, model_name: str, meta: dict[str, Any]) -> None:
        atomic_write_text(self.meta_path(model_name), json.dumps(meta, indent=1, allow_nan=False))
