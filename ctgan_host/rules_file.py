"""Constraints files (`fit --constraints rules.toml`): read, checked, and matched against the CSV's header.

The format is one ``[[rule]]`` table per rule (README, "Rules and value
protection"); ``wire.check_rules`` holds what makes a rule well-formed, so
the client and the server refuse the same files.  Here the client also
checks that every column a rule names is in the file it is about to
upload, so a typo fails before the upload, not after it.
"""

from __future__ import annotations

import csv
import os
import tomllib
from pathlib import Path
from typing import Any, Iterable

from ctgan_server.wire import NotFoundError, UsageError, check_rules, rule_columns


def load_rules(source: str | os.PathLike | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules of a TOML file, or a list given directly (``Client.fit(..., constraints=[...])``), checked."""
    if isinstance(source, list):
        return check_rules(source)
    path = Path(source).expanduser()
    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except FileNotFoundError:
        raise NotFoundError(f"no such constraints file: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path.name} is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"rule"})
    if unknown:
        raise UsageError(f"{path.name}: unknown table {unknown[0]!r}; rules go in [[rule]] tables")
    try:
        return check_rules(document.get("rule", []))
    except UsageError as exc:
        raise UsageError(f"{path.name}: {exc.message}") from None


def check_rule_columns(rules: list[dict[str, Any]], columns: Iterable[str], source: str) -> None:
    """Every column the rules name is one of ``columns`` (the table's header)."""
    known = set(columns)
    for n, rule in enumerate(rules, 1):
        missing = [c for c in rule_columns(rule) if c not in known]
        if missing:
            raise UsageError(f"rule {n} ({rule['type']}) names {missing[0]!r}, which is not a column of {source}")


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file, read from its first line as the server will read them.

    The separator is guessed among those the server detects (comma,
    semicolon, tab, pipe); a UTF-8 byte order mark is dropped.
    """
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        first = fh.readline()
    try:
        dialect = csv.Sniffer().sniff(first, delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    return next(csv.reader([first], delimiter=delimiter), [])
