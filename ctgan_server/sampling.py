"""Sampling a stored model into a gzipped CSV, in chunks so memory stays flat.

The stages overlap: ``generation`` draws a chunk, ``transform.Restorer``
brings it back to the original's columns, ``csv_writer`` formats it, and
``storage.gzip_members`` compresses it in threads while the next chunk is
drawn.  Each finished member goes to the stored file and, when the client
asked for it, straight down the session as frames (``server.do_sample``).
"""

from __future__ import annotations

import gzip
import io
from typing import Any, Callable, Iterator

from .limits import check_quota, check_quota_total, check_sample_rows
from .runtime import configure_torch, library_versions, require_ctgan, seed_everything
from .settings import Settings
from .storage import HashingWriter, Reservation, UserStorage
from .wire import (
    MAX_ROWS,
    MAX_SEED,
    ModelVersionError,
    UsageError,
    event,
    gzip_members,
    whole_number,
)

CHUNK_ROWS = 20_000
# Synthetic rows compress worse than real ones: their digits are draws, not
# records.  On 200,000 rows sampled from a diamonds model, level 3 made 0.355
# of the CSV's size, level 5 0.332 and level 6 0.317, at 43, 24 and 11 MB/s
# in one thread.  Level 5 keeps what crosses the wire near a third of the CSV
# without holding up generation (two threads, overlapping it).
SAMPLE_GZIP_LEVEL = 5
# Conditional sampling draws rows and keeps the matches; these bound the work
# for a combination the model hardly ever produces.  The budget grows with
# the request: BASE_DRAWS whatever is asked, plus DRAWS_PER_ROW per row, so a
# large request whose condition holds for more than 1/DRAWS_PER_ROW of the
# draws always finishes.
MAX_DRAW_BATCH = 200_000
BASE_DRAWS = 5_000_000
DRAWS_PER_ROW = 20


def draw_budget(rows: int) -> int:
    return BASE_DRAWS + DRAWS_PER_ROW * rows


def load_model(storage: UserStorage, name: str, meta: dict[str, Any], settings: Settings) -> tuple[Any, dict[str, Any]]:
    """Load one of the user's own models, given its JSON; only files this server wrote are ever unpickled."""
    from . import conditioning, signing

    path = storage.model_path(name)
    # The signature is checked before anything is decompressed or unpickled:
    # unpickling a planted file would run its code as the server.
    payload = signing.verify(signing.server_key(settings), storage.user, name, path.read_bytes())
    require_ctgan()
    made_with = {k: v for k, v in meta.get("versions", {}).items() if k in library_versions()}
    here = library_versions()
    if made_with != here:
        diff = ", ".join(f"{k} {made_with.get(k, '?')} (server has {here[k]})" for k in here if made_with.get(k) != here[k])
        raise ModelVersionError(f"model {name} was made with {diff}; refit it, or install those versions on the server")
    import torch

    device = configure_torch(settings)
    stored = torch.load(io.BytesIO(gzip.decompress(payload)), map_location="cpu", weights_only=False)
    # Model files written before identifier columns existed (early in 0.1.0)
    # hold the bare model; later ones a bundle with the identifier hashes.
    model, id_records = (stored["ctgan"], stored["identifiers"]) if isinstance(stored, dict) else (stored, {})
    # Unpickling moves the model to CUDA whenever one exists; put it where the settings say.
    model.set_device(device)
    model.random_states = None  # never replay a random state pickled by a seeded fit
    conditioning.repair(model)
    return model, id_records


def run_sample(
    storage: UserStorage,
    settings: Settings,
    model_name: str,
    rows: Any,
    emit: Callable[[dict[str, Any]], None],
    conditions: dict[str, Any] | None = None,
    seed: int | None = None,
    on_member: Callable[[bytes], None] | None = None,
) -> dict[str, Any]:
    """Sample ``rows`` rows into a stored dataset; each gzip member is also handed to ``on_member`` as it is written."""
    rows = whole_number(rows, "rows", MAX_ROWS)
    check_sample_rows(settings, rows)  # before the model is loaded: a refusal costs nothing
    if seed is not None:
        whole_number(seed, "seed", MAX_SEED, minimum=0)
    if conditions is not None and not isinstance(conditions, dict):
        raise UsageError("conditions must map column names to values")
    from .transform import parse_conditions

    storage.model_path(model_name)  # "no model named ..." before anything else
    used = check_quota(settings, storage)  # already over quota: refuse before loading anything
    meta = storage.read_model_meta(model_name)
    # Conditions are checked against the JSON before the model is loaded, so a typo fails fast.
    wanted = parse_conditions(conditions, meta)
    model, id_records = load_model(storage, model_name, meta, settings)
    import numpy as np

    from .csv_writer import CsvWriter
    from .rules import Rules
    from .transform import Restorer

    seed_everything(seed)
    restore = Restorer(meta, id_records, np.random.default_rng(seed), conditioned=wanted)
    rules = Rules(meta["rules"], meta) if meta.get("rules") else None  # models made before rules have none
    write_csv = CsvWriter(meta.get("delimiter", ","), restore.for_csv)
    reservation = storage.reserve_dataset(meta["dataset"], rows)
    chunks = kept_chunks(model, rows, wanted, restore, rules)
    hashing = _write_dataset(settings, reservation, chunks, write_csv, rows, used, emit, on_member)
    return {
        "name": reservation.name,
        "path": str(reservation.final),
        "size_bytes": hashing.size,
        "sha256": hashing.sha256.hexdigest(),
        "rows": rows,
        "dtypes": {c["name"]: c["dtype"] for c in meta["columns"]},
    }


def _write_dataset(
    settings: Settings,
    reservation: Reservation,
    chunks: Iterator[Any],
    to_csv: Callable[[Any], bytes],
    rows: int,
    used: int,
    emit: Callable[[dict[str, Any]], None],
    on_member: Callable[[bytes], None] | None,
) -> HashingWriter:
    """Write the chunks into the reserved dataset, one gzip member each, within the user's quota (``used`` before).

    The dataset is committed when whole; on any failure its temporary file goes.
    """
    try:
        with reservation.open() as raw:
            hashing = HashingWriter(raw)

            def csv_blocks() -> Iterator[bytes]:
                done = 0
                for chunk in chunks:
                    yield to_csv(chunk)
                    done += len(chunk)
                    # Checked per chunk, on what has reached the file: the
                    # overshoot is at most the chunks still being compressed,
                    # and on refusal the finally below removes the temporary file.
                    check_quota_total(settings, used + hashing.size)
                    emit(event("sample", rows=done, total=rows))

            # One gzip member per chunk, compressed in threads while the next chunk is generated.
            for member in gzip_members(csv_blocks(), level=SAMPLE_GZIP_LEVEL):
                hashing.write(member)
                if on_member is not None:
                    on_member(member)
        # Again on the whole file: a small sample sits in buffers until the gzip is closed.
        check_quota_total(settings, used + hashing.size)
        reservation.commit()
    finally:
        reservation.abandon()
    return hashing


def kept_chunks(model: Any, rows: int, conditions: dict[str, str], restore: Callable[[Any], Any], rules: Any) -> Iterator[Any]:
    """``rows`` restored rows in chunks, every one keeping the model's rules (``rules.Rules``; None: no rules).

    A row that still breaks a rule once rebuilt is dropped and replaced by
    new draws, within the same budget as conditions: a rule the model
    almost never keeps ends in a clear error, not an endless loop.
    """
    if rules is None:
        for chunk in _chunks(model, rows, conditions):
            yield restore(chunk)
        return
    import pandas as pd

    budget = draw_budget(rows)
    raw = _chunks(model, budget, conditions)
    done = drawn = 0
    kept = None
    while done < rows:
        want = min(CHUNK_ROWS, rows - done)
        while kept is None or len(kept) < want:
            chunk = next(raw, None)
            if chunk is None or drawn >= budget:
                have = done + (0 if kept is None else len(kept))
                raise UsageError(f"only {have:,} of {rows:,} rows kept every rule in {drawn:,} draws; check the rules file")
            drawn += len(chunk)
            good = rules.apply(restore(rules.decode(chunk)))
            kept = good if kept is None else pd.concat([kept, good], ignore_index=True)
        yield kept.iloc[:want].reset_index(drop=True)
        kept = kept.iloc[want:].reset_index(drop=True)
        done += want


def _chunks(model: Any, rows: int, conditions: dict[str, str]) -> Iterator[Any]:
    """Raw CTGAN rows in chunks of at most CHUNK_ROWS, keeping only rows that meet the conditions."""
    from . import generation

    if not conditions:
        for done in range(0, rows, CHUNK_ROWS):
            yield generation.generate(model, min(CHUNK_ROWS, rows - done))
        return
    import pandas as pd

    from .conditioning import steering
    from .transform import matching_rows

    steer = steering(model, conditions)
    budget = draw_budget(rows)
    done = drawn = matched = 0
    spare = None  # matches drawn beyond the last chunk: kept for the next one, never thrown away
    while done < rows:
        want = min(CHUNK_ROWS, rows - done)
        while spare is None or len(spare) < want:
            if drawn >= budget:
                shown = ", ".join(f"{k}={v}" for k, v in conditions.items())
                raise UsageError(
                    f"only {done + (0 if spare is None else len(spare)):,} of {rows:,} rows matched {shown} in {drawn:,} "
                    "draws; that combination is too rare in what the model learned: ask for fewer rows or looser conditions"
                )
            # Draw more when matches are rare, judged by the match rate so far.
            rate = matched / drawn if drawn else 1.0
            needed = want - (0 if spare is None else len(spare))
            batch = int(min(MAX_DRAW_BATCH, budget - drawn, max(needed / max(rate, 1e-4) * 1.2, 1000)))
            found = matching_rows(generation.generate(model, batch, steer), conditions)
            drawn += batch
            matched += len(found)
            spare = found if spare is None else pd.concat([spare, found], ignore_index=True)
        chunk, spare = spare.iloc[:want], spare.iloc[want:]
        done += len(chunk)
        yield chunk
