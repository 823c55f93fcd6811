"""Search hardening: exactly N trials with many workers, honest reports, a quiet terminal."""

from __future__ import annotations

import os

import optuna
import pytest

from nas.cli.main import main
from nas.search import run_search
from nas.search.counting import tally
from nas.search.report import latency_change
from search_spaces import shipped_space_path
from tests.search_helpers import finish_workers, load_journal_study, read_rows, start_worker

pytestmark = pytest.mark.usefixtures("use_small_sim_estimator")
SPACE = str(shipped_space_path("fused_ibn"))
SEARCH = ["search", "--space", SPACE, "--device", "sim-npu-p32", "--dataset", "digits", "--no-baseline"]


WORKER = """
import sys
from nas.search import run_search
run_search(space=sys.argv[1], device="sim-npu-p32", dataset="digits", study="jw", trials=int(sys.argv[2]),
           mode="zeroshot", strategy="random", baseline=False, seed=int(sys.argv[3]), storage=sys.argv[4],
           results_dir=sys.argv[5])
"""


def test_three_journal_workers_stop_at_exactly_the_target(tmp_path):
    journal, trials = tmp_path / "study.log", 12
    args = [SPACE, str(trials)]
    finish_workers([start_worker(WORKER, *args, str(seed), str(journal), str(tmp_path)) for seed in (0, 1, 2)], 300)
    study = load_journal_study(journal, "jw")
    assert tally(study.trials).evaluated == trials
    # Free proposals (duplicates; SURPLUS: a claim the others had filled) are trials too, listed, never evaluated.
    listed = read_rows(tmp_path / "jw")
    assert len(listed) == len(study.trials)
    assert sum(r["evaluated"] == "1" for r in listed) == trials
    assert all(r["evaluated"] == "0" and not r["proxy_score"] for r in listed if r["state"] == "SURPLUS")
    evaluated_archs = [r["arch_id"] for r in listed if r["evaluated"] == "1"]
    assert len(set(evaluated_archs)) == trials  # no architecture evaluated twice
    assert f"Budget: {trials} of {trials} evaluations" in (tmp_path / "jw" / "report.md").read_text()


def test_the_feasible_start_leaves_no_waiting_trial_and_zeroshot_rows_say_proxy(tmp_path):
    result = run_search(
        space=SPACE, device="sim-npu-p32", dataset="digits", mode="zeroshot", trials=2, population_size=6,
        latency_budget_ms=0.5, results_dir=tmp_path, study="fs",
    )  # fmt: skip
    assert not [t for t in result.study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert {r["state"] for r in read_rows(tmp_path / "fs")} <= {"COMPLETE", "INFEASIBLE", "SCREENED", "FAIL"}
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
