"""The run file, :class:`RunFile`: made with its whole layout (:mod:`.layout`), then written in place
(rows, CRCs, the time as commit mark), read back CRC-checked, resumed; one writer at a time
(:mod:`.files`), its XDMF companions kept current (:mod:`.xdmf`).

The file format and why it is crash-safe: :mod:`vlasov_tf.runs.storage`.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .files import (
    RunFileBusy,
    lock_writer,
    pwrite,
    remove_stale_tmp,
    replace,
    tmp_name,
    unlock_writer,
)
from .layout import (
    MESH_KINDS,
    JobLayout,
    LoadedJob,
    RunFileError,
    check_layouts,
    check_name,
    little_endian,
    mesh_arrays,
    mesh_id,
    normalise_attr,
    same_attr,
    write_layout,
)
from .reader import RunReader, crc_of
from .xdmf import remove_xdmf, write_xdmf, xdmf_path

if TYPE_CHECKING:
    from vlasov_tf.geometry.meshes import MeshGeometry, PhaseMesh

__all__ = ["RunFile"]


class RunFile(RunReader):
    """One run's HDF5 file (:mod:`vlasov_tf.runs.storage` describes its layout and durability).

    Make one with :meth:`create` (which lays out every job), reopen one with :meth:`open` (to
    resume, or with ``mode="r"`` to read). States are float64: grid densities (C,), particle
    positions (N, d). Methods are thread-safe; one process writes a run at a time. Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(
        self, path: Path, lock_fd: int | None, *, readonly: bool, sync: bool, pending: Path | None = None
    ) -> None:
        # Private: use RunFile.create / RunFile.open.
        self.path = path
        self.readonly = readonly
        self.sync = sync
        self._lock_fd = lock_fd
        self._init_reader()
        self._bad_meshes: set[str] = set()  # damaged; rewritten when a job on them starts
        # A run replacing another (create's overwrite) writes to a temporary sibling until it
        # has stored something past its first output time (:meth:`_promote`).
        self._pending = pending
        try:
            self._fd = os.open(pending or path, os.O_RDONLY if readonly else os.O_RDWR)
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
            if readonly:  # a reader: every stored array it may rely on without reading it, checked
                damage = self._mesh_damage()
                damage += [d for job in self._jobs.values() for d in self._clock_damage(job)[1]]
                if damage:
                    raise self._damaged(damage[0])
            for job in self._jobs.values():
                # The finite prefix (a writer's redo_damaged resets a damaged tail).
                t = self._read(job.offsets["times"], (len(self._times),))
                k = int(np.argmin(np.isfinite(t))) if not np.isfinite(t).all() else len(t)
                if readonly:
                    self._stored_times(job)  # raises for times stored after a missing one
                job.n_stored = k
                job.last_t = float(t[k - 1]) if k else math.nan
            if not readonly and pending is None:
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

        With ``overwrite`` an existing ``path`` stays as it was until the new run has stored a
        snapshot past its first output time (or finished a job): the new run is written to a
        temporary sibling, then moved over ``path`` atomically; a new run closed before that (failed,
        interrupted) leaves the old file untouched.

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
            replacing = path.exists()
            try:
                write_layout(tmp, case_text, case_name, t, layouts, names, settings, overrides, provenance)
                if replacing:  # the old run stays until the new one has computed something
                    return cls(path, lock_fd, readonly=False, sync=sync, pending=tmp)
                replace(tmp, path, sync)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            remove_xdmf(path, [layout.key for layout in layouts])  # stale ones, in either layout
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

    # -- writing (the reading is RunReader's) ----------------------------------------------------

    def _write(self, offset: int, data: np.ndarray | bytes) -> None:
        with self._lock:
            self._check_writable()
            pwrite(self._fd, data if isinstance(data, bytes) else little_endian(data).tobytes(), offset)

    def _flush(self) -> None:
        with self._lock:
            self._check_writable()
            if self.sync:
                os.fdatasync(self._fd)

    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise ValueError(f"run file {self.path} is open read-only (mode='r')")

    def start_job(
        self,
        key: str,
        kind: str,
        *,
        mesh: MeshGeometry | PhaseMesh | None = None,
        weights: np.ndarray | None = None,
        **attrs: Any,
    ) -> None:
        """Start job ``key`` as laid out: ``kind="grid"`` or ``"phase"`` with its ``mesh``, or
        ``"particles"`` with ``weights`` (N,). Stores the weights and the start time; starting it
        again with the same kind, mesh, weights and attrs does nothing (resuming); any difference
        raises ``ValueError`` naming it."""
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
            if kind in MESH_KINDS:
                if mesh is None or weights is not None:
                    raise ValueError(f"{kind} job {key} needs a mesh and no weights")
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
                    if "checks" in job.offsets:
                        self._write(job.offsets["checks"], np.array(crc_of(w), dtype="<u4"))
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
            if mesh is not None and job.mesh_id in self._bad_meshes:
                self._rewrite_mesh(job.mesh_id, mesh)
            clock = self._read(job.offsets["clock"], (2,))
            if np.isnan(clock[0]):
                self._set_clock(job, 0, time.time())
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
                what = "densities" if job.kind in MESH_KINDS else "positions"
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
            crc = zlib.crc32(data)
            if self.format_version >= 3:  # the time too: a damaged time is found
                crc = zlib.crc32(data, crc_of(t))
            self._write(job.offsets[job.dataset] + k * job.row_bytes, data)
            self._write(job.offsets["crc"] + 4 * k, np.array(crc, dtype="<u4"))
            self._flush()
            self._write(job.offsets["times"] + 8 * k, np.array(t))  # the commit mark
            self._flush()
            job.n_stored, job.last_t = k + 1, t
            if self._pending is not None and k > 0:
                self._promote()
            if self._pending is None:
                write_xdmf(self.path, job, self._times, force=False)

    def finish_job(self, key: str) -> None:
        """Mark job ``key`` complete (its finish time); durable when this returns."""
        self._check_writable()
        with self._lock:
            job = self._job(key)
            if not self.is_complete(key):
                self._set_clock(job, 1, time.time())
            if self._pending is not None:
                self._promote()
            write_xdmf(self.path, job, self._times)

    def _set_clock(self, job: LoadedJob, i: int, value: float) -> None:
        """Clock entry ``i`` (0: start, 1: finish) := ``value``, its CRC-32 first; durable."""
        if "checks" in job.offsets:  # (no fsync between: see add_diagnostics)
            self._write(job.offsets["checks"] + 4 * (1 + i), np.array(crc_of(value), dtype="<u4"))
        self._write(job.offsets["clock"] + 8 * i, np.array(value))
        self._flush()

    def redo_damaged(self, layouts: Sequence[JobLayout] = (), with_job: Sequence[str] = ()) -> list[str]:
        """Find what fails its checksum (:meth:`damaged`) and make it to be redone: a job from
        before its first damaged snapshot or table row (from its start for damaged weights or start
        time), a damaged diagnostic value unset (computed again; one of ``with_job``, those a job
        writes as it runs, by redoing its job from that time), a damaged mesh rewritten from
        ``layouts`` (else when its job starts). Returns one line for each damaged thing."""
        self._check_writable()
        lines = []
        with self._lock:
            found = self.damaged()
            redo: dict[str, tuple[int, bool]] = {}
            for damage in found:
                lines.append(f"run file {self.path}: {damage.where} is damaged")
                if damage.job is not None:
                    k, restart = redo.get(damage.job, (len(self._times), False))
                    redo[damage.job] = (min(k, damage.index), restart or damage.restart)
                elif damage.diagnostic is not None:
                    at, j, i = damage.diagnostic
                    self._write(at + 8 * (j * len(self._times) + i), np.array(np.nan))
                    if damage.name in with_job:
                        key = list(self._jobs)[j]
                        k, restart = redo.get(key, (len(self._times), False))
                        redo[key] = (min(k, i), restart)
                elif damage.mesh is not None:
                    self._bad_meshes.add(damage.mesh)
            for key, (k, restart) in redo.items():
                self._truncate(self._jobs[key], k, restart)
                lines.append(f"  job {key} is redone from " + ("its start" if restart or k == 0
                             else f"t = {self._times[k - 1]:g}"))  # fmt: skip
            for layout in layouts:
                if layout.mesh is not None:
                    ident = mesh_id(layout.mesh.kind, mesh_arrays(layout.mesh))
                    if ident in self._bad_meshes:
                        self._rewrite_mesh(ident, layout.mesh)
                        lines.append(f"  mesh {ident} rewritten")
            self._flush()
        return lines

    def _truncate(self, job: LoadedJob, k: int, restart: bool) -> None:
        """Forget job ``job``'s snapshots from ``k`` on (and its start, with ``restart``)."""
        n = len(self._times)
        self._write(job.offsets["clock"] + 8, np.array(np.nan))  # not complete, first
        self._flush()
        self._write(job.offsets["times"] + 8 * k, np.full(n - k, np.nan))
        for _, _, times_at, _ in job.tables.values():
            self._write(times_at + 8 * k, np.full(n - k, np.nan))
        if restart:
            self._write(job.offsets["clock"], np.array(np.nan))
        self._flush()
        job.n_stored = min(job.n_stored, k)
        job.last_t = float(self._times[k - 1]) if job.n_stored else math.nan
        if self._pending is None:
            write_xdmf(self.path, job, self._times)

    def _rewrite_mesh(self, ident: str, mesh: MeshGeometry | PhaseMesh) -> None:
        arrays = mesh_arrays(mesh)
        for name, (offset, shape, dtype) in self._meshes[ident].items():
            a = little_endian(arrays[name])
            if a.shape != shape or a.dtype != dtype:
                raise self._fail(f"mesh {ident}: {name} is {a.shape} {a.dtype}, stored {shape} {dtype}")
            self._write(offset, a.tobytes())
        self._flush()
        self._bad_meshes.discard(ident)

    @property
    def replacing(self) -> bool:
        """Whether this run is still written beside the run file it replaces (``create``'s
        ``overwrite``): the old file stays until the new run stored a snapshot past its first time."""
        return self._pending is not None

    def _promote(self) -> None:
        """Move the pending new run over the one it replaces (atomically), and its XDMF companions."""
        pending = self._pending
        assert pending is not None
        replace(pending, self.path, self.sync)  # the descriptor follows the file to its new name
        self._pending = None
        remove_xdmf(self.path, list(self._jobs))  # those of the run this one replaced, either layout
        for job in self._jobs.values():  # then this run's
            job.xdmf_shown = -1
            write_xdmf(self.path, job, self._times)

    def add_diagnostic(self, name: str, key: str, t: float, value: float) -> None:
        """Record ``value`` of diagnostic ``name`` (one of those laid out) for job ``key`` at output
        time ``t``; a later call replaces it. Durable when this returns."""
        self.add_diagnostics([(name, key, t, value)])

    def add_diagnostics(self, rows: Sequence[tuple[str, str, float, float]]) -> None:
        """:meth:`add_diagnostic` for many (name, key, t, value) rows, made durable together."""
        self._check_writable()
        with self._lock:
            for name, *_ in rows:
                if name not in self._diag:
                    raise ValueError(
                        f"run file {self.path}: no diagnostic {name!r} (laid out: {sorted(self._diag)})"
                    )
            # Crash-safe with the checksums: a value being replaced is NaN (not computed) while its
            # CRC-32 changes; NaN is the commit mark, as a snapshot's time is.
            writes = []
            for name, key, t, value in rows:
                at, crc_at = self._diag[name]
                job = self._job(key)
                i = self._time_index(f"diagnostic {name} of {key}", float(t))
                cell = job.index * len(self._times) + i
                writes.append((at + 8 * cell, None if crc_at is None else crc_at + 4 * cell, float(value)))
            old = [float(self._read(at, ())) for at, _, _ in writes]
            if any(np.isfinite(old)):
                for (at, _, _), before in zip(writes, old, strict=True):
                    if np.isfinite(before):
                        self._write(at, np.array(np.nan))
                self._flush()
            # The CRC-32s, then the values (no fsync between: a machine that dies in between
            # may leave a value without its CRC, found as damaged and computed again).
            for _, crc_at, value in writes:
                if crc_at is not None:
                    self._write(crc_at, np.array(crc_of(value), dtype="<u4"))
            for at, _, value in writes:
                self._write(at, np.array(value))
            if rows:
                self._flush()

    def add_row(self, key: str, name: str, t: float, values: np.ndarray) -> None:
        """Store ``values`` as job ``key``'s row of table ``name`` (laid out by :class:`JobLayout`)
        at output time ``t``; a later call replaces it. Durable when this returns."""
        self._check_writable()
        with self._lock:
            shape, values_at, times_at, crc_at = self._table(key, name)
            values = np.asarray(values, dtype=np.float64)
            if values.shape != shape:
                raise ValueError(f"job {key}: table {name} rows must be {shape}; got {values.shape}")
            i = self._time_index(f"table {name} of {key}", float(t))
            self._write(times_at + 8 * i, np.array(np.nan))  # invalid while the row changes
            self._flush()
            self._write(values_at + i * 8 * math.prod(shape), values)
            if crc_at is not None:
                self._write(crc_at + 4 * i, np.array(crc_of(values, float(t)), dtype="<u4"))
            self._flush()
            self._write(times_at + 8 * i, np.array(float(t)))
            self._flush()

    def _table(self, key: str, name: str) -> tuple[tuple[int, ...], int, int, int | None]:
        job = self._job(key)
        if name not in job.tables:
            raise ValueError(
                f"run file {self.path}: job {key} has no table {name!r} (laid out: {sorted(job.tables)})"
            )
        return job.tables[name]

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
                if not self.readonly and not unlink and self._pending is None:
                    for job in self._jobs.values():  # what a throttled rewrite left out
                        write_xdmf(self.path, job, self._times)
            finally:
                self._closed = True
                if self._pending is not None:  # nothing past t0: the replaced run stays as it was
                    self._pending.unlink(missing_ok=True)
                elif unlink and not self.readonly:
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
