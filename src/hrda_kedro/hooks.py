"""Project hooks: validate every parameter group before the first node runs."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from hrda_kedro.params import PARAMETER_GROUPS, parse

logger = logging.getLogger(__name__)


class ProjectHooks:
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Let the pipeline registry read structural parameters (the number of rounds)."""
        from hrda_kedro import pipeline_registry  # imported late: it pulls in torch

        pipeline_registry.use_config_loader(context.config_loader)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Parse every parameter group; a bad value stops the run before any work."""
        # Imported here, not at module level: the data layer pulls in torch(vision), and
        # the hooks module is imported by every kedro command.
        from hrda_kedro.data.ingest import IngestionDatasets, IngestionSettings

        groups = {
            **PARAMETER_GROUPS,
            "ingestion": IngestionSettings,
            "ingestion_datasets": IngestionDatasets,
        }
        parameters = catalog.load("parameters") if "parameters" in catalog else {}
        for group, cls in groups.items():
            if group in parameters:
                parse(cls, parameters[group], group)
        if "ablations" in parameters:
            from hrda_kedro.pipelines.ablations.nodes import validate_ablations

            validate_ablations(parameters)
        logger.info(
            "parameters validated: %s",
            ", ".join(g for g in parameters if isinstance(parameters[g], dict)),
        )


class LauncherHooks:
    """One writer per run: stop under torchrun; on several machines, node 0 runs the pipeline
    and every other node only trains the stages node 0 hands it (:mod:`hrda_kedro.launch`)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from hrda_kedro import launch  # imported late: torch only when several nodes

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
            from hrda_kedro import tracking
            from hrda_kedro.stages import serve_stages

            tracking.discard_active_run()  # node 0's run is the run's record
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

        launch.close_channel()  # the other nodes stop waiting


class TrackingHooks:
    """With the ``mlflow`` extra: results, reports and the final model into the MLflow run
    kedro-mlflow opens (:mod:`hrda_kedro.tracking`); without it, nothing happens."""

    def __init__(self) -> None:
        self._catalog: Any = None
        self._last_model: str | None = None

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        from hrda_kedro import tracking

        tracking.enter_node(node.namespace)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        """Files exist only now: ``after_node_run`` comes before the outputs are saved."""
        from hrda_kedro import tracking

        tracking.log_saved(dataset_name, data, self._catalog)
        if not dataset_name.startswith("ablations.") and (
            dataset_name == "source_only_model" or dataset_name.endswith(".model")
        ):
            self._last_model = dataset_name

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from hrda_kedro import tracking

        if self._last_model is not None:
            tracking.log_model(catalog, self._last_model)
        tracking.end_nested_runs()
