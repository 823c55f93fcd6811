"""The ``edgenas`` command line: one module per command group.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds
its parsers and sets ``func`` (``args -> exit code``) on each. ``main`` turns
every :class:`EdgeNasError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

from nas.cli.main import main

__all__ = ["main"]
