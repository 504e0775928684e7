"""Crystal-structure jobs: split structures without leakage, train, explain.

The CLI and ``benchmarks/crystal.py`` share these functions, so a job run either way
writes the same directory: the saved model, ``split.json`` and a validation parity plot.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from deepmat.data.registry import (
    cache_dir,
    through_cache,
)
from deepmat.data.splits import Split, grouped_split
from deepmat.data.structures import (
    StructureTable,
    structures_digest,
)
from deepmat.errors import DataError
from deepmat.models.cgcnn import CGCNNSpec
from deepmat.train.config import HETEROSCEDASTIC_LOSSES, heteroscedastic_loss
from deepmat.train.crystal import CrystalGraphRegressor, SiteNetworkRegressor, contributions_by
from deepmat.train.ensemble import Ensemble
from deepmat.workflows.common import record_split, save_with_parity_plot

MODELS = {
    "cgcnn": CGCNNSpec(conv="gated"),
    "cgcnn-shared": CGCNNSpec(conv="shared"),
    "cgcnn-linear": CGCNNSpec(conv="gated", pooling="linear"),
}
SITE_MODELS = ("perovskite-mlp",)
StructureModel = CrystalGraphRegressor | SiteNetworkRegressor


KEYS_CACHE_MIN = 1000  # smaller tables are grouped in seconds


def cached_structure_keys(table: StructureTable) -> list[str]:
    """``table.keys()`` through a disk cache (``<cache dir>/structure-keys/``) keyed by the
    structures: grouping mp-eform's 33k structures takes about two minutes, reading a
    cached grouping a moment."""
    if len(table) < KEYS_CACHE_MIN:
        return table.keys()
    return through_cache(
        cache_dir() / "structure-keys" / f"{structures_digest(table.structures, 'keys')}.json",
        table.keys,
        lambda keys, path: path.write_text(json.dumps(keys)),
        lambda path: json.loads(path.read_text()),
    )


def split_structures(
    table: StructureTable, val: float = 0.1, test: float = 0.0, seed: int = 0
) -> tuple[StructureTable, StructureTable, StructureTable | None, Split]:
    """Train, validation and test tables; one crystal (same formula, same structure by
    pymatgen's StructureMatcher) never on two sides."""
    keys = cached_structure_keys(table)
    split = grouped_split(keys, val=val, test=test, seed=seed, group="structure")
    split.assert_disjoint(keys)
    split.names = table.ids
    held_out = table.subset(split.test) if len(split.test) else None
    return table.subset(split.train), table.subset(split.val), held_out, split


def make_structure_model(
    model: str,
    target: str = "target",
    unit: str = "",
    preset: str = "default",
    overrides: dict | None = None,
    *,
    heteroscedastic: bool = False,
    ensemble: int = 1,
) -> StructureModel | Ensemble:
    """One of the CGCNNs of :data:`MODELS` or a site network of :data:`SITE_MODELS`, with
    the arguments of ``preset``; ``overrides`` replace single training options of it.
    ``heteroscedastic`` gives a mean-pooling CGCNN a second output, its σ, trained on the
    Gaussian NLL; ``ensemble`` > 1 makes an :class:`Ensemble` of that many, member i with
    the seed ``seed + i``."""
    overrides = dict(overrides or {})
    if ensemble > 1:
        seed = int(overrides.get("seed", 0))
        return Ensemble.of(
            lambda i: make_structure_model(
                model,
                target,
                unit,
                preset,
                overrides | {"seed": seed + i},
                heteroscedastic=heteroscedastic,
            ),
            ensemble,
        )
    names = {"name": model, "target": target, "unit": unit}
    heteroscedastic = heteroscedastic or overrides.get("loss") in HETEROSCEDASTIC_LOSSES
    known = ", ".join((*MODELS, *SITE_MODELS))
    if model not in MODELS and model not in SITE_MODELS:
        raise DataError(f"unknown structure model {model!r}; choose one of {known}")
    if heteroscedastic:
        if model not in MODELS or MODELS[model].pooling != "mean":
            raise DataError(f"--heteroscedastic applies to the mean-pooling CGCNNs, not {model}")
        overrides["loss"] = heteroscedastic_loss(overrides.get("loss"))
    if model in MODELS:
        spec = replace(MODELS[model], out_features=2 if heteroscedastic else 1)
        return CrystalGraphRegressor.from_preset(preset, config=overrides, spec=spec, **names)
    return SiteNetworkRegressor.from_preset(preset, config=overrides, **names)


def train_structure_model(
    model: StructureModel,
    train: StructureTable,
    val: StructureTable,
    out: str | Path,
    *,
    test: StructureTable | None = None,
    split: Split | None = None,
    resume: bool = True,
    jobs: int = 1,
) -> StructureModel | Ensemble:
    """Fit ``model``, save it to ``out`` with its split and a validation parity plot;
    ``jobs`` > 1 trains an ensemble's members that many at a time in their own processes."""
    out = Path(out)
    model.fit(train, val=val, workdir=out, resume=resume, **({"jobs": jobs} if jobs > 1 else {}))
    if test is not None and len(test):
        model.metrics["test"] = model.evaluate(test)
    record_split(model, split, out)
    save_with_parity_plot(model, val, out)
    return model


def explain_structures(
    model: CrystalGraphRegressor, table: StructureTable, out: str | Path, top: int = 20
) -> dict[str, Path]:
    """Site contributions of ``table`` under a linear-pooling CGCNN: ``sites.csv`` (one row
    per site), ``by_element.csv`` and ``by_role.csv`` (perovskite A/B/X sites) with the
    mean contribution of each, and ``contributions.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sites = model.site_contributions(table)
    by_element = contributions_by(sites, "element")
    by_role = contributions_by(sites, "role")
    paths = {"sites": out / "sites.csv", "by_element": out / "by_element.csv"}
    sites.to_csv(paths["sites"], index=False)
    by_element.to_csv(paths["by_element"], index=False)
    if len(by_role):
        paths["by_role"] = out / "by_role.csv"
        by_role.to_csv(paths["by_role"], index=False)
    paths["plot"] = out / "contributions.png"
    plot_contributions(by_element, by_role, model, paths["plot"], top)
    return paths


def plot_contributions(
    by_element: pd.DataFrame, by_role: pd.DataFrame, model, path: Path, top: int
) -> None:
    """Mean site contribution of the ``top`` most and least stabilising elements, and of
    each perovskite site role where there are any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = (
        by_element
        if len(by_element) <= 2 * top
        else pd.concat([by_element.head(top), by_element.tail(top)])
    )
    panels = 2 if len(by_role) else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 + 4 * panels, 0.22 * len(shown) + 1.8))
    axes = np.atleast_1d(axes)
    unit = f" ({model.unit})" if model.unit else ""
    ax = axes[0]
    ax.barh(shown["element"], shown["mean"], xerr=shown["std"].fillna(0), color="tab:blue")
    ax.invert_yaxis()
    ax.set(xlabel=f"mean site contribution{unit}", title=f"{model.name}: by element")
    if panels == 2:
        axes[1].bar(by_role["role"], by_role["mean"], yerr=by_role["std"].fillna(0))
        axes[1].set(ylabel=f"mean site contribution{unit}", title="by perovskite site")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
