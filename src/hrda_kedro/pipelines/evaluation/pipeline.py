"""The ``evaluation`` pipeline: every model of the run on target val (and on each extra
target), then the reports.

Report nodes carry the ``reports`` tag and read only persisted datasets (tables,
histories, pseudo-label quality, checkpoints), so ``kedro run --pipeline=evaluation
--tags=reports`` redraws every figure without evaluating again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Node, Pipeline

from hrda_kedro.pipelines.self_training.pipeline import final_model, round_names
from hrda_kedro.pipelines.templates import PARAMETERS

from .nodes import (
    build_miou_report,
    evaluate_model,
    plot_per_class_iou,
    plot_qualitative_grid,
    plot_training_curves,
    report_pseudo_label_quality,
)


def model_datasets(rounds: int) -> dict[str, str]:
    """Evaluated model name -> its checkpoint dataset."""
    models = {"source_only": "source_only_model"}
    models.update({name: f"{name}.model" for name in round_names(rounds)})
    return models


def evaluation_node(
    checkpoint: str,
    output: str,
    name: str,
    parameters: Mapping[str, str] = PARAMETERS,
) -> Node:
    """Evaluate the model of ``checkpoint`` on target val and on every extra target;
    ``parameters``: group -> the dataset holding it."""
    return Node(
        evaluate_model,
        inputs={
            "checkpoint": checkpoint,
            "target_val_manifest": "target_val_manifest",
            "extra_targets_manifest": "extra_targets_manifest",
            "model": parameters["model"],
            "evaluation": parameters["evaluation"],
            "runtime": parameters["runtime"],
        },
        outputs=output,
        name=name,
        tags=["evaluation"],
    )


def report_nodes(rounds: int) -> list[Node]:
    """Figures and tables drawn from the persisted outputs of every stage."""
    names = list(model_datasets(rounds))
    tags = ["evaluation", "reports"]
    nodes = [
        Node(
            plot_per_class_iou,
            inputs=["per_class_iou", "params:evaluation"],
            outputs="per_class_iou_figure",
            name="plot_per_class_iou",
            tags=tags,
        ),
        Node(
            plot_training_curves,
            inputs={
                "source_only": "source_only_history",
                **{name: f"{name}.training_history" for name in names[1:]},
            },
            outputs="training_curves_figure",
            name="plot_training_curves",
            tags=tags,
        ),
        Node(
            plot_qualitative_grid,
            inputs={
                "target_val_manifest": "target_val_manifest",
                "model": "params:model",
                "evaluation": "params:evaluation",
                "runtime": "params:runtime",
                "source_only": "source_only_model",
                **({names[-1]: final_model(rounds)} if rounds else {}),
            },
            outputs="qualitative_figure",
            name="plot_qualitative_grid",
            tags=tags,
        ),
    ]
    if rounds:
        nodes.append(
            Node(
                report_pseudo_label_quality,
                inputs={name: f"{name}.pseudo_label_quality" for name in names[1:]},
                outputs=["pseudo_label_quality_table", "pseudo_label_quality_figure"],
                name="report_pseudo_label_quality",
                tags=tags,
            )
        )
    return nodes


def create_pipeline(rounds: int = 1, **kwargs: Any) -> Pipeline:
    models = model_datasets(rounds)
    nodes = [
        evaluation_node(dataset, f"{name}_evaluation", f"evaluate_{name}")
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
    return Pipeline(nodes + report_nodes(rounds))
