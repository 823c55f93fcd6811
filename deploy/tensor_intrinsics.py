"""MetaSchedule's tensor intrinsics, loaded for the one target being tuned.

Every ``TuneContext`` imports ``tvm.s_tir.tensor_intrin``, whose ``__init__``
imports the intrinsics of every target TVM knows (CUDA's MMA/WMMA families,
Arm, x86, ROCm, Hexagon, RISC-V), each parsed from TVMScript: ~60 s once per
process on this machine, minutes on a loaded core, while the x86 ones alone
take ~0.5 s. :func:`load_tensor_intrinsics` registers the package without
running its ``__init__`` and imports the target's own module, so a CPU
deploy starts tuning in a second; any other target gets TVM's whole set.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

__all__ = ["load_tensor_intrinsics"]

PACKAGE = "tvm.s_tir.tensor_intrin"
# LLVM target triple prefix -> the module of intrinsics its schedule rules may tensorize with (x86 otherwise).
LLVM_MODULES = (("aarch64", "arm_cpu"), ("arm", "arm_cpu"), ("riscv", "riscv_cpu"))
# What the package's own __init__ imports (TVM 0.27): every target's intrinsics.
ALL_MODULES = ("cuda", "arm_cpu", "x86", "rocm", "hexagon", "riscv_cpu")


def load_tensor_intrinsics(target: Any) -> tuple[str, ...]:
    """Register the tensor intrinsics MetaSchedule needs for ``target`` (a ``tvm.target.Target``); returns the
    modules imported. Idempotent: Python imports each module once."""
    if target.kind.name == "llvm":
        triple = str(target.attrs.get("mtriple", ""))
        modules = (next((module for prefix, module in LLVM_MODULES if triple.startswith(prefix)), "x86"),)
    else:
        modules = ALL_MODULES
    if PACKAGE not in sys.modules:
        # The package object without its __init__: TuneContext's own `import` of it is then a no-op.
        spec = importlib.util.find_spec(PACKAGE)
        sys.modules[PACKAGE] = importlib.util.module_from_spec(spec)
    for module in modules:
        importlib.import_module(f"{PACKAGE}.{module}")
    return modules
