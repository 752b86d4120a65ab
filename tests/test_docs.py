"""Every command and subcommand is documented: help with an example line, an example in the README, its options;
and the README's exit-code table matches the code.

The commands are found by walking the click group the console script runs, so
a new command or subcommand is checked without touching this file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ctgan_host.cli import cli
from ctgan_server import wire as errors
from tests.helpers import REPO

README = (REPO / "README.md").read_text()
PROG = "ctgan-host"


def walk(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))


COMMANDS: dict[tuple[str, ...], click.Command] = dict(sorted(walk(cli)))
PATHS = list(COMMANDS)
IDS = [" ".join(path) for path in PATHS]


def _global_options() -> str:
    """The root group's options as a regex: an example may put `--user alice` etc. before the command."""
    options = [
        re.escape(opt) + ("" if param.is_flag else r" \S+")
        for param in cli.params
        if isinstance(param, click.Option)
        for opt in param.opts
    ]
    return rf"(?: (?:{'|'.join(options)}))*"


def invocation(path: tuple[str, ...], line_start: bool = False) -> re.Pattern[str]:
    """`ctgan-host [global options] <path>`, not followed by more of a name (`jobs` is not `jobsx`)."""
    before = r"^[ \t]*" if line_start else r"(?<![\w-])"
    return re.compile(rf"{before}{re.escape(PROG)}{_global_options()} {re.escape(' '.join(path))}(?![\w-])", re.M)


def help_text(path: tuple[str, ...]) -> str:
    """`ctgan-host <path> --help` as a user sees it."""
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name=PROG)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_walk_reaches_subcommands():
    # The tests below are only as wide as the walk: it must go below the top level.
    nested = {("jobs", name) for name in ("follow", "cancel", "logs", "delete")} | {("models", "delete"), ("datasets", "delete")}
    assert {("fit",), ("jobs",)} | nested <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_readme_shows_the_command_run_as_ctgan_host(path):
    assert invocation(path).search(README), f"README.md has no example `{PROG} {' '.join(path)} ...`"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_help_has_a_description_and_an_example_line_of_the_command(path):
    shown = help_text(path)
    assert COMMANDS[path].help and COMMANDS[path].help.strip()
    # A line of its own: without click's \b marker the example is rewrapped into the paragraph above.
    assert invocation(path, line_start=True).search(shown), f"no `{PROG} {' '.join(path)} ...` line in:\n{shown}"


@pytest.mark.parametrize("path", [(), *PATHS], ids=["(root)", *IDS])
def test_no_help_text_says_python_m(path):
    assert "python -m" not in help_text(path)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_command_has_a_readme_section_and_its_options_help_and_mentions(path):
    assert f"### {path[0]}" in README
    for param in COMMANDS[path].params:
        if isinstance(param, click.Option):
            assert param.help, f"{' '.join(path)} {param.opts} has no help"
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    assert opt in README, f"{' '.join(path)} {opt} is not in the README"


def _console_script() -> Path:
    script = Path(sys.executable).with_name(PROG)
    if not script.exists():
        pytest.skip(f"the {PROG} console script is not installed next to {sys.executable} (pip install -e .)")
    return script


@pytest.mark.parametrize("how", ["python -m ctgan_host", "console script"])
def test_usage_names_the_program_ctgan_host_however_it_is_started(how):
    argv = [sys.executable, "-m", "ctgan_host"] if how == "python -m ctgan_host" else [str(_console_script())]
    done = subprocess.run([*argv, "jobs", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: {PROG} jobs "), done.stdout
    assert "python -m" not in done.stdout


def test_exit_code_table_lists_every_error_code():
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", README, flags=re.M)}
    used = {cls.exit_code for cls in errors._all_classes(errors.CtganError).values()}
    assert used <= documented
