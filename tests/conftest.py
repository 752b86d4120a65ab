"""Shared fixtures: a throwaway server checkout, client configs, a real sshd, and a CLI runner."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ctgan_server.auth import CredentialStore  # noqa: E402

PASSWORDS = {"alice": "alice-secret-pw", "bob": "bob-secret-pw1"}


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    """A server checkout: the package (linked), a config.toml, and two users."""
    root = tmp_path / "server"
    root.mkdir()
    (root / "ctgan_server").symlink_to(REPO / "ctgan_server")
    (root / "config.toml").write_text("[service]\ndevice = \"cpu\"\ntorch_threads = 1\n")
    store = CredentialStore(root / "credentials.py")
    for user, password in PASSWORDS.items():
        store.add(user, password)
    return root


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

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SSHD:
    port: int
    user: str
    identity_file: Path
    known_hosts: Path
    host_key_line: str


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    """Start /usr/sbin/sshd on 127.0.0.1 at a free port, as the current user, with throwaway keys."""
    binary = Path("/usr/sbin/sshd")
    if not binary.exists() or not shutil.which("ssh-keygen"):
        message = "OpenSSH server not installed (apt-get install openssh-server)"
        if os.environ.get("CTGAN_REQUIRE_SSHD") == "1":
            pytest.fail(message)
        pytest.skip(message)
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel ERROR
"""
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen([str(binary), "-D", "-e", "-f", str(d / "sshd_config")], stderr=open(d / "sshd.log", "wb"))
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    else:
        proc.kill()
    if proc.poll() is not None:
        pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()}")
    key_type, key_b64 = (d / "host_key.pub").read_text().split()[:2]
    host_key_line = f"[127.0.0.1]:{port} {key_type} {key_b64}\n"
    (d / "known_hosts").write_text(host_key_line)
    yield SSHD(port, getpass.getuser(), d / "client_key", d / "known_hosts", host_key_line)
    proc.terminate()
    proc.wait(timeout=10)


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
