"""Expert in the loop on a dense study: ``analyze`` and ``space derive`` understand a dense head, and the
study's files name its score (mIoU, mAP), not accuracy.

The study is a real ``run_search``: tiny segmenters trained on digit-scenes (64x64, a few images, one epoch),
scored by a real, small sim-npu-p32 latency estimator built with dense networks; its head's width, depth and
kernel are searched.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml

from nas.cli.search import _print_summary
from nas.insights import analyze_study, derive_from_study
from nas.search.records import CSV_COLUMNS, csv_header
from nas.task_metrics import first_objective_column, first_objective_label, task_metric
from search_spaces import baseline_arch, load_space
from search_spaces.errors import EdgeNasError
from tests.test_insights import cli

DEVICE = "sim-npu-p32"
HEAD_PARAMETERS = {"head.channels", "head.depth", "head.kernel"}
TINY_DETECTION_SPACE = {
    "name": "tiny_segmentation",
    "parallelism_factor": 32,
    "align_channels": False,  # widths of 8-32 at the device's P=32: a network small enough to train in a second
    "input": {"channels": 1, "resolution": [64]},
    "depth_multiplier": [0.5, 1.0],
    "stem": {"kernel": [3], "channels": [8], "stride": 2},
    "stages": [
        {"block": ["ibn", "fused_ibn"], "kernel": [3], "expansion": [2], "channels": [16], "depth": [1], "stride": 2},
        {"block": ["ibn"], "kernel": [3], "expansion": [4], "channels": [24], "depth": [1], "stride": 2},
    ],
    "head": {
        "type": "segmentation",
        "num_classes": 11,  # background + 10 digits
        "taps": [0, 1],
        "channels": [16, 32],
        "depth": [0, 1, 2],
        "kernel": [3, 5],
    },
}


@pytest.fixture(scope="module")
def dense_study(tmp_path_factory: pytest.TempPathFactory):
    """(results folder of study ``seg``, its SearchResult): 10 trained segmenters."""
    from latency_estimator import build_estimator
    from nas.search import run_search

    root = tmp_path_factory.mktemp("dense-insights")
    space_file = root / "tiny_segmentation.yaml"
    space_file.write_text(yaml.safe_dump(TINY_DETECTION_SPACE, sort_keys=False))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGENAS_ESTIMATORS", str(root / "estimators"))
        build_estimator(DEVICE, samples=120, networks=4, directory=root / "estimators" / DEVICE)
        result = run_search(
            space=space_file,
            device=DEVICE,
            dataset="digit-scenes",
            study="seg",
            trials=10,
            strategy="random",
            mode="multishot",
            epochs=1,
            train_limit=32,
            eval_limit=16,
            batch_size=16,
            pruner="none",
            baseline=False,
            results_dir=root / "results",
        )
        yield root / "results" / "seg", result


@pytest.fixture(scope="module")
def insights(dense_study):
    return analyze_study(dense_study[0])


def test_analyze_reports_the_head_the_pareto_front_chose(insights) -> None:
    record, head = insights.record, insights.head
    archs = [p.arch for p in record.pareto]
    assert head is not None and head.type == "segmentation" and head.taps == (0, 1)
    assert head.tap_sizes == (16, 8)  # 64 / stem 2 / stage 0 stride 2; / stage 1 stride 2
    assert head.n_pareto == len(archs) >= 1
    assert head.depth == dict(Counter(a.head.depth for a in archs))
    assert head.kernel == dict(Counter(a.head.kernel for a in archs))
    assert set(head.choices) == HEAD_PARAMETERS
    points = [record.space.point_of(a) for a in archs]
    for name, options in head.choices.items():
        assert [c.choice for c in options] == list(record.space.parameters()[name])
        assert [c.pareto for c in options] == [sum(p[name] == c.choice for p in points) for c in options]
    assert 0.0 < head.share < 1.0
    # Deeper towers and wider necks cost more on the device, all else equal; the estimator says so.
    assert head.change("head.depth") > 0 and head.change("head.channels") > 0


def test_head_choices_are_in_the_lessons(insights, dense_study) -> None:
    texts = [f.text for f in insights.findings if f.topic == "head"]
    assert texts[0].startswith("the segmentation head (taps stages 0 (16x16), 1 (8x8)) takes ")
    assert {t.split(":")[0] for t in texts[1:]} == HEAD_PARAMETERS
    assert any("0 -> 2 changes the head's estimated latency by +" in t for t in texts)
    importances = {i.objective: i for i in insights.importances}
    assert set(importances) == {"latency_ms", "val_miou"}
    assert all(set(i.values) >= HEAD_PARAMETERS for i in importances.values())
    text = (dense_study[0] / "insights.md").read_text()
    assert "## The segmentation head" in text and "| 0 | 16x16 (head tap) |" in text
    assert "| first objective | val_miou |" in text and "val_accuracy" not in text
    breakdown = insights.breakdown
    assert {"head neck", "head tower", "head outputs"} <= set(breakdown.labels) and "head" not in breakdown.labels
    assert breakdown.baseline_arch_id == baseline_arch(parallelism_factor=32, task="segmentation").arch_id


def test_derive_keeps_a_valid_head_section(insights, dense_study, tmp_path: Path) -> None:
    out = tmp_path / "derived.yaml"
    assert cli(["space", "derive", str(dense_study[0]), "--out", str(out)]) == 0
    derived, source = load_space(out), insights.record.space
    assert derived.task == "segmentation" and derived.head.taps == source.head.taps
    assert derived.head.num_classes == source.head.num_classes
    for name in HEAD_PARAMETERS:
        assert set(derived.parameters()[name]) <= set(source.parameters()[name])
    assert all(derived.contains(p.arch) for p in insights.record.pareto)
    kept = derive_from_study(insights, name="derived")
    narrowed = {d.name for d in kept.narrowed} & HEAD_PARAMETERS
    text = out.read_text()
    for name in narrowed:
        assert f"study seg: {name}: dropped" in text
    assert yaml.safe_load(text)["head"]["type"] == "segmentation"


def test_a_dense_study_names_its_score_miou(dense_study, capsys) -> None:
    folder, result = dense_study
    with open(folder / "trials.csv") as handle:
        header = next(csv.reader(handle))
    assert "val_miou" in header and "test_miou" in header and "val_accuracy" not in header
    report = (folder / "report.md").read_text()
    assert "maximise validation mIoU" in report and "| val mIoU | test mIoU |" in report
    assert "acc" not in report.replace("accelerator", "")
    document = json.loads((folder / "pareto.json").read_text())
    assert document["task"] == "segmentation" and document["objectives"][0] == "val_miou"
    assert result.study.metric_names[0] == "val_miou"
    # The trials still store their score where every study does: resume and insights read it back unchanged.
    assert all("val_accuracy" in t.user_attrs for t in result.study.trials if t.values)
    _print_summary(result)
    assert "val mIoU" in capsys.readouterr().out


def test_one_place_names_each_task_score() -> None:
    assert csv_header() == list(CSV_COLUMNS)
    assert csv_header("segmentation")[CSV_COLUMNS.index("val_accuracy")] == "val_miou"
    assert csv_header("detection")[CSV_COLUMNS.index("test_accuracy")] == "test_map"
    assert first_objective_column(task="classification", mode="multishot", proxy="synflow") == "val_accuracy"
    assert first_objective_column(task="segmentation", mode="zeroshot", proxy="synflow") == "proxy_synflow"
    assert first_objective_label(task="detection", mode="multishot", proxy="synflow") == "val mAP"
    assert task_metric("segmentation").label == "mIoU" and task_metric("detection").key == "map"
    with pytest.raises(EdgeNasError, match="unknown task 'keypoints'; allowed: classification, detection"):
        task_metric("keypoints")
