"""`ctgan-server [--dir DIR] users|models|doctor ...` (or `python -m ctgan_server ...`): the server admin's commands.

Run on the server with the admin's own (unrestricted) SSH login; an app
user's key runs only `serve`, so none of this is reachable through it.
Passwords are read from a hidden prompt or from stdin, never from argv, so
they never show in `ps` or in shell history.
"""

from __future__ import annotations

import argparse
import getpass
import shutil
import sys
import time
from pathlib import Path

from .auth import CredentialStore, check_username
from .settings import Settings, load_settings
from .storage import MODEL_DIR, STAGING_DIR, SYNTHETIC_DIR, make_private_dir, timestamp
from .wire import CtganError, NotFoundError, UsageError


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


def _read_key(args: argparse.Namespace):
    """The public key from --key FILE or the rest of stdin (after the password line, if that came first)."""
    from .authorized_keys import parse_public_key

    if args.key and args.key_stdin:
        raise UsageError("give the key with --key FILE or --key-stdin, not both")
    if args.key_stdin:
        return parse_public_key(sys.stdin.read())
    try:
        return parse_public_key(Path(args.key).expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"no such key file: {args.key}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{args.key} is not a public key file (it is not text)") from None


def _key_options(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--key", metavar="FILE", help="the user's public key (.pub): writes a forced-command line to authorized_keys"
    )
    group.add_argument(
        "--key-stdin", action="store_true", help="read the public key from stdin (after the password line with --password-stdin)"
    )


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (argparse prints the whole usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"Error: {message} (see: {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ctgan-server", description="ctgan-server-cli server (put --dir DIR first to name the checkout)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="speak the client protocol on stdin/stdout (started by the client over SSH)")
    serve.add_argument("--as", dest="pinned", metavar="NAME", help="accept a login for NAME only (written by `users add --key`)")
    users = sub.add_parser("users", help="manage app users and their SSH keys").add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="add a user, optionally with their SSH key")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    _key_options(add, required=False)
    passwd = users.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    users.add_parser("list", help="list users")
    remove = users.add_parser("remove", help="remove a user, their keys and their files")
    remove.add_argument("name")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    remove.add_argument(
        "--keep-files", action="store_true", help="move their files to <data_dir>/archive/ instead of deleting them"
    )
    keys = users.add_parser("keys", help="list a user's SSH key fingerprints")
    keys.add_argument("name")
    add_key = users.add_parser("add-key", help="add another SSH key for a user")
    add_key.add_argument("name")
    _key_options(add_key, required=True)
    remove_key = users.add_parser("remove-key", help="remove one of a user's SSH keys")
    remove_key.add_argument("name")
    remove_key.add_argument("fingerprint", help="as `users keys NAME` shows it (SHA256:...)")
    audit = users.add_parser("audit", help="show a user's audit log (logins, fits, samples, downloads, deletes)")
    audit.add_argument("name")
    models = sub.add_parser("models", help="admin tasks on stored models").add_subparsers(dest="action", required=True)
    sign = models.add_parser("sign", help="sign models made before signing existed, after scanning them")
    sign.add_argument("--all", action="store_true", required=True, help="every user's unsigned models")
    sub.add_parser("doctor", help="check the server's health: one line per check, exit 1 when any fails")
    return parser


def _users(args: argparse.Namespace, settings: Settings) -> int:
    from .authorized_keys import AuthorizedKeys

    store = CredentialStore(settings.credentials_file)
    store.adopt_legacy(settings.legacy_credentials_file)
    if args.action == "list":
        for name in store.names():
            print(name)
        return 0
    check_username(args.name)  # before asking for a password that would be wasted
    keys = AuthorizedKeys(settings)
    if args.action == "add":
        password = _read_password(args.password_stdin)
        key = _read_key(args) if (args.key or args.key_stdin) else None
        with store.locked():
            store.add_unlocked(args.name, password)
            if key is not None:
                try:
                    keys.add(args.name, key)
                except CtganError:
                    store.remove_unlocked(args.name)  # all or nothing
                    raise
        shown = f" with key {key.fingerprint} (forced command in {keys.path})" if key else ""
        print(f"added user {args.name}{shown}", file=sys.stderr)
        if key is not None:
            _warn_if_forced_command_cannot_start(settings)
    elif args.action == "passwd":
        store.set_password(args.name, _read_password(args.password_stdin))
        print(f"password changed for {args.name}", file=sys.stderr)
    elif args.action == "keys":
        _require_user(store, args.name)
        for key in keys.keys(args.name):
            print(f"{key.fingerprint} {key.kind} {key.comment}".rstrip())
    elif args.action == "add-key":
        key = _read_key(args)
        with store.locked():
            _require_user(store, args.name)
            keys.add(args.name, key)
        print(f"added key {key.fingerprint} for {args.name}", file=sys.stderr)
        _warn_if_forced_command_cannot_start(settings)
    elif args.action == "remove-key":
        with store.locked():
            keys.remove(args.name, args.fingerprint)
        print(f"removed key {args.fingerprint} of {args.name}", file=sys.stderr)
    elif args.action == "audit":
        from .audit import AuditLog

        _require_user(store, args.name)
        for line in AuditLog(settings.data_dir, args.name).lines():
            print(line)
    elif args.action == "remove":
        _remove_user(store, keys, settings, args)
    return 0


def _warn_if_forced_command_cannot_start(settings: Settings) -> None:
    """sshd runs the forced command from the account's home folder: say so now if ctgan_server is not importable there."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CTGAN_SERVER_DIR")}
    probe = subprocess.run([sys.executable, "-c", "import ctgan_server"], cwd=Path.home(), env=env, capture_output=True)
    if probe.returncode != 0:
        print(
            f"warning: {sys.executable} cannot import ctgan_server from {Path.home()}, where sshd starts the forced "
            f"command; install the checkout into that interpreter: {sys.executable} -m pip install -e {settings.server_dir}",
            file=sys.stderr,
        )


def _require_user(store: CredentialStore, name: str) -> None:
    if name not in store.names():
        raise NotFoundError(f"no user {name!r}")


def _remove_user(store: CredentialStore, keys, settings: Settings, args: argparse.Namespace) -> None:
    _require_user(store, args.name)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("removing a user needs --yes when stdin is not a terminal")
        fate = "archived" if args.keep_files else "DELETED"
        answer = input(f"Remove user {args.name}? Their keys go and their models, datasets and jobs are {fate}. [y/N]: ")
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("not removed")
    with store.locked():
        removed_keys = keys.remove_all(args.name)
        store.remove_unlocked(args.name)
    where = retire_user_files(settings, args.name, args.keep_files)
    kept = f"; files archived in {where}" if args.keep_files else "; files deleted"
    print(f"removed user {args.name} and {removed_keys} key(s){kept}", file=sys.stderr)


def retire_user_files(settings: Settings, user: str, keep: bool) -> Path:
    """Stop the user's jobs, then delete or archive their folders, so a new user of that name starts empty.

    The audit log is always archived: a removed user's trail outlives them.
    """
    from .job_runner import cancel
    from .job_store import JobStore
    from .wire import FINISHED

    store = JobStore(settings.data_dir, user)
    for job in store.list():
        if job["state"] not in FINISHED:
            try:
                cancel(store, job["id"])
            except CtganError:
                pass  # finished meanwhile
    archive = settings.data_dir / "archive" / f"{user}-{timestamp(time.time())}"
    folders = [settings.data_dir / name / user for name in (MODEL_DIR, SYNTHETIC_DIR, STAGING_DIR, "jobs")]
    for folder in folders:
        if not folder.exists():
            continue
        if keep and folder.parent.name != STAGING_DIR:  # an unclaimed original is never kept
            shutil.move(str(folder), str(make_private_dir(archive) / folder.parent.name))
        else:
            shutil.rmtree(folder)
    from .audit import AuditLog

    audit_log = AuditLog(settings.data_dir, user).path
    if audit_log.exists():
        shutil.move(str(audit_log), str(make_private_dir(archive) / "audit.log"))
    return archive


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "users":
            return _users(args, settings)
        if args.command == "doctor":
            from .doctor import doctor_command

            return doctor_command(settings)
        if args.command == "models":
            from .signing import sign_all_command

            return sign_all_command(settings)
        raise UsageError("serve takes no other options")
    except CtganError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return 130
