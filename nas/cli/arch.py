"""`edgenas arch show`."""

from __future__ import annotations

import argparse

from nas.cli.common import format_table, human_bytes

DTYPE_BYTES = {"float32": 4, "float16": 2, "int8": 1}


def register(subparsers: argparse._SubParsersAction) -> None:
    arch = subparsers.add_parser("arch", help="inspect a concrete architecture (ArchConfig YAML/JSON)")
    commands = arch.add_subparsers(dest="arch_command", metavar="SUBCOMMAND", required=True)
    show = commands.add_parser("show", help="per-layer table: shapes, MACs, params, activation memory")
    show.add_argument("file", help="ArchConfig YAML or JSON file, or a one-point space (baseline.yaml)")
    show.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="float32", help="activation data type")
    show.set_defaults(func=show_arch)


def show_arch(args: argparse.Namespace) -> int:
    from search_spaces import count_arch
    from search_spaces.arch_file import load_arch

    arch = load_arch(args.file)
    counts = count_arch(arch, dtype_bytes=DTYPE_BYTES[args.dtype])
    rows = [
        (
            layer.name,
            layer.kind,
            "x".join(map(str, layer.in_shape)),
            "x".join(map(str, layer.out_shape)),
            layer.macs,
            layer.params,
            layer.activation_bytes,
            layer.live_bytes,
        )
        for layer in counts.layers
    ]
    print(f"{arch.arch_id}  {arch.block_string()}\n")
    print(format_table(["layer", "kind", "in CxHxW", "out CxHxW", "MACs", "params", "out bytes", "live bytes"], rows))
    print(
        f"\ntotal: {counts.params:,} params, {counts.macs:,} MACs, peak activation memory "
        f"{counts.peak_activation_bytes:,} B ({human_bytes(counts.peak_activation_bytes)}, {args.dtype}, batch 1) "
        f"at {counts.peak_layer}"
    )
    return 0
