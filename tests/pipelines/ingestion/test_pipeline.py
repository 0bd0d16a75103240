from pathlib import Path

import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure

from hrda_kedro.data import DataError
from hrda_kedro.data.ingest import MANIFEST_COLUMNS, IngestionDatasets, IngestionSettings
from hrda_kedro.params import parse
from hrda_kedro.pipelines.ingestion import create_pipeline
from hrda_kedro.pipelines.ingestion.nodes import ingest_datasets, plot_samples

PROJECT = Path(__file__).resolve().parents[3]
TINY = {
    "cache_dir": "data/02_intermediate/trainid_labels",
    "workers": 2,
    "samples_per_domain": 2,
    "embedded": {"root": "data/01_raw/embedded", "height": 32, "width": 64,
                 "sizes": {"source_train": 3, "target_train": 2, "target_val": 2}},
}  # fmt: skip
EMBEDDED = {split: {"kind": "embedded"} for split in ("source_train", "target_train", "target_val")}


def _loader(env: str | None) -> OmegaConfigLoader:
    return OmegaConfigLoader(
        str(PROJECT / "conf"), base_env="base", default_run_env="local", env=env
    )


@pytest.mark.parametrize("env", [None, "gta2cs", "synthia2cs"])
def test_shipped_parameters_are_valid(env):
    params = _loader(env)["parameters"]
    settings = parse(IngestionSettings, params["ingestion"], "ingestion")
    datasets = parse(IngestionDatasets, params["ingestion_datasets"], "ingestion_datasets")
    assert (settings.embedded.height, settings.embedded.width) == (256, 512)
    expected = {None: "embedded", "gta2cs": "gta5", "synthia2cs": "synthia"}[env]
    assert datasets.source_train.kind == expected
    assert datasets.target_val.kind == ("embedded" if env is None else "cityscapes")


def _catalog(root: Path) -> DataCatalog:
    """The project's ingestion catalog entries with their files moved under ``root``."""
    config = _loader(None)["catalog"]
    outputs = create_pipeline().all_outputs()
    entries = {
        name: {**config[name], "filepath": str(root / config[name]["filepath"])} for name in outputs
    }
    catalog = DataCatalog.from_config(entries)
    catalog["params:ingestion"] = TINY
    catalog["params:ingestion_datasets"] = EMBEDDED
    return catalog


def test_pipeline_writes_every_catalog_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    catalog = _catalog(tmp_path)
    SequentialRunner().run(create_pipeline(), catalog)
    for split, rows in (("source_train", 3), ("target_train", 2), ("target_val", 2)):
        manifest = catalog.load(f"{split}_manifest")
        assert tuple(manifest.columns) == MANIFEST_COLUMNS and len(manifest) == rows
        assert all(Path(p).is_file() for p in manifest["image_path"]) and all(
            Path(p).is_file() for p in manifest["label_path"]
        )
    counts = catalog.load("source_class_pixel_counts")
    assert (
        counts.shape == (3, 20)
        and (counts.drop(columns="image_path").to_numpy().sum(axis=1) == 32 * 64).all()
    )
    frequencies = catalog.load("source_class_frequencies")
    assert frequencies["frequency"].sum() == pytest.approx(1.0) and len(frequencies) == 19
    assert catalog.load("ingestion_report")["embedded"]["generated"] is True
    assert (tmp_path / "data" / "08_reporting" / "ingestion_samples.png").stat().st_size > 0


def test_a_failing_run_saves_no_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    catalog = _catalog(tmp_path)
    SequentialRunner().run(create_pipeline(), catalog)
    manifest = tmp_path / "data" / "05_model_input" / "source_train_manifest.csv"
    before = manifest.read_bytes()
    catalog["params:ingestion_datasets"] = {
        **EMBEDDED,
        "target_val": {"kind": "gta5", "root": "nowhere"},
    }
    with pytest.raises(DataError, match="nowhere/images: folder not found"):
        SequentialRunner().run(create_pipeline(), catalog)
    assert manifest.read_bytes() == before


@pytest.mark.parametrize(
    ("ingestion", "datasets", "message"),
    [
        ({**TINY, "workers": 0}, EMBEDDED, "parameter ingestion.workers: expected a positive integer"),
        ({**TINY, "skip_bad": True}, EMBEDDED, "parameter ingestion.skip_bad: unknown key"),
        ({**TINY, "embedded": {"height": 8}}, EMBEDDED, "parameter ingestion.embedded.height/width: expected at least"),
        (TINY, {**EMBEDDED, "source_train": {"kind": "gta"}}, "parameter ingestion_datasets.source_train.kind"),
        (TINY, {**EMBEDDED, "target_val": {"kind": "embedded", "labels": False}},
         "parameter ingestion_datasets.target_val.labels: target_val needs labels"),
        (TINY, {"source_train": {"kind": "embedded"}}, "parameter ingestion_datasets.target_train: required"),
    ],
)  # fmt: skip
def test_bad_parameters_stop_the_node_naming_the_key(ingestion, datasets, message):
    with pytest.raises(ValueError, match=message):
        ingest_datasets(ingestion, datasets)


def test_samples_figure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outputs = ingest_datasets(TINY, EMBEDDED)
    figure = plot_samples(outputs["source_train_manifest"], outputs["target_train_manifest"], TINY)
    assert isinstance(figure, Figure)
    assert (
        len([ax for ax in figure.axes if ax.images]) == 2 * 2 + 2 * 2
    )  # images and labels, 2 per domain
    assert isinstance(outputs["source_class_pixel_counts"], pd.DataFrame)
