"""The server's own settings: the ``[service]`` section of ``<server_dir>/config.toml``."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class Settings:
    server_dir: Path
    data_dir: Path
    device: str = "auto"  # "auto" picks CUDA when torch sees one
    torch_threads: int = 0  # 0 leaves torch's own default, per job
    max_running_jobs: int = 1  # fits beyond this wait as QUEUED, first in, first out

    @property
    def credentials_file(self) -> Path:
        return self.server_dir / "credentials.py"


def server_dir() -> Path:
    # The client runs `cd server_dir && python -m ctgan_server serve`, so the
    # working directory is the checkout; the variable exists for admin scripts.
    return Path(os.environ.get("CTGAN_SERVER_DIR") or os.getcwd()).resolve()


def load_settings(root: Path | None = None) -> Settings:
    root = root or server_dir()
    section: dict = {}
    config_file = root / "config.toml"
    if config_file.is_file():
        try:
            with open(config_file, "rb") as fh:
                section = tomllib.load(fh).get("service", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: {exc}") from exc
    data_dir = Path(os.path.expanduser(str(section.get("data_dir", "."))))
    if not data_dir.is_absolute():
        data_dir = root / data_dir
    device = str(section.get("device", "auto"))
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"{config_file}: [service] device must be auto, cpu or cuda, not {device!r}")
    threads = section.get("torch_threads", 0)
    if not isinstance(threads, int) or threads < 0:
        raise ConfigError(f"{config_file}: [service] torch_threads must be a whole number >= 0")
    running = section.get("max_running_jobs", 1)
    if not isinstance(running, int) or isinstance(running, bool) or running < 1:
        raise ConfigError(f"{config_file}: [service] max_running_jobs must be a whole number >= 1")
    return Settings(
        server_dir=root, data_dir=data_dir.resolve(), device=device, torch_threads=threads, max_running_jobs=running
    )
