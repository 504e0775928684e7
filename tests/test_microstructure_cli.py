"""`deepmat train microstructure` end to end on small HDF5 files written by the tests.

The labels are synthetic (stiffness: a smooth function of the volume fraction plus a little
noise; strain: a local function of the structure with the mean of the applied strain), so
no solver runs: the tests check the job's plumbing, not the physics.
"""

import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.data.voxels import read_voxel_dataset, write_voxel_dataset
from deepmat.workflows.microstructure import HYBRID_CANDIDATES, HYBRID_ITERATIONS

runner = CliRunner()
MACRO = 1e-3
PHASES = [
    {"youngs_modulus": 1.0, "poisson_ratio": 0.3},
    {"youngs_modulus": 50.0, "poisson_ratio": 0.3},
]


def labelled_file(path, n, seed, columns=1, phases=True):
    """``n`` random 7³ structures whose first ``columns`` stiffness columns are filled."""
    rng = np.random.default_rng(seed)
    micro = (rng.random((n, 7, 7, 7)) < rng.uniform(0.2, 0.8, (n, 1, 1, 1))).astype(np.uint8)
    phi = micro.reshape(n, -1).mean(axis=1)
    stiffness = np.full((n, 6, 6), np.nan)
    stiffness[:, :, :columns] = rng.uniform(0.5, 1.5, (n, 6, columns))
    stiffness[:, 0, 0] = 1 + 20 * phi**2 + 0.05 * rng.normal(size=n)
    attrs = {"stiffness_columns": list(range(columns))}
    if phases:
        attrs["phases"] = PHASES
    return write_voxel_dataset(path, micro, stiffness=stiffness, attrs=attrs)


def strain_file(path, n, seed, macro=MACRO):
    """``n`` random 7³ structures with ε11 fields of mean ``macro`` (component 0 of the
    Mandel fields), a local function of the phases as a solved field would be."""
    rng = np.random.default_rng(seed)
    micro = (rng.random((n, 7, 7, 7)) < rng.uniform(0.2, 0.8, (n, 1, 1, 1))).astype(np.uint8)
    m = micro.astype(np.float64)
    neighbours = sum(np.roll(m, s, axis=a) for a in (1, 2, 3) for s in (-1, 1)) / 6
    r = 0.8 * neighbours - 0.5 * m
    strain = np.zeros((n, 6, 7, 7, 7))
    strain[:, 0] = macro * (1 + r - r.mean(axis=(1, 2, 3), keepdims=True))
    attrs = {"label": "strain", "macro_strain": [macro, 0, 0, 0, 0, 0], "phases": PHASES}
    return write_voxel_dataset(path, micro, strain=strain, attrs=attrs)


def train(data, out, *options):
    command = ["train", "microstructure", "--data", str(data), "--out", str(out)]
    return runner.invoke(app, [*command, *options])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("voxels")
    return {
        "train": labelled_file(root / "train.h5", 30, 0),
        "test": labelled_file(root / "test.h5", 8, 1),
        "unlabelled": write_voxel_dataset(root / "bare.h5", np.zeros((4, 7, 7, 7), np.uint8)),
        "no_phases": labelled_file(root / "no_phases.h5", 6, 2, phases=False),
        "strain": strain_file(root / "strain.h5", 12, 3),
        "strain_test": strain_file(root / "strain_test.h5", 5, 4),
        "strain_2x": strain_file(root / "strain_2x.h5", 5, 5, macro=2 * MACRO),
    }


def evaluate_json(model_dir, data):
    result = runner.invoke(app, ["evaluate", str(model_dir), str(data), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_two_point_pca_splits_saves_and_evaluates(files, tmp_path):
    out = tmp_path / "two-point"
    result = train(files["train"], out, "--model", "two-point-pca", "--val-fraction", "0.2")
    assert result.exit_code == 0, result.output
    assert "MAPE" in result.output
    for name in ("card.json", "pipeline.joblib", "split.json", "parity_val.png"):
        assert (out / name).is_file(), name
    split = json.loads((out / "split.json").read_text())
    assert split["method"] == "random" and len(split["val"]) == 6
    assert sorted(split["train"] + split["val"]) == list(range(30))
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["split"]["file"] == "split.json"
    assert card["metrics"]["val"]["n"] == 6
    assert len(card["training"]["selection"]["candidates"]) > 1
    model = deepmat.load(out)
    assert model.predict(np.zeros((2, 7, 7, 7), np.uint8)).shape == (2,)
    metrics = evaluate_json(out, files["test"])
    assert metrics["n"] == 8 and {"mae", "rmse", "r2", "mape"} <= set(metrics)


def test_cnn3d_trains_with_test_file_and_resumes(files, tmp_path):
    out = tmp_path / "cnn"
    options = [
        "--model",
        "cnn3d",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--test",
        str(files["test"]),
    ]
    result = train(files["train"], out, *options)
    assert result.exit_code == 0, result.output
    assert "epoch    2" in result.output
    for name in ("weights.safetensors", "split.json", "parity_val.png", "parity_test.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "last.ckpt").is_file()
    card = json.loads((out / "card.json").read_text())
    assert card["metrics"]["test"]["n"] == 8 and card["augment"] is True
    assert card["training"]["resumed_from"] is None
    metrics = evaluate_json(out, files["test"])
    assert metrics["mae"] == pytest.approx(card["metrics"]["test"]["mae"])

    result = train(files["train"], out, *options)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["resumed_from"].endswith("last.ckpt")


def test_an_ensemble_of_cnns_predicts_with_standard_deviations(files, tmp_path):
    out = tmp_path / "ensemble"
    options = ["--model", "cnn3d", "--epochs", "1", "--batch-size", "8", "--ensemble", "2"]
    result = train(files["train"], out, *options)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["family"] == "ensemble" and card["members"]["k"] == 2
    assert {"mape", "member_mae"} <= set(card["metrics"]["val"])
    result = runner.invoke(app, ["predict", str(out), str(files["test"]), "--std"])
    assert result.exit_code == 0, result.output
    assert "C11_std" in result.output
    metrics = evaluate_json(out, files["test"])
    assert {"mape", "coverage_95", "miscalibration_area"} <= set(metrics)
    result = train(files["train"], tmp_path / "pca", "--model", "two-point-pca", "--ensemble", "2")
    assert result.exit_code != 0 and "hybrid-fcn, not two-point-pca" in result.output


def test_voigt_with_a_validation_file_writes_no_split(files, tmp_path):
    out = tmp_path / "voigt"
    result = train(files["train"], out, "--model", "voigt", "--val", str(files["test"]))
    assert result.exit_code == 0, result.output
    assert not (out / "split.json").exists()
    card = json.loads((out / "card.json").read_text())
    assert card["metrics"]["val"]["n"] == 8 and card["metrics"]["train"]["n"] == 30
    assert card["training"]["files"]["val"] == str(files["test"])
    assert deepmat.load(out).phases[1].youngs_modulus == 50.0


@pytest.mark.parametrize(
    ("file", "options", "message"),
    [
        ("unlabelled", [], "no stiffness labels"),
        ("train", ["--target", "C22"], "C22 was not computed"),
        ("train", ["--target", "C1"], "not a stiffness component"),
        ("train", ["--model", "resnet"], "unknown model 'resnet'"),
        ("train", ["--model", "reuss", "--target", "C12"], "estimates C11 only"),
        ("no_phases", ["--model", "voigt"], "no 'phases' attribute"),
        ("no_phases", ["--model", "hybrid"], "no 'phases' attribute"),
        ("train", ["--model", "hybrid", "--target", "C12"], "estimates C11 only"),
        ("train", ["--val-fraction", "0.01"], "leave 30 for training and 0 for validation"),
        ("train", ["--target", "e11"], "not a stiffness component"),
        ("strain", ["--model", "fcn3d", "--target", "C11"], "predicts the strain field e11"),
    ],
)
def test_bad_inputs_give_clear_errors(files, tmp_path, file, options, message):
    result = train(files[file], tmp_path / "m", *options)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_a_csv_is_not_a_voxel_file(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text("formula,target\nFe2O3,1\n")
    result = train(csv, tmp_path / "m", "--model", "two-point-pca")
    assert result.exit_code == 2
    assert "data.csv" in result.output and "not an HDF5 file" in result.output


def test_symmetric_component_is_read_from_its_mirror(files, tmp_path):
    out = tmp_path / "c12"
    result = train(files["train"], out, "--model", "two-point-pca", "--target", "C12")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "card.json").read_text())["target"]["name"] == "C12"


def test_a_bad_test_file_stops_the_run_before_training(files, tmp_path):
    out = tmp_path / "cnn"
    result = train(files["train"], out, "--test", str(files["unlabelled"]), "--epochs", "1")
    assert result.exit_code == 2
    assert "bare.h5: no stiffness labels" in " ".join(result.output.split())
    assert not (out / "checkpoints").exists()


def test_two_dimensional_structures_are_refused(tmp_path):
    flat = tmp_path / "flat.h5"
    write_voxel_dataset(flat, np.zeros((4, 7, 7), np.uint8), stiffness=np.ones((4, 6, 6)))
    result = train(flat, tmp_path / "m", "--model", "two-point-pca")
    assert result.exit_code == 2
    assert "are 2-D" in result.output


def test_a_file_without_strain_fields_says_how_to_make_them(files, tmp_path):
    result = train(files["train"], tmp_path / "m", "--model", "fcn3d", "--epochs", "1")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "train.h5: no strain labels" in message and "generate it with --label strain" in message
    assert not (tmp_path / "m" / "checkpoints").exists()


def test_mks_trains_evaluates_and_predicts_fields(files, tmp_path):
    out = tmp_path / "mks"
    result = train(files["strain"], out, "--model", "mks", "--test", str(files["strain_test"]))
    assert result.exit_code == 0, result.output
    assert "MASE %" in result.output and "R²" not in result.output
    for name in ("card.json", "mks.npz", "split.json", "fields_val.png", "fields_test.png"):
        assert (out / name).is_file(), name
    card = json.loads((out / "card.json").read_text())
    assert card["output"] == "strain field" and card["target"]["name"] == "e11"
    assert card["target"]["macro_strain"] == pytest.approx(MACRO)
    assert card["metrics"]["val"]["n"] == 2 and card["metrics"]["test"]["n"] == 5
    assert len(card["training"]["selection"]["candidates"]) == 4
    assert card["training"]["files"]["test"] == str(files["strain_test"])

    metrics = evaluate_json(out, files["strain_test"])
    assert set(metrics) == {"mase", "mae", "rmse", "n", "n_voxels", "part"}
    assert metrics["part"] == "file"  # image models score the whole file they are given
    assert metrics["n"] == 5 and metrics["n_voxels"] == 5 * 7**3
    assert metrics["mase"] == pytest.approx(card["metrics"]["test"]["mase"])
    assert (out / "fields_strain_test.png").is_file()

    model = deepmat.load(out)
    fields_h5 = tmp_path / "fields.h5"
    inputs = [str(files["strain_test"]), str(files["strain"])]
    result = runner.invoke(app, ["predict", str(out), *inputs, "-o", str(fields_h5)])
    assert result.exit_code == 0, result.output
    assert "17 ε11 fields written" in result.output
    with h5py.File(fields_h5, "r") as file:
        fields = file["e11"][()]
        assert file.attrs["model"] == "mks" and list(file.attrs["counts"]) == [5, 12]
        assert json.loads(file.attrs["inputs"]) == inputs
    assert fields.shape == (17, 7, 7, 7)
    test_structures = read_voxel_dataset(files["strain_test"]).microstructures
    np.testing.assert_allclose(fields[:5], model.predict(test_structures))

    result = runner.invoke(app, ["predict", str(out), str(files["strain_test"])])
    assert result.exit_code == 0, result.output
    assert "strain_test.h5: 5 ε11 fields of 7×7×7 voxels, mean 0.001" in result.output

    result = runner.invoke(app, ["predict", str(out), *inputs, "-o", str(tmp_path / "f.csv")])
    assert result.exit_code == 2
    assert "written as .h5, .hdf5 or .npy" in result.output


def test_fcn3d_trains_with_a_validation_file_and_predicts_npy(files, tmp_path):
    out = tmp_path / "fcn3d"
    options = ["--model", "fcn3d", "--epochs", "1", "--val", str(files["strain_test"])]
    result = train(files["strain"], out, *options)
    assert result.exit_code == 0, result.output
    assert "epoch    1" in result.output and "MASE %" in result.output
    for name in ("card.json", "weights.safetensors", "fields_val.png"):
        assert (out / name).is_file(), name
    assert not (out / "split.json").exists()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    card = json.loads((out / "card.json").read_text())
    assert card["architecture"]["kind"] == "strain-fcn" and card["metrics"]["val"]["n"] == 5
    assert card["training"]["data"]["n_train"] == 12
    assert card["training"]["config"]["batch_size"] == 8

    structures = np.zeros((3, 7, 7, 7), np.uint8)
    structures[:, :3] = 1
    np.save(tmp_path / "three.npy", structures)
    npy = tmp_path / "fields.npy"
    result = runner.invoke(app, ["predict", str(out), str(tmp_path / "three.npy"), "-o", str(npy)])
    assert result.exit_code == 0, result.output
    fields = np.load(npy)
    assert fields.shape == (3, 7, 7, 7)
    np.testing.assert_allclose(fields.mean(axis=(1, 2, 3)), MACRO)  # mean correction


def test_an_ensemble_of_field_networks_gives_a_standard_deviation_per_voxel(files, tmp_path):
    out = tmp_path / "fcn-ensemble"
    options = ["--model", "fcn3d", "--epochs", "1", "--val", str(files["strain_test"])]
    result = train(files["strain"], out, *options, "--ensemble", "2")
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["output"] == "strain field" and {"mase", "member_mae"} <= set(
        card["metrics"]["val"]
    )
    fields_h5 = tmp_path / "fields.h5"
    result = runner.invoke(
        app, ["predict", str(out), str(files["strain_test"]), "-o", str(fields_h5), "--std"]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(fields_h5) as f:
        assert f["e11"].shape == f["e11_std"].shape == (5, 7, 7, 7)
        assert np.all(f["e11_std"][()] >= 0) and f["e11_std"][()].max() > 0
    metrics = evaluate_json(out, files["strain_test"])
    assert {"mase", "coverage_95", "miscalibration_area"} <= set(metrics)
    result = runner.invoke(app, ["recalibrate", str(out), str(files["strain_test"])])
    assert result.exit_code == 0, result.output
    recalibration = json.loads((out / "card.json").read_text())["recalibration"]
    assert recalibration["n"] == 5 * 7**3 and recalibration["std_scale"] > 0


def test_validation_fields_under_another_load_are_refused(files, tmp_path):
    result = train(
        files["strain"], tmp_path / "m", "--model", "mks", "--val", str(files["strain_2x"])
    )
    assert result.exit_code == 2
    assert "same macroscopic strain" in " ".join(result.output.split())


def test_hybrids_train_from_the_files_phases_and_evaluate(files, tmp_path):
    out = tmp_path / "hybrid"
    result = train(files["train"], out, "--model", "hybrid", "--test", str(files["test"]))
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["family"] == "solver-hybrid"
    assert card["representation"]["iterations"] in (1, 2, 3, 4)
    candidates = len(HYBRID_ITERATIONS) * len(HYBRID_CANDIDATES)
    assert len(card["training"]["selection"]["candidates"]) == candidates
    metrics = evaluate_json(out, files["test"])
    assert metrics["mape"] == pytest.approx(card["metrics"]["test"]["mape"])

    out = tmp_path / "hybrid-coarse"
    result = train(files["train"], out, "--model", "hybrid-coarse", "--test", str(files["test"]))
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["model"] == "hybrid-coarse" and card["representation"]["coarsen"] == 2
    assert evaluate_json(out, files["test"])["n"] == card["metrics"]["test"]["n"]

    out = tmp_path / "hybrid-fcn"
    options = ["--model", "hybrid-fcn", "--epochs", "1", "--val", str(files["strain_test"])]
    result = train(files["strain"], out, *options)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["architecture"]["kind"] == "hybrid-fcn"
    assert card["representation"] == {"name": "voxels+strain-estimate", "iterations": 4}
    assert evaluate_json(out, files["strain_test"])["n"] == 5
