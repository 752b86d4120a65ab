"""Shared fixtures: a throwaway server checkout, client configs, a real sshd, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sshd import SSHD  # noqa: E402

from ctgan_server.auth import CredentialStore  # noqa: E402

PASSWORDS = {"alice": "alice-secret-pw", "bob": "bob-secret-pw1"}


def make_server(root: Path) -> Path:
    """A server checkout: the package (linked), a config.toml, and two users."""
    root.mkdir()
    (root / "ctgan_server").symlink_to(REPO / "ctgan_server")
    # authorized_keys inside the checkout: no test may touch the real ~/.ssh.
    (root / "config.toml").write_text('[service]\ndevice = "cpu"\ntorch_threads = 1\nauthorized_keys = "ssh/authorized_keys"\n')
    store = CredentialStore(root / "credentials.json")
    for user, password in PASSWORDS.items():
        store.add(user, password)
    return root


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    return make_server(tmp_path / "server")


def write_client_config(path: Path, server: dict[str, object], client_root: Path) -> Path:
    lines = ["[server]"]
    for key, value in server.items():
        lines.append(f"{key} = {value!r}".replace("'", '"') if not isinstance(value, bool) else f"{key} = {str(value).lower()}")
    lines += ["", "[paths]", f'original_data = "{client_root / "originals"}"', f'synthetic_output = "{client_root / "synthetic"}"', ""]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def client_root(tmp_path: Path) -> Path:
    root = tmp_path / "client"
    (root / "home").mkdir(parents=True)
    return root


@pytest.fixture
def local_config(tmp_path: Path, server_dir: Path, client_root: Path) -> Path:
    return write_client_config(
        client_root / "config.toml", {"host": "local", "server_dir": str(server_dir), "python": sys.executable}, client_root
    )


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(config: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """Run `python -m ctgan_host` as a user would: a real process, stdin not a terminal."""
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOME": str(config.parent / "home"),  # no personal ~/.ssh/config or agent leaks in
        "COLUMNS": "200",
    }
    full_env.pop("SSH_AUTH_SOCK", None)
    for key in ("CTGAN_USER", "CTGAN_PASSWORD", "CTGAN_HOST_CONFIG"):
        full_env.pop(key, None)
    full_env.update(env or {})
    argv = [sys.executable, "-m", "ctgan_host"] + (["--config", str(config)] if config else []) + list(args)
    proc = subprocess.run(
        argv, input=input if input is not None else "", capture_output=True, text=True, timeout=600, env=full_env, cwd=cwd or config.parent
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def as_user(user: str) -> tuple[list[str], str]:
    """Global options and stdin that log in as ``user``."""
    return ["--user", user, "--password-stdin"], PASSWORDS[user] + "\n"


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    """Small but messy: ints, floats with gaps, a whole-number float, bools, text with gaps."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 60
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": np.where(rng.random(n) < 0.15, np.nan, rng.normal(50_000, 12_000, n).round(2)),
            "children": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 5, n)).astype(float),
            "member": rng.random(n) < 0.4,
            "city": np.where(rng.random(n) < 0.1, None, rng.choice(["Oslo", "Lima", "Pune"], n)),
            "score": rng.integers(1, 4, n),
        }
    )
    path = tmp_path / "tiny patients.csv"
    frame.to_csv(path, index=False)
    return path


# -- a real OpenSSH server ------------------------------------------------------

@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    """A real sshd on 127.0.0.1; CTGAN_REQUIRE_SSHD=1 turns a missing OpenSSH into a failure, not a skip."""
    from sshd import SSHDUnavailable, running_sshd

    try:
        with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
            yield server
    except SSHDUnavailable as exc:
        if os.environ.get("CTGAN_REQUIRE_SSHD") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
def ssh_config(sshd: SSHD, server_dir: Path, client_root: Path) -> Path:
    return write_client_config(
        client_root / "config.toml",
        {
            "host": "127.0.0.1",
            "port": sshd.port,
            "user": sshd.user,
            "identity_file": str(sshd.identity_file),
            "known_hosts": str(sshd.known_hosts),
            "server_dir": str(server_dir),
            "python": sys.executable,
        },
        client_root,
    )
