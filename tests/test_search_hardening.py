"""Search hardening: exactly N trials with many workers, honest reports, a quiet terminal."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from latency_estimator import build_estimator
from nas.cli.main import main
from nas.search import run_search
from nas.search.report import latency_change
from nas.search.runner import counted_trials
from search_spaces import shipped_space_path

REPO = Path(__file__).resolve().parents[1]
SPACE = str(shipped_space_path("fused_ibn"))
SEARCH = ["search", "--space", SPACE, "--device", "sim-npu-p32", "--dataset", "digits", "--no-baseline"]


@pytest.fixture(scope="module", autouse=True)
def sim_estimator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("estimators")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGENAS_ESTIMATORS", str(folder))
        build_estimator("sim-npu-p32", samples=150)
        yield folder


def rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "trials.csv") as handle:
        return list(csv.DictReader(handle))


WORKER = """
from nas.search import run_search
run_search(space={space!r}, device="sim-npu-p32", dataset="digits", study="jw", trials={trials}, mode="zeroshot",
           strategy="random", baseline=False, seed={seed}, storage={journal!r}, results_dir={results!r})
"""


def test_three_journal_workers_stop_at_exactly_the_target(tmp_path, sim_estimator):
    journal, trials = tmp_path / "study.log", 12
    env = {**os.environ, "EDGENAS_ESTIMATORS": str(sim_estimator), "PYTHONPATH": str(REPO)}
    code = [
        WORKER.format(space=SPACE, trials=trials, seed=s, journal=str(journal), results=str(tmp_path))
        for s in (0, 1, 2)
    ]
    workers = [subprocess.Popen([sys.executable, "-c", c], cwd=REPO, env=env, stderr=subprocess.PIPE) for c in code]
    errors = [w.communicate(timeout=300)[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], "\n".join(errors)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="jw", storage=storage)
    assert counted_trials(study) == trials
    skipped = [t for t in study.trials if "surplus" in t.user_attrs]
    assert all(not t.params and t.state == optuna.trial.TrialState.PRUNED for t in skipped)
    # Free proposals (budget breakers, duplicates) are trials too, but only evaluations count toward the target.
    listed = rows(tmp_path / "jw")
    assert len(listed) == len(study.trials)
    assert sum(r["evaluated"] == "1" for r in listed) == trials
    evaluated_archs = [r["arch_id"] for r in listed if r["evaluated"] == "1"]
    assert len(set(evaluated_archs)) == trials  # no architecture evaluated twice


def test_the_feasible_start_leaves_no_waiting_trial_and_zeroshot_rows_say_proxy(tmp_path):
    result = run_search(
        space=SPACE, device="sim-npu-p32", dataset="digits", mode="zeroshot", trials=2, population_size=6,
        latency_budget_ms=0.5, results_dir=tmp_path, study="fs",
    )  # fmt: skip
    assert not [t for t in result.study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert {r["state"] for r in rows(tmp_path / "fs")} <= {"COMPLETE", "INFEASIBLE", "SCREENED", "FAIL"}
    report = (tmp_path / "fs" / "report.md").read_text()
    assert "WAITING" not in report
    assert "| best proxy score (trial" in report and "most accurate" not in report


@pytest.mark.parametrize(
    ("baseline_ms", "found_ms", "expected"),
    [
        (0.1605, 0.1397, "cuts latency by 13% (0.1605 -> 0.1397 ms"),
        (0.1397, 0.1605, "15% slower (0.1397 -> 0.1605 ms"),
        (0.2, 0.2, "as fast as the baseline"),
    ],
)
def test_the_report_states_the_latency_change_with_its_sign(baseline_ms, found_ms, expected):
    sentence = latency_change("val acc", baseline_ms, found_ms, "sim-npu-p32")
    assert expected in sentence and "-1" not in sentence


def test_the_terminal_shows_no_optuna_trial_lines_even_verbose(tmp_path, capfd):
    assert main(["-v", *SEARCH, "--mode", "zeroshot", "--trials", "3", "--results-dir", str(tmp_path)]) == 0
    err = capfd.readouterr().err
    assert "finished with value" not in err and "Trial 0" not in err and "Traceback" not in err


def test_optuna_failure_records_of_failed_candidates_are_dropped_others_kept():
    import logging

    from nas.cli.search import _FailedCandidateFilter
    from nas.search.objective import CandidateFailed

    def record(error: BaseException) -> logging.LogRecord:
        message = f"Trial 3 failed with parameters: {{}} because of the following error: {error!r}."
        return logging.LogRecord("optuna.study._optimize", logging.WARNING, __file__, 1, message, None, (
            type(error), error, None))  # fmt: skip

    keep = _FailedCandidateFilter().filter
    assert not keep(record(CandidateFailed("RuntimeError: out of memory")))
    assert keep(record(KeyError("a bug edgenas did not catch")))


@pytest.mark.parametrize("name", ["trials.csv", "report.md", "pareto.json"])
def test_a_failed_write_keeps_the_previous_result_file_whole(tmp_path, name):
    from nas.search import SearchError

    options = {"space": SPACE, "device": "sim-npu-p32", "dataset": "digits", "mode": "zeroshot", "baseline": False}
    run_search(**options, trials=1, results_dir=tmp_path, study="atomic")
    folder = tmp_path / "atomic"
    before = (folder / name).read_bytes()
    (folder / f".{name}.{os.getpid()}.tmp").mkdir()  # the temporary file cannot be created: a real OSError
    with pytest.raises(SearchError, match=f"{name}: cannot write it .*the previous copy is kept"):
        run_search(**options, trials=2, results_dir=tmp_path, study="atomic")
    assert (folder / name).read_bytes() == before
