"""What the ablation and the memory-budget benchmarks share: recipes, search data, final training, measurements.

* :class:`SearchRecipe`: the short schedule every search variant trains its candidates with, on a seeded
  subset of Fashion-MNIST written as IDX files (small val/test splits keep per-candidate evaluation cheap).
* :class:`FinalRecipe`: the longer schedule the baseline and each winner are retrained with, scored on the
  official 10,000-image Fashion-MNIST test set. Results are cached in a JSON file keyed by architecture and
  recipe, so a killed run resumes and the baseline is trained once for every device.
* :func:`use_committed_estimators`: searches score latency with the estimators committed under
  ``results/latency-estimator-<device>/estimator`` (the ones whose accuracy those reports give).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latency_estimator import ESTIMATORS_ENV, get_device, obtain_estimator
from latency_estimator.evaluation import measure_networks
from nas.datasets import FASHION_MNIST_DIR, load_dataset, read_idx
from nas.training import TrainConfig, train_arch
from search_spaces import ArchConfig, count_arch

__all__ = [
    "FinalCache",
    "FinalRecipe",
    "SearchRecipe",
    "arch_numbers",
    "fused_stages",
    "stage_table",
    "use_committed_estimators",
    "write_search_data",
]

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
# Studies and final trainings that cost hours: committed, so that a later session resumes them.
ABLATION_STATE = REPO / "results" / "ablation-state"


@dataclass(frozen=True)
class SearchRecipe:
    # per variant, screened and over-budget candidates included (they cost under a second each): at 30 trials more
    # than half of the points NSGA-II drew were slower than the baseline, and 2-8 candidates per variant trained.
    trials: int = 60
    train_limit: int = 2000  # training images per candidate
    epochs: int = 2  # short schedule; ranks candidates, winners are retrained with FinalRecipe
    screen_ratio: int = 3  # hybrid mode: train the top third by the zero-shot proxy
    # Study-defining, so fixed here rather than following the search default (now `params`): the committed studies
    # were created with synflow, and both proxies grow with network size (results/zero-shot-proxies.md).
    proxy: str = "synflow"
    population_size: int = 8  # NSGA-II: about seven generations in 60 trials
    # Selection needs fully trained candidates: successive halving pruned most after epoch 1 (val 0.2-0.5 there,
    # too noisy to judge), leaving 1 complete candidate in 15 trials. Not study-defining: a study resumes with it.
    pruner: str = "none"
    subset_train: int = 10_000  # IDX training file written for the search: its 10 % (1,000) is the val split
    subset_test: int = 2_000  # IDX test file written for the search (search-time test accuracy)
    seed: int = 0

    def search_options(self, data_dir: Path) -> dict[str, Any]:
        """The ``run_search`` keywords of this recipe, the same for every benchmark.

        The search default (``surrogate``) in multishot mode: with NSGA-II in hybrid mode the full ablation on
        sim-npu-p32 (2026-12-02) stopped at its proposal limit after 7 of 60 evaluations in V1 (1,351 of 1,600
        proposals were duplicates) and 3 of 60 in V2; the surrogate needs one proposal per evaluation
        (``results/search-quality.md``). The proxy, screening and population fields go unused then.
        """
        return {
            "trials": self.trials,
            "strategy": "surrogate",
            "mode": "multishot",
            "epochs": self.epochs,
            "train_limit": self.train_limit,
            "data_dir": data_dir,
            "seed": self.seed,
            "population_size": self.population_size,
            "screen_ratio": self.screen_ratio,
            "proxy": self.proxy,
            "pruner": self.pruner,
        }

    def describe(self) -> str:
        return (
            f"{self.trials} trainings per variant, surrogate strategy, multishot mode (every feasible new candidate "
            f"trained, pruner {self.pruner}), "
            f"{self.epochs} epochs on {self.train_limit:,} training images of a seeded Fashion-MNIST subset "
            f"(val {self.subset_train // 10:,}, test {self.subset_test:,} images), batch 64, lr 0.1, seed {self.seed}"
        )


@dataclass(frozen=True)
class FinalRecipe:
    train_limit: int = 8000
    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.1
    val_fraction: float = 0.02  # 1,200 of Fashion-MNIST's 60,000 training images: scored every epoch
    seed: int = 0
    data_dir: str | None = None  # None: the installed Fashion-MNIST (test = its 10,000 images)

    def key(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def describe(self) -> str:
        data = "Fashion-MNIST" if self.data_dir is None else f"the IDX files in {self.data_dir}"
        return (
            f"{self.epochs} epochs on {self.train_limit:,} training images of {data}, batch {self.batch_size}, "
            f"SGD+Nesterov lr {self.lr} cosine, seed {self.seed}; test accuracy on its whole test split"
        )


class FinalCache:
    """Final trainings in a JSON file: ``{recipe key: {arch_id: {val_accuracy, test_accuracy, seconds}}}``."""

    def __init__(self, path: Path, recipe: FinalRecipe) -> None:
        self.path, self.recipe = path, recipe
        self._datasets: dict[int, Any] = {}  # by input resolution

    def _load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, arch: ArchConfig) -> dict[str, float] | None:
        return self._load().get(self.recipe.key(), {}).get(arch.arch_id)

    def train(self, arch: ArchConfig, label: str) -> dict[str, float]:
        cached = self.get(arch)
        if cached is not None:
            return cached
        logger.info("final training of %s (%s): %s", label, arch.arch_id, self.recipe.describe())
        r = self.recipe
        config = TrainConfig(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, seed=r.seed, threads=1)
        _, result = train_arch(arch, self._data(arch.resolution), config=config)
        entry = {"val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy, "seconds": result.seconds}
        entry["block_string"] = arch.block_string()
        document = self._load()  # re-read: another process may have added entries meanwhile
        document.setdefault(r.key(), {})[arch.arch_id] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(document, indent=1) + "\n")
        os.replace(tmp, self.path)
        return entry

    def _data(self, resolution: int):
        if resolution not in self._datasets:
            r = self.recipe
            self._datasets[resolution] = load_dataset(
                "fashion-mnist",
                resolution=resolution,
                seed=r.seed,
                data_dir=r.data_dir,
                val_fraction=r.val_fraction,
                limit=r.train_limit,
            )
        return self._datasets[resolution]


def write_search_data(folder: Path, recipe: SearchRecipe) -> Path:
    """A seeded, class-balanced subset of Fashion-MNIST as IDX files that ``--data-dir`` accepts."""
    if (folder / "t10k-labels-idx1-ubyte.gz").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(recipe.seed)
    for prefix, count in (("train", recipe.subset_train), ("t10k", recipe.subset_test)):
        images = read_idx(_idx(prefix, "images-idx3"))
        labels = read_idx(_idx(prefix, "labels-idx1"))
        keep = np.sort(rng.permutation(len(labels))[:count])
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images[keep])
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels[keep])
    return folder


def _idx(prefix: str, kind: str) -> Path:
    path = FASHION_MNIST_DIR / f"{prefix}-{kind}-ubyte"
    return path if path.exists() else path.with_name(path.name + ".gz")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def use_committed_estimators(folder: Path, device: str) -> None:
    """Point ``EDGENAS_ESTIMATORS`` at ``folder``, linking the committed estimator of ``device`` when it has one."""
    committed = REPO / "results" / f"latency-estimator-{device}" / "estimator"
    link = folder / device
    folder.mkdir(parents=True, exist_ok=True)
    if not link.exists() and (committed / "model.json").exists():
        link.symlink_to(committed)
    os.environ[ESTIMATORS_ENV] = str(folder)


def arch_numbers(archs: list[ArchConfig], device: str) -> dict[str, dict[str, float]]:
    """arch_id -> estimated and measured latency (ms), params, MACs and peak activation KiB at the device's data type.

    The networks are measured together, each the fastest of the device's whole-network passes (one for a
    simulation; on a timed device passes at least seconds apart, interleaved, so that a change of load hits all
    of them, as :mod:`benchmarks.latency_estimator` measures): one quick run each moved cpu-ort's baseline from
    0.63 to 0.98 ms between two runs on a loaded machine."""
    dev = get_device(device)
    unique = list({arch.arch_id: arch for arch in archs}.values())
    start = time.perf_counter()
    timed = measure_networks(dev, [(arch.arch_id, "ablation", arch) for arch in unique])
    logger.info("measured %d networks on %s in %.1f s", len(unique), device, time.perf_counter() - start)
    predicted = estimator(device).predict_many(unique)
    out = {}
    for arch, estimated_ms in zip(unique, predicted, strict=True):
        counts = count_arch(arch, dtype_bytes=dev.dtype_bytes)
        out[arch.arch_id] = {
            "estimated_ms": float(estimated_ms),
            "measured_ms": float(timed[arch.arch_id].fastest.latency_ms),
            "params": counts.params,
            "macs": counts.macs,
            "peak_kib": counts.peak_activation_bytes / 1024,
        }
    return out


@functools.cache
def estimator(device: str):
    return obtain_estimator(device)


def fused_stages(arch: ArchConfig) -> list[int]:
    return [i for i, stage in enumerate(arch.stages) if stage.block == "fused_ibn"]


def with_block(arch: ArchConfig, index: int, block: str) -> ArchConfig:
    stages = list(arch.stages)
    stages[index] = dataclasses.replace(stages[index], block=block)
    return dataclasses.replace(arch, stages=tuple(stages))


def stage_table(arch: ArchConfig, device: str) -> list[dict[str, Any]]:
    """Per fused stage: MACs and estimated latency as chosen (fused IBN) and as the same stage with IBN."""
    est = estimator(device)
    rows = []
    for i in fused_stages(arch):
        as_ibn = with_block(arch, i, "ibn")
        rows.append(
            {
                "stage": i,
                "macs_fused": _stage_macs(arch, i),
                "macs_ibn": _stage_macs(as_ibn, i),
                "ms_fused": _stage_ms(est.predict(arch), i),
                "ms_ibn": _stage_ms(est.predict(as_ibn), i),
            }
        )
    return rows


def _stage_macs(arch: ArchConfig, index: int) -> int:
    return sum(layer.macs for layer in count_arch(arch).layers if layer.name.startswith(f"stages.{index}."))


def _stage_ms(prediction, index: int) -> float:
    return sum(part.latency_ms for part in prediction.breakdown if part.name.startswith(f"stages.{index}."))
