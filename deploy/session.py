"""The ONNX model's input and output names, and the ONNX Runtime session every deploy step uses."""

from __future__ import annotations

from pathlib import Path

from deploy.errors import ExportError

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "TASK_OUTPUTS", "ort_session", "output_names"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# The ONNX outputs of each task, in the order the network returns them (search_spaces.builder).
TASK_OUTPUTS = {
    "classification": (OUTPUT_NAME,),
    "detection": ("heatmap", "box"),  # N x K x h x w logits, N x 4 x h x w box code (search_spaces.box_coding)
    "segmentation": (OUTPUT_NAME,),  # N x K x H x W class logits at the input size
}


def output_names(task: str) -> tuple[str, ...]:
    """The ONNX output names of a network for ``task``."""
    if task not in TASK_OUTPUTS:
        raise ExportError(f"`task` must be one of {tuple(TASK_OUTPUTS)}, but got {task=}")
    return TASK_OUTPUTS[task]


def ort_session(onnx_path: str | Path, *, num_threads: int = 1):
    """An ONNX Runtime CPU session with a fixed number of intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
