"""The one exception family of edgenas.

Every error a user can cause is an :class:`EdgeNasError`; the CLI prints its
message on one line and exits non-zero. Each package defines its own subclass
(``DatasetError`` in ``nas``, ``EstimatorError`` in ``latency_estimator``,
``CompileError`` in ``deploy``) on top of this base, which lives here because
``search_spaces`` is the package every other one may import.
"""

from __future__ import annotations

__all__ = ["EdgeNasError", "SearchSpaceError"]


class EdgeNasError(Exception):
    """Base of every error edgenas raises for bad input or a failed step."""


class SearchSpaceError(EdgeNasError):
    """A search space or architecture file breaks the schema.

    The message names the file, the YAML path, the value and what is allowed:
    ``search_spaces/fused.yaml: stages[2].kernel: got 4, allowed [3, 5, 7]``.
    """
