"""How the library's configuration dataclasses check themselves.

Every setting of the method is a field of one frozen-or-plain dataclass in this package
(the network, the crops, each training component). Its range checks live in that class's
``__post_init__`` and raise :class:`ConfigError` with the field's key relative to the class,
so a library user constructing a config directly and the project's YAML parser (which
prefixes the full dotted path, ``model.hrda.context_crop``) get the same message from one
place.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is out of range; ``key`` is the field's dotted key relative to
    the dataclass that raised it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def require(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` for ``key`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)


def require_positive_pair(pair: tuple[int, int], key: str) -> None:
    require(pair[0] > 0 and pair[1] > 0, key, f"expected two positive integers, got {list(pair)}")
