"""How a feasible candidate gets its first objective value: the three search modes.

* ``multishot``: a few epochs on the training subset, validated every epoch;
  each epoch is reported to the pruner of the ``<study>.fidelity`` study,
  which stops poor candidates early (PRUNED).
* ``zeroshot``: no training; the value is a trainability proxy (nas.proxies)
  of the network at initialisation.
* ``hybrid``: every feasible candidate is scored by the proxy; it is trained
  (multishot) only when its score is among the top ``1/screen_ratio`` of the
  candidates *of similar latency*: precisely, when fewer than ``ceil(n / K)``
  of the ``n`` scores (itself and its ``NEIGHBOURS_PER_RATIO * K`` nearest
  neighbours in latency among this study's screened candidates, every
  worker's, and a reference pool of ``REFERENCE_PER_RATIO * K`` feasible
  architectures spread over the feasible latency range, scored when the study
  is created) beat it. Ranked against all candidates, a size-driven proxy
  (params, synflow) would train only the largest, slowest networks; ranked
  against its latency neighbours, the best of every latency trains. The others
  are recorded as SCREENED (Optuna state PRUNED) and never trained; they are
  free proposals, not evaluations.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Callable

import numpy as np
import optuna

from nas.datasets import DENSE_DATASETS, Dataset, load_dataset
from nas.dense_datasets import DenseDataset, load_dense_dataset
from nas.dense_training import train_dense_arch
from nas.proxies import ProxyBatches, proxy_batches, score_arch
from nas.search.settings import SearchSettings
from nas.training import TrainConfig, TrainResult, train_arch
from search_spaces import ArchConfig

__all__ = [
    "REFERENCE_ATTR",
    "REFERENCE_PER_RATIO",
    "DataCache",
    "Evaluator",
    "HybridEvaluator",
    "MultiShotEvaluator",
    "ZeroShotEvaluator",
    "make_evaluator",
    "set_outcome",
]

logger = logging.getLogger(__name__)

# [proxy score, latency ms] of the reference pool (``edgenas.proxy_reference``, scores only, was the old global pool)
REFERENCE_ATTR = "edgenas.proxy_reference_points"
# Reference pool per unit of screen ratio, spread over the feasible latency range: every candidate has
# NEIGHBOURS_PER_RATIO * K neighbours of similar latency to be ranked against from the first trial.
REFERENCE_PER_RATIO = 12
NEIGHBOURS_PER_RATIO = 3


def set_outcome(trial: optuna.Trial, outcome: str, reason: str = "") -> None:
    """The edgenas state of a trial (COMPLETE, INFEASIBLE, PRUNED, SCREENED, FAIL) and why."""
    trial.set_user_attr("outcome", outcome)
    trial.set_user_attr("reason", reason)


class DataCache:
    """Datasets (and proxy batches) by resolution, loaded on first use."""

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings
        self._datasets: dict[int, Dataset | DenseDataset] = {}
        self._batches: dict[int, ProxyBatches] = {}

    def dataset(self, resolution: int) -> Dataset | DenseDataset:
        if resolution not in self._datasets:
            s = self.settings
            if s.dataset in DENSE_DATASETS:  # read lazily; boxes and masks
                self._datasets[resolution] = load_dense_dataset(
                    s.dataset,
                    resolution=resolution,
                    seed=s.seed,
                    data_dir=s.data_dir,
                    limit=s.train_limit,
                    eval_limit=s.eval_limit,
                )
            else:
                self._datasets[resolution] = load_dataset(
                    s.dataset, resolution=resolution, seed=s.seed, data_dir=s.data_dir, limit=s.train_limit
                )
        return self._datasets[resolution]

    def proxy_data(self, resolution: int) -> ProxyBatches:
        if resolution not in self._batches:
            train = self.dataset(resolution).train
            self._batches[resolution] = proxy_batches(train.x, train.y, seed=self.settings.seed)
        return self._batches[resolution]


class Evaluator(abc.ABC):
    """Gives a feasible candidate its first objective value, inside its trial.

    :meth:`prepare` is called once per worker run, before the first trial.
    :meth:`evaluate` is called once per feasible candidate (budgets already
    passed, not a duplicate); it returns the value to maximise, records what it
    measured as trial user attributes, raises ``optuna.TrialPruned`` after
    :func:`set_outcome` to stop a poor candidate, and lets failures propagate
    (the objective records them as FAIL).
    """

    def prepare(self, study: optuna.Study) -> None:  # noqa: B027 - optional hook
        """Per-run set-up; nothing by default."""

    def screen(self, trial: optuna.Trial, arch: ArchConfig) -> None:  # noqa: B027 - optional hook
        """Called before :meth:`evaluate`; raises ``optuna.TrialPruned`` (after :func:`set_outcome`) to skip it.

        A screened candidate is a free proposal: it does not use one of the study's evaluations.
        Nothing is screened by default.
        """

    @abc.abstractmethod
    def evaluate(self, trial: optuna.Trial, arch: ArchConfig) -> float: ...

    @abc.abstractmethod
    def reference(self, arch: ArchConfig) -> dict[str, float]:
        """``value`` (and ``test_accuracy`` when trained) of a reference network, e.g. the baseline, unpruned."""


class ZeroShotEvaluator(Evaluator):
    def __init__(self, settings: SearchSettings, data: DataCache) -> None:
        self.proxy, self.seed, self.threads, self.data = settings.proxy, settings.seed, settings.threads, data

    def score(self, arch: ArchConfig) -> float:
        data = self.data.proxy_data(arch.resolution)
        return score_arch(arch, data, proxy=self.proxy, seed=self.seed, threads=self.threads)

    def evaluate(self, trial: optuna.Trial, arch: ArchConfig) -> float:
        value = self.score(arch)
        trial.set_user_attr("proxy_score", value)
        return value

    def reference(self, arch: ArchConfig) -> dict[str, float]:
        return {"value": self.score(arch)}


class MultiShotEvaluator(Evaluator):
    def __init__(self, settings: SearchSettings, data: DataCache, fidelity: optuna.Study) -> None:
        self.data, self.fidelity, self.epochs = data, fidelity, settings.epochs
        self.config = TrainConfig(
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            lr=settings.lr,
            seed=settings.seed,
            threads=settings.threads,
        )

    def evaluate(self, trial: optuna.Trial, arch: ArchConfig) -> float:
        rung = self.fidelity.ask()
        rung.set_user_attr("trial", trial.number)
        history: list[float] = []
        try:
            result = self.train(arch, on_epoch=self._on_epoch(trial, rung, history))
        except optuna.TrialPruned:
            self.fidelity.tell(rung, state=optuna.trial.TrialState.PRUNED)
            raise
        except BaseException:
            self.fidelity.tell(rung, state=optuna.trial.TrialState.FAIL)
            raise
        self.fidelity.tell(rung, result.val_accuracy)
        for key, value in (("test_accuracy", result.test_accuracy), ("train_seconds", result.seconds)):
            trial.set_user_attr(key, value)
        return result.val_accuracy

    def train(self, arch: ArchConfig, *, on_epoch: Callable[[int, float], None] | None = None) -> TrainResult:
        dataset = self.data.dataset(arch.resolution)
        train = train_arch if arch.task == "classification" else train_dense_arch
        _, result = train(arch, dataset, config=self.config, on_epoch=on_epoch)
        return result

    def reference(self, arch: ArchConfig) -> dict[str, float]:
        result = self.train(arch)
        return {"value": result.val_accuracy, "test_accuracy": result.test_accuracy}

    def _on_epoch(self, trial: optuna.Trial, rung: optuna.Trial, history: list[float]) -> Callable[[int, float], None]:
        def on_epoch(epoch: int, val_accuracy: float) -> None:
            history.append(val_accuracy)
            trial.set_user_attr("val_history", list(history))
            trial.set_user_attr("val_accuracy", val_accuracy)
            rung.report(val_accuracy, epoch)
            # The last epoch's result is in hand: pruning it would only throw it away.
            if epoch < self.epochs and rung.should_prune():
                set_outcome(trial, "PRUNED", f"pruned after epoch {epoch}/{self.epochs} (val {val_accuracy:.3f})")
                raise optuna.TrialPruned(f"epoch {epoch}")

        return on_epoch


class HybridEvaluator(Evaluator):
    def __init__(
        self,
        settings: SearchSettings,
        zeroshot: ZeroShotEvaluator,
        multishot: MultiShotEvaluator,
        reference_archs: Callable[[int], list[ArchConfig]],
        latency_fn: Callable[[list[ArchConfig]], np.ndarray],
    ) -> None:
        self.ratio, self.proxy = settings.screen_ratio, settings.proxy
        self.zeroshot, self.multishot, self.reference_archs = zeroshot, multishot, reference_archs
        self.latency_fn = latency_fn
        self.study: optuna.Study | None = None

    def prepare(self, study: optuna.Study) -> None:
        """Score the reference pool once per study (the first worker to start does it)."""
        self.study = study
        if REFERENCE_ATTR not in study.user_attrs:
            archs = self.reference_archs(REFERENCE_PER_RATIO * self.ratio)
            latencies = np.asarray(self.latency_fn(archs), dtype=float) if archs else np.zeros(0)
            points = [[self.zeroshot.score(arch), float(ms)] for arch, ms in zip(archs, latencies)]
            study.set_user_attr(REFERENCE_ATTR, points)
            logger.info("hybrid: scored a reference pool of %d feasible architectures", len(archs))

    def screen(self, trial: optuna.Trial, arch: ArchConfig) -> None:
        score = self.zeroshot.evaluate(trial, arch)
        latency_ms = float(trial.user_attrs["latency_ms"])
        pool = _nearest(self._screened_points(trial.number), latency_ms, NEIGHBOURS_PER_RATIO * self.ratio)
        n = len(pool) + 1
        quota = math.ceil(n / self.ratio)
        better = sum(other > score for other, _ in pool)
        trial.set_user_attr("proxy_rank", better + 1)
        if better >= quota:
            reason = (
                f"{self.proxy} {score:.4g} ranks {better + 1} of the {n} screened nearest in latency; "
                f"the top {quota} (1/{self.ratio}) train"
            )
            set_outcome(trial, "SCREENED", reason)
            raise optuna.TrialPruned(reason)

    def evaluate(self, trial: optuna.Trial, arch: ArchConfig) -> float:
        return self.multishot.evaluate(trial, arch)

    def reference(self, arch: ArchConfig) -> dict[str, float]:
        return {**self.multishot.reference(arch), "proxy_score": self.zeroshot.score(arch)}

    def _screened_points(self, number: int) -> list[tuple[float, float]]:
        """(proxy score, latency ms) of the reference pool and every other screened candidate of the study."""
        assert self.study is not None, "prepare() runs before the first trial"
        study = self.study
        points = [(float(s), float(ms)) for s, ms in study.user_attrs.get(REFERENCE_ATTR, [])]
        for other in study.get_trials(deepcopy=False):
            attrs = other.user_attrs
            if other.number != number and "proxy_score" in attrs and "duplicate_of" not in attrs:
                points.append((float(attrs["proxy_score"]), float(attrs["latency_ms"])))
        return points


def _nearest(points: list[tuple[float, float]], latency_ms: float, count: int) -> list[tuple[float, float]]:
    """The ``count`` points closest to ``latency_ms`` (on a log scale: a ratio of latencies is what matters)."""
    target = math.log(max(latency_ms, 1e-12))
    return sorted(points, key=lambda p: abs(math.log(max(p[1], 1e-12)) - target))[:count]


def make_evaluator(
    settings: SearchSettings,
    data: DataCache,
    fidelity: optuna.Study | None,
    reference_archs: Callable[[int], list[ArchConfig]],
    latency_fn: Callable[[list[ArchConfig]], np.ndarray],
) -> Evaluator:
    if settings.mode == "zeroshot":
        return ZeroShotEvaluator(settings, data)
    assert fidelity is not None, "training modes report to the fidelity study"
    multishot = MultiShotEvaluator(settings, data, fidelity)
    if settings.mode == "multishot":
        return multishot
    return HybridEvaluator(settings, ZeroShotEvaluator(settings, data), multishot, reference_archs, latency_fn)
