"""The audit trail and the growing delay after failed logins, on tmp_path."""

from __future__ import annotations

import json
import re
import threading

import pytest

from ctgan_server.audit import AuditLog, LoginFailures, client_address

LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ [a-z-]+ \S+( [a-z][a-z0-9_]*=[A-Za-z0-9._-]+)*")


def test_record_appends_one_plain_line_per_event(tmp_path):
    log = AuditLog(tmp_path, "alice")
    assert log.lines() == []
    log.record("login", "203.0.113.7")
    log.record("fit", "203.0.113.7", job="20260101t000000-a1b2c3", dataset="patients")
    log.record("delete", "local", model="patients_20260101t000000_model.gz")
    lines = log.lines()
    assert len(lines) == 3 and all(LINE.fullmatch(line) for line in lines)
    assert lines[0].split()[1:] == ["login", "203.0.113.7"]
    assert lines[1].split()[1:] == ["fit", "203.0.113.7", "job=20260101t000000-a1b2c3", "dataset=patients"]
    assert lines[2].endswith(" delete local model=patients_20260101t000000_model.gz")
    assert log.path == tmp_path / "audit" / "alice.log"
    assert (tmp_path / "audit").stat().st_mode & 0o777 == 0o700
    assert log.path.stat().st_mode & 0o777 == 0o600
    assert AuditLog(tmp_path, "bob").lines() == []  # a user's own file only


def test_a_hostile_value_cannot_forge_a_line_or_a_field(tmp_path):
    log = AuditLog(tmp_path, "alice")
    log.record(
        "download",
        "1.2.3.4\n2026-01-01T00:00:00Z login 6.6.6.6",
        dataset="x.csv.gz\n2026-01-01T00:00:00Z delete local model=all",
        model="a b=c/../d\té",
        job=None,
    )
    lines = log.lines()
    assert len(lines) == 1 and LINE.fullmatch(lines[0])
    fields = lines[0].split()
    assert fields[1] == "download" and len(fields) == 6
    assert [f.split("=", 1)[0] for f in fields[3:]] == ["dataset", "model", "job"]
    assert fields[-1] == "job=-"


def test_concurrent_records_never_interleave(tmp_path):
    def write(n: int) -> None:
        log = AuditLog(tmp_path, "alice")
        for i in range(50):
            log.record("sample", "local", model=f"m{n}_{i}" * 10)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = AuditLog(tmp_path, "alice").lines()
    assert len(lines) == 400 and all(LINE.fullmatch(line) for line in lines)


def test_unknown_events_field_names_and_users_are_programming_errors(tmp_path):
    log = AuditLog(tmp_path, "alice")
    with pytest.raises(ValueError, match="unknown audit event"):
        log.record("password", "local")
    with pytest.raises(ValueError, match="field"):
        log.record("fit", "local", **{"Bad Key": "x"})
    for user in ("../bob", "Alice", "", "a" * 40):
        with pytest.raises(ValueError):
            AuditLog(tmp_path, user)
    assert log.lines() == []


def test_client_address(monkeypatch):
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    monkeypatch.delenv("SSH_CLIENT", raising=False)
    assert client_address() == "local"
    monkeypatch.setenv("SSH_CLIENT", "198.51.100.4 50000 22")
    assert client_address() == "198.51.100.4"
    monkeypatch.setenv("SSH_CONNECTION", "2001:db8::1 50000 2001:db8::2 22")
    assert client_address() == "2001:db8::1"
    monkeypatch.setenv("SSH_CONNECTION", "1.2.3.4;rm=x/y 1 2 3")
    assert client_address() == "1.2.3.4_rm_x_y"


# -- login failures ----------------------------------------------------------------


def test_delay_grows_from_zero_and_is_capped(tmp_path):
    failures = LoginFailures(tmp_path, max_delay=30)
    assert failures.delay("alice") == 0
    seen = []
    for _ in range(12):
        failures.failed("alice")
        seen.append(failures.delay("alice"))
    assert seen == [2 ** (n - 5) for n in range(1, 10)] + [30, 30, 30]
    assert seen[3] < 1 and seen[4] == 1
    assert failures.delay("bob") == 0
    assert LoginFailures(tmp_path, max_delay=0).delay("alice") == 0  # max_login_delay = 0 turns it off


def test_failures_persist_across_instances_and_reset_on_success(tmp_path):
    LoginFailures(tmp_path, 30).failed("alice")
    LoginFailures(tmp_path, 30).failed("alice")
    LoginFailures(tmp_path, 30).failed("bob")
    again = LoginFailures(tmp_path, 30)
    assert again.count("alice") == 2 and again.count("bob") == 1
    path = tmp_path / ".login_failures.json"
    assert path.stat().st_mode & 0o777 == 0o600
    stored = json.loads(path.read_text())
    assert stored["alice"]["count"] == 2 and isinstance(stored["alice"]["last"], float)
    again.succeeded("alice")
    assert LoginFailures(tmp_path, 30).delay("alice") == 0
    assert LoginFailures(tmp_path, 30).count("bob") == 1  # only that name
    again.succeeded("carol")  # never failed: nothing to do


def test_names_that_cannot_be_users_are_not_stored(tmp_path):
    failures = LoginFailures(tmp_path, 30)
    for name in ("Alice", "../x", "", "a" * 33, "x\n", "with space", None, 42, ["alice"]):
        failures.failed(name)
        assert failures.delay(name) == 0
        failures.succeeded(name)
    assert not (tmp_path / ".login_failures.json").exists()


def test_the_file_is_bounded_dropping_the_oldest(tmp_path, monkeypatch):
    monkeypatch.setattr(LoginFailures, "MAX_NAMES", 5)
    failures = LoginFailures(tmp_path, 30)
    for i in range(8):
        failures.failed(f"user{i}", now=1000.0 + i)
    stored = json.loads((tmp_path / ".login_failures.json").read_text())
    assert sorted(stored) == [f"user{i}" for i in range(3, 8)]
    failures.failed("user3", now=2000.0)  # user3 is now the newest; user4 the oldest
    failures.failed("new", now=2001.0)
    assert sorted(json.loads((tmp_path / ".login_failures.json").read_text())) == ["new", "user3", "user5", "user6", "user7"]


def test_a_damaged_file_is_started_again(tmp_path):
    (tmp_path / ".login_failures.json").write_text("{not json")
    failures = LoginFailures(tmp_path, 30)
    assert failures.delay("alice") == 0
    failures.failed("alice")
    assert failures.count("alice") == 1


def test_concurrent_failures_are_all_counted(tmp_path):
    def fail() -> None:
        for _ in range(10):
            LoginFailures(tmp_path, 30).failed("alice")

    threads = [threading.Thread(target=fail) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert LoginFailures(tmp_path, 30).count("alice") == 60
