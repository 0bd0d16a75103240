"""What the pipelines are built from: the training-stage node and template instances.

``warmup``, every ``self_training`` round and each run of the ablation study are the same
templates (:func:`hrda_kedro.pipelines.warmup.pipeline.warmup_template`,
:func:`hrda_kedro.pipelines.self_training.pipeline.round_template`,
:func:`hrda_kedro.pipelines.evaluation.pipeline.evaluation_node`) instantiated with other
parameter datasets and namespaces: a node added to a template is in all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kedro.pipeline import Node, Pipeline

# The parameter groups a training or evaluation template reads -> the dataset that holds
# each. A run reads the configured groups; an ablation run its variant's (``variant_*``).
GROUPS = ("model", "warmup", "self_training", "evaluation", "runtime")
PARAMETERS: Mapping[str, str] = {group: f"params:{group}" for group in GROUPS}


class _NamedPartial(functools.partial):
    """A ``functools.partial`` that keeps its name when sent to a ``ParallelRunner`` worker.

    ``multiprocessing`` pickles ``functools.partial`` itself with a reducer that drops the
    instance ``__dict__``, where ``update_wrapper`` put ``__name__``: every worker then
    warned that the node was "made from a 'partial' function". A subclass is pickled the
    ordinary way, ``__dict__`` included.
    """


def bind(func: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
    """``functools.partial`` that keeps the function's name for Kedro's logs and viz, in
    this process and in a ``ParallelRunner`` worker."""
    return functools.update_wrapper(_NamedPartial(func, **kwargs), func)


def training_node(
    stage: str,
    train: Callable[..., Any],
    *,
    inputs: Sequence[str],
    outputs: Sequence[str],
    name: str,
) -> Node:
    """The node that trains one stage: ``train(*inputs, stage=stage)`` returns the stage's
    checkpoint and training history.

    The stage name is bound here, when the graph is built: it names the stage's
    in-training checkpoint folder and the launcher's hand-over, and is recorded in the
    checkpoint.
    """
    return Node(
        bind(train, stage=stage),
        inputs=list(inputs),
        outputs=list(outputs),
        name=name,
        tags=["training"],
    )


def instance(
    template: Pipeline, namespace: str, connect: Mapping[str, str] | None = None
) -> Pipeline:
    """``template`` with its nodes and outputs under ``namespace``.

    Its free inputs (shared data, parameters, datasets of an enclosing namespace) keep
    their names, except those ``connect`` renames (e.g. a round's ``input_model`` to the
    previous round's model).
    """
    connect = connect or {}
    free = template.inputs()
    parameters = {name for name in free if name == "parameters" or name.startswith("params:")}
    return Pipeline(
        template,
        namespace=namespace,
        inputs={name: connect.get(name, name) for name in free - parameters},
        parameters=parameters,
    )
