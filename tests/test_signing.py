"""Signed model files: planted, altered or moved models are refused before anything is unpickled."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ctgan_server import signing
from ctgan_server.settings import load_settings
from ctgan_server.wire import BadDataError, ServerEnvironmentError
from tests.helpers import REPO, as_user, run_cli

PLANTED = "x_20260101t000000_model.gz"


class Evil:
    """Unpickling this runs a shell command: what a planted model would do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(Evil(f"touch {marker}"), protocol=2)


@pytest.fixture(scope="module")
def fitted_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fitted")


@pytest.fixture
def alice_model(server_dir: Path, local_config: Path, tiny_csv: Path, fitted_cache: Path) -> str:
    """One real 1-epoch model of alice's, fitted once per module and copied (with its key) into each server."""
    models = server_dir / "model_database" / "alice"
    if not list(fitted_cache.iterdir()):
        opts, stdin = as_user("alice")
        fitted = run_cli(local_config, *opts, "fit", str(tiny_csv), "--epochs", "1", "--json", input=stdin)
        assert fitted.code == 0, fitted.err
        shutil.copy2(server_dir / signing.KEY_FILE, fitted_cache / signing.KEY_FILE)
        shutil.copytree(models, fitted_cache / "alice")
        return json.loads(fitted.out)["model"]
    for path in (server_dir / "model_database", models):
        path.mkdir(mode=0o700, exist_ok=True)
    shutil.copy2(fitted_cache / signing.KEY_FILE, server_dir / signing.KEY_FILE)
    for path in (fitted_cache / "alice").iterdir():
        shutil.copy2(path, models / path.name)
    return next(p.name for p in models.glob("*_model.gz"))


def sample(config: Path, model: str, user: str = "alice"):
    opts, stdin = as_user(user)
    return run_cli(config, *opts, "sample", model, "--rows", "5", "--out", str(config.parent / "out"), input=stdin)


def one_error_line(result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    return lines[0]


def key_of(server_dir: Path) -> bytes:
    return signing.server_key(load_settings(server_dir))


def test_fitted_model_is_signed_and_samples(alice_model, server_dir, local_config):
    key_file = server_dir / signing.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_bytes()) == 32
    content = (server_dir / "model_database" / "alice" / alice_model).read_bytes()
    assert content.startswith(signing.MAGIC)
    payload = signing.verify(key_of(server_dir), "alice", alice_model, content)
    assert payload[:2] == b"\x1f\x8b" and signing.scan_pickle(payload) == []
    assert sample(local_config, alice_model).code == 0


def test_planted_pickle_is_refused_and_never_runs(alice_model, server_dir, local_config, tmp_path):
    marker = tmp_path / "MARKER"
    models = server_dir / "model_database" / "alice"
    (models / PLANTED).write_bytes(gzip.compress(evil_pickle(marker)))
    shutil.copy2(models / alice_model.replace(".gz", ".json"), models / PLANTED.replace(".gz", ".json"))

    result = sample(local_config, PLANTED)
    assert result.code == BadDataError.exit_code
    assert one_error_line(result).startswith(f"Error: model {PLANTED} is not signed by this server")
    assert "models sign --all" in result.err
    assert not marker.exists()
    # The planted file is live: loaded the old way, it would have run its command.
    pickle.loads(gzip.decompress((models / PLANTED).read_bytes()))
    assert marker.exists()


def test_altered_models_are_refused_before_unpickling(alice_model, server_dir, local_config, tmp_path):
    models = server_dir / "model_database" / "alice"
    good = (models / alice_model).read_bytes()
    header = len(signing.MAGIC) + signing.TAG_BYTES

    # One byte of the gzip payload flipped: the signature, not gzip's CRC, refuses it.
    flipped = bytearray(good)
    flipped[header + len(good[header:]) // 2] ^= 0x01
    (models / alice_model).write_bytes(bytes(flipped))
    result = sample(local_config, alice_model)
    assert result.code == BadDataError.exit_code
    assert "signature does not match" in one_error_line(result)

    # A signed pickle whose tag has one bit flipped is not unpickled.
    marker = tmp_path / "MARKER"
    signed = bytearray(signing.sign(key_of(server_dir), "alice", PLANTED, gzip.compress(evil_pickle(marker))))
    signed[len(signing.MAGIC)] ^= 0x01
    (models / PLANTED).write_bytes(bytes(signed))
    shutil.copy2(models / alice_model.replace(".gz", ".json"), models / PLANTED.replace(".gz", ".json"))
    result = sample(local_config, PLANTED)
    assert result.code == BadDataError.exit_code and "signature does not match" in one_error_line(result)
    assert not marker.exists()


def test_model_copied_to_another_user_is_refused(alice_model, server_dir, local_config):
    alice, bob = (server_dir / "model_database" / user for user in ("alice", "bob"))
    bob.mkdir(mode=0o700)
    for suffix in (".gz", ".json"):
        name = alice_model.replace(".gz", suffix)
        shutil.copy2(alice / name, bob / name)
    result = sample(local_config, alice_model, user="bob")
    assert result.code == BadDataError.exit_code
    assert "signature does not match" in one_error_line(result)


def test_verify_binds_key_user_name_and_payload():
    key, other_key = b"k" * 32, b"o" * 32
    content = signing.sign(key, "alice", "m_20260101t000000_model.gz", b"\x1f\x8bpayload")
    assert signing.verify(key, "alice", "m_20260101t000000_model.gz", content) == b"\x1f\x8bpayload"
    for args in (
        (other_key, "alice", "m_20260101t000000_model.gz", content),
        (key, "bob", "m_20260101t000000_model.gz", content),
        (key, "alice", "n_20260101t000000_model.gz", content),
        (key, "alice", "m_20260101t000000_model.gz", content + b"x"),
        (key, "alice", "m_20260101t000000_model.gz", content[: len(signing.MAGIC) + 10]),
        # the user/name boundary is part of what is signed
        (key, "alic", "em_20260101t000000_model.gz", content),
    ):
        with pytest.raises(BadDataError, match="signature does not match"):
            signing.verify(*args)
    with pytest.raises(BadDataError, match="not signed by this server"):
        signing.verify(key, "alice", "m_20260101t000000_model.gz", content[len(signing.MAGIC) :])


def test_sign_all_adopts_clean_old_models_and_refuses_the_rest(alice_model, server_dir, local_config, tmp_path, capsys):
    settings = load_settings(server_dir)
    models = server_dir / "model_database" / "alice"
    signed_content = (models / alice_model).read_bytes()
    payload = signed_content[len(signing.MAGIC) + signing.TAG_BYTES :]
    # A model from before signing: the same gzip, without magic and tag.
    (models / alice_model).write_bytes(payload)
    with pytest.raises(BadDataError, match="not signed"):
        signing.verify(key_of(server_dir), "alice", alice_model, payload)
    planted = gzip.compress(evil_pickle(tmp_path / "MARKER"))
    (models / PLANTED).write_bytes(planted)
    # A signed file that no longer verifies is reported, never re-signed.
    renamed = "y_20260101t000000_model.gz"
    (models / renamed).write_bytes(signed_content)

    signed, refused = signing.sign_all(settings)
    assert signed == [f"alice/{alice_model}"]
    reasons = dict(refused)
    assert set(reasons) == {f"alice/{PLANTED}", f"alice/{renamed}"}
    assert "posix.system" in reasons[f"alice/{PLANTED}"] or "os.system" in reasons[f"alice/{PLANTED}"]
    assert "signature does not match" in reasons[f"alice/{renamed}"]
    assert (models / PLANTED).read_bytes() == planted and (models / renamed).read_bytes() == signed_content
    assert stat.S_IMODE((models / alice_model).stat().st_mode) == 0o600

    # Adopted, it samples again; a second run signs nothing and still refuses.
    assert sample(local_config, alice_model).code == 0
    assert signing.sign_all_command(settings) == 1
    err = capsys.readouterr().err
    assert f"refused alice/{PLANTED}: forbidden:" in err and "system" in err
    assert "0 model(s) signed, 2 refused" in err
    assert not (tmp_path / "MARKER").exists()
    (models / PLANTED).unlink()
    (models / renamed).unlink()
    assert signing.sign_all_command(settings) == 0


def _with_data_pkl(archive: bytes, data: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    """A copy of a torch zip archive with its data.pkl replaced (and members added)."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, data if info.filename.endswith("/data.pkl") else source.read(info))
        for name, content in (extra or {}).items():
            target.writestr(name, content)
    return out.getvalue()


def test_scan_pickle_finds_what_unpickling_would_import(alice_model, server_dir, tmp_path):
    content = (server_dir / "model_database" / "alice" / alice_model).read_bytes()
    archive = gzip.decompress(content[len(signing.MAGIC) + signing.TAG_BYTES :])
    evil = evil_pickle(tmp_path / "MARKER")

    def scan(raw: bytes) -> list[str]:
        return signing.scan_pickle(gzip.compress(raw))

    assert scan(archive) == []
    assert "posix.system" in scan(_with_data_pkl(archive, evil))
    # torch.load treats an archive holding constants.pkl as TorchScript.
    assert scan(_with_data_pkl(archive, pickle.dumps(1), {"archive/constants.pkl": pickle.dumps(1)}))
    # A pickle in front of a zip: torch unpickles it, a zip reader sees only the archive.
    assert "posix.system" in scan(evil + archive)
    # Concatenated archives: readers may disagree on which members count.
    assert "<data before the zip archive>" in scan(archive + archive)
    # STACK_GLOBAL names fetched from the memo are followed...
    via_memo = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x01x\x85R."
    assert scan(via_memo) == ["<not a torch zip archive>", "posix.system"]
    # ...a dotted name walks attributes from an allowed module to a forbidden one...
    dotted = b"\x80\x04\x8c\x0ctorch._utils\x8c\tos.system\x93\x8c\x01x\x85R."
    assert scan(dotted) == ["<not a torch zip archive>", "torch._utils.os.system"]
    # ...and names that cannot be told are refused.
    unknown = b"\x80\x04\x8c\x05torch\x94\x8c\x05zeros\x94h\x07h\x01\x93K\x03\x85R."
    assert "<a STACK_GLOBAL whose names cannot be told>" in scan(unknown)
    clean = b"\x80\x04\x8c\x05torch\x94\x8c\x05zeros\x94h\x00h\x01\x93K\x03\x85R."
    assert scan(clean) == ["<not a torch zip archive>"]
    # Outside the allowed packages and stdlib entries, nothing is admitted...
    assert scan(b"\x80\x02ctempfile\nmkdtemp\nq\x00.") == ["<not a torch zip archive>", "tempfile.mkdtemp"]
    # ...and allowed packages do not admit their loaders.
    assert scan(b"\x80\x02cnumpy\nload\nq\x00.") == ["<not a torch zip archive>", "numpy.load"]
    assert signing.scan_pickle(b"not gzip")[0].startswith("<not gzip")


def test_server_key_is_created_once_under_a_race(tmp_path):
    code = (
        "import sys; from pathlib import Path; from types import SimpleNamespace as S;"
        "from ctgan_server.signing import server_key; print(server_key(S(data_dir=Path(sys.argv[1]))).hex())"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(6)
    ]
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(keys) == 1 and len(keys.pop()) == 64
    key_file = tmp_path / signing.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [signing.KEY_FILE]  # no temporary files left
    key_file.chmod(0o644)
    with pytest.raises(ServerEnvironmentError, match="open to other users"):
        signing.server_key(load_settings(tmp_path))
