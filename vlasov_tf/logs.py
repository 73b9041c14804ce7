"""What a run reports as it goes: log records (the ``logging`` module) and progress bars.

Every module logs to a child of the ``vlasov_tf`` logger (``logging.getLogger(__name__)``);
:func:`configure` (called by the command line) shows the records on stdout with a timestamp and,
under MPI, the rank (``2026-11-29 21:55:03 [rank 0/3] grid/M512: done in 12.3 s``), and
:func:`log_file` adds a file beside a run file for the duration of a run. The Python API
configures nothing: a script sees records as its own ``logging`` setup decides.

Progress bars are tqdm's (stderr); :data:`TIME_BAR` is the format of bars that count model
time (the grid, the adaptive reference). A long job also logs its progress (:class:`Progress`:
where it is, its rate, its estimated end) every :data:`PROGRESS_INTERVAL` seconds, bar or not: a
batch job's log (no terminal, no bar) shows that it runs and when it will end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

__all__ = ["FORMAT", "PROGRESS_INTERVAL", "TIME_BAR", "Progress", "configure", "log_file"]

#: Bars over model time t in [0, T], shown to 4 digits (not as the float sum of the steps,
#: ``4.286404755325911/8.0``).
TIME_BAR = "{desc}: {percentage:3.0f}%|{bar}| t = {n:.4g}/{total:.4g} [{elapsed}<{remaining}]"
#: Seconds between two progress records of a job (the first comes after as long).
PROGRESS_INTERVAL = 60.0
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


class Progress:
    """A job's progress over [``initial``, ``total``] (model time, or steps with ``unit="step"``):
    a tqdm bar on stderr when ``bar``, and an INFO record of the ``vlasov_tf.progress`` logger at
    most every ``interval`` seconds (default :data:`PROGRESS_INTERVAL`), bar or not::

        grid (sphere, C=17280): t = 2.4 of 8 (30%), 0.0213 t/s, about 4.4 min left (ends 21:59)

    A context manager; :meth:`update` by the amount done since the last call.
    """

    def __init__(
        self,
        total: float,
        *,
        desc: str,
        unit: str = "t",
        initial: float = 0.0,
        bar: bool = False,
        bar_format: str | None = None,
        interval: float | None = None,
    ) -> None:
        self.total, self.desc, self.unit = float(total), desc, unit
        self.interval = PROGRESS_INTERVAL if interval is None else interval
        self.done = self._start = float(initial)
        self._t0 = self._last = time.monotonic()
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not bar,
                         bar_format=bar_format)  # fmt: skip
        self._log = logging.getLogger(f"{_ROOT}.progress")

    @property
    def n(self) -> float:
        """Where the job is (as tqdm's ``n``)."""
        return self.done

    def update(self, amount: float = 1.0) -> None:
        self._bar.update(amount)
        self.done += amount
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._log.info(self.line(now))

    def line(self, now: float) -> str:
        """The progress record at monotonic time ``now``."""
        elapsed = max(now - self._t0, 1e-9)
        rate = (self.done - self._start) / elapsed
        where = f"t = {self.done:.4g}" if self.unit == "t" else f"{self.unit} {self.done:.0f}"
        share = 100 * self.done / self.total if self.total else 100.0
        text = f"{self.desc}: {where} of {self.total:.4g} ({share:.0f}%), {rate:.3g} {self.unit}/s"
        if rate > 0:
            left = (self.total - self.done) / rate
            if left < 1e9:  # timedelta and datetime end in year 9999
                end = datetime.now() + timedelta(seconds=left)
                text += f", about {_duration(left)} left (ends {end:%Y-%m-%d %H:%M})"
            else:
                text += f", about {left / 3.15e7:.3g} years left"
        return text

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.2g} {unit}"
    return f"{seconds:.0f} s"
