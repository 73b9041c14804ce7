"""Sphere mesh files: where they live, how they are written, read back, checked and built.

Each level of the nested sphere ladder (:mod:`vlasov_tf.geometry.meshes`) is written once to
``meshes/sphere_L{level}.h5`` by :func:`build_sphere_mesh` (``vlasov-tf mesh --level K``): level
0 by gmsh through FiPy from ``meshes/sphere.geo``, finer levels by :func:`refine_sphere` of the
level below (numpy only). :func:`load_mesh` and :func:`sphere_mesh` read them back, checked
against their recorded checksum, and import neither FiPy nor gmsh: FiPy refuses to import under
``mpiexec`` with more than one rank, so parallel runs load the files.

Design notes: docs/design.md §7 (nested sphere meshes; levels 0-2 committed).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from vlasov_tf.geometry.meshes import (
    INTEGER_ARRAYS,
    MESH_ARRAYS,
    SPHERE_LEVEL0_CELLS,
    MeshGeometry,
    refine_sphere,
    sphere_char_length,
    sphere_geometry,
)
from vlasov_tf.memory import BYTES_PER_SPHERE_CELL, check_memory

__all__ = [
    "FORMAT_VERSION",
    "MESHES_ENV",
    "SPHERE_COMMITTED_LEVELS",
    "build_sphere_mesh",
    "check_mesh_memory",
    "fipy_sphere_surface",
    "fipy_triangles",
    "load_mesh",
    "meshes_dir",
    "save_mesh",
    "sphere_geo",
    "sphere_mesh",
    "sphere_mesh_path",
    "write_gmsh",
]

#: Version of the HDF5 layout written by :func:`save_mesh`; :func:`load_mesh` refuses others.
FORMAT_VERSION = 1
#: Environment variable naming the directory of the mesh files (overrides ``<repo>/meshes``).
MESHES_ENV = "VLASOV_TF_MESHES"
#: Levels whose files are committed under meshes/ (small); the others are built on demand.
SPHERE_COMMITTED_LEVELS = (0, 1, 2)

# The repository's meshes/ (an editable install), else the levels 0-2 a wheel carries in the package.
_REPO_MESHES = next(
    (
        d
        for d in (
            Path(__file__).resolve().parents[2] / "meshes",
            Path(__file__).resolve().parents[1] / "shipped" / "meshes",
        )
        if d.is_dir()
    ),
    Path(__file__).resolve().parents[1] / "shipped" / "meshes",
)
_GEO_NAME = "sphere.geo"
# The installed package: sphere_mesh writes no mesh file inside it.
_PACKAGE = Path(__file__).resolve().parents[1]
_log = logging.getLogger(__name__)


def meshes_dir() -> Path:
    """Directory of the mesh files: ``$VLASOV_TF_MESHES`` if set, else ``meshes/`` of the repository,
    else (a non-editable install) the levels 0-2 inside the package; finer levels are refined from
    them on first use and kept there if it is writable, else in memory."""
    env = os.environ.get(MESHES_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{MESHES_ENV}={env!r} is not a directory")
        return path
    if not _REPO_MESHES.is_dir():
        raise FileNotFoundError(
            f"the meshes directory {_REPO_MESHES} does not exist (neither the repository's meshes/ nor "
            f"the copy an installed package carries); set {MESHES_ENV} to the directory that holds the "
            "sphere_L*.h5 files"
        )
    return _REPO_MESHES


def sphere_mesh_path(level: int, directory: str | os.PathLike | None = None) -> Path:
    """``<directory>/sphere_L{level}.h5``; ``directory`` defaults to :func:`meshes_dir`."""
    sphere_char_length(level)  # validates the level
    return Path(directory if directory is not None else meshes_dir()) / f"sphere_L{int(level)}.h5"


def sphere_mesh(level: int) -> MeshGeometry:
    """Load (and check) the sphere mesh of ``level`` from :func:`meshes_dir`; no FiPy, no gmsh.

    A missing level above 0 is refined from the levels below it (numpy only, seconds: level 5
    in ~7 s) and written to the directory for the next run when it is the user's
    (``$VLASOV_TF_MESHES`` or the repository's meshes/) and writable; never into an installed
    package, and a read-only directory is no error: the level is built in memory (and logged so).
    Level 0 (the gmsh mesh, committed) must exist. A level whose cells would not fit in the memory
    available is refused before anything is built or written (:func:`check_mesh_memory`).
    """
    path = sphere_mesh_path(level)
    if path.is_file() or int(level) == 0 or not sphere_mesh_path(0).is_file():
        return _nested(load_mesh(path), int(level))
    check_mesh_memory(int(level))
    inside = _PACKAGE in path.parent.resolve().parents
    why = "inside the installed package" if inside else "not writable"
    if not inside and os.access(path.parent, os.W_OK):
        # os.access can say yes where the write then fails (root on a directory without write
        # permission for it over NFS, a quota, a full disk): that is no error either.
        try:
            built = build_sphere_mesh(level, path.parent)
        except OSError as err:
            why = f"not writable: {err}"
        else:
            return _nested(load_mesh(built), int(level))
    _log.info(f"sphere mesh level {level}: built in memory ({path.parent} is {why}; set {MESHES_ENV} to "
              "a directory to keep it)")  # fmt: skip
    mesh = load_mesh(sphere_mesh_path(0))
    for k in range(1, int(level) + 1):
        below = sphere_mesh_path(k)
        mesh = load_mesh(below) if below.is_file() else refine_sphere(mesh, source=f"{below} (in memory)")
    return _nested(mesh, int(level))


def check_mesh_memory(level: int) -> None:
    """:class:`~vlasov_tf.memory.TooLarge` naming ``level`` when building sphere mesh ``level``
    (1080 * 4^level cells) would take more memory than is available; before anything is built."""
    cells = SPHERE_LEVEL0_CELLS * 4 ** int(level)
    check_memory(cells * BYTES_PER_SPHERE_CELL, f"sphere mesh level {level} ({cells} cells)")


def _nested(mesh: MeshGeometry, level: int) -> MeshGeometry:
    """``mesh`` if it has the cell count of ``level`` of the nested ladder, else a ValueError: a file
    from before the levels were nested (gmsh meshed every level) would compare wrongly."""
    want = SPHERE_LEVEL0_CELLS * 4**level
    if level > 0 and mesh.n_cells != want:
        raise ValueError(
            f"mesh file {mesh.source} has {mesh.n_cells} cells, level {level} of the nested ladder has "
            f"{want}: it was built by an older version (which meshed every level with gmsh). Delete it: "
            f"it is rebuilt from level 0 on first use (or `vlasov-tf mesh --level {level}`)"
        )
    return mesh


def _build_hint(path: Path) -> str:
    match = re.fullmatch(r"sphere_L(\d+)\.h5", path.name)
    level = match.group(1) if match else "K"
    where = "" if path.parent.resolve() == _REPO_MESHES else f" (with {MESHES_ENV}={path.parent})"
    return f"build it with `vlasov-tf mesh --level {level}`{where}"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over name, dtype, shape and little-endian bytes of each array, in ``MESH_ARRAYS`` order."""
    digest = hashlib.sha256()
    for name in MESH_ARRAYS:
        arr = np.ascontiguousarray(arrays[name])
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def save_mesh(mesh: MeshGeometry, path: str | os.PathLike, **attrs: str | float | int) -> Path:
    """Write ``mesh`` (checked first) to the HDF5 file ``path`` atomically; return the path.

    One gzip-compressed dataset per array; attributes ``format_version``,
    ``kind``, ``level`` (-1 for none), ``n_cells``, ``n_faces``,
    ``n_vertices``, ``char_length``, ``sha256`` (see :func:`load_mesh`) and
    ``attrs``. The file appears under its name only once complete.
    """
    mesh.check()
    path = Path(path)
    arrays = {name: getattr(mesh, name) for name in MESH_ARRAYS}
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": mesh.kind,
        "level": -1 if mesh.level is None else int(mesh.level),
        "n_cells": mesh.n_cells,
        "n_faces": mesh.n_faces,
        "n_vertices": mesh.n_vertices,
        "char_length": float(mesh.char_length),
        "sha256": _checksum(arrays),
        **attrs,
    }
    # Not mkstemp: its 0600 mode would outlive os.replace; h5py creates the file under the umask.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # track_times=False: rebuilding an unchanged mesh rewrites identical bytes (quiet git diffs).
        with h5py.File(tmp, "w", track_order=True) as f:
            for name, arr in arrays.items():
                f.create_dataset(
                    name,
                    data=arr,
                    chunks=(min(len(arr), 1 << 16), *arr.shape[1:]),
                    compression="gzip",
                    compression_opts=4,
                    shuffle=True,
                    track_times=False,
                )
            f.attrs.update(meta)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def load_mesh(path: str | os.PathLike) -> MeshGeometry:
    """Read a mesh file written by :func:`save_mesh`, verify its checksum and geometry.

    Raises ``FileNotFoundError`` for a missing file (saying how to build it)
    and ``ValueError`` for an unreadable or truncated file, another format
    version, a missing dataset, a checksum mismatch or a failed
    :meth:`MeshGeometry.check`.
    """
    path = Path(path)
    hint = _build_hint(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file {path} does not exist; {hint}")
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            missing = [name for name in MESH_ARRAYS if name not in f]
            if missing:
                raise ValueError(f"mesh file {path}: dataset(s) {', '.join(missing)} missing; {hint}")
            arrays = {name: f[name][()] for name in MESH_ARRAYS}
    except OSError as err:
        raise ValueError(f"mesh file {path} is unreadable (truncated or corrupted?): {err}; {hint}") from err

    absent = [k for k in ("format_version", "kind", "level", "char_length", "sha256") if k not in attrs]
    if absent:
        raise ValueError(f"mesh file {path}: attribute(s) {', '.join(absent)} missing; {hint}")
    if attrs["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"mesh file {path} has format version {attrs['format_version']}, this code reads "
            f"{FORMAT_VERSION}; {hint}"
        )
    for name, arr in arrays.items():
        want = np.int64 if name in INTEGER_ARRAYS else np.float64
        if arr.dtype != want:
            raise ValueError(
                f"mesh file {path}: dataset {name} has dtype {arr.dtype}, expected {np.dtype(want)}"
            )
    if _checksum(arrays) != attrs["sha256"]:
        raise ValueError(
            f"mesh file {path}: checksum mismatch (the arrays differ from those written: corrupted or "
            f"edited); {hint}"
        )
    level = int(attrs["level"])
    mesh = MeshGeometry(
        kind=str(attrs["kind"]),
        level=None if level < 0 else level,
        char_length=float(attrs["char_length"]),
        source=str(path),
        **arrays,
    )
    return mesh.check()


@contextlib.contextmanager
def _gmsh_on_path() -> Iterator[None]:
    """Put the interpreter's bin directory (where the gmsh wheel installs ``gmsh``) first on PATH.

    FiPy runs ``gmsh`` from PATH, and a venv's bin is not on PATH when Python is
    started by its full path.
    """
    old = os.environ.get("PATH")
    os.environ["PATH"] = os.pathsep.join(p for p in (os.path.dirname(sys.executable), old) if p)
    try:
        yield
    finally:
        if old is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = old


def _merge_coincident(x: np.ndarray, tri: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop unreferenced vertices and merge those closer than ``tol`` (patch seams)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    used, tri = np.unique(tri, return_inverse=True)
    x = x[used]
    tri = tri.reshape(-1, 3)
    pairs = cKDTree(x).query_pairs(tol, output_type="ndarray")
    if len(pairs):
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(x), len(x)))
        _, label = connected_components(graph, directed=False)
        first = np.unique(label, return_index=True)[1]
        x, tri = x[first], label[tri]
    return x, tri


def fipy_triangles(mesh) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) vertex coordinates and (C, 3) triangles of a FiPy 2D-in-3D mesh, from its faces."""
    x = np.asarray(mesh.vertexCoords, dtype=float).T
    face_vertices = np.ma.getdata(mesh.faceVertexIDs).T.astype(np.int64)  # (F, 2)
    cell_faces = mesh.cellFaceIDs  # (3, C) for triangles
    if cell_faces.shape[0] != 3 or np.ma.getmaskarray(cell_faces).any():
        raise ValueError(
            f"the gmsh mesh is not made of triangles only (cells with {cell_faces.shape[0]} faces)"
        )
    cell_faces = np.ma.getdata(cell_faces).T.astype(np.int64)
    a, b = face_vertices[cell_faces[:, 0]].T
    e = face_vertices[cell_faces[:, 1]]
    third = np.where((e[:, 0] != a) & (e[:, 0] != b), e[:, 0], e[:, 1])
    tri = np.stack([a, b, third], axis=1)
    if ((tri[:, 0] == tri[:, 1]) | (tri[:, 1] == tri[:, 2]) | (tri[:, 0] == tri[:, 2])).any():
        raise ValueError("the gmsh mesh has degenerate triangles")
    return x, tri


def _find_geo(directory: Path) -> Path:
    for candidate in (directory / _GEO_NAME, _REPO_MESHES / _GEO_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"gmsh source {_GEO_NAME} not found in {directory} nor in {_REPO_MESHES}")


def sphere_geo(char_length: float, directory: str | os.PathLike | None = None) -> str:
    """The gmsh source ``meshes/sphere.geo`` with its characteristic length set to ``char_length``."""
    if not (np.isfinite(char_length) and char_length > 0):
        raise ValueError(f"the characteristic length must be finite and > 0; got {char_length}")
    directory = Path(directory) if directory is not None else meshes_dir()
    return f"lc = {float(char_length)!r};\n" + _find_geo(directory).read_text()


def fipy_sphere_surface(geo: str):  # -> (fipy.Gmsh2DIn3DSpace, gmsh version)
    """Mesh ``geo`` (gmsh ``.geo`` text, or the path of a ``.geo``/``.msh`` file) with gmsh through
    ``fipy.Gmsh2DIn3DSpace`` (serial; needs FiPy and gmsh).

    The one place FiPy meets gmsh: the mesh builder and the FiPy baseline
    (:mod:`vlasov_tf.solvers.fipy_baseline`) both mesh through it, so they share triangles.
    """
    with _gmsh_on_path():
        import fipy
        from fipy.meshes.gmshMesh import gmshVersion

        version = gmshVersion()
        if not version:
            raise RuntimeError(
                f"gmsh executable not found on PATH (looked first in {os.path.dirname(sys.executable)})"
            )
        return fipy.Gmsh2DIn3DSpace(geo), version


def build_sphere_mesh(level: int, directory: str | os.PathLike | None = None) -> Path:
    """Write ``<directory>/sphere_L{level}.h5``; return its path.

    Level 0: ``meshes/sphere.geo`` meshed with characteristic length ``SPHERE_LC0`` by
    ``fipy.Gmsh2DIn3DSpace`` (needs FiPy and gmsh, serial only); its vertices, projected on
    the sphere, and triangles give the geometry (:func:`sphere_geometry`). Level k >= 1:
    :func:`refine_sphere` of level k - 1, loaded from the same directory (and built first
    if missing); numpy only. Files are written atomically.
    """
    lc = sphere_char_length(level)
    check_mesh_memory(level)  # before any level is built or written
    directory = Path(directory) if directory is not None else meshes_dir()
    directory.mkdir(parents=True, exist_ok=True)
    # The files of this level and the missing ones below (at most 176 B a cell, uncompressed).
    missing = [k for k in range(level + 1) if not sphere_mesh_path(k, directory).is_file()]
    need = sum(176 * SPHERE_LEVEL0_CELLS * 4**k for k in missing)
    free = shutil.disk_usage(directory).free
    if need > free:
        raise OSError(f"sphere mesh level {level}: its files need up to {need / 2**30:.2f} GiB, the disk "
                      f"under {directory} has {free / 2**30:.2f} GiB free")  # fmt: skip
    path = sphere_mesh_path(level, directory)
    if level > 0:
        parent_path = sphere_mesh_path(level - 1, directory)
        if not parent_path.is_file():
            build_sphere_mesh(level - 1, directory)
        parent = load_mesh(parent_path)
        mesh = refine_sphere(parent, source=f"{path} (being built)")
        return save_mesh(
            mesh,
            path,
            parent_sha256=str(_file_checksum(parent_path)),
            built_by="vlasov_tf.geometry.meshes.refine_sphere",
        )
    geo = sphere_geo(lc, directory)
    fmesh, version = fipy_sphere_surface(geo)
    import fipy

    x, tri = fipy_triangles(fmesh)
    # gmsh writes coordinates with ~17 digits; seam duplicates (if any) are closer than this.
    x, tri = _merge_coincident(x, tri, tol=1e-3 * lc)
    mesh = sphere_geometry(x, tri, level=0, char_length=lc, source=f"{path} (being built)")
    return save_mesh(
        mesh,
        path,
        gmsh_version=str(version),
        fipy_version=str(fipy.__version__),
        geo=geo,
        built_by="vlasov_tf.geometry.mesh_files.build_sphere_mesh",
    )


def _file_checksum(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return str(f.attrs["sha256"])


def write_gmsh(mesh: MeshGeometry, path: str | os.PathLike) -> Path:
    """Write a sphere mesh's vertices and triangles as a gmsh MSH 2.2 ASCII file (for FiPy's reader).

    Node and element numbers are 1-based; each triangle is element type 2 with one physical
    and one elementary tag (1), in the mesh's cell order.
    """
    if mesh.kind != "sphere":
        raise ValueError("write_gmsh is for sphere meshes")
    path = Path(path)
    nodes = np.c_[np.arange(1, mesh.n_vertices + 1), mesh.vertices]
    elems = np.c_[
        np.arange(1, mesh.n_cells + 1),
        np.full((mesh.n_cells, 4), [2, 2, 1, 1]),
        mesh.cell_vertices + 1,
    ]
    with open(path, "w") as f:
        f.write("$MeshFormat\n2.2 0 8\n$EndMeshFormat\n")
        f.write(f"$Nodes\n{mesh.n_vertices}\n")
        np.savetxt(f, nodes, fmt=["%d", "%.17g", "%.17g", "%.17g"])
        f.write(f"$EndNodes\n$Elements\n{mesh.n_cells}\n")
        np.savetxt(f, elems, fmt="%d")
        f.write("$EndElements\n")
    return path
