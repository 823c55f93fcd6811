"""Artifact folders: model.onnx, model-<target>.so, arch.yaml and manifest.json.

The manifest records what a user of the folder needs (input shape and
preprocessing, the task, its output names, class names, how raw outputs are
decoded into boxes or a mask, the target) and what produced it (versions,
test accuracy, latencies, tuning), plus the sha256 of every file. Loading
verifies every hash, so a folder whose files changed after deploy is refused
with the name of the first file that does not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from deploy.errors import ArtifactError
from search_spaces.box_coding import DecodeSettings

__all__ = [
    "MANIFEST",
    "Artifact",
    "Manifest",
    "Preprocessing",
    "decode_settings",
    "load_artifact",
    "library_name",
    "sha256_file",
    "write_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "edgenas-artifact"
FORMAT_VERSION = 1
ONNX_FILE = "model.onnx"
ARCH_FILE = "arch.yaml"


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: resize, colour, scale to [0, 1], then (x - mean) / std."""

    channels: int  # 1: grayscale, 3: RGB
    resolution: int  # images are resized to resolution x resolution
    mean: tuple[float, ...]  # per channel, in the [0, 1] pixel scale
    std: tuple[float, ...]
    pixel_scale: float = 255.0  # 8-bit pixels / pixel_scale lie in [0, 1]

    @property
    def color(self) -> str:
        return "grayscale" if self.channels == 1 else "rgb"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.channels, self.resolution, self.resolution)


@dataclass(frozen=True)
class Manifest:
    arch_id: str
    block_string: str
    target: str
    tvm_target: dict[str, Any]
    target_arch: str  # machine that can run the library (platform.machine() names)
    target_device: str  # cpu or cuda
    library_file: str
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    task: str = "classification"  # or detection, segmentation
    output_names: tuple[str, ...] = ("logits",)  # the ONNX / library outputs, in order
    # detection: method "centernet", stride, score_threshold, nms_iou, max_detections; segmentation: method "argmax"
    decoding: dict[str, Any] = field(default_factory=dict)
    test_metric: str = "accuracy"  # what test_accuracy is: accuracy, map (COCO mAP@[.5:.95]) or miou
    dataset: str | None = None
    test_accuracy: float | None = None
    estimated_latency_ms: dict[str, float] = field(default_factory=dict)  # estimator device -> ms
    measured_latency_ms: dict[str, float] = field(default_factory=dict)  # where it ran -> ms
    parity_max_abs_diff: dict[str, float] = field(default_factory=dict)  # "onnxruntime-vs-torch/random" -> diff
    tuning: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    created: str = ""
    onnx_file: str = ONNX_FILE
    arch_file: str = ARCH_FILE

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocessing"]["input_shape"] = list(self.preprocessing.input_shape)
        data["preprocessing"]["color"] = self.preprocessing.color
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str) -> Manifest:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{source}: not an edgenas artifact manifest (format version {FORMAT_VERSION})")
        data = {key: value for key, value in data.items() if key not in ("format", "format_version")}
        pre = {k: v for k, v in data.get("preprocessing", {}).items() if k not in ("input_shape", "color")}
        try:
            preprocessing = Preprocessing(**{**pre, "mean": tuple(pre["mean"]), "std": tuple(pre["std"])})
            manifest = cls(
                **{
                    **data,
                    "preprocessing": preprocessing,
                    "class_names": tuple(data["class_names"]),
                    "output_names": tuple(data.get("output_names", ("logits",))),
                }
            )
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{source}: malformed manifest ({exc})") from None
        _check_task(manifest, source)
        return manifest


@dataclass(frozen=True)
class Artifact:
    """A verified artifact folder."""

    path: Path
    manifest: Manifest

    @property
    def onnx_path(self) -> Path:
        return self.path / self.manifest.onnx_file

    @property
    def library_path(self) -> Path:
        return self.path / self.manifest.library_file


TASK_OUTPUT_COUNTS = {"classification": 1, "detection": 2, "segmentation": 1}
DETECTION_DECODING = {"stride": int, "score_threshold": float, "nms_iou": float, "max_detections": int}


def _check_task(manifest: Manifest, source: str) -> None:
    """The task, its outputs and (for detection) the decoding settings that ``edgenas run`` relies on."""
    task = manifest.task
    if task not in TASK_OUTPUT_COUNTS:
        raise ArtifactError(f"{source}: task: got {task!r}, allowed {', '.join(TASK_OUTPUT_COUNTS)}")
    if len(manifest.output_names) != TASK_OUTPUT_COUNTS[task]:
        raise ArtifactError(
            f"{source}: output_names: got {list(manifest.output_names)}, a {task} model has "
            f"{TASK_OUTPUT_COUNTS[task]} output(s)"
        )
    if task != "detection":
        return
    decoding = manifest.decoding if isinstance(manifest.decoding, dict) else {}
    for key, kind in DETECTION_DECODING.items():
        value = decoding.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise ArtifactError(f"{source}: decoding.{key}: got {value!r}, expected a number ({kind.__name__})")
    if decoding["stride"] < 1:
        raise ArtifactError(f"{source}: decoding.stride: got {decoding['stride']!r}, expected >= 1")
    try:
        decode_settings(manifest)
    except ValueError as exc:
        raise ArtifactError(f"{source}: decoding: {exc}") from None


def decode_settings(manifest: Manifest) -> DecodeSettings:
    """The box decoding a detection artifact was deployed with."""
    decoding = manifest.decoding
    return DecodeSettings(
        score_threshold=float(decoding["score_threshold"]),
        max_detections=int(decoding["max_detections"]),
        nms_iou=float(decoding["nms_iou"]),
    )


def library_name(target: str) -> str:
    return f"model-{target}.so"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("edgenas", "apache-tvm", "onnx", "onnxruntime", "torch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def write_manifest(folder: str | Path, manifest: Manifest) -> Manifest:
    """Hash the manifest's files (which must already be in ``folder``), add versions, write manifest.json."""
    folder = Path(folder)
    names = [manifest.onnx_file, manifest.library_file, manifest.arch_file]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise ArtifactError(f"{folder / missing[0]}: missing; cannot write the manifest")
    files = {name: sha256_file(folder / name) for name in names}
    created = datetime.now(UTC).isoformat(timespec="seconds")
    final = Manifest(**{**_fields(manifest), "files": files, "versions": software_versions(), "created": created})
    path = folder / MANIFEST
    path.write_text(json.dumps(final.to_dict(), indent=2) + "\n")
    logger.info("wrote %s", path)
    return final


def load_artifact(folder: str | Path) -> Artifact:
    """Read manifest.json and check every listed file's sha256; refuse a folder that does not match."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such artifact folder")
    if not path.is_file():
        raise ArtifactError(f"{folder}: not an artifact folder (no {MANIFEST})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    manifest = Manifest.from_dict(data, source=str(path))
    unlisted = [n for n in (manifest.onnx_file, manifest.library_file, manifest.arch_file) if n not in manifest.files]
    if unlisted:
        raise ArtifactError(f"{folder / unlisted[0]}: has no sha256 in {MANIFEST}; refusing the folder")
    for name, expected in manifest.files.items():
        file = folder / name
        if not file.is_file():
            raise ArtifactError(f"{file}: listed in {MANIFEST} but missing")
        if sha256_file(file) != expected:
            raise ArtifactError(f"{file}: sha256 does not match {MANIFEST} (file changed after deploy); refusing it")
    return Artifact(path=folder, manifest=manifest)


def _fields(manifest: Manifest) -> dict[str, Any]:
    return {name: getattr(manifest, name) for name in manifest.__dataclass_fields__}
