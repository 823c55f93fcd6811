"""ONNX -> the Relax module that tuning and building start from: the one lowering of edgenas.

The model is imported with Relax's ONNX frontend at batch 1, optionally
converted to another data layout (``layout``, :mod:`deploy.layout`: NHWC lets
depthwise convolutions vectorise over channels), decomposed for inference,
legalised and fused (conv + bias + ReLU6 + residual add become one
TIR function). Deploy's compiler and the latency estimator's TVM devices both
lower here, so the devices time what deploy ships.

Weight prepacking (``prepack=True``, the default on CPUs): every fused function
is told which of its buffers are weights (``AttachAttrLayoutFreeBuffers``), so
that MetaSchedule's ``RewriteLayout`` postprocessor may store them in the
layout its schedule reads best (for example blocked by the vector width).
After tuning, :func:`finish_prepack` splits each such rewrite out of its
kernel (``SplitLayoutRewritePreproc``) and folds it into the weight constants
(``FoldConstant``): the packed weights are computed once, when the library is
built, and the kernels read them directly. This is what TVM's
``static_shape_tuning`` pipeline does with ``cpu_weight_prepack=True``.
Folding leaves every packed kernel a dead binding behind, the tuple of its
packed constants and its two items, which the VM would build and drop at each
call (4 bytecode instructions per kernel, 164 of the baseline's 306, ~4 % of a
0.6 ms call): ``DeadCodeElimination`` removes them, and the layout-rewrite
functions that folding has run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from deploy.errors import CompileError
from deploy.layout import DEFAULT_LAYOUT, layout_passes
from deploy.onnx_file import read_onnx
from deploy.session import INPUT_NAME

__all__ = ["batch1_shape", "finish_prepack", "load_onnx", "lower_onnx"]


def lower_onnx(
    proto: onnx.ModelProto,
    input_shape: tuple[int, ...],
    target: Any,
    *,
    prepack: bool = True,
    layout: str = DEFAULT_LAYOUT,
) -> Any:
    """The legalised, fused Relax module of ``proto`` (input ``input`` of ``input_shape``) for ``target``.

    ``prepack`` marks the weights of each fused function as layout-free (see the module docstring).
    ``layout`` is the data layout of the convolutions (:data:`deploy.layout.LAYOUTS`); the module's input
    and outputs keep the model's shapes.
    """
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(proto, shape_dict={INPUT_NAME: list(input_shape)}, keep_params_in_input=False)
    with tvm.target.Target(target):
        # batch_norm -> arithmetic, then legalise every op to TIR and fuse conv+bias+act(+add).
        return tvm.transform.Sequential(
            [
                *layout_passes(layout),
                relax.transform.DecomposeOpsForInference(),
                relax.transform.CanonicalizeBindings(),
                relax.get_pipeline("zero"),
                *([relax.transform.AttachAttrLayoutFreeBuffers()] if prepack else []),
            ]
        )(mod)


def finish_prepack(mod: Any, target: Any) -> Any:
    """Split the weight layout rewrites of tuned kernels out of them, fold them into the constants, and drop
    the dead bindings that folding leaves (see the module docstring)."""
    import tvm
    from tvm import relax

    with tvm.target.Target(target):
        return tvm.transform.Sequential(
            [
                relax.transform.SplitLayoutRewritePreproc(),
                relax.transform.FoldConstant(),
                relax.transform.CanonicalizeBindings(),
                relax.transform.DeadCodeElimination(),
            ]
        )(mod)


def load_onnx(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    return read_onnx(model, error=CompileError)


def batch1_shape(proto: onnx.ModelProto) -> tuple[int, ...]:
    """The shape of the input ``input`` at batch 1 (N x C x H x W)."""
    inputs = [value for value in proto.graph.input if value.name == INPUT_NAME]
    if not inputs:
        names = [value.name for value in proto.graph.input]
        raise CompileError(f"the ONNX model has no input named {INPUT_NAME!r} (inputs: {names})")
    dims = inputs[0].type.tensor_type.shape.dim
    # The batch axis may be symbolic ("batch"); the library is built for one image at a time.
    return (1, *(int(d.dim_value) for d in dims[1:]))
