"""The raw landing folder: a local copy of what a remote log source holds for a day.

Remote sources (a bucket, the gateway's /spend/logs/v2 API) are copied here first, so
ingest always reads local files and a re-run of a day is reproducible offline. Each
source lands under its own stable folder, mirroring the source's object names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LandingStats:
    """What landing one report day cost: objects listed, fetched, skipped as already landed."""

    source: str
    day: str
    listed: int = 0
    fetched: int = 0
    already_landed: int = 0
    bytes_fetched: int = 0
    retries: int = 0
    seconds: float = 0.0


class LandingError(RuntimeError):
    """A remote source could not be copied; the message names the source and what to check."""


def landing_root(landing_dir: Path, source: str) -> Path:
    """The stable local folder of one source, e.g. `s3://logs/gw` → `<landing_dir>/s3/logs/gw`."""
    scheme, _, rest = source.partition("://")
    parts = [re.sub(r"[^A-Za-z0-9._-]", "_", p) for p in rest.strip("/").split("/") if p not in ("", ".", "..")] if rest else []
    return landing_dir.joinpath(re.sub(r"[^a-z0-9-]", "_", scheme.lower()) or "source", *parts)
