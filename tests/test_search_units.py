"""Search pieces that need no training: budgets, settings, samplers, warm-start queueing, result rows."""

from __future__ import annotations

import inspect

import numpy as np
import optuna
import pytest

from nas.search import Budgets, Measured, SearchError, SearchSettings, enqueue_archs, run_search
from nas.search.budgets import check_reachable, feasible_archs, measure, spread_feasible_archs
from nas.search.gp_sampler import BoundedGPSampler, model_trials
from nas.search.records import best_trials
from nas.search.results import settings_command
from nas.search.study import make_pruner, make_sampler
from nas.search.surrogate import hypervolume_gain
from search_spaces import count_arch, load_space, shipped_space_path


def analytic_latency(archs):
    """A stand-in latency (ms) that grows with MACs, for tests of the budget logic alone."""
    return np.array([count_arch(arch).macs / 1e8 for arch in archs])


@pytest.fixture(scope="module")
def space():
    return load_space(shipped_space_path("combined"))


def test_budgets_turn_into_relative_constraints():
    budgets = Budgets(latency_ms=0.5, max_params=1000, max_peak_memory_kb=2.0)
    measured = Measured(latency_ms=0.25, params=1500, peak_activation_bytes=2048)
    assert budgets.constraints(measured) == pytest.approx({"latency": -0.5, "params": 0.5, "peak_memory": 0.0})
    (violation,) = budgets.violations(measured)
    assert violation.budget == "params"
    assert violation.describe() == "params 1,500 params > budget 1,000 params (+50%)"


def test_unset_budgets_are_not_constraints():
    assert Budgets(max_params=10).constraints(Measured(1.0, 5, 10)) == {"params": -0.5}
    assert not Budgets().any()


@pytest.mark.parametrize("field", ["latency_ms", "max_params", "max_peak_memory_kb"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan")])
def test_a_budget_must_be_positive(field, value):
    with pytest.raises(SearchError, match=f"budget `{field}` must be a positive number"):
        Budgets(**{field: value})


def test_an_unreachable_budget_says_so(space):
    budgets = Budgets(max_params=1000)
    with pytest.raises(
        SearchError, match=r"params budget 1,000 params is unreachable in .*combined.yaml: the smallest"
    ):
        check_reachable(space, budgets, analytic_latency, dtype_bytes=1, samples=16)


def test_a_reachable_budget_reports_the_feasible_share(space):
    share = check_reachable(space, Budgets(latency_ms=10.0), analytic_latency, dtype_bytes=1, samples=16)
    assert share == 1.0


def test_feasible_archs_repair_into_a_tight_budget(space):
    budgets = Budgets(max_params=300_000, max_peak_memory_kb=256)
    rng = np.random.default_rng(0)
    archs = feasible_archs(space, budgets, analytic_latency, dtype_bytes=1, count=3, rng=rng)
    assert archs, "the combined space has networks under 300k parameters"
    assert len({a.arch_id for a in archs}) == len(archs)
    for measured in measure(archs, analytic_latency, dtype_bytes=1):
        assert not budgets.violations(measured)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("strategy", "annealing", "unknown strategy 'annealing'; allowed: evolution, tpe, random"),
        ("mode", "oneshot", "unknown mode 'oneshot'; allowed: multishot, zeroshot, hybrid"),
        ("pruner", "asha", "unknown pruner 'asha'"),
        ("trials", 0, "`trials >= 1` must hold"),
        ("population_size", 1, "`population_size >= 2` must hold"),
        ("mutation_prob", 1.5, "`mutation_prob` None or in"),
        ("screen_ratio", 0, "`screen_ratio >= 1` must hold"),
        ("latency_budget_ms", 0.0, "budget `latency_ms` must be a positive number"),
        ("study", "a/b", "`study` a non-empty name"),
    ],
)
def test_bad_settings_are_one_line_errors(field, value, message):
    with pytest.raises(SearchError, match=message) as info:
        SearchSettings(space="s.yaml", device="sim-npu-p32", dataset="digits", **{field: value})
    assert "\n" not in str(info.value)


def test_run_search_defaults_are_the_settings_defaults():
    """run_search documents its keywords by SearchSettings: the two must not drift apart."""
    signature = inspect.signature(run_search)
    defaults = SearchSettings(space="", device="", dataset="")
    for name, parameter in signature.parameters.items():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
        if name in ("warm_start", "progress", "space", "device", "dataset"):
            continue
        expected = getattr(defaults, name)
        if name == "proxy":
            assert parameter.default is None  # None = DEFAULT_PROXY
        else:
            assert parameter.default == expected, name
    assert set(SearchSettings.__dataclass_fields__) <= set(signature.parameters)


def test_settings_command_names_the_cli_flags():
    settings = SearchSettings(
        space="search_spaces/combined.yaml", device="sim-npu-p32", dataset="digits", study="x", max_params=300000
    )
    command = settings_command(settings)
    assert command.startswith("edgenas search --space search_spaces/combined.yaml --device sim-npu-p32")
    assert "--study x" in command and "--max-params 300000" in command and "--trials" not in command


def test_samplers_and_pruners_by_name():
    base = {"space": "s", "device": "d", "dataset": "digits"}
    evolution = make_sampler(SearchSettings(**base, strategy="evolution", population_size=8, mutation_prob=0.2), seed=0)
    assert isinstance(evolution, optuna.samplers.NSGAIISampler)
    assert isinstance(make_sampler(SearchSettings(**base, strategy="tpe"), seed=0), optuna.samplers.TPESampler)
    assert isinstance(make_sampler(SearchSettings(**base, strategy="random"), seed=0), optuna.samplers.RandomSampler)
    assert isinstance(make_pruner(SearchSettings(**base)), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner(SearchSettings(**base, pruner="hyperband")), optuna.pruners.HyperbandPruner)


def test_enqueued_archs_become_the_next_trials(space):
    """The warm-start hook: known architectures are proposed first, with the space's real parameters."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(2)]
    other = load_space(shipped_space_path("baseline"))
    outside = other.resolve({name: c[0] for name, c in other.parameters().items()})
    assert enqueue_archs(study, space, [*archs, outside], source="test") == 2
    for arch in archs:
        trial = study.ask()
        assert space.suggest(trial) == arch
        study.tell(trial, [0.0, 0.0])


def test_the_start_population_spans_the_feasible_latency_range(space):
    """MACs as latency: the all-IBN smallest point is the fastest network, the budget the slowest allowed."""
    budget = float(np.median(analytic_latency([space.sample(np.random.default_rng(i)) for i in range(64)])))
    smallest = space.resolve({n: "ibn" if n.endswith(".block") else min(c) for n, c in space.parameters().items()})
    fastest = float(analytic_latency([smallest])[0])
    archs = spread_feasible_archs(
        space, Budgets(latency_ms=budget), analytic_latency, dtype_bytes=1, count=8, rng=np.random.default_rng(0)
    )
    latencies = np.sort(analytic_latency(archs))
    assert len({a.arch_id for a in archs}) == len(archs) == 8
    assert latencies[0] == pytest.approx(fastest) and latencies[-1] <= budget
    quarters = np.linspace(fastest, budget, 5)
    for low, high in zip(quarters[:-1], quarters[1:]):
        assert ((latencies >= low) & (latencies <= high)).any(), (low, high, latencies)
    assert latencies[-1] >= fastest + 0.8 * (budget - fastest)


def test_model_based_samplers_by_name():
    base = {"space": "s", "device": "d", "dataset": "digits"}
    assert isinstance(make_sampler(SearchSettings(**base, strategy="gp"), seed=0), optuna.samplers.GPSampler)
    with pytest.raises(SearchError, match="strategy 'surrogate' needs the search space"):
        make_sampler(SearchSettings(**base, strategy="surrogate"), seed=0)


def test_hypervolume_gain_of_a_candidate_is_the_area_it_adds():
    """Front (0.5, 2 ms) with reference (0, 4 ms): a point (0.8, 1 ms) adds 0.8 x 1 + (0.8 - 0.5) x 2 = 1.4."""
    front = np.array([[0.5, 2.0]])
    gains = hypervolume_gain(np.array([0.8, 0.4, 0.6]), np.array([1.0, 3.0, 3.0]), front, (0.0, 4.0))
    assert gains == pytest.approx([1.4, 0.0, 0.1])


def test_the_reported_front_is_optunas_best_trials():
    """records.best_trials (no deep copy of the study) picks what Optuna's study.best_trials picks: complete trials
    within the constraints, none dominated; ties both kept; a better but infeasible trial and a running one ignored."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    points = [(0.5, 2.0, 0.0), (0.8, 3.0, 0.0), (0.8, 3.0, 0.0), (0.4, 2.5, 0.0), (0.9, 1.0, 0.5), (0.6, 2.0, -0.1)]
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    for value, latency, violation in points:
        study.add_trial(
            optuna.trial.create_trial(
                values=[value, latency],
                params={"x": value},
                distributions={"x": distribution},
                system_attrs={"constraints:latency": violation},
            )
        )
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING))
    picked = [t.number for t in best_trials(study)]
    assert picked == sorted(t.number for t in study.best_trials) == [1, 2, 5]


def _constrained_trial(number: int, violation: float, x: float | None = None) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(
        values=[float(number), 1.0 + number % 3],
        params={"x": number / 4 if x is None else x},
        distributions={"x": optuna.distributions.FloatDistribution(0.0, 10.0)},
        system_attrs={"constraints:latency": violation},
    )
    trial.number = number
    return trial


def test_gp_models_see_every_feasible_trial_and_budget_breakers_from_the_whole_history():
    trials = [_constrained_trial(n, 0.5 if n % 3 else -0.1) for n in range(12)]  # feasible: 0, 3, 6, 9
    # room for 3 of the 8 breakers (1, 2, 4, 5, 7, 8, 10, 11): the first, one from the middle and the newest, so the
    # models still know the regions ruled out early
    assert [t.number for t in model_trials(trials, bound=7)] == [0, 1, 3, 6, 7, 9, 11]
    assert [t.number for t in model_trials(trials, bound=3)] == [3, 6, 9]
    assert [t.number for t in model_trials(trials, bound=20)] == list(range(12))


def test_gp_models_skip_duplicates_and_keep_a_quarter_of_the_bound_for_budget_breakers():
    feasible = [_constrained_trial(n, -0.1) for n in range(10)]
    repeats = [_constrained_trial(n, -0.1, x=0.0) for n in range(10, 30)]  # proposals of trial 0's point again
    breakers = [_constrained_trial(n, 0.5) for n in range(30, 34)]
    assert [t.number for t in model_trials(feasible + repeats + breakers, bound=8)] == [4, 5, 6, 7, 8, 9, 30, 33]


def test_the_gp_sampler_proposes_a_random_point_where_its_models_pick_one_the_study_holds():
    choice = optuna.distributions.CategoricalDistribution(["ibn", "fused_ibn"])
    sampler = BoundedGPSampler(seed=0, n_startup_trials=2)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for n, block in enumerate(["ibn", "fused_ibn", "ibn"]):
        study.add_trial(optuna.trial.create_trial(values=[float(n), 1.0], params={"block": block},
                                                  distributions={"block": choice}))  # fmt: skip
    held = study.get_trials(deepcopy=False)
    assert sampler._sample_relative_impl(study, held, [], {"block": choice}) == {}  # {}: Optuna samples at random


def test_the_bounded_gp_sampler_fits_on_its_bound_and_proposes():
    """GPSampler's fitting step receives the bounded trials (an Optuna that renames that step fails here)."""
    received = []

    class Fitting(optuna.samplers.GPSampler):  # sits between BoundedGPSampler and GPSampler in the MRO
        def _sample_relative_impl(self, study, completed_trials, running_trials, search_space):
            received.append([t.number for t in completed_trials])
            return super()._sample_relative_impl(study, completed_trials, running_trials, search_space)

    class Bounded(BoundedGPSampler, Fitting):
        pass

    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=Bounded(seed=0, n_startup_trials=4, max_model_trials=8)
    )
    for n in range(20):
        study.add_trial(_constrained_trial(n, 0.5 if n % 3 else -0.1))
    x = study.ask().suggest_float("x", 0.0, 10.0)
    assert 0.0 <= x <= 10.0
    # a quarter of the bound for the budget breakers (the first and the newest), the 6 newest of the 7 feasible
    assert received == [[1, 3, 6, 9, 12, 15, 18, 19]]
    with pytest.raises(SearchError, match="max_model_trials >= n_startup_trials"):
        BoundedGPSampler(seed=0, n_startup_trials=10, max_model_trials=5)
