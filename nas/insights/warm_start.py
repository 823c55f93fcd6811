"""Warm start: a finished study's Pareto architectures, to be queued first in a new study.

``edgenas search ... --warm-start results/<study>`` reads them with
:func:`warm_start_archs` and passes them to ``run_search(warm_start=...)``,
which enqueues each one that the new space contains
(:func:`nas.search.enqueue_archs`, through ``space.point_of(arch)``). Only the
committed result files are read (``pareto.json`` and ``pareto/<id>.yaml``),
so a study whose Optuna storage is gone can still seed another.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nas.insights.study import InsightsError
from search_spaces import ArchConfig
from search_spaces.documents import read_document
from search_spaces.errors import SearchSpaceError

__all__ = ["warm_start_archs"]

logger = logging.getLogger(__name__)


def warm_start_archs(study_dir: str | Path) -> list[ArchConfig]:
    """The Pareto architectures of the study in ``study_dir``, fastest first, as ``pareto.json`` lists them."""
    folder = Path(study_dir)
    path = folder / "pareto.json"
    missing = f"{folder}: no pareto.json to warm-start from (expected results/<study>/ of a search)"
    try:
        entries = read_document(path, error=InsightsError, missing=missing)["pareto"]
    except (KeyError, TypeError) as exc:
        raise InsightsError(f"{path}: not a pareto.json written by `edgenas search` ({exc})") from None
    if not entries:
        raise InsightsError(f"{path}: the study has no Pareto architecture yet; nothing to warm-start from")
    archs = [_arch(folder, entry) for entry in entries]
    logger.info("warm start: %d Pareto architectures from %s", len(archs), folder)
    return archs


def _arch(folder: Path, entry: dict) -> ArchConfig:
    file = folder / str(entry.get("file", f"pareto/{entry.get('arch_id')}.yaml"))
    try:
        arch = ArchConfig.load(file)
    except SearchSpaceError as exc:
        raise InsightsError(f"warm start: {exc}") from None
    if entry.get("arch_id") not in (None, arch.arch_id):
        raise InsightsError(f"{file}: holds architecture {arch.arch_id}, but pareto.json lists {entry['arch_id']}")
    return arch
