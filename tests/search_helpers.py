"""What the search tests share: the budgets they search under, the rows of ``trials.csv``, worker processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
# Under these budgets a good share of the combined space's random proposals are budget breakers on sim-npu-p32.
BUDGETS = {"latency_budget_ms": 0.3, "max_params": 600_000, "max_peak_memory_kb": 256}


def read_rows(folder: Path) -> list[dict[str, str]]:
    """``trials.csv`` of a study's result folder, one dict per trial."""
    with open(folder / "trials.csv") as handle:
        return list(csv.DictReader(handle))


def evaluated_rows(folder: Path) -> list[dict[str, str]]:
    """The trials that used one of the study's N evaluations."""
    return [row for row in read_rows(folder) if row["evaluated"] == "1"]


def within_budgets(row: dict[str, str], budgets: dict[str, float] = BUDGETS) -> bool:
    return (
        float(row["latency_ms"]) <= budgets["latency_budget_ms"]
        and int(row["params"]) <= budgets["max_params"]
        and float(row["peak_memory_kib"]) <= budgets["max_peak_memory_kb"]
    )


def start_worker(code: str, *args: str, prefix: Sequence[str] = ()) -> subprocess.Popen:
    """A search worker: a Python process running ``code`` (with ``args`` in ``sys.argv[1:]``) on this checkout,
    with the test's ``$EDGENAS_ESTIMATORS``; its stderr is kept for the failure message."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [*prefix, sys.executable, "-c", code, *args]
    return subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)


def finish_workers(workers: Sequence[subprocess.Popen], timeout_s: float) -> list[str]:
    """Wait for every worker; their stderr. Fails, with the end of each worker's stderr, unless all exited 0."""
    errors = [worker.communicate(timeout=timeout_s)[1] for worker in workers]
    assert [w.returncode for w in workers] == [0] * len(workers), "\n".join(e[-2000:] for e in errors)
    return errors


def load_journal_study(journal: Path, name: str) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    return optuna.load_study(study_name=name, storage=storage)
