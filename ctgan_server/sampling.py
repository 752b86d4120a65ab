"""Sampling a stored model into a gzipped CSV, in chunks so memory stays flat."""

from __future__ import annotations

import gzip
import io
from typing import Any, Callable

from .errors import ModelVersionError
from .protocol import MAX_ROWS, whole_number
from .runtime import configure_torch, library_versions, require_ctgan
from .settings import Settings
from .storage import HashingWriter, UserStorage

CHUNK_ROWS = 20_000


def load_model(storage: UserStorage, name: str, settings: Settings) -> tuple[Any, dict[str, Any]]:
    """Load one of the user's own models; only files this server wrote are ever unpickled."""
    path = storage.model_path(name)
    meta = storage.read_model_meta(name)
    require_ctgan()
    made_with = {k: v for k, v in meta.get("versions", {}).items() if k in library_versions()}
    here = library_versions()
    if made_with != here:
        diff = ", ".join(f"{k} {made_with.get(k, '?')} (server has {here[k]})" for k in here if made_with.get(k) != here[k])
        raise ModelVersionError(
            f"model {name} was made with {diff}; refit it, or install those versions on the server"
        )
    import torch

    device = configure_torch(settings)
    model = torch.load(io.BytesIO(gzip.decompress(path.read_bytes())), map_location="cpu", weights_only=False)
    # Unpickling moves the model to CUDA whenever one exists; put it where the settings say.
    model.set_device(device)
    return model, meta


def run_sample(
    storage: UserStorage, settings: Settings, model_name: str, rows: Any, emit: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    rows = whole_number(rows, "rows", MAX_ROWS)
    model, meta = load_model(storage, model_name, settings)
    from .schema import restore

    reservation = storage.reserve_dataset(meta["dataset"], rows)
    try:
        with reservation.open() as raw:
            hashing = HashingWriter(raw)
            # mtime=0 keeps the gzip bytes a pure function of the content.
            with gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0, compresslevel=6) as gz:
                text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
                done = 0
                while done < rows:
                    n = min(CHUNK_ROWS, rows - done)
                    chunk = restore(model.sample(n), meta)
                    chunk.to_csv(text, index=False, header=done == 0, sep=meta.get("delimiter", ","))
                    done += n
                    emit({"event": "sample", "rows": done, "total": rows})
                text.flush()
                text.detach()
        reservation.commit()
    finally:
        reservation.abandon()
    return {
        "name": reservation.name,
        "path": str(reservation.final),
        "size_bytes": hashing.size,
        "sha256": hashing.sha256.hexdigest(),
        "rows": rows,
        "dtypes": {c["name"]: c["dtype"] for c in meta["columns"]},
    }
