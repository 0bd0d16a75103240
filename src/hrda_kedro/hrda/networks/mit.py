"""Mix Transformer (MiT) encoder of SegFormer, built on ``transformers``' SegformerModel.

Two weight layouts load into it, both from local paths only:

* the SegFormer authors' ImageNet release ``mit_bX.pth`` (``patch_embed1.proj``,
  ``block1.0.attn.q``, ``block1.0.attn.kv``, ``norm1``, ... with a classifier ``head``);
* the Hugging Face layout of ``nvidia/mit-bX`` (``segformer.encoder.block.0.0.attention.
  self.query``, ...), as a folder, a cache folder or a cached repo id.

Both are first brought to the Hugging Face file layout (what ``save_pretrained`` writes),
then renamed to the installed transformers' module names, which changed in transformers 5
(``stages.0.blocks.0.attention.q_proj``, ...).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .weights import WeightsError, load_checked, read_state_dict, resolve_weights

if TYPE_CHECKING:
    from transformers import SegformerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiTSpec:
    """Hyper-parameters of one MiT variant (per stage)."""

    hidden_sizes: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_attention_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    drop_path_rate: float = 0.1


# Official SegFormer variants; "mit-nano" is ours, small enough for a laptop CPU.
MIT_SPECS: dict[str, MiTSpec] = {
    "mit-b0": MiTSpec((32, 64, 160, 256), (2, 2, 2, 2)),
    "mit-b1": MiTSpec((64, 128, 320, 512), (2, 2, 2, 2)),
    "mit-b2": MiTSpec((64, 128, 320, 512), (3, 4, 6, 3)),
    "mit-b3": MiTSpec((64, 128, 320, 512), (3, 4, 18, 3)),
    "mit-b4": MiTSpec((64, 128, 320, 512), (3, 8, 27, 3)),
    "mit-b5": MiTSpec((64, 128, 320, 512), (3, 6, 40, 3)),
    "mit-nano": MiTSpec((16, 32, 64, 128), (1, 1, 1, 1), num_attention_heads=(1, 1, 2, 4)),
}

# The SegFormer release's names inside one transformer block -> Hugging Face file names.
_ORIGINAL_BLOCK_NAMES = (
    ("norm1.", "layer_norm_1."),
    ("norm2.", "layer_norm_2."),
    ("attn.q.", "attention.self.query."),
    ("attn.proj.", "attention.output.dense."),
    ("attn.sr.", "attention.self.sr."),
    ("attn.norm.", "attention.self.layer_norm."),
    ("mlp.fc1.", "mlp.dense1."),
    ("mlp.fc2.", "mlp.dense2."),
    ("mlp.dwconv.", "mlp.dwconv."),
)
# Hugging Face file names inside one block -> transformers >= 5 module names.
_STAGED_BLOCK_NAMES = (
    ("layer_norm_1.", "layernorm_before."),
    ("layer_norm_2.", "layernorm_after."),
    ("attention.self.query.", "attention.q_proj."),
    ("attention.self.key.", "attention.k_proj."),
    ("attention.self.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
    ("attention.self.sr.", "attention.sequence_reduction.sequence_reduction."),
    ("attention.self.layer_norm.", "attention.sequence_reduction.layer_norm."),
    ("mlp.dense1.", "mlp.fc1."),
    ("mlp.dense2.", "mlp.fc2."),
    ("mlp.dwconv.", "mlp.dwconv."),
)
_ORIGINAL_MARKERS = re.compile(r"^(patch_embed\d|block\d|norm\d)\.")
# Heads of the published checkpoints that the encoder does not use.
_HEAD_PREFIXES = ("head.", "classifier.", "decode_head.")


def _rename_prefix(rest: str, table: tuple[tuple[str, str], ...]) -> str | None:
    for old, new in table:
        if rest.startswith(old):
            return new + rest[len(old) :]
    return None


def convert_original_mit_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SegFormer-release ``mit_bX.pth`` keys -> Hugging Face file layout (no prefix).

    The release stacks key and value in one ``attn.kv`` Linear (keys first); the Hugging
    Face layout has separate ``key``/``value`` Linears, so that tensor is split in halves.
    Keys that match no rule are kept unchanged so the loader reports them as unexpected.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if match := re.fullmatch(r"patch_embed(\d)\.(proj|norm)\.(.+)", key):
            stage, layer, rest = int(match[1]) - 1, match[2], match[3]
            layer = "layer_norm" if layer == "norm" else layer
            converted[f"encoder.patch_embeddings.{stage}.{layer}.{rest}"] = tensor
        elif match := re.fullmatch(r"norm(\d)\.(.+)", key):
            converted[f"encoder.layer_norm.{int(match[1]) - 1}.{match[2]}"] = tensor
        elif match := re.fullmatch(r"block(\d)\.(\d+)\.(.+)", key):
            prefix = f"encoder.block.{int(match[1]) - 1}.{match[2]}."
            rest = match[3]
            if rest.startswith("attn.kv."):
                key_part, value_part = tensor.chunk(2, dim=0)
                suffix = rest[len("attn.kv.") :]
                converted[f"{prefix}attention.self.key.{suffix}"] = key_part
                converted[f"{prefix}attention.self.value.{suffix}"] = value_part
            else:
                renamed = _rename_prefix(rest, _ORIGINAL_BLOCK_NAMES)
                converted[prefix + renamed if renamed else key] = tensor
        else:
            converted[key] = tensor
    return converted


def _hf_file_to_staged(key: str) -> str:
    """Hugging Face file key -> transformers >= 5 ``stages.*`` module key."""
    if match := re.fullmatch(r"encoder\.patch_embeddings\.(\d+)\.(.+)", key):
        return f"stages.{match[1]}.patch_embeddings.{match[2]}"
    if match := re.fullmatch(r"encoder\.layer_norm\.(\d+)\.(.+)", key):
        return f"stages.{match[1]}.layer_norm.{match[2]}"
    if match := re.fullmatch(r"encoder\.block\.(\d+)\.(\d+)\.(.+)", key):
        renamed = _rename_prefix(match[3], _STAGED_BLOCK_NAMES)
        if renamed:
            return f"stages.{match[1]}.blocks.{match[2]}.{renamed}"
    return key


# Official MiT: blocks' two LayerNorms and each stage's closing LayerNorm use eps 1e-6; the
# patch-embedding and spatial-reduction LayerNorms keep PyTorch's default 1e-5.
MIT_BLOCK_LAYER_NORM_EPS = 1e-6


def segformer_config(spec: MiTSpec) -> SegformerConfig:
    """transformers configuration of an encoder-only MiT."""
    # Imported here, not with the module: transformers takes seconds to import, and every
    # `kedro` command loads the parameter schema, which reaches this module.
    from transformers import SegformerConfig

    return SegformerConfig(
        hidden_sizes=list(spec.hidden_sizes),
        depths=list(spec.depths),
        num_attention_heads=list(spec.num_attention_heads),
        sr_ratios=list(spec.sr_ratios),
        drop_path_rate=spec.drop_path_rate,
        layer_norm_eps=MIT_BLOCK_LAYER_NORM_EPS,
    )


def set_official_layer_norm_eps(model: nn.Module, eps: float) -> None:
    """Give the block and stage LayerNorms the official eps.

    transformers builds every encoder LayerNorm with the default eps (``layer_norm_eps``
    only reaches its decode head), so the official value is set on the modules: all
    LayerNorms except those of the patch embeddings and of the attention's spatial
    reduction, under both the transformers 4 and 5 module names.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) and not any(
            part in name for part in ("patch_embeddings", "attention")
        ):
            module.eps = eps


class MiTEncoder(nn.Module):
    """MiT returning its four stage outputs ``(B, C_i, H/s_i, W/s_i)`` at strides 4/8/16/32."""

    strides = (4, 8, 16, 32)

    def __init__(self, name: str, pretrained: str | None = None) -> None:
        super().__init__()
        if name not in MIT_SPECS:
            raise ValueError(f"MiT encoder must be one of {tuple(MIT_SPECS)}, got {name!r}")
        self.name = name
        self.spec = MIT_SPECS[name]
        self.channels = self.spec.hidden_sizes
        from transformers import SegformerModel  # lazily, as in segformer_config

        config = segformer_config(self.spec)
        self.model = SegformerModel(config)
        set_official_layer_norm_eps(self.model, config.layer_norm_eps)
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        output = self.model(pixel_values=images, output_hidden_states=True, return_dict=True)
        return list(output.hidden_states)

    def _check_hf_config(self, config_file: Path) -> None:
        """Fail early, with the differing fields, on a ``config.json`` of another variant."""
        stored = json.loads(config_file.read_text())
        differences = [
            f"{field} {stored.get(field)} vs {self.name} {list(getattr(self.spec, field))}"
            for field in ("hidden_sizes", "depths", "num_attention_heads", "sr_ratios")
            if field in stored and list(stored[field]) != list(getattr(self.spec, field))
        ]
        if differences:
            raise WeightsError(
                f"pretrained config {config_file} does not match {self.name}: "
                + "; ".join(differences)
            )

    def load_pretrained(self, location: str) -> None:
        """Load ImageNet weights from a local file/folder in either layout (see module doc)."""
        weights_file, config_file = resolve_weights(location)
        if config_file is not None:
            self._check_hf_config(config_file)
        state = read_state_dict(weights_file)
        if any(_ORIGINAL_MARKERS.match(key) for key in state):
            logger.info("%s uses the SegFormer release layout; converting keys", weights_file)
            state = convert_original_mit_state_dict(state)
        else:
            state = {key.removeprefix("segformer."): value for key, value in state.items()}
        if any(key.startswith("stages.") for key in self.model.state_dict()):
            state = {_hf_file_to_staged(key): value for key, value in state.items()}
        load_checked(self.model, state, weights_file, f"MiT encoder {self.name}", _HEAD_PREFIXES)
