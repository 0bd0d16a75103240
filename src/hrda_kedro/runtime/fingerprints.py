"""Hashes of what a stage trains on and with: a stage resumes only when they match."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd

from hrda_kedro.data import DataError


def fingerprint(**parts: Any) -> str:
    """Stable hashes of named JSON-able parts, ``data=1a2b... parameters=3c4d...``.

    A stage resumes only from a checkpoint of the same fingerprint; when they differ the
    trainer names the parts that changed, so the log says why a stage re-runs.
    """
    return " ".join(
        f"{name}={hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]}"
        for name, value in sorted(parts.items())
    )


# What a manifest row's training data are: the files' bytes and the size they are loaded at
# (not their paths: a project moved to another disk resumes).
_CONTENT_COLUMNS = ("name", "content_sha256", "load_height", "load_width")


def manifest_digest(manifest: pd.DataFrame) -> str:
    """sha256 of a manifest's data content, so that a stage re-runs when its images change."""
    missing = [c for c in _CONTENT_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(
            f"manifest without the columns {missing}: written by an older version; expected "
            "one written by the ingestion pipeline, re-run it (kedro run --pipeline=ingestion)"
        )
    rows = manifest[list(_CONTENT_COLUMNS)].astype(str).to_numpy().tolist()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()
