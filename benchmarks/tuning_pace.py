"""Tuning pace: MetaSchedule candidates built on one thread against one thread per core, same budget.

    .venv/bin/python benchmarks/tuning_pace.py              # the baseline, 300 trials, 2 rounds: ~15 min
    .venv/bin/python benchmarks/tuning_pace.py --trials 60 --rounds 1   # a quick look

The network is the classification baseline (``search_spaces/baseline.yaml``, untrained weights: latency does
not depend on their values), NHWC with weight prepacking, as ``edgenas deploy`` builds it. Each run tunes the same
trial budget into a fresh database with the same seed; the runs alternate (one thread, all threads, one thread,
...) so that a change of load hits both. Reported: seconds of tuning, candidates measured per second, and the tuned
network's latency (fastest of 30 samples of at least 50 ms, TVM and then ONNX Runtime). Writes
``results/tuning-pace.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from deploy import compile_onnx, export_onnx, time_compiled, time_onnxruntime  # noqa: E402
from search_spaces import baseline_arch, build_model  # noqa: E402

logger = logging.getLogger("benchmarks.tuning_pace")
RESULTS = Path(__file__).resolve().parents[1] / "results"
TARGET = "x86_64"
REPEATS = 30  # timing samples per model; the fastest is reported
MIN_SAMPLE_MS = 50.0  # each sample lasts at least this long


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300, help="tuning trials for the whole network, per run")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (one thread, then all)")
    parser.add_argument("--out", type=Path, default=RESULTS / "tuning-pace")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    arch = baseline_arch()
    work = Path(tempfile.mkdtemp(prefix="edgenas-tuning-pace-"))
    torch.manual_seed(0)
    shape = (1, arch.input_channels, arch.resolution, arch.resolution)
    onnx_path = export_onnx(build_model(arch).eval(), input_shape=shape, path=work / "model.onnx")
    cores = len(os.sched_getaffinity(0))
    runs = []
    for round_index in range(args.rounds):
        for threads in (1, cores):
            runs.append(_run(onnx_path, threads, args.trials, work / f"db-{round_index}-{threads}"))
            logger.info("%s", runs[-1])
    report = {"cpu": platform.processor() or _cpu_model(), "cores": cores, "trials": args.trials, "arch": arch.arch_id}
    report["runs"] = runs
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(report, args))
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


def _run(onnx_path: Path, threads: int, trials: int, db: Path) -> dict:
    load = os.getloadavg()[0]
    compiled = compile_onnx(onnx_path, target=TARGET, tuning_trials=trials, tuning_db=db, build_threads=threads)
    shape = compiled.input_shape
    tvm_ms = time_compiled(compiled, repeats=REPEATS, min_sample_ms=MIN_SAMPLE_MS).min_ms
    ort_ms = time_onnxruntime(onnx_path, input_shape=shape, repeats=REPEATS, min_sample_ms=MIN_SAMPLE_MS).min_ms
    return {
        "build_threads": threads,
        "seconds": round(compiled.tuning.seconds, 1),
        "measured": compiled.tuning.measured,
        "candidates_per_s": round(compiled.tuning.measured / compiled.tuning.seconds, 3),
        "tvm_ms": round(tvm_ms, 4),
        "ort_ms": round(ort_ms, 4),
        "load_before": round(load, 2),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _markdown(report: dict, args: argparse.Namespace) -> str:
    lines = [
        "# Tuning pace: candidates built on one thread against one per core",
        "",
        f"Regenerate: `.venv/bin/python benchmarks/tuning_pace.py --trials {args.trials} --rounds {args.rounds}`",
        "",
        f"{report['cpu']}, {report['cores']} cores; network {report['arch']}; {report['trials']} trials per run, "
        "each into a fresh database, same seed, runs alternating.",
        "",
        "| run | build threads | tuning s | candidates | candidates / s | TVM ms | ORT ms | TVM / ORT | load before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for index, run in enumerate(report["runs"], 1):
        lines.append(
            f"| {index} | {run['build_threads']} | {run['seconds']:.1f} | {run['measured']} | "
            f"{run['candidates_per_s']:.2f} | {run['tvm_ms']:.3f} | {run['ort_ms']:.3f} | "
            f"{run['tvm_ms'] / run['ort_ms']:.2f} | {run['load_before']:.2f} |"
        )
    by = {}
    for run in report["runs"]:
        by.setdefault(run["build_threads"], []).append(run["seconds"])
    if len(by) == 2:
        (one, one_s), (many, many_s) = sorted(by.items())
        lines += [
            "",
            f"Mean tuning seconds: {sum(one_s) / len(one_s):.1f} with {one} thread, "
            f"{sum(many_s) / len(many_s):.1f} with {many} ({sum(one_s) / sum(many_s):.2f}x).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
