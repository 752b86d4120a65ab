"""Signed model files: only models this server wrote are ever unpickled.

A model file is a pickle, and unpickling runs code, so anyone able to put a
file into ``model_database/<user>/`` could otherwise run code as the server.
Every model file therefore starts with ``MAGIC`` and an HMAC-SHA256 tag under
a secret that never leaves the server (``<data_dir>/.server_key``); the tag
covers the user, the file name and the gzip payload, so a model copied to
another user's folder or renamed fails too.  ``verify`` runs before anything
is decompressed or unpickled.

Models written before signing existed are adopted by an admin with
``python -m ctgan_server models sign --all`` (``sign_all_command``), which
signs only files whose pickle imports nothing outside ``scan_pickle``'s
allowlist.  Stdlib only and cheap to import: the admin command needs no torch.
"""

from __future__ import annotations

import _compat_pickle
import gzip
import hashlib
import hmac
import io
import os
import pickletools
import re
import secrets
import struct
import sys
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from .storage import MODEL_DIR, MODEL_SUFFIX, make_private_dir
from .wire import BadDataError, ServerEnvironmentError, atomic_write_bytes

if TYPE_CHECKING:
    from .settings import Settings

MAGIC = b"CTGANSRV-SIGNED-1\n"
TAG_BYTES = 32
KEY_BYTES = 32
KEY_FILE = ".server_key"
# Keeps the tag of a model apart from any other use of the same key.
_DOMAIN = b"ctgan-server model\0"

ADOPT_HINT = "an admin can adopt old models with `ctgan-server models sign --all`"


# -- the server key --------------------------------------------------------------


def server_key(settings: Settings) -> bytes:
    """The server's 32-byte signing secret, created (0600) on first use."""
    data_dir = Path(settings.data_dir)
    path = data_dir / KEY_FILE
    key = _read_key(path)
    if key is not None:
        return key
    make_private_dir(data_dir)
    tmp = data_dir / f".{KEY_FILE}.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(KEY_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        # link(), unlike rename(), never replaces an existing file: when two
        # processes race, the first link wins and both read the winner's key.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    key = _read_key(path)
    if key is None:
        raise ServerEnvironmentError(f"{path} vanished right after it was created")
    return key


def _read_key(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            key = fh.read(KEY_BYTES + 1)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        # Whoever can read the key can sign a pickle the server will run.
        raise ServerEnvironmentError(f"{path} is open to other users: `chmod 600 {path}` (and check nobody copied it)")
    if len(key) != KEY_BYTES:
        raise ServerEnvironmentError(
            f"{path} is damaged ({len(key)} bytes, not {KEY_BYTES}); restore it from a backup "
            "(a new key makes every stored model unloadable)"
        )
    return key


# -- signing and verifying ---------------------------------------------------------


def _tag(key: bytes, user: str, name: str, payload: bytes) -> bytes:
    mac = hmac.new(key, _DOMAIN, hashlib.sha256)
    # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    for field in (user.encode("utf-8"), name.encode("utf-8")):
        mac.update(struct.pack(">I", len(field)))
        mac.update(field)
    mac.update(payload)
    return mac.digest()


def sign(key: bytes, user: str, name: str, payload: bytes) -> bytes:
    """The whole content of a signed model file holding the gzip bytes ``payload``."""
    return MAGIC + _tag(key, user, name, payload) + payload


def is_signed(content: bytes) -> bool:
    return content.startswith(MAGIC)


def verify(key: bytes, user: str, name: str, content: bytes) -> bytes:
    """The gzip payload of a signed model file; BadDataError unless this server signed it for ``user``/``name``."""
    if not is_signed(content):
        raise BadDataError(f"model {name} is not signed by this server (planted, or made before signing existed): {ADOPT_HINT}")
    tag = content[len(MAGIC) : len(MAGIC) + TAG_BYTES]
    payload = content[len(MAGIC) + TAG_BYTES :]
    if len(tag) != TAG_BYTES or not hmac.compare_digest(tag, _tag(key, user, name, payload)):
        raise BadDataError(
            f"model {name} was altered, renamed or moved after it was saved (its signature does not match); it was not loaded"
        )
    return payload


# -- scanning an unsigned pickle -------------------------------------------------

# Globals a model's pickle may import.  Whole packages: the model's own classes
# and the reconstructors of their numpy, pandas and torch parts.
_ALLOWED_PACKAGES = frozenset({"torch", "ctgan", "rdt", "sklearn", "numpy", "pandas", "ctgan_server"})
# Stdlib globals, each seen in real models (torch 2.13, ctgan 0.12.1) and harmless to call.
_ALLOWED_STDLIB = frozenset(
    {
        # torch.save pickles with protocol 2, which has no bytes opcode: numpy
        # dtypes and scalars hold their raw bytes as _codecs.encode(text, "latin1").
        "_codecs.encode",
        # nn.Module keeps its parameters, buffers and submodules in OrderedDicts.
        "collections.OrderedDict",
        # Protocol 2 has no opcode for sets or slices, so it calls the type:
        # nn.Module._non_persistent_buffers_set is a set, pandas' block mgr_locs slices.
        "builtins.set",
        "builtins.slice",
    }
)
# Inside the allowed packages are callables that import, load pickles or run
# processes (numpy.load, pandas.read_pickle, torch.utils.cpp_extension.load_inline,
# torch.utils.collect_env.run, ...).  No model holds any of them; refusing
# these module parts and names narrows what a crafted pickle could reach.
# A denylist is never complete: the signature is the real protection.
_GADGET_MODULE_PARTS = frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "shutil",
        "builtins",
        "importlib",
        "pickle",
        "marshal",
        "ctypes",
        "runpy",
        "socket",
        "io",
        "hub",
        "jit",
        "package",
        "serialization",
        "cpp_extension",
        "collect_env",
        "_dynamo",
        "_inductor",
        "testing",
        "f2py",
        "distutils",
        "joblib",
        "npyio",
        "format",
        "multiprocessing",
        "compat",
        "externals",
    }
)
_GADGET_NAMES = frozenset(
    {
        "load",
        "loads",
        "load_inline",
        "read_pickle",
        "read_array",
        "from_file",
        "fromfile",
        "memmap",
        "save",
        "to_pickle",
        "run",
        "system",
        "popen",
        "Popen",
        "exec",
        "eval",
        "compile",
        "open",
        "getattr",
        "setattr",
        "delattr",
        "__import__",
        "import_module",
        "main",
        "check_output",
        "check_call",
        "call",
        "getoutput",
        "getstatusoutput",
        "spawn",
    }
)
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_UNKNOWN = object()


def _forbidden(module: object, name: object) -> str | None:
    """``module.name`` if unpickling may not import it, else None."""
    if not isinstance(module, str) or not isinstance(name, str):
        return "<a global whose name is not plain text>"
    # The unpickler renames Python 2 names for protocols < 3 (torch writes 2):
    # judge what it would really import.
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    full = f"{module}.{name}"
    parts = module.split(".")
    # A dotted name is an attribute path (protocol 4+): torch.x + "os.system" reaches os.
    # ASCII only, since this walk and torch's unpickler may decode old string opcodes differently.
    if not full.isascii() or not name.isidentifier() or not all(part.isidentifier() for part in parts):
        return full
    if full in _ALLOWED_STDLIB:
        return None
    if parts[0] not in _ALLOWED_PACKAGES or name in _GADGET_NAMES or _GADGET_MODULE_PARTS.intersection(parts):
        return full
    return None


def _scan_ops(data: bytes) -> list[str]:
    """Every global the pickle ``data`` would import that is not allowed."""
    found: list[str] = []
    # Values known to sit on top of the stack, in order; any opcode this walk
    # does not model empties it, so a STACK_GLOBAL only ever gets names pushed
    # right before it.  The memo mirrors the unpickler's, unknowns included.
    top: list[object] = []
    memo: dict[int, object] = {}
    try:
        for op, arg, _pos in pickletools.genops(data):
            kind = op.name
            if kind in _STRING_OPS:
                top.append(arg if isinstance(arg, str) else _UNKNOWN)
            elif kind in _GET_OPS:
                top.append(memo.get(arg, _UNKNOWN))
            elif kind == "MEMOIZE":
                memo[len(memo)] = top[-1] if top else _UNKNOWN
            elif kind in _PUT_OPS:
                memo[arg] = top[-1] if top else _UNKNOWN
            elif kind in ("FRAME", "PROTO"):
                pass
            elif kind in ("GLOBAL", "INST"):
                module, sep, name = str(arg).partition(" ")
                bad = _forbidden(module, name) if sep and " " not in name else f"<malformed global {arg!r}>"
                if bad:
                    found.append(bad)
                top = []
            elif kind == "STACK_GLOBAL":
                if len(top) >= 2 and top[-2] is not _UNKNOWN and top[-1] is not _UNKNOWN:
                    bad = _forbidden(top[-2], top[-1])
                else:
                    bad = "<a STACK_GLOBAL whose names cannot be told>"
                if bad:
                    found.append(bad)
                top = []
            elif kind.startswith("EXT"):
                # The copyreg extension registry maps codes to arbitrary globals.
                found.append(f"<extension code {arg}>")
                top = []
            else:
                top = []
    except Exception as exc:  # genops raises ValueError and others on a damaged pickle
        found.append(f"<unreadable pickle: {exc}>")
    return found


def scan_pickle(payload: bytes) -> list[str]:
    """The forbidden globals (``module.name``, or ``<why>``) in a model's gzip payload; empty means clean."""
    try:
        raw = gzip.decompress(payload)
    except (OSError, EOFError, zlib.error) as exc:
        return [f"<not gzip: {exc}>"]
    # torch.load takes the zip format only when the file starts with a local
    # header; anything else it unpickles directly, whatever a zip reader sees.
    if not raw.startswith(b"PK\x03\x04"):
        return ["<not a torch zip archive>"] + _scan_ops(raw)
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        members = archive.infolist()
    except Exception as exc:  # zipfile raises more than BadZipFile on a crafted archive
        return [f"<not a torch zip archive: {exc}>"]
    names = [m.filename for m in members]
    prefixes = {n.split("/", 1)[0] for n in names}
    problems = []
    if len(prefixes) != 1 or any("/" not in n for n in names):
        problems.append("<zip members outside one archive folder>")
    if len(set(names)) != len(names):
        problems.append("<duplicate zip members>")
    if not members or min(m.header_offset for m in members) != 0:
        # Data before the first member: zip readers may disagree on what is inside.
        problems.append("<data before the zip archive>")
    # torch.save writes <prefix>/data.pkl and raw tensor bytes; a constants.pkl
    # would make torch.load treat the file as TorchScript.
    pickles = [n for n in names if n.endswith(".pkl")]
    data_pkl = [n for n in pickles if re.fullmatch(r"[^/]+/data\.pkl", n)]
    problems += [f"<extra pickle {n}>" for n in pickles if n not in data_pkl]
    if len(data_pkl) != 1:
        problems.append("<no single data.pkl in the archive>")
    if problems:
        return problems
    try:
        data = archive.read(data_pkl[0])
    except Exception as exc:  # a bad CRC, an unknown compression, ...
        return [f"<unreadable data.pkl: {exc}>"]
    return _scan_ops(data)


# -- adopting models made before signing ------------------------------------------


def sign_all(settings: Settings) -> tuple[list[str], list[tuple[str, str]]]:
    """Sign every unsigned model whose pickle scans clean.

    Returns ``user/file`` names signed, and ``(user/file, reason)`` pairs left
    as they were: unsigned files that import forbidden globals, and signed
    files whose signature does not match (never re-signed: that would bless
    a tampered file).  Valid signed files are skipped silently.
    """
    key = server_key(settings)
    root = Path(settings.data_dir) / MODEL_DIR
    signed: list[str] = []
    refused: list[tuple[str, str]] = []
    users = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    for folder in users:
        user = folder.name
        for path in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
            if path.name.startswith(".") or not path.is_file():
                continue
            label = f"{user}/{path.name}"
            content = path.read_bytes()
            if is_signed(content):
                try:
                    verify(key, user, path.name, content)
                except BadDataError:
                    refused.append((label, "signed, but its signature does not match (altered, renamed or moved); not re-signed"))
                continue
            forbidden = scan_pickle(content)
            if forbidden:
                refused.append((label, "forbidden: " + ", ".join(dict.fromkeys(forbidden))))
                continue
            atomic_write_bytes(path, sign(key, user, path.name, content))
            signed.append(label)
    return signed, refused


def sign_all_command(settings: Settings) -> int:
    """`models sign --all`: one stderr line per signed or refused file and a summary; 1 if any was refused."""
    signed, refused = sign_all(settings)
    for label in signed:
        print(f"signed {label}", file=sys.stderr)
    for label, reason in refused:
        print(f"refused {label}: {reason}", file=sys.stderr)
    print(f"{len(signed)} model(s) signed, {len(refused)} refused", file=sys.stderr)
    return 1 if refused else 0
