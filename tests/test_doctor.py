"""`ctgan-server doctor` on a real server checkout: healthy, then broken one way at a time, each named by its check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ctgan_server.doctor import SHARED_FILESYSTEMS, filesystem_type
from tests import slurm
from tests.helpers import REPO, Cli, make_server, write_client_config


def doctor(server_dir: Path, python: str = sys.executable, path: str | None = None) -> tuple[int, dict[str, str]]:
    """Exit code, and each check's line by the check's name; ``path`` is the server's PATH (where it finds Slurm)."""
    env = {**os.environ, "PYTHONPATH": str(server_dir)}  # a bare venv finds the linked package as a server would
    if path is not None:
        env["PATH"] = path
    done = subprocess.run(
        [python, "-m", "ctgan_server", "--dir", str(server_dir), "doctor"], capture_output=True, text=True, timeout=120, env=env
    )
    return done.returncode, by_name(done.stdout)


def by_name(output: str) -> dict[str, str]:
    return {line.split(":")[0].split()[-1] if ":" in line else line: line for line in output.splitlines()}


@pytest.fixture
def checkout(server_dir: Path) -> Path:
    (server_dir / "requirements.txt").symlink_to(REPO / "requirements.txt")  # the checkout's pins
    return server_dir


def failed(lines: dict[str, str]) -> list[str]:
    return sorted(name for name, line in lines.items() if line.startswith("FAIL"))


def test_a_healthy_server_passes_every_check(checkout):
    code, lines = doctor(checkout)
    assert code == 0 and failed(lines) == [], lines
    assert {"packages", "devices", "data_dir", "disk", "permissions", "authorized_keys", "key", "slurm"} <= set(lines)
    assert "executor is local" in lines["slurm"] and "shared_fs" not in lines


def test_missing_libraries_fail_the_packages_and_devices_checks(checkout, tmp_path):
    bare = tmp_path / "bare-venv"
    venv.create(bare, with_pip=False, system_site_packages=False)
    code, lines = doctor(checkout, str(bare / "bin" / "python"))
    assert code == 1 and failed(lines) == ["devices", "packages"]
    assert "ctgan missing (wants 0.12.1)" in lines["packages"] and "torch is not installed" in lines["devices"]


def test_an_unusable_data_folder_fails_the_data_dir_check(checkout):
    # Tests run as root, whom file modes do not stop: a data folder that is not there stands in for an unwritable one.
    (checkout / "config.toml").write_text((checkout / "config.toml").read_text() + 'data_dir = "nowhere/at/all"\n')
    code, lines = doctor(checkout)
    assert code == 1 and "data_dir" in failed(lines) and "cannot write in" in lines["data_dir"]


def test_open_modes_a_damaged_key_line_and_a_shared_server_key_are_each_named(checkout):
    code, _ = doctor(checkout)
    assert code == 0
    (checkout / "credentials.json").chmod(0o644)
    keys = checkout / "ssh" / "authorized_keys"
    keys.parent.mkdir(mode=0o700)
    forced = f'command="{sys.executable} -m ctgan_server --dir {checkout} serve --as alice",restrict'
    good = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    keys.write_text(f"{forced} ssh-ed25519 {good} a@b\n{forced} ssh-ed25519 not*base64\n")
    keys.chmod(0o600)
    (checkout / ".server_key").write_bytes(os.urandom(32))
    (checkout / ".server_key").chmod(0o644)
    code, lines = doctor(checkout)
    assert code == 1 and failed(lines) == ["authorized_keys", "key", "permissions"], lines
    assert "credentials.json is 644" in lines["permissions"] and "line 2 damaged" in lines["authorized_keys"]
    assert "mode 644" in lines["key"]


# -- Slurm --------------------------------------------------------------------------------------------------------------


def use_slurm(checkout: Path, **options: str) -> None:
    """executor = "slurm" and these [service.slurm] options, in place of what an earlier call set."""
    text = (checkout / "config.toml").read_text().split('executor = "slurm"\n')[0] + 'executor = "slurm"\n'
    if options:
        text += "\n[service.slurm]\n" + "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in options.items())
    (checkout / "config.toml").write_text(text)


def fake_slurm(folder: Path, scontrol: str, sinfo: str = "") -> str:
    """A folder of stand-in Slurm commands, for the failures a healthy test cluster cannot show; returns it as a PATH."""
    folder.mkdir()
    scripts = {"scontrol": scontrol, "sinfo": sinfo or "exit 0", "sbatch": "exit 0", "squeue": "exit 0", "scancel": "exit 0"}
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


SLURM_DOWN = 'echo "Slurmctld(primary) at head is DOWN"; exit 1'
SLURM_UP = """case "$1" in
ping) echo "Slurmctld(primary) at head is UP" ;;
show) echo "Partition $3 not found" >&2; exit 1 ;;
esac"""


@pytest.mark.parametrize("how", ["absent", "down"])
def test_slurm_absent_or_down_fails_the_slurm_check(checkout, tmp_path, how):
    use_slurm(checkout)
    if how == "absent":
        path = str(tmp_path / "no-slurm-here")  # the interpreter is called by its full path; nothing else is found
        wanted = "sbatch, squeue, scontrol, scancel not on the server's PATH"
    else:
        path = fake_slurm(tmp_path / "bin", SLURM_DOWN)
        wanted = "slurmctld does not answer (scontrol ping: DOWN)"
    code, lines = doctor(checkout, path=path)
    assert code == 1 and failed(lines) == ["slurm"], lines
    assert wanted in lines["slurm"] and "shared_fs" not in lines


def test_a_missing_partition_and_nodes_elsewhere_on_a_local_disk_are_named(checkout, tmp_path):
    use_slurm(checkout, partition="gpu")
    code, lines = doctor(checkout, path=fake_slurm(tmp_path / "bin", SLURM_UP))
    assert code == 1 and "no partition 'gpu'" in lines["slurm"] and "Partition gpu not found" in lines["slurm"], lines
    # Two nodes that are not this machine, and a data_dir on this machine's own disk (tmp_path): not seen by them.
    use_slurm(checkout)
    nodes = 'echo "node1 node1.cluster idle"; echo "node2 node2.cluster mixed"'
    code, lines = doctor(checkout, path=fake_slurm(tmp_path / "bin2", SLURM_UP, nodes))
    assert code == 1 and failed(lines) == ["shared_fs"], lines
    assert "not a network filesystem, but jobs may run on node1, node2" in lines["shared_fs"]
    assert "default partition: node1 idle, node2 mixed" in lines["slurm"]


def test_no_node_up_fails_the_slurm_check(checkout, tmp_path):
    use_slurm(checkout)
    code, lines = doctor(checkout, path=fake_slurm(tmp_path / "bin", SLURM_UP, 'echo "n1 n1 down*"; echo "n2 n2 drained"'))
    assert code == 1 and failed(lines) == ["slurm"] and "no node takes jobs (n1 down*, n2 drained)" in lines["slurm"], lines


def test_the_filesystem_type_is_the_deepest_mount_of_the_folder():
    mounts = (
        "21 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "40 21 0:50 / /srv/shared\\040data rw,relatime - nfs4 filer:/export rw\n"
        "41 40 0:51 / /srv/shared\\040data/scratch rw - lustre 10.0.0.1@tcp:/scratch rw\n"
    )
    assert filesystem_type(Path("/srv/shared data/ctgan"), mounts) == "nfs4"
    assert filesystem_type(Path("/srv/shared data/scratch/x"), mounts) == "lustre"
    assert filesystem_type(Path("/srv/shared"), mounts) == "ext4"  # a prefix of the name is not the mount
    assert "nfs4" in SHARED_FILESYSTEMS and "lustre" in SHARED_FILESYSTEMS and "ext4" not in SHARED_FILESYSTEMS


def test_a_healthy_slurm_cluster_passes(checkout):
    """Through the real one-node Slurm (.ci/slurm-up): its default partition, then named, then one that does not exist."""
    slurm.require_slurm()
    use_slurm(checkout)
    code, lines = doctor(checkout)
    assert code == 0 and failed(lines) == [], lines
    assert "slurmctld answers" in lines["slurm"] and "every Slurm node is this host" in lines["shared_fs"]
    # sinfo marks the default partition with a "*".
    partition = (
        subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30).stdout.split()[0].rstrip("*")
    )
    use_slurm(checkout, partition=partition)
    code, lines = doctor(checkout)
    assert code == 0 and f"partition {partition}:" in lines["slurm"], lines
    use_slurm(checkout, partition="no-such-part")
    code, lines = doctor(checkout)
    assert code == 1 and failed(lines) == ["slurm"] and "no partition 'no-such-part'" in lines["slurm"], lines


# -- `ctgan-host doctor`: the same checks for users, over the session -----------------------------------------------------


def test_a_user_sees_the_checks_fit_for_any_user_and_nothing_of_others(checkout, cli):
    # bob's model left open to others, and a key line: the admin's doctor names both, a user's names neither.
    bob = checkout / "model_database" / "bob"
    bob.mkdir(parents=True, mode=0o700)
    (bob / "secret-study_20260101t000000_model.gz").write_bytes(b"x")
    (bob / "secret-study_20260101t000000_model.gz").chmod(0o644)
    code, lines = doctor(checkout)
    assert code == 1 and "secret-study" in lines["permissions"]
    done = cli("doctor")
    assert done.code == 0, done.err
    lines = by_name(done.out)
    assert set(lines) == {"packages", "devices", "data_dir", "disk", "slurm"} and failed(lines) == [], done.out
    assert "bob" not in done.out and "secret-study" not in done.out and "authorized_keys" not in done.out


def test_a_user_doctor_fails_with_the_slurm_line_when_slurm_is_down(checkout, cli, tmp_path):
    use_slurm(checkout)
    done = cli("doctor", env={"PATH": fake_slurm(tmp_path / "bin", SLURM_DOWN)})  # the local server inherits PATH
    lines = by_name(done.out)
    assert done.code == 1 and failed(lines) == ["slurm"], done.out + done.err
    assert "slurmctld does not answer (scontrol ping: DOWN)" in lines["slurm"] and done.err == ""


def test_a_protocol_3_server_is_too_old_for_doctor(tmp_path, client_root):
    """A real server of protocol 3: this release's code with PROTOCOL_MAX put back, so it negotiates 3."""
    old = make_server(tmp_path / "old-server")
    (old / "ctgan_server").unlink()
    shutil.copytree(REPO / "ctgan_server", old / "ctgan_server", ignore=shutil.ignore_patterns("__pycache__"))
    wire_py = old / "ctgan_server" / "wire.py"
    wire_py.write_text(re.sub(r"(?m)^PROTOCOL_MAX = \d+$", "PROTOCOL_MAX = 3", wire_py.read_text()))
    config = write_client_config(
        client_root / "old.toml", {"host": "local", "server_dir": str(old), "python": sys.executable}, client_root
    )
    done = Cli(config)("doctor")
    assert done.code == 7 and done.out == "", done.out
    assert done.err.count("\n") == 1 and done.err.startswith("Error: the server is too old for doctor (it speaks protocol 3"), (
        done.err
    )
