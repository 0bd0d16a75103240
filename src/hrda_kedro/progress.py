"""Progress of long loops as plain log lines (logs redirected to a file or a scheduler).

tqdm bars show progress on a terminal only; materializing pseudo-labels, checking
ingestion files or evaluating can take minutes at Cityscapes scale, and a log file would
show nothing in between. :class:`LogProgress` logs ``what: done/total (share), rate, ETA``
at most every ``every_s`` seconds and once at the end.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


class LogProgress:
    """Count done items; log now and then. Not thread-safe: update from one thread."""

    def __init__(self, total: int, what: str, every_s: float = 30.0) -> None:
        self.total = total
        self.what = what
        self.every_s = every_s
        self.done = 0
        self._start = self._last = time.perf_counter()

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.perf_counter()
        if self.done >= self.total or now - self._last >= self.every_s:
            self._last = now
            elapsed = max(now - self._start, 1e-9)
            rate = self.done / elapsed
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            logger.info(
                "%s: %d/%d (%.0f%%), %.2f/s, ETA %s",
                self.what,
                self.done,
                self.total,
                100.0 * self.done / max(self.total, 1),
                rate,
                _duration(eta),
            )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
