"""`ctgan-server doctor` on a real server checkout: healthy, then broken one way at a time, each named by its check."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.helpers import REPO


def doctor(server_dir: Path, python: str = sys.executable) -> tuple[int, dict[str, str]]:
    """Exit code, and each check's line by the check's name."""
    env = {**os.environ, "PYTHONPATH": str(server_dir)}  # a bare venv finds the linked package as a server would
    done = subprocess.run(
        [python, "-m", "ctgan_server", "--dir", str(server_dir), "doctor"], capture_output=True, text=True, timeout=120, env=env
    )
    lines = {line.split(":")[0].split()[-1] if ":" in line else line: line for line in done.stdout.splitlines()}
    return done.returncode, lines


@pytest.fixture
def checkout(server_dir: Path) -> Path:
    (server_dir / "requirements.txt").symlink_to(REPO / "requirements.txt")  # the checkout's pins
    return server_dir


def failed(lines: dict[str, str]) -> list[str]:
    return sorted(name for name, line in lines.items() if line.startswith("FAIL"))


def test_a_healthy_server_passes_every_check(checkout):
    code, lines = doctor(checkout)
    assert code == 0 and failed(lines) == [], lines
    assert {"packages", "devices", "data_dir", "disk", "permissions", "authorized_keys", "key"} <= set(lines)


def test_missing_libraries_fail_the_packages_and_devices_checks(checkout, tmp_path):
    bare = tmp_path / "bare-venv"
    venv.create(bare, with_pip=False, system_site_packages=False)
    code, lines = doctor(checkout, str(bare / "bin" / "python"))
    assert code == 1 and failed(lines) == ["devices", "packages"]
    assert "ctgan missing (wants 0.12.1)" in lines["packages"] and "torch is not installed" in lines["devices"]


def test_an_unusable_data_folder_fails_the_data_dir_check(checkout):
    # Tests run as root, whom file modes do not stop: a data folder that is not there stands in for an unwritable one.
    (checkout / "config.toml").write_text((checkout / "config.toml").read_text() + 'data_dir = "nowhere/at/all"\n')
    code, lines = doctor(checkout)
    assert code == 1 and "data_dir" in failed(lines) and "cannot write in" in lines["data_dir"]


def test_open_modes_a_damaged_key_line_and_a_shared_server_key_are_each_named(checkout):
    code, _ = doctor(checkout)
    assert code == 0
    (checkout / "credentials.json").chmod(0o644)
    keys = checkout / "ssh" / "authorized_keys"
    keys.parent.mkdir(mode=0o700)
    forced = f'command="{sys.executable} -m ctgan_server --dir {checkout} serve --as alice",restrict'
    good = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    keys.write_text(f"{forced} ssh-ed25519 {good} a@b\n{forced} ssh-ed25519 not*base64\n")
    keys.chmod(0o600)
    (checkout / ".server_key").write_bytes(os.urandom(32))
    (checkout / ".server_key").chmod(0o644)
    code, lines = doctor(checkout)
    assert code == 1 and failed(lines) == ["authorized_keys", "key", "permissions"], lines
    assert "credentials.json is 644" in lines["permissions"] and "line 2 damaged" in lines["authorized_keys"]
    assert "mode 644" in lines["key"]
