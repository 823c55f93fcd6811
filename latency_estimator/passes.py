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

A network whose fastest pass is not yet confirmed (no other pass within
``agreement`` of it) is noisy, and is timed in further passes, up to
``max_passes``: a noisy measurement is repeated rather than kept. Each pass
runs in a new session, and back-to-back sessions of one network differ by a
median 1.25x, up to 2x (``benchmarks/session_spread.py`` ->
``results/session-spread.md``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple, TypeVar

from latency_estimator.devices.base import Measurement, PassPlan

__all__ = ["ProgressFn", "Timed", "fastest_of_passes"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
ProgressFn = Callable[[int, int], None]  # (done so far, total to do)


class Timed(NamedTuple):
    """A key's fastest measurement so far, how many passes it is the fastest of, and the second-fastest pass."""

    fastest: Measurement
    passes: int
    runner_up_ms: float = math.inf

    def with_pass(self, measurement: Measurement) -> Timed:
        times = sorted([self.fastest.latency_ms, self.runner_up_ms, measurement.latency_ms])
        fastest = min(self.fastest, measurement, key=lambda m: m.latency_ms)
        return Timed(fastest, self.passes + 1, times[1])

    def confirmed(self, agreement: float) -> bool:
        """True when another pass came within ``agreement`` (relative) of the fastest."""
        return self.runner_up_ms <= self.fastest.latency_ms * (1 + agreement)


def fastest_of_passes(
    keys: Sequence[K],
    measure: Callable[[K], Measurement],
    plan: PassPlan,
    *,
    done: dict[K, Timed] | None = None,
    save: Callable[[dict[K, Timed]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[K, Timed]:
    """Measure every key in ``plan.passes`` passes, one pass over all of them after another, then the keys whose
    fastest is not confirmed in further passes (up to ``plan.max_passes``); keep each key's fastest.

    ``done`` holds what earlier (interrupted) runs measured; a key is never measured again for a pass it has.
    A key is measured at least ``gap_s`` after its previous measurement in this run (a pass shorter than that
    waits). ``save`` gets the results after every measurement; ``progress`` gets (measurements done,
    to do), where "to do" grows when a further pass is needed.
    """
    results: dict[K, Timed] = dict(done or {})
    passes_of = lambda key: results[key].passes if key in results else 0  # noqa: E731
    total = sum(max(0, plan.passes - passes_of(key)) for key in keys)
    count = 0
    last_measured: dict[K, float] = {}
    for number in range(1, max(plan.passes, plan.max_passes) + 1):
        todo = [
            key
            for key in keys
            if passes_of(key) < number and (number <= plan.passes or not results[key].confirmed(plan.agreement))
        ]
        if not todo:
            continue
        if number > plan.passes:
            total += len(todo)
        if number > 1:
            logger.info("timing pass %d over %d networks", number, len(todo))
        for key in todo:
            if key in last_measured:
                time.sleep(max(0.0, last_measured[key] + plan.gap_s - time.monotonic()))
            last_measured[key] = time.monotonic()
            measurement = measure(key)
            results[key] = results[key].with_pass(measurement) if key in results else Timed(measurement, 1)
            count += 1
            if save:
                save(results)
            if progress:
                progress(count, total)
    return results
