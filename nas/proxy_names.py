"""The built-in zero-shot proxies' names and the default one (no torch: the CLI's ``--proxy`` choices).

The proxies themselves, and the registry a new one joins, are in :mod:`nas.proxies`.
"""

from __future__ import annotations

__all__ = ["DEFAULT_PROXY", "PROXY_NAMES"]

# The highest Spearman with trained accuracy in results/zero-shot-proxies.md (0.44 on 51 architectures; synflow
# 0.29, and the data-dependent naswot, snip and grad_norm rank inversely there). Rerun it for a new dataset.
DEFAULT_PROXY = "params"
# What nas.proxies registers (tests/test_proxies.py checks that the two agree).
PROXY_NAMES = ("grad_norm", "macs", "naswot", "params", "snip", "synflow")
