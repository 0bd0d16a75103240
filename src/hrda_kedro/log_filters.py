"""Harmless third-party warnings, kept off the console of every run.

Each printed about 14 lines before the first node: Kedro's config loader calls an OmegaConf
API that OmegaConf has deprecated; ``--pipeline`` still works (the README notes the newer
``--pipelines``); MLflow (optional extra) asks for type hints in a class of its own.
Matched by message, so any other warning still shows.

Python's warning filters alone do not hold them: packages imported after ours put filters
of their own in front (kedro-datasets shows every Kedro deprecation; MLflow shows each
UserWarning once), so the same messages are also dropped where Kedro's logging prints
warnings, the ``py.warnings`` logger. In code, not in ``conf/logging.yml``: Kedro refuses the
``()`` factory key there, and a filter of the standard library matches logger names only.
"""

from __future__ import annotations

import logging
import re
import warnings

HARMLESS_WARNINGS = (
    r"register_new_resolver\(\) is deprecated",
    r"Option '--pipeline' is deprecated",
    r"Add type hints to the `predict` method",
)
_HARMLESS = re.compile("|".join(HARMLESS_WARNINGS))


class HarmlessWarnings(logging.Filter):
    """Drops the harmless warnings' records from the ``py.warnings`` logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _HARMLESS.search(record.getMessage()) is None


def ignore_harmless_warnings() -> None:
    """Both filters, once per process (the package's import)."""
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*{pattern}")
    logging.getLogger("py.warnings").addFilter(HarmlessWarnings())
