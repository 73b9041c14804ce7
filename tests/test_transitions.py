"""Noise scans (vlasov-tf transition) against what is derived: the critical noise of linear theory
(Kuramoto c / 2, Lohe c / 3), the explicit von Mises branch of the noisy Kuramoto model (grid and
tokens), no hysteresis at a supercritical pitchfork, a killed scan resumed bit for bit, the
command and its figure, bad [transition] tables."""

import re
import sys

import numpy as np
import pytest
from helpers import killed_at_call, launch

from vlasov_tf import cli
from vlasov_tf.kernels.zonal import Constant
from vlasov_tf.models.attention import Params
from vlasov_tf.models.base import with_noise
from vlasov_tf.models.interaction import Interaction
from vlasov_tf.runs import storage as io
from vlasov_tf.runs.cases import parse_case
from vlasov_tf.runs.storage import RunFile
from vlasov_tf.runs.transitions import critical_noise, kuramoto_order, read_branches, run_transition

SCAN = """
[case]
name = "scan"
geometry = "circle"
T = 45.0
outputs = 4
[initial]
family = "uniform_perturbed"
amplitude = 0.2
k = 1
[model]
type = "interaction"
kernel = {{ name = "constant", c = 1.0 }}
[particles]
tokens = 500
layers = 450
[grid]
resolutions = [32]
[transition]
noise = {noise}
tokens = {tokens}
members = 2
"""


def test_critical_noise_and_explicit_branches():
    for d, c, want in ((2, 1.0, 0.5), (3, 1.5, 0.5)):
        assert critical_noise(Interaction(d, Constant(c))) == pytest.approx(want, rel=1e-12)
    # Lohe on S^2: r solves r = coth(k) - 1/k, k = c r / sigma; at sigma = c / 6 the root is ~0.79.
    r = kuramoto_order(Interaction(3, Constant(1.0)), 1.0 / 6.0)
    k = 6.0 * r
    assert r == pytest.approx(1 / np.tanh(k) - 1 / k, abs=1e-12) and 0.7 < r < 0.9
    assert kuramoto_order(Interaction(2, Constant(1.0)), 0.6) == 0.0  # above sigma_c: uniform
    assert kuramoto_order(with_noise(Params.identity(2, 1.0), 0.1), 0.1) is None  # not explicit
    # Attention: the largest lambda_k / k^2 over the modes (mode 1 at small beta).
    att = Params.identity(2, 1.0)
    assert critical_noise(att) == pytest.approx(max(att.growth_rate(k) / k**2 for k in range(1, 13)))


def test_kuramoto_scan_follows_the_explicit_branch(tmp_path):
    case = parse_case(SCAN.format(noise="[0.2, 0.3, 0.7]", tokens=1000), "scan.toml")
    path = run_transition(case, tmp_path / "scan.h5")
    with RunFile.open(path, mode="r") as run:
        b = read_branches(case, run)
    assert b.critical == pytest.approx(0.5)
    # Below sigma_c: the von Mises branch to the grid's error (M = 32); above: the uniform state.
    np.testing.assert_allclose(b.up, b.explicit, atol=3e-3)
    np.testing.assert_allclose(b.down, b.explicit, atol=3e-3)
    assert b.hysteresis < 1e-3  # a supercritical pitchfork (measured ~1e-5)
    # Tokens (2 x 1000, from the initial measure): within their finite-N fluctuations ~ N^-1/2.
    assert np.abs(b.tokens.mean(axis=1) - b.explicit).max() < 0.06


def test_killed_scan_resumes_bit_for_bit(tmp_path, monkeypatch):
    text = SCAN.format(noise="[0.2, 0.7]", tokens=50).replace("T = 45.0", "T = 6.0")
    case = parse_case(text, "scan.toml")
    whole = run_transition(case, tmp_path / "whole.h5")
    with killed_at_call(monkeypatch, io.RunFile, "append", 6):  # inside the second relaxation
        run_transition(case, tmp_path / "killed.h5")
    run_transition(case, tmp_path / "killed.h5", resume=True)
    with RunFile.open(whole, mode="r") as a, RunFile.open(tmp_path / "killed.h5", mode="r") as b:
        assert a.jobs() == b.jobs()
        for key in a.jobs():
            (ta, xa), (tb, xb) = a.job_state(key), b.job_state(key)
            np.testing.assert_array_equal(ta, tb)
            np.testing.assert_array_equal(xa, xb, err_msg=key)


def test_transition_command_prints_and_draws(tmp_path, capsys):
    text = SCAN.format(noise="[0.2, 0.7]", tokens=100).replace("T = 45.0", "T = 6.0")
    (tmp_path / "scan.toml").write_text(text)
    assert cli.main(["transition", str(tmp_path / "scan.toml"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "critical noise from linear theory: 0.5" in out
    figure = tmp_path / "out" / "scan-transition.transition.png"
    assert figure.stat().st_size > 10_000
    assert cli.main(["plot", str(tmp_path / "out" / "scan-transition.h5"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "scan-transition.transition.png").is_file()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("noise = [0.3, 0.2]", "transition.noise[1] must exceed transition.noise[0]"),
        ("noise = [-0.1, 0.2]", "transition.noise[0] must be >= 0"),
        ("noise = { from = 0.5, to = 0.1, count = 3 }", "transition.noise.to must be larger"),
        ("noise = [0.1]\nresolution = 2", "transition.resolution"),
        ("noise = [0.1]\nmembers = 0", "transition.members"),
        ("noise = [0.1]\nkick = 1.0", "transition.kick must lie in [0, 1)"),
        ("resolution = 32", "transition.noise"),
    ],
)
def test_bad_transition_tables(table, message):
    base = SCAN.format(noise="[0.1]", tokens=0)
    text = re.sub(r"\[transition\].*", f"[transition]\n{table}\n", base, flags=re.S)
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_case(text, "scan.toml")


def test_transition_needs_a_grid():
    text = SCAN.format(noise="[0.1]", tokens=0).replace("[grid]\nresolutions = [32]\n", "")
    with pytest.raises(ValueError, match=r"transition relaxes the grid .* it needs a \[grid\] table"):
        parse_case(text, "scan.toml")


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_transition_on_ranks_equals_serial(tmp_path, ranks):
    """mpiexec -n 2 and -n 3: the grid relaxations split across the ranks and the token ensembles
    (3 members x 2 sigmas) dealt to them give the serial scan (tokens bit for bit: the same
    streams; the grid to round-off: the sums' split)."""
    text = SCAN.format(noise="[0.2, 0.7]", tokens=60).replace("T = 45.0", "T = 4.0")
    text = text.replace("members = 2", "members = 3")
    (tmp_path / "scan.toml").write_text(text)
    serial = run_transition(parse_case(text, "scan.toml"), tmp_path / "serial.h5")
    cmd = (sys.executable, "-m", "vlasov_tf.cli", "transition", str(tmp_path / "scan.toml"))
    done = launch(ranks, *cmd, "--out", str(tmp_path / "mpi"), "--name", "scan")
    assert done.returncode == 0, done.stderr[-3000:]
    with RunFile.open(serial, mode="r") as a, RunFile.open(tmp_path / "mpi" / "scan.h5", mode="r") as b:
        for key in a.jobs():
            (ta, xa), (tb, xb) = a.job_state(key), b.job_state(key)
            np.testing.assert_array_equal(ta, tb)
            if key.startswith("transition/tokens"):
                np.testing.assert_array_equal(xb, xa, err_msg=key)
            else:
                np.testing.assert_allclose(xb, xa, rtol=1e-12, atol=1e-15, err_msg=key)

