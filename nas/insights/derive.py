"""A narrower search space derived from a search's Pareto front, as a commented YAML file.

Rule, per searched parameter: a choice that was tried (at least
``min_tried`` times) and is on no Pareto architecture is dropped; with
``min_share > 0`` a choice on fewer than that share of the Pareto
architectures is dropped too. Everything else is kept, so with the default
``min_share=0`` the derived space contains every Pareto architecture of the
source study. Choices tried too rarely to judge are kept, and say so.

The file is the source space's own file, rewritten in round-trip mode
(:class:`search_spaces.roundtrip.SpaceDocument`): its comments and key order
stay, each narrowed choice list gets a comment citing its evidence, and the
header says where the space came from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nas.insights.stats import ChoiceUsage, choice_usage
from nas.insights.study import InsightsError
from search_spaces import ArchConfig, SearchSpace
from search_spaces.roundtrip import SpaceDocument

__all__ = ["ChoiceDecision", "DerivedSpace", "decide_choices", "derive_space"]

logger = logging.getLogger(__name__)

Choice = int | float | str


@dataclass(frozen=True)
class ChoiceDecision:
    """What happened to one searched parameter's choices, and why."""

    name: str
    kept: tuple[Choice, ...]
    dropped: tuple[Choice, ...]
    evidence: str

    @property
    def narrowed(self) -> bool:
        return bool(self.dropped)


@dataclass(frozen=True)
class DerivedSpace:
    document: SpaceDocument  # the source file with narrowed choices and evidence comments; ``save`` it
    space: SearchSpace  # the derived space, validated, at the study's P
    source: SearchSpace
    decisions: tuple[ChoiceDecision, ...]  # every searched parameter of the source
    excluded: tuple[str, ...]  # Pareto architecture ids the derived space no longer contains (min_share > 0 only)

    @property
    def narrowed(self) -> list[ChoiceDecision]:
        return [d for d in self.decisions if d.narrowed]


def decide_choices(
    usage: Mapping[str, ChoiceUsage], *, min_share: float = 0.0, min_tried: int = 2
) -> list[ChoiceDecision]:
    """Keep or drop each choice of each searched parameter (see the module docstring)."""
    if not 0.0 <= min_share < 1.0:
        raise InsightsError(f"`0 <= min_share < 1` must hold, but got min_share={min_share}")
    if min_tried < 1:
        raise InsightsError(f"`min_tried >= 1` must hold, but got min_tried={min_tried}")
    return [_decide(item, min_share, min_tried) for item in usage.values() if item.searched]


def _decide(item: ChoiceUsage, min_share: float, min_tried: int) -> ChoiceDecision:
    def judged_out(choice: Choice) -> bool:
        if item.tried[choice] < min_tried:
            return False
        return item.pareto[choice] == 0 or item.pareto[choice] / item.n_pareto < min_share

    dropped = [c for c in item.choices if judged_out(c)]
    if len(dropped) == len(item.choices):  # only with min_share: keep the front's favourite
        dropped.remove(max(item.choices, key=lambda c: item.pareto[c]))
    kept = tuple(c for c in item.choices if c not in dropped)
    return ChoiceDecision(name=item.name, kept=kept, dropped=tuple(dropped), evidence=_evidence(item, dropped))


def _evidence(item: ChoiceUsage, dropped: list[Choice]) -> str:
    n = item.n_pareto
    parts = []
    if dropped:
        each = ", ".join(f"{_short(c)} ({item.pareto[c]} of {n} Pareto, tried {item.tried[c]}x)" for c in dropped)
        parts.append(f"dropped {each}")
    unjudged = [c for c in item.choices if c not in dropped and item.pareto[c] == 0]
    if unjudged:
        each = ", ".join(f"{_short(c)} (tried {item.tried[c]}x)" for c in unjudged)
        parts.append(f"kept for lack of evidence {each}")
    return "; ".join(parts)


# Fewer Pareto architectures than this say little about which choices matter: the derived space says so.
THIN_EVIDENCE_PARETO = 5


def thin_evidence(n_pareto: int) -> str:
    return (
        f"The evidence is thin: {n_pareto} Pareto architecture(s) (fewer than {THIN_EVIDENCE_PARETO}); "
        "run the study longer before trusting the narrowing"
    )


def derive_space(
    *,
    space_path: str | Path,
    space: SearchSpace,
    pareto: Sequence[ArchConfig],
    tried: Sequence[Mapping[str, Choice]],
    study: str,
    name: str,
    min_share: float = 0.0,
    min_tried: int = 2,
    notes: Mapping[str, str] | None = None,
) -> DerivedSpace:
    """Narrow ``space`` (loaded from ``space_path``, at the study's P) to what its Pareto front uses.

    ``tried``: the points of every evaluated candidate; ``notes``: extra
    evidence per parameter name (e.g. the latency effect of fusing a stage).
    """
    if not pareto:
        raise InsightsError(f"study {study!r} has no Pareto architecture yet; nothing to derive a space from")
    decisions = decide_choices(
        choice_usage(space, pareto=pareto, tried=tried), min_share=min_share, min_tried=min_tried
    )
    document = SpaceDocument.load(space_path)
    _edit(document, space, decisions, study=study, name=name, notes=notes or {}, n_pareto=len(pareto))
    derived = document.space(parallelism_factor=space.parallelism_factor)
    excluded = tuple(arch.arch_id for arch in pareto if not derived.contains(arch))
    if excluded and min_share == 0.0:
        raise InsightsError(f"derived space lost Pareto architectures {list(excluded)}; this is a bug")
    if excluded:
        logger.warning("min_share=%s drops %d Pareto architecture(s) from the space", min_share, len(excluded))
    return DerivedSpace(document=document, space=derived, source=space, decisions=tuple(decisions), excluded=excluded)


def _edit(
    document: SpaceDocument,
    space: SearchSpace,
    decisions: list[ChoiceDecision],
    *,
    study: str,
    name: str,
    notes: Mapping[str, str],
    n_pareto: int,
) -> None:
    narrowed = [d for d in decisions if d.narrowed]
    document.set_scalar("name", name)
    document.set_scalar(
        "description",
        f"{space.name} narrowed to the Pareto front of study {study} ({len(narrowed)} parameter(s) narrowed)",
    )
    header = [
        f"Derived by `edgenas space derive` from {_shown(space.source)} and study {study} "
        f"({n_pareto} Pareto architecture(s)).",
        "Choices tried but never on the Pareto front were dropped; each narrowing below cites its evidence.",
        "Edit freely: `edgenas space validate` checks the file, `edgenas space diff` compares it with its source.",
    ]
    if n_pareto < THIN_EVIDENCE_PARETO:
        header.append(thin_evidence(n_pareto) + ".")
    if document.data.get("parallelism_factor") != space.parallelism_factor:
        document.set_scalar("parallelism_factor", space.parallelism_factor)
        header.append(f"parallelism_factor set to the study device's P={space.parallelism_factor}.")
    document.add_header("\n".join(header))
    for decision in decisions:
        note = notes.get(decision.name, "")
        if decision.narrowed:
            text = f"{decision.name}: {decision.evidence}" + (f" ({note})" if note else "")
            document.set_choices(decision.name, decision.kept, comment=f"study {study}: {text}")
        elif decision.evidence:
            document.add_comment(decision.name, f"study {study}: {decision.name}: {decision.evidence}")


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _short(value: Choice) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
