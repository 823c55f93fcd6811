"""cpu-ort: real timing of ONNX Runtime's CPU execution provider.

Networks and subgraphs are built as ONNX graphs straight from their ops
(:mod:`latency_estimator.onnx_graph`, BatchNorm folded, random weights) and run
in a session with fixed threads: ``intra_op_threads`` (default 1), one
inter-op thread, sequential execution, every graph optimisation on, as a
deployed model runs. With ``in_network`` (the default) profiling times each
subgraph inside a whole network (:meth:`OnnxRuntimeCpu.profile_network`);
otherwise alone (:meth:`OnnxRuntimeCpu.measure_subgraph`).

Subgraphs, whole networks and ONNX files are all timed the same way
(:mod:`latency_estimator.devices._timing`): the 10th percentile of short
samples over a fixed wall-clock window, the fastest of up to
``max_attempts`` windows when the samples are spread out. On a shared
machine other processes only add time, and a low percentile keeps the runs
they did not disturb; a median inflated whole networks (ms) far more than
the short subgraphs (µs) summed to predict them. The process is not pinned
to a core: pinned to core 0, to core 1 or not at all, an IBN and the baseline
network measured the same within 3 % on the shared 2-core machine, and
pinning would stop the scheduler from moving the run off a busy core.
"""

from __future__ import annotations

import bisect
import json
import math
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from latency_estimator.devices import register_device
from latency_estimator.devices._timing import TimingSettings, measure_stably, relative_iqr
from latency_estimator.devices.base import Device, DeviceProfile, Measurement, NetworkProfile
from latency_estimator.errors import DeviceError
from latency_estimator.onnx_graph import arch_model, subgraph_model
from latency_estimator.subgraph import Subgraph, decompose_arch
from search_spaces.arch import ArchConfig
from search_spaces.errors import one_line

__all__ = ["OnnxRuntimeCpu", "OrtSettings"]


# Subgraph kinds ONNX Runtime may fuse into a neighbouring node (an Add into the Conv before it): inside a network
# they may have no kernel of their own, and get this token share (ms) of the network.
FUSED_AWAY_KINDS = ("add", "eltwise")
FUSED_AWAY_SHARE_MS = 1e-4


@dataclass(frozen=True)
class OrtSettings(TimingSettings):
    intra_op_threads: int = 1  # one core: stable numbers on a shared machine, like a small edge CPU
    seed: int = 0  # random weights and input; latency does not depend on them
    # Profile subgraphs inside whole networks (ONNX Runtime's per-node profiler) rather than one by one: alone in a
    # loop a subgraph keeps its weights in cache and pays layout reorders at its own edges, neither of which
    # happens inside a network (summed isolated subgraphs under-predicted 8-15 MB networks by 20-45 %).
    in_network: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.intra_op_threads < 1:
            raise DeviceError(f"`intra_op_threads >= 1` must hold, but got {self.intra_op_threads=}")


@register_device("onnxruntime-cpu")
class OnnxRuntimeCpu(Device):
    Settings = OrtSettings
    default_samples = 3000  # timed, so noisy: the cpu-ort accuracy target needs 3,000

    def __init__(self, profile: DeviceProfile) -> None:
        super().__init__(profile)
        self.settings: OrtSettings

    def measure_subgraph(self, subgraph: Subgraph) -> Measurement:
        return self.measure_onnx(subgraph_model(subgraph, seed=self.settings.seed), what=subgraph.name)

    def measure_network(self, arch: ArchConfig) -> Measurement:
        return self.measure_onnx(arch_model(arch, seed=self.settings.seed), what=arch.arch_id)

    @property
    def profiles_in_network(self) -> bool:
        return self.settings.in_network

    def profile_network(self, arch: ArchConfig) -> NetworkProfile:
        """The network timed as :meth:`measure_network` does, then run again under ONNX Runtime's per-node
        profiler. A subgraph's share is the summed kernel time of its nodes after ORT's fusions (a node ORT adds,
        such as a layout reorder, counts for the subgraph it follows), averaged over the faster half of the runs
        (the profiler reports whole microseconds). The profiler's own cost and the framework's time between
        kernels are spread evenly over the nodes, so that the shares add up to the unprofiled network latency."""
        model = arch_model(arch, seed=self.settings.seed)
        network = self.measure_onnx(model, what=arch.arch_id)
        names = [subgraph.name for subgraph in decompose_arch(arch)]
        runs = max(self.settings.samples, math.ceil(self.settings.min_window_ms / network.latency_ms))
        per_run, nodes = self._kernel_times(model, names, runs=runs)
        kinds = {subgraph.name: subgraph.kind for subgraph in decompose_arch(arch)}
        missing = [name for name in names if not nodes[name]]
        if any(kinds[name] not in FUSED_AWAY_KINDS for name in missing):
            raise DeviceError(f"{self.name}: the profile of {arch.arch_id} has no kernel of subgraphs {missing}")
        kernel_ms = {name: float(np.mean(times[times <= np.median(times)])) for name, times in per_run.items()}
        per_node = (sum(kernel_ms.values()) - network.latency_ms) / sum(nodes.values())
        # In a tiny network the per-node share can exceed a subgraph's own kernels: keep a tenth of them, then
        # rescale so that the shares still add up to the network. A map op ORT fused into the conv before it (a
        # neck's add) costs what that conv's kernel took longer, counted in the conv's share; it keeps a token one.
        share = {name: max(kernel_ms[name] - nodes[name] * per_node, 0.1 * kernel_ms[name]) for name in names}
        share.update({name: FUSED_AWAY_SHARE_MS for name in missing})
        scale = network.latency_ms / sum(share.values())
        subgraphs = {
            name: Measurement(
                latency_ms=share[name] * scale,
                spread=relative_iqr(per_run[name]) if nodes[name] else 0.0,
                repeats=runs,
            )
            for name in names
        }
        return NetworkProfile(network=network, subgraphs=subgraphs)

    def _kernel_times(self, model: onnx.ModelProto, names: list[str], *, runs: int):
        """(subgraph -> its kernel time in each run in ms, subgraph -> its kernels per run)."""
        with tempfile.TemporaryDirectory(prefix="edgenas-ort-profile-") as scratch:
            session = self._session(model, profile_prefix=str(Path(scratch) / "profile"))
            feed = self._feed(session)
            for _ in range(self.settings.warmup_runs + runs):
                session.run(None, feed)
            events = json.loads(Path(session.end_profiling()).read_text())
        run_starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
        run_starts = run_starts[self.settings.warmup_runs :]
        times = {name: np.zeros(len(run_starts)) for name in names}
        kernels = dict.fromkeys(names, 0)
        owner = names[0]
        for event in sorted((e for e in events if e.get("cat") == "Node"), key=lambda e: e["ts"]):
            if not event["name"].endswith("_kernel_time"):
                continue
            run = bisect.bisect_right(run_starts, event["ts"]) - 1
            owner = _owner(event["name"].removesuffix("_kernel_time"), names) or owner
            if run >= 0:
                times[owner][run] += event["dur"] / 1e3  # µs -> ms
                kernels[owner] += 1
        return times, {name: count / max(1, len(run_starts)) for name, count in kernels.items()}

    def measure_onnx(self, model: onnx.ModelProto, *, what: str = "model") -> Measurement:
        """Time any single-input ONNX model (e.g. one exported by ``deploy``)."""
        session = self._session(model)
        feed = self._feed(session)
        return measure_stably(lambda: session.run(None, feed), self._timing(), what=f"{self.name} {what}")

    def measure_overhead(self) -> Measurement:
        """Latency of a run that does nothing (an Identity graph): the per-call cost that every
        isolated subgraph pays once and a whole network pays only once."""
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["input"], ["output"])],
            "overhead",
            [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 1, 1, 1])],
            [onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 1, 1, 1])],
        )
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
        model.ir_version = 8
        return self.measure_onnx(model, what="overhead")

    def metadata(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            **super().metadata(),
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "execution_provider": "CPUExecutionProvider",
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "execution_mode": "ORT_SEQUENTIAL",
            "inter_op_threads": 1,
        }

    def _feed(self, session) -> dict[str, np.ndarray]:
        (graph_input,) = session.get_inputs()
        shape = [dim if isinstance(dim, int) else 1 for dim in graph_input.shape]
        return {graph_input.name: np.random.default_rng(self.settings.seed).standard_normal(shape, dtype=np.float32)}

    def _session(self, model: onnx.ModelProto, *, profile_prefix: str | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        options.intra_op_num_threads = self.settings.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT warns about unused initializers otherwise
        try:
            return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own unexported exception types
            raise DeviceError(f"{self.name}: ONNX Runtime cannot load the model ({one_line(exc)})") from exc

    def _timing(self) -> TimingSettings:
        names = {field.name for field in fields(TimingSettings)}
        return TimingSettings(**{name: getattr(self.settings, name) for name in names})


def _owner(node: str, names: list[str]) -> str | None:
    """The subgraph a node of the optimised graph came from: the longest subgraph name that the node's name
    extends (``stages.1.0.expand.act_nchwc`` -> ``stages.1.0``); None for a node ORT added."""
    matches = [name for name in names if node == name or node.startswith((f"{name}.", f"{name}_"))]
    return max(matches, key=len, default=None)
