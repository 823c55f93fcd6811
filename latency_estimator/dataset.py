"""The measurement dataset: one folder of CSV files and metadata per device (:class:`MeasurementDataset`)."""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

import numpy as np

from latency_estimator.csv_rows import append_csv_row, read_csv_rows, write_csv_rows
from latency_estimator.devices.base import Device, Measurement
from latency_estimator.errors import EstimatorError
from latency_estimator.machine import runtime_versions
from latency_estimator.passes import Timed
from latency_estimator.spec import SPEC_FIELDS, SubgraphSpec
from search_spaces import ArchConfig

__all__ = [
    "MeasurementDataset",
    "NETWORK_FIELDS",
    "SUBGRAPH_FIELDS",
]

logger = logging.getLogger(__name__)


class MeasurementDataset:
    """Everything measured on one device, in one folder (the estimator's, by default):

    * ``subgraphs.csv``: one row per measured subgraph (its :class:`SubgraphSpec`,
      ``latency_ms``, ``spread``, ``repeats``, the profiling ``round``, and the
      ``network`` it was timed inside, if any);
    * ``networks.csv``: whole-network measurements for the overhead term
      (``arch_id``, ``latency_ms``, ``spread``, ``repeats``, timing ``passes``,
      the ArchConfig as JSON);
    * ``measurements.json``: device profile, runtime versions, CPU model, dates.

    Rows are appended and flushed one at a time, so an interrupted run keeps
    them; ``networks.csv`` is rewritten whole (atomically) when later timing
    passes find a network faster.
    """

    SUBGRAPHS = "subgraphs.csv"
    NETWORKS = "networks.csv"
    META = "measurements.json"

    def __init__(self, directory: Path, metadata: dict) -> None:
        self.directory = directory
        self.metadata = metadata
        self.rows = read_csv_rows(
            directory / self.SUBGRAPHS, SUBGRAPH_FIELDS, required=SUBGRAPH_FIELDS[:-1], added={"network": ""}
        )
        self.network_rows = read_csv_rows(
            directory / self.NETWORKS, NETWORK_FIELDS, added={"passes": "1", "runner_up_ms": "inf"}
        )
        self._drop_unfinished_networks()

    def _drop_unfinished_networks(self) -> None:
        """Subgraph rows of a network whose profiling was interrupted before its own row: its shares are incomplete,
        and :meth:`latency_ms` would scale them together with the network's next, complete profile."""
        finished = {row["arch_id"] for row in self.network_rows}
        kept = [row for row in self.rows if not row["network"] or row["network"] in finished]
        if len(kept) < len(self.rows):
            logger.warning(
                "%s: dropping %d subgraph row(s) of a network whose profiling was interrupted; it is profiled again",
                self.directory / self.SUBGRAPHS,
                len(self.rows) - len(kept),
            )
            self.rows = kept
            write_csv_rows(self.directory / self.SUBGRAPHS, SUBGRAPH_FIELDS, kept)

    @classmethod
    def open(cls, directory: str | Path, *, device: Device) -> MeasurementDataset:
        """Open (creating if needed) the dataset of ``device``; another device's data is an error."""
        directory = Path(directory)
        dataset = cls.load(directory) if (directory / cls.META).exists() else cls(directory, {})
        if dataset.metadata:
            _check_same_device(dataset, device)
        dataset.metadata = {**_describe(device), "created": dataset.metadata.get("created", _now())}
        return dataset

    @classmethod
    def load(cls, directory: str | Path) -> MeasurementDataset:
        directory = Path(directory)
        meta_path = directory / cls.META
        if not meta_path.is_file():
            raise EstimatorError(f"{directory}: no measurements here (no {cls.META}); run `edgenas latency profile`")
        try:
            metadata = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EstimatorError(f"{meta_path}: cannot read the dataset's metadata ({exc})") from None
        return cls(directory, metadata)

    @property
    def device(self) -> str:
        return str(self.metadata.get("device", ""))

    @property
    def parallelism_factor(self) -> int:
        return int(self.metadata["profile"]["parallelism_factor"])

    def specs(self) -> list[SubgraphSpec]:
        return [SubgraphSpec.from_row(row) for row in self.rows]

    def latency_ms(self) -> np.ndarray:
        """Every subgraph's latency. The shares of a network add up to its latency as first timed; when a later
        pass found the network faster (:meth:`update_networks`), they are scaled down with it."""
        latency = np.array([float(row["latency_ms"]) for row in self.rows])
        owners = np.array([row["network"] for row in self.rows])
        for row in self.network_rows:
            inside = owners == row["arch_id"]
            if inside.any():
                latency[inside] *= float(row["latency_ms"]) / latency[inside].sum()
        return latency

    def keys(self) -> set[str]:
        return {SubgraphSpec.from_row(row).key for row in self.rows}

    def count(self, round_name: str) -> int:
        return sum(row["round"] == round_name for row in self.rows)

    def networks(self) -> list[tuple[ArchConfig, float]]:
        return [
            (
                ArchConfig.from_dict(json.loads(row["arch"]), source=f"{self.directory / self.NETWORKS}"),
                float(row["latency_ms"]),
            )
            for row in self.network_rows
        ]

    def append_subgraph(
        self, spec: SubgraphSpec, measurement: Measurement, *, round_name: str, network: str = ""
    ) -> None:
        row = {**spec.to_row(), **_measurement_row(measurement), "round": round_name, "network": network}
        append_csv_row(self.directory / self.SUBGRAPHS, SUBGRAPH_FIELDS, row)
        self.rows.append(row)

    def append_network(self, arch: ArchConfig, measurement: Measurement) -> None:
        arch_json = json.dumps(arch.to_dict(), separators=(",", ":"))
        row = {"arch_id": arch.arch_id, **_timed_row(Timed(measurement, 1)), "arch": arch_json}
        append_csv_row(self.directory / self.NETWORKS, NETWORK_FIELDS, row)
        self.network_rows.append(row)

    def timed_networks(self) -> dict[str, Timed]:
        """arch id -> its fastest measurement, the passes behind it and its second-fastest pass."""
        return {
            row["arch_id"]: Timed(
                Measurement(float(row["latency_ms"]), float(row["spread"]), int(row["repeats"])),
                int(row["passes"]),
                float(row["runner_up_ms"]),
            )
            for row in self.network_rows
        }

    def update_networks(self, timed: dict[str, Timed]) -> None:
        """Record later timing passes of the networks (see :meth:`latency_ms`); rewrites ``networks.csv``."""
        for row in self.network_rows:
            if row["arch_id"] in timed:
                row.update(_timed_row(timed[row["arch_id"]]))
        write_csv_rows(self.directory / self.NETWORKS, NETWORK_FIELDS, self.network_rows)

    def write_metadata(self) -> None:
        self.metadata.update(updated=_now(), subgraphs=len(self.rows), networks=len(self.network_rows))
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / self.META).write_text(json.dumps(self.metadata, indent=2, default=str) + "\n")


SUBGRAPH_FIELDS = (*SPEC_FIELDS, "latency_ms", "spread", "repeats", "round", "network")  # network: "" when alone
NETWORK_FIELDS = ("arch_id", "latency_ms", "spread", "repeats", "passes", "runner_up_ms", "arch")


def _measurement_row(measurement: Measurement) -> dict[str, str]:
    return {
        "latency_ms": f"{measurement.latency_ms:.6g}",
        "spread": f"{measurement.spread:.4g}",
        "repeats": str(measurement.repeats),
    }


def _timed_row(timed: Timed) -> dict[str, str]:
    return {**_measurement_row(timed.fastest), "passes": str(timed.passes), "runner_up_ms": f"{timed.runner_up_ms:.6g}"}


def _describe(device: Device) -> dict:
    return {**device.metadata(), "versions": runtime_versions()}


def _check_same_device(dataset: MeasurementDataset, device: Device) -> None:
    old = dataset.metadata
    if old.get("device") != device.name or old.get("profile") != device.profile.to_dict():
        raise EstimatorError(
            f"{dataset.directory}: holds measurements of device {old.get('device')!r} (its profile as it was then), "
            f"not of {device.name!r} as profiled now; choose another folder for this device"
        )
    if old.get("cpu_model") != device.metadata().get("cpu_model"):
        logger.warning(
            "%s: measured on CPU %r, now on %r",
            dataset.directory,
            old.get("cpu_model"),
            device.metadata().get("cpu_model"),
        )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
