"""Deploy benchmark: ONNX Runtime vs TVM (untuned and MetaSchedule-tuned) at batch 1, one thread.

    python benchmarks/deploy.py                 # trial budgets 200, 1000 (3000 with --trials): hours here
    python benchmarks/deploy.py --quick         # trials 20, the baseline only, to check that the pipeline works
    nohup python benchmarks/deploy.py > build/bench-deploy.log 2>&1 &    # in the background
    python benchmarks/deploy.py --retime        # then, on a quiet machine: every model timed again, back to back

Networks, with untrained weights (latency does not depend on their values):
the classification baseline (``search_spaces/baseline.yaml``), one network
sampled from the fused-IBN space (seed 0), and the standard MobileNetV2 1.0 at
224x224x3 (1000 classes). Rows: ONNX Runtime, TVM untuned, TVM tuned with each
trial budget with every lever on (weight prepacking, trials weighted by task
FLOPs, NHWC convolutions: :mod:`deploy.tuning`, :mod:`deploy.layout`), and, for the baseline at the first budget,
one row per lever turned off, which is what that lever gained on its own.
Every TVM row times ONNX Runtime again right after the TVM library, in the
same process, so its `/ ORT` compares runs under the same load. Steps run in
a fixed priority order (cheap rows and small budgets first) and each result
is cached in ``<work-dir>/results.json`` at once, so an interrupted run resumes
at the step it stopped in (``--fresh`` starts over). Each row tunes into its
own database, so the rows do not share work and the tuning seconds are
honest. Writes ``results/deploy-x86_64.md`` (``-quick`` with ``--quick``)
after every step.
"""

from __future__ import annotations

import argparse
import json
import logging
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


# Lever variants of a tuned row: (prepack, weighting, layout). "" is every lever on (layout None: the target's).
VARIANTS = {
    "": (True, "flops", None),
    "no-prepack": (False, "flops", None),
    "even-trials": (True, "even", None),
    "nchw": (True, "flops", "NCHW"),
}
VARIANT_TEXT = {  # the row's layout follows (rows from before the layout lever have none: they were NCHW)
    "": "prepack + FLOPs-weighted trials",
    "no-prepack": "FLOPs-weighted trials, no prepack",
    "even-trials": "prepack, trials spread evenly",
    "nchw": "prepack + FLOPs-weighted trials",
    "heaviest-first": "prepack + FLOPs-weighted, heaviest task first (superseded: now breadth first)",
}
LEVER_OFF = {"no-prepack": "weight prepacking", "even-trials": "FLOPs-weighted trials", "nchw": "NHWC layout"}
SUPERSEDED = "heaviest-first-"  # results.json keys of rows run with an earlier task order, shown for comparison
MOBILENET_V2 = {  # Sandler et al. 2018, width 1.0, ImageNet shape: 224x224x3, 1000 classes
    "input_channels": 3,
    "resolution": 224,
    "channel_divisor": 8,
    "activation": "relu6",
    "stem": {"kernel": 3, "channels": 32, "stride": 2},
    "stages": [
        {"block": "ibn", "kernel": 3, "expansion": e, "channels": c, "depth": n, "stride": st}
        for e, c, n, st in [
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ]
    ],
    "head": {"type": "classification", "channels": 1280, "num_classes": 1000},
}


SHORT_NAMES = {
    "baseline": "baseline",
    "fused-ibn": "fused-ibn sample (seed 0)",
    "mobilenet-v2": "MobileNetV2 1.0 224x224x3",
}


def networks(quick: bool = False) -> dict[str, ArchConfig]:
    if quick:
        return {"baseline": baseline_arch()}
    fused = load_space(shipped_space_path("fused_ibn")).sample(np.random.default_rng(0))
    mobilenet = ArchConfig.from_dict(MOBILENET_V2, source="MobileNetV2 1.0 224")
    return {"baseline": baseline_arch(), SHORT_NAMES["fused-ibn"]: fused, SHORT_NAMES["mobilenet-v2"]: mobilenet}


def parse_budget(text: str) -> tuple[int, float | None]:
    """``TRIALS`` or ``TRIALS@MINUTES`` (a time budget: tuning stops starting rounds after MINUTES)."""
    trials, _, minutes = text.partition("@")
    return int(trials), (float(minutes) if minutes else None)


def parse_row(text: str) -> tuple[str, str, str]:
    """``NETWORK:BUDGET[:VARIANT]`` (NETWORK one of SHORT_NAMES, VARIANT one of VARIANTS) -> a plan step."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in SHORT_NAMES or (len(parts) == 3 and parts[2] not in VARIANTS):
        raise SystemExit(f"--rows: {text!r} is not NETWORK:BUDGET[:VARIANT] with NETWORK in {list(SHORT_NAMES)}")
    parse_budget(parts[1])
    return SHORT_NAMES[parts[0]], parts[1], parts[2] if len(parts) == 3 else ""


def plan(labels: list[str], budgets: list[str]) -> list[tuple[str, str, str]]:
    """(network label, budget, variant) in the order they run: untuned rows, the first budget for the first
    network and its lever rows, the first budget for the other networks, then each larger budget."""
    steps = [(label, "0", "") for label in labels]
    for index, budget in enumerate(budgets):
        steps.append((labels[0], budget, ""))
        if index == 0:
            steps += [(labels[0], budget, variant) for variant in VARIANTS if variant]
        steps += [(label, budget, "") for label in labels[1:]]
    return steps


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


def row_key(budget: str, variant: str) -> str:
    trials, minutes = parse_budget(budget)
    key = "tvm-untuned" if trials == 0 else f"tvm-tuned-{trials}" + (f"-{minutes:g}min" if minutes else "")
    return key + (f"-{variant}" if variant else "")


def tvm_step(arch: ArchConfig, folder: Path, budget: str, variant: str) -> dict:
    trials, minutes = parse_budget(budget)
    name = row_key(budget, variant).removeprefix("tvm-")
    prepack, weighting, layout = VARIANTS[variant]
    database = folder / f"tuning-db-{name}" if trials else None
    if database is not None:
        shutil.rmtree(database, ignore_errors=True)  # an interrupted tuning restarts from scratch: honest wall time
    compiled = compile_onnx(
        folder / "model.onnx",
        target=TARGET,
        tuning_trials=trials,
        tuning_db=database,
        tune_minutes=minutes,
        tuning_weighting=weighting,
        prepack=prepack,
        layout=layout,
        num_threads=THREADS,
    )
    library = compiled.export_library(folder / f"model-{TARGET}-{name}.so")
    stats = time_compiled(compiled, repeats=REPEATS, min_sample_ms=MIN_SAMPLE_MS, num_threads=THREADS)
    ort = ort_step(arch, folder)  # right after, in the same process: the ratio compares like with like
    result = {
        "trials": trials,
        "minutes": minutes,
        "variant": variant,
        "layout": layout or get_target(TARGET).conv_layout,
        "latency_ms": stats.median_ms,
        "spread": stats.spread,
        "ort_ms_same_run": ort["latency_ms"],
        "compile_seconds": round(compiled.compile_seconds, 1),
        "library_bytes": library.stat().st_size,
    }
    if compiled.tuning is not None:
        tuning = compiled.tuning
        result.update(
            tuning_seconds=round(tuning.seconds, 1),
            tasks=tuning.tasks,
            measured=tuning.measured,
            skipped_tasks=tuning.skipped_tasks,
        )
    return result


def run(
    work_dir: Path, trial_budgets: list[str], quick: bool = False, chosen: list[tuple[str, str, str]] | None = None
) -> Iterator[dict[str, dict]]:
    """Run (or reuse) every step of :func:`plan` (the untuned rows and then ``chosen``, when given); yields the
    table so far after each TVM step."""
    cache = Cache(work_dir / "results.json")
    table: dict[str, dict] = {}
    archs = networks(quick)
    for label, arch in archs.items():
        folder = work_dir / arch.arch_id
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "model.onnx").is_file():
            cache.data.pop(f"{arch.arch_id}/onnx", None)
        rows = {"onnx": cache.step(f"{arch.arch_id}/onnx", lambda a=arch, f=folder: export_step(a, f))}
        rows["onnxruntime"] = cache.step(f"{arch.arch_id}/onnxruntime", lambda a=arch, f=folder: ort_step(a, f))
        for key, row in cache.data.items():
            if key.startswith(f"{arch.arch_id}/{SUPERSEDED}"):
                name = key.split("/", 1)[1].removeprefix(SUPERSEDED)
                rows[f"tvm-{name}-heaviest-first"] = {**row, "variant": "heaviest-first"}
        table[arch.arch_id] = {"label": label, "block_string": arch.block_string(), "rows": rows}
    steps = plan(list(archs), trial_budgets) if chosen is None else [*plan(list(archs), []), *chosen]
    for label, budget, variant in steps:
        arch = archs[label]
        folder, key = work_dir / arch.arch_id, row_key(budget, variant)
        step = lambda a=arch, f=folder, b=budget, v=variant: tvm_step(a, f, b, v)  # noqa: E731
        table[arch.arch_id]["rows"][key] = cache.step(f"{arch.arch_id}/{key}", step)
        yield table


def retime(work_dir: Path, table: dict[str, dict], quick: bool = False) -> None:
    """Time every network's ONNX model and every library built so far again, back to back, so that the ratios
    compare runs taken under the same load (tuning runs for hours; the load changes in between)."""
    cache = Cache(work_dir / "results.json")
    archs = {arch.arch_id: arch for arch in networks(quick).values()}
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
                fresh[key]["ort_ms_same_run"] = ort_step(arch, folder)["latency_ms"]
        load = os.getloadavg()[0]
        for key, timing in fresh.items():
            first = rows[key].get("first_latency_ms", rows[key]["latency_ms"])
            rows[key].update(timing, first_latency_ms=first, load_avg_1min=load, retimed=True)
            cache.data[f"{arch_id}/{key}"] = rows[key]
    tmp = cache.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache.data, indent=1))
    tmp.replace(cache.path)


def write_markdown(path: Path, table: dict[str, dict], command: str) -> None:
    lines = [
        f"# Deploy: ONNX Runtime vs TVM on {TARGET}, batch 1, {THREADS} thread",
        "",
        f"Regenerate: `{command}` (resumable; caches each step in the work dir).",
        "",
        f"Latency in ms. Machine: {_cpu_name()}, {os.cpu_count()} logical cores, SIMD {_simd()}; TVM target "
        f"`{_target_text()}`. Latency: median of {REPEATS} samples of >= {MIN_SAMPLE_MS:.0f} ms each. Weights "
        "untrained (latency does not depend on them). `ORT ms` is ONNX Runtime timed right after the TVM library "
        "in the same process, and `/ ORT` divides by it. `load` is the 1-minute load average after the step: this "
        "machine is shared (2 cores, other jobs), so absolute figures taken under load are noisy; the ratios less so.",
        "",
        "| network | runtime | levers | ms | ORT ms | / ORT | tuning s | tasks (measured) | compile s | artifact "
        "| load |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arch_id, entry in table.items():
        label, rows = entry["label"], entry["rows"]
        ort_ms = rows["onnxruntime"]["latency_ms"]
        onnx_kib = rows["onnx"]["onnx_bytes"] / 1024
        lines.append(
            f"| {label} `{arch_id}` | ONNX Runtime | | {ort_ms:.3f} | {ort_ms:.3f} | 1.00 | | | | {onnx_kib:.0f} KiB "
            f"onnx | {rows['onnxruntime']['load_avg_1min']:.1f} |"
        )
        lines += [_tvm_row(key, row, ort_ms) for key, row in rows.items() if key.startswith("tvm-")]
    lines += ["", "Networks:", ""]
    lines += [f"- `{arch_id}` {entry['label']}: `{entry['block_string']}`" for arch_id, entry in table.items()]
    lines += ["", *_lever_gains(table), "", _notes()]
    if any(row.get("retimed") for entry in table.values() for row in entry["rows"].values()):
        lines += [
            "",
            "Every latency above was timed again back to back at the end (`--retime`), `load` then; the first "
            "timings, taken right after each build while other steps and jobs ran, are kept in the work dir's "
            "`results.json` as `first_latency_ms`.",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _ratio(row: dict, ort_ms: float) -> float:
    return row["latency_ms"] / row.get("ort_ms_same_run", ort_ms)


def _tvm_row(key: str, row: dict, ort_ms: float) -> str:
    parts = key.removeprefix("tvm-").split("-", 2)
    trials = row.get("trials", 0 if parts[0] == "untuned" else int(parts[1]))
    variant = row.get("variant", parts[2] if len(parts) > 2 else "")
    minutes = row.get("minutes")
    runtime = "TVM untuned" if trials == 0 else f"TVM tuned, {trials} trials"
    runtime += f" within {minutes:g} min" if minutes else ""
    levers = "" if trials == 0 else f"{VARIANT_TEXT[variant]}, {row.get('layout', 'NCHW')}"
    tuning = f"{row['tuning_seconds']:.0f}" if "tuning_seconds" in row else ""
    tasks = f"{row['tasks']} ({row['measured']})" if "tasks" in row else ""
    if row.get("skipped_tasks"):
        tasks += f", {row['skipped_tasks']} short"
    same = row.get("ort_ms_same_run", ort_ms)
    return (
        f"| | {runtime} | {levers} | {row['latency_ms']:.3f} | {same:.3f} | {_ratio(row, ort_ms):.2f} | {tuning} "
        f"| {tasks} | {row['compile_seconds']:.0f} | {row['library_bytes'] / 1024:.0f} KiB .so "
        f"| {row['load_avg_1min']:.1f} |"
    )


def _lever_gains(table: dict[str, dict]) -> list[str]:
    """What each lever gained on its own: the tuned row with it off / the row with every lever on."""
    lines = []
    for entry in table.values():
        rows, ort_ms = entry["rows"], entry["rows"]["onnxruntime"]["latency_ms"]
        for key, row in rows.items():
            for variant in (v for v in VARIANTS if v):
                if not key.endswith(f"-{variant}"):
                    continue
                full = rows.get(key.removesuffix(f"-{variant}"))
                if full is None:
                    continue
                lever = LEVER_OFF[variant]
                gain = _ratio(row, ort_ms) / _ratio(full, ort_ms)
                budget = key.removeprefix("tvm-tuned-").removesuffix(f"-{variant}")
                lines.append(
                    f"- {lever}, {entry['label']}, budget {budget} trials: "
                    f"{gain:.2f}x faster with it than without ({_ratio(row, ort_ms):.2f} -> "
                    f"{_ratio(full, ort_ms):.2f} of ORT)"
                )
    return ["What each lever gained on its own (the same budget with that lever off):", "", *lines] if lines else []


def _notes() -> str:
    return (
        "Tuning (`deploy/tuning.py`): MetaSchedule, one task (fused TIR function) at a time, heaviest first; "
        "`FLOPs-weighted trials` gives each task a share of the budget proportional to its FLOPs x calls (at "
        "least 4), `spread evenly` gives every task the same; `prepack` marks the weights layout-free so that "
        "MetaSchedule's RewriteLayout packs them for the kernel, and the packed weights are folded into the "
        "library's constants at build time; `NHWC` lowers the convolutions channels-last (`deploy/layout.py`), so "
        "that depthwise convolutions vectorise over channels. `measured` counts the candidates that built and ran. "
        "Candidates are built in-process and measured with 1 TVM thread. The first tuning in a process also pays "
        "~20-60 s of MetaSchedule start-up. `/ ORT` < 1 means TVM is faster. SIMD: `-mcpu` is LLVM's name for this "
        "host's CPU (`deploy.targets`), so the kernels use its widest vectors (AVX-512 here: the tuned libraries are "
        "full of 512-bit FMAs, `objdump -d model-*.so | grep -c 'vfmadd.*zmm'`). Per-kernel comparison with ORT: "
        "`benchmarks/deploy_breakdown.py` -> `results/deploy-x86_64-breakdown.md`."
    )


def _simd() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    flags = set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    widest = [name for name in ("avx512f", "avx2", "neon", "asimd") if name in flags]
    return widest[0] if widest else "unknown"


def _target_text() -> str:
    target = get_target(TARGET).resolve(num_threads=THREADS)
    return " ".join(f"-{k}={v}" if k != "kind" else str(v) for k, v in target.items())


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the baseline only, trial budget 20")
    parser.add_argument(
        "--trials", nargs="+", default=None, help="trial budgets, TRIALS or TRIALS@MINUTES (default 200 1000)"
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        type=parse_row,
        default=None,
        help="instead of the default plan: the untuned rows, then these NETWORK:BUDGET[:VARIANT] rows in order "
        f"(NETWORK: {', '.join(SHORT_NAMES)}; VARIANT: {', '.join(v for v in VARIANTS if v)})",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="cache folder (default build/bench-deploy[-quick])")
    parser.add_argument("--fresh", action="store_true", help="forget cached steps and start over")
    parser.add_argument("--retime", action="store_true", help="at the end, time every model again back to back")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    budgets = args.trials or (["20"] if args.quick else ["200", "1000"])
    for budget in budgets:
        parse_budget(budget)
    suffix = "-quick" if args.quick else ""
    work_dir = args.work_dir or Path("build") / f"bench-deploy{suffix}"
    if args.fresh:
        shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    out = Path("results") / f"deploy-{TARGET}{suffix}.md"
    # The command as typed, less the flags that do not change the figures (--retime is added once it has run).
    command = " ".join(["python benchmarks/deploy.py", *(a for a in sys.argv[1:] if a not in ("--retime", "--fresh"))])
    for table in run(work_dir, budgets, args.quick, args.rows):
        write_markdown(out, table, command)
    if args.retime:
        retime(work_dir, table, args.quick)
        write_markdown(out, table, command + " --retime")
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
