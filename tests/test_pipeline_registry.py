"""The registry: the pipelines that read the run's final model follow ``self_training.rounds``."""

from __future__ import annotations

import pytest

from hrda_kedro.pipeline_registry import register_pipelines

MODEL_READERS = ("predict", "export", "export_onnx")


def is_model_dataset(name: str) -> bool:
    """A checkpoint dataset (``params:model`` is the run's model parameters)."""
    return name.endswith("model") and not name.startswith("params:")


@pytest.mark.parametrize(
    ("rounds", "model"),
    [(0, "source_only_model"), (1, "round_1.model"), (3, "round_3.model")],
)
def test_predict_and_export_read_the_final_model(rounds: int, model: str) -> None:
    pipelines = register_pipelines({"self_training": {"rounds": rounds}})
    for name in MODEL_READERS:
        models = {i for i in pipelines[name].inputs() if is_model_dataset(i)}
        assert models == {model}, name
    assert model in pipelines["uda"].all_outputs()  # a dataset the run writes


def test_source_only_run_has_no_round_datasets() -> None:
    pipelines = register_pipelines({"self_training": {"rounds": 0}})
    for name in (*MODEL_READERS, "uda"):
        datasets = pipelines[name].inputs() | pipelines[name].all_outputs()
        assert not [d for d in datasets if d.startswith("round_")], name


@pytest.mark.parametrize("checkpoint", ["downloaded/model.pt", "data/06_models/export"])
def test_predict_with_a_checkpoint_path_needs_no_trained_model(checkpoint: str) -> None:
    """A project that never trained predicts with a checkpoint it was given: the path
    replaces the catalog's model, so the run neither loads nor checks that one."""
    parameters = {"self_training": {"rounds": 2}, "predict": {"checkpoint": checkpoint}}
    pipelines = register_pipelines(parameters)
    assert not [i for i in pipelines["predict"].inputs() if is_model_dataset(i)]
    assert "round_2.model" in pipelines["export"].inputs()  # export has no path to take
