"""``deepmat design``: search a generator's latent space for the stiffest microstructure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepmat.cli.options import console, fail
from deepmat.errors import DataError, DeepmatError

#: the generator ``deepmat design`` searches unless told otherwise (shipped with deepmat)
DEFAULT_GENERATOR = "vae-grf32"


def design(
    out: Annotated[Path, typer.Option(help="folder for calls.csv, best.npy and best.png")],
    objective: Annotated[str, typer.Option(help="stiffness component: c11, c22 or c66")] = "c11",
    volume_fraction: Annotated[
        float, typer.Option(help="fraction of phase 1 every design has exactly")
    ] = 0.4,
    budget: Annotated[int, typer.Option(help="FFT solver calls")] = 100,
    generator_name: Annotated[
        str,
        typer.Option("--generator", "--gan", help="saved or pretrained generator (a GAN or a VAE)"),
    ] = DEFAULT_GENERATOR,
    strategy: Annotated[
        str, typer.Option(help="bayesian, random_latent or random_parameters")
    ] = "bayesian",
    batch: Annotated[int, typer.Option(help="candidates per Bayesian step")] = 5,
    initial: Annotated[int, typer.Option(help="prior draws before the first GP fit")] = 10,
    moduli: Annotated[
        tuple[float, float], typer.Option(help="Young's moduli of phases 0 and 1")
    ] = (1.0, 10.0),
    poisson: Annotated[float, typer.Option(help="Poisson's ratio of both phases")] = 0.3,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Find the microstructure with the largest stiffness component at a given volume
    fraction: Bayesian optimisation (BoTorch) over a generator's latent space with the FFT
    elasticity solver in the loop, or a random strategy at the same number of calls."""
    from rich.progress import Progress

    from deepmat import load
    from deepmat.physics.elasticity import IsotropicPhase
    from deepmat.workflows.design import DesignProblem, GRFFamily, run_strategy, write_run

    try:
        problem = DesignProblem(
            objective,
            volume_fraction,
            tuple(IsotropicPhase(e, poisson) for e in moduli),
        )
        generator = load(generator_name)
        family = generator.training.get("data", {}).get("source", {}).get("family")
        if strategy == "random_parameters" and family is None:
            raise DataError(f"{generator_name} was not trained on a parametric family to draw from")
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(strategy.replace("_", " "), total=budget)
            run = run_strategy(
                strategy,
                problem,
                generator,
                GRFFamily(**family) if family else None,
                budget,
                seed,
                batch,
                initial,
                progress=lambda r: bar.update(task, completed=len(r.values)),
            )
        summary = write_run(run, problem, out)
    except DeepmatError as exc:
        fail(exc)
    console.print(json.dumps(summary, indent=1))
    console.print(
        f"best design: {out / 'best.npy'} ({out / 'best.png'}); calls: {out / 'calls.csv'}"
    )
