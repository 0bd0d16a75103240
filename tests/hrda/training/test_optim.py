"""Optimiser parameter groups and the warmup + polynomial schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hrda_kedro.hrda.training.optim import WarmupPoly, build_optimizer, build_scheduler


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(8)
        self.attn = nn.Linear(8, 8)
        self.dwconv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pos_block = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)


class _Network(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleDict({"block": _Block(), "patch_embed": nn.Conv2d(3, 8, 3)})
        self.decode_head = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))
        self.attention_head = nn.Conv2d(8, 1, 1)


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.network = _Network()


def _group_of(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


def test_groups_lr_and_weight_decay() -> None:
    model = _Model()
    optimizer = build_optimizer(model, lr=6e-5, weight_decay=0.01, head_lr_mult=10.0)
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = _group_of(optimizer)
    expected = {
        "network.encoder.block.norm1.weight": (6e-5, 0.0),
        "network.encoder.block.norm1.bias": (6e-5, 0.0),
        "network.encoder.block.attn.weight": (6e-5, 0.01),
        "network.encoder.block.attn.bias": (6e-5, 0.0),
        "network.encoder.block.dwconv.weight": (6e-5, 0.0),
        "network.encoder.block.dwconv.bias": (6e-5, 0.0),
        "network.encoder.block.pos_block.weight": (6e-5, 0.0),
        "network.encoder.patch_embed.weight": (6e-5, 0.01),
        "network.encoder.patch_embed.bias": (6e-5, 0.0),
        "network.decode_head.0.weight": (6e-4, 0.01),
        "network.decode_head.0.bias": (6e-4, 0.0),
        "network.decode_head.1.weight": (6e-4, 0.0),
        "network.decode_head.1.bias": (6e-4, 0.0),
        "network.attention_head.weight": (6e-4, 0.01),
        "network.attention_head.bias": (6e-4, 0.0),
    }
    named = dict(model.named_parameters())
    assert set(named) == set(expected)
    for name, (lr, decay) in expected.items():
        group = groups[id(named[name])]
        assert group["lr"] == pytest.approx(lr), name
        assert group["weight_decay"] == decay, name
    assert {g["name"] for g in optimizer.param_groups} == {
        "encoder",
        "encoder_no_decay",
        "head",
        "head_no_decay",
    }
    assert optimizer.defaults["betas"] == (0.9, 0.999)


def test_the_official_rule_decays_all_but_the_encoders_norms() -> None:
    """The HRDA configs' mmcv custom_keys (head: lr x 10; pos_block, norm: no decay; first
    match wins, ``head`` before ``norm``): biases, depthwise convolutions and the heads'
    BatchNorm decay; the encoder's LayerNorms and positional blocks do not."""
    model = _Model()
    optimizer = build_optimizer(model, lr=6e-5, weight_decay=0.01, no_decay="official")
    groups = _group_of(optimizer)
    named = dict(model.named_parameters())
    undecayed = {name for name, p in named.items() if groups[id(p)]["weight_decay"] == 0.0}
    assert undecayed == {
        "network.encoder.block.norm1.weight",
        "network.encoder.block.norm1.bias",
        "network.encoder.block.pos_block.weight",
    }
    for name in ("network.decode_head.1.weight", "network.decode_head.1.bias"):  # head BN
        assert groups[id(named[name])]["lr"] == pytest.approx(6e-4)
        assert groups[id(named[name])]["weight_decay"] == 0.01


def test_mit_parameter_names_meet_the_official_rule_as_mmsegs_do() -> None:
    """The Hugging Face MiT names every LayerNorm ``...layer_norm...`` (mmseg: ``norm...``):
    the official substring rule exempts exactly the encoder's LayerNorm parameters."""
    from hrda_kedro.hrda.networks import NetworkConfig, build_network

    network = build_network(NetworkConfig(decoder_embed_dim=16, attention_embed_dim=16))
    holder = nn.Module()
    holder.network = network
    optimizer = build_optimizer(holder, no_decay="official")
    groups = _group_of(optimizer)
    modules = network.encoder.named_modules()
    norms = {name for name, module in modules if isinstance(module, nn.LayerNorm)}
    undecayed = {
        name.removeprefix("network.encoder.").rsplit(".", 1)[0]
        for name, p in holder.named_parameters()
        if groups[id(p)]["weight_decay"] == 0.0
    }
    assert norms and undecayed == norms


def test_cpu_parameters_get_the_fused_kernel_with_the_reference_update() -> None:
    model = _Model()
    reference_model = _Model()
    reference_model.load_state_dict(model.state_dict())
    initial = [p.detach().clone() for p in model.parameters()]
    fused = build_optimizer(model, lr=1e-2, weight_decay=0.01)
    assert all(group["fused"] for group in fused.param_groups)
    reference = build_optimizer(reference_model, lr=1e-2, weight_decay=0.01)
    for group in reference.param_groups:  # torch's per-tensor loop
        group["fused"] = None
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for a, b in zip(model.parameters(), reference_model.parameters(), strict=True):
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        fused.step()
        reference.step()
    for a, b, before in zip(model.parameters(), reference_model.parameters(), initial, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert torch.all(a != before)  # the steps moved every value


def test_frozen_parameters_are_left_out_and_prefix_is_checked() -> None:
    model = _Model()
    model.network.attention_head.requires_grad_(False)
    optimizer = build_optimizer(model)
    ids = set(_group_of(optimizer))
    assert id(model.network.attention_head.weight) not in ids
    with pytest.raises(ValueError, match="encoder_prefixes"):
        build_optimizer(model, encoder_prefixes=("backbone",))
    # a prefix must match a whole module path, not a name fragment
    with pytest.raises(ValueError, match="encoder_prefixes"):
        build_optimizer(model, encoder_prefixes=("network.enc",))


def _lrs(warmup: int, max_iters: int, steps: int, ratio: float = 1e-6) -> list[float]:
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    scheduler = build_scheduler(optimizer, warmup, max_iters, power=1.0, warmup_ratio=ratio)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_schedule_values_against_hand_computation() -> None:
    r = 1e-6
    lrs = _lrs(warmup=10, max_iters=100, steps=103, ratio=r)
    assert lrs[0] == pytest.approx(r)
    assert lrs[5] == pytest.approx((1 - 5 / 100) * (r + (1 - r) * 0.5))
    assert lrs[10] == pytest.approx(1 - 10 / 100)
    assert lrs[55] == pytest.approx(1 - 55 / 100)
    assert lrs[99] == pytest.approx(1 / 100)
    assert lrs[100] == 0.0
    assert lrs[102] == 0.0
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=True))  # rising warmup
    assert all(a > b for a, b in zip(lrs[10:100], lrs[11:101], strict=True))  # decay


def test_default_schedule_and_power() -> None:
    factor = WarmupPoly(1500, 40000, 1.0, 1e-6)
    assert factor(750) == pytest.approx((1 - 750 / 40000) * (1e-6 + (1 - 1e-6) * 0.5))
    assert factor(1500) == pytest.approx(1 - 1500 / 40000)
    assert factor(20000) == pytest.approx(0.5)
    assert WarmupPoly(0, 100, 2.0, 1e-6)(50) == pytest.approx(0.25)


def test_scheduler_resume_from_state_dicts() -> None:
    def make() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        optimizer = build_optimizer(_Model())
        return optimizer, build_scheduler(optimizer, warmup_iters=4, max_iters=20)

    optimizer, scheduler = make()
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    state = (optimizer.state_dict(), scheduler.state_dict())
    reference = []
    for _ in range(5):
        reference.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()

    resumed_opt, resumed_sched = make()
    resumed_opt.load_state_dict(state[0])
    resumed_sched.load_state_dict(state[1])
    resumed = []
    for _ in range(5):
        resumed.append([g["lr"] for g in resumed_opt.param_groups])
        resumed_opt.step()
        resumed_sched.step()
    assert resumed == reference
    assert reference[0][0] == pytest.approx(6e-5 * (1 - 7 / 20))


def test_scheduler_rejects_bad_settings() -> None:
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="warmup_iters"):
        build_scheduler(optimizer, warmup_iters=50, max_iters=10)
    with pytest.raises(ValueError, match="power"):
        build_scheduler(optimizer, power=0.0)
