"""`ctgan-server doctor`: is this server healthy, before its users find out?

One line per check, ``ok`` or ``FAIL`` with what to do; the command exits 1
when any check fails.  Each check reads only: it never creates the server key
or a user folder, so running it changes nothing but a probe file it removes.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .settings import Settings

# Below this much free space on the data folder's filesystem, uploads and
# samples start failing mid-write.
MIN_FREE_BYTES = 2 << 30
# Permission problems listed by name before the rest are only counted.
SHOWN_PROBLEMS = 5


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def packages(settings: Settings) -> Check:
    """Each library in the checkout's requirements.txt is installed at its pinned version."""
    requirements = settings.server_dir / "requirements.txt"
    try:
        pins = [line.split("#")[0].strip() for line in requirements.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        return Check("packages", False, f"no {requirements}: is [server] server_dir the checkout?")
    wrong = []
    for name, _, wanted in (pin.partition("==") for pin in pins if "==" in pin):
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found = "missing"
        if found.split("+")[0] != wanted:  # a local label (torch's "+cpu") is the same release
            wrong.append(f"{name} {found} (wants {wanted})")
    if wrong:
        return Check("packages", False, ", ".join(wrong) + f"; run: pip install -r {requirements}")
    return Check("packages", True, f"as pinned in {requirements.name}")


def devices(settings: Settings) -> Check:
    """The CUDA devices torch sees and their free memory; a CUDA setting without one fails."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return Check("devices", False, "torch is not installed")
    import torch

    if not torch.cuda.is_available():
        if settings.device.startswith("cuda"):
            return Check("devices", False, f"[service] device = {settings.device!r} but torch sees no CUDA device")
        return Check("devices", True, "no CUDA device: jobs run on the CPU")
    shown = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        shown.append(f"cuda:{i} {torch.cuda.get_device_name(i)} {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
    return Check("devices", True, "; ".join(shown))


def data_dir_writable(settings: Settings) -> Check:
    probe = settings.data_dir / f".doctor.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        return Check("data_dir", False, f"cannot write in {settings.data_dir}: {exc.strerror or exc}")
    return Check("data_dir", True, f"{settings.data_dir} is writable")


def disk_free(settings: Settings) -> Check:
    free = shutil.disk_usage(settings.data_dir).free
    enough = free >= MIN_FREE_BYTES
    advice = "" if enough else f" (under {MIN_FREE_BYTES / 2**30:.0f} GiB: uploads and samples will fail)"
    return Check("disk", enough, f"{free / 2**30:.1f} GiB free for {settings.data_dir}{advice}")


def _private_paths(settings: Settings) -> list[Path]:
    """What the server keeps in the data folder (which may be the checkout itself): its folders, walked, and files."""
    from .storage import MODEL_DIR, STAGING_DIR, SYNTHETIC_DIR

    found = []
    for folder in (MODEL_DIR, SYNTHETIC_DIR, STAGING_DIR, "jobs", "audit", "archive"):
        top = settings.data_dir / folder
        if top.is_dir():
            found.append(top)
            for root, dirs, files in os.walk(top):
                found += [Path(root) / name for name in dirs + files]
    files = (settings.credentials_file, settings.data_dir / ".server_key", settings.data_dir / ".login_failures.json")
    return found + [path for path in files if path.exists()]


def permissions(settings: Settings) -> Check:
    """The server's folders are 0700 and its files 0600, as storage writes them."""
    problems = []
    for path in _private_paths(settings):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            problems.append(f"{path} is {mode:o}, not {700 if path.is_dir() else 600}")
    if problems:
        more = f" and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        return Check("permissions", False, "; ".join(problems[:SHOWN_PROBLEMS]) + more + " (chmod go-rwx them)")
    return Check("permissions", True, "no folder or file of the server's is open to group or others")


def authorized_keys(settings: Settings) -> Check:
    """The lines `users add --key` wrote carry `restrict` and a key `users add` would still accept."""
    from .authorized_keys import AuthorizedKeys, parse_public_key
    from .wire import BadDataError

    path = settings.authorized_keys
    if not path.exists():
        return Check("authorized_keys", True, f"{path} does not exist yet (no user has a key)")
    bad, ours = [], 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if AuthorizedKeys.owner(line) is None:
            continue  # not ours: the admin's own keys and anything else are left alone
        ours += 1
        try:
            parse_public_key(AuthorizedKeys.key_text(line) or "")
        except BadDataError:
            bad.append(str(number))
            continue
        if "restrict" not in line:
            bad.append(str(number))
    if bad:
        return Check("authorized_keys", False, f"{path}: line {', '.join(bad)} damaged; remove and re-add those keys")
    return Check("authorized_keys", True, f"{ours} user key line(s) in {path}, each with its forced command")


def server_key(settings: Settings) -> Check:
    from .signing import KEY_BYTES, KEY_FILE
    from .storage import MODEL_DIR

    path = settings.data_dir / KEY_FILE
    if not path.exists():
        models = settings.data_dir / MODEL_DIR
        if models.is_dir() and any(models.rglob("*_model.gz")):
            return Check("server key", False, f"{path} is missing but models exist: restore it from a backup")
        return Check("server key", True, "not made yet (the first fit makes it)")
    mode, size = stat.S_IMODE(path.stat().st_mode), path.stat().st_size
    if mode & 0o077 or size != KEY_BYTES:
        return Check("server key", False, f"{path} is mode {mode:o}, {size} bytes (wants 600, {KEY_BYTES})")
    return Check("server key", True, f"{path} present, 600")


CHECKS: tuple[Callable[[Settings], Check], ...] = (
    packages,
    devices,
    data_dir_writable,
    disk_free,
    permissions,
    authorized_keys,
    server_key,
)


def run_checks(settings: Settings) -> list[Check]:
    results = []
    for check in CHECKS:
        try:
            results.append(check(settings))
        except OSError as exc:  # e.g. a data folder that does not exist: that check fails, the others still run
            results.append(Check(check.__name__.replace("_", " "), False, str(exc)))
    return results


def doctor_command(settings: Settings) -> int:
    results = run_checks(settings)
    for result in results:
        print(result.line())
    return 0 if all(result.ok for result in results) else 1
