"""Artifact folders: model.onnx, model-<target>.so, arch.yaml and manifest.json.

The manifest records what a user of the folder needs (input shape and
preprocessing, the task, its output names, class names, how raw outputs are
decoded into boxes or a mask, the target) and what produced it (versions,
test accuracy, latencies, tuning), plus the sha256 of every file. Loading
verifies every hash, so a folder whose files changed after deploy is refused
with the name of the first file that does not match.

The manifest covers itself too: ``checksum`` holds the scheme
``sha256-canonical-json`` and the sha256 of the manifest's other keys
serialised as canonical JSON (keys sorted, no spaces, UTF-8). It is
self-describing, not keyed: it catches an edited manifest (a changed mean or
test accuracy), not someone who recomputes the hash on purpose.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from deploy.errors import ArtifactError
from search_spaces.arch import ArchConfig
from search_spaces.decode_settings import DecodeSettings
from search_spaces.errors import EdgeNasError
from search_spaces.safe_files import parse_json, read_text

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
FORMAT_VERSION = 2  # 2: the manifest's own checksum
CHECKSUM_SCHEME = "sha256-canonical-json"
MAX_MANIFEST_BYTES = 1024 * 1024
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
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ArtifactError(f"{source}: not an edgenas artifact manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"{source}: manifest format version {data.get('format_version')!r}, this edgenas reads "
                f"{FORMAT_VERSION}; deploy the model again"
            )
        data = {key: value for key, value in data.items() if key not in ("format", "format_version", "checksum")}
        try:
            pre = {k: v for k, v in data["preprocessing"].items() if k not in ("input_shape", "color")}
            preprocessing = Preprocessing(**{**pre, "mean": tuple(pre["mean"]), "std": tuple(pre["std"])})
            manifest = cls(
                **{
                    **data,
                    "preprocessing": preprocessing,
                    "class_names": tuple(data["class_names"]),
                    "output_names": tuple(data.get("output_names", ("logits",))),
                }
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from None
        _check_values(manifest, source)
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


TEXT_FIELDS = ("arch_id", "block_string", "target", "target_arch", "target_device", "library_file", "onnx_file",
               "arch_file", "created", "task", "test_metric")  # fmt: skip
MAPPING_FIELDS = ("tvm_target", "estimated_latency_ms", "measured_latency_ms", "parity_max_abs_diff", "versions",
                  "decoding")  # fmt: skip


def _check_values(manifest: Manifest, source: str) -> None:
    """Values a runtime relies on: a wrong one would give confident nonsense or an IndexError later."""
    pre = manifest.preprocessing
    numbers = [*pre.mean, *pre.std, pre.pixel_scale]
    problems = [f"{name}: got {getattr(manifest, name)!r}, expected a string" for name in TEXT_FIELDS
                if not isinstance(getattr(manifest, name), str)]  # fmt: skip
    problems += [f"{name}: expected a mapping" for name in MAPPING_FIELDS
                 if not isinstance(getattr(manifest, name), dict)]  # fmt: skip
    accuracy = manifest.test_accuracy
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))):
        problems.append(f"test_accuracy: got {accuracy!r}, expected a number or null")
    if pre.channels not in (1, 3) or isinstance(pre.channels, bool):
        problems.append(f"preprocessing.channels: got {pre.channels!r}, allowed 1 or 3")
    if not isinstance(pre.resolution, int) or isinstance(pre.resolution, bool) or not 1 <= pre.resolution <= 4096:
        problems.append(f"preprocessing.resolution: got {pre.resolution!r}, allowed an integer in [1, 4096]")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        problems.append("preprocessing: mean, std and pixel_scale must be finite numbers")
    elif len(pre.mean) != pre.channels or len(pre.std) != pre.channels:
        problems.append(f"preprocessing: mean and std need {pre.channels} value(s), one per channel")
    elif min(pre.std) <= 0 or pre.pixel_scale <= 0:
        problems.append("preprocessing: std and pixel_scale must be > 0")
    if len(manifest.class_names) < 2 or not all(isinstance(name, str) for name in manifest.class_names):
        problems.append(f"class_names: got {len(manifest.class_names)} entries, allowed 2 or more strings")
    if not isinstance(manifest.files, dict) or not all(isinstance(v, str) for v in manifest.files.values()):
        problems.append("files: expected a mapping of file name to sha256")
    if problems:
        raise ArtifactError(f"{source}: {problems[0]}")


def manifest_checksum(data: dict[str, Any]) -> dict[str, str]:
    """The manifest's own checksum: sha256 of its other keys as canonical JSON."""
    body = {key: value for key, value in data.items() if key != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return {"scheme": CHECKSUM_SCHEME, "sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest()}


def _check_own_checksum(data: Any, path: Path) -> None:
    recorded = data.get("checksum") if isinstance(data, dict) else None
    if not isinstance(recorded, dict) or recorded.get("scheme") != CHECKSUM_SCHEME:
        raise ArtifactError(f"{path}: has no {CHECKSUM_SCHEME} checksum of its own; refusing the folder")
    if recorded != manifest_checksum(data):
        raise ArtifactError(f"{path}: its own checksum does not match (manifest edited after deploy); refusing it")


TASK_OUTPUT_COUNTS = {"classification": 1, "detection": 2, "segmentation": 1}
DETECTION_DECODING = {"stride": int, "score_threshold": float, "nms_iou": float, "max_detections": int}


def _check_task(manifest: Manifest, source: str) -> None:
    """The task, its outputs and (for detection) the decoding settings that ``edgenas run`` relies on."""
    task = manifest.task
    if task not in TASK_OUTPUT_COUNTS:
        raise ArtifactError(f"{source}: task: got {task!r}, allowed {', '.join(TASK_OUTPUT_COUNTS)}")
    names = manifest.output_names
    if len(names) != TASK_OUTPUT_COUNTS[task] or not all(isinstance(name, str) for name in names):
        raise ArtifactError(
            f"{source}: output_names: got {list(manifest.output_names)}, a {task} model has "
            f"{TASK_OUTPUT_COUNTS[task]} output(s)"
        )
    if task != "detection":
        return
    decoding = manifest.decoding if isinstance(manifest.decoding, dict) else {}
    for key, kind in DETECTION_DECODING.items():
        value = decoding.get(key)
        if not _is_number(value, integer=kind is int):
            raise ArtifactError(f"{source}: decoding.{key}: got {value!r}, expected a number ({kind.__name__})")
    resolution = manifest.preprocessing.resolution
    if not 1 <= decoding["stride"] <= resolution:
        raise ArtifactError(f"{source}: decoding.stride: got {decoding['stride']!r}, allowed 1 to {resolution}")
    try:
        decode_settings(manifest)
    except (ValueError, OverflowError) as exc:
        raise ArtifactError(f"{source}: decoding: {exc}") from None


def _is_number(value: object, *, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    if integer or isinstance(value, int):
        return isinstance(value, int)
    return isinstance(value, float) and math.isfinite(value)


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
    data = final.to_dict()
    data["checksum"] = manifest_checksum(data)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
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
    text = read_text(path, what="artifact manifest", error=ArtifactError, max_bytes=MAX_MANIFEST_BYTES)
    data = parse_json(text, source=str(path), error=ArtifactError)
    _check_own_checksum(data, path)
    manifest = Manifest.from_dict(data, source=str(path))
    unlisted = [n for n in (manifest.onnx_file, manifest.library_file, manifest.arch_file) if n not in manifest.files]
    if unlisted:
        raise ArtifactError(f"{folder / unlisted[0]}: has no sha256 in {MANIFEST}; refusing the folder")
    for name, expected in manifest.files.items():
        file = folder / name
        if Path(name).name != name:
            raise ArtifactError(f"{path}: file name {name!r} is not a plain name in the folder; refusing it")
        if not file.is_file():
            raise ArtifactError(f"{file}: listed in {MANIFEST} but missing")
        if sha256_file(file) != expected:
            raise ArtifactError(f"{file}: sha256 does not match {MANIFEST} (file changed after deploy); refusing it")
    _check_classes(folder / manifest.arch_file, manifest)
    return Artifact(path=folder, manifest=manifest)


def _check_classes(arch_path: Path, manifest: Manifest) -> None:
    """The manifest's class names must match the network's outputs (its arch.yaml, hash-checked above)."""
    try:
        arch = ArchConfig.load(arch_path)
    except EdgeNasError as exc:
        raise ArtifactError(f"{arch_path}: {exc}") from None
    if len(manifest.class_names) != arch.head.num_classes:
        raise ArtifactError(
            f"{arch_path.parent / MANIFEST}: class_names has {len(manifest.class_names)} entries, "
            f"the network has {arch.head.num_classes} outputs"
        )


def _fields(manifest: Manifest) -> dict[str, Any]:
    return {name: getattr(manifest, name) for name in manifest.__dataclass_fields__}
