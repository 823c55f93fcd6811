"""Tuning levers and the tuning database: prepacked weights, trials where the work is, interrupted runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

from deploy import compile_onnx, export_onnx, get_target, lower_onnx, random_inputs  # noqa: E402
from deploy.lowering import load_onnx  # noqa: E402
from deploy.session import ort_session  # noqa: E402
from deploy.tuning_db import BUDGET_FILE  # noqa: E402
from deploy.tuning_schedule import MIN_TRIALS_PER_TASK, task_trials  # noqa: E402

SHAPE = (1, 3, 12, 12)


@pytest.fixture(scope="module")
def two_convs(tmp_path_factory) -> Path:
    """Two tasks of very different work: a 3x3 conv (+ bias + ReLU6) and a small 1x1 conv."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU6(), torch.nn.Conv2d(32, 8, 1, bias=False)
    ).eval()
    return export_onnx(model, input_shape=SHAPE, path=tmp_path_factory.mktemp("convs") / "convs.onnx")


def reference(path: Path, batch: np.ndarray) -> np.ndarray:
    return ort_session(path).run(None, {"input": batch})[0]


def test_trials_follow_the_work_of_each_task(two_convs):
    import tvm
    from tvm.s_tir import meta_schedule as ms

    target = tvm.target.Target(get_target("x86_64").resolve())
    tasks = ms.relax_integration.extract_tasks(lower_onnx(load_onnx(two_convs), SHAPE, target), target)
    assert len(tasks) == 2
    heavy, light = sorted(task_trials(tasks, 100), reverse=True)
    assert heavy > 2 * light >= 2 * MIN_TRIALS_PER_TASK and heavy + light <= 100 + MIN_TRIALS_PER_TASK
    assert task_trials(tasks, 100, weighting="even") == [50, 50]


@pytest.mark.slow
def test_prepacked_build_gives_the_outputs_of_an_unpacked_one(two_convs, tmp_path):
    batch = random_inputs(SHAPE, batch=2)
    packed = compile_onnx(two_convs, target="x86_64", tuning_trials=4, tuning_db=tmp_path / "packed")
    plain = compile_onnx(two_convs, target="x86_64", tuning_trials=4, tuning_db=tmp_path / "plain", prepack=False)
    # The tuned kernels read weights whose layout was rewritten (and folded at build time) ...
    assert "_prepacked" in packed.program_text() and "_prepacked" not in plain.program_text()
    # ... and compute the same thing.
    np.testing.assert_allclose(packed.run(batch), plain.run(batch), atol=1e-5)
    np.testing.assert_allclose(packed.run(batch), reference(two_convs, batch), atol=1e-4)


TUNE_SCRIPT = """
import sys
from deploy import compile_onnx
compile_onnx(sys.argv[1], target="x86_64", tuning_trials=int(sys.argv[3]), tuning_db=sys.argv[2])
"""


@pytest.mark.slow
def test_tuning_database_survives_an_interrupted_run(two_convs, tmp_path):
    database, trials = tmp_path / "db", 4  # a few trials per task: one round each
    records = database / "database_tuning_record.json"
    worker = subprocess.Popen(
        [sys.executable, "-c", TUNE_SCRIPT, str(two_convs), str(database), str(trials)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while not (records.is_file() and records.read_text().count("\n") >= 2):
            assert worker.poll() is None, "the tuning run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no candidate measured within 10 minutes"
            time.sleep(0.5)
    finally:
        worker.kill()
        worker.wait()
    # Killed mid-way: the budget file counts the rounds that finished, and a write may be torn.
    budget_file = database / BUDGET_FILE
    before = json.loads(budget_file.read_text())["tasks"] if budget_file.is_file() else {}
    with records.open("a") as handle:
        handle.write('[0, [[["SampleTile", ')  # what a kill in the middle of a write leaves
    resumed = compile_onnx(two_convs, target="x86_64", tuning_trials=trials, tuning_db=database)
    assert resumed.tuning.tuned_tasks >= 1 and resumed.tuning.skipped_tasks == 0
    after = json.loads(budget_file.read_text())["tasks"]
    assert len(after) == resumed.tuning.tasks and all(after[key] >= done for key, done in before.items())
    batch = random_inputs(SHAPE, batch=2)
    np.testing.assert_allclose(resumed.run(batch), reference(two_convs, batch), atol=1e-4)
    again = compile_onnx(two_convs, target="x86_64", tuning_trials=trials, tuning_db=database)
    assert again.tuning.measured == 0 and again.tuning.tuned_tasks == 0


@pytest.mark.slow
def test_time_budget_stops_starting_tasks_and_a_later_run_goes_on(two_convs, tmp_path):
    database = tmp_path / "db"
    first = compile_onnx(two_convs, target="x86_64", tuning_trials=8, tuning_db=database, tune_minutes=1e-3)
    assert first.tuning.tuned_tasks + first.tuning.skipped_tasks == first.tuning.tasks >= 2
    assert first.tuning.skipped_tasks >= 1
    later = compile_onnx(two_convs, target="x86_64", tuning_trials=8, tuning_db=database)
    assert later.tuning.tuned_tasks == first.tuning.skipped_tasks and later.tuning.skipped_tasks == 0
