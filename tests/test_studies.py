"""The depth-convergence study and the command line, end to end on small cases."""

import numpy as np
import pytest

from vlasov_tf import Params, Schedule, solve_particles
from vlasov_tf.cli import main
from vlasov_tf.measures import angles_to_circle, von_mises_fisher_mixture
from vlasov_tf.studies import depth_convergence, fitted_order


def test_depth_convergence_is_first_order():
    res = depth_convergence(n_tokens=60, beta=4.0, T=2.0, layers=(20, 40, 80, 160), n_times=11)
    assert fitted_order(res.h, res.w1) == pytest.approx(1.0, abs=0.15)
    assert fitted_order(res.h, res.max_error) == pytest.approx(1.0, abs=0.15)
    assert res.max_error[-1] < 0.05
    assert res.ref_error < 1e-3 * res.max_error.min()
    assert res.energy_nondecreasing
    assert res.reference.shape == (11, 60, 2)


def test_cli_particles_writes_table_and_figure(tmp_path, capsys):
    assert main(["particles", "-N", "40", "-T", "1", "--layers", "10", "20", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fitted order" in out and "non-decreasing" in out
    png = tmp_path / "particles_depth_convergence.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["particles", "-N", "1"], "at least 2 tokens"),
        (["particles", "--beta", "-1"], "must be a finite number > 0"),
        (["particles", "-T", "nan"], "must be a finite number > 0"),
        (["particles", "--layers", "0"], "must be >= 1"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_steps_are_honoured_exactly_with_uneven_cuts(rng):
    """Switch at 0.4 and outputs at 0.1, 0.35: the requested number of layers is kept."""
    s = Schedule(((0.4, Params.identity(2, 1.0)), (0.6, Params.identity(2, 2.0))))
    x0 = angles_to_circle(rng.uniform(0, 6, 5))
    for steps in (7, 25, 101):
        sol = solve_particles(s, x0, method="layers", steps=steps, t_eval=[0.0, 0.1, 0.35, 1.0])
        assert sol.steps == steps


def test_mixture_sampler_with_empty_components(rng):
    means = angles_to_circle(np.array([0.0, 1.0, 2.0]))
    x = von_mises_fisher_mixture(1, means, np.ones(3), np.array([0.0, 0.5, 0.5]), rng)
    assert x.shape == (1, 2)
