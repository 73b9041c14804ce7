"""Every figure command works for every geometry a case can have: S^1, S^2, S^{d-1} with d > 3
(no sphere views: projections and pairwise angles) and R^d (no sphere views, no angle histograms);
`vlasov-tf run` draws the figures `plot` draws unless --no-plot."""

import numpy as np
import pytest
from scipy import integrate

from vlasov_tf.cli import main
from vlasov_tf.plots import clusters_figure, crossval_figure
from vlasov_tf.plots.token_views import pair_distances, projection_plane, uniform_angle_density
from vlasov_tf.runs.cases import parse_case
from vlasov_tf.runs.storage import RunFile

HIGH_SPHERE = """
[case]
name = "s7"
geometry = "sphere"
d = 8
T = 2.0
outputs = 3
[initial]
family = "uniform"
[model]
beta = 1.0
[particles]
tokens = [24, 48]
layers = [2, 4]
"""

EUCLIDEAN = """
[case]
name = "r{d}"
geometry = "euclidean"
d = {d}
T = 0.5
outputs = 3
[initial]
family = "gaussian"
mean = {mean}
covariance = {cov}
[model]
beta = 0.5
[particles]
tokens = [24, 48]
layers = [2, 4]
"""


def euclidean(d: int) -> str:
    cov = np.eye(d) * 0.3
    return EUCLIDEAN.format(d=d, mean=[0.5] * d, cov=cov.tolist())


def all_axes(fig):
    out = list(fig.axes)
    for sub in getattr(fig, "subfigs", []):
        out += all_axes(sub)
    return list(dict.fromkeys(out))


def test_projection_plane_holds_tokens_that_lie_in_a_plane(rng):
    d = 8
    a, b = np.linalg.qr(rng.standard_normal((d, 2)))[0].T
    phi = rng.uniform(0, 2 * np.pi, 50)
    x = np.outer(np.cos(phi), a) + np.outer(np.sin(phi), b)  # a great circle of S^7
    w = rng.uniform(0.5, 1.5, 50)
    basis, origin = projection_plane(x, w, sphere=True)
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(origin, 0.0)
    np.testing.assert_allclose(np.linalg.norm(x @ basis.T, axis=1), 1.0, atol=1e-12)  # on the unit circle
    # R^d: a planar cloud about its mean is projected without loss (distances kept).
    y = 3.0 + 2.0 * x[:, :] + 1e-9 * rng.standard_normal(x.shape)
    basis, origin = projection_plane(y, w, sphere=False)
    np.testing.assert_allclose(origin, w @ y / w.sum())
    xy = (y - origin) @ basis.T
    i, j = np.triu_indices(len(y), 1)
    np.testing.assert_allclose(
        np.linalg.norm(xy[i] - xy[j], axis=1), np.linalg.norm(y[i] - y[j], axis=1), atol=1e-7
    )


@pytest.mark.parametrize("d", [3, 4, 8])
def test_uniform_angle_density_is_the_law_of_two_uniform_points(d, rng):
    assert integrate.quad(uniform_angle_density, 0, np.pi, args=(d,))[0] == pytest.approx(1.0, abs=1e-12)
    if d == 3:  # S^2: sin(theta) / 2
        theta = np.linspace(0, np.pi, 7)
        np.testing.assert_allclose(uniform_angle_density(theta, 3), np.sin(theta) / 2, atol=1e-15)
    x = rng.standard_normal((400, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    angles, pw = pair_distances(x, np.ones(400), sphere=True)
    assert pw.sum() == pytest.approx(1.0) and len(angles) == 400 * 399 // 2
    # The mean of cos^2 over pairs is 1/d; against the density: int cos^2 p dtheta.
    second = integrate.quad(lambda t: np.cos(t) ** 2 * uniform_angle_density(t, d), 0, np.pi)[0]
    assert second == pytest.approx(1.0 / d, abs=1e-10)
    assert abs(pw @ np.cos(angles) ** 2 - 1.0 / d) < 5.0 / 400


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (HIGH_SPHERE, "angle between two tokens (radians)"),
        (euclidean(2), "distance between two tokens"),
        (euclidean(3), "distance between two tokens"),
    ],
    ids=["S^7", "R^2", "R^3"],
)
def test_run_draws_every_geometry_without_sphere_views(text, label, tmp_path, capsys):
    """S^7 crashed in the sphere views (matmul 3 vs 8); R^d drew angle histograms of planar tokens."""
    case = parse_case(text)
    src = tmp_path / f"{case.name}.toml"
    src.write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(src), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"{case.name}.clusters.png", f"{case.name}.png"], pngs
    assert all(f"figure: {out / name}" in printed for name in pngs)
    with RunFile.open(out / f"{case.name}.h5", mode="r") as run:
        fig = crossval_figure(case, run)
        axes = all_axes(fig)
        xlabels = [ax.get_xlabel() for ax in axes]
        assert "angle θ" not in xlabels and label in xlabels  # no angle histogram; the pair statistics
        assert not any(ax.collections and not ax.axison for ax in axes)  # no orthographic discs
        # Tokens only: no (empty) grid mass panel; the diagnostics row is energy and distances.
        titles = [ax.get_title() for ax in axes]
        assert not any("grid mass" in t for t in titles), titles
        assert any(t.startswith("interaction energy") for t in titles)
        # Each rate table's error axis is labelled, also within one decade (it showed no number).
        fig.canvas.draw()
        for ax in [ax for ax in axes if ax.get_ylabel().endswith(" at T")]:
            lo, hi = ax.get_ylim()
            labels = ax.get_yticklabels(which="both")
            assert [t for t in labels if t.get_text() and lo <= t.get_position()[1] <= hi], ax.get_title()
        (hist,) = [ax for ax in axes if ax.get_xlabel() == label]
        assert len(hist.patches) == 3  # the first, middle and last times
        clusters_figure(case, run)
    assert main(["run", str(src), "--out", str(tmp_path / "quiet"), "--no-progress", "--no-plot"]) == 0
    assert not list((tmp_path / "quiet").glob("*.png"))


def test_study_of_a_high_sphere_case(tmp_path, capsys):
    src = tmp_path / "s7.toml"
    src.write_text(HIGH_SPHERE)
    assert main(["study", str(src), "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "s7.png").is_file() and (tmp_path / "s7.clusters.png").is_file()
    for png in tmp_path.glob("*.png"):
        png.unlink()
    assert main(["plot", str(tmp_path / "s7.h5")]) == 0  # crashed: matmul, size 3 is different from 8
    assert (tmp_path / "s7.png").is_file() and (tmp_path / "s7.clusters.png").is_file()
