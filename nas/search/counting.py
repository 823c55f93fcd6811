"""What a search pays for: the study's trials counted as proposals, and the evaluations among them.

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
one more evaluation's worth).

Several workers reach exactly N: a worker about to evaluate first records a
claim on its trial (:func:`claim_evaluation`); the claims are ranked by
trial number, and a claim beyond the N-th backs off unevaluated (outcome
SURPLUS, free); its worker stops once the study holds N evaluations finished
or under way (:func:`committed`) and no interrupted trial waits for its retry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "CLAIM_ATTR",
    "EVALUATED_OUTCOMES",
    "Tally",
    "claim_evaluation",
    "committed",
    "counts_toward_budget",
    "proposals_exhausted",
    "tally",
]

# The outcomes that used an evaluation: trained to the end, pruned mid-training, failed while evaluated.
EVALUATED_OUTCOMES = ("COMPLETE", "PRUNED", "FAIL")
CLAIM_ATTR = "evaluation_claim"  # set on a trial before its evaluation starts


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """True for a finished trial that used one of the study's N evaluations."""
    attrs = trial.user_attrs
    return (
        trial.state.is_finished()
        and attrs.get("outcome") in EVALUATED_OUTCOMES
        and "duplicate_of" not in attrs
        and (attrs.get("outcome") != "FAIL" or CLAIM_ATTR in attrs)
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


def committed(trials: Iterable[FrozenTrial]) -> int:
    """Evaluations finished plus those under way (running trials holding a claim): what a worker stops at."""
    return sum(
        counts_toward_budget(t) or (t.state == TrialState.RUNNING and CLAIM_ATTR in t.user_attrs) for t in trials
    )


def claim_evaluation(trial: optuna.Trial, target: int) -> bool:
    """Claim one of the study's ``target`` evaluations for ``trial``; False when all are taken.

    The retry of an interrupted trial always gets its evaluation: the one it
    replaces never counted, and a resumed run gives every interrupted
    architecture its retry even when the target is reached.

    The claim is written first, then the claims are read back: the finished
    evaluations plus the running trials holding a claim with a lower number.
    Two workers claiming at once both see both claims, and only the lower
    number goes on, so the study ends with exactly ``target`` evaluations.
    """
    trial.set_user_attr(CLAIM_ATTR, True)
    ahead = 0
    for other in trial.study.get_trials(deepcopy=False):
        if other.number == trial.number:
            if "failed_trial" in other.system_attrs:
                return True
            continue
        claimed = other.state == TrialState.RUNNING and CLAIM_ATTR in other.user_attrs and other.number < trial.number
        ahead += counts_toward_budget(other) or claimed
    return ahead < target
