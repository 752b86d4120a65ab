"""One RPC session with the server: hello, login, then calls, each answered in order.

Bulk bytes ride in the same stream as frames (see ctgan_server.wire):
a call with ``upload=`` sends its blocks when the server says ``send``, and
a call with ``download=`` hands each received block to that callable.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable

from ctgan_server import __version__
from ctgan_server.wire import (
    PROTOCOL_MAX,
    PROTOCOL_MIN,
    ConnectError,
    CtganError,
    ProtocolError,
    ServerEnvironmentError,
    UsageError,
    VersionMismatchError,
    decode,
    encode,
    from_wire,
    read_frames,
    request,
    write_frames,
)

OnEvent = Callable[[dict[str, Any]], None]
Sink = Callable[[bytes], Any]


class Session:
    def __init__(self, connection: Any):
        self.connection = connection
        self.ids = itertools.count(1)
        self.server_info: dict[str, Any] = {}
        self.broken = False
        self.transferred: tuple[str, int] | None = None  # sha256 and size of the last call's frames

    def _server_gone(self) -> CtganError:
        tail = self.connection.stderr.text()
        last = tail.strip().splitlines()[-1] if tail.strip() else ""
        where = self.connection.description
        if "No module named ctgan_server" in tail:
            return ServerEnvironmentError(f"ctgan_server is not importable on the {where}: check [server] server_dir and python")
        if not self.server_info and last:
            return ServerEnvironmentError(f"the server on {where} did not start: {last}")
        return ConnectError(f"the {where} closed the connection" + (f": {last}" if last else ""))

    def call(
        self,
        method: str,
        on_event: OnEvent | None = None,
        upload: Iterable[bytes] | None = None,
        download: Sink | None = None,
        **params: Any,
    ) -> Any:
        if self.broken:
            raise ConnectError("this session was interrupted mid-call and is closed; connect and log in again")
        msg_id = next(self.ids)
        self.transferred = None
        try:
            self.connection.send(encode(request(msg_id, method, params)))
        except (OSError, EOFError) as exc:
            raise self._server_gone() from exc
        try:
            return self._await_reply(msg_id, on_event, upload, download)
        except CtganError as exc:
            if not getattr(exc, "from_server", False):
                self._break()
            raise
        except BaseException:
            # Ctrl-C, or an on_event callback that raised: the server is still
            # answering this call, so the stream is out of step for good.
            self._break()
            raise

    def _send_frames(self, blocks: Iterable[bytes]) -> None:
        try:
            self.transferred = write_frames(self.connection.send, blocks)
        except (OSError, EOFError):
            # The server stopped reading (a limit, a bad stream) and closed the
            # session; its reply, already on the way, says why.
            self.transferred = None

    def _break(self) -> None:
        self.broken = True
        self.connection.close()

    def _await_reply(
        self, msg_id: int, on_event: OnEvent | None, upload: Iterable[bytes] | None = None, download: Sink | None = None
    ) -> Any:
        while True:
            try:
                line = self.connection.readline()
            except (OSError, EOFError) as exc:
                raise self._server_gone() from exc
            if not line:
                raise self._server_gone()
            if not line.strip():
                continue
            try:
                message = decode(line)
            except ProtocolError:
                # Before the server has answered once, stray lines are noise
                # from the remote shell (a chatty .bashrc); after, a real fault.
                if not self.server_info:
                    continue
                raise
            if message.get("event") == "send" and upload is not None:
                self._send_frames(upload)
                upload = None  # one stream per call
                continue
            if message.get("event") == "frames" and download is not None:
                try:
                    self.transferred = read_frames(self.connection.read_exactly, download)
                except (OSError, EOFError) as exc:
                    raise self._server_gone() from exc
                download = None
                continue
            if "event" in message:
                if on_event:
                    on_event(message)
                continue
            if message.get("id") != msg_id:
                raise ProtocolError(f"reply to request {message.get('id')!r} while waiting for {msg_id}")
            if "error" in message:
                err = message["error"]
                error = from_wire(err.get("type", ""), err.get("message", "server error"))
                error.from_server = True  # a whole reply: the session is still in step
                raise error
            return message.get("result")

    def hello(self) -> dict[str, Any]:
        try:
            info = self.call("hello", version=__version__, protocol=PROTOCOL_MAX, protocols=[PROTOCOL_MIN, PROTOCOL_MAX])
        except UsageError as exc:
            if not exc.message.startswith("bad parameters for hello"):
                raise
            # A server of 0.1.0 knows only `protocol` and `version`, and refuses
            # any other parameter before it compares them; asked again in its
            # own terms, it answers with the version mismatch (exit 7).
            info = self.call("hello", version=__version__, protocol=PROTOCOL_MAX)
        chosen = info.get("protocol")
        if not isinstance(chosen, int) or isinstance(chosen, bool):
            raise ProtocolError(f"the server's hello named no protocol version: {chosen!r}")
        if not PROTOCOL_MIN <= chosen <= PROTOCOL_MAX:
            raise VersionMismatchError(f"the server chose protocol {chosen}, outside this client's {PROTOCOL_MIN}-{PROTOCOL_MAX}")
        self.server_info = info
        return self.server_info

    def login(self, user: str, password: str) -> None:
        self.call("login", user=user, password=password)

    def close(self) -> None:
        if not self.broken:
            self.connection.close()
