"""The spectral sums' fix-up over the keys that can matter (kernels/pruned.py) and its cost in the
method choice: every row within 1e-10 of the dense sum, fewer pairs summed than the dense fix-up,
the rows that need no fix-up untouched, the same sums with the keys split across MPI ranks."""

import json
import sys

import numpy as np
import pytest
from helpers import launch, row_errors
from test_spectral import measure

from vlasov_tf import kernels
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.kernels import pruned
from vlasov_tf.kernels.spectral import fixup_share, spectral_approximation, spectral_sums

TOL = 1e-10


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("kind", ["uniform", "clusters", "point", "two"])
@pytest.mark.parametrize("beta", [0.1, 10.0, 100.0, 1000.0])
def test_every_row_within_tol_of_the_dense_sum(rng, d, kind, beta):
    y, w = measure(rng, kind, 3000, d)
    z = beta * np.r_[uniform_sphere(300, d, rng), y[:100], -y[:20]]  # spread, at the mass, opposite it
    got = pruned.pruned_sums(z, y, w, y, tol=TOL)
    assert row_errors(*got, *kernels.exp_kernel_sums(z, y, w, y)).max() <= TOL


def test_far_rows_skip_most_keys_of_clustered_mass(rng):
    """Keys spread, weights of four vMF clusters (kappa = 50: the grid's cell masses) at beta = 100:
    8000 spread queries sum under half of the pairs (the dense fix-up summed them all; the blocks
    that matter are ~20%); equal weights at beta = 0.1: no block can be skipped."""
    y = uniform_sphere(6000, 3, rng)
    w = np.exp(50.0 * (y @ uniform_sphere(4, 3, rng).T - 1.0)).sum(axis=1)
    z = 100.0 * uniform_sphere(8000, 3, rng)
    far: dict[str, int] = {}
    got = pruned.pruned_sums(z, y, w, y, tol=TOL, stats=far)
    assert far["pairs"] < 0.5 * len(z) * len(y)
    assert row_errors(*got, *kernels.exp_kernel_sums(z, y, w, y)).max() <= TOL
    near: dict[str, int] = {}
    pruned.pruned_sums(0.1 * z, y, np.ones(len(y)), y, tol=TOL, stats=near)
    assert near["pairs"] == len(z) * len(y)


def test_rows_without_fix_up_keep_their_bits(rng):
    """The spectral sums' rows whose normaliser the expansion serves are its own numbers, bit for bit;
    the others are within tol of the dense sums."""
    y, w = measure(rng, "clusters", 3000, 3)
    z = 30.0 * np.r_[uniform_sphere(400, 3, rng), y[:200]]
    shift, sums = spectral_sums(z, y, w, y, tol=TOL)
    s0, v0, err = spectral_approximation(z, y, w, y, tol=TOL)
    good = v0[:, -1] >= err / TOL
    assert 0 < good.sum() < len(z)
    assert np.array_equal(shift[good], s0[good]) and np.array_equal(sums[good], v0[good])
    assert row_errors(shift, sums, *kernels.exp_kernel_sums(z, y, w, y)).max() <= TOL


def test_fixup_share_estimates_the_fixed_rows(rng):
    """The sampled estimate of the share of fixed-up rows: zero for spread mass, within 0.2 of the
    share the spectral sums fix up for clustered mass at beta = 30 and 100."""
    y, w = measure(rng, "uniform", 3000, 3)
    x = uniform_sphere(2000, 3, rng)
    assert fixup_share(10.0 * x, y, w, TOL) == 0.0
    y, w = measure(rng, "clusters", 3000, 3)
    for beta in (30.0, 100.0):
        _, v, err = spectral_approximation(beta * x, y, w, tol=TOL)
        actual = float(np.mean(~(v[:, -1] >= err / TOL)))
        assert actual > 0.3
        assert abs(fixup_share(beta * x, y, w, TOL) - actual) <= 0.2


def test_chooser_counts_the_fix_up(rng):
    """The spectral cost includes the fix-up's share at the dense cost: for spread mass nothing is
    added, for clustered mass at beta = 100 most of the dense cost."""
    x = uniform_sphere(20_000, 3, rng)
    y, w = measure(rng, "uniform", 20_000, 3)
    spread = kernels.method_costs(10.0 * x, y, w, 3)
    y, w = measure(rng, "clusters", 20_000, 3)
    clustered = kernels.method_costs(100.0 * x, y, w, 3)
    share = fixup_share(100.0 * x, y, w, TOL)
    assert share > 0.5
    assert clustered["spectral"] >= share * clustered["dense"]
    assert spread["spectral"] < 0.1 * spread["dense"]


@pytest.mark.parametrize("ranks", [2])
def test_split_keys_equal_serial(ranks):
    """mpiexec -n 2: the spectral sums with the pruned fix-up, keys split, equal the serial ones to
    2 tol and the dense sums to tol, at beta = 30 and 300 where most rows are fixed up."""
    proc = launch(ranks, sys.executable, "tests/mpi_pruned.py", timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for beta in ("30", "300"):
        assert result[f"beta={beta} dense"] <= TOL, result
        assert result[f"beta={beta} serial"] <= 2 * TOL, result
        assert result[f"beta={beta} fixed share"] > 0.3, result
