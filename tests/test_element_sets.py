"""Roost and the composition transformer: permutation-invariant networks on [Z, x] rows that
start from a pretrained element embedding, learn a composition target and round-trip
through a saved model without needing the embedding package to load."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from pymatgen.core import Composition

import deepmat
from deepmat.errors import DataError
from deepmat.models.element_sets import RoostSpec, TransformerSpec
from deepmat.represent import ElementSequence, element_table
from deepmat.train import ElementSetRegressor, TrainConfig
from deepmat.workflows.composition import make_regressor

SMALL = {
    "roost": RoostSpec(width=16, layers=2, heads=2, hidden=32, readout_heads=2, output=(32,)),
    "transformer": TransformerSpec(width=32, layers=1, heads=2, feedforward=64, output=(32,)),
}


def test_rows_are_elements_by_fraction_padded_and_checked():
    rows = ElementSequence(max_elements=4).transform([Composition("Fe2O3"), Composition("NaCl")])
    assert rows.shape == (2, 4, 2) and rows.dtype == np.float32
    np.testing.assert_allclose(rows[0, :3], [[8, 0.6], [26, 0.4], [0, 0]])
    assert rows[1, :, 1].sum() == pytest.approx(1.0)
    with pytest.raises(DataError, match=r"input\[0\] \(.*\): 5 elements, more than the 4"):
        ElementSequence(max_elements=4).transform([Composition("LiNaKRbCs")])
    with pytest.raises(DataError, match="element Xe has no row"):
        ElementSequence(("Fe", "O")).transform([Composition("FeO"), Composition("Xe")])


def test_embedding_tables_have_a_row_per_atomic_number():
    table, elements = element_table("megnet16")
    assert table.shape == (119, 16) and not table[0].any()
    assert elements[0] == "H" and np.abs(table[26]).sum() > 0
    with pytest.raises(DataError, match="unknown element embedding"):
        element_table("word2vec")


@pytest.mark.parametrize("kind", SMALL)
def test_networks_ignore_the_order_of_elements_and_the_padding(kind):
    torch.manual_seed(0)
    net = SMALL[kind].build().eval()
    net.embed.set_table(torch.from_numpy(element_table(SMALL[kind].embedding)[0]))
    rows = torch.from_numpy(ElementSequence().transform([Composition("LiFePO4")]))
    shuffled = rows[:, [2, 0, 3, 1, 4, 5, 6, 7]]
    with torch.no_grad():
        np.testing.assert_allclose(net(shuffled), net(rows), atol=1e-5)
        np.testing.assert_allclose(net(rows[:, :4]), net(rows), atol=1e-5)


@pytest.mark.parametrize("kind", SMALL)
def test_formulas_of_a_batch_do_not_see_each_other(kind):
    torch.manual_seed(0)
    net = SMALL[kind].build().eval()
    net.embed.set_table(torch.from_numpy(element_table(SMALL[kind].embedding)[0]))
    formulas = ["LiFePO4", "NaCl", "Fe", "BaTiO3"]
    rows = torch.from_numpy(ElementSequence().transform([Composition(f) for f in formulas]))
    with torch.no_grad():
        alone = torch.cat([net(rows[k : k + 1]) for k in range(len(formulas))])
        np.testing.assert_allclose(net(rows), alone, atol=1e-5)


@pytest.mark.parametrize("kind", SMALL)
def test_trains_saves_and_loads_without_the_embedding_package(kind, small_table, tmp_path):
    order = np.random.default_rng(0).permutation(len(small_table))
    train, val = small_table.subset(order[:240]), small_table.subset(order[240:])
    config = TrainConfig(epochs=12, batch_size=32, lr=3e-3, progress=False)
    model = ElementSetRegressor(SMALL[kind], config=config, name=kind)
    model.fit(train, val=val, workdir=tmp_path / "run")
    spread = np.abs(val.targets - val.targets.mean()).mean()
    assert model.metrics["val"]["mae"] < 0.8 * spread
    path = model.save(tmp_path / kind)
    script = (
        "import sys, json, deepmat\n"
        f"m = deepmat.load({str(path)!r})\n"
        "print(json.dumps([float(v) for v in m.predict(['Fe2O3', 'MgO'])]))\n"
        "print('elementembeddings' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    values, imported = out.stdout.strip().splitlines()[-2:]
    np.testing.assert_allclose(json.loads(values), model.predict(["Fe2O3", "MgO"]), rtol=1e-5)
    assert imported == "False"
    assert deepmat.load(path).card()["architecture"]["kind"] == kind


def test_the_transformer_trains_at_its_own_rate_unless_told_otherwise():
    roost = make_regressor("roost", "benchmark")
    transformer = make_regressor("transformer", "benchmark")
    assert roost.config.lr == 1e-3 and transformer.config.lr == 3e-4
    assert make_regressor("transformer", "benchmark", overrides={"lr": 1e-4}).config.lr == 1e-4


def test_a_seed_among_the_overrides_is_kept_unless_one_is_given():
    assert make_regressor("roost", overrides={"seed": 3}).config.seed == 3
    assert make_regressor("roost", overrides={"seed": 3}, seed=5).config.seed == 5
    assert make_regressor("roost").config.seed == 0
