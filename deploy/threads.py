"""The size of TVM's CPU thread pool: the one thread setup of deploy and of the TVM latency devices.

Affinity mode 1 is TVM's ``ThreadGroup::kBig``: the mode TVM's pool starts with, and so
the one a library runs with under ``TVM_NUM_THREADS`` and the one MetaSchedule's runner
measures candidates with. On x86 every core counts as "big".

TVM binds its threads to the first cores of the machine, whatever CPU set the
process was given: a library timed under ``taskset -c 1`` (or in a container
limited to some cores) would run on core 0, beside the work it was meant to
avoid. So when the process may not use every core, TVM's binding is turned off
(``TVM_BIND_THREADS=0``, unless the user set it) and the OS keeps its threads
inside the process's CPU set.
"""

from __future__ import annotations

import os

from deploy.errors import CompileError

__all__ = ["set_tvm_threads"]

_AFFINITY_BIG = 1  # TVM's ThreadGroup::kBig (kLittle is -1; 0 is no mode of TVM's)


def set_tvm_threads(num_threads: int) -> None:
    """Size TVM's CPU thread pool (the same as TVM_NUM_THREADS, but at any time)."""
    import tvm

    if num_threads < 1:
        raise CompileError(f"`num_threads >= 1` must hold, but got {num_threads=}")
    if _cpu_set_restricted():
        os.environ.setdefault("TVM_BIND_THREADS", "0")
    tvm.get_global_func("runtime.config_threadpool")(_AFFINITY_BIG, num_threads)


def _cpu_set_restricted() -> bool:
    """True when this process may run on fewer CPUs than the machine has (taskset, a cgroup cpuset)."""
    if not hasattr(os, "sched_getaffinity"):
        return False
    return len(os.sched_getaffinity(0)) < (os.cpu_count() or 1)
