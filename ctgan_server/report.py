"""Quality and privacy of a synthetic table, as aggregates only.

Used twice: by the fit job while it still holds the training rows in memory
(the original is already deleted from disk), and by `evaluate` on the client.
Only aggregates leave this module: scores, rates, distance quantiles,
histograms and correlation matrices, never a row.

Definitions:

- **Fidelity** is sdmetrics' single-table ``QualityReport`` (Column Shapes,
  Column Pair Trends, their mean as the score).
- **Exact-match rate**: the share of synthetic rows identical to some
  training row, over all columns.
- **DCR** (distance to closest record) uses the Gower-style distance that
  sdmetrics' ``dcr_utils.calculate_dcr`` documents: per column, the absolute
  difference divided by the real column's range for numbers, 0 or 1 for
  categories (and for missing vs present), averaged over columns.  Reported
  as the median and 5th percentile over synthetic rows.
- **NNDR** (nearest-neighbour distance ratio), as MOSTLY AI's QA report
  documents it: a synthetic row's distance to its closest training row
  divided by that to its second closest; low values flag rows that sit on
  one particular real record.  Reported as the 10th percentile.
- **DCR share** (needs a holdout): sdmetrics' ``DCROverfittingProtection``
  breakdown, the share of synthetic rows closer to the training rows than to
  the holdout rows; 50% means no memorisation (MOSTLY AI's QA report uses the
  same reading).
- **DCR baseline protection**: sdmetrics' ``DCRBaselineProtection``
  definition, the synthetic rows' median DCR divided by that of uniformly
  random rows (capped at 1), computed here on the same neighbour search as
  DCR (see ``_baseline_protection``).
- **Linkage rate**: the share of synthetic rows that sit closer to their
  nearest training row than that row's own nearest other training row does,
  so that the synthetic row points at that one record rather than at a
  neighbourhood of several: the "too close to one person" test behind
  Avatar's hidden rate, for a generator, where no synthetic row has an
  original of its own.  Ideal 0; a copy scores 1; rows drawn afresh from
  the same population score about half (see ``_linkage_rate``).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd

MAX_ROWS = 10_000  # distances are computed on at most this many rows per table
SDMETRICS_DCR_ROWS = 1_000  # sdmetrics' DCR metrics compare every pair of rows
# Uniformly random rows whose median DCR is the baseline: a quarter as many
# as the synthetic rows asked about, so the baseline adds at most a quarter
# to the distance search (flights: 1,000 queries, 250 random rows), within
# these bounds.  Against sdmetrics' own DCRBaselineProtection on whole tables
# (3,000 training and 1,500 other rows of credit_data, diamonds and penguins,
# 5 seeds) the score differed by at most 0.0025 at 1,000 rows, 0.0096 at 250.
BASELINE_ROWS = 1_000
MIN_BASELINE_ROWS = 250
HIST_BINS = 20
TOP_CATEGORIES = 20
SEED = 0
Progress = Callable[[str], None]


def metadata_for(frame: pd.DataFrame) -> dict[str, Any]:
    """sdmetrics metadata from dtypes, the same rule on server and client: numbers numerical, the rest categorical."""
    columns = {}
    for name in frame.columns:
        series = frame[name]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        columns[str(name)] = {"sdtype": "numerical" if numeric else "categorical"}
    return {"columns": columns}


def _scorable(frame: pd.DataFrame) -> pd.DataFrame:
    """Column names as strings, and columns with no values at all left out (sdmetrics cannot score them).

    The frame itself when nothing needs changing: the fit job's training table
    may be a million rows, and a copy of it costs its size again.
    """
    keep = [c for c in frame.columns if frame[c].notna().any()]
    if len(keep) == len(frame.columns) and all(isinstance(c, str) for c in keep):
        return frame
    frame = frame[keep].copy()
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _subsample(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    return frame.sample(limit, random_state=SEED) if len(frame) > limit else frame


def quality(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, Any]:
    with warnings.catch_warnings():
        # sdmetrics 0.32 marks the single-table module deprecated in favour of a
        # multi-table form; the scores are the same, and this is the form the
        # benchmark and upstream's own docs use for one table.
        warnings.simplefilter("ignore")
        from sdmetrics.reports.single_table import QualityReport

    real, synthetic = _scorable(real), _scorable(synthetic)
    synthetic = synthetic[real.columns]
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real, synthetic, metadata_for(real), verbose=False)
    properties = report.get_properties().set_index("Property")["Score"]
    shapes = report.get_details("Column Shapes")
    return {
        "score": _number(report.get_score()),
        "column_shapes": _number(properties.get("Column Shapes")),
        "column_pair_trends": _number(properties.get("Column Pair Trends")),
        "columns": {str(r["Column"]): _number(r["Score"]) for _, r in shapes.iterrows()},
    }


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


class _Encoder:
    """Rows as vectors whose L1 distance, divided by the column count, is the Gower-style DCR."""

    def __init__(self, real: pd.DataFrame):
        self.columns = list(real.columns)
        self.numeric: dict[str, tuple[float, float]] = {}
        self.categories: dict[str, list[str]] = {}
        for name in self.columns:
            series = real[name]
            if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                low, high = float(series.min()), float(series.max())
                self.numeric[name] = (low, (high - low) or 1.0)
            else:
                self.categories[name] = sorted(series.dropna().astype(str).unique().tolist())

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(frame), self.width))
        at = 0
        for name in self.columns:
            series = frame[name]
            if name in self.numeric:
                low, span = self.numeric[name]
                values = ((pd.to_numeric(series, errors="coerce").astype(float) - low) / span).to_numpy()
                missing = np.isnan(values)
                # A gap against a value costs 1, like a category mismatch: half on each of two coordinates.
                out[:, at] = np.where(missing, 0.0, values)
                out[:, at + 1] = out[:, at + 2] = missing * 0.5
                at += 3
            else:
                # Each of the real categories and "missing" (code k) is a corner
                # of a cross-polytope: code c sits at +-0.5 on axis c // 2, so
                # any two different codes are at L1 distance 1, as one-hot
                # vectors scaled by 0.5 are, in half the coordinates.  The last
                # coordinate flags a category the real data lacks (also at
                # distance 1 from every code).
                categories = self.categories[name]
                codes = pd.Categorical(series.astype(str).where(series.notna()), categories=categories).codes.astype(np.int64)
                codes[series.isna().to_numpy()] = len(categories)
                known = codes >= 0
                rows = np.flatnonzero(known)
                out[rows, at + codes[known] // 2] = np.where(codes[known] % 2 == 0, 0.5, -0.5)
                axes = (len(categories) + 2) // 2
                out[~known, at + axes] = 0.5
                at += axes + 1
        return out

    @property
    def width(self) -> int:
        """Coordinates per encoded row."""
        return 3 * len(self.numeric) + sum((len(c) + 2) // 2 + 1 for c in self.categories.values())


# Up to this many encoded dimensions a k-d tree beats comparing every pair.
# sklearn's "auto" compares every pair from 16 dimensions on; measured on
# diamonds x 6 (324k rows, 47 dimensions, 2,000 queries): every pair 15.6 s,
# ball tree 20.0 s, k-d tree 5.6 s.  The answers are exact either way.
KD_TREE_MAX_DIMENSIONS = 64

# Bounds on the nearest-neighbour search, so that the report of a
# million-row fit takes seconds, not the hour comparing every synthetic row
# with every training row would.  Below them the search is exact over every
# training row.  With a k-d tree, at most KD_TREE_MAX_CANDIDATES training rows
# are searched (324k rows took 25 s).  Comparing every pair costs about one
# second per 1.4e9 (synthetic row, training row, coordinate) triples on the
# 2-core development machine; past BRUTE_FORCE_WORK triples, fewer synthetic
# rows are asked about (down to MIN_QUERIES: an unbiased sample, only a
# noisier one), then fewer training rows are searched (a distance to the
# closest of fewer rows can only be larger: an upper bound, which the notes
# say).  1,000,000 training rows with a free-text column (179 coordinates):
# 1,000 synthetic rows against 139,664 training rows, about 20 s.
KD_TREE_MAX_CANDIDATES = 500_000
BRUTE_FORCE_WORK = 2.5e10
MIN_QUERIES = 1_000

# The linkage rate asks the index again, once per synthetic row tested, for
# its nearest training row's own nearest other row: a second search as big
# as the DCR one if every row were tested.  So a quarter of the synthetic
# rows asked about are tested, at least MIN_LINKAGE_ROWS (all of them below
# that): an unbiased sample of the rate, whose standard error is at most 2.2
# points at 500 rows and 1 point at 2,500 (10,000 synthetic rows).
MIN_LINKAGE_ROWS = 500
# Distances closer than this are a tie: rounding in the L1 sums, not a difference.
TIE = 1e-9


def search_sizes(train_rows: int, query_rows: int, dimensions: int) -> tuple[int, int]:
    """How many synthetic rows to ask about, and among how many training rows to search."""
    if dimensions <= KD_TREE_MAX_DIMENSIONS:
        return query_rows, min(train_rows, KD_TREE_MAX_CANDIDATES)
    if query_rows * train_rows * dimensions <= BRUTE_FORCE_WORK:
        return query_rows, train_rows
    queries = min(query_rows, max(MIN_QUERIES, int(BRUTE_FORCE_WORK // (train_rows * dimensions))))
    return queries, max(2, min(train_rows, int(BRUTE_FORCE_WORK // (queries * dimensions))))


def _index(reference: np.ndarray, k: int) -> Any:
    """An exact L1 nearest-neighbour index over ``reference``, answering ``k`` neighbours by default."""
    from sklearn.neighbors import NearestNeighbors

    algorithm = "kd_tree" if reference.shape[1] <= KD_TREE_MAX_DIMENSIONS else "brute"
    return NearestNeighbors(n_neighbors=min(k, len(reference)), metric="manhattan", algorithm=algorithm, n_jobs=-1).fit(reference)


def privacy(
    train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame | None = None, progress: Progress | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Privacy aggregates, and notes on any subsampling.

    ``progress`` is told each part as it starts: "exact matches", "distances", "baseline", "holdout".
    """
    progress = progress or (lambda part: None)
    notes = []
    train, synthetic = _scorable(train), _scorable(synthetic)
    synthetic = synthetic[train.columns]
    progress("exact matches")
    exact = _exact_match_rate(train, synthetic)

    # Every training row is a candidate neighbour (a copy must score 0)
    # unless the search would take too long (see search_sizes); first the
    # synthetic rows asked about are subsampled.
    encode = _Encoder(train)
    queries, candidates = search_sizes(len(train), min(len(synthetic), MAX_ROWS), encode.width)
    synth_s = _subsample(synthetic, queries)
    if len(synth_s) < len(synthetic):
        notes.append(f"distances computed for {len(synth_s):,} of the {len(synthetic):,} synthetic rows")
    reference = train
    if candidates < len(train):
        reference = _subsample(train, candidates)
        notes.append(
            f"nearest training rows searched among {candidates:,} of the {len(train):,}, chosen at random, to bound the "
            "work: DCR is an upper bound (a closer row may be among the others) and the linkage rate compares with the "
            "searched rows only (a copy of one of the others is not counted); the exact-match rate checks every row"
        )
    width = max(len(train.columns), 1)
    progress("distances")
    searched = encode(reference)
    index = _index(searched, 2)
    distances, nearest = index.kneighbors(encode(synth_s))
    to_train = distances / width
    dcr = to_train[:, 0]
    progress("baseline")
    baseline_rows = min(BASELINE_ROWS, max(MIN_BASELINE_ROWS, len(synth_s) // 4))
    random_dcr = index.kneighbors(encode(_random_rows(train, baseline_rows)), n_neighbors=1)[0][:, 0] / width
    nndr = np.divide(to_train[:, 0], to_train[:, -1], out=np.zeros(len(dcr)), where=to_train[:, -1] > 0)
    result: dict[str, Any] = {
        "exact_match_rate": exact,
        "dcr_median": float(np.median(dcr)),
        "dcr_p5": float(np.percentile(dcr, 5)),
        "nndr_p10": float(np.percentile(nndr, 10)),
        "dcr_share": None,
        "dcr_baseline_protection": _baseline_protection(dcr, random_dcr),
        "linkage_rate": _linkage_rate(index, searched, distances, nearest[:, 0], notes),
        "rows_compared": int(len(synth_s)),
        "holdout_rows": 0,
    }
    if holdout is not None and len(holdout):
        progress("holdout")
        holdout = _scorable(holdout).reindex(columns=train.columns)
        result["dcr_share"] = _overfitting_share(train, synthetic, holdout, notes)
        result["holdout_rows"] = int(len(holdout))
    return result, notes


def _exact_match_rate(train: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    """The share of synthetic rows equal, as text in every column, to some training row.

    Column by column, training rows with a value no synthetic row has in that
    column drop out: they cannot equal a synthetic row.  So only a few rows
    of a million-row table are ever written out as text, and the answer is
    the one comparing whole rows gives.
    """
    if not len(synthetic):
        return 0.0
    from pandas.core.util.hashing import combine_hash_arrays

    def hashes(series: pd.Series) -> np.ndarray:
        return pd.util.hash_pandas_object(series.astype(str), index=False).to_numpy()

    rows = np.arange(len(train))
    train_parts: list[np.ndarray] = []
    synthetic_parts: list[np.ndarray] = []
    for name in train.columns:
        theirs, ours = hashes(synthetic[name]), hashes(train[name].iloc[rows])
        kept = np.isin(ours, theirs)
        rows = rows[kept]
        train_parts = [part[kept] for part in train_parts] + [ours[kept]]
        synthetic_parts.append(theirs)
    if not len(rows):
        return 0.0
    keys = combine_hash_arrays(iter(train_parts), len(train_parts))
    return float(np.isin(combine_hash_arrays(iter(synthetic_parts), len(synthetic_parts)), keys).mean())


def _random_rows(train: pd.DataFrame, rows: int) -> pd.DataFrame:
    """Uniformly random rows as sdmetrics' DCRBaselineProtection makes them.

    Per column: whole numbers uniform over min..max, other numbers uniform
    over the range, anything else one of the distinct values, each equally
    likely; then gaps at the column's own missing rate.  Seeded, so a report
    is repeatable.
    """
    rng = np.random.default_rng(SEED)
    out = {}
    for name in train.columns:
        series = train[name]
        present = series.dropna()
        if not len(present):
            values = pd.Series([np.nan] * rows)
        elif pd.api.types.is_integer_dtype(series):
            values = pd.Series(rng.integers(int(present.min()), int(present.max()) + 1, size=rows))
        elif pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = pd.Series(rng.uniform(float(present.min()), float(present.max()), size=rows))
        else:
            values = pd.Series(rng.choice(present.unique(), size=rows))
        out[name] = values.where(rng.random(rows) >= series.isna().mean())
    return pd.DataFrame(out)


def _baseline_protection(dcr: np.ndarray, random_dcr: np.ndarray) -> float | None:
    """sdmetrics' DCRBaselineProtection score: median DCR of the synthetic rows over that of random rows, at most 1.

    sdmetrics compares every pair of rows, so the report used to run it on
    1,000-row subsamples (2.4 s on diamonds); the neighbour index DCR already
    built answers it against every training row searched.
    """
    baseline = float(np.median(random_dcr)) if len(random_dcr) else 0.0
    if baseline == 0.0:
        return None
    return min(float(np.median(dcr)) / baseline, 1.0)


def _linkage_rate(index: Any, searched: np.ndarray, distances: np.ndarray, nearest: np.ndarray, notes: list[str]) -> float | None:
    """The share of synthetic rows s linked to one training row t: d(s, t) < d(t, t's nearest other training row).

    ``distances`` are each synthetic row's two closest training rows, as the
    DCR search found them among the ``searched`` rows, and ``nearest`` is the
    closest one's position there.  Ties never link:

    - a training row with an exact duplicate (its nearest other row at 0) is
      two records, so a synthetic row on it points at no single one (the
      exact-match rate still counts it);
    - neither does a synthetic row equally close to two training rows,
      which also keeps the figure independent of how the index orders ties.

    Fresh rows from the training rows' population are linked about half the
    time (0.47-0.56 for holdout rows of credit_data, diamonds and penguins),
    as two neighbours are often each other's nearest, so a model that
    generalises lands near there, not at the ideal 0; a copy scores 1.
    """
    if searched.shape[0] < 2 or not len(nearest):
        return None
    rows = min(len(nearest), max(MIN_LINKAGE_ROWS, len(nearest) // 4))
    tested = np.arange(len(nearest))
    if rows < len(tested):
        tested = np.sort(np.random.default_rng(SEED).choice(tested, rows, replace=False))
        notes.append(f"linkage rate tested on {rows:,} of the {len(nearest):,} synthetic rows compared, chosen at random")
    # Each distinct training row is asked once; its first neighbour is itself (or a duplicate), at distance 0.
    found, back = np.unique(nearest[tested], return_inverse=True)
    own = index.kneighbors(searched[found], n_neighbors=2)[0][:, 1][back]
    closest, second = distances[tested, 0], distances[tested, 1]
    return float(np.mean((closest < own - TIE) & (closest < second - TIE)))


def _overfitting_share(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, notes: list[str]) -> float | None:
    """sdmetrics' DCROverfittingProtection: the share of synthetic rows closer to training than to holdout.

    Training and holdout are subsampled to the same size, so that for a model
    that memorised nothing either side is equally likely to be closer.
    """
    from sdmetrics.single_table import DCROverfittingProtection

    rows = min(SDMETRICS_DCR_ROWS, len(train), len(holdout), len(synthetic))
    notes.append(f"DCR share (sdmetrics) on {rows:,} rows each of training, holdout and synthetic data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        breakdown = DCROverfittingProtection.compute_breakdown(
            _subsample(train, rows), _subsample(synthetic, rows), _subsample(holdout, rows), metadata_for(train), None
        )
    return _number(breakdown["synthetic_data_percentages"]["closer_to_training"])


def plots(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, Any]:
    """Per-column distributions (shares) and correlation matrices: what the HTML report draws."""
    real, synthetic = _scorable(real), _scorable(synthetic)
    columns = []
    numeric = []
    for name in real.columns:
        r, s = real[name], synthetic[name]
        if pd.api.types.is_numeric_dtype(r) and not pd.api.types.is_bool_dtype(r):
            numeric.append(name)
            edges = np.histogram_bin_edges(r.dropna().astype(float), bins=HIST_BINS)
            columns.append(
                {
                    "name": name,
                    "kind": "numeric",
                    "bins": [float(e) for e in edges],
                    "real": _shares(np.histogram(r.dropna().astype(float), bins=edges)[0]),
                    "synthetic": _shares(
                        np.histogram(pd.to_numeric(s, errors="coerce").dropna().clip(edges[0], edges[-1]), bins=edges)[0]
                    ),
                }
            )
        else:
            counts = r.dropna().astype(str).value_counts()
            top = counts.index[:TOP_CATEGORIES].tolist()
            rest = len(counts) > TOP_CATEGORIES
            columns.append(
                {
                    "name": name,
                    "kind": "categorical",
                    "categories": top + (["(others)"] if rest else []),
                    "real": _category_shares(r, top, rest),
                    "synthetic": _category_shares(s, top, rest),
                }
            )
    correlation = None
    if len(numeric) >= 2:
        correlation = {
            "columns": numeric,
            "real": _matrix(real[numeric].astype(float).corr()),
            "synthetic": _matrix(synthetic[numeric].apply(pd.to_numeric, errors="coerce").corr()),
        }
    return {"columns": columns, "correlation": correlation}


def _category_shares(series: pd.Series, top: list[str], rest: bool) -> list[float]:
    text = series.dropna().astype(str)
    total = max(len(text), 1)
    shares = [float((text == c).sum()) / total for c in top]
    if rest:  # everything outside the real data's most common categories, as one bar
        shares.append(float((~text.isin(top)).sum()) / total)
    return shares


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [float(c) / total if total else 0.0 for c in counts]


def _matrix(frame: pd.DataFrame) -> list[list[float | None]]:
    return [[_number(v) for v in row] for row in frame.to_numpy()]


def verdict(report: dict[str, Any]) -> str:
    q, p = report["quality"], report["privacy"]
    parts = [f"{p['exact_match_rate']:.1%} exact matches"]
    if p.get("dcr_share") is not None:
        parts.append(f"DCR share {p['dcr_share']:.0%}")
    elif p.get("dcr_baseline_protection") is not None:
        parts.append(f"DCR baseline protection {p['dcr_baseline_protection']:.0%}")
    score = q.get("score")
    return f"quality {score:.2f}; privacy: " + ", ".join(parts) if score is not None else "privacy: " + ", ".join(parts)


def build(
    train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """The whole report: quality against the training rows, privacy, plots, notes.

    ``progress`` is told the name of each part as it starts (see ``privacy``).
    """
    progress = progress or (lambda part: None)
    notes = []
    real_q, synth_q = _subsample(_scorable(train), MAX_ROWS), _subsample(_scorable(synthetic), MAX_ROWS)
    if len(real_q) < len(train) or len(synth_q) < len(synthetic):
        notes.append(f"quality scored on subsamples of at most {MAX_ROWS:,} rows")
    progress("quality")
    report: dict[str, Any] = {"quality": quality(real_q, synth_q)}
    q = report["quality"]
    if q["column_pair_trends"] is None:
        # sdmetrics 0.32 scores only column pairs that are strongly related in
        # the real data; with none, the property is undefined, not zero.
        notes.append("no column pairs are strongly related in the real data, so Column Pair Trends is not scored")
        if q["score"] is None:
            q["score"] = q["column_shapes"]
    report["privacy"], privacy_notes = privacy(train, synthetic, holdout, progress)
    progress("plots")
    report["plots"] = plots(real_q, synth_q)
    report["notes"] = notes + privacy_notes
    report["verdict"] = verdict(report)
    return report
