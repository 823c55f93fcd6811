"""The ``edgenas`` command line: one module per command group.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds
its parsers and sets ``func`` (``args -> exit code``) on each. ``main`` turns
every :class:`EdgeNasError` into one line on stderr and exit code 2.

``edgenas --help`` builds every parser, so a command module imports at its top
only light modules (argparse helpers, constants: no torch, optuna, onnx,
xgboost or TVM); each handler imports the work it runs in its first lines, and
names used only in annotations are imported under ``if TYPE_CHECKING:``
(tests/test_cli.py checks that building the parser loads none of them).
"""

from __future__ import annotations

from nas.cli.main import main

__all__ = ["main"]
