"""Unit: where the config comes from, what it may hold, and how remote paths are quoted."""

from __future__ import annotations

import pytest

from ctgan_host.config import load_config
from ctgan_host.transport import quote_remote_path, remote_command
from ctgan_server.wire import ConfigError


def test_precedence_flag_then_env_then_cwd(tmp_path, monkeypatch):
    for name in ("flag", "env", "cwd"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.toml").write_text(f'[server]\nhost = "{name}.example"\n')
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("CTGAN_HOST_CONFIG", raising=False)
    assert load_config().server.host == "cwd.example"
    monkeypatch.setenv("CTGAN_HOST_CONFIG", str(tmp_path / "env" / "config.toml"))
    assert load_config().server.host == "env.example"
    assert load_config(tmp_path / "flag" / "config.toml").server.host == "flag.example"


def test_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text('[server]\nhost = "local"\n[paths]\nsynthetic_output = "out"\n')
    monkeypatch.chdir("/")
    config = load_config(tmp_path / "config.toml")
    assert config.synthetic_output == tmp_path / "out"
    assert config.original_data == tmp_path / "ctgan_host_original_data"
    assert config.server.server_dir == str(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[server]\nprot = 22\n", "unknown key"),
        ("[server]\nport = '22'\n", "wrong type"),
        ("[server\n", "config.toml"),
        ("server = 3\n", "must be a table"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, message):
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "config.toml")


def test_missing_explicit_config(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_remote_paths_are_quoted_but_tilde_expands():
    assert quote_remote_path("~") == "~"
    assert quote_remote_path("~/my dir") == "~/'my dir'"
    assert quote_remote_path("/srv/a;rm -rf /") == "'/srv/a;rm -rf /'"
    from ctgan_host.config import ServerConfig

    cmd = remote_command(ServerConfig(host="h", server_dir="~/ctgan server", python="/opt/py env/bin/python"))
    assert cmd == "cd ~/'ctgan server' && exec '/opt/py env/bin/python' -m ctgan_server serve"
