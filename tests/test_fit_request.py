"""Unit: the fit request `serve` writes for its job, and what a job started by another release can read."""

from __future__ import annotations

import json

import pytest

from ctgan_server.fit_request import FitRequest, request_token
from ctgan_server.wire import InternalError

TOKEN = "0123456789abcdef" * 2


def _request(**changes) -> FitRequest:
    fields = {"token": TOKEN, "filename": "loans 2026.csv", "sha256": "f" * 64, "epochs": 3}
    return FitRequest(**{**fields, **changes})


def test_a_request_reads_back_equal_to_the_one_written():
    written = _request(overrides={"discrete": ["branch"], "id": ("loan_id",)}, text_columns=["code"], seed=7, holdout=0.2)
    assert FitRequest.from_json(written.to_json()) == written
    assert written.overrides == {"discrete": ("branch",), "id": ("loan_id",)} and written.dataset == "loans_2026"


def test_an_older_request_takes_defaults_and_a_newer_keys_are_ignored():
    older = {"token": TOKEN, "filename": "a.csv", "sha256": "0" * 64, "epochs": 1, "overrides": {}, "seed": None}
    assert FitRequest.from_json(json.dumps(older)).holdout == 0.0
    newer = {**older, "holdout": 0.1, "privacy_budget": 3}
    assert FitRequest.from_json(json.dumps(newer)).holdout == 0.1


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", json.dumps({"token": TOKEN, "filename": "a.csv"})])
def test_a_damaged_or_incomplete_request_is_an_internal_error_naming_the_problem(text):
    with pytest.raises(InternalError, match="damaged|has no sha256, epochs"):
        FitRequest.from_json(text)


def test_the_upload_token_is_found_even_in_a_request_that_cannot_run():
    assert request_token(json.dumps({"token": TOKEN})) == TOKEN
    assert request_token(json.dumps({"token": "../../etc/passwd"})) is None
    assert request_token("{not json") is None
