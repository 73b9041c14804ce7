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
