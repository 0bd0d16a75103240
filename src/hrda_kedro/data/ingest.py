"""From configured data sets to checked manifests, cached trainId labels and class counts.

Design:

- **All or nothing.** New files (a redrawn embedded benchmark, converted labels, cache
  indexes) are written into hidden staging folders next to their destination and moved
  into place only after every split has been checked; a failing run removes them, so it
  overwrites nothing an earlier run ingested.
- **A re-run does no work.** Each data set has a cache folder under ``cache_dir`` holding
  its trainId labels (when its raw labels need converting) and an index of every checked
  pair: file sizes and modification times, image size and class pixel counts. Pairs whose
  files are unchanged are neither decoded nor converted again; a changed mapping (its
  fingerprint) invalidates the whole index.
- Bad files stop the run with a :class:`~hrda_kedro.data.DataError` naming the file, or,
  with ``skip_bad_files``, are left out and listed in the report. A missing folder or an
  empty split always stops it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hrda_kedro.data import DataError
from hrda_kedro.data.labels import CITYSCAPES_CLASSES, NUM_CLASSES, LabelMapping
from hrda_kedro.data.layouts import (
    IMAGE_EXTENSIONS,
    DatasetSpec,
    Pair,
    find_pairs,
    unread_entries,
)
from hrda_kedro.data.streets import (
    CONDITION_SUBSETS,
    SPLIT_DOMAINS,
    StreetsConfig,
    read_fingerprint,
    save_png,
    write_benchmark,
)
from hrda_kedro.data.validation import (
    LabelFormat,
    check_label,
    read_image_noting_mode,
    read_raw_label,
)
from hrda_kedro.hrda.config import Config, require
from hrda_kedro.progress import LogProgress

logger = logging.getLogger(__name__)

SPLITS = tuple(SPLIT_DOMAINS)
MANIFEST_COLUMNS = (
    "name", "image_path", "label_path", "original_label_path", "height", "width",
    "load_height", "load_width", "domain", "split", "dataset", "content_sha256",
)  # fmt: skip
INDEX_FILE = "index.json"


@dataclass(frozen=True)
class EmbeddedSettings(StreetsConfig):
    """``ingestion.embedded``: the generator's configuration and where it draws."""

    root: str = "data/01_raw/embedded"

    def validate(self) -> None:
        super().validate()
        # Every run that draws the benchmark trains on source_train and evaluates on
        # target_val (ingestion_datasets requires both); target_train may be 0 for
        # source-only runs (ingestion_datasets.target_train: null), checked in ingest().
        for split in ("source_train", "target_val"):
            count = getattr(self.sizes, split)
            require(
                count >= 1,
                f"sizes.{split}",
                f"expected >= 1 image (every run trains on source_train and evaluates on "
                f"target_val), got {count}",
            )


@dataclass(frozen=True)
class IngestionSettings(Config):
    """The ``ingestion`` parameter group."""

    cache_dir: str = "data/02_intermediate/trainid_labels"
    skip_bad_files: bool = False
    workers: int = 2
    samples_per_domain: int = 3
    embedded: EmbeddedSettings = field(default_factory=EmbeddedSettings)

    def validate(self) -> None:
        for key in ("workers", "samples_per_domain"):
            value = getattr(self, key)
            require(value >= 1, key, f"expected a positive integer, got {value}")


@dataclass(frozen=True)
class IngestionDatasets(Config):
    """The ``ingestion_datasets`` parameter group: one data set per split.

    ``target_train`` is null for source-only training (domain generalization: no target
    images at all). ``extra_targets`` are further labelled target sets, evaluated like
    ``target_val`` and reported each under its name.
    """

    source_train: DatasetSpec
    target_train: DatasetSpec | None
    target_val: DatasetSpec
    extra_targets: dict[str, DatasetSpec] = field(default_factory=dict)

    def validate(self) -> None:
        for split in ("source_train", "target_val"):
            require(
                getattr(self, split).labels,
                f"{split}.labels",
                f"{split} needs labels, expected true",
            )
        for name, spec in self.extra_targets.items():
            key = f"extra_targets.{name}"
            require(
                name.isidentifier() and name not in SPLITS,
                key,
                f"a target name must be a Python identifier (letters, digits, _) other than "
                f"{', '.join(SPLITS)}: it names the report's rows",
            )
            require(spec.labels, f"{key}.labels", "evaluation needs labels, expected true")
            require(
                spec.kind != "embedded" or spec.subset is not None,
                f"{key}.subset",
                "required for an embedded extra target, expected e.g. target_val_night",
            )

    def all_specs(self) -> dict[str, tuple[DatasetSpec, str]]:
        """Every configured data set: ``{split or extra-target name: (spec, domain)}``.

        Embedded splits read their own subset unless told otherwise.
        """
        specs: dict[str, tuple[DatasetSpec, str]] = {}
        for split in SPLITS:
            spec = getattr(self, split)
            if spec is not None:
                if spec.kind == "embedded":
                    spec = replace(spec, subset=spec.subset or split)
                specs[split] = (spec, SPLIT_DOMAINS[split])
        for name, spec in self.extra_targets.items():
            specs[name] = (spec, "target")
        return specs


@dataclass
class IngestionResult:
    """Per split: the manifest and per-image class pixel counts; plus the run's report."""

    manifests: dict[str, pd.DataFrame]
    class_pixel_counts: dict[str, pd.DataFrame]
    report: dict[str, Any]


def _remove_abandoned(final: Path) -> None:
    """Remove staging folders next to ``final`` left by runs that were killed (SIGKILL,
    power loss: no clean-up ran); those of live processes are in use and stay."""
    for folder in final.parent.glob(f".{final.name}.*-*-*"):
        kind, _, rest = folder.name[len(final.name) + 2 :].partition("-")
        pid = rest.partition("-")[0]
        if kind not in ("staging", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        logger.info("Removing %s, left by a run that was stopped", folder)
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class _Staging:
    """Hidden folders next to their destinations, moved into place by :meth:`commit`."""

    def __init__(self) -> None:
        self._folders: list[tuple[Path, Path, bool]] = []  # (staged, final, replace whole)

    def folder(self, final: Path, replace_whole: bool) -> Path:
        _remove_abandoned(final)
        # The pid tells a later run whether the folder is still in use (concurrent runs).
        staged = final.parent / f".{final.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staged.mkdir(parents=True)
        self._folders.append((staged, final, replace_whole))
        return staged

    def final_path(self, path: Path) -> Path:
        """Where a staged file will live after the commit."""
        for staged, final, _ in self._folders:
            if path.is_relative_to(staged):
                return final / path.relative_to(staged)
        return path

    def commit(self) -> None:
        for staged, final, replace_whole in self._folders:
            if replace_whole:
                old = final.parent / f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                if final.exists():
                    final.rename(old)
                staged.rename(final)
                shutil.rmtree(old, ignore_errors=True)
                continue
            files = sorted(p for p in staged.rglob("*") if p.is_file())
            # Labels first, the index last: a crash in between leaves a consistent cache.
            for path in sorted(files, key=lambda p: p.name == INDEX_FILE):
                target = final / path.relative_to(staged)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
            shutil.rmtree(staged)
        self._folders.clear()

    def rollback(self) -> None:
        for staged, _, _ in self._folders:
            shutil.rmtree(staged, ignore_errors=True)
        self._folders.clear()


def _content_digest(image: Path, label: Path | None, mapping: LabelMapping) -> str:
    """sha256 of the files' bytes and of the label mapping: what training resumes on (paths
    may move, bytes not). The mapping counts: the same label file under another
    ``class_map`` is other training data."""
    digest = hashlib.sha256(hashlib.sha256(image.read_bytes()).digest())
    if label is not None:
        digest.update(hashlib.sha256(label.read_bytes()).digest())
        digest.update(mapping.fingerprint.encode())
    return digest.hexdigest()


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


class _LabelCache:
    """Converted labels and the index of checked pairs of one data set."""

    def __init__(self, folder: Path, mapping: LabelMapping, staging: _Staging):
        self.folder, self.mapping, self._staging = folder, mapping, staging
        self._staged: Path | None = None
        self.records: dict[str, dict[str, Any]] = {}
        try:
            index = json.loads((folder / INDEX_FILE).read_text())
            if index.get("mapping") == mapping.fingerprint:
                self.records = index["records"]
        except (OSError, ValueError, KeyError):
            pass  # no usable index: everything is checked again
        self.changed = False

    def converted_path(self, name: str) -> Path:
        return self.folder / "labels" / f"{name}.png"

    def lookup(self, pair: Pair, image_path: str) -> dict[str, Any] | None:
        """The record of ``pair`` (whose image will live at ``image_path``) if its files are
        unchanged since it was checked."""
        record = self.records.get(pair.name)
        if (
            record is None
            or record["image_path"] != image_path
            or record["image"] != _stamp(pair.image)
            or "content_sha256" not in record
            # a photo checked before EXIF orientations were applied: its size may be sideways
            or (pair.image.suffix.lower() != ".png" and not record.get("upright"))
        ):
            return None
        if pair.label is not None:
            if record.get("label") != _stamp(pair.label) or record.get("counts") is None:
                return None
            if not self.mapping.is_identity and not self.converted_path(pair.name).is_file():
                return None
        return record

    def staged_folder(self) -> Path:
        """The staging folder of new labels and the index (created on first use)."""
        if self._staged is None:
            self._staged = self._staging.folder(self.folder, replace_whole=False)
        return self._staged

    def store(self, name: str, record: dict[str, Any]) -> None:
        self.records[name] = record
        self.changed = True

    def stage_index(self) -> None:
        if self.changed:
            payload = {"mapping": self.mapping.fingerprint, "records": self.records}
            path = self.staged_folder() / INDEX_FILE
            try:
                path.write_text(json.dumps(payload))
            except OSError as err:
                raise OSError(
                    err.errno,
                    f"cannot write the label cache index ({err.strerror or err})",
                    str(path),
                ) from err


def _check_pair(
    pair: Pair, mapping: LabelMapping, label_format: LabelFormat, out: Path | None
) -> dict[str, Any]:
    """Decode and check one pair; write its trainId label to ``out`` (when converting)."""
    image, converted_from = read_image_noting_mode(pair.image)
    height, width = image.shape[:2]
    record: dict[str, Any] = {
        "image": _stamp(pair.image),
        "height": height,
        "width": width,
        "upright": True,  # the size after the EXIF orientation (read_image)
    }
    if converted_from is not None:
        record["converted_from"] = converted_from
    if pair.label is not None:
        raw = read_raw_label(pair.label, label_format)
        check_label(raw, pair.label, (height, width), pair.image, mapping)
        train_ids = mapping.convert(raw)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            save_png(train_ids, out, "the converted label")
        counts = np.bincount(train_ids.ravel(), minlength=256)[:NUM_CLASSES]
        record.update(label=_stamp(pair.label), counts=[int(c) for c in counts])
    record["content_sha256"] = _content_digest(pair.image, pair.label, mapping)
    return record


def _checked(
    pair: Pair, mapping: LabelMapping, label_format: LabelFormat, out_dir: Path | None
) -> dict[str, Any] | DataError:
    """:func:`_check_pair`, returning instead of raising so that the caller decides."""
    out = None if pair.label is None or out_dir is None else out_dir / "labels" / f"{pair.name}.png"
    try:
        return _check_pair(pair, mapping, label_format, out)
    except DataError as err:
        return err


def _cache_folder(cache_dir: Path, spec: DatasetSpec, root: Path) -> Path:
    """The label cache of a data set. A layout's pair names are unique under its root, so
    its splits share one; a user's folder names pairs by file stem and maps raw values by
    its own ``class_map``, so two of them on one root (other folders, suffixes or maps)
    need caches of their own, or one would convert the other's labels."""
    key = str(root)
    if spec.kind == "folder":
        parts = (spec.image_dir, spec.label_dir, spec.image_suffix, spec.label_suffix)
        key = json.dumps([key, *parts, spec.mapping().fingerprint])
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return cache_dir / f"{spec.kind}-{root.name}-{digest}"


def embedded_size_problem(
    config: StreetsConfig, specs: Mapping[str, DatasetSpec | None]
) -> str | None:
    """The message for the first split that reads the embedded benchmark and would get no
    images (``ingestion.embedded.sizes.<split>: 0``), else None."""
    for name, spec in specs.items():
        if spec is None or spec.kind != "embedded":
            continue
        subset = spec.subset or name  # a split's own images unless it names a subset
        split = CONDITION_SUBSETS.get(subset, (subset,))[0]
        count = getattr(config.sizes, split, None)
        if count is not None and count < 1:
            where = name if name in SPLITS else f"extra_targets.{name}"
            return (
                f"parameter ingestion.embedded.sizes.{split}: ingestion_datasets.{where} reads "
                f"the embedded {subset} images, so expected >= 1, got {count} (source-only "
                "training without target images: ingestion_datasets.target_train: null)"
            )
    return None


def _prepare_embedded(
    settings: IngestionSettings, staging: _Staging, conditions: tuple[str, ...]
) -> tuple[Path, dict[str, Any]]:
    """The folder to read the embedded benchmark from, drawing it (staged) when needed."""
    final = Path(settings.embedded.root).absolute()
    config = settings.embedded
    complete = all(
        len(list((final / split / sub).glob("*.png"))) == count
        for split, count in config.subset_sizes(conditions).items()
        for sub in ("images", "labels")
    )
    fingerprint = config.fingerprint(conditions)
    info = {"root": str(final), "fingerprint": fingerprint}
    if complete and read_fingerprint(final) == fingerprint:
        logger.info("Embedded benchmark in %s is up to date; not redrawn", final)
        return final, {**info, "generated": False}
    start = time.perf_counter()
    staged = staging.folder(final, replace_whole=True)
    write_benchmark(staged, config, settings.workers, conditions)
    return staged, {**info, "generated": True, "seconds": round(time.perf_counter() - start, 2)}


def _nested_hint(spec: DatasetSpec, root: Path) -> str:
    """A user's folder whose images sit in subfolders: the folder layout is flat."""
    images = root / spec.image_dir if spec.kind == "folder" else None
    if images is None or not images.is_dir() or not any(p.is_dir() for p in images.iterdir()):
        return ""
    return f" directly in {images} (the folder layout is flat: its subfolders are not read)"


def _read_types_hint(spec: DatasetSpec) -> str:
    """The file types a user's folder is read for: a folder of .tif files looked empty."""
    if spec.kind != "folder":
        return ""
    labels = f", labels {spec.label_suffix}.png" if spec.labels else ""
    images = " | ".join(f"{spec.image_suffix}{suffix}" for suffix in IMAGE_EXTENSIONS)
    return f" (read: images {images}{labels})"


def _ingest_split(
    split: str,
    spec: DatasetSpec,
    root: Path,
    cache: _LabelCache,
    settings: IngestionSettings,
    staging: _Staging,
    domain: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    pairs, problems = find_pairs(spec, root)
    for note in unread_entries(spec, root):
        logger.warning("%s: %s", split, note)
    skipped: list[dict[str, str]] = []

    def reject(err: DataError) -> None:
        if not settings.skip_bad_files:
            raise err
        logger.warning("Skipping (skip_bad_files): %s", err)
        skipped.append({"file": str(err).partition(": ")[0], "reason": str(err)})

    for problem in problems:
        reject(problem)
    image_paths = {pair.name: str(staging.final_path(pair.image)) for pair in pairs}
    records = {pair.name: cache.lookup(pair, image_paths[pair.name]) for pair in pairs}
    todo = [pair for pair in pairs if records[pair.name] is None]
    converting = bool(todo) and spec.labels and not cache.mapping.is_identity
    out_dir = cache.staged_folder() if converting else None
    if todo:
        logger.info("%s: checking %d of %d %s pairs", split, len(todo), len(pairs), spec.kind)
    pool = ThreadPoolExecutor(settings.workers)
    try:
        outcomes = pool.map(lambda p: _checked(p, cache.mapping, spec.label_format, out_dir), todo)
        progress = LogProgress(len(todo), f"{split}: checked")
        for pair, outcome in zip(todo, outcomes, strict=True):
            progress.update()
            if isinstance(outcome, DataError):
                reject(outcome)
                records.pop(pair.name)
            else:
                records[pair.name] = {"image_path": image_paths[pair.name], **outcome}
                cache.store(pair.name, records[pair.name])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    kept = [pair for pair in pairs if pair.name in records]
    if not kept:
        what = "image/label pair" if spec.labels else "image"
        raise DataError(
            f"{root}: split {split!r} is empty; expected at least one {spec.kind} {what}"
            + _nested_hint(spec, root)
            + _read_types_hint(spec)
        )
    converted = _converted_modes([records[pair.name] for pair in kept], split)
    rows, counts = [], []
    for pair in kept:
        record = records[pair.name]
        height, width = record["height"], record["width"]
        load_h, load_w = spec.resize.load_size(height, width) if spec.resize else (height, width)
        label_path = None
        if pair.label is not None:
            label_path = (
                staging.final_path(pair.label)
                if cache.mapping.is_identity
                else cache.converted_path(pair.name)
            )
            counts.append(record["counts"])
        rows.append({
            "name": pair.name,
            "image_path": image_paths[pair.name],
            "label_path": None if label_path is None else str(label_path),
            "original_label_path": None if pair.label is None else str(staging.final_path(pair.label)),
            "height": height, "width": width, "load_height": load_h, "load_width": load_w,
            "domain": domain, "split": split, "dataset": spec.kind,
            "content_sha256": record["content_sha256"],
        })  # fmt: skip
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    counts_df = pd.DataFrame(
        np.asarray(counts, dtype=np.int64).reshape(-1, NUM_CLASSES),
        columns=list(CITYSCAPES_CLASSES),
    )
    if len(counts_df):
        counts_df.insert(0, "image_path", manifest["image_path"].to_numpy())
    report = {
        "dataset": spec.kind,
        "root": str(staging.final_path(root)),
        "pairs": len(kept),
        "labelled": len(counts),
        "checked": len(todo),
        "reused_from_cache": len(pairs) - len(todo),
        "skipped": skipped,
        "converted_to_rgb": converted,
        "class_pixels": {
            name: int(n)
            for name, n in zip(
                CITYSCAPES_CLASSES, counts_df[list(CITYSCAPES_CLASSES)].sum(), strict=True
            )
        },
    }
    logger.info(
        "%s: %d pairs from %s (%d checked, %d from cache, %d skipped)",
        split, len(kept), spec.kind, len(todo), len(pairs) - len(todo), len(skipped),
    )  # fmt: skip
    return manifest, counts_df, report


def _converted_modes(records: list[dict[str, Any]], split: str) -> dict[str, int]:
    """How many of a split's images are read converted to 8-bit RGB, by their own mode;
    logged, since a folder of grayscale or RGBA images trains on what the user may not
    expect (each channel the same, transparency on the mean colour)."""
    modes = Counter(r["converted_from"] for r in records if r.get("converted_from"))
    if modes:
        alpha = any("RGBA" in m or "alpha" in m or "palette" in m for m in modes)
        logger.info(
            "%s: %d of %d images are not 8-bit RGB (%s); read converted, as OpenCV reads "
            "them%s",
            split, modes.total(), len(records),
            ", ".join(f"{mode}: {n}" for mode, n in sorted(modes.items())),
            ", transparent pixels on the ImageNet mean colour" if alpha else "",
        )  # fmt: skip
    return dict(sorted(modes.items()))


def empty_manifest() -> pd.DataFrame:
    """A manifest without rows (no target images, or no extra targets)."""
    return pd.DataFrame(columns=list(MANIFEST_COLUMNS))


def ingest(settings: IngestionSettings, datasets: IngestionDatasets) -> IngestionResult:
    """Check every split, convert and cache labels, then commit all new files at once.

    The manifests are the three splits' (``target_train``'s without rows when it is null)
    and ``extra_targets``: the rows of every extra target, ``split`` holding its name.
    """
    start = time.perf_counter()
    staging = _Staging()
    cache_dir = Path(settings.cache_dir).absolute()
    manifests, counts, split_reports = {}, {}, {}
    embedded_report = None
    try:
        specs = datasets.all_specs()
        embedded = [spec for spec, _ in specs.values() if spec.kind == "embedded"]
        embedded_root = None
        if embedded:
            conditions = tuple(sorted({s.subset for s in embedded} & set(CONDITION_SUBSETS)))
            # The run-start check (params.check_run) says the same; this is for direct calls.
            problem = embedded_size_problem(
                settings.embedded, {n: sp for n, (sp, _) in specs.items()}
            )
            if problem:
                raise DataError(problem)
            embedded_root, embedded_report = _prepare_embedded(settings, staging, conditions)
        caches: dict[Path, _LabelCache] = {}
        for split, (spec, domain) in specs.items():
            if spec.kind == "embedded":
                root, final_root = embedded_root, Path(settings.embedded.root).absolute()
            else:
                root = final_root = Path(str(spec.root)).expanduser().absolute()
            folder = _cache_folder(cache_dir, spec, final_root)
            if folder not in caches:
                caches[folder] = _LabelCache(folder, spec.mapping(), staging)
            manifests[split], counts[split], split_reports[split] = _ingest_split(
                split, spec, root, caches[folder], settings, staging, domain
            )
        for cache in caches.values():
            cache.stage_index()
        staging.commit()
    except BaseException:
        staging.rollback()
        raise
    extra = list(datasets.extra_targets)
    report = {
        "embedded": embedded_report,
        "skip_bad_files": settings.skip_bad_files,
        "splits": {split: split_reports[split] for split in SPLITS if split in split_reports},
        "extra_targets": {name: split_reports[name] for name in extra},
        "seconds": round(time.perf_counter() - start, 2),
    }
    no_counts = pd.DataFrame(columns=["image_path", *CITYSCAPES_CLASSES])
    return IngestionResult(
        _by_split(manifests, extra, empty_manifest()), _by_split(counts, extra, no_counts), report
    )


def _by_split(
    tables: dict[str, pd.DataFrame], extra: list[str], empty: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """One table per split (``empty`` for a split without data) and ``extra_targets``: the
    extra targets' tables one after the other."""
    result = {split: tables.get(split, empty) for split in SPLITS}
    result["extra_targets"] = (
        pd.concat([tables[name] for name in extra], ignore_index=True) if extra else empty
    )
    return result


def class_frequencies(class_pixel_counts: pd.DataFrame) -> pd.DataFrame:
    """Per trainId: labelled pixels, images holding the class, and its pixel frequency.

    Classes absent from the data have frequency 0; rare class sampling must leave them out.
    """
    per_image = class_pixel_counts[list(CITYSCAPES_CLASSES)].to_numpy(dtype=np.int64)
    pixels = per_image.sum(axis=0)
    total = max(int(pixels.sum()), 1)
    return pd.DataFrame({
        "train_id": np.arange(NUM_CLASSES),
        "name": list(CITYSCAPES_CLASSES),
        "pixels": pixels,
        "images": (per_image > 0).sum(axis=0),
        "frequency": pixels / total,
    })  # fmt: skip
