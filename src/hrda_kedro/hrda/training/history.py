"""The loss history of a stage: read back once every ``log_every`` steps (where non-finite
losses are caught), the log line, the progress bar's postfix, the checkpoint's columns."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)

OnLog = Callable[[str, list[dict[str, float]]], None]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the iteration and the term."""


class History:
    """Rows ``{iteration, lr, seconds, <loss terms>}``; steps stay pending (their losses on
    the device) until :meth:`flush` reads them back in one transfer."""

    def __init__(
        self, stage: str, iterations: int, *, reports: bool = True, on_log: OnLog | None = None
    ) -> None:
        """Only a history that ``reports`` (rank 0's) writes log lines and calls
        ``on_log(stage, rows)`` with the rows added (experiment trackers hook in here)."""
        self.stage = stage
        self.iterations = iterations
        self.reports = reports
        self.on_log = on_log
        self.rows: list[dict[str, float]] = []
        self._pending: list[tuple[dict[str, torch.Tensor], float]] = []
        self._reported = 0  # rows already logged and passed to on_log
        self._tic = time.perf_counter()

    def start(self, rows: list[dict[str, float]]) -> None:
        """Continue after ``rows`` (a resumed run's rows, reported before) from now."""
        self.rows = rows
        self._reported = len(rows)
        self._pending = []
        self._tic = time.perf_counter()

    def add(self, terms: dict[str, torch.Tensor], lr: float) -> None:
        """A step's detached loss terms and the lr it used (a host float: no sync)."""
        self._pending.append((terms, lr))

    def flush(self, iteration: int) -> int:
        """Read the pending steps' losses back in one transfer; stop on a non-finite one.
        ``iteration`` is the count of steps done; returns how many rows were added."""
        if not self._pending:
            return 0
        count, elapsed = len(self._pending), time.perf_counter() - self._tic
        names = sorted(self._pending[0][0])
        values = torch.stack(
            [torch.stack([terms[n].float() for n in names]) for terms, _ in self._pending]
        ).cpu()
        first = iteration - count + 1
        _check_finite(values, names, first, self.stage)
        for (_, lr), row in zip(self._pending, values.tolist(), strict=True):
            record = {"iteration": float(first), "lr": lr, "seconds": elapsed / count}
            record.update(zip(names, row, strict=True))
            self.rows.append(record)
            first += 1
        self._pending = []
        self._tic = time.perf_counter()
        return count

    def report(self, iteration: int) -> None:
        """A plain log line (logs redirected to a file or a scheduler show the progress the
        bar shows on a terminal), then the rows added since to ``on_log``."""
        rows, self._reported = self.rows[self._reported :], len(self.rows)
        if not self.reports or not rows:
            return
        last = rows[-1]
        per_step = max(last["seconds"], 1e-9)
        terms = " ".join(
            f"{k} {last[k]:.4f}"
            for k in ("loss", "source_fused", "mix_fused", "feature_distance", "pseudo_weight")
            if k in last
        )
        logger.info(
            "%s: %d/%d %s lr %.2e | %.2f it/s, ETA %s",
            self.stage,
            iteration,
            self.iterations,
            terms,
            last["lr"],
            1.0 / per_step,
            _duration((self.iterations - iteration) * per_step),
        )
        if self.on_log is not None:
            self.on_log(self.stage, rows)

    def postfix(self) -> dict[str, str]:
        """The progress bar's figures of the last row."""
        last = self.rows[-1]
        shown = {
            k: f"{v:.3f}"
            for k, v in last.items()
            if k in ("loss", "source_fused", "mix_fused", "pseudo_weight")
        }
        shown["lr"] = f"{last['lr']:.2e}"
        shown["it/s"] = f"{1.0 / max(last['seconds'], 1e-9):.2f}"
        return shown


def _check_finite(values: torch.Tensor, names: list[str], first: int, stage: str) -> None:
    bad = (~torch.isfinite(values)).nonzero().tolist()
    if not bad:
        return
    # Name the term that went bad, not the total it made non-finite as well.
    step = bad[0][0]
    terms = [t for s, t in bad if s == step]
    term = next((t for t in terms if names[t] != "loss"), terms[0])
    raise NonFiniteLossError(
        f"{stage}: loss term {names[term]!r} is {values[step, term].item()} at "
        f"iteration {first + step}; stopped, the last checkpoint on disk is from before it"
    )


def _duration(seconds: float) -> str:
    """``h:mm:ss``, as the progress bar shows its ETA."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def history_to_columns(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Column layout: plain lists survive ``weights_only`` loading."""
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    return {k: [float(row.get(k, float("nan"))) for row in rows] for k in keys}


def history_from_columns(columns: dict[str, list[float]]) -> list[dict[str, float]]:
    if not columns:
        return []
    length = len(next(iter(columns.values())))
    return [{k: v[i] for k, v in columns.items()} for i in range(length)]
