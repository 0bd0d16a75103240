"""notebooks/report.ipynb runs headless against a project whose reports were just written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.notebooks.helpers import execute_in
from tests.pipelines.evaluation.fabricate import project_catalog, write_reports

FIGURES = 4  # per-class IoU, training curves, pseudo-label quality, qualitative grid


@pytest.mark.slow
def test_report_notebook_executes_and_shows_every_report(project_copy: Path) -> None:
    write_reports(project_catalog(project_copy), project_copy / "data")
    notebook = execute_in(project_copy, "report.ipynb")

    results = [
        out.data
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "execute_result"  # not the catalog's log lines
    ]
    assert sum("image/png" in data for data in results) == FIGURES
    tables = "".join(data.get("text/html", "") for data in results)
    for text in ("source_only", "round_2", "traffic sign", "confident_pixel_share"):
        assert text in tables
    assert tables.count("<table") == 4  # mIoU pivot, mIoU rows, per-class IoU, pseudo-labels
