"""Helpers for the benchmark scripts: a throwaway server checkout and a client config."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from ctgan_server.auth import CredentialStore
from tests.helpers import write_client_config

REPO = Path(__file__).resolve().parent.parent

USER, PASSWORD = "bench", "bench-password"


def make_server_dir(root: Path) -> Path:
    server = root / "server"
    server.mkdir()
    (server / "ctgan_server").symlink_to(REPO / "ctgan_server")
    CredentialStore(server / "credentials.json").add(USER, PASSWORD)
    return server


def local_config(root: Path, server: Path) -> Path:
    client = root / "client"
    client.mkdir(exist_ok=True)
    return write_client_config(
        client / "config.toml", {"host": "local", "server_dir": str(server), "python": sys.executable}, client
    )


def summary(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p90 = ordered[max(0, int(round(0.9 * len(ordered))) - 1)]
    return f"median {statistics.median(ordered):.3f} s, p90 {p90:.3f} s, n={len(ordered)}"


def time_preprocessing(transformer_class: type, frame, discrete: list[str]) -> tuple[float, float, tuple[int, int]]:
    """Seconds to fit, then to transform, ``frame`` with a fresh ``transformer_class``; and the matrix's shape.

    For ctgan's ``DataTransformer`` and the project's ``FastDataTransformer``
    alike; numpy's global generator is seeded first, as a seeded fit does,
    so both see the same random draws.
    """
    import time

    import numpy as np

    np.random.seed(0)
    transformer = transformer_class()
    start = time.perf_counter()
    transformer.fit(frame, discrete)
    fitted = time.perf_counter()
    matrix = transformer.transform(frame)
    return fitted - start, time.perf_counter() - fitted, matrix.shape
