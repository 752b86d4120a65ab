"""Integration: users kept apart on one service account by forced-command keys, over a real sshd.

sshd's AuthorizedKeysFile is exactly the file `users add --key` writes; the
admin's own unrestricted key is its first line.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from pathlib import Path

import paramiko
import pytest

from tests.helpers import REPO, run_cli, write_client_config

PW = {"alice": "alice-secret-pw", "bob": "bob-secret-pw1"}


def server_admin(server: Path, *args: str, input: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ctgan_server", "--dir", str(server), *args],
        input=input,
        capture_output=True,
        text=True,
        cwd="/",
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def separated(tmp_path_factory):
    from tests.sshd import SSHDUnavailable, running_sshd

    root = tmp_path_factory.mktemp("separated")
    server = root / "server"
    server.mkdir()
    (server / "ctgan_server").symlink_to(REPO / "ctgan_server")
    keys_file = root / "ssh" / "authorized_keys"
    (server / "config.toml").write_text(f'[service]\ndevice = "cpu"\ntorch_threads = 1\nauthorized_keys = "{keys_file}"\n')
    try:
        context = running_sshd(root / "sshd", authorized_keys=keys_file, python_path=str(REPO))
        (root / "sshd").mkdir()
        sshd = context.__enter__()
    except SSHDUnavailable as exc:
        if __import__("os").environ.get("CTGAN_REQUIRE_SSHD") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    configs = {}
    for user in PW:
        key = root / f"{user}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{user}@laptop", "-f", str(key)], check=True)
        added = server_admin(server, "users", "add", user, "--key", f"{key}.pub", "--password-stdin", input=PW[user] + "\n")
        assert added.returncode == 0, added.stderr
        client = root / f"client_{user}"
        (client / "home").mkdir(parents=True)
        configs[user] = write_client_config(
            client / "config.toml",
            {
                "host": "127.0.0.1",
                "port": sshd.port,
                "user": sshd.user,
                "identity_file": str(key),
                "known_hosts": str(sshd.known_hosts),
                "server_dir": "/nowhere",
                "python": sys.executable,
            },
            client,
        )
        configs[f"{user}_key"] = key
    yield {"server": server, "sshd": sshd, "configs": configs, "keys_file": keys_file, "root": root}
    context.__exit__(None, None, None)


def ssh_client(sshd, key: Path) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts))
    client.connect("127.0.0.1", port=sshd.port, username=sshd.user, key_filename=str(key), allow_agent=False, look_for_keys=False)
    return client


def run_remote(client: paramiko.SSHClient, command: str, stdin: bytes = b"") -> tuple[int, str]:
    channel = client.get_transport().open_session()
    channel.settimeout(20)
    channel.exec_command(command)
    if stdin:
        channel.sendall(stdin)
    channel.shutdown_write()
    output = b""
    for read in (channel.recv, channel.recv_stderr):
        while chunk := read(65536):
            output += chunk
    return channel.recv_exit_status(), output.decode(errors="replace")


def test_authorized_keys_holds_forced_commands_and_keeps_other_lines(separated):
    lines = separated["keys_file"].read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("ssh-ed25519 ")  # the admin's own line, untouched
    for user, line in zip(PW, lines[1:]):
        assert line.startswith(
            f'command="{sys.executable} -m ctgan_server --dir {separated["server"]} serve --as {user}",restrict ssh-ed25519 '
        )
    assert oct(separated["keys_file"].stat().st_mode & 0o777) == "0o600"
    listed = server_admin(separated["server"], "users", "keys", "alice")
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", f"{separated['configs']['alice_key']}.pub"], capture_output=True, text=True
    ).stdout.split()[1]
    assert listed.stdout.split()[0] == fingerprint


def test_alice_fits_samples_and_downloads_with_her_key(separated, tiny_csv, tmp_path):
    config, server = separated["configs"]["alice"], separated["server"]
    opts, stdin = ["--password-stdin"], PW["alice"] + "\n"  # no --user: the key says who she is
    fitted = run_cli(config, *opts, "fit", str(tiny_csv), "--epochs", "1", "--json", input=stdin)
    assert fitted.code == 0, fitted.err
    model = json.loads(fitted.out)["model"]
    assert (server / "model_database" / "alice" / model).is_file()
    sampled = run_cli(config, *opts, "sample", model, "--rows", "25", "--out", str(tmp_path / "s"), input=stdin)
    assert sampled.code == 0, sampled.err
    [dataset] = json.loads(run_cli(config, *opts, "datasets", "--json", input=stdin).out)
    downloaded = run_cli(config, *opts, "download", dataset["name"], "--out", str(tmp_path / "d"), input=stdin)
    assert downloaded.code == 0, downloaded.err
    stored = server / "synthetic_csv_database" / "alice" / dataset["name"]
    [copy] = (tmp_path / "d").iterdir()
    assert copy.read_bytes() == gzip.decompress(stored.read_bytes())
    audit = server_admin(server, "users", "audit", "alice").stdout
    for event in (" login ", " fit ", " sample ", " download "):
        assert event in audit
    assert PW["alice"] not in audit


def test_bob_cannot_log_in_as_alice_even_with_her_password(separated):
    from ctgan_server.audit import LoginFailures

    result = run_cli(separated["configs"]["bob"], "--user", "alice", "--password-stdin", "models", input=PW["alice"] + "\n")
    assert (result.code, result.err) == (3, "Error: wrong username or password\n")
    assert LoginFailures(separated["server"], 30).count("alice") == 0  # bob's key never counts against alice
    bob_audit = server_admin(separated["server"], "users", "audit", "bob").stdout
    assert "login-failed" in bob_audit and "tried=alice" in bob_audit


def test_bobs_key_gives_no_sftp_no_shell_no_forwarding(separated):
    bob = ssh_client(separated["sshd"], separated["configs"]["bob_key"])
    try:
        with pytest.raises((paramiko.SSHException, paramiko.SFTPError, EOFError, OSError)):
            bob.open_sftp()
        code, output = run_remote(bob, "cat credentials.json")
        assert code != 0 and "only runs the ctgan-server-cli protocol" in output and "scrypt" not in output
        code, output = run_remote(bob, f"{sys.executable} -m ctgan_server users list")
        assert code != 0 and "alice" not in output
        shell = bob.get_transport().open_session()
        shell.settimeout(20)
        shell.invoke_shell()
        shell.sendall(b"cat credentials.json\n")
        answer = b""
        while chunk := shell.recv(65536):
            answer += chunk
        assert b"scrypt" not in answer and b"only runs the ctgan-server-cli protocol" in answer
        with pytest.raises(paramiko.ChannelException):
            bob.get_transport().open_channel("direct-tcpip", ("127.0.0.1", separated["sshd"].port), ("127.0.0.1", 0))
    finally:
        bob.close()


def test_no_rpc_reaches_alices_files(separated, tiny_csv):
    from ctgan_host import Client
    from ctgan_server.wire import CtganError, InvalidNameError, NotFoundError

    server = separated["server"]
    with Client.from_config(separated["configs"]["alice"]) as alice:
        alice.login(None, PW["alice"])
        model = alice.fit(tiny_csv, epochs=1)
        _, stored = alice.sample_to_file(model, 5, separated["root"] / "alice_out")
        job = alice.jobs()[-1]["id"]
    with Client.from_config(separated["configs"]["bob"]) as bob:
        bob.login(None, PW["bob"])
        assert bob.user == "bob" and bob.models() == [] and bob.datasets() == []
        for call in (
            lambda: bob.sample(model, 5),
            lambda: bob.report(model),
            lambda: bob.download(stored["name"]),
            lambda: bob.delete_model(model),
            lambda: bob.delete_dataset(stored["name"]),
            lambda: bob.job_logs(job),
            lambda: bob.cancel(job),
        ):
            with pytest.raises(NotFoundError):
                call()
        for name in (f"../alice/{model}", f"/{server}/model_database/alice/{model}", f"..%2Falice%2F{model}"):
            with pytest.raises(InvalidNameError):
                bob.sample(name, 5)
        with pytest.raises(CtganError):
            bob.session.call("follow", job=f"../alice/{job}")
    assert (server / "model_database" / "alice" / model).is_file()


def test_admin_key_still_runs_users_commands(separated):
    admin = ssh_client(separated["sshd"], separated["sshd"].identity_file)
    try:
        code, output = run_remote(admin, f"{sys.executable} -m ctgan_server --dir {separated['server']} users list")
    finally:
        admin.close()
    assert code == 0 and output.split() == ["alice", "bob"]


def test_eight_clients_at_once(separated, tiny_csv, tmp_path):
    from ctgan_host import Client

    configs, server = separated["configs"], separated["server"]
    with Client.from_config(configs["bob"]) as bob:
        bob.login(None, PW["bob"])
        model = bob.fit(tiny_csv, epochs=1)
        _, stored = bob.sample_to_file(model, 50, tmp_path / "first")
    work = [
        ("alice", ["fit", str(tiny_csv), "--epochs", "1"]),
        ("bob", ["fit", str(tiny_csv), "--epochs", "1"]),
        ("bob", ["sample", model, "--rows", "200", "--out", str(tmp_path / "s1")]),
        ("bob", ["sample", model, "--rows", "300", "--out", str(tmp_path / "s2")]),
        ("bob", ["download", stored["name"], "--out", str(tmp_path / "d1")]),
        ("bob", ["download", stored["name"], "--out", str(tmp_path / "d2")]),
        ("alice", ["models", "--json"]),
        ("bob", ["datasets", "--json"]),
    ]
    results: list = [None] * len(work)

    def run(i: int, user: str, args: list[str]) -> None:
        results[i] = run_cli(configs[user], "--password-stdin", *args, input=PW[user] + "\n")

    threads = [threading.Thread(target=run, args=(i, user, args)) for i, (user, args) in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert [r.code for r in results] == [0] * len(work), [r.err for r in results if r.code]
    original = gzip.decompress((server / "synthetic_csv_database" / "bob" / stored["name"]).read_bytes())
    for folder in ("d1", "d2"):
        [copy] = (tmp_path / folder).iterdir()
        assert copy.read_bytes() == original
    for folder, rows in (("s1", 200), ("s2", 300)):
        [csv] = (tmp_path / folder).iterdir()
        assert len(csv.read_text().splitlines()) == rows + 1
    leftovers = [
        p
        for p in server.rglob("*")
        if p.name.endswith(".tmp") or p.parent.name in ("alice", "bob") and p.parent.parent.name == "original_data"
    ]
    assert leftovers == []


def test_removed_user_loses_keys_and_files_and_a_new_one_starts_empty(separated, tmp_path):
    server = separated["server"]
    key = tmp_path / "carol_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    assert (
        server_admin(
            server, "users", "add", "carol", "--key", f"{key}.pub", "--password-stdin", input="carol-secret-pw\n"
        ).returncode
        == 0
    )
    (server / "model_database" / "carol").mkdir(parents=True, exist_ok=True)
    (server / "model_database" / "carol" / "old_20260101t000000_model.gz").write_bytes(b"x")
    refused = server_admin(server, "users", "remove", "carol")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert server_admin(server, "users", "remove", "carol", "--yes").returncode == 0
    assert "carol" not in separated["keys_file"].read_text()
    assert not (server / "model_database" / "carol").exists()
    assert not list((server / "archive").glob("carol-*/model_database"))  # deleted, not archived
    assert server_admin(server, "users", "add", "carol", "--password-stdin", input="carol-secret-pw2\n").returncode == 0
    assert not (server / "model_database" / "carol").exists()
    (server / "model_database" / "carol").mkdir()
    (server / "model_database" / "carol" / "kept_20260101t000000_model.gz").write_bytes(b"y")
    assert server_admin(server, "users", "remove", "carol", "--yes", "--keep-files").returncode == 0
    [kept] = (server / "archive").glob("carol-*/model_database/kept_20260101t000000_model.gz")
    assert kept.read_bytes() == b"y" and not (server / "model_database" / "carol").exists()
