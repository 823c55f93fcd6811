"""MetaSchedule's tensor intrinsics are loaded for the tuned target alone (deploy.tensor_intrinsics)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from tvm.target import Target
from tvm.s_tir import TensorIntrin
from deploy.tensor_intrinsics import load_tensor_intrinsics

print(load_tensor_intrinsics(Target({"kind": "llvm", "mtriple": "%s"})))
TensorIntrin.get("%s")  # registered: raises when it is not
import tvm.s_tir.tensor_intrin  # what every TuneContext does: a no-op now
print(sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("tvm.s_tir.tensor_intrin.")))
"""


def _run(triple: str, intrinsic: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT % (triple, intrinsic)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_an_x86_target_loads_the_x86_intrinsics_and_not_cuda_ones():
    loaded, modules = _run("x86_64-linux-gnu", "dot_16x4_avx512")
    assert loaded == "('x86',)"
    assert "cuda" not in modules and "x86" in modules


def test_an_arm_target_loads_the_arm_intrinsics():
    loaded, modules = _run("aarch64-linux-gnu", "dot_4x4_i8i8s32_neon")
    assert loaded == "('arm_cpu',)"
    assert "cuda" not in modules and "arm_cpu" in modules
