"""Fitting CTGAN on an upload: load and delete the original, train, store the model."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from . import __version__
from .fit_request import FitRequest
from .limits import check_quota, check_upload_size, check_upload_stream, inflate_upload
from .runtime import configure_torch, device_name, library_versions, require_ctgan, seed_everything
from .settings import Settings
from .storage import UserStorage, iso_utc
from .wire import NotFoundError, TransferError, UsageError, describe_rule, event

Emit = Callable[[dict[str, Any]], None]


def take_upload(path: Path, sha256: str, settings: Settings, key: bytes) -> bytes | memoryview:
    """Read a staged original into memory, delete it, whatever happens next, and decrypt it with ``key``.

    A file over [service] max_upload_bytes is refused (and deleted) before it
    is read, so it never has to fit in memory.  ``sealed_upload`` says why
    the staged file is encrypted and where the key comes from.
    """
    from .sealed_upload import OVERHEAD, open_sealed

    try:
        with open(path, "rb") as fh:
            check_upload_size(settings, path.name, max(0, os.fstat(fh.fileno()).st_size - OVERHEAD))
            sealed = bytearray(os.fstat(fh.fileno()).st_size)
            fh.readinto(sealed)
    except FileNotFoundError:
        raise NotFoundError("the uploaded file is gone from the staging folder; upload again") from None
    finally:
        path.unlink(missing_ok=True)
    data = open_sealed(sealed, key)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise TransferError("the upload arrived damaged (sha256 mismatch) and was deleted; try again")
    return data


# What the job log's plan event keeps of each column: what the plan table
# shows, none of it a value from the data.  The log outlives the job, and
# ranges, categories and ID patterns belong only in the model's JSON.
PLAN_EVENT_KEYS = ("name", "dtype", "kind", "nulls", "distinct", "reason")


def plan_event(rows: int, plan: dict[str, Any]) -> dict[str, Any]:
    columns = [{key: col[key] for key in PLAN_EVENT_KEYS if key in col} for col in plan["columns"]]
    # Rules as one-line descriptions: column names and the bounds the user wrote, never a combination seen.
    rules = [f"{rule['type']}: {describe_rule(rule)}" for rule in plan.get("rules", [])]
    return event("plan", rows=rows, columns=columns, warnings=list(plan["warnings"]), rules=rules)


def finite_or_none(value: Any) -> float | None:
    """JSON has no NaN or infinity; a diverged loss is reported as null."""
    value = float(value)
    return value if math.isfinite(value) else None


# Within an epoch, a "step" event at most this often: a one-epoch fit of a
# million rows is 2,000 steps and minutes without any other event.
STEP_EVENT_SECONDS = 5.0


class _StepCounter:
    """Counts training steps through the DataSampler CTGAN asks for a conditional vector once per step.

    ctgan 0.12.1 calls ``sample_condvec`` once per discriminator step and once
    per generator step, even without discrete columns.  The counting wrapper
    is an attribute of that one sampler object, removed before anything
    pickles the model.
    """

    def __init__(self, model: Any, epochs: int, emit: Emit):
        self.sampler = model._data_sampler
        self.per_step = getattr(model, "_discriminator_steps", 1) + 1
        self.steps = max(getattr(self.sampler, "_data_length", 0) // getattr(model, "_batch_size", 500), 1)
        self.epochs, self.emit = epochs, emit
        self.epoch, self.calls, self.last = 0, 0, time.monotonic()
        original = self.sampler.sample_condvec

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            now = time.monotonic()
            if now - self.last >= STEP_EVENT_SECONDS:
                self.last = now
                step = min(self.calls // self.per_step, self.steps)
                self.emit(event("step", epoch=self.epoch + 1, epochs=self.epochs, step=step, steps=self.steps))
            return original(*args, **kwargs)

        self.sampler.sample_condvec = counting

    def start(self, epoch: int) -> None:
        self.epoch, self.calls, self.last = epoch, 0, time.monotonic()

    def remove(self) -> None:
        self.sampler.__dict__.pop("sample_condvec", None)


class _RowDraw:
    """Draws each step's training rows for all conditions at once.

    ctgan 0.12.1's ``DataSampler.sample_data`` calls ``np.random.choice`` once
    per row of the batch, a Python loop measured at 12-14% of a training
    epoch on 20k rows of diamonds.  This draws the same thing, a row chosen
    uniformly among those holding the conditioned category, with one
    ``randint`` over all the batch's categories, from numpy's global state as
    upstream does: under one seed, the very rows upstream draws (tested), so
    a seeded fit is unchanged.  Like the step counter it
    is an attribute of one sampler object, removed before the model is pickled.
    """

    def __init__(self, sampler: Any):
        import numpy as np

        self.sampler, self.np = sampler, np
        per_category = [rows for column in getattr(sampler, "_rid_by_cat_cols", []) for rows in column]
        if not per_category:
            return  # no discrete columns: upstream never conditions a draw
        counts = np.array([len(rows) for rows in per_category])
        # A category's rows sit at starts[g]:starts[g] + counts[g] of `rows`, where g
        # is its place in the condition vector (column offset + category).
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.counts, self.rows = counts, np.concatenate(per_category)
        self.offsets = np.asarray(sampler._discrete_column_cond_st)
        sampler.sample_data = self.draw

    def draw(self, data: Any, n: int, col: Any, opt: Any) -> Any:
        randint = self.np.random.randint
        if col is None:
            return data[randint(len(data), size=n)]
        category = self.offsets[col] + opt
        return data[self.rows[self.starts[category] + randint(self.counts[category])]]

    def remove(self) -> None:
        self.sampler.__dict__.pop("sample_data", None)


@contextlib.contextmanager
def epoch_events(model: Any, epochs: int, emit: Emit) -> Iterator[None]:
    """Report each finished epoch's losses, and long epochs' steps (see STEP_EVENT_SECONDS).

    ctgan 0.12.1's fit has no callback, but it drives its epoch loop through the
    module-level ``tqdm``.  Swapping that for a generator lets us run code
    between epochs: when the loop asks for epoch i+1, epoch i is done and its
    losses are the last row of ``model.loss_values``.  By the time the loop
    starts, the model has its DataSampler, through which steps are counted.
    """
    import ctgan.synthesizers.ctgan as ctgan_module

    counters: list[_StepCounter | _RowDraw] = []  # each has remove()

    def reporting_range(iterable: Any, **_: Any) -> Any:
        class Loop:
            def __iter__(self) -> Iterator[int]:
                counter = _StepCounter(model, epochs, emit)
                counters.append(counter)
                counters.append(_RowDraw(model._data_sampler))
                try:
                    for i in iterable:
                        counter.start(i)
                        yield i
                        last = model.loss_values.iloc[-1]
                        loss_g, loss_d = finite_or_none(last["Generator Loss"]), finite_or_none(last["Discriminator Loss"])
                        emit(event("epoch", epoch=i + 1, epochs=epochs, loss_g=loss_g, loss_d=loss_d))
                finally:
                    counter.remove()

            def set_description(self, *_: Any, **__: Any) -> None:
                pass

        return Loop()

    original = ctgan_module.tqdm
    ctgan_module.tqdm = reporting_range
    try:
        yield
    finally:
        ctgan_module.tqdm = original
        for counter in counters:  # a fit that raised mid-epoch leaves its generator unfinished
            counter.remove()


def split_holdout(frame: Any, fraction: float, seed: int | None) -> tuple[Any, Any]:
    """Rows for training, and a random ``fraction`` held out of it (None when 0)."""
    if not fraction:
        return frame, None
    held = frame.sample(frac=fraction, random_state=seed)
    if len(held) == 0 or len(held) == len(frame):
        raise UsageError(f"--holdout {fraction} leaves {len(frame) - len(held)} of {len(frame)} rows for training")
    return frame.drop(held.index), held


def fit_report(
    model: Any,
    plan: dict[str, Any],
    id_records: dict[str, Any],
    real: Any,
    holdout: Any,
    seed: int | None,
    emit: Emit | None = None,
) -> dict[str, Any]:
    """Quality and privacy, measured while the job still holds the training rows; aggregates only.

    ``real`` and ``holdout`` are already in the report's view (``report_view``).
    The synthetic table is the training table's size (at most the report's
    MAX_ROWS) and comes through the same generation and restore as `sample`, so the report
    judges what users will get.  ``emit`` is told each part as it starts:
    on a million rows the report takes half a minute.
    """
    import numpy as np
    import pandas as pd

    from .report import MAX_ROWS, build
    from .rules import Rules
    from .sampling import kept_chunks
    from .schema import Kind
    from .transform import Restorer

    def part(name: str) -> None:
        if emit is not None:
            emit(event("report_part", part=name))

    rows = min(len(real), MAX_ROWS)
    part("sampling")
    # The report leaves identifiers out (report_view), so none are made: a
    # column whose ID pattern the training rows use up entirely (C000000 to
    # C999999 in a million rows) would otherwise fail the fit after training.
    without_ids = {**plan, "columns": [c for c in plan["columns"] if c["kind"] != Kind.IDENTIFIER]}
    restore = Restorer(without_ids, id_records, np.random.default_rng(seed))
    rules = Rules(plan["rules"], plan) if plan.get("rules") else None
    # Through the rules as `sample` applies them, then counted again: rules.kept is measured, not assumed.
    synthetic = pd.concat(list(kept_chunks(model, rows, {}, restore, rules)), ignore_index=True)
    report = build(real, report_view(plan)(synthetic), holdout, part)
    if rules is not None:
        report["rules"] = {"kept": float(rules.kept(synthetic).mean()), "rules": rules.descriptions()}
    return report


def report_view(plan: dict[str, Any]) -> Callable[..., Any]:
    """The columns a stored report may describe, in a form that carries no single record.

    Identifiers and ignored columns are left out (an ID's "distribution" is a
    list of IDs), dates become numbers (a list of top timestamps would be
    raw values), and free text keeps only the values the plan kept, with the
    rare ones grouped as in training.

    Given ``encoded``, the training frame that ``training_frame`` made of the
    same rows, dates and free text are taken from it (with its gaps put back)
    instead of being parsed and grouped a second time: the same values.
    """
    from .dates import to_seconds
    from .schema import Kind

    def view(frame: Any, encoded: Any = None) -> Any:
        import pandas as pd

        from .transform import YES

        out = {}
        for col in plan["columns"]:
            name, kind = col["name"], col["kind"]
            if kind in (Kind.IDENTIFIER, Kind.IGNORED, Kind.EMPTY):
                continue
            if encoded is not None and kind == Kind.DATETIME:
                values = encoded[name]
                if col.get("missing_flag") in encoded:
                    values = values.where(encoded[col["missing_flag"]] != YES)  # the gaps training filled
            elif encoded is not None and kind == Kind.HIGH_CARDINALITY_TEXT:
                values = encoded[name].where(encoded[name] != col["missing_token"])
            else:
                values = frame[name]
                if kind == Kind.DATETIME:
                    values = to_seconds(values, col["datetime"])
                elif kind == Kind.HIGH_CARDINALITY_TEXT:
                    text = values.astype(str).where(values.notna())
                    values = text.where(text.isin(col["categories"]) | text.isna(), col["other_token"])
            out[name] = values
        return pd.DataFrame(out, index=frame.index)

    return view


def drop_training_rows(model: Any) -> None:
    """Forget which training rows hold each category: the stored model must not carry them.

    ctgan 0.12.1's DataSampler keeps, for every discrete column, the row
    numbers of each category (``_rid_by_cat_cols``), which spells out those
    columns of the training table row by row, and made up half of a diamonds
    model file (1.3 of 2.6 MB; 8 bytes per row and discrete column).  Only
    training draws from it; sampling reads the category frequencies.
    """
    sampler = getattr(model, "_data_sampler", None)
    if sampler is not None and hasattr(sampler, "_rid_by_cat_cols"):
        sampler._rid_by_cat_cols = []


def run_fit(
    storage: UserStorage,
    settings: Settings,
    request: FitRequest,
    emit: Emit,
    upload_key: bytes,
    wait_turn: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Load (and delete) the upload, wait for a slot, then plan, train and store the model.

    ``wait_turn`` runs right after loading: a queued job holds its data in
    memory only, so nothing of the original waits on disk, and only the
    compressed bytes, so a long queue does not hold every waiting job's
    decompressed table.  Decompressing, parsing and planning come after it.
    """
    prepared = load_and_plan(storage, settings, request, emit, upload_key, wait_turn)
    trained = train_model(settings, request, prepared, emit)
    return save_model(storage, settings, request, prepared, trained, emit)


@dataclass
class Prepared:
    """What training and the report need of the upload, once the table itself is gone.

    The steps let go of what they no longer need (``train`` once CTGAN has
    fitted, ``real`` and ``held_out`` once the report is made), so that no
    copy of the rows is held longer than the one-piece fit held it.
    """

    plan: dict[str, Any]
    id_records: dict[str, Any]
    train: Any  # the frame CTGAN trains on (``training_frame``)
    discrete_columns: list[str]
    real: Any  # the training rows in the report's view (``report_view``)
    held_out: Any  # the holdout in the report's view, or None
    rows: int  # training rows


@dataclass
class Trained:
    """The fitted model, and what its JSON says of how it was trained."""

    model: Any
    device: Any  # the torch.device it trained on
    started: float  # time.time() when training started
    seconds: float
    report: dict[str, Any]  # fit_report's
    losses: list[dict[str, Any]]  # per epoch, as the model's JSON keeps them


def load_and_plan(
    storage: UserStorage,
    settings: Settings,
    request: FitRequest,
    emit: Emit,
    upload_key: bytes,
    wait_turn: Callable[[], None] | None,
) -> Prepared:
    """Take the upload off the disk, check it, wait for this job's turn, then parse, plan and encode it."""
    # The original leaves the disk first.
    gz_bytes = take_upload(storage.staged_path(request.token), request.sha256, settings, upload_key)
    require_ctgan()
    check_quota(settings, storage)  # a user already over quota would train for a model that cannot be kept
    # A bomb or an oversized file is refused now, not after the queue: this
    # pass inflates in small steps and keeps nothing, so it costs CPU only.
    check_upload_stream(settings, request.filename, gz_bytes)
    if wait_turn is not None:
        wait_turn()

    # Inflated again, kept this time, only once it is this job's turn.  Still
    # before pandas is imported: nothing here imports it until parse_csv.
    emit(event("stage", stage="reading"))
    raw = inflate_upload(settings, request.filename, gz_bytes)
    del gz_bytes
    from .schema import build_plan, identifier_records, parse_csv
    from .transform import training_frame

    frame = parse_csv(raw, request.filename, request.text_columns, settings=settings)
    del raw
    emit(event("stage", stage="planning", rows=len(frame)))
    plan = build_plan(
        frame, request.overrides, lambda n, of: emit(event("plan_column", column=n, columns=of)), request.protect, settings
    )
    from .rules import Rules

    # Checked on the whole original, before the holdout and training: a rule it breaks can be kept by no model.
    rules = Rules.learn(request.constraints, frame, plan)
    if rules is not None:
        plan["rules"] = rules.specs
    emit(plan_event(len(frame), plan))
    # The holdout never reaches training: it is kept in memory only to judge memorisation.
    frame, held_out = split_holdout(frame, request.holdout, request.seed)
    train, discrete_columns = training_frame(frame, plan, request.seed)
    # From here the report's view of the rows stands in for the table itself:
    # no identifier or raw date string is held through training.
    view = report_view(plan)
    real = view(frame, encoded=train)
    return Prepared(
        plan=plan,
        id_records=identifier_records(frame, plan),
        train=rules.encode(train) if rules is not None else train,  # after the report's view, which wants the columns
        discrete_columns=discrete_columns,
        real=real,
        held_out=view(held_out) if held_out is not None else None,
        rows=len(train),
    )


def train_model(settings: Settings, request: FitRequest, prepared: Prepared, emit: Emit) -> Trained:
    """Fit CTGAN on the prepared rows, then measure the model against them (``fit_report``)."""
    # Heavy, and needed only now: imported once the data is known good.  A
    # thread importing them while the CSV was parsed and planned saved nothing
    # (both hold the GIL: 4.8 s either way on 100k rows).
    from ctgan import CTGAN

    from .memory_estimate import refuse_oversized
    from .preprocessing import fast_preprocessing

    device = configure_torch(settings)
    seed_everything(request.seed)
    model = CTGAN(epochs=request.epochs, verbose=False, enable_gpu=device.type != "cpu")
    model.set_device(device)
    started = time.time()
    emit(event("stage", stage="training", device=str(device)))

    def preprocessed(step: str, column: int, columns: int) -> None:
        emit(event("preprocess", step=step, column=column, columns=columns))

    # A fit too big for the device is refused once the transformer knows the encoded width, before the
    # training matrix is made (memory_estimate), instead of dying of an out-of-memory error mid-run.
    with epoch_events(model, request.epochs, emit), fast_preprocessing(preprocessed), refuse_oversized(model, device, emit):
        model.fit(prepared.train, prepared.discrete_columns)
    prepared.train = None
    drop_training_rows(model)
    seconds = round(time.time() - started, 3)
    emit(event("stage", stage="report"))
    report = fit_report(model, prepared.plan, prepared.id_records, prepared.real, prepared.held_out, request.seed, emit)
    prepared.real = prepared.held_out = None
    losses = [
        {
            "epoch": int(row["Epoch"]) + 1,
            "loss_g": finite_or_none(row["Generator Loss"]),
            "loss_d": finite_or_none(row["Discriminator Loss"]),
        }
        for _, row in model.loss_values.iterrows()
    ]
    return Trained(model=model, device=device, started=started, seconds=seconds, report=report, losses=losses)


def save_model(
    storage: UserStorage, settings: Settings, request: FitRequest, prepared: Prepared, trained: Trained, emit: Emit
) -> dict[str, Any]:
    """Store the model, signed, and its JSON; returns what the job reports."""
    import torch

    from . import signing

    reservation = storage.reserve_model(request.dataset, trained.started)
    # Named before writing, so that whoever finds this job dead can remove the half-written file.
    emit(event("stage", stage="saving", model=reservation.name))
    try:
        buffer = io.BytesIO()
        trained.model.set_device(torch.device("cpu"))  # stored models load anywhere
        # The identifier hashes travel inside the model file, never in the JSON.
        torch.save({"ctgan": trained.model, "identifiers": prepared.id_records}, buffer)
        # Signed, so that sampling unpickles only files this server wrote.
        payload = gzip.compress(buffer.getvalue(), compresslevel=6)
        with reservation.open() as fh:
            fh.write(signing.sign(signing.server_key(settings), storage.user, reservation.name, payload))
        # Metadata first: a model file never exists without its JSON.
        storage.write_model_meta(reservation.name, model_meta(reservation.name, request, prepared, trained))
        reservation.commit()
    finally:
        reservation.abandon()
        if not reservation.committed:
            storage.meta_path(reservation.name).unlink(missing_ok=True)
    return {"model": reservation.name, "rows": prepared.rows, "epochs": request.epochs, "seconds": trained.seconds}


def model_meta(name: str, request: FitRequest, prepared: Prepared, trained: Trained) -> dict[str, Any]:
    """The model's JSON: its plan, how it was fitted, with which libraries, and its report."""
    plan = prepared.plan
    return {
        "format": 2,
        "model": name,
        "dataset": request.dataset,
        "source_file": request.filename,
        "columns": plan["columns"],
        "discrete_columns": plan["discrete_columns"],
        "delimiter": plan["delimiter"],
        "warnings": plan["warnings"],
        "rules": plan.get("rules", []),
        "fit": {
            "rows": prepared.rows,
            "holdout": request.holdout,
            "epochs": request.epochs,
            "seed": request.seed,
            "seconds": trained.seconds,
            "started": iso_utc(trained.started),
            "device": str(trained.device),
            "device_name": device_name(trained.device),
            "losses": trained.losses,
        },
        "versions": {**library_versions(), "ctgan_server": __version__},
        "report": trained.report,
    }
