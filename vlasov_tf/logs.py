"""What a run reports as it goes: log records (the ``logging`` module) and progress bars.

Every module logs to a child of the ``vlasov_tf`` logger (``logging.getLogger(__name__)``);
:func:`configure` (called by the command line) shows the records on stdout with a timestamp and,
under MPI, the rank (``2026-11-29 21:55:03 [rank 0/3] grid/M512: done in 12.3 s``), and
:func:`log_file` adds a file beside a run file for the duration of a run. The Python API
configures nothing: a script sees records as its own ``logging`` setup decides.

Progress bars are tqdm's (stderr); :data:`TIME_BAR` is the format of bars that count model
time (the grid, the adaptive reference).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

__all__ = ["FORMAT", "TIME_BAR", "configure", "log_file"]

#: Bars over model time t in [0, T], shown to 4 digits (not as the float sum of the steps,
#: ``4.286404755325911/8.0``).
TIME_BAR = "{desc}: {percentage:3.0f}%|{bar}| t = {n:.4g}/{total:.4g} [{elapsed}<{remaining}]"
#: Timestamp, rank (under MPI), message.
FORMAT = "%(asctime)s %(rank)s%(message)s"
_DATE = "%Y-%m-%d %H:%M:%S"
_ROOT = "vlasov_tf"


class _RankFilter(logging.Filter):
    def __init__(self, rank: int, size: int) -> None:
        super().__init__()
        self.prefix = f"[rank {rank}/{size}] " if size > 1 else ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.prefix
        return True


class _Stdout(logging.StreamHandler):
    """A handler on whatever ``sys.stdout`` is when a record comes (not the one at configuration:
    a caller that swaps stdout, as a test's capture does, would leave it writing to a closed file)."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure(rank: int = 0, size: int = 1, *, debug: bool = False) -> None:
    """Show the package's records on stdout: INFO and above from rank 0, WARNING and above from
    the other ranks (DEBUG everywhere with ``debug``). Replaces an earlier configuration."""
    logger = logging.getLogger(_ROOT)
    for handler in [h for h in logger.handlers if getattr(h, "_vlasov_tf", False)]:
        logger.removeHandler(handler)
    handler = _Stdout()
    handler._vlasov_tf = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(FORMAT, _DATE))
    handler.addFilter(_RankFilter(rank, size))
    handler.setLevel(logging.DEBUG if debug else logging.INFO if rank == 0 else logging.WARNING)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


@contextmanager
def log_file(path: Path, rank: int = 0, size: int = 1, *, fresh: bool = False) -> Iterator[Path]:
    """Append the package's INFO records to ``path`` while the block runs (rank 0 writes it);
    ``fresh``: empty it at the first record (a run that replaces another: its first record comes
    after the run file was replaced, so a run refused before keeps the old log)."""
    if rank != 0:
        yield path
        return
    logger = logging.getLogger(_ROOT)
    handler = logging.FileHandler(path, mode="w" if fresh else "a", encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(FORMAT, _DATE))
    handler.addFilter(_RankFilter(rank, size))
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    level = logger.level
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)  # the API configures nothing beyond the block
