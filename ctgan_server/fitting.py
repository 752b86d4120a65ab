"""Fitting CTGAN on an upload: load and delete the original, train, store the model."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from . import __version__
from .errors import NotFoundError, TransferError, UsageError
from .limits import check_quota, check_upload_size, check_upload_stream, inflate_upload
from .runtime import configure_torch, library_versions, require_ctgan, seed_everything
from .settings import Settings
from .storage import UserStorage, dataset_stem, iso_utc

Emit = Callable[[dict[str, Any]], None]


def take_upload(path: Path, sha256: str, settings: Settings) -> bytes:
    """Read a staged original into memory and delete it, whatever happens next.

    A file over [service] max_upload_bytes is refused (and deleted) before it
    is read, so it never has to fit in memory.
    """
    try:
        with open(path, "rb") as fh:
            check_upload_size(settings, path.name, os.fstat(fh.fileno()).st_size)
            data = fh.read()
    except FileNotFoundError:
        raise NotFoundError("the uploaded file is gone from the staging folder; upload again") from None
    finally:
        path.unlink(missing_ok=True)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise TransferError("the upload arrived damaged (sha256 mismatch) and was deleted; try again")
    return data


# What the job log's plan event keeps of each column: what the plan table
# shows, none of it a value from the data.  The log outlives the job, and
# ranges, categories and ID patterns belong only in the model's JSON.
PLAN_EVENT_KEYS = ("name", "dtype", "kind", "nulls", "distinct", "reason")


def plan_event(rows: int, plan: dict[str, Any]) -> dict[str, Any]:
    columns = [{key: col[key] for key in PLAN_EVENT_KEYS if key in col} for col in plan["columns"]]
    return {"event": "plan", "rows": rows, "columns": columns, "warnings": list(plan["warnings"])}


def finite_or_none(value: Any) -> float | None:
    """JSON has no NaN or infinity; a diverged loss is reported as null."""
    value = float(value)
    return value if math.isfinite(value) else None


@contextlib.contextmanager
def epoch_events(model: Any, epochs: int, emit: Emit) -> Iterator[None]:
    """Report each finished epoch's losses.

    ctgan 0.12.1's fit has no callback, but it drives its epoch loop through the
    module-level ``tqdm``.  Swapping that for a generator lets us run code
    between epochs: when the loop asks for epoch i+1, epoch i is done and its
    losses are the last row of ``model.loss_values``.
    """
    import ctgan.synthesizers.ctgan as ctgan_module

    def reporting_range(iterable: Any, **_: Any) -> Any:
        class Loop:
            def __iter__(self) -> Iterator[int]:
                for i in iterable:
                    yield i
                    last = model.loss_values.iloc[-1]
                    emit(
                        {
                            "event": "epoch",
                            "epoch": i + 1,
                            "epochs": epochs,
                            "loss_g": finite_or_none(last["Generator Loss"]),
                            "loss_d": finite_or_none(last["Discriminator Loss"]),
                        }
                    )

            def set_description(self, *_: Any, **__: Any) -> None:
                pass

        return Loop()

    original = ctgan_module.tqdm
    ctgan_module.tqdm = reporting_range
    try:
        yield
    finally:
        ctgan_module.tqdm = original


def split_holdout(frame: Any, fraction: float, seed: int | None) -> tuple[Any, Any]:
    """Rows for training, and a random ``fraction`` held out of it (None when 0)."""
    if not fraction:
        return frame, None
    held = frame.sample(frac=fraction, random_state=seed)
    if len(held) == 0 or len(held) == len(frame):
        raise UsageError(f"--holdout {fraction} leaves {len(frame) - len(held)} of {len(frame)} rows for training")
    return frame.drop(held.index), held


def fit_report(model: Any, plan: dict[str, Any], id_records: dict[str, Any], train: Any, holdout: Any, seed: int | None) -> dict[str, Any]:
    """Quality and privacy, measured while the job still holds the training rows; aggregates only.

    The synthetic table is the training table's size and comes through the
    same restore as `sample`, so the report judges what users will get.
    """
    import numpy as np

    from .report import MAX_ROWS, build
    from .transform import Restorer

    rows = min(len(train), MAX_ROWS)
    synthetic = Restorer(plan, id_records, np.random.default_rng(seed))(model.sample(rows))
    prepare = report_view(plan)
    return build(prepare(train), prepare(synthetic), prepare(holdout) if holdout is not None else None)


def report_view(plan: dict[str, Any]) -> Callable[[Any], Any]:
    """The columns a stored report may describe, in a form that carries no single record.

    Identifiers and ignored columns are left out (an ID's "distribution" is a
    list of IDs), dates become numbers (a list of top timestamps would be
    raw values), and free text keeps only the values the plan kept, with the
    rare ones grouped as in training.
    """
    from .dates import to_seconds

    def view(frame: Any) -> Any:
        out = {}
        for col in plan["columns"]:
            name, kind = col["name"], col["kind"]
            if kind in ("identifier", "ignored", "empty"):
                continue
            values = frame[name]
            if kind == "datetime":
                values = to_seconds(values, col["datetime"])
            elif kind == "high-cardinality text":
                text = values.astype(str).where(values.notna())
                values = text.where(text.isin(col["categories"]) | text.isna(), col["other_token"])
            out[name] = values
        import pandas as pd

        return pd.DataFrame(out, index=frame.index)

    return view


def run_fit(
    storage: UserStorage,
    settings: Settings,
    staged: Path,
    sha256: str,
    filename: str,
    epochs: int,
    overrides: dict[str, list[str]],
    emit: Emit,
    text_columns: list[str] = (),
    seed: int | None = None,
    wait_turn: Callable[[], None] | None = None,
    holdout: float = 0.0,
) -> dict[str, Any]:
    """Load (and delete) the upload, wait for a slot, then plan, train and store the model.

    ``wait_turn`` runs right after loading: a queued job holds its data in
    memory only, so nothing of the original waits on disk, and only the
    compressed bytes, so a long queue does not hold every waiting job's
    decompressed table.  Decompressing, parsing and planning come after it.
    """
    gz_bytes = take_upload(staged, sha256, settings)  # the original leaves the disk before anything else
    require_ctgan()
    check_quota(settings, storage)  # a user already over quota would train for a model that cannot be kept
    # A bomb or an oversized file is refused now, not after the queue: this
    # pass inflates in small steps and keeps nothing, so it costs CPU only.
    check_upload_stream(settings, filename, gz_bytes)
    if wait_turn is not None:
        wait_turn()

    # Inflated again, kept this time, only once it is this job's turn.  Still
    # before pandas is imported: nothing here imports it until parse_csv.
    raw = inflate_upload(settings, filename, gz_bytes)
    del gz_bytes
    from .schema import build_plan, identifier_records, parse_csv
    from .transform import training_frame

    frame = parse_csv(raw, filename, text_columns, settings=settings)
    del raw
    plan = build_plan(frame, overrides)
    emit(plan_event(len(frame), plan))
    # The holdout never reaches training: it is kept in memory only to judge memorisation.
    frame, held_out = split_holdout(frame, holdout, seed)
    train, discrete_columns = training_frame(frame, plan, seed)
    id_records = identifier_records(frame, plan)

    import torch  # noqa: F401  (heavy: imported only once the data is known good)
    from ctgan import CTGAN

    from .preprocessing import fast_preprocessing

    device = configure_torch(settings)
    seed_everything(seed)
    model = CTGAN(epochs=epochs, verbose=False, enable_gpu=device.type != "cpu")
    model.set_device(device)
    started = time.time()
    emit({"event": "stage", "stage": "training", "device": str(device)})

    def preprocessed(step: str, column: int, columns: int) -> None:
        emit({"event": "preprocess", "step": step, "column": column, "columns": columns})

    with epoch_events(model, epochs, emit), fast_preprocessing(preprocessed):
        model.fit(train, discrete_columns)
    seconds = round(time.time() - started, 3)
    emit({"event": "stage", "stage": "report"})
    report = fit_report(model, plan, id_records, frame, held_out, seed)
    del frame, held_out

    losses = [
        {
            "epoch": int(row["Epoch"]) + 1,
            "loss_g": finite_or_none(row["Generator Loss"]),
            "loss_d": finite_or_none(row["Discriminator Loss"]),
        }
        for _, row in model.loss_values.iterrows()
    ]
    stem = dataset_stem(filename)
    reservation = storage.reserve_model(stem, started)
    # Named before writing, so that whoever finds this job dead can remove the half-written file.
    emit({"event": "stage", "stage": "saving", "model": reservation.name})
    try:
        buffer = io.BytesIO()
        model.set_device(torch.device("cpu"))  # stored models load anywhere
        # The identifier hashes travel inside the model file, never in the JSON.
        torch.save({"ctgan": model, "identifiers": id_records}, buffer)
        from . import signing

        # Signed, so that sampling unpickles only files this server wrote.
        payload = gzip.compress(buffer.getvalue(), compresslevel=6)
        with reservation.open() as fh:
            fh.write(signing.sign(signing.server_key(settings), storage.user, reservation.name, payload))
        meta = {
            "format": 2,
            "model": reservation.name,
            "dataset": stem,
            "source_file": filename,
            "columns": plan["columns"],
            "discrete_columns": plan["discrete_columns"],
            "delimiter": plan["delimiter"],
            "warnings": plan["warnings"],
            "fit": {
                "rows": len(train),
                "holdout": holdout,
                "epochs": epochs,
                "seed": seed,
                "seconds": seconds,
                "started": iso_utc(started),
                "device": str(device),
                "losses": losses,
            },
            "versions": {**library_versions(), "ctgan_server": __version__},
            "report": report,
        }
        # Metadata first: a model file never exists without its JSON.
        storage.write_model_meta(reservation.name, meta)
        reservation.commit()
    finally:
        reservation.abandon()
        if not reservation.committed:
            storage.meta_path(reservation.name).unlink(missing_ok=True)
    return {"model": reservation.name, "rows": len(train), "epochs": epochs, "seconds": seconds}
