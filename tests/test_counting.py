"""Exactly N evaluations with many workers: claims, and whether a worker goes on, on real Optuna storages."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import optuna
import psutil
import pytest
from optuna.trial import TrialState, create_trial

from nas.search.counting import CLAIM_ATTR, claim_evaluation, committed, holds_claim, may_go_on, pending_retries
from nas.search.resume import WORKER_ATTR, recover_interrupted, retry_interrupted


@pytest.fixture(params=["sqlite", "journal"])
def study(request, tmp_path) -> optuna.Study:
    if request.param == "sqlite":
        storage = f"sqlite:///{tmp_path / 'study.db'}"
    else:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.log")))
    return optuna.create_study(storage=storage, directions=["maximize", "minimize"])


def add_evaluation(study: optuna.Study) -> None:
    study.add_trial(
        create_trial(state=TrialState.COMPLETE, values=[0.5, 1.0], user_attrs={"outcome": "COMPLETE", CLAIM_ATTR: True})
    )


def started(study: optuna.Study) -> optuna.Trial:
    """A trial past its choice of architecture, as a worker runs it."""
    trial = study.ask()
    trial.suggest_int("x", 0, 99)
    return trial


def test_a_claim_read_first_keeps_its_evaluation_whatever_the_trial_numbers(study):
    add_evaluation(study)
    first, second = started(study), started(study)
    assert claim_evaluation(second, target=2) is None
    assert claim_evaluation(first, target=2) is not None  # the lower number claimed last: the study holds 2 already
    trials = study.get_trials()
    assert not holds_claim(trials[first.number]) and holds_claim(trials[second.number])
    assert committed(trials) == 2


def test_claims_made_at_once_never_take_the_study_past_its_target(study):
    first, second = started(study), started(study)
    first.set_user_attr(CLAIM_ATTR, True)  # written, not yet read back
    assert claim_evaluation(second, target=1) is not None  # sees the other claim: backs off, withdrawing its own
    assert claim_evaluation(first, target=1) is None  # reads back: the other claim is withdrawn
    assert committed(study.get_trials()) == 1


def test_two_workers_claiming_one_architecture_evaluate_it_once(study):
    first, second = started(study), started(study)
    for trial in (first, second):
        trial.set_user_attr("arch_id", "same")  # proposed at once: neither finished when the other looked
    assert claim_evaluation(first, target=5) is None
    refusal = claim_evaluation(second, target=5)
    assert refusal is not None and f"same architecture as trial {first.number}" in refusal
    assert committed(study.get_trials()) == 1
    other = started(study)
    other.set_user_attr("arch_id", "another")
    assert claim_evaluation(other, target=5) is None


def interrupt(study: optuna.Study, trial: optuna.Trial) -> None:
    study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    retry_interrupted(study, study._storage.get_trial(trial._trial_id))


def test_a_retry_always_gets_its_evaluation_and_is_owed_one_while_queued(study):
    add_evaluation(study)
    interrupted, newcomer = started(study), started(study)
    assert claim_evaluation(interrupted, target=2) is None
    interrupt(study, interrupted)
    assert pending_retries(study.get_trials()) == 1
    assert claim_evaluation(newcomer, target=2) is not None  # the queued retry takes the second evaluation
    # While the retry waits, a worker goes on (to run it), even with the target reached.
    assert may_go_on(study, target=1, recover=lambda: None)
    retry = study.ask()  # Optuna runs the queued retry first
    assert retry.params == interrupted.params and claim_evaluation(retry, target=1) is None  # even past the target


def dead_worker() -> dict[str, object]:
    """A worker record of a process of this host that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    record = {"host": socket.gethostname(), "pid": process.pid, "started": psutil.Process(process.pid).create_time()}
    process.wait()
    return record


def test_a_worker_waiting_for_a_dead_workers_claim_runs_its_retry(study):
    add_evaluation(study)
    orphan = started(study)
    assert claim_evaluation(orphan, target=2) is None
    orphan.set_user_attr(WORKER_ATTR, dead_worker())
    # The orphan's claim fills the target: without the liveness check this worker would wait, then stop short.
    assert may_go_on(study, target=2, recover=lambda: recover_interrupted(study, study._storage), max_wait_s=60)
    trials = study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL and pending_retries(trials) == 1


def test_a_worker_waits_for_other_workers_claimed_trials_and_stops_when_they_fill_the_target(study):
    add_evaluation(study)
    other = started(study)
    assert claim_evaluation(other, target=2) is None

    def finish() -> None:
        other.set_user_attr("outcome", "COMPLETE")
        study.tell(other, [0.6, 0.9])

    timer = threading.Timer(0.5, finish)
    timer.start()
    try:
        assert not may_go_on(study, target=2, recover=lambda: None, poll_s=0.05)
    finally:
        timer.join()
    assert study.get_trials()[other.number].state == TrialState.COMPLETE  # it waited for the other trial


def test_a_worker_goes_on_when_the_claims_fall_short_and_gives_up_waiting_after_max_wait(study):
    add_evaluation(study)
    assert may_go_on(study, target=2, recover=lambda: None)
    assert not may_go_on(study, target=1, recover=lambda: None)
    lost = started(study)  # a worker on another machine, lost mid-evaluation: a journal file never notices
    assert claim_evaluation(lost, target=2) is None
    assert not may_go_on(study, target=2, recover=lambda: None, max_wait_s=0.2, poll_s=0.05)
