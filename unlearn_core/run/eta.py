"""Time left in a running analysis, from the fractions its progress callback reports.

A bar at 12% says nothing about whether to wait or come back later; "about 2 min left" does. The estimate is the
average rate since progress started moving (elapsed / fraction done), smoothed so it counts down between reports
instead of jumping with each one. It stays silent while it would be a guess: before the first second and the first
3% of progress, and after the fraction goes backwards (a new phase: the rate is measured again).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from unlearn_core.types import Progress

DAY_S = 86_400.0


def fmt_duration(seconds: float) -> str:
    """A reading, not a measurement: 5 s steps under a minute, whole minutes under an hour, then 5 min steps."""
    s = max(float(seconds), 0.0)
    if s < 57.5:
        return f"{max(5, 5 * round(s / 5))} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{minutes} min"
    if s >= DAY_S:
        return "more than a day"
    h, m = divmod(5 * round(s / 300), 60)
    return f"{h} h" if m == 0 else f"{h} h {m} min"


def fmt_about(seconds: float) -> str:
    return "a few seconds" if seconds < 10 else f"about {fmt_duration(seconds)}"


def fmt_left(seconds: float) -> str:
    return f"{fmt_about(seconds)} left"


class RemainingTime:
    """update(frac) -> seconds left, or None while the rate is not yet measurable.

    clock: injected for tests. Smoothing: a new raw estimate weighs 1 - exp(-dt / tau) against the previous one
    counted down by dt, tau = min(tau_s, elapsed / 10): a burst of reports within a second does not make it jump,
    and an early estimate (measured over a few seconds, the least reliable) does not hold back the later ones.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, min_frac: float = 0.03, min_seconds: float = 1.0,
                 tau_s: float = 5.0, max_seconds: float = 7 * DAY_S):
        self.clock, self.min_frac, self.min_seconds = clock, min_frac, min_seconds
        self.tau_s, self.max_seconds = tau_s, max_seconds
        self._ref: tuple[float, float] | None = None  # (time, fraction) the rate is measured from
        self._smoothed: tuple[float, float] | None = None  # (time, seconds left) of the last estimate

    def update(self, frac: float) -> float | None:
        now, frac = self.clock(), float(frac)
        if not math.isfinite(frac) or frac >= 1.0:
            return None
        frac = max(frac, 0.0)
        if self._ref is None or frac <= self._ref[1]:  # not started, still waiting at the start, or a new phase
            self._ref, self._smoothed = (now, frac), None
            return None
        elapsed, done = now - self._ref[0], frac - self._ref[1]
        if elapsed < self.min_seconds or done < self.min_frac:
            return None
        raw = elapsed * (1.0 - frac) / done
        if self._smoothed is None:
            left = raw
        else:
            t_prev, prev = self._smoothed
            w = 1.0 - math.exp(-max(now - t_prev, 0.0) / min(self.tau_s, elapsed / 10))
            left = w * raw + (1.0 - w) * max(prev - (now - t_prev), 0.0)
        self._smoothed = (now, left)
        return left if left <= self.max_seconds else None


def with_eta(progress: Progress, clock: Callable[[], float] = time.monotonic, **kw) -> Progress:
    """The same callback, its message ending in " - about 2 min left" once the estimate is measurable."""
    eta = RemainingTime(clock, **kw)

    def report(frac: float, msg: str) -> None:
        left = eta.update(frac)
        progress(frac, msg if left is None else f"{msg} - {fmt_left(left)}")

    return report
