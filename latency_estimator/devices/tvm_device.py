"""cpu-tvm and cuda: real timing of TVM-compiled code (Relax VM).

Each subgraph's ONNX graph (:mod:`latency_estimator.onnx_graph`) is imported
with Relax's ONNX frontend, lowered and built as the deploy step builds it
(:func:`lower_onnx`: conv + bias + activation fused) for the profile's target
(``llvm`` for the host CPU, ``cuda`` for an NVIDIA GPU), untuned unless
``tuning_db`` names a MetaSchedule database folder (deploy's ``--tuning-db``),
and timed through the VM with cpu-ort's loop (:mod:`._timing`).
Compiling takes seconds per subgraph; there is no time target for it.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from latency_estimator.devices import register_device
from latency_estimator.devices._timing import TimingSettings, measure_stably
from latency_estimator.devices.base import Device, DeviceProfile, Measurement
from latency_estimator.errors import DeviceError
from latency_estimator.onnx_graph import INPUT, arch_model, subgraph_model
from latency_estimator.subgraph import Subgraph
from search_spaces.arch import ArchConfig

__all__ = ["TvmDevice", "TvmSettings", "compile_onnx", "lower_onnx"]

logger = logging.getLogger(__name__)
TARGET_KINDS = ("llvm", "cuda")


@dataclass(frozen=True)
class TvmSettings(TimingSettings):
    target: str = "llvm"  # target kind: llvm (host CPU, -mcpu of this machine) or cuda
    num_threads: int = 1  # CPU threads of TVM's pool (llvm only): like cpu-ort's intra-op threads
    tuning_db: str | None = None  # MetaSchedule database folder (from deploy's tuning); null: untuned
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in TARGET_KINDS:
            raise DeviceError(f"`target` must be one of {list(TARGET_KINDS)}, but got {self.target=}")
        if self.num_threads < 1:
            raise DeviceError(f"`num_threads >= 1` must hold, but got {self.num_threads=}")


@register_device("tvm")
class TvmDevice(Device):
    Settings = TvmSettings

    def __init__(self, profile: DeviceProfile) -> None:
        super().__init__(profile)
        self.settings: TvmSettings

    def is_available(self) -> tuple[bool, str]:
        try:
            import tvm
        except ImportError as exc:
            return False, f"TVM is not installed ({exc})"
        if self.settings.target == "cuda":
            if not (Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi")):
                return False, "no NVIDIA GPU on this machine (no /dev/nvidiactl, no nvidia-smi)"
            if not tvm.runtime.enabled("cuda"):
                return False, "this TVM build has no CUDA runtime"
            if not tvm.cuda(0).exist:
                return False, "TVM finds no CUDA device 0 (driver not loaded?)"
        if self.settings.tuning_db and not Path(self.settings.tuning_db).is_dir():
            return False, f"tuning database {self.settings.tuning_db} does not exist"
        return True, ""

    def measure_subgraph(self, subgraph: Subgraph) -> Measurement:
        return self.measure_onnx(subgraph_model(subgraph, seed=self.settings.seed), what=subgraph.name)

    def measure_network(self, arch: ArchConfig) -> Measurement:
        return self.measure_onnx(arch_model(arch, seed=self.settings.seed), what=arch.arch_id)

    def measure_onnx(self, model: onnx.ModelProto, *, what: str = "model") -> Measurement:
        """Compile and time a single-input ONNX model whose input is ``input``."""
        import tvm
        from tvm import relax

        available, reason = self.is_available()
        if not available:
            raise DeviceError(f"{self.name}: not available here: {reason}")
        self._configure_threads()
        dev = tvm.cuda(0) if self.settings.target == "cuda" else tvm.cpu(0)
        executable = compile_onnx(model, target=self.target(), tuning_db=self.settings.tuning_db)
        vm = relax.VirtualMachine(executable, dev)
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        data = np.random.default_rng(self.settings.seed).standard_normal(shape, dtype=np.float32)
        x, main = tvm.runtime.tensor(data, dev), vm["main"]

        def run() -> None:
            main(x)
            dev.sync()

        timing = TimingSettings(**{f.name: getattr(self.settings, f.name) for f in fields(TimingSettings)})
        return measure_stably(run, timing, what=f"{self.name} {what}")

    def target(self) -> dict[str, Any]:
        """The TVM target as a dict (string targets are rejected by TVM 0.27)."""
        from tvm.target import codegen

        if self.settings.target == "cuda":
            return {"kind": "cuda", "arch": _cuda_arch()}
        return {
            "kind": "llvm",
            "mtriple": codegen.llvm_get_system_triple(),
            "mcpu": codegen.llvm_get_system_cpu(),
            "num-cores": self.settings.num_threads,  # as deploy's targets say it
        }

    def metadata(self) -> dict[str, Any]:
        import tvm

        return {**super().metadata(), "tvm": tvm.__version__, "target": self.target(), "onnx": onnx.__version__}

    def _configure_threads(self) -> None:
        if self.settings.target == "llvm":
            import tvm

            tvm.get_global_func("runtime.config_threadpool")(0, self.settings.num_threads)


def lower_onnx(model: onnx.ModelProto, target: dict[str, Any]):
    """ONNX -> the Relax module that is built: batch norm decomposed, every op legalised to TIR, conv + bias +
    activation (+ residual add) fused. The same passes as ``deploy.compile.lower_onnx`` (this package may not
    import ``deploy``; ``tests/test_tvm_device.py`` checks the two modules are equal)."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    mod = from_onnx(model, shape_dict={INPUT: shape}, keep_params_in_input=False)
    with tvm.target.Target(target):
        return tvm.transform.Sequential(
            [
                relax.transform.DecomposeOpsForInference(),
                relax.transform.CanonicalizeBindings(),
                relax.get_pipeline("zero"),
            ]
        )(mod)


def compile_onnx(model: onnx.ModelProto, *, target: dict[str, Any], tuning_db: str | None = None):
    """ONNX -> executable for ``target``, as deploy builds it; applies a MetaSchedule database when given."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    try:
        tvm_target = tvm.target.Target(target)
        mod = lower_onnx(model, target)
        if tuning_db:
            database = ms.database.JSONDatabase(work_dir=str(tuning_db), allow_missing=False)
            with tvm_target, database:
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        return relax.build(mod, target=tvm_target)
    except tvm.error.TVMError as exc:
        raise DeviceError(f"TVM cannot compile the model for {target} ({' '.join(str(exc).split())[:500]})") from exc


def _cuda_arch() -> str:
    import tvm

    major, minor = tvm.cuda(0).compute_version.split(".")
    return f"sm_{major}{minor}"
