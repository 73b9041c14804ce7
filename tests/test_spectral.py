"""Spectral kernel sums on S^1 and S^2 (ducc0, finufft) against the dense sums and closed forms."""

import threading

import numpy as np
import pytest
from helpers import row_errors
from numpy.polynomial import legendre
from scipy.special import ive

from vlasov_tf import kernels
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.kernels import spectral
from vlasov_tf.kernels.circle import Circle
from vlasov_tf.kernels.spectral import (
    Scales,
    radial_bins,
    spectral_approximation,
    spectral_sums,
    tail_degree,
)
from vlasov_tf.kernels.sphere import Sphere

TOL = 1e-10  # the contract: every row, relative to its normaliser


def measure(rng, kind: str, m: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys on S^{d-1}: spread, four tight clusters, two antipodal clusters, or (nearly) a point
    mass; weights of varied size."""
    if kind == "uniform":
        y = uniform_sphere(m, d, rng)
    elif kind == "clusters":
        centres = uniform_sphere(4, d, rng)
        y = centres[rng.integers(0, 4, m)] + 0.05 * rng.standard_normal((m, d))
    elif kind == "two":
        c = uniform_sphere(1, d, rng)[0]
        y = np.where(rng.random((m, 1)) < 0.5, c, -c) + 1e-4 * rng.standard_normal((m, d))
    else:
        y = uniform_sphere(1, d, rng) + 1e-6 * rng.standard_normal((m, d))
    return y / np.linalg.norm(y, axis=1)[:, None], rng.random(m) ** 3


def score_matrix(rng, beta: float, d: int, head: str) -> np.ndarray:
    """Zonal ``beta R`` (R orthogonal, improper) or general ``beta K^T Q`` (entries N(0, 1/d))."""
    if head == "zonal":
        rot = np.linalg.qr(rng.normal(size=(d, d)))[0]
        return beta * rot
    Q, K = rng.standard_normal((2, d, d)) / np.sqrt(d)
    return beta * K.T @ Q


CASES = [
    (d, kind, beta, head)
    for d in (2, 3)
    for kind in ("uniform", "clusters", "point", "two")
    for beta in (0.1, 1.0, 10.0, 100.0, 1000.0)
    for head in ("zonal", "general")
    if kind != "two" or beta in (0.1, 10.0, 1000.0)
]


@pytest.mark.parametrize(("d", "kind", "beta", "head"), CASES)
def test_every_row_within_tol_and_the_estimate_bounds_the_error(rng, d, kind, beta, head):
    """Without the fix-up the error is below half its estimate (calibrated: 0.002 to 0.2 of it); with
    the fix-up every row is within 1e-10."""
    y, w = measure(rng, kind, 1500, d)
    # Queries: spread, and at the keys (where the measure's own tokens sit).
    x = np.r_[uniform_sphere(400, d, rng), y[:200]]
    z = x @ score_matrix(rng, beta, d, head).T
    dense = kernels.exp_kernel_sums(z, y, w, y)
    shift, raw, err = spectral_approximation(z, y, w, y)
    exact = dense[1] * np.exp(dense[0] - shift)[:, None]
    assert (np.abs(raw - exact).max(axis=1) <= 0.5 * err).all()
    assert row_errors(*spectral_sums(z, y, w, y, tol=TOL), *dense).max() <= TOL


def test_uniform_sphere_closed_form_for_any_query_norm():
    """A product Gauss rule integrates the kernel exactly: int exp(<z, y>) dsigma / 4 pi = sinh r / r and
    int y exp(<z, y>) dsigma / 4 pi = u (cosh r / r - sinh r / r^2), r = |z| from 0 (a singular B) to 1000."""
    n_theta = 400  # exact to degree 799 > the degree 300 needed at r = 1000
    nodes, gauss = legendre.leggauss(n_theta)
    phi = (np.arange(2 * n_theta) + 0.5) * np.pi / n_theta
    ct, st = np.repeat(nodes, 2 * n_theta), np.sqrt(1 - np.repeat(nodes, 2 * n_theta) ** 2)
    y = np.c_[st * np.cos(np.tile(phi, n_theta)), st * np.sin(np.tile(phi, n_theta)), ct]
    w = np.repeat(gauss, 2 * n_theta) / (4 * n_theta)  # sums to 1
    x = uniform_sphere(300, 3, np.random.default_rng(3))
    for B in (np.diag([0.0, 0.5, 30.0]), np.diag([1000.0, 400.0, 700.0]), 2.0 * np.eye(3)):
        z = x @ B.T
        z[0] = 0.0  # r = 0: exp(<0, y>) = 1
        shift, sums = spectral_sums(z, y, w, y)
        r = np.linalg.norm(z, axis=1)
        u = np.divide(z, r[:, None], out=np.zeros_like(z), where=r[:, None] > 0)
        rs = np.maximum(r, 1e-300)
        # e^{-r} sinh r / r and e^{-r} (cosh r / r - sinh r / r^2), written without cancellation.
        norm = np.where(r > 0, -np.expm1(-2 * rs) / (2 * rs), 1.0)
        radial = np.where(r > 1e-3, (1 + np.exp(-2 * rs)) / (2 * rs) - norm / rs, r / 3)
        exact = np.c_[radial[:, None] * u, norm]
        got = sums * np.exp(shift - r)[:, None]
        assert (np.abs(got - exact).max(axis=1) / norm).max() <= TOL


def test_uniform_circle_closed_form():
    """M equally spaced equal weights: (1/M) sum_j exp(r cos(a - t_j)) = I_0(r) and the values
    (cos a, sin a) I_1(r) up to aliased terms I_{pM}(r), negligible for M = 4000 at r <= 1000."""
    m = 4000
    t = 2 * np.pi * np.arange(m) / m
    y = np.c_[np.cos(t), np.sin(t)]
    w = np.full(m, 1.0 / m)
    a = np.linspace(0, 2 * np.pi, 500, endpoint=False)
    x = np.c_[np.cos(a), np.sin(a)]
    B = np.diag([1000.0, 3.0])
    z = x @ B.T
    r = np.linalg.norm(z, axis=1)
    u = z / r[:, None]
    shift, sums = spectral_sums(z, y, w, y)
    got = sums * np.exp(shift - r)[:, None]
    exact = np.c_[ive(1, r)[:, None] * u, ive(0, r)]
    assert (np.abs(got - exact).max(axis=1) / exact[:, -1]).max() <= TOL


def test_point_mass_at_large_beta_sends_far_rows_to_the_dense_sum(rng):
    y, w = measure(rng, "point", 400, 3)
    x = np.r_[uniform_sphere(150, 3, rng), y[:50], -y[:1]]
    z = 1000.0 * x
    dense = kernels.exp_kernel_sums(z, y, w, y)
    shift, sums = spectral_sums(z, y, w, y)
    assert row_errors(shift, sums, *dense).max() <= TOL
    spectral_rows = np.isclose(shift, 1000.0 + np.log(w.sum()), rtol=0, atol=1e-12)
    assert spectral_rows[150:200].all()  # at the mass: the expansion
    assert not spectral_rows[-1]  # opposite it: e^{-2000} of the largest value, summed densely


@pytest.mark.parametrize("geometry", [Circle, Sphere])
def test_degree_meets_the_tail_bound_at_every_scale(geometry):
    """Every scale gets a degree (the old hand-written tables failed at 11 <= s <= 12, and "auto"
    then silently summed densely), the degree grows with the scale, and ~ sqrt(2 r log(1/tol))."""
    scales = np.r_[np.linspace(0.05, 30.0, 600), np.geomspace(30.0, 2000.0, 60)]
    degrees = [tail_degree(geometry, r, 1e-16) for r in scales]
    assert np.all(np.diff(degrees) >= 0)
    for r, deg in zip(scales[::37], degrees[::37], strict=True):
        g = geometry.radial(r, deg + 400) * geometry.multiplicity(deg + 400)
        assert g[deg + 1 :].sum() <= 1e-16 < g[deg:].sum()
    big = degrees[-1] / np.sqrt(2 * scales[-1] * np.log(1e16))
    assert 0.9 < big < 1.3
    with pytest.raises(ValueError, match="dense"):
        tail_degree(geometry, 1e7)


@pytest.mark.parametrize("geometry", [Circle, Sphere])
def test_radial_interpolation_error_is_within_the_bin_bound(rng, geometry):
    """At 3000 random radii of each bin, sum_l mult_l |g_l(r) - p_l(r)| + tail_L(r) <= bin.error."""
    for rb in radial_bins(geometry, Scales(0.0, 300.0, 1, 1), TOL):
        r = rng.uniform(rb.lo, rb.hi, 3000)
        exact = np.array([geometry.radial(s, rb.degree + 200) for s in r])
        approx = rb.weights(r) @ rb.factors(geometry)
        mult = geometry.multiplicity(rb.degree + 200)
        approx = np.c_[approx, np.zeros((len(r), 200))]
        err = (np.abs(approx - exact) * mult).sum(axis=1)
        assert err.max() <= rb.error, (rb.lo, rb.hi)
    # One node, no interpolation, when every query has the same norm (zonal heads).
    (single,) = radial_bins(geometry, Scales(5.0, 5.0, 1, 1), TOL)
    assert len(single.nodes) == 1


@pytest.mark.parametrize("geometry", [Circle, Sphere])
def test_analysis_gives_the_same_bits_every_call_and_for_every_thread_count(rng, geometry):
    """finufft's multithreaded type-1 spreading changed the last bits from call to call (a CI run
    failed on it); resumed and repeated runs need the same bits. Keys over several blocks, one
    column and three."""
    m = 300_000
    loc = geometry.locate(uniform_sphere(m, geometry.d, rng))
    for cols in (1, 3):
        wv = rng.standard_normal((m, cols))
        first = geometry.analysis(loc, wv, 40, threads=2)
        for threads in (2, 2, 2, 1, 3):
            np.testing.assert_array_equal(geometry.analysis(loc, wv, 40, threads=threads), first)
    # and the blocks add up to the whole sum
    if geometry is Circle:
        exact = wv.T @ np.exp(-1j * np.outer(loc, np.arange(-40, 41)))
    else:
        from ducc0.sht.experimental import adjoint_synthesis_general

        exact = np.concatenate(
            [
                adjoint_synthesis_general(
                    map=np.ascontiguousarray(w[None]), spin=0, lmax=40, loc=loc, epsilon=1e-13
                )
                for w in wv.T
            ]
        )
    assert np.abs(first - exact).max() <= 1e-11 * np.abs(wv).sum()


def test_empty_queries_and_zero_weights(rng):
    y, w = measure(rng, "uniform", 50, 3)
    w[::2] = 0.0
    shift, sums = kernels.kernel_sums(np.zeros((0, 3)), y, w, y, method="spectral")
    assert shift.shape == (0,) and sums.shape == (0, 4)
    z = 3.0 * uniform_sphere(20, 3, rng)
    got = kernels.kernel_sums(z, y, w, None, method="spectral")
    assert got[1].shape == (20, 1)
    assert row_errors(*got, *kernels.exp_kernel_sums(z, y, w)).max() <= TOL


def test_spectral_refusals_are_named(rng):
    x = uniform_sphere(40, 4, rng)
    with pytest.raises(ValueError, match="S\\^1 and S\\^2"):
        kernels.kernel_sums(x, x, np.ones(40), x, method="spectral")
    x = uniform_sphere(40, 3, rng)
    with pytest.raises(ValueError, match="on the unit sphere"):
        kernels.kernel_sums(x, 1.001 * x, np.ones(40), x, method="spectral")
    with pytest.raises(ValueError, match="unknown field method"):
        kernels.kernel_sums(x, x, np.ones(40), x, method="fmm")
    with pytest.raises(ValueError, match="does not apply: it needs m keys uniformly"):
        kernels.kernel_sums(x[:, :2] / np.linalg.norm(x[:, :2], axis=1)[:, None], x[:, :2], np.ones(40),
                            method="fft")  # fmt: skip


def test_auto_picks_by_cost(rng):
    x = uniform_sphere(20_000, 3, rng)
    w = np.ones(20_000)
    assert kernels.choose_method(4.0 * x, x, w, 3) == "spectral"  # zonal, many tokens
    assert kernels.choose_method(4.0 * x[:200], x[:200], w[:200], 3) == "dense"  # few tokens
    assert kernels.choose_method(x @ score_matrix(rng, 10.0, 3, "general").T, x, w, 3) == "spectral"
    assert kernels.choose_method(4.0 * x, 1.001 * x, w, 3) != "spectral"  # keys off the sphere
    t = 2 * np.pi * (np.arange(512) + 0.5) / 512  # a uniform circle grid, queries half a cell on
    grid = np.c_[np.cos(t), np.sin(t)]
    faces = np.c_[np.cos(t + np.pi / 512), np.sin(t + np.pi / 512)]
    assert kernels.choose_method(4.0 * faces, grid, np.ones(512), 2) == "fft"


class ThreadRanks:
    """P threads standing in for P MPI ranks (:class:`vlasov_tf.kernels.Distributed`), counting calls."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.barrier = threading.Barrier(size)
        self.slots: list = [None] * size
        self.calls = [{"allreduce": 0, "allgather": 0, "dense": 0} for _ in range(size)]

    def rank(self, r: int) -> "RankView":
        return RankView(self, r)


class RankView:
    def __init__(self, group: ThreadRanks, r: int) -> None:
        self.group, self.r = group, r

    def _exchange(self, item):
        g = self.group
        g.barrier.wait()
        g.slots[self.r] = item
        g.barrier.wait()
        items = list(g.slots)
        g.barrier.wait()
        return items

    def allreduce(self, a):
        self.group.calls[self.r]["allreduce"] += 1
        return np.sum(self._exchange(np.asarray(a, dtype=float)), axis=0)

    def allgather(self, a):
        self.group.calls[self.r]["allgather"] += 1
        return np.array(self._exchange(np.asarray(a, dtype=float)))

    def dense(self, z, y, w, v):
        self.group.calls[self.r]["dense"] += 1
        blocks = self._exchange((y, w, v))
        ys, ws, vs = (np.concatenate(part) for part in zip(*blocks, strict=True))
        if len(z) == 0:
            return np.zeros(0), np.zeros((0, vs.shape[1] + 1))
        return kernels.exp_kernel_sums(z, ys, ws, vs)


def test_split_measure_sums_its_coefficients_with_one_allreduce(rng):
    """Three 'ranks' (uneven blocks, one empty, each its own queries): every row within 1e-10 of the
    dense sum over the whole measure, with per rank one all-reduce (coefficients), one all-gather
    (the choice of method) and the pruned fix-up (all-gathers of the row counts, the rows and the
    shifts, an all-reduce of the sums: rows replicated, keys split; no ring)."""
    y, w = measure(rng, "clusters", 2000, 3)
    queries = uniform_sphere(600, 3, rng)
    B = score_matrix(rng, 20.0, 3, "general")
    blocks = [np.arange(0, 1500), np.arange(1500, 1500), np.arange(1500, 2000)]  # rank 1: no keys
    qs = [np.arange(0, 350), np.arange(350, 350), np.arange(350, 600)]  # rank 1: no queries at all
    group = ThreadRanks(3)
    out: list = [None] * 3

    def run(r: int) -> None:
        b = blocks[r]
        out[r] = kernels.kernel_sums(
            queries[qs[r]] @ B.T, y[b], w[b], y[b], method="spectral", split=group.rank(r)
        )

    threads = [threading.Thread(target=run, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shift = np.concatenate([o[0] for o in out])
    sums = np.concatenate([o[1] for o in out])
    dense = kernels.exp_kernel_sums(queries @ B.T, y, w, y)
    assert row_errors(shift, sums, *dense).max() <= TOL
    assert group.calls == [{"allreduce": 2, "allgather": 4, "dense": 0}] * 3
    assert not np.isclose(shift, np.linalg.norm(queries @ B.T, axis=1) + np.log(w.sum())).all()  # fix-up ran


def test_cost_model_is_in_dense_units():
    """The spectral estimate grows linearly in the points; a zonal head costs one node per column."""
    small = spectral.spectral_cost(Sphere, Scales(4.0, 4.0, 10_000, 10_000), 4)
    large = spectral.spectral_cost(Sphere, Scales(4.0, 4.0, 1_000_000, 1_000_000), 4)
    assert 50 < large / small < 100
    general = spectral.spectral_cost(Sphere, Scales(0.5, 40.0, 10_000, 10_000), 4)
    assert general > 5 * small


def test_derived_quantities_are_kept_for_read_only_arrays_only():
    """kernels.cache: a grid's fixed (read-only) arrays are derived from once, a moving (writable)
    array, or a read-only view of one, every time; and the memory goes with the array."""
    import gc

    from vlasov_tf.kernels.cache import cached_names, derived

    calls = []

    def norms(a):
        calls.append(1)
        return np.linalg.norm(a, axis=1)

    moving = np.ones((5, 3))
    derived(moving, "norms", norms)
    moving[0] = 2.0  # tokens move: the next call must see it
    assert derived(moving, "norms", norms)[0] == pytest.approx(np.sqrt(12.0)) and len(calls) == 2
    view = moving[:3]
    view.flags.writeable = False  # read-only, but its base is not
    derived(view, "norms", norms)
    moving[0] = 3.0
    assert derived(view, "norms", norms)[0] == pytest.approx(np.sqrt(27.0)) and len(calls) == 4
    fixed = np.ones((5, 3))
    fixed.flags.writeable = False
    first = derived(fixed, "norms", norms)
    assert derived(fixed, "norms", norms) is first and len(calls) == 5
    assert cached_names(fixed) == ["norms"]
    probe = np.ones(3)
    probe.flags.writeable = False
    derived(probe, "twice", lambda a: 2 * a)
    assert cached_names(probe) == ["twice"]
    del probe, first
    gc.collect()
    assert cached_names(fixed) == ["norms"]  # the other array's entry went with it; this one stays


def test_fft_refuses_a_grid_off_the_lattice_beyond_tol(rng):
    """The FFT assumes exact lattice angles: a grid jittered by 1e-10 rad changes terms by
    exp(2 scale 1e-10), beyond tol for scale 4; "auto" must then take another method, within tol."""
    m = 4096
    t = 2 * np.pi * (np.arange(m) + 0.5) / m
    faces = np.c_[np.cos(t + np.pi / m), np.sin(t + np.pi / m)]
    exact = np.c_[np.cos(t), np.sin(t)]
    assert kernels.choose_method(4.0 * faces, exact, np.ones(m), 2) == "fft"
    t_jit = t + 1e-10 * rng.standard_normal(m)
    jittered = np.c_[np.cos(t_jit), np.sin(t_jit)]
    w = rng.random(m)
    assert kernels.choose_method(4.0 * faces, jittered, w, 2) != "fft"
    with pytest.raises(ValueError, match="does not apply"):
        kernels.kernel_sums(4.0 * faces, jittered, w, jittered, method="fft")
    got = kernels.kernel_sums(4.0 * faces, jittered, w, jittered)
    assert row_errors(*got, *kernels.exp_kernel_sums(4.0 * faces, jittered, w, jittered)).max() <= TOL
