"""benchmarks/latency_estimator.py: a rerun keeps the sizes its data were measured with."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "latency_estimator.py"
spec = importlib.util.spec_from_file_location("latency_estimator_benchmark", SCRIPT)
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)

DEFAULTS = {"samples": 3000, "models": 100, "networks": 36}


def _args(**given) -> argparse.Namespace:
    return argparse.Namespace(device="cpu-tvm", **{name: given.get(name) for name in DEFAULTS})


def test_a_first_run_takes_the_sizes_given_or_the_defaults_and_records_them(tmp_path):
    state = benchmark.State(tmp_path / "state.json")
    sizes = benchmark.run_sizes(argparse.ArgumentParser(), _args(models=30), state, DEFAULTS)
    assert sizes == {"samples": 3000, "models": 30, "networks": 36}
    assert benchmark.State(tmp_path / "state.json").get("sizes") == sizes


def test_a_rerun_defaults_to_the_recorded_sizes_and_refuses_others(tmp_path, capsys):
    state = benchmark.State(tmp_path / "state.json")
    state.set("sizes", {"samples": 300, "models": 30, "networks": 8})
    assert benchmark.run_sizes(argparse.ArgumentParser(), _args(), state, DEFAULTS)["models"] == 30
    with pytest.raises(SystemExit):
        benchmark.run_sizes(argparse.ArgumentParser(), _args(models=40), state, DEFAULTS)
    assert "cpu-tvm's data were measured with --models 30; add --fresh to start over" in capsys.readouterr().err
