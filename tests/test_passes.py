"""Networks timed in passes, each keeping its fastest: the pass loop, the profiling dataset, the evaluation cache."""

from __future__ import annotations

import csv
import time

import pytest

from latency_estimator.dataset import MeasurementDataset
from latency_estimator.devices import get_device
from latency_estimator.devices.base import Measurement, PassPlan
from latency_estimator.evaluation import measure_networks
from latency_estimator.passes import Timed, fastest_of_passes
from latency_estimator.profiling import profile_device
from latency_estimator.spec import SubgraphSpec
from search_spaces import ArchConfig, plan_network
from tests.tiny_arch import TINY


def scripted(latencies: dict[str, list[float]], log: list[tuple[str, float]]):
    """A measure function that returns each key's latencies in turn and logs when it was called."""
    remaining = {key: list(values) for key, values in latencies.items()}

    def measure(key: str) -> Measurement:
        log.append((key, time.monotonic()))
        return Measurement(latency_ms=remaining[key].pop(0), spread=0.01, repeats=10)

    return measure


def test_each_key_keeps_its_fastest_pass():
    log: list[tuple[str, float]] = []
    measure = scripted({"a": [1.3, 1.0, 1.1], "b": [2.0, 2.6, 2.4]}, log)
    results = fastest_of_passes(["a", "b"], measure, PassPlan(passes=3, max_passes=3))
    assert {key: (t.fastest.latency_ms, t.passes, t.runner_up_ms) for key, t in results.items()} == {
        "a": (1.0, 3, 1.1),
        "b": (2.0, 3, 2.4),
    }
    assert [key for key, _ in log] == ["a", "b"] * 3  # one pass over all keys after another


def test_measurements_of_a_key_are_at_least_the_gap_apart():
    log: list[tuple[str, float]] = []
    fastest_of_passes(["a", "b"], scripted({"a": [1.0] * 3, "b": [1.0] * 3}, log), PassPlan(3, 0.2, 3))
    times = [t for key, t in log if key == "a"]
    assert all(later - earlier >= 0.2 for earlier, later in zip(times, times[1:]))


def test_a_resumed_run_measures_only_the_passes_still_missing():
    log: list[tuple[str, float]] = []
    done = {"a": Timed(Measurement(0.9, 0.01, 10), 3, 0.95), "b": Timed(Measurement(2.5, 0.01, 10), 1)}
    saved = []
    results = fastest_of_passes(
        ["a", "b"], scripted({"b": [2.2, 2.7]}, log), PassPlan(3, 0, 3), done=done, save=lambda r: saved.append(r)
    )
    assert [key for key, _ in log] == ["b", "b"]
    assert results["a"] == done["a"] and (results["b"].fastest.latency_ms, results["b"].passes) == (2.2, 3)
    assert results["b"].runner_up_ms == 2.5
    assert len(saved) == 2  # after every measurement


def test_a_key_whose_fastest_no_other_pass_confirms_gets_further_passes():
    log: list[tuple[str, float]] = []
    # "steady": its two fastest of 3 agree within 3 %; "noisy": 1.0 stands alone until a 4th pass gives 1.02
    measure = scripted({"steady": [2.0, 2.02, 2.5], "noisy": [1.3, 1.0, 1.2, 1.02, 9.0]}, log)
    results = fastest_of_passes(["steady", "noisy"], measure, PassPlan(3, 0, 6, 0.03))
    assert [key for key, _ in log] == ["steady", "noisy"] * 3 + ["noisy"]
    assert (results["noisy"].fastest.latency_ms, results["noisy"].passes) == (1.0, 4)
    assert results["noisy"].confirmed(0.03) and results["steady"].passes == 3


def test_further_passes_stop_at_the_maximum_and_resume_where_they_stopped():
    log: list[tuple[str, float]] = []
    measure = scripted({"noisy": [1.0, 1.5, 1.4, 1.3, 1.2, 1.25]}, log)
    first = fastest_of_passes(["noisy"], measure, PassPlan(2, 0, 4, 0.03))
    assert first["noisy"].passes == 4 and not first["noisy"].confirmed(0.03)
    again = fastest_of_passes(["noisy"], measure, PassPlan(2, 0, 6, 0.03), done=first)
    assert len(log) == 6 and again["noisy"].passes == 6 and again["noisy"].runner_up_ms == 1.2


def test_a_networks_subgraph_labels_follow_its_fastest_pass(tmp_path):
    arch = ArchConfig.from_dict(TINY)
    dataset = MeasurementDataset.open(tmp_path, device=get_device("sim-npu-p32"))
    dataset.write_metadata()
    blocks = plan_network(arch)
    shares = [1.0 / len(blocks)] * len(blocks)
    for block, share in zip(blocks, shares):
        spec = SubgraphSpec.from_block(block, arch)
        dataset.append_subgraph(spec, Measurement(share, 0.0, 1), round_name="coverage", network=arch.arch_id)
    dataset.append_network(arch, Measurement(1.0, 0.0, 1))
    assert dataset.latency_ms().sum() == pytest.approx(1.0)
    dataset.update_networks({arch.arch_id: Timed(Measurement(0.8, 0.0, 1), 2, 0.81)})
    reloaded = MeasurementDataset.load(tmp_path)
    assert reloaded.latency_ms() == pytest.approx([0.8 / len(blocks)] * len(blocks))
    assert (reloaded.network_rows[0]["passes"], reloaded.network_rows[0]["runner_up_ms"]) == ("2", "0.81")


def test_evaluation_cache_keeps_the_passes_and_is_not_measured_again(tmp_path, monkeypatch):
    device = get_device("cpu-ort", network_passes=2, max_network_passes=0, pass_gap_s=0)
    arch = ArchConfig.from_dict(TINY)
    cache = tmp_path / "measured.csv"
    first = measure_networks(device, [("tiny", "test", arch)], cache=cache)
    assert first[arch.arch_id][1] == 2 and ",2," in cache.read_text().splitlines()[1]
    calls = []
    monkeypatch.setattr(device, "measure_network", lambda a: calls.append(a) or Measurement(1.0, 0.0, 1))
    again = measure_networks(device, [("tiny", "test", arch)], cache=cache)
    cached = again[arch.arch_id][0].latency_ms
    assert not calls and cached == pytest.approx(first[arch.arch_id][0].latency_ms, rel=1e-5)  # 6 digits kept


def test_a_dataset_from_before_passes_is_upgraded_in_place(tmp_path):
    device = get_device("sim-npu-p32")
    profile_device(device, samples=20, networks=2, directory=tmp_path)
    current = MeasurementDataset.load(tmp_path)
    for name, columns in (("subgraphs.csv", ("network",)), ("networks.csv", ("passes", "runner_up_ms"))):
        with open(tmp_path / name, newline="") as handle:
            rows = list(csv.DictReader(handle))
        older = [field for field in rows[0] if field not in columns]
        with open(tmp_path / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=older, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    upgraded = MeasurementDataset.load(tmp_path)
    assert upgraded.rows == current.rows and upgraded.network_rows == current.network_rows
    assert (
        (tmp_path / "networks.csv").read_text().startswith("arch_id,latency_ms,spread,repeats,passes,runner_up_ms,arch")
    )
    more = profile_device(device, samples=25, networks=2, directory=tmp_path)  # appends under the new header
    assert len(MeasurementDataset.load(tmp_path).rows) == len(more.rows) == 25


def test_rows_of_a_network_interrupted_mid_profile_are_dropped_on_reopening(tmp_path):
    arch = ArchConfig.from_dict(TINY)
    dataset = MeasurementDataset.open(tmp_path, device=get_device("sim-npu-p32"))
    dataset.write_metadata()
    block = plan_network(arch)[0]
    spec = SubgraphSpec.from_block(block, arch)
    dataset.append_subgraph(spec, Measurement(0.1, 0.0, 1), round_name="coverage")  # timed alone: kept
    dataset.append_subgraph(spec, Measurement(0.1, 0.0, 1), round_name="coverage", network=arch.arch_id)
    reopened = MeasurementDataset.load(tmp_path)  # no row for the network itself: its profile never finished
    assert [row["network"] for row in reopened.rows] == [""]
    assert len(MeasurementDataset.load(tmp_path).rows) == 1  # and the file says so too
