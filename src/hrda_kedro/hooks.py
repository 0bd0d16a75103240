"""Project hooks: set a run up, validate the parameters of the nodes about to run before
the first one, hand training stages between machines, report to MLflow.

Kedro calls them in this order: ``after_context_created`` (the registry's view of the
run's parameters, atomic local writes), ``after_catalog_created``, the pipelines are
built, ``before_pipeline_run`` (the project root as the working directory, the launcher,
then parameter validation and the project's run lock), then per node
``before_node_run`` and ``after_dataset_saved``, and ``after_pipeline_run`` or
``on_pipeline_error``. Within one hook, Kedro calls the classes of ``settings.HOOKS``
last to first.

Every ``kedro`` command imports this module (through the settings), so what pulls in torch
(the parameter classes, the data layer, the launcher) is imported where a hook needs it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from hrda_kedro.datasets.atomic_files import use_atomic_local_writes
from hrda_kedro.run_config import use_config_loader

logger = logging.getLogger(__name__)


def groups_read(dataset_names: Iterable[str], parameters: Mapping[str, Any]) -> list[str]:
    """The top-level parameter groups that nodes reading ``dataset_names`` see.

    ``params:model.hrda`` reads ``model``; the whole ``parameters`` dataset reads every group.
    """
    names = set(dataset_names)
    if "parameters" in names:
        return [group for group in parameters if isinstance(parameters[group], Mapping)]
    read = {
        name.removeprefix("params:").split(".")[0] for name in names if name.startswith("params:")
    }
    return [group for group in parameters if group in read]


def validate_run_parameters(pipeline: Any, parameters: Mapping[str, Any]) -> list[str]:
    """Parse every parameter group ``pipeline`` reads; returns the groups validated.

    Groups that only pipelines not being run read (the ablation variants in a ``uda`` run,
    ``predict`` in a training run) are left alone: they must never stop a run. The ablation
    study's variants are validated as merged, like the nodes will see them.
    """
    from hrda_kedro.params import parameter_groups, parse

    classes = parameter_groups()
    groups = groups_read(pipeline.inputs(), parameters)
    for group in groups:
        if group in classes:
            parse(classes[group], parameters[group], group)
    if "ablations" in groups:
        from hrda_kedro.pipelines.ablations.nodes import validate_ablations

        validate_ablations(parameters)
    return [group for group in groups if group in classes or group == "ablations"]


# Where the run in progress was started, restored when it ends.
_started_in: list[Path] = []


def _leave_project_root() -> None:
    """Back to where the run was started (a notebook's folder), once the run is over."""
    if _started_in:
        os.chdir(_started_in.pop())


class ProjectRootHooks:
    """A run works in the project root, wherever it was started (``kedro run`` in
    ``notebooks/``, a notebook's ``session.run()``): Kedro resolves the catalog's relative
    paths against the root, and the parameters' paths (``ingestion.embedded.root``,
    ``runtime.work_dir``, ``predict.input_dir``, ...) must mean the same files. Started in
    a subfolder, a run redrew the benchmark and retrained into ``<subfolder>/data``. The
    working directory is restored when the run ends, or when its checks stop it."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        root = Path(run_params.get("project_path") or Path.cwd()).resolve()
        here = Path.cwd()
        _started_in.append(here)
        if here.resolve() != root:
            logger.info("working in the project root %s (started in %s)", root, here)
            os.chdir(root)

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        _leave_project_root()

    @hook_impl(trylast=True)
    def on_pipeline_error(self) -> None:
        _leave_project_root()


class ProjectHooks:
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Set the run up before any pipeline or catalog dataset exists: the registry reads
        the structural parameters (the number of rounds) of this session's configuration,
        and every local save of the run is atomic (a full disk or a crash mid-save must not
        leave a truncated report under its real name)."""
        use_config_loader(context.config_loader)
        use_atomic_local_writes()

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any) -> None:
        """Atomic writes in ``ParallelRunner``'s spawned workers too: they create no context,
        but their partitioned datasets make a file system per partition they save.

        Rare class sampling needs the ingested class counts, and the context crop the
        target images' sizes: a run that ingests checks them before its first training
        node, not when each stage starts (a round's only after the whole warmup)."""
        use_atomic_local_writes()
        if "training" not in node.tags:
            return
        sampling = _deferred_checks.pop("sampling", None)  # once a run (a worker)
        if sampling:
            _check_sampling(*(catalog.load(name) for name in _SAMPLING_INPUTS), sampling)
        target = _deferred_checks.pop("target_fit", None)
        if target:
            _check_target_fit(catalog.load(_TARGET_INPUT), target)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Parse the parameters of the nodes to run and check the datasets it reads; a bad
        value or an input not made yet stops the run before any work. Then take the
        project's run lock (:mod:`hrda_kedro.run_lock`) for the nodes that train, evaluate
        or ingest, and the outputs lock for predict's and the exports'; on several machines
        only node 0 gets here (the launcher's hook runs first)."""
        from hrda_kedro import run_lock, tracking_runs

        try:
            with tracking_runs.run_ends_on_error():
                defer_checks({})
                sampling, target_fit = self._check_run(pipeline, catalog)
                defer_checks({"sampling": sampling, "target_fit": target_fit})
                names = ",".join(run_params.get("pipeline_names") or ["__default__"])
                project = Path(run_params["project_path"])
                readers = _model_reader_nodes()
                if any(node.name not in readers for node in pipeline.nodes):
                    run_lock.acquire(project, names)
                if any(node.name in readers for node in pipeline.nodes):
                    run_lock.acquire(project, names, run_lock.OUTPUTS_LOCK_FILE)
                    _clear_derived_predictions(pipeline, catalog)
        except BaseException:
            _leave_project_root()  # Kedro calls no end-of-run hook for a run stopped here
            raise

    @hook_impl
    def after_pipeline_run(self) -> None:
        from hrda_kedro import run_lock

        run_lock.release()

    @hook_impl
    def on_pipeline_error(self) -> None:
        from hrda_kedro import run_lock

        run_lock.release()

    @staticmethod
    def _check_run(pipeline: Any, catalog: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Checks the run's settings and inputs; returns the checks of data the run makes
        before it trains (rare class sampling, the target images' size), for its first
        training node."""
        from hrda_kedro.params import (
            AblationParams,
            RuntimeParams,
            check_graph_settings,
            check_group_names,
            check_input_folder,
            check_outside_outputs,
            check_run,
            check_work_folder,
            parse,
        )

        parameters = catalog.load("parameters") if "parameters" in catalog else {}
        check_group_names(parameters)
        check_graph_settings(parameters)
        validated = validate_run_parameters(pipeline, parameters)
        check_run(parameters, [*validated, *_data_groups_for_checks(parameters, validated)])
        if "runtime" in validated:
            from hrda_kedro.runtime.devices import check_device

            runtime = parse(RuntimeParams, parameters["runtime"], "runtime")
            check_device(runtime)
            if _trains_outside_the_study(pipeline):
                check_work_folder(runtime.work_dir, "runtime.work_dir")
        if "ablations" in validated:
            from hrda_kedro.pipelines.ablations.nodes import (
                check_variant_crops,
                check_variant_weights,
            )

            check_variant_weights(parameters)
            check_variant_crops(parameters)
            study = parse(AblationParams, parameters["ablations"], "ablations")
            check_work_folder(study.work_dir, "ablations.work_dir")
        if "predict" in validated:
            for folder in _image_folders(pipeline, catalog):
                check_input_folder(parameters["predict"], folder)
            check_outside_outputs(parameters["predict"], _replaced_folders(pipeline, catalog))
            if any(node.name == "segment_images" for node in pipeline.nodes):
                from hrda_kedro.pipelines.predict.nodes import check_checkpoint_setting

                check_checkpoint_setting(parameters["predict"], parameters.get("model", {}))
        from kedro.framework.project import pipelines as registered

        from hrda_kedro.datasets.report_sets import check_report_sets, saved_together
        from hrda_kedro.datasets.run_inputs import check_manifest_origins, check_run_inputs

        check_run_inputs(pipeline.inputs(), catalog, registered)
        check_manifest_origins(pipeline.inputs(), catalog, parameters)
        check_report_sets(pipeline.inputs(), saved_together(registered.values()), catalog)
        sampling = {g: parameters[g] for g in ("warmup", "self_training") if g in validated}
        logger.info("parameters validated: %s", ", ".join(validated) or "none")
        if sampling and set(_SAMPLING_INPUTS) <= pipeline.inputs():
            _check_sampling(*(catalog.load(name) for name in _SAMPLING_INPUTS), sampling)
            sampling = {}  # checked; a run that ingests checks before its first training node
        target = _target_fit_settings(pipeline, parameters, validated)
        if target and _TARGET_INPUT in pipeline.inputs():
            _check_target_fit(catalog.load(_TARGET_INPUT), target)
            target = {}
        return sampling, target


# The checks of the data a run makes before it trains ("sampling": the stage groups' rare
# class sampling settings, "target_fit": the model and self_training groups), made by its
# first training node when the run makes that data itself: set when the run starts, and
# handed to ParallelRunner's spawned workers (hrda_kedro.runner), which run that node.
_deferred_checks: dict[str, dict[str, Any]] = {}


def deferred_checks() -> dict[str, dict[str, Any]]:
    """This run's checks still to make before its first training node."""
    return dict(_deferred_checks)


def defer_checks(checks: Mapping[str, dict[str, Any]]) -> None:
    """Replace the checks still to make (the empty ones are made already)."""
    _deferred_checks.clear()
    _deferred_checks.update({name: groups for name, groups in checks.items() if groups})


# In the order _check_sampling takes them.
_SAMPLING_INPUTS = ("source_class_pixel_counts", "source_train_manifest")


def _check_sampling(counts: Any, manifest: Any, groups: Mapping[str, Any]) -> None:
    """Each stage group's rare class sampling has a class to draw from these source images."""
    from hrda_kedro.hrda.training.config import TrainingConfig
    from hrda_kedro.params import SelfTrainingParams, parse
    from hrda_kedro.runtime.training_data import check_rare_class_sampling, class_counts

    kinds = {"warmup": TrainingConfig, "self_training": SelfTrainingParams}
    for group, settings in groups.items():
        train = parse(kinds[group], settings, group)
        check_rare_class_sampling(manifest, class_counts(counts), train, group)


_TARGET_INPUT = "target_train_manifest"


def _target_fit_settings(
    pipeline: Any, parameters: Mapping[str, Any], validated: list[str]
) -> dict[str, Any]:
    """The run's ``model`` and ``self_training`` when it trains rounds on the target images
    (outside the study, whose variants check their own crops): their size is known once
    ingested, and a round found the crop too large only after the whole warmup."""
    rounds = any(
        "training" in node.tags
        and _TARGET_INPUT in node.inputs
        and not (node.namespace or "").startswith("ablations")
        for node in pipeline.nodes
    )
    if not rounds or not {"model", "self_training"} <= set(validated):
        return {}
    return {group: parameters[group] for group in ("model", "self_training")}


def _check_target_fit(manifest: Any, groups: Mapping[str, Any]) -> None:
    """The context crop fits in every target image, and the margins leave pixels of it."""
    from hrda_kedro.hrda.model_config import ModelConfig
    from hrda_kedro.params import SelfTrainingParams, parse
    from hrda_kedro.runtime.training_data import check_images_fit

    model = parse(ModelConfig, groups["model"], "model")
    training = parse(SelfTrainingParams, groups["self_training"], "self_training")
    check_images_fit(manifest, model, "target_train", training.pseudo_labels)


# Pipelines that read a saved model and write only their own outputs: they may run beside a
# run that trains (a user predicts with round 1 while round 2 trains).
_MODEL_READERS = ("predict", "export", "export_onnx")


def _model_reader_nodes() -> set[str]:
    from kedro.framework.project import pipelines

    return {node.name for name in _MODEL_READERS for node in pipelines[name].nodes}


# predict's outputs made from the listing or the labels: a run that lists or segments
# images empties them all when it starts, so that a run stopped half-way leaves a partial
# set of its own outputs, never one mixed with the previous run's.
_PREDICT_STARTS = ("list_predict_inputs", "segment_images")
_PREDICT_DERIVED = ("predict_labels", "predict_attention", "predict_overlays")


def _clear_derived_predictions(pipeline: Any, catalog: Any) -> None:
    if not any(node.name in _PREDICT_STARTS for node in pipeline.nodes):
        return
    for name in _PREDICT_DERIVED:
        if name in catalog:
            folder = Path(str(catalog.get(name)._describe()["path"]))
            if folder.is_dir():
                shutil.rmtree(folder)


def _trains_outside_the_study(pipeline: Any) -> bool:
    """Training nodes other than the ablation study's, which keep their in-training
    checkpoints under ``ablations.work_dir`` instead of ``runtime.work_dir``."""
    return any(
        "training" in node.tags and not (node.namespace or "").startswith("ablations")
        for node in pipeline.nodes
    )


def _data_groups_for_checks(parameters: Mapping[str, Any], validated: list[str]) -> list[str]:
    """The ingestion groups a run does not read but its cross-group checks may consult (the
    image size and label kind of the data a warmup trains on), when they are valid: a
    pipeline not run must never stop a run, but its valid settings still describe the data.
    """
    from hrda_kedro.data.ingest import IngestionDatasets, IngestionSettings
    from hrda_kedro.params import ParameterError, parse

    usable = []
    for group, cls in (("ingestion", IngestionSettings), ("ingestion_datasets", IngestionDatasets)):
        if group in parameters and group not in validated:
            try:
                parse(cls, parameters[group], group)
            except ParameterError:
                continue
            usable.append(group)
    return usable


def _image_folders(pipeline: Any, catalog: Any) -> list[str]:
    """Folders of images the run reads (``predict_images``)."""
    from hrda_kedro.datasets.image_folder import ImageFolderDataset

    datasets = [catalog.get(name) for name in pipeline.inputs() if name in catalog]
    return [str(d.path) for d in datasets if isinstance(d, ImageFolderDataset)]


def _replaced_folders(pipeline: Any, catalog: Any) -> list[str]:
    """Folders the run's outputs empty before writing (partitioned datasets, overwrite)."""
    folders = []
    for name in pipeline.all_outputs():
        dataset = catalog.get(name) if name in catalog else None
        if getattr(dataset, "_overwrite", False):
            folders.append(str(dataset._describe()["path"]))
    return folders


class LauncherHooks:
    """One writer per run: stop under torchrun; on several machines, node 0 runs the pipeline
    and every other node only trains the stages node 0 hands it (:mod:`hrda_kedro.launch`)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from hrda_kedro import launch, tracking_runs  # late: torch only when several nodes

        with tracking_runs.run_ends_on_error():
            where = launch.cluster()  # raises LauncherError under torchrun & co.
        if where.nnodes == 1:
            return
        logger.info(
            "node %d of %d (%s): %s",
            where.node_rank,
            where.nnodes,
            where.source,
            "runs the pipeline and writes every output"
            if where.node_rank == 0
            else "trains the stages node 0 hands over; runs no other node, writes nothing",
        )
        launch.stage_channel(where)
        if where.node_rank > 0:
            from hrda_kedro.stages import serve_stages

            tracking_runs.discard_active_run()  # node 0's run is the run's record
            served = serve_stages(where)
            logger.info("node %d: node 0 is done after %d training stages", where.node_rank, served)
            raise SystemExit(0)  # this node's part of the run is over; node 0 ran the pipeline

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from hrda_kedro import launch

        launch.close_channel()

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        from hrda_kedro import launch

        launch.close_channel(failed=True)  # the other nodes stop, with an error too


class TrackingHooks:
    """With the ``mlflow`` extra: results, reports and the final model into the MLflow run
    kedro-mlflow opens (:mod:`hrda_kedro.tracking`), or an ablation's nested run
    (:mod:`hrda_kedro.tracking_runs`), also from ``ParallelRunner``'s worker processes;
    without the extra, nothing happens."""

    def __init__(self) -> None:
        self._catalog: Any = None

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """Before kedro-mlflow's hook reads mlflow.yml: the store in this project."""
        from hrda_kedro.tracking_store import anchor_store

        anchor_store(context.config_loader, context.project_path)

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """After kedro-mlflow opened the run and the run-start checks passed."""
        from hrda_kedro import tracking_runs

        tracking_runs.start_pipeline(node.namespace for node in pipeline.nodes)

    @hook_impl(tryfirst=True)
    def before_node_run(self, node: Any, catalog: Any) -> None:
        """Before kedro-mlflow's hook logs the node's parameters: in a worker, join the run.
        The catalog is kept here, not when created: workers create none."""
        from hrda_kedro import tracking_runs

        tracking_runs.join_in_worker()
        tracking_runs.enter_node(node.namespace)
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        """Files exist only now: ``after_node_run`` comes before the outputs are saved."""
        from hrda_kedro import tracking

        tracking.log_saved(dataset_name, data, self._catalog)

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Before kedro-mlflow's hook ends the run."""
        from hrda_kedro import tracking, tracking_runs

        model = tracked_model(pipeline.all_outputs())
        if model is not None:
            tracking.log_model(catalog, model)
        tracking_runs.end_pipeline()

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        from hrda_kedro import tracking_runs

        tracking_runs.end_pipeline("FAILED")


def tracked_model(outputs: Iterable[str]) -> str | None:
    """The last checkpoint a run trains (``round_<N>.model``, else ``source_only_model``),
    from the pipeline's outputs: under ``ParallelRunner`` the saves happen in workers."""
    from hrda_kedro.pipelines.self_training.pipeline import final_model

    names = set(outputs)
    rounds = range(len(names), -1, -1)
    return next((final_model(r) for r in rounds if final_model(r) in names), None)
