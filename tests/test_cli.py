"""The `deepmat` command end to end on small CSVs written by the tests."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.train.estimator import UncertaintyUnavailable

runner = CliRunner()
SPLIT = ("--val-fraction", "0.35")

CATIONS = ["Li", "Na", "K", "Mg", "Ca", "Ti", "Fe", "Ni", "Cu", "Zn", "Al", "Ga"]
ANIONS = ["O", "S", "N", "F", "Cl"]


def train(csv_path, out, *options):
    command = ["train", "composition", "--data", str(csv_path), "--target", "dhf"]
    return runner.invoke(app, [*command, "--out", str(out), *options])


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    """~180 binary compounds with a target that depends smoothly on composition."""
    rng = np.random.default_rng(0)
    weight = {el: rng.normal() for el in CATIONS + ANIONS}
    rows = []
    for cation in CATIONS:
        for anion in ANIONS:
            for a, b in ((1, 1), (1, 2), (2, 3)):
                value = (a * weight[cation] + b * weight[anion]) / (a + b)
                rows.append({"formula": f"{cation}{a}{anion}{b}", "dhf": value})
    path = tmp_path_factory.mktemp("cli") / "data.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def rf_model(csv_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "rf"
    result = train(csv_path, out, "--model", "rf-fractions", "--trees", "20")
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_model_split_and_plot(rf_model):
    for name in ("card.json", "forest.joblib", "split.json", "parity_val.png"):
        assert (rf_model / name).exists(), name
    card = json.loads((rf_model / "card.json").read_text())
    assert card["family"] == "forest" and card["target"]["name"] == "dhf"
    split = json.loads((rf_model / "split.json").read_text())
    assert split["method"] == "grouped"
    assert not set(split["train"]) & set(split["val"])
    assert card["metrics"]["val"]["n"] == len(split["val"])


def test_predict_formulas_and_csv(rf_model, csv_path, tmp_path):
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(rf_model), "Fe2O3", "NaCl", "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame["formula"]) == ["Fe2O3", "NaCl"]
    expected = deepmat.load(rf_model).predict(["Fe2O3", "NaCl"])
    np.testing.assert_allclose(frame["dhf"], expected)

    result = runner.invoke(app, ["predict", str(rf_model), str(csv_path), "--std"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "formula,dhf,dhf_std"
    assert len(lines) == 1 + len(pd.read_csv(csv_path))


def test_predict_bad_formula_names_the_input(rf_model):
    result = runner.invoke(app, ["predict", str(rf_model), "Fe2O3", "Fe2O3)"])
    assert result.exit_code == 2
    assert "input 2" in result.output and "cannot parse formula" in result.output


def test_evaluate_json_and_parity_plot(rf_model, csv_path, tmp_path):
    plot = tmp_path / "parity.png"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(rf_model),
            str(csv_path),
            "--target",
            "dhf",
            "--json",
            "--plot",
            str(plot),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert set(metrics) >= {"mae", "rmse", "r2", "n"}
    # its own data: the held-out part by default (no test part here, so val), labelled
    split = json.loads((rf_model / "split.json").read_text())
    assert metrics["part"] == "val" and metrics["used_for_model_selection"]
    assert metrics["n"] == len(split["val"]) and metrics["training_records_scored"] == 0
    assert plot.stat().st_size > 0
    # a forest gives standard deviations (its trees' spread), so they are scored too
    calibration = {"miscalibration_area", "coverage_68", "coverage_95", "nll", "sharpness"}
    assert calibration <= set(metrics), metrics
    assert metrics["sharpness"] > 0 and 0 <= metrics["coverage_95"] <= 1


def test_evaluate_on_all_records_warns_of_training_records(rf_model, csv_path):
    command = ["evaluate", str(rf_model), str(csv_path), "--target", "dhf", "--json"]
    result = runner.invoke(app, [*command, "--part", "all"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    n_train = len(json.loads((rf_model / "split.json").read_text())["train"])
    assert metrics["n"] == len(pd.read_csv(csv_path))
    assert metrics["training_records_scored"] == n_train
    assert f"{n_train} of the {metrics['n']} records scored were used to train" in result.output


def test_evaluate_on_new_data_scores_all_of_it(rf_model, tmp_path):
    fresh = tmp_path / "new.csv"
    fresh.write_text("formula,dhf\nMg3O1,-3.0\nCa3O1,-3.3\nMg5O2,-3.0\n")  # not in csv_path
    command = ["evaluate", str(rf_model), str(fresh), "--target", "dhf", "--json"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["part"] == "all" and metrics["n"] == 3
    assert not metrics["used_for_model_selection"] and metrics["training_records_scored"] == 0


def test_evaluate_on_the_held_out_part_of_a_composition_split(rf_model, csv_path):
    split = json.loads((rf_model / "split.json").read_text())
    command = ["evaluate", str(rf_model), str(csv_path), "--target", "dhf", "--json"]
    result = runner.invoke(app, [*command, "--part", "val"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n"] == len(split["val"]) and metrics["part_records_missing"] == 0
    unknown = runner.invoke(app, [*command, "--part", "holdout"])
    assert unknown.exit_code == 2 and "'holdout' is not one of" in unknown.output


def test_train_bad_csv_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("formula,target\nFe2O3,-1.0\nNaCl,nan\n")
    result = runner.invoke(
        app,
        [
            "train",
            "composition",
            "--model",
            "rf-magpie",
            "--data",
            str(bad),
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 2
    assert "bad.csv line 3" in result.output and "NaN" in result.output


def test_train_elemnet_with_held_out_system(csv_path, tmp_path):
    out = tmp_path / "elemnet"
    result = train(
        csv_path,
        out,
        "--model",
        "elemnet",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--holdout",
        "Ti-O",
    )
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["architecture"]["in_features"] == 86
    assert card["metrics"]["test"]["n"] == 3  # TiO, TiO2, Ti2O3
    split = json.loads((out / "split.json").read_text())
    assert sorted(split["test"]) == ["Ti1O1", "Ti1O2", "Ti2O3"]
    assert (out / "checkpoints" / "last.ckpt").exists()


def test_a_trained_elemnet_is_fine_tuned_into_one_that_gives_its_sigma(csv_path, tmp_path):
    source = tmp_path / "elemnet"
    options = ("--model", "elemnet", "--epochs", "2", "--batch-size", "32")
    assert train(csv_path, source, *options).exit_code == 0
    tuned = tmp_path / "tuned"
    result = train(
        csv_path, tuned, *options, "--init", str(source), "--heteroscedastic", "--lr", "1e-5"
    )
    assert result.exit_code == 0, result.output
    card = json.loads((tuned / "card.json").read_text())
    assert card["training"]["config"]["init"] == str(source)
    assert card["architecture"]["out_features"] == 2
    result = runner.invoke(app, ["predict", str(tuned), "Fe2O3", "--std"])
    assert result.exit_code == 0 and "std" in result.output
    result = train(csv_path, tmp_path / "x", "--model", "rf-fractions", "--init", str(source))
    assert result.exit_code == 2 and "init do not apply" in result.output


def test_datasets_lists_names():
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0
    assert "oqmd-dhf" in result.stdout and "mp-transport" in result.stdout


@pytest.fixture(scope="module")
def voxel_files(tmp_path_factory):
    """A saved Voigt model and an HDF5 file of 6 random 5³ structures with stiffness labels."""
    from deepmat.data.voxels import write_voxel_dataset
    from deepmat.physics import IsotropicPhase
    from deepmat.train import save_model
    from deepmat.train.microstructure import RuleOfMixtures

    root = tmp_path_factory.mktemp("voxels")
    rng = np.random.default_rng(0)
    micro = (rng.random((6, 5, 5, 5)) < 0.4).astype(np.uint8)
    stiffness = rng.uniform(1, 5, (6, 6, 6))
    write_voxel_dataset(root / "data.h5", micro, stiffness=stiffness)
    np.save(root / "one.npy", micro[0])
    phases = (IsotropicPhase(1.0, 0.3), IsotropicPhase(10.0, 0.3))
    model = RuleOfMixtures(phases, "voigt").fit(micro, stiffness[:, 0, 0])
    save_model(model, root / "voigt")
    return root, model, micro, stiffness


def test_evaluate_microstructure_model(voxel_files):
    root, model, micro, stiffness = voxel_files
    result = runner.invoke(app, ["evaluate", str(root / "voigt"), str(root / "data.h5"), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    expected = np.mean(np.abs(model.predict(micro) - stiffness[:, 0, 0]))
    assert metrics["mae"] == pytest.approx(expected)
    assert metrics["n"] == 6 and "mape" in metrics
    assert (root / "voigt" / "parity_data.png").is_file()
    on_part = runner.invoke(
        app, ["evaluate", str(root / "voigt"), str(root / "data.h5"), "--part", "val"]
    )
    assert (
        on_part.exit_code == 2 and "--part needs a composition or structure model" in on_part.output
    )


def test_predict_microstructure_files(voxel_files, tmp_path):
    root, model, micro, _ = voxel_files
    out = tmp_path / "pred.csv"
    inputs = [str(root / "data.h5"), str(root / "one.npy")]
    result = runner.invoke(app, ["predict", str(root / "voigt"), *inputs, "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["file", "index", "C11"]
    assert len(frame) == 7
    np.testing.assert_allclose(frame["C11"][:6], model.predict(micro))
    assert frame["C11"][6] == pytest.approx(frame["C11"][0])


def test_evaluate_microstructure_model_on_a_csv_names_the_file(voxel_files, csv_path):
    root, *_ = voxel_files
    result = runner.invoke(app, ["evaluate", str(root / "voigt"), str(csv_path)])
    assert result.exit_code == 2
    assert "data.csv" in result.output and "HDF5" in result.output


def test_an_ensemble_recalibrates_on_its_val_part_and_evaluate_scores_its_calibration(
    csv_path, tmp_path
):
    out = tmp_path / "ensemble"
    options = (
        "--model",
        "rf-fractions",
        "--trees",
        "10",
        "--ensemble",
        "3",
        "--ensemble-jobs",
        "2",
    )
    result = train(csv_path, out, *options, "--val-fraction", "0.35")
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["family"] == "ensemble" and card["members"]["family"] == "forest"
    assert card["members"]["k"] == 3 and card["members"]["weights"] == pytest.approx([1 / 3] * 3)
    assert (out / "members" / "2" / "forest.joblib").exists()
    n_val = len(json.loads((out / "split.json").read_text())["val"])

    command = ["recalibrate", str(out), str(csv_path), "--target", "dhf"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "epistemic ×" in result.output and "95 % coverage" in result.output
    recalibration = json.loads((out / "card.json").read_text())["recalibration"]
    assert recalibration["n"] == n_val
    assert set(recalibration["component_scales"]) == {"epistemic", "aleatoric"}

    result = runner.invoke(app, ["evaluate", str(out), str(csv_path), "--target", "dhf", "--json"])
    metrics = json.loads(result.stdout)
    assert metrics["part"] == "val" and metrics["n"] == n_val
    assert (out / "uncertainty_data_val.png").stat().st_size > 0
    assert 0 <= metrics["coverage_95"] <= 1 and metrics["miscalibration_area"] >= 0

    result = runner.invoke(app, [*command, "--criterion", "coverage", "--coverage", "0.9"])
    assert result.exit_code == 0, result.output
    recalibration = json.loads((out / "card.json").read_text())["recalibration"]
    assert recalibration["criterion"] == "coverage" and recalibration["coverage"] == 0.9
    assert recalibration["after"]["coverage_95"] >= 0.9  # on the records it was fitted to


def test_recalibration_refuses_data_that_is_not_validation_data(rf_model, csv_path, tmp_path):
    fresh = tmp_path / "new.csv"
    fresh.write_text("formula,dhf\nMg3O1,-3.0\nCa3O1,-3.3\nMg5O2,-3.0\n")
    result = runner.invoke(app, ["recalibrate", str(rf_model), str(fresh), "--target", "dhf"])
    assert result.exit_code == 2 and "none of the 18 val records" in result.output
    result = runner.invoke(app, ["recalibrate", str(rf_model), str(csv_path), "--target", "dhf"])
    assert result.exit_code == 2 and "at least 50 held-out records" in result.output


def test_roost_trains_from_the_command_line_with_a_chosen_embedding(csv_path, tmp_path):
    out = tmp_path / "roost"
    options = ("--model", "roost", "--embedding", "megnet16", "--epochs", "2")
    result = train(csv_path, out, *options, "--batch-size", "32")
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["family"] == "element-set-network"
    assert card["architecture"]["embedding"] == "megnet16"
    assert card["architecture"]["embedding_dim"] == 16
    result = train(csv_path, tmp_path / "x", "--model", "elemnet", "--embedding", "mat2vec")
    assert result.exit_code == 2 and "applies to roost and transformer" in result.output


def forest_and_network(csv_path, tmp_path) -> tuple:
    """A forest and an ElemNet trained on one split of ``csv_path``: their directories."""
    forest, network = tmp_path / "forest", tmp_path / "network"
    assert (
        train(csv_path, forest, "--model", "rf-fractions", "--trees", "10", *SPLIT).exit_code == 0
    )
    result = train(csv_path, network, "--model", "elemnet", "--epochs", "2", *SPLIT)
    assert result.exit_code == 0, result.output
    return forest, network


def test_models_of_two_families_combine_into_one_weighed_and_recalibrated_ensemble(
    csv_path, tmp_path
):
    forest, network = forest_and_network(csv_path, tmp_path)
    out = tmp_path / "combined"
    command = ["ensemble", str(forest), str(network), "--out", str(out)]
    result = runner.invoke(app, [*command, "--data", str(csv_path), "--target", "dhf"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["members"]["families"] == ["forest", "network"]
    assert sum(card["members"]["weights"]) == pytest.approx(1.0)
    # the forest gives σ, the network none: both parts of the variance get a factor
    assert set(card["recalibration"]["component_scales"]) == {"epistemic", "aleatoric"}
    n_val = len(json.loads((forest / "split.json").read_text())["val"])
    assert card["metrics"]["val"]["n"] == card["recalibration"]["n"] == n_val
    result = runner.invoke(app, ["evaluate", str(out), str(csv_path), "--target", "dhf", "--json"])
    assert json.loads(result.stdout)["part"] == "val"

    given = ["--weight", "0.25", "--weight", "0.75", "--coverage", "0.9"]
    result = runner.invoke(app, [*command, *given, "--data", str(csv_path), "--target", "dhf"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["members"]["weights"] == pytest.approx([0.25, 0.75])
    assert card["recalibration"]["coverage"] == 0.9

    other = tmp_path / "other-split"
    assert train(csv_path, other, "--model", "rf-fractions", "--seed", "1", *SPLIT).exit_code == 0
    result = runner.invoke(app, ["ensemble", str(forest), str(other), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "another split" in result.output


def test_a_companion_gives_a_network_without_dropout_a_recalibrated_std(csv_path, tmp_path):
    forest, network = forest_and_network(csv_path, tmp_path)
    formulas = ["NaCl", "Fe2O3", "ZnS"]
    with pytest.raises(UncertaintyUnavailable):
        deepmat.load(network).predict(formulas, return_std=True)

    out = tmp_path / "pair"
    command = ["pair", str(network), str(forest), "--out", str(out), "--data", str(csv_path)]
    result = runner.invoke(app, [*command, "--target", "dhf"])
    assert result.exit_code == 0, result.output
    assert "companion" in result.output and "epistemic ×" in result.output
    card = json.loads((out / "card.json").read_text())
    assert card["family"] == "paired" and card["paired"] == {
        "model": "network",
        "companion": "forest",
    }
    assert set(card["recalibration"]["component_scales"]) == {"epistemic", "aleatoric"}
    n_val = len(json.loads((network / "split.json").read_text())["val"])
    assert card["metrics"]["val"]["n"] == card["recalibration"]["n"] == n_val
    assert card["recalibration"]["after"]["coverage_95"] >= 0.9
    pair = deepmat.load(out)
    mean, std = pair.predict(formulas, return_std=True)
    assert np.array_equal(mean, deepmat.load(network).predict(formulas)) and np.all(std > 0)
    result = runner.invoke(app, ["evaluate", str(out), str(csv_path), "--target", "dhf", "--json"])
    scores = json.loads(result.stdout)
    assert scores["part"] == "val" and 0 <= scores["coverage_95"] <= 1

    other = tmp_path / "other-split"
    assert train(csv_path, other, "--model", "rf-fractions", "--seed", "1", *SPLIT).exit_code == 0
    result = runner.invoke(app, ["pair", str(network), str(other), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "another split" in result.output
