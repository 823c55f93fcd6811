"""PyTorch -> ONNX: weights loading, BatchNorm folding, export and parity checks.

Export uses the TorchScript exporter (``dynamo=False``): with torch 2.13 it
writes opset 17 in ~0.2 s, while the dynamo exporter takes ~4 s, forces
opset 18 (its down-conversion to 17 fails on ReduceMean) and prints a page of
progress. BatchNorm is folded into the preceding conv in a copy of the model
before export, and the graph is checked to hold no BatchNormalization node.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from deploy.errors import ExportError
from deploy.session import INPUT_NAME, OUTPUT_NAME, ort_session
from search_spaces.arch import ArchConfig
from search_spaces.builder import build_model
from search_spaces.errors import one_line

__all__ = [
    "OPSET",
    "PARITY_TOLERANCE",
    "ParityReport",
    "as_outputs",
    "check_onnx_parity",
    "export_onnx",
    "fold_batchnorm",
    "load_weights",
    "output_diffs",
    "random_inputs",
]

logger = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4  # max abs logit difference allowed between two runtimes


@dataclass(frozen=True)
class ParityReport:
    """Max abs difference of outputs between two runtimes, per kind of input."""

    reference: str  # e.g. "torch"
    candidate: str  # e.g. "onnxruntime"
    # input kind ("random", "real") -> max |a - b|; "kind/output" for each output of a multi-output model
    max_abs_diff: dict[str, float]

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values(), default=0.0)

    def summary(self) -> str:
        parts = ", ".join(f"{kind} {diff:.2e}" for kind, diff in self.max_abs_diff.items())
        return f"{self.candidate} vs {self.reference}: max abs diff {parts}"


def load_weights(arch: ArchConfig, weights: str | Path) -> nn.Module:
    """Build ``arch`` and load a state_dict into it; a mismatch names the first differing layer."""
    path = Path(weights)
    if not path.is_file():
        raise ExportError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (torch.load on arbitrary bytes: KeyError, IndexError, zip errors, ...)
        raise ExportError(f"{path}: not a PyTorch state_dict ({one_line(exc)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ExportError(f"{path}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    model = build_model(arch)
    _check_state_matches(model.state_dict(), state, what=f"{path} vs architecture {arch.arch_id}")
    model.load_state_dict(state)
    return model.eval()


def _check_state_matches(expected: dict[str, torch.Tensor], got: dict[str, object], *, what: str) -> None:
    for name, tensor in expected.items():
        if name not in got:
            raise ExportError(f"{what}: layer {name} (shape {_shape(tensor)}) is missing from the weights")
        other = got[name]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            raise ExportError(
                f"{what}: layer {name} has shape {_shape(other)} in the weights "
                f"but {_shape(tensor)} in the architecture"
            )
    extra = [name for name in got if name not in expected]
    if extra:
        name = extra[0]
        raise ExportError(f"{what}: the weights have layer {name} (shape {_shape(got[name])}) not in the architecture")


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every Conv2d -> BatchNorm2d pair folded into the conv."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[first] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                module._modules[second] = nn.Identity()
    return folded


def export_onnx(
    model: nn.Module,
    *,
    input_shape: tuple[int, ...],
    path: str | Path,
    opset: int = OPSET,
    dynamic_batch: bool = True,
    output_names: tuple[str, ...] = (OUTPUT_NAME,),
) -> Path:
    """Fold BatchNorm, export to ONNX (input ``input``, outputs ``output_names``) and run ``onnx.checker``.

    ``input_shape`` is N x C x H x W; with ``dynamic_batch`` the batch axis is symbolic (``batch``).
    ``output_names`` name the model's outputs in the order it returns them (``deploy.session.TASK_OUTPUTS``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folded = fold_batchnorm(model)
    example = torch.zeros(input_shape, dtype=torch.float32)
    names = [INPUT_NAME, *output_names]
    dynamic_axes = {name: {0: "batch"} for name in names} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        try:
            torch.onnx.export(
                folded,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ExportError(f"ONNX export failed ({one_line(exc)})") from None
    _check_onnx(path, output_names)
    logger.info("exported %s (opset %d, outputs %s)", path, opset, ", ".join(output_names))
    return path


def _check_onnx(path: Path, output_names: tuple[str, ...]) -> None:
    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: onnx.checker rejects the exported model ({one_line(exc)})") from None
    got = tuple(value.name for value in proto.graph.output)
    if got != tuple(output_names):
        raise ExportError(f"{path}: the model has outputs {got}, expected {tuple(output_names)}")
    left = [node.name or node.op_type for node in proto.graph.node if node.op_type == "BatchNormalization"]
    if left:
        raise ExportError(f"{path}: BatchNormalization node {left[0]} was not folded into a conv")


def check_onnx_parity(
    model: nn.Module,
    onnx_path: str | Path,
    *,
    inputs: dict[str, np.ndarray],
    tolerance: float = PARITY_TOLERANCE,
) -> ParityReport:
    """Compare PyTorch and ONNX Runtime on every output, for each named batch of inputs (N x C x H x W float32)."""
    session = ort_session(onnx_path)
    names = [value.name for value in session.get_outputs()]
    diffs: dict[str, float] = {}
    for kind, batch in inputs.items():
        with torch.no_grad():
            expected = as_outputs(model.eval()(torch.from_numpy(batch)))
        got = session.run(None, {INPUT_NAME: batch})
        if len(expected) != len(got):
            raise ExportError(f"{onnx_path}: PyTorch returns {len(expected)} outputs, ONNX Runtime {len(got)}")
        diffs.update(output_diffs(kind, names, [e.numpy() for e in expected], got))
    report = ParityReport(reference="torch", candidate="onnxruntime", max_abs_diff=diffs)
    logger.info("parity %s", report.summary())
    if report.worst > tolerance:
        raise ExportError(f"{onnx_path}: ONNX Runtime differs from PyTorch beyond {tolerance:g} ({report.summary()})")
    return report


def as_outputs(result: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """A model's result as a tuple of outputs (a classifier or segmenter returns one tensor)."""
    return result if isinstance(result, tuple) else (result,)


def output_diffs(
    kind: str, names: list[str], expected: list[np.ndarray], got: list[np.ndarray] | tuple[np.ndarray, ...]
) -> dict[str, float]:
    """Max abs difference per output: keyed ``kind`` for one output, ``kind/name`` for each of several."""
    diffs = {}
    for name, a, b in zip(names, expected, got, strict=True):
        if a.shape != b.shape:
            raise ExportError(f"output {name} ({kind} inputs): shape {b.shape}, expected {a.shape}")
        diffs[kind if len(names) == 1 else f"{kind}/{name}"] = float(np.max(np.abs(a - b)))
    return diffs


def random_inputs(input_shape: tuple[int, ...], *, batch: int = 4, seed: int = 0) -> np.ndarray:
    """Standard-normal inputs: normalised images have roughly this distribution."""
    shape = (batch, *input_shape[1:])
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
