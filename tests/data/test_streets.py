from functools import partial

import numpy as np
import pytest

from hrda_kedro.data.streets import (
    POLE,
    SHIFT_COMPONENTS,
    SKY,
    SOURCE_STYLE,
    STREET_CLASSES,
    TARGET_STYLE,
    VEGETATION,
    DomainStyle,
    SplitSizes,
    StreetsConfig,
    _Scene,
    drew,
    image_rng,
    partial_shift,
    read_fingerprint,
    render_street,
    render_styled,
    shifted_style,
    write_benchmark,
)


def test_same_seed_gives_identical_files(tmp_path):
    config = StreetsConfig(seed=3, height=64, width=128, sizes=SplitSizes(2, 2, 1))
    write_benchmark(tmp_path / "a", config, workers=2)
    write_benchmark(tmp_path / "b", config, workers=1)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 10
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert read_fingerprint(tmp_path / "a") == config.fingerprint()
    other = StreetsConfig(seed=4, height=64, width=128, sizes=config.sizes)
    assert other.fingerprint() != config.fingerprint()
    image, _ = render_street("source", 64, 128, image_rng(4, "source_train", 0))
    first, _ = render_street("source", 64, 128, image_rng(3, "source_train", 0))
    assert not np.array_equal(image, first)


def test_a_benchmark_is_known_by_the_config_that_drew_it_with_its_conditions(tmp_path):
    """What scripts drawing fresh scenes check first: the same config, whichever condition
    subsets were drawn with it; another camera, or a folder never drawn, is not it."""
    config = StreetsConfig(height=32, width=64, focal=1.1, sizes=SplitSizes(1, 1, 1))
    write_benchmark(tmp_path / "night", config, conditions=("target_val_night",))
    assert drew(config, tmp_path / "night")
    assert not drew(StreetsConfig(height=32, width=64, sizes=config.sizes), tmp_path / "night")
    assert not drew(config, tmp_path / "never_drawn")


def test_every_declared_class_is_drawn_in_both_domains():
    for domain, split in (("source", "source_train"), ("target", "target_train")):
        seen = set()
        for index in range(24):
            image, label = render_street(domain, 128, 256, image_rng(0, split, index))
            assert image.shape == (128, 256, 3) and image.dtype == np.uint8
            assert label.shape == (128, 256) and label.dtype == np.uint8
            seen |= set(np.unique(label).tolist())
        assert seen == set(STREET_CLASSES), (domain, set(STREET_CLASSES) - seen)


def _pole_run_lengths(label: np.ndarray) -> np.ndarray:
    padded = np.pad(label == POLE, ((0, 0), (1, 1)))
    edges = np.diff(padded.astype(np.int8), axis=1)
    return np.flatnonzero(edges.ravel() == -1) - np.flatnonzero(edges.ravel() == 1)


def _laplacian_energy(image: np.ndarray, label: np.ndarray, cls: int) -> float:
    grey = image.astype(np.float32).mean(axis=-1)
    lap = np.abs(
        4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    )
    return float(lap[label[1:-1, 1:-1] == cls].mean())


def test_thin_objects_are_a_few_pixels_wide_and_the_domains_differ_at_high_resolution():
    runs, saturation, sky, vegetation = {}, {}, {}, {}
    for domain, split in (("source", "source_train"), ("target", "target_train")):
        images, labels = zip(
            *(render_street(domain, 256, 512, image_rng(0, split, i)) for i in range(6)),
            strict=True,
        )
        runs[domain] = np.concatenate([_pole_run_lengths(label) for label in labels])
        rgb = np.stack(images).astype(np.float32)
        saturation[domain] = float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean())
        sky[domain] = np.mean(
            [_laplacian_energy(i, lab, SKY) for i, lab in zip(images, labels, strict=True)]
        )
        vegetation[domain] = np.mean(
            [_laplacian_energy(i, lab, VEGETATION) for i, lab in zip(images, labels, strict=True)]
        )
    for domain, lengths in runs.items():
        assert np.median(lengths) <= 3, domain  # poles: a few HR pixels, lost at 1/2
    assert saturation["source"] > 1.3 * saturation["target"]  # palette
    assert sky["target"] > 2 * sky["source"]  # sensor noise and clouds vs. a clean gradient
    assert vegetation["source"] > 1.4 * vegetation["target"]  # blotchy CG foliage vs. fine grain


def test_a_longer_focal_length_draws_the_same_object_larger():
    """``focal`` is the camera's: at Cityscapes' 1.1 a pole 20 m ahead is twice as wide in
    pixels as at the default 0.55; the default's fingerprint is the one from before it."""
    widths = {}
    for focal in (0.55, 1.1):
        scene = _Scene(SOURCE_STYLE, 256, 512, image_rng(0, "source_train", 0), focal)
        scene.pole(1.0, 20.0, 6.0, 0.3, 1, {"arm": False, "light": False, "sign": False})
        widths[focal] = np.median(_pole_run_lengths(scene.label))
    assert widths[0.55] >= 4 and abs(widths[1.1] - 2 * widths[0.55]) <= 1  # rasterised
    assert StreetsConfig().fingerprint() == "b42a8d758f7d10d81d05bf869d2629a2a56eef2d"
    assert StreetsConfig(focal=1.1).fingerprint() != StreetsConfig().fingerprint()


def test_a_coarse_shift_leaves_out_the_pixel_level_noise_but_not_the_palette():
    """``pixel_level_shift: false``: the target's sky loses its sensor noise (not its
    clouds), its colours stay the target's muted ones, and the labels are the same scene's."""
    energy, saturation, labels = {}, {}, {}
    for pixel_level in (True, False):
        drawn = [
            render_street(
                "target", 256, 512, image_rng(0, "target_train", i), 0.6,
                pixel_level_shift=pixel_level,
            )
            for i in range(4)
        ]  # fmt: skip
        energy[pixel_level] = np.mean([_laplacian_energy(i, lab, SKY) for i, lab in drawn])
        saturation[pixel_level] = np.mean(
            [(i.astype(np.float32).max(-1) - i.astype(np.float32).min(-1)).mean() for i, _ in drawn]
        )
        labels[pixel_level] = [lab for _, lab in drawn]
    assert energy[False] < 0.7 * energy[True]  # the clouds stay
    assert abs(saturation[False] - saturation[True]) < 0.1 * saturation[True]
    assert all(np.array_equal(a, b) for a, b in zip(labels[True], labels[False], strict=True))


def test_the_shift_components_split_the_style_and_add_up_to_the_target():
    """Every field that differs between the domains belongs to one component, so that
    :func:`partial_shift` with all of them is the target style and with none the source."""
    named = [name for fields_ in SHIFT_COMPONENTS.values() for name in fields_]
    assert sorted(named) == sorted(DomainStyle.__dataclass_fields__)
    assert partial_shift(set(SHIFT_COMPONENTS), 0.6) == shifted_style(0.6)
    assert partial_shift(set(), 0.6) == SOURCE_STYLE
    lit = partial_shift({"illumination"}, 1.0)
    assert lit.gamma == TARGET_STYLE.gamma and lit.palette == SOURCE_STYLE.palette
    with pytest.raises(ValueError, match="unknown shift components \\['weather'\\]"):
        partial_shift({"weather"}, 0.6)


def test_a_scene_drawn_in_a_partial_style_keeps_its_layout_and_labels():
    """Without the layout component the target-val scene's labels are those drawn in the
    source style; the image changes with the component (here the illumination)."""
    rng = partial(image_rng, 0, "target_val", 3)
    plain_image, plain_label = render_styled(SOURCE_STYLE, 64, 128, rng())
    lit_image, lit_label = render_styled(partial_shift({"illumination"}, 0.6), 64, 128, rng())
    assert np.array_equal(plain_label, lit_label)
    assert not np.array_equal(plain_image, lit_image)
