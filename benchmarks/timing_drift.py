"""How steady is this machine? Whole networks timed round after round for minutes, and what that means for timing.

    python benchmarks/timing_drift.py --device cpu-ort --minutes 4     # on a quiet machine

Times the baseline, the reference networks and ``--sampled`` networks from
the shipped spaces with the device's own ``measure_network`` (one timing
window each), round after round, for ``--minutes``. Reports:

* each network's spread over time (median, min, max, coefficient of variation);
* the machine-wide slowdown of every round (geometric mean over the networks
  of latency / the network's median) and how long its slow episodes last;
* how often two estimates of the same network agree within ±10 %: single
  windows taken at random times, and the fastest of K windows spaced S
  seconds apart (what ``latency_estimator.passes`` does), from the same trace.

Writes ``results/timing-drift.md``, ``.png`` (the slowdown over time) and the
raw trace ``results/timing-drift.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from latency_estimator.devices import get_device  # noqa: E402
from latency_estimator.networks import reference_networks, searchable_spaces  # noqa: E402
from search_spaces import baseline_arch  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
PASSES = (3, 5, 7)
GAPS_S = (8, 16, 32)
DRAWS = 400  # random pairs of estimates per row of the repeatability table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu-ort")
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--sampled", type=int, default=12, help="networks sampled from the shipped spaces")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    device = get_device(args.device)
    if device.deterministic:
        parser.error(f"{device.name} is a simulation: it has no timing to drift")
    networks = trace_networks(device.parallelism_factor, args.sampled, args.seed)
    trace = record(device, networks, minutes=args.minutes)
    (RESULTS / "timing-drift.json").write_text(json.dumps(trace) + "\n")
    command = f"python benchmarks/timing_drift.py --device {device.name} --minutes {args.minutes:g}"
    command += f" --sampled {args.sampled} --seed {args.seed}"
    report = write_report(trace, device, command)
    print(f"report written to {report}")
    return 0


def trace_networks(parallelism_factor: int, sampled: int, seed: int) -> dict:
    networks = {"baseline": baseline_arch(parallelism_factor=parallelism_factor), **reference_networks()}
    spaces = searchable_spaces(parallelism_factor)
    rng = np.random.default_rng(seed)
    for i in range(sampled):
        arch = spaces[i % len(spaces)].sample(rng)
        networks[arch.arch_id] = arch
    return networks


def record(device, networks: dict, *, minutes: float) -> dict:
    """Round after round over every network until ``minutes`` have passed: {names, t (s, per round), ms}."""
    from tqdm import tqdm

    names, rounds, ms = list(networks), [], []
    start = time.monotonic()
    with tqdm(total=round(minutes * 60), desc=f"timing {len(names)} networks on {device.name}", unit="s") as bar:
        while time.monotonic() - start < minutes * 60:
            rounds.append(time.monotonic() - start)
            ms.append([device.measure_network(networks[name]).latency_ms for name in names])
            bar.update(min(bar.total, round(time.monotonic() - start)) - bar.n)
    return {"device": device.name, "names": names, "t": rounds, "ms": ms, "cpu_model": device.metadata()["cpu_model"]}


def within(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a / b - 1) <= 0.10))


def repeatability(ms: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> list[tuple[str, float]]:
    """(how, share of networks whose two estimates agree within ±10 %) for single windows and fastest-of-K."""
    rounds = len(t)
    round_s = float(np.median(np.diff(t)))
    rows = []
    shares = []
    for _ in range(DRAWS):
        a, b = rng.choice(rounds, 2, replace=False)
        shares.append(within(ms[a], ms[b]))
    rows.append(("one window, two random times", float(np.mean(shares))))
    for passes in PASSES:
        for gap_s in GAPS_S:
            step = max(1, round(gap_s / round_s))
            span = (passes - 1) * step
            if span >= rounds:
                continue
            shares = []
            for _ in range(DRAWS):
                a, b = rng.integers(0, rounds - span, 2)
                shares.append(within(ms[a : a + span + 1 : step].min(0), ms[b : b + span + 1 : step].min(0)))
            rows.append((f"fastest of {passes} windows ~{step * round_s:.0f} s apart", float(np.mean(shares))))
    return rows


def episodes(slow: np.ndarray, t: np.ndarray) -> list[float]:
    """Lengths in seconds of the runs of consecutive slow rounds."""
    lengths, start = [], None
    for i, is_slow in enumerate([*slow, False]):
        if is_slow and start is None:
            start = i
        elif not is_slow and start is not None:
            end = t[i] if i < len(t) else t[-1] + np.median(np.diff(t))
            lengths.append(float(end - t[start]))
            start = None
    return lengths


def write_report(trace: dict, device, command: str) -> Path:
    names, t, ms = trace["names"], np.array(trace["t"]), np.array(trace["ms"])  # ms: rounds x networks
    relative = ms / np.median(ms, axis=0)
    slowdown = np.exp(np.log(relative).mean(axis=1))
    slow = slowdown > 1.10
    lengths = episodes(slow, t)
    rows = repeatability(ms, t, np.random.default_rng(0))
    plot(t, slowdown, RESULTS / "timing-drift.png", device.name)
    cv = ms.std(0) / ms.mean(0)
    lines = [
        f"# Timing drift on {device.name}",
        "",
        f"{device.profile.description}. Measured on {trace['cpu_model']}.",
        "",
        f"Regenerate: `{command}` (raw trace: `results/timing-drift.json`).",
        "",
        f"{len(names)} networks timed round after round with the device's `measure_network` (one timing window "
        f"each: the {device.settings.percentile:g}th percentile of samples over at least "
        f"{device.settings.min_window_ms:g} ms): {len(t)} rounds in {t[-1] + np.median(np.diff(t)):.0f} s, "
        f"one round every {np.median(np.diff(t)):.1f} s.",
        "",
        "## The machine's speed over time",
        "",
        f"- rounds in which the networks ran more than 10 % slower than their medians (geometric mean): "
        f"{slow.mean():.0%}; {len(lengths)} such episodes, lasting "
        + (f"{min(lengths):.0f}-{max(lengths):.0f} s (median {np.median(lengths):.0f} s)" if lengths else "-"),
        f"- slowdown of the rounds: median {np.median(slowdown):.2f}, 90th percentile "
        f"{np.percentile(slowdown, 90):.2f}, max {slowdown.max():.2f}",
        "- plot: `results/timing-drift.png`",
        "",
        "## How often two estimates of a network agree within ±10 %",
        "",
        "| estimate | networks within ±10 % of each other |",
        "|---|---|",
        *(f"| {how} | {share:.1%} |" for how, share in rows),
        "",
        "Each row draws 400 pairs of estimates at random starting rounds from the same trace. The devices time",
        "whole networks as the fastest of `network_passes` windows `pass_gap_s` apart (`latency_estimator/passes.py`).",
        "",
        "## Networks",
        "",
        "| network | median ms | min ms | max ms | CV |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {np.median(ms[:, i]):.4f} | {ms[:, i].min():.4f} | {ms[:, i].max():.4f} | {cv[i]:.3f} |"
            for i, name in enumerate(names)
        ),
        "",
    ]
    path = RESULTS / "timing-drift.md"
    path.write_text("\n".join(lines))
    return path


def plot(t: np.ndarray, slowdown: np.ndarray, path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(t, slowdown, lw=1.2)
    ax.axhline(1.10, color="tab:red", ls="--", lw=0.8, label="10 % slower")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("latency / median\n(geometric mean)")
    ax.set_title(f"{device}: every network of the trace, round after round")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
