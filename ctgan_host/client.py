"""The Python API: everything the CLI does, callable from a notebook.

    from ctgan_host import Client
    client = Client.from_config("config.toml")
    client.login("alice", password)
    model = client.fit(df, epochs=300)
    synthetic = client.sample(model, 1000)

pandas is imported only by the calls that take or return DataFrames.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ctgan_server.wire import (
    DONE,
    MAX_EPOCHS,
    MAX_ROWS,
    MAX_SEED,
    SYNTHETIC_SUFFIX,
    AuthError,
    BadDataError,
    NotFoundError,
    UsageError,
    VersionMismatchError,
    check_file_name,
    check_holdout,
    check_protect,
    dataset_stem,
    job_error,
    whole_number,
)

from .config import Config, ServerConfig, load_config
from .session import Session
from .transfer import Progress, Transfer
from .transport import open_connection

if TYPE_CHECKING:
    import pandas as pd

OnEvent = Callable[[dict[str, Any]], None]
DEFAULT_EPOCHS = 300  # upstream CTGAN's default
# The first protocol version with `doctor`: an older server would refuse it as an unknown method (exit 2).
DOCTOR_PROTOCOL = 4


def check_local_csv(path: str | os.PathLike) -> Path:
    """Fail before connecting when the file plainly cannot be a CSV to fit on."""
    path = Path(path).expanduser()
    if not path.exists():
        raise NotFoundError(f"no such file: {path}")
    if not path.is_file():
        raise UsageError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise BadDataError(f"{path.name} is empty")
    return path


def _kind_overrides(**names: Iterable[str]) -> dict[str, list[str]]:
    """The kind options given (discrete, continuous, datetime, id, ignore), as the `fit` method takes them."""
    return {option: [str(c) for c in columns] for option, columns in names.items() if columns}


def plain_name(stored_name: str) -> str:
    """The local file name for a stored dataset: the same name without .gz."""
    return stored_name[: -len(".gz")] if stored_name.endswith(".gz") else stored_name


class Client:
    def __init__(
        self,
        host: str = "local",
        *,
        port: int | None = None,
        ssh_user: str | None = None,
        identity_file: str | None = None,
        known_hosts: str = "~/.ssh/known_hosts",
        server_dir: str = ".",
        python: str | None = None,
        accept_new_host_keys: bool = False,
        synthetic_output: str | os.PathLike = "synthetic_output",
        debug: bool = False,
    ):
        if host == "local":
            server_dir = str(Path(server_dir).expanduser().resolve())
        self.server = ServerConfig(
            host=host,
            port=port,
            user=ssh_user,
            identity_file=identity_file,
            known_hosts=known_hosts,
            server_dir=server_dir,
            python=python,
            accept_new_host_keys=accept_new_host_keys,
        )
        self.synthetic_output = Path(synthetic_output)
        self.debug = debug
        self._session: Session | None = None
        self._user: str | None = None

    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None, debug: bool = False) -> "Client":
        return cls.from_loaded(load_config(path), debug=debug)

    @classmethod
    def from_loaded(cls, config: Config, debug: bool = False) -> "Client":
        client = cls(synthetic_output=config.synthetic_output, debug=debug)
        client.server = config.server
        return client

    # -- session -------------------------------------------------------------
    def connect(self) -> dict[str, Any]:
        """Open the connection and check versions; returns what the server said about itself."""
        if self._session is None:
            session = Session(open_connection(self.server, self.debug))
            try:
                session.hello()
            except BaseException:
                session.close()
                raise
            self._session = session
        return self._session.server_info

    def login(self, user: str | None, password: str) -> None:
        """Log in as ``user``; None takes the name the server's SSH key fixes (``pinned_user``)."""
        self.connect()
        try:
            user = user or self.pinned_user
            if not user:
                raise UsageError("missing username: this server does not know you by your SSH key")
            self._session.login(user, password)
        except BaseException:
            self.close()  # do not leave a server process or SSH connection behind
            raise
        self._user = user

    @property
    def pinned_user(self) -> str | None:
        """The app user this connection's SSH key is bound to, if the server said so in hello."""
        return self._session.server_info.get("user") if self._session else None

    @property
    def session(self) -> Session:
        if self._session is None or self._user is None:
            raise AuthError("not logged in: call login(user, password) first")
        return self._session

    @property
    def user(self) -> str | None:
        return self._user

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session, self._user = None, None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- listing -------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        return self.session.call("models")

    def datasets(self) -> list[dict[str, Any]]:
        return self.session.call("datasets")

    def delete_model(self, name: str) -> None:
        self.session.call("delete_model", name=name)

    def delete_dataset(self, name: str) -> None:
        self.session.call("delete_dataset", name=name)

    def change_password(self, old: str, new: str) -> None:
        """Change the logged-in user's own password on the server."""
        self.session.call("passwd", old=old, new=new)

    # -- fit -----------------------------------------------------------------
    def fit(
        self,
        data: "pd.DataFrame | str | os.PathLike",
        epochs: int = DEFAULT_EPOCHS,
        discrete: Iterable[str] = (),
        name: str | None = None,
        on_event: OnEvent | None = None,
        on_upload: Progress | None = None,
        **options: Any,
    ) -> str:
        """Upload a CSV (or DataFrame), fit CTGAN on the server, and return the stored model's name.

        Takes ``start_fit``'s options (the column kinds, ``seed``, ``holdout``).
        The fit runs as a job on the server and this call follows it;
        ``start_fit`` returns the job id at once instead.
        """
        job = self.start_fit(data, epochs, discrete, name, on_upload, **options)
        return self.follow(job, on_event)["model"]

    def start_fit(
        self,
        data: "pd.DataFrame | str | os.PathLike",
        epochs: int = DEFAULT_EPOCHS,
        discrete: Iterable[str] = (),
        name: str | None = None,
        on_upload: Progress | None = None,
        *,
        continuous: Iterable[str] = (),
        datetime: Iterable[str] = (),
        ids: Iterable[str] = (),
        ignore: Iterable[str] = (),
        seed: int | None = None,
        holdout: float = 0.0,
        protect: str = "rare",
        constraints: "str | os.PathLike | list[dict[str, Any]] | None" = None,
    ) -> str:
        """Upload and start the fit as a job on the server; returns the job id without waiting.

        ``discrete``, ``continuous``, ``datetime``, ``ids`` and ``ignore`` name
        columns whose kind the server would otherwise guess; ``seed`` makes the
        fit repeatable on CPU; ``holdout`` is the share of rows kept out of training and used only to
        measure memorisation in the fit's report.  ``protect`` is the value
        protection (none, rare or strict); ``constraints`` is a rules file's
        path or its list of rules, which every synthetic row then keeps.
        """
        from .rules_file import check_rule_columns, csv_header, load_rules

        check_holdout(holdout)
        check_protect(protect)
        rules = load_rules(constraints) if constraints is not None else []
        whole_number(epochs, "epochs", MAX_EPOCHS)
        if seed is not None:
            whole_number(seed, "seed", MAX_SEED, minimum=0)
        overrides = _kind_overrides(discrete=discrete, continuous=continuous, datetime=datetime, id=ids, ignore=ignore)
        params = {"epochs": epochs, "overrides": overrides, "seed": seed, "holdout": holdout, "text_columns": []}
        if protect != "rare":  # the default is left out, so a server before rules and protection still fits
            params["protect"] = protect
        if rules:
            params["constraints"] = rules
        if isinstance(data, (str, os.PathLike)):
            path = check_local_csv(data)
            check_rule_columns(rules, csv_header(path), path.name)
            return self._fit_file(path, f"{name}.csv" if name else path.name, params, on_upload)
        check_rule_columns(rules, map(str, data.columns), "the DataFrame")
        with tempfile.TemporaryDirectory(prefix="ctgan_host_") as tmp:
            path = Path(tmp) / f"{dataset_stem(name or 'dataframe')}.csv"
            data.to_csv(path, index=False)
            # A DataFrame's text columns stay text on the server, codes like "0042" included.
            params["text_columns"] = [str(c) for c in data.columns if data[c].dtype == object]
            return self._fit_file(path, f"{name}.csv" if name else path.name, params, on_upload)

    def _fit_file(self, path: Path, filename: str, params: dict[str, Any], on_upload: Progress | None) -> str:
        """Upload ``path`` as ``filename``, then start the fit job on it with the `fit` method's other ``params``."""
        staged = Transfer(self.session).upload(path, filename, on_upload)
        return self.session.call("fit", token=staged["token"], filename=filename, sha256=staged["sha256"], **params)["job"]

    # -- jobs ------------------------------------------------------------------
    def follow(self, job: str, on_event: OnEvent | None = None) -> dict[str, Any]:
        """Stream a job's events until it ends; returns the DONE job, raises its error otherwise.

        Interrupting this (Ctrl-C) only stops watching: the job runs on.
        """
        result = self.session.call("follow", on_event=on_event, job=job)
        if result["state"] != DONE:
            raise job_error(result)
        return result

    def report(self, model: str) -> dict[str, Any]:
        """The quality and privacy report the fit stored with ``model`` (aggregates only)."""
        return self.session.call("report", model=model)

    def jobs(self) -> list[dict[str, Any]]:
        return self.session.call("jobs")

    def cancel(self, job: str) -> dict[str, Any]:
        return self.session.call("cancel", job=job)

    def job_logs(self, job: str) -> list[str]:
        return self.session.call("job_logs", job=job)

    def delete_job(self, job: str) -> None:
        """Remove a finished job's log from the server."""
        self.session.call("delete_job", job=job)

    # -- server health -------------------------------------------------------------
    def doctor(self) -> list[dict[str, Any]]:
        """The health checks any user may run on the server (libraries, devices, disk, Slurm), each {"name", "ok", "detail"}."""
        spoken = self.session.server_info.get("protocol", 0)
        if spoken < DOCTOR_PROTOCOL:
            raise VersionMismatchError(
                f"the server is too old for doctor (it speaks protocol {spoken}, doctor needs {DOCTOR_PROTOCOL}): "
                "ask its admin to upgrade ctgan-server-cli on the server"
            )
        return self.session.call("doctor")

    # -- sample and download -----------------------------------------------------
    def sample_to_file(
        self,
        model: str,
        rows: int,
        out_dir: str | os.PathLike | None = None,
        on_event: OnEvent | None = None,
        conditions: dict[str, Any] | None = None,
        seed: int | None = None,
        on_rows: Progress | None = None,
    ) -> tuple[Path, dict[str, Any]]:
        """Sample on the server, store the result there, and bring back a plain CSV.

        The file streams back while the server is still sampling; ``on_rows``
        is told the rows received so far.  A sample of more rows than the
        server's ``sample_job_rows`` runs there as a job instead: ``on_event``
        first gets ``{"event": "job", "job": ID}``, then the job's events
        (``sample`` ones count the rows written), and the file comes down
        once it is whole.  ``conditions`` maps discrete
        columns to the value every row must have; ``seed`` makes the file
        repeatable for one model.
        """
        whole_number(rows, "rows", MAX_ROWS)
        if seed is not None:
            whole_number(seed, "seed", MAX_SEED, minimum=0)
        params: dict[str, Any] = {"model": model, "rows": rows, "stream": True}
        if conditions:
            params["conditions"] = {str(k): str(v) for k, v in conditions.items()}
        if seed is not None:
            params["seed"] = seed

        def rows_received(lines: int) -> None:
            if on_rows is not None:
                on_rows(min(max(lines - 1, 0), rows))  # less the header; a value may hold a line break

        return Transfer(self.session).download(
            "sample", self._out_dir(out_dir), _local_name, lines=rows_received, on_event=on_event, **params
        )

    def sample(
        self,
        model: str,
        rows: int,
        on_event: OnEvent | None = None,
        conditions: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> "pd.DataFrame":
        """Sample ``rows`` synthetic rows as a DataFrame with the original's dtypes."""
        with tempfile.TemporaryDirectory(prefix="ctgan_host_") as tmp:
            path, result = self.sample_to_file(model, rows, tmp, on_event, conditions, seed)
            return _read_csv(path, result.get("dtypes"))

    def download_to_file(self, name: str, out_dir: str | os.PathLike | None = None, on_progress: Progress | None = None) -> Path:
        """Bring back a stored dataset as a plain CSV in ``out_dir``; ``on_progress`` gets the gzip bytes received."""
        name = check_file_name(name, SYNTHETIC_SUFFIX)
        path, _ = Transfer(self.session).download("download", self._out_dir(out_dir), _local_name, on_progress, name=name)
        return path

    def download(self, name: str) -> "pd.DataFrame":
        with tempfile.TemporaryDirectory(prefix="ctgan_host_") as tmp:
            return _read_csv(self.download_to_file(name, tmp), None)

    def _out_dir(self, out_dir: str | os.PathLike | None) -> Path:
        return Path(out_dir if out_dir is not None else self.synthetic_output)


def _local_name(stored: dict[str, Any]) -> str:
    """The local file name for a stored dataset the server named in its reply."""
    # The name comes from the server: still only ever a plain file name inside the folder.
    return plain_name(check_file_name(stored["name"], SYNTHETIC_SUFFIX))


def _read_csv(path: Path, dtypes: dict[str, str] | None) -> "pd.DataFrame":
    import pandas as pd

    # Text columns are read as text so codes such as "007" keep their zeros.
    text = {col: object for col, dtype in (dtypes or {}).items() if dtype == "object"}
    return pd.read_csv(path, dtype=text or None)
