"""Unit: per-user folders, name checks, collision-free names and atomic writes."""

from __future__ import annotations

import os
import stat
import time

import pytest

from ctgan_server.storage import UserStorage, timestamp
from ctgan_server.wire import (
    InvalidNameError,
    NotFoundError,
    atomic_write_text,
    check_file_name,
    dataset_stem,
)


@pytest.mark.parametrize(
    "bad", ["../bob/x_model.gz", "/etc/passwd", "a/b_model.gz", "..", "", ".hidden_model.gz", "x\\..\\y", None, 3]
)
def test_file_names_must_be_plain(bad):
    with pytest.raises(InvalidNameError):
        check_file_name(bad)


def test_suffix_is_enforced():
    assert check_file_name("credit_20261123t200923_model.gz", "_model.gz")
    with pytest.raises(InvalidNameError):
        check_file_name("credit_20261123t200923_model.json", "_model.gz")


@pytest.mark.parametrize(
    "filename, stem",
    [("credit data.csv", "credit_data"), ("/x/y/loans.CSV", "loans"), ("a.csv.gz", "a"), ("..csv", "data"), ("né€.csv", "n")],
)
def test_dataset_stem_is_filename_safe(filename, stem):
    assert dataset_stem(filename) == stem


def test_timestamp_is_utc_with_lowercase_t():
    assert timestamp(0) == "19700101t000000"


def test_folders_are_private_and_per_user(tmp_path):
    alice, bob = UserStorage(tmp_path, "alice"), UserStorage(tmp_path, "bob")
    for folder in (alice.models_dir, alice.synthetic_dir, alice.staging_dir, tmp_path / "model_database"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    res = bob.reserve_dataset("secret", 10)
    with res.open() as fh:
        fh.write(b"x")
    res.commit()
    assert stat.S_IMODE(res.final.stat().st_mode) == 0o600
    assert alice.list_datasets() == [] and [d["name"] for d in bob.list_datasets()] == [res.name]
    with pytest.raises(NotFoundError):
        alice.dataset_path(res.name)


def test_same_second_reservations_get_distinct_names(tmp_path):
    storage = UserStorage(tmp_path, "alice")
    when = time.time()
    first = storage.reserve_dataset("loans", 5, when)
    second = storage.reserve_dataset("loans", 5, when)  # first still writing
    first.commit()
    third = storage.reserve_dataset("loans", 5, when)  # first already published
    names = {first.name, second.name, third.name}
    assert len(names) == 3
    assert all(n.startswith("loans_") and n.endswith("_5_synthetic.csv.gz") for n in names)
    for r in (second, third):
        r.abandon()
    assert sorted(p.name for p in storage.synthetic_dir.iterdir()) == [first.name]


def test_abandoned_reservation_leaves_nothing(tmp_path):
    storage = UserStorage(tmp_path, "alice")
    res = storage.reserve_model("m")
    with res.open() as fh:
        fh.write(b"half a model")
    res.abandon()
    assert list(storage.models_dir.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["f.txt"]


def test_stale_staging_is_swept_and_fresh_kept(tmp_path):
    storage = UserStorage(tmp_path, "alice")
    old, fresh = storage.new_staging_path(), storage.new_staging_path()
    old.write_bytes(b"a")
    fresh.write_bytes(b"b")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert storage.sweep_leftovers() == 1
    assert [p.name for p in storage.staging_dir.iterdir()] == [fresh.name]


def test_upload_tokens_are_checked(tmp_path):
    with pytest.raises(InvalidNameError):
        UserStorage(tmp_path, "alice").staged_path("../../bob/original_data/x")


def _claim(args):
    root, when = args
    res = UserStorage(root, "alice").reserve_dataset("race", 3, when)
    with res.open() as fh:
        fh.write(res.name.encode())
    res.commit()
    return res.name


def test_concurrent_writers_in_one_second_all_get_their_own_name(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    when = time.time()
    with ProcessPoolExecutor(4) as pool:
        names = list(pool.map(_claim, [(tmp_path, when)] * 12))
    assert len(set(names)) == 12
    folder = UserStorage(tmp_path, "alice").synthetic_dir
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    assert all((folder / n).read_text() == n for n in names)


def test_leftover_temporary_files_are_swept(tmp_path):
    storage = UserStorage(tmp_path, "alice")
    stale = storage.models_dir / ".x_20260101t000000_model.gz.tmp"
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    live = storage.reserve_model("y")
    assert storage.sweep_leftovers() == 1
    assert not stale.exists() and live.tmp.exists()
    live.abandon()


def test_parallel_gzip_members_decompress_byte_exact_with_gzip_d(tmp_path):
    import random
    import shutil
    import subprocess

    from ctgan_server.wire import gzip_members

    rng = random.Random(3)
    blocks = [
        "".join(
            f"{rng.randint(0, 10**6)},{rng.random():.6f},cat{rng.randint(0, 9)}\n" for _ in range(rng.randint(0, 5000))
        ).encode()
        for _ in range(23)
    ]
    outputs = []
    for attempt in range(2):
        path = tmp_path / f"out{attempt}.csv.gz"
        with open(path, "wb") as fh:
            for member in gzip_members(iter(blocks), threads=2, ahead=3):
                fh.write(member)
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]  # no timestamps: the same rows give the same file, as --seed promises
    assert shutil.which("gzip")
    unpacked = subprocess.run(["gzip", "-dc", str(tmp_path / "out0.csv.gz")], capture_output=True, check=True).stdout
    assert unpacked == b"".join(blocks)


def test_an_abandoned_gzip_stream_stops_its_threads():
    import threading

    from ctgan_server.wire import gzip_members

    def blocks():
        yield b"a,b\n" * 1000
        raise RuntimeError("quota")

    with pytest.raises(RuntimeError):
        for _ in gzip_members(blocks(), ahead=8):
            pass
    assert not [t for t in threading.enumerate() if t.name.startswith("gzip")]
