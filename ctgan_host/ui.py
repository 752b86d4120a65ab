"""What the user sees: tables, progress and prompts.  Results go to stdout, chatter to stderr."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

BANNER = "ctgan-server-cli: fit CTGAN on your server, bring back synthetic data"


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def print_json(data: Any) -> None:
    # Plain print: rich would wrap long lines and break the JSON.
    print(json.dumps(data))


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def models_table(models: list[dict[str, Any]]) -> Table:
    table = Table(title="Models", title_justify="left")
    for col, justify in (
        ("name", "left"),
        ("size", "right"),
        ("rows", "right"),
        ("epochs", "right"),
        ("fit time", "right"),
        ("created (UTC)", "left"),
    ):
        table.add_column(col, justify=justify)
    for m in models:
        seconds = m.get("seconds")
        table.add_row(
            m["name"],
            human_size(m.get("size_bytes")),
            str(m.get("rows") or ""),
            str(m.get("epochs") or ""),
            f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else "",
            m["created"],
        )
    return table


def datasets_table(datasets: list[dict[str, Any]]) -> Table:
    table = Table(title="Synthetic datasets", title_justify="left")
    table.add_column("name")
    table.add_column("size", justify="right")
    table.add_column("created (UTC)")
    for d in datasets:
        table.add_row(d["name"], human_size(d.get("size_bytes")), d["created"])
    return table


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    """Fits and samples: what each works on, how far it is, and what it made or why it ended."""
    table = Table(title="Jobs", title_justify="left")
    on_slurm = any(j.get("slurm_id") for j in jobs)
    for col in ("id", "kind", "state", "from", "progress", "created (UTC)", "result or error") + (("slurm",) if on_slurm else ()):
        table.add_column(col)
    colours = {"DONE": "green", "FAILED": "red", "CANCELED": "yellow", "RUNNING": "cyan", "QUEUED": "blue"}
    for j in jobs:
        sample = j.get("kind") == "sample"
        detail = (j.get("output") if sample else j.get("model")) or (j.get("error") or {}).get("message") or ""
        state = j.get("state") or "?"
        if sample:
            progress = f"{j.get('sampled') or 0:,}/{j.get('rows') or 0:,} rows"
        else:
            progress = f"{j.get('epoch') or 0}/{j.get('epochs') or '?'}"
        row = [
            j["id"],
            j.get("kind") or "fit",
            f"[{colours.get(state, 'white')}]{state}[/]",
            str((j.get("model") if sample else j.get("dataset")) or ""),
            progress,
            str(j.get("created") or ""),
            detail,
        ]
        table.add_row(*row, *((str(j.get("slurm_id") or ""),) if on_slurm else ()))
    return table


def plan_table(columns: list[dict[str, Any]], rows: int) -> Table:
    table = Table(title=f"Data integrity check ({rows} rows)", title_justify="left")
    for col in ("column", "dtype", "kind", "nulls", "distinct", "reason"):
        table.add_column(col, justify="right" if col in ("nulls", "distinct") else "left")
    for c in columns:
        table.add_row(str(c["name"]), c["dtype"], c["kind"], str(c["nulls"]), str(c["distinct"]), c.get("reason", ""))
    return table


def _loss(value: float | None) -> str:
    return "nan" if value is None else f"{value:+.4f}"


class FitProgress:
    """Live progress of a fit: rich bars on a terminal, one plain line per epoch otherwise.

    Bars: planning (a column at a time), preprocessing (fit, then transform,
    a column at a time) and epochs, which move within an epoch on the job's
    ``step`` events.  Stage and report-part events are one-line notes.
    """

    STAGE_NOTES = {"reading": "Reading the data...", "report": "Measuring quality and privacy..."}

    def __init__(self) -> None:
        self.live = err.is_terminal
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "FitProgress":
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[losses]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def _bar(self, name: str, completed: float, total: int, **fields: Any) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, losses="")
        self.progress.update(self.tasks[name], completed=completed, **fields)

    def on_event(self, event: dict[str, Any]) -> None:
        handler = getattr(self, f"_on_{event.get('event')}", None)
        if handler is not None:
            handler(event)

    def _on_plan(self, event: dict[str, Any]) -> None:
        err.print(plan_table(event["columns"], event["rows"]))
        for rule in event.get("rules", []):  # a constraints file: checked on the original, kept by every sample
            err.print(f"Rule kept: {rule}", markup=False)
        for warning in event.get("warnings", []):
            err.print(f"[yellow]Warning:[/yellow] {warning}")

    def _on_stage(self, event: dict[str, Any]) -> None:
        stage = event.get("stage")
        if stage == "training":
            note(f"Training on {event.get('device', '?')}...")
        elif stage == "planning":
            note(f"Planning the columns of {event.get('rows', '?'):,} rows...")
        elif stage in self.STAGE_NOTES:
            note(self.STAGE_NOTES[stage])

    def _on_state(self, event: dict[str, Any]) -> None:
        if event["state"] == "QUEUED":
            note("Queued on the server; waiting for a free slot...")

    def _on_memory(self, event: dict[str, Any]) -> None:
        # memory_estimate's check, made before training: what the fit needs where.
        for pool in event.get("pools") or []:
            available = pool.get("available")
            of = f" of {available / 2**30:.1f} GiB available" if available is not None else ""
            note(f"Memory ({pool.get('memory', '?')}): the fit needs about {(pool.get('needed') or 0) / 2**30:.2f} GiB{of}")

    def _on_sample(self, event: dict[str, Any]) -> None:
        # A sample job being followed (`jobs follow`): rows written so far.
        if self.progress is not None:
            self._bar("sampling", event["rows"], event["total"])
        elif event["rows"] == event["total"]:
            err.print(f"Sampled {event['total']:,} rows")

    def _on_plan_column(self, event: dict[str, Any]) -> None:
        if self.progress is not None:
            self._bar("planning", event["column"], event["columns"])

    def _on_preprocess(self, event: dict[str, Any]) -> None:
        # Two passes over the columns: the mode-finding fit, then the transform.
        done = event["column"] + (event["columns"] if event.get("step") == "transform" else 0)
        if self.progress is not None:
            self._bar("preprocessing", done, 2 * event["columns"])
        elif event["column"] == event["columns"]:
            print(
                f"preprocessing: {event.get('step', 'transform')} done for {event['columns']} columns",
                file=sys.stderr,
                flush=True,
            )

    def _on_step(self, event: dict[str, Any]) -> None:
        if self.progress is not None:
            self._bar("epochs", event["epoch"] - 1 + event["step"] / max(event["steps"], 1), event["epochs"])

    def _on_epoch(self, event: dict[str, Any]) -> None:
        losses = f"loss G {_loss(event['loss_g'])}  D {_loss(event['loss_d'])}"
        if self.progress is not None:
            self._bar("epochs", event["epoch"], event["epochs"], losses=losses)
        else:
            print(f"epoch {event['epoch']}/{event['epochs']}  {losses}", file=sys.stderr, flush=True)

    def _on_report_part(self, event: dict[str, Any]) -> None:
        note(f"  report: {event['part']}...")


class TransferProgress:
    """Bytes moved and speed, or rows received, live on a terminal; silent otherwise.  Call the object with the count so far."""

    def __init__(self, description: str, total: int | None = None, rows: bool = False):
        self.description, self.total, self.rows = description, total, rows
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> "TransferProgress":
        if err.is_terminal:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TransferSpeedColumn,
            )

            counts = (MofNCompleteColumn(), TimeElapsedColumn()) if self.rows else (DownloadColumn(), TransferSpeedColumn())
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), *counts, console=err, transient=True)
            self.progress.__enter__()
            self.task = self.progress.add_task(self.description, total=self.total)
        return self

    def __call__(self, done: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def confirm(question: str) -> bool:
    return click.confirm(question, default=False, err=True)


def status(message: str) -> Any:
    """A spinner on a terminal; silent otherwise, so that logs hold results and errors only."""
    return err.status(message) if err.is_terminal else contextlib.nullcontext()


def note(message: str) -> None:
    if err.is_terminal:
        err.print(message)


def comparison_table(original: Any, synthetic: Any) -> Table:
    """Original vs synthetic, one row per column: dtype, missing share, and mean or top value."""
    table = Table(title="Original vs synthetic", title_justify="left")
    for col in ("column", "dtype", "missing (orig / synth)", "mean or top value (orig / synth)"):
        table.add_column(col)

    def summary(series: Any) -> str:
        observed = series.dropna()
        if observed.empty:
            return "-"
        if series.dtype.kind in "if":
            return f"{observed.mean():.2f}"
        return str(observed.mode().iloc[0])

    for name in original.columns:
        o, s = original[name], synthetic[name] if name in synthetic else None
        if s is None:
            table.add_row(str(name), str(o.dtype), "missing column", "")
            continue
        dtype = str(o.dtype) if str(o.dtype) == str(s.dtype) else f"{o.dtype} / {s.dtype}"
        table.add_row(str(name), dtype, f"{o.isna().mean():.1%} / {s.isna().mean():.1%}", f"{summary(o)} / {summary(s)}")
    return table


REPORT_JSON_KEYS = ("quality", "privacy", "verdict", "notes", "device", "device_name", "rules", "protection")
_SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None], width: int = 60) -> str:
    """A loss curve in one line of block characters, averaged down to ``width`` buckets."""
    points = [v for v in values if v is not None]
    if not points:
        return ""
    step = max(1, -(-len(points) // width))
    buckets = [sum(points[i : i + step]) / len(points[i : i + step]) for i in range(0, len(points), step)]
    low, high = min(buckets), max(buckets)
    span = (high - low) or 1.0
    return "".join(_SPARKS[min(len(_SPARKS) - 1, int((b - low) / span * (len(_SPARKS) - 1) + 0.5))] for b in buckets)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def protection_lines(summary: dict[str, Any] | None) -> list[str]:
    """What value protection did, in counts and quantiles; nothing for a model made before it."""
    if not summary:
        return []
    level = summary.get("level")
    if level == "none":
        return ["Value protection: none (rare categories and the exact minimum and maximum can come back)"]
    quantiles = summary.get("quantiles")
    bounds = f"at the {quantiles[0] * 100:g}% and {quantiles[1] * 100:g}% quantiles" if quantiles else ""
    return [
        f"Value protection: {level}",
        f"  {summary.get('categories_merged', 0)} categories seen fewer than {summary.get('rare_below')} times merged "
        f"({summary.get('columns_merged', 0)} columns); {summary.get('columns_bounded', 0)} ranges bounded {bounds}".rstrip(),
    ]


def print_protection(summary: dict[str, Any] | None) -> None:
    for line in protection_lines(summary):
        out.print(line, markup=False)


def print_report(report: dict[str, Any], title: str) -> None:
    q, p = report.get("quality") or {}, report.get("privacy") or {}
    out.print(f"[bold]{title}[/bold]")
    out.print(f"[bold]{report.get('verdict', '')}[/bold]")
    if report.get("device"):  # models made before 0.2.0 did not keep it
        out.print(f"Trained on {report['device']} ({report.get('device_name') or 'unknown device'})")
    scores = Table(title="Quality (sdmetrics QualityReport)", title_justify="left")
    scores.add_column("score")
    scores.add_column("value", justify="right")
    for label, key in (("overall", "score"), ("column shapes", "column_shapes"), ("column pair trends", "column_pair_trends")):
        scores.add_row(label, _pct(q.get(key)))
    out.print(scores)
    columns = Table(title="Column shapes", title_justify="left")
    columns.add_column("column")
    columns.add_column("score", justify="right")
    for name, value in sorted((q.get("columns") or {}).items(), key=lambda kv: (kv[1] is None, kv[1] or 0)):
        columns.add_row(name, _pct(value))
    out.print(columns)
    privacy = Table(title="Privacy", title_justify="left")
    privacy.add_column("measure")
    privacy.add_column("value", justify="right")
    privacy.add_column("reading")
    privacy.add_row("exact matches", _pct(p.get("exact_match_rate")), "synthetic rows identical to a training row; want 0%")
    privacy.add_row("DCR median", _num(p.get("dcr_median")), "distance to the closest training row (0 = a copy)")
    privacy.add_row("DCR 5th percentile", _num(p.get("dcr_p5")), "the closest 5% of synthetic rows")
    privacy.add_row("NNDR 10th percentile", _num(p.get("nndr_p10")), "near 0: rows sitting on one real record")
    privacy.add_row(
        "linkage rate",
        _pct(p.get("linkage_rate")),
        "closer to a training row than its own nearest neighbour; want 0%, new real rows ~50%, a copy 100%",
    )
    privacy.add_row("DCR share", _pct(p.get("dcr_share")), "closer to training than to holdout; 50% = no memorisation")
    privacy.add_row(
        "DCR baseline protection", _pct(p.get("dcr_baseline_protection")), "sdmetrics, against random data; higher is safer"
    )
    out.print(privacy)
    print_protection(report.get("protection"))
    rules = report.get("rules")
    if rules:  # a fit with --constraints: measured on the report's synthetic rows
        kept = f"Rules kept by {_pct(rules.get('kept'))} of synthetic rows: "
        out.print(kept + "; ".join(rules.get("rules", [])), markup=False)
    losses = report.get("losses") or []
    if losses:
        out.print(f"generator loss      {sparkline([e.get('loss_g') for e in losses])}")
        out.print(f"discriminator loss  {sparkline([e.get('loss_d') for e in losses])}")
    for note in report.get("notes") or []:
        out.print(f"[dim]Note: {note}[/dim]")
