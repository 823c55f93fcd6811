"""End-to-end searches: real SQLite/journal storages, the real sim-npu latency estimator, real proxies and training."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from latency_estimator import DeviceError
from nas.cli.main import main
from nas.datasets import DatasetError
from nas.search import SearchError, run_search
from nas.search.counting import counts_toward_budget, tally
from nas.training import TrainingError, TrainResult
from search_spaces import ArchConfig, shipped_space_path
from tests.search_helpers import BUDGETS, REPO, finish_workers, read_rows, start_worker, within_budgets

pytestmark = pytest.mark.usefixtures("use_small_sim_estimator")
BASE = {
    "space": shipped_space_path("combined"),
    "device": "sim-npu-p32",
    "dataset": "digits",
    "population_size": 4,
    **BUDGETS,
}
# Tiny multishot budgets: a few steps per candidate, enough to exercise training, pruning and the fidelity study.
TINY_TRAINING = {"epochs": 2, "train_limit": 64, "batch_size": 16}


def test_zeroshot_search_writes_results_and_resumes(tmp_path):
    result = run_search(**BASE, mode="zeroshot", trials=6, study="zs", results_dir=tmp_path)
    folder = tmp_path / "zs"
    rows = read_rows(folder)
    assert [int(r["number"]) for r in rows] == list(range(len(rows)))
    assert sum(r["evaluated"] == "1" for r in rows) == 6  # budget breakers are free proposals
    assert {r["state"] for r in rows} <= {"COMPLETE", "INFEASIBLE"}
    for row in rows:
        if row["state"] == "INFEASIBLE":
            assert "> budget" in row["reason"] and row["proxy_score"] == "" and not within_budgets(row)
        else:
            assert within_budgets(row) and float(row["proxy_score"])
    for trial in result.study.trials:
        assert set(trial.constraints) == {"latency", "params", "peak_memory"}

    document = json.loads((folder / "pareto.json").read_text())
    assert document["pareto"] and len(document["pareto"]) == len(result.pareto)
    assert document["device"] == {"name": "sim-npu-p32", "parallelism_factor": 32}  # what insights read back
    for entry in document["pareto"]:
        assert ArchConfig.load(folder / entry["file"]).arch_id == entry["arch_id"]
    assert (folder / "pareto.png").stat().st_size > 10_000
    report = (folder / "report.md").read_text()
    assert "## Pareto front" in report and "baseline.yaml" in report and "int8 (1 byte" in report

    first = {t.number: (t.user_attrs["arch_id"], t.values) for t in result.study.trials}
    again = run_search(**BASE, mode="zeroshot", trials=9, study="zs", results_dir=tmp_path)
    assert tally(again.study.trials).evaluated == 9
    assert {t.number: (t.user_attrs["arch_id"], t.values) for t in again.study.trials[: len(first)]} == first
    assert sum(r["evaluated"] == "1" for r in read_rows(folder)) == 9


@pytest.mark.slow
def test_hybrid_search_trains_only_feasible_promising_candidates(tmp_path):
    result = run_search(
        **BASE, **TINY_TRAINING, mode="hybrid", screen_ratio=2, trials=2, study="hy", results_dir=tmp_path
    )
    rows = read_rows(tmp_path / "hy")
    trained = [r for r in rows if r["val_accuracy"]]
    assert trained, "hybrid mode trains the candidates the proxy ranks in the top half"
    assert all(within_budgets(r) for r in trained)  # the share of trained budget breakers is 0
    for row in rows:
        if row["state"] == "SCREENED":
            assert "ranks" in row["reason"] and row["proxy_score"] and not row["val_accuracy"]
    assert "Trained candidates that break a budget: 0 of" in (tmp_path / "hy" / "report.md").read_text()
    baseline = result.study.user_attrs["edgenas.baseline"]
    assert 0.0 <= baseline["value"] <= 1.0 and "params" in baseline["violations"]
    fidelity = optuna.load_study(study_name="hy.fidelity", storage=f"sqlite:///{tmp_path / 'hy' / 'study.db'}")
    assert len(fidelity.trials) == len(trained)


def fake_training(failures: dict[int, Exception]):
    """train_arch that fails on the given call numbers and otherwise 'trains' instantly."""
    calls = []

    def train_arch(arch, dataset, *, config, on_epoch=None, progress=False):
        calls.append(arch.arch_id)
        if len(calls) in failures:
            raise failures[len(calls)]
        for epoch in range(1, config.epochs + 1):
            if on_epoch is not None:
                on_epoch(epoch, 0.5)
        return None, TrainResult(val_accuracy=0.5, test_accuracy=0.5, history=(), seconds=0.0, steps=1)

    return train_arch


def test_failed_candidates_are_recorded_and_the_search_goes_on(tmp_path, monkeypatch):
    failures = {
        1: TrainingError("training diverged at epoch 1 step 3 (loss=nan); try a lower learning rate"),
        2: RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 123 bytes"),
    }
    monkeypatch.setattr("nas.search.modes.train_arch", fake_training(failures))
    run_search(**BASE, mode="multishot", pruner="none", trials=5, study="fails", results_dir=tmp_path, baseline=False)
    rows = read_rows(tmp_path / "fails")
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert [r["reason"].split(":")[0] for r in failed] == ["TrainingError", "RuntimeError"]
    assert "diverged" in failed[0]["reason"] and "not enough memory" in failed[1]["reason"]
    assert sum(r["evaluated"] == "1" for r in rows) == 5 and any(r["state"] == "COMPLETE" for r in rows)
    assert all(r["evaluated"] == "1" for r in failed)  # a failed training used its evaluation


def test_journal_storage_holds_a_resumable_study(tmp_path):
    journal = tmp_path / "study.log"
    run_search(**BASE, mode="zeroshot", trials=3, study="jr", results_dir=tmp_path, storage=str(journal))
    result = run_search(**BASE, mode="zeroshot", trials=5, study="jr", results_dir=tmp_path, storage=str(journal))
    assert journal.stat().st_size > 0 and tally(result.study.trials).evaluated == 5
    assert not (tmp_path / "jr" / "study.db").exists()
    assert sum(r["evaluated"] == "1" for r in read_rows(tmp_path / "jr")) == 5


OPEN_STORAGE = """
import time
from nas.search.settings import SearchSettings
from nas.search.study import make_storage
time.sleep(max(0.0, {start} - time.time()))
make_storage(SearchSettings(space={space!r}, device="sim-npu-p32", dataset="digits", storage={url!r}))
"""


def test_workers_started_together_on_a_new_database_all_open_it(tmp_path):
    """They race to create the tables; the losers retry instead of failing."""
    code = OPEN_STORAGE.format(start=time.time() + 8, space=str(BASE["space"]), url=f"sqlite:///{tmp_path / 'new.db'}")
    finish_workers([start_worker(code) for _ in range(6)], timeout_s=120)


def test_resuming_with_other_settings_is_refused(tmp_path):
    run_search(**BASE, mode="zeroshot", trials=1, study="same", results_dir=tmp_path, baseline=False)
    with pytest.raises(SearchError, match=r"created with other settings \(device: study has 'sim-npu-p32'"):
        run_search(**{**BASE, "device": "sim-npu-p16"}, mode="zeroshot", trials=2, study="same", results_dir=tmp_path)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"device": "tpu-v9"}, DeviceError, "unknown device 'tpu-v9'"),
        ({"dataset": "imagenet"}, DatasetError, "unknown dataset 'imagenet'"),
        ({"latency_budget_ms": 1e-4}, SearchError, "latency budget 0.0001 ms is unreachable"),
        ({"max_params": -5}, SearchError, "budget `max_params` must be a positive number"),
        ({"strategy": "grid"}, SearchError, "unknown strategy 'grid'"),
    ],
)
def test_bad_input_fails_before_any_study_is_made(tmp_path, change, error, message):
    with pytest.raises(error, match=message):
        run_search(**{**BASE, **change}, mode="zeroshot", trials=1, study="bad", results_dir=tmp_path)
    assert not (tmp_path / "bad").exists()


def test_cli_runs_a_search_and_reports_errors_in_one_line(tmp_path, capsys):
    args = ["search", "--space", str(BASE["space"]), "--device", "sim-npu-p32", "--dataset", "digits"]
    args += ["--mode", "zeroshot", "--trials", "3", "--population-size", "2", "--results-dir", str(tmp_path)]
    assert main([*args, "--study", "cli", "--max-params", "600000"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "trained candidates breaking a budget: 0 of 0" in out
    assert main([*args, "--study", "cli2", "--max-params", "1000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgenas: error: params budget 1,000 params is unreachable") and "\n" not in err


# Each candidate trains for a few seconds: long enough to be caught mid-trial.
KILLED = {
    **BASE,
    "space": str(BASE["space"]),
    "population_size": 2,
    "epochs": 2,
    "train_limit": 256,
    "batch_size": 16,
    "pruner": "none",
    "baseline": False,
    "mode": "multishot",
    "study": "killed",
}
KILLED_SEARCH = """
from nas.search import run_search
run_search(**{settings!r}, trials=20, results_dir={results!r})
"""


def load_killed(db: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="killed", storage=f"sqlite:///{db}").trials


def mid_trial(trials: list[optuna.trial.FrozenTrial]) -> list[int]:
    """Trials past their budget check (being evaluated) and not finished."""
    return [t.number for t in trials if t.state == TrialState.RUNNING and "latency_ms" in t.user_attrs]


def wait_for_training(db: Path, process: subprocess.Popen, timeout_s: float = 240.0) -> None:
    """Return once a trial is being evaluated while an earlier one has finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if db.exists():
            try:
                trials = load_killed(db)
            except (KeyError, ValueError, optuna.exceptions.StorageInternalError, SQLAlchemyError):
                trials = []  # the database or the study is still being created
            if any(t.state.is_finished() for t in trials) and mid_trial(trials):
                return
        time.sleep(0.5)
    raise AssertionError("the search never reached a second training in time")


@pytest.mark.slow
def test_a_killed_search_resumes_without_losing_finished_trials(tmp_path):
    code = KILLED_SEARCH.format(settings=KILLED, results=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.DEVNULL)
    db = tmp_path / "killed" / "study.db"
    try:
        wait_for_training(db, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    at_kill = load_killed(db)
    (interrupted,) = mid_trial(at_kill)
    before = {t.number: (t.state, t.values, t.datetime_complete) for t in at_kill if t.state.is_finished()}

    # A target already reached: the run goes on only until the interrupted architecture has had its retry.
    result = run_search(**KILLED, trials=sum(counts_toward_budget(t) for t in at_kill), results_dir=tmp_path)
    trials = result.study.trials
    assert trials[interrupted].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == interrupted]
    assert len(retries) == 1 and retries[0].params == trials[interrupted].params
    assert retries[0].state.is_finished() and retries[0].user_attrs["outcome"] in ("COMPLETE", "PRUNED")
    assert {n: (t.state, t.values, t.datetime_complete) for n, t in enumerate(trials) if n in before} == before
    row = read_rows(tmp_path / "killed")[interrupted]
    assert row["state"] == "FAIL" and f"retried as trial {retries[0].number}" in row["reason"]
    fidelity = optuna.load_study(study_name="killed.fidelity", storage=f"sqlite:///{db}")
    assert not [t for t in fidelity.trials if t.state == TrialState.RUNNING]
