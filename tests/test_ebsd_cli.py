"""`deepmat ebsd simulate`, `train ebsd`, `ebsd index`, `evaluate` and `predict` end to end on
tiny simulated pattern sets (20×20 detector, a 15° grid, a few patterns of the realistic
camera) and kikuchipy's 3×3 nickel scan.

The network trains for one epoch, so the tests check the plumbing (files, columns, messages),
not the accuracy; dictionary indexing of the grid against itself must be exact.
"""

import io
import json

import kikuchipy as kp
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.data import REALISTIC_CAMERA, CameraSpec
from deepmat.data.ebsd import read_pattern_dataset
from deepmat.represent import PreprocessSpec
from deepmat.represent.patterns import BACKGROUND_CORRECTION

runner = CliRunner()
SMALL = ["--shape", "20", "20", "--workers", "1"]
EULER_QUATERNION = ["phi1", "Phi", "phi2", "qw", "qx", "qy", "qz"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def message(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ebsd")
    paths = {
        "grid": root / "grid.h5",
        "test": root / "test.h5",
        "grid60": root / "grid60.h5",
        "nickel": root / "nickel.h5",
        "model": root / "cnn",
    }
    commands = [
        ("ebsd", "simulate", paths["grid"], "--resolution", 15, *SMALL),
        ("ebsd", "simulate", paths["test"], "--n", 12, "--seed", 1, "--noise-counts", 300, *SMALL),
        ("ebsd", "simulate", paths["grid60"], "--resolution", 15, "--workers", 1),
        ("train", "ebsd", "--data", paths["grid"], "--out", paths["model"], "--epochs", 1),
    ]
    for command in commands:
        result = invoke(*command)
        assert result.exit_code == 0, result.output
    kp.data.nickel_ebsd_small().save(paths["nickel"])
    paths["csv"] = root / "table.csv"
    paths["csv"].write_text("formula,target\nFe2O3,1\n")
    return paths


def test_simulate_writes_the_noise_and_detector_asked_for(tmp_path):
    out = tmp_path / "noisy.h5"
    options = ["--n", 5, "--pc", 0.4, 0.3, 0.6, "--noise-counts", 50, "--gaussian", 0.02]
    result = invoke("ebsd", "simulate", out, *options, "--background", 0.5, "--uint8", *SMALL)
    assert result.exit_code == 0, result.output
    assert "5 EBSD patterns of 20×20 written to" in message(result)
    dataset = read_pattern_dataset(out)
    assert dataset.patterns.shape == (5, 20, 20) and dataset.patterns.dtype == np.uint8
    assert dataset.detector.pc == (0.4, 0.3, 0.6)
    assert dataset.noise.counts == 50 and dataset.noise.background == 0.5


@pytest.fixture(scope="module")
def camera_files(tmp_path_factory):
    """A few patterns of the realistic camera and a model that removes their background."""
    root = tmp_path_factory.mktemp("camera")
    paths = {"camera": root / "camera.h5", "model": root / "cnn"}
    commands = [
        ("ebsd", "simulate", paths["camera"], "--n", 10, "--camera", "realistic", *SMALL),
        (
            "train", "ebsd", "--data", paths["camera"], "--out", paths["model"], "--epochs", 1,
            "--preprocess", "background-ahe",
        ),
    ]  # fmt: skip
    for command in commands:
        result = invoke(*command)
        assert result.exit_code == 0, result.output
    return paths


def test_simulate_with_the_realistic_camera_records_it(camera_files):
    dataset = read_pattern_dataset(camera_files["camera"])
    assert dataset.patterns.shape == (10, 20, 20) and dataset.patterns.dtype == np.uint8
    assert dataset.noise == REALISTIC_CAMERA
    assert dataset.attrs["camera"] == REALISTIC_CAMERA.to_dict()
    assert dataset.attrs["noise"] is None


def test_simulate_with_a_camera_file_of_ranges(tmp_path):
    ranges = {"background": [1.0, 3.0], "blur": 0.5, "counts": [100, 1000]}
    spec, out = tmp_path / "camera.json", tmp_path / "camera.h5"
    spec.write_text(json.dumps(ranges))
    result = invoke("ebsd", "simulate", out, "--n", 3, "--camera", spec, *SMALL)
    assert result.exit_code == 0, result.output
    dataset = read_pattern_dataset(out)
    assert dataset.noise == CameraSpec(background=(1.0, 3.0), blur=0.5, counts=(100, 1000))
    assert dataset.patterns.shape == (3, 20, 20) and dataset.patterns.dtype == np.float32
    for bad, expected in [
        ({"exposure": 1.0}, "camera.json: unknown camera spec keys ['exposure']; known:"),
        ({"background": [3.0, 1.0]}, "camera.json: background: the range 3.0, 1.0 runs backwards"),
    ]:
        spec.write_text(json.dumps(bad))
        result = invoke("ebsd", "simulate", tmp_path / "bad.h5", "--n", 3, "--camera", spec, *SMALL)
        assert result.exit_code == 2 and expected in message(result), result.output


def test_train_stores_the_preprocessing_and_indexing_applies_it(camera_files):
    card = json.loads((camera_files["model"] / "card.json").read_text())
    expected = PreprocessSpec(static="subtract", dynamic="subtract", equalize=True)
    assert expected == PreprocessSpec.preset("background-ahe")
    assert card["preprocess"] == expected.to_dict()
    assert card["training"]["camera"] == REALISTIC_CAMERA.to_dict()
    assert deepmat.load(camera_files["model"]).preprocess == expected
    # a model with its own background removal applies it whatever --correct-background says
    result = invoke(
        "ebsd", "index", camera_files["camera"], "--model", camera_files["model"],
        "--no-correct-background",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = message(result)
    assert "dynamic background removed" in text and "adaptive histogram equalisation" in text
    assert "10 patterns indexed by cnn" in text


def test_train_preprocess_background_is_the_background_correction(files, tmp_path):
    out = tmp_path / "background"
    result = invoke(
        "train", "ebsd", "--data", files["test"], "--out", out, "--epochs", 1,
        "--preprocess", "background",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["preprocess"] == BACKGROUND_CORRECTION.to_dict()


def test_train_takes_several_files_of_one_detector(files, tmp_path):
    out = tmp_path / "both"
    result = invoke(
        "train", "ebsd", "--data", files["grid"], "--data", files["test"], "--out", out,
        "--epochs", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["files"]["train"] == [str(files["grid"]), str(files["test"])]
    assert card["training"]["data"]["n_train"] + card["training"]["data"]["n_val"] == 265 + 12
    assert card["training"]["noise"] is None  # a clean grid and noisy patterns together


def test_train_saves_an_orientation_model_with_its_detector(files):
    card = json.loads((files["model"] / "card.json").read_text())
    assert card["input"] == "ebsd-pattern" and card["pattern_shape"] == [20, 20]
    assert card["training"]["files"] == {"train": str(files["grid"]), "val": None}
    assert card["training"]["detector"]["shape"] == [20, 20]
    assert card["metrics"]["val"]["n"] == 26  # 10 % of the 265 grid patterns
    assert (files["model"] / "weights.safetensors").is_file()


def test_index_with_the_model_writes_orientations_and_an_ipf_map(files, tmp_path):
    csv, png = tmp_path / "cnn.csv", tmp_path / "ipf.png"
    result = invoke(
        "ebsd", "index", files["test"], "--model", files["model"], "-o", csv, "--ipf", png
    )
    assert result.exit_code == 0, result.output
    text = message(result)
    assert "12 patterns indexed by cnn" in text and "mean °" in text and "reference" in text
    table = pd.read_csv(csv)
    assert list(table.columns) == ["index", *EULER_QUATERNION, "disorientation_deg"]
    assert len(table) == 12 and (table["qw"] >= 0).all()
    assert np.allclose(np.linalg.norm(table[["qw", "qx", "qy", "qz"]], axis=1), 1)
    assert png.stat().st_size > 0


def test_dictionary_indexing_of_the_grid_itself_is_exact(files, tmp_path):
    csv = tmp_path / "dictionary.csv"
    result = invoke("ebsd", "index", files["grid"], "--dictionary", files["grid"], "-o", csv)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(csv)
    assert len(table) == 265 and "score" in table.columns
    assert table["disorientation_deg"].max() < 1e-3
    assert table["score"].min() > 0.999


def test_a_kikuchipy_scan_is_background_corrected_and_mapped(files, tmp_path):
    png = tmp_path / "scan.png"
    result = invoke("ebsd", "index", files["nickel"], "--dictionary", files["grid60"], "--ipf", png)
    assert result.exit_code == 0, result.output
    text = message(result)
    assert "static background removed" in text and "dynamic background removed" in text
    assert "9 patterns indexed by dictionary" in text and "reference" in text
    table = pd.read_csv(io.StringIO(result.stdout))
    assert list(table.columns[:3]) == ["index", "row", "column"]
    assert table["row"].max() == 2 and table["column"].max() == 2
    assert png.is_file()


def test_average_a_scan_before_indexing_it(files):
    result = invoke("ebsd", "index", files["nickel"], "--dictionary", files["grid60"], "--average")
    assert result.exit_code == 0, result.output
    steps = message(result).split("nickel.h5: ")[1:]
    assert steps[0].startswith("neighbour patterns averaged (NLPAR, λ")
    assert "chosen for the map, search radius 3" in steps[0]
    assert steps[1].startswith("static background removed")
    given = invoke(
        "ebsd", "index", files["nickel"], "--dictionary", files["grid60"], "--average",
        "--average-lambda", 0.5, "--average-radius", 1,
    )  # fmt: skip
    assert given.exit_code == 0, given.output
    assert "λ 0.5 given, search radius 1" in message(given)


def test_refine_after_the_model_or_the_dictionary(files):
    for found in ("--model", "--dictionary"):
        reference = files["model"] if found == "--model" else files["grid60"]
        scan = files["test"] if found == "--model" else files["nickel"]
        thorough = ["--thorough"] if found == "--dictionary" else []  # every search, every pattern
        result = invoke(
            "ebsd", "index", scan, found, reference, "--refine", "--trust-region", 3, *thorough
        )
        assert result.exit_code == 0, result.output
        method = "cnn_refined" if found == "--model" else "dictionary_refined"
        assert f"indexed by {method}" in message(result)
        assert "score" in pd.read_csv(io.StringIO(result.stdout)).columns


def test_evaluate_and_predict_an_orientation_model(files, tmp_path):
    result = invoke("evaluate", files["model"], files["test"], "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["n"] == 12 and 0 <= metrics["within_5deg"] <= 1
    test = read_pattern_dataset(files["test"])
    expected = deepmat.load(files["model"]).evaluate(test.patterns, test.rotations)
    assert metrics.pop("part") == "file" and metrics == pytest.approx(expected)
    out = tmp_path / "predicted.csv"
    result = invoke("predict", files["model"], files["test"], files["grid"], "-o", out)
    assert result.exit_code == 0, result.output
    assert "277 orientations written" in message(result)
    table = pd.read_csv(out)
    assert table.columns[0] == "file" and set(EULER_QUATERNION) <= set(table.columns)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ebsd", "index", "{test}"], "give exactly one of --model"),
        (
            ["ebsd", "index", "{test}", "--model", "{model}", "--dictionary", "{grid}"],
            "give exactly one of --model",
        ),
        (["ebsd", "index", "{csv}", "--model", "{model}"], "not an EBSD pattern file"),
        (["ebsd", "index", "{nickel}", "--model", "{model}"], "are 60×60 pixels but the model"),
        (["ebsd", "index", "{test}", "--dictionary", "{grid60}"], "are 20×20 pixels but the"),
        (["ebsd", "index", "{test}", "--dictionary", "{nickel}"], "not an EBSD pattern data set"),
        (["evaluate", "{model}", "{csv}"], "not an EBSD pattern file"),
        (
            ["ebsd", "index", "{test}", "--model", "{model}", "--master", "{grid}"],
            "--master is the master pattern to refine against: add --refine",
        ),
        (
            ["ebsd", "index", "{test}", "--model", "{model}", "--refine", "--master", "{grid}"],
            "grid.h5: kikuchipy cannot read it",
        ),
        (
            ["ebsd", "index", "{test}", "--model", "{model}", "--refine", "--global-region", "-1"],
            "Invalid value for '--global-region': Input should be greater than or equal",
        ),
        (
            ["ebsd", "index", "{test}", "--model", "{model}", "--average"],
            "test.h5: neighbour averaging needs a map (rows, columns) of at least two points "
            "holding its 12 patterns, got scan shape (12,)",
        ),
        (
            ["ebsd", "index", "{nickel}", "--model", "{model}", "--average-lambda", "1"],
            "--average-lambda is NLPAR's λ: add --average",
        ),
        (["ebsd", "simulate", "{tmp}/x.h5"], "give exactly one of --resolution"),
        (["ebsd", "simulate", "{tmp}/x.h5", "--n", "2", "--pc", "0.5", "0.5", "0"], "PCz"),
        (
            ["ebsd", "simulate", "{tmp}/x.h5", "--n", "2", "--camera", "studio"],
            "unknown camera 'studio': give one of off, realistic, realistic-corrected or a JSON",
        ),
        (
            ["ebsd", "simulate", "{tmp}/x.h5", "--n", "2", "--camera", "{tmp}/none.json"],
            "none.json: no such camera spec file",
        ),
        (
            ["ebsd", "simulate", "{tmp}/x.h5", "--n", "2", "--camera", "{csv}"],
            "table.csv: not a JSON file of camera spec ranges",
        ),
        (
            ["ebsd", "simulate", "{tmp}/x.h5", "--n", "2", "--camera", "realistic", "--uint8"],
            "leave out --noise-counts, --gaussian, --background and --uint8",
        ),
        (
            ["train", "ebsd", "--data", "{grid}", "--out", "{tmp}/m", "--preprocess", "clahe"],
            "unknown preprocessing 'clahe': give one of standardize, background, background-ahe",
        ),
        (
            ["train", "ebsd", "--data", "{grid}", "--val", "{grid60}", "--out", "{tmp}/m"],
            "but the training patterns",
        ),
        (
            ["train", "ebsd", "--data", "{grid}", "--data", "{grid60}", "--out", "{tmp}/m"],
            "grid60.h5: pattern shape 60×60 is not",
        ),
    ],
)
def test_bad_inputs_give_clear_errors(files, tmp_path, args, expected):
    names = {key: str(path) for key, path in files.items()} | {"tmp": str(tmp_path)}
    result = invoke(*(arg.format(**names) for arg in args))
    assert result.exit_code == 2, result.output
    assert expected in message(result)
