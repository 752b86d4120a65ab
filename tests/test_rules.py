"""Rules files (`fit --constraints`): refused when the original breaks them, kept by every synthetic row.

Real fits through the CLI on a generated loan book whose rules hold by
construction; the checks read the CSV the user gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import Cli, make_local_setup

RULES = """
[[rule]]
type = "inequality"
low = "issue_date"
high = "last_payment_date"

[[rule]]
type = "sum"
total = "loan_amount"
parts = ["principal", "interest"]

[[rule]]
type = "proportion"
reference = "loan_amount"
parts = ["share_a", "share_b"]
sum_to_one = true

[[rule]]
type = "fixed_combinations"
columns = ["city", "state"]

[[rule]]
type = "positive"
column = "principal"
"""

CITIES = {"Lyon": "ARA", "Grenoble": "ARA", "Nantes": "PDL", "Angers": "PDL", "Lille": "HDF"}


def _loans(rows: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    principal = rng.integers(1_000, 30_000, rows)
    interest = (principal * rng.uniform(0.02, 0.2, rows)).round().astype(int)
    amount = principal + interest
    share_a = (amount * rng.uniform(0.1, 0.9, rows)).round().astype(int)
    issued = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), unit="D")
    paid = issued + pd.to_timedelta(rng.integers(30, 700, rows), unit="D")
    city = rng.choice(list(CITIES), rows)
    return pd.DataFrame(
        {
            "issue_date": issued.strftime("%Y-%m-%d"),
            "last_payment_date": paid.strftime("%Y-%m-%d"),
            "principal": principal,
            "interest": interest,
            "loan_amount": amount,
            "share_a": share_a,
            "share_b": amount - share_a,
            "city": city,
            "state": [CITIES[c] for c in city],
        }
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, Path]:
    root = tmp_path_factory.mktemp("rules")
    _, config = make_local_setup(root)
    csv, rules = root / "loans.csv", root / "rules.toml"
    _loans().to_csv(csv, index=False)
    rules.write_text(RULES)
    return Cli(config), root


@pytest.fixture(scope="module")
def fitted(setup: tuple[Cli, Path]) -> tuple[str, str]:
    """The model fitted with the rules file, and what the fit printed on stderr (the plan)."""
    cli, root = setup
    result = cli.fit(root / "loans.csv", "--constraints", str(root / "rules.toml"), "--json", epochs=2)
    assert result.code == 0, result.err
    return json.loads(result.out)["model"], result.err


@pytest.fixture(scope="module")
def model(fitted: tuple[str, str]) -> str:
    return fitted[0]


def _sampled(cli: Cli, folder: Path, *args: str) -> pd.DataFrame:
    result = cli("sample", *args, "--out", str(folder))
    assert result.code == 0, result.err
    [written] = folder.iterdir()
    return pd.read_csv(written)


def _keeps_every_rule(rows: pd.DataFrame) -> None:
    assert (pd.to_datetime(rows["issue_date"]) <= pd.to_datetime(rows["last_payment_date"])).all()
    assert (rows["loan_amount"] == rows["principal"] + rows["interest"]).all()  # integers: exactly
    assert (rows["share_a"] + rows["share_b"] == rows["loan_amount"]).all()
    assert (rows["share_a"] >= 0).all() and (rows["share_b"] >= 0).all()
    assert rows["city"].map(CITIES).eq(rows["state"]).all()
    assert (rows["principal"] > 0).all()


def test_every_synthetic_row_keeps_every_rule(setup: tuple[Cli, Path], model: str):
    cli, root = setup
    rows = _sampled(cli, root / "out", model, "--rows", "3000")
    assert len(rows) == 3000
    _keeps_every_rule(rows)


def test_conditioned_samples_keep_the_rules_too(setup: tuple[Cli, Path], model: str):
    cli, root = setup
    rows = _sampled(cli, root / "lyon", model, "--rows", "500", "--condition", "city=Lyon")
    assert len(rows) == 500 and (rows["city"] == "Lyon").all() and (rows["state"] == "ARA").all()
    _keeps_every_rule(rows)


def test_the_plan_shows_the_rules_and_the_model_keeps_them(setup: tuple[Cli, Path], fitted: tuple[str, str]):
    model, err = fitted
    assert "Rule kept: sum: loan_amount = principal + interest" in err
    assert "Rule kept: fixed_combinations: only seen combinations of city, state" in err
    meta = json.loads(next(setup[1].rglob(model.replace(".gz", ".json"))).read_text())
    assert [rule["type"] for rule in meta["rules"]] == ["inequality", "sum", "proportion", "fixed_combinations", "positive"]
    assert sorted(map(tuple, meta["rules"][3]["combinations"])) == sorted(CITIES.items())


def test_the_report_says_every_rule_was_kept(setup: tuple[Cli, Path], model: str):
    cli, _ = setup
    result = cli("report", model, "--json")
    assert result.code == 0, result.err
    rules = json.loads(result.out)["rules"]
    assert rules["kept"] == 1.0
    assert len(rules["rules"]) == 5 and "inequality: issue_date <= last_payment_date" in rules["rules"]
    shown = cli("report", model)
    assert shown.code == 0, shown.err
    assert "Rules kept by 100.0% of synthetic rows: inequality: issue_date <= last_payment_date; sum:" in shown.out


def test_a_rule_the_original_breaks_is_refused_with_its_count(setup: tuple[Cli, Path]):
    cli, root = setup
    broken = _loans()
    broken.loc[:6, "interest"] += 1  # seven rows whose total is no longer the sum
    broken.to_csv(root / "broken.csv", index=False)
    result = cli.fit(root / "broken.csv", "--constraints", str(root / "rules.toml"), "--json")
    assert result.code == 5, result.err
    [line] = result.err.strip().splitlines()
    assert "rule 2 (sum: loan_amount = principal + interest) is broken by 7 of the original's 400 rows" in line, line


def test_a_rules_file_naming_a_missing_column_fails_before_anything_is_sent(setup: tuple[Cli, Path]):
    cli, root = setup
    (root / "typo.toml").write_text('[[rule]]\ntype = "positive"\ncolumn = "principle"\n')
    result = cli.fit(root / "loans.csv", "--constraints", str(root / "typo.toml"))
    assert result.code == 2, result.err
    assert result.err.strip() == "Error: rule 1 (positive) names 'principle', which is not a column of loans.csv"
