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
import types
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from hrda_kedro.hrda.config import ConfigError, require
from hrda_kedro.hrda.training.config import TrainingConfig
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
            raise ParameterError(f"parameter {path}: expected a mapping of {tp.__name__} keys")
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
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(
                f"parameter {path}.{key}: unknown key{hint}; known keys: {', '.join(fields)}"
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
        obj = cls(**kwargs)  # library configs check their ranges in __post_init__
        check = getattr(obj, "check", None)
        if check is not None:
            check(path)
    return obj


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
class RuntimeParams:
    """Where and how to compute (``runtime`` in parameters.yml)."""

    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    devices: int = 1
    seed: int = 1
    work_dir: str = "data/06_models/in_progress"
    progress_bar: bool = True
    matmul_precision: Literal["highest", "high", "medium"] = "high"
    keep_freed_host_memory: bool = True

    def check(self, path: str) -> None:
        ok = self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        _require(ok, f"{path}.device", f"expected auto | cpu | cuda | cuda:N, got {self.device!r}")
        _require(self.devices >= 1, f"{path}.devices", f"expected >= 1, got {self.devices}")


@dataclass
class NetworkParams:
    """The segmentation network (``model.network``)."""

    architecture: Literal["daformer", "deeplabv2"] = "daformer"
    encoder: Literal[
        "mit-nano",
        "mit-b0",
        "mit-b1",
        "mit-b2",
        "mit-b3",
        "mit-b4",
        "mit-b5",
        "resnet101-v1c",
        "resnet101",
    ] = "mit-b5"
    num_classes: int = 19
    decoder_embed_dim: int = 256
    attention_embed_dim: int = 256
    attention_classwise: bool = True
    dropout: float = 0.1
    pretrained: str | None = None

    def check(self, path: str) -> None:
        is_mit = self.encoder.startswith("mit")
        if self.architecture == "daformer":
            _require(
                is_mit, f"{path}.encoder", f"daformer needs a mit-* encoder, got {self.encoder!r}"
            )
        else:
            _require(
                self.encoder in ("resnet101", "resnet101-v1c"),
                f"{path}.encoder",
                f"deeplabv2 needs resnet101 or resnet101-v1c, got {self.encoder!r}",
            )
        _require(
            2 <= self.num_classes <= 255,
            f"{path}.num_classes",
            f"expected 2..255, got {self.num_classes}",
        )
        _require(
            0.0 <= self.dropout < 1.0,
            f"{path}.dropout",
            f"expected 0 <= dropout < 1, got {self.dropout}",
        )

    @property
    def output_stride(self) -> int:
        return 4 if self.architecture == "daformer" else 8

    @property
    def min_input_size(self) -> int:
        """Smallest input side the encoder takes: MiT's first stage (1/4 resolution)
        reduces its attention keys by a stride-8 convolution, so it needs 4 x 8 pixels;
        ResNet-101 needs one pixel per output-stride step."""
        return 32 if self.encoder.startswith("mit") else self.output_stride


@dataclass
class HRDAParams:
    """Multi-resolution crops and fusion (``model.hrda``). Crop sizes are HR pixels."""

    scale: int = 2
    context_crop: tuple[int, int] = (1024, 1024)
    detail_crop: tuple[int, int] = (512, 512)
    mode: Literal["hrda", "lr_only", "hr_only", "fixed_attention"] = "hrda"
    fixed_attention: float = 0.5
    hr_loss_weight: float = 0.1


@dataclass
class InferenceParams:
    """Sliding-window test inference (``model.inference``); windows are HR pixels."""

    window: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    window_batch: int = 4
    hr_window_batch: int | None = None
    window_weights: Literal["uniform", "tapered"] = "uniform"


@dataclass
class ModelParams:
    network: NetworkParams = field(default_factory=NetworkParams)
    hrda: HRDAParams = field(default_factory=HRDAParams)
    inference: InferenceParams = field(default_factory=InferenceParams)

    def check(self, path: str) -> None:
        h = self.hrda
        align = h.scale * self.network.output_stride
        _require(h.scale >= 1, f"{path}.hrda.scale", f"expected >= 1, got {h.scale}")
        _positive_pair(h.context_crop, f"{path}.hrda.context_crop")
        _positive_pair(h.detail_crop, f"{path}.hrda.detail_crop")
        for name, size in (("context_crop", h.context_crop), ("detail_crop", h.detail_crop)):
            _require(
                size[0] % align == 0 and size[1] % align == 0,
                f"{path}.hrda.{name}",
                f"expected multiples of scale x output stride = {align}, got {list(size)}",
            )
        _require(
            h.detail_crop[0] <= h.context_crop[0] and h.detail_crop[1] <= h.context_crop[1],
            f"{path}.hrda.detail_crop",
            f"the detail crop {list(h.detail_crop)} must fit inside the context crop {list(h.context_crop)}",
        )
        _require(
            0.0 <= h.fixed_attention <= 1.0,
            f"{path}.hrda.fixed_attention",
            f"expected 0..1, got {h.fixed_attention}",
        )
        _require(
            0.0 <= h.hr_loss_weight <= 1.0,
            f"{path}.hrda.hr_loss_weight",
            f"expected 0..1, got {h.hr_loss_weight}",
        )
        inf = self.inference
        for name in ("window", "stride"):
            value = getattr(inf, name)
            if value is not None:
                _positive_pair(value, f"{path}.inference.{name}")
        # The network sees the context (and each inference window) at 1/scale and the detail
        # crop at full resolution; below the encoder's minimum it fails inside torch.
        least = self.network.min_input_size
        window = inf.window or h.context_crop
        for key, size, factor in (
            ("hrda.context_crop", h.context_crop, h.scale),
            ("hrda.detail_crop", h.detail_crop, 1),
            ("inference.window", window, h.scale),
        ):
            _require(
                min(size) // factor >= least,
                f"{path}.{key}",
                f"the encoder {self.network.encoder!r} needs inputs of at least {least} pixels "
                f"a side; {list(size)}{f' / scale {factor}' if factor > 1 else ''} is smaller "
                f"(expected at least {least * factor} a side)",
            )
        _require(
            window[0] >= h.detail_crop[0] and window[1] >= h.detail_crop[1],
            f"{path}.inference.window",
            f"the inference window {list(window)} must hold the detail crop "
            f"{list(h.detail_crop)} (expected at least that size)",
        )
        _require(
            inf.window_batch >= 1,
            f"{path}.inference.window_batch",
            f"expected >= 1, got {inf.window_batch}",
        )

    @property
    def window(self) -> tuple[int, int]:
        return self.inference.window or self.hrda.context_crop

    @property
    def stride(self) -> tuple[int, int]:
        w = self.window
        return self.inference.stride or (max(w[0] // 2, 1), max(w[1] // 2, 1))


@dataclass
class SelfTrainingParams(UDAConfig, TrainingConfig):
    """Self-training rounds (``self_training``): one flat group holding each round's stage
    settings (:class:`TrainingConfig`), its self-training settings (:class:`UDAConfig`) and
    the number of rounds, which shapes the pipeline."""

    rounds: int = 1

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
class EvaluationParams:
    """Target-val evaluation (``evaluation``)."""

    predictions: list[Literal["fused", "context", "detail"]] = field(
        default_factory=lambda: ["fused", "context", "detail"]
    )
    class_subsets: dict[str, list[int] | None] = field(default_factory=lambda: {"all": None})
    small_classes: list[int] = field(default_factory=lambda: [5, 6, 7, 11, 12])
    max_images: int | None = None
    progress_bar: bool = True
    qualitative_images: int = 3

    def check(self, path: str) -> None:
        _require("fused" in self.predictions, f"{path}.predictions", "must include 'fused'")
        _require(
            self.qualitative_images >= 1,
            f"{path}.qualitative_images",
            f"expected at least 1, got {self.qualitative_images}",
        )
        _require(bool(self.class_subsets), f"{path}.class_subsets", "needs at least one subset")
        _require(
            self.max_images is None or self.max_images >= 1,
            f"{path}.max_images",
            f"expected null (all images) or >= 1, got {self.max_images}",
        )
        for name, subset in self.class_subsets.items():
            if subset is not None:
                _require(
                    all(0 <= c < 255 for c in subset),
                    f"{path}.class_subsets.{name}",
                    f"trainIds expected, got {subset}",
                )


@dataclass
class PredictParams:
    """Segmenting a folder of own images (``predict``)."""

    input_dir: str = "data/01_raw/predict_inputs"
    checkpoint: str | None = None  # None: the model dataset the pipeline reads
    attention: bool = False
    overlay_alpha: float = 0.5
    skip_bad_files: bool = False
    window_batch: int | None = None
    window_weights: Literal["uniform", "tapered"] | None = None

    def check(self, path: str) -> None:
        _require(
            0.0 <= self.overlay_alpha <= 1.0,
            f"{path}.overlay_alpha",
            f"expected 0..1, got {self.overlay_alpha}",
        )
        _require(
            self.window_batch is None or self.window_batch >= 1,
            f"{path}.window_batch",
            f"expected null or >= 1, got {self.window_batch}",
        )


# Parameter group of parameters*.yml -> the dataclass that validates it. The ingestion groups
# are validated by the data layer's own classes (hrda_kedro.data.ingest), ``ablations`` by
# the ablation pipeline (its variants merged); a run validates the groups its nodes read.
PARAMETER_GROUPS: dict[str, type] = {
    "runtime": RuntimeParams,
    "model": ModelParams,
    "warmup": TrainingConfig,
    "self_training": SelfTrainingParams,
    "evaluation": EvaluationParams,
    "predict": PredictParams,
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
class AblationParams:
    """The ablation study (``ablations``): variants x seeds, each trained and evaluated."""

    seeds: list[int] = field(default_factory=lambda: [1, 2])
    work_dir: str = "data/06_models/ablations"
    small_classes: list[int] = field(default_factory=lambda: [5, 6, 7, 11])
    class_subset: list[int] | None = None
    shared: AblationOverrides = field(default_factory=AblationOverrides)
    variants: dict[str, AblationVariant] = field(default_factory=dict)

    def check(self, path: str) -> None:
        _require(bool(self.seeds), f"{path}.seeds", "expected at least one seed")
        _require(
            len(set(self.seeds)) == len(self.seeds),
            f"{path}.seeds",
            f"expected distinct seeds, got {self.seeds}",
        )
        _require(bool(self.variants), f"{path}.variants", "expected at least one variant")
        for name in self.variants:
            _require(
                name.isidentifier(),
                f"{path}.variants.{name}",
                "a variant name must be a Python identifier (letters, digits, _): it names "
                "a namespace and a folder",
            )
        for key, classes in (
            ("small_classes", self.small_classes),
            ("class_subset", self.class_subset),
        ):
            _require(
                all(0 <= c < 255 for c in classes or []),
                f"{path}.{key}",
                f"trainIds expected, got {classes}",
            )


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
            close = difflib.get_close_matches(str(key), TOP_LEVEL_GROUPS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(
                f"parameter {key}: unknown parameter group{hint}, set in conf/*/parameters*.yml "
                f"or --params; known groups: {', '.join(TOP_LEVEL_GROUPS)}"
            )


def check_run(parameters: Mapping[str, Any], groups: typing.Collection[str]) -> None:
    """Checks across groups, for the ``groups`` a run uses (each already valid on its own).

    What can be known before the first step is checked before it: class ids against the
    class count and the class table, crops and margins against the embedded benchmark's
    image size (folders of images are checked against their manifests before training).
    """
    # Imported here: the data layer pulls in numpy and cityscapesscripts.
    from hrda_kedro.data.ingest import SPLITS, IngestionDatasets, IngestionSettings
    from hrda_kedro.data.labels import CITYSCAPES_CLASSES

    def has(*names: str) -> bool:
        return all(n in groups and n in parameters for n in names)

    model = parse(ModelParams, parameters["model"], "model") if has("model") else None
    if model is not None:
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
    for split in ("source_train", "target_train"):
        spec = getattr(datasets, split)
        if spec is None or spec.kind != "embedded":
            continue  # a folder's image sizes are known only to its manifest
        size = (embedded.height, embedded.width)
        if spec.resize is not None:
            size = spec.resize.load_size(*size)
        where = f" of ingestion_datasets.{split} (ingestion.embedded height, width)"
        if model is not None:
            crop = model.hrda.context_crop
            _require(
                crop[0] <= size[0] and crop[1] <= size[1],
                "model.hrda.context_crop",
                f"the context crop {list(crop)} (HxW) does not fit in the {size[0]}x{size[1]} "
                f"images{where}; expected at most the image size",
            )
        if split == "target_train" and has("self_training"):
            training = parse(SelfTrainingParams, parameters["self_training"], "self_training")
            if training.pseudo_labels.margins_reference_size is None:
                check_margins(
                    training.pseudo_labels.margins, size, "self_training.pseudo_labels", where
                )


def check_outside_outputs(predict: Mapping[str, Any], replaced: typing.Iterable[str]) -> None:
    """``predict.input_dir`` must not lie in a folder the run empties before writing to it."""
    inputs = Path(parse(PredictParams, predict, "predict").input_dir).absolute()
    for folder in replaced:
        out = Path(folder).absolute()
        _require(
            not (inputs == out or inputs.is_relative_to(out) or out.is_relative_to(inputs)),
            "predict.input_dir",
            f"{inputs} overlaps the output folder {out}, which each predict run empties; "
            "expected a folder outside the outputs (e.g. data/01_raw/predict_inputs)",
        )
