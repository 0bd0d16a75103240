"""benchmarks/cpu_paths.py: each variant really turns the network's CPU paths on or off,
the project's are back after a measurement, and every workload and variant gets a row."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from hrda_kedro.hrda.networks import daformer
from hrda_kedro.hrda.networks.depthwise import DilatedDepthwiseConv2d
from hrda_kedro.hrda.networks.pointwise import PointwiseConv2d
from tests.benchmarks import load_script

PROJECT_UPSAMPLE = daformer.upsample_features


def _script():
    return load_script("cpu_paths")


def _active_paths() -> set[str]:
    x = torch.randn(2, 4, 8, 8)
    block = daformer.ConvBNReLU(4, 4).eval()
    norm_calls: list[int] = []
    block[1].register_forward_hook(lambda *_: norm_calls.append(1))
    with torch.no_grad():
        block(x)
    return {
        name
        for name, active in {
            "depthwise": DilatedDepthwiseConv2d(4, 6)._use_taps(x),
            "pointwise": PointwiseConv2d._use_matmul(x, torch.ones(4, 4, 1, 1)),
            "folded_bn": not norm_calls,
            "cl_upsample": daformer.upsample_features is PROJECT_UPSAMPLE,
        }.items()
        if active
    }


def test_each_variant_turns_on_exactly_its_paths() -> None:
    script = _script()
    switches = script._switches()
    try:
        for name, enabled in script.variants().items():
            script.select(enabled, switches)
            assert _active_paths() == set(enabled), name
    finally:
        script.select(frozenset(script.PATHS), switches)
    assert _active_paths() == set(script.PATHS)


def test_a_measurement_restores_the_project_paths() -> None:
    script = _script()
    calls: list[int] = []
    times = script.measure(lambda: calls.append(1), rounds=2, calls=3, warmup=1)

    assert set(times) == set(script.variants()) and all(len(t) == 2 for t in times.values())
    assert len(calls) == len(times) * (1 + 2 * (1 + 3))  # warmup, then settle + timed calls
    assert _active_paths() == set(script.PATHS)


def test_one_row_per_workload_and_variant(tmp_path: Path) -> None:
    out = tmp_path / "paths.csv"
    argv = ["--workloads", "predict", "--rounds", "1", "--calls", "1", "--warmup", "0"]
    assert _script().main([*argv, "--threads", "1", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["variant"] for r in rows] == list(_script().variants())
    assert rows[0]["vs_project"] == "1.0" and rows[1]["vs_plain"] == "1.0"


def test_an_unknown_workload_is_refused() -> None:
    with pytest.raises(SystemExit) as stop:
        _script().main(["--workloads", "predict,evaluate"])
    assert stop.value.code == 2
