"""The data-layout lever on its own: TVM tuned in NCHW and in NHWC against ONNX Runtime, at one trial budget.

    python benchmarks/deploy_layout.py --network baseline --trials 300 1000
    python benchmarks/deploy_layout.py --network fused-ibn --trials 300

For each budget and layout (``deploy.layout.LAYOUTS``) the network (``benchmarks/deploy.py``'s, untrained
weights) is tuned with every other lever on (weight prepacking, FLOPs-weighted trials) into
``<work-dir>/<network>/db-<layout><trials>``, a larger budget going on from the database of the next smaller
one (the tuning seconds count only the trials this run added), and built as VM bytecode (so that
``benchmarks/deploy_breakdown.py`` can time its kernels: ``<work-dir>/<network>/<layout><trials>-bc.so``).
Then the libraries are timed in ``--rounds`` rounds, each library followed by ONNX Runtime in the same
process, and each ratio is the median over the rounds of TVM / the ORT run right after it. Parity: the largest
difference from ONNX Runtime over every output, 4 random images. Appends the rows to
``results/deploy-x86_64-layout.md``'s table (a row already there for the same network, budget and layout is
replaced). A database or library already in the work dir is reused: delete it to tune again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.deploy import SHORT_NAMES, THREADS, _cpu_name, export_step, networks  # noqa: E402
from deploy import compile_onnx, get_target, load_compiled, time_compiled, time_onnxruntime  # noqa: E402
from deploy.compile import EXEC_MODES  # noqa: E402
from deploy.layout import LAYOUTS  # noqa: E402
from deploy.lowering import batch1_shape  # noqa: E402
from deploy.session import ort_session  # noqa: E402

logger = logging.getLogger("benchmarks.deploy_layout")

TARGET = "x86_64"
ROUNDS = 5  # timing rounds; each times every library and ORT after it
REPEATS = 15  # samples per timing; the median is taken
MIN_SAMPLE_MS = 30.0
OUT = Path("results") / f"deploy-{TARGET}-layout.md"
WORK_DIR = Path("build") / "deploy-layout"


def tuned_library(folder: Path, trials: int, layout: str, exec_mode: str = "bytecode") -> tuple[Path, dict]:
    """The library (``exec_mode``) of the network in ``folder`` tuned with ``trials`` in ``layout``, and its tuning
    facts; a database already tuned with ``trials`` only builds it."""
    name = f"{layout.lower()}{trials}"
    library = folder / (f"{name}-bc.so" if exec_mode == "bytecode" else f"{name}.so")
    facts_file = folder / f"{name}.json"
    if library.is_file() and facts_file.is_file():
        return library, json.loads(facts_file.read_text())
    database = folder / f"db-{name}"
    earlier = sorted(
        (int(p.name.removeprefix(f"db-{layout.lower()}")), p)
        for p in folder.glob(f"db-{layout.lower()}*")
        if p.name.removeprefix(f"db-{layout.lower()}").isdigit()
        and int(p.name.removeprefix(f"db-{layout.lower()}")) < trials
    )
    if not database.exists() and earlier:
        shutil.copytree(earlier[-1][1], database)  # the tuning goes on where the smaller budget stopped
    compiled = compile_onnx(
        folder / "model.onnx",
        target=TARGET,
        tuning_trials=trials,
        tuning_db=database,
        layout=layout,
        num_threads=THREADS,
        exec_mode=exec_mode,
    )
    compiled.export_library(library)
    if facts_file.is_file():  # built from a database tuned before: its tuning facts stand
        return library, json.loads(facts_file.read_text())
    facts = {
        "tuning_seconds": round(compiled.tuning.seconds, 1),
        "measured": compiled.tuning.measured,
        "tasks": compiled.tuning.tasks,
        "continued_from": earlier[-1][1].name if earlier else None,
    }
    facts_file.write_text(json.dumps(facts))
    return library, facts


def max_difference(compiled, model: Path, shape: tuple[int, ...]) -> float:
    """The largest |TVM - ORT| over every output of 4 random images."""
    batch = np.random.default_rng(1).standard_normal((4, *shape[1:]), dtype=np.float32)
    session = ort_session(model, num_threads=THREADS)
    expected = [np.concatenate(v) for v in zip(*(session.run(None, {"input": x[None]}) for x in batch))]
    return max(float(np.abs(got - want).max()) for got, want in zip(compiled.run_outputs(batch), expected))


def time_interleaved(
    libraries: dict[str, Path], model: Path, shape: tuple[int, ...], rounds: int = ROUNDS
) -> dict[str, dict]:
    """Per library: median TVM ms, median ORT ms (the runs right after it) and median TVM / ORT over the rounds."""
    host = get_target(TARGET).resolve(num_threads=THREADS)
    compiled = {
        key: load_compiled(p, target=TARGET, tvm_target=host, input_shape=shape) for key, p in libraries.items()
    }
    samples: dict[str, list[tuple[float, float]]] = {key: [] for key in libraries}
    for _ in range(rounds):
        for key, library in compiled.items():
            tvm_ms = time_compiled(library, repeats=REPEATS, min_sample_ms=MIN_SAMPLE_MS, num_threads=THREADS)
            ort_ms = time_onnxruntime(
                model, input_shape=shape, repeats=REPEATS, min_sample_ms=MIN_SAMPLE_MS, num_threads=THREADS
            )
            samples[key].append((tvm_ms.median_ms, ort_ms.median_ms))
    return {
        key: {
            "tvm_ms": float(np.median([t for t, _ in pairs])),
            "ort_ms": float(np.median([o for _, o in pairs])),
            "ratio": float(np.median([t / o for t, o in pairs])),
            "rounds": [round(t / o, 3) for t, o in pairs],
            "max_diff": max_difference(compiled[key], model, shape),
        }
        for key, pairs in samples.items()
    }


def write_rows(rows: dict[tuple[str, int, str], str], command: str, rounds: int = ROUNDS) -> None:
    """Merge ``rows`` ((network, trials, layout) -> table line) into :data:`OUT`."""
    kept: dict[tuple[str, int, str], str] = {}
    commands = [f"- `{command}`"]
    if OUT.is_file():
        for line in OUT.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if line.startswith("| ") and len(cells) > 3 and cells[1].isdigit():
                kept[(cells[0], int(cells[1]), cells[2])] = line
            elif line.startswith("- `python benchmarks/deploy_layout.py") and line not in commands:
                commands.append(line)
    kept.update(rows)
    lines = [
        f"# Deploy: the data-layout lever, NCHW vs NHWC, on {TARGET}, batch 1, {THREADS} thread",
        "",
        "Regenerate (rows merge; the latest command first):",
        "",
        *commands,
        "",
        f"Machine: {_cpu_text()}, {os.cpu_count()} logical cores. Both layouts tuned with weight prepacking "
        "and FLOPs-weighted trials; `main` is how the VM runs it (bytecode: kernels timeable one by one; compiled: "
        "native code, as deploy ships). Each row's TVM / ORT is the median over "
        f"{rounds} rounds of TVM's median (of {REPEATS} samples of >= {MIN_SAMPLE_MS:.0f} ms) over the ORT "
        "run right after it, all rounds interleaved in one process. The machine is shared (2 cores, other "
        "jobs on the other core), so absolute ms are noisy; the ratios less so. `parity`: max |TVM - ORT| "
        "over every output, 4 random images. `tuning s`: the seconds this budget's tuning took (on top of "
        "the smaller budget's database it went on from, if any).",
        "",
        "| network | trials | layout, main | TVM ms | ORT ms | TVM / ORT | rounds | parity | tuning s "
        "| tasks (measured) |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|---:|",
        *(kept[key] for key in sorted(kept)),
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")


def _cpu_text() -> str:
    """The CPU's name, with its family and model (a virtual machine's name may leave the generation out)."""
    info = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    if "cpu family" not in info or "model" not in info:
        return _cpu_name()
    return f"{_cpu_name()} (family {info['cpu family']}, model {info['model']})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=["baseline", "fused-ibn"], default="baseline")
    parser.add_argument("--trials", type=int, nargs="+", default=[300])
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    parser.add_argument(
        "--exec-mode", choices=EXEC_MODES, default="bytecode", help="how the libraries run main (compiled: as shipped)"
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timing rounds (each: every library, then ORT)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    arch = networks()[SHORT_NAMES[args.network]]
    folder = args.work_dir / args.network
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "model.onnx").is_file():
        export_step(arch, folder)
    model = folder / "model.onnx"
    shape = batch1_shape(onnx.load(str(model)))
    built = {
        (trials, layout): tuned_library(folder, trials, layout, args.exec_mode)
        for trials in args.trials
        for layout in args.layouts
    }
    timed = time_interleaved({key: library for key, (library, _) in built.items()}, model, shape, args.rounds)
    rows = {}
    for (trials, layout), (_, facts) in built.items():
        t = timed[(trials, layout)]
        rows[(args.network, trials, f"{layout}, {args.exec_mode}")] = (
            f"| {args.network} | {trials} | {layout}, {args.exec_mode} | {t['tvm_ms']:.3f} | {t['ort_ms']:.3f} "
            f"| {t['ratio']:.3f} "
            f"| {', '.join(map(str, t['rounds']))} | {t['max_diff']:.1e} | {facts['tuning_seconds']:.0f} "
            f"| {facts['tasks']} ({facts['measured']}) |"
        )
    command = f"python benchmarks/deploy_layout.py --network {args.network} --trials {' '.join(map(str, args.trials))}"
    command += f" --work-dir {args.work_dir}" if args.work_dir != WORK_DIR else ""
    command += f" --rounds {args.rounds}" if args.rounds != ROUNDS else ""
    command += f" --exec-mode {args.exec_mode}" if args.exec_mode != "bytecode" else ""
    write_rows(rows, command, args.rounds)
    logger.info("wrote %s", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
