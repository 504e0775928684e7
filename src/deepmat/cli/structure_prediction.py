"""``deepmat predict-structure``: candidate crystal structures of a composition, ranked by a
site element model, written as CIFs (a thin shell over
:mod:`deepmat.workflows.structure_prediction`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepmat.cli.options import console, fail, write_table
from deepmat.errors import DeepmatError


def predict_structure(
    composition: Annotated[str, typer.Argument(help="formula of the compound, e.g. LiMnGe")],
    model_dirs: Annotated[
        list[str],
        typer.Option(
            "--model",
            help="trained site element models (saved directories): the geometry-only one, "
            "then optionally one that sees neighbours' elements, weighed as the benchmark chose",
        ),
    ],
    templates: Annotated[
        Path,
        typer.Option(
            help="template library folder (written by benchmarks/structure_prediction.py as "
            "OUT/templates) or a folder of CIF files of known crystals"
        ),
    ],
    out: Annotated[Path, typer.Option(help="folder for the ranked CIFs and candidates.csv")],
    top_k: Annotated[int, typer.Option(help="candidates to write")] = 10,
    energy_model: Annotated[
        str | None,
        typer.Option(
            help="re-rank the first --rerank-top by this formation-energy model, "
            "e.g. cgcnn-mp-eform"
        ),
    ] = None,
    rerank_top: Annotated[int, typer.Option(help="candidates the energy model re-ranks")] = 20,
    allow_unseen: Annotated[
        bool,
        typer.Option(
            help="give elements the site model never saw a uniform likelihood "
            "(with a warning) instead of stopping"
        ),
    ] = False,
) -> None:
    """Predict the crystal structure of COMPOSITION: every template of its anonymous formula
    with every symmetry-distinct assignment of its elements, volume rescaled by atomic radii,
    ranked by the site model's log-likelihood; the top K written to OUT as CIFs."""
    import deepmat
    from deepmat.workflows.structure_prediction import (
        TemplateScorer,
        parse_composition,
    )
    from deepmat.workflows.structure_prediction import (
        predict_structure as run,
    )
    from deepmat.workflows.templates import load_templates

    try:
        query = parse_composition(composition)
        models = [deepmat.load(path) for path in model_dirs]
        for path, model in zip(model_dirs, models, strict=True):
            if model.output_kind != "site-distribution":
                raise DeepmatError(f"{path}: a {model.family}, not a site element model")
        library, left_out = load_templates(templates)
        if left_out:
            reasons = ", ".join(f"{n} with {why}" for why, n in left_out.items())
            console.print(f"{len(library)} templates; crystals left out: {reasons}")
        scorer = TemplateScorer(models[0], library, allow_unseen, companions=models[1:])
        unseen = [e.symbol for e in query.elements if any(e.Z not in m.classes for m in models)]
        if unseen:
            console.print(f"[yellow]warning:[/] {', '.join(unseen)} unseen in training: uniform")
        energies = deepmat.load(energy_model) if energy_model else None
        best = run(scorer, query, out, top_k, energy_model=energies, rerank_top=rerank_top)
    except DeepmatError as exc:
        fail(exc)
    write_table(best, None, "candidates")
    console.print(f"{len(best)} candidate structures of {query.reduced_formula} written to {out}")
