"""Crystal structure prediction: masked site environments, the site element model, templates,
candidates and their ranking, bad input, and ``deepmat predict-structure``, on small
structures built in the tests."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.data.composition import LoadReport
from deepmat.data.structures import StructureTable
from deepmat.errors import DataError
from deepmat.represent import site_environments
from deepmat.represent.crystal_graph import build_graphs
from deepmat.represent.site_environments import SiteSettings, site_features
from deepmat.train.config import TrainConfig
from deepmat.train.site_elements import SiteElementClassifier, topk_metrics
from deepmat.workflows.structure_prediction import (
    Ranking,
    TemplateScorer,
    label_compounds,
    predict_structure,
    rank_compounds,
    topk_summary,
)
from deepmat.workflows.substitution import log_substitution_table
from deepmat.workflows.templates import build_templates, load_templates, save_templates

ROCK_SALTS = [("Na", "Cl", 5.64), ("K", "Cl", 6.29), ("Na", "F", 4.63), ("Mg", "O", 4.21)]
CSCLS = [("Cs", "Cl", 4.12), ("Cs", "Br", 4.29), ("Tl", "Cl", 3.84)]


def rock_salt(a: str, b: str, lattice: float) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5] * 3]
    ).get_primitive_structure()


def cscl(a: str, b: str, lattice: float) -> Structure:
    return Structure(Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5] * 3])


def table_of(structures: list[Structure]) -> StructureTable:
    ids = [f"x{i}-{s.composition.reduced_formula}" for i, s in enumerate(structures)]
    return StructureTable(ids, structures, np.zeros(len(structures)), LoadReport("test", len(ids)))


@pytest.fixture(scope="module")
def crystals() -> list[Structure]:
    return [rock_salt(*r) for r in ROCK_SALTS] + [cscl(*c) for c in CSCLS]


@pytest.fixture(scope="module")
def site_model(crystals, tmp_path_factory) -> SiteElementClassifier:
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2, progress=False)
    model = SiteElementClassifier(SiteSettings(mask_neighbors=True), config=config)
    work = tmp_path_factory.mktemp("site")
    model.fit(crystals, val=crystals[:2], workdir=work)
    model.save(work / "model")
    return model


def test_masked_environments_ignore_elements_and_cell_scale(monkeypatch):
    # one-hot atomic numbers stand in for the CGCNN atom features (quick to build)
    monkeypatch.setattr(site_environments, "atom_feature_table", lambda: np.eye(101))
    settings = SiteSettings(mask_neighbors=True)
    base = site_features(build_graphs([rock_salt("Na", "Cl", 5.64)], settings.graph), settings)
    other = site_features(build_graphs([rock_salt("K", "Br", 6.6)], settings.graph), settings)
    np.testing.assert_allclose(base, other, atol=1e-5)  # same type, other size and elements
    unmasked = SiteSettings(mask_neighbors=False)
    a = site_features(build_graphs([rock_salt("Na", "Cl", 5.64)], unmasked.graph), unmasked)
    b = site_features(build_graphs([rock_salt("Na", "Br", 5.64)], unmasked.graph), unmasked)
    assert a.shape[1] == unmasked.n_features and not np.allclose(a, b)
    # each site of rock salt has six neighbours of the other species
    assert base[0, 2 * 12 + len((0.05, 0.1, 0.2, 0.3, 0.5)) :][:6].sum() == 0


def test_visible_neighbours_score_each_assignment(monkeypatch, site_model, crystals, tmp_path):
    monkeypatch.setattr(site_environments, "atom_feature_table", lambda: np.eye(101))
    config = TrainConfig(epochs=1, batch_size=8, progress=False)
    visible = SiteElementClassifier(SiteSettings(), config=config).fit(
        crystals, val=crystals[:2], workdir=tmp_path
    )
    templates, _ = build_templates(table_of(crystals))
    scorer = TemplateScorer(site_model, templates, companions=[visible])
    candidates = scorer.candidates(Composition("KF"))
    assert len(candidates) == 2 and np.isfinite(candidates["log_likelihood_sum_1"]).all()
    alone = TemplateScorer(visible, templates).candidates(Composition("KF"))
    np.testing.assert_allclose(
        Ranking(weights=(0.0, 1.0)).score(candidates), alone["log_likelihood_sum"], rtol=1e-6
    )
    both = Ranking("mean", 1.0, (1.0, 0.5)).score(candidates)
    expected = (
        candidates["log_likelihood_mean"]
        + 0.5 * candidates["log_likelihood_mean_1"]
        + np.log(candidates["template_count"])
    )
    np.testing.assert_allclose(both, expected, rtol=1e-6)


def test_topk_metrics_counts_ranks():
    log_probs = np.log(np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2]]))
    scores = topk_metrics(log_probs, np.array([0, 0, 2]))
    assert scores["top1"] == pytest.approx(1 / 3) and scores["top5"] == 1.0
    assert scores["error_rate"] == pytest.approx(2 / 3) and scores["n_sites"] == 3


def test_site_model_predicts_distributions_and_round_trips(site_model, crystals):
    probs = site_model.predict(crystals[:2])
    assert [p.shape for p in probs] == [(2, len(site_model.classes))] * 2
    np.testing.assert_allclose(probs[0].sum(axis=1), 1, rtol=1e-5)
    scores = site_model.evaluate(crystals)
    assert {"top1", "top5", "top10", "error_rate", "n_sites"} <= set(scores)
    loaded = deepmat.load(site_model.source)
    np.testing.assert_allclose(loaded.predict(crystals[:1])[0], probs[0], rtol=1e-5)
    assert loaded.confusion(crystals).sum() == sum(len(s) for s in crystals)
    assert site_model.element_embeddings().shape[0] == len(site_model.classes)
    sites = site_model.site_table(crystals[:2])
    assert sorted(sites["element"]) == ["Cl", "Cl", "K", "Na"]
    assert (sites["p_top1"] >= sites["p_element"]).all()


def test_templates_group_structure_types_and_dedupe_symmetric_assignments(site_model, crystals):
    templates, dropped = build_templates(table_of(crystals))
    assert sorted(t.count for t in templates) == [3, 4] and dropped == {}
    scorer = TemplateScorer(site_model, templates)
    candidates = scorer.candidates(Composition("KF"))
    # rock salt and CsCl: swapping the two elements is a symmetry of both
    assert len(candidates) == 2
    truth = rock_salt("K", "F", 5.35)
    correct = scorer.label(candidates, truth)
    assert correct.sum() == 1
    assert candidates.loc[correct, "template_formula"].item() in {"NaCl", "KCl", "NaF", "MgO"}
    labelled = label_compounds(scorer, table_of([truth]))
    for method in ("deepmat", "substitution", "frequency"):
        ranks = rank_compounds(labelled, table_of([truth]), method, Ranking())
        summary = topk_summary(ranks)
        assert summary["binary"]["ceiling"] == 1.0 and summary["all"]["top10"] == 1.0
    # frequency: the four rock salts outnumber the three CsCl crystals
    assert rank_compounds(labelled, table_of([truth]), "frequency", Ranking())["rank"][0] == 1


def test_rescaled_candidates_and_written_cifs(site_model, crystals, tmp_path):
    templates, _ = build_templates(table_of(crystals))
    save_templates(templates, tmp_path / "lib", {"test": True})
    scorer = TemplateScorer(site_model, load_templates(tmp_path / "lib")[0])
    best = predict_structure(scorer, "KBr", tmp_path / "out", top_k=2)
    assert list(best["rank"]) == [1, 2] and (tmp_path / "out" / "candidates.csv").exists()
    assert set(best["replaces"]) <= {
        "Na>K Cl>Br",
        "K>K Cl>Br",
        "Na>K F>Br",
        "Mg>K O>Br",
        "Cs>K Cl>Br",
        "Cs>K Br>Br",
        "Tl>K Cl>Br",
    }
    written = Structure.from_file(tmp_path / "out" / best["cif"][0])
    assert written.composition.reduced_formula == "KBr"
    # the template's volume scaled by Σ r³ of the new elements over the old
    template = templates[int(scorer.candidates(Composition("KBr"))["template"][0])]
    assert written.volume != pytest.approx(template.structure.volume)


def test_bad_input_names_the_problem(site_model, crystals, tmp_path):
    templates, _ = build_templates(table_of(crystals))
    scorer = TemplateScorer(site_model, templates)
    with pytest.raises(DataError, match="Xe never occurs"):
        scorer.candidates(Composition("XeCl"))
    assert (
        len(
            TemplateScorer(site_model, templates, allow_unseen=True).candidates(Composition("XeCl"))
        )
        == 2
    )
    with pytest.raises(DataError, match="3 distinct elements, but no template has more than 2"):
        scorer.candidates(Composition("NaKCl2"))
    molecule = tmp_path / "water.xyz"
    molecule.write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n")
    with pytest.raises(DataError, match=r"water\.xyz: not periodic"):
        load_templates(molecule)


def test_substitution_table_prefers_similar_ions():
    table = log_substitution_table()
    assert table[19, 11] > table[8, 11]  # K for Na rather than O for Na
    assert table[17, 9] > table[11, 9]  # Cl for F rather than Na for F


def test_cli_writes_ranked_cifs(site_model, crystals, tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for i, s in enumerate(crystals):
        s.to(filename=str(folder / f"c{i}.cif"))
    out = tmp_path / "pred"
    args = ["predict-structure", "KBr", "--model", str(site_model.source)]
    result = CliRunner().invoke(app, [*args, "--templates", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("rank*_KBr_*.cif"))) == 2
    sites = CliRunner().invoke(app, ["predict", str(site_model.source), str(folder / "c0.cif")])
    assert sites.exit_code == 0 and "p_top1" in sites.output
    bad = CliRunner().invoke(
        app, [args[0], "Cl", *args[2:], "--templates", str(folder), "--out", str(out)]
    )
    assert bad.exit_code == 2 and "at least two elements" in bad.output
