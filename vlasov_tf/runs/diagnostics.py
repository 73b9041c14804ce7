"""The diagnostics of a run file: what is computed on the snapshots a case's jobs stored.

The jobs a run file holds (:class:`Job`, :func:`run_jobs`) are those :mod:`vlasov_tf.runs.runner`
ran into it. The distances (same geodesic ground metric on both sides; a grid is the measure
of its cell masses at its cell centres) are the diagnostics, at every output time:

- ``w1_ref``: each deep Transformer against its continuous-time reference (the
  same tokens): the depth error alone. Exact W1 (circle: closed form;
  sphere: ``ot.emd2`` while N^2 <= ``MAX_EXACT_PAIRS``, beyond it the
  cost of moving each token to its own image, an upper bound:
  :func:`~vlasov_tf.analysis.wasserstein.coupling_w1`);
- ``l1_grid``: each coarser grid against the finest one summed into its cells
  (nested grids: a common support): ``sum_c |m_c - m'_c|``, exact;
- ``w1_grid`` (circle) exact W1 of each particle job and of each coarser grid
  (on the common support) against the finest grid;
- ``sw1_grid`` (sphere) the sliced spherical W1 instead (fixed seeded great circles,
  :data:`SLICED`): coarser grids on the common support exactly, particle
  jobs by angular histograms within ``2 pi / bins`` (:class:`SlicedSphere
  <vlasov_tf.analysis.wasserstein.SlicedSphere>`); ``sw1_grid_se`` its standard
  error over the directions;
- ``mass``: each grid job's total mass; ``energy`` the interaction energy of
  every job when the kernel is zonal (Q = K = V = I) in every block;
- ``clusters``: the number of clusters of every job (:func:`clusters_of`; the runner stores it,
  with the clusters' table, as each snapshot is written);
- ``steps``, ``rejected_steps``: each grid job's time steps accepted and rejected by
  its error control since the previous output (written as the run goes);
- ``wall_s``: every job's wall seconds since its previous output (or its start);
- ``diagnostics_s``: the seconds its diagnostics at that time took (their mark of done).

Under MPI (``comm``) :func:`compute_diagnostics` deals the output times to the ranks; rank 0
stores every rank's values.

Design notes: docs/numerics.md §5-6 (distances, clusters); docs/design.md §1.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from vlasov_tf.analysis.clusters import Clusters, find_clusters
from vlasov_tf.analysis.wasserstein import SlicedSphere, coupling_w1, sliced_wasserstein_sphere, wasserstein
from vlasov_tf.geometry.measures import normalize
from vlasov_tf.geometry.meshes import MeshGeometry, coarsen_masses
from vlasov_tf.parallel import Comm, is_root, on_root
from vlasov_tf.runs.cases import Case
from vlasov_tf.runs.storage import RunFile

_log = logging.getLogger(__name__)

__all__ = [
    "DIAGNOSTICS",
    "MAX_EXACT_PAIRS",
    "RUN_DIAGNOSTICS",
    "SLICED",
    "Job",
    "ShownJobs",
    "clusters_of",
    "compute_diagnostics",
    "run_jobs",
    "shown_jobs",
]


@dataclass(frozen=True)
class Job:
    """One solver run of a case (:func:`vlasov_tf.runs.runner.case_jobs`) as its run file stores it.
    ``layers = None`` marks the particle reference."""

    key: str
    kind: str  # "grid" | "particles"
    resolution: int | None = None
    tokens: int | None = None
    layers: int | None = None
    sample: int | None = None  # None: sample 0 (the deep Transformers' tokens)

    @property
    def attrs(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {"kind": self.kind}
        for name in ("resolution", "tokens", "layers", "sample"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def mesh(self, case: Case) -> MeshGeometry:
        """A grid job's mesh: ``case.mesh`` at its resolution."""
        assert self.resolution is not None, f"{self.key}: a particle job has no mesh"
        return case.mesh(self.resolution)


#: The diagnostics a run file holds (module docstring), a value per job and output time.
DIAGNOSTICS = (
    "w1_ref", "l1_grid", "w1_grid", "sw1_grid", "sw1_grid_se", "mass", "energy",
    "steps", "rejected_steps", "wall_s", "diagnostics_s", "clusters",
)  # fmt: skip
#: The diagnostics a job writes as it runs (its clusters, steps and timings), not computed afterwards
#: from the snapshots: a damaged value of one of them is redone with its job (``RunFile.redo_damaged``).
RUN_DIAGNOSTICS = ("steps", "rejected_steps", "wall_s", "clusters")
#: Largest N M for exact optimal transport on S^2 (``ot.emd2``'s cost matrix: 8 N M bytes).
MAX_EXACT_PAIRS = 4e7
#: The sliced spherical W1 of the diagnostics (analysis.wasserstein.SlicedSphere): directions, bins, seed.
SLICED = {"n_projections": 64, "bins": 1 << 16, "seed": 0}


def run_jobs(run: RunFile) -> list[Job]:
    """The complete jobs stored in ``run``, in the order they ran.

    What the run did, whatever ladders its case file names now: a ``--full`` study stores the
    case file as it is and runs longer ladders, and ``vlasov-tf plot`` must see those.
    """
    out = []
    for key in run.jobs():
        info = run.job_info(key)
        if info["complete"]:
            a = info["attrs"]
            names = ("resolution", "tokens", "layers", "sample")
            out.append(Job(key, info["kind"], **{name: int(a[name]) for name in names if name in a}))
    return out


@dataclass(frozen=True)
class ShownJobs:
    """The complete jobs of a run that its tables and figures show.

    grids : grid jobs, coarse to fine.
    deep : deep Transformers on the most tokens (sample 0), shallow to deep.
    ref : the continuous flow of those tokens, or None.
    """

    grids: list[Job]
    deep: list[Job]
    ref: Job | None

    @property
    def finest(self) -> Job | None:
        return self.grids[-1] if self.grids else None

    @property
    def tokens(self) -> Job | None:
        """The token job drawn over the densities: the deepest Transformer on the most tokens."""
        return self.deep[-1] if self.deep else self.ref


def shown_jobs(run: RunFile) -> ShownJobs:
    """:class:`ShownJobs` of the complete jobs in ``run`` (:func:`run_jobs`)."""
    jobs = run_jobs(run)
    grids = [j for j in jobs if j.kind == "grid"]
    parts = [j for j in jobs if j.kind == "particles" and j.sample is None]
    n_max = max((j.tokens or 0 for j in parts), default=None)
    deep = [j for j in parts if j.tokens == n_max and j.layers is not None]
    deep.sort(key=lambda j: j.layers or 0)
    ref = next((j for j in parts if j.tokens == n_max and j.layers is None), None)
    return ShownJobs(grids, deep, ref)


def clusters_of(case: Case, state: np.ndarray, *, mesh: MeshGeometry | None = None,
                weights: np.ndarray | None = None) -> Clusters:  # fmt: skip
    """The clusters (``case.clusters``, :mod:`vlasov_tf.analysis.clusters`) of a grid's densities (C,) on
    ``mesh`` or of tokens (N, d) with ``weights``."""
    spec, r = case.clusters, case.linking_distance
    if mesh is not None:
        rho = np.maximum(state, 0.0)
        points, masses, density = mesh.centres, rho * mesh.areas, rho
    else:  # the directions of a pre- or peri-LN residual stream
        points = state if case.particles.norm == "post" else normalize(state)
        masses, density = weights, None
    found, _ = find_clusters(points, masses, r, density=density, trim=spec.trim, min_mass=spec.min_mass,
                             sphere=case.sphere)  # fmt: skip
    return found


def compute_diagnostics(case: Case, run: RunFile, comm: Comm | None = None) -> None:
    """Mass, energy and the distances of the complete jobs in ``run`` at every output time
    (module docstring).

    Resumable: each (job, output time) whose expected diagnostics are all stored is skipped (a
    later call computes what a kill interrupted, and what jobs a resume added, with the other
    solver's included, need); the seconds each took are the diagnostic ``diagnostics_s``. Each
    output time done is logged. Under MPI (``comm``) the output times are dealt to the ranks in
    turn: each rank reads ``run`` (open read-only on the ranks other than 0), one time's snapshots
    at a time, and rank 0 stores every rank's values; a value does not depend on the number of
    ranks.
    """
    tic = time.perf_counter()
    values = _Diagnostics(case, run, run_jobs(run))
    times = run.times
    # Decided on rank 0: it writes values while the others would still be reading them.
    pending = on_root(comm, values.pending)
    k_todo = [k for k, keys in enumerate(pending) if keys]
    size, rank = (1, 0) if comm is None else (comm.size, comm.rank)
    for first in range(0, len(k_todo), size):
        mine = first + rank
        rows: list[tuple[str, str, float, float]] = []
        if mine < len(k_todo):
            k = k_todo[mine]
            for key in pending[k]:
                start = time.perf_counter()
                rows += values.at(k, key)
                rows.append(("diagnostics_s", key, times[k], time.perf_counter() - start))
        every = [rows] if comm is None else comm.gather(rows, root=0)
        if is_root(comm):
            for rank_rows in every:
                run.add_diagnostics(rank_rows)
            last = min(first + size, len(k_todo))
            span = ", ".join(f"{times[k_todo[i]]:g}" for i in range(first, last))
            seconds = time.perf_counter() - tic
            _log.info(f"diagnostics: t = {span} done ({last}/{len(k_todo)}, {seconds:.1f} s)")


class _Diagnostics:
    """The diagnostics of one job at one output time (module docstring), from the stored runs;
    one output time's snapshots in memory at a time."""

    def __init__(self, case: Case, run: RunFile, jobs: list[Job]) -> None:
        self.case, self.run = case, run
        self.jobs = {j.key: j for j in jobs}
        self.times = run.times
        grids = [j for j in jobs if j.kind == "grid"]
        self.finest = grids[-1] if grids else None
        # Whether the model defines an energy (attention: one zonal beta), asked of one point.
        self.energy = case.model.energy(np.eye(case.d)[-1:], np.ones(1)) is not None
        self.sphere = case.geometry == "sphere"
        self.sliced = SlicedSphere(d=case.d, **SLICED) if self.sphere and self.finest is not None else None
        self.fine_mesh = self.finest.mesh(case) if self.finest is not None else None
        self._k: int | None = None
        self._measures: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._fine_hist: np.ndarray | None = None  # the finest grid's histograms at time _k

    def expected(self, key: str) -> list[str]:
        """The diagnostics job ``key`` has at each output time."""
        job, names = self.jobs[key], []
        if job.kind == "grid":
            names.append("mass")
        if self.energy:
            names.append("energy")
        if self.finest is not None and key != self.finest.key:
            if job.kind == "grid":
                names += ["l1_grid"] if self._common(job) else []
                names.append("sw1_grid" if self.sphere else "w1_grid")
            else:
                names += ["sw1_grid", "sw1_grid_se"] if self.sphere else ["w1_grid"]
        if job.kind == "particles" and job.layers is not None and f"particles/N{job.tokens}_ref" in self.jobs:
            names.append("w1_ref")
        return names

    def pending(self) -> list[list[str]]:
        """For each output time, the jobs with an expected diagnostic not stored yet."""
        stored: dict[str, dict[str, set[float]]] = {}
        out: list[list[str]] = [[] for _ in self.times]
        for key in self.jobs:
            for name in self.expected(key):
                if name not in stored:
                    rows = self.run.diagnostics(name)
                    stored[name] = {k: set(r[:, 0].tolist()) for k, r in rows.items()}
                have = stored[name].get(key, set())
                for k, t in enumerate(self.times.tolist()):
                    if t not in have and key not in out[k]:
                        out[k].append(key)
        return [[key for key in self.jobs if key in keys] for keys in out]  # in run order

    def _common(self, job: Job) -> bool:
        """Whether a coarser grid and the finest have a common support (nested cells)."""
        if self.sphere:
            return True
        assert self.fine_mesh is not None  # asked only where there is a finest grid
        return self.fine_mesh.n_cells % job.mesh(self.case).n_cells == 0

    def measure(self, k: int, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(supports (K, d), weights (K,)) of job ``key`` at output ``k`` as a weighted point cloud."""
        if k != self._k:
            self._k, self._measures, self._fine_hist = k, {}, None
        if key not in self._measures:
            job, state = self.jobs[key], self.run.snapshot(key, k)
            if job.kind == "grid":
                mesh = job.mesh(self.case)
                self._measures[key] = (mesh.centres, state * mesh.areas)
            else:  # the weights are stored with the job: no need to draw the tokens again
                if self.case.particles.norm != "post":
                    state = normalize(state)  # the directions of a residual stream
                self._measures[key] = (state, self.run.weights(key))
        return self._measures[key]

    def w1(self, pa: np.ndarray, wa: np.ndarray, pb: np.ndarray, wb: np.ndarray) -> float:
        return wasserstein(pa, wa, pb, wb, geometry=self.case.geometry)[0]

    def at(self, k: int, key: str) -> list[tuple[str, str, float, float]]:
        """(name, key, t, value) rows of job ``key`` at output ``k``."""
        job, t = self.jobs[key], self.times[k]
        pts, wts = self.measure(k, key)
        rows = []
        if job.kind == "grid":
            rows.append(("mass", key, t, float(wts.sum())))
        energy = self.case.model.energy(pts, wts) if self.energy else None
        if energy is not None:
            rows.append(("energy", key, t, energy))
        if self.finest is not None and key != self.finest.key:
            rows += [(name, key, t, value) for name, value in self.against_grid(job, k)]
        ref = f"particles/N{job.tokens}_ref"
        if job.kind == "particles" and job.layers is not None and ref in self.jobs:
            rows.append(("w1_ref", key, t, _depth_distance(self.case, pts, wts, self.measure(k, ref)[0])))
        return rows

    def against_grid(self, job: Job, k: int) -> list[tuple[str, float]]:
        """(name, value) of job ``job`` against the finest grid at output ``k`` (one there is)."""
        assert self.finest is not None and self.fine_mesh is not None
        pts, wts = self.measure(k, job.key)
        fp, fw = self.measure(k, self.finest.key)
        sliced = self.sliced
        if job.kind == "grid":
            mesh = job.mesh(self.case)
            out = []
            # Sphere levels are nested; circle grids when M divides the finest one's M (else lumped).
            if self._common(job):
                common = coarsen_masses(fw, self.fine_mesh, mesh)
                out.append(("l1_grid", float(np.abs(wts - common).sum())))
                fp, fw = pts, common
            if self.sphere:
                assert sliced is not None  # made on the sphere where there is a finest grid
                # Grid against grid: exact sliced W1 on the common support (same directions).
                sw1 = sliced_wasserstein_sphere(pts, wts, fp, fw, n_projections=sliced.n_projections,
                                                seed=sliced.seed)  # fmt: skip
                return [*out, ("sw1_grid", sw1)]
            return [*out, ("w1_grid", self.w1(pts, wts, fp, fw))]
        if self.sphere:
            assert sliced is not None
            if self._fine_hist is None:  # one time at a time: a histogram set is n_projections x bins
                self._fine_hist = sliced.histograms(fp, fw)
            value, se = sliced.compare(sliced.histograms(pts, wts), self._fine_hist)
            return [("sw1_grid", value), ("sw1_grid_se", se)]
        return [("w1_grid", self.w1(pts, wts, fp, fw))]


def _depth_distance(case: Case, pts: np.ndarray, wts: np.ndarray, ref: np.ndarray) -> float:
    """W1 between the same tokens after the deep Transformer and under the continuous flow."""
    if case.geometry == "sphere" and len(pts) ** 2 > MAX_EXACT_PAIRS:
        return coupling_w1(pts, ref, wts)
    return wasserstein(pts, wts, ref, wts, geometry=case.geometry)[0]
