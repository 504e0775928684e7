"""Labelled microstructure data sets: random two-phase structures solved by FFT elasticity.

This is how the homogenization (structure → effective stiffness) and localization
(structure → local strain) models get their training data. Each chunk of samples is one Dask
task that draws its microstructures (sample i from ``SeedSequence(seed).spawn(n)[i]``, as
:func:`deepmat.data.microstructures.generate` does) and solves them; finished chunks stream
into a :class:`~deepmat.data.voxels.VoxelDatasetWriter` in sample order, so the file is the
same however the work was split and large sets never sit in memory.

Phases: phase 0 is the matrix (Young's modulus ``matrix_modulus``, default 1), phase 1 the
inclusion with Young's modulus ``contrast`` times the matrix's; both Poisson ratios default
to 0.3. Labels:

- "stiffness": the 6×6 Mandel effective stiffness. ``load_cases`` = k < 6 solves only the
  first k unit strains and fills the other columns with NaN (``load_cases=1`` gives C[:, 0],
  i.e. C11, C21, C31 and the shear couplings, at a sixth of the cost); the file's
  ``stiffness_columns`` attribute lists the columns computed.
- "strain": the local strain field (float32) under ``macro_strain``, by default uniaxial
  ε11 = 10⁻³ (Mandel [1e-3, 0, 0, 0, 0, 0]).

A 2-D structure (n1, n2) is solved as the 3-D grid (n1, n2, 1): a columnar structure extruded
along axis 3; its strain field is stored on the 2-D grid.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.console import Console

from deepmat.data.microstructures import MicrostructureSpec, chunked, spawn_seeds
from deepmat.data.voxels import VoxelDataset, VoxelDatasetWriter, read_voxel_dataset
from deepmat.errors import ConfigError, DataError
from deepmat.parallel import map_chunks, progress_bar, runs_in_parallel
from deepmat.physics.elasticity import IsotropicPhase, effective_stiffness, solve

if TYPE_CHECKING:
    from distributed import Client

LABELS = ("stiffness", "strain")
DEFAULT_MACRO_STRAIN = (1e-3, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to label a chunk (pickled to processes and clusters)."""

    spec: MicrostructureSpec
    phases: tuple[IsotropicPhase, IsotropicPhase]
    label: str
    load_cases: int
    macro_strain: tuple[float, ...]
    tol: float
    max_iter: int
    single_thread: bool


@dataclass
class GenerateReport:
    """What :func:`generate_dataset` wrote and how long it took."""

    path: Path
    n: int
    label: str
    wall_seconds: float
    solve_seconds: float
    mean_iterations: float
    unconverged: int
    mean_volume_fraction: float

    def summary(self) -> str:
        """One line for the console."""
        return (
            f"{self.n} microstructures with {self.label} labels written to {self.path} in "
            f"{self.wall_seconds:.1f} s (solver {self.solve_seconds:.1f} s, "
            f"{self.solve_seconds / self.n:.3g} s per sample); mean solver iterations "
            f"{self.mean_iterations:.1f}; mean volume fraction {self.mean_volume_fraction:.3f}"
            + (f"; {self.unconverged} solves did not converge" if self.unconverged else "")
        )


def generate_dataset(
    path: str | Path,
    spec: MicrostructureSpec,
    n: int,
    *,
    contrast: float = 50.0,
    label: str = "stiffness",
    seed: int = 0,
    client: Client | str | None = None,
    scheduler: str = "threads",
    workers: int | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
    macro_strain: Sequence[float] = DEFAULT_MACRO_STRAIN,
    load_cases: int = 6,
    matrix_modulus: float = 1.0,
    poisson_ratios: tuple[float, float] = (0.3, 0.3),
    chunk_size: int = 4,
    progress: bool = True,
    console: Console | None = None,
) -> GenerateReport:
    """Generate ``n`` microstructures of ``spec``, label them by FFT elasticity, write HDF5.

    One Dask task labels ``chunk_size`` samples; ``client`` (a ``distributed.Client`` or a
    scheduler address) runs the tasks on a cluster, otherwise the local ``scheduler``
    (threads, processes or synchronous) with ``workers`` workers. When tasks run side by side
    each uses one torch thread. See the module docstring for phases and labels.
    """
    if label not in LABELS:
        raise ConfigError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    if not (isinstance(load_cases, int) and 1 <= load_cases <= 6):
        raise ConfigError(f"load_cases must be an integer from 1 to 6, got {load_cases!r}")
    if not tol > 0 or max_iter < 1:
        raise ConfigError(f"tol must be positive and max_iter at least 1, got {tol}, {max_iter}")
    if not isinstance(spec, MicrostructureSpec):
        raise DataError(f"spec must be a MicrostructureSpec, got {type(spec).__name__}")
    if not contrast > 0:
        raise DataError(f"contrast must be positive, got {contrast}")
    phases = (
        IsotropicPhase(matrix_modulus, poisson_ratios[0]),
        IsotropicPhase(contrast * matrix_modulus, poisson_ratios[1]),
    )
    macro = tuple(float(e) for e in macro_strain)
    if len(macro) != 6 or not np.all(np.isfinite(macro)):
        raise DataError(f"macro_strain must be a finite Mandel 6-vector, got {macro_strain!r}")
    parallel = runs_in_parallel(client, scheduler, workers)
    job = _Job(spec, phases, label, load_cases, macro, tol, max_iter, single_thread=parallel)
    chunks = chunked(spawn_seeds(seed, n), chunk_size)
    results = map_chunks(
        partial(_label_chunk, job), chunks, client=client, scheduler=scheduler, workers=workers
    )
    attrs = {**_describe(job), "contrast": float(contrast), "seed": seed, "n_requested": n}
    console = console or Console(stderr=True)
    threads = torch.get_num_threads()
    start = time.perf_counter()
    solve_seconds, iterations, unconverged, volume = 0.0, [], 0, 0.0
    try:
        with (
            VoxelDatasetWriter(path, {**attrs, "complete": False}) as writer,
            progress_bar(console, progress) as bar,
        ):
            task = bar.add_task(f"labelling ({label})", total=n)
            for result in results:
                micro = result["microstructures"]
                writer.append(
                    micro,
                    stiffness=result.get("stiffness"),
                    strain=result.get("strain"),
                    iterations=result["iterations"],
                    solve_seconds=result["solve_seconds"],
                )
                solve_seconds += float(result["solve_seconds"].sum())
                iterations.append(result["iterations"])
                unconverged += int(result["unconverged"])
                volume += float(micro.reshape(len(micro), -1).mean(axis=1).sum())
                bar.advance(task, len(micro))
            wall = time.perf_counter() - start
            mean_iterations = float(np.concatenate(iterations).mean())
            writer.set_attrs(
                complete=True,
                wall_seconds=wall,
                solve_seconds_total=solve_seconds,
                solve_seconds_per_sample=solve_seconds / n,
                mean_iterations=mean_iterations,
                unconverged=unconverged,
            )
    finally:
        torch.set_num_threads(threads)
    return GenerateReport(
        Path(path), n, label, wall, solve_seconds, mean_iterations, unconverged, volume / n
    )


def _describe(job: _Job) -> dict[str, Any]:
    """The root attributes that say how the labels were made."""
    attrs: dict[str, Any] = {
        "label": job.label,
        "phases": [
            {"youngs_modulus": p.youngs_modulus, "poisson_ratio": p.poisson_ratio}
            for p in job.phases
        ],
        "solver": {"method": "fourier-galerkin-cg", "tol": job.tol, "max_iter": job.max_iter},
        "spec": job.spec.to_dict(),
    }
    if job.label == "stiffness":
        attrs.update(load_cases=job.load_cases, stiffness_columns=list(range(job.load_cases)))
    else:
        attrs.update(macro_strain=list(job.macro_strain))
    return attrs


def _label_chunk(job: _Job, seeds: Sequence[np.random.SeedSequence]) -> dict[str, np.ndarray]:
    """Draw and solve one chunk of samples: arrays with a leading sample axis."""
    if job.single_thread:
        torch.set_num_threads(1)
    micro = np.stack([job.spec.sample(seed) for seed in seeds])
    labels, iterations, seconds, unconverged = [], [], [], 0
    for structure in micro:
        grid = structure if structure.ndim == 3 else structure[:, :, None]
        start = time.perf_counter()
        if job.label == "stiffness":
            value, reports = _stiffness(grid, job)
        else:
            field = solve(grid, job.phases, job.macro_strain, job.tol, job.max_iter)
            value = field.strain.reshape(6, *structure.shape).astype(np.float32)
            reports = [field.report]
        seconds.append(time.perf_counter() - start)
        labels.append(value)
        iterations.append([r.iterations for r in reports])
        unconverged += sum(not r.converged for r in reports)
    return {
        "microstructures": micro,
        job.label: np.stack(labels),
        "iterations": np.asarray(iterations, dtype=np.int32),
        "solve_seconds": np.asarray(seconds),
        "unconverged": np.asarray(unconverged),
    }


def _stiffness(grid: np.ndarray, job: _Job) -> tuple[np.ndarray, list]:
    """The 6×6 Mandel stiffness, NaN in the columns beyond ``job.load_cases``."""
    if job.load_cases == 6:
        return effective_stiffness(grid, job.phases, job.tol, job.max_iter)
    stiffness = np.full((6, 6), np.nan)
    reports = []
    for column in range(job.load_cases):
        field = solve(grid, job.phases, np.eye(6)[column], job.tol, job.max_iter)
        stiffness[:, column] = field.mean_stress
        reports.append(field.report)
    return stiffness, reports


SHARED_ATTRS = ("label", "phases", "solver", "contrast", "load_cases", "stiffness_columns")


def generate_families(
    specs: Sequence[MicrostructureSpec],
    n: int,
    *,
    seed: int = 0,
    console: Console | None = None,
    **options: Any,
) -> tuple[VoxelDataset, list[GenerateReport]]:
    """``n`` labelled microstructures in equal shares of several families, in one data set.

    Family i is generated by :func:`generate_dataset` (``options`` passed on) with seed
    ``seed + 1000 i`` into a scratch file; the families are concatenated in order, with
    the attributes they share and the list of family specs.
    """
    parts, reports = [], []
    with tempfile.TemporaryDirectory(prefix="deepmat-families-") as scratch:
        for i, spec in enumerate(specs):
            path = Path(scratch) / f"family{i}.h5"
            count = n // len(specs) + (i < n % len(specs))
            reports.append(
                generate_dataset(
                    path, spec, count, seed=seed + 1000 * i, console=console, **options
                )
            )
            parts.append(read_voxel_dataset(path))
    attrs = {key: parts[0].attrs[key] for key in SHARED_ATTRS if key in parts[0].attrs}
    attrs["families"] = [spec.to_dict() for spec in specs]

    def joined(name: str) -> np.ndarray | None:
        arrays = [getattr(part, name) for part in parts]
        return None if arrays[0] is None else np.concatenate(arrays)

    data = VoxelDataset(
        microstructures=joined("microstructures"),
        stiffness=joined("stiffness"),
        strain=joined("strain"),
        iterations=joined("iterations"),
        solve_seconds=joined("solve_seconds"),
        attrs=attrs,
    )
    return data, reports
