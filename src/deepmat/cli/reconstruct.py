"""``deepmat reconstruct``: statistically equivalent microstructures from one image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepmat.cli.options import console, fail
from deepmat.errors import DeepmatError


def reconstruct(
    image: Annotated[Path, typer.Argument(help="a k-phase image (PNG/TIFF mask, or .npy)")],
    output: Annotated[Path, typer.Option("-o", "--output", help=".png, .npy or .h5")],
    method: Annotated[str, typer.Option(help="descriptors, gram or annealing")] = "descriptors",
    size: Annotated[int, typer.Option(help="side of the 2-D reconstruction (px)")] = 128,
    three_d: Annotated[
        int | None, typer.Option("--3d", help="reconstruct a cube of this side instead")
    ] = None,
    phases: Annotated[
        int | None, typer.Option(help="threshold a grey micrograph into this many phases")
    ] = None,
    iterations: Annotated[
        int,
        typer.Option(
            help="steps per level of 20 L-BFGS-B loss evaluations each, or annealing sweeps"
        ),
    ] = 50,
    levels: Annotated[int, typer.Option(help="multigrid levels (descriptors)")] = 2,
    r_max: Annotated[int, typer.Option(help="longest 2-point vector (px)")] = 16,
    max_length: Annotated[int, typer.Option(help="longest lineal-path segment (px)")] = 16,
    checkpoint: Annotated[
        Path | None, typer.Option(help="file to checkpoint to and resume from")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Reconstruct a microstructure of any size (or a 3-D volume) that has the image's
    statistics: 2-point correlations, lineal path and volume fractions (descriptors), VGG-19
    Gram matrices (gram, Li et al.), or 2-point pixel-swap annealing (Yeong–Torquato)."""
    from deepmat.data.micrographs import read_phase_map
    from deepmat.workflows.reconstruction import (
        ReconstructionSettings,
        compare,
        save_labels,
    )
    from deepmat.workflows.reconstruction import (
        reconstruct as run,
    )

    try:
        original = read_phase_map(image, phases)
        settings = ReconstructionSettings(
            method=method,
            size=(three_d,) * 3 if three_d else (size, size),
            iterations=iterations,
            levels=levels,
            r_max=r_max,
            max_length=max_length,
            seed=seed,
        )
        result = run(original, settings, checkpoint)
        save_labels(result.labels, output)
        errors = compare(original, result.labels, r_max, max_length)
    except DeepmatError as exc:
        fail(exc)
    console.print(f"{output}: {result.labels.shape} in {result.seconds:.1f} s")
    console.print(json.dumps(errors, indent=1))
