"""No input takes the machine: every entry point that allocates by a user's number (mesh levels and
cells, token counts, output counts, ensemble sizes; the command line and the Python API) refuses a
size beyond this machine in one line naming the number, before allocating or writing anything.

Each test asks for far more than any machine has (or, where the command line caps the number, for
more than a machine whose available memory is patched small). While a test runs, the process's
address space is capped a little above what it uses (``capped``): an entry point that forgot its
check fails at once with numpy's MemoryError instead of exhausting the machine.
"""

import errno
import resource
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_crossval import SMALL
from test_ensembles import SWEEP
from test_interpolation import _GOOD

import vlasov_tf.geometry.mesh_files as mesh_files
import vlasov_tf.memory as memory
from vlasov_tf import Head, Params, Schedule, solve_particles
from vlasov_tf.analysis.wasserstein import SlicedSphere, geodesic_cost, wasserstein
from vlasov_tf.cli import main
from vlasov_tf.geometry.initial import Gaussian, PointsFile, Uniform, UniformPerturbed, VmfMixture
from vlasov_tf.geometry.measures import (
    equally_spaced_circle,
    normalize,
    uniform_sphere,
    von_mises_fisher_mixture,
)
from vlasov_tf.geometry.mesh_files import build_sphere_mesh, sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh, refine_sphere
from vlasov_tf.interpolation.cases import CapInput
from vlasov_tf.interpolation.construction import build_interpolation
from vlasov_tf.memory import TooLarge
from vlasov_tf.runs.cases import parse_case
from vlasov_tf.runs.runner import run_case
from vlasov_tf.runs.sweeps import run_sweep
from vlasov_tf.solvers.finite_volumes import solve_grid

REPO_MESHES = Path(__file__).parents[1] / "meshes"


@pytest.fixture
def capped():
    """The address space capped at what the process maps now plus 2 GiB, for the test."""
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + 2**31, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture
def meshes(tmp_path, monkeypatch):
    """A meshes directory of the committed levels 0-2, as $VLASOV_TF_MESHES."""
    folder = tmp_path / "meshes"
    folder.mkdir()
    for name in ("sphere.geo", "sphere_L0.h5", "sphere_L1.h5", "sphere_L2.h5"):
        shutil.copy(REPO_MESHES / name, folder / name)
    monkeypatch.setenv("VLASOV_TF_MESHES", str(folder))
    return folder


def small_machine(monkeypatch, gib: float = 0.5) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: int(gib * 2**30))


def test_sphere_mesh_of_a_level_beyond_the_machine_is_refused_before_anything(meshes, capped):
    """sphere_mesh(9) refined level after level, wrote sphere_L6.h5 (429 MB) and sphere_L7.h5
    (1.7 GB) and then exhausted the machine's memory."""
    before = sorted(p.name for p in meshes.iterdir())
    for build in (lambda: sphere_mesh(9), lambda: build_sphere_mesh(9, meshes)):
        with pytest.raises(TooLarge, match=r"^sphere mesh level 9 \(283115520 cells\) needs about 540 GiB"):
            build()
    assert sorted(p.name for p in meshes.iterdir()) == before


def test_the_mesh_command_refuses_a_level_beyond_the_machine(tmp_path, monkeypatch, capsys):
    small_machine(monkeypatch)  # the command offers levels 0-5 only
    assert main(["mesh", "--level", "5", "--dir", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err == (
        "vlasov-tf: error: sphere mesh level 5 (1105920 cells) needs about 2.11 GiB, more than the 0.5 GiB "
        "available on this machine\n"
    )
    assert not (tmp_path / "m").exists()


def test_circle_and_refined_meshes_beyond_the_machine(monkeypatch, capped):
    with pytest.raises(TooLarge, match=r"^circle_mesh\(100000000000\): 100000000000 cells needs about"):
        circle_mesh(10**11)
    coarse = sphere_mesh(0)
    small_machine(monkeypatch, 1e-3)
    with pytest.raises(TooLarge, match=r"^refine_sphere: 4320 cells needs about"):
        refine_sphere(coarse)


def test_meshes_are_not_written_inside_an_installed_package(meshes, monkeypatch, caplog):
    """A wheel's meshes are inside the package: a level built there is kept in memory, and said so."""
    monkeypatch.setattr(mesh_files, "_PACKAGE", meshes.parent)
    before = sorted(p.name for p in meshes.iterdir())
    with caplog.at_level("INFO", logger="vlasov_tf"):
        mesh = sphere_mesh(3)
    assert mesh.n_cells == 1080 * 4**3 and sorted(p.name for p in meshes.iterdir()) == before
    assert "sphere mesh level 3: built in memory" in caplog.text
    assert "inside the installed package" in caplog.text


@pytest.mark.parametrize(
    "error",
    [PermissionError(errno.EACCES, "Permission denied"), OSError(errno.EROFS, "Read-only file system")],
    ids=["permission", "read-only"],
)
def test_a_mesh_location_that_cannot_be_written_is_not_an_error(meshes, monkeypatch, caplog, error):
    """Where os.access says writable but the write fails (root sees every directory writable;
    NFS, quotas, a read-only mount), the missing level is built in memory and logged, not a crash."""

    def refuse(*args, **kwargs):
        raise error

    save_mesh = mesh_files.save_mesh
    monkeypatch.setattr(mesh_files, "save_mesh", refuse)
    before = sorted(p.name for p in meshes.iterdir())
    with caplog.at_level("INFO", logger="vlasov_tf"):
        mesh = sphere_mesh(3)
    assert sorted(p.name for p in meshes.iterdir()) == before  # nothing written, no temporary left
    assert "sphere mesh level 3: built in memory" in caplog.text and error.strerror in caplog.text
    monkeypatch.setattr(mesh_files, "save_mesh", save_mesh)  # the same mesh as one written
    written = mesh_files.load_mesh(build_sphere_mesh(3, meshes))
    assert mesh.n_cells == 1080 * 4**3 and np.array_equal(mesh.centres, written.centres)
    assert np.array_equal(mesh.areas, written.areas)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"particles.tokens": [10**12]}, r"particles\.tokens 1000000000000 \(3 outputs\) needs about"),
        ({"grid.resolutions": [10**11]}, r"grid\.resolutions 100000000000 \(100000000000 cells, 3 outputs\)"),
        # 1e6 tokens fit (2.9 GiB); their 2000 snapshots (45 GiB) do not
        ({"particles.tokens": [10**6], "case.outputs": 2000}, r"particles\.tokens 1000000 \(2000 outputs\)"),
    ],
)
def test_run_case_refuses_sizes_beyond_the_machine(tmp_path, overrides, named, capped):
    case = parse_case(SMALL, overrides=overrides)
    with pytest.raises(TooLarge, match=named):
        run_case(case, tmp_path / "new" / "x.h5")
    assert not list(tmp_path.iterdir())


def test_the_run_command_refuses_tokens_beyond_the_machine(tmp_path, capsys, capped):
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    out = tmp_path / "out"
    assert main(["run", str(src), "--out", str(out), "--set", "particles.tokens=[1000000000000]"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "particles.tokens 1000000000000 (3 outputs) needs about" in err
    assert not out.exists() or not list(out.iterdir())


def test_sweeps_refuse_ensembles_beyond_the_machine(tmp_path, capsys, capped):
    case = parse_case(SWEEP, overrides={"sweep.members": 10**9})
    with pytest.raises(TooLarge, match=r"sweep\.members 1000000000 x particles\.tokens 32 \(7 outputs\)"):
        run_sweep(case, tmp_path / "s.h5")
    src = tmp_path / "phase.toml"
    src.write_text(SWEEP)
    assert main(["sweep", str(src), "--out", str(tmp_path / "o"), "--set", "sweep.members=1000000000"]) == 2
    assert "sweep.members 1000000000" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "phase.toml"]
    assert not list((tmp_path / "o").iterdir())


def test_the_depth_study_and_interpolation_refuse_token_counts_beyond_the_machine(tmp_path, capsys, capped):
    with pytest.raises(SystemExit) as exc:
        main(["particles", "-N", "1000000000000", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "the number of tokens N = 1000000000000 needs about" in capsys.readouterr().err
    src = tmp_path / "interp.toml"
    src.write_text(_GOOD + "[particles]\ntokens = 10000000000\n")
    with pytest.raises(SystemExit) as exc:
        main(["interpolate", str(src), "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interp.toml: particles.tokens 10000000000 (2 inputs) needs about" in err
    assert not list(tmp_path.glob("*.png"))


def test_solvers_and_samplers_refuse_outputs_and_tokens_beyond_the_machine(capped):
    model = Schedule.constant(Params(heads=(Head(B=np.eye(2), V=np.eye(2)),)), 1.0)
    mesh = circle_mesh(1000)
    many = np.linspace(0.0, 1.0, 10**7)  # 80 MB of times: 8e10 bytes of snapshots
    with pytest.raises(TooLarge, match=r"^solve_grid: 1000 cells, 10000000 output times needs about"):
        solve_grid(mesh, np.full(1000, 1 / (2 * np.pi)), model, t_eval=many)
    x = uniform_sphere(1000, 2, np.random.default_rng(0))
    with pytest.raises(TooLarge, match=r"^solve_particles: 1000 tokens, 10000000 output times needs about"):
        solve_particles(model, x, method="rk4", steps=10, t_eval=many)
    with pytest.raises(TooLarge, match=r"^uniform_sphere: 1000000000000 points in d = 3 needs about"):
        uniform_sphere(10**12, 3, np.random.default_rng(0))
    with pytest.raises(TooLarge, match=r"^case tiny: 1000000000000 initial tokens in d = 2 needs about"):
        parse_case(SMALL).initial_tokens(10**12)


def test_samplers_and_point_sets_refuse_counts_beyond_the_machine(capped):
    """The samplers called directly (not through a case), the quantile points and the equally
    spaced circle: each refuses 1e12 points in one line naming the count, before drawing."""
    rng = np.random.default_rng(0)
    means, kappas, props = np.eye(3)[:2], np.array([2.0, 5.0]), np.array([0.5, 0.5])
    with pytest.raises(TooLarge, match=r"^von_mises_fisher_mixture: 1000000000000 samples in d = 3 needs"):
        von_mises_fisher_mixture(10**12, means, kappas, props, rng)
    measures = [
        Uniform(d=3),
        VmfMixture(d=3, means=means, kappas=kappas, proportions=props),
        UniformPerturbed(d=2, amplitude=0.1, mode=1),
        Gaussian(d=2, sphere=False, mean=np.zeros(2), covariance=np.eye(2)),
        PointsFile(d=3, points=means, weights=props),
    ]
    for mu in measures:
        name = type(mu).__name__
        with pytest.raises(TooLarge, match=rf"^{name}\.sample: 1000000000000 samples in d = {mu.d} needs"):
            mu.sample(10**12, rng)
    with pytest.raises(TooLarge, match=r"^CapInput\.sample: 1000000000000 samples in d = 3 needs"):
        CapInput(mean=np.eye(3)[0], radius=0.5).sample(10**12, rng)
    circle = VmfMixture(d=2, means=np.eye(2), kappas=kappas, proportions=props)
    with pytest.raises(TooLarge, match=r"^VmfMixture\.quantiles: 1000000000000 quantile points in d = 2"):
        circle.quantiles(10**12)
    with pytest.raises(TooLarge, match=r"^equally_spaced_circle: 1000000000000 points needs about"):
        equally_spaced_circle(10**12)


def test_cost_matrices_beyond_the_machine_are_refused_or_sliced(monkeypatch, capped):
    """An (N, M) cost matrix that does not fit is refused naming N and M; W1's "auto" takes the
    sliced distance instead of exact transport, and a forced "exact" is refused."""
    rng = np.random.default_rng(0)
    a, b = uniform_sphere(1100, 3, rng), uniform_sphere(1200, 3, rng)
    exact = wasserstein(a, None, b, None, geometry="sphere")
    assert exact[1] == "exact"
    small_machine(monkeypatch, 0.02)  # 20 MiB: the 1.3e6 pairs' cost matrix needs about 40 MiB
    with pytest.raises(TooLarge, match=r"^geodesic_cost: a 1100 x 1200 cost matrix needs about"):
        geodesic_cost(a, b)
    for geometry in ("sphere", "euclidean"):
        with pytest.raises(TooLarge, match=r"^exact W1 between 1100 and 1200 atoms \(1320000 pairs\) needs"):
            wasserstein(a, None, b, None, geometry=geometry, method="exact")
    sliced = wasserstein(a, None, b, None, geometry="sphere")
    assert sliced == wasserstein(a, None, b, None, geometry="sphere", method="sliced")
    assert abs(sliced[0] - exact[0]) < 0.1  # both small: two samples of one uniform law
    with pytest.raises(TooLarge, match=r"^SlicedSphere: 64 projections x 1000000000000 bins needs about"):
        SlicedSphere(bins=10**12)


def test_the_interpolation_planner_refuses_node_counts_beyond_the_machine(capped):
    """build_interpolation's waypoint planner forms (n_nodes + 2)^2 arcs: 1e7 nodes are refused
    before any stage runs; the track count is a count (at most the tokens: no memory of its own)."""
    rng = np.random.default_rng(0)
    measures = [(normalize(c + 0.1 * rng.standard_normal((20, 3))), None) for c in np.eye(3)[:2]]
    targets = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    with pytest.raises(TooLarge, match=r"^build_interpolation: n_nodes = 10000000 \(2 measures in d = 3\)"):
        build_interpolation(measures, targets, T=5.0, eps=0.1, n_nodes=10**7)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match=r"^n_tracks must be an integer >= 1"):
            build_interpolation(measures, targets, T=5.0, eps=0.1, n_tracks=bad)
