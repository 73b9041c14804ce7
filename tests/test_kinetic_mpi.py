"""Serial equals parallel for the kinetic grid: ``mpiexec -n 2`` and ``-n 3`` against a serial run, bit
for bit (theta blocks with the velocity whole: every column's arithmetic is the serial one, the
marginal is gathered, not summed across ranks, and every rank evaluates the force at all centres)."""

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
def test_parallel_kinetic_grid_equals_serial_bit_for_bit(serial, ranks, tmp_path):
    out = tmp_path / f"n{ranks}.npz"
    proc = launch(ranks, sys.executable, SCRIPT, str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    parallel = dict(np.load(out))
    assert sorted(parallel) == sorted(serial)
    for key, value in serial.items():
        np.testing.assert_array_equal(parallel[key], value, err_msg=key)
    assert serial["hmf_f"].min() >= 0 and np.ptp(serial["hmf_f"]) > 0


@pytest.mark.slow  # 43 s on 2 shared cores: three ranks start the whole CLI (the solver's test is above)
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_kinetic_command_under_mpi_equals_serial(tmp_path):
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
            np.testing.assert_array_equal(a.job_state(key)[1], b.job_state(key)[1], err_msg=key)
            for name in KINETIC_DIAGNOSTICS:
                np.testing.assert_array_equal(
                    diagnostic_series(a, name, key), diagnostic_series(b, name, key), err_msg=name
                )
