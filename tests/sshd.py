"""Start a throwaway OpenSSH sshd on 127.0.0.1: used by the integration tests and by bench/."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SSHD_BINARY = Path("/usr/sbin/sshd")


class SSHDUnavailable(RuntimeError):
    pass


@dataclass
class SSHD:
    port: int
    user: str
    identity_file: Path
    known_hosts: Path
    host_key_line: str

    def client_settings(self, server_dir: str | Path, **changes: object) -> dict[str, object]:
        """The `[server]` section of a client config that reaches this sshd, the server checkout and this interpreter."""
        settings: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "identity_file": str(self.identity_file),
            "known_hosts": str(self.known_hosts),
            "server_dir": str(server_dir),
            "python": sys.executable,
        }
        return {**settings, **changes}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_sshd(folder: Path, authorized_keys: Path | None = None, python_path: str | None = None) -> Iterator[SSHD]:
    """sshd -D as the current user at a free port, with a temporary host key and authorized_keys.

    ``authorized_keys`` points sshd at another file (one `users add --key`
    writes; the admin's unrestricted client key is put in it first).
    ``python_path`` is set for every session, as an installed package would
    be, so a forced `python -m ctgan_server` finds the code from the home folder.
    """
    if not SSHD_BINARY.exists() or not shutil.which("ssh-keygen"):
        raise SSHDUnavailable("OpenSSH server not installed (apt-get install openssh-server)")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    keys_file = authorized_keys or folder / "authorized_keys"
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_text((folder / "client_key.pub").read_text())
    keys_file.chmod(0o600)
    port = free_port()
    set_env = f"SetEnv PYTHONPATH={python_path}\n" if python_path else ""
    (folder / "sshd_config").write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {folder / "host_key"}
PidFile {folder / "sshd.pid"}
AuthorizedKeysFile {keys_file}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel ERROR
{set_env}"""
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    with open(folder / "sshd.log", "wb") as log:
        proc = subprocess.Popen([str(SSHD_BINARY), "-D", "-e", "-f", str(folder / "sshd_config")], stderr=log)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise SSHDUnavailable(f"sshd did not start: {(folder / 'sshd.log').read_text()}") from None
                time.sleep(0.1)
        key_type, key_b64 = (folder / "host_key.pub").read_text().split()[:2]
        line = f"[127.0.0.1]:{port} {key_type} {key_b64}\n"
        (folder / "known_hosts").write_text(line)
        yield SSHD(port, getpass.getuser(), folder / "client_key", folder / "known_hosts", line)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
