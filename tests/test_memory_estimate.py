"""The memory a fit needs, estimated before it trains: against a real fit's peak, and the refusal when it cannot fit.

The first test is the one that matters: a real CPU fit in a fresh
interpreter, whose peak resident memory is compared with the estimate it
logged.  The others pin the parts the estimate is built from (CTGAN's real
networks, the cgroup files Slurm and containers limit memory with) and the
refusal, where the available memory is faked.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest

from ctgan_server import memory_estimate
from ctgan_server.memory_estimate import (
    Estimate,
    Shape,
    cgroup_headroom,
    cpu_available,
    estimate_memory,
    meminfo_available,
    memory_pools,
    network_parameters,
    refusal,
)
from ctgan_server.wire import CtganError, LimitError
from tests.helpers import REPO

MiB, GiB = 1 << 20, 1 << 30

# A real fit, measured from inside its own process.  The baseline is taken
# once everything is imported (sklearn.mixture included: the fit imports it
# while fitting the transformer, 85 MiB of modules, before the estimate is
# made) and the table is built, as a job holds its table when it trains.
# What the fit then adds at its peak is what the estimate claims to predict.
# The kernel's high-water mark (VmHWM) is reset right before the fit (writing
# 5 to /proc/self/clear_refs, Linux 4.0 and later), so that building the
# table, which can peak higher on its own, is not taken for the fit.
_FIT = """
import gc, json, os, sys
import numpy as np, pandas as pd
import sklearn.mixture  # noqa: F401
import torch
from ctgan import CTGAN
from ctgan_server.fitting import epoch_events
from ctgan_server.memory_estimate import refuse_oversized
from ctgan_server.preprocessing import fast_preprocessing

rows, cards, continuous = {rows}, {cards}, {continuous}
torch.set_num_threads(1)
rng = np.random.default_rng(0)
columns = {{}}
for i, n in enumerate(cards):
    columns[f"c{{i}}"] = np.array([f"v{{k}}" for k in range(n)], dtype=object)[rng.integers(0, n, rows)]
for i in range(continuous):  # two or three modes each, as real columns often have
    columns[f"x{{i}}"] = rng.normal(size=rows) * (i + 1) + rng.integers(0, 3, rows) * 5
frame = pd.DataFrame(columns)
del columns
gc.collect()

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))  # kB

with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # the high-water mark starts again from the current RSS
baseline = rss()
events = []
model = CTGAN(epochs=1, verbose=False, enable_gpu=False)
device = torch.device("cpu")
model.set_device(device)
# The same three wrappers as fitting.train_model.
with epoch_events(model, 1, events.append), fast_preprocessing(), refuse_oversized(model, device, events.append):
    model.fit(frame, [f"c{{i}}" for i in range(len(cards))])
print(json.dumps({{"baseline": baseline, "peak": peak(), "events": events}}))
"""


def _measured_fit(rows: int, cards: list[int], continuous: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _FIT.format(rows=rows, cards=cards, continuous=continuous)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and ru_maxrss in kB")
def test_the_estimate_is_within_a_factor_of_two_of_a_real_cpu_fits_peak():
    # 100k rows, four discrete columns and two continuous ones: about 130
    # encoded columns, an epoch of 200 steps in about 15 s on one thread.
    result = _measured_fit(100_000, [60, 30, 12, 6], 2)
    memory = next(e for e in result["events"] if e["event"] == "memory")
    assert [e["event"] for e in result["events"]].count("epoch") == 1  # it did train, after the estimate
    (pool,) = memory["pools"]
    estimate, grown = pool["needed"], result["peak"] - result["baseline"]
    figures = f"estimate {estimate / MiB:.0f} MiB, measured peak growth {grown / MiB:.0f} MiB, parts {memory['parts']}"
    # The rows themselves are a real share of it, not only torch's fixed cost.
    assert memory["parts"]["matrix"] + memory["parts"]["row_lists"] > 40 * MiB, figures
    assert grown / 2 <= estimate <= grown * 2, figures


def _small_frame(rows: int = 300) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "ward": rng.choice(["A", "B", "C"], rows).astype(object),
            "grade": rng.choice(["low", "mid", "high", "top"], rows).astype(object),
            "age": rng.normal(50, 15, rows),
        }
    )
    return frame, ["ward", "grade"]


def test_train_model_refuses_a_fit_the_machine_cannot_hold_before_training(monkeypatch):
    import ctgan.synthesizers.ctgan as ctgan_module
    from ctgan.data_transformer import DataTransformer

    from ctgan_server.fit_request import FitRequest
    from ctgan_server.fitting import Prepared, train_model

    monkeypatch.setattr(memory_estimate, "cpu_available", lambda: 1 * MiB)  # the fake: a machine with 1 MiB free
    frame, discrete = _small_frame()
    prepared = Prepared(plan={}, id_records={}, train=frame, discrete_columns=discrete, real=None, held_out=None, rows=300)
    request = FitRequest(token="0" * 32, filename="ward.csv", sha256="f" * 64, epochs=1)
    events: list[dict] = []
    with pytest.raises(LimitError) as refused:
        train_model(types.SimpleNamespace(torch_threads=1, device="cpu"), request, prepared, events.append)
    message = refused.value.message
    assert isinstance(refused.value, CtganError) and "\n" not in message  # a job records a CtganError as FAILED, one line
    assert (
        message.startswith("this fit needs about ") and " MiB on cpu, and 1.0 MiB is available (300 rows, encoded as " in message
    )
    assert message.endswith("use fewer rows, fewer columns or categories, or a bigger machine")
    kinds = [e["event"] for e in events]
    assert "memory" in kinds and "step" not in kinds and "epoch" not in kinds  # logged, then refused before any step
    assert ctgan_module.DataTransformer is DataTransformer  # the fit's wrappers are all undone


def test_a_fit_that_fits_logs_its_estimate_trains_and_pickles_clean():
    import torch
    from ctgan import CTGAN

    from ctgan_server.preprocessing import fast_preprocessing

    frame, discrete = _small_frame()
    model, device, events = CTGAN(epochs=1, verbose=False, enable_gpu=False), torch.device("cpu"), []
    model.set_device(device)
    with fast_preprocessing(), memory_estimate.refuse_oversized(model, device, events.append):
        model.fit(frame, discrete)
    assert len(model.loss_values) == 1
    (memory,) = [e for e in events if e["event"] == "memory"]
    transformer = model._transformer
    assert memory["encoded_columns"] == transformer.output_dimensions and memory["condition_columns"] == 3 + 4
    (pool,) = memory["pools"]
    assert pool["memory"] == "cpu" and 0 < pool["needed"] < pool["available"] == pytest.approx(cpu_available(), rel=0.5)
    # Sizes only: no value from the data travels in the job's log.
    text = json.dumps(memory)
    assert not any(value in text for value in ("ward", "grade", "age", "low", "mid", "high", "top", '"A"'))
    # The check's wrapper is gone from the transformer the model keeps: a closure would not even pickle.
    assert "transform" not in transformer.__dict__
    pickle.dumps(model)


def _shape(**changes) -> Shape:
    fields = dict(rows=10_000, width=120, categories=(40, 30, 20), modes=10, continuous=3, batch=500)
    fields |= dict(embedding=128, generator=(256, 256), discriminator=(256, 256), pac=10)
    return Shape(**{**fields, **changes})


def test_the_parameter_count_is_ctgans_own_networks():
    from ctgan.synthesizers.ctgan import Discriminator, Generator

    for shape in (_shape(), _shape(width=7, categories=(), generator=(64,), discriminator=(32, 16, 8), pac=1)):
        generator = Generator(shape.embedding + shape.condition, shape.generator, shape.width)
        discriminator = Discriminator(shape.width + shape.condition, shape.discriminator, pac=shape.pac)
        tensors = [*generator.parameters(), *discriminator.parameters()]
        # BatchNorm's running mean and variance are kept as well (its batch counter is one number).
        tensors += [b for name, b in generator.named_buffers() if not name.endswith("num_batches_tracked")]
        assert network_parameters(shape) == sum(t.numel() for t in tensors)


def test_the_data_parts_grow_with_the_rows_and_the_network_parts_do_not():
    small, large = estimate_memory(_shape()), estimate_memory(_shape(rows=40_000))
    assert large.host["matrix"] == 4 * small.host["matrix"] == 40_000 * 120 * 4  # float32, one copy
    assert large.host["row_lists"] == 40_000 * 3 * 16  # upstream's int64 row lists and _RowDraw's concatenation
    assert large.device == small.device
    wider = estimate_memory(_shape(width=240, categories=(80, 60, 40)))
    assert wider.device["networks"] > 1.5 * small.device["networks"]  # the discriminator takes (width + condition) x pac
    # Upstream's float64 transform makes three copies of the matrix at once; FastDataTransformer one float32.
    # On two million rows that transform, not training, is the peak.
    fast, upstream = (
        estimate_memory(_shape(rows=2_000_000)),
        estimate_memory(_shape(rows=2_000_000, cell_bytes=8, transform_copies=3)),
    )
    assert upstream.cpu_peak() > 3 * 2_000_000 * 120 * 8 > 2 * fast.cpu_peak()


def test_on_a_gpu_the_device_and_the_machine_are_checked_apart():
    import torch

    estimate = Estimate(host={"matrix": 6 * GiB, "row_lists": 1 * GiB}, device={"networks": 3 * GiB}, transform=0)
    gpu, shape = torch.device("cuda:1"), _shape(rows=1_000_000, width=1_500)
    pools = memory_pools(estimate, gpu, host_available=64 * GiB, device_available=2 * GiB)
    assert [(p["memory"], p["needed"]) for p in pools] == [("cuda:1", 3 * GiB), ("host", 7 * GiB)]
    short_gpu = refusal(pools, shape, "cuda:1 (NVIDIA A10)")
    assert short_gpu is not None and "3.0 GiB on cuda:1 (NVIDIA A10), and 2.0 GiB is available" in short_gpu.message
    assert "(1,000,000 rows, encoded as 1,500 columns)" in short_gpu.message
    short_host = refusal(memory_pools(estimate, gpu, 5 * GiB, 8 * GiB), shape, "cuda:1")
    assert short_host is not None and "7.0 GiB of the machine's memory beside the GPU, and 5.0 GiB" in short_host.message
    assert refusal(memory_pools(estimate, gpu, 8 * GiB, 8 * GiB), shape, "cuda:1") is None
    # Unknown availability is not checked rather than guessed.
    assert refusal(memory_pools(estimate, torch.device("cpu"), None, None), shape, "cpu") is None
    # On a CPU the networks train in the same memory as the matrix: one pool, everything in it.
    (cpu,) = memory_pools(estimate, torch.device("cpu"), 9 * GiB, None)
    assert cpu["needed"] == 10 * GiB and refusal([cpu], shape, "cpu") is not None


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_slurm_jobs_cgroup_limit_is_found_above_its_task_v2(tmp_path):
    # Slurm's cgroup v2 layout: the limit sits on the job, the process runs in a task below it.
    job = tmp_path / "sys" / "system.slice" / "slurmstepd.scope" / "job_12"
    _write(tmp_path / "cgroup", "0::/system.slice/slurmstepd.scope/job_12/step_0/user/task_0\n")
    _write(job / "memory.max", f"{4 * GiB}\n")
    _write(job / "memory.current", f"{1 * GiB}\n")
    _write(job / "memory.stat", f"anon 123\ninactive_file {256 * MiB}\nactive_file 0\n")  # page cache the kernel reclaims
    _write(job / "step_0" / "user" / "task_0" / "memory.max", "max\n")
    _write(tmp_path / "sys" / "memory.max", "max\n")
    assert cgroup_headroom(tmp_path / "cgroup", tmp_path / "sys") == 4 * GiB - (1 * GiB - 256 * MiB)


def test_the_tightest_cgroup_v1_limit_counts_and_no_limit_is_none(tmp_path):
    mount = tmp_path / "sys" / "memory"
    _write(tmp_path / "cgroup", "5:cpuacct,cpu:/slurm/uid_0/job_12\n4:memory:/slurm/uid_0/job_12/step_batch\n0::/\n")
    _write(mount / "memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    _write(mount / "slurm" / "uid_0" / "memory.limit_in_bytes", f"{8 * GiB}\n")
    _write(mount / "slurm" / "uid_0" / "memory.usage_in_bytes", f"{1 * GiB}\n")
    _write(mount / "slurm" / "uid_0" / "job_12" / "memory.limit_in_bytes", f"{2 * GiB}\n")
    _write(mount / "slurm" / "uid_0" / "job_12" / "memory.usage_in_bytes", f"{512 * MiB}\n")
    _write(mount / "slurm" / "uid_0" / "job_12" / "memory.stat", "cache 0\ntotal_inactive_file 0\n")
    assert cgroup_headroom(tmp_path / "cgroup", tmp_path / "sys") == 2 * GiB - 512 * MiB
    _write(tmp_path / "free", "0::/\n")
    assert cgroup_headroom(tmp_path / "free", tmp_path / "sys") is None
    assert cgroup_headroom(tmp_path / "absent", tmp_path / "sys") is None


def test_meminfo_available_and_the_machines_own_figure(tmp_path):
    _write(tmp_path / "meminfo", "MemTotal:       24684096 kB\nMemFree:  100 kB\nMemAvailable:   12582912 kB\n")
    assert meminfo_available(tmp_path / "meminfo") == 12 * GiB
    assert meminfo_available(tmp_path / "absent") is None
    available = cpu_available()  # this machine, for real
    assert available is not None and 0 < available <= meminfo_available()


def test_the_report_says_which_device_the_model_trained_on(server_dir):
    import io

    from ctgan_server.server import Server
    from ctgan_server.settings import load_settings
    from ctgan_server.storage import UserStorage

    settings = load_settings(server_dir)
    server = Server(settings, io.BytesIO())
    server.storage = UserStorage(settings.data_dir, "alice")
    for name, fit in (("ward_model.gz", {"device": "cuda:1", "device_name": "NVIDIA A10", "losses": []}), ("old_model.gz", {})):
        (server.storage.models_dir / name).write_bytes(b"")
        server.storage.write_model_meta(name, {"report": {"verdict": "fine"}, "fit": fit})
    assert server.do_report("ward_model.gz")["device"] == "cuda:1"
    assert server.do_report("ward_model.gz")["device_name"] == "NVIDIA A10"
    old = server.do_report("old_model.gz")  # made before the model JSON kept its device
    assert old["device"] is None and old["device_name"] is None and old["verdict"] == "fine"
