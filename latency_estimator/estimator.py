"""The estimator: a network's latency as the sum of its subgraphs' predicted latencies, corrected by the
per-network overhead term; predicting one network, many at once (batched), and the estimator folder.

An estimator is a folder: XGBoost's own JSON model file(s) beside ``metadata.json`` (device, profile, feature
names, prior, layout, overhead term, versions, checksums). Loading checks that the folder belongs to the device.
The default folder of device ``D`` is ``results/estimators/D`` under the current directory, or
``$EDGENAS_ESTIMATORS/D`` when that is set.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from latency_estimator.batch import CONTEXT_FEATURE, SubgraphBatch, network_context
from latency_estimator.devices import get_device
from latency_estimator.errors import EstimatorError
from latency_estimator.overhead import NetworkTotals, OverheadModel
from latency_estimator.prior import Prior
from latency_estimator.regressor import SubgraphModel
from latency_estimator.subgraph import DENSE_KINDS, KINDS, Subgraph, decompose_arch, weight_mb
from search_spaces import ArchConfig, DenseHeadConfig, HeadConfig, StemConfig, plan_network

__all__ = [
    "ESTIMATORS_ENV",
    "FORMAT_VERSION",
    "LatencyEstimator",
    "Prediction",
    "SubgraphLatency",
    "default_estimator_dir",
    "load_estimator",
]

logger = logging.getLogger(__name__)


ESTIMATORS_ENV = "EDGENAS_ESTIMATORS"
FORMAT_VERSION = 1


def default_estimator_dir(device: str) -> Path:
    """``$EDGENAS_ESTIMATORS/<device>``, else ``results/estimators/<device>`` under the current directory."""
    return Path(os.environ.get(ESTIMATORS_ENV) or "results/estimators") / device


@dataclass(frozen=True)
class SubgraphLatency:
    name: str
    kind: str
    latency_ms: float


@dataclass(frozen=True)
class Prediction:
    """``latency_ms`` = overhead term applied to the sum of ``breakdown``;
    ``overhead_ms`` is the difference (negative when the network runs faster
    than its parts run alone, e.g. activations kept on chip)."""

    latency_ms: float
    breakdown: tuple[SubgraphLatency, ...]

    @property
    def overhead_ms(self) -> float:
        return self.latency_ms - sum(part.latency_ms for part in self.breakdown)


@dataclass
class _Piece:
    """A stem, a stage or a head as the batched path caches it (by its input shape and config), with its predicted
    latency per network context (:func:`network_context`; ``None`` for an estimator without context)."""

    out_channels: int
    out_size: int
    subgraphs: list[Subgraph]
    weight_mb: float
    latency_ms: dict[float | None, float] = field(default_factory=dict)


class LatencyEstimator:
    """Predicts a network's latency on one device from its subgraphs."""

    MODEL_FILE = "model{suffix}.json"
    META_FILE = "metadata.json"
    MAX_CACHED_PIECES = 200_000

    def __init__(self, *, model: SubgraphModel, overhead: OverheadModel, metadata: dict[str, Any]) -> None:
        self.model = model
        self.overhead = overhead
        self.metadata = metadata
        self.parallelism_factor = int(metadata["parallelism_factor"])
        self.directory: Path | None = None  # the folder it was loaded from, if any
        self._pieces: dict[tuple, _Piece] = {}

    @property
    def uses_context(self) -> bool:
        """Whether its subgraphs see the weight size of their network (trained on subgraphs timed inside networks)."""
        return CONTEXT_FEATURE in self.model.feature_names

    @property
    def device(self) -> str:
        return str(self.metadata["device"])

    @property
    def kinds(self) -> tuple[str, ...]:
        """The subgraph kinds its features one-hot encode: those it can predict."""
        return tuple(kind for kind in KINDS if f"kind_{kind}" in self.model.feature_names)

    def require_kinds(self, kinds: Sequence[str]) -> None:
        """Raise :class:`EstimatorError` (one line: rebuild it) unless the estimator predicts every one of ``kinds``
        (an estimator built before dense networks were estimated has no column for theirs)."""
        unknown = sorted(set(kinds) - set(self.kinds))
        if unknown:
            dense = [kind for kind in unknown if kind in DENSE_KINDS]
            why = "it was built before edgenas estimated dense networks" if dense else "it was trained without them"
            where = f"{self.directory}: the" if self.directory else "the"
            raise EstimatorError(
                f"{where} {self.device} estimator cannot predict {', '.join(unknown)} subgraphs ({why}); rebuild "
                f"it: delete the folder (a simulated device's is then built again on first use), or run "
                f"`edgenas latency profile --device {self.device}` and `edgenas latency train --device {self.device}`"
            )

    def _batch(self, subgraphs: Sequence[Subgraph]) -> SubgraphBatch:
        self.require_kinds({sg.kind for sg in subgraphs})
        return SubgraphBatch.of(subgraphs, self.parallelism_factor, kinds=self.kinds)

    # ----- one network ------------------------------------------------------
    def predict(self, arch: ArchConfig) -> Prediction:
        return self.predict_subgraphs(decompose_arch(arch))

    def predict_subgraphs(self, subgraphs: Sequence[Subgraph]) -> Prediction:
        """The prediction for a network given as its subgraphs (e.g. from an ONNX file)."""
        latency = self.subgraph_latency_ms(subgraphs)
        breakdown = tuple(SubgraphLatency(sg.name, sg.kind, float(ms)) for sg, ms in zip(subgraphs, latency))
        totals = NetworkTotals.of(latency.sum(), len(subgraphs), weight_mb(subgraphs))
        return Prediction(latency_ms=float(self.overhead.apply(totals)[0]), breakdown=breakdown)

    def subgraph_latency_ms(self, subgraphs: Sequence[Subgraph], *, network_weight_mb=None) -> np.ndarray:
        """Predicted latency of each subgraph in ms. An estimator that :attr:`uses_context` also takes the weight
        size of the network around them (one value, or one per subgraph; default: they are one whole network)."""
        batch = self._batch(subgraphs)
        return self._latency_ms(batch, weight_mb(subgraphs) if network_weight_mb is None else network_weight_mb)

    def _latency_ms(self, batch: SubgraphBatch, network_weight_mb: float | np.ndarray | None) -> np.ndarray:
        return self.model.predict_ms(batch.with_context(network_weight_mb) if self.uses_context else batch)

    # ----- many networks ----------------------------------------------------
    def predict_many(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Latency in ms of every architecture, batched: stems, stages and heads are
        decomposed once per distinct (input shape, config) and cached, with their latency per network context;
        all new ones are predicted in one XGBoost call. Equals ``predict(arch).latency_ms``."""
        if len(self._pieces) > self.MAX_CACHED_PIECES:
            self._pieces.clear()
        with _gc_paused():  # it makes many small objects and no cycles: collections would only cost time
            networks = [self._pieces_of(arch) for arch in archs]
            weights = [sum(piece.weight_mb for piece in pieces) for pieces in networks]
            contexts = network_context(np.array(weights)).tolist() if self.uses_context else [None] * len(archs)
            self._predict_pending(networks, contexts)
        totals = NetworkTotals.of(
            [sum(piece.latency_ms[context] for piece in pieces) for pieces, context in zip(networks, contexts)],
            [sum(len(piece.subgraphs) for piece in pieces) for pieces in networks],
            weights,
        )
        return self.overhead.apply(totals)

    def _pieces_of(self, arch: ArchConfig) -> list[_Piece]:
        common = (arch.channel_divisor, arch.activation)
        pieces = [self._piece(("stem", arch.input_channels, arch.resolution, arch.stem, *common), arch)]
        for stage in arch.stages:
            prev = pieces[-1]
            pieces.append(self._piece(("stage", prev.out_channels, prev.out_size, stage, *common), arch))
        if isinstance(arch.head, DenseHeadConfig):  # it reads several stages: keyed by the tapped shapes
            taps = tuple((pieces[1 + t].out_channels, pieces[1 + t].out_size) for t in arch.head.taps)
            pieces.append(self._piece(("dense_head", taps, arch.resolution, arch.head, *common), arch))
            return pieces
        prev = pieces[-1]
        pieces.append(self._piece(("head", prev.out_channels, prev.out_size, arch.head, *common), arch))
        return pieces

    def _piece(self, key: tuple, arch: ArchConfig) -> _Piece:
        piece = self._pieces.get(key)
        if piece is None:
            piece = self._pieces[key] = _decompose_piece(key, arch)
        return piece

    def _predict_pending(self, networks: list[list[_Piece]], contexts: list[float | None]) -> None:
        """Predict, in one call, every (piece, context) of these networks not predicted yet (the features of a piece
        are computed once for all its contexts)."""
        pending = {
            (id(piece), context): (piece, context)
            for pieces, context in zip(networks, contexts)
            for piece in pieces
            if context not in piece.latency_ms
        }
        if not pending:
            return
        items = list(pending.values())
        pieces = list({id(piece): piece for piece, _ in items}.values())
        batch = self._batch([sg for piece in pieces for sg in piece.subgraphs])
        first_row = dict(zip(map(id, pieces), np.cumsum([0] + [len(piece.subgraphs) for piece in pieces[:-1]])))
        sizes = [len(piece.subgraphs) for piece, _ in items]
        rows = np.concatenate(
            [np.arange(first_row[id(piece)], first_row[id(piece)] + len(piece.subgraphs)) for piece, _ in items]
        )
        context_mb = np.repeat([context for _, context in items], sizes) if self.uses_context else None
        latency = self._latency_ms(batch.take(rows), context_mb)
        for (piece, context), total in zip(items, np.add.reduceat(latency, np.cumsum([0] + sizes[:-1]))):
            piece.latency_ms[context] = float(total)

    # ----- files ------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the model file(s) and ``metadata.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {}
        for kind, booster in self.model.boosters.items():
            name = self.MODEL_FILE.format(suffix="" if kind == "*" else f"-{kind}")
            booster.save_model(directory / name)
            files[kind] = {"file": name, "sha256": _sha256(directory / name)}
        self.metadata = {
            **self.metadata,
            "prior": self.model.prior.to_dict(),
            "layout": self.model.layout,
            "loss": self.model.loss,
            "feature_names": list(self.model.feature_names),
            "overhead": self.overhead.to_dict(),
            "files": files,
        }
        (directory / self.META_FILE).write_text(json.dumps(self.metadata, indent=2, default=str) + "\n")
        logger.info("saved the %s estimator to %s", self.device, directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None, profile: dict | None = None) -> LatencyEstimator:
        """Load a saved estimator; ``device`` / ``profile``, when given, must match what it was trained for."""
        directory = Path(directory)
        metadata = _read_metadata(directory / cls.META_FILE, device)
        if device is not None and metadata["device"] != device:
            raise EstimatorError(
                f"{directory}: the estimator there is for device {metadata['device']!r}, not {device!r}; "
                f"build one with `edgenas latency profile --device {device}` and `edgenas latency train`"
            )
        if profile is not None and metadata["profile"] != profile:
            raise EstimatorError(
                f"{directory}: the estimator was trained for another profile of {metadata['device']!r} "
                f"(its P or settings have changed since); rebuild it"
            )
        try:  # a field of the wrong type (found by tests/test_fuzz_loaders.py) is corrupted metadata too
            prior = Prior(metadata["prior"]["form"], tuple(metadata["prior"]["coefficients"]))
            overhead = OverheadModel(**metadata["overhead"])
            boosters = {kind: _read_booster(directory, entry) for kind, entry in _files_of(metadata, directory).items()}
            names = tuple(metadata["feature_names"])
            loss = metadata.get("loss", "squared")  # saved before the loss was a choice: trained on squared error
            model = SubgraphModel(
                prior=prior, layout=metadata["layout"], boosters=boosters, feature_names=names, loss=loss
            )
            estimator = cls(model=model, overhead=overhead, metadata=metadata)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise EstimatorError(f"{directory / cls.META_FILE}: corrupted estimator metadata ({exc!r})") from None
        estimator.directory = directory
        return estimator


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (back on after it, if it was on): decomposing 10,000 new
    architectures allocates millions of objects, and the collections they set off cost up to half the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _decompose_piece(key: tuple, arch: ArchConfig) -> _Piece:
    """The subgraphs of one stem / stage / head, from a network holding only it
    (a 1x1 relay stem brings the input to the piece's input shape)."""
    if key[0] == "dense_head":  # the head's blocks of the whole network (its neck needs the tapped stages)
        subgraphs = [sg for sg in decompose_arch(arch) if sg.name.startswith("head.")]
        return _Piece(0, 0, subgraphs, weight_mb=weight_mb(subgraphs))
    what, channels, size, config, divisor, activation = key
    relay = StemConfig(kernel=1, channels=channels, stride=1)
    no_head = HeadConfig(type="classification", channels=0, num_classes=max(2, arch.head.num_classes))
    parts = {
        "stem": {"input_channels": channels, "stem": config, "stages": (), "head": no_head},
        "stage": {"input_channels": 1, "stem": relay, "stages": (config,), "head": no_head},
        "head": {"input_channels": 1, "stem": relay, "stages": (), "head": config},
    }[what]
    holder = ArchConfig(resolution=size, channel_divisor=divisor, activation=activation, **parts)
    prefix = {"stem": "stem", "stage": "stages.", "head": "head."}[what]
    blocks = [block for block in plan_network(holder) if block.name.startswith(prefix)]
    subgraphs = [Subgraph.from_block(block, activation=activation) for block in blocks]
    out_channels, out_size, _ = subgraphs[-1].out_shape
    return _Piece(out_channels, out_size, subgraphs, weight_mb=weight_mb(subgraphs))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_metadata(path: Path, device: str | None) -> dict[str, Any]:
    if not path.is_file():
        what = f"for device {device!r} " if device else ""
        raise EstimatorError(
            f"{path.parent}: no latency estimator {what}here (no {path.name}); "
            f"build one with `edgenas latency profile` and `edgenas latency train`"
        )
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EstimatorError(f"{path}: corrupted estimator metadata ({' '.join(str(exc).split())})") from None
    required = ("format_version", "device", "profile", "parallelism_factor", "prior", "layout", "feature_names")
    missing = [key for key in (*required, "overhead", "files") if not isinstance(metadata, dict) or key not in metadata]
    if missing:
        raise EstimatorError(f"{path}: corrupted estimator metadata (missing {missing})")
    if metadata["format_version"] != FORMAT_VERSION:
        raise EstimatorError(
            f"{path}: estimator format {metadata['format_version']}, this edgenas reads {FORMAT_VERSION}"
        )
    return metadata


def _files_of(metadata: dict[str, Any], directory: Path) -> dict[str, dict[str, str]]:
    files = metadata["files"]
    single = metadata["layout"] == "single"
    if not isinstance(files, dict) or "*" not in files or (single and set(files) != {"*"}):
        raise EstimatorError(f"{directory / LatencyEstimator.META_FILE}: corrupted estimator metadata (model files)")
    return files


def _read_booster(directory: Path, entry: dict[str, str]) -> xgb.Booster:
    path = directory / entry["file"]
    if not path.is_file():
        raise EstimatorError(f"{path}: estimator model file is missing")
    if _sha256(path) != entry["sha256"]:
        raise EstimatorError(f"{path}: corrupted estimator model file (its checksum differs from metadata.json)")
    booster = xgb.Booster()
    try:
        booster.load_model(path)
    except xgb.core.XGBoostError as exc:
        raise EstimatorError(f"{path}: corrupted estimator model file ({str(exc).splitlines()[0]})") from None
    booster.set_param({"nthread": 1})
    return booster


def load_estimator(device: str, *, path: str | Path | None = None) -> LatencyEstimator:
    """The saved estimator of ``device`` from ``path`` (default: :func:`default_estimator_dir`);
    it must have been trained for this device as its profile stands now."""
    profile = get_device(device).profile.to_dict()
    return LatencyEstimator.load(path or default_estimator_dir(device), device=device, profile=profile)
