"""The estimator protocol across families: the registry, presets, uncertainty that is never
silently wrong, save and load through ``Estimator.save``, and cards of older versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepmat
from deepmat.errors import ConfigError, ModelFormatError
from deepmat.models.mlp import Block, MLPSpec
from deepmat.represent import ElementFractions
from deepmat.train import (
    CrystalGraphRegressor,
    Estimator,
    ForestRegressor,
    NetworkRegressor,
    Paired,
    RuleOfMixtures,
    TrainConfig,
    UncertaintyUnavailable,
)
from deepmat.train.estimator import PRESETS
from deepmat.train.localization import NETWORK_KINDS
from deepmat.train.saved import FAMILIES, estimator_class, register_family
from test_crystal import perovskite

FORMULAS = ["Fe2O3", "NaCl", "MgO", "Al2O3", "TiO2", "ZnS", "CaF2", "LiF"]
TARGETS = np.array([-1.7, -2.1, -3.1, -3.5, -3.3, -1.0, -4.2, -3.2])


def concrete_classes() -> list[type[Estimator]]:
    classes = [estimator_class(family) for family in FAMILIES]
    return [c for c in classes if c.__name__ != "NetworkLocalizationRegressor"] + list(
        NETWORK_KINDS.values()
    )


@pytest.mark.parametrize("cls", concrete_classes(), ids=lambda c: c.__name__)
def test_every_family_is_an_estimator_with_the_three_presets(cls):
    assert issubclass(cls, Estimator) and cls.input_kind and cls.family
    assert set(PRESETS) <= set(cls.presets)
    for preset in PRESETS:
        arguments = cls.preset_arguments(preset)
        if "config" in arguments:
            assert isinstance(arguments["config"], TrainConfig)


def test_presets_are_overridden_field_by_field():
    model = NetworkRegressor.from_preset("benchmark", config={"epochs": 3, "lr": None})
    assert model.config.epochs == 3 and model.config.lr == 1e-3  # None keeps the preset's
    assert model.config.precision == "bf16-mixed" and model.config.dropout_until == 0.75
    assert NetworkRegressor.from_preset("paper").config.schedule == "constant"
    with pytest.raises(ConfigError, match="no preset 'fast'"):
        NetworkRegressor.from_preset("fast")


def test_the_cli_preset_builds_what_the_benchmark_preset_holds():
    from deepmat.workflows.composition import make_regressor

    model = make_regressor("elemnet", "benchmark", "dhf", "eV/atom", {"progress": False})
    expected = NetworkRegressor.presets["benchmark"]["config"]
    assert {k: model.config.to_dict()[k] for k in expected} == expected


def test_mc_dropout_needs_dropout_throughout_training():
    n = len(ElementFractions().feature_names)
    spec = MLPSpec(n, (Block(16, 2, dropout=0.2),))
    with_dropout = NetworkRegressor(spec, config=TrainConfig(dropout_until=1.0))
    mean, std = with_dropout.predict(FORMULAS, return_std=True)
    assert mean.shape == std.shape == (8,) and np.all(std > 0)
    settled = NetworkRegressor(spec, config=TrainConfig(dropout_until=0.75))
    with pytest.raises(UncertaintyUnavailable, match="without dropout"):
        settled.predict(FORMULAS, return_std=True)
    plain = NetworkRegressor(MLPSpec(n, (Block(16, 2),)))
    with pytest.raises(UncertaintyUnavailable, match="has none"):
        plain.predict(FORMULAS, return_std=True)


def test_models_without_uncertainty_say_so():
    with pytest.raises(UncertaintyUnavailable, match="no stochastic layers"):
        CrystalGraphRegressor().predict([perovskite("Sr", "Ti")], return_std=True)
    from deepmat.physics import IsotropicPhase

    rule = RuleOfMixtures([IsotropicPhase(1.0, 0.3), IsotropicPhase(50.0, 0.3)])
    with pytest.raises(UncertaintyUnavailable, match="deterministic"):
        rule.predict(np.zeros((1, 3, 3, 3), dtype=np.uint8), return_std=True)


def test_fit_takes_records_and_targets_and_evaluate_returns_a_dict(tmp_path):
    forest = ForestRegressor(ElementFractions(), n_estimators=10, n_jobs=1)
    forest.fit(FORMULAS, TARGETS, val=(FORMULAS[:3], TARGETS[:3]))
    metrics = forest.evaluate(FORMULAS, TARGETS)
    assert isinstance(metrics, dict) and metrics["n"] == 8
    path = forest.save(tmp_path / "forest")
    loaded = deepmat.load(path)
    assert type(loaded) is ForestRegressor and loaded.source == path
    np.testing.assert_allclose(loaded.predict(FORMULAS), forest.predict(FORMULAS))
    with pytest.raises(deepmat.DataError, match="targets of shape"):
        forest.evaluate(FORMULAS, TARGETS[:3])


def test_a_version_1_card_loads_and_a_newer_one_is_refused(tmp_path):
    path = (
        ForestRegressor(ElementFractions(), n_estimators=5, n_jobs=1)
        .fit(FORMULAS, TARGETS)
        .save(tmp_path / "old")
    )
    card = json.loads((path / "card.json").read_text())
    (path / "card.json").write_text(json.dumps(card | {"format_version": 1}))
    assert deepmat.load(path).predict(["NaCl"]).shape == (1,)
    (path / "card.json").write_text(json.dumps(card | {"format_version": 99}))
    with pytest.raises(ModelFormatError, match="newer than this deepmat reads"):
        deepmat.load(path)


def test_a_new_family_registers_without_touching_the_loader(tmp_path):
    register_family("constant", "test_protocol:ConstantModel")
    try:
        path = ConstantModel(2.5).save(tmp_path / "constant")
        assert deepmat.load(path).predict(["NaCl", "MgO"]).tolist() == [2.5, 2.5]
    finally:
        FAMILIES.pop("constant")
    with pytest.raises(ModelFormatError, match="unknown model family 'constant'"):
        deepmat.load(path)


class ConstantModel(Estimator):
    """The smallest estimator: predicts one number (a registry test double)."""

    family = "constant"
    input_kind = "composition"

    def __init__(self, value: float):
        self.value, self.name, self.training, self.metrics = value, "constant", {}, {}

    def predict(self, X, return_std=False):
        return np.full(len(X), self.value)

    def card(self) -> dict:
        return {"family": self.family, "model": self.name, "value": self.value}

    @classmethod
    def from_saved(cls, path, card):
        return cls(card["value"])


@pytest.mark.parametrize("package", ["data", "represent", "models", "physics", "train"])
def test_every_lazy_export_resolves(package):
    import importlib

    module = importlib.import_module(f"deepmat.{package}")
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        module.nothing  # noqa: B018


def test_training_options_for_a_forest_are_refused_not_ignored():
    from deepmat.workflows.composition import make_regressor

    with pytest.raises(ConfigError, match="trains no network: the training options epochs"):
        make_regressor("rf-magpie", "default", overrides={"epochs": 5, "progress": False})
    assert make_regressor("rf-magpie", overrides={"progress": False, "seed": 1}).name == "rf-magpie"


def test_a_pair_keeps_its_models_mean_and_refuses_a_companion_of_another_target(tmp_path):
    n = len(ElementFractions().feature_names)
    config = TrainConfig(epochs=2, progress=False)
    spec = MLPSpec(n, (Block(16, 2),))
    network = NetworkRegressor(spec, config=config, name="net", target="dhf", unit="eV/atom")
    network.fit(FORMULAS, TARGETS, val=(FORMULAS[:3], TARGETS[:3]), workdir=tmp_path / "net")
    forest = ForestRegressor(ElementFractions(), n_estimators=10, n_jobs=1, target="dhf")
    forest.unit = "eV/atom"
    forest.fit(FORMULAS, TARGETS)
    pair = Paired(network, forest)
    mean, std = pair.predict(FORMULAS, return_std=True)
    assert np.array_equal(mean, network.predict(FORMULAS)) and np.all(std > 0)
    _, parts = pair.variance_components(FORMULAS)
    np.testing.assert_allclose(parts["epistemic"], (mean - forest.predict(FORMULAS)) ** 2)
    np.testing.assert_allclose(
        parts["aleatoric"], forest.predict(FORMULAS, return_std=True)[1] ** 2
    )
    loaded = deepmat.load(pair.save(tmp_path / "pair"))
    assert loaded.family == "paired" and loaded.starting_point("network") is loaded.model
    assert loaded.net is loaded.model.net  # the rest is the model's
    np.testing.assert_allclose(loaded.predict(FORMULAS, return_std=True)[1], std, rtol=1e-5)
    gap = ForestRegressor(ElementFractions(), n_estimators=5, n_jobs=1, name="gaps", target="gap")
    with pytest.raises(ConfigError, match="companion gaps differs from net in target"):
        Paired(network, gap)
