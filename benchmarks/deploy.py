"""Deploy benchmark: ONNX Runtime vs TVM (untuned and MetaSchedule-tuned) at batch 1, one thread.

    python benchmarks/deploy.py                 # trials 200 and 1000: hours on a 2-core machine
    python benchmarks/deploy.py --quick         # trials 20 and 40, to check that the pipeline works
    nohup python benchmarks/deploy.py > build/bench-deploy.log 2>&1 &    # in the background
    python benchmarks/deploy.py --retime        # then, on a quiet machine: every model timed again, back to back

For the baseline (``search_spaces/baseline.yaml``) and one network sampled
from the fused-IBN space (seed 0), with untrained weights (latency does not
depend on their values): ONNX Runtime latency, TVM untuned, TVM tuned with
each trial budget (tuning wall time too), the ratio TVM / ORT, and artifact
sizes. Every step's result is cached in ``<work-dir>/results.json`` as soon
as it is done, so an interrupted run resumes at the step it stopped in
(``--fresh`` starts over). Each trial budget tunes into its own database, so
the budgets do not share work; every network gets a budget before the next
budget starts. ``--retime`` times every cached model again back to back, so
that the ratios compare runs taken under the same load. Writes ``results/deploy-x86_64.md``
(``results/deploy-x86_64-quick.md`` with ``--quick``) after every step.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from deploy import (  # noqa: E402
    compile_onnx,
    export_onnx,
    get_target,
    load_compiled,
    time_compiled,
    time_onnxruntime,
)
from search_spaces import ArchConfig, baseline_arch, build_model, load_space, shipped_space_path  # noqa: E402

logger = logging.getLogger("benchmarks.deploy")

TARGET = "x86_64"
THREADS = 1
REPEATS = 30  # timing samples per model; the median is reported
MIN_SAMPLE_MS = 50.0  # each sample lasts at least this long


def networks() -> dict[str, ArchConfig]:
    fused = load_space(shipped_space_path("fused_ibn")).sample(np.random.default_rng(0))
    return {"baseline": baseline_arch(), "fused-ibn sample (seed 0)": fused}


class Cache:
    """results.json: step key -> result dict, written after every step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def step(self, key: str, run: Callable[[], dict]) -> dict:
        if key in self.data:
            logger.info("%s: cached", key)
            return self.data[key]
        logger.info("%s: running", key)
        start = time.perf_counter()
        result = {**run(), "step_seconds": round(time.perf_counter() - start, 1), "load_avg_1min": os.getloadavg()[0]}
        self.data[key] = result
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)
        return result


def export_step(arch: ArchConfig, folder: Path) -> dict:
    torch.manual_seed(0)
    shape = (1, arch.input_channels, arch.resolution, arch.resolution)
    path = export_onnx(build_model(arch).eval(), input_shape=shape, path=folder / "model.onnx")
    return {"onnx_bytes": path.stat().st_size}


def ort_step(arch: ArchConfig, folder: Path) -> dict:
    shape = (1, arch.input_channels, arch.resolution, arch.resolution)
    stats = time_onnxruntime(
        folder / "model.onnx", input_shape=shape, repeats=REPEATS, min_sample_ms=MIN_SAMPLE_MS, num_threads=THREADS
    )
    return {"latency_ms": stats.median_ms, "spread": stats.spread}


def tvm_step(folder: Path, trials: int) -> dict:
    name = "untuned" if trials == 0 else f"tuned-{trials}"
    database = folder / f"tuning-db-{trials}" if trials else None
    if database is not None and not (database / "edgenas-tuning.json").is_file():
        shutil.rmtree(database, ignore_errors=True)  # an interrupted tuning restarts from scratch: honest wall time
    compiled = compile_onnx(
        folder / "model.onnx", target=TARGET, tuning_trials=trials, tuning_db=database, num_threads=THREADS
    )
    library = compiled.export_library(folder / f"model-{TARGET}-{name}.so")
    stats = time_compiled(compiled, repeats=REPEATS, min_sample_ms=MIN_SAMPLE_MS, num_threads=THREADS)
    result = {
        "latency_ms": stats.median_ms,
        "spread": stats.spread,
        "compile_seconds": round(compiled.compile_seconds, 1),
        "library_bytes": library.stat().st_size,
    }
    if compiled.tuning is not None:
        tuning = compiled.tuning
        result.update(tuning_seconds=round(tuning.seconds, 1), tasks=tuning.tasks, measured=tuning.measured)
    return result


def run(work_dir: Path, trial_budgets: list[int]) -> Iterator[dict[str, dict]]:
    """Run (or reuse) every step, each budget for every network before the next budget; yields the table so far
    after each TVM step."""
    cache = Cache(work_dir / "results.json")
    table: dict[str, dict] = {}
    folders = {}
    for label, arch in networks().items():
        folder = folders[arch.arch_id] = work_dir / arch.arch_id
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "model.onnx").is_file():
            cache.data.pop(f"{arch.arch_id}/onnx", None)
        rows = {"onnx": cache.step(f"{arch.arch_id}/onnx", lambda a=arch, f=folder: export_step(a, f))}
        rows["onnxruntime"] = cache.step(f"{arch.arch_id}/onnxruntime", lambda a=arch, f=folder: ort_step(a, f))
        table[arch.arch_id] = {"label": label, "block_string": arch.block_string(), "rows": rows}
    for trials in [0, *trial_budgets]:
        key = "tvm-untuned" if trials == 0 else f"tvm-tuned-{trials}"
        for arch_id, folder in folders.items():
            table[arch_id]["rows"][key] = cache.step(f"{arch_id}/{key}", lambda f=folder, t=trials: tvm_step(f, t))
            yield table


def retime(work_dir: Path, table: dict[str, dict]) -> None:
    """Time every network's ONNX model and every library built so far again, back to back, so that the ratios
    compare runs taken under the same load (tuning runs for hours; the load changes in between)."""
    cache = Cache(work_dir / "results.json")
    archs = {arch.arch_id: arch for arch in networks().values()}
    host_target = get_target(TARGET).resolve(num_threads=THREADS)
    for arch_id, entry in table.items():
        folder, rows, arch = work_dir / arch_id, entry["rows"], archs[arch_id]
        shape = (1, arch.input_channels, arch.resolution, arch.resolution)
        fresh = {"onnxruntime": ort_step(arch, folder)}
        for key in rows:
            library = folder / f"model-{TARGET}-{key.removeprefix('tvm-')}.so"
            if key.startswith("tvm-") and library.is_file():
                compiled = load_compiled(library, target=TARGET, tvm_target=host_target, input_shape=shape)
                stats = time_compiled(compiled, repeats=REPEATS, min_sample_ms=MIN_SAMPLE_MS, num_threads=THREADS)
                fresh[key] = {"latency_ms": stats.median_ms, "spread": stats.spread}
        load = os.getloadavg()[0]
        for key, timing in fresh.items():
            first = rows[key].get("first_latency_ms", rows[key]["latency_ms"])
            rows[key].update(timing, first_latency_ms=first, load_avg_1min=load, retimed=True)
            cache.data[f"{arch_id}/{key}"] = rows[key]
    tmp = cache.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache.data, indent=1))
    tmp.replace(cache.path)


def write_markdown(path: Path, table: dict[str, dict], command: str, trial_budgets: list[int]) -> None:
    lines = [
        f"# Deploy: ONNX Runtime vs TVM on {TARGET}, batch 1, {THREADS} thread",
        "",
        f"Regenerate: `{command}` (resumable; caches each step in the work dir).",
        "",
        f"Latency in ms. Machine: {_cpu_name()}, {os.cpu_count()} logical cores; TVM target `llvm -mcpu=<host>`, "
        f"num-cores {THREADS}. Latency: median of {REPEATS} samples of >= {MIN_SAMPLE_MS:.0f} ms each. "
        "Weights untrained (latency does not depend on them). `load` is the 1-minute load average while the "
        "step ran: this machine is shared, so figures taken under load are noisy.",
        "",
        "| network | runtime | ms | / ORT | tuning s | tasks x trials (measured) | compile s | artifact | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arch_id, entry in table.items():
        label, rows = entry["label"], entry["rows"]
        ort_ms = rows["onnxruntime"]["latency_ms"]
        onnx_kib = rows["onnx"]["onnx_bytes"] / 1024
        lines.append(
            f"| {label} `{arch_id}` | ONNX Runtime | {ort_ms:.3f} | 1.00 | | | | {onnx_kib:.0f} KiB onnx "
            f"| {rows['onnxruntime']['load_avg_1min']:.1f} |"
        )
        for key in ["tvm-untuned", *(f"tvm-tuned-{t}" for t in trial_budgets)]:
            if key in rows:
                lines.append(_tvm_row(key, rows[key], ort_ms))
    lines += ["", "Networks:", ""]
    lines += [f"- `{arch_id}` {entry['label']}: `{entry['block_string']}`" for arch_id, entry in table.items()]
    lines += ["", _notes()]
    if any(row.get("retimed") for entry in table.values() for row in entry["rows"].values()):
        lines += [
            "",
            "Every latency above was timed again back to back at the end (`--retime`), `load` then; the first "
            "timings, taken right after each build while other steps and jobs ran, are kept in the work dir's "
            "`results.json` as `first_latency_ms`.",
        ]
    paused = [row["paused_s"] for entry in table.values() for row in entry["rows"].values() if "paused_s" in row]
    if paused:
        lines += [
            "",
            f"(†) The process was stopped for {sum(paused):.0f} s during that step so that a timing benchmark had "
            "the machine alone; the wall times shown exclude that pause.",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _tvm_row(key: str, row: dict, ort_ms: float) -> str:
    trials = 0 if key == "tvm-untuned" else int(key.rsplit("-", 1)[1])
    runtime = "TVM untuned" if trials == 0 else f"TVM tuned, {trials} trials"
    # paused_s: seconds the run was stopped (SIGSTOP) mid-step so that a timing benchmark had the machine alone;
    # written into results.json by hand, taken off the wall times here
    paused = row.get("paused_s", 0)
    tuning = f"{row['tuning_seconds'] - paused:.0f}" + (" (†)" if paused else "") if "tuning_seconds" in row else ""
    tasks = f"{row['tasks']} x {math.ceil(trials / row['tasks'])} ({row['measured']})" if "tasks" in row else ""
    return (
        f"| | {runtime} | {row['latency_ms']:.3f} | {row['latency_ms'] / ort_ms:.2f} | {tuning} | {tasks} "
        f"| {row['compile_seconds'] - paused:.0f} | {row['library_bytes'] / 1024:.0f} KiB .so "
        f"| {row['load_avg_1min']:.1f} |"
    )


def _notes() -> str:
    return (
        "Tuning: MetaSchedule, trials spread evenly over the model's tasks (fused TIR functions), at least one "
        "per task, so a small budget is rounded up; `measured` counts the candidates that built and ran. "
        "Candidates are built in-process and measured with 1 TVM thread; the evolutionary search population "
        "scales with the per-task budget (see `deploy/tuning.py`). The first tuning in a process also pays "
        "~20-60 s of MetaSchedule start-up (parsing its tensor intrinsics). `/ ORT` < 1 means TVM is faster."
    )


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="trial budgets 20 and 40 instead of 200 and 1000")
    parser.add_argument("--trials", type=int, nargs="+", default=None, help="trial budgets (default 200 1000)")
    parser.add_argument("--work-dir", type=Path, default=None, help="cache folder (default build/bench-deploy[-quick])")
    parser.add_argument("--fresh", action="store_true", help="forget cached steps and start over")
    parser.add_argument("--retime", action="store_true", help="at the end, time every model again back to back")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    budgets = args.trials or ([20, 40] if args.quick else [200, 1000])
    suffix = "-quick" if args.quick else ""
    work_dir = args.work_dir or Path("build") / f"bench-deploy{suffix}"
    if args.fresh:
        shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    out = Path("results") / f"deploy-{TARGET}{suffix}.md"
    command = "python benchmarks/deploy.py" + (" --quick" if args.quick else "")
    command += f" --trials {' '.join(map(str, args.trials))}" if args.trials else ""
    for table in run(work_dir, budgets):
        write_markdown(out, table, command, budgets)
    if args.retime:
        retime(work_dir, table)
        write_markdown(out, table, command + " --retime", budgets)
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
