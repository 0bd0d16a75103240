"""The device a stage computes on, from the ``runtime`` parameters."""

from __future__ import annotations

import logging

import torch

from hrda_kedro.hrda.image_streams import auto_streams
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.params import ParameterError, RuntimeParams
from hrda_kedro.runtime.memory import keep_freed_host_memory

logger = logging.getLogger(__name__)
# The setups this process has described in the log: each once, not at every node.
_described: set[str] = set()


def check_device(runtime: RuntimeParams) -> str:
    """The device ``runtime.device`` names, checked against this machine (the run-start hook
    calls it, so a missing GPU stops a run before ingestion, not at its first training node).
    """
    name = runtime.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not name.startswith("cuda"):
        return name
    if not torch.cuda.is_available():
        raise ParameterError(
            f"parameter runtime.device: {runtime.device!r} asked for, but CUDA is not available"
        )
    count = torch.cuda.device_count()
    index = int(name.partition(":")[2] or 0)
    if index >= count:
        raise ParameterError(
            f"parameter runtime.device: {runtime.device!r} asked for, but this machine has "
            f"{count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        )
    if name == "cuda" and runtime.devices > count:  # one rank per device, cuda:<rank>
        raise ParameterError(
            f"parameter runtime.devices: {runtime.devices} asked for, but this machine has "
            f"{count} CUDA device(s)"
        )
    return name


def resolve_device(runtime: RuntimeParams, rank: int = 0) -> DeviceSetup:
    """CPU or CUDA from ``runtime.device``; bf16 autocast and channels_last on CUDA.

    Also applies the process-wide settings: ``runtime.keep_freed_host_memory``, and TF32
    and cuDNN autotuning on CUDA.
    """
    if runtime.keep_freed_host_memory:
        keep_freed_host_memory()
    device = torch.device(check_device(runtime))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", rank)
    on_gpu = device.type == "cuda"
    precision = runtime.precision if runtime.precision != "auto" else ("bf16" if on_gpu else "fp32")
    channels_last = runtime.channels_last == "on" or (runtime.channels_last == "auto" and on_gpu)
    if on_gpu:
        torch.set_float32_matmul_precision(runtime.matmul_precision)
        torch.backends.cudnn.benchmark = True
    setup = DeviceSetup(
        device=device,
        autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
        channels_last=channels_last,
        teacher_thread=runtime.teacher_thread and not on_gpu,
        predict_streams=(
            auto_streams(device, torch.get_num_threads())
            if runtime.predict_streams == "auto"
            else runtime.predict_streams
        ),
    )
    description = describe(setup, runtime.matmul_precision)
    if description not in _described:  # a GPU user's first question: is it on the GPU?
        _described.add(description)
        logger.info("computing on %s", description)
    return setup


def describe(setup: DeviceSetup, matmul_precision: str = "highest") -> str:
    """Where and in which arithmetic a stage computes, as the log says it."""
    device = setup.device
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        where = f"{device} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    else:
        where = f"{device} ({torch.get_num_threads()} torch threads)"
    if setup.autocast_dtype is not None:
        arithmetic = "bf16 autocast"  # runtime.precision's name; the only autocast type
    elif device.type == "cuda" and matmul_precision != "highest":
        arithmetic = "fp32 (TF32 matmuls)"
    else:
        arithmetic = "fp32"
    return f"{where}, {arithmetic}" + (", channels_last" if setup.channels_last else "")
