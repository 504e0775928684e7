"""Site element likelihoods: which element fits a crystallographic site, from its
environment alone (the evaluation half of Ryan, Lengyel & Shatruk's structure prediction).

:class:`SiteElementClassifier` is a fully connected network
(:class:`~deepmat.models.mlp.MLP`) on :mod:`~deepmat.represent.site_environments` inputs,
whose softmax over the elements seen in training is :math:`p(e \\mid \\text{site})`; it is
trained on the cross-entropy of every site's true element by the common trainer (early
stopping and checkpoints on the validation cross-entropy). The rows of the output layer are
the learned element embeddings (:meth:`SiteElementClassifier.element_embeddings`). A
structure's log-likelihood under an assignment of elements to its sites is the sum of the
sites' :math:`\\ln p`.

``predict`` returns one (sites, elements) probability array per structure; ``evaluate``
scores held-out sites: top-1/5/10 accuracy, error rate (1 − top-1) and cross-entropy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Element, Structure
from torch import nn

from deepmat.data.structures import StructureTable
from deepmat.errors import DataError
from deepmat.models.mlp import MLP, Block, MLPSpec
from deepmat.represent.crystal_graph import CrystalGraphs, cached_graphs
from deepmat.represent.site_environments import SiteSettings, site_features
from deepmat.train.config import FitResult, TargetScaler, TrainConfig
from deepmat.train.crystal import StructureInputs, as_structure_table
from deepmat.train.estimator import Estimator
from deepmat.train.weights import load_weights, save_weights

TOP_K = (1, 5, 10)
PREDICT_BATCH = 8192
BLOCKS = (Block(256, 2, 0.1), Block(128, 1))
CONFIG = {"lr": 2e-3, "batch_size": 512, "schedule": "cosine", "weight_decay": 1e-5}


class CrossEntropy(nn.Module):
    """Cross-entropy of logits against class indices carried as floats by the trainer."""

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, y.long())


def topk_metrics(log_probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """top-1/5/10 accuracy, error rate (1 − top-1), cross-entropy and n_sites of (sites,
    classes) log-probabilities against true class indices."""
    if len(labels) == 0:
        raise DataError("no sites to score")
    true = log_probs[np.arange(len(labels)), labels]
    rank = (log_probs > true[:, None]).sum(axis=1)  # 0 when the true element is the likeliest
    out = {f"top{k}": float((rank < k).mean()) for k in TOP_K}
    return out | {
        "error_rate": 1 - out["top1"],
        "cross_entropy": float(-true.mean()),
        "n_sites": len(labels),
    }


class SiteElementClassifier(Estimator):
    """Element likelihood per site from its masked environment (see the module docstring).

    Presets: ``default`` neighbours' elements visible, 30 epochs of Adam 2e-3 on a cosine
    schedule, batch 512, patience 10; ``paper`` Ryan et al.'s geometry-only setting
    (neighbours masked too), 40 epochs; ``benchmark`` the run behind
    ``benchmarks/results/structure_prediction.json`` (neighbours visible, 40 epochs).
    Standard deviations are not available: the output is already a distribution.
    """

    family = "site-element-network"
    input_kind: ClassVar[str] = "structure"
    output_kind: ClassVar[str] = "site-distribution"
    presets: ClassVar[dict] = {
        "default": {"config": CONFIG | {"epochs": 30, "patience": 10}},
        "paper": {
            "config": CONFIG | {"epochs": 40, "patience": 10},
            "settings": SiteSettings(mask_neighbors=True),
        },
        "benchmark": {"config": CONFIG | {"epochs": 40, "patience": 10}},
    }

    def __init__(
        self,
        settings: SiteSettings | None = None,
        blocks: tuple[Block, ...] = BLOCKS,
        config: TrainConfig | None = None,
        classes: tuple[int, ...] = (),
        name: str = "site-elements",
    ):
        self.settings = settings or SiteSettings()
        self.blocks = tuple(blocks)
        self.config = config or TrainConfig(**self.presets["default"]["config"])
        self.classes = tuple(int(z) for z in classes)
        self.name, self.target, self.unit = name, "element", ""
        self.net: MLP | None = self._network() if self.classes else None
        self.fit_result = FitResult()
        self.training: dict = {}
        self.metrics: dict = {}

    def _network(self) -> MLP:
        torch.manual_seed(self.config.seed)
        return MLPSpec(self.settings.n_features, self.blocks, len(self.classes)).build()

    @property
    def symbols(self) -> list[str]:
        """The element symbols of the output classes, in class order."""
        return [Element.from_Z(z).symbol for z in self.classes]

    def graphs(self, X: StructureInputs | Structure) -> CrystalGraphs:
        """The neighbour lists the site environments are read from (disk-cached)."""
        table = as_structure_table(X)
        return cached_graphs(table.structures, self.settings.graph, table.ids)

    def labels(self, graphs: CrystalGraphs, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(class index per site, mask of the sites whose element is a class); sites of
        elements the model never saw are left out of scores and counted in ``metrics``."""
        lookup = np.full(256, -1, dtype=np.int64)
        lookup[list(self.classes)] = np.arange(len(self.classes))
        index = lookup[graphs.atomic_numbers.astype(np.int64)]
        known = index >= 0
        if not known.any():
            raise DataError(f"{self.name}: no site of {source} holds an element the model knows")
        return index, known

    def fit(
        self, X: StructureInputs, y=None, *, val=None, workdir: str | Path | None = None
    ) -> SiteElementClassifier:
        """Train on every site of the structures ``X`` with early stopping on the sites of
        ``val``; checkpoints in ``workdir`` (rerunning resumes)."""
        from deepmat.train.trainer import fit_network

        if val is None or workdir is None:
            raise DataError(f"{self.name}: fit needs val= (early stopping) and workdir=")
        start = time.perf_counter()
        train_graphs, val_graphs = self.graphs(X), self.graphs(val)
        self.classes = tuple(int(z) for z in np.unique(train_graphs.atomic_numbers))
        self.net = self._network()
        x_train = site_features(train_graphs, self.settings)
        x_val = site_features(val_graphs, self.settings)
        y_train, _ = self.labels(train_graphs, "the training data")
        y_val, known = self.labels(val_graphs, "the validation data")
        feature_seconds = time.perf_counter() - start
        self.fit_result = fit_network(
            self.net,
            x_train,
            y_train.astype(np.float64),
            x_val[known],
            y_val[known].astype(np.float64),
            self.config,
            workdir,
            scaler=TargetScaler(),
            loss=CrossEntropy(),
        )
        self.training = {
            "data": {
                "n_train_structures": len(train_graphs),
                "n_val_structures": len(val_graphs),
                "n_train_sites": len(y_train),
                "n_val_sites": int(known.sum()),
                "val_sites_of_unseen_elements": int((~known).sum()),
            },
            "seconds": round(time.perf_counter() - start, 2),
            "feature_seconds": round(feature_seconds, 2),
        } | self.fit_result.record(self.config)
        self.metrics["val"] = self.evaluate_graphs(val_graphs)
        return self

    @torch.inference_mode()
    def site_log_probs(
        self, graphs: CrystalGraphs, numbers: np.ndarray | None = None
    ) -> np.ndarray:
        """(sites, classes) ln p(element | site) of every site of ``graphs``; ``numbers``
        puts other elements on the sites (see :func:`site_features`)."""
        if self.net is None:
            raise DataError(f"{self.name} is not trained")
        self.net.eval()
        x = torch.from_numpy(site_features(graphs, self.settings, numbers))
        out = [
            torch.log_softmax(self.net(x[i : i + PREDICT_BATCH]), dim=1)
            for i in range(0, len(x), PREDICT_BATCH)
        ]
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)), np.float32)

    def predict(self, X: StructureInputs | Structure, return_std: bool = False) -> list:
        """One (sites, classes) array of p(element | site) per structure (classes in the
        order of :attr:`classes`)."""
        if return_std:
            raise self.no_uncertainty("it predicts a distribution over elements per site")
        graphs = self.graphs(X)
        probs = np.exp(self.site_log_probs(graphs))
        return np.split(probs, graphs.atom_ptr[1:-1])

    def site_table(self, X: StructureInputs | Structure, top: int = 3) -> pd.DataFrame:
        """One row per site: record id, site index, its element, p(its element) and the
        ``top`` likeliest elements with their probabilities."""
        table = as_structure_table(X)
        graphs = self.graphs(table)
        probs = np.exp(self.site_log_probs(graphs))
        best = np.argsort(-probs, axis=1)[:, :top]
        column = {z: i for i, z in enumerate(self.classes)}
        own = [column.get(int(z), -1) for z in graphs.atomic_numbers]
        symbols = self.symbols
        frame = pd.DataFrame(
            {
                "id": np.repeat(table.ids, graphs.n_atoms),
                "site": np.concatenate([np.arange(n) for n in graphs.n_atoms]),
                "element": [Element.from_Z(int(z)).symbol for z in graphs.atomic_numbers],
                "p_element": [probs[i, c] if c >= 0 else 0.0 for i, c in enumerate(own)],
            }
        )
        for k in range(best.shape[1]):
            frame[f"top{k + 1}"] = [symbols[i] for i in best[:, k]]
            frame[f"p_top{k + 1}"] = probs[np.arange(len(probs)), best[:, k]]
        return frame

    def evaluate_graphs(self, graphs: CrystalGraphs) -> dict:
        """:func:`topk_metrics` on the sites of ``graphs`` whose element is a class, with
        the count of those left out."""
        labels, known = self.labels(graphs, "the data")
        scores = topk_metrics(self.site_log_probs(graphs)[known], labels[known])
        return scores | {"sites_of_unseen_elements": int((~known).sum())}

    def evaluate(self, X: StructureInputs, y=None) -> dict:
        """Top-1/5/10 accuracy, error rate and cross-entropy on every site of ``X``."""
        return self.evaluate_graphs(self.graphs(X))

    def confusion(self, X: StructureInputs | StructureTable) -> np.ndarray:
        """(classes, classes) counts of (true, most likely) element over the sites of ``X``
        whose element is a class, rows and columns in the order of :attr:`classes`."""
        graphs = self.graphs(X)
        labels, known = self.labels(graphs, "the data")
        guess = self.site_log_probs(graphs)[known].argmax(axis=1)
        matrix = np.zeros((len(self.classes),) * 2, dtype=np.int64)
        np.add.at(matrix, (labels[known], guess), 1)
        return matrix

    def element_embeddings(self) -> np.ndarray:
        """(classes, width) rows of the output layer: each element's learned vector."""
        return self.net.layers[-1].weight.detach().numpy().copy()

    def card(self) -> dict:
        return {
            "family": self.family,
            "model": self.name,
            "input": "structure",
            "output": "site element distribution",
            "sites": self.settings.to_dict(),
            "architecture": {"blocks": [vars(b) for b in self.blocks]},
            "classes": list(self.classes),
            "target": {"name": self.target, "unit": self.unit},
            "training": self.training,
            "metrics": self.metrics,
        }

    def save_state(self, path: Path) -> None:
        save_weights(self.net, path)

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> SiteElementClassifier:
        model = cls(
            SiteSettings(**card["sites"]),
            tuple(Block(**b) for b in card["architecture"]["blocks"]),
            cls.saved_config(card),
            tuple(card["classes"]),
            card["model"],
        )
        load_weights(model.net, path)
        model.restore_record(card)
        return model
