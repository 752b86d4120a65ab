"""Argument parsing and exit codes, in-process: what the CLI refuses before it connects, in one line.

Each test runs ``ctgan_host.cli.main`` (what the `ctgan-host` console script
runs) inside click's CliRunner isolation: stdin, stdout, stderr and the
environment are swapped for the call, and stdin is not a terminal.  The config
points at an SSH port where nothing listens, so a check that moved after the
connection would show up as exit 6 ("cannot connect") instead of its own code;
the control test below shows that this config does give 6 once the CLI connects.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from ctgan_host.cli import main
from ctgan_server import __version__
from ctgan_server.wire import MAX_EPOCHS, MAX_ROWS
from tests.helpers import write_client_config

MODEL = "loans_20261125t130025_model.gz"


@dataclass
class Ran:
    code: int
    out: str
    err: str


def closed_port() -> int:
    """A loopback port nothing listens on: bound once, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable_config(tmp_path: Path) -> Path:
    client = tmp_path / "client"
    client.mkdir()
    server = {
        "host": "127.0.0.1",
        "port": closed_port(),
        "known_hosts": str(tmp_path / "known_hosts"),
        "server_dir": "/srv/nowhere",
        "connect_timeout": 5,
    }
    return write_client_config(client / "config.toml", server, client)


@pytest.fixture
def run(unreachable_config: Path, tmp_path: Path):
    """``run(*args)``: the CLI in-process as alice (user and password given, so only parsing can stop it early)."""

    def run(*args: str, config: bool = True) -> Ran:
        argv = (["--config", str(unreachable_config)] if config else []) + ["--user", "alice", *args]
        # No personal config, credentials or SSH agent from the machine running the tests.
        env = {"CTGAN_PASSWORD": "alice-secret-pw", "CTGAN_USER": None, "CTGAN_HOST_CONFIG": None, "SSH_AUTH_SOCK": None}
        env["HOME"] = str(tmp_path)
        with CliRunner().isolation(env=env) as (out, err, _):
            code = main(argv, prog_name="ctgan-host")
            sys.stdout.flush()  # the swapped streams are buffered text wrappers over these bytes
            sys.stderr.flush()
        return Ran(code, out.getvalue().decode(), err.getvalue().decode())

    return run


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "loans.csv"
    path.write_text("amount,term\n100,short\n250,long\n")
    return path


def assert_one_error_line(ran: Ran, code: int, *words: str) -> None:
    """Exit ``code``, nothing on stdout, and stderr exactly one `Error: ...` line: no usage block, no traceback."""
    assert ran.code == code, (ran.code, ran.err)
    assert ran.out == ""
    assert ran.err.endswith("\n") and ran.err.count("\n") == 1, ran.err
    assert ran.err.startswith("Error: "), ran.err
    assert "Traceback" not in ran.err and "Usage:" not in ran.err
    for word in words:
        assert word in ran.err, ran.err


def test_control_a_command_that_connects_gets_exit_6_on_this_config(run):
    # The premise of every test below: reaching the connection step is visible as exit 6.
    assert_one_error_line(run("models"), 6)


# (arguments, words the one error line must hold); {csv} is a good CSV, {folder} a folder, {missing} no file.
BAD_INPUT = [
    (["fit", "{csv}", "--epochs", "0"], ["--epochs", "0 is not in the range"]),
    (["fit", "{csv}", "--epochs", "many"], ["--epochs", "'many' is not a valid integer"]),
    (["fit", "{csv}", "--epochs", str(MAX_EPOCHS + 1)], ["--epochs", str(MAX_EPOCHS + 1)]),
    (["fit", "{csv}", "--epochs"], ["--epochs", "requires an argument"]),
    (["fit", "{csv}", "--holdout", "0.9"], ["--holdout"]),
    (["fit", "{csv}", "--seed", "-1"], ["--seed"]),
    (["fit", "{csv}", "--frobnicate"], ["No such option '--frobnicate'"]),
    (["fit"], ["missing CSV argument", "not a terminal"]),
    (["fit", "{folder}"], ["not a file"]),
    (["sample", MODEL, "--rows", "0"], ["--rows"]),
    (["sample", MODEL, "--rows", "lots"], ["--rows", "'lots' is not a valid integer"]),
    (["sample", MODEL, "--rows", str(MAX_ROWS + 1)], ["--rows"]),
    (["sample", MODEL, "--rows", "5", "--condition", "Home"], ["--condition takes COL=VALUE", "'Home'"]),
    (["sample", MODEL, "--rows", "5", "--condition", "=rent"], ["--condition takes COL=VALUE", "'=rent'"]),
    (["sample", MODEL, "--rows", "5", "--condition", "Home=rent", "--condition", "Home=own"], ["two values"]),
    (["frobnicate"], ["No such command 'frobnicate'"]),
    (["jobs", "follow"], ["Missing argument 'JOB'"]),
    (["models", "delete"], ["Missing argument 'NAME'"]),
    (["evaluate", "{csv}"], ["Missing argument 'SYNTHETIC'"]),
    (["evaluate", "{missing}", "{csv}"], ["'REAL'", "does not exist"]),
]


@pytest.mark.parametrize("args, words", BAD_INPUT, ids=[" ".join(args) for args, _ in BAD_INPUT])
def test_bad_input_is_exit_2_in_one_line_before_connecting(run, csv, tmp_path, args, words):
    ran = run(*[a.format(csv=csv, folder=tmp_path, missing=tmp_path / "nope.csv") for a in args])
    assert_one_error_line(ran, 2, *words)


def test_missing_csv_is_exit_4_not_found_before_connecting(run, tmp_path):
    assert_one_error_line(run("fit", str(tmp_path / "nope.csv"), "--epochs", "1"), 4, "no such file", "nope.csv")


def test_empty_csv_is_exit_5_unusable_data_before_connecting(run, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_one_error_line(run("fit", str(empty), "--epochs", "1"), 5, "empty.csv is empty")


def test_missing_config_file_is_exit_2(run, tmp_path):
    ran = run("--config", str(tmp_path / "nope.toml"), "models", config=False)
    assert_one_error_line(ran, 2, "config file not found", "nope.toml")


def test_version_prints_the_release_and_exits_0(run):
    ran = run("--version")
    assert (ran.code, ran.out, ran.err) == (0, f"ctgan-server-cli, version {__version__}\n", "")


@pytest.mark.parametrize("args", [["--help"], ["fit", "--help"], ["jobs", "follow", "-h"]], ids=" ".join)
def test_help_exits_0_on_stdout_named_ctgan_host(run, args):
    ran = run(*args)
    assert ran.code == 0 and ran.err == ""
    assert ran.out.startswith("Usage: ctgan-host "), ran.out
