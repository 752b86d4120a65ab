"""Users look after their own account and files: passwd, models delete, datasets delete."""

from __future__ import annotations

import json

import pytest

from tests.helpers import PASSWORDS, as_user, run_cli


@pytest.mark.parametrize("transport", ["local", "ssh"])
def test_passwd_changes_only_that_users_password(request, transport):
    config = request.getfixturevalue("local_config" if transport == "local" else "ssh_config")
    old, new = PASSWORDS["alice"], "a-brand-new-secret"
    changed = run_cli(config, "--user", "alice", "--password-stdin", "passwd", input=f"{old}\n{new}\n{new}\n")
    assert changed.code == 0, changed.err
    assert run_cli(config, "--user", "alice", "--password-stdin", "models", input=f"{new}\n").code == 0
    refused = run_cli(config, "--user", "alice", "--password-stdin", "models", input=f"{old}\n")
    assert refused.code == 3 and refused.err.startswith("Error: wrong username or password")
    opts, stdin = as_user("bob")
    assert run_cli(config, *opts, "models", input=stdin).code == 0  # bob is untouched


@pytest.mark.parametrize(
    "lines, code, message",
    [
        ("wrong-password\nnew-secret-1\nnew-secret-1\n", 3, "wrong username or password"),
        ("{old}\nnew-secret-1\nnew-secret-2\n", 2, "differ"),
        ("{old}\nshort\nshort\n", 5, "at least"),
    ],
)
def test_passwd_refusals(local_config, lines, code, message):
    result = run_cli(local_config, "--user", "alice", "--password-stdin", "passwd", input=lines.format(old=PASSWORDS["alice"]))
    assert result.code == code and message in result.err and result.err.count("\n") == 1
    opts, stdin = as_user("alice")
    assert run_cli(local_config, *opts, "models", input=stdin).code == 0  # the old password still works


def test_delete_model_and_dataset(local_config, tiny_csv, server_dir, tmp_path):
    opts, stdin = as_user("alice")
    model = json.loads(run_cli(local_config, *opts, "fit", str(tiny_csv), "--epochs", "1", "--json", input=stdin).out)["model"]
    assert run_cli(local_config, *opts, "sample", model, "--rows", "5", "--out", str(tmp_path), input=stdin).code == 0
    [dataset] = [d["name"] for d in json.loads(run_cli(local_config, *opts, "datasets", "--json", input=stdin).out)]

    unconfirmed = run_cli(local_config, *opts, "models", "delete", model, input=stdin)
    assert unconfirmed.code == 2 and "--yes" in unconfirmed.err
    bob_opts, bob_stdin = as_user("bob")
    stolen = run_cli(local_config, *bob_opts, "models", "delete", model, "--yes", input=bob_stdin)
    assert stolen.code == 4

    assert run_cli(local_config, *opts, "models", "delete", model, "--yes", input=stdin).code == 0
    assert run_cli(local_config, *opts, "datasets", "delete", dataset, "--yes", input=stdin).code == 0
    assert list((server_dir / "model_database" / "alice").iterdir()) == []  # the JSON went with the model
    assert list((server_dir / "synthetic_csv_database" / "alice").iterdir()) == []
    assert json.loads(run_cli(local_config, *opts, "models", "--json", input=stdin).out) == []
    again = run_cli(local_config, *opts, "datasets", "delete", dataset, "--yes", input=stdin)
    assert again.code == 4 and again.err.startswith("Error: no synthetic dataset named")
