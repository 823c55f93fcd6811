"""The detection and segmentation side of `edgenas deploy` and `edgenas run`.

deploy: the dense dataset at the architecture's resolution, training (or
``--weights``) scored by COCO mAP / mIoU, then :func:`deploy.deploy_model`
with the decoding settings recorded in the manifest. run: boxes (class,
score, x0,y0,x1,y1 in the input's pixels) or a class histogram (pixels per
class) per image, and with ``--out`` an overlay PNG of the input image.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from deploy.display import DISPLAY_DECODE
from deploy.errors import ArtifactError
from search_spaces import ArchConfig
from search_spaces.decode_settings import DecodeSettings

if TYPE_CHECKING:
    from torch import nn

    from deploy import Artifact, DeployResult, DeploySettings
    from nas.dense_datasets import DenseDataset

__all__ = ["add_dense_deploy_arguments", "add_dense_run_arguments", "deploy_dense", "run_dense"]

PARITY_IMAGES = 8  # test images for the parity checks on real inputs


def add_dense_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("detection and segmentation")
    group.add_argument(
        "--score-threshold",
        type=float,
        default=DISPLAY_DECODE.score_threshold,
        help=f"detection: boxes `run` shows score at least this (default {DISPLAY_DECODE.score_threshold:g})",
    )
    group.add_argument(
        "--nms-iou", type=float, default=DISPLAY_DECODE.nms_iou, help="detection: NMS IoU threshold (default 0.5)"
    )
    group.add_argument(
        "--max-boxes", type=int, default=DISPLAY_DECODE.max_detections, help="detection: boxes per image (default 100)"
    )
    group.add_argument("--eval-limit", type=int, default=None, help="score on at most this many test images")


def add_dense_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="detection/segmentation: write an overlay PNG here")
    parser.add_argument(
        "--score-threshold", type=float, default=None, help="detection: override the manifest's score threshold"
    )


def deploy_dense(
    args: argparse.Namespace, settings: DeploySettings, *, estimate: Callable[[ArchConfig], dict[str, float]]
) -> DeployResult:
    """`edgenas deploy` of a detection or segmentation ``--arch``; ``estimate`` gives latency estimates."""
    from deploy import Preprocessing, deploy_model
    from nas.dense_datasets import load_dense_dataset
    from nas.dense_training import METRICS, check_dense_compatible

    decode = _decode_settings(args.score_threshold, args.max_boxes, args.nms_iou)
    arch = ArchConfig.load(args.arch)
    dataset = load_dense_dataset(
        args.dataset,
        resolution=arch.resolution,
        seed=args.seed,
        data_dir=args.data_dir,
        task=arch.task,
        limit=args.train_limit,
        eval_limit=args.eval_limit,
    )
    check_dense_compatible(arch, dataset)
    model, score = _trained_model(arch, dataset, args)
    out = args.out or Path("dist") / f"{arch.arch_id}-{args.target}"
    print(f"deploying {arch.arch_id} ({arch.task}) for {args.target} to {out}")
    real = next(iter(dataset.test.loader(batch_size=PARITY_IMAGES))).images.numpy()
    return deploy_model(
        model,
        arch,
        out_dir=out,
        settings=settings,
        preprocessing=Preprocessing(
            channels=dataset.channels, resolution=dataset.resolution, mean=dataset.mean, std=dataset.std
        ),
        class_names=dataset.class_names(arch.task),
        real_inputs=real,
        dataset=dataset.name,
        test_accuracy=score,
        test_metric=METRICS[arch.task],
        estimated_latency_ms=estimate(arch),
        decode=decode,
    )


def _trained_model(arch: ArchConfig, dataset: DenseDataset, args: argparse.Namespace) -> tuple[nn.Module, float]:
    from deploy import load_weights
    from nas.dense_training import evaluate_dense, train_dense_arch
    from nas.task_metrics import task_metric
    from nas.training import TrainConfig

    metric = task_metric(arch.task).label
    if args.weights is not None:
        model = load_weights(arch, args.weights)
        score = evaluate_dense(model, dataset.test, task=arch.task, num_classes=arch.head.num_classes).score
        print(f"loaded {args.weights}: test {metric} {score:.4f} on {dataset.name}")
        return model, score
    print(f"training {arch.arch_id} for {args.epochs} epochs on {dataset.summary()}")
    config = TrainConfig(epochs=args.epochs, seed=args.seed)
    model, result = train_dense_arch(arch, dataset, config=config, progress=True)
    print(f"test {metric} {result.test_accuracy:.4f} ({result.seconds:.1f} s)")
    return model.cpu().eval(), result.test_accuracy


def _decode_settings(score_threshold: float, max_boxes: int, nms_iou: float) -> DecodeSettings:
    try:
        return DecodeSettings(score_threshold=score_threshold, max_detections=max_boxes, nms_iou=nms_iou)
    except ValueError as exc:
        raise ArtifactError(str(exc)) from None


def run_dense(args: argparse.Namespace, artifact: Artifact) -> int:
    """`edgenas run` of a detection or segmentation artifact."""
    from deploy import (
        IMAGE_SUFFIXES,
        Predictor,
        class_histogram,
        detect,
        input_sizes,
        load_input,
        segment,
        write_overlay,
    )

    manifest = artifact.manifest
    if args.score_threshold is not None:
        if manifest.task != "detection":
            raise ArtifactError("--score-threshold applies to detection artifacts only")
        settings = _decode_settings(
            args.score_threshold, manifest.decoding["max_detections"], manifest.decoding["nms_iou"]
        )
        decoding = {**manifest.decoding, "score_threshold": settings.score_threshold}
        manifest = dataclasses.replace(manifest, decoding=decoding)
    if args.out is not None and args.input.suffix.lower() not in IMAGE_SUFFIXES:
        raise ArtifactError(f"{args.input}: --out draws on an image input ({', '.join(IMAGE_SUFFIXES)}), not a .npy")
    batch = load_input(args.input, manifest.preprocessing, preprocessed=args.preprocessed)
    sizes = input_sizes(args.input, manifest.preprocessing, count=len(batch), preprocessed=args.preprocessed)
    outputs = Predictor(artifact, runtime=args.runtime, num_threads=args.threads).outputs(batch)
    print(f"{manifest.arch_id} on {manifest.target} ({args.runtime}, {manifest.task}): {len(batch)} image(s)")
    if manifest.task == "detection":
        found = detect(outputs, manifest, image_sizes=sizes)
        for index, boxes in enumerate(found):
            print(f"{index}: {len(boxes)} box(es) (class score x0,y0,x1,y1 in input pixels)")
            for b in boxes:
                print(f"  {b.class_name} {b.score:.3f} {b.x0:.1f},{b.y0:.1f},{b.x1:.1f},{b.y1:.1f}")
        overlay = {"boxes": found[0]}
    else:
        maps = segment(outputs, manifest, image_sizes=sizes)
        for index, label_map in enumerate(maps):
            total = label_map.size
            print(f"{index}: {label_map.shape[1]}x{label_map.shape[0]} pixels (class pixels share)")
            for name, pixels in class_histogram(label_map, manifest.class_names):
                print(f"  {name} {pixels} {100 * pixels / total:.1f}%")
        overlay = {"label_map": maps[0]}
    if args.out is not None:
        path = write_overlay(args.input, args.out, class_names=manifest.class_names, **overlay)
        print(f"overlay written to {path}")
    return 0
