"""A finished (or running) search, read back from ``results/<study>/`` and its Optuna storage.

``pareto.json`` names the study and its settings; the trials come from the
storage (default ``results/<study>/study.db``; ``storage`` overrides it, e.g.
when the search used ``--storage``). The search space is reloaded at the
device's parallelism factor P, as the search loaded it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search import ParetoPoint, pareto_front
from nas.search.results import BASELINE_ATTR
from nas.search.storage_url import is_masked, is_rdb_url, mask_url, resolve_rdb_url
from nas.task_metrics import TaskMetric, first_objective_column, task_metric
from search_spaces import SPACES_DIR, ArchConfig, SearchSpace, load_space
from search_spaces.documents import read_document
from search_spaces.errors import EdgeNasError

__all__ = ["EVALUATED", "InsightsError", "StudyRecord", "TrialRecord", "open_study_record"]

logger = logging.getLogger(__name__)

# edgenas outcomes of a candidate whose latency was estimated (every one but FAIL).
EVALUATED = ("COMPLETE", "INFEASIBLE", "SCREENED", "PRUNED")


class InsightsError(EdgeNasError):
    """A results folder or study that cannot be analysed, derived from or warm-started from."""


@dataclass(frozen=True)
class TrialRecord:
    """One candidate of the study, as edgenas recorded it."""

    number: int
    arch: ArchConfig
    outcome: str  # COMPLETE, INFEASIBLE, SCREENED, PRUNED or FAIL
    value: float | None  # first objective (accuracy, mAP or mIoU; the proxy in zeroshot) when outcome is COMPLETE
    latency_ms: float | None
    trial: FrozenTrial  # its searched parameters and their distributions


@dataclass(frozen=True)
class StudyRecord:
    folder: Path
    name: str
    settings: dict[str, Any]
    space_path: Path
    space: SearchSpace  # at the device's P, as the search loaded it
    value_name: str  # name of the first objective: val_accuracy / val_map / val_miou, or proxy_<name> in zeroshot
    trials: tuple[TrialRecord, ...]
    pareto: tuple[ParetoPoint, ...]  # feasible, non-dominated, one per architecture, by latency
    baseline: dict[str, Any] | None
    study: optuna.Study

    @property
    def device(self) -> str:
        return str(self.settings["device"])

    @property
    def task(self) -> str:
        return self.space.task

    @property
    def metric(self) -> TaskMetric:
        """The task's score, as reports name it (``nas.task_metrics``)."""
        return task_metric(self.task)

    @property
    def parallelism_factor(self) -> int:
        return self.space.parallelism_factor

    def evaluated(self) -> list[TrialRecord]:
        """Candidates whose latency was estimated, one per architecture (duplicates left out)."""
        seen: dict[str, TrialRecord] = {}
        for record in self.trials:
            if record.outcome in EVALUATED and record.latency_ms is not None:
                seen.setdefault(record.arch.arch_id, record)
        return list(seen.values())

    def completed(self) -> list[TrialRecord]:
        """Feasible candidates with a first-objective value, one per architecture."""
        return [t for t in self.evaluated() if t.outcome == "COMPLETE" and t.value is not None]


def open_study_record(folder: str | Path, *, storage: str | None = None) -> StudyRecord:
    """Read ``folder`` (``results/<study>``); ``storage`` overrides where the Optuna study lives."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InsightsError(f"{folder}: no such results folder (expected results/<study>/ of `edgenas search`)")
    summary = _read_pareto_json(folder)
    settings = summary["settings"]
    study = _load_study(folder, str(summary["study"]), storage or settings.get("storage"))
    space_path = _space_path(folder, str(settings["space"]))
    space = load_space(space_path, parallelism_factor=_parallelism_factor(summary))
    first = first_objective_column(task=space.task, mode=str(settings.get("mode")), proxy=str(settings.get("proxy")))
    trials = tuple(r for r in (_trial_record(t) for t in study.get_trials(deepcopy=False)) if r is not None)
    if not any(t.outcome == "COMPLETE" for t in trials):
        raise InsightsError(f"{folder}: study {summary['study']!r} has no complete trial yet; nothing to analyse")
    return StudyRecord(
        folder=folder,
        name=str(summary["study"]),
        settings=settings,
        space_path=space_path,
        space=space,
        value_name=first,
        trials=trials,
        pareto=tuple(pareto_front(study)),
        baseline=study.user_attrs.get(BASELINE_ATTR),
        study=study,
    )


def _read_pareto_json(folder: Path) -> dict[str, Any]:
    path = folder / "pareto.json"
    missing = f"{folder}: no pareto.json; is this a results folder of `edgenas search`?"
    data = read_document(path, error=InsightsError, missing=missing)
    if not isinstance(data, dict) or "study" not in data or "settings" not in data:
        raise InsightsError(f"{path}: expected the keys 'study' and 'settings' written by `edgenas search`")
    return data


def _load_study(folder: Path, name: str, storage: str | None) -> optuna.Study:
    if storage is None:
        db = folder / "study.db"
        if not db.is_file():
            raise InsightsError(
                f"{folder}: no study.db (the Optuna storage is not committed with the results); "
                f"rerun the search or pass --storage"
            )
        storage = f"sqlite:///{db}"
    url: Any = storage
    if is_masked(storage):
        raise InsightsError(
            f"{folder}: pareto.json names the storage {storage!r} without its password; pass --storage with it"
        )
    if is_rdb_url(storage):
        url = resolve_rdb_url(storage)
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        if not Path(storage).is_file():
            raise InsightsError(f"{storage}: no such journal file")
        url = JournalStorage(JournalFileBackend(storage))
    try:
        return optuna.load_study(study_name=name, storage=url)
    except KeyError:
        raise InsightsError(f"{mask_url(storage)}: holds no study named {name!r}") from None


def _space_path(folder: Path, recorded: str) -> Path:
    """The space file as the search named it (relative to where it ran), else a shipped space of that name."""
    candidates = [Path(recorded), folder.resolve().parent.parent / recorded, SPACES_DIR / Path(recorded).name]
    for path in candidates:
        if path.is_file():
            return path
    raise InsightsError(f"{folder}: the study's search space {recorded!r} is not found (tried {candidates})")


def _parallelism_factor(summary: dict[str, Any]) -> int:
    """The P the search used, as pareto.json records it; a pareto.json written before it did: the device's P now."""
    recorded = (summary.get("device") or {}).get("parallelism_factor")
    if recorded is not None:
        return int(recorded)
    from latency_estimator import get_device

    return get_device(str(summary["settings"]["device"])).parallelism_factor


def _trial_record(trial: FrozenTrial) -> TrialRecord | None:
    attrs = trial.user_attrs
    if "arch" not in attrs or "outcome" not in attrs or not trial.state.is_finished():
        return None  # running, waiting, or interrupted before it chose an architecture
    outcome = "FAIL" if trial.state == TrialState.FAIL else str(attrs["outcome"])
    value = float(trial.values[0]) if outcome == "COMPLETE" and trial.values else None
    latency = attrs.get("latency_ms")
    return TrialRecord(
        number=trial.number,
        arch=ArchConfig.from_dict(attrs["arch"], source=f"trial {trial.number}"),
        outcome=outcome,
        value=value,
        latency_ms=float(latency) if latency is not None else None,
        trial=trial,
    )
