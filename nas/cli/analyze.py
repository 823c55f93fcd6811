"""`edgenas analyze`, and the `space derive` / `space diff` subcommands (registered by nas.cli.space)."""

from __future__ import annotations

import argparse
import logging

from nas.cli.common import format_table


def register(subparsers: argparse._SubParsersAction) -> None:
    analyze = subparsers.add_parser(
        "analyze",
        help="read a search's lessons: importances, Pareto statistics per stage, latency breakdown, findings",
        description="Write RESULTS_DIR/STUDY/insights.md and latency-breakdown.png, and print the findings.",
    )
    analyze.add_argument("study_dir", help="results folder of a search, e.g. results/my-study")
    _add_study_options(analyze)
    analyze.set_defaults(func=analyze_command)


def register_derive(space_subparsers: argparse._SubParsersAction) -> None:
    derive = space_subparsers.add_parser(
        "derive",
        help="a narrower space from a search's Pareto front, as a commented YAML file",
        description="Drop the choices a search tried but never put on its Pareto front; keep the rest. "
        "The file is the study's own space file rewritten with its comments, plus the evidence for each narrowing.",
    )
    derive.add_argument("study_dir", help="results folder of a search, e.g. results/my-study")
    derive.add_argument("--out", required=True, help="the derived space file to write, e.g. search_spaces/mine.yaml")
    derive.add_argument("--name", default=None, help="the space's name (default: the file name without .yaml)")
    derive.add_argument(
        "--min-share",
        type=float,
        default=0.0,
        help="also drop choices on fewer than this share of the Pareto architectures (default 0: only never used; "
        "above 0 the space may lose some Pareto architectures)",
    )
    derive.add_argument(
        "--min-tried", type=int, default=2, help="judge a choice only when tried at least this often (%(default)s)"
    )
    derive.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    _add_study_options(derive)
    derive.set_defaults(func=derive_command)


def register_diff(space_subparsers: argparse._SubParsersAction) -> None:
    diff = space_subparsers.add_parser(
        "diff", help="what changed between two search spaces, and how the size of the space changed"
    )
    diff.add_argument("a", help="search-space YAML (before)")
    diff.add_argument("b", help="search-space YAML (after)")
    diff.add_argument(
        "--parallelism-factor", "-P", type=int, default=None, help="load both at this P instead of their own"
    )
    diff.set_defaults(func=diff_command)


def _add_study_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", default=None, help="Optuna storage if not STUDY_DIR/study.db (URL or journal)")
    parser.add_argument(
        "--evaluator", choices=("fanova", "ped-anova"), default="fanova", help="importance evaluator (%(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the importance evaluator (%(default)s)")


def _quiet(args: argparse.Namespace) -> None:
    import optuna

    if not args.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("nas").setLevel(logging.INFO if args.verbose else logging.WARNING)


def analyze_command(args: argparse.Namespace) -> int:
    from nas.insights import analyze_study
    from nas.insights.analyze import INSIGHTS_FILE, PLOT_FILE

    _quiet(args)
    insights = analyze_study(args.study_dir, storage=args.storage, evaluator=args.evaluator, seed=args.seed)
    record = insights.record
    print(f"study {record.name}: {len(record.trials)} trials, {len(record.pareto)} Pareto architectures")
    for item in insights.importances:
        if item.note:
            print(f"importances of {item.objective} skipped: {item.note}")
    print("\nfindings:")
    for i, finding in enumerate(insights.findings, 1):
        print(f"  {i}. {finding.text}")
    plot = f" and {PLOT_FILE}" if insights.breakdown is not None else ""
    print(f"\nwritten: {record.folder / INSIGHTS_FILE}{plot} (with the evidence for each finding)")
    return 0


def derive_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nas.insights import analyze_study, derive_from_study
    from nas.insights.derive import THIN_EVIDENCE_PARETO, thin_evidence
    from search_spaces.diff import diff_spaces

    _quiet(args)
    out = Path(args.out)
    if out.exists() and not args.force:
        from nas.insights import InsightsError

        raise InsightsError(f"{out}: already exists (use --force to overwrite)")
    insights = analyze_study(
        args.study_dir, storage=args.storage, evaluator=args.evaluator, seed=args.seed, write=False
    )
    name = args.name or out.stem
    derived = derive_from_study(insights, name=name, min_share=args.min_share, min_tried=args.min_tried)
    derived.document.save(out, overwrite=args.force)
    rows = [(d.name, _choices(d.kept), _choices(d.dropped) or "-") for d in derived.decisions]
    print(format_table(["parameter", "kept", "dropped"], rows))
    print("\n" + diff_spaces(derived.source, derived.space).lines()[-1])
    if derived.excluded:
        print(f"warning: the derived space no longer contains Pareto architectures {', '.join(derived.excluded)}")
    else:
        print(f"the derived space contains all {len(insights.record.pareto)} Pareto architectures of the study")
    if len(insights.record.pareto) < THIN_EVIDENCE_PARETO:
        print(f"warning: {thin_evidence(len(insights.record.pareto))}")
    print(f"written: {out} (edit it; `edgenas space validate {out}` checks it)")
    return 0


def diff_command(args: argparse.Namespace) -> int:
    from search_spaces.diff import diff_space_files

    diff = diff_space_files(args.a, args.b, parallelism_factor=args.parallelism_factor)
    print("\n".join(diff.lines()))
    return 0


def _choices(values: tuple) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
