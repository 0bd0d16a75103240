"""Data sets for HRDA, plain Python: label tables, the embedded benchmark, readers.

Nothing here imports Kedro; the ingestion pipeline calls into it.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file or folder is not what HRDA expects; the message names it."""
