"""Reading an ONNX file a user names: size-checked, decoded and checked, or one error naming the file.

A text file renamed ``.onnx`` makes protobuf raise ``DecodeError``; random
bytes sometimes decode to an empty model that fails later, deep inside
shape inference or TVM. Both are refused here, before any other work.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from search_spaces.errors import EdgeNasError, one_line

__all__ = ["MAX_ONNX_BYTES", "read_onnx"]

MAX_ONNX_BYTES = 2**31 - 1  # protobuf's own limit; larger models keep their weights in external data files


def read_onnx(path: str | Path, *, error: type[EdgeNasError]) -> onnx.ModelProto:
    """The checked model in ``path``; anything else is ``error`` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such ONNX file")
    size = path.stat().st_size
    if size == 0 or size > MAX_ONNX_BYTES:
        raise error(f"{path}: {size:,} bytes is not an ONNX model (expected 1 B to {MAX_ONNX_BYTES:,} B)")
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not an ONNX model ({one_line(exc) or 'cannot decode it'})") from None
    # No onnx.checker here: its callers say more precisely what is wrong with a real model (a dynamic input size).
    if not model.graph.node or not model.graph.input or not model.graph.output:
        raise error(f"{path}: the ONNX model has an empty graph (no nodes, inputs or outputs)")
    return model
