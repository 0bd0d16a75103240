"""The EMA teacher's thread: the same step as in sequence, threads split and given back."""

from __future__ import annotations

import threading

import pytest
import torch

from hrda_kedro.hrda.training import teacher_thread
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.params import SelfTrainingParams, parse
from tests.hrda.training.test_trainer import MODEL, SELF_TRAINING, _trainer
from tests.tiny_data import TinySegmentationSet


def _where() -> tuple[int, int]:
    return threading.get_ident(), torch.get_num_threads()


@pytest.mark.parametrize(("total", "split"), [(2, (1, 1)), (3, (1, 2)), (4, (2, 2)), (9, (4, 5))])
def test_the_teacher_gets_half_the_threads_and_the_odd_one(total, split) -> None:
    assert teacher_thread.thread_split(total) == split


@pytest.mark.usefixtures("two_threads")
def test_fn_runs_in_its_own_thread_on_its_share_while_the_caller_runs_on_the_rest() -> None:
    with teacher_thread.beside(_where, enabled=True) as result:
        inside = torch.get_num_threads()
    ident, threads = result()
    assert ident != threading.get_ident()
    assert (inside, threads) == (1, 1)
    assert torch.get_num_threads() == 2  # given back


@pytest.mark.parametrize("enabled", [False, True])
def test_disabled_or_on_one_thread_fn_runs_in_the_caller_after_the_block(enabled) -> None:
    calls: list[str] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if not enabled else 1)
    try:
        with teacher_thread.beside(lambda: calls.append("fn") or _where(), enabled) as result:
            calls.append("block")
        assert result()[0] == threading.get_ident()
        assert calls == ["block", "fn"]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.usefixtures("two_threads")
def test_an_error_in_the_teacher_reaches_the_caller_and_the_threads_come_back() -> None:
    def fails() -> None:
        raise ValueError("teacher failed")

    with teacher_thread.beside(fails, enabled=True) as result:
        pass
    with pytest.raises(ValueError, match="teacher failed"):
        result()
    assert torch.get_num_threads() == 2


@pytest.mark.usefixtures("two_threads")
def test_an_error_in_the_block_waits_for_the_teacher_and_gives_the_threads_back() -> None:
    finished = threading.Event()
    with pytest.raises(RuntimeError, match="source failed"):
        with teacher_thread.beside(lambda: finished.wait(5) and finished.set(), enabled=True):
            finished.set()
            raise RuntimeError("source failed")
    assert torch.get_num_threads() == 2


@pytest.mark.usefixtures("two_threads")
def test_self_training_with_the_teacher_thread_computes_exactly_the_sequential_steps(
    monkeypatch,
) -> None:
    """With each pass on the thread count it has in sequence (here 2 and 2), the concurrent
    step gives bit-identical weights, teacher and losses: the teacher's thread changes
    when its pass runs, never what it computes."""
    params = parse(SelfTrainingParams, SELF_TRAINING, "self_training")
    target = TinySegmentationSet(6, seed=2, with_labels=False)
    teacher_threads: list[int] = []
    real_beside = teacher_thread.beside

    def spied(fn, enabled):
        def recorded():
            teacher_threads.append(threading.get_ident())
            return fn()

        return real_beside(recorded, enabled)

    monkeypatch.setattr(teacher_thread, "beside", spied)
    monkeypatch.setattr(teacher_thread, "thread_split", lambda total: (total, total))
    results = {}
    for concurrent in (False, True):
        teacher_threads.clear()
        trainer = _trainer(params, target)
        trainer.setup = DeviceSetup(torch.device("cpu"), teacher_thread=concurrent)
        results[concurrent] = trainer.run()
        assert len(teacher_threads) == 6  # every step's pseudo-labels
        in_caller = [ident == threading.get_ident() for ident in teacher_threads]
        assert in_caller == [not concurrent] * 6
    sequential, concurrent_result = results[False], results[True]
    for key, value in sequential.model.items():
        assert torch.equal(value, concurrent_result.model[key]), key
    for key, value in sequential.teacher.items():
        assert torch.equal(value, concurrent_result.teacher[key]), key
    assert [r["loss"] for r in sequential.history] == [r["loss"] for r in concurrent_result.history]


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize(
    ("mode", "beside"), [("hrda", True), ("hr_only", True), ("lr_only", False)]
)
def test_only_a_sliding_window_teacher_runs_beside_the_source_pass(
    monkeypatch, mode, beside
) -> None:
    """A single-resolution teacher (one crop per image) would leave its thread idle while
    the source pass runs on half the threads, so it runs after the source pass."""
    enabled: list[bool] = []
    real_beside = teacher_thread.beside

    def spied(fn, on):
        enabled.append(on)
        return real_beside(fn, on)

    monkeypatch.setattr(teacher_thread, "beside", spied)
    params = parse(SelfTrainingParams, {**SELF_TRAINING, "iterations": 1}, "self_training")
    model = {**MODEL, "hrda": {**MODEL["hrda"], "mode": mode}}
    trainer = _trainer(params, TinySegmentationSet(6, seed=2, with_labels=False), model=model)
    trainer.setup = DeviceSetup(torch.device("cpu"), teacher_thread=True)
    trainer.run()
    assert enabled == [beside]
