import numpy as np

from hrda_kedro.data.streets import (
    POLE,
    SKY,
    STREET_CLASSES,
    VEGETATION,
    SplitSizes,
    StreetsConfig,
    image_rng,
    read_fingerprint,
    render_street,
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
