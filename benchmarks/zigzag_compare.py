"""sim-npu against a published simulator: per-layer latency rank correlation with ZigZag.

Draws distinct conv / linear layers from architectures sampled from the
shipped search spaces (stem, 1x1 expand, depthwise, 1x1 project, fused KxK,
head conv, classifier), simulates each alone on a sim-npu profile and on
ZigZag's ``edge_tpu_like`` hardware template (8x8x4x4 = 1024 MACs, its own
mapping file, latency-optimal temporal mapping found by LOMA), and reports
Spearman's rho (and Kendall's tau) between the two, plus how each one ranks
against plain MAC counts. Every ZigZag result is appended to a CSV, so an
interrupted run resumes (`--fresh` starts over, e.g. after the simulator changed).

    python benchmarks/zigzag_compare.py --device sim-npu-p32 --layers 120

ZigZag is a benchmark-only dependency: ``pip install zigzag-dse six``.
Writes ``results/latency-estimator-zigzag-<device>.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from latency_estimator.devices import get_device  # noqa: E402
from latency_estimator.networks import shipped_spaces_for  # noqa: E402
from latency_estimator.subgraph import Subgraph, decompose_arch  # noqa: E402
from search_spaces.plan import OpSpec  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
FIELDS = ("layer", "role", "c_in", "c_out", "h_in", "kernel", "stride", "groups", "macs", "sim_ms", "zigzag_cycles")


def layer_role(op: OpSpec, kind: str) -> str:
    if op.kind == "linear":
        return "classifier"
    if op.is_depthwise:
        return "depthwise"
    if kind in ("stem", "head_conv"):
        return kind
    if op.kernel == 1:
        return "expand 1x1" if op.name.endswith("expand") else "project 1x1"
    return "fused KxK" if kind == "fused_ibn" else "conv KxK"


def layer_key(op: OpSpec) -> tuple:
    return (op.kind, op.in_shape, op.out_shape, op.kernel, op.stride, op.groups)


def draw_layers(parallelism_factor: int, count: int, seed: int) -> list[tuple[str, OpSpec, str]]:
    """``count`` distinct conv/linear layers, round-robin over layer roles so that every role is represented."""
    rng = np.random.default_rng(seed)
    by_role: dict[str, dict[tuple, tuple[str, OpSpec, str]]] = {}
    for space in shipped_spaces_for(parallelism_factor):
        for _ in range(200 if space.size() > 1 else 1):
            for subgraph in decompose_arch(space.sample(rng)):
                for op in subgraph.ops:
                    if op.kind in ("conv", "linear"):
                        role = layer_role(op, subgraph.kind)
                        by_role.setdefault(role, {}).setdefault(layer_key(op), (role, op, subgraph.activation))
    pools = {
        role: [layers[i] for i in rng.permutation(len(layers))]
        for role, layers in ((role, list(layers.values())) for role, layers in sorted(by_role.items()))
    }
    chosen: list[tuple[str, OpSpec, str]] = []
    while len(chosen) < count and any(pools.values()):
        for pool in pools.values():
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    return chosen


def zigzag_layer(op: OpSpec, layer_id: int) -> dict:
    """One layer in ZigZag's workload format (8-bit operands, 16-bit partial sums)."""
    c_in, _, _ = op.in_shape
    c_out, h_out, w_out = op.out_shape
    relations = [f"ix={op.stride}*ox+1*fx", f"iy={op.stride}*oy+1*fy"]
    precision = {"W": 8, "I": 8, "O": 16, "O_final": 8}
    common = {
        "id": layer_id,
        "name": f"layer{layer_id}",
        "operator_type": "Conv",
        "operand_precision": precision,
        "operand_source": {"I": layer_id},
        "dimension_relations": relations,
    }
    if op.is_depthwise:
        return {
            **common,
            "equation": "O[b][g][oy][ox]+=W[g][fy][fx]*I[b][g][iy][ix]",
            "loop_dims": ["B", "G", "OY", "OX", "FY", "FX"],
            "loop_sizes": [1, c_out, h_out, w_out, op.kernel, op.kernel],
        }
    return {
        **common,
        "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
        "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
        "loop_sizes": [1, c_out, c_in, h_out, w_out, op.kernel, op.kernel],
    }


def zigzag_cycles(op: OpSpec) -> float:
    import zigzag
    from zigzag.api import get_hardware_performance_zigzag

    inputs = Path(zigzag.__file__).parent / "inputs"
    with tempfile.TemporaryDirectory() as dump:
        _, latency, _ = get_hardware_performance_zigzag(
            [zigzag_layer(op, 0)],
            str(inputs / "hardware" / "edge_tpu_like.yaml"),
            str(inputs / "mapping" / "edge_tpu_like.yaml"),
            opt="latency",
            dump_folder=dump,
            loma_show_progress_bar=False,
        )
    return float(latency)


def read_done(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        return {row["layer"]: row for row in csv.DictReader(handle)}


def run(device_name: str, layers: int, seed: int) -> Path:
    device = get_device(device_name)
    csv_path = RESULTS / f"latency-estimator-zigzag-{device_name}.csv"
    done = read_done(csv_path)
    chosen = draw_layers(device.parallelism_factor, layers, seed)
    start = time.perf_counter()
    for i, (role, op, activation) in enumerate(chosen):
        name = f"{role}:{'x'.join(map(str, op.in_shape))}->{'x'.join(map(str, op.out_shape))}:k{op.kernel}s{op.stride}"
        if name in done:
            continue
        alone = Subgraph.from_ops(
            op.name, "classifier" if op.kind == "linear" else "conv", (op,), activation=activation
        )
        row = {
            "layer": name,
            "role": role,
            "c_in": op.in_shape[0],
            "c_out": op.out_shape[0],
            "h_in": op.in_shape[1],
            "kernel": op.kernel,
            "stride": op.stride,
            "groups": op.groups,
            "macs": op.macs,
            "sim_ms": f"{device.measure_subgraph(alone).latency_ms:.6g}",
            "zigzag_cycles": zigzag_cycles(op),
        }
        _append(csv_path, row)
        done[name] = {k: str(v) for k, v in row.items()}
        print(
            f"[{i + 1}/{len(chosen)}] {name}: sim {row['sim_ms']} ms, zigzag {row['zigzag_cycles']:.0f} cycles "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    rows = [done[name] for name in done]
    return write_report(device_name, rows, layers=layers, seed=seed)


def _append(path: Path, row: dict) -> None:
    new_file = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def write_report(device_name: str, rows: list[dict[str, str]], *, layers: int, seed: int) -> Path:
    sim = np.array([float(r["sim_ms"]) for r in rows])
    zz = np.array([float(r["zigzag_cycles"]) for r in rows])
    macs = np.array([float(r["macs"]) for r in rows])
    roles = sorted({r["role"] for r in rows})
    rho = stats.spearmanr(sim, zz).statistic
    lines = [
        f"# sim-npu ({device_name}) against ZigZag (edge_tpu_like): per-layer latency",
        "",
        f"Regenerate: `python benchmarks/zigzag_compare.py --device {device_name} --layers {layers} --seed {seed}`",
        "(ZigZag is a benchmark-only dependency: `pip install zigzag-dse six`).",
        "",
        f"{len(rows)} distinct conv/linear layers drawn from the shipped search spaces "
        f"(P={get_device(device_name).parallelism_factor}), each simulated alone (input from and output to DRAM).",
        "",
        "| pair | Spearman ρ | Kendall τ |",
        "|---|---|---|",
        _pair_row("sim-npu vs ZigZag", sim, zz, bold=True),
        _pair_row("MACs vs ZigZag", macs, zz),
        _pair_row("MACs vs sim-npu", macs, sim),
        "",
        "Per layer role (Spearman ρ of sim-npu vs ZigZag; median ZigZag cycles per MAC, sim-npu ns per MAC):",
        "",
        "| role | layers | ρ | ZigZag cycles/MAC | sim-npu ns/MAC |",
        "|---|---|---|---|---|",
    ]
    for role in roles:
        mask = np.array([r["role"] == role for r in rows])
        role_rho = stats.spearmanr(sim[mask], zz[mask]).statistic if mask.sum() > 2 else float("nan")
        lines.append(
            f"| {role} | {mask.sum()} | {role_rho:.3f} | {np.median(zz[mask] / macs[mask]):.4f} | "
            f"{np.median(sim[mask] * 1e6 / macs[mask]):.4f} |"
        )
    lines += [
        "",
        *what_differs(rows, sim, zz, macs),
        "",
        "Target: Spearman ρ reported on ≥ 100 layers (no threshold).",
        "",
    ]
    path = RESULTS / f"latency-estimator-zigzag-{device_name}.md"
    path.write_text("\n".join(lines))
    print(f"Spearman rho {rho:.3f} on {len(rows)} layers; report {path}")
    return path


def what_differs(rows: list[dict[str, str]], sim: np.ndarray, zz: np.ndarray, macs: np.ndarray) -> list[str]:
    """The two modelling differences that move ranks, each with its measured size."""
    role = np.array([r["role"] for r in rows])
    small = np.array([int(r["h_in"]) // int(r["stride"]) <= 2 for r in rows])
    pointwise = np.isin(role, ["expand 1x1", "project 1x1", "head_conv"])

    def per_mac_ratio(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.median(values[a] / macs[a]) / np.median(values[b] / macs[b]))

    dw = role == "depthwise"
    return [
        "## What differs",
        "",
        "- **Depthwise convs.** ZigZag's `edge_tpu_like` mapping unrolls K 8 x C 8 x OX 4 x OY 4; a depthwise "
        "layer has no K or C loop, so only the 16 OX x OY lanes work (1/64 of the array). sim-npu keeps P output "
        "channels busy with one input lane each (1/P). Per MAC, a depthwise conv costs "
        f"{per_mac_ratio(zz, dw, pointwise):.0f}x a 1x1 conv in ZigZag and {per_mac_ratio(sim, dw, pointwise):.0f}x "
        "in sim-npu: ZigZag ranks depthwise layers higher.",
        "- **Small feature maps.** ZigZag also unrolls 4x4 output pixels, so a 2x2 output fills a quarter of "
        "them. sim-npu computes one output pixel per cycle, so its small-map cost comes from elsewhere: weights "
        "streamed from DRAM once per op and the fixed per-op overhead. Per MAC, a 1x1 conv with an output of 2x2 "
        f"or less costs {per_mac_ratio(zz, pointwise & small, pointwise & ~small):.1f}x one on a larger map in "
        f"ZigZag and {per_mac_ratio(sim, pointwise & small, pointwise & ~small):.1f}x in sim-npu.",
        "- **Memory.** ZigZag searches a temporal mapping (LOMA) over a register / 32 KB weight SRAM / 2 MB "
        "activation SRAM / DRAM hierarchy; sim-npu is a roofline per op (compute cycles or DRAM bytes over "
        "bandwidth, whichever is larger) plus a fixed per-op overhead, which dominates tiny layers such as the "
        "classifier.",
        "- Units differ (ZigZag cycles at its own array, sim-npu milliseconds), so only ranks are compared.",
    ]


def _pair_row(label: str, a: np.ndarray, b: np.ndarray, *, bold: bool = False) -> str:
    rho = f"{stats.spearmanr(a, b).statistic:.3f}"
    return f"| {label} | {f'**{rho}**' if bold else rho} | {stats.kendalltau(a, b).statistic:.3f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="sim-npu-p32", help="a sim-npu profile (default sim-npu-p32: 1024 MACs)")
    parser.add_argument("--layers", type=int, default=120, help="distinct layers to compare (>= 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="forget earlier results (after a simulator change)")
    args = parser.parse_args()
    if args.fresh:
        (RESULTS / f"latency-estimator-zigzag-{args.device}.csv").unlink(missing_ok=True)
    logging.basicConfig(level=logging.ERROR)  # before ZigZag's own basicConfig, which would log every stage
    run(args.device, args.layers, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
