"""Protocol tier: what a session refuses: guessing, input that is not the protocol, huge lines, a vanished client."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from ctgan_host import Client
from ctgan_server.wire import AuthError, ConnectError
from tests.helpers import PASSWORDS, REPO, as_user, run_cli


@pytest.fixture
def client(server_dir, tmp_path):
    with Client(server_dir=str(server_dir), python=sys.executable, synthetic_output=tmp_path / "out") as c:
        yield c


def serve(server_dir, data: bytes, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ctgan_server", "serve", *args],
        input=data,
        capture_output=True,
        timeout=30,
        cwd=server_dir,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def test_sixth_login_in_a_session_is_refused_because_the_session_closed(client):
    client.connect()
    session = client._session
    for attempt in range(5):
        with pytest.raises(AuthError):
            session.login("alice", f"wrong-password-{attempt}")
    with pytest.raises(ConnectError):
        session.login("alice", PASSWORDS["alice"])  # even the right password: nobody is listening any more
    assert session.connection.proc.wait(5) is not None


def test_failures_slow_down_the_next_login_for_that_name_across_connections(server_dir, client):
    with open(server_dir / "config.toml", "a") as fh:
        fh.write("max_login_delay = 3\n")  # the default 30 s would make this test take minutes

    def attempt(password: str) -> float:
        started = time.monotonic()
        with Client(server_dir=str(server_dir), python=sys.executable) as fresh:
            try:
                fresh.login("bob", password)
            except AuthError:
                pass
        return time.monotonic() - started

    from ctgan_server.audit import LoginFailures

    first = attempt("wrong-password")
    for _ in range(9):
        attempt("wrong-password")
    failures = LoginFailures(server_dir, 3)
    assert failures.count("bob") == 10 and failures.delay("bob") == 3
    assert attempt(PASSWORDS["bob"]) >= first + 2
    # a success resets the count; alice was never counted for bob's failures
    assert failures.count("bob") == 0 and failures.count("alice") == 0


def test_wrong_current_password_in_passwd_counts_as_a_failed_login(server_dir):
    from ctgan_server.audit import AuditLog, LoginFailures

    with Client(server_dir=str(server_dir), python=sys.executable) as c:
        c.login("alice", PASSWORDS["alice"])
        with pytest.raises(AuthError):
            c.change_password("not-my-password", "a-new-password-1")
    assert LoginFailures(server_dir, 30).count("alice") == 1
    assert [line.split()[1] for line in AuditLog(server_dir, "alice").lines()] == ["login", "login-failed"]


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x05\x01\x00\x00\x00\x03",  # what an sftp client sends first
        b"ls -la\n",
        b"cat credentials.json",
    ],
)
def test_input_that_is_not_the_protocol_gets_one_line_and_serve_exits(server_dir, data):
    started = time.monotonic()
    result = serve(server_dir, data, "--as", "alice")
    assert time.monotonic() - started < 10 and result.returncode == 10
    [line] = result.stdout.splitlines()
    assert "only runs the ctgan-server-cli protocol" in json.loads(line)["error"]["message"]


def test_a_shell_command_through_a_forced_key_is_refused_by_name(server_dir):
    result = subprocess.run(
        [sys.executable, "-m", "ctgan_server", "serve", "--as", "alice"],
        input=b"",
        capture_output=True,
        timeout=30,
        cwd=server_dir,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": "cat credentials.json"},
    )
    assert result.returncode == 10 and b"not 'cat credentials.json'" in result.stderr


def test_a_request_line_over_one_mib_ends_the_session(server_dir):
    result = serve(server_dir, b"{" + b"x" * (3 << 20))
    assert result.returncode == 10
    [line] = result.stdout.splitlines()
    assert "longer than 1,048,576 bytes" in json.loads(line)["error"]["message"]


def test_serve_exits_when_its_client_is_gone_while_following_a_queued_job(local_config, tiny_csv, server_dir):
    opts, stdin = as_user("alice")
    holder = json.loads(
        run_cli(local_config, *opts, "fit", str(tiny_csv), "--epochs", "3000", "--detach", "--json", input=stdin).out
    )["job"]
    queued = json.loads(
        run_cli(local_config, *opts, "fit", str(tiny_csv), "--epochs", "1", "--detach", "--json", input=stdin).out
    )["job"]
    try:
        client = Client(server_dir=str(server_dir), python=sys.executable)
        client.login("alice", PASSWORDS["alice"])
        proc = client._session.connection.proc
        client._session.connection.send(json.dumps({"id": 9, "method": "follow", "params": {"job": queued}}).encode() + b"\n")
        time.sleep(1)
        assert proc.poll() is None  # following
        proc.stdin.close()  # the laptop goes away
        proc.wait(5)
    finally:
        for job in (queued, holder):
            run_cli(local_config, *opts, "jobs", "cancel", job, input=stdin)


def test_uploads_waiting_in_staging_are_bounded_per_user(server_dir, tiny_csv):
    from ctgan_host.transfer import Transfer
    from ctgan_server.wire import LimitError

    with open(server_dir / "config.toml", "a") as fh:
        fh.write("max_jobs_per_user = 1\n")
    with (
        Client(server_dir=str(server_dir), python=sys.executable) as first,
        Client(server_dir=str(server_dir), python=sys.executable) as second,
    ):
        first.login("alice", PASSWORDS["alice"])
        Transfer(first.session).upload(tiny_csv, tiny_csv.name)  # held, never fitted
        second.login("alice", PASSWORDS["alice"])
        with pytest.raises(LimitError, match="max_jobs_per_user"):
            Transfer(second.session).upload(tiny_csv, tiny_csv.name)
    assert list((server_dir / "original_data" / "alice").iterdir()) == []


def test_a_session_pinned_to_one_name_refuses_every_other(server_dir):
    from ctgan_server.auth import CredentialStore

    store = CredentialStore(server_dir / "credentials.json")
    assert store.authenticate("alice", PASSWORDS["alice"], only="alice") == "alice"
    with pytest.raises(AuthError, match="^wrong username or password$"):
        store.authenticate("alice", PASSWORDS["alice"], only="bob")


def test_a_fit_over_max_jobs_per_user_is_refused_and_leaves_nothing(local_config, tiny_csv, server_dir):
    from pathlib import Path

    with open(server_dir / "config.toml", "a") as fh:
        fh.write("max_jobs_per_user = 1\n")
    shm_before = set(Path("/dev/shm").iterdir())
    opts, stdin = as_user("alice")
    holder = json.loads(
        run_cli(local_config, *opts, "fit", str(tiny_csv), "--epochs", "3000", "--detach", "--json", input=stdin).out
    )["job"]
    try:
        refused = run_cli(local_config, *opts, "fit", str(tiny_csv), "--epochs", "1", input=stdin)
        assert refused.code == 13 and "max_jobs_per_user" in refused.err and refused.err.count("\n") == 1, refused.err
        assert list((server_dir / "original_data" / "alice").iterdir()) == []
        assert [job["id"] for job in json.loads(run_cli(local_config, *opts, "jobs", "--json", input=stdin).out)] == [holder]
    finally:
        run_cli(local_config, *opts, "jobs", "cancel", holder, input=stdin)
    leftovers = [p for p in server_dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and set(Path("/dev/shm").iterdir()) <= shm_before


def test_an_upload_over_max_upload_bytes_is_cut_off_mid_stream(server_dir, local_config, tmp_path):
    """The server stops reading at the limit, says why in one line, and keeps nothing of the upload."""
    import os

    with open(server_dir / "config.toml", "a") as fh:
        fh.write("max_upload_bytes = 200000\n")
    big = tmp_path / "noise.csv"
    big.write_text("a\n" + "\n".join(os.urandom(16).hex() for _ in range(60_000)) + "\n")  # about 2 MB, hardly compressible
    opts, stdin = as_user("alice")
    refused = run_cli(local_config, *opts, "fit", str(big), "--epochs", "1", input=stdin)
    assert refused.code == 13 and "max_upload_bytes" in refused.err and refused.err.count("\n") == 1, refused.err
    assert list((server_dir / "original_data" / "alice").iterdir()) == []
    assert json.loads(run_cli(local_config, *opts, "jobs", "--json", input=stdin).out) == []


def test_a_gzip_bomb_fails_its_job_with_a_small_peak_memory(client):
    """150 KB that inflate to gigabytes, sent as is: the job refuses it before parsing, in well under 300 MB."""
    import re
    import zlib

    from ctgan_server.wire import LimitError

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts, size = [packer.compress(b"a,b,c,d\n")], 0
    while size < 150_000:
        parts.append(packer.compress(b"1,2.5,abc,2021-03-04\n" * 50_000))
        size += len(parts[-1])
    bomb = b"".join(parts) + packer.flush()
    client.login("alice", PASSWORDS["alice"])
    staged = client.session.call("upload", upload=[bomb], filename="bomb.csv")
    job = client.session.call("fit", token=staged["token"], filename="bomb.csv", sha256=staged["sha256"], epochs=1)["job"]
    with pytest.raises(LimitError, match="max_ratio"):
        client.follow(job)
    [peak] = [int(m.group(1)) for line in client.job_logs(job) if (m := re.search(r"peak RSS (\d+) MB", line))]
    assert peak < 300
