"""Where report files go among a tracked run's artifacts (no mlflow needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrda_kedro.tracking import report_artifact_folder

VERSION = "2026-12-04T21.00.00.000Z"


@pytest.mark.parametrize(
    ("name", "file", "folder"),
    [
        ("miou_table", f"miou_table.csv/{VERSION}/miou_table.csv", "reports"),
        ("source_only_history", "source_only/training_history.csv", "reports/source_only"),
        ("round_1.training_history", "round_1/training_history.csv", "reports/round_1"),
        ("round_2.training_history", "round_2/training_history.csv", "reports/round_2"),
        ("round_2.pseudo_label_quality", "round_2/pseudo_label_quality.json", "reports/round_2"),
        # an ablation's files go into its nested run (hrda/seed_1), below that run's folder
        (
            "ablations.hrda.seed_1.round_1.training_history",
            "ablations/hrda/seed_1/round_1/training_history.csv",
            "reports/round_1",
        ),
        ("ablations.hrda.seed_1.metrics", "ablations/hrda/seed_1/metrics.json", "reports"),
        ("ablation_table", f"ablations/ablation_table.csv/{VERSION}/ablation_table.csv", "reports/ablations"),
    ],
)  # fmt: skip
def test_report_files_mirror_the_reporting_folder_so_none_replaces_another(
    name: str, file: str, folder: str
) -> None:
    """Each stage's training_history.csv once went to reports/ under its bare name, and
    the run kept only the last stage's."""
    path = Path("/project/data/08_reporting") / file
    assert report_artifact_folder(name, path) == folder
