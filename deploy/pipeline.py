"""deploy_model: a trained PyTorch model -> a verified artifact folder.

The steps, in order (each logs what it did):

1. write ``arch.yaml`` and export ``model.onnx`` (BatchNorm folded, opset 17, checked);
2. parity PyTorch vs ONNX Runtime on random and real inputs (max abs diff <= 1e-4), on every
   output (a detector has two: heatmap and box);
3. compile with TVM for the target (optionally tuned) and write ``model-<target>.so``;
4. parity TVM vs ONNX Runtime on every output, on this host when it can run the library, else
   on the RPC board; latency measured wherever the model ran;
5. write ``manifest.json`` with every file's sha256, the task, its output names and, for a
   detector, the box decoding settings (stride, score threshold, NMS IoU, max boxes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deploy.artifact import MANIFEST, Manifest, Preprocessing, library_name, write_manifest
from deploy.benchmark import time_compiled, time_onnxruntime
from deploy.compile import BUILD_LOG, CompiledModel, compile_onnx
from deploy.display import DISPLAY_DECODE
from deploy.errors import CompileError, ExportError
from deploy.export import (
    PARITY_TOLERANCE,
    ParityReport,
    as_outputs,
    check_onnx_parity,
    export_onnx,
    output_diffs,
    random_inputs,
)
from deploy.rpc import RemoteResult, run_remote
from deploy.session import INPUT_NAME, ort_session, output_names
from deploy.targets import get_target
from deploy.tracker import check_board
from search_spaces.arch import ArchConfig
from search_spaces.decode_settings import DecodeSettings

__all__ = ["DISPLAY_DECODE", "DeployResult", "DeploySettings", "deploy_model"]

logger = logging.getLogger(__name__)

PARITY_SAMPLES = 8  # images per parity batch: enough to catch a wrong layout, fast on the VM


@dataclass(frozen=True)
class DeploySettings:
    target: str = "x86_64"
    tuning_trials: int = 0  # MetaSchedule trials for the whole model; 0: untuned
    tuning_db: Path | None = None  # reusable tuning database folder
    tune_minutes: float | None = None  # stop starting tasks after this long (None: no limit)
    num_threads: int = 1  # CPU threads for tuning and for the latency measured here
    rpc_tracker: str | None = None  # HOST:PORT of a TVM RPC tracker
    rpc_key: str | None = None  # device key of the board at the tracker
    measure: bool = True  # time the model on this host (and the board) and record it

    def __post_init__(self) -> None:
        if self.tuning_trials < 0:
            raise CompileError(f"`tuning_trials >= 0` must hold, but got {self.tuning_trials=}")
        if self.tune_minutes is not None and self.tune_minutes <= 0:
            raise CompileError(f"`tune_minutes > 0` must hold, but got {self.tune_minutes=}")
        if (self.rpc_tracker is None) != (self.rpc_key is None):
            raise CompileError("--rpc-tracker and --rpc-key go together; give both or neither")


@dataclass(frozen=True)
class DeployResult:
    folder: Path
    manifest: Manifest
    parity: tuple[ParityReport, ...]
    compiled: CompiledModel = field(repr=False)
    remote: RemoteResult | None = None


def deploy_model(
    model: nn.Module,
    arch: ArchConfig,
    *,
    out_dir: str | Path,
    settings: DeploySettings,
    preprocessing: Preprocessing,
    class_names: tuple[str, ...],
    real_inputs: np.ndarray | None = None,
    dataset: str | None = None,
    test_accuracy: float | None = None,
    test_metric: str = "accuracy",
    estimated_latency_ms: dict[str, float] | None = None,
    decode: DecodeSettings = DISPLAY_DECODE,
) -> DeployResult:
    """Export, compile, verify and package ``model`` (eval mode) into ``out_dir``.

    The outputs follow ``arch.task`` (``deploy.session.TASK_OUTPUTS``); a detector's manifest records
    ``decode`` and the stride of its output grid, so that ``edgenas run`` decodes boxes as deployed.
    """
    folder = _prepare_folder(out_dir, settings)
    names = output_names(arch.task)
    decoding = _decoding(model, arch.task, preprocessing, decode)
    arch.save(folder / "arch.yaml")
    inputs = _parity_inputs(preprocessing, real_inputs)
    onnx_path = export_onnx(
        model.eval(), input_shape=preprocessing.input_shape, path=folder / "model.onnx", output_names=names
    )
    parity = [check_onnx_parity(model, onnx_path, inputs=inputs)]
    compiled = compile_onnx(
        onnx_path,
        target=settings.target,
        tuning_trials=settings.tuning_trials,
        tuning_db=settings.tuning_db,
        tune_minutes=settings.tune_minutes,
        work_dir=folder,
        num_threads=settings.num_threads,
        rpc_tracker=settings.rpc_tracker,
        rpc_key=settings.rpc_key,
    )
    library = compiled.export_library(folder / library_name(settings.target))
    checks, measured, remote = _verify_and_time(compiled, library, onnx_path, inputs, settings)
    manifest = Manifest(
        arch_id=arch.arch_id,
        block_string=arch.block_string(),
        target=settings.target,
        tvm_target=compiled.tvm_target,
        target_arch=compiled.target.arch,
        target_device=compiled.target.device,
        library_file=library.name,
        preprocessing=preprocessing,
        class_names=tuple(class_names),
        task=arch.task,
        output_names=names,
        decoding=decoding,
        test_metric=test_metric,
        dataset=dataset,
        test_accuracy=test_accuracy,
        estimated_latency_ms=dict(estimated_latency_ms or {}),
        measured_latency_ms=measured,
        parity_max_abs_diff=_parity_table([*parity, *checks]),
        tuning=_tuning_record(compiled, settings),
    )
    manifest = write_manifest(folder, manifest)
    reports = (*parity, *checks)
    return DeployResult(folder=folder, manifest=manifest, parity=reports, compiled=compiled, remote=remote)


def _prepare_folder(out_dir: str | Path, settings: DeploySettings) -> Path:
    """Fail fast on a bad target, cross compiler or board; clear what would make the folder look deployed."""
    get_target(settings.target).linker()
    if settings.rpc_tracker is not None:
        check_board(settings.rpc_tracker, settings.rpc_key)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (MANIFEST, BUILD_LOG):
        (folder / stale).unlink(missing_ok=True)
    return folder


def _verify_and_time(
    compiled: CompiledModel,
    library: Path,
    onnx_path: Path,
    inputs: dict[str, np.ndarray],
    settings: DeploySettings,
) -> tuple[list[ParityReport], dict[str, float], RemoteResult | None]:
    """TVM vs ONNX Runtime wherever the library can run (this host, the board), and latency there."""
    reports: list[ParityReport] = []
    measured: dict[str, float] = {}
    if compiled.target.runs_on_host()[0]:
        reports.append(_tvm_parity(compiled.run_outputs, onnx_path, inputs, where="tvm"))
        if settings.measure:
            measured.update(_host_latency(compiled, onnx_path, settings.num_threads))
    remote = None
    if settings.rpc_tracker is not None:
        batch = inputs["random"]
        remote = run_remote(library, tracker=settings.rpc_tracker, key=settings.rpc_key, inputs=batch)
        reports.append(_tvm_parity(lambda _: remote.all_outputs, onnx_path, {"random": batch}, where="rpc"))
        measured[f"rpc:{settings.rpc_key}-tvm"] = remote.latency.median_ms
    return reports, measured, remote


def _decoding(model: nn.Module, task: str, preprocessing: Preprocessing, decode: DecodeSettings) -> dict:
    """What the manifest says about turning raw outputs into a prediction."""
    if task == "classification":
        return {}
    if task == "segmentation":
        return {"method": "argmax"}  # per pixel, over the logits at the input size
    with torch.no_grad():
        heatmap = as_outputs(model.eval()(torch.zeros(preprocessing.input_shape)))[0]
    height, width = heatmap.shape[-2:]
    resolution = preprocessing.resolution
    if height != width or resolution % height:
        raise ExportError(f"detection heatmap grid {height}x{width} does not divide the {resolution}px input")
    return {
        "method": "centernet",  # search_spaces.box_coding.decode
        "stride": resolution // height,
        "score_threshold": decode.score_threshold,
        "nms_iou": decode.nms_iou,
        "max_detections": decode.max_detections,
    }


def _parity_inputs(preprocessing: Preprocessing, real_inputs: np.ndarray | None) -> dict[str, np.ndarray]:
    inputs = {"random": random_inputs(preprocessing.input_shape, batch=PARITY_SAMPLES)}
    if real_inputs is not None and len(real_inputs):
        inputs["real"] = np.ascontiguousarray(real_inputs[:PARITY_SAMPLES], dtype=np.float32)
    return inputs


def _tvm_parity(run, onnx_path: Path, inputs: dict[str, np.ndarray], *, where: str) -> ParityReport:
    """``run(batch)`` gives every output of the compiled model; each is compared with ONNX Runtime's."""
    session = ort_session(onnx_path)
    names = [value.name for value in session.get_outputs()]
    diffs: dict[str, float] = {}
    for kind, batch in inputs.items():
        got = tuple(run(batch))
        if len(got) != len(names):
            raise CompileError(f"compiled model returns {len(got)} outputs, the ONNX model {len(names)} ({names})")
        try:
            diffs.update(output_diffs(kind, names, session.run(None, {INPUT_NAME: batch}), got))
        except ExportError as exc:
            raise CompileError(f"compiled model: {exc}") from None
    report = ParityReport(reference="onnxruntime", candidate=where, max_abs_diff=diffs)
    logger.info("parity %s", report.summary())
    if report.worst > PARITY_TOLERANCE:
        raise CompileError(f"compiled model differs from ONNX Runtime beyond {PARITY_TOLERANCE:g}: {report.summary()}")
    return report


def _host_latency(compiled: CompiledModel, onnx_path: Path, threads: int) -> dict[str, float]:
    tvm_ms = time_compiled(compiled, num_threads=threads).median_ms
    ort_ms = time_onnxruntime(onnx_path, input_shape=compiled.input_shape, num_threads=threads).median_ms
    return {f"host-tvm-{threads}t": tvm_ms, f"host-onnxruntime-{threads}t": ort_ms}


def _parity_table(reports: list[ParityReport]) -> dict[str, float]:
    return {
        f"{report.candidate}-vs-{report.reference}/{kind}": diff
        for report in reports
        for kind, diff in report.max_abs_diff.items()
    }


def _tuning_record(compiled: CompiledModel, settings: DeploySettings) -> dict[str, object] | None:
    if compiled.tuning is None and settings.tuning_db is None:
        return None
    record: dict[str, object] = {"database": str(settings.tuning_db) if settings.tuning_db else None}
    if compiled.tuning is not None:
        tuning = compiled.tuning
        record.update(
            trials=settings.tuning_trials,
            tasks=tuning.tasks,
            tuned_tasks=tuning.tuned_tasks,
            reused_tasks=tuning.reused_tasks,
            skipped_tasks=tuning.skipped_tasks,
            minutes=settings.tune_minutes,
            measured_candidates=tuning.measured,
            seconds=round(tuning.seconds, 1),
            startup_seconds=round(tuning.startup_seconds, 1),
            database=tuning.database,
        )
    return record
