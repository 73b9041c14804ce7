"""The run file: round trip, resume semantics, crash safety under SIGKILL, damaged files, XDMF."""

import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest

import vlasov_tf
import vlasov_tf.io as vio
from vlasov_tf.io import RunFile, RunFileError, journal_path, xdmf_path
from vlasov_tf.meshes import circle_mesh, sphere_mesh

CASE = '# a case\nname = "clustering"\n[model]\nbeta = 4.0  # inverse temperature, ß\n'


@pytest.fixture(scope="module")
def sphere():
    return sphere_mesh(0)


def snapshot(i: int, shape: tuple[int, ...]) -> np.ndarray:
    """The i-th test snapshot: reproducible from i alone (the crash test's child makes the same)."""
    return np.random.default_rng(i).standard_normal(shape)


def fill_run(path: Path, sphere, *, n: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A run with sphere and circle grid jobs, 3-d and 2-d particle jobs; returns key -> (times, states)."""
    ring = circle_mesh(32)
    rng = np.random.default_rng(7)
    w3, w2 = rng.random(50), rng.random(20)
    shapes = {
        "grid/sphere_L0": (sphere.n_cells,),
        "grid/M32": (32,),
        "particles/N50_L10": (50, 3),
        "particles/circle/N20": (20, 2),
    }
    stored = {}
    with RunFile.create(path, CASE, "clustering") as rf:
        rf.start_job("grid/sphere_L0", "grid", mesh=sphere, level=0, cfl=0.5, scheme="muscl")
        rf.start_job("grid/M32", "grid", mesh=ring, M=32)
        rf.start_job("particles/N50_L10", "particles", weights=w3, N=50, L=10, adaptive=False, seeds=[1, 2])
        rf.start_job("particles/circle/N20", "particles", weights=w2, N=20)
        for key, shape in shapes.items():
            times = 0.25 * np.arange(n)
            states = np.stack([snapshot(100 * len(key) + i, shape) for i in range(n)])
            for t, s in zip(times, states, strict=True):
                rf.append(key, t, s)
                rf.add_diagnostic("mass", key, t, float(s.sum()))
            stored[key] = (times, states)
        for t in (0.0, 0.25):
            rf.add_diagnostic("w1_to_grid/sphere_L0", "particles/N50_L10", t, 0.1 + t)
        rf.finish_job("grid/sphere_L0")
        rf.finish_job("particles/N50_L10")
    stored["weights"] = (w3, w2)
    return stored


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip(tmp_path, sphere):
    path = tmp_path / "run.h5"
    stored = fill_run(path, sphere)
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]  # a clean close leaves the one file
    with RunFile.open(path, mode="r") as rf:
        assert rf.jobs() == ["grid/sphere_L0", "grid/M32", "particles/N50_L10", "particles/circle/N20"]
        assert rf.case_text == CASE and rf.case_name == "clustering"
        assert rf.version == vlasov_tf.__version__
        for key in rf.jobs():
            times, states = rf.job_state(key)
            assert np.array_equal(times, stored[key][0]) and np.array_equal(states, stored[key][1])
            t, last = rf.last_state(key)
            assert t == times[-1] and np.array_equal(last, states[-1])
        assert rf.is_complete("grid/sphere_L0") and rf.is_complete("particles/N50_L10")
        assert not rf.is_complete("grid/M32") and not rf.is_complete("no/such")
        assert rf.job_state("no/such") is None
        assert np.array_equal(rf.weights("particles/N50_L10"), stored["weights"][0])
        info = rf.job_info("particles/N50_L10")
        assert info["attrs"] == {"N": 50, "L": 10, "adaptive": False, "seeds": [1, 2]}
        assert type(info["attrs"]["adaptive"]) is bool and (info["n"], info["d"]) == (3, 3)
        assert rf.job_info("grid/sphere_L0")["attrs"] == {"level": 0, "cfl": 0.5, "scheme": "muscl"}
        assert rf.diagnostic_names() == ["mass", "w1_to_grid/sphere_L0"]
        mass = rf.diagnostics("mass")
        assert set(mass) == set(rf.jobs())
        for key, rows in mass.items():
            assert np.array_equal(rows[:, 0], stored[key][0])
            assert np.array_equal(rows[:, 1], [s.sum() for s in stored[key][1]])
        w1 = rf.diagnostics("w1_to_grid/sphere_L0")
        assert list(w1) == ["particles/N50_L10"] and np.array_equal(
            w1["particles/N50_L10"], [[0, 0.1], [0.25, 0.35]]
        )
        rf.verify()
    # The layout promised to other tools, read with h5py alone.
    with h5py.File(path, "r") as f:
        assert f["case"].attrs["text"] == CASE and f["case"].attrs["version"] == vlasov_tf.__version__
        g = f["jobs/grid/sphere_L0"]
        assert g.attrs["kind"] == "grid" and g.attrs["complete"] and g.attrs["level"] == 0
        assert g["densities"].shape == (3, sphere.n_cells)
        assert np.array_equal(g["mesh/cell_vertices"][()], sphere.cell_vertices)
        assert np.array_equal(g["mesh/vertices"][()], sphere.vertices)
        p = f["jobs/particles/N50_L10"]
        assert (
            p.attrs["kind"] == "particles"
            and p["positions"].shape == (3, 50, 3)
            and p["weights"].shape == (50,)
        )


def test_reads_mix_checkpoint_and_journal(tmp_path):
    with RunFile.create(tmp_path / "run.h5", CASE, "c", sync=False) as rf:
        rf.start_job("particles/a", "particles", weights=np.ones(4))
        assert rf.job_state("particles/a")[1].shape == (0, 4, 0) and rf.last_state("particles/a") is None
        states = [snapshot(i, (4, 3)) for i in range(5)]
        for i in range(2):
            rf.append("particles/a", i, states[i])
        rf.checkpoint()
        for i in range(2, 5):
            rf.append("particles/a", i, states[i])
        times, got = rf.job_state("particles/a")
        assert np.array_equal(times, np.arange(5)) and np.array_equal(got, states)
        assert journal_path(rf.path).stat().st_size > 0  # the last three are only in the journal
        with RunFile.open(rf.path, mode="r") as reader:  # a reader sees the journal too
            assert np.array_equal(reader.job_state("particles/a")[1], states)
    assert not journal_path(tmp_path / "run.h5").exists()


def test_reader_detects_a_checkpoint_by_the_writer(tmp_path):
    with RunFile.create(tmp_path / "run.h5", CASE, "c") as rf:
        rf.start_job("grid/M8", "grid", mesh=circle_mesh(8))
        rf.append("grid/M8", 0, np.zeros(8))
        reader = RunFile.open(rf.path, mode="r")  # sees the snapshot in the journal
        rf.checkpoint()
        rf.append("grid/M8", 1, np.ones(8))  # a new record where the reader's one was
        with pytest.raises(RunFileError, match="open it again"):
            reader.job_state("grid/M8")
        reader.close()
        with RunFile.open(rf.path, mode="r") as reader:
            assert np.array_equal(reader.job_state("grid/M8")[1], [np.zeros(8), np.ones(8)])


def test_diagnostics_replace_same_time(tmp_path):
    with RunFile.create(tmp_path / "run.h5", CASE, "c") as rf:
        for t, v in ((0.5, 2.0), (0.0, 1.0), (0.5, 3.0), (1.0, float("nan"))):
            rf.add_diagnostic("energy", "grid/M8", t, v)
    with RunFile.open(tmp_path / "run.h5", mode="r") as rf:
        rows = rf.diagnostics("energy")["grid/M8"]
        assert (
            np.array_equal(rows[:2], [[0.0, 1.0], [0.5, 3.0]]) and rows[2, 0] == 1.0 and np.isnan(rows[2, 1])
        )


def test_threads_append_to_their_jobs(tmp_path):
    with RunFile.create(tmp_path / "run.h5", CASE, "c", sync=False) as rf:
        ring = circle_mesh(16)
        for j in range(4):
            rf.start_job(f"grid/t{j}", "grid", mesh=ring)

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
    w = np.linspace(0.1, 1.0, 10)
    with RunFile.create(path, CASE, "c") as rf:
        rf.start_job("grid/L0", "grid", mesh=sphere, level=0)
        rf.start_job("particles/N10", "particles", weights=w, N=10, L=8)
        for i in range(3):
            rf.append("particles/N10", 0.1 * i, snapshot(i, (10, 3)))
            rf.append("grid/L0", 0.1 * i, snapshot(i, (sphere.n_cells,)))
        rf.finish_job("grid/L0")

    with RunFile.open(path) as rf:
        rf.start_job("grid/L0", "grid", mesh=sphere, level=0)  # same: a no-op
        rf.start_job("particles/N10", "particles", weights=w.copy(), N=10, L=8)
        assert rf.is_complete("grid/L0") and not rf.is_complete("particles/N10")
        times, states = rf.job_state("particles/N10")
        assert np.array_equal(times, 0.1 * np.arange(3))
        assert np.array_equal(states, [snapshot(i, (10, 3)) for i in range(3)])

        with pytest.raises(ValueError, match=r"attrs \(L: 8 -> 9\)"):
            rf.start_job("particles/N10", "particles", weights=w, N=10, L=9)
        with pytest.raises(ValueError, match=r"attrs.*extra"):
            rf.start_job("particles/N10", "particles", weights=w, N=10, L=8, extra=1)
        with pytest.raises(ValueError, match="weights"):
            rf.start_job("particles/N10", "particles", weights=w[::-1], N=10, L=8)
        with pytest.raises(ValueError, match="kind"):
            rf.start_job("particles/N10", "grid", mesh=sphere)
        with pytest.raises(ValueError, match="mesh"):
            rf.start_job("grid/L0", "grid", mesh=sphere_mesh(1), level=0)

        # A restarted solver may report its initial state again: an identical repeat is a no-op.
        rf.append("particles/N10", times[-1], states[-1])
        with pytest.raises(ValueError, match="does not follow"):
            rf.append("particles/N10", times[-1], states[-1] + 1e-16 + 1e-9)
        with pytest.raises(ValueError, match="does not follow"):
            rf.append("particles/N10", 0.05, states[-1])
        with pytest.raises(ValueError, match="positions must be"):
            rf.append("particles/N10", 1.0, np.zeros((10, 2)))
        with pytest.raises(ValueError, match="complete"):
            rf.append("grid/L0", 1.0, np.zeros(sphere.n_cells))
        rf.append("particles/N10", 0.1 * 3, snapshot(3, (10, 3)))
        rf.finish_job("particles/N10")

    with RunFile.open(path, mode="r") as rf:
        times, states = rf.job_state("particles/N10")
        assert np.array_equal(times, 0.1 * np.arange(4)) and np.array_equal(states[3], snapshot(3, (10, 3)))
        assert rf.is_complete("particles/N10")
        with pytest.raises(ValueError, match="read-only"):
            rf.append("particles/N10", 1.0, states[0])


def test_create_and_open_guards(tmp_path):
    path = tmp_path / "run.h5"
    with pytest.raises(FileNotFoundError, match=r"run.h5"):
        RunFile.open(path)
    rf = RunFile.create(path, CASE, "c")
    rf.start_job("grid/M4", "grid", mesh=circle_mesh(4))
    with pytest.raises(FileExistsError, match="overwrite"):
        RunFile.create(path, CASE, "c")
    with pytest.raises(RuntimeError, match="another process"):  # one writer at a time
        RunFile.open(path)
    with RunFile.open(path, mode="r") as reader:
        assert reader.jobs() == ["grid/M4"]
    for bad in ("", "grid/", "/grid", "grid//M4", "grid/../x", "grid/.x", "grid/M 4"):
        with pytest.raises(ValueError, match="job key"):
            rf.start_job(bad, "grid", mesh=circle_mesh(4))
    with pytest.raises(ValueError, match="nests"):
        rf.start_job("grid/M4/b", "grid", mesh=circle_mesh(4))
    with pytest.raises(ValueError, match="reserved"):
        rf.start_job("grid/M8", "grid", mesh=circle_mesh(8), complete=True)
    with pytest.raises(TypeError, match="attr"):
        rf.start_job("grid/M8", "grid", mesh=circle_mesh(8), opts={"a": 1})
    rf.close()
    with RunFile.create(path, "other", "fresh", overwrite=True) as rf:
        assert rf.jobs() == [] and rf.case_name == "fresh"


# ------------------------------------------------------------------------------------------ crash safety

CHILD = """
import importlib.util, sys
import numpy as np

# Load vlasov_tf/io.py alone: importing the package (scipy, ...) would cost ~1 s per child.
spec = importlib.util.spec_from_file_location("vtf_io", sys.argv[2])
vio = sys.modules["vtf_io"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vio)

rf = vio.RunFile.open(sys.argv[1])
n = len(rf.job_state("particles/N")[0])
print("start", n, flush=True)
for i in range(n, 10**6):
    rf.append("particles/N", 0.5 * i, np.random.default_rng(i).standard_normal((500, 3)))
    rf.add_diagnostic("energy", "particles/N", 0.5 * i, float(i))
    print(i, flush=True)  # acknowledged: append and add_diagnostic returned
    if i % 4 == 3:
        rf.checkpoint()  # so that kills also land inside checkpoints
"""


def check_prefix(path: Path, mode: str, acknowledged: set[int]) -> int:
    """Open the run after a kill: a prefix of the snapshots, each intact, the acknowledged ones included."""
    with RunFile.open(path, mode=mode) as rf:
        times, states = rf.job_state("particles/N")
        energy = rf.diagnostics("energy").get("particles/N", np.zeros((0, 2)))
    n = len(times)
    assert n >= max(acknowledged, default=-1) + 1
    assert np.array_equal(times, 0.5 * np.arange(n))
    for i in range(n):
        assert np.array_equal(states[i], snapshot(i, (500, 3))), f"snapshot {i} differs"
    assert np.array_equal(energy[:, 1], energy[:, 0] / 0.5)  # each row intact
    # Not every snapshot has its row: a kill between append and add_diagnostic leaves it out for good.
    assert acknowledged <= set(energy[:, 1].astype(int).tolist())
    return n


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path, rng):
    path = tmp_path / "run.h5"
    with RunFile.create(path, CASE, "crash") as rf:
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
                time.sleep(rng.uniform(0.15, 0.35))  # around start-up: kills may land in open()'s recovery
            else:
                # Three acknowledged snapshots first, so that progress does not depend on how fast
                # the child starts on a loaded machine; then a random moment.
                seen = [proc.stdout.readline() for _ in range(4)]
                assert seen[0].startswith("start")
                time.sleep(rng.uniform(0.0, 0.25))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        lines = [line.split() for line in [*seen, *out.splitlines()] if line.strip()]
        resumed_from += [int(w[1]) for w in lines if w[0] == "start"]
        acknowledged |= {int(w[0]) for w in lines if w[0] != "start"}
        n = check_prefix(path, "r" if round % 2 else "a", acknowledged)
    assert resumed_from and all(a <= b for a, b in itertools.pairwise(resumed_from))
    assert n > 10  # the rounds did write
    with RunFile.open(path) as rf:  # resume after the last kill, then finish cleanly
        assert len(rf.job_state("particles/N")[0]) == n
        rf.finish_job("particles/N")
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]  # no journal, no checkpoint temporaries


def copy_on_disk_state(src: Path, dst: Path) -> Path:
    """What a SIGKILL would leave: the run file and its journal as they are on disk now."""
    dst.mkdir()
    for p in (src, journal_path(src)):
        shutil.copyfile(p, dst / p.name)
    return dst / src.name


def test_torn_journal_tail_is_dropped_and_inner_damage_raises(tmp_path):
    path = tmp_path / "run.h5"
    rf = RunFile.create(path, CASE, "c")
    rf.start_job("grid/M64", "grid", mesh=circle_mesh(64))
    for i in range(5):
        rf.append("grid/M64", i, snapshot(i, (64,)))
    crashed = copy_on_disk_state(path, tmp_path / "crashed")
    rf.close()
    journal = journal_path(crashed)
    size = journal.stat().st_size
    record = size // 5 + 1  # records are of equal size here; cut into the last one

    torn = copy_on_disk_state(crashed, tmp_path / "torn")
    os.truncate(journal_path(torn), size - 100)
    with RunFile.open(torn, mode="r") as r:
        assert len(r.job_state("grid/M64")[0]) == 4 and r.dropped_bytes > 0
    with RunFile.open(torn) as r:  # the writer cuts the tail off and checkpoints the rest
        assert r.replayed_records == 5 and r.dropped_bytes > 0  # start + 4 snapshots
        r.append("grid/M64", 4, snapshot(4, (64,)))
    with RunFile.open(torn, mode="r") as r:
        assert np.array_equal(r.job_state("grid/M64")[1], [snapshot(i, (64,)) for i in range(5)])

    damaged = copy_on_disk_state(crashed, tmp_path / "damaged")
    with open(journal_path(damaged), "r+b") as f:  # a flipped byte in the middle of the journal
        f.seek(size - 2 * record)
        b = f.read(1)
        f.seek(size - 2 * record)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(RunFileError, match=r"journal .*damaged.*intact record follows"):
        RunFile.open(damaged, mode="r")


def test_kill_between_checkpoint_and_journal_reset_does_not_duplicate(tmp_path):
    path = tmp_path / "run.h5"
    rf = RunFile.create(path, CASE, "c")
    rf.start_job("grid/M8", "grid", mesh=circle_mesh(8))
    for i in range(3):
        rf.append("grid/M8", i, np.full(8, float(i)))
        rf.add_diagnostic("mass", "grid/M8", i, float(i))
    old_journal = journal_path(path).read_bytes()
    rf.checkpoint()
    # The new checkpoint is in place but the kill came before the journal was emptied.
    crashed = copy_on_disk_state(path, tmp_path / "crashed")
    journal_path(crashed).write_bytes(old_journal)
    rf.close()
    with RunFile.open(crashed) as r:
        assert np.array_equal(r.job_state("grid/M8")[0], [0, 1, 2]) and r.replayed_records == 0
        assert len(r.diagnostics("mass")["grid/M8"]) == 3


def test_damaged_or_foreign_files_raise_naming_the_file(tmp_path):
    path = tmp_path / "run.h5"
    with RunFile.create(path, CASE, "c") as rf:
        rf.start_job("grid/M4096", "grid", mesh=circle_mesh(4096))
        for i in range(4):
            rf.append("grid/M4096", i, snapshot(i, (4096,)))
    data = path.read_bytes()

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFileError, match=r"truncated.h5"):
        RunFile.open(truncated, mode="r")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file" * 100)
    with pytest.raises(RunFileError, match=r"garbage.h5.*not a readable HDF5"):
        RunFile.open(garbage)
    assert not journal_path(garbage).exists()  # a failed open leaves nothing behind
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(RunFileError, match=r"foreign.h5.*not a vlasov_tf run file"):
        RunFile.open(foreign, mode="r")

    # A flipped byte inside a snapshot: the HDF5 checksum catches it when the data is read.
    with h5py.File(path, "r") as f:
        offset = f["jobs/grid/M4096/densities"].id.get_chunk_info(2).byte_offset
    corrupt = tmp_path / "corrupt.h5"
    damaged = bytearray(data)
    damaged[offset + 100] ^= 0xFF
    corrupt.write_bytes(bytes(damaged))
    with RunFile.open(corrupt, mode="r") as rf:
        with pytest.raises(RunFileError, match=r"corrupt.h5.*densities"):
            rf.verify()
        with pytest.raises(OSError):
            rf.job_state("grid/M4096")


# ------------------------------------------------------------------------------------------ XDMF


def xdmf_array(item: ET.Element, f: h5py.File, h5name: str) -> np.ndarray:
    """The array an XDMF DataItem denotes, checking its declared dimensions and type on the way."""
    dims = tuple(int(x) for x in item.get("Dimensions").split())
    if item.get("ItemType") == "HyperSlab":
        selection, source = list(item)
        data = xdmf_array(source, f, h5name)
        start, stride, count = np.array(selection.text.split(), dtype=int).reshape(3, data.ndim)
        assert selection.get("Dimensions") == f"3 {data.ndim}" and tuple(count) == dims
        assert (start >= 0).all() and (start + (count - 1) * stride < data.shape).all()
        return data[tuple(slice(a, a + c * s, s) for a, c, s in zip(start, count, stride, strict=True))]
    assert item.get("Format") == "HDF"
    fname, dataset = item.text.strip().split(":")
    assert fname == h5name and dataset in f
    ds = f[dataset]
    assert ds.shape == dims
    assert item.get("NumberType") == ("Int" if ds.dtype.kind == "i" else "Float")
    assert int(item.get("Precision")) == ds.dtype.itemsize
    return ds[()]


def test_xdmf_references_the_datasets(tmp_path, sphere):
    path = tmp_path / "run.h5"
    stored = fill_run(path, sphere)
    with RunFile.open(path) as rf:
        rf.start_job("particles/empty", "particles", weights=np.ones(3))  # no snapshots: not shown
        out = rf.write_xdmf()
    assert out == xdmf_path(path) == tmp_path / "run.xdmf"
    root = ET.parse(out).getroot()
    collections = root.findall("./Domain/Grid")
    assert [c.get("Name") for c in collections] == list(stored)[:4]
    with h5py.File(path, "r") as f:
        for coll in collections:
            key = coll.get("Name")
            times, states = stored[key]
            assert coll.get("CollectionType") == "Temporal"
            steps = coll.findall("Grid")
            assert [float(g.find("Time").get("Value")) for g in steps] == times.tolist()
            for i, grid in enumerate(steps):
                topo, geom = grid.find("Topology"), grid.find("Geometry")
                attrs = {a.get("Name"): a for a in grid.findall("Attribute")}
                if key.startswith("grid/"):
                    points = xdmf_array(geom.find("DataItem"), f, path.name)
                    cells = xdmf_array(topo.find("DataItem"), f, path.name)
                    density = xdmf_array(attrs["density"].find("DataItem"), f, path.name)
                    assert attrs["density"].get("Center") == "Cell"
                    assert np.array_equal(density.ravel(), states[i])
                    assert int(topo.get("NumberOfElements")) == len(cells) == states.shape[1]
                    assert cells.min() >= 0 and cells.max() < len(points)
                    if key == "grid/sphere_L0":
                        assert topo.get("TopologyType") == "Triangle" and geom.get("GeometryType") == "XYZ"
                        assert np.array_equal(cells, sphere.cell_vertices)
                        assert np.array_equal(points, sphere.vertices)
                    else:  # the circle: a closed polyline of its arcs, in the plane
                        assert topo.get("TopologyType") == "Polyline" and topo.get("NodesPerElement") == "2"
                        assert geom.get("GeometryType") == "XY" and points.shape == (32, 2)
                else:
                    n_particles, d = states.shape[1:]
                    assert topo.get("TopologyType") == "Polyvertex"
                    assert int(topo.get("NumberOfElements")) == n_particles
                    assert geom.get("GeometryType") == ("XYZ" if d == 3 else "XY")
                    points = xdmf_array(geom.find("DataItem"), f, path.name)
                    assert np.array_equal(points.reshape(n_particles, d), states[i])
                    weights = xdmf_array(attrs["weight"].find("DataItem"), f, path.name)
                    assert attrs["weight"].get("Center") == "Node"
                    assert np.array_equal(weights, stored["weights"][0 if d == 3 else 1])
