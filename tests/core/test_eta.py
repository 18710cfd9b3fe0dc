"""Time left from progress fractions, on a fake clock: the numbers a user reads on the bar and in the CLI."""

from __future__ import annotations

import pytest

from unlearn_core.run.eta import RemainingTime, fmt_duration, fmt_left, with_eta


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_linear_progress_at_ten_percent_a_second():
    clock = Clock()
    eta = RemainingTime(clock)
    assert eta.update(0.0) is None  # progress has not moved: no rate yet
    lefts = {}
    for step in range(1, 10):
        clock.t += 1.0
        lefts[step] = eta.update(step / 10)
    assert lefts[1] == pytest.approx(9.0)
    assert lefts[5] == pytest.approx(5.0)
    assert lefts[9] == pytest.approx(1.0)


def test_silent_while_the_rate_is_a_guess():
    clock = Clock()
    eta = RemainingTime(clock)
    eta.update(0.0)
    clock.t += 0.5
    assert eta.update(0.2) is None  # under a second
    clock.t += 5.0
    assert RemainingTime(clock).update(0.5) is None  # first report: nothing to measure from
    eta2 = RemainingTime(clock)
    eta2.update(0.0)
    clock.t += 2.0
    assert eta2.update(0.01) is None  # 1% done: too little progress to extrapolate
    clock.t += 2.0
    assert eta2.update(0.04) == pytest.approx(4.0 * 0.96 / 0.04)


def test_waiting_at_the_start_is_not_counted():
    """Time spent at 0% (waiting for another session's run on the same models) is not the analysis' rate."""
    clock = Clock()
    eta = RemainingTime(clock)
    for _ in range(30):
        eta.update(0.0)
        clock.t += 1.0
    assert eta.update(0.1) == pytest.approx(9.0)  # 1 s for 10% since the last 0% report, not 30 s


def test_a_new_phase_measures_again():
    clock = Clock()
    eta = RemainingTime(clock)
    eta.update(0.0)
    clock.t += 10.0
    assert eta.update(0.5) == pytest.approx(10.0)
    eta.update(0.0)  # backwards: the next phase, at its own pace
    clock.t += 1.0
    assert eta.update(0.5) == pytest.approx(1.0)


def test_smoothing_counts_down_between_reports_and_never_goes_negative():
    clock = Clock()
    eta = RemainingTime(clock, tau_s=5.0)
    eta.update(0.0)
    clock.t += 10.0
    assert eta.update(0.5) == pytest.approx(10.0)
    clock.t += 0.1
    jump = eta.update(0.9)  # a burst of progress: raw says 1.2 s, the smoothed value moves only part of the way
    assert 1.2 < jump < 10.0
    for _ in range(50):
        clock.t += 1.0
        left = eta.update(0.9)
        assert left is None or left >= 0.0
    clock.t += 1000.0
    assert eta.update(0.95) >= 0.0


def test_an_early_estimate_does_not_hold_back_the_later_ones():
    """Logged from a CLI audit (scorecard + decodability, 7 tiny-lab checkpoints, 2 shared cores): the first 4% were
    slow. Seconds since the first report, fraction, and the time the run really had left."""
    log = [(0.0, 0.0), (0.21, 0.021), (1.58, 0.041), (2.81, 0.104), (4.06, 0.166), (5.61, 0.228), (7.01, 0.29),
           (8.92, 0.352), (12.61, 0.477), (21.47, 0.791)]
    clock = Clock()
    eta, start, end = RemainingTime(clock), clock.t, clock.t + 25.98
    errors = []
    for t, frac in log:
        clock.t = start + t
        left = eta.update(frac)
        if left is not None and t > 4:  # from 4 s on: within 10%, or 2 s in the last seconds
            errors.append(abs(left - (end - clock.t)) / max(end - clock.t, 20.0))
    assert len(errors) == 6 and max(errors) < 0.1, errors


def test_absurd_or_invalid_fractions_give_no_number():
    clock = Clock()
    eta = RemainingTime(clock, max_seconds=3600)
    eta.update(0.0)
    clock.t += 200.0
    assert eta.update(0.031) is None  # over 6000 s: beyond the cap
    assert eta.update(float("nan")) is None
    assert eta.update(1.0) is None


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "5 s"), (3, "5 s"), (38, "40 s"), (57, "55 s"), (58, "1 min"), (100, "2 min"), (130, "2 min"),
    (59 * 60, "59 min"), (3600, "1 h"), (80 * 60, "1 h 20 min"), (2 * 86400, "more than a day"), (-5, "5 s"),
])
def test_fmt_duration(seconds, text):
    assert fmt_duration(seconds) == text


def test_fmt_left():
    assert fmt_left(4) == "a few seconds left"
    assert fmt_left(40) == "about 40 s left"
    assert fmt_left(125) == "about 2 min left"


def test_with_eta_appends_the_estimate_to_the_message():
    clock, seen = Clock(), []
    report = with_eta(lambda f, m: seen.append((f, m)), clock=clock)
    report(0.0, "start")
    clock.t += 12.0
    report(0.1, "scoring")
    assert seen == [(0.0, "start"), (0.1, "scoring - about 2 min left")]
