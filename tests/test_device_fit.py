"""tools/device_fit.py: export here, fit with only torch and Lightning, assemble a model."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import deepmat

TOOL = Path(__file__).parent.parent / "tools" / "device_fit.py"


def step(*args) -> None:
    subprocess.run([sys.executable, str(TOOL), *map(str, args)], check=True)


def test_a_network_fitted_from_exported_arrays_is_an_ordinary_model(shared_data, tmp_path):
    data, fitted, model = tmp_path / "data", tmp_path / "fitted", tmp_path / "model"
    step("export", "roost", "--train-size", 300, "--val-size", 100, "--out", data)
    setup = json.loads((data / "setup.json").read_text())
    arrays = np.load(data / "arrays.npz")
    assert arrays["x_train"].shape == (300, 8, 2) and arrays["x_val"].shape == (100, 8, 2)
    assert setup["spec"]["out_features"] == 2  # μ and ln σ, for the Laplace loss
    assert arrays["table"][8].any() and not arrays["table"][0].any()  # oxygen; padding

    step("fit", data, "--epochs", 2, "--batch-size", 64, "--seed", 3, "--out", fitted)
    record = json.loads((fitted / "fit.json").read_text())
    assert record["epochs_run"] == 2 and record["config"]["seed"] == 3
    assert record["config"]["batch_size"] == 64

    step("assemble", data, fitted, "--command", "fit --seed 3", "--out", model)
    loaded = deepmat.load(model)
    card = loaded.card()
    assert card["training"]["command"] == "fit --seed 3"
    assert card["training"]["data"]["n_train"] == 300
    val_mae = card["metrics"]["val"]["mae"]  # float64 here, float32 in the trainer
    assert abs(val_mae - record["best_val_mae"]) <= 1e-3 * max(record["best_val_mae"], 1.0)
    mean, std = loaded.predict(["Fe2O3", "NaCl"], return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
