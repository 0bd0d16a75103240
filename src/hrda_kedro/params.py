"""Typed parameter groups, validated when a run starts.

Every group in ``conf/*/parameters*.yml`` maps onto one dataclass: below, or for the
training groups the library's own configs (``warmup``: ``hrda.training.config.TrainingConfig``;
``self_training``: :class:`SelfTrainingParams`, built from it and ``hrda.uda.config.UDAConfig``),
which check their ranges on construction. ``parse`` builds
it from the YAML mapping and stops with one message naming the offending key (with its
full dotted path) and what was expected, so a typo or a bad value fails in the first
second of a run instead of hours into it. The library in ``hrda_kedro.hrda`` never sees
raw dictionaries.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from hrda_kedro.hrda.config import SEED_LIMIT, Config, ConfigError, require, setting
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.config import AugmentConfig, OptimizerConfig, TrainingConfig
from hrda_kedro.hrda.uda import config as uda_config
from hrda_kedro.hrda.uda.config import UDAConfig

T = TypeVar("T")


class ParameterError(ValueError):
    """A parameter is missing, unknown, of the wrong type or out of range."""


# --------------------------------------------------------------------------- parsing


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin in (tuple, list):
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} x {_describe(args[0])}"
        return f"a list of {_describe(args[0])}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in get_args(tp):  # a mapping for a dataclass option: its own checks speak
            if dataclasses.is_dataclass(option) and isinstance(value, Mapping):
                return _convert(value, option, path)
        for option in get_args(tp):
            try:
                return _convert(value, option, path)
            except ParameterError:
                continue
        raise ParameterError(f"parameter {path}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ParameterError(f"parameter {path}: expected one of {_describe(tp)}, got {value!r}")
    if origin in (tuple, list):
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ParameterError(f"parameter {path}: expected {_describe(tp)}, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ParameterError(
                    f"parameter {path}: expected {_describe(tp)}, got {len(value)} values {value!r}"
                )
            return tuple(
                _convert(v, a, f"{path}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        return origin(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        key_type, value_type = get_args(tp)
        if not isinstance(value, Mapping):
            raise ParameterError(f"parameter {path}: expected a mapping, got {value!r}")
        return {
            _convert(k, key_type, path): _convert(v, value_type, f"{path}.{k}")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            keys = ", ".join(f.name for f in dataclasses.fields(tp))
            raise ParameterError(
                f"parameter {path}: expected a mapping with the keys {keys}, got {value!r}"
            )
        return parse(tp, value, path)
    if tp is type(None):
        if value is None:
            return None
        raise ParameterError(f"parameter {path}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ParameterError(f"parameter {path}: expected {_describe(tp)}, got {value!r}")


def _did_you_mean(key: Any, known: typing.Iterable[str]) -> str:
    """`` (did you mean 'iterations'?)`` for the known name closest to a mistyped ``key``."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse(cls: type[T], mapping: Mapping[str, Any] | None, path: str) -> T:
    """Build dataclass ``cls`` from ``mapping``; errors name ``path.key``."""
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, Mapping):
        raise ParameterError(f"parameter {path}: expected a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    # A field's YAML key is its name, or metadata["key"] where the name is a Python keyword.
    fields = {f.metadata.get("key", f.name): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in mapping:
        if key not in fields:
            raise ParameterError(
                f"parameter {path}.{key}: unknown key{_did_you_mean(key, fields)}; known keys: "
                f"{', '.join(fields)}"
            )
    kwargs = {}
    for key, f in fields.items():
        if key in mapping:
            kwargs[f.name] = _convert(mapping[key], hints[f.name], f"{path}.{key}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParameterError(
                f"parameter {path}.{key}: required, expected {_describe(hints[f.name])}"
            )
    with config_errors(path):
        return cls(**kwargs)  # every config checks its own ranges in __post_init__


@contextmanager
def config_errors(path: str) -> Iterator[None]:
    """A library config's :class:`ConfigError` as a :class:`ParameterError` naming
    ``path.<key>``."""
    try:
        yield
    except ConfigError as err:
        raise ParameterError(f"parameter {path}.{err.key}: {err.message}") from None


def check_margins(
    margins: tuple[int, int, int, int], image_hw: tuple[int, int], path: str, where: str = ""
) -> None:
    """The pseudo-label margins leave pixels of an ``image_hw`` image (``path``: their group)."""
    with config_errors(path):
        uda_config.check_margins(margins, image_hw, where)


def _require(condition: bool, path: str, message: str) -> None:
    if not condition:
        raise ParameterError(f"parameter {path}: {message}")


def _positive_pair(pair: tuple[int, int], path: str) -> None:
    _require(pair[0] > 0 and pair[1] > 0, path, f"expected two positive integers, got {list(pair)}")


# --------------------------------------------------------------------------- groups


@dataclass
class RuntimeParams(Config):
    """Where and how to compute (``runtime`` in parameters.yml)."""

    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    devices: int = setting(1, ge=1)
    seed: int = setting(1, ge=0, lt=SEED_LIMIT)
    work_dir: str = "data/06_models/in_progress"
    progress_bar: bool = True
    matmul_precision: Literal["highest", "high", "medium"] = "high"
    keep_freed_host_memory: bool = True
    teacher_thread: bool = True
    predict_streams: Literal["auto"] | int = "auto"

    def validate(self) -> None:
        ok = self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        require(ok, "device", f"expected auto | cpu | cuda | cuda:N, got {self.device!r}")
        # Ranks take cuda:0 .. cuda:<devices - 1>; a fixed index would put all on one GPU.
        require(
            self.devices == 1 or not self.device.startswith("cuda:"),
            "device",
            f"{self.device!r} names one GPU, but runtime.devices: {self.devices} runs one rank "
            "per GPU (cuda:0, cuda:1, ...); expected cuda or auto, with CUDA_VISIBLE_DEVICES "
            "to choose the GPUs",
        )
        streams = self.predict_streams
        require(
            streams == "auto" or streams >= 1,
            "predict_streams",
            f"expected auto or an integer >= 1, got {streams!r}",
        )


@dataclass
class SelfTrainingParams(UDAConfig, TrainingConfig):
    """Self-training rounds (``self_training``): one flat group holding each round's stage
    settings (:class:`TrainingConfig`), its self-training settings (:class:`UDAConfig`) and
    the number of rounds, which shapes the pipeline. A round's stage defaults differ from
    the warmup's (the library's) where conf/base's do: fewer steps, a shorter lr warmup and
    the strong augmentation on."""

    iterations: int = 600
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(warmup_iters=20))
    augment: AugmentConfig = field(
        default_factory=lambda: AugmentConfig(color_jitter=True, blur=True)
    )
    rounds: int = 2

    def validate(self) -> None:
        TrainingConfig.validate(self)
        UDAConfig.validate(self)
        require(self.iterations >= 1, "iterations", f"expected >= 1, got {self.iterations}")
        require(
            self.rounds >= 0,
            "rounds",
            f"expected >= 0 (0: source-only, no self-training), got {self.rounds}",
        )


@dataclass
class EvaluationParams(Config):
    """Target-val evaluation (``evaluation``)."""

    predictions: list[Literal["fused", "context", "detail"]] = field(
        default_factory=lambda: ["fused", "context", "detail"]
    )
    class_subsets: dict[str, list[int] | None] = field(default_factory=lambda: {"all": None})
    small_classes: list[int] = field(default_factory=lambda: [5, 6, 7, 11, 12])
    max_images: int | None = None
    progress_bar: bool = True
    qualitative_images: int = setting(3, ge=1)

    def validate(self) -> None:
        require("fused" in self.predictions, "predictions", "must include 'fused'")
        require(bool(self.class_subsets), "class_subsets", "needs at least one subset")
        require(
            self.max_images is None or self.max_images >= 1,
            "max_images",
            f"expected null (all images) or >= 1, got {self.max_images}",
        )
        for name, subset in self.class_subsets.items():
            _check_train_ids(subset, f"class_subsets.{name}")


def _check_train_ids(classes: list[int] | None, key: str) -> None:
    require(all(0 <= c < 255 for c in classes or []), key, f"trainIds expected, got {classes}")


@dataclass
class PredictParams(Config):
    """Segmenting a folder of own images (``predict``)."""

    input_dir: str = "data/01_raw/predict_inputs"
    checkpoint: str | None = None  # None: the model dataset the pipeline reads
    attention: bool = False
    overlay_alpha: float = setting(0.5, ge=0, le=1)
    skip_bad_files: bool = False
    window_batch: int | None = None
    window_weights: Literal["uniform", "tapered"] | None = None

    def validate(self) -> None:
        require(
            self.window_batch is None or self.window_batch >= 1,
            "window_batch",
            f"expected null or >= 1, got {self.window_batch}",
        )


# Parameter group of parameters*.yml -> the dataclass that validates it. ``ablations`` is
# validated by the ablation pipeline (its variants merged); a run validates the groups its
# nodes read (hooks.validate_run_parameters, with the data groups of parameter_groups()).
PARAMETER_GROUPS: dict[str, type] = {
    "runtime": RuntimeParams,
    "model": ModelConfig,
    "warmup": TrainingConfig,
    "self_training": SelfTrainingParams,
    "evaluation": EvaluationParams,
    "predict": PredictParams,
}


def parameter_groups() -> dict[str, type]:
    """Every group a run validates at its start -> its class: :data:`PARAMETER_GROUPS` and
    the ingestion groups, validated by the data layer's own classes."""
    # Imported here: the data layer pulls in numpy and cityscapesscripts.
    from hrda_kedro.data.ingest import IngestionDatasets, IngestionSettings

    return {
        **PARAMETER_GROUPS,
        "ingestion": IngestionSettings,
        "ingestion_datasets": IngestionDatasets,
    }


@dataclass
class AblationOverrides:
    """Partial parameter groups, deep-merged onto the run's ``model``, ``warmup``..."""

    model: dict[str, Any] = field(default_factory=dict)
    warmup: dict[str, Any] = field(default_factory=dict)
    self_training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)


@dataclass
class AblationVariant(AblationOverrides):
    """One ablation variant: its overrides, and whether it self-trains after the warmup."""

    adapt: bool = True


@dataclass
class AblationParams(Config):
    """The ablation study (``ablations``): variants x seeds, each trained and evaluated."""

    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    work_dir: str = "data/06_models/ablations/in_progress"
    small_classes: list[int] = field(default_factory=lambda: [5, 6, 7, 11, 12])
    class_subset: list[int] | None = None
    shared: AblationOverrides = field(default_factory=AblationOverrides)
    # A variant set to null is left out: environments merge into base key by key, so null
    # is how conf/local or an environment runs a subset of the variants.
    variants: dict[str, AblationVariant | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.variants = {name: spec for name, spec in self.variants.items() if spec is not None}
        super().__post_init__()

    def validate(self) -> None:
        require(bool(self.seeds), "seeds", "expected at least one seed")
        require(
            len(set(self.seeds)) == len(self.seeds),
            "seeds",
            f"expected distinct seeds, got {self.seeds}",
        )
        outside = [s for s in self.seeds if not 0 <= s < SEED_LIMIT]
        require(not outside, "seeds", f"expected seeds 0 <= seed < {SEED_LIMIT}, got {outside}")
        require(bool(self.variants), "variants", "expected at least one variant")
        for name in self.variants:
            require(
                name.isidentifier(),
                f"variants.{name}",
                "a variant name must be a Python identifier (letters, digits, _): it names "
                "a namespace and a folder",
            )
        _check_train_ids(self.small_classes, "small_classes")
        _check_train_ids(self.class_subset, "class_subset")


# --------------------------------------------------------------------------- whole runs

# Every top-level group a parameters*.yml (or --params) may hold; anything else is a typo.
TOP_LEVEL_GROUPS: tuple[str, ...] = (
    "runtime",
    "model",
    "warmup",
    "self_training",
    "evaluation",
    "predict",
    "ingestion",
    "ingestion_datasets",
    "ablations",
)


def check_group_names(parameters: Mapping[str, Any]) -> None:
    """Refuse a top-level group nobody reads (``warmpu:``): it would vanish silently."""
    for key in parameters:
        if key not in TOP_LEVEL_GROUPS:
            raise ParameterError(
                f"parameter {key}: unknown parameter group{_did_you_mean(key, TOP_LEVEL_GROUPS)}"
                f", set in conf/*/parameters*.yml or --params; known groups: "
                f"{', '.join(TOP_LEVEL_GROUPS)}"
            )


def check_graph_settings(parameters: Mapping[str, Any]) -> None:
    """Settings that shape the pipelines, whichever groups a run reads: the registry reads
    them leniently to build the graph, so a bad value would give another graph silently
    (``self_training.rounds: -1`` ran a source-only ``uda``)."""
    self_training = parameters.get("self_training")
    if isinstance(self_training, Mapping) and "rounds" in self_training:
        rounds = self_training["rounds"]
        _require(
            isinstance(rounds, int) and not isinstance(rounds, bool) and rounds >= 0,
            "self_training.rounds",
            f"expected an integer >= 0 (0: source-only), got {rounds!r}",
        )


def check_run(parameters: Mapping[str, Any], groups: typing.Collection[str]) -> None:
    """Checks across groups, for the ``groups`` a run uses (each already valid on its own).

    What can be known before the first step is checked before it: class ids against the
    class count and the class table, crops and margins against the embedded benchmark's
    image size (folders of images are checked against their manifests before training).
    """
    # Imported here: the data layer pulls in numpy and cityscapesscripts.
    from hrda_kedro.data.ingest import (
        SPLITS,
        IngestionDatasets,
        IngestionSettings,
        embedded_size_problem,
    )
    from hrda_kedro.data.labels import CITYSCAPES_CLASSES

    def has(*names: str) -> bool:
        return all(n in groups and n in parameters for n in names)

    model = parse(ModelConfig, parameters["model"], "model") if has("model") else None
    if model is not None:
        check_pretrained(model.network.pretrained, model.network.encoder, "model.network")
        if has("self_training"):
            distance = parse(SelfTrainingParams, parameters["self_training"], "self_training")
            if distance.feature_distance.enabled:
                check_pretrained(
                    distance.feature_distance.pretrained,
                    model.network.encoder,
                    "self_training.feature_distance",
                )
        classes = model.network.num_classes
        _require(
            classes <= len(CITYSCAPES_CLASSES),
            "model.network.num_classes",
            f"expected at most {len(CITYSCAPES_CLASSES)} (the Cityscapes class table that "
            f"labels, reports and predictions use), got {classes}",
        )
    datasets = None
    if has("ingestion_datasets"):
        datasets = parse(IngestionDatasets, parameters["ingestion_datasets"], "ingestion_datasets")
    if model is not None and datasets is not None:
        for split in SPLITS:
            spec = getattr(datasets, split)
            if spec is None or not spec.labels:  # gta_dg has no target_train
                continue
            mapping = spec.mapping()
            top = max(
                (t for t in (int(mapping.lut[i]) for i in mapping.known_ids) if t < 255), default=0
            )
            _require(
                top < classes,
                "model.network.num_classes",
                f"the {spec.kind} labels of ingestion_datasets.{split} hold trainIds up to "
                f"{top}, so expected at least {top + 1} classes, got {classes}",
            )
    if model is not None and has("evaluation"):
        evaluation = parse(EvaluationParams, parameters["evaluation"], "evaluation")
        subsets = {f"class_subsets.{k}": v or [] for k, v in evaluation.class_subsets.items()}
        for key, ids in {"small_classes": evaluation.small_classes, **subsets}.items():
            bad = [c for c in ids if not 0 <= c < classes]
            _require(
                not bad,
                f"evaluation.{key}",
                f"class ids {bad} are outside 0..{classes - 1} (model.network.num_classes = "
                f"{classes}); expected trainIds of the model's classes",
            )
    if datasets is not None and datasets.target_train is None and has("self_training"):
        rounds = parse(SelfTrainingParams, parameters["self_training"], "self_training").rounds
        _require(
            rounds == 0,
            "ingestion_datasets.target_train",
            f"self-training ({rounds} round(s)) needs target images, got null; set a target "
            "data set, or self_training.rounds: 0 for source-only training (as gta_dg)",
        )
    if datasets is None or not has("ingestion"):
        return
    embedded = parse(IngestionSettings, parameters["ingestion"], "ingestion").embedded
    specs = {split: getattr(datasets, split) for split in SPLITS} | datasets.extra_targets
    problem = embedded_size_problem(embedded, specs)
    if problem is not None:
        raise ParameterError(problem)
    for split in ("source_train", "target_train"):
        spec = getattr(datasets, split)
        if spec is None or spec.kind != "embedded":
            continue  # a folder's image sizes are known only to its manifest
        size = (embedded.height, embedded.width)
        if spec.resize is not None:
            size = spec.resize.load_size(*size)
        where = f" of ingestion_datasets.{split} (ingestion.embedded height, width)"
        if model is not None:
            check_crop_fits(model.hrda.context_crop, {split: size}, "model.hrda.context_crop")
        if split == "target_train" and has("self_training"):
            training = parse(SelfTrainingParams, parameters["self_training"], "self_training")
            if training.pseudo_labels.margins_reference_size is None:
                check_margins(
                    training.pseudo_labels.margins, size, "self_training.pseudo_labels", where
                )


def check_crop_fits(
    crop: typing.Sequence[int], sizes: Mapping[str, tuple[int, int]], key: str
) -> None:
    """The context crop ``crop`` (set by ``key``) fits in the images of each split, whose
    load sizes ``sizes`` gives (:func:`embedded_training_sizes`)."""
    for split, (height, width) in sizes.items():
        where = f" of ingestion_datasets.{split} (ingestion.embedded height, width)"
        _require(
            crop[0] <= height and crop[1] <= width,
            key,
            f"the context crop {list(crop)} (HxW) does not fit in the {height}x{width} "
            f"images{where}; expected at most the image size",
        )


def embedded_training_sizes(parameters: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """The load size (HxW) of each training split that reads the embedded benchmark, from
    valid ingestion settings ({} otherwise): a folder's sizes only its manifest knows."""
    from hrda_kedro.data.ingest import IngestionDatasets, IngestionSettings

    try:
        datasets = parse(IngestionDatasets, parameters["ingestion_datasets"], "ingestion_datasets")
        embedded = parse(IngestionSettings, parameters["ingestion"], "ingestion").embedded
    except (KeyError, ParameterError):
        return {}
    sizes = {}
    for split in ("source_train", "target_train"):
        spec = getattr(datasets, split)
        if spec is not None and spec.kind == "embedded":
            size = (embedded.height, embedded.width)
            sizes[split] = spec.resize.load_size(*size) if spec.resize is not None else size
    return sizes


def check_pretrained(location: str | None, encoder: str, group: str) -> None:
    """Pretrained weights a run will load must be on this machine: a missing file stopped
    the first training node, after ingestion. Only their presence is checked here, with the
    networks' own lookups; the training node reads them and checks what they hold."""
    if location is None:
        return
    from hrda_kedro.hrda.networks.weights import (
        WeightsError,
        local_weights_file,
        resolve_weights,
    )

    try:
        if encoder.startswith("resnet"):  # DeepLabV2 reads a local state-dict file only
            local_weights_file(location, "ResNet-101")
        else:
            resolve_weights(location)
    except WeightsError as err:
        raise ParameterError(f"parameter {group}.pretrained: {err}") from None


def _absolute(path: str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(path)))


def check_work_folder(path: str, key: str) -> None:
    """The in-training checkpoints' folder must be one the run can create and write: it is
    first written after ``checkpoint_every`` iterations, or at the end of a shorter stage."""
    folder = _absolute(path)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    _require(
        existing.is_dir(),
        key,
        f"{existing} is a file; expected a folder for the in-training checkpoints (or a path "
        "where one can be created)",
    )
    _require(
        os.access(existing, os.W_OK | os.X_OK),
        key,
        f"{existing} is not writable by this user; expected a folder the run can write its "
        "in-training checkpoints to",
    )


def check_input_folder(predict: Mapping[str, Any], folder: str) -> None:
    """``predict.input_dir`` must be the folder the catalog's images dataset reads: the
    catalog sees the command line and globals, not ``conf/*/parameters*.yml``."""
    inputs = _absolute(parse(PredictParams, predict, "predict").input_dir)
    _require(
        inputs == _absolute(folder),
        "predict.input_dir",
        f"{inputs} is not the folder the catalog's predict_images reads ({_absolute(folder)}); "
        'expected it set on the command line (--params "predict.input_dir=...") or as '
        "predict_input_dir in conf/<env>/globals.yml: the catalog does not read "
        "conf/*/parameters*.yml",
    )


def check_outside_outputs(predict: Mapping[str, Any], replaced: typing.Iterable[str]) -> None:
    """``predict.input_dir`` must not lie in a folder the run empties before writing to it."""
    inputs = _absolute(parse(PredictParams, predict, "predict").input_dir)
    for folder in replaced:
        out = _absolute(folder)
        _require(
            not (inputs == out or inputs.is_relative_to(out) or out.is_relative_to(inputs)),
            "predict.input_dir",
            f"{inputs} overlaps the output folder {out}, which each predict run empties; "
            "expected a folder outside the outputs (e.g. data/01_raw/predict_inputs)",
        )
