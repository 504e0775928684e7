"""Crystal graphs, CGCNN, the perovskite site descriptors and the structure regressors, on
small structures built in the tests."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pymatgen.core import Element, Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

import deepmat
from deepmat.data.composition import LoadReport
from deepmat.data.structures import StructureTable
from deepmat.errors import ConfigError, DataError
from deepmat.models.cgcnn import CGCNN, CGCNNSpec, GaussianDistance
from deepmat.represent import crystal_graph
from deepmat.represent.atom_features import (
    ENCODINGS,
    MAX_Z,
    atom_feature_names,
    atom_feature_table,
)
from deepmat.represent.crystal_graph import GraphSettings, build_graphs, cached_graphs
from deepmat.represent.perovskite_sites import PerovskiteSites, assign_sites
from deepmat.train.config import TrainConfig
from deepmat.train.crystal import CrystalGraphRegressor, SiteNetworkRegressor, contributions_by
from deepmat.train.estimator import UncertaintyUnavailable
from deepmat.train.saved import save_model
from deepmat.workflows.crystal import make_structure_model, train_structure_model

A_SITE = ("Ca", "Sr", "Ba", "K", "Na", "La", "Pb", "Cd")
B_SITE = ("Ti", "Zr", "Nb", "Ta", "Fe", "Mn", "Sn", "Hf")
PEROVSKITE_SITES = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


def rock_salt(a: float = 5.64, primitive: bool = False) -> Structure:
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    return s.get_primitive_structure() if primitive else s


def perovskite(a_site: str, b_site: str, anion: str = "O", a: float = 4.0) -> Structure:
    return Structure(Lattice.cubic(a), [a_site, b_site, anion, anion, anion], PEROVSKITE_SITES)


def perovskite_table() -> StructureTable:
    """64 cubic ABO3 perovskites, lattice parameter from the radii, and a target that
    depends smoothly on the A and B electronegativities and the cell size."""
    structures, targets, ids = [], [], []
    for a_site, b_site in itertools.product(A_SITE, B_SITE):
        a = 2.0 * (Element(b_site).atomic_radius + 0.6) * 1.05
        structures.append(perovskite(a_site, b_site, a=float(a)))
        targets.append(-1.5 + 0.8 * Element(a_site).X - 0.5 * Element(b_site).X + 0.3 * (a - 4))
        ids.append(f"{a_site}{b_site}O3")
    return StructureTable(ids, structures, np.array(targets), LoadReport("test", len(ids)))


def quiet(**overrides) -> TrainConfig:
    settings = {"epochs": 30, "batch_size": 16, "lr": 3e-3, "schedule": "cosine", "patience": 30}
    return TrainConfig(progress=False, **(settings | overrides))


# -- atom features -----------------------------------------------------------------------


def test_atom_features_one_hot_encode_each_property_of_each_element():
    table, names = atom_feature_table(), atom_feature_names()
    assert table.shape == (MAX_Z + 1, len(names)) == (101, 91)
    assert not table[0].any()  # row 0 is no element
    oxygen = {names[i] for i in np.flatnonzero(table[8])}
    assert {"group=16", "period=2", "block=p", "valence electrons=6"} <= oxygen
    start = 0
    for encoding in ENCODINGS:  # at most one category per property for every element
        width = len(encoding.labels)
        assert table[1:, start : start + width].sum(1).max() == 1
        start += width
    assert table[26].sum() == len(ENCODINGS)  # iron has all nine properties


# -- crystal graphs ----------------------------------------------------------------------


def test_graph_keeps_the_nearest_neighbours_within_the_cutoff():
    graphs = build_graphs([rock_salt()], GraphSettings(cutoff=8.0, max_neighbors=12))
    assert graphs.n_atoms.tolist() == [8]
    edges_per_atom = np.bincount(graphs.centers)
    assert edges_per_atom.tolist() == [12] * 8
    first_shell = graphs.distances.reshape(8, 12)[:, :6]
    np.testing.assert_allclose(first_shell, 5.64 / 2, rtol=1e-6)
    assert np.all(np.diff(graphs.distances.reshape(8, 12), axis=1) >= -1e-6)  # sorted
    short = build_graphs([rock_salt()], GraphSettings(cutoff=3.0, max_neighbors=12))
    assert np.bincount(short.centers).tolist() == [6] * 8  # only the first shell in 3 Å


def test_a_batch_renumbers_atoms_and_keeps_each_graph_its_own_edges():
    graphs = build_graphs([rock_salt(), perovskite("Sr", "Ti"), rock_salt(5.0, True)])
    batch = graphs.batch([2, 0, 2])
    assert batch.n_graphs == 3
    assert batch.graph.bincount().tolist() == [2, 8, 2]
    assert sorted(batch.atomic_numbers.tolist()[:2]) == [11, 17]
    centres, neighbours = batch.edge_index
    assert torch.equal(batch.graph[centres], batch.graph[neighbours])  # no edge across graphs
    assert torch.equal(batch.distances[:24], batch.distances[-24:])  # same structure twice


def test_graph_cache_returns_the_same_graphs_from_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(crystal_graph, "CACHE_MIN", 1)
    structures = [rock_salt(), perovskite("Ba", "Zr")]
    first = cached_graphs(structures)
    (stored,) = (tmp_path / "graphs").glob("*.npz")
    second = cached_graphs(structures)
    for name in ("atomic_numbers", "atom_ptr", "centers", "neighbors", "distances", "edge_ptr"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    cached_graphs(structures, GraphSettings(cutoff=5.0))  # other settings, other entry
    assert len(list((tmp_path / "graphs").glob("*.npz"))) == 2 and stored.exists()


def test_an_element_without_atom_features_is_an_error_naming_the_record():
    heavy = Structure(Lattice.cubic(4.0), ["Og"], [[0, 0, 0]])
    with pytest.raises(DataError, match=r"bad-one: element Z=118 has no atom features"):
        build_graphs([rock_salt(), heavy], ids=["fine", "bad-one"])


def test_graph_settings_are_validated():
    with pytest.raises(DataError, match="cutoff > 0"):
        GraphSettings(cutoff=0.0)


# -- the network -------------------------------------------------------------------------


@pytest.mark.parametrize("conv", ["gated", "shared"])
def test_cgcnn_predicts_the_same_for_any_cell_choice_and_site_order(conv):
    torch.manual_seed(0)
    net = CGCNN(CGCNNSpec(conv=conv, atom_features=16, hidden=(16,))).eval()
    settings = GraphSettings(cutoff=6.0, max_neighbors=6)  # the full first shell: no ties
    conventional = rock_salt()
    shuffled = Structure.from_sites([conventional[i] for i in (5, 2, 7, 0, 1, 3, 6, 4)])
    graphs = build_graphs([conventional, rock_salt(primitive=True), shuffled], settings)
    with torch.no_grad():
        out = net(graphs.batch([0, 1, 2])).squeeze(1)
    np.testing.assert_allclose(out.numpy(), out[0].item(), rtol=1e-5)


def test_linear_pooling_prediction_is_the_mean_of_the_site_contributions():
    torch.manual_seed(0)
    net = CGCNN(CGCNNSpec(pooling="linear", atom_features=16)).eval()
    graphs = build_graphs([perovskite("Sr", "Ti"), rock_salt()])
    batch = graphs.batch([0, 1])
    with torch.no_grad():
        sites, out = net.site_contributions(batch), net(batch).squeeze(1)
    assert sites.shape == (13,)
    np.testing.assert_allclose(out.numpy(), [sites[:5].mean(), sites[5:].mean()], rtol=1e-5)
    with pytest.raises(ConfigError, match="linear"):
        CGCNN(CGCNNSpec()).site_contributions(batch)


def test_gaussian_expansion_peaks_at_its_centres_and_has_no_subnormals():
    expand = GaussianDistance(cutoff=8.0, width=0.2)
    u = expand(torch.tensor([0.0, 2.0, 8.0]))
    assert u.shape == (3, 41)
    assert u.argmax(1).tolist() == [0, 10, 40]
    tiny = u[(u > 0) & (u < torch.finfo(torch.float32).tiny)]
    assert tiny.numel() == 0


def test_cgcnn_spec_rejects_unknown_choices():
    with pytest.raises(ConfigError, match="convolution"):
        CGCNNSpec(conv="attention")
    with pytest.raises(ConfigError, match="pooling"):
        CGCNNSpec(pooling="max")


# -- perovskite sites --------------------------------------------------------------------


def test_perovskite_sites_come_from_chemistry_and_geometry():
    assert assign_sites(perovskite("Sr", "Ti")) == ["A", "B", "X", "X", "X"]
    swapped = Structure(Lattice.cubic(4.0), ["Ti", "Sr", "O", "O", "O"], PEROVSKITE_SITES)
    swapped.translate_sites([0, 1], [0.5, 0.5, 0.5])  # Ti now at the octahedron centre
    assert assign_sites(swapped) == ["B", "A", "X", "X", "X"]
    mixed = Structure(Lattice.cubic(4.0), ["La", "Ti", "O", "O", "N"], PEROVSKITE_SITES)
    features = PerovskiteSites().transform([mixed])
    assert features.shape == (1, 10)
    assert features[0, 4] == pytest.approx(Element("O").X)  # X sites by electronegativity
    assert features[0, 8] == pytest.approx(Element("N").X)
    assert features[0, 1] == pytest.approx(1.172)  # Shannon radius of La3+ (VI)


def test_a_structure_that_is_not_a_perovskite_is_an_error_naming_it():
    with pytest.raises(DataError, match="NaCl-8: perovskite site features need the 5-site"):
        PerovskiteSites().transform([rock_salt()], ["NaCl-8"])
    with pytest.raises(DataError, match="6 sites is not a multiple of 5"):
        assign_sites(Structure(Lattice.cubic(4.0), ["Na"] * 6, np.random.rand(6, 3)))


# -- regressors --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def perovskites():
    table = perovskite_table()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(table))
    return table.subset(order[:48]), table.subset(order[48:])


def mean_baseline(train, val) -> float:
    return float(np.abs(val.targets - train.targets.mean()).mean())


@pytest.mark.parametrize("pooling", ["mean", "linear"])
def test_cgcnn_learns_saves_and_loads(perovskites, pooling, tmp_path):
    train, val = perovskites
    spec = CGCNNSpec(pooling=pooling, atom_features=32, n_conv=2, hidden=(32,))
    model = CrystalGraphRegressor(spec, config=quiet(), unit="eV/atom")
    model.fit(train, val=val, workdir=tmp_path / "work")
    assert model.metrics["val"]["mae"] < 0.6 * mean_baseline(train, val)
    assert model.training["data"]["n_train"] == 48 and model.training["epochs_run"] == 30
    assert all("epoch_seconds" in row for row in model.fit_result.history)
    save_model(model, tmp_path / "model")
    loaded = deepmat.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.predict(val), model.predict(val), rtol=1e-5)
    atoms = [AseAtomsAdaptor.get_atoms(s) for s in val.structures]  # ASE Atoms work too
    np.testing.assert_allclose(loaded.predict(atoms), model.predict(val), rtol=1e-5)
    assert loaded.card()["graph"] == {"cutoff": 8.0, "max_neighbors": 12}
    if pooling == "linear":
        sites = loaded.site_contributions(val)
        assert len(sites) == 5 * len(val)
        per_structure = sites.groupby("id", sort=False)["contribution"].mean()
        np.testing.assert_allclose(per_structure.to_numpy(), loaded.predict(val), rtol=1e-5)
        assert set(contributions_by(sites, "role")["role"]) == {"A", "B", "X"}


def test_site_network_learns_from_perovskite_descriptors(perovskites, tmp_path):
    train, val = perovskites
    model = SiteNetworkRegressor(config=quiet(epochs=200, batch_size=16))
    model.fit(train, val=val, workdir=tmp_path / "work")
    assert model.metrics["val"]["mae"] < 0.5 * mean_baseline(train, val)
    save_model(model, tmp_path / "model")
    loaded = deepmat.load(tmp_path / "model")
    assert loaded.card()["input"] == "structure"
    np.testing.assert_allclose(loaded.predict(val.structures), model.predict(val), rtol=1e-6)


def test_a_cell_of_five_sites_that_is_no_perovskite_gets_no_site_roles():
    from deepmat.train.crystal import _perovskite_roles

    jumble = Structure(
        Lattice.cubic(5.0),
        ["Na", "Cl", "Na", "Cl", "Cl"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5]],
    )
    with pytest.raises(DataError, match="not an ABX3 perovskite: the six nearest neighbours"):
        assign_sites(jumble, "jumble")
    assert _perovskite_roles(jumble) == [""] * 5


def test_structure_keys_are_cached_by_structures(monkeypatch, tmp_path):
    import json

    from deepmat.workflows import crystal as workflow

    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(workflow, "KEYS_CACHE_MIN", 1)
    table = perovskite_table()
    train, val, _, split = workflow.split_structures(table, val=0.25)
    (stored,) = (tmp_path / "structure-keys").glob("*.json")
    assert json.loads(stored.read_text()) == table.keys()
    again = workflow.split_structures(table, val=0.25)[3]
    assert again.val.tolist() == split.val.tolist() and len(train) + len(val) == 64
    workflow.split_structures(table.subset(range(10)), val=0.2)  # other structures, other key
    assert len(list((tmp_path / "structure-keys").glob("*.json"))) == 2


def test_a_heteroscedastic_cgcnn_predicts_its_own_standard_deviation(perovskites, tmp_path):
    train, val = perovskites
    spec = CGCNNSpec(atom_features=32, n_conv=2, hidden=(32,), out_features=2)
    model = CrystalGraphRegressor(spec, config=quiet(loss="gaussian-nll"), unit="eV/atom")
    model.fit(train, val=val, workdir=tmp_path / "work")
    mean, std = model.predict(val, return_std=True)
    assert mean.shape == std.shape == (len(val),) and np.all(std > 0)
    assert model.metrics["val"]["mae"] < mean_baseline(train, val)
    loaded = deepmat.load(model.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.predict(val, return_std=True)[1], std, rtol=1e-5)
    with pytest.raises(ConfigError, match="2 outputs, μ and ln σ"):
        CrystalGraphRegressor(CGCNNSpec(), config=quiet(loss="gaussian-nll"))
    with pytest.raises(ConfigError, match="mean pooling"):
        CGCNNSpec(pooling="linear", out_features=2)
    with pytest.raises(UncertaintyUnavailable, match="train an ensemble or a heteroscedastic"):
        CrystalGraphRegressor(CGCNNSpec(), config=quiet()).predict(val, return_std=True)


def test_an_ensemble_of_cgcnns_is_one_saved_model_with_a_spread(perovskites, tmp_path):
    train, val = perovskites
    overrides = {"epochs": 3, "batch_size": 16, "progress": False}
    ensemble = make_structure_model("cgcnn", "dhf", "eV/atom", "default", overrides, ensemble=2)
    assert [m.config.seed for m in ensemble.members] == [0, 1]
    train_structure_model(ensemble, train, val, tmp_path / "ens")
    loaded = deepmat.load(tmp_path / "ens")
    mean, std = loaded.predict(val, return_std=True)
    assert std.shape == (len(val),) and np.all(std > 0)
    np.testing.assert_allclose(mean, ensemble.predict(val), rtol=1e-5)
    with pytest.raises(DataError, match="mean-pooling CGCNNs, not cgcnn-linear"):
        make_structure_model("cgcnn-linear", heteroscedastic=True)
