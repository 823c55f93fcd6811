"""Run an artifact on this host: read inputs, preprocess as the manifest says, predict.

Inputs are an image file (PNG, JPEG, BMP: converted to the model's colour
mode, resized, scaled to [0, 1], normalised) or a ``.npy`` batch: uint8
pixels (scaled by the manifest's pixel scale) or floats already in [0, 1],
shaped N x C x H x W, N x H x W (grayscale) or a single H x W / C x H x W
image. With ``preprocessed=True`` a ``.npy`` batch is taken as the model's
normalised input as is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.artifact import Artifact, Preprocessing
from deploy.compile import load_compiled
from deploy.errors import ArtifactError, CompileError
from deploy.session import INPUT_NAME, ort_session
from deploy.targets import get_target
from deploy.threads import set_tvm_threads

__all__ = ["IMAGE_SUFFIXES", "ClassProbability", "Predictor", "load_input", "softmax"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
RUNTIMES = ("tvm", "ort")
FLOAT_SLACK = 1e-3  # float pixels a little outside [0, 1] (rounding) are accepted
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # an input image larger than this is refused before it is decoded


@dataclass(frozen=True)
class ClassProbability:
    """One of an image's top-k classes: its index, its name and the model's probability for it."""

    label: int
    class_name: str
    probability: float


def load_input(path: str | Path, preprocessing: Preprocessing, *, preprocessed: bool = False) -> np.ndarray:
    """An N x C x H x W float32 batch, normalised as the model expects."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such input file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        batch = _read_npy(path, preprocessing, preprocessed=preprocessed)
    elif suffix in IMAGE_SUFFIXES:
        batch = _read_image(path, preprocessing)
    else:
        raise ArtifactError(f"{path}: unsupported input; expected .npy or an image ({', '.join(IMAGE_SUFFIXES)})")
    expected = preprocessing.input_shape[1:]
    if batch.shape[1:] != expected:
        raise ArtifactError(f"{path}: input has shape {batch.shape[1:]} per image, the model expects {expected}")
    if not np.isfinite(batch).all():
        raise ArtifactError(f"{path}: the input holds NaN or infinite values")
    return batch


def _check_pixels(array: np.ndarray, path: Path) -> None:
    """A ``.npy`` of raw pixels: not empty, finite, and floats in [0, 1] (uint8 0..255 is scaled)."""
    if array.size == 0:
        raise ArtifactError(f"{path}: the array holds no values (shape {array.shape})")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ArtifactError(f"{path}: expected numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ArtifactError(f"{path}: expected real numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ArtifactError(f"{path}: the input holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < -FLOAT_SLACK or high > 1 + FLOAT_SLACK:
            hint = " (0..255 pixels: save them as uint8, or divide by 255)" if high <= 255 + FLOAT_SLACK else ""
            raise ArtifactError(
                f"{path}: float pixels must lie in [0, 1], got [{low:.4g}, {high:.4g}]{hint}; "
                "or pass --preprocessed for an already normalised batch"
            )
    elif array.min() < 0:
        raise ArtifactError(f"{path}: integer pixels must be >= 0, got {array.min()}")


def _read_image(path: Path, preprocessing: Preprocessing) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    mode = "L" if preprocessing.channels == 1 else "RGB"
    size = (preprocessing.resolution, preprocessing.resolution)
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ArtifactError(f"{path}: {image.width}x{image.height} pixels is too large an input image")
            pixels = np.asarray(image.convert(mode).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    # PIL raises SyntaxError for a broken PNG chunk
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ArtifactError(f"{path}: unreadable image ({exc})") from None
    chw = pixels[None] if pixels.ndim == 2 else np.transpose(pixels, (2, 0, 1))
    return _normalise(chw[None] / np.float32(preprocessing.pixel_scale), preprocessing)


def _read_npy(path: Path, preprocessing: Preprocessing, *, preprocessed: bool) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{path}: not a .npy array ({' '.join(str(exc).split())})") from None
    if not isinstance(array, np.ndarray):  # np.load reads an .npz archive too
        raise ArtifactError(f"{path}: an .npz archive, not a .npy array")
    if array.size == 0:
        raise ArtifactError(f"{path}: the array holds no values (shape {array.shape})")
    if preprocessed:
        if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
            raise ArtifactError(f"{path}: a preprocessed batch must be finite floats, got dtype {array.dtype}")
        return _as_nchw(array, preprocessing.channels, path).astype(np.float32)
    _check_pixels(array, path)
    batch = _as_nchw(array, preprocessing.channels, path)
    scale = preprocessing.pixel_scale if np.issubdtype(array.dtype, np.integer) else 1.0
    batch = batch.astype(np.float32) / np.float32(scale)
    if batch.shape[-1] != preprocessing.resolution or batch.shape[-2] != preprocessing.resolution:
        import torch
        import torch.nn.functional as F

        size = (preprocessing.resolution, preprocessing.resolution)
        tensor = torch.from_numpy(batch)
        batch = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True).numpy()
    return _normalise(batch, preprocessing)


def _as_nchw(array: np.ndarray, channels: int, path: Path) -> np.ndarray:
    if array.ndim == 2:  # one grayscale image
        array = array[None, None]
    elif array.ndim == 3:  # N x H x W grayscale images, or one C x H x W image
        array = array[:, None] if channels == 1 and array.shape[0] != 1 else array[None]
    if array.ndim != 4:
        raise ArtifactError(f"{path}: expected N x C x H x W (or H x W, N x H x W), got shape {array.shape}")
    return array


def _normalise(batch: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    mean = np.asarray(preprocessing.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(preprocessing.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((batch - mean) / std, dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class Predictor:
    """Logits and top-k predictions of an artifact with TVM (the compiled library) or ONNX Runtime."""

    def __init__(self, artifact: Artifact, *, runtime: str = "tvm", num_threads: int = 1) -> None:
        if runtime not in RUNTIMES:
            raise ArtifactError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
        self.artifact, self.runtime = artifact, runtime
        if runtime == "ort":
            self._session = ort_session(artifact.onnx_path, num_threads=num_threads)
        else:
            self._compiled = _load_library(artifact)
            set_tvm_threads(num_threads)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.outputs(batch)[0]

    def outputs(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every raw output, in the manifest's ``output_names`` order (a detector: heatmap, box)."""
        if self.runtime == "ort":
            return tuple(self._session.run(None, {INPUT_NAME: batch}))
        return self._compiled.run_outputs(batch)

    def predict(self, batch: np.ndarray, *, top_k: int = 1) -> list[list[ClassProbability]]:
        names = self.artifact.manifest.class_names
        probabilities = softmax(self.logits(batch))
        ranked = np.argsort(-probabilities, axis=1)[:, :top_k]
        return [
            [ClassProbability(int(label), names[label], float(row[label])) for label in labels]
            for row, labels in zip(probabilities, ranked)
        ]


def _load_library(artifact: Artifact):
    manifest = artifact.manifest
    runnable, reason = get_target(manifest.target).runs_on_host()
    if not runnable:
        raise ArtifactError(
            f"{artifact.library_path}: compiled for {manifest.target} ({reason}); "
            "run it on such a machine (or through --rpc-tracker), or use --runtime ort here"
        )
    try:
        return load_compiled(
            artifact.library_path,
            target=manifest.target,
            tvm_target=manifest.tvm_target,
            input_shape=manifest.preprocessing.input_shape,
        )
    except CompileError as exc:
        raise ArtifactError(str(exc)) from None
