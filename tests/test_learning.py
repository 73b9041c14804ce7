"""vlasov_tf.learning: the JAX network is the particle solver's deep Transformer, the data are
regenerable by seed, training resumes after a kill where it stopped, a diverging training keeps
its last checkpoint, bad cases are one line naming the key, the learned Schedule runs in both solvers."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import h5py
import jax
import jax.numpy as jnp
from helpers import killed_at_call

import vlasov_tf as vt
from vlasov_tf.cli import main
from vlasov_tf.geometry.measures import uniform_sphere
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.learning import Architecture, forward, from_schedule, init_params, store, to_schedule
from vlasov_tf.learning import cases as learning_cases
from vlasov_tf.learning.cases import load_learning_case, parse_learning_case
from vlasov_tf.learning.data import MeasureFamily, label_tokens, split_tokens
from vlasov_tf.learning.runner import run_learning_case
from vlasov_tf.learning.store import LearningRun, load_schedule
from vlasov_tf.learning.training import Diverged, TrainState, train
from vlasov_tf.runs.case_keys import LEARNING_TABLES
from vlasov_tf.solvers.finite_volumes import solve_grid

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[case]
name = "tiny"
geometry = "circle"
T = 1.0

[model]
type = "interaction"
kernel = { name = "constant", c = 1.0 }
frequency = 0.5

[learning]
layers = 4
blocks = 2
heads = 1
hidden = 3
tokens = 8
train = 6
validation = 2
test = 2
steps = 12
batch = 3
checkpoint_every = 4
learning_rate = 0.02
"""


def _tiny(tmp_path: Path, extra: str = "", name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(TINY + textwrap.dedent(extra))
    return path


@pytest.mark.parametrize(("d", "attention"), [(2, "SA"), (3, "USA")])
def test_forward_is_the_particle_solvers_layers(attention, d):
    """One definition: the jitted JAX pass equals solve_particles(method="layers") on the schedule of
    the same parameters (blocks, several heads, W, a perceptron, non-uniform weights) to 1e-12."""
    arch = Architecture(d=d, layers=12, blocks=3, heads=2, hidden=5, beta=1.5, attention=attention, T=1.2)
    params = init_params(arch, 0, scale=0.5)
    rng = np.random.default_rng(1)
    x = uniform_sphere(40, d, rng)
    w = rng.random(40) + 0.1
    w /= w.sum()
    y = np.asarray(jax.jit(lambda p, x, w: forward(arch, p, x, w))(params, x, w))
    ref = vt.solve_particles(to_schedule(arch, params), x, w, method="layers", steps=arch.layers).final
    assert np.abs(y - ref).max() < 1e-12
    assert np.abs(y - x).max() > 0.05  # the map moves the tokens: the comparison is not of the identity
    # from_schedule: other Q, K, V, W (Q = B / beta, K = V = I), the same field and so the same map
    again = from_schedule(arch, to_schedule(arch, params))
    assert not np.allclose(again["K"], params["K"])
    assert np.abs(np.asarray(forward(arch, again, x, w)) - y).max() < 1e-12


def test_data_regenerate_by_seed_and_labels_are_the_flow():
    """Measure i of a split is the same for the same seed and differs across splits; the labels are
    the target's flow to ~1e-10 (against RK4 with 400 steps: error ~h^4) and move the tokens."""
    fam = MeasureFamily(3, bumps=(1, 3), kappa=(2.0, 20.0))
    a = fam.tokens(7, "train", 3, 50)
    np.testing.assert_array_equal(a, fam.tokens(7, "train", 3, 50))
    assert not np.allclose(a, fam.tokens(7, "test", 3, 50))
    assert not np.allclose(a, fam.tokens(8, "train", 3, 50))
    target = vt.Schedule.constant(vt.Params.identity(3, 2.0), 1.0)
    y = label_tokens(target, a, 1.0)
    rk4 = vt.solve_particles(target, a, method="rk4", steps=400).final
    assert np.abs(y - rk4).max() < 1e-9
    assert np.abs(y - a).max() > 0.1
    xs, ys = split_tokens(fam, target, 1.0, seed=7, split="train", count=4, n=50)
    np.testing.assert_array_equal(xs[3], a)
    np.testing.assert_array_equal(ys[3], y)


def test_training_lowers_the_loss_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    """Twelve steps from a checkpoint at step 4 (through the run file) end where twelve steps
    without a stop end; the loss falls."""
    case = load_learning_case(_tiny(tmp_path))
    full = run_learning_case(case, tmp_path / "a", log=lambda s: None)
    hist = full["history"]
    assert hist[-1, 1] < hist[0, 1]
    assert full["test_rms"] < full["identity_rms"]
    with killed_at_call(monkeypatch, store, "replace", 3):  # data, step 4, then the kill at 8
        run_learning_case(case, tmp_path / "b", log=lambda s: None)
    with h5py.File(tmp_path / "b" / "tiny.h5") as f:
        assert int(f["checkpoint"].attrs["step"]) == 4
    assert not list((tmp_path / "b").glob(".*.tmp"))
    resumed = run_learning_case(case, tmp_path / "b", log=lambda s: None)
    a, b = (
        LearningRun.open(tmp_path / "a" / "tiny.h5", "r"),
        LearningRun.open(tmp_path / "b" / "tiny.h5", "r"),
    )
    assert a.state is not None and b.state is not None and b.state.step == 12
    for k in a.state.params:
        np.testing.assert_array_equal(a.state.params[k], b.state.params[k])
    np.testing.assert_array_equal(a.state.history, b.state.history)
    assert resumed["test_rms"] == full["test_rms"]
    # the data are recorded with what regenerates them
    splits = json.loads(a.attrs["splits"])
    assert splits["seed"] == 0 and splits["splits"]["train"]["count"] == 6
    np.testing.assert_array_equal(a.data["test"][0][1], case.family.tokens(0, "test", 1, 8))


@pytest.mark.slow
def test_a_killed_training_resumes(tmp_path):
    """SIGKILL during `vlasov-tf learn` (a checkpoint every step); run again, it ends as a run that
    was never killed (~45 s: two processes import and compile; the default run has the simulated
    kill of test_training_lowers_the_loss_and_resumes_bit_for_bit)."""
    case_path = _tiny(tmp_path, "", "tiny.toml")
    text = (
        case_path.read_text()
        .replace("steps = 12", "steps = 60")
        .replace("checkpoint_every = 4", "checkpoint_every = 1")
    )
    case_path.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "vlasov_tf.cli", "learn", str(case_path), "--out", str(tmp_path / "k")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_file, step, t0 = tmp_path / "k" / "tiny.h5", 0, time.monotonic()
    try:
        while step < 5 and time.monotonic() - t0 < 120:
            time.sleep(0.05)
            try:
                with h5py.File(run_file, "r") as f:
                    step = int(f["checkpoint"].attrs["step"]) if "checkpoint" in f else 0
            except (OSError, KeyError):
                continue
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and 5 <= step < 60
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    case = load_learning_case(case_path)
    run_learning_case(case, tmp_path / "u", log=lambda s: None)
    a, b = LearningRun.open(tmp_path / "u" / "tiny.h5", "r"), LearningRun.open(run_file, "r")
    assert a.state is not None and b.state is not None
    for k in a.state.params:
        np.testing.assert_array_equal(a.state.params[k], b.state.params[k])


def test_a_diverging_training_stops_and_keeps_its_checkpoint(tmp_path, capsys):
    """Unnormalised attention with a huge learning rate overflows: the command says so in one line
    (exit 1), and the run file keeps the last finite checkpoint."""
    path = _tiny(tmp_path, "")
    text = (
        path.read_text()
        .replace("learning_rate = 0.02", "learning_rate = 50.0")
        .replace("[learning]", '[learning]\nattention = "USA"\nbeta = 30.0')
        .replace("steps = 12", "steps = 200")
        .replace("checkpoint_every = 4", "checkpoint_every = 1")
    )
    path.write_text(text)
    assert main(["learn", str(path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vlasov-tf: error: training diverged at step"), err
    kept = int(err[0].split("the checkpoint of step ")[1].split()[0])
    run = LearningRun.open(tmp_path / "o" / "tiny.h5", "r")
    assert run.state is not None and run.state.step == kept
    assert all(np.isfinite(v).all() for v in run.state.params.values())
    assert np.isfinite(run.state.history[:, 1]).all()


def test_train_raises_diverged_on_nan_labels():
    arch = Architecture(d=2, layers=2)
    x = uniform_sphere(8, 2, np.random.default_rng(0))[None]
    state = TrainState(0, init_params(arch, 0), [])
    with pytest.raises(Diverged, match="step 1"):
        train(arch, state, (x, np.full_like(x, np.nan)), steps=3, learning_rate=0.1, batch=1, seed=0)


def test_learned_schedule_runs_in_both_solvers(tmp_path):
    """The run file's network, loaded as a Schedule: solve_particles("layers") is the JAX map, and its
    grid flow (the infinite-depth limit) is near the tokens' deep flow."""
    case = load_learning_case(_tiny(tmp_path))
    res = run_learning_case(case, tmp_path, log=lambda s: None)
    schedule = load_schedule(res["path"])
    run = LearningRun.open(res["path"], "r")
    assert run.state is not None
    x = run.data["test"][0][0]
    y = np.asarray(forward(case.arch, {k: jnp.asarray(v) for k, v in run.state.params.items()}, x))
    np.testing.assert_allclose(vt.solve_particles(schedule, x, method="layers", steps=4).final, y, atol=1e-12)
    mesh = circle_mesh(64)
    rho = 1.0 + 0.5 * np.cos(np.arctan2(mesh.centres[:, 1], mesh.centres[:, 0]))
    rho /= rho @ mesh.areas
    grid = solve_grid(mesh, rho, schedule, schedule.T)
    assert abs(grid.final @ mesh.areas - 1.0) < 1e-12


def test_a_run_file_of_another_case_is_refused(tmp_path, capsys):
    path = _tiny(tmp_path)
    assert main(["learn", str(path), "--out", str(tmp_path / "o"), "--set", "learning.steps=0"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "learn",
                str(path),
                "--out",
                str(tmp_path / "o"),
                "--set",
                "learning.steps=0",
                "--set",
                "learning.seed=1",
            ]
        )
        == 0
    )  # fmt: skip  (another name: its own file)
    path.write_text(path.read_text() + "\n# a comment changes nothing\n")
    assert main(["learn", str(path), "--out", str(tmp_path / "o"), "--set", "learning.steps=0"]) == 0
    path.write_text(path.read_text().replace("c = 1.0", "c = 2.0"))
    assert main(["learn", str(path), "--out", str(tmp_path / "o"), "--set", "learning.steps=0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was made by another case" in err


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("", None),
        ("[evaluation]\nlevel = 1\n", "evaluation.level"),
        ("[oops]\n", "oops"),
    ],
)
def test_bad_cases_name_the_key(extra, key):
    if key is None:
        assert parse_learning_case(TINY).arch.layers == 4
        for bad, where in (
            ({"learning.blocks": 3}, "learning.blocks"),
            ({"learning.heads": 0, "learning.hidden": 0}, "learning.heads"),
            ({"learning.labels": "exact"}, "learning.labels"),
            ({"model.noise": 0.1}, "model.noise"),
            ({"learning.family.kappa": [5.0, 1.0]}, "learning.family.kappa"),
            ({"learning.batch": 7}, "learning.batch"),
            ({"learning.layerz": 7}, "learning.layerz"),
            ({"learning.learning_rate": -1.0}, "learning.learning_rate"),
        ):
            with pytest.raises(ValueError, match=where.replace(".", r"\.")):
                parse_learning_case(TINY, "c.toml", bad)
        return
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        parse_learning_case(TINY + extra, "c.toml")


def test_the_documented_example_names_every_learning_key():
    """The annotated example of the module docstring shows every key of [learning] and
    [learning.family] that the reader accepts (case_keys.LEARNING_TABLES, which the case-file
    reference lists), and only keys it accepts in [evaluation] (cells or level: one geometry)."""
    doc = learning_cases.__doc__
    block = doc.split("::\n\n", 1)[1].split("\nEvery key", 1)[0]
    example = tomllib.loads(textwrap.dedent(block))
    assert set(example["learning"]) == set(LEARNING_TABLES["learning"].keys)
    assert set(example["learning"]["family"]) == set(LEARNING_TABLES["learning.family"].keys)
    assert set(example["evaluation"]) < set(LEARNING_TABLES["evaluation"].keys)
    with pytest.raises(ValueError, match=r"evaluation\.levels"):
        parse_learning_case(TINY + "\n[evaluation]\nlevels = 1\n", "c.toml")


def test_cli_bad_case_is_one_line(tmp_path, capsys):
    path = _tiny(tmp_path, "\n[evaluation]\ncells = 2\n")
    with pytest.raises(SystemExit, match="2"):
        main(["learn", str(path), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evaluation.cells" in err
    assert not (tmp_path / "tiny.h5").exists()


@pytest.mark.slow
def test_the_sanity_case_recovers_the_attention_flow(tmp_path):
    """cases/learn_attention.toml (an exact fit exists): the test error falls to round-off and the
    identifiable parameters come back, B = beta K^T Q = 2 I and W V = I (~40 s)."""
    case = load_learning_case(ROOT / "cases" / "learn_attention.toml", {"learning.steps": 750})
    res = run_learning_case(case, tmp_path, log=lambda s: None)
    assert res["test_rms"] < 1e-12 < 0.1 < res["identity_rms"]
    (head,) = res["schedule"].blocks[0][1].heads
    assert np.abs(head.B - 2.0 * np.eye(2)).max() < 1e-10
    assert np.abs(head.output - np.eye(2)).max() < 1e-10


def test_evaluation_on_the_sphere(tmp_path):
    """A Lohe target on S^2 (constant kernel and a rotation): the evaluation runs on the level-0 mesh
    with the sliced W1 throughout; the target's own tokens approach its grid solution as N grows
    (the sampling floor falls), and the learned network's errors are finite and positive."""
    text = """
[case]
name = "lohe"
geometry = "sphere"
T = 0.5

[model]
type = "interaction"
kernel = { name = "constant", c = 1.0 }
omega = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]

[learning]
layers = 2
tokens = 16
train = 4
validation = 1
test = 1
steps = 3
checkpoint_every = 3

[evaluation]
tokens = [50, 800]
level = 0
"""
    case = parse_learning_case(text, "lohe.toml")
    res = run_learning_case(case, tmp_path, log=lambda s: None)
    sampling = res["w1_sampling"][0]
    assert sampling[1] < 0.5 * sampling[0]
    for key in ("token_error", "w1_tokens", "w1_grid"):
        assert np.all(np.isfinite(res[key])) and np.all(res[key] > 0), key


@pytest.mark.slow
def test_sinkhorn_loss_compares_measures(tmp_path):
    """The Sinkhorn loss is blind to the tokens' order (a loss of measures), vanishes when the output
    measure is the label measure, and is the squared shift for a translated cloud (W2^2 = |c|^2 up to
    the entropic bias, which the divergence removes to O(epsilon)); a training on it runs and lowers it
    (~75 s: ott's Sinkhorn loop takes a minute to compile inside the network's gradient)."""
    from vlasov_tf.learning.training import sinkhorn_loss, token_loss

    arch = Architecture(d=2, layers=2)
    params = init_params(arch, 0)
    x = uniform_sphere(32, 2, np.random.default_rng(0))[None]
    y = np.asarray(forward(arch, params, x[0]))[None]
    perm = y[:, ::-1]
    assert float(token_loss(arch, params, x, perm)) > 0.1
    assert abs(float(sinkhorn_loss(arch, params, x, perm, 0.01))) < 1e-6
    assert abs(float(sinkhorn_loss(arch, params, x, perm + 0.1, 0.01)) - 0.02) < 1e-3
    case = load_learning_case(_tiny(tmp_path), {"learning.loss": "sinkhorn", "learning.steps": 8})
    hist = run_learning_case(case, tmp_path, log=lambda s: None)["history"]
    assert hist[-1, 1] < hist[0, 1]
