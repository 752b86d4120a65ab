"""`evaluate`: the fit report's metrics, computed here on files the user still has.

The same code as the server's fit-time report (``ctgan_server.report``) and
the same dtype rule (pandas' ``read_csv``; numbers are numerical, everything
else categorical), so the two reports can be compared.  Exact matches are
counted against the whole REAL file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctgan_server.wire import BadDataError


def _read(path: Path) -> Any:
    """The server's own parser (separator detection, the same refusals), fed the file's bytes.

    The server's [service] row and column limits protect a shared machine;
    they do not apply to the user's own files on the user's own machine.
    """
    import sys

    from ctgan_server.schema import parse_csv
    from ctgan_server.settings import Settings

    unlimited = Settings(server_dir=Path("."), data_dir=Path("."), max_rows=sys.maxsize, max_columns=sys.maxsize)
    return parse_csv(path.read_bytes(), path.name, settings=unlimited)


def evaluate_files(real: Path, synthetic: Path, holdout: Path | None = None) -> dict[str, Any]:
    from ctgan_server.report import build

    real_frame, synthetic_frame = _read(real), _read(synthetic)
    missing = [c for c in real_frame.columns if c not in synthetic_frame.columns]
    if missing:
        raise BadDataError(f"{synthetic.name} lacks columns of {real.name}: {', '.join(map(str, missing[:8]))}")
    holdout_frame = _read(holdout) if holdout else None
    if holdout_frame is not None and list(holdout_frame.columns) != list(real_frame.columns):
        raise BadDataError(f"{holdout.name} does not have the same columns as {real.name}")
    return build(real_frame, synthetic_frame[list(real_frame.columns)], holdout_frame)
