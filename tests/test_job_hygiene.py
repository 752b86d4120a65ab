"""Jobs leave nothing behind: no secret in their environment, no data in their files, no files past their time.

Unit tests on real JobStore files in tmp_path, a subprocess for the output
filter (it rewires file descriptors, so never in the test process), and two
real fits through the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from ctgan_server.job_output import data_free_traceback
from ctgan_server.job_runner import follow
from ctgan_server.job_store import JobStore, process_start
from ctgan_server.wire import CANCELED, DONE, QUEUED, RUNNING, UsageError, minimal_env
from tests.helpers import PASSWORDS, REPO, run_cli

DAY = 86_400


def _job(store: JobStore, *events: dict) -> str:
    store.ensure()
    job = store.new_id()
    for event in events:
        store.append(job, event)
    return job


def _queued() -> dict:
    return {"event": "state", "state": QUEUED, "dataset": "x", "epochs": 5, "created_at": time.time()}


def _me() -> dict:
    """A process event for a live process: this test's own."""
    return {"event": "process", "pid": os.getpid(), "pid_start": process_start(os.getpid())}


def _done(model: str = "x_20260101t000000_model.gz") -> dict:
    return {"event": "state", "state": DONE, "model": model}


def _age(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    os.utime(path, (when, when))


def _files(store: JobStore, job: str) -> list[str]:
    return sorted(p.name for p in store.dir.iterdir() if p.name.startswith(job))


# -- delete -----------------------------------------------------------------------


def test_delete_removes_every_file_of_a_finished_job(tmp_path):
    store = JobStore(tmp_path, "alice")
    job = _job(store, _queued(), {"event": "state", "state": RUNNING}, _done())
    store.output_path(job).write_text("output")
    store.request_path(job).write_text("{}")
    other = _job(store, _queued(), {"event": "state", "state": CANCELED})
    assert store.delete(job)["state"] == DONE
    assert _files(store, job) == [] and _files(store, other) == [f"{other}.jsonl"]
    assert [j["id"] for j in store.list()] == [other]


def test_delete_refuses_a_queued_or_running_job(tmp_path):
    store = JobStore(tmp_path, "alice")
    for state in (QUEUED, RUNNING):
        job = _job(store, _queued(), _me(), {"event": "state", "state": state})
        with pytest.raises(UsageError, match="cancel it first"):
            store.delete(job)
        assert f"{job}.jsonl" in _files(store, job)


def test_delete_takes_a_job_whose_process_is_gone(tmp_path):
    # "RUNNING" in the log, but its process died: status records FAILED, and then it may go
    store = JobStore(tmp_path, "alice")
    job = _job(store, _queued(), {"event": "process", "pid": os.getpid(), "pid_start": "1"}, {"event": "state", "state": RUNNING})
    assert store.delete(job)["state"] == "FAILED"
    assert _files(store, job) == []


def test_delete_for_model_removes_only_the_job_that_made_it(tmp_path):
    store = JobStore(tmp_path, "alice")
    made_a = _job(store, _queued(), _done("a_20260101t000000_model.gz"))
    made_b = _job(store, _queued(), _done("b_20260101t000000_model.gz"))
    # names the model while saving, but failed: it made no model, so its log is not the model's
    failed = _job(
        store,
        _queued(),
        {"event": "stage", "stage": "saving", "model": "a_20260101t000000_model.gz"},
        {"event": "state", "state": "FAILED", "error": {"type": "InternalError", "message": "x"}},
    )
    store.output_path(made_a).write_text("output")
    assert store.delete_for_model("a_20260101t000000_model.gz") == [made_a]
    assert _files(store, made_a) == []
    assert {j["id"] for j in store.list()} == {made_b, failed}
    assert store.delete_for_model("no_such_model.gz") == []
    assert JobStore(tmp_path, "bob").delete_for_model("b_20260101t000000_model.gz") == []  # bob has no jobs folder


# -- retention ----------------------------------------------------------------------


def test_sweep_removes_old_finished_jobs_and_orphans_only(tmp_path):
    store = JobStore(tmp_path, "alice")
    old_done = _job(store, _queued(), _done())
    store.output_path(old_done).write_text("output")
    old_canceled = _job(store, _queued(), {"event": "state", "state": CANCELED})
    old_running = _job(store, _queued(), _me(), {"event": "state", "state": RUNNING})
    old_queued = _job(store, _queued(), _me())
    # an old RUNNING log whose process is gone: it is finished (FAILED), so it goes
    old_dead = _job(
        store, _queued(), {"event": "process", "pid": os.getpid(), "pid_start": "1"}, {"event": "state", "state": RUNNING}
    )
    recent_done = _job(store, _queued(), _done())
    orphan_old, orphan_new = store.new_id(), store.new_id()
    store.output_path(orphan_old).write_text("output")
    store.request_path(orphan_new).write_text("{}")
    stranger = store.dir / "notes.txt"
    stranger.write_text("not a job file")
    for path in store.dir.iterdir():
        if recent_done not in path.name and orphan_new not in path.name:
            _age(path, 31)
    _age(store.log_path(recent_done), 29)

    assert store.sweep(30) == 4  # old_done, old_canceled, old_dead, orphan_old
    assert not any(store.log_path(job).exists() for job in (old_done, old_canceled, old_dead))
    left = sorted(p.name for p in store.dir.iterdir())
    assert left == sorted(
        [f"{old_running}.jsonl", f"{old_queued}.jsonl", f"{recent_done}.jsonl", f"{orphan_new}.request.json", "notes.txt"]
    )
    # `now` moves the cutoff: 2 days on, the recent job is old too
    assert store.sweep(30, now=time.time() + 2 * DAY) == 1
    assert not store.log_path(recent_done).exists()


def test_sweep_without_a_jobs_folder(tmp_path):
    assert JobStore(tmp_path, "alice").sweep(30) == 0


# -- follow ---------------------------------------------------------------------------


def test_follow_stops_when_the_client_is_gone_even_for_a_queued_job(tmp_path):
    store = JobStore(tmp_path, "alice")
    job = _job(store, _queued(), _me())  # QUEUED, with a live process: nothing will ever be written
    emitted: list[dict] = []
    gone_at = time.monotonic() + 0.5
    started = time.monotonic()
    with pytest.raises(ConnectionAbortedError):
        follow(store, job, emitted.append, client_gone=lambda: time.monotonic() > gone_at)
    assert time.monotonic() - started < 1.5
    assert [e.get("state") for e in emitted] == [QUEUED]  # the events so far were passed on
    assert store.status(job)["state"] == QUEUED  # the job itself is untouched


def test_follow_returns_a_finished_job_without_asking(tmp_path):
    store = JobStore(tmp_path, "alice")
    job = _job(store, _queued(), _done())

    def never() -> bool:
        raise AssertionError("client_gone asked although the job was over")

    assert follow(store, job, lambda e: None, client_gone=never)["state"] == DONE


# -- the environment --------------------------------------------------------------


def test_minimal_env_keeps_only_the_allowlist():
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/a",
        "LANG": "C.UTF-8",
        "CUDA_VISIBLE_DEVICES": "0",
        "CTGAN_PASSWORD": "secret",
        "CTGAN_USER": "alice",
        "SSH_AUTH_SOCK": "/tmp/agent",
        "AWS_SECRET_ACCESS_KEY": "x",
        "PYTHONSTARTUP": "/tmp/evil.py",
    }
    env = minimal_env({"CTGAN_SERVER_DIR": "/srv/ctgan"}, environ)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/a",
        "LANG": "C.UTF-8",
        "CUDA_VISIBLE_DEVICES": "0",
        "CTGAN_SERVER_DIR": "/srv/ctgan",
    }
    assert "CTGAN_PASSWORD" not in minimal_env({})  # from os.environ by default


# -- the job's output file ----------------------------------------------------------


def test_data_free_traceback_has_types_and_frames_but_no_messages():
    def parse(value: str) -> None:
        raise ValueError(f"could not convert string to float: {value!r}")

    # built at run time: the source lines of the frames are shown, and must not hold the values themselves
    value, other = "Zyx" + "wvut", "Qwe" + "rtzu"
    try:
        try:
            parse(value)
        except ValueError as exc:
            raise KeyError(other) from exc
    except KeyError as exc:
        lines = data_free_traceback(exc)
    text = "\n".join(lines)
    assert "builtins.KeyError" in text and "builtins.ValueError" in text and "caused by:" in text
    assert "in parse" in text and "test_job_hygiene.py" in text
    assert "Zyxwvut" not in text and "Qwertzu" not in text


def test_the_job_output_filter_keeps_no_value(tmp_path):
    """Everything a library could say, said with a value in it; the output file gets none of the values."""
    output = tmp_path / "job.stderr"
    script = textwrap.dedent(
        """
        import logging, os, subprocess, sys, threading, warnings
        from ctgan_server.job_output import keep_output_data_free
        sink = keep_output_data_free()
        warnings.warn("category Zyxwvut is rare")
        logging.getLogger("rdt.transformers").warning("column has value %s", "Zyxwvut")
        print("row: Zyxwvut")
        sys.stderr.write("Zyxwvut\\n")
        os.write(1, b"fd1 Zyxwvut\\n")
        os.write(2, b"fd2 Zyxwvut\\n")
        subprocess.run([sys.executable, "-c", "import sys; print('child Zyxwvut', file=sys.stderr)"])
        def worker():
            raise ValueError("bad cell Zyxwvut")
        thread = threading.Thread(target=worker, name="loader")
        thread.start()
        thread.join()
        class Frame:
            def __del__(self):
                raise RuntimeError("Zyxwvut in __del__")
        Frame()
        raise ValueError("could not convert string to float: 'Zyxwvut'")
        """
    )
    with open(output, "wb") as fh:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            stdout=fh,
            stderr=fh,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=60,
        )
    text = output.read_text()
    assert proc.returncode == 1
    assert "Zyxwvut" not in text
    assert "warning builtins.UserWarning at <string>:" in text
    assert "log WARNING rdt.transformers at <string>:" in text
    assert "uncaught exception in thread loader" in text
    assert "ignored exception (unraisable)" in text and "builtins.RuntimeError" in text
    assert "uncaught exception:\nbuiltins.ValueError" in text


# -- real jobs ------------------------------------------------------------------------


def _events(server_dir: Path, job: str) -> list[dict]:
    path = server_dir / "jobs" / "alice" / f"{job}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _by_env(config: Path, *args: str):
    # the password in the environment, as a script would pass it
    return run_cli(config, "--user", "alice", *args, env={"CTGAN_PASSWORD": PASSWORDS["alice"]})


def test_a_job_process_does_not_inherit_the_password(local_config, tiny_csv, server_dir):
    started = _by_env(local_config, "fit", str(tiny_csv), "--epochs", "50", "--detach", "--json")
    assert started.code == 0, started.err
    job = json.loads(started.out)["job"]
    pid = next(e["pid"] for e in _events(server_dir, job) if e.get("event") == "process")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    assert "CTGAN_SERVER_DIR" in names and "PATH" in names
    assert not any(name.startswith("CTGAN_") and name != "CTGAN_SERVER_DIR" for name in names), names
    assert PASSWORDS["alice"].encode() not in b"\0".join(environ)

    canceled = _by_env(local_config, "jobs", "cancel", job)
    # 50 epochs of 60 rows may just have finished: then cancel says so, and that is fine here
    assert canceled.code == 0 or "already DONE" in canceled.err, canceled.err
    assert _events(server_dir, job)[-1]["state"] in (CANCELED, DONE)


def test_no_category_value_is_left_in_the_job_files(local_config, tmp_path, server_dir):
    csv = tmp_path / "distinct.csv"
    n = 80
    pd.DataFrame(
        {
            "code": ["Zyxwvut" if i % 3 else "Qwertzu" for i in range(n)],
            "amount": [round(10 + i * 1.7, 2) for i in range(n)],
            "count": [i % 7 for i in range(n)],
        }
    ).to_csv(csv, index=False)
    fitted = _by_env(local_config, "fit", str(csv), "--epochs", "2", "--json")
    assert fitted.code == 0, fitted.err
    leaks = {}
    for path in (server_dir / "jobs").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            found = [value for value in ("Zyxwvut", "Qwertzu") if value in text]
            if found:
                # which events carry them, to say so in the failure
                kinds = sorted(
                    {
                        json.loads(line).get("event", "?")
                        for line in text.splitlines()
                        if any(v in line for v in found) and line.startswith("{")
                    }
                )
                leaks[str(path.relative_to(server_dir))] = kinds or found
    assert not leaks, f"category values left in job files: {leaks}"


def test_a_failed_fit_keeps_no_value_in_its_log(local_config, tmp_path, server_dir):
    """The error a job ends with is stored in its log: it names rows and columns, never the cell."""
    csv = tmp_path / "bad kinds.csv"
    pd.DataFrame({"code": ["Zyxwvut", "12", "Qwertzu"] * 20, "amount": [1.5, 2.5, 3.5] * 20}).to_csv(csv, index=False)
    failed = _by_env(local_config, "fit", str(csv), "--epochs", "1", "--continuous", "code")
    assert failed.code == 5 and "data row 1 is not a number" in failed.err, failed.err
    for path in (server_dir / "jobs").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "Zyxwvut" not in text and "Qwertzu" not in text, path


def test_jobs_delete_and_models_delete_remove_the_logs_through_the_cli(local_config, tiny_csv, server_dir):
    first = _by_env(local_config, "fit", str(tiny_csv), "--epochs", "1", "--json")
    second = _by_env(local_config, "fit", str(tiny_csv), "--epochs", "1", "--json")
    assert first.code == second.code == 0, first.err + second.err
    jobs = json.loads(_by_env(local_config, "jobs", "--json").out)
    by_model = {job["model"]: job["id"] for job in jobs}
    model_a, model_b = json.loads(first.out)["model"], json.loads(second.out)["model"]

    deleted = _by_env(local_config, "jobs", "delete", by_model[model_a], "--yes")
    assert deleted.code == 0, deleted.err
    assert not list((server_dir / "jobs" / "alice").glob(f"{by_model[model_a]}*"))
    assert _by_env(local_config, "jobs", "delete", by_model[model_a], "--yes").code == 4
    assert (server_dir / "model_database" / "alice" / model_a).is_file()  # the model stays

    assert _by_env(local_config, "models", "delete", model_b, "--yes").code == 0
    assert not list((server_dir / "jobs" / "alice").glob(f"{by_model[model_b]}*"))
    assert json.loads(_by_env(local_config, "jobs", "--json").out) == []
    audit = (server_dir / "audit" / "alice.log").read_text()
    assert f"delete local job={by_model[model_a]}" in audit and f"delete local model={model_b}" in audit


def test_the_login_sweep_keeps_the_upload_of_a_job_still_waiting_however_old(tmp_path):
    """A job can wait hours (PENDING under Slurm): its staged upload stays; a dead job's and an unclaimed one go."""
    from ctgan_server.storage import UserStorage

    store, storage = JobStore(tmp_path, "alice"), UserStorage(tmp_path, "alice")
    dead = {"event": "process", "pid": os.getpid(), "pid_start": "1"}  # a start time this pid never had
    staged = {}
    for name, process in (("waiting", _me()), ("dead", dead), ("unclaimed", None)):
        token = os.urandom(16).hex()
        staged[name] = storage.staged_path(token)
        staged[name].write_bytes(b"sealed bytes")
        _age(staged[name], 1)
        if process is not None:
            job = _job(store, _queued(), process)
            store.request_path(job).write_text(json.dumps({"token": token}))
    storage.sweep_leftovers(keep=store.waiting_uploads())
    assert [name for name, path in staged.items() if path.exists()] == ["waiting"]
