from __future__ import annotations

import argparse
import importlib
import logging
import sys

from search_spaces.errors import EdgeNasError

# Command groups, in the order `edgenas --help` lists them. A module that does
# not exist yet is simply not listed.
COMMAND_MODULES = (
    "nas.cli.space",
    "nas.cli.arch",
    "nas.cli.train",
    "nas.cli.latency",
    "nas.cli.search",
    "nas.cli.analyze",
    "nas.cli.deploy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgenas",
        description="Hardware-aware neural architecture search for edge accelerators.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except EdgeNasError as exc:
        print(f"edgenas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgenas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
