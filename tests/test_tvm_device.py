"""cpu-tvm times what deploy ships: it builds with deploy's compiler, for deploy's target of this host."""

from __future__ import annotations

import pytest

pytest.importorskip("tvm")

from deploy import compile_onnx, host_target, lower_onnx  # noqa: E402
from latency_estimator import get_device  # noqa: E402
from latency_estimator.onnx_graph import arch_model  # noqa: E402
from search_spaces import ArchConfig  # noqa: E402
from tests.tiny_arch import TINY  # noqa: E402


def test_cpu_tvm_builds_the_module_deploy_ships():
    model = arch_model(ArchConfig.from_dict(TINY), seed=0)
    measured = get_device("cpu-tvm").compile(model)
    shipped = compile_onnx(model, target=host_target().name, num_threads=1)
    assert measured.tvm_target == shipped.tvm_target
    layout = host_target().conv_layout  # what compile_onnx lowers to for this target (NHWC on x86_64)
    assert get_device("cpu-tvm").metadata()["conv_layout"] == layout
    lowered = lower_onnx(model, measured.input_shape, measured.tvm_target, layout=layout)
    assert lowered.script() == lower_onnx(model, shipped.input_shape, shipped.tvm_target, layout=layout).script()
    # The built programs: the same fused functions called in the same order (main compiled the same way).
    assert measured.program_text() == shipped.program_text()
    fused = [str(gv.name_hint) for gv in lowered.get_global_vars() if str(gv.name_hint).startswith("fused_")]
    assert fused, "conv + bias + activation should be fused into one TIR function"
