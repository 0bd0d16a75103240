"""Where the small classes go: their IoU on seen source labels versus on target val.

A small class at 0 IoU on the target can mean two different things: the model never learnt
it (then it scores 0 on the *source* images it was trained on, too), or it learnt it and
the domain shift loses it. This script tells them apart. For each trained model of a
project (``source_only``, ``round_1``, ``round_2`` by default, read through the project's
Kedro catalog, so versioned checkpoints resolve as in a run; or ``LABEL=PATH``, a model file
such as one of the ablation study's variants) it predicts the first
``--images`` images of ``source_train`` (labels seen in training), of ``source_val`` and of
``target_val`` with the fused HRDA sliding-window prediction (the ``model.inference``
windows its checkpoint records, as the run's evaluation used them) and prints, per small
class, the IoU, the share of ground-truth pixels and the share of predicted pixels. ``source_val``
exists only for the embedded benchmark: fresh source images drawn by its generator after
the last ``source_train`` index (never trained on), so that the source-only model's
source-val vs. target-val mIoU measures the domain gap. ``target_fresh`` (asked for with
``--splits``) is the same for the target: fresh target images after the last ``target_val``
index, drawn with the benchmark's whole shift, which no pipeline reads: more images than
target-val's, for figures less at the mercy of a few images' small objects. Run it after ``kedro run
--pipeline=uda`` in the project folder (``--project``, default: this repository), with the
``--env`` and ``--params`` the project ran with: its parameters draw the fresh scenes, and a
project whose benchmark they did not draw is refused.

With ``--branches``, models with both branches (HRDA, fixed attention) also report each
small class's IoU from the LR context alone and from the HR detail alone, and the mean
detail weight the scale attention gives the class's ground-truth pixels (its own channel of
a class-wise attention): whether the fusion passes on what the detail branch finds.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package

SMALL_CLASSES = ("pole", "traffic light", "traffic sign", "person", "rider")
SPLITS = ("source_train", "source_val", "target_val", "target_fresh")
DEFAULT_SPLITS = SPLITS[:3]
# The fresh splits of the embedded benchmark: the drawn split they continue, and its domain.
FRESH = {"source_val": ("source_train", "source"), "target_fresh": ("target_val", "target")}
TABLE_COLUMNS = (
    "model", "split", "images", "miou", *(f"iou {c}" for c in SMALL_CLASSES),
    *(f"gt% {c}" for c in SMALL_CLASSES), *(f"pred% {c}" for c in SMALL_CLASSES),
)  # fmt: skip
# "labelled as <class>": the classes that take most of the class's ground-truth pixels.
CSV_COLUMNS = (
    *TABLE_COLUMNS, *(f"labelled as {c}" for c in SMALL_CLASSES), "project", "cpu", "torch",
    "threads",
)  # fmt: skip
WHERE_TOP = 3
# --branches: per small class, the context's and the detail's IoU and the detail weight.
BRANCH_COLUMNS = (
    *(f"context iou {c}" for c in SMALL_CLASSES), *(f"detail iou {c}" for c in SMALL_CLASSES),
    *(f"detail weight {c}" for c in SMALL_CLASSES),
)  # fmt: skip


def _catalog_name(model: str) -> str:
    """The catalog entry of a trained model: ``source_only_model``, ``round_N.model``."""
    return "source_only_model" if model == "source_only" else f"{model}.model"


def check_inputs(catalog: Any, manifests: Sequence[str], models: Sequence[str]) -> None:
    """Stop before any work, naming the first of the split ``manifests`` and catalog
    ``models`` (``LABEL=PATH`` ones are read by path) never made and the pipeline that
    makes it: the check ``kedro run`` makes at its start."""
    from kedro.framework.project import pipelines

    from hrda_kedro.datasets.run_inputs import check_run_inputs

    catalog_models = [_catalog_name(m) for m in models if "=" not in m]
    check_run_inputs([*(f"{s}_manifest" for s in manifests), *catalog_models], catalog, pipelines)


def _fresh(embedded: dict[str, Any], split: str, count: int) -> list[dict[str, Any]]:
    """``count`` fresh images of the embedded benchmark for the fresh ``split`` (:data:`FRESH`):
    the generator's images after the last index of the drawn split it continues."""
    import torch

    from hrda_kedro.data.streets import StreetsConfig, image_rng, render_street

    drawn, domain = FRESH[split]
    first = embedded["sizes"][drawn]
    items = []
    for index in range(first, first + count):
        image, label = render_street(
            domain,
            embedded["height"],
            embedded["width"],
            image_rng(embedded["seed"], drawn, index),
            embedded["domain_shift"],
            embedded.get("focal", StreetsConfig.focal),
            embedded.get("pixel_level_shift", StreetsConfig.pixel_level_shift),
        )
        items.append(
            {
                "image": torch.from_numpy(image.copy()).permute(2, 0, 1),
                "label": torch.from_numpy(label.astype("int64")),
            }
        )
    return items


def fresh_splits(datasets: dict[str, Any], splits: Sequence[str]) -> list[str]:
    """The fresh splits of ``splits`` that the project's data can give: the embedded
    benchmark's. ``source_val`` (a default) is left out for other data; ``target_fresh``,
    asked for by name, stops with the reason."""
    found = []
    for split, (drawn, _) in FRESH.items():
        if split not in splits:
            continue
        kind = datasets[drawn]["kind"]
        if kind == "embedded":
            found.append(split)
        elif split not in DEFAULT_SPLITS:
            raise common.UsageError(
                f"--splits {split}: fresh images exist for the embedded benchmark only; "
                f"the project's {drawn} is {kind!r}"
            )
    return found


def drawn_embedded(catalog: Any, project: Path) -> dict[str, Any]:
    """The project's ``ingestion.embedded`` parameters, if they drew the benchmark in its
    folder.

    Scenes drawn here from other parameters (conf/base's camera for a project that ran with
    ``--env=cityscapes_camera``, say) would silently belong to another benchmark than the
    images the models were trained and evaluated on.
    """
    from hrda_kedro.data.ingest import EmbeddedSettings
    from hrda_kedro.data.streets import FINGERPRINT_FILE, drew
    from hrda_kedro.params import parse

    embedded = catalog.load("params:ingestion")["embedded"]
    settings = parse(EmbeddedSettings, embedded, "ingestion.embedded")
    root = project / settings.root
    if not drew(settings, root):
        fingerprint = root / FINGERPRINT_FILE
        drawn = _drawn_params(settings, fingerprint) if fingerprint.is_file() else ""
        raise common.UsageError(
            f"{fingerprint}: the project's embedded benchmark was not drawn with these "
            "parameters; pass --env and --params with those the project ran with"
            + (f' (it was drawn with --params "{drawn}")' if drawn else "")
        )
    return embedded


def _drawn_params(settings: Any, fingerprint: Path) -> str:
    """The ``--params`` that give ``settings`` (``ingestion.embedded``) the generator inputs
    the benchmark's ``fingerprint`` file records, where they differ: the advice a refused
    project's user can follow (a run with ``--params`` leaves no trace in its ``conf/``)."""
    from dataclasses import asdict, fields

    from hrda_kedro.data.streets import StreetsConfig

    names = [field.name for field in fields(StreetsConfig)]
    # The fingerprint leaves out the inputs added later when they are at their defaults.
    recorded = {**asdict(StreetsConfig()), **json.loads(fingerprint.read_text())}
    current = dict(_dotted("ingestion.embedded", {n: getattr(settings, n) for n in names}))
    return ",".join(
        f"{key}={json.dumps(value)}"
        for key, value in _dotted("ingestion.embedded", {n: recorded[n] for n in names})
        if current.get(key) != value
    )


def _dotted(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    """``("a", {"b": {"c": 1}})`` -> ``("a.b.c", 1)``: nested settings as ``--params`` keys
    (a dataclass as its fields)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value):
        value = asdict(value)
    if not isinstance(value, dict):
        yield prefix, value
        return
    for key, item in value.items():
        yield from _dotted(f"{prefix}.{key}", item)


def measure(
    project: Path,
    models: list[str],
    images: int,
    env: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    branches: bool = False,
    splits: Sequence[str] = DEFAULT_SPLITS,
) -> list[dict[str, Any]]:
    """Load the project's ``splits`` and ``models`` through its Kedro catalog (``env`` and
    ``params``: the environment and parameters it ran with), then :func:`score`. The fresh
    splits exist for the embedded benchmark only: ``source_val`` is left out for other
    data, ``target_fresh`` stops."""
    from hrda_kedro.runtime.training_data import labelled_dataset

    with common.project_catalog(project, env, params) as catalog:
        drawn = [split for split in ("source_train", "target_val") if split in splits]
        check_inputs(catalog, drawn, models)
        data: dict[str, Any] = {
            split: labelled_dataset(catalog.load(f"{split}_manifest")) for split in drawn
        }
        for split in fresh_splits(catalog.load("params:ingestion_datasets"), splits):
            data[split] = _fresh(drawn_embedded(catalog, project), split, images)
        data = {split: data[split] for split in SPLITS if split in data}
        checkpoints = {model_label(m): model_checkpoint(catalog, project, m) for m in models}
    return score(checkpoints, data, images, branches=branches)


def model_label(model: str) -> str:
    return model.partition("=")[0]


def model_checkpoint(catalog: Any, project: Path, model: str) -> dict[str, Any]:
    """A catalog model (``round_1``), or ``LABEL=PATH``: a model file of the project (the
    ablation study's ``data/06_models/ablations/<variant>/seed_<n>/<stage>/model.pt``)."""
    from hrda_kedro.hrda.checkpoint import load_checkpoint

    label, _, path = model.partition("=")
    if not path:
        return catalog.load(_catalog_name(label))
    return load_checkpoint(project / path)


def score(
    checkpoints: dict[str, dict[str, Any]],
    data: dict[str, Any],
    images: int,
    *,
    branches: bool = False,
) -> list[dict[str, Any]]:
    """One row per checkpoint and split: mIoU and the small classes' IoU and pixel shares
    (with ``branches``, also :data:`BRANCH_COLUMNS` for models that have both branches).

    Each model predicts with the ``model.inference`` windows (window, stride, batch,
    weights) of the run that trained it, as recorded in its checkpoint, through the
    evaluation's ``ModelConfig.sliding_windows``: the target-val figures are the run's
    evaluation's, also where the run set them with ``--params``, which the project's
    configuration read afterwards would not know."""
    from hrda_kedro.runtime.models import model_from_checkpoint

    rows = []
    for name, checkpoint in checkpoints.items():
        net, trained = model_from_checkpoint(checkpoint, name)
        net.eval()
        windows = trained.sliding_windows()
        with_branches = branches and net.mode not in ("lr_only", "hr_only")
        for split, dataset in data.items():
            count = min(images, len(dataset))
            tally = _Tally(with_branches)
            for i in range(count):
                tally.add(net, dataset[i], windows)
            rows.append({"model": name, "split": split, "images": count, **tally.row()})
    return rows


class _Tally:
    """Confusion matrices of one model on one split (fused; with ``branches`` also context
    and detail) and the detail weight summed over each small class's pixels."""

    def __init__(self, branches: bool) -> None:
        import torch

        from hrda_kedro.data.labels import CITYSCAPES_CLASSES

        self.branches = branches
        self.num_classes = len(CITYSCAPES_CLASSES)
        self.small = [CITYSCAPES_CLASSES.index(c) for c in SMALL_CLASSES]
        kinds = ("fused", "context", "detail") if branches else ("fused",)
        shape = (self.num_classes, self.num_classes)
        self.matrices = {k: torch.zeros(shape, dtype=torch.int64) for k in kinds}
        self.weight_sums = torch.zeros(len(self.small), dtype=torch.float64)

    def add(self, net: Any, item: dict[str, Any], windows: Any) -> None:
        import torch

        from hrda_kedro.hrda import inference, normalize
        from hrda_kedro.hrda.metrics import confusion_matrix

        image, label = normalize(item["image"].unsqueeze(0)), item["label"]
        with torch.inference_mode():
            if self.branches:
                logits = inference.predict_full_image_branches(net, image, windows, attention=True)
                self._add_detail_weight(logits["attention"][0], label)
            else:
                logits = {"fused": inference.predict_full_image(net, image, windows)}
        for kind, matrix in self.matrices.items():
            matrix.add_(confusion_matrix(logits[kind].argmax(1)[0], label, self.num_classes))

    def _add_detail_weight(self, attention: Any, label: Any) -> None:
        """``attention`` ``(A, H, W)``: class ``c``'s weight is channel ``c`` of a class-wise
        attention, else the single map."""
        for j, c in enumerate(self.small):
            channel = attention[c] if attention.shape[0] > 1 else attention[0]
            self.weight_sums[j] += channel[label == c].double().sum()

    def row(self) -> dict[str, Any]:
        from hrda_kedro.data.labels import CITYSCAPES_CLASSES
        from hrda_kedro.hrda.metrics import iou_per_class

        cm = self.matrices["fused"]
        iou = iou_per_class(cm)
        present = cm.sum(1) > 0
        gt_share, pred_share = cm.sum(1).double() / cm.sum(), cm.sum(0).double() / cm.sum()
        row: dict[str, Any] = {"miou": 100 * iou[present].nan_to_num(0.0).mean().item()}
        for cls, k in zip(SMALL_CLASSES, self.small, strict=True):
            row[f"iou {cls}"] = 100 * iou[k].nan_to_num(0.0).item()
            row[f"gt% {cls}"] = 100 * gt_share[k].item()
            row[f"pred% {cls}"] = 100 * pred_share[k].item()
            row[f"labelled as {cls}"] = where_pixels_go(cm[k], CITYSCAPES_CLASSES)
        if self.branches:
            row.update(self._branch_row(cm.sum(1)))
        return row

    def _branch_row(self, gt_pixels: Any) -> dict[str, Any]:
        from hrda_kedro.hrda.metrics import iou_per_class

        row: dict[str, Any] = {}
        for kind in ("context", "detail"):
            iou = iou_per_class(self.matrices[kind])
            for cls, k in zip(SMALL_CLASSES, self.small, strict=True):
                row[f"{kind} iou {cls}"] = 100 * iou[k].nan_to_num(0.0).item()
        for j, (cls, k) in enumerate(zip(SMALL_CLASSES, self.small, strict=True)):
            pixels = int(gt_pixels[k])
            row[f"detail weight {cls}"] = self.weight_sums[j].item() / pixels if pixels else None
        return row


def where_pixels_go(confusion_row: Any, names: Sequence[str], top: int = WHERE_TOP) -> str:
    """``"building 32 / car 18 / sidewalk 12"``: the ``top`` predicted classes of one
    ground-truth class, with their share (%) of its pixels; tells which class takes a lost
    small class's pixels."""
    total = int(confusion_row.sum())
    if total == 0:
        return ""
    shares = sorted(
        ((int(count), name) for count, name in zip(confusion_row.tolist(), names, strict=True)),
        reverse=True,
    )
    return " / ".join(f"{name} {100 * count / total:.0f}" for count, name in shares[:top])


def add_project_options(parser: Any, default_models: str, images_help: str) -> None:
    """``--project``, ``--env``, ``--params``, ``--models`` and ``--images``: which trained
    models of which project, run how, on how many images (this script's and
    ``shift_components.py``'s)."""
    parser.add_argument("--project", type=common.project_arg, default=common.REPO_ROOT)
    common.add_kedro_options(parser)
    parser.add_argument(
        "--models",
        type=common.comma_list,
        default=default_models,
        help="catalog models, or LABEL=PATH for a model file (path relative to the project)",
    )
    parser.add_argument("--images", type=common.count_arg(1), default=40, help=images_help)


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser(
        "IoU and pixel shares of the small classes on source-train (seen labels) "
        "and target-val, for each trained model of a project."
    )
    add_project_options(parser, "source_only,round_1,round_2", "first N images of each split")
    parser.add_argument(
        "--branches",
        action="store_true",
        help="also the context's and the detail's IoU and the attention's detail weight on "
        "each small class (models with both branches)",
    )
    parser.add_argument(
        "--splits",
        type=common.comma_list_of(SPLITS),
        default=",".join(DEFAULT_SPLITS),
        help=f"comma list out of {', '.join(SPLITS)} (target_fresh: fresh target images "
        "after target-val's, embedded benchmark only)",
    )
    common.add_threads_option(parser)
    common.add_out_option(parser)
    args = parser.parse_args(argv)
    project = args.project.resolve()
    common.check_env(parser, project, args.env)
    common.set_threads(args.threads)
    with common.user_errors(parser):
        rows = measure(
            project, args.models, args.images, args.env, params=args.params,
            branches=args.branches, splits=args.splits,
        )  # fmt: skip
    info = common.machine_info("cpu")
    for row in rows:
        row.update({"project": str(args.project), **info})
    title = (
        "Small classes: IoU, ground-truth and predicted pixel share (%), fused prediction\n"
        f"machine: {common.machine_label(info)} | torch {info['torch']} | "
        f"{datetime.now():%Y-%m-%d %H:%M}"
    )
    out = args.out or common.RESULTS_DIR / "small_classes.csv"
    extra = BRANCH_COLUMNS if args.branches else ()
    common.emit(title, rows, (*TABLE_COLUMNS, *extra), (*CSV_COLUMNS, *extra), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
