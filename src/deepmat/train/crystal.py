"""Structure regressors with the estimator API: ``fit``, ``predict``, ``evaluate``, ``card``.

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
from deepmat.train.metrics import regression_metrics
from deepmat.train.regressors import NetworkRegressor
from deepmat.train.trainer import (
    FitResult,
    TargetScaler,
    TrainConfig,
    batch_loader,
    fit_loaders,
)

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
            "load_report": train.report.to_dict(),
        },
        "seconds": round(seconds, 2),
    }


class CrystalGraphRegressor:
    """CGCNN on crystal structures; targets standardised, trained by the common trainer."""

    family = "crystal-graph-network"

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
        self.config = config or TrainConfig(lr=1e-3, batch_size=128, schedule="cosine")
        self.name, self.target, self.unit = name, target, unit
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
        train: StructureTable,
        val: StructureTable,
        workdir: str | Path,
        resume: bool = True,
    ) -> CrystalGraphRegressor:
        """Train on ``train`` with early stopping on ``val``; checkpoints in ``workdir``."""
        start = time.perf_counter()
        train_graphs = self.graphs(train, progress=self.config.progress)
        val_graphs = self.graphs(val, progress=self.config.progress)
        graph_seconds = time.perf_counter() - start
        self.scaler = TargetScaler.fit(train.targets)
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
            outputs.append(out.reshape(-1))
        return torch.cat(outputs).numpy().astype(np.float64) if outputs else np.zeros(0)

    def _predict_graphs(self, graphs: CrystalGraphs) -> np.ndarray:
        return self.scaler.inverse(self._scaled(graphs))

    def predict(self, inputs: StructureInputs | Structure) -> np.ndarray:
        """Predicted targets for structures (or a table), in target units."""
        return self._predict_graphs(self.graphs(as_structure_table(inputs)))

    def evaluate(self, table: StructureTable) -> tuple[dict, np.ndarray]:
        """Metrics on a table with targets, and the predictions."""
        prediction = self.predict(table)
        return regression_metrics(table.targets, prediction), prediction

    def site_contributions(self, inputs: StructureInputs | Structure) -> pd.DataFrame:
        """One row per site: record id, site index, element, fractional position, its
        perovskite role where the structure is an ABX3 perovskite, and its contribution in
        target units. A structure's contributions average to its prediction."""
        table = as_structure_table(inputs)
        graphs = self.graphs(table)
        contribution = self.scaler.inverse(self._scaled(graphs, per_site=True))
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


class SiteNetworkRegressor(NetworkRegressor):
    """A fully connected network on per-site descriptors of one structure family (ABX3
    perovskites by default), with :class:`NetworkRegressor`'s training and prediction."""

    family = "site-network"

    def __init__(
        self,
        spec: MLPSpec | None = None,
        representation=None,
        config: TrainConfig | None = None,
        name: str = "perovskite-mlp",
        target: str = "target",
        unit: str = "",
    ):
        representation = representation or PerovskiteSites()
        n = len(representation.feature_names)
        spec = spec or MLPSpec(n, (Block(64, 2), Block(32, 1)))
        config = config or TrainConfig(lr=3e-3, batch_size=64, epochs=400, schedule="cosine")
        super().__init__(spec, representation, config, name, target, unit)

    def featurize(self, table: StructureTable) -> np.ndarray:
        return self.representation.transform(table.structures, table.ids)

    def predict(self, inputs: StructureInputs | Structure, return_std: bool = False):
        """Predicted targets for structures (or a table); see :class:`NetworkRegressor`."""
        return self.predict_features(self.featurize(as_structure_table(inputs)), return_std)

    def card(self) -> dict:
        return super().card() | {"input": "structure"}
