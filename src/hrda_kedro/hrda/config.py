"""How the library's configuration dataclasses check themselves.

Every setting of the method is a field of one frozen-or-plain dataclass in this package
(the network, the crops, each training component). Its range checks live in that class's
``__post_init__`` and raise :class:`ConfigError` with the field's key relative to the class,
so a library user constructing a config directly and the project's YAML parser (which
prefixes the full dotted path, ``model.hrda.context_crop``) get the same message from one
place.
"""

from __future__ import annotations

from dataclasses import MISSING, field, fields
from typing import Any


class ConfigError(ValueError):
    """A configuration value is out of range; ``key`` is the field's dotted key relative to
    the dataclass that raised it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


# Seeds are non-negative and below 2**32, numpy's and most tools' range: a negative one
# failed inside numpy after ingestion had started, a huge one inside torch's generator.
SEED_LIMIT = 2**32


def require(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` for ``key`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)


def require_positive_pair(pair: tuple[int, int], key: str) -> None:
    """Two positive numbers: YAML is parsed to exactly two, a config built in code may not be."""
    ok = len(pair) == 2 and pair[0] > 0 and pair[1] > 0
    require(ok, key, f"expected two positive integers, got {list(pair)}")


def setting(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    key: str | None = None,
) -> Any:
    """A dataclass field with declared bounds (checked by :class:`Config`) and, where the
    YAML key is a Python keyword (``lambda``), the key it is written under."""
    metadata: dict[str, Any] = {"bounds": (ge, gt, le, lt)}
    if key is not None:
        metadata["key"] = key
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _bounds_message(ge: Any, gt: Any, le: Any, lt: Any) -> str:
    """``expected >= 1``, ``expected 0 <= value < 1``: today's wording for each bound."""
    low = f"{ge} <=" if ge is not None else f"{gt} <" if gt is not None else None
    high = f"<= {le}" if le is not None else f"< {lt}" if lt is not None else None
    if low is not None and high is not None:
        return f"expected {low} value {high}"
    if low is not None:
        return f"expected >= {ge}" if ge is not None else f"expected > {gt}"
    return f"expected {high}"


def check_bounds(config: Any) -> None:
    """Check every :func:`setting` bound of dataclass ``config`` (``None`` values pass:
    optional settings are off)."""
    for f in fields(config):
        ge, gt, le, lt = f.metadata.get("bounds", (None, None, None, None))
        value = getattr(config, f.name)
        if value is None or (ge, gt, le, lt) == (None, None, None, None):
            continue
        ok = (
            (ge is None or value >= ge)
            and (gt is None or value > gt)
            and (le is None or value <= le)
            and (lt is None or value < lt)
        )
        require(
            ok, f.metadata.get("key", f.name), f"{_bounds_message(ge, gt, le, lt)}, got {value}"
        )


class Config:
    """Base of the library's configuration dataclasses: declared bounds are checked on
    construction, then the class's own cross-field :meth:`validate`."""

    def __post_init__(self) -> None:
        check_bounds(self)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; raise :class:`ConfigError` via :func:`require`."""
