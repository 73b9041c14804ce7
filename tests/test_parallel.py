"""MPI domain decomposition: partitions, ring sums, and serial-equals-parallel under mpiexec.

The mpiexec tests start ``tests/mpi_solvers.py`` and the CLI on 2, 3 and 4
ranks (more ranks than this machine's 2 cores: oversubscribed) and compare with
the serial run: to 1e-12 relative where only the split of the nonlocal sums
changes the round-off, bit for bit where nothing nonlocal is summed.
"""

import os
import re
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from helpers import ONE_THREAD, assert_same_diagnostics, launch
from mpi4py import MPI
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from test_ensembles import SWEEP

from vlasov_tf import parallel
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.kernels import exp_kernel_sums
from vlasov_tf.models.sums import dense_head_sums
from vlasov_tf.runs.storage import RunFile

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RTOL = 1e-12


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# -- serial pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize("parts", [1, 2, 3, 4, 7, 16])
def test_partition_is_balanced_connected_and_deterministic(parts):
    mesh = sphere_mesh(1)
    part = parallel.partition(mesh.centres, parts)
    sizes = np.bincount(part, minlength=parts)
    assert sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(part, parallel.partition(mesh.centres.copy(), parts))
    f = mesh.face_cells
    for p in range(parts):
        inside = (part[f[:, 0]] == p) & (part[f[:, 1]] == p)
        graph = coo_matrix((np.ones(inside.sum()), (f[inside, 0], f[inside, 1])), shape=(mesh.n_cells,) * 2)
        _, labels = connected_components(graph, directed=False)
        assert len(np.unique(labels[part == p])) == 1, f"part {p} of {parts} is not connected"
    # Compact parts: the cut is a few great-circle arcs, O(sqrt(C P)) faces, not O(C).
    cut = (part[f[:, 0]] != part[f[:, 1]]).sum()
    assert cut <= 4 * np.sqrt(mesh.n_cells * parts)


def test_partition_of_circle_is_arcs():
    part = parallel.partition(circle_mesh(100).centres, 4)
    assert (np.diff(part) != 0).sum() <= 4  # four arcs: at most four changes round the circle


def test_partition_rejects_more_parts_than_cells():
    with pytest.raises(ValueError, match="cannot split 3 cells into 4 parts"):
        parallel.partition(np.eye(3), 4)


def test_block_range_covers_in_order():
    for n, p in ((10, 3), (2, 4), (0, 2), (101, 7)):
        spans = [parallel.block_range(n, p, r) for r in range(p)]
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a[1] == b[0] for a, b in pairwise(spans))
        assert max(hi - lo for lo, hi in spans) - min(hi - lo for lo, hi in spans) <= 1


def test_merge_of_key_blocks_equals_whole_sum(rng):
    """The ring's log-sum-exp merge: blocks with different shifts add up to the whole sum."""
    x = uniform_sphere(300, 3, rng)
    w = rng.random(300)
    z = 40.0 * x[:50]  # large scores: the blocks' shifts differ by tens
    whole_shift, whole = exp_kernel_sums(z, x, w, x)
    shift, sums = np.full(50, -np.inf), np.zeros((50, 4))
    for block in np.array_split(np.arange(300), 5):
        s, part = exp_kernel_sums(z, x[block], w[block], x[block])
        shift, sums = parallel._merge(shift, sums, s, part)
    np.testing.assert_allclose(sums * np.exp(shift - whole_shift)[:, None], whole, rtol=1e-13)


def test_ring_on_one_rank_is_the_dense_sum(rng):
    x = uniform_sphere(200, 3, rng)
    w = rng.random(200)
    B = rng.normal(size=(3, 3))
    got = parallel.RingSums(MPI.COMM_SELF).dense(x[:30] @ B.T, x, w, x)
    want = dense_head_sums(B, x[:30], x, w)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_world_is_none_outside_mpiexec(monkeypatch):
    for var in parallel._LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    assert parallel.world() is None


# -- under mpiexec ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serial_results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mpi") / "serial.npz"
    subprocess.run([sys.executable, "tests/mpi_solvers.py", str(out), "serial"], check=True, cwd=REPO)
    return out


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_parallel_equals_serial(serial_results, ranks):
    out = serial_results.with_name(f"p{ranks}.npz")
    shutil.copy(serial_results.with_name("serial_mid.npy"), out.with_name(f"p{ranks}_mid.npy"))
    proc = launch(ranks, sys.executable, "tests/mpi_solvers.py", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = np.load(out), np.load(serial_results)
    keys = ("grid_general", "grid_spectral", "grid_general_spectral", "grid_circle", "grid_general_quadratic",
            "grid_quadrature_measure", "grid_quadrature_spectral", "grid_flux_accuracy",
            "grid_flux_budget")  # fmt: skip
    particles = ("particles_layers", "particles_rk4", "particles_adaptive")
    models = ("grid_interaction_spectral", "grid_interaction_dense", "grid_user", "particles_interaction_rk4",
              "particles_interaction_adaptive", "particles_user", "grid_noisy_quadratic", "grid_noisy_linear",
              "particles_noisy")  # fmt: skip
    for key in (*keys, *particles, *models, "particles_rk4_spectral", "particles_adaptive_spectral"):
        assert got[key].shape == want[key].shape, key
        assert rel(got[key], want[key]) <= RTOL, f"{key} on {ranks} ranks: {rel(got[key], want[key]):.2e}"
    # The implicit diffusion's Krylov solves stop at a relative residual of 1e-10 (SOLVE_RTOL),
    # and their dot products are summed in another order on more ranks.
    implicit = rel(got["grid_noisy_implicit"], want["grid_noisy_implicit"])
    assert implicit <= 1e-9, f"grid_noisy_implicit on {ranks} ranks: {implicit:.2e}"
    # Resumed at t = 0.1 on `ranks` ranks from the serial run's snapshot: the serial final state.
    assert rel(got["grid_resumed"][-1], want["grid_general"][-1]) <= RTOL
    # The ring alone, with an empty block and an all-zero-weight block: round-off only.
    assert float(got["ring_error"]) <= 1e-13
    # A row budget's cut-off: from the histogram summed over the ranks, the serial one exactly.
    assert 0 < want["budget_allocation"].mean() < 1
    np.testing.assert_array_equal(got["budget_allocation"], want["budget_allocation"])
    # A prescribed field has no nonlocal sums, and the local operators keep the global face order.
    np.testing.assert_array_equal(got["grid_rotation"], want["grid_rotation"])
    # So do the quadratic reconstruction's stencils (ordered by position, not index).
    np.testing.assert_array_equal(got["grid_rotation_quadratic"], want["grid_rotation_quadratic"])
    np.testing.assert_array_equal(got["grid_rotation_lowdiss"], want["grid_rotation_lowdiss"])
    assert not np.array_equal(want["grid_rotation_lowdiss"], want["grid_rotation_quadratic"])


TINY = """
[case]
name = "tiny_sphere"
geometry = "sphere"
T = 0.4
outputs = 3

[initial]
family = "vmf_mixture"
means = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
kappas = [4.0, 6.0]
proportions = [0.5, 0.5]

[model]
attention = "SA"
beta = 2.0

[particles]
tokens = [150]
layers = [4]
reference_steps = 8
seed = 3

[grid]
resolutions = [0]
"""


@pytest.mark.mpi
def test_cli_run_on_2_ranks_resumed_on_3_equals_serial(tmp_path):
    case = tmp_path / "tiny_sphere.toml"
    case.write_text(TINY)
    vtf = str(BIN / "vlasov-tf")
    serial = subprocess.run(
        [vtf, "run", str(case), "--out", str(tmp_path / "serial"), "--no-progress"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert serial.returncode == 0, serial.stderr
    first = launch(2, vtf, "run", str(case), "--out", str(tmp_path / "mpi"), "--solver", "grid")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "on 2 ranks" in first.stdout
    assert (tmp_path / "mpi" / "tiny_sphere.png").is_file()  # run draws its figures, on rank 0
    # Log lines with their rank, on the terminal and in the log beside the run file.
    assert re.search(r"\d\d:\d\d:\d\d \[rank 0/2\] grid/K0: done in", first.stdout)
    assert "[rank 0/2] grid/K0: done in" in (tmp_path / "mpi" / "tiny_sphere.log").read_text()
    again = launch(3, vtf, "run", str(case), "--out", str(tmp_path / "mpi"), "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "grid/K0: complete, skipped" in again.stdout
    with (
        RunFile.open(tmp_path / "serial" / "tiny_sphere.h5") as a,
        RunFile.open(tmp_path / "mpi" / "tiny_sphere.h5") as b,
    ):
        for key in ("grid/K0", "particles/N150_ref", "particles/N150_L4"):
            (ta, sa), (tb, sb) = a.job_state(key), b.job_state(key)
            np.testing.assert_array_equal(ta, tb)
            assert rel(sb, sa) <= RTOL, key


@pytest.mark.mpi
def test_diagnostics_on_3_ranks_equal_serial(tmp_path):
    """The diagnostics ran on rank 0 alone while the others waited; now the output times are dealt
    to the ranks, and each value is what the serial run computes, bit for bit."""
    case = tmp_path / "tiny_sphere.toml"
    case.write_text(TINY)
    vtf = str(BIN / "vlasov-tf")
    args = ["run", str(case), "--no-progress"]
    made = subprocess.run([vtf, *args, "--out", str(tmp_path / "a"), "--no-diagnostics"], capture_output=True,
                          text=True, cwd=REPO)  # fmt: skip
    assert made.returncode == 0, made.stderr
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    # One thread, as launch() gives every rank: BLAS rounds by its thread count, not the ranks'.
    one = {**os.environ, **ONE_THREAD}
    serial = subprocess.run([vtf, *args, "--out", str(tmp_path / "a"), "--resume"], capture_output=True,
                            text=True, cwd=REPO, env=one)  # fmt: skip
    assert serial.returncode == 0, serial.stderr
    mpi = launch(3, vtf, *args, "--out", str(tmp_path / "b"), "--resume")
    assert mpi.returncode == 0, mpi.stderr[-3000:]
    assert "diagnostics: t = 0, 0.2, 0.4 done (3/3" in mpi.stdout + mpi.stderr
    with (
        RunFile.open(tmp_path / "a" / "tiny_sphere.h5", mode="r") as a,
        RunFile.open(tmp_path / "b" / "tiny_sphere.h5", mode="r") as b,
    ):
        assert assert_same_diagnostics(a, b) >= {"energy", "mass", "w1_ref", "sw1_grid"}


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_sweep_on_ranks_equals_serial(tmp_path, ranks):
    """The members of a sweep dealt to the ranks: each member's flow, clusters and close pairs
    are the serial ones bit for bit (its parameters come from its own stream)."""
    case = tmp_path / "phase.toml"
    case.write_text(
        SWEEP_CASE.replace("members = 6", "members = 5")  # 20 (beta, member) pairs: uneven blocks
    )
    vtf = str(BIN / "vlasov-tf")
    one = {**os.environ, **ONE_THREAD}
    serial = subprocess.run([vtf, "sweep", str(case), "--out", str(tmp_path / "a")], capture_output=True,
                            text=True, cwd=REPO, env=one)  # fmt: skip
    assert serial.returncode == 0, serial.stderr
    mpi = launch(ranks, vtf, "sweep", str(case), "--out", str(tmp_path / "b"))
    assert mpi.returncode == 0, mpi.stderr[-3000:]
    with (
        RunFile.open(tmp_path / "a" / "phase-sweep.h5", mode="r") as a,
        RunFile.open(tmp_path / "b" / "phase-sweep.h5", mode="r") as b,
    ):
        assert a.jobs() == b.jobs() and len(a.jobs()) == 4
        for key in a.jobs():
            np.testing.assert_array_equal(a.job_state(key)[1], b.job_state(key)[1])
            for table in ("clusters", "close"):
                np.testing.assert_array_equal(a.table(key, table)[1], b.table(key, table)[1])


# test_ensembles' sweep, smaller, with GOE parameters drawn again every time unit.
SWEEP_CASE = (
    SWEEP.replace("d = 5", "d = 4").replace("T = 6.0", "T = 3.0").replace("outputs = 7", "outputs = 4")
    .replace("tokens = [32]", "tokens = [24]").replace("steps = 120", "steps = 30")
    .replace('parameters = "identity"', 'parameters = "goe"\nredraw = 1.0')
)  # fmt: skip


@pytest.mark.mpi
def test_error_on_one_rank_ends_the_job(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "from mpi4py import MPI\n"
        "from vlasov_tf.parallel import abort_on_error\n"
        "comm = MPI.COMM_WORLD\n"
        "with abort_on_error(comm):\n"
        "    if comm.rank == 1:\n"
        "        raise ValueError('weights of token 7 are negative')\n"
        "    comm.allreduce(1)  # rank 0 would wait here for ever\n"
    )
    proc = launch(2, sys.executable, str(script), timeout=60)
    assert proc.returncode != 0
    assert "rank 1 of 2 failed: ValueError: weights of token 7 are negative" in proc.stderr
    assert "aborting all 2 ranks" in proc.stderr


@pytest.mark.mpi
def test_cli_bad_case_under_mpi_fails_clearly(tmp_path):
    proc = launch(2, str(BIN / "vlasov-tf"), "run", str(tmp_path / "missing.toml"), timeout=60)
    assert proc.returncode != 0
    assert "missing.toml" in proc.stderr


@pytest.mark.mpi
def test_a_bad_value_under_mpi_is_one_line(tmp_path):
    """model.beta = 1e300 under mpiexec: two tracebacks and a screen of warnings; then, once
    refused, the refusal from every rank and each rank's abort. Now rank 0's one line, exit 2."""
    case = Path(__file__).parents[1] / "cases" / "sphere_clustering.toml"
    args = ["run", str(case), "--out", str(tmp_path), "--set", "model.beta=1e300"]
    proc = launch(2, str(BIN / "vlasov-tf"), *args, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"vlasov-tf: error: {case} (with model.beta = 1e+300): model.beta = 1e+300: head matrix B has norm "
        "1.73e+300, above 1e+12: its scores' rounding (norm x 2.2e-16) would swamp the attention weights"
    ]
    assert not list(tmp_path.iterdir())


def test_serial_runs_never_import_mpi4py():
    """Without a launcher nothing initialises MPI (a cluster login node may forbid it)."""
    code = (
        "import sys, numpy as np\n"
        "from vlasov_tf.solvers.finite_volumes import solve_grid\n"
        "from vlasov_tf.geometry.mesh_files import sphere_mesh\n"
        "from vlasov_tf.models.attention import Params, Schedule\n"
        "from vlasov_tf.cli import main\n"
        "m = sphere_mesh(0)\n"
        "solve_grid(m, np.ones(m.n_cells), Schedule.constant(Params.identity(3, 2.0), 0.05))\n"
        "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in parallel._LAUNCHER_VARS}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)


@pytest.mark.mpi
def test_failure_on_rank_0_reaches_every_rank(tmp_path):
    """What only rank 0 does (open the run file) fails on every rank at once: nobody waits."""
    script = tmp_path / "root.py"
    script.write_text(
        "from mpi4py import MPI\n"
        "from vlasov_tf.parallel import on_root\n"
        "comm = MPI.COMM_WORLD\n"
        "assert on_root(comm, lambda: 2 * comm.rank + 5) == 5\n"
        "try:\n"
        f"    on_root(comm, lambda: open({str(tmp_path / 'missing.h5')!r}))\n"
        "except FileNotFoundError:\n"
        "    print(f'rank {comm.rank} saw it', flush=True)\n"
    )
    proc = launch(3, sys.executable, str(script), timeout=60)
    assert proc.returncode == 0, proc.stderr
    for r in range(3):  # the ranks' lines may interleave on the shared stdout
        assert f"rank {r} saw it" in proc.stdout
