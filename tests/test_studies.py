"""The depth-convergence study and the command line, end to end on small cases."""

import numpy as np
import pytest

from vlasov_tf import Params, Schedule, solve_particles
from vlasov_tf.cli import main
from vlasov_tf.geometry.measures import angles_to_circle, von_mises_fisher_mixture
from vlasov_tf.runs.cases import CASES_DIR, load_case
from vlasov_tf.runs.depth_study import depth_convergence
from vlasov_tf.runs.studies import fitted_order


def test_depth_convergence_is_first_order():
    case = load_case(CASES_DIR / "circle_clustering.toml", overrides={"case.T": 2.0})
    res = depth_convergence(case, n_tokens=60, layers=(20, 40, 80, 160), n_times=11)
    assert fitted_order(res.h, res.w1) == pytest.approx(1.0, abs=0.15)
    assert fitted_order(res.h, res.max_error) == pytest.approx(1.0, abs=0.15)
    assert res.max_error[-1] < 0.05
    assert res.ref_error < 1e-3 * res.max_error.min()
    assert res.energy_nondecreasing
    assert res.reference.shape == (11, 60, 2)


def test_cli_particles_writes_table_and_figure(tmp_path, capsys):
    argv = ["particles", "-N", "40", "--set", "case.T=1", "--layers", "10", "20", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "fitted order" in out and "non-decreasing" in out
    png = tmp_path / "particles_depth_convergence.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["particles", "-N", "1"], "at least 2 tokens"),
        (["particles", "--set", "model.beta=-1"], "model.beta must be > 0"),
        (["particles", "--set", "case.T=nan"], "case.T must be finite"),
        (["particles", "cases/sphere_collapse.toml"], "the depth study is on the circle, not the sphere"),
        (["particles", "--set", "model.mask=causal", "--set", "particles.tokens=[96]"], "runs unmasked"),
        (["particles", "--set", "model.perceptron={W = [[1.0], [0.0]], U = [[1.0, 0.0]]}"], "no perceptron"),
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


@pytest.mark.parametrize("attention", ["SA", "USA"])
def test_field_lipschitz_constants_hold(rng, attention):
    """|X[mu](x) - X[mu](y)| <= Lip_x |x - y| and |X[mu](x) - X[nu](x)| <= Lip_mu W1(mu, nu)
    (chordal W1) for random heads, perceptron and measures on S^2."""
    import ot
    from test_model import general_params

    from vlasov_tf import velocity
    from vlasov_tf.geometry.measures import normalize, uniform_sphere
    from vlasov_tf.runs.stability import field_lipschitz

    params = general_params(rng, 3, beta=0.8, attention=attention)
    lip_x, lip_mu = field_lipschitz(params)
    y, w = uniform_sphere(40, 3, rng), rng.random(40)
    x = uniform_sphere(200, 3, rng)
    x2 = normalize(x + 0.05 * rng.standard_normal(x.shape))
    dx = np.linalg.norm(velocity(params, y, w, x) - velocity(params, y, w, x2), axis=1)
    assert (dx <= lip_x * np.linalg.norm(x - x2, axis=1)).all()
    z, v = normalize(y + 0.1 * rng.standard_normal(y.shape)), rng.random(40)
    w1 = ot.emd2(w / w.sum(), v / v.sum(), ot.dist(y, z, metric="euclidean"))
    gap = np.linalg.norm(velocity(params, y, w / w.sum(), x) - velocity(params, z, v / v.sum(), x), axis=1)
    assert gap.max() <= lip_mu * w1


def test_lipschitz_estimate_respects_its_bound(tmp_path):
    from vlasov_tf.runs.cases import parse_case
    from vlasov_tf.runs.stability import lipschitz_estimate

    text = (
        '[case]\nname = "small"\ngeometry = "circle"\nT = 0.5\noutputs = 2\n'
        '[initial]\nfamily = "vmf_mixture"\nangles = [1.0]\nkappas = [1.0]\nproportions = [1.0]\n'
        '[model]\nattention = "SA"\nbeta = 0.5\n'
        "[particles]\ntokens = [50]\nlayers = [10]\nreference_steps = 0\nseed = 0\n"
    )
    est = lipschitz_estimate(parse_case(text, source=str(tmp_path / "small.toml")), n_tokens=50, pairs=4)
    assert np.isfinite(est.ratios).all() and (est.ratios > 0).all()
    assert np.log10(est.ratios.max()) <= est.log10_bound
