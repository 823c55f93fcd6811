"""Compile targets: a registry of name -> TVM target dict plus cross-compiler info.

A new board is one :func:`register_target` call. TVM 0.27 wants dict targets
(``{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}``). ``x86_64`` is the host
CPU: its ``mcpu`` is detected when the target is resolved (not at import), so
its code uses this machine's vector units and may not run on an older x86.
Its convolutions are lowered in NHWC (``conv_layout``, :mod:`deploy.layout`):
on the tuned baseline that closed the depthwise gap to ONNX Runtime (see
``results/deploy-x86_64-breakdown.md``); the other targets keep NCHW until
measured.
"""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from typing import Any

from deploy.errors import CompileError

__all__ = ["DeployTarget", "cuda_available", "get_target", "host_target", "known_targets", "register_target"]


@dataclass(frozen=True)
class DeployTarget:
    name: str
    description: str
    tvm_target: dict[str, Any]  # without "num-cores"; that is added per compile (threads)
    arch: str  # platform.machine() of a host that can load the library: x86_64, aarch64
    device: str = "cpu"  # cpu or cuda: the TVM device the model runs on
    cross_compiler: str | None = None  # C compiler that links the library when arch != host arch
    cross_package: str | None = None  # Debian package that provides cross_compiler
    detect_host_cpu: bool = False  # fill "mcpu" with this machine's CPU when the host has `arch`
    conv_layout: str = "NCHW"  # the lowering's default data layout for convolutions (deploy.layout.LAYOUTS)

    def resolve(self, *, num_threads: int = 1) -> dict[str, Any]:
        """The TVM target dict for this machine, with ``num-cores`` (MetaSchedule needs it on CPUs)."""
        target = dict(self.tvm_target)
        if self.detect_host_cpu and self.is_host_arch():
            from tvm.target import codegen

            target["mcpu"] = codegen.llvm_get_system_cpu()
        if self.device == "cuda":
            target.setdefault("arch", _cuda_arch())
        elif target.get("kind") == "llvm":
            target["num-cores"] = num_threads
        return target

    def is_host_arch(self) -> bool:
        return platform.machine() == self.arch

    def runs_on_host(self) -> tuple[bool, str]:
        """Whether a library for this target can be loaded and run here, and why not."""
        if self.device == "cuda":
            return cuda_available()
        if not self.is_host_arch():
            return False, f"compiled for {self.arch}, this host is {platform.machine()}"
        return True, ""

    def linker(self) -> str | None:
        """The cross compiler to link with, or None to use the host's C compiler."""
        if self.is_host_arch() or self.cross_compiler is None:
            return None
        if shutil.which(self.cross_compiler) is None:
            raise CompileError(
                f"target {self.name} needs the cross compiler {self.cross_compiler}, which is not installed; "
                f"install the Debian package {self.cross_package} (apt-get install {self.cross_package})"
            )
        return self.cross_compiler


_TARGETS: dict[str, DeployTarget] = {}


def register_target(target: DeployTarget) -> DeployTarget:
    if target.name in _TARGETS:
        raise ValueError(f"target {target.name!r} is already registered")
    _TARGETS[target.name] = target
    return target


def known_targets() -> list[str]:
    return sorted(_TARGETS)


def get_target(name: str) -> DeployTarget:
    if name not in _TARGETS:
        raise CompileError(f"unknown target {name!r}; known targets: {', '.join(known_targets())}")
    return _TARGETS[name]


def host_target() -> DeployTarget:
    """The registered CPU target of this machine's architecture: what the cpu-tvm device builds for."""
    for target in _TARGETS.values():
        if target.device == "cpu" and target.is_host_arch():
            return target
    raise CompileError(
        f"no registered CPU target for this host ({platform.machine()}); known targets: {', '.join(known_targets())}"
    )


def cuda_available() -> tuple[bool, str]:
    """Whether this TVM build and this machine can run CUDA code, and why not."""
    import tvm

    if not tvm.runtime.enabled("cuda"):
        return False, "this TVM build has no CUDA support"
    if not tvm.cuda(0).exist:
        return False, "no CUDA GPU is present"
    return True, ""


def _cuda_arch() -> str:
    """``sm_XY`` of GPU 0; refused with the reason when there is no usable GPU."""
    import tvm

    available, reason = cuda_available()
    if not available:
        raise CompileError(f"target cuda: {reason}")
    major, minor = tvm.cuda(0).compute_version.split(".")
    return f"sm_{major}{minor}"


register_target(
    DeployTarget(
        name="x86_64",
        description="64-bit x86 Linux, this machine's CPU features (LLVM)",
        tvm_target={"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v3"},
        arch="x86_64",
        cross_compiler="x86_64-linux-gnu-gcc",
        cross_package="gcc-x86-64-linux-gnu",
        detect_host_cpu=True,
        conv_layout="NHWC",
    )
)
register_target(
    DeployTarget(
        name="aarch64",
        description="64-bit Arm Linux boards (Raspberry Pi 4/5, Jetson CPU, ...), NEON (LLVM)",
        tvm_target={"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
        arch="aarch64",
        cross_compiler="aarch64-linux-gnu-gcc",
        cross_package="gcc-aarch64-linux-gnu",
    )
)
register_target(
    DeployTarget(
        name="cuda",
        description="NVIDIA GPU of this machine (CUDA), host code for this CPU",
        tvm_target={"kind": "cuda", "host": {"kind": "llvm"}},
        arch=platform.machine(),
        device="cuda",
    )
)
