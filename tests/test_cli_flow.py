"""The whole job through the CLI on the embedded local transport: fit, list, sample, download."""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime

import pandas as pd
import pytest

from tests.helpers import as_user, run_cli

MODEL_RE = re.compile(r"^tiny_patients_\d{8}t\d{6}_model\.gz$")
DATASET_RE = re.compile(r"^tiny_patients_\d{8}t\d{6}_25_synthetic\.csv\.gz$")


def test_fit_sample_download_round_trip(cli, local_config, tiny_csv, server_dir, tmp_path):
    opts, stdin = as_user("alice")
    fitted = cli.fit(tiny_csv, "--json", epochs=2)
    assert fitted.code == 0, fitted.err
    model = json.loads(fitted.out)["model"]
    assert MODEL_RE.match(model)
    # live, plain progress lines when stderr is not a terminal
    assert "epoch 1/2" in fitted.err and "epoch 2/2" in fitted.err
    # the original left the server before training and nothing stays in staging
    assert list((server_dir / "original_data" / "alice").iterdir()) == []

    meta = json.loads((server_dir / "model_database" / "alice" / model.replace(".gz", ".json")).read_text())
    original = pd.read_csv(tiny_csv)
    assert [c["name"] for c in meta["columns"]] == list(original.columns)
    assert [c["dtype"] for c in meta["columns"]] == list(original.dtypes.astype(str))
    assert set(meta["discrete_columns"]) >= {"member", "city", "score"}
    assert meta["fit"]["rows"] == len(original) and meta["fit"]["epochs"] == 2
    assert len(meta["fit"]["losses"]) == 2 and meta["fit"]["seconds"] > 0
    assert meta["fit"]["device"] == "cpu" and meta["fit"]["device_name"]  # the test server has no GPU
    assert set(meta["versions"]) >= {"torch", "ctgan", "rdt"}

    listed = run_cli(local_config, *opts, "models", "--json", input=stdin)
    assert listed.code == 0, listed.err
    entries = json.loads(listed.out)
    assert [e["name"] for e in entries] == [model]
    assert entries[0]["size_bytes"] > 0 and datetime.fromisoformat(entries[0]["created"]).utcoffset().total_seconds() == 0

    out = tmp_path / "samples"
    sampled = run_cli(local_config, *opts, "sample", model, "--rows", "25", "--out", str(out), input=stdin)
    assert sampled.code == 0, sampled.err
    files = list(out.iterdir())
    assert len(files) == 1 and files[0].suffix == ".csv"
    synthetic = pd.read_csv(files[0])
    assert len(synthetic) == 25
    assert list(synthetic.columns) == list(original.columns)
    assert list(synthetic.dtypes.astype(str)) == list(original.dtypes.astype(str))
    assert synthetic["age"].between(original["age"].min(), original["age"].max()).all()
    assert (synthetic["children"].dropna() % 1 == 0).all()
    assert set(synthetic["city"].dropna()) <= set(original["city"].dropna())

    listed = run_cli(local_config, *opts, "datasets", "--json", input=stdin)
    datasets = json.loads(listed.out)
    assert [d["name"] for d in datasets] == [files[0].name + ".gz"]
    assert DATASET_RE.match(datasets[0]["name"])

    dl_dir = tmp_path / "downloads"
    downloaded = run_cli(local_config, *opts, "download", datasets[0]["name"], "--out", str(dl_dir), input=stdin)
    assert downloaded.code == 0, downloaded.err
    [copy] = list(dl_dir.iterdir())
    stored = server_dir / "synthetic_csv_database" / "alice" / datasets[0]["name"]
    assert copy.read_bytes() == gzip.decompress(stored.read_bytes())
    assert not [p for p in dl_dir.parent.rglob("*.part")]


def test_sample_without_out_uses_configured_folder(cli, local_config, tiny_csv):
    opts, stdin = as_user("bob")
    model = json.loads(cli.fit(tiny_csv, "--json", user="bob").out)["model"]
    sampled = run_cli(local_config, *opts, "sample", model, "--rows", "5", input=stdin)
    assert sampled.code == 0, sampled.err
    assert [p.suffix for p in (local_config.parent / "synthetic").iterdir()] == [".csv"]


def test_users_never_see_each_others_files(cli, local_config, tiny_csv, server_dir):
    alice_model = json.loads(cli.fit(tiny_csv, "--json").out)["model"]
    opts, stdin = as_user("bob")
    assert json.loads(run_cli(local_config, *opts, "models", "--json", input=stdin).out) == []
    stolen = run_cli(local_config, *opts, "sample", alice_model, "--rows", "5", input=stdin)
    assert stolen.code == 4 and stolen.err.strip().startswith("Error: no model named")
    traversal = run_cli(local_config, *opts, "sample", f"../alice/{alice_model}", "--rows", "5", input=stdin)
    assert traversal.code == 2 and "invalid name" in traversal.err
    absolute = run_cli(local_config, *opts, "download", str(server_dir / "x_synthetic.csv.gz"), input=stdin)
    assert absolute.code == 2 and "invalid name" in absolute.err


@pytest.mark.parametrize(
    "content, code, message",
    [
        (b"", 5, "is empty"),
        (b"  \n\n", 5, "is empty"),
        (b"a,b\n1,inf\n2,3\n", 5, "infinite values"),
        (b"1,2,3\n4,5,6\n", 5, "first row holds numbers"),
        (b"a;b\n1;2\n3;4;5\n", 5, "different numbers of fields"),
        (b"a,b,c\n", 5, "header but no data rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), 5, "binary data"),
        (b"name,city\nJos\xe9,K\xf6ln\nAnna,Oslo\n", 5, "not UTF-8"),
        (b"a,a,b\n1,2,3\n4,5,6\n", 5, "duplicate column names"),
    ],
)
def test_bad_csv_gets_one_line_and_leaves_nothing(local_config, server_dir, tmp_path, content, code, message):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    opts, stdin = as_user("alice")
    result = run_cli(local_config, *opts, "fit", str(bad), "--epochs", "1", input=stdin)
    assert result.code == code
    assert result.err.count("\n") == 1 and result.err.startswith("Error: ") and message in result.err
    assert not list((server_dir / "original_data").rglob("*")) or not list((server_dir / "original_data" / "alice").iterdir())
    assert not list((server_dir / "model_database").rglob("*.gz"))


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["fit", "{csv}", "--epochs", "0"], 2, "--epochs"),
        (["sample", "m_20260101t000000_model.gz", "--rows", "-5"], 2, "--rows"),
        (["fit", "{missing}", "--epochs", "1"], 4, "no such file"),
        (["sample", "nobody_20260101t000000_model.gz", "--rows", "5"], 4, "no model named"),
        (["download", "nobody_20260101t000000_5_synthetic.csv.gz"], 4, "no synthetic dataset"),
        (["fit", "--epochs", "1"], 2, "missing CSV argument"),
        (["sample", "--rows", "3"], 2, "missing MODEL argument"),
        (["frobnicate"], 2, "No such command"),
    ],
)
def test_bad_input_one_line_nonzero(local_config, tiny_csv, tmp_path, args, code, message):
    args = [a.format(csv=tiny_csv, missing=tmp_path / "nope.csv") for a in args]
    opts, stdin = as_user("alice")
    result = run_cli(local_config, *opts, *args, input=stdin)
    assert result.code == code, result.err
    assert result.err.count("\n") == 1 and result.err.startswith("Error: ") and message in result.err


def test_wrong_password_and_unknown_user(local_config):
    for user, password in (("alice", "not-her-password"), ("mallory", "whatever-pass")):
        result = run_cli(local_config, "--user", user, "--password-stdin", "models", input=password + "\n")
        assert (result.code, result.err) == (3, "Error: wrong username or password\n")


def test_credentials_from_environment(local_config):
    result = run_cli(local_config, "models", "--json", env={"CTGAN_USER": "bob", "CTGAN_PASSWORD": "bob-secret-pw1"})
    assert result.code == 0 and json.loads(result.out) == []


def test_missing_credentials_without_terminal_is_an_error(local_config):
    result = run_cli(local_config, "models")
    assert result.code == 2 and "missing username" in result.err


def test_debug_shows_traceback(local_config):
    result = run_cli(local_config, "--debug", "--user", "alice", "--password-stdin", "models", input="wrong-password\n")
    assert result.code == 3 and "Traceback" in result.err and result.err.endswith("Error: wrong username or password\n")


def test_semicolon_file_round_trips_with_its_separator(local_config, tmp_path):
    rows = "\n".join(f"{i % 5};{'ab'[i % 2]};{i * 1.5}" for i in range(40))
    original = tmp_path / "semi.csv"
    original.write_text("k;g;v\n" + rows + "\n")
    opts, stdin = as_user("alice")
    fitted = run_cli(local_config, *opts, "fit", str(original), "--epochs", "1", "--json", input=stdin)
    assert fitted.code == 0, fitted.err
    assert "Warning: read as ';'-separated" in fitted.err
    model = json.loads(fitted.out)["model"]
    out = tmp_path / "o"
    assert run_cli(local_config, *opts, "sample", model, "--rows", "10", "--out", str(out), input=stdin).code == 0
    [csv] = list(out.iterdir())
    assert csv.read_text().splitlines()[0] == "k;g;v"
    assert list(pd.read_csv(csv, sep=";").dtypes.astype(str)) == list(pd.read_csv(original, sep=";").dtypes.astype(str))
