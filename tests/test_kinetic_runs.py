"""The kinetic door: the [kinetic] case table, `vlasov-tf kinetic` and `study` of a kinetic case, its run
file (phase jobs, XDMF, diagnostics), resume bit for bit, figures, and the HMF coupling of models."""

import numpy as np
import pytest
from helpers import killed_at_call

from vlasov_tf import cli
from vlasov_tf.kernels.zonal import Constant, Exponential
from vlasov_tf.models.attention import Head, Params
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.runs import storage as io
from vlasov_tf.runs.cases import load_case, parse_case
from vlasov_tf.runs.kinetic_runs import (
    diagnostic_series,
    hmf_coupling,
    initial_phase_density,
    particle_distances,
    run_kinetic,
)
from vlasov_tf.runs.storage import RunFile
from vlasov_tf.solvers.kinetic_grid import PhaseGrid

CASE = """
[case]
name = "kin"
geometry = "circle"
T = 2.0
outputs = 5

[initial]
family = "uniform_perturbed"
amplitude = 0.2
k = 1

[model]
type = "interaction"
kernel = {{ name = "constant", c = 1.0 }}

[particles]
tokens = [100]
layers = [10]

[kinetic]
velocity_box = 3.0
velocity_cells = [16, 32]
theta_cells = [16, 32]
dt = 0.1
{extra}
velocity = {{ temperatures = [0.25] }}
"""


def case_text(extra: str = "") -> str:
    return CASE.format(extra=extra)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("friction = -1.0", "kinetic.friction must be finite and >= 0"),
        ("streaming = 'exact'", "kinetic.streaming"),
        ("wobble = 1", "wobble"),
    ],
)
def test_bad_kinetic_tables_are_refused_naming_the_key(extra, message):
    with pytest.raises(ValueError, match=message):
        parse_case(case_text(extra), "kin.toml")


def test_the_box_must_hold_the_velocity_law_and_the_counts_pair():
    with pytest.raises(ValueError, match=r"kinetic.velocity_box.*outside"):
        parse_case(case_text().replace("velocity_box = 3.0", "velocity_box = 1.0"), "kin.toml")
    with pytest.raises(ValueError, match=r"kinetic\.velocity_cells needs one count per theta grid"):
        parse_case(case_text().replace("velocity_cells = [16, 32]", "velocity_cells = [16]"), "kin.toml")
    # On the sphere the grids are [grid] levels: the circle's theta_cells are refused there
    # (tests/test_kinetic_sphere_runs.py runs sphere cases).
    sphere = case_text().replace('geometry = "circle"', 'geometry = "sphere"').replace("k = 1", "l = 1")
    with pytest.raises(ValueError, match=r"kinetic\.theta_cells is the circle's"):
        parse_case(sphere, "kin.toml")


def test_initial_phase_density_has_mass_one_and_the_initial_marginal():
    case = parse_case(case_text(), "kin.toml")
    g = PhaseGrid(16, 32, 3.0)
    f0 = initial_phase_density(case, g)
    assert abs(f0.sum() * g.cell_area - 1) < 1e-6  # P(|v| > 3) at T = 0.25 is 1.97e-9
    rho = f0.sum(axis=1) * g.dv
    exact = (1 + 0.2 * np.cos(g.theta) * np.sinc(g.dtheta / (2 * np.pi))) / (2 * np.pi)
    assert np.abs(rho - exact).max() < 1e-8


def test_hmf_coupling_of_models():
    sa = Params(heads=(Head(B=np.zeros((2, 2)), V=0.7 * np.eye(2)),))
    assert hmf_coupling(sa) == pytest.approx(0.7, abs=1e-12)
    assert hmf_coupling(Interaction(d=2, kernel=Constant(1.3))) == pytest.approx(1.3, abs=1e-12)
    assert hmf_coupling(Interaction(d=2, kernel=Exponential(2.0))) is None  # higher modes


def test_kinetic_command_writes_the_run_prints_the_study_and_draws(tmp_path, capsys):
    (tmp_path / "kin.toml").write_text(case_text())
    assert cli.main(["kinetic", str(tmp_path / "kin.toml"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "kinetic study of kin" in out and "theory (HMF, K = 1)" in out
    path = tmp_path / "out" / "kin-kinetic.h5"
    with RunFile.open(path, mode="r") as run:
        assert run.jobs() == ["kinetic/M16_V16", "kinetic/M32_V32", "kinetic_particles/N100_ref",
                              "kinetic_particles/N100_L10"]  # fmt: skip
        _, f = run.job_state("kinetic/M32_V32")
        assert f.shape == (5, 32 * 32) and (f >= 0).all()
        mass = diagnostic_series(run, "mass", "kinetic/M32_V32")
        outflow = diagnostic_series(run, "outflow", "kinetic/M32_V32")
        assert np.abs(mass + outflow - mass[0]).max() < 1e-14
    assert (tmp_path / "out" / "kin-kinetic.xdmf" / "kinetic.M32_V32.xdmf").is_file()
    for name in ("phase", "energy", "particles"):
        assert (tmp_path / "out" / f"kin-kinetic.{name}.png").stat().st_size > 10_000
    # `study` of a kinetic case is the kinetic study; `plot` draws the same figures.
    assert cli.main(["study", str(tmp_path / "kin.toml"), "--out", str(tmp_path / "out"), "--resume"]) == 0
    assert "kinetic study of kin" in capsys.readouterr().out
    assert cli.main(["plot", str(path), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "kin-kinetic.phase.png").is_file()
    # Without the table: one line naming it, exit 2.
    (tmp_path / "plain.toml").write_text(case_text().split("[kinetic]")[0])
    with pytest.raises(SystemExit) as stop:
        cli.main(["kinetic", str(tmp_path / "plain.toml"), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    assert "no [kinetic] table" in capsys.readouterr().err


@pytest.mark.parametrize("call", [8, 13], ids=["in_a_grid", "in_a_particle_job"])
def test_killed_kinetic_run_resumes_bit_for_bit(tmp_path, monkeypatch, call):
    # Two grids of 5 outputs, then the particle reference (appends 11-15) and depth.
    case = parse_case(case_text("friction = 0.5"), "kin.toml")
    whole = run_kinetic(case, tmp_path / "whole.h5")
    with killed_at_call(monkeypatch, io.RunFile, "append", call):
        run_kinetic(case, tmp_path / "killed.h5")
    run_kinetic(case, tmp_path / "killed.h5", resume=True)
    with RunFile.open(whole, mode="r") as a, RunFile.open(tmp_path / "killed.h5", mode="r") as b:
        assert a.jobs() == b.jobs() and "kinetic_particles/N100_ref" in a.jobs()
        for key in a.jobs():
            (ta, xa), (tb, xb) = a.job_state(key), b.job_state(key)
            np.testing.assert_array_equal(ta, tb)
            np.testing.assert_array_equal(xa, xb, err_msg=key)
            for name in ("outflow", "hamiltonian") if key.startswith("kinetic/") else ():
                np.testing.assert_array_equal(
                    diagnostic_series(a, name, key), diagnostic_series(b, name, key), err_msg=name
                )


def test_shipped_kinetic_case_parses():
    case = load_case("circle_kinetic")
    assert case.kinetic is not None and case.kinetic.cells[-1] == (256, 256)


def test_a_phase_job_needs_a_phase_mesh(tmp_path):
    from vlasov_tf.geometry.meshes import PhaseMesh, circle_mesh
    from vlasov_tf.runs.storage import JobLayout

    case = parse_case(case_text(), "kin.toml")
    for kind, mesh in (("phase", circle_mesh(8)), ("grid", PhaseMesh(8, 8, 1.0))):
        with pytest.raises(ValueError, match="a phase job and only it has a phase mesh"):
            jobs = [JobLayout("j", kind, mesh=mesh)]
            RunFile.create(tmp_path / f"{kind}.h5", case.text, case.name, jobs=jobs, times=case.output_times)
    # The phase mesh's cells are PhaseGrid's, row-major: centres (theta_i, v_j), areas dtheta dv.
    m, g = PhaseMesh(8, 4, 2.0), PhaseGrid(8, 4, 2.0)
    np.testing.assert_allclose(m.centres.reshape(8, 4, 2)[:, 0, 0], g.theta, atol=1e-15)
    np.testing.assert_allclose(m.centres.reshape(8, 4, 2)[0, :, 1], g.v, atol=1e-15)
    assert abs(m.areas.sum() - 2 * np.pi * 4.0) < 1e-12


def test_a_noisy_kinetic_case_parses_and_run_asks_for_the_first_order_reference(tmp_path, capsys):
    # The noise of a kinetic case is the velocity noise; its [particles] are the second-order tokens,
    # so the first-order noisy reference is asked for only by `run`.
    text = case_text("friction = 1.0").replace('type = "interaction"', 'type = "interaction"\nnoise = 0.3')
    (tmp_path / "k.toml").write_text(text)
    assert parse_case(text, "k.toml").model.noise == 0.3
    with pytest.raises(SystemExit):
        cli.main(["run", str(tmp_path / "k.toml"), "--out", str(tmp_path / "o")])
    assert "needs particles.reference_steps" in capsys.readouterr().err


def test_particle_jobs_converge_in_depth_and_tokens_to_the_grid(tmp_path, capsys):
    """The kinetic run's second-order tokens (random f_0 samples, T = 2, amplitude 0.2, T_v = 1/4):
    W1 of the theta marginals at T against the RK4 reference falls as 1/L, against the finest grid
    as N^{-1/2} (one sample per N: its fitted rate scatters, measured 0.74). Measured: W1(L = 40)
    3.0e-3, rate 0.99; W1(N = 4000, grid) 2.4e-2."""
    text = case_text().replace("tokens = [100]", "tokens = [250, 1000, 4000]")
    (tmp_path / "kin.toml").write_text(text.replace("layers = [10]", "layers = [10, 20, 40]"))
    assert cli.main(["kinetic", str(tmp_path / "kin.toml"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "W1(L layers, the RK4 reference), N = 4000" in out and "random f_0 samples" in out
    case = load_case(str(tmp_path / "kin.toml"))
    with RunFile.open(tmp_path / "kin-kinetic.h5", mode="r") as run:
        assert "kinetic_particles/N250_ref" in run.jobs() and "kinetic_particles/N4000_L40" in run.jobs()
        d = particle_distances(case, run)
    assert d is not None and d.times == (1.0, 2.0)
    in_L = -np.polyfit(np.log(d.L), np.log(d.layers[:, 1]), 1)[0]
    in_N = -np.polyfit(np.log(d.N), np.log(d.tokens[:, 1]), 1)[0]
    assert abs(in_L - 1) < 0.15 and d.layers[-1, 1] < 4e-3, (in_L, d.layers)
    assert 0.35 < in_N < 1.0 and d.tokens[-1, 1] < 0.04, (in_N, d.tokens)
    assert (tmp_path / "kin-kinetic.particles.png").stat().st_size > 10_000
