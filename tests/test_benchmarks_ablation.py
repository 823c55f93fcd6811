"""benchmarks/ablation.py and benchmarks/memory_budget.py end to end, in quick mode, as a user runs them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from nas.datasets import FASHION_MNIST_DIR

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not FASHION_MNIST_DIR.exists(), reason=f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR}"
)


def _run(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "benchmarks" / script), "--quick", "--tries", "1", *args]
    command += ["--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path / "results")]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _trials(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_ablation_quick_writes_the_report_and_resumes(tmp_path: Path) -> None:
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

    again = _run("ablation.py", tmp_path, "--device", "sim-npu-p32")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_trials(results / "ablation-sim-npu-p32-quick-trials.csv")) == len(trials)  # resumed, nothing rerun
    assert "final training of" not in again.stderr  # final trainings come from the cache


@pytest.mark.slow
def test_memory_budget_reports_an_unreachable_budget(tmp_path: Path) -> None:
    # combined.yaml at P=32: every channel count is a multiple of 32, and the 32x32 first stage alone holds more
    # than 55 % of the baseline's (16-channel) peak activation memory (memory.yaml, the default, can go lower).
    result = _run("memory_budget.py", tmp_path, "--device", "sim-npu-p32", "--space", "combined")
    assert result.returncode == 1
    report = (tmp_path / "results" / "memory-budget-sim-npu-p32-quick.md").read_text()
    assert "unreachable" in report and "peak_memory budget" in report
