"""How long `models --json` takes end to end (process start, connect, hello, login, list).

    python -m bench.bench_login [--runs 15]

Runs the real CLI as a subprocess against the local transport and against a
throwaway OpenSSH sshd on 127.0.0.1, and times one scrypt password check.
Goal: under 0.5 s median over SSH on loopback; bar: 1.0 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    PASSWORD,
    REPO,
    USER,
    local_config,
    make_server_dir,
    summary,
    write_client_config,
)
from ctgan_server.auth import hash_password, verify_password
from tests.sshd import running_sshd


def time_cli(config: Path, runs: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(config.parent)}
    env.pop("SSH_AUTH_SOCK", None)
    argv = [sys.executable, "-m", "ctgan_host", "--config", str(config), "--user", USER, "--password-stdin", "models", "--json"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, input=PASSWORD + "\n", text=True, capture_output=True, env=env, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_login", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    stored = hash_password(PASSWORD)
    checks = []
    for _ in range(args.runs):
        start = time.perf_counter()
        verify_password(PASSWORD, stored)
        checks.append(time.perf_counter() - start)
    print(f"scrypt password check:        {summary(checks)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = make_server_dir(root)
        print(f"`models --json`, local:       {summary(time_cli(local_config(root, server), args.runs))}")
        (root / "sshd").mkdir()
        with running_sshd(root / "sshd") as sshd:
            (root / "ssh_client").mkdir()
            config = write_client_config(
                root / "ssh_client" / "config.toml",
                sshd.client_settings(server),
                root / "ssh_client",
            )
            print(f"`models --json`, SSH loopback: {summary(time_cli(config, args.runs))}")


if __name__ == "__main__":
    main()
