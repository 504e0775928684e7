"""Every benchmark runs end to end with --quick, so none rots."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepmat
from deepmat.data.registry import DATASETS, data_dir
from test_crystal import perovskite

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("[!_]*.py"))
NEEDS = {
    "oqmd_elemnet": ("oqmd-dhf",),
    "homogenization": (),
    "localization": (),
    "ebsd": (),
    "crystal": ("mp-eform", "perovskites"),
}


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_quick(script, tmp_path):
    files = [f for name in NEEDS[script.stem] for f in DATASETS[name].all_files]
    missing = [f.relpath for f in files if not (data_dir() / f.relpath).exists()]
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
    for model, path in payload["models"].items():
        loaded = deepmat.load(path)
        card = json.loads((Path(path) / "card.json").read_text())
        if card["input"] == "microstructure":
            inputs = np.zeros((2, *card["grid"]), dtype=np.uint8)
        elif card["input"] == "ebsd-pattern":
            inputs = np.zeros((2, *card["pattern_shape"]), dtype=np.float32)
        elif card["input"] == "structure":
            inputs = [perovskite("Sr", "Ti"), perovskite("Ba", "Zr", a=4.19)]
        else:
            inputs = ["Fe2O3", "NaCl"]
        assert loaded.predict(inputs).shape[0] == 2, model
