"""Unit: conditional sampling: the repaired condition vector reaches the generator, and large requests finish."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctgan_server import conditioning, generation, sampling
from ctgan_server.wire import UsageError


@pytest.fixture(scope="module")
def model():
    """A real CTGAN with three discrete columns; one epoch is enough to check where conditions go."""
    import torch
    from ctgan import CTGAN

    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "a": rng.choice(["x", "y"], n),
            "b": rng.choice(["p", "q", "r"], n, p=[0.6, 0.3, 0.1]),
            "v": rng.normal(0, 1, n),
            "c": rng.choice(["k1", "k2", "k3", "k4"], n, p=[0.55, 0.3, 0.1, 0.05]),
        }
    )
    torch.manual_seed(0)
    fitted = CTGAN(epochs=1, verbose=False)
    fitted.fit(frame, ["a", "b", "c"])
    conditioning.repair(fitted)
    return fitted


def _generator_inputs(model, column: str, value: str) -> tuple[np.ndarray, bool]:
    """The condition part of what the generator was given while steering, and whether it was in training mode."""
    seen: list = []
    original = model._generator.forward

    def spy(inputs):
        seen.append((inputs.detach().cpu().numpy(), model._generator.training))
        return original(inputs)

    model._generator.forward = spy
    try:
        generation.generate(model, 50, (column, value))
    finally:
        del model._generator.forward
    inputs, training = seen[0]
    return inputs[:, model._embedding_dim :], training


@pytest.mark.parametrize("column, value, block", [("b", "r", 1), ("c", "k4", 2), ("c", "k2", 2)])
def test_a_condition_on_a_later_discrete_column_sets_its_own_bit(model, column, value, block):
    sampler = model._data_sampler
    info = model._transformer.convert_column_name_value_to_id(column, value)
    cond, training = _generator_inputs(model, column, value)
    # Upstream #273: unrepaired, every condition landed in the first column's block (offset 0).
    expected = sampler._discrete_column_cond_st[block] + info["value_id"]
    assert (cond.argmax(axis=1) == expected).all() and (cond.sum(axis=1) == 1).all()
    start, size = sampler._discrete_column_cond_st[block], sampler._discrete_column_n_category[block]
    assert start <= expected < start + size and start > 0
    assert training is False  # batch-norm on running statistics, or the constant condition is normalised away
    assert model._generator.training  # and the model is left as it was


def test_steering_picks_the_rarest_condition_the_model_knows(model):
    assert conditioning.steering(model, {"a": "x", "c": "k4"}) == ("c", "k4")
    assert conditioning.steering(model, {"a": "x", "b": "r"}) == ("b", "r")
    assert conditioning.steering(model, {"a": "nope"}) is None


def test_every_row_meets_every_condition(model):
    chunks = list(sampling._chunks(model, 120, {"a": "x", "c": "k2"}))
    rows = pd.concat(chunks)
    assert len(rows) == 120 and set(rows["a"]) == {"x"} and set(rows["c"]) == {"k2"}


class _NinetyPercent:
    """A stand-in model: 90% of its rows meet a=yes.  Real CTGAN at 5M rows would take minutes.

    It has no transformer, so ``generation.generate`` falls back to its ``sample``.
    """

    def __init__(self):
        import torch

        self.rng = np.random.default_rng(1)
        self.drawn = 0
        self._generator = torch.nn.Linear(1, 1)  # only switched to eval mode and back

    def sample(self, n):
        self.drawn += n
        return pd.DataFrame({"a": np.where(self.rng.random(n) < 0.9, "yes", "no")})


def test_a_large_request_for_a_common_condition_finishes_and_keeps_every_match():
    fake = _NinetyPercent()
    total = sum(len(chunk) for chunk in sampling._chunks(fake, 5_000_000, {"a": "yes"}))
    assert total == 5_000_000
    # surplus matches are carried over, not thrown away: about 1/0.9 draws per row, not 1.2/0.9
    assert fake.drawn < 5_000_000 / 0.9 * 1.05


def test_the_draw_budget_grows_with_the_request_and_still_ends(monkeypatch):
    class Rare(_NinetyPercent):
        def sample(self, n):
            self.drawn += n
            return pd.DataFrame({"a": np.where(self.rng.random(n) < 0.001, "yes", "no")})

    monkeypatch.setattr(sampling, "BASE_DRAWS", 100_000)
    fake = Rare()
    with pytest.raises(UsageError, match="too rare"):
        list(sampling._chunks(fake, 1_000, {"a": "yes"}))
    assert fake.drawn == sampling.draw_budget(1_000) == 100_000 + sampling.DRAWS_PER_ROW * 1_000
