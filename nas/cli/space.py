"""`edgenas space validate | show`."""

from __future__ import annotations

import argparse

from nas.cli.common import int_at_least


def register(subparsers: argparse._SubParsersAction) -> None:
    space = subparsers.add_parser("space", help="validate and inspect search-space YAML files")
    commands = space.add_subparsers(dest="space_command", metavar="SUBCOMMAND", required=True)

    validate = commands.add_parser("validate", help="check one or more search-space files against the schema")
    validate.add_argument("files", nargs="+", help="search-space YAML files")
    _add_parallelism_factor(validate)
    validate.set_defaults(func=validate_spaces)

    show = commands.add_parser("show", help="size of a space and a few sampled architectures")
    show.add_argument("file", help="search-space YAML file")
    show.add_argument("--samples", type=int_at_least(0), default=5, help="architectures to sample (default 5)")
    show.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    _add_parallelism_factor(show)
    show.set_defaults(func=show_space)

    from nas.cli.analyze import register_derive, register_diff  # expert-in-the-loop tools

    register_derive(commands)
    register_diff(commands)


def _add_parallelism_factor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parallelism-factor", "-P", type=int, default=None, help="override the file's parallelism factor P"
    )


def validate_spaces(args: argparse.Namespace) -> int:
    from search_spaces import load_space
    from search_spaces.errors import SearchSpaceError

    failures = 0
    for path in args.files:
        try:
            space = load_space(path, parallelism_factor=args.parallelism_factor)
        except SearchSpaceError as exc:
            print(f"FAIL  {exc}")
            failures += 1
        else:
            print(f"ok    {path}: {space.name}, {space.size():,} combinations, P={space.parallelism_factor}")
    return 1 if failures else 0


def show_space(args: argparse.Namespace) -> int:
    import numpy as np

    from search_spaces import count_arch, load_space

    space = load_space(args.file, parallelism_factor=args.parallelism_factor)
    print(f"{space.name}: {space.description}")
    print(f"P={space.parallelism_factor}, channels aligned to P: {space.align_channels}")
    print(f"{space.size():,} combinations of choices")
    for name, choices in space.parameters().items():
        if len(choices) > 1:
            print(f"  {name}: {list(choices)}")
    rng = np.random.default_rng(args.seed)
    print(f"\n{args.samples} sampled architectures (seed {args.seed}):")
    for _ in range(args.samples):
        arch = space.sample(rng)
        counts = count_arch(arch)
        print(f"  {arch.arch_id}  {counts.params:>9,} params  {counts.macs / 1e6:7.2f} M MACs  {arch.block_string()}")
    return 0
