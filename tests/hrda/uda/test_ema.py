"""EMA teacher: ramp, exact copy at t=0, hand-computed averages, buffers, wrappers."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from hrda_kedro.hrda.uda.ema import EMATeacher, unwrap_model


def _student(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))


def _perturb(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator))


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_alpha_ramp_matches_hand_computation() -> None:
    teacher = EMATeacher(_student(), alpha=0.999)
    expected = {0: 0.0, 1: 0.5, 2: 2.0 / 3.0, 3: 0.75, 9: 0.9, 998: 1 - 1 / 999, 5000: 0.999}
    for t, alpha in expected.items():
        assert teacher.alpha_at(t) == pytest.approx(alpha, abs=1e-12)
    assert EMATeacher(_student(), alpha=0.5).alpha_at(10) == 0.5
    with pytest.raises(ValueError, match="iteration"):
        teacher.alpha_at(-1)


def test_teacher_is_frozen_eval_copy() -> None:
    student = _student()
    teacher = EMATeacher(student)
    assert teacher.model is not student
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.model.parameters())
    assert all(p.requires_grad for p in student.parameters())
    x = torch.randn(5, 4)
    # Dropout off: two forwards agree.
    torch.testing.assert_close(teacher.model(x), teacher.model(x), rtol=0, atol=0)
    assert not teacher.model(x).requires_grad


def test_update_at_t0_copies_student_exactly() -> None:
    student = _student()
    teacher = EMATeacher(student)
    _perturb(student, seed=1)
    teacher.update(student, iteration=0)
    for t, s in zip(teacher.model.parameters(), student.parameters(), strict=True):
        assert torch.equal(t, s)
        assert not t.requires_grad


def test_update_matches_hand_computed_average() -> None:
    student = _student()
    teacher = EMATeacher(student, alpha=0.999)
    teacher_before = _params(teacher.model)
    _perturb(student, seed=2)
    student_1 = _params(student)
    teacher.update(student, iteration=1)  # alpha_1 = 0.5
    expected_1 = [0.5 * t + 0.5 * s for t, s in zip(teacher_before, student_1, strict=True)]
    for got, want in zip(teacher.model.parameters(), expected_1, strict=True):
        torch.testing.assert_close(got, want)
    _perturb(student, seed=3)
    student_2 = _params(student)
    teacher.update(student, iteration=2)  # alpha_2 = 2/3
    for got, t, s in zip(teacher.model.parameters(), expected_1, student_2, strict=True):
        torch.testing.assert_close(got, 2.0 / 3.0 * t + 1.0 / 3.0 * s)
    _perturb(student, seed=4)
    student_big = _params(student)
    before = _params(teacher.model)
    teacher.update(student, iteration=10**6)  # saturated at alpha
    for got, t, s in zip(teacher.model.parameters(), before, student_big, strict=True):
        torch.testing.assert_close(got, 0.999 * t + 0.001 * s)


def test_buffers_are_copied_from_student() -> None:
    student = _student()
    teacher = EMATeacher(student)
    student.train()
    student(torch.randn(16, 4) * 3 + 1)
    bn_student, bn_teacher = student[1], teacher.model[1]
    assert not torch.equal(bn_student.running_mean, bn_teacher.running_mean)
    teacher.update(student, iteration=5)
    assert torch.equal(bn_student.running_mean, bn_teacher.running_mean)
    assert torch.equal(bn_student.running_var, bn_teacher.running_var)
    assert torch.equal(bn_student.num_batches_tracked, bn_teacher.num_batches_tracked)
    assert not teacher.model.training


def test_mismatched_student_is_rejected() -> None:
    teacher = EMATeacher(_student())
    with pytest.raises(ValueError, match="does not match"):
        teacher.update(nn.Linear(4, 3), iteration=1)


def test_data_parallel_student_is_unwrapped() -> None:
    student = _student()
    wrapped = nn.DataParallel(student)
    assert unwrap_model(wrapped) is student
    teacher = EMATeacher(wrapped)
    assert not isinstance(teacher.model, nn.DataParallel)
    _perturb(student, seed=6)
    teacher.update(wrapped, iteration=0)
    for t, s in zip(teacher.model.parameters(), student.parameters(), strict=True):
        assert torch.equal(t, s)


def test_distributed_data_parallel_student_is_unwrapped(tmp_path) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        student = _student()
        wrapped = nn.parallel.DistributedDataParallel(student)
        teacher = EMATeacher(wrapped)
        assert not isinstance(teacher.model, nn.parallel.DistributedDataParallel)
        _perturb(student, seed=7)
        teacher.update(wrapped, iteration=0)
        for t, s in zip(teacher.model.parameters(), student.parameters(), strict=True):
            assert torch.equal(t, s)
    finally:
        dist.destroy_process_group()
