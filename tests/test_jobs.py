"""Fits as jobs: they outlive the client, queue first in first out, cancel cleanly, and die visibly.

Real job processes on a real server checkout, through the CLI; a few over real sshd.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctgan_server.job_store import JobStore, process_start
from tests.helpers import REPO, as_user, run_cli, wait_until

LONG = "10000"  # epochs: a job that runs until it is stopped


def _events(server_dir: Path, user: str, job: str) -> list[dict]:
    path = server_dir / "jobs" / user / f"{job}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _states(server_dir: Path, user: str, job: str) -> list[str]:
    return [e["state"] for e in _events(server_dir, user, job) if e.get("event") == "state"]


def _epochs_done(server_dir: Path, user: str, job: str) -> int:
    return sum(1 for e in _events(server_dir, user, job) if e.get("event") == "epoch")


def _pid(server_dir: Path, user: str, job: str) -> int:
    return next(e["pid"] for e in _events(server_dir, user, job) if e.get("event") == "process")


def _detach(config: Path, csv: Path, user: str = "alice", epochs: str = LONG) -> str:
    opts, stdin = as_user(user)
    result = run_cli(config, *opts, "fit", str(csv), "--epochs", epochs, "--detach", "--json", input=stdin)
    assert result.code == 0, result.err
    return json.loads(result.out)["job"]


def _jobs(config: Path, user: str = "alice") -> dict[str, dict]:
    opts, stdin = as_user(user)
    result = run_cli(config, *opts, "jobs", "--json", input=stdin)
    assert result.code == 0, result.err
    return {j["id"]: j for j in json.loads(result.out)}


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _no_model_left(server_dir: Path, user: str = "alice") -> bool:
    """No model, no metadata and no half-written temporary file."""
    models = server_dir / "model_database" / user
    return not models.exists() or not any(models.iterdir())


@pytest.fixture
def one_slot(server_dir: Path) -> Path:
    with open(server_dir / "config.toml", "a") as fh:
        fh.write("max_running_jobs = 1\n")
    return server_dir


@pytest.fixture
def wide_csv(tmp_path: Path) -> Path:
    """600 rows: enough for ctgan to fan its transforms out to joblib worker processes."""
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y"], n)})
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("transport", ["local", "ssh"])
def test_killing_the_client_mid_fit_leaves_the_job_running(request, transport, tiny_csv, server_dir):
    local_config = request.getfixturevalue("local_config" if transport == "local" else "ssh_config")
    opts, stdin = as_user("alice")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(local_config.parent / "home")}
    client = subprocess.Popen(
        [sys.executable, "-m", "ctgan_host", "--config", str(local_config), *opts, "fit", str(tiny_csv), "--epochs", "400"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    client.stdin.write(stdin)
    client.stdin.flush()
    jobs_dir = server_dir / "jobs" / "alice"
    job = wait_until(lambda: jobs_dir.exists() and [p.stem for p in jobs_dir.glob("*.jsonl")], what="the job")[0]
    wait_until(lambda: _epochs_done(server_dir, "alice", job) >= 3, what="training")
    client.kill()
    client.communicate()

    followed = run_cli(local_config, *opts, "jobs", "follow", job, input=stdin)
    assert followed.code == 0, followed.err
    assert "DONE" in followed.out and "epoch 400/400" in followed.err
    assert _states(server_dir, "alice", job)[-1] == "DONE"
    listed = _jobs(local_config)[job]
    assert listed["state"] == "DONE" and listed["epoch"] == 400 and listed["model"].endswith("_model.gz")


def test_cancel_a_running_job_stops_it_and_its_workers(local_config, wide_csv, server_dir):
    job = _detach(local_config, wide_csv)
    wait_until(lambda: _epochs_done(server_dir, "alice", job) >= 1, what="training")
    pid = _pid(server_dir, "alice", job)
    opts, stdin = as_user("alice")
    started = time.monotonic()
    canceled = run_cli(local_config, *opts, "jobs", "cancel", job, input=stdin)
    assert canceled.code == 0, canceled.err
    assert time.monotonic() - started < 15  # 10 s to stop, plus a CLI start and login
    assert "CANCELED" in canceled.out
    assert wait_until(lambda: not _group_members(pid), timeout=5, what="the job's processes to go")
    assert _no_model_left(server_dir)
    # nor joblib's shared-memory folders and semaphores, named after the job's PID
    shm = Path("/dev/shm")
    assert not [p.name for p in shm.glob(f"joblib_memmapping_folder_{pid}_*")] + [p.name for p in shm.glob(f"sem.loky-{pid}-*")]
    followed = run_cli(local_config, *opts, "jobs", "follow", job, input=stdin)
    assert followed.code == 12 and "was canceled" in followed.err
    again = run_cli(local_config, *opts, "jobs", "cancel", job, input=stdin)
    assert again.code == 2 and "already CANCELED" in again.err


def test_queue_is_first_in_first_out_and_queued_jobs_cancel(local_config, tiny_csv, one_slot):
    server_dir = one_slot
    first = _detach(local_config, tiny_csv)
    wait_until(lambda: "RUNNING" in _states(server_dir, "alice", first), what="the first job to run")
    second = _detach(local_config, tiny_csv, epochs="2")
    dropped = _detach(local_config, tiny_csv, epochs="2")
    third = _detach(local_config, tiny_csv, epochs="2")
    # each queued job already holds its data: the staging folder is empty
    wait_until(lambda: not any((server_dir / "original_data" / "alice").iterdir()), what="uploads to be loaded")
    jobs = _jobs(local_config)
    assert [jobs[j]["state"] for j in (first, second, dropped, third)] == ["RUNNING", "QUEUED", "QUEUED", "QUEUED"]

    opts, stdin = as_user("alice")
    assert run_cli(local_config, *opts, "jobs", "cancel", dropped, input=stdin).code == 0
    assert run_cli(local_config, *opts, "jobs", "cancel", first, input=stdin).code == 0
    assert run_cli(local_config, *opts, "jobs", "follow", third, input=stdin).code == 0
    jobs = _jobs(local_config)
    assert [jobs[j]["state"] for j in (first, second, dropped, third)] == ["CANCELED", "DONE", "CANCELED", "DONE"]

    def running_at(job: str) -> str:
        return next(e["time"] for e in _events(server_dir, "alice", job) if e.get("state") == "RUNNING")

    assert running_at(second) <= running_at(third)
    assert "RUNNING" not in _states(server_dir, "alice", dropped)


def test_a_killed_job_shows_failed_and_leaves_no_model(local_config, tiny_csv, server_dir):
    job = _detach(local_config, tiny_csv)
    wait_until(lambda: _epochs_done(server_dir, "alice", job) >= 2, what="training")
    os.kill(_pid(server_dir, "alice", job), signal.SIGKILL)
    listed = wait_until(lambda: (j := _jobs(local_config)[job])["state"] != "RUNNING" and j, timeout=10, what="FAILED")
    assert listed["state"] == "FAILED" and "process is gone" in listed["error"]["message"]
    assert _no_model_left(server_dir)
    opts, stdin = as_user("alice")
    followed = run_cli(local_config, *opts, "jobs", "follow", job, input=stdin)
    # follow replays the job's events, then ends with its error
    assert followed.code == 11 and followed.err.splitlines()[-1].startswith("Error: the job's process is gone")


def test_two_users_jobs_run_together_and_stay_apart(local_config, tiny_csv, server_dir):
    with open(server_dir / "config.toml", "a") as fh:
        fh.write("max_running_jobs = 2\n")
    alices = _detach(local_config, tiny_csv, "alice", epochs="3")
    bobs = _detach(local_config, tiny_csv, "bob", epochs="3")
    assert list(_jobs(local_config, "alice")) == [alices]
    assert list(_jobs(local_config, "bob")) == [bobs]
    opts, stdin = as_user("alice")
    for verb in ("follow", "cancel", "logs"):
        stolen = run_cli(local_config, *opts, "jobs", verb, bobs, input=stdin)
        assert stolen.code == 4 and stolen.err.startswith("Error: no job"), verb
    assert run_cli(local_config, *opts, "jobs", "follow", alices, input=stdin).code == 0
    bob_opts, bob_stdin = as_user("bob")
    assert run_cli(local_config, *bob_opts, "jobs", "follow", bobs, input=bob_stdin).code == 0
    logs = run_cli(local_config, *opts, "jobs", "logs", alices, input=stdin)
    assert logs.code == 0 and '"state": "DONE"' in logs.out
    assert (server_dir / "jobs" / "alice").stat().st_mode & 0o777 == 0o700


def test_a_bad_job_id_is_one_line(local_config):
    opts, stdin = as_user("alice")
    result = run_cli(local_config, *opts, "jobs", "follow", "../bob/x", input=stdin)
    assert result.code == 2 and result.err.count("\n") == 1 and "invalid job id" in result.err


def test_jobs_over_ssh_detach_follow_and_cancel(ssh_config, tiny_csv, server_dir):
    job = _detach(ssh_config, tiny_csv, epochs="3")
    opts, stdin = as_user("alice")
    followed = run_cli(ssh_config, *opts, "jobs", "follow", job, input=stdin)
    assert followed.code == 0, followed.err
    long_job = _detach(ssh_config, tiny_csv)
    wait_until(lambda: _epochs_done(server_dir, "alice", long_job) >= 1, what="training")
    canceled = run_cli(ssh_config, *opts, "jobs", "cancel", long_job, input=stdin)
    assert canceled.code == 0 and "CANCELED" in canceled.out
    states = {j: s["state"] for j, s in _jobs(ssh_config).items()}
    assert states == {job: "DONE", long_job: "CANCELED"}


def _fake_job(server_dir: Path, events: list[dict]) -> tuple[JobStore, str]:
    store = JobStore(server_dir, "alice")
    store.ensure()
    job = store.new_id()
    for event in events:
        store.append(job, event)
    return store, job


def test_a_reused_pid_does_not_keep_a_dead_job_running(server_dir):
    # our own PID is alive, but with another start time it is some other process
    store, job = _fake_job(
        server_dir,
        [
            {"event": "state", "state": "QUEUED", "dataset": "x", "epochs": 5, "created_at": time.time()},
            {"event": "process", "pid": os.getpid(), "pid_start": "1"},
            {"event": "state", "state": "RUNNING"},
        ],
    )
    assert store.status(job)["state"] == "FAILED"
    alive_store, alive_job = _fake_job(
        server_dir,
        [
            {"event": "state", "state": "QUEUED", "created_at": time.time()},
            {"event": "process", "pid": os.getpid(), "pid_start": process_start(os.getpid())},
        ],
    )
    assert alive_store.status(alive_job)["state"] == "QUEUED"


def test_a_job_killed_while_saving_leaves_no_half_written_model(server_dir):
    models = server_dir / "model_database" / "alice"
    models.mkdir(parents=True)
    (models / ".x_20261125t000000_model.gz.tmp").write_bytes(b"half")
    (models / "x_20261125t000000_model.json").write_text("{}")
    staging = server_dir / "original_data" / "alice"
    staging.mkdir(parents=True)
    store, job = _fake_job(
        server_dir,
        [
            {"event": "state", "state": "QUEUED", "created_at": time.time() - 100},
            {"event": "state", "state": "RUNNING"},
            {"event": "stage", "stage": "saving", "model": "x_20261125t000000_model.gz"},
        ],
    )
    listed = store.list()
    assert [j["state"] for j in listed] == ["FAILED"]
    assert list(models.iterdir()) == []


def test_ctrl_c_while_following_detaches_and_says_how_to_reattach(local_config, tiny_csv, server_dir):
    opts, stdin = as_user("alice")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(local_config.parent / "home")}
    # A group of its own, like a terminal's foreground job: Ctrl-C reaches the client and its local server alike.
    # SIGINT back to its default first: a suite started in the background by a
    # shell without job control inherits it ignored, and so would the client.
    client = subprocess.Popen(
        [sys.executable, "-m", "ctgan_host", "--config", str(local_config), *opts, "fit", str(tiny_csv), "--epochs", LONG],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    client.stdin.write(stdin)
    client.stdin.flush()
    jobs_dir = server_dir / "jobs" / "alice"
    job = wait_until(lambda: jobs_dir.exists() and [p.stem for p in jobs_dir.glob("*.jsonl")], what="the job")[0]
    wait_until(lambda: _epochs_done(server_dir, "alice", job) >= 2, what="training")
    os.killpg(client.pid, signal.SIGINT)
    _, err = client.communicate(timeout=30)
    assert client.returncode == 130
    assert f"jobs follow {job}" in err.splitlines()[-1] and "Traceback" not in err
    done = _epochs_done(server_dir, "alice", job)
    wait_until(lambda: _epochs_done(server_dir, "alice", job) > done + 2, what="the job to go on training")
    assert _jobs(local_config)[job]["state"] == "RUNNING"
    assert run_cli(local_config, *opts, "jobs", "cancel", job, input=stdin).code == 0
