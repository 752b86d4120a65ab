"""Integration: the full CLI against a real OpenSSH sshd on 127.0.0.1, files in the session's own frames."""

from __future__ import annotations

import gzip
import json

import pandas as pd

from tests.helpers import as_user, run_cli, write_client_config


def test_full_job_over_ssh(ssh_config, tiny_csv, server_dir, tmp_path):
    opts, stdin = as_user("alice")
    fitted = run_cli(ssh_config, *opts, "fit", str(tiny_csv), "--epochs", "1", "--json", input=stdin)
    assert fitted.code == 0, fitted.err
    model = json.loads(fitted.out)["model"]
    assert "epoch 1/1" in fitted.err
    assert list((server_dir / "original_data" / "alice").iterdir()) == []

    models = json.loads(run_cli(ssh_config, *opts, "models", "--json", input=stdin).out)
    assert [m["name"] for m in models] == [model]

    out = tmp_path / "out"
    sampled = run_cli(ssh_config, *opts, "sample", model, "--rows", "30", "--out", str(out), input=stdin)
    assert sampled.code == 0, sampled.err
    [csv] = list(out.iterdir())
    original, synthetic = pd.read_csv(tiny_csv), pd.read_csv(csv)
    assert list(synthetic.dtypes.astype(str)) == list(original.dtypes.astype(str)) and len(synthetic) == 30

    [dataset] = json.loads(run_cli(ssh_config, *opts, "datasets", "--json", input=stdin).out)
    dl = tmp_path / "dl"
    downloaded = run_cli(ssh_config, *opts, "download", dataset["name"], "--out", str(dl), input=stdin)
    assert downloaded.code == 0, downloaded.err
    [copy] = list(dl.iterdir())
    stored = server_dir / "synthetic_csv_database" / "alice" / dataset["name"]
    assert copy.read_bytes() == gzip.decompress(stored.read_bytes()) == csv.read_bytes()


def test_wrong_app_password_over_ssh(ssh_config):
    result = run_cli(ssh_config, "--user", "alice", "--password-stdin", "models", input="nope-nope-nope\n")
    assert (result.code, result.err) == (3, "Error: wrong username or password\n")


def test_unknown_host_key_is_rejected_unless_opted_in(sshd, server_dir, client_root, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("# keep me\n")
    settings = sshd.client_settings(server_dir, known_hosts=str(empty))
    config = write_client_config(client_root / "config.toml", settings, client_root)
    opts, stdin = as_user("bob")
    refused = run_cli(config, *opts, "models", input=stdin)
    assert refused.code == 6 and "not in" in refused.err and refused.err.count("\n") == 1
    assert empty.read_text() == "# keep me\n"

    write_client_config(config, {**settings, "accept_new_host_keys": True}, client_root)
    accepted = run_cli(config, *opts, "models", "--json", input=stdin)
    assert accepted.code == 0, accepted.err
    # appended, not rewritten: the comment survives and the key is recorded as [host]:port
    assert empty.read_text() == "# keep me\n" + sshd.host_key_line

    write_client_config(config, settings, client_root)
    assert run_cli(config, *opts, "models", "--json", input=stdin).code == 0


def test_changed_host_key_is_refused(sshd, ssh_config, tmp_path):
    other = tmp_path / "other_key"
    __import__("subprocess").run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key_b64 = (tmp_path / "other_key.pub").read_text().split()[:2]
    text = ssh_config.read_text()
    forged = tmp_path / "forged_known_hosts"
    forged.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key_b64}\n")
    ssh_config.write_text(text.replace(str(sshd.known_hosts), str(forged)))
    opts, stdin = as_user("bob")
    result = run_cli(ssh_config, *opts, "models", input=stdin)
    assert result.code == 6 and "does not match" in result.err


def test_unreachable_host(client_root, server_dir):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    config = write_client_config(
        client_root / "config.toml", {"host": "127.0.0.1", "port": port, "server_dir": str(server_dir)}, client_root
    )
    result = run_cli(config, "--user", "bob", "--password-stdin", "models", input="x\n")
    assert result.code == 6 and result.err.startswith("Error: cannot reach 127.0.0.1") and result.err.count("\n") == 1


def test_wrong_server_dir_is_explained(ssh_config, tmp_path):
    ssh_config.write_text(ssh_config.read_text().replace('server_dir = "', f'server_dir = "{tmp_path}/missing'))
    opts, stdin = as_user("bob")
    result = run_cli(ssh_config, *opts, "models", input=stdin)
    assert result.code == 8 and "did not start" in result.err and "missing" in result.err


def test_server_dir_with_tilde(sshd, client_root, tmp_path):
    """`~` in server_dir expands on the server, even though every path is quoted."""
    import pwd
    import shutil
    import uuid

    from ctgan_server.auth import CredentialStore
    from tests.helpers import PASSWORDS, REPO

    home = __import__("pathlib").Path(pwd.getpwuid(__import__("os").getuid()).pw_dir)
    relative = f".cache/ctgan server test {uuid.uuid4().hex[:8]}"
    root = home / relative
    root.mkdir(parents=True)
    try:
        (root / "ctgan_server").symlink_to(REPO / "ctgan_server")
        CredentialStore(root / "credentials.json").add("bob", PASSWORDS["bob"])
        config = write_client_config(
            client_root / "config.toml",
            sshd.client_settings(f"~/{relative}"),
            client_root,
        )
        opts, stdin = as_user("bob")
        result = run_cli(config, *opts, "models", "--json", input=stdin)
        assert result.code == 0 and json.loads(result.out) == [], result.err
        assert (root / "model_database" / "bob").is_dir()
    finally:
        shutil.rmtree(root)


def test_not_an_ssh_server_is_one_line(client_root, server_dir):
    """paramiko's own logging must not print a traceback before our error."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer_garbage():
        for _ in range(3):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    config = write_client_config(
        client_root / "config.toml",
        {"host": "127.0.0.1", "port": listener.getsockname()[1], "server_dir": str(server_dir)},
        client_root,
    )
    result = run_cli(config, "--user", "bob", "--password-stdin", "models", input="x\n")
    listener.close()
    assert result.code == 6 and result.err.startswith("Error: cannot reach 127.0.0.1") and result.err.count("\n") == 1, result.err


def test_staged_upload_is_private_over_ssh(ssh_config, server_dir, tiny_csv):
    import stat
    import time

    from ctgan_host import Client
    from ctgan_host.transfer import Transfer
    from tests.helpers import PASSWORDS

    with Client.from_config(ssh_config) as client:
        client.login("alice", PASSWORDS["alice"])
        staged = Transfer(client.session).upload(tiny_csv, tiny_csv.name)
        path = server_dir / "original_data" / "alice" / f"{staged['token']}.csv.gz"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the SSH session ended without a fit: the original is gone
    deadline = time.time() + 10
    while path.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not path.exists()


def test_an_upload_over_the_limit_is_cut_off_over_ssh_too(ssh_config, server_dir, tmp_path):
    import os

    from tests.helpers import as_user

    with open(server_dir / "config.toml", "a") as fh:
        fh.write("max_upload_bytes = 200000\n")
    big = tmp_path / "noise.csv"
    big.write_text("a\n" + "\n".join(os.urandom(16).hex() for _ in range(60_000)) + "\n")
    opts, stdin = as_user("alice")
    refused = run_cli(ssh_config, *opts, "fit", str(big), "--epochs", "1", input=stdin)
    assert refused.code == 13 and "max_upload_bytes" in refused.err and refused.err.count("\n") == 1, refused.err
    assert list((server_dir / "original_data" / "alice").iterdir()) == []
