"""The time bookkeeping the solvers share (vlasov_tf/solvers/time_loop.py)."""

import re

import numpy as np
import pytest

from vlasov_tf.solvers.time_loop import TimeLoop, output_times


def test_output_times_default_and_rounding_overshoot():
    assert np.array_equal(output_times(None, 2.0), [0.0, 2.0])
    t = output_times(np.linspace(0.0, 0.3, 4) * (1 + 1e-15), 0.3)
    assert t[-1] == 0.3


@pytest.mark.parametrize(
    ("t_eval", "message"),
    [
        ([], "non-empty list of finite numbers"),
        ([0.0, np.nan], "non-empty list of finite numbers"),
        ([0.0, 1.0, 1.0], "strictly increasing"),
        ([-0.1, 1.0], r"must lie in \[0, T\]"),
        ([0.0, 1.1], r"must lie in \[0, T\]"),
    ],
)
def test_bad_output_times_are_named(t_eval, message):
    with pytest.raises(ValueError, match=message):
        output_times(t_eval, 1.0)


def test_stops_outputs_and_resume_points():
    """Switches at 0.5, outputs at 0, 0.25, 0.5 + rounding, 1: one stop at 0.5; a resume at 0.25
    returns the outputs from there; a resume between stops is refused."""
    switches = np.array([0.0, 0.5, 1.0])
    loop = TimeLoop.start(1.0, switches, [0.0, 0.25, 0.5 + 1e-14, 1.0])
    assert np.array_equal(loop.stops, [0.0, 0.25, 0.5, 1.0])
    assert loop.next_stop(0.0) == 0.25 and loop.next_stop(0.25 - 1e-14) == 0.5
    assert list(loop.due(0.0)) == [0.0] and list(loop.due(0.0)) == []
    assert list(loop.due(0.5)) == [0.25, 0.5 + 1e-14]
    assert list(loop.rest()) == [1.0] and loop.finished(1.0 - 1e-14) and not loop.finished(0.9)
    resumed = TimeLoop.start(1.0, switches, [0.0, 0.25, 0.75, 1.0], t0=0.25)
    assert np.array_equal(resumed.times, [0.25, 0.75, 1.0]) and resumed.next_stop(0.25) == 0.5
    with pytest.raises(ValueError, match="neither a switch nor an output time: cannot resume there"):
        TimeLoop.start(1.0, switches, [0.0, 1.0], t0=0.3)


def test_store_keeps_snapshots_and_calls_back():
    seen = []
    loop = TimeLoop.start(1.0, np.array([0.0, 1.0]), None, callback=lambda t, s: seen.append((t, s)))
    loop.store(0.0, "a")
    loop.store(1.0, "b")
    assert loop.snapshots == ["a", "b"] and seen == [(0.0, "a"), (1.0, "b")]


def test_every_solver_takes_an_output_a_rounding_past_a_switch():
    """Switch at 0.3, output at 0.1 + 0.2 = 0.30000000000000004: the adaptive reference skipped it
    (its blocks took outputs in (start + tol, t1]); every solver now returns one state per time."""
    from vlasov_tf import Params, Schedule, solve_particles
    from vlasov_tf.geometry.measures import angles_to_circle
    from vlasov_tf.geometry.meshes import circle_mesh
    from vlasov_tf.solvers.finite_volumes import solve_grid

    schedule = Schedule(((0.3, Params.identity(2, 1.0)), (0.7, Params.identity(2, 2.0))))
    t_eval = [0.0, 0.1, 0.1 + 0.2, 1.0]
    x0 = angles_to_circle(np.linspace(0.0, 3.0, 12))
    for method, steps in (("adaptive", None), ("rk4", 20), ("layers", 20)):
        sol = solve_particles(schedule, x0, method=method, steps=steps, t_eval=t_eval)
        assert sol.positions.shape == (4, 12, 2) and np.array_equal(sol.times, t_eval), method
    mesh = circle_mesh(32)
    grid = solve_grid(mesh, 1.0 + 0.5 * np.cos(np.arctan2(*mesh.centres.T[::-1])) / (2 * np.pi), schedule,
                      t_eval=t_eval)  # fmt: skip
    assert grid.densities.shape == (4, 32)


def test_a_long_job_logs_its_progress_without_a_terminal(caplog, monkeypatch):
    """A grid job printed nothing for minutes unless --progress (a bar, on a terminal) was given:
    a batch job's log showed no sign of life nor when it would end."""
    import logging

    import vlasov_tf.logs as logs
    from vlasov_tf import Head, Params, Schedule
    from vlasov_tf.geometry.meshes import circle_mesh
    from vlasov_tf.solvers.finite_volumes import solve_grid

    monkeypatch.setattr(logs, "PROGRESS_INTERVAL", 0.0)  # every step, for the test
    mesh = circle_mesh(64)
    model = Schedule.constant(Params(heads=(Head(B=np.eye(2), V=np.eye(2)),)), 0.5)
    with caplog.at_level(logging.INFO, logger="vlasov_tf.progress"):
        solve_grid(mesh, np.full(64, 1 / (2 * np.pi)), model, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "vlasov_tf.progress"]
    assert lines, "no progress record"
    assert re.fullmatch(
        r"grid \(circle, C=64\): t = [\d.e+-]+ of 0\.5 \(\d+%\), [\d.e+-]+ t/s, about .+ left \(ends "
        r"\d{4}-\d\d-\d\d \d\d:\d\d\)", lines[-1]
    ), lines[-1]
