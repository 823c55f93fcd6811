"""What a search pays for, and the one place that decides whether a worker goes on.

``--trials N`` is N *evaluations*: candidates trained (multishot, hybrid;
pruned ones included, since their training ran) or scored by the proxy
(zeroshot), and candidates that failed while being evaluated. Every other
trial is a free *proposal*: a budget breaker (INFEASIBLE), the same
architecture again (duplicate) or a candidate the proxy screened out
(SCREENED). They are recorded and told to the sampler, so it learns from
them, but they cost nothing from N.

A space whose budgets admit almost nothing would make free proposals
forever; :func:`proposals_exhausted` ends such a search once it has made
``max_proposals_per_evaluation`` proposals for every evaluation it got (and
one more evaluation's worth). A space small enough to enumerate that holds
only K <= N feasible networks has all K queued instead, and its target is K
(:func:`evaluation_target`, from the study attribute ``FEASIBLE_IN_SPACE_ATTR``).

Exactly N with many workers on one study (journal file, SQLite, PostgreSQL):

* a worker about to evaluate first records a claim on its trial
  (:func:`claim_evaluation`) and reads the study back; when the evaluations
  finished, claimed by other running trials, or owed to interrupted trials'
  retries already fill N, or another trial has evaluated or claimed the same
  architecture (two workers proposing it at once), it withdraws the claim and
  the trial is recorded as SURPLUS, unevaluated and free. This is the only
  place a trial is refused its evaluation;
* after every trial, a worker asks :func:`may_go_on`: it goes on while the
  evaluations finished or claimed are short of N, or a retry waits; when
  other workers' claimed trials fill N it waits for them, so that it neither
  stops before one of them dies (its retry must still run) nor proposes a
  trial that could only be SURPLUS.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "CLAIM_ATTR",
    "EVALUATED_OUTCOMES",
    "FEASIBLE_IN_SPACE_ATTR",
    "POLL_S",
    "Tally",
    "claim_evaluation",
    "committed",
    "counts_toward_budget",
    "evaluation_target",
    "holds_claim",
    "may_go_on",
    "pending_retries",
    "proposals_exhausted",
    "tally",
]

logger = logging.getLogger(__name__)

# The outcomes that used an evaluation: trained to the end, pruned mid-training, failed while evaluated.
EVALUATED_OUTCOMES = ("COMPLETE", "PRUNED", "FAIL")
CLAIM_ATTR = "evaluation_claim"  # True on a trial before its evaluation starts; False once withdrawn (SURPLUS)
# Study attribute: how many distinct networks of the (enumerated) space meet the budgets; absent when not enumerated.
FEASIBLE_IN_SPACE_ATTR = "feasible_in_space"
POLL_S = 0.5  # how often a waiting worker reads the study (one small query)
# A trial failed by a liveness check gets its retry queued in the next write; one failed longer ago whose retry never
# came (its worker died in between) owes none, so that it cannot hold the study open for ever.
RETRY_QUEUE_S = 60.0


def evaluation_target(study: optuna.Study, trials: int) -> int:
    """The study's evaluations: ``trials`` (N), or K when its space holds only K < N feasible networks."""
    return min(trials, int(study.user_attrs.get(FEASIBLE_IN_SPACE_ATTR, trials)))


def holds_claim(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get(CLAIM_ATTR) is True


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """True for a finished trial that used one of the study's N evaluations."""
    attrs = trial.user_attrs
    return (
        trial.state.is_finished()
        and attrs.get("outcome") in EVALUATED_OUTCOMES
        and "duplicate_of" not in attrs
        and (attrs.get("outcome") != "FAIL" or holds_claim(trial))
    )


@dataclass(frozen=True)
class Tally:
    """The study's trials by what they cost: ``evaluated`` counts toward N, the others are free."""

    proposals: int  # finished trials with an edgenas outcome
    evaluated: int
    infeasible: int
    duplicates: int
    screened: int
    failed: int  # evaluated, but the candidate failed (build error, divergence, out of memory)

    def describe(self) -> str:
        return (
            f"{self.proposals:,} proposals: {self.evaluated:,} evaluated ({self.failed} failed), "
            f"{self.infeasible:,} infeasible, {self.duplicates:,} duplicates, {self.screened:,} screened"
        )


def tally(trials: Iterable[FrozenTrial]) -> Tally:
    proposals = evaluated = infeasible = duplicates = screened = failed = 0
    for trial in trials:
        outcome = trial.user_attrs.get("outcome")
        if outcome is None or not trial.state.is_finished() or outcome == "SURPLUS":
            continue
        proposals += 1
        if counts_toward_budget(trial):
            evaluated += 1
            failed += outcome == "FAIL"
        elif "duplicate_of" in trial.user_attrs:
            duplicates += 1
        elif outcome == "INFEASIBLE":
            infeasible += 1
        elif outcome == "SCREENED":
            screened += 1
    return Tally(proposals, evaluated, infeasible, duplicates, screened, failed)


def proposals_exhausted(counts: Tally, max_proposals_per_evaluation: int) -> bool:
    """More than ``max_proposals_per_evaluation`` proposals per evaluation so far (plus one evaluation's worth)."""
    return counts.proposals >= max_proposals_per_evaluation * (counts.evaluated + 1)


def _is_retry(trial: FrozenTrial) -> bool:
    return "failed_trial" in trial.system_attrs


def _just_interrupted(trial: FrozenTrial, now: datetime.datetime) -> bool:
    """Failed by a liveness check (no outcome: its worker died) under ``RETRY_QUEUE_S`` ago, with an architecture
    to retry, and not a retry itself: its retry is about to be queued."""
    return (
        trial.state == TrialState.FAIL
        and "outcome" not in trial.user_attrs
        and bool(trial.params)
        and not _is_retry(trial)
        and trial.datetime_complete is not None
        and (now - trial.datetime_complete).total_seconds() < RETRY_QUEUE_S
    )


def pending_retries(trials: Iterable[FrozenTrial]) -> int:
    """Interrupted architectures owed their one retry: queued (WAITING), or failed a moment ago and about to be
    queued (the liveness check fails the trial, then queues its retry in a second write; a claim read between
    the two must still leave the retry its evaluation)."""
    trials = list(trials)
    retried = {t.system_attrs["failed_trial"] for t in trials if _is_retry(t)}
    waiting = sum(t.state == TrialState.WAITING and _is_retry(t) for t in trials)
    now = datetime.datetime.now()
    return waiting + sum(_just_interrupted(t, now) and t.number not in retried for t in trials)


def _committed(trial: FrozenTrial) -> bool:
    """An evaluation finished or under way: a running trial holding a claim, or a running retry (a retry always
    gets its evaluation, and is seen before it has written its claim)."""
    running = trial.state == TrialState.RUNNING
    return counts_toward_budget(trial) or (running and (holds_claim(trial) or _is_retry(trial)))


def committed(trials: Iterable[FrozenTrial]) -> int:
    """Evaluations finished plus those under way."""
    return sum(map(_committed, trials))


def claim_evaluation(trial: optuna.Trial, target: int) -> str | None:
    """Claim one of the study's ``target`` evaluations for ``trial``: None when it holds, otherwise the reason
    it was withdrawn (all evaluations taken, or the same architecture evaluated or under way on another trial).

    The retry of an interrupted trial always gets its evaluation: the one it
    replaces never counted, and a resumed run gives every interrupted
    architecture its retry even when the target is reached.

    The claim is written first (after the trial's ``arch_id``), then the study
    is read back: evaluations finished, the other running trials' claims
    (whatever their number) and the queued retries. Of several claims made at
    once, the one read last sees all the others, so the claims that go on
    never take the study past ``target`` and never evaluate one architecture
    twice; two that see each other both back off, and their workers propose
    again.
    """
    trial.set_user_attr(CLAIM_ATTR, True)
    others = []
    for other in trial.study.get_trials(deepcopy=False):
        if other.number != trial.number:
            others.append(other)
        elif _is_retry(other):
            return None
    arch_id = trial.user_attrs.get("arch_id")
    twin = next((t for t in others if arch_id and t.user_attrs.get("arch_id") == arch_id and _committed(t)), None)
    if twin is not None:
        reason = f"same architecture as trial {twin.number}, evaluated or under way on another worker"
    elif committed(others) + pending_retries(others) >= target:
        reason = f"the study's {target} evaluations are taken (done or under way)"
    else:
        return None
    trial.set_user_attr(CLAIM_ATTR, False)  # so that claims made meanwhile do not count it
    return reason + "; not evaluated"


def may_go_on(
    study: optuna.Study,
    *,
    target: int,
    recover: Callable[[], object],
    max_wait_s: float | None = None,
    poll_s: float = POLL_S,
) -> bool:
    """True when this worker may start another trial; False when the study holds (or is about to hold) ``target``.

    A queued retry always runs. While other workers' claimed trials fill the
    target, this waits: one that finishes fills it (False); one whose worker
    died is failed by ``recover`` (the liveness check, Optuna's heartbeat)
    and its retry queued (True: run it). After ``max_wait_s`` (None: no
    limit) it gives up (False), which a journal file needs: it has no
    heartbeat, so a worker lost on another machine leaves its trial RUNNING.
    """
    deadline = None if max_wait_s is None else time.monotonic() + max_wait_s
    waited = False
    while True:
        recover()
        trials = study.get_trials(deepcopy=False)
        if pending_retries(trials):
            return True
        done = sum(map(counts_toward_budget, trials))
        if done >= target:
            return False
        if committed(trials) < target:
            return True
        if deadline is not None and time.monotonic() > deadline:
            logger.warning("other workers' claimed trials fill the target of %d; this worker stops", target)
            return False
        if not waited:
            logger.info("%d of %d evaluations done, the rest under way on other workers: waiting", done, target)
            waited = True
        time.sleep(poll_s)
