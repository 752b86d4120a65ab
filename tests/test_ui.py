"""Unit: the fit display turns every kind of job event into visible progress."""

from __future__ import annotations

import io

from rich.console import Console

from ctgan_host import ui


def test_fit_progress_shows_planning_preprocessing_steps_and_report_parts(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(ui, "err", Console(file=screen, force_terminal=True, width=120, highlight=False, color_system=None))
    events = [
        {"event": "stage", "stage": "reading"},
        {"event": "stage", "stage": "planning", "rows": 1_000_000},
        {"event": "plan_column", "column": 20, "columns": 20},
        {"event": "preprocess", "step": "transform", "column": 3, "columns": 20},
        {"event": "step", "epoch": 1, "epochs": 2, "step": 50, "steps": 200},
        {"event": "stage", "stage": "report"},
        {"event": "report_part", "part": "distances"},
        {"event": "an event from a newer server"},
    ]
    with ui.FitProgress() as progress:
        for event in events:
            progress.on_event(event)
        bars = {task.description: task for task in progress.progress.tasks}
        assert bars["planning"].completed == 20 and bars["planning"].total == 20
        assert bars["preprocessing"].completed == 23 and bars["preprocessing"].total == 40
        assert bars["epochs"].completed == 0.25 and bars["epochs"].total == 2  # a quarter into the first epoch
        progress.on_event({"event": "epoch", "epoch": 1, "epochs": 2, "loss_g": 0.5, "loss_d": -0.1})
        assert bars["epochs"].completed == 1
    text = screen.getvalue()
    for words in ("Reading the data", "1,000,000 rows", "Measuring quality", "report: distances"):
        assert words in text, words
