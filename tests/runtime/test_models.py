"""The model from the parameters and from a checkpoint keeps HRDA's window settings."""

from __future__ import annotations

import pytest

from hrda_kedro.hrda.checkpoint import CheckpointError
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.params import parse
from hrda_kedro.runtime.models import build_model, model_from_checkpoint, model_params_dict

TINY = {"network": {"encoder": "mit-nano", "decoder_embed_dim": 16, "attention_embed_dim": 16}}


def test_the_official_nooverlap_setting_reaches_the_model_and_its_checkpoint() -> None:
    params = parse(ModelConfig, {**TINY, "hrda": {"hr_slide_overlapping": False}}, "model")
    model = build_model(params)
    assert not model.hr_slide_overlapping and model.detail_stride == model.detail_hw
    checkpoint = {"model_params": model_params_dict(params), "model": model.state_dict()}
    rebuilt, rebuilt_params = model_from_checkpoint(checkpoint, "model.pt")
    assert not rebuilt.hr_slide_overlapping and not rebuilt_params.hrda.hr_slide_overlapping


def test_a_checkpoint_from_before_the_setting_slides_with_overlap() -> None:
    params = parse(ModelConfig, TINY, "model")
    stored = model_params_dict(params)
    del stored["hrda"]["hr_slide_overlapping"]
    rebuilt, _ = model_from_checkpoint(
        {"model_params": stored, "model": build_model(params).state_dict()}, "old.pt"
    )
    assert rebuilt.hr_slide_overlapping
    assert rebuilt.detail_stride == (64, 64)  # half the 128 x 128 detail crop


def test_an_in_training_checkpoint_is_named_as_one() -> None:
    """A stage's state.pt (what ``predict.checkpoint`` may be pointed at by mistake) has the
    weights but not the model's settings: the message says which file to use instead."""
    state = {"model": {}, "optimizer": {}, "scheduler": {}, "iteration": 40, "format": 1}
    with pytest.raises(CheckpointError, match=r"state.pt: an in-training checkpoint .*model\.pt"):
        model_from_checkpoint(state, "data/06_models/in_progress/round_1/state.pt")
