"""Protocol tier: the real client against `python -m ctgan_server serve` over the local transport."""

from __future__ import annotations

import json
import subprocess
import sys
import venv

import numpy as np
import pandas as pd
import pytest

from ctgan_host import Client
from ctgan_host.session import Session
from ctgan_host.transport import open_connection
from ctgan_server.auth import CredentialStore
from ctgan_server.wire import (
    PROTOCOL_MAX,
    PROTOCOL_MIN,
    AuthError,
    ModelVersionError,
    NotFoundError,
    UsageError,
    VersionMismatchError,
)
from tests.helpers import PASSWORDS, REPO, run_cli, write_client_config


@pytest.fixture
def client(server_dir, tmp_path):
    with Client(server_dir=str(server_dir), python=sys.executable, synthetic_output=tmp_path / "synthetic") as c:
        yield c


def test_the_protocol_is_negotiated_and_a_mismatch_names_the_side_to_upgrade(client):
    session = Session(open_connection(client.server))
    try:
        # A client of 0.1.0 sent its one version as `protocol`, and its own release.
        assert session.call("hello", protocol=PROTOCOL_MAX, version="0.1.0")["protocol"] == PROTOCOL_MAX
        # A newer client speaking a wider range: the highest both speak.
        assert session.call("hello", protocols=[PROTOCOL_MIN, PROTOCOL_MAX + 2], version="9.0.0")["protocol"] == PROTOCOL_MAX
        with pytest.raises(VersionMismatchError, match="upgrade ctgan-server-cli on the server"):
            session.call("hello", protocols=[PROTOCOL_MAX + 1, PROTOCOL_MAX + 3], version="9.9.9")
        with pytest.raises(VersionMismatchError, match="upgrade ctgan-server-cli on the client"):
            session.call("hello", protocols=[1, PROTOCOL_MIN - 1], version="0.0.1")
        with pytest.raises(UsageError, match="highest protocol"):
            session.call("hello", protocols=[PROTOCOL_MAX, PROTOCOL_MIN - 1], version="9.9.9")
        # A later client may add to hello; this server answers the version question anyway.
        assert (
            session.call("hello", protocols=[PROTOCOL_MIN, PROTOCOL_MAX], version="9.0.0", wants="more")["protocol"]
            == PROTOCOL_MAX
        )
    finally:
        session.close()


def test_a_server_of_0_1_0_gets_asked_again_in_its_own_terms(monkeypatch):
    """Unit, with the old server's two answers scripted: it refused unknown hello parameters before comparing versions."""
    asked = []

    def old_server(self, method, **params):
        asked.append(sorted(params))
        if "protocols" in params:
            raise UsageError("bad parameters for hello: Server.do_hello() got an unexpected keyword argument 'protocols'")
        raise VersionMismatchError("client is ctgan-server-cli 0.2.0 (protocol 3), server is 0.1.0 (protocol 3)")

    monkeypatch.setattr(Session, "call", old_server)
    with pytest.raises(VersionMismatchError, match="server is 0.1.0"):
        Session(connection=None).hello()
    assert asked == [["protocol", "protocols", "version"], ["protocol", "version"]]


def test_nothing_before_hello_and_login(client):
    session = Session(open_connection(client.server))
    try:
        with pytest.raises(UsageError, match="hello"):
            session.call("models")
        session.hello()
        with pytest.raises(AuthError, match="log in first"):
            session.call("datasets")
        with pytest.raises(UsageError, match="unknown method"):
            session.call("__init__")
    finally:
        session.close()


def test_api_fit_sample_download_keeps_dtypes(client, server_dir):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "code": [f"{i:04d}" for i in rng.integers(0, 30, 50)],  # text that looks numeric
            "flag": rng.random(50) < 0.5,
            "amount": rng.normal(100, 10, 50).round(1),
            "visits": rng.integers(0, 200, 50),
        }
    )
    client.login("alice", PASSWORDS["alice"])
    model = client.fit(frame, epochs=1, name="loans")
    assert model.startswith("loans_") and model.endswith("_model.gz")
    assert [m["name"] for m in client.models()] == [model]
    synthetic = client.sample(model, 40)
    assert list(synthetic.columns) == list(frame.columns)
    assert dict(synthetic.dtypes.astype(str)) == dict(frame.dtypes.astype(str))
    assert synthetic["visits"].between(frame["visits"].min(), frame["visits"].max()).all()
    [dataset] = client.datasets()
    again = client.download(dataset["name"])
    assert len(again) == 40 and list(again.columns) == list(frame.columns)


def test_repeated_samples_never_overwrite(client, server_dir):
    client.login("bob", PASSWORDS["bob"])
    model = client.fit(pd.DataFrame({"x": np.arange(40) % 7, "y": np.linspace(0, 1, 40)}), epochs=1, name="twice")
    names = [client.sample_to_file(model, 5)[1]["name"] for _ in range(3)]
    assert len(set(names)) == 3
    assert sorted(d["name"] for d in client.datasets()) == sorted(names)


def test_model_from_other_library_versions_is_refused(client, server_dir):
    client.login("alice", PASSWORDS["alice"])
    model = client.fit(pd.DataFrame({"x": np.arange(30) % 5, "y": np.linspace(0, 1, 30)}), epochs=1, name="old")
    meta_path = server_dir / "model_database" / "alice" / model.replace(".gz", ".json")
    meta = json.loads(meta_path.read_text())
    meta["versions"]["ctgan"] = "0.7.0"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelVersionError, match=r"ctgan 0\.7\.0 \(server has 0\.12\.1\)"):
        client.sample(model, 5)


def test_calls_need_login(client):
    with pytest.raises(AuthError, match="not logged in"):
        client.models()
    with pytest.raises(NotFoundError):
        client.login("alice", PASSWORDS["alice"])
        client.download("nothing_20260101t000000_1_synthetic.csv.gz")


def test_listing_imports_no_torch_pandas_or_ctgan(local_config):
    """`models` and `datasets` stay light in the client process (the server's side is checked in test_fit_overhead)."""
    probe = (
        "import sys, json\n"
        "from ctgan_host.cli import main\n"
        "rc = main(['--config', sys.argv[1], '--user', 'alice', '--password-stdin', 'models', '--json'])\n"
        "rc |= main(['--config', sys.argv[1], '--user', 'alice', '--password-stdin', 'datasets', '--json'])\n"
        "heavy = sorted(m for m in ('torch', 'pandas', 'ctgan', 'numpy') if m in sys.modules)\n"
        "print(json.dumps([rc] + heavy), file=sys.stderr)\n"
    )
    client_side = subprocess.run(
        [sys.executable, "-c", probe, str(local_config)],
        input="alice-secret-pw\nalice-secret-pw\n",
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert json.loads(client_side.stderr.strip().splitlines()[-1]) == [0]
    # The server side: tests/test_fit_overhead.py::test_listing_in_serve_imports_no_ml_library.


def test_server_without_ctgan_gives_a_clear_error(server_dir, client_root, tiny_csv, tmp_path):
    bare = tmp_path / "bare-venv"
    venv.create(bare, with_pip=False, system_site_packages=False)
    config = write_client_config(
        client_root / "config.toml",
        {"host": "local", "server_dir": str(server_dir), "python": str(bare / "bin" / "python")},
        client_root,
    )
    # Listing needs nothing beyond the standard library...
    listed = run_cli(config, "--user", "alice", "--password-stdin", "models", "--json", input="alice-secret-pw\n")
    assert listed.code == 0 and json.loads(listed.out) == []
    # ...and fitting says exactly what is missing, and still leaves no original behind.
    fitted = run_cli(
        config, "--user", "alice", "--password-stdin", "fit", str(tiny_csv), "--epochs", "1", input="alice-secret-pw\n"
    )
    assert fitted.code == 8 and "ctgan is not installed" in fitted.err and "pip install -r requirements.txt" in fitted.err
    assert list((server_dir / "original_data" / "alice").iterdir()) == []


def test_unclaimed_upload_is_deleted_when_the_session_ends(client, server_dir, tiny_csv):
    import stat

    from ctgan_host.transfer import Transfer

    client.login("alice", PASSWORDS["alice"])
    staged = Transfer(client.session).upload(tiny_csv, tiny_csv.name)
    path = server_dir / "original_data" / "alice" / f"{staged['token']}.csv.gz"
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    client.close()  # e.g. the laptop lid closes between upload and fit
    assert not path.exists()


def test_failed_login_closes_the_connection(client):
    client.connect()
    connection = client._session.connection
    with pytest.raises(AuthError):
        client.login("alice", "wrong-password")
    assert client._session is None and connection.proc.poll() is not None


def test_service_data_dir_moves_the_data(server_dir, tmp_path):
    elsewhere = tmp_path / "data elsewhere"
    (server_dir / "config.toml").write_text(f'[service]\ndata_dir = "{elsewhere}"\ndevice = "cpu"\n')
    CredentialStore(elsewhere / "credentials.json").add("bob", PASSWORDS["bob"])  # users live with the data
    with Client(server_dir=str(server_dir), python=sys.executable, synthetic_output=tmp_path / "s") as client:
        client.login("bob", PASSWORDS["bob"])
        model = client.fit(pd.DataFrame({"x": np.arange(30) % 4, "y": np.linspace(0, 1, 30)}), epochs=1, name="moved")
    assert (elsewhere / "model_database" / "bob" / model).is_file()
    assert not (server_dir / "model_database").exists()
