"""`edgenas deploy` and `edgenas run`: package a network for a target, and run a package.

deploy: (train the architecture, unless --weights are given) -> ONNX with
parity checks -> TVM library for --target (tuned by default, within
--tune-minutes, into the target's persistent tuning database) -> artifact
folder with manifest.json. run: load a folder (sha256 checked),
preprocess the input as the manifest says, print the top predictions.
Detection and segmentation architectures and artifacts take the same
commands (``nas.cli.dense_deploy``: boxes or a class histogram, --out overlay).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from deploy.errors import ArtifactError
from deploy.targets import known_targets
from nas.cli.common import format_table, human_bytes, int_at_least
from nas.cli.dense_deploy import add_dense_deploy_arguments, add_dense_run_arguments, deploy_dense, run_dense
from nas.cli.train import add_dataset_arguments, load_arch_and_dataset
from search_spaces import ArchConfig
from search_spaces.errors import EdgeNasError

if TYPE_CHECKING:
    from torch import nn

    from deploy import DeployResult
    from nas.datasets import Dataset

logger = logging.getLogger(__name__)

# Tuning by default: the budget is shared out by task FLOPs, heaviest task first, so the minutes go where
# the time goes; the persistent database makes the next deploy of similar layers start where this one stopped.
DEFAULT_TUNE_TRIALS = 1000
DEFAULT_TUNE_MINUTES = 3.0


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_deploy(subparsers)
    _register_run(subparsers)


def _register_deploy(subparsers: argparse._SubParsersAction) -> None:
    deploy = subparsers.add_parser(
        "deploy",
        help="train (or load) an architecture, export ONNX, compile with TVM, write an artifact folder",
        description="Export an architecture to ONNX and a TVM library for a target, with parity checks, "
        "and write an artifact folder (model.onnx, model-TARGET.so, arch.yaml, manifest.json).",
    )
    deploy.add_argument("--arch", required=True, type=Path, help="ArchConfig YAML or JSON file")
    deploy.add_argument("--weights", type=Path, default=None, help="trained state_dict (.pt); default: train now")
    add_dataset_arguments(deploy)
    deploy.add_argument("--epochs", type=int, default=20, help="training epochs when no --weights (default 20)")
    deploy.add_argument("--seed", type=int, default=0, help="seed of the data split and of training")
    deploy.add_argument("--target", default="x86_64", help=f"one of {', '.join(known_targets())} (default x86_64)")
    deploy.add_argument(
        "--tune-trials",
        type=int,
        default=None,
        help=f"MetaSchedule trials for the model (0: untuned; default {DEFAULT_TUNE_TRIALS} when candidates can be "
        "measured here or on --rpc-tracker's board, else 0)",
    )
    deploy.add_argument(
        "--tune-minutes",
        type=float,
        default=DEFAULT_TUNE_MINUTES,
        help=f"stop starting tuning tasks after this long (default {DEFAULT_TUNE_MINUTES:g}; a later deploy "
        "goes on where it stopped)",
    )
    deploy.add_argument(
        "--tuning-db",
        type=Path,
        default=None,
        help="tuning database folder, reused across runs (default: the target's, "
        "$EDGENAS_TUNING_DB/TARGET or ~/.cache/edgenas/tvm/TARGET); with --tune-trials 0: apply it",
    )
    deploy.add_argument("--threads", type=int, default=1, help="CPU threads for tuning and timing (default 1)")
    deploy.add_argument("--rpc-tracker", default=None, metavar="HOST:PORT", help="TVM RPC tracker of a board")
    deploy.add_argument("--rpc-key", default=None, help="device key of the board registered at the tracker")
    deploy.add_argument("--no-measure", action="store_true", help="do not time the model on this host")
    deploy.add_argument("--out", type=Path, default=None, help="artifact folder (default dist/ARCH_ID-TARGET)")
    add_dense_deploy_arguments(deploy)
    deploy.set_defaults(func=run_deploy)


def _register_run(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="run an artifact folder on an image or a .npy batch and print predictions",
        description="Load an artifact folder (files checked against manifest.json), preprocess the input "
        "as the manifest says (resize, grayscale/RGB, normalisation) and print the top predictions.",
    )
    run.add_argument("folder", type=Path, help="artifact folder written by `edgenas deploy`")
    run.add_argument("--input", required=True, type=Path, help="an image (.png/.jpg/.bmp) or a .npy batch")
    run.add_argument("--runtime", choices=("tvm", "ort"), default="tvm", help="TVM library (default) or ONNX Runtime")
    run.add_argument("--top-k", type=int_at_least(1), default=3, help="predictions printed per image (default 3)")
    run.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    run.add_argument("--preprocessed", action="store_true", help="the .npy batch is already normalised input")
    add_dense_run_arguments(run)
    run.set_defaults(func=run_run)


def run_deploy(args: argparse.Namespace) -> int:
    from deploy import DeploySettings, Preprocessing, check_board, default_tuning_db, deploy_model, get_target
    from nas.training import check_compatible

    target = get_target(args.target)  # unknown target / missing cross compiler: fail before training
    target.linker()
    trials = args.tune_trials
    if trials is None:
        trials = DEFAULT_TUNE_TRIALS if (target.runs_on_host()[0] or args.rpc_tracker) else 0
    tuning_db = args.tuning_db
    if tuning_db is None and trials > 0:
        tuning_db = default_tuning_db(target.name)
    settings = DeploySettings(
        target=args.target,
        tuning_trials=trials,
        tuning_db=tuning_db,
        tune_minutes=args.tune_minutes,
        num_threads=args.threads,
        rpc_tracker=args.rpc_tracker,
        rpc_key=args.rpc_key,
        measure=not args.no_measure,
    )
    if settings.rpc_tracker is not None:  # an unreachable board fails before training
        check_board(settings.rpc_tracker, settings.rpc_key)
    if ArchConfig.load(args.arch).task != "classification":
        _print_deploy_summary(deploy_dense(args, settings, estimate=estimated_latencies))
        return 0
    arch, dataset = load_arch_and_dataset(args)
    check_compatible(arch, dataset)
    model, accuracy = _trained_model(arch, dataset, args)
    out = args.out or Path("dist") / f"{arch.arch_id}-{args.target}"
    print(f"deploying {arch.arch_id} for {args.target} to {out}")
    result = deploy_model(
        model,
        arch,
        out_dir=out,
        settings=settings,
        preprocessing=Preprocessing(
            channels=dataset.channels, resolution=dataset.resolution, mean=dataset.mean, std=dataset.std
        ),
        class_names=dataset.class_names,
        real_inputs=dataset.test.x.numpy(),
        dataset=dataset.name,
        test_accuracy=accuracy,
        estimated_latency_ms=estimated_latencies(arch),
    )
    _print_deploy_summary(result)
    return 0


def _trained_model(arch: ArchConfig, dataset: Dataset, args: argparse.Namespace) -> tuple[nn.Module, float]:
    from deploy import load_weights
    from nas.training import TrainConfig, evaluate, train_arch

    if args.weights is not None:
        model = load_weights(arch, args.weights)
        accuracy = evaluate(model, dataset.test)
        print(f"loaded {args.weights}: test accuracy {accuracy:.4f} on {dataset.name}")
        return model, accuracy
    print(f"training {arch.arch_id} for {args.epochs} epochs on {dataset.summary()}")
    model, result = train_arch(arch, dataset, config=TrainConfig(epochs=args.epochs, seed=args.seed), progress=True)
    print(f"test accuracy {result.test_accuracy:.4f} ({result.seconds:.1f} s)")
    return model.cpu().eval(), result.test_accuracy


def estimated_latencies(arch: ArchConfig) -> dict[str, float]:
    """Predicted latency (ms) on every device that has a trained estimator in its default folder."""
    from latency_estimator import available_devices, default_estimator_dir, obtain_estimator

    estimates = {}
    for device in available_devices():
        if not default_estimator_dir(device).is_dir():
            continue
        try:
            estimator = obtain_estimator(device, build_if_missing=False)
            estimates[device] = round(estimator.predict(arch).latency_ms, 5)
        except EdgeNasError as exc:  # a stale or foreign estimator only loses its column
            logger.warning("no latency estimate for %s: %s", device, exc)
    return estimates


def _print_deploy_summary(result: DeployResult) -> None:
    from nas.task_metrics import task_metric

    manifest = result.manifest
    for report in result.parity:
        print(f"parity {report.summary()}")
    if result.compiled.tuning is not None:
        print(f"tuning: {result.compiled.tuning.summary()}")
    rows = [(name, human_bytes((result.folder / name).stat().st_size)) for name in manifest.files]
    print(format_table(["file", "size"], rows))
    for where, ms in {**manifest.measured_latency_ms, **manifest.estimated_latency_ms}.items():
        kind = "measured" if where in manifest.measured_latency_ms else "estimated"
        print(f"{kind} latency {where}: {ms:.4f} ms")
    metric = task_metric(manifest.task).label
    print(f"artifact written to {result.folder} (test {metric} {_fmt(manifest.test_accuracy)})")


def run_run(args: argparse.Namespace) -> int:
    from deploy import Predictor, load_artifact, load_input

    artifact = load_artifact(args.folder)
    if artifact.manifest.task != "classification":
        return run_dense(args, artifact)
    if args.out is not None or args.score_threshold is not None:
        raise ArtifactError(f"{args.folder}: --out and --score-threshold apply to detection and segmentation artifacts")
    batch = load_input(args.input, artifact.manifest.preprocessing, preprocessed=args.preprocessed)
    predictor = Predictor(artifact, runtime=args.runtime, num_threads=args.threads)
    predictions = predictor.predict(batch, top_k=args.top_k)
    print(f"{artifact.manifest.arch_id} on {artifact.manifest.target} ({args.runtime}): {len(batch)} image(s)")
    for index, ranked in enumerate(predictions):
        cells = "  ".join(f"{p.class_name} {p.probability:.3f}" for p in ranked)
        print(f"{index}: {cells}")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
