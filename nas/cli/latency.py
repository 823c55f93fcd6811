"""`edgenas latency profile | train | evaluate | predict`: build and use a device's latency estimator.

All four work on one folder per device (``--dir``, default
``results/estimators/<device>``, or ``$EDGENAS_ESTIMATORS/<device>``): profile
appends measurements there, train writes the estimator beside them, evaluate
and predict load it (predict, like a search, builds a simulated device's estimator when there is none).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from latency_estimator.devices import available_devices
from nas.cli.common import format_table


def register(subparsers: argparse._SubParsersAction) -> None:
    latency = subparsers.add_parser("latency", help="profile a device, train and evaluate its latency estimator")
    commands = latency.add_subparsers(dest="latency_command", metavar="SUBCOMMAND", required=True)

    profile = commands.add_parser("profile", help="measure sampled subgraphs (and a few networks) on a device")
    _add_device_arguments(profile)
    profile.add_argument(
        "--samples",
        type=int,
        default=None,
        help="subgraph measurements the folder should hold (default: 600 on sim-npu, 3000 on cpu-ort, 1500 elsewhere)",
    )
    profile.add_argument(
        "--networks",
        type=int,
        default=12,
        help="whole networks measured for the overhead term (cpu-ort profiles inside networks and measures them all)",
    )
    profile.add_argument("--seed", type=int, default=0, help="seed of the subgraph sampler")
    profile.set_defaults(func=run_profile)

    train = commands.add_parser("train", help="train the estimator on the folder's measurements")
    _add_device_arguments(train)
    train.add_argument("--seed", type=int, default=0, help="seed of the held-out split and of XGBoost")
    train.set_defaults(func=run_train)

    evaluate = commands.add_parser("evaluate", help="compare predictions with end-to-end measurements")
    _add_device_arguments(evaluate)
    evaluate.add_argument("--models", type=int, default=100, help="networks sampled from the shipped spaces")
    evaluate.add_argument("--seed", type=int, default=1, help="seed of the network sample")
    evaluate.add_argument("--out", type=Path, default=None, help="folder for the CSV and scatter plot (default --dir)")
    evaluate.set_defaults(func=run_evaluate)

    predict = commands.add_parser("predict", help="predict one network's latency with its per-subgraph breakdown")
    _add_device_arguments(predict)
    predict.add_argument("file", type=Path, help="ArchConfig YAML/JSON file or an .onnx model")
    predict.set_defaults(func=run_predict)


def _add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", required=True, help=f"one of {', '.join(available_devices())}")
    parser.add_argument("--dir", type=Path, default=None, help="estimator folder (default results/estimators/DEVICE)")


def _directory(args: argparse.Namespace) -> Path:
    from latency_estimator import default_estimator_dir

    return args.dir or default_estimator_dir(args.device)


def run_profile(args: argparse.Namespace) -> int:
    from latency_estimator import get_device, profile_device

    device = get_device(args.device)
    directory = _directory(args)
    with _progress(f"profiling {device.name}", unit="meas") as progress:
        dataset = profile_device(
            device,
            samples=device.default_samples if args.samples is None else args.samples,
            directory=directory,
            networks=args.networks,
            seed=args.seed,
            progress=progress,
        )
    print(f"{len(dataset.rows)} subgraph and {len(dataset.network_rows)} network measurements in {directory}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from latency_estimator import EstimatorError, MeasurementDataset, train_from_dataset

    directory = _directory(args)
    dataset = MeasurementDataset.load(directory)
    if dataset.device != args.device:
        raise EstimatorError(f"{directory}: holds measurements of device {dataset.device!r}, not {args.device!r}")
    estimator = train_from_dataset(dataset, seed=args.seed)
    estimator.save(directory)
    meta = estimator.metadata
    rows = [(name, c["mape"], c["rmspe"], c["within_10pct"]) for name, c in meta["training"]["candidates"].items()]
    print(format_table(["prior/layout/loss", "held-out MAPE", "RMSPE", "within 10%"], rows))
    overhead = estimator.overhead
    print(
        f"\nkept {meta['prior']['form']}/{meta['layout']}/{meta['loss']}; overhead term {overhead.form}: "
        f"scale {overhead.scale:.4g}, constant {overhead.constant:.4g} ms, per subgraph {overhead.per_subgraph:.4g} ms"
    )
    print(f"estimator for {estimator.device} written to {directory}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from latency_estimator import LatencyEstimator, evaluate_estimator, get_device
    from latency_estimator.evaluation import plot_scatter, write_csv

    device = get_device(args.device)
    directory = _directory(args)
    estimator = LatencyEstimator.load(directory, device=device.name, profile=device.profile.to_dict())
    out = args.out or directory
    with _progress(f"timing networks on {device.name}", unit="run") as progress:
        evaluation = evaluate_estimator(
            estimator,
            device,
            models=args.models,
            seed=args.seed,
            measurements=out / "evaluation-measured.csv",
            progress=progress,
        )
    write_csv(evaluation, out / "evaluation.csv")
    plot_scatter(evaluation, out / "evaluation.png")
    rows = [(group, *_metric_cells(values)) for group, values in evaluation.metrics_dict().items()]
    headers = ["networks", "count", "within 10%", "within 5%", "RMSPE", "MAPE", "max error", "Kendall tau", "Spearman"]
    print(format_table(headers, rows))
    for network in evaluation.networks:
        if network.source in ("baseline", "reference"):
            print(
                f"{network.name:20s} measured {network.measured_ms:.4f} ms  predicted {network.predicted_ms:.4f} ms "
                f"({network.error:+.1%})"
            )
    print(f"\nper-network table {out / 'evaluation.csv'}, scatter plot {out / 'evaluation.png'}")
    return 0


def _metric_cells(values: dict[str, float]) -> list[object]:
    keys = ("count", "within_10pct", "within_5pct", "rmspe", "mape", "max_abs_error", "kendall_tau", "spearman_rho")
    return [values[key] if key == "count" else round(values[key], 4) for key in keys]


def run_predict(args: argparse.Namespace) -> int:
    from latency_estimator import decompose_onnx, get_device, obtain_estimator
    from search_spaces.arch_file import load_arch

    device = get_device(args.device)
    estimator = obtain_estimator(device, directory=_directory(args))  # a simulated device's is built if missing
    if args.file.suffix == ".onnx":
        prediction = estimator.predict_subgraphs(decompose_onnx(args.file))
        title = str(args.file)
    else:
        arch = load_arch(args.file)
        prediction = estimator.predict(arch)
        title = f"{arch.arch_id}  {arch.block_string()}"
    rows = [(part.name, part.kind, round(part.latency_ms, 5)) for part in prediction.breakdown]
    rows.append(("(overhead term)", "", round(prediction.overhead_ms, 5)))
    print(f"{title}\n")
    print(format_table(["subgraph", "kind", "predicted ms"], rows))
    print(f"\npredicted latency on {device.name}: {prediction.latency_ms:.4f} ms")
    return 0


@contextmanager
def _progress(desc: str, *, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar, and the ``progress(done, total)`` callback that moves it."""
    from tqdm import tqdm

    with tqdm(desc=desc, unit=unit, dynamic_ncols=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield progress
