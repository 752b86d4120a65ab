"""The one error hierarchy of ctgan-server-cli, shared by client and server.

It lives in the server package because both sides need the same classes: the
server sends an error's class name over the wire and the client raises that
same class again (``from_wire``), so a wrong password is an ``AuthError`` on
both ends.  Each class's docstring is its default message and ``exit_code`` is
the process exit status the CLI maps it to (documented in the README).
This module must stay stdlib-only and cheap to import.
"""

from __future__ import annotations


class CtganError(Exception):
    """Something went wrong."""

    exit_code = 1

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(CtganError):
    """The command was used wrongly."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration is invalid."""


class InvalidNameError(UsageError):
    """That name is not allowed."""


class AuthError(CtganError):
    """Wrong username or password."""

    exit_code = 3


class NotFoundError(CtganError):
    """No such file."""

    exit_code = 4


class BadDataError(CtganError):
    """The data cannot be used."""

    exit_code = 5


class ConnectError(CtganError):
    """Cannot reach the server."""

    exit_code = 6


class HostKeyError(ConnectError):
    """The server's host key is not trusted."""


class VersionMismatchError(CtganError):
    """Client and server versions differ."""

    exit_code = 7


class ModelVersionError(VersionMismatchError):
    """The model was made with other library versions."""


class ServerEnvironmentError(CtganError):
    """The server is missing something it needs."""

    exit_code = 8


class TransferError(CtganError):
    """A file transfer failed its integrity check."""

    exit_code = 9


class ProtocolError(CtganError):
    """The server sent something the client does not understand."""

    exit_code = 10


class InternalError(CtganError):
    """The server hit an unexpected error; its log has the details."""

    exit_code = 11


class CanceledError(CtganError):
    """The job was canceled."""

    exit_code = 12


class LimitError(CtganError):
    """A server limit was exceeded."""

    exit_code = 13


def _all_classes(base: type[CtganError]) -> dict[str, type[CtganError]]:
    found = {base.__name__: base}
    for sub in base.__subclasses__():
        found.update(_all_classes(sub))
    return found


def from_wire(type_name: str, message: str) -> CtganError:
    """Rebuild the typed error the server sent; unknown names degrade to the base class."""
    cls = _all_classes(CtganError).get(type_name, CtganError)
    return cls(message)
