"""Expert in the loop, on a small real study: analyze, space derive, warm start.

The study is a real ``run_search`` (zeroshot on digits, sim-npu-p32, the
``params`` proxy so that it takes seconds) scored by a real, small
sim-npu-p32 latency estimator.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml

from nas.cli.analyze import register, register_derive, register_diff
from nas.insights import (
    InsightsError,
    analyze_study,
    derive_from_study,
    open_study_record,
    warm_start_archs,
)
from nas.insights.findings import fusion_class
from search_spaces import load_space, shipped_space_path
from search_spaces.errors import EdgeNasError

DEVICE = "sim-npu-p32"
COMBINED = str(shipped_space_path("combined"))


def cli(argv: list[str]) -> int:
    """``edgenas`` restricted to the commands of nas.cli.analyze, with main()'s error handling."""
    parser = argparse.ArgumentParser(prog="edgenas")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    register(commands)
    space = commands.add_parser("space").add_subparsers(dest="space_command", required=True)
    register_derive(space)
    register_diff(space)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgeNasError as exc:
        print(f"edgenas: error: {exc}")
        return 2


def small_study(results: Path, *, study: str, trials: int, space: str = COMBINED, **options):
    """A real zeroshot search on digits; the ``params`` proxy keeps it to seconds."""
    from nas.search import run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # random proposals: the default strategy's candidate pool (2,000 resolved per proposal) made the 24-trial study
    # 41 s on one core, random 24 trials take seconds, and these tests read a study, whichever sampler filled it
    settings = {"mode": "zeroshot", "proxy": "params", "strategy": "random", "population_size": 8, "heartbeat_s": 60}
    settings |= options
    return run_search(
        space=space, device=DEVICE, dataset="digits", study=study, trials=trials, results_dir=results, **settings
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory):
    """A results folder holding study ``small`` (24 trials); a real small estimator serves latency."""
    from latency_estimator import build_estimator

    root = tmp_path_factory.mktemp("insights")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGENAS_ESTIMATORS", str(root / "estimators"))
        build_estimator(DEVICE, samples=120, networks=6, directory=root / "estimators" / DEVICE)
        small_study(root / "results", study="small", trials=24)
        yield root / "results"


@pytest.fixture(scope="module")
def insights(results: Path):
    return analyze_study(results / "small")


def test_analyze_gives_importances_for_every_searched_parameter(insights) -> None:
    space = insights.record.space
    searched = {name for name, choices in space.parameters().items() if len(choices) > 1}
    assert [i.objective for i in insights.importances] == ["latency_ms", "proxy_params"]
    for importance in insights.importances:
        assert set(importance.values) == searched
        assert sum(importance.values.values()) == pytest.approx(1.0)
        assert importance.n_trials >= 8
    assert set(insights.fixed_parameters) == set(space.parameters()) - searched


def test_analyze_writes_insights_and_plot(insights, results: Path) -> None:
    text = (results / "small" / "insights.md").read_text()
    for heading in (
        "## Findings",
        "## Which choices matter",
        "## Pareto architectures, per stage",
        "## Where the time",
    ):
        assert heading in text
    assert (results / "small" / "latency-breakdown.png").stat().st_size > 10_000
    assert "Not searched (one choice, so no importance)" in text


def test_stage_statistics_match_the_pareto_front(insights, results: Path) -> None:
    """The per-stage counts are those of the architectures in pareto.json."""
    archs = warm_start_archs(results / "small")
    p = insights.record.parallelism_factor
    assert len(insights.stages) == 6
    for stage in insights.stages:
        i = stage.stage
        assert stage.n_pareto == len(archs)
        assert stage.fused == sum(a.stages[i].block == "fused_ibn" for a in archs)
        assert stage.channels == dict(Counter(a.stages[i].channels for a in archs))
        assert stage.aligned == sum(a.stages[i].channels % p == 0 for a in archs)
        assert len(stage.fused_ms) == len(stage.ibn_ms) == len(archs)


def test_fusion_findings_quote_the_trial_data(insights) -> None:
    """Each fusion finding names stages whose Pareto fusion counts are the ones it states."""
    fusion = [f for f in insights.findings if f.topic == "fusion"]
    covered = []
    for finding in fusion:
        match = re.match(r"stages? (\d+)(?:–(\d+))?:", finding.text)
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        stages = insights.stages[first : last + 1]
        covered += [s.stage for s in stages]
        assert len({fusion_class(s) for s in stages}) == 1
        counts = sorted({s.fused for s in stages})
        stated = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        n = stages[0].n_pareto
        expected = f"never fused in {n}" if fusion_class(stages[0]) == "never" else f"{stated} of {n}"
        assert expected in finding.text
        for s in stages:
            assert f"stage {s.stage} ({s.output_size}x{s.output_size}): {s.fused}/{n} fused" in finding.evidence
    assert covered == list(range(6))


def test_choice_usage_matches_the_trials(insights) -> None:
    """'tried' counts are the sampled parameters of the evaluated trials, one per architecture."""
    study = insights.record.study
    seen, counts = set(), Counter()
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("outcome") in ("COMPLETE", "INFEASIBLE") and trial.user_attrs["arch_id"] not in seen:
            seen.add(trial.user_attrs["arch_id"])
            counts.update((name, value) for name, value in trial.params.items())
    for name, usage in insights.usage.items():
        if usage.searched:
            assert usage.tried == {c: counts[(name, c)] for c in usage.choices}
            assert sum(usage.pareto.values()) == len(insights.record.pareto)


def test_breakdown_compares_the_baseline_with_a_pareto_architecture(insights) -> None:
    breakdown = insights.breakdown
    assert breakdown.labels == ("stem", *(f"stage {i}" for i in range(6)), "head")
    assert breakdown.best_arch_id in {p.arch.arch_id for p in insights.record.pareto}
    assert all(ms > 0 for ms in (*breakdown.baseline_ms, *breakdown.best_ms))
    latency = {p.arch.arch_id: p.latency_ms for p in insights.record.pareto}[breakdown.best_arch_id]
    assert breakdown.best_total_ms == pytest.approx(latency, rel=1e-6)


def test_derive_writes_a_valid_space_containing_every_pareto_architecture(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "derived.yaml"
    assert cli(["space", "derive", str(results / "small"), "--out", str(out)]) == 0
    derived = load_space(out)
    source = load_space(COMBINED)
    for arch in warm_start_archs(results / "small"):
        assert derived.contains(arch), arch.block_string()
    assert derived.name == "derived" and derived.size() <= source.size()
    text = out.read_text()
    for line in shipped_space_path("combined").read_text().splitlines():
        if line.startswith("#"):
            assert line in text  # the source file's own comments survive
    assert "Derived by `edgenas space derive`" in text
    assert cli(["space", "derive", str(results / "small"), "--out", str(out)]) == 2  # exists, no --force


def test_derive_drops_only_choices_never_on_the_front(insights, tmp_path: Path) -> None:
    derived = derive_from_study(insights, name="d")
    for decision in derived.decisions:
        usage = insights.usage[decision.name]
        for choice in decision.dropped:
            assert usage.pareto[choice] == 0 and usage.tried[choice] >= 2
        for choice in decision.kept:
            assert usage.pareto[choice] > 0 or usage.tried[choice] < 2
        if decision.narrowed:
            assert f"study small: {decision.name}: dropped" in derived.document.text()
    assert derived.space.parameters() == {
        name: tuple(next((d.kept for d in derived.decisions if d.name == name), choices))
        for name, choices in insights.record.space.parameters().items()
    }


def test_derive_with_min_share_narrows_further_and_reports_lost_archs(insights) -> None:
    narrow = derive_from_study(insights, name="narrow", min_share=0.5, min_tried=1)
    default = derive_from_study(insights, name="default")
    assert narrow.space.size() < default.space.size()
    lost = {p.arch.arch_id for p in insights.record.pareto if not narrow.space.contains(p.arch)}
    assert set(narrow.excluded) == lost


def test_warm_start_enqueues_exactly_the_pareto_architectures(results: Path) -> None:
    archs = warm_start_archs(results / "small")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGENAS_ESTIMATORS", str(results.parent / "estimators"))
        run = small_study(results, study="warm", trials=len(archs) + 2, warm_start=archs, seed=1)
    trials = sorted(run.study.trials, key=lambda t: t.number)
    first = trials[: len(archs)]
    assert [t.user_attrs["arch_id"] for t in first] == [a.arch_id for a in archs]
    assert all(t.user_attrs.get("enqueued_from") == "warm start" for t in first)
    assert not any("enqueued_from" in t.user_attrs for t in trials[len(archs) :])


def test_analyze_command_prints_findings(results: Path, capsys) -> None:
    assert cli(["analyze", str(results / "small")]) == 0
    out = capsys.readouterr().out
    assert "findings:" in out and "insights.md" in out


def test_too_few_trials_skip_importances_with_a_reason(results: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGENAS_ESTIMATORS", str(results.parent / "estimators"))
        small_study(results, study="tiny", trials=3)
        tiny = analyze_study(results / "tiny", write=False)
    for importance in tiny.importances:
        assert importance.values == {} and "importances need at least 8" in importance.note


def test_bad_study_folders_are_one_line_errors(results: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(InsightsError, match="no such results folder"):
        open_study_record(tmp_path / "missing")
    with pytest.raises(InsightsError, match="no pareto.json"):
        open_study_record(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "pareto.json").write_text((results / "small" / "pareto.json").read_text())
    with pytest.raises(InsightsError, match="no study.db"):
        open_study_record(copy)
    with pytest.raises(InsightsError, match="no pareto.json to warm-start from"):
        warm_start_archs(tmp_path)
    assert cli(["analyze", str(tmp_path / "missing")]) == 2
    assert "edgenas: error:" in capsys.readouterr().out


def test_a_study_without_complete_trials_is_refused(results: Path, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    summary = json.loads((results / "small" / "pareto.json").read_text())
    summary["study"] = "empty"
    (folder / "pareto.json").write_text(json.dumps(summary))
    optuna.create_study(study_name="empty", storage=f"sqlite:///{folder / 'study.db'}", directions=["maximize"] * 2)
    with pytest.raises(InsightsError, match="no complete trial"):
        open_study_record(folder)


def test_warm_start_archs_round_trip_the_pareto_files(results: Path) -> None:
    listed = json.loads((results / "small" / "pareto.json").read_text())["pareto"]
    archs = warm_start_archs(results / "small")
    assert [a.arch_id for a in archs] == [entry["arch_id"] for entry in listed]
    for arch in archs:
        assert yaml.safe_load((results / "small" / "pareto" / f"{arch.arch_id}.yaml").read_text()) == arch.to_dict()


def test_derive_says_when_the_evidence_is_thin(results: Path, tmp_path: Path, capsys) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGENAS_ESTIMATORS", str(results.parent / "estimators"))
        thin = small_study(results, study="thin", trials=2, population_size=2)
    assert len(thin.pareto) < 5
    out = tmp_path / "thin.yaml"
    assert cli(["space", "derive", str(results / "thin"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"warning: The evidence is thin: {len(thin.pareto)} Pareto architecture(s)" in printed
    assert "The evidence is thin" in out.read_text()


def test_insights_read_the_parallelism_factor_the_search_recorded(results: Path, tmp_path: Path) -> None:
    """pareto.json records the device's P; insights take it from there, and only an older pareto.json without it
    falls back to the device profile as it stands now."""
    folder = tmp_path / "small"
    folder.mkdir()
    (folder / "study.db").write_bytes((results / "small" / "study.db").read_bytes())
    summary = json.loads((results / "small" / "pareto.json").read_text())
    assert summary["device"] == {"name": DEVICE, "parallelism_factor": 32}
    summary["device"]["parallelism_factor"] = 16
    (folder / "pareto.json").write_text(json.dumps(summary))
    assert open_study_record(folder).parallelism_factor == 16
    del summary["device"]
    (folder / "pareto.json").write_text(json.dumps(summary))
    assert open_study_record(folder).parallelism_factor == 32
