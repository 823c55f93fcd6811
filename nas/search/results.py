"""Result files in ``results/<study>/``, rewritten from the storage after every trial.

``trials.csv``, ``pareto.json`` with ``pareto/<arch_id>.yaml`` per Pareto
architecture, ``report.md`` and ``pareto.png``. Every file is written to a
temporary name and renamed, so a crash (or a second worker writing at the
same time) leaves a complete, if slightly older, file. The records they are
drawn from (rows, Pareto front) live in ``nas.search.records``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import optuna

from nas.search.budgets import SearchError
from nas.search.counting import FEASIBLE_IN_SPACE_ATTR, evaluation_target
from nas.search.plots import plot_pareto
from nas.search.records import (
    CSV_COLUMNS,
    ParetoPoint,
    TrialRow,
    csv_header,
    pareto_front,
    settings_command,
    trial_rows,
)
from nas.search.report import render_report
from nas.search.settings import SearchSettings

__all__ = [
    "BASELINE_ATTR",
    "CSV_COLUMNS",
    "ParetoPoint",
    "TrialRow",
    "pareto_front",
    "settings_command",
    "trial_rows",
    "write_results",
]

BASELINE_ATTR = "edgenas.baseline"


def check_writable(folder: Path) -> None:
    """Fail before the first trial when the results folder cannot be written (the report would be lost)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-check.{os.getpid()}.tmp"
        probe.write_text("edgenas\n")
        probe.unlink()
    except OSError as exc:
        raise SearchError(f"{folder}: the results folder cannot be written ({type(exc).__name__}: {exc})") from None


def write_results(
    study: optuna.Study, settings: SearchSettings, *, plot: bool = True, extra: dict[str, Any] | None = None
) -> list[ParetoPoint]:
    """Rewrite every result file from the storage; returns the Pareto front."""
    folder = settings.study_dir
    folder.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    front = pareto_front(study)
    baseline = study.user_attrs.get(BASELINE_ATTR)
    extra = extra or {}
    task = str(extra.get("task", "classification"))
    _write_text(folder / "trials.csv", _csv(rows, task))
    _write_pareto(folder, front, settings, baseline, extra.get("parallelism_factor"), task)
    space_note = _space_note(study, settings)
    _write_text(folder / "report.md", render_report(settings, rows, front, baseline, extra, space_note))
    if plot:
        plot_pareto(folder / "pareto.png", rows, front, settings, baseline, task=task)
    return front


def _space_note(study: optuna.Study, settings: SearchSettings) -> tuple[int, int | None]:
    """(the study's target evaluations, the feasible networks of its space when it was enumerated)."""
    return evaluation_target(study, settings.trials), study.user_attrs.get(FEASIBLE_IN_SPACE_ATTR)


def _csv(rows: list[TrialRow], task: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_header(task))
    for row in rows:
        writer.writerow(["" if v is None else v for v in row.csv_values()])
    return buffer.getvalue()


def _write_pareto(
    folder: Path,
    front: list[ParetoPoint],
    settings: SearchSettings,
    baseline: dict | None,
    parallelism_factor: int | None,
    task: str,
) -> None:
    archs = folder / "pareto"
    archs.mkdir(exist_ok=True)
    keep = {f"{p.arch.arch_id}.yaml" for p in front}
    for point in front:
        target = archs / f"{point.arch.arch_id}.yaml"
        if not target.exists():
            _write_text(target, point.arch.to_yaml())
    for stale in archs.glob("*.yaml"):
        if stale.name not in keep:
            stale.unlink(missing_ok=True)
    document = {
        "study": settings.study,
        "task": task,
        "objectives": _objective_names(settings, task),
        "settings": settings.to_dict(),
        "device": {"name": settings.device, "parallelism_factor": parallelism_factor},  # as the search used it
        "baseline": baseline,
        "pareto": [p.to_dict() for p in front],
    }
    _write_text(folder / "pareto.json", json.dumps(document, indent=2) + "\n")


def _objective_names(settings: SearchSettings, task: str) -> list[str]:
    from nas.search.study import metric_names

    return metric_names(settings, task=task)


def _write_text(path: Path, text: str) -> None:
    """Write to a temporary file, then rename: a crash or a full disk mid-write leaves the previous file whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp.is_file():
            tmp.unlink()
        raise SearchError(f"{path}: cannot write it ({type(exc).__name__}: {exc}); the previous copy is kept") from None
