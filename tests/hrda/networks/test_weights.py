"""Loading local pretrained weights: both MiT layouts, the HF cache, ResNet-101, mismatches."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import SegformerForImageClassification

from hrda_kedro.hrda.networks import NetworkConfig, build_network
from hrda_kedro.hrda.networks.deeplabv2 import ResNet101Encoder
from hrda_kedro.hrda.networks.mit import (
    MIT_BLOCK_LAYER_NORM_EPS,
    MIT_SPECS,
    MiTEncoder,
    segformer_config,
    set_official_layer_norm_eps,
)
from hrda_kedro.hrda.networks.weights import resolve_weights

# Hugging Face file names inside a block -> names of the SegFormer release (written
# independently of the library's converter so that the test checks it).
_TO_ORIGINAL = {
    "layer_norm_1": "norm1",
    "layer_norm_2": "norm2",
    "attention.self.query": "attn.q",
    "attention.output.dense": "attn.proj",
    "attention.self.sr": "attn.sr",
    "attention.self.layer_norm": "attn.norm",
    "mlp.dense1": "mlp.fc1",
    "mlp.dense2": "mlp.fc2",
    "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
}


def hf_to_original(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of the converter: ``segformer.encoder.*`` -> ``mit_bX.pth`` keys."""
    original: dict[str, torch.Tensor] = {}
    key_value: dict[str, dict[str, torch.Tensor]] = {}
    for full_key, tensor in hf_state.items():
        key = full_key.removeprefix("segformer.encoder.")
        if key.startswith("classifier."):
            original["head." + key.removeprefix("classifier.")] = tensor
        elif m := re.fullmatch(r"patch_embeddings\.(\d)\.(proj|layer_norm)\.(\w+)", key):
            layer = "norm" if m[2] == "layer_norm" else "proj"
            original[f"patch_embed{int(m[1]) + 1}.{layer}.{m[3]}"] = tensor
        elif m := re.fullmatch(r"layer_norm\.(\d)\.(\w+)", key):
            original[f"norm{int(m[1]) + 1}.{m[2]}"] = tensor
        elif m := re.fullmatch(r"block\.(\d)\.(\d+)\.(.+)\.(\w+)", key):
            block = f"block{int(m[1]) + 1}.{m[2]}"
            if m[3] in ("attention.self.key", "attention.self.value"):
                part = m[3].rsplit(".", 1)[1]
                key_value.setdefault(f"{block}.attn.kv.{m[4]}", {})[part] = tensor
            else:
                original[f"{block}.{_TO_ORIGINAL[m[3]]}.{m[4]}"] = tensor
        else:
            raise AssertionError(f"unhandled key {key}")
    for key, parts in key_value.items():
        original[key] = torch.cat([parts["key"], parts["value"]])
    return original


def assert_same_tensors(loaded: nn.Module, source: nn.Module) -> None:
    expected = source.state_dict()
    actual = loaded.state_dict()
    assert actual.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(actual[key], tensor), key


@pytest.fixture(scope="module")
def nano_hf(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    """A random MiT-nano saved with save_pretrained, as ``nvidia/mit-bX`` is published."""
    torch.manual_seed(1)
    model = SegformerForImageClassification(segformer_config(MIT_SPECS["mit-nano"])).eval()
    folder = tmp_path_factory.mktemp("hf")
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def nano_original(
    nano_hf: tuple[nn.Module, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, torch.Tensor]:
    return hf_to_original(load_file(str(nano_hf[1] / "model.safetensors")))


def test_hf_file_uses_the_published_layout(nano_hf: tuple[nn.Module, Path]) -> None:
    keys = load_file(str(nano_hf[1] / "model.safetensors")).keys()
    assert "segformer.encoder.block.0.0.attention.self.query.weight" in keys
    assert "classifier.weight" in keys


@pytest.mark.parametrize("wrapped", [False, True])
def test_original_release_layout_loads(
    nano_hf: tuple[nn.Module, Path],
    nano_original: dict[str, torch.Tensor],
    tmp_path: Path,
    wrapped: bool,
) -> None:
    assert "block1.0.attn.kv.weight" in nano_original
    assert "block4.0.attn.kv.weight" in nano_original
    path = tmp_path / "mit_nano.pth"
    torch.save({"state_dict": nano_original} if wrapped else nano_original, path)
    encoder = MiTEncoder("mit-nano", str(path))
    assert_same_tensors(encoder.model, nano_hf[0].segformer)


def test_original_layout_gives_the_same_features(
    nano_hf: tuple[nn.Module, Path], nano_original: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    torch.save(nano_original, tmp_path / "mit.pth")
    network = build_network(
        NetworkConfig(encoder="mit-nano", decoder_embed_dim=8, pretrained=str(tmp_path / "mit.pth"))
    ).eval()
    images = torch.randn(1, 3, 64, 64)
    reference = copy.deepcopy(nano_hf[0].segformer)
    set_official_layer_norm_eps(reference, MIT_BLOCK_LAYER_NORM_EPS)  # as our encoder
    with torch.no_grad():
        expected = reference(images, output_hidden_states=True).hidden_states
        for actual, reference in zip(network.extract(images), expected, strict=True):
            torch.testing.assert_close(actual, reference)


@pytest.mark.parametrize("file_name", ["model.safetensors", "pytorch_model.bin"])
def test_hf_folder_loads(nano_hf: tuple[nn.Module, Path], tmp_path: Path, file_name: str) -> None:
    state = load_file(str(nano_hf[1] / "model.safetensors"))
    (tmp_path / "config.json").write_bytes((nano_hf[1] / "config.json").read_bytes())
    if file_name == "pytorch_model.bin":
        torch.save(state, tmp_path / file_name)
    else:
        (tmp_path / file_name).write_bytes((nano_hf[1] / file_name).read_bytes())
    encoder = MiTEncoder("mit-nano", str(tmp_path))
    assert_same_tensors(encoder.model, nano_hf[0].segformer)


def fill_hf_cache(cache: Path, source: Path) -> Path:
    """The folder structure huggingface_hub writes for ``nvidia/mit-nano``."""
    repo = cache / "models--nvidia--mit-nano"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((source / name).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    return repo


def test_hf_cache_folder_and_cached_repo_id_load(
    nano_hf: tuple[nn.Module, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = fill_hf_cache(tmp_path, nano_hf[1])
    assert_same_tensors(MiTEncoder("mit-nano", str(repo)).model, nano_hf[0].segformer)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    assert_same_tensors(MiTEncoder("mit-nano", "nvidia/mit-nano").model, nano_hf[0].segformer)
    with pytest.raises(ValueError, match="nvidia/mit-b5.*local Hugging Face cache") as refused:
        MiTEncoder("mit-nano", "nvidia/mit-b5")
    assert str(tmp_path) in str(refused.value)  # where it looked
    assert "local_files_only" not in str(refused.value)  # huggingface_hub's download advice


@pytest.mark.parametrize("location", ["weights/mit_b0.pth", "pretrained/model.safetensors"])
def test_a_missing_weights_file_in_a_folder_is_not_taken_for_a_repo_id(location: str) -> None:
    with pytest.raises(ValueError, match=f"pretrained weights path '{location}' does not exist"):
        resolve_weights(location)


def test_hf_config_of_another_variant_is_rejected(nano_hf: tuple[nn.Module, Path]) -> None:
    with pytest.raises(ValueError, match=r"config\.json does not match mit-b0: hidden_sizes"):
        MiTEncoder("mit-b0", str(nano_hf[1]))


@pytest.mark.parametrize("layout", ["original", "hf-without-config"])
def test_weights_of_another_variant_are_rejected(
    nano_hf: tuple[nn.Module, Path],
    nano_original: dict[str, torch.Tensor],
    tmp_path: Path,
    layout: str,
) -> None:
    if layout == "original":
        path = tmp_path / "mit_nano.pth"
        torch.save(nano_original, path)
    else:
        path = tmp_path / "model.safetensors"
        path.write_bytes((nano_hf[1] / "model.safetensors").read_bytes())
    with pytest.raises(ValueError) as info:
        MiTEncoder("mit-b0", str(path))
    message = str(info.value)
    assert str(path) in message
    assert "does not match MiT encoder mit-b0" in message
    assert "missing keys" in message
    assert "shape mismatches" in message


def test_missing_and_unexpected_keys_are_listed(
    nano_original: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    state = dict(nano_original)
    del state["norm4.weight"]
    state["block1.0.attn.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        MiTEncoder("mit-nano", str(path))
    message = str(info.value)
    assert "missing keys: 1 (" in message
    assert "layer_norm.weight" in message
    assert "unexpected keys: 1 (block1.0.attn.extra.weight)" in message


def test_unreadable_or_absent_files_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        MiTEncoder("mit-nano", str(tmp_path / "nothing.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth does not hold a state dict"):
        MiTEncoder("mit-nano", str(tmp_path / "list.pth"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds none of"):
        MiTEncoder("mit-nano", str(tmp_path / "empty"))


def test_torchvision_resnet101_weights_load(tmp_path: Path) -> None:
    torch.manual_seed(2)
    source = ResNet101Encoder()
    state = source.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet101.pth"
    torch.save(state, path)
    network = build_network(
        NetworkConfig(architecture="deeplabv2", encoder="resnet101", pretrained=str(path))
    )
    assert_same_tensors(network.encoder, source)

    state["layer4.2.conv3.weight"] = torch.zeros(3, 3)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"resnet101\.pth does not match ResNet-101.*layer4"):
        ResNet101Encoder(str(path))
