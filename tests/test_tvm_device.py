"""cpu-tvm compiles what it times the way the deploy step compiles what it ships."""

from __future__ import annotations

import pytest

pytest.importorskip("tvm")

import tvm  # noqa: E402

from deploy.compile import lower_onnx as deploy_lower_onnx  # noqa: E402
from latency_estimator import get_device  # noqa: E402
from latency_estimator.devices.tvm_device import lower_onnx as device_lower_onnx  # noqa: E402
from latency_estimator.onnx_graph import arch_model  # noqa: E402
from search_spaces import ArchConfig  # noqa: E402
from tests.tiny_arch import TINY  # noqa: E402


def test_cpu_tvm_lowers_like_deploy():
    arch = ArchConfig.from_dict(TINY)
    model = arch_model(arch, seed=0)
    target = get_device("cpu-tvm").target()
    shape = (1, arch.input_channels, arch.resolution, arch.resolution)
    device_mod = device_lower_onnx(model, target)
    tvm.ir.assert_structural_equal(device_mod, deploy_lower_onnx(model, shape, target))
    fused = [str(gv.name_hint) for gv in device_mod.get_global_vars() if str(gv.name_hint).startswith("fused_")]
    assert fused, "conv + bias + activation should be fused into one TIR function"


def test_cpu_tvm_target_is_the_deploy_host_target_for_one_thread():
    from deploy import get_target

    device_target = get_device("cpu-tvm").target()
    deploy_target = get_target("x86_64").resolve(num_threads=1)
    assert device_target["mcpu"] == deploy_target["mcpu"]
    assert device_target["num-cores"] == deploy_target["num-cores"] == 1
