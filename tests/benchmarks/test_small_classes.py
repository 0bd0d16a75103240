"""benchmarks/small_classes.py: the source-val split measures the domain gap on unseen images;
the predictions use the window settings of the run that trained the model, as its evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrda_kedro.data.streets import image_rng, render_street
from hrda_kedro.hrda import inference
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.trainer import StageResult
from hrda_kedro.params import parse
from hrda_kedro.runtime.models import build_model
from hrda_kedro.stages import checkpoint_payload
from tests.benchmarks import load_script


def _script():
    return load_script("small_classes")


@pytest.mark.parametrize(
    ("split", "drawn", "domain"),
    [("source_val", "source_train", "source"), ("target_fresh", "target_val", "target")],
)
def test_fresh_splits_draw_unseen_images_after_the_drawn_split(
    split: str, drawn: str, domain: str
) -> None:
    """source_val: fresh source images after source_train's (never trained on);
    target_fresh: fresh target images after target_val's, with the whole shift."""
    embedded = {
        "seed": 0,
        "height": 64,
        "width": 128,
        "domain_shift": 0.6,
        "sizes": {"source_train": 3, "target_train": 2, "target_val": 2},
    }
    items = _script()._fresh(embedded, split, 2)
    assert len(items) == 2
    size = embedded["sizes"][drawn]
    seen = [render_street(domain, 64, 128, image_rng(0, drawn, i), 0.6)[0] for i in range(size)]
    for offset, item in enumerate(items):
        assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 64, 128)
        assert item["label"].dtype == torch.int64 and item["label"].shape == (64, 128)
        # The generator's image for the index right after the drawn split: same domain, unseen.
        image, label = render_street(domain, 64, 128, image_rng(0, drawn, size + offset), 0.6)
        assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), image)
        assert np.array_equal(item["label"].numpy(), label)
        assert not any(np.array_equal(image, other) for other in seen)


@pytest.mark.usefixtures("one_thread")
def test_predictions_follow_the_training_runs_window_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = {
        "network": {"encoder": "mit-nano", "decoder_embed_dim": 16, "attention_embed_dim": 16},
        "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
        "inference": {"stride": [32, 32], "window_batch": 2, "window_weights": "tapered"},
    }
    params = parse(ModelConfig, model, "model")
    checkpoint = checkpoint_payload(
        StageResult(model=build_model(params).state_dict(), teacher=None), params, "round_1"
    )
    render = render_street("target", 64, 128, image_rng(0, "target_val", 0), 0.6)
    item = {
        "image": torch.from_numpy(render[0].copy()).permute(2, 0, 1),
        "label": torch.from_numpy(render[1].astype("int64")),
    }
    used = []
    predict = inference.predict_full_image

    def spy(net, images, windows):
        used.append(windows)
        return predict(net, images, windows)

    monkeypatch.setattr(inference, "predict_full_image", spy)
    rows = _script().score({"round_1": checkpoint}, {"target_val": [item]}, images=5)
    # The evaluation's windows (ModelConfig.sliding_windows), tapered as the checkpoint says.
    assert used == [params.sliding_windows()] and used[0].weights == "tapered"
    assert [(r["model"], r["split"], r["images"]) for r in rows] == [("round_1", "target_val", 1)]
    assert 0 <= rows[0]["miou"] <= 100


def test_a_model_file_is_read_by_its_path_in_the_project(tmp_path: Path) -> None:
    """``--models hrda=data/.../model.pt``: the ablation study's variants, by file."""
    from hrda_kedro.hrda.checkpoint import save_checkpoint

    params = parse(ModelConfig, {"network": {"encoder": "mit-nano"}}, "model")
    payload = checkpoint_payload(
        StageResult(model=build_model(params).state_dict(), teacher=None), params, "source_only"
    )
    path = tmp_path / "data" / "hrda" / "model.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(path, payload)
    script = _script()
    read = script.model_checkpoint(None, tmp_path, "lr=data/hrda/model.pt")
    assert script.model_label("lr=data/hrda/model.pt") == "lr"
    assert read["stage"] == payload["stage"]
    assert all(torch.equal(read["model"][k], v) for k, v in payload["model"].items())


def test_where_a_class_pixels_go_names_the_classes_that_take_most_of_them() -> None:
    row = torch.tensor([5, 60, 0, 35])  # ground-truth pixels of one class, by predicted class
    where = _script().where_pixels_go(row, ["road", "building", "pole", "person"], top=2)
    assert where == "building 60 / person 35"
    assert _script().where_pixels_go(torch.zeros(4, dtype=torch.int64), ["a", "b", "c", "d"]) == ""


class _Catalog:
    """The one entry :func:`drawn_embedded` reads: ``params:ingestion``."""

    def __init__(self, embedded: dict) -> None:
        self.embedded = embedded

    def load(self, name: str) -> dict:
        assert name == "params:ingestion"
        return {"embedded": self.embedded}


def test_fresh_scenes_come_only_from_the_parameters_that_drew_the_projects_benchmark(
    tmp_path: Path,
) -> None:
    """A project run with --env=cityscapes_camera read with conf/base's parameters would
    draw its source-val scenes with the other camera: refused, naming --env."""
    from hrda_kedro.data.ingest import EmbeddedSettings
    from hrda_kedro.data.streets import write_benchmark

    embedded = {
        "root": "data/01_raw/embedded_focal_1.1",
        "height": 32,
        "width": 64,
        "focal": 1.1,
        "sizes": {"source_train": 1, "target_train": 1, "target_val": 1},
    }
    drawn = parse(EmbeddedSettings, embedded, "ingestion.embedded")
    write_benchmark(tmp_path / drawn.root, drawn)
    script = _script()
    assert script.drawn_embedded(_Catalog(embedded), tmp_path) == embedded
    other_camera = {**embedded, "focal": 0.55}
    with pytest.raises(
        _script().common.UsageError, match="not drawn with these parameters; pass --env"
    ):
        script.drawn_embedded(_Catalog(other_camera), tmp_path)
    elsewhere = {**embedded, "root": "data/01_raw/embedded"}  # conf/base's folder: never drawn
    with pytest.raises(
        _script().common.UsageError, match="embedded/fingerprint.json: the project's embedded"
    ):
        script.drawn_embedded(_Catalog(elsewhere), tmp_path)


def test_a_refused_project_is_told_the_params_its_benchmark_was_drawn_with(
    tmp_path: Path,
) -> None:
    """A project run with the README's tiny ``--params`` is refused with advice it can
    follow: ``--env`` and ``--params``, with the values the fingerprint records where they
    differ (an input left out of it at its default, too)."""
    from hrda_kedro.data.ingest import EmbeddedSettings
    from hrda_kedro.data.streets import write_benchmark

    tiny = {"height": 32, "width": 64, "sizes": {"source_train": 2, "target_train": 1,
            "target_val": 1}}  # fmt: skip
    write_benchmark(tmp_path / "data/01_raw/embedded", parse(EmbeddedSettings, tiny, "e"))
    conf_base = {"height": 32, "width": 64, "focal": 1.1,
                 "sizes": {"source_train": 4, "target_train": 1, "target_val": 1}}  # fmt: skip
    with pytest.raises(_script().common.UsageError) as refused:
        _script().drawn_embedded(_Catalog(conf_base), tmp_path)
    assert str(refused.value).endswith(
        "not drawn with these parameters; pass --env and --params with those the project ran "
        'with (it was drawn with --params "ingestion.embedded.sizes.source_train=2,'
        'ingestion.embedded.focal=0.55")'
    )
    # The advice, followed, is accepted.
    followed = {**conf_base, "focal": 0.55, "sizes": {**conf_base["sizes"], "source_train": 2}}
    assert _script().drawn_embedded(_Catalog(followed), tmp_path) == followed


def _tiny_checkpoint(hrda: dict) -> dict:
    model = {
        "network": {"encoder": "mit-nano", "decoder_embed_dim": 16, "attention_embed_dim": 16},
        "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32], **hrda},
        "inference": {"stride": [32, 32], "window_batch": 2},
    }
    params = parse(ModelConfig, model, "model")
    torch.manual_seed(0)
    state = build_model(params).state_dict()
    return checkpoint_payload(StageResult(model=state, teacher=None), params, "round_1")


def _target_item(index: int) -> dict:
    image, label = render_street("target", 64, 128, image_rng(0, "target_val", index), 0.6)
    return {
        "image": torch.from_numpy(image.copy()).permute(2, 0, 1),
        "label": torch.from_numpy(label.astype("int64")),
    }


@pytest.mark.usefixtures("one_thread")
def test_branches_report_what_each_branch_finds_and_the_detail_weight_it_gets() -> None:
    """``--branches``: the context's and the detail's IoU, and the attention's mean on each
    small class's pixels; a fixed attention of 0.3 gives 0.3 on every class present."""
    script = _script()
    items = [_target_item(i) for i in range(2)]
    present = {c for c in script.SMALL_CLASSES if any(_has(item, c) for item in items)}
    assert present, "the test images must hold a small class"
    checkpoints = {
        "fixed": _tiny_checkpoint({"mode": "fixed_attention", "fixed_attention": 0.3}),
        "lr": _tiny_checkpoint({"mode": "lr_only"}),
    }
    data = {"target_val": items}
    plain = script.score(checkpoints, data, images=2)
    rows = script.score(checkpoints, data, images=2, branches=True)
    fixed, lr = rows
    for cls in script.SMALL_CLASSES:
        expected = pytest.approx(0.3) if cls in present else None
        assert fixed[f"detail weight {cls}"] == expected
        assert 0 <= fixed[f"context iou {cls}"] <= 100 and 0 <= fixed[f"detail iou {cls}"] <= 100
    # The fused figures are those of the plain prediction; a one-branch model gets no columns.
    for with_branches, without in zip(rows, plain, strict=True):
        assert {k: with_branches[k] for k in without} == without
    assert not any(k.startswith(("context", "detail")) for k in lr)


def _has(item: dict, cls: str) -> bool:
    from hrda_kedro.data.labels import CITYSCAPES_CLASSES

    return bool((item["label"] == CITYSCAPES_CLASSES.index(cls)).any())


def test_the_detail_weight_of_a_class_is_read_from_its_own_attention_channel() -> None:
    tally = _script()._Tally(branches=True)
    label = torch.tensor([[5, 5, 6], [11, 0, 0]])  # pole x2, traffic light, person
    classwise = torch.arange(19, dtype=torch.float32)[:, None, None].expand(19, 2, 3) / 100
    tally._add_detail_weight(classwise, label)
    tally._add_detail_weight(torch.full((1, 2, 3), 0.5), label)  # a single map
    # pole: (0.05 * 2 + 0.5 * 2), traffic light: 0.06 + 0.5, sign: none, person: 0.11 + 0.5
    assert tally.weight_sums.tolist() == pytest.approx([1.1, 0.56, 0.0, 0.61, 0.0])


@pytest.mark.parametrize("pixel_level_shift", [True, False])
def test_fresh_target_images_are_what_ingestion_would_draw_next(
    tmp_path: Path, pixel_level_shift: bool
) -> None:
    """target_fresh continues target_val exactly as ingestion draws it (camera, whole
    shift), so its figures are target-val's on more images."""
    from hrda_kedro.data.streets import StreetsConfig, _write_one

    embedded = {
        "seed": 4, "height": 64, "width": 128, "domain_shift": 0.6, "focal": 1.1,
        "pixel_level_shift": pixel_level_shift,
        "sizes": {"source_train": 3, "target_train": 2, "target_val": 2},
    }  # fmt: skip
    config = StreetsConfig(
        seed=4, height=64, width=128, domain_shift=0.6, focal=1.1,
        pixel_level_shift=pixel_level_shift,
    )  # fmt: skip
    for split in ("images", "labels"):
        (tmp_path / "target_val" / split).mkdir(parents=True)
    _write_one(tmp_path, config, "target_val", 2)
    (item,) = _script()._fresh(embedded, "target_fresh", 1)
    drawn = np.asarray(Image.open(tmp_path / "target_val/images/00002.png"))
    label = np.asarray(Image.open(tmp_path / "target_val/labels/00002.png"))
    assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), drawn)
    assert np.array_equal(item["label"].numpy(), label)


def test_fresh_splits_come_from_the_embedded_benchmark_only() -> None:
    """source_val is quietly left out for other data (it is a default); target_fresh,
    asked for by name, stops naming the split and the data's kind."""
    script = _script()
    embedded = {"source_train": {"kind": "embedded"}, "target_val": {"kind": "embedded"}}
    assert script.fresh_splits(embedded, ["source_val", "target_fresh"]) == [
        "source_val",
        "target_fresh",
    ]
    assert script.fresh_splits(embedded, ["target_val"]) == []
    real = {"source_train": {"kind": "gta5"}, "target_val": {"kind": "cityscapes"}}
    assert script.fresh_splits(real, script.DEFAULT_SPLITS) == []
    with pytest.raises(
        _script().common.UsageError, match="--splits target_fresh: .*target_val is 'cityscapes'"
    ):
        script.fresh_splits(real, ["target_val", "target_fresh"])
