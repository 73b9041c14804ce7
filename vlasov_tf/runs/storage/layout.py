"""The HDF5 layout of a run file (:mod:`vlasov_tf.runs.storage` describes it): the jobs it is laid
out for (:class:`JobLayout`) and their checks, the layout written once at creation
(:func:`write_layout`), and read back, validated, at opening (:func:`read_layout`: the byte offset of
every dataset, :class:`LoadedJob`).

Only these two functions use h5py; afterwards a run file's bytes are read and written in place at
those offsets (:mod:`.files`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import h5py
import numpy as np

if TYPE_CHECKING:
    from vlasov_tf.geometry.meshes import MeshGeometry, PhaseMesh

__all__ = [
    "F8",
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
    "MESH_KINDS",
    "READ_VERSIONS",
    "JobLayout",
    "LoadedJob",
    "RunFileError",
    "StoredLayout",
    "check_layouts",
    "check_name",
    "little_endian",
    "mesh_arrays",
    "mesh_id",
    "normalise_attr",
    "read_layout",
    "same_attr",
    "write_layout",
]

#: Value of the root attribute ``format`` of a run file.
FORMAT = "vlasov_tf run"
#: Version of the layout written; :meth:`RunFile.open` reads it and :data:`READ_VERSIONS`.
#: Version 3 added a checksum to every stored array (version 2: to the snapshots only).
FORMAT_VERSION = 3
#: Versions :func:`read_layout` reads (2: written before every array had a checksum).
READ_VERSIONS = (2, 3)
#: Kinds of solver job.
KINDS = ("grid", "particles", "phase")
#: The kinds whose state is a density on a stored mesh.
MESH_KINDS = ("grid", "phase")
#: The file's float type: every state, time, clock and diagnostic is little-endian float64.
F8 = np.dtype("<f8")

_RESERVED_ATTRS = frozenset({"kind", "job_index"})
# A key segment: no '.' or '..' (HDF5 path components), nothing that needs quoting in an XDMF path.
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")
_ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MESH_ARRAYS = ("vertices", "cell_vertices", "centres", "areas")


class RunFileError(ValueError):
    """A run file is unreadable, damaged, or not a vlasov_tf run file."""


@dataclass(frozen=True)
class JobLayout:
    """One job of a run as :meth:`RunFile.create` allocates it.

    ``kind="grid"`` with its ``mesh`` (the state: densities (C,)), ``"phase"`` with its
    :class:`~vlasov_tf.geometry.meshes.PhaseMesh` (the kinetic grid; the state: its cell averages
    (Ntheta Nv,), row-major), or ``"particles"`` with ``tokens`` N and dimension ``d`` (the state:
    positions (N, d)). ``attrs`` (str, bool, int,
    float or flat lists of numbers; not kind or job_index) are stored on the job's group.
    ``tables``: name -> row shape of per-output arrays the job stores beside its snapshots
    (:meth:`RunFile.add_row`).
    """

    key: str
    kind: str
    mesh: MeshGeometry | PhaseMesh | None = None
    tokens: int | None = None
    d: int | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def state_shape(self) -> tuple[int, ...]:
        if self.kind in MESH_KINDS:
            if self.mesh is None:
                raise ValueError(f"{self.kind} job {self.key} needs a mesh")
            return (self.mesh.n_cells,)
        if self.tokens is None or self.d is None:
            raise ValueError(f"particle job {self.key} needs tokens and d")
        return (int(self.tokens), int(self.d))

    @property
    def nbytes(self) -> int:
        """Bytes a job's snapshots and table rows take per output time."""
        return 8 * (math.prod(self.state_shape) + sum(math.prod(row) for row in self.tables.values()))


@dataclass
class LoadedJob:
    """A job as loaded from the file: identity and byte offsets of its datasets; and, kept by a
    writing :class:`RunFile`, how far it got and what its XDMF companion shows."""

    key: str
    kind: str
    index: int
    attrs: dict[str, Any]
    shape: tuple[int, ...]  # state shape
    mesh_id: str | None
    offsets: dict[str, int]  # dataset name -> byte offset in the file
    mesh_shape: tuple[int, int, int] | None = None  # grid: vertices, their dimension, vertices a cell
    # name -> (row shape, offsets of its values, times and CRC-32s (None: a version 2 file))
    tables: dict[str, tuple[tuple[int, ...], int, int, int | None]] = field(default_factory=dict)
    n_stored: int = 0  # writers: snapshots stored, the last at last_t
    last_t: float = math.nan
    xdmf_steps: list[str] = field(default_factory=list)
    xdmf_shown: int = -1  # snapshots in the XDMF companion as last written, and when
    xdmf_at: float = -math.inf

    @property
    def dataset(self) -> str:
        return "densities" if self.kind in MESH_KINDS else "positions"

    @property
    def row_bytes(self) -> int:
        return 8 * math.prod(self.shape)


# ---------------------------------------------------------------------------------------------------
# names, attributes, meshes


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not all(_KEY_SEGMENT.fullmatch(s) for s in key.split("/")):
        raise ValueError(
            f"job key {key!r}: want '/'-separated segments of letters, digits and _.+=- "
            "(not starting with . + = -), e.g. 'grid/M1024'"
        )
    return key


def check_name(name: str) -> str:
    """``name`` if it can name a diagnostic (a non-empty printable string), else ``ValueError``."""
    if not isinstance(name, str) or not name or not name.isprintable():
        raise ValueError(f"diagnostic name {name!r}: want a non-empty printable string")
    return name


def normalise_attr(name: str, value: Any) -> Any:
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
        items = [normalise_attr(name, v) for v in np.asarray(value).ravel().tolist()]
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


def same_attr(a: Any, b: Any) -> bool:
    """Whether two normalised attr values (:func:`normalise_attr`) are the same value of the same type."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_attr(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    # bool is an int in Python: True == 1 would pass without the type check.
    return type(a) is type(b) and a == b


def little_endian(a: np.ndarray) -> np.ndarray:
    """C-contiguous little-endian copy or view: the file's byte layout."""
    a = np.ascontiguousarray(a)
    return a.astype(a.dtype.newbyteorder("<"), copy=False)


def mesh_id(kind: str, arrays: dict[str, np.ndarray]) -> str:
    """``<kind>_C<cells>_<hash>``: names a mesh by its arrays (:func:`mesh_arrays`), bytes and all."""
    digest = hashlib.sha256(kind.encode())
    for name in _MESH_ARRAYS:
        a = little_endian(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        digest.update(a.tobytes())
    return f"{kind}_C{len(arrays['areas'])}_{digest.hexdigest()[:16]}"


def mesh_arrays(mesh: MeshGeometry | PhaseMesh) -> dict[str, np.ndarray]:
    """The arrays of ``mesh`` a run file stores (vertices, cell_vertices, centres, areas)."""
    return {name: np.asarray(getattr(mesh, name)) for name in _MESH_ARRAYS}


def _diag_name(name: str) -> str:
    q = quote(name, safe="")
    return q.replace(".", "%2E") if q in (".", "..") else q


def check_layouts(jobs: Sequence[JobLayout]) -> list[JobLayout]:
    """``jobs`` as a list if a run file can hold them (keys, kinds, attrs, tables), else ``ValueError``
    (``TypeError`` for attr values that cannot be stored)."""
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
            normalise_attr(name, value)
        for name in job.tables:
            if not _ATTR_NAME.fullmatch(name):
                raise ValueError(f"job {key}: table name {name!r} is not an identifier")
        if job.kind in MESH_KINDS and (job.mesh is None or job.tokens is not None):
            raise ValueError(f"{job.kind} job {key} needs a mesh and no tokens")
        if job.mesh is not None and (job.mesh.kind == "phase") != (job.kind == "phase"):
            raise ValueError(f"{job.kind} job {key}: a phase job and only it has a phase mesh")
        if job.kind == "particles" and (
            job.mesh is not None or not job.tokens or job.tokens < 1 or not job.d or job.d < 1
        ):
            raise ValueError(f"particle job {key} needs tokens >= 1, d >= 1 and no mesh")
    return list(jobs)


# ---------------------------------------------------------------------------------------------------
# writing the layout


def _early_dcpl() -> h5py.h5p.PropDCID:
    """Contiguous storage allocated (and filled) at creation: the data never moves afterwards."""
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return plist


def write_layout(
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
    """Write a run file's whole layout (:mod:`vlasov_tf.runs.storage`) to ``path``, every dataset
    allocated; ``jobs`` and ``diagnostics`` as :func:`check_layouts` and :func:`check_name` passed them."""
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
        # Written once: HDF5's own checksum (every HDF5 reader checks it). The arrays written in
        # place later cannot have one (a filter needs chunks, whose place HDF5 may change):
        # they get CRC-32s beside them (the module docstring of vlasov_tf.runs.storage).
        f.create_dataset("times", data=times, fletcher32=True)
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
            g.attrs.update({k: normalise_attr(k, v) for k, v in job.attrs.items()})
            allocated(g, "times", (n,))
            allocated(g, "crc", (n,), "<u4")
            allocated(g, "clock", (2,))
            allocated(g, "checks", (3,), "<u4")  # CRC-32 of the weights, of clock[0], of clock[1]
            name = "densities" if job.kind in MESH_KINDS else "positions"
            data = allocated(g, name, (n, *job.state_shape))
            mesh = job.mesh
            if mesh is not None:  # a grid job (check_layouts: grid jobs have a mesh, particle jobs none)
                arrays = mesh_arrays(mesh)
                ident = mesh_id(mesh.kind, arrays)
                if ident not in meshes:
                    m = meshes.create_group(ident)
                    for a, value in arrays.items():
                        m.create_dataset(a, data=little_endian(value))
                    m.attrs.update(
                        {
                            "id": ident,
                            "kind": mesh.kind,
                            "level": -1 if mesh.level is None else int(mesh.level),
                            "char_length": float(mesh.char_length),
                            "source": str(mesh.source),
                        }
                    )
                g["mesh"] = meshes[ident]
            else:
                tokens = job.state_shape[0]
                allocated(g, "weights", (tokens,))
                g.create_dataset("vertex_ids", data=np.arange(tokens, dtype="<i8")[:, None], fletcher32=True)
            for table, row in job.tables.items():
                allocated(g, f"tables/{table}/values", (n, *row))
                allocated(g, f"tables/{table}/times", (n,))
                allocated(g, f"tables/{table}/crc", (n,), "<u4")
            steps = g.create_group("step")
            source = h5py.VirtualSource(".", data.name, shape=data.shape, dtype=data.dtype)
            for i in range(n):
                layout = h5py.VirtualLayout(shape=job.state_shape, dtype=F8)
                layout[...] = source[i]
                steps.create_virtual_dataset(str(i), layout, fillvalue=np.nan)
        diags = f.create_group("diagnostics")
        crcs = f.create_group("diagnostic_crcs")  # CRC-32 of each value, by the same name
        for name in diagnostics:
            ds = allocated(diags, _diag_name(name), (len(jobs), n))
            ds.attrs["name"] = name
            ds.attrs["jobs"] = [job.key for job in jobs]
            allocated(crcs, _diag_name(name), (len(jobs), n), "<u4")


# ---------------------------------------------------------------------------------------------------
# reading it back


@dataclass
class StoredLayout:
    """A run file's layout as :func:`read_layout` found it."""

    run_id: str
    case: dict[str, str]  # the attributes of /case
    times: np.ndarray  # (n,) the output times
    jobs: dict[str, LoadedJob]  # key -> job, in run order
    diagnostics: dict[str, tuple[int, int | None]]  # name -> byte offsets of its (J, n) values, CRCs
    version: int  # the file's format version
    # mesh id -> array name -> (byte offset, shape, dtype): the stored meshes, checked by their id
    meshes: dict[str, dict[str, tuple[int, tuple[int, ...], np.dtype]]]


def read_layout(path: Path, *, name: Path | None = None) -> StoredLayout:
    """Validate the run file ``path`` and read its layout (byte offsets; not the snapshots).

    ``RunFileError``, naming the file (as ``name``, when given: the run file a temporary one
    will become), if it is not HDF5, not a run file of :data:`FORMAT_VERSION`, or damaged. Does
    not check the file's length against the offsets (the caller's descriptor does).
    """
    source, path = path, name or path
    try:
        f = h5py.File(source, "r")
    except OSError as err:
        raise RunFileError(
            f"run file {path} is not a readable HDF5 file (truncated, corrupted or not HDF5): {err}"
        ) from err
    try:
        with f:
            return _read_layout(path, f)
    except RunFileError:
        raise
    except Exception as err:  # h5py reports damage as OSError, KeyError, RuntimeError, ...
        raise RunFileError(f"run file {path} is damaged: {type(err).__name__}: {err}") from err


def _fail(path: Path, problem: str) -> RunFileError:
    return RunFileError(f"run file {path}: {problem}")


def _offset(path: Path, ds: h5py.Dataset, shape: tuple[int, ...], dtype: np.dtype) -> int:
    if ds.shape != shape or ds.dtype != dtype:
        raise _fail(path, f"{ds.name} is {ds.shape} {ds.dtype}, expected {shape} {dtype}")
    offset = ds.id.get_offset()
    if offset is None:
        raise _fail(path, f"{ds.name} is not stored contiguously (not written by RunFile.create)")
    return int(offset)


def _read_layout(path: Path, f: h5py.File) -> StoredLayout:
    attrs = f.attrs
    if _from_h5_attr(attrs.get("format")) != FORMAT:
        raise _fail(path, f"not a vlasov_tf run file (no root attribute format = {FORMAT!r})")
    version = attrs.get("format_version")
    if version not in READ_VERSIONS:
        raise _fail(
            path,
            f"format version {version}, this code reads {', '.join(map(str, READ_VERSIONS))} (the file "
            "is plain HDF5: h5py reads it; the vlasov_tf that wrote it reads it)",
        )
    run_id = str(_from_h5_attr(attrs["run_id"]))
    case = f["case"].attrs
    missing = [k for k in ("text", "name", "version", "created") if k not in case]
    if missing:
        raise _fail(path, f"/case lacks attribute(s) {', '.join(missing)}")
    case_attrs = {k: str(_from_h5_attr(v)) for k, v in case.items()}
    try:
        times = f["times"][()]
    except OSError as err:  # HDF5's Fletcher-32 check
        raise _fail(path, f"dataset /times is damaged ({err}): start the run afresh") from None
    n = len(times)
    found: list[LoadedJob] = []

    def walk(group: h5py.Group, prefix: str) -> None:
        for name, obj in group.items():
            if isinstance(obj, h5py.Group):
                if "kind" in obj.attrs:
                    found.append(_read_job(path, prefix + name, obj, n))
                else:
                    walk(obj, prefix + name + "/")

    walk(f["jobs"], "")
    jobs = {j.key: j for j in sorted(found, key=lambda j: j.index)}
    order = list(jobs)
    diagnostics: dict[str, tuple[int, int | None]] = {}
    crcs = f.get("diagnostic_crcs")
    for key, ds in f["diagnostics"].items():
        if [str(_from_h5_attr(k)) for k in ds.attrs["jobs"]] != order:
            raise _fail(path, f"{ds.name}: its rows are not the jobs {order}")
        crc = None if crcs is None else _offset(path, crcs[key], (len(order), n), np.dtype("<u4"))
        diagnostics[str(_from_h5_attr(ds.attrs["name"]))] = (_offset(path, ds, (len(order), n), F8), crc)
    meshes = {
        ident: {
            a: (_offset(path, ds, ds.shape, ds.dtype), ds.shape, ds.dtype)
            for a in _MESH_ARRAYS
            if (ds := m[a])
        }
        for ident, m in f["meshes"].items()
    }
    return StoredLayout(run_id, case_attrs, times, jobs, diagnostics, int(version), meshes)


def _read_job(path: Path, key: str, g: h5py.Group, n: int) -> LoadedJob:
    kind = str(_from_h5_attr(g.attrs["kind"]))
    if kind not in KINDS:
        raise _fail(path, f"job {key} has kind {kind!r}, not one of {KINDS}")
    mesh_shape = None
    if kind in MESH_KINDS:
        mesh = g["mesh"]
        shape, ident = (len(mesh["areas"]),), str(_from_h5_attr(mesh.attrs["id"]))
        (nv, dim), (nc, k) = mesh["vertices"].shape, mesh["cell_vertices"].shape
        if dim not in (2, 3) or nc != shape[0]:
            raise _fail(path, f"job {key}: mesh vertices {(nv, dim)} / cell_vertices {(nc, k)}")
        mesh_shape = (nv, dim, k)
        data = g["densities"]
    else:
        data = g["positions"]
        shape, ident = tuple(data.shape[1:]), None
    offsets = {
        data.name.rsplit("/", 1)[1]: _offset(path, data, (n, *shape), F8),
        "times": _offset(path, g["times"], (n,), F8),
        "crc": _offset(path, g["crc"], (n,), np.dtype("<u4")),
        "clock": _offset(path, g["clock"], (2,), F8),
    }
    if "checks" in g:  # format version 3
        offsets["checks"] = _offset(path, g["checks"], (3,), np.dtype("<u4"))
    if kind == "particles":
        offsets["weights"] = _offset(path, g["weights"], shape[:1], F8)
    attrs = {k: _from_h5_attr(v) for k, v in g.attrs.items() if k not in _RESERVED_ATTRS}
    tables = {}
    for name, t in g.get("tables", {}).items():
        values = t["values"]
        row = tuple(values.shape[1:])
        tables[name] = (
            row,
            _offset(path, values, (n, *row), F8),
            _offset(path, t["times"], (n,), F8),
            _offset(path, t["crc"], (n,), np.dtype("<u4")) if "crc" in t else None,
        )
    return LoadedJob(key, kind, int(g.attrs["job_index"]), attrs, shape, ident, offsets, mesh_shape, tables)
