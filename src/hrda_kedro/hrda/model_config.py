"""The HRDA model's settings: network, multi-resolution crops and test inference.

One schema per setting: the project's YAML parser builds these classes directly
(``model.network``, ``model.hrda``, ``model.inference``; their ``Literal`` types list the
choices in the parser's messages) and each checks its own ranges on construction;
:class:`ModelConfig` adds the rules that tie the groups together (crops aligned to the
network's output stride, inputs the encoder can take). Defaults are those of
``conf/base/parameters_model.yml`` (a CPU-sized network and crops); the paper's are set by
the recipe environments (``conf/gta2cs``...).

Kept outside :mod:`hrda_kedro.hrda.networks`, whose modules import torchvision and
transformers: parsing parameters (every ``kedro`` command) must stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple, get_args

from hrda_kedro.hrda.config import Config, require, require_positive_pair, setting

Architecture = Literal["daformer", "deeplabv2"]
Encoder = Literal[
    "mit-nano",
    "mit-b0",
    "mit-b1",
    "mit-b2",
    "mit-b3",
    "mit-b4",
    "mit-b5",
    "resnet101-v1c",
    "resnet101",
]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
ENCODERS: tuple[str, ...] = get_args(Encoder)
# resnet101: torchvision's 7x7 stem; resnet101-v1c: the official mmseg ResNetV1c deep stem.
RESNET_ENCODERS = ("resnet101", "resnet101-v1c")


def _choices(options: tuple[str, ...]) -> str:
    return " | ".join(repr(o) for o in options)


@dataclass(frozen=True)
class NetworkConfig(Config):
    """What :func:`hrda_kedro.hrda.networks.build_network` builds.

    ``decoder_embed_dim``, ``attention_embed_dim`` and ``dropout`` configure the DAFormer
    heads; DeepLabV2's heads are single dilated-conv classifiers and ignore them.
    ``pretrained`` is a local file or folder (or a Hugging Face repo id already in the local
    cache) with ImageNet weights for the encoder; nothing is ever downloaded.
    """

    architecture: Architecture = "daformer"
    encoder: Encoder = "mit-nano"
    num_classes: int = 19
    decoder_embed_dim: int = setting(64, ge=1)
    attention_embed_dim: int = setting(64, ge=1)
    attention_classwise: bool = True
    dropout: float = 0.1
    pretrained: str | None = None

    def validate(self) -> None:
        # Types are checked here too: a library user builds this class without the parser,
        # and bool is an int subclass (True as a channel count is a configuration mistake).
        require(
            self.architecture in ARCHITECTURES,
            "architecture",
            f"expected one of {_choices(ARCHITECTURES)}, got {self.architecture!r}",
        )
        require(
            self.encoder in ENCODERS,
            "encoder",
            f"expected one of {_choices(ENCODERS)}, got {self.encoder!r}",
        )
        if self.architecture == "daformer":
            require(
                self.encoder.startswith("mit"),
                "encoder",
                f"daformer needs a mit-* encoder, got {self.encoder!r}",
            )
        else:
            require(
                self.encoder in RESNET_ENCODERS,
                "encoder",
                f"deeplabv2 needs resnet101 or resnet101-v1c, got {self.encoder!r}",
            )
        for name in ("num_classes", "decoder_embed_dim", "attention_embed_dim"):
            value = getattr(self, name)
            require(
                isinstance(value, int) and not isinstance(value, bool),
                name,
                f"expected an integer, got {value!r}",
            )
        require(
            2 <= self.num_classes <= 255, "num_classes", f"expected 2..255, got {self.num_classes}"
        )
        require(
            isinstance(self.attention_classwise, bool),
            "attention_classwise",
            f"expected true/false, got {self.attention_classwise!r}",
        )
        require(
            isinstance(self.dropout, int | float)
            and not isinstance(self.dropout, bool)
            and 0.0 <= self.dropout < 1.0,
            "dropout",
            f"expected 0 <= dropout < 1, got {self.dropout!r}",
        )
        require(
            self.pretrained is None
            or (isinstance(self.pretrained, str) and bool(self.pretrained.strip())),
            "pretrained",
            f"expected null or a non-empty local path, got {self.pretrained!r}",
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
class HRDAConfig(Config):
    """Multi-resolution crops and fusion (``model.hrda``). Crop sizes are HR pixels."""

    scale: int = setting(2, ge=1)
    context_crop: tuple[int, int] = (256, 256)
    detail_crop: tuple[int, int] = (128, 128)
    mode: Literal["hrda", "lr_only", "hr_only", "fixed_attention"] = "hrda"
    fixed_attention: float = setting(0.5, ge=0, le=1)
    hr_loss_weight: float = setting(0.1, ge=0, le=1)
    hr_slide_overlapping: bool = True

    def validate(self) -> None:
        require_positive_pair(self.context_crop, "context_crop")
        require_positive_pair(self.detail_crop, "detail_crop")


@dataclass
class InferenceConfig(Config):
    """Sliding-window test inference (``model.inference``); windows are HR pixels."""

    window: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    window_batch: int = setting(4, ge=1)
    hr_window_batch: int | None = setting(None, ge=1)
    window_weights: Literal["uniform", "tapered"] = "uniform"

    def validate(self) -> None:
        for name in ("window", "stride"):
            value = getattr(self, name)
            if value is not None:
                require_positive_pair(value, name)


class SlidingWindows(NamedTuple):
    """How a full-image prediction cuts its photo: one value for the four predictors
    of :mod:`hrda_kedro.hrda.inference`.

    ``window_hw`` (the HR context size) and ``stride_hw`` must be multiples of ``s * o``;
    ``batch_size`` windows (across windows and images) go per network call, all at once
    when None; overlapping windows are averaged plainly (``uniform``, the official rule) or
    with ``tapered`` weights (:func:`~hrda_kedro.hrda.windows.window_weight_map`).
    """

    window_hw: tuple[int, int]
    stride_hw: tuple[int, int]
    batch_size: int | None = None
    weights: Literal["uniform", "tapered"] = "uniform"


@dataclass
class ModelConfig(Config):
    """The whole model (``model``): each part checks itself, this class their fit."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    hrda: HRDAConfig = field(default_factory=HRDAConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def validate(self) -> None:
        h = self.hrda
        align = h.scale * self.network.output_stride
        for name, size in (("context_crop", h.context_crop), ("detail_crop", h.detail_crop)):
            require(
                size[0] % align == 0 and size[1] % align == 0,
                f"hrda.{name}",
                f"expected multiples of scale x output stride = {align}, got {list(size)}",
            )
        require(
            h.detail_crop[0] <= h.context_crop[0] and h.detail_crop[1] <= h.context_crop[1],
            "hrda.detail_crop",
            f"the detail crop {list(h.detail_crop)} must fit inside the context crop "
            f"{list(h.context_crop)}",
        )
        self._check_encoder_inputs()
        window = self.window
        require(
            window[0] >= h.detail_crop[0] and window[1] >= h.detail_crop[1],
            "inference.window",
            f"the inference window {list(window)} must hold the detail crop "
            f"{list(h.detail_crop)} (expected at least that size)",
        )
        self._check_sliding_windows(align)

    def _check_sliding_windows(self, align: int) -> None:
        """What full-image inference requires of its windows (:mod:`hrda_kedro.hrda.inference`),
        checked when the run starts rather than at the first evaluation, after training."""
        window, stride = self.window, self.stride
        defaults = {
            "window": "" if self.inference.window else " (the default: the context crop)",
            "stride": "" if self.inference.stride else " (the default: half the window)",
        }
        for name, size in (("window", window), ("stride", stride)):
            require(
                size[0] % align == 0 and size[1] % align == 0,
                f"inference.{name}",
                f"expected multiples of scale x output stride = {align}, got {list(size)}"
                f"{defaults[name]}",
            )
        require(
            stride[0] <= window[0] and stride[1] <= window[1],
            "inference.stride",
            f"the stride {list(stride)} must not exceed the window {list(window)}: pixels "
            "between windows would never be predicted",
        )

    def _check_encoder_inputs(self) -> None:
        """The network sees the context (and each inference window) at 1/scale and the
        detail crop at full resolution; below the encoder's minimum it fails inside torch."""
        h = self.hrda
        least = self.network.min_input_size
        for key, size, factor in (
            ("hrda.context_crop", h.context_crop, h.scale),
            ("hrda.detail_crop", h.detail_crop, 1),
            ("inference.window", self.window, h.scale),
        ):
            require(
                min(size) // factor >= least,
                key,
                f"the encoder {self.network.encoder!r} needs inputs of at least {least} pixels "
                f"a side; {list(size)}{f' / scale {factor}' if factor > 1 else ''} is smaller "
                f"(expected at least {least * factor} a side)",
            )

    @property
    def window(self) -> tuple[int, int]:
        return self.inference.window or self.hrda.context_crop

    @property
    def stride(self) -> tuple[int, int]:
        w = self.window
        return self.inference.stride or (max(w[0] // 2, 1), max(w[1] // 2, 1))

    def sliding_windows(
        self,
        batch_size: int | None = None,
        weights: Literal["uniform", "tapered"] | None = None,
    ) -> SlidingWindows:
        """The test windows of ``model.inference``; ``batch_size`` and ``weights`` override
        its ``window_batch`` and ``window_weights`` where given (``predict``'s own keys)."""
        return SlidingWindows(
            self.window,
            self.stride,
            self.inference.window_batch if batch_size is None else batch_size,
            self.inference.window_weights if weights is None else weights,
        )
