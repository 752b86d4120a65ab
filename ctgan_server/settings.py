"""The server's own settings: the ``[service]`` section of ``<server_dir>/config.toml``."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .wire import ConfigError

GIB = 1024**3
EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class SlurmOptions:
    """``[service.slurm]``: what `sbatch` is told for every job; each is left to the cluster's default when unset."""

    partition: str | None = None
    gres: str | None = None  # e.g. "gpu:1"
    cpus_per_task: int | None = None
    mem: str | None = None  # an sbatch --mem value, e.g. "8G"
    time_limit: str | None = None  # an sbatch --time value, e.g. "01:00:00"
    account: str | None = None
    qos: str | None = None
    extra_args: tuple[str, ...] = ()  # passed to sbatch as they are

    def sbatch_args(self) -> list[str]:
        args = []
        for flag, value in (
            ("--partition", self.partition),
            ("--gres", self.gres),
            ("--cpus-per-task", self.cpus_per_task),
            ("--mem", self.mem),
            ("--time", self.time_limit),
            ("--account", self.account),
            ("--qos", self.qos),
        ):
            if value is not None:
                args.append(f"{flag}={value}")
        return args + list(self.extra_args)


@dataclass(frozen=True)
class Settings:
    server_dir: Path
    data_dir: Path
    device: str = "auto"  # "auto" picks CUDA when torch sees one
    torch_threads: int = 0  # 0 leaves torch's own default, per job
    max_running_jobs: int = 1  # local executor: fits beyond this wait as QUEUED, first in, first out
    # "local": jobs are processes on this machine; "slurm": they are submitted with sbatch.
    executor: str = "local"
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    # A sample of more rows than this runs as a job (it survives a dropped
    # connection and can be followed and cancelled); smaller ones stay inline.
    sample_job_rows: int = 1_000_000
    # The sshd file `users add --key` writes forced-command lines into.
    authorized_keys: Path = Path("~/.ssh/authorized_keys")
    # Limits: each refused request gets a LimitError (exit 13).  The defaults
    # are sized so that a 2-core, 24 GB server survives a hostile user.
    max_upload_bytes: int = 2 * GIB  # compressed, as it arrives
    max_csv_bytes: int = 8 * GIB  # decompressed
    max_ratio: int = 200  # decompressed / compressed (a gzip bomb has thousands)
    max_rows: int = 5_000_000
    max_columns: int = 2_000
    max_epochs: int = 10_000
    max_jobs_per_user: int = 8  # queued + running
    max_sample_rows: int = 50_000_000
    quota_bytes: int = 20 * GIB  # a user's models + synthetic datasets on disk
    job_retention_days: int = 30  # finished job logs older than this are removed at login
    max_login_delay: int = 30  # seconds: the cap of the growing delay after failed logins
    # Value protection (`fit --protect rare`): a category seen fewer times than
    # this never comes back, and ranges stay this many rows in from either end;
    # strict doubles it (see protection.py).
    rare_category_count: int = 5

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials.json"

    @property
    def legacy_credentials_file(self) -> Path:
        """Where users lived before credentials.json; moved from there once, on first start."""
        return self.server_dir / "credentials.py"


# [service] keys that are whole numbers, with the smallest value each accepts.
_WHOLE_NUMBERS = {
    "torch_threads": 0,
    "max_running_jobs": 1,
    "max_upload_bytes": 1,
    "max_csv_bytes": 1,
    "max_ratio": 1,
    "max_rows": 1,
    "max_columns": 1,
    "max_epochs": 1,
    "max_jobs_per_user": 1,
    "max_sample_rows": 1,
    "sample_job_rows": 1,
    "quota_bytes": 1,
    "job_retention_days": 1,
    "max_login_delay": 0,
    "rare_category_count": 1,
}


def server_dir() -> Path:
    # The client runs `cd server_dir && python -m ctgan_server serve`, so the
    # working directory is the checkout; the variable exists for admin scripts
    # and for jobs.  A forced command passes `--dir` instead.
    return Path(os.environ.get("CTGAN_SERVER_DIR") or os.getcwd()).resolve()


def load_settings(root: Path | None = None) -> Settings:
    root = (root or server_dir()).resolve()
    section: dict = {}
    config_file = root / "config.toml"
    if config_file.is_file():
        try:
            with open(config_file, "rb") as fh:
                section = tomllib.load(fh).get("service", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: {exc}") from exc
    known = {f.name for f in fields(Settings)} - {"server_dir"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{config_file}: unknown [service] key {unknown[0]!r}")
    data_dir = Path(os.path.expanduser(str(section.get("data_dir", "."))))
    if not data_dir.is_absolute():
        data_dir = root / data_dir
    device = str(section.get("device", "auto"))
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"{config_file}: [service] device must be auto, cpu or cuda, not {device!r}")
    numbers = {}
    for key, minimum in _WHOLE_NUMBERS.items():
        if key not in section:
            continue
        value = section[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{config_file}: [service] {key} must be a whole number >= {minimum}")
        numbers[key] = value
    keys_file = Path(os.path.expanduser(str(section.get("authorized_keys", "~/.ssh/authorized_keys"))))
    if not keys_file.is_absolute():
        keys_file = root / keys_file
    executor = section.get("executor", "local")
    if executor not in EXECUTORS:
        raise ConfigError(f"{config_file}: [service] executor must be local or slurm, not {executor!r}")
    return Settings(
        server_dir=root,
        data_dir=data_dir.resolve(),
        device=device,
        authorized_keys=keys_file,
        executor=executor,
        slurm=_slurm_options(config_file, section.get("slurm", {})),
        **numbers,
    )


_SLURM_STRINGS = ("partition", "gres", "mem", "time_limit", "account", "qos")


def _slurm_options(config_file: Path, section: Any) -> SlurmOptions:
    """``[service.slurm]``, checked here so that a typo fails at start-up, not at the first sbatch."""
    where = f"{config_file}: [service.slurm]"
    if not isinstance(section, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(section) - set(_SLURM_STRINGS) - {"cpus_per_task", "extra_args"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    values: dict[str, Any] = {}
    for key in _SLURM_STRINGS:
        if key in section:
            if not isinstance(section[key], str) or not section[key].strip():
                raise ConfigError(f"{where} {key} must be a non-empty string")
            values[key] = section[key].strip()
    if "cpus_per_task" in section:
        cpus = section["cpus_per_task"]
        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
            raise ConfigError(f"{where} cpus_per_task must be a whole number >= 1")
        values["cpus_per_task"] = cpus
    extra = section.get("extra_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise ConfigError(f"{where} extra_args must be a list of strings")
    return SlurmOptions(extra_args=tuple(extra), **values)
