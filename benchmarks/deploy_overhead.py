"""The per-call overhead of a TVM library: the whole call against its kernels, and the VM's execution modes.

    python benchmarks/deploy_overhead.py MODEL.onnx TUNING_DB [--before LIBRARY.so] [--out results/...md]

Builds the model from the tuning database as deploy does (:func:`deploy.compile_onnx`, trials 0), with ``main``
compiled to native code and as VM bytecode, and times, interleaved in one process (A B C ... A B C ...):
ONNX Runtime's ``run()``, each library through ``time_evaluator`` (and ``--before``, an older library). The
kernels of the bytecode build are replayed in call order from Python (the same buffers), which bounds what
the kernels alone cost; whole call minus replay is the VM's overhead. Samples are the thread's CPU time, so a
shared, loaded core does not count the time the process waited (caches still suffer from the other jobs).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from deploy import compile_onnx, get_target, load_compiled, set_tvm_threads  # noqa: E402
from deploy.lowering import batch1_shape, load_onnx  # noqa: E402
from deploy.session import INPUT_NAME, ort_session  # noqa: E402

RUNS = 100  # calls per sample
ROUNDS = 40


def cpu_ms(call, runs: int) -> float:
    start = time.thread_time()
    call()
    return (time.thread_time() - start) / runs * 1e3


def kernel_calls(vm, x) -> list:
    """(packed function, arguments) of every kernel one call of a bytecode ``main`` runs, in order."""
    calls: list = []

    def instrument(func, symbol, before, ret, *args) -> int:  # noqa: ANN001
        if before and not str(symbol).startswith("vm."):
            calls.append((func, list(args)))
        return 0

    vm.set_instrument(instrument)
    vm["main"](x)
    return calls


def instruction_counts(executable) -> collections.Counter:
    """How many of each VM instruction a bytecode ``main`` runs (a kernel call counts as ``kernel``)."""
    text = executable.as_text()
    body = text[text.index("@main") :].split("\n\n")[0].splitlines()[1:]
    counts: collections.Counter = collections.Counter()
    for line in body:
        words = line.split()
        if words and words[0] == "call":
            counts[words[1] if words[1].startswith("vm.") else "kernel"] += 1
        elif words:
            counts[words[0]] += 1
    return counts


def main() -> int:
    import tvm
    from tvm import relax

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("tuning_db", type=Path)
    parser.add_argument("--before", type=Path, help="an older library of the same model to time alongside")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--out", type=Path, default=Path("results") / "deploy-x86_64-overhead.md")
    args = parser.parse_args()
    shape = batch1_shape(load_onnx(args.model))
    set_tvm_threads(1)
    dev = tvm.cpu(0)
    data = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    x = tvm.runtime.tensor(data, dev)
    builds = {
        mode: compile_onnx(args.model, target="x86_64", tuning_db=args.tuning_db, exec_mode=mode)
        for mode in ("compiled", "bytecode")
    }
    vms = {f"TVM, main {mode}": build.vm() for mode, build in builds.items()}
    if args.before is not None:
        target = get_target("x86_64")
        before = load_compiled(args.before, target=target.name, tvm_target=target.resolve(), input_shape=shape)
        vms[f"TVM, before (`{args.before.name}`)"] = before.vm()
    session = ort_session(args.model, num_threads=1)
    feed = {INPUT_NAME: data}
    reference = session.run(None, feed)[0]
    parity = {name: float(np.abs(vm["main"](x).numpy() - reference).max()) for name, vm in vms.items()}
    kernels = kernel_calls(relax.VirtualMachine(builds["bytecode"].module, dev), x)
    counts = {"bytecode build": instruction_counts(builds["bytecode"].module)}
    if args.before is not None:
        counts["before"] = instruction_counts(before.module)
    evaluators = {name: vm.time_evaluator("main", dev, number=RUNS, repeat=1) for name, vm in vms.items()}

    def replay() -> None:
        for _ in range(RUNS):
            for func, call_args in kernels:
                func(*call_args)

    def ort() -> None:
        for _ in range(RUNS):
            session.run(None, feed)

    samples: dict[str, list[float]] = {"ONNX Runtime": [], **{name: [] for name in vms}, "kernels replayed": []}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        samples["ONNX Runtime"].append(cpu_ms(ort, RUNS))
        for name, evaluator in evaluators.items():
            samples[name].append(cpu_ms(lambda e=evaluator: e(x), RUNS))
        samples["kernels replayed"].append(cpu_ms(replay, RUNS))
    load = max(load, os.getloadavg()[0])
    write_report(args, samples, parity, len(kernels), load, counts)
    print(args.out)
    return 0


def write_report(
    args,
    samples: dict[str, list[float]],
    parity: dict[str, float],
    kernels: int,
    load: float,
    counts: dict[str, collections.Counter],
) -> None:
    medians = {name: float(np.median(values)) for name, values in samples.items()}
    ort, replay = medians["ONNX Runtime"], medians["kernels replayed"]
    lines = [
        f"# Per-call overhead of the TVM library: `{args.model.parent.name}` with `{args.tuning_db.name}`",
        "",
        f"Regenerate: `python benchmarks/deploy_overhead.py {args.model} {args.tuning_db}"
        + (f" --before {args.before}" if args.before else "")
        + "` (one thread; pin it, e.g. `OMP_NUM_THREADS=1 TVM_NUM_THREADS=1 TVM_BIND_THREADS=0 taskset -c 0`).",
        "",
        f"Median ms per call over {args.rounds} interleaved rounds of {RUNS} calls, thread CPU time (load average "
        f"up to {load:.1f}: a shared core; compare the ratios). `kernels replayed`: the {kernels} kernels of one "
        "call, called in order from Python with the same buffers (Python's own call cost included, so an upper "
        "bound of the kernels alone); `overhead` = whole call - replay.",
        "",
        "| runtime | ms | / ORT | overhead ms | overhead share | max abs diff vs ORT |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, ms in medians.items():
        overhead = "" if name in ("ONNX Runtime", "kernels replayed") else f"{ms - replay:.4f}"
        share = "" if not overhead else f"{(ms - replay) / ms * 100:.1f} %"
        diff = f"{parity[name]:.1e}" if name in parity else ""
        lines.append(f"| {name} | {ms:.4f} | {ms / ort:.3f} | {overhead} | {share} | {diff} |")
    lines += ["", "VM instructions one call of the bytecode `main` runs:", ""]
    for name, count in counts.items():
        detail = ", ".join(f"{op} {n}" for op, n in count.most_common())
        lines.append(f"- {name}: {sum(count.values())} ({detail})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
