"""Value protection (`fit --protect`, issue 13 part 3): rare categories and exact extremes never come back.

Over the CLI, one small table is fitted once per level (module-scoped): a
city seen 3 times in 60 rows, a count whose value 7 is seen 3 times, a
true/false column whose False is seen 3 times, and numbers whose minimum
and maximum are each one row's.  Unit tests cover the nearest-kept-value
mapping, the quantile bounds, the levels' numbers and the report's lines.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctgan_host.ui import protection_lines
from ctgan_server.protection import Protection, protection_for, summary
from ctgan_server.schema import build_plan, identifier_records, protected_bounds
from ctgan_server.settings import Settings, load_settings
from ctgan_server.transform import Restorer, nearest_kept, training_frame
from ctgan_server.wire import ConfigError
from tests.helpers import Cli, make_local_setup

ROWS = 60
SAMPLE_ROWS = 5000
RARE_CITY, RARE_KIDS = "Tromso", 7


def table(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "city": ["Oslo"] * 30 + ["Lima"] * 27 + [RARE_CITY] * 3,
            "kids": [0] * 25 + [1] * 20 + [2] * 12 + [RARE_KIDS] * 3,
            "member": [True] * 57 + [False] * 3,
            # 60 distinct whole numbers: more than 10, so continuous, and each extreme is one row's.
            "age": rng.permutation(np.arange(30, 30 + ROWS)),
            "income": rng.normal(50_000, 9_000, ROWS).round(2),
        }
    )
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


# -- over the CLI ----------------------------------------------------------------------


class Fitted:
    def __init__(self, cli: Cli, server: Path, root: Path, level: str):
        result = cli.fit(root / "people.csv", "--yes", "--json", "--protect", level, "--seed", "1", epochs=2)
        assert result.code == 0, result.err
        self.cli, self.server, self.root, self.level = cli, server, root, level
        self.fit_err = result.err
        self.model = json.loads(result.out)["model"]

    @property
    def meta_path(self) -> Path:
        return self.server / "model_database" / "alice" / self.model.replace(".gz", ".json")

    def meta(self) -> dict:
        return json.loads(self.meta_path.read_text())

    @cached_property
    def seeded(self) -> pd.DataFrame:
        """One large seeded sample, shared by the tests of a level."""
        return self.sample(SAMPLE_ROWS, "--seed", "5")

    def sample(self, rows: int, *extra: str) -> pd.DataFrame:
        out = self.root / f"out-{self.level}-{len(list(self.root.glob('out-*')))}"
        result = self.cli("sample", self.model, "--rows", str(rows), "--out", str(out), *extra)
        assert result.code == 0, result.err
        (path,) = out.iterdir()
        return pd.read_csv(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, Path, Path]:
    root = tmp_path_factory.mktemp("protection")
    server, config = make_local_setup(root)
    table().to_csv(root / "people.csv", index=False)
    return Cli(config), server, root


@pytest.fixture(scope="module")
def rare(setup: tuple[Cli, Path, Path]) -> Fitted:
    return Fitted(*setup, "rare")


@pytest.fixture(scope="module")
def unprotected(setup: tuple[Cli, Path, Path]) -> Fitted:
    return Fitted(*setup, "none")


def test_rare_merges_rare_categories_and_never_echoes_an_extreme(rare: Fitted):
    original, synthetic = table(), rare.seeded
    assert len(synthetic) == SAMPLE_ROWS
    assert RARE_CITY not in set(synthetic["city"]) and set(synthetic["city"]) <= {"Oslo", "Lima", "(other)"}
    # Numbers keep their dtype and gain no value: the rare 7 became a kept one.
    assert synthetic["kids"].dtype == np.int64 and set(synthetic["kids"]) <= {0, 1, 2}
    assert synthetic["member"].dtype == bool and set(synthetic["member"]) == {True}
    for column in ("age", "income"):
        low, high = original[column].min(), original[column].max()
        assert not synthetic[column].isin([low, high]).any(), column
        assert synthetic[column].between(low, high).all(), column


def test_rare_is_in_the_plan_the_model_json_and_the_report(rare: Fitted):
    columns = {c["name"]: c for c in rare.meta()["columns"]}
    assert columns["city"]["protection"] == {"level": "rare", "rare_below": 5, "merged": 1}
    assert columns["income"]["protection"]["quantiles"] == [0.001, 0.999]
    # The plan printed at the start of the fit says what was merged and bounded.
    shown = " ".join(rare.fit_err.split())
    assert "merged as (other)" in shown and "nearest kept" in shown and "quantiles" in shown, rare.fit_err
    report = json.loads(rare.cli("report", rare.model, "--json").out)
    assert report["protection"] == {
        "level": "rare",
        "rare_below": 5,
        "categories_merged": 3,
        "columns_merged": 3,
        "quantiles": [0.001, 0.999],
        "columns_bounded": 2,
    }
    text = rare.cli("report", rare.model)
    assert text.code == 0 and "Value protection: rare" in text.out, text.out
    assert "3 categories seen fewer than 5 times merged (3 columns); 2 ranges bounded at the 0.1% and 99.9% quantiles" in text.out


def test_none_is_todays_behaviour(unprotected: Fitted):
    original, synthetic = table(), unprotected.seeded
    # A category seen 3 times in 60 rows comes back, and so do the others.
    assert set(synthetic["city"]) == {"Oslo", "Lima", RARE_CITY}
    assert RARE_KIDS in set(synthetic["kids"])
    # The exact extremes are the plan's bounds, as before protection existed (in a sample they
    # come back only when CTGAN lands on them, so the plan is what is asserted).
    columns = {c["name"]: c for c in unprotected.meta()["columns"]}
    for column in ("age", "income"):
        assert (columns[column]["min"], columns[column]["max"]) == (original[column].min(), original[column].max())
    assert json.loads(unprotected.cli("report", unprotected.model, "--json").out)["protection"]["level"] == "none"


def test_a_model_made_before_protection_samples_as_it_did(unprotected: Fitted):
    before = unprotected.seeded
    meta = unprotected.meta()
    for col in meta["columns"]:
        col.pop("protection", None)
    unprotected.meta_path.write_text(json.dumps(meta))
    pd.testing.assert_frame_equal(unprotected.sample(SAMPLE_ROWS, "--seed", "5"), before)
    report = json.loads(unprotected.cli("report", unprotected.model, "--json").out)
    assert report["protection"] is None


# -- the plan and the training frame -----------------------------------------------------


def test_nearest_kept_value_for_numbers_and_booleans():
    # Kept most common first; a tie goes to the more common neighbour.
    assert nearest_kept(["7", "-3", "1"], ["0", "2", "5"]) == {"7": "5", "-3": "0", "1": "0"}
    assert nearest_kept(["1"], ["2", "0"]) == {"1": "2"}
    assert nearest_kept(["1.5", "9"], ["1", "2.5"]) == {"1.5": "1", "9": "2.5"}
    assert nearest_kept(["False"], ["True"]) == {"False": "True"}


def test_numeric_and_bool_categories_keep_dtype_and_gain_no_value():
    frame = table()
    frame.loc[0, "kids"] = np.nan  # a gap makes the column float, as pandas reads it
    frame["flag"] = pd.Series([True] * 57 + [False] * 2 + [None], dtype=object)  # booleans with a gap read as object
    plan = build_plan(frame, protect="rare")
    columns = {c["name"]: c for c in plan["columns"]}
    assert columns["kids"]["categories"] == ["0", "1", "2"] and "other_token" not in columns["kids"]
    assert columns["flag"]["categories"] == ["True"] and "other_token" not in columns["flag"]
    train, _ = training_frame(frame, plan, 0)
    assert set(train["kids"]) == {"0", "1", "2", columns["kids"]["missing_token"]}
    assert (train["kids"][frame["kids"] == RARE_KIDS] == "2").all()
    restored = Restorer(plan, identifier_records(frame, plan), np.random.default_rng(0))(train)
    assert restored["kids"].dtype == frame["kids"].dtype and set(restored["kids"].dropna()) <= {0, 1, 2}
    assert set(restored["member"]) == {True} and restored["member"].dtype == bool


def test_text_categories_merge_into_other_and_none_keeps_them():
    frame = table()
    rare, none = build_plan(frame, protect="rare"), build_plan(frame)
    assert rare["columns"][0]["categories"] == ["Oslo", "Lima"] and rare["columns"][0]["other_token"] == "(other)"
    assert set(training_frame(frame, rare, 0)[0]["city"]) == {"Oslo", "Lima", "(other)"}
    assert none["columns"][0]["categories"] == ["Oslo", "Lima", RARE_CITY] and "other_token" not in none["columns"][0]


def test_quantile_bounds():
    big = Protection("rare", 5, 0.001, 0.999)
    values = np.arange(10_000.0)
    # Inverted-CDF quantiles: the 10th smallest and 10th largest of 10,000.
    assert protected_bounds(values, None, big) == (9.0, 9990.0)
    # On 60 rows the 0.1% quantile would be the minimum: the bounds stay 5 rows in.
    assert protected_bounds(np.arange(60.0), None, big) == (4.0, 55.0)
    # A minimum many rows hold (a spike of zero debts) is kept.
    debts = np.concatenate([np.zeros(800), np.arange(1.0, 201.0)])
    assert protected_bounds(debts, None, big) == (0.0, 196.0)
    # Distinct values with counts give what the rows themselves give.
    distinct, counts = np.array([3.0, 1.0, 2.0]), np.array([50, 2, 4])
    assert protected_bounds(distinct, counts, big) == protected_bounds(np.repeat(distinct, counts), None, big) == (2.0, 3.0)
    # Never crossed on a tiny table.
    assert protected_bounds(np.array([5.0, 1.0, 9.0]), None, big) == (5.0, 5.0)


def test_continuous_date_and_id_ranges_are_bounded():
    frame = table()
    frame["day"] = pd.date_range("2020-01-01", periods=ROWS).strftime("%Y-%m-%d")
    frame["acct"] = np.arange(ROWS, dtype=np.int64) * 1000 + 10**17  # too big for a float to hold exactly
    frame["row"] = np.arange(1, ROWS + 1)  # row numbers: no room for fresh ones inside narrower bounds
    plan = build_plan(frame, {"id": ["acct", "row"]}, protect="rare")
    columns = {c["name"]: c for c in plan["columns"]}
    assert (columns["age"]["min"], columns["age"]["max"]) == (34, 85)
    assert columns["age"]["reason"] == "numbers; bounded at the 0.1% and 99.9% quantiles"
    assert pd.Timestamp(columns["day"]["datetime"]["min"], unit="s") == pd.Timestamp("2020-01-05")
    assert (columns["acct"]["min"], columns["acct"]["max"]) == (10**17 + 4000, 10**17 + 55000)
    assert (columns["row"]["min"], columns["row"]["max"]) == (1, ROWS) and "quantiles" not in columns["row"]["protection"]
    # CTGAN trains on the rows as they are; sampled values are kept within the bounds.
    train, _ = training_frame(frame, plan, 0)
    assert (train["age"].min(), train["age"].max()) == (30, 89)
    restored = Restorer(plan, identifier_records(frame, plan), np.random.default_rng(0))(train)
    assert restored["age"].between(34, 85).all() and restored["day"].between("2020-01-05", "2020-02-25").all()
    assert restored["acct"].between(10**17 + 4000, 10**17 + 55000).all() and sorted(restored["row"]) == list(range(1, ROWS + 1))
    none = {c["name"]: c for c in build_plan(frame, {"id": ["acct", "row"]})["columns"]}
    assert (none["age"]["min"], none["age"]["max"], none["acct"]["min"]) == (30, 89, 10**17)


def test_the_levels_numbers_and_the_setting(tmp_path: Path):
    assert protection_for("none") == Protection()
    assert protection_for("rare") == Protection("rare", 5, 0.001, 0.999)
    assert protection_for("strict") == Protection("strict", 10, 0.01, 0.99)
    (tmp_path / "config.toml").write_text("[service]\nrare_category_count = 8\n")
    settings = load_settings(tmp_path)
    assert settings.rare_category_count == 8
    assert protection_for("rare", settings).rare_below == 8 and protection_for("strict", settings).rare_below == 16
    (tmp_path / "config.toml").write_text("[service]\nrare_category_count = 0\n")
    with pytest.raises(ConfigError, match="rare_category_count"):
        load_settings(tmp_path)
    plan = build_plan(table(), protect="rare", settings=Settings(server_dir=tmp_path, data_dir=tmp_path, rare_category_count=2))
    assert plan["columns"][0]["categories"] == ["Oslo", "Lima", RARE_CITY]  # seen 3 times: kept at 2


def test_report_lines():
    assert protection_lines(None) == []
    assert protection_lines(summary(build_plan(table())["columns"]))[0].startswith("Value protection: none")
    lines = protection_lines(summary(build_plan(table(), protect="strict")["columns"]))
    assert lines == [
        "Value protection: strict",
        "  3 categories seen fewer than 10 times merged (3 columns); 2 ranges bounded at the 1% and 99% quantiles",
    ]
