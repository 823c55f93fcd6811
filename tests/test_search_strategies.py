"""The search budget is evaluations, and every strategy keeps to it: one contract, run by each strategy.

Real components: the sim-npu-p32 estimator (built small), SQLite and journal storages, the params proxy
(zeroshot, so a candidate costs milliseconds) and, for hybrid, real training on a few digits images.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nas.search import STRATEGIES, ProposalsExhausted, run_search
from nas.search.counting import tally
from search_spaces import shipped_space_path
from tests.search_helpers import BUDGETS, evaluated_rows, finish_workers, read_rows, start_worker, within_budgets

pytestmark = pytest.mark.usefixtures("use_small_sim_estimator")
BASE = {
    "space": shipped_space_path("combined"),
    "device": "sim-npu-p32",
    "dataset": "digits",
    "population_size": 4,
    "proxy": "params",
    "baseline": False,
    "feasible_start": False,  # the sampler itself proposes from the first trial
    **BUDGETS,
}


def wait_for_study(journal: Path, timeout_s: float = 300.0) -> None:
    """Until the first worker has created the study and recorded its settings in the journal."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if journal.exists() and "edgenas.settings" in journal.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise AssertionError(f"no study in {journal} after {timeout_s:.0f} s")


# Looser than BUDGETS: about 1 random proposal in 7 meets them, not 1 in 25 (433 and 1,458 proposals for 60 evaluations
# on the shipped estimator), so that GP's proposals (a second each, several under load) do not make this test slow.
CONTRACT_BUDGETS = {"latency_budget_ms": 0.45, "max_params": 900_000, "max_peak_memory_kb": 512}
WORKER = f"""
import sys
from nas.search import run_search
from search_spaces import shipped_space_path
run_search(space=shipped_space_path("combined"), device="sim-npu-p32", dataset="digits", mode="zeroshot",
           proxy="params", baseline=False, feasible_start=False, population_size=4, **{CONTRACT_BUDGETS!r},
           trials=4, strategy=sys.argv[1], study="two", storage=sys.argv[2], results_dir=sys.argv[3],
           seed=int(sys.argv[4]))
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_keeps_the_budgets_shares_a_journal_and_resumes(tmp_path, strategy):
    """Two workers on one journal file reach exactly the study's N; a resumed run then exactly the new N."""
    journal = tmp_path / "two.log"
    workers = []
    for seed in (1, 2):
        workers.append(start_worker(WORKER, strategy, str(journal), str(tmp_path), str(seed)))
        wait_for_study(journal)  # two workers creating one new study at once is issue 17's race, not this test's
    finish_workers(workers, timeout_s=900)
    first = evaluated_rows(tmp_path / "two")
    assert len(first) == 4 and all(within_budgets(r, CONTRACT_BUDGETS) and r["state"] == "COMPLETE" for r in first)

    options = {**BASE, **CONTRACT_BUDGETS, "mode": "zeroshot", "strategy": strategy}
    again = run_search(**options, trials=6, study="two", storage=str(journal), results_dir=tmp_path)
    assert tally(again.study.get_trials()).evaluated == 6
    rows = evaluated_rows(tmp_path / "two")
    # the resumed study kept what it had
    assert rows[:4] == first and all(within_budgets(r, CONTRACT_BUDGETS) for r in rows)


def test_screened_and_infeasible_proposals_are_free_and_a_resumed_study_reaches_exactly_n(tmp_path):
    training = {"epochs": 1, "train_limit": 64, "batch_size": 16, "pruner": "none"}
    options = {**BASE, **training, "mode": "hybrid", "screen_ratio": 2, "strategy": "random"}
    run_search(**options, trials=2, study="hy", results_dir=tmp_path)
    rows = read_rows(tmp_path / "hy")
    free = [r for r in rows if r["state"] in ("SCREENED", "INFEASIBLE")]
    assert free, "random proposals under these budgets include budget breakers and screened candidates"
    assert all(r["evaluated"] == "0" and not r["val_accuracy"] for r in free)
    trained = [r for r in rows if r["evaluated"] == "1"]
    assert len(trained) == 2 and all(r["val_accuracy"] and within_budgets(r) for r in trained)
    report = (tmp_path / "hy" / "report.md").read_text()
    assert f"Budget: 2 of 2 evaluations (2 trained) from {len(rows)} proposals" in report

    run_search(**options, trials=3, study="hy", results_dir=tmp_path)
    assert len(evaluated_rows(tmp_path / "hy")) == 3


def test_budgets_that_admit_almost_nothing_stop_with_one_line(tmp_path):
    """Random proposals under a budget a few % of the space meets: N evaluations, or a one-line stop."""
    tight = {**BASE, "max_params": 250_000, "strategy": "random"}
    try:
        result = run_search(
            **tight, mode="zeroshot", trials=20, max_proposals_per_evaluation=3, study="tight", results_dir=tmp_path
        )
    except ProposalsExhausted as exc:
        message = str(exc)
        assert exc.result.study.trials  # the study so far comes with the error
        assert "\n" not in message and "proposals" in message and "admit almost nothing" in message
        counts = len(evaluated_rows(tmp_path / "tight"))
        assert counts < 20 and len(read_rows(tmp_path / "tight")) >= 3 * (counts + 1)
    else:
        assert tally(result.study.get_trials()).evaluated == 20


@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_a_space_holding_fewer_feasible_networks_than_n_evaluates_each_once_and_stops(tmp_path, strategy, caplog):
    """fused_ibn.yaml holds 64 networks; under a latency budget that about 10 of them meet, a search of 20 evaluates
    exactly those (each once), says so in one line and in report.md, and a resumed run of 30 adds none."""
    from nas.search.budgets import Budgets, every_feasible_arch
    from nas.search.runner import estimator_for
    from search_spaces import load_space

    latency_fn, dtype_bytes, factor = estimator_for("sim-npu-p32")
    space = load_space(shipped_space_path("fused_ibn"), parallelism_factor=factor)
    everything = every_feasible_arch(space, Budgets(), latency_fn, dtype_bytes=dtype_bytes)
    assert everything is not None and len(everything) == len({a.arch_id for a in everything}) > 20
    budget = float(latency_fn(everything[9:10])[0])
    feasible = every_feasible_arch(space, Budgets(latency_ms=budget), latency_fn, dtype_bytes=dtype_bytes)
    assert 10 <= len(feasible) < 20

    options = {
        "space": shipped_space_path("fused_ibn"),
        "device": "sim-npu-p32",
        "dataset": "digits",
        "mode": "zeroshot",
        "proxy": "params",
        "baseline": False,
        "latency_budget_ms": budget,
        "strategy": strategy,
        "population_size": 4,
        "study": "few",
        "results_dir": tmp_path,
    }
    result = run_search(**options, trials=20)
    rows = evaluated_rows(tmp_path / "few")
    assert sorted(r["arch_id"] for r in rows) == sorted(a.arch_id for a in feasible)
    assert tally(result.study.get_trials()).proposals < 200  # it stopped, not ran out of proposals
    assert f"holds only {len(feasible)} distinct networks" in caplog.text
    report = (tmp_path / "few" / "report.md").read_text()
    assert f"| target evaluations (--trials) | {len(feasible)} of 20 asked" in report
    assert f"Budget: {len(feasible)} of {len(feasible)} evaluations" in report

    run_search(**options, trials=30)
    assert len(evaluated_rows(tmp_path / "few")) == len(feasible)


def test_only_a_small_space_is_enumerated():
    from nas.search.budgets import Budgets, every_feasible_arch
    from search_spaces import load_space

    space = load_space(shipped_space_path("combined"), parallelism_factor=32)
    assert every_feasible_arch(space, Budgets(), lambda archs: [0.0] * len(archs), dtype_bytes=1) is None
