"""Harmless third-party warnings stay off the console, whatever filters other packages add."""

from __future__ import annotations

import logging
import warnings

import pytest

from hrda_kedro import HarmlessWarnings


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def console() -> Recorder:
    """Warnings routed to logging as Kedro does, with a filter put in front of ours, as
    kedro-datasets and MLflow do when imported after the package."""
    recorder = Recorder()
    logger = logging.getLogger("py.warnings")
    logger.addHandler(recorder)
    logging.captureWarnings(True)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        yield recorder
    logging.captureWarnings(False)
    logger.removeHandler(recorder)


@pytest.mark.parametrize(
    ("message", "category"),
    [
        ("register_new_resolver() is deprecated and will be removed", UserWarning),
        ("Option '--pipeline' is deprecated and will be removed", DeprecationWarning),
        ("\x1b[33mAdd type hints to the `predict` method to enable data validation", UserWarning),
    ],
)
def test_a_harmless_warning_is_dropped(console: Recorder, message: str, category: type) -> None:
    warnings.warn(message, category, stacklevel=1)
    assert console.messages == []


def test_any_other_warning_shows(console: Recorder) -> None:
    warnings.warn("Option '--tag' is deprecated", DeprecationWarning, stacklevel=1)
    assert len(console.messages) == 1 and "--tag" in console.messages[0]


def test_the_filter_is_on_the_warnings_logger() -> None:
    filters = logging.getLogger("py.warnings").filters
    assert any(isinstance(f, HarmlessWarnings) for f in filters)
