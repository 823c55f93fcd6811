"""Deploy a found network: ONNX export and parity, TVM compilation and tuning,
cross-compilation, RPC boards, artifact folders, and timing compiled models.

Imports only ``search_spaces`` (DESIGN.md). Importing this package is cheap:
each name below is imported from its room on first use, and TVM only inside
the functions that need it.

The rooms, leaves first: ``errors``; ``session`` (input/output names, the ONNX
Runtime session), ``latency`` (timing statistics), ``threads`` (TVM's thread
pool), ``tracker`` (RPC tracker and board lookup), ``targets``, ``display``
(the decoding ``edgenas run`` shows), ``artifact``;
the TVM backend ``lowering`` -> ``tuning`` (driving ``tuning_schedule``,
``tuning_db`` and ``tuning_measure``) -> ``compile`` (also used by the latency
estimator's TVM devices); ``export``, ``benchmark``, ``rpc``,
``runtime``, ``dense_outputs`` (boxes and masks from raw outputs) and ``overlay``;
and ``pipeline`` (:func:`deploy_model`) on top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces.lazy_exports import lazy_exports

if TYPE_CHECKING:  # for static tools; at run time a name's module is imported on first use (__getattr__)
    from deploy.artifact import Artifact, Manifest, Preprocessing, load_artifact, write_manifest
    from deploy.benchmark import time_compiled, time_onnxruntime
    from deploy.compile import CompiledModel, compile_onnx, load_compiled
    from deploy.dense_outputs import DetectedBox, class_histogram, detect, input_sizes, segment
    from deploy.errors import ArtifactError, CompileError, ExportError, RemoteError
    from deploy.export import ParityReport, check_onnx_parity, export_onnx, fold_batchnorm, load_weights, random_inputs
    from deploy.latency import LatencyStats
    from deploy.lowering import lower_onnx
    from deploy.overlay import write_overlay
    from deploy.pipeline import DeployResult, DeploySettings, deploy_model
    from deploy.rpc import RemoteResult, local_board, run_remote
    from deploy.runtime import IMAGE_SUFFIXES, ClassProbability, Predictor, load_input
    from deploy.targets import DeployTarget, get_target, host_target, known_targets, register_target
    from deploy.threads import set_tvm_threads
    from deploy.tracker import check_board
    from deploy.tuning import TuningReport, tune_module
    from deploy.tuning_db import apply_database, default_tuning_db
    from deploy.tuning_measure import Measurer
    from deploy.tuning_schedule import TuningBudget

__all__ = [
    "IMAGE_SUFFIXES",
    "Artifact",
    "ArtifactError",
    "ClassProbability",
    "CompileError",
    "CompiledModel",
    "DeployResult",
    "DeploySettings",
    "DeployTarget",
    "DetectedBox",
    "ExportError",
    "LatencyStats",
    "Manifest",
    "Measurer",
    "ParityReport",
    "Predictor",
    "Preprocessing",
    "RemoteError",
    "RemoteResult",
    "TuningBudget",
    "TuningReport",
    "apply_database",
    "check_board",
    "check_onnx_parity",
    "class_histogram",
    "compile_onnx",
    "default_tuning_db",
    "deploy_model",
    "detect",
    "export_onnx",
    "fold_batchnorm",
    "get_target",
    "host_target",
    "input_sizes",
    "known_targets",
    "load_artifact",
    "load_compiled",
    "load_input",
    "load_weights",
    "local_board",
    "lower_onnx",
    "random_inputs",
    "register_target",
    "run_remote",
    "segment",
    "set_tvm_threads",
    "time_compiled",
    "time_onnxruntime",
    "tune_module",
    "write_overlay",
    "write_manifest",
]

# The same names by submodule: `import deploy` loads none of them (torch, onnx, TVM).
_EXPORTS = {
    "deploy.artifact": ("Artifact", "Manifest", "Preprocessing", "load_artifact", "write_manifest"),
    "deploy.benchmark": ("time_compiled", "time_onnxruntime"),
    "deploy.compile": ("CompiledModel", "compile_onnx", "load_compiled"),
    "deploy.dense_outputs": ("DetectedBox", "class_histogram", "detect", "input_sizes", "segment"),
    "deploy.errors": ("ArtifactError", "CompileError", "ExportError", "RemoteError"),
    "deploy.export": (
        "ParityReport",
        "check_onnx_parity",
        "export_onnx",
        "fold_batchnorm",
        "load_weights",
        "random_inputs",
    ),
    "deploy.latency": ("LatencyStats",),
    "deploy.lowering": ("lower_onnx",),
    "deploy.overlay": ("write_overlay",),
    "deploy.pipeline": ("DeployResult", "DeploySettings", "deploy_model"),
    "deploy.rpc": ("RemoteResult", "local_board", "run_remote"),
    "deploy.runtime": ("IMAGE_SUFFIXES", "ClassProbability", "Predictor", "load_input"),
    "deploy.targets": ("DeployTarget", "get_target", "host_target", "known_targets", "register_target"),
    "deploy.threads": ("set_tvm_threads",),
    "deploy.tracker": ("check_board",),
    "deploy.tuning": ("TuningReport", "tune_module"),
    "deploy.tuning_db": ("apply_database", "default_tuning_db"),
    "deploy.tuning_measure": ("Measurer",),
    "deploy.tuning_schedule": ("TuningBudget",),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
