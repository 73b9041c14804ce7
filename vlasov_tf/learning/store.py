"""The run file of a learning run: data, checkpoints, the learned Schedule, the evaluation; crash-safe.

Layout of ``<name>.h5`` (plain h5py reads it at any moment)::

    /                  attrs: format = "vlasov_tf learning", format_version = 1, case_text,
                       case_name, overrides (JSON), version, created, provenance (JSON, with
                       the versions of jax, jaxlib, optax, ott-jax),
                       architecture (JSON: network.Architecture), splits (JSON: seed, counts, tokens,
                       family, labels: what regenerates the data)
    /data/<split>/inputs, labels   (M, n, d) for split in train, validation, test
    /checkpoint        attrs: step;  params/<name> (the network's arrays), opt/<i> (optax's state,
                       its leaves in order), history (k, 3): step, train loss, validation loss
    /evaluation/<name> arrays of the evaluation (runner), once it ran

The learned network is ``/checkpoint/params`` with the architecture: :func:`load_schedule` makes
it the :class:`~vlasov_tf.models.attention.Schedule` both solvers run.

Durability: the whole file is small (kilobytes to a few MB), so every save writes all of it to a
temporary file, fsyncs it and renames it over the run file (:func:`~vlasov_tf.runs.storage.files.replace`):
a kill leaves the previous checkpoint or the new one, never a mix. One writer at a time, as for
run files (the lock ``<name>.h5.lock``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vlasov_tf import __version__
from vlasov_tf.learning.network import Architecture, to_schedule
from vlasov_tf.learning.training import TrainState
from vlasov_tf.models.attention import Schedule
from vlasov_tf.runs.storage import RunFileError
from vlasov_tf.runs.storage.environment import provenance
from vlasov_tf.runs.storage.files import lock_writer, remove_stale_tmp, replace, tmp_name, unlock_writer

__all__ = ["FORMAT", "LearningRun", "load_schedule"]

FORMAT = "vlasov_tf learning"
_SPLITS = ("train", "validation", "test")


def _versions() -> dict[str, str]:
    """Versions of the packages the training depends on (its arithmetic may change with them)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("jax", "jaxlib", "optax", "ott-jax"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


class LearningRun:
    """A learning run file held in memory and saved whole (module docstring).

    Make one with :meth:`create`, reopen one with :meth:`open` (``mode="a"`` to resume: takes the
    writer's lock; ``"r"`` to read). ``data[split] = (inputs, labels)``; ``state``: the last
    checkpoint (None before the first); ``evaluation``: name -> array.
    """

    def __init__(self, path: Path, attrs: dict[str, Any], lock_fd: int | None) -> None:
        self.path = path
        self.attrs = attrs
        self.data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.state: TrainState | None = None
        self.evaluation: dict[str, np.ndarray] = {}
        self._lock_fd = lock_fd

    @property
    def arch(self) -> Architecture:
        return Architecture(**json.loads(self.attrs["architecture"]))

    @property
    def case_text(self) -> str:
        return str(self.attrs["case_text"])

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        case_text: str,
        case_name: str,
        overrides: Mapping[str, Any],
        arch: Architecture,
        splits: Mapping[str, Any],
        data: Mapping[str, tuple[np.ndarray, np.ndarray]],
        overwrite: bool = False,
    ) -> LearningRun:
        """A new run file with its data (saved at once); ``FileExistsError`` if ``path`` exists
        and not ``overwrite`` (resume it instead)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"run file {path} exists: resume it (the default), or pass --overwrite")
        lock = lock_writer(path)
        attrs = {
            "format": FORMAT,
            "format_version": 1,
            "case_text": case_text,
            "case_name": case_name,
            "overrides": json.dumps(dict(overrides), sort_keys=True),
            "version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "provenance": json.dumps(provenance() | {"learning_packages": _versions()}),
            "architecture": json.dumps(arch.__dict__),
            "splits": json.dumps(dict(splits), sort_keys=True),
        }
        run = cls(path, attrs, lock)
        run.data = {k: (np.asarray(x), np.asarray(y)) for k, (x, y) in data.items()}
        try:
            run.save()
        except BaseException:
            run.close()
            raise
        return run

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "a") -> LearningRun:
        """Read a run file (``mode="a"``: and hold its writer's lock, to resume)."""
        path = Path(path)
        if mode not in ("a", "r"):
            raise ValueError(f"mode must be 'a' or 'r'; got {mode!r}")
        if not path.is_file():
            raise FileNotFoundError(f"run file {path} does not exist")
        lock = lock_writer(path) if mode == "a" else None
        try:
            if lock is not None:
                remove_stale_tmp(path)
            try:
                f = h5py.File(path, "r")
            except OSError as err:
                raise RunFileError(f"run file {path} is not a readable HDF5 file: {err}") from None
            with f:
                attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
                if attrs.get("format") != FORMAT:
                    raise RunFileError(
                        f"run file {path} is not a learning run file (format {attrs.get('format')!r})"
                    )
                run = cls(path, attrs, lock)
                for s in _SPLITS:
                    run.data[s] = (f[f"data/{s}/inputs"][()], f[f"data/{s}/labels"][()])
                if "checkpoint" in f:
                    g = f["checkpoint"]
                    run.state = TrainState(
                        step=int(g.attrs["step"]),
                        params={k: g["params"][k][()] for k in g["params"]},
                        opt_leaves=[g["opt"][str(i)][()] for i in range(len(g["opt"]))],
                        history=g["history"][()],
                    )
                if "evaluation" in f:
                    run.evaluation = {k: f["evaluation"][k][()] for k in f["evaluation"]}
            return run
        except BaseException:
            if lock is not None:
                unlock_writer(path, lock)
            raise

    def checkpoint(self, state: TrainState) -> None:
        """Keep ``state`` as the run's checkpoint (saved before this returns)."""
        self.state = state
        self.save()

    def save(self) -> None:
        """Write the whole file to a temporary one and rename it over the run file (fsynced)."""
        if self._lock_fd is None:
            raise RunFileError(f"run file {self.path} is open for reading only")
        tmp = tmp_name(self.path)
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs.update(self.attrs)
                for s, (x, y) in self.data.items():
                    f[f"data/{s}/inputs"], f[f"data/{s}/labels"] = x, y
                if self.state is not None:
                    g = f.create_group("checkpoint")
                    g.attrs["step"] = self.state.step
                    for k, v in self.state.params.items():
                        g[f"params/{k}"] = np.asarray(v)
                    opt = g.create_group("opt")
                    for i, a in enumerate(self.state.opt_leaves):
                        opt[str(i)] = np.asarray(a)
                    g["history"] = np.asarray(self.state.history, dtype=float).reshape(-1, 3)
                for k, v in self.evaluation.items():
                    f[f"evaluation/{k}"] = np.asarray(v)
            replace(tmp, self.path, True)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def schedule(self) -> Schedule:
        """The learned network (the last checkpoint) as a Schedule."""
        if self.state is None:
            raise RunFileError(f"run file {self.path} holds no trained network yet")
        return to_schedule(self.arch, self.state.params)

    def close(self) -> None:
        if self._lock_fd is not None:
            unlock_writer(self.path, self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> LearningRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_schedule(path: str | os.PathLike) -> Schedule:
    """The learned network of a learning run file, as the attention Schedule both solvers run."""
    run = LearningRun.open(path, mode="r")
    return run.schedule()
