"""The ONNX model's input and output names, and the ONNX Runtime session every deploy step uses."""

from __future__ import annotations

from pathlib import Path

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ort_session"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def ort_session(onnx_path: str | Path, *, num_threads: int = 1):
    """An ONNX Runtime CPU session with a fixed number of intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
