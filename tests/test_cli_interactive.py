"""The original tool's prompts, answered on a real pseudo-terminal."""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time

from tests.helpers import PASSWORDS, REPO


class Terminal:
    """A child process on a pty: wait for text, type answers."""

    def __init__(self, argv: list[str], cwd, env_home):
        self.master, slave = os.openpty()
        env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(env_home), "COLUMNS": "200", "TERM": "xterm"}
        for key in ("CTGAN_USER", "CTGAN_PASSWORD", "CTGAN_HOST_CONFIG"):
            env.pop(key, None)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while text not in self.seen:
            left = deadline - time.time()
            assert left > 0, f"never saw {text!r}; screen so far:\n{self.seen}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536).decode("utf-8", "replace")
                except OSError:
                    chunk = ""
                assert chunk or self.proc.poll() is None, f"exited before {text!r}:\n{self.seen}"
                self.seen += chunk
        self.seen = self.seen[self.seen.index(text) + len(text) :]

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def finish(self) -> str:
        rest = self.seen
        while True:
            ready, _, _ = select.select([self.master], [], [], 60)
            try:
                chunk = os.read(self.master, 65536).decode("utf-8", "replace") if ready else ""
            except OSError:
                chunk = ""
            if not chunk:
                break
            rest += chunk
        assert self.proc.wait(timeout=60) == 0, rest
        os.close(self.master)
        return rest


def _cli(config, *args):
    return [sys.executable, "-m", "ctgan_host", "--config", str(config), *args]


def test_prompts_of_fit_sample_and_download(local_config, tiny_csv):
    originals = local_config.parent / "originals"
    originals.mkdir()
    shutil.copy(tiny_csv, originals / "tiny.csv")
    home = local_config.parent / "home"

    fit = Terminal(_cli(local_config, "fit"), local_config.parent, home)
    fit.expect("tiny.csv")  # the folder's CSVs are listed before the question
    fit.expect("Please enter original data filename: ")
    fit.send("tiny.csv")
    fit.expect("Please enter your username: ")
    fit.send("alice")
    fit.expect("Please enter your password: ")
    fit.send(PASSWORDS["alice"])
    fit.expect("Please choose number of epochs for fitting: ")
    fit.send("1")
    fit.expect("[y/N]: ")
    fit.send("y")
    model = re.search(r"tiny_\d{8}t\d{6}_model\.gz", fit.finish()).group(0)
    assert PASSWORDS["alice"] not in fit.seen  # the password prompt does not echo

    sample = Terminal(_cli(local_config, "--user", "alice", "sample"), local_config.parent, home)
    sample.expect("Please enter your password: ")
    sample.send(PASSWORDS["alice"])
    sample.expect(model)  # the user's models are listed first
    sample.expect("Please enter model to load: ")
    sample.send(model)
    sample.expect("Please enter sampling size: ")
    sample.send("7")
    sample.finish()
    [written] = list((local_config.parent / "synthetic").iterdir())

    download = Terminal(
        _cli(local_config, "--user", "alice", "download", "--out", str(local_config.parent / "dl")), local_config.parent, home
    )
    download.expect("Please enter your password: ")
    download.send(PASSWORDS["alice"])
    download.expect(written.name + ".gz")
    download.expect("Please enter synthetic data to download: ")
    download.send(written.name + ".gz")
    download.finish()
    assert (local_config.parent / "dl" / written.name).read_bytes() == written.read_bytes()


def test_declining_the_confirmation_uploads_nothing(local_config, tiny_csv, server_dir):
    term = Terminal(
        _cli(local_config, "--user", "bob", "fit", str(tiny_csv), "--epochs", "1"),
        local_config.parent,
        local_config.parent / "home",
    )
    term.expect("Please enter your password: ")
    term.send(PASSWORDS["bob"])
    term.expect("[y/N]: ")
    term.send("n")
    term.expect("Aborted")
    assert term.proc.wait(timeout=30) == 1
    for folder in ("model_database", "original_data"):
        assert not (server_dir / folder).exists() or not [p for p in (server_dir / folder).rglob("*") if p.is_file()]
