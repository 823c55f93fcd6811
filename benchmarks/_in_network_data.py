"""What the estimator experiments read: a device's profiling data, timed inside whole networks, and its evaluation
measurements, both from ``benchmarks/latency_estimator.py --device D``."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from latency_estimator.batch import CONTEXT_FEATURE
from latency_estimator.build import network_sums
from latency_estimator.dataset import MeasurementDataset
from latency_estimator.errors import EstimatorError
from latency_estimator.estimator import LatencyEstimator
from latency_estimator.overhead import OverheadModel, fit_overhead
from latency_estimator.regressor import SubgraphModel

RESULTS = Path(__file__).resolve().parents[1] / "results"


def load_in_network_data(parser: argparse.ArgumentParser, device: str) -> tuple[MeasurementDataset, list[dict]]:
    """(dataset, evaluation rows); a device without such data is a one-line error from ``parser``."""
    work = RESULTS / f"latency-estimator-{device}"
    try:
        dataset = MeasurementDataset.load(work / "estimator")
        with open(work / "evaluation-measured.csv", newline="") as handle:
            evaluation_rows = list(csv.DictReader(handle))
    except (EstimatorError, FileNotFoundError):
        parser.error(f"{device}: {work} lacks the data of `python benchmarks/latency_estimator.py --device {device}`")
    if not all(row["network"] for row in dataset.rows):
        parser.error(f"{device}: its subgraphs were not timed inside networks; nothing to hold out whole")
    return dataset, evaluation_rows


def built_family(dataset: MeasurementDataset) -> tuple[str, str, str, bool]:
    """(prior, layout, loss, whether it sees the network's weight size) of the estimator built from ``dataset`` (its
    metadata lies beside the measurements)."""
    kept = json.loads((Path(dataset.directory) / "metadata.json").read_text())
    context = CONTEXT_FEATURE in kept["feature_names"]
    return kept["prior"]["form"], kept["layout"], kept.get("loss", "squared"), context


def with_overhead(
    model: SubgraphModel,
    networks: list,
    parallelism_factor: int,
    kind: type[LatencyEstimator] = LatencyEstimator,
) -> LatencyEstimator:
    """An estimator of ``kind`` around ``model``, its overhead term fitted on ``networks`` as training does."""
    metadata = {"parallelism_factor": parallelism_factor, "device": "experiment"}
    estimator = kind(model=model, overhead=OverheadModel(), metadata=metadata)
    estimator.overhead = fit_overhead(*network_sums(estimator, networks))
    return estimator
