"""Reading a run file, every array checked against its checksum: :class:`RunReader`, the part of
:class:`~vlasov_tf.runs.storage.RunFile` that reads (snapshots, weights, clocks, diagnostics,
tables, meshes), and :meth:`RunReader.damaged`, the list of what fails its check (what a resume
redoes).

Checksums (format version 3): a snapshot row's CRC-32 covers its bytes and its time's; the
weights and each clock entry have theirs in the job's ``checks`` (3,); each diagnostic value and
table row its own (a table row's with its time); a stored mesh is named by the SHA-256 of its arrays
(its id); the output times and the particles' vertex ids carry HDF5's Fletcher-32 (checked by
HDF5 itself). A version 2 file (written before) has CRC-32s for its snapshot rows only: those and
its meshes are checked, and every snapshot time against the run's output times.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .files import pread
from .layout import F8, LoadedJob, RunFileError, little_endian, read_layout

__all__ = ["Damage", "RunReader", "crc_of"]

_U4 = np.dtype("<u4")
_MESH_ORDER = ("vertices", "cell_vertices", "centres", "areas")  # as layout.mesh_id hashes them


def crc_of(*parts: np.ndarray | float) -> int:
    """CRC-32 of the little-endian float64 bytes of ``parts`` (arrays or numbers), one after another."""
    crc = 0
    for part in parts:
        crc = zlib.crc32(little_endian(np.asarray(part, dtype=F8)).tobytes(), crc)
    return crc


@dataclass(frozen=True)
class Damage:
    """A stored array (or part) that fails its checksum: ``where`` names it (dataset and row);
    ``job`` and ``index``: the job and output index a resume redoes from (``index`` 0 and
    ``restart`` True: the job from its start; ``job`` None: a diagnostic value or a mesh)."""

    where: str
    job: str | None = None
    index: int = 0
    restart: bool = False
    diagnostic: tuple[int, int, int] | None = None  # (offset of its values, job row, time index)
    name: str | None = None  # the diagnostic's
    mesh: str | None = None


class RunReader:
    """The reading part of a run file (:class:`~vlasov_tf.runs.storage.RunFile` adds the writing);
    every read checks what it reads and raises :class:`RunFileError` naming the damaged dataset."""

    path: Path
    readonly: bool
    _fd: int
    _pending: Path | None

    def _init_reader(self) -> None:
        self._lock = threading.RLock()
        self._closed = True

    # -- loading -----------------------------------------------------------------------------------

    def _fail(self, problem: str) -> RunFileError:
        return RunFileError(f"run file {self.path}: {problem}")

    def _damaged(self, damage: Damage) -> RunFileError:
        return self._fail(f"{damage.where} is damaged: `--resume` the run to redo it")

    def _load(self) -> None:
        """Validate the file and load its layout (byte offsets; not the snapshots)."""
        layout = read_layout(self._pending or self.path, name=self.path)
        self._run_id, self._case, self._times = layout.run_id, layout.case, layout.times
        self._jobs, self._diag, self._meshes = layout.jobs, layout.diagnostics, layout.meshes
        self.format_version = layout.version
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

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"run file {self.path} is closed")

    def _job(self, key: str) -> LoadedJob:
        try:
            return self._jobs[key]
        except KeyError:
            raise KeyError(f"run file {self.path} has no job {key!r}") from None

    def _time_index(self, what: str, t: float) -> int:
        i = int(np.searchsorted(self._times, t))
        tol = self._tolerance()
        for j in (i - 1, i):
            if 0 <= j < len(self._times) and abs(self._times[j] - t) <= tol:
                return j
        raise ValueError(f"{what}: t = {t!r} is not one of the run's output times")

    def _tolerance(self) -> float:
        """How far a stored time may be from its output time (``append`` allows as much)."""
        return 1e-12 * max(1.0, abs(float(self._times[-1])))

    # -- checked reads -----------------------------------------------------------------------------

    def _stored_times(self, job: LoadedJob) -> np.ndarray:
        """The finite prefix of the job's times: its stored snapshots."""
        t = self._read(job.offsets["times"], (len(self._times),))
        finite = np.isfinite(t)
        k = int(np.argmin(finite)) if not finite.all() else len(t)
        if finite[k:].any():
            raise self._damaged(self._tail_damage(job, k, t))
        return t[:k]

    def _tail_damage(self, job: LoadedJob, k: int, t: np.ndarray) -> Damage:
        j = k + int(np.argmax(np.isfinite(t[k:])))
        return Damage(f"dataset /jobs/{job.key}/times (snapshot {j} stored after a missing one)", job.key, k)

    def _row_damage(self, job: LoadedJob, i: int, row: np.ndarray, t: float) -> Damage | None:
        crc = int(self._read(job.offsets["crc"] + 4 * i, (), _U4))
        data = little_endian(row).tobytes()
        want = zlib.crc32(data, 0 if self.format_version < 3 else crc_of(t))  # its time, then the row
        if crc != want or abs(t - self._times[i]) > self._tolerance():
            return Damage(f"dataset /jobs/{job.key}/{job.dataset}, snapshot {i} (t = {t:g})", job.key, i)
        return None

    def _row(self, job: LoadedJob, i: int, t: float | None = None) -> np.ndarray:
        row = self._read(job.offsets[job.dataset] + i * job.row_bytes, job.shape)
        if t is None:
            t = float(self._read(job.offsets["times"] + 8 * i, ()))
        damage = self._row_damage(job, i, row, t)
        if damage is not None:
            raise self._damaged(damage)
        return row

    def _checks(self, job: LoadedJob) -> np.ndarray | None:
        """(3,) the CRC-32s of the weights and the clock; None in a version 2 file."""
        at = job.offsets.get("checks")
        return None if at is None else self._read(at, (3,), _U4)

    def _clock_damage(self, job: LoadedJob, weights: bool = True) -> tuple[np.ndarray, list[Damage]]:
        """(the clock (2,), what fails its check: the clock's entries, and with ``weights`` the
        weights of a started particle job)."""
        clock = self._read(job.offsets["clock"], (2,))
        checks = self._checks(job)
        found = []
        if checks is not None:
            if not np.isnan(clock[0]) and crc_of(clock[0]) != checks[1]:
                found.append(Damage(f"dataset /jobs/{job.key}/clock (its start)", job.key, 0, restart=True))
            if not np.isnan(clock[1]) and crc_of(clock[1]) != checks[2]:
                last = max(job.n_stored - 1, 0)
                found.append(Damage(f"dataset /jobs/{job.key}/clock (its finish)", job.key, last))
            if weights and job.kind == "particles" and not np.isnan(clock[0]):
                w = self._read(job.offsets["weights"], job.shape[:1])
                if crc_of(w) != checks[0]:
                    found.append(Damage(f"dataset /jobs/{job.key}/weights", job.key, 0, restart=True))
        return clock, found

    def _clock(self, job: LoadedJob, weights: bool = False) -> np.ndarray:
        clock, found = self._clock_damage(job, weights)
        if found:
            raise self._damaged(found[0])
        return clock

    def _mesh_damage(self) -> list[Damage]:
        """The stored meshes whose arrays no longer hash to their id (every format version)."""
        found = []
        for ident, arrays in self._meshes.items():
            kind = ident.split("_C", 1)[0]
            digest = hashlib.sha256(kind.encode())
            for name in _MESH_ORDER:
                offset, shape, dtype = arrays[name]
                a = self._read(offset, shape, np.dtype(dtype))
                digest.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
                digest.update(a.tobytes())
            if not ident.endswith("_" + digest.hexdigest()[:16]):
                found.append(Damage(f"mesh /meshes/{ident}", mesh=ident))
        return found

    def _diagnostic_damage(self, name: str) -> tuple[np.ndarray, list[Damage]]:
        at, crc_at = self._diag[name]
        shape = (len(self._jobs), len(self._times))
        values = self._read(at, shape)
        found = []
        if crc_at is not None:
            crcs = self._read(crc_at, shape, _U4)
            # NaN marks "not computed"; anything else (inf included: a flipped exponent) is checked
            for j, i in zip(*np.nonzero(~np.isnan(values)), strict=True):
                if crc_of(values[j, i]) != crcs[j, i]:
                    key = list(self._jobs)[j]
                    found.append(Damage(f"diagnostic {name} of job {key} at t = {self._times[i]:g}",
                                        diagnostic=(at, int(j), int(i)), name=name))  # fmt: skip
        return values, found

    def _table_rows(self, key: str, name: str) -> tuple[np.ndarray, np.ndarray, list[Damage]]:
        job = self._job(key)
        if name not in job.tables:
            raise ValueError(
                f"run file {self.path}: job {key} has no table {name!r} (laid out: {sorted(job.tables)})"
            )
        shape, values_at, times_at, crc_at = job.tables[name]
        n = len(self._times)
        t = self._read(times_at, (n,))
        have = np.flatnonzero(np.isfinite(t))
        rows = np.empty((len(have), *shape))
        found = []
        crcs = None if crc_at is None else self._read(crc_at, (n,), _U4)
        for j, i in enumerate(have):
            rows[j] = self._read(values_at + int(i) * 8 * math.prod(shape), shape)
            if crcs is not None and crc_of(rows[j], t[i]) != crcs[i]:
                found.append(Damage(f"dataset /jobs/{key}/tables/{name}, row {i}", key, int(i)))
        return t[have], rows, found

    def damaged(self) -> list[Damage]:
        """Everything stored that fails its checksum (reads the whole file): what ``redo_damaged``
        of a writer redoes, each naming its dataset."""
        self._check_open()
        with self._lock:
            found = self._mesh_damage()
            for job in self._jobs.values():
                t = self._read(job.offsets["times"], (len(self._times),))
                finite = np.isfinite(t)
                k = int(np.argmin(finite)) if not finite.all() else len(t)
                if finite[k:].any():
                    found.append(self._tail_damage(job, k, t))
                for i in range(k):
                    row = self._read(job.offsets[job.dataset] + i * job.row_bytes, job.shape)
                    damage = self._row_damage(job, i, row, float(t[i]))
                    if damage is not None:
                        found.append(damage)
                        break  # what follows is redone anyway
                found += self._clock_damage(job)[1]
                for name in job.tables:
                    found += self._table_rows(job.key, name)[2]
            for name in self._diag:
                found += self._diagnostic_damage(name)[1]
            return found

    # -- reading -----------------------------------------------------------------------------------

    def table(self, key: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(times (m,), rows (m, ...)) of job ``key``'s table ``name``: the rows stored, by time."""
        self._check_open()
        with self._lock:
            t, rows, found = self._table_rows(key, name)
            if found:
                raise self._damaged(found[0])
            return t, rows

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
                states[i] = self._row(job, i, float(times[i]))
            return times, states

    def snapshot(self, key: str, i: int) -> np.ndarray:
        """Stored snapshot ``i`` of job ``key`` (checksum-checked); ``IndexError`` if not stored."""
        self._check_open()
        with self._lock:
            job = self._job(key)
            times = self._stored_times(job)
            if not 0 <= i < len(times):
                raise IndexError(f"job {key} has {len(times)} snapshots stored, not {i + 1}")
            return self._row(job, i, float(times[i]))

    def last_state(self, key: str) -> tuple[float, np.ndarray] | None:
        """(t, state) of the last stored snapshot of job ``key``; None if it has none (or no such job)."""
        self._check_open()
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return None
            times = self._stored_times(job)
            if not len(times):
                return None
            return float(times[-1]), self._row(job, len(times) - 1, float(times[-1]))

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
        with self._lock:
            self._clock(job, weights=True)  # checks the weights of a started job
            return self._read(job.offsets["weights"], job.shape[:1])

    def diagnostics(self, name: str) -> dict[str, np.ndarray]:
        """Diagnostic ``name``: job key -> (m, 2) rows (t, value) of the values computed, by t."""
        self._check_open()
        if name not in self._diag:
            return {}
        with self._lock:
            values, found = self._diagnostic_damage(name)
        if found:
            raise self._damaged(found[0])
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

    @property
    def checksummed(self) -> bool:
        """Whether every array of the file has a checksum (format version 3); a version 2 file
        has them for its snapshot rows (and its meshes' ids) only."""
        return self.format_version >= 3

    def verify(self) -> None:
        """Check every stored array against its checksum; ``RunFileError`` naming the first damaged."""
        found = self.damaged()
        if found:
            raise self._damaged(found[0])
