"""Unit: the project's FastDataTransformer keeps upstream's layout, round-trips values and samples through ctgan."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from ctgan.data_transformer import DataTransformer

from ctgan_server import preprocessing
from ctgan_server.preprocessing import FastDataTransformer, fast_preprocessing


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    n = 3000
    return pd.DataFrame(
        {
            "price": np.concatenate([rng.normal(500, 50, n // 2), rng.normal(5000, 400, n - n // 2)]),
            "cut": rng.choice(["Fair", "Good", "Ideal"], n, p=[0.1, 0.3, 0.6]),
            "depth": rng.normal(61, 1.5, n),
            "colour": rng.choice(list("DEFGHIJ"), n),
        }
    )


def test_layout_is_upstreams(frame, monkeypatch):
    monkeypatch.setattr(preprocessing, "GMM_SAMPLE", 1000)  # the subsample path, on small data
    np.random.seed(0)
    fast, upstream = FastDataTransformer(), DataTransformer()
    fast.fit(frame, ["cut", "colour"])
    upstream.fit(frame, ["cut", "colour"])
    kinds = lambda t: [
        [(span.activation_fn, span.dim if span.activation_fn == "tanh" else None) for span in info] for info in t.output_info_list
    ]
    assert kinds(fast) == kinds(upstream)
    assert [i.column_name for i in fast._column_transform_info_list] == list(frame.columns)
    matrix = fast.transform(frame)
    assert matrix.shape == (len(frame), fast.output_dimensions)
    start = 0
    for info in fast._column_transform_info_list:
        block = matrix[:, start : start + info.output_dimensions]
        if info.column_type == "continuous":
            assert np.all(np.abs(block[:, 0]) <= 0.99) and np.all(block[:, 1:].sum(axis=1) == 1)
        else:
            assert np.all(block.sum(axis=1) == 1)
        start += info.output_dimensions


def test_values_round_trip(frame):
    np.random.seed(1)
    fast = FastDataTransformer()
    fast.fit(frame, ["cut", "colour"])
    back = fast.inverse_transform(fast.transform(frame))
    assert (back["cut"] == frame["cut"]).all() and (back["colour"] == frame["colour"]).all()
    for column in ("price", "depth"):
        np.testing.assert_allclose(back[column].to_numpy(dtype=float), frame[column].to_numpy(), rtol=1e-6, atol=1e-6)


def test_modes_are_drawn_as_rdt_draws_them(frame):
    """The vectorised draw gives each row's mode with rdt's probabilities: the same shares over many rows."""
    np.random.seed(2)
    fast = FastDataTransformer()
    fast.fit(frame[["price"]], [])
    info = fast._column_transform_info_list[0]
    big = pd.concat([frame[["price"]]] * 10, ignore_index=True)
    ours = fast._transform_continuous(info, big)[:, 1:].mean(axis=0)
    theirs = DataTransformer._transform_continuous(fast, info, big)[:, 1:].mean(axis=0)
    np.testing.assert_allclose(ours, theirs, atol=0.01)


def test_a_seed_makes_it_repeatable(frame, monkeypatch):
    monkeypatch.setattr(preprocessing, "GMM_SAMPLE", 1000)
    matrices = []
    for _ in range(2):
        np.random.seed(7)
        fast = FastDataTransformer()
        fast.fit(frame, ["cut", "colour"])
        matrices.append(fast.transform(frame))
    np.testing.assert_array_equal(matrices[0], matrices[1])


def test_a_model_fitted_with_it_samples_through_ctgan_and_reports_progress(frame):
    import torch
    from ctgan import CTGAN

    steps = []
    model = CTGAN(epochs=1, verbose=False)
    with fast_preprocessing(lambda step, column, columns: steps.append((step, column, columns))):
        model.fit(frame, ["cut", "colour"])
    assert isinstance(model._transformer, FastDataTransformer)
    assert steps == [("fit", i, 4) for i in range(1, 5)] + [("transform", i, 4) for i in range(1, 5)]
    buffer = io.BytesIO()
    torch.save(model, buffer)  # the model file holds the transformer; it must unpickle and sample
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    sampled = loaded.sample(200)
    assert list(sampled.columns) == list(frame.columns) and len(sampled) == 200
    assert set(sampled["cut"]) <= {"Fair", "Good", "Ideal"}
    import ctgan.synthesizers.ctgan as ctgan_module

    assert ctgan_module.DataTransformer is DataTransformer  # swapped back after the fit


def test_discrete_blocks_are_rdts_one_hot():
    """The direct one-hot fill gives what rdt's OneHotEncoder gives, gaps and number-like categories included."""
    rng = np.random.default_rng(7)
    n = 500
    frame = pd.DataFrame(
        {
            "word": rng.choice(["a", "b", None, "c d"], n).astype(object),
            "small": rng.choice([1, 2, 3], n),
            "x": rng.normal(0, 1, n),
        }
    )
    np.random.seed(0)
    fast = FastDataTransformer()
    fast.fit(frame, ["word", "small"])
    matrix = fast.transform(frame)
    start = 0
    for info in fast._column_transform_info_list:
        block = matrix[:, start : start + info.output_dimensions]
        if info.column_type == "discrete":
            expected = info.transform.transform(frame[[info.column_name]]).to_numpy()
            np.testing.assert_array_equal(block, expected)
        start += info.output_dimensions
    assert matrix.dtype == np.float32
