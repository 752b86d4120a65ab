"""The output file of a job process (``jobs/<user>/<id>.stderr``): useful to an admin, free of data.

The job's stdout and stderr are ``jobs/<user>/<id>.stderr``, kept on the
server for weeks and readable through `jobs logs`.  Anything a library says
can quote the data: a pandas ValueError names the cell it could not parse, a
warning quotes the offending category, an object's repr prints rows.  So in
the job process nothing reaches that file except lines written here, and
those carry what an admin needs to find a fault in the code or the server
(what kind of problem, raised where, through which frames) and never a
message text:
  - warnings: category and the file:line that raised it;
  - log records of libraries (WARNING and up): level, logger and file:line;
  - uncaught exceptions (main thread, other threads, "unraisable" ones in
    __del__): the type of each exception in the chain and its traceback
    frames (file, line, function, source line of the code), no message and
    no local variables;
  - a fatal signal (segfault in native code): faulthandler's frame dump;
  - at the end, how many writes of free text by libraries were withheld.
File descriptors 1 and 2 themselves point at /dev/null, so what native code
and child processes (joblib's workers inherit them) print is dropped too.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any, TextIO

from .storage import iso_utc

_safe_log: TextIO | None = None  # kept for the process's life: faulthandler writes to its descriptor


class _Withheld(io.TextIOBase):
    """sys.stdout/sys.stderr of a job: counts what libraries write, keeps none of it."""

    def __init__(self) -> None:
        self.writes = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text.strip():
            self.writes += 1
        return len(text)

    def fileno(self) -> int:
        return 2  # /dev/null by now: code that writes to the raw descriptor loses it as well

    def isatty(self) -> bool:
        return False  # no progress bars, no colours


def say(text: str) -> None:
    if _safe_log is not None:
        try:
            _safe_log.write(f"{iso_utc(time.time())} {text}\n")
        except (OSError, ValueError):
            pass  # a full disk must not turn a report into a second failure


def _where(filename: str, lineno: int | None) -> str:
    return f"{filename}:{lineno}"


def data_free_traceback(exc: BaseException) -> list[str]:
    """An exception as the job's output file shows it: types and frames of the whole chain, no messages."""
    import traceback

    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current)
        lines.append(f"{kind.__module__}.{kind.__qualname__} (message withheld: it may quote data)")
        for frame in traceback.extract_tb(current.__traceback__):
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {frame.line.strip()}")
        nxt = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if nxt is not None:
            lines.append("raised while handling:" if current.__cause__ is None else "caused by:")
        current = nxt
    return lines


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    say(f"warning {category.__module__}.{category.__qualname__} at {_where(filename, lineno)} (message withheld)")


def _format_warning(message: Any, category: type, filename: str, lineno: int, line: Any = None) -> str:
    # for code that formats a warning itself (logging.captureWarnings does)
    return f"{category.__module__}.{category.__qualname__} at {_where(filename, lineno)} (message withheld)\n"


def _excepthook(kind: type, exc: BaseException, tb: Any) -> None:
    say("uncaught exception:\n" + "\n".join(data_free_traceback(exc.with_traceback(tb))))


def _thread_excepthook(args: Any) -> None:
    if args.exc_value is not None:
        name = args.thread.name if args.thread is not None else "?"
        say(f"uncaught exception in thread {name}:\n" + "\n".join(data_free_traceback(args.exc_value)))


def _unraisablehook(unraisable: Any) -> None:
    # The default prints repr(unraisable.object), which can be a frame of data.
    if unraisable.exc_value is not None:
        say("ignored exception (unraisable):\n" + "\n".join(data_free_traceback(unraisable.exc_value)))


def keep_output_data_free() -> _Withheld:
    """Make this job process's own output file data-free (see above); returns the sink that counts what was withheld."""
    global _safe_log
    import faulthandler
    import logging
    import threading
    import warnings

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    # A private descriptor on the output file, then 1 and 2 on /dev/null.
    _safe_log = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    sink = _Withheld()
    sys.stdout = sys.stderr = sink

    warnings.showwarning = _show_warning
    warnings.formatwarning = _format_warning

    class DataFreeHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # never record.getMessage(): its arguments are whatever the library logged
            say(f"log {record.levelname} {record.name} at {_where(record.pathname, record.lineno)} (message withheld)")

    # Libraries log to their own loggers without handlers; Python then uses
    # lastResort (WARNING and up).  A handler a library adds itself writes to
    # sys.stderr, i.e. the sink.
    logging.lastResort = DataFreeHandler(logging.WARNING)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    sys.unraisablehook = _unraisablehook
    faulthandler.enable(file=_safe_log)
    return sink
