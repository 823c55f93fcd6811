"""SearchSettings: every knob of a search, its default and the reason for it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.proxy_names import DEFAULT_PROXY
from nas.search.budgets import Budgets, SearchError
from nas.search.storage_url import mask_url

__all__ = ["MODES", "PRUNERS", "STRATEGIES", "SearchSettings", "defining_settings"]

STRATEGIES = ("evolution", "tpe", "random", "gp", "surrogate")
MODES = ("multishot", "zeroshot", "hybrid")
PRUNERS = ("successive-halving", "hyperband", "median", "none")

# Settings that change what a trial's values mean: a study resumed with other values would mix incomparable trials.
STUDY_DEFINING = (
    "space",
    "device",
    "dataset",
    "mode",
    "latency_budget_ms",
    "max_params",
    "max_peak_memory_kb",
    "memory_objective",
    "proxy",
    "epochs",
    "train_limit",
    "eval_limit",
    "batch_size",
    "lr",
)


@dataclass(frozen=True)
class SearchSettings:
    space: str  # search-space YAML; loaded at the device's parallelism factor P
    device: str  # latency_estimator device name (sim-npu-p32, cpu-ort, ...)
    dataset: str  # nas.datasets name
    study: str = "edgenas"  # Optuna study name, and the folder results/<study>/
    # The study's target, all workers together: candidates evaluated (trained, or scored in zeroshot mode).
    # Budget breakers, duplicates and screened candidates are free proposals (nas.search.counting).
    trials: int = 60
    # The best measured in results/search-quality.md: nearly every proposal is feasible and new, so nearly every
    # proposal is an evaluation, and the front fills from the fastest feasible network to the budget.
    strategy: str = "surrogate"
    mode: str = "hybrid"
    latency_budget_ms: float | None = None
    max_params: int | None = None
    max_peak_memory_kb: float | None = None  # KiB of peak activation memory at the device's data type
    memory_objective: bool = False  # minimise peak memory as a third objective
    seed: int = 0
    storage: str | None = None  # Optuna storage URL or journal file; None: SQLite in results/<study>/
    results_dir: str = "results"
    data_dir: str | None = None
    # NSGA-II. 16 = about four generations in a 60-trial study (Optuna's 50 would never leave the random first one).
    population_size: int = 16
    # Per-parameter mutation probability; None = 1 / number of searched parameters (Optuna's default).
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    # Start evolution/TPE from random architectures repaired into the budgets (checked on the analytic counts and
    # the estimator, milliseconds each): under tight budgets a random first generation is almost all infeasible.
    feasible_start: bool = True
    # Multishot training per candidate: a few short epochs on a training subset rank candidates well
    # enough to choose among them (results/zero-shot-proxies.md trains with this recipe); winners are retrained.
    epochs: int = 3
    train_limit: int | None = 768  # 60 % of digits' 1257 training images; caps larger datasets
    # Dense datasets only: a cap on the val and test images scored after each epoch (None: the whole splits).
    eval_limit: int | None = None
    batch_size: int = 64
    lr: float = 0.1  # nas.training's default: SGD + Nesterov with cosine decay
    pruner: str = "successive-halving"
    # Zero-shot proxy (nas.proxies); the default is the best measured in results/zero-shot-proxies.md.
    proxy: str = DEFAULT_PROXY
    # Hybrid: train the top 1/screen_ratio of proxy-screened feasible candidates.
    screen_ratio: int = 4
    # torch threads per worker; 1 lets N workers share N cores without oversubscription.
    threads: int | None = 1
    # Optuna heartbeat (RDB storages): a trial silent for 2x this is taken as interrupted and retried.
    heartbeat_s: int = 10
    baseline: bool = True  # train/score baseline.yaml once per study, for the report and the plot
    # A search stops (with a one-line SearchError) after this many proposals per evaluation: budgets that admit
    # almost nothing would otherwise make free proposals for hours. A proposal costs milliseconds.
    max_proposals_per_evaluation: int = 200

    def __post_init__(self) -> None:
        from nas.proxies import get_proxy  # torch: loaded when settings are made, not when the CLI parses

        _choice("strategy", self.strategy, STRATEGIES)
        _choice("mode", self.mode, MODES)
        _choice("pruner", self.pruner, PRUNERS)
        _require(self.trials >= 1, "`trials >= 1`", f"trials={self.trials}")
        _require(self.population_size >= 2, "`population_size >= 2`", f"population_size={self.population_size}")
        _require(
            self.mutation_prob is None or 0.0 <= self.mutation_prob <= 1.0,
            "`mutation_prob` None or in [0, 1]",
            f"mutation_prob={self.mutation_prob}",
        )
        _require(
            0.0 <= self.crossover_prob <= 1.0, "`crossover_prob` in [0, 1]", f"crossover_prob={self.crossover_prob}"
        )
        _require(self.epochs >= 1, "`epochs >= 1`", f"epochs={self.epochs}")
        _require(
            self.train_limit is None or self.train_limit >= 1, "`train_limit` None or >= 1", f"{self.train_limit=}"
        )
        _require(self.eval_limit is None or self.eval_limit >= 1, "`eval_limit` None or >= 1", f"{self.eval_limit=}")
        _require(self.batch_size >= 1, "`batch_size >= 1`", f"batch_size={self.batch_size}")
        _require(self.lr > 0 and math.isfinite(self.lr), "`lr > 0`", f"lr={self.lr}")
        _require(self.screen_ratio >= 1, "`screen_ratio >= 1`", f"screen_ratio={self.screen_ratio}")
        _require(self.threads is None or self.threads >= 1, "`threads` None or >= 1", f"threads={self.threads}")
        _require(
            self.max_proposals_per_evaluation >= 1,
            "`max_proposals_per_evaluation >= 1`",
            f"max_proposals_per_evaluation={self.max_proposals_per_evaluation}",
        )
        _require(self.heartbeat_s >= 1, "`heartbeat_s >= 1`", f"heartbeat_s={self.heartbeat_s}")
        _require(bool(self.study) and "/" not in self.study, "`study` a non-empty name without '/'", f"{self.study=}")
        get_proxy(self.proxy)  # an unknown name is a ProxyError listing the known ones
        Budgets(self.latency_budget_ms, self.max_params, self.max_peak_memory_kb)  # validates the values

    @property
    def budgets(self) -> Budgets:
        return Budgets(self.latency_budget_ms, self.max_params, self.max_peak_memory_kb)

    @property
    def study_dir(self) -> Path:
        return Path(self.results_dir) / self.study

    @property
    def trains(self) -> bool:
        return self.mode in ("multishot", "hybrid")

    def to_dict(self) -> dict[str, Any]:
        """Every setting; the storage URL without its password (this dict is written to reports and the study)."""
        values = dataclasses.asdict(self)
        values["storage"] = mask_url(self.storage)
        return values

    def defining(self) -> dict[str, Any]:
        """The settings a resumed study must share with the one that created it."""
        return defining_settings(self.to_dict())


def defining_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The study-defining entries of a settings dict (as stored in a study: possibly from another edgenas version).

    Settings the mode does not use are left out (a zeroshot study has no epochs); so is a key the dict lacks.
    """
    unused = {"multishot": ("proxy",), "zeroshot": ("epochs", "train_limit", "eval_limit", "batch_size", "lr")}.get(
        values.get("mode"), ()
    )
    defining = {key: values[key] for key in STUDY_DEFINING if key in values and key not in unused}
    if isinstance(defining.get("space"), str):
        defining["space"] = Path(defining["space"]).name
    return defining


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SearchError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


def _require(ok: bool, rule: str, got: str) -> None:
    if not ok:
        raise SearchError(f"{rule} must hold, but got {got}")
