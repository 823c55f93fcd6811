"""The name of a task's score, decided once: what a study's ``val_accuracy`` holds, as a user reads it.

A search stores its first objective in the trial attributes ``val_accuracy``
and ``test_accuracy`` whatever the task (``TrainResult`` fills them for
classifiers and dense networks alike), so that every study, old or new,
resumes and reads back the same way. Everything a user reads names the score
by the study's task instead:

=============== ======== ============== ======= =============================
task            key      label          short   columns (trials.csv, Optuna)
=============== ======== ============== ======= =============================
classification  accuracy accuracy       acc     val_accuracy, test_accuracy
detection       map      mAP@[.5:.95]   mAP     val_map, test_map
segmentation    miou     mIoU           mIoU    val_miou, test_miou
=============== ======== ============== ======= =============================

Detection is scored by COCO mAP@[.5:.95] (``nas.dense_training``), segmentation by mIoU.
``key`` is also the artifact manifest's ``test_metric``.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.errors import EdgeNasError

__all__ = ["TASK_METRICS", "TaskMetric", "first_objective_column", "first_objective_label", "task_metric"]


@dataclass(frozen=True)
class TaskMetric:
    task: str
    key: str  # machine name: accuracy, map, miou (the manifest's test_metric, the column suffix)
    label: str  # in sentences and axis labels: "validation mAP@[.5:.95]"
    short: str  # in table headers and CLI lines: "val mAP"
    best: str  # the Pareto point with the highest score: "most accurate", "highest mAP"

    def column(self, split: str) -> str:
        """``val_accuracy``, ``test_map``, ...: the name of the ``split`` score in trials.csv and Optuna."""
        return f"{split}_{self.key}"

    def header(self, split: str) -> str:
        """``val acc``, ``test mIoU``, ...: the ``split`` score in a table header or a CLI line."""
        return f"{split} {self.short}"


TASK_METRICS = {
    "classification": TaskMetric("classification", "accuracy", "accuracy", "acc", "most accurate"),
    "detection": TaskMetric("detection", "map", "mAP@[.5:.95]", "mAP", "highest mAP"),
    "segmentation": TaskMetric("segmentation", "miou", "mIoU", "mIoU", "highest mIoU"),
}

# The trial attributes every task stores its scores in (resume reads them back; never renamed).
STORED = {"val": "val_accuracy", "test": "test_accuracy"}


def task_metric(task: str) -> TaskMetric:
    """The score of ``task`` (``classification``, ``detection`` or ``segmentation``)."""
    try:
        return TASK_METRICS[task]
    except KeyError:
        raise EdgeNasError(f"unknown task {task!r}; allowed: {', '.join(TASK_METRICS)}") from None


def first_objective_column(*, task: str, mode: str, proxy: str) -> str:
    """The first objective's name in pareto.json, Optuna and insights: ``proxy_<name>`` in zeroshot, else
    ``val_<key>`` (``val_accuracy`` for classifiers, as studies have always named it)."""
    return f"proxy_{proxy}" if mode == "zeroshot" else task_metric(task).column("val")


def first_objective_label(*, task: str, mode: str, proxy: str) -> str:
    """The first objective in a table header or a CLI line: ``proxy <name>`` in zeroshot, else ``val acc`` /
    ``val mAP`` / ``val mIoU``."""
    return f"proxy {proxy}" if mode == "zeroshot" else task_metric(task).header("val")
