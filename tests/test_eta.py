"""The trainer's ETA comes from a steady window of steps, not the first ones: checked with
a fake clock (no timing in the test)."""

from __future__ import annotations

from tractable.training import startup
from tractable.training.startup import EtaClock


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(clock: FakeClock, eta: EtaClock, step_times: list[float], first: int = 0,
        between: float = 7.0) -> list[tuple[int, str]]:
    """Steps first+1.. taking `step_times`; (step, line) of each line said."""
    said = []
    for i, dt in enumerate(step_times):
        eta.start_step()
        clock.now += dt
        line = eta.end_step(first + i + 1)
        clock.now += between  # evaluation, logging: not training time
        if line:
            said.append((first + i + 1, line))
    return said


def test_a_slow_warm_up_does_not_inflate_the_estimate() -> None:
    """Compiling makes the first steps 60x slower (the case that once said 9 h 11 min for a
    1 h 53 min run): the estimate is the steady step time."""
    clock = FakeClock()
    eta = EtaClock(0, 10_000, clock=clock)
    warm = [120.0, 30.0, 5.0, 2.0, 1.0]
    said = run(clock, eta, warm + [0.5] * 40)
    step, line = said[0]
    assert step == startup.ETA_AFTER_STEPS == 25  # 5 warm-up steps + a window of 20
    assert line == ("eta: 0.5 s/step (median of steps 6-25, after 5 warm-up steps): about "
                    "1 h 23 min for the remaining 9,975 steps (evaluations not included)")
    assert len(said) == 1  # steady: said once
    # the old estimate, the mean over the first 20 steps, would have been 16x too long
    mean_first_20 = (sum(warm) + 0.5 * 15) / 20
    assert mean_first_20 / 0.5 > 16


def test_a_stray_slow_step_in_the_window_does_not_move_the_median() -> None:
    clock = FakeClock()
    eta = EtaClock(0, 1_000, clock=clock)
    times = [1.0] * 5 + [0.2] * 10 + [5.0] + [0.2] * 9
    (step, line), = run(clock, eta, times)
    assert step == 25 and line.startswith("eta: 0.2 s/step")


def test_the_estimate_is_updated_when_the_speed_changes_for_long() -> None:
    """The machine gets 3x slower (other jobs start): a later line says so, no sooner than
    ETA_UPDATE_S of training after the first; small drifts say nothing."""
    clock = FakeClock()
    eta = EtaClock(100, 100_000, clock=clock)  # a resumed run: steps 101..
    times = [0.5] * 300 + [0.55] * 700 + [1.5] * 400
    said = run(clock, eta, times, first=100)
    assert said[0][1].startswith("eta: 0.5 s/step (median of steps 106-125")
    assert all(line.startswith("eta update") for _, line in said[1:])
    assert said[1][0] > 100 + 1000  # the 10% drift said nothing; the slow-down did
    assert said[-1][1].startswith("eta update: 1.5 s/step")
    timed = [sum(times[5:step - 100]) for step, _ in said]  # training time at each line
    assert all(b - a >= startup.ETA_UPDATE_S for a, b in zip(timed[1:], timed[2:], strict=False))


def test_slow_short_runs_report_after_ten_seconds_of_steady_steps() -> None:
    clock = FakeClock()
    eta = EtaClock(0, 30, clock=clock)
    (step, line), = run(clock, eta, [13.0] * 29)
    assert step == 7  # 5 warm-up steps, then two steady steps past 10 s
    assert "13 s/step (median of steps 6-7" in line
    assert "about 4 min 59 s for the remaining 23 steps" in line


def test_nothing_is_said_for_runs_that_end_within_the_warm_up() -> None:
    clock = FakeClock()
    assert run(clock, EtaClock(0, 5, clock=clock), [60.0] * 5) == []
    assert run(clock, EtaClock(0, 8, clock=clock), [60.0] * 8)[-1][0] < 8  # not at the end


def test_the_trainers_cumulative_count_gives_the_same_lines() -> None:
    """The trainer reports its own training seconds after every step (`line`)."""
    times = [60.0, 9.0, 3.0, 1.0, 1.0] + [0.5] * 30
    clock = FakeClock()
    by_clock = run(clock, EtaClock(0, 500, clock=clock), times)
    eta, trained, said = EtaClock(0, 500), 0.0, []
    for step, dt in enumerate(times, start=1):
        trained += dt
        line = eta.line(step, trained)
        if line:
            said.append((step, line))
    assert said == by_clock and said[0][1].startswith("eta: 0.5 s/step")
