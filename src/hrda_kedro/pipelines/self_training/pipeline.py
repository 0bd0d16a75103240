"""The ``self_training`` pipeline: ``rounds`` namespaced instances of the round template."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Node, Pipeline

from hrda_kedro.pipelines.templates import PARAMETERS, instance, training_node

from .nodes import assess_pseudo_labels, materialize_pseudo_labels, train_round


def round_template(stage: str, parameters: Mapping[str, str] = PARAMETERS) -> Pipeline:
    """Materialize pseudo-labels from ``input_model``, assess them, then train the round
    ``stage``; ``parameters``: group -> the dataset holding it."""
    model, runtime = parameters["model"], parameters["runtime"]
    self_training = parameters["self_training"]
    return Pipeline(
        [
            Node(
                materialize_pseudo_labels,
                inputs=["input_model", "target_train_manifest", model, runtime],
                outputs="pseudo_labels",
                name="materialize_pseudo_labels",
            ),
            Node(
                assess_pseudo_labels,
                inputs=["pseudo_labels", "target_train_manifest", model, self_training],
                outputs="pseudo_label_quality",
                name="assess_pseudo_labels",
            ),
            training_node(
                stage,
                train_round,
                inputs=[
                    "input_model",
                    "source_train_manifest",
                    "source_class_pixel_counts",
                    "target_train_manifest",
                    "pseudo_labels",
                    model,
                    self_training,
                    runtime,
                ],
                outputs=["model", "training_history"],
                name="train",
            ),
        ]
    )


def round_names(rounds: int) -> list[str]:
    return [f"round_{r}" for r in range(1, rounds + 1)]


def final_model(rounds: int) -> str:
    """The checkpoint dataset of the last of ``rounds`` rounds (0: the warmup's)."""
    return f"{round_names(rounds)[-1]}.model" if rounds else "source_only_model"


def rounds_pipeline(rounds: int, parameters: Mapping[str, str] = PARAMETERS) -> Pipeline:
    """Chain ``rounds`` rounds, namespaced ``round_<k>``: round 1 starts from
    ``source_only_model``, round ``k`` from ``round_<k-1>.model``."""
    pipeline = Pipeline([])
    previous = "source_only_model"
    for name in round_names(rounds):
        template = round_template(name, parameters)
        pipeline += instance(template, name, {"input_model": previous})
        previous = f"{name}.model"
    return pipeline


def create_pipeline(rounds: int = 1, **kwargs: Any) -> Pipeline:
    return rounds_pipeline(rounds)
