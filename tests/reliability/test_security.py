"""Untrusted files and configuration must not run code.

A checkpoint or weights file from the internet is refused unless it holds only tensors and
plain values (``torch.load(weights_only=True)`` everywhere, checked on the source); no
configuration value reaches ``eval``, a shell or an import by name beyond the catalog's
dataset types; the logging configuration stays within Kedro's module allow-list.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from kedro.framework.project import LOGGING
from kedro.io.core import DatasetError

from hrda_kedro.hrda.checkpoint import FORMAT, CheckpointError
from hrda_kedro.hrda.networks.weights import read_state_dict
from tests.reliability.helpers import REPO, latest_version, run_in_process

SOURCE = REPO / "src" / "hrda_kedro"


class _Exploit:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch '{self.marker}'",))


def _plant(path: Path, marker: Path) -> None:
    """A real checkpoint file (torch.save's zip format) with the exploit inside."""
    torch.save({"format": FORMAT, "model": {"w": torch.zeros(1)}, "extra": _Exploit(marker)}, path)


def test_catalog_checkpoint_with_malicious_pickle_is_refused(trained: Path) -> None:
    marker = trained / "pwned"
    _plant(latest_version(trained / "data" / "06_models" / "source_only" / "model.pt"), marker)
    with pytest.raises(DatasetError, match="refused to load") as info:
        run_in_process(trained, "self_training")
    assert "GLOBAL posix.system" in str(info.value)  # names what it refused
    assert not marker.exists()


def test_predict_checkpoint_with_malicious_pickle_is_refused(tmp_path: Path) -> None:
    from hrda_kedro.pipelines.predict.nodes import load_checkpoint_file

    marker = tmp_path / "pwned"
    _plant(tmp_path / "model.pt", marker)
    with pytest.raises(CheckpointError, match=r"^parameter predict\.checkpoint: .*refused to load"):
        load_checkpoint_file(str(tmp_path / "model.pt"))
    assert not marker.exists()


def test_in_training_checkpoint_with_malicious_pickle_is_refused(trained: Path) -> None:
    marker = trained / "pwned"
    state = trained / "data" / "06_models" / "in_progress" / "warmup" / "state.pt"
    state.parent.mkdir(parents=True)
    _plant(state, marker)
    with pytest.raises(CheckpointError, match="refused to load"):
        run_in_process(trained, "warmup")  # a re-run resumes from this file
    assert not marker.exists()


def test_pretrained_weights_with_malicious_pickle_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"w": _Exploit(marker)}}, tmp_path / "mit_b0.pth")
    with pytest.raises(ValueError, match=r"weights_only=True \(UnpicklingError: .*posix\.system"):
        read_state_dict(tmp_path / "mit_b0.pth")
    assert not marker.exists()


# --------------------------------------------------------------------------- source scan


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Every call with its dotted callee name (``torch.load``, ``eval``, ...)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts = []
            func = node.func
            while isinstance(func, ast.Attribute):
                parts.append(func.attr)
                func = func.value
            if isinstance(func, ast.Name):
                parts.append(func.id)
                found.append((".".join(reversed(parts)), node))
    return found


def _source_calls() -> list[tuple[str, str, ast.Call]]:
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 20
    return [
        (f"{path.relative_to(REPO)}:{call.lineno}", name, call)
        for path in files
        for name, call in _calls(ast.parse(path.read_text(), str(path)))
    ]


def _keyword(call: ast.Call, name: str) -> Any:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def test_every_torch_load_in_src_passes_weights_only_true() -> None:
    loads = [(where, call) for where, name, call in _source_calls() if name == "torch.load"]
    assert loads  # the scan sees them
    unsafe = [where for where, call in loads if _keyword(call, "weights_only") is not True]
    assert not unsafe, unsafe


FORBIDDEN = {
    "eval", "exec", "compile", "__import__", "os.system", "os.popen", "importlib.import_module",
    "pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load", "yaml.full_load",
}  # fmt: skip


# The one exception: the multi-machine stage hand-over unpickles a job only after checking
# its HMAC with the run's key (tests/test_launch.py: a forged message is refused).
SIGNED_UNPICKLING = ("src/hrda_kedro/launch.py:", "pickle.loads")


def test_no_eval_exec_shell_or_import_by_name_in_src() -> None:
    calls = _source_calls()
    forbidden = [
        f"{where} {name}"
        for where, name, _ in calls
        if name in FORBIDDEN
        and not (where.startswith(SIGNED_UNPICKLING[0]) and name == SIGNED_UNPICKLING[1])
    ]
    shells = [
        f"{where} {name}"
        for where, name, call in calls
        if name.startswith("subprocess.") and _keyword(call, "shell") is not False
    ]
    assert not forbidden and not shells, forbidden + shells


# --------------------------------------------------------------------------- configuration


def _configs(pattern: str) -> list[Path]:
    return sorted((REPO / "conf").rglob(pattern))


def _types(entry: Any) -> list[str]:
    """Every ``type`` in a catalog entry, nested datasets included."""
    if isinstance(entry, dict):
        own = [entry["type"]] if isinstance(entry.get("type"), str) else []
        return own + [t for value in entry.values() for t in _types(value)]
    return []


def test_catalog_imports_only_dataset_types() -> None:
    """``type`` is the one configuration value Kedro imports by name."""
    allowed = ("pandas.", "json.", "matplotlib.", "pillow.", "partitions.", "hrda_kedro.datasets.")
    types = [
        t
        for path in _configs("catalog*.yml")
        for entry in (yaml.safe_load(path.read_text()) or {}).values()
        for t in _types(entry)
    ]
    assert types
    odd = sorted({t for t in types if t != "MemoryDataset" and not t.startswith(allowed)})
    assert not odd, odd


def test_logging_config_keeps_kedros_module_allow_list() -> None:
    config = yaml.safe_load((REPO / "conf" / "logging.yml").read_text())
    LOGGING._validate_logging_config(config)  # Kedro's own check: allow-list, no "()"
    classes = [handler["class"] for handler in config["handlers"].values()]
    assert all(c.startswith(("logging.", "kedro.logging.")) for c in classes), classes
    unlisted = {**config, "handlers": {"x": {"class": "os.system"}}}
    with pytest.raises(ValueError, match="not permitted"):
        LOGGING._validate_logging_config(unlisted)
    for path in [REPO / "pyproject.toml", *SOURCE.rglob("*.py"), *_configs("*.yml")]:
        assert "KEDRO_LOGGING_MODULE_ALLOWLIST" not in path.read_text(), path
