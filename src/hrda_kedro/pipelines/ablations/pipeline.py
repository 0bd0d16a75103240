"""The ``ablations`` pipeline: ingestion, then one namespaced run per variant and seed.

Each run ``ablations.<variant>.seed_<n>`` instantiates :func:`run_template`: derive the
variant's parameters, then the ``warmup`` template, ``rounds`` instances of the
self-training round template (none for a variant with ``adapt: false``) and the evaluation
template, all reading the variant's parameters, then one table row. The variants,
the seeds and each variant's number of rounds shape the graph, so they are read from the
run's configuration when the pipeline is registered.

Variants whose warmup would be identical (same ``model`` and ``warmup`` parameters after
merging, same seed: e.g. source-only, HRDA and HRDA + MIC) share one: the first of them in
``ablations.variants`` trains it, the others adapt its ``source_only_model``. That saves
the warmups' time and makes their comparison paired (same starting model per seed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Node, Pipeline

from hrda_kedro.params import AblationParams, AblationVariant, ParameterError, parse
from hrda_kedro.pipelines import ingestion
from hrda_kedro.pipelines.evaluation.pipeline import evaluation_node
from hrda_kedro.pipelines.self_training.pipeline import final_model, rounds_pipeline
from hrda_kedro.pipelines.templates import GROUPS, bind, instance
from hrda_kedro.pipelines.warmup.pipeline import warmup_template

from .nodes import (
    build_ablation_table,
    build_per_class_table,
    deep_merge,
    run_metrics,
    variant_groups,
    variant_parameters,
)

logger = logging.getLogger(__name__)

# What the variant parameters node reads: the study and the run's groups it merges onto.
PARAMETERS = ("params:ablations", *(f"params:{group}" for group in GROUPS))
# The templates read the variant's groups, which that node derives.
VARIANT_PARAMETERS = {group: f"variant_{group}" for group in GROUPS}


def run_template(variant: str, seed: int, rounds: int, *, own_warmup: bool = True) -> Pipeline:
    """Train and evaluate one variant with one seed (``rounds = 0``: source-only), from the
    ``warmup``, round and evaluation templates fed with the variant's parameters.

    ``own_warmup=False`` leaves the warmup out: ``source_only_model`` is then a free input,
    another run's.
    """
    groups = tuple(
        group
        for group in GROUPS
        if (rounds or group != "self_training") and (own_warmup or group != "warmup")
    )
    model = final_model(rounds)
    variant_node = Node(
        bind(variant_parameters, variant=variant, seed=seed, groups=groups),
        inputs=list(PARAMETERS),
        outputs={group: VARIANT_PARAMETERS[group] for group in groups},
        name="variant_parameters",
    )
    evaluation = Pipeline(
        [
            evaluation_node(model, "evaluation", "evaluate", VARIANT_PARAMETERS),
            Node(
                bind(run_metrics, variant=variant, seed=seed),
                inputs=["evaluation", model, "params:ablations"],
                outputs="metrics",
                name="run_metrics",
                tags=["evaluation"],
            ),
        ]
    )
    warmup = warmup_template(VARIANT_PARAMETERS) if own_warmup else Pipeline([])
    return (
        Pipeline([variant_node]) + warmup + rounds_pipeline(rounds, VARIANT_PARAMETERS) + evaluation
    )


def _warmup_owners(parameters: Mapping[str, Any], variants: Mapping[str, Any]) -> dict[str, str]:
    """Variant -> the variant whose warmup it uses (itself, or the first variant with the
    same merged ``model`` and ``warmup`` parameters).

    A variant whose parameters do not parse keeps its own warmup: the run-start hook names
    the bad key before anything trains.
    """
    owners: dict[str, str] = {}
    first: dict[str, str] = {}
    for variant in variants:
        try:
            groups = variant_groups(parameters, variant)
        except ParameterError:
            owners[variant] = variant
            continue
        key = json.dumps([groups["model"], groups["warmup"]], sort_keys=True, default=str)
        owners[variant] = first.setdefault(key, variant)
    return owners


def _variant_rounds(
    parameters: Mapping[str, Any], settings: AblationParams, spec: AblationVariant
) -> int:
    """A variant's number of rounds, read leniently: the graph needs only its shape, and the
    variant's parameters are validated, naming their keys, when its run starts."""
    if not spec.adapt:
        return 0
    base = parameters.get("self_training")
    merged = deep_merge(
        deep_merge(base if isinstance(base, Mapping) else {}, settings.shared.self_training),
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
    runs: list[tuple[str, int]] = []
    owners = _warmup_owners(parameters, settings.variants)
    for variant, spec in settings.variants.items():
        rounds = _variant_rounds(parameters, settings, spec)
        owner = owners[variant]
        for seed in settings.seeds:
            namespace = f"ablations.{variant}.seed_{seed}"
            template = run_template(variant, seed, rounds, own_warmup=owner == variant)
            connect = {"source_only_model": f"ablations.{owner}.seed_{seed}.source_only_model"}
            pipeline += instance(template, namespace, connect)
            runs.append((variant, seed))
    return pipeline + _table_pipeline(runs)


def _table_pipeline(runs: list[tuple[str, int]]) -> Pipeline:
    """The comparison tables over the runs' metrics and confusion matrices."""
    namespaces = [f"ablations.{variant}.seed_{seed}" for variant, seed in runs]
    table = Node(
        build_ablation_table,
        inputs=["params:ablations", *(f"{ns}.metrics" for ns in namespaces)],
        outputs=["ablation_table", "ablation_summary"],
        name="build_ablation_table",
        tags=["evaluation"],
    )
    if not runs:
        return Pipeline([table])
    per_class = Node(
        bind(build_per_class_table, runs=runs),
        inputs=["params:ablations", *(f"{ns}.evaluation" for ns in namespaces)],
        outputs="ablation_per_class",
        name="build_per_class_table",
        tags=["evaluation"],
    )
    return Pipeline([table, per_class])
