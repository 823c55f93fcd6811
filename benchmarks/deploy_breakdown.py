"""Per-kernel breakdown: each fused TVM function of a built library against ONNX Runtime's node for it.

    python benchmarks/deploy_breakdown.py LIBRARY.so MODEL.onnx [--out results/deploy-x86_64-breakdown.md]
        [--against OTHER.so --against-label "NCHW"]

The library is one that ``benchmarks/deploy.py`` built (batch 1, x86_64, one thread). TVM's calls are
timed one by one through the Relax VM's instrument hook, ONNX Runtime's nodes with its profiler (both
single-threaded, many runs, taking turns in one process). Convolutions are matched by
their order in the graph (both run the graph in order); the table says which kernels are still slower
than ONNX Runtime's and by how much: the next step for the tuning. ``--against`` times a second library
of the same model (a lever turned off, say) in the same run and adds its sums by kind of convolution.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from deploy import get_target, load_compiled, set_tvm_threads  # noqa: E402
from deploy.lowering import batch1_shape  # noqa: E402
from deploy.session import INPUT_NAME  # noqa: E402

RUNS = 200
CHUNK = 10  # runs of one library (or ORT) before the next takes its turn


class TvmCalls:
    """Times every call of one inference of a library through the VM's instrument hook, a batch of runs at a time."""

    def __init__(self, library: Path, shape: tuple[int, ...]) -> None:
        import tvm
        from tvm import relax

        target = get_target("x86_64")
        compiled = load_compiled(library, target=target.name, tvm_target=target.resolve(), input_shape=shape)
        set_tvm_threads(1)
        self.vm = relax.VirtualMachine(compiled.module, tvm.cpu())
        self.x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
        self.vm["main"](self.x)
        self.calls: list[list] = []
        started: list[float] = []

        def instrument(func, symbol, before, ret, *args) -> int:  # noqa: ANN001
            if before:
                started.append(time.perf_counter())
            else:
                self.calls.append([str(symbol), time.perf_counter() - started.pop()])
            return 0

        self.vm.set_instrument(instrument)
        self.vm["main"](self.x)
        if not self.calls:
            raise SystemExit(
                f"{library}: the VM's instrument hook saw no call: main was compiled to native code; build the "
                'library with compile_onnx(..., exec_mode="bytecode") to time its kernels one by one'
            )
        self.sequence = [name for name, _ in self.calls]
        self.samples: list[list[float]] = []

    def run(self, runs: int) -> None:
        for _ in range(runs):
            self.calls.clear()
            self.vm["main"](self.x)
            self.samples.append([seconds for _, seconds in self.calls])

    def medians(self) -> list[tuple[str, float]]:
        """(function, median ms over the runs) of every call of one inference, in call order."""
        medians = np.median(np.array(self.samples), axis=0) * 1e3
        return [(name, float(ms)) for name, ms in zip(self.sequence, medians) if not name.startswith("vm.")]


class OrtNodes:
    """Times every node ONNX Runtime runs with its profiler, a batch of runs at a time."""

    def __init__(self, model: Path, shape: tuple[int, ...]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.enable_profiling = True
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.feed = {INPUT_NAME: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}

    def run(self, runs: int) -> None:
        for _ in range(runs):
            self.session.run(None, self.feed)

    def medians(self) -> list[tuple[str, str, float]]:
        """(op, node name, median ms over the runs) of every node, in order; ends the profiling."""
        profile = Path(self.session.end_profiling())
        events = json.loads(profile.read_text())
        profile.unlink()
        times: dict[str, list[float]] = collections.defaultdict(list)
        ops, order = {}, []
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                name = event["name"].removesuffix("_kernel_time")
                times[name].append(event["dur"] / 1e3)
                ops[name] = event["args"].get("op_name", "?")
                if name not in order:
                    order.append(name)
        return [(ops[name], name, float(np.median(times[name]))) for name in order]


def time_interleaved(samplers: list, runs: int) -> None:
    """``runs`` runs of each sampler, :data:`CHUNK` at a time in turn, so that a change of load hits them all."""
    for done in range(0, runs, CHUNK):
        for sampler in samplers:
            sampler.run(min(CHUNK, runs - done))


def conv_kind(proto: onnx.ModelProto) -> list[str]:
    """ "KxK/g" of every Conv node of the model, in order (g: depthwise when groups > 1)."""
    kinds = []
    for node in proto.graph.node:
        if node.op_type == "Conv":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            kernel = "x".join(map(str, attrs.get("kernel_shape", [])))
            kinds.append(f"{kernel}{' dw' if attrs.get('group', 1) > 1 else ''}")
    return kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path("results") / "deploy-x86_64-breakdown.md")
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--against", type=Path, default=None, help="a second library of MODEL, timed in the same run")
    parser.add_argument("--against-label", default="other", help="what the second library is (for the table)")
    args = parser.parse_args()
    proto = onnx.load(str(args.model))
    shape = batch1_shape(proto)
    samplers = [TvmCalls(args.library, shape), OrtNodes(args.model, shape)]
    samplers += [TvmCalls(args.against, shape)] if args.against else []
    time_interleaved(samplers, args.runs)
    tvm, ort = samplers[0].medians(), samplers[1].medians()
    other = samplers[2].medians() if args.against else None
    load = os.getloadavg()[0]
    tvm_convs = [(name, ms) for name, ms in tvm if "conv2d" in name]
    ort_convs = [(name, ms) for op, name, ms in ort if op in ("Conv", "FusedConv")]
    kinds = conv_kind(proto)
    against = ["", *_against_lines(other, ort_convs, kinds, args)] if other is not None else []
    other_convs = [(name, ms) for name, ms in other if "conv2d" in name] if other is not None else []
    lines = [
        f"# Per-kernel breakdown: `{args.library.name}` against ONNX Runtime",
        "",
        f"Regenerate: `python benchmarks/deploy_breakdown.py {args.library} {args.model}{_against_args(args)}`. "
        f"Machine: {_cpu_name()}. Median ms of each call over "
        f"{args.runs} runs (a call that the shared machine preempted does not count), one thread, timed "
        f"{CHUNK} runs at a time in turn (each library and ORT) in one process (load average {load:.1f}; the "
        "machine is shared, so absolute figures are noisy). "
        "TVM: each call through the VM's instrument hook (adds a few "
        "microseconds per call); ORT: its profiler's kernel times. Convolutions matched in graph order.",
        "",
        f"Sums of the medians: TVM {sum(ms for _, ms in tvm):.3f} ms in {len(tvm)} calls, "
        f"ORT {sum(ms for *_, ms in ort):.3f} ms in {len(ort)} nodes.",
        "",
        "| # | conv | TVM function | TVM ms | ORT ms | TVM / ORT |"
        + (f" {args.against_label} / ORT |" if other else ""),
        "|---:|---|---|---:|---:|---:|" + ("---:|" if other else ""),
    ]
    by_kind: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for index, ((name, tvm_ms), (_, ort_ms)) in enumerate(zip(tvm_convs, ort_convs)):
        kind = kinds[index] if index < len(kinds) else "?"
        by_kind[kind][0] += tvm_ms
        by_kind[kind][1] += ort_ms
        line = f"| {index} | {kind} | `{name}` | {tvm_ms:.4f} | {ort_ms:.4f} | {tvm_ms / ort_ms:.2f} |"
        if other_convs and index < len(other_convs):
            line += f" {other_convs[index][1] / ort_ms:.2f} |"
        lines.append(line)
    lines += ["", "By kind of convolution:", "", "| conv | TVM ms | ORT ms | TVM / ORT |", "|---|---:|---:|---:|"]
    for kind, (tvm_ms, ort_ms) in sorted(by_kind.items(), key=lambda item: -item[1][0]):
        lines.append(f"| {kind} | {tvm_ms:.3f} | {ort_ms:.3f} | {tvm_ms / ort_ms:.2f} |")
    rest_tvm = [(name, ms) for name, ms in tvm if "conv2d" not in name]
    rest_ort = [(op, ms) for op, _, ms in ort if op not in ("Conv", "FusedConv")]
    lines += [
        "",
        "Other calls: TVM "
        + ", ".join(f"`{n}` {ms:.4f}" for n, ms in rest_tvm)
        + "; ORT "
        + ", ".join(f"{op} {ms:.4f}" for op, ms in rest_ort)
        + ".",
    ]
    lines += against
    if len(tvm_convs) != len(ort_convs):
        lines += [
            "",
            f"(TVM has {len(tvm_convs)} conv calls, ORT {len(ort_convs)} conv nodes: matched up to the shorter.)",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out)
    return 0


def _by_kind(convs: list[tuple[str, float]], kinds: list[str]) -> dict[str, float]:
    sums: dict[str, float] = collections.defaultdict(float)
    for index, (_, ms) in enumerate(convs):
        sums[kinds[index] if index < len(kinds) else "?"] += ms
    return sums


def _against_lines(other: list[tuple[str, float]], ort_convs: list, kinds: list[str], args) -> list[str]:  # noqa: ANN001
    """The sums by kind of convolution of the second library, next to ORT's (the same ORT run)."""
    other_convs = [(name, ms) for name, ms in other if "conv2d" in name]
    ort_by_kind = _by_kind([(name, ms) for name, ms in ort_convs], kinds)
    other_by_kind = _by_kind(other_convs, kinds)
    lines = [
        f"`{args.against.name}` ({args.against_label}), timed in the same run: sums of the medians "
        f"{sum(ms for _, ms in other):.3f} ms in {len(other)} calls.",
        "",
        f"| conv | {args.against_label} TVM ms | ORT ms | {args.against_label} TVM / ORT |",
        "|---|---:|---:|---:|",
    ]
    for kind, ms in sorted(other_by_kind.items(), key=lambda item: -item[1]):
        lines.append(f"| {kind} | {ms:.3f} | {ort_by_kind[kind]:.3f} | {ms / ort_by_kind[kind]:.2f} |")
    return lines


def _against_args(args) -> str:  # noqa: ANN001
    if args.against is None:
        return ""
    return f" --against {args.against} --against-label {args.against_label!r}"


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
