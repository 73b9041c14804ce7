"""Mesh geometry on S^1 and S^2 against mathematics: FiPy's periodic grid, exact spherical
triangles, the divergence theorem, topology, and the mesh files' integrity checks."""

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from scipy.sparse import csr_matrix

from vlasov_tf.cli import main
from vlasov_tf.geometry import mesh_files
from vlasov_tf.geometry.measures import normalize
from vlasov_tf.geometry.mesh_files import (
    MESHES_ENV,
    SPHERE_COMMITTED_LEVELS,
    _checksum,
    load_mesh,
    save_mesh,
    sphere_mesh,
    sphere_mesh_path,
)
from vlasov_tf.geometry.meshes import (
    MESH_ARRAYS,
    MeshGeometry,
    circle_mesh,
    coarsen_masses,
    mesh_quality,
    sphere_geometry,
)
from vlasov_tf.runs.studies import fitted_order

REPO_MESHES = sphere_mesh_path(0).parent  # resolved before a test points MESHES_ENV elsewhere



@pytest.fixture(scope="module")
def spheres() -> dict[int, MeshGeometry]:
    return {level: sphere_mesh(level) for level in SPHERE_COMMITTED_LEVELS}


def edge_ends(mesh: MeshGeometry) -> np.ndarray:
    """(F, 2) vertex ids of each face: the two vertices its owner and neighbour triangles share."""
    own, nbr = mesh.cell_vertices[mesh.face_cells[:, 0]], mesh.cell_vertices[mesh.face_cells[:, 1]]
    shared = (own[:, :, None] == nbr[:, None, :]).any(axis=2)
    assert (shared.sum(axis=1) == 2).all()
    return own[shared].reshape(-1, 2)


# ---------------------------------------------------------------------------------------------- circle


@pytest.mark.parametrize("M", [2, 3, 16, 101])
def test_circle_is_fipys_periodic_grid(M):
    """Cells, faces, volumes and face-cell incidence of PeriodicGrid1D(nx=M, dx=2 pi/M), in the angle."""
    fipy = pytest.importorskip("fipy")
    grid = fipy.PeriodicGrid1D(nx=M, dx=2 * np.pi / M)
    mesh = circle_mesh(M)
    tc = np.asarray(grid.cellCenters)[0]
    tf = np.asarray(grid.faceCenters)[0][:M]  # face M is face 0 again (periodic)
    np.testing.assert_allclose(mesh.centres, np.stack([np.cos(tc), np.sin(tc)], 1), atol=1e-14)
    np.testing.assert_allclose(mesh.face_midpoints, np.stack([np.cos(tf), np.sin(tf)], 1), atol=1e-14)
    np.testing.assert_allclose(mesh.areas, np.asarray(grid.cellVolumes), rtol=1e-14)
    np.testing.assert_array_equal(mesh.face_cells, np.asarray(grid.faceCellIDs)[:, :M].T)
    cell_faces = np.sort(np.asarray(grid.cellFaceIDs).T % M, axis=1)
    ours = np.sort(np.stack([np.arange(M), (np.arange(M) + 1) % M], 1), axis=1)
    np.testing.assert_array_equal(cell_faces, ours)
    # FiPy's face normal is +1 in the angle: the unit tangent (-sin t, cos t) on the circle.
    np.testing.assert_allclose(mesh.face_normals, np.stack([-np.sin(tf), np.cos(tf)], 1), atol=1e-14)
    assert mesh.h == pytest.approx(2 * np.pi / M) and mesh.areas.sum() == pytest.approx(2 * np.pi, rel=1e-14)


@pytest.mark.parametrize("M", [1, 0, 2.0, True])
def test_circle_rejects_bad_sizes(M):
    with pytest.raises(ValueError, match="integer M >= 2"):
        circle_mesh(M)


def test_circle_divergence_of_tangent_field_is_exact_in_the_mean():
    """v = P_x a on S^1: face fluxes telescope, (flux / length) is the cell average of div v."""
    a = np.array([0.3, -1.2])
    mesh = circle_mesh(50)
    flux = (mesh.face_normals @ a) * mesh.face_lengths  # v . n = a . n: the tangent is unit
    t0, t1 = np.arange(50) * mesh.h, np.arange(1, 51) * mesh.h
    # div v = d/dt (a . tau(t)) along the circle; its cell integral is a . (tau(t1) - tau(t0)).
    exact = a[0] * (-np.sin(t1) + np.sin(t0)) + a[1] * (np.cos(t1) - np.cos(t0))
    np.testing.assert_allclose(mesh.net_outflow(flux), exact, atol=1e-14)


# ---------------------------------------------------------------------------------------------- sphere


def test_octahedron_is_exact():
    """Eight octants: areas and edges pi/2, centroids along (+-1, +-1, +-1) (int x over an octant is
    pi/4 (1, 1, 1)), normals along the axes, triangles reoriented counter-clockwise seen from outside."""
    x = np.concatenate([np.eye(3), -np.eye(3)])
    tri = np.array([[i, j, k] for i in (0, 3) for j in (1, 4) for k in (2, 5)])
    mesh = sphere_geometry(x, tri)
    np.testing.assert_allclose(mesh.areas, np.pi / 2, rtol=1e-15)
    np.testing.assert_allclose(mesh.face_lengths, np.pi / 2, rtol=1e-15)
    np.testing.assert_allclose(np.abs(mesh.centres), 1 / np.sqrt(3), rtol=1e-15)
    np.testing.assert_allclose(np.abs(mesh.face_normals).max(axis=1), 1.0, rtol=1e-15)
    assert (mesh.n_vertices, mesh.n_faces, mesh.n_cells) == (6, 12, 8)
    assert (np.linalg.det(x[tri]) < 0).sum() == 4  # half of the input is clockwise
    assert (np.linalg.det(mesh.vertices[mesh.cell_vertices]) > 0).all()


def test_cells_are_the_spherical_triangles(spheres):
    """Area and centroid of each geodesic triangle against quadrature over the flat triangle it projects.

    The radial projection of the flat triangle abc is the geodesic one, with
    dsigma = |N . y| / |y|^3 dA for y on the plane of unit normal N.
    """
    mesh = spheres[0]
    g, w = np.polynomial.legendre.leggauss(12)
    s, t = np.meshgrid((g + 1) / 2, (g + 1) / 2, indexing="ij")
    ws = np.outer(w, w).ravel() / 4
    s, t = s.ravel(), t.ravel()
    a, b, c = (mesh.vertices[mesh.cell_vertices[:, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    # Duffy map of the unit square on the triangle: y = a + s (b - a) + s t (c - b), dA = |n| s ds dt.
    y = a[:, None] + s[None, :, None] * (b - a)[:, None] + (s * t)[None, :, None] * (c - b)[:, None]
    r = np.linalg.norm(y, axis=2)
    dsigma = np.abs(np.einsum("ci,cqi->cq", n, y)) / r**3 * s * ws
    area = dsigma.sum(axis=1)
    moment = np.einsum("cq,cqi->ci", dsigma, y / r[..., None])
    np.testing.assert_allclose(mesh.areas, area, rtol=1e-13)
    np.testing.assert_allclose(mesh.centres, moment / np.linalg.norm(moment, axis=1)[:, None], atol=1e-14)


@pytest.mark.parametrize("level", SPHERE_COMMITTED_LEVELS)
def test_sphere_geometry(spheres, level):
    """Areas tile 4 pi; points on S^2; faces are the great-circle arcs shared by their two cells."""
    mesh = spheres[level]
    assert mesh.kind == "sphere" and mesh.level == level and mesh.d == 3
    assert mesh.areas.sum() == pytest.approx(4 * np.pi, rel=1e-12)
    for name in ("vertices", "centres", "face_midpoints"):
        np.testing.assert_allclose(np.linalg.norm(getattr(mesh, name), axis=1), 1.0, atol=1e-15)
    ends = edge_ends(mesh)
    a, b = mesh.vertices[ends[:, 0]], mesh.vertices[ends[:, 1]]
    n, m = mesh.face_normals, mesh.face_midpoints
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-15)
    # n is normal to the plane of the arc: tangent to S^2 and perpendicular to the edge all along it.
    assert np.abs(np.einsum("fi,fi->f", n, a)).max() < 1e-14
    assert np.abs(np.einsum("fi,fi->f", n, b)).max() < 1e-14
    assert np.abs(np.einsum("fi,fi->f", n, m)).max() < 1e-14
    own, nbr = mesh.face_cells.T
    assert (np.einsum("fi,fi->f", n, mesh.centres[nbr] - mesh.centres[own]) > 0).all()
    np.testing.assert_allclose(m, (a + b) / np.linalg.norm(a + b, axis=1)[:, None], atol=1e-15)
    np.testing.assert_allclose(mesh.face_lengths, np.arccos(np.clip(np.sum(a * b, 1), -1, 1)), rtol=1e-8)
    # Topology: a closed triangulation of S^2, each triangle with three faces, no face twice.
    assert mesh.n_vertices - mesh.n_faces + mesh.n_cells == 2
    assert (np.bincount(mesh.face_cells.ravel(), minlength=mesh.n_cells) == 3).all()
    assert len(np.unique(np.sort(ends, axis=1), axis=0)) == mesh.n_faces
    assert (np.linalg.det(mesh.vertices[mesh.cell_vertices]) > 0).all()
    assert mesh.areas.min() / mesh.areas.max() > 0.3  # quasi-uniform
    # Refinement keeps the cells' shape (the midpoint split of a flat triangle gives four similar
    # ones; the sphere's curvature perturbs angles by O(h0^2) ~ 1 degree at level 0's h0 = 0.11).
    quality, base = mesh_quality(mesh), mesh_quality(spheres[0])
    assert abs(quality["min_angle"] - base["min_angle"]) < 1.0
    assert abs(quality["max_angle"] - base["max_angle"]) < 1.0
    assert quality["area_ratio"] < 1.05 * base["area_ratio"]


def test_refinement_ladder(spheres):
    """Each level splits every cell in four: exactly 4x the cells, h / 2."""
    h = np.array([spheres[k].h for k in SPHERE_COMMITTED_LEVELS])
    cells = np.array([spheres[k].n_cells for k in SPHERE_COMMITTED_LEVELS])
    np.testing.assert_allclose(h[:-1] / h[1:], 2.0, rtol=1e-14)
    assert (cells[1:] == 4 * cells[:-1]).all() and cells[0] == 1080
    np.testing.assert_allclose(h, np.sqrt(4 * np.pi / cells), rtol=1e-14)


@pytest.mark.parametrize("level", SPHERE_COMMITTED_LEVELS[1:])
def test_levels_are_nested(spheres, level):
    """Cells 4c..4c+3 of a level lie in cell c of the level below (their vertices inside its geodesic
    triangle, each one of its vertices or edge midpoints) and tile it: areas add up to round-off."""
    fine, coarse = spheres[level], spheres[level - 1]
    children = fine.areas.reshape(-1, 4).sum(axis=1)
    np.testing.assert_allclose(children, coarse.areas, rtol=64 * np.finfo(float).eps / fine.h**2, atol=0)
    np.testing.assert_array_equal(coarsen_masses(fine.areas, fine, coarse), children)
    parent = coarse.vertices[coarse.cell_vertices]  # (C, 3, 3), counter-clockwise
    # Midpoint rule: the children's corners are the parent's corners and its edge midpoints.
    corners = np.concatenate([parent, normalize(parent + np.roll(parent, -1, axis=1))], axis=1)  # (C, 6, 3)
    child_pts = fine.vertices[fine.cell_vertices].reshape(-1, 12, 3)  # the 4 children's 3 corners
    gap = np.linalg.norm(child_pts[:, :, None, :] - corners[:, None, :, :], axis=3).min(axis=2)
    assert gap.max() <= 1e-15
    # The children's centres are inside the parent: on the inner side of its three great circles.
    planes = np.cross(parent, np.roll(parent, -1, axis=1))  # (C, 3, 3)
    centres = fine.centres.reshape(-1, 4, 3)
    assert (np.einsum("cki,cji->cjk", planes, centres) > 0).all()


def test_coarsen_masses_of_nested_grids(spheres, rng):
    masses = rng.random((3, spheres[2].n_cells))
    got = coarsen_masses(masses, spheres[2], spheres[0])
    assert got.shape == (3, spheres[0].n_cells)
    np.testing.assert_allclose(got.sum(axis=1), masses.sum(axis=1), rtol=1e-13)
    np.testing.assert_array_equal(got, masses.reshape(3, -1, 16).sum(axis=2))
    circle = rng.random(64)
    np.testing.assert_array_equal(
        coarsen_masses(circle, circle_mesh(64), circle_mesh(16)), circle.reshape(16, 4).sum(axis=1)
    )
    with pytest.raises(ValueError, match="not a nested refinement"):
        coarsen_masses(circle, circle_mesh(64), circle_mesh(24))
    with pytest.raises(ValueError, match="not a nested refinement"):
        coarsen_masses(masses[0], spheres[2], circle_mesh(270))


def test_cli_builds_finer_levels_by_refinement(tmp_path, capsys):
    """`vlasov-tf mesh --level 3` from level 0 alone: the missing levels first, numpy only; level 2
    comes out as the committed file, bit for bit."""
    shutil.copy(sphere_mesh_path(0), tmp_path / "sphere_L0.h5")
    assert main(["mesh", "--level", "3", "--dir", str(tmp_path)]) == 0
    assert "69120" in capsys.readouterr().out
    for level in (1, 2):
        assert (tmp_path / f"sphere_L{level}.h5").read_bytes() == sphere_mesh_path(level).read_bytes()
    assert load_mesh(tmp_path / "sphere_L3.h5").n_cells == 4**3 * 1080


def test_divergence_theorem_second_order(spheres, rng):
    """v(x) = P_x a: div_S v = -2 <a, x>. Midpoint face fluxes over the cell area converge to
    div v at the centre at second order (area-weighted L1); the fluxes cancel in the total."""
    a = rng.standard_normal(3)
    h, errors = [], []
    for level in SPHERE_COMMITTED_LEVELS:
        mesh = spheres[level]
        m = mesh.face_midpoints
        v = a - (m @ a)[:, None] * m
        flux = np.einsum("fi,fi->f", v, mesh.face_normals) * mesh.face_lengths
        net = mesh.net_outflow(flux)
        err = np.abs(net / mesh.areas + 2 * mesh.centres @ a) @ mesh.areas / (4 * np.pi)
        h.append(mesh.h)
        errors.append(err)
        assert abs(net.sum()) <= 1e-15 * np.abs(flux).sum()
        # net = D^T flux with D (F, C) holding +1 at (f, owner) and -1 at (f, neighbour): D 1 = 0
        # exactly, so the total outflow is 0 whatever the fluxes.
        f = np.arange(mesh.n_faces)
        ones = np.ones(mesh.n_faces)
        D = csr_matrix((np.r_[ones, -ones], (np.r_[f, f], mesh.face_cells.T.ravel())), (len(f), mesh.n_cells))
        assert (D @ np.ones(mesh.n_cells) == 0).all() and (abs(D) @ np.ones(mesh.n_cells) == 2).all()
        np.testing.assert_allclose(D.T @ flux, net, rtol=0, atol=1e-16)
    assert fitted_order(h, errors) >= 1.8
    assert errors[-1] < 0.2 * h[-1] ** 2 * np.linalg.norm(a)


# ---------------------------------------------------------------------------------------------- files


def test_circle_roundtrip_and_read_only(tmp_path):
    mesh = circle_mesh(12)
    back = load_mesh(save_mesh(mesh, tmp_path / "circle.h5"))
    assert back.kind == "circle" and back.level is None and back.char_length == mesh.char_length
    for name in MESH_ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(mesh, name))
    with pytest.raises(ValueError, match="read-only"):
        back.areas[0] = 1.0


def test_a_missing_refined_level_is_built_from_level_0(tmp_path, monkeypatch):
    """A fresh clone has levels 0-2: sphere_mesh(3) refines and keeps the file; in a read-only
    directory the refinement stays in memory (same geometry)."""
    shutil.copy(sphere_mesh_path(0), tmp_path / "sphere_L0.h5")
    monkeypatch.setenv(MESHES_ENV, str(tmp_path))
    built = sphere_mesh(3)
    assert built.n_cells == 69120 and (tmp_path / "sphere_L3.h5").is_file()
    for k in (1, 2):
        assert (tmp_path / f"sphere_L{k}.h5").read_bytes() == sphere_mesh_path(k, REPO_MESHES).read_bytes()
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(sphere_mesh_path(0), locked / "sphere_L0.h5")
    monkeypatch.setenv(MESHES_ENV, str(locked))
    monkeypatch.setattr(mesh_files.os, "access", lambda *_: False)  # a directory we may not write (as root)
    in_memory = sphere_mesh(3)
    assert not (locked / "sphere_L3.h5").exists()
    np.testing.assert_array_equal(in_memory.areas, built.areas)


def test_a_stale_level_from_before_nesting_is_refused(tmp_path, monkeypatch):
    """An old (gmsh-meshed, not nested) sphere_L2.h5 would compare wrongly with the others."""
    shutil.copy(sphere_mesh_path(0), tmp_path / "sphere_L0.h5")
    shutil.copy(sphere_mesh_path(1), tmp_path / "sphere_L2.h5")  # the wrong cell count for level 2
    monkeypatch.setenv(MESHES_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=r"sphere_L2\.h5 has 4320 cells, level 2 .* 17280.*older version"):
        sphere_mesh(2)


def test_missing_file_says_how_to_build_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"vlasov-tf mesh --level 7"):
        load_mesh(tmp_path / "sphere_L7.h5")
    monkeypatch.setenv(MESHES_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"does not exist.*--level 1.*{MESHES_ENV}"):
        sphere_mesh(1)
    monkeypatch.setenv(MESHES_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=rf"{MESHES_ENV}=.* is not a directory"):
        sphere_mesh(0)


def test_truncated_file(tmp_path):
    data = sphere_mesh_path(0).read_bytes()
    path = tmp_path / "sphere_L0.h5"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"unreadable \(truncated or corrupted\?\)"):
        load_mesh(path)


@pytest.fixture
def copy_l0(tmp_path):
    path = tmp_path / "sphere_L0.h5"
    shutil.copyfile(sphere_mesh_path(0), path)
    return path


def test_tampered_dataset_fails_the_checksum(copy_l0):
    with h5py.File(copy_l0, "r+") as f:
        f["face_normals"][5, 0] += 1e-9
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_mesh(copy_l0)


def test_consistent_but_wrong_file_fails_the_check(copy_l0):
    """A checksum cannot vouch for the geometry: check() runs on every load."""
    with h5py.File(copy_l0, "r+") as f:
        f["areas"][0] *= 1.5
        f.attrs["sha256"] = _checksum({name: f[name][()] for name in MESH_ARRAYS})
    with pytest.raises(ValueError, match=r"sphere_L0\.h5.*cell areas sum to"):
        load_mesh(copy_l0)


def test_missing_dataset_and_other_version(copy_l0):
    with h5py.File(copy_l0, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ValueError, match="format version 99"):
        load_mesh(copy_l0)
    with h5py.File(copy_l0, "r+") as f:
        del f["face_lengths"]
    with pytest.raises(ValueError, match="face_lengths missing"):
        load_mesh(copy_l0)


def test_check_names_the_problem():
    mesh = circle_mesh(8)
    arrays = {name: getattr(mesh, name).copy() for name in MESH_ARRAYS}
    arrays["face_normals"][3] *= -1
    with pytest.raises(ValueError, match=r"circle_mesh\(8\).*face normal 3 does not point"):
        MeshGeometry("circle", None, mesh.char_length, source="circle_mesh(8)", **arrays).check()


def test_loading_needs_neither_fipy_nor_gmsh():
    code = (
        "import sys; from vlasov_tf.geometry.mesh_files import sphere_mesh; sphere_mesh(0); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fipy', 'gmsh')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_rebuilds_the_committed_level_0(tmp_path, capsys):
    """`vlasov-tf mesh --level 0` in a fresh directory reproduces the committed file's geometry."""
    pytest.importorskip("fipy")
    committed = sphere_mesh_path(0)
    with h5py.File(committed) as f:
        committed_gmsh = f.attrs["gmsh_version"]
    assert main(["mesh", "--level", "0", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sphere_L0.h5" in out and str(load_mesh(committed).n_cells) in out
    with h5py.File(tmp_path / "sphere_L0.h5") as f:
        if f.attrs["gmsh_version"] != committed_gmsh:
            pytest.skip(f"gmsh {f.attrs['gmsh_version']} here, the file was built by {committed_gmsh}")
    new, old = load_mesh(tmp_path / "sphere_L0.h5"), load_mesh(committed)
    for name in MESH_ARRAYS:
        np.testing.assert_allclose(getattr(new, name), getattr(old, name), rtol=0, atol=1e-14)
