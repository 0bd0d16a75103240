"""Which kind of domain shift a model fails on: target-val scenes drawn with one part of it.

The embedded benchmark's shift has five components (``hrda_kedro.data.streets.
SHIFT_COMPONENTS``: palette, illumination, sensor noise and blur, texture, layout). This
script draws the first ``--images`` target-val scenes (their own seeds, so the same streets)
in the source style plus one component of the target style (``+palette``, ...), in the
target style minus one (``all but palette``, ...), and with none (``none``: the source
style) or all of it (``all``: target-val as ingested), and scores each model's fused
sliding-window prediction on them (the windows its checkpoint records): mIoU, the mean IoU
of the small classes, and the share of pixels the model is confident on (max softmax at or
above ``--threshold``, the pseudo-labels' threshold: what self-training learns from).
Models come as in ``small_classes.py``: catalog names of the project (``source_only``,
``round_1``) or ``LABEL=PATH`` model files. Only for a project whose source is the embedded
benchmark; run it in the project folder (``--project``, default: this repository), with the
``--env`` and ``--params`` the project ran with (they draw the scenes).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package
import small_classes  # noqa: E402

TABLE_COLUMNS = ("model", "shift", "images", "miou", "small_miou", "confident%")
CSV_COLUMNS = (
    *TABLE_COLUMNS, *(f"iou {c}" for c in small_classes.SMALL_CLASSES), "threshold", "project",
    "cpu", "torch", "threads",
)  # fmt: skip


def shift_variants() -> dict[str, set[str]]:
    """Label -> the target-style components drawn: none, each alone, all but each, all."""
    from hrda_kedro.data.streets import SHIFT_COMPONENTS

    every = set(SHIFT_COMPONENTS)
    return {
        "none": set(),
        **{f"+{c}": {c} for c in SHIFT_COMPONENTS},
        **{f"all but {c}": every - {c} for c in SHIFT_COMPONENTS},
        "all": every,
    }


def draw_scenes(embedded: dict[str, Any], components: set[str], count: int) -> list[Any]:
    """The first ``count`` target-val scenes in the partial style: (image, label) tensors."""
    import torch

    from hrda_kedro.data.streets import (
        StreetsConfig,
        coarse_shift,
        image_rng,
        partial_shift,
        render_styled,
    )

    style = partial_shift(components, embedded["domain_shift"])
    if not embedded.get("pixel_level_shift", True):
        style = coarse_shift(style)  # as the project's target was drawn
    focal = embedded.get("focal", StreetsConfig.focal)
    scenes = []
    for index in range(count):
        rng = image_rng(embedded["seed"], "target_val", index)
        image, label = render_styled(style, embedded["height"], embedded["width"], rng, focal)
        scenes.append(
            (
                torch.from_numpy(image.copy()).permute(2, 0, 1),
                torch.from_numpy(label.astype("int64")),
            )
        )
    return scenes


def score(net: Any, windows: Any, scenes: list[Any], threshold: float) -> dict[str, float]:
    """mIoU, small-class mean IoU, per-class IoU of the small classes, confident share."""
    import torch

    from hrda_kedro.data.labels import CITYSCAPES_CLASSES
    from hrda_kedro.hrda import normalize
    from hrda_kedro.hrda.inference import predict_full_image
    from hrda_kedro.hrda.metrics import confusion_matrix, iou_per_class

    num_classes = len(CITYSCAPES_CLASSES)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    confident = 0.0
    for image, label in scenes:
        with torch.inference_mode():
            logits = predict_full_image(net, normalize(image.unsqueeze(0)), windows)
        probability, prediction = logits.softmax(1).max(1)
        confident += (probability >= threshold).float().mean().item()
        cm += confusion_matrix(prediction[0], label, num_classes)
    iou = iou_per_class(cm).nan_to_num(0.0)
    present = cm.sum(1) > 0
    small = {c: 100 * iou[CITYSCAPES_CLASSES.index(c)].item() for c in small_classes.SMALL_CLASSES}
    return {
        "miou": 100 * iou[present].mean().item(),
        "small_miou": sum(small.values()) / len(small),
        "confident%": 100 * confident / len(scenes),
        **{f"iou {c}": v for c, v in small.items()},
    }


def measure(
    project: Path,
    models: list[str],
    images: int,
    threshold: float,
    shifts: list[str],
    env: str | None = None,
    params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every model on each of ``shifts`` (labels of :func:`shift_variants`), read through
    the project's Kedro catalog (``env`` and ``params``: the environment and parameters it
    ran with)."""
    variants = shift_variants()
    from hrda_kedro.runtime.models import model_from_checkpoint

    with common.project_catalog(project, env, params) as catalog:
        if catalog.load("params:ingestion_datasets")["target_val"]["kind"] != "embedded":
            raise common.UsageError(
                "the project's target_val is not the embedded benchmark; expected one whose "
                "target scenes this script can draw with each part of the shift"
            )
        small_classes.check_inputs(catalog, [], models)
        embedded = small_classes.drawn_embedded(catalog, project)
        checkpoints = {
            small_classes.model_label(m): small_classes.model_checkpoint(catalog, project, m)
            for m in models
        }
    scenes = {name: draw_scenes(embedded, variants[name], images) for name in shifts}
    rows = []
    for name, checkpoint in checkpoints.items():
        net, trained = model_from_checkpoint(checkpoint, name)
        net.eval()
        windows = trained.sliding_windows()
        for shift, drawn in scenes.items():
            measured = score(net, windows, drawn, threshold)
            rows.append({"model": name, "shift": shift, "images": len(drawn), **measured})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser(
        "mIoU, small-class IoU and confident share of each model on target-val scenes "
        "drawn with one component of the domain shift, all but one, none and all."
    )
    small_classes.add_project_options(parser, "source_only", "first N target-val scenes")
    parser.add_argument(
        "--shifts",
        type=common.comma_list_of(shift_variants()),
        default=",".join(shift_variants()),
        help="comma list of shift variants (default: all of them)",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.968, help="confidence threshold (pseudo-labels')"
    )
    common.add_threads_option(parser)
    common.add_out_option(parser)
    args = parser.parse_args(argv)
    project = args.project.resolve()
    common.check_env(parser, project, args.env)
    common.set_threads(args.threads)
    with common.user_errors(parser):
        rows = measure(
            project, args.models, args.images, args.threshold, args.shifts, args.env,
            args.params,
        )  # fmt: skip
    info = common.machine_info("cpu")
    for row in rows:
        row.update({"threshold": args.threshold, "project": str(args.project), **info})
    title = (
        "Target-val scenes by component of the shift: fused mIoU, small-class mean IoU, "
        f"confident share (max softmax >= {args.threshold})\n"
        f"machine: {common.machine_label(info)} | torch {info['torch']} | "
        f"{datetime.now():%Y-%m-%d %H:%M}"
    )
    out = args.out or common.RESULTS_DIR / "shift_components.csv"
    common.emit(title, rows, TABLE_COLUMNS, CSV_COLUMNS, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
