"""Client configuration: config.toml, then environment, then flags.

The file is found from ``--config``, then ``CTGAN_HOST_CONFIG``, then
``./config.toml``.  Relative paths in it are relative to the file's folder.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctgan_server.wire import ConfigError

LOCAL = "local"


@dataclass
class ServerConfig:
    host: str = LOCAL
    port: int | None = None  # None: ~/.ssh/config's Port, else 22
    user: str | None = None  # the SSH login, not the app user
    identity_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    server_dir: str = "."
    python: str | None = None  # None: this interpreter for local, python3 over SSH
    accept_new_host_keys: bool = False
    connect_timeout: float = 15.0

    @property
    def is_local(self) -> bool:
        return self.host == LOCAL


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    original_data: Path = Path("ctgan_host_original_data")
    synthetic_output: Path = Path("synthetic_output")
    source: Path | None = None  # the file read, if any


_SERVER_KEYS = {
    "host": str,
    "port": int,
    "user": str,
    "identity_file": str,
    "known_hosts": str,
    "server_dir": str,
    "python": str,
    "accept_new_host_keys": bool,
    "connect_timeout": (int, float),
}


def find_config_file(explicit: str | os.PathLike | None = None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get("CTGAN_HOST_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"CTGAN_HOST_CONFIG points to a missing file: {path}")
        return path
    path = Path("config.toml")
    return path if path.is_file() else None


def _section(data: dict[str, Any], name: str, where: Path) -> dict[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return section


def load_config(explicit: str | os.PathLike | None = None) -> Config:
    path = find_config_file(explicit)
    if path is None:
        base = Path.cwd()
        return Config(
            server=ServerConfig(server_dir=str(base)),
            original_data=base / "ctgan_host_original_data",
            synthetic_output=base / "synthetic_output",
        )
    path = path.resolve()
    base = path.parent
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    server_section = _section(data, "server", path)
    for key, value in server_section.items():
        expected = _SERVER_KEYS.get(key)
        if expected is None:
            raise ConfigError(f"{path}: unknown key [server] {key}")
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: [server] {key} has the wrong type ({type(value).__name__})")
    server = ServerConfig(**server_section)
    if server.is_local:
        # A local server_dir is relative to the config file, like every local path.
        server.server_dir = str((base / os.path.expanduser(server.server_dir)).resolve())
    paths = _section(data, "paths", path)
    return Config(
        server=server,
        original_data=base / os.path.expanduser(str(paths.get("original_data", "ctgan_host_original_data"))),
        synthetic_output=base / os.path.expanduser(str(paths.get("synthetic_output", "synthetic_output"))),
        source=path,
    )


def local_python(server: ServerConfig) -> str:
    return server.python or sys.executable
