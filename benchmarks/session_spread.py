"""How much does one network's latency move from one ONNX Runtime session to the next, and since it was profiled?

    python benchmarks/session_spread.py --device cpu-ort     # on a quiet machine, after latency_estimator.py

Takes ``--networks`` of the networks profiled by
``benchmarks/latency_estimator.py --device D``, spread evenly over their
weight sizes, and times each one in ``--sessions`` new sessions back to back
(the device's ``measure_network``: a new session and one timing window each;
every timing pass of ``latency_estimator.passes`` is such a session). Reports
per network the fastest, median and slowest session, and the fastest against
the latency stored when the network was profiled (the fastest of that build's
passes): how far the machine's speed has moved since.

Writes ``results/session-spread.md`` and the raw times ``results/session-spread.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from latency_estimator.dataset import MeasurementDataset  # noqa: E402
from latency_estimator.devices import get_device  # noqa: E402
from latency_estimator.subgraph import decompose_arch, weight_mb  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu-ort")
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=10)
    args = parser.parse_args()
    device = get_device(args.device)
    if device.deterministic:
        parser.error(f"{device.name} is a simulation: its sessions do not differ")
    if args.networks < 1 or args.sessions < 2:
        parser.error("--networks must be >= 1 and --sessions >= 2")
    directory = RESULTS / f"latency-estimator-{device.name}" / "estimator"
    if not (directory / "networks.csv").exists():
        parser.error(f"no profiled networks in {directory}: run benchmarks/latency_estimator.py --device {device.name}")
    dataset = MeasurementDataset.load(directory)
    chosen = spread_over_weights(dataset, args.networks)
    from tqdm import tqdm

    rows = []
    for arch, stored_ms, weight in tqdm(chosen, desc=f"{args.sessions} sessions per network", unit="network"):
        times = [device.measure_network(arch).latency_ms for _ in range(args.sessions)]
        rows.append({"arch_id": arch.arch_id, "weight_mb": weight, "profiled_ms": stored_ms, "sessions_ms": times})
    (RESULTS / "session-spread.json").write_text(json.dumps({"device": device.name, "networks": rows}) + "\n")
    command = f"python benchmarks/session_spread.py --device {device.name} --networks {args.networks}"
    command += f" --sessions {args.sessions}"
    path = RESULTS / "session-spread.md"
    path.write_text(report(device, rows, command, dataset.metadata.get("updated", "?")))
    print(f"report written to {path}")
    return 0


def spread_over_weights(dataset: MeasurementDataset, count: int) -> list[tuple]:
    """(arch, latency stored at profiling, weight MB) of ``count`` profiled networks evenly spaced by weight size."""
    networks = [(arch, ms, weight_mb(decompose_arch(arch))) for arch, ms in dataset.networks()]
    networks.sort(key=lambda network: network[2])
    picks = np.unique(np.linspace(0, len(networks) - 1, min(count, len(networks))).round().astype(int))
    return [networks[i] for i in picks]


def report(device, rows: list[dict], command: str, profiled_on: str) -> str:
    times = [np.array(row["sessions_ms"]) for row in rows]
    ratio = np.array([t.max() / t.min() for t in times])
    since = np.array([t.min() / row["profiled_ms"] for t, row in zip(times, rows)])
    weight = np.array([row["weight_mb"] for row in rows])
    heavy = weight > np.median(weight)
    lines = [
        f"# Session-to-session spread on {device.name}",
        "",
        f"Regenerate: `{command}` (raw times: `results/session-spread.json`).",
        "",
        f"{len(rows)} networks profiled by `benchmarks/latency_estimator.py` (evenly spread over their weight "
        f"sizes), each timed in {len(times[0])} new sessions back to back with the device's `measure_network` "
        f"(one timing window each, the {device.settings.percentile:g}th percentile of samples over at least "
        f"{device.settings.min_window_ms:g} ms).",
        "",
        f"- slowest / fastest session of a network: median {np.median(ratio):.2f}, max {ratio.max():.2f}; "
        f"above 1.10 for {np.mean(ratio > 1.10):.0%} of the networks ({np.mean(ratio[heavy] > 1.10):.0%} of the "
        f"heavier half, over {np.median(weight):.1f} MB of weights; {np.mean(ratio[~heavy] > 1.10):.0%} of the "
        "lighter half)",
        f"- fastest session now / latency stored at profiling (profile updated {profiled_on}): median "
        f"{np.median(since):.3f}, range {since.min():.3f}-{since.max():.3f}; within ±10 % for "
        f"{np.mean(np.abs(since - 1) <= 0.10):.0%}",
        "",
        "A new session of the same network, started right after the last, can run much slower or faster, and how "
        "fast the machine runs a network moves by tens of percent within minutes (run this twice). A pass of "
        "`latency_estimator.passes` is one session, which is why a network's fastest pass must be confirmed by a "
        "second one before it is kept.",
        "",
        "| network | weight MB | profiled ms | fastest | median | slowest | slowest / fastest | fastest / profiled |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {row['arch_id']} | {row['weight_mb']:.2f} | {row['profiled_ms']:.4f} | {t.min():.4f} | "
            f"{np.median(t):.4f} | {t.max():.4f} | {t.max() / t.min():.2f} | {t.min() / row['profiled_ms']:.3f} |"
            for row, t in zip(rows, times)
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
