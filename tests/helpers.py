"""Plain helpers the tests and the benchmarks share: a server checkout, a client config, and the CLI as a process.

No fixtures here (those live in conftest.py), so that bench/ can import this
module without pulling pytest's fixture machinery along.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ctgan_server.auth import CredentialStore

REPO = Path(__file__).resolve().parent.parent
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


def wait_until(predicate, timeout: float = 60, what: str = "condition"):
    """Poll ``predicate`` every 0.2 s until it returns something truthy, and return that; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def make_local_setup(root: Path) -> tuple[Path, Path]:
    """A server checkout and a client config that reaches it with the local transport, under ``root``; returns both.

    For module-scoped fixtures; per test, conftest's ``server_dir`` and ``local_config`` do the same.
    """
    server = make_server(root / "server")
    client = root / "client"
    (client / "home").mkdir(parents=True)
    config = write_client_config(
        client / "config.toml", {"host": "local", "server_dir": str(server), "python": sys.executable}, client
    )
    return server, config


def seal_upload(path: Path, data: bytes) -> bytes:
    """Stage ``data`` as `serve` does, encrypted (``sealed_upload``); returns the key its job needs."""
    from ctgan_server.sealed_upload import SealedWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        sealed = SealedWriter(fh)
        sealed.write(data)
        sealed.close()
    return sealed.key


def write_client_config(path: Path, server: dict[str, object], client_root: Path) -> Path:
    lines = ["[server]"]
    for key, value in server.items():
        lines.append(f"{key} = {value!r}".replace("'", '"') if not isinstance(value, bool) else f"{key} = {str(value).lower()}")
    lines += [
        "",
        "[paths]",
        f'original_data = "{client_root / "originals"}"',
        f'synthetic_output = "{client_root / "synthetic"}"',
        "",
    ]
    path.write_text("\n".join(lines))
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(
    config: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Result:
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
        argv,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=600,
        env=full_env,
        cwd=cwd or config.parent,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def as_user(user: str) -> tuple[list[str], str]:
    """Global options and stdin that log in as ``user``."""
    return ["--user", user, "--password-stdin"], PASSWORDS[user] + "\n"


class Cli:
    """The CLI as one user runs it against one config, logged in with --password-stdin.

    ``cli("models", "--json")`` runs one command; ``cli.fit(csv, "--json")``
    is the fit every end-to-end test starts with, in one place so that the
    tests agree on how a fit is asked for.  ``user=`` runs one call as
    someone else.
    """

    def __init__(self, config: Path, user: str = "alice"):
        self.config = config
        self.user = user

    def __call__(self, *args: str, user: str | None = None, env: dict[str, str] | None = None) -> Result:
        opts, stdin = as_user(user or self.user)
        return run_cli(self.config, *opts, *args, input=stdin, env=env)

    def fit(self, csv: Path, *extra: str, epochs: int = 1, user: str | None = None) -> Result:
        return self("fit", str(csv), "--epochs", str(epochs), *extra, user=user)
