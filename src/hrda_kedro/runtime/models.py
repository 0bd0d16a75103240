"""The HRDA model from the ``model`` parameters or a checkpoint, and checkpoint checks."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch

from hrda_kedro.hrda.checkpoint import CheckpointError
from hrda_kedro.hrda.config import ConfigError
from hrda_kedro.hrda.model import HRDAModel
from hrda_kedro.hrda.model_config import InferenceConfig, ModelConfig
from hrda_kedro.hrda.networks import NetworkConfig, build_network
from hrda_kedro.params import ParameterError, parse


def build_model(model: ModelConfig, *, load_pretrained: bool = True) -> HRDAModel:
    """The HRDA model described by ``model`` (pretrained encoder weights if configured)."""
    config = model.network
    if not load_pretrained:
        config = dataclasses.replace(config, pretrained=None)
    network = build_network(config)
    h = model.hrda
    return HRDAModel(
        network,
        scale=h.scale,
        detail_hw=h.detail_crop,
        mode=h.mode,
        fixed_attention=h.fixed_attention,
        hr_window_batch=model.inference.hr_window_batch,
        hr_slide_overlapping=h.hr_slide_overlapping,
    )


def model_params_dict(model: ModelConfig) -> dict[str, Any]:
    """Plain-dict form stored in checkpoints (loads with ``weights_only=True``)."""
    return json.loads(json.dumps(dataclasses.asdict(model)))


def model_from_checkpoint(
    checkpoint: dict[str, Any],
    source: str,
    *,
    teacher: bool = False,
    inference: InferenceConfig | None = None,
) -> tuple[HRDAModel, ModelConfig]:
    """Rebuild the model a checkpoint was trained with and load its weights.

    ``teacher=True`` loads the EMA teacher's weights when the checkpoint has them.
    ``inference``: the run's ``model.inference``, which replaces the checkpoint's (see
    :func:`with_inference`); the returned config and the model's ``hr_window_batch`` follow it.
    """
    if "model_params" not in checkpoint and "optimizer" in checkpoint:
        raise CheckpointError(
            f"{source}: an in-training checkpoint (a stage's state.pt, which resumes training); "
            "expected a trained model: the stage's versioned model.pt folder under "
            "data/06_models/<stage>, written when the stage finishes"
        )
    if "model_params" not in checkpoint or "model" not in checkpoint:
        raise CheckpointError(f"{source}: not a trained-model checkpoint (no model_params/model)")
    try:
        params = parse(ModelConfig, checkpoint["model_params"], f"{source}:model_params")
    except ParameterError as err:  # the file's settings, not the run's: no key to fix in conf/
        raise CheckpointError(f"{err} (a setting the checkpoint records, not the run's)") from err
    if inference is not None:
        params = with_inference(params, inference, source)
    model = build_model(params, load_pretrained=False)
    state = (
        checkpoint["teacher"]
        if teacher and checkpoint.get("teacher") is not None
        else checkpoint["model"]
    )
    load_weights(model, state, source)
    return model, params


def with_inference(trained: ModelConfig, inference: InferenceConfig, source: str) -> ModelConfig:
    """A trained model's config with the run's test-time settings (``model.inference``).

    Windows, stride, batching and window weights do not shape the weights, so every
    pipeline that predicts (pseudo-labels, evaluation, predict, export) takes them from the
    run, whatever model it loads; a window left at null is the *model's* context crop. They
    are checked against the model's crops, since a checkpoint may have other ones.
    """
    try:
        return dataclasses.replace(trained, inference=inference)
    except ConfigError as err:
        h = trained.hrda
        raise ParameterError(
            f"parameter model.{err.key}: {err.message}; for the model of {source} (context "
            f"crop {list(h.context_crop)}, detail crop {list(h.detail_crop)}, scale {h.scale})"
        ) from None


def load_weights(model: HRDAModel, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with a message that says which shapes or keys disagree."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or mismatched:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}" if missing else "",
                f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
                if unexpected
                else "",
                f"shape mismatch {mismatched[:3]}" if mismatched else "",
            )
            if part
        )
        raise CheckpointError(
            f"{source}: weights do not fit the configured model (another architecture or "
            f"class count?): {details}"
        )
    model.load_state_dict(state)


# Network settings that do not shape the weights: a checkpoint trained with other values fits.
_WEIGHTS_INDEPENDENT = ("dropout", "pretrained")


def check_compatible(
    checkpoint_params: ModelConfig,
    wanted: ModelConfig,
    source: str,
    fields: tuple[str, ...] | None = None,
) -> None:
    """Stop when a checkpoint's network differs from the configured one in ``fields``
    (default: every network setting that shapes the weights).

    Evaluation rebuilds any network from its checkpoint, so it checks ``num_classes`` only:
    the class count must match the labels it is scored against.
    """
    if fields is None:
        fields = tuple(
            f.name for f in dataclasses.fields(NetworkConfig) if f.name not in _WEIGHTS_INDEPENDENT
        )
    a, b = checkpoint_params.network, wanted.network
    for name in fields:
        if getattr(a, name) != getattr(b, name):
            raise CheckpointError(
                f"{source}: checkpoint has model.network.{name}={getattr(a, name)!r}, "
                f"the parameters ask for {getattr(b, name)!r}"
            )
