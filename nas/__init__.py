"""edgenas search layer: datasets, training, proxies, the Optuna study and the CLI.

``nas.run_search(...)`` is the one documented entry point for scripts; it is
imported lazily so that ``import nas`` stays cheap (no optuna, no torch).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SearchResult", "SearchSettings", "run_search"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import nas.search

        return getattr(nas.search, name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")
