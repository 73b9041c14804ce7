"""The shipped metastable case `cases/sphere_metastable_pairs.toml` against the two-point ODE, on
tokens and on the grid, and the two solvers against each other.

Two pairs of equal halves (0.55 and 0.65 rad apart, at +z and -z) among six octahedron sites at
beta = 12: each pair closes like two point masses, ``d theta/dt = -2 sin theta / (1 + exp(beta
(1 - cos theta)))``, everything else is about 1e-3 as strongly coupled. Once a pair is one cluster,
its spread s is the RMS distance of its two halves to their midpoint, ``s^2 = (theta / 2)^2 +
s_own^2`` (s_own: one cluster's own spread, read off the four single clusters at the same time),
so the stored clusters give theta(t) at every output after the merge, to put against the ODE's
angle at t from the halves' angle at t = 0. The counts go 8, 7, 6 and stay.

Default runs: the tokens (N = 500) through T, the level-1 grid to t = 2 (the first merge). The
shipped case itself (levels 2 and 3, N = 500 and 2000) is ``-m slow``.
"""

import numpy as np
import pytest
from scipy import optimize

from vlasov_tf.analysis.clusters import Clusters, merges, plateaus, two_cluster_merge_time
from vlasov_tf.geometry.meshes import sphere_char_length
from vlasov_tf.runs.cases import CASES_DIR, load_case
from vlasov_tf.runs.runner import run_case
from vlasov_tf.runs.storage import RunFile
from vlasov_tf.runs.studies import cluster_history

PATH = CASES_DIR / "sphere_metastable_pairs.toml"
OCTAHEDRON = np.r_[np.eye(3), -np.eye(3)]
#: Tokens: a pair's halves differ in mass by sampling (about N/12 tokens each), and its centre, the
#: mass-weighted mean, moves off the midpoint (measured 0.007 rad on 500 tokens, 0.029 on 2000).
TOKEN_SITE_TOL = 0.05


def ode_angle(theta0: float, t: float, beta: float) -> float:
    """The two-point ODE's angle at time t from theta0 (inverts :func:`two_cluster_merge_time`)."""
    if t == 0:
        return theta0
    return optimize.brentq(lambda x: two_cluster_merge_time(theta0, x, beta) - t, 1e-12, theta0 * (1 - 1e-12))


def pair_angle(h: Clusters, side: int) -> float:
    """The angle of the merged pair at +z (side 1) or -z (side -1): ``2 sqrt(s^2 - s_own^2)``."""
    merged = int(np.argmax(h.centres[:, 2] * side))
    own = float(np.median(h.spreads[np.abs(h.centres[:, 2]) < 0.5]))
    return 2.0 * np.sqrt(max(h.spreads[merged] ** 2 - own**2, 0.0))


def pair_track(
    times: np.ndarray, history: list[Clusters], beta: float
) -> dict[int, tuple[float, dict[float, float]]]:
    """For the pair at +z (side 1) and at -z (side -1): its merge time, and t -> its measured
    angle minus the ODE's at every output from the merge on (theta0: the halves at t = 0)."""
    first = history[0]
    out = {}
    for event in merges(times, history):
        k = int(np.flatnonzero(times == event.t)[0])
        side = int(np.sign(history[k].centres[event.after, 2]))
        halves = np.flatnonzero(first.centres[:, 2] * side > 0.9)
        assert len(halves) == 2 and side not in out, (event, first.centres)
        theta0 = float(np.arccos(np.clip(first.centres[halves[0]] @ first.centres[halves[1]], -1, 1)))
        errors = {
            float(t): pair_angle(h, side) - ode_angle(theta0, float(t), beta)
            for h, t in zip(history[k:], times[k:], strict=True)
        }
        out[side] = (float(event.t), errors)
    return out


def check_history(
    times, history, beta: float, *, mass_tol: float, angle_tol: float, site_tol: float
) -> dict[int, float]:
    """The counts 8, 7, 6; the +z pair (0.55 rad) merges first; each merged pair's angle follows
    the ODE within ``angle_tol`` to T; the clusters at the last output sit on the octahedron
    (within ``site_tol``) with mass 1/6 each (within ``mass_tol``). Returns the largest angle
    error of each pair."""
    counts = np.array([h.count for h in history])
    assert [c for c, _, _ in plateaus(times, counts)] == [8, 7, 6], plateaus(times, counts)
    track = pair_track(times, history, beta)
    assert sorted(track) == [-1, 1] and track[1][0] < track[-1][0]
    worst = {}
    for side, (t_merge, errors) in track.items():
        worst[side] = max(abs(e) for e in errors.values())
        assert len(errors) >= 10 and worst[side] <= angle_tol, (side, t_merge, errors)
    last = history[-1]
    np.testing.assert_allclose(last.masses, 1 / 6, atol=mass_tol)
    to_sites = np.arccos(np.clip(last.centres @ OCTAHEDRON.T, -1, 1))
    assert to_sites.min(axis=1).max() < site_tol and len(set(to_sites.argmin(axis=1))) == 6
    return worst


def test_the_case_is_the_geometry_its_comment_states():
    case = load_case(PATH)
    means = case.initial.means
    angles = np.arccos(np.clip(means @ means.T, -1, 1))
    pairs = {(0, 1, 1.0): 0.55, (2, 3, -1.0): 0.65}  # halves i, j about the pole z = side
    for (i, j, side), theta in pairs.items():
        assert angles[i, j] == pytest.approx(theta, abs=1e-8)
        np.testing.assert_allclose(means[i] + means[j], [0, 0, 2 * side * np.cos(theta / 2)], atol=1e-8)
    halves, sites = np.full(4, 1 / 12), np.full(4, 1 / 6)
    np.testing.assert_allclose(case.initial.proportions, np.r_[halves, sites], rtol=1e-15)
    others = angles[~np.eye(8, dtype=bool)]
    assert np.sort(others)[4] > 1.34  # four entries are the two pairs, each twice
    beta = case.betas[0]
    coupling = np.exp(-beta * (1 - np.cos(1.34))) / np.exp(-beta * (1 - np.cos(0.65)))
    assert 1e-3 < coupling < 1.2e-3
    assert case.linking_distance == pytest.approx(0.5 / np.sqrt(beta))
    assert two_cluster_merge_time(0.55, 0.2, beta) == pytest.approx(1.75, abs=0.01)
    assert two_cluster_merge_time(0.65, 0.2, beta) == pytest.approx(2.58, abs=0.01)


def test_tokens_merge_when_the_two_point_ode_says(tmp_path):
    """500 tokens under the continuous flow: both merged pairs' angles within 0.02 rad of the ODE
    to T (measured 0.002 and 0.012, the same on 2000 tokens: the halves' own width, which point
    masses lack), masses 1/6 within 3 binomial sd and the trim."""
    case = load_case(PATH, overrides={"particles.tokens": [500], "particles.layers": [10]})
    path = run_case(case, tmp_path / "run.h5", solvers=("particles",), diagnostics=False)
    with RunFile.open(path, mode="r") as run:
        times, history = cluster_history(run, "particles/N500_ref")
    sd = np.sqrt((1 / 6) * (5 / 6) / 500)
    tol = {"mass_tol": 3 * sd + 0.01, "angle_tol": 0.02, "site_tol": TOKEN_SITE_TOL}
    check_history(times, history, case.betas[0], **tol)


def test_coarse_grid_conserves_mass_and_merges_the_first_pair_when_the_ode_says(tmp_path):
    """The level-1 grid to t = 2: eight clusters, then the 0.55 pair merges and closes as the ODE
    says within half a cell (0.045 rad; a cluster's own spread is numerical there, about 0.05;
    measured 0.009 to t = 2, 0.037 to t = 4), the mass is conserved to round-off."""
    case = load_case(PATH, overrides={"grid.resolutions": [1], "case.T": 2.0, "case.outputs": 21})
    path = run_case(case, tmp_path / "run.h5", solvers=("grid",))
    with RunFile.open(path, mode="r") as run:
        times, history = cluster_history(run, "grid/K1")
        mass = run.diagnostics("mass")["grid/K1"][:, 1]
    np.testing.assert_allclose(mass, 1.0, atol=1e-12)
    counts = np.array([h.count for h in history])
    assert [c for c, _, _ in plateaus(times, counts)] == [8, 7]
    track = pair_track(times, history, case.betas[0])
    assert list(track) == [1]  # the +z pair, 0.55 rad
    errors = np.array(list(track[1][1].values()))
    assert len(errors) >= 5 and np.abs(errors).max() <= 0.5 * sphere_char_length(1), errors


def check_crossvalidation(case, run) -> dict[str, dict[int, float]]:
    """The shipped case's run: each solver against the ODE, then the grid against the tokens.
    Returns each job's largest angle error per pair."""
    beta, r = case.betas[0], case.linking_distance
    tokens = ("particles/N500_ref", "particles/N2000_ref")
    histories = {key: cluster_history(run, key) for key in ("grid/K2", "grid/K3", *tokens)}
    worst, angles = {}, {}
    for key, (times, history) in histories.items():
        if key.startswith("grid/"):
            # A cluster's own spread on a grid is numerical (about a cell): half a cell.
            tol = {"mass_tol": 0.01, "angle_tol": 0.5 * sphere_char_length(int(key[-1])), "site_tol": 0.01}
        else:
            sd = np.sqrt((1 / 6) * (5 / 6) / int(key.split("/N")[1].split("_")[0]))
            tol = {"mass_tol": 3 * sd + 0.01, "angle_tol": 0.02, "site_tol": TOKEN_SITE_TOL}
        worst[key] = check_history(times, history, beta, **tol)
        angles[key] = {}
        for side, (t_merge, errors) in pair_track(times, history, beta).items():
            angles[key][side] = {t: pair_angle(history[list(times).index(t)], side) for t in errors}
            # Seen as one once the halves' kept tails are within r: between r and 2r apart.
            assert r < angles[key][side][t_merge] < 2 * r, (key, side, angles[key][side][t_merge])
    # The grid's angle errors shrink with the cell (measured 0.017, 0.014 on level 2; 0.009 on 3).
    assert all(worst["grid/K3"][s] < worst["grid/K2"][s] for s in (1, -1)), worst
    # Grid against tokens: the pairs' angles at every output after both merged agree within a
    # cell (measured 0.008-0.013; the merge times move with N, with the tails that single
    # linkage reaches: 1.5 and 2.5 on the grid, 1.7 / 1.3 and 2.6 on 500 / 2000 tokens).
    for key in tokens:
        for side in (1, -1):
            a, b = angles["grid/K3"][side], angles[key][side]
            common = sorted(set(a) & set(b))
            gap = max(abs(a[t] - b[t]) for t in common)
            assert len(common) >= 10 and gap < sphere_char_length(3), (key, side, gap)
    # The grids conserve mass. SW1: the tokens' distance to the grid is their sampling (2000
    # tokens closer than 500 at every time), and stays within 1.5x its t = 0 value while the
    # clusters form, merge and sit (measured 1.13x, 1.39x: the clusters' sampled masses remain);
    # level 2 is 5x closer to level 3 than the most tokens are (measured 8.9x or more).
    for key, rows in run.diagnostics("mass").items():
        np.testing.assert_allclose(rows[:, 1], 1.0, atol=1e-12, err_msg=key)
    sw1 = {key: rows[:, 1] for key, rows in run.diagnostics("sw1_grid").items()}
    assert np.all(sw1[tokens[1]] < sw1[tokens[0]])
    for key in tokens:
        assert sw1[key].max() <= 1.5 * sw1[key][0], (key, sw1[key])
    assert np.all(5 * sw1["grid/K2"] < sw1[tokens[1]]), (sw1["grid/K2"], sw1[tokens[1]])
    return worst


@pytest.mark.slow
def test_the_shipped_case_on_the_level_3_grid_against_tokens(tmp_path):
    """The case as shipped (levels 2 and 3, N = 500 and 2000): 17.6 minutes of wall time, 8.3 of
    CPU, while the machine's load fell from 10 to 1."""
    case = load_case(PATH)
    path = run_case(case, tmp_path / "run.h5")
    with RunFile.open(path, mode="r") as run:
        check_crossvalidation(case, run)
