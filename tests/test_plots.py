"""Figures: the orthographic sphere maps, the panels of the cross-validation figure, the linear theory."""

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import LogNorm, Normalize, PowerNorm
from matplotlib.text import Text
from scipy.special import iv, spherical_in

from vlasov_tf.analysis.clusters import plateaus
from vlasov_tf.analysis.linear_theory import predicted_growth
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.models.attention import linear_growth_rate
from vlasov_tf.plots import (
    clusters_figure,
    convergence_figure,
    crossval_figure,
    density_norm,
    mode_growth_figure,
    plot_clusters,
    plot_crossval,
)
from vlasov_tf.plots.sphere_views import choose_view, orthographic, rim_mass, view_basis, visible_cells
from vlasov_tf.runs.cases import parse_case
from vlasov_tf.runs.runner import run_case
from vlasov_tf.runs.storage import RunFile
from vlasov_tf.runs.studies import RateTable, cluster_jobs, crossval_tables

SPHERE = """
[case]
name = "tiny_sphere"
geometry = "sphere"
T = 0.2
outputs = 3

[initial]
family = "vmf_mixture"
means = [[0.0, 0.0, 1.0], [0.8, 0.0, -0.6]]
kappas = [6.0, 8.0]

[model]
attention = "SA"
beta = 4.0

[particles]
tokens = [40, 80]
layers = [2, 4]
samples = 2
seed = 1

[grid]
resolutions = [0, 1]
cfl = 0.9
"""

CIRCLE = """
[case]
name = "tiny_instability"
geometry = "circle"
T = 2.0
outputs = 5

[initial]
family = "uniform_perturbed"
amplitude = 1e-3
k = 3

[model]
attention = "SA"
beta = 4.0

[particles]
tokens = [64, 128]
layers = [4, 8]
sampling = "quantiles"

[grid]
resolutions = [64, 128]
max_dt = 0.05
"""


def _run(tmp_path_factory, text):
    case = parse_case(text)
    path = run_case(case, tmp_path_factory.mktemp(case.name) / f"{case.name}.h5")
    return case, path


@pytest.fixture(scope="module")
def sphere_run(tmp_path_factory):
    return _run(tmp_path_factory, SPHERE)


@pytest.fixture(scope="module")
def circle_run(tmp_path_factory):
    return _run(tmp_path_factory, CIRCLE)


def all_axes(fig):
    """The axes of a figure and of its subfigures (each once: ``Figure.axes`` may list both)."""
    out = list(fig.axes)
    for sub in getattr(fig, "subfigs", []):
        out += all_axes(sub)
    return list(dict.fromkeys(out))


def texts(fig):
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def random_views(rng, n):
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ------------------------------------------------------------------ the orthographic view
def test_orthographic_maps_the_visible_hemisphere_into_the_unit_disc(rng):
    for v in [*random_views(rng, 5), np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, -1.0])]:
        right, up, w = view_basis(v)
        np.testing.assert_allclose(np.linalg.det(np.array([right, up, w])), 1.0)  # seen from outside
        x = random_views(rng, 500)
        xy, depth = orthographic(x, v)
        np.testing.assert_allclose(depth, x @ v)
        np.testing.assert_allclose((xy**2).sum(axis=1) + depth**2, 1.0)  # an orthonormal frame
        assert (np.hypot(*xy[depth >= 0].T) <= 1.0 + 1e-12).all()
        # v itself at the centre; a point at angle a from v at radius sin a
        np.testing.assert_allclose(orthographic(v[None], v)[0], 0.0, atol=1e-15)
        np.testing.assert_allclose(np.hypot(*xy.T), np.sin(np.arccos(np.clip(x @ v, -1, 1))), atol=1e-12)
        # the other disc: the same points seen from behind, mirrored left-right
        xy_back, depth_back = orthographic(x, -v)
        np.testing.assert_allclose(xy_back, xy * [-1.0, 1.0], atol=1e-14)
        np.testing.assert_allclose(depth_back, -depth)
    # north up: from the equator, the north pole is at the top of the disc
    np.testing.assert_allclose(orthographic(np.array([[0.0, 0.0, 1.0]]), [1.0, 0.0, 0.0])[0], [[0.0, 1.0]])


@pytest.mark.parametrize("level", [0, 1])
def test_visible_cells_cover_each_hemisphere_without_a_gap(level, rng):
    mesh = sphere_mesh(level)
    for v in random_views(rng, 4):
        front, back = visible_cells(mesh, v), visible_cells(mesh, -v)
        # every cell is drawn in one of the two discs (both only if its centre is on the rim)
        assert np.union1d(front, back).size == mesh.n_cells
        assert (mesh.centres[front] @ v >= 0).all()
        # the visible cells make up a hemisphere, to the width of the rim's band of cells
        assert abs(mesh.areas[front].sum() - 2 * np.pi) < 0.5 * mesh.h  # measured <= 0.34 h
        # their projected triangles tile the unit disc: no hole (a missing cell would lose ~h^2)
        xy, _ = orthographic(mesh.vertices, v)
        p = xy[mesh.cell_vertices[front]]
        e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
        # flat facets and the polygonal rim lose 1.5 ... 1.7 h^2 of the disc's pi
        assert 0 < np.pi - area < 2.0 * mesh.h**2
        assert (np.hypot(*p.reshape(-1, 2).T) <= 1.0 + 1e-12).all()


def test_choose_view_keeps_clusters_off_the_rim():
    # four clusters on the equator: +z (the default) would put every one of them on the rim
    ring = np.array([[1.0, 0, 0], [0, 1.0, 0], [-1.0, 0, 0], [0, -1.0, 0]])
    w = np.full(4, 0.25)
    v, how = choose_view([(ring, w)])
    assert rim_mass(ring, w, v)[0] < 0.05 < rim_mass(ring, w, [0.0, 0.0, 1.0])[0]
    assert "rim" in how
    # clusters at the poles: +z, north pole first
    poles = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.6, 0.0, 0.8]])
    v, how = choose_view([(poles, np.array([0.5, 0.3, 0.2]))])
    np.testing.assert_array_equal(v, [0.0, 0.0, 1.0])
    assert how.startswith("+z")


def test_density_norm_by_contrast():
    clusters = np.concatenate([np.zeros(1000), np.full(10, 1e-3), [50.0, 80.0]])
    norm = density_norm([np.full(1012, 0.08), clusters])
    assert isinstance(norm, LogNorm) and norm.vmax == 80.0 and norm.vmin == pytest.approx(80.0 / 1e4)
    near_uniform = density_norm([np.linspace(0.079, 0.081, 50)])
    assert type(near_uniform) is Normalize and near_uniform.vmin == 0.079
    bumps = density_norm([np.linspace(0.001, 0.6, 100)])
    assert isinstance(bumps, PowerNorm)


# ------------------------------------------------------------------ the cross-validation figures
def test_sphere_crossval_figure(sphere_run, tmp_path):
    case, path = sphere_run
    with RunFile.open(path, mode="r") as run:
        fig = crossval_figure(case, run)
        tables = crossval_tables(case, run)
        png = plot_crossval(case, run, tmp_path / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = all_axes(fig)
    discs = [ax for ax in axes if "seen from" in ax.get_title()]
    assert len(discs) == 6
    assert sum("+v" in ax.get_title() for ax in discs) == 3
    mesh = sphere_mesh(1)  # the finest grid
    drawn = {}
    for ax in discs:
        (cells,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
        drawn[ax.get_title()] = len(cells.get_paths())
        # the tokens (red markers) lie in the disc
        for line in ax.get_lines():
            xy = line.get_xydata()
            if line.get_marker() == "o":
                assert len(xy) and (np.hypot(*xy.T) <= 1.0 + 1e-12).all()
    # at each time the two discs draw every cell of the finest grid
    for t in ("0", "0.1", "0.2"):
        front, back = drawn[f"t = {t}, seen from +v"], drawn[f"t = {t}, seen from −v"]
        assert front + back >= mesh.n_cells and min(front, back) > mesh.n_cells / 4
    titles = " | ".join(ax.get_title() for ax in axes)
    for what in ("grid mass", "interaction energy", "SW1 to the finest grid"):
        assert what in titles
    assert any("grid density" in ax.get_ylabel() for ax in axes)  # the colour bar
    rate_axes = [ax for ax in axes if ax.get_xlabel() in ("layers L", "tokens N", "mesh size h")]
    assert len(rate_axes) == len(tables) == 4
    all_text = " ".join(texts(fig))
    assert "nan" not in all_text
    assert "± 1 sd over 2 samples" in all_text and "sliced standard errors" in all_text
    assert not any("perturbed mode" in t for t in texts(fig))


def test_circle_instability_figure_and_linear_theory(circle_run):
    case, path = circle_run
    with RunFile.open(path, mode="r") as run:
        fig = crossval_figure(case, run)
        alone = mode_growth_figure(case, run)
    axes = all_axes(fig)
    assert sum(ax.get_title().startswith("t = ") for ax in axes) == 3  # the circle's density row
    (mode_ax,) = [ax for ax in axes if ax.get_ylabel().startswith("|a(t) / a(0)|")]
    lines = {line.get_label(): line for line in mode_ax.get_lines()}
    (theory,) = [line for label, line in lines.items() if label.startswith("linear theory")]
    t, pred = theory.get_xydata().T
    lam = 3**2 * iv(3, 4.0) / (4.0 * iv(0, 4.0))  # k^2 I_k(beta) / (beta I_0(beta)), SA
    assert lam == pytest.approx(0.6644, abs=1e-4)  # the value quoted in cases/circle_instability.toml
    np.testing.assert_allclose(t, case.output_times)
    np.testing.assert_allclose(pred, np.exp(lam * t), rtol=1e-12)
    # the finest grid follows the theory while the mode is small (the grid's own growth, not the line's)
    grid = lines["grid, M = 128"].get_xydata()
    assert grid[0, 1] == 1.0
    np.testing.assert_allclose(grid[:, 1], np.exp(lam * grid[:, 0]), rtol=5e-3)
    assert not np.allclose(grid[1:, 1], 1.0)  # it grew
    assert any(ax.get_ylabel() == "measured / theory" for ax in axes)
    assert len(alone.axes) == 2
    assert "nan" not in " ".join(texts(fig))


def test_one_point_table_says_so():
    one = RateTable(
        "grid_l1",
        "L1(grid, finest grid summed into its cells)",
        np.array([0.1]),
        np.array([2e-3]),
        float("nan"),
        2.0,
        metric="L1",
    )
    two = RateTable(
        "layers",
        "W1(L layers, continuous flow), N = 100",
        np.array([10.0, 20.0]),
        np.array([1e-2, 5e-3]),
        1.0,
        1.0,
    )
    fig = convergence_figure([one, two])
    ax_one, ax_two = fig.axes
    one_text = [ax_one.get_title(), *(t.get_text() for t in ax_one.get_legend().get_texts())]
    assert any("one point: no rate" in s for s in one_text)
    assert not any("nan" in s for s in texts(fig))
    assert "fitted rate 1.00" in ax_two.get_legend().get_texts()[0].get_text()
    # the point itself is drawn, with the expected slope through it
    (measured, expected) = ax_one.get_lines()
    np.testing.assert_array_equal(measured.get_xydata(), [[0.1, 2e-3]])
    x, y = expected.get_xydata().T
    np.testing.assert_allclose(np.log(y[1] / y[0]) / np.log(x[1] / x[0]), 2.0)


@pytest.mark.parametrize("beta", [1.0, 4.0, 12.0])
def test_linear_growth_rates_are_the_readme_formulae(beta):
    for k in (1, 2, 3, 5):
        assert linear_growth_rate(2, k, beta, "SA") == pytest.approx(
            k * k * iv(k, beta) / (beta * iv(0, beta))
        )
        assert linear_growth_rate(2, k, beta, "USA") == pytest.approx(k * k * iv(k, beta) / beta)
        sa = k * (k + 1) * spherical_in(k, beta) / (beta * spherical_in(0, beta))
        assert linear_growth_rate(3, k, beta, "SA") == pytest.approx(sa)
        assert linear_growth_rate(3, k, beta, "USA") == pytest.approx(
            k * (k + 1) * spherical_in(k, beta) / beta
        )


def test_predicted_growth_is_piecewise_over_the_schedule():
    text = (
        CIRCLE.replace('[model]\nattention = "SA"\nbeta = 4.0', "[model]\nbeta = 4.0").replace(
            "T = 2.0", "T = 3.0"
        )
        + '\n[[schedule]]\nduration = 1.0\n\n[[schedule]]\nduration = 2.0\nbeta = 2.0\nattention = "USA"\n'
    )
    case = parse_case(text)
    t = np.linspace(0.0, 3.0, 7)
    l1, l2 = linear_growth_rate(2, 3, 4.0, "SA"), linear_growth_rate(2, 3, 2.0, "USA")
    np.testing.assert_allclose(
        predicted_growth(case, t), np.exp(l1 * np.minimum(t, 1) + l2 * np.maximum(t - 1, 0))
    )
    assert predicted_growth(parse_case(SPHERE), t) is None  # not a perturbed uniform state


def test_clusters_figure_shows_every_job_and_its_counts(sphere_run, tmp_path):
    case, path = sphere_run
    with RunFile.open(path, mode="r") as run:
        fig = clusters_figure(case, run)
        png = plot_clusters(case, run, tmp_path / "clusters.png")
        jobs = cluster_jobs(case, run)
        counts = {key: rows[:, 1] for key, rows in run.diagnostics("clusters").items()}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    count_ax, mass_ax, energy_ax = fig.axes
    assert [line.get_label() for line in count_ax.get_lines()][: len(jobs)] == [
        ("grid, level 1" if j.kind == "grid" else f"tokens, N = {j.tokens}, ")
        + ("" if j.kind == "grid" else ("continuous flow" if j.layers is None else f"L = {j.layers}"))
        for j in jobs
    ]
    for line, job in zip(count_ax.get_lines(), jobs, strict=False):
        np.testing.assert_array_equal(line.get_ydata(), counts[job.key])
    assert "number of clusters" in count_ax.get_title() and "nan" not in " ".join(texts(fig))
    # a line per cluster rank and job, and one legend proxy per job
    assert len(mass_ax.get_lines()) == sum(int(counts[j.key].max()) + 1 for j in jobs)
    first = [c for c, _, _ in plateaus(case.output_times, counts[jobs[0].key])]
    assert [int(t.get_text()) for t in energy_ax.texts] == first


def test_the_learning_figure_title_stays_inside_the_figure():
    """A case description longer than the one-panel learning figure is wide (the shipped
    learn_attention's) is wrapped, not cut off at both edges."""
    from vlasov_tf.plots import learning_figure

    history = np.array([[1.0, 0.05, np.nan], [2.0, 0.03, 0.02]])
    res = {"history": history, "identity_rms": 0.2, "test_rms": 0.1}
    title = "learn_attention: learning the attention flow itself (beta = 2, Q = K = V = I): an exact fit"
    fig = learning_figure(res, title)
    fig.canvas.draw()
    (sup,) = [t for t in fig.findobj(Text) if t.get_text() and t.get_text() == fig.get_suptitle()]
    box = sup.get_window_extent()
    assert 0 <= box.x0 < box.x1 <= fig.bbox.width
