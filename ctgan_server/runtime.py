"""The ML runtime on the server: is ctgan there, which versions, which device."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from typing import Any

from .settings import Settings
from .wire import ServerEnvironmentError

# Models are pickles of these libraries' objects: a model only loads safely
# with the exact versions that wrote it.
PINNED_LIBRARIES = ("torch", "ctgan", "rdt")


def ctgan_available() -> bool:
    """Cheap check (no import) used by `hello` so listing stays fast."""
    return all(importlib.util.find_spec(name) is not None for name in ("ctgan", "torch", "pandas"))


def require_ctgan() -> None:
    if not ctgan_available():
        raise ServerEnvironmentError(
            f"ctgan is not installed for the server's interpreter ({sys.executable}); "
            "on the server run: python -m pip install -r requirements.txt"
        )


def library_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in PINNED_LIBRARIES}


def configure_torch(settings: Settings) -> Any:
    """Apply thread settings and return the torch device to use."""
    import torch

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if settings.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise ServerEnvironmentError(f"[service] device = {settings.device!r} but torch sees no CUDA device")
    return torch.device(settings.device)


def seed_everything(seed: int | None) -> None:
    """Seed every generator CTGAN draws from, or reseed them from the OS.

    The unseeded case matters as much: torch starts each process from the same
    fixed seed, so without a reseed two `sample` runs would give the same rows.
    CTGAN's own ``set_random_state`` is avoided on purpose: it pickles the
    state into the model, and every later unseeded sample would repeat.
    """
    import random

    import numpy as np
    import torch

    if seed is None:
        torch.seed()
        np.random.seed()
        random.seed()
    else:
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
