"""The client/server seam: the wire format is pinned to the protocol version, and the client takes only `ctgan_server.wire`.

- A change to what travels between the two sides (methods and their
  parameters, error names and exit codes, job states, frame and line
  format, message encoding, limits) without raising PROTOCOL_MAX fails
  here.  Reply and event fields are not in the fingerprint: a new field is
  harmless to an older peer, a renamed one is not, and review has to catch
  that.
- `ctgan_host` imports nothing from `ctgan_server` but `wire` (and the
  package's own version), except the documented `evaluate` and demo; neither
  package has an import cycle; the client runs without `fcntl` and torch.
- A fresh virtualenv with only `pip install .` (no extras) runs
  `ctgan-host --help` and `ctgan-host models` against a server.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ctgan_server import wire

REPO = Path(__file__).resolve().parent.parent

# The fingerprint of each protocol version's wire format (see wire_format()).
# When this test fails: if the change breaks what an older peer sends or
# expects, raise wire.PROTOCOL_MAX and add the new fingerprint under it;
# either way, record what was changed in wire.py's PROTOCOL_MIN/MAX comment.
WIRE_FORMATS = {
    3: "abb5698ec93a1b389aaaff18c612138b",
    # + doctor, samples as jobs, fit protect and constraints (0.3.0; changed before any release spoke 4)
    4: "5fc4433763c908c1b344031393a5261a",
}

# Modules of ctgan_host allowed to import more of ctgan_server than `wire`,
# and what: both run server code on the user's machine (README, "Install").
CLIENT_EXCEPTIONS = {
    "ctgan_host.evaluation": {"ctgan_server.report", "ctgan_server.schema", "ctgan_server.settings"},
    "ctgan_host.demo": {"ctgan_server.auth", "ctgan_server.settings"},
}


def wire_format() -> dict:
    """Everything a peer relies on, as plain data: server methods and their parameters, errors, job states, framing."""
    from ctgan_server.server import Server

    methods = {
        name[3:]: [(p.name, p.default is inspect.Parameter.empty) for p in list(inspect.signature(fn).parameters.values())[1:]]
        for name, fn in sorted(vars(Server).items())
        if name.startswith("do_") and callable(fn)
    }
    errors = {name: cls.exit_code for name, cls in sorted(wire._all_classes(wire.CtganError).items())}
    return {
        "methods": methods,
        "errors": errors,
        "states": [wire.QUEUED, wire.RUNNING, wire.DONE, wire.FAILED, wire.CANCELED],
        "frame": [wire._FRAME_HEADER.format, wire.MAX_FRAME, wire.MAX_LINE],
        "message": wire.encode(wire.error_reply(1, wire.AuthError("x"))).decode()
        + wire.encode(wire.request(2, "m", {"a": 1})).decode(),
        "limits": [wire.MAX_EPOCHS, wire.MAX_ROWS, wire.MAX_SEED, wire.MAX_HOLDOUT],
    }


def fingerprint() -> str:
    return hashlib.sha256(json.dumps(wire_format(), sort_keys=True).encode()).hexdigest()[:32]


def test_the_wire_format_is_the_one_recorded_for_this_protocol_version():
    assert wire.PROTOCOL_MIN <= wire.PROTOCOL_MAX
    assert fingerprint() == WIRE_FORMATS.get(wire.PROTOCOL_MAX), (
        f"the wire format changed (fingerprint {fingerprint()}) but PROTOCOL_MAX is still {wire.PROTOCOL_MAX}: "
        "raise it in ctgan_server/wire.py and record the fingerprint in WIRE_FORMATS"
    )


def test_the_fingerprint_sees_a_changed_method():
    """The pin must notice what it is for: a method gaining a required parameter."""
    from ctgan_server.server import Server

    before = fingerprint()
    original = Server.do_models
    try:
        Server.do_models = lambda self, filter: []
        assert fingerprint() != before
    finally:
        Server.do_models = original


def _is_module(name: str) -> bool:
    return (REPO / (name.replace(".", "/") + ".py")).is_file()


def _imports(path: Path, package: str) -> set[str]:
    """Every module of ours or not that ``path`` imports, at the top or inside a function, as absolute names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package if node.level == 1 else package.rsplit(".", node.level - 1)[0]
                module = f"{base}.{module}" if module else base
            found.add(module)
            # `from . import ui` and `from ctgan_server import wire` import modules by name
            found |= {f"{module}.{alias.name}" for alias in node.names if _is_module(f"{module}.{alias.name}")}
    return found


def _graph(package: str) -> dict[str, set[str]]:
    modules = {f"{package}.{p.stem}": p for p in (REPO / package).glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in _imports(path, package) if m in modules} for name, path in modules.items()}


def test_the_client_imports_only_wire_from_the_server_package():
    for path in sorted((REPO / "ctgan_host").glob("*.py")):
        name = f"ctgan_host.{path.stem}"
        server_modules = {m for m in _imports(path, "ctgan_host") if m.split(".")[0] == "ctgan_server"}
        # The package itself holds only the release version (and imports nothing).
        outside = server_modules - {"ctgan_server", "ctgan_server.wire"}
        assert outside <= CLIENT_EXCEPTIONS.get(name, set()), f"{name} imports {sorted(outside)}"


@pytest.mark.parametrize("package", ["ctgan_host", "ctgan_server"])
def test_no_import_cycles(package):
    graph = _graph(package)
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        for target in sorted(graph[module]):
            assert target not in trail, f"import cycle: {' -> '.join(trail[trail.index(target) :] + [target])}"
            if target not in done:
                visit(target, trail + [target])
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])
    assert len(done) == len(graph) > 5  # every module was walked


def test_wire_is_stdlib_only():
    stdlib = sys.stdlib_module_names | {"__future__"}
    imported = {m.split(".")[0] for m in _imports(REPO / "ctgan_server" / "wire.py", "ctgan_server")}
    assert imported <= stdlib, sorted(imported - stdlib)


BLOCK_FCNTL = """
import importlib.abc, sys
class NoFcntl(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ImportError("no fcntl on this platform")
sys.meta_path.insert(0, NoFcntl())
sys.modules.pop("fcntl", None)
"""


def test_the_client_loads_and_parses_without_fcntl_or_torch():
    """As on Windows, where there is no fcntl: every client module imports, and --help runs."""
    script = (
        BLOCK_FCNTL
        + """
import pkgutil, ctgan_host
for info in pkgutil.iter_modules(ctgan_host.__path__):
    if info.name not in ("evaluation", "demo", "__main__"):
        __import__(f"ctgan_host.{info.name}")
from ctgan_host.cli import main
code = main(["--help"])
heavy = sorted(m for m in ("torch", "pandas", "numpy", "ctgan", "fcntl") if m in sys.modules)
print("HEAVY", heavy)
sys.exit(code)
"""
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout and "Usage:" in done.stdout


def test_a_client_only_install_lists_models_without_ml_libraries(tmp_path, local_config):
    """`pip install .` with no extras: no torch, pandas or ctgan in the venv, and the client still works against a server."""
    # A copy of what a source install reads: setuptools writes build/ next to the sources.
    source = tmp_path / "source"
    for package in ("ctgan_host", "ctgan_server"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if installed.returncode != 0 and os.environ.get("CI") != "1" and "Could not find" in installed.stderr:
        pytest.skip(f"no package index reachable: {installed.stderr.strip().splitlines()[-1]}")
    assert installed.returncode == 0, installed.stderr
    missing = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print([m for m in ('torch', 'pandas', 'ctgan') if u.find_spec(m)])"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.stdout.strip() == "[]"
    script = env_dir / "bin" / "ctgan-host"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CTGAN_")}, "HOME": str(local_config.parent / "home")}
    env.pop("PYTHONPATH", None)
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert helped.returncode == 0 and "Usage: ctgan-host" in helped.stdout and "python -m" not in helped.stdout
    listed = subprocess.run(
        [str(script), "--config", str(local_config), "--user", "alice", "--password-stdin", "models", "--json"],
        input="alice-secret-pw\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_a_client_without_a_common_protocol_gets_one_line_naming_the_side_to_upgrade(local_config, monkeypatch, capsys):
    """In-process client (its range patched) against the real local server process (PROTOCOL_MIN-PROTOCOL_MAX)."""
    from ctgan_host import cli, session

    for low, high, side in (
        (1, wire.PROTOCOL_MIN - 1, "on the client"),
        (wire.PROTOCOL_MAX + 1, wire.PROTOCOL_MAX + 2, "on the server"),
    ):
        monkeypatch.setattr(session, "PROTOCOL_MIN", low)
        monkeypatch.setattr(session, "PROTOCOL_MAX", high)
        capsys.readouterr()
        code = cli.main(["--config", str(local_config), "--user", "alice", "models", "--json"])
        err = capsys.readouterr().err
        assert code == 7 and err.count("\n") == 1 and err.startswith("Error: ") and f"upgrade ctgan-server-cli {side}" in err
