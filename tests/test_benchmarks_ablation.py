"""benchmarks/ablation.py and benchmarks/memory_budget.py end to end, in quick mode, as a user runs them."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks._ceiling import MeasuredCache, fastest, first_holding, share_of_ceiling
from latency_estimator import get_device
from nas.datasets import FASHION_MNIST_DIR
from search_spaces import load_space, shipped_space_path

REPO = Path(__file__).resolve().parents[1]

needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST_DIR.exists(), reason=f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR}"
)


# ----- the ceiling rule, on made-up numbers ---------------------------------------------------------------------
def test_the_ceiling_is_the_first_candidate_holding_the_accuracy_and_slower_ones_are_not_trained() -> None:
    accuracy = {"fastest": 0.80, "second": 0.866, "third": 0.873, "fourth": 0.90}  # baseline 0.877, slack 0.005
    trained: list[str] = []

    def train(name: str) -> float:
        trained.append(name)
        return accuracy[name]

    ceiling, scored = first_holding(list(accuracy), train, floor=0.877 - 0.005)
    assert ceiling == "third"  # "fourth" is more accurate, but slower: the ceiling is the fastest that holds
    assert scored == trained == ["fastest", "second", "third"]


def test_no_ceiling_when_no_candidate_holds_and_every_one_is_trained() -> None:
    ceiling, scored = first_holding([0.5, 0.6, 0.7], lambda acc: acc, floor=0.872)
    assert ceiling is None
    assert scored == [0.5, 0.6, 0.7]


def test_candidates_are_ordered_by_latency_with_ties_broken_by_arch_id() -> None:
    space = load_space(shipped_space_path("combined"), parallelism_factor=32)
    rng = np.random.default_rng(0)
    archs = list({a.arch_id: a for a in (space.sample(rng) for _ in range(20))}.values())[:5]
    latencies = [0.3, 0.1, 0.2, 0.1, 0.5]
    order = fastest(archs, latencies, 4)
    tied = sorted([1, 3], key=lambda i: archs[i].arch_id)
    assert order == [*tied, 2, 0]
    assert fastest(list(reversed(archs)), list(reversed(latencies)), 4) == [4 - i for i in order]  # same networks


def test_share_of_the_ceiling_reduction() -> None:
    assert share_of_ceiling(-0.18, -0.20) == pytest.approx(0.9)
    assert share_of_ceiling(-0.25, -0.20) == pytest.approx(1.25)  # a winner faster than its ceiling
    assert share_of_ceiling(-0.05, 0.02) is None  # a ceiling slower than the baseline leaves nothing to reach


def test_measured_latencies_are_kept_so_a_rerun_ranks_by_the_same_numbers(tmp_path: Path) -> None:
    space = load_space(shipped_space_path("combined"), parallelism_factor=32)
    archs = [space.sample(np.random.default_rng(seed)) for seed in range(3)]
    path = tmp_path / "ceiling-measured-sim-npu-p32.json"
    first = MeasuredCache(path, "sim-npu-p32").measure(archs)
    assert first == [get_device("sim-npu-p32").measure_network(a).latency_ms for a in archs]
    path.write_text(path.read_text().replace(str(first[0]), "123.0"))  # a rerun reads the file, not the device
    assert MeasuredCache(path, "sim-npu-p32").measure(archs) == [123.0, *first[1:]]


def _run(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "benchmarks" / script), "--quick", "--tries", "1", *args]
    command += ["--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path / "results")]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _with_estimator(tmp_path: Path, estimators: Path) -> None:
    """Give the work folder under ``tmp_path`` the sim-npu-p32 estimator that the script would build on its first run
    (obtain_estimator's, from :func:`sim_npu_p32_estimators`): the run's one build, not one more per script."""
    (tmp_path / "work" / "estimators").mkdir(parents=True)
    (tmp_path / "work" / "estimators" / "sim-npu-p32").symlink_to(estimators / "sim-npu-p32")


def _trials(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@needs_fashion_mnist
@pytest.mark.slow
def test_ablation_quick_writes_the_report_and_resumes(tmp_path: Path, sim_npu_p32_estimators: Path) -> None:
    _with_estimator(tmp_path, sim_npu_p32_estimators)
    first = _run("ablation.py", tmp_path, "--device", "sim-npu-p32")
    assert first.returncode == 0, first.stderr[-3000:]
    results = tmp_path / "results"
    report = (results / "ablation-sim-npu-p32-quick.md").read_text()
    for row in ("| baseline |", "| V1 |", "| V2 |", "| V3 |"):
        assert row in report
    assert "benchmarks/ablation.py --device sim-npu-p32 --dataset fashion-mnist --quick" in report
    assert (results / "ablation-sim-npu-p32-quick.png").stat().st_size > 0
    trials = _trials(results / "ablation-sim-npu-p32-quick-trials.csv")
    assert {t["variant"] for t in trials} == {"V1", "V2", "V3"}
    _check_ceiling_section(report)
    assert (tmp_path / "work" / "quick-state" / "ceiling-measured-sim-npu-p32.json").exists()

    again = _run("ablation.py", tmp_path, "--device", "sim-npu-p32")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_trials(results / "ablation-sim-npu-p32-quick-trials.csv")) == len(trials)  # resumed, nothing rerun
    assert "final training of" not in again.stderr  # final trainings come from the cache
    assert "measuring" not in again.stderr  # so do the ceiling candidates' measured latencies
    assert _section(report) == _section((results / "ablation-sim-npu-p32-quick.md").read_text())


def _section(report: str) -> str:
    return report.split("## Iso-accuracy ceiling")[1].split("\n## ")[0]


def _check_ceiling_section(report: str) -> None:
    """Quick mode: 3 candidates per variant, trained fastest first until one holds; none after it is trained."""
    section = _section(report)
    for variant in ("V1", "V2", "V3"):
        summary = re.search(rf"^\| {variant} \|.*$", section, re.MULTILINE).group(0)
        table = section.split(f"{variant} (")[1].split("\n\n")[1]
        outcomes = [row.split(" | ")[5] for row in table.splitlines()[2:]]
        assert len(outcomes) == 3
        if "no ceiling found among the 3 fastest" in summary:
            assert all(o.startswith("fails the accuracy") for o in outcomes)
            continue
        assert "% of the ceiling" in summary or "no winner" in summary or "not faster" in summary
        first = next(i for i, o in enumerate(outcomes) if o.startswith("**ceiling**"))
        assert all(o.startswith("fails the accuracy") for o in outcomes[:first])
        assert all(o.startswith("not trained: slower than the ceiling") for o in outcomes[first + 1 :])
    assert "Target (issue 14): the V3 winner reaches at least 90%" in section


@needs_fashion_mnist
@pytest.mark.slow
def test_memory_budget_reports_an_unreachable_budget(tmp_path: Path, sim_npu_p32_estimators: Path) -> None:
    _with_estimator(tmp_path, sim_npu_p32_estimators)
    # combined.yaml at P=32: every channel count is a multiple of 32, and the 32x32 first stage alone holds more
    # than 55 % of the baseline's (16-channel) peak activation memory (memory.yaml, the default, can go lower).
    result = _run("memory_budget.py", tmp_path, "--device", "sim-npu-p32", "--space", "combined")
    assert result.returncode == 1
    report = (tmp_path / "results" / "memory-budget-sim-npu-p32-quick.md").read_text()
    assert "unreachable" in report and "peak_memory budget" in report


def test_the_shortlist_tries_the_search_front_first_then_the_rest_above_the_floor() -> None:
    import optuna

    from benchmarks.ablation import shortlist
    from nas.search import TrialRow

    space = load_space(shipped_space_path("combined"), parallelism_factor=32)
    rng = np.random.default_rng(0)
    archs = list({a.arch_id: a for a in (space.sample(rng) for _ in range(20))}.values())[:4]
    # (search accuracy, estimated ms): 0 and 2 are the front; 1 is dominated but above the floor, 3 below it.
    scores = [(0.77, 0.10), (0.80, 0.13), (0.81, 0.12), (0.70, 0.15)]
    study = optuna.create_study(directions=["maximize", "minimize"])
    pool = []
    for number, (arch, (accuracy, ms)) in enumerate(zip(archs, scores, strict=True)):
        attrs = {"arch": arch.to_dict(), "latency_ms": ms, "params": 1, "peak_memory_kib": 1.0}
        study.add_trial(optuna.trial.create_trial(values=[accuracy, ms], user_attrs=attrs))
        row = TrialRow(number, arch.arch_id, "", "COMPLETE", "", accuracy, None, None, ms, 1, 1.0, 1.0, True, False)
        pool.append((row, arch))
    order = [row.number for row, _ in shortlist(pool, study, floor=0.79)]
    assert order == [0, 2, 1]  # the front by latency (0 is below the floor: a short training under-rates it)
