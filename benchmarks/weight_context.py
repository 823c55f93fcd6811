"""Would the estimator predict heavy networks if it knew the network's weight size? An experiment, not a build.

    python benchmarks/weight_context.py --device cpu-ort --networks 30

A subgraph's time on a CPU depends on whether its weights come from the caches
or from memory, and that depends on the weights of the whole network around
it, which a subgraph model does not see. Needs the data of
``benchmarks/latency_estimator.py --device D`` (subgraphs timed inside whole
networks). Profiles ``--networks`` extra networks of more than 16 MB of fp32
weights from the shipped spaces (each the fastest of 3 profiles; kept in
``results/latency-estimator-<device>/heavy-networks.json``, so a rerun measures
nothing), then trains the build's family (prior/layout/loss from its metadata)
with and without those networks and with and without the network's weight size
as a subgraph feature. Scores: networks held out whole (5 folds, 3 seeds) and
the benchmark's evaluation networks, by weight size.

Writes ``results/weight-context-<device>.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import latency_estimator.regressor as regressor  # noqa: E402
from benchmarks._in_network_data import RESULTS, built_family, load_in_network_data, with_overhead  # noqa: E402
from latency_estimator.devices import get_device  # noqa: E402
from latency_estimator.profiling import SubgraphSpec, shipped_spaces_for  # noqa: E402
from latency_estimator.subgraph import decompose_arch, weight_mb  # noqa: E402
from search_spaces import ArchConfig, plan_network  # noqa: E402

HEAVY_MB = 16.0
BINS = (("≤ 8 MB", 0.0, 8.0), ("8–16 MB", 8.0, HEAVY_MB), ("> 16 MB", HEAVY_MB, np.inf))
FOLDS, SEEDS = 5, (0, 1, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu-ort")
    parser.add_argument("--networks", type=int, default=30, help="extra networks over 16 MB to profile")
    args = parser.parse_args()
    dataset, evaluation_rows = load_in_network_data(parser, args.device)
    evaluation = [(ArchConfig.from_dict(json.loads(r["arch"])), float(r["measured_ms"])) for r in evaluation_rows]
    cache = RESULTS / f"latency-estimator-{args.device}" / "heavy-networks.json"
    heavy = heavy_networks(args.device, dataset, evaluation, args.networks, cache)
    family = built_family(dataset)
    base = [(spec, ms, row["network"]) for spec, ms, row in zip(dataset.specs(), dataset.latency_ms(), dataset.rows)]
    rows = []
    for extra in (False, True):
        data = Rows(
            base + (heavy["rows"] if extra else []),
            dataset.networks() + (heavy["networks"] if extra else []),
            dataset.parallelism_factor,
        )
        rows += [(extra, context, *data.scores(family, context, evaluation)) for context in (False, True)]
    path = RESULTS / f"weight-context-{args.device}.md"
    path.write_text(report(args.device, args.networks, family, len(dataset.rows), len(heavy["rows"]), rows))
    print(f"report written to {path}")
    return 0


def heavy_networks(device_name: str, dataset, evaluation, count: int, cache: Path) -> dict:
    """The first ``count`` networks over HEAVY_MB drawn from the shipped spaces, never profiled or evaluated, each
    profiled 3 times (the fastest kept); kept in ``cache``, and only the ones it lacks are profiled."""
    found = json.loads(cache.read_text()) if cache.exists() else []
    if len(found) < count:
        device = get_device(device_name)
        seen = {arch.arch_id for arch, _ in dataset.networks()} | {arch.arch_id for arch, _ in evaluation}
        seen |= {ArchConfig.from_dict(entry["arch"]).arch_id for entry in found}
        spaces = [space for space in shipped_spaces_for(device.parallelism_factor) if space.size() > 1]
        rng, i = np.random.default_rng(777), 0
        while len(found) < count:
            arch, i = spaces[i % len(spaces)].sample(rng), i + 1
            if arch.arch_id in seen or weight_mb(decompose_arch(arch)) <= HEAVY_MB:
                continue
            seen.add(arch.arch_id)
            profile = min((device.profile_network(arch) for _ in range(3)), key=lambda p: p.network.latency_ms)
            subgraphs = {block.name: profile.subgraphs[block.name].latency_ms for block in plan_network(arch)}
            found.append({"arch": arch.to_dict(), "latency_ms": profile.network.latency_ms, "subgraphs": subgraphs})
            cache.write_text(json.dumps(found, indent=1) + "\n")
            print(f"{len(found)}/{count} {arch.arch_id} {profile.network.latency_ms:.3f} ms", flush=True)
    networks, rows = [], []
    for entry in found[:count]:
        arch = ArchConfig.from_dict(entry["arch"])
        networks.append((arch, entry["latency_ms"]))
        rows += [
            (SubgraphSpec.from_block(b, arch), entry["subgraphs"][b.name], arch.arch_id) for b in plan_network(arch)
        ]
    return {"networks": networks, "rows": rows}


class Rows:
    """Subgraph rows (spec, latency, owner network) and the networks they were timed in."""

    def __init__(self, rows: list, networks: list, parallelism_factor: int) -> None:
        self.latency = np.array([ms for _, ms, _ in rows])
        self.owners = np.array([owner for _, _, owner in rows])
        self.networks = networks
        weights = {arch.arch_id: weight_mb(decompose_arch(arch)) for arch, _ in networks}
        self.p = parallelism_factor
        self.batch = regressor.SubgraphBatch.of([spec.subgraph() for spec, _, _ in rows], self.p)
        self.context = np.array([weights[owner] for owner in self.owners])

    def scores(self, family: tuple, context: bool, evaluation: list) -> tuple[list, list]:
        """Share within ±10 % per weight bin (and overall, first): held out (mean over seeds), then evaluation."""
        batch = _with_context(self.batch, self.context) if context else self.batch
        measured = np.array([ms for _, ms in self.networks])
        held_out = []
        for seed in SEEDS:
            fold = np.random.default_rng(seed).permutation(len(self.networks)) % FOLDS
            fold_of = {arch.arch_id: f for (arch, _), f in zip(self.networks, fold)}
            row_fold = np.array([fold_of[owner] for owner in self.owners])
            predicted = np.empty(len(measured))
            for f in range(FOLDS):
                train = [n for n, k in zip(self.networks, fold) if k != f]
                estimator = _trained(batch, self.latency, row_fold != f, family, context, train, self.p)
                predicted[fold == f] = _predict(estimator, [a for (a, _), k in zip(self.networks, fold) if k == f])
            held_out.append(_by_bin([a for a, _ in self.networks], predicted / measured - 1))
        every_row = np.ones(len(self.latency), bool)
        estimator = _trained(batch, self.latency, every_row, family, context, self.networks, self.p)
        archs, truth = [a for a, _ in evaluation], np.array([ms for _, ms in evaluation])
        return list(np.mean(held_out, axis=0)), _by_bin(archs, _predict(estimator, archs) / truth - 1)


class WithWeightContext(regressor.LatencyEstimator):
    """An estimator whose subgraphs each see their network's weight size as a last feature. Predict with
    ``predict`` (one network at a time): the batched path caches pieces apart from their networks."""

    def subgraph_latency_ms(self, subgraphs) -> np.ndarray:
        batch = regressor.SubgraphBatch.of(subgraphs, self.parallelism_factor)
        return self.model.predict_ms(_with_context(batch, np.full(len(batch), weight_mb(subgraphs))))


def _trained(batch, latency, rows, family: tuple, context: bool, networks: list, parallelism_factor: int):
    """The build's family trained on ``rows``, its overhead term on ``networks``."""
    prior, layout, loss = family
    model = regressor.fit_subgraph_model(batch, latency, prior=prior, layout=layout, loss=loss, rows=rows)
    kind = WithWeightContext if context else regressor.LatencyEstimator
    return with_overhead(model, networks, parallelism_factor, kind)


def _predict(estimator: regressor.LatencyEstimator, archs: list) -> np.ndarray:
    return np.array([estimator.predict(arch).latency_ms for arch in archs])


def _with_context(batch, weights: np.ndarray):
    names = (*batch.feature_names, "network_weight_mb")
    return replace(batch, feature_names=names, features=np.column_stack([batch.features, weights]))


def _by_bin(archs: list, error: np.ndarray) -> list[float]:
    weights = np.array([weight_mb(decompose_arch(arch)) for arch in archs])
    within = np.abs(error) <= 0.10
    return [float(np.mean(within))] + [float(np.mean(within[(weights > lo) & (weights <= hi)])) for _, lo, hi in BINS]


def report(device: str, count: int, family: tuple, base_rows: int, extra_rows: int, rows: list) -> str:
    bins = " | ".join(label for label, _, _ in BINS)
    line = lambda values: " | ".join(f"{v:.1%}" for v in values)  # noqa: E731
    return "\n".join(
        [
            f"# Network weight size as context for the {device} estimator (an experiment)",
            "",
            f"Regenerate: `python benchmarks/weight_context.py --device {device} --networks {count}`.",
            "",
            f"The build's family ({'/'.join(family)}), trained on its {base_rows:,} subgraph measurements, or on those "
            f"and the {extra_rows} subgraphs of {count} extra networks over {HEAVY_MB:g} MB of fp32 weights (then "
            "over the issue's 3,000; each the fastest of 3 profiles, not the device's passes); with or without the "
            "network's weight size as a feature of each subgraph. Share of "
            f"networks within ±10 %: held out whole ({FOLDS} folds, mean of {len(SEEDS)} seeds; the extra networks "
            "are held out with the others), and the benchmark's evaluation networks.",
            "",
            f"| extra heavy networks | weight-size feature | held out: all | {bins} | evaluation: all | {bins} |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *(
                f"| {'yes' if extra else 'no'} | {'yes' if context else 'no'} | {line(held)} | {line(evaluated)} |"
                for extra, context, held, evaluated in rows
            ),
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
