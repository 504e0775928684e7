"""Composition jobs: resolve data, split it honestly, train, save, evaluate.

The CLI and the demo are thin shells over these functions, so a job run from Python
and one run from the shell produce the same directory: the saved model, ``split.json``
and a parity plot of the validation set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from deepmat.data.composition import CompositionTable, ErrorPolicy, read_composition_csv
from deepmat.data.registry import DATASETS, get_dataset, load_dataset
from deepmat.data.splits import Split, chemical_system_split, grouped_split, random_split
from deepmat.errors import DataError
from deepmat.models.element_sets import RoostSpec, TransformerSpec
from deepmat.models.mlp import ELEMNET_BLOCKS, MLPSpec
from deepmat.represent import ElementFractions, MagpieAttributes, element_table
from deepmat.train.config import HETEROSCEDASTIC_LOSSES, heteroscedastic_loss
from deepmat.train.element_sets import ElementSetRegressor
from deepmat.train.ensemble import Ensemble
from deepmat.train.regressors import ForestRegressor, NetworkRegressor, RecordRegressor
from deepmat.workflows.common import record_split, save_with_parity_plot

MODELS = ("elemnet", "roost", "transformer", "rf-magpie", "rf-fractions")


@dataclass
class DataSpec:
    """Where a table comes from: a named dataset (optionally ``name:split``) or a CSV."""

    data: str
    target: str | None = None
    formula_column: str | None = None
    duplicates: str = "mean"
    on_error: ErrorPolicy = "raise"

    @property
    def is_named(self) -> bool:
        return self.data.split(":")[0] in DATASETS and not Path(self.data).exists()

    def target_name(self) -> str:
        """The model's name for its target: the column given, else a named dataset's own
        name for it ("dhf" for oqmd-dhf), else "target"."""
        if self.target is None and self.is_named:
            return get_dataset(self.data.split(":")[0]).target_name
        return self.target or "target"

    def unit(self) -> str:
        """The dataset's unit when its own target column is used; unknown otherwise."""
        if not self.is_named:
            return ""
        dataset = get_dataset(self.data.split(":")[0])
        return dataset.unit if self.target in (None, dataset.target_column) else ""

    def load(self, split: str | None = None) -> CompositionTable:
        if self.is_named:
            name, _, named_split = self.data.partition(":")
            return load_dataset(
                name,
                named_split or split,
                target=self.target,
                formula_column=self.formula_column,
                duplicates=self.duplicates,
                on_error=self.on_error,
            )
        if ":" in self.data and not Path(self.data).exists():
            raise DataError(
                f"{self.data}: no such file and no such dataset; known datasets: "
                f"{', '.join(sorted(DATASETS))}"
            )
        return read_composition_csv(
            self.data,
            self.target_name(),
            formula_column=self.formula_column or "formula",
            duplicates=self.duplicates,
            on_error=self.on_error,
        )

    def evaluation_table(self) -> tuple[CompositionTable, str]:
        """The table to evaluate on and its name: the named split; else a dataset's test
        split, or its val split where it has no test split; else the whole file."""
        if self.is_named:
            name, _, named_split = self.data.partition(":")
            if named_split:
                return self.load(), named_split
            splits = get_dataset(name).splits
            for split in ("test", "val"):
                if split in splits:
                    return self.load(split), split
        return self.load(), "all"

    def train_val(
        self,
        split: str = "grouped",
        val: float = 0.1,
        seed: int = 0,
        holdout: list[str] | None = None,
    ) -> tuple[CompositionTable, CompositionTable, CompositionTable | None, Split | None]:
        """Train, validation and (for a held-out chemical system) test tables.

        A named dataset with its own train/val files uses them as distributed;
        anything else is split here (grouped by reduced composition by default).
        """
        if self.is_named and ":" not in self.data and not holdout:
            splits = get_dataset(self.data).splits
            if "train" in splits and "val" in splits:
                return self.load("train"), self.load("val"), None, None
        table = self.load()
        if holdout:
            made = chemical_system_split(
                table.compositions, holdout, val=val, seed=seed, keys=table.keys
            )
        elif split == "grouped":
            made = grouped_split(table.keys, val=val, seed=seed)
        elif split == "random":
            made = random_split(len(table), val=val, seed=seed)
        else:
            raise DataError(f"split {split!r} is not 'grouped' or 'random'")
        made.names = table.formulas
        test = table.subset(made.test) if len(made.test) else None
        return table.subset(made.train), table.subset(made.val), test, made


def make_regressor(
    model: str,
    preset: str = "default",
    target: str = "target",
    unit: str = "",
    overrides: dict | None = None,
    *,
    trees: int | None = None,
    seed: int | None = None,
    embedding: str | None = None,
    heteroscedastic: bool = False,
    ensemble: int = 1,
) -> RecordRegressor | Ensemble:
    """One of :data:`MODELS` with the arguments of ``preset``, ready to ``fit``;
    ``overrides`` replace single training options of the preset (a forest refuses them);
    ``embedding`` picks Roost's or the transformer's element embedding; ``heteroscedastic``
    gives a network a second output, its σ, trained on the Gaussian NLL; ``ensemble`` > 1
    makes an :class:`Ensemble` of that many, member i with the seed ``seed + i`` (``seed``
    by default the one ``overrides`` give, else 0)."""
    seed = (overrides or {}).get("seed", 0) if seed is None else seed
    if model not in MODELS:
        raise DataError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if embedding and model not in ("roost", "transformer"):
        raise DataError(f"--embedding applies to roost and transformer, not {model}")
    if ensemble > 1:
        return Ensemble.of(
            lambda i: make_regressor(
                model,
                preset,
                target,
                unit,
                overrides,
                trees=trees,
                seed=seed + i,
                embedding=embedding,
                heteroscedastic=heteroscedastic,
            ),
            ensemble,
        )
    names = {"name": model, "target": target, "unit": unit}
    config = (overrides or {}) | {"seed": seed}
    heteroscedastic = heteroscedastic or config.get("loss") in HETEROSCEDASTIC_LOSSES
    outputs = 2 if heteroscedastic else 1
    if heteroscedastic:
        if model.startswith("rf-"):
            raise DataError(f"--heteroscedastic applies to networks, not {model}")
        config["loss"] = heteroscedastic_loss(config.get("loss"))
    if model == "elemnet":
        spec = MLPSpec(len(ElementFractions().feature_names), ELEMNET_BLOCKS, outputs)
        return NetworkRegressor.from_preset(preset, config=config, spec=spec, **names)
    if model in ("roost", "transformer"):
        spec = (RoostSpec if model == "roost" else TransformerSpec)(out_features=outputs)
        if embedding:
            spec = replace(
                spec, embedding=embedding, embedding_dim=element_table(embedding)[0].shape[1]
            )
        return ElementSetRegressor.from_preset(preset, config=config, spec=spec, **names)
    representation = MagpieAttributes() if model == "rf-magpie" else ElementFractions()
    return ForestRegressor.from_preset(
        preset,
        config=overrides,
        representation=representation,
        n_estimators=trees,
        seed=seed,
        **names,
    )


def train_composition(
    model: RecordRegressor | Ensemble,
    train: CompositionTable,
    val: CompositionTable,
    out: str | Path,
    *,
    test: CompositionTable | None = None,
    split: Split | None = None,
    on_error: ErrorPolicy = "raise",
    resume: bool = True,
    jobs: int = 1,
) -> RecordRegressor | Ensemble:
    """Fit ``model``, save it to ``out`` with its split and a validation parity plot;
    ``jobs`` > 1 trains an ensemble's members that many at a time in their own processes."""
    out = Path(out)
    why = f" by the {model.representation.name} representation"
    supported = model.representation.supported_elements
    train = train.restrict_elements(supported, on_error, why)
    val = val.restrict_elements(supported, on_error, why)
    options = {"resume": resume} | ({"jobs": jobs} if jobs > 1 else {})
    model.fit(train, val=val, workdir=out, **options)
    if test is not None and len(test):
        test = test.restrict_elements(supported, on_error, why)
        model.metrics["test"] = model.evaluate(test)
    record_split(model, split, out)
    save_with_parity_plot(model, val, out)
    return model
