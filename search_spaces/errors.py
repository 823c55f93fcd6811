"""The one exception family of edgenas.

Every error a user can cause is an :class:`EdgeNasError`; the CLI prints its
message on one line and exits non-zero. Each package defines its own subclass
(``DatasetError`` in ``nas``, ``EstimatorError`` in ``latency_estimator``,
``CompileError`` in ``deploy``) on top of this base, which lives here because
``search_spaces`` is the package every other one may import.
"""

from __future__ import annotations

__all__ = ["EdgeNasError", "SearchSpaceError", "one_line"]


class EdgeNasError(Exception):
    """Base of every error edgenas raises for bad input or a failed step."""


class SearchSpaceError(EdgeNasError):
    """A search space or architecture file breaks the schema.

    The message names the file, the YAML path, the value and what is allowed:
    ``search_spaces/fused.yaml: stages[2].kernel: got 4, allowed [3, 5, 7]``.
    """


def one_line(exc: BaseException, *, limit: int = 300) -> str:
    """``exc``'s message on one line, at most ``limit`` characters, for an error that wraps it.

    A library's message may span lines (a traceback, a compiler log); the CLI prints one.
    An exception with no message is named by its type.
    """
    return " ".join(str(exc).split())[:limit] or type(exc).__name__
