"""Structure regressors on the estimator protocol (:mod:`deepmat.train.estimator`).

* :class:`CrystalGraphRegressor`: a :class:`~deepmat.models.cgcnn.CGCNN` (gated or shared
  convolution, mean or linear pooling) on crystal graphs built once and cached
  (:mod:`deepmat.represent.crystal_graph`). The linear-pooling model also explains its
  predictions site by site (:meth:`CrystalGraphRegressor.site_contributions`).
* :class:`SiteNetworkRegressor`: a fully connected network on per-site descriptors of one
  structure family (ABX3 perovskites: electronegativity and ionic radius per site).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from ase import Atoms
from pymatgen.core import Structure
from torch.utils.data import Dataset

from deepmat.data.composition import LoadReport
from deepmat.data.structures import StructureTable, parse_structure
from deepmat.errors import DataError
from deepmat.models.cgcnn import CGCNN, CGCNNSpec
from deepmat.models.mlp import Block, MLPSpec
from deepmat.represent.crystal_graph import CrystalGraphs, GraphBatch, GraphSettings, cached_graphs
from deepmat.represent.perovskite_sites import PerovskiteSites, assign_sites
from deepmat.train.config import FitResult, TargetScaler, TrainConfig
from deepmat.train.estimator import Estimator
from deepmat.train.metrics import regression_metrics
from deepmat.train.regressors import MLPRegressor, TableInputs
from deepmat.train.weights import restore_network, save_weights

StructureInputs = StructureTable | Sequence[Structure | Atoms]
PREDICT_BATCH = 512


def as_structure_table(inputs: StructureInputs | Structure | Atoms) -> StructureTable:
    """Structures or ASE ``Atoms`` (or a table) as a checked table; bare structures are
    named by position."""
    if isinstance(inputs, StructureTable):
        return inputs
    items = [inputs] if isinstance(inputs, Structure | Atoms) else list(inputs)
    structures = [
        s if isinstance(s, Structure) else parse_structure(s, "ase", f"structure {i}")
        for i, s in enumerate(items)
    ]
    return StructureTable(
        ids=[f"structure {i}" for i in range(len(structures))],
        structures=structures,
        targets=None,
        report=LoadReport("input", len(structures)),
    )


class GraphSet(Dataset):
    """Crystal graphs with (scaled) targets, indexed by whole batches for the trainer."""

    def __init__(self, graphs: CrystalGraphs, targets: np.ndarray):
        self.graphs = graphs
        self.targets = torch.as_tensor(targets, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: list[int]) -> tuple[GraphBatch, torch.Tensor]:
        return self.graphs.batch(index), self.targets[index]


def _training_record(train: StructureTable, val: StructureTable, seconds: float) -> dict:
    return {
        "data": {
            "source": train.report.source,
            "fingerprint": train.fingerprint(),
            "n_train": len(train),
            "n_val": len(val),
            "val_fingerprint": val.fingerprint(),
            "load_report": train.report.to_dict(),
        },
        "seconds": round(seconds, 2),
    }


class StructureRecords(TableInputs):
    """Inputs of structure models: pymatgen Structures, ASE Atoms or a StructureTable."""

    input_kind: ClassVar[str] = "structure"

    def table(self, X: StructureInputs | Structure | Atoms) -> StructureTable:
        return as_structure_table(X)


CGCNN_CONFIG = {"lr": 1e-3, "schedule": "cosine"}


class CrystalGraphRegressor(StructureRecords, Estimator):
    """CGCNN on crystal structures; targets standardised, trained by the common trainer.

    Presets: ``default`` batch 32, 100 epochs of Adam 1e-3 on a cosine schedule; ``paper``
    the reference code's defaults (batch 256, 30 epochs, learning rate 1e-2, constant; Adam
    where it defaults to SGD); ``benchmark`` batch 32 and 200 epochs with patience 150, the
    mp-eform run behind ``benchmarks/results/crystal.json``. Standard deviations are not
    available: the network has no stochastic layers (train an ensemble).
    """

    family = "crystal-graph-network"
    presets: ClassVar[dict] = {
        "default": {"config": CGCNN_CONFIG | {"batch_size": 32, "epochs": 100, "patience": 30}},
        "paper": {
            "config": {
                "lr": 1e-2,
                "schedule": "constant",
                "batch_size": 256,
                "epochs": 30,
                "patience": 30,
            }
        },
        "benchmark": {"config": CGCNN_CONFIG | {"batch_size": 32, "epochs": 200, "patience": 150}},
    }

    def __init__(
        self,
        spec: CGCNNSpec | None = None,
        settings: GraphSettings | None = None,
        config: TrainConfig | None = None,
        name: str = "cgcnn",
        target: str = "target",
        unit: str = "",
    ):
        self.spec = spec or CGCNNSpec()
        self.settings = settings or GraphSettings(cutoff=self.spec.cutoff)
        self.config = config or TrainConfig(**self.presets["default"]["config"])
        self.name, self.target, self.unit = name, target, unit
        self.config.check_outputs(name, self.spec.out_features)
        torch.manual_seed(self.config.seed)
        self.net = CGCNN(self.spec)
        self.scaler = TargetScaler()
        self.fit_result = FitResult()
        self.training: dict = {}
        self.metrics: dict = {}

    def graphs(self, table: StructureTable, progress: bool = False) -> CrystalGraphs:
        """The crystal graphs of ``table`` under this model's settings (disk-cached)."""
        return cached_graphs(table.structures, self.settings, table.ids, progress)

    def fit(
        self,
        X: StructureInputs,
        y=None,
        *,
        val=None,
        workdir: str | Path | None = None,
        resume: bool = True,
    ) -> CrystalGraphRegressor:
        """Train on ``X`` (a table with targets, or structures and ``y``) with early stopping
        on ``val`` (a table or a pair (structures, targets)); checkpoints in ``workdir``."""
        from deepmat.train.trainer import batch_loader, fit_loaders

        if val is None or workdir is None:
            raise DataError(f"{self.name}: fit needs val= (early stopping) and workdir=")
        train, val = self.labelled(X, y, "training data"), self.labelled_val(val)
        start = time.perf_counter()
        train_graphs = self.graphs(train, progress=self.config.progress)
        val_graphs = self.graphs(val, progress=self.config.progress)
        graph_seconds = time.perf_counter() - start
        self.scaler = self.starting_scaler(train.targets)
        self.fit_result = fit_loaders(
            self.net,
            batch_loader(
                GraphSet(train_graphs, self.scaler.transform(train.targets)),
                self.config.batch_size,
                shuffle=True,
            ),
            batch_loader(
                GraphSet(val_graphs, self.scaler.transform(val.targets)),
                PREDICT_BATCH,
                shuffle=False,
            ),
            self.config,
            workdir,
            self.scaler,
            resume,
        )
        self.training = _training_record(train, val, time.perf_counter() - start)
        self.training |= self.fit_result.record(self.config)
        self.training["graph_seconds"] = round(graph_seconds, 2)
        self.metrics["val"] = regression_metrics(val.targets, self._predict_graphs(val_graphs))
        return self

    @torch.inference_mode()
    def _scaled(self, graphs: CrystalGraphs, per_site: bool = False) -> np.ndarray:
        """Network outputs in standardised units: per graph, or per site (linear pooling)."""
        self.net.eval()
        outputs = []
        for start in range(0, len(graphs), PREDICT_BATCH):
            batch = graphs.batch(np.arange(start, min(start + PREDICT_BATCH, len(graphs))))
            out = self.net.site_contributions(batch) if per_site else self.net(batch)
            outputs.append(out.reshape(len(out), -1))
        if not outputs:
            return np.zeros((0, 1 if per_site else self.spec.out_features))
        return torch.cat(outputs).numpy().astype(np.float64)

    @property
    def heteroscedastic(self) -> bool:
        """Whether the network predicts its own σ (trained on the Gaussian NLL)."""
        return self.config.heteroscedastic

    def _predict_graphs(self, graphs: CrystalGraphs) -> np.ndarray:
        return self.scaler.inverse(self._scaled(graphs)[:, 0])

    def predict(self, X: StructureInputs | Structure, return_std: bool = False):
        """Predicted targets for structures (or a table), in target units; ``return_std``
        adds the σ of a heteroscedastic network (recalibrated where it has been)."""
        graphs = self.graphs(self.table(X))
        if not return_std:
            return self._predict_graphs(graphs)
        if not self.heteroscedastic:
            raise self.no_uncertainty(
                "the network has no stochastic layers; train an ensemble or a heteroscedastic "
                "network (a loss such as gaussian-nll or laplace-nll)"
            )
        z = self._scaled(graphs)
        std = np.exp(np.clip(z[:, 1], -10, 10)) * self.scaler.std
        return self.scaler.inverse(z[:, 0]), self.std_scale * std

    def evaluate(self, X: StructureInputs, y=None) -> dict:
        """MAE, RMSE, R² and n on a table with targets (or structures and ``y``)."""
        table = self.labelled(X, y)
        return regression_metrics(table.targets, self.predict(table))

    def site_contributions(self, inputs: StructureInputs | Structure) -> pd.DataFrame:
        """One row per site: record id, site index, element, fractional position, its
        perovskite role where the structure is an ABX3 perovskite, and its contribution in
        target units. A structure's contributions average to its prediction."""
        table = as_structure_table(inputs)
        graphs = self.graphs(table)
        contribution = self.scaler.inverse(self._scaled(graphs, per_site=True)[:, 0])
        rows = []
        for record, structure in zip(table.ids, table.structures, strict=True):
            roles = _perovskite_roles(structure)
            for i, site in enumerate(structure):
                a, b, c = site.frac_coords
                rows.append((record, i, site.specie.symbol, a, b, c, roles[i]))
        frame = pd.DataFrame(rows, columns=["id", "site", "element", "a", "b", "c", "role"])
        frame["contribution"] = contribution
        return frame

    def card(self) -> dict:
        return {
            "family": self.family,
            "model": self.name,
            "input": "structure",
            "graph": self.settings.to_dict(),
            "architecture": self.spec.to_dict(),
            "target": {"name": self.target, "unit": self.unit} | self.scaler.to_dict(),
            "training": self.training,
            "metrics": self.metrics,
        }

    def save_state(self, path: Path) -> None:
        save_weights(self.net, path)

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> CrystalGraphRegressor:
        model = cls(
            CGCNNSpec.from_dict(card["architecture"]),
            GraphSettings(**card["graph"]),
            cls.saved_config(card),
            **cls.saved_names(card),
        )
        restore_network(model, path, card)
        return model


def _perovskite_roles(structure: Structure) -> list[str]:
    """A/B/X roles of an ABX3 perovskite's sites; empty strings for any other structure."""
    if len(structure) % 5 == 0:
        try:
            return assign_sites(structure)
        except DataError:
            pass
    return [""] * len(structure)


def contributions_by(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Site contributions aggregated by ``column`` ("element" or "role"): count, mean,
    standard deviation, sorted from the most negative (most stabilising) mean."""
    rows = frame[frame[column] != ""] if column == "role" else frame
    summary = rows.groupby(column)["contribution"].agg(["count", "mean", "std"])
    return summary.sort_values("mean").reset_index()


class SiteNetworkRegressor(StructureRecords, MLPRegressor):
    """A fully connected network on per-site descriptors of one structure family (ABX3
    perovskites by default: electronegativity and ionic radius of A, B and X).

    Presets: ``default`` and ``benchmark`` (the committed perovskite run) Adam 3e-3 on a
    cosine schedule, batch 64, 500 epochs; ``paper`` the same network for 400 epochs.
    """

    family = "site-network"
    default_blocks: ClassVar[tuple] = (Block(64, 2), Block(32, 1))
    presets: ClassVar[dict] = {
        "default": {"config": {"lr": 3e-3, "batch_size": 64, "epochs": 500, "schedule": "cosine"}},
        "paper": {"config": {"lr": 3e-3, "batch_size": 64, "epochs": 400, "schedule": "cosine"}},
        "benchmark": {
            "config": {"lr": 3e-3, "batch_size": 64, "epochs": 500, "schedule": "cosine"}
        },
    }

    def __init__(
        self,
        spec: MLPSpec | None = None,
        representation=None,
        config: TrainConfig | None = None,
        name: str = "perovskite-mlp",
        target: str = "target",
        unit: str = "",
    ):
        config = config or TrainConfig(**self.presets["default"]["config"])
        super().__init__(spec, representation or PerovskiteSites(), config, name, target, unit)

    def featurize(self, table: StructureTable) -> np.ndarray:
        return self.representation.transform(table.structures, table.ids)
