"""deepmat train segmentation, segment, measure and evaluate on folders of drawn micrographs."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from deepmat.cli import app
from test_segmentation_estimator import micrographs

runner = CliRunner()


def write_folder(root, name, items):
    (root / f"{name}_images").mkdir(parents=True)
    (root / f"{name}_masks").mkdir()
    for m in items:
        Image.fromarray((m.image * 255).astype(np.uint8)).save(root / f"{name}_images/{m.name}.png")
        Image.fromarray(m.labels).save(root / f"{name}_masks/{m.name}.png")
    return f"{root / f'{name}_images'}:{root / f'{name}_masks'}"


@pytest.fixture
def folders(tmp_path):
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"names": ["matrix", "particle"], "values": [0, 1]}))
    train = write_folder(tmp_path, "train", micrographs(6, 0))
    val = write_folder(tmp_path, "val", micrographs(2, 1))
    return tmp_path, train, val, classes


def test_train_segment_measure_and_evaluate_from_folders(folders):
    root, train, val, classes = folders
    out = root / "seg"
    command = ["train", "segmentation", "--data", train, "--val", val, "--classes", str(classes)]
    command += ["--encoder", "scratch", "--tile", "32", "--epochs", "2", "--lr", "1e-2"]
    command += ["--depth", "2", "--scale", "0.8"]
    result = runner.invoke(app, [*command, "--batch-size", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    architecture = json.loads((out / "card.json").read_text())["architecture"]
    assert (architecture["depth"], architecture["scale"], architecture["tile"]) == (2, 0.8, 32)
    assert "mIoU" in result.output and list(out.glob("overlay_*.png"))
    card = json.loads((out / "card.json").read_text())
    assert card["family"] == "segmentation-network" and card["classes"]["names"][1] == "particle"

    labels = root / "labels"
    result = runner.invoke(
        app, ["segment", str(out), str(root / "val_images"), "-o", str(labels), "--overlay"]
    )
    assert result.exit_code == 0, result.output
    assert len(list(labels.glob("m?.png"))) == 2 and len(list(labels.glob("overlays/*"))) == 2

    table = root / "particles.csv"
    result = runner.invoke(
        app, ["measure", str(labels), "--class", "1", "--pixel-size", "0.5", "-o", str(table)]
    )
    assert result.exit_code == 0, result.output
    header, *rows = table.read_text().splitlines()
    assert header.startswith("image,particle,area") and rows
    assert table.with_suffix(".png").exists()

    result = runner.invoke(app, ["evaluate", str(out), val, "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["part"] == "file" and 0 <= scores["miou"] <= 1 and "pooled_iou" in scores


def test_bad_segmentation_inputs_name_the_problem(folders, tmp_path):
    _, train, _, _ = folders
    result = runner.invoke(
        app, ["train", "segmentation", "--data", train, "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "--classes" in result.output
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    result = runner.invoke(
        app, ["measure", str(tmp_path / "rgb.png"), "--class", "1", "-o", "t.csv"]
    )
    assert result.exit_code == 2 and "one class index per pixel" in result.output


def test_measure_reports_the_denuded_zone_around_a_reference_class(tmp_path):
    labels = np.zeros((30, 30), np.uint8)
    labels[:, :4] = 2  # network along the left edge
    labels[10:13, 12:15] = 1  # a particle 8 px from the network's boundary
    Image.fromarray(labels).save(tmp_path / "a.png")
    out = tmp_path / "p.csv"
    command = ["measure", str(tmp_path / "a.png"), "--class", "1", "--reference", "2"]
    result = runner.invoke(app, [*command, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "denuded zone around class 2: median" in result.output
    header, *rows = (tmp_path / "p_denuded.csv").read_text().splitlines()
    assert header == "image,width" and len(rows) == 30
