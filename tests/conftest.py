"""Shared fixtures: a throwaway server checkout, client configs, a real sshd, and a CLI runner."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.helpers import Cli, make_server, write_client_config
from tests.sshd import SSHD, SSHDUnavailable, running_sshd


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    return make_server(tmp_path / "server")


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


@pytest.fixture
def cli(local_config: Path) -> Cli:
    """The CLI as alice on the local transport: `cli("models")`, `cli.fit(csv, "--json")`, `user="bob"` for one call."""
    return Cli(local_config)


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
        sshd.client_settings(server_dir),
        client_root,
    )
