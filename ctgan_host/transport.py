"""How the client reaches `python -m ctgan_server serve`: a local subprocess or an SSH channel.

Both give the session one byte stream each way: ``send``, ``readline`` and
``read_exactly``.  Files travel inside that stream as frames, never over SFTP:
an app user's key may run nothing but `serve`.  paramiko is imported only for
SSH hosts.
"""

from __future__ import annotations

import collections
import getpass
import os
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from ctgan_server.wire import ConfigError, ConnectError, HostKeyError, minimal_env

from .config import ServerConfig, local_python

SERVE_ARGS = ("-m", "ctgan_server", "serve")


class _StderrTail:
    """Drain the server's stderr so it can never block, keeping the last lines for error messages."""

    def __init__(self, stream: IO[bytes], echo: bool):
        self.lines: collections.deque[str] = collections.deque(maxlen=40)
        self.echo = echo
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self.lines.append(line)
            if self.echo:
                print(f"[server] {line}", file=sys.stderr)

    def text(self, wait: float = 1.0) -> str:
        self.thread.join(wait)
        return "\n".join(self.lines)


class LocalConnection:
    """The embedded default: the same server code, as a child process."""

    description = "local server"

    def __init__(self, server: ServerConfig, debug: bool = False):
        server_dir = Path(os.path.expanduser(server.server_dir))
        if not server_dir.is_dir():
            raise ConfigError(f"[server] server_dir does not exist: {server_dir}")
        python = local_python(server)
        try:
            self.proc = subprocess.Popen(
                [python, *SERVE_ARGS],
                cwd=server_dir,
                # Not our environment: CTGAN_PASSWORD and friends must not show in the server's /proc/PID/environ.
                env=minimal_env({}),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise ConfigError(f"cannot start the local server with {python}: {exc.strerror}") from exc
        self.stderr = _StderrTail(self.proc.stderr, debug)
        self.description = f"local server in {server_dir}"

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def readline(self) -> bytes:
        return self.proc.stdout.readline()

    def read_exactly(self, n: int) -> bytes:
        data = self.proc.stdout.read(n)
        if len(data) != n:
            raise EOFError("the server closed the stream mid-transfer")
        return data

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def quote_remote_path(path: str) -> str:
    """Shell-quote a path for the remote shell while letting a leading ~ expand."""
    if path == "~":
        return "~"
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


def remote_command(server: ServerConfig) -> str:
    python = server.python or "python3"
    serve = " ".join(shlex.quote(a) for a in SERVE_ARGS)
    return f"cd {quote_remote_path(server.server_dir)} && exec {quote_remote_path(python)} {serve}"


def _ssh_config(host: str) -> dict[str, Any]:
    import paramiko

    path = Path("~/.ssh/config").expanduser()
    if not path.is_file():
        return {}
    return paramiko.SSHConfig.from_path(str(path)).lookup(host)


class SSHConnection:
    """One SSH connection and one exec channel, which carries the protocol and the files."""

    def __init__(self, server: ServerConfig, debug: bool = False):
        import logging

        import paramiko

        if not debug:
            # paramiko logs failed handshakes with tracebacks; the user gets our one line instead.
            logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)
        ssh_cfg = _ssh_config(server.host)
        hostname = ssh_cfg.get("hostname", server.host)
        port = server.port or int(ssh_cfg.get("port", 22))
        user = server.user or ssh_cfg.get("user") or getpass.getuser()
        keys = [server.identity_file] if server.identity_file else ssh_cfg.get("identityfile", [])
        keys = [os.path.expanduser(k) for k in keys if os.path.exists(os.path.expanduser(k))]
        if server.identity_file and not keys:
            raise ConfigError(f"[server] identity_file not found: {server.identity_file}")
        known_hosts = Path(os.path.expanduser(server.known_hosts))
        self.description = f"{user}@{hostname}:{port}"

        client = paramiko.SSHClient()
        if known_hosts.is_file():
            try:
                client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise ConfigError(f"cannot read known_hosts {known_hosts}: {exc}") from exc
        client.set_missing_host_key_policy(_HostKeyPolicy(known_hosts, server.accept_new_host_keys))
        sock = paramiko.ProxyCommand(ssh_cfg["proxycommand"]) if "proxycommand" in ssh_cfg else None
        try:
            self._connect(client, hostname, port, user, keys, known_hosts, server, sock)
        except BaseException:
            client.close()
            if sock is not None:
                sock.close()
            raise
        self.client = client
        channel = client.get_transport().open_session()
        channel.exec_command(remote_command(server))
        self.channel = channel
        # No makefile_stdin: paramiko's ChannelStdinFile shuts the channel down
        # from __del__, which deadlocks when garbage collection runs it while
        # the channel lock is held (paramiko issue #2685). We write with
        # sendall and shut down in close(), on our own thread.
        self.stdout = channel.makefile("rb")
        self.stderr = _StderrTail(channel.makefile_stderr("rb"), debug)

    @staticmethod
    def _connect(
        client: Any, hostname: str, port: int, user: str, keys: list[str], known_hosts: Path, server: ServerConfig, sock: Any
    ) -> None:
        """paramiko's connect, with each of its failures turned into one user-facing error."""
        import paramiko

        try:
            client.connect(
                hostname,
                port=port,
                username=user,
                key_filename=keys or None,
                allow_agent=True,
                look_for_keys=not keys,
                timeout=server.connect_timeout,
                banner_timeout=server.connect_timeout,
                auth_timeout=server.connect_timeout,
                sock=sock,
            )
        except HostKeyError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                f"the host key of {hostname}:{port} does not match {known_hosts}: the server was reinstalled "
                "or someone is in between; check with its admin before removing the old entry"
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise ConnectError(
                f"SSH login as {user}@{hostname}:{port} failed: check [server] user and identity_file, or your ssh-agent"
            ) from exc
        except (paramiko.SSHException, OSError, socket.timeout) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ConnectError(f"cannot reach {hostname}:{port}: {reason}") from exc

    def send(self, data: bytes) -> None:
        self.channel.sendall(data)

    def readline(self) -> bytes:
        return self.stdout.readline()

    def read_exactly(self, n: int) -> bytes:
        data = self.stdout.read(n)
        if len(data) != n:
            raise EOFError("the server closed the channel mid-transfer")
        return data

    def close(self) -> None:
        try:
            self.channel.shutdown_write()
        except (OSError, EOFError):
            pass
        self.client.close()


class _HostKeyPolicy:
    """Reject unknown host keys, or, when the user opted in, append them to known_hosts.

    paramiko's ``HostKeys.save`` rewrites the whole file and drops lines it
    cannot parse (hashed or certificate entries), so new keys are appended.
    """

    def __init__(self, known_hosts: Path, accept_new: bool):
        self.known_hosts = known_hosts
        self.accept_new = accept_new

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        if not self.accept_new:
            raise HostKeyError(
                f"{hostname} is not in {self.known_hosts}; verify its key (ssh {hostname} once), "
                "or set accept_new_host_keys = true in [server]"
            )
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.known_hosts, "a", encoding="utf-8") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


def open_connection(server: ServerConfig, debug: bool = False) -> LocalConnection | SSHConnection:
    return LocalConnection(server, debug) if server.is_local else SSHConnection(server, debug)
