"""Quality and privacy reports: the metrics themselves, the fit-time report, `report` and `evaluate`."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from ctgan_host import ui
from ctgan_server import report
from tests.helpers import as_user, run_cli


def _table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    return pd.DataFrame(
        {
            "age": age,
            "income": (age * 900 + rng.normal(0, 4000, n)).round(2),
            "city": rng.choice(["Oslo", "Lima", "Pune"], n, p=[0.6, 0.3, 0.1]),
            "member": rng.random(n) < 0.3,
        }
    )


def _credit_like(n: int, seed: int) -> pd.DataFrame:
    """credit_data-like columns (numbers with gaps, a spike at zero, categories), generated so the tests need no dataset."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(10, 1, n)),
            "home": rng.choice(["rent", "owner", "parents", "other"], n),
            "job": rng.choice(["fixed", "partime", "freelance"], n),
            "debt": np.where(rng.random(n) < 0.8, 0.0, rng.exponential(1000, n)),
        }
    )


def test_quality_matches_sdmetrics_called_directly():
    real, synthetic = _table(seed=0), _table(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sdmetrics.reports.single_table import QualityReport

        direct = QualityReport()
        direct.generate(real, synthetic, report.metadata_for(real), verbose=False)
    ours = report.quality(real, synthetic)
    properties = direct.get_properties().set_index("Property")["Score"]
    assert ours["score"] == pytest.approx(direct.get_score())
    assert ours["column_shapes"] == pytest.approx(properties["Column Shapes"])
    assert ours["column_pair_trends"] == pytest.approx(properties["Column Pair Trends"])
    assert set(ours["columns"]) == set(real.columns)


def test_a_copy_is_all_exact_matches_at_distance_zero():
    real = _table()
    result = report.build(real, real.sample(frac=1, random_state=3))
    assert result["privacy"]["exact_match_rate"] == 1.0
    assert result["privacy"]["dcr_median"] == 0.0 and result["privacy"]["dcr_p5"] == 0.0
    assert result["quality"]["score"] > 0.99


def test_an_independent_random_table_scores_low_and_matches_nothing():
    real = _table()
    rng = np.random.default_rng(9)
    noise = pd.DataFrame(
        {
            "age": rng.integers(0, 1000, len(real)),
            "income": rng.uniform(-1e6, 1e6, len(real)).round(2),
            "city": rng.choice(["Quito", "Kyiv"], len(real)),
            "member": rng.random(len(real)) < 0.9,
        }
    )
    result = report.build(real, noise)
    assert result["quality"]["score"] < 0.5
    assert result["privacy"]["exact_match_rate"] == 0.0
    assert result["privacy"]["dcr_median"] > 0.2


def _loans(n: int, seed: int) -> pd.DataFrame:
    """A loan book whose columns depend on each other, as real tables' do: income on age, amount on income, rate on grade."""
    rng = np.random.default_rng(seed)
    age = rng.integers(20, 70, n)
    grade = rng.choice(["A", "B", "C", "D"], n, p=[0.4, 0.3, 0.2, 0.1])
    income = np.exp(9.5 + 0.02 * (age - 20) + rng.normal(0, 0.3, n)).round(2)
    amount = (income * rng.uniform(0.1, 0.4, n)).round(2)
    rate = (np.select([grade == "A", grade == "B", grade == "C"], [6.0, 9.0, 13.0], 18.0) + rng.normal(0, 0.8, n)).round(2)
    return pd.DataFrame(
        {
            "age": age,
            "grade": grade,
            "income": income,
            "amount": amount,
            "rate": rate,
            "term": np.where(amount > np.median(amount), 60, 36),
            "years_employed": np.clip(age - 20 - rng.integers(0, 10, n), 0, None),
        }
    )


def test_linkage_rate_flags_a_copy_and_not_random_rows():
    """A copy of a training table with no duplicate rows is linked all through; uniformly random rows almost never.

    The random rows are sdmetrics' baseline kind (uniform over each column's
    range or values), so they fall inside the training data's ranges, just
    not where its related columns put real rows.  Fresh rows of the same
    population are linked about half the time, as the README says a good
    model's rows are.
    """
    train = _loans(2000, seed=3)
    assert not train.duplicated().any()
    assert report.privacy(train, train.sample(frac=1, random_state=2))[0]["linkage_rate"] >= 0.95
    assert report.privacy(train, report._random_rows(train, 1000))[0]["linkage_rate"] <= 0.05
    assert 0.4 < report.privacy(train, _loans(1000, seed=4))[0]["linkage_rate"] < 0.65


def test_linkage_rate_ties_do_not_link():
    """A training row with an exact duplicate is two records: a synthetic row on it singles out neither."""
    train = _credit_like(400, seed=6)
    twice = pd.concat([train, train], ignore_index=True)
    result, notes = report.privacy(twice, train)
    assert result["exact_match_rate"] == 1.0 and result["linkage_rate"] == 0.0 and not notes
    # Above MIN_LINKAGE_ROWS, a random quarter of the rows is tested, and the notes say so.
    big = _credit_like(3000, seed=7).drop_duplicates(ignore_index=True)
    result, notes = report.privacy(big, big)
    tested = f"linkage rate tested on {len(big) // 4:,} of the {len(big):,} synthetic rows"
    assert result["linkage_rate"] == 1.0 and any(tested in n for n in notes)


def test_holdout_gives_the_dcr_share_and_baseline_is_always_there():
    real = _table(600)
    train, holdout = real.iloc[:400], real.iloc[400:]
    memorised = report.build(train, train)  # the worst case: the model copied its training rows
    assert memorised["privacy"]["dcr_share"] is None and memorised["privacy"]["dcr_baseline_protection"] is not None
    with_holdout = report.build(train, train, holdout)
    assert with_holdout["privacy"]["dcr_share"] == pytest.approx(1.0)
    fresh = report.build(train, _table(400, seed=5), holdout)
    assert 0.3 < fresh["privacy"]["dcr_share"] < 0.7  # about a coin toss for data that memorised nothing
    assert "DCR share" in fresh["verdict"]


def test_fit_report_is_stored_without_records_and_shown(local_config, server_dir, tmp_path):
    rng = np.random.default_rng(4)
    n = 120
    frame = pd.DataFrame(
        {
            "pid": [f"PT-{i:06d}" for i in rng.choice(999_999, n, replace=False)],
            "seen": pd.to_datetime(rng.integers(1.6e9, 1.7e9, n), unit="s").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "age": rng.integers(18, 90, n),
            "ward": rng.choice(["A", "B"], n),
        }
    )
    csv = tmp_path / "ward.csv"
    frame.to_csv(csv, index=False)
    opts, stdin = as_user("alice")
    fitted = run_cli(local_config, *opts, "fit", str(csv), "--epochs", "2", "--holdout", "0.25", "--json", input=stdin)
    assert fitted.code == 0, fitted.err
    model = json.loads(fitted.out)["model"]
    stored = json.loads((server_dir / "model_database" / "alice" / model.replace(".gz", ".json")).read_text())
    text = json.dumps(stored["report"])
    assert not any(pid in text for pid in frame["pid"]) and not any(ts in text for ts in frame["seen"])
    assert stored["fit"]["rows"] == 90 and stored["report"]["privacy"]["holdout_rows"] == 30

    shown = run_cli(local_config, *opts, "report", model, "--json", input=stdin)
    assert shown.code == 0, shown.err
    data = json.loads(shown.out)
    # Every key the CLI's contract names (other parts of the report add theirs there), these always.
    assert set(data) == set(ui.REPORT_JSON_KEYS) >= {"quality", "privacy", "verdict", "notes", "device", "device_name"}
    assert data["device"] == "cpu" and data["device_name"]
    for key in ("score", "column_shapes"):
        assert 0 <= data["quality"][key] <= 1
    # sdmetrics scores pair trends only for strongly related real pairs; a random split may leave none
    trends = data["quality"]["column_pair_trends"]
    assert (trends is not None and 0 <= trends <= 1) or any("Pair Trends is not scored" in n for n in data["notes"])
    for key in ("exact_match_rate", "dcr_share", "dcr_median", "nndr_p10", "linkage_rate"):
        assert data["privacy"][key] is not None
    assert 0 <= data["privacy"]["linkage_rate"] <= 1
    page = tmp_path / "report.html"
    table = run_cli(local_config, *opts, "report", model, "--html", str(page), input=stdin)
    assert table.code == 0 and data["verdict"] in table.out and "generator loss" in table.out and "linkage rate" in table.out
    html = page.read_text()
    assert "Linkage rate" in html
    assert html.count('class="plot dist"') == 3 and 'class="plot losses"' in html  # seen, age, ward; no ID column

    bad = run_cli(local_config, *opts, "fit", str(csv), "--epochs", "1", "--holdout", "0.9", input=stdin)
    assert bad.code == 2 and bad.err.startswith("Error:")


def test_a_fit_whose_id_pattern_is_used_up_still_gets_its_report(local_config, server_dir, tmp_path):
    """Every value of C00..C99 is taken: no fresh ID exists, and the report, which leaves IDs out, needs none."""
    rng = np.random.default_rng(8)
    n = 100
    frame = pd.DataFrame(
        {"code": [f"C{i:02d}" for i in rng.permutation(n)], "age": rng.integers(18, 90, n), "ward": rng.choice(["A", "B"], n)}
    )
    csv = tmp_path / "full_ids.csv"
    frame.to_csv(csv, index=False)
    opts, stdin = as_user("alice")
    fitted = run_cli(local_config, *opts, "fit", str(csv), "--epochs", "1", "--json", input=stdin)
    assert fitted.code == 0, fitted.err
    model = json.loads(fitted.out)["model"]
    stored = json.loads((server_dir / "model_database" / "alice" / model.replace(".gz", ".json")).read_text())
    assert [c["kind"] for c in stored["columns"] if c["name"] == "code"] == ["identifier"]
    assert stored["report"]["quality"]["score"] is not None
    # Sampling needs fresh IDs, and says why it cannot make them.
    sampled = run_cli(local_config, *opts, "sample", model, "--rows", "5", "--out", str(tmp_path / "out"), input=stdin)
    assert sampled.code != 0 and "no unused values left" in sampled.err and "Traceback" not in sampled.err


def test_evaluate_runs_locally_and_reads_like_the_fit_report(local_config, tmp_path):
    real = _table(200)
    real.to_csv(tmp_path / "real.csv", index=False)
    real.iloc[:100].to_csv(tmp_path / "half.csv", index=False)
    _table(100, seed=2).to_csv(tmp_path / "holdout.csv", index=False)
    result = run_cli(
        local_config,
        "evaluate",
        str(tmp_path / "real.csv"),
        str(tmp_path / "half.csv"),
        "--holdout",
        str(tmp_path / "holdout.csv"),
        "--json",
        cwd=tmp_path,
    )
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["privacy"]["exact_match_rate"] == 1.0 and data["privacy"]["dcr_share"] is not None
    missing = run_cli(local_config, "evaluate", str(tmp_path / "real.csv"), str(tmp_path / "nope.csv"), cwd=tmp_path)
    assert missing.code == 2 and missing.err.count("\n") == 1


def test_the_distance_search_gives_the_exact_answer():
    """The tree index must give the figures comparing every pair would: same distances, so the same DCR and NNDR.

    On credit_data-like columns (numbers with gaps, a spike at zero, categories), generated here so the test needs no dataset.
    """
    from sklearn.neighbors import NearestNeighbors

    from ctgan_server.report import _Encoder, _index

    real = _credit_like(3000, seed=5)
    synthetic = real.sample(800, random_state=1).reset_index(drop=True)
    synthetic["income"] = synthetic["income"] * 1.01
    encode = _Encoder(real)
    reference, queries = encode(real), encode(synthetic)
    fast = _index(reference, 2).kneighbors(queries)[0]
    exact, _ = NearestNeighbors(n_neighbors=2, metric="manhattan", algorithm="brute").fit(reference).kneighbors(queries)
    np.testing.assert_allclose(fast, exact, atol=1e-9)


def test_the_baseline_protection_is_sdmetrics_figure():
    """Our DCR baseline (the report's neighbour index, 250-1,000 random rows) against sdmetrics' on whole tables.

    Both divide medians over random rows, so they agree only up to that
    randomness: at most 0.01 apart on credit_data, diamonds and penguins.
    """
    from sdmetrics.single_table import DCRBaselineProtection

    table = _credit_like(2400, seed=8)
    train, synthetic = table.iloc[:1600], table.iloc[1600:].reset_index(drop=True)
    ours = report.privacy(train, synthetic)[0]["dcr_baseline_protection"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = DCRBaselineProtection.compute(train, synthetic, report.metadata_for(train), None)
    assert 0.0 < theirs < 1.0 and abs(ours - theirs) <= 0.02
    copy = report.privacy(train, train.iloc[:500])[0]["dcr_baseline_protection"]
    assert copy == 0.0  # a copy sits at distance zero: no protection
