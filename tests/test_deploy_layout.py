"""The lowering's data layout: NHWC modules compute what NCHW ones and ONNX Runtime do, with no transposes inside."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

from deploy import CompileError, compile_onnx, export_onnx, get_target, lower_onnx, random_inputs  # noqa: E402
from deploy.layout import clip_bounds_as_ops  # noqa: E402
from deploy.lowering import load_onnx  # noqa: E402
from deploy.session import ort_session  # noqa: E402
from search_spaces import ArchConfig, build_model  # noqa: E402
from tests.tiny_arch import TINY, dense_arch  # noqa: E402

SHAPE = (1, 1, 16, 16)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ArchConfig.from_dict(TINY)).eval()
    return export_onnx(model, input_shape=SHAPE, path=tmp_path_factory.mktemp("layout") / "tiny.onnx")


def called_kernels(mod) -> list[str]:
    """The names of the TIR functions ``main`` calls, in order."""
    import tvm

    call_tir = tvm.ir.Op.get("relax.call_tir")
    names: list[str] = []

    def visit(expr) -> None:
        if isinstance(expr, tvm.relax.Call) and expr.op.same_as(call_tir):
            names.append(expr.args[0].name_hint)

    tvm.relax.analysis.post_order_visit(mod["main"], visit)
    return names


def host_target():
    import tvm

    return tvm.target.Target(get_target("x86_64").resolve())


def test_nhwc_lowering_fuses_relu6_into_each_conv_and_transposes_only_at_the_edges(tiny_onnx):
    kernels = called_kernels(lower_onnx(load_onnx(tiny_onnx), SHAPE, host_target(), layout="NHWC"))
    transposes = [name for name in kernels if "transpose" in name]
    # The image in (NCHW -> NHWC) and the pooled features out; every ReLU6 stays fused with its conv.
    assert len(transposes) <= 2 and not any("conv2d" in name for name in transposes)
    assert not any(name.startswith(("maximum", "minimum")) for name in kernels)
    assert sum("conv2d" in name and "maximum" in name for name in kernels) >= 5


def test_clip_bounds_become_relax_ops_that_compute_the_same(tiny_onnx):
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    imported = from_onnx(load_onnx(tiny_onnx), shape_dict={"input": list(SHAPE)})
    rewritten = clip_bounds_as_ops()(relax.transform.FoldConstant()(imported))
    assert any(name.startswith("maximum") for name in called_kernels(imported))
    assert not any(name.startswith(("maximum", "minimum")) for name in called_kernels(rewritten))
    assert "R.maximum(" in rewritten["main"].script() and "R.minimum(" in rewritten["main"].script()
    batch = random_inputs(SHAPE, batch=1, seed=3)
    outputs = []
    for mod in (imported, rewritten):
        vm = relax.VirtualMachine(relax.build(mod, target=host_target()), tvm.cpu())
        outputs.append(vm["main"](tvm.runtime.tensor(batch)).numpy())
    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.slow
def test_nhwc_build_gives_the_outputs_of_nchw_and_onnxruntime(tiny_onnx):
    batch = random_inputs(SHAPE, batch=3, seed=1)
    nhwc = compile_onnx(tiny_onnx, target="x86_64", layout="NHWC")
    nchw = compile_onnx(tiny_onnx, target="x86_64", layout="NCHW")
    np.testing.assert_allclose(nhwc.run(batch), nchw.run(batch), atol=1e-5)
    np.testing.assert_allclose(nhwc.run(batch), ort_session(tiny_onnx).run(None, {"input": batch})[0], atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(("task", "names"), [("detection", ("heatmap", "box")), ("segmentation", ("logits",))])
def test_nhwc_build_of_a_dense_network_matches_onnxruntime_on_every_output(task, names, tmp_path):
    arch = dense_arch(task)
    shape = (1, arch.input_channels, arch.resolution, arch.resolution)
    torch.manual_seed(0)
    model = build_model(arch).eval()
    path = export_onnx(model, input_shape=shape, path=tmp_path / "dense.onnx", output_names=names)
    batch = random_inputs(shape, batch=1, seed=2)
    expected = ort_session(path).run(None, {"input": batch})
    outputs = compile_onnx(path, target="x86_64", layout="NHWC").run_outputs(batch)
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_unknown_layout_is_refused_with_the_known_ones(tiny_onnx):
    with pytest.raises(CompileError, match=r"`layout` must be one of \['NCHW', 'NHWC'\], but got layout='NCHW16c'"):
        compile_onnx(tiny_onnx, target="x86_64", layout="NCHW16c")
