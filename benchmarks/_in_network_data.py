"""What the estimator experiments read: a device's profiling data, timed inside whole networks, and its evaluation
measurements, both from ``benchmarks/latency_estimator.py --device D``."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import latency_estimator.regressor as regressor
from latency_estimator.errors import EstimatorError
from latency_estimator.profiling import MeasurementDataset

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
    context = regressor.CONTEXT_FEATURE in kept["feature_names"]
    return kept["prior"]["form"], kept["layout"], kept.get("loss", "squared"), context


def with_overhead(
    model: regressor.SubgraphModel,
    networks: list,
    parallelism_factor: int,
    kind: type[regressor.LatencyEstimator] = regressor.LatencyEstimator,
) -> regressor.LatencyEstimator:
    """An estimator of ``kind`` around ``model``, its overhead term fitted on ``networks`` as training does."""
    metadata = {"parallelism_factor": parallelism_factor, "device": "experiment"}
    estimator = kind(model=model, overhead=regressor.OverheadModel(), metadata=metadata)
    estimator.overhead = regressor.fit_overhead(*regressor.network_sums(estimator, networks))
    return estimator
