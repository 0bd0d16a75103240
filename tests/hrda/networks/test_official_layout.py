"""Encoder details that must equal the official code: MiT's LayerNorm eps, the DeepLabV2
ResNetV1c deep stem and its mmcv ``resnet101_v1c`` weight layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from hrda_kedro.hrda.networks import NetworkConfig, build_network
from hrda_kedro.hrda.networks.deeplabv2 import ResNet101Encoder
from hrda_kedro.hrda.networks.mit import MIT_SPECS, MiTEncoder


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["mit-b5", "mit-nano"])
def test_mit_layer_norm_eps_is_the_official(name: str) -> None:
    # Official mix_transformer.py: norm_layer = LayerNorm(eps=1e-6) for each block's norm1,
    # norm2 and each stage's closing norm; nn.LayerNorm() (eps 1e-5) in the patch
    # embeddings and in the attention's spatial reduction (stages with sr_ratio > 1).
    with torch.device("meta"):
        encoder = MiTEncoder(name)
    spec = MIT_SPECS[name]
    eps = [m.eps for m in encoder.modules() if isinstance(m, nn.LayerNorm)]
    blocks_and_stages = 2 * sum(spec.depths) + 4
    patch_and_reduction = 4 + sum(
        d for d, r in zip(spec.depths, spec.sr_ratios, strict=True) if r > 1
    )
    assert sorted(eps) == [1e-6] * blocks_and_stages + [1e-5] * patch_and_reduction


def test_mit_stage_output_is_normalised_with_eps_1e_6() -> None:
    torch.manual_seed(0)
    encoder = MiTEncoder("mit-nano").eval()
    stage_norms = [
        m for n, m in encoder.named_modules() if isinstance(m, nn.LayerNorm) and n.count(".") == 3
    ]
    assert len(stage_norms) == 4  # model.stages.<i>.layer_norm
    tokens = torch.randn(2, 5, 16) * 1e-3  # tiny variance: eps matters
    torch.testing.assert_close(
        stage_norms[0](tokens),
        nn.functional.layer_norm(
            tokens, (16,), stage_norms[0].weight, stage_norms[0].bias, eps=1e-6
        ),
    )


def mmcv_resnet101_v1c_layout() -> dict[str, tuple[int, ...]]:
    """Key -> shape of mmcv's ResNetV1c (depth 101), written from mmseg's resnet.py rules:
    deep stem ``stem.{0,3,6}`` convs + ``stem.{1,4,7}`` BN, Bottleneck blocks (3, 4, 23, 3)
    with planes 64..512, expansion 4, ``conv1..3``/``bn1..3``, ``downsample.{0,1}`` in the
    first block of each layer, and the ImageNet ``fc``."""
    layout: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.{name}"] = (channels,)
        layout[f"{prefix}.num_batches_tracked"] = ()

    for index, (cin, cout) in zip((0, 3, 6), ((3, 32), (32, 32), (32, 64)), strict=True):
        layout[f"stem.{index}.weight"] = (cout, cin, 3, 3)
        bn(f"stem.{index + 1}", cout)
    inplanes = 64
    for layer, (planes, blocks) in enumerate(
        zip((64, 128, 256, 512), (3, 4, 23, 3), strict=True), 1
    ):
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            layout[f"{prefix}.conv1.weight"] = (planes, inplanes, 1, 1)
            bn(f"{prefix}.bn1", planes)
            layout[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{prefix}.bn2", planes)
            layout[f"{prefix}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{prefix}.bn3", planes * 4)
            if block == 0:
                layout[f"{prefix}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                bn(f"{prefix}.downsample.1", planes * 4)
            inplanes = planes * 4
    layout["fc.weight"] = (1000, 2048)
    layout["fc.bias"] = (1000,)
    return layout


def test_v1c_encoder_has_the_mmcv_key_layout() -> None:
    with torch.device("meta"):
        encoder = ResNet101Encoder(v1c_stem=True)
    ours = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    official = mmcv_resnet101_v1c_layout()
    del official["fc.weight"], official["fc.bias"]
    assert ours == official


def test_v1c_stem_parameter_count() -> None:
    with torch.device("meta"):
        v1c = build_network(NetworkConfig(architecture="deeplabv2", encoder="resnet101-v1c"))
        torchvision = build_network(NetworkConfig(architecture="deeplabv2", encoder="resnet101"))
    v1c_stem = (3 * 32 + 32 * 32 + 32 * 64) * 9 + 2 * (32 + 32 + 64)  # bias-free convs + BN
    torchvision_stem = 3 * 64 * 49 + 2 * 64
    assert count(v1c.encoder.stem) == v1c_stem == 28_768
    assert count(v1c) - count(torchvision) == v1c_stem - torchvision_stem == 19_232
    # heads unchanged: two DeepLabV2 classifiers (dilations 6 and 12) on 2048 channels
    assert count(v1c.decode_head) == count(v1c.attention_head) == 2 * (2048 * 19 * 9 + 19)


@pytest.mark.usefixtures("one_thread")
def test_v1c_stem_is_three_3x3_convs_at_stride_2_then_maxpool() -> None:
    encoder = ResNet101Encoder(v1c_stem=True)
    convs = [m for m in encoder.stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 32), (32, 32), (32, 64)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [
        ((3, 3), (2, 2), (1, 1)),
        ((3, 3), (1, 1), (1, 1)),
        ((3, 3), (1, 1), (1, 1)),
    ]
    assert all(c.bias is None for c in convs)
    assert [type(m) for m in encoder.stem] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 3
    # contracted dilations as in mmseg (contract_dilation=True): first block d/2
    assert [b.conv2.dilation for b in encoder.layer3][:2] == [(1, 1), (2, 2)]
    assert [b.conv2.dilation for b in encoder.layer4][:2] == [(2, 2), (4, 4)]
    with torch.no_grad():
        features = encoder.eval()(torch.randn(1, 3, 32, 48))
    assert [tuple(f.shape[1:]) for f in features] == [
        (256, 8, 12),
        (512, 4, 6),
        (1024, 4, 6),
        (2048, 4, 6),
    ]


def test_mmcv_resnet101_v1c_checkpoint_loads(tmp_path: Path) -> None:
    # A tiny file: each tensor is one distinct value expanded to its shape (stride 0, so
    # torch.save stores one element), enough to see that every key lands where it should.
    state = {
        key: torch.tensor(index if key.endswith("num_batches_tracked") else index / 1000).expand(
            shape
        )
        for index, (key, shape) in enumerate(mmcv_resnet101_v1c_layout().items())
    }
    path = tmp_path / "resnet101_v1c.pth"
    # mmcv's checkpoint format: {"meta": ..., "state_dict": ...}
    torch.save({"meta": {"mmcv_version": "1.3.7"}, "state_dict": state}, path)
    assert path.stat().st_size < 200_000
    network = build_network(
        NetworkConfig(architecture="deeplabv2", encoder="resnet101-v1c", pretrained=str(path))
    )
    loaded = network.encoder.state_dict()
    for key, tensor in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], tensor), key

    # a torchvision ResNet-101 file does not fit the V1c stem: named, not half-loaded
    del state["stem.0.weight"]
    state["conv1.weight"] = torch.zeros(()).expand(64, 3, 7, 7)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"ResNetV1c.*missing keys: 1 \(stem\.0\.weight\)"):
        ResNet101Encoder(str(path), v1c_stem=True)
