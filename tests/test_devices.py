"""Unit: which device a job trains and samples on, from `[service] device` and each visible GPU's free memory."""

from __future__ import annotations

import pytest

from ctgan_server.runtime import device_name, pick_device
from ctgan_server.wire import ServerEnvironmentError

GB = 1 << 30


@pytest.mark.parametrize(
    ("setting", "cuda", "free", "chosen"),
    [
        ("auto", False, [], "cpu"),  # no GPU at all
        ("auto", True, [], "cpu"),  # CUDA built in, none visible (CUDA_VISIBLE_DEVICES="")
        ("auto", True, [8 * GB], "cuda:0"),
        ("auto", True, [1 * GB, 7 * GB, 3 * GB], "cuda:1"),  # the freest, not the first
        ("auto", True, [5 * GB, 5 * GB], "cuda:0"),  # a tie goes to the lowest number
        ("cuda:1", True, [9 * GB, 1 * GB], "cuda:1"),  # pinned by the admin, however busy
        ("cuda", True, [], "cuda"),
        ("cpu", True, [9 * GB], "cpu"),
    ],
)
def test_the_device_follows_the_setting_and_auto_takes_the_freest_gpu(setting, cuda, free, chosen):
    assert pick_device(setting, cuda, free) == chosen


@pytest.mark.parametrize("setting", ["cuda", "cuda:0"])
def test_a_cuda_setting_without_cuda_says_so(setting):
    with pytest.raises(ServerEnvironmentError, match="sees no CUDA device"):
        pick_device(setting, False, [])


def test_the_cpu_is_named():
    import torch

    assert device_name(torch.device("cpu")).strip()


def test_free_memory_is_asked_only_when_there_is_a_choice_and_a_failed_answer_means_the_first_gpu():
    from ctgan_server.runtime import free_gpu_memory

    assert free_gpu_memory(0) == [] and free_gpu_memory(1) == [0]
    # This machine has no GPU: the child process cannot answer for two, so "auto" falls back to cuda:0.
    assert pick_device("auto", True, free_gpu_memory(2)) == "cuda:0"
