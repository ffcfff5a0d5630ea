"""The trainer's ETA comes from a steady window of steps, not the first ones: checked with
given step times (no timing in the test)."""

from __future__ import annotations

from tractable.training import startup
from tractable.training.startup import EtaClock


def run(eta: EtaClock, step_times: list[float], first: int = 0) -> list[tuple[int, str]]:
    """Steps first+1.. taking `step_times`, reported as the trainer does (its training
    seconds after each step, evaluations and logging not among them); (step, line) of each
    line said."""
    said, trained = [], 0.0
    for i, dt in enumerate(step_times):
        trained += dt
        line = eta.line(first + i + 1, trained)
        if line:
            said.append((first + i + 1, line))
    return said


def test_a_slow_warm_up_does_not_inflate_the_estimate() -> None:
    """Compiling makes the first steps 60x slower (the case that once said 9 h 11 min for a
    1 h 53 min run): the estimate is the steady step time."""
    eta = EtaClock(0, 10_000)
    warm = [120.0, 30.0, 5.0, 2.0, 1.0]
    said = run(eta, warm + [0.5] * 40)
    step, line = said[0]
    assert step == startup.ETA_AFTER_STEPS == 25  # 5 warm-up steps + a window of 20
    assert line == ("eta: 0.5 s/step (median of steps 6-25, after 5 warm-up steps): about "
                    "1 h 23 min for the remaining 9,975 steps (evaluations not included)")
    assert len(said) == 1  # steady: said once
    # the old estimate, the mean over the first 20 steps, would have been 16x too long
    mean_first_20 = (sum(warm) + 0.5 * 15) / 20
    assert mean_first_20 / 0.5 > 16


def test_a_stray_slow_step_in_the_window_does_not_move_the_median() -> None:
    eta = EtaClock(0, 1_000)
    times = [1.0] * 5 + [0.2] * 10 + [5.0] + [0.2] * 9
    (step, line), = run(eta, times)
    assert step == 25 and line.startswith("eta: 0.2 s/step")


def test_the_estimate_is_updated_when_the_speed_changes_for_long() -> None:
    """The machine gets 3x slower (other jobs start): a later line says so, no sooner than
    ETA_UPDATE_S of training after the first; small drifts say nothing."""
    eta = EtaClock(100, 100_000)  # a resumed run: steps 101..
    times = [0.5] * 300 + [0.55] * 700 + [1.5] * 400
    said = run(eta, times, first=100)
    assert said[0][1].startswith("eta: 0.5 s/step (median of steps 106-125")
    assert all(line.startswith("eta update") for _, line in said[1:])
    assert said[1][0] > 100 + 1000  # the 10% drift said nothing; the slow-down did
    assert said[-1][1].startswith("eta update: 1.5 s/step")
    timed = [sum(times[5:step - 100]) for step, _ in said]  # training time at each line
    assert all(b - a >= startup.ETA_UPDATE_S for a, b in zip(timed[1:], timed[2:], strict=False))


def test_slow_short_runs_report_after_ten_seconds_of_steady_steps() -> None:
    eta = EtaClock(0, 30)
    (step, line), = run(eta, [13.0] * 29)
    assert step == 7  # 5 warm-up steps, then two steady steps past 10 s
    assert "13 s/step (median of steps 6-7" in line
    assert "about 4 min 59 s for the remaining 23 steps" in line


def test_nothing_is_said_for_runs_that_end_within_the_warm_up() -> None:
    assert run(EtaClock(0, 5), [60.0] * 5) == []
    assert run(EtaClock(0, 8), [60.0] * 8)[-1][0] < 8  # not at the end


def test_steps_reported_together_share_the_time_since_the_last_report() -> None:
    """`line` called after several steps at once splits their time evenly: steady 0.5 s
    steps reported in pairs give the same estimate as reported one by one."""
    eta, said = EtaClock(0, 500), []
    for step in range(2, 70, 2):
        line = eta.line(step, 0.5 * step)
        if line:
            said.append((step, line))
    assert said and said[0][1].startswith("eta: 0.5 s/step") and len(said) == 1
