"""Every setting has one default: the code's equals conf/base's, which lists every key.

conf/base is the complete, commented reference users read; the paper's values live in the
recipe environments (conf/gta2cs...). A setting added to a class must be added to conf/base
with the same value, or this test names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kedro.config import OmegaConfigLoader

from hrda_kedro.params import AblationParams, parameter_groups, parse

CONF_BASE = Path(__file__).resolve().parents[1] / "conf" / "base"
# The study itself, not settings with a default: the variants and what they share.
STUDY_CONTENT = {"ablations": ("shared", "variants")}


def _base() -> dict[str, Any]:
    """conf/base's parameters as a run reads them (``${globals:...}`` resolved)."""
    loader = OmegaConfigLoader(str(CONF_BASE.parent), base_env="base", default_run_env="base")
    return loader["parameters"]


def _groups() -> dict[str, type]:
    return {**parameter_groups(), "ablations": AblationParams}


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _missing_keys(cls: type, base: Mapping[str, Any], path: str) -> Iterator[str]:
    """Keys of ``cls`` (and of its nested settings classes) that conf/base leaves out."""
    for f in dataclasses.fields(cls):
        if _key(f) not in base:
            yield f"{path}.{_key(f)}"
        elif _has_default(f) and dataclasses.is_dataclass(_default(f)):
            yield from _missing_keys(type(_default(f)), base[_key(f)] or {}, f"{path}.{_key(f)}")


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _differences(code: Any, conf: Any, path: str) -> Iterator[str]:
    """Dotted keys where two parsed groups differ, descending into nested settings."""
    if dataclasses.is_dataclass(code) and type(code) is type(conf):
        for f in dataclasses.fields(code):
            key = f"{path}.{_key(f)}"
            yield from _differences(getattr(code, f.name), getattr(conf, f.name), key)
    elif code != conf:
        yield f"{path}: code {code!r}, conf/base {conf!r}"


@pytest.mark.parametrize("group", sorted(_groups()))
def test_code_defaults_equal_conf_base(group: str) -> None:
    cls, base = _groups()[group], _base()[group]
    skipped = STUDY_CONTENT.get(group, ())
    missing = [k for k in _missing_keys(cls, base, group) if k.split(".")[1] not in skipped]
    assert not missing, f"conf/base does not list {missing}"
    # Required settings (the data sets of ingestion_datasets) and the study's content come
    # from conf/base on both sides; every other setting keeps the code's default.
    given = {
        _key(f): base[_key(f)]
        for f in dataclasses.fields(cls)
        if not _has_default(f) or _key(f) in skipped
    }
    code, conf = parse(cls, given, group), parse(cls, base, group)
    differences = list(_differences(code, conf, group))
    assert not differences, "defaults differ from conf/base:\n" + "\n".join(differences)
