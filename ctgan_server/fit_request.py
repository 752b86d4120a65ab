"""A job as `serve` hands it over: ``jobs/<user>/<id>.request.json``, a fit or a large sample.

`serve` checks what the client asked for (``server.do_fit``), writes it next
to the job's log and starts the job; the job reads it back, loads the staged
upload it names, and deletes both (``job_runner``).  Nothing in it is a value
from the data: it names the upload by its token and columns by their names.

A job may be started by one release and run, or be found dead, by another
(`git pull` while jobs wait in the queue), so reading is lenient where that
is safe: a key this release does not know is ignored, and a key an older
release did not write takes its default (``holdout`` came after the first
jobs).  A request without the upload's token, name, hash or epochs cannot be
run: that is an InternalError, recorded as the job's failure.
Stdlib only: `serve` imports it, and must stay cheap.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .wire import InternalError, dataset_stem

_TOKEN = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class FitRequest:
    """What one fit job is to do, as `serve` checked it."""

    token: str  # names the staged upload (``UserStorage.staged_path``)
    filename: str  # the original's base name: names the model and its dataset
    sha256: str  # of the staged gzip bytes, as the client sent them
    epochs: int
    # option (discrete, continuous, datetime, id, ignore) -> the column names it was given for
    overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    text_columns: tuple[str, ...] = ()  # read as text whatever they look like
    seed: int | None = None
    holdout: float = 0.0  # the share of rows kept out of training for the report
    protect: str = "rare"  # value protection (`fit --protect`): none, rare or strict
    constraints: tuple[dict[str, Any], ...] = ()  # rules the synthetic rows keep (``wire.check_rules``)

    def __post_init__(self) -> None:
        # JSON has only lists: tuples here, so a request read back equals the one written.
        overrides = {str(option): tuple(map(str, names)) for option, names in (self.overrides or {}).items()}
        object.__setattr__(self, "overrides", overrides)
        object.__setattr__(self, "text_columns", tuple(map(str, self.text_columns or ())))
        object.__setattr__(self, "holdout", float(self.holdout or 0.0))
        object.__setattr__(self, "constraints", tuple(dict(rule) for rule in self.constraints or ()))

    @property
    def dataset(self) -> str:
        """The dataset name the job and its model go by."""
        return dataset_stem(self.filename)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FitRequest:
        return _read(cls, text)


@dataclass(frozen=True)
class SampleRequest:
    """A sample of more than [service] sample_job_rows rows, run as a job (``server.do_sample``)."""

    model: str
    rows: int
    conditions: dict[str, str] | None = None
    seed: int | None = None
    kind: str = "sample"  # what tells the job this is not a fit

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def read_request(text: str) -> FitRequest | SampleRequest:
    """The request of either kind; one without a ``kind`` is a fit (as every request was before samples ran as jobs)."""
    try:
        kind = json.loads(text).get("kind")
    except (ValueError, AttributeError):
        kind = None
    return _read(SampleRequest, text) if kind == "sample" else _read(FitRequest, text)


def _read(cls: type, text: str) -> Any:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise InternalError("the job's request file is damaged; start the job again")
    fields = dataclasses.fields(cls)
    no_default = dataclasses.MISSING
    missing = [f.name for f in fields if f.name not in data and f.default is no_default and f.default_factory is no_default]
    if missing:
        raise InternalError(f"the job's request has no {', '.join(missing)} (written by another release?); start it again")
    return cls(**{f.name: data[f.name] for f in fields if f.name in data})


def request_token(text: str) -> str | None:
    """The token of the staged upload a request file names, even in a request too old or damaged to run.

    Whoever removes a request removes that upload too; a token that is not
    one ``serve`` would have made names no file (None).
    """
    try:
        token = json.loads(text).get("token")
    except (ValueError, AttributeError):
        return None
    return token if isinstance(token, str) and _TOKEN.fullmatch(token) else None
