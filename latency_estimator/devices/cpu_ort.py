"""cpu-ort: real timing of ONNX Runtime's CPU execution provider.

Each subgraph is built as an ONNX graph straight from its ops
(:mod:`latency_estimator.onnx_graph`, BatchNorm folded, random weights) and run
in a session with fixed threads: ``intra_op_threads`` (default 1), one
inter-op thread, sequential execution, every graph optimisation on, as a
deployed model runs.

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

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import onnx

from latency_estimator.devices import register_device
from latency_estimator.devices._timing import TimingSettings, measure_stably
from latency_estimator.devices.base import Device, DeviceProfile, Measurement
from latency_estimator.errors import DeviceError
from latency_estimator.onnx_graph import arch_model, subgraph_model
from latency_estimator.subgraph import Subgraph
from search_spaces.arch import ArchConfig

__all__ = ["OnnxRuntimeCpu", "OrtSettings"]


@dataclass(frozen=True)
class OrtSettings(TimingSettings):
    intra_op_threads: int = 1  # one core: stable numbers on a shared machine, like a small edge CPU
    seed: int = 0  # random weights and input; latency does not depend on them

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.intra_op_threads < 1:
            raise DeviceError(f"`intra_op_threads >= 1` must hold, but got {self.intra_op_threads=}")


@register_device("onnxruntime-cpu")
class OnnxRuntimeCpu(Device):
    Settings = OrtSettings

    def __init__(self, profile: DeviceProfile) -> None:
        super().__init__(profile)
        self.settings: OrtSettings

    def measure_subgraph(self, subgraph: Subgraph) -> Measurement:
        return self.measure_onnx(subgraph_model(subgraph, seed=self.settings.seed), what=subgraph.name)

    def measure_network(self, arch: ArchConfig) -> Measurement:
        return self.measure_onnx(arch_model(arch, seed=self.settings.seed), what=arch.arch_id)

    def measure_onnx(self, model: onnx.ModelProto, *, what: str = "model") -> Measurement:
        """Time any single-input ONNX model (e.g. one exported by ``deploy``)."""
        session = self._session(model)
        (graph_input,) = session.get_inputs()
        shape = [dim if isinstance(dim, int) else 1 for dim in graph_input.shape]
        feed = {graph_input.name: np.random.default_rng(self.settings.seed).standard_normal(shape, dtype=np.float32)}
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

    def _session(self, model: onnx.ModelProto):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT warns about unused initializers otherwise
        try:
            return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own unexported exception types
            raise DeviceError(
                f"{self.name}: ONNX Runtime cannot load the model ({' '.join(str(exc).split())})"
            ) from exc

    def _timing(self) -> TimingSettings:
        names = {field.name for field in fields(TimingSettings)}
        return TimingSettings(**{name: getattr(self.settings, name) for name in names})
