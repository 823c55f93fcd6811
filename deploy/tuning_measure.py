"""Where tuning candidates are built and measured.

Candidates are built in this process rather than in MetaSchedule's popen
builder: each of its builder workers imports ``tvm.s_tir.tensor_intrin``,
which takes 20-40 s per batch of candidates on this machine, while building
a candidate takes ~0.1 s. Candidates are measured by MetaSchedule's local
runner (a worker process) with ``num_threads`` TVM threads, or on a board
through MetaSchedule's RPC runner (libraries linked with the target's cross
compiler).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.tracker import check_board, parse_tracker

__all__ = ["Measurer", "in_process_builder", "runner"]


@dataclass(frozen=True)
class Measurer:
    """Where candidates run: this host (default), or a board behind a TVM RPC tracker."""

    num_threads: int = 1  # TVM threads on this host (a board uses its server's default)
    rpc_tracker: str | None = None  # HOST:PORT
    rpc_key: str | None = None
    linker: str | None = None  # cross compiler for the board's libraries; None: this host's


@contextmanager
def runner(measurer: Measurer) -> Iterator[Any]:
    """MetaSchedule's runner for ``measurer``: a local worker process, or the board's RPC runner."""
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False)
    if measurer.rpc_tracker is None:
        with _env("TVM_NUM_THREADS", str(measurer.num_threads)):  # the runner's worker process inherits it
            yield ms.runner.LocalRunner(evaluator_config=evaluator)
        return
    check_board(measurer.rpc_tracker, measurer.rpc_key)
    host, port = parse_tracker(measurer.rpc_tracker)
    config = ms.runner.RPCConfig(
        tracker_host=host, tracker_port=port, tracker_key=measurer.rpc_key, session_timeout_sec=60
    )
    yield ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator, max_workers=1)


def in_process_builder(scratch: Path, linker: str | None) -> Any:
    """A MetaSchedule builder that builds candidates in this process, into folders under ``scratch``."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build
    from tvm.support import cc

    fcompile = cc.cross_compiler(linker) if linker else None

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs: list) -> list:
            results = []
            for build_input in build_inputs:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)  # default_build calls tvm.build
                        module = default_build(build_input.mod, build_input.target, None)
                    # One folder per candidate: the runners' cleanup removes the artifact's folder.
                    path = Path(tempfile.mkdtemp(dir=scratch)) / "candidate.so"
                    module.export_library(str(path), fcompile=fcompile)
                    results.append(BuilderResult(str(path), None))
                # A candidate schedule can fail in any pass or in LLVM, each raising its own
                # exception type; MetaSchedule records the failure and moves on.
                except Exception as exc:  # noqa: BLE001
                    results.append(BuilderResult(None, f"in-process build failed: {exc}"))
            return results

    return InProcessBuilder()


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
