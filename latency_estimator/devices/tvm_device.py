"""cpu-tvm and cuda: real timing of TVM-compiled code (Relax VM).

Each subgraph's ONNX graph (:mod:`latency_estimator.onnx_graph`) is built by
deploy's compiler (:func:`deploy.compile.compile_onnx`: the same lowering,
target and thread setup as what deploy ships) for the profile's target
(``llvm``: deploy's target for this host's CPU, ``cuda``: an NVIDIA GPU),
untuned unless ``tuning_db`` names a MetaSchedule database folder (deploy's
``--tuning-db``; ``deploy``: the target's persistent database that
``edgenas deploy`` tunes into by default), and timed through the VM with
cpu-ort's loop (:mod:`._timing`). The device never tunes: an untuned profile
models ``edgenas deploy --tune-trials 0``, one with a database models what
deploy ships from that database (subgraphs it has no records for stay
untuned); :meth:`TvmDevice.metadata` says which (``tuning_state``), and the
convolutions' data layout the lowering used (``conv_layout``, NHWC on x86_64).
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

from deploy.compile import CompiledModel, compile_onnx
from deploy.errors import CompileError
from deploy.targets import DeployTarget, cuda_available, get_target, host_target
from deploy.threads import set_tvm_threads
from deploy.tuning_db import default_tuning_db
from latency_estimator.devices import register_device
from latency_estimator.devices._timing import TimingSettings, measure_stably
from latency_estimator.devices.base import Device, DeviceProfile, Measurement
from latency_estimator.errors import DeviceError
from latency_estimator.onnx_graph import arch_model, subgraph_model
from latency_estimator.subgraph import Subgraph
from search_spaces.arch import ArchConfig

__all__ = ["TvmDevice", "TvmSettings"]

logger = logging.getLogger(__name__)
TARGET_KINDS = ("llvm", "cuda")
DEPLOY_DB = "deploy"  # tuning_db: the deploy target's persistent database (deploy.tuning_db.default_tuning_db)


@dataclass(frozen=True)
class TvmSettings(TimingSettings):
    target: str = "llvm"  # target kind: llvm (host CPU, -mcpu of this machine) or cuda
    num_threads: int = 1  # CPU threads of TVM's pool (llvm only): like cpu-ort's intra-op threads
    tuning_db: str | None = (
        None  # MetaSchedule database folder (from deploy's tuning); "deploy": deploy's; null: untuned
    )
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
    default_samples = 800  # compiles each subgraph: about 1 s apiece

    def __init__(self, profile: DeviceProfile) -> None:
        super().__init__(profile)
        self.settings: TvmSettings

    def is_available(self) -> tuple[bool, str]:
        try:
            import tvm  # noqa: F401  (installed?)
        except ImportError as exc:
            return False, f"TVM is not installed ({exc})"
        if self.settings.target == "cuda":
            if not (Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi")):
                return False, "no NVIDIA GPU on this machine (no /dev/nvidiactl, no nvidia-smi)"
            cuda, reason = cuda_available()
            if not cuda:
                return False, reason
        database = self.tuning_db()
        if database is not None and not (database / "database_workload.json").is_file():
            return False, f"tuning database {database} does not exist (deploy with tuning writes it)"
        return True, ""

    def measure_subgraph(self, subgraph: Subgraph) -> Measurement:
        return self.measure_onnx(subgraph_model(subgraph, seed=self.settings.seed), what=subgraph.name)

    def measure_network(self, arch: ArchConfig) -> Measurement:
        return self.measure_onnx(arch_model(arch, seed=self.settings.seed), what=arch.arch_id)

    def measure_onnx(self, model: onnx.ModelProto, *, what: str = "model") -> Measurement:
        """Compile and time a single-input ONNX model whose input is ``input``."""
        import tvm

        available, reason = self.is_available()
        if not available:
            raise DeviceError(f"{self.name}: not available here: {reason}")
        if self.settings.target == "llvm":
            set_tvm_threads(self.settings.num_threads)
        compiled = self.compile(model)
        dev = compiled.device()
        data = np.random.default_rng(self.settings.seed).standard_normal(compiled.input_shape, dtype=np.float32)
        x, main = tvm.runtime.tensor(data, dev), compiled.vm()["main"]

        def run() -> None:
            main(x)
            dev.sync()

        timing = TimingSettings(**{f.name: getattr(self.settings, f.name) for f in fields(TimingSettings)})
        return measure_stably(run, timing, what=f"{self.name} {what}")

    def compile(self, model: onnx.ModelProto) -> CompiledModel:
        """``model`` built as deploy builds what it ships, for this profile's target, threads and tuning."""
        try:
            return compile_onnx(
                model,
                target=self.deploy_target().name,
                tuning_db=self.tuning_db(),
                num_threads=self.settings.num_threads,
            )
        except CompileError as exc:
            raise DeviceError(f"{self.name}: {exc}") from None

    def tuning_db(self) -> Path | None:
        """The tuning database this profile builds with; None: untuned."""
        if self.settings.tuning_db is None:
            return None
        if self.settings.tuning_db == DEPLOY_DB:
            return default_tuning_db(self.deploy_target().name)
        return Path(self.settings.tuning_db)

    def deploy_target(self) -> DeployTarget:
        """Deploy's target this device builds for: ``cuda``, or the one of this host's CPU (llvm)."""
        return get_target("cuda") if self.settings.target == "cuda" else host_target()

    def target(self) -> dict[str, Any]:
        """The TVM target dict, resolved by deploy (string targets are rejected by TVM 0.27)."""
        return self.deploy_target().resolve(num_threads=self.settings.num_threads)

    def metadata(self) -> dict[str, Any]:
        import tvm

        database = self.tuning_db()
        state = "untuned (deploy --tune-trials 0)" if database is None else f"tuned: database {database}"
        return {
            **super().metadata(),
            "tvm": tvm.__version__,
            "target": self.target(),
            "onnx": onnx.__version__,
            "tuning_state": state,
            "conv_layout": self.deploy_target().conv_layout,  # deploy.layout: what the lowering converted to
        }
