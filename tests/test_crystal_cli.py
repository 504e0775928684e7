"""`deepmat train crystal`, `predict` and `evaluate` on CIFs, and `explain`, end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from deepmat.cli import app
from test_crystal import perovskite, perovskite_table

runner = CliRunner()


@pytest.fixture(scope="module")
def structure_csv(tmp_path_factory):
    table = perovskite_table()
    path = tmp_path_factory.mktemp("data") / "perovskites.csv"
    cifs = [s.to(fmt="cif") for s in table.structures]
    pd.DataFrame({"id": table.ids, "cif": cifs, "eform": table.targets}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def linear_model(structure_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "linear"
    command = ["train", "crystal", "--data", str(structure_csv), "--target", "eform"]
    options = ["--id-column", "id", "--model", "cgcnn-linear", "--epochs", "3", "--unit", "eV"]
    result = runner.invoke(app, [*command, *options, "--out", str(out), "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def cif_folder(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    perovskite("Sr", "Ti", a=3.905).to(filename=str(folder / "SrTiO3.cif"))
    perovskite("Ba", "Zr", a=4.19).to(filename=str(folder / "BaZrO3.cif"))
    return folder


def test_train_crystal_saves_model_split_and_plot(linear_model):
    card = json.loads((linear_model / "card.json").read_text())
    assert card["family"] == "crystal-graph-network" and card["input"] == "structure"
    assert card["architecture"]["pooling"] == "linear"
    split = json.loads((linear_model / "split.json").read_text())
    assert split["params"]["group"] == "structure"
    assert not set(split["train"]) & set(split["val"])
    assert (linear_model / "parity_val.png").exists()


def test_predict_reads_cif_files_and_folders(linear_model, cif_folder, tmp_path):
    result = runner.invoke(app, ["predict", str(linear_model), str(cif_folder)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "id,eform" and {ln.split(",")[0] for ln in lines[1:]} == {
        "SrTiO3",
        "BaZrO3",
    }
    output = tmp_path / "p.csv"
    one = runner.invoke(
        app, ["predict", str(linear_model), str(cif_folder / "SrTiO3.cif"), "-o", str(output)]
    )
    assert one.exit_code == 0 and len(pd.read_csv(output)) == 1


def test_predict_an_unparsable_cif_names_the_file(linear_model, tmp_path):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_broken\n_cell_length_a not-a-number\n")
    result = runner.invoke(app, ["predict", str(linear_model), str(bad)])
    assert result.exit_code == 2
    assert "broken.cif" in result.output


def test_evaluate_structures_as_json(linear_model, structure_csv, tmp_path):
    command = ["evaluate", str(linear_model), str(structure_csv), "--target", "eform"]
    result = runner.invoke(app, [*command, "--json", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 64 and metrics["mae"] > 0 and metrics["dropped"] == 0
    assert (tmp_path / "p.png").exists()
    implicit = runner.invoke(app, ["evaluate", str(linear_model), str(structure_csv), "--json"])
    assert implicit.exit_code == 0, implicit.output  # the model's own target column
    assert json.loads(implicit.stdout)["mae"] == pytest.approx(metrics["mae"])


def test_explain_writes_site_contributions_and_a_picture(linear_model, cif_folder, tmp_path):
    out = tmp_path / "explained"
    result = runner.invoke(
        app, ["explain", "sites", str(linear_model), str(cif_folder), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    sites = pd.read_csv(out / "sites.csv")
    assert len(sites) == 10 and set(sites["role"]) == {"A", "B", "X"}
    assert set(pd.read_csv(out / "by_element.csv")["element"]) == {"Sr", "Ti", "Ba", "Zr", "O"}
    assert (out / "by_role.csv").exists() and (out / "contributions.png").exists()


def test_explain_refuses_a_model_without_site_contributions(structure_csv, cif_folder, tmp_path):
    out = tmp_path / "mlp"
    command = ["train", "crystal", "--data", str(structure_csv), "--target", "eform"]
    trained = runner.invoke(
        app, [*command, "--model", "perovskite-mlp", "--epochs", "2", "--out", str(out)]
    )
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(
        app, ["explain", "sites", str(out), str(cif_folder), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "linear pooling" in result.output


def test_evaluate_on_a_part_of_the_saved_split(linear_model, structure_csv):
    split = json.loads((linear_model / "split.json").read_text())
    command = ["evaluate", str(linear_model), str(structure_csv), "--id-column", "id", "--json"]
    command += ["--part", "val"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n"] == len(split["val"]) and metrics["part"] == "val"
    card = json.loads((linear_model / "card.json").read_text())
    assert metrics["mae"] == pytest.approx(card["metrics"]["val"]["mae"], rel=1e-5)
    no_test = runner.invoke(app, [*command[:-1], "test"])
    assert no_test.exit_code == 2 and "none of the 0 test records" in no_test.output
    default = runner.invoke(app, command[:-2])  # its own data: the held-out part by default
    assert default.exit_code == 0, default.output
    scored = json.loads(default.stdout)
    assert scored["part"] == "val" and scored["used_for_model_selection"]
    assert scored["n"] == len(split["val"]) and scored["training_records_scored"] == 0
