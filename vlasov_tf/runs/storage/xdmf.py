"""The XDMF companions of a run file: one ``<job key with '.' for '/'>.xdmf`` per job in the directory
``<run>.xdmf/`` beside the ``.h5`` (:func:`xdmf_path`; a run is one file and one directory, not a file
per job: docs/design.md §4), one temporal collection of the snapshots stored, each referencing
whole datasets of the run file (``step/<i>``): sphere densities on the triangles, circle densities on
the polyline of its arcs (cell-centred), kinetic phase-space grids on the quadrilaterals of the
(theta, v) plane, particles as points with their weights and positions.
meshio (``meshio.xdmf.TimeSeriesReader``) and VTK's XDMF reader (the one behind ParaView's) read
every step.

A writing :class:`RunFile` rewrites a job's companion (atomically) after its snapshots
(:func:`write_xdmf`: at most once every :data:`XDMF_INTERVAL` seconds while they come faster;
always after a job's last one and at close).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .files import write_text
from .layout import LoadedJob

__all__ = ["XDMF_INTERVAL", "legacy_xdmf_path", "remove_xdmf", "write_xdmf", "xdmf_dir", "xdmf_path"]

#: Seconds between rewrites of a job's XDMF companion while its snapshots come faster.
XDMF_INTERVAL = 1.0


def xdmf_dir(path: str | os.PathLike) -> Path:
    """``<run>.xdmf/``: the directory of the XDMF companions of the run file ``path``, beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.xdmf")


def xdmf_path(path: str | os.PathLike, key: str) -> Path:
    """``<run>.xdmf/<key with '.' for '/'>.xdmf``: the XDMF companion of job ``key`` of the run file."""
    return xdmf_dir(path) / f"{key.replace('/', '.')}.xdmf"


def legacy_xdmf_path(path: str | os.PathLike, key: str) -> Path:
    """``<run>.<key with '.' for '/'>.xdmf`` beside the run file: where runs made before the
    companions had their directory kept them (a resume or a replacement removes them)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{key.replace('/', '.')}.xdmf")


def remove_xdmf(path: str | os.PathLike, keys: list[str], *, legacy_only: bool = False) -> None:
    """Delete the companions of jobs ``keys`` of the run file ``path`` (with ``legacy_only``, those
    of the former layout only); the directory too once it is empty (a user's own files in it stay)."""
    for key in keys:
        legacy_xdmf_path(path, key).unlink(missing_ok=True)
        if not legacy_only:
            xdmf_path(path, key).unlink(missing_ok=True)
    if not legacy_only:
        try:
            xdmf_dir(path).rmdir()
        except OSError:  # absent, or holds something else
            pass


def write_xdmf(path: Path, job: LoadedJob, times: np.ndarray, *, force: bool = True) -> None:
    """Rewrite the XDMF companion of ``job`` of the run file ``path`` (output times ``times``
    (n,)) for its ``job.n_stored`` stored snapshots; without ``force`` at most every
    :data:`XDMF_INTERVAL` seconds before the last output (a rewrite is O(snapshots): at every one of
    many fast snapshots it would be quadratic). Keeps its state (steps, when) in ``job``."""
    if job.kind == "particles" and job.shape[1] not in (2, 3):
        return  # particles in R^d, d > 3, have no XDMF geometry
    if job.xdmf_shown == job.n_stored:
        return
    now = time.monotonic()
    if not force and job.n_stored < len(times) and now - job.xdmf_at < XDMF_INTERVAL:
        return
    job.xdmf_shown, job.xdmf_at = job.n_stored, now
    out = xdmf_path(path, job.key)
    if job.n_stored == 0:
        out.unlink(missing_ok=True)
        return
    out.parent.mkdir(exist_ok=True)
    h5 = f"../{path.name}"  # relative to the XDMF file (meshio and VTK resolve it so): a run moves whole
    g = f"/jobs/{job.key}"
    while len(job.xdmf_steps) < job.n_stored:
        i = len(job.xdmf_steps)
        job.xdmf_steps.append(_xdmf_step(job, h5, g, i, float(times[i])))
    del job.xdmf_steps[job.n_stored :]
    text = (
        '<?xml version="1.0" ?>\n<Xdmf Version="3.0">\n  <Domain>\n'
        f'    <Grid Name="{job.key}" GridType="Collection" CollectionType="Temporal">\n'
        + "".join(job.xdmf_steps)
        + "    </Grid>\n  </Domain>\n</Xdmf>\n"
    )
    write_text(out, text)


def _hdf_item(h5: str, path: str, shape: tuple[int, ...], number: str = "Float", precision: int = 8) -> str:
    dims = " ".join(map(str, shape))
    return (
        f'<DataItem Dimensions="{dims}" NumberType="{number}" Precision="{precision}" Format="HDF">'
        f"{h5}:{path}</DataItem>"
    )


def _xdmf_step(job: LoadedJob, h5: str, g: str, i: int, t: float) -> str:
    """One time step of a job's temporal collection: whole datasets only (what meshio reads)."""
    step = _hdf_item(h5, f"{g}/step/{i}", job.shape)
    lines = [f'      <Grid Name="{job.key} t={t:.6g}" GridType="Uniform">', f'        <Time Value="{t!r}"/>']
    if job.mesh_shape is not None:  # a grid job: its mesh is loaded with it
        (cells,) = job.shape
        n_vertices, dim, k = job.mesh_shape
        # The circle's cells are arcs: the segment between their two end points, in the plane.
        # Phase space (k = 4): the quadrilaterals of the (theta, v) plane.
        topo = {3: 'TopologyType="Triangle"', 4: 'TopologyType="Quadrilateral"'}.get(
            k, 'TopologyType="Polyline" NodesPerElement="2"'
        )
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
