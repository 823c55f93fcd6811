"""The latency estimator end to end: profile -> train -> predict, files, errors, CLI.

Real devices throughout: the sim-npu simulator (fast, deterministic) and a tiny
ONNX Runtime sample on this CPU.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from latency_estimator.batch import SubgraphBatch
from latency_estimator.build import build_estimator, train_estimator
from latency_estimator.coverage import SubgraphSampler, coverage_for, synthetic_network
from latency_estimator.dataset import MeasurementDataset
from latency_estimator.devices import get_device
from latency_estimator.devices.cpu_ort import _owner
from latency_estimator.errors import EstimatorError
from latency_estimator.estimator import LatencyEstimator, load_estimator
from latency_estimator.evaluation import accuracy_metrics, evaluate_estimator, plot_scatter
from latency_estimator.networks import (
    HEAVY_MB,
    heavy_network,
    reference_networks,
    searchable_spaces,
    shipped_spaces_for,
)
from latency_estimator.profiling import HEAVY_EVERY, network_stream, profile_device
from latency_estimator.regressor import LOSSES, fit_subgraph_model
from latency_estimator.spec import SubgraphSpec
from latency_estimator.subgraph import decompose_arch, weight_mb
from nas.cli.main import main
from search_spaces import ArchConfig, baseline_arch, count_arch, plan_network
from tests.tiny_arch import TINY

SIM = "sim-npu-p16"


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sim-npu-p16")
    build_estimator(SIM, samples=160, networks=6, directory=directory)
    return directory


@pytest.fixture(scope="module")
def sim_estimator(sim_dir):
    return LatencyEstimator.load(sim_dir, device=SIM)


def sampled_archs(count: int, seed: int = 3):
    spaces = searchable_spaces(16)
    rng = np.random.default_rng(seed)
    return [spaces[i % len(spaces)].sample(rng) for i in range(count)]


# ----- profile -> train -> predict ----------------------------------------------------------------------------------
def test_sim_npu_estimator_predicts_unseen_networks_within_10_percent(sim_estimator):
    device = get_device(SIM)
    evaluation = evaluate_estimator(sim_estimator, device, models=20)
    metrics = evaluation.metrics()
    assert metrics.count == 20 + 1 + len(reference_networks())
    assert metrics.within_10pct == 1.0
    assert metrics.kendall_tau > 0.9


def test_prediction_breakdown_sums_to_total_with_overhead(sim_estimator):
    arch = baseline_arch(parallelism_factor=16)
    prediction = sim_estimator.predict(arch)
    assert [part.name for part in prediction.breakdown] == [sg.name for sg in decompose_arch(arch)]
    assert all(part.latency_ms > 0 for part in prediction.breakdown)
    parts = sum(part.latency_ms for part in prediction.breakdown)
    assert prediction.latency_ms == pytest.approx(parts + prediction.overhead_ms)


def test_batched_predict_equals_per_arch_predict(sim_estimator):
    archs = sampled_archs(40) + list(reference_networks().values())
    batched = sim_estimator.predict_many(archs)
    single = np.array([sim_estimator.predict(arch).latency_ms for arch in archs])
    np.testing.assert_allclose(batched, single, rtol=1e-9)
    np.testing.assert_allclose(sim_estimator.predict_many(archs[::-1]), batched[::-1], rtol=1e-9)  # cached pieces


def test_cpu_ort_tiny_profile_train_predict(tmp_path):
    device = _cpu_ort()
    estimator = build_estimator(device, samples=40, networks=3, directory=tmp_path)
    assert estimator.uses_context  # its subgraphs were timed inside networks
    arch = baseline_arch()
    prediction = estimator.predict(arch)
    measured = device.measure_network(arch).latency_ms
    assert 0.2 < prediction.latency_ms / measured < 5  # a 40-sample model on a shared CPU: the right scale only
    assert (tmp_path / "model.json").exists() or list(tmp_path.glob("model-*.json"))


def _cpu_ort():
    """cpu-ort with its networks timed in 2 passes, no further ones and no pause between them (the profile's 7 to
    14 passes 15 s apart would spend minutes waiting)."""
    device = get_device("cpu-ort", network_passes=2, max_network_passes=0, pass_gap_s=0)
    available, reason = device.is_available()
    if not available:
        pytest.skip(reason)
    return device


def test_cpu_ort_times_each_subgraph_inside_the_network():
    arch = ArchConfig.from_dict(TINY)
    profile = _cpu_ort().profile_network(arch)
    assert list(profile.subgraphs) == [subgraph.name for subgraph in decompose_arch(arch)]
    assert all(m.latency_ms > 0 and m.repeats >= 15 for m in profile.subgraphs.values())
    total = sum(m.latency_ms for m in profile.subgraphs.values())
    assert total == pytest.approx(profile.network.latency_ms, rel=1e-9)  # shares add up to the network


def test_a_profiled_node_belongs_to_the_longest_subgraph_name_it_extends():
    names = ["stages.1.1", "stages.1.10", "head.pool", "head.classifier"]
    assert _owner("stages.1.10.expand.act_nchwc", names) == "stages.1.10"
    assert _owner("stages.1.1.project_nchwc", names) == "stages.1.1"
    assert _owner("head.pool_nchwc", names) == "head.pool"
    assert _owner("ReorderOutput", names) is None  # added by ORT: counts for the subgraph before it


def test_in_network_profiling_resumes_and_never_profiles_an_evaluated_network(tmp_path):
    device = _cpu_ort()
    first = profile_device(device, samples=40, directory=tmp_path)
    networks = [arch for arch, _ in first.networks()]
    assert 20 <= len(first.rows) <= 40 and len(first.rows) == sum(len(plan_network(arch)) for arch in networks)
    held_out = {baseline_arch().arch_id} | {arch.arch_id for arch in reference_networks().values()}
    assert not held_out & {arch.arch_id for arch in networks}
    assert {row["passes"] for row in first.network_rows} == {"2"}
    assert {row["network"] for row in first.rows} == {arch.arch_id for arch in networks}
    again = profile_device(device, samples=40, directory=tmp_path)
    assert again.rows == first.rows and again.network_rows == first.network_rows  # nothing measured twice


def test_synthetic_networks_stay_within_the_reference_networks_size():
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = count_arch(synthetic_network(coverage_for(8), rng))
        assert counts.macs <= 150_000_000 and counts.params <= 4_000_000


# ----- profiling data -----------------------------------------------------------------------------------------------
def test_profiling_resumes_and_keeps_what_it_measured(tmp_path):
    device = get_device(SIM)
    first = profile_device(device, samples=30, networks=2, directory=tmp_path)
    rows = list(first.rows)
    again = profile_device(device, samples=30, networks=2, directory=tmp_path)
    assert again.rows == rows  # nothing measured twice
    more = profile_device(device, samples=45, networks=2, directory=tmp_path)
    assert len(more.rows) == 45 and more.rows[:30] == rows
    assert len({SubgraphSpec.from_row(row).key for row in more.rows}) == 45
    metadata = json.loads((tmp_path / MeasurementDataset.META).read_text())
    assert metadata["device"] == SIM and metadata["cpu_model"] and metadata["versions"]["xgboost"]


def test_interrupted_row_is_dropped_and_profiling_goes_on(tmp_path):
    device = get_device(SIM)
    profile_device(device, samples=20, networks=0, directory=tmp_path)
    with (tmp_path / MeasurementDataset.SUBGRAPHS).open("a") as handle:
        handle.write("ibn,8,32")  # a write cut short
    assert len(MeasurementDataset.load(tmp_path).rows) == 20
    resumed = profile_device(device, samples=25, networks=0, directory=tmp_path)
    assert len(resumed.rows) == 25 and len(MeasurementDataset.load(tmp_path).rows) == 25


def test_dataset_of_another_device_is_refused(tmp_path):
    profile_device(get_device(SIM), samples=10, networks=0, directory=tmp_path)
    with pytest.raises(EstimatorError, match="sim-npu-p16"):
        profile_device(get_device("sim-npu-p32"), samples=10, networks=0, directory=tmp_path)


def test_sampler_covers_every_kind_and_resolution_of_the_spaces():
    coverage = coverage_for(16)
    plan = SubgraphSampler(coverage, seed=0).plan(200)
    strata = {spec.stratum for spec in plan}
    assert {spec.stratum for spec in coverage.pool} <= strata
    assert len({spec.key for spec in plan}) == 200
    assert all(spec.subgraph().kind == spec.kind for spec in plan[:40])


# ----- files and errors ---------------------------------------------------------------------------------------------
# ----- the network's weight size as context -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def context_estimator():
    """Trained on the subgraphs of 60 sampled networks, as if timed inside them: in a network of over 8 MB of weights
    every subgraph takes 1.5x its simulated latency (as on a CPU whose caches no longer hold the weights)."""
    device = get_device(SIM)
    subgraphs, latency, context = [], [], []
    for arch in sampled_archs(60, seed=11):
        parts = decompose_arch(arch)
        slow = 1.5 if weight_mb(parts) > 8 else 1.0
        subgraphs += parts
        latency += [device.measure_subgraph(part).latency_ms * slow for part in parts]
        context += [weight_mb(parts)] * len(parts)
    metadata = {"device": SIM, "profile": device.profile.to_dict()}
    return train_estimator(subgraphs, np.array(latency), device_metadata=metadata, network_weight_mb=np.array(context))


def test_subgraphs_timed_inside_networks_see_the_networks_weight_size(context_estimator, sim_estimator):
    assert context_estimator.uses_context and not sim_estimator.uses_context  # sim-npu times subgraphs alone
    parts = decompose_arch(baseline_arch(parallelism_factor=16))
    heavy = context_estimator.subgraph_latency_ms(parts, network_weight_mb=12.0)
    light = context_estimator.subgraph_latency_ms(parts, network_weight_mb=2.0)
    assert np.median(heavy / light) == pytest.approx(1.5, rel=0.1)


def test_batched_predict_with_context_equals_per_arch_predict(context_estimator, tmp_path):
    archs = sampled_archs(40, seed=5) + list(reference_networks().values())
    assert len({weight_mb(decompose_arch(arch)) // 4 for arch in archs}) >= 3  # several weight bins
    batched = context_estimator.predict_many(archs)
    single = np.array([context_estimator.predict(arch).latency_ms for arch in archs])
    np.testing.assert_allclose(batched, single, rtol=1e-9)
    np.testing.assert_allclose(context_estimator.predict_many(archs[::-1]), batched[::-1], rtol=1e-9)
    context_estimator.save(tmp_path)
    loaded = load_estimator(SIM, path=tmp_path)
    assert loaded.uses_context
    np.testing.assert_array_equal(loaded.predict_many(archs), batched)


def test_taking_rows_of_a_batch_equals_the_batch_of_those_subgraphs():
    subgraphs = decompose_arch(baseline_arch(parallelism_factor=16))
    rows = np.array([3, 0, 3, len(subgraphs) - 1])
    taken = SubgraphBatch.of(subgraphs, 16).take(rows)
    built = SubgraphBatch.of([subgraphs[row] for row in rows], 16)
    for name in ("features", "kinds", "op_owner", "op_macs_padded", "op_bytes"):
        np.testing.assert_array_equal(getattr(taken, name), getattr(built, name))


def test_every_sixth_network_profiled_inside_networks_is_a_heavy_one():
    stream = list(itertools.islice(network_stream(8, coverage_for(8), seed=0), 4 * HEAVY_EVERY))
    weights = [weight_mb(decompose_arch(arch)) for arch in stream]
    assert all(weight > HEAVY_MB for weight in weights[::HEAVY_EVERY])
    assert sum(weight > HEAVY_MB for weight in weights) < len(weights) / 2
    spaces = [space for space in shipped_spaces_for(8) if space.name == "channels"]  # never over 9 MB
    assert weight_mb(decompose_arch(heavy_network(spaces, np.random.default_rng(0)))) < HEAVY_MB  # the heaviest


def test_save_load_round_trip(sim_estimator, tmp_path):
    sim_estimator.save(tmp_path)
    loaded = load_estimator(SIM, path=tmp_path)
    archs = sampled_archs(10)
    np.testing.assert_array_equal(loaded.predict_many(archs), sim_estimator.predict_many(archs))
    assert loaded.metadata["prior"] == sim_estimator.metadata["prior"]
    assert (loaded.model.layout, loaded.model.loss) == (sim_estimator.model.layout, sim_estimator.model.loss)
    assert loaded.overhead == sim_estimator.overhead


def test_absolute_loss_follows_typical_timings_where_a_few_are_far_off():
    """Real timings have heavy tails (a run caught in a slow episode). Trained on 450 simulated subgraphs of which
    one in eight is timed 2.5x too slow, the absolute loss predicts 150 others nearer their true latency than the
    squared loss does (median error 3.0 % against 4.5 %)."""
    device = get_device(SIM)
    subgraphs = [spec.subgraph() for spec in SubgraphSampler(coverage_for(16, seed=0), seed=0).plan(600)]
    truth = np.array([device.measure_subgraph(subgraph).latency_ms for subgraph in subgraphs])
    noisy = truth * np.where(np.random.default_rng(0).random(len(truth)) < 0.125, 2.5, 1.0)
    batch, train = SubgraphBatch.of(subgraphs, 16), np.arange(len(truth)) % 4 != 0
    error = {}
    for loss in LOSSES:
        model = fit_subgraph_model(batch, noisy, prior="roofline", layout="single", loss=loss, rows=train)
        error[loss] = np.median(np.abs(model.predict_ms(batch)[~train] / truth[~train] - 1))
    assert error["absolute"] < 0.8 * error["squared"], error


def test_unknown_loss_is_refused(sim_dir):
    dataset = MeasurementDataset.load(sim_dir)
    batch = SubgraphBatch.of([spec.subgraph() for spec in dataset.specs()], dataset.parallelism_factor)
    with pytest.raises(EstimatorError, match="loss must be one of"):
        fit_subgraph_model(batch, dataset.latency_ms(), prior="none", layout="single", loss="huber")


def test_estimator_of_another_device_is_refused(sim_dir):
    with pytest.raises(EstimatorError, match="for device 'sim-npu-p16', not 'sim-npu-p32'"):
        load_estimator("sim-npu-p32", path=sim_dir)


def test_estimator_of_a_changed_profile_is_refused(sim_dir):
    profile = get_device(SIM, clock_mhz=123.0).profile.to_dict()
    with pytest.raises(EstimatorError, match="another profile"):
        LatencyEstimator.load(sim_dir, device=SIM, profile=profile)


def test_missing_estimator_says_how_to_build_one(tmp_path):
    with pytest.raises(EstimatorError, match="edgenas latency profile"):
        load_estimator(SIM, path=tmp_path)


@pytest.mark.parametrize("damage", ["truncate model", "garble model", "garble metadata", "drop metadata key"])
def test_corrupted_estimator_is_refused(sim_estimator, tmp_path, damage):
    sim_estimator.save(tmp_path)
    model = next(tmp_path.glob("model*.json"))
    meta = tmp_path / LatencyEstimator.META_FILE
    if damage == "truncate model":
        model.write_bytes(model.read_bytes()[:100])
    elif damage == "garble model":
        model.write_text("not json at all")
    elif damage == "garble metadata":
        meta.write_text("{ broken")
    else:
        data = json.loads(meta.read_text())
        del data["feature_names"]
        meta.write_text(json.dumps(data))
    with pytest.raises(EstimatorError, match="corrupted"):
        load_estimator(SIM, path=tmp_path)


# ----- evaluation ---------------------------------------------------------------------------------------------------
def test_accuracy_metrics():
    measured = np.array([1.0, 2.0, 3.0, 4.0])
    metrics = accuracy_metrics(np.array([1.04, 2.3, 2.9, 4.0]), measured)
    assert metrics.within_10pct == 0.75 and metrics.within_5pct == 0.75
    assert metrics.rmspe == pytest.approx(np.sqrt((0.04**2 + 0.15**2 + (0.1 / 3) ** 2) / 4))
    assert metrics.kendall_tau == 1.0 and metrics.spearman_rho == 1.0


def test_scatter_plot_is_written(sim_estimator, tmp_path):
    evaluation = evaluate_estimator(sim_estimator, get_device(SIM), models=5)
    path = plot_scatter(evaluation, tmp_path / "scatter.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_reference_networks_are_scaled_to_the_shipped_input():
    networks = reference_networks()
    assert set(networks) == {"mobilenet_v2", "mnasnet_b1", "efficientnet_lite0", "fbnet_b"}
    for arch in networks.values():
        assert (arch.input_channels, arch.resolution, arch.head.num_classes) == (1, 32, 10)
        assert decompose_arch(arch)[-3].out_shape[1:] == (4, 4)


# ----- CLI ----------------------------------------------------------------------------------------------------------
def test_cli_predict_prints_the_breakdown(sim_dir, capsys):
    path = "latency_estimator/reference_networks/mobilenet_v2.yaml"
    assert main(["latency", "predict", "--device", SIM, "--dir", str(sim_dir), path]) == 0
    out = capsys.readouterr().out
    assert "stages.6.0" in out and "head.classifier" in out and "predicted latency on sim-npu-p16" in out


def test_cli_predict_with_another_devices_estimator_is_one_error_line(sim_dir, capsys):
    path = "latency_estimator/reference_networks/mobilenet_v2.yaml"
    assert main(["latency", "predict", "--device", "sim-npu-p32", "--dir", str(sim_dir), path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgenas: error:") and len(err.strip().splitlines()) == 1


def test_cli_predict_accepts_an_onnx_model_and_agrees_with_the_arch(sim_dir, sim_estimator, tmp_path, capsys):
    import onnx

    from latency_estimator.decompose_onnx import decompose_onnx
    from latency_estimator.onnx_graph import arch_model

    arch = reference_networks()["mnasnet_b1"]
    path = tmp_path / "mnasnet.onnx"
    onnx.save(arch_model(arch, seed=0), path)
    from_onnx = sim_estimator.predict_subgraphs(decompose_onnx(path)).latency_ms
    assert from_onnx == pytest.approx(sim_estimator.predict(arch).latency_ms, rel=1e-6)
    assert main(["latency", "predict", "--device", SIM, "--dir", str(sim_dir), str(path)]) == 0
    assert f"{from_onnx:.4f} ms" in capsys.readouterr().out
