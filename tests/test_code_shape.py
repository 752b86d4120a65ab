"""Every function in ctgan_host/ and ctgan_server/ fits on a screen: 60 lines or fewer.

Counted from ``def`` (decorators excluded) to the last line, docstring and
comments included, for methods and nested functions too.  html_report.py is
exempt: its functions are mostly HTML and SVG templates, long by nature.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

MAX_LINES = 60
PACKAGES = ("ctgan_host", "ctgan_server")
EXEMPT = {Path("ctgan_host/html_report.py")}


def sources() -> list[Path]:
    found = sorted(path.relative_to(REPO) for package in PACKAGES for path in (REPO / package).rglob("*.py"))
    return [path for path in found if path not in EXEMPT]


def long_functions(source: str, limit: int = MAX_LINES) -> list[str]:
    """`name (N lines, line L)` for every def or async def longer than ``limit``, nested ones included."""
    return [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit
    ]


def test_the_walk_finds_the_packages_and_leaves_out_only_html_report():
    found = sources()
    # An empty or misdirected walk would pass every test below.
    assert {Path("ctgan_host/cli.py"), Path("ctgan_server/server.py")} <= set(found)
    assert Path("ctgan_host/html_report.py") not in found and len(found) > 20


def test_the_count_sees_methods_and_nested_functions():
    # The counter itself: a long method and a long nested function are both caught, a short one is not.
    body = "\n".join(f"        x{i} = {i}" for i in range(60))
    source = (
        f"class A:\n    def method(self):\n{body}\n\n\n"
        f"def outer():\n    def inner():\n{body}\n    return inner\n\n\n"
        "def short():\n    pass\n"
    )
    assert sorted(entry.split(" ")[0] for entry in long_functions(source)) == ["inner", "method", "outer"]


@pytest.mark.parametrize("path", sources(), ids=str)
def test_functions_are_at_most_60_lines(path: Path):
    too_long = long_functions((REPO / path).read_text())
    assert not too_long, f"{path}: " + ", ".join(too_long)
