"""predict's outputs are one run's: a wrong ``predict.checkpoint`` stops the run before the
images are listed, and a run that fails half-way leaves none of the previous run's files
(tenth round, docs/reliability.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kedro.io import DatasetError

from hrda_kedro.hrda.checkpoint import CheckpointError
from hrda_kedro.params import ParameterError
from hrda_kedro.pipelines.predict import nodes
from tests.reliability.helpers import assert_unchanged, run_in_process, snapshot

OUTPUTS = Path("data") / "07_model_output" / "predict"


def _predicted_once(project: Path, names: tuple[str, ...]) -> Path:
    """A predict run with attention maps over ``names`` (copies of one raw image)."""
    images = project / "data" / "01_raw" / "predict_inputs"
    images.mkdir(exist_ok=True)
    source = next((project / "data" / "01_raw").rglob("*.png"))
    for name in names:
        shutil.copy(source, images / name)
    run_in_process(project, "predict", {"predict": {"attention": True}})
    return images


@pytest.mark.parametrize(
    ("checkpoint", "error", "message"),
    [
        ("nowhere/model.pt", ParameterError, "checkpoint not found"),
        ("data/01_raw/predict_inputs/a.png", CheckpointError, "refused to load"),
    ],
)
def test_a_wrong_checkpoint_stops_the_run_before_the_images_are_listed(
    trained: Path, checkpoint: str, error: type[Exception], message: str
) -> None:
    """It once stopped in segment_images, after every image was decoded and inputs.csv
    replaced next to the previous run's labels."""
    images = _predicted_once(trained, ("a.png",))
    shutil.copy(images / "a.png", images / "b.png")  # a listing would now differ
    before = snapshot(trained / "data")
    with pytest.raises(error, match=rf"^parameter predict\.checkpoint: .*{message}"):
        run_in_process(trained, "predict", {"predict": {"checkpoint": checkpoint}})
    assert_unchanged(before, trained / "data")


def test_a_run_that_fails_half_way_leaves_none_of_the_previous_runs_outputs(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after its listing, a run once left the previous run's overlays and
    attention maps beside its own inputs.csv: a folder of two runs' files."""
    images = _predicted_once(trained, ("a.png", "b.png"))
    assert sorted(p.name for p in (trained / OUTPUTS / "overlays").iterdir()) == ["a.png", "b.png"]
    (images / "b.png").unlink()

    def fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("stopped half-way")

    monkeypatch.setattr(nodes, "predict_full_image_labels", fails)
    with pytest.raises(DatasetError, match="stopped half-way"):  # raised while saving
        run_in_process(trained, "predict", {"predict": {"attention": True}})
    assert (trained / OUTPUTS / "inputs.csv").read_text().count("\n") == 2  # header, a
    for kind in ("labels", "overlays", "attention"):
        folder = trained / OUTPUTS / kind
        assert not folder.exists() or not any(folder.iterdir()), kind
