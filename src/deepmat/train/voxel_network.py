"""What the networks on voxel microstructures share: the homogenization CNN
(:class:`~deepmat.train.microstructure.VoxelCNNRegressor`) and the localization networks
(:class:`~deepmat.train.localization.NetworkLocalizationRegressor`).

Each trains one PyTorch network on standardised targets (:class:`TargetScaler`) with early
stopping on validation microstructures, a random ``val_fraction`` of the training ones when
``fit`` is given none; keeps its checkpoints in ``workdir`` (a temporary directory when
None); optionally augments batches by symmetries; and saves its weights beside the card,
which records the architecture, the target scaling and the augmentation.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepmat.data.splits import hold_out
from deepmat.errors import ConfigError
from deepmat.train.config import FitResult, TargetScaler, TrainConfig
from deepmat.train.weights import save_weights


class VoxelNetwork:
    """Mixin of the voxel networks (module docstring); comes before their estimator base."""

    net: torch.nn.Module
    spec: Any
    config: TrainConfig

    def _set_network(
        self, net: torch.nn.Module, config: TrainConfig, augment: bool, val_fraction: float
    ) -> None:
        if not 0 < val_fraction < 1:
            raise ConfigError(f"val_fraction {val_fraction} is not between 0 and 1")
        self.net, self.config = net, config
        self.augment, self.val_fraction = augment, val_fraction
        self.scaler = TargetScaler()
        self.fit_result = FitResult()

    def _hold_out(self, x: np.ndarray, y: np.ndarray):
        """A random ``val_fraction`` of (x, y) set aside for early stopping."""
        train, val = hold_out(len(x), self.val_fraction, self.config.seed, "microstructures")
        return x[train], y[train], (x[val], y[val])

    @staticmethod
    @contextmanager
    def _training_dir(workdir: str | Path | None) -> Iterator[Path]:
        """``workdir``, or a temporary directory (removed afterwards) when it is None."""
        if workdir is not None:
            yield Path(workdir)
            return
        with tempfile.TemporaryDirectory(prefix="deepmat-voxel-network-") as scratch:
            yield Path(scratch)

    def _network_card(self, card: dict) -> dict:
        """``card`` with the architecture, the target scaling and the augmentation."""
        card["architecture"] = self.spec.to_dict()
        card["target"] |= self.scaler.to_dict()
        card["augment"] = self.augment
        return card

    def save_state(self, path: Path) -> None:
        save_weights(self.net, path)
