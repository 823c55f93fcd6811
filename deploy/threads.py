"""The size of TVM's CPU thread pool: the one thread setup of deploy and of the TVM latency devices.

Affinity mode 1 is TVM's ``ThreadGroup::kBig``: the mode TVM's pool starts with, and so
the one a library runs with under ``TVM_NUM_THREADS`` and the one MetaSchedule's runner
measures candidates with. On x86 every core counts as "big".
"""

from __future__ import annotations

from deploy.errors import CompileError

__all__ = ["set_tvm_threads"]

_AFFINITY_BIG = 1  # TVM's ThreadGroup::kBig (kLittle is -1; 0 is no mode of TVM's)


def set_tvm_threads(num_threads: int) -> None:
    """Size TVM's CPU thread pool (the same as TVM_NUM_THREADS, but at any time)."""
    import tvm

    if num_threads < 1:
        raise CompileError(f"`num_threads >= 1` must hold, but got {num_threads=}")
    tvm.get_global_func("runtime.config_threadpool")(_AFFINITY_BIG, num_threads)
