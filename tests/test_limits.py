"""Server limits ([service] max_* and quota_bytes): each refusal is one line, exit 13, and leaves nothing behind.

Unit tests drive ``ctgan_server.limits.GzipGuard`` and ``read_uploaded_csv``
directly; the CLI tests go through `python -m ctgan_host` over the local
transport, with the limits appended to the server's config.toml.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from ctgan_server.limits import (
    RATIO_FLOOR,
    GzipGuard,
    check_epochs,
    check_jobs,
    check_quota,
    check_quota_total,
    check_sample_rows,
    csv_too_big,
    human_bytes,
    inflate_upload,
    line_cap,
    upload_too_big,
)
from ctgan_server.settings import Settings
from ctgan_server.storage import UserStorage
from ctgan_server.wire import BadDataError, LimitError
from tests.helpers import (
    PASSWORDS,
    REPO,
    Result,
    as_user,
    make_server,
    run_cli,
    seal_upload,
    write_client_config,
)

# A real CSV that ships with the project (../shared is not there on every machine).
PENGUINS = REPO / "ctgan_host" / "demo_data" / "penguins.csv"
USER = "alice"
MB = 1024 * 1024


def _settings(**limits: int) -> Settings:
    return Settings(server_dir=Path("."), data_dir=Path("."), **limits)


def _bomb(compressed_size: int = 150_000) -> bytes:
    """A gzip bomb of about ``compressed_size`` bytes: one CSV line, repeated; built without holding what it inflates to."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"1,2.5,abc,2021-03-04\n" * 50_000
    parts = [packer.compress(b"a,b,c,d\n")]
    size = 0
    while size < compressed_size:
        part = packer.compress(block)
        parts.append(part)
        size += len(part)
    parts.append(packer.flush())
    return b"".join(parts)


def _feed_in_frames(guard: GzipGuard, data: bytes, frame: int = 64 * 1024) -> None:
    for start in range(0, len(data), frame):
        guard.feed(data[start : start + frame])
    guard.finish()


# -- GzipGuard ----------------------------------------------------------------------------


def test_a_gzip_bomb_is_refused_at_once_in_bounded_memory():
    bomb = _bomb()
    assert 120_000 < len(bomb) < 200_000
    tracemalloc.start()
    started = time.perf_counter()
    try:
        guard = GzipGuard(_settings(), "bomb.csv")
        with pytest.raises(LimitError, match=r"\[service\] max_ratio") as caught:
            _feed_in_frames(guard, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - started
    # Refused just past the ratio check's floor, long before the ~150 MB it would inflate to.
    assert RATIO_FLOOR < guard.csv_bytes < RATIO_FLOOR + 2 * MB
    assert peak < 3 * MB, f"the guard held {peak / MB:.1f} MiB"
    assert seconds < 2, seconds
    assert "\n" not in str(caught.value)


def test_a_kept_bomb_is_refused_before_it_grows_past_the_floor():
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match="max_ratio"):
            inflate_upload(_settings(), "bomb.csv", _bomb())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < RATIO_FLOOR + 4 * MB, f"{peak / MB:.1f} MiB"


def test_a_small_very_regular_file_is_under_the_ratio_floor():
    raw = b"flag\n" + b"0\n" * 2_000_000  # 4 MB of zeros: over 200-fold, and harmless
    compressed = gzip.compress(raw, 9)
    assert len(raw) / len(compressed) > 200
    assert inflate_upload(_settings(), "zeros.csv", compressed) == raw


def test_decompressed_size_and_compressed_size_limits():
    raw = b"x,y\n" + b"".join(b"%d,%d\n" % (i, i * 7919 % 1000) for i in range(200_000))
    compressed = gzip.compress(raw)
    with pytest.raises(LimitError, match=r"decompresses to more than 1\.0 MiB \(\[service\] max_csv_bytes\)"):
        inflate_upload(_settings(max_csv_bytes=MB), "big.csv", compressed)
    with pytest.raises(LimitError, match=r"larger than 1\.0 KiB compressed \(\[service\] max_upload_bytes\)"):
        inflate_upload(_settings(max_upload_bytes=1024), "big.csv", compressed)


def test_line_count_limit_names_max_rows():
    raw = b"a,b\n" + b"1,2\n" * 300
    guard = GzipGuard(_settings(max_rows=100), "long.csv")
    with pytest.raises(LimitError) as caught:
        _feed_in_frames(guard, gzip.compress(raw))
    message = str(caught.value)
    assert f"more than {line_cap(_settings(max_rows=100)):,} lines" in message and "[service] max_rows" in message


def test_a_real_csv_passes_whole_in_any_framing():
    lines = PENGUINS.read_bytes().splitlines(keepends=True)
    raw = lines[0] + b"".join(lines[1:]) * 50  # 17,000 rows, about 1 MB
    compressed = gzip.compress(raw, 6)
    guard = GzipGuard(_settings(), "penguins.csv", keep=True)
    _feed_in_frames(guard, compressed, frame=65_537)  # frames that split gzip blocks anywhere
    assert (guard.compressed_bytes, guard.csv_bytes, guard.lines) == (len(compressed), len(raw), raw.count(b"\n"))
    # Not kept: nothing returned.
    plain = GzipGuard(_settings(), "penguins.csv")
    _feed_in_frames(plain, compressed, frame=1 << 20)
    assert plain.finish() is None
    # Multi-member gzip (what `cat a.gz b.gz` makes) is read whole.
    half = len(raw) // 2
    two = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    assert inflate_upload(_settings(), "penguins.csv", two) == raw


def test_a_million_row_csv_passes_the_default_limits():
    """The defaults must not refuse real work: penguins repeated to 1,000,000 rows, as a user would gzip it."""
    lines = PENGUINS.read_bytes().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts, left = [packer.compress(header)], 1_000_000
    while left:
        take = rows[: min(left, len(rows))]
        parts.append(packer.compress(b"".join(take)))
        left -= len(take)
    parts.append(packer.flush())
    guard = GzipGuard(_settings(), "million.csv")
    _feed_in_frames(guard, b"".join(parts), frame=1 << 20)
    assert guard.lines == 1_000_001


@pytest.mark.parametrize(
    "data, words",
    [
        (b"plain text", "not valid gzip"),
        (gzip.compress(b"a,b\n1,2\n")[:-3], "ends in the middle"),
        (gzip.compress(b"a\n1\n") + b"junk", "not valid gzip"),
    ],
)
def test_broken_gzip_is_bad_data_not_a_limit(data, words):
    with pytest.raises(BadDataError, match=words) as caught:
        inflate_upload(_settings(), "x.csv", data)
    assert caught.value.exit_code == 5


# -- the parsed table ---------------------------------------------------------------------


def test_too_many_rows_and_columns_on_the_parsed_table():
    from ctgan_server.schema import read_uploaded_csv

    rows = gzip.compress(b"a,b\n" + b"".join(b"%d,%d\n" % (i, i % 3) for i in range(105)))
    # 105 rows: within the line allowance, so the parsed table's exact count refuses it.
    with pytest.raises(LimitError, match=r"105 rows; at most 100 are allowed \(\[service\] max_rows\)"):
        read_uploaded_csv(rows, "rows.csv", settings=_settings(max_rows=100))
    assert len(read_uploaded_csv(rows, "rows.csv", settings=_settings(max_rows=105))) == 105
    wide = gzip.compress(b"a,b,c,d,e,f\n1,2,3,4,5,6\n7,8,9,10,11,12\n")
    with pytest.raises(LimitError, match=r"6 columns; at most 5 are allowed \(\[service\] max_columns\)") as caught:
        read_uploaded_csv(wide, "wide.csv", settings=_settings(max_columns=5))
    assert caught.value.exit_code == 13


def test_delimiter_is_detected_from_the_head_only():
    from ctgan_server.schema import HEAD_BYTES, read_uploaded_csv

    # Past the head, a line with a different number of ';' must not matter to detection
    # (pandas itself then decides about that line).
    line = b"1;" + b"x" * 200 + b";3\n"
    body = line * (HEAD_BYTES // len(line) + 100)
    frame = read_uploaded_csv(gzip.compress(b"a;b;c\n" + body), "semi.csv")
    assert list(frame.columns) == ["a", "b", "c"] and frame.attrs["delimiter"] == ";"


def test_a_long_header_line_is_read_whole():
    from ctgan_server.schema import HEAD_BYTES, read_uploaded_csv

    names = [f"a_rather_long_column_name_to_fill_the_head_{i:04d}" for i in range(1500)]
    header = ",".join(names).encode()
    assert len(header) > HEAD_BYTES
    frame = read_uploaded_csv(gzip.compress(header + b"\n" + b",".join([b"1"] * 1500) + b"\n"), "wide.csv")
    assert list(frame.columns) == names


def test_not_utf8_names_the_byte_past_the_first_slice():
    from ctgan_server.schema import read_uploaded_csv

    raw = b"name,n\n" + b"".join(b"caf\xc3\xa9,%d\n" % i for i in range(300_000))
    offset = len(raw) - 3
    raw = raw[:offset] + b"\xff" + raw[offset + 1 :]
    with pytest.raises(BadDataError, match=f"byte 0xff at offset {offset}"):
        read_uploaded_csv(gzip.compress(raw), "latin.csv")


def test_limits_pass_before_pandas_is_imported(tmp_path: Path):
    """run_fit refuses a bomb before the queue, with neither pandas nor torch imported and memory flat;
    a good upload waits its turn as compressed bytes only, already gone from the disk."""
    bomb, good = _bomb(), gzip.compress(b"a,b\n1,x\n2,y\n3,x\n")
    storage = UserStorage(tmp_path, "alice")  # the uploads where `fit` leaves them for the job
    bomb_key = seal_upload(storage.staged_path("b" * 32), bomb)
    good_key = seal_upload(storage.staged_path("a" * 32), good)
    script = textwrap.dedent(
        f"""
        import resource, sys
        from pathlib import Path
        from ctgan_server.wire import LimitError
        from ctgan_server.fit_request import FitRequest
        from ctgan_server.fitting import run_fit
        from ctgan_server.settings import Settings
        from ctgan_server.storage import UserStorage
        root = Path({str(tmp_path)!r})
        settings = Settings(server_dir=root, data_dir=root)
        storage = UserStorage(root, "alice")
        heavy = lambda: sorted(m for m in ("pandas", "numpy", "torch") if m in sys.modules)
        waited = []
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            request = FitRequest(token="b" * 32, filename="bomb.csv", sha256={hashlib.sha256(bomb).hexdigest()!r}, epochs=1)
            run_fit(storage, settings, request, lambda e: None, {bomb_key!r}, wait_turn=lambda: waited.append(1))
        except LimitError as exc:
            print("refused:", exc)
        print("grown_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        print("bomb_waited", len(waited), "imported", heavy())

        class Stop(Exception):
            pass

        def wait_turn():
            print("at_wait staged_exists", storage.staged_path("a" * 32).exists(), "imported", heavy())
            raise Stop()

        try:
            request = FitRequest(token="a" * 32, filename="good.csv", sha256={hashlib.sha256(good).hexdigest()!r}, epochs=1)
            run_fit(storage, settings, request, lambda e: None, {good_key!r}, wait_turn=wait_turn)
        except Stop:
            pass
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "refused:" in out and "max_ratio" in out, out
    assert "bomb_waited 0 imported []" in out, out  # refused before the queue and before pandas
    grown = int(out.split("grown_kib ")[1].split()[0])
    assert grown < 64 * 1024, f"peak memory grew by {grown} KiB"
    assert "at_wait staged_exists False imported []" in out, out
    assert not list(tmp_path.rglob("*.csv.gz"))


# -- small helpers ------------------------------------------------------------------------


def test_helpers_name_their_service_keys():
    settings = _settings(max_epochs=10, max_sample_rows=100, quota_bytes=1000)
    check_epochs(settings, 10)
    with pytest.raises(LimitError, match=r"\[service\] max_epochs"):
        check_epochs(settings, 11)
    check_sample_rows(settings, 100)
    with pytest.raises(LimitError, match=r"\[service\] max_sample_rows"):
        check_sample_rows(settings, 101)
    assert [human_bytes(n) for n in (0, 1023, 1024, 8 * 1024**3, 5 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "8.0 GiB",
        "5.0 TiB",
    ]

    class Used:
        def usage_bytes(self) -> int:
            return 900

    assert check_quota(settings, Used()) == 900
    with pytest.raises(LimitError, match=r"\[service\] quota_bytes"):
        check_quota_total(settings, 900 + 101)
    jobs = [{"state": "RUNNING"}, {"state": "QUEUED"}, {"state": "DONE"}, {"state": "FAILED"}]
    check_jobs(_settings(max_jobs_per_user=3), jobs)
    with pytest.raises(LimitError, match=r"\[service\] max_jobs_per_user"):
        check_jobs(_settings(max_jobs_per_user=2), jobs)
    assert "[service] max_upload_bytes" in upload_too_big(settings, "x.csv").message
    assert "8.0 GiB ([service] max_csv_bytes)" in csv_too_big(_settings(), "x.csv").message


def test_usage_counts_models_datasets_and_temporary_files(tmp_path: Path):
    storage = UserStorage(tmp_path, USER)
    (storage.models_dir / "m_20240101t000000_model.gz").write_bytes(b"x" * 100)
    (storage.models_dir / "m_20240101t000000_model.json").write_bytes(b"x" * 10)
    (storage.synthetic_dir / ".d_1_synthetic.csv.gz.tmp").write_bytes(b"x" * 5)
    (storage.staging_dir / "upload.csv.gz").write_bytes(b"x" * 1000)  # staging is transient: not counted
    UserStorage(tmp_path, "bob").models_dir.joinpath("b_model.gz").write_bytes(b"x" * 1000)
    assert storage.usage_bytes() == 115


def test_an_oversized_staged_upload_is_refused_unread_and_deleted(tmp_path: Path):
    from ctgan_server.fitting import take_upload

    staged = tmp_path / "up.csv.gz"
    staged.write_bytes(b"x" * 2048)
    with pytest.raises(LimitError, match="max_upload_bytes"):
        take_upload(staged, "0" * 64, _settings(max_upload_bytes=1024), bytes(32))
    assert not staged.exists()


# -- through the CLI ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    """One server with one fitted model, shared by the CLI tests below (each restores config.toml)."""
    base = tmp_path_factory.mktemp("limits")
    server = make_server(base / "server")
    client = base / "client"
    (client / "home").mkdir(parents=True)
    config = write_client_config(
        client / "config.toml", {"host": "local", "server_dir": str(server), "python": sys.executable}, client
    )
    csv = base / "small.csv"
    csv.write_text(
        "age,city,score\n" + "".join(f"{20 + i % 50},{['Oslo', 'Lima', 'Pune'][i % 3]},{i % 7 * 1.5}\n" for i in range(80))
    )
    result = _cli(config, "fit", str(csv), "--epochs", "1", "--yes", "--json")
    assert result.code == 0, result.err
    return {"config": config, "server": server, "client": client, "model": json.loads(result.out)["model"]}


def _cli(config: Path, *args: str) -> Result:
    opts, stdin = as_user(USER)
    return run_cli(config, *opts, *args, input=stdin)


@contextlib.contextmanager
def _limits(server: Path, **limits: int):
    """Append [service] limits to the server's config.toml for the duration."""
    config = server / "config.toml"
    original = config.read_text()
    assert original.rstrip().splitlines()[0] == "[service]" and "\n[" not in original  # appending stays in [service]
    config.write_text(original + "".join(f"{key} = {value}\n" for key, value in limits.items()))
    try:
        yield
    finally:
        config.write_text(original)


def _one_limit_error(result: Result, key: str) -> None:
    assert result.code == 13, (result.code, result.err)
    errors = [line for line in result.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.err, result.err
    assert f"[service] {key}" in errors[0], errors[0]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _nothing_left(server: Path) -> None:
    assert not _files(server / "original_data"), "a staged upload was left"
    assert not [p for p in _files(server / "model_database") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_cli_sample_over_max_sample_rows_is_refused(fitted):
    server, out = fitted["server"], fitted["client"] / "out_rows"
    before = _files(server / "synthetic_csv_database")
    with _limits(server, max_sample_rows=10):
        result = _cli(fitted["config"], "sample", fitted["model"], "--rows", "11", "--out", str(out))
    _one_limit_error(result, "max_sample_rows")
    assert _files(server / "synthetic_csv_database") == before  # dotfiles included
    assert not _files(out)


def test_cli_sample_over_quota_is_refused_and_leaves_nothing(fitted):
    server, out = fitted["server"], fitted["client"] / "out_quota"
    folder = server / "synthetic_csv_database" / USER
    before = _files(folder)
    with _limits(server, quota_bytes=1):  # the fitted model alone is over it
        result = _cli(fitted["config"], "sample", fitted["model"], "--rows", "20", "--out", str(out))
    _one_limit_error(result, "quota_bytes")
    assert _files(folder) == before and not _files(out)


def test_cli_sample_that_would_cross_the_quota_is_stopped_and_leaves_nothing(fitted):
    server, out = fitted["server"], fitted["client"] / "out_cross"
    folder = server / "synthetic_csv_database" / USER
    before = _files(folder)
    used = UserStorage(server, USER).usage_bytes()
    with _limits(server, quota_bytes=used + 300):  # room for the gzip header, not for 5,000 rows
        result = _cli(fitted["config"], "sample", fitted["model"], "--rows", "5000", "--out", str(out))
    _one_limit_error(result, "quota_bytes")
    assert _files(folder) == before and not _files(out)
    # With the room, the same sample goes through.
    result = _cli(fitted["config"], "sample", fitted["model"], "--rows", "50", "--out", str(out))
    assert result.code == 0, result.err
    for path in _files(folder):
        if path not in before:
            path.unlink()


def test_a_sample_stopped_mid_stream_leaves_nothing_and_the_session_goes_on(fitted):
    """The quota is crossed after rows have already streamed to the client: no file on either side, no stray bytes."""
    from ctgan_host import Client

    server, out = fitted["server"], fitted["client"] / "out_stream"
    folder = server / "synthetic_csv_database" / USER
    before = _files(folder)
    used = UserStorage(server, USER).usage_bytes()
    received: list[int] = []
    with _limits(server, quota_bytes=used + 40_000), Client.from_config(fitted["config"]) as client:
        client.login(USER, PASSWORDS[USER])
        with pytest.raises(LimitError, match=r"\[service\] quota_bytes"):
            client.sample_to_file(fitted["model"], 400_000, out, on_rows=received.append)
        assert received and received[-1] > 0  # the failure came after frames had flowed
        assert _files(folder) == before and not _files(out)  # no .part file either
        assert fitted["model"] in [m["name"] for m in client.models()]  # the stream ended cleanly: the session is in step


def test_the_job_log_plan_holds_no_values(fitted):
    events = [
        json.loads(line) for log in (fitted["server"] / "jobs" / USER).glob("*.jsonl") for line in log.read_text().splitlines()
    ]
    (plan,) = [e for e in events if e.get("event") == "plan"]  # only the fixture's fit got as far as a plan
    assert plan["rows"] == 80
    for col in plan["columns"]:
        assert set(col) <= {"name", "dtype", "kind", "nulls", "distinct", "reason"}, col
    text = json.dumps(plan)
    for value in ("Oslo", "Lima", "Pune", "69", "9.0"):
        assert value not in text, value
    meta = json.loads((fitted["server"] / "model_database" / USER / fitted["model"].replace(".gz", ".json")).read_text())
    assert "Oslo" in json.dumps(meta["columns"])  # the model's JSON keeps the full plan


# The fit-path CLI tests below need no special wiring: the job's run_fit refuses
# the upload.  Once the server's upload path runs GzipGuard as frames arrive,
# the bomb is refused there instead, with the same exit code and key.


def test_cli_fit_of_a_gzip_bomb_is_refused(fitted, tmp_path: Path):
    server = fitted["server"]
    csv = tmp_path / "bomb.csv"
    with open(csv, "wb") as fh:
        fh.write(b"a,b,c,d\n")
        block = b"1,2.5,abc,2021-03-04\n" * 100_000
        for _ in range(12):  # 25 MB of one line
            fh.write(block)
    models = _files(server / "model_database")
    # An honest client's gzip level 1 makes only ~190-fold of this (a crafted bomb
    # makes 400-1000-fold), so the test lowers the limit rather than depend on it.
    with _limits(server, max_ratio=50):
        result = _cli(fitted["config"], "fit", str(csv), "--epochs", "1", "--yes", "--json")
    _one_limit_error(result, "max_ratio")
    _nothing_left(server)
    assert _files(server / "model_database") == models


@pytest.mark.parametrize(
    "limits, key",
    [({"max_rows": 70}, "max_rows"), ({"max_rows": 20}, "max_rows"), ({"max_columns": 2}, "max_columns")],
    ids=["rows-parsed", "rows-lines", "columns"],
)
def test_cli_fit_over_row_and_column_limits_is_refused(fitted, tmp_path: Path, limits, key):
    server = fitted["server"]
    csv = tmp_path / "data.csv"
    csv.write_text("age,city,score\n" + "".join(f"{20 + i % 50},{['Oslo', 'Lima'][i % 2]},{i % 7}\n" for i in range(75)))
    models = _files(server / "model_database")
    with _limits(server, **limits):
        result = _cli(fitted["config"], "fit", str(csv), "--epochs", "1", "--yes", "--json")
    _one_limit_error(result, key)
    _nothing_left(server)
    assert _files(server / "model_database") == models
