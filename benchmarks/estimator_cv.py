"""Where a device's estimator loses accuracy, from its own training data: networks held out whole.

    python benchmarks/estimator_cv.py --device cpu-ort

Needs the data of ``benchmarks/latency_estimator.py --device D`` (subgraphs
timed inside whole networks). Five folds over the profiled networks: the
subgraph model and the overhead term are trained on four fifths of the
networks and predict the totals of the rest, which they never saw. The
same variants are then trained on every network and scored against the
benchmark's evaluation measurements. Also shows, per subgraph kind, the
held-out error of the rows and what it costs the networks.

Writes ``results/estimator-cv-<device>.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks._in_network_data import RESULTS, built_family, load_in_network_data, with_overhead  # noqa: E402
from latency_estimator.batch import SubgraphBatch  # noqa: E402
from latency_estimator.build import network_weights  # noqa: E402
from latency_estimator.dataset import MeasurementDataset  # noqa: E402
from latency_estimator.estimator import LatencyEstimator  # noqa: E402
from latency_estimator.evaluation import weight_size_bins  # noqa: E402
from latency_estimator.regressor import fit_subgraph_model  # noqa: E402
from search_spaces import ArchConfig  # noqa: E402

FOLDS = 5
# (name, prior, layout, loss, network weight size as a feature, XGBoost parameters overriding XGB_PARAMS)
VARIANTS = [
    ("linear/single/absolute, depth 6", "linear", "single", "absolute", True, {}),
    ("the same without the network's weight size", "linear", "single", "absolute", False, {}),
    ("linear/single/squared, depth 6", "linear", "single", "squared", True, {}),
    (
        "linear/single/absolute, depth 4, min child weight 5",
        "linear",
        "single",
        "absolute",
        True,
        {"max_depth": 4, "min_child_weight": 5.0},
    ),
    ("roofline/single/absolute, depth 6", "roofline", "single", "absolute", True, {}),
    ("linear/per_kind/absolute, depth 6", "linear", "per_kind", "absolute", True, {}),
    ("linear prior alone (no trees)", "linear", "single", "squared", False, {"eta": 0.0}),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu-ort")
    args = parser.parse_args()
    dataset, evaluation_rows = load_in_network_data(parser, args.device)
    data = Data(dataset, np.array([row["network"] for row in dataset.rows]), evaluation_rows)
    rows = [(name, *data.score(variant)) for name, *variant in VARIANTS]
    kinds = data.kind_errors()
    held_out = data.held_out_errors(data.kept)
    by_weight = [
        (label, int(chosen.sum()), _within(held_out[chosen]), _rmspe(held_out[chosen]))
        for label, chosen in weight_size_bins([arch for arch, _ in data.networks])
    ]
    path = RESULTS / f"estimator-cv-{args.device}.md"
    path.write_text(report(args.device, data, rows, kinds, by_weight, data.in_sample()))
    print(f"report written to {path}")
    return 0


class Data:
    """A device's profiling data, split into folds of whole networks, and its evaluation measurements."""

    def __init__(self, dataset: MeasurementDataset, owners: np.ndarray, evaluation_rows: list[dict]) -> None:
        self.parallelism_factor = dataset.parallelism_factor
        self.latency = dataset.latency_ms()
        self.specs = dataset.specs()
        self.batch = SubgraphBatch.of([spec.subgraph() for spec in self.specs], self.parallelism_factor)
        self.networks = dataset.networks()
        self.context = network_weights(dataset, self.networks)
        self.fold = np.random.default_rng(0).permutation(len(self.networks)) % FOLDS
        fold_of = {arch.arch_id: fold for (arch, _), fold in zip(self.networks, self.fold)}
        self.fold_of_row = np.array([fold_of[owner] for owner in owners])
        self.owners = owners
        self.eval_archs = [ArchConfig.from_dict(json.loads(row["arch"])) for row in evaluation_rows]
        self.eval_ms = np.array([float(row["measured_ms"]) for row in evaluation_rows])
        self.kept = (*built_family(dataset), {})  # the built estimator's
        self._trained_on_all: dict[tuple, LatencyEstimator] = {}
        self._held_out: dict[tuple, np.ndarray] = {}

    def features(self, context: bool) -> SubgraphBatch:
        return self.batch.with_context(self.context) if context else self.batch

    def estimator(self, rows: np.ndarray, networks: list, variant: tuple):
        """Subgraph model of ``variant`` (prior, layout, loss, context, parameters) on ``rows``; overhead on
        ``networks``."""
        prior, layout, loss, context, params = variant
        model = fit_subgraph_model(
            self.features(context), self.latency, prior=prior, layout=layout, loss=loss, rows=rows, params=params
        )
        return with_overhead(model, networks, self.parallelism_factor)

    def trained_on_all(self, variant: tuple) -> LatencyEstimator:
        """The variant trained on every network (once per variant)."""
        key = _key(variant)
        if key not in self._trained_on_all:
            self._trained_on_all[key] = self.estimator(np.ones(len(self.batch), bool), self.networks, variant)
        return self._trained_on_all[key]

    def in_sample(self) -> tuple[float, float]:
        """(within ±10 %, RMSPE) of the kept model's family trained on every network, on those same networks."""
        estimator = self.trained_on_all(self.kept)
        measured = np.array([ms for _, ms in self.networks])
        error = estimator.predict_many([arch for arch, _ in self.networks]) / measured - 1
        return _within(error), _rmspe(error)

    def held_out_errors(self, variant: tuple) -> np.ndarray:
        """Relative error of every profiled network, predicted by the variant trained on the other folds (once per
        variant)."""
        key = _key(variant)
        if key not in self._held_out:
            measured = np.array([ms for _, ms in self.networks])
            predicted = np.empty(len(self.networks))
            for fold in range(FOLDS):
                train = [network for network, f in zip(self.networks, self.fold) if f != fold]
                test = [arch for (arch, _), f in zip(self.networks, self.fold) if f == fold]
                estimator = self.estimator(self.fold_of_row != fold, train, variant)
                predicted[self.fold == fold] = estimator.predict_many(test)
            self._held_out[key] = predicted / measured - 1
        return self._held_out[key]

    def score(self, variant: tuple) -> tuple[float, float, float, float]:
        """(within ±10 %, RMSPE) on the held-out networks, then on the evaluation networks."""
        held_out = self.held_out_errors(variant)
        evaluated = self.trained_on_all(variant).predict_many(self.eval_archs) / self.eval_ms - 1
        return _within(held_out), _rmspe(held_out), _within(evaluated), _rmspe(evaluated)

    def kind_errors(self) -> list[tuple[str, int, float, float, float, float]]:
        """Per kind: (kind, rows, held-out row MAPE, mean share of a network, mean |error| it adds to a network,
        median |deviation| of a configuration's time in one network (the median of its repeats there) from its
        median over the networks it was timed in)."""
        prior, layout, loss, context, _ = self.kept
        batch = self.features(context)
        predicted = np.empty(len(batch))
        for fold in range(FOLDS):
            model = fit_subgraph_model(
                batch, self.latency, prior=prior, layout=layout, loss=loss, rows=self.fold_of_row != fold
            )
            predicted[self.fold_of_row == fold] = model.predict_ms(batch)[self.fold_of_row == fold]
        totals = {arch.arch_id: ms for arch, ms in self.networks}
        rows = []
        for kind in np.unique(self.batch.kinds):
            mask = self.batch.kinds == kind
            networks = np.unique(self.owners[mask])
            share = [self.latency[mask & (self.owners == n)].sum() / totals[n] for n in networks]
            error = [abs((predicted - self.latency)[mask & (self.owners == n)].sum()) / totals[n] for n in networks]
            mape = float(np.mean(np.abs(predicted[mask] / self.latency[mask] - 1)))
            by_config = defaultdict(lambda: defaultdict(list))  # configuration -> network -> its times there
            for i in np.flatnonzero(mask):
                by_config[self.specs[i].key][self.owners[i]].append(self.latency[i])
            per_network = [[np.median(times) for times in networks.values()] for networks in by_config.values()]
            repeated = [np.array(v) / np.median(v) - 1 for v in per_network if len(v) > 1]
            deviation = float(np.median(np.abs(np.concatenate(repeated)))) if repeated else float("nan")
            rows.append((str(kind), int(mask.sum()), mape, float(np.mean(share)), float(np.mean(error)), deviation))
        return rows


def _key(variant: tuple) -> tuple:
    *names, params = variant
    return (*names, tuple(sorted(params.items())))


def family(variant: tuple) -> str:
    prior, layout, loss, context, _ = variant
    return f"{prior}/{layout}/{loss}" + (", with the network's weight size" if context else "")


def _within(error: np.ndarray) -> float:
    return float(np.mean(np.abs(error) <= 0.10))


def _rmspe(error: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(error))))


def report(device: str, data: Data, rows: list, kinds: list, by_weight: list, in_sample: tuple[float, float]) -> str:
    lines = [
        f"# Where the {device} estimator loses accuracy",
        "",
        f"Regenerate: `python benchmarks/estimator_cv.py --device {device}` (after "
        f"`python benchmarks/latency_estimator.py --device {device}`).",
        "",
        f"{len(data.networks)} profiled networks ({len(data.batch):,} subgraphs timed inside them) in {FOLDS} folds: "
        f"each variant is trained on four fifths of the networks and predicts the others' totals; then trained on "
        f"all of them and scored on the benchmark's {len(data.eval_ms)} evaluation networks.",
        "",
        "| variant | held-out networks within ±10 % | RMSPE | evaluation networks within ±10 % | RMSPE |",
        "|---|---|---|---|---|",
        *(f"| {name} | {a:.1%} | {b:.1%} | {c:.1%} | {d:.1%} |" for name, a, b, c, d in rows),
        "",
        f"For comparison, the built estimator's family ({family(data.kept)}) trained on every network predicts "
        f"those same networks within ±10 % for {in_sample[0]:.1%} of them (RMSPE {in_sample[1]:.1%}): the gap to the "
        "held-out figure is how much worse it does on networks it has not seen.",
        "",
        f"## Held-out networks by weight size ({family(data.kept)})",
        "",
        "| fp32 weights | networks | within ±10 % | RMSPE |",
        "|---|---|---|---|",
        *(f"| {label} | {n} | {within:.1%} | {rmspe:.1%} |" for label, n, within, rmspe in by_weight),
        "",
        f"## Per subgraph kind ({family(data.kept)}, the built estimator's family, held out by network)",
        "",
        "| kind | rows | held-out MAPE of the rows | mean share of a network | mean error it adds to a network "
        "| same configuration in different networks: median deviation |",
        "|---|---|---|---|---|---|",
        *(
            f"| {kind} | {n:,} | {mape:.1%} | {share:.1%} | {error:.1%} | {deviation:.1%} |"
            for kind, n, mape, share, error, deviation in kinds
        ),
        "",
        "The last column measures how far the labels of one configuration disagree: a configuration timed inside "
        "several networks (its repeats within one network first reduced to their median), each network's time "
        "against the median over the networks. This is what the network around a subgraph and the timing add; no "
        "model of the subgraph alone can predict below it.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
