"""Whole images in parallel prediction streams: order, thread shares, bounded look-ahead,
errors, and predictions equal to one thread's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import torch

from hrda_kedro.hrda.image_streams import MAX_AUTO_STREAMS, auto_streams, map_in_streams
from hrda_kedro.hrda.inference import predict_full_image
from hrda_kedro.hrda.model import HRDAModel
from hrda_kedro.hrda.model_config import SlidingWindows
from hrda_kedro.hrda.networks import NetworkConfig, build_network


@pytest.mark.parametrize("streams", [1, 2, 3])
def test_results_come_in_the_order_of_the_items(streams: int) -> None:
    def slow_for_early_items(item: int) -> int:
        time.sleep(0.02 * (5 - item))  # later items finish first in a pool
        return item * item

    assert list(map_in_streams(slow_for_early_items, range(6), streams)) == [0, 1, 4, 9, 16, 25]


def test_each_stream_gets_its_share_of_the_threads_and_the_caller_keeps_its_own(
    two_threads: None,
) -> None:
    seen = list(
        map_in_streams(lambda _: (threading.get_ident(), torch.get_num_threads()), range(4), 2)
    )
    assert all(threads == 1 for _, threads in seen)
    assert all(ident != threading.get_ident() for ident, _ in seen)
    assert torch.get_num_threads() == 2


def test_one_stream_is_a_plain_loop_in_the_caller(two_threads: None) -> None:
    seen = list(
        map_in_streams(lambda _: (threading.get_ident(), torch.get_num_threads()), range(3), 1)
    )
    assert seen == [(threading.get_ident(), 2)] * 3


@pytest.mark.parametrize("streams", [1, 2])
def test_streams_compute_without_autograd(streams: int) -> None:
    weight = torch.ones(2, requires_grad=True)
    outputs = list(map_in_streams(lambda x: weight * x, range(3), streams))
    assert not any(output.requires_grad for output in outputs)


@pytest.mark.parametrize("streams", [1, 2])
def test_a_caller_holding_the_last_result_has_its_own_grad_mode_and_threads(
    two_threads: None, streams: int
) -> None:
    """A lazy writer takes exactly one result per item and never asks for the end: the
    generator then stays suspended at its last ``yield``, and must hold no torch setting
    there (a training stage after materialization once found autograd off)."""
    results = map_in_streams(lambda x: x, range(3), streams)
    for _ in range(3):
        next(results)
        assert torch.is_grad_enabled()
    assert torch.get_num_threads() == 2


def test_at_most_streams_plus_one_items_are_taken_ahead_of_the_caller() -> None:
    taken: list[int] = []
    ahead: list[int] = []

    def items() -> Iterator[int]:
        for item in range(12):
            taken.append(item)
            yield item

    for consumed, _ in enumerate(map_in_streams(lambda x: x, items(), 2), start=1):
        ahead.append(len(taken) - consumed)
        time.sleep(0.005)  # the caller's work on a result: the streams run meanwhile
    assert max(ahead) <= 2 and len(taken) == 12


def test_an_error_in_a_stream_reaches_the_caller_and_later_items_are_not_started() -> None:
    started: list[int] = []

    def fails_at_three(item: int) -> int:
        started.append(item)
        if item == 3:
            raise ValueError("image 3 is broken")
        return item

    results = []
    with pytest.raises(ValueError, match="image 3 is broken"):
        for result in map_in_streams(fails_at_three, range(100), 2):
            results.append(result)
    assert results == [0, 1, 2]
    assert max(started) <= 3 + 2


def test_closing_early_stops_taking_items_and_restores_the_threads(two_threads: None) -> None:
    taken: list[int] = []

    def items() -> Iterator[int]:
        for item in range(100):
            taken.append(item)
            yield item

    results = map_in_streams(lambda x: x, items(), 2)
    assert [next(results), next(results)] == [0, 1]
    results.close()
    assert len(taken) <= 5
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize(
    ("device", "threads", "streams"),
    [("cpu", 1, 1), ("cpu", 2, 2), ("cpu", 3, 3), ("cpu", 64, MAX_AUTO_STREAMS), ("cuda", 8, 1)],
)
def test_auto_runs_one_stream_per_cpu_thread_up_to_the_cap_and_one_on_a_gpu(
    device: str, threads: int, streams: int
) -> None:
    assert auto_streams(torch.device(device), threads) == streams


def test_predictions_in_two_streams_equal_one_thread_s_whatever_the_caller_s_threads(
    two_threads: None,
) -> None:
    """Each image is computed by one thread of its own: the same numbers as a one-thread
    loop, so a run's pseudo-labels do not depend on which stream made them."""
    torch.manual_seed(0)
    network = build_network(
        NetworkConfig(encoder="mit-nano", decoder_embed_dim=16, attention_embed_dim=16)
    )
    model = HRDAModel(network, scale=2, detail_hw=(32, 32)).eval()
    windows = SlidingWindows((64, 64), (32, 32))
    images = [
        torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(i)) for i in range(4)
    ]

    def predict(image: torch.Tensor) -> torch.Tensor:
        return predict_full_image(model, image, windows)

    streamed = list(map_in_streams(predict, images, 2))
    torch.set_num_threads(1)
    with torch.no_grad():
        one_thread = [predict(image) for image in images]
    for a, b in zip(streamed, one_thread, strict=True):
        assert torch.equal(a, b)
