"""The ML runtime on the server: is ctgan there, which versions, which device."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
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
    """Apply thread settings and return the torch device to use (see ``pick_device``)."""
    import torch

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    cuda = torch.cuda.is_available()
    free = free_gpu_memory(torch.cuda.device_count()) if cuda and settings.device == "auto" else []
    return torch.device(pick_device(settings.device, cuda, free))


def free_gpu_memory(count: int) -> list[int]:
    """Each visible GPU's free bytes, asked in a child process; all zero (so the first) when there is no choice or no answer.

    ``torch.cuda.mem_get_info`` opens a CUDA context on each GPU it asks
    about, a few hundred MB that would stay on every other GPU for the
    whole job; a child process's contexts go when it exits.  Only a
    multi-GPU server pays for it (about the time of one torch import).
    """
    if count <= 1:
        return [0] * count
    code = "import torch; print(*(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())))"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
        free = [int(n) for n in done.stdout.split()]
    except (OSError, subprocess.TimeoutExpired, ValueError):
        free = []
    return free if len(free) == count else [0] * count


def pick_device(setting: str, cuda_available: bool, free_bytes: list[int]) -> str:
    """The device a job uses: ``[service] device``, with "auto" taking the GPU with the most free memory.

    ``free_bytes`` is each visible GPU's free memory, in torch's numbering:
    under Slurm, or with CUDA_VISIBLE_DEVICES set by an admin, torch sees
    only the GPUs granted, so "auto" picks among those.  Without "auto" it is
    not needed.  A bare "cuda" is torch's current device (cuda:0 unless
    changed); "cuda:N" pins one GPU.
    """
    if setting == "auto":
        if not cuda_available or not free_bytes:
            return "cpu"
        # The first of the freest: on an idle multi-GPU box jobs still start on cuda:0.
        return f"cuda:{max(range(len(free_bytes)), key=lambda i: (free_bytes[i], -i))}"
    if setting.startswith("cuda") and not cuda_available:
        raise ServerEnvironmentError(f"[service] device = {setting!r} but torch sees no CUDA device")
    return setting


def device_name(device: Any) -> str:
    """What the model JSON records beside the device: the GPU's name, or the CPU's."""
    import platform

    if getattr(device, "type", "cpu") == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    try:  # Linux names the CPU model here; platform.processor() often gives only "x86_64"
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


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
