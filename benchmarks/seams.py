"""Seams along the sliding-window grid, and mIoU, with plain against tapered window weights.

Run in a project after training (for example ``kedro run --pipeline=warmup``): it predicts
the first ``--images`` target-val images with a trained checkpoint, once per window
weighting (``uniform``: the official plain average; ``tapered``), at the native size and
upscaled ``--upscale`` times (a larger photo: more windows; labels upscaled by nearest
neighbour), and reports:

- ``miou``: target-val mIoU (%), 19 classes present in the ground truth;
- ``grid_change`` / ``other_change``: how often the predicted label changes between two
  neighbouring pixels across a line of the window grid (every ``stride`` pixels, where
  windows begin and end) and across any other line; ``seam_ratio`` = their ratio. Without
  seams the ratio is near 1 (the ground truth's own ratio is given as ``gt`` rows).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package

TABLE_COLUMNS = ("image_size", "weights", "miou", "grid_change", "other_change", "seam_ratio")
CSV_COLUMNS = (*TABLE_COLUMNS, "images", "window", "stride", "checkpoint", "cpu", "torch")


def _changes(labels: Any, stride: int) -> tuple[float, float, float, float]:
    """Label changes across grid lines and across other lines, counts of each kind."""
    import torch

    grid = [0.0, 0.0]
    other = [0.0, 0.0]
    for dim in (-1, -2):
        size = labels.shape[dim]
        changed = (labels.narrow(dim, 1, size - 1) != labels.narrow(dim, 0, size - 1)).float()
        # Boundary k lies between pixel k and k + 1; a grid line at multiples of the stride.
        on_grid = torch.zeros(size - 1, dtype=torch.bool)
        on_grid[stride - 1 :: stride] = True
        shape = [1] * changed.dim()
        shape[dim] = size - 1
        on_grid = on_grid.view(shape).expand_as(changed)
        grid[0] += changed[on_grid].sum().item()
        grid[1] += on_grid.sum().item()
        other[0] += changed[~on_grid].sum().item()
        other[1] += (~on_grid).sum().item()
    return grid[0], grid[1], other[0], other[1]


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--project", type=common.project_arg, default=Path("."), help="the Kedro project"
    )
    parser.add_argument(
        "--checkpoint",
        default="data/06_models/source_only/model.pt",
        help="checkpoint file or versioned folder, relative to the project",
    )
    parser.add_argument("--images", type=common.count_arg(1), default=40)
    parser.add_argument(
        "--upscale",
        type=common.count_arg(1),
        default=2,
        help="also predict images this much larger",
    )
    common.add_threads_option(parser)
    common.add_out_option(parser)
    args = parser.parse_args(argv)

    import pandas as pd
    import torch
    import torch.nn.functional as F

    from hrda_kedro.data import MissingInputError
    from hrda_kedro.data.labels import CITYSCAPES_CLASSES
    from hrda_kedro.hrda import normalize
    from hrda_kedro.hrda.inference import predict_full_image
    from hrda_kedro.hrda.metrics import confusion_matrix, summarize
    from hrda_kedro.pipelines.predict.nodes import load_checkpoint_file
    from hrda_kedro.runtime.models import model_from_checkpoint
    from hrda_kedro.runtime.training_data import labelled_dataset

    common.set_threads(args.threads)
    project = args.project.resolve()
    manifest_path = project / "data/05_model_input/target_val_manifest.csv"
    with common.user_errors(parser):
        checkpoint, path = load_checkpoint_file(
            str(project / args.checkpoint), setting="argument --checkpoint"
        )
        model, trained = model_from_checkpoint(checkpoint, str(path))
        if not manifest_path.is_file():
            raise MissingInputError(
                f"target_val_manifest: {manifest_path} not found; made by kedro run "
                "--pipeline=ingestion"
            )
    model.eval()
    manifest = pd.read_csv(manifest_path)
    for column in ("image_path", "label_path"):  # relative paths are the project's
        manifest[column] = [str(project / p) for p in manifest[column]]
    data = labelled_dataset(manifest)
    count = min(args.images, len(data))
    num_classes = trained.network.num_classes
    stride = trained.stride[0]
    sums: dict[tuple[str, str], list[float]] = {}
    matrices: dict[tuple[str, str], Any] = {}
    for index in range(count):
        item = data[index]
        for factor in sorted({1, args.upscale}):
            image = item["image"].unsqueeze(0).float()
            label = item["label"]
            if factor > 1:
                image = F.interpolate(image, scale_factor=factor, mode="bilinear")
                label = F.interpolate(label[None, None].float(), scale_factor=factor)[0, 0].long()
            size = f"{image.shape[-1]}x{image.shape[-2]}"
            valid = label.clone()
            gt_key = (size, "gt")
            counts = sums.setdefault(gt_key, [0.0] * 4)
            for i, value in enumerate(_changes(valid, stride)):
                counts[i] += value
            for weights in ("uniform", "tapered"):
                with torch.inference_mode():
                    windows = trained.sliding_windows(weights=weights)
                    logits = predict_full_image(model, normalize(image), windows)
                prediction = logits.argmax(dim=1)[0]
                key = (size, weights)
                counts = sums.setdefault(key, [0.0] * 4)
                for i, value in enumerate(_changes(prediction, stride)):
                    counts[i] += value
                cm = confusion_matrix(prediction, label, num_classes)
                matrices[key] = matrices.get(key, 0) + cm
    rows = []
    info = common.machine_info("cpu")
    for (size, weights), (grid, grid_n, other, other_n) in sums.items():
        row: dict[str, Any] = {
            "image_size": size,
            "weights": weights,
            "grid_change": grid / grid_n,
            "other_change": other / other_n,
            "seam_ratio": (grid / grid_n) / (other / other_n) if other else float("nan"),
            "images": count,
            "window": common.fmt_hw(trained.window),
            "stride": common.fmt_hw(trained.stride),
            "checkpoint": str(path),
            "cpu": info["cpu"],
            "torch": info["torch"],
        }
        if (size, weights) in matrices:
            names = CITYSCAPES_CLASSES[:num_classes]
            row["miou"] = 100 * float(summarize(matrices[(size, weights)], names)["miou"])
        rows.append(row)
    out = args.out or common.RESULTS_DIR / "seams.csv"
    title = f"Window seams and mIoU, {count} target-val images | {datetime.now():%Y-%m-%d %H:%M}"
    common.emit(title, rows, TABLE_COLUMNS, CSV_COLUMNS, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
