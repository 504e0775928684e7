"""Roost and the composition transformer as estimators: :class:`ElementSetRegressor`.

They read compositions as [Z, x] rows (:class:`~deepmat.represent.ElementSequence`) over
the elements their pretrained embedding covers, start from that embedding (installed before
the first epoch and saved with the weights, so loading a trained model needs neither
``elementembeddings`` nor the table) and otherwise train, predict, save and load as ElemNet
does (:class:`~deepmat.train.regressors.MLPRegressor`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from deepmat.errors import ConfigError
from deepmat.models.element_sets import RoostSpec, TransformerSpec
from deepmat.represent.element_sequence import ElementSequence, element_table
from deepmat.train.config import TrainConfig
from deepmat.train.regressors import CompositionRecords, MLPRegressor
from deepmat.train.search_space import Choice, FloatRange, IntRange, SearchSpace

SPECS = {"roost": RoostSpec, "transformer": TransformerSpec}
ELEMENT_SET_CONFIG = {"batch_size": 128, "lr": 1e-3, "schedule": "onecycle"}
#: training options that differ by architecture, in every preset: at Roost's peak rate of
#: 1e-3 the transformer collapses to predicting the mean within an epoch; 3e-4 trains it
KIND_CONFIG = {"transformer": {"lr": 3e-4}}
#: what a search varies in Roost and the transformer: the width of the element
#: representations (a multiple of every head count, as the transformer needs), the
#: attention layers and heads, and the output network, ``output_layers`` layers halving from
#: ``output_width``; the learning rate stays at or under the transformer's stable 1e-3
ELEMENT_SET_SEARCH_SPACE = SearchSpace(
    {
        "width": Choice((64, 128, 256)),
        "layers": IntRange(1, 4),
        "heads": Choice((1, 2, 4)),
        "output_width": Choice((64, 128, 256, 512)),
        "output_layers": IntRange(1, 4),
        "lr": FloatRange(1e-4, 1e-3, log=True),
        "batch_size": Choice((64, 128, 256)),
    }
)


class ElementSetRegressor(CompositionRecords, MLPRegressor):
    """Roost (the default) or the CrabNet-style transformer on compositions.

    Presets: ``default`` and ``benchmark`` one-cycle Adam (peak 1e-3; 3e-4 for the
    transformer), batch 128, 100 epochs with patience 30; ``paper`` Roost as published (Adam
    3e-4, constant, 250 epochs).
    No dropout in Roost: standard deviations come from an ensemble
    (:class:`~deepmat.train.ensemble.Ensemble`).
    """

    family = "element-set-network"
    search_space: ClassVar[SearchSpace] = ELEMENT_SET_SEARCH_SPACE
    presets: ClassVar[dict] = {
        "default": {"config": ELEMENT_SET_CONFIG | {"epochs": 100, "patience": 30}},
        "paper": {
            "config": {"batch_size": 128, "lr": 3e-4, "schedule": "constant", "epochs": 250}
            | {"patience": 250}
        },
        "benchmark": {"config": ELEMENT_SET_CONFIG | {"epochs": 100, "patience": 30}},
    }

    @classmethod
    def preset_arguments(cls, preset: str = "default", config: dict | None = None, **overrides):
        """As every estimator's, with the options of :data:`KIND_CONFIG` for the
        architecture of ``spec`` (Roost by default) under those given in ``config``."""
        kind = (overrides.get("spec") or RoostSpec()).kind
        given = {k: v for k, v in (config or {}).items() if v is not None}
        return super().preset_arguments(preset, KIND_CONFIG.get(kind, {}) | given, **overrides)

    def __init__(
        self,
        spec: RoostSpec | TransformerSpec | None = None,
        representation: ElementSequence | None = None,
        config: TrainConfig | None = None,
        name: str | None = None,
        target: str = "target",
        unit: str = "",
    ):
        spec = spec or RoostSpec()
        if representation is None:
            representation = ElementSequence(element_table(spec.embedding)[1])
        name = name or spec.kind
        config = config or TrainConfig(**self.presets["default"]["config"])
        super().__init__(spec, representation, config, name, target, unit)

    def check_spec(self) -> None:
        if not isinstance(self.representation, ElementSequence):
            raise ConfigError(
                f"{self.name} reads [Z, x] rows (ElementSequence), not "
                f"{type(self.representation).__name__}"
            )

    def prepare_network(self) -> None:
        """Install the pretrained element embedding before the first epoch."""
        if not self.training:
            table, _ = element_table(self.spec.embedding)
            self.net.embed.set_table(torch.from_numpy(table))

    def searched_spec(self, architecture: Mapping[str, Any]) -> RoostSpec | TransformerSpec:
        """This model's spec (kind, embedding, outputs) with the searched sizes."""
        a = dict(architecture)
        width, layers = a.pop("output_width"), a.pop("output_layers")
        output = tuple(max(width // 2**i, 16) for i in range(layers))
        return dataclasses.replace(self.spec, output=output, **a)

    @staticmethod
    def spec_from_dict(architecture: dict) -> RoostSpec | TransformerSpec:
        return SPECS[architecture["kind"]].from_dict(architecture)
