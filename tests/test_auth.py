"""Unit: scrypt credentials, the users admin command, and what never gets stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ctgan_server.auth import CredentialStore, hash_password, verify_password
from ctgan_server.wire import AuthError, BadDataError, InvalidNameError
from tests.helpers import REPO


def test_hash_is_salted_scrypt_and_verifies():
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", a) and not verify_password("correct hors", a)
    assert not verify_password("x", "garbage")


def test_store_round_trip_without_plaintext(tmp_path):
    store = CredentialStore(tmp_path / "credentials.json")
    store.add("alice", "s3cret-password")
    assert "s3cret-password" not in store.path.read_text()
    assert store.authenticate("alice", "s3cret-password") == "alice"
    store.set_password("alice", "another-password")
    with pytest.raises(AuthError):
        store.authenticate("alice", "s3cret-password")
    store.remove("alice")
    assert store.names() == []


@pytest.mark.parametrize("user", ["mallory", "../alice", "", None])
def test_unknown_or_invalid_user_gets_the_same_error(tmp_path, user):
    store = CredentialStore(tmp_path / "credentials.json")
    store.add("alice", "s3cret-password")
    with pytest.raises(AuthError, match="^wrong username or password$"):
        store.authenticate(user, "s3cret-password")


def test_invalid_names_and_short_passwords_are_refused(tmp_path):
    store = CredentialStore(tmp_path / "credentials.json")
    with pytest.raises(InvalidNameError):
        store.add("../bob", "long-enough-pw")
    with pytest.raises(BadDataError):
        store.add("bob", "short")


def test_legacy_credentials_py_is_moved_once_and_never_executed(tmp_path):
    from ctgan_server.auth import LEGACY_TEMPLATE

    marker = tmp_path / "pwned"
    legacy = tmp_path / "credentials.py"
    legacy.write_text(f"open({str(marker)!r}, 'w').write('x')\nUSERS = {{'alice': {hash_password('pw-pw-pw-pw')!r}}}\n")
    store = CredentialStore(tmp_path / "data" / "credentials.json")
    assert store.adopt_legacy(legacy) == ["alice"]
    assert store.authenticate("alice", "pw-pw-pw-pw") == "alice"
    assert not marker.exists()
    assert legacy.read_text() == LEGACY_TEMPLATE  # what git ships: a pull never conflicts with users
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
    assert store.adopt_legacy(legacy) == []  # once


def test_username_check_is_a_full_match():
    from ctgan_server.auth import check_username

    for bad in ("alice\n", "alice\nbob", " alice", "Alice"):
        with pytest.raises(InvalidNameError):
            check_username(bad)
    from ctgan_server.job_store import JobStore
    from ctgan_server.wire import check_file_name

    with pytest.raises(InvalidNameError):
        check_file_name("loans_20260101t000000_model.gz\n", "_model.gz")
    with pytest.raises(InvalidNameError):
        JobStore(Path("/nonexistent"), "alice").check_id("20260101t000000-abcdef\n")


def _users(server_dir, *args, input=""):
    return subprocess.run(
        [sys.executable, "-m", "ctgan_server", "users", *args],
        input=input,
        capture_output=True,
        text=True,
        cwd=server_dir,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def test_users_command(server_dir):
    assert _users(server_dir, "add", "carol", "--password-stdin", input="carol-password\n").returncode == 0
    assert _users(server_dir, "list").stdout.split() == ["alice", "bob", "carol"]
    assert _users(server_dir, "passwd", "carol", "--password-stdin", input="new-carol-pw\n").returncode == 0
    assert CredentialStore(server_dir / "credentials.json").authenticate("carol", "new-carol-pw") == "carol"
    assert _users(server_dir, "remove", "carol", "--yes").returncode == 0
    dup = _users(server_dir, "add", "alice", "--password-stdin", input="whatever-pw\n")
    assert dup.returncode == 5 and dup.stderr.startswith("Error: user 'alice' already exists")
    bad = _users(server_dir, "add", "../x", "--password-stdin", input="whatever-pw\n")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "invalid username" in bad.stderr
    no_tty = _users(server_dir, "add", "dave")
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr


def test_key_commands_keep_one_line_per_key_and_refuse_bad_keys(server_dir, tmp_path):
    keys_file = server_dir / "ssh" / "authorized_keys"
    for name in ("one", "two"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@laptop", "-f", str(tmp_path / name)], check=True
        )
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "one.pub")], capture_output=True, text=True).stdout.split()[
        1
    ]

    assert _users(server_dir, "add-key", "alice", "--key", str(tmp_path / "one.pub")).returncode == 0
    assert _users(server_dir, "keys", "alice").stdout.split()[0] == fingerprint
    again = _users(server_dir, "add-key", "bob", "--key", str(tmp_path / "one.pub"))
    assert again.returncode == 5 and "already" in again.stderr and "'alice'" in again.stderr
    piped = _users(server_dir, "add-key", "bob", "--key-stdin", input=(tmp_path / "two.pub").read_text())
    assert piped.returncode == 0, piped.stderr
    assert [line.split(" serve --as ")[1].split('"')[0] for line in keys_file.read_text().splitlines()] == ["alice", "bob"]

    for bad in ("not a key\n", 'command="sh" ' + (tmp_path / "two.pub").read_text(), "ssh-ed25519 AAAA!!!\n"):
        refused = _users(server_dir, "add-key", "alice", "--key-stdin", input=bad)
        assert refused.returncode == 5 and refused.stderr.count("\n") == 1, refused.stderr
    assert _users(server_dir, "add-key", "nobody", "--key", str(tmp_path / "two.pub")).returncode == 4

    assert _users(server_dir, "remove-key", "alice", fingerprint).returncode == 0
    assert _users(server_dir, "keys", "alice").stdout == ""
    assert _users(server_dir, "remove-key", "alice", fingerprint).returncode == 4
    assert "--as bob" in keys_file.read_text()  # bob's line untouched


def test_admin_usage_errors_are_one_line(server_dir):
    missing = _users(server_dir, "add")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and missing.stderr.startswith("Error: ")
