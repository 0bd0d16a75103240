"""notebooks/inference.ipynb runs headless against a trained project: the windows, the
detail crops, each branch's prediction, the attention and each branch's IoU."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.notebooks.helpers import execute_in
from tests.reliability.helpers import assert_unchanged, copy_project, snapshot


@pytest.mark.slow
def test_inference_notebook_shows_the_windows_the_branches_and_their_iou(
    reference: Path, tmp_path: Path
) -> None:
    project = copy_project(reference, tmp_path / "project")
    before = snapshot(project / "data")
    notebook = execute_in(project, "inference.ipynb")

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    figures = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(figures) == 2  # the windows and crops; the branches and the attention
    printed = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    # The tiny project: 64 x 128 images, 64 x 64 windows (the context crop) at half of it,
    # 32 x 32 detail crops at half of theirs.
    assert "round_2.model: mode hrda, scale 2, image (64, 128)" in printed
    assert "3 context windows of (64, 64) at stride (32, 32)" in printed
    assert "9 detail crops of (32, 32) at stride (16, 16)" in printed
    (table,) = [out.data for out in outputs if out.output_type == "execute_result"]
    html = table["text/html"]
    assert all(branch in html for branch in ("fused", "context", "detail"))
    assert html.index("traffic light") < html.index("road")  # the small classes first
    assert_unchanged(before, project / "data")  # it reads, and writes nothing
