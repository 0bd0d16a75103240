"""The ``ablations`` pipeline: ingestion, then one namespaced run per variant and seed.

Each run ``ablations.<variant>.seed_<n>`` instantiates :func:`run_template`: derive the
variant's parameters, source-only warmup, ``rounds`` self-training rounds (none for a
variant with ``adapt: false``), evaluation on target val, one table row. The variants,
the seeds and each variant's number of rounds shape the graph, so they are read from the
run's configuration when the pipeline is registered.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kedro.pipeline import Node, Pipeline

from hrda_kedro.params import AblationParams, AblationVariant, ParameterError, parse
from hrda_kedro.pipelines import ingestion
from hrda_kedro.pipelines.evaluation.nodes import evaluate_model
from hrda_kedro.pipelines.self_training.nodes import (
    assess_pseudo_labels,
    materialize_pseudo_labels,
    train_round,
)
from hrda_kedro.pipelines.warmup.nodes import train_source_only

from .nodes import build_ablation_table, deep_merge, run_metrics, variant_parameters

logger = logging.getLogger(__name__)

SHARED_INPUTS = (
    "source_train_manifest",
    "source_class_pixel_counts",
    "target_train_manifest",
    "target_val_manifest",
)
PARAMETERS = (
    "params:ablations",
    "params:model",
    "params:warmup",
    "params:self_training",
    "params:evaluation",
    "params:runtime",
)


def _bind(func: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
    """``functools.partial`` that keeps the function's name for Kedro's logs and viz."""
    return functools.update_wrapper(functools.partial(func, **kwargs), func)


def run_template(variant: str, seed: int, rounds: int) -> Pipeline:
    """Train and evaluate one variant with one seed (``rounds = 0``: source-only)."""
    groups = ["model", "warmup", "evaluation", "runtime"] + (["self_training"] if rounds else [])
    nodes = [
        Node(
            _bind(variant_parameters, variant=variant, seed=seed),
            inputs=list(PARAMETERS),
            outputs={group: f"variant_{group}" for group in groups},
            name="variant_parameters",
        ),
        Node(
            train_source_only,
            inputs=[
                "source_train_manifest",
                "source_class_pixel_counts",
                "variant_model",
                "variant_warmup",
                "variant_runtime",
            ],
            outputs=["source_only_model", "source_only_history"],
            name="train_source_only",
            tags=["training"],
        ),
    ]
    previous = "source_only_model"
    for index in range(1, rounds + 1):
        name = f"round_{index}"
        nodes += [
            Node(
                materialize_pseudo_labels,
                inputs=[previous, "target_train_manifest", "variant_model", "variant_runtime"],
                outputs=f"{name}.pseudo_labels",
                name=f"{name}_materialize_pseudo_labels",
            ),
            Node(
                assess_pseudo_labels,
                inputs=[
                    f"{name}.pseudo_labels",
                    "target_train_manifest",
                    "variant_model",
                    "variant_self_training",
                ],
                outputs=f"{name}.pseudo_label_quality",
                name=f"{name}_assess_pseudo_labels",
            ),
            Node(
                train_round,
                inputs=[
                    previous,
                    "source_train_manifest",
                    "source_class_pixel_counts",
                    "target_train_manifest",
                    f"{name}.pseudo_labels",
                    "variant_model",
                    "variant_self_training",
                    "variant_runtime",
                ],
                outputs=[f"{name}.model", f"{name}.training_history"],
                name=f"{name}_train",
                tags=["training"],
            ),
        ]
        previous = f"{name}.model"
    nodes += [
        Node(
            evaluate_model,
            inputs=[
                previous,
                "target_val_manifest",
                "variant_model",
                "variant_evaluation",
                "variant_runtime",
            ],
            outputs="evaluation",
            name="evaluate",
            tags=["evaluation"],
        ),
        Node(
            _bind(run_metrics, variant=variant, seed=seed),
            inputs=["evaluation", previous, "params:ablations"],
            outputs="metrics",
            name="run_metrics",
            tags=["evaluation"],
        ),
    ]
    return Pipeline(nodes)


def _variant_rounds(
    parameters: Mapping[str, Any], settings: AblationParams, spec: AblationVariant
) -> int:
    """A variant's number of rounds, read leniently: the graph needs only its shape, and the
    variant's parameters are validated, naming their keys, when its run starts."""
    if not spec.adapt:
        return 0
    merged = deep_merge(
        deep_merge(parameters.get("self_training") or {}, settings.shared.self_training),
        spec.self_training,
    )
    rounds = merged.get("rounds", 1)
    return rounds if isinstance(rounds, int) and not isinstance(rounds, bool) and rounds >= 1 else 1


def create_pipeline(parameters: Mapping[str, Any] | None = None, **kwargs: Any) -> Pipeline:
    """Every variant x seed of ``ablations`` and the comparison table.

    ``parameters`` is the run's whole parameter mapping (the registry passes it): the
    variants, seeds and rounds shape the graph.
    """
    parameters = parameters or {}
    if "ablations" not in parameters:
        logger.debug("no ablations parameters: the ablations pipeline is empty")
        return Pipeline([])
    try:
        settings = parse(AblationParams, parameters["ablations"], "ablations")
    except ParameterError as exc:
        # Registration builds every pipeline, also for `kedro run --pipeline=uda`: a bad
        # ablations value must not break those. Only the table node is left; it reads
        # params:ablations, so the run-start hook reports the error, naming the key, when
        # this pipeline is the one run.
        logger.debug("ablations parameters invalid (%s): only the table node is left", exc)
        return _table_pipeline([])
    pipeline = ingestion.create_pipeline()
    metrics: list[str] = []
    for variant, spec in settings.variants.items():
        rounds = _variant_rounds(parameters, settings, spec)
        for seed in settings.seeds:
            namespace = f"ablations.{variant}.seed_{seed}"
            template = run_template(variant, seed, rounds)
            pipeline += Pipeline(
                template,
                namespace=namespace,
                inputs={name: name for name in SHARED_INPUTS if name in template.inputs()},
                parameters=set(PARAMETERS),
            )
            metrics.append(f"{namespace}.metrics")
    return pipeline + _table_pipeline(metrics)


def _table_pipeline(metrics: list[str]) -> Pipeline:
    """The comparison table over the runs' metrics."""
    return Pipeline(
        [
            Node(
                build_ablation_table,
                inputs=["params:ablations", *metrics],
                outputs=["ablation_table", "ablation_summary"],
                name="build_ablation_table",
                tags=["evaluation"],
            )
        ]
    )
