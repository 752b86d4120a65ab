"""Entry point: `python -m ctgan_server serve`, `... users ...`, or `... job USER ID` (started by serve)."""

import os
import sys


def _take_protocol_stream():
    # stdout is the protocol.  Keep a private handle on it, then point fd 1 at
    # stderr so that anything a library prints (warnings, progress bars)
    # lands in the log instead of corrupting the JSON stream.
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(protocol_fd, "wb", buffering=0)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"] and len(argv) == 1:
        out = _take_protocol_stream()
        from .server import serve
        from .settings import load_settings

        return serve(load_settings, out, sys.stdin.buffer)
    if argv[:1] == ["job"] and len(argv) == 3:
        from .jobs import run_job
        from .settings import load_settings

        return run_job(load_settings(), argv[1], argv[2])
    from .admin import main as admin_main

    return admin_main(argv)


if __name__ == "__main__":
    sys.exit(main())
