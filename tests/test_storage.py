"""The run file: round trip, plain-h5py reading while a run writes, resume semantics, crash safety
under SIGKILL, damaged files, XDMF companions that meshio (and VTK, when installed) read."""

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import meshio
import numpy as np
import pytest

import vlasov_tf
import vlasov_tf.runs.storage as vio
import vlasov_tf.runs.storage.run_file as vio_run_file
import vlasov_tf.runs.storage.xdmf as vio_xdmf
from vlasov_tf.geometry.mesh_files import sphere_mesh
from vlasov_tf.geometry.meshes import circle_mesh
from vlasov_tf.runs.storage import JobLayout, RunFile, RunFileBusy, RunFileError, lock_path, xdmf_path

CASE = '# a case\nname = "clustering"\n[model]\nbeta = 4.0  # inverse temperature, ß\n'
TIMES = 0.25 * np.arange(4)


@pytest.fixture(scope="module")
def sphere():
    return sphere_mesh(0)


def snapshot(i: int, shape: tuple[int, ...]) -> np.ndarray:
    """The i-th test snapshot: reproducible from i alone (the crash test's child makes the same)."""
    return np.random.default_rng(i).standard_normal(shape)


def layouts(sphere) -> list[JobLayout]:
    return [
        JobLayout("grid/sphere_L0", "grid", mesh=sphere, attrs={"level": 0, "cfl": 0.5, "scheme": "muscl"}),
        JobLayout("grid/M32", "grid", mesh=circle_mesh(32), attrs={"M": 32}),
        JobLayout(
            "particles/N50_L10",
            "particles",
            tokens=50,
            d=3,
            attrs={"N": 50, "L": 10, "adaptive": False, "seeds": [1, 2]},
        ),
        JobLayout("particles/circle/N20", "particles", tokens=20, d=2, attrs={"N": 20}),
        JobLayout("particles/empty", "particles", tokens=3, d=3),
    ]


def create(path: Path, sphere, **kw) -> RunFile:
    kw.setdefault("diagnostics", ["mass", "w1_to_grid/sphere_L0"])
    return RunFile.create(path, CASE, "clustering", jobs=layouts(sphere), times=TIMES, **kw)


def fill_run(path: Path, sphere, *, n: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """n snapshots of the first four jobs; the first and third finished. key -> (times, states)."""
    rng = np.random.default_rng(7)
    w3, w2 = rng.random(50), rng.random(20)
    stored = {}
    with create(path, sphere) as rf:
        for job in layouts(sphere)[:4]:
            extra = {"mesh": job.mesh} if job.kind == "grid" else {"weights": w3 if job.d == 3 else w2}
            rf.start_job(job.key, job.kind, **extra, **job.attrs)
            states = np.stack([snapshot(100 * len(job.key) + i, job.state_shape) for i in range(n)])
            for t, s in zip(TIMES[:n], states, strict=True):
                rf.append(job.key, t, s)
                rf.add_diagnostic("mass", job.key, t, float(s.sum()))
            stored[job.key] = (TIMES[:n], states)
        rf.add_diagnostics([("w1_to_grid/sphere_L0", "particles/N50_L10", t, 0.1 + t) for t in (0.0, 0.25)])
        rf.finish_job("grid/sphere_L0")
        rf.finish_job("particles/N50_L10")
    stored["weights"] = (w3, w2)
    return stored


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip(tmp_path, sphere):
    path = tmp_path / "run.h5"
    stored = fill_run(path, sphere)
    with RunFile.open(path, mode="r") as rf:
        assert rf.jobs() == [job.key for job in layouts(sphere)]
        assert rf.case_text == CASE and rf.case_name == "clustering"
        assert rf.version == vlasov_tf.__version__ and np.array_equal(rf.times, TIMES)
        for key in rf.jobs()[:4]:
            times, states = rf.job_state(key)
            assert np.array_equal(times, stored[key][0]) and np.array_equal(states, stored[key][1])
            t, last = rf.last_state(key)
            assert t == times[-1] and np.array_equal(last, states[-1])
        times, states = rf.job_state("particles/empty")
        assert times.shape == (0,) and states.shape == (0, 3, 3) and rf.last_state("particles/empty") is None
        assert rf.is_complete("grid/sphere_L0") and rf.is_complete("particles/N50_L10")
        assert not rf.is_complete("grid/M32") and not rf.is_complete("no/such")
        assert rf.job_state("no/such") is None
        assert np.array_equal(rf.weights("particles/N50_L10"), stored["weights"][0])
        info = rf.job_info("particles/N50_L10")
        assert info["attrs"] == {"N": 50, "L": 10, "adaptive": False, "seeds": [1, 2]}
        assert type(info["attrs"]["adaptive"]) is bool and (info["n"], info["d"]) == (3, 3)
        assert info["started"] <= info["finished"] and rf.job_info("grid/M32")["finished"] is None
        assert rf.job_info("grid/sphere_L0")["attrs"] == {"level": 0, "cfl": 0.5, "scheme": "muscl"}
        assert rf.diagnostic_names() == ["mass", "w1_to_grid/sphere_L0"]
        mass = rf.diagnostics("mass")
        assert list(mass) == rf.jobs()[:4]
        for key, rows in mass.items():
            assert np.array_equal(rows[:, 0], stored[key][0])
            assert np.array_equal(rows[:, 1], [s.sum() for s in stored[key][1]])
        w1 = rf.diagnostics("w1_to_grid/sphere_L0")
        assert list(w1) == ["particles/N50_L10"] and np.array_equal(
            w1["particles/N50_L10"], [[0, 0.1], [0.25, 0.35]]
        )
        assert rf.diagnostics("no such") == {}
        rf.verify()
    # The layout promised to other tools, read with h5py alone.
    with h5py.File(path, "r") as f:
        assert f["case"].attrs["text"] == CASE and f["case"].attrs["version"] == vlasov_tf.__version__
        g = f["jobs/grid/sphere_L0"]
        assert g.attrs["kind"] == "grid" and np.isfinite(g["clock"][1]) and g.attrs["level"] == 0
        assert g["densities"].shape == (4, sphere.n_cells) and np.isnan(g["densities"][3]).all()
        k = np.isfinite(g["times"][()]).sum()
        assert k == 3 and np.array_equal(g["densities"][:k], stored["grid/sphere_L0"][1])
        assert np.array_equal(g["step/1"][()], stored["grid/sphere_L0"][1][1])  # the XDMF view
        assert np.array_equal(g["mesh/cell_vertices"][()], sphere.cell_vertices)
        p = f["jobs/particles/N50_L10"]
        assert p.attrs["kind"] == "particles" and p["positions"].shape == (4, 50, 3)
        assert p["weights"].shape == (50,)
        mass = f["diagnostics/mass"]
        assert list(mass.attrs["jobs"]) == [job.key for job in layouts(sphere)]
        assert mass[0, 2] == stored["grid/sphere_L0"][1][2].sum() and np.isnan(mass[0, 3])


def test_plain_h5py_reads_while_a_run_writes_and_reading_never_writes(tmp_path, sphere):
    """Snapshots sat in a journal until the run finished (plain h5py saw none); now each is in
    the .h5 when append returns, for h5py as for RunFile readers, and opening never changes it."""
    path = tmp_path / "run.h5"
    rf = create(path, sphere)
    rf.start_job("grid/M32", "grid", mesh=circle_mesh(32), M=32)
    for i in range(3):
        rf.append("grid/M32", TIMES[i], snapshot(i, (32,)))
        with h5py.File(path, "r") as f:  # plain h5py, the writer holding the file
            g = f["jobs/grid/M32"]
            assert np.isfinite(g["times"][()]).sum() == i + 1
            assert np.array_equal(g["densities"][i], snapshot(i, (32,)))
        with RunFile.open(path, mode="r") as reader:
            assert len(reader.job_state("grid/M32")[0]) == i + 1
    before = path.read_bytes()
    with RunFile.open(path, mode="r") as reader:
        reader.verify()
    with pytest.raises(OSError, match="lock"):
        h5py.File(path, "r+")  # an HDF5 writer is kept out while the run writes
    rf.close()
    with RunFile.open(path) as writer:
        assert writer.job_info("grid/M32")["n"] == 3
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["run.h5", "run.xdmf"]  # the lock went with close
    assert os.listdir(tmp_path / "run.xdmf") == ["grid.M32.xdmf"]


def test_threads_append_to_their_jobs(tmp_path):
    ring = circle_mesh(16)
    jobs = [JobLayout(f"grid/t{j}", "grid", mesh=ring) for j in range(4)]
    with RunFile.create(tmp_path / "run.h5", CASE, "c", jobs=jobs, times=np.arange(20.0), sync=False) as rf:
        for job in jobs:
            rf.start_job(job.key, "grid", mesh=ring)

        def work(j: int) -> None:
            for i in range(20):
                rf.append(f"grid/t{j}", i, np.full(16, 100.0 * j + i))

        threads = [threading.Thread(target=work, args=(j,)) for j in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    with RunFile.open(tmp_path / "run.h5", mode="r") as rf:
        for j in range(4):
            assert np.array_equal(rf.job_state(f"grid/t{j}")[1][:, 0], 100.0 * j + np.arange(20))


# ------------------------------------------------------------------------------------------ resume


def test_resume_semantics(tmp_path, sphere):
    path = tmp_path / "run.h5"
    w = np.linspace(0.1, 1.0, 50)
    attrs = {"N": 50, "L": 10, "adaptive": False, "seeds": [1, 2]}
    with create(path, sphere) as rf:
        rf.start_job("grid/sphere_L0", "grid", mesh=sphere, level=0, cfl=0.5, scheme="muscl")
        rf.start_job("particles/N50_L10", "particles", weights=w, **attrs)
        for i in range(3):
            rf.append("particles/N50_L10", TIMES[i], snapshot(i, (50, 3)))
            rf.append("grid/sphere_L0", TIMES[i], snapshot(i, (sphere.n_cells,)))
        rf.finish_job("grid/sphere_L0")

    with RunFile.open(path) as rf:
        rf.start_job("grid/sphere_L0", "grid", mesh=sphere, level=0, cfl=0.5, scheme="muscl")  # a check
        rf.start_job("particles/N50_L10", "particles", weights=w.copy(), **attrs)
        assert rf.is_complete("grid/sphere_L0") and not rf.is_complete("particles/N50_L10")
        times, states = rf.job_state("particles/N50_L10")
        assert np.array_equal(times, TIMES[:3])
        assert np.array_equal(states, [snapshot(i, (50, 3)) for i in range(3)])

        with pytest.raises(ValueError, match=r"attrs \(L: 10 -> 9\)"):
            rf.start_job("particles/N50_L10", "particles", weights=w, **{**attrs, "L": 9})
        with pytest.raises(ValueError, match=r"attrs.*extra"):
            rf.start_job("particles/N50_L10", "particles", weights=w, **attrs, extra=1)
        with pytest.raises(ValueError, match="weights"):
            rf.start_job("particles/N50_L10", "particles", weights=w[::-1], **attrs)
        with pytest.raises(ValueError, match="kind"):
            rf.start_job("particles/N50_L10", "grid", mesh=sphere)
        with pytest.raises(ValueError, match="mesh"):
            rf.start_job("grid/sphere_L0", "grid", mesh=sphere_mesh(1), level=0, cfl=0.5, scheme="muscl")
        with pytest.raises(KeyError, match="no job 'grid/other'"):
            rf.start_job("grid/other", "grid", mesh=sphere)

        # A restarted solver may report its initial state again: an identical repeat is a no-op.
        rf.append("particles/N50_L10", times[-1], states[-1])
        with pytest.raises(ValueError, match="does not follow"):
            rf.append("particles/N50_L10", times[-1], states[-1] + 1e-9)
        with pytest.raises(ValueError, match="does not follow"):
            rf.append("particles/N50_L10", 0.6, states[-1])  # not the next output time
        with pytest.raises(ValueError, match=r"positions must be \(50, 3\)"):
            rf.append("particles/N50_L10", TIMES[3], np.zeros((50, 2)))
        with pytest.raises(ValueError, match="complete"):
            rf.append("grid/sphere_L0", TIMES[3], np.zeros(sphere.n_cells))
        with pytest.raises(ValueError, match="not one of the run's output times"):
            rf.add_diagnostic("mass", "grid/M32", 0.3, 1.0)
        with pytest.raises(ValueError, match="no diagnostic 'energy'"):
            rf.add_diagnostic("energy", "grid/M32", 0.25, 1.0)
        rf.append("particles/N50_L10", TIMES[3], snapshot(3, (50, 3)))
        with pytest.raises(ValueError, match="no output time left"):
            rf.append("particles/N50_L10", 1.0, snapshot(4, (50, 3)))
        rf.finish_job("particles/N50_L10")

    with RunFile.open(path, mode="r") as rf:
        times, states = rf.job_state("particles/N50_L10")
        assert np.array_equal(times, TIMES) and np.array_equal(states[3], snapshot(3, (50, 3)))
        assert rf.is_complete("particles/N50_L10")
        with pytest.raises(ValueError, match="read-only"):
            rf.append("particles/N50_L10", 1.0, states[0])


def test_create_and_open_guards(tmp_path, sphere):
    path = tmp_path / "run.h5"
    with pytest.raises(FileNotFoundError, match=r"run.h5"):
        RunFile.open(path)
    rf = create(path, sphere)
    with pytest.raises(FileExistsError, match="overwrite"):
        create(path, sphere)
    with pytest.raises(RunFileBusy, match="another process"):  # one writer at a time
        RunFile.open(path)
    with pytest.raises(RunFileBusy, match="another process"):
        create(path, sphere, overwrite=True)
    with RunFile.open(path, mode="r") as reader:
        assert reader.jobs()[0] == "grid/sphere_L0"
    rf.close()
    ring = circle_mesh(4)

    def bad(jobs, times=TIMES, **kw):
        return RunFile.create(tmp_path / "bad.h5", CASE, "c", jobs=jobs, times=times, **kw)

    for key in ("", "grid/", "/grid", "grid//M4", "grid/../x", "grid/.x", "grid/M 4"):
        with pytest.raises(ValueError, match="job key"):
            bad([JobLayout(key, "grid", mesh=ring)])
    with pytest.raises(ValueError, match="nests"):
        bad([JobLayout("grid/M4", "grid", mesh=ring), JobLayout("grid/M4/b", "grid", mesh=ring)])
    with pytest.raises(ValueError, match="repeats"):
        bad([JobLayout("grid/M4", "grid", mesh=ring), JobLayout("grid/M4", "grid", mesh=ring)])
    with pytest.raises(ValueError, match="reserved"):
        bad([JobLayout("grid/M8", "grid", mesh=ring, attrs={"job_index": 1})])
    with pytest.raises(TypeError, match="attr"):
        bad([JobLayout("grid/M8", "grid", mesh=ring, attrs={"opts": {"a": 1}})])
    with pytest.raises(ValueError, match="needs tokens"):
        bad([JobLayout("particles/N", "particles", tokens=0, d=3)])
    with pytest.raises(ValueError, match="strictly increasing"):
        bad([], times=[0.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="diagnostic names repeat"):
        bad([], diagnostics=["mass", "mass"])
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]  # the failed creations made nothing
    with RunFile.create(path, "other", "fresh", jobs=[], times=[0.0], overwrite=True) as rf:
        assert rf.jobs() == [] and rf.case_name == "fresh"


def test_failed_creation_leaves_nothing_and_keeps_the_old_run(tmp_path, sphere, monkeypatch):
    path = tmp_path / "run.h5"
    fill_run(path, sphere)
    before = path.read_bytes(), sorted(os.listdir(tmp_path))
    write = vio_run_file.write_layout

    def full_disk(tmp, *args):  # the new file written, then the disk fills up
        write(tmp, *args)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vio_run_file, "write_layout", full_disk)
    with pytest.raises(OSError, match="No space"):
        create(path, sphere, overwrite=True)
    assert (path.read_bytes(), sorted(os.listdir(tmp_path))) == before  # no temporary, no lock


# ------------------------------------------------------------------------------------------ crash safety

CHILD = """
import importlib.util, os, sys, time
import numpy as np

# Load vlasov_tf/runs/storage/ alone (its modules import each other relatively): importing the
# package (scipy, ...) would cost ~1 s per child.
init = sys.argv[2]
spec = importlib.util.spec_from_file_location(
    "vtf_io", init, submodule_search_locations=[os.path.dirname(init)]
)
vio = sys.modules["vtf_io"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vio)

rf = vio.RunFile.open(sys.argv[1])
n = len(rf.job_state("particles/N")[0])
print("start", n, flush=True)
for i in range(n, 10**6):
    rf.append("particles/N", 0.5 * i, np.random.default_rng(i).standard_normal((500, 3)))
    rf.add_diagnostic("energy", "particles/N", 0.5 * i, float(i))
    print(i, flush=True)  # acknowledged: append and add_diagnostic returned
    time.sleep(0.002 * (i % 3))  # without a pause the 2000 outputs are written within a round
"""


def check_prefix(path: Path, acknowledged: set[int]) -> int:
    """Read the run after a kill: a prefix of the snapshots, each intact, the acknowledged ones included."""
    with RunFile.open(path, mode="r") as rf:
        times, states = rf.job_state("particles/N")
        energy = rf.diagnostics("energy").get("particles/N", np.zeros((0, 2)))
    n = len(times)
    assert n >= max(acknowledged, default=-1) + 1
    assert np.array_equal(times, 0.5 * np.arange(n))
    for i in range(n):
        assert np.array_equal(states[i], snapshot(i, (500, 3))), f"snapshot {i} differs"
    assert np.array_equal(energy[:, 1], energy[:, 0] / 0.5)  # each value intact
    # Not every snapshot has its value: a kill between append and add_diagnostic leaves it out.
    assert acknowledged <= set(energy[:, 1].astype(int).tolist())
    with h5py.File(path, "r") as f:  # and plain h5py opens the killed run
        assert np.isfinite(f["jobs/particles/N/times"][()]).sum() == n
    return n


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path, rng):
    path = tmp_path / "run.h5"
    jobs = [JobLayout("particles/N", "particles", tokens=500, d=3)]
    with RunFile.create(
        path, CASE, "crash", jobs=jobs, times=0.5 * np.arange(2000), diagnostics=["energy"]
    ) as rf:
        rf.start_job("particles/N", "particles", weights=np.ones(500))
    acknowledged: set[int] = set()
    n, resumed_from = 0, []
    for round in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), vio.__file__],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: list[str] = []
        try:
            if round % 3 == 2:
                time.sleep(rng.uniform(0.15, 0.35))  # around start-up: kills may land in open()
            else:
                # Three acknowledged snapshots first, so that progress does not depend on how fast
                # the child starts on a loaded machine; then a random moment.
                seen = [proc.stdout.readline() for _ in range(4)]
                assert seen[0].startswith("start")
                time.sleep(rng.uniform(0.0, 0.1))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        lines = [line.split() for line in [*seen, *out.splitlines()] if line.strip()]
        resumed_from += [int(w[1]) for w in lines if w[0] == "start"]
        acknowledged |= {int(w[0]) for w in lines if w[0] != "start"}
        n = check_prefix(path, acknowledged)
    assert resumed_from and all(a <= b for a, b in itertools.pairwise(resumed_from))
    assert n > 10  # the rounds did write
    with RunFile.open(path) as rf:  # resume after the last kill, then finish cleanly
        assert len(rf.job_state("particles/N")[0]) == n
        rf.finish_job("particles/N")
    assert sorted(os.listdir(tmp_path)) == ["run.h5", "run.xdmf"]  # no lock, no temporaries
    assert os.listdir(tmp_path / "run.xdmf") == ["particles.N.xdmf"]


def test_half_written_rows_are_absent_and_damaged_ones_raise(tmp_path):
    """What a kill inside append leaves (row bytes written, the time not yet): the row is not
    there, and the next append writes it. A flipped byte in a stored row fails its CRC."""
    path = tmp_path / "run.h5"
    jobs = [JobLayout("grid/M64", "grid", mesh=circle_mesh(64))]
    with RunFile.create(path, CASE, "c", jobs=jobs, times=np.arange(5.0)) as rf:
        rf.start_job("grid/M64", "grid", mesh=circle_mesh(64))
        for i in range(3):
            rf.append("grid/M64", i, snapshot(i, (64,)))
    with h5py.File(path, "r") as f:
        rows, times = f["jobs/grid/M64/densities"].id.get_offset(), f["jobs/grid/M64/times"].id.get_offset()
    with open(path, "r+b") as f:  # snapshot 3's bytes, without its commit mark
        f.seek(rows + 3 * 64 * 8)
        f.write(snapshot(99, (64,)).tobytes())
    with RunFile.open(path) as rf:
        assert len(rf.job_state("grid/M64")[0]) == 3
        rf.append("grid/M64", 3, snapshot(3, (64,)))
    with RunFile.open(path, mode="r") as rf:
        assert np.array_equal(rf.job_state("grid/M64")[1], [snapshot(i, (64,)) for i in range(4)])

    data = bytearray(path.read_bytes())
    data[rows + 2 * 64 * 8 + 100] ^= 0xFF
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(bytes(data))
    with RunFile.open(corrupt, mode="r") as rf:
        with pytest.raises(
            RunFileError, match=r"corrupt.h5: dataset /jobs/grid/M64/densities, snapshot 2 .*damaged"
        ):
            rf.verify()
    data = bytearray(path.read_bytes())
    data[times + 8 * 1 : times + 8 * 2] = np.array(np.nan).tobytes()  # a hole before stored rows
    holed = tmp_path / "holed.h5"
    holed.write_bytes(bytes(data))
    with pytest.raises(
        RunFileError,
        match=r"holed.h5: dataset /jobs/grid/M64/times \(snapshot 2 stored after a missing one\)",
    ):
        RunFile.open(holed, mode="r")


def test_damaged_or_foreign_files_raise_naming_the_file(tmp_path):
    path = tmp_path / "run.h5"
    jobs = [JobLayout("grid/M4096", "grid", mesh=circle_mesh(4096))]
    RunFile.create(path, CASE, "c", jobs=jobs, times=np.arange(4.0)).close()
    data = path.read_bytes()

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFileError, match=r"truncated.h5"):
        RunFile.open(truncated, mode="r")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file" * 100)
    with pytest.raises(RunFileError, match=r"garbage.h5.*not a readable HDF5"):
        RunFile.open(garbage)
    assert not lock_path(garbage).exists()  # a failed open leaves nothing behind
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(RunFileError, match=r"foreign.h5.*not a vlasov_tf run file"):
        RunFile.open(foreign, mode="r")
    older = tmp_path / "older.h5"
    with h5py.File(older, "w") as f:
        f.attrs.update({"format": vio.FORMAT, "format_version": 1})
    with pytest.raises(RunFileError, match=r"older.h5: format version 1, this code reads 2"):
        RunFile.open(older, mode="r")


# ------------------------------------------------------------------------------------------ XDMF


def test_xdmf_companions_open_in_meshio_at_every_snapshot(tmp_path, sphere):
    """The .xdmf was written at the end only, and meshio could not read it (several temporal
    collections, hyperslabs). Now one per job, rewritten with each snapshot, of whole datasets."""
    path = tmp_path / "run.h5"
    stored = fill_run(path, sphere)
    assert not xdmf_path(path, "particles/empty").exists()  # no snapshots: no companion
    for key in list(stored)[:4]:
        times, states = stored[key]
        with meshio.xdmf.TimeSeriesReader(xdmf_path(path, key)) as reader:
            points, cells = reader.read_points_cells()
            assert reader.num_steps == len(times)
            for i in range(reader.num_steps):
                t, point_data, cell_data = reader.read_data(i)
                assert t == times[i]
                if key.startswith("grid/"):
                    assert np.array_equal(cell_data["density"][0], states[i])
                else:
                    assert np.array_equal(point_data["position"], states[i])
                    assert np.array_equal(
                        point_data["weight"], stored["weights"][0 if key.endswith("L10") else 1]
                    )
        if key == "grid/sphere_L0":
            assert cells[0].type == "triangle" and np.array_equal(cells[0].data, sphere.cell_vertices)
            assert np.array_equal(points, sphere.vertices)
        elif key == "grid/M32":  # the circle: a closed polyline of its arcs, in the plane
            assert cells[0].type == "line" and points.shape == (32, 2) and len(cells[0].data) == 32


def test_xdmf_companions_open_in_vtk(tmp_path, sphere):
    """VTK's XDMF reader is the one behind ParaView's; a large optional dependency."""
    pytest.importorskip("vtkmodules.vtkIOXdmf2")
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline
    from vtkmodules.vtkIOXdmf2 import vtkXdmfReader

    path = tmp_path / "run.h5"
    stored = fill_run(path, sphere)
    for key in list(stored)[:4]:
        times, states = stored[key]
        reader = vtkXdmfReader()
        reader.SetFileName(str(xdmf_path(path, key)))
        reader.UpdateInformation()
        steps = reader.GetOutputInformation(0).Get(vtkStreamingDemandDrivenPipeline.TIME_STEPS())
        assert list(steps) == times.tolist()
        for i, t in enumerate(steps):
            reader.UpdateTimeStep(t)
            out = reader.GetOutputDataObject(0)
            if key.startswith("grid/"):
                assert np.array_equal(vtk_to_numpy(out.GetCellData().GetArray("density")), states[i])
            else:
                d = states.shape[2]
                assert np.array_equal(vtk_to_numpy(out.GetPoints().GetData())[:, :d], states[i])


# ------------------------------------------------------------------------------------------ review fixes


def test_torn_weights_do_not_block_a_resume(tmp_path):
    """A kill inside start_job's weights write left them half-written; the resume compared and
    refused ("another weights") for good. The start time now commits them."""
    path = tmp_path / "run.h5"
    jobs = [JobLayout("particles/N", "particles", tokens=64, d=3)]
    RunFile.create(path, CASE, "c", jobs=jobs, times=TIMES).close()
    with h5py.File(path, "r") as f:
        offset = f["jobs/particles/N/weights"].id.get_offset()
    with open(path, "r+b") as f:  # the first half of the weights, then the kill
        f.seek(offset)
        f.write(np.full(32, 0.5).tobytes())
    w = np.linspace(1.0, 2.0, 64)
    with RunFile.open(path) as rf:
        rf.start_job("particles/N", "particles", weights=w)
        assert np.array_equal(rf.weights("particles/N"), w)
        with pytest.raises(ValueError, match="another weights"):  # once committed, compared
            rf.start_job("particles/N", "particles", weights=w[::-1])


def test_non_finite_times_are_refused(tmp_path, sphere):
    """append at t = nan passed the time check and made the whole file unreadable."""
    with create(tmp_path / "run.h5", sphere) as rf:
        rf.start_job("grid/M32", "grid", mesh=circle_mesh(32), M=32)
        for bad in (np.nan, np.inf):
            with pytest.raises(ValueError, match="must be finite"):
                rf.append("grid/M32", bad, np.zeros(32))
        rf.append("grid/M32", 0.0, np.zeros(32))
    with RunFile.open(tmp_path / "run.h5", mode="r") as rf:
        assert len(rf.job_state("grid/M32")[0]) == 1


def test_create_looks_again_under_the_lock(tmp_path, sphere, monkeypatch):
    """Another process could make the run between create's existence check and its lock: the
    new run replaced it without overwrite."""
    path = tmp_path / "run.h5"
    lock = vio_run_file.lock_writer

    def meanwhile(p):
        monkeypatch.setattr(vio_run_file, "lock_writer", lock)
        fill_run(path, sphere)  # the other process: a run with snapshots, closed
        return lock(p)

    monkeypatch.setattr(vio_run_file, "lock_writer", meanwhile)
    with pytest.raises(FileExistsError, match="exists"):
        create(path, sphere)
    with RunFile.open(path, mode="r") as rf:
        assert len(rf.job_state("grid/M32")[0]) == 3


def test_a_close_in_another_thread_stops_waiting_writes(tmp_path, sphere):
    """A write that checked the file open, then waited for the lock while another thread closed
    it, wrote through a descriptor number the process had reused for another file."""
    rf = create(tmp_path / "run.h5", sphere)
    rf.start_job("grid/M32", "grid", mesh=circle_mesh(32), M=32)
    errors = []

    def write():
        try:
            rf.add_diagnostic("mass", "grid/M32", 0.0, 1.0)
        except ValueError as err:
            errors.append(str(err))

    other = tmp_path / "other.bin"
    other.write_bytes(b"\0" * (1 << 20))
    with rf._lock:
        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(0.2)  # it passed the open check and waits for the lock
        rf.close()
        fds = [os.open(other, os.O_RDWR) for _ in range(2)]  # the numbers of the file and its lock
    thread.join()
    for fd in fds:
        os.close(fd)
    assert errors and "closed" in errors[0]
    assert other.read_bytes() == b"\0" * (1 << 20)


def test_xdmf_rewrites_are_throttled_and_complete(tmp_path, monkeypatch):
    """Each append rewrote the whole XDMF: quadratic in the outputs (8000 took 99 s). Now at most
    every XDMF_INTERVAL, and always at a job's last output, finish and close."""
    writes = []
    write_text = vio_xdmf.write_text
    monkeypatch.setattr(vio_xdmf, "write_text", lambda p, text: (writes.append(p), write_text(p, text)))
    monkeypatch.setattr(vio_xdmf, "XDMF_INTERVAL", 3600.0)
    jobs = [JobLayout(f"grid/M{m}", "grid", mesh=circle_mesh(m)) for m in (8, 4)]
    path = tmp_path / "run.h5"
    with RunFile.create(path, CASE, "c", jobs=jobs, times=np.arange(500.0), sync=False) as rf:
        rf.start_job("grid/M8", "grid", mesh=circle_mesh(8))
        rf.start_job("grid/M4", "grid", mesh=circle_mesh(4))
        for i in range(500):
            rf.append("grid/M8", i, np.full(8, i))
        for i in range(100):
            rf.append("grid/M4", i, np.full(4, i))
    # M8 at its last output, M4 (which stopped early) at close
    assert [p.name for p in writes] == ["grid.M8.xdmf", "grid.M4.xdmf"]
    for key, n in (("grid/M8", 500), ("grid/M4", 100)):
        with meshio.xdmf.TimeSeriesReader(xdmf_path(path, key)) as reader:
            assert reader.num_steps == n


def test_a_run_is_one_file_and_one_directory_and_old_runs_resume(tmp_path):
    """`vlasov-tf study` left a file per job beside the run (42 files in out/). The companions are
    now in <run>.xdmf/; a run made before (companions beside the .h5) resumes into the new layout,
    and a replacement or a discard leaves none of either."""
    jobs = [JobLayout(f"grid/M{m}", "grid", mesh=circle_mesh(m)) for m in (8, 16)]
    jobs.append(JobLayout("particles/N", "particles", tokens=5, d=2))
    path = tmp_path / "run.h5"
    rng = np.random.default_rng(0)
    with RunFile.create(path, CASE, "c", jobs=jobs, times=TIMES, sync=False) as rf:
        for m in (8, 16):
            rf.start_job(f"grid/M{m}", "grid", mesh=circle_mesh(m))
            rf.append(f"grid/M{m}", 0.0, np.ones(m))
        rf.start_job("particles/N", "particles", weights=np.full(5, 0.2))
        rf.append("particles/N", 0.0, rng.standard_normal((5, 2)))
    assert sorted(os.listdir(tmp_path)) == ["run.h5", "run.xdmf"]
    assert sorted(os.listdir(tmp_path / "run.xdmf")) == ["grid.M16.xdmf", "grid.M8.xdmf", "particles.N.xdmf"]
    # The layout of before: move the companions beside the run file, then resume.
    for key in ("grid/M8", "grid/M16", "particles/N"):
        xdmf_path(path, key).rename(vio_xdmf.legacy_xdmf_path(path, key))
    (tmp_path / "run.xdmf").rmdir()
    assert len(os.listdir(tmp_path)) == 4
    with RunFile.open(path) as rf:
        rf.append("grid/M8", 0.25, np.full(8, 2.0))
    assert sorted(os.listdir(tmp_path)) == ["run.h5", "run.xdmf"]
    for key, n in (("grid/M8", 2), ("grid/M16", 1), ("particles/N", 1)):
        with meshio.xdmf.TimeSeriesReader(xdmf_path(path, key)) as reader:
            reader.read_points_cells()
            assert reader.num_steps == n
            t, _, cell_data = reader.read_data(n - 1)
            if key == "grid/M8":
                assert t == 0.25 and np.array_equal(cell_data["density"][0], np.full(8, 2.0))
    # A replacement, once it stored past its start, removes the companions of the run it replaces,
    # in either layout; discarded, it leaves nothing.
    vio_xdmf.legacy_xdmf_path(path, "grid/M16").write_text("old")
    rf = RunFile.create(path, CASE, "c", jobs=jobs, times=TIMES, overwrite=True, sync=False)
    rf.start_job("grid/M8", "grid", mesh=circle_mesh(8))
    for t in TIMES[:2]:
        rf.append("grid/M8", t, np.ones(8))
    assert not rf.replacing and not vio_xdmf.legacy_xdmf_path(path, "grid/M16").exists()
    assert sorted(os.listdir(tmp_path)) == ["run.h5", "run.h5.lock", "run.xdmf"]  # held while open
    rf.discard()
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------ overwrite


def test_overwrite_keeps_the_old_run_until_the_new_one_stored_past_its_start(tmp_path, sphere):
    """``overwrite`` replaced the run file at creation: a new run that failed (or was interrupted)
    before its second output left nothing of the old run, or only t = 0."""
    path = tmp_path / "run.h5"
    fill_run(path, sphere)
    old = path.read_bytes()
    companions = sorted(p.name for p in tmp_path.glob("*.xdmf"))
    job = "particles/N50_L10"
    with create(path, sphere, overwrite=True) as rf:  # a new run that stops after its start
        rf.start_job(job, "particles", weights=np.ones(50), N=50, L=10, adaptive=False, seeds=[1, 2])
        rf.append(job, TIMES[0], snapshot(0, (50, 3)))
        assert rf.replacing and path.read_bytes() == old  # readers still see the old run
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.glob("*.xdmf")) == companions
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary
    with create(path, sphere, overwrite=True) as rf:
        rf.start_job(job, "particles", weights=np.ones(50), N=50, L=10, adaptive=False, seeds=[1, 2])
        rf.append(job, TIMES[0], snapshot(0, (50, 3)))
        assert path.read_bytes() == old
        rf.append(job, TIMES[1], snapshot(1, (50, 3)))  # past t0: the new run takes the name
        assert not rf.replacing and path.read_bytes() != old
        rf.append(job, TIMES[2], snapshot(2, (50, 3)))
    with RunFile.open(path, mode="r") as rf:
        times, states = rf.job_state(job)
        assert np.array_equal(times, TIMES[:3]) and np.array_equal(states[2], snapshot(2, (50, 3)))
        assert rf.job_state("grid/M32")[0].size == 0  # nothing of the old run's jobs
    with meshio.xdmf.TimeSeriesReader(xdmf_path(path, job)) as reader:
        assert reader.num_steps == 3
    assert not lock_path(path).exists()


# ------------------------------------------------------------------------------------------ checksums


def _offset(path: Path, name: str) -> int:
    with h5py.File(path, "r") as f:
        ds = f[name]
        return ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset


def _damaged_copy(path: Path, name: str, byte: int, out: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[_offset(path, name) + byte] ^= 0x40
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(
    ("dataset", "byte", "read", "named"),
    [
        (
            "jobs/particles/N50_L10/positions",
            8 * 150 + 3,
            lambda rf: rf.job_state("particles/N50_L10"),
            r"dataset /jobs/particles/N50_L10/positions, snapshot 1 \(t = 0.25\)",
        ),
        (
            "jobs/grid/M32/times",
            8 + 1,
            lambda rf: rf.snapshot("grid/M32", 1),  # 0.25 -> 0.2500000x
            r"dataset /jobs/grid/M32/densities, snapshot 1",
        ),
        (
            "jobs/particles/N50_L10/weights",
            8 * 7 + 7,
            lambda rf: rf.weights("particles/N50_L10"),
            r"dataset /jobs/particles/N50_L10/weights",
        ),
        ("jobs/grid/M32/clock", 8 + 7, lambda rf: rf.is_complete("grid/M32"), r"/jobs/grid/M32/clock"),
        (
            "diagnostics/mass",
            8 + 7,
            lambda rf: rf.diagnostics("mass"),
            r"diagnostic mass of job grid/sphere_L0",
        ),
        (
            "jobs/grid/M32/tables/clusters/values",
            5,
            lambda rf: rf.table("grid/M32", "clusters"),
            r"dataset /jobs/grid/M32/tables/clusters, row 0",
        ),
        ("meshes", 0, lambda rf: None, r"mesh /meshes/circle_C32_"),
        ("times", 8 + 6, lambda rf: None, r"dataset /times is damaged"),
    ],
)
def test_every_stored_array_is_checked_when_read(tmp_path, sphere, dataset, byte, read, named):
    """Only the snapshots carried a CRC: a mass of -4.0, a token weight of -440, a mesh vertex at
    x = -4, a time of 1.0000009 were read (and plotted) without a word."""
    path = tmp_path / "run.h5"
    fill_run(path, sphere)
    ring = JobLayout("grid/M32", "grid", mesh=circle_mesh(32), tables={"clusters": (2, 3)})
    with RunFile.create(tmp_path / "t.h5", CASE, "c", jobs=[ring], times=TIMES) as rf:
        rf.start_job("grid/M32", "grid", mesh=circle_mesh(32))
        for i, t in enumerate(TIMES[:2]):
            rf.add_row("grid/M32", "clusters", t, snapshot(i, (2, 3)))
            rf.append("grid/M32", t, snapshot(i, (32,)))
        rf.finish_job("grid/M32")
    source = tmp_path / ("t.h5" if "M32" in dataset else "run.h5")
    if dataset == "meshes":
        with h5py.File(source, "r") as f:
            dataset = f"meshes/{next(k for k in f['meshes'] if k.startswith('circle'))}/vertices"
    bad = _damaged_copy(source, dataset, byte, tmp_path / "bad.h5")
    with pytest.raises(RunFileError, match=named) as err:
        with RunFile.open(bad, mode="r") as rf:
            read(rf)
    assert "\n" not in str(err.value) and "bad.h5" in str(err.value) and "damaged" in str(err.value)
    with RunFile.open(source, mode="r") as rf:  # the undamaged file reads
        read(rf)
        rf.verify()


def test_a_damaged_vertex_id_is_caught_by_hdf5_itself(tmp_path, sphere):
    """The arrays HDF5 writes once carry its Fletcher-32: any HDF5 reader (ParaView's too) checks it."""
    path = tmp_path / "run.h5"
    fill_run(path, sphere)
    bad = _damaged_copy(path, "jobs/particles/N50_L10/vertex_ids", 8 * 5, tmp_path / "bad.h5")
    with h5py.File(bad, "r") as f, pytest.raises(OSError, match="filter returned failure"):
        f["jobs/particles/N50_L10/vertex_ids"][()]


def test_redo_damaged_resets_what_fails_its_checksum(tmp_path, sphere):
    path = tmp_path / "run.h5"
    stored = fill_run(path, sphere)
    bad = _damaged_copy(path, "jobs/particles/N50_L10/positions", 8 * 150 + 3, tmp_path / "bad.h5")
    data = bytearray(bad.read_bytes())
    data[_offset(bad, "diagnostics/mass") + 8 * 4 + 7] ^= 0x40  # grid/M32's mass at t = 0
    bad.write_bytes(bytes(data))
    with RunFile.open(bad) as rf:
        lines = rf.redo_damaged()
        assert any("positions, snapshot 1" in line for line in lines)
        assert any("diagnostic mass of job grid/M32" in line for line in lines)
        assert not rf.damaged() and not rf.is_complete("particles/N50_L10")
        times, states = rf.job_state("particles/N50_L10")
        assert np.array_equal(times, TIMES[:1])  # redone from t = 0
        assert np.array_equal(states[0], stored["particles/N50_L10"][1][0])
        assert rf.diagnostics("mass")["grid/M32"][0, 0] == TIMES[1]  # its t = 0 value to compute again
        for i in (1, 2):  # the resumed job stores its snapshots again
            rf.append("particles/N50_L10", TIMES[i], stored["particles/N50_L10"][1][i])
    with RunFile.open(bad, mode="r") as rf:
        rf.verify()


DATA = Path(__file__).parent / "data"


def test_a_run_file_written_before_the_checksums_still_opens_and_resumes(tmp_path):
    """tests/data/run_format2.h5: written by vlasov_tf before format version 3 (snapshot CRCs only).
    It opens, reads and resumes as before; its snapshots and meshes are still checked."""
    path = tmp_path / "old.h5"
    path.write_bytes((DATA / "run_format2.h5").read_bytes())
    with RunFile.open(path, mode="r") as rf:
        assert rf.format_version == 2 and not rf.checksummed
        assert rf.is_complete("grid/M16") and not rf.is_complete("particles/N10")
        assert len(rf.job_state("grid/M16")[0]) == 3 and len(rf.table("grid/M16", "clusters")[0]) == 3
        assert np.array_equal(rf.diagnostics("mass")["grid/M16"][:, 1], [1.0, 1.5, 2.0])
        assert np.array_equal(rf.weights("particles/N10"), np.full(10, 0.1))
        rf.verify()
    with RunFile.open(path) as rf:
        assert rf.redo_damaged() == []
        rf.append("particles/N10", 1.0, np.zeros((10, 2)))
        rf.add_diagnostic("mass", "particles/N10", 1.0, 1.0)
        rf.finish_job("particles/N10")
    with RunFile.open(path, mode="r") as rf:
        assert rf.is_complete("particles/N10") and rf.diagnostics("mass")["particles/N10"][0, 1] == 1.0
    bad = _damaged_copy(path, "jobs/grid/M16/densities", 8 * 16 + 2, tmp_path / "bad.h5")
    with RunFile.open(bad, mode="r") as rf, pytest.raises(RunFileError, match="densities, snapshot 1"):
        rf.job_state("grid/M16")
