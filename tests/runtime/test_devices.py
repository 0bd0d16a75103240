"""Device resolution from the ``runtime`` parameters."""

from __future__ import annotations

import pytest
import torch

from hrda_kedro.params import RuntimeParams
from hrda_kedro.runtime import devices


def test_resolve_device_applies_the_host_memory_setting(monkeypatch):
    calls = []
    monkeypatch.setattr(devices, "keep_freed_host_memory", lambda: calls.append(1) or True)
    devices.resolve_device(RuntimeParams(device="cpu", keep_freed_host_memory=False))
    assert calls == []
    devices.resolve_device(RuntimeParams(device="cpu"))
    assert calls == [1]


def test_resolve_device_on_cpu_defaults_to_fp32_without_channels_last():
    setup = devices.resolve_device(
        RuntimeParams(device="auto" if not torch.cuda.is_available() else "cpu")
    )
    assert setup.device == torch.device("cpu")
    assert setup.autocast_dtype is None
    assert setup.channels_last is False


def test_resolve_device_honours_explicit_precision_and_layout_on_cpu():
    setup = devices.resolve_device(
        RuntimeParams(device="cpu", precision="bf16", channels_last="on")
    )
    assert setup.autocast_dtype is torch.bfloat16
    assert setup.channels_last is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_names_the_parameter_when_cuda_is_missing():
    with pytest.raises(ValueError, match=r"runtime\.device: 'cuda'.*CUDA is not available"):
        devices.resolve_device(RuntimeParams(device="cuda"))


@pytest.mark.parametrize(("streams", "expected"), [("auto", 2), (3, 3), (1, 1)])
def test_predict_streams_auto_is_one_per_torch_thread_on_cpu(streams, expected, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    setup = devices.resolve_device(RuntimeParams(device="cpu", predict_streams=streams))
    assert setup.predict_streams == expected


def test_the_log_says_once_where_and_in_which_arithmetic_a_run_computes(monkeypatch, caplog):
    """Nothing in a run's log said whether it ran on the GPU, or in bf16."""
    monkeypatch.setattr(devices, "_described", set())
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    with caplog.at_level("INFO", logger="hrda_kedro.runtime.devices"):
        devices.resolve_device(RuntimeParams(device="cpu"))
        devices.resolve_device(RuntimeParams(device="cpu"))  # the next node: said already
        devices.resolve_device(RuntimeParams(device="cpu", precision="bf16", channels_last="on"))
    assert caplog.messages == [
        "computing on cpu (3 torch threads), fp32",
        "computing on cpu (3 torch threads), bf16 autocast, channels_last",
    ]


def test_a_gpu_setup_names_the_device_its_memory_and_tf32(monkeypatch):
    class Properties:
        name = "NVIDIA H200"
        total_memory = 143771 * 2**20

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties)
    gpu = devices.DeviceSetup(torch.device("cuda", 0), channels_last=True)
    assert devices.describe(gpu, "high") == (
        "cuda:0 (NVIDIA H200, 140 GiB), fp32 (TF32 matmuls), channels_last"
    )
    assert devices.describe(gpu, "highest").startswith("cuda:0 (NVIDIA H200, 140 GiB), fp32,")
    bf16 = devices.DeviceSetup(torch.device("cuda", 1), autocast_dtype=torch.bfloat16)
    assert devices.describe(bf16, "high") == "cuda:1 (NVIDIA H200, 140 GiB), bf16 autocast"
