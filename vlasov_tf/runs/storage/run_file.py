"""The run file, :class:`RunFile`: made with its whole layout (:mod:`.layout`), then written in place
(rows, CRCs, the time as commit mark), read back CRC-checked, resumed; one writer at a time
(:mod:`.files`), its XDMF companions kept current (:mod:`.xdmf`).

The file format and why it is crash-safe: :mod:`vlasov_tf.runs.storage`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .files import (
    RunFileBusy,
    lock_writer,
    pread,
    pwrite,
    remove_stale_tmp,
    replace,
    tmp_name,
    unlock_writer,
)
from .layout import (
    F8,
    JobLayout,
    LoadedJob,
    RunFileError,
    check_layouts,
    check_name,
    little_endian,
    mesh_arrays,
    mesh_id,
    normalise_attr,
    read_layout,
    same_attr,
    write_layout,
)
from .xdmf import remove_xdmf, write_xdmf, xdmf_path

if TYPE_CHECKING:
    from vlasov_tf.geometry.meshes import MeshGeometry

__all__ = ["RunFile"]


class RunFile:
    """One run's HDF5 file (:mod:`vlasov_tf.runs.storage` describes its layout and durability).

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
                    remove_stale_tmp(stale)
                remove_xdmf(path, list(self._jobs), legacy_only=True)  # now in <run>.xdmf/
                for job in self._jobs.values():  # a kill may have left them a snapshot behind
                    write_xdmf(self.path, job, self._times)
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
        layouts = check_layouts(jobs)
        names = [check_name(n) for n in diagnostics]
        if len(set(names)) != len(names):
            raise ValueError(f"run file {path}: diagnostic names repeat: {names}")
        lock_fd = lock_writer(path)
        try:
            if path.exists() and not overwrite:  # again, holding the lock: made meanwhile?
                raise FileExistsError(f"run file {path} exists: open it to resume, or pass overwrite=True")
            remove_stale_tmp(path)
            tmp = tmp_name(path)
            try:
                write_layout(tmp, case_text, case_name, t, layouts, names, settings, overrides, provenance)
                replace(tmp, path, sync)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            remove_xdmf(path, [layout.key for layout in layouts])  # those of a run this one replaced
            return cls(path, lock_fd, readonly=False, sync=sync)
        except BaseException:
            unlock_writer(path, lock_fd)
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
        lock_fd = lock_writer(path)
        try:
            return cls(path, lock_fd, readonly=False, sync=sync)
        except BaseException:
            unlock_writer(path, lock_fd)
            raise

    # -- loading -----------------------------------------------------------------------------------

    def _fail(self, problem: str) -> RunFileError:
        return RunFileError(f"run file {self.path}: {problem}")

    def _load(self) -> None:
        """Validate the file and load its layout (byte offsets; not the snapshots)."""
        layout = read_layout(self.path)
        self._run_id, self._case, self._times = layout.run_id, layout.case, layout.times
        self._jobs, self._diag = layout.jobs, layout.diagnostics
        size = os.fstat(self._fd).st_size
        for job in self._jobs.values():
            if job.offsets[job.dataset] + len(self._times) * job.row_bytes > size:
                raise self._fail(f"truncated: it ends at byte {size}, inside job {job.key}'s snapshots")

    # -- raw access --------------------------------------------------------------------------------

    # Every access to the descriptor holds the lock and finds the file open: a close by another
    # thread could otherwise free the number for an unrelated file that the access then hits.
    def _read(self, offset: int, shape: tuple[int, ...], dtype: np.dtype = F8) -> np.ndarray:
        with self._lock:
            self._check_open()
            return pread(self._fd, np.empty(shape, dtype=dtype), offset)

    def _write(self, offset: int, data: np.ndarray | bytes) -> None:
        with self._lock:
            self._check_writable()
            pwrite(self._fd, data if isinstance(data, bytes) else little_endian(data).tobytes(), offset)

    def _flush(self) -> None:
        with self._lock:
            self._check_writable()
            if self.sync:
                os.fdatasync(self._fd)

    def _stored_times(self, job: LoadedJob) -> np.ndarray:
        """The finite prefix of the job's times: its stored snapshots."""
        t = self._read(job.offsets["times"], (len(self._times),))
        finite = np.isfinite(t)
        k = int(np.argmin(finite)) if not finite.all() else len(t)
        if finite[k:].any():
            raise self._fail(
                f"job {job.key}: snapshot {k + int(np.argmax(finite[k:]))} stored after a missing one"
            )
        return t[:k]

    def _row(self, job: LoadedJob, i: int) -> np.ndarray:
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

    def _job(self, key: str) -> LoadedJob:
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
                given = mesh_id(mesh.kind, mesh_arrays(mesh))
                if given != job.mesh_id:
                    raise differ(f"mesh ({job.mesh_id}, not {given})")
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
            user = {name: normalise_attr(name, v) for name, v in attrs.items()}
            names = sorted(set(job.attrs) | set(user))
            changed = [
                n
                for n in names
                if n not in job.attrs or n not in user or not same_attr(job.attrs[n], user[n])
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
            data = little_endian(state).tobytes()
            self._write(job.offsets[job.dataset] + k * job.row_bytes, data)
            self._write(job.offsets["crc"] + 4 * k, np.array(zlib.crc32(data), dtype="<u4"))
            self._flush()
            self._write(job.offsets["times"] + 8 * k, np.array(t))  # the commit mark
            self._flush()
            job.n_stored, job.last_t = k + 1, t
            write_xdmf(self.path, job, self._times, force=False)

    def finish_job(self, key: str) -> None:
        """Mark job ``key`` complete (its finish time); durable when this returns."""
        self._check_writable()
        with self._lock:
            job = self._job(key)
            if not self.is_complete(key):
                self._write(job.offsets["clock"] + 8, np.array(time.time()))
                self._flush()
            write_xdmf(self.path, job, self._times)

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

    def _clock(self, job: LoadedJob) -> np.ndarray:
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
                        write_xdmf(self.path, job, self._times)
            finally:
                self._closed = True
                if unlink and not self.readonly:
                    remove_xdmf(self.path, list(self._jobs))
                    self.path.unlink(missing_ok=True)
                os.close(self._fd)
                if self._lock_fd is not None:
                    unlock_writer(self.path, self._lock_fd)
                    self._lock_fd = None

    def __enter__(self) -> RunFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.readonly else "writable")
        return f"RunFile({str(self.path)!r}, {state}, jobs={len(self._jobs)})"
