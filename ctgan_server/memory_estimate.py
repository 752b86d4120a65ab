"""Before CTGAN trains: how much memory the fit needs, and whether the training device has it.

A fit too big for its machine used to end mid-run: a CUDA out-of-memory
traceback, or the kernel's OOM killer (under Slurm with cgroups, the job's
cgroup limit) taking the job with no message at all.  ``refuse_oversized``
estimates the fit's peak once the transformer is fitted, when the encoded
width is known exactly but before the training matrix exists, and refuses
with one line (a LimitError: the job ends FAILED) when the estimate exceeds
what the device has.  The estimate goes into the job's log either way: sizes
and widths only, no value from the data.

What ctgan 0.12.1 holds where: the encoded matrix, the DataSampler's row
lists and every batch drawn from them live in the machine's memory (numpy)
even on a GPU; the networks, Adam's state and each step's activations live
on the training device.  On a CPU both are the same memory.

The coefficients below are measured, not derived: peak RSS of real CPU fits
(torch 2.x, ctgan 0.12.1) against their shapes, from 2,000 to 400,000 rows
and 26 to 1,800 encoded columns: the estimates came within 0.9 to 1.3 times
the measured growth.  tests/test_memory_estimate.py checks the
estimate against a real fit's measured peak.

Stdlib only at import, like ``limits``: torch is imported only to ask a GPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .limits import human_bytes
from .wire import LimitError, event

MiB = 1 << 20

# Weights, their gradients, and Adam's two moment estimates: four float32
# copies of every parameter for as long as training runs.
PARAMETER_COPIES = 4
# Parameter-sized temporaries within a step: Adam's update (weight decay adds
# to a copy of the gradient, the denominator is a square root then a
# division) and the gradient penalty's second-order gradients.  Measured at
# 3 to 5 more copies; the discriminator's first layer, (width + condition) x
# pac x 256, is most of the parameters on wide data.
STEP_TEMPORARY_COPIES = 4
# Float32 values each batch row keeps alive through one step, per value of
# its width through the networks (see ``activation_bytes``): autograd's saved
# tensors, the Gumbel-softmax draws, the gradient penalty's interpolates and
# their gradients, the backward passes' buffers.  Measured at 7 to 11.
ACTIVATION_COPIES = 9
# What a first CPU fit adds whatever its size: torch's kernels paged in, its
# thread pool, oneDNN's scratch space.  Measured at 80 to 100 MiB.
CPU_RUNTIME_BYTES = 80 * MiB
# On a GPU: cuBLAS's workspace and the caching allocator's rounding to whole
# blocks.  An allowance, not a measurement: no GPU is at hand in CI.
CUDA_RUNTIME_BYTES = 256 * MiB
# Float64 values per row and per GMM mode while a continuous column is
# transformed (FastDataTransformer: the mode probabilities, their cumulative
# sums, the normalised values, the column's block).  Measured at 5 to 6.5.
TRANSFORM_FLOATS_PER_MODE = 8
# Row numbers the sampler keeps per discrete column: upstream's per-category
# int64 lists, and fitting._RowDraw's concatenation of them.
ROW_LIST_BYTES = 2 * 8


@dataclass(frozen=True)
class Shape:
    """What the fit's memory depends on: the data as encoded, and CTGAN's settings."""

    rows: int
    width: int  # encoded columns: the transformer's output_dimensions
    categories: tuple[int, ...]  # each discrete column's categories: the condition vector's spans
    modes: int  # components in each continuous column's mixture (max_clusters): transforming scores every row on each
    continuous: int  # continuous columns
    batch: int
    embedding: int
    generator: tuple[int, ...]
    discriminator: tuple[int, ...]
    pac: int
    cell_bytes: int = 4  # the encoded matrix's itemsize: float32 from FastDataTransformer
    transform_copies: int = 1  # matrices alive at once while transforming (upstream's float64 path: 3)

    @property
    def condition(self) -> int:
        return sum(self.categories)


@dataclass
class Estimate:
    """Bytes per part, in the machine's memory (``host``) and on the training device."""

    host: dict[str, int] = field(default_factory=dict)
    device: dict[str, int] = field(default_factory=dict)
    transform: int = 0  # what transforming holds besides the matrix, before the sampler and networks exist

    def host_peak(self) -> int:
        """The matrix, plus the larger of what transforming needs and what training keeps beside it."""
        matrix = self.host.get("matrix", 0)
        return matrix + max(self.transform, sum(self.host.values()) - matrix)

    def cpu_peak(self) -> int:
        # On a CPU the networks train next to the matrix and row lists, after the transform is done.
        matrix = self.host.get("matrix", 0)
        return matrix + max(self.transform, sum(self.host.values()) - matrix + sum(self.device.values()))


def network_parameters(shape: Shape) -> int:
    """The generator's and the discriminator's parameters, layer by layer as ctgan 0.12.1 builds them."""
    count, dim = 0, shape.embedding + shape.condition
    for item in shape.generator:  # Residual: Linear, then BatchNorm's weight, bias and two running statistics
        count += dim * item + item + 4 * item
        dim += item  # each residual concatenates its output to its input
    count += dim * shape.width + shape.width
    dim = (shape.width + shape.condition) * shape.pac  # pac rows side by side make one discriminator input
    for item in shape.discriminator:
        count += dim * item + item
        dim = item
    return count + dim + 1


def activation_bytes(shape: Shape) -> int:
    """One training step's activations: each batch row's values through both networks, ACTIVATION_COPIES times."""
    per_row = 2 * (shape.width + shape.condition) + shape.embedding + sum(shape.generator)
    return ACTIVATION_COPIES * shape.batch * per_row * 4


def transform_bytes(shape: Shape) -> int:
    """What transforming holds besides the finished matrix: one column's working arrays, or upstream's extra copies."""
    column = TRANSFORM_FLOATS_PER_MODE * shape.modes * 8 if shape.continuous else 0
    # A discrete column: its copy out of the frame, pandas' category codes, the rows to set.
    column = max(column, 3 * 8 if shape.categories else 0)
    return shape.rows * (column + (shape.transform_copies - 1) * shape.width * shape.cell_bytes)


def estimate_memory(shape: Shape, device_type: str = "cpu") -> Estimate:
    """Bytes the fit of ``shape`` needs, part by part (see ``Estimate`` for how the parts add up)."""
    discrete = len(shape.categories)
    parameters = network_parameters(shape) * 4
    host = {
        "matrix": shape.rows * shape.width * shape.cell_bytes,
        "row_lists": shape.rows * discrete * ROW_LIST_BYTES,
        # The sampler's category probabilities (float64) and each step's condition vectors and masks.
        "condition_tables": discrete * max(shape.categories, default=0) * 8 + shape.batch * (shape.condition + discrete) * 4,
        # The rows each step draws, in the matrix's dtype, and their float32 copy.
        "batches": shape.batch * shape.width * (shape.cell_bytes + 4),
    }
    device = {
        "networks": parameters * PARAMETER_COPIES,
        "step_temporaries": parameters * STEP_TEMPORARY_COPIES,
        "activations": activation_bytes(shape),
        "runtime": CUDA_RUNTIME_BYTES if device_type == "cuda" else CPU_RUNTIME_BYTES,
    }
    return Estimate(host=host, device=device, transform=transform_bytes(shape))


def shape_of(model: Any, transformer: Any, rows: int) -> Shape:
    """The Shape of a fit, from a CTGAN model and its fitted (not yet applied) DataTransformer."""
    from .preprocessing import FastDataTransformer

    categories: list[int] = []
    continuous = 0
    for spans in transformer.output_info_list:
        if len(spans) == 1 and spans[0].activation_fn == "softmax":  # what ctgan's DataSampler calls discrete
            categories.append(spans[0].dim)
        else:
            continuous += 1
    fast = isinstance(transformer, FastDataTransformer)
    return Shape(
        rows=rows,
        width=int(transformer.output_dimensions),
        categories=tuple(categories),
        # The mixture's every component is scored per row, not only the modes kept.
        modes=min(rows, int(getattr(transformer, "_max_clusters", 10))),
        continuous=continuous,
        batch=int(model._batch_size),
        embedding=int(model._embedding_dim),
        generator=tuple(int(d) for d in model._generator_dim),
        discriminator=tuple(int(d) for d in model._discriminator_dim),
        pac=int(model.pac),
        # Upstream's transform concatenates float64 blocks and copies the result once more.
        cell_bytes=4 if fast else 8,
        transform_copies=1 if fast else 3,
    )


# -- what the device has ------------------------------------------------------------

# cgroup v1 reports "no limit" as a number near 2**63.
NO_LIMIT = 1 << 60
# (limit file, usage file, the memory.stat key of reclaimable page cache), per cgroup version.
CGROUP_V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
CGROUP_V2 = ("memory.max", "memory.current", "inactive_file")


def _number(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):  # absent, or "max"
        return None


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    """The kernel's own estimate of what can be allocated without swapping (MemAvailable), in bytes."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # always in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def cgroup_headroom(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What this process's memory cgroups still allow, the tightest of them; None when none sets a limit.

    Every ancestor counts: Slurm puts its limit on the job's cgroup and runs
    the job in a step's or task's cgroup below it, whose own limit is "max".
    Inactive page cache is left out of the usage, as the kernel reclaims it
    before it would kill anything.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    found: list[int] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            found += _headrooms(root / "memory", path, CGROUP_V1)
        elif not controllers:  # the unified hierarchy (v2); on a hybrid host it holds no memory files
            found += _headrooms(root, path, CGROUP_V2)
    return min(found, default=None)


def _headrooms(mount: Path, path: str, files: tuple[str, str, str]) -> list[int]:
    limit_file, usage_file, inactive_key = files
    parts = [part for part in path.split("/") if part]
    found = []
    # From this process's own cgroup up to the mount's root.  In a container
    # the path may name folders that its mount does not show: they are skipped.
    for depth in range(len(parts), -1, -1):
        folder = mount.joinpath(*parts[:depth])
        limit = _number(folder / limit_file)
        if limit is None or limit >= NO_LIMIT:
            continue
        usage = (_number(folder / usage_file) or 0) - _stat(folder / "memory.stat", inactive_key)
        found.append(max(limit - max(usage, 0), 0))
    return found


def cpu_available() -> int | None:
    """Memory this process may still take: MemAvailable, or its cgroups' limit when that is tighter."""
    known = [n for n in (meminfo_available(), cgroup_headroom()) if n is not None]
    return min(known, default=None)


def cuda_free(device: Any) -> int:
    import torch

    return int(torch.cuda.mem_get_info(device)[0])


# -- the check ----------------------------------------------------------------------


def memory_pools(
    estimate: Estimate, device: Any, host_available: int | None, device_available: int | None
) -> list[dict[str, Any]]:
    """Each memory the fit draws on: what it needs there, and what is available (None: unknown, not checked)."""
    if getattr(device, "type", "cpu") != "cuda":
        return [{"memory": "cpu", "needed": estimate.cpu_peak(), "available": host_available}]
    return [
        {"memory": str(device), "needed": sum(estimate.device.values()), "available": device_available},
        {"memory": "host", "needed": estimate.host_peak(), "available": host_available},
    ]


def refusal(pools: list[dict[str, Any]], shape: Shape, device_label: str) -> LimitError | None:
    """The one-line error for the first memory the fit would overrun, or None when it fits."""
    for pool in pools:
        if pool["available"] is not None and pool["needed"] > pool["available"]:
            place = "of the machine's memory beside the GPU" if pool["memory"] == "host" else f"on {device_label}"
            return LimitError(
                f"this fit needs about {human_bytes(pool['needed'])} {place}, and {human_bytes(pool['available'])} "
                f"is available ({shape.rows:,} rows, encoded as {shape.width:,} columns): "
                "use fewer rows, fewer columns or categories, or a bigger machine"
            )
    return None


def check_fit(model: Any, transformer: Any, rows: int, device: Any, emit: Callable[[dict[str, Any]], None]) -> Estimate:
    """Estimate the fit, log the estimate, and raise a LimitError when it would not fit (see ``refusal``)."""
    shape = shape_of(model, transformer, rows)
    estimate = estimate_memory(shape, device.type)
    cuda = device.type == "cuda"
    pools = memory_pools(estimate, device, cpu_available(), cuda_free(device) if cuda else None)
    emit(
        event(
            "memory",
            device=str(device),
            rows=rows,
            encoded_columns=shape.width,
            condition_columns=shape.condition,
            parts={**estimate.host, "transform": estimate.transform, **estimate.device},
            pools=pools,
        )
    )
    label = str(device)
    if cuda:
        from .runtime import device_name

        label = f"{device} ({device_name(device)})"
    error = refusal(pools, shape, label)
    if error is not None:
        raise error
    return estimate


@contextlib.contextmanager
def refuse_oversized(model: Any, device: Any, emit: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Within it, ``model.fit`` runs ``check_fit`` between fitting its transformer and transforming the rows.

    ctgan 0.12.1's fit has no hook there, but it makes its transformer
    through the module-level name ``DataTransformer`` (which
    ``preprocessing.fast_preprocessing``, entered first, has pointed at
    FastDataTransformer).  That name is swapped for a maker whose transformer
    checks on its first ``transform``: a wrapper set on that one object,
    removed before it runs, so no pickled model carries it.
    """
    import ctgan.synthesizers.ctgan as ctgan_module

    make = ctgan_module.DataTransformer
    made: list[Any] = []

    def checked_transformer(*args: Any, **kwargs: Any) -> Any:
        transformer = make(*args, **kwargs)
        made.append(transformer)

        def transform(raw_data: Any) -> Any:
            del transformer.transform
            check_fit(model, transformer, len(raw_data), device, emit)
            return transformer.transform(raw_data)

        transformer.transform = transform
        return transformer

    ctgan_module.DataTransformer = checked_transformer
    try:
        yield
    finally:
        ctgan_module.DataTransformer = make
        for transformer in made:  # a fit that failed before transforming
            transformer.__dict__.pop("transform", None)
