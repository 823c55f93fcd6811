"""Profiling: sample subgraph configurations, measure them, keep every number.

``profile_device`` fills a measurement dataset (a folder: ``subgraphs.csv``,
``networks.csv``, ``measurements.json``; see :class:`MeasurementDataset`) in
two rounds of subgraphs, with a handful of whole networks measured in between
for the estimator's overhead term:

1. **coverage** (``1 - adaptive_share`` of the samples): stratified by
   (kind, input resolution). Each stratum alternates between subgraphs that
   really occur in the shipped search spaces (the *pool*, found by decomposing
   sampled architectures; two of every three picks while any remain) and
   *synthetic* ones drawn from the ranges of H, channels, kernels, strides,
   expansions and activations seen in those spaces and in the reference
   mobile networks, so that networks outside the spaces are covered too.
2. **adaptive**: a quick regressor is cross-validated on what round 1
   measured; the remaining samples go to the strata where its error is
   highest (as adaptive samplers in nn-Meter do).

A device that can time subgraphs inside whole networks (``cpu-ort``, with its
per-node profiler: :meth:`Device.profile_network`) is profiled that way
instead: networks sampled from the shipped spaces and synthetic reference-like
ones in turn, then (adaptive) networks rich in the worst-predicted strata; each
network gives one row per subgraph and its own whole-network row. Alone in a
loop, a subgraph keeps its weights in cache and pays layout reorders at its own
edges, which inside a network it does not.

Every measurement is appended and flushed at once, so an interrupted run
keeps what it measured; a rerun with the same arguments continues where it
stopped (``samples`` is the total the dataset should hold). The metadata
names the device profile, runtime versions, CPU model and dates; a dataset is
never mixed across devices. :func:`build_estimator` profiles and trains in one call.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import itertools
import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latency_estimator.devices import get_device
from latency_estimator.devices.base import Device, Measurement
from latency_estimator.errors import DeviceError, EstimatorError
from latency_estimator.passes import Timed, fastest_of_passes
from latency_estimator.regressor import LatencyEstimator, cross_validated_errors, default_estimator_dir, train_estimator
from latency_estimator.subgraph import Subgraph, decompose_arch, weight_mb
from search_spaces import (
    SHIPPED_SPACES,
    ArchConfig,
    HeadConfig,
    StageConfig,
    StemConfig,
    baseline_arch,
    count_arch,
    load_space,
    plan_network,
    shipped_space_path,
)
from search_spaces.plan import BlockPlan

__all__ = [
    "Coverage",
    "MeasurementDataset",
    "SubgraphSampler",
    "SubgraphSpec",
    "append_csv_row",
    "build_estimator",
    "coverage_for",
    "default_samples",
    "overhead_networks",
    "profile_device",
    "read_csv_rows",
    "reference_networks",
    "shipped_spaces_for",
    "synthetic_network",
    "train_from_dataset",
    "warn_if_busy",
]

logger = logging.getLogger(__name__)

REFERENCE_DIR = Path(__file__).resolve().parent / "reference_networks"
PROFILED_KINDS = ("stem", "conv", "ibn", "fused_ibn", "head_conv", "pool", "classifier")
# How many samples a (kind, resolution) stratum gets relative to the others:
# IBN and fused IBN dominate a network's latency and vary most.
# Plain conv blocks occur in no shipped network (only in ONNX models): half weight.
KIND_WEIGHT = {"stem": 1.0, "conv": 0.5, "ibn": 2.0, "fused_ibn": 2.0, "head_conv": 1.0, "pool": 0.5, "classifier": 0.5}
# Subgraph samples when none are asked for, by device implementation: the simulator is exact and
# cheap (600 reach <1 % held-out error); timed CPUs are noisy and the cpu-ort target allows 3,000.
DEFAULT_SAMPLES = {"sim-npu": 600, "onnxruntime-cpu": 3000, "tvm": 800}  # tvm compiles each: ~1 s apiece
FALLBACK_SAMPLES = 1500
# The block of a SubgraphSpec's one-block network that is the subgraph itself.
BLOCK_NAME = {"stem": "stem", "head_conv": "head.conv", "pool": "head.pool", "classifier": "head.classifier"}
STAGE_KINDS = ("conv", "ibn", "fused_ibn")
ProgressFn = Callable[[int, int], None]  # (measured so far, total to measure)
ARCHS_PER_SPACE = 1000  # sampled per shipped space to find the subgraphs that occur in it (~0.5 s in all)


# ----- one configuration ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubgraphSpec:
    """One subgraph configuration: enough to rebuild the :class:`Subgraph` and
    nothing more. ``resolution`` is the input H = W; ``out_channels`` is the
    class count for ``classifier`` and equals ``in_channels`` for ``pool``."""

    kind: str
    resolution: int
    in_channels: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    expansion: float = 1.0
    divisor: int = 1  # the arch's channel_divisor: hidden widths are rounded up to it
    activation: str = "relu6"

    @property
    def key(self) -> str:
        return "|".join(str(value) for value in dataclasses.astuple(self))

    @property
    def stratum(self) -> tuple[str, int]:
        return (self.kind, self.resolution)

    def network(self) -> ArchConfig:
        """The smallest network holding this subgraph (its stem is a 1x1 conv to ``in_channels``)."""
        relay = StemConfig(kernel=1, channels=self.in_channels, stride=1)
        stem, stages, head_channels, classes = relay, (), 0, 10
        if self.kind == "stem":
            stem = StemConfig(kernel=self.kernel, channels=self.out_channels, stride=self.stride)
        elif self.kind in STAGE_KINDS:
            stage = StageConfig(self.kind, self.kernel, self.expansion, self.out_channels, 1, self.stride)
            stages = (stage,)
        elif self.kind == "head_conv":
            head_channels = self.out_channels
        elif self.kind == "classifier":
            classes = self.out_channels
        elif self.kind != "pool":
            raise EstimatorError(f"cannot profile subgraph kind {self.kind!r}, allowed {list(PROFILED_KINDS)}")
        return ArchConfig(
            input_channels=self.in_channels if self.kind == "stem" else 1,
            resolution=self.resolution,
            channel_divisor=self.divisor,
            activation=self.activation,
            stem=stem,
            stages=stages,
            head=HeadConfig(type="classification", channels=head_channels, num_classes=classes),
        )

    def subgraph(self) -> Subgraph:
        name = BLOCK_NAME.get(self.kind, "stages.0.0")
        block = next(block for block in plan_network(self.network()) if block.name == name)
        return Subgraph.from_block(block, activation=self.activation)

    @classmethod
    def from_block(cls, block: BlockPlan, arch: ArchConfig) -> SubgraphSpec:
        c_in, height, _ = block.in_shape
        return cls(
            kind=block.kind,
            resolution=height,
            in_channels=c_in,
            out_channels=block.out_shape[0],
            kernel=block.kernel,
            stride=block.stride,
            expansion=float(block.expansion) if block.kind in STAGE_KINDS else 1.0,
            divisor=arch.channel_divisor if block.kind in STAGE_KINDS else 1,
            activation=arch.activation,
        )

    def to_row(self) -> dict[str, str]:
        return {key: str(value) for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> SubgraphSpec:
        types = {field.name: field.type for field in dataclasses.fields(cls)}
        convert = {"int": int, "float": float, "str": str}
        return cls(**{name: convert[kind](row[name]) for name, kind in types.items()})


SPEC_FIELDS = tuple(field.name for field in dataclasses.fields(SubgraphSpec))


# ----- what to cover ----------------------------------------------------------------------------------------------
def shipped_spaces_for(parallelism_factor: int) -> list:
    """The shipped spaces as a device with this P searches them (``multiples_of_p`` ranges re-expanded for P)."""
    return [load_space(shipped_space_path(name), parallelism_factor=parallelism_factor) for name in SHIPPED_SPACES]


def default_samples(device: Device) -> int:
    """How many subgraphs to profile on ``device`` when the caller does not say."""
    return DEFAULT_SAMPLES.get(device.profile.device, FALLBACK_SAMPLES)


def reference_networks() -> dict[str, ArchConfig]:
    """The well-known mobile networks shipped in ``reference_networks/``, by file stem."""
    return {path.stem: ArchConfig.load(path) for path in sorted(REFERENCE_DIR.glob("*.yaml"))}


@dataclass(frozen=True)
class KindRange:
    """The values one subgraph kind takes across the covered networks."""

    resolutions: tuple[int, ...]
    in_channels: tuple[int, ...]
    out_channels: tuple[int, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    expansions: tuple[float, ...]
    divisors: tuple[int, ...]
    activations: tuple[str, ...]


@dataclass(frozen=True)
class Coverage:
    """What profiling must cover: the pool of subgraphs that occur in the spaces
    and, per kind, the ranges synthetic configurations are drawn from."""

    pool: tuple[SubgraphSpec, ...]
    ranges: dict[str, KindRange]

    @classmethod
    def of(cls, spaces: Sequence, *, extra: Sequence[ArchConfig], archs_per_space: int, seed: int) -> Coverage:
        rng = np.random.default_rng(seed)
        pool = _distinct(
            SubgraphSpec.from_block(block, arch)
            for arch in _sample(spaces, archs_per_space, rng)
            for block in plan_network(arch)
        )
        seen = pool + _distinct(SubgraphSpec.from_block(block, arch) for arch in extra for block in plan_network(arch))
        ranges = {kind: _kind_range([s for s in seen if s.kind == kind]) for kind in PROFILED_KINDS if kind != "conv"}
        ranges["conv"] = _conv_range(ranges)  # no shipped network uses plain conv blocks: borrow the IBN's ranges
        return cls(pool=tuple(pool), ranges=ranges)

    def strata(self) -> list[tuple[str, int]]:
        return [(kind, res) for kind, r in self.ranges.items() for res in r.resolutions]

    def synthetic(self, stratum: tuple[str, int], rng: np.random.Generator) -> SubgraphSpec:
        kind, resolution = stratum
        r = self.ranges[kind]
        in_channels = r.in_channels[0] if kind == "stem" else _channels(r.in_channels, rng)
        out_channels = in_channels if kind == "pool" else _channels(r.out_channels, rng)
        stride = int(rng.choice(r.strides)) if resolution > 1 else 1
        if kind in STAGE_KINDS and rng.random() < 0.3:  # a repeated block: residual, stride 1
            out_channels, stride = in_channels, 1
        return SubgraphSpec(
            kind=kind,
            resolution=resolution,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel=int(rng.choice(r.kernels)),
            stride=stride,
            expansion=float(rng.choice(r.expansions)),
            divisor=int(rng.choice(r.divisors)),
            activation=str(rng.choice(r.activations)),
        )


def _sample(spaces: Sequence, count: int, rng: np.random.Generator) -> Iterator[ArchConfig]:
    for space in spaces:
        for _ in range(count if space.size() > 1 else 1):
            yield space.sample(rng)


def _distinct(specs) -> list[SubgraphSpec]:
    return list(dict.fromkeys(specs))


def _kind_range(specs: list[SubgraphSpec]) -> KindRange:
    values = lambda field: tuple(sorted({getattr(spec, field) for spec in specs}))  # noqa: E731
    return KindRange(
        resolutions=values("resolution"),
        in_channels=values("in_channels"),
        out_channels=values("out_channels"),
        kernels=values("kernel"),
        strides=values("stride"),
        expansions=values("expansion"),
        divisors=values("divisor"),
        activations=values("activation"),
    )


def _conv_range(ranges: dict[str, KindRange]) -> KindRange:
    ibn = ranges["ibn"]
    return dataclasses.replace(ibn, kernels=tuple(sorted({1, *ibn.kernels})), expansions=(1.0,))


def _channels(seen: tuple[int, ...], rng: np.random.Generator) -> int:
    """A channel count seen in the covered networks, or (half the time) a
    log-uniform draw over their range; on a multiple of 8 unless it is small."""
    if rng.random() < 0.5:
        return int(rng.choice(seen))
    low, high = max(1, min(seen)), max(seen)
    value = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
    return max(low, value if value < 16 or rng.random() < 0.3 else 8 * round(value / 8))


# ----- which configurations to measure ----------------------------------------------------------------------------
class SubgraphSampler:
    """Stratified picks over :class:`Coverage`: deterministic for a seed, and
    interleaved across strata so that every prefix of a plan is stratified."""

    POOL_PICKS = 2  # of every 3 picks in a stratum come from the pool while it lasts

    def __init__(self, coverage: Coverage, *, seed: int) -> None:
        self.coverage = coverage
        self.seed = seed

    def plan(
        self, count: int, *, weights: dict[tuple[str, int], float] | None = None, exclude=()
    ) -> list[SubgraphSpec]:
        """``count`` new configurations (none of whose keys is in ``exclude``),
        split over strata in proportion to ``weights`` (default: by kind)."""
        rng = np.random.default_rng(self.seed)
        strata = self.coverage.strata()
        weights = weights or {s: KIND_WEIGHT[s[0]] for s in strata}
        quotas = _apportion(count, [weights.get(s, 0.0) for s in strata])
        taken = set(exclude)
        by_stratum = defaultdict(list)
        for spec in self.coverage.pool:
            by_stratum[spec.stratum].append(spec)
        picks = [self._stratum_picks(s, q, by_stratum[s], taken, rng) for s, q in zip(strata, quotas, strict=True)]
        return [spec for row in _interleave(picks) for spec in row]

    def _stratum_picks(self, stratum, quota: int, pool: list, taken: set, rng) -> list[SubgraphSpec]:
        pool = [pool[i] for i in rng.permutation(len(pool))]
        picks: list[SubgraphSpec] = []
        tries = 0
        while len(picks) < quota and tries < 50 * quota:
            tries += 1
            from_pool = pool and len(picks) % 3 < self.POOL_PICKS
            spec = pool.pop() if from_pool else self.coverage.synthetic(stratum, rng)
            if spec.key not in taken:
                taken.add(spec.key)
                picks.append(spec)
        return picks


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainders)."""
    weights = np.asarray(weights, dtype=float)
    if total <= 0 or weights.sum() <= 0:
        return [0] * len(weights)
    exact = total * weights / weights.sum()
    shares = np.floor(exact).astype(int)
    for i in np.argsort(shares - exact)[: total - shares.sum()]:
        shares[i] += 1
    return shares.tolist()


def _interleave(lists: list[list]) -> Iterator[list]:
    for i in range(max((len(items) for items in lists), default=0)):
        yield [items[i] for items in lists if i < len(items)]


# ----- the dataset folder -----------------------------------------------------------------------------------------
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


def read_csv_rows(
    path: Path,
    fields: tuple[str, ...],
    *,
    required: tuple[str, ...] | None = None,
    added: dict[str, str] | None = None,
) -> list[dict]:
    """The complete rows of a CSV written by :func:`append_csv_row` (none if it does
    not exist); a row missing a ``required`` value (an interrupted write) is dropped.

    ``added``: columns that newer versions added, with the value an older row
    means. A file without them is upgraded in place (rewritten with them).
    """
    if not path.exists():
        return []
    added = added or {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = tuple(reader.fieldnames or ())
        rows = list(reader)
    missing = [field for field in fields if field not in columns]
    if columns != fields and not (set(missing) <= set(added) and set(columns) <= set(fields)):
        raise EstimatorError(
            f"{path}: columns {list(columns)}, expected {list(fields)} "
            "(written by another edgenas version? measure into a new folder)"
        )
    required = fields if required is None else required
    complete = [row for row in rows if None not in row.values() and all(row.get(f) for f in required if f in columns)]
    if len(complete) < len(rows):
        logger.warning("%s: dropping %d incomplete row(s)", path, len(rows) - len(complete))
    if missing:
        complete = [{field: row.get(field, added.get(field, "")) for field in fields} for row in complete]
        write_csv_rows(path, fields, complete)
        logger.info("%s: upgraded to the current columns (added %s)", path, ", ".join(missing))
    return complete


def write_csv_rows(path: Path, fields: tuple[str, ...], rows: Sequence[dict[str, str]]) -> None:
    """Replace the file with these rows, atomically: an interrupted write leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.partial")
    with scratch.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(scratch, path)


def append_csv_row(path: Path, fields: tuple[str, ...], row: dict[str, str]) -> None:
    """Append one row (with the header if the file is new), on a line of its own
    even when an interrupted write left the last line unfinished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists() or path.stat().st_size == 0
    with path.open("a+b") as raw:
        if not new_file:
            raw.seek(-1, os.SEEK_END)
            if raw.read(1) != b"\n":
                raw.write(b"\n")
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def _describe(device: Device) -> dict:
    import onnxruntime
    import xgboost

    versions = {"onnxruntime": onnxruntime.__version__, "xgboost": xgboost.__version__, "numpy": np.__version__}
    return {**device.metadata(), "versions": versions}


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


# ----- measuring --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileSettings:
    samples: int  # total subgraph measurements the dataset should hold
    networks: int = 12  # whole networks measured for the overhead term ("a handful")
    seed: int = 0
    adaptive_share: float = 0.25  # of the samples go to the adaptive round

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise EstimatorError(f"`samples >= 1` must hold, but got samples={self.samples}")
        if self.networks < 0:
            raise EstimatorError(f"`networks >= 0` must hold, but got networks={self.networks}")
        if not 0.0 <= self.adaptive_share < 1.0:
            raise EstimatorError(f"`0 <= adaptive_share < 1` must hold, but got adaptive_share={self.adaptive_share}")


def profile_device(
    device: Device,
    *,
    samples: int,
    directory: str | Path | None = None,
    networks: int = 12,
    seed: int = 0,
    adaptive_share: float = 0.25,
    progress: ProgressFn | None = None,
) -> MeasurementDataset:
    """Measure on ``device`` until the dataset in ``directory`` (default: the
    device's estimator folder) holds ``samples`` subgraphs and ``networks`` networks."""
    settings = ProfileSettings(samples=samples, networks=networks, seed=seed, adaptive_share=adaptive_share)
    available, reason = device.is_available()
    if not available:
        raise DeviceError(f"device {device.name!r} is not available here: {reason}")
    dataset = MeasurementDataset.open(directory or default_estimator_dir(device.name), device=device)
    dataset.write_metadata()
    warn_if_busy(device)
    if device.profiles_in_network:
        _profile_in_networks(device, dataset, settings, progress)
    else:
        _profile_one_by_one(device, dataset, settings, progress)
    before = len(dataset.rows)  # the retiming's measurements follow the subgraphs' on the progress bar
    then = (lambda done, total: progress(before + done, before + total)) if progress else None
    _retime_networks(device, dataset, then)
    dataset.write_metadata()
    return dataset


def _profile_one_by_one(
    device: Device, dataset: MeasurementDataset, settings: ProfileSettings, progress: ProgressFn | None
) -> None:
    """Subgraphs timed alone (stratified, then adaptive), and among them the overhead term's networks."""
    seed = settings.seed
    sampler = SubgraphSampler(coverage_for(device.parallelism_factor, seed=seed), seed=seed)
    measured_ids = {row["arch_id"] for row in dataset.network_rows}
    archs = [
        a
        for a in overhead_networks(device.parallelism_factor, count=settings.networks, seed=seed)
        if a.arch_id not in measured_ids
    ]
    coverage_count = settings.samples - round(settings.samples * settings.adaptive_share)
    todo = sampler.plan(coverage_count - dataset.count("coverage"), exclude=dataset.keys())
    adaptive_count = max(0, settings.samples - len(dataset.rows) - len(todo))
    session = _Session(device, dataset, archs, subgraphs=len(todo) + adaptive_count, progress=progress)
    session.measure(todo, round_name="coverage")
    remaining = settings.samples - len(dataset.rows)
    if remaining > 0:
        weights = _adaptive_weights(dataset, sampler.coverage)
        adaptive = SubgraphSampler(sampler.coverage, seed=seed + len(dataset.rows))
        session.measure(adaptive.plan(remaining, weights=weights, exclude=dataset.keys()), round_name="adaptive")
    session.finish()


def _retime_networks(device: Device, dataset: MeasurementDataset, progress: ProgressFn | None) -> None:
    """Time every measured network in the device's further passes, keeping its fastest (a timed device's networks
    were each timed once, some of them in one of the machine's slow episodes)."""
    plan = device.network_passes
    if plan.max_passes == 1 or not dataset.network_rows:
        return
    archs = {arch.arch_id: arch for arch, _ in dataset.networks()}
    logger.info("timing the %d networks again: %s", len(archs), plan.describe())
    fastest_of_passes(
        list(archs),
        lambda arch_id: device.measure_network(archs[arch_id]),
        plan,
        done=dataset.timed_networks(),
        save=dataset.update_networks,
        progress=progress,
    )


def warn_if_busy(device: Device) -> None:
    """Log a warning when a timed device shares a busy machine: other processes
    slow a run by up to 2x for seconds at a time (measured on a shared 2-core VM),
    and no per-run statistic removes that."""
    if device.deterministic or not hasattr(os, "getloadavg"):
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.75 * cores:
        logger.warning(
            "%s: the machine is busy (load %.1f on %d cores); timings will carry other processes' load. "
            "Measure on a quiet machine for figures worth keeping.",
            device.name,
            load,
            cores,
        )


class _Session:
    """Measures subgraphs and, spread evenly among them, the whole networks: on a
    timed device both then see the same machine conditions on average."""

    def __init__(
        self,
        device: Device,
        dataset: MeasurementDataset,
        archs: list[ArchConfig],
        *,
        subgraphs: int,
        progress: ProgressFn | None,
    ) -> None:
        self.device, self.dataset, self.pending = device, dataset, list(archs)
        self.every = max(1, subgraphs // (len(archs) + 1))
        self.progress, self.total, self.done = progress, subgraphs + len(archs), 0

    def measure(self, specs: list[SubgraphSpec], *, round_name: str) -> None:
        logger.info("measuring %d subgraphs on %s (%s round)", len(specs), self.device.name, round_name)
        for spec in specs:
            self.dataset.append_subgraph(spec, self.device.measure_subgraph(spec.subgraph()), round_name=round_name)
            self._tick()
            if self.pending and self.done % self.every == 0:
                self._network()

    def finish(self) -> None:
        while self.pending:
            self._network()

    def _network(self) -> None:
        arch = self.pending.pop(0)
        self.dataset.append_network(arch, self.device.measure_network(arch))
        self._tick()

    def _tick(self) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)


# ----- profiling inside whole networks ----------------------------------------------------------------------------
SYNTHETIC_EVERY = 3  # every third profiled network is synthetic (reference-like); the others come from the spaces
# On cpu-ort, every sixth gave 68.6 % of the evaluation networks within ±10 % and every second 46.7 %, against 73.3 %
# for every third (one fresh build each, 2026-11-21; runs on this VM also differ by a few points on their own).
HEAVY_EVERY = 6  # every sixth is a heavy network from the spaces: one over HEAVY_MB of fp32 weights
HEAVY_MB = 16.0
# A draw from the spaces is that heavy one time in ten, so without them profiling saw few networks whose weights no
# longer stay in this CPU's caches from one run to the next, where every subgraph runs slower (the estimator sees
# the network's weight size). cpu-ort, built from scratch with them and that feature: 99.0 % of the evaluation
# networks within ±10 % (over 8 MB of weights: 35 of 36), against 87.6 % (28 of 39) without (2026-11-21).
HEAVY_TRIES = 200  # draws to find a heavy network; none: the heaviest drawn
ADAPTIVE_CANDIDATES = 20  # networks drawn per network the adaptive round still needs; the worst-predicted are kept
FIT_TRIES = 500  # networks drawn to find one whose subgraphs still fit in ``samples``; none: profiling is done


def _profile_in_networks(
    device: Device, dataset: MeasurementDataset, settings: ProfileSettings, progress: ProgressFn | None
) -> None:
    """Profile whole networks while their subgraphs fit in ``settings.samples`` rows: first networks from the
    shipped spaces and synthetic ones in turn (coverage), then networks rich in the strata a quick regressor
    predicts worst (adaptive). Every network's own latency goes to ``networks.csv`` for the overhead term, so
    evaluation never sees a profiled network. The baseline and the reference networks are never profiled."""
    coverage = coverage_for(device.parallelism_factor, seed=settings.seed)
    held_out = {baseline_arch(parallelism_factor=device.parallelism_factor).arch_id}
    held_out |= {arch.arch_id for arch in reference_networks().values()}
    stream = _network_stream(device.parallelism_factor, coverage, seed=settings.seed)
    coverage_count = settings.samples - round(settings.samples * settings.adaptive_share)
    seen = {row["arch_id"] for row in dataset.network_rows} | held_out  # profiled, or never to be
    tick = (lambda: progress(min(len(dataset.rows), settings.samples), settings.samples)) if progress else None
    logger.info("profiling %d subgraphs inside whole networks on %s", settings.samples, device.name)
    fits = lambda arch: len(dataset.rows) + len(plan_network(arch)) <= settings.samples  # noqa: E731
    while dataset.count("coverage") < coverage_count:
        arch = next((a for a in itertools.islice(stream, FIT_TRIES) if a.arch_id not in seen and fits(a)), None)
        if arch is None:
            return
        seen.add(arch.arch_id)
        _profile_one(device, dataset, arch, round_name="coverage", tick=tick)
    weights = _adaptive_weights(dataset, coverage)
    per_network = max(1, dataset.count("coverage") // max(1, len(dataset.network_rows)))
    needed = math.ceil((settings.samples - len(dataset.rows)) / per_network)
    candidates = []
    for arch in stream:
        if len(candidates) >= ADAPTIVE_CANDIDATES * needed:
            break
        if arch.arch_id not in seen:
            seen.add(arch.arch_id)
            candidates.append(arch)
    candidates.sort(key=lambda arch: -_network_weight(arch, weights))
    for arch in candidates:
        if fits(arch):
            _profile_one(device, dataset, arch, round_name="adaptive", tick=tick)


def _profile_one(device: Device, dataset: MeasurementDataset, arch: ArchConfig, *, round_name: str, tick) -> None:
    """One network: its subgraphs' rows, then its own row (which marks it done: a network interrupted before
    that is profiled again on resume)."""
    profile = device.profile_network(arch)
    for block in plan_network(arch):
        spec = SubgraphSpec.from_block(block, arch)
        dataset.append_subgraph(spec, profile.subgraphs[block.name], round_name=round_name, network=arch.arch_id)
    dataset.append_network(arch, profile.network)
    if tick:
        tick()


def _network_weight(arch: ArchConfig, weights: dict[tuple[str, int], float]) -> float:
    strata = [SubgraphSpec.from_block(block, arch).stratum for block in plan_network(arch)]
    return float(np.mean([weights.get(stratum, 0.0) for stratum in strata]))


def _network_stream(parallelism_factor: int, coverage: Coverage, *, seed: int) -> Iterator[ArchConfig]:
    """Endless, deterministic for a seed: architectures sampled from the shipped spaces that have a choice, in
    turn, with every :data:`SYNTHETIC_EVERY`-th one a :func:`synthetic_network` and every :data:`HEAVY_EVERY`-th
    a :func:`heavy_network`."""
    spaces = [space for space in shipped_spaces_for(parallelism_factor) if space.size() > 1]
    rng = np.random.default_rng([seed, 15485863])  # a stream apart from the evaluation's
    for i in itertools.count():
        if i % SYNTHETIC_EVERY == SYNTHETIC_EVERY - 1:
            yield synthetic_network(coverage, rng)
        elif i % HEAVY_EVERY == 0:
            yield heavy_network(spaces, rng)
        else:
            yield spaces[i % len(spaces)].sample(rng)


def heavy_network(spaces: Sequence, rng: np.random.Generator) -> ArchConfig:
    """The first architecture drawn from ``spaces`` in turn with over :data:`HEAVY_MB` of fp32 weights; after
    :data:`HEAVY_TRIES` draws without one, the heaviest drawn."""
    heaviest, most = None, -1.0
    for j in range(HEAVY_TRIES):
        arch = spaces[j % len(spaces)].sample(rng)
        mb = weight_mb(decompose_arch(arch))
        if mb > HEAVY_MB:
            return arch
        if mb > most:
            heaviest, most = arch, mb
    return heaviest


def synthetic_network(coverage: Coverage, rng: np.random.Generator) -> ArchConfig:
    """A mobile CNN outside any one space, drawn from the ranges the spaces and the reference networks cover:
    4-7 stages of IBN (fused IBN one time in three) with widening channels, 1-4 blocks each, the kernels,
    expansions, divisors and activations seen, three stride-2 stages, a 1x1 head conv; redrawn until it is no
    larger than the largest reference network (:data:`SYNTHETIC_MAX_MACS`, :data:`SYNTHETIC_MAX_PARAMS`)."""
    while True:
        arch = _synthetic_draw(coverage, rng)
        counts = count_arch(arch)
        if counts.macs <= SYNTHETIC_MAX_MACS and counts.params <= SYNTHETIC_MAX_PARAMS:
            return arch


SYNTHETIC_MAX_MACS = 150_000_000  # the reference networks at 32x32: 83-115 M MACs
SYNTHETIC_MAX_PARAMS = 4_000_000  # and 2.2-3.4 M parameters


def _synthetic_draw(coverage: Coverage, rng: np.random.Generator) -> ArchConfig:
    stem, ibn, head = coverage.ranges["stem"], coverage.ranges["ibn"], coverage.ranges["head_conv"]
    resolution = int(rng.choice(stem.resolutions))
    count = int(rng.integers(4, 8))
    channels = sorted(_channels(ibn.out_channels, rng) for _ in range(count))
    strided = set(rng.choice(np.arange(1, count), size=min(3, count - 1), replace=False).tolist())
    stages = tuple(
        StageConfig(
            block=str(rng.choice(["ibn", "ibn", "fused_ibn"])),
            kernel=int(rng.choice(ibn.kernels)),
            expansion=1.0 if i == 0 else float(rng.choice([e for e in ibn.expansions if e > 1] or [1.0])),
            channels=c,
            depth=int(rng.integers(1, 5)),
            stride=2 if i in strided else 1,
        )
        for i, c in enumerate(channels)
    )
    return ArchConfig(
        input_channels=stem.in_channels[0],
        resolution=resolution,
        channel_divisor=int(rng.choice(ibn.divisors)),
        activation=str(rng.choice(ibn.activations)),
        stem=StemConfig(kernel=int(rng.choice(stem.kernels)), channels=_channels(stem.out_channels, rng), stride=1),
        stages=stages,
        head=HeadConfig(type="classification", channels=_channels(head.out_channels, rng), num_classes=10),
    )


def overhead_networks(parallelism_factor: int, *, count: int, seed: int = 0) -> list[ArchConfig]:
    """``count`` distinct architectures drawn in turn from the shipped spaces that
    have a choice; every other one keeps only its first stages (a shallower
    network), so that a per-subgraph term can be told from a constant one.
    Evaluation never reuses them (their ids are in the estimator's metadata)."""
    spaces = [space for space in shipped_spaces_for(parallelism_factor) if space.size() > 1]
    rng = np.random.default_rng([seed, 7919])  # a stream of its own, apart from the sampler's
    archs: dict[str, ArchConfig] = {}
    for attempt in range(100 * count):
        if len(archs) >= count:
            break
        arch = spaces[attempt % len(spaces)].sample(rng)
        if len(archs) % 2:
            arch = dataclasses.replace(arch, stages=arch.stages[: rng.integers(1, len(arch.stages))])
        archs.setdefault(arch.arch_id, arch)
    return list(archs.values())


def build_estimator(
    device: str | Device,
    *,
    samples: int | None = None,
    directory: str | Path | None = None,
    networks: int = 12,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> LatencyEstimator:
    """Profile (or finish profiling) ``device``, train its estimator and save it
    in ``directory`` (default: :func:`default_estimator_dir`); ``samples``
    defaults to :func:`default_samples` (600 on sim-npu: seconds; 3,000 on cpu-ort: minutes)."""
    device = get_device(device) if isinstance(device, str) else device
    directory = Path(directory or default_estimator_dir(device.name))
    samples = default_samples(device) if samples is None else samples
    dataset = profile_device(
        device, samples=samples, directory=directory, networks=networks, seed=seed, progress=progress
    )
    estimator = train_from_dataset(dataset, seed=seed)
    estimator.save(directory)
    return estimator


def train_from_dataset(dataset: MeasurementDataset, *, seed: int = 0) -> LatencyEstimator:
    """Train an estimator on every measurement of ``dataset`` (not saved)."""
    if not dataset.rows:
        raise EstimatorError(
            f"{dataset.directory}: no subgraph measurements to train on; run `edgenas latency profile`"
        )
    subgraphs = [spec.subgraph() for spec in dataset.specs()]
    networks = dataset.networks()
    return train_estimator(
        subgraphs,
        dataset.latency_ms(),
        device_metadata=dataset.metadata,
        networks=networks,
        network_weight_mb=network_weights(dataset, networks),
        seed=seed,
    )


def network_weights(dataset: MeasurementDataset, networks: list[tuple[ArchConfig, float]]) -> np.ndarray | None:
    """Per subgraph row, the fp32 weight MB of the network it was timed in; ``None`` when the subgraphs were
    timed alone (no network around them)."""
    if not dataset.rows or not all(row["network"] for row in dataset.rows):
        return None
    weight = {arch.arch_id: weight_mb(decompose_arch(arch)) for arch, _ in networks}
    return np.array([weight[row["network"]] for row in dataset.rows])


@functools.lru_cache(maxsize=8)
def coverage_for(parallelism_factor: int, *, seed: int = 0) -> Coverage:
    """The coverage of the shipped spaces (for this P) and the reference networks."""
    spaces = shipped_spaces_for(parallelism_factor)
    extra = list(reference_networks().values())
    return Coverage.of(spaces, extra=extra, archs_per_space=ARCHS_PER_SPACE, seed=seed)


def _adaptive_weights(dataset: MeasurementDataset, coverage: Coverage) -> dict[tuple[str, int], float]:
    """Per stratum: kind weight x cross-validated mean relative error of a quick regressor."""
    specs = dataset.specs()
    errors = cross_validated_errors(
        [spec.subgraph() for spec in specs], dataset.latency_ms(), parallelism_factor=dataset.parallelism_factor
    )
    by_stratum: dict[tuple[str, int], list[float]] = defaultdict(list)
    for spec, error in zip(specs, errors, strict=True):
        by_stratum[spec.stratum].append(float(error))
    weights = {}
    for stratum in coverage.strata():
        seen = by_stratum.get(stratum)
        mean_error = float(np.mean(seen)) if seen else 1.0  # nothing measured there yet: worst case
        weights[stratum] = KIND_WEIGHT[stratum[0]] * mean_error
    logger.info("adaptive round: stratum errors %s", {f"{k}@{r}": round(w, 3) for (k, r), w in weights.items()})
    return weights
