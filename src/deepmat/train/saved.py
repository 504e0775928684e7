"""The saved-model format: one directory per trained model.

::

    card.json            family, model name, representation, architecture or
                         hyper-parameters, target (name, unit, normalisation),
                         training data fingerprint and config, metrics, versions
    weights.safetensors  network weights (families "network", "voxel-network",
                         "localization-network", "orientation-network",
                         "crystal-graph-network", "site-network" and
                         "segmentation-network")
    forest.joblib        the scikit-learn forest (family "forest"; a pickle: load
                         only forests you trust, as with any scikit-learn model)
    pipeline.joblib      PCA and polynomial regression on 2-point statistics (families
                         "two-point-pca" and "solver-hybrid", the latter with the
                         solver's first iterates; a pickle, trust as above)
    mks.npz              MKS influence coefficients α_h(r), (2, n1, n2, n3) float64
                         (family "mks"; plain arrays, no pickle)
    members/0 … k-1      an ensemble's members, each a saved-model directory (family
                         "ensemble")
    model/, companion/   a model and the companion that gives its standard deviations,
                         each a saved-model directory (family "paired")

Composition models have ``"input": "composition"`` in their card; homogenization models
(families "voxel-network", "two-point-pca" and "mixture-rule", the last one a card
alone) have ``"input": "microstructure"``, the training grid and the phases.
Localization models (families "localization-network", whose ``architecture.kind`` is
"slice-cnn" or "strain-fcn", and "mks") have ``"input": "microstructure"`` and
``"output": "strain field"``, with the macroscopic strain they were trained under.
Orientation models (family "orientation-network") have ``"input": "ebsd-pattern"``,
``"output": "orientation"``, the pattern shape, the point group and the loss. Segmentation
models (family "segmentation-network") have ``"input": "micrograph"``, ``"output":
"labels"`` and the class map. Structure models (families "crystal-graph-network", a CGCNN
with its graph settings, and "site-network", a network on per-site descriptors such as
perovskite sites) have ``"input": "structure"``, as have site element models (family
"site-element-network", ``"output": "site element distribution"``, with their element
classes). :func:`load_model` reads any such
directory back into the estimator that wrote it.

Families are found through a registry (:data:`FAMILIES`, extended by
:func:`register_family`) that names each family's estimator class by import path, so loading
a composition model imports neither the image families nor their libraries. Each class
writes and reads its own files (``save_state`` / ``from_saved``); this module writes and
checks the card, and the recalibration of an estimator's standard deviations
(:meth:`~deepmat.train.estimator.Estimator.recalibrate`), which applies to every family.
Cards carry ``format_version``: a card from an older deepmat is upgraded on
reading where the change is known, and a card from a newer one is refused with a message.
"""

from __future__ import annotations

import importlib
import json
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from deepmat.errors import ModelFormatError
from deepmat.train.estimator import Estimator

FORMAT = "deepmat-model"
FORMAT_VERSION = 2
CARD = "card.json"

#: family name → "module:Class" of the estimator that saves and loads it
FAMILIES: dict[str, str] = {
    "network": "deepmat.train.regressors:NetworkRegressor",
    "forest": "deepmat.train.regressors:ForestRegressor",
    "element-set-network": "deepmat.train.element_sets:ElementSetRegressor",
    "crystal-graph-network": "deepmat.train.crystal:CrystalGraphRegressor",
    "site-network": "deepmat.train.crystal:SiteNetworkRegressor",
    "site-element-network": "deepmat.train.site_elements:SiteElementClassifier",
    "voxel-network": "deepmat.train.microstructure:VoxelCNNRegressor",
    "two-point-pca": "deepmat.train.microstructure:TwoPointPCARegressor",
    "mixture-rule": "deepmat.train.microstructure:RuleOfMixtures",
    "solver-hybrid": "deepmat.train.stiffness_hybrid:SolverHybridRegressor",
    "mks": "deepmat.train.localization:MKSRegressor",
    "localization-network": "deepmat.train.localization:NetworkLocalizationRegressor",
    "orientation-network": "deepmat.train.ebsd:OrientationCNNRegressor",
    "dictionary-indexer": "deepmat.train.dictionary:DictionaryIndexer",
    "segmentation-network": "deepmat.train.segmentation:SegmentationModel",
    "microstructure-gan": "deepmat.train.generative:MicrostructureGAN",
    "microstructure-vae": "deepmat.train.vae:MicrostructureVAE",
    "ensemble": "deepmat.train.ensemble:Ensemble",
    "paired": "deepmat.train.paired:Paired",
}
_PACKAGES = ("deepmat", "torch", "numpy", "scikit-learn", "pymatgen")


def register_family(family: str, target: str) -> None:
    """Declare that saved models of ``family`` are read by the class at ``target``
    ("package.module:Class", imported only when such a model is loaded)."""
    if ":" not in target:
        raise ValueError(f"target {target!r} must look like 'package.module:Class'")
    FAMILIES[family] = target


def estimator_class(family: str) -> type[Estimator]:
    """The estimator class registered for ``family``."""
    if family not in FAMILIES:
        raise ModelFormatError(
            f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}"
        )
    module, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), name)


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def save_model(model: Estimator, path: str | Path) -> Path:
    """Write ``model`` as a saved-model directory at ``path`` (created if needed)."""
    path = Path(path)
    card = model.card()
    if FAMILIES.get(card.get("family", "")) is None:
        raise ModelFormatError(
            f"cannot save a {type(model).__name__}: its family is not registered"
        )
    path.mkdir(parents=True, exist_ok=True)
    model.save_state(path)
    card = {"format": FORMAT, "format_version": FORMAT_VERSION} | card
    if model.recalibration:
        card["recalibration"] = model.recalibration
    card |= {"versions": _versions(), "created": datetime.now(UTC).isoformat(timespec="seconds")}
    (path / CARD).write_text(json.dumps(card, indent=2, default=float))
    model.source = path
    return path


def read_card(path: str | Path) -> dict:
    """The checked card of a saved-model directory, upgraded to this format version."""
    card_path = Path(path) / CARD
    if not card_path.exists():
        raise ModelFormatError(f"{path}: not a deepmat model directory (no {CARD})")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{card_path}: unreadable model card ({exc})") from None
    if card.get("format") != FORMAT:
        raise ModelFormatError(f"{card_path}: not a {FORMAT} card")
    written = card.get("format_version", 0)
    if not isinstance(written, int) or written < 1:
        raise ModelFormatError(f"{card_path}: format version {written!r} is not one deepmat wrote")
    if written > FORMAT_VERSION:
        made_by = card.get("versions", {}).get("deepmat", "unknown")
        raise ModelFormatError(
            f"{card_path}: format version {written} is newer than this deepmat reads "
            f"({FORMAT_VERSION}; the card was written by deepmat {made_by}); upgrade deepmat"
        )
    return card


def load_model(path: str | Path) -> Estimator:
    """Load a saved-model directory written by :func:`save_model`.

    Version 1 cards (deepmat 0.1) hold the same fields as version 2, which only records
    fewer package versions, so they load as they are.
    """
    path = Path(path)
    card = read_card(path)
    model = estimator_class(card["family"]).from_saved(path, card)
    model.recalibration = card.get("recalibration", {})
    model.source = path
    return model
