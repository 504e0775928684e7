"""Architecture search of orientation CNNs: the declared space builds networks for the
data's patterns, and `deepmat search ebsd` finishes its budget on a tiny simulated set."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.data.ebsd import read_pattern_dataset
from deepmat.models.ebsd import OrientationCNNSpec
from deepmat.train.ebsd import OrientationCNNRegressor

runner = CliRunner()
#: a corner of the space that trains in seconds on 20×20 patterns
TINY = {"blocks": [3, 3], "channels": [4, 8], "head_width": [16, 32], "batch_size": [64]}


def test_an_orientation_cnn_builds_itself_at_a_point_of_its_space():
    base = OrientationCNNRegressor(OrientationCNNSpec(pattern_shape=(30, 40)), point_group="m-3m")
    point = {"blocks": 3, "channels": 8, "convs_per_block": 2, "kernel_size": 5}
    point |= {"readout": "average", "head_layers": 2, "head_width": 64, "dropout": 0.1}
    model = base.searched(point | {"lr": 1e-3, "batch_size": 64})
    spec = model.spec
    assert spec.channels == (8, 16, 32) and spec.fc_widths == (64, 64)
    assert (spec.convs_per_block, spec.kernel_size, spec.readout) == (2, 5, "average")
    assert spec.pattern_shape == (30, 40) and spec.output == base.spec.output
    assert (model.config.lr, model.config.batch_size) == (1e-3, 64)
    assert model.point_group == "m-3m" and model.preprocess == base.preprocess
    out = model.net(__import__("torch").zeros(2, 1, 30, 40))
    assert out.shape == (2, spec.out_features)


@pytest.fixture(scope="module")
def patterns(tmp_path_factory):
    path = tmp_path_factory.mktemp("ebsd") / "grid.h5"
    command = ["ebsd", "simulate", str(path), "--resolution", "15", "--shape", "20", "20"]
    result = runner.invoke(app, [*command, "--workers", "1"])
    assert result.exit_code == 0, result.output
    return path


def test_search_ebsd_saves_every_trial_as_an_orientation_model(patterns, tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    out = tmp_path / "search"
    command = ["search", "ebsd", "--data", str(patterns), "--out", str(out), "--trials", "2"]
    command += ["--epochs", "1", "--space", str(tmp_path / "tiny.json"), "--no-prune"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "best validation mean_disorientation_deg" in " ".join(result.output.split())
    summary = json.loads((out / "search.json").read_text())
    assert summary["error"] == "mean_disorientation_deg" and summary["states"]["complete"] == 2
    dataset = read_pattern_dataset(patterns)
    for row in summary["trials"]:
        assert 0 <= row["val_error"] <= 63  # the largest cubic disorientation is 62.8°
        assert row["flops"] > 0 and row["params"] > 0
        model = deepmat.load(row["path"])
        assert model.spec.channels[0] == row["point"]["channels"]
        predicted = model.predict(dataset.patterns[:3])
        assert np.allclose(np.linalg.norm(predicted.data, axis=1), 1)
    assert (out / "pareto.png").exists()


def test_a_model_that_is_not_searchable_on_patterns_is_refused(patterns, tmp_path):
    from deepmat.errors import ConfigError
    from deepmat.workflows.search import SearchJob
    from deepmat.workflows.search_data import PatternData

    with pytest.raises(ConfigError, match="'elemnet' is not searchable on this data"):
        SearchJob("elemnet", PatternData((str(patterns),)), tmp_path, trials=1)


def test_a_search_starts_from_the_default_network_when_its_space_holds_it(patterns, tmp_path):
    from deepmat.workflows.search import SearchJob, start_point
    from deepmat.workflows.search_data import PatternData

    base = OrientationCNNRegressor()
    start = OrientationCNNRegressor.search_start
    assert OrientationCNNRegressor.declared_search_space().contains(start)
    default = base.searched(start)
    assert default.spec == base.spec
    assert (default.config.lr, default.config.batch_size) == (base.config.lr, 128)
    data = PatternData((str(patterns),))
    assert start_point(SearchJob("orientation-cnn", data, tmp_path, trials=1)) == start
    narrowed = SearchJob("orientation-cnn", data, tmp_path, trials=1, space=TINY)
    assert start_point(narrowed) is None  # TINY has no 4-block networks
    assert start_point(SearchJob("orientation-cnn", data, tmp_path, trials=1, start=False)) is None
