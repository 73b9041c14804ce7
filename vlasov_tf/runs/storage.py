"""One HDF5 file per run: the case, snapshots over time, diagnostics; crash-safe; XDMF companions.

Layout of ``<run>.h5`` (:class:`RunFile`), readable by plain h5py at any moment, also while the
run is going and after it was killed::

    /                      attrs: format = "vlasov_tf run", format_version = 2, run_id
    /case                  attrs: text (the case TOML), name, version, created (UTC), settings,
                           overrides, provenance (JSON)
    /times      (n,)             the output times: snapshot i of every job is at times[i]
    /jobs/<key>/           one group per solver job; <key> like "grid/M1024" or "particles/N1000_L100"
        times      (n,)          the times stored so far, NaN from the first snapshot not yet stored
        densities  (n, C)        grid jobs: cell averages (NaN rows: not yet computed)
        positions  (n, N, d)     particle jobs: tokens;  weights (N,)
        crc        (n,)          CRC-32 of each stored row (a damaged row fails to read)
        tables/<name>/values (n, ...), times (n,)   per-output arrays of the job (e.g. its
                                 clusters), each row valid once its time is finite
        clock      (2,)          UNIX times the job started and finished (NaN: not yet)
        step/<i>                 snapshot i alone (a virtual dataset: a view of row i), for XDMF
        mesh -> /meshes/<id>     grid jobs (hard link);   vertex_ids (N, 1) particle jobs (XDMF)
        attrs: kind ("grid" | "particles"), job_index, free-form (resolution, tokens, layers, ...)
    /meshes/<id>/          vertices (V, d), cell_vertices (C, k), centres (C, d), areas (C,)
    /diagnostics/<name>    (J, n) value of diagnostic <name> for job j at times[i] (NaN: not
                           computed); attr ``jobs``: the job keys in row order (names are
                           percent-encoded: "w1_to_grid/M1024" contains '/')

So ``f["jobs/grid/M512/densities"][:k]`` with ``k = np.isfinite(f["jobs/grid/M512/times"]).sum()``
are the snapshots stored so far.

Durability: everything is allocated when the file is made; HDF5 never touches the file again.

HDF5 is not crash-safe: a process killed while HDF5 updates its metadata in place (extending a
dataset, adding a group) can leave the whole file unreadable. And a file HDF5 holds open for
writing cannot be opened by a plain reader (its lock and the "open for write" flag; SWMR readers
need ``swmr=True``, and a killed SWMR writer leaves the flag set). So:

- :meth:`RunFile.create` writes the whole layout above for every job of the run (all outputs,
  contiguous datasets allocated at once, filled with NaN) into a temporary file, fsyncs it and
  renames it into place: the run file exists complete or not at all, and its HDF5 metadata never
  change again. A disk too small for the run fails here, before anything is computed.
- A snapshot is written with ``pwrite`` into its preallocated row (the dataset's byte offset), then
  its CRC-32, then (after an ``fdatasync`` when ``sync``, the default) its time, then another
  ``fdatasync``: the time is the commit mark. A kill at any point leaves the row either stored
  (finite time, matching CRC) or absent (NaN time); :meth:`RunFile.open` and plain readers see every
  snapshot whose ``append`` returned, never a half-written one. Diagnostics, ``start_job`` (the
  weights, the start clock) and ``finish_job`` (the finish clock) are written the same way.
- Opening never writes: a killed run's file stays byte for byte as it was, readable by h5py,
  ``RunFile.open(path, mode="r")``, ``vlasov-tf plot``, ParaView, while a writer appends.

The writer lock is ``flock`` on ``<run>.h5.lock`` (removed at a clean close): a second process
opening the run for writing gets a clear error. The writer also holds a shared ``flock`` on the
``.h5`` itself, as HDF5 readers do, so an HDF5 writer (h5py mode "r+") cannot open it meanwhile.

Cost (``python scripts/bench_io.py``, development machine, 100 snapshots of 1e5 float64 in one
grid job, 76 MiB): plain h5py appends without durability 0.038 s; creating the layout 0.08 s
(it writes the file's full size once, the NaN fill); create + every append 0.16 s with
``sync=False``, 0.19 s with ``sync=True`` (the default: two fdatasyncs a snapshot). ``sync=False``
is still safe if the process is killed, not if the machine dies.

Resuming: ``RunFile.open(path)`` then, per job, ``start_job`` again with the same arguments (a
check), ``is_complete`` to skip finished jobs, and ``job_state``/``last_state`` to restart the
solver from the last stored snapshot. ``append`` of a repeat of the last stored snapshot (same
time, same values) is a no-op, so a restarted solver may report its initial state again.

The XDMF companions (:func:`xdmf_path`: ``<run>.<job key with '.' for '/'>.xdmf`` next to the
``.h5``), one per job, are rewritten (atomically) after every snapshot (at most once a second
while snapshots come faster; always after a job's last one and at close): one temporal collection
of the snapshots stored, each referencing whole datasets (``step/<i>``): sphere densities on the
triangles, circle densities on the polyline of its arcs (cell-centred), particles as points with
their weights and positions. meshio (``meshio.xdmf.TimeSeriesReader``) and VTK's XDMF reader (the
one behind ParaView's) read every step.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import math
import os
import re
import secrets
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import h5py
import numpy as np

if TYPE_CHECKING:
    from vlasov_tf.geometry.meshes import MeshGeometry

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
    "PROVENANCE_PACKAGES",
    "JobLayout",
    "RunFile",
    "RunFileBusy",
    "RunFileError",
    "lock_path",
    "provenance",
    "xdmf_path",
]

#: Value of the root attribute ``format`` of a run file.
FORMAT = "vlasov_tf run"
#: Version of the layout; :meth:`RunFile.open` refuses others.
FORMAT_VERSION = 2
#: Kinds of solver job.
KINDS = ("grid", "particles")

_RESERVED_ATTRS = frozenset({"kind", "job_index"})
# A key segment: no '.' or '..' (HDF5 path components), nothing that needs quoting in an XDMF path.
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")
_ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MESH_ARRAYS = ("vertices", "cell_vertices", "centres", "areas")
_F8 = np.dtype("<f8")
#: Seconds between rewrites of a job's XDMF companion while its snapshots come faster.
XDMF_INTERVAL = 1.0


class RunFileError(ValueError):
    """A run file is unreadable, damaged, or not a vlasov_tf run file."""


class RunFileBusy(BlockingIOError):
    """Another process writes the run file (one writer at a time)."""


#: The libraries whose versions a run file records (the numerics depend on them).
PROVENANCE_PACKAGES = ("numpy", "scipy", "h5py", "ducc0", "finufft", "POT", "numba", "mpi4py")


def provenance(mpi_size: int = 1) -> dict[str, Any]:
    """What made a run: command line, package version and git commit (when the package sits in a
    git checkout), versions of :data:`PROVENANCE_PACKAGES` (those installed), Python, host, number
    of MPI ranks, start time (UTC). Each job's start and finish are in its ``clock``."""
    import platform
    import socket
    import subprocess
    import sys
    from importlib.metadata import PackageNotFoundError, version

    from vlasov_tf import __version__

    versions = {}
    for name in PROVENANCE_PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        commit = out.stdout.strip() if out.returncode == 0 else None
    return {
        "command": list(sys.argv),
        "vlasov_tf": __version__,
        "git_commit": commit,
        "python": platform.python_version(),
        "packages": versions,
        "host": socket.gethostname(),
        "mpi_size": int(mpi_size),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def lock_path(path: str | os.PathLike) -> Path:
    """``<run>.h5.lock``: the writer's lock next to the run file (removed at a clean close)."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def xdmf_path(path: str | os.PathLike, key: str) -> Path:
    """``<run>.<key with '.' for '/'>.xdmf``: the XDMF companion of job ``key`` next to the run file."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{key.replace('/', '.')}.xdmf")


@dataclass(frozen=True)
class JobLayout:
    """One job of a run as :meth:`RunFile.create` allocates it.

    ``kind="grid"`` with its ``mesh`` (the state: densities (C,)), or ``"particles"`` with
    ``tokens`` N and dimension ``d`` (the state: positions (N, d)). ``attrs`` (str, bool, int,
    float or flat lists of numbers; not kind or job_index) are stored on the job's group.
    ``tables``: name -> row shape of per-output arrays the job stores beside its snapshots
    (:meth:`RunFile.add_row`).
    """

    key: str
    kind: str
    mesh: MeshGeometry | None = None
    tokens: int | None = None
    d: int | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def state_shape(self) -> tuple[int, ...]:
        if self.kind == "grid":
            return (self.mesh.n_cells,)
        return (int(self.tokens), int(self.d))

    @property
    def nbytes(self) -> int:
        """Bytes a job's snapshots and table rows take per output time."""
        return 8 * (math.prod(self.state_shape) + sum(math.prod(row) for row in self.tables.values()))


@dataclass
class _Job:
    """A job as loaded from the file: identity and byte offsets of its datasets."""

    key: str
    kind: str
    index: int
    attrs: dict[str, Any]
    shape: tuple[int, ...]  # state shape
    mesh_id: str | None
    offsets: dict[str, int]  # dataset name -> byte offset in the file
    mesh_shape: tuple[int, int, int] | None = None  # grid: vertices, their dimension, vertices a cell
    tables: dict[str, tuple[tuple[int, ...], int, int]] = field(default_factory=dict)  # shape, offsets
    n_stored: int = 0  # writers: snapshots stored, the last at last_t
    last_t: float = math.nan
    xdmf_steps: list[str] = field(default_factory=list)
    xdmf_shown: int = -1  # snapshots in the XDMF companion as last written, and when
    xdmf_at: float = -math.inf

    @property
    def dataset(self) -> str:
        return "densities" if self.kind == "grid" else "positions"

    @property
    def row_bytes(self) -> int:
        return 8 * math.prod(self.shape)


# ---------------------------------------------------------------------------------------------------
# small helpers


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not all(_KEY_SEGMENT.fullmatch(s) for s in key.split("/")):
        raise ValueError(
            f"job key {key!r}: want '/'-separated segments of letters, digits and _.+=- "
            "(not starting with . + = -), e.g. 'grid/M1024'"
        )
    return key


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or not name.isprintable():
        raise ValueError(f"diagnostic name {name!r}: want a non-empty printable string")
    return name


def _normalise_attr(name: str, value: Any) -> Any:
    """A JSON- and HDF5-storable form of an attr value: str, bool, int, float or a flat list of those."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, list | tuple | np.ndarray):
        items = [_normalise_attr(name, v) for v in np.asarray(value).ravel().tolist()]
        if np.ndim(value) == 1 and not any(isinstance(v, list) for v in items):
            kinds = {type(v) for v in items}
            if len(kinds) <= 1 and str not in kinds:
                return items
    raise TypeError(
        f"attr {name}={value!r}: want a str, bool, int, float or a flat list of numbers of one type"
    )


def _from_h5_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _same_attr(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_attr(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    # bool is an int in Python: True == 1 would pass without the type check.
    return type(a) is type(b) and a == b


def _le(a: np.ndarray) -> np.ndarray:
    """C-contiguous little-endian copy or view: the file's byte layout."""
    a = np.ascontiguousarray(a)
    return a.astype(a.dtype.newbyteorder("<"), copy=False)


def _mesh_id(kind: str, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(kind.encode())
    for name in _MESH_ARRAYS:
        a = _le(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        digest.update(a.tobytes())
    return f"{kind}_C{len(arrays['areas'])}_{digest.hexdigest()[:16]}"


def _mesh_arrays(mesh: MeshGeometry) -> dict[str, np.ndarray]:
    return {name: np.asarray(getattr(mesh, name)) for name in _MESH_ARRAYS}


def _diag_name(name: str) -> str:
    q = quote(name, safe="")
    return q.replace(".", "%2E") if q in (".", "..") else q


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    # Not mkstemp: its 0600 mode would outlive os.replace; h5py creates files under the umask.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _remove_stale_tmp(path: Path) -> None:
    """Remove temporary files a killed writer left (called with the writer lock held)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _replace(tmp: Path, path: Path, sync: bool) -> None:
    """Move the finished ``tmp`` over ``path`` atomically (data first on disk, then the new name)."""
    if sync:
        _fsync_path(tmp)
    os.replace(tmp, path)
    if sync:
        _fsync_path(path.parent, directory=True)


def _write_text(path: Path, text: str) -> None:
    tmp = _tmp_name(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _lock(path: Path) -> int:
    """Open (creating it) and exclusively lock ``<path>.lock``; return its descriptor."""
    lpath = lock_path(path)
    while True:
        fd = os.open(lpath, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFileBusy(
                f"run file {path} is open for writing by another process (lock {lpath}); "
                "read it with mode='r', or wait for that process to finish"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # A writer closing meanwhile unlinks the lock file after releasing it: lock the current one.
        try:
            if os.fstat(fd).st_ino == os.stat(lpath).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _pwrite(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _pread(fd: int, out: np.ndarray, offset: int) -> np.ndarray:
    view = memoryview(out).cast("B")
    while len(view):
        n = os.preadv(fd, [view], offset)
        if n == 0:
            raise EOFError(f"file ends at byte {offset}")
        view, offset = view[n:], offset + n
    return out


def _early_dcpl() -> h5py.h5p.PropDCID:
    """Contiguous storage allocated (and filled) at creation: the data never moves afterwards."""
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return plist


# ---------------------------------------------------------------------------------------------------
# the run file


class RunFile:
    """One run's HDF5 file (see the module docstring for its layout and durability).

    Make one with :meth:`create` (which lays out every job), reopen one with :meth:`open` (to
    resume, or with ``mode="r"`` to read). States are float64: grid densities (C,), particle
    positions (N, d). Methods are thread-safe; one process writes a run at a time. Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path, lock_fd: int | None, *, readonly: bool, sync: bool) -> None:
        # Private: use RunFile.create / RunFile.open.
        self.path = path
        self.readonly = readonly
        self.sync = sync
        self._lock_fd = lock_fd
        self._lock = threading.RLock()
        self._closed = True
        try:
            self._fd = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
        except IsADirectoryError:
            raise RunFileError(f"run file {path} is a directory") from None
        try:
            if not readonly:
                # As an HDF5 reader does: an HDF5 writer (h5py "r+") cannot open the file meanwhile.
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise RunFileBusy(f"run file {path} is open for writing by HDF5 elsewhere") from None
            self._load()
            self._closed = False
            for job in self._jobs.values():
                stored = self._stored_times(job)
                job.n_stored = len(stored)
                job.last_t = float(stored[-1]) if len(stored) else math.nan
            if not readonly:
                for stale in (path, *(xdmf_path(path, key) for key in self._jobs)):
                    _remove_stale_tmp(stale)
                for job in self._jobs.values():  # a kill may have left them a snapshot behind
                    self._write_xdmf(job)
        except BaseException:
            self._closed = True
            os.close(self._fd)
            raise

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        case_text: str,
        case_name: str,
        *,
        jobs: Sequence[JobLayout],
        times: np.ndarray | Sequence[float],
        diagnostics: Sequence[str] = (),
        settings: Mapping[str, str] | None = None,
        overrides: Sequence[tuple[str, Any]] = (),
        provenance: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        sync: bool = True,
    ) -> RunFile:
        """Create the run file ``path`` for the case (its TOML text and name); open it for writing.

        ``jobs``: every job the run may hold; ``times`` (n,): the output times, strictly
        increasing (snapshot i of every job is at ``times[i]``); ``diagnostics``: the names of the
        diagnostics it may hold (a value per job and output time). ``settings``
        (:func:`vlasov_tf.runs.cases.case_settings`: what the run depends on) and ``overrides`` (the
        dotted keys set on top of the text) are kept with the case text so that a resume can check
        it runs the same case; ``provenance`` (:func:`provenance`) as JSON too.

        Raises ``FileExistsError`` if ``path`` exists and not ``overwrite`` (open it to resume),
        ``ValueError`` for bad layouts, ``OSError`` (ENOSPC) if the disk cannot hold the run.
        ``sync=False`` skips fsync: still safe if the process is killed, not if the machine dies.
        """
        path = Path(path)
        if not isinstance(case_text, str) or not isinstance(case_name, str):
            raise TypeError("case_text and case_name must be str")
        if path.is_dir():
            raise IsADirectoryError(f"run file {path} is a directory")
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"run file {path} exists: open it to resume, or pass overwrite=True to start afresh"
            )
        t = np.array(times, dtype=np.float64)
        if t.ndim != 1 or len(t) == 0 or not np.isfinite(t).all() or (np.diff(t) <= 0).any():
            raise ValueError(f"run file {path}: times must be (n,) finite, strictly increasing, n >= 1")
        layouts = _check_layouts(jobs)
        names = [_check_name(n) for n in diagnostics]
        if len(set(names)) != len(names):
            raise ValueError(f"run file {path}: diagnostic names repeat: {names}")
        lock_fd = _lock(path)
        try:
            if path.exists() and not overwrite:  # again, holding the lock: made meanwhile?
                raise FileExistsError(f"run file {path} exists: open it to resume, or pass overwrite=True")
            _remove_stale_tmp(path)
            tmp = _tmp_name(path)
            try:
                _write_layout(tmp, case_text, case_name, t, layouts, names, settings, overrides, provenance)
                _replace(tmp, path, sync)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            for layout in layouts:  # those of a run this one replaced
                xdmf_path(path, layout.key).unlink(missing_ok=True)
            return cls(path, lock_fd, readonly=False, sync=sync)
        except BaseException:
            _unlock(path, lock_fd)
            raise

    @classmethod
    def open(cls, path: str | os.PathLike, *, mode: str = "a", sync: bool = True) -> RunFile:
        """Open an existing run file: ``mode="a"`` to resume writing (the default), ``"r"`` to read.

        Validates the file (``RunFileError``, naming it, if it is truncated, damaged or not a run
        file; ``FileNotFoundError`` if missing). A run open for writing elsewhere raises
        ``RunFileBusy`` (a ``BlockingIOError``) in mode "a"; in mode "r" it can be read meanwhile,
        and each read sees the snapshots stored up to then. Opening never modifies the ``.h5`` file.
        """
        path = Path(path)
        if mode not in ("a", "r"):
            raise ValueError(f"mode must be 'a' (resume writing) or 'r' (read); got {mode!r}")
        if not path.is_file():
            raise FileNotFoundError(f"run file {path} does not exist")
        if mode == "r":
            return cls(path, None, readonly=True, sync=sync)
        lock_fd = _lock(path)
        try:
            return cls(path, lock_fd, readonly=False, sync=sync)
        except BaseException:
            _unlock(path, lock_fd)
            raise

    # -- loading -----------------------------------------------------------------------------------

    def _fail(self, problem: str) -> RunFileError:
        return RunFileError(f"run file {self.path}: {problem}")

    def _load(self) -> None:
        """Validate the file and load its layout (byte offsets; not the snapshots)."""
        try:
            f = h5py.File(self.path, "r")
        except OSError as err:
            raise RunFileError(
                f"run file {self.path} is not a readable HDF5 file (truncated, corrupted or not HDF5): {err}"
            ) from err
        try:
            with f:
                self._load_layout(f)
        except RunFileError:
            raise
        except Exception as err:  # h5py reports damage as OSError, KeyError, RuntimeError, ...
            raise RunFileError(f"run file {self.path} is damaged: {type(err).__name__}: {err}") from err
        size = os.fstat(self._fd).st_size
        for job in self._jobs.values():
            if job.offsets[job.dataset] + len(self._times) * job.row_bytes > size:
                raise self._fail(f"truncated: it ends at byte {size}, inside job {job.key}'s snapshots")

    def _offset(self, ds: h5py.Dataset, shape: tuple[int, ...], dtype: np.dtype) -> int:
        if ds.shape != shape or ds.dtype != dtype:
            raise self._fail(f"{ds.name} is {ds.shape} {ds.dtype}, expected {shape} {dtype}")
        offset = ds.id.get_offset()
        if offset is None:
            raise self._fail(f"{ds.name} is not stored contiguously (not written by RunFile.create)")
        return int(offset)

    def _load_layout(self, f: h5py.File) -> None:
        attrs = f.attrs
        if _from_h5_attr(attrs.get("format")) != FORMAT:
            raise self._fail(f"not a vlasov_tf run file (no root attribute format = {FORMAT!r})")
        version = attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise self._fail(
                f"format version {version}, this code reads {FORMAT_VERSION} (the file is plain "
                "HDF5: h5py reads it; the vlasov_tf that wrote it reads it)"
            )
        self._run_id = str(_from_h5_attr(attrs["run_id"]))
        case = f["case"].attrs
        missing = [k for k in ("text", "name", "version", "created") if k not in case]
        if missing:
            raise self._fail(f"/case lacks attribute(s) {', '.join(missing)}")
        self._case = {k: str(_from_h5_attr(v)) for k, v in case.items()}
        self._times = f["times"][()]
        n = len(self._times)
        jobs: list[_Job] = []

        def walk(group: h5py.Group, prefix: str) -> None:
            for name, obj in group.items():
                if isinstance(obj, h5py.Group):
                    if "kind" in obj.attrs:
                        jobs.append(self._load_job(prefix + name, obj, n))
                    else:
                        walk(obj, prefix + name + "/")

        walk(f["jobs"], "")
        self._jobs = {j.key: j for j in sorted(jobs, key=lambda j: j.index)}
        order = list(self._jobs)
        self._diag: dict[str, int] = {}
        for ds in f["diagnostics"].values():
            if [str(_from_h5_attr(k)) for k in ds.attrs["jobs"]] != order:
                raise self._fail(f"{ds.name}: its rows are not the jobs {order}")
            self._diag[str(_from_h5_attr(ds.attrs["name"]))] = self._offset(ds, (len(order), n), _F8)

    def _load_job(self, key: str, g: h5py.Group, n: int) -> _Job:
        kind = str(_from_h5_attr(g.attrs["kind"]))
        if kind not in KINDS:
            raise self._fail(f"job {key} has kind {kind!r}, not one of {KINDS}")
        mesh_shape = None
        if kind == "grid":
            mesh = g["mesh"]
            shape, mesh_id = (len(mesh["areas"]),), str(_from_h5_attr(mesh.attrs["id"]))
            (nv, dim), (nc, k) = mesh["vertices"].shape, mesh["cell_vertices"].shape
            if dim not in (2, 3) or nc != shape[0]:
                raise self._fail(f"job {key}: mesh vertices {(nv, dim)} / cell_vertices {(nc, k)}")
            mesh_shape = (nv, dim, k)
            data = g["densities"]
        else:
            data = g["positions"]
            shape, mesh_id = tuple(data.shape[1:]), None
        offsets = {
            data.name.rsplit("/", 1)[1]: self._offset(data, (n, *shape), _F8),
            "times": self._offset(g["times"], (n,), _F8),
            "crc": self._offset(g["crc"], (n,), np.dtype("<u4")),
            "clock": self._offset(g["clock"], (2,), _F8),
        }
        if kind == "particles":
            offsets["weights"] = self._offset(g["weights"], shape[:1], _F8)
        attrs = {k: _from_h5_attr(v) for k, v in g.attrs.items() if k not in _RESERVED_ATTRS}
        tables = {}
        for name, t in g.get("tables", {}).items():
            values = t["values"]
            row = tuple(values.shape[1:])
            tables[name] = (row, self._offset(values, (n, *row), _F8), self._offset(t["times"], (n,), _F8))
        return _Job(key, kind, int(g.attrs["job_index"]), attrs, shape, mesh_id, offsets, mesh_shape, tables)

    # -- raw access --------------------------------------------------------------------------------

    # Every access to the descriptor holds the lock and finds the file open: a close by another
    # thread could otherwise free the number for an unrelated file that the access then hits.
    def _read(self, offset: int, shape: tuple[int, ...], dtype: np.dtype = _F8) -> np.ndarray:
        with self._lock:
            self._check_open()
            return _pread(self._fd, np.empty(shape, dtype=dtype), offset)

    def _write(self, offset: int, data: np.ndarray | bytes) -> None:
        with self._lock:
            self._check_writable()
            _pwrite(self._fd, data if isinstance(data, bytes) else _le(data).tobytes(), offset)

    def _flush(self) -> None:
        with self._lock:
            self._check_writable()
            if self.sync:
                os.fdatasync(self._fd)

    def _stored_times(self, job: _Job) -> np.ndarray:
        """The finite prefix of the job's times: its stored snapshots."""
        t = self._read(job.offsets["times"], (len(self._times),))
        finite = np.isfinite(t)
        k = int(np.argmin(finite)) if not finite.all() else len(t)
        if finite[k:].any():
            raise self._fail(
                f"job {job.key}: snapshot {k + int(np.argmax(finite[k:]))} stored after a missing one"
            )
        return t[:k]

    def _row(self, job: _Job, i: int) -> np.ndarray:
        row = self._read(job.offsets[job.dataset] + i * job.row_bytes, job.shape)
        crc = int(self._read(job.offsets["crc"] + 4 * i, (), np.dtype("<u4")))
        if zlib.crc32(row.tobytes()) != crc:
            raise self._fail(f"job {job.key}: snapshot {i} of {job.dataset} is damaged (its CRC-32 differs)")
        return row

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"run file {self.path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise ValueError(f"run file {self.path} is open read-only (mode='r')")

    def _job(self, key: str) -> _Job:
        try:
            return self._jobs[key]
        except KeyError:
            raise KeyError(f"run file {self.path} has no job {key!r}") from None

    def _time_index(self, what: str, t: float) -> int:
        i = int(np.searchsorted(self._times, t))
        tol = 1e-12 * max(1.0, abs(float(self._times[-1])))
        for j in (i - 1, i):
            if 0 <= j < len(self._times) and abs(self._times[j] - t) <= tol:
                return j
        raise ValueError(f"{what}: t = {t!r} is not one of the run's output times")

    # -- writing -----------------------------------------------------------------------------------

    def start_job(
        self,
        key: str,
        kind: str,
        *,
        mesh: MeshGeometry | None = None,
        weights: np.ndarray | None = None,
        **attrs: Any,
    ) -> None:
        """Start job ``key`` as laid out: ``kind="grid"`` with its ``mesh``, or ``"particles"`` with
        ``weights`` (N,). Stores the weights and the start time; starting it again with the same
        kind, mesh, weights and attrs does nothing (resuming); any difference raises ``ValueError``
        naming it."""
        self._check_writable()
        with self._lock:
            job = self._job(key)

            def differ(what: str) -> ValueError:
                return ValueError(
                    f"run file {self.path}: job {key} exists with another {what}; a resumed run must "
                    "start each job as before (or use a new run file)"
                )

            if job.kind != kind:
                raise differ(f"kind ({job.kind}, not {kind})")
            if kind == "grid":
                if mesh is None or weights is not None:
                    raise ValueError(f"grid job {key} needs a mesh and no weights")
                mesh_id = _mesh_id(mesh.kind, _mesh_arrays(mesh))
                if mesh_id != job.mesh_id:
                    raise differ(f"mesh ({job.mesh_id}, not {mesh_id})")
            else:
                if weights is None or mesh is not None:
                    raise ValueError(f"particle job {key} needs weights and no mesh")
                w = np.array(weights, dtype=np.float64)
                if w.shape != job.shape[:1] or not np.isfinite(w).all():
                    raise ValueError(
                        f"particle job {key}: weights must be {job.shape[:1]} finite; got {w.shape}"
                    )
                # The start time commits the weights: until it is set they may be half-written.
                if np.isnan(self._clock(job)[0]):
                    self._write(job.offsets["weights"], w)
                    self._flush()
                elif not np.array_equal(self._read(job.offsets["weights"], job.shape[:1]), w):
                    raise differ("weights")
            user = {name: _normalise_attr(name, v) for name, v in attrs.items()}
            names = sorted(set(job.attrs) | set(user))
            changed = [
                n
                for n in names
                if n not in job.attrs or n not in user or not _same_attr(job.attrs[n], user[n])
            ]
            if changed:
                detail = ", ".join(
                    f"{n}: {job.attrs.get(n, '<absent>')!r} -> {user.get(n, '<absent>')!r}" for n in changed
                )
                raise differ(f"attrs ({detail})")
            clock = self._read(job.offsets["clock"], (2,))
            if np.isnan(clock[0]):
                self._write(job.offsets["clock"], np.array([time.time()]))
            self._flush()

    def append(self, key: str, t: float, state: np.ndarray) -> None:
        """Store the snapshot ``state`` of job ``key`` at output time ``t``; durable when this returns.

        ``state``: densities (C,) for a grid job, positions (N, d) for a particle job; stored as
        float64. Snapshots come in order of the run's times; a repeat of the last snapshot (same
        time and values) is a no-op, anything else raises ``ValueError``.
        """
        self._check_writable()
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"job {key}: snapshot time must be finite; got {t}")
        state = np.asarray(state, dtype=np.float64)
        with self._lock:
            self._check_writable()
            job = self._job(key)
            if self.is_complete(key):
                raise ValueError(f"job {key} is complete: no more snapshots")
            if state.shape != job.shape:
                what = "densities" if job.kind == "grid" else "positions"
                raise ValueError(f"{job.kind} job {key}: {what} must be {job.shape}; got {state.shape}")
            k = job.n_stored
            if k and t == job.last_t and np.array_equal(self._row(job, k - 1), state, equal_nan=True):
                return
            if k == len(self._times) or abs(t - self._times[k]) > 1e-12 * max(
                1.0, abs(float(self._times[-1]))
            ):
                last = f"the last stored one at t={job.last_t!r}" if k else "no snapshot stored yet"
                after = (
                    f"next output time {float(self._times[k])!r}"
                    if k < len(self._times)
                    else "no output time left"
                )
                raise ValueError(
                    f"job {key}: snapshot at t={t!r} does not follow {last} ({after}; only an "
                    "identical repeat of the last is allowed)"
                )
            data = _le(state).tobytes()
            self._write(job.offsets[job.dataset] + k * job.row_bytes, data)
            self._write(job.offsets["crc"] + 4 * k, np.array(zlib.crc32(data), dtype="<u4"))
            self._flush()
            self._write(job.offsets["times"] + 8 * k, np.array(t))  # the commit mark
            self._flush()
            job.n_stored, job.last_t = k + 1, t
            self._write_xdmf(job, force=False)

    def finish_job(self, key: str) -> None:
        """Mark job ``key`` complete (its finish time); durable when this returns."""
        self._check_writable()
        with self._lock:
            job = self._job(key)
            if not self.is_complete(key):
                self._write(job.offsets["clock"] + 8, np.array(time.time()))
                self._flush()
            self._write_xdmf(job)

    def add_diagnostic(self, name: str, key: str, t: float, value: float) -> None:
        """Record ``value`` of diagnostic ``name`` (one of those laid out) for job ``key`` at output
        time ``t``; a later call replaces it. Durable when this returns."""
        self.add_diagnostics([(name, key, t, value)])

    def add_diagnostics(self, rows: Sequence[tuple[str, str, float, float]]) -> None:
        """:meth:`add_diagnostic` for many (name, key, t, value) rows, made durable together."""
        self._check_writable()
        with self._lock:
            for name, key, t, value in rows:
                if name not in self._diag:
                    raise ValueError(
                        f"run file {self.path}: no diagnostic {name!r} (laid out: {sorted(self._diag)})"
                    )
                job = self._job(key)
                i = self._time_index(f"diagnostic {name} of {key}", float(t))
                offset = self._diag[name] + 8 * (job.index * len(self._times) + i)
                self._write(offset, np.array(float(value)))
            if rows:
                self._flush()

    def add_row(self, key: str, name: str, t: float, values: np.ndarray) -> None:
        """Store ``values`` as job ``key``'s row of table ``name`` (laid out by :class:`JobLayout`)
        at output time ``t``; a later call replaces it. Durable when this returns."""
        self._check_writable()
        with self._lock:
            shape, values_at, times_at = self._table(key, name)
            values = np.asarray(values, dtype=np.float64)
            if values.shape != shape:
                raise ValueError(f"job {key}: table {name} rows must be {shape}; got {values.shape}")
            i = self._time_index(f"table {name} of {key}", float(t))
            self._write(times_at + 8 * i, np.array(np.nan))  # invalid while the row changes
            self._flush()
            self._write(values_at + i * 8 * math.prod(shape), values)
            self._flush()
            self._write(times_at + 8 * i, np.array(float(t)))
            self._flush()

    def _table(self, key: str, name: str) -> tuple[tuple[int, ...], int, int]:
        job = self._job(key)
        if name not in job.tables:
            raise ValueError(
                f"run file {self.path}: job {key} has no table {name!r} (laid out: {sorted(job.tables)})"
            )
        return job.tables[name]

    # -- reading -----------------------------------------------------------------------------------

    def table(self, key: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(times (m,), rows (m, ...)) of job ``key``'s table ``name``: the rows stored, by time."""
        self._check_open()
        with self._lock:
            shape, values_at, times_at = self._table(key, name)
            n = len(self._times)
            t = self._read(times_at, (n,))
            have = np.flatnonzero(np.isfinite(t))
            rows = np.empty((len(have), *shape))
            for j, i in enumerate(have):
                rows[j] = self._read(values_at + int(i) * 8 * math.prod(shape), shape)
            return t[have], rows

    @property
    def times(self) -> np.ndarray:
        """(n,) the run's output times."""
        return self._times.copy()

    def jobs(self) -> list[str]:
        """Job keys, in run order."""
        self._check_open()
        return list(self._jobs)

    def job_state(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(times (k,), states (k, C) or (k, N, d)) stored so far for job ``key``; None if no such job."""
        self._check_open()
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return None
            times = self._stored_times(job)
            states = np.empty((len(times), *job.shape))
            for i in range(len(times)):
                states[i] = self._row(job, i)
            return times, states

    def snapshot(self, key: str, i: int) -> np.ndarray:
        """Stored snapshot ``i`` of job ``key`` (CRC-checked); ``IndexError`` if not stored."""
        self._check_open()
        with self._lock:
            job = self._job(key)
            n = len(self._stored_times(job))
            if not 0 <= i < n:
                raise IndexError(f"job {key} has {n} snapshots stored, not {i + 1}")
            return self._row(job, i)

    def last_state(self, key: str) -> tuple[float, np.ndarray] | None:
        """(t, state) of the last stored snapshot of job ``key``; None if it has none (or no such job)."""
        self._check_open()
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return None
            times = self._stored_times(job)
            return (float(times[-1]), self._row(job, len(times) - 1)) if len(times) else None

    def _clock(self, job: _Job) -> np.ndarray:
        return self._read(job.offsets["clock"], (2,))

    def is_complete(self, key: str) -> bool:
        """Whether job ``key`` exists and was finished."""
        self._check_open()
        job = self._jobs.get(key)
        return job is not None and bool(np.isfinite(self._clock(job)[1]))

    def job_info(self, key: str) -> dict[str, Any]:
        """kind, complete, n (snapshots stored), size (C or N), d, mesh_id, attrs, and started /
        finished (UTC ISO times, None if not yet) of job ``key``."""
        self._check_open()
        with self._lock:
            job = self._job(key)
            clock = self._clock(job)

            def iso(x: float) -> str | None:
                return (
                    datetime.fromtimestamp(x, UTC).isoformat(timespec="seconds") if np.isfinite(x) else None
                )

            return {
                "kind": job.kind,
                "complete": bool(np.isfinite(clock[1])),
                "n": len(self._stored_times(job)),
                "size": job.shape[0],
                "d": job.shape[1] if job.kind == "particles" else None,
                "mesh_id": job.mesh_id,
                "attrs": dict(job.attrs),
                "started": iso(clock[0]),
                "finished": iso(clock[1]),
            }

    def weights(self, key: str) -> np.ndarray:
        """(N,) weights of particle job ``key`` (NaN before it started)."""
        self._check_open()
        job = self._job(key)
        if job.kind != "particles":
            raise ValueError(f"job {key} is a {job.kind} job: no weights")
        return self._read(job.offsets["weights"], job.shape[:1])

    def diagnostics(self, name: str) -> dict[str, np.ndarray]:
        """Diagnostic ``name``: job key -> (m, 2) rows (t, value) of the values computed, by t."""
        self._check_open()
        if name not in self._diag:
            return {}
        values = self._read(self._diag[name], (len(self._jobs), len(self._times)))
        out = {}
        for key, row in zip(self._jobs, values, strict=True):
            have = np.isfinite(row)
            if have.any():
                out[key] = np.column_stack([self._times[have], row[have]])
        return out

    def diagnostic_names(self) -> list[str]:
        """Names of the diagnostics with at least one value, sorted."""
        self._check_open()
        return sorted(name for name in self._diag if self.diagnostics(name))

    @property
    def case_text(self) -> str:
        return self._case["text"]

    @property
    def settings(self) -> dict[str, str] | None:
        """What the run depends on (``create``'s ``settings``); None if none were given."""
        text = self._case.get("settings")
        return None if text is None else json.loads(text)

    @property
    def provenance(self) -> dict[str, Any] | None:
        """How the run was made (``create``'s ``provenance``); None if not recorded."""
        text = self._case.get("provenance")
        return None if text is None else json.loads(text)

    @property
    def overrides(self) -> list[tuple[str, Any]]:
        """The (dotted key, value) overrides the run was made with."""
        return [tuple(p) for p in json.loads(self._case.get("overrides", "[]"))]

    @property
    def case_name(self) -> str:
        return self._case["name"]

    @property
    def version(self) -> str:
        """``vlasov_tf.__version__`` of the code that created the run."""
        return self._case["version"]

    @property
    def created(self) -> str:
        """Creation time, ISO 8601 UTC."""
        return self._case["created"]

    def verify(self) -> None:
        """Read every stored snapshot, checking its CRC-32; ``RunFileError`` if one is damaged."""
        self._check_open()
        with self._lock:
            for key in self._jobs:
                self.job_state(key)

    # -- XDMF --------------------------------------------------------------------------------------

    def _write_xdmf(self, job: _Job, *, force: bool = True) -> None:
        """Rewrite the XDMF companion of ``job`` for its stored snapshots (writers only); without
        ``force`` at most every :data:`XDMF_INTERVAL` seconds before the last output (a rewrite
        is O(snapshots): at every one of many fast snapshots it would be quadratic)."""
        if job.kind == "particles" and job.shape[1] not in (2, 3):
            return  # particles in R^d, d > 3, have no XDMF geometry
        if job.xdmf_shown == job.n_stored:
            return
        now = time.monotonic()
        if not force and job.n_stored < len(self._times) and now - job.xdmf_at < XDMF_INTERVAL:
            return
        job.xdmf_shown, job.xdmf_at = job.n_stored, now
        path = xdmf_path(self.path, job.key)
        if job.n_stored == 0:
            path.unlink(missing_ok=True)
            return
        h5 = self.path.name
        g = f"/jobs/{job.key}"
        while len(job.xdmf_steps) < job.n_stored:
            i = len(job.xdmf_steps)
            job.xdmf_steps.append(_xdmf_step(job, h5, g, i, float(self._times[i])))
        del job.xdmf_steps[job.n_stored :]
        text = (
            '<?xml version="1.0" ?>\n<Xdmf Version="3.0">\n  <Domain>\n'
            f'    <Grid Name="{job.key}" GridType="Collection" CollectionType="Temporal">\n'
            + "".join(job.xdmf_steps)
            + "    </Grid>\n  </Domain>\n</Xdmf>\n"
        )
        _write_text(path, text)

    # -- closing -----------------------------------------------------------------------------------

    def discard(self) -> None:
        """Close and delete the run file and its companions (a run that computed nothing)."""
        self._close(unlink=True)

    def close(self) -> None:
        """Release the file and the writer lock. Idempotent."""
        self._close(unlink=False)

    def _close(self, *, unlink: bool) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if not self.readonly and not unlink:
                    for job in self._jobs.values():  # what a throttled rewrite left out
                        self._write_xdmf(job)
            finally:
                self._closed = True
                if unlink and not self.readonly:
                    for key in self._jobs:
                        xdmf_path(self.path, key).unlink(missing_ok=True)
                    self.path.unlink(missing_ok=True)
                os.close(self._fd)
                if self._lock_fd is not None:
                    _unlock(self.path, self._lock_fd)
                    self._lock_fd = None

    def __enter__(self) -> RunFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.readonly else "writable")
        return f"RunFile({str(self.path)!r}, {state}, jobs={len(self._jobs)})"


def _unlock(path: Path, fd: int) -> None:
    """Remove the lock file (still holding it), then release it."""
    with contextlib.suppress(FileNotFoundError):
        lock_path(path).unlink()
    os.close(fd)


def _check_layouts(jobs: Sequence[JobLayout]) -> list[JobLayout]:
    keys: list[str] = []
    for job in jobs:
        key = _check_key(job.key)
        if job.kind not in KINDS:
            raise ValueError(f"job {key}: kind must be one of {KINDS}; got {job.kind!r}")
        for other in keys:
            if other == key or other.startswith(key + "/") or key.startswith(other + "/"):
                raise ValueError(f"job key {key!r} repeats or nests with job {other!r}")
        keys.append(key)
        for name, value in job.attrs.items():
            if name in _RESERVED_ATTRS or not _ATTR_NAME.fullmatch(name):
                raise ValueError(f"job {key}: attr name {name!r} is reserved or not an identifier")
            _normalise_attr(name, value)
        for name in job.tables:
            if not _ATTR_NAME.fullmatch(name):
                raise ValueError(f"job {key}: table name {name!r} is not an identifier")
        if job.kind == "grid" and (job.mesh is None or job.tokens is not None):
            raise ValueError(f"grid job {key} needs a mesh and no tokens")
        if job.kind == "particles" and (
            job.mesh is not None or not job.tokens or job.tokens < 1 or not job.d or job.d < 1
        ):
            raise ValueError(f"particle job {key} needs tokens >= 1, d >= 1 and no mesh")
    return list(jobs)


def _write_layout(
    path: Path,
    case_text: str,
    case_name: str,
    times: np.ndarray,
    jobs: list[JobLayout],
    diagnostics: list[str],
    settings: Mapping[str, str] | None,
    overrides: Sequence[tuple[str, Any]],
    provenance: Mapping[str, Any] | None,
) -> None:
    """Write a run file's whole layout (module docstring) to ``path``, every dataset allocated."""
    from vlasov_tf import __version__

    n = len(times)
    # Superblock v3: virtual datasets (the XDMF steps) need HDF5 1.10 file structures.
    with h5py.File(path, "w", libver=("v110", "latest")) as f:
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "run_id": secrets.token_hex(16)})
        case = f.create_group("case")
        case.attrs.update(
            {
                "text": case_text,
                "name": case_name,
                "version": __version__,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "overrides": json.dumps([[k, v] for k, v in overrides], default=str),
            }
        )
        if settings is not None:
            case.attrs["settings"] = json.dumps(dict(settings), sort_keys=True)
        if provenance is not None:
            case.attrs["provenance"] = json.dumps(dict(provenance), default=str)
        f.create_dataset("times", data=times)
        meshes = f.create_group("meshes")
        groups = f.create_group("jobs")

        def allocated(g: h5py.Group, name: str, shape: tuple[int, ...], dtype: str = "<f8") -> h5py.Dataset:
            fill = 0 if dtype == "<u4" else np.nan
            return g.create_dataset(
                name, shape, dtype=dtype, fillvalue=fill, dcpl=_early_dcpl(), fill_time="alloc"
            )

        for index, job in enumerate(jobs):
            g = groups.create_group(job.key)
            g.attrs.update({"kind": job.kind, "job_index": index})
            g.attrs.update({k: _normalise_attr(k, v) for k, v in job.attrs.items()})
            allocated(g, "times", (n,))
            allocated(g, "crc", (n,), "<u4")
            allocated(g, "clock", (2,))
            name = "densities" if job.kind == "grid" else "positions"
            data = allocated(g, name, (n, *job.state_shape))
            if job.kind == "grid":
                arrays = _mesh_arrays(job.mesh)
                mesh_id = _mesh_id(job.mesh.kind, arrays)
                if mesh_id not in meshes:
                    m = meshes.create_group(mesh_id)
                    for a, value in arrays.items():
                        m.create_dataset(a, data=_le(value))
                    m.attrs.update(
                        {
                            "id": mesh_id,
                            "kind": job.mesh.kind,
                            "level": -1 if job.mesh.level is None else int(job.mesh.level),
                            "char_length": float(job.mesh.char_length),
                            "source": str(job.mesh.source),
                        }
                    )
                g["mesh"] = meshes[mesh_id]
            else:
                allocated(g, "weights", (job.tokens,))
                g.create_dataset("vertex_ids", data=np.arange(job.tokens, dtype="<i8")[:, None])
            for table, row in job.tables.items():
                allocated(g, f"tables/{table}/values", (n, *row))
                allocated(g, f"tables/{table}/times", (n,))
            steps = g.create_group("step")
            source = h5py.VirtualSource(".", data.name, shape=data.shape, dtype=data.dtype)
            for i in range(n):
                layout = h5py.VirtualLayout(shape=job.state_shape, dtype=_F8)
                layout[...] = source[i]
                steps.create_virtual_dataset(str(i), layout, fillvalue=np.nan)
        diags = f.create_group("diagnostics")
        for name in diagnostics:
            ds = allocated(diags, _diag_name(name), (len(jobs), n))
            ds.attrs["name"] = name
            ds.attrs["jobs"] = [job.key for job in jobs]


def _hdf_item(h5: str, path: str, shape: tuple[int, ...], number: str = "Float", precision: int = 8) -> str:
    dims = " ".join(map(str, shape))
    return (
        f'<DataItem Dimensions="{dims}" NumberType="{number}" Precision="{precision}" Format="HDF">'
        f"{h5}:{path}</DataItem>"
    )


def _xdmf_step(job: _Job, h5: str, g: str, i: int, t: float) -> str:
    """One time step of a job's temporal collection: whole datasets only (what meshio reads)."""
    step = _hdf_item(h5, f"{g}/step/{i}", job.shape)
    lines = [f'      <Grid Name="{job.key} t={t:.6g}" GridType="Uniform">', f'        <Time Value="{t!r}"/>']
    if job.kind == "grid":
        (cells,) = job.shape
        n_vertices, dim, k = job.mesh_shape
        # The circle's cells are arcs: the segment between their two end points, in the plane.
        topo = 'TopologyType="Triangle"' if k == 3 else 'TopologyType="Polyline" NodesPerElement="2"'
        mesh = f"{g}/mesh"
        lines += [
            f'        <Topology {topo} NumberOfElements="{cells}">',
            "          " + _hdf_item(h5, f"{mesh}/cell_vertices", (cells, k), "Int", 8),
            "        </Topology>",
            f'        <Geometry GeometryType="{"XYZ" if dim == 3 else "XY"}">',
            "          " + _hdf_item(h5, f"{mesh}/vertices", (n_vertices, dim)),
            "        </Geometry>",
            '        <Attribute Name="density" AttributeType="Scalar" Center="Cell">',
            "          " + step,
            "        </Attribute>",
            '        <Attribute Name="area" AttributeType="Scalar" Center="Cell">',
            "          " + _hdf_item(h5, f"{mesh}/areas", (cells,)),
            "        </Attribute>",
        ]
    else:
        n, d = job.shape
        lines += [
            f'        <Topology TopologyType="Polyvertex" NumberOfElements="{n}" NodesPerElement="1">',
            "          " + _hdf_item(h5, f"{g}/vertex_ids", (n, 1), "Int", 8),
            "        </Topology>",
            f'        <Geometry GeometryType="{"XYZ" if d == 3 else "XY"}">',
            "          " + step,
            "        </Geometry>",
            '        <Attribute Name="weight" AttributeType="Scalar" Center="Node">',
            "          " + _hdf_item(h5, f"{g}/weights", (n,)),
            "        </Attribute>",
            '        <Attribute Name="position" AttributeType="Vector" Center="Node">',
            "          " + step,
            "        </Attribute>",
        ]
    lines.append("      </Grid>\n")
    return "\n".join(lines)
