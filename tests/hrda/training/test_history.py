"""The loss history: one read-back per flush, the term that went bad, checkpoint columns."""

from __future__ import annotations

import pytest
import torch

from hrda_kedro.hrda.training.history import (
    History,
    NonFiniteLossError,
    history_from_columns,
    history_to_columns,
)


def _terms(loss: float, source: float) -> dict[str, torch.Tensor]:
    return {"loss": torch.tensor(loss), "source_fused": torch.tensor(source)}


def test_flush_turns_pending_steps_into_rows_numbered_from_the_first() -> None:
    history = History("warmup", iterations=10)
    history.add(_terms(2.0, 1.5), lr=1e-3)
    history.add(_terms(1.0, 0.5), lr=5e-4)
    assert history.flush(iteration=7) == 2
    assert [(r["iteration"], r["lr"], r["loss"]) for r in history.rows] == [
        (6.0, 1e-3, 2.0),
        (7.0, 5e-4, 1.0),
    ]
    assert history.flush(iteration=7) == 0  # nothing pending


def test_a_non_finite_term_is_named_rather_than_the_total() -> None:
    history = History("round_1", iterations=10)
    history.add(_terms(1.0, 0.5), lr=1e-3)
    history.add(_terms(float("nan"), float("inf")), lr=1e-3)
    with pytest.raises(
        NonFiniteLossError, match=r"round_1: loss term 'source_fused' is inf at iteration 5"
    ):
        history.flush(iteration=5)


def test_only_a_reporting_history_calls_on_log_with_each_row_once() -> None:
    received: list[list[float]] = []
    quiet = History("s", 4, reports=False, on_log=lambda _, rows: received.append([0.0]))
    loud = History("s", 4, on_log=lambda _, rows: received.append([r["iteration"] for r in rows]))
    for history in (quiet, loud):
        history.add(_terms(1.0, 1.0), lr=0.1)
        history.flush(1)
        history.report(1)
        history.report(1)  # no new rows: nothing passed on
    assert received == [[1.0]]


def test_columns_round_trip_and_fill_terms_a_row_lacks_with_nan() -> None:
    rows = [{"iteration": 1.0, "loss": 2.0}, {"iteration": 2.0, "loss": 1.0, "mic": 0.5}]
    columns = history_to_columns(rows)
    assert columns["mic"][1] == 0.5 and columns["mic"][0] != columns["mic"][0]
    back = history_from_columns(columns)
    assert back[1] == rows[1] and back[0]["loss"] == 2.0
    assert history_from_columns({}) == []
