"""The demo workflows: composition on a subset of the matminer-shipped transport data and
homogenization on a few tiny generated microstructures (no network)."""

import json

import numpy as np
from rich.console import Console
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.pretrained import pretrained_models
from deepmat.workflows import demo
from deepmat.workflows.demo import HOMOGENIZATION_MODELS, run_demo, run_homogenization_demo
from deepmat.workflows.microstructure import read_labelled


def test_demo_trains_both_models_and_writes_plots(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPMAT_DATA_DIR", raising=False)
    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(tmp_path / "cache"))
    results = run_demo(
        tmp_path / "demo", epochs=1, trees=10, limit=1500, console=Console(quiet=True)
    )
    assert set(results) == {"elemnet", "rf-magpie"}
    for name, metrics in results.items():
        assert metrics["test"]["n"] > 100 and metrics["val"]["mae"] > 0
        assert (tmp_path / "demo" / name / "parity_val.png").exists()
        assert deepmat.load(tmp_path / "demo" / name).predict(["PbTe"]).shape == (1,)
    assert (tmp_path / "cache" / "data" / "composition" / "mp_transport").is_dir()


def test_homogenization_demo_generates_trains_and_plots(tmp_path):
    results = run_homogenization_demo(
        tmp_path / "demo", n=24, grid=7, epochs=1, console=Console(quiet=True)
    )
    folder = tmp_path / "demo" / "homogenization"
    assert set(results) == set(HOMOGENIZATION_MODELS)
    split = json.loads((folder / "data" / "split.json").read_text())
    assert split["sizes"] == {"train": 16, "val": 4, "test": 4}
    (x_test, y_test), phases = read_labelled(folder / "data" / "test.h5", "C11")
    assert phases[1].youngs_modulus == 50 * phases[0].youngs_modulus
    for name, metrics in results.items():
        assert metrics["test"]["n"] == 4 and metrics["test"]["mape"] > 0
        assert deepmat.load(folder / name).predict(x_test).shape == y_test.shape
    assert (folder / "parity_test.png").stat().st_size > 0


def test_demo_command_runs_both_parts(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        demo, "run_pretrained_demo", lambda out, **kw: calls.append(("shipped", kw))
    )
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: calls.append(("composition", kw)))
    monkeypatch.setattr(
        demo, "run_homogenization_demo", lambda out, **kw: calls.append(("homogenization", kw))
    )
    options = ["--microstructures", "24", "--grid", "7", "--cnn-epochs", "1"]
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), *options])
    assert result.exit_code == 0, result.output
    assert [part for part, _ in calls] == ["shipped", "composition", "homogenization"]
    assert {k: calls[2][1][k] for k in ("n", "grid", "epochs")} == {"n": 24, "grid": 7, "epochs": 1}


def test_pretrained_demo_shows_what_is_shipped(tmp_path):
    shown = demo.run_pretrained_demo(tmp_path, console=Console(quiet=True))
    shipped = {m.name for m in pretrained_models()}
    assert set(shown) == shipped & set(demo.SHOWCASES)
    for rows in shown.values():
        assert rows and all({"input", "prediction", "reference"} <= set(row) for row in rows)
    if "ebsd-cnn-ni" in shown:  # indexes a real scan it never saw to within a few degrees
        angles = [row["disorientation_deg"] for row in shown["ebsd-cnn-ni"]]
        assert len(angles) == 9 and np.median(angles) < 5.0
        refined = [row["refined_disorientation_deg"] for row in shown["ebsd-cnn-ni"]]
        assert np.median(refined) < 1.0 and np.median(refined) < np.median(angles)
        averaged = [row["averaged_disorientation_deg"] for row in shown["ebsd-cnn-ni"]]
        assert np.mean(averaged) < np.mean(angles)  # neighbour averaging lifts noisy patterns
