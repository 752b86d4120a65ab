"""Unit: the toolkit's own generation path gives what ctgan's `sample` would, faster and batch-size independent."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from ctgan_server import generation


@pytest.fixture(scope="module")
def model():
    """A real CTGAN (two epochs) with multimodal continuous and skewed discrete columns."""
    import torch
    from ctgan import CTGAN

    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(
        {
            "colour": rng.choice(["red", "green", "blue"], n, p=[0.6, 0.3, 0.1]),
            "income": np.concatenate([rng.normal(20, 2, n // 2), rng.normal(80, 5, n - n // 2)]),
            "size": rng.choice(["S", "M", "L", "XL"], n),
            "score": rng.exponential(3.0, n),
        }
    )
    torch.manual_seed(0)
    np.random.seed(0)
    fitted = CTGAN(epochs=2, verbose=False)
    fitted.fit(frame, ["colour", "size"])
    return fitted


def test_decode_matches_upstream_inverse_transform(model):
    """For one-hot spans, decode gives exactly the frame upstream's inverse_transform builds, dtypes included."""
    transformer = model._transformer
    rng = np.random.default_rng(1)
    n = 2_000
    parts, values, indices = [], [], []
    for info in transformer._column_transform_info_list:
        if info.column_type == "continuous":
            value = rng.uniform(-1.3, 1.3, n)  # past +-1 too: both sides must clip
            values.append(value)
            parts.append(value[:, None])
        width = info.output_info[-1].dim
        index = rng.integers(0, width, n)
        indices.append(index)
        one_hot = np.zeros((n, width))
        one_hot[np.arange(n), index] = 1.0
        parts.append(one_hot)
    expected = transformer.inverse_transform(np.concatenate(parts, axis=1))
    pd.testing.assert_frame_equal(generation.decode(transformer, values, indices), expected)


def test_generate_returns_what_sample_returns(model):
    ours, theirs = generation.generate(model, 3_000), model.sample(3_000)
    assert list(ours.columns) == list(theirs.columns) and ours.dtypes.equals(theirs.dtypes) and len(ours) == 3_000
    assert set(ours["colour"]) <= {"red", "green", "blue"} and set(ours["size"]) <= {"S", "M", "L", "XL"}


def test_generation_runs_in_eval_mode_and_leaves_the_model_as_it_was(model):
    seen: list[bool] = []
    original = model._generator.forward

    def spy(inputs):
        seen.append(model._generator.training)
        return original(inputs)

    model._generator.forward = spy
    try:
        generation.generate(model, 10)
    finally:
        del model._generator.forward
    assert seen == [False]
    assert model._generator.training


def _distribution(frame: pd.DataFrame) -> np.ndarray:
    """Category shares and continuous deciles, as one vector."""
    shares = [frame[c].value_counts(normalize=True).reindex(sorted(frame[c].unique()), fill_value=0) for c in ("colour", "size")]
    deciles = [frame[c].quantile(np.linspace(0.1, 0.9, 9)) / frame[c].std() for c in ("income", "score")]
    return np.concatenate([s.to_numpy() for s in shares] + [d.to_numpy() for d in deciles])


def test_in_eval_mode_a_row_does_not_depend_on_its_batch(model):
    """The reason generation runs in eval mode: the same inputs give the same rows however they are split."""
    import torch

    width = model._embedding_dim + model._data_sampler.dim_cond_vec()
    inputs = torch.randn(64, width)
    with generation.eval_mode(model), torch.no_grad():
        whole = model._generator(inputs)
        split = torch.cat([model._generator(inputs[:5]), model._generator(inputs[5:])])
    assert torch.allclose(whole, split, atol=1e-5)
    # In train mode batch-norm makes each row depend on its batch.  (A copy:
    # a train-mode pass moves the running statistics the fixture relies on.)
    training = copy.deepcopy(model._generator).train()
    with torch.no_grad():
        assert not torch.allclose(training(inputs), torch.cat([training(inputs[:5]), training(inputs[5:])]), atol=1e-3)


def test_the_output_distribution_does_not_depend_on_the_batch_size(model, monkeypatch):
    """Rows drawn 16 at a time or 8,000 at a time: the same category shares and deciles, within sampling noise."""
    import torch

    samples = []
    for batch in (16, 8_000):
        monkeypatch.setattr(generation, "BATCH_ROWS", batch)
        torch.manual_seed(5)
        np.random.seed(5)
        samples.append(generation.generate(model, 8_000))
    small, large = (_distribution(s) for s in samples)
    assert small.shape == large.shape
    # Two 8,000-row samples of one distribution differ by up to ~0.03 here.
    assert np.abs(small - large).max() < 0.05, np.abs(small - large).max()


def test_a_seed_gives_the_same_rows(model):
    import torch

    draws = []
    for _ in range(2):
        torch.manual_seed(11)
        np.random.seed(11)
        draws.append(generation.generate(model, 500))
    pd.testing.assert_frame_equal(draws[0], draws[1])
