"""Entry point: `python -m ctgan_server [--dir DIR] serve [--as NAME]`, `... users ...`, `... models ...`,
or `... job USER ID` (started by serve).

`--dir` names the server checkout (its config.toml); without it, the current
folder.  An SSH key's forced command passes it, since sshd starts the command
in the account's home folder.
"""

import os
import sys


def _take_protocol_stream():
    # stdout is the protocol.  Keep a private handle on it, then point fd 1 at
    # stderr so that anything a library prints (warnings, progress bars)
    # lands in the log instead of corrupting the stream.
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(protocol_fd, "wb", buffering=0)


def _split_dir(argv: list[str]) -> tuple[str | None, list[str]]:
    if argv[:1] == ["--dir"] and len(argv) >= 2:
        return argv[1], argv[2:]
    return None, argv


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root, argv = _split_dir(argv)
    if root is not None:
        root = os.path.abspath(os.path.expanduser(root))
        if not os.path.isdir(root):
            print(f"Error: --dir {root}: no such folder (it should be the server's checkout)", file=sys.stderr)
            return 2
        # Jobs started from here, and admin commands, find the checkout the same way.
        os.environ["CTGAN_SERVER_DIR"] = root
    if argv[:1] == ["serve"] and (len(argv) == 1 or (len(argv) == 3 and argv[1] == "--as")):
        out = _take_protocol_stream()
        from .server import serve
        from .settings import load_settings

        pinned = None
        if len(argv) == 3:
            from .auth import check_username
            from .wire import CtganError

            try:
                pinned = check_username(argv[2])
            except CtganError as exc:
                print(f"Error: {exc.message}", file=sys.stderr)
                return exc.exit_code
        return serve(load_settings, out, sys.stdin.fileno(), pinned)
    if argv[:1] == ["job"] and len(argv) == 3:
        from .job_runner import run_job
        from .settings import load_settings

        return run_job(load_settings(), argv[1], argv[2])
    from .admin import main as admin_main

    return admin_main(argv)


if __name__ == "__main__":
    sys.exit(main())
