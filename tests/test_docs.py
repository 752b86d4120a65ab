"""Every command has help and a README section, and the README's exit-code table matches the code."""

from __future__ import annotations

import re

import click
import pytest
from conftest import REPO

from ctgan_host.cli import cli
from ctgan_server import wire as errors

README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_command_has_help_and_is_documented(name):
    command = cli.commands[name]
    assert command.help and command.help.strip()
    assert f"### {name}" in README
    ctx = click.Context(command, info_name=name)
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help"
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    assert opt in README, f"{name} {opt} is not in the README"
    assert command.get_help(ctx)


def test_exit_code_table_lists_every_error_code():
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", README, flags=re.M)}
    used = {cls.exit_code for cls in errors._all_classes(errors.CtganError).values()}
    assert used <= documented
