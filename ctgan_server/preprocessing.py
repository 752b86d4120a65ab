"""A faster stand-in for ctgan 0.12.1's DataTransformer, with the same output layout.

Where upstream's preprocessing spends its time (diamonds, 54k rows, 2 cores):

- `fit` runs a Bayesian GMM over every row of every continuous column
  (13.3 s).  Here the GMM is fitted on a seeded random subsample of at most
  GMM_SAMPLE rows, as Gretel's ACTGAN does with `cbn_sample_size`; all rows
  are still transformed.
- `transform` starts a joblib/loky process pool (seconds of waiting for
  workers on a 20k-row fit), and rdt's ClusterBasedNormalizer then picks
  each row's mode with one `np.random.choice` call per row.  Here the columns
  run in this process and the modes are drawn for all rows at once.

Everything CTGAN's training loop and sampling read is what upstream builds:
the same `ColumnTransformInfo` list, `output_info_list` and dimensions, and
the same rdt transformers, so a stored model samples through `ctgan` as any
other (`inverse_transform` is upstream's).  ``fast_preprocessing`` swaps the
class in for one `CTGAN.fit`, the way ``fitting.epoch_events`` swaps `tqdm`.

Stored models pickle this class by its path, ``ctgan_server.preprocessing.
FastDataTransformer``: moving or renaming it makes those models unloadable.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np
from ctgan.data_transformer import ColumnTransformInfo, DataTransformer, SpanInfo
from rdt.transformers import ClusterBasedNormalizer

# Rows the mode-finding GMM sees per continuous column.  See the README's
# preprocessing benchmark for how it was chosen.
GMM_SAMPLE = 10_000

# Told about each column as it is fitted, then as it is transformed:
# (step, column number, column count).  A module global, not an attribute:
# the transformer is pickled into the model.
_progress: Callable[[str, int, int], None] | None = None


class FastDataTransformer(DataTransformer):
    """DataTransformer with a subsampled GMM fit and a vectorised, in-process transform."""

    def _fitted(self, info: ColumnTransformInfo) -> ColumnTransformInfo:
        # Upstream's fit appends each column's info after this returns.
        _report("fit", len(self._column_transform_info_list) + 1, len(self._column_raw_dtypes))
        return info

    def _fit_discrete(self, data: Any) -> ColumnTransformInfo:
        return self._fitted(super()._fit_discrete(data))

    def _fit_continuous(self, data: Any) -> ColumnTransformInfo:
        column_name = data.columns[0]
        gm = ClusterBasedNormalizer(
            missing_value_generation="from_column",
            max_clusters=min(len(data), self._max_clusters),
            weight_threshold=self._weight_threshold,
        )
        if len(data) > GMM_SAMPLE:
            # np.random: seeded by `fit --seed`, so a seeded fit stays repeatable.
            rows = np.sort(np.random.choice(len(data), GMM_SAMPLE, replace=False))
            data = data.iloc[rows]
        gm.fit(data, column_name)
        num_components = int(sum(gm.valid_component_indicator))
        return self._fitted(
            ColumnTransformInfo(
                column_name=column_name,
                column_type="continuous",
                transform=gm,
                output_info=[SpanInfo(1, "tanh"), SpanInfo(num_components, "softmax")],
                output_dimensions=1 + num_components,
            )
        )

    def _transform_continuous(self, column_transform_info: ColumnTransformInfo, data: Any) -> np.ndarray:
        """What rdt's ClusterBasedNormalizer.transform gives, with every row's mode drawn in one go."""
        gm = column_transform_info.transform
        values = data.iloc[:, 0].to_numpy(dtype=float).reshape(-1, 1)
        if np.isnan(values).any():
            # Gaps are filled before CTGAN sees a column; should one slip
            # through, upstream's own path handles it.
            return super()._transform_continuous(column_transform_info, data)
        valid = gm.valid_component_indicator
        bgm = gm._bgm_transformer
        means = bgm.means_.reshape(1, -1)[:, valid]
        stds = np.sqrt(bgm.covariances_).reshape(1, -1)[:, valid]
        normalized = (values - means) / (gm.STD_MULTIPLIER * stds)
        probs = bgm.predict_proba(values)[:, valid] + 1e-6
        probs /= probs.sum(axis=1, keepdims=True)
        # One uniform draw per row against the cumulative probabilities: the
        # same distribution as rdt's per-row np.random.choice.
        draws = np.random.random_sample((len(values), 1))
        selected = np.minimum((probs.cumsum(axis=1) < draws).sum(axis=1), probs.shape[1] - 1)
        output = np.zeros((len(values), column_transform_info.output_dimensions))
        output[:, 0] = np.clip(normalized[np.arange(len(values)), selected], -0.99, 0.99)
        output[np.arange(len(values)), selected + 1] = 1.0
        return output

    def transform(self, raw_data: Any) -> np.ndarray:
        """Upstream's transform, into one float32 matrix filled a column at a time.

        Upstream builds every column's float64 block, concatenates them and
        copies the result again with ``astype(float)``: three copies of the
        matrix at once (9.9 GB peak for 1M rows x 390 outputs).  CTGAN's
        training loop turns each batch into float32 anyway
        (``real.astype('float32')``), so it trains on the same numbers.
        Discrete columns are written straight into it (see ``_one_hot``).
        """
        import pandas as pd

        if not isinstance(raw_data, pd.DataFrame):
            return super().transform(raw_data)
        infos = self._column_transform_info_list
        out = np.zeros((len(raw_data), self.output_dimensions), dtype=np.float32)
        at = 0
        for i, info in enumerate(infos):
            data = raw_data[[info.column_name]]
            target = out[:, at : at + info.output_dimensions]
            if info.column_type == "continuous":
                target[:] = self._transform_continuous(info, data)
            elif not self._one_hot(info, data, target):
                target[:] = self._transform_discrete(info, data)
            at += info.output_dimensions
            _report("transform", i + 1, len(infos))
        return out

    @staticmethod
    def _one_hot(info: ColumnTransformInfo, data: Any, target: np.ndarray) -> bool:
        """rdt's OneHotEncoder output for text categories, set in ``target`` (zeros) one cell per row.

        rdt compares every row with every category as Python objects and
        builds int64, then DataFrame, then float64 copies: 12 s and 5 GB for
        a 200-category column of a million rows.  Same result: the category's
        position in ``_uniques``, then the missing-value dummy.  False (nothing
        written) for what this does not cover, left to upstream.
        """
        import pandas as pd

        ohe = info.transform
        if not getattr(ohe, "_dummy_encoded", False) or target.shape[1] != len(ohe.dummies):
            return False
        values = data.iloc[:, 0]
        codes = pd.Categorical(values, categories=ohe._uniques).codes
        rows = np.flatnonzero(codes >= 0)
        target[rows, codes[rows]] = 1.0
        if ohe._dummy_na:
            target[pd.isna(values).to_numpy(), -1] = 1.0
        return True

    def _parallel_transform(self, raw_data: Any, column_transform_info_list: list) -> list:
        # No process pool: starting its workers cost more than the work here.
        return self._synchronous_transform(raw_data, column_transform_info_list)

    def _synchronous_transform(self, raw_data: Any, column_transform_info_list: list) -> list:
        out = []
        for i, info in enumerate(column_transform_info_list):
            data = raw_data[[info.column_name]]
            if info.column_type == "continuous":
                out.append(self._transform_continuous(info, data))
            else:
                out.append(self._transform_discrete(info, data))
            _report("transform", i + 1, len(column_transform_info_list))
        return out


def _report(step: str, column: int, columns: int) -> None:
    if _progress is not None:
        _progress(step, column, columns)


@contextlib.contextmanager
def fast_preprocessing(progress: Callable[[str, int, int], None] | None = None) -> Iterator[None]:
    """Let `CTGAN.fit` build a FastDataTransformer, and report each column fitted and transformed to ``progress``."""
    global _progress
    import ctgan.synthesizers.ctgan as ctgan_module

    original = ctgan_module.DataTransformer
    ctgan_module.DataTransformer, _progress = FastDataTransformer, progress
    try:
        yield
    finally:
        ctgan_module.DataTransformer, _progress = original, None
