"""Architecture search: declared spaces, a search that saves every trial, and workers that
share one study, one of them killed mid-trial."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import sqlalchemy
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.errors import ConfigError, StorageError
from deepmat.models.mlp import Block, MLPSpec
from deepmat.train import ElementSetRegressor, NetworkRegressor
from deepmat.train.search_space import Choice, FloatRange, IntRange, SearchSpace
from deepmat.workflows.composition import DataSpec
from deepmat.workflows.search import SearchJob, run_search
from deepmat.workflows.search_data import CompositionData
from deepmat.workflows.search_study import open_storage, retried_from

#: a corner of the composition MLP's space small enough to train in a blink
TINY = {"blocks": [1, 2], "width": [16, 32], "depth": [1, 2], "batch_size": [64]}
ELEMENTS = ["Li", "Na", "Mg", "Al", "Si", "Ti", "Fe", "N", "O", "Cl"]


@pytest.fixture(scope="module")
def formulas_csv(tmp_path_factory) -> Path:
    """240 binary formulas with a smooth synthetic target (a fraction-weighted sum)."""
    rng = np.random.default_rng(0)
    weights = dict(zip(ELEMENTS, rng.normal(size=len(ELEMENTS)), strict=True))
    rows = {}
    while len(rows) < 240:
        a, b = rng.choice(ELEMENTS, 2, replace=False)
        na, nb = rng.integers(1, 6, 2)
        rows[f"{a}{na}{b}{nb}"] = (na * weights[a] + nb * weights[b]) / (na + nb)
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    path.write_text("formula,target\n" + "".join(f"{f},{t:.5f}\n" for f, t in rows.items()))
    return path


def test_a_space_with_an_empty_range_is_refused_naming_the_parameter():
    with pytest.raises(ConfigError, match=r"'depth'.*empty range 4\.\.2"):
        SearchSpace({"depth": IntRange(4, 2)})
    with pytest.raises(ConfigError, match=r"'lr'.*log"):
        SearchSpace({"lr": FloatRange(0.0, 1e-3, log=True)})
    with pytest.raises(ConfigError, match=r"'residual'.*no choices"):
        SearchSpace({"residual": Choice(())})
    space = NetworkRegressor.declared_search_space()
    with pytest.raises(ConfigError, match=r"'width'.*empty range 512\.\.64"):
        space.narrowed({"width": [512, 64]})
    with pytest.raises(ConfigError, match="'kernel' is not in this space"):
        space.narrowed({"kernel": [3, 5]})
    assert space.narrowed({"width": [32, 64]}).params["width"] == IntRange(32, 64, log=True)


def test_estimators_build_themselves_at_a_point_of_their_space():
    base = NetworkRegressor.from_preset("default", config={"epochs": 3})
    point = {"blocks": 3, "width": 256, "taper": 0.5, "depth": 2, "dropout": 0.1}
    model = base.searched(point | {"residual": True, "lr": 2e-3, "batch_size": 64})
    assert [b.width for b in model.spec.blocks] == [256, 128, 64]
    assert [b.dropout for b in model.spec.blocks] == [0.1, 0.1, 0.0]
    assert model.spec.blocks[0] == Block(256, 2, 0.1, residual=True)
    assert (model.config.lr, model.config.batch_size, model.config.epochs) == (2e-3, 64, 3)
    assert model.spec.in_features == base.spec.in_features
    roost = ElementSetRegressor().searched(
        {"width": 64, "layers": 2, "heads": 2, "output_width": 128, "output_layers": 2}
        | {"lr": 5e-4, "batch_size": 64}
    )
    assert (roost.spec.kind, roost.spec.width, roost.spec.output) == ("roost", 64, (128, 64))
    with pytest.raises(ConfigError, match="declares no search space"):
        deepmat.train.ForestRegressor().searched({})


def test_residual_blocks_skip_where_widths_match_and_plain_cards_are_unchanged():
    torch.manual_seed(0)
    spec = MLPSpec(4, (Block(8, 3, residual=True), Block(2)))
    net = spec.build()
    assert net.skips == {2, 4}  # the second and third layers of the first block
    assert net(torch.rand(5, 4)).shape == (5, 1)
    assert MLPSpec.from_dict(spec.to_dict()) == spec
    assert "residual" not in MLPSpec(4, (Block(8),)).to_dict()["blocks"][0]


def test_one_worker_finishes_the_budget_and_saves_every_trial(formulas_csv, tmp_path):
    data = CompositionData(DataSpec(str(formulas_csv)))
    summary = run_search(SearchJob("elemnet", data, tmp_path, trials=3, epochs=2, space=TINY))
    assert summary["states"].get("complete", 0) + summary["states"].get("pruned", 0) == 3
    assert summary["best"] and summary["pareto"]
    assert (tmp_path / "pareto.png").exists() and (tmp_path / "search.json").exists()
    for row in summary["trials"]:
        model = deepmat.load(row["path"])
        assert model.predict(["Fe2O3", "NaCl"]).shape == (2,)
        card = json.loads((Path(row["path"]) / "card.json").read_text())
        assert card["training"]["search"]["trial"] == row["number"]
        assert card["training"]["search"]["point"] == row["point"]
        assert not (Path(row["path"]) / "checkpoints").exists()
    saved = json.loads((tmp_path / "search.json").read_text())
    assert saved["best"]["val_error"] == min(r["val_error"] for r in summary["trials"])


def test_a_storage_that_cannot_be_opened_is_named_in_one_line(tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/folder/study.db"
    with pytest.raises(StorageError, match=re.escape(f"cannot open the study storage {url}")):
        open_storage(url)
    with pytest.raises(StorageError, match=re.escape("user:***@127.0.0.1:1/db")) as caught:
        open_storage("postgresql://user:secret@127.0.0.1:1/db")
    assert "secret" not in str(caught.value)
    with pytest.raises(StorageError, match="folder"):
        open_storage(str(tmp_path / "missing" / "study.log"))
    args = ["search", "composition", "--data", "x.csv", "--out", str(tmp_path), "--storage", url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "cannot open the study storage" in result.output and "Traceback" not in result.output


def _worker(csv: Path, out: Path, storage: str, budget: int) -> subprocess.Popen:
    """`deepmat search composition` with one worker, as another machine would run it."""
    command = ["search", "composition", "--data", str(csv), "--out", str(out)]
    command += ["--storage", storage, "--study", "shared", "--trials", str(budget)]
    command += ["--epochs", "3", "--heartbeat", "1", "--space", str(out.parent / "tiny.json")]
    return subprocess.Popen(
        [sys.executable, "-c", "from deepmat.cli import app; app()", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _trials_of(storage: str | optuna.storages.BaseStorage, pid: int) -> list:
    """The trials of the shared study that the worker of process ``pid`` ran or runs."""
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    return [t for t in trials if t.user_attrs.get("worker", "").split(":")[1:2] == [str(pid)]]


def _running_while_stopped(storage: str, pid: int) -> list:
    """The trials the worker ``pid`` runs, read while it is stopped so that none can finish
    meanwhile; none when it was stopped inside a write (the database is then locked: a
    reader that waited would outlast the heartbeat's grace and fail the trial itself)."""
    impatient = {"connect_args": {"timeout": 0.1}}
    try:
        reader = optuna.storages.RDBStorage(storage, engine_kwargs=impatient)
        os.kill(pid, signal.SIGSTOP)
        return [t for t in _trials_of(reader, pid) if t.state == TrialState.RUNNING]
    except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError):
        return []  # optuna wraps a lock met inside its own session as a storage error


def test_two_workers_share_a_study_and_lose_no_trial_when_one_is_killed(formulas_csv, tmp_path):
    budget, storage = 6, f"sqlite:///{tmp_path / 'study.db'}"
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    killed, survivor = _worker(formulas_csv, tmp_path / "a", storage, budget), None
    victim, deadline = None, time.monotonic() + 600  # a guard against a hang only
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            mine = _trials_of(storage, killed.pid)
        except KeyError:  # the study is not created yet
            continue
        if mine and survivor is None:  # a head start, so that a slow start leaves it trials
            survivor = _worker(formulas_csv, tmp_path / "b", storage, budget)
        if any(t.state == TrialState.COMPLETE for t in mine):
            running = _running_while_stopped(storage, killed.pid)
            if running:
                os.kill(killed.pid, signal.SIGKILL)
                victim = running[0].number
            else:  # between two trials: let it start the next
                os.kill(killed.pid, signal.SIGCONT)
    assert victim is not None, "the first worker never ran a second trial"
    killed.wait()
    assert survivor.wait(timeout=120) == 0
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == budget
    assert trials[victim].state == TrialState.FAIL
    assert [retried_from(t) for t in finished].count(victim) == 1
    workers = {t.user_attrs["worker"].split(":")[1] for t in finished}
    assert workers == {str(killed.pid), str(survivor.pid)}  # both ran trials of one study
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    points = [json.dumps(t.params, sort_keys=True) for t in finished]
    assert len(set(points)) == budget  # no trial ran twice
    paths = [t.user_attrs["path"] for t in finished]
    assert len(set(paths)) == budget and all((Path(p) / "card.json").exists() for p in paths)


def test_workers_that_cannot_read_the_data_end_the_search_with_one_clear_error(tmp_path):
    missing = tmp_path / "no-such.csv"
    command = ["search", "composition", "--data", str(missing), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*command, "--workers", "2", "--trials", "2"])
    assert result.exit_code == 2, result.output
    assert "every search worker failed" in result.output and "Traceback" not in result.output
