"""Every benchmark runs end to end with --quick, so none rots."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepmat
from deepmat.data.registry import DATASETS, data_dir
from deepmat.pretrained import pretrained_path
from test_crystal import perovskite

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from _shared import merge_earlier, merged_metrics

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("[!_]*.py"))
NEEDS = {
    "oqmd_elemnet": ("oqmd-dhf",),
    "composition": ("oqmd-dhf",),
    "uncertainty": ("oqmd-dhf", "mp-eform"),
    "homogenization": (),
    "localization": (),
    "ebsd": (),
    "ebsd_search": (),
    "crystal": ("mp-eform", "perovskites"),
    "cold_start": (),
    "pretrained": ("oqmd-dhf", "perovskites"),
    "stability": ("oqmd-dhf",),
    "transfer": ("ssub-dhf", "oqmd-dhf", "mp-non-metals", "expt-non-metals"),
    "segmentation": (),
    "reconstruction": (),
    "activations": (),
    "design": (),
    "architecture_search": ("oqmd-dhf",),
    "active_learning": ("oqmd-dhf",),
    "structure_prediction": ("mp-eform",),
}
#: folders (not registered files) a benchmark reads
NEEDS_FOLDERS = {"segmentation": ("micrographs/nasa/Super1",)}


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_quick(script, tmp_path):
    files = [f for name in NEEDS[script.stem] for f in DATASETS[name].all_files]
    missing = [f.relpath for f in files if not (data_dir() / f.relpath).exists()]
    missing += [d for d in NEEDS_FOLDERS.get(script.stem, ()) if not (data_dir() / d).is_dir()]
    if missing:
        pytest.skip(
            f"reference data not found in {data_dir()}: {missing}; "
            "set DEEPMAT_DATA_DIR (e.g. to ../shared/data)"
        )
    out, results = tmp_path / "models", tmp_path / "results"
    subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(out), "--results", str(results)],
        check=True,
    )
    (result_file,) = results.glob("*.json")
    payload = json.loads(result_file.read_text())
    assert payload["quick"] is True and payload["metrics"]
    assert {"data", "split", "sizes", "wall_seconds", "machine", "command"} <= set(payload)
    assert list(results.glob("*.png"))
    if script.stem == "crystal":  # the reference code ran side by side where it is present
        from _reference_cgcnn import REFERENCE

        reference = payload["metrics"]["reference_cgcnn"]
        if REFERENCE.is_dir():
            assert "error" not in reference and reference["val_mae"] > 0
        else:
            assert "not found" in reference["error"]
    if script.stem == "composition":  # every side of the side-by-side run reported
        side = payload["metrics"]["side_by_side"]
        assert {"deepmat_roost", "deepmat_transformer", "deepmat_elemnet"} <= set(side)
        aviary = side["aviary_roost"]  # trained wherever its environment is installed
        assert "val_mae" in aviary or "is not installed" in aviary["error"], aviary
        assert side["crabnet"]["install"]["requirement"] == "crabnet==2.0.8"
        fit = payload["metrics"]["learning_curve_fit"]["elemnet"]  # curve point + whole run
        assert len(fit["points"]) == 2 and fit["n_train_for_target"] > 0
    for model, path in payload["models"].items():
        loaded = deepmat.load(path)
        card = json.loads((Path(path) / "card.json").read_text())
        if card["input"] == "microstructure":
            inputs = np.zeros((2, *card["grid"]), dtype=np.uint8)
        elif card["input"] == "ebsd-pattern":
            inputs = np.zeros((2, *card["pattern_shape"]), dtype=np.float32)
        elif card["input"] == "micrograph":
            inputs = [np.zeros((40, 50), np.float32), np.ones((70, 30), np.float32)]
        elif card["input"] == "latent":
            inputs = np.zeros((2, card["architecture"]["latent_dim"]), dtype=np.float32)
        elif card["input"] == "structure":
            inputs = [perovskite("Sr", "Ti"), perovskite("Ba", "Zr", a=4.19)]
        else:
            inputs = ["Fe2O3", "NaCl"]
        predicted = loaded.predict(inputs)
        assert (len(predicted) if isinstance(predicted, list) else predicted.shape[0]) == 2, model


def test_rerun_of_some_models_keeps_the_others_and_says_which_command_made_each(tmp_path):
    earlier = {
        "command": "python crystal.py",
        "metrics": {"a": {"mae": 1.0}, "b": {"mae": 2.0}},
        "sizes": {"d1": {"train": 8}},
        "wall_seconds": {"total": 100.0},
    }
    (tmp_path / "crystal.json").write_text(json.dumps(earlier))
    rerun = {
        "command": "python crystal.py --only b",
        "commands": {"b": "python crystal.py --only b"},
        "metrics": {"b": {"mae": 1.5}},
        "sizes": {"d2": {"train": 4}},
        "wall_seconds": {"total": 10.0},
    }
    merged = merge_earlier(rerun, tmp_path / "crystal.json", ("metrics", "sizes"))
    assert merged["metrics"] == {"a": {"mae": 1.0}, "b": {"mae": 1.5}}
    assert merged["sizes"] == {"d1": {"train": 8}, "d2": {"train": 4}}
    assert merged["commands"] == {"a": "python crystal.py", "b": "python crystal.py --only b"}
    assert merged["wall_seconds"] == {"total": 10.0}
    assert merged["earlier_wall_seconds"] == [{"command": "python crystal.py", "total": 100.0}]
    assert merge_earlier(rerun, tmp_path / "none.json", ("metrics",)) is rerun


def test_a_rerun_of_some_methods_keeps_the_others(tmp_path):
    earlier = {"metrics": {"a": {"x": {"mae": 1.0}, "y": {"mae": 2.0}}, "b": {"x": {"mae": 3.0}}}}
    (tmp_path / "u.json").write_text(json.dumps(earlier))
    merged = merged_metrics(tmp_path / "u.json", {"a": {"y": {"mae": 1.5}}, "c": {}})
    assert merged == {
        "a": {"x": {"mae": 1.0}, "y": {"mae": 1.5}},
        "b": {"x": {"mae": 3.0}},
        "c": {},
    }
    assert merged_metrics(tmp_path / "none.json", {"a": {}}) == {"a": {}}


def test_a_learning_curve_run_adds_its_points_to_the_earlier_ones(tmp_path):
    from composition import with_earlier_points

    old = [{"model": "roost", "n_train": n, "val_mae": 1 / n} for n in (5, 20)]
    earlier = {
        "command": "python composition.py",
        "commands": {"learning_curve": "python composition.py --curve-sizes 5 20"},
        "metrics": {"learning_curve": old},
    }
    (tmp_path / "c.json").write_text(json.dumps(earlier))
    new = [{"model": "roost", "n_train": n, "val_mae": 0.5 / n, "command": "b"} for n in (20, 80)]
    points = with_earlier_points(new, tmp_path / "c.json")
    assert [(p["n_train"], p["val_mae"], p["command"]) for p in points] == [
        (5, 0.2, "python composition.py --curve-sizes 5 20"),
        (20, 0.025, "b"),
        (80, 0.5 / 80, "b"),
    ]
    assert with_earlier_points(new, tmp_path / "none.json") is new


def quick_uncertainty(tmp_path, *args: str) -> dict:
    """The elemnet entry of ``benchmarks/uncertainty.py --quick`` with ``args`` (skipped
    without oqmd-dhf)."""
    if not (data_dir() / DATASETS["oqmd-dhf"].all_files[0].relpath).exists():
        pytest.skip(f"oqmd-dhf not found in {data_dir()}; set DEEPMAT_DATA_DIR")
    script = BENCHMARKS[0].parent / "uncertainty.py"
    out, results = tmp_path / "models", tmp_path / "results"
    command = [sys.executable, str(script), "--quick", "--out", str(out), "--results", str(results)]
    subprocess.run([*command, "--models", "elemnet", *args], check=True)
    return json.loads((results / "uncertainty_quick.json").read_text())["metrics"]["elemnet"]


def test_an_ensemble_of_snapshots_holds_the_source_and_its_fine_tuned_copies(tmp_path):
    args = ["--methods", "snapshots", "--snapshots", "elemnet=elemnet-oqmd"]
    entry = quick_uncertainty(tmp_path, *args, "--snapshot-epochs", "1")
    ensemble = deepmat.load(entry["snapshots"]["model"])
    assert len(ensemble.members) == 2 and entry["snapshots"]["mae"] > 0
    configs = [m.card()["training"].get("config", {}) for m in ensemble.members]
    assert configs[1]["init"] == "elemnet-oqmd" and configs[1]["dropout_until"] == 0.0


def test_a_companion_gives_the_shipped_network_a_calibrated_std_without_moving_its_mean(tmp_path):
    roost = pretrained_path("composition-oqmd") / "members" / "0"
    args = ["--methods", "companion", "--snapshots", "elemnet=elemnet-oqmd"]
    entry = quick_uncertainty(tmp_path, *args, "--companion", f"elemnet={roost}")
    pair = deepmat.load(entry["companion"]["model"])
    assert (pair.model.family, pair.companion.family) == ("network", "element-set-network")
    mean, std = pair.predict(["NaCl", "Fe2O3"], return_std=True)
    network = deepmat.load("elemnet-oqmd").starting_point("network")
    assert np.all(std > 0) and np.array_equal(mean, network.predict(["NaCl", "Fe2O3"]))
    assert set(entry["companion_recalibrated_coverage"]["scales"]) == {"epistemic", "aleatoric"}


def test_a_sigma_head_fine_tunes_the_source_on_the_beta_nll_with_leading_layers_fixed(tmp_path):
    args = ["--methods", "sigma_head", "--snapshots", "elemnet=elemnet-oqmd"]
    entry = quick_uncertainty(
        tmp_path, *args, "--snapshot-epochs", "1", "--sigma-head-freeze", "13"
    )
    model = deepmat.load(entry["sigma_head"]["model"])
    config = model.card()["training"]["config"]
    assert (config["init"], config["freeze"], config["loss"]) == (
        "elemnet-oqmd",
        13,
        "laplace-beta-nll",
    )
    mean, std = model.predict(["NaCl", "Fe2O3"], return_std=True)
    source = deepmat.load("elemnet-oqmd").predict(["NaCl", "Fe2O3"])
    assert np.all(std > 0) and np.allclose(mean, source, atol=0.1)
