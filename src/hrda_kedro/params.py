"""Typed parameter groups, validated when a run starts.

Every group in ``conf/*/parameters*.yml`` maps onto one dataclass below. ``parse`` builds
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

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
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in mapping:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(
                f"parameter {path}.{key}: unknown key{hint}; known keys: {', '.join(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        if name in mapping:
            kwargs[name] = _convert(mapping[name], hints[name], f"{path}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParameterError(
                f"parameter {path}.{name}: required, expected {_describe(hints[name])}"
            )
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(path)
    return obj


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
        "mit-nano", "mit-b0", "mit-b1", "mit-b2", "mit-b3", "mit-b4", "mit-b5", "resnet101"
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
                self.encoder == "resnet101",
                f"{path}.encoder",
                f"deeplabv2 needs resnet101, got {self.encoder!r}",
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
class OptimizerParams:
    lr: float = 6e-5
    head_lr_mult: float = 10.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_iters: int = 1500
    poly_power: float = 1.0
    grad_clip: float | None = None

    def check(self, path: str) -> None:
        _require(self.lr > 0, f"{path}.lr", f"expected > 0, got {self.lr}")
        _require(
            self.warmup_iters >= 0,
            f"{path}.warmup_iters",
            f"expected >= 0, got {self.warmup_iters}",
        )


@dataclass
class RareClassSamplingParams:
    enabled: bool = True
    temperature: float = 0.01
    min_pixels: int = 3000
    reference_size: tuple[int, int] | None = (1440, 2560)
    """min_pixels is scaled from this (H, W) to the actual image size; null keeps it as is."""

    def check(self, path: str) -> None:
        _require(
            self.temperature > 0, f"{path}.temperature", f"expected > 0, got {self.temperature}"
        )
        _require(
            self.min_pixels >= 1, f"{path}.min_pixels", f"expected >= 1, got {self.min_pixels}"
        )


@dataclass
class PseudoLabelParams:
    source: Literal["online", "offline"] = "online"
    threshold: float = 0.968
    weight: Literal["scalar", "pixel"] = "scalar"
    margins: tuple[int, int, int, int] = (30, 240, 30, 30)
    margins_reference_size: tuple[int, int] | None = (1024, 2048)

    def check(self, path: str) -> None:
        _require(
            0.0 <= self.threshold <= 1.0,
            f"{path}.threshold",
            f"expected 0..1, got {self.threshold}",
        )
        _require(
            min(self.margins) >= 0,
            f"{path}.margins",
            f"expected non-negative pixels, got {list(self.margins)}",
        )


@dataclass
class AugmentParams:
    flip: bool = True
    color_jitter: bool = True
    color_jitter_p: float = 0.8
    color_jitter_strength: float = 0.2
    blur: bool = True
    blur_p: float = 0.5


@dataclass
class FeatureDistanceParams:
    enabled: bool = False
    weight: float = 0.005
    pretrained: str | None = None

    def check(self, path: str) -> None:
        _require(
            not self.enabled or self.pretrained is not None,
            f"{path}.pretrained",
            "the ImageNet feature distance needs a local pretrained encoder path when enabled",
        )


@dataclass
class TrainingParams:
    """One training stage: the source-only warmup or one self-training round."""

    iterations: int = 40000
    source_batch_size: int = 2
    target_batch_size: int = 2
    optimizer: OptimizerParams = field(default_factory=OptimizerParams)
    rare_class_sampling: RareClassSamplingParams = field(default_factory=RareClassSamplingParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    checkpoint_every: int = 1000
    log_every: int = 50
    decode_threads: int = 2
    cache_images: bool = False

    def check(self, path: str) -> None:
        _require(
            self.iterations >= 0, f"{path}.iterations", f"expected >= 0, got {self.iterations}"
        )
        _require(
            self.source_batch_size >= 1,
            f"{path}.source_batch_size",
            f"expected >= 1, got {self.source_batch_size}",
        )
        _require(
            self.target_batch_size >= 1,
            f"{path}.target_batch_size",
            f"expected >= 1, got {self.target_batch_size}",
        )
        _require(
            self.checkpoint_every >= 1,
            f"{path}.checkpoint_every",
            f"expected >= 1, got {self.checkpoint_every}",
        )
        _require(self.log_every >= 1, f"{path}.log_every", f"expected >= 1, got {self.log_every}")
        _require(
            self.decode_threads >= 1,
            f"{path}.decode_threads",
            f"expected >= 1, got {self.decode_threads}",
        )


@dataclass
class SelfTrainingParams(TrainingParams):
    """Self-training rounds (``self_training``)."""

    rounds: int = 1
    ema_alpha: float = 0.999
    classmix: bool = True
    pseudo_labels: PseudoLabelParams = field(default_factory=PseudoLabelParams)
    feature_distance: FeatureDistanceParams = field(default_factory=FeatureDistanceParams)

    def check(self, path: str) -> None:
        super().check(path)
        _require(
            self.iterations >= 1, f"{path}.iterations", f"expected >= 1, got {self.iterations}"
        )
        _require(self.rounds >= 1, f"{path}.rounds", f"expected >= 1, got {self.rounds}")
        _require(
            0.0 <= self.ema_alpha < 1.0,
            f"{path}.ema_alpha",
            f"expected 0 <= alpha < 1, got {self.ema_alpha}",
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
# are validated by the data layer's own classes (hrda_kedro.data.ingest).
PARAMETER_GROUPS: dict[str, type] = {
    "runtime": RuntimeParams,
    "model": ModelParams,
    "warmup": TrainingParams,
    "self_training": SelfTrainingParams,
    "evaluation": EvaluationParams,
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
