"""MPI plumbing: the communicator shim, mesh partitions with halos, token blocks and ring kernel sums.

Nothing here is physics: the solvers keep their serial code and take a
``comm`` (an mpi4py communicator, or ``None`` for a serial run); this module
supplies the pieces that change under MPI.

- :func:`world` returns ``MPI.COMM_WORLD`` when the process was started by an
  MPI launcher with more than one rank, else ``None`` (mpi4py is not even
  imported in a plain serial run).
- :func:`partition` splits mesh cells into balanced, compact parts by
  recursive coordinate bisection of the cell centres (deterministic, so every
  rank computes the same partition without communication).
- :class:`LocalMesh` is one rank's share of a mesh: its owned cells first, then
  two layers of halo cells (the reconstruction at a face reads the gradients or
  polynomials, hence the face or vertex neighbours, of both its cells: the
  second layer is every cell sharing a vertex with the first), the faces touching owned
  or first-layer cells, and the exchange that refreshes halo values.
- :class:`Reductions` is what a solver on its owned cells needs from the other ranks (sums,
  minima, the L1 norm, the halo exchange, the gather to rank 0): plain numpy in a serial run,
  :class:`MpiReductions` under MPI, so that the solver has no serial and parallel branches.
- :class:`RingSums` is what the kernel sums need from a measure split across
  ranks (:class:`vlasov_tf.kernels.Distributed`): sums over the ranks (the
  spectral coefficients) and the dense ring, where the key blocks travel round
  the ranks while each rank sums its queries against the block it holds,
  merging blocks with a running log-sum-exp. Memory per rank is its own block
  plus the one in flight.
- :func:`abort_on_error` turns an exception on any rank into a message and an
  ``MPI_Abort`` of the whole job (a non-zero exit code, never a hang of the
  other ranks in their next collective call).

Results do not depend on the number of ranks beyond round-off: partitions
change only where sums are split, random streams are keyed to global token
indices (the tokens are drawn whole, then split), and every output is gathered
to rank 0 in global order.

Design notes: docs/numerics.md §4 (MPI decomposition).
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from vlasov_tf.geometry.meshes import MeshGeometry
from vlasov_tf.kernels import exp_kernel_sums, num_threads
from vlasov_tf.profiling import section

__all__ = [
    "CollectiveExit",
    "LocalMesh",
    "MpiReductions",
    "Reductions",
    "RingSums",
    "abort_on_error",
    "block_range",
    "gather_rows",
    "is_root",
    "on_root",
    "partition",
    "root_only",
    "world",
]

T = TypeVar("T")
Comm = Any  # mpi4py.MPI.Comm; typed loosely so that importing this module never imports mpi4py

# Seconds between the error message and MPI_Abort (only on failure).
_ABORT_GRACE_S = 1.0
# Variables that MPI launchers (MPICH/hydra, Open MPI, PMIx, Slurm's srun with PMI) set in each rank.
_LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "PMI_RANK")


def world() -> Comm | None:
    """``MPI.COMM_WORLD`` when started by an MPI launcher with more than one rank, else ``None``."""
    if not any(v in os.environ for v in _LAUNCHER_VARS):
        return None
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm if comm.size > 1 else None


class CollectiveExit(SystemExit):
    """An exit every rank takes at the same point (a bad case or value, found by each rank alike):
    rank 0 has said why in one line; under :func:`abort_on_error` the ranks then exit quietly with
    its code instead of each reporting and aborting."""


#: Seconds the ranks of a :class:`CollectiveExit` wait for each other before aborting after all.
_COLLECTIVE_WAIT_S = 10.0


def _together(comm: Comm) -> bool:
    """Whether every rank reaches this point within :data:`_COLLECTIVE_WAIT_S` (a non-blocking
    barrier: a rank that is elsewhere must not leave the others waiting for ever)."""
    request = comm.Ibarrier()
    deadline = time.monotonic() + _COLLECTIVE_WAIT_S
    while not request.Test():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def is_root(comm: Comm | None) -> bool:
    """True on rank 0, and in a serial run."""
    return comm is None or comm.rank == 0


@contextmanager
def abort_on_error(comm: Comm | None) -> Iterator[None]:
    """Run a block; an exception on any rank prints ``rank r/P: ...`` and aborts every rank.

    Without this, the ranks that did not fail would wait forever in their next
    collective call. ``SystemExit`` (argparse errors, ``sys.exit``) aborts too,
    keeping its code; a :class:`CollectiveExit` that every rank raises ends the job quietly.
    """
    if comm is None:
        yield
        return
    try:
        yield
    except BaseException as err:  # every failure, SystemExit included, must end the whole job
        if isinstance(err, CollectiveExit) and _together(comm):
            raise  # every rank exits here with its code: rank 0 has said why
        if isinstance(err, SystemExit):
            code = err.code if isinstance(err.code, int) else 1
            if code == 0:
                raise
            # argparse and sys.exit have said why already.
            sys.stderr.write(f"vlasov-tf: rank {comm.rank} of {comm.size} exited with status {code}\n")
        else:
            code = 1
            detail = "".join(traceback.format_exception_only(type(err), err)).strip()
            sys.stderr.write(
                f"vlasov-tf: rank {comm.rank} of {comm.size} failed: {detail}\n"
                f"{''.join(traceback.format_tb(err.__traceback__))}"
            )
        sys.stderr.write(f"vlasov-tf: aborting all {comm.size} ranks\n")
        sys.stderr.flush()
        # MPI_Abort tears the job down at once: give the launcher a moment to forward what was
        # written, or the message can be lost (seen with hydra when every rank fails together).
        time.sleep(_ABORT_GRACE_S)
        comm.Abort(code)
        raise


def on_root(comm: Comm | None, fn: Callable[[], T]) -> T:
    """``fn()`` evaluated on rank 0 and broadcast; an exception there is raised on every rank.

    For what only the writer may do (open the run file, read a stored state):
    the other ranks must not wait in a broadcast that never comes.
    """
    if comm is None:
        return fn()
    result: tuple[bool, Any] = (True, None)
    failure: Exception | None = None
    if comm.rank == 0:
        try:
            result = (True, fn())
        except Exception as err:  # handed to every rank below
            failure = err
            try:
                pickle.dumps(err)
                result = (False, err)
            except Exception:  # an exception that does not pickle still reaches the others, as text
                result = (False, RuntimeError(f"rank 0: {type(err).__name__}: {err}"))
    ok, value = comm.bcast(result, root=0)
    if failure is not None:
        raise failure  # rank 0 keeps its own traceback
    if not ok:
        raise value
    return value


def root_only(value: T | None) -> T:
    """``value``, which rank 0 alone holds (None on the others, e.g. the open run file), where only
    rank 0 runs: :func:`on_root`'s functions, the solvers' output callbacks."""
    if value is None:
        raise RuntimeError("a value held on rank 0 only was asked for on another rank")
    return value


def block_range(n: int, parts: int, rank: int) -> tuple[int, int]:
    """``[lo, hi)`` of ``rank``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    q, r = divmod(n, parts)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (rank < r)


def partition(centres: np.ndarray, parts: int) -> np.ndarray:
    """(C,) part index of each cell: recursive coordinate bisection of the (C, d) centres.

    Each split cuts the point set along its coordinate of largest extent, at
    the rank of the sizes of the two sub-partitions, so the parts have sizes
    differing by at most one and are compact (on S^2: caps and bands, on S^1:
    arcs). Ties are broken by cell index, so the result is deterministic.
    """
    if parts < 1:
        raise ValueError(f"the number of parts must be >= 1, got {parts}")
    if parts > len(centres):
        raise ValueError(f"cannot split {len(centres)} cells into {parts} parts: use fewer ranks")
    out = np.empty(len(centres), dtype=np.int64)

    def split(idx: np.ndarray, first: int, k: int) -> None:
        if k == 1:
            out[idx] = first
            return
        pts = centres[idx]
        axis = int(np.argmax(np.ptp(pts, axis=0)))
        order = idx[np.argsort(pts[:, axis], kind="stable")]
        k_left = k // 2
        cut = len(idx) * k_left // k
        split(order[:cut], first, k_left)
        split(order[cut:], first + k_left, k - k_left)

    split(np.arange(len(centres)), 0, parts)
    return out


def gather_rows(comm: Comm, local: np.ndarray, index: np.ndarray | None = None) -> np.ndarray | None:
    """Rows of all ranks on rank 0 (``None`` elsewhere), placed at their global ``index`` if given.

    ``local`` (n_r, ...) is this rank's rows; ``index`` (n_r,) their global row
    numbers (default: rank order, i.e. contiguous blocks).
    """
    rows = comm.gather(np.ascontiguousarray(local), root=0)
    idx = comm.gather(index, root=0) if index is not None else None
    if comm.rank != 0:
        return None
    if idx is None:
        return np.concatenate(rows)
    out = np.empty((sum(len(r) for r in rows), *local.shape[1:]), dtype=local.dtype)
    for r, i in zip(rows, idx, strict=True):
        out[i] = r
    return out


@dataclass
class LocalMesh:
    """One rank's share of a mesh.

    Attributes
    ----------
    mesh : the sub-mesh geometry (cells: owned, then halo; faces: those with an
        owned or first-halo-layer cell, in global order).
    cells : (C_local,) global indices of the local cells, the ``n_owned`` owned ones first.

    The halo exchange sends the owned cells ``_send`` (concatenated over the
    destination ranks, ``_send_counts`` each) and receives ``_recv_counts`` halo
    values from each rank, in the order of the halo cells.
    """

    comm: Comm
    mesh: MeshGeometry
    cells: np.ndarray
    n_owned: int
    _send: np.ndarray
    _send_counts: tuple[list[int], list[int]]
    _recv_counts: tuple[list[int], list[int]]

    @classmethod
    def distribute(cls, mesh: MeshGeometry, comm: Comm, *, vertex_halo: bool = True) -> LocalMesh:
        """Partition ``mesh`` (known whole on every rank) and keep this rank's share.

        ``vertex_halo``: the second halo layer is every cell sharing a vertex with the first (the
        quadratic reconstruction's stencils); False: sharing a face (enough for the linear one).
        """
        part = partition(mesh.centres, comm.size)
        rank, f = comm.rank, mesh.face_cells
        owned = np.flatnonzero(part == rank)
        is_owned = part == rank
        layer1 = _neighbours(f, is_owned)
        near = is_owned | layer1
        # Cells sharing a vertex with one of them: the quadratic reconstruction's stencils
        # (reconstruction.vertex_neighbours) of the first layer; they include its face neighbours.
        if vertex_halo:
            layer2 = _vertex_neighbours(mesh.cell_vertices, near)
        else:
            layer2 = _neighbours(f, near)
        halo = np.flatnonzero(layer1 | layer2)
        # Halo cells ordered by owner rank, then global index: the order the exchange delivers them in.
        halo = halo[np.lexsort((halo, part[halo]))]
        cells = np.r_[owned, halo]
        faces = np.flatnonzero(near[f[:, 0]] | near[f[:, 1]])
        local_of = np.full(mesh.n_cells, -1, dtype=np.int64)
        local_of[cells] = np.arange(len(cells))
        verts, cell_vertices = np.unique(mesh.cell_vertices[cells], return_inverse=True)
        sub = MeshGeometry(
            kind=mesh.kind,
            level=mesh.level,
            char_length=mesh.char_length,
            vertices=mesh.vertices[verts],
            cell_vertices=cell_vertices.reshape(len(cells), -1),
            centres=mesh.centres[cells],
            areas=mesh.areas[cells],
            face_cells=local_of[f[faces]],
            face_midpoints=mesh.face_midpoints[faces],
            face_lengths=mesh.face_lengths[faces],
            face_normals=mesh.face_normals[faces],
            source=f"{mesh.source} [rank {rank} of {comm.size}]",
        )
        # Tell every owner which of its cells this rank needs (setup only: pickled lists are fine).
        wanted = [halo[part[halo] == q] for q in range(comm.size)]
        asked = comm.alltoall(wanted)
        send = [local_of[a] for a in asked]  # owned cells are local 0..n_owned-1
        send_counts = [len(s) for s in send]
        recv_counts = [len(w) for w in wanted]
        return cls(
            comm,
            sub,
            cells,
            len(owned),
            np.concatenate(send).astype(np.int64),
            (send_counts, _offsets(send_counts)),
            (recv_counts, _offsets(recv_counts)),
        )

    def exchange(self, values: np.ndarray) -> None:
        """Overwrite the halo entries of the (C_local,) ``values`` with their owners' values, in place."""
        from mpi4py import MPI

        with section("halo"):
            self.comm.Alltoallv(
                [values[self._send], self._send_counts, MPI.DOUBLE],
                [values[self.n_owned :], self._recv_counts, MPI.DOUBLE],
            )

    def gather(self, owned_values: np.ndarray) -> np.ndarray | None:
        """(C,) global array on rank 0 from each rank's (n_owned,) values; ``None`` elsewhere."""
        return gather_rows(self.comm, owned_values, self.cells[: self.n_owned])


class Reductions:
    """A solver's reductions over its owned entries (the first ``n_owned`` along the last axis), and
    its halo exchange and gather: a serial run's, in plain numpy (one rank owns everything).

    :class:`MpiReductions` is the same over the ranks of a :class:`LocalMesh`; a solver written
    against this class runs on either.
    """

    #: Whether this rank holds the outputs (rank 0; a serial run).
    root = True

    def __init__(self, n_owned: int) -> None:
        self.n_owned = n_owned

    def sum(self, x: float) -> float:
        """``x`` summed over the ranks."""
        return x

    def min(self, x: float) -> float:
        """The minimum of ``x`` over the ranks."""
        return x

    def l1(self, x: np.ndarray) -> float:
        """``sum |x|`` over the owned entries (last axis) of every rank."""
        return self.sum(float(np.abs(x[..., : self.n_owned]).sum()))

    def exchange(self, values: np.ndarray) -> None:
        """Refresh the halo entries of ``values`` in place (serial: there are none)."""

    def gather(self, owned: np.ndarray) -> np.ndarray | None:
        """The global array of every rank's owned values on rank 0 (``None`` elsewhere); a copy."""
        return owned.copy()


class MpiReductions(Reductions):
    """:class:`Reductions` over the ranks of ``local``'s communicator: sums and minima by
    all-reduce, halos by :meth:`LocalMesh.exchange`, the gather in global cell order."""

    def __init__(self, local: LocalMesh) -> None:
        super().__init__(local.n_owned)
        self.local = local
        self.comm = local.comm
        self.root = local.comm.rank == 0

    def sum(self, x: float) -> float:
        return float(self.comm.allreduce(x))

    def min(self, x: float) -> float:
        from mpi4py import MPI

        return float(self.comm.allreduce(x, op=MPI.MIN))

    def exchange(self, values: np.ndarray) -> None:
        self.local.exchange(values)

    def gather(self, owned: np.ndarray) -> np.ndarray | None:
        return self.local.gather(owned)


def _neighbours(face_cells: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(C,) bool: cells sharing a face with a cell of ``mask``, not in ``mask`` themselves."""
    own, nbr = face_cells[:, 0], face_cells[:, 1]
    out = np.zeros_like(mask)
    out[nbr[mask[own]]] = True
    out[own[mask[nbr]]] = True
    return out & ~mask


def _vertex_neighbours(cell_vertices: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(C,) bool: cells sharing a vertex with a cell of ``mask``, not in ``mask`` themselves."""
    touched = np.zeros(int(cell_vertices.max()) + 1, dtype=bool)
    touched[cell_vertices[mask]] = True
    return touched[cell_vertices].any(axis=1) & ~mask


def _offsets(counts: list[int]) -> list[int]:
    return [0, *np.cumsum(counts)[:-1].tolist()] if counts else []


class RingSums:
    """The kernel sums' view of a measure split across the ranks of ``comm``
    (:class:`vlasov_tf.kernels.Distributed`): sums over the ranks and the dense ring.

    Pass it as ``split`` to :func:`vlasov_tf.kernels.kernel_sums` (or
    :func:`vlasov_tf.models.sums.method_head_sums`), with this rank's block of the measure.
    :meth:`dense` returns the sums of this rank's queries over every rank's block::

        sums_i exp(shift_i) = sum over all ranks' j of w_j exp(<z_i, y_j>) [v_j, 1].

    Step s (0 <= s < P) sums the queries against the block of rank ``r - s``
    while the next block is already on its way (non-blocking send/receive), and
    merges it into the running result with a log-sum-exp: with shifts ``a, b``,
    ``(a, S) + (b, S') = (c, S e^{a - c} + S' e^{b - c})``, ``c = max(a, b)``.
    Traffic per call: every block once round the ring, ``m (d + k + 1)`` doubles.
    """

    def __init__(self, comm: Comm, threads: int | None = None) -> None:
        self.comm = comm
        # One thread per rank unless asked: ranks are normally placed one per core.
        if threads is None:
            threads = num_threads() if "VLASOV_TF_NUM_THREADS" in os.environ else 1
        self.threads = threads

    def allreduce(self, a: np.ndarray) -> np.ndarray:
        """Elementwise sum of ``a`` over the ranks (every rank gets it)."""
        from mpi4py import MPI

        src = np.ascontiguousarray(a, dtype=float)
        out = np.empty_like(src)
        self.comm.Allreduce(src, out, op=MPI.SUM)
        return out

    def allgather(self, a: np.ndarray) -> np.ndarray:
        """``(P, *a.shape)``: every rank's ``a``."""
        src = np.ascontiguousarray(a, dtype=float)
        out = np.empty((self.comm.size, *src.shape))
        self.comm.Allgather(src, out)
        return out

    def dense(
        self, z: np.ndarray, y: np.ndarray, weights: np.ndarray, values: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dense scaled sums of this rank's queries ``z`` (n, d) over the keys of every rank."""
        with section("ring", calls=1):
            return self._ring(z, y, weights, values)

    def _ring(
        self, z: np.ndarray, y: np.ndarray, weights: np.ndarray, values: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        from mpi4py import MPI

        comm, size, rank = self.comm, self.comm.size, self.comm.rank
        d = y.shape[1]
        k = 0 if values is None else values.shape[1]
        sizes = comm.allgather((len(y), len(z)))
        counts = [m for m, _ in sizes]
        if not any(n for _, n in sizes):  # e.g. no row anywhere needs the spectral sums' dense fix-up
            return np.zeros(0), np.zeros((0, k + 1))
        cur = np.empty((max(counts), d + 1 + k))
        nxt = np.empty_like(cur)
        cur[: len(y), :d], cur[: len(y), d] = y, weights
        if k:
            cur[: len(y), d + 1 :] = values
        shift = np.full(len(z), -np.inf)
        sums = np.zeros((len(z), k + 1))
        right, left = (rank + 1) % size, (rank - 1) % size
        for step in range(size):
            n_cur = counts[(rank - step) % size]
            reqs = []
            if step < size - 1:
                n_nxt = counts[(rank - step - 1) % size]
                reqs = [comm.Isend(cur[:n_cur], dest=right), comm.Irecv(nxt[:n_nxt], source=left)]
            block = cur[:n_cur]
            if len(z) and (block[:, d] > 0).any():
                s, part = exp_kernel_sums(
                    z, block[:, :d], block[:, d], block[:, d + 1 :] if k else None, threads=self.threads
                )
                with section("ring.merge", rows=len(z)):
                    shift, sums = _merge(shift, sums, s, part)
            MPI.Request.Waitall(reqs)
            cur, nxt = nxt, cur
        return shift, sums


def _merge(a: np.ndarray, sa: np.ndarray, b: np.ndarray, sb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled sums ``(a, sa) + (b, sb)`` with the common shift ``max(a, b)`` (a may be -inf: empty)."""
    c = np.maximum(a, b)
    return c, sa * np.exp(a - c)[:, None] + sb * np.exp(b - c)[:, None]
