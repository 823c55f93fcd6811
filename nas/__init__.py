"""edgenas search layer: datasets, training, proxies, the Optuna study and the CLI."""

from __future__ import annotations
