"""The demo workflow on a subset of the matminer-shipped transport data (no network)."""

from rich.console import Console

import deepmat
from deepmat.workflows.demo import run_demo


def test_demo_trains_both_models_and_writes_plots(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPMAT_DATA_DIR", str(tmp_path / "cache"))
    results = run_demo(
        tmp_path / "demo", epochs=1, trees=10, limit=1500, console=Console(quiet=True)
    )
    assert set(results) == {"elemnet", "rf-magpie"}
    for name, metrics in results.items():
        assert metrics["test"]["n"] > 100 and metrics["val"]["mae"] > 0
        assert (tmp_path / "demo" / name / "parity_val.png").exists()
        assert deepmat.load(tmp_path / "demo" / name).predict(["PbTe"]).shape == (1,)
    assert (tmp_path / "cache" / "composition" / "mp_transport").is_dir()
