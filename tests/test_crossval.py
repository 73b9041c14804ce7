"""The cross-validation driver end to end: jobs, run file, diagnostics, crash and resume, CLI."""

import collections
import logging
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_same_diagnostics, killed_at_call

import vlasov_tf
from vlasov_tf.cli import main
from vlasov_tf.logs import log_file
from vlasov_tf.runs import storage as io
from vlasov_tf.runs.cases import parse_case
from vlasov_tf.runs.diagnostics import DIAGNOSTICS
from vlasov_tf.runs.runner import CaseMismatch, case_jobs, job_layouts, run_case
from vlasov_tf.runs.studies import crossval_tables

SMALL = """
[case]
name = "tiny"
geometry = "circle"
T = 1.0
outputs = 3

[initial]
family = "vmf_mixture"
angles = [0.5, 3.0]
kappas = [2.0, 3.0]
proportions = [0.5, 0.5]

[model]
attention = "SA"
beta = 3.0

[particles]
tokens = [50, 200]
layers = [5, 10, 20]
reference_steps = 0
seed = 4

[grid]
resolutions = [64, 128, 256]
reconstruction = "linear"  # the rates below are the second-order scheme's
"""


@pytest.fixture
def case(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SMALL)
    return parse_case(SMALL, source=str(path))


def read_all(path):
    """{job key: (times, states)} and the mass diagnostics of a run file."""
    with io.RunFile.open(path, mode="r") as run:
        return {key: run.job_state(key) for key in run.jobs()}, run.diagnostics("mass")


def diagnostic(path, name):
    with io.RunFile.open(path, mode="r") as run:
        return run.diagnostics(name)


def test_run_case_stores_every_job_and_its_diagnostics(case, tmp_path):
    path = run_case(case, tmp_path / "tiny.h5")
    states, mass = read_all(path)
    assert sorted(states) == sorted(j.key for j in case_jobs(case))
    for times, snaps in states.values():
        np.testing.assert_allclose(times, case.output_times)
        assert np.isfinite(snaps).all()
    for rows in mass.values():
        np.testing.assert_allclose(rows[:, 1], 1.0, rtol=1e-12)  # the grids conserve mass
    # the depth error at T falls like 1/L, and the grid error at order 2 (nested grids)
    with io.RunFile.open(path, mode="r") as run:
        tables = {t.name: t for t in crossval_tables(case, run)}
    assert tables["layers"].rate == pytest.approx(1.0, abs=0.15)
    # Errors against the finest grid M = 256 for a 2nd-order scheme: M = 64 gives C h^2 (1 - 1/16),
    # M = 128 gives C (h/2)^2 (1 - 1/4); their ratio is 5, a fitted slope of log2(5) = 2.32.
    assert tables["grid"].rate == pytest.approx(np.log2(5.0), abs=0.15)
    # The XDMF companions: one per job, every snapshot (meshio reads them: test_storage).
    for key in states:
        assert io.xdmf_path(tmp_path / "tiny.h5", key).read_text().count("<Time ") == len(case.output_times)
    # Every grid job reports its error-controlled steps at each output after the first.
    steps, rejected = diagnostic(path, "steps"), diagnostic(path, "rejected_steps")
    grid_keys = sorted(j.key for j in case_jobs(case) if j.kind == "grid")
    assert sorted(steps) == sorted(rejected) == grid_keys
    for key in grid_keys:
        np.testing.assert_allclose(steps[key][:, 0], case.output_times[1:])
        assert (steps[key][:, 1] >= 1).all() and (rejected[key][:, 1] >= 0).all()


def test_a_crash_loses_nothing_and_resume_reproduces_the_run(case, tmp_path, monkeypatch):
    """Kill the run (an exception inside the 7th append), resume, compare with an uninterrupted run."""
    reference, _ = read_all(run_case(case, tmp_path / "full.h5"))

    with killed_at_call(monkeypatch, io.RunFile, "append", 7):
        run_case(case, tmp_path / "crashed.h5")
    kept, _ = read_all(tmp_path / "crashed.h5")
    assert sum(len(t) for t, _ in kept.values()) == 6  # every acknowledged snapshot survived

    run_case(case, tmp_path / "crashed.h5", resume=True)
    resumed, _ = read_all(tmp_path / "crashed.h5")
    assert sorted(resumed) == sorted(reference)
    for key in reference:
        np.testing.assert_array_equal(resumed[key][1], reference[key][1])
    # The same steps too, counted across the kill.
    for name in ("steps", "rejected_steps"):
        full, again = diagnostic(tmp_path / "full.h5", name), diagnostic(tmp_path / "crashed.h5", name)
        assert sorted(full) == sorted(again)
        for key in full:
            np.testing.assert_array_equal(again[key], full[key])


def test_a_crash_between_step_counts_and_snapshot_loses_no_count(case, tmp_path, monkeypatch):
    """The step counts of an output are written before its snapshot: a run killed between the two
    recounts them on resume (written after, they were lost: resume starts past that output)."""
    full = diagnostic(run_case(case, tmp_path / "full.h5"), "steps")
    steps_rows = lambda self, rows: bool(rows) and rows[0][0] == "steps"  # noqa: E731
    with killed_at_call(monkeypatch, io.RunFile, "add_diagnostics", 3, counts=steps_rows):
        run_case(case, tmp_path / "crashed.h5")
    run_case(case, tmp_path / "crashed.h5", resume=True)
    again = diagnostic(tmp_path / "crashed.h5", "steps")
    assert sorted(again) == sorted(full)
    for key in full:
        np.testing.assert_array_equal(again[key], full[key])


def test_diagnostics_resume_where_a_kill_left_them(case, tmp_path, monkeypatch):
    """The diagnostics ran again from the start on every --resume (about 450 s for
    sphere_metastable). Now each (job, output time) is stored with its mark, once."""
    full = run_case(case, tmp_path / "full.h5")
    path = run_case(case, tmp_path / "part.h5", diagnostics=False)
    with io.RunFile.open(path, mode="r") as run:
        assert run.diagnostics("energy") == {} and run.diagnostics("wall_s")  # timings went as it ran
    # The values of t0, of t1 stored; those of t2: killed.
    with killed_at_call(monkeypatch, io.RunFile, "add_diagnostics", 3):
        run_case(case, path, resume=True)
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("vlasov_tf")  # its own handler: the CLI's configuration stops propagation
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        run_case(case, path, resume=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    n_left = len(case.output_times) - 2
    assert next(line for line in lines if line.startswith("diagnostics: t = ")).startswith(
        f"diagnostics: t = {case.output_times[2]:g} done (1/{n_left},"
    )
    with io.RunFile.open(full, mode="r") as a, io.RunFile.open(path, mode="r") as b:
        assert assert_same_diagnostics(a, b) >= {"energy", "mass", "w1_ref", "w1_grid", "l1_grid"}
        assert all(len(rows) == len(case.output_times) for rows in b.diagnostics("diagnostics_s").values())


def test_resume_with_the_other_solver_adds_the_distances_to_the_grid(case, tmp_path):
    """Particles first, the grid on --resume: the particle jobs' (job, time) were marked done
    before there was a grid, so their distances to it were never computed."""
    both = run_case(case, tmp_path / "both.h5")
    path = run_case(case, tmp_path / "split.h5", solvers=("particles",))
    run_case(case, path, resume=True, solvers=("grid",))
    with io.RunFile.open(both, mode="r") as a, io.RunFile.open(path, mode="r") as b:
        assert a.diagnostic_names() == b.diagnostic_names()
        for name in set(a.diagnostic_names()) - {"wall_s", "diagnostics_s", "steps", "rejected_steps"}:
            da, db = a.diagnostics(name), b.diagnostics(name)
            assert sorted(da) == sorted(db), name
            for key in da:
                np.testing.assert_allclose(db[key], da[key], rtol=1e-12, err_msg=f"{name} {key}")


def test_resume_does_not_ask_for_the_disk_again(case, tmp_path, monkeypatch):
    """The whole run's size was checked against the free disk on --resume too, though its file
    is allocated: a resume on a nearly full disk was refused."""
    path = run_case(case, tmp_path / "run.h5", solvers=("grid",))
    Usage = collections.namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**12, 10**12 - 1000, 1000))
    run_case(case, path, resume=True)
    needs = r"the run file needs [\d.]+ GiB \(3 outputs of 11 jobs\), the disk has 0\.00 GiB free"
    with pytest.raises(OSError, match=needs):
        run_case(case, tmp_path / "new.h5")
    assert not (tmp_path / "new.h5").exists()


def test_cli_case_errors_and_interruptions_are_one_line(tmp_path, capsys, monkeypatch):
    """A bad case printed argparse's usage block before its line, and Ctrl-C a 35-line traceback."""
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL.replace("kappas", "kapas"))
    with pytest.raises(SystemExit) as exc:
        main(["run", str(src), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("vlasov-tf: error: ")
    assert "did you mean 'kappas'" in err
    src.write_text(SMALL)
    import vlasov_tf.cli as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_case", interrupted)
    assert main(["run", str(src), "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err == "vlasov-tf: interrupted; what was stored is kept: continue with --resume\n"


def test_cli_run_held_by_another_writer_is_one_line_exit_2(tmp_path, capsys):
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    assert main(["run", "--no-plot", str(src), "--out", str(tmp_path), "--solver", "grid"]) == 0
    capsys.readouterr()
    with io.RunFile.open(tmp_path / "tiny.h5"):  # another writer
        assert main(["run", str(src), "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is open for writing by another process" in err


def test_the_log_file_leaves_the_logger_as_it_was_and_overwrite_starts_afresh(tmp_path):
    logger = logging.getLogger("vlasov_tf")
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with log_file(tmp_path / "a.log"):
            logger.info("inside")
        assert logger.level == logging.WARNING  # it stayed INFO: records reached a script's console
    finally:
        logger.setLevel(before)
    assert (tmp_path / "a.log").read_text().endswith("inside\n")
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    args = ["run", "--no-plot", str(src), "--out", str(tmp_path / "o"), "--solver", "grid"]
    assert main(args) == 0
    assert main([*args, "--overwrite"]) == 0
    assert (tmp_path / "o" / "tiny.log").read_text().count("run file:") == 1  # the replaced run's went


@pytest.mark.parametrize("norm", ["pre", "peri"])
def test_pre_and_peri_ln_cases_run_their_depth_study(norm, tmp_path):
    """particles.norm in a case: the deep Transformers against their own continuous-time limit
    (rate 1 in L), the clusters of the directions; no grid (the "post" flow's)."""
    text = SMALL[: SMALL.index("[grid]")].replace("seed = 4", f'seed = 4\nnorm = "{norm}"')
    case = parse_case(text)
    path = run_case(case, tmp_path / "run.h5")
    with io.RunFile.open(path, mode="r") as run:
        tables = {t.name: t for t in crossval_tables(case, run)}
        _, z = run.job_state("particles/N200_L20")
        counts = run.diagnostics("clusters")
    assert tables["layers"].rate == pytest.approx(1.0, abs=0.1)
    assert np.linalg.norm(z[-1], axis=1).min() > 1.2  # the residual stream grew off the sphere
    assert set(counts) == set(run_jobs_keys(case)) and all((c[:, 1] >= 1).all() for c in counts.values())
    with pytest.raises(ValueError, match=r"particles\.norm 'pre' has no grid here"):
        parse_case(SMALL.replace("seed = 4", 'seed = 4\nnorm = "pre"'))


def test_causal_cases_run_their_depth_study(tmp_path):
    """model.mask = "causal" without a grid: the masked Transformer against its continuous-time
    limit (rate 1 in L); the first token (alone in the first slice: slices = N) never moves."""
    causal = 'attention = "SA"\nmask = "causal"\nslices = 200'
    text = SMALL[: SMALL.index("[grid]")].replace('attention = "SA"', causal)
    case = parse_case(text)
    path = run_case(case, tmp_path / "run.h5")
    with io.RunFile.open(path, mode="r") as run:
        tables = {t.name: t for t in crossval_tables(case, run)}
        _, x = run.job_state("particles/N200_L20")
    assert tables["layers"].rate == pytest.approx(1.0, abs=0.1)
    assert np.abs(x[-1, 0] - x[0, 0]).max() < 1e-14 and np.abs(x[-1, 1] - x[0, 1]).max() > 1e-3
    with pytest.raises(ValueError, match=r"particles\.tokens must be multiples of model\.slices = 8"):
        parse_case(SMALL.replace('attention = "SA"', 'attention = "SA"\nmask = "causal"'))


def run_jobs_keys(case) -> list[str]:
    return [j.key for j in case_jobs(case)]


def test_resume_refuses_another_case_naming_the_difference(tmp_path):
    """A run killed at beta = 3 and resumed with beta = 30 went on at beta = 30 while the file
    said 3; and a default that changed between versions (the grid scheme) changed the run too."""
    path = tmp_path / "tiny.h5"
    case = parse_case(SMALL, overrides={"particles.tokens": [50]})
    run_case(case, path, solvers=("grid",))
    with io.RunFile.open(path, mode="r") as run:
        assert run.overrides == [("particles.tokens", [50])]
        assert run.settings["model.beta"] == "3.0" and run.settings["grid.reconstruction"] == '"linear"'
    hotter = parse_case(SMALL.replace("beta = 3.0", "beta = 30.0"), overrides={"particles.tokens": [50]})
    with pytest.raises(
        CaseMismatch,
        match=r"tiny\.h5: cannot resume with another case: model\.beta = 3\.0 when run, 30\.0 now",
    ):
        run_case(hotter, path, resume=True)
    with pytest.raises(CaseMismatch, match=r"particles\.tokens = \[50\] when run, \[50, 200\] now"):
        run_case(parse_case(SMALL), path, resume=True)
    third = parse_case(SMALL, overrides={"particles.tokens": [50], "grid.reconstruction": "quadratic"})
    with pytest.raises(
        CaseMismatch, match=r"grid\.limiter = \"barth-jespersen\" when run, \"positivity\" now"
    ):
        run_case(third, path, resume=True)
    # The same case resumes (nothing left to do), a new description does not matter.
    described = parse_case(
        SMALL.replace('name = "tiny"', 'name = "tiny"\ndescription = "x"'),
        overrides={"particles.tokens": [50]},
    )
    run_case(described, path, resume=True, solvers=("grid",))


def test_resume_of_a_file_without_settings_compares_the_text(tmp_path):
    path = tmp_path / "old.h5"
    case = parse_case(SMALL)
    layout = dict(jobs=job_layouts(case), times=case.output_times, diagnostics=DIAGNOSTICS)
    io.RunFile.create(path, SMALL, "tiny", **layout).close()  # made through the API without settings
    run_case(case, path, resume=True, solvers=("grid",))
    with pytest.raises(CaseMismatch, match="its case text"):
        run_case(parse_case(SMALL.replace("beta = 3.0", "beta = 4.0")), path, resume=True)


def test_cli_resume_with_an_edited_case_is_one_line_exit_2(tmp_path, capsys):
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    assert main(["run", "--no-plot", str(src), "--out", str(tmp_path / "o"), "--solver", "grid"]) == 0
    src.write_text(SMALL.replace("beta = 3.0", "beta = 30.0"))
    with pytest.raises(SystemExit) as exc:
        main(["run", str(src), "--out", str(tmp_path / "o"), "--resume"])
    assert exc.value.code == 2
    assert "cannot resume with another case: model.beta = 3.0 when run, 30.0 now" in capsys.readouterr().err


def test_cli_sweeps_with_set_and_name(tmp_path, capsys):
    """Every point of a sweep gets its own run file, with its overrides recorded; plot applies them."""
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    out = tmp_path / "o"
    base = ["run", "--no-plot", str(src), "--out", str(out), "--solver", "grid"]
    assert main([*base, "--set", "model.beta=9", "--set", "particles.tokens=[50]"]) == 0
    path = out / "tiny-model.beta-9-particles.tokens-50.h5"
    with io.RunFile.open(path, mode="r") as run:
        assert run.overrides == [("model.beta", 9), ("particles.tokens", [50])]
        assert run.settings["model.beta"] == "9"
    assert main([*base, "--set", "grid.reconstruction=quadratic", "--name", "third"]) == 0
    with io.RunFile.open(out / "third.h5", mode="r") as run:
        assert run.settings["grid.reconstruction"] == '"quadratic"'
    assert main(["plot", str(path)]) == 0
    assert (out / "tiny-model.beta-9-particles.tokens-50.png").stat().st_size > 20_000
    capsys.readouterr()
    for extra, message in (
        (["--set", "model.gamma=1"], "unknown key model.gamma"),
        (["--set", "model.beta"], "expected KEY=VALUE"),
        (["--set", "model.beta=-1"], "model.beta must be > 0"),
        (["--set", "model.beta=(1"], "is not a TOML value"),
        (["--resume", "--overwrite"], "--resume and --overwrite contradict"),
        (["--name", "a/b"], "--name 'a/b'"),
    ):
        with pytest.raises(SystemExit) as exc:
            main([*base, *extra])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err, extra


def test_plot_reads_without_writing(tmp_path):
    """plot opened the run file for writing: it failed on a running job and consumed the journal
    of a killed one. Now a killed run's file stays byte for byte as it was, and a run held open by
    its writer plots too."""
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    path = tmp_path / "tiny.h5"
    # A writer killed outright (os._exit in its 7th append).
    script = (
        "import os, sys\n"
        "from vlasov_tf.runs import storage as io\n"
        "from vlasov_tf.runs.cases import load_case\n"
        "from vlasov_tf.runs.runner import run_case\n"
        "append, n = io.RunFile.append, [0]\n"
        "def dying(self, *a):\n"
        "    n[0] += 1\n"
        "    if n[0] == 7:\n"
        "        os._exit(9)\n"
        "    return append(self, *a)\n"
        "io.RunFile.append = dying\n"
        "run_case(load_case(sys.argv[1]), sys.argv[2])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(src), str(path)], check=False)
    assert proc.returncode == 9
    before = path.read_bytes(), sorted(os.listdir(tmp_path))
    with io.RunFile.open(path, mode="r") as run:
        assert sum(len(run.job_state(key)[0]) for key in run.jobs()) == 6
    assert main(["plot", str(path), "--out", str(tmp_path / "fig")]) == 0
    assert (path.read_bytes(), sorted(set(os.listdir(tmp_path)) - {"fig"})) == before  # only fig/ is new
    with io.RunFile.open(path):  # a writer holds it
        assert main(["plot", str(path), "--out", str(tmp_path / "fig")]) == 0


def test_a_run_failing_at_start_leaves_no_file(tmp_path):
    """USA at beta = 1000 overflows in the first step: the run file (only initial snapshots) is
    removed, so the next plain run is not refused ("exists: pass --resume")."""
    path = tmp_path / "tiny.h5"
    hot = parse_case(SMALL.replace('attention = "SA"\nbeta = 3.0', 'attention = "USA"\nbeta = 1000.0'))
    with pytest.raises(OverflowError, match="lower beta"):
        run_case(hot, path, solvers=("grid",))
    assert sorted(os.listdir(tmp_path)) == []  # nor its lock or XDMF companions
    run_case(parse_case(SMALL, overrides={"particles.tokens": [50]}), path, solvers=("grid",))
    # A run that computed something keeps its file for --resume.
    with pytest.raises(CaseMismatch):
        run_case(hot, path, resume=True)
    assert path.exists()


def test_meshes_are_checked_before_the_run_file_is_replaced(tmp_path, monkeypatch):
    """A missing sphere mesh was found only after --overwrite had replaced a complete run file."""
    path = tmp_path / "tiny_sphere.h5"
    case = parse_case(
        SPHERE.replace("resolutions = [0, 1, 2]", "resolutions = [0]"), overrides={"particles.tokens": [50]}
    )
    io.RunFile.create(path, case.text, case.name, jobs=job_layouts(case), times=case.output_times).close()
    before = path.read_bytes()
    monkeypatch.setenv("VLASOV_TF_MESHES", str(tmp_path / "no_meshes"))
    with pytest.raises((FileNotFoundError, ValueError)):
        run_case(case, path, overwrite=True, solvers=("grid",))
    assert path.read_bytes() == before


def test_cli_run_logs_beside_its_run_file(tmp_path, capsys):
    """Output was print only: no timestamps, no per-job timings, nothing kept. Now a log beside the
    run file, appended to by a resume; a run that leaves no run file leaves no log."""
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    out = tmp_path / "o"
    assert main(["run", "--no-plot", str(src), "--out", str(out), "--solver", "grid"]) == 0
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    log = (out / "tiny.log").read_text()
    for key in ("grid/M64", "grid/M128", "grid/M256"):
        done = r": done in [\d.]+ s \(3 snapshots, \d+ steps \(\d+ rejected\)\)\n"
        assert re.search(stamp + key + done, log)
    assert re.search(stamp + r"diagnostics: t = 0 done \(1/3, [\d.]+ s\)\n", log)
    assert re.search(stamp + r"run file: .*tiny.h5 \([\d.]+ s\)\n", log)
    assert log in capsys.readouterr().out  # the terminal saw the same lines
    assert main(["run", "--no-plot", str(src), "--out", str(out), "--resume"]) == 0
    again = (out / "tiny.log").read_text()
    assert again.startswith(log) and re.search(stamp + r"grid/M64: complete, skipped", again)
    assert re.search(stamp + r"particles/N50_ref: done in", again)

    hot = tmp_path / "hot.toml"
    hot.write_text(SMALL.replace('attention = "SA"\nbeta = 3.0', 'attention = "USA"\nbeta = 1000.0'))
    assert main(["run", str(hot), "--out", str(out), "--solver", "grid", "--name", "hot"]) == 2
    assert not (out / "hot.h5").exists() and not (out / "hot.log").exists()


def test_cli_errors_are_one_line_exit_2(case, tmp_path, capsys):
    """These ended in a Python traceback."""
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL.replace('attention = "SA"\nbeta = 3.0', 'attention = "USA"\nbeta = 1000.0'))
    not_run = tmp_path / "notes.h5"
    not_run.write_text("not HDF5")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cases = [
        (["plot", str(tmp_path / "missing.h5")], "missing.h5 does not exist"),
        (["plot", str(not_run)], "notes.h5"),
        (["run", str(src), "--out", str(tmp_path / "o"), "--solver", "grid"], "lower beta or rescale time"),
        (["run", str(src), "--out", str(a_file / "sub")], "a_file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("vlasov-tf: error: ") and message in err and err.count("\n") == 1, err
    with pytest.raises(OverflowError):  # --debug: the traceback
        main(["--debug", "run", str(src), "--out", str(tmp_path / "o2"), "--solver", "grid"])


def test_run_files_record_provenance_and_timings(tmp_path):
    path = run_case(parse_case(SMALL, overrides={"particles.tokens": [50]}), tmp_path / "t.h5")
    with io.RunFile.open(path, mode="r") as run:
        prov = run.provenance
        wall = run.diagnostics("wall_s")
        keys = run.jobs()
    assert prov["vlasov_tf"] == vlasov_tf.__version__ and prov["mpi_size"] == 1
    assert prov["packages"]["numpy"] == np.__version__ and prov["host"] and prov["command"]
    assert prov["git_commit"] is None or len(prov["git_commit"]) == 40
    assert sorted(wall) == sorted(keys)
    for rows in wall.values():
        assert (rows[:, 1] >= 0).all() and rows[-1, 0] == 1.0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "resolutions = [64, 128, 256]",
            "resolutions = [64, 1000000000]",
            # 8 kB a cell at work and 8 bytes a cell for each of the 3 outputs kept
            r"grid\.resolutions 1000000000 \(1000000000 cells, 3 outputs\) needs about 7652 GiB",
        ),
        (
            "tokens = [50, 200]",
            "tokens = [50, 1000000000]",
            r"particles\.tokens 1000000000 \(3 outputs\) needs about 1952 GiB",
        ),
    ],
)
def test_sizes_beyond_the_memory_are_refused_before_anything_is_allocated(tmp_path, old, new, message):
    """These ended in numpy's memory error after trying to take many GiB."""
    case = parse_case(SMALL.replace(old, new))
    with pytest.raises(ValueError, match=message):
        run_case(case, tmp_path / "big.h5")
    assert not (tmp_path / "big.h5").exists()


def test_diagnostics_are_optional_logged_and_added_later(tmp_path, capsys):
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    out = tmp_path / "o"
    tokens = ["--set", "particles.tokens=[50]"]
    assert main(["run", "--no-plot", str(src), "--out", str(out), "--no-diagnostics", *tokens]) == 0
    path = out / "tiny-particles.tokens-50.h5"
    with io.RunFile.open(path, mode="r") as run:
        assert "mass" not in run.diagnostic_names() and {"steps", "wall_s"} <= set(run.diagnostic_names())
    assert "diagnostics of" not in capsys.readouterr().out
    resume = ["run", "--no-plot", str(src), "--out", str(out), "--resume", "--set", "particles.tokens=[50]"]
    assert main(resume) == 0
    printed = capsys.readouterr().out
    assert "diagnostics of" in printed and "diagnostics: t = 0.5 done (2/3" in printed
    with io.RunFile.open(path, mode="r") as run:
        assert {"mass", "w1_grid", "w1_ref"} <= set(run.diagnostic_names())


def test_full_study_gets_its_own_file(tmp_path, monkeypatch):
    """study --full wrote to the main job's file: --resume was refused (another case) and
    --overwrite lost the main job."""
    import vlasov_tf.cli as cli

    paths = []

    def record(case, path, **kwargs):
        paths.append(path.name)
        raise KeyboardInterrupt  # stop before the study's tables

    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    monkeypatch.setattr(cli, "full_study", lambda case: case)
    monkeypatch.setattr(cli, "run_case", record)
    for extra in ([], ["--full"], ["--full", "--name", "mine"]):
        assert main(["study", str(src), "--out", str(tmp_path / "o"), *extra]) == 130  # interrupted
    assert paths == ["tiny.h5", "tiny-full.h5", "mine.h5"]


def test_cli_run_study_plot(case, tmp_path, capsys):
    src = tmp_path / "tiny.toml"
    assert main(["run", str(src), "--out", str(tmp_path / "o"), "--solver", "grid"]) == 0
    with pytest.raises(SystemExit):  # an existing run file is never silently replaced
        main(["run", str(src), "--out", str(tmp_path / "o")])
    assert "--resume" in capsys.readouterr().err
    assert main(["study", str(src), "--out", str(tmp_path / "o"), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "fitted rate" in out and "expected 1" in out
    assert main(["plot", str(tmp_path / "o" / "tiny.h5")]) == 0
    assert (tmp_path / "o" / "tiny.png").stat().st_size > 20_000


def test_cli_names_bad_case_files(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace("beta = 3.0", "beta = -3.0"))
    with pytest.raises(SystemExit):
        main(["run", str(bad), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "bad.toml" in err and "model.beta" in err


SPHERE = """
[case]
name = "tiny_sphere"
geometry = "sphere"
T = 0.5
outputs = 3

[initial]
family = "vmf_mixture"
means = [[0.0, 0.0, 1.0], [0.8, 0.0, -0.6]]
kappas = [2.0, 3.0]
proportions = [0.6, 0.4]

[model]
attention = "SA"
beta = 1.0

[particles]
tokens = [200, 800]
layers = [5, 10, 20]
reference_steps = 0
samples = 3
seed = 2

[grid]
resolutions = [0, 1, 2]
cfl = 0.9
reconstruction = "linear"  # the rates below are the second-order scheme's
"""


def test_sphere_study_nested_grids_samples_and_sliced_distances(tmp_path):
    """S^2: nested levels compared on a common support converge at order 2: against the finest level
    2, levels 0 and 1 have errors C h^2 (1 - 1/16) and C (h/2)^2 (1 - 1/4) in the asymptotic regime,
    a fitted slope of log2 5 = 2.32, and 2 where the finest grid's own error is negligible; level 0
    (h = 0.11) is not quite asymptotic (successive orders 1.83, 1.95 on levels 0-3 here; a rotation
    on the same meshes gives 2.20, 2.01, 2.00), so the slope must lie in [1.8, 2.45]. The depth
    converges at order 1 (exact W1: N^2 <= 4e7), each N has its three independent samples, and the
    tokens' sliced W1 to the grid comes with its standard error."""
    case = parse_case(SPHERE, source="tiny_sphere.toml")
    keys = [j.key for j in case_jobs(case)]
    assert {"particles/N200s1_ref", "particles/N200s2_ref", "particles/N800s2_ref"} <= set(keys)
    assert "particles/N200s1_L5" not in keys  # the deep Transformers act on sample 0 only
    path = run_case(case, tmp_path / "tiny_sphere.h5")
    with io.RunFile.open(path, mode="r") as run:
        tables = {t.name: t for t in crossval_tables(case, run)}
        se = run.diagnostics("sw1_grid_se")
        mass = run.diagnostics("mass")
        # the samples really differ: independent token sets
        first, second = run.job_state("particles/N200_ref")[1][0], run.job_state("particles/N200s1_ref")[1][0]
        assert np.abs(first - second).max() > 0.1
    for rows in mass.values():
        np.testing.assert_allclose(rows[:, 1], 1.0, rtol=1e-12)
    assert tables["layers"].rate == pytest.approx(1.0, abs=0.15) and tables["layers"].metric == "W1"
    assert 1.8 <= tables["grid_l1"].rate <= 2.45
    # The sliced W1 of a density error is a weaker norm than L1 (it integrates the error along each
    # great circle first): it falls at least as fast.
    assert tables["grid"].metric == "SW1" and tables["grid"].rate >= 1.8
    assert tables["grid_l1"].error[-1] < 1e-3  # level 1 against level 2 (measured 5e-4)
    tokens = tables["tokens"]
    assert tokens.samples == 3 and tokens.spread is not None and (tokens.spread > 0).all()
    assert tokens.se is not None and (tokens.se > 0).all() and (tokens.se < 0.2 * tokens.error).all()
    assert tokens.error[1] < tokens.error[0]  # 4x the tokens, closer to the grid
    assert set(se) == {j.key for j in case_jobs(case) if j.kind == "particles"}


def test_an_interrupted_overwrite_keeps_the_old_run(tmp_path, monkeypatch, capsys):
    """--overwrite deleted the good run file first: a Ctrl-C two seconds into the new run left
    only its t = 0."""
    import vlasov_tf.runs.runner as runner

    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    args = ["run", str(src), "--out", str(tmp_path), "--solver", "grid", "--no-diagnostics"]
    assert main(args) == 0
    old = (tmp_path / "tiny.h5").read_bytes()
    calls = []
    clusters_of = runner.clusters_of

    def interrupted(*a, **kw):  # the first output of the new run is stored, then Ctrl-C
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return clusters_of(*a, **kw)

    monkeypatch.setattr(runner, "clusters_of", interrupted)
    old_log = (tmp_path / "tiny.log").read_text()
    assert main([*args, "--overwrite"]) == 130
    assert (tmp_path / "tiny.h5").read_bytes() == old
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".lock", ".new"))]
    log = (tmp_path / "tiny.log").read_text()  # the old run's log stays, the attempt after it
    assert log.startswith(old_log) and "grid/M64: running" in log[len(old_log) :]
    with io.RunFile.open(tmp_path / "tiny.h5", mode="r") as run:
        assert all(run.is_complete(key) for key in run.jobs() if key.startswith("grid/"))


def test_resume_redoes_what_is_damaged_and_plot_names_it(tmp_path, capsys):
    """A damaged grid snapshot was caught by `plot`, but `--resume` reported the run complete and
    left the damage; a damaged diagnostic was plotted without a word."""
    import h5py

    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    args = ["run", str(src), "--out", str(tmp_path), "--solver", "grid"]
    assert main(args) == 0
    path = tmp_path / "tiny.h5"
    with io.RunFile.open(path, mode="r") as run:
        good = {key: run.job_state(key) for key in run.jobs() if key.startswith("grid/")}
        mass, clusters = run.diagnostics("mass"), run.diagnostics("clusters")
        assert run.jobs()[2] == "grid/M256"
    with h5py.File(path, "r") as f:
        rows = f["jobs/grid/M128/densities"].id.get_offset()
        values = f["diagnostics/mass"].id.get_offset()
        counts = f["diagnostics/clusters"].id.get_offset()
    data = bytearray(path.read_bytes())
    data[rows + 8 * 128 + 17] ^= 0x40  # grid/M128, snapshot 1
    data[values + 8 * 2 + 7] ^= 0x40  # grid/M64's mass at the last output
    data[counts + 8 * (2 * 3 + 1) + 7] ^= 0x40  # grid/M256's clusters at t = 0.5: written as it ran
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["plot", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err and "tiny.h5" in err
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "grid/M128/densities, snapshot 1 (t = 0.5) is damaged" in out and "diagnostic mass" in out
    with io.RunFile.open(path, mode="r") as run:
        run.verify()
        for key, (times, states) in good.items():  # redone bit for bit
            again = run.job_state(key)
            assert np.array_equal(again[0], times) and np.array_equal(again[1], states)
            assert np.array_equal(run.diagnostics("mass")[key], mass[key])
            assert np.array_equal(run.diagnostics("clusters")[key], clusters[key])


def test_sigterm_keeps_what_was_stored_removes_the_lock_and_says_how_to_resume(tmp_path):
    """SIGTERM (SLURM at the time limit) killed a run silently and left its .lock file."""
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "long.toml"
    src.write_text(SMALL.replace("T = 1.0", "T = 40.0").replace("outputs = 3", "outputs = 400")
                   .replace("[64, 128, 256]", "[4096]"))  # fmt: skip
    path = tmp_path / "tiny.h5"
    cmd = [sys.executable, "-m", "vlasov_tf.cli", "run", str(src), "--out", str(tmp_path), "--solver", "grid"]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stored = 0
        deadline = time.monotonic() + 120
        while stored < 2 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
            if path.exists():
                with io.RunFile.open(path, mode="r") as run:
                    stored = run.job_info("grid/M4096")["n"]
        assert stored >= 2, "the run stored nothing past t = 0 in time"
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 143
    assert err.strip().splitlines()[-1] == (
        "vlasov-tf: terminated (SIGTERM); what was stored is kept: continue with --resume"
    )
    assert not io.lock_path(path).exists()
    with io.RunFile.open(path, mode="r") as run:
        run.verify()
        assert run.job_info("grid/M4096")["n"] >= stored and not run.is_complete("grid/M4096")


def test_run_case_makes_the_directory_it_is_given(tmp_path):
    """run_case(case, "newdir/x.h5") raised a traceback about the lock file; the CLI makes --out."""
    case = parse_case(SMALL.replace("[64, 128, 256]", "[64]"))
    path = run_case(case, tmp_path / "new" / "dir" / "x.h5", solvers=("grid",), diagnostics=False)
    with io.RunFile.open(path, mode="r") as run:
        assert run.is_complete("grid/M64")


def test_non_ascii_set_values_keep_their_run_files_apart(tmp_path, capsys):
    """A --set value with non-ASCII text was dropped from the run file's name: two such runs
    shared one file (the second was refused, or with --overwrite replaced the first)."""
    from vlasov_tf.cli import run_name

    src = tmp_path / "tiny.toml"
    src.write_text(SMALL.replace("[64, 128, 256]", "[64]"))
    for text in ("Straße", "Σ", "Δ"):  # the last two made one name
        assert main(["run", str(src), "--out", str(tmp_path), "--solver", "grid", "--no-diagnostics",
                     "--set", f'case.description="{text}"']) == 0  # fmt: skip
    names = sorted(p.name for p in tmp_path.glob("*.h5"))
    assert names == ["tiny-case.description-Strau00dfe.h5", "tiny-case.description-u0394.h5",
                     "tiny-case.description-u03a3.h5"]  # fmt: skip
    # Lists keep the names they had (json wrote their non-ASCII text as \uXXXX, whose '\' went).
    case = parse_case(SMALL, overrides={"particles.tokens": [50, 200], "case.description": "é"})
    assert run_name(case) == "tiny-particles.tokens-50_200-case.description-u00e9"


def test_grid_solver_on_a_euclidean_case_is_refused(tmp_path, capsys):
    """`--solver grid` on a case in R^d exited 0 with an empty run file."""
    src = tmp_path / "plane.toml"
    src.write_text(
        SMALL[: SMALL.index("[grid]")]
        .replace('geometry = "circle"', 'geometry = "euclidean"\nd = 2')
        .replace('family = "vmf_mixture"\nangles = [0.5, 3.0]\nkappas = [2.0, 3.0]\nproportions = [0.5, 0.5]',
                 'family = "gaussian"\nmean = [0.0, 0.0]\ncovariance = [[1.0, 0.0], [0.0, 1.0]]')
    )  # fmt: skip
    assert main(["run", str(src), "--out", str(tmp_path / "o"), "--solver", "grid"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the grid solver alone was asked for; the case has no grid (R^d" in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_a_collapsing_time_step_is_one_line(tmp_path, monkeypatch, capsys):
    """The grid's "time step fell below 1e-12 T" (FloatingPointError, from values a case allows) came
    as a traceback."""
    import vlasov_tf.runs.runner as runner

    def collapse(*args, **kwargs):
        raise FloatingPointError("the time step fell below 1e-12 T at t = 0")

    monkeypatch.setattr(runner, "solve_grid", collapse)
    src = tmp_path / "tiny.toml"
    src.write_text(SMALL)
    assert main(["run", str(src), "--out", str(tmp_path), "--solver", "grid"]) == 2
    assert capsys.readouterr().err == "vlasov-tf: error: the time step fell below 1e-12 T at t = 0\n"
