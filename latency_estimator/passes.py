"""Many networks timed in passes, each keeping its fastest: measuring on a machine whose speed comes and goes.

The shared 2-core VM this project is built on is mostly steady, with slow
episodes of seconds in which every network runs up to 1.5x as long, and
single networks jump on their own (``benchmarks/timing_drift.py`` -> ``results/timing-drift.md``). Nothing
inside one timing window can tell a slow episode from a slow network. Timing
every network once per pass, in passes at least ``gap_s`` apart, and keeping
its fastest, does: the episode that slowed one pass is over by a later one.
In the committed trace, two single timings of a network agree within ±10 %
for 66 % of networks, two fastest-of-7 estimates 16-32 s apart for 95-97 %.
Other processes only ever add time, so the fastest pass is the network's own
latency.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from latency_estimator.devices.base import Measurement

__all__ = ["Timed", "fastest_of_passes"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
Timed = tuple[Measurement, int]  # the fastest measurement so far, and how many passes it is the fastest of


def fastest_of_passes(
    keys: Sequence[K],
    measure: Callable[[K], Measurement],
    *,
    passes: int,
    gap_s: float,
    done: dict[K, Timed] | None = None,
    save: Callable[[dict[K, Timed]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[K, Timed]:
    """Measure every key ``passes`` times, one pass over all of them after another, and keep each key's fastest.

    ``done`` holds what earlier (interrupted) runs measured; a key already
    measured ``passes`` times is not measured again. A pass that took less
    than ``gap_s`` is followed by a pause, so that a key's measurements are
    at least ``gap_s`` apart. ``save`` gets the results after every
    measurement; ``progress`` gets (measurements done, to do).
    """
    results: dict[K, Timed] = dict(done or {})
    total = sum(passes - min(passes, results.get(key, (None, 0))[1]) for key in keys)
    count = 0
    for number in range(1, passes + 1):
        todo = [key for key in keys if results.get(key, (None, 0))[1] < number]
        if not todo:
            continue
        if number > 1:
            logger.info("timing pass %d of %d over %d networks", number, passes, len(todo))
        started = time.monotonic()
        for key in todo:
            measurement = measure(key)
            fastest, seen = results.get(key, (measurement, 0))
            results[key] = (min(fastest, measurement, key=lambda m: m.latency_ms), seen + 1)
            count += 1
            if save:
                save(results)
            if progress:
                progress(count, total)
        if number < passes:
            time.sleep(max(0.0, gap_s - (time.monotonic() - started)))
    return results
