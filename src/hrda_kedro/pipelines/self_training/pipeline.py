"""The ``self_training`` pipeline: ``rounds`` namespaced instances of one round template."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import assess_pseudo_labels, materialize_pseudo_labels, train_round

SHARED_INPUTS = {
    "source_train_manifest",
    "source_class_pixel_counts",
    "target_train_manifest",
}
PARAMETERS = {"params:model", "params:self_training", "params:runtime"}


def round_template() -> Pipeline:
    """Materialize pseudo-labels from the input model, assess them, then train."""
    return Pipeline(
        [
            Node(
                materialize_pseudo_labels,
                inputs=["input_model", "target_train_manifest", "params:model", "params:runtime"],
                outputs="pseudo_labels",
                name="materialize_pseudo_labels",
            ),
            Node(
                assess_pseudo_labels,
                inputs=[
                    "pseudo_labels",
                    "target_train_manifest",
                    "params:model",
                    "params:self_training",
                ],
                outputs="pseudo_label_quality",
                name="assess_pseudo_labels",
            ),
            Node(
                train_round,
                inputs=[
                    "input_model",
                    "source_train_manifest",
                    "source_class_pixel_counts",
                    "target_train_manifest",
                    "pseudo_labels",
                    "params:model",
                    "params:self_training",
                    "params:runtime",
                ],
                outputs=["model", "training_history"],
                name="train",
                tags=["training"],
            ),
        ]
    )


def round_names(rounds: int) -> list[str]:
    return [f"round_{r}" for r in range(1, rounds + 1)]


def create_pipeline(rounds: int = 1, **kwargs) -> Pipeline:
    """Chain ``rounds`` rounds: round ``k`` starts from round ``k - 1``'s model."""
    pipeline = Pipeline([])
    previous = "source_only_model"
    for name in round_names(rounds):
        pipeline += Pipeline(
            round_template(),
            namespace=name,
            inputs={"input_model": previous, **{n: n for n in SHARED_INPUTS}},
            parameters=PARAMETERS,
        )
        previous = f"{name}.model"
    return pipeline
