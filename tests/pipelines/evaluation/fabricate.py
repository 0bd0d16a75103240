"""Small fabricated inputs of the report nodes: evaluations, histories, checkpoints, images.

They let the report nodes (and the report notebook) run in seconds without training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner
from PIL import Image

from hrda_kedro.data.ingest import MANIFEST_COLUMNS
from hrda_kedro.data.labels import CITYSCAPES_CLASSES, NUM_CLASSES
from hrda_kedro.hrda.model_config import ModelConfig, SlidingWindows
from hrda_kedro.params import parse
from hrda_kedro.pipelines.evaluation.pipeline import create_pipeline, model_datasets
from hrda_kedro.runtime.models import build_model, model_params_dict

ROUNDS = 2
HEIGHT, WIDTH = 64, 128
MODEL = model_params_dict(
    parse(
        ModelConfig,
        {
            "network": {"encoder": "mit-nano", "decoder_embed_dim": 16, "attention_embed_dim": 16},
            "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
        },
        "model",
    )
)
EVALUATION = {"progress_bar": False, "qualitative_images": 2}

# The run's model.inference with other crops than the checkpoints': its window (null) is
# each checkpoint's context crop, its stride, batching and weights the run's.
RUN_MODEL = {
    **MODEL,
    "hrda": {**MODEL["hrda"], "context_crop": [128, 128], "detail_crop": [64, 64]},
    "inference": {
        "stride": [16, 16],
        "window_batch": 2,
        "hr_window_batch": 5,
        "window_weights": "tapered",
    },
}
RUN_WINDOWS = (5, SlidingWindows((64, 64), (16, 16), 2, "tapered"))


def evaluation(name: str, seed: int) -> dict[str, Any]:
    """``evaluate_model``'s output with random, diagonal-heavy confusion matrices."""
    rng = np.random.default_rng(seed)
    confusion = {}
    for mode in ("fused", "context", "detail"):
        cm = rng.integers(0, 50, (NUM_CLASSES, NUM_CLASSES)) + np.diag(
            rng.integers(100, 900, NUM_CLASSES)
        )
        confusion[mode] = cm.tolist()
    return {"model": name, "mode": "hrda", "images": 2, "confusion": confusion}


def history(stage: str, iterations: int = 30, seed: int = 0) -> pd.DataFrame:
    """A training history with the trainer's columns (mix terms only in rounds)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, iterations + 1, dtype=float)
    columns = {
        "iteration": steps,
        "lr": 6e-4 * (1 - steps / (iterations + 1)),
        "seconds": np.full(iterations, 0.1),
        "loss": 2.0 / np.sqrt(steps) + rng.random(iterations) * 0.1,
        "source_fused": 1.5 / np.sqrt(steps),
        "source_detail": 1.8 / np.sqrt(steps),
    }
    if stage != "source_only":
        columns |= {
            "mix_fused": 1.2 / np.sqrt(steps),
            "mix_detail": 1.4 / np.sqrt(steps),
            "pseudo_weight": np.linspace(0.5, 0.8, iterations),
        }
    return pd.DataFrame(columns)


def pseudo_label_quality(seed: int) -> dict[str, Any]:
    """``assess_pseudo_labels``' output."""
    rng = np.random.default_rng(seed)
    iou = {c: float(v) for c, v in zip(CITYSCAPES_CLASSES, rng.random(NUM_CLASSES), strict=True)}
    return {
        "images": 4,
        "confident_pixel_share": 0.6 + 0.1 * seed,
        "miou": float(np.mean(list(iou.values()))),
        "pixel_accuracy": 0.7,
        "iou": iou,
    }


def checkpoint(stage: str, seed: int) -> dict[str, Any]:
    """A trained-model checkpoint of the tiny model with random weights."""
    torch.manual_seed(seed)
    net = build_model(parse(ModelConfig, MODEL, "model"), load_pretrained=False)
    return {"stage": stage, "iterations": 1, "model_params": MODEL, "model": net.state_dict()}


def val_manifest(root: Path, count: int = 3) -> pd.DataFrame:
    """``count`` random target-val images and trainId labels under ``root``."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(count):
        image_path = root / f"val_{index}.png"
        label_path = root / f"val_{index}_label.png"
        root.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(image_path)
        label = rng.integers(0, NUM_CLASSES, (HEIGHT, WIDTH), dtype=np.uint8)
        label[:4] = 255
        Image.fromarray(label).save(label_path)
        rows.append(
            {
                "name": f"val_{index}",
                "image_path": str(image_path),
                "label_path": str(label_path),
                "original_label_path": str(label_path),
                "height": HEIGHT,
                "width": WIDTH,
                "load_height": HEIGHT,
                "load_width": WIDTH,
                "domain": "target",
                "split": "target_val",
                "dataset": "fabricated",
            }
        )
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def project_catalog(project: Path) -> DataCatalog:
    """The project's catalog (base environment); relative paths resolve against the cwd."""
    loader = OmegaConfigLoader(str(project / "conf"), base_env="base", default_run_env="local")
    return DataCatalog.from_config(loader["catalog"])


def report_pipeline() -> Pipeline:
    """The evaluation pipeline without the (slow) evaluation nodes."""
    pipeline = create_pipeline(rounds=ROUNDS)
    return pipeline - pipeline.only_nodes(*[f"evaluate_{name}" for name in model_datasets(ROUNDS)])


def write_reports(catalog: DataCatalog, data_root: Path) -> None:
    """Save fabricated inputs into ``catalog`` and run every report node on them."""
    names = list(model_datasets(ROUNDS))
    for seed, name in enumerate(names):
        catalog[f"{name}_evaluation"] = evaluation(name, seed)
        history_name = (
            "source_only_history" if name == "source_only" else f"{name}.training_history"
        )
        catalog.save(history_name, history(name, seed=seed))
        if name != "source_only":
            catalog.save(f"{name}.pseudo_label_quality", pseudo_label_quality(seed))
    catalog.save("source_only_model", checkpoint("source_only", 0))
    catalog.save(f"{names[-1]}.model", checkpoint(names[-1], 1))
    catalog.save("target_val_manifest", val_manifest(data_root / "01_raw" / "val"))
    catalog["params:evaluation"] = EVALUATION
    catalog["params:model"] = MODEL
    catalog["params:runtime"] = {"device": "cpu"}
    SequentialRunner().run(report_pipeline(), catalog)
