"""One HDF5 file per run: the case, snapshots over time, diagnostics; crash-safe; XDMF companions.

Layout of ``<run>.h5`` (:class:`RunFile`), readable by plain h5py at any moment, also while the
run is going and after it was killed::

    /                      attrs: format = "vlasov_tf run", format_version = 3, run_id
    /case                  attrs: text (the case TOML), name, version, created (UTC), settings,
                           overrides, provenance (JSON)
    /times      (n,)             the output times: snapshot i of every job is at times[i] (Fletcher-32)
    /jobs/<key>/           one group per solver job; <key> like "grid/M1024" or "particles/N1000_L100"
        times      (n,)          the times stored so far, NaN from the first snapshot not yet stored
        densities  (n, C)        grid jobs: cell averages (NaN rows: not yet computed)
        positions  (n, N, d)     particle jobs: tokens;  weights (N,)
        crc        (n,)          CRC-32 of each stored row with its time (a damaged row fails to read)
        tables/<name>/values (n, ...), times (n,), crc (n,)   per-output arrays of the job (e.g.
                                 its clusters), each row valid once its time is finite
        clock      (2,)          UNIX times the job started and finished (NaN: not yet)
        checks     (3,)          CRC-32 of the weights, of clock[0], of clock[1]
        step/<i>                 snapshot i alone (a virtual dataset: a view of row i), for XDMF
        mesh -> /meshes/<id>     grid jobs (hard link);   vertex_ids (N, 1) particle jobs (XDMF,
                                 Fletcher-32)
        attrs: kind ("grid" | "particles"), job_index, free-form (resolution, tokens, layers, ...)
    /meshes/<id>/          vertices (V, d), cell_vertices (C, k), centres (C, d), areas (C,); <id>
                           ends in the SHA-256 of these arrays (their checksum)
    /diagnostics/<name>    (J, n) value of diagnostic <name> for job j at times[i] (NaN: not
                           computed); attr ``jobs``: the job keys in row order (names are
                           percent-encoded: "w1_to_grid/M1024" contains '/')
    /diagnostic_crcs/<name> (J, n) CRC-32 of each value

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

Checksums (:mod:`.reader`): every array carries one, and every read checks what it reads
(``RunFileError`` naming the damaged dataset, in one line). The arrays written once by h5py carry
HDF5's Fletcher-32 filter (any HDF5 reader checks it); those written in place cannot (a filter
needs chunked storage, whose place in the file HDF5 chooses), so a CRC-32 is written beside each
part before its commit mark, and a part is checked only once committed (a kill mid-write leaves it
absent, not damaged). ``RunFile.open(mode="r")`` checks the meshes, clocks and weights at once;
snapshots, diagnostics and tables as they are read; :meth:`RunFile.verify` everything. A writer's
:meth:`RunFile.redo_damaged` (a resume calls it) makes what fails its check be computed again.
Files of format version 2 (written before) open, read and resume as before: their snapshots (CRC
of the row alone, and the time against the output times) and their meshes are checked, their other
arrays have no checksum. Cost (``scripts/bench_io.py``, 100 snapshots of 1e5 float64 written as the
runner does, with table rows and diagnostics): 0.39-0.57 s with ``sync=False`` against 0.25-0.34 s
for version 2 (at most ~2 ms a snapshot); with ``sync=True`` hidden by the disk's fsync noise.

Resuming: ``RunFile.open(path)`` then, per job, ``start_job`` again with the same arguments (a
check), ``is_complete`` to skip finished jobs, and ``job_state``/``last_state`` to restart the
solver from the last stored snapshot. ``append`` of a repeat of the last stored snapshot (same
time, same values) is a no-op, so a restarted solver may report its initial state again.

The XDMF companions (:func:`xdmf_path`: ``<run>.xdmf/<job key with '.' for '/'>.xdmf``, a
directory beside the ``.h5``; runs made before it kept them beside the ``.h5``, where a resume or
a replacement removes them), one per job, are rewritten (atomically) after every snapshot (at
most once a second while snapshots come faster; always after a job's last one and at close): one
temporal collection of the snapshots stored, each referencing whole datasets (``step/<i>``) of
``../<run>.h5``: sphere densities on the triangles, circle densities on the polyline of its arcs
(cell-centred), particles as points with their weights and positions. meshio
(``meshio.xdmf.TimeSeriesReader``) and VTK's XDMF reader (the
one behind ParaView's) read every step.

Modules: :mod:`.run_file` (:class:`RunFile`), :mod:`.reader` (its reading, every checksum),
:mod:`.layout` (:class:`JobLayout`; the layout
above, written at creation and read back at opening), :mod:`.files` (the writer lock, positioned
reads and writes, atomic replacement), :mod:`.xdmf` (the companions), :mod:`.environment`
(:func:`provenance`). Import from here: ``from vlasov_tf.runs.storage import RunFile, JobLayout``.

Design notes: docs/design.md §4-5 (run files; resume).
"""

from .environment import PROVENANCE_PACKAGES, provenance
from .files import RunFileBusy, lock_path
from .layout import FORMAT, FORMAT_VERSION, KINDS, JobLayout, RunFileError
from .run_file import RunFile
from .xdmf import xdmf_dir, xdmf_path

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
    "xdmf_dir",
    "xdmf_path",
]
