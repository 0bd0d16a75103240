"""The ``evaluation`` pipeline: every model of the run on target val, then the reports."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import build_miou_report, evaluate_model


def model_datasets(rounds: int) -> dict[str, str]:
    """Evaluated model name -> its checkpoint dataset."""
    models = {"source_only": "source_only_model"}
    models.update({f"round_{r}": f"round_{r}.model" for r in range(1, rounds + 1)})
    return models


def create_pipeline(rounds: int = 1, **kwargs) -> Pipeline:
    models = model_datasets(rounds)
    nodes = [
        Node(
            evaluate_model,
            inputs=[
                dataset,
                "target_val_manifest",
                "params:model",
                "params:evaluation",
                "params:runtime",
            ],
            outputs=f"{name}_evaluation",
            name=f"evaluate_{name}",
            tags=["evaluation"],
        )
        for name, dataset in models.items()
    ]
    nodes.append(
        Node(
            build_miou_report,
            inputs=["params:evaluation", *[f"{name}_evaluation" for name in models]],
            outputs=["miou_table", "per_class_iou", "evaluation_summary"],
            name="build_miou_report",
            tags=["evaluation"],
        )
    )
    return Pipeline(nodes)
