"""ONNX -> TVM Relax -> a compiled library for a registered target: the one TVM compiler of edgenas.

The model is lowered at batch 1 (:mod:`deploy.lowering`: conv + bias + ReLU6 +
residual add fused into one TIR function), optionally tuned with MetaSchedule
(:mod:`deploy.tuning`), then built. Untuned code is plain loop nests; tuning
replaces the functions the database has records for. The latency estimator's
``cpu-tvm`` and ``cuda`` devices build with :func:`compile_onnx` too, so they
time what deploy ships.

The Relax VM's ``main`` is compiled to native code (:data:`EXEC_MODE`
``"compiled"``) rather than interpreted as bytecode: on the 1,000-trial
baseline (42 kernels, ~0.6 ms) that measured 1-2 % faster per call, while the
kernels and memory plan stay the same. Bytecode (``exec_mode="bytecode"``)
keeps the VM's per-call instrument hook, which ``benchmarks/deploy_breakdown.py``
times kernels with.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from deploy.errors import CompileError
from deploy.lowering import batch1_shape, finish_prepack, load_onnx, lower_onnx
from deploy.targets import DeployTarget, get_target
from deploy.tuning import TuningReport, tune_module
from deploy.tuning_db import apply_database
from deploy.tuning_measure import Measurer
from deploy.tuning_schedule import TuningBudget
from search_spaces.errors import EdgeNasError, one_line

__all__ = ["BUILD_LOG", "EXEC_MODE", "EXEC_MODES", "CompiledModel", "compile_onnx", "load_compiled"]

logger = logging.getLogger(__name__)

BUILD_LOG = "build.log"
EXEC_MODES = ("compiled", "bytecode")  # relax.build's exec_mode: main as native code, or as VM bytecode
EXEC_MODE = "compiled"  # measured faster per call than bytecode (module docstring)


@dataclass
class CompiledModel:
    """A built Relax VM executable (or a loaded library) for one target, batch-1 input."""

    target: DeployTarget
    tvm_target: dict[str, Any]
    module: Any  # relax VMExecutable, or a runtime Module loaded from a library file
    input_shape: tuple[int, ...]
    num_threads: int = 1
    tuning: TuningReport | None = None
    compile_seconds: float = 0.0
    _vm: Any = field(default=None, repr=False)

    def export_library(self, path: str | Path) -> Path:
        """Write the shared library; links with the target's cross compiler when it is not this host's."""
        from tvm.support import cc

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        linker = self.target.linker()
        fcompile = cc.cross_compiler(linker) if linker else None
        try:
            with _quiet_native_stderr():
                self.module.export_library(str(path), fcompile=fcompile)
        except (RuntimeError, OSError) as exc:
            raise CompileError(f"linking {path} for {self.target.name} failed ({one_line(exc)})") from None
        return path

    def vm(self) -> Any:
        """The Relax VM on this host's device; refused for a library built for another machine."""
        import tvm
        from tvm import relax

        if self._vm is None:
            runnable, reason = self.target.runs_on_host()
            if not runnable:
                raise CompileError(f"a model compiled for {self.target.name} cannot run on this host: {reason}")
            device = tvm.cuda(0) if self.target.device == "cuda" else tvm.cpu(0)
            self._vm = relax.VirtualMachine(self.module, device)
        return self._vm

    def program_text(self) -> str:
        """The built program as text, to compare builds: the VM bytecode, and the generated code of a fresh build
        (its kernels and, in compiled mode, ``main``); a library loaded from a file has only the former. The
        addresses LLVM names its alias scopes after are blanked: they differ from build to build."""
        parts = [self.module.as_text()]
        for module in getattr(self.module, "mod", self.module).imports:
            try:
                parts.append(re.sub(r"0x[0-9a-f]{8,16}(?![0-9A-Fa-f])", "0x", module.inspect_source()))
            except (RuntimeError, AttributeError):
                continue  # a loaded library keeps no source
        return "\n".join(parts)

    def device(self) -> Any:
        import tvm

        return tvm.cuda(0) if self.target.device == "cuda" else tvm.cpu(0)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits (the first output) for an N x C x H x W float32 batch."""
        return self.run_outputs(batch)[0]

    def run_outputs(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every output for an N x C x H x W float32 batch, one sample at a time (the library is batch 1)."""
        import tvm

        vm, device = self.vm(), self.device()
        outputs: list[list[np.ndarray]] = []
        for sample in np.asarray(batch, dtype=np.float32):
            result = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(sample[None]), device))
            outputs.append([value.numpy() for value in _outputs(result)])
        return tuple(np.concatenate(values, axis=0) for values in zip(*outputs))


def compile_onnx(
    model: onnx.ModelProto | str | Path,
    *,
    target: str,
    tuning_trials: int = 0,
    tuning_db: str | Path | None = None,
    tune_minutes: float | None = None,
    tuning_weighting: str = "flops",
    prepack: bool = True,
    layout: str | None = None,
    work_dir: str | Path | None = None,
    num_threads: int = 1,
    rpc_tracker: str | None = None,
    rpc_key: str | None = None,
    exec_mode: str = EXEC_MODE,
) -> CompiledModel:
    """Compile an ONNX model (single input ``input``, N x C x H x W) for ``target`` at batch 1.

    ``tuning_trials > 0`` tunes with MetaSchedule into ``tuning_db`` (default ``work_dir/tuning-db``;
    deploy's command line uses the target's persistent :func:`deploy.tuning_db.default_tuning_db`), within
    ``tune_minutes`` (None: no limit), measuring on this host, or on the board at ``rpc_tracker`` /
    ``rpc_key`` (required for a target this host cannot run); ``tuning_db`` alone applies earlier tuning.
    ``tuning_weighting`` shares the trials out by task FLOPs (``flops``) or evenly (``even``).
    ``prepack`` (CPU targets) lets tuned kernels read weights packed once at build time
    (:mod:`deploy.lowering`); it changes the tasks, so a database tuned without it does not apply.
    ``layout`` is the convolutions' data layout (:mod:`deploy.layout`; None: the target's ``conv_layout``,
    NHWC for x86_64); it changes the tasks too, so a database tuned in another layout does not apply.
    ``exec_mode`` is how the VM runs ``main`` (:data:`EXEC_MODES`; the module docstring says why compiled).
    ``num_threads`` is what tuning measures with here and what the target's ``num-cores`` says. A failed build raises
    :class:`CompileError` with a one-line summary and writes the full log to ``work_dir/build.log``.
    """
    if exec_mode not in EXEC_MODES:
        raise CompileError(f"`exec_mode` must be one of {list(EXEC_MODES)}, but got {exec_mode=}")
    deploy_target = get_target(target)
    linker = deploy_target.linker()  # a missing cross compiler fails before a long build
    proto = load_onnx(model)
    input_shape = batch1_shape(proto)
    tvm_target = deploy_target.resolve(num_threads=num_threads)
    measurer = Measurer(num_threads=num_threads, rpc_tracker=rpc_tracker, rpc_key=rpc_key, linker=linker)
    budget = None
    if tuning_trials > 0:
        budget = TuningBudget(trials=tuning_trials, minutes=tune_minutes, weighting=tuning_weighting)
    prepack = prepack and deploy_target.device == "cpu"
    layout = layout or deploy_target.conv_layout
    if budget is not None:
        _check_tuning_setup(deploy_target, measurer)
        if tuning_db is None:
            tuning_db = Path(work_dir or tempfile.mkdtemp(prefix="edgenas-tune-")) / "tuning-db"
    start = time.perf_counter()
    with _build_errors(deploy_target.name, work_dir):
        executable, tuning = _build(
            proto,
            input_shape,
            tvm_target,
            budget,
            tuning_db,
            measurer,
            prepack=prepack,
            layout=layout,
            exec_mode=exec_mode,
        )
    seconds = time.perf_counter() - start
    logger.info("compiled for %s in %.1f s", deploy_target.name, seconds)
    return CompiledModel(
        target=deploy_target,
        tvm_target=tvm_target,
        module=executable,
        input_shape=input_shape,
        num_threads=num_threads,
        tuning=tuning,
        compile_seconds=seconds,
    )


def _check_tuning_setup(target: DeployTarget, measurer: Measurer) -> None:
    if (measurer.rpc_tracker is None) != (measurer.rpc_key is None):
        raise CompileError("an RPC tracker and a device key go together; give both or neither")
    if measurer.rpc_tracker is None and not target.runs_on_host()[0]:
        raise CompileError(
            f"tuning for {target.name} measures candidates on such a machine: give --rpc-tracker and --rpc-key "
            "of a board, or compile untuned (--tune-trials 0)"
        )


def load_compiled(path: str | Path, *, target: str, tvm_target: dict[str, Any], input_shape: tuple[int, ...]):
    """Load a library written by :meth:`CompiledModel.export_library` on a host that can run it."""
    import tvm

    deploy_target = get_target(target)
    runnable, reason = deploy_target.runs_on_host()
    if not runnable:
        raise CompileError(f"{path}: a model compiled for {target} cannot run on this host: {reason}")
    try:
        module = tvm.runtime.load_module(str(path))
    except (RuntimeError, OSError) as exc:
        raise CompileError(f"{path}: cannot load the compiled library ({one_line(exc)})") from None
    return CompiledModel(target=deploy_target, tvm_target=tvm_target, module=module, input_shape=tuple(input_shape))


def _build(
    proto: onnx.ModelProto,
    input_shape: tuple[int, ...],
    tvm_target: dict[str, Any],
    budget: TuningBudget | None,
    tuning_db: str | Path | None,
    measurer: Measurer,
    *,
    prepack: bool,
    layout: str,
    exec_mode: str,
) -> tuple[Any, TuningReport | None]:
    import tvm
    from tvm import relax

    target = tvm.target.Target(tvm_target)
    mod = lower_onnx(proto, input_shape, target, prepack=prepack, layout=layout)
    tuning = None
    if budget is not None:
        tuning = tune_module(mod, target=target, trials=budget, database=tuning_db, measurer=measurer)
    if tuning_db is not None:
        mod = apply_database(mod, target=target, database=tuning_db)
        if prepack:
            mod = finish_prepack(mod, target)
    return relax.build(mod, target=target, exec_mode=exec_mode), tuning


@contextmanager
def _build_errors(target_name: str, work_dir: str | Path | None) -> Iterator[None]:
    """Turn any TVM failure into a one-line CompileError and save the full log as build.log."""
    try:
        yield
    except EdgeNasError:
        raise
    # TVM raises TVMError, ValueError, InternalError, OpNotImplemented, ... for a failed
    # import or build; every one of them means "this model did not build for this target".
    except Exception as exc:  # noqa: BLE001
        where = ""
        if work_dir is not None:
            log = Path(work_dir) / BUILD_LOG
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("".join(traceback.format_exception(exc)))
            where = f"; full log in {log}"
        raise CompileError(f"TVM build for {target_name} failed: {_summary(exc)}{where}") from None


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hide TVM's C++ "Scope Saving" warnings (one per function) while saving a library.

    They are written to file descriptor 2 by native code, so Python's warning filters cannot
    see them; other native output is passed on to the log.
    """
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and "Scope Saving" not in line:
                    logger.warning("tvm: %s", line.strip())


def _outputs(result: Any) -> list[Any]:
    """The VM's result as a list: one tensor, or the tuple of a multi-output model."""
    return [result] if hasattr(result, "numpy") else list(result)


def _summary(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = next((line for line in lines if not line.startswith(("Traceback", "File ", "at "))), "")
    return f"{type(exc).__name__}: {message}"[:300]
