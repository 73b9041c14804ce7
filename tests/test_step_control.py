"""The step controller on a scalar ODE with a known solution, the grid scheme's options, trackers."""

from itertools import pairwise

import numpy as np
import pytest

from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.models.attention import Params, Schedule
from vlasov_tf.parallel import Reductions
from vlasov_tf.solvers.finite_volumes import solve_grid
from vlasov_tf.solvers.grid_scheme import ATOL, RTOL, GridScheme
from vlasov_tf.solvers.step_control import Controller, StepOptions, quantized, ssp_rk3
from vlasov_tf.solvers.time_loop import TimeLoop, Tracker


class Decay:
    """y' = lam y by SSP-RK3 (the grids' stages) with Heun embedded; ``cfl_dt``: the CFL step at
    cfl = 1; ``rate_scale`` < 1 makes first_step's estimate too long (a rejection follows)."""

    def __init__(self, lam=-1.0, cfl_dt=np.inf, rate_scale=1.0, noise=0.0):
        self.lam, self.cfl_dt, self.rate_scale, self.noise = lam, cfl_dt, rate_scale, noise

    def velocity(self, t, state):
        return self.lam

    def stable_dt(self, velocity, cfl):
        return cfl * self.cfl_dt

    def rate(self, state, velocity):
        return self.rate_scale * velocity * state

    def step(self, state, t, dt, velocity):
        new, low = ssp_rk3(lambda m, ts, u: m + dt * self.lam * m, state, t, dt, velocity)
        return new, low + self.noise  # noise: an error estimate that never shrinks


def run(stepper, t_eval=(0.0, 2.0), rtol=RTOL, atol=ATOL, cfl=0.5, max_dt=None, t0=0.0, y0=1.0,
        reductions=None):  # fmt: skip
    """(outputs, accepted dts, controller) of y(0) = y0 to T = 2."""
    loop = TimeLoop.start(2.0, np.array([0.0, 2.0]), list(t_eval), t0)
    control = Controller(StepOptions(cfl, max_dt, rtol, atol), reductions or Reductions(1), loop.tol)
    outputs, dts = [], []

    def emit(t, y):
        outputs.append((t, float(y[0]), *control.since_output()))
        return y

    loop.stepped = lambda t, dt: dts.append(dt)
    control.run(loop, np.array([y0]), lambda t, t_next: stepper, emit)
    return outputs, dts, control


def test_accepted_steps_follow_the_solution_and_the_rules():
    outputs, dts, control = run(Decay(), t_eval=np.linspace(0.0, 2.0, 5))
    ts, ys = np.array([o[0] for o in outputs]), np.array([o[1] for o in outputs])
    np.testing.assert_array_equal(ts, np.linspace(0.0, 2.0, 5))  # outputs land exactly
    np.testing.assert_allclose(ys, np.exp(-ts), rtol=2e-4)  # third order at rtol 1e-3
    assert control.rejected == 0 and control.taken == len(dts) == sum(o[2] for o in outputs)
    assert all(b <= 5 * a for a, b in pairwise(dts))  # growth at most 5x
    # Each step is (stop - t) / k for an integer k: equal steps to the stop (every 0.5), landing on it.
    t = np.r_[0.0, np.cumsum(dts)[:-1]]
    k = (0.5 * np.floor(t / 0.5 + 1 + 1e-9) - t) / np.array(dts)
    np.testing.assert_allclose(k, np.round(k), rtol=1e-9)
    assert (np.round(k) > 1).any()
    tighter = run(Decay(), rtol=1e-5)[2]
    assert tighter.taken > 2 * control.taken


def test_steps_are_quantised_to_powers_of_two_sixteenths():
    x = np.geomspace(1e-9, 10.0, 2001)
    q = np.array([quantized(v) for v in x])
    assert (q <= x).all() and (x < q * 2 ** (1 / 16) * (1 + 1e-15)).all()
    j = 16 * np.log2(q)
    np.testing.assert_allclose(j, np.round(j), atol=1e-9)
    assert quantized(np.inf) == np.inf
    # Round-off in the norms (what another number of MPI ranks changes) leaves the steps alone.

    class Noisy(Reductions):
        def l1(self, x):
            return super().l1(x) * (1 + 3e-16)

    plain, noisy = run(Decay(lam=-3.0)), run(Decay(lam=-3.0), reductions=Noisy(1))
    assert plain[1] == noisy[1] and plain[0][-1][1] == noisy[0][-1][1]


def test_a_rejected_step_is_retried_shorter_and_the_next_does_not_grow():
    _, dts, control = run(Decay(lam=-4.0, rate_scale=1e-3), t_eval=(0.0, 2.0))
    assert control.rejected >= 1
    # The estimate took the whole run; the first accepted step is a retried one, and the step
    # after it is no longer.
    assert dts[0] < 0.5 and dts[1] <= dts[0]
    _, dts_ok, _ = run(Decay(lam=-4.0), t_eval=(0.0, 2.0))
    assert abs(sum(dts) - 2.0) < 1e-12 and len(dts_ok) > 1


def test_fixed_steps_and_caps():
    # rtol=None: the CFL step (cfl * cfl_dt) and max_dt, equal steps to the stop.
    _, dts, control = run(Decay(cfl_dt=0.3), rtol=None, cfl=0.5)
    assert control.rejected == 0 and dts == pytest.approx([2.0 / 14] * 14, rel=1e-12)
    _, dts, _ = run(Decay(cfl_dt=0.3), rtol=None, max_dt=0.1)
    assert dts == pytest.approx([0.1] * 20, rel=1e-12)
    # Error control under a CFL cap: no step beyond it.
    _, dts, _ = run(Decay(lam=-0.01, cfl_dt=0.3))
    assert max(dts) <= 0.15


def test_a_resumed_run_takes_the_same_steps():
    times = np.linspace(0.0, 2.0, 5)
    full = run(Decay(lam=-2.0), t_eval=times)[0]
    rest = run(Decay(lam=-2.0), t_eval=times, t0=1.0, y0=full[2][1])[0]
    assert rest[0] == (*full[2][:2], 0, 0) and rest[1:] == full[3:]  # same bits, same steps


def test_failures_are_named():
    with pytest.raises(FloatingPointError, match="fell below 1e-12 T"):
        run(Decay(noise=1.0))
    with pytest.raises(FloatingPointError, match="non-finite at t = 0"):
        run(Decay(noise=np.nan))


# --------------------------------------------------------------------- the grid scheme's options
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cfl": 0.0}, r"the CFL number must lie in \(0, 1\]; got 0.0"),
        ({"cfl": np.nan}, "CFL"),
        ({"max_dt": 0.0}, r"max_dt must be finite and > 0; got 0.0"),
        ({"rtol": 1.0}, r"rtol must lie in \(0, 1\); got 1.0"),
        ({"atol": -1.0}, r"atol must lie in \(0, 1\); got -1.0"),
        ({"field_method": "fast"}, "unknown field method 'fast'"),
        ({"limiter": "superbee"}, "unknown limiter 'superbee'"),
        ({"limiter": "none"}, "applies to either reconstruction: name one"),
        ({"reconstruction": "linear", "limiter": "positivity"}, "the linear reconstruction takes"),
    ],
)
def test_the_scheme_is_checked_once_with_named_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridScheme(**kwargs)


def test_the_scheme_fills_in_defaults_and_equals_the_keywords():
    assert (GridScheme().reconstruction, GridScheme().limiter) == ("quadratic", "positivity")
    assert GridScheme(limiter="barth-jespersen").reconstruction == "linear"
    assert GridScheme(rtol=None).rtol is None
    mesh = circle_mesh(32)
    rho0 = 1.0 + 0.5 * np.cos(np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0]))
    model = Schedule.constant(Params.identity(2, 4.0, "USA"), 0.3)
    kw = {"reconstruction": "linear", "cfl": 0.4, "rtol": 1e-4}
    a = solve_grid(mesh, rho0, model, **kw)
    b = solve_grid(mesh, rho0, model, scheme=GridScheme(**kw))
    np.testing.assert_array_equal(a.densities, b.densities)
    assert (a.steps, a.rejected) == (b.steps, b.rejected)
    with pytest.raises(ValueError, match="either as scheme= or as keywords"):
        solve_grid(mesh, rho0, model, scheme=GridScheme(), cfl=0.3)


def test_trackers_see_outputs_in_order_and_every_step():
    class Seen(Tracker):
        def __init__(self):
            self.events = []

        def start(self, t0, T):
            self.events.append(("start", t0, T))

        def at_step(self, t, dt):
            self.events.append(("step", dt))

        def at_output(self, t, state, taken, rejected):
            self.events.append(("out", t, taken, rejected))

        def finish(self):
            self.events.append(("finish",))

    mesh = circle_mesh(32)
    rho0 = 1.0 + 0.5 * np.cos(np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0]))
    seen, order = Seen(), []
    sol = solve_grid(mesh, rho0, Schedule.constant(Params.identity(2, 4.0), 0.4), t_eval=[0.0, 0.2, 0.4],
                     trackers=[seen], callback=lambda t, s: order.append("callback"),
                     step_counts=lambda *a: order.append("counts"))  # fmt: skip
    ev = seen.events
    assert ev[0] == ("start", 0.0, 0.4) and ev[-1] == ("finish",)
    steps = [e[1] for e in ev if e[0] == "step"]
    outs = [e for e in ev if e[0] == "out"]
    assert len(steps) == sol.steps and sum(steps) == pytest.approx(0.4, rel=1e-12)
    assert [o[1] for o in outs] == [0.0, 0.2, 0.4] and sum(o[2] for o in outs) == sol.steps
    assert order == ["counts", "callback"] * 3  # the counts before the snapshot
