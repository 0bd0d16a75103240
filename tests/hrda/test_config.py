"""The library's configs check declared bounds and cross-field rules on construction; the
project's parser prefixes the key with its full dotted path."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hrda_kedro.hrda.config import Config, ConfigError, require, require_positive_pair, setting
from hrda_kedro.params import ParameterError, parse


@dataclass
class _Example(Config):
    ratio: float = setting(0.5, ge=0, lt=1)
    count: int = setting(1, ge=1)
    weight: float = setting(1.0, ge=0, key="lambda")
    low: int = 0
    high: int = 1

    def validate(self) -> None:
        require(self.low < self.high, "high", f"expected > low ({self.low}), got {self.high}")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1.0}, "ratio: expected 0 <= value < 1, got 1.0"),
        ({"count": 0}, "count: expected >= 1, got 0"),
        ({"weight": -1.0}, "lambda: expected >= 0, got -1.0"),
        ({"low": 2}, "high: expected > low (2), got 1"),
    ],
)
def test_construction_checks_bounds_then_cross_field_rules(kwargs, message):
    with pytest.raises(ConfigError) as err:
        _Example(**kwargs)
    assert str(err.value) == message


def test_parser_names_the_full_dotted_key():
    with pytest.raises(
        ParameterError, match=r"^parameter group\.sub\.lambda: expected >= 0, got -2"
    ):
        parse(_Example, {"lambda": -2}, "group.sub")
    assert parse(_Example, {"lambda": 3}, "group").weight == 3.0


@pytest.mark.parametrize("pair", [(0, 4), (4, -1), (4,), (4, 4, 4)])
def test_a_pair_is_exactly_two_positive_numbers(pair) -> None:
    """Built in code, a size can have any length; YAML parsing already gives two."""
    with pytest.raises(ConfigError, match=r"^size: expected two positive integers, got \["):
        require_positive_pair(pair, "size")
    require_positive_pair((4, 8), "size")
