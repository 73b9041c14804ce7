"""Serial equals parallel for the kinetic grid: ``mpiexec -n 2`` and ``-n 3`` against a serial run, to
1e-12 relative (theta blocks with the velocity whole: every column's arithmetic is the serial one and
the marginal is gathered, not summed across ranks; only the model's sums over each rank's block of
query centres round differently: measured up to 2e-17 absolute on f ~ 0.1)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import MPIEXEC, ONE_THREAD, launch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "tests" / "mpi_kinetic.py")


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("kinetic") / "serial.npz"
    env = {**os.environ, **ONE_THREAD}
    subprocess.run([sys.executable, SCRIPT, str(out), "serial"], check=True, env=env, cwd=REPO)
    return dict(np.load(out))


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
@pytest.mark.parametrize("ranks", [2, 3])
def test_parallel_kinetic_grid_equals_serial(serial, ranks, tmp_path):
    out = tmp_path / f"n{ranks}.npz"
    proc = launch(ranks, sys.executable, SCRIPT, str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    parallel = dict(np.load(out))
    assert sorted(parallel) == sorted(serial)
    for key, value in serial.items():
        # The outflow is a difference of column masses: its rounding is absolute, ~1e-17 of mass 1.
        atol = 1e-14 if key.endswith("outflow") else 1e-12 * np.abs(value).max()
        np.testing.assert_allclose(parallel[key], value, rtol=0, atol=atol, err_msg=key)
    assert serial["hmf_f"].min() >= 0 and np.ptp(serial["hmf_f"]) > 0


@pytest.mark.slow  # 43 s on 2 shared cores: three ranks start the whole CLI (the solver's test is above)
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_kinetic_command_under_mpi_equals_serial(tmp_path):
    # Rank 0 writes the same run file, diagnostics included, to round-off.
    from test_kinetic_runs import case_text

    from vlasov_tf.runs.kinetic_runs import KINETIC_DIAGNOSTICS, diagnostic_series
    from vlasov_tf.runs.storage import RunFile

    (tmp_path / "kin.toml").write_text(case_text("friction = 0.3"))
    env = {**os.environ, **ONE_THREAD}
    serial = [sys.executable, "-m", "vlasov_tf.cli", "kinetic", str(tmp_path / "kin.toml")]
    out = str(tmp_path / "s")
    subprocess.run([*serial, "--out", out], check=True, env=env, cwd=REPO, capture_output=True)
    proc = launch(3, *serial, "--out", str(tmp_path / "p"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    with RunFile.open(tmp_path / "s" / "kin-kinetic.h5", mode="r") as a, \
            RunFile.open(tmp_path / "p" / "kin-kinetic.h5", mode="r") as b:  # fmt: skip
        assert a.jobs() == b.jobs()
        for key in a.jobs():
            fa, fb = a.job_state(key)[1], b.job_state(key)[1]
            np.testing.assert_allclose(fb, fa, rtol=0, atol=1e-12 * np.abs(fa).max(), err_msg=key)
            for name in KINETIC_DIAGNOSTICS:
                da, db = diagnostic_series(a, name, key), diagnostic_series(b, name, key)
                np.testing.assert_allclose(db, da, rtol=1e-12, atol=1e-15, err_msg=name)
