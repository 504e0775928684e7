"""The saved-model format: one directory per trained model.

::

    card.json            family, model name, representation, architecture or
                         hyper-parameters, target (name, unit, normalisation),
                         training data fingerprint and config, metrics, versions
    weights.safetensors  network weights (families "network", "voxel-network",
                         "localization-network", "orientation-network",
                         "crystal-graph-network" and "site-network")
    forest.joblib        the scikit-learn forest (family "forest"; a pickle: load
                         only forests you trust, as with any scikit-learn model)
    pipeline.joblib      PCA and polynomial regression on 2-point statistics (family
                         "two-point-pca"; a pickle, trust as above)
    mks.npz              MKS influence coefficients α_h(r), (2, n1, n2, n3) float64
                         (family "mks"; plain arrays, no pickle)

Composition models have ``"input": "composition"`` in their card; homogenization models
(families "voxel-network", "two-point-pca" and "mixture-rule", the last one a card
alone) have ``"input": "microstructure"``, the training grid and the phases.
Localization models (families "localization-network", whose ``architecture.kind`` is
"slice-cnn" or "strain-fcn", and "mks") have ``"input": "microstructure"`` and
``"output": "strain field"``, with the macroscopic strain they were trained under.
Orientation models (family "orientation-network") have ``"input": "ebsd-pattern"``,
``"output": "orientation"``, the pattern shape, the point group and the loss.
Structure models (families "crystal-graph-network", a CGCNN with its graph settings, and
"site-network", a network on per-site descriptors such as perovskite sites) have
``"input": "structure"``.
:func:`load_model` reads any such directory back into an object with ``.predict``.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import joblib
import numpy as np
from safetensors.torch import load_file, save_file

from deepmat.errors import ModelFormatError
from deepmat.models.cgcnn import CGCNNSpec
from deepmat.models.cnn3d import CNN3DSpec
from deepmat.models.ebsd import OrientationCNNSpec
from deepmat.models.localization import SliceCNNSpec, StrainFCNSpec
from deepmat.models.mlp import MLPSpec
from deepmat.physics.elasticity import IsotropicPhase
from deepmat.represent import representation_from_dict
from deepmat.represent.crystal_graph import GraphSettings
from deepmat.train.crystal import CrystalGraphRegressor, SiteNetworkRegressor
from deepmat.train.ebsd import OrientationCNNRegressor
from deepmat.train.localization import (
    FCN3DRegressor,
    LocalizationRegressor,
    MKSRegressor,
    NetworkLocalizationRegressor,
    SliceCNNRegressor,
)
from deepmat.train.microstructure import (
    MicrostructureRegressor,
    RuleOfMixtures,
    TwoPointPCARegressor,
    VoxelCNNRegressor,
)
from deepmat.train.regressors import CompositionRegressor, ForestRegressor, NetworkRegressor
from deepmat.train.trainer import TargetScaler, TrainConfig

FORMAT = "deepmat-model"
FORMAT_VERSION = 1
CARD = "card.json"
MICROSTRUCTURE_FAMILIES = ("voxel-network", "two-point-pca", "mixture-rule")
LOCALIZATION_FAMILIES = ("localization-network", "mks")
MKS_FILE = "mks.npz"
Model = (
    CompositionRegressor
    | MicrostructureRegressor
    | LocalizationRegressor
    | OrientationCNNRegressor
    | CrystalGraphRegressor
)


def _versions() -> dict[str, str]:
    packages = (
        "deepmat",
        "torch",
        "lightning",
        "scikit-learn",
        "pymatgen",
        "matminer",
        "orix",
        "kikuchipy",
    )
    return {"python": platform.python_version()} | {p: version(p) for p in packages}


def save_model(model: Model, path: str | Path) -> Path:
    """Write ``model`` as a saved-model directory at ``path`` (created if needed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    networks = (
        NetworkRegressor
        | VoxelCNNRegressor
        | NetworkLocalizationRegressor
        | OrientationCNNRegressor
        | CrystalGraphRegressor
    )
    if isinstance(model, networks):
        state = {k: v.contiguous() for k, v in model.net.state_dict().items()}
        save_file(state, path / "weights.safetensors")
    elif isinstance(model, ForestRegressor):
        joblib.dump(model.forest, path / "forest.joblib", compress=3)
    elif isinstance(model, TwoPointPCARegressor):
        if model.pipeline is None:
            raise ModelFormatError(f"cannot save {model.name}: it is not fitted")
        joblib.dump(model.pipeline, path / "pipeline.joblib", compress=3)
    elif isinstance(model, MKSRegressor):
        if model.influence is None:
            raise ModelFormatError(f"cannot save {model.name}: it is not fitted")
        np.savez(path / MKS_FILE, influence=model.influence)
    elif not isinstance(model, RuleOfMixtures):
        raise ModelFormatError(f"cannot save a {type(model).__name__}")
    card = {"format": FORMAT, "format_version": FORMAT_VERSION} | model.card()
    card |= {"versions": _versions(), "created": datetime.now(UTC).isoformat(timespec="seconds")}
    (path / CARD).write_text(json.dumps(card, indent=2, default=float))
    return path


def read_card(path: str | Path) -> dict:
    card_path = Path(path) / CARD
    if not card_path.exists():
        raise ModelFormatError(f"{path}: not a deepmat model directory (no {CARD})")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{card_path}: unreadable model card ({exc})") from None
    if card.get("format") != FORMAT:
        raise ModelFormatError(f"{card_path}: not a {FORMAT} card")
    if card.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFormatError(
            f"{card_path}: format version {card['format_version']} is newer "
            "than this deepmat reads; upgrade deepmat"
        )
    return card


def load_model(path: str | Path) -> Model:
    """Load a saved-model directory written by :func:`save_model`."""
    path = Path(path)
    card = read_card(path)
    if card["family"] in MICROSTRUCTURE_FAMILIES:
        return _load_microstructure_model(path, card)
    if card["family"] in LOCALIZATION_FAMILIES:
        return _load_localization_model(path, card)
    if card["family"] == OrientationCNNRegressor.family:
        return _load_orientation_model(path, card)
    if card["family"] == CrystalGraphRegressor.family:
        return _load_crystal_graph_model(path, card)
    representation = representation_from_dict(card["representation"])
    target = card["target"]
    common = {"name": card["model"], "target": target["name"], "unit": target.get("unit", "")}
    if card["family"] in ("network", "site-network"):
        config = TrainConfig(**card.get("training", {}).get("config", {}))
        network = NetworkRegressor if card["family"] == "network" else SiteNetworkRegressor
        model = network(MLPSpec.from_dict(card["architecture"]), representation, config, **common)
        weights = path / "weights.safetensors"
        if not weights.exists():
            raise ModelFormatError(f"{path}: missing weights.safetensors")
        model.net.load_state_dict(load_file(weights))
        model.net.eval()
        model.scaler = _scaler(target)
    elif card["family"] == "forest":
        hyper = card.get("hyperparameters", {})
        model = ForestRegressor(representation, **hyper, **common)
        forest = path / "forest.joblib"
        if not forest.exists():
            raise ModelFormatError(f"{path}: missing forest.joblib")
        model.forest = joblib.load(forest)
    else:
        raise ModelFormatError(f"{path}: unknown model family {card['family']!r}")
    model.training, model.metrics = card.get("training", {}), card.get("metrics", {})
    return model


def _scaler(target: dict) -> TargetScaler:
    """The target scaling saved in a card's ``target`` entry (linear unless ``log``)."""
    return TargetScaler(target["mean"], target["std"], target.get("log", False))


def _require(path: Path, name: str) -> Path:
    if not (path / name).exists():
        raise ModelFormatError(f"{path}: missing {name}")
    return path / name


def _load_microstructure_model(path: Path, card: dict) -> MicrostructureRegressor:
    """A homogenization model from its card (and weights or pipeline)."""
    target = card["target"]
    common = {
        "phases": [IsotropicPhase(**p) for p in card.get("phases", [])],
        "name": card["model"],
        "target": target["name"],
        "unit": target.get("unit", ""),
    }
    training = card.get("training", {})
    model: MicrostructureRegressor
    if card["family"] == "voxel-network":
        model = VoxelCNNRegressor(
            CNN3DSpec.from_dict(card["architecture"]),
            TrainConfig(**training.get("config", {})),
            augment=card.get("augment", True),
            log_target=target.get("log", False),
            **common,
        )
        model.net.load_state_dict(load_file(_require(path, "weights.safetensors")))
        model.net.eval()
        model.scaler = _scaler(target)
    elif card["family"] == "two-point-pca":
        model = TwoPointPCARegressor(**card["hyperparameters"], **common)
        model.window = card["representation"]["r_max"]
        model.pipeline = joblib.load(_require(path, "pipeline.joblib"))
    else:
        model = RuleOfMixtures(rule=card["rule"], **common)
    model.grid = tuple(card["grid"]) if card.get("grid") else None
    model.training, model.metrics = training, card.get("metrics", {})
    return model


def _load_localization_model(path: Path, card: dict) -> LocalizationRegressor:
    """A localization model from its card and weights or influence coefficients."""
    phases = [IsotropicPhase(**p) for p in card.get("phases", [])]
    common = {"phases": phases, "name": card["model"]}
    training, target = card.get("training", {}), card["target"]
    model: LocalizationRegressor
    if card["family"] == "mks":
        model = MKSRegressor(**card["hyperparameters"], **common)
        with np.load(_require(path, MKS_FILE), allow_pickle=False) as stored:
            model.influence = stored["influence"]
    else:
        architecture = card["architecture"]
        config = TrainConfig(**training.get("config", {}))
        options = {"augment": card.get("augment", True), "mean_correction": card["mean_correction"]}
        network: NetworkLocalizationRegressor
        if architecture.get("kind") == "slice-cnn":
            network = SliceCNNRegressor(
                SliceCNNSpec.from_dict(architecture),
                config,
                voxels_per_sample=card["voxels_per_sample"],
                **options,
                **common,
            )
        elif architecture.get("kind") == "strain-fcn":
            network = FCN3DRegressor(
                StrainFCNSpec.from_dict(architecture), config, **options, **common
            )
        else:
            raise ModelFormatError(
                f"{path}: unknown localization architecture {architecture.get('kind')!r}"
            )
        network.net.load_state_dict(load_file(_require(path, "weights.safetensors")))
        network.net.eval()
        network.scaler = _scaler(target)
        model = network
    model.grid = tuple(card["grid"]) if card.get("grid") else None
    model.macro_strain = target.get("macro_strain")
    model.training, model.metrics = training, card.get("metrics", {})
    return model


def _load_orientation_model(path: Path, card: dict) -> OrientationCNNRegressor:
    """An orientation CNN from its card and weights."""
    training = card.get("training", {})
    model = OrientationCNNRegressor(
        OrientationCNNSpec.from_dict(card["architecture"]),
        TrainConfig(**training.get("config", {})),
        point_group=card["point_group"],
        temperature=card["loss"].get("temperature", 0.0),
        val_fraction=card["val_fraction"],
        name=card["model"],
    )
    model.net.load_state_dict(load_file(_require(path, "weights.safetensors")))
    model.net.eval()
    model.training, model.metrics = training, card.get("metrics", {})
    return model


def _load_crystal_graph_model(path: Path, card: dict) -> CrystalGraphRegressor:
    """A CGCNN from its card and weights."""
    training, target = card.get("training", {}), card["target"]
    model = CrystalGraphRegressor(
        CGCNNSpec.from_dict(card["architecture"]),
        GraphSettings(**card["graph"]),
        TrainConfig(**training.get("config", {})),
        name=card["model"],
        target=target["name"],
        unit=target.get("unit", ""),
    )
    model.net.load_state_dict(load_file(_require(path, "weights.safetensors")))
    model.net.eval()
    model.scaler = _scaler(target)
    model.training, model.metrics = training, card.get("metrics", {})
    return model
