"""`python -m ctgan_server users ...`: the server admin's user management.

Run on the server, in its checkout; it edits that checkout's credentials.py.
Passwords are read from a hidden prompt or from stdin, never from argv, so
they never show in `ps` or in shell history.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from .auth import CredentialStore, check_username
from .errors import CtganError, UsageError
from .settings import load_settings


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin was given but stdin held no password")
        return password
    if not sys.stdin.isatty():
        raise UsageError("stdin is not a terminal: pass the password with --password-stdin")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Repeat password: "):
        raise UsageError("the passwords did not match")
    return first


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ctgan_server", description="ctgan-server-cli server")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="speak the client protocol on stdin/stdout (started by the client over SSH)")
    users = sub.add_parser("users", help="manage app users in credentials.py").add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = users.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    users.add_parser("list", help="list users")
    remove = users.add_parser("remove", help="remove a user (their files stay)")
    remove.add_argument("name")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        store = CredentialStore(load_settings().credentials_file)
        if args.action != "list":
            check_username(args.name)  # before asking for a password that would be wasted
        if args.action == "list":
            for name in store.names():
                print(name)
        elif args.action == "add":
            store.add(args.name, _read_password(args.password_stdin))
            print(f"added user {args.name}", file=sys.stderr)
        elif args.action == "passwd":
            store.set_password(args.name, _read_password(args.password_stdin))
            print(f"password changed for {args.name}", file=sys.stderr)
        elif args.action == "remove":
            store.remove(args.name)
            print(f"removed user {args.name}; their models and datasets are still on disk", file=sys.stderr)
    except CtganError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return 130
    return 0
