"""Ensembles over beta: the batched field against the model's, the random-matrix ensembles' scaling,
the batched cluster counts against clusters.find_clusters, the batched flow against
solve_particles (redraws included), and a sweep's maps, resume and facts."""


import numpy as np
import pytest
from helpers import killed_at_call

import vlasov_tf as vt
import vlasov_tf.runs.sweeps as sweeps
from vlasov_tf.analysis.clusters import find_clusters, linking_distance
from vlasov_tf.cli import main
from vlasov_tf.geometry.measures import normalize, uniform_sphere
from vlasov_tf.runs.cases import CASES_DIR, load_case, parse_case
from vlasov_tf.runs.ensembles import (
    ENSEMBLES,
    batched_velocity,
    close_fraction,
    cluster_counts,
    ensemble_flow,
    member_stream,
    phase_maps,
    random_qkv,
)
from vlasov_tf.runs.storage import RunFile
from vlasov_tf.runs.sweeps import run_sweep


@pytest.mark.parametrize("attention", ["SA", "USA"])
def test_batched_velocity_is_the_models(attention, rng):
    m, n, d = 5, 30, 6
    x = normalize(rng.standard_normal((m, n, d)))
    q, k, v = (rng.standard_normal((m, d, d)) / np.sqrt(d) for _ in range(3))
    betas = np.array([0.5, 1.0, 4.0, 9.0, 20.0])
    got = batched_velocity(x, q, k, v, betas, attention)
    for i in range(m):
        params = vt.Params.qkv(q[i], k[i], v[i], beta=betas[i], attention=attention)
        np.testing.assert_allclose(got[i], vt.velocity(params, x[i]), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ENSEMBLES)
def test_random_matrix_ensembles_have_the_stated_scaling(kind):
    d = 300
    q, k, v = random_qkv(kind, d, member_stream(0, 0, 0))
    if kind == "identity":
        assert all(np.array_equal(a, np.eye(d)) for a in (q, k, v))
        return
    for a in (q, k, v):
        off = a[~np.eye(d, dtype=bool)]
        assert np.var(off) == pytest.approx(1.0 / d, rel=0.05)
        if kind != "gaussian":
            assert np.array_equal(a, a.T)
            # the semicircle on [-2, 2]
            assert np.abs(np.linalg.eigvalsh(a)).max() == pytest.approx(2.0, abs=0.15)
    if kind == "wigner":
        assert set(np.unique(np.round(q * np.sqrt(2 * d), 9))) <= {-2.0, 0.0, 2.0}
    assert not np.array_equal(q, random_qkv(kind, d, member_stream(0, 1, 0))[0])  # members differ
    assert np.array_equal(q, random_qkv(kind, d, member_stream(0, 0, 0))[0])  # streams reproduce


def test_batched_cluster_counts_and_close_pairs_follow_their_definitions(rng):
    m, n, d = 12, 48, 4
    centres = normalize(rng.standard_normal((m, 5, d)))
    spread = np.linspace(0.01, 0.6, m)[:, None, None]
    pick = rng.integers(0, 5, (m, n))
    near = np.take_along_axis(centres, pick[:, :, None], axis=1)
    x = normalize(near + spread * rng.standard_normal((m, n, d)))
    radius = np.linspace(0.1, 0.8, m)
    counts = cluster_counts(x, radius, 0.05, 0.1)
    expected = [find_clusters(x[i], None, radius[i], trim=0.05, min_mass=0.1)[0].count for i in range(m)]
    assert counts.tolist() == expected and len(set(expected)) > 2
    gram = np.einsum("mid,mjd->mij", x, x)
    angle = np.arccos(np.clip(gram, -1, 1))
    iu = np.triu_indices(n, 1)
    np.testing.assert_allclose(close_fraction(x, 0.3), (angle[:, iu[0], iu[1]] < 0.3).mean(axis=1))


def test_batched_flow_is_rk4_with_its_redraws(rng):
    """Each member as solve_particles' RK4 with the piecewise-constant parameters drawn for it;
    a batch of six gives the same bits for its first three as a batch of three."""
    m, n, d, T = 6, 20, 3, 2.0
    x0 = np.stack([uniform_sphere(n, d, rng) for _ in range(m)])
    betas = np.linspace(1.0, 6.0, m)
    times = np.linspace(0.0, T, 5)

    def draws(count):
        def draw(period):
            qkv = [random_qkv("goe", d, member_stream(3, i, period)) for i in range(count)]
            return tuple(np.array([p[j] for p in qkv]) for j in range(3))

        return draw

    out = {}
    for count in (m, 3):
        got = np.empty((len(times), count, n, d))
        ensemble_flow(x0[:count], draws(count), betas[:count], times, 80, redraw=0.7,
                      callback=lambda i, x, got=got: got.__setitem__(i, x))  # fmt: skip
        out[count] = got
    assert np.array_equal(out[3], out[m][:, :3])
    for i in range(m):
        blocks = []
        for start, end in zip([0.0, 0.7, 1.4], [0.7, 1.4, 2.0], strict=True):
            q, k, v = random_qkv("goe", d, member_stream(3, i, round(start / 0.7)))
            blocks.append((end - start, vt.Params.qkv(q, k, v, beta=betas[i])))
        sol = vt.solve_particles(vt.Schedule(tuple(blocks)), x0[i], None, method="rk4", steps=80,
                                 t_eval=times, field_method="dense")  # fmt: skip
        np.testing.assert_allclose(out[m][:, i], sol.positions, atol=1e-12)  # the same steps


SWEEP = """
[case]
name = "phase"
geometry = "sphere"
d = 5
T = 6.0
outputs = 7

[initial]
family = "uniform"

[model]
attention = "SA"
beta = 1.0

[particles]
tokens = [32]
layers = [1]

[sweep]
betas = [0.5, 2.0, 8.0, 32.0]
members = 6
parameters = "identity"
steps = 120
"""


def test_a_sweep_maps_clustering_over_beta_and_resumes(tmp_path, monkeypatch):
    """Q = K = V = I: at small beta the tokens gather into one cluster; at large beta many
    (metastable) clusters remain at T; close pairs only grow in time. A sweep killed after its
    first batch resumes to the same maps."""
    case = parse_case(SWEEP)
    path = run_sweep(case, tmp_path / "phase.h5")
    with RunFile.open(path, mode="r") as run:
        maps = phase_maps(run)
        _, x = run.job_state("sweep/b000")
    assert maps.betas.tolist() == [0.5, 2.0, 8.0, 32.0] and maps.members == 6
    assert maps.clusters_mean.shape == (4, 7) and np.isfinite(maps.clusters_mean).all()
    assert x.shape == (7, 6 * 32, 5)
    final = maps.clusters_mean[:, -1]
    assert final[0] == 1.0 and final[-1] >= 3 and np.all(np.diff(final) >= 0)
    assert np.all(np.diff(maps.close_mean, axis=1) >= -1e-12)
    assert np.all(maps.close_sd >= 0)

    monkeypatch.setattr(sweeps, "BATCH_SCORES", 6 * 32 * 32)  # one beta a batch
    with killed_at_call(monkeypatch, sweeps, "_store", 2):  # as the second batch is stored
        run_sweep(case, tmp_path / "again.h5")
    run_sweep(case, tmp_path / "again.h5", resume=True)
    with RunFile.open(tmp_path / "again.h5", mode="r") as run:
        again = phase_maps(run)
    np.testing.assert_array_equal(again.clusters_mean, maps.clusters_mean)
    np.testing.assert_array_equal(again.close_mean, maps.close_mean)


def test_a_sweep_stores_its_betas_batch_by_batch(tmp_path, monkeypatch):
    """All 24 betas of the shipped sweep ran in one batch, stored only at its end: a kill lost
    everything. Batches are now at most an eighth of the betas."""
    case = parse_case(SWEEP)  # 4 betas: one a batch
    with killed_at_call(monkeypatch, sweeps, "_store", 2):  # as the second batch is stored
        run_sweep(case, tmp_path / "cut.h5")
    with RunFile.open(tmp_path / "cut.h5", mode="r") as run:
        assert [run.is_complete(k) for k in run.jobs()] == [True, False, False, False]


def test_sweep_cases_are_checked():
    with pytest.raises(ValueError, match=r"sweep\.parameters must be one of"):
        parse_case(SWEEP.replace('parameters = "identity"', 'parameters = "cauchy"'))
    with pytest.raises(ValueError, match=r"sweep\.betas"):
        parse_case(SWEEP.replace("betas = [0.5, 2.0, 8.0, 32.0]", "betas = [2.0, 1.0]"))
    with pytest.raises(ValueError, match=r"sweep\.members must be >= 1"):
        parse_case(SWEEP.replace("members = 6", "members = 0"))
    # What the sweep would silently ignore, and values that hung it or broke its run file.
    with pytest.raises(ValueError, match=r"sweep draws its own single head over one block: remove model\.Q"):
        eye = str(np.eye(5).tolist())
        parse_case(SWEEP.replace("beta = 1.0", f"beta = 1.0\nQ = {eye}\nK = {eye}\nV = {eye}"))
    with pytest.raises(ValueError, match=r"remove norm"):
        parse_case(SWEEP.replace("layers = [1]", 'layers = [1]\nnorm = "pre"'))
    with pytest.raises(ValueError, match=r"sweep\.redraw must be 0 \(never\) or at least one step"):
        parse_case(SWEEP.replace("steps = 120", "steps = 120\nredraw = 1e-300"))
    with pytest.raises(ValueError, match=r"clusters\.min_mass must lie in \[0\.0001, 1\]"):
        parse_case(SWEEP + "\n[clusters]\nmin_mass = 1e-300\n")
    log_spaced = "betas = { from = 1.0, to = 100.0, count = 5 }"
    spaced = parse_case(SWEEP.replace("betas = [0.5, 2.0, 8.0, 32.0]", log_spaced))
    np.testing.assert_allclose(spaced.sweep.betas, [1.0, 10**0.5, 10.0, 10**1.5, 100.0])
    assert linking_distance(4.0) == 0.5


def test_cli_sweep_prints_its_maps_and_plot_draws_them(tmp_path, capsys):
    src = tmp_path / "phase.toml"
    src.write_text(SWEEP.replace("members = 6", "members = 3"))
    assert main(["sweep", str(src), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sweep: 3 members a beta, N = 32, d = 5, parameters identity" in out
    rows = [line for line in out.splitlines() if line.count("+-") == 6]  # 6 of the 7 times
    assert [float(r.split()[0]) for r in rows] == [0.5, 2.0, 8.0, 32.0] and "phase-sweep.phase.png" in out
    assert (tmp_path / "phase-sweep.phase.png").stat().st_size > 20_000
    assert main(["plot", str(tmp_path / "phase-sweep.h5"), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "phase-sweep.phase.png").exists()
    src.write_text(SWEEP[: SWEEP.index("[sweep]")])
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(src), "--out", str(tmp_path)])
    assert exc.value.code == 2 and "no [sweep] table" in capsys.readouterr().err


def test_shipped_phase_diagram_case_loads():
    case = load_case(CASES_DIR / "phase_diagram.toml")
    assert case.d == 8 and case.sweep.members == 16 and len(case.sweep.betas) == 24
    assert case.sweep.betas[0] == 0.5 and case.sweep.betas[-1] == pytest.approx(100.0)
