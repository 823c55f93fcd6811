"""The data layout the lowering converts a Relax module to before it is legalised: NCHW (as imported) or NHWC.

ONNX models are NCHW. In NHWC the channels are innermost, so a depthwise
convolution (one 3x3 filter per channel) vectorises over channels instead of
over a row of pixels: at the small feature maps of edge networks (2x2 to 8x8
with 144-960 channels) a row is shorter than one vector, while the channels
fill many. 1x1 convolutions become plain matrix products (pixels x channels).

Relax's ``ConvertLayout`` moves every ``nn.conv2d`` to NHWC (kernels OHWI) and
carries the layout through the element-wise ops that follow, but not through
opaque ``call_tir`` calls, and the ONNX frontend emits ``Clip`` (ReLU6) as
``call_tir`` of TE ``maximum`` / ``minimum`` kernels: left so, each ReLU6
would be wrapped in two transposes. :func:`clip_bounds_as_ops` first turns
those calls into ``R.maximum`` / ``R.minimum`` with the same scalar bound,
which legalise to the same TE kernels and so compute the same values.
"""

from __future__ import annotations

from typing import Any

from deploy.errors import CompileError

__all__ = ["DEFAULT_LAYOUT", "LAYOUTS", "clip_bounds_as_ops", "layout_passes"]

LAYOUTS = ("NCHW", "NHWC")
DEFAULT_LAYOUT = "NCHW"  # as imported from ONNX; compile_onnx picks the target's (DeployTarget.conv_layout)
_KERNEL_LAYOUT = {"NHWC": "OHWI"}  # output channels outermost: each filter's weights stay together
_CLIP_BOUND_KERNELS = {"maximum", "minimum"}  # the frontend's Clip: TE kernels named after the topi op


def layout_passes(layout: str) -> list[Any]:
    """The Relax passes that convert an imported (NCHW) module to ``layout`` (none for NCHW)."""
    from tvm import relax

    if layout not in LAYOUTS:
        raise CompileError(f"`layout` must be one of {list(LAYOUTS)}, but got {layout=}")
    if layout == "NCHW":
        return []
    return [
        relax.transform.FoldConstant(),  # the Clip bounds' NaN guards (where(isnan(c), inf, c)) -> constants
        clip_bounds_as_ops(),
        relax.transform.ConvertLayout({"relax.nn.conv2d": [layout, _KERNEL_LAYOUT[layout]]}),
    ]


def clip_bounds_as_ops() -> Any:
    """A module pass: ``call_tir(maximum|minimum, (x, bound))`` with a scalar ``bound`` -> ``R.maximum`` /
    ``R.minimum(x, bound)``, in every Relax function (see the module docstring)."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    call_tir = tvm.ir.Op.get("relax.call_tir")
    ops = {"maximum": relax.op.maximum, "minimum": relax.op.minimum}

    @mutator
    class _ClipBounds(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = super().visit_call_(call)
            if not call.op.same_as(call_tir):
                return call
            kernel = call.args[0].name_hint.rstrip("0123456789")  # the module's names: maximum, maximum1, ...
            args = list(call.args[1].fields) if isinstance(call.args[1], relax.Tuple) else []
            if kernel in _CLIP_BOUND_KERNELS and len(args) == 2 and _is_scalar(args[1]):
                return ops[kernel](args[0], args[1])
            return call

    @tvm.transform.module_pass(opt_level=0, name="ClipBoundsAsOps")
    def _pass(mod: Any, _context: Any) -> Any:
        mutator_ = _ClipBounds(mod)
        for gvar, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                mod[gvar] = mutator_.visit_expr(func)
        return relax.transform.DeadCodeElimination()(mod)  # the TE kernels no call uses any more

    return _pass


def _is_scalar(expr: Any) -> bool:
    shape = getattr(expr.ty, "shape", None)
    return shape is not None and len(shape) == 0
