"""Architecture search of segmentation networks: the declared space builds U-Nets and
PixelNets for the data's classes, and `deepmat search segmentation` finishes its budget on
folders of drawn micrographs."""

import json

import numpy as np
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.data.micrographs import ClassMap
from deepmat.train.segmentation import SegmentationModel, SegmentationSpec
from test_segmentation_cli import write_folder
from test_segmentation_estimator import micrographs

runner = CliRunner()
TINY = {"tile": [32], "depth": [2, 3], "decoder_width": [8, 16], "hidden": [32, 64]}


def test_a_segmentation_network_builds_itself_at_a_point_of_its_space():
    classes = ClassMap(("matrix", "particle", "pore"), (0, 1, 2))
    base = SegmentationModel(classes, SegmentationSpec(pretrained=False, channels=3))
    point = {"kind": "pixelnet", "depth": 2, "decoder_width": 16, "hidden": 256, "tile": 128}
    model = base.searched(point | {"lr": 2e-3, "batch_size": 8})
    spec = model.spec
    assert (spec.kind, spec.depth, spec.hidden, spec.tile) == ("pixelnet", 2, 256, 128)
    assert spec.decoder == (128, 64, 32, 16) and spec.channels == 3 and not spec.pretrained
    assert (model.config.lr, model.config.batch_size) == (2e-3, 8)
    assert model.class_map == classes and model.loss_name == base.loss_name
    unet = base.searched(point | {"kind": "unet"})
    assert unet.net(__import__("torch").zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_search_segmentation_saves_every_trial_as_a_segmentation_model(tmp_path):
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"names": ["matrix", "particle"], "values": [0, 1]}))
    train = write_folder(tmp_path, "train", micrographs(6, 0))
    val = write_folder(tmp_path, "val", micrographs(2, 1))
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    out = tmp_path / "search"
    command = ["search", "segmentation", "--data", train, "--val", val, "--classes", str(classes)]
    command += ["--no-pretrained", "--out", str(out), "--trials", "2", "--epochs", "1"]
    result = runner.invoke(app, [*command, "--space", str(tmp_path / "tiny.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "search.json").read_text())
    assert summary["error"] == "1 - miou"
    assert sum(summary["states"].get(s, 0) for s in ("complete", "pruned")) == 2
    image = micrographs(1, 2)[0]
    for row in summary["trials"]:
        assert 0 <= row["val_error"] <= 1
        model = deepmat.load(row["path"])
        assert model.spec.tile == 32 and model.spec.kind == row["point"]["kind"]
        (labels,) = model.predict([image])
        assert labels.shape == image.labels.shape and set(np.unique(labels)) <= {0, 1}


def test_the_search_start_is_the_default_segmentation_network():
    classes = ClassMap(("matrix", "particle"), (0, 1))
    base = SegmentationModel(classes, SegmentationSpec(pretrained=False))
    start = SegmentationModel.search_start
    assert SegmentationModel.declared_search_space().contains(start)
    default = base.searched(start)
    assert default.spec == base.spec
    assert (default.config.lr, default.config.batch_size) == (base.config.lr, 4)
    assert not SegmentationModel.declared_search_space().contains(start | {"tile": 100})
