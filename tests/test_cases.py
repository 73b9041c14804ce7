"""Case files: the shipped cases load and make sense, the initial measures are what they say, bad files fail.

The initial measures are checked against mathematics: densities integrate to 1
by quadratures independent of the code (trapezoid on S^1, Gauss-Legendre x
trapezoid on S^2, the zonal reduction in any d), samples have the moments of
the density, von Mises-Fisher samples have the mean resultant length
A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa), cell averages are the exact
means over the cells and differ from point values by O(h^2).
"""

import re

import numpy as np
import pytest
from numpy.polynomial.legendre import leggauss
from scipy import integrate, special

from vlasov_tf import Head, Params, velocity
from vlasov_tf.geometry.initial import InitialMeasure, VmfMixture, sphere_measure
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.runs.cases import (
    CASES_DIR,
    Case,
    load_case,
    parse_case,
    shipped_cases,
)

SHIPPED = (
    "circle_clustering",
    "circle_instability",
    "general_two_block",
    "sphere_collapse",
    "sphere_metastable",
)


# -- helpers --------------------------------------------------------------------------------------------


def circle_quadrature(n: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trapezoid rule on S^1 (spectrally accurate for smooth periodic functions): angles, points, weights."""
    t = 2 * np.pi * np.arange(n) / n
    return t, np.stack([np.cos(t), np.sin(t)], axis=1), np.full(n, 2 * np.pi / n)


def sphere_quadrature(nz: int = 96, nphi: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre in z = cos(theta) times the trapezoid rule in phi: (points (n, 3), weights (n,))."""
    z, wz = leggauss(nz)
    phi = 2 * np.pi * np.arange(nphi) / nphi
    s = np.sqrt(1 - z**2)
    x = np.stack(np.broadcast_arrays(s[:, None] * np.cos(phi), s[:, None] * np.sin(phi), z[:, None]), -1)
    return x.reshape(-1, 3), np.repeat(wz * 2 * np.pi / nphi, nphi)


def case_text(
    geometry: str, initial: str, *, d: int | None = None, grid: bool = True, extra: str = ""
) -> str:
    """A minimal valid case around an [initial] table."""
    dim = f"d = {d}\n" if d is not None else ""
    res = {"circle": "[16, 32]", "sphere": "[0]"}.get(geometry)
    grid_table = f"[grid]\nresolutions = {res}\n" if grid and res else ""
    return (
        f'[case]\nname = "t"\ngeometry = "{geometry}"\n{dim}T = 1.0\noutputs = 3\n\n'
        f"[initial]\n{initial}\n\n[model]\nbeta = 2.0\n{extra}\n"
        f"[particles]\ntokens = [10]\nlayers = [4]\n\n{grid_table}"
    )


def measure(geometry: str, initial: str, d: int | None = None) -> InitialMeasure:
    return parse_case(case_text(geometry, initial, d=d, grid=False)).initial


CIRCLE_MEASURES = {
    "uniform": 'family = "uniform"',
    "vmf_mixture": 'family = "vmf_mixture"\nangles = [0.5, 2.5, 4.5]\nkappas = [2.0, 3.0, 30.0]\n'
    "proportions = [0.3, 0.3, 0.4]",
    "uniform_perturbed": 'family = "uniform_perturbed"\namplitude = 0.8\nk = 2\nphase = 0.3',
}
SPHERE_MEASURES = {
    "uniform": 'family = "uniform"',
    "vmf_mixture": 'family = "vmf_mixture"\nmeans = [[0.0, 0.0, 1.0], [0.6, 0.8, 0.0], [0.0, -0.6, -0.8]]\n'
    "kappas = [2.0, 10.0, 0.5]\nproportions = [0.2, 0.5, 0.3]",
    "uniform_perturbed": 'family = "uniform_perturbed"\namplitude = 1.5\nl = 2\naxis = [0.6, 0.0, 0.8]',
    "odd_harmonic": 'family = "uniform_perturbed"\namplitude = -0.9\nl = 3',
}


def a_d(d: int, kappa: float) -> float:
    """Mean resultant length of the vMF law on S^{d-1}: I_{d/2}(kappa) / I_{d/2-1}(kappa)."""
    return special.ive(d / 2, kappa) / special.ive(d / 2 - 1, kappa)


# -- the shipped cases ----------------------------------------------------------------------------------


def test_the_issue_cases_are_shipped():
    assert {p.stem for p in shipped_cases()} >= set(SHIPPED)
    assert all(p.parent == CASES_DIR for p in shipped_cases())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_case_loads_and_makes_sense(name, rng):
    path = CASES_DIR / f"{name}.toml"
    case = load_case(path)
    assert isinstance(case, Case)
    assert case.name == name and case.source == str(path) and case.text == path.read_text()
    assert case.description
    assert case.d == {"circle": 2, "sphere": 3}[case.geometry] == case.model.d
    assert case.T == case.schedule.T > 0
    t = case.output_times
    assert t[0] == 0.0 and t[-1] == case.T and (np.diff(t) > 0).all() and len(t) >= 2
    assert len(case.betas) == len(case.schedule.blocks) and min(case.betas) > 0
    p = case.particles
    assert p.tokens and p.layers and min(p.tokens) >= 1 and min(p.layers) >= 1
    assert p.reference_steps >= 0 and p.seed >= 0
    # Defaults that run in minutes on 2 cores (dense sums ~8e8 pairs/s): the finest
    # resolutions belong to the full study.
    assert sum(n * n for n in p.tokens) * sum(p.layers) <= 5e9
    g = case.grid
    assert g is not None and 0 < g.cfl <= 1 and g.limiter in ("barth-jespersen", "positivity", "none")
    assert g.max_dt is None or 0 < g.max_dt <= case.T
    assert 0 < g.rtol <= 1e-3 and 0 < g.atol <= 1e-8  # the accuracy the shipped cases were checked at
    if case.geometry == "circle":
        assert all(3 <= m <= 4096 for m in g.resolutions)
    else:
        assert all(0 <= k <= 2 for k in g.resolutions)  # the committed sphere meshes
    # The initial measure on the coarsest grid, and as tokens.
    mesh = case.mesh(g.resolutions[0])
    rho = case.initial.cell_averages(mesh)
    assert rho.min() >= 0 and rho @ mesh.areas == pytest.approx(1.0, abs=1e-12)
    x, w = case.initial_tokens(p.tokens[0])
    assert x.shape == (p.tokens[0], case.d) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-12)
    assert w.sum() == pytest.approx(1.0)
    assert np.array_equal(case.initial_tokens(p.tokens[0])[0], x)  # reproducible


def test_general_two_block_has_its_structure():
    case = load_case(CASES_DIR / "general_two_block.toml")
    (tau0, p0), (tau1, p1) = case.schedule.blocks
    assert (tau0, tau1) == (1.0, 1.5) and case.betas == (1.5, 3.0)
    assert len(p0.heads) == 2 and len(p1.heads) == 1
    assert p0.perceptron is not None and p1.perceptron is not None
    assert p0.perceptron.W.shape == (3, 4) and p1.perceptron.W.shape == (3, 2)
    for head in p0.heads + p1.heads:
        assert not np.allclose(head.B, head.B[0, 0] * np.eye(3))  # not a zonal kernel


def test_instability_case_uses_quantile_tokens():
    """Amplitude 1e-3 survives in the tokens: their mode-3 coefficient is a/2 up to O(1/N^2)."""
    case = load_case(CASES_DIR / "circle_instability.toml")
    assert case.particles.sampling == "quantiles" and case.initial.amplitude == 1e-3
    x, _ = case.initial_tokens(1000)
    c3 = np.exp(3j * np.arctan2(x[:, 1], x[:, 0])).mean()
    assert abs(c3 - 0.5e-3) < 1e-6


def test_docstring_example_is_a_valid_case():
    """The layout in the module docstring parses, and uses every section."""
    import vlasov_tf.runs.cases as mod

    doc = mod.__doc__
    block = doc[doc.index("# --8<-- example") : doc.index("# --8<-- end")]
    text = "\n".join(line.removeprefix("    ") for line in block.splitlines())
    case = parse_case(text)
    assert case.grid is not None and len(case.schedule.blocks) == 2
    (_, p0), (_, p1) = case.schedule.blocks
    assert len(p0.heads) == 2 and case.betas == (1.0, 2.0)
    assert p0.perceptron is not None and not np.array_equal(p0.perceptron.W, p1.perceptron.W)
    # The second block overrides beta only: same Q, K, V, so B scales by 2.
    np.testing.assert_allclose(p1.heads[1].B, 2.0 * p0.heads[1].B)


# -- the initial measures -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", CIRCLE_MEASURES)
def test_circle_density_integrates_to_one_and_samples_match(family, rng):
    mu = measure("circle", CIRCLE_MEASURES[family])
    t, x, w = circle_quadrature()
    rho = mu.density(x)
    assert rho.min() > 0 and rho @ w == pytest.approx(1.0, abs=1e-12)
    n = 20000
    ts = np.arctan2(*mu.sample(n, rng)[:, ::-1].T)
    for k in (1, 2, 3):
        for f in (np.cos, np.sin):
            assert abs(f(k * ts).mean() - (f(k * t) * rho) @ w) < 5 / np.sqrt(n), (k, f)


@pytest.mark.parametrize("family", SPHERE_MEASURES)
def test_sphere_density_integrates_to_one_and_samples_match(family, rng):
    mu = measure("sphere", SPHERE_MEASURES[family])
    x, w = sphere_quadrature()
    rho = mu.density(x)
    assert rho.min() > 0 and rho @ w == pytest.approx(1.0, abs=1e-10)
    n = 20000
    s = mu.sample(n, rng)
    assert np.allclose(np.linalg.norm(s, axis=1), 1.0, atol=1e-12)
    first = (x * (rho * w)[:, None]).sum(axis=0)
    second = np.einsum("ni,nj,n->ij", x, x, rho * w)
    assert np.abs(s.mean(axis=0) - first).max() < 5 / np.sqrt(n)
    assert np.abs(s.T @ s / n - second).max() < 5 / np.sqrt(n)


def test_uniform_perturbed_density_is_the_formula():
    mu = measure("circle", CIRCLE_MEASURES["uniform_perturbed"])
    t, x, _ = circle_quadrature(64)
    np.testing.assert_allclose(mu.density(x), (1 + 0.8 * np.cos(2 * (t - 0.3))) / (2 * np.pi), rtol=1e-14)
    mu = measure("sphere", SPHERE_MEASURES["uniform_perturbed"])
    x, _ = sphere_quadrature(8, 8)
    s = x @ np.array([0.6, 0.0, 0.8])
    np.testing.assert_allclose(mu.density(x), (1 + 1.5 * (3 * s**2 - 1) / 2) / (4 * np.pi), rtol=1e-13)


@pytest.mark.parametrize("d", [2, 3, 4, 6])
@pytest.mark.parametrize("kappa", [0.3, 4.0, 60.0])
def test_vmf_density_in_any_dimension(d, kappa):
    """Zonal reduction: int f(<m, x>) dsigma = |S^{d-2}| int f(s) (1 - s^2)^{(d-3)/2} ds; mean length A_d."""
    m = np.zeros(d)
    m[-1] = 1.0
    mu = VmfMixture(d, means=m[None], kappas=np.array([kappa]), proportions=np.ones(1))

    def f(s: float, power: int) -> float:
        x = np.sqrt(max(1 - s * s, 0.0)) * np.eye(d)[0] + s * m
        return mu.density(x[None])[0] * s**power * (1 - s * s) ** ((d - 3) / 2) * sphere_measure(d - 1)

    if d == 2:  # S^0 has measure 2 and the weight (1 - s^2)^{-1/2} is singular: integrate in the angle
        mass = integrate.quad(lambda t: mu.density(np.array([[np.sin(t), np.cos(t)]]))[0], -np.pi, np.pi)[0]
        mean = integrate.quad(
            lambda t: np.cos(t) * mu.density(np.array([[np.sin(t), np.cos(t)]]))[0], -np.pi, np.pi
        )[0]
    else:
        opts = {"points": [1 - 1 / kappa], "limit": 200, "epsabs": 1e-13}
        mass = integrate.quad(f, -1, 1, args=(0,), **opts)[0]
        mean = integrate.quad(f, -1, 1, args=(1,), **opts)[0]
    assert mass == pytest.approx(1.0, rel=1e-9)
    assert mean == pytest.approx(a_d(d, kappa), rel=1e-8)


@pytest.mark.parametrize(("d", "kappa"), [(2, 1.0), (2, 20.0), (3, 0.5), (3, 8.0), (5, 3.0)])
def test_vmf_samples_have_the_mean_resultant_length(d, kappa, rng):
    m = rng.standard_normal(d)
    m /= np.linalg.norm(m)
    mu = VmfMixture(d, means=m[None], kappas=np.array([kappa]), proportions=np.ones(1))
    n = 20000
    mean = mu.sample(n, rng).mean(axis=0)
    assert abs(mean @ m - a_d(d, kappa)) < 5 / np.sqrt(n)
    assert np.linalg.norm(mean - (mean @ m) * m) < 5 / np.sqrt(n)


def test_gaussian_in_euclidean_space(rng):
    text = case_text(
        "euclidean",
        'family = "gaussian"\nmean = [1.0, -2.0]\ncovariance = [[2.0, 0.6], [0.6, 0.5]]',
        d=2,
        grid=False,
    )
    case = parse_case(text)
    assert case.grid is None and not case.sphere and case.d == 2
    mu = case.initial
    g = np.linspace(-12, 12, 601)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    assert mu.density(pts).sum() * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=1e-10)
    s = mu.sample(20000, rng)
    assert np.abs(s.mean(axis=0) - [1.0, -2.0]).max() < 5 * np.sqrt(2 / 20000)
    assert np.abs(np.cov(s.T) - [[2.0, 0.6], [0.6, 0.5]]).max() < 0.1
    with pytest.raises(ValueError, match="grid"):
        mu.cell_averages(circle_mesh(8))


def test_points_file_relative_to_the_case(tmp_path, rng):
    pts = rng.standard_normal((50, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    weights = rng.random(50)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "tokens.npz", points=pts, weights=weights)
    np.save(tmp_path / "data" / "plain.npy", pts)
    path = tmp_path / "c.toml"
    path.write_text(case_text("sphere", 'family = "file"\npath = "data/tokens.npz"', grid=False))
    mu = load_case(path).initial
    assert mu.family == "file" and mu.path == str(tmp_path / "data" / "tokens.npz")
    np.testing.assert_allclose(mu.points, pts, atol=1e-15)
    np.testing.assert_allclose(mu.weights, weights / weights.sum())
    # Sampling draws atoms with probabilities their weights.
    idx = np.argmin(np.linalg.norm(mu.sample(40000, rng)[:, None] - pts[None], axis=2), axis=1)
    freq = np.bincount(idx, minlength=50) / 40000
    assert np.abs(freq - mu.weights).max() < 5 / np.sqrt(40000)
    with pytest.raises(ValueError, match="no density"):
        mu.density(pts)
    with pytest.raises(ValueError, match="grid"):
        mu.cell_averages(sphere_mesh(0))
    # .npy: equal weights; "atoms" gives the points themselves.
    extra = '\n[particles]\ntokens = [50]\nlayers = [4]\nsampling = "atoms"\n'
    text = case_text("sphere", 'family = "file"\npath = "data/plain.npy"', grid=False)
    path.write_text(text.split("[particles]")[0] + extra)
    case = load_case(path)
    x, w = case.initial_tokens(50)
    np.testing.assert_allclose(x, pts, atol=1e-15)
    np.testing.assert_allclose(w, 1 / 50)
    # A grid needs a density; a missing points file is named.
    path.write_text(case_text("sphere", 'family = "file"\npath = "data/plain.npy"'))
    with pytest.raises(ValueError, match=r"c\.toml: grid .*file"):
        load_case(path)
    path.write_text(case_text("sphere", 'family = "file"\npath = "nothere.npy"', grid=False))
    with pytest.raises(FileNotFoundError, match=r"c\.toml: initial\.path.*nothere\.npy"):
        load_case(path)


# -- cell averages and quantiles -------------------------------------------------------------------------


@pytest.mark.parametrize("family", CIRCLE_MEASURES)
def test_circle_cell_averages_are_exact_means(family):
    mu = measure("circle", CIRCLE_MEASURES[family])
    mesh = circle_mesh(24)
    rho = mu.cell_averages(mesh)
    assert rho.min() >= 0 and rho @ mesh.areas == pytest.approx(1.0, abs=1e-13)
    for c in (0, 7, 23):
        a = c * 2 * np.pi / 24
        exact = integrate.quad(
            lambda t: mu.density(np.array([[np.cos(t), np.sin(t)]]))[0], a, a + 2 * np.pi / 24
        )
        assert rho[c] == pytest.approx(exact[0] / mesh.areas[c], rel=1e-9)


def test_cell_averages_differ_from_centre_values_at_order_two():
    mu = measure("circle", CIRCLE_MEASURES["vmf_mixture"])
    cells = [64, 128, 256, 512]
    gaps = []
    for m in cells:
        mesh = circle_mesh(m)
        centre = mu.cell_averages(mesh, method="centre")
        assert centre @ mesh.areas == pytest.approx(1.0, abs=1e-13)
        gaps.append(np.abs(mu.cell_averages(mesh) - centre).max())
    order = np.polyfit(np.log(2 * np.pi / np.array(cells)), np.log(gaps), 1)[0]
    assert order == pytest.approx(2.0, abs=0.1) and gaps[-1] < 1e-3

    mu = measure("sphere", SPHERE_MEASURES["vmf_mixture"])
    h, gaps = [], []
    for level in (0, 1, 2):
        mesh = sphere_mesh(level)
        rho = mu.cell_averages(mesh)
        assert rho.min() >= 0 and rho @ mesh.areas == pytest.approx(1.0, abs=1e-12)
        h.append(mesh.h)
        gaps.append(np.abs(rho - mu.cell_averages(mesh, method="centre")).max())
    order = np.polyfit(np.log(h), np.log(gaps), 1)[0]
    assert order == pytest.approx(2.0, abs=0.25)


def test_sphere_cell_averages_of_a_linear_density_converge_at_order_six():
    """For 1 + a <x, e>, the mean over a cell is (1 + a <int_T x dsigma, e> / |T|) / 4 pi, with
    int_T x dsigma = 1/2 sum_edges arc(p, q) (p x q) / |p x q| (divergence theorem). The degree-5
    rule on the projected triangle errs by O(h^6)."""
    e = np.array([0.6, 0.0, 0.8])
    mu = measure("sphere", f'family = "uniform_perturbed"\namplitude = 0.7\nl = 1\naxis = {e.tolist()}')
    h, errors = [], []
    for level in (0, 1):
        mesh = sphere_mesh(level)
        p = mesh.vertices[mesh.cell_vertices]
        q = np.roll(p, -1, axis=1)
        cross = np.cross(p, q)
        arc = 2 * np.arcsin(np.linalg.norm(p - q, axis=-1) / 2)
        moment = 0.5 * np.einsum("ck,cki->ci", arc / np.linalg.norm(cross, axis=-1), cross)
        exact = (1 + 0.7 * (moment @ e) / mesh.areas) / (4 * np.pi)
        h.append(mesh.h)
        errors.append(np.abs(mu.cell_averages(mesh) / exact - 1).max())
    assert errors[0] < 1e-7
    assert np.log(errors[0] / errors[1]) / np.log(h[0] / h[1]) > 5.5


def test_cell_averages_refuse_another_manifold_and_method():
    mu = measure("circle", CIRCLE_MEASURES["uniform"])
    with pytest.raises(ValueError, match="mesh"):
        mu.cell_averages(sphere_mesh(0))
    with pytest.raises(ValueError, match="method"):
        mu.cell_averages(circle_mesh(8), method="simpson")


@pytest.mark.parametrize("family", CIRCLE_MEASURES)
def test_quantile_points(family):
    """F(t_i) = (i + 1/2) / n exactly, and Fourier coefficients to O(k^2 / n^2)."""
    mu = measure("circle", CIRCLE_MEASURES[family])
    n = 400
    x = mu.quantiles(n)
    t = np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * np.pi)
    assert (np.diff(t) > 0).all()
    for i in (0, 137, n - 1):
        F = integrate.quad(lambda s: mu.density(np.array([[np.cos(s), np.sin(s)]]))[0], 0, t[i], limit=200)
        assert F[0] == pytest.approx((i + 0.5) / n, abs=1e-11)
    tq, xq, w = circle_quadrature()
    rho = mu.density(xq)
    for k in (1, 2, 3):
        exact = (np.exp(1j * k * tq) * rho) @ w
        assert abs(np.exp(1j * k * t).mean() - exact) < 2 * k**2 / n**2


# -- overrides and block semantics ------------------------------------------------------------------------


GENERAL = """
[case]
name = "g"
geometry = "circle"
T = 2.0
outputs = [0.0, 0.5, 2.0]

[initial]
family = "uniform"

[model]
attention = "USA"
beta = 2.0
Q = [[[1.0, 0.5], [0.0, 1.0]], [[0.0, -1.0], [1.0, 0.0]]]
K = [[[1.0, 0.0], [0.2, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]
V = [[[0.5, 0.0], [0.0, 0.5]], [[1.0, 1.0], [0.0, 1.0]]]

[model.perceptron]
W = [[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]
U = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]

[[schedule]]
duration = 0.5

[[schedule]]
duration = 1.5
beta = 0.5
attention = "SA"

[particles]
tokens = 10
layers = 4
"""


def test_blocks_inherit_the_model_and_override_keys(rng):
    case = parse_case(GENERAL)
    np.testing.assert_array_equal(case.output_times, [0.0, 0.5, 2.0])
    (_, p0), (_, p1) = case.schedule.blocks
    assert (p0.attention, p1.attention) == ("USA", "SA") and case.betas == (2.0, 0.5)
    Q = np.array([[[1.0, 0.5], [0.0, 1.0]], [[0.0, -1.0], [1.0, 0.0]]])
    K = np.array([[[1.0, 0.0], [0.2, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    V = np.array([[[0.5, 0.0], [0.0, 0.5]], [[1.0, 1.0], [0.0, 1.0]]])
    for params, beta in ((p0, 2.0), (p1, 0.5)):
        for h, head in enumerate(params.heads):
            np.testing.assert_allclose(head.B, beta * K[h].T @ Q[h], rtol=1e-15)
            np.testing.assert_array_equal(head.output, V[h])
        np.testing.assert_array_equal(params.perceptron.b, np.zeros(3))
    # The field is the model's: same as Params built by hand.
    x = rng.standard_normal((20, 2))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    by_hand = Params(
        heads=tuple(Head.from_qkv(Q[h], K[h], V[h], 0.5) for h in range(2)),
        perceptron=p1.perceptron,
        attention="SA",
    )
    np.testing.assert_allclose(velocity(p1, x), velocity(by_hand, x), rtol=1e-14)
    assert case.particles.tokens == (10,) and case.particles.layers == (4,)


def test_overrides_sweep_a_parameter(tmp_path):
    path = CASES_DIR / "circle_clustering.toml"
    case = load_case(path, overrides={"model.beta": 9.0})
    assert case.betas == (9.0,) and case.overrides == (("model.beta", 9.0),)
    np.testing.assert_allclose(case.schedule.blocks[0][1].heads[0].B, 9.0 * np.eye(2))
    tight = load_case(path, overrides={"grid.rtol": 1e-5, "grid.atol": 1e-12}).grid
    assert (tight.rtol, tight.atol) == (1e-5, 1e-12)
    # Fixed CFL steps (solve_grid's rtol=None) had no case key.
    assert load_case(path, overrides={"grid.rtol": False}).grid.rtol is None
    with pytest.raises(ValueError, match=r"grid\.rtol must be a number"):
        load_case(path, overrides={"grid.rtol": True})
    third = load_case(path, overrides={"grid.reconstruction": "quadratic", "grid.limiter": "positivity"}).grid
    assert (third.reconstruction, third.limiter) == ("quadratic", "positivity")
    case = parse_case(GENERAL, overrides={"schedule[1].beta": 3.0, "particles.seed": 7})
    assert case.betas == (2.0, 3.0) and case.particles.seed == 7
    with pytest.raises(ValueError, match=r"circle_clustering\.toml .*model\.beta must be > 0"):
        load_case(path, overrides={"model.beta": -1.0})
    with pytest.raises(ValueError, match=r"schedule\[5\]"):
        parse_case(GENERAL, overrides={"schedule[5].beta": 3.0})
    with pytest.raises(ValueError, match=r"unknown key model\.gamma"):
        parse_case(GENERAL, overrides={"model.gamma": 3.0})


# -- bad files ----------------------------------------------------------------------------------------

BASE = """
[case]
name = "bad"
geometry = "circle"
T = 2.0
outputs = 5

[initial]
family = "vmf_mixture"
angles = [0.5, 2.5]
kappas = [2.0, 3.0]
proportions = [0.5, 0.5]

[model]
attention = "SA"
beta = 4.0

[particles]
tokens = [10, 20]
layers = [5, 10]
reference_steps = 0
seed = 0

[grid]
resolutions = [16, 32]
cfl = 0.5
limiter = "barth-jespersen"
"""
SPHERE = (
    BASE.replace('"circle"', '"sphere"')
    .replace("angles = [0.5, 2.5]", "means = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]")
    .replace("[16, 32]", "[0, 1]")
)
QKV = "beta = 4.0\nQ = [[1.0, 0.0], [0.0, 1.0]]\nK = [[1.0, 0.0], [0.0, 1.0]]\nV = [[1.0, 0.0], [0.0, 1.0]]\n"
TWO_BLOCKS = "[[schedule]]\nduration = 1.0\n[[schedule]]\nduration = 1.0\n\n[particles]"

INTERACTION = SPHERE.replace(
    'attention = "SA"\nbeta = 4.0',
    'type = "interaction"\nkernel = { name = "exp_difference", a = 1.0, alpha = 4.0, r = 0.5, rho = 1.0 }',
)

SIGNED, EXP = 'name = "polynomial", a = [0.0, 1.0]', 'name = "exp", beta = 1.0'

# (base, old, new, dotted key in the message)
BAD = [
    (BASE, "[grid]", "[extra]\nx = 1\n\n[grid]", "extra"),
    (BASE, "T = 2.0", "T = 2.0\nTT = 1.0", "case.TT"),
    (BASE, "kappas = [2.0, 3.0]", "kapas = [2.0, 3.0]", "initial.kapas"),
    (BASE, "T = 2.0\n", "", "case.T"),
    (BASE, "name = ", "#name = ", "case.name"),
    (BASE, 'name = "bad"', 'name = "my case"', "case.name"),
    (
        BASE,
        "[particles]\ntokens = [10, 20]\nlayers = [5, 10]",
        "[parts]\ntokens = [10, 20]\nlayers = [5, 10]",
        "parts",
    ),
    (BASE, "T = 2.0", 'T = "2.0"', "case.T"),
    (BASE, "T = 2.0", "T = true", "case.T"),
    (BASE, "T = 2.0", "T = -1.0", "case.T"),
    (BASE, "T = 2.0", "T = inf", "case.T"),
    (BASE, 'geometry = "circle"', 'geometry = "torus"', "case.geometry"),
    (BASE, 'geometry = "circle"', 'geometry = "circle"\nd = 3', "case.d"),
    (SPHERE, 'geometry = "sphere"', 'geometry = "sphere"\nd = 2', "case.d"),
    (BASE, 'geometry = "circle"', 'geometry = "euclidean"', "case.d"),
    (BASE, "outputs = 5", "outputs = 1", "case.outputs"),
    (BASE, "outputs = 5", "outputs = 5.0", "case.outputs"),
    (BASE, "outputs = 5", "outputs = [0.0, 1.0, 3.0]", "case.outputs[2]"),
    (BASE, "outputs = 5", "outputs = [-0.5, 1.0, 2.0]", "case.outputs[0]"),
    (BASE, "outputs = 5", "outputs = [0.0, 1.0]", "case.outputs[1]"),
    (BASE, "outputs = 5", "outputs = [0.0, 1.0, 1.0, 2.0]", "case.outputs[2]"),
    (BASE, "outputs = 5", "outputs = [0.5, 1.0, 2.0]", "case.outputs[0]"),
    (BASE, 'family = "vmf_mixture"', 'family = "gaussian"', "initial.family"),
    (BASE, 'family = "vmf_mixture"\n', "", "initial.family"),
    (BASE, "kappas = [2.0, 3.0]", "kappas = [2.0, -2.0]", "initial.kappas[1]"),
    (BASE, "kappas = [2.0, 3.0]", "kappas = [2.0]", "initial.kappas"),
    (BASE, "kappas = [2.0, 3.0]", 'kappas = [2.0, "3"]', "initial.kappas[1]"),
    (BASE, "kappas = [2.0, 3.0]\n", "", "initial.kappas"),
    (BASE, "proportions = [0.5, 0.5]", "proportions = [-0.5, 1.5]", "initial.proportions[0]"),
    (BASE, "proportions = [0.5, 0.5]", "proportions = [0.0, 0.0]", "initial.proportions"),
    (BASE, "angles = [0.5, 2.5]", "angles = [0.5, 2.5]\nmeans = [[1.0, 0.0], [0.0, 1.0]]", "initial.angles"),
    (SPHERE, "[1.0, 0.0, 0.0]]", "[1.0, 0.0, 0.1]]", "initial.means[1]"),
    (SPHERE, "[1.0, 0.0, 0.0]]", "[1.0, 0.0]]", "initial.means[1]"),
    (SPHERE, "means = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]", "angles = [0.5, 2.5]", "initial.angles"),
    (BASE, "beta = 4.0", "beta = 0.0", "model.beta"),
    (BASE, "beta = 4.0\n", "", "model.beta"),
    (BASE, "beta = 4.0", "beta = [4.0]", "model.beta"),
    (BASE, 'attention = "SA"', 'attention = "softmax"', "model.attention"),
    (
        BASE,
        "beta = 4.0",
        QKV.replace("[[1.0, 0.0], [0.0, 1.0]]\nK", "[[1.0, 0.0], [0.0, 1.0, 0.5]]\nK"),
        "model.Q[1]",
    ),
    (
        BASE,
        "beta = 4.0",
        QKV.replace("[[1.0, 0.0], [0.0, 1.0]]\nK", "[[1.0, nan], [0.0, 1.0]]\nK"),
        "model.Q[0][1]",
    ),
    (
        BASE,
        "beta = 4.0",
        QKV.replace("[[1.0, 0.0], [0.0, 1.0]]\nV", "[[1.0, 0.0], [0.0, true]]\nV"),
        "model.K[1][1]",
    ),
    (BASE, "beta = 4.0", QKV.split("K =")[0], "model.K"),
    (
        BASE,
        "beta = 4.0",
        QKV.replace(
            "K = [[1.0, 0.0], [0.0, 1.0]]", "K = [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]"
        ),
        "model.K",
    ),
    (BASE, "beta = 4.0", "beta = 4.0\nW = [[1.0, 0.0], [0.0, 1.0]]", "model.W"),
    (
        BASE,
        "beta = 4.0",
        "beta = 4.0\n[model.perceptron]\nW = [[1.0], [0.0]]\nU = [[1.0, 0.0, 0.0]]",
        "model.perceptron.U[0]",
    ),
    (
        BASE,
        "beta = 4.0",
        "beta = 4.0\n[model.perceptron]\nW = [[1.0], [0.0]]\nU = [[1.0, 0.0]]\nc = [0.0]",
        "model.perceptron.c",
    ),
    (
        BASE,
        "beta = 4.0",
        "beta = 4.0\n[model.perceptron]\nW = [[1.0], [0.0]]\nU = [[1.0, 0.0]]\nb = [0.0, 1.0]",
        "model.perceptron.b",
    ),
    (BASE, "[particles]", TWO_BLOCKS.replace("duration = 1.0\n\n", "duration = 0.5\n\n"), "schedule"),
    (
        BASE,
        "[particles]",
        TWO_BLOCKS.replace("duration = 1.0\n[[", "duration = -1.0\n[["),
        "schedule[0].duration",
    ),
    (
        BASE,
        "[particles]",
        TWO_BLOCKS.replace("duration = 1.0\n\n", "duration = 1.0\ngamma = 2.0\n\n"),
        "schedule[1].gamma",
    ),
    (
        BASE,
        "[particles]",
        TWO_BLOCKS.replace("duration = 1.0\n\n", "duration = 1.0\nbeta = -2.0\n\n"),
        "schedule[1].beta",
    ),
    (
        BASE,
        "[particles]",
        TWO_BLOCKS.replace("duration = 1.0\n\n", "duration = 1.0\nQ = [[1.0, 0.0], [0.0, 1.0]]\n\n"),
        "schedule[1].K",
    ),
    (BASE, "[case]", "schedule = 3\n[case]", "schedule"),
    (BASE, "tokens = [10, 20]", "tokens = [10, 20.0]", "particles.tokens[1]"),
    (BASE, "tokens = [10, 20]", "tokens = true", "particles.tokens"),
    (BASE, "tokens = [10, 20]", "tokens = [0, 20]", "particles.tokens[0]"),
    (BASE, "tokens = [10, 20]", "tokens = [20, 10]", "particles.tokens[1]"),
    (BASE, "tokens = [10, 20]", "tokens = []", "particles.tokens"),
    (BASE, "layers = [5, 10]", "layers = [0]", "particles.layers[0]"),
    (BASE, "layers = [5, 10]\n", "", "particles.layers"),
    (BASE, "reference_steps = 0", "reference_steps = -1", "particles.reference_steps"),
    (BASE, "seed = 0", "seed = 1.5", "particles.seed"),
    (BASE, "seed = 0", 'seed = 0\nsampling = "atoms"', "particles.sampling"),
    (SPHERE, "seed = 0", 'seed = 0\nsampling = "quantiles"', "particles.sampling"),
    (BASE, "cfl = 0.5", "cfl = 1.5", "grid.cfl"),
    (BASE, "cfl = 0.5", "cfl = 0", "grid.cfl"),
    (BASE, "cfl = 0.5", 'cfl = "0.5"', "grid.cfl"),
    (BASE, 'limiter = "barth-jespersen"', 'limiter = "minmod"', "grid.limiter"),
    (BASE, "resolutions = [16, 32]", "resolutions = [2, 32]", "grid.resolutions[0]"),
    (BASE, "resolutions = [16, 32]\n", "", "grid.resolutions"),
    (SPHERE, "resolutions = [0, 1]", "resolutions = [0, 6]", "grid.resolutions[1]"),
    (SPHERE, "resolutions = [0, 1]", "resolutions = [-1, 1]", "grid.resolutions[0]"),
    (BASE, "[grid]", "[grid]\ncells = 8", "grid.cells"),
    (BASE, "[grid]", "[grid]\nmax_dt = 0.0", "grid.max_dt"),
    (BASE, "outputs = 5", "outputs = 1000000000", "case.outputs"),
    (BASE, "outputs = 5", f"outputs = {[2.0 * i / 2001 for i in range(2002)]}", "case.outputs"),
    (BASE, "[grid]", "[clusters]\nscale = 0.0\n[grid]", "clusters.scale"),
    (BASE, "[particles]", '[particles]\nnorm = "middle"', "particles.norm"),
    (BASE, "[model]", '[model]\nmask = "future"', "model.mask"),
    (BASE, "[model]", '[model]\nmask = "causal"', "particles.tokens"),  # 10 tokens in 8 slices
    (BASE, "[model]", '[model]\nmask = "causal"\nslices = 0', "model.slices"),
    (BASE, "[particles]", '[particles]\nnorm = "pre"', "particles.norm"),
    (BASE, "[grid]", "[clusters]\ntrim = 1.0\n[grid]", "clusters.trim"),
    (BASE, "[grid]", "[clusters]\nmin_mass = 2.0\n[grid]", "clusters.min_mass"),
    (BASE, "[grid]", "[clusters]\nradius = 0.1\n[grid]", "clusters.radius"),
    (BASE, "[grid]", "[grid]\nrtol = 1.0", "grid.rtol"),
    (BASE, "[grid]", '[grid]\nreconstruction = "cubic"', "grid.reconstruction"),
    (BASE, "[grid]", '[grid]\nreconstruction = "quadratic"', "grid.limiter"),
    (
        BASE,
        'limiter = "barth-jespersen"',
        'limiter = "positivity"\nreconstruction = "linear"',
        "grid.limiter",
    ),
    (BASE, "[grid]", "[grid]\natol = -1e-8", "grid.atol"),
    (BASE, "[grid]", '[grid]\nrtol = "1e-3"', "grid.rtol"),
    (BASE, "[grid]", '[grid]\nfield_method = "fmm"', "grid.field_method"),
    (BASE, "seed = 0", 'seed = 0\nfield_method = "fft"', "particles.field_method"),
    # Interaction models (model.type = "interaction")
    (INTERACTION, 'name = "exp_difference"', 'name = "gauss"', "model.kernel.name"),
    (INTERACTION, ", rho = 1.0 }", " }", "model.kernel.rho"),
    (INTERACTION, "rho = 1.0 }", "rho = 1.0, beta = 2.0 }", "model.kernel.beta"),
    (INTERACTION, "rho = 1.0 }", 'rho = "one" }', "model.kernel.rho"),
    (INTERACTION, 'kernel = {', 'normalised = true\nkernel = {', "model.kernel"),
    (INTERACTION, "kernel = {", f"normaliser = {{ {SIGNED} }}\nkernel = {{", "model.normaliser"),
    (INTERACTION, "kernel = {", f"normalised = false\nnormaliser = {{ {EXP} }}\nkernel = {{",
     "model.normaliser"),
    (INTERACTION, 'kernel = {', 'frequency = 1.0\nkernel = {', "model.frequency"),
    (INTERACTION, "kernel = {", "omega = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]\nkernel = {", "model.omega"),
    (INTERACTION, 'kernel = {', 'beta = 2.0\nkernel = {', "model.beta"),
    (INTERACTION, 'type = "interaction"', 'type = "aggregation"', "model.type"),
    (INTERACTION, "[particles]", "[[schedule]]\nduration = 2.0\n\n[particles]", "schedule"),
    (INTERACTION, "seed = 0", 'seed = 0\nfield_method = "taylor"', "particles.field_method"),
    (INTERACTION, "cfl = 0.5", 'cfl = 0.5\nfield_method = "fft"', "grid.field_method"),
]
PERTURBED = [
    ('family = "uniform_perturbed"\namplitude = 1.2\nk = 2', "circle", "initial.amplitude"),
    ('family = "uniform_perturbed"\namplitude = -1.0\nk = 2', "circle", "initial.amplitude"),
    ('family = "uniform_perturbed"\namplitude = 0.5\nk = 0', "circle", "initial.k"),
    ('family = "uniform_perturbed"\namplitude = 0.5\nk = 2.0', "circle", "initial.k"),
    ('family = "uniform_perturbed"\namplitude = 0.5', "circle", "initial.k"),
    ('family = "uniform_perturbed"\namplitude = 0.5\nl = 2', "circle", "initial.l"),
    ('family = "uniform_perturbed"\namplitude = 2.5\nl = 2', "sphere", "initial.amplitude"),
    ('family = "uniform_perturbed"\namplitude = -1.0\nl = 2', "sphere", "initial.amplitude"),
    ('family = "uniform_perturbed"\namplitude = 0.5\nl = 41', "sphere", "initial.l"),
    (
        'family = "uniform_perturbed"\namplitude = 0.5\nl = 2\naxis = [0.0, 0.0, 2.0]',
        "sphere",
        "initial.axis",
    ),
    ('family = "uniform"\nkappas = [1.0]', "sphere", "initial.kappas"),
    (
        'family = "gaussian"\nmean = [0.0, 0.0]\ncovariance = [[1.0, 0.0], [0.0, 1.0]]',
        "sphere",
        "initial.family",
    ),
]


def check_bad(tmp_path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_case(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: "), msg
    # The dotted key itself, not a longer key it is the start of.
    assert re.search(re.escape(key) + r"(?![\w\[.])", msg), (key, msg)


@pytest.mark.parametrize(("base", "old", "new", "key"), BAD, ids=[f"{i}-{b[3]}" for i, b in enumerate(BAD)])
def test_bad_case_names_file_and_key(tmp_path, base, old, new, key):
    assert base.count(old) == 1, old
    check_bad(tmp_path, base.replace(old, new), key)


@pytest.mark.parametrize(("initial", "geometry", "key"), PERTURBED)
def test_bad_initial_names_file_and_key(tmp_path, initial, geometry, key):
    check_bad(tmp_path, case_text(geometry, initial, grid=False), key)


def test_the_bases_are_valid(tmp_path):
    for base in (BASE, SPHERE):
        (tmp_path / "ok.toml").write_text(base)
        load_case(tmp_path / "ok.toml")


def test_messages_read_well(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace("kappas = [2.0, 3.0]", "kappas = [2.0, -2.0]"))
    with pytest.raises(ValueError, match=re.escape(f"{path}: initial.kappas[1] must be > 0, got -2.0")):
        load_case(path)
    path.write_text(BASE.replace("kappas", "kapas"))
    with pytest.raises(ValueError, match=r"unknown key initial\.kapas .*did you mean 'kappas'"):
        load_case(path)


def test_syntax_errors_and_missing_files(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(BASE.replace("T = 2.0", "T = = 2.0"))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: TOML syntax error.*line 5"):
        load_case(path)
    with pytest.raises(ValueError, match="<string>: TOML syntax error"):
        parse_case("[case\n")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent.toml"))):
        load_case(tmp_path / "absent.toml")


def test_interaction_case_reads_its_model(tmp_path):
    """model.type = "interaction": the kernel, a normaliser, the rotation (a frequency on the circle)."""
    from vlasov_tf.kernels.zonal import ExpDifference, Exponential
    from vlasov_tf.models.interaction import Interaction

    case = parse_case(INTERACTION)
    assert isinstance(case.model, Interaction) and case.betas == () and case.T == 2.0
    assert case.model.kernel == ExpDifference(a=1.0, alpha=4.0, r=0.5, rho=1.0)
    assert case.model.normaliser is None and case.model.omega is None
    assert case.linking_distance == pytest.approx(case.clusters.scale * case.model.kernel.width)
    text = INTERACTION.replace("kernel = {", 'normaliser = { name = "exp", beta = 2.0 }\nkernel = {')
    assert parse_case(text).model.normaliser == Exponential(2.0)
    kuramoto = 'type = "interaction"\nkernel = { name = "constant", c = 1.0 }\nfrequency = 0.5'
    circle = BASE.replace('attention = "SA"\nbeta = 4.0', kuramoto)
    model = parse_case(circle).model
    np.testing.assert_array_equal(model.omega, [[0.0, -0.5], [0.5, 0.0]])
    with pytest.raises(ValueError, match="needs an attention model"):
        _ = parse_case(INTERACTION).schedule
    shipped = load_case(CASES_DIR / "sphere_interaction.toml")
    assert isinstance(shipped.model, Interaction) and shipped.model.omega is not None


@pytest.mark.parametrize(
    ("override", "key"),
    [({"model.beta": 1e300}, "model.beta"), ({"model.beta": 1e13}, "model.beta")],
)
def test_overflowing_parameters_are_refused_naming_the_key(override, key):
    """model.beta = 1e300 passed validation and failed later with "zero-size array to reduction
    operation maximum" (under MPI: two tracebacks)."""
    with pytest.raises(ValueError, match=rf"\): {re.escape(key)} = 1e\+\d+: head matrix B has norm") as err:
        load_case(CASES_DIR / "sphere_clustering.toml", overrides=override)
    assert "\n" not in str(err.value)


def test_overflowing_matrices_are_refused_in_the_python_api():


    with pytest.raises(ValueError, match="head matrix B has norm"):
        Params.identity(3, 1e300)
    with pytest.raises(ValueError, match="head matrix V has norm"):
        Head(B=np.eye(3), V=1e200 * np.eye(3))
    Params.identity(3, 1e11)  # large, still meaningful


@pytest.mark.parametrize("override", [{"model.kernel.alpha": 1e300}, {"model.kernel.a": -1e300}])
def test_overflowing_interaction_parameters_are_refused_naming_the_key(override):
    """alpha = 1e300 failed with "Maximum allowed size exceeded", a = 1e300 with a traceback about
    the time step; now one line naming the key."""
    ((key, value),) = override.items()
    named = rf"\): {re.escape(key)} = {re.escape(f'{abs(value):g}')}: model parameters beyond 1e\+12"
    with pytest.raises(ValueError, match=named):
        load_case(CASES_DIR / "sphere_interaction.toml", overrides=override)

def test_every_described_key_is_in_the_annotated_example():
    """case_keys.TABLES (what the readers accept, and the documentation's reference) and the full
    example in the cases module docstring name the same keys."""
    import re

    import vlasov_tf.runs.cases as mod
    from vlasov_tf.runs.case_keys import TABLES

    doc = mod.__doc__
    example = doc[doc.index("# --8<-- example") : doc.index("# --8<-- end")]
    missing = []
    for table, spec in TABLES.items():
        for key in spec.keys:
            # top-level tables as [name] or [[name]]; keys as `key = ` or a subtable [parent.key]
            pattern = rf"\[\[?{key}\]\]?" if table == "" else rf"[\s{{,`]{key} = |\[\w+\.{key}\]"
            if not re.search(pattern, example):
                missing.append(f"{table}.{key}")
    assert not missing, missing
