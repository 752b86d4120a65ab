"""End to end through the CLI: messy CSVs (dates, IDs, rare text, gaps, odd separators) fit and sample back faithfully.

Most tests share one fitted model per corpus file (module-scoped), on the
embedded local transport; a few run the same job over a real sshd.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from pathlib import Path

import pandas as pd
import pytest

from tests import messy_corpus as corpus
from tests.helpers import Cli, Result, as_user, make_server, run_cli, write_client_config

USER = "alice"
_outs = count()


# -- helpers -------------------------------------------------------------------------


@dataclass
class Shared:
    config: Path
    server: Path
    data: Path
    base: Path

    def out_dir(self) -> Path:
        return self.base / f"out{next(_outs)}"


@dataclass
class Fitted:
    csv: Path
    result: Result
    model: str
    meta: dict


def _fitted(config: Path, server: Path, csv: Path, *extra: str, epochs: int = 1) -> Fitted:
    result = Cli(config, USER).fit(csv, "--yes", "--json", *extra, epochs=epochs)
    assert result.code == 0, result.err
    model = json.loads(result.out)["model"]
    return Fitted(csv, result, model, _meta(server, model))


def _meta(server: Path, model: str) -> dict:
    return json.loads((server / "model_database" / USER / model.replace(".gz", ".json")).read_text())


def _sample(config: Path, model: str, rows: int, out: Path, *extra: str) -> Result:
    opts, stdin = as_user(USER)
    return run_cli(config, *opts, "sample", model, "--rows", str(rows), "--out", str(out), *extra, input=stdin)


def _sampled_file(config: Path, model: str, rows: int, out: Path, *extra: str) -> Path:
    result = _sample(config, model, rows, out, *extra)
    assert result.code == 0, result.err
    files = list(out.iterdir())
    assert len(files) == 1, files
    return files[0]


def _assert_one_error_line(result: Result, code: int) -> None:
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err, result.err
    errors = [line for line in result.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.err


def _staged(server: Path) -> list[Path]:
    folder = server / "original_data" / USER
    return list(folder.iterdir()) if folder.exists() else []


def _flat(text: str) -> str:
    return " ".join(text.split())


def _assert_warnings_shown(fitted: Fitted) -> None:
    """Every plan warning is also printed on stderr (rich may re-wrap it, so compare whitespace-free)."""
    for warning in fitted.meta["warnings"]:
        assert _flat(warning) in _flat(fitted.result.err), (warning, fitted.result.err)


def _parse_dates(values, fmt: str) -> list[datetime]:
    """Parse every value with ``fmt``; values that do not fit fail the test with an assertion, not a ValueError."""
    parsed, unfit = [], []
    for value in values:
        try:
            parsed.append(datetime.strptime(str(value), fmt))
        except ValueError:
            unfit.append(value)
    assert not unfit, f"{len(unfit)} values are not written as {fmt}, e.g. {unfit[:5]}"
    return parsed


# -- module-scoped fixtures: one server, one fit per corpus file ---------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    base = tmp_path_factory.mktemp("messy")
    server = make_server(base / "server")
    client = base / "client"
    (client / "home").mkdir(parents=True)
    config = write_client_config(
        client / "config.toml", {"host": "local", "server_dir": str(server), "python": sys.executable}, client
    )
    data = base / "data"
    data.mkdir()
    return Shared(config, server, data, base)


@pytest.fixture(scope="module")
def patients(shared: Shared) -> Fitted:
    csv = corpus.patients(shared.data)
    return _fitted(shared.config, shared.server, csv, *corpus.PATIENT_OVERRIDES, "--seed", "5", epochs=2)


@pytest.fixture(scope="module")
def patients_original(patients: Fitted) -> pd.DataFrame:
    return pd.read_csv(patients.csv)


@pytest.fixture(scope="module")
def patients_synthetic(shared: Shared, patients: Fitted) -> pd.DataFrame:
    """400 rows (>= 300, so missing-value rates can be compared)."""
    return pd.read_csv(_sampled_file(shared.config, patients.model, 400, shared.out_dir(), "--seed", "3"))


@pytest.fixture(scope="module")
def seeded_pair(shared: Shared) -> tuple[str, str]:
    csv = corpus.small_seeded(shared.data)
    first = _fitted(shared.config, shared.server, csv, "--seed", "5")
    second = _fitted(shared.config, shared.server, csv, "--seed", "5")
    assert first.model != second.model
    return first.model, second.model


@pytest.fixture(scope="module")
def seeded_sample_bytes(shared: Shared, seeded_pair: tuple[str, str]) -> bytes:
    return _sampled_file(shared.config, seeded_pair[0], 50, shared.out_dir(), "--seed", "3").read_bytes()


# -- the plan ------------------------------------------------------------------------


def test_fit_json_prints_only_the_model_name(patients: Fitted):
    assert json.loads(patients.result.out) == {"model": patients.model}


def test_plan_table_is_printed_before_training(patients: Fitted):
    err = patients.result.err
    assert "Data integrity check" in err, err
    assert "epoch 1/2" in err, err
    assert err.index("Data integrity check") < err.index("epoch 1/2")


def test_plan_lists_every_column_with_its_dtype(patients: Fitted, patients_original: pd.DataFrame):
    columns = patients.meta["columns"]
    assert [c["name"] for c in columns] == list(patients_original.columns)
    assert [c["dtype"] for c in columns] == list(patients_original.dtypes.astype(str))
    for c in columns:
        assert {"name", "dtype", "kind", "nulls", "distinct", "reason"} <= set(c), c
        assert c["nulls"] == int(patients_original[c["name"]].isna().sum()), c


def test_plan_gives_each_column_its_kind(patients: Fitted):
    kinds = {c["name"]: c["kind"] for c in patients.meta["columns"]}
    assert list(kinds) == list(corpus.PATIENT_KINDS)
    wrong = {
        name: (kind, corpus.PATIENT_KINDS[name])
        for name, kind in kinds.items()
        if kind
        not in (corpus.PATIENT_KINDS[name] if isinstance(corpus.PATIENT_KINDS[name], tuple) else (corpus.PATIENT_KINDS[name],))
    }
    assert not wrong, f"(got, expected): {wrong}"


def test_plan_warns_about_empty_and_mixed_type_columns(patients: Fitted):
    warnings = patients.meta["warnings"]
    assert any("empty_notes" in w and "empty" in w.replace("empty_notes", "").lower() for w in warnings), warnings
    assert any("dose" in w and "mixed" in w.lower() for w in warnings), warnings
    _assert_warnings_shown(patients)


def test_unique_integers_are_not_identifiers_without_id(patients: Fitted):
    """row_number is unique per row, but numbers become identifiers only with --id."""
    by_name = {c["name"]: c for c in patients.meta["columns"]}
    assert by_name["row_number"]["kind"] == "continuous"
    assert by_name[corpus.NUMERIC_ID]["kind"] == "identifier"


# -- what sample gives back ----------------------------------------------------------


def test_sample_keeps_columns_order_and_dtypes(patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame):
    assert len(patients_synthetic) == 400
    assert list(patients_synthetic.columns) == list(patients_original.columns)
    # The --ignore'd text column comes back empty, which pandas can only read as float64.
    compared = [c for c in patients_original.columns if c != corpus.IGNORED]
    assert dict(patients_synthetic[compared].dtypes.astype(str)) == dict(patients_original[compared].dtypes.astype(str))


@pytest.mark.parametrize("column", corpus.INTEGER_COLUMNS)
def test_integer_columns_come_back_whole(patients_synthetic: pd.DataFrame, column: str):
    """Including `visits`, integers with gaps that pandas reads as float64."""
    values = patients_synthetic[column].dropna()
    assert len(values) > 0
    assert (values % 1 == 0).all(), values[values % 1 != 0].head().tolist()


@pytest.mark.parametrize("column", corpus.NUMERIC_RANGE_COLUMNS)
def test_numbers_stay_within_original_range(patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame, column: str):
    low, high = patients_original[column].min(), patients_original[column].max()
    values = patients_synthetic[column].dropna()
    assert values.between(low, high).all(), (low, high, values[~values.between(low, high)].head().tolist())


@pytest.mark.parametrize("column", corpus.DISCRETE_COLUMNS)
def test_discrete_columns_only_hold_original_values(
    patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame, column: str
):
    new = set(patients_synthetic[column].dropna()) - set(patients_original[column].dropna())
    assert not new, new


def test_high_cardinality_text_keeps_only_frequent_values(patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame):
    counts = patients_original[corpus.HIGH_CARD_TEXT].value_counts()
    allowed = set(counts[counts >= 5].index) | {corpus.OTHER_TOKEN}
    values = set(patients_synthetic[corpus.HIGH_CARD_TEXT].dropna())
    assert values, "the column came back empty"
    assert values <= allowed, sorted(values - allowed)[:10]


def test_missing_rates_match_original(patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame):
    original = patients_original.drop(columns=[corpus.IGNORED]).isna().mean()
    synthetic = patients_synthetic.drop(columns=[corpus.IGNORED]).isna().mean()
    off = {c: (round(original[c], 3), round(synthetic[c], 3)) for c in original.index if abs(original[c] - synthetic[c]) > 0.1}
    assert not off, f"missing-value rate (original, synthetic) differs by more than 0.1: {off}"


@pytest.mark.parametrize("column", sorted(corpus.ID_PATTERNS))
def test_text_identifiers_are_fresh_unique_and_shaped(
    patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame, column: str
):
    pattern = re.compile(corpus.ID_PATTERNS[column])
    assert patients_original[column].map(lambda v: bool(pattern.match(v))).all()  # the premise
    ids = patients_synthetic[column]
    assert ids.notna().all()
    assert ids.is_unique, ids[ids.duplicated()].head().tolist()
    assert ids.map(lambda v: bool(pattern.match(str(v)))).all(), (
        ids[~ids.map(lambda v: bool(pattern.match(str(v))))].head().tolist()
    )
    reused = set(ids) & set(patients_original[column])
    assert not reused, reused


def test_uuid_identifiers_stay_version_4(patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame):
    """All original visit_uuid values match the UUID-4 regex (fixed "4" and variant digit), so new ones must too."""
    assert patients_original["visit_uuid"].str.match(corpus.UUID4_PATTERN).all()  # the premise
    ids = patients_synthetic["visit_uuid"].astype(str)
    wrong = ids[~ids.str.match(corpus.UUID4_PATTERN)]
    assert wrong.empty, f"{len(wrong)} of {len(ids)} do not match {corpus.UUID4_PATTERN}, e.g. {wrong.head(3).tolist()}"


def test_numeric_id_is_unique_fresh_and_within_range(patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame):
    original, ids = patients_original[corpus.NUMERIC_ID], patients_synthetic[corpus.NUMERIC_ID]
    assert ids.notna().all() and ids.is_unique
    assert ids.between(original.min(), original.max()).all()
    assert not set(ids) & set(original)


@pytest.mark.parametrize("column", sorted(corpus.DATE_COLUMNS))
def test_dates_keep_their_format_and_range(patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame, column: str):
    fmt, regex = corpus.DATE_COLUMNS[column]
    pattern = re.compile(regex)
    values = patients_synthetic[column].dropna().astype(str)
    assert len(values) > 0
    wrong = [v for v in values if not pattern.match(v)]
    assert not wrong, wrong[:5]
    original = _parse_dates(patients_original[column].dropna(), fmt)
    parsed = _parse_dates(values, fmt)
    assert min(original) <= min(parsed) and max(parsed) <= max(original), (min(parsed), max(parsed), min(original), max(original))


@pytest.mark.parametrize(
    "column, min_new_share", [("seen_at", 0.5), ("discharged", 0.5), ("admitted", 0.0), ("birth_date", 0.0), ("follow_up", 0.0)]
)
def test_dates_are_generated_not_copied(
    patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame, column: str, min_new_share: float
):
    """Second- and minute-resolution times are mostly new; day-resolution dates at least not all copied."""
    values = patients_synthetic[column].dropna()
    new = ~values.isin(set(patients_original[column].dropna()))
    assert new.any(), f"every {column} value was copied from the original"
    assert new.mean() > min_new_share, new.mean()


def test_forced_datetime_integer_column(patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame):
    """--datetime lab_date: yyyymmdd integers come back as valid yyyymmdd integers within the original dates."""
    column, fmt, regex = corpus.FORCED_DATE_COLUMN
    values = patients_synthetic[column].dropna().astype("int64").astype(str)
    assert values.str.match(regex).all(), values.head().tolist()
    parsed = _parse_dates(values, fmt)  # fails on 20211345 and the like
    original = _parse_dates(patients_original[column], fmt)
    assert min(original) <= min(parsed) and max(parsed) <= max(original)


def test_constant_empty_and_ignored_columns(patients_synthetic: pd.DataFrame):
    assert (patients_synthetic["site"] == "north").all()
    assert patients_synthetic["empty_notes"].isna().all()
    assert patients_synthetic[corpus.IGNORED].isna().all(), "an --ignore'd column comes back empty"


def test_forced_discrete_and_continuous_columns(patients_original: pd.DataFrame, patients_synthetic: pd.DataFrame):
    """--discrete rating keeps to the 15 original values; --continuous floor stays whole and in range."""
    assert set(patients_synthetic[corpus.FORCED_DISCRETE]) <= set(patients_original[corpus.FORCED_DISCRETE])
    floor = patients_synthetic[corpus.FORCED_CONTINUOUS]
    assert (floor % 1 == 0).all() and floor.between(patients_original["floor"].min(), patients_original["floor"].max()).all()


# -- conditions ------------------------------------------------------------------------


def test_condition_on_a_later_discrete_column(shared: Shared, patients: Fitted):
    """`sex` is the first discrete column; `ward` is a later one, and this value holds a comma and a space."""
    synthetic = pd.read_csv(_sampled_file(shared.config, patients.model, 30, shared.out_dir(), "--condition", "ward=D, annex"))
    assert len(synthetic) == 30
    assert (synthetic["ward"] == "D, annex").all(), synthetic["ward"].value_counts(dropna=False).to_dict()


def test_two_conditions_at_once(shared: Shared, patients: Fitted):
    out = shared.out_dir()
    synthetic = pd.read_csv(
        _sampled_file(shared.config, patients.model, 20, out, "--condition", "ward=B", "--condition", "stage=2")
    )
    assert len(synthetic) == 20
    assert (synthetic["ward"] == "B").all(), synthetic["ward"].value_counts(dropna=False).to_dict()
    assert (synthetic["stage"] == 2).all(), synthetic["stage"].value_counts(dropna=False).to_dict()


def test_condition_on_a_bool_column(shared: Shared, patients: Fitted):
    synthetic = pd.read_csv(_sampled_file(shared.config, patients.model, 20, shared.out_dir(), "--condition", "smoker=True"))
    assert len(synthetic) == 20
    assert synthetic["smoker"].dtype == bool and synthetic["smoker"].all(), (
        synthetic["smoker"].value_counts(dropna=False).to_dict()
    )


@pytest.mark.parametrize("condition", ["no_such_column=1", "ward=Z"], ids=["unknown-column", "unknown-value"])
def test_bad_condition_is_a_usage_error(shared: Shared, patients: Fitted, condition: str):
    out = shared.out_dir()
    result = _sample(shared.config, patients.model, 10, out, "--condition", condition)
    _assert_one_error_line(result, 2)
    assert not out.exists() or not list(out.iterdir())


# -- seeds -------------------------------------------------------------------------------


def test_same_fit_seed_gives_identical_samples(shared: Shared, seeded_pair: tuple[str, str], seeded_sample_bytes: bytes):
    other = _sampled_file(shared.config, seeded_pair[1], 50, shared.out_dir(), "--seed", "3").read_bytes()
    assert other == seeded_sample_bytes


def test_same_sample_seed_twice_gives_identical_files(shared: Shared, seeded_pair: tuple[str, str], seeded_sample_bytes: bytes):
    again = _sampled_file(shared.config, seeded_pair[0], 50, shared.out_dir(), "--seed", "3").read_bytes()
    assert again == seeded_sample_bytes


def test_unseeded_samples_differ(shared: Shared, seeded_pair: tuple[str, str]):
    first = _sampled_file(shared.config, seeded_pair[0], 50, shared.out_dir()).read_bytes()
    second = _sampled_file(shared.config, seeded_pair[0], 50, shared.out_dir()).read_bytes()
    assert first != second


# -- overrides and bad data (fresh server each, nothing trains) ----------------------------


@pytest.mark.parametrize("flag", ["--discrete", "--continuous", "--datetime", "--id", "--ignore"])
def test_override_of_a_missing_column_is_a_usage_error(cli: Cli, server_dir: Path, tmp_path: Path, flag: str):
    csv = corpus.small_seeded(tmp_path)
    result = cli.fit(csv, flag, "no_such_col")
    _assert_one_error_line(result, 2)
    assert "no such column" in result.err
    assert not _staged(server_dir)


@pytest.mark.parametrize("name", sorted(corpus.BAD_FILES))
def test_bad_file_is_refused_in_one_line_and_leaves_nothing(cli: Cli, server_dir: Path, tmp_path: Path, name: str):
    make, words = corpus.BAD_FILES[name]
    result = cli.fit(make(tmp_path))
    # Too many columns is a server limit ([service] max_columns, exit 13); the rest is unusable data.
    _assert_one_error_line(result, 13 if name == "too_many_columns" else 5)
    assert any(word in result.err for word in words), result.err
    assert not _staged(server_dir)
    assert not list((server_dir / "model_database").rglob("*.gz"))


# -- files that work, with or without warnings ------------------------------------------


def test_excel_utf8_file_with_bom_and_crlf_works(shared: Shared):
    fitted = _fitted(shared.config, shared.server, corpus.utf8_bom(shared.data))
    assert [c["name"] for c in fitted.meta["columns"]] == ["city", "temp"]
    synthetic = pd.read_csv(_sampled_file(shared.config, fitted.model, 20, shared.out_dir()))
    assert list(synthetic.columns) == ["city", "temp"]
    assert set(synthetic["city"]) <= {"Zürich", "Kraków", "São Paulo", "Malmö"}


def test_one_column_file_fits_with_a_warning(shared: Shared):
    fitted = _fitted(shared.config, shared.server, corpus.one_column(shared.data))
    assert [c["name"] for c in fitted.meta["columns"]] == ["reading"]
    warnings = fitted.meta["warnings"]
    assert any(("one column" in w.lower() or "single column" in w.lower()) for w in warnings), warnings
    _assert_warnings_shown(fitted)


@pytest.mark.parametrize("sep, word", [(";", ";"), ("\t", "tab")], ids=["semicolon", "tab"])
def test_other_separator_is_detected_warned_and_kept(shared: Shared, sep: str, word: str):
    csv = corpus.separated(shared.data, sep)
    fitted = _fitted(shared.config, shared.server, csv)
    warnings = fitted.meta["warnings"]
    assert any(word in w.lower() for w in warnings), warnings
    _assert_warnings_shown(fitted)
    written = _sampled_file(shared.config, fitted.model, 20, shared.out_dir())
    assert written.read_text().splitlines()[0] == sep.join(["kind", "count", "value"])
    original, synthetic = pd.read_csv(csv, sep=sep), pd.read_csv(written, sep=sep)
    assert list(synthetic.dtypes.astype(str)) == list(original.dtypes.astype(str))


# -- over a real sshd (one server and one fit shared by these tests) -----------------------


@pytest.fixture(scope="module")
def ssh_shared(sshd, tmp_path_factory: pytest.TempPathFactory) -> Shared:
    """Like conftest's ssh_config, but module-scoped so that one fit serves several tests."""
    base = tmp_path_factory.mktemp("messy_ssh")
    server = make_server(base / "server")
    client = base / "client"
    (client / "home").mkdir(parents=True)
    settings = sshd.client_settings(server)
    config = write_client_config(client / "config.toml", settings, client)
    data = base / "data"
    data.mkdir()
    return Shared(config, server, data, base)


@pytest.fixture(scope="module")
def ssh_visits(ssh_shared: Shared) -> Fitted:
    return _fitted(ssh_shared.config, ssh_shared.server, corpus.ward_visits(ssh_shared.data), "--seed", "5")


def test_messy_round_trip_with_condition_over_ssh(ssh_shared: Shared, ssh_visits: Fitted):
    assert {c["name"]: c["kind"] for c in ssh_visits.meta["columns"]} == {
        "patient_id": "identifier",
        "seen_at": "datetime",
        "ward": "discrete",
        "score": "continuous",
    }
    assert not _staged(ssh_shared.server)
    out = ssh_shared.out_dir()
    synthetic = pd.read_csv(_sampled_file(ssh_shared.config, ssh_visits.model, 40, out, "--condition", "ward=B", "--seed", "3"))
    original = pd.read_csv(ssh_visits.csv)
    assert list(synthetic.dtypes.astype(str)) == list(original.dtypes.astype(str))
    assert (synthetic["ward"] == "B").all(), synthetic["ward"].value_counts(dropna=False).to_dict()
    ids = synthetic["patient_id"]
    assert ids.is_unique and ids.str.match(r"^PT-\d{6}$").all() and not set(ids) & set(original["patient_id"])
    assert synthetic["seen_at"].str.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$").all()
    assert original["seen_at"].min() <= synthetic["seen_at"].min() and synthetic["seen_at"].max() <= original["seen_at"].max()


def test_unknown_condition_over_ssh_is_one_line(ssh_shared: Shared, ssh_visits: Fitted):
    out = ssh_shared.out_dir()
    result = _sample(ssh_shared.config, ssh_visits.model, 10, out, "--condition", "ward=Q")
    _assert_one_error_line(result, 2)
    assert not out.exists() or not list(out.iterdir())


def test_bad_file_over_ssh_is_one_line_and_leaves_nothing(ssh_shared: Shared):
    result = Cli(ssh_shared.config, USER).fit(corpus.latin1(ssh_shared.data))
    _assert_one_error_line(result, 5)
    assert "UTF-8" in result.err
    assert not _staged(ssh_shared.server)
