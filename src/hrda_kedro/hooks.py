"""Project hooks: validate every parameter group before the first node runs."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from hrda_kedro.params import (
    PARAMETER_GROUPS,
    check_group_names,
    check_outside_outputs,
    check_run,
    parse,
)

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
        check_group_names(parameters)
        for group, cls in groups.items():
            if group in parameters:
                parse(cls, parameters[group], group)
        check_run(parameters, [g for g in groups if g in parameters])
        if "predict" in parameters and "params:predict" in pipeline.inputs():
            check_outside_outputs(parameters["predict"], _replaced_folders(pipeline, catalog))
        from kedro.framework.project import pipelines as registered

        from hrda_kedro.datasets.report_sets import check_report_sets, saved_together

        check_report_sets(pipeline.inputs(), saved_together(registered.values()), catalog)
        if "ablations" in parameters:
            from hrda_kedro.pipelines.ablations.nodes import validate_ablations

            validate_ablations(parameters)
        logger.info(
            "parameters validated: %s",
            ", ".join(g for g in parameters if isinstance(parameters[g], dict)),
        )


def _replaced_folders(pipeline: Any, catalog: Any) -> list[str]:
    """Folders the run's outputs empty before writing (partitioned datasets, overwrite)."""
    folders = []
    for name in pipeline.all_outputs():
        dataset = catalog.get(name) if name in catalog else None
        if getattr(dataset, "_overwrite", False):
            folders.append(str(dataset._describe()["path"]))
    return folders
