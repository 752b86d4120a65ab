"""`ctgan-server doctor`: is this server healthy, before its users find out?

One line per check, ``ok`` or ``FAIL`` with what to do; the command exits 1
when any check fails.  Each check reads only: it never creates the server key
or a user folder, so running it changes nothing but a probe file it removes.
Users run USER_CHECKS through `ctgan-host doctor`: those name nothing of
another user's files nor of the admin's keys.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import socket
import stat
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .settings import Settings
from .wire import check_line

# Below this much free space on the data folder's filesystem, uploads and
# samples start failing mid-write.
MIN_FREE_BYTES = 2 << 30
# Permission problems listed by name before the rest are only counted.
SHOWN_PROBLEMS = 5
# What the Slurm executor runs; each must be on the server's PATH.
SLURM_COMMANDS = ("sbatch", "squeue", "scontrol", "scancel")
# Seconds a Slurm command may take to answer: a healthy slurmctld answers in
# well under one, a dead one makes the client retry for its MessageTimeout.
SLURM_TIMEOUT = 10
# Node states (sinfo %T, before its flags) in which a node takes new jobs.
NODE_STATES_UP = ("idle", "mixed", "allocated", "completing", "planned")
# Filesystem types, as the mount table names them, that a cluster's nodes
# mount from one source: a data_dir on one of these is the same on every node.
SHARED_FILESYSTEMS = (
    "nfs",
    "nfs4",
    "lustre",
    "gpfs",
    "ceph",
    "fuse.ceph-fuse",
    "beegfs",
    "glusterfs",
    "fuse.glusterfs",
    "cifs",
    "smb3",
    "ocfs2",
    "gfs2",
    "panfs",
    "wekafs",
    "orangefs",
    "afs",
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return check_line(self.name, self.ok, self.detail)


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


def _run_slurm(*args: str) -> tuple[bool, str]:
    """Run a Slurm client command: (True, its output) or (False, why it did not answer, in one line)."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=SLURM_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"no answer in {SLURM_TIMEOUT} s"
    except OSError as exc:
        return False, exc.strerror or str(exc)
    if done.returncode != 0:
        # Slurm ends with its reason ("scontrol: fatal: ..."); the lines above are how it got there.
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        last = lines[-1].removeprefix(f"{args[0]}: ") if lines else f"exit status {done.returncode}"
        return False, last
    return True, done.stdout


def _slurm_problem(partition: str | None) -> str | None:
    """Why Slurm cannot take a job from here, in one line: a command missing, slurmctld silent, no such partition."""
    missing = [name for name in SLURM_COMMANDS if shutil.which(name) is None]
    if missing:
        return f"{', '.join(missing)} not on the server's PATH: install Slurm's client commands (Debian: slurm-client)"
    answered, said = _run_slurm("scontrol", "ping")
    if not answered or not re.search(r" is UP$", said, re.M):
        why = "DOWN" if re.search(r" is DOWN$", said, re.M) else said.strip() or "no answer"
        return f"slurmctld does not answer (scontrol ping: {why})"
    if partition is not None:
        answered, said = _run_slurm("scontrol", "show", "partition", partition, "--oneliner")
        if not answered:
            return f"no partition {partition!r} ([service.slurm] partition; scontrol show partition: {said})"
        state = re.search(r"\bState=(\S+)", said)
        if state and state.group(1) != "UP":
            return f"partition {partition!r} is {state.group(1)}: its jobs would wait until an admin sets it UP"
    return None


def _slurm_nodes(partition: str | None) -> tuple[list[tuple[str, str, str]], str | None]:
    """The nodes a job may run on, as (name, hostname, state); or why sinfo could not list them."""
    answered, said = _run_slurm("sinfo", "-h", "-N", "-o", "%N %n %T", *(["-p", partition] if partition else []))
    if not answered:
        return [], f"sinfo does not answer ({said})"
    nodes = sorted({tuple(line.split()) for line in said.splitlines() if len(line.split()) == 3})
    return nodes, None if nodes else f"sinfo lists no node{f' in partition {partition!r}' if partition else ''}"


def _node_is_up(state: str) -> bool:
    # "idle*" does not respond; "idle~" is powered down and Slurm wakes it; "mixed+drain" takes nothing new.
    parts = state.lower().split("+")
    return "*" not in state and parts[0].rstrip("~#!%$@^-") in NODE_STATES_UP and not {"drain", "fail"} & set(parts[1:])


def slurm(settings: Settings) -> list[Check]:
    """With executor = "slurm": its commands on PATH, slurmctld answering, the partition there, a node up; and shared_fs."""
    if settings.executor != "slurm":
        return [Check("slurm", True, "executor is local: no Slurm checks")]
    partition = settings.slurm.partition
    problem = _slurm_problem(partition)
    nodes: list[tuple[str, str, str]] = []
    if problem is None:
        nodes, problem = _slurm_nodes(partition)
    states = _listed([f"{name} {state}" for name, _, state in nodes])
    if problem is None and not any(_node_is_up(state) for _, _, state in nodes):
        problem = f"no node takes jobs ({states}): is slurmd running on them?"
    if problem is not None:
        return [Check("slurm", False, problem)]  # the shared_fs check needs the node list
    where = f"partition {partition}" if partition else "default partition"
    return [Check("slurm", True, f"slurmctld answers; {where}: {states}"), shared_filesystem(settings, nodes)]


def _listed(items: list[str]) -> str:
    """The first few items, and how many more: a cluster's nodes would not fit on one line."""
    more = f" and {len(items) - SHOWN_PROBLEMS} more" if len(items) > SHOWN_PROBLEMS else ""
    return ", ".join(items[:SHOWN_PROBLEMS]) + more


def filesystem_type(path: Path, mountinfo: str | None = None) -> str:
    """The type of the filesystem ``path`` is on, as the kernel's mount table names it (ext4, nfs4, lustre...)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "unknown"  # not Linux: no mount table to read
    target = os.path.realpath(path)
    longest, kind = -1, "unknown"
    for line in mountinfo.splitlines():
        fields, _, after = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not after.split():
            continue
        # The mount point, with the kernel's octal escapes (a space is \040) undone.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= longest:  # the deepest mount wins, and the later of two at one point
            longest, kind = len(point), after.split()[0]
    return kind


def shared_filesystem(settings: Settings, nodes: list[tuple[str, str, str]]) -> Check:
    """data_dir is seen by every node a job may run on: they are all this host, or it is on a network filesystem.

    Decided without submitting a job, so a network filesystem counts as shared
    even if some node does not mount it at the same path.
    """
    here = {socket.gethostname(), socket.gethostname().split(".")[0]}
    others = sorted({name for name, hostname, _ in nodes if not {name, hostname, hostname.split(".")[0]} & here})
    kind = filesystem_type(settings.data_dir)
    if not others:
        return Check("shared_fs", True, f"every Slurm node is this host: {settings.data_dir} on {kind} is seen by all")
    shown = _listed(others)
    if kind in SHARED_FILESYSTEMS:
        return Check("shared_fs", True, f"{settings.data_dir} is on {kind}, a network filesystem, for jobs on {shown}")
    return Check(
        "shared_fs",
        False,
        f"{settings.data_dir} is on {kind}, not a network filesystem, but jobs may run on {shown}: "
        "put data_dir on one every node mounts (nfs, lustre, gpfs, cephfs, beegfs)",
    )


CHECKS: tuple[Callable[[Settings], Check | list[Check]], ...] = (
    packages,
    devices,
    data_dir_writable,
    disk_free,
    permissions,
    authorized_keys,
    server_key,
    slurm,
)
# What `ctgan-host doctor` runs for any logged-in user: nothing that lists
# file names under data_dir (other users' models), the admin's
# authorized_keys or the server key.
USER_CHECKS = (packages, devices, data_dir_writable, disk_free, slurm)


def run_checks(settings: Settings, checks: tuple[Callable[[Settings], Check | list[Check]], ...] = CHECKS) -> list[Check]:
    results: list[Check] = []
    for check in checks:
        try:
            found = check(settings)
        except OSError as exc:  # e.g. a data folder that does not exist: that check fails, the others still run
            found = Check(check.__name__.replace("_", " "), False, str(exc))
        results += found if isinstance(found, list) else [found]
    return results


def doctor_command(settings: Settings) -> int:
    results = run_checks(settings)
    for result in results:
        print(result.line())
    return 0 if all(result.ok for result in results) else 1
