"""What a run file records of the environment that made the run (:func:`provenance`): command line,
code version and commit, library versions, host, MPI size, start time.

(Not named ``provenance.py``: the package re-exports the function :func:`provenance`, and a module
of that name would make ``vlasov_tf.runs.storage.provenance`` mean two things.)
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["PROVENANCE_PACKAGES", "provenance"]

#: The libraries whose versions a run file records (the numerics depend on them).
PROVENANCE_PACKAGES = ("numpy", "scipy", "h5py", "ducc0", "finufft", "POT", "numba", "mpi4py")


def provenance(mpi_size: int = 1) -> dict[str, Any]:
    """What made a run: command line, package version and git commit (when the package sits in a
    git checkout), versions of :data:`PROVENANCE_PACKAGES` (those installed), Python, host, number
    of MPI ranks, start time (UTC). Each job's start and finish are in its ``clock``."""
    import platform
    import socket
    import subprocess
    import sys
    from importlib.metadata import PackageNotFoundError, version

    from vlasov_tf import __version__

    versions = {}
    for name in PROVENANCE_PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        commit = out.stdout.strip() if out.returncode == 0 else None
    return {
        "command": list(sys.argv),
        "vlasov_tf": __version__,
        "git_commit": commit,
        "python": platform.python_version(),
        "packages": versions,
        "host": socket.gethostname(),
        "mpi_size": int(mpi_size),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
