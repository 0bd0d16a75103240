"""Data sets for HRDA, plain Python: label tables, the embedded benchmark, readers.

Nothing here imports Kedro; the ingestion pipeline calls into it.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file or folder is not what HRDA expects; the message names it."""


class MissingInputError(DataError):
    """An input a run needs has not been made yet (a model not trained, a version not
    saved); the message names where it was looked for."""


class MissingFolderError(DataError):
    """A folder the data should be in does not exist or holds none of the files expected (a
    data set not downloaded yet, a root that points elsewhere, a file where a folder should
    be); the message names the folder and what belongs there."""
