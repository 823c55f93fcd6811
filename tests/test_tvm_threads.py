"""TVM's thread pool stays inside the CPU set the process was given (taskset, a container's cpuset)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2, reason="needs Linux and 2+ CPUs"
)

CHILD = textwrap.dedent(
    """
    import os, sys
    last = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {last})
    from deploy.threads import set_tvm_threads
    set_tvm_threads(int(sys.argv[1]))
    print(sorted(os.sched_getaffinity(0)) == [last], os.environ.get("TVM_BIND_THREADS"))
    """
)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_restricted_process_keeps_its_cpu_set(threads: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TVM_BIND_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads)], capture_output=True, text=True, env=env, check=True, timeout=120
    )
    assert done.stdout.split() == ["True", "0"]


def test_a_users_own_binding_setting_is_kept() -> None:
    env = {**os.environ, "TVM_BIND_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "1"], capture_output=True, text=True, env=env, check=True, timeout=120
    )
    assert done.stdout.split()[1] == "1"
