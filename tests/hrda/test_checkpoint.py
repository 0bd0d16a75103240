"""Checkpoint files: atomic writes and weights_only loading."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from hrda_kedro.hrda.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class _Exploit:
    """Unpickling this would run a shell command."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_round_trip_keeps_tensors_and_plain_values(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    state = {
        "model": {"w": torch.arange(6.0).view(2, 3)},
        "iteration": 7,
        "history": {"loss": [1.0, 0.5]},
    }
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["iteration"] == 7
    assert loaded["history"] == {"loss": [1.0, 0.5]}


def test_malicious_pickle_is_refused_without_running(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "hrda-kedro/1", "payload": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable PyTorch checkpoint"),
        (b"this is a text file", "not a readable PyTorch checkpoint"),
    ],
)
def test_garbage_files_get_a_clear_message(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_foreign_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"other\.pt: not an hrda-kedro checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"iteration": 1})

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"iteration": 2})
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left


def test_pickle_protocol_error_type_is_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"format": "hrda-kedro/1", "x": _Exploit()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_checkpoint_gets_the_permissions_of_any_other_output(tmp_path: Path, umask: int) -> None:
    """Not mkstemp's 0600: a team on shared storage must be able to read the models."""
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "model.pt", {"model": {"w": torch.zeros(2)}})
        (tmp_path / "plain.csv").write_text("a\n")
    finally:
        os.umask(old)
    mode = (tmp_path / "model.pt").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.csv").stat().st_mode & 0o777 == 0o666 & ~umask
