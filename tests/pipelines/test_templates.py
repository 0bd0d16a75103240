"""The pipeline templates: stage names bound when the graph is built, namespaced instances."""

from __future__ import annotations

import io
import pickle
import warnings
from multiprocessing.reduction import ForkingPickler

from kedro.pipeline import Node, Pipeline

from hrda_kedro.pipelines import self_training, warmup
from hrda_kedro.pipelines.templates import bind, instance, training_node


def _train(data: int, params: int, *, stage: str) -> tuple[str, int]:
    return stage, data + params


def test_a_training_node_binds_its_stage_and_keeps_the_function_name() -> None:
    node = training_node(
        "round_3", _train, inputs=["data", "params:x"], outputs=["model", "history"], name="train"
    )
    assert node.func(1, 2) == ("round_3", 3)
    assert node.func.__name__ == "_train"  # Kedro's logs and viz name the function
    assert node.tags == {"training"}


def test_a_bound_node_keeps_its_name_in_a_parallel_runner_worker() -> None:
    # ParallelRunner sends nodes to its workers with multiprocessing's pickler, which has
    # its own reducer for functools.partial (it dropped the name: a Kedro warning per node).
    node = Node(bind(_train, stage="round_1"), ["data", "params:x"], ["model", "history"])
    buffer = io.BytesIO()
    ForkingPickler(buffer).dump(node)
    received = pickle.loads(buffer.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert received.func.__name__ == "_train"
        assert "_train" in str(received)
    assert received.func(1, 2) == ("round_1", 3)


def test_an_instance_namespaces_outputs_and_keeps_free_inputs_but_connected_ones() -> None:
    template = Pipeline(
        [Node(lambda *args: 0, ["input_model", "shared", "params:x"], "model", name="n")]
    )
    made = instance(template, "round_2", {"input_model": "round_1.model"})
    assert made.inputs() == {"round_1.model", "shared", "params:x"}
    assert made.outputs() == {"round_2.model"}
    assert [n.name for n in made.nodes] == ["round_2.n"]


def test_stage_names_are_bound_when_the_graph_is_built() -> None:
    rounds = self_training.create_pipeline(rounds=3)
    stages = {n.name: n.func.keywords["stage"] for n in rounds.nodes if "training" in n.tags}
    assert stages == {f"round_{k}.train": f"round_{k}" for k in (1, 2, 3)}
    (warm,) = warmup.create_pipeline().nodes
    assert warm.name == "train_source_only" and warm.func.keywords == {"stage": "warmup"}


def test_round_k_trains_from_round_k_minus_1() -> None:
    rounds = {n.name: n for n in self_training.create_pipeline(rounds=2).nodes}
    assert "source_only_model" in rounds["round_1.train"].inputs
    assert "round_1.model" in rounds["round_2.train"].inputs
    assert rounds["round_2.train"].outputs == ["round_2.model", "round_2.training_history"]
